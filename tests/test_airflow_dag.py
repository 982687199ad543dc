"""The Airflow DAG against a real Airflow 3 (SQLite metadata DB): it imports cleanly and cheaply, and
`dag.test()` runs a generated day through every task into a queryable partition."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from conftest import DAY, ROOT, airflow_env, local_config, run


def python(code, env, timeout=600):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc.stdout


@pytest.mark.parametrize("runner", ["bash", "python"])
def test_dag_imports_and_runs_a_day(tmp_path, runner):
    """Both runners: the step binaries (bash) and the `bitacora` Python module in the worker."""
    logs, lake = tmp_path / "logs", tmp_path / "lake"
    run("bitacora", "generate", "--date", DAY, "--events", "3000", "--out", str(logs), "--seed", "13")
    config = local_config(tmp_path / "bitacora.toml", logs, lake, tmp_path / "k")
    # The configuration comes from the environment (bash) or from an Airflow Variable (python run;
    # AIRFLOW_VAR_* is how a deployment's secrets backend or env provides Variables).
    setting = "BITACORA_CONFIG" if runner == "bash" else "AIRFLOW_VAR_BITACORA_CONFIG"
    env = {**airflow_env(tmp_path / "airflow"), setting: str(config), "BITACORA_RUNNER": runner}
    env.pop("BITACORA_CONFIG" if runner == "python" else "AIRFLOW_VAR_BITACORA_CONFIG", None)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)

    out = python(
        f"""
        import json, time
        from datetime import datetime, timedelta, timezone
        t0 = time.perf_counter()
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder={str(ROOT / "dags")!r})
        assert not bag.import_errors, bag.import_errors
        dag = bag.get_dag("bitacora_daily")
        parse = time.perf_counter() - t0
        # A manual run at D+1 gets the data interval [D, D+1) from the DAG's timetable: day D.
        after = datetime.fromisoformat("{DAY}").replace(tzinfo=timezone.utc) + timedelta(days=1)
        run = dag.test(logical_date=after)
        states = {{ti.task_id: str(ti.state) for ti in run.get_task_instances()}}
        operators = {{t.task_id: type(t).__name__ for t in dag.tasks}}
        print(json.dumps({{"states": states, "run_state": str(run.state), "parse_s": parse, "operators": operators,
                          "interval": [str(run.data_interval_start), str(run.data_interval_end)]}}))
        """,
        env,
    )
    result = json.loads(out.strip().splitlines()[-1])
    assert result["states"] == {t: "success" for t in ["extract", "transform", "catalog", "quality_gate", "named_queries"]}, result
    assert result["interval"][0].startswith(DAY), result
    kinds = {op for task_id, op in result["operators"].items() if task_id != "quality_gate"}
    assert (kinds == {"BashOperator"}) == (runner == "bash"), result["operators"]
    # The partition is queryable.
    rows = json.loads(run("bitacora-query", "--config", str(config), "--format", "json", "--named", "daily_active_users", "--date", DAY).stdout)
    assert rows and rows[0]["dt"] == DAY


@pytest.mark.parametrize("runner", ["bash", "python"])
def test_importing_the_dag_runs_nothing(tmp_path, runner):
    """Parsing needs neither the binaries nor the configuration nor the module: nothing runs at import time."""
    env = {**airflow_env(tmp_path), "BITACORA_BIN_DIR": "/nonexistent/bin", "BITACORA_CONFIG": "/nonexistent/bitacora.toml", "BITACORA_RUNNER": runner}
    out = python(
        f"""
        import json, sys
        from airflow.dag_processing.dagbag import DagBag
        # Parsing reads no Airflow Variable (Airflow's best practice: a parse runs every 30 s).
        from airflow.sdk import Variable
        def refuse(*a, **k):
            raise AssertionError("an Airflow Variable was read at parse time")
        Variable.get = staticmethod(refuse)
        bag = DagBag(dag_folder={str(ROOT / "dags")!r})
        dag = bag.dags["bitacora_daily"]
        assert "bitacora" not in sys.modules, "the DAG file imported the bitacora module"
        print(json.dumps({{"errors": {{k: str(v) for k, v in bag.import_errors.items()}},
                          "tasks": sorted(dag.task_ids), "catchup": dag.catchup,
                          "max_active_runs": dag.max_active_runs,
                          "params": {{k: dag.params.get_param(k).schema for k in dag.params}}}}))
        """,
        env,
    )
    r = json.loads(out.strip().splitlines()[-1])
    assert r["errors"] == {}
    assert r["tasks"] == ["catalog", "extract", "named_queries", "quality_gate", "transform"]
    assert r["catchup"] is True and r["max_active_runs"] == 4
    assert r["params"]["date"]["format"] == "date", r["params"]


@pytest.mark.parametrize("runner", ["bash", "python"])
def test_the_date_parameter_runs_the_day_asked_for(tmp_path, runner):
    """A day by hand: `date` overrides the data interval; a value that is not a day is refused
    before anything runs. The settings come from Airflow Variables here, read when the tasks run."""
    logs, lake = tmp_path / "logs", tmp_path / "lake"
    run("bitacora", "generate", "--date", DAY, "--events", "2000", "--out", str(logs), "--seed", "5")
    config = local_config(tmp_path / "bitacora.toml", logs, lake, tmp_path / "k")
    env = {**airflow_env(tmp_path / "airflow"), "BITACORA_RUNNER": runner}
    env["AIRFLOW_VAR_BITACORA_CONFIG"] = str(config)
    env["AIRFLOW_VAR_BITACORA_BIN_DIR"] = env.pop("BITACORA_BIN_DIR")
    env.pop("BITACORA_CONFIG", None)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    out = python(
        f"""
        import json
        from datetime import datetime, timedelta, timezone
        from airflow.dag_processing.dagbag import DagBag
        dag = DagBag(dag_folder={str(ROOT / "dags")!r}).dags["bitacora_daily"]
        # A run whose own interval is ten days later, asked for {DAY}.
        later = datetime.fromisoformat("{DAY}").replace(tzinfo=timezone.utc) + timedelta(days=11)
        run = dag.test(logical_date=later, run_conf={{"date": "{DAY}"}})
        states = {{ti.task_id: str(ti.state) for ti in run.get_task_instances()}}
        refused = []
        for bad in ["yesterday", "2026-02-30", "2026-11-02; rm -rf /"]:
            try:
                dag.test(logical_date=later + timedelta(days=1), run_conf={{"date": bad}})
                refused.append(None)
            except Exception as e:
                refused.append(type(e).__name__ + ": " + str(e))
        print(json.dumps({{"states": states, "refused": refused}}))
        """,
        env,
    )
    result = json.loads(out.strip().splitlines()[-1])
    assert result["states"] == {t: "success" for t in ["extract", "transform", "catalog", "quality_gate", "named_queries"]}, result
    assert all(r and "date" in r for r in result["refused"]), result["refused"]
    days = sorted(p.name for p in (lake / "_manifests" / "transform").iterdir())
    assert days == [f"dt={DAY}.json"], days


@pytest.mark.parametrize("runner", ["bash", "python"])
def test_a_failing_step_fails_its_task_with_the_steps_message(tmp_path, runner):
    config = local_config(tmp_path / "bitacora.toml", tmp_path / "no-such-logs", tmp_path / "lake", tmp_path / "k")
    home = tmp_path / "airflow"
    home.mkdir()
    # With the module, a configuration error fails at once despite retries (retrying cannot fix it).
    retries = "2" if runner == "python" else "0"
    env = {**airflow_env(home), "BITACORA_CONFIG": str(config), "BITACORA_RETRIES": retries, "BITACORA_RUNNER": runner}
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    code = f"""
        import json
        from datetime import datetime, timedelta, timezone
        from airflow.dag_processing.dagbag import DagBag
        dag = DagBag(dag_folder={str(ROOT / "dags")!r}).dags["bitacora_daily"]
        run = dag.test(logical_date=datetime.fromisoformat("{DAY}").replace(tzinfo=timezone.utc) + timedelta(days=1))
        print("RESULT " + json.dumps({{ti.task_id: str(ti.state) for ti in run.get_task_instances()}}))
        """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=600)
    result = json.loads([l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1][7:])
    assert result["extract"] == "failed", result
    assert result["transform"] == "upstream_failed", result
    logs = proc.stdout + proc.stderr + "".join(p.read_text(errors="replace") for p in home.rglob("*.log"))
    assert "source.path" in logs and "is not a folder" in logs
    if runner == "python":
        # The module's exception, with the same one-line message the binary prints.
        assert "ConfigError: bad configuration: source.path:" in logs


def test_an_unknown_runner_is_an_import_error_naming_the_setting(tmp_path):
    env = {**airflow_env(tmp_path), "BITACORA_RUNNER": "spark-submit"}
    out = python(
        f"""
        import json
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder={str(ROOT / "dags")!r})
        print(json.dumps({{k: str(v) for k, v in bag.import_errors.items()}}))
        """,
        env,
    )
    errors = json.loads(out.strip().splitlines()[-1])
    assert any("BITACORA_RUNNER" in e and "spark-submit" in e for e in errors.values()), errors
