//! The live dashboard's data (`/api/live` and its event stream) and the alert rules, end to end
//! in-process: traffic posted to the service, notifications received by a webhook and a file
//! route. (The page itself is tested in a real browser: tests/test_stream_dashboard.py.)

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

fn d(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// Reads server-sent events from `r` until `n` snapshots arrived (or `budget` passed).
async fn snapshots(r: &mut reqwest::Response, n: usize, budget: Duration) -> Vec<Value> {
    let until = Instant::now() + budget;
    let (mut text, mut out) = (String::new(), Vec::new());
    while out.len() < n && Instant::now() < until {
        let chunk = tokio::time::timeout(until - Instant::now(), r.chunk()).await;
        let Ok(Ok(Some(bytes))) = chunk else { break };
        text.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            assert!(event.starts_with("event: snapshot\n"), "{event}");
            let data = event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap();
            out.push(serde_json::from_str(data).unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_what_was_delivered_and_streams_it_live() {
    let tmp = tempfile::tempdir().unwrap();
    let p = d(tmp.path());
    let svc = Svc::start(&format!(
        "data_dir = \"{p}/data\"\n[stream.dedup]\nkind = \"memory\"\n[[stream.routes]]\nname = \"everything\"\nsink = {{ kind = \"file\", path = \"{p}/all\" }}\n"
    ))
    .await;
    let client = reqwest::Client::new();
    let page = client.get(svc.url("/")).send().await.unwrap();
    assert_eq!(
        page.headers()["content-type"].to_str().unwrap(),
        "text/html; charset=utf-8"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("new EventSource(\"/api/live/events\")"));
    // Nothing is fetched from elsewhere (the only absolute URL is SVG's namespace name).
    for fetches in ["src=", "href=", "@import", "url(", "fetch("] {
        assert!(!html.contains(fetches), "the page holds {fetches}");
    }
    assert_eq!(html.matches("http").count(), 1);

    let mut events = client
        .get(svc.url("/api/live/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        events.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let first = snapshots(&mut events, 1, Duration::from_secs(5)).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["totals"]["accepted"], 0);

    let types = ["api_call", "crash", "tap", "purchase"];
    let lines: Vec<String> = (0..200).map(|i| message(i, types[i % 4])).collect();
    let (status, body) = post(&client, &svc.url("/v1/logs"), &lines).await;
    assert_eq!(status, 200, "{body}");
    // The stream's next snapshots move with the traffic.
    let next = snapshots(&mut events, 2, Duration::from_secs(5)).await;
    assert_eq!(next.len(), 2);
    assert_eq!(next[1]["totals"]["accepted"], 200);
    assert!(next[1]["time_ms"].as_i64() > first[0]["time_ms"].as_i64());

    let live: Value = client
        .get(svc.url("/api/live"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for t in types {
        assert_eq!(live["event_types"][t], 50, "{live}");
    }
    assert_eq!(live["app_versions"]["3.2.1"]["events"], 200);
    assert_eq!(live["app_versions"]["3.2.1"]["errors"], 50);
    assert_eq!(live["latest_errors"].as_array().unwrap().len(), 20);
    assert_eq!(live["latest_errors"][0]["event_type"], "crash");
    let route = &live["routes"].as_array().unwrap()[0];
    assert_eq!(
        (route["name"].as_str(), route["delivered"].as_u64()),
        (Some("everything"), Some(200))
    );
    assert_eq!(live["latency"]["count"], 1);
    // The same numbers as /metrics.
    let m = svc.metrics().await;
    assert_eq!(
        metric(&m, "bitacora_stream_events_total{event_type=\"crash\"}"),
        50.0
    );
    assert_eq!(
        metric(
            &m,
            "bitacora_stream_app_version_errors_total{app_version=\"3.2.1\"}"
        ),
        50.0
    );
    assert_eq!(
        metric(&m, "bitacora_stream_accepted_total{source=\"http\"}"),
        live["totals"]["accepted"].as_f64().unwrap()
    );

    // A viewer left open does not hold the service's stop: its stream ends.
    let started = Instant::now();
    svc.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = events.chunk().await {}
    })
    .await;
    assert!(rest.is_ok(), "the event stream did not end");
}

/// Posts `errors` error events and `ok` healthy ones every 200 ms for `secs` seconds.
async fn traffic(svc: &Svc, next: &mut usize, secs: u64, errors: usize, ok: usize) {
    let client = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        let mut lines = Vec::new();
        for _ in 0..errors {
            lines.push(message(*next, "crash"));
            *next += 1;
        }
        for _ in 0..ok {
            lines.push(message(*next, "tap"));
            *next += 1;
        }
        post_until_ok(
            &client,
            &svc.url("/v1/logs"),
            &lines,
            Duration::from_secs(10),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_notify_once_per_episode_and_not_while_cooling_down() {
    let tmp = tempfile::tempdir().unwrap();
    let p = d(tmp.path());
    let hook = Peer::start(|_| (200, "{}".into())).await;
    let svc = Svc::start(&format!(
        r#"data_dir = "{p}/data"
[stream.dedup]
kind = "memory"
[[stream.routes]]
name = "everything"
match = {{ event_type = ["tap", "crash"] }}
sink = {{ kind = "file", path = "{p}/all" }}
[[stream.routes]]
name = "oncall"
match = {{ event_type = "never" }}
sink = {{ kind = "http", url = "{hook}" }}
[[stream.routes]]
name = "alerts"
match = {{ event_type = "never" }}
sink = {{ kind = "file", path = "{p}/alerts" }}
[[stream.alerts]]
name = "error rate"
kind = "error_rate"
group_by = "app_version"
threshold = 0.2
window_secs = 2
min_events = 10
cooldown_secs = 600
severity = "critical"
notify = ["oncall", "alerts"]
[[stream.alerts]]
name = "crashes"
kind = "count"
match = {{ event_type = "crash" }}
threshold = 20
window_secs = 2
cooldown_secs = 0
notify = ["alerts"]
"#,
        hook = hook.url("/hook")
    ))
    .await;
    let mut next = 0;
    // Healthy, bad (half of it crashes), healthy, bad again, healthy.
    traffic(&svc, &mut next, 2, 0, 20).await;
    traffic(&svc, &mut next, 3, 10, 10).await;
    traffic(&svc, &mut next, 4, 0, 20).await;
    traffic(&svc, &mut next, 3, 10, 10).await;
    traffic(&svc, &mut next, 4, 0, 20).await;
    let live: Value = reqwest::get(svc.url("/api/live"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let m = svc.metrics().await;
    svc.stop().await;

    // The on-call webhook heard of the error rate once: the second episode came within its
    // cooldown.
    let calls: Vec<Value> = hook
        .bodies
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(_, b)| {
            b.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let alert = &calls[0];
    assert_eq!(alert["event_type"], "alert");
    assert_eq!(alert["level"], "ERROR");
    assert_eq!(alert["app_version"], "3.2.1");
    assert_eq!(alert["properties"]["rule"], "error rate");
    assert_eq!(alert["properties"]["group"], "app_version=3.2.1");
    assert!(
        alert["properties"]["value"].as_f64().unwrap() > 0.2,
        "{alert}"
    );
    assert!(
        alert["message"]
            .as_str()
            .unwrap()
            .contains("is above 20.0%"),
        "{alert}"
    );

    // The file route keeps every notification: one of the error rate, one per crash episode.
    let kept = jsonl(&tmp.path().join("alerts"));
    let rules: Vec<&str> = kept
        .iter()
        .map(|a| a["properties"]["rule"].as_str().unwrap())
        .collect();
    let count = |r: &str| rules.iter().filter(|x| **x == r).count();
    assert_eq!((count("error rate"), count("crashes")), (1, 2), "{rules:?}");
    assert_eq!(metric(&m, "bitacora_stream_alerts_notified_total"), 3.0);
    assert_eq!(
        metric(&m, "bitacora_stream_alert_notify_failures_total"),
        0.0
    );

    // The dashboard lists both episodes of each rule, begun and ended, latest first.
    let notes = live["latest_alerts"].as_array().unwrap();
    let of = |r: &str, state: &str| {
        notes
            .iter()
            .filter(|n| n["rule"] == r && n["state"] == state)
            .count()
    };
    assert_eq!(
        (of("error rate", "firing"), of("error rate", "resolved")),
        (2, 2),
        "{notes:?}"
    );
    assert_eq!(
        (of("crashes", "firing"), of("crashes", "resolved")),
        (2, 2),
        "{notes:?}"
    );
    let cooled: Vec<_> = notes
        .iter()
        .filter(|n| n["rule"] == "error rate" && n["state"] == "firing")
        .map(|n| n["notified"].as_bool().unwrap())
        .collect();
    assert_eq!(cooled, [false, true], "the later episode cooled down");
    // App events never reached the notify-only routes.
    assert!(kept.iter().all(|a| a["event_type"] == "alert"));
}
