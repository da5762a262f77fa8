//! `halyard config check`: everything `halyard run` would refuse at start,
//! found without starting anything.
//!
//! The config is parsed and checked as `run` parses it; the licence token
//! and its vendor keys are verified as `run` verifies them (same host id,
//! same data directory with its renewed token and saved licence history,
//! same clock), and the state `run` would be in is printed
//! (`licence: valid`, `licence: grace: …`, `licence: expired since …`);
//! then the licence's features are
//! checked against the configured plugins; every plugin is loaded with the
//! runtime settings `run` uses ([`PluginsSection::apply_to`]) and the same
//! call `run`'s pipeline build makes — its kind, config, grants and limits
//! from [`plugin_options`], its `info` and `init` run in a probe instance.
//! Nothing is bound, opened for writing or sent; only the compile cache is
//! written.
//!
//! Unlike `run`, which stops at the first refusal, every problem is
//! reported, each cause once, and the exit code is 1 if there was any.
//!
//! [`PluginsSection::apply_to`]: crate::config::PluginsSection::apply_to
//! [`plugin_options`]: crate::pipeline::plugin_options

use std::path::PathBuf;
use std::process::ExitCode;

use super::{RuntimeArgs, describe_error};
use crate::config::HostConfig;
use crate::pipeline::{PipelineError, plugin_options};

/// Arguments of `halyard config check`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigCheckArgs {
    /// The config file.
    pub file: PathBuf,
    /// Only parse and check the file: load no plugin, verify no licence.
    #[arg(long)]
    pub syntax_only: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// `halyard config check`: prints the resolved config (secrets masked) and
/// exits 0 if `run` would start with it; else prints every problem on
/// stderr and exits 1.
pub fn check(args: &ConfigCheckArgs) -> anyhow::Result<ExitCode> {
    let config = match HostConfig::load(&args.file) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {}", describe_error(&err));
            return Ok(ExitCode::from(1));
        }
    };
    let mut problems = Vec::new();
    let mut plugins = 0;
    if !args.syntax_only {
        problems.extend(licence_problems(&config));
        problems.extend(input_problems(&config));
        let (loaded, refused) = plugin_problems(&config, &args.runtime)?;
        plugins = loaded;
        problems.extend(refused);
    }
    if problems.is_empty() {
        print!("{}", config.to_masked_toml());
        if !args.syntax_only {
            eprintln!(
                "config ok: {plugins} plugin(s) loaded and started; `halyard run` would start"
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    eprintln!(
        "{} problem(s): `halyard run` would refuse this config",
        problems.len()
    );
    Ok(ExitCode::from(1))
}

/// What `run` would refuse about an input before it runs: an mqtt input's
/// CA file that is missing or holds no certificate.
fn input_problems(config: &HostConfig) -> Vec<String> {
    config
        .inputs
        .iter()
        .filter_map(|input| match input {
            crate::config::InputConfig::Mqtt(mqtt) => crate::run::check_mqtt_tls(mqtt)
                .err()
                .map(|err| format!("input `{}`: {err}", mqtt.name)),
            _ => None,
        })
        .collect()
}

/// What `run` would say about the licence: no token, a token that does not
/// verify, a bad vendor key, plugins outside the licensed features.
fn licence_problems(config: &HostConfig) -> Vec<String> {
    if halyard_trust::licence::dev_mode_from_env() {
        eprintln!(
            "note: {} is set: the licence is not checked, as `halyard run` would not check it",
            crate::licence::DEV_MODE_ENV
        );
        return Vec::new();
    }
    let host_id = config.host.id.clone().unwrap_or_else(crate::run::hostname);
    let data_dir = &config.host.data_dir;
    // The saved history, read (never written) with the host key's public
    // half; without a host key this is a first start.
    let store = halyard_trust::KeyPair::load(&data_dir.join(crate::provenance::HOST_KEY_FILE))
        .ok()
        .map(|key| {
            crate::licence::persist::StateStore::read_only(
                data_dir,
                &host_id,
                key.public_key(),
                last_reported(config),
            )
        });
    let licence = match crate::licence::Licence::start_with(
        &config.licence,
        &host_id,
        data_dir,
        crate::licence::system_clock(),
        None,
        store,
    ) {
        Ok(licence) => licence,
        Err(err) => return vec![describe_error(&err)],
    };
    eprintln!("licence: {}", licence.verdict());
    match licence.check_plugins(config) {
        Ok(()) => Vec::new(),
        Err(err) => vec![describe_error(&crate::licence::LicenceStartError::from(
            err,
        ))],
    }
}

/// When usage was last reported (the last successful heartbeat), read from
/// the buffer file without writing it; `None` if there is none or it is in
/// use by a running host.
fn last_reported(config: &HostConfig) -> Option<u64> {
    halyard_buffer::last_usage_report(
        &crate::run::buffer_config(config, &config.host.data_dir).path,
    )
}

/// Loads every configured plugin as `run`'s pipeline build does; returns
/// how many loaded and why the others were refused.
fn plugin_problems(
    config: &HostConfig,
    args: &RuntimeArgs,
) -> anyhow::Result<(usize, Vec<String>)> {
    let mut runtime = crate::plugin::Runtime::new(args.cache_dir())?;
    config
        .plugins
        .apply_to(&mut runtime, config.licence.fleet.as_deref());
    if let Some(mb) = args.max_file_mb {
        runtime.set_max_file_bytes(mb << 20);
    }
    let mut loaded = 0;
    let mut refused = Vec::new();
    for target in crate::reload::swap::targets(config) {
        let r = &target.plugin;
        if target.key.kind == crate::plugin::PluginKind::Detector
            && let Err(err) = crate::pipeline::tick_ms(&target.role, r)
        {
            refused.push(err.to_string());
            continue;
        }
        match runtime.load(&r.plugin, Some(target.key.kind), plugin_options(r)) {
            Ok(plugin) => {
                loaded += 1;
                eprintln!(
                    "ok: {} plugin {}: {} {} {}",
                    target.role,
                    r.plugin.display(),
                    plugin.kind,
                    plugin.info.name,
                    plugin.info.version
                );
            }
            Err(source) => refused.push(describe_error(&PipelineError::Plugin {
                role: target.role.clone(),
                path: r.plugin.display().to_string(),
                source: Box::new(source),
            })),
        }
    }
    Ok((loaded, refused))
}
