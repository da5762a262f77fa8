//! What a licence's `features` allow the host to load: plugin kinds and
//! how many plugins at once. Checked before the pipeline is built at start
//! (the host refuses to start) and before a config reload loads anything
//! (the change is refused; the running config stays).

use halyard_trust::licence::Features;

use crate::plugin::PluginKind;

/// Why the configured plugins are outside the licence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeatureRefusal {
    /// A plugin of a kind the licence does not list.
    #[error("{role}: plugin kind `{kind}` is not licensed (the licence allows: {allowed})")]
    Kind {
        /// Where the config uses it (`stages.validate[0]`).
        role: String,
        /// Its kind.
        kind: String,
        /// The kinds the licence lists.
        allowed: String,
    },
    /// More plugins than the licence allows at once.
    #[error("{count} plugins configured; the licence allows at most {max}")]
    Count {
        /// Plugins in the config.
        count: usize,
        /// The licence's `max_plugins`.
        max: u32,
    },
}

/// Checks `plugins` (role and kind of every configured plugin) against
/// `features`.
pub fn check(features: &Features, plugins: &[(String, PluginKind)]) -> Result<(), FeatureRefusal> {
    for (role, kind) in plugins {
        let kind = kind.to_string();
        if !features.allows_kind(&kind) {
            return Err(FeatureRefusal::Kind {
                role: role.clone(),
                kind,
                allowed: features
                    .plugin_kinds
                    .as_deref()
                    .unwrap_or_default()
                    .join(", "),
            });
        }
    }
    if !features.allows_plugin_count(plugins.len()) {
        return Err(FeatureRefusal::Count {
            count: plugins.len(),
            max: features.max_plugins.unwrap_or_default(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugins() -> Vec<(String, PluginKind)> {
        vec![
            ("input web decoder".into(), PluginKind::Decoder),
            ("stages.validate[0]".into(), PluginKind::Validator),
            ("stages.privacy[0]".into(), PluginKind::Privacy),
        ]
    }

    #[test]
    fn default_features_allow_everything() {
        assert_eq!(check(&Features::default(), &plugins()), Ok(()));
    }

    #[test]
    fn an_unlisted_kind_is_refused_with_its_role() {
        let features = Features {
            plugin_kinds: Some(vec!["decoder".into(), "validator".into()]),
            max_plugins: None,
        };
        let err = check(&features, &plugins()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "stages.privacy[0]: plugin kind `privacy` is not licensed (the licence allows: decoder, validator)"
        );
    }

    #[test]
    fn too_many_plugins_are_refused() {
        let features = Features {
            plugin_kinds: None,
            max_plugins: Some(2),
        };
        assert_eq!(
            check(&features, &plugins()),
            Err(FeatureRefusal::Count { count: 3, max: 2 })
        );
        let three = Features {
            plugin_kinds: None,
            max_plugins: Some(3),
        };
        assert_eq!(check(&three, &plugins()), Ok(()));
    }
}
