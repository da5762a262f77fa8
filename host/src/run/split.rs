//! Delivering one buffered batch when the receiver objects to its content:
//! split on 413, drop exactly the refused events on 400/422.
//!
//! The transport never gives up on a batch by itself (see
//! `halyard_transport`'s invariants); it reports what the receiver said
//! about the content, and this module decides, event by event:
//!
//! - **413** (too large): the part is split in halves and each half is
//!   delivered on its own, recursively. A single event still answered 413
//!   is the one case where an event that nothing is wrong with is given up:
//!   it is dead-lettered with the receiver's reason, and counted.
//! - **400/422 naming events** (`{"rejected": [{"index": n, "reason": "…"}]}`,
//!   indices into the request's `events`): exactly those events are
//!   dead-lettered, with the receiver's reason, and the rest of the part is
//!   sent again (the receiver stored nothing of a 400).
//! - **400/422 naming none**: the part is bisected — each half delivered on
//!   its own — until the refused events are isolated; a single event still
//!   refused is dead-lettered.
//!
//! Invariants:
//! - **exact accounting**: every event of the batch ends up in exactly one
//!   of `delivered` and `dead`, or the whole batch is [`Settlement::NotSent`]
//!   and stays buffered;
//! - **bounded**: a part is only ever sent again smaller (split, or with
//!   named events removed), so a batch of `n` events costs at most `2n − 1`
//!   answered requests plus one per naming answer, whatever the receiver
//!   says;
//! - **order**: parts go out one at a time, first half first, so events
//!   reach the receiver in buffer order;
//! - **distinct keys**: every part carries its own idempotency key
//!   (`<batch key>.<n>`), reused only for re-sends of that same part.

use std::collections::BTreeMap;

use halyard_buffer::{Batch, Kept, NewDeadLetter, Origin, Record};
use halyard_transport::{Delivery, Outcome, Sink};
use tokio_util::sync::CancellationToken;

/// What became of one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Every event is either at the receiver or refused by it for good.
    Done {
        /// Events the receiver accepted.
        delivered: u64,
        /// Refused events by index in the batch, with the reason; empty in
        /// the common case.
        dead: BTreeMap<usize, String>,
        /// Requests that were answered 413 or 400/422.
        refusals: u64,
    },
    /// Shutdown came first: keep the whole batch buffered. Parts already
    /// delivered are sent again after the restart; the receiver
    /// de-duplicates them by event id.
    NotSent,
}

/// Delivers `batch`, in parts when the receiver refuses some of it.
/// `encode` builds the wire body of a part from its key and records.
pub async fn deliver<S: Sink>(
    delivery: &Delivery<S>,
    batch: &Batch,
    encode: impl Fn(&str, &[&Record]) -> Vec<u8>,
    shutdown: &CancellationToken,
) -> Settlement {
    let key = batch.key();
    let mut delivered = 0u64;
    let mut refusals = 0u64;
    let mut dead = BTreeMap::new();
    // Parts still to send, as indices into the batch; the next is last.
    let mut todo: Vec<Vec<usize>> = vec![(0..batch.records.len()).collect()];
    let mut sent_parts = 0u64;
    while let Some(part) = todo.pop() {
        // The whole batch goes under the batch's own key; parts get theirs.
        let part_key = if sent_parts == 0 {
            key.clone()
        } else {
            format!("{key}.{sent_parts}")
        };
        sent_parts += 1;
        let records: Vec<&Record> = part.iter().map(|&i| &batch.records[i]).collect();
        let body = encode(&part_key, &records);
        match delivery.deliver(&part_key, &body, shutdown).await {
            Outcome::Delivered { .. } => delivered += part.len() as u64,
            Outcome::NotSent { .. } => return Settlement::NotSent,
            Outcome::TooLarge { reason, .. } => {
                refusals += 1;
                if let [only] = part[..] {
                    dead.insert(
                        only,
                        format!("receiver refused the event as too large: {reason}"),
                    );
                } else {
                    push_halves(&mut todo, part);
                }
            }
            Outcome::Rejected { reason, events, .. } => {
                refusals += 1;
                let mut named: BTreeMap<usize, String> = BTreeMap::new();
                for e in events {
                    if let Some(&index) = part.get(e.index) {
                        let why = if e.reason.is_empty() {
                            reason.clone()
                        } else {
                            e.reason
                        };
                        named.entry(index).or_insert(why);
                    }
                }
                if !named.is_empty() {
                    tracing::warn!(batch = %key, part = %part_key, refused = named.len(),
                        events = part.len(), "receiver refused named events; dead-lettering only those");
                    let rest: Vec<usize> = part
                        .into_iter()
                        .filter(|i| !named.contains_key(i))
                        .collect();
                    for (index, why) in named {
                        dead.insert(index, format!("receiver refused the event: {why}"));
                    }
                    if !rest.is_empty() {
                        todo.push(rest);
                    }
                } else if let [only] = part[..] {
                    dead.insert(only, format!("receiver refused the event: {reason}"));
                } else {
                    tracing::info!(batch = %key, part = %part_key, events = part.len(), %reason,
                        "receiver refused the batch without naming events; bisecting");
                    push_halves(&mut todo, part);
                }
            }
        }
    }
    Settlement::Done {
        delivered,
        dead,
        refusals,
    }
}

/// Queues the two halves of `part`, the first half to go first.
fn push_halves(todo: &mut Vec<Vec<usize>>, mut part: Vec<usize>) {
    let second = part.split_off(part.len() / 2);
    todo.push(second);
    todo.push(part);
}

/// The dead events of a settled batch, as the buffer's dead-letter commit
/// takes them: buffered records (already through every stage, with their
/// provenance), kept whole so a fixed receiver can be sent them again.
pub fn dead_letter_groups(batch: &Batch, dead: &BTreeMap<usize, String>) -> Vec<NewDeadLetter> {
    dead.iter()
        .filter_map(|(&index, reason)| {
            let record = batch.records.get(index)?;
            Some(NewDeadLetter {
                id: record.id,
                origin: Origin::Batch,
                kept: Kept::Payload(record.payload.clone()),
                reason: reason.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use halyard_buffer::{Buffer, BufferConfig};
    use halyard_transport::{
        Attempt, Backoff, Breaker, BreakerConfig, EventRejection, RetryConfig,
    };

    use super::*;

    #[test]
    fn halves_keep_order_and_every_index() {
        let mut todo = Vec::new();
        push_halves(&mut todo, (0..5).collect());
        assert_eq!(todo.pop(), Some(vec![0, 1]));
        assert_eq!(todo.pop(), Some(vec![2, 3, 4]));
        assert_eq!(todo.pop(), None);
    }

    /// A receiver's rules in one sink: 413 above `max_events`; 400 for any
    /// event whose payload is `"bad…"`, naming them or not. Records the
    /// sizes and keys of the requests it got, and what it accepted.
    struct Rules {
        max_events: usize,
        name: bool,
        requests: Mutex<Vec<(String, usize)>>,
        accepted: Mutex<Vec<String>>,
    }

    impl Sink for Rules {
        async fn send(&self, key: &str, body: &[u8]) -> Attempt {
            let events: Vec<String> = serde_json::from_slice::<serde_json::Value>(body)
                .expect("json")["events"]
                .as_array()
                .expect("events")
                .iter()
                .map(|e| e.as_str().expect("string").to_string())
                .collect();
            self.requests
                .lock()
                .unwrap()
                .push((key.to_string(), events.len()));
            if events.len() > self.max_events {
                return Attempt::TooLarge {
                    reason: "HTTP 413".into(),
                };
            }
            let bad: Vec<EventRejection> = (events.iter().enumerate())
                .filter(|(_, e)| e.starts_with("bad"))
                .map(|(index, e)| EventRejection {
                    index,
                    reason: format!("{e} is bad"),
                })
                .collect();
            if bad.is_empty() {
                self.accepted.lock().unwrap().extend(events);
                Attempt::Delivered
            } else {
                Attempt::Rejected {
                    reason: "HTTP 400".into(),
                    events: if self.name { bad } else { Vec::new() },
                }
            }
        }
    }

    /// Settles a batch of `events` (JSON strings) through `rules`.
    async fn settle(events: &[&str], rules: Rules) -> (Settlement, Delivery<Rules>) {
        let dir = tempfile::tempdir().unwrap();
        let (buffer, _) =
            Buffer::open(BufferConfig::new(dir.path().join("b.db"), 1 << 20)).unwrap();
        let records: Vec<Record> = (events.iter().enumerate())
            .map(|(i, e)| Record {
                id: [i as u8; 16],
                payload: serde_json::to_vec(e).unwrap(),
            })
            .collect();
        buffer.append(&records).unwrap();
        let batch = buffer.next_batch(1000, 1 << 20).unwrap().unwrap();
        let delivery = Delivery::new(
            rules,
            Backoff::new(RetryConfig::default()),
            Breaker::new(BreakerConfig::default()),
        );
        let encode = |key: &str, records: &[&Record]| {
            super::super::ship::encode_records(key, records, "h", None)
        };
        let settled = deliver(&delivery, &batch, encode, &CancellationToken::new()).await;
        (settled, delivery)
    }

    fn rules(max_events: usize, name: bool) -> Rules {
        Rules {
            max_events,
            name,
            requests: Mutex::default(),
            accepted: Mutex::default(),
        }
    }

    fn names(n: usize, bad: &[usize]) -> Vec<String> {
        (0..n)
            .map(|i| {
                if bad.contains(&i) {
                    format!("bad{i}")
                } else {
                    format!("ok{i}")
                }
            })
            .collect()
    }

    #[tokio::test]
    async fn a_413_splits_until_the_parts_fit_and_delivers_everything_in_order() {
        let events = names(250, &[]);
        let refs: Vec<&str> = events.iter().map(String::as_str).collect();
        let (settled, delivery) = settle(&refs, rules(60, true)).await;
        let Settlement::Done {
            delivered,
            dead,
            refusals,
        } = settled
        else {
            panic!("not sent")
        };
        assert_eq!((delivered, dead.len()), (250, 0));
        assert_eq!(
            *delivery.sink().accepted.lock().unwrap(),
            events,
            "in order, once each"
        );
        // 250 → 125 + 125 → 4 × ~63 → 8 parts of 31/32: 7 refusals, 8 deliveries.
        let sizes: Vec<usize> = delivery
            .sink()
            .requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.1)
            .collect();
        assert_eq!(refusals, 7);
        assert_eq!(sizes.iter().filter(|&&n| n <= 60).count(), 8);
        let keys: std::collections::BTreeSet<String> = delivery
            .sink()
            .requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.0.clone())
            .collect();
        assert_eq!(keys.len(), sizes.len(), "a key per part");
    }

    #[tokio::test]
    async fn named_events_alone_are_given_up_and_the_rest_is_delivered() {
        let events = names(100, &[17, 64]);
        let refs: Vec<&str> = events.iter().map(String::as_str).collect();
        let (settled, delivery) = settle(&refs, rules(1000, true)).await;
        let Settlement::Done {
            delivered,
            dead,
            refusals,
        } = settled
        else {
            panic!("not sent")
        };
        assert_eq!((delivered, refusals), (98, 1));
        assert_eq!(dead.keys().copied().collect::<Vec<_>>(), [17, 64]);
        assert_eq!(dead[&17], "receiver refused the event: bad17 is bad");
        assert_eq!(
            delivery.sink().requests.lock().unwrap().len(),
            2,
            "the batch, then the rest"
        );
        assert_eq!(delivery.sink().accepted.lock().unwrap().len(), 98);
    }

    #[tokio::test]
    async fn unnamed_rejections_are_bisected_down_to_the_bad_events() {
        let events = names(128, &[3, 100]);
        let refs: Vec<&str> = events.iter().map(String::as_str).collect();
        let (settled, delivery) = settle(&refs, rules(1000, false)).await;
        let Settlement::Done {
            delivered, dead, ..
        } = settled
        else {
            panic!("not sent")
        };
        assert_eq!(delivered, 126);
        assert_eq!(dead.keys().copied().collect::<Vec<_>>(), [3, 100]);
        let requests = delivery.sink().requests.lock().unwrap().len();
        // Each bad event costs one refused part per level (8 levels for
        // 128), plus its sibling delivered at each level.
        assert!(requests <= 2 * 2 * 8 + 1, "{requests} requests");
        let accepted = delivery.sink().accepted.lock().unwrap();
        let unique: std::collections::BTreeSet<&String> = accepted.iter().collect();
        assert_eq!((accepted.len(), unique.len()), (126, 126));
    }
}
