//! `halyard config check` reports what `halyard run` would refuse, each
//! cause once, exits non-zero on any; `${VAR}` values stay plain strings
//! and are never quoted in an error.

use halyard_test_components as components;
use halyard_trust::KeyPair;
use halyard_trust::licence::{Claims, Features, Scope, issue};

use crate::pipeline_support::{Scenario, file_transport};
use crate::support::{halyard, halyard_with_env, run_refused, text};

/// `config check` on the scenario's config.
fn check(s: &Scenario, licensed: bool) -> (Option<i32>, String, String) {
    let out = halyard(&["config", "check", s.config.to_str().unwrap()], licensed);
    let (stdout, stderr) = text(&out);
    (out.status.code(), stdout, stderr)
}

/// The scenario's config with `replace` applied.
fn write(s: &Scenario, replace: &[(&str, &str)]) {
    s.write_config_with(&file_transport(&s.path("out.jsonl")), replace);
}

fn plugin(path: &str) -> String {
    format!("plugin = \"{path}\"")
}

#[test]
fn a_good_config_loads_and_starts_every_plugin() {
    let s = Scenario::new();
    write(&s, &[]);
    let (code, stdout, stderr) = check(&s, false);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("config ok: 4 plugin(s) loaded and started"),
        "{stderr}"
    );
    assert!(stdout.contains("[[stages.validate]]"), "{stdout}");
}

#[test]
fn init_failures_wrong_kinds_and_missing_files_are_reported_as_run_reports_them() {
    let s = Scenario::new();
    let missing = s.path("missing.wasm");
    let init = [(
        "config = { \"min.temp\" = 0 }",
        "config = { \"min.temp\" = \"zero\" }",
    )];
    let wrong_kind = [(
        plugin(components::FRACTION_SAMPLER),
        plugin(components::RANGE_VALIDATOR),
    )];
    let missing_file = [(
        plugin(components::REDACT_PRIVACY),
        plugin(missing.to_str().unwrap()),
    )];
    /// What is wrong, the config edits that make it so, the error line.
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, String);
    let cases: [Case; 3] = [
        (
            "init",
            init.to_vec(),
            format!(
                "stages.validate[0] plugin {}: plugin refused its config (key `min.temp`)",
                components::RANGE_VALIDATOR
            ),
        ),
        (
            "wrong kind",
            wrong_kind
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect(),
            format!(
                "stages.sample[0] plugin {}: missing export `sample`: a sampler must export",
                components::RANGE_VALIDATOR
            ),
        ),
        (
            "missing file",
            missing_file
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect(),
            format!(
                "stages.privacy[0] plugin {0}: cannot read {0}: No such file or directory (os error 2)",
                missing.display()
            ),
        ),
    ];
    let mut all = Vec::new();
    for (what, replace, says) in &cases {
        write(&s, replace);
        let (code, stdout, stderr) = check(&s, false);
        assert_eq!(code, Some(1), "{what}: {stderr}");
        assert!(stdout.is_empty(), "{what}: no config printed: {stdout}");
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{what}: one problem: {stderr}");
        assert!(
            errors[0].starts_with(&format!("error: {says}")),
            "{what}: {stderr}"
        );
        // Each cause once (the causes used to repeat through `source()`).
        let cause = says.rsplit(": ").next().unwrap();
        assert_eq!(errors[0].matches(cause).count(), 1, "{what}: {stderr}");
        assert!(stderr.contains("1 problem(s): `halyard run` would refuse this config"));
        // `run` refuses the same config with the same words.
        let log = run_refused(&s.config);
        let run_error = log.lines().find(|l| l.starts_with("error: ")).unwrap();
        assert_eq!(run_error, errors[0], "{what}: run and check agree");
        all.extend(replace.iter().copied());
    }
    // All three at once: every problem is reported, not just the first.
    write(&s, &all);
    let (code, _, stderr) = check(&s, false);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("3 problem(s)"), "{stderr}");
}

#[test]
fn a_bad_or_missing_licence_is_reported() {
    let s = Scenario::new();
    let vendor = KeyPair::generate().unwrap();
    let intruder = KeyPair::generate().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = |key: &KeyPair| {
        issue(
            &Claims {
                licensee: "Acme Test".into(),
                scope: Scope::default(),
                issued_at: now - 60,
                expires_at: now + 3600,
                features: Features::default(),
                grace_hours: None,
            },
            key,
        )
    };
    let section = |tok: &str| {
        format!(
            "{}\n[licence]\ntoken = \"{tok}\"\npublic_keys = [\"{}\"]\n",
            file_transport(&s.path("out.jsonl")),
            vendor.public_key()
        )
    };
    let good = token(&vendor);
    s.write_config(&section(good.expose()));
    let (code, stdout, stderr) = check(&s, true);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stdout.contains(good.expose()) && !stderr.contains(good.expose()));

    let forged = token(&intruder);
    s.write_config(&section(forged.expose()));
    let (code, stdout, stderr) = check(&s, true);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("error: licence refused: ") && stderr.contains("forged or wrong key"),
        "{stderr}"
    );
    assert!(!stdout.contains(forged.expose()) && !stderr.contains(forged.expose()));

    write(&s, &[]);
    let (code, _, stderr) = check(&s, true);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("error: no licence"), "{stderr}");
}

#[test]
fn out_of_range_limits_are_refused_naming_the_key_and_line() {
    let s = Scenario::new();
    let deadline = "limits = { deadline_ms = 5000 }\nconfig = { \"min.temp\" = 0 }";
    for (limits, key, says) in [
        (
            "deadline_ms = 0",
            "stages.validate[0].limits.deadline_ms",
            "must be between 1 and 60000 milliseconds (is 0)",
        ),
        (
            "deadline_ms = 60001",
            "stages.validate[0].limits.deadline_ms",
            "must be between 1 and 60000 milliseconds (is 60001)",
        ),
        (
            // Would wrap to 0 bytes in `memory_mb << 20` without the check.
            "memory_mb = 17592186044416",
            "stages.validate[0].limits.memory_mb",
            "must be between 1 and 4096 MiB (is 17592186044416)",
        ),
    ] {
        let replaced = format!("limits = {{ {limits} }}\nconfig = {{ \"min.temp\" = 0 }}");
        write(&s, &[(deadline, &replaced)]);
        let text = std::fs::read_to_string(&s.config).unwrap();
        let line = text.lines().position(|l| l.contains(limits)).unwrap() + 1;
        let expected = format!(
            "error: config {} line {line}: `{key}` {says}",
            s.config.display()
        );
        let (code, _, stderr) = check(&s, false);
        assert_eq!(code, Some(1), "{stderr}");
        assert_eq!(stderr.trim_end(), expected);
        let log = run_refused(&s.config);
        assert!(log.contains(&expected), "run refuses it too: {log}");
    }
}

#[test]
fn env_values_stay_plain_strings_and_never_appear_in_errors() {
    let s = Scenario::new();
    let evil = "e2e\"\n[evil]\nkey = \"x";
    write(&s, &[("salt = \"e2e\"", "salt = \"${TEST_SALT}\"")]);
    let out = halyard_with_env(
        &["config", "check", s.config.to_str().unwrap()],
        false,
        &[("TEST_SALT", evil)],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let printed: toml::Table = toml::from_str(&stdout).expect("printed config parses");
    assert!(!printed.contains_key("evil"), "{stdout}");
    assert_eq!(
        printed["stages"]["privacy"][0]["config"]["salt"].as_str(),
        Some(evil),
        "the value is one plain string"
    );

    // A secret where the parser quotes the value it refuses.
    s.write_config(&format!(
        "{}\n[buffer]\nwhen_full = \"${{TEST_API_KEY}}\"\n",
        file_transport(&s.path("out.jsonl"))
    ));
    let out = halyard_with_env(
        &["config", "check", s.config.to_str().unwrap()],
        false,
        &[("TEST_API_KEY", "top-secret-value")],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("unknown variant `${TEST_API_KEY}`"),
        "{stderr}"
    );
    assert!(
        !stdout.contains("top-secret") && !stderr.contains("top-secret"),
        "{stderr}"
    );
}

/// Every example config under `examples/` passes `config check` (parse,
/// ranges, and every plugin loaded and started), with its plugin paths
/// pointed at the guests this test build compiled and its data directory
/// in a temp dir.
#[test]
fn the_example_configs_pass_config_check() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for name in [
        "quickstart.toml",
        "mqtt-input.toml",
        "nats-output.toml",
        "redis-output.toml",
        "mqtt-output.toml",
        "otlp-output.toml",
        "fleet.toml",
        "device-metrics.toml",
    ] {
        let s = Scenario::new();
        let mut text = std::fs::read_to_string(examples.join(name)).expect("example config");
        for (path, _) in components::EXAMPLES {
            let file = std::path::Path::new(path).file_name().unwrap();
            let relative = format!(
                "target/guests/wasm32-wasip2/release/{}",
                file.to_str().unwrap()
            );
            text = text.replace(&relative, path);
        }
        let data_dir = text
            .lines()
            .find(|l| l.starts_with("data_dir = "))
            .expect("a data_dir")
            .to_string();
        text = text.replace(&data_dir, &format!("data_dir = \"{}\"", s.data.display()));
        std::fs::write(&s.config, text).unwrap();
        let (code, stdout, stderr) = check(&s, false);
        assert_eq!(code, Some(0), "{name}: {stderr}");
        assert!(stderr.contains("config ok"), "{name}: {stderr}");
        assert!(
            !stdout.contains("\"target/guests/"),
            "{name}: every plugin path replaced"
        );
    }
}

/// An mqtt input: its password never printed, a bad topic filter named by
/// key, a CA file that is missing refused by `config check` as by `run`.
#[test]
fn mqtt_input_secrets_filters_and_ca_file_are_checked() {
    let s = Scenario::new();
    let write = |topic: &str, extra: &str| {
        let input = format!(
            "[[input]]\ntype = \"mqtt\"\nname = \"m\"\nbroker = \"127.0.0.1:1883\"\n\
             topics = [\"{topic}\"]\nusername = \"u\"\npassword = \"${{MQTT_PW}}\"\n{extra}{}",
            crate::pipeline_support::decoder_line()
        );
        let text = crate::pipeline_support::config_with_input(
            &s.data,
            &input,
            &file_transport(&s.path("out.jsonl")),
        );
        std::fs::write(&s.config, text).unwrap();
    };
    let env = [("MQTT_PW", "pw-never-shown")];
    let args = ["config", "check", s.config.to_str().unwrap()];
    write("sensors/#", "");
    let out = halyard_with_env(&args, false, &env);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("password = \"***\""), "{stdout}");
    assert!(!stdout.contains("pw-never") && !stderr.contains("pw-never"));

    write("a/#/b", "");
    let (_, stderr) = text(&halyard_with_env(&args, false, &env));
    assert!(
        stderr.contains("input[0].topics[0]") && stderr.contains("`#` must be a whole level"),
        "{stderr}"
    );

    let missing = s.path("no-ca.pem");
    write(
        "sensors/#",
        &format!("tls = {{ ca_file = \"{}\" }}\n", missing.display()),
    );
    let out = halyard_with_env(&args, false, &env);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("input `m`: tls.ca_file") && stderr.contains("no-ca.pem"),
        "{stderr}"
    );
}
