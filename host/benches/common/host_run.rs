//! What the end-to-end benches share: the host config of one run (file
//! input through the four example guests, a buffer big enough that nothing
//! is dropped), the generated input, command-line numbers, and the child
//! process that runs the host the way `halyard run` does.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use halyard::config::HostConfig;
use halyard::pipeline::NativeStages;
use halyard::run::RunReport;
use halyard_test_components::{FRACTION_SAMPLER, JSONL_DECODER, RANGE_VALIDATOR, REDACT_PRIVACY};

/// The host config of one run, with `transport` (a whole `[transport]`
/// table) as where it delivers; the status server on a free port.
pub fn config_text(dir: &Path, name: &str, input: &Path, transport: &str) -> String {
    config_text_with(dir, name, input, transport, true)
}

/// [`config_text`], with the three event stages left out when `stages` is
/// false: the host's own share of the work (input, decode, buffer, batches,
/// transport) with nothing between the decoder and the buffer.
pub fn config_text_with(
    dir: &Path,
    name: &str,
    input: &Path,
    transport: &str,
    stages: bool,
) -> String {
    let stages = if stages {
        format!(
            r#"
[[stages.validate]]
plugin = "{validator}"
config = {{ "min.temp" = 0 }}

[[stages.privacy]]
plugin = "{privacy}"
config = {{ hash_keys = "operator", drop_keys = "email", salt = "bench" }}

[[stages.sample]]
plugin = "{sampler}"
config = {{ fraction = 1 }}
"#,
            validator = RANGE_VALIDATOR,
            privacy = REDACT_PRIVACY,
            sampler = FRACTION_SAMPLER,
        )
    } else {
        String::new()
    };
    format!(
        r#"
[host]
id = "bench"
data_dir = "{data}"

[[input]]
type = "file"
name = "sensors"
path = "{input}"
decoder = {{ plugin = "{decoder}" }}
{stages}
[buffer]
path = "buffer-{name}.db"
max_mb = 2048

[batch]
max_events = {batch}
max_bytes = {batch_bytes}
{in_flight}
[health]
listen = "127.0.0.1:0"

{transport}"#,
        data = dir.join("data").display(),
        input = input.display(),
        decoder = JSONL_DECODER,
        batch = arg("--batch").unwrap_or(1000),
        batch_bytes = arg("--batch").unwrap_or(1000) * 1024,
        in_flight = arg("--in-flight")
            .map(|n| format!("max_in_flight = {n}\n"))
            .unwrap_or_default(),
    )
}

/// Writes `n` benchmark lines; returns how many pass the range check.
pub fn write_input(path: &Path, n: u64) -> u64 {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create the input"));
    let mut valid = 0;
    for i in 0..n {
        let line = crate::input::sensor_line(i);
        valid += u64::from(!line.contains("\"value\":-"));
        writeln!(out, "{line}").expect("write the input");
    }
    out.flush().expect("write the input");
    valid
}

/// `--name N` from the command line.
pub fn arg(name: &str) -> Option<u64> {
    arg_text(name)?.parse().ok()
}

/// `--name VALUE` from the command line, as text.
pub fn arg_text(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).cloned()
}

/// Child mode: runs the host on the config at `path` (with `natives` for
/// any stage a native twin replaces) until stdin closes, then prints its
/// CPU time and what was left in the buffer.
pub fn run_child(path: &Path, natives: NativeStages) -> RunReport {
    let config = HostConfig::load(path).expect("the bench config loads");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let shutdown = async {
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await;
    };
    let report = rt
        .block_on(halyard::run::run_with(config, natives, shutdown))
        .expect("the host runs");
    println!("cpu_us {}", cpu_time().as_micros());
    println!("left_in_buffer {}", report.left_in_buffer);
    report
}

/// User + system CPU time of this process so far (all threads), from
/// `/proc/self/stat` (fields 14 and 15, in clock ticks of 1/100 s).
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) may hold spaces; count from after its `)`.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}
