//! A FIFO, a symlink to a device or a huge file renamed over a running
//! plugin is refused at once with the reason, and the old version keeps
//! serving; the reloader is not stuck on it (the next good deploy is taken).

use std::path::Path;

use halyard_test_components as components;

use crate::support::{Served, deploy, start};

/// Makes `kind` of special file at `tmp` (a dotfile the watcher ignores).
fn make(kind: &str, tmp: &Path) {
    match kind {
        "fifo" => rustix::fs::mknodat(
            rustix::fs::CWD,
            tmp,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mkfifo"),
        "device" => std::os::unix::fs::symlink("/dev/zero", tmp).unwrap(),
        // Sparse: 300 MB that cost no disk.
        "huge" => std::fs::File::create(tmp)
            .unwrap()
            .set_len(300 << 20)
            .unwrap(),
        other => panic!("{other}"),
    }
}

#[test]
fn special_and_huge_files_renamed_over_a_plugin_are_refused_while_v1_serves() {
    let mut h = start("", "", |_| Vec::new());
    assert_eq!(h.send(), Served::V1);
    let dest = h.plugins.join("validator.wasm");
    let cases = [
        ("fifo", "is a FIFO (named pipe), not a regular file"),
        (
            "device",
            "is a character device (a symlink to /dev/zero), not a regular file",
        ),
        (
            "huge",
            "is 300 MiB (314572800 bytes), over the 64 MiB limit",
        ),
    ];
    for (i, (kind, reason)) in cases.into_iter().enumerate() {
        let tmp = h.plugins.join(format!(".validator.wasm.{kind}.tmp"));
        make(kind, &tmp);
        std::fs::rename(&tmp, &dest).unwrap();
        h.expect_refusal(i, kind, reason);
    }
    assert_eq!(
        h.log_count("\"kind\":\"plugin.reloaded\""),
        0,
        "{}",
        h.log()
    );
    // The reloader is free: a good version deployed now is taken.
    let v2 = std::fs::read(components::HOSTILE_VALIDATOR).unwrap();
    deploy(&dest, &v2, None);
    h.send_until(Served::V2, 5000);
    h.finish();
}
