//! The transports bench's OTLP/HTTP collector: a real HTTP server on
//! 127.0.0.1 that decodes each export request with the official protobuf
//! definitions and counts gauge data points and log records.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::metric;
use prost::Message as _;

/// Counted data points and log records of the OTLP collector.
pub type Counter = Arc<AtomicU64>;

/// An OTLP/HTTP collector on 127.0.0.1 that decodes each export request
/// and counts its gauge data points and log records; returns its endpoint.
pub fn collector(
    rt: &tokio::runtime::Runtime,
) -> (String, Counter, tokio::sync::oneshot::Sender<()>) {
    let count: Counter = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new()
        .route("/v1/metrics", axum::routing::post(metrics))
        .route("/v1/logs", axum::routing::post(logs))
        .with_state(Arc::clone(&count));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind the collector");
    let addr = listener.local_addr().expect("the collector's address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    rt.spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    (format!("http://{addr}"), count, stop)
}

/// The request body, gunzipped when the sender compressed it.
fn body_of(headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    if headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip")
    {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .expect("a gzip body");
        out
    } else {
        body.to_vec()
    }
}

async fn metrics(State(count): State<Counter>, headers: HeaderMap, body: Bytes) -> Vec<u8> {
    let request = ExportMetricsServiceRequest::decode(body_of(&headers, &body).as_slice())
        .expect("protobuf metrics");
    let points: usize = request
        .resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .map(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.len(),
            _ => panic!("readings are gauges"),
        })
        .sum();
    count.fetch_add(points as u64, Ordering::Relaxed);
    ExportMetricsServiceResponse::default().encode_to_vec()
}

async fn logs(State(count): State<Counter>, headers: HeaderMap, body: Bytes) -> Vec<u8> {
    let request = ExportLogsServiceRequest::decode(body_of(&headers, &body).as_slice())
        .expect("protobuf logs");
    let records: usize = request
        .resource_logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .map(|sl| sl.log_records.len())
        .sum();
    count.fetch_add(records as u64, Ordering::Relaxed);
    ExportLogsServiceResponse::default().encode_to_vec()
}
