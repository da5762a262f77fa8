//! The status server: what an operator looks at when a device misbehaves.
//! Bound to `[health] listen` (127.0.0.1:9464 by default); read-only but
//! for acknowledging buffer damage.
//!
//! - `GET /health`: the verdict with reasons ([`health`]); 200 when healthy
//!   or degraded, 503 when unhealthy;
//! - `POST /health/ack`: an operator has seen the damage to the buffer file
//!   that degrades `/health`; it stops degrading it (the only write, and it
//!   touches only this server's own state);
//! - `GET /metrics`: OpenMetrics text ([`metrics`]);
//! - `GET /plugins`: every loaded plugin with its state and counters
//!   ([`plugins`]);
//! - `GET /events/stream`: Server-Sent Events of accepted events and
//!   lifecycle events ([`stream`]), resumable with `Last-Event-ID`;
//! - `GET /`: the status page ([`page`]), one self-contained HTML file that
//!   reads the routes above.
//!
//! With a token (`[health] token` or `HALYARD_STATUS_TOKEN`), every route
//! needs it ([`auth`]).
//!
//! Invariant: serving never touches the pipeline thread or the buffer's
//! write path: everything it shows comes from atomics, published snapshots
//! and [`Buffer::stats`].

pub mod auth;
pub mod health;
pub mod metrics;
pub mod page;
pub mod plugins;
pub mod process;
pub mod stream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use halyard_buffer::Buffer;
use halyard_transport::TransportStats;
use prometheus_client::registry::Registry;

use crate::lifecycle::Lifecycle;
use crate::tap::Tap;
use health::{BreakerHealth, BufferHealth, DamageHealth, HealthReport, TransportHealth, Verdict};
use plugins::PluginRegistry;
use stream::{StreamClients, StreamFilter};

/// One transport as the status server sees it.
#[derive(Debug, Clone)]
pub struct TransportStatus {
    /// Its name: the `transport` label and its `/health` entry.
    pub name: String,
    /// Its counters, breaker state and refusal.
    pub stats: Arc<TransportStats>,
}

/// Everything the status server reads, shared with the rest of the host.
pub struct StatusState {
    /// When the host started.
    pub started: Instant,
    /// The host's id.
    pub host_id: String,
    /// The buffer (only its `stats()` is read).
    pub buffer: Arc<Buffer>,
    /// The buffer file, for free-disk figures.
    pub buffer_path: PathBuf,
    /// The buffer's bound.
    pub buffer_max_bytes: u64,
    /// Every transport's counters and breaker state, in config order.
    pub transports: Vec<TransportStatus>,
    /// Every loaded plugin.
    pub plugins: Arc<PluginRegistry>,
    /// The live tap.
    pub tap: Tap,
    /// Where lifecycle events go.
    pub lifecycle: Lifecycle,
    /// Stream clients, for metrics.
    pub stream: Arc<StreamClients>,
    /// When the buffer last dropped or evicted events (set by the buffer
    /// watch in `run`).
    pub last_loss: Mutex<Option<Instant>>,
    /// Cancelled at shutdown: ends open event streams, which would
    /// otherwise keep the server's graceful shutdown waiting for ever.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The licence, whose state `/health` reports (`None`: not configured).
    pub licence: Option<Arc<crate::licence::Licence>>,
    /// The pipeline thread's progress; a stall makes the host unhealthy.
    pub progress: Option<Arc<crate::run::Progress>>,
    /// Damage to the buffer file since start (set by the buffer watch).
    pub damage: Mutex<Option<DamageMark>>,
    /// How long damage degrades `/health` unless acknowledged
    /// (`[health] damage_degraded_ms`).
    pub damage_degraded: Duration,
    /// The counters of every mqtt input, registered as each is built.
    pub mqtt_inputs: Mutex<Vec<Arc<crate::run::MqttStats>>>,
    /// The token every route requires ([`auth`]); `None`: open.
    pub token: Option<crate::config::IngestToken>,
}

/// What the status server remembers about damage to the buffer file.
#[derive(Debug, Clone)]
pub struct DamageMark {
    /// When the last episode was seen.
    pub at: Instant,
    /// Episodes since start.
    pub episodes: u64,
    /// Events lost since start.
    pub events_lost: u64,
    /// False once any episode's count was only a lower bound.
    pub lost_exact: bool,
    /// Where the last damaged file was moved.
    pub moved_to: std::path::PathBuf,
    /// Set by `POST /health/ack`; a new episode clears it.
    pub acknowledged: bool,
}

impl std::fmt::Debug for StatusState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusState")
            .field("host_id", &self.host_id)
            .field("buffer_path", &self.buffer_path)
            .finish_non_exhaustive()
    }
}

impl StatusState {
    /// Shows an mqtt input's counters on `/metrics`.
    pub fn watch_mqtt(&self, stats: Arc<crate::run::MqttStats>) {
        self.mqtt_inputs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(stats);
    }

    /// Records that the buffer just dropped or evicted events.
    pub fn note_loss(&self) {
        *self.last_loss.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Records an episode of damage to the buffer file: `/health` degrades
    /// until acknowledged or `damage_degraded` passes.
    pub fn note_damage(&self, damage: &halyard_buffer::Damage) {
        let mut mark = self.damage.lock().unwrap_or_else(|e| e.into_inner());
        let before = mark.take();
        *mark = Some(DamageMark {
            at: Instant::now(),
            episodes: before.as_ref().map_or(0, |m| m.episodes) + 1,
            events_lost: before.as_ref().map_or(0, |m| m.events_lost) + damage.records_lost,
            lost_exact: before.as_ref().is_none_or(|m| m.lost_exact) && damage.lost_exact,
            moved_to: damage.moved_to.clone(),
            acknowledged: false,
        });
    }

    /// An operator has seen the damage; returns whether there was any to
    /// acknowledge.
    pub fn acknowledge_damage(&self) -> bool {
        let mut mark = self.damage.lock().unwrap_or_else(|e| e.into_inner());
        match mark.as_mut() {
            Some(m) => {
                m.acknowledged = true;
                true
            }
            None => false,
        }
    }

    /// The `/health` report, judged now.
    pub fn health(&self) -> HealthReport {
        let b = self.buffer.stats();
        let last_loss = *self.last_loss.lock().unwrap_or_else(|e| e.into_inner());
        let damage = self
            .damage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|m| DamageHealth {
                episodes: m.episodes,
                events_lost: m.events_lost,
                lost_exact: m.lost_exact,
                last_seconds_ago: m.at.elapsed().as_secs_f64(),
                moved_to: m.moved_to.display().to_string(),
                degrading: !m.acknowledged && m.at.elapsed() < self.damage_degraded,
            });
        let buffer = BufferHealth {
            events: b.records,
            bytes: b.bytes,
            max_bytes: self.buffer_max_bytes,
            oldest_age_seconds: b.oldest_age.map(|d| d.as_secs_f64()),
            dead_letters: b.dead_letters,
            last_loss_seconds_ago: last_loss.map(|t| t.elapsed().as_secs_f64()),
            read_error: b.read_error.clone(),
            damage,
        };
        let progress = self.buffer.consumer_stats();
        let transports: Vec<TransportHealth> = self
            .transports
            .iter()
            .map(|t| {
                let p = progress.iter().find(|p| p.name == t.name);
                TransportHealth {
                    name: t.name.clone(),
                    breaker: t.stats.breaker_state(),
                    pending_events: p.map_or(0, |p| p.pending),
                    oldest_pending_age_seconds: p
                        .and_then(|p| p.oldest_age)
                        .map(|d| d.as_secs_f64()),
                    refused: t.stats.refusal().map(|r| health::refusal_reason(&r)),
                }
            })
            .collect();
        // The worst breaker decides the verdict; reasons name the
        // transport when there are several.
        let state = transports
            .iter()
            .map(|t| t.breaker)
            .max_by_key(|b| match b {
                halyard_transport::BreakerState::Closed => 0,
                halyard_transport::BreakerState::HalfOpen => 1,
                halyard_transport::BreakerState::Open => 2,
            })
            .unwrap_or(halyard_transport::BreakerState::Closed);
        let plugins: Vec<_> = self.plugins.all().iter().map(|p| p.view()).collect();
        let (mut status, mut reasons) = health::judge(&buffer, state, &plugins);
        let several = transports.len() > 1;
        if several && state != halyard_transport::BreakerState::Closed {
            let open: Vec<String> = transports
                .iter()
                .filter(|t| t.breaker != halyard_transport::BreakerState::Closed)
                .map(|t| format!("`{}` {}", t.name, t.breaker.as_str()))
                .collect();
            for reason in &mut reasons {
                if let Some(rest) = reason.strip_prefix("transport breaker ") {
                    let rest = rest.split_once(':').map_or("", |(_, r)| r);
                    *reason = format!("transport breaker {}:{rest}", open.join(", "));
                }
            }
        }
        for t in transports.iter().rev() {
            if let Some(refused) = &t.refused {
                // Nothing is lost (batches are held), but nothing leaves
                // that transport until someone fixes a key, an endpoint or
                // a certificate.
                status = health::Verdict::Unhealthy;
                let reason = if several {
                    format!("transport `{}`: {refused}", t.name)
                } else {
                    refused.clone()
                };
                reasons.insert(0, reason);
            }
        }
        if let Some(held) = self.progress.as_ref().and_then(|p| p.stalled()) {
            status = health::Verdict::Unhealthy;
            reasons.insert(
                0,
                format!(
                    "pipeline made no progress for {} s with work in hand",
                    held.as_secs()
                ),
            );
        }
        HealthReport {
            status,
            reasons,
            host_id: self.host_id.clone(),
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            buffer,
            breaker: BreakerHealth { state },
            transports,
            licence: self
                .licence
                .as_ref()
                .map_or("not_configured", |l| l.state().name()),
            plugins,
        }
    }
}

/// The bound status server, not yet serving.
pub struct StatusServer {
    listener: tokio::net::TcpListener,
    router: Router,
}

#[derive(Clone)]
struct App {
    state: Arc<StatusState>,
    registry: Arc<Registry>,
}

impl StatusServer {
    /// Binds `addr`; an error (e.g. the port is in use) is the caller's to
    /// report.
    pub async fn bind(addr: SocketAddr, state: Arc<StatusState>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let token = state.token.clone();
        let app = App {
            registry: Arc::new(metrics::registry(state.clone())),
            state,
        };
        if token.is_none() && !addr.ip().is_loopback() {
            tracing::warn!(%addr, "the status server listens beyond loopback with no token: set [health] token or HALYARD_STATUS_TOKEN");
        }
        let router = Router::new()
            .route("/", get(page::get_page))
            .route("/health", get(get_health))
            .route("/health/ack", post(post_health_ack))
            .route("/metrics", get(get_metrics))
            .route("/plugins", get(get_plugins))
            .route("/events/stream", get(get_stream))
            .with_state(app)
            .layer(axum::middleware::from_fn_with_state(token, auth::require));
        Ok(StatusServer { listener, router })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` resolves. Open event streams end then too.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) {
        let served = axum::serve(self.listener, self.router).with_graceful_shutdown(shutdown);
        if let Err(err) = served.await {
            tracing::error!(error = %err, "status server failed");
        }
    }
}

async fn get_health(State(app): State<App>) -> Response {
    let report = app.state.health();
    let code = if report.status == Verdict::Unhealthy {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, axum::Json(report)).into_response()
}

/// `POST /health/ack`: the operator has seen the damage report; answers
/// whether there was any, and the verdict now.
async fn post_health_ack(State(app): State<App>) -> Response {
    let acknowledged = app.state.acknowledge_damage();
    if acknowledged {
        tracing::info!("buffer damage acknowledged by an operator");
    }
    let status = app.state.health().status;
    axum::Json(serde_json::json!({"acknowledged": acknowledged, "status": status})).into_response()
}

async fn get_metrics(State(app): State<App>) -> Response {
    let body = metrics::render(&app.registry);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn get_plugins(State(app): State<App>) -> Response {
    let plugins: Vec<_> = app.state.plugins.all().iter().map(|p| p.view()).collect();
    axum::Json(serde_json::json!({ "plugins": plugins })).into_response()
}

async fn get_stream(
    State(app): State<App>,
    Query(filter): Query<StreamFilter>,
    headers: HeaderMap,
) -> Response {
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    stream::respond(
        &app.state.tap,
        app.state.stream.clone(),
        filter,
        last_event_id,
        app.state.shutdown.clone(),
    )
    .into_response()
}

/// How often the buffer watch looks at the buffer's counters.
pub const BUFFER_WATCH_INTERVAL: Duration = Duration::from_millis(500);
