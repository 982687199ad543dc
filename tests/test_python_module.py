"""The Python module `bitacora` (PyO3), as a notebook or an Airflow worker uses it: every function,
the exception types, Arrow results equal to `bitacora-query`, a forked child, concurrent threads and
the GIL released during work. Runs against the wheel tests/run.sh builds and installs."""

from __future__ import annotations

import datetime as dt
import gzip
import importlib.metadata
import json
import os
import pickle
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

import bitacora
from conftest import DAY, NAMED, run


def config_doc(base: Path, logs: Path) -> dict:
    return {
        "source": {"path": str(logs)},
        "lake": {"root": str(base / "lake")},
        "encryption": {"mode": "envelope", "key_file": str(base / "lake.key")},
    }


def write_toml(path: Path, doc: dict) -> Path:
    lines = []
    for section, values in doc.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    """A generated day run through the module's steps, with the config as a dict and as a file."""
    base = tmp_path_factory.mktemp("pymodule")
    logs = base / "logs"
    gen = bitacora.generate(DAY, 20_000, logs, seed=7)
    doc = config_doc(base, logs)
    reports = {
        "extract": bitacora.extract(DAY, config=doc),
        "transform": bitacora.transform(dt.date.fromisoformat(DAY), config=doc),
        "catalog": bitacora.catalog(DAY, config=doc),
    }
    return {"base": base, "logs": logs, "doc": doc, "toml": write_toml(base / "bitacora.toml", doc), "generate": gen, **reports}


def stable(report: dict) -> dict:
    """A report without what differs between two runs of the same input (run ids, run folders, timings)."""
    return {k: v for k, v in report.items() if k not in ("run_id", "duration_ms", "events_location", "quarantine_location")}


def test_steps_return_the_binaries_reports(day):
    assert day["generate"]["files"] and day["generate"]["records"] > 20_000
    ex, tr, ca = day["extract"], day["transform"], day["catalog"]
    assert ex["status"] == tr["status"] == ca["status"] == "ok"
    assert ex["date"] == tr["date"] == ca["date"] == DAY
    assert tr["read"] == ex["selected"]
    assert tr["events"] + tr["quarantine"] + tr["duplicates"] == tr["read"]
    assert tr["events"] > 0 and tr["duplicates"] > 0 and tr["quarantine"] > 0
    # The binary re-running the same day on the same lake reports the same figures (idempotent).
    again = json.loads(run("bitacora-transform", "--config", str(day["toml"]), "--date", DAY).stdout)
    assert set(again) == set(tr)
    assert stable(again) == stable(tr)


def test_query_returns_arrow_tables_equal_to_bitacora_query(day):
    doc = day["doc"]
    table = bitacora.query("SELECT * FROM bitacora.events", config=doc)
    assert isinstance(table, pa.Table)
    assert table.num_rows == day["transform"]["events"]
    assert table.schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("latency_ms").type == pa.int64()
    for q in NAMED:
        ours = bitacora.named_query(q, DAY, config=day["toml"]).to_pylist()
        theirs = json.loads(run("bitacora-query", "--config", str(day["toml"]), "--format", "json", "--named", q, "--date", DAY).stdout)
        assert ours == theirs, q
    sql = "SELECT level, count(*) AS n FROM bitacora.events GROUP BY level ORDER BY level"
    theirs = json.loads(run("bitacora-query", "--config", str(day["toml"]), "--format", "json", sql).stdout)
    assert bitacora.query(sql, config=doc).to_pylist() == theirs
    assert {q["name"] for q in bitacora.named_queries()} >= set(NAMED)


def test_run_covers_a_range_and_accepts_dates_and_datetimes(tmp_path):
    logs = tmp_path / "logs"
    days = [dt.date(2026, 10, 4), dt.date(2026, 10, 5)]
    for d in days:
        bitacora.generate(d, 2_000, logs, seed=3)
    doc = config_doc(tmp_path, logs)
    start = dt.datetime(2026, 10, 4, 0, 0, tzinfo=dt.timezone.utc)  # Airflow's data_interval_start
    report = bitacora.run(start, days[1], config=doc)
    assert [d["date"] for d in report["days"]] == [d.isoformat() for d in days]
    counts = bitacora.query("SELECT dt, count(*) AS n FROM bitacora.events GROUP BY dt ORDER BY dt", config=doc).to_pylist()
    assert [r["dt"] for r in counts] == [d.isoformat() for d in days]
    assert [r["n"] for r in counts] == [d["transform"]["events"] for d in report["days"]]
    # An aware datetime counts by its UTC day: 23:30 at UTC-2 is 01:30 the next day in UTC.
    late = dt.datetime(2026, 10, 3, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2)))
    assert bitacora.transform(late, config=doc)["date"] == "2026-10-04"


def test_config_as_path_dict_or_environment(day, monkeypatch, tmp_path):
    sql = "SELECT count(*) AS n FROM bitacora.events"
    expected = [{"n": day["transform"]["events"]}]
    assert bitacora.query(sql, config=day["toml"]).to_pylist() == expected
    assert bitacora.query(sql, config=str(day["toml"])).to_pylist() == expected
    monkeypatch.setenv("BITACORA_CONFIG", str(day["toml"]))
    monkeypatch.chdir(tmp_path)
    assert bitacora.query(sql).to_pylist() == expected
    # A dict reads like a file in the working directory: relative paths resolve against it.
    monkeypatch.delenv("BITACORA_CONFIG")
    monkeypatch.chdir(day["base"])
    relative = {"lake": {"root": "lake"}, "encryption": {"mode": "envelope", "key_file": "lake.key"}}
    assert bitacora.query(sql, config=relative).to_pylist() == expected
    # A key set to None is not set (TOML has no null): its default applies.
    with_none = {**relative, "lake": {"root": "lake", "max_retries": None}, "query": {"engine": None}}
    assert bitacora.query(sql, config=with_none).to_pylist() == expected


def test_errors_map_to_the_exception_hierarchy(day, tmp_path):
    doc = day["doc"]
    for cls in [bitacora.ConfigError, bitacora.SourceError, bitacora.StorageError, bitacora.CatalogError, bitacora.QueryError]:
        assert issubclass(cls, bitacora.BitacoraError)

    with pytest.raises(bitacora.ConfigError, match="lake.max_retries") as e:
        bitacora.extract(DAY, config={**doc, "lake": {**doc["lake"], "max_retries": "many"}})
    assert e.value.kind == "config" and isinstance(e.value, ValueError)
    with pytest.raises(bitacora.ConfigError, match="nonsense"):
        bitacora.extract(DAY, config={"nonsense": {}})
    with pytest.raises(bitacora.ConfigError, match="2026-13-45"):
        bitacora.extract("2026-13-45", config=doc)
    with pytest.raises(bitacora.ConfigError, match="nowhere.toml"):
        bitacora.extract(DAY, config=tmp_path / "nowhere.toml")
    with pytest.raises(TypeError):
        bitacora.extract(20261102, config=doc)  # type: ignore[arg-type]

    broken = tmp_path / "broken-logs"
    broken.mkdir()
    (broken / "app.jsonl.gz").write_bytes(gzip.compress(b'{"a": 1}\n')[:-12] + b"garbage")
    with pytest.raises(bitacora.SourceError, match="app.jsonl.gz") as e:
        bitacora.extract(DAY, config={**doc, "source": {"path": str(broken)}, "lake": {"root": str(tmp_path / "l")}})
    assert e.value.kind == "source"

    # The day's raw objects under another master key: decryption fails, naming the object.
    key = tmp_path / "other.key"
    key.write_text("ab" * 32 + "\n")
    key.chmod(0o600)
    other_key = {**doc, "encryption": {"mode": "envelope", "key_file": str(key)}}
    with pytest.raises(bitacora.StorageError, match="raw/dt=") as e:
        bitacora.transform(DAY, config=other_key)
    assert e.value.kind == "encryption"
    with pytest.raises(bitacora.StorageError):
        bitacora.transform("2026-01-01", config=doc)  # no raw zone for that day

    with pytest.raises(bitacora.QueryError, match="read-only"):
        bitacora.query("DROP TABLE bitacora.events", config=doc)
    with pytest.raises(bitacora.QueryError):
        bitacora.query("SELECT no_such_column FROM bitacora.events", config=doc)
    with pytest.raises(bitacora.ConfigError, match="no_such_query"):
        bitacora.named_query("no_such_query", DAY, config=doc)

    catalog_file = next(Path(doc["lake"]["root"], "_catalog").rglob("table.json"))
    saved = catalog_file.read_bytes()
    try:
        catalog_file.write_text("{ not json")
        with pytest.raises(bitacora.CatalogError, match="table.json") as e:
            bitacora.catalog(DAY, config=doc)
        assert e.value.kind == "catalog"
    finally:
        catalog_file.write_bytes(saved)
    # Exceptions survive pickling (multiprocessing, Airflow's task runner).
    err = pickle.loads(pickle.dumps(bitacora.QueryError("boom", "query")))
    assert isinstance(err, bitacora.QueryError) and err.kind == "query" and str(err) == "boom"


def test_normalize_lines_is_the_transforms_normaliser():
    """`normalize_lines` (what the Spark job runs): the transform's events, with their delivery
    provenance, and quarantine rows, from any Arrow string array."""
    ok = json.dumps({"timestamp": 1793577600123, "message": json.dumps(
        {"event_id": "e1", "ts": "2026-11-02T00:00:00Z", "event_type": "tap", "props": {"n": 12345678901234567890123}}),
        "logStreamName": "s", "eventId": "9"})
    lines = [ok, "not json", ok.replace('"9"', '"8"')]
    for array in (pa.array(lines), pa.array(lines, pa.large_string())):
        events, quarantine = bitacora.normalize_lines(array, "/g", 262144)
        assert isinstance(events, pa.RecordBatch) and isinstance(quarantine, pa.RecordBatch)
        assert (events.num_rows, quarantine.num_rows) == (2, 1)
        e = events.to_pylist()[0]
        assert e["event_id"] == "e1" and e["log_group"] == "/g" and e["_source_event_id"] == "9"
        assert e["properties"] == '{"n":12345678901234567890123}'
        assert quarantine.to_pylist()[0]["reason"] == "broken_envelope"
    with pytest.raises(bitacora.ConfigError, match="array of strings"):
        bitacora.normalize_lines(pa.array([1, 2]), "/g", 10)


def test_works_in_a_child_forked_after_use(day):
    """Airflow forks task processes from a parent that already imported (and used) the module."""
    sql = "SELECT event_type, count(*) AS n FROM bitacora.events GROUP BY event_type ORDER BY event_type"
    parent = bitacora.query(sql, config=day["doc"]).to_pylist()  # the parent's runtime exists now
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: query, report through the pipe, exit without pytest's cleanup
        code = 1
        try:
            rows = bitacora.query(sql, config=day["doc"]).to_pylist()
            os.write(write_end, json.dumps(rows).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    deadline = time.time() + 120
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.time() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung (a runtime inherited across fork?)")
        time.sleep(0.05)
    with os.fdopen(read_end, "rb") as f:
        child = json.loads(f.read() or b"null")
    assert os.waitstatus_to_exitcode(status) == 0
    assert child == parent


def test_two_threads_query_at_once(day):
    sql = "SELECT platform, count(DISTINCT user_id) AS users FROM bitacora.events GROUP BY platform ORDER BY platform"
    expected = bitacora.query(sql, config=day["doc"]).to_pylist()
    results, errors = [], []

    def worker():
        try:
            for _ in range(5):
                results.append(bitacora.query(sql, config=day["doc"]).to_pylist())
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and len(results) == 10
    assert all(r == expected for r in results)


def test_the_gil_is_released_during_work(tmp_path):
    """A Python thread keeps running while a step works: the step does not hold the GIL."""
    ticks, stop = [0], threading.Event()

    def ticker():
        while not stop.is_set():
            ticks[0] += 1
            time.sleep(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        start, calls = time.perf_counter(), 0
        while time.perf_counter() - start < 0.5:  # long enough to tell on any machine
            bitacora.generate(DAY, 300_000, tmp_path / f"logs-{calls}", seed=1)
            calls += 1
        elapsed = time.perf_counter() - start
        during = ticks[0]
    finally:
        stop.set()
        t.join()
    # Held GIL: the ticker would not run at all during the call. Released: about one tick per ms.
    assert during > elapsed * 1000 * 0.2, f"{during} ticks in {elapsed:.2f}s"


def test_the_wheel_is_typed_and_abi3():
    package = Path(bitacora.__file__).parent
    assert (package / "py.typed").is_file()
    assert (package / "_bitacora.pyi").is_file()
    assert any(p.name.endswith(".abi3.so") for p in package.glob("_bitacora*.so"))
    wheel = importlib.metadata.distribution("bitacora").read_text("WHEEL") or ""
    assert "cp310-abi3" in wheel, wheel
    assert bitacora.__version__ == importlib.metadata.version("bitacora")


def test_the_wheel_leaves_the_binaries_allocator_out():
    """mimalloc is the step binaries' global allocator; the extension module runs on Python's own.
    bitacora-core depends on it (the binaries name it through bitacora_core::process::Allocator),
    so maturin compiles it, but nothing in the module refers to it and the linker leaves it out."""
    from conftest import bin_dir

    marks = (b"mimalloc: warning: ", b"_mi_page_malloc")
    module = next(Path(bitacora.__file__).parent.glob("_bitacora*.so")).read_bytes()
    binary = (bin_dir() / "bitacora").read_bytes()
    # The same marks are found where mimalloc is linked: the check can see it.
    assert all(m in binary for m in marks)
    assert [m for m in marks if m in module] == []
