//! `topic_pattern`: the source and kind of a line that names neither, taken
//! from the MQTT topic its frame came on. The host's mqtt input gives each
//! message's frame `origin = "mqtt:<topic>"`; a pattern such as
//! `sensors/{source}/{kind}` matches the topic level by level.

/// One level of a pattern.
#[derive(Debug, PartialEq)]
enum Level {
    /// Must equal the topic's level.
    Literal(String),
    /// Any level, taken as the source.
    Source,
    /// Any level, taken as the kind.
    Kind,
    /// Any level (`+`).
    Any,
    /// Any number of remaining levels, none included (`#`, last only).
    Rest,
}

/// A parsed `topic_pattern`.
#[derive(Debug, PartialEq)]
pub struct TopicPattern {
    levels: Vec<Level>,
}

/// What a topic gave: each `None` when the pattern has no such level.
#[derive(Debug, Default, PartialEq)]
pub struct FromTopic<'a> {
    /// The level at `{source}`.
    pub source: Option<&'a str>,
    /// The level at `{kind}`.
    pub kind: Option<&'a str>,
}

impl TopicPattern {
    /// Parses a pattern: levels split on `/`, each `{source}`, `{kind}`,
    /// `+`, `#` (last only) or literal text without wildcards or braces.
    pub fn parse(text: &str) -> Result<TopicPattern, String> {
        if text.is_empty() {
            return Err("topic_pattern must not be empty".into());
        }
        let parts: Vec<&str> = text.split('/').collect();
        let mut levels = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let level = match *part {
                "{source}" => Level::Source,
                "{kind}" => Level::Kind,
                "+" => Level::Any,
                "#" if i + 1 == parts.len() => Level::Rest,
                p if p.contains(['#', '+', '{', '}']) => {
                    return Err(format!(
                        "topic_pattern level {:?}: use {{source}}, {{kind}}, + or # (last) as \
                         whole levels",
                        p
                    ));
                }
                p => Level::Literal(p.to_owned()),
            };
            if levels.contains(&level) && matches!(level, Level::Source | Level::Kind) {
                return Err(format!("topic_pattern names {part} twice"));
            }
            levels.push(level);
        }
        Ok(TopicPattern { levels })
    }

    /// The captures of a frame's origin, if it is an MQTT topic that
    /// matches; `None` for other origins and for topics that do not match.
    pub fn captures<'a>(&self, origin: &'a str) -> Option<FromTopic<'a>> {
        let topic = origin.strip_prefix("mqtt:")?;
        let mut found = FromTopic::default();
        let mut parts = topic.split('/');
        for level in &self.levels {
            if *level == Level::Rest {
                return Some(found);
            }
            let part = parts.next()?;
            match level {
                Level::Literal(l) if l != part => return None,
                Level::Source => found.source = Some(part),
                Level::Kind => found.kind = Some(part),
                _ => {}
            }
        }
        parts.next().is_none().then_some(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_matched_and_captured() {
        let p = TopicPattern::parse("sensors/{source}/{kind}").expect("valid");
        let got = p.captures("mqtt:sensors/boiler-3/temp").expect("matches");
        assert_eq!((got.source, got.kind), (Some("boiler-3"), Some("temp")));
        assert_eq!(p.captures("mqtt:sensors/boiler-3"), None, "too short");
        assert_eq!(p.captures("mqtt:sensors/a/b/c"), None, "too long");
        assert_eq!(p.captures("mqtt:other/a/b"), None, "literal differs");
        assert_eq!(p.captures("file:/sensors/a/b"), None, "not mqtt");
        let p = TopicPattern::parse("+/{kind}/#").expect("valid");
        let got = p.captures("mqtt:site1/humidity/x/y").expect("matches");
        assert_eq!((got.source, got.kind), (None, Some("humidity")));
        assert!(
            p.captures("mqtt:site1/humidity").is_some(),
            "# takes none too"
        );
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "a/#/b", "a/x+", "{source}/{source}", "a/{sourc}"] {
            assert!(TopicPattern::parse(bad).is_err(), "{bad:?}");
        }
    }
}
