//! Which version of the `halyard:plugin` contract a component implements.
//!
//! The versions share world and export names; they differ in the stage
//! export's signature (0.2.0 moves batches as one flat buffer, see
//! [`super::flat`]; 0.4.0 also answers a privacy call with one). So the
//! version is read off the stage export's type before anything is
//! instantiated, and [`super::instance`] checks the exact signature when it
//! starts. Only a detector is told by its kind (it exists in 0.3.0 alone).

use std::fmt;

use wasmtime::Engine;
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Component, Type};

use super::kind::PluginKind;

/// A version of the WIT package a component was built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Contract {
    /// `halyard:plugin@0.1.0`: `list<event>` batches.
    V0_1,
    /// `halyard:plugin@0.2.0`: flat batches (`list<u8>`), privacy patches,
    /// many frames per decoder call.
    V0_2,
    /// `halyard:plugin@0.3.0`: the `detector` world and the `kv` import
    /// (flat batches in and out).
    V0_3,
    /// `halyard:plugin@0.4.0`: a `privacy` world whose answer is one flat
    /// buffer (`halyard_flat::Answer`).
    V0_4,
}

impl Contract {
    /// The package version, as `plugin check` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Contract::V0_1 => "halyard:plugin@0.1.0",
            Contract::V0_2 => "halyard:plugin@0.2.0",
            Contract::V0_3 => "halyard:plugin@0.3.0",
            Contract::V0_4 => "halyard:plugin@0.4.0",
        }
    }

    /// The version `component`'s stage export for `kind` was built
    /// against. A signature of neither version reads as 0.1.0, whose exact
    /// check then refuses it with wasmtime's account of the mismatch.
    pub fn detect(engine: &Engine, component: &Component, kind: PluginKind) -> Contract {
        // Only 0.3.0 has the detector world.
        if kind == PluginKind::Detector {
            return Contract::V0_3;
        }
        let ty = component.component_type();
        let stage = ty
            .exports(engine)
            .find(|(name, _)| *name == kind.stage_export())
            .and_then(|(_, item)| match item.ty {
                ComponentItem::ComponentFunc(f) => Some(f),
                _ => None,
            });
        match stage {
            // Only 0.4.0's privacy answer is a byte list.
            Some(f) if kind == PluginKind::Privacy && returns_bytes(&f) => Contract::V0_4,
            Some(f) if is_flat(&f, kind) => Contract::V0_2,
            _ => Contract::V0_1,
        }
    }
}

impl fmt::Display for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_bytes(t: &Type) -> bool {
    matches!(t, Type::List(l) if l.ty() == Type::U8)
}

/// Whether a function's (first) result is `list<u8>`.
fn returns_bytes(f: &ComponentFunc) -> bool {
    f.results().next().is_some_and(|t| is_bytes(&t))
}

/// Whether a stage function has the 0.2.0 shape: a source returns
/// `list<u8>`, a decoder takes a record (`frame-batch`), the others take
/// `list<u8>`.
fn is_flat(f: &ComponentFunc, kind: PluginKind) -> bool {
    let bytes = is_bytes;
    match kind {
        PluginKind::Source => returns_bytes(f),
        PluginKind::Decoder => f
            .params()
            .next()
            .is_some_and(|(_, t)| matches!(t, Type::Record(_))),
        _ => f.params().next().is_some_and(|(_, t)| bytes(&t)),
    }
}
