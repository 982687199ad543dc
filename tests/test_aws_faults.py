"""Faults between Bitácora and AWS: a proxy in front of the local endpoint throttles, answers 5xx
and drops connections. Transient faults are retried and change nothing; a fault that persists fails
the step cleanly and leaves the published partition as it was."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from conftest import run, s3_keys
from faultproxy import FaultProxy, s3_writes, target
from test_aws_cloudwatch import GROUP, put_day

DAY = (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=2)).isoformat()


@pytest.fixture
def proxy(aws):
    p = FaultProxy(aws["env"]["AWS_ENDPOINT_URL"])
    yield p
    p.close()


def every_other(kinds):
    """Faults on odd matched requests, cycling through `kinds`; even ones go through."""
    return lambda m, p, h, n: kinds[(n // 2) % len(kinds)] if n % 2 == 1 else None


def config(tmp_path, logs_root, extra=""):
    c = tmp_path / "b.toml"
    c.write_text(
        f'[source]\nkind = "cloudwatch"\nlog_group = "{GROUP}"\nslices = 6\npage_size = 500\nmax_requests_per_second = 100\n'
        f'[lake]\nroot = "s3://lake/{logs_root}"\nmax_retries = 3\nretry_timeout_secs = 20\n'
        f'[encryption]\nkey_file = "{tmp_path / "k"}"\n{extra}'
    )
    return c


def steps(config, env):
    out = {}
    for tool in ["bitacora-extract", "bitacora-transform", "bitacora-catalog"]:
        out[tool] = json.loads(run(tool, "--config", str(config), "--date", DAY, env=env).stdout)
    return out


def dau(config, env=None):
    return json.loads(run("bitacora-query", "--config", str(config), "--format", "json", "--named", "daily_active_users", "--date", DAY, env=env).stdout)


def test_transient_faults_are_retried_and_change_nothing(aws, proxy, tmp_path):
    logs = tmp_path / "logs"
    run("bitacora", "generate", "--date", DAY, "--events", "3000", "--out", str(logs), "--seed", "4")
    put_day(aws["client"]("logs"), logs)
    aws["client"]("s3").create_bucket(Bucket="lake")

    clean = steps(config(tmp_path, "clean"), None)
    proxy.add(target("FilterLogEvents"), every_other(["throttle", "500", "drop"]))
    proxy.add(s3_writes("lake"), every_other(["slowdown", "500", "drop"]))
    faulty_env = {"AWS_ENDPOINT_URL": proxy.url}
    faulty = steps(config(tmp_path, "faulty"), faulty_env)

    assert {"throttle", "500", "drop", "slowdown"} <= set(proxy.injected), proxy.injected
    assert faulty["bitacora-extract"]["selected"] == clean["bitacora-extract"]["selected"]
    for k in ["read", "events", "quarantine", "duplicates"]:
        assert faulty["bitacora-transform"][k] == clean["bitacora-transform"][k], k
    proxy.clear()
    assert dau(config(tmp_path, "faulty")) == dau(config(tmp_path, "clean"))


def test_persistent_faults_fail_cleanly_and_keep_the_partition(aws, proxy, tmp_path):
    logs = tmp_path / "logs"
    run("bitacora", "generate", "--date", DAY, "--events", "2000", "--out", str(logs), "--seed", "6")
    put_day(aws["client"]("logs"), logs)
    aws["client"]("s3").create_bucket(Bucket="lake")
    cfg = config(tmp_path, "prod", extra="")
    steps(cfg, None)
    before = dau(cfg)

    env = {"AWS_ENDPOINT_URL": proxy.url}
    # S3 refuses every write: the transform gives up after its retries, naming the lake.
    proxy.add(s3_writes("lake"), lambda m, p, h, n: "500")
    proc = run("bitacora-transform", "--config", str(cfg), "--date", DAY, env=env, check=False)
    assert proc.returncode == 1, proc.stdout
    err = json.loads(proc.stdout)
    assert err["error_kind"] == "storage" and "s3://lake/prod/" in err["error"], err
    proxy.clear()
    assert dau(cfg) == before

    # CloudWatch throttles every call: the extract gives up after source.max_attempts.
    throttled = config(tmp_path, "prod", extra="") 
    throttled.write_text(throttled.read_text().replace("max_requests_per_second = 100", "max_requests_per_second = 100\nmax_attempts = 2"))
    proxy.add(target("FilterLogEvents"), lambda m, p, h, n: "throttle")
    proc = run("bitacora-extract", "--config", str(throttled), "--date", DAY, env=env, check=False)
    assert proc.returncode == 1
    err = json.loads(proc.stdout)["error"]
    assert GROUP in err and "ThrottlingException" in err, err
    proxy.clear()
    assert dau(cfg) == before


def test_a_run_published_meanwhile_makes_the_later_one_fail_cleanly(aws, proxy, tmp_path):
    """Two runs of one day at once: S3 conditional writes let only the first publish; the later
    one fails, removes its own files, and the first one's partition stays as published."""
    logs = tmp_path / "logs"
    run("bitacora", "generate", "--date", DAY, "--events", "1500", "--out", str(logs), "--seed", "9")
    put_day(aws["client"]("logs"), logs)
    s3 = aws["client"]("s3")
    s3.create_bucket(Bucket="lake")
    cfg = config(tmp_path, "prod")
    steps(cfg, None)
    before = dau(cfg)
    key = f"prod/_manifests/transform/dt={DAY}.json"

    def other_run_publishes_first(method, path, headers, body):
        from urllib.parse import unquote

        if method == "PUT" and unquote(path.split("?")[0]).endswith(f"/lake/{key}"):
            # Another run of the day publishes first (here: the same run, re-stamped: a new version).
            current = json.loads(s3.get_object(Bucket="lake", Key=key)["Body"].read())
            current["created_at"] = "2099-01-01T00:00:00.000Z"
            s3.put_object(Bucket="lake", Key=key, Body=json.dumps(current).encode())

    proxy.hooks.append(other_run_publishes_first)
    proc = run("bitacora-transform", "--config", str(cfg), "--date", DAY, env={"AWS_ENDPOINT_URL": proxy.url}, check=False)
    proxy.hooks.clear()
    assert proc.returncode == 1, proc.stdout
    err = json.loads(proc.stdout)["error"]
    assert "another run of transform" in err, err
    # The losing run left nothing behind; the published run is intact and still answers.
    manifest = json.loads(s3.get_object(Bucket="lake", Key=key)["Body"].read())
    runs = {k.split("/run=")[1].split("/")[0] for k in s3_keys(s3, "lake", f"prod/events/dt={DAY}/")}
    assert runs == {manifest["run_id"]}, runs
    assert dau(cfg) == before

