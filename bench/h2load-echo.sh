#!/usr/bin/env bash
# The runtime's overhead benchmark: the same trivial unary call (Echo with text "hello") served
# by the bare C-core baseline (bench-bare-echo) and by the runtime's test service (echo-svc),
# both with 2 worker threads, loaded by h2load over one connection with 64 concurrent streams;
# then by echo-svc verifying a bearer token on every call (TALLY_AUTH=jwt), HS256 (hs256) and
# ES256 (es256), which is what authentication costs per call.
# Runs alternate bare/runtime/hs256/es256 in one session so that all see the same machine state.
# Prints QPS, p50/p99 latency and the server's CPU time per call for each run, the medians, and
# the runtime's overhead (QPS ratio and extra CPU microseconds per call) and the token's. See
# bench/README.md.
#
# Usage: bench/h2load-echo.sh [BUILD_DIR]    (default: $BUILD_DIR, else <repo>/build)
# Environment: RUNS (3), N requests per run (200000), WARMUP requests (20000), STREAMS (64),
# KINDS (the servers, "bare runtime hs256 es256").
# Builds nothing: expects BUILD_DIR/bin/echo-svc, BUILD_DIR/bin/bench-bare-echo and
# BUILD_DIR/bin/tally (it mints the tokens); openssl makes the ES256 key pair.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source-path=SCRIPTDIR/.. source=scripts/lib/run.sh
source "$repo/scripts/lib/run.sh"
build=${1:-${BUILD_DIR:-$repo/build}}
runs=${RUNS:-3}
n=${N:-200000}
warmup=${WARMUP:-20000}
streams=${STREAMS:-64}
threads=2
bare_bin=$build/bin/bench-bare-echo
runtime_bin=$build/bin/echo-svc
tally_bin=$build/bin/tally
read -ra kinds <<<"${KINDS:-bare runtime hs256 es256}"
path=/tally.test.v1.Echo/Echo

for tool in h2load nghttp openssl; do
    command -v $tool >/dev/null || die "$tool not found (apt-get install nghttp2-client)"
done
need_bin "$bare_bin" "$runtime_bin" "$tally_bin"
check_count runs n
check_int warmup

run_init
run_workdir

# The request body: a gRPC frame (flag 0, 4-byte big-endian length 7) around the EchoRequest
# {text: "hello"} (field 1, length 5).
printf '\x00\x00\x00\x00\x07\x0a\x05hello' >"$work/body"

# The tokens: an HS256 secret and an ES256 key pair of this run, a token signed with each.
secret_file_make "$work/hs256.secret"
if ! openssl ecparam -name prime256v1 -genkey -noout -out "$work/es256.key" 2>/dev/null ||
    ! openssl ec -in "$work/es256.key" -pubout -out "$work/es256.pub" 2>/dev/null; then
    die "openssl could not make an ES256 key pair"
fi
declare -A token
token[hs256]=$("$tally_bin" token --role admin --tenant '*' --alg HS256 \
    --key-file "$work/hs256.secret") || die "tally token (HS256) failed"
token[es256]=$("$tally_bin" token --role admin --tenant '*' --alg ES256 \
    --key-file "$work/es256.key") || die "tally token (ES256) failed"
declare -A auth_vars=(
    [runtime]="TALLY_AUTH=off"
    [hs256]="TALLY_AUTH=jwt TALLY_AUTH_JWT_SECRET_FILE=$work/hs256.secret"
    [es256]="TALLY_AUTH=jwt TALLY_AUTH_JWT_ALG=ES256 TALLY_AUTH_JWT_KEYS_FILE=$work/es256.pub"
)
auth_hdr=() # -H 'authorization: Bearer ...' for the server that runs

# server_start bare|runtime|hs256|es256: starts the server on free loopback ports (port, and
# http_port for echo-svc) and waits until it accepts connections (echo-svc: and answers
# /healthz); auth_hdr is what h2load and nghttp must send to it.
# (The runtime logs its bound port only at info level, and the benchmark runs it at warn.)
server_start() {
    local kind=$1
    if [[ $kind == bare ]]; then
        free_port port
        http_port=
        svc_start bare "tcp://127.0.0.1:$port" "$bare_bin" "$port" $threads
        auth_hdr=()
    else
        free_port port http_port
        local -a vars
        read -ra vars <<<"${auth_vars[$kind]}"
        svc_start "$kind" "tcp://127.0.0.1:$port http://127.0.0.1:$http_port/healthz" \
            env "${vars[@]}" TALLY_GRPC_LISTEN="127.0.0.1:$port" \
            TALLY_HTTP_LISTEN="127.0.0.1:$http_port" TALLY_WORKERS=$threads TALLY_LOG_LEVEL=error \
            "$runtime_bin"
        auth_hdr=()
        [[ -z ${token[$kind]:-} ]] || auth_hdr=(-H "authorization: Bearer ${token[$kind]}")
    fi
    server_pid=${proc_pid[$kind]}
}

# h2load_run COUNT OUT [LOGFILE]: one load run; fails unless every request succeeded.
h2load_run() {
    local count=$1 out=$2
    h2load -c 1 -m "$streams" -n "$count" -d "$work/body" \
        -H 'content-type: application/grpc' -H 'te: trailers' "${auth_hdr[@]}" ${3:+--log-file="$3"} \
        "http://127.0.0.1:$port$path" >"$out" 2>&1 || die "h2load failed: $(cat "$out")"
    grep -qE "^requests: $count total, $count started, $count done, $count succeeded, 0 failed" \
        "$out" || die "h2load: not every request succeeded: $(grep -E '^(requests|status)' "$out")"
    grep -qE "^status codes: $count 2xx" "$out" || die "h2load: non-2xx responses"
}

# grpc_status_check: one call with nghttp; the trailers must carry grpc-status 0 and the reply
# must contain the text.
grpc_status_check() {
    local out=$work/nghttp.out
    nghttp -v -d "$work/body" -H 'content-type: application/grpc' -H 'te: trailers' "${auth_hdr[@]}" \
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

results=$work/results
: >"$results"
echo "h2load -c 1 -m $streams -n $n -d <EchoRequest{text:\"hello\"}> -H 'content-type: application/grpc' -H 'te: trailers' http://127.0.0.1:PORT$path"
echo "servers: $threads worker threads each; $runs runs each, alternating; warm-up $warmup requests"
echo
run_fmt='%-8s %3s %10.0f %8s %8s %14s'
table_header "$run_fmt" server run QPS "p50 us" "p99 us" "CPU us/call"
for run in $(seq "$runs"); do
    for kind in "${kinds[@]}"; do
        server_start "$kind"
        grpc_status_check
        ((warmup == 0)) || h2load_run "$warmup" "$work/warmup.out"
        ok_before=
        if [[ $kind != bare ]]; then
            ok_before=$(echo_handled OK)
        fi
        rm -f "$work/latency.log" # h2load appends to it
        t0=$(proc_ticks "$server_pid" "$kind")
        h2load_run "$n" "$work/h2load.out" "$work/latency.log"
        t1=$(proc_ticks "$server_pid" "$kind")
        if [[ $kind != bare ]]; then
            ok_after=$(echo_handled OK)
            not_ok=$(echo_handled '!OK')
            if [[ -z $ok_before || -z $ok_after ]]; then
                echo "note: could not read grpc_server_handled_total for Echo from /metrics" >&2
            elif ((ok_after - ok_before != n || not_ok != 0)); then
                die "runtime /metrics: $((ok_after - ok_before)) OK of $n, $not_ok not OK"
            fi
        fi
        svc_stop "$kind"

        qps=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$work/h2load.out")
        cut -f3 "$work/latency.log" >"$work/latency"
        lines=$(wc -l <"$work/latency")
        ((lines == n)) || die "h2load log has $lines latencies, expected $n"
        read -r p50 p99 < <(percentile 50 99 <"$work/latency")
        cpu=$(awk -v d=$((t1 - t0)) -v hz="$clk_tck" -v n="$n" 'BEGIN { printf "%.2f", d * 1e6 / hz / n }')
        # shellcheck disable=SC2059  # the table's row format
        printf "$run_fmt\n" "$kind" "$run" "$qps" "$p50" "$p99" "$cpu" |
            tee -a "$results"
    done
done

# med KIND COLUMN: the median over the runs of one column of the results.
med() {
    awk -v k="$1" -v c="$2" '$1 == k { print $c }' "$results" | median
}

echo
echo "medians over $runs runs:"
med_fmt='%-8s %10.0f %8.0f %8.0f %14.2f'
table_header "$med_fmt" server QPS "p50 us" "p99 us" "CPU us/call"
for kind in "${kinds[@]}"; do
    # shellcheck disable=SC2059  # the table's row format
    printf "$med_fmt\n" "$kind" "$(med "$kind" 3)" "$(med "$kind" 4)" "$(med "$kind" 5)" "$(med "$kind" 6)"
done
echo
if [[ " ${kinds[*]} " == *" bare "* && " ${kinds[*]} " == *" runtime "* ]]; then
    awk -v bq="$(med bare 3)" -v rq="$(med runtime 3)" -v bc="$(med bare 6)" \
        -v rc="$(med runtime 6)" -v b50="$(med bare 4)" -v r50="$(med runtime 4)" \
        -v b99="$(med bare 5)" -v r99="$(med runtime 5)" 'BEGIN {
            printf "runtime/bare QPS:             %.3f\n", rq / bq
            printf "runtime/bare p50, p99:        %.3f, %.3f\n", r50 / b50, r99 / b99
            printf "runtime overhead CPU us/call: %+.2f (runtime %.2f - bare %.2f)\n", rc - bc, rc, bc
        }'
fi
for kind in hs256 es256; do
    [[ " ${kinds[*]} " == *" $kind "* && " ${kinds[*]} " == *" runtime "* ]] || continue
    awk -v k="$kind" -v q="$(med "$kind" 3)" -v rq="$(med runtime 3)" -v c="$(med "$kind" 6)" \
        -v rc="$(med runtime 6)" 'BEGIN {
            printf "%s token verification: CPU us/call %+.2f (%s %.2f - runtime %.2f), QPS %.3fx\n",
                toupper(k), c - rc, k, c, rc, q / rq
        }'
done
