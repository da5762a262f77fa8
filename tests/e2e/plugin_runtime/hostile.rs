//! Guests that misbehave on purpose: each is refused at load or contained
//! at call time with a clear error, and the host then still processes a good
//! batch correctly.

use std::time::{Duration, Instant};

use halyard::plugin::{
    CallError, Grants, LoadError, PluginKind, PluginOptions, TrapCause, Verdict,
};
use halyard_test_components as components;

use crate::support::{TestRuntime, options, reading, runtime, strict_options};

/// A good validator still gives the right answers on the same runtime.
fn assert_host_still_healthy(rt: &TestRuntime) {
    let good = rt.load(
        components::RANGE_VALIDATOR,
        PluginKind::Validator,
        &[("min.temp", "0")],
    );
    let events = vec![
        reading("d1", "temp", Some(5.0)),
        reading("d1", "temp", Some(-5.0)),
    ];
    let verdicts = good.instance().validate(&events).expect("good validator");
    assert_eq!(
        verdicts,
        vec![
            Verdict::Accept,
            Verdict::Reject("value -5 is below the minimum 0 for temp".into())
        ]
    );
}

fn hostile(rt: &TestRuntime, mode: &str) -> halyard::plugin::PluginInstance {
    rt.load(
        components::HOSTILE_VALIDATOR,
        PluginKind::Validator,
        &[("mode", mode)],
    )
    .instance()
}

fn three() -> Vec<halyard::plugin::Event> {
    (0..3).map(|_| reading("d1", "temp", Some(1.0))).collect()
}

#[test]
fn infinite_loop_is_interrupted_within_twice_the_deadline() {
    let rt = runtime();
    let mut instance = rt
        .try_load_with(
            components::HOSTILE_VALIDATOR,
            PluginKind::Validator,
            strict_options(&[("mode", "loop")]),
        )
        .expect("load")
        .instance();
    let deadline = Duration::from_millis(100);
    let started = Instant::now();
    let err = instance
        .validate(&three())
        .expect_err("a loop cannot finish");
    let took = started.elapsed();
    assert_eq!(err.trap_cause(), Some(TrapCause::Deadline), "{err}");
    assert!(
        took < 2 * deadline,
        "trapped after {took:?}, deadline {deadline:?}"
    );
    assert!(err.to_string().contains("100 ms deadline"), "{err}");
    // The instance is recreated and traps again rather than being stuck.
    let err = instance.validate(&three()).expect_err("still looping");
    assert_eq!(err.trap_cause(), Some(TrapCause::Deadline));
    assert_eq!(instance.traps(), 2);
    assert_host_still_healthy(&rt);
}

#[test]
fn allocation_past_the_memory_cap_traps() {
    let rt = runtime();
    let err = hostile(&rt, "alloc")
        .validate(&three())
        .expect_err("1 GiB > 64 MiB");
    assert_eq!(err.trap_cause(), Some(TrapCause::Memory), "{err}");
    assert!(err.to_string().contains("64 MiB"), "{err}");
    assert_host_still_healthy(&rt);
}

#[test]
fn panic_is_contained_with_the_guest_message() {
    let rt = runtime();
    let err = hostile(&rt, "panic")
        .validate(&three())
        .expect_err("panics");
    assert_eq!(err.trap_cause(), Some(TrapCause::Panic), "{err}");
    assert!(
        err.to_string()
            .contains("hostile guest panicked on purpose"),
        "{err}"
    );
    assert_host_still_healthy(&rt);
}

#[test]
fn oversized_and_miscounted_output_is_refused() {
    let rt = runtime();
    for (mode, message) in [
        ("huge", "result larger than the 16 MiB output cap"),
        ("short", "2 verdicts for 3 inputs"),
        // `long-reason` is not a broken call: see refusals.rs.
    ] {
        let err = hostile(&rt, mode).validate(&three()).expect_err(mode);
        match &err {
            CallError::BadOutput { message: m, .. } => assert_eq!(m, message, "mode {mode}"),
            other => panic!("mode {mode}: expected bad output, got {other}"),
        }
    }
    assert_host_still_healthy(&rt);
}

#[test]
fn instance_is_recreated_after_a_trap_with_fresh_state() {
    let rt = runtime();
    let plugin = rt.load(
        components::HOSTILE_VALIDATOR,
        PluginKind::Validator,
        &[("mode", "trap-after"), ("calls", "2")],
    );
    let mut instance = plugin.instance();
    let events = three();
    assert!(instance.validate(&events).is_ok());
    assert!(instance.validate(&events).is_ok());
    assert!(instance.validate(&events).is_err(), "third call traps");
    // A fresh instance re-runs init, so its call counter starts again.
    assert!(
        instance.validate(&events).is_ok(),
        "recreated instance serves"
    );
    assert_eq!((instance.calls(), instance.traps()), (4, 1));
}

#[test]
fn sandbox_denies_filesystem_and_environment_by_default() {
    let rt = runtime();
    let events = vec![reading("d1", "temp", Some(1.0))];
    let verdicts = hostile(&rt, "snoop").validate(&events).expect("snoop runs");
    assert_eq!(
        verdicts,
        vec![Verdict::Reject(
            "fs_root=denied file=denied env_home=unset env_count=0".into()
        )]
    );
    // A grant opens exactly what it names.
    let mut granted = options(&[("mode", "snoop")]);
    granted.grants = Grants {
        env: vec!["HOME".into()],
        ..Grants::default()
    };
    // SAFETY of the test: HOME is set in every environment we run in.
    assert!(std::env::var("HOME").is_ok());
    let plugin = rt
        .try_load_with(
            components::HOSTILE_VALIDATOR,
            PluginKind::Validator,
            granted,
        )
        .expect("load with grant");
    let verdicts = plugin.instance().validate(&events).expect("snoop runs");
    assert_eq!(
        verdicts,
        vec![Verdict::Reject(
            "fs_root=denied file=denied env_home=set env_count=1".into()
        )]
    );
}

#[test]
fn init_failures_refuse_the_plugin_at_load() {
    let rt = runtime();
    match rt.try_load(
        components::HOSTILE_VALIDATOR,
        PluginKind::Validator,
        &[("mode", "init-error")],
    ) {
        Err(LoadError::Init { key, message }) => {
            assert_eq!(key.as_deref(), Some("mode"));
            assert_eq!(message, "init refused on purpose");
        }
        other => panic!("expected an init error, got {other:?}"),
    }
    match rt.try_load(
        components::HOSTILE_VALIDATOR,
        PluginKind::Validator,
        &[("mode", "init-loop")],
    ) {
        Err(LoadError::Start(err)) => assert_eq!(err.trap_cause(), Some(TrapCause::Deadline)),
        other => panic!("expected a deadline trap at start, got {other:?}"),
    }
    assert_host_still_healthy(&rt);
}

#[test]
fn wrong_kind_is_refused_with_what_it_looks_like() {
    let rt = runtime();
    let err = rt
        .try_load(components::FRACTION_SAMPLER, PluginKind::Validator, &[])
        .expect_err("a sampler is not a validator");
    let text = err.to_string();
    assert!(
        matches!(
            err,
            LoadError::MissingExport {
                export: "validate",
                ..
            }
        ),
        "{text}"
    );
    assert!(text.contains("looks like a sampler"), "{text}");
}

#[test]
fn forbidden_import_is_refused() {
    let rt = runtime();
    let err = rt
        .try_load(components::FORBIDDEN_IMPORT, PluginKind::Validator, &[])
        .expect_err("imports evil:net/socket");
    match &err {
        LoadError::ForbiddenImport { import, .. } => {
            assert!(import.starts_with("evil:net/socket"), "{import}")
        }
        other => panic!("expected a forbidden import, got {other}"),
    }
}

fn load_bytes(rt: &TestRuntime, bytes: &[u8]) -> LoadError {
    rt.runtime
        .load_bytes(
            "bad.wasm".into(),
            bytes,
            Some(PluginKind::Validator),
            PluginOptions::default(),
        )
        .expect_err("must be refused")
}

#[test]
fn random_truncated_and_core_module_files_are_refused() {
    let rt = runtime();
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert!(matches!(
        load_bytes(&rt, &random),
        LoadError::NotWasm { .. }
    ));

    let good = std::fs::read(components::RANGE_VALIDATOR).expect("read component");
    let truncated = load_bytes(&rt, &good[..good.len() / 2]);
    assert!(
        matches!(truncated, LoadError::Compile { .. }),
        "{truncated}"
    );

    let mut garbage = good[..8].to_vec();
    garbage.extend_from_slice(&random);
    assert!(matches!(
        load_bytes(&rt, &garbage),
        LoadError::Compile { .. }
    ));

    let core = b"\0asm\x01\0\0\0";
    let err = load_bytes(&rt, core);
    assert!(matches!(err, LoadError::CoreModule { .. }), "{err}");
    assert!(err.to_string().contains("not a component"), "{err}");
    assert_host_still_healthy(&rt);
}
