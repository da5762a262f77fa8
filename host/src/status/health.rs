//! `GET /health`: one verdict an operator (or a supervisor) can act on,
//! with the reasons and the figures behind it.
//!
//! The rules, worst first:
//! - **unhealthy** (HTTP 503) — the host is losing data, cannot accept any,
//!   or cannot deliver any: the buffer cannot be read (nothing can be
//!   delivered); the receiver refuses this sender (401, 403, 404,
//!   …, or a TLS failure; batches are held until a delivery succeeds —
//!   [`refusal_reason`]); a validator or privacy plugin is quarantined (fail closed: every
//!   event is dead-lettered or dropped); every decoder and source is
//!   quarantined; or the buffer is at least 90 % full while the breaker is
//!   not closed (it will start dropping and nothing drains it);
//! - **degraded** (HTTP 200) — working, but look: the breaker is open or
//!   half-open (the receiver is unreachable; events wait in the buffer); any
//!   other plugin is quarantined (a sampler fails open); the buffer dropped
//!   or evicted events in the last [`LOSS_WINDOW`]; damage to the buffer
//!   file cost events and no operator has acknowledged it (`POST
//!   /health/ack`) within `[health] damage_degraded_ms`; or it is at least
//!   75 % full;
//! - **healthy** (HTTP 200) — none of the above.

use std::time::Duration;

use halyard_transport::BreakerState;
use serde::Serialize;

use super::plugins::{PluginView, StageRole};

/// How long a buffer loss keeps the host degraded.
pub const LOSS_WINDOW: Duration = Duration::from_secs(60);

/// The overall verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// All is well.
    Healthy,
    /// Working, with something an operator should look at.
    Degraded,
    /// Losing data or unable to accept it.
    Unhealthy,
}

/// The buffer figures in the report.
#[derive(Debug, Clone, Serialize)]
pub struct BufferHealth {
    /// Events waiting (in flight or not).
    pub events: u64,
    /// Accounted bytes of those events.
    pub bytes: u64,
    /// The configured bound.
    pub max_bytes: u64,
    /// How long the oldest event has waited, in seconds.
    pub oldest_age_seconds: Option<f64>,
    /// Events in the dead-letter table.
    pub dead_letters: u64,
    /// Seconds since the buffer last dropped or evicted events, if it has.
    pub last_loss_seconds_ago: Option<f64>,
    /// Why reading the buffer fails, while it does.
    pub read_error: Option<String>,
    /// Damage to the buffer file since start, if any.
    pub damage: Option<DamageHealth>,
}

/// Damage to the buffer file, as `/health` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DamageHealth {
    /// Episodes since start (at open and while running).
    pub episodes: u64,
    /// Events lost to damage since start.
    pub events_lost: u64,
    /// Whether a count was only a lower bound (some of the file's index was
    /// unreadable too); see the `buffer.damaged` event for the upper bound.
    pub lost_exact: bool,
    /// Seconds since the last episode.
    pub last_seconds_ago: f64,
    /// Where the last damaged file was moved.
    pub moved_to: String,
    /// Whether it still degrades the verdict (not acknowledged, not expired).
    pub degrading: bool,
}

/// The breaker figures in the report.
#[derive(Debug, Clone, Serialize)]
pub struct BreakerHealth {
    /// `closed`, `open` or `half_open`.
    pub state: BreakerState,
}

/// One transport in `/health`.
#[derive(Debug, Clone, Serialize)]
pub struct TransportHealth {
    /// Its name (`default` for a single `[transport]`).
    pub name: String,
    /// Its breaker: `closed`, `open` or `half_open`.
    pub breaker: BreakerState,
    /// Buffered events it has yet to deliver: grows while it is down,
    /// whatever the other transports do.
    pub pending_events: u64,
    /// How long its oldest undelivered event has waited.
    pub oldest_pending_age_seconds: Option<f64>,
    /// Why its receiver refuses this sender, while it does.
    pub refused: Option<String>,
}

/// The whole `/health` body.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    /// The verdict.
    pub status: Verdict,
    /// Why it is not healthy; empty when healthy.
    pub reasons: Vec<String>,
    /// The host's id.
    pub host_id: String,
    /// The host's version.
    pub version: &'static str,
    /// Seconds since start.
    pub uptime_seconds: f64,
    /// The buffer.
    pub buffer: BufferHealth,
    /// The worst breaker state of all transports (the one transport's,
    /// with a single `[transport]`).
    pub breaker: BreakerHealth,
    /// Each transport: its breaker, backlog and refusal.
    pub transports: Vec<TransportHealth>,
    /// The licence state: `valid`, `grace`, `expired`, `dev`.
    pub licence: &'static str,
    /// Every plugin.
    pub plugins: Vec<PluginView>,
}

/// The `/health` reason while the receiver refuses this sender, e.g.
/// `receiver refused delivery: 401 Unauthorized: <body start>`.
pub fn refusal_reason(refusal: &halyard_transport::Refusal) -> String {
    format!(
        "receiver refused delivery: {}; batches are held until it accepts them",
        refusal.reason.trim_end_matches([':', ' '])
    )
}

/// Applies the rules in the module docs; returns the verdict and reasons.
pub fn judge(
    buffer: &BufferHealth,
    breaker: BreakerState,
    plugins: &[PluginView],
) -> (Verdict, Vec<String>) {
    let mut unhealthy = Vec::new();
    let mut degraded = Vec::new();
    let fill = if buffer.max_bytes == 0 {
        0.0
    } else {
        buffer.bytes as f64 / buffer.max_bytes as f64
    };
    let percent = (fill * 100.0).round();
    if let Some(err) = &buffer.read_error {
        unhealthy.push(format!(
            "buffer cannot be read, nothing is delivered: {err}"
        ));
    }
    if let Some(d) = buffer.damage.as_ref().filter(|d| d.degrading) {
        let lost = if d.lost_exact {
            format!("{} events lost", d.events_lost)
        } else {
            format!("at least {} events lost", d.events_lost)
        };
        degraded.push(format!(
            "buffer file was damaged: {lost}, readable events kept; damaged file at {}; \
             POST /health/ack to acknowledge",
            d.moved_to
        ));
    }
    if breaker != BreakerState::Closed {
        let why = format!("transport breaker {}", breaker.as_str());
        if fill >= 0.9 {
            unhealthy.push(format!("buffer {percent}% full and {why}"));
        } else {
            degraded.push(format!("{why}: events wait in the buffer"));
        }
    }
    let inputs: Vec<&PluginView> = plugins
        .iter()
        .filter(|p| matches!(p.identity.stage, StageRole::Decode | StageRole::Source))
        .collect();
    if !inputs.is_empty() && inputs.iter().all(|p| p.state == "quarantined") {
        unhealthy.push("every decoder and source is quarantined".to_string());
    }
    for p in plugins.iter().filter(|p| p.state == "quarantined") {
        let name = &p.identity.name;
        match p.identity.stage {
            StageRole::Validate => unhealthy.push(format!(
                "validator {name} quarantined: every event is dead-lettered"
            )),
            StageRole::Privacy => unhealthy.push(format!(
                "privacy plugin {name} quarantined: every event is dropped"
            )),
            stage => degraded.push(format!("{} plugin {name} quarantined", stage.as_str())),
        }
    }
    for p in plugins.iter().filter(|p| p.state == "unloaded") {
        // Unloading is the operator's choice (`on_remove = "unload"`), so it
        // degrades rather than fails the host.
        degraded.push(format!(
            "{} plugin {} unloaded: its file was removed",
            p.identity.stage.as_str(),
            p.identity.name
        ));
    }
    if buffer
        .last_loss_seconds_ago
        .is_some_and(|s| s < LOSS_WINDOW.as_secs_f64())
    {
        degraded.push("buffer dropped or evicted events in the last minute".to_string());
    }
    if (0.75..0.9).contains(&fill) || (fill >= 0.9 && breaker == BreakerState::Closed) {
        degraded.push(format!("buffer {percent}% full"));
    }
    if !unhealthy.is_empty() {
        unhealthy.extend(degraded);
        (Verdict::Unhealthy, unhealthy)
    } else if !degraded.is_empty() {
        (Verdict::Degraded, degraded)
    } else {
        (Verdict::Healthy, Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::plugins::PluginIdentity;

    fn buffer(bytes: u64) -> BufferHealth {
        BufferHealth {
            events: 0,
            bytes,
            max_bytes: 100,
            oldest_age_seconds: None,
            dead_letters: 0,
            last_loss_seconds_ago: None,
            read_error: None,
            damage: None,
        }
    }

    fn plugin(stage: StageRole, state: &'static str) -> PluginView {
        PluginView {
            identity: PluginIdentity {
                name: "p".into(),
                stage,
                input: None,
                kind: "k".into(),
                plugin_name: "p".into(),
                version: "1".into(),
                file: "p.wasm".into(),
                sha256: String::new(),
            },
            state,
            calls: 0,
            traps: 0,
            quarantines: 0,
            events_in: 0,
            events_out: 0,
            rejected: 0,
            dropped: 0,
            refused: 0,
            call_p50_ms: None,
            call_p99_ms: None,
        }
    }

    #[test]
    fn a_refusal_reason_names_the_status_and_that_batches_are_held() {
        let refusal = |reason: &str| halyard_transport::Refusal {
            status: Some(401),
            reason: reason.into(),
        };
        assert_eq!(
            refusal_reason(&refusal("401 Unauthorized: ")),
            "receiver refused delivery: 401 Unauthorized; batches are held until it accepts them"
        );
        assert!(
            refusal_reason(&refusal("401 Unauthorized: wrong key"))
                .starts_with("receiver refused delivery: 401 Unauthorized: wrong key;")
        );
    }

    #[test]
    fn the_rules_in_order() {
        let closed = BreakerState::Closed;
        let ok = [plugin(StageRole::Decode, "active")];
        assert_eq!(judge(&buffer(10), closed, &ok).0, Verdict::Healthy);
        assert_eq!(
            judge(&buffer(10), BreakerState::Open, &ok).0,
            Verdict::Degraded
        );
        assert_eq!(
            judge(&buffer(95), BreakerState::Open, &ok).0,
            Verdict::Unhealthy
        );
        assert_eq!(judge(&buffer(80), closed, &ok).0, Verdict::Degraded);
        let sampler = [
            plugin(StageRole::Decode, "active"),
            plugin(StageRole::Sample, "quarantined"),
        ];
        assert_eq!(judge(&buffer(0), closed, &sampler).0, Verdict::Degraded);
        let validator = [
            plugin(StageRole::Decode, "active"),
            plugin(StageRole::Validate, "quarantined"),
        ];
        assert_eq!(judge(&buffer(0), closed, &validator).0, Verdict::Unhealthy);
        let inputs = [plugin(StageRole::Decode, "quarantined")];
        assert_eq!(judge(&buffer(0), closed, &inputs).0, Verdict::Unhealthy);
        let mut lost = buffer(0);
        lost.last_loss_seconds_ago = Some(5.0);
        let (verdict, reasons) = judge(&lost, closed, &ok);
        assert_eq!(verdict, Verdict::Degraded);
        assert_eq!(reasons.len(), 1);
    }

    #[test]
    fn an_unreadable_buffer_is_unhealthy_and_damage_degrades_until_acknowledged() {
        let closed = BreakerState::Closed;
        let ok = [plugin(StageRole::Decode, "active")];
        let mut unreadable = buffer(0);
        unreadable.read_error = Some("buffer next_batch: disk I/O error".into());
        let (verdict, reasons) = judge(&unreadable, closed, &ok);
        assert_eq!(verdict, Verdict::Unhealthy);
        assert!(reasons[0].contains("cannot be read"), "{reasons:?}");
        let mut damaged = buffer(0);
        damaged.damage = Some(DamageHealth {
            episodes: 1,
            events_lost: 43,
            lost_exact: true,
            last_seconds_ago: 1.0,
            moved_to: "/data/buffer.db.corrupt-1".into(),
            degrading: true,
        });
        let (verdict, reasons) = judge(&damaged, closed, &ok);
        assert_eq!(verdict, Verdict::Degraded);
        assert!(reasons[0].contains("43 events lost"), "{reasons:?}");
        if let Some(d) = damaged.damage.as_mut() {
            d.degrading = false;
        }
        assert_eq!(judge(&damaged, closed, &ok).0, Verdict::Healthy);
    }
}
