//! hostile-validator: a validator that misbehaves on purpose, so the host's
//! sandbox limits (fuel/epochs, memory, output checks, capability denial,
//! trap recovery) can be tested against a real component. The `mode` key
//! picks the misbehaviour; see README.md.

#![warn(missing_docs)]

mod mode;

use std::hint::black_box;

use halyard_sdk::{Config, Event, InitError, Validator, Verdict};

pub use mode::Mode;

/// 1 MiB: the chunk size of the `alloc` mode.
const MIB: usize = 1 << 20;

/// The plugin: the selected mode and the state some modes need.
#[derive(Debug)]
pub struct HostileValidator {
    mode: Mode,
    /// `validate` calls so far (for `trap-after`).
    calls: u64,
    /// Memory kept alive by the `alloc` mode.
    hoard: Vec<Vec<u8>>,
    /// Where the `connect` mode connects.
    addr: String,
}

impl Validator for HostileValidator {
    fn init(config: &Config) -> Result<Self, InitError> {
        let mode = Mode::from_config(config)?;
        match mode {
            Mode::InitError => Err(InitError::for_key("mode", "init refused on purpose")),
            Mode::InitLoop => spin(),
            Mode::InitSleep(ms) => {
                pause(ms);
                Err(InitError::for_key("mode", "woke up"))
            }
            Mode::InitPanic => {
                println!("init-panic: about to panic");
                panic!("hostile guest panicked in init on purpose");
            }
            mode => {
                if mode == Mode::InitPrint {
                    println!("init-print: hello on stdout");
                    eprintln!("init-print: hello on stderr");
                }
                Ok(HostileValidator {
                    mode,
                    calls: 0,
                    hoard: Vec::new(),
                    addr: config.get("addr").unwrap_or_default().to_string(),
                })
            }
        }
    }

    fn validate(&mut self, event: &Event) -> Verdict {
        self.validate_batch(vec![event.clone()])
            .pop()
            .unwrap_or(Verdict::Accept)
    }

    fn validate_batch(&mut self, events: Vec<Event>) -> Vec<Verdict> {
        self.calls += 1;
        let accept_all = || vec![Verdict::Accept; events.len()];
        match self.mode {
            Mode::Ok
            | Mode::InitError
            | Mode::InitLoop
            | Mode::InitSleep(_)
            | Mode::InitPrint
            | Mode::InitPanic => accept_all(),
            Mode::Sleep(ms) => {
                pause(ms);
                accept_all()
            }
            Mode::StderrFlood(lines) => {
                for i in 0..lines {
                    eprintln!("call {} line {i:>4} {}", self.calls, "x".repeat(180));
                }
                accept_all()
            }
            Mode::Slow(us) => {
                let n = u64::try_from(events.len()).unwrap_or(u64::MAX);
                run_for(std::time::Duration::from_micros(us.saturating_mul(n)));
                accept_all()
            }
            Mode::Connect => vec![Verdict::Reject(connect(&self.addr)); events.len()],
            Mode::Loop => spin(),
            Mode::Alloc => {
                self.hoard_one_gib();
                accept_all()
            }
            Mode::Panic => panic!("hostile guest panicked on purpose"),
            Mode::Huge => vec![Verdict::Accept; 1_000_000],
            Mode::HugeFits => vec![Verdict::Accept; 100_000],
            Mode::Short => vec![Verdict::Accept; events.len().saturating_sub(1)],
            Mode::LongReason => {
                let reason = "x".repeat(4 * MIB);
                vec![Verdict::Reject(reason); events.len()]
            }
            Mode::Snoop => vec![Verdict::Reject(snoop()); events.len()],
            Mode::TrapAfter(n) if self.calls > n => {
                panic!(
                    "hostile guest trapping on call {} (after {n} calls)",
                    self.calls
                )
            }
            Mode::TrapAfter(_) => accept_all(),
        }
    }
}

halyard_sdk::export_validator!(HostileValidator);

impl HostileValidator {
    /// Allocates 1 GiB in 1 MiB chunks, writing every byte, and keeps it.
    fn hoard_one_gib(&mut self) {
        for _ in 0..1024 {
            let chunk = black_box(vec![0xA5u8; MIB]);
            self.hoard.push(chunk);
        }
    }
}

/// Loops forever in a way the optimiser cannot remove.
fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Runs code (never waits) until `d` of wall time has passed.
fn run_for(d: std::time::Duration) {
    let started = std::time::Instant::now();
    while started.elapsed() < d {
        black_box(0);
    }
}

/// Waits `ms`: `std::thread::sleep`, a pollable waited on with
/// `wasi:io/poll`.
#[cfg(not(feature = "waitless"))]
fn pause(ms: u64) {
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

/// Built as `waitless-validator` the guest imports nothing that waits, so
/// it spins on the clock instead (running code, which the epoch cuts).
#[cfg(feature = "waitless")]
fn pause(ms: u64) {
    let wait = std::time::Duration::from_millis(ms);
    let started = std::time::Instant::now();
    while started.elapsed() < wait {
        black_box(0);
    }
}

/// Built as `waitless-validator`: no sockets (they would import `poll`).
#[cfg(feature = "waitless")]
fn connect(_addr: &str) -> String {
    "connect failed: built without sockets".into()
}

#[cfg(not(feature = "waitless"))]
fn connect(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = match std::net::TcpStream::connect(addr) {
        Ok(stream) => stream,
        Err(err) => return format!("connect failed: {:?}: {err}", err.kind()),
    };
    if let Err(err) = stream.write_all(b"ping\n") {
        return format!("write failed: {err}");
    }
    let mut answer = [0u8; 64];
    match stream.read(&mut answer) {
        Ok(n) => format!(
            "connected: {}",
            String::from_utf8_lossy(&answer[..n]).trim()
        ),
        Err(err) => format!("read failed: {err}"),
    }
}

/// Probes what the sandbox lets the guest see, as one line:
/// `fs_root={ok|denied} file={ok|denied} env_home={set|unset} env_count={n}`.
fn snoop() -> String {
    let ok = |allowed: bool| if allowed { "ok" } else { "denied" };
    let fs_root = ok(std::fs::read_dir("/").is_ok());
    let file = ok(std::fs::read_to_string("/etc/hostname").is_ok());
    let env_home = if std::env::var("HOME").is_ok() {
        "set"
    } else {
        "unset"
    };
    let env_count = std::env::vars().count();
    format!("fs_root={fs_root} file={file} env_home={env_home} env_count={env_count}")
}
