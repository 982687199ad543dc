"""The Docker files, checked without a Docker engine (none runs on this machine): the YAML parses,
everything they reference exists, and the image builds with the README's command."""

from __future__ import annotations

import re
import tomllib

import yaml

from conftest import ROOT

DOCKER = ROOT / "docker"
BUILD = "cargo build --release --workspace --bins --features bitacora/aws"
WHEEL = "maturin build --release -m pybindings/Cargo.toml"
WHEEL_ARGS = "build --release -m pybindings/Cargo.toml"  # tests/run.sh calls the venv's maturin


def copy_sources(dockerfile):
    for line in (DOCKER / dockerfile).read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            *sources, _dest = line.split()[1:]
            yield from sources


def test_dockerfiles_reference_existing_files_and_the_readme_build():
    for dockerfile in ["Dockerfile", "airflow.Dockerfile"]:
        for src in copy_sources(dockerfile):
            assert (ROOT / src).exists(), f"{dockerfile}: COPY {src} does not exist"
    text = (DOCKER / "Dockerfile").read_text()
    assert BUILD in text
    assert BUILD in (ROOT / "README.md").read_text()
    # The wheel: built like the README says, installed in the Airflow image.
    assert WHEEL in text and WHEEL in (ROOT / "README.md").read_text() and WHEEL_ARGS in (ROOT / "tests" / "run.sh").read_text()
    assert "/opt/bitacora/wheels/" in text and "pip install" in (DOCKER / "airflow.Dockerfile").read_text()
    # Every workspace member is in the build context (cargo refuses a workspace with a missing member).
    members = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]
    copied = list(copy_sources("Dockerfile"))
    for member in members:
        assert any(member == c.rstrip("/") or member.startswith(c.rstrip("/") + "/") for c in copied), member
    for binary in ["bitacora", "bitacora-extract", "bitacora-transform", "bitacora-catalog", "bitacora-query"]:
        assert f"target/release/{binary}" in text
        assert re.search(rf'name = "{binary}"', "".join(p.read_text() for p in ROOT.glob("tasks/*/Cargo.toml")))


def test_compose_stack_parses_and_its_files_exist():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    for s in ["postgres", "redis", "minio", "opensearch", "opensearch-dashboards", "airflow-apiserver", "airflow-scheduler"]:
        assert s in services, s
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            context = (DOCKER / build["context"]).resolve()
            assert context.is_dir(), name
            assert (context / build["dockerfile"]).is_file(), name
        for vol in svc.get("volumes", []):
            host = vol.split(":")[0]
            if host.startswith("."):
                assert (DOCKER / host).exists(), f"{name}: {host}"
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
    config = tomllib.loads((DOCKER / "bitacora.toml").read_text())
    assert config["lake"]["root"].startswith("s3://")
    env = services["airflow-scheduler"]["environment"]
    assert env["AWS_ENDPOINT_URL"] == "http://minio:9000" and env["BITACORA_CONFIG"] == "/opt/bitacora/bitacora.toml"
