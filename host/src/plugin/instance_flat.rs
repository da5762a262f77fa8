//! The contract 0.2.0 calls of [`PluginInstance`] (and 0.4.0's privacy
//! call): the batch goes in as one flat buffer and comes back as checked
//! host `Event`s, so the rest of the instance (caps, refusals, ids) and the
//! pipeline see no difference between the contract versions.
//!
//! A buffer from the guest that breaks the layout, a wrong number of
//! results, or event counts that do not add up is a broken call (like a
//! 0.1.0 result that cannot be lifted); a privacy patch or rewrite that
//! cannot apply is refused for its event alone.

use wasmtime::Store;
use wasmtime::component::Instance;

use halyard_flat::{ActionRef, Answer};

use super::super::bindings::{Action, Event, Verdict};
use super::super::contract::Contract;
use super::super::flat::{self, Decoded, FlatAction, FrameBatch};
use super::super::frames::Frames;
use super::super::host::HostState;
use super::super::kind::PluginKind;
use super::super::output;
use super::{CallError, PluginInstance};

/// Checks a 0.2.0 (or 0.4.0) stage export's exact signature.
pub(super) fn check_stage_type(
    contract: Contract,
    kind: PluginKind,
    instance: &Instance,
    store: &mut Store<HostState>,
) -> wasmtime::Result<()> {
    let name = kind.stage_export();
    match kind {
        PluginKind::Privacy if contract == Contract::V0_4 => instance
            .get_typed_func::<(Vec<u8>,), (Vec<u8>,)>(store, name)
            .map(drop),
        PluginKind::Source => instance
            .get_typed_func::<(u32,), (Vec<u8>,)>(store, name)
            .map(drop),
        PluginKind::Decoder => instance
            .get_typed_func::<(FrameBatch,), (Decoded,)>(store, name)
            .map(drop),
        PluginKind::Validator => instance
            .get_typed_func::<(Vec<u8>,), (Vec<Verdict>,)>(store, name)
            .map(drop),
        PluginKind::Privacy => instance
            .get_typed_func::<(Vec<u8>,), (Vec<FlatAction>,)>(store, name)
            .map(drop),
        PluginKind::Sampler => instance
            .get_typed_func::<(Vec<u8>,), (Vec<bool>,)>(store, name)
            .map(drop),
        // A detector is contract 0.3.0 (see `instance_detect.rs`).
        PluginKind::Detector => Ok(()),
    }
}

impl PluginInstance {
    /// `events` as one batch for the guest.
    pub(super) fn encode(&mut self, events: &[Event]) -> Result<Vec<u8>, CallError> {
        flat::encode(&mut self.writer, events).map_err(|e| CallError::Input {
            plugin: self.plugin.info.name.clone(),
            message: e.to_string(),
        })
    }

    /// Reads a guest's batch; a malformed one breaks the call.
    pub(super) fn read(&mut self, bytes: &[u8]) -> Result<Vec<Event>, CallError> {
        flat::decode(bytes, &self.plugin.options.limits).map_err(|m| self.bad_output(m))
    }

    /// A source's poll: its batch, read.
    pub(super) fn poll_flat(&mut self, max: u32) -> Result<Vec<Event>, CallError> {
        let (bytes,): (Vec<u8>,) = self.call_cached((max,))?;
        self.read(&bytes)
    }

    /// A decode: one call per run of frames that share a content type and
    /// origin (one input's frames always do; packed frames are one run),
    /// each answer split back into one result per frame.
    pub(super) fn decode_flat(
        &mut self,
        frames: Frames<'_>,
    ) -> Result<Vec<Result<Vec<Event>, String>>, CallError> {
        let mut out = Vec::with_capacity(frames.len());
        match frames {
            Frames::Packed(packed) => {
                if packed.ends.is_empty() {
                    return Ok(out);
                }
                let batch = FrameBatch {
                    data: packed.bytes().to_vec(),
                    ends: packed
                        .ends
                        .iter()
                        .map(|&end| u32::try_from(end - packed.base))
                        .collect::<Result<_, _>>()
                        .map_err(|_| self.too_large())?,
                    content_type: packed.content_type.to_owned(),
                    origin: packed.origin.to_owned(),
                };
                self.decode_batch(batch, packed.ends.len(), &mut out)?;
            }
            Frames::Each(mut rest) => {
                while let Some(first) = rest.first() {
                    let run = rest
                        .iter()
                        .position(|f| {
                            f.content_type != first.content_type || f.origin != first.origin
                        })
                        .unwrap_or(rest.len());
                    let (group, tail) = rest.split_at(run);
                    rest = tail;
                    let mut batch = FrameBatch {
                        content_type: first.content_type.clone(),
                        origin: first.origin.clone(),
                        ..FrameBatch::default()
                    };
                    halyard_flat::frame_buffer(
                        group.iter().map(|f| f.data.as_slice()),
                        &mut batch.data,
                        &mut batch.ends,
                    )
                    .map_err(|_| self.too_large())?;
                    self.decode_batch(batch, group.len(), &mut out)?;
                }
            }
        }
        Ok(out)
    }

    /// A call whose frames do not fit the flat layout's 32-bit offsets.
    fn too_large(&self) -> CallError {
        CallError::Input {
            plugin: self.plugin.info.name.clone(),
            message: halyard_flat::LayoutError::TooLarge.to_string(),
        }
    }

    /// One decode call of `frames` frames, its answer split into `out` as
    /// one result per frame.
    fn decode_batch(
        &mut self,
        batch: FrameBatch,
        frames: usize,
        out: &mut Vec<Result<Vec<Event>, String>>,
    ) -> Result<(), CallError> {
        let (decoded,): (Decoded,) = self.call_cached((batch,))?;
        output::check_count("results", decoded.results.len(), frames)
            .map_err(|m| self.bad_output(m))?;
        let mut events = self.read(&decoded.events)?.into_iter();
        let claimed: u64 = decoded
            .results
            .iter()
            .map(|r| r.as_ref().map_or(0, |n| u64::from(*n)))
            .sum();
        if claimed != events.len() as u64 {
            return Err(self.bad_output(format!(
                "results claim {claimed} events but the batch holds {}",
                events.len()
            )));
        }
        for result in decoded.results {
            out.push(result.map(|n| events.by_ref().take(n as usize).collect()));
        }
        Ok(())
    }

    /// A privacy call that edits `events` in place: a patch is applied to
    /// its event, whose action is then [`Action::Keep`] ("keep it as it
    /// now is"); a rewrite comes back as [`Action::Rewrite`]. Also returns
    /// the events whose patch or rewrite could not apply (already drops),
    /// with the reason. Nothing is
    /// applied unless the whole answer is sound, so a broken call leaves
    /// `events` as they were.
    #[allow(clippy::type_complexity)]
    pub(super) fn redact_flat(
        &mut self,
        events: &mut [Event],
    ) -> Result<(Vec<Action>, Vec<(usize, String)>), CallError> {
        let batch = self.encode(events)?;
        let (actions,): (Vec<FlatAction>,) = self.call_cached((batch,))?;
        output::check_count("actions", actions.len(), events.len())
            .map_err(|m| self.bad_output(m))?;
        let limits = &self.plugin.options.limits;
        let mut refused = Vec::new();
        let actions = actions
            .into_iter()
            .zip(events.iter_mut())
            .enumerate()
            .map(|(i, (action, event))| {
                let outcome = match action {
                    FlatAction::Keep => return Action::Keep,
                    FlatAction::Drop => return Action::Drop,
                    FlatAction::Patch(patch) => flat::apply_patch(event, &patch, limits)
                        .and_then(|()| edited(event, limits)),
                    FlatAction::Rewrite(bytes) => {
                        flat::decode_rewrite(&bytes, limits).map(Action::Rewrite)
                    }
                };
                outcome.unwrap_or_else(|reason| {
                    refused.push((i, reason));
                    Action::Drop
                })
            })
            .collect();
        Ok((actions, refused))
    }

    /// [`PluginInstance::redact_flat`] for a 0.4.0 policy: its answer is
    /// one buffer, checked whole (layout, count, and what its strings cost
    /// against the output cap) before any edit applies, then read in place.
    #[allow(clippy::type_complexity)]
    pub(super) fn redact_answer(
        &mut self,
        events: &mut [Event],
    ) -> Result<(Vec<Action>, Vec<(usize, String)>), CallError> {
        let batch = self.encode(events)?;
        let (bytes,): (Vec<u8>,) = self.call_cached((batch,))?;
        let answer = match Answer::parse(&bytes) {
            Ok(answer) => answer,
            Err(e) => return Err(self.bad_output(e.to_string())),
        };
        output::check_count("actions", answer.len(), events.len())
            .map_err(|m| self.bad_output(m))?;
        let cap = self.plugin.options.limits.max_output_bytes as u64;
        if answer.referenced_bytes() > cap {
            return Err(self.bad_output(format!(
                "answer strings add up to {} bytes, over the {cap}-byte output cap",
                answer.referenced_bytes()
            )));
        }
        let limits = &self.plugin.options.limits;
        let mut refused = Vec::new();
        let actions = answer
            .iter()
            .zip(events.iter_mut())
            .enumerate()
            .map(|(i, (action, event))| {
                let outcome = match action {
                    ActionRef::Keep => return Action::Keep,
                    ActionRef::Drop => return Action::Drop,
                    ActionRef::Patch(edits) => {
                        flat::apply_edits(event, edits, limits).and_then(|()| edited(event, limits))
                    }
                    ActionRef::Rewrite(bytes) => {
                        flat::decode_rewrite(bytes, limits).map(Action::Rewrite)
                    }
                };
                outcome.unwrap_or_else(|reason| {
                    refused.push((i, reason));
                    Action::Drop
                })
            })
            .collect();
        Ok((actions, refused))
    }
}

/// An event a patch edited in place: kept as it now is, unless it broke a
/// per-event cap (then refused like a rewrite that does).
fn edited(event: &Event, limits: &super::super::limits::Limits) -> Result<Action, String> {
    output::check_event(event, limits)
        .map(|()| Action::Keep)
        .map_err(|r| format!("rewrite {r}"))
}
