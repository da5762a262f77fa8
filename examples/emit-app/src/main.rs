//! An application that hands its readings to a Halyard host on the same
//! machine and prints what became of each one.
//!
//! ```text
//! emit-app [ENDPOINT] [TOKEN]
//! ```
//!
//! `ENDPOINT` is `unix:/path/to/socket` (default
//! `unix:/tmp/halyard-emit-app.sock`, the socket of
//! `examples/emit-app/halyard.toml`) or `http://host:port`; `TOKEN` is
//! sent as a bearer token when given. It emits five readings in one batch
//! — one valid, one the range validator rejects, one from a source the
//! privacy policy blocks, one the sampler leaves out (a second reading of
//! the same source in the same second with `max_per_source_per_s = 1`)
//! and one the decoder cannot read — then one more on its own, and prints
//! one line per result. Exit status 1 if the host could not be reached or
//! refused the request.

use halyard_emit::{Client, EventResult};
use serde::Serialize;

/// A reading as the example `jsonl-decoder` reads it.
#[derive(Serialize)]
struct Reading<'a> {
    device: &'a str,
    metric: &'a str,
    value: f64,
    ts: u64,
}

/// What the app emits: a reading, or (to show a decode error) a JSON value
/// that is not an object.
#[derive(Serialize)]
#[serde(untagged)]
enum Line<'a> {
    Reading(Reading<'a>),
    Other(serde_json::Value),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let endpoint = args
        .next()
        .unwrap_or_else(|| "unix:/tmp/halyard-emit-app.sock".to_string());
    let endpoint = absolute_socket(&endpoint);
    let client = match Client::new(&endpoint) {
        Ok(client) => client,
        Err(err) => {
            eprintln!("emit-app: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let client = match args.next() {
        Some(token) => client.with_token(token),
        None => client,
    }
    .on_retry(|r| eprintln!("emit-app: retrying in {:?} ({})", r.wait, r.reason));

    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let second = now_ms - now_ms % 1000;
    let batch = [
        Line::Reading(Reading {
            device: "pump-1",
            metric: "temp",
            value: 21.5,
            ts: second,
        }),
        Line::Reading(Reading {
            device: "pump-2",
            metric: "temp",
            value: -3.0,
            ts: second,
        }),
        Line::Reading(Reading {
            device: "lab-7",
            metric: "temp",
            value: 20.0,
            ts: second,
        }),
        Line::Reading(Reading {
            device: "pump-1",
            metric: "temp",
            value: 21.7,
            ts: second + 1,
        }),
        Line::Other(serde_json::json!(["not", "an", "object"])),
    ];
    println!("emitting {} events to {endpoint}", batch.len());
    match client.emit_batch_report(&batch).await {
        Ok(report) => {
            for (i, result) in report.results.iter().enumerate() {
                println!("  event {}: {}", i + 1, describe(result));
            }
            println!("  ({} attempt(s))", report.attempts);
        }
        Err(err) => {
            eprintln!("emit-app: {err}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let single = Reading {
        device: "fan-3",
        metric: "temp",
        value: 30.0,
        ts: second + 2000,
    };
    match client.emit(&single).await {
        Ok(result) => println!("one more: {}", describe(&result)),
        Err(err) => {
            eprintln!("emit-app: {err}");
            return std::process::ExitCode::FAILURE;
        }
    }
    std::process::ExitCode::SUCCESS
}

/// A result as one line of text.
fn describe(result: &EventResult) -> String {
    match result {
        EventResult::Accepted { id } => format!("accepted as {id}"),
        EventResult::Rejected { reason } => format!("rejected: {reason}"),
        EventResult::Dropped { by } => format!("dropped by {by}"),
        EventResult::SampledOut => "sampled out".into(),
        EventResult::DecodeError { message } => format!("not decodable: {message}"),
        EventResult::Empty => "no event in it".into(),
        EventResult::Several { events, more } => format!(
            "{} events: {}{}",
            events.len() + more,
            events.iter().map(describe).collect::<Vec<_>>().join("; "),
            if *more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            }
        ),
    }
}

/// `unix:relative/path` made absolute against the working directory (the
/// client takes absolute socket paths only).
fn absolute_socket(endpoint: &str) -> String {
    match endpoint.strip_prefix("unix:") {
        Some(path) if !path.starts_with('/') => match std::env::current_dir() {
            Ok(dir) => format!("unix:{}", dir.join(path).display()),
            Err(_) => endpoint.to_string(),
        },
        _ => endpoint.to_string(),
    }
}
