//! The http input against clients that try to hold it: a body trickling
//! past the body timeout (408, nothing stored), slowloris headers (cut at
//! the header timeout, however they trickle), more connections than
//! `max_connections` (refused at once with 503 while the connections the
//! host has are still served), more requests than `max_in_flight` (503 +
//! `Retry-After`, accepted + refused = sent, nothing lost or duplicated).
//! After each attack a good request is processed normally, and the host's
//! exit log counts exactly what was refused or cut.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::http_support::{
    AUTH, Client, Ended, Raw, ingest_url, line_is_valid, line_ts, send, sensor_lines,
    start_http_host,
};
use crate::support::{Host, Scenario, dead_letters, delivered, wait_for};

/// Lines `start..start + n` as a body, with the events they must yield
/// (the `ts` of each line the validator keeps).
fn lines(s: &Scenario, start: u64, n: u64) -> (Vec<u8>, BTreeSet<i64>) {
    let (body, _) = sensor_lines(&s.input, start, n);
    let valid = (start..start + n)
        .filter(|i| line_is_valid(*i))
        .map(line_ts)
        .collect();
    (body, valid)
}

/// Posts lines `start..start + n` with the test token and asserts a 200
/// that accepted exactly the valid ones; returns them.
fn good_request(client: &Client, listen: SocketAddr, s: &Scenario, start: u64) -> BTreeSet<i64> {
    let (body, valid) = lines(s, start, 50);
    let answer = client.post(&ingest_url(listen), body, &[]);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.count("accepted"), valid.len() as u64, "{answer:?}");
    valid
}

/// Stops the host once exactly `expected` is delivered to `out`; returns
/// its log after checking the delivered events are those, once each.
fn stop_with_exactly(host: Host, out: &Path, expected: &BTreeSet<i64>) -> String {
    wait_for(
        &format!("{} events delivered", expected.len()),
        Duration::from_secs(60),
        || delivered(out).len() >= expected.len(),
    );
    let log = host.stop();
    let events = delivered(out);
    let times: Vec<i64> = events
        .iter()
        .filter_map(|e| e["time_ns"].as_i64())
        .map(|ns| ns / 1_000_000)
        .collect();
    assert_eq!(
        times.len(),
        expected.len(),
        "no duplicates or extras: {log}"
    );
    assert_eq!(&times.into_iter().collect::<BTreeSet<_>>(), expected);
    log
}

/// The `refused` counts of the input's exit line (`header_timeouts=2 …`).
fn refusals(log: &str) -> String {
    log.lines()
        .find(|l| l.contains("http input refusals"))
        .and_then(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v["refused"].as_str().map(str::to_string)
        })
        .unwrap_or_default()
}

#[test]
fn a_body_slower_than_the_body_timeout_gets_408_and_nothing_is_stored() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    let extra = format!("{AUTH}\nbody_timeout_ms = 1500");
    let (host, listen) = start_http_host(&s, &out, &extra);
    let client = Client::new();

    let (body, _) = lines(&s, 0, 50);
    let mut slow = Raw::connect(listen);
    let started = Instant::now();
    let half = body.len() / 2;
    assert!(slow.send(Raw::head(body.len()).as_bytes()));
    assert!(slow.send(&body[..half]));
    // One byte every 100 ms: the body needs far longer than 1.5 s.
    let mut answer = None;
    for byte in &body[half..half + 200] {
        if !slow.send(std::slice::from_ref(byte)) {
            break;
        }
        answer = slow.answer(Duration::from_millis(100));
        if answer.is_some() {
            break;
        }
    }
    let answer = answer
        .or_else(|| slow.answer(Duration::from_secs(30)))
        .expect("an answer while the body trickles");
    let waited = started.elapsed();
    assert_eq!(answer.status, 408, "{answer:?}");
    assert_eq!(answer.json()["error"], "body_timeout", "{answer:?}");
    assert_eq!(answer.header("connection"), Some("close"), "{answer:?}");
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(20),
        "answered after {waited:?}"
    );
    assert_eq!(slow.wait_end(Duration::from_secs(30)), Ended::Closed);

    // The same lines, sent whole: processed normally, stored once.
    let expected = good_request(&client, listen, &s, 0);
    let log = stop_with_exactly(host, &out, &expected);
    assert_eq!(refusals(&log), "body_timeouts=1", "{log}");
    assert_eq!(dead_letters(&s.data).len(), 50 - expected.len());
}

#[test]
fn slowloris_headers_are_cut_at_the_header_timeout_while_others_are_served() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    let extra = format!("{AUTH}\nheader_timeout_ms = 1500");
    let (host, listen) = start_http_host(&s, &out, &extra);
    let client = Client::new();

    let started = Instant::now();
    let mut silent = Raw::connect(listen);
    let mut trickler = Raw::connect(listen);
    let head = Raw::head(10);
    // One header byte every 100 ms: each read is quick, the head never
    // completes; the deadline is for the whole head.
    let mut trickled = Ended::Open;
    for byte in head.as_bytes() {
        if !trickler.send(std::slice::from_ref(byte)) {
            trickled = Ended::Closed;
            break;
        }
        trickled = trickler.wait_end(Duration::from_millis(100));
        if trickled != Ended::Open {
            break;
        }
    }
    let trickler_cut = started.elapsed();
    // Meanwhile a good client is served.
    let mut expected = good_request(&client, listen, &s, 0);
    assert_eq!(silent.wait_end(Duration::from_secs(30)), Ended::Closed);
    let silent_cut = started.elapsed();
    assert_eq!(
        trickled,
        Ended::Closed,
        "the trickler was cut, not answered"
    );
    for cut in [trickler_cut, silent_cut] {
        assert!(
            cut >= Duration::from_millis(1400) && cut < Duration::from_secs(20),
            "cut after {cut:?}"
        );
    }

    expected.extend(good_request(&client, listen, &s, 100));
    let log = stop_with_exactly(host, &out, &expected);
    assert_eq!(refusals(&log), "header_timeouts=2", "{log}");
}

#[test]
fn connections_over_the_limit_are_refused_while_held_ones_are_served() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    let extra = format!("{AUTH}\nmax_connections = 16\nheader_timeout_ms = 3000");
    let (host, listen) = start_http_host(&s, &out, &extra);

    // A good client with a kept-alive connection, from before the attack.
    let mut good = Raw::connect(listen);
    let mut expected = BTreeSet::new();
    let (body, valid) = lines(&s, 0, 50);
    let answer = good.post(&body);
    assert_eq!(answer.status, 200, "{answer:?}");
    expected.extend(valid);

    // 40 silent connections: 15 take the free slots, 25 are told 503.
    let started = Instant::now();
    let mut attackers: Vec<Raw> = (0..40).map(|_| Raw::connect(listen)).collect();
    // A newcomer while every slot is taken is refused at once...
    let mut newcomer = Raw::connect(listen);
    assert_eq!(
        newcomer.wait_end(Duration::from_secs(2)),
        Ended::Answered(503),
        "refused at once"
    );
    // ...while the good client's connection is still served.
    let (body, valid) = lines(&s, 100, 50);
    let answer = good.post(&body);
    assert_eq!(answer.status, 200, "{answer:?}");
    expected.extend(valid);
    let served_during = started.elapsed();
    assert!(
        served_during < Duration::from_millis(3000),
        "{served_during:?}"
    );

    let (mut refused, mut cut) = (0, 0);
    for attacker in &mut attackers {
        match attacker.wait_end(Duration::from_secs(30)) {
            Ended::Answered(503) => refused += 1,
            Ended::Closed => {
                let at = started.elapsed();
                assert!(at >= Duration::from_millis(2800), "cut after {at:?}");
                cut += 1;
            }
            other => panic!("attacker ended {other:?}"),
        }
    }
    assert_eq!((refused, cut), (25, 15));

    // Once the slow ones are cut, new connections are served again.
    let client = Client::new();
    expected.extend(good_request(&client, listen, &s, 200));
    let answer = good.post(&lines(&s, 300, 50).0);
    assert_eq!(answer.status, 200, "{answer:?}");
    expected.extend(lines(&s, 300, 50).1);
    let log = stop_with_exactly(host, &out, &expected);
    assert_eq!(
        refusals(&log),
        "connections_refused=26 header_timeouts=15",
        "{log}"
    );
}

/// A request whose body is still arriving: its head and 10 bytes are sent.
struct Held {
    start: u64,
    raw: Raw,
    body: Vec<u8>,
    valid: BTreeSet<i64>,
}

impl Held {
    fn open(s: &Scenario, listen: SocketAddr, start: u64) -> Held {
        let (body, valid) = lines(s, start, 50);
        let mut raw = Raw::connect(listen);
        assert!(raw.send(Raw::head(body.len()).as_bytes()));
        assert!(raw.send(&body[..10]));
        Held {
            start,
            raw,
            body,
            valid,
        }
    }
}

#[test]
fn requests_over_max_in_flight_get_503_and_none_is_lost_or_duplicated() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    let extra = format!("{AUTH}\nmax_in_flight = 2\nbody_timeout_ms = 30000");
    let (host, listen) = start_http_host(&s, &out, &extra);
    let client = Client::new();
    let mut expected = BTreeSet::new();

    // Two requests whose bodies are still arriving hold both slots. Which
    // request gets a slot first is a race: a probe may get in before them
    // (and is accepted), and then a held one may be refused (and is sent
    // again later); a probe refused while both are open proves them held.
    let mut held: Vec<Held> = Vec::new();
    let mut refused = Vec::new();
    let (mut next_held, mut next_probe) = (0, 10_000);
    wait_for("both slots held", Duration::from_secs(30), || {
        held.retain_mut(|h| match h.raw.answer(Duration::from_millis(1)) {
            None => true,
            Some(answer) => {
                assert_eq!(answer.status, 503, "{answer:?}");
                refused.push(h.start);
                false
            }
        });
        while held.len() < 2 {
            held.push(Held::open(&s, listen, next_held));
            next_held += 100;
        }
        let start = next_probe;
        next_probe += 100;
        let (body, valid) = lines(&s, start, 50);
        let answer = client.post(&ingest_url(listen), body, &[]);
        match answer.status {
            200 => expected.extend(valid),
            503 => refused.push(start),
            _ => panic!("{answer:?}"),
        }
        answer.status == 503
    });
    // While held, every other request is refused at once, with Retry-After.
    for i in 0..5u64 {
        let start = 20_000 + i * 100;
        let answer = client.post(&ingest_url(listen), lines(&s, start, 50).0, &[]);
        assert_eq!(answer.status, 503, "{answer:?}");
        assert_eq!(answer.retry_after.as_deref(), Some("1"), "{answer:?}");
        assert_eq!(answer.json["error"], "busy", "{answer:?}");
        refused.push(start);
    }
    // The held requests complete normally.
    for h in &mut held {
        assert!(h.raw.send(&h.body[10..]));
        let answer = h.raw.answer(Duration::from_secs(60)).expect("an answer");
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(
            answer.json()["accepted"],
            h.valid.len() as u64,
            "{answer:?}"
        );
        expected.extend(h.valid.iter().copied());
    }
    // Refused requests sent again (as Retry-After says) are accepted.
    for start in &refused {
        expected.extend(good_request(&client, listen, &s, *start));
    }

    // A burst of 8 at once: each is accepted or refused, nothing else.
    let bodies: Vec<(u64, Vec<u8>)> = (0..8u64)
        .map(|i| (30_000 + i * 100, lines(&s, 30_000 + i * 100, 50).0))
        .collect();
    let answers = client
        .runtime
        .block_on(futures_util::future::join_all(bodies.into_iter().map(
            |(start, body)| {
                let http = client.http.clone();
                let url = ingest_url(listen);
                async move {
                    let bearer = format!("Bearer {}", crate::http_support::TOKEN);
                    (
                        start,
                        send(&http, url, body, &[("authorization", &bearer)]).await,
                    )
                }
            },
        )));
    let mut burst_refused = 0;
    for (start, answer) in answers {
        match answer.status {
            200 => expected.extend(lines(&s, start, 50).1),
            503 => burst_refused += 1,
            other => panic!("burst answer {other}: {answer:?}"),
        }
    }

    let log = stop_with_exactly(host, &out, &expected);
    let busy = refused.len() as u64 + burst_refused;
    assert_eq!(refusals(&log), format!("busy={busy}"), "{log}");
}

/// CPU time the process `pid` has used so far (all threads).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // utime and stime: fields 14 and 15 of the whole line, in clock ticks.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz = rustix::param::clock_ticks_per_second();
    Duration::from_millis(ticks * 1000 / hz)
}

/// Descriptors the process `pid` has open.
fn open_files(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64
}

#[test]
fn out_of_descriptors_the_input_backs_off_and_keeps_serving() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    // The connection cap is not what stops the attack here: the process's
    // open-file limit is.
    let extra = format!("{AUTH}\nmax_connections = 1000\nheader_timeout_ms = 2000");
    let (host, listen) = start_http_host(&s, &out, &extra);
    let mut good = Raw::connect(listen);
    let mut expected = BTreeSet::new();
    let (body, valid) = lines(&s, 0, 50);
    assert_eq!(good.post(&body).status, 200);
    expected.extend(valid);

    // Room for 12 more descriptors, then `accept` fails with EMFILE.
    let pid = host.pid();
    let limit = open_files(pid) + 12;
    let rlimit = rustix::process::Rlimit {
        current: Some(limit),
        maximum: Some(limit),
    };
    let target = rustix::process::Pid::from_raw(pid as i32);
    rustix::process::prlimit(target, rustix::process::Resource::Nofile, rlimit)
        .expect("lower the host's open-file limit");

    let started = Instant::now();
    let cpu_before = cpu_time(pid);
    let mut attackers: Vec<Raw> = (0..60).map(|_| Raw::connect(listen)).collect();
    // The connection it has is still served.
    let (body, valid) = lines(&s, 100, 50);
    let answer = good.post(&body);
    assert_eq!(answer.status, 200, "{answer:?}");
    expected.extend(valid);
    // The first attackers are cut at the header timeout; until then
    // `accept` keeps failing and must not spin.
    let first = attackers[0].wait_end(Duration::from_secs(30));
    assert_eq!(first, Ended::Closed);
    let window = started.elapsed();
    let cpu = cpu_time(pid) - cpu_before;
    assert!(window >= Duration::from_millis(1900), "{window:?}");
    assert!(
        cpu < window / 4,
        "the host used {cpu:?} of CPU in {window:?} while out of descriptors"
    );
    drop(attackers);

    // Descriptors come back: new clients are served again.
    let client = Client::new();
    let (body, valid) = lines(&s, 200, 50);
    wait_for("a new connection served", Duration::from_secs(60), || {
        let mut raw = Raw::connect(listen);
        let mut request = Raw::head(body.len()).into_bytes();
        request.extend_from_slice(&body);
        raw.send(&request)
            && raw
                .answer(Duration::from_secs(10))
                .is_some_and(|a| a.status == 200)
    });
    expected.extend(valid);
    expected.extend(good_request(&client, listen, &s, 300));
    let log = stop_with_exactly(host, &out, &expected);
    assert!(log.contains("accept failed; backing off"), "{log}");
    assert!(log.contains("Too many open files"), "{log}");
}
