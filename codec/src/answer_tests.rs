//! The answer layout: what the writer writes reads back the same, and a
//! reader refuses every broken rule without panicking.

use super::*;

/// Every kind of edit, each case of each once: the second action of
/// [`sample`].
const EVERY_EDIT: [EditRef<'static>; 14] = [
    EditRef::Remove(2),
    EditRef::Set("operator", Value::Str("h:00ff")),
    EditRef::Set("seq", Value::Int(-4)),
    EditRef::Set("ok", Value::Bool(true)),
    EditRef::Set("x", Value::Float(1.5)),
    EditRef::TimeNs(-7),
    EditRef::Source("masked"),
    EditRef::Kind("k"),
    EditRef::Value(Some(2.5)),
    EditRef::Value(None),
    EditRef::Unit(Some("c")),
    EditRef::Unit(None),
    EditRef::Body(Some("{}")),
    EditRef::Body(None),
];

fn sample() -> Vec<u8> {
    let mut w = AnswerWriter::new();
    w.keep();
    w.patch(EVERY_EDIT).unwrap();
    w.drop_event();
    w.rewrite(&[1, 2, 3]).unwrap();
    w.patch([EditRef::Set("operator", Value::Str(""))]).unwrap();
    w.finish()
}

#[test]
fn an_answer_reads_back_as_written() {
    let bytes = sample();
    let answer = Answer::parse(&bytes).unwrap();
    assert_eq!(answer.len(), 5);
    let actions: Vec<ActionRef<'_>> = answer.iter().collect();
    assert!(matches!(actions[0], ActionRef::Keep));
    let ActionRef::Patch(edits) = actions[1] else {
        panic!("{:?}", actions[1]);
    };
    assert_eq!(edits.len(), 14);
    assert_eq!(edits.collect::<Vec<_>>(), EVERY_EDIT);
    assert!(matches!(actions[2], ActionRef::Drop));
    assert!(matches!(actions[3], ActionRef::Rewrite([1, 2, 3])));
    let ActionRef::Patch(edits) = actions[4] else {
        panic!("{:?}", actions[4]);
    };
    assert_eq!(
        edits.collect::<Vec<_>>(),
        [EditRef::Set("operator", Value::Str(""))]
    );
    // "operator" is stored once; referenced twice.
    assert_eq!(
        answer.referenced_bytes(),
        (8 + 6 + 3 + 2 + 1 + 6 + 1 + 1 + 2 + 3 + 8) as u64
    );
}

#[test]
fn a_patch_without_edits_is_written_as_a_keep() {
    let mut w = AnswerWriter::new();
    w.patch([]).unwrap();
    let bytes = w.finish();
    let answer = Answer::parse(&bytes).unwrap();
    assert!(matches!(answer.iter().next(), Some(ActionRef::Keep)));
}

#[test]
fn an_empty_answer_is_sound() {
    let bytes = AnswerWriter::new().finish();
    assert_eq!(bytes.len(), ANSWER_HEADER_LEN);
    assert_eq!(bytes.len(), 24);
    assert!(Answer::parse(&bytes).unwrap().is_empty());
}

/// Sets the u32 at `at`.
fn put(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn refused(bytes: &[u8]) -> String {
    match Answer::parse(bytes) {
        Err(LayoutError::Answer { what }) => what,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

const H: usize = ANSWER_HEADER_LEN;
const EDITS_AT: usize = H + 5 * ACTION_LEN;

#[test]
fn every_broken_rule_is_refused_with_its_place() {
    let good = sample();
    let mut cases: Vec<(Vec<u8>, &str)> = Vec::new();
    let mut case = |f: &dyn Fn(&mut Vec<u8>), want: &'static str| {
        let mut b = good.clone();
        f(&mut b);
        cases.push((b, want));
    };
    case(&|b| b.truncate(10), "shorter than its 24-byte header");
    case(&|b| put(b, 20, 1), "reserved bytes 20..24");
    case(&|b| b[0] = 2, "layout version 2");
    case(&|b| b[2] = 1, "reserved bytes 1..4");
    case(&|b| b.push(0), "but its header says");
    case(&|b| put(b, 4, u32::MAX), "but its header says");
    case(&|b| put(b, H, 9), "action 0: unknown action 9");
    case(&|b| put(b, H + 4, 1), "action 0: keep or drop with a range");
    case(&|b| put(b, H + 12, 1), "action 0: reserved bytes set");
    case(
        &|b| put(b, H + 16 + 4, 1),
        "action 1: edits 1+14 are not the next",
    );
    case(&|b| put(b, H + 16 + 8, 99), "action 1: edits 0+99");
    case(&|b| put(b, H + 64 + 4, 15), "action 4: edits 15+1");
    case(&|b| put(b, H + 48 + 8, 1_000_000), "action 3: rewrite");
    case(&|b| put(b, H + 48 + 4, u32::MAX), "action 3: rewrite");
    case(&|b| put(b, EDITS_AT, 8), "edit 0: unknown edit 8");
    case(&|b| put(b, EDITS_AT + 4, 1), "edit 0: unused bytes set");
    case(&|b| put(b, EDITS_AT + 24 + 4, 7), "edit 1: unknown tag 7");
    case(&|b| put(b, EDITS_AT + 24 + 12, 1_000), "edit 1: string");
    case(&|b| put(b, EDITS_AT + 3 * 24 + 16, 2), "edit 3: boolean");
    case(&|b| put(b, EDITS_AT + 9 * 24 + 4, 2), "edit 9: presence 2");
    case(
        &|b| put(b, EDITS_AT + 9 * 24 + 16, 1),
        "edit 9: unused bytes set",
    );
    case(
        &|b| put(b, EDITS_AT + 6 * 24 + 8, 1),
        "edit 6: unused bytes set",
    );
    // The first string byte is the "o" of "operator": make it invalid UTF-8.
    case(
        &|b| {
            let strings_at = EDITS_AT + 15 * EDIT_LEN;
            b[strings_at] = 0xff;
        },
        "string area is not UTF-8 (at byte 0)",
    );
    // "h:00ff" starts at string byte 8: a reference into the middle of a
    // two-byte character is refused.
    case(
        &|b| {
            let strings_at = EDITS_AT + 15 * EDIT_LEN;
            b[strings_at + 8..strings_at + 10].copy_from_slice("é".as_bytes());
            put(b, EDITS_AT + 24 + 16, 9);
        },
        "edit 1: string 9+6 outside the",
    );
    for (bytes, want) in cases {
        let what = refused(&bytes);
        assert!(what.contains(want), "{what:?} should say {want:?}");
    }
}

#[test]
fn edits_not_claimed_by_a_patch_are_refused() {
    let mut w = AnswerWriter::new();
    w.patch([EditRef::Remove(0), EditRef::Remove(1)]).unwrap();
    let mut bytes = w.finish();
    put(&mut bytes, H + 8, 1);
    assert!(refused(&bytes).contains("patches use 1 of 2 edits"));
}

#[test]
fn no_byte_flip_or_cut_panics() {
    let good = sample();
    for i in 0..good.len() {
        for v in [0u8, 1, 0x7f, 0xff] {
            let mut b = good.clone();
            b[i] = v;
            let _ = Answer::parse(&b).map(|a| {
                a.iter().for_each(|act| {
                    if let ActionRef::Patch(edits) = act {
                        edits.for_each(drop);
                    }
                })
            });
        }
        let _ = Answer::parse(&good[..i]);
    }
}
