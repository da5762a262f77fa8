//! Attempts to steer a rollout with validly signed material, against a
//! real host polling a manifest server on 127.0.0.1: an older manifest
//! replayed (before and after a restart), a serial reused with other
//! contents, an expired manifest, and a download past the size cap. Each is
//! refused with its reason while the running version keeps serving, and
//! nothing on disk changes.

use std::sync::Arc;

use halyard_test_components as components;
use halyard_trust::KeyPair;

use crate::hub::{Hub, Publisher, as_object, now, serve, validator_entry};
use crate::pipeline_support::wait_for;
use crate::rollout::{POLL_BOUND, start_signed, start_signed_with, wait_for_failure_serving};
use crate::support::{Served, sha256, sign_as};

/// The content hash of the file at `path`.
fn on_disk(path: &std::path::Path) -> String {
    sha256(&std::fs::read(path).unwrap())
}

/// The serial the host has recorded in `data_dir/rollout.serial`.
fn recorded_serial(dir: &std::path::Path) -> Option<u64> {
    let bytes = std::fs::read(dir.join("rollout.serial")).ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes).ok()?["serial"].as_u64()
}

/// Serial 1 lists v1 (already installed), serial 2 lists v2, which is
/// installed and serves. Replaying serial 1 (validly signed, listing the
/// older component) is refused as a replay while v2 keeps serving and the
/// file stays v2; serial 2 re-signed with other contents is refused; an
/// expired serial 3 is refused. After a restart the recorded serial still
/// refuses the replay, and v2 still serves.
#[test]
fn an_older_manifest_replayed_is_refused_and_v2_keeps_running_across_a_restart() {
    let key = KeyPair::generate().unwrap();
    let v1 = std::fs::read(components::RANGE_VALIDATOR).unwrap();
    let v2 = std::fs::read(components::HOSTILE_VALIDATOR).unwrap();
    let entry = |name: &str, bytes: &[u8]| {
        let sig = as_object(&sign_as(bytes, "validator", "validator", &key));
        validator_entry(&format!("files/{name}"), &sha256(bytes), Some(sig))
    };
    let hub = Arc::new(Hub::default());
    hub.put("v1.wasm", &v1);
    hub.put("v2.wasm", &v2);
    let mut publisher = Publisher::new(&key);
    let serial1 = publisher.publish(vec![entry("v1.wasm", &v1)]);
    let serial2 = publisher.publish(vec![entry("v2.wasm", &v2)]);
    hub.set_manifest(serial1.clone());
    let (_server, addr, _) = serve(&hub);

    let mut h = start_signed(&key, addr);
    let dest = h.plugins.join("validator.wasm");
    wait_for("serial 1 accepted", POLL_BOUND, || {
        assert_eq!(h.send(), Served::V1);
        recorded_serial(h.data_dir()) == Some(1)
    });
    assert_eq!(h.lifecycle("rollout.installed").len(), 0, "v1 was current");
    hub.set_manifest(serial2.clone());
    h.send_until(Served::V2, 20_000);
    assert_eq!(recorded_serial(h.data_dir()), Some(2));

    let replay = "manifest refused: manifest serial 1 is older than serial 2 already accepted (replay refused)";
    hub.set_manifest(serial1.clone());
    wait_for_failure_serving(&mut h, Served::V2, "serial 1 replayed", |r| r == replay);
    let reused = publisher.seal(2, now() + 3600, vec![entry("v1.wasm", &v1)]);
    hub.set_manifest(reused);
    wait_for_failure_serving(&mut h, Served::V2, "serial 2 reused", |r| {
        r == "manifest refused: manifest serial 2 was already accepted with different contents (a new manifest needs a higher serial)"
    });
    let expired_at = now() - 10;
    hub.set_manifest(publisher.seal(3, expired_at, vec![entry("v1.wasm", &v1)]));
    wait_for_failure_serving(&mut h, Served::V2, "expired", |r| {
        r.starts_with(&format!(
            "manifest refused: manifest serial 3 expired at {expired_at} (now "
        ))
    });
    assert_eq!(on_disk(&dest), sha256(&v2), "nothing installed");
    assert_eq!(recorded_serial(h.data_dir()), Some(2));
    assert_eq!(h.lifecycle("rollout.installed").len(), 1, "{}", h.log());
    assert_eq!(h.lifecycle("plugin.reloaded").len(), 1, "{}", h.log());
    assert_eq!(
        hub.downloads("v1.wasm"),
        0,
        "no refused manifest downloaded"
    );
    assert!(
        h.log_count("rollout failed; nothing changed") >= 3,
        "an error line for each refusal"
    );

    // A restart remembers serial 2: the replay is still refused.
    hub.set_manifest(serial1);
    let mut h = h.restart(|_| {});
    wait_for_failure_serving(&mut h, Served::V2, "replay after restart", |r| r == replay);
    assert_eq!(on_disk(&dest), sha256(&v2));
    assert_eq!(h.validator_status()["sha256"], sha256(&v2));
    assert_eq!(hub.downloads("v1.wasm"), 0);
    h.finish();
}

/// With `[plugins] max_file_mb = 1`, a validly signed 2 MiB download is
/// refused from its `Content-Length`, before its body is read, while v1
/// serves and the plugin directory is unchanged.
#[test]
fn a_download_past_the_size_cap_is_refused_before_it_is_read() {
    let key = KeyPair::generate().unwrap();
    let v1 = std::fs::read(components::RANGE_VALIDATOR).unwrap();
    let mut big = std::fs::read(components::HOSTILE_VALIDATOR).unwrap();
    big.resize(2 << 20, 0);
    let sig = as_object(&sign_as(&big, "validator", "validator", &key));
    let hub = Arc::new(Hub::default());
    hub.put("big.wasm", &big);
    let (_server, addr, _) = serve(&hub);
    hub.set_manifest(Publisher::new(&key).publish(vec![validator_entry(
        "files/big.wasm",
        &sha256(&big),
        Some(sig),
    )]));

    let mut h = start_signed_with(&key, addr, "max_file_mb = 1");
    let reason = format!(
        "download http://{addr}/files/big.wasm: Content-Length {} is over the 1048576-byte limit (`[plugins] max_file_mb`)",
        2 << 20
    );
    crate::rollout::wait_for_failure(&mut h, "2 MiB download", |r| r == reason);
    assert_eq!(on_disk(&h.plugins.join("validator.wasm")), sha256(&v1));
    assert!(h.lifecycle("rollout.installed").is_empty(), "{}", h.log());
    h.finish();
}
