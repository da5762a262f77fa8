//! `halyard plugin test FILE.wasm --cases cases.jsonl`: runs a plugin over
//! the cases of an expectations file (see [`super::cases`]) and prints a
//! diff for every failing case. Exit 0 when all pass, 1 when any fails, 2
//! when the case file itself is unusable.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use super::RuntimeArgs;
use super::cases::{self, Case, Input};
use crate::event;
use crate::plugin::kv::DEFAULT_MAX_BYTES;
use crate::plugin::{
    Action, EventId, Frame, KvNamespace, Limits, LoadError, PluginKind, PluginOptions, Runtime,
    Verdict,
};

/// Arguments of `halyard plugin test`.
#[derive(Debug, Clone, clap::Args)]
pub struct TestArgs {
    /// The component file.
    pub file: PathBuf,
    /// The expectations file: one JSON case per line.
    #[arg(long, value_name = "FILE")]
    pub cases: PathBuf,
    /// The kind it must implement; inferred from its exports if omitted.
    #[arg(long)]
    pub kind: Option<PluginKind>,
    /// Only the cases whose name contains this text.
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,
    /// Wall-clock deadline per call, in milliseconds. Generous by default:
    /// a test checks outcomes, `plugin check --bench` measures cost.
    #[arg(long, default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..=crate::config::ranges::MAX_DEADLINE_MS))]
    pub deadline_ms: u64,
    /// A capability, as in the config's `grants` (repeatable).
    #[arg(long = "grant", value_name = "GRANT", value_parser = super::grant_arg::parse)]
    pub grants: Vec<super::grant_arg::GrantArg>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Runs every case; prints `ok`/`FAIL` per case, a diff per failure and a
/// closing count line.
pub fn test(args: &TestArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.cases)
        .with_context(|| format!("cannot read {}", args.cases.display()))?;
    let all = match cases::parse(&args.cases, &text) {
        Ok(all) => all,
        Err(err) => {
            eprintln!("error: {err}");
            return Ok(ExitCode::from(2));
        }
    };
    let selected: Vec<&Case> = all
        .iter()
        .filter(|c| args.filter.as_ref().is_none_or(|f| c.name.contains(f)))
        .collect();
    let runtime = args.runtime.runtime()?;
    let mut out = std::io::stdout().lock();
    let (mut passed, mut failed) = (0usize, 0usize);
    for case in &selected {
        let problems = run_case(&runtime, args, case);
        if problems.is_empty() {
            passed += 1;
            writeln!(out, "ok    {}", case.name)?;
        } else {
            failed += 1;
            writeln!(out, "FAIL  {} (line {})", case.name, case.line)?;
            for p in problems {
                writeln!(out, "      {p}")?;
            }
        }
    }
    writeln!(
        out,
        "{}: {passed} passed, {failed} failed",
        args.file.display()
    )?;
    if selected.is_empty() {
        writeln!(out, "no cases ran")?;
        return Ok(ExitCode::from(1));
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The case's differences from what the plugin did; empty when it passes.
fn run_case(runtime: &Runtime, args: &TestArgs, case: &Case) -> Vec<String> {
    let options = PluginOptions {
        config: case.config.clone(),
        grants: super::grant_arg::grants(&args.grants),
        limits: Limits {
            call_deadline: Duration::from_millis(args.deadline_ms),
            ..Limits::default()
        },
    };
    let plugin = match runtime.load(&args.file, args.kind, options) {
        Ok(plugin) => plugin,
        Err(LoadError::Init { key, message }) => {
            let got = match &key {
                Some(k) => format!("{message} (key `{k}`)"),
                None => message,
            };
            return match &case.init_error {
                Some(p) if cases::matches_pattern(p, &got) => Vec::new(),
                Some(p) => vec![format!(
                    "init: expected a refusal matching {p:?}, got {got:?}"
                )],
                None => vec![format!("init refused the config: {got}")],
            };
        }
        Err(err) => return vec![format!("cannot load: {}", super::describe_error(&err))],
    };
    if let Some(p) = &case.init_error {
        return vec![format!(
            "init: expected a refusal matching {p:?}, but init succeeded"
        )];
    }
    let mut instance = plugin.instance();
    let actual = match outcomes(&mut instance, plugin.kind, &case.input) {
        Ok(actual) => actual,
        Err(problem) => return vec![problem],
    };
    let mut problems = Vec::new();
    for (i, (want, got)) in case.expect.iter().zip(&actual).enumerate() {
        for d in cases::diff(want, got) {
            problems.push(format!("[{i}]{d}"));
        }
        if !cases::diff(want, got).is_empty() {
            problems.push(format!("[{i}] actual: {got}"));
        }
    }
    problems
}

/// The plugin's outcome per input item, as JSON in the case file's terms.
fn outcomes(
    instance: &mut crate::plugin::PluginInstance,
    kind: PluginKind,
    input: &Input,
) -> Result<Vec<Value>, String> {
    let call = |e: crate::plugin::CallError| format!("call failed: {e}");
    match (kind, input) {
        (PluginKind::Source, Input::Polls { count, max }) => {
            let mut out = Vec::new();
            for _ in 0..*count {
                let events = instance.poll(*max).map_err(call)?;
                out.push(json!({"events": events.iter().map(event_json).collect::<Vec<_>>()}));
            }
            Ok(out)
        }
        (PluginKind::Decoder, Input::Frames(frames)) => {
            let frames: Vec<Frame> = frames
                .iter()
                .map(|f| Frame {
                    data: f.data.as_bytes().to_vec(),
                    content_type: f.content_type.clone(),
                    origin: f.origin.clone(),
                })
                .collect();
            let results = instance.decode(&frames).map_err(call)?;
            Ok(results
                .into_iter()
                .map(|r| match r {
                    Ok(events) => {
                        json!({"events": events.iter().map(event_json).collect::<Vec<_>>()})
                    }
                    Err(error) => json!({"error": error}),
                })
                .collect())
        }
        (PluginKind::Detector, Input::Events(e)) => detect_one_by_one(instance, &input_events(e)?),
        (PluginKind::Validator | PluginKind::Privacy | PluginKind::Sampler, Input::Events(e)) => {
            let events = input_events(e)?;
            match kind {
                PluginKind::Validator => Ok(instance
                    .validate(&events)
                    .map_err(call)?
                    .into_iter()
                    .map(|v| match v {
                        Verdict::Accept => json!({"verdict": "accept"}),
                        Verdict::Reject(reason) => json!({"verdict": "reject", "reason": reason}),
                    })
                    .collect()),
                PluginKind::Privacy => Ok(instance
                    .redact(&events)
                    .map_err(call)?
                    .into_iter()
                    .map(|a| match a {
                        Action::Keep => json!({"action": "keep"}),
                        Action::Drop => json!({"action": "drop"}),
                        Action::Rewrite(e) => json!({"action": "rewrite", "event": event_json(&e)}),
                    })
                    .collect()),
                _ => Ok(instance
                    .sample(&events)
                    .map_err(call)?
                    .into_iter()
                    .map(|k| json!({"keep": k}))
                    .collect()),
            }
        }
        (kind, _) => Err(format!(
            "a {kind} takes {}",
            match kind {
                PluginKind::Source => "`polls`",
                PluginKind::Decoder => "`frames`",
                _ => "`events`",
            }
        )),
    }
}

/// A detector's outcome per event: each event is its own batch, committed
/// before the next (its `kv` writes applied to one store for the whole
/// case), so a case reads as a sequence of readings; the outcome is
/// `{"events": [new events]}`, or `{"error": …}` if the host refused them.
fn detect_one_by_one(
    instance: &mut crate::plugin::PluginInstance,
    events: &[crate::plugin::Event],
) -> Result<Vec<Value>, String> {
    let kv = KvNamespace::new("plugin-test".into(), DEFAULT_MAX_BYTES, Vec::new());
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        let detected = instance
            .detect(std::slice::from_ref(event), &kv)
            .map_err(|e| format!("call failed: {e}"))?;
        let mut ns = KvNamespace::lock(&kv);
        let writes = ns.take_batch();
        ns.committed_ok(writes);
        drop(ns);
        out.push(match detected.refused {
            Some(reason) => json!({ "error": reason }),
            None => {
                json!({"events": detected.events.iter().map(event_json).collect::<Vec<_>>()})
            }
        });
    }
    Ok(out)
}

/// The case's events; one without an `id` gets `0…0N` (N its 1-based
/// position), so id-dependent plugins (samplers) are reproducible.
fn input_events(values: &[Value]) -> Result<Vec<crate::plugin::Event>, String> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut e = event::from_json(v).map_err(|err| format!("events[{i}]: {err}"))?;
            if event::is_nil(&e.id) {
                e.id = EventId {
                    hi: 0,
                    lo: i as u64 + 1,
                };
            }
            Ok(e)
        })
        .collect()
}

/// An event as the case file writes it, without the host-assigned id.
fn event_json(e: &crate::plugin::Event) -> Value {
    let mut v = event::to_json(e);
    if let Value::Object(map) = &mut v
        && event::is_nil(&e.id)
    {
        map.remove("id");
    }
    v
}
