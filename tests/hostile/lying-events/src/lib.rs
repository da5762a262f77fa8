//! lying-events: builds events that break the host's caps (or not) from a
//! short text spec, for the `lying-*` test guests. A tiny spec turns into a
//! huge event, as a tiny hostile input line can make an honest decoder emit
//! one; the host must refuse that frame or event alone, without a trap.
//!
//! A spec is a comma-separated list of items, one event each:
//!
//! | item | event |
//! | --- | --- |
//! | `good` / `good:NAME` | source `d1` (or `NAME`), kind `temp`, value 1.0, now |
//! | `source:N`, `kind:N`, `unit:N` | a good event whose source, kind or unit is `N` bytes |
//! | `attrs:N` | a good event with `N` integer attributes `a0`… |
//! | `attr-value:N` | a good event with attribute `note` of `N` bytes |
//! | `body:N` | a good event whose JSON body is `N` bytes (N ≥ 8) |
//! | `bad-body` | a good event whose body is not JSON |
//! | `time:T` | a good event at `T` ns |
//! | `many:N` | `N` good events |
//!
//! An unknown item is an error naming it.

#![warn(missing_docs)]

use halyard_sdk::{AttrValue, Attribute, Event, clock};

/// The events `spec` describes, in order, or why the spec is bad.
pub fn events(spec: &str) -> Result<Vec<Event>, String> {
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (what, arg) = item.split_once(':').unwrap_or((item, ""));
        let n = || -> Result<usize, String> {
            arg.parse()
                .map_err(|_| format!("`{item}`: {arg:?} is not a count"))
        };
        let mut e = good("d1");
        match what {
            "good" if arg.is_empty() => {}
            "good" => e.source = arg.to_string(),
            "source" => e.source = "s".repeat(n()?),
            "kind" => e.kind = "k".repeat(n()?),
            "unit" => e.unit = Some("u".repeat(n()?)),
            "attrs" => {
                e.attributes = (0..n()?)
                    .map(|i| Attribute {
                        key: format!("a{i}"),
                        value: AttrValue::Int(i as i64),
                    })
                    .collect();
            }
            "attr-value" => e.set_attr("note", AttrValue::Str("v".repeat(n()?))),
            "body" => {
                let fill = n()?.saturating_sub(8);
                e.body = Some(format!("{{\"b\":\"{}\"}}", "x".repeat(fill)));
            }
            "bad-body" => e.body = Some("not json".to_string()),
            "time" => {
                e.time_ns = arg
                    .parse()
                    .map_err(|_| format!("`{item}`: {arg:?} is not a time"))?;
            }
            "many" => {
                out.extend((0..n()?).map(|_| good("d1")));
                continue;
            }
            _ => return Err(format!("unknown item `{item}`")),
        }
        out.push(e);
    }
    Ok(out)
}

/// A good event from `source`: kind `temp`, value 1.0, timestamped now.
pub fn good(source: &str) -> Event {
    Event::new(source, "temp", clock::now_ns()).with_value(1.0)
}
