//! Building the pipeline from the config: every plugin loaded and checked
//! against its kind (or a native stand-in), placed in its stage.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use halyard_buffer::Buffer;

use super::stage::StageSeed;
use super::{
    Chains, DetectorStage, IngestReport, NativeStages, Pipeline, PipelineError, QuarantinePolicy,
    Stage, tick_ms,
};
use crate::config::{HostConfig, InputPlugin, PluginRef};
use crate::plugin::{Grants, KvNamespace, Limits, PluginKind, PluginOptions, Runtime};

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
        Self::build_from(config, runtime, buffer, natives, None)
    }

    /// Another pipeline worker for `leader` (built from the same config
    /// with [`Pipeline::build_with`]): every plugin stage starts its own
    /// instance of the plugin `leader` already loaded, instead of loading
    /// the file again, and the worker then [follows](Pipeline::follow) the
    /// leader. Native stages are built afresh from `natives`.
    pub fn build_follower(
        config: &HostConfig,
        runtime: &Runtime,
        buffer: Arc<Buffer>,
        natives: &NativeStages,
        leader: &Pipeline,
    ) -> Result<Pipeline, PipelineError> {
        let mut pipeline = Self::build_from(config, runtime, buffer, natives, Some(leader))?;
        pipeline.follow(leader);
        Ok(pipeline)
    }

    /// Builds the pipeline; with a `leader`, a stage the leader holds at
    /// the same place is a replica of it rather than a fresh load.
    fn build_from(
        config: &HostConfig,
        runtime: &Runtime,
        buffer: Arc<Buffer>,
        natives: &NativeStages,
        leader: Option<&Pipeline>,
    ) -> Result<Pipeline, PipelineError> {
        let policy = QuarantinePolicy {
            threshold: config.stages.quarantine_after_traps.max(1),
            window: Duration::from_secs(config.stages.quarantine_window_s),
        };
        let load = |role: String, r: &PluginRef, kind: PluginKind, lead: Option<&Stage>| {
            if let Some(factory) = natives.get(&r.plugin, kind) {
                let options = plugin_options(r);
                let name = r
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("native:{}", r.plugin.display()));
                return Ok(Stage::native(name, factory(&options.config), policy));
            }
            if let Some(replica) = lead.and_then(|stage| stage.seed().replica()) {
                return Ok(replica);
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
            let name = input.name();
            match input.plugin() {
                None => {}
                Some(InputPlugin::Source(source)) => {
                    let lead = leader.and_then(|l| l.sources.get(sources.len()).map(|(_, s)| s));
                    sources.push((
                        name.to_string(),
                        load(
                            format!("input {name} source"),
                            source,
                            PluginKind::Source,
                            lead,
                        )?,
                    ));
                }
                Some(InputPlugin::Decoder(decoder)) => {
                    let stage = load(
                        format!("input {name} decoder"),
                        decoder,
                        PluginKind::Decoder,
                        leader.and_then(|l| l.decoders.get(name)),
                    )?;
                    decoders.insert(name.to_string(), stage);
                }
            }
        }
        let chain = |refs: &[PluginRef], what: &str, kind, leads: Option<&Vec<Stage>>| {
            refs.iter()
                .enumerate()
                .map(|(i, r)| {
                    load(
                        format!("{what}[{i}]"),
                        r,
                        kind,
                        leads.and_then(|l| l.get(i)),
                    )
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let mut detectors = Vec::new();
        for (i, r) in config.stages.detect.iter().enumerate() {
            let role = format!("stages.detect[{i}]");
            // Detectors run in one worker only (their kv namespace is one
            // per host): never a replica.
            let stage = load(role.clone(), r, PluginKind::Detector, None)?;
            // One namespace per detector name: a hot swap keeps it.
            let entries = buffer.kv_entries(&stage.name)?;
            let kv = KvNamespace::new(stage.name.clone(), config.stages.kv_max_bytes, entries);
            let tick_ms = tick_ms(&role, r)?;
            detectors.push(DetectorStage::new(stage, kv, tick_ms));
        }
        let chains = Chains {
            validators: chain(
                &config.stages.validate,
                "stages.validate",
                PluginKind::Validator,
                leader.map(|l| &l.chains.validators),
            )?,
            detectors,
            privacy: chain(
                &config.stages.privacy,
                "stages.privacy",
                PluginKind::Privacy,
                leader.map(|l| &l.chains.privacy),
            )?,
            samplers: chain(
                &config.stages.sample,
                "stages.sample",
                PluginKind::Sampler,
                leader.map(|l| &l.chains.samplers),
            )?,
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
            trace: None,
        })
    }
}

impl Pipeline {
    /// Makes this pipeline (built from the same config as `leader`, for
    /// another pipeline worker) share with `leader` what must be one per
    /// host: each stage's trap window, quarantine, version and `/plugins`
    /// entry, the provenance counter, the tap, usage and the registrar.
    /// Its plugin instances, counters and totals stay its own.
    pub fn follow(&mut self, leader: &Pipeline) {
        for (name, stage) in &mut self.decoders {
            if let Some(lead) = leader.decoders.get(name) {
                stage.share_health(lead);
            }
        }
        for ((_, stage), (_, lead)) in self.sources.iter_mut().zip(&leader.sources) {
            stage.share_health(lead);
        }
        let chains = &mut self.chains;
        for (mine, theirs) in [
            (&mut chains.validators, &leader.chains.validators),
            (&mut chains.privacy, &leader.chains.privacy),
            (&mut chains.samplers, &leader.chains.samplers),
        ] {
            for (stage, lead) in mine.iter_mut().zip(theirs) {
                stage.share_health(lead);
            }
        }
        self.tap = leader.tap.clone();
        self.stamper = leader.stamper.clone();
        // Its own window, never the leader's: a commit stores and takes
        // everything its window holds, which must be this pipeline's alone.
        self.usage = leader
            .usage
            .as_ref()
            .map(|_| Arc::new(halyard_trust::usage::UsageWindow::new()));
        self.registrar = leader.registrar.clone();
    }

    /// Makes every stage follow a swap, rollback or unload that another
    /// worker applied (call between batches, so no batch is split across
    /// versions).
    pub fn sync_stages(&mut self) {
        for (_, _, stage) in self.stages_with_roles() {
            stage.sync();
        }
    }

    /// Handles on the chain stages, for [`Pipeline::rechain_like`].
    pub fn chain_seeds(&self) -> ChainSeeds {
        let seeds = |chain: &[Stage]| chain.iter().map(Stage::seed).collect();
        ChainSeeds {
            validators: seeds(&self.chains.validators),
            privacy: seeds(&self.chains.privacy),
            samplers: seeds(&self.chains.samplers),
        }
    }

    /// Rebuilds the chains to match the first worker's after a config
    /// reload (it applied the plan; call between batches): a stage both
    /// have is kept with its instance and counters, one only it has gets a
    /// fresh instance sharing its health, the rest are dropped.
    pub fn rechain_like(&mut self, seeds: &ChainSeeds) {
        let mut old = std::mem::take(&mut self.chains);
        // A config reload does not change the detectors (a restart does).
        self.chains.detectors = std::mem::take(&mut old.detectors);
        let follow = |old: Vec<Stage>, seeds: &[StageSeed]| {
            let mut old: Vec<Option<Stage>> = old.into_iter().map(Some).collect();
            seeds
                .iter()
                .filter_map(|seed| {
                    let kept = old
                        .iter_mut()
                        .find(|o| o.as_ref().is_some_and(|o| o.is(seed)))
                        .and_then(Option::take);
                    kept.or_else(|| seed.replica())
                })
                .collect::<Vec<_>>()
        };
        self.chains.validators = follow(old.validators, &seeds.validators);
        self.chains.privacy = follow(old.privacy, &seeds.privacy);
        self.chains.samplers = follow(old.samplers, &seeds.samplers);
        self.sync_stages();
    }
}

/// The first worker's chain stages after a config reload, for the other
/// workers to follow ([`Pipeline::rechain_like`]).
pub struct ChainSeeds {
    validators: Vec<StageSeed>,
    privacy: Vec<StageSeed>,
    samplers: Vec<StageSeed>,
}

/// The plugin options a config entry asks for.
pub fn plugin_options(r: &PluginRef) -> PluginOptions {
    let mut limits = Limits::default();
    if let Some(ms) = r.limits.deadline_ms {
        limits.call_deadline = Duration::from_millis(ms);
    }
    if let Some(us) = r.limits.deadline_per_event_us {
        limits.per_item_deadline = Duration::from_micros(us);
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
