use halyard_sdk::{AttrValue, Config, Event, EventSink};

use super::Mapping;

const NOW: i64 = 1_700_000_000_123_456_789;

fn mapping(pairs: &[(&str, &str)]) -> Mapping {
    match Mapping::from_config(&Config::from_pairs(pairs.iter().copied())) {
        Ok(m) => m,
        Err(err) => panic!("init failed: {err:?}"),
    }
}

fn decode(m: &Mapping, data: &[u8]) -> Result<Vec<Event>, String> {
    decode_at(m, "file:/tmp/in.jsonl", data)
}

/// Both paths, owned events and events pushed into the SDK's batch, which
/// must agree exactly (floats compared by their bits, through `Debug`).
fn decode_at(m: &Mapping, origin: &str, data: &[u8]) -> Result<Vec<Event>, String> {
    let owned = m.decode_frame(data, origin, &mut || NOW);
    let (viewed, pushed) = EventSink::capture(|out| {
        out.frame(|out| m.decode_frame_into(data, origin, &mut || NOW, out))
    });
    match (&owned, viewed) {
        (Ok(events), Ok(count)) => {
            assert_eq!(count as usize, events.len());
            assert_eq!(format!("{pushed:?}"), format!("{events:?}"));
        }
        (Err(owned), Err(viewed)) => {
            assert_eq!(&viewed, owned);
            assert!(pushed.is_empty(), "a failed frame's events are taken back");
        }
        (owned, viewed) => panic!("the paths disagree: {owned:?} against {viewed:?}"),
    }
    owned
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
fn topic_pattern_names_source_and_kind_of_mqtt_frames() {
    let m = mapping(&[
        ("topic_pattern", "sensors/{source}/{kind}"),
        ("kind_prefix", "env."),
        ("default_source", "gw"),
    ]);
    let decode_at = |origin: &str, data: &[u8]| decode_at(&m, origin, data).expect("decodes");
    let e = &decode_at("mqtt:sensors/boiler-3/temp", b"{\"value\":1}")[0];
    assert_eq!(
        (e.source.as_str(), e.kind.as_str()),
        ("boiler-3", "env.temp")
    );
    // Fields in the line win over the topic.
    let e = &decode_at(
        "mqtt:sensors/b/t",
        b"{\"device\":\"d9\",\"metric\":\"hum\"}",
    )[0];
    assert_eq!((e.source.as_str(), e.kind.as_str()), ("d9", "env.hum"));
    // A topic that does not match, or another input: as without a pattern.
    let e = &decode_at("mqtt:other/b/t", b"{}")[0];
    assert_eq!((e.source.as_str(), e.kind.as_str()), ("gw", ""));
    let e = &decode_at("file:/x", b"{}")[0];
    assert_eq!(e.source, "gw");
    let bad = Mapping::from_config(&Config::from_pairs([("topic_pattern", "a/#/b")]));
    assert!(bad.is_err());
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
fn events_over_the_host_caps_fail_their_frame_with_the_field() {
    let m = mapping(&[]);
    let big = "s".repeat(100 << 10);
    let long_source = format!("{{\"device\":\"{big}\",\"value\":1}}");
    assert_eq!(
        decode(&m, format!("{{}}\n{long_source}").as_bytes()),
        Err("line 2: source of 102400 bytes (limit 65536)".into())
    );
    let attrs: Vec<String> = (0..300).map(|i| format!("\"a{i}\":{i}")).collect();
    let many = format!("{{{}}}", attrs.join(","));
    assert_eq!(
        decode(&m, many.as_bytes()),
        Err("line 1: 300 attributes (limit 256)".into())
    );
    let value = format!("{{\"note\":\"{big}\"}}");
    assert_eq!(
        decode(&m, value.as_bytes()),
        Err("line 1: attribute \"note\" of 102400 bytes (limit 65536)".into())
    );
    // Stopped while parsing: the body's compact JSON is surely over.
    let body = format!("{{\"blob\":[\"{}\"]}}", "b".repeat(1 << 20));
    assert_eq!(
        decode(&m, body.as_bytes()),
        Err("line 1: body of more than 1048576 bytes (limit 1048576)".into())
    );
    // Over only once serialised (each 1.5 counts as 1 byte while parsing).
    let floats = format!("{{\"f\":[{}1.5]}}", "1.5,".repeat(300_000));
    assert_eq!(
        decode(&m, floats.as_bytes()),
        Err("line 1: body of 1200011 bytes (limit 1048576)".into())
    );
    assert_eq!(
        decode(&m, b"{\"ts\":-1}"),
        Err("line 1: field \"ts\" is before 1970 (-1000000 ns)".into())
    );
    let kind = format!("{{\"metric\":\"{big}\"}}");
    assert!(decode(&m, kind.as_bytes()).is_err_and(|e| e.starts_with("line 1: kind of ")));
    // Exactly at the caps is fine.
    let at_cap = format!("{{\"device\":\"{}\"}}", "s".repeat(64 << 10));
    assert_eq!(decode(&m, at_cap.as_bytes()).map(|e| e.len()), Ok(1));
    let attrs: Vec<String> = (0..256).map(|i| format!("\"a{i}\":{i}")).collect();
    let at_cap = format!("{{{}}}", attrs.join(","));
    assert_eq!(decode(&m, at_cap.as_bytes()).map(|e| e.len()), Ok(1));
}

#[test]
fn lines_past_what_an_event_can_hold_stop_early() {
    let m = mapping(&[("max_attributes", "4"), ("max_body_bytes", "60")]);
    // 4 attributes + 7 mapped fields + 60 / 6 + 1 body fields = 22 keys.
    let keys: Vec<String> = (0..23).map(|i| format!("\"k{i}\":null")).collect();
    assert_eq!(
        decode(&m, format!("{{{}}}", keys.join(",")).as_bytes()),
        Err("line 1: more than 22 fields (an event carries at most 4 attributes and a 60-byte body)".into())
    );
    // Repeated keys are one field, and a replaced nested value is refunded.
    let repeated = format!("{{{}}}", vec![r#""x":[1,2,3,4,5,6,7,8,9]"#; 50].join(","));
    let events = decode(&m, repeated.as_bytes()).expect("one field, small body");
    assert_eq!(
        events[0].body.as_deref(),
        Some(r#"{"x":[1,2,3,4,5,6,7,8,9]}"#)
    );
    // A line that is a huge array is still just not an object.
    let array = format!("[{}1]", "1,".repeat(100));
    assert_eq!(
        decode(&m, array.as_bytes()),
        Err("line 1: not a JSON object".into())
    );
}

#[test]
fn many_keys_are_indexed_and_keep_map_semantics() {
    let m = mapping(&[]);
    let mut fields: Vec<String> = (0..40).map(|i| format!("\"a{i}\":{i}")).collect();
    fields.push(r#""a3":"again""#.into());
    fields.push(r#""device":"d9""#.into());
    let events = decode(&m, format!("{{{}}}", fields.join(",")).as_bytes()).expect("decodes");
    let e = &events[0];
    assert_eq!(e.source, "d9");
    assert_eq!(e.attributes.len(), 40);
    assert_eq!(e.attributes[3].key, "a3");
    assert_eq!(e.attr("a3"), Some(&AttrValue::Str("again".into())));
}

#[test]
fn the_caps_are_config_keys() {
    let m = mapping(&[
        ("max_string_bytes", "4"),
        ("max_attributes", "1"),
        ("max_body_bytes", "10"),
        ("max_events_per_frame", "2"),
        ("default_source", "gw"),
    ]);
    assert_eq!(
        decode(&m, br#"{"device":"12345"}"#),
        Err("line 1: source of 5 bytes (limit 4)".into())
    );
    assert_eq!(
        decode(&m, br#"{"a":1,"b":2}"#),
        Err("line 1: 2 attributes (limit 1)".into())
    );
    assert_eq!(
        decode(&m, br#"{"x":[1,2,3,4,5]}"#),
        Err("line 1: body of more than 10 bytes (limit 10)".into())
    );
    assert_eq!(
        decode(&m, br#"{"x":[1.5]}"#),
        Err("line 1: body of 11 bytes (limit 10)".into())
    );
    assert_eq!(
        decode(&m, b"{}\n\n{}\n{}"),
        Err("line 4: more than 2 events in one frame".into())
    );
    assert_eq!(decode(&m, b"{}\n{}").map(|e| e.len()), Ok(2));
    let err = Mapping::from_config(&Config::from_pairs([("max_attributes", "-1")]))
        .expect_err("not a whole number");
    assert_eq!(err.key.as_deref(), Some("max_attributes"));
}

#[test]
fn bad_config_names_the_key() {
    let err = Mapping::from_config(&Config::from_pairs([("time_unit", "min")]))
        .expect_err("config should be refused");
    assert_eq!(err.key.as_deref(), Some("time_unit"));
}

/// The decoder as it was before `line.rs`: the whole line parsed into a
/// `serde_json::Value`. Kept as the reference the fast path must match
/// byte for byte.
mod reference {
    use halyard_sdk::{AttrValue, Event};
    use serde_json::{Map, Number, Value};

    use super::super::Mapping;

    pub fn decode_frame(
        m: &Mapping,
        data: &[u8],
        origin: &str,
        now: i64,
    ) -> Result<Vec<Event>, String> {
        let mut events = Vec::new();
        for (index, raw) in data.split(|b| *b == b'\n').enumerate() {
            let n = index + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let line = std::str::from_utf8(raw).map_err(|_| format!("line {n}: not UTF-8"))?;
            if line.trim().is_empty() {
                continue;
            }
            // The limit checks are not the parser's business: the same
            // ones run here, so the comparison stays about parsing.
            let event = m
                .limits
                .room_for_another(events.len())
                .and_then(|()| decode_line(m, line, origin, now))
                .and_then(|event| m.limits.check(&event, &m.time_field).map(|()| event))
                .map_err(|reason| format!("line {n}: {reason}"))?;
            events.push(event);
        }
        Ok(events)
    }

    fn decode_line(m: &Mapping, line: &str, origin: &str, now: i64) -> Result<Event, String> {
        let Value::Object(mut object) = serde_json::from_str::<Value>(line).map_err(json_error)?
        else {
            return Err("not a JSON object".to_owned());
        };
        let source = match take_text(&mut object, &m.source_field)? {
            Some(s) => s,
            None => take_text(&mut object, "source")?
                .or_else(|| m.default_source.clone())
                .unwrap_or_else(|| origin.to_owned()),
        };
        let kind = match take_text(&mut object, &m.kind_field)? {
            Some(k) => Some(k),
            None => take_text(&mut object, "kind")?,
        };
        let kind = kind.map_or_else(String::new, |k| format!("{}{k}", m.kind_prefix));
        let value = match object.shift_remove(&m.value_field) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(_) => return Err(format!("field {:?} is not a number", m.value_field)),
        };
        let unit = take_text(&mut object, &m.unit_field)?;
        let time_ns = match object.shift_remove(&m.time_field) {
            None | Some(Value::Null) => now,
            Some(Value::Number(n)) => m.scale_time(&n)?,
            Some(_) => return Err(format!("field {:?} is not a number", m.time_field)),
        };
        let mut event = Event::new(source, kind, time_ns);
        event.value = value;
        event.unit = unit;
        let mut body = Map::new();
        for (key, value) in object {
            match value {
                Value::String(s) => event.set_attr(key, AttrValue::Str(s)),
                Value::Bool(b) => event.set_attr(key, AttrValue::Boolean(b)),
                Value::Number(n) => event.set_attr(key, number_attr(&n)),
                nested @ (Value::Object(_) | Value::Array(_) | Value::Null) => {
                    body.insert(key, nested);
                }
            }
        }
        if !body.is_empty() {
            event.body = Some(Value::Object(body).to_string());
        }
        Ok(event)
    }

    fn take_text(object: &mut Map<String, Value>, field: &str) -> Result<Option<String>, String> {
        match object.shift_remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(scalar @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(scalar.to_string())),
            Some(_) => Err(format!("field {field:?} is not a string")),
        }
    }

    fn json_error(err: serde_json::Error) -> String {
        let text = err.to_string();
        let suffix = format!(" at line {} column {}", err.line(), err.column());
        let what = text.strip_suffix(&suffix).unwrap_or(&text);
        format!("invalid JSON at column {}: {what}", err.column())
    }

    fn number_attr(n: &Number) -> AttrValue {
        match n.as_i64() {
            Some(i) => AttrValue::Int(i),
            None => AttrValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        }
    }
}

/// Lines that exercise every corner of the mapping and the parser.
fn tricky_lines() -> Vec<String> {
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let deep_obj = format!("{{\"a\":{}1{}}}", "{\"b\":".repeat(130), "}".repeat(130));
    let mut lines: Vec<String> = [
        r#"{"device":"d1","metric":"temp","value":21.5,"unit":"celsius","ts":1700000000000,"room":"k","floor":2,"ratio":0.5,"ok":true,"tags":["a"],"extra":null}"#,
        r#"{"device":"d1","device":"d2","room":"a","room":null,"x":1,"x":"y"}"#,
        r#"{"device":null,"source":"s","metric":null,"kind":"k","source":"t"}"#,
        r#"{"device":12,"metric":true,"unit":1.5e3,"value":-0,"ts":-0}"#,
        r#"{"device":-0.0,"metric":1e2,"unit":false,"value":1E-7,"ts":1.5}"#,
        r#"{"n":18446744073709551615,"m":-9223372036854775808,"big":1e300,"neg":-1.5e-300}"#,
        r#"{"n":18446744073709551616,"m":-9223372036854775809}"#,
        r#"{"ts":9223372036854775807}"#,
        r#"{"ts":1e300}"#,
        r#"{"ts":-9223372036854.775}"#,
        r#"{"ts":"x"}"#,
        r#"{"ts":{}}"#,
        r#"{"value":[1]}"#,
        r#"{"value":true}"#,
        r#"{"unit":{"a":1}}"#,
        r#"{"device":[1]}"#,
        r#"{"metric":{}}"#,
        r#"{"kind":[]}"#,
        r#"{"source":{}}"#,
        r#"{"d\u00e9vice":"\u00e9\n\"q\"","k\"ey":"v\\","\ud83d\ude00":"\ud83d\ude00"}"#,
        r#"{"device":"\u0064\u0031","metric":"te\tmp"}"#,
        r#"  { "device" : "d" , "nested" : { "b" : [ 1 , 2.50 , "x" , null , { } ] } , "arr" : [ ] }  "#,
        r#"{"nested":{"z":1,"a":2,"z":3},"obj":{"k":1.0e2}}"#,
        r#"{}"#,
        r#"[]"#,
        r#"[1,2,3]"#,
        r#"[1,2"#,
        r#"[1,oops]"#,
        r#""just a string""#,
        r#"42"#,
        r#"-1.5"#,
        r#"true"#,
        r#"null"#,
        r#"{"a":1}x"#,
        r#"{"a":1} {"b":2}"#,
        r#"{"a":1,}"#,
        r#"{"a" 1}"#,
        r#"{"a":}"#,
        r#"{a:1}"#,
        r#"{"a":1"#,
        r#"{"device":"#,
        r#"{"a":"\x"}"#,
        r#"{"a":"\ud800"}"#,
        r#"{"a":01}"#,
        r#"{"a":1.}"#,
        r#"{"a":1e}"#,
        r#"{"a":1e999}"#,
        r#"{"a":-}"#,
        r#"{"a":tru}"#,
        r#"{"a":[1,]}"#,
        r#"{"a":{"b":}}"#,
        "{\"a\":\"tab\there\"}",
        "{oops",
        "}",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    lines.push(deep);
    lines.push(deep_obj);
    lines
}

#[test]
fn fast_path_matches_the_value_reference_byte_for_byte() {
    let configs: [&[(&str, &str)]; 4] = [
        &[],
        &[
            ("kind_prefix", "sensor."),
            ("time_unit", "s"),
            ("default_source", "gw"),
        ],
        &[
            ("source_field", "source"),
            ("kind_field", "kind"),
            ("value_field", "v"),
            ("unit_field", "device"),
            ("time_field", "t"),
            ("time_unit", "ns"),
        ],
        &[
            ("source_field", "x"),
            ("kind_field", "x"),
            ("time_unit", "us"),
        ],
    ];
    let lines = tricky_lines();
    let mut frames: Vec<Vec<u8>> = lines.iter().map(|l| l.clone().into_bytes()).collect();
    frames.push(lines[..4].join("\n").into_bytes());
    frames.push(format!("{}\r\n\n{}\n", lines[0], lines[40]).into_bytes());
    frames.push(b"\xff\xfe{}".to_vec());
    for pairs in configs {
        let m = mapping(pairs);
        for data in &frames {
            let fast = decode(&m, data);
            let slow = reference::decode_frame(&m, data, "file:/tmp/in.jsonl", NOW);
            assert_eq!(
                fast,
                slow,
                "config {pairs:?}, input {}",
                String::from_utf8_lossy(data)
            );
            // Floats compare by value above; their bits must match too.
            if let (Ok(fast), Ok(slow)) = (&fast, &slow) {
                assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
            }
        }
    }
}

#[test]
fn fast_path_matches_the_reference_on_generated_lines() {
    // A small deterministic generator of objects built from tricky parts.
    const KEYS: [&str; 10] = [
        "device", "source", "metric", "kind", "value", "unit", "ts", "a", "b", "a\\u0062",
    ];
    const VALUES: [&str; 16] = [
        "null",
        "true",
        "false",
        "0",
        "-0",
        "12",
        "-7",
        "1.5",
        "1e3",
        "18446744073709551615",
        "\"s\"",
        "\"e\\u00e9\"",
        "\"\"",
        "[]",
        "{\"x\":[1,{\"y\":null}]}",
        "-2.5E-3",
    ];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let m = mapping(&[("kind_prefix", "p.")]);
    for _ in 0..5000 {
        let fields: Vec<String> = (0..next(7))
            .map(|_| {
                format!(
                    "\"{}\":{}",
                    KEYS[next(KEYS.len())],
                    VALUES[next(VALUES.len())]
                )
            })
            .collect();
        let line = format!("{{{}}}", fields.join(","));
        let fast = decode(&m, line.as_bytes());
        let slow = reference::decode_frame(&m, line.as_bytes(), "file:/tmp/in.jsonl", NOW);
        assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{line}");
    }
}
