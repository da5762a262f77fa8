//! `halyard keygen`, `halyard license issue|inspect` and `halyard verify`:
//! the offline trust tools for vendors, operators and receivers, built on
//! `halyard-trust`. Plugin and manifest signing live in [`super::sign_cmd`].
//!
//! Exit codes: 0 when the thing checked is valid (or the thing made was
//! written), 1 with the reason when it is refused or an input is unusable.
//! Tokens are printed only by `license issue` (its whole purpose) and never
//! echoed by `license inspect`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use halyard_trust::licence::{self, Claims, Features, HostIdentity, Scope};
use halyard_trust::{KeyPair, PublicKey, provenance};

/// The file name `keygen` uses when `--out` is a directory.
const DEFAULT_KEY_FILE: &str = "halyard.key";

/// Arguments of `halyard keygen`.
#[derive(Debug, Clone, clap::Args)]
pub struct KeygenArgs {
    /// Where to write the private key: a file, or an existing directory (or
    /// a path ending in `/`) to write `halyard.key` in. Missing directories
    /// are created 0700; the key is written 0600, never over an existing
    /// file. The public key goes beside it as `<key>.pub`.
    #[arg(long, value_name = "DIR|FILE")]
    pub out: PathBuf,
}

/// `halyard license …`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum LicenseCommand {
    /// Issue a signed licence token (for vendors and tests); prints the token.
    Issue(IssueArgs),
    /// Print a token's claims and verdict (never the token itself). Exit 0
    /// only if the verdict is `valid`.
    Inspect(InspectArgs),
}

/// Arguments of `halyard license issue`.
#[derive(Debug, Clone, clap::Args)]
pub struct IssueArgs {
    /// The vendor's private key file.
    #[arg(long, value_name = "KEYFILE")]
    pub key: PathBuf,
    /// Who the licence is for.
    #[arg(long)]
    pub licensee: String,
    /// Days from now until the licence expires.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=36_500))]
    pub expires_in_days: u64,
    /// A fleet whose hosts are covered (repeatable). With no --fleet and no
    /// --device, every host is covered.
    #[arg(long = "fleet", value_name = "FLEET")]
    pub fleets: Vec<String>,
    /// A host id that is covered (repeatable).
    #[arg(long = "device", value_name = "HOST_ID")]
    pub devices: Vec<String>,
    /// Plugin kinds allowed, comma-separated (default: all).
    #[arg(long, value_delimiter = ',', value_name = "KIND,...")]
    pub kinds: Option<Vec<String>>,
    /// Most plugins loaded at once (default: no limit).
    #[arg(long, value_name = "N")]
    pub max_plugins: Option<u32>,
    /// Grace period when the licence server is unreachable (default: the
    /// host's, 72 h).
    #[arg(long, value_name = "HOURS")]
    pub grace_hours: Option<u32>,
}

/// Arguments of `halyard license inspect`.
#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    /// The token, `@FILE` to read it from a file, or `-` for stdin (keeps it
    /// out of shell history and `ps`).
    pub token: String,
    /// The vendor's public key to verify against: `ed25519:<base64>` or a
    /// `.pub` file (repeatable). Without it the claims are shown unverified.
    #[arg(long = "pubkey", value_name = "PUBKEY")]
    pub pubkeys: Vec<String>,
    /// Also check the scope for this host id.
    #[arg(long, value_name = "HOST_ID")]
    pub host_id: Option<String>,
    /// The host's fleet, with --host-id.
    #[arg(long, requires = "host_id")]
    pub fleet: Option<String>,
}

/// Arguments of `halyard verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyBatchArgs {
    /// A stored batch body, byte for byte as it was sent.
    #[arg(long, value_name = "FILE")]
    pub batch: PathBuf,
    /// The batch's `X-Halyard-Signature` header value
    /// (`ed25519 keyid=… sig=…`); without it the batch counts as unsigned.
    #[arg(long, value_name = "HEADER")]
    pub signature: Option<String>,
    /// A known host public key: `ed25519:<base64>` or a `.pub` file
    /// (repeatable).
    #[arg(long = "trusted", value_name = "PUBKEY", required = true)]
    pub trusted: Vec<String>,
}

/// `halyard keygen`: writes the key pair, prints the public key on stdout.
pub fn keygen(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    let path = if args.out.is_dir() || args.out.as_os_str().to_string_lossy().ends_with('/') {
        args.out.join(DEFAULT_KEY_FILE)
    } else {
        args.out.clone()
    };
    let key = KeyPair::generate()?;
    key.save(&path)?;
    let public = key.public_key();
    let pub_path = pub_path(&path);
    std::fs::write(&pub_path, format!("{public}\n"))
        .with_context(|| format!("writing {}", pub_path.display()))?;
    eprintln!("private key: {} (mode 0600)", path.display());
    eprintln!("public key:  {}", pub_path.display());
    eprintln!("key id:      {}", key.key_id());
    println!("{public}");
    Ok(ExitCode::SUCCESS)
}

/// `halyard license issue`: prints the token (and nothing else) on stdout.
pub fn license_issue(args: &IssueArgs) -> anyhow::Result<ExitCode> {
    let key = KeyPair::load(&args.key)?;
    let now = unix_now()?;
    let claims = Claims {
        licensee: args.licensee.clone(),
        scope: Scope {
            fleets: args.fleets.clone(),
            devices: args.devices.clone(),
        },
        issued_at: now,
        expires_at: now.saturating_add(args.expires_in_days.saturating_mul(86_400)),
        features: Features {
            plugin_kinds: args.kinds.clone(),
            max_plugins: args.max_plugins,
        },
        grace_hours: args.grace_hours,
    };
    let token = licence::issue(&claims, &key);
    eprintln!(
        "licence for {:?}, expires {}, signed by key {}",
        claims.licensee,
        utc(claims.expires_at),
        key.key_id()
    );
    println!("{}", token.expose());
    Ok(ExitCode::SUCCESS)
}

/// `halyard license inspect`: the claims and the verdict.
pub fn license_inspect(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let token = read_token(&args.token)?;
    let trusted = parse_keys(&args.pubkeys)?;
    let host = args.host_id.as_ref().map(|id| HostIdentity {
        host_id: id.clone(),
        fleet: args.fleet.clone(),
    });
    let now = unix_now()?;
    let mut out = std::io::stdout().lock();
    let claims = match licence::decode_unverified(token.expose()) {
        Ok(claims) => claims,
        Err(err) => {
            writeln!(out, "verdict:      invalid: {err}")?;
            return Ok(ExitCode::from(1));
        }
    };
    write_claims(&mut out, &claims)?;
    let verdict = if trusted.is_empty() {
        Err("unverified (no --pubkey given)".to_owned())
    } else {
        licence::verify_signature(token.expose(), &trusted)
            .and_then(|claims| claims.check(host.as_ref(), now))
            .map_err(|err| match err {
                licence::LicenceError::Expired { .. } => format!("expired: {err}"),
                _ => format!("invalid: {err}"),
            })
    };
    match verdict {
        Ok(()) => {
            writeln!(out, "verdict:      valid")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            writeln!(out, "verdict:      {why}")?;
            Ok(ExitCode::from(1))
        }
    }
}

/// `halyard verify`: checks a stored batch's signature offline.
pub fn verify_batch(args: &VerifyBatchArgs) -> anyhow::Result<ExitCode> {
    let trusted = parse_keys(&args.trusted)?;
    let body =
        std::fs::read(&args.batch).with_context(|| format!("reading {}", args.batch.display()))?;
    println!("batch:    {}", args.batch.display());
    match provenance::verify_batch(&body, args.signature.as_deref(), &trusted) {
        Ok(host_key) => {
            println!("verdict:  valid signature by host key {host_key}");
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            println!("verdict:  refused: {err}");
            Ok(ExitCode::from(1))
        }
    }
}

fn write_claims(out: &mut impl Write, claims: &Claims) -> std::io::Result<()> {
    let list = |items: &[String]| items.join(", ");
    writeln!(out, "licensee:     {}", claims.licensee)?;
    let scope = &claims.scope;
    if scope.is_any() {
        writeln!(out, "scope:        any host")?;
    } else {
        writeln!(
            out,
            "scope:        fleets [{}] devices [{}]",
            list(&scope.fleets),
            list(&scope.devices)
        )?;
    }
    writeln!(out, "issued_at:    {}", utc(claims.issued_at))?;
    writeln!(out, "expires_at:   {}", utc(claims.expires_at))?;
    match &claims.features.plugin_kinds {
        Some(kinds) => writeln!(out, "plugin kinds: {}", list(kinds))?,
        None => writeln!(out, "plugin kinds: all")?,
    }
    match claims.features.max_plugins {
        Some(n) => writeln!(out, "max plugins:  {n}")?,
        None => writeln!(out, "max plugins:  no limit")?,
    }
    match claims.grace_hours {
        Some(h) => writeln!(out, "grace:        {h} h"),
        None => writeln!(out, "grace:        host default"),
    }
}

/// Parses each key as `ed25519:…` text or as a file holding that text.
pub(super) fn parse_keys(args: &[String]) -> anyhow::Result<Vec<PublicKey>> {
    args.iter()
        .map(|arg| {
            if arg.starts_with(halyard_trust::keys::PUBLIC_KEY_PREFIX) {
                return Ok(arg.parse()?);
            }
            let text = std::fs::read_to_string(arg).with_context(|| {
                format!("{arg:?} is neither ed25519:<base64> nor a readable .pub file")
            })?;
            Ok(text.trim().parse()?)
        })
        .collect()
}

/// A token from the argument, `@FILE` or `-` (stdin).
fn read_token(arg: &str) -> anyhow::Result<licence::Token> {
    let text = if arg == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?
    } else {
        arg.to_owned()
    };
    Ok(licence::Token::new(text))
}

/// `dir/name.key` → `dir/name.key.pub`.
fn pub_path(key: &Path) -> PathBuf {
    let mut name = key.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Writes `path` via a temporary file and a rename, so a reader never sees
/// half a signature file.
pub(super) fn write_replacing(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

pub(super) fn unix_now() -> anyhow::Result<u64> {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => Ok(d.as_secs()),
        Err(_) => bail!("the system clock is before 1970"),
    }
}

/// `1795000000` → `1795000000 (2026-11-18T11:06:40Z)`.
pub(super) fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{secs} ({year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z)",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "0 (1970-01-01T00:00:00Z)");
        assert_eq!(utc(951_782_400), "951782400 (2000-02-29T00:00:00Z)");
        assert_eq!(utc(1_795_000_000), "1795000000 (2026-11-18T11:06:40Z)");
    }
}
