#!/usr/bin/env bash
# The runtime's overhead benchmark: the same trivial unary call (Echo with text "hello") served
# by the bare C-core baseline (bench-bare-echo) and by the runtime's test service (echo-svc),
# both with 2 worker threads, loaded by h2load over one connection with 64 concurrent streams.
# Runs alternate bare/runtime in one session so that both see the same machine state.
# Prints QPS, p50/p99 latency and the server's CPU time per call for each run, the medians, and
# the runtime's overhead (QPS ratio and extra CPU microseconds per call). See bench/README.md.
#
# Usage: bench/h2load-echo.sh [BUILD_DIR]    (default: $BUILD_DIR, else <repo>/build)
# Environment: RUNS (3), N requests per run (200000), WARMUP requests (20000), STREAMS (64).
# Builds nothing: expects BUILD_DIR/bin/echo-svc and BUILD_DIR/bin/bench-bare-echo.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-${BUILD_DIR:-$repo/build}}
runs=${RUNS:-3}
n=${N:-200000}
warmup=${WARMUP:-20000}
streams=${STREAMS:-64}
threads=2
bare_bin=$build/bin/bench-bare-echo
runtime_bin=$build/bin/echo-svc
path=/tally.test.v1.Echo/Echo

die() {
    echo "h2load-echo: $*" >&2
    exit 1
}

for tool in h2load nghttp; do
    command -v $tool >/dev/null || die "$tool not found (apt-get install nghttp2-client)"
done
for bin in "$bare_bin" "$runtime_bin"; do
    [[ -x $bin ]] || die "$bin not found: build first (cmake --build $build)"
done
[[ $runs =~ ^[1-9][0-9]*$ && $n =~ ^[1-9][0-9]*$ && $warmup =~ ^[0-9]+$ ]] ||
    die "RUNS, N and WARMUP must be positive integers"
clk_tck=$(getconf CLK_TCK)

work=$(mktemp -d)
server_pid=
cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The request body: a gRPC frame (flag 0, 4-byte big-endian length 7) around the EchoRequest
# {text: "hello"} (field 1, length 5).
printf '\x00\x00\x00\x00\x07\x0a\x05hello' >"$work/body"

# free_port: a loopback TCP port that nothing listens on now. (The runtime logs its bound port
# only at info level, and the benchmark runs it at warn.)
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# server_start bare|runtime: starts the server on free loopback ports, sets server_pid, port
# and (runtime only) http_port, and waits up to 10 s until it accepts connections.
server_start() {
    local kind=$1 log=$work/$1.log
    port=$(free_port)
    http_port=
    if [[ $kind == bare ]]; then
        "$bare_bin" "$port" $threads >"$log" 2>&1 &
    else
        http_port=$(free_port)
        while [[ $http_port == "$port" ]]; do
            http_port=$(free_port)
        done
        TALLY_GRPC_LISTEN=127.0.0.1:$port TALLY_HTTP_LISTEN=127.0.0.1:$http_port \
            TALLY_WORKERS=$threads TALLY_LOG_LEVEL=warn "$runtime_bin" >"$log" 2>&1 &
    fi
    server_pid=$!
    for _ in $(seq 100); do
        kill -0 "$server_pid" 2>/dev/null || die "$kind server exited at start: $(cat "$log")"
        if (: <>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            [[ -z $http_port ]] && return 0
            curl -fs --max-time 1 -o /dev/null "http://127.0.0.1:$http_port/healthz" && return 0
        fi
        sleep 0.1
    done
    die "$kind server did not listen on port $port${http_port:+ (http $http_port)} within 10 s: $(cat "$log")"
}

# server_stop: SIGTERM, then the server must exit 0 within 15 s.
server_stop() {
    local rc=0
    kill -TERM "$server_pid"
    for _ in $(seq 150); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid"
        die "server $server_pid did not exit within 15 s of SIGTERM"
    fi
    wait "$server_pid" || rc=$?
    server_pid=
    ((rc == 0)) || die "server exited $rc after SIGTERM"
}

# cpu_ticks: the server's user+system CPU time in clock ticks (fields 14 and 15 of stat,
# counted after the parenthesised command name).
cpu_ticks() {
    sed 's/^.*) //' "/proc/$server_pid/stat" | awk '{ print $12 + $13 }'
}

# h2load_run COUNT OUT [LOGFILE]: one load run; fails unless every request succeeded.
h2load_run() {
    local count=$1 out=$2
    h2load -c 1 -m "$streams" -n "$count" -d "$work/body" \
        -H 'content-type: application/grpc' -H 'te: trailers' ${3:+--log-file="$3"} \
        "http://127.0.0.1:$port$path" >"$out" 2>&1 || die "h2load failed: $(cat "$out")"
    grep -qE "^requests: $count total, $count started, $count done, $count succeeded, 0 failed" \
        "$out" || die "h2load: not every request succeeded: $(grep -E '^(requests|status)' "$out")"
    grep -qE "^status codes: $count 2xx" "$out" || die "h2load: non-2xx responses"
}

# grpc_status_check: one call with nghttp; the trailers must carry grpc-status 0 and the reply
# must contain the text.
grpc_status_check() {
    local out=$work/nghttp.out
    nghttp -v -d "$work/body" -H 'content-type: application/grpc' -H 'te: trailers' \
        "http://127.0.0.1:$port$path" >"$out" 2>&1 || die "nghttp failed: $(cat -v "$out")"
    grep -aq 'grpc-status: 0' "$out" || die "sample call: no grpc-status 0: $(cat -v "$out")"
    grep -aq hello "$out" || die "sample call: reply lacks the text"
}

# echo_handled CODE: the runtime's grpc_server_handled_total for Echo/Echo with grpc_code CODE
# ("OK", or "!OK" for the sum of every other code), or empty when /metrics cannot be read.
echo_handled() {
    curl -fsS --max-time 5 "http://127.0.0.1:$http_port/metrics" 2>/dev/null |
        awk -v want="$1" '
            /^grpc_server_handled_total\{/ && /grpc_method="Echo"/ && /grpc_service="tally.test.v1.Echo"/ {
                ok = /grpc_code="OK"/
                if ((want == "OK" && ok) || (want == "!OK" && !ok)) sum += $NF
                seen = 1
            }
            END { if (seen) print sum + 0 }' || true
}

# percentile P FILE: the P-th percentile (nearest rank) of the sorted numbers in FILE.
percentile() {
    awk -v p="$1" '{ v[NR] = $1 } END { r = int(p / 100 * NR + 0.999999); if (r < 1) r = 1; print v[r] }' "$2"
}

results=$work/results
: >"$results"
echo "h2load -c 1 -m $streams -n $n -d <EchoRequest{text:\"hello\"}> -H 'content-type: application/grpc' -H 'te: trailers' http://127.0.0.1:PORT$path"
echo "servers: $threads worker threads each; $runs runs each, alternating; warm-up $warmup requests"
echo
printf '%-8s %3s %10s %8s %8s %14s\n' server run QPS "p50 us" "p99 us" "CPU us/call"
for run in $(seq "$runs"); do
    for kind in bare runtime; do
        server_start "$kind"
        grpc_status_check
        ((warmup == 0)) || h2load_run "$warmup" "$work/warmup.out"
        ok_before=
        if [[ $kind == runtime ]]; then
            ok_before=$(echo_handled OK)
        fi
        rm -f "$work/latency.log" # h2load appends to it
        t0=$(cpu_ticks)
        h2load_run "$n" "$work/h2load.out" "$work/latency.log"
        t1=$(cpu_ticks)
        if [[ $kind == runtime ]]; then
            ok_after=$(echo_handled OK)
            not_ok=$(echo_handled '!OK')
            if [[ -z $ok_before || -z $ok_after ]]; then
                echo "note: could not read grpc_server_handled_total for Echo from /metrics" >&2
            elif ((ok_after - ok_before != n || not_ok != 0)); then
                die "runtime /metrics: $((ok_after - ok_before)) OK of $n, $not_ok not OK"
            fi
        fi
        server_stop

        qps=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$work/h2load.out")
        cut -f3 "$work/latency.log" | sort -n >"$work/latency.sorted"
        lines=$(wc -l <"$work/latency.sorted")
        ((lines == n)) || die "h2load log has $lines latencies, expected $n"
        p50=$(percentile 50 "$work/latency.sorted")
        p99=$(percentile 99 "$work/latency.sorted")
        cpu=$(awk -v d=$((t1 - t0)) -v hz="$clk_tck" -v n="$n" 'BEGIN { printf "%.2f", d * 1e6 / hz / n }')
        printf '%-8s %3s %10.0f %8s %8s %14s\n' "$kind" "$run" "$qps" "$p50" "$p99" "$cpu" |
            tee -a "$results"
    done
done

# median KIND COLUMN: the median over the runs of one column of the results.
median() {
    awk -v k="$1" -v c="$2" '$1 == k { print $c }' "$results" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

echo
echo "medians over $runs runs:"
printf '%-8s %10s %8s %8s %14s\n' server QPS "p50 us" "p99 us" "CPU us/call"
for kind in bare runtime; do
    printf '%-8s %10.0f %8.0f %8.0f %14.2f\n' "$kind" "$(median $kind 3)" "$(median $kind 4)" \
        "$(median $kind 5)" "$(median $kind 6)"
done
echo
awk -v bq="$(median bare 3)" -v rq="$(median runtime 3)" -v bc="$(median bare 6)" \
    -v rc="$(median runtime 6)" -v b50="$(median bare 4)" -v r50="$(median runtime 4)" \
    -v b99="$(median bare 5)" -v r99="$(median runtime 5)" 'BEGIN {
        printf "runtime/bare QPS:             %.3f\n", rq / bq
        printf "runtime/bare p50, p99:        %.3f, %.3f\n", r50 / b50, r99 / b99
        printf "runtime overhead CPU us/call: %+.2f (runtime %.2f - bare %.2f)\n", rc - bc, rc, bc
    }'
