//! Remote rollout against a manifest server on 127.0.0.1 (signed
//! manifests, every plugin signed by the one trusted key): ETag polling, a
//! tampered download that changes nothing, then a good one that hot reload
//! swaps in; entries whose signatures are untrusted, forged, for other
//! bytes or made for another name or kind; failed downloads that are
//! retried at the next poll.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use halyard_test_components as components;
use halyard_trust::KeyPair;
use halyard_trust::plugin_sig::Signature;

use crate::hub::{Hub, Publisher, as_object, count, serve, validator_entry};
use crate::pipeline_support::wait_for;
use crate::support::{Served, Setup, sha256, sign_as, signed_plugins, start};

/// Bound on each wait for a poll's outcome: polls are 1 s apart, and a
/// debug host on a busy 2-core machine may need a few to compile v2.
pub const POLL_BOUND: Duration = Duration::from_secs(20);

/// A host whose plugins are all signed by `key`, the only trusted key,
/// polling the manifest at `addr`.
pub fn start_signed(key: &KeyPair, addr: std::net::SocketAddr) -> Setup {
    start_signed_with(key, addr, "")
}

/// [`start_signed`] with `plugins_extra` keys in its `[plugins]` table.
pub fn start_signed_with(key: &KeyPair, addr: std::net::SocketAddr, plugins_extra: &str) -> Setup {
    start(
        "",
        &format!(
            "[plugins]\ntrusted_keys = [\"{}\"]\n{plugins_extra}\n\n{}",
            key.public_key(),
            rollout_table(addr)
        ),
        |dir| signed_plugins(dir, key),
    )
}

/// The `[rollout]` table polling `addr` every second into the plugin dir,
/// over plain http (127.0.0.1 only, so `insecure_http`).
fn rollout_table(addr: std::net::SocketAddr) -> String {
    format!(
        "[rollout]\nmanifest_url = \"http://{addr}/manifest.json\"\ninterval_s = 1\ndir = \"{{PLUGINS}}\"\ninsecure_http = true\n"
    )
}

/// Sends requests (each must be served by v1) until a `rollout.failed`
/// event whose reason passes `wanted` has been logged, with the deadline
/// [`POLL_BOUND`]; checks the event names the validator.
pub fn wait_for_failure(h: &mut Setup, what: &str, wanted: impl Fn(&str) -> bool) {
    wait_for_failure_serving(h, Served::V1, what, wanted)
}

/// [`wait_for_failure`] while `serving` serves every request.
pub fn wait_for_failure_serving(
    h: &mut Setup,
    serving: Served,
    what: &str,
    wanted: impl Fn(&str) -> bool,
) {
    let deadline = Instant::now() + POLL_BOUND;
    loop {
        assert_eq!(
            h.send(),
            serving,
            "{what}: the running version keeps serving"
        );
        let failures = h.lifecycle("rollout.failed");
        if let Some(found) = failures
            .iter()
            .find(|p| p["reason"].as_str().is_some_and(&wanted))
        {
            // A refused manifest names no plugin; a refused entry does.
            if !found["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("manifest refused"))
            {
                assert_eq!(found["name"], "validator", "{what}: {found}");
            }
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no such rollout.failed within {POLL_BOUND:?}; failures: {failures:#?}\n{}",
            h.log()
        );
        std::thread::park_timeout(Duration::from_millis(25));
    }
}

/// A signed manifest whose download does not hash to the manifest's
/// sha256 is refused while v1 serves and the installed file is unchanged;
/// the right file is then installed and swapped in, and the unchanged
/// manifest is answered 304.
#[test]
fn manifest_rollout_refuses_a_tampered_download_then_installs_the_good_one() {
    let key = KeyPair::generate().unwrap();
    let v2 = std::fs::read(components::HOSTILE_VALIDATOR).unwrap();
    let sig = as_object(&sign_as(&v2, "validator", "validator", &key));
    let mut tampered = v2.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0xff;
    let hub = Arc::new(Hub::default());
    hub.put("tampered.wasm", &tampered);
    hub.put("v2.wasm", &v2);
    let mut publisher = Publisher::new(&key);
    hub.set_manifest(publisher.publish(vec![validator_entry(
        "files/tampered.wasm",
        &sha256(&v2),
        Some(sig.clone()),
    )]));
    let (_server, addr, _) = serve(&hub);

    let mut h = start_signed(&key, addr);
    wait_for("tampered download refused", Duration::from_secs(30), || {
        assert_eq!(h.send(), Served::V1);
        h.log().contains("sha256 mismatch")
    });
    let installed = std::fs::read(h.plugins.join("validator.wasm")).unwrap();
    assert_eq!(
        installed,
        std::fs::read(components::RANGE_VALIDATOR).unwrap(),
        "a failed rollout changes nothing"
    );

    hub.set_manifest(publisher.publish(vec![validator_entry(
        "files/v2.wasm",
        &sha256(&v2),
        Some(sig),
    )]));
    h.send_until(Served::V2, 20_000);
    assert_eq!(h.validator_status()["sha256"], sha256(&v2));
    wait_for(
        "a 304 on an unchanged manifest",
        Duration::from_secs(30),
        || count(&hub.not_modified) > 0,
    );
    h.finish();
}

/// With `[plugins] trusted_keys` set, manifest entries signed by an
/// untrusted key, with a forged signature under the trusted key's id, with
/// a signature over other bytes, or with no signature are each refused
/// after download: the installed component and its `.sig` stay
/// byte-for-byte as they were, v1 serves every request meanwhile, nothing
/// reaches hot reload, and a `rollout.failed` event names the plugin and
/// the reason. A correctly signed entry is then installed with its `.sig`
/// beside it (the exact document from the manifest), v2 serves, the ETag is
/// remembered (a 304 follows) and the file was downloaded exactly once.
#[test]
fn signed_rollout_refuses_untrusted_forged_and_mismatched_signatures_then_installs_a_good_one() {
    let started = Instant::now();
    let key = KeyPair::generate().unwrap();
    let other = KeyPair::generate().unwrap();
    let v1 = std::fs::read(components::RANGE_VALIDATOR).unwrap();
    let v2 = std::fs::read(components::HOSTILE_VALIDATOR).unwrap();
    let other_bytes = std::fs::read(components::REDACT_PRIVACY).unwrap();
    let sign_v = |bytes: &[u8], k: &KeyPair| sign_as(bytes, "validator", "validator", k);
    let forged = Signature {
        key_id: key.key_id(),
        ..sign_v(&v2, &other)
    };
    let moved = |name: &str, kind: &str| as_object(&sign_as(&v2, name, kind, &key));
    let cases: Vec<(&str, Option<serde_json::Value>, String)> = vec![
        (
            "signed by an untrusted key (the .sig text as a string)",
            Some(serde_json::Value::String(sign_v(&v2, &other).to_json())),
            format!(
                "validator: signature refused: signed by unknown key {} (not in the trusted keys)",
                other.key_id()
            ),
        ),
        (
            "forged under the trusted key's id",
            Some(as_object(&forged)),
            format!(
                "validator: signature refused: bad signature: does not verify with trusted key {}",
                key.key_id()
            ),
        ),
        (
            "signature over other bytes",
            Some(as_object(&sign_v(&other_bytes, &key))),
            format!(
                "validator: signature refused: content changed after signing: signed sha256 {}, file has {}",
                sha256(&other_bytes),
                sha256(&v2)
            ),
        ),
        (
            "a valid signature made for another name (redact-v2, privacy)",
            Some(moved("redact-v2", "privacy")),
            "validator: signature refused: signed for name \"redact-v2\", installed as \"validator\"".into(),
        ),
        (
            "a valid signature made for another kind",
            Some(moved("validator", "privacy")),
            "validator: signature refused: signed for kind \"privacy\", installed as \"validator\"".into(),
        ),
        (
            "unsigned",
            None,
            "validator: signature refused: unsigned (every rollout entry must be signed)".into(),
        ),
    ];
    let mut publisher = Publisher::new(&key);
    let cases: Vec<(&str, String, String)> = cases
        .into_iter()
        .map(|(what, sig, reason)| {
            let entry = validator_entry("files/v2.wasm", &sha256(&v2), sig);
            (what, publisher.publish(vec![entry]), reason)
        })
        .collect();
    let hub = Arc::new(Hub::default());
    hub.put("v2.wasm", &v2);
    // The same bytes under another name, so its downloads count apart.
    hub.put("v2-signed.wasm", &v2);
    hub.set_manifest(cases[0].1.clone());
    let (_server, addr, _) = serve(&hub);

    let mut h = start_signed(&key, addr);
    let dest = h.plugins.join("validator.wasm");
    let dest_sig = h.plugins.join("validator.wasm.sig");
    let v1_sig = std::fs::read(&dest_sig).unwrap();
    assert_eq!(v1_sig, sign_v(&v1, &key).to_json().into_bytes());

    for (what, manifest, reason) in &cases {
        hub.set_manifest(manifest.clone());
        wait_for_failure(&mut h, what, |r| r == reason);
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            v1,
            "{what}: component unchanged"
        );
        assert_eq!(
            std::fs::read(&dest_sig).unwrap(),
            v1_sig,
            "{what}: .sig unchanged"
        );
    }
    // Every refusal named the validator and one of the reasons above.
    let failures = h.lifecycle("rollout.failed");
    for p in &failures {
        assert_eq!(p["name"], "validator", "{p}");
        assert!(cases.iter().any(|c| p["reason"] == c.2.as_str()), "{p}");
    }
    assert!(
        h.log_count("rollout failed; nothing changed") >= failures.len(),
        "an error line beside every event"
    );
    // Refused downloads never touched the directory, so hot reload saw
    // nothing, and no manifest was remembered.
    assert!(h.lifecycle("plugin.rejected").is_empty(), "{}", h.log());
    assert!(h.lifecycle("plugin.reloaded").is_empty(), "{}", h.log());
    assert!(h.lifecycle("rollout.installed").is_empty(), "{}", h.log());
    assert_eq!(count(&hub.conditional), 0);
    // Each refusal came after a complete download.
    assert!(hub.downloads("v2.wasm") >= cases.len() as u64);

    let good = sign_v(&v2, &key);
    hub.set_manifest(publisher.publish(vec![validator_entry(
        "files/v2-signed.wasm",
        &sha256(&v2),
        Some(as_object(&good)),
    )]));
    h.send_until(Served::V2, 20_000);
    assert_eq!(std::fs::read(&dest).unwrap(), v2);
    assert_eq!(
        std::fs::read(&dest_sig).unwrap(),
        good.to_json().into_bytes()
    );
    assert_eq!(h.validator_status()["sha256"], sha256(&v2));
    wait_for("a 304 after the install", POLL_BOUND, || {
        count(&hub.not_modified) > 0
    });
    assert_eq!(hub.downloads("v2-signed.wasm"), 1);
    let installed = h.lifecycle("rollout.installed");
    assert_eq!(installed.len(), 1, "{}", h.log());
    assert_eq!(installed[0]["name"], "validator");
    assert_eq!(installed[0]["sha256"], sha256(&v2));
    let reloaded = h.lifecycle("plugin.reloaded");
    assert_eq!(reloaded.len(), 1, "{}", h.log());
    // The download was compiled into the cache before it was installed,
    // so the swap itself loaded from the cache (a warm swap).
    assert_eq!(reloaded[0]["from_cache"], true, "{}", h.log());
    assert!(h.lifecycle("plugin.rejected").is_empty(), "{}", h.log());
    h.finish();
    eprintln!("signed rollout test took {:?}", started.elapsed());
}

/// One manifest, never changed, whose component URL (absolute, on another
/// server) first answers 404, then drops the connection half way through
/// the body: each failure changes nothing in the plugin directory (no temp
/// file left either), v1 serves throughout, and a `rollout.failed` event
/// names the plugin, the URL and why. The ETag is not remembered on
/// failure (no poll carries `If-None-Match`), so every poll retries; once
/// the file downloads whole it is installed, v2 serves, only then does the
/// manifest answer 304, and the file was downloaded whole exactly once.
#[test]
fn failed_downloads_change_nothing_and_are_retried_until_the_file_is_served() {
    let started = Instant::now();
    let v1 = std::fs::read(components::RANGE_VALIDATOR).unwrap();
    let v2 = std::fs::read(components::HOSTILE_VALIDATOR).unwrap();
    let key = KeyPair::generate().unwrap();
    let sig = as_object(&sign_as(&v2, "validator", "validator", &key));
    let hub = Arc::new(Hub::default());
    let (_server, addr, bare) = serve(&hub);
    let url = format!("http://{bare}/files/v2.wasm");
    hub.set_manifest(Publisher::new(&key).publish(vec![validator_entry(
        &url,
        &sha256(&v2),
        Some(sig),
    )]));

    let mut h = start_signed(&key, addr);
    let dest = h.plugins.join("validator.wasm");
    let before = dir_listing(&h.plugins);
    // Two 404s in a row: the second is a retry of the same manifest.
    let not_found = format!("download {url}: HTTP 404 Not Found");
    wait_for("two polls refused with 404", POLL_BOUND, || {
        assert_eq!(h.send(), Served::V1, "v1 keeps serving");
        h.lifecycle("rollout.failed")
            .iter()
            .filter(|p| p["reason"] == not_found.as_str())
            .count()
            >= 2
    });
    assert_eq!(std::fs::read(&dest).unwrap(), v1, "a 404 changes nothing");
    assert_eq!(count(&hub.conditional), 0, "ETag remembered");

    // The file exists now but its connection drops mid-body.
    hub.cut.lock().unwrap().insert("v2.wasm".into());
    hub.put("v2.wasm", &v2);
    let dropped = format!("download {url}: error decoding response body");
    wait_for_failure(&mut h, "connection dropped", |r| r == dropped);
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        v1,
        "a cut download changes nothing"
    );
    assert_eq!(count(&hub.conditional), 0, "ETag remembered");
    assert_eq!(hub.downloads("v2.wasm"), 0);
    for p in h.lifecycle("rollout.failed") {
        assert_eq!(p["name"], "validator", "{p}");
        assert!(
            p["reason"] == not_found.as_str() || p["reason"] == dropped.as_str(),
            "{p}"
        );
    }
    assert_eq!(dir_listing(&h.plugins), before, "no temp file left");

    // Served whole, the same manifest now installs.
    hub.cut.lock().unwrap().clear();
    h.send_until(Served::V2, 20_000);
    assert_eq!(std::fs::read(&dest).unwrap(), v2);
    assert_eq!(h.validator_status()["sha256"], sha256(&v2));
    wait_for("a 304 after the install", POLL_BOUND, || {
        count(&hub.not_modified) > 0
    });
    assert_eq!(hub.downloads("v2.wasm"), 1);
    assert_eq!(h.lifecycle("rollout.installed").len(), 1, "{}", h.log());
    assert_eq!(h.lifecycle("plugin.reloaded").len(), 1, "{}", h.log());
    h.finish();
    eprintln!("failed-download test took {:?}", started.elapsed());
}

/// With trusted keys, a verified download whose install fails (the
/// component's temp file cannot be created: a directory squats its name)
/// leaves the component *and its `.sig`* exactly as they were, so the
/// installed pair still verifies and a restart would load v1; no temp file
/// is left behind. The failure is reported, and once the obstacle is gone
/// the next poll installs v2 with its signature.
#[test]
fn a_failed_install_leaves_component_and_signature_as_they_were() {
    let started = Instant::now();
    let key = KeyPair::generate().unwrap();
    let v1 = std::fs::read(components::RANGE_VALIDATOR).unwrap();
    let v2 = std::fs::read(components::HOSTILE_VALIDATOR).unwrap();
    let good = sign_as(&v2, "validator", "validator", &key);
    let hub = Arc::new(Hub::default());
    // Not downloadable yet: the host must be up (its pid known) first.
    hub.set_manifest(Publisher::new(&key).publish(vec![validator_entry(
        "files/v2.wasm",
        &sha256(&v2),
        Some(as_object(&good)),
    )]));
    let (_server, addr, _) = serve(&hub);
    let mut h = start_signed(&key, addr);
    let dest = h.plugins.join("validator.wasm");
    let dest_sig = h.plugins.join("validator.wasm.sig");
    let v1_sig = std::fs::read(&dest_sig).unwrap();
    let before = dir_listing(&h.plugins);
    let pid = h.lifecycle("host.start")[0]["pid"].as_u64().unwrap();
    // The rollout's temp name for the component, taken by a directory.
    let squatter = h.plugins.join(format!(".validator.wasm.{pid}.tmp"));
    std::fs::create_dir(&squatter).unwrap();
    hub.put("v2.wasm", &v2);
    let reason = format!("install {}: Is a directory (os error 21)", dest.display());
    wait_for_failure(&mut h, "install blocked", |r| r == reason);
    assert_eq!(std::fs::read(&dest).unwrap(), v1, "component unchanged");
    assert_eq!(
        String::from_utf8(std::fs::read(&dest_sig).unwrap()).unwrap(),
        String::from_utf8(v1_sig).unwrap(),
        ".sig unchanged: it must still verify the installed component"
    );
    let here = halyard_trust::plugin_sig::Expected {
        name: "validator",
        kind: Some("validator"),
        fleet: None,
    };
    halyard_trust::plugin_sig::verify(
        &std::fs::read(&dest).unwrap(),
        &std::fs::read(&dest_sig).unwrap(),
        &here,
        &[key.public_key()],
    )
    .expect("the installed pair still verifies, so a restart loads v1");
    let mut expected = before.clone();
    expected.push(squatter.file_name().unwrap().to_string_lossy().into_owned());
    expected.sort();
    assert_eq!(dir_listing(&h.plugins), expected, "no temp file left");

    std::fs::remove_dir(&squatter).unwrap();
    h.send_until(Served::V2, 20_000);
    assert_eq!(std::fs::read(&dest).unwrap(), v2);
    assert_eq!(
        std::fs::read(&dest_sig).unwrap(),
        good.to_json().into_bytes()
    );
    assert_eq!(dir_listing(&h.plugins), before);
    assert_eq!(h.lifecycle("rollout.installed").len(), 1, "{}", h.log());
    assert!(h.lifecycle("plugin.rejected").is_empty(), "{}", h.log());
    h.finish();
    eprintln!("failed-install test took {:?}", started.elapsed());
}

/// The names in `dir`, sorted.
fn dir_listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
