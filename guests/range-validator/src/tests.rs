use super::*;

const NOW: i64 = 1_700_000_000_000_000_000;

fn validator(pairs: &[(&str, &str)]) -> RangeValidator {
    match RangeValidator::from_config(&Config::from_pairs(pairs.iter().copied())) {
        Ok(v) => v,
        Err(err) => panic!("init failed: {err:?}"),
    }
}

fn reading(kind: &str, value: Option<f64>) -> Event {
    let mut event = Event::new("dev-1", kind, NOW);
    event.value = value;
    event
}

fn reason(v: &RangeValidator, event: &Event) -> String {
    match v.check(&Checked::of(event), NOW) {
        Verdict::Accept => "accept".into(),
        Verdict::Reject(reason) => reason,
    }
}

#[test]
fn checks_run_in_the_documented_order() {
    let v = validator(&[("min", "0"), ("max", "100")]);
    let mut e = reading("", None);
    e.source.clear();
    assert_eq!(reason(&v, &e), "missing source");
    assert_eq!(reason(&v, &reading("", None)), "missing kind");
    assert_eq!(reason(&v, &reading("temp", None)), "missing value");
    assert_eq!(
        reason(&v, &reading("temp", Some(f64::NAN))),
        "value is not finite"
    );
    assert_eq!(
        reason(&v, &reading("temp", Some(f64::INFINITY))),
        "value is not finite"
    );
    assert_eq!(
        reason(&v, &reading("temp", Some(-3.5))),
        "value -3.5 is below the minimum 0 for temp"
    );
    assert_eq!(
        reason(&v, &reading("temp", Some(100.25))),
        "value 100.25 is above the maximum 100 for temp"
    );
    assert_eq!(reason(&v, &reading("temp", Some(100.0))), "accept");
}

#[test]
fn per_kind_bounds_override_the_defaults() {
    let v = validator(&[("min", "-10"), ("max", "10"), ("min.temp", "0")]);
    assert_eq!(
        reason(&v, &reading("temp", Some(-1.0))),
        "value -1 is below the minimum 0 for temp"
    );
    assert_eq!(
        reason(&v, &reading("temp", Some(11.0))),
        "value 11 is above the maximum 10 for temp"
    );
    assert_eq!(reason(&v, &reading("hum", Some(-1.0))), "accept");
}

#[test]
fn optional_values_and_time_limits() {
    let v = validator(&[("require_value", "false"), ("max_past_s", "60")]);
    assert_eq!(reason(&v, &reading("door", None)), "accept");
    let mut e = reading("door", None);
    e.time_ns = NOW + 301_900_000_000;
    assert_eq!(reason(&v, &e), "time is 301s in the future (limit 300s)");
    e.time_ns = NOW - 61_000_000_000;
    assert_eq!(reason(&v, &e), "time is 61s in the past (limit 60s)");
    e.time_ns = NOW - 60_000_000_000;
    assert_eq!(reason(&v, &e), "accept");
    let off = validator(&[("max_future_s", "0")]);
    let mut far = reading("t", Some(1.0));
    far.time_ns = i64::MAX;
    assert_eq!(reason(&off, &far), "accept");
}

#[test]
fn bad_config_names_the_key() {
    for (pairs, key) in [
        (&[("min", "low")][..], "min"),
        (&[("max.temp", "NaN")][..], "max.temp"),
        (&[("require_value", "perhaps")][..], "require_value"),
        (&[("max_future_s", "-1")][..], "max_future_s"),
        (&[("min", "5"), ("max", "1")][..], "min"),
    ] {
        let err = RangeValidator::from_config(&Config::from_pairs(pairs.iter().copied()))
            .expect_err("config should be refused");
        assert_eq!(err.key.as_deref(), Some(key), "{pairs:?}");
    }
}
