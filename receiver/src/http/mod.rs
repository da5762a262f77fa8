//! The HTTP surface: routes, shared state and the refusal answers.

mod auth;
mod body;
mod error;
mod routes;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
use axum::routing::{get, post};

use crate::config::ReceiverConfig;
use crate::error::ReceiverError;
use crate::store::Store;
use auth::ApiKey;

/// What every handler needs; cheap to clone per request.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) store: Arc<Store>,
    pub(crate) api_key: Option<ApiKey>,
    pub(crate) max_body_bytes: usize,
    /// Known host keys for batch signatures.
    pub(crate) trusted_keys: Arc<Vec<halyard_trust::PublicKey>>,
    /// Whether unsigned batches are refused.
    pub(crate) require_signatures: bool,
    /// `max_batch_events` of the config.
    pub(crate) max_batch_events: Option<usize>,
    /// `refuse_sources` of the config.
    pub(crate) refuse_sources: Arc<Vec<String>>,
    /// `name_rejected_events` of the config.
    pub(crate) name_rejected_events: bool,
}

impl AppState {
    /// Checks the parts of the config that HTTP uses, so a typo fails at
    /// start-up rather than as 401s on every batch.
    pub(crate) fn new(config: &ReceiverConfig, store: Store) -> Result<Self, ReceiverError> {
        if config.max_body_bytes == 0 {
            return Err(ReceiverError::Config {
                reason: "max_body_bytes must be greater than 0".to_owned(),
            });
        }
        let api_key = match &config.api_key {
            None => None,
            Some(key) if key.is_empty() => {
                return Err(ReceiverError::Config {
                    reason: "api_key is empty; leave it unset to accept any sender".to_owned(),
                });
            }
            Some(key) => {
                let header =
                    HeaderName::try_from(config.api_key_header.as_str()).map_err(|_| {
                        ReceiverError::Config {
                            reason: format!(
                                "api_key_header {:?} is not a valid header name",
                                config.api_key_header
                            ),
                        }
                    })?;
                Some(ApiKey::new(header, key))
            }
        };
        Ok(Self {
            store: Arc::new(store),
            api_key,
            max_body_bytes: config.max_body_bytes,
            trusted_keys: Arc::new(config.trusted_keys.clone()),
            require_signatures: config.require_signatures,
            max_batch_events: config.max_batch_events,
            refuse_sources: Arc::new(config.refuse_sources.clone()),
            name_rejected_events: config.name_rejected_events,
        })
    }
}

/// The receiver's routes. The batch route reads its body itself under
/// `max_body_bytes`, so axum's own 2 MiB default limit is switched off.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/batches", post(routes::post_batch))
        .route("/v1/stats", get(routes::get_stats))
        .route("/v1/events", get(routes::get_events))
        .route("/health", get(routes::health))
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}
