//! The data directory at rest: owner-only permissions (set at creation,
//! tightened when found looser) and a compile cache whose artefacts are
//! authenticated before they are loaded as native code.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use halyard_test_components as components;

use crate::support::{Served, sha256, start};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The compile-cache artefact of the component with content `sha`.
fn artefact(cache: &Path, sha: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{sha}-"))
        })
        .collect();
    assert_eq!(found.len(), 1, "one artefact for {sha}: {found:?}");
    found[0].clone()
}

/// A fresh host creates its data directory 0700 and the buffer, its WAL,
/// the host key, the cache secret and the ledger 0600. While it is down,
/// the validator's cache artefact is replaced by the decoder's (valid
/// native code, authentic for another name) and the directory and buffer
/// are opened up: the next start tightens both (logged), refuses the
/// swapped artefact (logged, deleted), recompiles the validator and serves
/// with it; a byte flipped in the fresh artefact is refused the same way.
#[test]
fn permissions_are_owner_only_and_a_tampered_cache_file_is_recompiled_not_loaded() {
    let mut h = start("", "", |_| Vec::new());
    assert_eq!(h.send(), Served::V1);
    let data = h.data_dir().to_path_buf();
    assert_eq!(mode(&data), 0o700, "data_dir");
    for file in [
        "buffer.db",
        "buffer.db-wal",
        "host.key",
        "cache.key",
        "rollback.json",
    ] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&data.join("cache")), 0o700, "cache dir");
    assert_eq!(mode(&data.join("rollback")), 0o700, "last-good copies");

    let cache = data.join("cache");
    let validator = sha256(&std::fs::read(components::RANGE_VALIDATOR).unwrap());
    let decoder = sha256(&std::fs::read(components::JSONL_DECODER).unwrap());
    let target = artefact(&cache, &validator);
    let mut h = h.restart(|data| {
        std::fs::copy(artefact(&cache, &decoder), &target).unwrap();
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(
            data.join("buffer.db"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    });
    for _ in 0..3 {
        assert_eq!(h.send(), Served::V1, "the validator was recompiled");
    }
    let refused = "compile-cache artefact failed authentication: deleted, not loaded; recompiling";
    assert_eq!(h.log_count(refused), 1, "{}", h.log());
    assert!(h.log().contains(&target.display().to_string()));
    assert_eq!(
        h.log_count("permissions were looser than owner-only: tightened"),
        2
    );
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("buffer.db")), 0o600);

    // The recompiled artefact is authentic; one flipped byte is not.
    let mut h = h.restart(|_| {
        let mut bytes = std::fs::read(&target).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 1;
        std::fs::write(&target, bytes).unwrap();
    });
    for _ in 0..3 {
        assert_eq!(h.send(), Served::V1);
    }
    assert_eq!(h.log_count(refused), 1, "{}", h.log());
    h.finish();
}
