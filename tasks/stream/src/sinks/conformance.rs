//! The one conformance suite every [`Sink`] passes (called from each sink's tests against a
//! real peer): what it took is delivered, whole, once, and readable back.
//! `read_back` returns the JSON objects the peer holds now.

use std::collections::BTreeMap;

use super::Sink;
use crate::record::SinkRecord;

fn record(i: usize) -> SinkRecord {
    let json = serde_json::json!({
        "event_id": format!("conf-{i}"),
        "event_type": if i.is_multiple_of(2) { "purchase" } else { "screen_view" },
        "message": format!("línea {i} \"quoted\" \\ back\tslash ✓"),
        "latency_ms": i,
        "properties": {"n": i, "big": 123456789012345678u64},
    });
    SinkRecord::new(format!("conf-{i}"), serde_json::to_vec(&json).unwrap())
}

pub async fn run<S, R, Fut>(sink: &S, read_back: R)
where
    S: Sink + ?Sized,
    R: Fn() -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    let limits = sink.limits();
    assert!(
        limits.max_records >= 1 && limits.max_bytes >= 1024,
        "{}",
        sink.describe()
    );
    // Nothing to send is fine.
    assert!(sink.send(&[]).await.unwrap().is_complete());
    // Batches up to the limit, several times.
    let per = limits.max_records.min(40);
    let n = per * 3 + 1;
    let records: Vec<SinkRecord> = (0..n).map(record).collect();
    for chunk in records.chunks(per) {
        let sent = sink
            .send(chunk)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", sink.describe()));
        assert!(sent.is_complete(), "{}: {sent:?}", sink.describe());
    }
    sink.flush().await.unwrap();
    let got = read_back().await;
    let mut by_id: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for line in &got {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "{}: not one JSON object per record ({e}): {line}",
                sink.describe()
            )
        });
        let id = v["event_id"].as_str().unwrap_or_default().to_string();
        assert!(
            by_id.insert(id.clone(), v).is_none(),
            "{}: {id} delivered twice",
            sink.describe()
        );
    }
    assert_eq!(
        by_id.len(),
        n,
        "{}: {} of {n} records",
        sink.describe(),
        by_id.len()
    );
    for r in &records {
        let want: serde_json::Value = serde_json::from_slice(&r.json).unwrap();
        assert_eq!(by_id[&*r.id], want, "{}", sink.describe());
    }
    // Flushing again, with nothing new, changes nothing.
    sink.flush().await.unwrap();
    assert_eq!(read_back().await.len(), n, "{}", sink.describe());
}
