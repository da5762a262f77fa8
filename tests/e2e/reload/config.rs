//! Config-file reload while the host serves: plugin config, stage chains
//! and batching apply live, other sections are named as needing a restart,
//! a bad change is refused whole; and `[reload] on_remove = "unload"`.

use std::time::Duration;

use halyard_test_components as components;

use crate::pipeline_support::wait_for;
use crate::support::{PER_REQUEST, Served, Setup, deploy, plugin_status, start};

/// How long a config reload may take to show (debug build, busy machine).
const RELOAD_BOUND: Duration = Duration::from_secs(30);

/// Rewrites the host's config file the way an operator should (temp file
/// in the same directory, then rename) with `edit` applied.
fn edit_config(h: &Setup, edit: impl FnOnce(String) -> String) {
    let path = &h._s.config;
    let text = std::fs::read_to_string(path).unwrap();
    let new = edit(text);
    let tmp = path.with_file_name(".halyard.toml.tmp");
    std::fs::write(&tmp, new).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `text` with `from` replaced by `to`; `from` must be there.
fn replace(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "config has no `{from}`:\n{text}");
    text.replacen(from, to, 1)
}

/// Waits until the host has published `n` lifecycle events of `kind` and
/// returns the last one's payload.
fn nth_event(h: &Setup, kind: &str, n: usize) -> serde_json::Value {
    wait_for(&format!("{kind} #{n}"), RELOAD_BOUND, || {
        h.lifecycle(kind).len() >= n
    });
    let events = h.lifecycle(kind);
    assert_eq!(events.len(), n, "{kind}: {events:?}");
    events[n - 1].clone()
}

/// Every `/plugins` entry of stage `stage`.
fn stages(h: &Setup, stage: &str) -> Vec<serde_json::Value> {
    let (_, all) = h
        .client
        .get_json(&format!("http://{}/plugins", h.run.status));
    let list = all["plugins"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| all.as_array().cloned().unwrap_or_default());
    list.into_iter().filter(|p| p["stage"] == stage).collect()
}

/// One config file change after another, under load, each checked from
/// exact counts: a validator's config (v1 rejects the readings, the new
/// config accepts them), `[batch]` (the next 20 events arrive as exactly 4
/// batches of 5), `[retry]` (reported applied; its effect on a waiting
/// batch is tested in the transport's paused-time tests), a second validator added to the chain and taken out
/// again (the first keeps its stage and counters), a `[buffer]` change
/// reported as needing a restart, then a chain entry naming a garbage
/// component and a malformed file, both refused whole while the running
/// config keeps serving. Nothing is lost or duplicated.
#[test]
fn config_changes_apply_live_and_bad_ones_are_refused_whole() {
    let mut h = start("", "", |_| Vec::new());
    for _ in 0..3 {
        assert_eq!(h.send(), Served::V1);
    }

    // 1. Plugin config and batching live; the buffer needs a restart.
    edit_config(&h, |t| {
        let t = replace(&t, "\"min.temp\" = 0", "\"min.temp\" = -10");
        let t = replace(
            &t,
            "[batch]\nmax_events = 250\nmax_age_ms = 100",
            "[batch]\nmax_events = 5\nmax_age_ms = 600000",
        );
        let t = replace(&t, "initial_ms = 20", "initial_ms = 30");
        replace(&t, "[shutdown]", "[buffer]\nmax_mb = 300\n\n[shutdown]")
    });
    let reloaded = nth_event(&h, "config.reloaded", 1);
    let applied: Vec<&str> = reloaded["applied"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(applied, ["stages (chains)", "batch", "retry"], "{reloaded}");
    assert_eq!(reloaded["needs_restart"], serde_json::json!(["buffer"]));
    let batches_before = h.receiver.stats().batches;
    assert_eq!(
        h.send(),
        Served::V2,
        "the new validator config serves at once"
    );
    wait_for("20 events in batches of 5", RELOAD_BOUND, || {
        h.receiver.stats().events_stored == PER_REQUEST
    });
    assert_eq!(
        h.receiver.stats().batches - batches_before,
        PER_REQUEST / 5,
        "max_events = 5 cuts 20 events into 4 batches"
    );
    let first = stages(&h, "validate");
    assert_eq!(first.len(), 1);
    let calls_before = first[0]["calls"].as_u64().unwrap();
    assert_eq!(calls_before, 4, "reconfigured in place: counters kept");
    assert_eq!(h.lifecycle("plugin.reloaded").len(), 1);

    // 2. A second validator (v1's config: rejects the readings) joins the
    // chain, then leaves it; the first keeps its stage and counters.
    let second = format!(
        "[[stages.validate]]\nplugin = \"{}\"\nconfig = {{ \"min.temp\" = 0 }}\n\n[[stages.privacy]]",
        components::RANGE_VALIDATOR
    );
    edit_config(&h, |t| replace(&t, "[[stages.privacy]]", &second));
    let reloaded = nth_event(&h, "config.reloaded", 2);
    assert_eq!(reloaded["applied"], serde_json::json!(["stages (chains)"]));
    assert_eq!(h.send(), Served::V1, "the added validator rejects");
    let both = stages(&h, "validate");
    assert_eq!(both.len(), 2, "{both:?}");
    assert_eq!(
        both[0]["calls"].as_u64().unwrap(),
        calls_before + 1,
        "the first validator kept its counters"
    );
    edit_config(&h, |t| replace(&t, &second, "[[stages.privacy]]"));
    nth_event(&h, "config.reloaded", 3);
    assert_eq!(h.send(), Served::V2);
    assert_eq!(stages(&h, "validate").len(), 1);
    assert_eq!(
        h.lifecycle("plugin.removed").len(),
        1,
        "the second validator"
    );

    // 3. A chain entry naming a garbage component: refused whole.
    let garbage = h.plugins.join("garbage.wasm");
    deploy(&garbage, b"not a component", None);
    let bad = format!(
        "[[stages.validate]]\nplugin = \"{}\"\n\n[[stages.privacy]]",
        garbage.display()
    );
    edit_config(&h, |t| {
        let t = replace(&t, "[[stages.privacy]]", &bad);
        replace(&t, "max_events = 5", "max_events = 7")
    });
    let refused = nth_event(&h, "config.rejected", 1);
    let reason = refused["reason"].as_str().unwrap();
    assert!(reason.contains("stages.validate[1]"), "{reason}");
    assert_eq!(h.send(), Served::V2, "the running chain keeps serving");
    assert_eq!(stages(&h, "validate").len(), 1);

    // 4. A malformed file: refused with the line.
    edit_config(&h, |t| replace(&t, "[batch]", "[batch\n"));
    let refused = nth_event(&h, "config.rejected", 2);
    assert!(
        refused["reason"].as_str().unwrap().contains("line"),
        "{refused}"
    );
    assert_eq!(h.send(), Served::V2);
    assert_eq!(h.lifecycle("config.reloaded").len(), 3);
    // The batch limit of the refused change (7) never applied: 40 more
    // events, still cut in fives.
    wait_for("every accepted event stored", RELOAD_BOUND, || {
        h.receiver.stats().events_stored == h.accepted
    });
    assert_eq!(
        h.receiver.stats().batches - batches_before,
        h.accepted / 5,
        "batches of 5 throughout"
    );
    h.finish();
}

/// With `on_remove = "unload"`, deleting the validator's file unloads it:
/// `/plugins` says `unloaded`, `/health` is degraded, and its events are
/// dead-lettered with the reason (validators fail closed) without calling
/// it; deploying a file again loads it. Counts are exact throughout.
#[test]
fn a_removed_file_unloads_its_plugin_when_configured_and_a_new_file_restores_it() {
    let mut h = start("", "[reload]\non_remove = \"unload\"\n", |_| Vec::new());
    let v2 = std::fs::read(components::HOSTILE_VALIDATOR).unwrap();
    deploy(&h.plugins.join("validator.wasm"), &v2, None);
    h.send_until(Served::V2, 5000);

    std::fs::remove_file(h.plugins.join("validator.wasm")).unwrap();
    wait_for("the validator to be unloaded", RELOAD_BOUND, || {
        plugin_status(&h.client, h.run.status, "validate")["state"] == "unloaded"
    });
    let calls = h.validator_status()["calls"].as_u64().unwrap();
    let rejected_before = h.rejected;
    for _ in 0..3 {
        assert_eq!(h.send(), Served::V1, "unloaded validator fails closed");
    }
    assert_eq!(h.rejected - rejected_before, 3 * PER_REQUEST);
    let status = h.validator_status();
    assert_eq!(status["calls"].as_u64().unwrap(), calls, "never called");
    assert_eq!(h.lifecycle("plugin.unloaded").len(), 1);
    let (_, health) = h
        .client
        .get_json(&format!("http://{}/health", h.run.status));
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(health.to_string().contains("unloaded"), "{health}");

    // The same content deployed again loads again.
    deploy(&h.plugins.join("validator.wasm"), &v2, None);
    h.send_until(Served::V2, 5000);
    assert_eq!(h.validator_status()["state"], "active");
    h.finish();
}

/// With file watching off, a config edit changes nothing until SIGHUP; the
/// signal then reloads the config (the validator's new config serves) and
/// re-checks the plugin files (a v2 deployed meanwhile is swapped in).
#[test]
fn sighup_reloads_the_config_and_the_plugins_when_watching_is_off() {
    let mut h = start("", "[reload]\nenabled = false\n", |_| Vec::new());
    assert_eq!(h.send(), Served::V1);
    edit_config(&h, |t| {
        replace(&t, "\"min.temp\" = 0", "\"min.temp\" = -10")
    });
    assert_eq!(
        h.send(),
        Served::V1,
        "no watcher: the edit waits for SIGHUP"
    );
    h.run.host.hup();
    nth_event(&h, "config.reloaded", 1);
    assert_eq!(h.send(), Served::V2);

    // A new file deployed meanwhile is picked up only on the next SIGHUP.
    let v2 = std::fs::read(components::HOSTILE_VALIDATOR).unwrap();
    deploy(&h.plugins.join("validator.wasm"), &v2, None);
    // One so far: the validator reconfigured by the first SIGHUP.
    assert_eq!(h.lifecycle("plugin.reloaded").len(), 1);
    h.run.host.hup();
    nth_event(&h, "plugin.reloaded", 2);
    assert_eq!(h.validator_status()["sha256"], crate::support::sha256(&v2));
    assert_eq!(h.send(), Served::V2);
    h.finish();
}
