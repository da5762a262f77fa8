//! The on-disk compile cache: a second load reads the artefact instead of
//! compiling, and a damaged artefact is a miss, never a failure.

use halyard::plugin::{PluginKind, PluginOptions, Runtime};
use halyard_test_components as components;

#[test]
fn second_load_comes_from_the_cache_and_corruption_is_a_miss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let load = || {
        let rt = Runtime::new(Some(dir.path().to_path_buf())).expect("runtime");
        rt.load(
            components::FRACTION_SAMPLER.as_ref(),
            Some(PluginKind::Sampler),
            PluginOptions::default(),
        )
        .expect("load")
    };
    let first = load();
    assert!(!first.from_cache);
    let artefacts: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(artefacts.len(), 1, "{artefacts:?}");
    assert!(
        artefacts[0].starts_with(&first.sha256),
        "keyed by content hash"
    );

    let second = load();
    assert!(second.from_cache, "second load reads the artefact");
    assert_eq!(second.sha256, first.sha256);

    std::fs::write(dir.path().join(&artefacts[0]), b"not an artefact").unwrap();
    let third = load();
    assert!(!third.from_cache, "a corrupt artefact is recompiled");
    let events = vec![crate::support::reading("d1", "temp", Some(1.0))];
    assert_eq!(
        third.instance().sample(&events).expect("sample"),
        vec![true]
    );
    assert!(load().from_cache, "and rewritten");
}
