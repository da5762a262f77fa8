//! A damaged buffer file through the real binary: a page overwritten with
//! garbage before the start or while the host runs, or a file cut short,
//! costs only the events that cannot be read. The rest reach a real
//! receiver once each, new events keep flowing, the loss is counted exactly
//! in a `buffer.damaged` lifecycle event, and `/health` is degraded until
//! an operator acknowledges it.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::flaky_hub::FlakyHub;
use crate::http_support::Client;
use crate::operate_support::{free_ports, wait_listening};
use crate::pages;
use crate::support::{
    Host, Scenario, http_transport, wait_for, wait_until_ingested, write_sensor_lines,
};

/// Lines in the backlog: ~5 400 valid events, hundreds of leaves.
const LINES: u64 = 6000;
/// Lines written after the damage, to show new events keep flowing.
const FRESH: u64 = 500;

/// Runs the host once against a hub that holds every request, so every
/// valid line stays in the buffer; stops it. Returns the events accepted.
fn backlog(s: &Scenario) -> u64 {
    let negative = write_sensor_lines(&s.input, 0, LINES);
    let hub = FlakyHub::gated(Vec::new());
    s.write_config(&http_transport(&hub.url(), None));
    let host = Host::start(&s.config);
    wait_until_ingested(s, &host);
    host.stop();
    LINES - negative
}

fn buffer_file(s: &Scenario) -> PathBuf {
    s.data.join("buffer.db")
}

/// Writes the config for `hub` with a status server on a free port.
fn configure(s: &Scenario, hub: &FlakyHub) -> std::net::SocketAddr {
    let [status] = free_ports();
    let tail = format!(
        "{}\n\n[health]\nlisten = \"{status}\"",
        http_transport(&hub.url(), None)
    );
    s.write_config(&tail);
    status
}

/// Appends [`FRESH`] lines after the backlog; returns how many are valid.
fn fresh_lines(s: &Scenario) -> u64 {
    FRESH - write_sensor_lines(&s.input, LINES, FRESH)
}

/// The payload of the host's `buffer.damaged` lifecycle event, once logged.
fn damage_event(host: &Host) -> serde_json::Value {
    let mut found = None;
    wait_for("a buffer.damaged event", Duration::from_secs(60), || {
        let log = std::fs::read_to_string(&host.log).unwrap_or_default();
        found = log.lines().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["kind"] == "buffer.damaged")
                .then(|| serde_json::from_str(v["payload"].as_str().unwrap_or("null")).unwrap())
        });
        found.is_some()
    });
    found.unwrap()
}

/// Waits for `n` events at the hub; returns their ids, checking none came twice.
fn delivered(hub: &FlakyHub, n: u64) -> Vec<String> {
    wait_for(
        &format!("{n} events at the hub"),
        Duration::from_secs(120),
        || hub.seen.lock().unwrap().event_ids.len() as u64 >= n,
    );
    let ids = hub.seen.lock().unwrap().event_ids.clone();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "duplicates at the hub");
    ids
}

/// `/health` is degraded by the damage until `POST /health/ack`.
fn health_degraded_until_acknowledged(status: std::net::SocketAddr, lost: u64) {
    wait_listening(status);
    let client = Client::new();
    let health = client.get_json(&format!("http://{status}/health"));
    assert_eq!(health["status"], "degraded", "{health}");
    let reasons = health["reasons"].to_string();
    assert!(
        reasons.contains(&format!("{lost} events lost")),
        "{reasons}"
    );
    let ack = client.post_as(&format!("http://{status}/health/ack"), Vec::new(), &[]);
    assert_eq!(ack.json["acknowledged"], true, "{:?}", ack.json);
    let health = client.get_json(&format!("http://{status}/health"));
    assert!(
        !health["reasons"].to_string().contains("damaged"),
        "{health}"
    );
    assert_eq!(health["buffer"]["damage"]["events_lost"], lost, "{health}");
}

#[test]
fn a_page_damaged_before_start_costs_only_its_events() {
    let s = Scenario::new();
    let accepted = backlog(&s);
    let victim = pages::middle_leaf(&buffer_file(&s), "records");
    // The buffer stores events in chunks (many per row): the page holds
    // the rows of these events.
    let on_victim = pages::records_on_leaf(&buffer_file(&s), victim.pageno);
    pages::overwrite_page(&buffer_file(&s), victim.pageno, 0x5eed);

    let hub = FlakyHub::start(Vec::new());
    let status = configure(&s, &hub);
    let host = Host::start(&s.config);
    let fresh = fresh_lines(&s);
    let damage = damage_event(&host);
    let lost = damage["records_lost"].as_u64().unwrap();
    assert_eq!(damage["lost_exact"], true, "{damage}");
    assert!(
        lost >= 1 && lost <= on_victim,
        "lost {lost} of a page holding {on_victim} events in {} rows",
        victim.cells
    );
    let ids = delivered(&hub, accepted + fresh - lost);
    health_degraded_until_acknowledged(status, lost);
    let log = host.stop();
    assert_eq!(
        ids.len() as u64 + lost,
        accepted + fresh,
        "delivered + lost = accepted: {log}"
    );
    assert_eq!(hub.seen.lock().unwrap().event_ids.len(), ids.len());
    assert!(PathBuf::from(damage["moved_to"].as_str().unwrap()).exists());
}

#[test]
fn a_page_damaged_while_running_costs_only_its_events() {
    let s = Scenario::new();
    let accepted = backlog(&s);
    // A page the host has not read yet when it goes bad: the newest chunk
    // of events (many per row), beyond the batches it holds in flight
    // (the ones it read are in SQLite's page cache, where a bad sector on
    // disk is never seen).
    let (victim, on_victim) = pages::last_row_first_overflow(&buffer_file(&s), "records");

    // The host starts (the open-time check passes) and has batches out at
    // a hub that holds them when the page goes bad.
    let hub = FlakyHub::gated(Vec::new());
    configure(&s, &hub);
    let host = Host::start(&s.config);
    wait_for("a batch at the hub", Duration::from_secs(60), || {
        hub.gate.held() >= 1
    });
    pages::overwrite_page(&buffer_file(&s), victim, 0xbad);
    let fresh = fresh_lines(&s);
    hub.gate.open();

    let damage = damage_event(&host);
    assert_eq!(damage["found"], "running", "{damage}");
    let lost = damage["records_lost"].as_u64().unwrap();
    assert!(
        lost >= 1 && lost <= on_victim,
        "lost {lost} of a row of {on_victim} events"
    );
    let ids = delivered(&hub, accepted + fresh - lost);
    let log = host.stop();
    assert_eq!(
        ids.len() as u64 + lost,
        accepted + fresh,
        "delivered + lost = accepted: {log}"
    );
    assert_eq!(hub.seen.lock().unwrap().event_ids.len(), ids.len());
}

#[test]
fn a_truncated_file_at_start_delivers_its_readable_events() {
    let s = Scenario::new();
    let accepted = backlog(&s);
    // Half the file: the b-tree's inner pages, allocated as it grew, are
    // mostly in the lost half, so most surviving leaves are reachable only
    // by reading pages directly.
    let keep = pages::page_count(&buffer_file(&s)) / 2;
    let readable = pages::rows_on_leaves_within(&buffer_file(&s), "records", keep);
    assert!(readable > 0 && readable < accepted, "{readable}");
    pages::truncate_to_pages(&buffer_file(&s), keep);

    let hub = FlakyHub::start(Vec::new());
    configure(&s, &hub);
    let host = Host::start(&s.config);
    let fresh = fresh_lines(&s);
    let damage = damage_event(&host);
    assert_eq!(damage["found"], "open", "{damage}");
    let recovered = damage["records_recovered"].as_u64().unwrap();
    assert!(recovered >= readable, "{recovered} < {readable}");
    // Nothing had been delivered from this file, so the damaged ranges
    // hold exactly the lost events.
    assert_eq!(
        recovered + damage["records_lost_at_most"].as_u64().unwrap(),
        accepted,
        "{damage}"
    );
    let ids = delivered(&hub, recovered + fresh);
    let log = host.stop();
    assert_eq!(ids.len() as u64, recovered + fresh, "{log}");
}
