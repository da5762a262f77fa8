//! Topic and subject templates: `halyard/{host_id}/{kind}`.
//!
//! Parsed once at startup so a typo (`{kindd}`) is a configuration error,
//! not a topic named after the typo; rendered per event with each
//! substituted part passed through the protocol's sanitiser, so event data
//! can never inject a wildcard or change the routing syntax.

use crate::TransportError;

/// A value a template can substitute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    /// `{host_id}`: the sending host's id.
    HostId,
    /// `{kind}`: the event's kind.
    Kind,
    /// `{source}`: the event's source.
    Source,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Field),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

/// What a template is rendered from.
pub(crate) struct Values<'a> {
    pub host_id: &'a str,
    pub kind: &'a str,
    pub source: &'a str,
}

impl Template {
    /// Parses `text`; `sink` names the sink in errors. Only `{host_id}`,
    /// `{kind}` and `{source}` are known; `per_event` false allows only
    /// `{host_id}` (a batch has no single kind or source).
    pub fn parse(sink: &'static str, text: &str, per_event: bool) -> Result<Self, TransportError> {
        let bad = |reason: String| TransportError::Config { sink, reason };
        if text.is_empty() {
            return Err(bad("the topic/subject template is empty".into()));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let Some(close) = rest[open..].find('}') else {
                return Err(bad(format!("unclosed `{{` in template {text:?}")));
            };
            let name = &rest[open + 1..open + close];
            let field = match name {
                "host_id" => Field::HostId,
                "kind" => Field::Kind,
                "source" => Field::Source,
                other => {
                    return Err(bad(format!(
                        "unknown placeholder {{{other}}} in {text:?} (known: {{host_id}}, {{kind}}, {{source}})"
                    )));
                }
            };
            if !per_event && field != Field::HostId {
                return Err(bad(format!(
                    "{{{name}}} needs one message per event; a batch has many (template {text:?})"
                )));
            }
            parts.push(Part::Field(field));
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(bad(format!("stray `}}` in template {text:?}")));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// Renders into `out` (cleared first), passing each substituted value
    /// through `sanitise`, which appends its cleaned copy.
    pub fn render(&self, values: &Values<'_>, sanitise: fn(&str, &mut String), out: &mut String) {
        out.clear();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(Field::HostId) => sanitise(values.host_id, out),
                Part::Field(Field::Kind) => sanitise(values.kind, out),
                Part::Field(Field::Source) => sanitise(values.source, out),
            }
        }
    }

    /// Whether the template uses `field`.
    #[cfg(test)]
    pub fn uses(&self, field: Field) -> bool {
        self.parts.contains(&Part::Field(field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(value: &str, out: &mut String) {
        out.push_str(value);
    }

    #[test]
    fn renders_and_rejects() {
        let t = Template::parse("mqtt", "halyard/{host_id}/{kind}", true).expect("valid");
        assert!(t.uses(Field::Kind) && !t.uses(Field::Source));
        let mut out = String::new();
        let v = Values {
            host_id: "h1",
            kind: "temp.max",
            source: "s",
        };
        t.render(&v, keep, &mut out);
        assert_eq!(out, "halyard/h1/temp.max");
        for bad in ["", "a/{kindd}", "a/{kind", "a/}", "{source}x{"] {
            assert!(Template::parse("mqtt", bad, true).is_err(), "{bad}");
        }
        assert!(Template::parse("mqtt", "a/{kind}", false).is_err());
        assert!(Template::parse("mqtt", "a/{host_id}", false).is_ok());
    }
}
