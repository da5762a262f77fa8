use super::*;
use std::os::unix::fs::PermissionsExt;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn save_and_load_round_trip_with_owner_only_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys/nested");
    let path = dir.join("host.key");
    let key = KeyPair::generate().unwrap();
    key.save(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&tmp.path().join("keys")), 0o700);
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.starts_with(PEM_BEGIN), "{text}");
    let loaded = KeyPair::load(&path).unwrap();
    assert_eq!(loaded.public_key(), key.public_key());
    // Only the key itself is left in the directory: no temp files.
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
}

#[test]
fn raw_der_loads_too() {
    let tmp = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let path = tmp.path().join("raw.der");
    write_private(&path, &key.pkcs8).unwrap();
    assert_eq!(KeyPair::load(&path).unwrap().key_id(), key.key_id());
}

#[test]
fn save_never_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("k");
    let first = KeyPair::generate().unwrap();
    first.save(&path).unwrap();
    let err = KeyPair::generate().unwrap().save(&path).unwrap_err();
    assert!(matches!(err, KeyError::AlreadyExists(_)), "{err}");
    assert_eq!(KeyPair::load(&path).unwrap().key_id(), first.key_id());
}

#[test]
fn a_key_readable_by_others_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("k");
    KeyPair::generate().unwrap().save(&path).unwrap();
    for bad in [0o640, 0o604, 0o644] {
        fs::set_permissions(&path, fs::Permissions::from_mode(bad)).unwrap();
        let err = KeyPair::load(&path).unwrap_err();
        assert!(
            matches!(err, KeyError::InsecurePermissions { mode, .. } if mode == bad),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
    assert!(KeyPair::load(&path).is_ok());
}

#[test]
fn garbage_key_files_are_errors_not_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("k");
    for content in [
        &b""[..],
        b"hello",
        b"-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ] {
        let _ = fs::remove_file(&path);
        write_private(&path, content).unwrap();
        let err = KeyPair::load(&path).unwrap_err();
        assert!(matches!(err, KeyError::InvalidPrivateKey { .. }), "{err}");
    }
}

#[test]
fn load_or_create_makes_the_key_once() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("state/provenance.key");
    let (first, origin) = load_or_create(&path).unwrap();
    assert_eq!(origin, KeyOrigin::Created);
    assert_eq!(mode(&path), 0o600);
    let (again, origin) = load_or_create(&path).unwrap();
    assert_eq!(origin, KeyOrigin::Loaded);
    assert_eq!(again.key_id(), first.key_id());
}

#[test]
fn load_or_create_does_not_replace_a_broken_key() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("k");
    write_private(&path, b"not a key").unwrap();
    assert!(load_or_create(&path).is_err());
    assert_eq!(fs::read(&path).unwrap(), b"not a key");
}

#[test]
fn public_key_text_form_round_trips() {
    let key = KeyPair::generate().unwrap().public_key();
    let text = key.to_string();
    assert!(text.starts_with("ed25519:"), "{text}");
    assert_eq!(text.parse::<PublicKey>().unwrap(), key);
    let json = serde_json::to_string(&key).unwrap();
    assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), key);
    for bad in ["", "ed25519:", "rsa:AAAA", "ed25519:!!!", "ed25519:AAAA"] {
        assert!(bad.parse::<PublicKey>().is_err(), "{bad}");
    }
}

#[test]
fn key_id_is_sha256_prefix_and_round_trips() {
    let key = KeyPair::generate().unwrap().public_key();
    let id = key.key_id();
    assert_eq!(id.to_string(), crate::sha256_hex(key.as_bytes())[..16]);
    assert_eq!(id.to_string().parse::<KeyId>().unwrap(), id);
    assert!("abc".parse::<KeyId>().is_err());
    assert!("zzzzzzzzzzzzzzzz".parse::<KeyId>().is_err());
}

#[test]
fn debug_shows_no_secret() {
    let key = KeyPair::generate().unwrap();
    let debug = format!("{key:?}");
    let secret = STANDARD.encode(&key.pkcs8);
    assert!(!debug.contains(&secret[..16]), "{debug}");
    assert!(debug.contains(&key.key_id().to_string()), "{debug}");
    assert!(debug.contains("***"), "{debug}");
}
