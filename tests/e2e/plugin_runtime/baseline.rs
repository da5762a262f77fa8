//! The stage benchmark's synchronous baseline (`Runtime::sync_baseline`,
//! plain `call`s with WASI linked synchronously) and its async-only runtime
//! (`Runtime::async_only`) run a real guest to the same results as the real
//! call mechanism, so the same-run comparison in BENCHMARKS.md ("Call
//! mechanism") compares equal work.

use halyard::plugin::{PluginKind, Runtime, Verdict};
use halyard_test_components as components;

use crate::support::{options, reading};

#[test]
fn the_sync_baseline_gives_the_verdicts_of_the_real_mechanism() {
    let events = [
        reading("d1", "temp", Some(-1.0)),
        reading("d2", "temp", Some(5.0)),
        reading("d3", "temp", Some(0.0)),
    ];
    let verdicts = |rt: Runtime| {
        let plugin = rt
            .load(
                components::RANGE_VALIDATOR.as_ref(),
                Some(PluginKind::Validator),
                options(&[("min.temp", "0")]),
            )
            .expect("load");
        let mut instance = plugin.instance();
        // Twice: the second call reuses the instance the first one started.
        let first = instance.validate(&events).expect("validate");
        assert_eq!(instance.validate(&events).expect("validate"), first);
        first
    };
    let real = verdicts(Runtime::new(None).expect("runtime"));
    let sync = verdicts(Runtime::sync_baseline(None).expect("runtime"));
    let asynch = verdicts(Runtime::async_only(None).expect("runtime"));
    assert_eq!(sync, real);
    assert_eq!(asynch, real);
    assert!(matches!(&real[0], Verdict::Reject(_)), "{real:?}");
    assert_eq!(real[1..], [Verdict::Accept, Verdict::Accept]);
}
