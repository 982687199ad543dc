//! The stakeholders' questions, shipped as named queries (`bitacora-query --named NAME --date D`).
//!
//! Each query is written once in DataFusion's SQL, with a second form for Athena (Trino) where the
//! dialects differ; the Athena forms are checked against Trino's grammar by the tests
//! (`tests/test_named_sql.py`).

use bitacora_core::config::QueryEngineKind;
use bitacora_core::{Day, Error, Result};
use serde::Serialize;

/// A named query and what it answers.
#[derive(Debug, Clone, Serialize)]
pub struct NamedQuery {
    pub name: &'static str,
    pub description: &'static str,
    /// Who asks (from the reference architecture: growth, developers, alerts, ...).
    pub audience: &'static str,
    #[serde(skip)]
    template: &'static str,
    /// The Athena (Trino) form, where it differs from DataFusion's.
    #[serde(skip)]
    athena: Option<&'static str>,
}

/// An error is an event logged at ERROR level or an API call answered with a 5xx.
const IS_ERROR: &str = "(level = 'ERROR' OR status_code >= 500)";

pub const NAMED: &[NamedQuery] = &[
    NamedQuery {
        name: "events_per_type",
        description: "Events per type per day",
        audience: "product, growth",
        template: "SELECT dt, event_type, count(*) AS events FROM events WHERE {days} \
                   GROUP BY dt, event_type ORDER BY dt, events DESC, event_type",
        athena: None,
    },
    NamedQuery {
        name: "daily_active_users",
        description: "Daily active users (distinct user_id) and their events",
        audience: "growth, marketing",
        template: "SELECT dt, count(DISTINCT user_id) AS active_users, count(*) AS events, \
                   count(DISTINCT session_id) AS sessions FROM events WHERE {days} AND user_id IS NOT NULL \
                   GROUP BY dt ORDER BY dt",
        athena: None,
    },
    NamedQuery {
        name: "error_rate_by_version",
        description: "Error rate by app version (ERROR level or HTTP 5xx)",
        audience: "developers, alerts",
        template: "SELECT app_version, count(*) AS events, \
                   sum(CASE WHEN {is_error} THEN 1 ELSE 0 END) AS errors, \
                   round(100.0 * sum(CASE WHEN {is_error} THEN 1 ELSE 0 END) / count(*), 2) AS error_rate_pct \
                   FROM events WHERE {days} AND app_version IS NOT NULL \
                   GROUP BY app_version ORDER BY error_rate_pct DESC, app_version",
        athena: None,
    },
    NamedQuery {
        name: "p95_latency_by_platform",
        description: "p50 and p95 API latency (ms) by platform",
        audience: "developers",
        template: "SELECT platform, count(*) AS api_calls, \
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50_ms, \
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95_ms \
                   FROM events WHERE {days} AND event_type = 'api_call' AND latency_ms IS NOT NULL \
                   GROUP BY platform ORDER BY platform",
        // Trino has no percentile_cont: its approx_percentile (a t-digest, within about 1 % of
        // the rank) stands in.
        athena: Some(
            "SELECT platform, count(*) AS api_calls, \
             approx_percentile(latency_ms, 0.5) AS p50_ms, \
             approx_percentile(latency_ms, 0.95) AS p95_ms \
             FROM events WHERE {days} AND event_type = 'api_call' AND latency_ms IS NOT NULL \
             GROUP BY platform ORDER BY platform",
        ),
    },
    NamedQuery {
        name: "top_error_codes",
        description: "The 10 most frequent error codes and how many users they hit",
        audience: "developers, alerts",
        template: "SELECT error_code, count(*) AS occurrences, count(DISTINCT user_id) AS users_affected \
                   FROM events WHERE {days} AND error_code IS NOT NULL \
                   GROUP BY error_code ORDER BY occurrences DESC, error_code LIMIT 10",
        athena: None,
    },
    NamedQuery {
        name: "week_over_week",
        description: "The 7 days ending on --date (default: the latest day) against the 7 days before",
        audience: "management, growth",
        template: "SELECT metric, this_week, last_week, \
                   round(100.0 * (this_week - last_week) / nullif(last_week, 0), 1) AS change_pct FROM ( \
                   SELECT 1 AS k, 'events' AS metric, sum(CASE WHEN dt > '{w1}' THEN 1 ELSE 0 END) AS this_week, \
                          sum(CASE WHEN dt <= '{w1}' THEN 1 ELSE 0 END) AS last_week FROM events WHERE {window} \
                   UNION ALL SELECT 2, 'active_users', count(DISTINCT CASE WHEN dt > '{w1}' THEN user_id END), \
                          count(DISTINCT CASE WHEN dt <= '{w1}' THEN user_id END) FROM events WHERE {window} \
                   UNION ALL SELECT 3, 'errors', sum(CASE WHEN dt > '{w1}' AND {is_error} THEN 1 ELSE 0 END), \
                          sum(CASE WHEN dt <= '{w1}' AND {is_error} THEN 1 ELSE 0 END) FROM events WHERE {window} \
                   UNION ALL SELECT 4, 'purchases', sum(CASE WHEN dt > '{w1}' AND event_type = 'purchase' THEN 1 ELSE 0 END), \
                          sum(CASE WHEN dt <= '{w1}' AND event_type = 'purchase' THEN 1 ELSE 0 END) FROM events WHERE {window} \
                   ) ORDER BY k",
        athena: None,
    },
];

/// Looks a named query up.
pub fn find(name: &str) -> Result<&'static NamedQuery> {
    NAMED.iter().find(|q| q.name == name).ok_or_else(|| {
        Error::Usage(format!(
            "unknown named query {name:?} (known: {})",
            NAMED.iter().map(|q| q.name).collect::<Vec<_>>().join(", ")
        ))
    })
}

impl NamedQuery {
    /// Whether the query compares against a reference day (`--date`, else the latest day).
    pub fn needs_reference_day(&self) -> bool {
        self.template.contains("{window}")
    }

    /// Whether running it for `date` needs the catalog's latest day (a reference-day query given
    /// no day).
    pub fn needs_latest(&self, date: Option<Day>) -> bool {
        date.is_none() && self.needs_reference_day()
    }

    /// The SQL for an engine, for a day (or for every day when `date` is `None`). `latest` is the
    /// latest day in the catalog, used by queries that need a reference day.
    pub fn sql_for(
        &self,
        engine: QueryEngineKind,
        date: Option<Day>,
        latest: Option<Day>,
    ) -> String {
        let template = match engine {
            QueryEngineKind::Datafusion => self.template,
            QueryEngineKind::Athena => self.athena.unwrap_or(self.template),
        };
        let days = match date {
            Some(d) => format!("dt = '{d}'"),
            None => "TRUE".into(),
        };
        let reference = date.or(latest).unwrap_or_else(Day::today);
        let w1 = reference.add_days(-7);
        let w2 = reference.add_days(-14);
        template
            .replace("{days}", &days)
            .replace("{is_error}", IS_ERROR)
            .replace("{window}", &format!("dt > '{w2}' AND dt <= '{reference}'"))
            .replace("{w1}", &w1.to_string())
    }

    /// The DataFusion form (the embedded engine's).
    pub fn sql(&self, date: Option<Day>, latest: Option<Day>) -> String {
        self.sql_for(QueryEngineKind::Datafusion, date, latest)
    }
}
