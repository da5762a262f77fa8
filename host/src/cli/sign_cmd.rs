//! `halyard plugin sign|verify|sign-manifest`: signing what a host may
//! install. A plugin signature binds the component's name (the file name
//! it is installed under), kind, version and content (and a fleet, if
//! given); a manifest signature binds the whole manifest with its serial
//! and expiry. See `halyard_trust::plugin_sig` and
//! `halyard_trust::manifest`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use halyard_trust::plugin_sig::{self, Subject};
use halyard_trust::{KeyPair, manifest};

use super::RuntimeArgs;
use super::trust_cmd::{parse_keys, unix_now, utc, write_replacing};
use crate::plugin::{PluginKind, PluginOptions};

/// Longest manifest validity `sign-manifest` accepts: a year.
const MAX_MANIFEST_SECS: u64 = 366 * 86_400;

/// Arguments of `halyard plugin sign`.
#[derive(Debug, Clone, clap::Args)]
pub struct SignArgs {
    /// The component to sign; the signature is written to `FILE.sig`.
    pub file: PathBuf,
    /// The signer's private key file (from `halyard keygen`).
    #[arg(long, value_name = "KEYFILE")]
    pub key: PathBuf,
    /// The name it will be installed under (the file name without `.wasm`;
    /// in a rollout manifest, the entry's `name`). Default: this file's.
    #[arg(long)]
    pub name: Option<String>,
    /// Its kind. Default: what its exports implement.
    #[arg(long)]
    pub kind: Option<PluginKind>,
    /// Its version. Default: what its `info` reports (it must report this).
    #[arg(long)]
    pub version: Option<String>,
    /// Only hosts of this fleet (`[licence] fleet`) accept the signature.
    /// Default: every host.
    #[arg(long)]
    pub fleet: Option<String>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Arguments of `halyard plugin verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyPluginArgs {
    /// The component; its signature is read from `FILE.sig`, and must be
    /// for this file's name.
    pub file: PathBuf,
    /// A trusted public key: `ed25519:<base64>` or a `.pub` file
    /// (repeatable).
    #[arg(long = "trusted", value_name = "PUBKEY", required = true)]
    pub trusted: Vec<String>,
    /// The kind it must be signed for.
    #[arg(long)]
    pub kind: Option<PluginKind>,
    /// The host's fleet, for a fleet-scoped signature.
    #[arg(long)]
    pub fleet: Option<String>,
}

/// Arguments of `halyard plugin sign-manifest`.
#[derive(Debug, Clone, clap::Args)]
pub struct SignManifestArgs {
    /// The manifest JSON to sign: `{"plugins": [...]}`; its `serial` and
    /// `expires_at` are set from the options.
    pub manifest: PathBuf,
    /// The signer's private key file (one of the hosts' `trusted_keys`).
    #[arg(long, value_name = "KEYFILE")]
    pub key: PathBuf,
    /// Must be higher than every serial the hosts accepted before (a
    /// timestamp works); hosts refuse lower ones.
    #[arg(long)]
    pub serial: u64,
    /// Seconds from now until hosts refuse the manifest (at most a year).
    #[arg(long, value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..=MAX_MANIFEST_SECS))]
    pub expires_in_s: u64,
    /// Where to write the signed manifest (what `[rollout] manifest_url`
    /// serves).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `halyard plugin sign`: writes `FILE.sig`.
pub fn sign(args: &SignArgs) -> anyhow::Result<ExitCode> {
    let key = KeyPair::load(&args.key)?;
    // The same checks as loading: a regular file within the default cap.
    let bytes =
        crate::plugin::file::read_regular(&args.file, crate::plugin::file::DEFAULT_MAX_FILE_BYTES)?;
    let name = match &args.name {
        Some(name) => name.clone(),
        None => stem(&args.file)?,
    };
    let (kind, version) = match (args.kind, &args.version) {
        (Some(kind), Some(version)) => (kind.to_string(), version.clone()),
        _ => {
            // Ask the component itself, as the host will when it loads it.
            let runtime = args.runtime.runtime()?;
            let plugin = runtime
                .load_bytes(args.file.clone(), &bytes, args.kind, PluginOptions::default())
                .with_context(|| {
                    format!(
                        "{} does not load, so its kind and version are unknown (give --kind and --version)",
                        args.file.display()
                    )
                })?;
            if let Some(v) = args.version.as_ref().filter(|v| **v != plugin.info.version) {
                bail!(
                    "--version {v:?}, but the component reports version {:?}: the host would refuse it",
                    plugin.info.version
                );
            }
            (plugin.kind.to_string(), plugin.info.version.clone())
        }
    };
    let subject = Subject {
        name,
        kind,
        version,
        fleet: args.fleet.clone(),
    };
    let signature = plugin_sig::sign(&bytes, &subject, &key)?;
    let sig_path = plugin_sig::sig_path(&args.file);
    write_replacing(&sig_path, signature.to_json().as_bytes())?;
    println!("file:     {}", args.file.display());
    println!("name:     {}", signature.name);
    println!("kind:     {}", signature.kind);
    println!("version:  {}", signature.version);
    if let Some(fleet) = &signature.fleet {
        println!("fleet:    {fleet}");
    }
    println!("sha256:   {}", signature.sha256);
    println!("key id:   {}", signature.key_id);
    println!("signature: {}", sig_path.display());
    Ok(ExitCode::SUCCESS)
}

/// `halyard plugin verify`: exit 0 if signed by a trusted key for this
/// file's name (and `--kind`, `--fleet`).
pub fn verify_plugin(args: &VerifyPluginArgs) -> anyhow::Result<ExitCode> {
    let trusted = parse_keys(&args.trusted)?;
    println!("file:     {}", args.file.display());
    let max = crate::plugin::file::DEFAULT_MAX_FILE_BYTES;
    let kind = args.kind.map(|k| k.to_string());
    match plugin_sig::verify_file(
        &args.file,
        kind.as_deref(),
        args.fleet.as_deref(),
        &trusted,
        max,
        crate::plugin::file::read_for_trust,
    ) {
        Ok((bytes, sig)) => {
            println!("sha256:   {}", halyard_trust::sha256_hex(&bytes));
            println!("signed:   {} {} {}", sig.name, sig.kind, sig.version);
            println!("verdict:  valid signature by trusted key {}", sig.key_id);
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            println!("verdict:  refused: {err}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `halyard plugin sign-manifest`: writes the signed envelope.
pub fn sign_manifest(args: &SignManifestArgs) -> anyhow::Result<ExitCode> {
    let key = KeyPair::load(&args.key)?;
    let text = crate::plugin::file::read_regular(&args.manifest, 1 << 20)?;
    let mut doc: serde_json::Value = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not JSON", args.manifest.display()))?;
    let Some(fields) = doc.as_object_mut() else {
        bail!("{} is not a JSON object", args.manifest.display());
    };
    if !fields
        .get("plugins")
        .is_some_and(serde_json::Value::is_array)
    {
        bail!("{} has no \"plugins\" list", args.manifest.display());
    }
    let expires_at = unix_now()?.saturating_add(args.expires_in_s);
    fields.insert("serial".into(), args.serial.into());
    fields.insert("expires_at".into(), expires_at.into());
    let payload = serde_json::to_vec_pretty(&doc)?;
    let envelope = manifest::seal(&payload, &key)?;
    write_replacing(&args.out, envelope.to_json().as_bytes())?;
    println!("manifest: {}", args.out.display());
    println!("serial:   {}", args.serial);
    println!("expires:  {}", utc(expires_at));
    println!("key id:   {}", envelope.key_id);
    Ok(ExitCode::SUCCESS)
}

/// The file name without `.wasm`: the name a component is installed under.
pub(super) fn stem(file: &Path) -> anyhow::Result<String> {
    file.file_stem()
        .and_then(|s| s.to_str())
        .map(str::to_owned)
        .with_context(|| format!("{} has no file name: give --name", file.display()))
}
