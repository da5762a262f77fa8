//! Plain synchronous calls for plugins that cannot wait, the async
//! mechanism for the rest (`host/src/plugin/call_mode.rs`), and the same
//! containment either way: a waitless guest that spins is cut by the epoch
//! at its deadline, prints and panics in `init` from inside an async
//! runtime without crashing the host, and floods stderr without a trap.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use halyard::plugin::{LoadError, NetworkGrant, PluginKind, PluginOptions, TrapCause, Verdict};
use halyard_test_components as components;

use crate::support::{TestRuntime, options, reading, runtime, strict_options};

/// Slack over the deadline for a call to end on a busy 2-core machine.
const SLACK: Duration = Duration::from_millis(400);

fn three() -> Vec<halyard::plugin::Event> {
    (0..3).map(|_| reading("d1", "temp", Some(1.0))).collect()
}

fn waitless(
    rt: &TestRuntime,
    options: PluginOptions,
) -> Result<std::sync::Arc<halyard::plugin::Plugin>, LoadError> {
    rt.try_load_with(
        components::WAITLESS_VALIDATOR,
        PluginKind::Validator,
        options,
    )
}

#[test]
fn example_guests_get_plain_calls_and_waiting_guests_the_async_mechanism() {
    let rt = runtime();
    for (path, kind) in components::EXAMPLES {
        let kind: PluginKind = kind.parse().expect("kind");
        let config: &[(&str, &str)] = match kind {
            PluginKind::Sampler => &[("fraction", "0.5")],
            _ => &[],
        };
        let plugin = rt.load(path, kind, config);
        assert!(plugin.calls_synchronously(), "{path}: {:?}", plugin.imports);
    }
    // Imports `wasi:io/poll#poll` (it sleeps and uses sockets).
    let hostile = rt.load(components::HOSTILE_VALIDATOR, PluginKind::Validator, &[]);
    assert!(!hostile.calls_synchronously());
    // The same code without them.
    let plain = waitless(&rt, options(&[])).expect("load");
    assert!(plain.calls_synchronously(), "{:?}", plain.imports);
    // A grant opens something that can block: the async mechanism.
    let mut dirs = options(&[]);
    dirs.grants.read_dirs = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR"))];
    assert!(!waitless(&rt, dirs).expect("load").calls_synchronously());
    let mut net = options(&[]);
    net.grants.network = NetworkGrant::Any;
    assert!(!waitless(&rt, net).expect("load").calls_synchronously());
}

#[test]
fn a_waitless_guest_spinning_past_its_deadline_is_cut_by_the_epoch() {
    let rt = runtime();
    let mut instance = waitless(&rt, strict_options(&[("mode", "sleep")]))
        .expect("load")
        .instance();
    for round in 0..2 {
        let started = Instant::now();
        let err = instance.validate(&three()).expect_err("spins an hour");
        let took = started.elapsed();
        assert_eq!(err.trap_cause(), Some(TrapCause::Deadline), "{err}");
        assert!(
            took >= Duration::from_millis(90) && took < Duration::from_millis(100) + SLACK,
            "round {round}: cut after {took:?}"
        );
    }
    assert_eq!(instance.traps(), 2);
    let mut ok = waitless(&rt, options(&[("mode", "ok")]))
        .expect("load")
        .instance();
    assert_eq!(ok.validate(&three()).unwrap(), vec![Verdict::Accept; 3]);
}

#[test]
fn a_waitless_guest_spinning_in_init_is_refused_on_time() {
    let rt = runtime();
    let load = || waitless(&rt, strict_options(&[("mode", "init-sleep")]));
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
}

/// Synchronous WASI runs its async parts with `block_on`, which panics on
/// a thread inside a tokio runtime; the call moves off it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waitless_guest_prints_and_panics_in_init_from_an_async_task() {
    let rt = runtime();
    let plugin = waitless(&rt, options(&[("mode", "init-print")])).expect("loads");
    assert!(plugin.calls_synchronously());
    assert_eq!(
        plugin.instance().validate(&three()).unwrap(),
        vec![Verdict::Accept; 3]
    );
    let err = waitless(&rt, options(&[("mode", "init-panic")])).expect_err("panics in init");
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

#[tokio::test(flavor = "current_thread")]
async fn a_waitless_guest_flooding_stderr_from_an_async_task_is_never_trapped() {
    let rt = runtime();
    let mut instance = waitless(&rt, options(&[("mode", "stderr-flood")]))
        .expect("load")
        .instance();
    for call in 0..100 {
        let verdicts = instance
            .validate(&three())
            .unwrap_or_else(|e| panic!("call {call}: {e}"));
        assert_eq!(verdicts.len(), 3);
    }
    assert_eq!(instance.traps(), 0);
    assert_eq!(instance.calls(), 100);
}
