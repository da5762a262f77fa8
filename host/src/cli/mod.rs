//! The `halyard` command line. This is the binary's edge: the only place
//! that uses `anyhow`, prints to the terminal and chooses exit codes.

mod plugin_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use plugin_cmd::{CheckArgs, RunArgs};

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
    /// Tools for plugin authors: check a component, run it over a file.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Tools for the host config file.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `halyard config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file and print it resolved (variables substituted,
    /// defaults filled in) with secrets masked. Exit 0 if valid, 1 if not.
    Check {
        /// The config file.
        file: PathBuf,
    },
}

/// `halyard plugin …`
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Check that a component is a valid plugin; print its kind, name,
    /// version, imports and exports. Exit 0 if valid, 1 with the reason if not.
    Check(CheckArgs),
    /// Run a plugin over a file offline and print the outcome per event (or
    /// per frame, for decoders) as JSON lines.
    Run(RunArgs),
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
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    init_logging();
    match cli.command {
        Command::Plugin(PluginCommand::Check(args)) => plugin_cmd::check(&args),
        Command::Plugin(PluginCommand::Run(args)) => plugin_cmd::run(&args),
        Command::Config(ConfigCommand::Check { file }) => config_check(&file),
    }
}

/// `halyard config check`: the resolved config, masked, or the error.
fn config_check(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    match crate::config::HostConfig::load(file) {
        Ok(config) => {
            print!("{}", config.to_masked_toml());
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("error: {err}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Logs to stderr so stdout stays machine-readable; `RUST_LOG` sets levels.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
