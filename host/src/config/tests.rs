use std::path::Path;

use super::*;

const MINIMAL: &str = r#"
[[input]]
type = "source"
name = "sim"
interval_ms = 500
[input.source]
plugin = "sim_source.wasm"
config = { devices = 3, rate = 2.5, fault = true, prefix = "sim-" }

[[input]]
type = "file"
name = "sensors"
path = "/var/log/sensors.jsonl"
decoder = { plugin = "jsonl_decoder.wasm" }

[[stages.validate]]
plugin = "range_validator.wasm"
config = { "min.temp" = "0" }
limits = { deadline_ms = 50 }

[transport]
type = "http"
url = "${HUB:-http://127.0.0.1:8080}/v1/batches"
api_key = "${KEY}"
"#;

fn env(name: &str) -> Option<String> {
    (name == "KEY").then(|| "s3cret-key".to_string())
}

fn parse(text: &str) -> Result<HostConfig, ConfigError> {
    HostConfig::parse(Path::new("halyard.toml"), text, env)
}

#[test]
fn parses_with_defaults_and_substitution() {
    let config = parse(MINIMAL).expect("valid");
    assert_eq!(config.inputs.len(), 2);
    match &config.inputs[0] {
        InputConfig::Source {
            source,
            interval_ms,
            max_per_poll,
            ..
        } => {
            assert_eq!(*interval_ms, 500);
            assert_eq!(*max_per_poll, 1000);
            assert_eq!(source.config["devices"].to_string(), "3");
            assert_eq!(source.config["rate"].to_string(), "2.5");
            assert_eq!(source.config["fault"].to_string(), "true");
        }
        other => panic!("{other:?}"),
    }
    match &config.transports.list[0].sink {
        TransportConfig::Http {
            url, api_key, gzip, ..
        } => {
            assert_eq!(url, "http://127.0.0.1:8080/v1/batches");
            assert_eq!(api_key.as_deref(), Some("s3cret-key"));
            assert!(*gzip);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(config.buffer.when_full, WhenFullConfig::DropOldest);
    assert_eq!(config.stages.validate[0].limits.deadline_ms, Some(50));
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let text = MINIMAL.replace("interval_ms = 500", "interval_ms = 500\nintervall = 3");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("`intervall` is on line 6"), "{err}");
    assert!(err.contains("unknown field `intervall`"), "{err}");
}

#[test]
fn wrong_enum_value_lists_the_choices() {
    let text = format!("{MINIMAL}\n[buffer]\nwhen_full = \"drop_random\"\n");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("drop_random"), "{err}");
    assert!(err.contains("drop_oldest"), "{err}");
}

#[test]
fn unset_variable_names_line_and_variable() {
    let err = HostConfig::parse(Path::new("h.toml"), MINIMAL, |_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 24"), "{err}");
    assert!(err.contains("`KEY` is not set"), "{err}");
}

#[test]
fn semantic_errors_name_the_key() {
    let text = MINIMAL.replace("interval_ms = 500", "interval_ms = 0");
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("`input[0].interval_ms` must be at least 1"),
        "{err}"
    );
    let text = MINIMAL.replace("name = \"sensors\"", "name = \"sim\"");
    assert!(
        parse(&text)
            .unwrap_err()
            .to_string()
            .contains("`sim` is used twice")
    );
}

#[test]
fn masked_output_hides_the_api_key() {
    let config = parse(MINIMAL).unwrap();
    let printed = config.to_masked_toml();
    assert!(!printed.contains("s3cret-key"), "{printed}");
    assert!(printed.contains("api_key = \"***\""), "{printed}");
    // The masked text is itself a valid config (with the placeholder key).
    assert!(toml::from_str::<HostConfig>(&printed).is_ok());
}

fn parse_with(text: &str, key: &'static str) -> Result<HostConfig, ConfigError> {
    HostConfig::parse(Path::new("halyard.toml"), text, move |name| {
        (name == "KEY").then(|| key.to_string())
    })
}

#[test]
fn an_env_value_with_quotes_and_newlines_stays_a_plain_string() {
    let evil = "k\"\n[evil]\nx = \"1";
    let config = parse_with(MINIMAL, evil).expect("still valid");
    match &config.transports.list[0].sink {
        TransportConfig::Http { api_key, .. } => assert_eq!(api_key.as_deref(), Some(evil)),
        other => panic!("{other:?}"),
    }
    // Nothing was injected: the printed config has no `[evil]` table and
    // still parses.
    let printed = config.to_masked_toml();
    assert!(!printed.contains("[evil]"), "{printed}");
}

#[test]
fn no_error_quotes_a_value_from_the_environment() {
    const SECRET: &str = "s3cret-\"value\"\nwith-newline";
    // The secret lands where the parser quotes the value it refuses.
    for (what, text) in [
        (
            "enum",
            format!("{MINIMAL}\n[buffer]\nwhen_full = \"${{KEY}}\"\n"),
        ),
        (
            "type",
            MINIMAL.replace("interval_ms = 500", "interval_ms = \"${KEY}\""),
        ),
        (
            "url",
            MINIMAL.replace("${HUB:-http://127.0.0.1:8080}/v1/batches", "${KEY}"),
        ),
    ] {
        let err = parse_with(&text, SECRET).unwrap_err().to_string();
        for part in ["s3cret", "with-newline"] {
            assert!(!err.contains(part), "{what}: secret in {err}");
        }
        assert!(what == "url" || err.contains("${KEY}"), "{what}: {err}");
    }
}

#[test]
fn out_of_range_limits_are_refused_naming_key_and_line() {
    let limits = "limits = { deadline_ms = 50 }";
    for (replacement, key, says) in [
        (
            "limits = { deadline_ms = 0 }",
            "stages.validate[0].limits.deadline_ms",
            "between 1 and 60000",
        ),
        (
            "limits = { deadline_ms = 60001 }",
            "stages.validate[0].limits.deadline_ms",
            "(is 60001)",
        ),
        (
            "limits = { deadline_per_event_us = 10001 }",
            "stages.validate[0].limits.deadline_per_event_us",
            "between 0 and 10000 microseconds (is 10001)",
        ),
        (
            "limits = { memory_mb = 9223372036854775807 }",
            "stages.validate[0].limits.memory_mb",
            "between 1 and 4096 MiB",
        ),
        (
            "limits = { memory_mb = 0 }",
            "stages.validate[0].limits.memory_mb",
            "(is 0)",
        ),
        (
            "limits = { max_memories = 0 }",
            "stages.validate[0].limits.max_memories",
            "between 1 and 1000 (is 0)",
        ),
        (
            "limits = { max_instances = 10000000 }",
            "stages.validate[0].limits.max_instances",
            "(is 10000000)",
        ),
    ] {
        let err = parse(&MINIMAL.replace(limits, replacement))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("config halyard.toml line 19: `{key}` ")),
            "{err}"
        );
        assert!(err.contains(says), "{err}");
    }
    let decoder = MINIMAL.replace(
        "decoder = { plugin = \"jsonl_decoder.wasm\" }",
        "decoder = { plugin = \"jsonl_decoder.wasm\", limits = { memory_mb = 5000 } }",
    );
    let err = parse(&decoder).unwrap_err().to_string();
    assert!(
        err.contains("line 14: `input[1].decoder.limits.memory_mb` must be between"),
        "{err}"
    );
    let text = format!("{MINIMAL}\n[plugins]\nmax_file_mb = 0\n");
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("`plugins.max_file_mb` must be between 1 and 1024"),
        "{err}"
    );
    let text = format!("{MINIMAL}\n[reload]\ndebounce_ms = 18446744073709551615\n");
    assert!(
        parse(&text).is_err(),
        "u64::MAX ms is refused (by TOML or the range)"
    );
    let text = format!("{MINIMAL}\n[reload]\ndebounce_ms = 9223372036854775807\n");
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("`reload.debounce_ms` must be between 0 and"),
        "{err}"
    );
    let text = format!("{MINIMAL}\n[health]\ndamage_degraded_ms = 9223372036854775807\n");
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("`health.damage_degraded_ms` must be between 0 and"),
        "{err}"
    );
}

#[test]
fn limits_at_the_edges_are_accepted() {
    let text = MINIMAL.replace(
        "limits = { deadline_ms = 50 }",
        "limits = { deadline_ms = 60000, memory_mb = 4096 }",
    );
    let config = parse(&text).expect("in range");
    assert_eq!(config.stages.validate[0].limits.memory_mb, Some(4096));
    assert_eq!(config.plugins.max_file_mb, 64);
}

#[test]
fn a_config_path_that_is_a_fifo_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("halyard.toml");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    // Without the check this read would wait for a writer forever.
    let err = HostConfig::load(&fifo).unwrap_err().to_string();
    assert!(err.contains("is a FIFO (named pipe)"), "{err}");
}

#[test]
fn the_network_grant_is_a_flag_or_an_allow_list_checked_as_it_is_parsed() {
    use crate::plugin::NetworkGrant;
    let limits = "limits = { deadline_ms = 50 }";
    let with = |grant: &str| {
        parse(&MINIMAL.replace(
            limits,
            &format!("{limits}\ngrants = {{ network = {grant} }}"),
        ))
    };
    let grant = |config: &HostConfig| config.stages.validate[0].grants.network.0.clone();
    assert_eq!(grant(&with("true").unwrap()), NetworkGrant::Any);
    assert_eq!(grant(&with("false").unwrap()), NetworkGrant::None);
    let NetworkGrant::Allow(rules) =
        grant(&with(r#"["127.0.0.1:9000", "*:443", "[::1]:*"]"#).unwrap())
    else {
        panic!("an allow-list")
    };
    let shown: Vec<String> = rules.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["127.0.0.1:9000", "*:443", "[::1]:*"]);
    let err = with(r#"["localhost:80"]"#).unwrap_err().to_string();
    assert!(
        err.contains("line 20") && err.contains("`localhost:80` is not IP:PORT"),
        "{err}"
    );
}

#[test]
fn a_file_inputs_line_limit_defaults_to_1_mib_and_is_range_checked() {
    let config = parse(MINIMAL).unwrap();
    let Some(InputConfig::File { max_line_bytes, .. }) = config.inputs.get(1) else {
        panic!("input[1] is the file input");
    };
    assert_eq!(*max_line_bytes, 1 << 20);
    let path = "path = \"/var/log/sensors.jsonl\"";
    for (value, ok) in [
        ("63", false),
        ("64", true),
        ("16777216", true),
        ("16777217", false),
    ] {
        let text = MINIMAL.replace(path, &format!("{path}\nmax_line_bytes = {value}"));
        match parse(&text) {
            Ok(_) => assert!(ok, "{value} accepted"),
            Err(err) => {
                let err = err.to_string();
                assert!(!ok, "{value} refused: {err}");
                assert!(
                    err.contains("`input[1].max_line_bytes` must be between 64 and 16777216"),
                    "{err}"
                );
            }
        }
    }
}

#[test]
fn a_rollout_needs_trusted_keys_and_https() {
    let key = halyard_trust::KeyPair::generate().unwrap().public_key();
    let with = |tables: &str| parse(&format!("{MINIMAL}\n{tables}"));
    let err = with("[rollout]\nmanifest_url = \"https://hub/m.json\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`rollout.manifest_url` needs [plugins] trusted_keys"),
        "{err}"
    );
    let keys = format!("[plugins]\ntrusted_keys = [\"{key}\"]\n");
    let err = with(&format!(
        "{keys}[rollout]\nmanifest_url = \"http://hub/m.json\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("must start with https://"), "{err}");
    with(&format!(
        "{keys}[rollout]\nmanifest_url = \"https://hub/m.json\"\n"
    ))
    .unwrap();
    with(&format!(
        "{keys}[rollout]\nmanifest_url = \"http://127.0.0.1/m.json\"\ninsecure_http = true\n"
    ))
    .unwrap();
}

#[test]
fn an_mqtt_input_parses_checks_and_masks_its_password() {
    let text = |extra: &str| {
        format!(
            "[[input]]\ntype = \"mqtt\"\nname = \"m\"\nbroker = \"b:1883\"\n\
             topics = [\"sensors/+/+\"]\nusername = \"u\"\npassword = \"${{KEY}}\"\n{extra}\
             decoder = {{ plugin = \"jsonl_decoder.wasm\" }}\n\n\
             [transport]\ntype = \"stdout\"\n"
        )
    };
    let config = parse(&text("")).expect("valid");
    let InputConfig::Mqtt(mqtt) = &config.inputs[0] else {
        panic!("an mqtt input: {:?}", config.inputs[0]);
    };
    assert_eq!(
        mqtt.password.as_ref().map(|p| p.secret().expose()),
        Some("s3cret-key")
    );
    assert_eq!(config.inputs[0].name(), "m");
    let shown = config.to_masked_toml();
    assert!(
        !shown.contains("s3cret") && shown.contains("type = \"mqtt\""),
        "{shown}"
    );

    let err = parse(&text("colour = \"red\"\n")).expect_err("unknown key");
    assert!(err.to_string().contains("colour"), "{err}");
    let err = parse(&text("max_message_bytes = 10\n")).expect_err("out of range");
    assert!(
        err.to_string().contains("input[0].max_message_bytes"),
        "{err}"
    );
}

#[test]
fn pipeline_workers_default_to_the_cpus_and_zero_is_refused_naming_key_and_line() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.pipeline.workers, None);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(config.pipeline.workers(), cpus);
    let text = format!("{MINIMAL}\n[pipeline]\nworkers = 3\n");
    assert_eq!(parse(&text).unwrap().pipeline.workers(), 3);
    let text = format!("{MINIMAL}\n[pipeline]\nworkers = 0\n");
    let line = text.lines().position(|l| l == "workers = 0").unwrap() + 1;
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "line {line}: `pipeline.workers` must be between 1 and 256 (is 0)"
        )),
        "{err}"
    );
    let text = format!("{MINIMAL}\n[pipeline]\nworker = 2\n");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("worker"), "{err}");
}

#[test]
fn the_deadline_per_event_reaches_the_plugin_limits() {
    let text = MINIMAL.replace(
        "limits = { deadline_ms = 50 }",
        "limits = { deadline_ms = 50, deadline_per_event_us = 300 }",
    );
    let config = parse(&text).expect("valid");
    let options = crate::pipeline::plugin_options(&config.stages.validate[0]);
    assert_eq!(
        options.limits.deadline_for(1000),
        std::time::Duration::from_millis(350)
    );
    // Unset: the default 100 µs per event.
    let config = parse(MINIMAL).expect("valid");
    let options = crate::pipeline::plugin_options(&config.stages.validate[0]);
    assert_eq!(
        options.limits.deadline_for(1000),
        std::time::Duration::from_millis(150)
    );
}

#[test]
fn the_status_token_is_substituted_checked_and_never_printed() {
    let text = format!("{MINIMAL}\n[health]\nlisten = \"0.0.0.0:9464\"\ntoken = \"${{KEY}}\"\n");
    let config = parse(&text).unwrap();
    assert_eq!(
        config.health.token.as_ref().map(|t| t.expose()),
        Some("s3cret-key")
    );
    let printed = config.to_masked_toml();
    assert!(!printed.contains("s3cret-key"), "{printed}");
    assert!(printed.contains("token = \"***\""), "{printed}");
    for bad in ["\"\"", "\"two words\""] {
        let text = format!("{MINIMAL}\n[health]\ntoken = {bad}\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("health.token"), "{err}");
        assert!(
            !err.contains("two words"),
            "the value is not repeated: {err}"
        );
    }
}

#[test]
fn a_system_input_reads_every_family_by_default_and_its_keys_are_checked() {
    let system = "[[input]]\ntype = \"system\"\nname = \"device\"\n";
    let config = parse(&format!("{system}{MINIMAL}")).unwrap();
    let Some(InputConfig::System {
        interval_ms,
        metrics,
        ..
    }) = config.inputs.first()
    else {
        panic!("input[0] is the system input");
    };
    assert_eq!(*interval_ms, 10_000);
    assert_eq!(metrics.len(), 7);
    let err = parse(&format!("{system}interval_ms = 99\n{MINIMAL}"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("line 4") && err.contains("`input[0].interval_ms` must be between 100"),
        "{err}"
    );
    let err = parse(&format!("{system}metrics = [\"cpu\", \"gpu\"]\n{MINIMAL}"))
        .unwrap_err()
        .to_string();
    // The input's table line (serde's tagged enums keep no finer span).
    assert!(
        err.contains("line 1") && err.contains("unknown variant `gpu`"),
        "{err}"
    );
    assert!(err.contains("temperature"), "the choices are listed: {err}");
}

#[test]
fn the_audit_trail_is_on_by_default_and_its_bound_is_checked() {
    let config = parse(MINIMAL).unwrap();
    assert!(config.audit.enabled);
    assert_eq!(config.audit.max_rows, 10_000);
    let err = parse(&format!("{MINIMAL}\n[audit]\nmax_rows = 0\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`audit.max_rows` must be between 1"), "{err}");
    let err = parse(&format!("{MINIMAL}\n[audit]\nmax_row = 5\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_row"), "{err}");
}
