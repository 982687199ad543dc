"""Bitácora extract+transform next to DuckDB and Polars doing the equivalent work on the same input:
read the day's NDJSON (plain and gzip), parse the message, keep the earliest delivery per event,
write zstd Parquet. Each engine runs in its own process; wall time and that process's peak RSS
(getrusage via wait4) are measured. Bitácora also encrypts and decrypts its raw zone and writes a
quarantine table; the peers do not.

Each engine runs `--repeat` times (default 3, BITACORA_BENCH_REPEAT), the engines taking turns; the
best wall time counts, and the peak RSS is the largest seen. Every run starts with no dirty pages
(`sync`) and the input in the page cache.

Usage: bench.py --bin-dir target/release [--repeat 3] 1000000 10000000
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import threading
import sys
import time
from pathlib import Path

DAY = "2026-11-02"
START_MS = 1793577600000  # 2026-11-02T00:00:00Z
END_MS = START_MS + 86_400_000
FIELDS = [
    "event_id", "ts", "level", "event_type", "user_id", "session_id", "app_version", "platform",
    "os_version", "device_model", "country", "latency_ms", "status_code", "error_code",
]


def wrapped(cmd: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """Runs `cmd` as a child of a fresh Python process that reports the child's own peak RSS."""
    code = (
        "import os,sys,time,subprocess,json,resource;"
        "t=time.perf_counter();p=subprocess.Popen(sys.argv[1:],stdout=subprocess.PIPE);"
        "out=p.stdout.read();_,st,ru=os.wait4(p.pid,0);"
        "print(json.dumps({'wall':time.perf_counter()-t,'rss':ru.ru_maxrss*1024,'rc':os.waitstatus_to_exitcode(st),'out':out.decode()}))"
    )
    res = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        sys.exit(f"wrapper failed: {res.stderr[-2000:]}")
    r = json.loads(res.stdout)
    if r["rc"] != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r['rc']}):\n{res.stderr[-3000:]}")
    return r["wall"], r["rss"], r["out"]


def input_files(logs: Path) -> list[str]:
    return sorted(glob.glob(str(logs / "**" / "*.jsonl"), recursive=True) + glob.glob(str(logs / "**" / "*.jsonl.gz"), recursive=True))


def warm(files: list[str]) -> None:
    """Reads `files` into the page cache."""
    buf = bytearray(8 << 20)
    for f in files:
        with open(f, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass


# ------------------------------------------------------------------ peers (run in a child process)

def run_duckdb(logs: Path, out: Path) -> int:
    import duckdb

    files = input_files(logs)
    struct = json.dumps({**{f: "VARCHAR" for f in FIELDS}, "props": "JSON"})
    con = duckdb.connect()
    con.execute(f"SET threads = {os.cpu_count()}")
    con.execute("SET preserve_insertion_order = false")
    con.execute(f"""
        COPY (
          SELECT * EXCLUDE (rn, src_ts, src_id) FROM (
            SELECT
              coalesce(m.event_id, eventId) AS event_id,
              coalesce(try_cast(m.ts AS TIMESTAMPTZ), make_timestamp(timestamp * 1000)) AS event_time,
              make_timestamp(ingestionTime * 1000) AS ingest_time,
              '/mobile/app' AS log_group, logStreamName AS log_stream, m.level,
              CASE WHEN m IS NULL THEN 'text' ELSE m.event_type END AS event_type,
              m.user_id, m.session_id, m.app_version, m.platform, m.os_version, m.device_model, m.country,
              try_cast(m.latency_ms AS BIGINT) AS latency_ms, try_cast(m.status_code AS INTEGER) AS status_code,
              m.error_code, CASE WHEN m IS NULL THEN message END AS message, m.props::VARCHAR AS properties,
              timestamp AS src_ts, eventId AS src_id,
              row_number() OVER (PARTITION BY coalesce(m.event_id, eventId) ORDER BY timestamp, eventId) AS rn
            FROM (
              SELECT *, CASE WHEN starts_with(message, '{{') AND json_valid(message)
                             THEN json_transform(message, '{struct}') END AS m
              FROM read_json({files!r}, format = 'newline_delimited', compression = 'auto_detect',
                   columns = {{timestamp: 'BIGINT', ingestionTime: 'BIGINT', message: 'VARCHAR',
                              logStreamName: 'VARCHAR', eventId: 'VARCHAR'}})
              WHERE timestamp >= {START_MS} AND timestamp < {END_MS}
            )
          ) WHERE rn = 1
        ) TO '{out}' (FORMAT parquet, COMPRESSION zstd)
    """)
    return con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]


def run_polars(logs: Path, out: Path) -> int:
    import gzip

    import polars as pl

    # Polars does not read gzip NDJSON: decompress those files first (counted in its time).
    tmp = out.parent / "polars-gunzip"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    sources = []
    for i, f in enumerate(input_files(logs)):
        if f.endswith(".gz"):
            plain = tmp / f"{i}.jsonl"
            with gzip.open(f, "rb") as g, open(plain, "wb") as w:
                shutil.copyfileobj(g, w, 1 << 20)
            sources.append(str(plain))
        else:
            sources.append(f)
    schema = {"timestamp": pl.Int64, "ingestionTime": pl.Int64, "message": pl.String,
              "logStreamName": pl.String, "eventId": pl.String}
    msg = pl.Struct({f: pl.String for f in FIELDS})
    json_msg = pl.when(pl.col("message").str.starts_with("{")).then(pl.col("message"))
    lf = (
        pl.scan_ndjson(sources, schema=schema)
        .filter((pl.col("timestamp") >= START_MS) & (pl.col("timestamp") < END_MS))
        .with_columns(m=json_msg.str.json_decode(msg), props=json_msg.str.json_path_match("$.props"))
        .with_columns(
            event_id=pl.coalesce(pl.col("m").struct.field("event_id"), pl.col("eventId")),
            is_text=pl.col("m").is_null(),
        )
        .sort(["event_id", "timestamp", "eventId"])
        .unique(subset=["event_id"], keep="first", maintain_order=True)
        .select(
            "event_id",
            event_time=pl.coalesce(
                pl.col("m").struct.field("ts").str.to_datetime(time_zone="UTC", strict=False),
                pl.from_epoch("timestamp", time_unit="ms").dt.replace_time_zone("UTC"),
            ),
            ingest_time=pl.from_epoch("ingestionTime", time_unit="ms").dt.replace_time_zone("UTC"),
            log_group=pl.lit("/mobile/app"),
            log_stream=pl.col("logStreamName"),
            level=pl.col("m").struct.field("level"),
            event_type=pl.when(pl.col("is_text")).then(pl.lit("text")).otherwise(pl.col("m").struct.field("event_type")),
            **{f: pl.col("m").struct.field(f) for f in ["user_id", "session_id", "app_version", "platform", "os_version", "device_model", "country"]},
            latency_ms=pl.col("m").struct.field("latency_ms").cast(pl.Int64, strict=False),
            status_code=pl.col("m").struct.field("status_code").cast(pl.Int32, strict=False),
            error_code=pl.col("m").struct.field("error_code"),
            message=pl.when(pl.col("is_text")).then(pl.col("message")),
            properties=pl.col("props"),
        )
    )
    lf.sink_parquet(out, compression="zstd")
    shutil.rmtree(tmp, ignore_errors=True)
    return pl.scan_parquet(out).select(pl.len()).collect().item()


# ------------------------------------------------------------------ driver

def bitacora(bin_dir: Path, work: Path) -> dict:
    lake = work / "lake"
    shutil.rmtree(lake, ignore_errors=True)
    cfg = work / "bitacora.toml"
    cfg.write_text(
        f'[source]\npath = "{work / "logs"}"\n[lake]\nroot = "{lake}"\n'
        f'[encryption]\nmode = "envelope"\nkey_file = "{work / "bench.key"}"\n'
        f'[transform]\nspill_dir = "{work / "spill"}"\n'
    )
    env = {**os.environ, "BITACORA_LOG": "warn", "BITACORA_PROGRESS": "0"}
    w1, r1, o1 = wrapped([str(bin_dir / "bitacora-extract"), "--config", str(cfg), "--date", DAY], env)
    w2, r2, o2 = wrapped([str(bin_dir / "bitacora-transform"), "--config", str(cfg), "--date", DAY], env)
    t = json.loads(o2)
    return {"wall": w1 + w2, "rss": max(r1, r2), "rows": t["events"], "detail": f"extract {w1:.1f}s + transform {w2:.1f}s, {t['buckets']} file(s)", "read": t["read"]}


def peer(engine: str, work: Path) -> dict:
    out = work / f"{engine}.parquet"
    out.unlink(missing_ok=True)
    w, r, o = wrapped([sys.executable, __file__, "--engine", engine, "--logs", str(work / "logs"), "--out", str(out)])
    return {"wall": w, "rss": r, "rows": int(o.strip().splitlines()[-1]), "detail": ""}


def generated(bin_dir: Path, work: Path, n: int) -> dict:
    """The day of `n` events under `work/logs`, generated once (seed 1)."""
    logs = work / "logs"
    marker = work / "generated.json"
    if not marker.exists():
        shutil.rmtree(work, ignore_errors=True)
        logs.mkdir(parents=True)
        gen = subprocess.run([str(bin_dir / "bitacora"), "generate", "--date", DAY, "--events", str(n),
                              "--out", str(logs), "--seed", "1"], capture_output=True, text=True, check=True)
        marker.write_text(gen.stdout)
    return json.loads(marker.read_text())


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def scale(bin_dir: Path, base: Path, sizes: list[int]) -> None:
    """Bitácora's extract + transform alone on ever larger days (the peers need more memory than
    this machine has past ~20M events): wall time, time per million events, peak memory, the raw
    zone and the largest spill folder seen on disk. Each day's input stays under BITACORA_BENCH_DIR
    for the next run; remove it when done (80M events: 29 GiB of input, ~55 GiB free disk at the peak)."""
    print(f"machine: {os.cpu_count()} cores")
    rows = []
    for n in sizes:
        work = base / str(n)
        gen = generated(bin_dir, work, n)
        files = input_files(work / "logs")
        size = sum(os.path.getsize(f) for f in files)
        print(f"\n{n:,} events ({gen['records']:,} records, {size / 2**30:.2f} GiB of input)", flush=True)
        os.sync()
        # Spill folders live under work/spill while the transform runs: sample their size.
        peak_spill = [0]
        stop = threading.Event()

        def watch():
            while not stop.wait(0.5):
                peak_spill[0] = max(peak_spill[0], du(work / "spill"))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            r = bitacora(bin_dir, work)
        finally:
            stop.set()
            watcher.join()
        raw = du(work / "lake" / "raw")
        r.update(n=n, raw=raw, spill=peak_spill[0])
        rows.append(r)
        print(f"  {r['wall']:.1f} s ({r['wall'] / n * 1e6:.2f} s per million)  peak {r['rss'] / 2**20:.0f} MiB  "
              f"raw zone {raw / 2**30:.2f} GiB  spill peak {peak_spill[0] / 2**30:.2f} GiB  {r['detail']}", flush=True)
    print("\n| events | extract + transform s | s per million | peak MiB | raw zone GiB | spill peak GiB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['n']:,} | {r['wall']:.1f} | {r['wall'] / r['n'] * 1e6:.2f} | {r['rss'] / 2**20:.0f} | "
              f"{r['raw'] / 2**30:.2f} | {r['spill'] / 2**30:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", type=Path)
    ap.add_argument("--engine")
    ap.add_argument("--logs", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--repeat", type=int, default=int(os.environ.get("BITACORA_BENCH_REPEAT", "3")), help="rounds; the best wall time of each engine counts")
    ap.add_argument("--scale", action="store_true", help="Bitácora alone, once per size: the cost curve of large days")
    ap.add_argument("sizes", nargs="*", type=int)
    a = ap.parse_args()
    if a.engine:
        print({"duckdb": run_duckdb, "polars": run_polars}[a.engine](a.logs, a.out))
        return
    base = Path(os.environ.get("BITACORA_BENCH_DIR", "/tmp/bitacora-bench"))
    if a.scale:
        scale(a.bin_dir, base, a.sizes)
        return
    import duckdb
    import polars

    print(f"machine: {os.cpu_count()} cores; duckdb {duckdb.__version__}, polars {polars.__version__}")
    rows = []
    for n in a.sizes:
        work = base / str(n)
        logs = work / "logs"
        gen = generated(a.bin_dir, work, n)
        size = sum(os.path.getsize(f) for f in input_files(logs))
        print(f"\n{n:,} events of the day ({gen['records']:,} records, {size / 2**30:.2f} GiB on disk)", flush=True)
        # Best of `repeat` rounds, engines taking turns within a round. Before each run the dirty
        # pages of the previous one are flushed and the input is read into the page cache, so that
        # no engine pays for another's writes, or for reading what another evicted.
        results = {}
        files = input_files(logs)
        for round_ in range(a.repeat):
            for engine in ["bitacora", "duckdb", "polars"]:
                os.sync()
                warm(files)
                r = bitacora(a.bin_dir, work) if engine == "bitacora" else peer(engine, work)
                best = results.get(engine)
                if best is None or r["wall"] < best["wall"]:
                    results[engine] = {**r, "rss": max(r["rss"], best["rss"] if best else 0)}
                else:
                    best["rss"] = max(best["rss"], r["rss"])
                print(f"  [{round_ + 1}/{a.repeat}] {engine:<9} {r['wall']:7.1f} s  {r['detail']}", flush=True)
        for engine, r in results.items():
            print(f"  {engine:<9} {r['wall']:7.1f} s  {n / r['wall']:>10,.0f} events/s  peak {r['rss'] / 2**20:7.0f} MiB  rows {r['rows']:,}  {r['detail']}", flush=True)
        ratio = results["bitacora"]["wall"] / results["duckdb"]["wall"]
        ratio_pl = results["bitacora"]["wall"] / results["polars"]["wall"]
        print(f"  Bitácora / DuckDB wall time: {ratio:.2f}   Bitácora / Polars: {ratio_pl:.2f}")
        rows.append((n, results, ratio, ratio_pl))
    print("\n| events | engine | wall s | events/s | peak MiB | rows out |")
    print("|---:|---|---:|---:|---:|---:|")
    for n, results, ratio, ratio_pl in rows:
        for engine, r in results.items():
            print(f"| {n:,} | {engine} | {r['wall']:.1f} | {n / r['wall']:,.0f} | {r['rss'] / 2**20:.0f} | {r['rows']:,} |")
        print(f"| {n:,} | **ratio Bitácora/DuckDB** | **{ratio:.2f}** | | | |")
        print(f"| {n:,} | ratio Bitácora/Polars | {ratio_pl:.2f} | | | |")


if __name__ == "__main__":
    main()
