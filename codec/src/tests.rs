//! Round trips, the string sharing, every rule of the reader, and a
//! property test: no buffer, random, truncated or mutated, makes the reader
//! panic.

use super::*;

fn fields<'a>(source: &'a str, kind: &'a str) -> Fields<'a> {
    Fields {
        id: (7, 9),
        time_ns: 1_700_000_000_000_000_000,
        source,
        kind,
        value: Some(21.5),
        unit: Some("celsius"),
        body: None,
    }
}

fn sample() -> Vec<u8> {
    let mut w = Writer::new();
    w.push(
        &fields("d1", "temp"),
        [("operator", Value::Str("alice")), ("seq", Value::Int(3))],
    )
    .unwrap();
    w.push(
        &Fields {
            value: None,
            unit: None,
            body: Some(r#"{"raw":"é"}"#),
            ..fields("d1", "temp")
        },
        [
            ("operator", Value::Str("bob")),
            ("ok", Value::Bool(true)),
            ("f", Value::Float(-0.5)),
        ],
    )
    .unwrap();
    w.push(&fields("d2", "hum"), []).unwrap();
    w.finish()
}

#[test]
fn round_trip_keeps_every_field_and_type() {
    let buf = sample();
    let batch = Batch::parse(&buf).unwrap();
    assert_eq!(batch.len(), 3);
    let e0 = batch.event(0).unwrap();
    assert_eq!(e0.fields, fields("d1", "temp"));
    let a0: Vec<_> = e0.attrs().collect();
    assert_eq!(
        a0,
        [("operator", Value::Str("alice")), ("seq", Value::Int(3))]
    );
    let e1 = batch.event(1).unwrap();
    assert_eq!(e1.fields.value, None);
    assert_eq!(e1.fields.unit, None);
    assert_eq!(e1.fields.body, Some(r#"{"raw":"é"}"#));
    assert_eq!(e1.attr_count(), 3);
    assert_eq!(e1.attrs().nth(2), Some(("f", Value::Float(-0.5))));
    let e2 = batch.event(2).unwrap();
    assert_eq!((e2.fields.source, e2.fields.kind), ("d2", "hum"));
    assert_eq!(e2.attrs().count(), 0);
    assert!(batch.event(3).is_none());
    assert_eq!(batch.iter().count(), 3);
}

#[test]
fn repeated_strings_are_stored_once() {
    let mut w = Writer::new();
    for _ in 0..100 {
        w.push(
            &fields("device-1", "temperature"),
            [("operator", Value::Int(1))],
        )
        .unwrap();
    }
    let buf = w.finish();
    // "device-1" + "temperature" + "celsius" + "operator", once each.
    let strings = 8 + 11 + 7 + 8;
    assert_eq!(
        buf.len(),
        HEADER_LEN + 100 * EVENT_LEN + 100 * ATTR_LEN + strings
    );
    let batch = Batch::parse(&buf).unwrap();
    assert_eq!(batch.referenced_bytes(), 100 * strings as u64);
    assert!(w.is_empty(), "finish leaves the writer empty");
}

#[test]
fn a_rollback_forgets_the_events_after_its_mark_and_nothing_before() {
    let mut w = Writer::new();
    w.push(&fields("d1", "temp"), [("operator", Value::Str("alice"))])
        .unwrap();
    let mark = w.mark();
    assert_eq!(mark.events(), 1);
    // A failed frame: two events, the second sharing strings with the first.
    w.push(&fields("d9", "volts"), [("lost", Value::Int(1))])
        .unwrap();
    w.push(&fields("d9", "volts"), [("lost", Value::Int(2))])
        .unwrap();
    w.rollback(mark);
    assert_eq!(w.len(), 1);
    // The next event repeats what the forgotten ones stored: it must not
    // point at bytes that are gone.
    w.push(&fields("d9", "volts"), [("kept", Value::Bool(true))])
        .unwrap();
    let buf = w.finish();
    let batch = Batch::parse(&buf).unwrap();
    let events: Vec<_> = batch
        .iter()
        .map(|e| {
            (
                e.fields.source,
                e.fields.kind,
                e.attrs().collect::<Vec<_>>(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("d1", "temp", vec![("operator", Value::Str("alice"))]),
            ("d9", "volts", vec![("kept", Value::Bool(true))]),
        ]
    );
    // Exactly the strings of the two events shipped, nothing of the lost.
    let strings = "d1temp".len()
        + "celsius".len()
        + "operatoralice".len()
        + "d9volts".len()
        + "celsius".len()
        + "kept".len();
    assert_eq!(
        buf.len(),
        HEADER_LEN + 2 * EVENT_LEN + 2 * ATTR_LEN + strings
    );
}

#[test]
fn an_empty_batch_is_just_a_header() {
    let buf = Writer::new().finish();
    assert_eq!(buf, [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert!(Batch::parse(&buf).unwrap().is_empty());
}

/// A change to a good buffer that must make it invalid.
type Mutation = Box<dyn Fn(&mut Vec<u8>)>;

#[test]
fn every_rule_is_checked_with_a_clear_error() {
    let good = sample();
    let attrs_at = HEADER_LEN + 3 * EVENT_LEN;
    let strings_at = attrs_at + 5 * ATTR_LEN;
    let cases: Vec<(Mutation, &str)> = vec![
        (
            Box::new(|b| b.truncate(10)),
            "shorter than its 16-byte header",
        ),
        (Box::new(|b| b[0] = 2), "layout version 2"),
        (Box::new(|b| b[2] = 1), "reserved bytes 1..4"),
        (Box::new(|b| b.push(b'x')), "but its header says"),
        (Box::new(|b| b[4] = 200), "but its header says"),
        (Box::new(move |b| b[strings_at] = 0xff), "not UTF-8"),
        // Event 0's source offset far past the string area.
        (
            Box::new(|b| b[HEADER_LEN + 33] = 0x7f),
            "event 0 source: reference",
        ),
        // Event 1's flags: an unknown bit.
        (
            Box::new(|b| b[HEADER_LEN + EVENT_LEN + 72] = 8),
            "unknown flag bits",
        ),
        // Event 1's first attribute index is wrong.
        (
            Box::new(|b| b[HEADER_LEN + EVENT_LEN + 64] = 0),
            "not the next in order",
        ),
        // Event 2 claims one attribute that does not exist.
        (
            Box::new(|b| b[HEADER_LEN + 2 * EVENT_LEN + 68] = 1),
            "not the next in order",
        ),
        // Event 0 uses one attribute fewer: one is left over.
        (
            Box::new(|b| b[HEADER_LEN + 68] = 1),
            "not the next in order",
        ),
        (
            Box::new(move |b| b[attrs_at + 8] = 9),
            "attribute 0: unknown tag 9",
        ),
        (
            Box::new(move |b| b[attrs_at + 12] = 1),
            "attribute 0: reserved",
        ),
        // Attribute 3 is the boolean.
        (
            Box::new(move |b| b[attrs_at + 3 * ATTR_LEN + 16] = 2),
            "neither 0 nor 1",
        ),
    ];
    for (i, (mutate, expected)) in cases.iter().enumerate() {
        let mut buf = good.clone();
        mutate(&mut buf);
        let err = Batch::parse(&buf).expect_err(&format!("case {i} parsed"));
        assert!(
            err.to_string().contains(expected),
            "case {i}: {err} does not say {expected:?}"
        );
    }
}

#[test]
fn a_reference_inside_a_character_is_refused() {
    let mut w = Writer::new();
    w.push(&fields("é", "k"), []).unwrap();
    let mut buf = w.finish();
    // The source "é" is 2 bytes at offset 0; make it 1 byte long.
    buf[HEADER_LEN + 36] = 1;
    let err = Batch::parse(&buf).unwrap_err();
    assert!(err.to_string().contains("character boundary"), "{err}");
}

#[test]
fn frames_split_by_their_ends() {
    let mut data = Vec::new();
    let mut ends = Vec::new();
    let lines: [&[u8]; 3] = [b"ab", b"", b"cde"];
    frame_buffer(lines, &mut data, &mut ends).unwrap();
    assert_eq!(ends, [2, 2, 5]);
    assert_eq!(frames(&data, &ends).unwrap(), lines);
    assert!(frames(&data, &[3, 2, 5]).is_err(), "decreasing");
    assert!(frames(&data, &[2, 9]).is_err(), "past the data");
    assert!(frames(&data, &[2, 4]).is_err(), "short of the data");
    assert_eq!(frames(&[], &[]).unwrap(), Vec::<&[u8]>::new());
}

/// A small deterministic PRNG (xorshift64*), so the property test needs no
/// dependency and every failure is reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Reads everything a reader can read, as the host does.
fn read_all(buf: &[u8]) {
    if let Ok(batch) = Batch::parse(buf) {
        for e in batch.iter() {
            let _ = (e.fields.source.len(), e.fields.body, e.attrs().count());
        }
    }
}

#[test]
fn no_buffer_makes_the_reader_panic() {
    let good = sample();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..20_000 {
        let buf = match round % 4 {
            // Pure noise, often with a plausible header.
            0 => {
                let len = rng.below(400);
                let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                if let Some(v) = b.first_mut() {
                    *v = LAYOUT_VERSION;
                }
                b
            }
            // Truncated.
            1 => good[..rng.below(good.len() + 1)].to_vec(),
            // A few bytes flipped.
            2 => {
                let mut b = good.clone();
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(b.len());
                    b[at] = rng.next() as u8;
                }
                b
            }
            // Counts set to fit the length, records random.
            _ => {
                let n = rng.below(4) as u32;
                let a = rng.below(6) as u32;
                let s = rng.below(40) as u32;
                let len = batch_len(n.into(), a.into(), s.into()).unwrap() as usize;
                let mut b: Vec<u8> = (0..len).map(|_| (rng.next() % 8) as u8).collect();
                b[..4].copy_from_slice(&[1, 0, 0, 0]);
                b[4..8].copy_from_slice(&n.to_le_bytes());
                b[8..12].copy_from_slice(&a.to_le_bytes());
                b[12..16].copy_from_slice(&s.to_le_bytes());
                b
            }
        };
        read_all(&buf);
        let ends: Vec<u32> = (0..rng.below(5)).map(|_| rng.below(20) as u32).collect();
        let _ = frames(&buf, &ends);
    }
}
