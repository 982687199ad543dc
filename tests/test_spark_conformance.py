"""The Spark transform (tasks/transform/spark/bitacora_transform.py, real PySpark in local mode) and
the Rust transform, on the same raw zone, produce the same `events` and `quarantine` rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import DAY, ROOT, run

SCRIPT = ROOT / "tasks" / "transform" / "spark" / "bitacora_transform.py"


# Both engines run the same (Rust) normaliser: every column of every row is the same, `detail` too.
PARSER_DETAILS: set[str] = set()


def rows(paths, drop=()):
    tables = [pq.read_table(p) for p in paths]
    out = []
    for t in tables:
        for r in t.to_pylist():
            for d in drop:
                r.pop(d, None)
            if r.get("reason") in PARSER_DETAILS:
                r.pop("detail", None)
            r.pop("dt", None)
            out.append(r)
    return out


def key(r):
    return json.dumps(r, sort_keys=True, default=str)


@pytest.fixture(scope="module")
def raw_day(tmp_path_factory):
    base = tmp_path_factory.mktemp("spark")
    logs, lake = base / "logs", base / "lake"
    run("bitacora", "generate", "--date", DAY, "--events", "8000", "--out", str(logs), "--seed", "17")
    spark_cfg = base / "spark.toml"
    spark_cfg.write_text(
        f'[source]\npath = "{logs}"\n[lake]\nroot = "{lake}"\n[encryption]\nmode = "none"\n'
        '[transform]\nengine = "glue"\nrows_per_file = 3000\n'
    )
    extract = json.loads(run("bitacora-extract", "--config", str(spark_cfg), "--date", DAY).stdout)
    return {"base": base, "lake": lake, "logs": logs, "extract": extract, "spark_cfg": spark_cfg}


def test_spark_mode_raw_zone_is_plain_gzip_ndjson(raw_day):
    import gzip

    lake = raw_day["lake"]
    objects = sorted((lake / "raw" / f"dt={DAY}").glob("run=*/*"))
    assert objects and all(o.name.endswith(".jsonl.gz") for o in objects)
    lines = sum(len(gzip.open(o).read().splitlines()) for o in objects)
    assert lines == raw_day["extract"]["selected"]


def test_spark_and_rust_transforms_agree(raw_day):
    base, lake = raw_day["base"], raw_day["lake"]
    rust_cfg = base / "rust.toml"
    rust_cfg.write_text(raw_day["spark_cfg"].read_text().replace('engine = "glue"', 'engine = "rust"'))
    report = json.loads(run("bitacora-transform", "--config", str(rust_cfg), "--date", DAY).stdout)
    manifest = json.loads((lake / "_manifests" / "transform" / f"dt={DAY}.json").read_text())
    rust_events = rows([lake / f["path"] for f in manifest["outputs"]["events"]["files"]])
    rust_quarantine = rows([lake / f["path"] for f in manifest["outputs"]["quarantine"]["files"]])
    assert len(rust_events) == report["events"] and len(rust_quarantine) == report["quarantine"] > 0

    raw_dir = next((lake / "raw" / f"dt={DAY}").glob("run=*"))
    out = base / "spark-out"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "SPARK_LOCAL_IP": "127.0.0.1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--raw", str(raw_dir), "--events", str(out / "events"),
         "--quarantine", str(out / "quarantine"), "--log-group", "/mobile/app"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    spark_events = rows(sorted((out / "events").glob("*.parquet")))
    spark_quarantine = rows(sorted((out / "quarantine").glob("*.parquet")))

    assert len(spark_events) == len(rust_events)
    # The job counts for itself: the same figures as the Rust transform's report.
    counts = json.loads((out / "events" / "_bitacora_counts.json").read_text())
    assert counts == {k: report[k] for k in ("read", "events", "quarantine", "duplicates")}
    assert report["duplicates"] > 0
    assert sorted(map(key, spark_events)) == sorted(map(key, rust_events))
    assert sorted(map(key, spark_quarantine)) == sorted(map(key, rust_quarantine))
    # Same schema, column for column.
    rust_schema = pq.read_schema(lake / manifest["outputs"]["events"]["files"][0]["path"])
    spark_schema = pq.read_schema(sorted((out / "events").glob("*.parquet"))[0])
    assert [(f.name, str(f.type)) for f in spark_schema] == [(f.name, str(f.type)) for f in rust_schema]


def test_spark_engine_refuses_client_side_encryption(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[lake]\nroot = "{tmp_path / "lake"}"\n[encryption]\nmode = "envelope"\nkey_file = "{tmp_path / "k"}"\n[transform]\nengine = "emr-serverless"\n')
    proc = run("bitacora-extract", "--config", str(cfg), "--date", DAY, check=False)
    assert proc.returncode == 2
    assert "encryption.mode" in json.loads(proc.stdout)["error"]


def test_glue_engine_submits_the_job_and_publishes_its_output(aws, raw_day, tmp_path):
    """`transform.engine = "glue"`: the step starts a Glue job run and publishes what it wrote. The
    local endpoint runs no jobs, so a hook in front of it runs the PySpark script with the run's
    arguments, as Glue would, before the call reaches it."""
    from faultproxy import FaultProxy

    glue = aws["client"]("glue")
    glue.create_job(Name="bitacora-transform", Role="arn:aws:iam::123456789012:role/glue",
                    Command={"Name": "glueetl", "ScriptLocation": "s3://code/bitacora_transform.py"})
    proxy = FaultProxy(aws["env"]["AWS_ENDPOINT_URL"])
    submitted = []

    def run_like_glue(method, path, headers, body):
        if "AWSGlue.StartJobRun" not in (headers.get("X-Amz-Target") or headers.get("x-amz-target") or ""):
            return
        args = json.loads(body)["Arguments"]
        submitted.append(args)
        env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
               "SPARK_LOCAL_IP": "127.0.0.1"}
        flat = [x for k, v in args.items() for x in (k, v)]
        subprocess.run([sys.executable, str(SCRIPT), *flat], check=True, capture_output=True, env=env, timeout=600)
        if miscount:
            # A job whose counts do not add up (one duplicate it did not drop, say).
            counts = Path(urllib.parse.urlparse(args["--events"]).path) / "_bitacora_counts.json"
            c = json.loads(counts.read_text())
            counts.write_text(json.dumps({**c, "duplicates": c["duplicates"] - 1}))

    miscount = False
    proxy.hooks.append(run_like_glue)
    try:
        cfg = tmp_path / "glue.toml"
        cfg.write_text(raw_day["spark_cfg"].read_text() + 'glue_job = "bitacora-transform"\npoll_max_secs = 1\n')
        env = {"AWS_ENDPOINT_URL": proxy.url}
        report = json.loads(run("bitacora-transform", "--config", str(cfg), "--date", DAY, env=env).stdout)
        # The identity is checked with the job's own duplicate count: a miscount fails the step.
        miscount = True
        bad = run("bitacora-transform", "--config", str(cfg), "--date", DAY, env=env, check=False)
        assert bad.returncode == 1, bad.stderr
        assert json.loads(bad.stdout)["error_kind"] == "invariant"
        assert "duplicates" in json.loads(bad.stdout)["error"]
    finally:
        proxy.close()
    published = json.loads((raw_day["lake"] / "_manifests" / "transform" / f"dt={DAY}.json").read_text())
    assert published["run_id"] == report["run_id"], "the failed run published nothing"
    assert report["spark_job_run"] and len(submitted) == 2  # the good run and the miscounted one
    assert submitted[0]["--events"] == report["events_location"]
    assert report["events"] + report["quarantine"] + report["duplicates"] == report["read"] == raw_day["extract"]["selected"]
    assert report["quarantine"] > 0 and report["quarantine_reasons"]

    # Catalogued and queried like any transform run: the same answers as the Rust transform.
    run("bitacora-catalog", "--config", str(cfg), "--date", DAY)
    q = ["--format", "json", "--named", "daily_active_users", "--date", DAY]
    spark_answer = json.loads(run("bitacora-query", "--config", str(cfg), *q).stdout)
    rust_cfg = tmp_path / "rust.toml"
    rust_cfg.write_text(raw_day["spark_cfg"].read_text().replace('engine = "glue"', 'engine = "rust"'))
    run("bitacora-transform", "--config", str(rust_cfg), "--date", DAY)
    run("bitacora-catalog", "--config", str(rust_cfg), "--date", DAY)
    assert json.loads(run("bitacora-query", "--config", str(rust_cfg), *q).stdout) == spark_answer


def test_glue_engine_needs_a_job(raw_day, tmp_path):
    proc = run("bitacora-transform", "--config", str(raw_day["spark_cfg"]), "--date", DAY, check=False)
    assert proc.returncode == 2
    assert "transform.glue_job" in json.loads(proc.stdout)["error"]


def test_emr_serverless_engine_submits_the_job(aws, raw_day, tmp_path):
    """`transform.engine = "emr-serverless"`: the same path through an EMR Serverless application;
    the hook runs the script with the job's entry-point arguments, as EMR would."""
    from faultproxy import FaultProxy

    emr = aws["client"]("emr-serverless")
    app = emr.create_application(name="bitacora", releaseLabel="emr-7.0.0", type="SPARK")["applicationId"]
    proxy = FaultProxy(aws["env"]["AWS_ENDPOINT_URL"])
    submitted = []

    def run_like_emr(method, path, headers, body):
        if method != "POST" or not path.rstrip("/").endswith("/jobruns"):
            return
        spark = json.loads(body)["jobDriver"]["sparkSubmit"]
        submitted.append(spark)
        env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
               "SPARK_LOCAL_IP": "127.0.0.1"}
        subprocess.run([sys.executable, str(SCRIPT), *spark["entryPointArguments"]], check=True,
                       capture_output=True, env=env, timeout=600)

    proxy.hooks.append(run_like_emr)
    try:
        cfg = tmp_path / "emr.toml"
        cfg.write_text(
            raw_day["spark_cfg"].read_text().replace('engine = "glue"', 'engine = "emr-serverless"')
            + f'emr_application_id = "{app}"\nemr_execution_role = "arn:aws:iam::123456789012:role/emr"\n'
            'script_location = "s3://code/bitacora_transform.py"\npoll_max_secs = 1\n'
        )
        report = json.loads(run("bitacora-transform", "--config", str(cfg), "--date", DAY, env={"AWS_ENDPOINT_URL": proxy.url}).stdout)
    finally:
        proxy.close()
    assert len(submitted) == 1 and submitted[0]["entryPoint"] == "s3://code/bitacora_transform.py"
    assert report["spark_job_run"]
    assert report["events"] + report["quarantine"] + report["duplicates"] == report["read"] == raw_day["extract"]["selected"]
    assert report["events"] > 0
