//! Settings outside the plugins that a config reload applies while the host
//! runs: `[batch]` (the shipper cuts its next batch by the new limits) and
//! `[retry]` (the next retry delay is drawn from the new curve; a wait in
//! progress is re-drawn).

use std::sync::Arc;

use halyard_transport::{AnySink, Delivery};
use tokio::sync::watch;

use crate::config::HostConfig;
use crate::run::{BatchLimits, retry_config};

/// Where live settings are sent.
pub struct Live {
    batch: watch::Sender<BatchLimits>,
    delivery: Arc<Delivery<AnySink>>,
}

impl Live {
    /// The live settings of `config` for `delivery`; the receiver goes to
    /// the shipper.
    pub fn new(
        config: &HostConfig,
        delivery: Arc<Delivery<AnySink>>,
    ) -> (Live, watch::Receiver<BatchLimits>) {
        let (batch, rx) = watch::channel(BatchLimits::from_config(config));
        (Live { batch, delivery }, rx)
    }

    /// Applies whatever of `[batch]` and `[retry]` differs between `old`
    /// and `new`; returns the names of the sections applied.
    pub fn apply(&self, old: &HostConfig, new: &HostConfig) -> Vec<String> {
        let mut applied = Vec::new();
        if old.batch != new.batch {
            let limits = BatchLimits::from_config(new);
            tracing::info!(
                max_events = limits.max_events,
                max_bytes = limits.max_bytes,
                max_age_ms = new.batch.max_age_ms,
                "batch limits changed"
            );
            self.batch.send_replace(limits);
            applied.push("batch".to_string());
        }
        if old.retry != new.retry {
            tracing::info!(
                initial_ms = new.retry.initial_ms,
                max_ms = new.retry.max_ms,
                "retry settings changed"
            );
            self.delivery.backoff().set_config(retry_config(&new.retry));
            applied.push("retry".to_string());
        }
        applied
    }
}
