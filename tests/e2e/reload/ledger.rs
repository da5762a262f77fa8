//! The rollback ledger across restarts: a version rolled back stays rolled
//! back, and the last good file is what is on disk.

use std::time::Duration;

use halyard_test_components as components;

use crate::pipeline_support::wait_for;
use crate::support::{Served, deploy, sha256, start};

/// The content hash of the file at `path`.
fn on_disk(path: &std::path::Path) -> String {
    sha256(&std::fs::read(path).unwrap())
}

/// v2 (the hostile validator, trapping after 3 calls) is deployed, serves,
/// traps and is rolled back: the last good file (v1) is back on disk at
/// once, and the restore is not taken for a deploy. After a restart v1
/// serves, and v2 deployed again is refused by the ledger kept in
/// `data_dir`. v2 copied over the file while the host is down is replaced
/// by the last good copy before anything loads. Every event is accepted or
/// rejected exactly once and the receiver stores exactly the accepted ones.
#[test]
fn a_rollback_survives_a_restart_and_the_last_good_file_is_restored_on_disk() {
    let mut h = start(
        ", mode = \"trap-after\", calls = 3",
        "[reload]\nrollback_after_traps = 2\n",
        |_| Vec::new(),
    );
    let dest = h.plugins.join("validator.wasm");
    let v1 = std::fs::read(components::RANGE_VALIDATOR).unwrap();
    let v2 = std::fs::read(components::HOSTILE_VALIDATOR).unwrap();
    assert_eq!(h.send(), Served::V1);
    deploy(&dest, &v2, None);
    h.send_until(Served::V2, 5000);
    // Traps fail closed (rejected), so keep sending until rolled back.
    wait_for("rollback", Duration::from_secs(30), || {
        h.send();
        h.log_count("new plugin version rolled back") == 1
    });
    assert_eq!(
        on_disk(&dest),
        sha256(&v1),
        "last good file on disk: {}",
        h.log()
    );
    for _ in 0..5 {
        assert_eq!(h.send(), Served::V1);
    }
    assert_eq!(h.validator_status()["sha256"], sha256(&v1));
    let ledger: serde_json::Value =
        serde_json::from_slice(&std::fs::read(h.data_dir().join("rollback.json")).unwrap())
            .unwrap();
    assert_eq!(ledger["bad"], serde_json::json!([sha256(&v2)]));

    let mut h = h.restart(|_| {});
    for _ in 0..5 {
        assert_eq!(h.send(), Served::V1);
    }
    assert_eq!(h.validator_status()["sha256"], sha256(&v1));
    deploy(&dest, &v2, None);
    h.expect_refusal(0, "v2 again after the restart", "was rolled back before");
    assert_eq!(h.lifecycle("plugin.reloaded").len(), 0, "{}", h.log());

    // v2 put back by hand while the host is down.
    let mut h = h.restart(|_| {
        std::fs::write(&dest, &v2).unwrap();
    });
    assert_eq!(
        on_disk(&dest),
        sha256(&v1),
        "restored before start: {}",
        h.log()
    );
    assert_eq!(
        h.log_count(
            "plugin file held a rolled-back version: last good version put back before start"
        ),
        1,
        "{}",
        h.log()
    );
    for _ in 0..5 {
        assert_eq!(h.send(), Served::V1);
    }
    assert_eq!(h.validator_status()["sha256"], sha256(&v1));
    h.finish();
}
