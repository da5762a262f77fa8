//! The limits every plugin call runs under, and the caps on what a guest may
//! hand back. Guest output is untrusted input: these numbers bound what one
//! call can cost the host.

use std::time::Duration;

/// Resource limits for one plugin instance and the calls made into it.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// The memory budget of one instance: all its linear memories and
    /// tables together (see [`super::limiter`]); growing past it traps.
    pub memory_bytes: usize,
    /// Wall-clock deadline for one call (a whole batch), from its start;
    /// running code is interrupted by the epoch, waiting in the host by a
    /// timer (see [`super::deadline`]). Instantiation with `info`, and
    /// `init`, each get this deadline; a batch call gets it plus
    /// [`Limits::per_item_deadline`] per item (see [`Limits::deadline_for`]).
    pub call_deadline: Duration,
    /// The part of a batch call's deadline that grows with the batch: this
    /// much per event (per frame for a decoder, per `max` event for a
    /// source poll). A guest in a slower language (JavaScript, Python) costs
    /// tens of µs per event, so a fixed deadline that fits 100 events does
    /// not fit 1000 on a loaded device; zero gives every call the fixed part
    /// alone.
    pub per_item_deadline: Duration,
    /// The most instances one store may create. A component is made of
    /// several core instances; componentize-py builds (with `--stub-wasi`)
    /// need well over 32.
    pub max_instances: usize,
    /// The most linear memories one store may create (each reserves
    /// address space; their bytes count against `memory_bytes`).
    pub max_memories: usize,
    /// The most tables one store may create (their elements count against
    /// `memory_bytes`).
    pub max_tables: usize,
    /// The most host resources (WASI streams, pollables, sockets, files)
    /// an instance may hold at once; each costs host memory outside the
    /// guest's budget.
    pub max_resources: usize,
    /// The most events a source poll or one decoded frame may return.
    pub max_events_out: usize,
    /// The longest string (source, kind, unit, attribute key or string value,
    /// reject reason, decode error) a guest may return.
    pub max_string_bytes: usize,
    /// The largest JSON body a guest may return.
    pub max_body_bytes: usize,
    /// The most attributes one event may carry.
    pub max_attributes: usize,
    /// Roughly the most bytes one call may copy out of the guest (wasmtime's
    /// hostcall fuel). It is checked while results are lifted, before the
    /// host allocates them, so a guest cannot make the host allocate more
    /// than this (e.g. by returning many strings that alias one buffer).
    pub max_output_bytes: usize,
}

/// The default per-item part of a batch call's deadline, in µs: four times
/// what the JavaScript example validator costs per event on a quiet machine
/// (~24 µs), so a loaded device keeps its batches.
pub const DEFAULT_PER_ITEM_DEADLINE_US: u64 = 100;

/// The longest any one call may be given, whatever the batch: the config's
/// `deadline_ms` maximum.
const MAX_CALL_DEADLINE: Duration = Duration::from_millis(60_000);

impl Limits {
    /// The wall-clock deadline of a call over `items` events (or frames, or
    /// a poll of at most `items` events): `call_deadline + items ×
    /// per_item_deadline`, at most 60 s.
    pub fn deadline_for(&self, items: usize) -> Duration {
        let items = u32::try_from(items).unwrap_or(u32::MAX);
        self.call_deadline
            .saturating_add(self.per_item_deadline.saturating_mul(items))
            .min(MAX_CALL_DEADLINE.max(self.call_deadline))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            call_deadline: Duration::from_millis(100),
            per_item_deadline: Duration::from_micros(DEFAULT_PER_ITEM_DEADLINE_US),
            max_instances: 1000,
            max_memories: 16,
            max_tables: 1000,
            max_resources: 10_000,
            max_events_out: 10_000,
            max_string_bytes: 64 << 10,
            max_body_bytes: 1 << 20,
            max_attributes: 256,
            max_output_bytes: 16 << 20,
        }
    }
}

/// What a plugin may reach beyond its own memory. Everything is denied unless
/// the host config grants it to that plugin.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grants {
    /// Environment variables the plugin may read, by name; their values are
    /// taken from the host's environment when the instance is created.
    pub env: Vec<String>,
    /// Host directories the plugin may read, each mounted read-only at the
    /// same path inside the sandbox.
    pub read_dirs: Vec<std::path::PathBuf>,
    /// Where the plugin may connect (`wasi:sockets`). Without a grant the
    /// socket interfaces are still linked, and every use fails with a
    /// permission error.
    pub network: NetworkGrant,
}

/// The network a plugin may reach.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum NetworkGrant {
    /// No sockets at all (the default).
    #[default]
    None,
    /// Any address: TCP and UDP, connect and bind, and name lookups.
    Any,
    /// Only these destinations (TCP connect, UDP send); binds only to an
    /// ephemeral port on an unspecified address, as a connect does
    /// implicitly. Name lookups are allowed; what they return is checked
    /// like any other address.
    Allow(Vec<SocketRule>),
}

impl NetworkGrant {
    /// Whether any socket use is granted.
    pub fn granted(&self) -> bool {
        !matches!(self, NetworkGrant::None)
    }
}

/// One allowed destination: an IP (or any) and a port (or any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketRule {
    /// `None` is `*`: any address.
    pub ip: Option<std::net::IpAddr>,
    /// `None` is `*`: any port.
    pub port: Option<u16>,
}

impl SocketRule {
    /// Whether `addr` is this destination.
    pub fn matches(&self, addr: std::net::SocketAddr) -> bool {
        self.ip.is_none_or(|ip| ip == addr.ip()) && self.port.is_none_or(|p| p == addr.port())
    }
}

impl std::str::FromStr for SocketRule {
    type Err = String;

    /// `IP:PORT`, `[IPv6]:PORT`, with `*` for either part.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not IP:PORT (`*` for any IP or any port; IPv6 in brackets)");
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip = match host {
            "*" => None,
            h => Some(h.parse().map_err(|_| bad())?),
        };
        let port = match port {
            "*" => None,
            p => Some(p.parse().map_err(|_| bad())?),
        };
        Ok(SocketRule { ip, port })
    }
}

impl std::fmt::Display for SocketRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ip {
            None => f.write_str("*")?,
            Some(std::net::IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            Some(ip) => write!(f, "{ip}")?,
        }
        match self.port {
            None => f.write_str(":*"),
            Some(p) => write!(f, ":{p}"),
        }
    }
}
