//! The `halyard` command line. This is the binary's edge: the only place
//! that uses `anyhow`, prints to the terminal and chooses exit codes.

mod audit_cmd;
mod cases;
mod config_cmd;
mod deadletter;
mod grant_arg;
mod plugin_check;
mod plugin_cmd;
mod plugin_compile;
mod plugin_new;
mod plugin_test;
mod sign_cmd;
mod tail;
mod trust_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use audit_cmd::AuditArgs;
pub use config_cmd::ConfigCheckArgs;
pub use deadletter::{DeadletterCommand, PurgeArgs, ReplayArgs, SelectArgs, ShowArgs};
pub use plugin_check::CheckArgs;
pub use plugin_cmd::RunArgs;
pub use plugin_compile::CompileArgs;
pub use plugin_new::NewArgs;
pub use plugin_test::TestArgs;
pub use sign_cmd::{SignArgs, SignManifestArgs, VerifyPluginArgs};
pub use tail::TailArgs;
pub use trust_cmd::{InspectArgs, IssueArgs, KeygenArgs, LicenseCommand, VerifyBatchArgs};

/// Halyard: a WebAssembly-extensible telemetry host.
#[derive(Debug, Parser)]
#[command(name = "halyard", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tools for plugin authors: check a component, run it over a file, sign
    /// it and verify its signature.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Run the host: inputs → sandboxed stages → durable buffer → transport,
    /// until SIGINT or SIGTERM.
    Run {
        /// The host config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run a receiver: accepts batches from hosts, de-duplicates events by
    /// id, stores them in SQLite. What the quickstart ships to.
    Receive {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// The SQLite file to store events in.
        #[arg(long, default_value = "received.db")]
        store: PathBuf,
        /// Require this API key (also read from HALYARD_RECEIVER_API_KEY).
        #[arg(long, env = "HALYARD_RECEIVER_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        /// A known host public key (`ed25519:<base64>`, printed in the
        /// host's log at start); signed batches must verify against one
        /// (repeatable).
        #[arg(long = "trusted-keys", value_name = "PUBKEY")]
        trusted_keys: Vec<String>,
        /// Refuse unsigned batches (403).
        #[arg(long)]
        require_signatures: bool,
    },
    /// Tools for the host config file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Generate an Ed25519 key pair (plugin signing, licence issuing or a
    /// host key): private key 0600, public key printed on stdout.
    Keygen(KeygenArgs),
    /// Licence tokens: issue one (vendors, tests) or inspect one.
    #[command(subcommand)]
    License(LicenseCommand),
    /// Check a stored batch's provenance signature offline.
    Verify(VerifyBatchArgs),
    /// Follow a running host's live events (`/events/stream`): after the
    /// privacy and sampler stages, optionally with lifecycle events.
    Tail(TailArgs),
    /// What the host gave up on (validator rejects, undecodable frames,
    /// batches the receiver refused): list, show, replay after fixing the
    /// cause, or purge. Works on a stopped host's buffer.
    #[command(subcommand, name = "deadletter")]
    Deadletter(DeadletterCommand),
    /// The audit trail: what happened to the host (plugins loaded, swapped,
    /// rolled back; config reloaded or refused; licence, breaker and buffer
    /// changes), kept in `data_dir` across restarts.
    Audit(AuditArgs),
}

/// `halyard config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a config file as `halyard run` would at start: parse it, verify
    /// the licence, load and start every plugin (kind, config, grants,
    /// limits). Print it resolved (variables substituted, defaults filled
    /// in) with secrets masked if valid (exit 0); print every problem if not
    /// (exit 1).
    Check(ConfigCheckArgs),
}

/// `halyard plugin …`
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Check that a component is a valid plugin: every import with the
    /// host's verdict (allowed, granted, refused and why), every export, the
    /// cold compile time, its kind, name and version; `--bench N` measures
    /// its per-event cost. Exit 0 if valid, 1 with the reason if not.
    Check(CheckArgs),
    /// Run a plugin over a file offline and print the outcome per event (or
    /// per frame, for decoders) as JSON lines.
    Run(RunArgs),
    /// Run a plugin over the cases of an expectations file (one JSON case
    /// per line: input, config, expected outcomes); print a diff for each
    /// failing case. Exit 0 if all pass, 1 if any fails.
    Test(TestArgs),
    /// Write a new plugin project (source, WIT, build script, cases file)
    /// in Rust, JavaScript or Python, ready to build and test.
    New(NewArgs),
    /// Sign a component with a private key, for the name, kind and version
    /// it will be installed as: writes `FILE.sig`.
    Sign(SignArgs),
    /// Sign a rollout manifest with a serial and an expiry: writes the
    /// envelope `[rollout] manifest_url` serves.
    SignManifest(SignManifestArgs),
    /// Compile a component ahead of time for a device (`--target`), and
    /// sign the artefact (`--key`): what a host built without the compiler
    /// runs.
    Compile(CompileArgs),
    /// Check a component's `FILE.sig` against trusted public keys. Exit 0 if
    /// signed by one of them, 1 with the reason if not.
    Verify(VerifyPluginArgs),
}

/// Options shared by every command that loads plugins.
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeArgs {
    /// Where compiled components are cached (default: $HALYARD_CACHE_DIR,
    /// else $XDG_CACHE_HOME/halyard/components, else ~/.cache/halyard/components).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile every time; write no cache.
    #[arg(long)]
    pub no_cache: bool,
    /// The largest plugin file to read, in MiB, checked before reading it
    /// (default 64; `config check` defaults to the config's
    /// `[plugins] max_file_mb`).
    #[arg(long, value_name = "MIB",
        value_parser = clap::value_parser!(u64).range(1..=crate::config::ranges::MAX_FILE_MB))]
    pub max_file_mb: Option<u64>,
}

impl RuntimeArgs {
    /// The cache directory to use, if any.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        if let Some(dir) = &self.cache_dir {
            return Some(dir.clone());
        }
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        env("HALYARD_CACHE_DIR")
            .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("halyard/components")))
            .or_else(|| env("HOME").map(|d| d.join(".cache/halyard/components")))
    }

    /// The runtime the plugin tools load with: these cache settings and
    /// the file size cap.
    pub fn runtime(&self) -> Result<crate::plugin::Runtime, crate::plugin::LoadError> {
        let mut runtime = crate::plugin::Runtime::new(self.cache_dir())?;
        if let Some(mb) = self.max_file_mb {
            runtime.set_max_file_bytes(mb << 20);
        }
        Ok(runtime)
    }
}

/// An error and its causes on one line, each cause once.
///
/// Most errors here print their cause in their own message *and* return it
/// from `source()` (thiserror's `{source}` with a `source` field), so that
/// `to_string()` alone, which logs and lifecycle events use, is complete.
/// Printing the whole chain then repeats each cause; this skips a cause
/// whose text the line already holds.
pub fn describe<'a>(
    chain: impl IntoIterator<Item = &'a (dyn std::error::Error + 'static)>,
) -> String {
    let mut out = String::new();
    for cause in chain {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// [`describe`] for an error that is not (yet) an `anyhow::Error`.
pub fn describe_error(err: &(dyn std::error::Error + 'static)) -> String {
    describe(std::iter::successors(Some(err), |e| e.source()))
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // `halyard run` sets up logging from its config; the tools log for people.
    if !matches!(cli.command, Command::Run { .. }) {
        init_logging();
    }
    match cli.command {
        Command::Plugin(PluginCommand::Check(args)) => plugin_check::check(&args),
        Command::Plugin(PluginCommand::Run(args)) => plugin_cmd::run(&args),
        Command::Plugin(PluginCommand::Test(args)) => plugin_test::test(&args),
        Command::Plugin(PluginCommand::New(args)) => plugin_new::new(&args),
        Command::Plugin(PluginCommand::Sign(args)) => sign_cmd::sign(&args),
        Command::Plugin(PluginCommand::SignManifest(args)) => sign_cmd::sign_manifest(&args),
        Command::Plugin(PluginCommand::Verify(args)) => sign_cmd::verify_plugin(&args),
        Command::Plugin(PluginCommand::Compile(args)) => plugin_compile::compile(&args),
        Command::Keygen(args) => trust_cmd::keygen(&args),
        Command::License(LicenseCommand::Issue(args)) => trust_cmd::license_issue(&args),
        Command::License(LicenseCommand::Inspect(args)) => trust_cmd::license_inspect(&args),
        Command::Verify(args) => trust_cmd::verify_batch(&args),
        Command::Config(ConfigCommand::Check(args)) => config_cmd::check(&args),
        Command::Tail(args) => tail::tail(&args),
        Command::Deadletter(command) => deadletter::run(&command),
        Command::Audit(args) => audit_cmd::audit(&args),
        Command::Run { config } => run_host(&config),
        Command::Receive {
            listen,
            store,
            api_key,
            trusted_keys,
            require_signatures,
        } => receive(listen, store, api_key, &trusted_keys, require_signatures),
    }
}

/// `halyard run`: loads the config, runs until a signal, reports totals.
fn run_host(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = match crate::config::HostConfig::load(file) {
        Ok(config) => config,
        Err(err) => {
            init_logging();
            eprintln!("error: {}", describe_error(&err));
            return Ok(ExitCode::from(1));
        }
    };
    if let Err(err) = crate::logging::init(&config.log.level, config.log.format) {
        eprintln!("error: {err}");
        return Ok(ExitCode::from(1));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        // Handlers are installed before start-up work (licence, plugins),
        // so a SIGTERM during start-up stops the host cleanly.
        let shutdown = shutdown_signal_now();
        crate::run::run(config, shutdown).await
    })?;
    tracing::info!(
        accepted = report.ingest.accepted,
        rejected = report.ingest.rejected,
        decode_errors = report.ingest.decode_errors,
        privacy_dropped = report.ingest.privacy_dropped,
        sampled_out = report.ingest.sampled_out,
        buffer_dropped = report.ingest.buffer_dropped,
        buffer_evicted = report.ingest.buffer_evicted,
        detected = report.ingest.detected,
        detector_failures = report.ingest.detector_failures,
        delivered = report.ship.events_delivered,
        dead_lettered_batches = report.ship.batches_dead_lettered,
        dead_lettered_events = report.ship.events_dead_lettered,
        left_in_buffer = report.left_in_buffer,
        "totals"
    );
    Ok(ExitCode::SUCCESS)
}

/// `halyard receive`: serves until SIGINT or SIGTERM, then prints the counts.
fn receive(
    listen: std::net::SocketAddr,
    store: PathBuf,
    api_key: Option<String>,
    trusted_keys: &[String],
    require_signatures: bool,
) -> anyhow::Result<ExitCode> {
    let mut config = halyard_receiver::ReceiverConfig::new(listen, store.clone());
    config.api_key = api_key.filter(|k| !k.is_empty());
    config.trusted_keys = trusted_keys
        .iter()
        .map(|k| k.trim().parse())
        .collect::<Result<_, _>>()?;
    config.require_signatures = require_signatures;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let receiver = halyard_receiver::bind(config).await?;
        eprintln!(
            "halyard receive: listening on http://{}/v1/batches",
            receiver.local_addr()
        );
        receiver.run(shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    let stats = halyard_receiver::open_stats(&store)?;
    println!("{}", serde_json::to_string(&stats)?);
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the host runs until killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Like [`shutdown_signal`], but registers the handlers when called rather
/// than when first polled. Must be called inside the runtime.
fn shutdown_signal_now() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}

/// Human-readable logs on stderr (stdout stays machine-readable) for the
/// interactive commands; `RUST_LOG` sets levels.
fn init_logging() {
    // Only an invalid RUST_LOG fails here; the tools then run without logs.
    let _ = crate::logging::init("info", crate::config::LogFormat::Human);
}
