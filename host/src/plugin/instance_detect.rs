//! The contract 0.3.0 calls of [`PluginInstance`]: a detector's `detect`
//! and `tick`, each run inside a `kv` transaction on the detector's
//! namespace (see [`super::super::kv`]).
//!
//! A detector's output is new events in the flat layout. A buffer that
//! breaks the layout is a broken call (like any unreadable result); events
//! over a host cap (too many, a string too long) refuse the call's whole
//! output, which is counted but is not a trap. Either way the call's `kv`
//! writes are dropped with its output, so the store never says an alert
//! fired that was not kept.

use wasmtime::Store;
use wasmtime::component::Instance;

use super::super::bindings::Event;
use super::super::host::HostState;
use super::super::kv::{KvHandle, KvNamespace, OpenBatch};
use super::super::output;
use super::{CallError, PluginInstance};

/// Checks a detector's `detect` and `tick` signatures; on a mismatch,
/// names the export.
pub(super) fn check_stage_type(
    instance: &Instance,
    store: &mut Store<HostState>,
) -> Result<(), (&'static str, wasmtime::Error)> {
    instance
        .get_typed_func::<(Vec<u8>,), (Vec<u8>,)>(&mut *store, "detect")
        .map_err(|e| ("detect", e))?;
    instance
        .get_typed_func::<(i64,), (Vec<u8>,)>(&mut *store, "tick")
        .map_err(|e| ("tick", e))?;
    Ok(())
}

/// What a detector call gave: its new events, or why the host refused them
/// (not a trap: counted, and the batch goes on).
#[derive(Debug, Default)]
pub struct Detected {
    /// The new events, within the host's caps.
    pub events: Vec<Event>,
    /// Why the call's output was refused, if it was.
    pub refused: Option<String>,
}

impl PluginInstance {
    /// Runs a detector's `detect` on `events` with `kv` as its namespace.
    /// On `Ok` the call's `kv` writes have joined the namespace's open
    /// batch; on `Err` they are gone.
    pub fn detect(&mut self, events: &[Event], kv: &KvHandle) -> Result<Detected, CallError> {
        self.items = events.len();
        let batch = self.encode(events)?;
        let saved = KvNamespace::lock(kv).open_batch();
        self.kv = Some(kv.clone());
        let called = self.call_cached::<(Vec<u8>,), (Vec<u8>,)>((batch,));
        self.kv = None;
        let (bytes,) = called?;
        self.detected(&bytes, kv, saved)
    }

    /// Runs a detector's `tick` at `now_ns`; see [`PluginInstance::detect`].
    pub fn tick(&mut self, now_ns: i64, kv: &KvHandle) -> Result<Detected, CallError> {
        self.items = 0;
        let saved = KvNamespace::lock(kv).open_batch();
        self.kv = Some(kv.clone());
        let called = self.call_with::<(i64,), (Vec<u8>,)>((now_ns,), |live| match live.tick {
            Some(tick) => tick.typed::<(i64,), (Vec<u8>,)>(&live.store),
            None => Err(wasmtime::Error::msg("no `tick` export")),
        });
        self.kv = None;
        let (bytes,) = called?;
        self.detected(&bytes, kv, saved)
    }

    /// Reads a detector's output batch and checks it against the caps; if
    /// either fails, the call's `kv` writes are dropped (`saved` is put
    /// back).
    fn detected(
        &mut self,
        bytes: &[u8],
        kv: &KvHandle,
        saved: OpenBatch,
    ) -> Result<Detected, CallError> {
        let events = match self.read(bytes) {
            Ok(events) => events,
            Err(err) => {
                KvNamespace::lock(kv).restore_batch(saved);
                return Err(err);
            }
        };
        match output::check_events(&events, &self.plugin.options.limits) {
            Ok(()) => Ok(Detected {
                events,
                refused: None,
            }),
            Err(reason) => {
                KvNamespace::lock(kv).restore_batch(saved);
                Ok(Detected {
                    events: Vec::new(),
                    refused: Some(reason),
                })
            }
        }
    }
}
