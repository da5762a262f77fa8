//! A call's deadline grows with its batch: `limits.deadline_ms` plus
//! `limits.deadline_per_event_us` per event. A guest that runs 120 µs per
//! event (a slow language on a busy device) loses a 1000-event batch to a
//! fixed 100 ms deadline, and keeps it at the defaults.

use std::time::Duration;

use halyard::plugin::{
    CallError, Event, EventId, Limits, PluginKind, PluginOptions, Runtime, TrapCause,
};
use halyard_test_components as components;

fn events(n: u64) -> Vec<Event> {
    (0..n)
        .map(|i| Event {
            id: EventId { hi: 1, lo: i + 1 },
            time_ns: halyard::plugin::host::wall_clock_ns(),
            source: "s".into(),
            kind: "temp".into(),
            value: Some(1.0),
            unit: None,
            attributes: Vec::new(),
            body: None,
        })
        .collect()
}

fn slow(limits: Limits) -> PluginOptions {
    PluginOptions {
        config: [("mode", "slow"), ("us_per_event", "120")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        limits,
        ..PluginOptions::default()
    }
}

#[test]
fn the_rule_is_a_fixed_part_plus_a_part_per_event() {
    let limits = Limits::default();
    assert_eq!(limits.call_deadline, Duration::from_millis(100));
    assert_eq!(limits.per_item_deadline, Duration::from_micros(100));
    assert_eq!(limits.deadline_for(0), Duration::from_millis(100));
    assert_eq!(limits.deadline_for(1000), Duration::from_millis(200));
    assert_eq!(
        limits.deadline_for(10_000_000),
        Duration::from_secs(60),
        "capped"
    );
    let fixed = Limits {
        per_item_deadline: Duration::ZERO,
        ..Limits::default()
    };
    assert_eq!(fixed.deadline_for(1000), Duration::from_millis(100));
}

#[test]
fn a_slow_guest_keeps_its_batches_at_the_defaults() {
    for wasm in [
        components::HOSTILE_VALIDATOR,
        components::WAITLESS_VALIDATOR,
    ] {
        let cache = tempfile::tempdir().unwrap();
        let runtime = Runtime::new(Some(cache.path().to_path_buf())).unwrap();
        let batch = events(1000);

        // A fixed 100 ms for every call: 1000 × 120 µs does not fit.
        let fixed = Limits {
            per_item_deadline: Duration::ZERO,
            ..Limits::default()
        };
        let plugin = runtime
            .load(wasm.as_ref(), Some(PluginKind::Validator), slow(fixed))
            .unwrap();
        let mut instance = plugin.instance();
        match instance.validate(&batch) {
            Err(CallError::Trap {
                cause: TrapCause::Deadline,
                message,
                ..
            }) => {
                assert!(message.contains("100 ms deadline"), "{message}");
            }
            other => panic!("{wasm}: expected the fixed deadline to cut it: {other:?}"),
        }

        // The defaults: 100 ms + 1000 × 100 µs = 200 ms.
        let plugin = runtime
            .load(
                wasm.as_ref(),
                Some(PluginKind::Validator),
                slow(Limits::default()),
            )
            .unwrap();
        let mut instance = plugin.instance();
        for round in 0..3 {
            let verdicts = instance
                .validate(&batch)
                .unwrap_or_else(|e| panic!("{wasm}: round {round}: {e}"));
            assert_eq!(verdicts.len(), 1000);
        }
        assert_eq!(instance.traps(), 0);

        // A small batch still gets the fixed part only: 10 events of
        // 20 ms each (200 ms) pass 100 ms + 10 × 100 µs.
        let plugin = runtime
            .load(
                wasm.as_ref(),
                Some(PluginKind::Validator),
                PluginOptions {
                    config: [("mode", "slow"), ("us_per_event", "20000")]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    ..PluginOptions::default()
                },
            )
            .unwrap();
        let mut instance = plugin.instance();
        match instance.validate(&events(10)) {
            Err(CallError::Trap {
                cause: TrapCause::Deadline,
                message,
                ..
            }) => {
                assert!(message.contains("101 ms deadline"), "{message}");
            }
            other => panic!("{wasm}: expected 101 ms to cut it: {other:?}"),
        }
    }
}
