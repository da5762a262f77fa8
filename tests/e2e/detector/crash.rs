//! A window that spans a kill -9 or a hot swap: the alert fires exactly
//! once. A window kept in guest memory would start again empty after
//! either, and the one reading after it would not alert.

use std::path::Path;
use std::time::Duration;

use halyard_test_components as components;

use crate::pipeline_support::{Host, Scenario, wait_for};
use crate::support::{counts, feed, unique, wait_delivered, write_config};

const RULES: &str = "\"temp.range_lo\" = 0, \"temp.range_hi\" = 50, \"temp.consecutive\" = 3";

#[test]
fn kill_9_in_the_middle_of_a_window_fires_the_alert_exactly_once() {
    let s = Scenario::new();
    write_config(
        &s,
        Path::new(components::THRESHOLD_DETECTOR),
        RULES,
        1 << 20,
    );
    let host = Host::start(&s.config);
    feed(&s, &host, &[("d1", "temp", 80.0, 1)]);
    feed(&s, &host, &[("d1", "temp", 81.0, 2)]);
    host.kill9();

    let host = Host::start(&s.config);
    feed(&s, &host, &[("d1", "temp", 82.0, 3)]);
    feed(&s, &host, &[("d1", "temp", 10.0, 4)]);
    wait_delivered(&s, 6);
    host.stop();
    let c = counts(&s);
    assert_eq!(c.get("alert/out_of_range"), Some(&1), "{c:?}");
    assert_eq!(c.get("cleared/out_of_range"), Some(&1), "{c:?}");
    assert_eq!(unique(&s).len(), 6);
    let alert = unique(&s)
        .into_iter()
        .find(|e| e["kind"] == "alert")
        .unwrap();
    assert_eq!(alert["value"], 82.0, "the third reading fired it: {alert}");
}

/// `bytes` with a component-level custom section appended: the same code
/// under another hash, which the reloader sees as a new version.
fn another_version(bytes: &[u8]) -> Vec<u8> {
    let name = b"halyard-test-v2";
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(b"v2");
    let mut out = bytes.to_vec();
    out.push(0); // custom section
    out.push(section.len() as u8);
    out.extend_from_slice(&section);
    out
}

#[test]
fn a_hot_swap_in_the_middle_of_a_window_keeps_it_and_fires_once() {
    let s = Scenario::new();
    let plugins = s.path("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let installed = plugins.join("detector.wasm");
    let v1 = std::fs::read(components::THRESHOLD_DETECTOR).unwrap();
    std::fs::write(&installed, &v1).unwrap();
    write_config(&s, &installed, RULES, 1 << 20);
    let host = Host::start(&s.config);
    feed(&s, &host, &[("d1", "temp", 80.0, 1)]);
    feed(&s, &host, &[("d1", "temp", 81.0, 2)]);

    // Deploy v2 by write-then-rename and wait until it serves.
    let v2 = another_version(&v1);
    let staged = plugins.join("detector.wasm.tmp");
    std::fs::write(&staged, &v2).unwrap();
    std::fs::rename(&staged, &installed).unwrap();
    wait_for("v2 swapped in", Duration::from_secs(60), || {
        std::fs::read_to_string(&host.log).is_ok_and(|l| l.contains("plugin reloaded"))
    });

    feed(&s, &host, &[("d1", "temp", 82.0, 3)]);
    feed(&s, &host, &[("d1", "temp", 10.0, 4)]);
    wait_delivered(&s, 6);
    let log = host.stop();
    let c = counts(&s);
    assert_eq!(c.get("alert/out_of_range"), Some(&1), "{c:?}\n{log}");
    assert_eq!(c.get("cleared/out_of_range"), Some(&1), "{c:?}");
    let alert = unique(&s)
        .into_iter()
        .find(|e| e["kind"] == "alert")
        .unwrap();
    let v2_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&v2))
    };
    let link = alert["provenance"]["chain"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(link, format!("thresholds@{}", &v2_sha[..12]), "{alert}");
}
