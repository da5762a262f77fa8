//! {{name}}: a Halyard decoder. Each frame is one line
//! `source,kind,value`; the event's time is the host's clock at decoding.

use halyard_sdk::{Config, Decoder, Event, Frame, InitError, clock};

/// The parsed config (`unit`: the unit given to every value, optional).
pub struct Plugin {
    unit: Option<String>,
}

impl Decoder for Plugin {
    fn init(config: &Config) -> Result<Self, InitError> {
        Ok(Plugin { unit: config.get("unit").map(str::to_owned) })
    }

    fn decode(&mut self, frame: Frame) -> Result<Vec<Event>, String> {
        let line = std::str::from_utf8(&frame.data).map_err(|_| "frame is not UTF-8".to_string())?;
        let line = line.trim();
        if line.is_empty() {
            return Ok(Vec::new());
        }
        let [source, kind, value] = line.split(',').collect::<Vec<_>>()[..] else {
            return Err(format!("expected source,kind,value, got {line:?}"));
        };
        let value: f64 = value
            .trim()
            .parse()
            .map_err(|_| format!("value {:?} is not a number", value.trim()))?;
        let mut event = Event::new(source.trim(), kind.trim(), clock::now_ns()).with_value(value);
        if let Some(unit) = &self.unit {
            event = event.with_unit(unit.clone());
        }
        Ok(vec![event])
    }
}

halyard_sdk::export_decoder!(Plugin);
