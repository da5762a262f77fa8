//! Hostile guests that no Rust toolchain can produce (a table grown on
//! every call, many linear memories): written as core modules in WAT under
//! `tests/hostile/wat/`, given the `halyard:plugin` validator world's
//! metadata and wrapped into components with `wit-component`, as
//! `wasm-component-ld` does for the Rust guests.

use std::path::Path;

use wit_component::{ComponentEncoder, StringEncoding, embed_component_metadata};
use wit_parser::Resolve;

/// The WAT validators, by file stem; each becomes `<STEM>.wasm`.
pub const VALIDATORS: &[&str] = &["table-grower", "memory-hoarder"];

/// Builds every WAT validator into `out_dir`; returns `(const name, path)`.
pub fn build(root: &Path, out_dir: &Path) -> Vec<(String, String)> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_dir(root.join("wit"))
        .expect("the WIT package parses");
    let world = resolve
        .select_world(&[package], Some("validator"))
        .expect("the validator world exists");
    let mut built = Vec::new();
    for stem in VALIDATORS {
        let source = root.join("tests/hostile/wat").join(format!("{stem}.wat"));
        println!("cargo:rerun-if-changed={}", source.display());
        let mut module =
            wat::parse_file(&source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)
            .expect("embedding the world's metadata");
        let component = ComponentEncoder::default()
            .validate(true)
            .module(&module)
            .and_then(|mut encoder| encoder.encode())
            .unwrap_or_else(|e| panic!("componentizing {stem}: {e:#}"));
        let path = out_dir.join(format!("{stem}.wasm"));
        std::fs::write(&path, component).expect("write the component");
        built.push((
            stem.replace('-', "_").to_uppercase(),
            path.display().to_string(),
        ));
    }
    built
}
