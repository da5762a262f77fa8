//! Per-line results over TCP: asked with `?results=lines`, each line's
//! result in order after the commit; the accepted ids are exactly what the
//! receiver stores; without asking the answer is what it always was.

use std::collections::BTreeSet;

use crate::helpers::{config, input, line_kinds, mixed_body, second_of};
use crate::http_support::{AUTH, Client, free_ports, ingest_url, stored_events, wait_listening};
use crate::receiver::{Receiver, loopback_any, wait_stored};
use crate::support::{Host, Scenario, dead_letters, http_transport};

fn expected_kinds(expected: &[(u64, &str)]) -> Vec<(u64, String)> {
    expected.iter().map(|(l, k)| (*l, k.to_string())).collect()
}

#[test]
fn each_line_gets_its_result_in_order_and_accepted_ids_are_what_the_receiver_stores() {
    let s = Scenario::new();
    let receiver = Receiver::start(loopback_any(), &s.path("received.db"), None);
    let [listen] = free_ports();
    let text = config(
        &s.data,
        &input(Some(listen), None, AUTH),
        &http_transport(&receiver.url(), None),
    );
    std::fs::write(&s.config, text).unwrap();
    let host = Host::start(&s.config);
    wait_listening(listen);
    let client = Client::new();

    // Asked: one entry per non-blank line, in order.
    let (body, expected) = mixed_body("t1", second_of(1));
    let url = format!("{}?results=lines", ingest_url(listen));
    let answer = client.post(&url, body, &[]);
    assert_eq!(answer.status, 200, "{answer:?}");
    let json = &answer.json;
    assert_eq!(line_kinds(json), expected_kinds(&expected), "{json}");
    assert_eq!(
        (
            answer.count("accepted"),
            answer.count("rejected"),
            answer.count("decode_errors"),
            answer.count("dropped")
        ),
        (2, 1, 1, 2),
        "{json}"
    );
    let lines = json["lines"].as_array().unwrap();
    let reason = lines[1]["reason"].as_str().unwrap();
    assert!(reason.contains("temp"), "the validator's reason: {reason}");
    assert_eq!(lines[2]["by"], "privacy", "{json}");
    let message = lines[4]["message"].as_str().unwrap();
    assert!(message.contains("decode failed"), "{message}");
    let accepted: BTreeSet<String> = [&lines[0], &lines[5]]
        .iter()
        .map(|l| l["id"].as_str().expect("an id").to_string())
        .collect();
    assert_eq!(accepted.len(), 2);
    assert!(accepted.iter().all(|id| id.len() == 32), "{accepted:?}");

    // Not asked: the same kind of body answers as before, with no `lines`.
    let (body, _) = mixed_body("t1x", second_of(2));
    let plain = client.post(&ingest_url(listen), body, &[]);
    assert_eq!(plain.status, 200, "{plain:?}");
    let keys: BTreeSet<&str> = plain
        .json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["accepted", "rejected", "decode_errors", "dropped"]),
        "{:?}",
        plain.json
    );
    assert_eq!(
        (plain.count("accepted"), plain.count("dropped")),
        (2, 2),
        "{plain:?}"
    );

    // Blank lines only, asked: an empty list, nothing run.
    let empty = client.post(&url, b"\n\r\n  \n".to_vec(), &[]);
    assert_eq!(empty.status, 200, "{empty:?}");
    assert_eq!(empty.json["lines"], serde_json::json!([]));

    wait_stored(&receiver, 4);
    let log = host.stop();
    let stats = receiver.stats();
    assert_eq!((stats.events_stored, stats.duplicates), (4, 0), "{log}");
    let stored: BTreeSet<String> = stored_events(&receiver, &client)
        .iter()
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .collect();
    assert!(
        accepted.is_subset(&stored),
        "the ids the answer gave are the ids stored: {accepted:?} vs {stored:?}"
    );
    assert_eq!(
        dead_letters(&s.data).len(),
        4,
        "two rejected and two undecodable lines, in both requests"
    );
}

#[test]
fn too_many_lines_with_results_are_refused_before_anything_runs() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    let (host, listen) = crate::http_support::start_http_host(&s, &out, AUTH);
    let client = Client::new();
    let line = crate::helpers::reading("big", 1.0, second_of(3)).to_string();
    let body = vec![line.as_str(); 10_001].join("\n").into_bytes();
    let url = format!("{}?results=lines", ingest_url(listen));
    let answer = client.post(&url, body.clone(), &[]);
    assert_eq!(answer.status, 413, "{answer:?}");
    assert_eq!(answer.json["error"], "too_many_lines", "{answer:?}");
    // The same body without asking is taken whole.
    let plain = client.post(&ingest_url(listen), body, &[]);
    assert_eq!(plain.status, 200, "{plain:?}");
    assert_eq!(plain.count("accepted"), 10_001);
    let log = host.stop();
    let totals = crate::support::totals(&log);
    assert_eq!(totals.get("accepted"), Some(&10_001), "{log}");
}

/// A line that decodes into no event is `empty`; into several, `several`
/// with each event's result, at most 100 listed and the rest counted. (The
/// test decoder `lying-decoder` turns `good:NAME,…` into one event per
/// item, `many:N` into N, and `error:N` into a decode error.)
#[test]
fn lines_with_no_or_several_events_say_so() {
    let s = Scenario::new();
    let receiver = Receiver::start(loopback_any(), &s.path("received.db"), None);
    let [listen] = free_ports();
    let decoder = format!(
        "decoder = {{ plugin = \"{}\", limits = {{ deadline_ms = 5000 }} }}\n",
        halyard_test_components::LYING_DECODER
    );
    let input = format!(
        "[[input]]\ntype = \"http\"\nname = \"apps\"\nlisten = \"{listen}\"\n{AUTH}\n{decoder}"
    );
    // No per-source cap here: every good event is kept by the sampler.
    let stages = crate::helpers::stages().replace(", max_per_source_per_s = 1", "");
    let text = crate::support::config_with_stages(
        &s.data,
        &input,
        &stages,
        &http_transport(&receiver.url(), None),
    );
    std::fs::write(&s.config, text).unwrap();
    let host = Host::start(&s.config);
    wait_listening(listen);

    let body = "good:e1\n,\ngood:e2,good:blocked-e3\nmany:150\nerror:10\n";
    let url = format!("{}?results=lines", ingest_url(listen));
    let answer = Client::new().post(&url, body.as_bytes().to_vec(), &[]);
    assert_eq!(answer.status, 200, "{answer:?}");
    let json = &answer.json;
    assert_eq!(
        (
            answer.count("accepted"),
            answer.count("dropped"),
            answer.count("decode_errors")
        ),
        (152, 1, 1),
        "{json}"
    );
    let kinds: Vec<(u64, String)> = crate::helpers::line_kinds(json);
    let expected: Vec<(u64, String)> = [
        (1, "accepted"),
        (2, "empty"),
        (3, "several"),
        (4, "several"),
        (5, "decode_error"),
    ]
    .iter()
    .map(|(l, k)| (*l, k.to_string()))
    .collect();
    assert_eq!(kinds, expected, "{json}");
    let lines = json["lines"].as_array().unwrap();
    let pair = lines[2]["events"].as_array().unwrap();
    assert_eq!(pair.len(), 2);
    assert_eq!(pair[0]["result"], "accepted");
    assert_eq!(
        pair[1],
        serde_json::json!({"result": "dropped", "by": "privacy"})
    );
    assert_eq!(lines[2]["more"], 0);
    let many = lines[3]["events"].as_array().unwrap();
    assert_eq!((many.len(), lines[3]["more"].as_u64()), (100, Some(50)));
    assert!(many.iter().all(|e| e["result"] == "accepted"), "{json}");

    wait_stored(&receiver, 152);
    let log = host.stop();
    let stats = receiver.stats();
    assert_eq!((stats.events_stored, stats.duplicates), (152, 0), "{log}");
    let stored: BTreeSet<String> = stored_events(&receiver, &Client::new())
        .iter()
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .collect();
    let listed: BTreeSet<String> = [&lines[0]]
        .into_iter()
        .chain([&pair[0]])
        .chain(many)
        .map(|e| e["id"].as_str().expect("an id").to_string())
        .collect();
    assert_eq!(listed.len(), 102);
    assert!(listed.is_subset(&stored), "every listed id is stored");
}
