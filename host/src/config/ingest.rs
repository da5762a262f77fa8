//! The http input's own settings: who may post (`auth`) and how much of the
//! host one client may hold (timeouts, connections, requests in flight).
//!
//! An ingest endpoint faces the network, so it is closed by default: a
//! config with an http input and no `auth` is refused, and `auth = "none"`
//! is accepted only on a loopback listen address or with no TCP listener
//! at all (a Unix socket only, whose file mode says who may post). Tokens are [`IngestToken`]s,
//! which print as `***` through `Debug`, `Display` and `Serialize`, so no
//! log line, error or `config check` output can show one.

use std::fmt;
use std::net::SocketAddr;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::InputConfig;

/// The API-key header clients may send their token in (besides
/// `Authorization: Bearer`), unless `auth.header` names another.
pub const DEFAULT_TOKEN_HEADER: &str = "x-api-key";

/// `auth = …` of an http input.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestAuth {
    /// `auth = "none"`: anyone who can reach the address may post. Only
    /// accepted on a loopback listen address, where "anyone" means local
    /// processes.
    None,
    /// `auth = { tokens = [...], header = "x-api-key" }`.
    Tokens(TokenAuth),
}

/// Token authentication: a request must carry one of `tokens`, either as
/// `Authorization: Bearer <token>` or in the `header` header.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenAuth {
    /// Accepted tokens. Several, so a token can be rotated without a gap:
    /// add the new one, move the clients, remove the old one.
    pub tokens: Vec<IngestToken>,
    /// The API-key header (case-insensitive), for clients that cannot set
    /// `Authorization` (Fluent Bit's `http` output `header`, Vector's
    /// `request.headers`).
    #[serde(default = "default_token_header")]
    pub header: String,
}

fn default_token_header() -> String {
    DEFAULT_TOKEN_HEADER.to_string()
}

/// A token clients present; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct IngestToken(String);

impl IngestToken {
    /// Wraps a token (for tests and programmatic configs).
    pub fn new(value: impl Into<String>) -> IngestToken {
        IngestToken(value.into())
    }

    /// The token itself; only for comparing with what a client sent.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IngestToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for IngestToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for IngestToken {
    /// Always `***`: the config is serialized only to be shown.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

impl<'de> Deserialize<'de> for IngestToken {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(IngestToken)
    }
}

impl Serialize for IngestAuth {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            IngestAuth::None => serializer.serialize_str("none"),
            IngestAuth::Tokens(tokens) => tokens.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for IngestAuth {
    /// `"none"` or a table; the table keeps `deny_unknown_fields` and its
    /// messages (an untagged enum would only say "did not match").
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AuthVisitor;
        impl<'de> Visitor<'de> for AuthVisitor {
            type Value = IngestAuth;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"`"none"` or a table `{ tokens = ["…"], header = "x-api-key" }`"#)
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<IngestAuth, E> {
                if value == "none" {
                    Ok(IngestAuth::None)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(value), &self))
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<IngestAuth, A::Error> {
                TokenAuth::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(IngestAuth::Tokens)
            }
        }
        deserializer.deserialize_any(AuthVisitor)
    }
}

/// The longest any of the http input's timeouts may be: past an hour a
/// "timeout" no longer protects anything.
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// The most `max_connections` (and `max_in_flight`) may be: far beyond
/// any open-file limit, and within what a semaphore can count.
pub const MAX_CONNECTIONS: usize = 1_000_000;

/// Default `header_timeout_ms`: a client has this long from connecting (or
/// from its previous answer) to send a request's headers.
pub fn default_header_timeout_ms() -> u64 {
    10_000
}

/// Default `body_timeout_ms`: the whole body must arrive within this long
/// after the headers (16 MiB at ~1 MB/s).
pub fn default_body_timeout_ms() -> u64 {
    30_000
}

/// Default `idle_timeout_ms`: a kept-alive connection with no request is
/// closed after this long.
pub fn default_idle_timeout_ms() -> u64 {
    60_000
}

/// Default `max_connections`: well under the common 1024 open-file limit.
pub fn default_max_connections() -> usize {
    256
}

/// Default `max_in_flight`: requests read and processed at once; each may
/// hold up to the body cap in memory.
pub fn default_max_in_flight() -> usize {
    4
}

impl InputConfig {
    /// What is wrong with an http input's settings, as (key under the
    /// input, message); `None` for other inputs and for a valid one. The
    /// message never contains a token.
    pub fn http_problem(&self) -> Option<(String, String)> {
        let InputConfig::Http {
            listen,
            socket,
            auth,
            header_timeout_ms,
            body_timeout_ms,
            idle_timeout_ms,
            max_connections,
            max_in_flight,
            ..
        } = self
        else {
            return None;
        };
        let problem = |key: &str, message: String| Some((key.to_string(), message));
        if listen.is_none() && socket.is_none() {
            return problem(
                "listen",
                "is not set: give `listen = \"127.0.0.1:8080\"` (TCP), `socket = { path = \
                 \"/run/halyard/ingest.sock\" }` (Unix socket), or both"
                    .into(),
            );
        }
        if let Some(found) = socket.as_ref().and_then(|s| s.problem()) {
            return Some(found);
        }
        // Only local processes can reach a loopback address or a socket file
        // (whose mode says which).
        let local = listen.as_ref().is_none_or(is_loopback);
        match auth {
            None => {
                return problem(
                    "auth",
                    format!(
                        "is not set: give `auth = {{ tokens = [\"${{INGEST_TOKEN}}\"] }}` (clients \
                         send `Authorization: Bearer <token>` or `X-Api-Key: <token>`){}",
                        if local {
                            ", or `auth = \"none\"` to accept anyone on this loopback address \
                             or socket"
                        } else {
                            ""
                        }
                    ),
                );
            }
            Some(IngestAuth::None) if !local => {
                let listen = listen.map(|l| l.to_string()).unwrap_or_default();
                return problem(
                    "auth",
                    format!(
                        "= \"none\" is only allowed on a loopback listen address, not {listen}: \
                         give `auth = {{ tokens = [\"${{INGEST_TOKEN}}\"] }}`"
                    ),
                );
            }
            Some(IngestAuth::None) => {}
            Some(IngestAuth::Tokens(t)) => {
                if t.tokens.is_empty() {
                    return problem("auth.tokens", "must list at least one token".into());
                }
                for (i, token) in t.tokens.iter().enumerate() {
                    if token.expose().is_empty() {
                        return problem(
                            &format!("auth.tokens[{i}]"),
                            "is empty (is its variable set?)".into(),
                        );
                    }
                    if !token.expose().bytes().all(|b| b.is_ascii_graphic()) {
                        return problem(
                            &format!("auth.tokens[{i}]"),
                            "has a character a client cannot send in a header (only visible \
                             ASCII, no spaces)"
                                .into(),
                        );
                    }
                }
                if axum::http::HeaderName::from_bytes(t.header.as_bytes()).is_err()
                    || t.header.eq_ignore_ascii_case("authorization")
                {
                    return problem(
                        "auth.header",
                        format!(
                            "`{}` is not a header name for an API key (e.g. `x-api-key`)",
                            t.header
                        ),
                    );
                }
            }
        }
        let timeouts = [
            ("header_timeout_ms", *header_timeout_ms),
            ("body_timeout_ms", *body_timeout_ms),
            ("idle_timeout_ms", *idle_timeout_ms),
        ];
        for (key, ms) in timeouts {
            if !(1..=MAX_TIMEOUT_MS).contains(&ms) {
                return problem(
                    key,
                    format!("must be between 1 and {MAX_TIMEOUT_MS} (an hour)"),
                );
            }
        }
        for (key, n) in [
            ("max_connections", *max_connections),
            ("max_in_flight", *max_in_flight),
        ] {
            if !(1..=MAX_CONNECTIONS).contains(&n) {
                return problem(key, format!("must be between 1 and {MAX_CONNECTIONS}"));
            }
        }
        if max_in_flight > max_connections {
            return problem(
                "max_in_flight",
                format!("({max_in_flight}) must not exceed max_connections ({max_connections})"),
            );
        }
        None
    }
}

/// Whether only this machine can reach `addr` (IPv4-mapped loopback too).
fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::HostConfig;

    fn config(listen: &str, extra: &str) -> String {
        format!(
            "[[input]]\ntype = \"http\"\nname = \"web\"\nlisten = \"{listen}\"\n\
             decoder = {{ plugin = \"d.wasm\" }}\n{extra}\n\
             [transport]\ntype = \"stdout\"\n"
        )
    }

    fn check(listen: &str, extra: &str) -> Result<HostConfig, String> {
        HostConfig::parse(Path::new("h.toml"), &config(listen, extra), |name| {
            (name == "INGEST_TOKEN").then(|| "tok-3f9a".to_string())
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn tokens_parse_and_never_print() {
        let config = check(
            "0.0.0.0:8080",
            "auth = { tokens = [\"${INGEST_TOKEN}\", \"second\"], header = \"X-Ingest-Key\" }",
        )
        .expect("valid");
        let super::InputConfig::Http { auth, .. } = &config.inputs[0] else {
            panic!("{config:?}");
        };
        let Some(super::IngestAuth::Tokens(t)) = auth else {
            panic!("{auth:?}");
        };
        assert_eq!(t.tokens[0].expose(), "tok-3f9a");
        assert_eq!(t.header, "X-Ingest-Key");
        let shown = format!("{config:?}\n{}", config.to_masked_toml());
        assert!(
            !shown.contains("tok-3f9a") && !shown.contains("second"),
            "{shown}"
        );
        assert_eq!(shown.matches("\"***\"").count(), 2, "{shown}");
        assert_eq!(shown.matches("[***, ***]").count(), 1, "{shown}");
    }

    #[test]
    fn defaults_apply() {
        let config = check("127.0.0.1:0", "auth = \"none\"").expect("valid");
        let super::InputConfig::Http {
            auth,
            header_timeout_ms,
            body_timeout_ms,
            idle_timeout_ms,
            max_connections,
            max_in_flight,
            ..
        } = &config.inputs[0]
        else {
            panic!("{config:?}");
        };
        assert_eq!(auth, &Some(super::IngestAuth::None));
        assert_eq!(
            (
                *header_timeout_ms,
                *body_timeout_ms,
                *idle_timeout_ms,
                *max_connections,
                *max_in_flight
            ),
            (10_000, 30_000, 60_000, 256, 4)
        );
    }

    #[test]
    fn unauthenticated_only_when_said_and_on_loopback() {
        let err = check("0.0.0.0:8080", "").unwrap_err();
        assert!(err.contains("`input[0].auth` is not set"), "{err}");
        assert!(!err.contains("auth = \"none\""), "{err}");
        let err = check("127.0.0.1:8080", "").unwrap_err();
        assert!(err.contains("`input[0].auth` is not set"), "{err}");
        let err = check("0.0.0.0:8080", "auth = \"none\"").unwrap_err();
        assert!(
            err.contains("`input[0].auth` = \"none\" is only allowed on a loopback"),
            "{err}"
        );
        let err = check("[::]:8080", "auth = \"none\"").unwrap_err();
        assert!(err.contains("only allowed on a loopback"), "{err}");
        assert!(check("[::1]:8080", "auth = \"none\"").is_ok());
        assert!(check("[::ffff:127.0.0.1]:8080", "auth = \"none\"").is_ok());
    }

    #[test]
    fn token_mistakes_name_the_key_not_the_token() {
        let err = check("0.0.0.0:1", "auth = { tokens = [] }").unwrap_err();
        assert!(err.contains("`input[0].auth.tokens` must list"), "{err}");
        let err = check("0.0.0.0:1", "auth = { tokens = [\"a\", \"\"] }").unwrap_err();
        assert!(err.contains("`input[0].auth.tokens[1]` is empty"), "{err}");
        let err = check("0.0.0.0:1", "auth = { tokens = [\"se cret\"] }").unwrap_err();
        assert!(
            err.contains("`input[0].auth.tokens[0]` has a character"),
            "{err}"
        );
        assert!(!err.contains("se cret"), "{err}");
        let err = check(
            "0.0.0.0:1",
            "auth = { tokens = [\"a\"], header = \"bad header\" }",
        )
        .unwrap_err();
        assert!(err.contains("`input[0].auth.header`"), "{err}");
        let err = check("0.0.0.0:1", "auth = { tokens = [\"a\"], headr = \"x\" }").unwrap_err();
        assert!(err.contains("unknown field `headr`"), "{err}");
        let err = check("0.0.0.0:1", "auth = \"nobody\"").unwrap_err();
        assert!(err.contains("\"none\""), "{err}");
    }

    #[test]
    fn limits_are_checked() {
        for (extra, expected) in [
            (
                "max_in_flight = 0",
                "`input[0].max_in_flight` must be between 1 and 1000000",
            ),
            (
                "max_connections = 9223372036854775807",
                "`input[0].max_connections` must be between",
            ),
            (
                "header_timeout_ms = 0",
                "`input[0].header_timeout_ms` must be between",
            ),
            (
                "body_timeout_ms = 3600001",
                "`input[0].body_timeout_ms` must be between",
            ),
            (
                "max_connections = 2\nmax_in_flight = 3",
                "`input[0].max_in_flight` (3) must not exceed",
            ),
        ] {
            let err = check("127.0.0.1:1", &format!("auth = \"none\"\n{extra}")).unwrap_err();
            assert!(err.contains(expected), "{extra}: {err}");
        }
    }
}
