//! `halyard plugin new NAME --kind KIND [--lang rust|js|python]`: writes a
//! plugin project that builds on its own, outside this repository: the
//! source, the WIT it implements, a build script, and an expectations file
//! (`cases.jsonl`) that `halyard plugin test` runs against the build.
//!
//! The templates live in `templates/` beside this file and are compiled
//! into the binary, with the WIT files and the JS and Python helpers, so a
//! project made by an installed `halyard` matches that host's contract.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::plugin::PluginKind;

/// The languages `plugin new` writes projects in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with the `halyard-sdk` crate (contract 0.2.0).
    Rust,
    /// JavaScript, built with componentize-js (contract 0.1.0).
    Js,
    /// Python, built with componentize-py (contract 0.1.0).
    Python,
}

/// Arguments of `halyard plugin new`.
#[derive(Debug, Clone, clap::Args)]
pub struct NewArgs {
    /// The plugin's name: lowercase letters, digits and `-`, starting with a
    /// letter (it names the crate or package and the component).
    pub name: String,
    /// The kind of plugin.
    #[arg(long)]
    pub kind: PluginKind,
    /// The language.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    pub lang: Lang,
    /// Where to write it (default: ./NAME). Must not exist or be empty.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Rust: the path of the `halyard-sdk` crate (the halyard repository's
    /// `guests/sdk`). Default: the one this binary was built from.
    #[arg(long, value_name = "PATH")]
    pub sdk: Option<PathBuf>,
}

const WIT_0_1: &str = include_str!("../../../wit/plugin.wit");
const WIT_0_2: &str = include_str!("../../../wit/0.2.0/plugin.wit");
const WIT_0_3: &str = include_str!("../../../wit/0.3.0/plugin.wit");
const WIT_0_4: &str = include_str!("../../../wit/0.4.0/plugin.wit");
const JS_HELPER: &str = include_str!("../../../guests/js/halyard.js");
const JS_BUILD: &str = include_str!("../../../guests/js/build.mjs");
/// The guests' lock file: a new Rust project starts with the dependency
/// versions this repository's guests build and test with (cargo drops the
/// entries the project does not use).
const GUESTS_LOCK: &str = include_str!("../../../guests/Cargo.lock");
const PY_HELPER: &str = include_str!("../../../guests/python/halyard_plugin/__init__.py");

/// One file of a project: its path in the project and its text.
type File = (&'static str, String);

/// Writes the project; prints what was written and the next command.
pub fn new(args: &NewArgs) -> anyhow::Result<ExitCode> {
    check_name(&args.name)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!("{} exists and is not empty", dir.display());
    }
    let files = match args.lang {
        Lang::Rust => rust(args)?,
        Lang::Js => js(args)?,
        Lang::Python => python(args)?,
    };
    for (path, text) in &files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        if path.extension().is_some_and(|e| e == "sh") {
            make_executable(&path)?;
        }
    }
    println!(
        "created {} ({} {}) in {}",
        args.name,
        lang_name(args.lang),
        args.kind,
        dir.display()
    );
    for (path, _) in &files {
        println!("  {path}");
    }
    println!(
        "next: {}/build.sh   (builds the component, then runs `halyard plugin test` on cases.jsonl)",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn lang_name(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "Rust",
        Lang::Js => "JavaScript",
        Lang::Python => "Python",
    }
}

/// A name that is a valid crate, npm package and file name alike.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        bail!(
            "plugin name `{name}`: use lowercase letters, digits and `-`, starting with a letter (at most 64)"
        );
    }
    Ok(())
}

fn fill(template: &str, args: &NewArgs, sdk: &str) -> String {
    template
        .replace("{{name}}", &args.name)
        .replace("{{crate}}", &args.name.replace('-', "_"))
        .replace("{{kind}}", &args.kind.to_string())
        .replace("{{sdk}}", sdk)
}

fn cases(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::Source => include_str!("templates/cases/source.jsonl"),
        PluginKind::Decoder => include_str!("templates/cases/decoder.jsonl"),
        PluginKind::Validator => include_str!("templates/cases/validator.jsonl"),
        PluginKind::Privacy => include_str!("templates/cases/privacy.jsonl"),
        PluginKind::Sampler => include_str!("templates/cases/sampler.jsonl"),
        PluginKind::Detector => include_str!("templates/cases/detector.jsonl"),
    }
}

fn rust(args: &NewArgs) -> anyhow::Result<Vec<File>> {
    let sdk = sdk_path(args.sdk.as_deref())?;
    let sdk = sdk.to_string_lossy().replace('\\', "/");
    let source = match args.kind {
        PluginKind::Source => include_str!("templates/rust/source.rs"),
        PluginKind::Decoder => include_str!("templates/rust/decoder.rs"),
        PluginKind::Validator => include_str!("templates/rust/validator.rs"),
        PluginKind::Privacy => include_str!("templates/rust/privacy.rs"),
        PluginKind::Sampler => include_str!("templates/rust/sampler.rs"),
        PluginKind::Detector => include_str!("templates/rust/detector.rs"),
    };
    let f = |t: &str| fill(t, args, &sdk);
    let mut files = vec![
        ("Cargo.toml", f(include_str!("templates/rust/Cargo.toml"))),
        ("Cargo.lock", GUESTS_LOCK.to_string()),
        ("src/lib.rs", f(source)),
        ("cases.jsonl", cases(args.kind).to_string()),
        ("build.sh", f(include_str!("templates/rust/build.sh"))),
        (".gitignore", "/target\n".to_string()),
        ("wit/0.2.0/plugin.wit", WIT_0_2.to_string()),
        (
            "wit/0.2.0/deps/halyard-plugin-0.1.0.wit",
            WIT_0_1.to_string(),
        ),
    ];
    if args.kind == PluginKind::Detector {
        // The detector world is contract 0.3.0: its WIT, for reference.
        files.push(("wit/0.3.0/plugin.wit", WIT_0_3.to_string()));
        files.push((
            "wit/0.3.0/deps/halyard-plugin-0.1.0.wit",
            WIT_0_1.to_string(),
        ));
    }
    if args.kind == PluginKind::Privacy {
        // The SDK exports a privacy policy as contract 0.4.0 (a flat
        // answer): its WIT, for reference.
        files.push(("wit/0.4.0/plugin.wit", WIT_0_4.to_string()));
        files.push((
            "wit/0.4.0/deps/halyard-plugin-0.1.0.wit",
            WIT_0_1.to_string(),
        ));
    }
    Ok(files)
}

fn js(args: &NewArgs) -> anyhow::Result<Vec<File>> {
    let source = match args.kind {
        PluginKind::Validator => include_str!("templates/js/validator.js"),
        PluginKind::Privacy => include_str!("templates/js/privacy.js"),
        PluginKind::Sampler => include_str!("templates/js/sampler.js"),
        other => bail!(
            "no JavaScript template for a {other} yet: use --lang rust, or start from a validator"
        ),
    };
    let f = |t: &str| fill(t, args, "");
    let main = match args.kind {
        PluginKind::Validator => "validator.js",
        PluginKind::Privacy => "privacy.js",
        _ => "sampler.js",
    };
    Ok(vec![
        (main, f(source)),
        ("halyard.js", JS_HELPER.to_string()),
        ("build.mjs", JS_BUILD.to_string()),
        ("package.json", f(include_str!("templates/js/package.json"))),
        ("build.sh", f(include_str!("templates/js/build.sh"))),
        ("cases.jsonl", cases(args.kind).to_string()),
        (".gitignore", "/node_modules\n*.wasm\n".to_string()),
        ("wit/plugin.wit", WIT_0_1.to_string()),
    ])
}

fn python(args: &NewArgs) -> anyhow::Result<Vec<File>> {
    let source = match args.kind {
        PluginKind::Validator => include_str!("templates/python/validator.py"),
        PluginKind::Privacy => include_str!("templates/python/privacy.py"),
        PluginKind::Sampler => include_str!("templates/python/sampler.py"),
        other => bail!(
            "no Python template for a {other} yet: use --lang rust, or start from a validator"
        ),
    };
    let f = |t: &str| fill(t, args, "");
    Ok(vec![
        ("app.py", f(source)),
        ("halyard_plugin/__init__.py", PY_HELPER.to_string()),
        (
            "requirements.txt",
            include_str!("templates/python/requirements.txt").to_string(),
        ),
        ("build.sh", f(include_str!("templates/python/build.sh"))),
        ("cases.jsonl", cases(args.kind).to_string()),
        (".gitignore", "*.wasm\n__pycache__/\n".to_string()),
        ("wit/plugin.wit", WIT_0_1.to_string()),
    ])
}

/// The SDK crate to depend on: `--sdk`, else the one beside this binary's
/// source tree. Must hold a Cargo.toml naming `halyard-sdk`.
fn sdk_path(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../guests/sdk")),
    };
    let manifest = std::fs::read_to_string(path.join("Cargo.toml")).with_context(|| {
        format!(
            "no halyard-sdk crate at {}: pass --sdk PATH (the halyard repository's guests/sdk)",
            path.display()
        )
    })?;
    if !manifest.contains("name = \"halyard-sdk\"") {
        bail!("{} is not the halyard-sdk crate", path.display());
    }
    path.canonicalize()
        .with_context(|| format!("cannot resolve {}", path.display()))
}

#[cfg(unix)]
fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> anyhow::Result<()> {
    Ok(())
}
