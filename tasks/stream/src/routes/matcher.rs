//! A route's `match`: fields of the event and the values they may take (a list means any of
//! them); every listed field must match; no `match` means every event.

use std::collections::BTreeMap;

use bitacora_model::model::Event;
use serde::{Deserialize, Serialize};

/// The event fields a route can match on.
pub const FIELDS: &[&str] = &[
    "event_type",
    "level",
    "platform",
    "app_version",
    "country",
    "os_version",
    "device_model",
    "error_code",
    "log_stream",
    "status_code",
];

/// One value or a list of values.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Values {
    One(String),
    Any(Vec<String>),
}

impl Values {
    fn contains(&self, v: &str) -> bool {
        match self {
            Values::One(s) => s == v,
            Values::Any(l) => l.iter().any(|s| s == v),
        }
    }
}

pub type MatchConfig = BTreeMap<String, Values>;

pub fn validate(m: &MatchConfig, key: &str) -> bitacora_core::Result<()> {
    for (field, values) in m {
        if !FIELDS.contains(&field.as_str()) {
            return Err(bitacora_core::Error::config(
                format!("{key}.{field}"),
                format!(
                    "cannot match on {field:?} (expected one of {})",
                    FIELDS.join(", ")
                ),
            ));
        }
        if matches!(values, Values::Any(l) if l.is_empty()) {
            return Err(bitacora_core::Error::config(
                format!("{key}.{field}"),
                "an empty list matches nothing: leave the field out to match every value",
            ));
        }
    }
    Ok(())
}

/// Whether `event` passes `m`. A field the event lacks matches nothing.
pub fn matches(m: &MatchConfig, event: &Event<'_>) -> bool {
    m.iter()
        .all(|(name, values)| field(event, name).is_some_and(|v| values.contains(&v)))
}

/// The value of one of the [`FIELDS`] of `event` (`None`: the event lacks it, or no such field).
pub fn field<'e>(event: &'e Event<'_>, name: &str) -> Option<std::borrow::Cow<'e, str>> {
    use std::borrow::Cow;
    let v: Option<&str> = match name {
        "event_type" => event.event_type.as_deref(),
        "level" => event.level.as_deref(),
        "platform" => event.platform.as_deref(),
        "app_version" => event.app_version.as_deref(),
        "country" => event.country.as_deref(),
        "os_version" => event.os_version.as_deref(),
        "device_model" => event.device_model.as_deref(),
        "error_code" => event.error_code.as_deref(),
        "log_stream" => Some(&event.log_stream),
        "status_code" => return event.status_code.map(|s| Cow::Owned(s.to_string())),
        _ => None,
    };
    v.map(Cow::Borrowed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn lists_are_any_of_and_fields_all_of() {
        let m: MatchConfig =
            toml::from_str("level = [\"ERROR\"]\nevent_type = [\"crash\", \"error\"]\n").unwrap();
        let mut e = Event {
            level: Some(Cow::Borrowed("ERROR")),
            event_type: Some(Cow::Borrowed("crash")),
            ..Default::default()
        };
        assert!(matches(&m, &e));
        e.event_type = Some(Cow::Borrowed("tap"));
        assert!(!matches(&m, &e));
        e.event_type = None;
        assert!(!matches(&m, &e));
        let one: MatchConfig = toml::from_str("status_code = \"500\"\n").unwrap();
        e.status_code = Some(500);
        assert!(matches(&one, &e));
        assert!(matches(&MatchConfig::new(), &e));
        assert!(
            validate(
                &toml::from_str("colour = \"red\"").unwrap(),
                "stream.routes[0].match"
            )
            .unwrap_err()
            .to_string()
            .contains("cannot match on \"colour\"")
        );
    }
}
