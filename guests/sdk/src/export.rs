//! The `export_*!` macros and the glue they expand to.
//!
//! Why: wit-bindgen wants a type implementing the world's `Guest` trait with
//! static functions. The macros generate that type inside the guest crate (so
//! `info` reports the guest's own name and version), keep the plugin instance
//! in a per-instance slot, and route each export to the plugin's trait.

/// Runtime glue called from the code the `export_*!` macros generate.
#[doc(hidden)]
pub mod __private {
    use std::cell::RefCell;
    use std::thread::LocalKey;

    use crate::{Config, InitError, PluginInfo};

    /// Where a guest keeps its plugin instance. A wasm instance is single
    /// threaded, so a thread-local cell is one slot per component instance.
    pub type Slot<T> = RefCell<Option<T>>;

    /// The constructor of a plugin type (its trait's `init`).
    pub type Ctor<T> = fn(&Config) -> Result<T, InitError>;

    /// The `poll` export: the source's events, truncated to `max` so a
    /// source cannot overrun the host's request by mistake.
    pub fn poll_capped<T: crate::Source>(source: &mut T, max: u32) -> Vec<crate::Event> {
        let mut events = source.poll(max);
        events.truncate(usize::try_from(max).unwrap_or(usize::MAX));
        events
    }

    /// The 0.2.0 `poll` export: [`poll_capped`] as one event batch.
    pub fn poll_flat<T: crate::Source>(source: &mut T, max: u32) -> Vec<u8> {
        crate::flat::write_events(&poll_capped(source, max))
    }

    /// The 0.2.0 `validate` export: the plugin's `validate_views` on the
    /// batch read in place.
    pub fn validate_flat<T: crate::Validator>(
        validator: &mut T,
        events: Vec<u8>,
    ) -> Vec<crate::Verdict> {
        validator.validate_views(&crate::flat::views(&events))
    }

    /// The 0.2.0 `sample` export; see [`validate_flat`].
    pub fn sample_flat<T: crate::Sampler>(sampler: &mut T, events: Vec<u8>) -> Vec<bool> {
        sampler.sample_views(&crate::flat::views(&events))
    }

    /// The 0.4.0 `redact` export: the plugin's decisions as one answer
    /// buffer; rewrites go back as patches when they can.
    pub fn redact_answer<T: crate::Privacy>(privacy: &mut T, events: Vec<u8>) -> Vec<u8> {
        crate::flat::redact_answer(&events, |events| privacy.redact_views(events))
    }

    /// The 0.2.0 `redact` export: rewrites go back as patches when they can.
    pub fn redact_flat<T: crate::Privacy>(
        privacy: &mut T,
        events: Vec<u8>,
    ) -> Vec<crate::bindings::privacy_v0_2::halyard::plugin0_2_0::flat::Action> {
        crate::flat::redact(&events, |events| privacy.redact_views(events))
    }

    /// The 0.2.0 `decode` export.
    pub fn decode_flat<T: crate::Decoder>(
        decoder: &mut T,
        frames: crate::bindings::decoder::halyard::plugin0_2_0::flat::FrameBatch,
    ) -> crate::bindings::decoder::halyard::plugin0_2_0::flat::Decoded {
        crate::flat::decode(frames, |frames, out| decoder.decode_views(frames, out))
    }

    /// The 0.3.0 `detect` export: the batch read into events, the
    /// detector's new events written back as a batch.
    pub fn detect_flat<T: crate::Detector>(detector: &mut T, events: Vec<u8>) -> Vec<u8> {
        let made = detector.detect(crate::flat::read_events(&events));
        crate::flat::write_events(&made)
    }

    /// The 0.3.0 `tick` export.
    pub fn tick_flat<T: crate::Detector>(detector: &mut T, now_ns: i64) -> Vec<u8> {
        crate::flat::write_events(&detector.tick(now_ns))
    }

    /// The `info` export.
    pub fn info(name: &str, version: &str) -> PluginInfo {
        PluginInfo {
            name: name.to_owned(),
            version: version.to_owned(),
        }
    }

    /// The `init` export: reads the config from the host, builds the instance
    /// and stores it. The plugin's error is returned unchanged.
    pub fn init<T: 'static>(
        slot: &'static LocalKey<Slot<T>>,
        ctor: Ctor<T>,
    ) -> Result<(), InitError> {
        // Drop any previous instance first, so a failed re-init leaves none.
        slot.with(|cell| cell.borrow_mut().take());
        let instance = ctor(&Config::from_host())?;
        slot.with(|cell| *cell.borrow_mut() = Some(instance));
        Ok(())
    }

    /// Runs a stage call on the stored instance. If the host calls a stage
    /// before `init`, the instance is initialised now; if that fails, the
    /// call panics (traps) with the init error's message.
    pub fn with<T: 'static, R>(
        slot: &'static LocalKey<Slot<T>>,
        ctor: Ctor<T>,
        call: impl FnOnce(&mut T) -> R,
    ) -> R {
        slot.with(|cell| {
            let mut guard = cell.borrow_mut();
            let instance = match guard.take() {
                Some(instance) => instance,
                None => match ctor(&Config::from_host()) {
                    Ok(instance) => instance,
                    Err(err) => panic!("plugin init failed: {}", err.message),
                },
            };
            call(guard.insert(instance))
        })
    }
}

/// Expands to the items every `export_*!` macro shares: the instance slot
/// and the `Guest` impl skeleton. Internal; use the `export_*!` macros.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_plugin {
    (
        $ty:ty, $trait:ident, $($world:ident)::+, $world_macro:ident,
        name = $name:expr, version = $version:expr,
        fn $stage:ident($arg:ident: $arg_ty:ty) -> $ret:ty => $call:expr
    ) => {
        const _: () = {
            ::std::thread_local! {
                static INSTANCE: $crate::__private::Slot<$ty> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            // Only ever used as a type parameter of the wasm exports.
            #[allow(dead_code)]
            struct HalyardExport;

            impl $crate::bindings::$($world)::+::Guest for HalyardExport {
                fn info() -> $crate::PluginInfo {
                    $crate::__private::info($name, $version)
                }

                fn init() -> ::core::result::Result<(), $crate::InitError> {
                    $crate::__private::init(&INSTANCE, <$ty as $crate::$trait>::init)
                }

                fn $stage($arg: $arg_ty) -> $ret {
                    $crate::__private::with(&INSTANCE, <$ty as $crate::$trait>::init, |plugin| {
                        ($call)(plugin, $arg)
                    })
                }
            }

            // The exports exist only on wasm: natively, symbols such as `poll`
            // or `init` would interpose libc's and break unit-test binaries.
            #[cfg(target_arch = "wasm32")]
            $crate::bindings::$($world)::+::$world_macro!(
                HalyardExport with_types_in $crate::bindings::$($world)::+
            );
        };
    };
}

/// Exports a [`Validator`](crate::Validator) type as the component's
/// `validator` world of contract 0.2.0 (flat batches; see the README). `info` reports the calling crate's package name and
/// version unless overridden with `name = "..", version = ".."`.
#[macro_export]
macro_rules! export_validator {
    ($ty:ty) => {
        $crate::export_validator!(
            $ty,
            name = ::core::env!("CARGO_PKG_NAME"),
            version = ::core::env!("CARGO_PKG_VERSION")
        );
    };
    ($ty:ty, name = $name:expr, version = $version:expr $(,)?) => {
        $crate::__export_plugin!(
            $ty, Validator, validator, export_validator_world,
            name = $name, version = $version,
            fn validate(events: ::std::vec::Vec<u8>)
                -> ::std::vec::Vec<$crate::Verdict> => $crate::__private::validate_flat::<$ty>
        );
    };
}

/// Exports a [`Privacy`](crate::Privacy) type as the component's `privacy`
/// world of contract 0.4.0 (the answer is one flat buffer; see the README).
/// Same forms as [`export_validator!`].
#[macro_export]
macro_rules! export_privacy {
    ($ty:ty) => {
        $crate::export_privacy!(
            $ty,
            name = ::core::env!("CARGO_PKG_NAME"),
            version = ::core::env!("CARGO_PKG_VERSION")
        );
    };
    ($ty:ty, name = $name:expr, version = $version:expr $(,)?) => {
        $crate::__export_plugin!(
            $ty, Privacy, privacy, export_privacy_world,
            name = $name, version = $version,
            fn redact(events: ::std::vec::Vec<u8>) -> ::std::vec::Vec<u8>
                => $crate::__private::redact_answer::<$ty>
        );
    };
}

/// Exports a [`Privacy`](crate::Privacy) type as the component's `privacy`
/// world of contract 0.2.0 (`list<action>` answers), for a guest that must
/// load on hosts older than contract 0.4.0. Same forms as
/// [`export_privacy!`].
#[macro_export]
macro_rules! export_privacy_v0_2 {
    ($ty:ty) => {
        $crate::export_privacy_v0_2!(
            $ty,
            name = ::core::env!("CARGO_PKG_NAME"),
            version = ::core::env!("CARGO_PKG_VERSION")
        );
    };
    ($ty:ty, name = $name:expr, version = $version:expr $(,)?) => {
        $crate::__export_plugin!(
            $ty, Privacy, privacy_v0_2, export_privacy_v0_2_world,
            name = $name, version = $version,
            fn redact(events: ::std::vec::Vec<u8>)
                -> ::std::vec::Vec<$crate::bindings::privacy_v0_2::halyard::plugin0_2_0::flat::Action>
                => $crate::__private::redact_flat::<$ty>
        );
    };
}

/// Exports a [`Sampler`](crate::Sampler) type as the component's `sampler`
/// world. Same forms as [`export_validator!`].
#[macro_export]
macro_rules! export_sampler {
    ($ty:ty) => {
        $crate::export_sampler!(
            $ty,
            name = ::core::env!("CARGO_PKG_NAME"),
            version = ::core::env!("CARGO_PKG_VERSION")
        );
    };
    ($ty:ty, name = $name:expr, version = $version:expr $(,)?) => {
        $crate::__export_plugin!(
            $ty, Sampler, sampler, export_sampler_world,
            name = $name, version = $version,
            fn sample(events: ::std::vec::Vec<u8>)
                -> ::std::vec::Vec<bool> => $crate::__private::sample_flat::<$ty>
        );
    };
}

/// Exports a [`Decoder`](crate::Decoder) type as the component's `decoder`
/// world. Same forms as [`export_validator!`].
#[macro_export]
macro_rules! export_decoder {
    ($ty:ty) => {
        $crate::export_decoder!(
            $ty,
            name = ::core::env!("CARGO_PKG_NAME"),
            version = ::core::env!("CARGO_PKG_VERSION")
        );
    };
    ($ty:ty, name = $name:expr, version = $version:expr $(,)?) => {
        $crate::__export_plugin!(
            $ty, Decoder, decoder, export_decoder_world,
            name = $name, version = $version,
            fn decode(frames: $crate::bindings::decoder::halyard::plugin0_2_0::flat::FrameBatch)
                -> $crate::bindings::decoder::halyard::plugin0_2_0::flat::Decoded
                => $crate::__private::decode_flat::<$ty>
        );
    };
}

/// Exports a [`Source`](crate::Source) type as the component's `source`
/// world. Same forms as [`export_validator!`]. Results longer than `max` are
/// truncated to `max`.
#[macro_export]
macro_rules! export_source {
    ($ty:ty) => {
        $crate::export_source!(
            $ty,
            name = ::core::env!("CARGO_PKG_NAME"),
            version = ::core::env!("CARGO_PKG_VERSION")
        );
    };
    ($ty:ty, name = $name:expr, version = $version:expr $(,)?) => {
        $crate::__export_plugin!(
            $ty, Source, source, export_source_world,
            name = $name, version = $version,
            fn poll(max: u32) -> ::std::vec::Vec<u8> => $crate::__private::poll_flat::<$ty>
        );
    };
}

/// Exports a [`Detector`](crate::Detector) type as the component's
/// `detector` world of contract 0.3.0 (`detect` and `tick`, flat batches
/// both ways, the [`kv`](crate::kv) import). Same forms as
/// [`export_validator!`].
#[macro_export]
macro_rules! export_detector {
    ($ty:ty) => {
        $crate::export_detector!(
            $ty,
            name = ::core::env!("CARGO_PKG_NAME"),
            version = ::core::env!("CARGO_PKG_VERSION")
        );
    };
    ($ty:ty, name = $name:expr, version = $version:expr $(,)?) => {
        const _: () = {
            ::std::thread_local! {
                static INSTANCE: $crate::__private::Slot<$ty> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            // Only ever used as a type parameter of the wasm exports.
            #[allow(dead_code)]
            struct HalyardExport;

            impl $crate::bindings::detector::Guest for HalyardExport {
                fn info() -> $crate::PluginInfo {
                    $crate::__private::info($name, $version)
                }

                fn init() -> ::core::result::Result<(), $crate::InitError> {
                    $crate::__private::init(&INSTANCE, <$ty as $crate::Detector>::init)
                }

                fn detect(events: ::std::vec::Vec<u8>) -> ::std::vec::Vec<u8> {
                    $crate::__private::with(&INSTANCE, <$ty as $crate::Detector>::init, |plugin| {
                        $crate::__private::detect_flat::<$ty>(plugin, events)
                    })
                }

                fn tick(now_ns: i64) -> ::std::vec::Vec<u8> {
                    $crate::__private::with(&INSTANCE, <$ty as $crate::Detector>::init, |plugin| {
                        $crate::__private::tick_flat::<$ty>(plugin, now_ns)
                    })
                }
            }

            #[cfg(target_arch = "wasm32")]
            $crate::bindings::detector::export_detector_world!(
                HalyardExport with_types_in $crate::bindings::detector
            );
        };
    };
}

/// Exports a [`Validator`](crate::Validator) type against contract 0.1.0
/// (`list<event>` batches), for a host that predates 0.2.0. Feature `v0_1`.
/// A separate macro rather than a feature that switches `export_validator!`:
/// cargo unifies features across a workspace, so a switch would move every
/// guest built with this one.
#[cfg(feature = "v0_1")]
#[macro_export]
macro_rules! export_validator_v0_1 {
    ($ty:ty) => {
        $crate::__export_plugin!(
            $ty, Validator, v0_1::validator, export_validator_world,
            name = ::core::env!("CARGO_PKG_NAME"), version = ::core::env!("CARGO_PKG_VERSION"),
            fn validate(events: ::std::vec::Vec<$crate::Event>)
                -> ::std::vec::Vec<$crate::Verdict> => <$ty as $crate::Validator>::validate_batch
        );
    };
}

/// Exports a [`Privacy`](crate::Privacy) type against contract 0.1.0; see
/// [`export_validator_v0_1!`]. Feature `v0_1`.
#[cfg(feature = "v0_1")]
#[macro_export]
macro_rules! export_privacy_v0_1 {
    ($ty:ty) => {
        $crate::__export_plugin!(
            $ty, Privacy, v0_1::privacy, export_privacy_world,
            name = ::core::env!("CARGO_PKG_NAME"), version = ::core::env!("CARGO_PKG_VERSION"),
            fn redact(events: ::std::vec::Vec<$crate::Event>)
                -> ::std::vec::Vec<$crate::Action> => <$ty as $crate::Privacy>::redact_batch
        );
    };
}

/// Exports a [`Sampler`](crate::Sampler) type against contract 0.1.0; see
/// [`export_validator_v0_1!`]. Feature `v0_1`.
#[cfg(feature = "v0_1")]
#[macro_export]
macro_rules! export_sampler_v0_1 {
    ($ty:ty) => {
        $crate::__export_plugin!(
            $ty, Sampler, v0_1::sampler, export_sampler_world,
            name = ::core::env!("CARGO_PKG_NAME"), version = ::core::env!("CARGO_PKG_VERSION"),
            fn sample(events: ::std::vec::Vec<$crate::Event>)
                -> ::std::vec::Vec<bool> => <$ty as $crate::Sampler>::sample_batch
        );
    };
}

/// Exports a [`Decoder`](crate::Decoder) type against contract 0.1.0; see
/// [`export_validator_v0_1!`]. Feature `v0_1`.
#[cfg(feature = "v0_1")]
#[macro_export]
macro_rules! export_decoder_v0_1 {
    ($ty:ty) => {
        $crate::__export_plugin!(
            $ty, Decoder, v0_1::decoder, export_decoder_world,
            name = ::core::env!("CARGO_PKG_NAME"), version = ::core::env!("CARGO_PKG_VERSION"),
            fn decode(frames: ::std::vec::Vec<$crate::Frame>)
                -> ::std::vec::Vec<::core::result::Result<::std::vec::Vec<$crate::Event>, ::std::string::String>>
                => <$ty as $crate::Decoder>::decode_batch
        );
    };
}

/// Exports a [`Source`](crate::Source) type against contract 0.1.0; see
/// [`export_validator_v0_1!`]. Feature `v0_1`.
#[cfg(feature = "v0_1")]
#[macro_export]
macro_rules! export_source_v0_1 {
    ($ty:ty) => {
        $crate::__export_plugin!(
            $ty, Source, v0_1::source, export_source_world,
            name = ::core::env!("CARGO_PKG_NAME"), version = ::core::env!("CARGO_PKG_VERSION"),
            fn poll(max: u32) -> ::std::vec::Vec<$crate::Event> => $crate::__private::poll_capped::<$ty>
        );
    };
}
