#!/usr/bin/env bash
# Runs every Bitácora test: formatting and lints, the Rust workspace tests, and the Python tests
# (pytest, against the release binaries). Installs what the Python tests need into a venv.
#
#   bash tests/run.sh
#
# Environment: CARGO_TARGET_DIR (build cache; .ci/run points it at ~/.cache), BITACORA_VENV
# (default ~/.cache/bitacora/venv).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target=${CARGO_TARGET_DIR:-$root/target}
venv=${BITACORA_VENV:-$HOME/.cache/bitacora/venv}

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

# Tests cover the AWS backends too (against a local endpoint): everything is built with them.
features=(--features bitacora/aws)

step "cargo clippy (warnings are errors; with and without the AWS backends)"
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo clippy --workspace --all-targets --quiet "${features[@]}" -- -D warnings

step "release binaries (with the AWS backends)"
cargo build --release --workspace --bins --quiet "${features[@]}"

step "npm tools: kinesis-local (the Kinesis source's resharding tests), playwright-core (the dashboard's browser test), dt-sql-parser (Trino's grammar, for the Athena forms of the named queries)"
node_dir=${BITACORA_NODE_DIR:-$HOME/.cache/bitacora/node}
if [ ! -f "$node_dir/node_modules/kinesis-local/main.js" ] || [ ! -f "$node_dir/node_modules/playwright-core/package.json" ] \
  || [ ! -f "$node_dir/node_modules/dt-sql-parser/package.json" ]; then
  mkdir -p "$node_dir"
  npm install --prefix "$node_dir" --no-audit --no-fund --silent kinesis-local@0.6.2 playwright-core@1.65.1 dt-sql-parser@4.5.1
fi
export BITACORA_KINESIS_LOCAL="$node_dir/node_modules/kinesis-local"
export BITACORA_NODE_DIR="$node_dir"

step "cargo test"
# The end-to-end tests run the step binaries as a scheduler would: build them first. The Python
# module (a cdylib for maturin, linked against no libpython) is tested through its wheel below.
cargo build --workspace --bins --quiet "${features[@]}"
cargo test --workspace --exclude bitacora-python --quiet "${features[@]}"

step "python test environment ($venv)"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt

step "python module: abi3 wheel (maturin, release profile, with the AWS backends)"
wheels="$target/wheels"
rm -f "$wheels"/bitacora-*.whl
"$venv/bin/maturin" build --release -m pybindings/Cargo.toml --quiet -o "$wheels"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheels"/bitacora-*.whl

if ! command -v chromium >/dev/null 2>&1; then
  step "chromium (Debian's package, for the Airflow UI and dashboard tests)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi

step "pytest tests/"
export BITACORA_BIN_DIR="$target/release"
"$venv/bin/python" -m pytest tests/ -q
