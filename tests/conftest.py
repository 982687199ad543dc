"""Shared fixtures: the release binaries and a generated, fully processed day."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DAY = "2026-11-02"


def bin_dir() -> Path:
    d = Path(os.environ.get("BITACORA_BIN_DIR", ROOT / "target" / "release"))
    if not (d / "bitacora").exists():
        pytest.fail(f"no Bitácora binaries in {d}: run `cargo build --release` (tests/run.sh does)")
    return d


def run(tool: str, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "BITACORA_LOG": "warn", **(env or {})}
    full_env.pop("BITACORA_CONFIG", None)
    proc = subprocess.run([str(bin_dir() / tool), *args], capture_output=True, text=True, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{tool} {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def processed_day(tmp_path_factory):
    """A generated day run through extract → transform → catalog; yields paths and reports."""
    base = tmp_path_factory.mktemp("bitacora")
    logs, lake = base / "logs", base / "lake"
    config = base / "bitacora.toml"
    config.write_text(
        f'[source]\npath = "{logs}"\n[lake]\nroot = "{lake}"\n'
        f'[encryption]\nmode = "envelope"\nkey_file = "{base / "lake.key"}"\n'
    )
    gen = json.loads(run("bitacora", "generate", "--date", DAY, "--events", "30000", "--out", str(logs), "--seed", "5").stdout)
    report = json.loads(run("bitacora", "--config", str(config), "run", "--from", DAY, "--to", DAY).stdout)
    return {"base": base, "lake": lake, "config": config, "generate": gen, "run": report}
