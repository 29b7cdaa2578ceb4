#!/usr/bin/env bash
# make test-sanitize, after the build: the unit tests and the whole integration suite
# (t/) on the ASan + UBSan build in $1 (default build-sanitize). nginx stays the system
# binary and gets gcc's ASan runtime preloaded; apikeyd and the unit tests are linked
# with it. Every sanitizer report goes to a file in $1/reports; the run fails if any
# exists at the end (they are printed), or if a test fails.
#
# Leak detection is off for nginx only (it frees its pools by exiting, by design) and on
# for apikeyd and the unit tests.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-sanitize}
reports=$PWD/$build/reports
rm -rf "$reports"
mkdir -p "$reports"
chmod 1777 "$reports"   # nginx workers run as nobody and write their own reports

# The build really is instrumented (a stale or plain build would pass silently).
for bin in "$build/apikeyd" "$build/unit_tests" "$build/ngx_http_apikey_module.so"; do
    # Into a variable first: `nm | grep -q` fails under pipefail when grep quits early
    # (nm gets SIGPIPE on a large binary).
    syms=$(nm -D "$bin" 2>/dev/null || true)
    grep -q '__asan_report_load' <<<"$syms" && grep -q '__ubsan_handle' <<<"$syms" \
        || { echo "$bin is not built with ASan + UBSan" >&2; exit 1; }
done
asan_lib=$(g++ -print-file-name=libasan.so)
[ -f "$asan_lib" ] || { echo "libasan.so not found (g++ -print-file-name=libasan.so)" >&2; exit 1; }

common=abort_on_error=0:halt_on_error=1:print_summary=1:detect_stack_use_after_return=1
ubsan=halt_on_error=1:print_stacktrace=1:log_path=$reports/ubsan
export ASAN_OPTIONS="$common:detect_leaks=1:log_path=$reports/asan"
export UBSAN_OPTIONS="$ubsan"

status=0
start=$(date +%s)
echo "== unit tests ($build/unit_tests)"
"$build/unit_tests" || status=1
echo "== unit tests: $(( $(date +%s) - start )) s"

# The harness (t/lib/ApiKeyTest.pm) runs the same t/ files against this build.
export APIKEY_BUILD=$build
# Test files after the build dir (default: all of t/), e.g. to rerun one under ASan.
tests=("${@:2}")
[ ${#tests[@]} -gt 0 ] || tests=(t/)
export APIKEY_TIME_SCALE=${APIKEY_TIME_SCALE:-3}
export APIKEY_DAEMON_ENV="ASAN_OPTIONS=$common:detect_leaks=1:log_path=$reports/asan-apikeyd UBSAN_OPTIONS=$ubsan-apikeyd"
export APIKEY_NGINX_ENV="LD_PRELOAD=$asan_lib ASAN_OPTIONS=$common:detect_leaks=0:log_path=$reports/asan-nginx UBSAN_OPTIONS=$ubsan-nginx"
start=$(date +%s)
echo "== integration tests on $build (time scale $APIKEY_TIME_SCALE)"
PROVE_LOG=$build/prove.log bash scripts/prove.sh -I t/lib "${tests[@]}" || status=1
echo "== integration tests: $(( $(date +%s) - start )) s"

shopt -s nullglob
found=("$reports"/*)
if [ ${#found[@]} -gt 0 ]; then
    echo "== ${#found[@]} sanitizer report(s) in $reports:"
    for f in "${found[@]}"; do
        echo "---- $f"
        cat "$f"
    done
    status=1
else
    echo "== no sanitizer reports"
fi
exit $status
