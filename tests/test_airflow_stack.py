"""Bitácora's DAG in a running Airflow 3 (`airflow standalone`: API server, scheduler, DAG processor,
triggerer; SQLite metadata DB, LocalExecutor), driven as an operator would: a backfill of three past
days with `airflow backfill create` produces three partitions, re-running a day through a second
backfill changes nothing, and the DAG's page in the UI (headless Chromium) shows the DAG and its
tasks. Both runners (step binaries; the Python module in Airflow's forked task processes). The
screenshots are kept in tests/artifacts/ (BITACORA_ARTIFACTS overrides)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import NAMED, ROOT, airflow_env, free_port, local_config, manifest, named_answers, run

TASKS = ["extract", "transform", "catalog", "quality_gate", "named_queries"]
DAG_ID = "bitacora_daily"


def _days() -> list[str]:
    """The three most recent complete UTC days (a backfill only runs intervals that have ended)."""
    today = dt.datetime.now(dt.timezone.utc).date()
    return [(today - dt.timedelta(days=n)).isoformat() for n in (3, 2, 1)]


class Stack:
    def __init__(self, home: Path, env: dict, port: int, proc: subprocess.Popen, config: Path):
        self.home, self.env, self.port, self.proc, self.config = home, env, port, proc, config

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def airflow_proc(self, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
        """Runs an Airflow CLI command next to the running stack. SQLite refuses a writer at once,
        whatever its busy timeout, when two transactions would deadlock ("database is locked"); the
        failed command rolled back, so it is run again."""
        for attempt in range(6):
            proc = subprocess.run([sys.executable, "-m", "airflow", *args], env=self.env, capture_output=True, text=True, timeout=timeout)
            if proc.returncode == 0 or "database is locked" not in proc.stdout + proc.stderr:
                return proc
            time.sleep(1 + attempt)
        return proc

    def airflow(self, *args: str, timeout: int = 120) -> str:
        proc = self.airflow_proc(*args, timeout=timeout)
        assert proc.returncode == 0, f"airflow {' '.join(args)}: {proc.stdout[-2000:]}{proc.stderr[-4000:]}"
        return proc.stdout

    def airflow_json(self, *args: str):
        """A CLI command's `-o json` output (the last line that parses; warnings come before it)."""
        out = self.airflow(*args, "-o", "json")
        for line in reversed(out.strip().splitlines()):
            try:
                return json.loads(line)
            except ValueError:
                continue
        return [] if "No data found" in out else pytest.fail(f"no JSON in: {out[-2000:]}")

    def runs(self) -> list[dict]:
        return self.airflow_json("dags", "list-runs", DAG_ID)

    def log_tail(self) -> str:
        log = self.home / "standalone.log"
        return log.read_text(errors="replace")[-4000:] if log.exists() else ""

    def wait_for_runs(self, run_ids: set[str], timeout: float = 600) -> dict[str, str]:
        deadline = time.time() + timeout
        while True:
            states = {r["run_id"]: r["state"] for r in self.runs() if r["run_id"] in run_ids}
            if len(states) == len(run_ids) and all(s in ("success", "failed") for s in states.values()):
                return states
            if time.time() > deadline or self.proc.poll() is not None:
                pytest.fail(f"runs did not finish: {states}\n{self.log_tail()}")
            time.sleep(3)


@pytest.fixture(scope="module", params=["bash", "python"])
def stack(tmp_path_factory, request):
    """A running Airflow per runner: the python runner's tasks call the module in the task
    processes Airflow's supervisor forks (the real fork path, unlike dag.test())."""
    runner = request.param
    base = tmp_path_factory.mktemp(f"airflow-stack-{runner}")
    days = _days()
    logs, lake, home = base / "logs", base / "lake", base / "airflow"
    home.mkdir()
    for i, day in enumerate(days):
        run("bitacora", "generate", "--date", day, "--events", str(3000 + 500 * i), "--out", str(logs), "--seed", str(20 + i))
    config = local_config(base / "bitacora.toml", logs, lake, base / "lake.key")
    port = free_port()
    env = {
        **airflow_env(home),
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "BITACORA_CONFIG": str(config),
        "BITACORA_START_DATE": days[0],
        "BITACORA_RETRIES": "0",
        "BITACORA_RUNNER": runner,
    }
    log = open(home / "standalone.log", "w")
    # Its own process group: the scheduler ignores a TERM sent to the parent alone.
    proc = subprocess.Popen([sys.executable, "-m", "airflow", "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    s = Stack(home, env, port, proc, config)
    try:
        deadline = time.time() + 180
        while True:
            try:
                health = json.load(urllib.request.urlopen(f"{s.url}/api/v2/monitor/health", timeout=2))
                if health.get("scheduler", {}).get("status") == "healthy":
                    break
            except Exception:
                pass
            if time.time() > deadline or proc.poll() is not None:
                pytest.fail(f"airflow standalone did not come up\n{s.log_tail()}")
            time.sleep(2)
        deadline = time.time() + 120
        while DAG_ID not in s.airflow("dags", "list", "-o", "plain"):
            if time.time() > deadline:
                pytest.fail(f"the DAG processor did not load {DAG_ID}\n{s.log_tail()}")
            time.sleep(3)
        s.days, s.lake, s.runner = days, lake, runner
        yield s
    finally:
        # The whole process group: the scheduler, API server and task processes too.
        for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
            deadline = time.time() + grace
            while time.time() < deadline:  # children outlive the parent for a moment
                try:
                    os.killpg(proc.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.5)
        log.close()


def _events_files(lake: Path, day: str) -> list[str]:
    """Content hashes of the day's published events files (the run folder differs between runs)."""
    files = manifest(lake, "transform", day)["outputs"]["events"]["files"]
    return sorted(hashlib.sha256((lake / f["path"]).read_bytes()).hexdigest() for f in files)


def test_backfill_of_three_days_then_a_rerun_changes_nothing(stack):
    days = stack.days
    # The DAG starts paused; the backfill queues its runs at once, the scheduler runs them unpaused.
    stack.airflow("backfill", "create", "--dag-id", DAG_ID, "--from-date", days[0], "--to-date", days[-1])
    stack.airflow("dags", "unpause", DAG_ID)
    backfill_runs = {r["run_id"] for r in stack.runs() if r["run_id"].startswith("backfill__")}
    assert len(backfill_runs) == 3, stack.runs()
    states = stack.wait_for_runs(backfill_runs)
    assert set(states.values()) == {"success"}, f"{states}\n{stack.log_tail()}"
    by_day = {r["logical_date"][:10]: r for r in stack.runs() if r["run_id"] in backfill_runs}
    assert sorted(by_day) == days  # the run with interval [D, D+1) has logical date D
    for r in by_day.values():
        tis = stack.airflow_json("tasks", "states-for-dag-run", DAG_ID, r["run_id"])
        assert {t["task_id"]: t["state"] for t in tis} == {t: "success" for t in TASKS}

    lake = stack.lake
    partitions = json.loads(run("bitacora-query", "--config", str(stack.config), "--format", "json", "SELECT dt, count(*) AS n FROM bitacora.events GROUP BY dt ORDER BY dt").stdout)
    assert [p["dt"] for p in partitions] == days
    assert all(p["n"] > 2500 for p in partitions)

    # Re-run the middle day through a second backfill that reprocesses completed runs.
    day = days[1]
    before = (named_answers(stack.config, day), _events_files(lake, day))
    first_transform = manifest(lake, "transform", day)["run_id"]
    rerun_args = ["backfill", "create", "--dag-id", DAG_ID, "--from-date", day, "--to-date", day, "--reprocess-behavior", "completed"]
    # The scheduler marks the first backfill complete on a 30 s timer after its last run, checked
    # between scheduling loops; once (2026-12-07, CI) that had not happened after 120 s.
    deadline = time.time() + 300
    while True:
        proc = stack.airflow_proc(*rerun_args)
        if proc.returncode == 0:
            break
        if "Another backfill is running" not in proc.stdout + proc.stderr or time.time() > deadline:
            pytest.fail(f"backfill create failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}\n{stack.log_tail()}")
        time.sleep(3)
    rerun = {r["run_id"] for r in stack.runs() if r["logical_date"][:10] == day}
    deadline = time.time() + 120
    while manifest(lake, "transform", day)["run_id"] == first_transform:
        if time.time() > deadline:
            pytest.fail(f"the re-run did not publish a new transform run\n{stack.log_tail()}")
        time.sleep(2)
    assert set(stack.wait_for_runs(rerun).values()) == {"success"}
    after = (named_answers(stack.config, day), _events_files(lake, day))
    assert after == before
    assert set(before[0]) == set(NAMED)


def test_the_dag_page_shows_the_dag_and_its_tasks(stack, request):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("Chromium is not installed (tests/run.sh installs Debian's chromium package)")
    artifacts = Path(os.environ.get("BITACORA_ARTIFACTS", ROOT / "tests" / "artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    screenshot = artifacts / f"airflow-dag-page-{stack.runner}.png"
    screenshot.unlink(missing_ok=True)
    url = f"{stack.url}/dags/{DAG_ID}/tasks"
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1400,1000", "--virtual-time-budget=20000",
    ]
    profile = stack.home / "chromium-profile"
    dom = subprocess.run([chromium, *flags, f"--user-data-dir={profile}-dom", "--dump-dom", url], capture_output=True, text=True, timeout=120)
    shot = subprocess.run([chromium, *flags, f"--user-data-dir={profile}-shot", f"--screenshot={screenshot}", url], capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and screenshot.stat().st_size > 10_000, shot.stderr[-2000:]
    html = dom.stdout
    assert DAG_ID in html, html[-3000:]
    assert f"{len(TASKS)} Tasks" in html, html[-3000:]  # the Tasks tab's heading
    missing = [t for t in TASKS if t not in html]
    assert not missing, f"tasks not shown: {missing}\n{html[-3000:]}"
