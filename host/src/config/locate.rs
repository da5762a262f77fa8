//! Finding the line of a dotted key (`stages.validate[0].limits.deadline_ms`)
//! in the config file, so checks made after parsing can still say where the
//! bad value is.

use toml::de::{DeTable, DeValue};

/// The 1-based line of `key` in `text`: of the value itself when it is in
/// the file, else of the deepest table on its path that is (a default
/// inside a written table points at that table). `None` when nothing of
/// the path is written, or the text does not parse.
pub(super) fn line_of(text: &str, key: &str) -> Option<usize> {
    let root = DeTable::parse(text).ok()?;
    let mut found: Option<usize> = None;
    let mut table = Some(root.get_ref());
    for segment in key.split('.') {
        let (name, index) = split_index(segment);
        let Some(value) = table.and_then(|t| t.get(name)) else {
            break;
        };
        let value = match (index, value.get_ref()) {
            (Some(i), DeValue::Array(items)) => match items.get(i) {
                Some(item) => item,
                None => break,
            },
            (Some(_), _) => break,
            (None, _) => value,
        };
        found = Some(value.span().start);
        table = match value.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    found.map(|start| text[..start.min(text.len())].matches('\n').count() + 1)
}

/// `validate[2]` → (`validate`, Some(2)); `limits` → (`limits`, None).
fn split_index(segment: &str) -> (&str, Option<usize>) {
    if let Some(open) = segment.find('[')
        && let Some(index) = segment[open + 1..]
            .strip_suffix(']')
            .and_then(|i| i.parse().ok())
    {
        return (&segment[..open], Some(index));
    }
    (segment, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
[[input]]
type = \"source\"
name = \"sim\"
interval_ms = 0
[input.source]
plugin = \"s.wasm\"

[[stages.validate]]
plugin = \"a.wasm\"

[[stages.validate]]
plugin = \"b.wasm\"
limits = { deadline_ms = 0 }

[retry]
initial_ms = 5
";

    #[test]
    fn keys_are_found_through_tables_and_arrays() {
        assert_eq!(line_of(TEXT, "input[0].interval_ms"), Some(4));
        assert_eq!(line_of(TEXT, "input[0].source.plugin"), Some(6));
        assert_eq!(
            line_of(TEXT, "stages.validate[1].limits.deadline_ms"),
            Some(13)
        );
        assert_eq!(line_of(TEXT, "retry.initial_ms"), Some(16));
    }

    #[test]
    fn a_default_points_at_its_table_or_nowhere() {
        // `max_ms` is not written: the line of the `[retry]` table's first
        // key is the closest.
        assert!(line_of(TEXT, "retry.max_ms").is_some());
        assert_eq!(line_of(TEXT, "batch.max_events"), None);
        assert_eq!(line_of("not = [toml", "a"), None);
    }
}
