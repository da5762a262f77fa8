use halyard_sdk::{AttrValue, Config};

use super::*;

fn settings(pairs: &[(&str, &str)]) -> Settings {
    match Settings::from_config(&Config::from_pairs(pairs.iter().copied())) {
        Ok(s) => s,
        Err(err) => panic!("init failed: {err:?}"),
    }
}

fn source(pairs: &[(&str, &str)]) -> SimSource {
    SimSource {
        sim: Simulator::new(settings(pairs)),
        owed: 0,
        carry: 0.0,
        last_poll_ns: None,
    }
}

#[test]
fn cycles_device_major_with_names_units_and_seq() {
    let mut sim = Simulator::new(settings(&[("devices", "2"), ("fault_rate", "0")]));
    let events = sim.take(7, 5);
    let got: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.source.as_str(), e.kind.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("sim-0000", "temperature"),
            ("sim-0000", "humidity"),
            ("sim-0000", "vibration"),
            ("sim-0001", "temperature"),
            ("sim-0001", "humidity"),
            ("sim-0001", "vibration"),
            ("sim-0000", "temperature"),
        ]
    );
    assert_eq!(events[1].unit.as_deref(), Some("percent"));
    assert_eq!(events[6].attr("seq"), Some(&AttrValue::Int(3)));
    assert_eq!(events[6].attr("simulated"), Some(&AttrValue::Boolean(true)));
    assert_eq!(events[0].time_ns, 5);
    for e in &events {
        let v = e.value.expect("no faults configured");
        let base = if e.kind == "temperature" {
            21.0
        } else if e.kind == "humidity" {
            45.0
        } else {
            2.0
        };
        assert!((v - base).abs() <= 1.5, "{e:?}");
    }
}

#[test]
fn same_seed_same_values_and_faults_when_asked() {
    let pairs = [
        ("seed", "7"),
        ("metrics", "vibration"),
        ("source_prefix", "x/"),
    ];
    let a = Simulator::new(settings(&pairs)).take(20, 0);
    let b = Simulator::new(settings(&pairs)).take(20, 0);
    let values = |es: &[halyard_sdk::Event]| {
        es.iter()
            .map(|e| e.value.map(f64::to_bits))
            .collect::<Vec<_>>()
    };
    assert_eq!(values(&a), values(&b));
    assert_eq!(a[0].source, "x/0000");
    let faulty = Simulator::new(settings(&[("fault_rate", "1")])).take(50, 0);
    assert!(faulty.iter().all(|e| match e.value {
        None => true,
        Some(v) => v.is_nan() || v == -999.0 || v == 1e6,
    }));
}

#[test]
fn rate_mode_paces_caps_backlog_and_respects_max() {
    let mut s = source(&[("devices", "2"), ("metrics", "temperature"), ("rate", "2")]);
    assert_eq!(s.due(1_000, 100), 2, "first poll: one per series");
    assert_eq!(
        s.due(1_000 + 250_000_000, 100),
        0,
        "half a round is carried"
    );
    assert_eq!(s.due(1_000 + 500_000_000, 100), 2);
    assert_eq!(
        s.due(1_000 + 3_500_000_000, 5),
        5,
        "capped at max, rest owed"
    );
    assert_eq!(s.due(1_000 + 3_500_000_000, 100), 7);
    // An hour of silence owes at most 10 s x 2/s x 2 series.
    assert_eq!(s.due(3_600_000_000_000, 1_000), 40);
}

#[test]
fn bad_config_names_the_key() {
    for (k, v) in [
        ("devices", "0"),
        ("metrics", "pressure"),
        ("rate", "0"),
        ("noise", "-1"),
        ("fault_rate", "2"),
        ("seed", "-5"),
        ("per_poll", "many"),
    ] {
        let err = Settings::from_config(&Config::from_pairs([(k, v)]))
            .expect_err("config should be refused");
        assert_eq!(err.key.as_deref(), Some(k));
    }
}
