#!/usr/bin/env bash
# Benchmark: Bitácora extract+transform against DuckDB and Polars on the same generated days.
#
#   bash tests/bench/run.sh                 # 1M and 10M events
#   bash tests/bench/run.sh 200000          # any sizes
#   bash tests/bench/run.sh --query [--events 2000000] [--days 30]
#                                           # the stakeholder queries: bitacora-query against DuckDB
#                                           # on the same curated files (tests/bench/query.py)
#   bash tests/bench/run.sh --scale 20000000 40000000 80000000
#                                           # Bitácora alone, once per size: the cost curve of large
#                                           # days (by hand, not in CI: 80M needs ~55 GB of free disk)
#
# Needs ~8 GB of free disk for 10M events (BITACORA_BENCH_DIR, default /tmp/bitacora-bench).
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${CARGO_TARGET_DIR:-$(pwd)/target}
venv=${BITACORA_BENCH_VENV:-$HOME/.cache/bitacora/bench-venv}
cargo build --release --workspace --bins --quiet --features bitacora/aws  # the build tests/run.sh makes
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/requirements-bench.txt
if [ "${1:-}" = "--query" ]; then
  shift
  exec "$venv/bin/python" tests/bench/query.py --bin-dir "$target/release" "$@"
fi
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 10000000)
[ "${sizes[*]}" != "--scale" ] || sizes=(--scale 20000000 40000000 80000000)
exec "$venv/bin/python" tests/bench/bench.py --bin-dir "$target/release" "${sizes[@]}"
