#!/usr/bin/env bash
# make bench: generates a snapshot of BENCH_KEYS keys, runs the decision microbenchmark,
# then wrk against bare nginx (A) and nginx + apikey module (B, also with rate limiting and
# usage reports), interleaved A B A B; nginx start time, worker memory, revoke -> 401 at
# full size, key creates and revokes through a real apikeyd; prints one table
# (bench/report.pl). Everything runs on loopback from a temporary directory and is stopped
# at the end. See docs/BENCHMARKS.md for what each figure means.
#
# Knobs (environment):
#   BENCH_KEYS=1000000      keys in the snapshot
#   BENCH_SAMPLE=100000     valid keys wrk and the microbenchmark draw from (spread over all)
#   BENCH_PAIRS=9           A/B pairs per scenario (with 2 workers one pair's ratio
#                           swings by ±0.1 with scheduling: 9 pairs for a steadier median)
#   BENCH_DURATION=4        seconds per wrk run
#   BENCH_WARMUPS=2         warm-up rounds per worker setting (the first is reported as
#                           "cold": fresh workers fault the snapshot's pages in)
#   BENCH_C1_PAIRS=5        pairs of the one-connection latency scenario (a median of
#                           5: one run's p99 is moved by a single scheduling stall)
#   BENCH_CONNECTIONS=32    wrk connections for the throughput scenarios
#   BENCH_RATE_LIMIT=100/1m the rate-limiting scenario's limit: one no key of the sample
#                           reaches (a smaller sample needs a larger one)
#   BENCH_START_REPS=5      nginx starts per variant for the start-time figure
#   BENCH_MICRO_REPS=5      Google Benchmark repetitions
#   BENCH_MICRO_MIN_TIME=0.5  Google Benchmark's minimum seconds per repetition
#   BENCH_WORKERS="1 2 2p 1s"  worker_processes settings to run: N; Np for N workers
#                           pinned one per core (worker_cpu_affinity auto); 1s for one
#                           worker and wrk's one thread on the same CPU (valid keys only
#                           for Np and 1s)
#   BENCH_REVOKES=200       revokes for the revoke -> 401 figures
#   BENCH_CREATES_PER_CLIENT=250  key creates per client (8 clients) through apikeyd
#   BENCH_CP_KEYS=$BENCH_KEYS     keys imported into apikeyd's store (bulk import) before
#                           the creates and revokes through apikeyd (0: none)
#   BENCH_IMPORT_BATCH=1000000    keys per import request
#   BENCH_ONLY_CONTROL=1    skip everything but the control plane through apikeyd
#   BENCH_KEEP=1            keep the work directory (snapshot, logs, raw results)
#   BENCH_OUT=build/bench   where last-report.md and last-raw.txt are written
#   BENCH_APIKEYD=build/apikeyd   the apikeyd binary to measure (another build: an A/B)
#   NGINX=/usr/sbin/nginx
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
KEYS=${BENCH_KEYS:-1000000}
SAMPLE=${BENCH_SAMPLE:-100000}
PAIRS=${BENCH_PAIRS:-9}
DUR=${BENCH_DURATION:-4}
CONNS=${BENCH_CONNECTIONS:-32}
RATE_LIMIT=${BENCH_RATE_LIMIT:-100/1m}
START_REPS=${BENCH_START_REPS:-5}
MICRO_REPS=${BENCH_MICRO_REPS:-5}
WORKER_SETTINGS=${BENCH_WORKERS:-"1 2 2p 1s"}
NGINX=${NGINX:-/usr/sbin/nginx}
MODULE=$ROOT/build/ngx_http_apikey_module.so
GEN=$ROOT/build/bench/gen_snapshot
MICRO=$ROOT/build/bench/decision_bench
PROBE=$ROOT/build/bench/revoke_probe
CONTROL=$ROOT/build/bench/control_probe
APIKEYD=${BENCH_APIKEYD:-$ROOT/build/apikeyd}
CREATES_PER_CLIENT=${BENCH_CREATES_PER_CLIENT:-250}
CP_KEYS=${BENCH_CP_KEYS:-$KEYS}
IMPORT_BATCH=${BENCH_IMPORT_BATCH:-1000000}
ONLY_CONTROL=${BENCH_ONLY_CONTROL:-0}
OUT=${BENCH_OUT:-$ROOT/build/bench}
REVOKES=${BENCH_REVOKES:-200}
WARMUPS=${BENCH_WARMUPS:-2}
C1_PAIRS=${BENCH_C1_PAIRS:-5}
URL_PATH=/api/v1/acme-corp/sales/Customer
NCPU=$(nproc)
for wp in $WORKER_SETTINGS; do
    [[ $wp =~ ^[1-9][0-9]*p?$|^1s$ ]] ||
        { echo "bench: BENCH_WORKERS: '$wp' is not N, Np or 1s" >&2; exit 1; }
done

for f in "$MODULE" "$GEN" "$MICRO" "$PROBE" "$CONTROL" "$APIKEYD"; do
    [ -x "$f" ] || [ -f "$f" ] || { echo "bench: $f missing: run 'make bench'" >&2; exit 1; }
done
for t in wrk curl perl mdb_stat "$NGINX"; do
    command -v "$t" >/dev/null || { echo "bench: $t not found (make deps)" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/apikey-bench.XXXXXX)
chmod 755 "$WORK"  # nginx workers (nobody) must reach the snapshot
RAW=$WORK/raw.txt
echo "load_before $(cut -d' ' -f1-3 /proc/loadavg)" >"$RAW"
echo "conf conns=$CONNS dur=$DUR pairs=$PAIRS keys=$KEYS sample=$SAMPLE" >>"$RAW"
RUNNING=()  # pid files of nginx instances still up
APIKEYD_PID=""
SINK_PID=""

stop_nginx() {  # pidfile
    local pidfile=$1 pid i
    [ -s "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    kill -QUIT "$pid" 2>/dev/null || return 0
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local p
    for p in "${RUNNING[@]}"; do stop_nginx "$p"; done
    if [ -n "$SINK_PID" ]; then kill -TERM "$SINK_PID" 2>/dev/null || true; fi
    if [ -n "$APIKEYD_PID" ]; then kill -TERM "$APIKEYD_PID" 2>/dev/null || true; wait "$APIKEYD_PID" 2>/dev/null || true; fi
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        echo "bench: work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
free_port() {
    perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1",
        LocalPort => 0, Listen => 1, ReuseAddr => 1) or die; print $s->sockport'
}

# Workers run as nobody:nogroup when nginx starts as root, as in production; the
# snapshot is then group-readable by nogroup (apikeyd's snapshot_group).
if [ "$(id -u)" = 0 ]; then
    USER_LINE="user nobody nogroup;"
    GROUP_ARGS=(--group nogroup)
else
    USER_LINE=""
    GROUP_ARGS=()
fi

if [ "$ONLY_CONTROL" != 1 ]; then
# ---- data ---------------------------------------------------------------------------
SNAP=$WORK/snapshot
VALID=$WORK/valid_keys.txt
UNKNOWN=$WORK/unknown_keys.txt
log "generating a snapshot with $KEYS keys"
gen_out=$("$GEN" --dir "$SNAP" --keys "$KEYS" --valid-out "$VALID" --valid-sample "$SAMPLE" \
    --unknown-out "$UNKNOWN" --unknown-count 10000 "${GROUP_ARGS[@]}")
echo "$gen_out" >&2
chmod 644 "$VALID" "$UNKNOWN"
gen_rate=$(echo "$gen_out" | sed -n 's/.*(\([0-9]*\) keys\/s).*/\1/p')
data_bytes=$(stat -c %s "$SNAP/data.mdb")
envinfo=$(mdb_stat -ef "$SNAP")
page_size=$(echo "$envinfo" | awk '/Page size:/ {print $3}')
pages_used=$(echo "$envinfo" | awk '/Number of pages used:/ {print $5}')
pages_free=$(echo "$envinfo" | awk '/Free pages:/ {print $3}')
echo "size keys=$KEYS data_bytes=$data_bytes page_size=$page_size pages_used=$pages_used pages_free=$pages_free gen_keys_per_s=$gen_rate" >>"$RAW"

# ---- decision microbenchmark --------------------------------------------------------
PIN_LOAD=()    # the load generator's CPU (and the microbenchmark's)
PIN_NGX=""     # worker_cpu_affinity for worker_processes 1
PIN_SHARED=()  # the load generator on the worker's CPU (the 1s setting)
if [ "$NCPU" -ge 2 ]; then
    PIN_LOAD=(taskset -c 0)
    PIN_NGX="worker_cpu_affinity 10;"  # binary mask: CPU 1
    PIN_SHARED=(taskset -c 1)
fi
log "decision microbenchmark ($MICRO_REPS repetitions)"
"${PIN_LOAD[@]}" "$MICRO" --snapshot "$SNAP" --valid "$VALID" --unknown "$UNKNOWN" \
    --benchmark_repetitions="$MICRO_REPS" --benchmark_report_aggregates_only=true \
    --benchmark_min_time="${BENCH_MICRO_MIN_TIME:-0.5}" \
    --benchmark_format=json >"$WORK/micro.json" 2>"$WORK/micro.err" || {
    cat "$WORK/micro.err" >&2
    exit 1
}
perl -MJSON::PP -e '
    local $/; my $j = decode_json(<STDIN>); my (%med, %cv);
    for my $b (@{$j->{benchmarks}}) {
        die "microbenchmark error in $b->{run_name}: $b->{error_message}\n" if $b->{error_occurred};
        my $unit = {ns => 1, us => 1e3, ms => 1e6}->{$b->{time_unit}} // 1;
        # One repetition has no aggregates (BENCH_MICRO_REPS=1): its run is the median.
        my $agg = $b->{aggregate_name} // ($b->{run_type} eq "iteration" ? "median" : "");
        $med{$b->{run_name}} = $b->{real_time} * $unit if $agg eq "median";
        $cv{$b->{run_name}} = $b->{real_time} if $b->{aggregate_name} eq "cv";
    }
    printf "micro %s %.1f %.3f\n", $_, $med{$_}, $cv{$_} // 0 for sort keys %med;
' <"$WORK/micro.json" >>"$RAW"

fi  # ONLY_CONTROL

# ---- nginx --------------------------------------------------------------------------
# write_conf DIR VARIANT WORKERS PORT AFFINITY_LINE [SNAPSHOT]: one prefix per instance.
# VARIANT: bare (no module loaded), module (apikey on), full (module + rate limiting +
# usage reports for last_used_at). Every variant listens with reuseport: each worker has
# its own listening socket and the kernel spreads wrk's connections over them evenly.
# Without it the workers race for each accept, and how 32 connections end up split
# (16/16 to 24/8) changed a 2-worker run's throughput by more than the module costs
# (docs/BENCHMARKS.md).
write_conf() {
    local dir=$1 variant=$2 workers=$3 port=$4 affinity=$5 snapshot=${6:-$SNAP} load="" snap="" check=""
    mkdir -p "$dir/logs" "$dir/tmp"
    if [ "$variant" = module ] || [ "$variant" = full ]; then
        load="load_module $MODULE;"
        snap="apikey_snapshot $snapshot;"
        check='apikey on; apikey_workspace $org/$ws; apikey_entity $entity;'
    fi
    if [ "$variant" = full ]; then
        # Rate limiting and last_used_at reports on, with a limit no key reaches (100 a
        # minute against about 1 request a second for each of the sample's 100,000 keys):
        # the cost of keeping the state, not of refusing. Each request leaves its key a
        # state for 0.6 s, ~70,000 at once, as a real limit does (until 2026-12-07 the
        # limit was 100,000,000/1s, whose states vanished within a millisecond). The zone
        # is the size README's rule gives for that (4 times the states: ~9 MB) and
        # conf.example ships; a larger one only spreads the states over more pages.
        snap="$snap
    apikey_rate_limit_zone zone=bench:10m;
    apikey_usage_report 127.0.0.1:$USAGE_PORT interval=1s keys=131072;"
        check="$check apikey_rate_limit zone=bench default=$RATE_LIMIT;"
    fi
    # empty_gif is a content handler: the access phase (the module) runs before it.
    # (`return` would answer in the rewrite phase, before any access check.)
    cat >"$dir/nginx.conf" <<EOF
$load
$USER_LINE
worker_processes $workers;
$affinity
error_log logs/error.log notice;
pid logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    $snap
    server {
        listen 127.0.0.1:$port reuseport;
        location ~ ^/api/v1/(?<org>[^/]+)/(?<ws>[^/]+)/(?<entity>[^/?]+) {
            $check
            empty_gif;
        }
    }
}
EOF
}

nginx_cmd() { echo "$NGINX" -p "$1/" -e logs/error.log -c nginx.conf; }

start_nginx() {  # DIR PORT
    local dir=$1 port=$2 i
    $(nginx_cmd "$dir") || { cat "$dir/logs/error.log" >&2; exit 1; }
    RUNNING+=("$dir/logs/nginx.pid")
    for i in $(seq 200); do
        curl -s -o /dev/null "http://127.0.0.1:$port/" && return 0
        sleep 0.05
    done
    echo "bench: nginx in $dir did not come up" >&2
    exit 1
}

status_of() {  # PORT KEY|-
    local auth=()
    [ "$2" != - ] && auth=(-H "Authorization: Bearer $2")
    curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "http://127.0.0.1:$1$URL_PATH"
}

expect_status() {  # PORT KEY WANT WHAT
    local got
    got=$(status_of "$1" "$2")
    [ "$got" = "$3" ] || { echo "bench: sanity check failed: $4: got $got, want $3" >&2; exit 1; }
}

worker_cpu_ns() {  # DIR -> CPU time of all its workers so far (ns, /proc/PID/schedstat)
    local master w total=0
    master=$(cat "$1/logs/nginx.pid")
    for w in $(cat "/proc/$master/task/$master/children"); do
        total=$((total + $(cut -d' ' -f1 "/proc/$w/schedstat")))
    done
    echo "$total"
}

# run_wrk DIR PORT KEYFILE THREADS CONNS DURATION PIN (0: anywhere, 1: PIN_LOAD, s: PIN_SHARED)
#   -> "rps p50_us p99_us non2xx errors requests worker_cpu_ns_per_request"
run_wrk() {
    local dir=$1 port=$2 keys=$3 threads=$4 conns=$5 dur=$6 pin=$7 out pincmd=() c0 c1
    [ "$pin" = 1 ] && pincmd=("${PIN_LOAD[@]}")
    [ "$pin" = s ] && pincmd=("${PIN_SHARED[@]}")
    c0=$(worker_cpu_ns "$dir")
    out=$("${pincmd[@]}" wrk -t"$threads" -c"$conns" -d"${dur}s" --latency \
        -s "$ROOT/bench/keys.lua" "http://127.0.0.1:$port$URL_PATH" -- "$keys")
    c1=$(worker_cpu_ns "$dir")
    echo "$out" >>"$WORK/wrk.log"
    echo "$out" | awk -v cpu=$((c1 - c0)) '/^WRKRESULT/ {
        printf "%s %s %s %s %s %s %.0f\n", $2, $3, $4, $5, $6, $7, ($7 > 0 ? cpu / $7 : 0) }'
}

# scenario NAME WORKERS KEYFILE THREADS CONNS PIN B-VARIANT [PAIRS]: PAIRS x (A = bare, B).
scenario() {
    local name=$1 workers=$2 keys=$3 threads=$4 conns=$5 pin=$6 b=$7 pairs=${8:-$PAIRS} pair r
    log "scenario $name, worker_processes $workers: $pairs pairs of ${DUR}s runs, -t$threads -c$conns"
    for pair in $(seq "$pairs"); do
        r=$(run_wrk "$WORK/bare-$workers" "${PORT[bare]}" "$keys" "$threads" "$conns" "$DUR" "$pin")
        echo "wrk $name $workers $pair bare $r" >>"$RAW"
        r=$(run_wrk "$WORK/$b-$workers" "${PORT[$b]}" "$keys" "$threads" "$conns" "$DUR" "$pin")
        echo "wrk $name $workers $pair module $r" >>"$RAW"
    done
}

# record_rss VARIANT WORKERS DIR: VmRSS, RssAnon, RssFile, Pss and FilePmdMapped (file
# pages mapped by 2 MB entries: the snapshot in huge pages) of each worker (KiB).
record_rss() {
    local master w pss pmd
    master=$(cat "$3/logs/nginx.pid")
    for w in $(cat "/proc/$master/task/$master/children"); do
        pss=$(awk '/^Pss:/ {print $2}' "/proc/$w/smaps_rollup" 2>/dev/null || echo 0)
        pmd=$(awk '/^FilePmdMapped:/ {print $2}' "/proc/$w/smaps_rollup" 2>/dev/null || echo 0)
        awk -v v="$1" -v wp="$2" -v pid="$w" -v pss="${pss:-0}" -v pmd="${pmd:-0}" '
            /^VmRSS:/ {rss=$2} /^RssAnon:/ {anon=$2} /^RssFile:/ {file=$2} /^RssShmem:/ {shm=$2}
            END {print "rss", v, wp, pid, rss, anon, file, shm, pss, pmd}' "/proc/$w/status" >>"$RAW"
    done
}

if [ "$ONLY_CONTROL" != 1 ]; then
first_key=$(head -1 "$VALID")
# The usage reports' receiver (apikeyd's usage_listen in production).
perl "$ROOT/bench/udp_sink.pl" "$WORK/usage.port" >"$WORK/usage.out" &
SINK_PID=$!
for i in $(seq 100); do [ -s "$WORK/usage.port" ] && break; sleep 0.05; done
USAGE_PORT=$(cat "$WORK/usage.port")

declare -A PORT
VARIANTS=(bare module full)
for wp in $WORKER_SETTINGS; do
    workers=${wp%[ps]}; affinity=""; threads=2; pin=0; variants=("${VARIANTS[@]}")
    if [ "$wp" = 1 ] && [ -n "$PIN_NGX" ]; then affinity=$PIN_NGX; threads=1; pin=1; fi
    # The same module costs a different share of the machine depending on where the
    # scheduler puts wrk beside the workers. Two more arrangements of the same cores are
    # reported beside the default ones, for valid keys only (no cold run, no unknown keys,
    # no rate limiting). Np: each worker on a core of its own, wrk's threads left to the
    # scheduler. 1s: one worker and wrk's one thread on the same CPU, which is then never
    # idle and never wakes a thread on another: the ratio is that of everything the
    # machine spends a request (wrk, kernel, worker), without the scheduling.
    valid_only=0
    if [ "$wp" != "$workers" ]; then
        valid_only=1; variants=(bare module)
        case $wp in
        *p) affinity="worker_cpu_affinity auto;" ;;
        1s) affinity=$PIN_NGX; threads=1; pin=s ;;
        esac
    fi
    for v in "${variants[@]}"; do
        PORT[$v]=$(free_port)
        write_conf "$WORK/$v-$wp" "$v" "$workers" "${PORT[$v]}" "$affinity"
        start_nginx "$WORK/$v-$wp" "${PORT[$v]}"
    done

    expect_status "${PORT[bare]}" "$first_key" 200 "bare nginx"
    for v in "${variants[@]}"; do
        [ "$v" = bare ] && continue
        expect_status "${PORT[$v]}" "$first_key" 200 "$v, valid key"
        expect_status "${PORT[$v]}" "$(head -1 "$UNKNOWN")" 401 "$v, unknown key"
        expect_status "${PORT[$v]}" - 401 "$v, no key"
    done

    # Fresh workers have none of the snapshot's pages mapped yet: every first touch of a
    # page is a page fault. The first warm-up run of each is recorded as the "cold" scenario.
    log "warm-up, worker_processes $wp: $WARMUPS rounds of ${DUR}s runs"
    for i in $(seq "$WARMUPS"); do
        for v in "${variants[@]}"; do
            r=$(run_wrk "$WORK/$v-$wp" "${PORT[$v]}" "$VALID" "$threads" "$CONNS" "$DUR" "$pin")
            [ "$i" = 1 ] && [ "$v" != full ] && [ "$valid_only" = 0 ] &&
                echo "wrk cold $wp 1 $v $r" >>"$RAW"
        done
    done

    scenario valid "$wp" "$VALID" "$threads" "$CONNS" "$pin" module
    if [ "$valid_only" = 0 ]; then
        scenario unknown "$wp" "$UNKNOWN" "$threads" "$CONNS" "$pin" module
        scenario valid_rl "$wp" "$VALID" "$threads" "$CONNS" "$pin" full
    fi
    if [ "$wp" = 1 ]; then scenario valid_c1 "$wp" "$VALID" 1 1 "$pin" module "$C1_PAIRS"; fi

    for v in "${variants[@]}"; do
        record_rss "$v" "$wp" "$WORK/$v-$wp"
        stop_nginx "$WORK/$v-$wp/logs/nginx.pid"
    done
    RUNNING=()
done
kill -TERM "$SINK_PID"
wait "$SINK_PID" || true
SINK_PID=""
cat "$WORK/usage.out" >>"$RAW"

# ---- start time: until the first 200 (with a valid key for the module) --------------
log "nginx start time, $START_REPS starts per variant"
PORT_START=$(free_port)
write_conf "$WORK/start-bare" bare 1 "$PORT_START" ""
write_conf "$WORK/start-module" module 1 "$PORT_START" ""
for rep in $(seq "$START_REPS"); do
    for v in bare module; do
        dir=$WORK/start-$v
        RUNNING=("$dir/logs/nginx.pid")
        # shellcheck disable=SC2046
        ms=$(perl "$ROOT/bench/first_response.pl" "$PORT_START" "$URL_PATH" "$first_key" 200 10 \
            -- $(nginx_cmd "$dir"))
        echo "start $v $rep $ms" >>"$RAW"
        stop_nginx "$dir/logs/nginx.pid"
        RUNNING=()
    done
done

# ---- revoke -> 401, data-plane half, at the full snapshot size ------------------------
# Last: the revoked keys would turn up as 401s in the valid-key runs.
log "revoke -> 401: $REVOKES revokes published into the $KEYS-key snapshot"
dir=$WORK/start-module
RUNNING=("$dir/logs/nginx.pid")
start_nginx "$dir" "$PORT_START"
"$PROBE" --snapshot "$SNAP" --keys "$VALID" --count "$REVOKES" --port "$PORT_START" \
    --path "$URL_PATH" "${GROUP_ARGS[@]}" | awk '/^REVOKE/ {print "revoke", $2, $3, $4}' >>"$RAW"
stop_nginx "$dir/logs/nginx.pid"
RUNNING=()

fi  # ONLY_CONTROL

# ---- control plane through the real apikeyd, its store filled by the bulk import ------
log "apikeyd: import of $CP_KEYS keys, key creates with 8 clients, then $REVOKES revokes through the admin API -> 401"
CP=$WORK/apikeyd
mkdir -p "$CP"
(umask 077 && head -c 32 /dev/urandom | base64 | tr -d '/+=\n' >"$CP/token")
ADMIN_PORT=$(free_port)
{
    echo "listen: 127.0.0.1:$ADMIN_PORT"
    echo "data_dir: $CP/data"
    echo "snapshot_path: $CP/snapshot"
    # Address space, not disk (sparse): a million keys take about 1 GB of store.
    echo "store_map_size_mb: 8192"
    echo "max_import_body_bytes: 4294967296"
    echo "max_import_items: $(( IMPORT_BATCH > 1000000 ? IMPORT_BATCH : 1000000 ))"
    [ "$(id -u)" = 0 ] && echo "snapshot_group: nogroup"
    echo "admin_tokens:"
    echo "  - name: bench"
    echo "    token_sha256: $("$APIKEYD" hash-token <"$CP/token")"
} >"$CP/apikeyd.yaml"
"$APIKEYD" --config "$CP/apikeyd.yaml" 2>"$CP/apikeyd.log" &
APIKEYD_PID=$!
for i in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$ADMIN_PORT/" && break
    kill -0 "$APIKEYD_PID" 2>/dev/null || { cat "$CP/apikeyd.log" >&2; exit 1; }
    sleep 0.1
done
PORT_CP=$(free_port)
write_conf "$WORK/cp-module" module 1 "$PORT_CP" "" "$CP/snapshot"
RUNNING=("$WORK/cp-module/logs/nginx.pid")
start_nginx "$WORK/cp-module" "$PORT_CP"
"$CONTROL" --admin-port "$ADMIN_PORT" --token-file "$CP/token" --nginx-port "$PORT_CP" \
    --clients 8 --per-client "$CREATES_PER_CLIENT" --revokes "$REVOKES" \
    --import "$CP_KEYS" --import-batch "$IMPORT_BATCH" |
    awk '/^IMPORT/ {print "import", $2, $3, $4, $5, $6}
         /^CREATE/ {print "create", $2, $3, $4, $5, $6} /^REVOKE_E2E/ {print "revoke_e2e", $2, $3, $4}' >>"$RAW"
cp_env=$(mdb_stat -ef "$CP/snapshot")
echo "cp_size snapshot_bytes=$(stat -c %s "$CP/snapshot/data.mdb")" \
    "snapshot_pages_used=$(echo "$cp_env" | awk '/Number of pages used:/ {print $5}')" \
    "snapshot_pages_free=$(echo "$cp_env" | awk '/Free pages:/ {print $3}')" \
    "store_bytes=$(stat -c %s "$CP/data/store/data.mdb")" \
    "page_size=$(echo "$cp_env" | awk '/Page size:/ {print $3}')" >>"$RAW"
grep -o 'keys imported count=[0-9]*.*' "$CP/apikeyd.log" >&2 || true
stop_nginx "$WORK/cp-module/logs/nginx.pid"
RUNNING=()
kill -TERM "$APIKEYD_PID"
wait "$APIKEYD_PID" || true
APIKEYD_PID=""

echo "load_after $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RAW"
mkdir -p "$OUT"
cp "$RAW" "$OUT/last-raw.txt"
{
    echo "# make bench, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "# $NCPU CPUs ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p')), nginx $("$NGINX" -v 2>&1 | sed 's/.*\///')," \
        "wrk -d${DUR}s -c$CONNS, $PAIRS pairs, $KEYS keys, sample $SAMPLE"
    perl "$ROOT/bench/report.pl" "$RAW"
} | tee "$OUT/last-report.md"
