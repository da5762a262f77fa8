use halyard_sdk::{Action, AttrValue, Config, Event};

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
