"""The OpenSearch side in docker/opensearch: the index template is loaded into osmem-server (an
in-memory OpenSearch-compatible server) in front of the stream service's OpenSearch route, and the
daily index it creates has the template's mappings and answers the dashboard's aggregations; the
ISM policy and the Dashboards saved objects are checked the way their APIs read them (osmem has no
ISM plugin and no Dashboards)."""

from __future__ import annotations

import json
import re

from conftest import ROOT
from test_stream_aws import message, stream_proc  # noqa: F401  (the fixture)
from test_stream_opensearch import opensearch, search  # noqa: F401  (the fixture)

ASSETS = ROOT / "docker" / "opensearch"
TEMPLATE = json.loads((ASSETS / "index-template.json").read_text())
MAPPING = TEMPLATE["template"]["mappings"]["properties"]
ROUTED_COLUMNS = [
    "event_id", "event_time", "ingest_time", "log_group", "log_stream", "level", "event_type", "user_id",
    "session_id", "app_version", "platform", "os_version", "device_model", "country", "latency_ms",
    "status_code", "error_code", "message", "properties", "dt",
]  # fmt: skip
AGGREGATABLE = {"keyword", "date", "long", "integer"}


def put(server, path: str, body: dict) -> dict:
    import urllib.request

    req = urllib.request.Request(
        f"{server.url}{path}", data=json.dumps(body).encode(), method="PUT", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_the_template_maps_every_routed_column_and_the_index_answers_the_dashboard(opensearch, tmp_path, stream_proc):
    assert list(MAPPING) == ROUTED_COLUMNS
    assert put(opensearch, "/_index_template/bitacora-events", TEMPLATE)["acknowledged"] is True
    config = tmp_path / "bitacora.toml"
    config.write_text(
        f"""
[stream]
data_dir = "{tmp_path}/data"
[[stream.routes]]
name = "search"
sink = {{ kind = "opensearch", endpoint = "{opensearch.url}", index = "bitacora-events-{{dt}}" }}
"""
    )
    svc = stream_proc(config, {})
    kinds = ["purchase", "crash", "screen_view", "api_call"]
    lines = [message(i, kinds[i % 4]) for i in range(60)] + ["plain text crash at Foo.bar"]
    status, body = svc.post(lines)
    assert status == 200 and body["accepted"] == 61, body
    svc.stop()
    index = "bitacora-events-2026-11-18"
    mapping = search(opensearch, f"/{index}/_mapping")[index]["mappings"]["properties"]
    for column, spec in MAPPING.items():
        assert mapping[column]["type"] == spec.get("type", "object"), column
    # The document id is the record's event_id (a redelivered record overwrites itself).
    doc = search(opensearch, f"/{index}/_doc/ev-5")
    assert doc["found"] is True and doc["_source"]["event_type"] == "crash", doc
    # The text event is on today's index; the dashboard's pattern covers both.
    search(opensearch, "/bitacora-events-*/_refresh", {})
    assert search(opensearch, "/bitacora-events-*/_count")["count"] == 61
    aggs = search(
        opensearch,
        f"/{index}/_search",
        {
            "size": 0,
            "aggs": {
                "types": {"terms": {"field": "event_type", "size": 10}},
                "by_platform": {
                    "terms": {"field": "platform"},
                    "aggs": {"latency": {"percentiles": {"field": "latency_ms", "percents": [50, 95, 99]}}},
                },
                "per_minute": {"date_histogram": {"field": "event_time", "fixed_interval": "1m"}},
            },
        },
    )["aggregations"]
    assert {b["key"]: b["doc_count"] for b in aggs["types"]["buckets"]} == {k: 15 for k in kinds}
    platforms = {b["key"]: b for b in aggs["by_platform"]["buckets"]}
    assert sorted(platforms) == ["android", "ios"]
    assert platforms["ios"]["latency"]["values"]["50.0"] <= platforms["ios"]["latency"]["values"]["99.0"]
    assert [b["doc_count"] for b in aggs["per_minute"]["buckets"]] == [60]


def test_the_ism_policy_is_well_formed_and_covers_the_daily_indices():
    policy = json.loads((ASSETS / "ism-policy.json").read_text())["policy"]
    states = {s["name"]: s for s in policy["states"]}
    assert policy["default_state"] in states
    assert len(states) == len(policy["states"])
    ages = []
    for s in policy["states"]:
        for t in s["transitions"]:
            assert t["state_name"] in states, t
            age = t["conditions"]["min_index_age"]
            assert re.fullmatch(r"\d+[dhm]", age), age
            ages.append(int(age[:-1]))
        for a in s["actions"]:
            assert len(a) == 1 and next(iter(a)) in {"read_only", "force_merge", "replica_count", "delete", "rollover"}, a
    assert ages == sorted(ages)
    assert "delete" in states and states["delete"]["actions"] == [{"delete": {}}]
    assert policy["ism_template"][0]["index_patterns"] == TEMPLATE["index_patterns"]


def test_the_saved_objects_import_as_dashboards_reads_them():
    objects = [json.loads(line) for line in (ASSETS / "dashboards.ndjson").read_text().splitlines() if line.strip()]
    by_id = {}
    for o in objects:
        assert set(o) >= {"id", "type", "attributes", "references"}, o
        assert o["type"] in {"index-pattern", "visualization", "dashboard"}
        assert (o["type"], o["id"]) not in by_id, o["id"]
        by_id[(o["type"], o["id"])] = o
        for r in o["references"]:
            assert (r["type"], r["id"]) in by_id or any(x["id"] == r["id"] and x["type"] == r["type"] for x in objects), r
    (pattern,) = [o for o in objects if o["type"] == "index-pattern"]
    assert pattern["attributes"]["title"] in TEMPLATE["index_patterns"]
    assert MAPPING[pattern["attributes"]["timeFieldName"]]["type"] == "date"
    visualizations = [o for o in objects if o["type"] == "visualization"]
    assert len(visualizations) >= 5
    for v in visualizations:
        a = v["attributes"]
        state = json.loads(a["visState"])
        json.loads(a["uiStateJSON"])
        source = json.loads(a["kibanaSavedObjectMeta"]["searchSourceJSON"])
        names = {r["name"] for r in v["references"]}
        assert source["indexRefName"] in names
        for agg in state["aggs"]:
            field = agg["params"].get("field")
            if field:
                assert field in MAPPING and MAPPING[field]["type"] in AGGREGATABLE, (v["id"], field)
    (dashboard,) = [o for o in objects if o["type"] == "dashboard"]
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    refs = {r["name"]: r for r in dashboard["references"]}
    assert {p["panelRefName"] for p in panels} == set(refs)
    assert {r["id"] for r in refs.values()} == {v["id"] for v in visualizations}
    json.loads(dashboard["attributes"]["optionsJSON"])


def test_the_compose_stack_loads_the_opensearch_side_and_runs_the_stream_service():
    import tomllib

    import yaml

    services = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"]
    setup = (ASSETS / "setup.sh").read_text()
    for name in ["index-template.json", "ism-policy.json", "dashboards.ndjson"]:
        assert name in setup
    assert "/_index_template/bitacora-events" in setup and "/api/saved_objects/_import" in setup
    assert services["bitacora-stream"]["depends_on"]["opensearch-setup"]["condition"] == "service_completed_successfully"
    stream = tomllib.loads((ROOT / "docker" / "stream.toml").read_text())["stream"]
    (route,) = [r for r in stream["routes"] if r["sink"]["kind"] == "opensearch"]
    assert re.fullmatch(TEMPLATE["index_patterns"][0].replace("*", ".*"), route["sink"]["index"])
    assert "target/release/bitacora-stream" in (ROOT / "docker" / "Dockerfile").read_text()

