//! The benchmark input: the peer benchmark's sensor lines
//! (`/work/shared/bench/sensor-lines.py`), generated in-process, as frames
//! for the decoder and as decoded events (with host ids) for the other
//! stages.

use std::collections::BTreeMap;

use halyard::plugin::{Event, Frame, PluginInstance};

/// Operators cycled through the `operator` field.
const OPERATORS: [&str; 4] = ["alice", "bob", "carol", "dave"];

/// Line `i` of `sensor-lines.py`, without the newline. Rust's `{:?}` on an
/// f64 prints the shortest round-trip form with a `.0` for whole numbers,
/// which is what Python's `%r` prints for these values (`-10.0`, `89.9`).
pub fn sensor_line(i: u64) -> String {
    let value = (((i * 37) % 1000) as f64 - 100.0) / 10.0;
    format!(
        r#"{{"device":"d{}","metric":"temp","value":{:?},"ts":{},"operator":"{}"}}"#,
        i % 50,
        value,
        1_700_000_000_000 + i,
        OPERATORS[(i % 4) as usize]
    )
}

/// The first `n` lines, one frame each, as a host file input would send them.
pub fn frames(n: u64) -> Vec<Frame> {
    (0..n)
        .map(|i| Frame {
            data: sensor_line(i).into_bytes(),
            content_type: "application/x-ndjson".to_owned(),
            origin: "bench:sensor-lines".to_owned(),
        })
        .collect()
}

/// Decodes `frames` with the guest decoder and gives every event a host id,
/// as the pipeline does when events enter it.
pub fn decode_with_ids(decoder: &mut PluginInstance, frames: &[Frame]) -> Vec<Event> {
    let results = decoder.decode(frames).expect("the guest decoder runs");
    results
        .into_iter()
        .flat_map(|r| r.expect("every benchmark line decodes"))
        .map(|mut event| {
            event.id = halyard::event::new_id();
            event
        })
        .collect()
}

/// A plugin config from key/value pairs.
pub fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
