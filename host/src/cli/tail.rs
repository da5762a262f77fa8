//! `halyard tail`: follow a host's live event stream (`/events/stream`)
//! from a terminal or a script, reconnecting with backoff when the host
//! restarts or the connection drops. It resumes where it left off: each
//! reconnect sends the last item's id as `Last-Event-ID`, so items published
//! meanwhile come from the host's resume window, or a `[dropped]` line says
//! how many are gone. With `--token` (or `HALYARD_STATUS_TOKEN`) it sends
//! `Authorization: Bearer`; a 401 or 403 ends it (exit 1) rather than
//! retrying.

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
    /// The status server's token (`[health] token`).
    #[arg(long, env = "HALYARD_STATUS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
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
    let mut seen = Seen::default();
    let mut backoff = BACKOFF_START;
    loop {
        match stream_once(&client, &url, args, &mut seen).await {
            Ok(Done::Count) => return Ok(ExitCode::SUCCESS),
            Ok(Done::Refused(status)) => {
                eprintln!(
                    "halyard tail: the status server answered {status}: give its token with --token or HALYARD_STATUS_TOKEN"
                );
                return Ok(ExitCode::from(1));
            }
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

/// What this tail has printed so far.
#[derive(Default)]
struct Seen {
    /// Items printed.
    printed: u64,
    /// The last item's id, sent as `Last-Event-ID` on reconnect.
    last_id: Option<String>,
}

enum Done {
    /// `--count` reached.
    Count,
    /// The server refused us (401, 403).
    Refused(reqwest::StatusCode),
    /// The server closed the stream; whether it had been connected.
    Ended(bool),
}

async fn stream_once(
    client: &reqwest::Client,
    url: &reqwest::Url,
    args: &TailArgs,
    seen: &mut Seen,
) -> anyhow::Result<Done> {
    let mut request = client.get(url.clone());
    if let Some(token) = &args.token {
        request = request.bearer_auth(token);
    }
    if let Some(id) = &seen.last_id {
        request = request.header("Last-Event-ID", id);
    }
    let response = request.send().await.context("cannot connect")?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Ok(Done::Refused(status));
    }
    let mut response = response.error_for_status()?;
    let mut pending = String::new();
    while let Some(chunk) = response.chunk().await.context("stream broken")? {
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find("\n\n") {
            let frame: String = pending.drain(..end + 2).collect();
            if let Some(id) = frame_id(&frame) {
                seen.last_id = Some(id.to_string());
            }
            if print_frame(&frame, args.json)? {
                seen.printed += 1;
                if args.count.is_some_and(|n| seen.printed >= n) {
                    return Ok(Done::Count);
                }
            }
        }
    }
    Ok(Done::Ended(true))
}

/// The `id:` of an SSE frame, if it has one.
fn frame_id(frame: &str) -> Option<&str> {
    frame
        .lines()
        .filter_map(|l| l.strip_prefix("id:"))
        .map(|v| v.strip_prefix(' ').unwrap_or(v))
        .next_back()
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
