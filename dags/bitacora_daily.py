"""Bitácora's daily batch pipeline for Apache Airflow 3.

One run per UTC day: the run whose data interval is [D, D+1) processes day D. Tasks:
extract → transform → catalog → quality gate → named stakeholder queries. Catchup is on, so past
days can be backfilled from the UI or with `airflow backfill create`; every step is idempotent, so
retries and re-runs are safe.

A day by hand: the DAG's `date` parameter (YYYY-MM-DD; the UI's trigger form shows it) overrides
the day of a run — `airflow dags trigger bitacora_daily -c '{"date": "2026-11-18"}'`, or
`airflow dags test bitacora_daily -c '{"date": "2026-11-18"}'` to run it in the foreground.
Without it a run processes its data interval's start (a manual run at D+1 processes D).

Settings. Resolved when a task runs (environment variable, else the Airflow Variable of the same
name in lower case):
- BITACORA_CONFIG: the Bitácora configuration file (`bitacora.toml`).
- BITACORA_BIN_DIR: the folder of the step binaries (default: found on PATH).
Read from the environment when the file is parsed (they shape the DAG itself):
- BITACORA_START_DATE: first day of the schedule (YYYY-MM-DD, default 2026-11-01).
- BITACORA_RETRIES: retries of a failed task (default 3, with exponential backoff).
- BITACORA_RUNNER: how tasks run the steps: `bash` (default: the step binaries, with the templated
  date) or `python` (the `bitacora` Python module, in the worker's process).

Parsing this file reads only the environment: no Airflow Variable, no Rust work, no network I/O.
"""

from __future__ import annotations

import json
import os
import shlex
from datetime import datetime, timedelta, timezone

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param, task
from airflow.timetables.interval import CronDataIntervalTimetable

NAMED = ["events_per_type", "daily_active_users", "error_rate_by_version", "p95_latency_by_platform", "top_error_codes"]
DAY = "{{ data_interval_start | ds }}"


def _setting(name: str, default: str | None = None) -> str | None:
    """Inside a task: the environment variable `name`, else the Airflow Variable `name.lower()`,
    else `default` (a Variable that cannot be read fails the task)."""
    value = os.environ.get(name)
    if value:
        return value
    from airflow.sdk import Variable

    return Variable.get(name.lower(), default=default)


# The settings that shape the DAG: the environment only (parse time).
RUNNERS = ("bash", "python")
RUNNER = os.environ.get("BITACORA_RUNNER") or "bash"
if RUNNER not in RUNNERS:
    raise ValueError(f"BITACORA_RUNNER: unknown runner {RUNNER!r} (expected one of {', '.join(RUNNERS)})")
START_DATE = os.environ.get("BITACORA_START_DATE") or "2026-11-01"
RETRIES = os.environ.get("BITACORA_RETRIES") or "3"

# The day of a run: the `date` parameter, else the data interval's start.
DAY = "{{ params.date or (data_interval_start | ds) }}"
# The bash steps resolve the binaries' folder and the configuration when they run: the worker's
# environment first, else the Airflow Variables (rendered into BITACORA_VAR_*).
RESOLVE = 'bin="${BITACORA_BIN_DIR:-$BITACORA_VAR_BIN_DIR}"; cfg="${BITACORA_CONFIG:-$BITACORA_VAR_CONFIG}"; '
BASH_ENV = {
    "BITACORA_PROGRESS": "0",
    "BITACORA_VAR_BIN_DIR": "{{ var.value.get('bitacora_bin_dir', '') }}",
    "BITACORA_VAR_CONFIG": "{{ var.value.get('bitacora_config', '') }}",
}


def _tool(name: str) -> str:
    """A step binary in bash, from the resolved folder (else PATH), with the resolved config."""
    return f'"${{bin:+$bin/}}{name}" ${{cfg:+--config "$cfg"}}'


def _day(context):
    """The day a Python-runner task processes (see DAY)."""
    from datetime import date

    from airflow.sdk.exceptions import AirflowFailException

    chosen = (context.get("params") or {}).get("date")
    if not chosen:
        return context["data_interval_start"]
    try:
        return date.fromisoformat(chosen)
    except ValueError as e:
        raise AirflowFailException(f"params.date: {chosen!r} is not a day (YYYY-MM-DD): {e}") from e


def _module():
    """The `bitacora` module and the configuration, inside a task (never at parse time)."""
    import bitacora
    from airflow.sdk.exceptions import AirflowFailException

    config = _setting("BITACORA_CONFIG")
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
                return getattr(bitacora, task_id)(_day(context), config=config)
            except bitacora.ConfigError as e:
                raise AirflowFailException(f"{type(e).__name__}: {e}") from e

        return python_step().operator
    return BashOperator(
        task_id=task_id,
        bash_command=f'{RESOLVE}{_tool(tool)} --date "{DAY}"',
        env=BASH_ENV,
        append_env=True,
    )


def query_rows(sql: str) -> list[dict]:
    """Rows of a read-only query, through the configured runner (JSON-compatible values)."""
    if RUNNER == "python":
        bitacora, config = _module()
        return json.loads(json.dumps(bitacora.query(sql, config=config).to_pylist(), default=str))
    import subprocess

    bin_dir, config = _setting("BITACORA_BIN_DIR"), _setting("BITACORA_CONFIG")
    cmd = [os.path.join(bin_dir, "bitacora-query") if bin_dir else "bitacora-query"]
    cmd += ["--config", config] if config else []
    out = subprocess.run([*cmd, "--format", "json", sql], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"bitacora-query failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


with DAG(
    dag_id="bitacora_daily",
    description="Bitácora: CloudWatch logs → raw zone → curated Parquet → catalog, one UTC day per run",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime.fromisoformat(START_DATE).replace(tzinfo=timezone.utc),
    catchup=True,
    max_active_runs=4,
    params={
        "date": Param(
            None,
            type=["null", "string"],
            format="date",
            pattern=r"^\d{4}-\d{2}-\d{2}$",
            title="Day",
            description="The UTC day to process (YYYY-MM-DD); empty: the run's data interval start.",
        )
    },
    default_args={
        "retries": int(RETRIES),
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
            day = _day(context)
            return {q: json.loads(json.dumps(bitacora.named_query(q, day, config=config).to_pylist(), default=str)) for q in NAMED}

        queries = named_queries()
    else:
        queries = BashOperator(
            task_id="named_queries",
            bash_command=RESOLVE + " && ".join(
                f"echo '=== {q}' && {_tool('bitacora-query')} --named {q} --date \"{DAY}\" --format json" for q in NAMED
            ),
            env=BASH_ENV,
            append_env=True,
        )
    extract >> transform >> catalog >> gate >> queries
