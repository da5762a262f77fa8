//! `halyard keygen`, `plugin sign|verify`, `license issue|inspect` and
//! `verify` as vendors and operators run them: the real binary, real
//! components, keys generated here (none is committed).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use halyard_test_components as components;
use halyard_trust::licence::{self, Claims, Features, Scope};
use halyard_trust::{KeyPair, provenance};

struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    fn new() -> Self {
        Cli {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, "")
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_halyard"))
            .args(args)
            .current_dir(self.dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run halyard");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wait for halyard")
    }

    /// Runs `keygen --out NAME`; returns (private key path, public key text).
    fn keygen(&self, name: &str) -> (PathBuf, String) {
        let out = self.run(&["keygen", "--out", name]);
        assert!(out.status.success(), "keygen: {}", text(&out));
        (self.path(name), stdout(&out).trim().to_owned())
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stdout and stderr together, for assertion messages and searches.
fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn keygen_writes_an_owner_only_key_and_prints_the_public_key() {
    let cli = Cli::new();
    let out = cli.run(&["keygen", "--out", "keys/"]);
    assert!(out.status.success(), "{}", text(&out));
    let public = stdout(&out);
    assert!(public.starts_with("ed25519:"), "{public}");
    assert_eq!(public.lines().count(), 1, "{public}");
    let key = cli.path("keys/halyard.key");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&cli.path("keys")), 0o700);
    assert_eq!(
        std::fs::read_to_string(cli.path("keys/halyard.key.pub")).unwrap(),
        public
    );
    let loaded = KeyPair::load(&key).unwrap();
    assert_eq!(loaded.public_key().to_string(), public.trim());

    // Never over an existing key.
    let again = cli.run(&["keygen", "--out", "keys/"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again).contains("refusing to overwrite"),
        "{}",
        text(&again)
    );
    assert_eq!(KeyPair::load(&key).unwrap().key_id(), loaded.key_id());
}

#[test]
fn a_signed_component_verifies_and_a_changed_byte_is_refused() {
    let cli = Cli::new();
    let (key, public) = cli.keygen("signer.key");
    let component = cli.path("range_validator.wasm");
    std::fs::copy(components::RANGE_VALIDATOR, &component).unwrap();

    let out = cli.run(&[
        "plugin",
        "sign",
        s(&component),
        "--key",
        s(&key),
        "--no-cache",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let sig: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cli.path("range_validator.wasm.sig")).unwrap())
            .unwrap();
    assert_eq!(sig["alg"], "ed25519");
    // Name from the file, kind and version from the component itself.
    assert_eq!(sig["name"], "range_validator");
    assert_eq!(sig["kind"], "validator");
    assert_eq!(sig["version"], "0.1.0");
    assert_eq!(
        sig["sha256"],
        halyard_trust::sha256_hex(&std::fs::read(&component).unwrap())
    );

    // Trusted by text form and by .pub file.
    let key_id = KeyPair::load(&key).unwrap().key_id().to_string();
    for trusted in [public.clone(), format!("{}.pub", s(&key))] {
        let out = cli.run(&["plugin", "verify", s(&component), "--trusted", &trusted]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            stdout(&out).contains(&format!("valid signature by trusted key {key_id}")),
            "{}",
            text(&out)
        );
    }

    // The same pair under another name, or checked as another kind.
    let moved = cli.path("redact.wasm");
    std::fs::copy(&component, &moved).unwrap();
    std::fs::copy(
        cli.path("range_validator.wasm.sig"),
        cli.path("redact.wasm.sig"),
    )
    .unwrap();
    let out = cli.run(&["plugin", "verify", s(&moved), "--trusted", &public]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out)
            .contains("refused: signed for name \"range_validator\", installed as \"redact\""),
        "{}",
        text(&out)
    );
    let out = cli.run(&[
        "plugin",
        "verify",
        s(&component),
        "--trusted",
        &public,
        "--kind",
        "privacy",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("refused: signed for kind \"validator\", installed as \"privacy\""),
        "{}",
        text(&out)
    );

    // Another key is not trusted.
    let (_, other) = cli.keygen("other.key");
    let out = cli.run(&["plugin", "verify", s(&component), "--trusted", &other]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains(&format!("refused: signed by unknown key {key_id}")),
        "{}",
        text(&out)
    );

    // One byte changed after signing.
    let mut bytes = std::fs::read(&component).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&component, &bytes).unwrap();
    let out = cli.run(&["plugin", "verify", s(&component), "--trusted", &public]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("refused: content changed after signing"),
        "{}",
        text(&out)
    );

    // No signature at all.
    std::fs::remove_file(cli.path("range_validator.wasm.sig")).unwrap();
    let out = cli.run(&["plugin", "verify", s(&component), "--trusted", &public]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("refused: unsigned"), "{}", text(&out));
}

/// A signature of the first format (content hash only) is refused with
/// the instruction to re-sign.
#[test]
fn an_old_format_signature_is_refused_with_a_re_sign_message() {
    let cli = Cli::new();
    let (_, public) = cli.keygen("signer.key");
    let component = cli.path("validator.wasm");
    std::fs::copy(components::RANGE_VALIDATOR, &component).unwrap();
    let old = serde_json::json!({"alg": "ed25519", "key_id": "0011223344556677",
        "sha256": halyard_trust::sha256_hex(&std::fs::read(&component).unwrap()),
        "signature": "AAAA"});
    std::fs::write(cli.path("validator.wasm.sig"), old.to_string()).unwrap();
    let out = cli.run(&["plugin", "verify", s(&component), "--trusted", &public]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("refused: old-format signature")
            && stdout(&out).contains("re-sign the component with `halyard plugin sign`"),
        "{}",
        text(&out)
    );
}

/// `plugin sign-manifest` wraps a manifest with the serial and expiry in a
/// signed envelope that opens with the signer's key only.
#[test]
fn sign_manifest_writes_an_envelope_with_serial_and_expiry() {
    let cli = Cli::new();
    let (key, public) = cli.keygen("signer.key");
    let plugins = r#"{"plugins": [{"name": "validator", "kind": "validator",
        "url": "v2.wasm", "sha256": "00"}]}"#;
    std::fs::write(cli.path("manifest.json"), plugins).unwrap();
    let out = cli.run(&[
        "plugin",
        "sign-manifest",
        "manifest.json",
        "--key",
        s(&key),
        "--serial",
        "42",
        "--expires-in-s",
        "3600",
        "--out",
        "manifest.signed.json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let envelope = std::fs::read(cli.path("manifest.signed.json")).unwrap();
    let trusted: halyard_trust::PublicKey = public.parse().unwrap();
    let opened = halyard_trust::manifest::open(&envelope, &[trusted]).unwrap();
    assert_eq!(opened.header.serial, 42);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!((now + 3590..=now + 3610).contains(&opened.header.expires_at));
    let payload: serde_json::Value = serde_json::from_slice(&opened.payload).unwrap();
    assert_eq!(payload["plugins"][0]["name"], "validator");
    let stranger = KeyPair::generate().unwrap().public_key();
    assert!(halyard_trust::manifest::open(&envelope, &[stranger]).is_err());
}

#[test]
fn a_key_readable_by_others_is_refused_with_the_fix() {
    let cli = Cli::new();
    let (key, _) = cli.keygen("loose.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = cli.run(&[
        "plugin",
        "sign",
        components::RANGE_VALIDATOR,
        "--key",
        s(&key),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("chmod 600"), "{}", text(&out));
}

#[test]
fn an_issued_licence_inspects_as_valid_without_echoing_the_token() {
    let cli = Cli::new();
    let (vendor, public) = cli.keygen("vendor.key");
    let out = cli.run(&[
        "license",
        "issue",
        "--key",
        s(&vendor),
        "--licensee",
        "Acme Edge",
        "--expires-in-days",
        "30",
        "--fleet",
        "north",
        "--device",
        "edge-7",
        "--device",
        "edge-8",
        "--kinds",
        "validator,sampler",
        "--max-plugins",
        "3",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let token = stdout(&out).trim().to_owned();
    assert!(token.starts_with("hl1."), "{token}");
    assert_eq!(token.lines().count(), 1);

    let out = cli.run(&["license", "inspect", &token, "--pubkey", &public]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    for line in [
        "licensee:     Acme Edge",
        "scope:        fleets [north] devices [edge-7, edge-8]",
        "plugin kinds: validator, sampler",
        "max plugins:  3",
        "verdict:      valid",
    ] {
        assert!(shown.contains(line), "{line:?} missing in:\n{shown}");
    }
    let signature = token.rsplit('.').next().unwrap();
    assert!(!shown.contains(signature), "token echoed:\n{shown}");

    // The same token from a file and from stdin; scope per host.
    std::fs::write(cli.path("licence.token"), &token).unwrap();
    let out = cli.run(&[
        "license",
        "inspect",
        "@licence.token",
        "--pubkey",
        "vendor.key.pub",
        "--host-id",
        "edge-7",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = cli.run_with_stdin(
        &[
            "license",
            "inspect",
            "-",
            "--pubkey",
            &public,
            "--host-id",
            "edge-99",
            "--fleet",
            "south",
        ],
        &token,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("verdict:      invalid: licence does not cover host \"edge-99\""),
        "{}",
        text(&out)
    );

    // Without a public key the claims are shown but not trusted.
    let out = cli.run(&["license", "inspect", &token]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("licensee:     Acme Edge"));
    assert!(
        stdout(&out).contains("verdict:      unverified"),
        "{}",
        text(&out)
    );
}

#[test]
fn expired_wrong_key_and_garbled_tokens_are_refused() {
    let cli = Cli::new();
    let (vendor, public) = cli.keygen("vendor.key");
    let (mallory, _) = cli.keygen("mallory.key");

    let out = cli.run(&[
        "license",
        "issue",
        "--key",
        s(&mallory),
        "--licensee",
        "Mallory",
        "--expires-in-days",
        "3650",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let forged = stdout(&out).trim().to_owned();
    let out = cli.run(&["license", "inspect", &forged, "--pubkey", &public]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("verdict:      invalid: licence signature does not verify"),
        "{}",
        text(&out)
    );

    // A genuine token that ran out (the CLI only issues future expiries, so
    // this one is made with the library and the vendor key from keygen).
    let claims = Claims {
        licensee: "Acme Edge".to_owned(),
        scope: Scope::default(),
        issued_at: 1_700_000_000,
        expires_at: 1_700_086_400,
        features: Features::default(),
        grace_hours: None,
    };
    let expired = licence::issue(&claims, &KeyPair::load(&vendor).unwrap());
    let out = cli.run(&["license", "inspect", expired.expose(), "--pubkey", &public]);
    assert_eq!(out.status.code(), Some(1));
    let shown = stdout(&out);
    assert!(shown.contains("scope:        any host"), "{shown}");
    assert!(
        shown.contains("verdict:      expired: licence expired at 1700086400"),
        "{shown}"
    );

    let out = cli.run(&["license", "inspect", "hl1.garbage", "--pubkey", &public]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("verdict:      invalid: malformed licence token"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_stored_batch_verifies_offline_and_tampering_is_caught() {
    let cli = Cli::new();
    let (host_key, public) = cli.keygen("host.key");
    let body = br#"{"batch_id":"1-1","host":"edge-7","events":[{"id":"a","value":21.5}]}"#;
    let header = provenance::sign_batch(body, &KeyPair::load(&host_key).unwrap());
    std::fs::write(cli.path("batch.json"), body).unwrap();

    let out = cli.run(&[
        "verify",
        "--batch",
        "batch.json",
        "--signature",
        &header,
        "--trusted",
        &public,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("valid signature by host key"),
        "{}",
        text(&out)
    );

    let tampered = String::from_utf8_lossy(body).replace("21.5", "29.5");
    std::fs::write(cli.path("batch.json"), tampered).unwrap();
    let out = cli.run(&[
        "verify",
        "--batch",
        "batch.json",
        "--signature",
        &header,
        "--trusted",
        &public,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("refused: tampered batch"),
        "{}",
        text(&out)
    );

    let out = cli.run(&["verify", "--batch", "batch.json", "--trusted", &public]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("refused: unsigned batch"),
        "{}",
        text(&out)
    );
}
