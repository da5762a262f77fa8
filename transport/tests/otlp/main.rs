//! OtlpSink against a real HTTP server on 127.0.0.1 that decodes the
//! protobuf it receives and counts data points and log records.

#[path = "../support/mod.rs"]
mod support;

use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use halyard_transport::{Attempt, CancellationToken, OtlpConfig, OtlpSink, Outcome, Secret, Sink};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::metric;
use prost::Message as _;
use support::{batch, delivery, events};

/// What the collector answers to request `n` of a signal (0-based):
/// status, `Retry-After`, partially rejected count.
type Script = dyn Fn(&str, usize) -> (u16, Option<&'static str>, i64) + Send + Sync;

#[derive(Default)]
struct Seen {
    metrics_requests: usize,
    logs_requests: usize,
    points: usize,
    records: usize,
    host_ids: Vec<String>,
    severities: Vec<i32>,
    authorization: Vec<String>,
}

struct Collector {
    url: String,
    seen: Arc<Mutex<Seen>>,
    _task: tokio::task::JoinHandle<()>,
}

type Shared = (Arc<Mutex<Seen>>, Arc<Script>);

impl Collector {
    async fn start(
        script: impl Fn(&str, usize) -> (u16, Option<&'static str>, i64) + Send + Sync + 'static,
    ) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared: Shared = (Arc::clone(&seen), Arc::new(script));
        let app = Router::new()
            .route("/v1/metrics", axum::routing::post(metrics))
            .route("/v1/logs", axum::routing::post(logs))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self {
            url: format!("http://{addr}"),
            seen,
            _task: task,
        }
    }

    fn counts(&self) -> (usize, usize, usize, usize) {
        let s = self.seen.lock().expect("lock");
        (s.metrics_requests, s.points, s.logs_requests, s.records)
    }
}

fn body_of(headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert_eq!(headers["content-encoding"], "gzip");
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .expect("gzip body");
    out
}

fn answer(status: u16, retry_after: Option<&str>, payload: Vec<u8>) -> Response {
    let status = StatusCode::from_u16(status).expect("status");
    let mut response = (status, payload).into_response();
    if let Some(after) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", after.parse().expect("header"));
    }
    response
}

async fn metrics(
    State((seen, script)): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = ExportMetricsServiceRequest::decode(body_of(&headers, &body).as_slice())
        .expect("protobuf metrics");
    let n = {
        let mut s = seen.lock().expect("lock");
        s.metrics_requests += 1;
        s.metrics_requests - 1
    };
    let (status, retry_after, rejected) = script("metrics", n);
    if status == 200 {
        let mut s = seen.lock().expect("lock");
        for rm in &request.resource_metrics {
            for kv in &rm.resource.as_ref().expect("resource").attributes {
                if kv.key == "host.id"
                    && let Some(any_value::Value::StringValue(v)) =
                        kv.value.as_ref().and_then(|v| v.value.clone())
                {
                    s.host_ids.push(v);
                }
            }
            for m in rm.scope_metrics.iter().flat_map(|sm| &sm.metrics) {
                let Some(metric::Data::Gauge(g)) = &m.data else {
                    panic!("readings are gauges");
                };
                s.points += g.data_points.len();
            }
        }
        if let Some(auth) = headers.get("authorization") {
            s.authorization
                .push(auth.to_str().expect("ascii").to_owned());
        }
    }
    let response = ExportMetricsServiceResponse {
        partial_success: (rejected > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: rejected,
            error_message: "bad points".into(),
        }),
    };
    answer(status, retry_after, response.encode_to_vec())
}

async fn logs(State((seen, script)): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let request = ExportLogsServiceRequest::decode(body_of(&headers, &body).as_slice())
        .expect("protobuf logs");
    let n = {
        let mut s = seen.lock().expect("lock");
        s.logs_requests += 1;
        s.logs_requests - 1
    };
    let (status, retry_after, rejected) = script("logs", n);
    if status == 200 {
        let mut s = seen.lock().expect("lock");
        for rl in &request.resource_logs {
            for r in rl.scope_logs.iter().flat_map(|sl| &sl.log_records) {
                s.records += 1;
                s.severities.push(r.severity_number);
            }
        }
    }
    let response = ExportLogsServiceResponse {
        partial_success: (rejected > 0).then(|| ExportLogsPartialSuccess {
            rejected_log_records: rejected,
            error_message: "bad records".into(),
        }),
    };
    answer(status, retry_after, response.encode_to_vec())
}

fn sink(collector: &Collector) -> OtlpSink {
    let mut config = OtlpConfig::new(&collector.url);
    config.timeout_ms = 5_000;
    config
        .headers
        .insert("authorization".into(), Secret::new("Bearer t0ken"));
    OtlpSink::new(&config).expect("sink")
}

#[tokio::test]
async fn readings_arrive_as_points_and_the_rest_as_log_records() {
    let collector = Collector::start(|_, _| (200, None, 0)).await;
    let sink = sink(&collector);
    let mut evs = events(0, 500);
    evs[1]["attributes"]["severity"] = "error".into();
    let body = batch("1-1", &evs);
    assert_eq!(sink.send("1-1", &body).await, Attempt::Delivered);
    assert_eq!(collector.counts(), (1, 250, 1, 250));
    let seen = collector.seen.lock().expect("lock");
    assert_eq!(seen.host_ids, ["edge-1"]);
    assert_eq!(seen.authorization, ["Bearer t0ken"]);
    assert_eq!(seen.severities[0], 17, "severity from the attribute");
    assert_eq!(sink.stats().rejected_data_points, 0);
}

#[tokio::test]
async fn retryable_statuses_are_retried_honouring_retry_after_without_resending_taken_parts() {
    // Metrics: 503 (Retry-After 1) then 200. Logs: 429, 502, 504, then 200.
    let collector = Collector::start(|signal, n| match (signal, n) {
        ("metrics", 0) => (503, Some("1"), 0),
        ("logs", 0) => (429, None, 0),
        ("logs", 1) => (502, None, 0),
        ("logs", 2) => (504, None, 0),
        _ => (200, None, 0),
    })
    .await;
    let delivery = delivery(sink(&collector));
    let body = batch("2-1", &events(0, 100));
    let started = std::time::Instant::now();
    let outcome = delivery
        .deliver("2-1", &body, &CancellationToken::new())
        .await;
    assert_eq!(outcome, Outcome::Delivered { attempts: 5 });
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    // Metrics were taken on attempt 2 and never sent again.
    assert_eq!(collector.counts(), (2, 50, 4, 50));
}

#[tokio::test]
async fn bad_request_rejects_the_batch_and_auth_failure_refuses_the_sender() {
    let collector = Collector::start(|signal, _| match signal {
        "metrics" => (400, None, 0),
        _ => (401, None, 0),
    })
    .await;
    let sink = sink(&collector);
    let readings = batch("3-1", &events(0, 1));
    assert!(matches!(
        sink.send("3-1", &readings).await,
        Attempt::Rejected { events, .. } if events.is_empty()
    ));
    let plain = batch("3-2", &events(1, 1));
    assert!(matches!(
        sink.send("3-2", &plain).await,
        Attempt::Refused {
            status: Some(401),
            ..
        }
    ));
}

#[tokio::test]
async fn partial_success_is_counted_not_resent() {
    let collector = Collector::start(|signal, _| match signal {
        "metrics" => (200, None, 3),
        _ => (200, None, 2),
    })
    .await;
    let sink = sink(&collector);
    let body = batch("4-1", &events(0, 20));
    assert_eq!(sink.send("4-1", &body).await, Attempt::Delivered);
    let stats = sink.stats();
    assert_eq!(
        (stats.rejected_data_points, stats.rejected_log_records),
        (3, 2)
    );
    assert_eq!(collector.counts(), (1, 10, 1, 10));
}
