//! Halyard events as OTLP messages: readings (a numeric `value`) become
//! gauge data points, everything else log records; the host is the
//! resource. Built on the official protobuf types of `opentelemetry-proto`.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::envelope::Envelope;

/// One event with every field the mapping reads.
#[derive(Deserialize)]
struct Event {
    id: String,
    #[serde(default)]
    time_ns: i64,
    #[serde(default)]
    source: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    attributes: Map<String, Value>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    provenance: Option<Value>,
}

/// A batch as the two OTLP export requests; either may be empty.
pub(crate) struct Requests {
    pub metrics: ExportMetricsServiceRequest,
    pub points: usize,
    pub logs: ExportLogsServiceRequest,
    pub records: usize,
}

/// Maps every event of `env`; an event that does not parse is the
/// content's fault (the caller rejects the batch).
pub(crate) fn map(env: &Envelope<'_>) -> Result<Requests, String> {
    let mut metrics: Vec<Metric> = Vec::new();
    let mut logs = Vec::new();
    let mut points = 0;
    for raw in &env.events {
        let event: Event = serde_json::from_str(raw.get())
            .map_err(|e| format!("event is not a Halyard event: {e}"))?;
        let time = u64::try_from(event.time_ns).unwrap_or(0);
        let mut attributes = vec![kv("source", string(&event.source))];
        attributes.extend(event.attributes.iter().map(|(k, v)| kv(k, any(v))));
        match event.value.as_ref().and_then(Value::as_f64) {
            Some(value) => {
                let point = NumberDataPoint {
                    attributes,
                    time_unix_nano: time,
                    value: Some(number_data_point::Value::AsDouble(value)),
                    ..Default::default()
                };
                points += 1;
                let unit = event.unit.unwrap_or_default();
                match metrics
                    .iter_mut()
                    .find(|m| m.name == event.kind && m.unit == unit)
                {
                    Some(Metric {
                        data: Some(metric::Data::Gauge(gauge)),
                        ..
                    }) => gauge.data_points.push(point),
                    _ => metrics.push(Metric {
                        name: event.kind,
                        unit,
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![point],
                        })),
                        ..Default::default()
                    }),
                }
            }
            None => {
                let (severity_number, severity_text) = severity(&event.attributes);
                attributes.push(kv("halyard.event_id", string(&event.id)));
                if let Some(v) = &event.value {
                    // NaN or infinity, which JSON carries as a string.
                    attributes.push(kv("value", any(v)));
                }
                if let Some(unit) = &event.unit {
                    attributes.push(kv("unit", string(unit)));
                }
                if let Some(p) = &event.provenance {
                    attributes.push(kv("halyard.provenance", string(&p.to_string())));
                }
                logs.push(LogRecord {
                    time_unix_nano: time,
                    observed_time_unix_nano: time,
                    severity_number,
                    severity_text,
                    body: Some(event.body.as_ref().map_or_else(|| string(&event.kind), any)),
                    attributes,
                    event_name: event.kind,
                    ..Default::default()
                });
            }
        }
    }
    let resource = Resource {
        attributes: vec![
            kv("service.name", string("halyard")),
            kv("service.version", string(&env.host.version)),
            kv("host.id", string(&env.host.id)),
            kv("service.instance.id", string(&env.host.id)),
        ],
        ..Default::default()
    };
    let scope = InstrumentationScope {
        name: "halyard".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    };
    let records = logs.len();
    Ok(Requests {
        metrics: ExportMetricsServiceRequest {
            resource_metrics: if metrics.is_empty() {
                Vec::new()
            } else {
                vec![ResourceMetrics {
                    resource: Some(resource.clone()),
                    scope_metrics: vec![ScopeMetrics {
                        scope: Some(scope.clone()),
                        metrics,
                        ..Default::default()
                    }],
                    ..Default::default()
                }]
            },
        },
        points,
        logs: ExportLogsServiceRequest {
            resource_logs: if logs.is_empty() {
                Vec::new()
            } else {
                vec![ResourceLogs {
                    resource: Some(resource),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(scope),
                        log_records: logs,
                        ..Default::default()
                    }],
                    ..Default::default()
                }]
            },
        },
        records,
    })
}

/// OTLP severity from a `severity` (or `level`) attribute: a name such as
/// `warn`/`ERROR`, or a number 1–24 as OTLP defines them.
fn severity(attributes: &Map<String, Value>) -> (i32, String) {
    let Some(value) = attributes
        .get("severity")
        .or_else(|| attributes.get("level"))
    else {
        return (0, String::new());
    };
    if let Some(n) = value.as_i64() {
        return (i32::try_from(n.clamp(0, 24)).unwrap_or(0), String::new());
    }
    let text = value.as_str().unwrap_or_default();
    let number = match text.to_ascii_lowercase().as_str() {
        "trace" => 1,
        "debug" => 5,
        "info" | "notice" => 9,
        "warn" | "warning" => 13,
        "error" | "err" => 17,
        "fatal" | "critical" | "crit" | "alert" | "emergency" => 21,
        _ => 0,
    };
    (number, text.to_owned())
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(value),
        ..Default::default()
    }
}

fn string(s: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s.to_owned())),
    }
}

/// A JSON value as an OTLP `AnyValue` (null as the empty value).
fn any(v: &Value) -> AnyValue {
    let value = match v {
        Value::Null => None,
        Value::Bool(b) => Some(any_value::Value::BoolValue(*b)),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        }),
        Value::String(s) => Some(any_value::Value::StringValue(s.clone())),
        Value::Array(items) => Some(any_value::Value::ArrayValue(ArrayValue {
            values: items.iter().map(any).collect(),
        })),
        Value::Object(map) => Some(any_value::Value::KvlistValue(KeyValueList {
            values: map.iter().map(|(k, v)| kv(k, any(v))).collect(),
        })),
    };
    AnyValue { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_become_points_and_the_rest_log_records() {
        let body = crate::encode_batch(
            "b",
            "edge-1",
            "0.1.0",
            &[
                serde_json::json!({"id": "01", "time_ns": 7, "source": "s", "kind": "temp", "value": 21.5, "unit": "Cel"}),
                serde_json::json!({"id": "02", "time_ns": 8, "source": "s", "kind": "temp", "value": 22, "unit": "Cel"}),
                serde_json::json!({"id": "03", "time_ns": 9, "source": "s", "kind": "door", "attributes": {"severity": "warn"}, "body": {"open": true}}),
            ],
        );
        let env = crate::envelope::parse(&body).expect("envelope");
        let r = map(&env).expect("maps");
        assert_eq!((r.points, r.records), (2, 1));
        let metric = &r.metrics.resource_metrics[0].scope_metrics[0].metrics;
        assert_eq!(metric.len(), 1, "same kind and unit share one metric");
        assert_eq!(metric[0].unit, "Cel");
        let log = &r.logs.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(
            (log.severity_number, log.severity_text.as_str()),
            (13, "warn")
        );
        assert_eq!(log.event_name, "door");
    }
}
