//! Building the pipeline from the config: every plugin loaded and checked
//! against its kind (or a native stand-in), placed in its stage.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use halyard_buffer::Buffer;

use super::{Chains, IngestReport, NativeStages, Pipeline, PipelineError, QuarantinePolicy, Stage};
use crate::config::{HostConfig, InputConfig, PluginRef};
use crate::plugin::{Grants, Limits, PluginKind, PluginOptions, Runtime};

impl Pipeline {
    /// Loads every plugin the config names and checks it against its kind;
    /// the first refusal stops the build with the reason.
    pub fn build(
        config: &HostConfig,
        runtime: &Runtime,
        buffer: Arc<Buffer>,
    ) -> Result<Pipeline, PipelineError> {
        Self::build_with(config, runtime, buffer, &NativeStages::default())
    }

    /// Like [`Pipeline::build`], but a plugin path registered in `natives`
    /// runs that native code instead of loading the file (for baselines).
    pub fn build_with(
        config: &HostConfig,
        runtime: &Runtime,
        buffer: Arc<Buffer>,
        natives: &NativeStages,
    ) -> Result<Pipeline, PipelineError> {
        let policy = QuarantinePolicy {
            threshold: config.stages.quarantine_after_traps.max(1),
            window: Duration::from_secs(config.stages.quarantine_window_s),
        };
        let load = |role: String, r: &PluginRef, kind: PluginKind| {
            if let Some(factory) = natives.get(&r.plugin, kind) {
                let options = plugin_options(r);
                let name = r
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("native:{}", r.plugin.display()));
                return Ok(Stage::native(name, factory(&options.config), policy));
            }
            let plugin = runtime
                .load(&r.plugin, Some(kind), plugin_options(r))
                .map_err(|source| PipelineError::Plugin {
                    role: role.clone(),
                    path: r.plugin.display().to_string(),
                    source: Box::new(source),
                })?;
            let name = r.name.clone().unwrap_or_else(|| plugin.info.name.clone());
            Ok::<_, PipelineError>(Stage::new(name, &plugin, policy))
        };
        let mut decoders = HashMap::new();
        let mut sources = Vec::new();
        for input in &config.inputs {
            match input {
                InputConfig::Source { name, source, .. } => {
                    sources.push((
                        name.clone(),
                        load(format!("input {name} source"), source, PluginKind::Source)?,
                    ));
                }
                InputConfig::File { name, decoder, .. }
                | InputConfig::Http { name, decoder, .. } => {
                    let stage = load(
                        format!("input {name} decoder"),
                        decoder,
                        PluginKind::Decoder,
                    )?;
                    decoders.insert(name.clone(), stage);
                }
                InputConfig::Mqtt(mqtt) => {
                    let name = &mqtt.name;
                    let stage = load(
                        format!("input {name} decoder"),
                        &mqtt.decoder,
                        PluginKind::Decoder,
                    )?;
                    decoders.insert(name.clone(), stage);
                }
            }
        }
        let chain = |refs: &[PluginRef], what: &str, kind| {
            refs.iter()
                .enumerate()
                .map(|(i, r)| load(format!("{what}[{i}]"), r, kind))
                .collect::<Result<Vec<_>, _>>()
        };
        let chains = Chains {
            validators: chain(
                &config.stages.validate,
                "stages.validate",
                PluginKind::Validator,
            )?,
            privacy: chain(
                &config.stages.privacy,
                "stages.privacy",
                PluginKind::Privacy,
            )?,
            samplers: chain(&config.stages.sample, "stages.sample", PluginKind::Sampler)?,
        };
        Ok(Pipeline {
            decoders,
            sources,
            chains,
            buffer,
            admission: Default::default(),
            totals: IngestReport::default(),
            tap: None,
            stamper: None,
            usage: None,
            traps_counted: HashMap::new(),
            quarantine: policy,
            registrar: None,
            dead_letter_frames: config.buffer.dead_letter_frames,
        })
    }
}

/// The plugin options a config entry asks for.
pub fn plugin_options(r: &PluginRef) -> PluginOptions {
    let mut limits = Limits::default();
    if let Some(ms) = r.limits.deadline_ms {
        limits.call_deadline = Duration::from_millis(ms);
    }
    if let Some(mb) = r.limits.memory_mb {
        limits.memory_bytes = mb.saturating_mul(1 << 20);
    }
    if let Some(n) = r.limits.max_instances {
        limits.max_instances = n;
    }
    if let Some(n) = r.limits.max_memories {
        limits.max_memories = n;
    }
    if let Some(n) = r.limits.max_tables {
        limits.max_tables = n;
    }
    if let Some(n) = r.limits.max_resources {
        limits.max_resources = n;
    }
    PluginOptions {
        config: r
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
        grants: Grants {
            env: r.grants.env.clone(),
            read_dirs: r.grants.read_dirs.clone(),
            network: r.grants.network.0.clone(),
        },
        limits,
    }
}
