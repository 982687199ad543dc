#!/usr/bin/env bash
# Fuzzes Bitácora's input readers (issue #10) for a bounded time. Run by hand, NOT in CI: it needs
# nightly Rust and cargo-fuzz (`cargo install cargo-fuzz --locked`) and takes minutes per target.
# What fuzzing found is replayed on stable, in CI too, by
#   cargo test -p bitacora-core --test fuzz_regressions
#
#   tasks/fuzz/run.sh                   every target, FUZZ_SECONDS (default 120) each
#   tasks/fuzz/run.sh normalize config  some targets
#   tasks/fuzz/run.sh seeds             rewrite reference/ and the binary seeds (make_seeds.rs)
#
# Each target starts from corpus-regressions/<target>/ (in the repo; known-bug inputs `bug-*` left
# out, they would stop it at once) plus its scratch corpus under the fuzz target dir (kept between
# runs, not in the repo). Each distinct crash is minimised (`cargo fuzz tmin`), copied into
# corpus-regressions/<target>/bug-<hash>, and the way to replay it is printed; the script then goes
# on with the next target and exits 1 at the end. Every build and run is under `nice -n 19`.
#
# Environment: FUZZ_SECONDS (per target), FUZZ_KEEP_GOING=1 (do not stop at the first crash:
# libFuzzer's fork mode, every crash kept), CARGO_TARGET_DIR (default ~/.cache/bitacora/fuzz-target,
# not the workspace's target dir).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/bitacora/fuzz-target}"
seconds="${FUZZ_SECONDS:-120}"
scratch="$CARGO_TARGET_DIR/fuzz-scratch"
bin_dir="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"
all=(normalize raw_object raw_tamper config)

# -max_len per target: envelope lines (the small normaliser's oversize bound is 200 bytes, generated
# lines are ~600), raw objects (the references are < 1 KiB), mutation scripts, TOML documents.
max_len() {
    case "$1" in
        normalize) echo 4096 ;;
        raw_object) echo 8192 ;;
        raw_tamper) echo 256 ;;
        config) echo 4096 ;;
    esac
}

# The libFuzzer dictionary of a target, if any.
dict() {
    case "$1" in
        normalize) echo "-dict=$here/json.dict" ;;
        config) echo "-dict=$here/toml.dict" ;;
    esac
}

cargo_fuzz() {
    (cd "$root" && nice -n 19 cargo +nightly fuzz "$1" --fuzz-dir tasks/fuzz "${@:2}")
}

if [[ "${1:-}" == seeds ]]; then
    (cd "$here" && nice -n 19 cargo +nightly run --release --bin make_seeds)
    exit
fi

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${all[@]}")
for t in "${targets[@]}"; do
    [[ " ${all[*]} " == *" $t "* ]] || { echo "unknown target $t (one of: ${all[*]} seeds)" >&2; exit 2; }
done

cargo_fuzz build

# "file:line: message" of the panic an input causes, numbers and the input left out: what tells
# distinct crashes of a run apart.
signature() {
    "$bin_dir/$1" "$2" 2>&1 | grep -A1 -m1 'panicked at' | tr '\n' ' ' |
        sed -E 's/thread .* panicked at //; s/, for .*//; s/[0-9]+/N/g' | cut -c1-120 || true
}

kept=()
for t in "${targets[@]}"; do
    corpus="$scratch/corpus/$t"
    artifacts="$scratch/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    rm -f "$artifacts"/*
    find "$here/corpus-regressions/$t" -maxdepth 1 -type f ! -name 'bug-*' -exec cp {} "$corpus/" \;
    mode=()
    [[ "${FUZZ_KEEP_GOING:-0}" == 1 ]] && mode=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
    echo "== $t: ${seconds}s, -max_len=$(max_len "$t")"
    d="$(dict "$t")"
    [[ -n "$d" ]] && mode+=("$d")
    cargo_fuzz run "$t" "$corpus" -- "${mode[@]}" \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len="$(max_len "$t")" -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" >"$scratch/$t.log" 2>&1 || true
    # Executions: the DONE line (or the last status line of fork mode) and the final stats.
    grep -E '^#[0-9]+' "$scratch/$t.log" | tail -1 || true
    grep -E '^stat::number_of_executed_units|^SUMMARY' "$scratch/$t.log" || true
    # Each distinct crash (crash-, timeout-, oom-, leak- artifacts): minimised and kept.
    seen=()
    for a in "$artifacts"/*; do
        [[ -f "$a" ]] || continue
        sig="$(signature "$t" "$a")"
        [[ -n "$sig" ]] || sig="$(basename "$a" | cut -d- -f1)"
        [[ " ${seen[*]-} " == *" $sig "* ]] && continue
        seen+=("$sig")
        name="$(basename "$a")"
        rm -rf "$here/artifacts/$t"
        cargo_fuzz tmin "$t" "$a" --runs 2000 >"$scratch/$t.tmin.log" 2>&1 || true
        min="$(ls -t "$here/artifacts/$t"/minimized-from-* 2>/dev/null | head -1 || true)"
        dest="$here/corpus-regressions/$t/bug-${name#*-}"
        cp "${min:-$a}" "$dest"
        rm -rf "$here/artifacts/$t"
        kept+=("$t/$(basename "$dest"): $sig")
        echo "!! $t: $sig"
        echo "   kept as $dest"
        echo "   replay: (cd $root && cargo +nightly fuzz run --fuzz-dir tasks/fuzz $t $dest)"
        echo "   or, on stable: cargo test -p bitacora-core --test fuzz_regressions $t"
    done
done

if [[ ${#kept[@]} -gt 0 ]]; then
    echo "crashes kept in tasks/fuzz/corpus-regressions:"
    printf '  %s\n' "${kept[@]}"
    exit 1
fi
echo "no crash"
