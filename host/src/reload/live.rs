//! Settings outside the plugins that a config reload applies while the host
//! runs, per transport: its batch limits (top-level `[batch]` or its own
//! `batch` table: the shipper cuts its next batch by the new limits) and
//! its backoff (`[retry]` or its own `retry`: the next retry delay is drawn
//! from the new curve; a wait in progress is re-drawn).

use std::sync::Arc;

use halyard_transport::{AnySink, Delivery};
use tokio::sync::watch;

use crate::config::HostConfig;
use crate::run::transports::{Transport, limits};
use crate::run::{BatchLimits, retry_config};

/// Where one transport's live settings are sent.
struct LiveTransport {
    name: String,
    batch: watch::Sender<BatchLimits>,
    delivery: Arc<Delivery<AnySink>>,
}

/// Where live settings are sent.
pub struct Live {
    transports: Vec<LiveTransport>,
}

impl Live {
    /// The live settings of `transports`; the receivers (in the same order)
    /// go to their ship loops.
    pub fn new(transports: &[Transport]) -> (Live, Vec<watch::Receiver<BatchLimits>>) {
        let (live, rxs) = transports
            .iter()
            .map(|t| {
                let (batch, rx) = watch::channel(t.limits);
                let live = LiveTransport {
                    name: t.name.clone(),
                    batch,
                    delivery: t.delivery.clone(),
                };
                (live, rx)
            })
            .unzip();
        (Live { transports: live }, rxs)
    }

    /// Applies whatever batch limits and backoff differ between `old` and
    /// `new` for each running transport; returns the names of the sections
    /// applied. (Adding, removing or re-pointing a transport needs a
    /// restart; see `config.rs`.)
    pub fn apply(&self, old: &HostConfig, new: &HostConfig) -> Vec<String> {
        let mut applied = Vec::new();
        let find = |c: &'_ HostConfig, name: &str| {
            c.transports.list.iter().find(|t| t.name == name).cloned()
        };
        for live in &self.transports {
            let (Some(was), Some(now)) = (find(old, &live.name), find(new, &live.name)) else {
                continue;
            };
            let section = |field: &str| {
                if new.transports.single {
                    field.to_string()
                } else {
                    format!("transport.{}.{field}", live.name)
                }
            };
            let (before, after) = (limits(&was, &old.batch), limits(&now, &new.batch));
            if before != after {
                tracing::info!(transport = %live.name, max_events = after.max_events,
                    max_bytes = after.max_bytes, max_age_ms = after.max_age.as_millis() as u64,
                    "batch limits changed");
                live.batch.send_replace(after);
                applied.push(section("batch"));
            }
            let (before, after) = (was.retry_or(&old.retry), now.retry_or(&new.retry));
            if before != after {
                tracing::info!(transport = %live.name, initial_ms = after.initial_ms,
                    max_ms = after.max_ms, "retry settings changed");
                live.delivery.backoff().set_config(retry_config(after));
                applied.push(section("retry"));
            }
        }
        applied
    }
}
