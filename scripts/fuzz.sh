#!/usr/bin/env bash
# make fuzz / make fuzz-regress, after the build (build-fuzz/fuzz_<target>).
#   fuzz.sh run SECONDS TARGET...   each target for SECONDS from its seed corpus
#                                   fuzz/corpus/<target>/ with libFuzzer's
#                                   -seed=$FUZZ_SEED (0: a new one each run); new
#                                   inputs go to build-fuzz/corpus/<target>/, crashes
#                                   to build-fuzz/artifacts/; fails on any crash
#   fuzz.sh regress 0 TARGET...     replays every committed corpus file once
# A crash is a regression to keep: copy the artifact into fuzz/corpus/<target>/ with the
# fix, and make fuzz-regress replays it from then on.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=$1 seconds=$2 seed=${FUZZ_SEED:-1}
shift 2
build=build-fuzz
# The admin API targets keep their temporary stores here (removed at the end).
export APIKEY_FUZZ_TMP
APIKEY_FUZZ_TMP=$(mktemp -d "${TMPDIR:-/tmp}/apikey-fuzz-run-XXXXXX")
[ -w /dev/shm ] && { rmdir "$APIKEY_FUZZ_TMP"; APIKEY_FUZZ_TMP=$(mktemp -d /dev/shm/apikey-fuzz-run-XXXXXX); }
trap 'rm -rf "$APIKEY_FUZZ_TMP"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
for t in "$@"; do
    bin=$build/$t
    seeds=fuzz/corpus/$t
    mkdir -p "$seeds"
    start=$(date +%s)
    if [ "$mode" = run ]; then
        work=$build/corpus/$t
        mkdir -p "$work" "$build/artifacts"
        echo "== fuzz $t for ${seconds}s, seed $seed"
        "$bin" -seed="$seed" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
            -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" \
            "$work" "$seeds" > "$build/$t.log" 2>&1
        rc=$?
        grep -E '^(stat::number_of_executed_units|stat::new_units_added)|^#[0-9]+.*DONE' "$build/$t.log" | tr '\n' ' '
        echo
    else
        files=("$seeds"/*)
        [ -e "${files[0]}" ] || { echo "== $t: no corpus"; continue; }
        echo "== replay $t (${#files[@]} inputs)"
        "$bin" -runs=1 "${files[@]}" > "$build/$t.log" 2>&1
        rc=$?
    fi
    echo "   $t: exit $rc, $(( $(date +%s) - start )) s"
    if [ $rc -ne 0 ]; then
        failed+=("$t")
        tail -n 60 "$build/$t.log"
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz $mode FAILED: ${failed[*]} (logs: $build/<target>.log, inputs: $build/artifacts/)"
    exit 1
fi
echo "fuzz $mode: ${#@} targets, no crash"
