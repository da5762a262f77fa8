use halyard_sdk::{Action, AttrValue, Config, Event, Events, Redaction};

use super::{Policy, salted_hash};
use crate::policy::CACHE_LIMIT;

fn policy(pairs: &[(&str, &str)]) -> Policy {
    match Policy::from_config(&Config::from_pairs(pairs.iter().copied())) {
        Ok(p) => p,
        Err(err) => panic!("init failed: {err:?}"),
    }
}

fn event() -> Event {
    Event::new("dev-1", "temp", 1)
        .with_attr("user", "alice")
        .with_attr("room", 12i64)
        .with_attr("ip", "10.0.0.1")
}

#[test]
fn hash_is_salted_sha256_prefix() {
    // printf 'pepperalice' | sha256sum
    assert_eq!(salted_hash("pepper", "alice"), "h:b1b68da447843a65");
    assert_eq!(salted_hash("", ""), "h:e3b0c44298fc1c14");
}

#[test]
fn unchanged_events_are_kept_and_blocked_ones_dropped() {
    let mut p = policy(&[("drop_keys", "secret"), ("block_sources", "bad-*, exact")]);
    assert_eq!(p.apply(event()), Action::Keep);
    assert_eq!(p.apply(Event::new("bad-7", "k", 0)), Action::Drop);
    assert_eq!(p.apply(Event::new("exact", "k", 0)), Action::Drop);
    assert_eq!(p.apply(Event::new("exactly", "k", 0)), Action::Keep);
}

#[test]
fn drops_and_hashes_attributes_body_and_source() {
    let mut p = policy(&[
        ("drop_keys", "ip"),
        ("hash_keys", "user,room"),
        ("hash_source", "true"),
        ("salt", "pepper"),
    ]);
    let mut input = event();
    input.body = Some(r#"{"z":1,"ip":"x","user":"alice","room":12}"#.into());
    let Action::Rewrite(out) = p.apply(input) else {
        panic!("expected a rewrite");
    };
    assert_eq!(out.source, salted_hash("pepper", "dev-1"));
    assert_eq!(out.attr("ip"), None);
    let user = salted_hash("pepper", "alice");
    let room = salted_hash("pepper", "12");
    assert_eq!(out.attr("user"), Some(&AttrValue::Str(user.clone())));
    assert_eq!(out.attr("room"), Some(&AttrValue::Str(room.clone())));
    let body = format!(r#"{{"z":1,"user":"{user}","room":"{room}"}}"#);
    assert_eq!(out.body.as_deref(), Some(body.as_str()));
}

#[test]
fn salt_is_required_for_hashing() {
    for pairs in [&[("hash_keys", "a")][..], &[("hash_source", "yes")][..]] {
        let err = Policy::from_config(&Config::from_pairs(pairs.iter().copied()))
            .expect_err("config should be refused");
        assert_eq!(err.key.as_deref(), Some("salt"));
        assert_eq!(
            err.message,
            "salt must be set when hash_keys or hash_source is used"
        );
    }
}

#[test]
fn cached_hashes_equal_fresh_ones_across_a_full_cache() {
    let mut p = policy(&[
        ("hash_keys", "user"),
        ("hash_source", "on"),
        ("salt", "pepper"),
    ]);
    // Enough distinct values to fill and clear the cache twice, each seen
    // twice (a miss, then a hit), with source and attribute sharing values.
    for round in 0..2 {
        for i in 0..(2 * CACHE_LIMIT + 7) {
            let value = format!("v{i}");
            let input = Event::new(value.clone(), "k", 0).with_attr("user", value.as_str());
            let Action::Rewrite(out) = p.apply(input) else {
                panic!("expected a rewrite");
            };
            let expected = salted_hash("pepper", &value);
            assert_eq!(out.source, expected, "round {round}, value {i}");
            assert_eq!(out.attr("user"), Some(&AttrValue::Str(expected)));
        }
    }
    assert!(p.cached() <= CACHE_LIMIT);
}

#[test]
fn non_string_attributes_are_hashed_as_their_text() {
    let mut p = policy(&[("hash_keys", "n,f,b"), ("salt", "s")]);
    for _ in 0..2 {
        let input = Event::new("d", "k", 0)
            .with_attr("n", 12i64)
            .with_attr("f", 21.5)
            .with_attr("b", true);
        let Action::Rewrite(out) = p.apply(input) else {
            panic!("expected a rewrite");
        };
        for (key, text) in [("n", "12"), ("f", "21.5"), ("b", "true")] {
            assert_eq!(out.attr(key), Some(&AttrValue::Str(salted_hash("s", text))));
        }
    }
}

/// The decision of [`Policy::apply_view`] applied to `event`, as the host
/// would ship it (`None`: dropped).
fn shipped_by_view(p: &mut Policy, event: &Event) -> Option<Event> {
    let bytes = Events::encode(std::slice::from_ref(event));
    let events = Events::parse(&bytes).expect("a batch the SDK wrote parses");
    let view = events.get(0).expect("one event");
    match p.apply_view(&view) {
        Redaction::Keep => Some(event.clone()),
        Redaction::Drop => None,
        Redaction::Edit(edit) => Some(edit.apply(event).expect("positions within the event")),
        Redaction::Rewrite(new) => Some(new),
    }
}

/// The decision of [`Policy::apply`] applied to `event`.
fn shipped_by_owned(p: &mut Policy, event: &Event) -> Option<Event> {
    match p.apply(event.clone()) {
        Action::Keep => Some(event.clone()),
        Action::Drop => None,
        Action::Rewrite(new) => Some(new),
    }
}

#[test]
fn the_views_path_ships_what_the_owned_path_ships() {
    let configs: [&[(&str, &str)]; 4] = [
        &[
            ("drop_keys", "ip"),
            ("hash_keys", "user,room"),
            ("salt", "pepper"),
        ],
        &[
            ("hash_source", "true"),
            ("salt", "pepper"),
            ("block_sources", "bad-*"),
        ],
        &[("drop_keys", "user,ip,room")],
        &[("hash_keys", "none-of-these"), ("salt", "s")],
    ];
    let mut with_body = event();
    with_body.body = Some(r#"{"z":1,"ip":"x","user":"alice","room":12}"#.into());
    let mut repeated = event();
    // Keys must be unique by contract, but a decoder may break it: both
    // values of a masked key must still be masked.
    repeated.attributes.push(halyard_sdk::Attribute {
        key: "user".into(),
        value: AttrValue::Str("bob".into()),
    });
    let mut already = event();
    already.set_attr("user", salted_hash("pepper", "alice"));
    let inputs = [
        event(),
        with_body,
        repeated,
        already,
        Event::new("bad-1", "k", 0),
        Event::new("dev-2", "k", 0).with_attr("room", 1.5f64),
    ];
    for pairs in configs {
        for input in &inputs {
            let owned = shipped_by_owned(&mut policy(pairs), input);
            let viewed = shipped_by_view(&mut policy(pairs), input);
            assert_eq!(viewed, owned, "config {pairs:?}, event {input:?}");
        }
    }
    // The repeated key really is masked twice.
    let mut p = policy(configs[0]);
    let shipped = shipped_by_view(&mut p, &inputs[2]).expect("kept");
    let users: Vec<_> = shipped
        .attributes
        .iter()
        .filter(|a| a.key == "user")
        .collect();
    assert_eq!(users.len(), 2);
    assert!(
        users
            .iter()
            .all(|a| a.value.as_str().is_some_and(|v| v.starts_with("h:")))
    );
}
