#!/usr/bin/env bash
# Stream benchmark (by hand, not in CI): see tests/bench/stream.py. Needs redis-server,
# redis-benchmark and redis-cli (Debian's redis-server and redis-tools), ~1 GB of free disk, and
# the test venv (moto, boto3) for the Kinesis part.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${CARGO_TARGET_DIR:-$(pwd)/target}
cargo build --release --quiet --bin bitacora-stream --bin bitacora --features bitacora/aws
# moto and boto3 (the Kinesis part) come from the test venv (tests/run.sh makes it).
py=${BITACORA_VENV:-$HOME/.cache/bitacora/venv}/bin/python
[ -x "$py" ] || py=python3
exec "$py" tests/bench/stream.py --bin-dir "$target/release" "$@"
