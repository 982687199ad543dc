"""Bitácora's daily batch pipeline for Apache Airflow 3.

One run per UTC day: the run whose data interval is [D, D+1) processes day D. Tasks:
extract → transform → catalog → quality gate → named stakeholder queries. Catchup is on, so past
days can be backfilled from the UI or with `airflow backfill create`; every step is idempotent, so
retries and re-runs are safe.

Settings (environment variable, else Airflow Variable of the same name in lower case):
- BITACORA_CONFIG: the Bitácora configuration file (`bitacora.toml`).
- BITACORA_BIN_DIR: the folder of the step binaries (default: found on PATH).
- BITACORA_START_DATE: first day of the schedule (YYYY-MM-DD, default 2026-11-01).
- BITACORA_RETRIES: retries of a failed task (default 3, with exponential backoff).

Importing this file does no Rust work and no network I/O: it only declares the DAG.
"""

from __future__ import annotations

import json
import os
import shlex
from datetime import datetime, timedelta, timezone

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, task
from airflow.timetables.interval import CronDataIntervalTimetable

NAMED = ["events_per_type", "daily_active_users", "error_rate_by_version", "p95_latency_by_platform", "top_error_codes"]
DAY = "{{ data_interval_start | ds }}"


def _setting(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    if value:
        return value
    try:  # Variables are read at parse time only when the environment does not set the value.
        from airflow.sdk import Variable

        return Variable.get(name.lower(), default=default)
    except Exception:
        return default


def _tool(name: str) -> str:
    bin_dir = _setting("BITACORA_BIN_DIR")
    return shlex.quote(os.path.join(bin_dir, name) if bin_dir else name)


def _config_arg() -> str:
    config = _setting("BITACORA_CONFIG")
    return f"--config {shlex.quote(config)}" if config else ""


def step(task_id: str, tool: str) -> BashOperator:
    """A step binary for the run's day; its JSON report (last stdout line) goes to XCom."""
    return BashOperator(
        task_id=task_id,
        bash_command=f"{_tool(tool)} {_config_arg()} --date {DAY}",
        env={"BITACORA_PROGRESS": "0"},
        append_env=True,
    )


with DAG(
    dag_id="bitacora_daily",
    description="Bitácora: CloudWatch logs → raw zone → curated Parquet → catalog, one UTC day per run",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime.fromisoformat(_setting("BITACORA_START_DATE", "2026-11-01") or "2026-11-01").replace(tzinfo=timezone.utc),
    catchup=True,
    max_active_runs=4,
    default_args={
        "retries": int(_setting("BITACORA_RETRIES", "3") or 3),
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=30),
    },
    tags=["bitacora"],
) as dag:
    extract = step("extract", "bitacora-extract")
    transform = step("transform", "bitacora-transform")
    catalog = step("catalog", "bitacora-catalog")

    @task(retries=0)
    def quality_gate(transform_report: str, **context) -> dict:
        """Fails the run when the transform's invariant does not hold or the day's volume is far
        outside the recent days (less than a third, or more than three times, their median)."""
        import statistics
        import subprocess

        report = json.loads(transform_report)
        if report.get("status") != "ok":
            raise ValueError(f"transform report is not ok: {report}")
        if report["events"] + report["quarantine"] + report["duplicates"] != report["read"]:
            raise ValueError(f"invariant broken: {report['invariant']}")
        day = report["date"]
        week_before = (datetime.fromisoformat(day) - timedelta(days=7)).date().isoformat()
        sql = f"SELECT dt, count(*) AS n FROM events WHERE dt < '{day}' AND dt >= '{week_before}' GROUP BY dt"
        bin_dir, config = _setting("BITACORA_BIN_DIR"), _setting("BITACORA_CONFIG")
        cmd = [os.path.join(bin_dir, "bitacora-query") if bin_dir else "bitacora-query"]
        cmd += ["--config", config] if config else []
        out = subprocess.run([*cmd, "--format", "json", sql], capture_output=True, text=True, check=True)
        recent = [r["n"] for r in json.loads(out.stdout)]
        verdict = {"date": day, "events": report["events"], "recent_days": len(recent)}
        if len(recent) >= 3:
            median = statistics.median(recent)
            verdict["recent_median"] = median
            if report["events"] < median / 3 or report["events"] > median * 3:
                raise ValueError(f"{day}: {report['events']} events, far from the recent median of {median}")
        return verdict

    gate = quality_gate(transform.output)
    queries = BashOperator(
        task_id="named_queries",
        bash_command=" && ".join(
            f"echo '=== {q}' && {_tool('bitacora-query')} {_config_arg()} --named {q} --date {DAY} --format json" for q in NAMED
        ),
        env={"BITACORA_PROGRESS": "0"},
        append_env=True,
    )
    extract >> transform >> catalog >> gate >> queries
