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
- BITACORA_RUNNER: how tasks run the steps: `bash` (default: the step binaries, with the templated
  date) or `python` (the `bitacora` Python module, in the worker's process).

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


def _setting(name: str, default: str | None = None, *, strict: bool = False) -> str | None:
    """The environment variable `name`, else the Airflow Variable `name.lower()`, else `default`.

    At parse time (strict=False) a Variable that cannot be read — no Airflow context, say — counts
    as unset; inside a task (strict=True) the failure is the task's."""
    value = os.environ.get(name)
    if value:
        return value
    from airflow.sdk import Variable

    if strict:
        return Variable.get(name.lower(), default=default)
    try:
        return Variable.get(name.lower(), default=default)
    except Exception:
        return default


# Read once per parse.
CONFIG = _setting("BITACORA_CONFIG")
BIN_DIR = _setting("BITACORA_BIN_DIR")
RUNNERS = ("bash", "python")
RUNNER = _setting("BITACORA_RUNNER", "bash") or "bash"
if RUNNER not in RUNNERS:
    raise ValueError(f"BITACORA_RUNNER: unknown runner {RUNNER!r} (expected one of {', '.join(RUNNERS)})")


def _tool_path(name: str) -> str:
    return os.path.join(BIN_DIR, name) if BIN_DIR else name


def _tool(name: str) -> str:
    return shlex.quote(_tool_path(name))


def _config_arg() -> str:
    # Without it, the binary reads BITACORA_CONFIG from the worker's environment.
    return f"--config {shlex.quote(CONFIG)}" if CONFIG else ""


def _module():
    """The `bitacora` module and the configuration, inside a task (never at parse time)."""
    import bitacora
    from airflow.sdk.exceptions import AirflowFailException

    config = _setting("BITACORA_CONFIG", strict=True)
    if not config:
        raise AirflowFailException("BITACORA_CONFIG is not set (environment, or the Airflow Variable bitacora_config)")
    return bitacora, config


def step(task_id: str, tool: str):
    """One step for the run's day (an operator either way); its report goes to XCom: the binary's
    JSON line, or the dict `bitacora.<task_id>()` returns. With the module, a configuration error
    fails the task without retries (retrying cannot fix it)."""
    if RUNNER == "python":

        @task(task_id=task_id)
        def python_step(**context) -> dict:
            from airflow.sdk.exceptions import AirflowFailException

            bitacora, config = _module()
            try:
                return getattr(bitacora, task_id)(context["data_interval_start"], config=config)
            except bitacora.ConfigError as e:
                raise AirflowFailException(f"{type(e).__name__}: {e}") from e

        return python_step().operator
    return BashOperator(
        task_id=task_id,
        bash_command=f"{_tool(tool)} {_config_arg()} --date {DAY}",
        env={"BITACORA_PROGRESS": "0"},
        append_env=True,
    )


def query_rows(sql: str) -> list[dict]:
    """Rows of a read-only query, through the configured runner (JSON-compatible values)."""
    if RUNNER == "python":
        bitacora, config = _module()
        return json.loads(json.dumps(bitacora.query(sql, config=config).to_pylist(), default=str))
    import subprocess

    cmd = [_tool_path("bitacora-query")]
    cmd += ["--config", CONFIG] if CONFIG else []
    out = subprocess.run([*cmd, "--format", "json", sql], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"bitacora-query failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


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
    def quality_gate(transform_report, **context) -> dict:
        """Fails the run when the transform's invariant does not hold or the day's volume is far
        outside the recent days (less than a third, or more than three times, their median)."""
        import statistics

        # A JSON line from the binary, or the dict of the Python module.
        report = json.loads(transform_report) if isinstance(transform_report, str) else transform_report
        if report.get("status") != "ok":
            raise ValueError(f"transform report is not ok: {report}")
        if report["events"] + report["quarantine"] + report["duplicates"] != report["read"]:
            raise ValueError(f"invariant broken: {report['invariant']}")
        day = report["date"]
        week_before = (datetime.fromisoformat(day) - timedelta(days=7)).date().isoformat()
        sql = f"SELECT dt, count(*) AS n FROM events WHERE dt < '{day}' AND dt >= '{week_before}' GROUP BY dt"
        recent = [r["n"] for r in query_rows(sql)]
        verdict = {"date": day, "events": report["events"], "recent_days": len(recent)}
        if len(recent) >= 3:
            median = statistics.median(recent)
            verdict["recent_median"] = median
            if report["events"] < median / 3 or report["events"] > median * 3:
                raise ValueError(f"{day}: {report['events']} events, far from the recent median of {median}")
        return verdict

    gate = quality_gate(transform.output)
    if RUNNER == "python":

        @task(task_id="named_queries")
        def named_queries(**context) -> dict:
            bitacora, config = _module()
            day = context["data_interval_start"]
            return {q: json.loads(json.dumps(bitacora.named_query(q, day, config=config).to_pylist(), default=str)) for q in NAMED}

        queries = named_queries()
    else:
        queries = BashOperator(
            task_id="named_queries",
            bash_command=" && ".join(
                f"echo '=== {q}' && {_tool('bitacora-query')} {_config_arg()} --named {q} --date {DAY} --format json" for q in NAMED
            ),
            env={"BITACORA_PROGRESS": "0"},
            append_env=True,
        )
    extract >> transform >> catalog >> gate >> queries
