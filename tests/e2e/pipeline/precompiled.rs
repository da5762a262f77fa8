//! Precompiled plugins (`halyard plugin compile`, issue 15): the four
//! example guests compiled ahead of time and signed in one step run the
//! whole pipeline with exact counts; an artefact without a trusted
//! signature, altered after signing, or made for another wasmtime is
//! refused with the reason, never loaded.

use std::process::{Command, Output};

use halyard_test_components as components;

use crate::support::{
    Host, Scenario, config, delivered, file_transport, wait_until_ingested, write_sensor_lines,
};

fn halyard(s: &Scenario, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_halyard"))
        .args(args)
        .env("HALYARD_CACHE_DIR", s.path("cli-cache"))
        .env("HALYARD_DEV_MODE", "1")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Compiles and signs the decoder and the three example stages into the
/// scenario's directory; returns the config using them and trusting the
/// signer, and the signer's key file.
fn precompiled_config(s: &Scenario) -> (String, std::path::PathBuf) {
    let key = s.path("signer.key");
    let out = halyard(s, &["keygen", "--out", key.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let public = std::fs::read_to_string(s.path("signer.key.pub")).unwrap();
    let mut text_config = config(&s.data, &s.input, &file_transport(&s.path("out.jsonl")));
    for wasm in [
        components::JSONL_DECODER,
        components::RANGE_VALIDATOR,
        components::REDACT_PRIVACY,
        components::FRACTION_SAMPLER,
    ] {
        let name = std::path::Path::new(wasm)
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap();
        let cwasm = s.path(&format!("{name}.cwasm"));
        let out = halyard(
            s,
            &[
                "plugin",
                "compile",
                wasm,
                "--out",
                cwasm.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("signed:"), "{}", text(&out));
        assert!(text_config.contains(wasm));
        text_config = text_config.replace(wasm, cwasm.to_str().unwrap());
    }
    text_config.push_str(&format!(
        "\n[plugins]\ntrusted_keys = [\"{}\"]\n",
        public.trim()
    ));
    (text_config, key)
}

#[test]
fn signed_precompiled_plugins_run_the_pipeline_with_exact_counts() {
    let s = Scenario::new();
    let (text_config, _) = precompiled_config(&s);
    std::fs::write(&s.config, &text_config).unwrap();
    let negative = write_sensor_lines(&s.input, 0, 400);
    let host = Host::start(&s.config);
    wait_until_ingested(&s, &host);
    let log = host.stop();
    let events = delivered(&s.path("out.jsonl"));
    assert_eq!(events.len() as u64, 400 - negative, "{log}");
    let ids: std::collections::BTreeSet<String> =
        events.iter().map(|e| e["id"].to_string()).collect();
    assert_eq!(ids.len(), events.len(), "no duplicates");
    // The privacy stage ran: no operator in clear.
    assert!(
        events.iter().all(|e| !e.to_string().contains("\"alice\"")),
        "operators are hashed"
    );
}

#[test]
fn precompiled_plugins_without_a_good_signature_or_for_another_wasmtime_are_refused() {
    let s = Scenario::new();
    let (text_config, key) = precompiled_config(&s);
    let validator = s.path("range_validator.cwasm");
    let check = |config_text: &str| {
        std::fs::write(&s.config, config_text).unwrap();
        let out = halyard(&s, &["config", "check", s.config.to_str().unwrap()]);
        (out.status.code(), text(&out))
    };
    let (code, out) = check(&text_config);
    assert_eq!(code, Some(0), "{out}");

    // No trusted keys at all: native code nothing vouches for.
    let untrusted = text_config[..text_config.find("\n[plugins]").unwrap()].to_string();
    let (code, out) = check(&untrusted);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("loads only with a signature by a trusted key"),
        "{out}"
    );

    // Altered after signing.
    let good = std::fs::read(&validator).unwrap();
    let mut altered = good.clone();
    let last = altered.len() - 1;
    altered[last] ^= 0xff;
    std::fs::write(&validator, &altered).unwrap();
    let (code, out) = check(&text_config);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("range_validator.cwasm") && out.contains("signature"),
        "{out}"
    );

    // Made by another wasmtime (the major version its engine section
    // records, a length-prefixed string before the target triple, bumped),
    // then signed properly: wasmtime itself refuses it, with the reason.
    let major = wasmtime_major();
    let mut needle = vec![major.len() as u8];
    needle.extend_from_slice(major.as_bytes());
    let mut foreign = good.clone();
    let at = find(&foreign, &needle).expect("the engine section names the wasmtime version");
    assert!(
        String::from_utf8_lossy(&foreign[at..at + 40]).contains("-linux"),
        "the version is followed by the target triple"
    );
    let last = at + major.len();
    foreign[last] = if foreign[last] == b'9' {
        b'0'
    } else {
        foreign[last] + 1
    };
    std::fs::write(&validator, &foreign).unwrap();
    let out = halyard(
        &s,
        &[
            "plugin",
            "sign",
            validator.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--kind",
            "validator",
            "--version",
            "0.1.0",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let (code, out) = check(&text_config);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("precompiled plugin this host cannot run"),
        "{out}"
    );
}

/// The major version of the wasmtime this build links (what artefacts
/// record, and what a host checks them against).
fn wasmtime_major() -> String {
    let lock = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock"),
    )
    .unwrap();
    let head = "name = \"wasmtime\"\nversion = \"";
    let rest = &lock[lock.find(head).unwrap() + head.len()..];
    rest[..rest.find('.').unwrap()].to_string()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
