//! `halyard deadletter`: dead letters produced by the real range-validator
//! and decoder are listed with exact counts, keep only what the privacy
//! guest lets through, are replayed once after the validator is fixed (the
//! real receiver on 127.0.0.1 gets exactly those events, once), and are
//! purged by reason with an exact count. The CLI refuses a running host's
//! buffer.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::receiver::Receiver;
use crate::support::{
    Host, Scenario, http_transport, wait_for, wait_until_ingested, write_sensor_lines,
};

/// The base config's privacy policy, which hashes `operator`.
const HASH_OPERATOR: &str = r#"config = { hash_keys = "operator", salt = "e2e" }"#;
/// A privacy policy that drops `operator` instead.
const DROP_OPERATOR: &str = r#"config = { drop_keys = "operator" }"#;
/// The base config's validator, which rejects negative temperatures.
const REJECT_NEGATIVE: &str = r#"config = { "min.temp" = 0 }"#;
/// The validator, fixed: every reading in the test data passes.
const ACCEPT_ALL: &str = r#"config = { "min.temp" = -1000 }"#;

/// Runs `halyard deadletter <args> --config <config>`.
fn deadletter(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_halyard"))
        .arg("deadletter")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("HALYARD_DEV_MODE", "1")
        .env("NO_COLOR", "1")
        .output()
        .expect("run halyard deadletter")
}

/// Stdout of a `deadletter` command that must succeed.
fn ok(config: &Path, args: &[&str]) -> String {
    let out = deadletter(config, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "deadletter {args:?}: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The number after `key=` on the first line that has it.
fn field(text: &str, key: &str) -> u64 {
    text.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in:\n{text}"))
}

/// Lines of `list` output that are reason groups.
fn groups(list: &str) -> Vec<&str> {
    list.lines().filter(|l| l.starts_with("count=")).collect()
}

/// The line of `text` that starts with `prefix`.
fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{text}"))
}

/// The total of a `list` output.
fn total(list: &str) -> u64 {
    field(line(list, "total:"), "dead_letters")
}

#[test]
fn rejects_are_listed_screened_replayed_once_after_the_fix_and_purged() {
    let s = Scenario::new();
    let receiver = Receiver::start("127.0.0.1:0".parse().unwrap(), &s.path("received.db"), None);
    let negative = write_sensor_lines(&s.input, 0, 1000);
    let valid = 1000 - negative;
    assert!(negative > 0 && valid > 0);
    let transport = http_transport(&receiver.url(), None);
    s.write_config_with(&transport, &[(HASH_OPERATOR, DROP_OPERATOR)]);

    let host = Host::start(&s.config);
    wait_until_ingested(&s, &host);
    wait_for("the valid events stored", Duration::from_secs(60), || {
        receiver.stats().events_stored >= valid
    });
    let refused = deadletter(&s.config, &["list"]);
    assert!(
        !refused.status.success(),
        "a running host's buffer is refused"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("the host is running"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    host.stop();
    assert_eq!(receiver.stats().events_stored, valid);

    // Listed: every reject, grouped by reason, with exact counts.
    let list = ok(&s.config, &["list"]);
    assert_eq!(total(&list), negative, "{list}");
    // One group per distinct reason (the value is in it); past 50 groups
    // the rest are summed on one line.
    let grouped: u64 = groups(&list).iter().map(|l| field(l, "count")).sum();
    let more = field(line(&list, "more:"), "dead_letters");
    assert_eq!(groups(&list).len(), 50);
    assert_eq!(grouped + more, negative);
    assert!(
        groups(&list)
            .iter()
            .all(|l| l.contains("reason=range-validator: value -")),
        "{list}"
    );

    // Screened: the payloads went through the privacy guest, which drops
    // `operator`; the rest of the event is there to replay.
    let show = ok(&s.config, &["show", "--limit", "100000"]);
    assert_eq!(field(&show, "shown"), negative);
    let payloads: Vec<&str> = show
        .lines()
        .filter_map(|l| l.strip_prefix("  payload: "))
        .collect();
    assert_eq!(payloads.len() as u64, negative, "{show}");
    for p in &payloads {
        assert!(
            p.contains(r#""kind":"temp""#) && p.contains(r#""value":-"#),
            "{p}"
        );
        assert!(!p.contains("operator"), "privacy dropped it: {p}");
        for name in ["alice", "bob", "carol", "dave"] {
            assert!(!p.contains(name), "{p}");
        }
    }

    // Ten straight into the buffer, as stored (the operator vouches).
    let direct = ok(&s.config, &["replay", "--to-buffer", "--limit", "10"]);
    assert_eq!(
        (field(&direct, "replayed"), field(&direct, "accepted")),
        (10, 10),
        "{direct}"
    );
    assert_eq!(total(&ok(&s.config, &["list"])), negative - 10);

    // Fixed validator: the replay accepts every other one, and empties
    // the table.
    s.write_config_with(
        &transport,
        &[
            (HASH_OPERATOR, DROP_OPERATOR),
            (REJECT_NEGATIVE, ACCEPT_ALL),
        ],
    );
    let replay = ok(&s.config, &["replay"]);
    assert_eq!(
        (
            field(&replay, "replayed"),
            field(&replay, "accepted"),
            field(&replay, "dead_lettered_again"),
            field(&replay, "dropped"),
            field(&replay, "skipped"),
        ),
        (negative - 10, negative - 10, 0, 0, 0),
        "{replay}"
    );
    assert_eq!(total(&ok(&s.config, &["list"])), 0);
    let again = ok(&s.config, &["replay"]);
    assert_eq!(field(&again, "replayed"), 0, "nothing is replayed twice");

    // Delivered once: the ids are the lines' (file offset) ids, so the
    // receiver's 1000 distinct ids with no duplicate are the valid events
    // plus exactly the replayed ones.
    let host = Host::start(&s.config);
    wait_for(
        "the replayed events stored",
        Duration::from_secs(60),
        || receiver.stats().events_stored >= 1000,
    );
    host.stop();
    let stats = receiver.stats();
    assert_eq!(
        (stats.events_stored, stats.events_received, stats.duplicates),
        (1000, 1000, 0)
    );
}

#[test]
fn undecodable_frames_keep_a_digest_and_are_purged_by_reason() {
    let s = Scenario::new();
    let negative = write_sensor_lines(&s.input, 0, 200);
    const GARBAGE: u64 = 7;
    let mut text = std::fs::read_to_string(&s.input).unwrap();
    for i in 0..GARBAGE {
        text.push_str(&format!("not json, operator=alice #{i}\n"));
    }
    std::fs::write(&s.input, text).unwrap();
    s.write_config(&crate::support::file_transport(&s.path("out.jsonl")));

    let host = Host::start(&s.config);
    wait_until_ingested(&s, &host);
    host.stop();

    let list = ok(&s.config, &["list"]);
    assert_eq!(total(&list), negative + GARBAGE, "{list}");
    let decode = ok(&s.config, &["list", "--reason", "sensors: decode failed"]);
    assert_eq!(total(&decode), GARBAGE, "{decode}");

    // The frames never met the privacy policy: only length and hash stay.
    let show = ok(&s.config, &["show", "--reason", "sensors:"]);
    assert_eq!(field(&show, "shown"), GARBAGE);
    assert!(
        !show.contains("alice") && !show.contains("payload:"),
        "{show}"
    );
    assert_eq!(
        show.matches("not kept (an undecoded frame)").count() as u64,
        GARBAGE
    );

    // Nothing to replay from a digest: skipped, left in place.
    let replay = ok(&s.config, &["replay", "--reason", "sensors:"]);
    assert_eq!(
        (field(&replay, "replayed"), field(&replay, "skipped")),
        (0, GARBAGE),
        "{replay}"
    );

    let bare = deadletter(&s.config, &["purge"]);
    assert!(!bare.status.success(), "a bare purge deletes nothing");
    let purge = ok(&s.config, &["purge", "--reason", "sensors:"]);
    assert_eq!(field(&purge, "purged"), GARBAGE);
    let list = ok(&s.config, &["list"]);
    assert_eq!(total(&list), negative, "{list}");
    let purge = ok(&s.config, &["purge", "--all", "--limit", "3"]);
    assert_eq!(field(&purge, "purged"), 3);
    assert_eq!(total(&ok(&s.config, &["list"])), negative - 3);
}

#[test]
fn raw_frames_opted_in_are_replayed_through_the_fixed_decoder_with_their_ids() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    let negative = write_sensor_lines(&s.input, 0, 200);
    let transport = format!(
        "{}\n[buffer]\ndead_letter_frames = \"raw\"\n",
        crate::support::file_transport(&out)
    );
    let decoder = r#"jsonl_decoder.wasm", limits = { deadline_ms = 5000 } }"#;
    // Kinds ("temp") longer than 3 bytes: the decoder refuses every line.
    let strict = r#"jsonl_decoder.wasm", limits = { deadline_ms = 5000 }, config = { max_string_bytes = 3 } }"#;
    s.write_config_with(&transport, &[(decoder, strict)]);
    let host = Host::start(&s.config);
    wait_until_ingested(&s, &host);
    host.stop();
    assert!(crate::support::delivered(&out).is_empty());

    let list = ok(&s.config, &["list", "--reason", "sensors: decode failed"]);
    assert_eq!(total(&list), 200, "{list}");
    let show = ok(&s.config, &["show", "--limit", "1"]);
    assert!(
        show.contains("origin=frame input=sensors") && show.contains(r#"payload: {"device":"d0""#),
        "raw frames kept, as opted in: {show}"
    );

    s.write_config_with(&transport, &[]);
    let replay = ok(&s.config, &["replay"]);
    assert_eq!(
        (
            field(&replay, "replayed"),
            field(&replay, "accepted"),
            field(&replay, "dead_lettered_again"),
            field(&replay, "skipped"),
        ),
        (200, 200 - negative, negative, 0),
        "{replay}"
    );
    let list = ok(&s.config, &["list"]);
    assert_eq!(total(&list), negative, "the validator's rejects: {list}");
    assert!(
        groups(&list)
            .iter()
            .all(|l| l.contains("reason=range-validator:"))
    );

    // The replayed lines' events carry the ids a first read would have
    // given them (file identity and offset): appending to the file and
    // running again delivers the replayed events and the new lines, each
    // id once.
    let more_negative = write_sensor_lines(&s.input, 200, 100);
    let host = Host::start(&s.config);
    let expected = (200 - negative + 100 - more_negative) as usize;
    wait_until_ingested(&s, &host);
    wait_for("everything delivered", Duration::from_secs(60), || {
        crate::support::delivered(&out).len() >= expected
    });
    host.stop();
    let events = crate::support::delivered(&out);
    let mut ids: Vec<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), expected);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), expected, "no id twice");
    let prefix: Vec<&str> = ids.iter().map(|id| &id[..16]).collect();
    assert!(
        prefix.iter().all(|p| *p == prefix[0]),
        "every id is the file's identity and an offset: {ids:?}"
    );
}

#[test]
fn a_replay_killed_mid_way_loses_and_duplicates_nothing() {
    let s = Scenario::new();
    let receiver = Receiver::start("127.0.0.1:0".parse().unwrap(), &s.path("received.db"), None);
    const LINES: u64 = 20_000;
    write_sensor_lines(&s.input, 0, LINES);
    let transport = http_transport(&receiver.url(), None);
    // Every reading is below 1000: the validator rejects all of them.
    s.write_config_with(
        &transport,
        &[(REJECT_NEGATIVE, r#"config = { "min.temp" = 1000 }"#)],
    );
    let host = Host::start(&s.config);
    wait_until_ingested(&s, &host);
    host.stop();
    assert_eq!(total(&ok(&s.config, &["list"])), LINES);

    // Fixed; the replay is killed once its first page has committed.
    s.write_config_with(&transport, &[(REJECT_NEGATIVE, ACCEPT_ALL)]);
    let mut replay = Command::new(env!("CARGO_BIN_EXE_halyard"))
        .args(["deadletter", "replay", "--config"])
        .arg(&s.config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start replay");
    let stderr = replay.stderr.take().expect("piped");
    let (committed, first_commit) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("committed so far") {
                let _ = committed.send(());
            }
        }
    });
    first_commit
        .recv_timeout(Duration::from_secs(60))
        .expect("the replay's first page committed");
    replay.kill().expect("kill -9 the replay");
    let status = replay.wait().expect("wait");
    assert!(!status.success(), "killed, not finished: {status}");
    reader.join().expect("stderr reader");
    let left = total(&ok(&s.config, &["list"]));
    assert!(left > 0 && left < LINES, "killed mid-way: {left} left");

    // Run again: the rest is replayed; the host then delivers every event
    // exactly once.
    let replay = ok(&s.config, &["replay"]);
    assert_eq!(field(&replay, "replayed"), left, "{replay}");
    assert_eq!(field(&replay, "dead_lettered_again"), 0, "{replay}");
    assert_eq!(total(&ok(&s.config, &["list"])), 0);
    let host = Host::start(&s.config);
    wait_for(
        "every replayed event stored",
        Duration::from_secs(120),
        || receiver.stats().events_stored >= LINES,
    );
    host.stop();
    let stats = receiver.stats();
    assert_eq!((stats.events_stored, stats.duplicates), (LINES, 0));
}
