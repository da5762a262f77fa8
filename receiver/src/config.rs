//! How a receiver is set up: where it listens, where it stores, who may send.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The header the host's transport puts its API key in unless told otherwise.
pub const DEFAULT_API_KEY_HEADER: &str = "x-api-key";

/// 32 MiB: far above any batch the host builds (its batches are bounded by
/// count and bytes), low enough that one request cannot exhaust memory.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Everything `halyard receive` can be told, so the CLI, the quickstart and the
/// end-to-end tests configure the receiver the same way.
///
/// `Debug` prints `api_key` as `Some("<redacted>")` so a logged config never
/// leaks the key.
#[derive(Clone)]
pub struct ReceiverConfig {
    /// Address to listen on; port 0 picks a free port, which [`crate::Receiver::local_addr`]
    /// then reports (tests and scripts rely on this to avoid port clashes).
    pub listen: SocketAddr,
    /// SQLite file holding the events and the batch log; created if missing,
    /// reopened as-is so counts and de-duplication survive restarts.
    pub store: PathBuf,
    /// When set, every batch must carry exactly this key in `api_key_header`,
    /// otherwise it is answered 401. `None` accepts anyone (loopback demos).
    pub api_key: Option<String>,
    /// Header name the key is read from; configurable because proxies in front
    /// of a receiver sometimes reserve or rewrite `x-api-key`.
    pub api_key_header: String,
    /// Upper bound, in bytes, on a request body as received **and** on its
    /// decompressed size, so neither a huge upload nor a gzip bomb can exhaust
    /// memory. Larger bodies are answered 413 and nothing is stored.
    pub max_body_bytes: usize,
    /// Hosts' public keys whose batch signatures (`X-Halyard-Signature`)
    /// are accepted. A signed batch is verified against them and refused
    /// (403) if altered or signed by an unknown key.
    pub trusted_keys: Vec<halyard_trust::PublicKey>,
    /// Refuse unsigned batches (403) instead of storing them.
    pub require_signatures: bool,
    /// Most events one request may carry; a larger batch is answered 413
    /// and nothing is stored (hubs commonly cap events per request). `None`:
    /// no cap beyond `max_body_bytes`.
    pub max_batch_events: Option<usize>,
    /// Event `source`s this receiver refuses (a decommissioned or unknown
    /// device): a batch holding any is answered 400, nothing is stored, and
    /// the answer names each refused event (see `name_rejected_events`).
    pub refuse_sources: Vec<String>,
    /// Whether a 400 names the events it refuses (`"rejected": [{"index":
    /// n, "reason": "…"}]`), so the sender can drop just those. On by
    /// default; off models a receiver that only says "bad batch".
    pub name_rejected_events: bool,
}

impl ReceiverConfig {
    /// A config with the defaults the host's transport assumes (no API key,
    /// `x-api-key` header, 32 MiB limit), so callers only state what differs.
    pub fn new(listen: SocketAddr, store: impl Into<PathBuf>) -> Self {
        Self {
            listen,
            store: store.into(),
            api_key: None,
            api_key_header: DEFAULT_API_KEY_HEADER.to_owned(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            trusted_keys: Vec::new(),
            require_signatures: false,
            max_batch_events: None,
            refuse_sources: Vec::new(),
            name_rejected_events: true,
        }
    }
}

impl fmt::Debug for ReceiverConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceiverConfig")
            .field("listen", &self.listen)
            .field("store", &self.store)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_key_header", &self.api_key_header)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("trusted_keys", &self.trusted_keys.len())
            .field("require_signatures", &self.require_signatures)
            .field("max_batch_events", &self.max_batch_events)
            .field("refuse_sources", &self.refuse_sources)
            .field("name_rejected_events", &self.name_rejected_events)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_api_key() {
        let mut config = ReceiverConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), "s.db");
        config.api_key = Some("s3cret".to_owned());
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
