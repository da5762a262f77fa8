//! A running instance of a plugin and the sandboxed calls into it.
//!
//! Invariants:
//! - every call (including `init` and instantiation, which run guest code)
//!   ends within the plugin's wall-clock deadline, whether the guest runs
//!   or waits in a host call ([`super::deadline`]; a plugin that cannot
//!   wait gets plain calls, cut by the epoch alone: [`super::call_mode`]),
//!   and under its memory budget ([`super::limiter`]);
//! - a trap or a result that breaks the contract discards the store (a
//!   trapped store is poisoned) and the next call starts a fresh instance,
//!   which runs `init` again: guest state is soft;
//! - a call either returns one checked result per input or a [`CallError`];
//!   it never panics the host;
//! - output over a cap for *one* input (an event, a frame's events, a
//!   rewrite) is refused for that input alone and is not a trap; only a trap
//!   or a broken call (a wrong number of results) counts toward quarantine
//!   (see `plugin::output`).

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use halyard_flat::Writer;
use wasmtime::Store;
use wasmtime::component::{ComponentNamedList, Func, Lift, Lower, TypedFunc};

use super::Plugin;
use super::bindings::{Action, Event, Frame, Verdict};
use super::call_mode::{self, CallMode};
use super::contract::Contract;
use super::deadline::{self, Unfinished};
use super::engine::deadline_ticks;
use super::error::{CallError, LoadError};
use super::frames::Frames;
use super::host::HostState;
use super::output;

#[path = "instance_flat.rs"]
mod flat_calls;

#[path = "instance_detect.rs"]
mod detect_calls;
pub use detect_calls::Detected;

#[path = "instance_errors.rs"]
mod errors;

#[path = "instance_start.rs"]
mod start;
use errors::{cut_error, trap_error};

/// One live sandbox for a plugin, recreated on demand after a trap.
pub struct PluginInstance {
    plugin: Arc<Plugin>,
    live: Option<Live>,
    /// Traps (and contract breaks) since this instance handle was created.
    traps: u64,
    /// Calls made through this handle.
    calls: u64,
    /// Builds 0.2.0 batches; kept so its buffers keep their capacity.
    writer: Writer,
    /// Items (events, frames, or a poll's `max`) in the call being made:
    /// its deadline grows with them ([`super::Limits::deadline_for`]).
    items: usize,
    /// The deadline of the guest entry in progress, for its error message.
    deadline_now: Duration,
    /// The detector namespace the call being made writes to (set by the
    /// detector calls only, see `instance_detect.rs`).
    kv: Option<super::kv::KvHandle>,
}

/// A store with an instantiated, initialised component.
struct Live {
    store: Store<HostState>,
    stage: Func,
    /// The stage export as a typed function, checked once (0.2.0 calls,
    /// whose parameters own their data; see [`PluginInstance::call_cached`]).
    typed: Option<Box<dyn Any + Send + Sync>>,
    /// A detector's `tick` export.
    tick: Option<Func>,
}

impl PluginInstance {
    /// A handle for `plugin`; the sandbox is created on the first call.
    pub fn new(plugin: Arc<Plugin>) -> Self {
        let plugin_deadline = plugin.options.limits.call_deadline;
        PluginInstance {
            plugin,
            live: None,
            traps: 0,
            calls: 0,
            writer: Writer::new(),
            items: 0,
            deadline_now: plugin_deadline,
            kv: None,
        }
    }

    /// A handle whose sandbox is started now, so the first batch does not
    /// pay for instantiation and `init`. If starting fails, the first call
    /// tries again and reports it, as with [`PluginInstance::new`].
    pub fn started(plugin: Arc<Plugin>) -> Self {
        let mut instance = PluginInstance::new(plugin);
        if let Err(err) = instance.start() {
            tracing::debug!(plugin = %instance.plugin.info.name, error = %err,
                "eager start failed; the first call retries");
        }
        instance
    }

    /// The plugin this instance runs.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// Traps and contract breaks so far.
    pub fn traps(&self) -> u64 {
        self.traps
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Ends a bounded guest entry: drains the guest's output, and turns a
    /// trap or a call cut at its deadline into a [`CallError`].
    fn finish<T>(
        &self,
        store: &mut Store<HostState>,
        outcome: Result<wasmtime::Result<T>, Unfinished>,
    ) -> Result<T, CallError> {
        let result = match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(trap_error(&self.plugin, store, &err, self.deadline_now)),
            Err(unfinished) => Err(cut_error(
                &self.plugin,
                store,
                unfinished,
                self.deadline_now,
            )),
        };
        store.data_mut().end_call();
        result
    }

    fn new_store(&self) -> Store<HostState> {
        let plugin = &self.plugin;
        let state = HostState::new(
            plugin.info.name.as_str().into(),
            Arc::new(plugin.options.config.clone()),
            &plugin.options.grants,
            &plugin.options.limits,
        );
        let mut store = Store::new(plugin.pre.engine(), state);
        store.limiter(|s| &mut s.limits);
        store.set_hostcall_fuel(plugin.options.limits.max_output_bytes);
        // Instantiation runs guest code: a fresh store's deadline of 0 would
        // trap at once.
        store.set_epoch_deadline(self.deadline());
        store
    }

    fn deadline(&self) -> u64 {
        deadline_ticks(self.plugin.options.limits.call_deadline)
    }

    /// Calls the stage export with `params`; on any failure the store is
    /// dropped and the trap counted. The export's type is checked on every
    /// call: 0.1.0 parameters borrow the batch, so their typed function
    /// cannot be kept (0.2.0 calls use [`PluginInstance::call_cached`]).
    fn call<P, R>(&mut self, params: P) -> Result<R, CallError>
    where
        P: ComponentNamedList + Lower + Send + Sync,
        R: ComponentNamedList + Lift + Send + Sync + 'static,
    {
        self.call_with(params, |live| live.stage.typed::<P, R>(&live.store))
    }

    /// [`PluginInstance::call`] for owned parameters: the typed function
    /// is made (and its type checked) once per live instance, then reused.
    fn call_cached<P, R>(&mut self, params: P) -> Result<R, CallError>
    where
        P: ComponentNamedList + Lower + Send + Sync + 'static,
        R: ComponentNamedList + Lift + Send + Sync + 'static,
    {
        self.call_with(params, |live| {
            if let Some(typed) = live
                .typed
                .as_ref()
                .and_then(|t| t.downcast_ref::<TypedFunc<P, R>>())
            {
                return Ok(*typed);
            }
            let typed = live.stage.typed::<P, R>(&live.store)?;
            live.typed = Some(Box::new(typed));
            Ok(typed)
        })
    }

    fn call_with<P, R>(
        &mut self,
        params: P,
        typed: impl FnOnce(&mut Live) -> wasmtime::Result<TypedFunc<P, R>>,
    ) -> Result<R, CallError>
    where
        P: ComponentNamedList + Lower + Send + Sync,
        R: ComponentNamedList + Lift + Send + Sync + 'static,
    {
        self.calls += 1;
        if self.live.is_none() {
            self.start().map_err(|e| {
                self.traps += 1;
                match e {
                    LoadError::Start(call) => call,
                    other => CallError::Restart {
                        plugin: self.plugin.info.name.clone(),
                        message: other.to_string(),
                    },
                }
            })?;
        }
        let deadline = self.plugin.options.limits.deadline_for(self.items);
        self.deadline_now = deadline;
        let ticks = deadline_ticks(deadline);
        let Some(mut live) = self.live.take() else {
            return Err(CallError::Restart {
                plugin: self.plugin.info.name.clone(),
                message: "no instance".into(),
            });
        };
        live.store.data_mut().start_call();
        live.store.set_epoch_deadline(ticks);
        live.store.data_mut().kv = self.kv.clone().map(super::kv::KvCall::begin);
        let outcome = match typed(&mut live) {
            Ok(typed) => match self.plugin.call_mode {
                CallMode::Sync => call_mode::run(|| typed.call(&mut live.store, params)),
                CallMode::Async => {
                    deadline::run(deadline, typed.call_async(&mut live.store, params))
                }
            },
            Err(err) => Ok(Err(err)),
        };
        let kv = live.store.data_mut().kv.take();
        match self.finish(&mut live.store, outcome) {
            Ok(value) => {
                // The call returned: its writes join its batch's. A trapped
                // call's writes are dropped with the store.
                if let Some(kv) = kv {
                    kv.finish();
                }
                self.live = Some(live);
                Ok(value)
            }
            Err(error) => {
                // A trapped store is poisoned; the next call starts afresh.
                self.traps += 1;
                Err(error)
            }
        }
    }

    /// Discards the instance after a result that broke the contract for
    /// the whole call (a wrong number of results): nothing of it can be
    /// trusted, so it counts as a trap. A result that breaks a cap for one
    /// input is refused per frame or event instead (see [`super::output`]).
    fn bad_output(&mut self, message: String) -> CallError {
        self.live = None;
        self.traps += 1;
        CallError::BadOutput {
            plugin: self.plugin.info.name.clone(),
            message,
        }
    }

    /// Polls a source for at most `max` events. Events the host refuses
    /// (over a cap, or past `max`) are left out and logged; the pipeline
    /// uses [`PluginInstance::poll_checked`] to dead-letter them.
    pub fn poll(&mut self, max: u32) -> Result<Vec<Event>, CallError> {
        let polled = self.poll_checked(max)?;
        if let Some((_, reason)) = polled.refused.first() {
            tracing::warn!(plugin = %self.plugin.info.name, refused = polled.refused.len(),
                first = %reason, "source output refused by the host");
        }
        Ok(polled.events)
    }

    /// Decodes frames; one result per frame. A frame whose events break a
    /// host cap is an `Err` saying `output refused by the host: …`; the
    /// other frames of the call are kept (see
    /// [`PluginInstance::decode_checked`]).
    pub fn decode(
        &mut self,
        frames: &[Frame],
    ) -> Result<Vec<Result<Vec<Event>, String>>, CallError> {
        let results = self.decode_checked(frames)?;
        Ok(results
            .into_iter()
            .map(|r| r.map_err(output::FrameError::into_reason))
            .collect())
    }

    /// Validates events; one verdict per event. A reject reason over the
    /// string cap is cut to it; the verdict stands.
    pub fn validate(&mut self, events: &[Event]) -> Result<Vec<Verdict>, CallError> {
        self.items = events.len();
        let (mut verdicts,): (Vec<Verdict>,) = match self.plugin.contract {
            Contract::V0_1 => self.call((events,))?,
            Contract::V0_2 | Contract::V0_3 | Contract::V0_4 => {
                let batch = self.encode(events)?;
                self.call_cached((batch,))?
            }
        };
        output::check_count("verdicts", verdicts.len(), events.len())
            .map_err(|m| self.bad_output(m))?;
        output::fit_verdicts(&mut verdicts, &self.plugin.options.limits);
        Ok(verdicts)
    }

    /// Applies a privacy policy; one action per event. Rewritten events keep
    /// the id of the event they replace, whatever the guest put there. A
    /// rewrite that breaks a cap is a drop (logged); the pipeline uses
    /// [`PluginInstance::redact_checked`] to count them.
    pub fn redact(&mut self, events: &[Event]) -> Result<Vec<Action>, CallError> {
        let redacted = self.redact_checked(events)?;
        if let Some((_, reason)) = redacted.refused.first() {
            tracing::warn!(plugin = %self.plugin.info.name, refused = redacted.refused.len(),
                first = %reason, "privacy rewrites refused by the host; the events are dropped");
        }
        Ok(redacted.actions)
    }

    /// Samples events; one keep/discard decision per event.
    pub fn sample(&mut self, events: &[Event]) -> Result<Vec<bool>, CallError> {
        self.items = events.len();
        let (keep,): (Vec<bool>,) = match self.plugin.contract {
            Contract::V0_1 => self.call((events,))?,
            Contract::V0_2 | Contract::V0_3 | Contract::V0_4 => {
                let batch = self.encode(events)?;
                self.call_cached((batch,))?
            }
        };
        output::check_count("decisions", keep.len(), events.len())
            .map_err(|m| self.bad_output(m))?;
        Ok(keep)
    }

    /// Polls a source and splits its events into those within the caps and
    /// those the host refuses (over a cap, or past `max`), with the reason.
    /// Refusals are not traps: only a trap fails the call.
    pub fn poll_checked(&mut self, max: u32) -> Result<output::Polled, CallError> {
        self.items = max as usize;
        let events = match self.plugin.contract {
            Contract::V0_1 => self.call::<_, (Vec<Event>,)>((max,))?.0,
            Contract::V0_2 | Contract::V0_3 | Contract::V0_4 => self.poll_flat(max)?,
        };
        Ok(output::split_polled(
            events,
            max,
            &self.plugin.options.limits,
        ))
    }

    /// Decodes frames; one result per frame, telling the decoder's own
    /// failures ([`output::FrameError::Decoder`], its reason cut to the string cap)
    /// from frames whose events break a host cap ([`output::FrameError::Refused`]).
    /// Refusals are not traps; a wrong number of results is.
    pub fn decode_checked(
        &mut self,
        frames: &[Frame],
    ) -> Result<Vec<Result<Vec<Event>, output::FrameError>>, CallError> {
        self.decode_frames_checked(Frames::Each(frames))
    }

    /// [`PluginInstance::decode_checked`] for frames in either shape: a
    /// flat decoder gets packed frames with one copy, a 0.1.0 decoder gets
    /// them as records.
    pub fn decode_frames_checked(
        &mut self,
        frames: Frames<'_>,
    ) -> Result<Vec<Result<Vec<Event>, output::FrameError>>, CallError> {
        self.items = frames.len();
        let results = match self.plugin.contract {
            Contract::V0_1 => {
                let owned = frames.owned();
                self.call::<_, (Vec<Result<Vec<Event>, String>>,)>((&*owned,))?
                    .0
            }
            Contract::V0_2 | Contract::V0_3 | Contract::V0_4 => self.decode_flat(frames)?,
        };
        output::check_count("results", results.len(), frames.len())
            .map_err(|m| self.bad_output(m))?;
        let limits = &self.plugin.options.limits;
        Ok(results
            .into_iter()
            .map(|r| match r {
                Ok(events) => match output::check_events(&events, limits) {
                    Ok(()) => Ok(events),
                    Err(reason) => Err(output::FrameError::Refused(reason)),
                },
                Err(mut reason) => {
                    output::fit_str(&mut reason, "decode error", limits);
                    Err(output::FrameError::Decoder(reason))
                }
            })
            .collect())
    }

    /// Applies a privacy policy like [`PluginInstance::redact`], and says
    /// which rewrites the host refused (they are drops already: privacy
    /// fails closed). Refusals are not traps. An event the policy edited
    /// comes back as [`Action::Rewrite`] (a copy); the pipeline, which owns
    /// its events, uses [`PluginInstance::redact_in_place`] instead.
    pub fn redact_checked(&mut self, events: &[Event]) -> Result<output::Redacted, CallError> {
        let mut edited = events.to_vec();
        let mut redacted = self.redact_in_place(&mut edited)?;
        for ((action, after), before) in redacted.actions.iter_mut().zip(edited).zip(events) {
            if *action == Action::Keep && after != *before {
                *action = Action::Rewrite(after);
            }
        }
        Ok(redacted)
    }

    /// Applies a privacy policy to `events` in place: an edit (a 0.2.0
    /// patch) changes the event where it lies and its action is
    /// [`Action::Keep`], so a masked attribute costs its new value, not a
    /// copy of the event. Rewrites and drops are as in
    /// [`PluginInstance::redact_checked`]; an edit that breaks a cap is a
    /// refused drop like a rewrite that does. A call that fails (a trap, a
    /// broken answer) leaves `events` unchanged.
    pub fn redact_in_place(&mut self, events: &mut [Event]) -> Result<output::Redacted, CallError> {
        self.items = events.len();
        let (mut actions, mut unapplied) = match self.plugin.contract {
            Contract::V0_1 => (self.call::<_, (Vec<Action>,)>((&*events,))?.0, Vec::new()),
            Contract::V0_2 | Contract::V0_3 => self.redact_flat(events)?,
            Contract::V0_4 => self.redact_answer(events)?,
        };
        output::check_count("actions", actions.len(), events.len())
            .map_err(|m| self.bad_output(m))?;
        let mut refused = output::refuse_rewrites(&mut actions, &self.plugin.options.limits);
        if !unapplied.is_empty() {
            refused.append(&mut unapplied);
            refused.sort_by_key(|(i, _)| *i);
        }
        for (action, original) in actions.iter_mut().zip(events.iter()) {
            if let Action::Rewrite(event) = action {
                event.id = original.id;
            }
        }
        Ok(output::Redacted { actions, refused })
    }
}
