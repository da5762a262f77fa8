//! The audit trail: lifecycle events kept in `data_dir/audit.db` across
//! restarts, read back with `halyard audit` (filters, JSON, the row bound),
//! against the real binary.

use std::process::Command;
use std::time::Duration;

use crate::support::{
    Host, Scenario, file_transport, wait_for, wait_until_ingested, write_sensor_lines,
};

/// `halyard audit --config <s.config> <args>`: (exit code, stdout, stderr).
fn audit(s: &Scenario, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_halyard"))
        .args(["audit", "--config", s.config.to_str().unwrap()])
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The kinds `halyard audit --json` prints, in order.
fn kinds(s: &Scenario, args: &[&str]) -> Vec<String> {
    try_kinds(s, args).unwrap_or_else(|stderr| panic!("halyard audit failed: {stderr}"))
}

/// [`kinds`], or the error `halyard audit` printed (no trail yet).
fn try_kinds(s: &Scenario, args: &[&str]) -> Result<Vec<String>, String> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = audit(s, &all);
    if code != 0 {
        return Err(stderr);
    }
    Ok(stdout
        .lines()
        .map(|l| {
            let row: serde_json::Value = serde_json::from_str(l).expect("a JSON row");
            assert!(
                row["seq"].as_i64().is_some() && row["ts"].is_string(),
                "{l}"
            );
            row["kind"].as_str().unwrap().to_string()
        })
        .collect())
}

#[test]
fn the_trail_keeps_two_runs_and_a_refused_reload_and_filters_them() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    s.write_config(&file_transport(&out));
    write_sensor_lines(&s.input, 0, 100);

    let host = Host::start(&s.config);
    wait_until_ingested(&s, &host);
    // A reload that must be refused: the old config keeps running.
    let good = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        good.replace("max_events = 250", "max_events = 0"),
    )
    .unwrap();
    host.hup();
    wait_for(
        "the refused reload in the trail",
        Duration::from_secs(30),
        || kinds(&s, &["--kind", "config"]) == ["config.rejected"],
    );
    std::fs::write(&s.config, &good).unwrap();
    host.stop();
    let host = Host::start(&s.config);
    wait_until_ingested(&s, &host);
    host.stop();

    let all = kinds(&s, &[]);
    let count = |k: &str| all.iter().filter(|x| *x == k).count();
    assert_eq!(count("host.start"), 2, "{all:?}");
    assert_eq!(count("host.stop"), 2, "{all:?}");
    assert_eq!(count("config.rejected"), 1, "{all:?}");
    // Each run: its four plugins (decoder, validator, privacy, sampler)
    // loaded, then started, then stopped; the refused reload in between.
    let run = |middle: &[&'static str]| -> Vec<&'static str> {
        let mut r = vec!["plugin.loaded"; 4];
        r.push("host.start");
        r.extend_from_slice(middle);
        r.push("host.stop");
        r
    };
    assert_eq!(all, [run(&["config.rejected"]), run(&[])].concat());
    // Families, exact kinds, the newest N, and time.
    assert_eq!(
        kinds(&s, &["--kind", "host"]),
        ["host.start", "host.stop", "host.start", "host.stop"]
    );
    assert_eq!(
        kinds(&s, &["--kind", "host.stop", "--limit", "1"]),
        ["host.stop"]
    );
    assert!(kinds(&s, &["--since", "2999-01-01T00:00:00Z"]).is_empty());
    assert_eq!(kinds(&s, &["--since", "1h"]).len(), all.len());
    // The human form: a header and one line per event.
    let (code, text, _) = audit(&s, &["--kind", "config"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains("KIND") && lines[1].contains("config.rejected"));
    assert!(
        lines[1].contains("batch.max_events"),
        "the reason is kept: {text}"
    );
    // A bad filter is refused with the reason.
    let (code, _, stderr) = audit(&s, &["--since", "yesterday"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("RFC 3339"), "{stderr}");
}

#[test]
fn the_trail_keeps_at_most_max_rows_and_says_how_many_went() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    s.write_config(&format!(
        "{}\n\n[audit]\nmax_rows = 3",
        file_transport(&out)
    ));
    write_sensor_lines(&s.input, 0, 10);
    for _ in 0..2 {
        let host = Host::start(&s.config);
        wait_until_ingested(&s, &host);
        host.stop();
    }
    let kept = kinds(&s, &[]);
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert_eq!(kept.last().map(String::as_str), Some("host.stop"));
    let (_, _, stderr) = audit(&s, &[]);
    assert!(stderr.contains("older events were evicted"), "{stderr}");
}

#[test]
fn a_host_that_never_ran_has_no_trail() {
    let s = Scenario::new();
    s.write_config(&file_transport(&s.path("out.jsonl")));
    let (code, _, stderr) = audit(&s, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no audit trail"), "{stderr}");
}

#[test]
fn breaker_transitions_are_in_the_trail_even_after_kill_9() {
    let s = Scenario::new();
    // Nothing listens there: every delivery fails and the breaker opens.
    let [dead] = crate::operate_support::free_ports::<1>();
    s.write_config_with(
        &crate::support::http_transport(&format!("http://{dead}/ingest"), None),
        &[("[breaker]\n", "[breaker]\nfailure_threshold = 2\n")],
    );
    write_sensor_lines(&s.input, 0, 10);
    let host = Host::start(&s.config);
    wait_for("breaker.open in the trail", Duration::from_secs(60), || {
        try_kinds(&s, &["--kind", "breaker"])
            .is_ok_and(|k| k.first().is_some_and(|k| k == "breaker.open"))
    });
    host.kill9();
    let all = kinds(&s, &[]);
    assert_eq!(all.iter().filter(|k| *k == "host.start").count(), 1);
    assert!(!all.iter().any(|k| k == "host.stop"), "{all:?}");
    assert!(all.iter().any(|k| k == "breaker.open"), "{all:?}");
}
