//! The wit-bindgen output for the Halyard contract: `halyard:plugin@0.2.0`
//! (`wit/0.2.0/plugin.wit`, the default), the `detector` world of
//! `halyard:plugin@0.3.0` (`wit/0.3.0/plugin.wit`), the `privacy` world of
//! `halyard:plugin@0.4.0` (`wit/0.4.0/plugin.wit`) and, with the `v0_1`
//! feature, `halyard:plugin@0.1.0` (`wit/plugin.wit`).
//!
//! Why it is laid out like this: the four shared 0.1.0 interfaces (`types`,
//! `log`, `clock`, `config`) are generated exactly once, in [`shared`], and
//! every world of both versions maps them there with `with: {...}` (a 0.2.0
//! component imports the 0.1.0 interfaces unchanged). All worlds therefore
//! use the same Rust `Event`, `Verdict`, ... types, so helpers written
//! against them work for every plugin kind and both contract versions.
//!
//! Each world is generated with `pub_export_macro: true`. wit-bindgen then
//! embeds only the world's *imports* in this library and puts the full
//! "imports and exports" type section into the export macro, so a guest crate
//! that exports one world does not inherit the exports of the other four.
//!
//! Plugin authors never touch this module: the `export_*!` macros of this
//! crate do. It is public only because those macros expand in guest crates.

// Generated code: the 0.2.0 `flat` types lower into functions with many
// flattened parameters.
#![allow(clippy::too_many_arguments)]

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
    ($path:literal, $world:literal, $macro_name:literal, $module:literal) => {
        wit_bindgen::generate!({
            path: $path,
            world: $world,
            with: {
                "halyard:plugin/types@0.1.0": crate::bindings::shared::halyard::plugin::types,
                "halyard:plugin/log@0.1.0": crate::bindings::shared::halyard::plugin::log,
                "halyard:plugin/clock@0.1.0": crate::bindings::shared::halyard::plugin::clock,
                "halyard:plugin/config@0.1.0": crate::bindings::shared::halyard::plugin::config,
            },
            additional_derives: [PartialEq],
            pub_export_macro: true,
            export_macro_name: $macro_name,
            default_bindings_module: $module,
        });
    };
}

/// The 0.2.0 `source` world: `poll(max) -> list<u8>` (an event batch).
pub mod source {
    world!(
        "../../wit/0.2.0",
        "source",
        "export_source_world",
        "halyard_sdk::bindings::source"
    );
}

/// The 0.2.0 `decoder` world: `decode(frame-batch) -> decoded`.
pub mod decoder {
    world!(
        "../../wit/0.2.0",
        "decoder",
        "export_decoder_world",
        "halyard_sdk::bindings::decoder"
    );
}

/// The 0.2.0 `validator` world: `validate(list<u8>) -> list<verdict>`.
pub mod validator {
    world!(
        "../../wit/0.2.0",
        "validator",
        "export_validator_world",
        "halyard_sdk::bindings::validator"
    );
}

/// The 0.4.0 `privacy` world: `redact(list<u8>) -> list<u8>` (an answer
/// in the `halyard-flat` answer layout).
pub mod privacy {
    world!(
        "../../wit/0.4.0",
        "privacy",
        "export_privacy_world",
        "halyard_sdk::bindings::privacy"
    );
}

/// The 0.2.0 `privacy` world: `redact(list<u8>) -> list<flat.action>`, for
/// guests that must keep that contract (`export_privacy_v0_2!`); its
/// `patch` type is also what [`crate::Edit`] holds.
pub mod privacy_v0_2 {
    // `world!` plus the `flat` interface, which here comes from a dependency
    // package and so must be named to be generated.
    wit_bindgen::generate!({
        path: "wit-v0_2",
        world: "privacy-v0-2",
        with: {
            "halyard:plugin/types@0.1.0": crate::bindings::shared::halyard::plugin::types,
            "halyard:plugin/log@0.1.0": crate::bindings::shared::halyard::plugin::log,
            "halyard:plugin/clock@0.1.0": crate::bindings::shared::halyard::plugin::clock,
            "halyard:plugin/config@0.1.0": crate::bindings::shared::halyard::plugin::config,
            "halyard:plugin/flat@0.2.0": generate,
        },
        additional_derives: [PartialEq],
        pub_export_macro: true,
        export_macro_name: "export_privacy_v0_2_world",
        default_bindings_module: "halyard_sdk::bindings::privacy_v0_2",
    });
}

/// The 0.2.0 `sampler` world: `sample(list<u8>) -> list<bool>`.
pub mod sampler {
    world!(
        "../../wit/0.2.0",
        "sampler",
        "export_sampler_world",
        "halyard_sdk::bindings::sampler"
    );
}

/// The 0.3.0 `detector` world: `detect(list<u8>) -> list<u8>`,
/// `tick(s64) -> list<u8>`, and the `kv` import.
pub mod detector {
    world!(
        "../../wit/0.3.0",
        "detector",
        "export_detector_world",
        "halyard_sdk::bindings::detector"
    );
}

/// The 0.1.0 worlds, for guests that must keep the 0.1.0 contract (feature
/// `v0_1`; the `export_*_v0_1!` macros use them).
#[cfg(feature = "v0_1")]
pub mod v0_1 {
    /// The 0.1.0 `source` world: `poll(max) -> list<event>`.
    pub mod source {
        world!(
            "wit-v0_1",
            "source-v0-1",
            "export_source_world",
            "halyard_sdk::bindings::v0_1::source"
        );
    }

    /// The 0.1.0 `decoder` world.
    pub mod decoder {
        world!(
            "wit-v0_1",
            "decoder-v0-1",
            "export_decoder_world",
            "halyard_sdk::bindings::v0_1::decoder"
        );
    }

    /// The 0.1.0 `validator` world: `validate(list<event>) -> list<verdict>`.
    pub mod validator {
        world!(
            "wit-v0_1",
            "validator-v0-1",
            "export_validator_world",
            "halyard_sdk::bindings::v0_1::validator"
        );
    }

    /// The 0.1.0 `privacy` world: `redact(list<event>) -> list<action>`.
    pub mod privacy {
        world!(
            "wit-v0_1",
            "privacy-v0-1",
            "export_privacy_world",
            "halyard_sdk::bindings::v0_1::privacy"
        );
    }

    /// The 0.1.0 `sampler` world: `sample(list<event>) -> list<bool>`.
    pub mod sampler {
        world!(
            "wit-v0_1",
            "sampler-v0-1",
            "export_sampler_world",
            "halyard_sdk::bindings::v0_1::sampler"
        );
    }
}
