"""Shared fixtures: the release binaries and a generated, fully processed day."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DAY = "2026-11-02"


def bin_dir() -> Path:
    d = Path(os.environ.get("BITACORA_BIN_DIR", ROOT / "target" / "release"))
    if not (d / "bitacora").exists():
        pytest.fail(f"no Bitácora binaries in {d}: run `cargo build --release` (tests/run.sh does)")
    return d


def run(tool: str, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "BITACORA_LOG": "warn", **(env or {})}
    full_env.pop("BITACORA_CONFIG", None)
    proc = subprocess.run([str(bin_dir() / tool), *args], capture_output=True, text=True, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{tool} {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


NAMED = ["events_per_type", "daily_active_users", "error_rate_by_version", "p95_latency_by_platform", "top_error_codes"]


def named_answers(config, day: str, env: dict | None = None) -> dict:
    """Every day-scoped stakeholder query for `day`, as JSON rows (to compare two lakes)."""
    return {
        q: json.loads(run("bitacora-query", "--config", str(config), "--format", "json", "--named", q, "--date", day, env=env).stdout)
        for q in NAMED
    }


def local_config(path: Path, logs: Path, lake: Path, key: Path) -> Path:
    """Writes an embedded-default configuration (file source, local lake, envelope encryption)."""
    path.write_text(f'[source]\npath = "{logs}"\n[lake]\nroot = "{lake}"\n[encryption]\nmode = "envelope"\nkey_file = "{key}"\n')
    return path


def manifest(lake: Path, step: str, day: str = DAY) -> dict:
    """The published manifest of a step for a day in a local lake."""
    return json.loads((lake / "_manifests" / step / f"dt={day}.json").read_text())


def airflow_env(home: Path) -> dict:
    """The environment of an Airflow 3 with its home and SQLite metadata DB in `home`, Bitácora's
    DAG folder and the release binaries. SQLite connections wait up to a minute for a lock another
    process holds (its default is 5 s; a scheduler, DAG processor and API server share the file)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "bitacora_test_sqlite.py").write_text('CONNECT_ARGS = {"timeout": 60}\n')
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in [str(home), os.environ.get("PYTHONPATH", "")] if p),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "bitacora_test_sqlite.CONNECT_ARGS",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": "bitacora_test_sqlite.CONNECT_ARGS",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "BITACORA_BIN_DIR": str(bin_dir()),
        "BITACORA_LOG": "warn",
    }


def s3_keys(s3, bucket: str, prefix: str = "") -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


@pytest.fixture(scope="session")
def processed_day(tmp_path_factory):
    """A generated day run through extract → transform → catalog; yields paths and reports."""
    base = tmp_path_factory.mktemp("bitacora")
    logs, lake = base / "logs", base / "lake"
    config = local_config(base / "bitacora.toml", logs, lake, base / "lake.key")
    gen = json.loads(run("bitacora", "generate", "--date", DAY, "--events", "30000", "--out", str(logs), "--seed", "5").stdout)
    report = json.loads(run("bitacora", "--config", str(config), "run", "--from", DAY, "--to", DAY).stdout)
    return {"base": base, "lake": lake, "config": config, "generate": gen, "run": report}


# ------------------------------------------------------------------ a local AWS endpoint (moto)

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_server():
    """A moto server on 127.0.0.1 for the whole session; yields its URL."""
    import sys
    import time
    import urllib.request

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
            break
        except Exception:
            if proc.poll() is not None or time.time() > deadline:
                stop_group(proc)
                pytest.fail("moto server did not start")
            time.sleep(0.2)
    try:
        yield url
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen) -> None:
    """Stops a process started with `start_new_session=True`, its process group and all."""
    import os
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture
def aws(moto_server, monkeypatch):
    """Fresh moto state and the AWS environment every client reads (SDKs, object store, boto3)."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"), timeout=5)
    env = {
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"]:
        monkeypatch.delenv(k, raising=False)
    import boto3

    session = boto3.session.Session(region_name="us-east-1")
    return {"env": env, "client": lambda name: session.client(name, endpoint_url=moto_server)}
