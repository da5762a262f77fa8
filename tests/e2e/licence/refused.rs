//! A host without a usable licence refuses to start, says why, and never
//! prints the token.

use std::process::Command;
use std::time::Duration;

use halyard_trust::KeyPair;
use halyard_trust::licence::{Claims, Features, Scope, issue};

use super::pipeline_support::{Scenario, file_transport, wait_for};
use super::support::{licence_section, now, spawn_host, token};

/// Starts the host on `licence` (a `[licence]` section) and returns its exit
/// code and log.
fn refused(s: &Scenario, licence: &str) -> (i32, String) {
    s.write_config(&format!(
        "{}\n{licence}",
        file_transport(&s.path("out.jsonl"))
    ));
    let log = s.path("host.log");
    let mut child = spawn_host(&s.config, false, &log);
    let mut status = None;
    wait_for("the host to exit", Duration::from_secs(60), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let code = status.and_then(|s| s.code()).unwrap_or(-1);
    (code, std::fs::read_to_string(&log).unwrap_or_default())
}

#[test]
fn forged_expired_wrong_key_out_of_scope_and_missing_tokens_are_refused_at_start() {
    let s = Scenario::new();
    super::pipeline_support::write_sensor_lines(&s.input, 0, 10);
    let vendor = KeyPair::generate().unwrap();
    let intruder = KeyPair::generate().unwrap();
    let good = token(&vendor, 3600);

    let forged = {
        // Claims rewritten by hand (a longer licence), signature kept.
        let parts: Vec<&str> = good.expose().split('.').collect();
        let other = token(&vendor, 999_999);
        let claims = other.expose().split('.').nth(1).unwrap();
        format!("{}.{}.{}", parts[0], claims, parts[2])
    };
    let expired = issue(
        &Claims {
            licensee: "Acme Test".into(),
            scope: Scope::default(),
            issued_at: now() - 7200,
            expires_at: now() - 3600,
            features: Features::default(),
            grace_hours: None,
        },
        &vendor,
    );
    let wrong_key = token(&intruder, 3600);
    let other_fleet = issue(
        &Claims {
            licensee: "Acme Test".into(),
            scope: Scope {
                fleets: vec!["north".into()],
                devices: vec![],
            },
            issued_at: now() - 60,
            expires_at: now() + 3600,
            features: Features::default(),
            grace_hours: None,
        },
        &vendor,
    );
    let cases = [
        (forged.clone(), "forged or wrong key"),
        (expired.expose().to_owned(), "licence expired"),
        (wrong_key.expose().to_owned(), "forged or wrong key"),
        (
            other_fleet.expose().to_owned(),
            "does not cover host \"e2e\"",
        ),
    ];
    for (tok, why) in &cases {
        let (code, log) = refused(&s, &licence_section(tok, &vendor, ""));
        assert_ne!(code, 0, "{why}: host started: {log}");
        assert!(
            log.contains("licence refused") && log.contains(why),
            "{why}: {log}"
        );
        assert!(!log.contains(tok.as_str()), "the token was printed: {log}");
    }
    let (code, log) = refused(&s, "");
    assert_ne!(code, 0);
    assert!(
        log.contains("no licence") && log.contains("HALYARD_DEV_MODE"),
        "{log}"
    );
}

#[test]
fn config_check_masks_the_token_and_the_licence_api_key() {
    let s = Scenario::new();
    let vendor = KeyPair::generate().unwrap();
    let tok = token(&vendor, 3600);
    let extra = "endpoint = \"http://127.0.0.1:9/heartbeat\"\napi_key = \"hb-s3cret-key\"";
    s.write_config(&format!(
        "{}\n{}",
        file_transport(&s.path("out.jsonl")),
        licence_section(tok.expose(), &vendor, extra)
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_halyard"))
        .args(["config", "check", s.config.to_str().unwrap()])
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    assert!(!printed.contains(tok.expose()), "{printed}");
    assert!(!printed.contains("hb-s3cret-key"), "{printed}");
    assert!(printed.contains("[licence]"), "{printed}");
}

/// A licence's `features` bound what the host may load: a plugin kind it
/// does not list, or more plugins than `max_plugins`, refuses the start
/// with the stage named, before any plugin is compiled.
#[test]
fn plugins_outside_the_licence_features_refuse_the_start() {
    let s = Scenario::new();
    let vendor = KeyPair::generate().unwrap();
    let with = |features: Features| {
        issue(
            &Claims {
                licensee: "Acme Test".into(),
                scope: Scope::default(),
                issued_at: now() - 60,
                expires_at: now() + 3600,
                features,
                grace_hours: None,
            },
            &vendor,
        )
    };
    let no_privacy = with(Features {
        plugin_kinds: Some(vec!["decoder".into(), "validator".into(), "sampler".into()]),
        max_plugins: None,
    });
    let three = with(Features {
        plugin_kinds: None,
        max_plugins: Some(3),
    });
    for (tok, why) in [
        (
            &no_privacy,
            "stages.privacy[0]: plugin kind `privacy` is not licensed (the licence allows: decoder, validator, sampler)",
        ),
        (&three, "4 plugins configured; the licence allows at most 3"),
    ] {
        let (code, log) = refused(&s, &licence_section(tok.expose(), &vendor, ""));
        assert_ne!(code, 0, "{why}: host started: {log}");
        assert!(log.contains(why), "{why}: {log}");
        assert!(!log.contains(tok.expose()), "the token was printed: {log}");
        assert!(!log.contains("plugin loaded"), "nothing is loaded: {log}");
    }
}
