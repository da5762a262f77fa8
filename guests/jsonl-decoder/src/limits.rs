//! The host's caps on decoded events, checked here first.
//!
//! Why: the host refuses any event over its caps (a string over 64 KiB, more
//! than 256 attributes, a body over 1 MiB, a time before 1970, more than
//! 10 000 events from one frame) and dead-letters the frame. Checking the
//! same caps in the decoder gives the frame a reason that names the line
//! and the field, and keeps an over-cap event from ever crossing the
//! sandbox. The defaults are the host's defaults; each is a config key, so
//! a fleet can be stricter (or follow a host whose caps were raised).
//!
//! The checks are a few length comparisons per event and allocate nothing
//! unless a frame fails.

use halyard_sdk::{Config, Event, InitError, NewEvent};

use crate::line::Caps;

/// The caps a decoded event and a frame must keep (see README.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The longest source, kind, unit, attribute key or string attribute
    /// value, in bytes (`max_string_bytes`).
    pub max_string_bytes: usize,
    /// The most attributes one event may carry (`max_attributes`).
    pub max_attributes: usize,
    /// The largest body, in bytes (`max_body_bytes`).
    pub max_body_bytes: usize,
    /// The most events one frame may yield (`max_events_per_frame`).
    pub max_events_per_frame: usize,
}

impl Default for Limits {
    /// The host's default caps.
    fn default() -> Self {
        Limits {
            max_string_bytes: 64 << 10,
            max_attributes: 256,
            max_body_bytes: 1 << 20,
            max_events_per_frame: 10_000,
        }
    }
}

/// Attribute keys up to this length are quoted in reasons; longer ones are
/// named by position.
const QUOTED_KEY_BYTES: usize = 64;

impl Limits {
    /// Reads the four keys; unset keys keep the host's defaults, a value that
    /// is not a whole number refuses the plugin naming the key.
    pub fn from_config(config: &Config) -> Result<Self, InitError> {
        let d = Limits::default();
        Ok(Limits {
            max_string_bytes: config.parse_or("max_string_bytes", d.max_string_bytes)?,
            max_attributes: config.parse_or("max_attributes", d.max_attributes)?,
            max_body_bytes: config.parse_or("max_body_bytes", d.max_body_bytes)?,
            max_events_per_frame: config
                .parse_or("max_events_per_frame", d.max_events_per_frame)?,
        })
    }

    /// Checks one decoded event; `time_field` names the time field in the
    /// reason. The reason says which part is over which cap.
    pub fn check(&self, event: &Event, time_field: &str) -> Result<(), String> {
        let attributes = event.attributes.iter();
        let attributes = attributes.map(|a| (a.key.as_str(), a.value.as_str()));
        self.check_parts(&NewEvent::from(event), attributes, time_field)
    }

    /// [`Limits::check`] on an event's parts, however they are held: each
    /// attribute as its key and, for a string value, its text.
    pub(crate) fn check_parts<'a>(
        &self,
        event: &NewEvent<'_>,
        attributes: impl ExactSizeIterator<Item = (&'a str, Option<&'a str>)>,
        time_field: &str,
    ) -> Result<(), String> {
        let NewEvent {
            source,
            kind,
            unit,
            time_ns,
            body,
            ..
        } = *event;
        self.check_str(source, "source")?;
        self.check_str(kind, "kind")?;
        if let Some(unit) = unit {
            self.check_str(unit, "unit")?;
        }
        if time_ns < 0 {
            return Err(format!(
                "field {time_field:?} is before 1970 ({time_ns} ns)"
            ));
        }
        if attributes.len() > self.max_attributes {
            return Err(format!(
                "{} attributes (limit {})",
                attributes.len(),
                self.max_attributes
            ));
        }
        for (i, (key, text)) in attributes.enumerate() {
            if key.len() > self.max_string_bytes {
                return Err(format!(
                    "attribute {i}: key of {} bytes (limit {})",
                    key.len(),
                    self.max_string_bytes
                ));
            }
            if let Some(v) = text
                && v.len() > self.max_string_bytes
            {
                let name = if key.len() <= QUOTED_KEY_BYTES {
                    format!("attribute {key:?}")
                } else {
                    format!("attribute {i}")
                };
                return Err(format!(
                    "{name} of {} bytes (limit {})",
                    v.len(),
                    self.max_string_bytes
                ));
            }
        }
        if let Some(body) = body
            && body.len() > self.max_body_bytes
        {
            return Err(format!(
                "body of {} bytes (limit {})",
                body.len(),
                self.max_body_bytes
            ));
        }
        Ok(())
    }

    /// How much one line may make the parser build: a line past these
    /// could not become an event within the caps, so it fails before it
    /// costs more memory or time than such an event.
    pub fn parse_caps(&self) -> Caps {
        Caps::for_event(self.max_attributes, self.max_body_bytes)
    }

    /// The reason for a line stopped at the body cap while parsing.
    pub fn body_too_large(&self) -> String {
        format!(
            "body of more than {} bytes (limit {})",
            self.max_body_bytes, self.max_body_bytes
        )
    }

    /// The reason for a line with more keys than an event can come from.
    pub fn too_many_fields(&self) -> String {
        format!(
            "more than {} fields (an event carries at most {} attributes and a {}-byte body)",
            self.parse_caps().max_fields,
            self.max_attributes,
            self.max_body_bytes
        )
    }

    /// Whether a frame that already yielded `events` may yield another.
    pub fn room_for_another(&self, events: usize) -> Result<(), String> {
        if events < self.max_events_per_frame {
            Ok(())
        } else {
            Err(format!(
                "more than {} events in one frame",
                self.max_events_per_frame
            ))
        }
    }

    fn check_str(&self, s: &str, field: &str) -> Result<(), String> {
        if s.len() > self.max_string_bytes {
            Err(format!(
                "{field} of {} bytes (limit {})",
                s.len(),
                self.max_string_bytes
            ))
        } else {
            Ok(())
        }
    }
}
