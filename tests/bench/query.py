"""The stakeholders' queries: `bitacora-query` (DataFusion over the catalog) next to DuckDB over the
very same curated Parquet files (the files the published manifests name, read with DuckDB's
`read_parquet(..., hive_partitioning = true)`, which gives it `dt` from the paths).

Each query runs as a whole process per engine — what an analyst or a scheduler pays — the engines
taking turns, `--repeat` rounds, the best wall time counting. The answers of the two engines are
compared (row counts and first row) before any timing. Process start-up is measured on its own
(`SELECT 1`) and printed next to the totals.

  query.py --bin-dir target/release --events 2000000              # one 2M-event day
  query.py --bin-dir target/release --events 200000 --days 30     # a month: planning and a full scan
  query.py --bin-dir target/release --events 10000000 --python    # + the Python module: a whole day
                                                                  #   into a pyarrow.Table

`--python` needs the `bitacora` wheel in the running interpreter (tests/run.sh's venv has it). It times,
in one process each, `bitacora.query("SELECT * FROM events WHERE dt = D")` and DuckDB's
`.arrow()` of the same statement over the same files (import and connection outside the timing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

FIRST = dt.date(2026, 10, 4)

# name -> (SQL on the table `events`, with `{day}` the last day of the lake). The named queries are
# run through `--named`; the others are the ad-hoc forms analysts write.
QUERIES = {
    "daily_active_users": None,
    "events_per_type": None,
    "error_rate_by_version": None,
    "top_error_codes": None,
    "p95_latency_by_platform": None,
    "hourly_histogram": "SELECT date_trunc('hour', event_time) AS hour, count(*) AS events FROM events "
                        "WHERE dt = '{day}' GROUP BY 1 ORDER BY 1",
    "one_user_timeline": "SELECT event_time, event_type, level, status_code FROM events "
                         "WHERE dt = '{day}' AND user_id = '{user}' ORDER BY event_time",
    "one_event_type": "SELECT count(*) AS purchases, count(DISTINCT user_id) AS buyers FROM events "
                      "WHERE dt = '{day}' AND event_type = 'purchase'",
}
# DuckDB's table `events` over the given files (`dt` and `run` from the paths), shared by both of
# its scripts below.
DUCK_VIEW = r"""
def events_view(con, files):
    con.execute("SET enable_progress_bar = false")
    listed = ", ".join("'%s'" % f.replace("'", "''") for f in files)
    con.execute("CREATE VIEW events AS SELECT * EXCLUDE (run) FROM read_parquet([%s], hive_partitioning = true, "
                "hive_types = {'dt': VARCHAR, 'run': VARCHAR})" % listed)
"""

DUCK = DUCK_VIEW + r"""
import duckdb, json, sys
files, sql = json.loads(sys.argv[1]), sys.argv[2]
con = duckdb.connect()
con.execute("SET threads = %d" % int(sys.argv[3]))
if files:
    events_view(con, files)
rows = con.execute(sql).fetchall()
print(json.dumps({"rows": len(rows), "first": [str(v) for v in rows[0]] if rows else None}))
"""


def timed(cmd: list[str], env: dict) -> tuple[float, str]:
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} ... failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return wall, p.stdout


def build_lake(bin_dir: Path, work: Path, events: int, days: int) -> tuple[Path, list[dt.date]]:
    dates = [FIRST + dt.timedelta(days=i) for i in range(days)]
    cfg = work / "bitacora.toml"
    marker = work / "built.json"
    if marker.exists():
        return cfg, dates
    shutil.rmtree(work, ignore_errors=True)
    (work / "logs").mkdir(parents=True)
    cfg.write_text(
        f'[source]\npath = "{work / "logs"}"\n[lake]\nroot = "{work / "lake"}"\n'
        f'[encryption]\nkey_file = "{work / "bench.key"}"\n'
    )
    env = {**os.environ, "BITACORA_LOG": "warn", "BITACORA_PROGRESS": "0"}
    t = time.perf_counter()
    for i, d in enumerate(dates):
        subprocess.run([str(bin_dir / "bitacora"), "generate", "--date", d.isoformat(), "--events", str(events),
                        "--out", str(work / "logs"), "--seed", str(i + 1)], check=True, capture_output=True, env=env)
    subprocess.run([str(bin_dir / "bitacora"), "--config", str(cfg), "run", "--from", dates[0].isoformat(),
                    "--to", dates[-1].isoformat()], check=True, capture_output=True, env=env)
    shutil.rmtree(work / "logs")
    marker.write_text(json.dumps({"events": events, "days": days, "seconds": time.perf_counter() - t}))
    return cfg, dates


def published_files(lake: Path, dates: list[dt.date]) -> list[str]:
    files = []
    for d in dates:
        m = json.loads((lake / "_manifests" / "transform" / f"dt={d.isoformat()}.json").read_text())
        files += [str(lake / f["path"]) for f in m["outputs"]["events"]["files"]]
    return files


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", type=Path, required=True)
    ap.add_argument("--events", type=int, default=2_000_000, help="events per day")
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=int(os.environ.get("BITACORA_BENCH_REPEAT", "3")))
    ap.add_argument("--python", action="store_true", help="also time the Python module into pyarrow")
    args = ap.parse_args()
    base = Path(os.environ.get("BITACORA_BENCH_DIR", "/tmp/bitacora-bench"))
    work = base / f"query-{args.events}x{args.days}"
    cfg, dates = build_lake(args.bin_dir, work, args.events, args.days)
    files = published_files(work / "lake", dates)
    last = dates[-1].isoformat()
    env = {**os.environ, "BITACORA_LOG": "warn", "BITACORA_PROGRESS": "0"}
    threads = str(os.cpu_count() or 2)

    base_cmd = [str(args.bin_dir / "bitacora-query"), "--config", str(cfg), "--format", "json"]
    # A month: the named queries over every day (the full-month aggregation); else the last day.
    day_args = [] if args.days > 1 else ["--date", last]

    def ours(name: str, sql: str | None) -> list[str]:
        return base_cmd + (["--named", name, *day_args] if sql is None else [sql])

    def named_sql(name: str) -> str:
        """The SQL that `--named` runs here (DataFusion's form, which DuckDB also speaks)."""
        return json.loads(timed(base_cmd + ["--show", name, *day_args], env)[1])["sql"]

    def theirs(sql: str, with_files: bool = True) -> list[str]:
        return [sys.executable, "-c", DUCK, json.dumps(files if with_files else []), sql, threads]

    # A user with events on the last day, for the timeline.
    _, out = timed(theirs(f"SELECT user_id FROM events WHERE dt = '{last}' AND user_id IS NOT NULL "
                          "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"), env)
    user = json.loads(out)["first"][0]
    plan = {}
    for name, sql in QUERIES.items():
        mine = ours(name, sql.format(day=last, user=user) if sql else None)
        duck_sql = named_sql(name) if sql is None else sql.format(day=last, user=user)
        plan[name] = (mine, theirs(duck_sql))
    # Same answers first (row counts and the first row's first column).
    for name, (mine, duck) in plan.items():
        a = json.loads(timed(mine, env)[1])
        b = json.loads(timed(duck, env)[1])
        assert len(a) == b["rows"], f"{name}: {len(a)} rows against DuckDB's {b['rows']}"
        if a:
            first = str(next(iter(a[0].values())))
            assert first[:10] == b["first"][0][:10], f"{name}: {a[0]} against {b['first']}"
    startup = {
        "bitacora": min(timed(ours("startup", "SELECT 1"), env)[0] for _ in range(args.repeat)),
        "duckdb": min(timed(theirs("SELECT 1", with_files=False), env)[0] for _ in range(args.repeat)),
    }
    best = {name: [float("inf"), float("inf")] for name in plan}
    for _ in range(args.repeat):
        for name, (mine, duck) in plan.items():
            best[name][0] = min(best[name][0], timed(mine, env)[0])
            best[name][1] = min(best[name][1], timed(duck, env)[0])
    rows = sum(json.loads((work / "lake" / "_manifests" / "transform" / f"dt={d.isoformat()}.json").read_text())
               ["outputs"]["events"]["rows"] for d in dates)
    print(f"lake: {args.days} day(s), {rows:,} events, {len(files)} Parquet file(s); {os.cpu_count()} cores; "
          f"best of {args.repeat}, whole processes")
    print(f"process start-up (SELECT 1): bitacora-query {startup['bitacora']:.3f} s, python + duckdb {startup['duckdb']:.3f} s\n")
    print("| query | bitacora-query s | DuckDB s | ratio |")
    print("|---|---:|---:|---:|")
    for name, (a, b) in best.items():
        print(f"| {name} | {a:.3f} | {b:.3f} | {a / b:.2f} |")
    ta, tb = sum(v[0] for v in best.values()), sum(v[1] for v in best.values())
    print(f"| **total** | {ta:.3f} | {tb:.3f} | **{ta / tb:.2f}** |")
    n = len(plan)
    net_a, net_b = ta - n * startup["bitacora"], tb - n * startup["duckdb"]
    print(f"without process start-up: {net_a:.3f} s against {net_b:.3f} s, ratio {net_a / net_b:.2f}")
    if args.python:
        python_module(cfg, files, last, args.repeat, env)


PY_OURS = r"""
import json, sys, time
import bitacora
cfg, sql = sys.argv[1], sys.argv[2]
bitacora.query("SELECT 1", cfg)
t = time.perf_counter()
table = bitacora.query(sql, cfg)
print(json.dumps({"seconds": time.perf_counter() - t, "rows": table.num_rows, "bytes": table.nbytes}))
"""

PY_DUCK = DUCK_VIEW + r"""
import duckdb, json, sys, time
files, sql = json.loads(sys.argv[1]), sys.argv[2]
con = duckdb.connect()
events_view(con, files)
t = time.perf_counter()
table = con.sql(sql).arrow()
table = table.read_all() if hasattr(table, "read_all") else table
print(json.dumps({"seconds": time.perf_counter() - t, "rows": table.num_rows, "bytes": table.nbytes}))
"""


def python_module(cfg: Path, files: list[str], day: str, repeat: int, env: dict) -> None:
    """A whole day into a pyarrow.Table: the Python module against DuckDB's .arrow()."""
    sql = f"SELECT * FROM events WHERE dt = '{day}'"
    best = {"bitacora": float("inf"), "duckdb": float("inf")}
    rows = {}
    for _ in range(repeat):
        for name, cmd in [("bitacora", [sys.executable, "-c", PY_OURS, str(cfg), sql]),
                          ("duckdb", [sys.executable, "-c", PY_DUCK, json.dumps(files), sql])]:
            r = json.loads(timed(cmd, env)[1])
            best[name] = min(best[name], r["seconds"])
            rows[name] = (r["rows"], r["bytes"])
    assert rows["bitacora"][0] == rows["duckdb"][0], rows
    print(f"\nPython, one day into a pyarrow.Table ({rows['bitacora'][0]:,} rows; "
          f"{rows['bitacora'][1] / 2**20:.0f} MiB ours, {rows['duckdb'][1] / 2**20:.0f} MiB DuckDB's), best of {repeat}, in-process:")
    print(f"  bitacora.query {best['bitacora']:.3f} s   duckdb .arrow() {best['duckdb']:.3f} s   "
          f"ratio {best['bitacora'] / best['duckdb']:.2f}")


if __name__ == "__main__":
    main()
