//! Usage as the buffer stores it: named counters, `<counter>:<kind>` for
//! event counts (`in:temp`, `accepted:temp`, …) and `trap:<plugin>` for
//! traps, added in the transaction of the commit that counted them and
//! read back by the heartbeat (see `halyard_buffer`'s `usage.rs`).

use halyard_trust::usage::{Counter, UsageSnapshot, UsageWindow};

const COUNTERS: [(&str, Counter); 5] = [
    ("in", Counter::Received),
    ("accepted", Counter::Accepted),
    ("rejected", Counter::Rejected),
    ("dropped", Counter::Dropped),
    ("delivered", Counter::Delivered),
];

const TRAP: &str = "trap";

/// The counters of `snapshot` (gauges are not stored), zeros left out.
pub fn to_counts(snapshot: &UsageSnapshot) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for (kind, c) in &snapshot.events {
        for (name, n) in [
            ("in", c.received),
            ("accepted", c.accepted),
            ("rejected", c.rejected),
            ("dropped", c.dropped),
            ("delivered", c.delivered),
        ] {
            if n > 0 {
                out.push((format!("{name}:{kind}"), n));
            }
        }
    }
    for (plugin, n) in &snapshot.traps {
        if *n > 0 {
            out.push((format!("{TRAP}:{plugin}"), *n));
        }
    }
    out
}

/// A snapshot (at `seq` 0, no gauges) of stored counters; a name this
/// build does not know (written by a newer one) is left out.
pub fn from_counts(counts: &[(String, u64)]) -> UsageSnapshot {
    let window = UsageWindow::new();
    for (name, n) in counts {
        let Some((counter, rest)) = name.split_once(':') else {
            continue;
        };
        if counter == TRAP {
            window.add_traps(rest, *n);
        } else if let Some((_, c)) = COUNTERS.iter().find(|(k, _)| *k == counter) {
            window.add(rest, *c, *n);
        }
    }
    window.snapshot()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_round_trip_through_their_stored_names() {
        let w = UsageWindow::new();
        w.add("temp:c", Counter::Received, 5);
        w.add("temp:c", Counter::Accepted, 4);
        w.add("(undecoded)", Counter::Rejected, 1);
        w.add("hum", Counter::Delivered, 7);
        w.add_traps("range-validator", 2);
        let counts = to_counts(&w.snapshot());
        assert!(counts.contains(&("in:temp:c".to_owned(), 5)), "{counts:?}");
        assert!(counts.contains(&("trap:range-validator".to_owned(), 2)));
        assert_eq!(from_counts(&counts), w.snapshot());
        let mut unknown = counts.clone();
        unknown.push(("future:temp".into(), 3));
        unknown.push(("nocolon".into(), 3));
        assert_eq!(from_counts(&unknown), w.snapshot());
    }
}
