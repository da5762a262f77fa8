//! `${VAR}` and `${VAR:-default}` substitution in the config text, done
//! before parsing so any value (a URL, a key, a path) can come from the
//! environment. `$$` is a literal `$`.

/// A reference to an unset variable without a default, or a malformed one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubstituteError {
    /// `${NAME}` with `NAME` unset and no `:-default`.
    #[error(
        "line {line}: environment variable `{name}` is not set (use ${{{name}:-default}} to give a default)"
    )]
    Unset {
        /// 1-based line of the reference.
        line: usize,
        /// The variable.
        name: String,
    },
    /// `${` without a closing `}`, or an empty or invalid name.
    #[error("line {line}: malformed variable reference `{text}`")]
    Malformed {
        /// 1-based line of the reference.
        line: usize,
        /// The text at fault.
        text: String,
    },
}

/// Replaces every `${VAR}` / `${VAR:-default}` in `text`, looking names up
/// with `lookup` (the process environment in production, a map in tests).
pub fn substitute(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, SubstituteError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut line = 1;
    while let Some(pos) = rest.find('$') {
        let (before, after) = rest.split_at(pos);
        line += before.matches('\n').count();
        out.push_str(before);
        if let Some(tail) = after.strip_prefix("$$") {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body_start) = after.strip_prefix("${") else {
            out.push('$');
            rest = &after[1..];
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err(SubstituteError::Malformed {
                line,
                text: after.lines().next().unwrap_or(after).to_string(),
            });
        };
        let body = &body_start[..end];
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(SubstituteError::Malformed {
                line,
                text: format!("${{{body}}}"),
            });
        }
        match lookup(name).or_else(|| default.map(str::to_string)) {
            Some(value) => out.push_str(&value),
            None => {
                return Err(SubstituteError::Unset {
                    line,
                    name: name.to_string(),
                });
            }
        }
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HUB" => Some("http://hub:8080".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_values_and_defaults() {
        let text =
            "url = \"${HUB}/v1\"\nkey = \"${KEY:-none}\"\ne = \"${EMPTY:-x}\"\ncost = \"$$5 $x\"";
        assert_eq!(
            substitute(text, env).unwrap(),
            "url = \"http://hub:8080/v1\"\nkey = \"none\"\ne = \"\"\ncost = \"$5 $x\""
        );
    }

    #[test]
    fn unset_and_malformed_name_the_line() {
        assert_eq!(
            substitute("a = 1\nb = \"${NOPE}\"", env).unwrap_err(),
            SubstituteError::Unset {
                line: 2,
                name: "NOPE".into()
            }
        );
        let err = substitute("\n\nx = \"${BAD NAME}\"", env).unwrap_err();
        assert!(
            matches!(err, SubstituteError::Malformed { line: 3, .. }),
            "{err}"
        );
        let err = substitute("x = \"${OPEN", env).unwrap_err();
        assert!(
            matches!(err, SubstituteError::Malformed { line: 1, .. }),
            "{err}"
        );
    }
}
