"""The named queries' SQL on each engine: the Athena (Trino) forms must parse with Trino's own
grammar (the ANTLR grammar of Trino's parser, through the npm package dt-sql-parser) and call only
functions Trino has, so that a query Athena would reject fails here rather than on real AWS, where
the moto tests cannot notice (moto's Athena runs nothing)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import run

ROOT = Path(__file__).resolve().parent.parent
DAY = "2026-11-20"

# Trino's functions that a named query may call (https://trino.io/docs/current/functions/list.html;
# Athena engine v3 runs Trino). DataFusion-only names — percentile_cont, median, approx_median,
# array_agg ... WITHIN GROUP — are deliberately absent.
TRINO_FUNCTIONS = {
    "approx_distinct", "approx_percentile", "avg", "bool_and", "bool_or", "coalesce", "count",
    "count_if", "date", "date_add", "date_diff", "date_format", "date_trunc", "day", "from_iso8601_timestamp",
    "greatest", "hour", "if", "least", "length", "lower", "max", "max_by", "min", "min_by", "nullif",
    "round", "stddev", "sum", "try_cast", "upper",
}
# Words that a '(' may follow in SQL without being a function call.
KEYWORDS = {"as", "and", "exists", "filter", "from", "in", "join", "not", "on", "or", "over", "select", "then", "using", "values", "when", "where", "else"}


def node_dir() -> Path:
    d = Path(os.environ.get("BITACORA_NODE_DIR", Path.home() / ".cache" / "bitacora" / "node"))
    if not (d / "node_modules" / "dt-sql-parser").is_dir():
        pytest.fail("needs dt-sql-parser under BITACORA_NODE_DIR (tests/run.sh installs it)")
    return d


def trino_errors(statements: dict[str, str]) -> dict[str, list[str]]:
    """Trino's grammar on each statement: name -> syntax errors (none: it parses)."""
    sql_dir = ROOT / "tests" / "sql"
    proc = subprocess.run(
        ["node", "--import", str(sql_dir / "register.mjs"), str(sql_dir / "trino_grammar.mjs")],
        input=json.dumps([{"name": n, "sql": s} for n, s in statements.items()]),
        capture_output=True, text=True, timeout=120, env={**os.environ, "BITACORA_NODE_DIR": str(node_dir())},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {r["name"]: r["errors"] for r in json.loads(proc.stdout)}


def functions(sql: str) -> set[str]:
    """The names called in a statement (string literals removed)."""
    code = re.sub(r"'(?:[^']|'')*'", "''", sql)
    return {m.lower() for m in re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(", code)} - KEYWORDS


def engine_config(tmp_path: Path, engine: str) -> Path:
    c = tmp_path / f"{engine}.toml"
    query = '[query]\nengine = "athena"\nworkgroup = "primary"\n' if engine == "athena" else ""
    c.write_text(f'[lake]\nroot = "{tmp_path / "lake"}"\n[encryption]\nkey_file = "{tmp_path / "k"}"\n{query}')
    return c


def shown(config: Path, name: str, *args: str) -> dict:
    return json.loads(run("bitacora-query", "--config", str(config), "--format", "json", "--show", name, *args).stdout)


def names() -> list[str]:
    return [q["name"] for q in json.loads(run("bitacora-query", "--list", "--format", "json").stdout)]


def test_the_athena_forms_of_the_named_queries_parse_as_trino_and_call_only_trino_functions(tmp_path):
    athena = engine_config(tmp_path, "athena")
    forms = {}
    for name in names():
        s = shown(athena, name, "--date", DAY)
        assert s["engine"] == "athena" and s["name"] == name
        assert f"'{DAY}'" in s["sql"], s["sql"]
        forms[name] = s["sql"]
    assert len(forms) >= 6
    errors = trino_errors(forms)
    assert errors == {n: [] for n in forms}, errors
    for name, sql in forms.items():
        unknown = functions(sql) - TRINO_FUNCTIONS
        assert not unknown, f"{name} calls functions Trino does not have: {unknown}"


def test_the_check_rejects_what_trino_would(tmp_path):
    """The check can fail: DataFusion's p95 (percentile_cont ... WITHIN GROUP) is not Trino, and
    neither is a Postgres-style cast."""
    datafusion = engine_config(tmp_path, "datafusion")
    p95 = shown(datafusion, "p95_latency_by_platform", "--date", DAY)
    assert p95["engine"] == "datafusion" and "percentile_cont" in p95["sql"]
    errors = trino_errors({"p95": p95["sql"], "cast": "SELECT latency_ms::int FROM events", "ok": "SELECT 1"})
    assert errors["p95"] and errors["cast"] and errors["ok"] == []
    assert "percentile_cont" in functions(p95["sql"]) - TRINO_FUNCTIONS
    assert functions("SELECT count(*), x FROM (SELECT 'f(' AS x) WHERE x IN ('a')") == {"count"}


def test_show_prints_the_sql_each_engine_runs(tmp_path):
    athena, datafusion = engine_config(tmp_path, "athena"), engine_config(tmp_path, "datafusion")
    for name in names():
        a = shown(athena, name, "--date", DAY)["sql"]
        d = shown(datafusion, name, "--date", DAY)["sql"]
        # Only the percentile query needs a second form.
        assert (a != d) == (name == "p95_latency_by_platform"), name
    text = run("bitacora-query", "--config", str(athena), "--show", "p95_latency_by_platform").stdout
    assert "approx_percentile(latency_ms, 0.95)" in text and "WHERE TRUE" in text
    # The reference-day query shows the window of the day given.
    wow = shown(datafusion, "week_over_week", "--date", DAY)["sql"]
    assert "dt > '2026-11-06' AND dt <= '2026-11-20'" in wow
    bad = run("bitacora-query", "--config", str(athena), "--show", "nope", check=False)
    assert bad.returncode == 2 and "unknown named query" in bad.stderr + bad.stdout
    lone = run("bitacora-query", "--config", str(athena), "--date", DAY, "SELECT 1", check=False)
    assert lone.returncode == 2
