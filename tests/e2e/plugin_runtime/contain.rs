//! Containment of guests that wait, print or reach for the network: every
//! call ends within its wall-clock deadline whatever the guest waits on,
//! guest output never traps, sockets are linked but denied unless granted,
//! and an allow-list grant reaches exactly what it lists.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use halyard::plugin::{
    LoadError, NetworkGrant, PluginKind, PluginOptions, SocketRule, TrapCause, Verdict,
};
use halyard_test_components as components;

use crate::support::{TestRuntime, options, reading, runtime, strict_options};

/// Slack over the deadline for a call to end on a busy 2-core machine.
const SLACK: Duration = Duration::from_millis(400);

fn three() -> Vec<halyard::plugin::Event> {
    (0..3).map(|_| reading("d1", "temp", Some(1.0))).collect()
}

fn load(rt: &TestRuntime, options: PluginOptions) -> halyard::plugin::PluginInstance {
    rt.try_load_with(
        components::HOSTILE_VALIDATOR,
        PluginKind::Validator,
        options,
    )
    .expect("load")
    .instance()
}

/// A good call after the attack still gets the right answer.
fn assert_still_serving(rt: &TestRuntime) {
    let mut ok = load(rt, options(&[("mode", "ok")]));
    assert_eq!(ok.validate(&three()).expect("ok"), vec![Verdict::Accept; 3]);
}

#[test]
fn a_guest_sleeping_in_a_call_is_cut_at_its_deadline() {
    let rt = runtime();
    let mut instance = load(&rt, strict_options(&[("mode", "sleep")]));
    for round in 0..2 {
        let started = Instant::now();
        let err = instance.validate(&three()).expect_err("sleeps an hour");
        let took = started.elapsed();
        assert_eq!(err.trap_cause(), Some(TrapCause::Deadline), "{err}");
        assert!(
            err.to_string()
                .contains("waited in a host call (sleep, poll, stream or socket) past its 100 ms deadline (wall clock)"),
            "{err}"
        );
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_millis(100) + SLACK,
            "round {round}: cut after {took:?}"
        );
    }
    assert_eq!(instance.traps(), 2);
    assert_still_serving(&rt);
}

#[test]
fn a_short_sleep_within_the_deadline_is_fine() {
    let rt = runtime();
    let mut instance = load(&rt, options(&[("mode", "sleep"), ("ms", "20")]));
    for _ in 0..3 {
        assert_eq!(
            instance.validate(&three()).unwrap(),
            vec![Verdict::Accept; 3]
        );
    }
    assert_eq!(instance.traps(), 0);
}

#[test]
fn a_guest_sleeping_in_init_is_refused_at_load_on_time() {
    let rt = runtime();
    let load = || {
        rt.try_load_with(
            components::HOSTILE_VALIDATOR,
            PluginKind::Validator,
            strict_options(&[("mode", "init-sleep")]),
        )
    };
    // The first load compiles (and caches) the component; time the second.
    assert!(load().is_err());
    let started = Instant::now();
    let err = load().expect_err("init never returns in time");
    let took = started.elapsed();
    match &err {
        LoadError::Start(call) => assert_eq!(call.trap_cause(), Some(TrapCause::Deadline)),
        other => panic!("expected a start failure, got {other}"),
    }
    assert!(took < Duration::from_millis(100) + SLACK, "{took:?}");
    assert_still_serving(&rt);
}

#[test]
fn a_guest_flooding_stderr_is_never_trapped() {
    let rt = runtime();
    // 50 lines of ~200 bytes per call: the old 16 KiB stderr pipe trapped
    // after fewer than 2 calls' worth; 200 calls write ~2 MB.
    let mut instance = load(&rt, options(&[("mode", "stderr-flood")]));
    for call in 0..200 {
        let verdicts = instance
            .validate(&three())
            .unwrap_or_else(|e| panic!("call {call}: {e}"));
        assert_eq!(verdicts.len(), 3);
    }
    assert_eq!(instance.traps(), 0);
    assert_eq!(instance.calls(), 200);
}

/// Printing in `init` works and a panic in `init` is refused with the
/// guest's own last lines, also when loaded from inside an async runtime
/// (where synchronous WASI used to panic the host).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printing_and_panicking_in_init_from_an_async_task() {
    let rt = runtime();
    let plugin = rt
        .try_load_with(
            components::HOSTILE_VALIDATOR,
            PluginKind::Validator,
            options(&[("mode", "init-print")]),
        )
        .expect("a guest that prints in init loads");
    assert_eq!(
        plugin.instance().validate(&three()).unwrap(),
        vec![Verdict::Accept; 3]
    );
    let err = rt
        .try_load_with(
            components::HOSTILE_VALIDATOR,
            PluginKind::Validator,
            options(&[("mode", "init-panic")]),
        )
        .expect_err("panics in init");
    let text = err.to_string();
    match &err {
        LoadError::Start(call) => assert_eq!(call.trap_cause(), Some(TrapCause::Panic), "{text}"),
        other => panic!("expected a start failure, got {other}"),
    }
    assert!(text.contains("init-panic: about to panic"), "{text}");
    assert!(
        text.contains("hostile guest panicked in init on purpose"),
        "{text}"
    );
}

/// A listener on 127.0.0.1 that answers `ping` with `pong`, serving
/// exactly `connections` connections; returns how many it served.
fn pong_server(connections: usize) -> (SocketAddr, std::thread::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut served = 0;
        for stream in listener.incoming().take(connections) {
            let Ok(mut stream) = stream else { break };
            served += 1;
            let mut line = String::new();
            let _ = BufReader::new(&stream).read_line(&mut line);
            if line == "ping\n" {
                let _ = stream.write_all(b"pong\n");
            }
        }
        served
    });
    (addr, server)
}

/// A listener that never accepts: the kernel still completes connections
/// into its backlog, so a guest connects and then waits for an answer that
/// never comes. Open while the returned listener lives.
fn silent_listener() -> (SocketAddr, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    (listener.local_addr().unwrap(), listener)
}

fn connect_options(addr: SocketAddr, network: NetworkGrant) -> PluginOptions {
    let addr = addr.to_string();
    let mut options = options(&[("mode", "connect"), ("addr", addr.as_str())]);
    options.grants.network = network;
    options
}

fn only(addr: SocketAddr) -> NetworkGrant {
    NetworkGrant::Allow(vec![addr.to_string().parse::<SocketRule>().unwrap()])
}

#[test]
fn sockets_load_without_a_grant_and_every_use_is_denied() {
    let rt = runtime();
    // A real listener, so a denial cannot be mistaken for a refused
    // connection.
    let (addr, _listener) = silent_listener();
    let mut instance = load(&rt, connect_options(addr, NetworkGrant::None));
    let verdicts = instance
        .validate(&three())
        .expect("a denied connect is not a trap");
    let Verdict::Reject(reason) = &verdicts[0] else {
        panic!("{verdicts:?}")
    };
    assert!(
        reason.starts_with("connect failed: PermissionDenied"),
        "{reason}"
    );
    // An allow-list that names another port denies this one too.
    let other: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut instance = load(&rt, connect_options(addr, only(other)));
    let verdicts = instance.validate(&three()).unwrap();
    assert!(
        matches!(&verdicts[0], Verdict::Reject(r) if r.starts_with("connect failed: PermissionDenied")),
        "{verdicts:?}"
    );
}

#[test]
fn a_network_grant_reaches_the_listed_listener() {
    let rt = runtime();
    let (addr, server) = pong_server(2);
    for grant in [only(addr), NetworkGrant::Any] {
        let mut instance = load(&rt, connect_options(addr, grant.clone()));
        assert_eq!(
            instance.validate(&three()).expect("connects"),
            vec![Verdict::Reject("connected: pong".into()); 3],
            "{grant:?}"
        );
    }
    assert_eq!(server.join().unwrap(), 2);
}

#[test]
fn a_guest_waiting_on_a_silent_peer_is_cut_at_its_deadline() {
    let rt = runtime();
    let (addr, _listener) = silent_listener();
    let mut options = connect_options(addr, only(addr));
    options.limits.call_deadline = Duration::from_millis(300);
    let mut instance = load(&rt, options);
    let started = Instant::now();
    let err = instance
        .validate(&three())
        .expect_err("the peer never answers");
    let took = started.elapsed();
    assert_eq!(err.trap_cause(), Some(TrapCause::Deadline), "{err}");
    assert!(took < Duration::from_millis(300) + SLACK, "{took:?}");
}

#[test]
fn a_guest_growing_its_table_is_held_to_the_memory_budget() {
    let rt = runtime();
    let mut instance = rt
        .try_load_with(
            components::TABLE_GROWER,
            PluginKind::Validator,
            options(&[]),
        )
        .expect("a valid validator")
        .instance();
    // Each call grows the table by 1 Mi elements (16 MiB counted): three
    // fit in 64 MiB beside the 64 KiB memory, the fourth does not.
    for round in 0..2 {
        for call in 0..3 {
            let verdicts = instance
                .validate(&three())
                .unwrap_or_else(|e| panic!("round {round} call {call}: {e}"));
            assert_eq!(verdicts, vec![Verdict::Accept; 3]);
        }
        let err = instance.validate(&three()).expect_err("past the budget");
        assert_eq!(err.trap_cause(), Some(TrapCause::Memory), "{err}");
        assert!(
            err.to_string()
                .contains("tried to grow memory or tables past its 64 MiB cap"),
            "{err}"
        );
        // The next call starts a fresh instance, with an empty table.
    }
    assert_eq!(instance.traps(), 2);
    assert_still_serving(&rt);
}

#[test]
fn all_memories_of_a_guest_share_one_budget() {
    let rt = runtime();
    // Eight extra memories of 8 MiB each: every one is under 64 MiB, all
    // of them together (plus the main memory) are not.
    let mut instance = rt
        .try_load_with(
            components::MEMORY_HOARDER,
            PluginKind::Validator,
            options(&[]),
        )
        .expect("a valid validator")
        .instance();
    let err = instance.validate(&three()).expect_err("past the budget");
    assert_eq!(err.trap_cause(), Some(TrapCause::Memory), "{err}");
    // With a budget that fits them all, the same guest works.
    let mut roomy = options(&[]);
    roomy.limits.memory_bytes = 80 << 20;
    let mut instance = rt
        .try_load_with(components::MEMORY_HOARDER, PluginKind::Validator, roomy)
        .expect("a valid validator")
        .instance();
    assert_eq!(
        instance.validate(&three()).unwrap(),
        vec![Verdict::Accept; 3]
    );
    // A budget that allows fewer memories than it has refuses it at start.
    let mut few = options(&[]);
    few.limits.max_memories = 4;
    let err = rt
        .try_load_with(components::MEMORY_HOARDER, PluginKind::Validator, few)
        .expect_err("nine memories > 4");
    assert!(matches!(err, LoadError::Start(_)), "{err}");
}

#[test]
fn host_resources_are_capped_per_instance() {
    let rt = runtime();
    // Writing to stderr takes a stream resource; with none allowed the
    // call traps instead of the host allocating on the guest's behalf.
    let mut none = options(&[("mode", "stderr-flood"), ("lines", "1")]);
    none.limits.max_resources = 0;
    let mut instance = load(&rt, none);
    let err = instance
        .validate(&three())
        .expect_err("no resources allowed");
    assert_eq!(err.trap_cause(), Some(TrapCause::Other), "{err}");
    assert!(
        err.to_string().contains("resource table has no free keys"),
        "{err}"
    );
    let mut some = options(&[("mode", "stderr-flood"), ("lines", "1")]);
    some.limits.max_resources = 100;
    let mut instance = load(&rt, some);
    assert_eq!(
        instance.validate(&three()).unwrap(),
        vec![Verdict::Accept; 3]
    );
    assert_still_serving(&rt);
}
