use super::*;

const COMPONENT: &[u8] = b"\0asm pretend component bytes";

fn subject() -> Subject {
    Subject {
        name: "redact-v2".to_owned(),
        kind: "privacy".to_owned(),
        version: "2.0.0".to_owned(),
        fleet: None,
    }
}

/// Where `subject()` is meant to be installed.
const HERE: Expected<'static> = Expected {
    name: "redact-v2",
    kind: Some("privacy"),
    fleet: None,
};

fn setup() -> (KeyPair, Vec<u8>) {
    let key = KeyPair::generate().unwrap();
    let sig = sign(COMPONENT, &subject(), &key)
        .unwrap()
        .to_json()
        .into_bytes();
    (key, sig)
}

#[test]
fn signed_component_verifies_with_its_key_where_it_was_signed_for() {
    let (key, sig) = setup();
    let other = KeyPair::generate().unwrap().public_key();
    let verified = verify(COMPONENT, &sig, &HERE, &[other, key.public_key()]).unwrap();
    assert_eq!(verified.key_id, key.key_id());
    assert_eq!(verified.subject(), subject());
    verified.check_loaded("privacy", "2.0.0").unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&sig).unwrap();
    assert_eq!(doc["alg"], "ed25519");
    assert_eq!(doc["name"], "redact-v2");
    assert_eq!(doc["kind"], "privacy");
    assert_eq!(doc["version"], "2.0.0");
    assert!(doc.get("fleet").is_none());
    assert_eq!(doc["sha256"], crate::sha256_hex(COMPONENT));
    assert_eq!(doc["key_id"], key.key_id().to_string());
}

#[test]
fn a_signature_moved_to_another_name_kind_version_or_fleet_is_refused() {
    let (key, sig) = setup();
    let trusted = [key.public_key()];
    let moved = |name, kind| Expected {
        name,
        kind,
        fleet: None,
    };
    let mismatch = |field, signed: &str, actual: &str| SignatureError::Mismatch {
        field,
        signed: signed.to_owned(),
        actual: actual.to_owned(),
    };
    assert_eq!(
        verify(
            COMPONENT,
            &sig,
            &moved("validator", Some("privacy")),
            &trusted
        ),
        Err(mismatch("name", "redact-v2", "validator"))
    );
    assert_eq!(
        verify(
            COMPONENT,
            &sig,
            &moved("redact-v2", Some("validator")),
            &trusted
        ),
        Err(mismatch("kind", "privacy", "validator"))
    );
    let verified = verify(COMPONENT, &sig, &moved("redact-v2", None), &trusted).unwrap();
    assert_eq!(
        verified.check_loaded("privacy", "1.0.0"),
        Err(mismatch("version", "2.0.0", "1.0.0"))
    );
    assert_eq!(
        verified.check_loaded("sampler", "2.0.0"),
        Err(mismatch("kind", "privacy", "sampler"))
    );
    // Scoped to a fleet: only hosts of that fleet accept it.
    let north = Subject {
        fleet: Some("north".to_owned()),
        ..subject()
    };
    let scoped = sign(COMPONENT, &north, &key).unwrap().to_json();
    for (fleet, ok) in [(Some("north"), true), (Some("south"), false), (None, false)] {
        let here = Expected { fleet, ..HERE };
        let result = verify(COMPONENT, scoped.as_bytes(), &here, &trusted);
        assert_eq!(result.is_ok(), ok, "{fleet:?}: {result:?}");
    }
    // Unscoped: every fleet.
    let here = Expected {
        fleet: Some("south"),
        ..HERE
    };
    verify(COMPONENT, &sig, &here, &trusted).unwrap();
    // Rewriting the signed name to the new place breaks the signature.
    let mut renamed = Signature::from_json(&sig).unwrap();
    renamed.name = "validator".to_owned();
    assert_eq!(
        renamed.verify(COMPONENT, &moved("validator", None), &trusted),
        Err(SignatureError::BadSignature(key.key_id()))
    );
}

#[test]
fn old_format_signatures_are_refused_with_a_re_sign_message() {
    let key = KeyPair::generate().unwrap();
    let hash = crate::sha256_hex(COMPONENT);
    let old = serde_json::json!({
        "alg": "ed25519",
        "key_id": key.key_id().to_string(),
        "sha256": hash,
        "signature": STANDARD.encode(key.sign(format!("halyard-plugin-v1\n{hash}").as_bytes())),
    });
    let err = verify(
        COMPONENT,
        &serde_json::to_vec(&old).unwrap(),
        &HERE,
        &[key.public_key()],
    )
    .unwrap_err();
    assert_eq!(err, SignatureError::OldFormat);
    assert!(err.to_string().contains("re-sign"), "{err}");
}

#[test]
fn fields_that_would_make_the_message_ambiguous_are_refused() {
    let key = KeyPair::generate().unwrap();
    for bad in [
        Subject {
            name: "a\nkind=validator".to_owned(),
            ..subject()
        },
        Subject {
            version: String::new(),
            ..subject()
        },
        Subject {
            fleet: Some(String::new()),
            ..subject()
        },
    ] {
        let err = sign(COMPONENT, &bad, &key).unwrap_err();
        assert!(matches!(err, SignatureError::Malformed(_)), "{err}");
    }
}

#[test]
fn one_changed_byte_is_a_content_mismatch() {
    let (key, sig) = setup();
    let mut tampered = COMPONENT.to_vec();
    tampered[5] ^= 1;
    let err = verify(&tampered, &sig, &HERE, &[key.public_key()]).unwrap_err();
    assert!(
        matches!(err, SignatureError::ContentMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("changed after signing"), "{err}");
}

#[test]
fn untrusted_signer_is_an_unknown_key() {
    let (key, sig) = setup();
    let other = KeyPair::generate().unwrap().public_key();
    assert_eq!(
        verify(COMPONENT, &sig, &HERE, &[other]),
        Err(SignatureError::UnknownKey(key.key_id()))
    );
    assert_eq!(
        verify(COMPONENT, &sig, &HERE, &[]),
        Err(SignatureError::UnknownKey(key.key_id()))
    );
}

#[test]
fn forged_hash_and_signature_are_bad_signatures() {
    let (key, _) = setup();
    // An attacker rewrites the hash to match their component but cannot
    // re-sign it: the trusted key's signature no longer verifies.
    let evil = b"\0asm evil";
    let mut sig = sign(COMPONENT, &subject(), &key).unwrap();
    sig.sha256 = crate::sha256_hex(evil);
    assert_eq!(
        sig.verify(evil, &HERE, &[key.public_key()]),
        Err(SignatureError::BadSignature(key.key_id()))
    );
    // A signature by another key relabelled with the trusted key's id.
    let mallory = KeyPair::generate().unwrap();
    let mut forged = sign(evil, &subject(), &mallory).unwrap();
    forged.key_id = key.key_id();
    assert_eq!(
        forged.verify(evil, &HERE, &[key.public_key()]),
        Err(SignatureError::BadSignature(key.key_id()))
    );
}

#[test]
fn signatures_are_domain_separated() {
    let key = KeyPair::generate().unwrap();
    let hash = crate::sha256_hex(COMPONENT);
    let s = subject();
    // The same fields signed under another tag are not accepted.
    let other = message(&s, &hash).replace(DOMAIN, "halyard-batch-v1");
    let sig = Signature {
        signature: STANDARD.encode(key.sign(other.as_bytes())),
        ..sign(COMPONENT, &s, &key).unwrap()
    };
    assert_eq!(
        sig.verify(COMPONENT, &HERE, &[key.public_key()]),
        Err(SignatureError::BadSignature(key.key_id()))
    );
}

#[test]
fn garbled_signature_files_are_malformed() {
    let (key, good) = setup();
    let good: serde_json::Value = serde_json::from_slice(&good).unwrap();
    let with = |field: &str, value: serde_json::Value| {
        let mut doc = good.clone();
        doc[field] = value;
        serde_json::to_vec(&doc).unwrap()
    };
    let trusted = [key.public_key()];
    for bad in [
        b"".to_vec(),
        b"not json".to_vec(),
        b"{}".to_vec(),
        vec![b' '; MAX_SIG_FILE + 1],
        with("key_id", "xyz".into()),
        with("signature", "!!!".into()),
        with("signature", STANDARD.encode([0u8; 10]).into()),
        with("sha256", "ABC".into()),
        with("name", "a\nb".into()),
        with("extra", 1.into()),
    ] {
        let err = verify(COMPONENT, &bad, &HERE, &trusted).unwrap_err();
        assert!(matches!(err, SignatureError::Malformed(_)), "{err}");
    }
    assert_eq!(
        verify(COMPONENT, &with("alg", "rsa".into()), &HERE, &trusted),
        Err(SignatureError::UnsupportedAlgorithm("rsa".to_owned()))
    );
}

/// A reader that honours the cap, as the host's does.
fn capped(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let bytes = std::fs::read(path)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::other("over the cap"));
    }
    Ok(bytes)
}

#[test]
fn files_on_disk_missing_present_and_capped() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("redact-v2.wasm");
    std::fs::write(&path, COMPONENT).unwrap();
    let key = KeyPair::generate().unwrap();
    let trusted = [key.public_key()];
    let check = |max| verify_file(&path, Some("privacy"), None, &trusted, max, capped);
    assert_eq!(sig_path(&path), tmp.path().join("redact-v2.wasm.sig"));
    assert_eq!(
        check(1 << 20),
        Err(SignatureError::Missing(sig_path(&path)))
    );
    let sig = sign(COMPONENT, &subject(), &key).unwrap();
    std::fs::write(sig_path(&path), sig.to_json()).unwrap();
    let (bytes, verified) = check(1 << 20).unwrap();
    assert_eq!((bytes.as_slice(), verified), (COMPONENT, sig.clone()));
    // The same pair copied under another name does not verify.
    let moved = tmp.path().join("validator.wasm");
    std::fs::copy(&path, &moved).unwrap();
    std::fs::copy(sig_path(&path), sig_path(&moved)).unwrap();
    let err = verify_file(&moved, None, None, &trusted, 1 << 20, capped).unwrap_err();
    assert_eq!(
        err.to_string(),
        "signed for name \"redact-v2\", installed as \"validator\""
    );
    // The component and the `.sig` are read with their caps.
    let err = check(4).unwrap_err();
    assert!(
        matches!(&err, SignatureError::Io { path: p, .. } if p == &path),
        "{err}"
    );
    std::fs::write(sig_path(&path), vec![b' '; MAX_SIG_FILE + 1]).unwrap();
    let err = check(1 << 20).unwrap_err();
    assert!(
        matches!(&err, SignatureError::Io { path: p, .. } if p == &sig_path(&path)),
        "{err}"
    );
}
