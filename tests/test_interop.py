"""The curated zone as other engines see it: pyarrow and DuckDB read our Parquet with the contract's
schema and get the answers `bitacora-query` gives. This is what Athena, Spark and notebooks rely on."""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from conftest import DAY, manifest, run

EVENTS_COLUMNS = [
    ("event_id", pa.string()),
    ("event_time", pa.timestamp("us", tz="UTC")),
    ("ingest_time", pa.timestamp("us", tz="UTC")),
    ("log_group", pa.string()),
    ("log_stream", pa.string()),
    ("level", pa.string()),
    ("event_type", pa.string()),
    ("user_id", pa.string()),
    ("session_id", pa.string()),
    ("app_version", pa.string()),
    ("platform", pa.string()),
    ("os_version", pa.string()),
    ("device_model", pa.string()),
    ("country", pa.string()),
    ("latency_ms", pa.int64()),
    ("status_code", pa.int32()),
    ("error_code", pa.string()),
    ("message", pa.string()),
    ("properties", pa.string()),
]


def event_files(processed_day):
    lake = processed_day["lake"]
    return [lake / f["path"] for f in manifest(lake, "transform")["outputs"]["events"]["files"]]


def test_parquet_schema_compression_and_row_groups(processed_day):
    files = event_files(processed_day)
    assert files
    for f in files:
        meta = pq.ParquetFile(f)
        schema = meta.schema_arrow
        assert [(n, schema.field(n).type) for n in schema.names] == EVENTS_COLUMNS
        md = meta.metadata
        assert md.num_row_groups >= 1
        rg = md.row_group(0)
        names = schema.names
        assert all(rg.column(i).compression == "ZSTD" for i in range(rg.num_columns))
        # Columns filters prune on carry min/max; random ids and text blobs do not need them.
        for name in ["event_time", "event_type", "app_version", "level"]:
            stats = rg.column(names.index(name)).statistics
            assert stats is not None and stats.has_min_max, name
        for name in ["event_id", "user_id", "session_id"]:
            assert rg.column(names.index(name)).statistics is None, name
        # Sorted by (event_type, event_time, event_id): row groups do not overlap on event_type.
        types = pq.read_table(f, columns=["event_type"]).column(0).to_pylist()
        assert types == sorted(types, key=lambda t: (t is not None, t))


def test_duckdb_and_pyarrow_agree_with_the_report_and_bitacora_query(processed_day):
    t = processed_day["run"]["days"][0]["transform"]
    gen = processed_day["generate"]
    assert t["read"] == gen["in_day"]
    assert t["events"] + t["quarantine"] + t["duplicates"] == t["read"]
    table = pa.concat_tables([pq.read_table(f) for f in event_files(processed_day)])
    assert table.num_rows == t["events"]
    assert len(set(table.column("event_id").to_pylist())) == t["events"]

    paths = [str(f) for f in event_files(processed_day)]
    dau_duckdb = duckdb.connect().execute(
        f"SELECT count(DISTINCT user_id) FROM read_parquet({paths!r}) WHERE user_id IS NOT NULL"
    ).fetchone()[0]
    out = run(
        "bitacora-query", "--config", str(processed_day["config"]), "--format", "json",
        "--named", "daily_active_users", "--date", DAY,
    )
    rows = json.loads(out.stdout)
    assert rows[0]["dt"] == DAY
    assert rows[0]["active_users"] == dau_duckdb


def test_quarantine_is_readable_with_reasons(processed_day):
    lake = processed_day["lake"]
    files = [lake / f["path"] for f in manifest(lake, "transform")["outputs"]["quarantine"]["files"]]
    q = pa.concat_tables([pq.read_table(f) for f in files])
    assert q.num_rows == processed_day["generate"]["malformed"]
    assert set(q.column("reason").to_pylist()) <= {"wrong_type", "unparsable_ts"}
    assert all(r.startswith("{") for r in q.column("raw").to_pylist())


def test_step_binaries_speak_json_to_schedulers(processed_day):
    """What an Airflow BashOperator sees: one JSON object on stdout, exit codes 0/1/2."""
    cfg = str(processed_day["config"])
    ok = run("bitacora-catalog", "--config", cfg, "--date", DAY)
    report = json.loads(ok.stdout)
    assert report["status"] == "ok"
    assert all(p["change"] == "unchanged" for p in report["partitions"])
    missing = run("bitacora-transform", "--config", cfg, "--date", "2001-01-01", check=False)
    assert missing.returncode == 1
    assert json.loads(missing.stdout)["status"] == "error"
    bad = run("bitacora-extract", "--config", cfg, "--date", "01/02/2026", check=False)
    assert bad.returncode == 2
