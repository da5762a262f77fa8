use halyard_sdk::{AttrValue, Config, Event, Frame};

use super::Mapping;

const NOW: i64 = 1_700_000_000_123_456_789;

fn mapping(pairs: &[(&str, &str)]) -> Mapping {
    match Mapping::from_config(&Config::from_pairs(pairs.iter().copied())) {
        Ok(m) => m,
        Err(err) => panic!("init failed: {err:?}"),
    }
}

fn decode(m: &Mapping, data: &[u8]) -> Result<Vec<Event>, String> {
    let frame = Frame {
        data: data.to_vec(),
        content_type: String::new(),
        origin: "file:/tmp/in.jsonl".into(),
    };
    m.decode_frame(&frame, &mut || NOW)
}

#[test]
fn maps_fields_attributes_and_body() {
    let m = mapping(&[]);
    let line = br#"{"device":"d1","metric":"temp","value":21.5,"unit":"celsius","ts":1700000000000,"room":"k","floor":2,"ratio":0.5,"ok":true,"tags":["a"],"extra":null}"#;
    let events = decode(&m, line).expect("decodes");
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!((e.source.as_str(), e.kind.as_str()), ("d1", "temp"));
    assert_eq!((e.value, e.unit.as_deref()), (Some(21.5), Some("celsius")));
    assert_eq!(e.time_ns, 1_700_000_000_000_000_000);
    assert_eq!(e.attr("room"), Some(&AttrValue::Str("k".into())));
    assert_eq!(e.attr("floor"), Some(&AttrValue::Int(2)));
    assert_eq!(e.attr("ratio"), Some(&AttrValue::Float(0.5)));
    assert_eq!(e.attr("ok"), Some(&AttrValue::Boolean(true)));
    assert_eq!(e.attributes.len(), 4);
    assert_eq!(e.body.as_deref(), Some(r#"{"tags":["a"],"extra":null}"#));
    assert_eq!((e.id.hi, e.id.lo), (0, 0));
}

#[test]
fn defaults_fallbacks_and_blank_lines() {
    let m = mapping(&[("kind_prefix", "sensor."), ("time_unit", "s")]);
    let data = b"{\"source\":\"s1\",\"kind\":\"hum\",\"ts\":2}\r\n\n  \n{\"value\":null}\n";
    let events = decode(&m, data).expect("decodes");
    assert_eq!(events.len(), 2);
    assert_eq!(
        (events[0].source.as_str(), events[0].kind.as_str()),
        ("s1", "sensor.hum")
    );
    assert_eq!(events[0].time_ns, 2_000_000_000);
    assert_eq!(events[0].body, None);
    assert_eq!(events[1].source, "file:/tmp/in.jsonl");
    assert_eq!((events[1].kind.as_str(), events[1].value), ("", None));
    assert_eq!(events[1].time_ns, NOW);
    let m = mapping(&[("default_source", "gw")]);
    assert_eq!(decode(&m, b"{}").expect("decodes")[0].source, "gw");
}

#[test]
fn frame_errors_are_all_or_nothing() {
    let m = mapping(&[]);
    assert_eq!(
        decode(&m, b"{\"value\":1}\n{\"value\":\"x\"}"),
        Err("line 2: field \"value\" is not a number".into())
    );
    assert_eq!(
        decode(&m, b"{}\n\n[1]"),
        Err("line 3: not a JSON object".into())
    );
    assert_eq!(decode(&m, b"\xff\xfe"), Err("line 1: not UTF-8".into()));
    let err = decode(&m, b"{}\n{oops").expect_err("bad JSON");
    assert!(
        err.starts_with("line 2: invalid JSON at column 2: "),
        "{err}"
    );
    assert_eq!(decode(&m, b""), Ok(vec![]));
}

#[test]
fn never_panics_on_odd_input() {
    let m = mapping(&[("time_unit", "s")]);
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    for data in [
        &b"{\"ts\":1e300}"[..],
        b"{\"ts\":9223372036854775807}",
        b"{\"device\":{\"a\":1}}",
        b"{\"n\":18446744073709551615}",
        deep.as_bytes(),
        b"\"just a string\"",
    ] {
        let _ = decode(&m, data);
    }
}

#[test]
fn bad_config_names_the_key() {
    let err = Mapping::from_config(&Config::from_pairs([("time_unit", "min")]))
        .expect_err("config should be refused");
    assert_eq!(err.key.as_deref(), Some("time_unit"));
}
