//! The request handlers: batches in, stats and events out.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::AppState;
use super::body::{self, Encoding, EventPolicy, ParsedBatch};
use super::error::ApiError;
use crate::stats::Stats;
use crate::store::Outcome;

/// Default page size for `GET /v1/events`.
const DEFAULT_PAGE: u32 = 100;
/// Largest page `GET /v1/events` returns, whatever `limit` asks for.
const MAX_PAGE: u32 = 1000;

/// The 200 answer to a batch: the only answer that means "committed".
#[derive(Debug, Serialize)]
pub(crate) struct BatchAnswer {
    accepted: u64,
    duplicates: u64,
}

/// `POST /v1/batches`: check the key, read at most `max_body_bytes`, decode,
/// parse, store in one transaction, answer after the commit.
pub(crate) async fn post_batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<BatchAnswer>, ApiError> {
    if let Some(key) = &state.api_key
        && !key.allows(&headers)
    {
        tracing::debug!("batch refused: missing or wrong API key");
        return Err(ApiError::Unauthorized);
    }
    let max = state.max_body_bytes;
    let encoding = Encoding::from_headers(&headers)?;
    body::check_declared_length(&headers, max)?;
    let raw = Limited::new(body, max)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                ApiError::TooLarge(max)
            } else {
                ApiError::BadRequest(format!("could not read body: {e}"))
            }
        })?
        .to_bytes();

    // Decompressing, parsing and the SQLite transaction are CPU and disk work;
    // keep them off the async workers so slow batches don't stall other requests.
    let store = state.store.clone();
    let (trusted, require) = (state.trusted_keys.clone(), state.require_signatures);
    let (max_events, refuse) = (state.max_batch_events, state.refuse_sources.clone());
    let name_rejected = state.name_rejected_events;
    let task = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let decoded = body::decode(raw, encoding, max)?;
        check_provenance(&decoded, &headers, &trusted, require)?;
        let policy = EventPolicy {
            max_events,
            refuse_sources: &refuse,
            name_rejected,
        };
        let batch = ParsedBatch::parse(&decoded, &headers, &policy)?;
        let events = batch.events();
        let outcome = store.insert_batch(&batch.meta, &events, now_ms())?;
        let total = events.len();
        Ok((batch.meta, total, outcome))
    });
    let (
        meta,
        total,
        Outcome {
            accepted,
            duplicates,
        },
    ) = match task.await {
        Ok(result) => result.inspect_err(|e| tracing::debug!(error = ?e, "batch refused"))?,
        Err(join) => {
            tracing::error!(error = %join, "batch worker panicked; answering 503");
            return Err(ApiError::Unavailable);
        }
    };
    tracing::debug!(
        batch_id = meta.batch_id.as_deref().unwrap_or("-"),
        host_id = meta.host_id.as_deref().unwrap_or("-"),
        events = total,
        accepted,
        duplicates,
        "batch stored"
    );
    Ok(Json(BatchAnswer {
        accepted,
        duplicates,
    }))
}

/// Verifies the batch signature over the decoded body: a signed batch must
/// verify against a known host key whenever keys are configured; an unsigned
/// one passes only when signatures are not required.
fn check_provenance(
    body: &[u8],
    headers: &HeaderMap,
    trusted: &[halyard_trust::PublicKey],
    require: bool,
) -> Result<(), ApiError> {
    use halyard_trust::provenance::{ProvenanceError, SIGNATURE_HEADER, verify_batch};
    let header = headers
        .get(SIGNATURE_HEADER)
        .map(|v| v.to_str().unwrap_or("<not text>"));
    if header.is_none() && !require {
        return Ok(());
    }
    if header.is_some() && trusted.is_empty() && !require {
        return Ok(()); // nothing to verify against: stored as unverified
    }
    match verify_batch(body, header, trusted) {
        Ok(_) => Ok(()),
        Err(
            e @ (ProvenanceError::Unsigned
            | ProvenanceError::Malformed(_)
            | ProvenanceError::UnknownKey(_)
            | ProvenanceError::Tampered(_)),
        ) => {
            tracing::warn!(error = %e, "batch refused: provenance");
            Err(ApiError::Forbidden(e.to_string()))
        }
    }
}

/// `GET /v1/stats`.
pub(crate) async fn get_stats(State(state): State<AppState>) -> Result<Json<Stats>, ApiError> {
    let store = state.store.clone();
    let stats = tokio::task::spawn_blocking(move || store.stats())
        .await
        .map_err(|_| ApiError::Unavailable)??;
    Ok(Json(stats))
}

/// Query of `GET /v1/events`.
#[derive(Debug, Deserialize)]
pub(crate) struct EventsQuery {
    #[serde(default)]
    after: i64,
    #[serde(default)]
    limit: Option<u32>,
}

/// One stored event with where and when it arrived.
#[derive(Debug, Serialize)]
pub(crate) struct EventRow {
    rowid: i64,
    batch_id: Option<String>,
    host_id: Option<String>,
    received_at_ms: i64,
    event: Box<RawValue>,
}

/// A page of events; pass `next_after` as `after` to get the next one.
#[derive(Debug, Serialize)]
pub(crate) struct EventsPage {
    events: Vec<EventRow>,
    next_after: i64,
}

/// `GET /v1/events?after=<rowid>&limit=<n>`: stored events in arrival order.
pub(crate) async fn get_events(
    State(state): State<AppState>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<EventsPage>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE);
    let store = state.store.clone();
    let rows = tokio::task::spawn_blocking(move || store.events_after(query.after, limit))
        .await
        .map_err(|_| ApiError::Unavailable)??;
    let next_after = rows.last().map_or(query.after, |r| r.rowid);
    let events = rows
        .into_iter()
        .map(|r| {
            let event = RawValue::from_string(r.json).map_err(|e| {
                tracing::warn!(rowid = r.rowid, error = %e, "stored event is not valid JSON");
                ApiError::Unavailable
            })?;
            Ok(EventRow {
                rowid: r.rowid,
                batch_id: r.batch_id,
                host_id: r.host_id,
                received_at_ms: r.received_at_ms,
                event,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(Json(EventsPage { events, next_after }))
}

/// `GET /health`: the process is up and serving.
pub(crate) async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
