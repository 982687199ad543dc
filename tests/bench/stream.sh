#!/usr/bin/env bash
# Stream benchmark (by hand, not in CI): see tests/bench/stream.py. Needs redis-server,
# redis-benchmark and redis-cli (Debian's redis-server and redis-tools), ~1 GB of free disk.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${CARGO_TARGET_DIR:-$(pwd)/target}
cargo build --release --quiet --bin bitacora-stream --bin bitacora --features bitacora/aws
exec python3 tests/bench/stream.py --bin-dir "$target/release" "$@"
