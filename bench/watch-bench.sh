#!/usr/bin/env bash
# The WatchDashboard benchmark: what open streams cost query-svc, and how soon a command's
# change reaches them. On a private stack (scripts/stack on free loopback ports), the real
# command-svc (relay on), projector and query-svc; then bench-watch, RUNS times:
#   STREAMS WatchDashboard streams of one tenant over CONNECTIONS connections, each with its
#   first page; then DURATION s with nothing changing (query-svc's CPU, % of one core), then
#   DURATION s of CreateComplaint at RATE/s for that tenant (query-svc's CPU, pages sent, and
#   per command the time from its OK to the first page holding it on one stream: p50, p99).
# Then the medians over the runs. Prints numbers only; fails only when something does not work
# (a server, a stream that ends, a change that never arrives), never on a time. See
# bench/README.md.
#
# Usage: bench/watch-bench.sh [BUILD_DIR]    (default: $BUILD_DIR, else <repo>/build)
# Environment: RUNS (3), STREAMS (1000), CONNECTIONS (4), DURATION (10), RATE (10), INTERVAL
# (100: min_interval_ms, the server's floor), WORKERS (2: query-svc's).
# Builds nothing: expects BUILD_DIR/bin/{command-svc,projector,query-svc,tally,bench-watch}.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source-path=SCRIPTDIR/.. source=scripts/lib/run.sh
source "$repo/scripts/lib/run.sh"
build=${1:-${BUILD_DIR:-$repo/build}}
runs=${RUNS:-3}
streams=${STREAMS:-1000}
connections=${CONNECTIONS:-4}
seconds=${DURATION:-10}
rate=${RATE:-10}
interval=${INTERVAL:-100}
workers=${WORKERS:-2}
need_bin "$build/bin/command-svc" "$build/bin/projector" "$build/bin/query-svc" \
    "$build/bin/tally" "$build/bin/bench-watch"
check_count runs streams connections seconds rate workers
check_int interval

run_init
run_workdir
stack_private_up
TALLY_PG_DSN=$pg_dsn TALLY_LOG_LEVEL=warn "$build/bin/command-svc" migrate || die "migration failed"
cmd_svc_start "$build/bin/command-svc" on 2
projector_svc_start "$build/bin/projector"
query_svc_start "$build/bin/query-svc" "$workers"

keys=(idle_cpu_pct changing_cpu_pct changing_pages ok_to_page_p50_ms ok_to_page_p99_ms
    ok_to_page_max_ms)
declare -A all
for ((r = 1; r <= runs; r++)); do
    out=$("$build/bin/bench-watch" --commands "$cmd_grpc" --query "$query_grpc" \
        --query-pid "$query_pid" --streams "$streams" --connections "$connections" \
        --seconds "$seconds" --rate "$rate" --interval "$interval" --tenant "watch-$r") ||
        die "bench-watch failed (run $r): $out"
    printf 'run %d: %s\n' "$r" "$(tr '\n' ' ' <<<"$out")"
    for k in "${keys[@]}"; do
        all[$k]+="$(awk -v k="$k" '$1 == k { print $2 }' <<<"$out") "
    done
done
printf 'median over %d runs (streams %s, connections %s, rate %s/s, interval %s ms):\n' \
    "$runs" "$streams" "$connections" "$rate" "$interval"
for k in "${keys[@]}"; do
    # shellcheck disable=SC2086  # the values, one per run
    printf '  %s %s\n' "$k" "$(printf '%s\n' ${all[$k]} | median)"
done
svc_stop query-svc
svc_stop projector
svc_stop command-svc
