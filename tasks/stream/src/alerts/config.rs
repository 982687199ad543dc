//! `[[stream.alerts]]`: a rule over a sliding window of the delivered events.

use serde::{Deserialize, Serialize};

use crate::routes::matcher::{self, MatchConfig};

/// What a rule measures over its window (per group when `group_by` is set).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The share of the matching events that are errors (`errors`, else level ERROR/FATAL or
    /// event type crash/error), once the window holds `min_events`: `threshold` is a fraction
    /// (0.05 = 5%).
    ErrorRate,
    /// The matching events in the window (crashes per minute: `match = { event_type =
    /// ["crash"] }`, `window_secs = 60`).
    Count,
    /// The 95th percentile of `latency_ms` of the matching events, once the window holds
    /// `min_events`: `threshold` in milliseconds.
    LatencyP95,
    /// No matching event for `window_secs` after some were seen (an event type going silent);
    /// takes no `threshold`.
    Silence,
}

impl AlertKind {
    pub fn name(self) -> &'static str {
        match self {
            AlertKind::ErrorRate => "error_rate",
            AlertKind::Count => "count",
            AlertKind::LatencyP95 => "latency_p95",
            AlertKind::Silence => "silence",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// The alert event's `level`.
    pub fn level(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARN",
            Severity::Critical => "ERROR",
        }
    }
}

/// One `[[stream.alerts]]` rule. It fires when its value goes above `threshold` (for `silence`:
/// when its group goes quiet) and resolves when it comes back; each episode notifies once, and
/// not again until `cooldown_secs` after the last notification of the same rule and group.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    pub name: String,
    pub kind: AlertKind,
    /// The events the rule watches (the routes' `match`); none: every event.
    #[serde(
        default,
        rename = "match",
        skip_serializing_if = "MatchConfig::is_empty"
    )]
    pub matches: MatchConfig,
    /// `error_rate`: which of the watched events are errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<MatchConfig>,
    /// A field (one of the routes' match fields) whose every value is watched on its own:
    /// `app_version`, `platform`, `event_type`…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<String>,
    #[serde(default = "default_window")]
    pub window_secs: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// `error_rate`, `latency_p95`: fewer events in the window say nothing (and end an episode).
    #[serde(default = "default_min_events")]
    pub min_events: u64,
    #[serde(default = "default_cooldown")]
    pub cooldown_secs: u64,
    #[serde(default)]
    pub severity: Severity,
    /// Routes (by name) that receive the alert's event, whatever their `match`: an SNS topic
    /// or a webhook for the on-call, a file route to keep them.
    pub notify: Vec<String>,
}

fn default_window() -> u64 {
    60
}
fn default_min_events() -> u64 {
    20
}
fn default_cooldown() -> u64 {
    300
}

impl AlertConfig {
    pub fn validate(&self, i: usize, routes: &[&str]) -> bitacora_core::Result<()> {
        use bitacora_core::Error;
        let key = format!("stream.alerts[{i}]");
        if self.name.trim().is_empty() || self.name.len() > 128 {
            return Err(Error::config(
                format!("{key}.name"),
                "a rule needs a name of 1 to 128 characters",
            ));
        }
        matcher::validate(&self.matches, &format!("{key}.match"))?;
        if let Some(e) = &self.errors {
            if self.kind != AlertKind::ErrorRate {
                return Err(Error::config(
                    format!("{key}.errors"),
                    format!(
                        "only kind = \"error_rate\" takes errors, not {:?}",
                        self.kind.name()
                    ),
                ));
            }
            matcher::validate(e, &format!("{key}.errors"))?;
        }
        if let Some(g) = &self.group_by
            && !matcher::FIELDS.contains(&g.as_str())
        {
            return Err(Error::config(
                format!("{key}.group_by"),
                format!(
                    "cannot group by {g:?} (expected one of {})",
                    matcher::FIELDS.join(", ")
                ),
            ));
        }
        if !(1..=86_400).contains(&self.window_secs) {
            return Err(Error::config(
                format!("{key}.window_secs"),
                format!("must be between 1 and 86400, got {}", self.window_secs),
            ));
        }
        if self.cooldown_secs > 7 * 86_400 {
            return Err(Error::config(
                format!("{key}.cooldown_secs"),
                format!("must be at most 604800, got {}", self.cooldown_secs),
            ));
        }
        match (self.kind, self.threshold) {
            (AlertKind::Silence, Some(_)) => {
                return Err(Error::config(
                    format!("{key}.threshold"),
                    "kind = \"silence\" takes no threshold: window_secs is how long the quiet lasts",
                ));
            }
            (AlertKind::Silence, None) => {}
            (kind, None) => {
                return Err(Error::config(
                    format!("{key}.threshold"),
                    format!("kind = {:?} needs a threshold", kind.name()),
                ));
            }
            (kind, Some(t)) => {
                let ok = match kind {
                    AlertKind::ErrorRate => (0.0..1.0).contains(&t),
                    // Latencies are kept in buckets up to 10 s.
                    AlertKind::LatencyP95 => (0.0..10_000.0).contains(&t),
                    _ => t.is_finite() && t >= 0.0,
                };
                if !ok {
                    let want = match kind {
                        AlertKind::ErrorRate => "a fraction from 0 up to 1 (0.05 = 5%)",
                        AlertKind::LatencyP95 => {
                            "milliseconds from 0 up to 10000 (latencies are measured up to 10 s)"
                        }
                        _ => "a number of 0 or more",
                    };
                    return Err(Error::config(
                        format!("{key}.threshold"),
                        format!("must be {want}, got {t}"),
                    ));
                }
            }
        }
        if self.notify.is_empty() {
            return Err(Error::config(
                format!("{key}.notify"),
                "name at least one route to notify (an alert nobody receives is only on the dashboard)",
            ));
        }
        for n in &self.notify {
            if !routes.contains(&n.as_str()) {
                return Err(Error::config(
                    format!("{key}.notify"),
                    format!(
                        "{n:?} is not a route: expected one of the [[stream.routes]] names ({})",
                        routes.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> AlertConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn settings_at_fault_are_named() {
        let ok = "name = \"r\"\nkind = \"error_rate\"\nthreshold = 0.05\nnotify = [\"oncall\"]\n";
        assert!(rule(ok).validate(0, &["oncall"]).is_ok());
        let cases = [
            (ok.replace("0.05", "5"), "stream.alerts[0].threshold"),
            (
                ok.replace("threshold = 0.05\n", ""),
                "stream.alerts[0].threshold",
            ),
            (
                ok.replace("[\"oncall\"]", "[\"pager\"]"),
                "stream.alerts[0].notify",
            ),
            (ok.replace("[\"oncall\"]", "[]"), "stream.alerts[0].notify"),
            (
                format!("{ok}group_by = \"colour\"\n"),
                "stream.alerts[0].group_by",
            ),
            (
                format!("{ok}window_secs = 0\n"),
                "stream.alerts[0].window_secs",
            ),
            (
                ok.replace("error_rate", "silence"),
                "stream.alerts[0].threshold",
            ),
            (
                format!(
                    "{}errors = {{ level = \"ERROR\" }}\n",
                    ok.replace("error_rate", "count")
                ),
                "stream.alerts[0].errors",
            ),
            (
                format!("{ok}[match]\ncolour = \"red\"\n"),
                "stream.alerts[0].match.colour",
            ),
        ];
        for (text, key) in cases {
            let err = rule(&text)
                .validate(0, &["oncall"])
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
        assert!(toml::from_str::<AlertConfig>(&format!("{ok}colour = 1\n")).is_err());
    }
}
