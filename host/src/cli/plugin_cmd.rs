//! `halyard plugin run`: runs a plugin over a file offline, the harness
//! for trying a plugin by hand (`plugin test` checks expectations,
//! `plugin check` inspects).

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::RuntimeArgs;
use crate::event;
use crate::plugin::{
    Action, Event, Frame, Limits, PluginInstance, PluginKind, PluginOptions, Verdict,
};

/// Arguments of `halyard plugin run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The component file.
    pub file: PathBuf,
    /// Input: JSON lines of events for validator, detector, privacy and sampler; raw
    /// lines (one frame each) for a decoder; `-` for stdin. Not used by sources.
    #[arg(long, short, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// The kind it must implement; inferred from its exports if omitted.
    #[arg(long)]
    pub kind: Option<PluginKind>,
    /// Plugin config as key=value (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub config: Vec<(String, String)>,
    /// Events (or frames) per call.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// Sources: how many polls to make.
    #[arg(long, default_value_t = 1)]
    pub polls: u32,
    /// Sources: the most events per poll.
    #[arg(long, default_value_t = 100)]
    pub max: u32,
    /// Wall-clock deadline per call, fixed part, in milliseconds (1 to
    /// 60000, as in the config's `limits.deadline_ms`).
    #[arg(long, default_value_t = 100,
        value_parser = clap::value_parser!(u64).range(1..=crate::config::ranges::MAX_DEADLINE_MS))]
    pub deadline_ms: u64,
    /// The deadline's part per event (frame, polled event), in µs, as the
    /// config's `limits.deadline_per_event_us`.
    #[arg(long, default_value_t = crate::plugin::limits::DEFAULT_PER_ITEM_DEADLINE_US,
        value_parser = clap::value_parser!(u64).range(0..=crate::config::ranges::MAX_DEADLINE_PER_EVENT_US))]
    pub deadline_per_event_us: u64,
    /// Memory cap per instance, in MiB (1 to 4096, as in the config).
    #[arg(long, default_value_t = 64, value_parser = parse_memory_mb)]
    pub memory_mb: usize,
    /// A capability, as in the config's `grants` (repeatable): env=NAME,
    /// read_dir=PATH, network, or network=IP:PORT.
    #[arg(long = "grant", value_name = "GRANT", value_parser = super::grant_arg::parse)]
    pub grants: Vec<super::grant_arg::GrantArg>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// `--memory-mb` within the config's range, so `<< 20` cannot wrap.
fn parse_memory_mb(s: &str) -> Result<usize, String> {
    let max = crate::config::ranges::MAX_MEMORY_MB;
    match s.parse::<usize>() {
        Ok(mb) if (1..=max).contains(&mb) => Ok(mb),
        _ => Err(format!("must be a number of MiB from 1 to {max}")),
    }
}

pub(super) fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// `halyard plugin run`: prints one JSON line per event (per frame for
/// decoders, per event for sources). Exits 1 if any call failed.
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let runtime = args.runtime.runtime()?;
    let options = PluginOptions {
        config: args.config.iter().cloned().collect(),
        limits: Limits {
            call_deadline: Duration::from_millis(args.deadline_ms),
            per_item_deadline: Duration::from_micros(args.deadline_per_event_us),
            memory_bytes: args.memory_mb.saturating_mul(1 << 20),
            ..Limits::default()
        },
        grants: super::grant_arg::grants(&args.grants),
    };
    let plugin = runtime
        .load(&args.file, args.kind, options)
        .with_context(|| format!("cannot load {}", args.file.display()))?;
    let mut instance = plugin.instance();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut failed = false;
    if plugin.kind == PluginKind::Source {
        for poll in 0..args.polls {
            match instance.poll(args.max) {
                Ok(mut events) => {
                    for e in &mut events {
                        e.id = event::new_id();
                        writeln!(out, "{}", json!({"poll": poll, "event": event::to_json(e)}))?;
                    }
                }
                Err(err) => {
                    failed = true;
                    writeln!(out, "{}", json!({"poll": poll, "error": err.to_string()}))?;
                }
            }
        }
        out.flush()?;
        return Ok(exit(failed));
    }
    let Some(input) = &args.input else {
        bail!("--input is required for a {}", plugin.kind);
    };
    let reader = open_input(input)?;
    let mut lines = Vec::new();
    let mut line_no = 0usize;
    for line in reader.lines() {
        let line = line.with_context(|| format!("cannot read {}", input.display()))?;
        line_no += 1;
        if plugin.kind != PluginKind::Decoder && line.trim().is_empty() {
            continue;
        }
        lines.push((line_no, line));
        if lines.len() == args.batch as usize {
            failed |= run_batch(&mut instance, &lines, input, &mut out)?;
            lines.clear();
        }
    }
    if !lines.is_empty() {
        failed |= run_batch(&mut instance, &lines, input, &mut out)?;
    }
    out.flush()?;
    Ok(exit(failed))
}

fn exit(failed: bool) -> ExitCode {
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn open_input(input: &PathBuf) -> anyhow::Result<Box<dyn BufRead>> {
    if input.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdin().lock()));
    }
    let file = std::fs::File::open(input)
        .with_context(|| format!("cannot open input {}", input.display()))?;
    Ok(Box::new(std::io::BufReader::new(file)))
}

/// Runs one batch and prints its outcomes; returns whether the call failed.
fn run_batch(
    instance: &mut PluginInstance,
    lines: &[(usize, String)],
    input: &std::path::Path,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let kind = instance.plugin().kind;
    if kind == PluginKind::Decoder {
        let frames: Vec<Frame> = lines
            .iter()
            .map(|(_, l)| Frame {
                data: l.as_bytes().to_vec(),
                content_type: String::new(),
                origin: format!("file:{}", input.display()),
            })
            .collect();
        return match instance.decode(&frames) {
            Ok(results) => {
                for ((line, _), result) in lines.iter().zip(results) {
                    let outcome = match result {
                        Ok(mut events) => {
                            for e in &mut events {
                                e.id = event::new_id();
                            }
                            let events: Vec<Value> = events.iter().map(event::to_json).collect();
                            json!({"line": line, "events": events})
                        }
                        Err(error) => json!({"line": line, "error": error}),
                    };
                    writeln!(out, "{outcome}")?;
                }
                Ok(false)
            }
            Err(err) => {
                write_batch_error(out, lines, &err.to_string())?;
                Ok(true)
            }
        };
    }
    let mut events = Vec::with_capacity(lines.len());
    for (line, text) in lines {
        let value: Value = serde_json::from_str(text)
            .with_context(|| format!("{}:{line}: not JSON", input.display()))?;
        let mut e = event::from_json(&value)
            .with_context(|| format!("{}:{line}: not an event", input.display()))?;
        if event::is_nil(&e.id) {
            e.id = event::new_id();
        }
        events.push(e);
    }
    let outcomes: Result<Vec<Value>, _> = match kind {
        PluginKind::Validator => instance.validate(&events).map(|verdicts| {
            zip_outcomes(&events, verdicts, |v| match v {
                Verdict::Accept => json!({"verdict": "accept"}),
                Verdict::Reject(reason) => json!({"verdict": "reject", "reason": reason}),
            })
        }),
        PluginKind::Privacy => instance.redact(&events).map(|actions| {
            zip_outcomes(&events, actions, |a| match a {
                Action::Keep => json!({"action": "keep"}),
                Action::Drop => json!({"action": "drop"}),
                Action::Rewrite(e) => json!({"action": "rewrite", "event": event::to_json(&e)}),
            })
        }),
        PluginKind::Sampler => instance
            .sample(&events)
            .map(|keep| zip_outcomes(&events, keep, |k| json!({"keep": k}))),
        PluginKind::Detector => {
            // One throwaway namespace per run: writes are read back within
            // the run and never stored.
            let kv = crate::plugin::KvNamespace::new(
                "plugin-run".into(),
                crate::plugin::kv::DEFAULT_MAX_BYTES,
                Vec::new(),
            );
            instance.detect(&events, &kv).map(|detected| {
                detected
                    .events
                    .iter()
                    .map(|e| json!({"detected": event::to_json(e)}))
                    .collect()
            })
        }
        PluginKind::Source | PluginKind::Decoder => unreachable!("handled above"),
    };
    match outcomes {
        Ok(outcomes) => {
            for o in outcomes {
                writeln!(out, "{o}")?;
            }
            Ok(false)
        }
        Err(err) => {
            write_batch_error(out, lines, &err.to_string())?;
            Ok(true)
        }
    }
}

/// One JSON object per event: its id plus the outcome's fields.
fn zip_outcomes<T>(events: &[Event], results: Vec<T>, f: impl Fn(T) -> Value) -> Vec<Value> {
    events
        .iter()
        .zip(results)
        .map(|(e, r)| {
            let mut v = f(r);
            if let Value::Object(map) = &mut v {
                map.insert("id".into(), Value::String(event::id_to_string(&e.id)));
            }
            v
        })
        .collect()
}

fn write_batch_error(
    out: &mut impl Write,
    lines: &[(usize, String)],
    error: &str,
) -> std::io::Result<()> {
    let first = lines.first().map(|(l, _)| *l).unwrap_or(0);
    let last = lines.last().map(|(l, _)| *l).unwrap_or(0);
    writeln!(out, "{}", json!({"lines": [first, last], "error": error}))
}
