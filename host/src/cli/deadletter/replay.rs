//! `halyard deadletter replay`: the selected rows, page by page, back into
//! the pipeline or the buffer, with exact counts.
//!
//! Where each row goes:
//! - an event (`origin=event`) through the stage chains as configured now,
//!   keeping its id; with `--to-buffer`, straight into the buffer as stored;
//! - a frame (`origin=frame`) through its input's decoder, then the chains;
//! - a batch record (`origin=batch`: the receiver refused it) straight into
//!   the buffer, always: it already went through every stage and carries
//!   its provenance, and running privacy twice would redact the redacted.
//!
//! A row that keeps no payload (a digest, or id and reason only), a frame
//! whose input is gone from the config, a frame under `--to-buffer`, or an
//! event whose JSON no longer parses is **skipped**: left in the table and
//! counted. Each page is committed in one transaction per destination that
//! also deletes its rows; a buffer that is full under any policy stops the
//! replay (what was committed stays committed and counted).

use std::collections::BTreeMap;
use std::process::ExitCode;

use halyard_buffer::{Commit, DeadLetter, Kept, Origin, Record};

use super::{Opened, ReplayArgs, group, open};
use crate::config::{HostConfig, InputConfig};
use crate::pipeline::{IngestReport, KeyedFrame, Pipeline};
use crate::plugin::{Event, Frame};

/// Rows read and replayed per transaction.
const PAGE: u64 = 1000;

/// What a replay did, printed as `key=value` pairs.
#[derive(Debug, Default)]
struct Tally {
    /// Rows removed from the table, each with its new outcome committed.
    replayed: u64,
    /// Events committed to the buffer.
    accepted: u64,
    /// Rows that went to the dead-letter table again (a validator still
    /// rejects, a frame still does not decode).
    dead_lettered_again: u64,
    /// Events the privacy stages or samplers dropped.
    dropped: u64,
    /// Rows left in the table, by why.
    skipped: BTreeMap<&'static str, u64>,
}

impl Tally {
    fn add(&mut self, rows: usize, report: &IngestReport) {
        self.replayed += rows as u64;
        self.accepted += report.accepted;
        self.dead_lettered_again += report.rejected + report.decode_errors;
        self.dropped += report.privacy_dropped + report.sampled_out + report.buffer_dropped;
    }

    fn print(&self) {
        let skipped: u64 = self.skipped.values().sum();
        let why: Vec<String> = self
            .skipped
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "replayed={} accepted={} dead_lettered_again={} dropped={} skipped={skipped}{}{}",
            self.replayed,
            self.accepted,
            self.dead_lettered_again,
            self.dropped,
            if why.is_empty() { "" } else { " " },
            why.join(" ")
        );
    }
}

/// One page of rows, sorted by where they go.
#[derive(Default)]
struct Sorted {
    /// Straight back into the buffer, grouped by the transport that
    /// refused them (`None`: every transport that wants them).
    to_buffer: Vec<(Option<String>, (i64, Record))>,
    events: Vec<(i64, Event)>,
    frames: Vec<(String, (i64, KeyedFrame))>,
}

pub(super) fn replay(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let Some(opened) = open(&args.select.config)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut pipeline = if args.to_buffer {
        None
    } else {
        Some(pipeline(&opened)?)
    };
    let mut filter = args.select.filter();
    filter.up_to_seq = Some(opened.buffer.last_dead_letter_seq()?);
    let mut left = args.select.limit;
    let mut tally = Tally::default();
    let result = loop {
        filter.limit = Some(left.map_or(PAGE, |l| l.min(PAGE)));
        if filter.limit == Some(0) {
            break Ok(());
        }
        let rows = opened.buffer.dead_letters_matching(&filter)?;
        let Some(last) = rows.last() else {
            break Ok(());
        };
        filter.after_seq = last.seq;
        left = left.map(|l| l.saturating_sub(rows.len() as u64));
        let sorted = sort(rows, args, &opened.config, pipeline.as_ref(), &mut tally);
        if let Err(err) = send(&opened, pipeline.as_mut(), sorted, &mut tally) {
            break Err(err);
        }
        // Progress for long replays; stdout keeps only the final counts.
        eprintln!(
            "replay: committed so far: replayed={} accepted={}",
            tally.replayed, tally.accepted
        );
    };
    tally.print();
    result.map(|()| ExitCode::SUCCESS)
}

/// Sorts `rows` by destination; what cannot be replayed is counted in
/// `tally.skipped` and left alone.
fn sort(
    rows: Vec<DeadLetter>,
    args: &ReplayArgs,
    config: &HostConfig,
    pipeline: Option<&Pipeline>,
    tally: &mut Tally,
) -> Sorted {
    let to_buffer = args.to_buffer;
    let mut sorted = Sorted::default();
    for d in rows {
        let payload = match d.kept {
            Kept::Payload(p) => p,
            Kept::Digest { .. } => {
                *tally.skipped.entry("skipped_digest_only").or_default() += 1;
                continue;
            }
            Kept::Nothing => {
                *tally.skipped.entry("skipped_no_payload").or_default() += 1;
                continue;
            }
        };
        match d.origin {
            // Refused by one transport: replayed to that one alone.
            Origin::Batch => sorted
                .to_buffer
                .push((d.transport, (d.seq, record(d.id, payload)))),
            Origin::Event if to_buffer => sorted
                .to_buffer
                .push((None, (d.seq, record(d.id, payload)))),
            Origin::Event => match event(&payload) {
                Some(e) => sorted.events.push((d.seq, e)),
                None => *tally.skipped.entry("skipped_unparseable").or_default() += 1,
            },
            Origin::Frame { .. } if to_buffer => {
                *tally.skipped.entry("skipped_frame_to_buffer").or_default() += 1;
            }
            Origin::Frame { input } => {
                if !pipeline.is_some_and(|p| p.has_decoder(&input)) {
                    *tally.skipped.entry("skipped_unknown_input").or_default() += 1;
                    continue;
                }
                // The content type was not kept: decoders treat it as unknown.
                let frame = KeyedFrame {
                    frame: Frame {
                        data: payload,
                        content_type: String::new(),
                        origin: frame_origin(config, &input),
                    },
                    key: Some(d.id),
                };
                sorted.frames.push((input, (d.seq, frame)));
            }
        }
    }
    sorted
}

/// Commits one page: each destination in its own transaction with the
/// removal of its rows.
fn send(
    opened: &Opened,
    pipeline: Option<&mut Pipeline>,
    sorted: Sorted,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    for (transport, rows) in group(sorted.to_buffer) {
        let (rows, records): (Vec<i64>, Vec<Record>) = rows.into_iter().unzip();
        let outcome = opened.buffer.commit(&Commit {
            records: &records,
            replayed: &rows,
            only_for: transport.as_deref(),
            ..Commit::default()
        })?;
        tally.add(
            rows.len(),
            &IngestReport {
                accepted: outcome.accepted,
                ..IngestReport::default()
            },
        );
    }
    let Some(pipeline) = pipeline else {
        return Ok(());
    };
    if !sorted.events.is_empty() {
        let (rows, events): (Vec<i64>, Vec<Event>) = sorted.events.into_iter().unzip();
        let n = rows.len();
        let report = pipeline.replay_events(events, rows)?;
        tally.add(n, &report);
    }
    for (input, frames) in group(sorted.frames) {
        let (rows, frames): (Vec<i64>, Vec<KeyedFrame>) = frames.into_iter().unzip();
        let n = rows.len();
        let report = pipeline.replay_frames(&input, frames, rows)?;
        tally.add(n, &report);
    }
    Ok(())
}

/// The pipeline as `halyard run` builds it (same plugins, same runtime
/// settings, provenance stamped), to replay through.
fn pipeline(opened: &Opened) -> anyhow::Result<Pipeline> {
    let config = &opened.config;
    let data_dir = &config.host.data_dir;
    let mut runtime = crate::plugin::Runtime::new(Some(data_dir.join("cache")))?;
    config
        .plugins
        .apply_to(&mut runtime, config.licence.fleet.as_deref());
    let mut pipeline = Pipeline::build(config, &runtime, opened.buffer.clone())?;
    let host_id = config.host.id.clone().unwrap_or_else(crate::run::hostname);
    pipeline.set_provenance(crate::provenance::Stamper::open(&host_id, data_dir)?);
    Ok(pipeline)
}

/// The `origin` input `input` gives its frames (what decoders may use as
/// a default source).
fn frame_origin(config: &HostConfig, input: &str) -> String {
    config
        .inputs
        .iter()
        .find_map(|i| match i {
            InputConfig::File { name, path, .. } if name == input => {
                Some(format!("file:{}", path.display()))
            }
            InputConfig::Http { name, .. } if name == input => Some(format!("http:{name}")),
            _ => None,
        })
        .unwrap_or_default()
}

fn record(id: [u8; 16], payload: Vec<u8>) -> Record {
    Record { id, payload }
}

/// A stored event's JSON back into an event, id included.
fn event(payload: &[u8]) -> Option<Event> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    crate::event::from_json(&value).ok()
}
