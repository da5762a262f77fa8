//! Starting a sandbox: instantiation with `info`, the check of the stage
//! export's type against the plugin's kind, and `init`, each under the
//! call deadline; a transient host error while instantiating is retried
//! (see `plugin::transient`).

use std::time::Duration;

use wasmtime::Store;
use wasmtime::component::{Func, Instance};

use super::super::bindings::{Action, Event, Frame, InitError, PluginInfo, Verdict};
use super::super::call_mode::{self, CallMode};
use super::super::contract::Contract;
use super::super::deadline::{self, Unfinished};
use super::super::error::{CallError, LoadError};
use super::super::host::HostState;
use super::super::output;
use super::super::transient;
use super::{Live, PluginInstance};

impl PluginInstance {
    /// Starts the sandbox now and returns what the plugin says about itself;
    /// the loader uses it to refuse plugins whose `init` fails.
    ///
    /// Instantiation (which runs the guest's start functions) with `info`,
    /// and then `init`, each run under the call deadline (see
    /// [`super::deadline`]).
    pub(crate) fn start(&mut self) -> Result<PluginInfo, LoadError> {
        let deadline = self.plugin.options.limits.call_deadline;
        self.deadline_now = deadline;
        // A host resource blip while instantiating (see `transient`) gets
        // a fresh store and another try; a guest fault does not.
        let mut tries = 1;
        let (mut store, started) = loop {
            let mut store = self.new_store();
            let started = self.instantiate(&mut store, deadline);
            if let Ok(Err(err)) = &started
                && transient::is_transient(err)
                && let Some(pause) = transient::pause_after(tries)
            {
                tracing::debug!(plugin = %self.plugin.info.name, error = %err,
                    "instantiation hit a transient host error; retrying");
                std::thread::sleep(pause);
                tries += 1;
                continue;
            }
            break (store, started);
        };
        let (instance, info) = self.finish(&mut store, started).map_err(LoadError::Start)?;
        let Some(info) = info else {
            let err = instance
                .get_typed_func::<(), (PluginInfo,)>(&mut store, "info")
                .err()
                .unwrap_or_else(|| wasmtime::Error::msg("no `info` export"));
            return Err(self.export_type_error("info", &err));
        };
        let limits = &self.plugin.options.limits;
        output::check_str(&info.name, "plugin name", limits)
            .and_then(|()| output::check_str(&info.version, "plugin version", limits))
            .map_err(|message| {
                LoadError::Start(CallError::BadOutput {
                    plugin: self.plugin.info.name.clone(),
                    message,
                })
            })?;
        self.check_stage_type(&instance, &mut store)?;
        let stage = self.init(&instance, &mut store)?;
        let tick = (self.plugin.kind == super::super::kind::PluginKind::Detector)
            .then(|| instance.get_func(&mut store, "tick"))
            .flatten();
        self.live = Some(Live {
            store,
            stage,
            typed: None,
            tick,
        });
        Ok(info)
    }

    /// Instantiates the plugin in `store` (running the guest's start
    /// functions) and calls `info`, under the call deadline.
    fn instantiate(
        &self,
        store: &mut Store<HostState>,
        deadline: Duration,
    ) -> Result<wasmtime::Result<(Instance, Option<PluginInfo>)>, Unfinished> {
        let pre = self.plugin.pre.clone();
        match self.plugin.call_mode {
            CallMode::Sync => call_mode::run(|| {
                let instance = pre.instantiate(&mut *store)?;
                let info_fn = instance.get_typed_func::<(), (PluginInfo,)>(&mut *store, "info");
                let info = match info_fn {
                    Ok(f) => Some(f.call(&mut *store, ())?.0),
                    Err(_) => None,
                };
                Ok::<_, wasmtime::Error>((instance, info))
            }),
            CallMode::Async => deadline::run(deadline, async {
                let instance = pre.instantiate_async(&mut *store).await?;
                let info_fn = instance.get_typed_func::<(), (PluginInfo,)>(&mut *store, "info");
                let info = match info_fn {
                    Ok(f) => Some(f.call_async(&mut *store, ()).await?.0),
                    Err(_) => None,
                };
                Ok::<_, wasmtime::Error>((instance, info))
            }),
        }
    }

    /// Runs `init` and returns the stage export, or why the plugin refused.
    fn init(&self, instance: &Instance, store: &mut Store<HostState>) -> Result<Func, LoadError> {
        let init = instance
            .get_typed_func::<(), (Result<(), InitError>,)>(&mut *store, "init")
            .map_err(|e| self.export_type_error("init", &e))?;
        store.data_mut().start_call();
        store.set_epoch_deadline(self.deadline());
        let deadline = self.plugin.options.limits.call_deadline;
        let called = match self.plugin.call_mode {
            CallMode::Sync => call_mode::run(|| init.call(&mut *store, ())),
            CallMode::Async => deadline::run(deadline, init.call_async(&mut *store, ())),
        };
        let (result,) = self.finish(store, called).map_err(LoadError::Start)?;
        result.map_err(|e| LoadError::Init {
            key: e.key,
            message: e.message,
        })?;
        let export = self.plugin.kind.stage_export();
        instance
            .get_func(&mut *store, export)
            .ok_or(LoadError::MissingExport {
                kind: self.plugin.kind,
                export,
                required: self.plugin.kind.required_exports().join(", "),
                found: String::new(),
            })
    }

    /// Checks the stage export's signature against the WIT of the kind.
    fn check_stage_type(
        &self,
        instance: &Instance,
        store: &mut Store<HostState>,
    ) -> Result<(), LoadError> {
        use super::super::kind::PluginKind::*;
        let name = self.plugin.kind.stage_export();
        let store = &mut *store;
        if self.plugin.contract == Contract::V0_3 {
            return super::detect_calls::check_stage_type(instance, store)
                .map_err(|(export, e)| self.export_type_error(export, &e));
        }
        if matches!(self.plugin.contract, Contract::V0_2 | Contract::V0_4) {
            return super::flat_calls::check_stage_type(
                self.plugin.contract,
                self.plugin.kind,
                instance,
                store,
            )
            .map_err(|e| self.export_type_error(name, &e));
        }
        let checked = match self.plugin.kind {
            Source => instance
                .get_typed_func::<(u32,), (Vec<Event>,)>(store, name)
                .map(drop),
            Decoder => instance
                .get_typed_func::<(&[Frame],), (Vec<Result<Vec<Event>, String>>,)>(store, name)
                .map(drop),
            Validator => instance
                .get_typed_func::<(&[Event],), (Vec<Verdict>,)>(store, name)
                .map(drop),
            Privacy => instance
                .get_typed_func::<(&[Event],), (Vec<Action>,)>(store, name)
                .map(drop),
            Sampler => instance
                .get_typed_func::<(&[Event],), (Vec<bool>,)>(store, name)
                .map(drop),
            // Contract 0.3.0 only; checked above.
            Detector => Ok(()),
        };
        checked.map_err(|e| self.export_type_error(name, &e))
    }

    fn export_type_error(&self, export: &'static str, err: &wasmtime::Error) -> LoadError {
        LoadError::ExportType {
            kind: self.plugin.kind,
            export,
            message: format!("{err:#}"),
        }
    }
}
