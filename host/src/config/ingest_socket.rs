//! `socket = { … }` of an http input: the same ingest served on a Unix
//! domain socket, for applications on the same machine.
//!
//! Why a socket beside TCP: a local application then needs no port and no
//! token — who may post is who may open the socket file, which the
//! operator sets with `mode` and `group` like any other file permission.
//!
//! ```toml
//! [[input]]
//! type = "http"
//! name = "apps"
//! socket = { path = "/run/halyard/ingest.sock", mode = "0660", group = "halyard-apps" }
//! auth = "none"
//! decoder = { plugin = "plugins/jsonl-decoder.wasm" }
//! ```

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest socket path the kernel takes (`sun_path` is 108 bytes on
/// Linux, with its terminating NUL).
pub const MAX_SOCKET_PATH_BYTES: usize = 107;

/// `socket = { path, mode, group }` of an http input.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSocket {
    /// Where the socket file is made (an absolute path; its directory must
    /// exist). A stale file left by a host that died is replaced at start;
    /// one a running process still serves is not (the start fails); the
    /// file is removed at stop.
    pub path: PathBuf,
    /// The socket file's permission bits, octal (`"0660"`, or the TOML
    /// integer `0o660`): who may connect. Default `0660`: the host's user
    /// and group.
    #[serde(default = "default_mode")]
    pub mode: SocketMode,
    /// The group the socket file is given (a name from `/etc/group` or a
    /// numeric id), so that its members may post with `mode = "0660"`.
    /// Unset: the host's own group.
    #[serde(default)]
    pub group: Option<String>,
}

fn default_mode() -> SocketMode {
    SocketMode::new(0o660)
}

/// Permission bits of the socket file, as written. Any string or integer
/// is taken when the file is parsed; [`IngestSocket::problem`] then
/// refuses one that is not octal bits within `0777`, naming the key and
/// its line (a parse error inside an `[[input]]` could only point at the
/// table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketMode {
    /// What the config said.
    written: String,
    /// The bits, if `written` is valid.
    bits: Option<u32>,
}

impl SocketMode {
    /// Mode `bits` (for defaults and programmatic configs).
    pub fn new(bits: u32) -> SocketMode {
        SocketMode {
            written: format!("{bits:04o}"),
            bits: (bits <= 0o777).then_some(bits),
        }
    }

    /// The permission bits, or `None` if the config's value is not valid.
    pub fn bits(&self) -> Option<u32> {
        self.bits
    }

    /// From an octal string (`"0660"`, `"660"`, `"0o660"`).
    fn parse(written: &str) -> SocketMode {
        let digits = written.trim();
        let digits = digits.strip_prefix("0o").unwrap_or(digits);
        let bits = (!digits.is_empty() && digits.len() <= 4)
            .then(|| u32::from_str_radix(digits, 8).ok())
            .flatten()
            .filter(|b| *b <= 0o777);
        SocketMode {
            written: written.to_string(),
            bits,
        }
    }
}

impl fmt::Display for SocketMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.bits {
            Some(bits) => write!(f, "{bits:04o}"),
            None => f.write_str(&self.written),
        }
    }
}

impl Serialize for SocketMode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for SocketMode {
    /// A string or an integer (TOML `0o660` is the integer 432).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ModeVisitor;
        impl Visitor<'_> for ModeVisitor {
            type Value = SocketMode;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"permission bits in octal, e.g. "0660" or 0o660"#)
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<SocketMode, E> {
                Ok(SocketMode::parse(value))
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<SocketMode, E> {
                Ok(match u32::try_from(value) {
                    Ok(bits) => SocketMode::new(bits),
                    Err(_) => SocketMode {
                        written: value.to_string(),
                        bits: None,
                    },
                })
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<SocketMode, E> {
                self.visit_i64(i64::try_from(value).unwrap_or(-1))
            }
        }
        deserializer.deserialize_any(ModeVisitor)
    }
}

impl IngestSocket {
    /// What is wrong, as (key under `socket`, message); `None` if valid.
    pub fn problem(&self) -> Option<(String, String)> {
        let problem = |key: &str, message: String| Some((format!("socket.{key}"), message));
        if !self.path.is_absolute() {
            return problem(
                "path",
                format!(
                    "`{}` is not an absolute path (e.g. /run/halyard/ingest.sock)",
                    self.path.display()
                ),
            );
        }
        let len = self.path.as_os_str().len();
        if len > MAX_SOCKET_PATH_BYTES {
            return problem(
                "path",
                format!(
                    "is {len} bytes; a Unix socket path may have at most \
                     {MAX_SOCKET_PATH_BYTES}"
                ),
            );
        }
        let Some(bits) = self.mode.bits() else {
            return problem(
                "mode",
                format!(
                    "`{}` is not permission bits in octal within 0777 (e.g. \"0660\")",
                    self.mode
                ),
            );
        };
        if bits & 0o600 != 0o600 {
            return problem(
                "mode",
                format!(
                    "{} does not let the owner read and write the socket; give at least 0600",
                    self.mode
                ),
            );
        }
        if let Some(group) = &self.group
            && let Err(message) = resolve_group(group)
        {
            return problem("group", message);
        }
        None
    }
}

/// The numeric id of `group`: itself if it is a number, else its entry in
/// `/etc/group`. Groups known only to a directory service (LDAP, sssd) must
/// be given by number.
pub fn resolve_group(group: &str) -> Result<u32, String> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let table = std::fs::read_to_string("/etc/group")
        .map_err(|e| format!("`{group}`: cannot read /etc/group ({e}); give the numeric id"))?;
    table
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let gid = fields.nth(1)?.parse::<u32>().ok()?;
            Some((name, gid))
        })
        .find(|(name, _)| *name == group)
        .map(|(_, gid)| gid)
        .ok_or_else(|| {
            format!("no group `{group}` in /etc/group (create it, or give a numeric id)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(text: &str) -> Result<IngestSocket, String> {
        #[derive(Deserialize)]
        struct Wrap {
            socket: IngestSocket,
        }
        toml::from_str::<Wrap>(text)
            .map(|w| w.socket)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn modes_parse_in_octal_and_are_bounded() {
        let s = socket("socket = { path = \"/run/x.sock\" }").unwrap();
        assert_eq!((s.mode.bits(), s.group), (Some(0o660), None));
        for (text, bits) in [("\"0640\"", 0o640), ("\"600\"", 0o600), ("0o666", 0o666)] {
            let s = socket(&format!("socket = {{ path = \"/x\", mode = {text} }}")).unwrap();
            assert_eq!(s.mode.bits(), Some(bits), "{text}");
            assert_eq!(s.problem(), None);
        }
        for bad in ["\"0999\"", "\"rw-rw\"", "0o1777", "\"\"", "-1"] {
            let s = socket(&format!("socket = {{ path = \"/x\", mode = {bad} }}")).unwrap();
            assert_eq!(s.mode.bits(), None, "{bad}");
            let (key, _) = s.problem().expect("refused");
            assert_eq!(key, "socket.mode", "{bad}");
        }
        assert!(socket("socket = { path = \"/x\", mode = true }").is_err());
        assert_eq!(SocketMode::new(0o660).to_string(), "0660");
    }

    #[test]
    fn problems_name_the_key() {
        let s = |path: &str, mode: u32, group: Option<&str>| IngestSocket {
            path: PathBuf::from(path),
            mode: SocketMode::new(mode),
            group: group.map(str::to_string),
        };
        assert_eq!(s("/run/h.sock", 0o660, Some("0")).problem(), None);
        assert_eq!(s("/run/h.sock", 0o660, Some("root")).problem(), None);
        let key = |x: IngestSocket| x.problem().map(|(k, _)| k);
        assert_eq!(
            key(s("h.sock", 0o660, None)).as_deref(),
            Some("socket.path")
        );
        let long = format!("/{}", "a".repeat(120));
        assert_eq!(key(s(&long, 0o660, None)).as_deref(), Some("socket.path"));
        assert_eq!(key(s("/h", 0o060, None)).as_deref(), Some("socket.mode"));
        assert_eq!(
            key(s("/h", 0o660, Some("no-such-group-x9"))).as_deref(),
            Some("socket.group")
        );
    }
}
