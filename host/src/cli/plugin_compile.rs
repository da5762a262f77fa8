//! `halyard plugin compile`: a component compiled ahead of time for a
//! device's architecture, optionally signed in the same step. A host built
//! without the compiler (`--no-default-features`, README "A host without
//! the compiler") runs only such artefacts, and only with a signature by a
//! trusted key: they are native code.

use std::path::PathBuf;
use std::process::ExitCode;

use super::RuntimeArgs;
use crate::plugin::PluginKind;

/// Arguments of `halyard plugin compile`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompileArgs {
    /// The component (`.wasm`) to compile.
    pub file: PathBuf,
    /// The device's target triple (`aarch64-unknown-linux-gnu`,
    /// `x86_64-unknown-linux-gnu`); default: this machine's architecture.
    /// Only the architecture's baseline CPU features are used.
    #[arg(long)]
    pub target: Option<String>,
    /// Where to write the artefact; default: FILE with `.cwasm` (the same
    /// name, so config entries and signatures keep it).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Sign the artefact with this private key (from `halyard keygen`):
    /// writes `OUT.sig`, for the component's name, kind and version.
    #[arg(long, value_name = "KEYFILE")]
    pub key: Option<PathBuf>,
    /// The kind to sign for. Default: what the component's exports
    /// implement (the component is loaded here to ask).
    #[arg(long, requires = "key")]
    pub kind: Option<PluginKind>,
    /// The version to sign for. Default: what the component's `info`
    /// reports.
    #[arg(long, requires = "key")]
    pub version: Option<String>,
    /// Only hosts of this fleet accept the signature.
    #[arg(long, requires = "key")]
    pub fleet: Option<String>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Runs `halyard plugin compile`.
#[cfg(feature = "compiler")]
pub fn compile(args: &CompileArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    use halyard_trust::plugin_sig::{self, Subject};

    let bytes =
        crate::plugin::file::read_regular(&args.file, crate::plugin::file::DEFAULT_MAX_FILE_BYTES)?;
    if crate::plugin::load::check_header(&args.file, &bytes)?
        != crate::plugin::PluginFormat::Component
    {
        anyhow::bail!("{} is already a precompiled plugin", args.file.display());
    }
    // What it will be signed as: asked of the component itself, as the
    // device will when it loads the artefact.
    let subject = match &args.key {
        None => None,
        Some(_) => {
            let (kind, version) = match (args.kind, &args.version) {
                (Some(kind), Some(version)) => (kind.to_string(), version.clone()),
                _ => {
                    let runtime = args.runtime.runtime()?;
                    let plugin = runtime
                        .load_bytes(args.file.clone(), &bytes, args.kind, Default::default())
                        .with_context(|| {
                            format!(
                                "{} does not load here, so its kind and version are unknown \
                                 (give --kind and --version)",
                                args.file.display()
                            )
                        })?;
                    (
                        plugin.kind.to_string(),
                        args.version
                            .clone()
                            .unwrap_or_else(|| plugin.info.version.clone()),
                    )
                }
            };
            Some((kind, version))
        }
    };
    let started = std::time::Instant::now();
    let artefact = crate::plugin::precompile_for(&bytes, args.target.as_deref())
        .with_context(|| format!("compiling {}", args.file.display()))?;
    let took = started.elapsed();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.file.with_extension("cwasm"));
    super::trust_cmd::write_replacing(&out, &artefact)?;
    println!("file:     {}", args.file.display());
    println!(
        "target:   {}",
        args.target
            .as_deref()
            .unwrap_or("this machine's architecture")
    );
    println!(
        "out:      {} ({} bytes, {} ms)",
        out.display(),
        artefact.len(),
        took.as_millis()
    );
    println!("sha256:   {}", halyard_trust::sha256_hex(&artefact));
    if let (Some(key_file), Some((kind, version))) = (&args.key, subject) {
        let key = halyard_trust::KeyPair::load(key_file)?;
        let subject = Subject {
            name: super::sign_cmd::stem(&out)?,
            kind,
            version,
            fleet: args.fleet.clone(),
        };
        let signature = plugin_sig::sign(&artefact, &subject, &key)?;
        let sig_path = plugin_sig::sig_path(&out);
        super::trust_cmd::write_replacing(&sig_path, signature.to_json().as_bytes())?;
        println!(
            "signed:   {} {} {} by key {}",
            signature.name, signature.kind, signature.version, signature.key_id
        );
        println!("signature: {}", sig_path.display());
    } else {
        println!("unsigned: a host loads it only with a signature by a trusted key (--key)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Without the compiler there is nothing to compile with.
#[cfg(not(feature = "compiler"))]
pub fn compile(_args: &CompileArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!(
        "this halyard was built without the compiler (--no-default-features); run \
         `halyard plugin compile` on a full build"
    )
}
