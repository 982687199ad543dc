"""The live dashboard in a real browser: headless Debian Chromium, driven by playwright-core,
loads `/` while the load generator sends traffic; the numbers on the page move, and once the
load ends they are the numbers of `/metrics`. The screenshot is kept as a test artifact."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, bin_dir
from test_stream_aws import stream_proc  # noqa: F401 (a fixture)


def metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def test_the_dashboard_moves_with_the_traffic_and_matches_the_metrics(tmp_path, stream_proc):  # noqa: F811
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium")
    node_dir = Path(os.environ.get("BITACORA_NODE_DIR", Path.home() / ".cache" / "bitacora" / "node"))
    if chromium is None or not (node_dir / "node_modules" / "playwright-core").is_dir():
        pytest.fail("needs Debian's chromium and playwright-core under BITACORA_NODE_DIR (tests/run.sh installs both)")
    artifacts = Path(os.environ.get("BITACORA_ARTIFACTS", ROOT / "tests" / "artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    screenshot = artifacts / "stream-dashboard.png"
    screenshot.unlink(missing_ok=True)
    config = tmp_path / "bitacora.toml"
    config.write_text(
        f"""
[stream]
data_dir = "{tmp_path / 'data'}"
[stream.dedup]
kind = "memory"
[[stream.routes]]
name = "everything"
sink = {{ kind = "file", path = "{tmp_path / 'all'}" }}
[[stream.routes]]
name = "errors"
match = {{ level = ["ERROR"] }}
sink = {{ kind = "file", path = "{tmp_path / 'errors'}" }}
"""
    )
    stream = stream_proc(config, {})
    url = f"http://127.0.0.1:{stream.port}"
    load = subprocess.Popen(
        [str(bin_dir() / "bitacora"), "generate", "--stream", "--rate", "1500", "--duration", "12",
         "--to", url, "--duplicates", "0.05", "--seed", "11"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "BITACORA_LOG": "warn"},
    )
    try:
        page = subprocess.run(
            ["node", str(ROOT / "tests" / "browser" / "dashboard.mjs"), f"{url}/", str(screenshot)],
            capture_output=True, text=True, timeout=180,
            env={**os.environ, "BITACORA_NODE_DIR": str(node_dir), "CHROMIUM": chromium},
        )
        assert page.returncode == 0, page.stderr[-3000:]
        load_out, load_err = load.communicate(timeout=60)
        assert load.returncode == 0, load_err
    finally:
        if load.poll() is None:
            os.killpg(load.pid, signal.SIGKILL)
    shown = json.loads(page.stdout.strip().splitlines()[-1])
    assert shown["errors"] == [], shown["errors"]
    first, second = shown["during"]
    # Live: the page's totals moved between two looks while the load ran, at a rate above zero.
    assert second["snapshots"] > first["snapshots"]
    assert second["accepted"] > first["accepted"] > 0, shown["during"]
    assert float(second["rate_events"].replace(",", "").rstrip("k")) > 0, second
    assert second["connection"] == "live"
    # Settled: the page says what /metrics says.
    settled, m = shown["settled"], metrics(stream.port)
    assert settled["accepted"] == m['bitacora_stream_accepted_total{source="http"}'] > 10_000
    assert settled["duplicates"] == m['bitacora_stream_duplicates_total{source="http"}'] > 0
    assert settled["quarantined"] == m['bitacora_stream_quarantined_total{source="http"}'] > 0
    assert settled["records_in"] == m['bitacora_stream_records_in_total{source="http"}']
    by_type = {k[len('bitacora_stream_events_total{event_type="'):-2]: v for k, v in m.items() if k.startswith("bitacora_stream_events_total{")}
    assert settled["types"] == by_type and len(by_type) >= 8, (settled["types"], by_type)
    assert sum(by_type.values()) == settled["accepted"]
    assert sorted(settled["versions"]) == ["3.1.0", "3.1.1", "3.2.0", "3.2.1"] or len(settled["versions"]) >= 4
    assert set(settled["routes"]) >= {"everything", "errors", "quarantine"}
    assert settled["lines"] >= 8 and settled["errors_listed"] > 0
    assert screenshot.stat().st_size > 20_000
    report = stream.stop()
    assert report["accepted"] == settled["accepted"]
