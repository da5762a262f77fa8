//! `halyard deadletter list | show | replay | purge`: what the host gave up
//! on, why, and sending it back once the cause is fixed.
//!
//! The commands open the buffer named by the config, so they work on a
//! **stopped** host: the running host holds the buffer file locked
//! (exclusive SQLite locking), and a second writer would break its
//! leases. Against a running host they wait out SQLite's 5 s busy timeout,
//! then fail with "the host is running …; stop it first" and exit 1.
//!
//! Selection, shared by every command: `--reason` (rows whose reason
//! starts with the text), `--id` (event ids, repeatable) and `--limit`
//! (the oldest N rows). Output is bounded: `list` prints at most
//! [`MAX_GROUPS`] reasons, `show` at most `--limit` rows (default 20) and
//! `--max-bytes` of each payload.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use halyard_buffer::{Buffer, BufferError, DeadLetter, DeadLetterFilter, Kept, Origin};

use crate::config::HostConfig;

mod replay;

/// The most reasons `list` prints; the rest are counted in one line.
pub const MAX_GROUPS: usize = 50;

/// `halyard deadletter …`
#[derive(Debug, clap::Subcommand)]
pub enum DeadletterCommand {
    /// Dead letters grouped by reason: count, bytes, oldest and newest.
    List(SelectArgs),
    /// Print dead letters: row, event id, origin, reason, time, and the
    /// payload (as text when it is UTF-8), bounded.
    Show(ShowArgs),
    /// Send dead letters back: events through the stage chains, frames
    /// through their input's decoder (or every event straight into the
    /// buffer with `--to-buffer`); each row leaves the table in the
    /// transaction that stores its new outcome.
    Replay(ReplayArgs),
    /// Delete dead letters (by `--reason`, `--id`, or `--all`).
    Purge(PurgeArgs),
}

/// Which dead letters: the config whose buffer holds them, and filters.
#[derive(Debug, Clone, clap::Args)]
pub struct SelectArgs {
    /// The host config file (TOML): its `[buffer]` is the one read.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Only dead letters whose reason starts with this text.
    #[arg(long)]
    pub reason: Option<String>,
    /// Only dead letters with this event id (32 hex digits; repeatable).
    #[arg(long = "id", value_name = "HEX", value_parser = parse_id)]
    pub ids: Vec<[u8; 16]>,
    /// At most this many dead letters, oldest first.
    #[arg(long)]
    pub limit: Option<u64>,
}

/// Arguments of `deadletter show`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// The most payload bytes printed per dead letter.
    #[arg(long, default_value_t = 2048)]
    pub max_bytes: usize,
}

/// Arguments of `deadletter replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Store the events straight in the buffer, skipping the stages (for a
    /// receiver that refused them and has been fixed). Frames cannot go
    /// there: they are not events yet.
    #[arg(long)]
    pub to_buffer: bool,
}

/// Arguments of `deadletter purge`.
#[derive(Debug, Clone, clap::Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Delete every dead letter (required when neither `--reason` nor
    /// `--id` is given, so a bare `purge` deletes nothing by accident).
    #[arg(long)]
    pub all: bool,
}

/// Runs one `deadletter` command.
pub fn run(command: &DeadletterCommand) -> anyhow::Result<ExitCode> {
    match command {
        DeadletterCommand::List(args) => list(args),
        DeadletterCommand::Show(args) => show(args),
        DeadletterCommand::Replay(args) => replay::replay(args),
        DeadletterCommand::Purge(args) => purge(args),
    }
}

impl SelectArgs {
    fn filter(&self) -> DeadLetterFilter {
        DeadLetterFilter {
            reason: self.reason.clone(),
            ids: self.ids.clone(),
            limit: self.limit,
            ..DeadLetterFilter::default()
        }
    }
}

/// The config and its buffer, opened for the commands.
struct Opened {
    config: HostConfig,
    buffer: Arc<Buffer>,
}

/// Loads the config and opens its buffer; `None` (after saying so) when
/// the buffer file does not exist yet: nothing was ever dead-lettered.
fn open(config: &Path) -> anyhow::Result<Option<Opened>> {
    let config = HostConfig::load(config)
        .map_err(|e| anyhow::anyhow!(super::describe_error(&e)))
        .context("config")?;
    let settings = crate::run::buffer_config(&config, &config.host.data_dir);
    if !settings.path.exists() {
        println!("no buffer at {}: no dead letters", settings.path.display());
        return Ok(None);
    }
    let path = settings.path.clone();
    let buffer = match Buffer::open(settings) {
        Ok((buffer, _)) => buffer,
        Err(BufferError::InUse { .. }) => anyhow::bail!(
            "the host is running (buffer {} is locked); stop it first: the dead-letter \
             commands work on a stopped host's buffer",
            path.display()
        ),
        Err(err) => return Err(err).context("cannot open the buffer"),
    };
    Ok(Some(Opened {
        config,
        buffer: Arc::new(buffer),
    }))
}

fn list(args: &SelectArgs) -> anyhow::Result<ExitCode> {
    let Some(opened) = open(&args.config)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let groups = opened.buffer.dead_letter_summary(&args.filter())?;
    let now = now_ms();
    let (mut count, mut bytes) = (0u64, 0u64);
    for (i, g) in groups.iter().enumerate() {
        count += g.count;
        bytes += g.bytes;
        if i < MAX_GROUPS {
            println!(
                "count={} bytes={} oldest={} newest={} reason={}",
                g.count,
                g.bytes,
                age(now, g.oldest_unix_ms),
                age(now, g.newest_unix_ms),
                printable(&g.reason)
            );
        }
    }
    if let Some(rest) = groups.get(MAX_GROUPS..) {
        println!(
            "more: reasons={} dead_letters={} (narrow with --reason)",
            rest.len(),
            rest.iter().map(|g| g.count).sum::<u64>()
        );
    }
    let stats = opened.buffer.stats();
    println!(
        "total: dead_letters={count} bytes={bytes} reasons={} (table: dead_letters={} bytes={} max_bytes={})",
        groups.len(),
        stats.dead_letters,
        stats.dead_letter_bytes,
        opened.buffer.config().dead_letter_max_bytes,
    );
    Ok(ExitCode::SUCCESS)
}

fn show(args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let Some(opened) = open(&args.select.config)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut filter = args.select.filter();
    filter.limit = Some(filter.limit.unwrap_or(20));
    let now = now_ms();
    let rows = opened.buffer.dead_letters_matching(&filter)?;
    for d in &rows {
        print_one(d, now, args.max_bytes);
    }
    println!("shown={}", rows.len());
    Ok(ExitCode::SUCCESS)
}

fn print_one(d: &DeadLetter, now: i64, max_bytes: usize) {
    let origin = match &d.origin {
        Origin::Frame { input } => format!("frame input={}", printable(input)),
        other => other.as_str().to_string(),
    };
    println!(
        "#{} id={} origin={origin} at={} ({}) size={}",
        d.seq,
        hex::encode(d.id),
        d.at_unix_ms,
        age(now, d.at_unix_ms),
        d.size
    );
    if let Some(transport) = &d.transport {
        println!("  refused by transport: {}", printable(transport));
    }
    println!("  reason: {}", printable(&d.reason));
    match &d.kept {
        Kept::Payload(p) => {
            let shown = &p[..p.len().min(max_bytes)];
            let more = if p.len() > shown.len() {
                format!(" … ({} of {} bytes)", shown.len(), p.len())
            } else {
                String::new()
            };
            match std::str::from_utf8(shown) {
                Ok(text) => println!("  payload: {}{more}", printable(text)),
                Err(_) => println!("  payload (hex): {}{more}", hex::encode(shown)),
            }
        }
        Kept::Digest { len, sha256 } => println!(
            "  not kept (an undecoded frame): len={len} sha256={}",
            hex::encode(sha256)
        ),
        Kept::Nothing => println!("  not kept: the privacy stages drop this event"),
    }
}

fn purge(args: &PurgeArgs) -> anyhow::Result<ExitCode> {
    let s = &args.select;
    if !args.all && s.reason.is_none() && s.ids.is_empty() {
        anyhow::bail!("purge needs --reason, --id or --all");
    }
    let Some(opened) = open(&s.config)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let purged = opened.buffer.purge_dead_letters(&s.filter())?;
    println!("purged={purged}");
    Ok(ExitCode::SUCCESS)
}

/// Text with control characters escaped, so a reason or payload cannot
/// move the terminal's cursor or forge output lines.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

fn age(now: i64, at: i64) -> String {
    format!("{}s_ago", (now - at).max(0) / 1000)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn parse_id(s: &str) -> Result<[u8; 16], String> {
    let mut id = [0u8; 16];
    hex::decode_to_slice(s.trim(), &mut id)
        .map_err(|_| format!("`{s}` is not an event id (32 hex digits)"))?;
    Ok(id)
}

/// Groups `(key, value)` pairs by key, keeping the order within a key.
fn group<K: Ord, V>(pairs: impl IntoIterator<Item = (K, V)>) -> BTreeMap<K, Vec<V>> {
    let mut out = BTreeMap::<K, Vec<V>>::new();
    for (k, v) in pairs {
        out.entry(k).or_default().push(v);
    }
    out
}
