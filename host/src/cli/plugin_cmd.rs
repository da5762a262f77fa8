//! `halyard plugin check` and `halyard plugin run`: the offline harness for
//! plugin authors.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::RuntimeArgs;
use crate::event;
use crate::plugin::{
    Action, Event, Frame, Limits, Plugin, PluginInstance, PluginKind, PluginOptions, Verdict,
};

/// Arguments of `halyard plugin check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// The component file.
    pub file: PathBuf,
    /// The kind it must implement; inferred from its exports if omitted.
    #[arg(long)]
    pub kind: Option<PluginKind>,
    /// Plugin config as key=value (repeatable); `init` is run with it.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub config: Vec<(String, String)>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// A capability, as in the config's `grants` (repeatable): env=NAME,
    /// read_dir=PATH, network, or network=IP:PORT.
    #[arg(long = "grant", value_name = "GRANT", value_parser = super::grant_arg::parse)]
    pub grants: Vec<super::grant_arg::GrantArg>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Arguments of `halyard plugin run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The component file.
    pub file: PathBuf,
    /// Input: JSON lines of events for validator, privacy and sampler; raw
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
    /// CPU deadline per call, in milliseconds (1 to 60000, as in the config).
    #[arg(long, default_value_t = 100,
        value_parser = clap::value_parser!(u64).range(1..=crate::config::ranges::MAX_DEADLINE_MS))]
    pub deadline_ms: u64,
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

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// `halyard plugin check`: exit 0 if the component is a valid plugin.
pub fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let runtime = args.runtime.runtime()?;
    let options = PluginOptions {
        config: args.config.iter().cloned().collect(),
        grants: super::grant_arg::grants(&args.grants),
        ..PluginOptions::default()
    };
    let result = runtime.load(&args.file, args.kind, options);
    let mut out = std::io::stdout().lock();
    match result {
        Ok(plugin) => {
            if args.json {
                let report = json!({
                    "file": plugin.path, "valid": true, "kind": plugin.kind,
                    "contract": plugin.contract.as_str(),
                    "name": plugin.info.name, "version": plugin.info.version,
                    "sha256": plugin.sha256, "imports": plugin.imports, "exports": plugin.exports,
                    "calls": calls(&plugin),
                });
                writeln!(out, "{report}")?;
            } else {
                write_report(&mut out, &plugin)?;
                writeln!(out, "verdict:  valid {}", plugin.kind)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            if args.json {
                let report = json!({"file": args.file, "valid": false, "error": err.to_string()});
                writeln!(out, "{report}")?;
            } else {
                writeln!(out, "file:     {}", args.file.display())?;
                writeln!(out, "verdict:  invalid: {err}")?;
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn write_report(out: &mut impl Write, plugin: &Plugin) -> std::io::Result<()> {
    writeln!(out, "file:     {}", plugin.path.display())?;
    writeln!(out, "kind:     {}", plugin.kind)?;
    writeln!(out, "contract: {}", plugin.contract)?;
    writeln!(out, "name:     {}", plugin.info.name)?;
    writeln!(out, "version:  {}", plugin.info.version)?;
    writeln!(out, "sha256:   {}", plugin.sha256)?;
    writeln!(out, "imports:")?;
    for import in &plugin.imports {
        writeln!(out, "  {import}")?;
    }
    writeln!(out, "exports:  {}", plugin.exports.join(", "))?;
    writeln!(out, "calls:    {}", calls(plugin))
}

/// How the host calls the plugin, so an author sees why a guest that
/// imports `poll` (or has a grant) costs more per call.
fn calls(plugin: &Plugin) -> &'static str {
    if plugin.calls_synchronously() {
        "sync (cannot wait: the epoch bounds each call)"
    } else {
        "async (can wait in a host call: a timer bounds each call)"
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
