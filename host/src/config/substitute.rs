//! `${VAR}` and `${VAR:-default}` substitution, done inside the parsed
//! TOML's string values, never in the file's text. `$$` is a literal `$`.
//!
//! Substituting into the text let a value break the file: a key from the
//! environment containing `"` or a newline could end its string and add
//! tables of its own (`x"\n[evil]`). Here the file is parsed first and each
//! string value is substituted afterwards, so whatever a variable holds
//! stays one plain string. References are therefore only recognised inside
//! strings (quote them: `url = "${HUB}/v1"`); keys are never substituted.
//!
//! The values substituted are remembered ([`Substituted`]) so that error
//! messages can be scrubbed of them: a parse error quotes the offending
//! value, and that value may be a secret.

use std::borrow::Cow;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

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
        /// The text at fault (from the file, never a variable's value).
        text: String,
    },
}

/// What substitution put into the config, kept to scrub error messages.
#[derive(Debug, Default)]
pub struct Substituted {
    /// `(value as substituted, value as written in the file)`, longest
    /// first.
    pairs: Vec<(String, String)>,
}

impl Substituted {
    /// `message` with every substituted value (and every variable's value)
    /// replaced by what the file says there (`${NAME}`), so no error ever
    /// quotes a value that came from the environment.
    pub fn scrub(&self, message: &str) -> String {
        let mut out = message.to_string();
        for (value, raw) in &self.pairs {
            for form in [value.clone(), escaped(value)] {
                if !form.is_empty() && out.contains(&form) {
                    out = out.replace(&form, raw);
                }
            }
        }
        out
    }

    fn record(&mut self, value: &str, raw: &str) {
        // Very short values (`1`, `on`) would scrub ordinary words and
        // numbers out of messages; they are not secrets.
        if value.len() >= 4 && value != raw {
            self.pairs.push((value.to_string(), raw.to_string()));
            self.pairs.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
        }
    }
}

/// A value as `{:?}` prints it, without the quotes: how serde's messages
/// quote strings (`invalid value: string "…"`).
fn escaped(value: &str) -> String {
    let debug = format!("{value:?}");
    debug[1..debug.len() - 1].to_string()
}

/// Substitutes every string value in the parsed document `root` in place;
/// `text` is the file (for line numbers), `lookup` resolves names (the
/// process environment in production, a map in tests).
pub fn substitute_values(
    root: &mut Spanned<DeTable<'_>>,
    text: &str,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Substituted, SubstituteError> {
    let mut done = Substituted::default();
    for (_, value) in root.get_mut().iter_mut() {
        walk(value, text, lookup, &mut done)?;
    }
    Ok(done)
}

fn walk(
    value: &mut Spanned<DeValue<'_>>,
    text: &str,
    lookup: &impl Fn(&str) -> Option<String>,
    done: &mut Substituted,
) -> Result<(), SubstituteError> {
    let start = value.span().start.min(text.len());
    match value.get_mut() {
        DeValue::String(s) if s.contains('$') => {
            let raw = &text[start..];
            // A multi-line string drops the newline right after its
            // opening quotes; its first line is the next one.
            let trimmed = ["\"\"\"\n", "\"\"\"\r\n", "'''\n", "'''\r\n"]
                .iter()
                .any(|open| raw.starts_with(open));
            let line = text[..start].matches('\n').count() + 1 + usize::from(trimmed);
            let resolved = substitute(s, line, |name| {
                let found = lookup(name);
                if let Some(v) = &found {
                    done.record(v, &format!("${{{name}}}"));
                }
                found
            })?;
            done.record(&resolved, s);
            *s = Cow::Owned(resolved);
        }
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                walk(item, text, lookup, done)?;
            }
        }
        DeValue::Table(table) => {
            for (_, item) in table.iter_mut() {
                walk(item, text, lookup, done)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Replaces every `${VAR}` / `${VAR:-default}` in one string value;
/// `first_line` is the file line the value starts on.
pub fn substitute(
    value: &str,
    first_line: usize,
    mut lookup: impl FnMut(&str) -> Option<String>,
) -> Result<String, SubstituteError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    let mut line = first_line;
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
            Some(v) => out.push_str(&v),
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
            "EVIL" => Some("x\"\n[evil]\nkey = \"y".into()),
            _ => None,
        }
    }

    /// Parses `text`, substitutes, and returns the document as TOML values.
    fn resolve(text: &str) -> Result<toml::Table, SubstituteError> {
        let mut root = DeTable::parse(text).unwrap();
        substitute_values(&mut root, text, &env)?;
        let de = toml::de::Deserializer::from(root);
        Ok(serde::Deserialize::deserialize(de).unwrap())
    }

    #[test]
    fn substitutes_values_and_defaults() {
        let text =
            "url = \"${HUB}/v1\"\nkey = \"${KEY:-none}\"\ne = \"${EMPTY:-x}\"\ncost = \"$$5 $x\"";
        let table = resolve(text).unwrap();
        assert_eq!(table["url"].as_str(), Some("http://hub:8080/v1"));
        assert_eq!(table["key"].as_str(), Some("none"));
        assert_eq!(table["e"].as_str(), Some(""));
        assert_eq!(table["cost"].as_str(), Some("$5 $x"));
    }

    #[test]
    fn nested_tables_and_arrays_are_substituted() {
        let text = "[[input]]\nd = { plugin = \"${HUB}\", keys = [\"a\", \"${HUB}\"] }\n";
        let table = resolve(text).unwrap();
        let input = &table["input"][0]["d"];
        assert_eq!(input["plugin"].as_str(), Some("http://hub:8080"));
        assert_eq!(input["keys"][1].as_str(), Some("http://hub:8080"));
    }

    #[test]
    fn a_value_with_quotes_and_newlines_stays_one_string() {
        let table = resolve("a = \"${EVIL}\"\n").unwrap();
        assert_eq!(table.len(), 1, "no key or table injected: {table:?}");
        assert_eq!(table["a"].as_str(), Some("x\"\n[evil]\nkey = \"y"));
        assert!(!table.contains_key("evil"));
    }

    #[test]
    fn references_outside_strings_are_not_substituted() {
        // A key is never substituted; a reference there stays literal.
        let table = resolve("\"${HUB}\" = 1\n").unwrap();
        assert!(table.contains_key("${HUB}"));
    }

    #[test]
    fn unset_and_malformed_name_the_line() {
        assert_eq!(
            resolve("a = 1\nb = \"${NOPE}\"").unwrap_err(),
            SubstituteError::Unset {
                line: 2,
                name: "NOPE".into()
            }
        );
        let err = resolve("\n\nx = \"${BAD NAME}\"").unwrap_err();
        assert!(
            matches!(err, SubstituteError::Malformed { line: 3, .. }),
            "{err}"
        );
        let err = resolve("x = \"${OPEN\"").unwrap_err();
        assert!(
            matches!(err, SubstituteError::Malformed { line: 1, .. }),
            "{err}"
        );
        let err = resolve("x = \"\"\"\nfirst\n${NOPE}\"\"\"").unwrap_err();
        assert!(
            matches!(err, SubstituteError::Unset { line: 3, .. }),
            "{err}"
        );
    }

    #[test]
    fn scrub_replaces_values_with_their_references() {
        let mut root = DeTable::parse("a = \"${EVIL}\"\nb = \"${HUB}/v1\"\n").unwrap();
        let done = substitute_values(&mut root, "", &env).unwrap();
        let message = "invalid value: string \"x\\\"\\n[evil]\\nkey = \\\"y\", and http://hub:8080/v1 and http://hub:8080";
        let scrubbed = done.scrub(message);
        assert!(!scrubbed.contains("evil"), "{scrubbed}");
        assert!(!scrubbed.contains("hub:8080"), "{scrubbed}");
        assert!(scrubbed.contains("${HUB}/v1"), "{scrubbed}");
        assert!(scrubbed.contains("${EVIL}"), "{scrubbed}");
    }
}
