"""The stream service's OpenSearch sink against osmem-server (an in-memory OpenSearch-compatible
server): `_bulk` with `_id = event_id` (a record delivered again overwrites its document), daily
indices from `{dt}`, and item failures — a document OpenSearch refuses (a mapping conflict) goes to
the route's dead letters with OpenSearch's reason while the rest of its batch is indexed."""

from __future__ import annotations

import json
import urllib.request

import pytest

from test_stream_aws import message, stream_proc  # noqa: F401  (the fixture)


@pytest.fixture
def opensearch():
    from osmem_server import OsmemServer

    server = OsmemServer.start(freeze=False)
    try:
        yield server
    finally:
        server.close()


def search(server, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"{server.url}{path}", data=data, method="POST" if data else "GET", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_opensearch_sink_overwrites_redeliveries_and_dead_letters_refused_items(opensearch, tmp_path, stream_proc):
    config = tmp_path / "bitacora.toml"
    config.write_text(
        f"""
[stream]
data_dir = "{tmp_path}/data"
[stream.dedup]
kind = "none"
[[stream.routes]]
name = "search"
sink = {{ kind = "opensearch", endpoint = "{opensearch.url}", index = "bitacora-events-{{dt}}" }}
"""
    )
    svc = stream_proc(config, {})
    kinds = ["purchase", "crash", "screen_view"]
    lines = [message(i, kinds[i % 3]) for i in range(40)]
    assert svc.post(lines)[0] == 200
    # No dedup on this service: the copies reach OpenSearch, and overwrite.
    assert svc.post(lines)[0] == 200
    index = "bitacora-events-2026-11-18"
    search(opensearch, f"/{index}/_refresh", {})
    assert search(opensearch, f"/{index}/_count")["count"] == 40
    crashes = search(opensearch, f"/{index}/_search", {"query": {"term": {"event_type": "crash"}}, "size": 100})
    assert sorted(h["_id"] for h in crashes["hits"]["hits"]) == sorted(f"ev-{i}" for i in range(1, 40, 3))
    doc = crashes["hits"]["hits"][0]["_source"]
    assert doc["level"] == "ERROR" and doc["dt"] == "2026-11-18"

    # properties.i is a number in the index: a record where it is text is refused by OpenSearch,
    # and only that one goes to the dead letters; its batch is acknowledged.
    bad = json.loads(message(100, "purchase"))
    bad["props"] = {"i": "not a number"}
    good = message(101, "purchase")
    status, body = svc.post([json.dumps(bad), good])
    assert status == 200, body
    report = svc.stop()
    routes = {r["name"]: r for r in report["routes"]}
    assert routes["search"]["dead_lettered"] == 1
    search(opensearch, f"/{index}/_refresh", {})
    assert search(opensearch, f"/{index}/_count")["count"] == 41
    dead = [
        json.loads(line)
        for f in sorted((tmp_path / "data" / "dead-letter" / "search").glob("*.jsonl"))
        for line in f.read_text().splitlines()
    ]
    assert len(dead) == 1
    assert dead[0]["record"]["event_id"] == "ev-100"
    assert "mapper_parsing_exception" in dead[0]["reason"], dead[0]["reason"]
