//! The wit-bindgen output for the Halyard contract (`wit/plugin.wit`).
//!
//! Why it is laid out like this: the four shared interfaces (`types`, `log`,
//! `clock`, `config`) are generated exactly once, in [`shared`], and every
//! world maps them there with `with: {...}`. All five worlds therefore use the
//! same Rust `Event`, `Verdict`, ... types, so helpers written against them
//! work for every plugin kind.
//!
//! Each world is generated with `pub_export_macro: true`. wit-bindgen then
//! embeds only the world's *imports* in this library and puts the full
//! "imports and exports" type section into the export macro, so a guest crate
//! that exports one world does not inherit the exports of the other four.
//!
//! Plugin authors never touch this module: the `export_*!` macros of this
//! crate do. It is public only because those macros expand in guest crates.

/// The shared interfaces, generated from the imports-only `host-imports` world.
pub mod shared {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "host-imports",
        generate_all,
        additional_derives: [PartialEq],
    });
}

/// Generates one plugin world whose shared interfaces point at [`shared`].
macro_rules! world {
    ($world:literal, $macro_name:literal, $module:literal) => {
        wit_bindgen::generate!({
            path: "../../wit",
            world: $world,
            with: {
                "halyard:plugin/types@0.1.0": crate::bindings::shared::halyard::plugin::types,
                "halyard:plugin/log@0.1.0": crate::bindings::shared::halyard::plugin::log,
                "halyard:plugin/clock@0.1.0": crate::bindings::shared::halyard::plugin::clock,
                "halyard:plugin/config@0.1.0": crate::bindings::shared::halyard::plugin::config,
            },
            pub_export_macro: true,
            export_macro_name: $macro_name,
            default_bindings_module: $module,
        });
    };
}

/// The `source` world: `poll(max) -> list<event>`.
pub mod source {
    world!(
        "source",
        "export_source_world",
        "halyard_sdk::bindings::source"
    );
}

/// The `decoder` world: `decode(list<frame>) -> list<result<list<event>, string>>`.
pub mod decoder {
    world!(
        "decoder",
        "export_decoder_world",
        "halyard_sdk::bindings::decoder"
    );
}

/// The `validator` world: `validate(list<event>) -> list<verdict>`.
pub mod validator {
    world!(
        "validator",
        "export_validator_world",
        "halyard_sdk::bindings::validator"
    );
}

/// The `privacy` world: `redact(list<event>) -> list<action>`.
pub mod privacy {
    world!(
        "privacy",
        "export_privacy_world",
        "halyard_sdk::bindings::privacy"
    );
}

/// The `sampler` world: `sample(list<event>) -> list<bool>`.
pub mod sampler {
    world!(
        "sampler",
        "export_sampler_world",
        "halyard_sdk::bindings::sampler"
    );
}
