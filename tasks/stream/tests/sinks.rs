//! The sinks against scripted peers: each passes the shared conformance suite, and the
//! OpenSearch sink reads `_bulk` item failures as OpenSearch documents them.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bitacora_stream::record::SinkRecord;
use bitacora_stream::sinks::http::{HttpSink, HttpSinkConfig};
use bitacora_stream::sinks::opensearch::{OpenSearchSink, OpenSearchSinkConfig};
use bitacora_stream::sinks::{Sink, conformance};
use support::Peer;

fn http_config(url: String) -> HttpSinkConfig {
    toml::from_str(&format!("url = \"{url}\"\n")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sink_passes_the_conformance_suite() {
    let peer = Peer::start(|_| (200, "{}".into())).await;
    let sink = HttpSink::new(&http_config(peer.url("/hook"))).unwrap();
    let bodies = peer.bodies.clone();
    conformance::run(&sink, || {
        let bodies = bodies.clone();
        async move {
            bodies
                .lock()
                .unwrap()
                .iter()
                .flat_map(|(_, b)| b.lines().map(str::to_string).collect::<Vec<_>>())
                .collect()
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sink_retries_5xx_and_refuses_4xx() {
    let peer = Peer::start(|b| {
        if b.contains("\"x\":1") {
            (503, "busy".into())
        } else {
            (400, "bad".into())
        }
    })
    .await;
    let sink = HttpSink::new(&http_config(peer.url("/hook"))).unwrap();
    let e = sink
        .send(&[SinkRecord::new("a", r#"{"x":1}"#)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            bitacora_stream::Error::Sink {
                retryable: true,
                ..
            }
        ),
        "{e}"
    );
    let sent = sink
        .send(&[SinkRecord::new("b", r#"{"x":2}"#)])
        .await
        .unwrap();
    assert_eq!(sent.rejected.len(), 1);
    assert!(sent.rejected[0].1.contains("HTTP 400"), "{sent:?}");
}

/// A small `_bulk` stand-in keeping documents by (index, id), failing the items a test names.
fn bulk_peer(
    docs: Arc<Mutex<BTreeMap<(String, String), String>>>,
    fail: Arc<Mutex<BTreeMap<String, u16>>>,
) -> impl Fn(&str) -> (u16, String) + Send + Sync {
    move |body: &str| {
        let lines: Vec<&str> = body.lines().collect();
        let mut items = Vec::new();
        let mut errors = false;
        for pair in lines.chunks(2) {
            let action: serde_json::Value = serde_json::from_str(pair[0]).unwrap();
            let index = action["index"]["_index"].as_str().unwrap().to_string();
            let id = action["index"]["_id"].as_str().unwrap().to_string();
            let status = fail.lock().unwrap().remove(&id).unwrap_or(201);
            if status >= 300 {
                errors = true;
                items.push(serde_json::json!({"index": {"_index": index, "_id": id, "status": status, "error": {"type": if status == 429 { "es_rejected_execution_exception" } else { "mapper_parsing_exception" }, "reason": "scripted"}}}));
            } else {
                docs.lock()
                    .unwrap()
                    .insert((index.clone(), id.clone()), pair[1].to_string());
                items.push(
                    serde_json::json!({"index": {"_index": index, "_id": id, "status": status}}),
                );
            }
        }
        (
            200,
            serde_json::json!({"took": 1, "errors": errors, "items": items}).to_string(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opensearch_sink_passes_the_conformance_suite_and_overwrites_by_id() {
    let docs = Arc::new(Mutex::new(BTreeMap::new()));
    let fail = Arc::new(Mutex::new(BTreeMap::new()));
    let peer = Peer::start(bulk_peer(docs.clone(), fail.clone())).await;
    let config: OpenSearchSinkConfig = toml::from_str(&format!(
        "endpoint = \"{}\"\nindex = \"logs-{{dt}}\"\n",
        peer.url("")
    ))
    .unwrap();
    let sink = OpenSearchSink::new(&config).unwrap();
    let d = docs.clone();
    conformance::run(&sink, || {
        let d = d.clone();
        async move { d.lock().unwrap().values().cloned().collect() }
    })
    .await;
    // Sent again, a record overwrites its document.
    let before = docs.lock().unwrap().len();
    sink.send(&[SinkRecord::new(
        "conf-0",
        r#"{"event_id":"conf-0","dt":"2026-11-18"}"#,
    )])
    .await
    .unwrap();
    sink.send(&[SinkRecord::new(
        "conf-0",
        r#"{"event_id":"conf-0","dt":"2026-11-18"}"#,
    )])
    .await
    .unwrap();
    assert_eq!(
        docs.lock().unwrap().len(),
        before + 1,
        "one document in logs-2026-11-18"
    );
    assert!(
        docs.lock()
            .unwrap()
            .contains_key(&("logs-2026-11-18".to_string(), "conf-0".to_string()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opensearch_item_failures_are_retried_or_refused_one_by_one() {
    let docs = Arc::new(Mutex::new(BTreeMap::new()));
    let fail = Arc::new(Mutex::new(BTreeMap::from([
        ("b".to_string(), 429u16),
        ("c".to_string(), 400u16),
        ("d".to_string(), 503u16),
    ])));
    let peer = Peer::start(bulk_peer(docs.clone(), fail)).await;
    let config: OpenSearchSinkConfig = toml::from_str(&format!(
        "endpoint = \"{}\"\nindex = \"logs\"\n",
        peer.url("")
    ))
    .unwrap();
    let sink = OpenSearchSink::new(&config).unwrap();
    let batch: Vec<SinkRecord> = ["a", "b", "c", "d"]
        .iter()
        .map(|id| SinkRecord::new(*id, format!(r#"{{"event_id":"{id}"}}"#)))
        .collect();
    let sent = sink.send(&batch).await.unwrap();
    assert_eq!(sent.retry, vec![1, 3]);
    assert_eq!(sent.rejected.len(), 1);
    assert_eq!(sent.rejected[0].0, 2);
    assert!(
        sent.rejected[0].1.contains("400")
            && sent.rejected[0].1.contains("mapper_parsing_exception"),
        "{sent:?}"
    );
    // Only the throttled ones are sent again, and now succeed.
    let again = sink
        .send(&[batch[1].clone(), batch[3].clone()])
        .await
        .unwrap();
    assert!(again.is_complete());
    let ids: Vec<String> = docs
        .lock()
        .unwrap()
        .keys()
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(ids, vec!["a", "b", "d"]);
}
