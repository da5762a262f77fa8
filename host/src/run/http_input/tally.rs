//! Counts of what the input refused or cut, logged so an operator sees an
//! attack or a misconfigured client without a flood of lines: each kind is
//! logged at its 1st, 10th, 100th, … occurrence (with the total so far) and
//! once more, in full, when the input stops. Every occurrence is logged at
//! `debug`. No line carries a credential: only the peer's address.

use std::sync::atomic::{AtomicU64, Ordering};

/// Something the input refused or cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A connection over `max_connections`, answered 503 and closed.
    ConnectionRefused,
    /// A request without a valid token (401).
    Unauthorized,
    /// A request over `max_in_flight` (503).
    Busy,
    /// A connection that did not send its headers in time (closed).
    HeaderTimeout,
    /// A body that did not arrive in time (408).
    BodyTimeout,
    /// `accept` failed (e.g. out of file descriptors); the input backed off.
    AcceptError,
}

const KINDS: [Event; 6] = [
    Event::ConnectionRefused,
    Event::Unauthorized,
    Event::Busy,
    Event::HeaderTimeout,
    Event::BodyTimeout,
    Event::AcceptError,
];

impl Event {
    fn index(self) -> usize {
        self as usize
    }

    /// The field name in log lines.
    fn key(self) -> &'static str {
        match self {
            Event::ConnectionRefused => "connections_refused",
            Event::Unauthorized => "unauthorized",
            Event::Busy => "busy",
            Event::HeaderTimeout => "header_timeouts",
            Event::BodyTimeout => "body_timeouts",
            Event::AcceptError => "accept_errors",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Event::ConnectionRefused => "connection refused: max_connections reached",
            Event::Unauthorized => "request refused: missing or wrong token (401)",
            Event::Busy => "request refused: max_in_flight reached (503)",
            Event::HeaderTimeout => "connection cut: headers not sent within header_timeout_ms",
            Event::BodyTimeout => "request refused: body not sent within body_timeout_ms (408)",
            Event::AcceptError => "accept failed; backing off",
        }
    }
}

/// The counters of one http input.
pub struct Tally {
    input: String,
    counts: [AtomicU64; KINDS.len()],
}

impl Tally {
    /// Counters for the input `input`.
    pub fn new(input: &str) -> Tally {
        Tally {
            input: input.to_string(),
            counts: Default::default(),
        }
    }

    /// Counts one occurrence and logs it (see the module header).
    pub fn note(&self, event: Event, peer: &super::Peer) {
        let n = self.counts[event.index()].fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(input = %self.input, %peer, "http input: {}", event.what());
        if is_power_of_ten(n) {
            tracing::warn!(
                input = %self.input,
                %peer,
                total = n,
                "http input: {} (logged at the 1st, 10th, 100th, … time)",
                event.what()
            );
        }
    }

    /// Counts an accept error, logged like [`Tally::note`].
    pub fn accept_error(&self, error: &std::io::Error) {
        let event = Event::AcceptError;
        let n = self.counts[event.index()].fetch_add(1, Ordering::Relaxed) + 1;
        if is_power_of_ten(n) {
            tracing::warn!(input = %self.input, error = %error, total = n, "http input: {}", event.what());
        }
    }

    /// How many of `event` so far.
    pub fn count(&self, event: Event) -> u64 {
        self.counts[event.index()].load(Ordering::Relaxed)
    }

    /// One line with every non-zero count, when the input stops.
    pub fn log_totals(&self) {
        let counts: Vec<String> = KINDS
            .iter()
            .filter(|k| self.count(**k) > 0)
            .map(|k| format!("{}={}", k.key(), self.count(*k)))
            .collect();
        if !counts.is_empty() {
            tracing::info!(input = %self.input, refused = %counts.join(" "), "http input refusals");
        }
    }
}

fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_at_powers_of_ten_and_counts_each_kind() {
        let hits: Vec<u64> = (1..=1000).filter(|n| is_power_of_ten(*n)).collect();
        assert_eq!(hits, [1, 10, 100, 1000]);
        let tally = Tally::new("web");
        let peer = super::super::Peer::Tcp(([127, 0, 0, 1], 1).into());
        tally.note(Event::Busy, &peer);
        tally.note(Event::Busy, &peer);
        tally.note(Event::Unauthorized, &peer);
        assert_eq!(
            KINDS.map(|k| tally.count(k)),
            [0, 1, 2, 0, 0, 0],
            "in the order of KINDS"
        );
    }
}
