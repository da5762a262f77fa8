//! `[transport]` and `[[transport]]`: one named `default`, several each
//! named, with their own batch, retry and breaker tables, and the errors
//! that name the key and its line.

use std::path::Path;

use super::*;

const INPUT: &str = r#"
[[input]]
type = "file"
name = "sensors"
path = "/var/log/sensors.jsonl"
decoder = { plugin = "jsonl_decoder.wasm" }

[retry]
initial_ms = 100
max_ms = 1000
"#;

const TWO: &str = r#"
[[transport]]
name = "hub"
type = "http"
url = "http://127.0.0.1:8080/v1/batches"
api_key = "k3y"

[[transport]]
name = "archive"
type = "file"
path = "/var/lib/halyard/archive.jsonl"
kinds = ["temp", "halyard."]
retry = { initial_ms = 5, max_ms = 50 }
breaker = { failure_threshold = 2 }
batch = { max_events = 10, max_in_flight = 8 }
"#;

fn parse(text: &str) -> Result<HostConfig, ConfigError> {
    HostConfig::parse(Path::new("halyard.toml"), text, |_| None)
}

#[test]
fn a_single_transport_table_is_the_transport_named_default() {
    let config = parse(&format!("{INPUT}\n[transport]\ntype = \"stdout\"\n")).unwrap();
    assert!(config.transports.single);
    let [only] = &config.transports.list[..] else {
        panic!("{:?}", config.transports)
    };
    assert_eq!(only.name, DEFAULT_TRANSPORT);
    assert_eq!(only.sink, TransportConfig::Stdout);
    assert!(only.kinds.is_empty() && only.retry.is_none());
    // Printed back the way it was written.
    let printed = config.to_masked_toml();
    assert!(printed.contains("[transport]"), "{printed}");
    assert!(!printed.contains("[[transport]]"), "{printed}");
}

#[test]
fn several_transports_each_keep_their_own_settings() {
    let config = parse(&format!("{INPUT}{TWO}")).unwrap();
    assert!(!config.transports.single);
    let [hub, archive] = &config.transports.list[..] else {
        panic!("{:?}", config.transports)
    };
    assert_eq!(
        (hub.name.as_str(), archive.name.as_str()),
        ("hub", "archive")
    );
    assert_eq!(
        hub.retry_or(&config.retry).initial_ms,
        100,
        "top-level [retry]"
    );
    assert_eq!(archive.retry_or(&config.retry).initial_ms, 5);
    assert_eq!(archive.breaker_or(&config.breaker).failure_threshold, 2);
    assert_eq!(hub.breaker_or(&config.breaker).failure_threshold, 5);
    let batch = archive.batch_or(&config.batch);
    assert_eq!((batch.max_events, batch.max_in_flight), (10, 8));
    assert_eq!(archive.kinds, ["temp", "halyard."]);
    assert!(matches!(archive.sink, TransportConfig::File { .. }));
    // Secrets are masked in every transport; the list prints back as one.
    let printed = config.to_masked_toml();
    assert!(!printed.contains("k3y"), "{printed}");
    assert_eq!(printed.matches("[[transport]]").count(), 2, "{printed}");
    let reparsed = parse(&printed).unwrap().transports;
    assert_eq!(reparsed.list[1], config.transports.list[1]);
    assert_eq!(reparsed.list[0].name, "hub");
}

#[test]
fn a_name_used_twice_is_refused_naming_key_and_line() {
    let text = format!("{INPUT}{TWO}").replace("name = \"archive\"", "name = \"hub\"");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("`transport[1].name`"), "{err}");
    assert!(err.contains("`hub` is used twice"), "{err}");
    let line = text.lines().position(|l| l == "name = \"hub\"").unwrap();
    let second = text
        .lines()
        .skip(line + 1)
        .position(|l| l == "name = \"hub\"");
    let expected = line + 1 + second.unwrap() + 1;
    assert!(err.contains(&format!("line {expected}")), "{err}");
}

#[test]
fn bad_names_kinds_and_settings_are_refused_naming_the_key() {
    for (from, to, key) in [
        ("name = \"archive\"", "name = \"\"", "transport[1].name"),
        ("name = \"archive\"", "name = \"a b\"", "transport[1].name"),
        (
            "kinds = [\"temp\", \"halyard.\"]",
            "kinds = [\"\"]",
            "transport[1].kinds",
        ),
        ("max_ms = 50", "max_ms = 1", "transport[1].retry"),
        (
            "failure_threshold = 2",
            "failure_threshold = 0",
            "transport[1].breaker.failure_threshold",
        ),
        (
            "max_events = 10",
            "max_events = 0",
            "transport[1].batch.max_events",
        ),
        ("url = \"http://", "url = \"ftp://", "transport[0].url"),
    ] {
        let text = format!("{INPUT}{TWO}").replace(from, to);
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains(&format!("`{key}`")), "{to}: {err}");
        assert!(err.contains(" line "), "{to}: {err}");
    }
}

#[test]
fn a_transport_without_a_name_or_with_an_unknown_key_is_refused() {
    let text = format!("{INPUT}{TWO}").replace("name = \"hub\"\n", "");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("missing field `name`"), "{err}");

    let text = format!("{INPUT}{TWO}").replace("api_key = \"k3y\"", "api_kee = \"k3y\"");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("unknown field `api_kee`"), "{err}");
    let line = text.lines().position(|l| l.starts_with("api_kee")).unwrap() + 1;
    assert!(
        err.contains(&format!("`api_kee` is on line {line}")),
        "{err}"
    );
}

#[test]
fn transport_and_transport_array_together_are_refused_with_the_line() {
    let text = format!("{INPUT}{TWO}\n[transport]\ntype = \"stdout\"\n");
    let err = parse(&text).unwrap_err().to_string();
    let line = text.lines().position(|l| l == "[transport]").unwrap() + 1;
    assert!(err.contains(&format!("line {line}")), "{err}");

    let text = format!("{INPUT}\n[transport]\ntype = \"stdout\"\n{TWO}");
    let err = parse(&text).unwrap_err().to_string();
    let line = text.lines().position(|l| l == "[[transport]]").unwrap() + 1;
    assert!(err.contains(&format!("line {line}")), "{err}");
}

#[test]
fn no_transport_at_all_is_refused() {
    let err = parse(INPUT).unwrap_err().to_string();
    assert!(err.contains("transport"), "{err}");
    let err = parse(&format!("transport = []\n{INPUT}"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("must list at least one transport"), "{err}");
}
