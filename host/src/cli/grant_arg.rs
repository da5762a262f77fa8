//! `--grant` for `plugin check` and `plugin run`: the same capabilities a
//! plugin entry's `grants = { … }` gives it in the host config, so an
//! author can try a plugin offline exactly as `run` would load it.

use std::path::PathBuf;

use crate::plugin::{Grants, NetworkGrant, SocketRule};

/// One `--grant` value.
#[derive(Debug, Clone, PartialEq)]
pub enum GrantArg {
    /// `env=NAME`: the plugin may read this environment variable.
    Env(String),
    /// `read_dir=PATH`: the plugin may read this directory.
    ReadDir(PathBuf),
    /// `network`: any address.
    NetworkAny,
    /// `network=IP:PORT` (`*` for either): this destination.
    Network(SocketRule),
}

/// Parses `env=NAME`, `read_dir=PATH`, `network` or `network=IP:PORT`.
pub fn parse(s: &str) -> Result<GrantArg, String> {
    match s.split_once('=') {
        None if s == "network" => Ok(GrantArg::NetworkAny),
        Some(("env", name)) if !name.is_empty() => Ok(GrantArg::Env(name.to_string())),
        Some(("read_dir", path)) if !path.is_empty() => Ok(GrantArg::ReadDir(path.into())),
        Some(("network", rule)) => rule.parse().map(GrantArg::Network),
        _ => Err(format!(
            "`{s}` is not a grant: use env=NAME, read_dir=PATH, network or network=IP:PORT"
        )),
    }
}

/// The grants `args` add up to.
pub fn grants(args: &[GrantArg]) -> Grants {
    let mut grants = Grants::default();
    for arg in args {
        match arg {
            GrantArg::Env(name) => grants.env.push(name.clone()),
            GrantArg::ReadDir(dir) => grants.read_dirs.push(dir.clone()),
            GrantArg::NetworkAny => grants.network = NetworkGrant::Any,
            GrantArg::Network(rule) => match &mut grants.network {
                NetworkGrant::Any => {}
                NetworkGrant::Allow(rules) => rules.push(*rule),
                none => *none = NetworkGrant::Allow(vec![*rule]),
            },
        }
    }
    grants
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_add_up_and_bad_ones_are_named() {
        let args: Vec<GrantArg> = [
            "env=HOME",
            "read_dir=/tmp",
            "network=127.0.0.1:80",
            "network=*:443",
        ]
        .iter()
        .map(|s| parse(s).unwrap())
        .collect();
        let g = grants(&args);
        assert_eq!(g.env, ["HOME"]);
        assert_eq!(g.read_dirs, [PathBuf::from("/tmp")]);
        let NetworkGrant::Allow(rules) = &g.network else {
            panic!("{g:?}")
        };
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[1].to_string(), "*:443");
        assert_eq!(
            grants(&[parse("network").unwrap()]).network,
            NetworkGrant::Any
        );
        assert!(
            parse("network=localhost:80")
                .unwrap_err()
                .contains("localhost:80")
        );
        assert!(
            parse("disk=/")
                .unwrap_err()
                .contains("`disk=/` is not a grant")
        );
    }
}
