//! `halyard audit`: prints the host's audit trail (`data_dir/audit.db`,
//! see [`crate::audit`]), filtered by time and kind. Works on a running
//! host (the file is in WAL mode and opened read-only) and on a stopped
//! one.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;

use crate::audit::{AuditFilter, AuditRow, AuditStore, FILE_NAME};
use crate::config::HostConfig;

/// Arguments of `halyard audit`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("where").required(true).args(["config", "data_dir"])))]
pub struct AuditArgs {
    /// The host config file (TOML): its `[host] data_dir` holds the trail.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The host's data directory, instead of `--config`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Only events at or after this time: RFC 3339
    /// (`2026-12-01T02:00:00Z`) or an age (`90s`, `15m`, `2h`, `7d`).
    #[arg(long, value_parser = parse_since)]
    pub since: Option<i64>,
    /// Only this kind (`plugin.loaded`), or a family without the dot
    /// (`plugin`, `breaker`, `licence`, `config`, `buffer`, `host`).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only the newest N events (still printed oldest first).
    #[arg(long)]
    pub limit: Option<u64>,
    /// One JSON object per line (the lifecycle wire shape plus `seq`).
    #[arg(long)]
    pub json: bool,
}

/// Runs `halyard audit`.
pub fn audit(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let data_dir = match (&args.data_dir, &args.config) {
        (Some(dir), _) => dir.clone(),
        (None, Some(config)) => data_dir_of(config)?,
        (None, None) => anyhow::bail!("give --config or --data-dir"),
    };
    let store = AuditStore::open_read(&data_dir.join(FILE_NAME))?;
    let rows = store.query(&AuditFilter {
        since_ms: args.since,
        kind: args.kind.clone(),
        limit: args.limit,
    })?;
    let evicted = store.evicted()?;
    let mut out = String::new();
    if args.json {
        for row in &rows {
            out.push_str(&serde_json::to_string(row).context("encoding a row")?);
            out.push('\n');
        }
    } else {
        out.push_str(&human(&rows));
    }
    print!("{out}");
    if !args.json && rows.is_empty() {
        eprintln!("no audit events match");
    }
    if evicted > 0 {
        eprintln!("note: {evicted} older events were evicted from the trail ([audit] max_rows)");
    }
    Ok(ExitCode::SUCCESS)
}

/// The `data_dir` of the config at `path`. A config the host would refuse
/// (the moment an operator most wants the trail: a reload was just
/// refused) is still read for its `[host] data_dir` alone, with a note.
fn data_dir_of(path: &std::path::Path) -> anyhow::Result<PathBuf> {
    let err = match HostConfig::load(path) {
        Ok(config) => return Ok(config.host.data_dir),
        Err(err) => super::describe_error(&err),
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|_| anyhow::anyhow!(err.clone()))
        .context("config")?;
    let dir = match table.get("host").and_then(|h| h.get("data_dir")) {
        None => HostConfig::default_data_dir(),
        Some(toml::Value::String(dir)) => PathBuf::from(dir),
        Some(_) => anyhow::bail!("config: {err}"),
    };
    eprintln!(
        "note: the config has errors ({err}); reading the trail in {}",
        dir.display()
    );
    Ok(dir)
}

/// Rows as aligned text, one per line: seq, time, kind, correlation id,
/// payload (JSON).
fn human(rows: &[AuditRow]) -> String {
    let kind_width = rows
        .iter()
        .map(|r| r.event.kind.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!(
        "{:>6}  {:<24}  {:<kind_width$}  {:<16}  DETAILS\n",
        "SEQ", "TIME", "KIND", "CORRELATION"
    );
    for r in rows {
        let e = &r.event;
        out.push_str(&format!(
            "{:>6}  {:<24}  {:<kind_width$}  {:<16}  {}\n",
            r.seq, e.ts, e.kind, e.correlation_id, e.payload
        ));
    }
    out
}

/// `--since`: RFC 3339, or an age before now.
fn parse_since(text: &str) -> Result<i64, String> {
    let at = match humantime::parse_duration(text) {
        Ok(age) => SystemTime::now()
            .checked_sub(age)
            .unwrap_or(UNIX_EPOCH + Duration::ZERO),
        Err(_) => humantime::parse_rfc3339_weak(text).map_err(|_| {
            format!("`{text}` is neither an RFC 3339 time (2026-12-01T02:00:00Z) nor an age (15m)")
        })?,
    };
    Ok(at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_times_and_ages() {
        assert_eq!(
            parse_since("2023-11-14T22:13:20.123Z"),
            Ok(1_700_000_000_123)
        );
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let ago = parse_since("15m").unwrap();
        assert!((now - 15 * 60_000 - ago).abs() < 5_000, "{ago} vs {now}");
        assert!(parse_since("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
