//! The one `bindgen!` of the `halyard:plugin` WIT package.
//!
//! Every other module uses these types, so there is exactly one Rust `Event`
//! in the host. Only the imports-only world is generated: it yields the shared
//! types and the host traits for `log`, `clock` and `config`. The stage exports
//! of each world are called as typed functions over these same types (see
//! [`super::instance`]), which is why no world-specific bindings exist.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "host-imports",
    additional_derives: [PartialEq],
});

pub use halyard::plugin::types::{
    Action, AttrValue, Attribute, Event, EventId, Frame, InitError, PluginInfo, Verdict,
};
