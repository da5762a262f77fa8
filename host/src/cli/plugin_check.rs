//! `halyard plugin check`: is this component a plugin the host will run,
//! and what does it cost? Lists every import with the host's verdict
//! (allowed, granted, refused and why) and every export with its role,
//! times the cold compile, starts it with the given config, and with
//! `--bench N` measures the per-event cost of its stage. `--json` prints
//! the same as one object, also when the plugin is refused.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::RuntimeArgs;
use crate::plugin::inspect::{ExportReport, ImportVerdict, Inspection};
use crate::plugin::{
    AttrValue, Attribute, Event, EventId, Frame, Limits, Plugin, PluginKind, PluginOptions,
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
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = super::plugin_cmd::parse_key_value)]
    pub config: Vec<(String, String)>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// A capability, as in the config's `grants` (repeatable): env=NAME,
    /// read_dir=PATH, network, or network=IP:PORT.
    #[arg(long = "grant", value_name = "GRANT", value_parser = super::grant_arg::parse)]
    pub grants: Vec<super::grant_arg::GrantArg>,
    /// Also run the stage over N generated events (frames for a decoder,
    /// polled events for a source) and report the cost per event.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub bench: Option<u32>,
    /// Events per call for `--bench`.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub bench_batch: u32,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// `halyard plugin check`: exit 0 if the component is a valid plugin.
pub fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let runtime = args.runtime.runtime()?;
    let grants = super::grant_arg::grants(&args.grants);
    let mut out = std::io::stdout().lock();
    let inspection = match runtime.inspect(&args.file, &grants) {
        Ok(i) => i,
        Err(err) => {
            let error = super::describe_error(&err);
            if args.json {
                let report = json!({"file": args.file, "valid": false, "error": error});
                writeln!(out, "{report}")?;
            } else {
                writeln!(out, "file:     {}", args.file.display())?;
                writeln!(out, "verdict:  invalid: {error}")?;
            }
            return Ok(ExitCode::from(1));
        }
    };
    let options = PluginOptions {
        config: args.config.iter().cloned().collect(),
        grants,
        // Checking and benchmarking measure; they do not enforce the
        // pipeline's deadline (a cold first call can be slow).
        limits: Limits {
            call_deadline: Duration::from_secs(60),
            ..Limits::default()
        },
    };
    let loaded = runtime.load(&args.file, args.kind, options);
    let kind = match &loaded {
        Ok(plugin) => Some(plugin.kind),
        Err(_) => args.kind.or_else(|| inspection.kind_from_exports()),
    };
    let exports = inspection.exports_for(kind);
    let plugin = match loaded {
        Ok(plugin) => plugin,
        Err(err) => {
            let error = super::describe_error(&err);
            if args.json {
                let mut report = base_json(args, &inspection, &exports);
                report["valid"] = json!(false);
                report["kind"] = json!(kind);
                report["error"] = json!(error);
                writeln!(out, "{report}")?;
            } else {
                write_lists(&mut out, true, args, &inspection, &exports)?;
                writeln!(out, "verdict:  invalid: {error}")?;
            }
            return Ok(ExitCode::from(1));
        }
    };
    let bench = args.bench.map(|n| bench(&plugin, n, args.bench_batch));
    if args.json {
        let mut report = base_json(args, &inspection, &exports);
        report["valid"] = json!(true);
        report["kind"] = json!(plugin.kind);
        report["contract"] = json!(plugin.contract.as_str());
        report["name"] = json!(plugin.info.name);
        report["version"] = json!(plugin.info.version);
        report["calls"] = json!(calls(&plugin));
        if let Some(b) = &bench {
            report["bench"] = b.json();
        }
        writeln!(out, "{report}")?;
    } else {
        writeln!(out, "file:     {}", plugin.path.display())?;
        writeln!(out, "kind:     {}", plugin.kind)?;
        writeln!(out, "contract: {}", plugin.contract)?;
        writeln!(out, "name:     {}", plugin.info.name)?;
        writeln!(out, "version:  {}", plugin.info.version)?;
        write_lists(&mut out, false, args, &inspection, &exports)?;
        writeln!(out, "calls:    {}", calls(&plugin))?;
        if let Some(b) = &bench {
            writeln!(out, "bench:    {}", b.line())?;
        }
        writeln!(out, "verdict:  valid {}", plugin.kind)?;
    }
    let bench_failed = bench.is_some_and(|b| b.error.is_some());
    Ok(if bench_failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn base_json(args: &CheckArgs, inspection: &Inspection, exports: &[ExportReport]) -> Value {
    json!({
        "file": args.file,
        "bytes": inspection.bytes,
        "sha256": inspection.sha256,
        "cold_compile_ms": millis(inspection.cold_compile),
        "imports": inspection.imports,
        "exports": exports,
    })
}

/// The lines every text report has, valid or not; `print_file` when no
/// `file:` line came before (the valid report prints it above its kind).
fn write_lists(
    out: &mut impl Write,
    print_file: bool,
    args: &CheckArgs,
    inspection: &Inspection,
    exports: &[ExportReport],
) -> std::io::Result<()> {
    if print_file {
        writeln!(out, "file:     {}", args.file.display())?;
    }
    writeln!(out, "size:     {} bytes", inspection.bytes)?;
    writeln!(out, "sha256:   {}", inspection.sha256)?;
    writeln!(
        out,
        "compile:  {:.0} ms (cold, this machine)",
        millis(inspection.cold_compile)
    )?;
    writeln!(out, "imports:")?;
    let width = inspection
        .imports
        .iter()
        .map(|i| i.name.len())
        .max()
        .unwrap_or(0);
    for import in &inspection.imports {
        let verdict = match import.verdict {
            ImportVerdict::Allowed => "allowed",
            ImportVerdict::Granted => "granted",
            ImportVerdict::Refused => "REFUSED",
        };
        writeln!(
            out,
            "  {verdict:<8} {:<width$}  {}",
            import.name, import.why
        )?;
    }
    writeln!(out, "exports:")?;
    for export in exports {
        writeln!(out, "  {:<8} {}", export.verdict, export.name)?;
    }
    Ok(())
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
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

/// What `--bench` measured.
struct Bench {
    /// Events (frames, polled events) the stage was asked to handle.
    items: u64,
    /// Calls made.
    calls: u64,
    /// Wall time of all calls, after one warm-up call.
    elapsed: Duration,
    /// The slowest call.
    slowest: Duration,
    /// Events per call.
    batch: u32,
    /// Why the bench stopped early, if it did.
    error: Option<String>,
}

impl Bench {
    fn per_item_us(&self) -> f64 {
        if self.items == 0 {
            return 0.0;
        }
        self.elapsed.as_secs_f64() * 1e6 / self.items as f64
    }

    fn line(&self) -> String {
        let mut s = format!(
            "{} events in {} calls of {}: {:.2} µs/event ({:.0} events/s), slowest call {:.1} ms",
            self.items,
            self.calls,
            self.batch,
            self.per_item_us(),
            if self.elapsed.is_zero() {
                0.0
            } else {
                self.items as f64 / self.elapsed.as_secs_f64()
            },
            millis(self.slowest)
        );
        if let Some(e) = &self.error {
            s.push_str(&format!("; stopped: {e}"));
        }
        s
    }

    fn json(&self) -> Value {
        json!({
            "events": self.items, "calls": self.calls, "batch": self.batch,
            "us_per_event": (self.per_item_us() * 1000.0).round() / 1000.0,
            "slowest_call_ms": millis(self.slowest), "error": self.error,
        })
    }
}

/// Runs the plugin's stage over `n` generated items in calls of `batch`,
/// after one warm-up call (which pays for the first instantiation).
fn bench(plugin: &std::sync::Arc<Plugin>, n: u32, batch: u32) -> Bench {
    let mut instance = plugin.instance();
    let mut result = Bench {
        items: 0,
        calls: 0,
        elapsed: Duration::ZERO,
        slowest: Duration::ZERO,
        batch,
        error: None,
    };
    let events: Vec<Event> = (0..batch).map(bench_event).collect();
    let frames: Vec<Frame> = events.iter().map(bench_frame).collect();
    let call = |instance: &mut crate::plugin::PluginInstance| -> Result<(), String> {
        let err = |e: crate::plugin::CallError| e.to_string();
        match plugin.kind {
            PluginKind::Source => instance.poll(batch).map(drop).map_err(err),
            PluginKind::Decoder => instance.decode(&frames).map(drop).map_err(err),
            PluginKind::Validator => instance.validate(&events).map(drop).map_err(err),
            PluginKind::Privacy => instance.redact(&events).map(drop).map_err(err),
            PluginKind::Sampler => instance.sample(&events).map(drop).map_err(err),
            PluginKind::Detector => {
                // A throwaway namespace: the bench's writes go nowhere.
                let kv = crate::plugin::KvNamespace::new(
                    "bench".into(),
                    crate::plugin::kv::DEFAULT_MAX_BYTES,
                    Vec::new(),
                );
                instance.detect(&events, &kv).map(drop).map_err(err)
            }
        }
    };
    if let Err(e) = call(&mut instance) {
        result.error = Some(e);
        return result;
    }
    let mut left = u64::from(n);
    while left > 0 {
        let started = Instant::now();
        if let Err(e) = call(&mut instance) {
            result.error = Some(e);
            break;
        }
        let took = started.elapsed();
        result.elapsed += took;
        result.slowest = result.slowest.max(took);
        result.calls += 1;
        result.items += u64::from(batch);
        left = left.saturating_sub(u64::from(batch));
    }
    result
}

/// A reading like the quickstart's: eight sources, a value, two attributes.
fn bench_event(i: u32) -> Event {
    Event {
        id: EventId {
            hi: 1,
            lo: u64::from(i) + 1,
        },
        time_ns: crate::plugin::host::wall_clock_ns(),
        source: format!("sensor-{}", i % 8),
        kind: "temp".into(),
        value: Some(20.0 + f64::from(i % 10)),
        unit: Some("celsius".into()),
        attributes: vec![
            Attribute {
                key: "site".into(),
                value: AttrValue::Str("plant-1".into()),
            },
            Attribute {
                key: "user".into(),
                value: AttrValue::Str("alice".into()),
            },
        ],
        body: None,
    }
}

/// The same reading as a JSON line, for decoders.
fn bench_frame(e: &Event) -> Frame {
    let line = json!({"source": e.source, "kind": e.kind, "value": e.value, "unit": e.unit,
        "time_ns": e.time_ns, "attributes": {"site": "plant-1", "user": "alice"}});
    Frame {
        data: line.to_string().into_bytes(),
        content_type: "application/x-ndjson".into(),
        origin: "bench".into(),
    }
}
