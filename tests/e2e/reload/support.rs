//! A host whose validator lives in a plugin directory, a request loop that
//! tells from each answer which validator version served it, and deploys
//! by write-then-rename.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use halyard_test_components as components;
use halyard_trust::KeyPair;
use halyard_trust::plugin_sig::{Signature, Subject, sign};

use crate::operate_support::{
    Client, Receiver, Running, free_ports, start_with_status, wait_listening,
};
use crate::pipeline_support::{Host, Scenario, http_transport};

/// The version every test guest reports from `info` (their crates share
/// the guest workspaces' version), which its signature must name.
pub const GUEST_VERSION: &str = "0.1.0";

/// Signs `bytes` for installation as `name` (file stem) of `kind`, at the
/// guests' version.
pub fn sign_as(bytes: &[u8], name: &str, kind: &str, key: &KeyPair) -> Signature {
    let subject = Subject {
        name: name.to_string(),
        kind: kind.to_string(),
        version: GUEST_VERSION.to_string(),
        fleet: None,
    };
    sign(bytes, &subject, key).unwrap()
}

/// Events per request: each request is one batch.
pub const PER_REQUEST: u64 = 20;

/// Which validator served a request: v1 (range validator, `min.temp = 0`)
/// rejects every event of these requests (all values are negative); v2
/// (the hostile validator in a mode) accepts them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Every event rejected.
    V1,
    /// Every event accepted.
    V2,
}

/// The host, its receiver and its plugin directory.
pub struct Setup {
    /// Keeps the scenario's files alive.
    pub _s: Scenario,
    pub run: Running,
    pub receiver: Receiver,
    pub client: Client,
    pub plugins: PathBuf,
    /// Next event number.
    pub next: u64,
    /// Events sent, accepted, rejected.
    pub sent: u64,
    pub accepted: u64,
    pub rejected: u64,
}

/// Starts a host whose validator is `plugins/validator.wasm` (a copy of
/// the range validator) with validator config `extra` and `tables`
/// appended; `prepare` may write more into the plugin dir first and
/// returns replacements for the base config.
pub fn start(
    extra_config: &str,
    tables: &str,
    prepare: impl FnOnce(&Path) -> Vec<(String, String)>,
) -> Setup {
    let s = Scenario::new();
    let plugins = s.path("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(components::RANGE_VALIDATOR, plugins.join("validator.wasm")).unwrap();
    let mut replace = prepare(&plugins);
    replace.push((
        format!("plugin = \"{}\"", components::RANGE_VALIDATOR),
        format!("plugin = \"{}\"", plugins.join("validator.wasm").display()),
    ));
    replace.push((
        "config = { \"min.temp\" = 0 }".to_string(),
        format!("config = {{ \"min.temp\" = 0{extra_config} }}"),
    ));
    let [hub, status] = free_ports();
    let receiver = Receiver::start(hub, &s.path("received.db"));
    let tables = tables.replace("{PLUGINS}", &plugins.display().to_string());
    let tail = format!(
        "{}\n{tables}",
        http_transport(&format!("http://{hub}/v1/batches"), None)
    );
    let pairs: Vec<(&str, &str)> = replace
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let run = start_with_status(&s, &tail, &pairs, status);
    Setup {
        _s: s,
        run,
        receiver,
        client: Client::new(),
        plugins,
        next: 0,
        sent: 0,
        accepted: 0,
        rejected: 0,
    }
}

impl Setup {
    /// Sends one request of [`PER_REQUEST`] negative readings; asserts it
    /// was served wholly by one version and says which.
    pub fn send(&mut self) -> Served {
        let mut body = String::new();
        for i in self.next..self.next + PER_REQUEST {
            body.push_str(&format!(
                "{{\"device\":\"d{}\",\"metric\":\"temp\",\"value\":-1.5,\"ts\":{},\"operator\":\"alice\"}}\n",
                i % 7,
                1_700_000_000_000u64 + i
            ));
        }
        self.next += PER_REQUEST;
        let answer = self.client.ingest(self.run.ingest, body.into_bytes());
        let accepted = answer["accepted"].as_u64().unwrap();
        let rejected = answer["rejected"].as_u64().unwrap();
        self.sent += PER_REQUEST;
        self.accepted += accepted;
        self.rejected += rejected;
        match (accepted, rejected) {
            (0, PER_REQUEST) => Served::V1,
            (PER_REQUEST, 0) => Served::V2,
            _ => panic!("a batch was split between versions or lost events: {answer}"),
        }
    }

    /// Sends requests until one is served by `want` (at most `limit`
    /// requests); returns how many were sent and the time it took.
    pub fn send_until(&mut self, want: Served, limit: usize) -> (usize, Duration) {
        let started = Instant::now();
        for n in 1..=limit {
            if self.send() == want {
                return (n, started.elapsed());
            }
        }
        panic!(
            "{want:?} did not serve within {limit} requests: {}",
            self.log()
        );
    }

    /// Stops the host (SIGTERM), runs `while_stopped` with the data
    /// directory, and starts the host again on the same config, data
    /// directory and ports; counts carry on.
    pub fn restart(self, while_stopped: impl FnOnce(&Path)) -> Setup {
        let Setup {
            _s,
            run,
            receiver,
            client,
            plugins,
            next,
            sent,
            accepted,
            rejected,
        } = self;
        let Running {
            host,
            ingest,
            status,
        } = run;
        host.stop();
        while_stopped(&_s.data);
        let host = Host::start(&_s.config);
        wait_listening(ingest);
        wait_listening(status);
        Setup {
            _s,
            run: Running {
                host,
                ingest,
                status,
            },
            receiver,
            // A fresh client: the old one's kept-alive connections died
            // with the old host.
            client: {
                drop(client);
                Client::new()
            },
            plugins,
            next,
            sent,
            accepted,
            rejected,
        }
    }

    /// The host's data directory.
    pub fn data_dir(&self) -> &Path {
        &self._s.data
    }

    /// The host's log so far (this run's).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.run.host.log).unwrap_or_default()
    }

    /// Waits (sending all the while, each request served by v1) until the
    /// reloader has refused `nth + 1` new versions, and checks that the last
    /// refusal says `reason`.
    pub fn expect_refusal(&mut self, nth: usize, what: &str, reason: &str) {
        crate::pipeline_support::wait_for(
            &format!("{what} refused"),
            Duration::from_secs(30),
            || {
                assert_eq!(
                    self.send(),
                    Served::V1,
                    "{what}: the old version keeps serving"
                );
                self.log_count("new plugin version refused") > nth
            },
        );
        let log = self.log();
        let last = log
            .lines()
            .rfind(|l| l.contains("new plugin version refused"))
            .unwrap_or_default();
        assert!(
            last.contains(reason),
            "{what}: expected `{reason}` in {last}"
        );
    }

    /// How often the log says `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// The payloads of the lifecycle events of `kind` the host logged so
    /// far, oldest first.
    pub fn lifecycle(&self, kind: &str) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["target"] == "halyard::lifecycle" && l["kind"] == kind)
            .map(|l| match &l["payload"] {
                serde_json::Value::String(text) => serde_json::from_str(text).unwrap(),
                other => other.clone(),
            })
            .collect()
    }

    /// The validator's entry in `/plugins`.
    pub fn validator_status(&self) -> serde_json::Value {
        plugin_status(&self.client, self.run.status, "validate")
    }

    /// Stops the host; checks the receiver stored exactly what was
    /// accepted and that every event was accepted or rejected exactly once.
    pub fn finish(self) {
        assert_eq!(self.accepted + self.rejected, self.sent);
        let accepted = self.accepted;
        let receiver = self.receiver;
        crate::pipeline_support::wait_for(
            "the receiver to store every accepted event",
            Duration::from_secs(60),
            || receiver.stats().events_stored == accepted,
        );
        let log = self.run.host.stop();
        let stats = receiver.stats();
        assert_eq!(stats.events_stored, accepted, "{log}");
        assert_eq!(stats.duplicates, 0, "{log}");
    }
}

/// The `/plugins` entry of the stage `stage`.
pub fn plugin_status(client: &Client, status: SocketAddr, stage: &str) -> serde_json::Value {
    let (_, all) = client.get_json(&format!("http://{status}/plugins"));
    let list = all["plugins"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| all.as_array().cloned().unwrap_or_default());
    list.into_iter()
        .find(|p| p["stage"] == stage)
        .unwrap_or_else(|| panic!("no {stage} plugin in {all}"))
}

/// A `prepare` for [`start`] when `[plugins] trusted_keys` is set (every
/// plugin must then be signed): writes the decoder, privacy stage, sampler
/// and validator into `dir` each with a `.sig` by `key`, and points the
/// config at those copies.
pub fn signed_plugins(dir: &Path, key: &KeyPair) -> Vec<(String, String)> {
    let mut replace = Vec::new();
    for (src, name, kind) in [
        (components::JSONL_DECODER, "decoder.wasm", "decoder"),
        (components::REDACT_PRIVACY, "privacy.wasm", "privacy"),
        (components::FRACTION_SAMPLER, "sampler.wasm", "sampler"),
        (components::RANGE_VALIDATOR, "validator.wasm", "validator"),
    ] {
        let bytes = std::fs::read(src).unwrap();
        let dest = dir.join(name);
        std::fs::write(&dest, &bytes).unwrap();
        let stem = name.trim_end_matches(".wasm");
        std::fs::write(
            format!("{}.sig", dest.display()),
            sign_as(&bytes, stem, kind, key).to_json(),
        )
        .unwrap();
        if name != "validator.wasm" {
            replace.push((
                format!("plugin = \"{src}\""),
                format!("plugin = \"{}\"", dest.display()),
            ));
        }
    }
    replace
}

/// Deploys `bytes` as `dest` the documented way: a dotfile temp in the
/// same directory, then a rename. `sig` (if any) goes first, the same way.
pub fn deploy(dest: &Path, bytes: &[u8], sig: Option<&[u8]>) -> Instant {
    let dir = dest.parent().unwrap();
    let name = dest.file_name().unwrap().to_string_lossy().into_owned();
    if let Some(sig) = sig {
        let tmp = dir.join(format!(".{name}.sig.tmp"));
        std::fs::write(&tmp, sig).unwrap();
        std::fs::rename(&tmp, dir.join(format!("{name}.sig"))).unwrap();
    }
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    let at = Instant::now();
    std::fs::rename(&tmp, dest).unwrap();
    at
}

/// SHA-256 hex of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    halyard_trust::sha256_hex(bytes)
}
