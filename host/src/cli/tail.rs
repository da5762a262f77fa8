//! `halyard tail`: follow a host's live event stream (`/events/stream`)
//! from a terminal or a script, reconnecting with backoff when the host
//! restarts or the connection drops.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::lifecycle::rfc3339;

/// Options of `halyard tail`.
#[derive(Debug, Clone, clap::Args)]
pub struct TailArgs {
    /// The host's status server.
    #[arg(long, default_value = "http://127.0.0.1:9464")]
    pub url: String,
    /// Only events whose dotted kind is K or starts with `K.`.
    #[arg(long, value_name = "K")]
    pub kind: Option<String>,
    /// Only events from source S.
    #[arg(long, value_name = "S")]
    pub source: Option<String>,
    /// Print each item as one JSON line (`{"type":"event"|"lifecycle",…}`).
    #[arg(long)]
    pub json: bool,
    /// Include the host's lifecycle events.
    #[arg(long)]
    pub lifecycle: bool,
    /// Exit after printing this many items.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Runs `halyard tail` until interrupted (or `--count` items).
pub fn tail(args: &TailArgs) -> anyhow::Result<ExitCode> {
    let mut url = reqwest::Url::parse(&args.url)
        .with_context(|| format!("--url {}", args.url))?
        .join("/events/stream")
        .context("--url")?;
    {
        let mut q = url.query_pairs_mut();
        if let Some(k) = &args.kind {
            q.append_pair("kind", k);
        }
        if let Some(s) = &args.source {
            q.append_pair("source", s);
        }
        if args.lifecycle {
            q.append_pair("lifecycle", "true");
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        tokio::select! {
            r = follow(url, args) => r,
            _ = tokio::signal::ctrl_c() => Ok(ExitCode::SUCCESS),
        }
    })
}

async fn follow(url: reqwest::Url, args: &TailArgs) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()?;
    let mut printed = 0u64;
    let mut backoff = BACKOFF_START;
    loop {
        match stream_once(&client, &url, args, &mut printed).await {
            Ok(Done::Count) => return Ok(ExitCode::SUCCESS),
            Ok(Done::Ended(connected)) => {
                if connected {
                    backoff = BACKOFF_START;
                }
                eprintln!("halyard tail: stream ended; reconnecting in {backoff:?}");
            }
            Err(err) => eprintln!("halyard tail: {err:#}; reconnecting in {backoff:?}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

enum Done {
    /// `--count` reached.
    Count,
    /// The server closed the stream; whether it had been connected.
    Ended(bool),
}

async fn stream_once(
    client: &reqwest::Client,
    url: &reqwest::Url,
    args: &TailArgs,
    printed: &mut u64,
) -> anyhow::Result<Done> {
    let mut response = client
        .get(url.clone())
        .send()
        .await
        .context("cannot connect")?
        .error_for_status()?;
    let mut pending = String::new();
    while let Some(chunk) = response.chunk().await.context("stream broken")? {
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find("\n\n") {
            let frame: String = pending.drain(..end + 2).collect();
            if print_frame(&frame, args.json)? {
                *printed += 1;
                if args.count.is_some_and(|n| *printed >= n) {
                    return Ok(Done::Count);
                }
            }
        }
    }
    Ok(Done::Ended(true))
}

/// Prints one SSE frame; returns whether it was an item (not a comment).
fn print_frame(frame: &str, json: bool) -> anyhow::Result<bool> {
    let mut kind = "message";
    let mut data = String::new();
    for line in frame.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            kind = v.trim();
        } else if let Some(v) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    if data.is_empty() {
        return Ok(false);
    }
    let value: serde_json::Value = serde_json::from_str(&data).unwrap_or(serde_json::Value::Null);
    let line = if json {
        serde_json::json!({"type": kind, "data": value}).to_string()
    } else {
        human(kind, &value)
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(true)
}

/// One readable line: `time source kind value unit attributes`.
fn human(kind: &str, v: &serde_json::Value) -> String {
    match kind {
        "event" => {
            let time = v["time_ns"]
                .as_i64()
                .map(|ns| rfc3339(ns.div_euclid(1_000_000)))
                .unwrap_or_default();
            let value = match (&v["value"], v["unit"].as_str()) {
                (serde_json::Value::Null, _) => String::new(),
                (n, Some(u)) => format!(" {n} {u}"),
                (n, None) => format!(" {n}"),
            };
            let attrs = v["attributes"]
                .as_object()
                .map(|a| {
                    a.iter()
                        .map(|(k, x)| format!(" {k}={x}"))
                        .collect::<String>()
                })
                .unwrap_or_default();
            format!(
                "{time} {} {}{value}{attrs}",
                v["source"].as_str().unwrap_or("-"),
                v["kind"].as_str().unwrap_or("-"),
            )
        }
        "lifecycle" => format!(
            "{} [lifecycle] {} {}",
            v["ts"].as_str().unwrap_or("-"),
            v["kind"].as_str().unwrap_or("-"),
            v["payload"]
        ),
        other => format!("[{other}] {v}"),
    }
}
