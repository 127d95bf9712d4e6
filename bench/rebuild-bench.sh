#!/usr/bin/env bash
# The rebuild benchmark: how long `tally rebuild` takes to build a new generation of a tenant
# with about EVENTS events, and what the other tenants' GetDashboard latency is meanwhile.
#
# A private stack (scripts/stack in a temporary TALLY_STACK_DIR, PostgreSQL and Redis on free
# loopback ports) is started, migrated, and the real command-svc (with its relay), projector
# and query-svc run on it. `tally-sim seed` imports the big tenant's history (COMPLAINTS
# complaints, about 4.7 events each) and a small one's (OTHER_COMPLAINTS); the projector
# applies everything. Then RUNS times:
#   - base: GetDashboard of the small tenant, open loop at RATE/s for WINDOW s (bench-queryload),
#     nothing else running;
#   - rebuild: the same load, and after its warm-up `tally rebuild --tenant big`; the rebuild's
#     wall time, its events/s, the CPU of Redis, PostgreSQL and the rebuilder over it, and the
#     latency of the small tenant's pages over the window (which WINDOW should cover: the
#     line says when the rebuild outlasted it).
# Each run ends with `tally verify --tenant big` (it must be clean).
#
# Prints numbers only; fails only when something does not work (a server does not start, the
# rebuild or verify fails), never on a time. See bench/README.md.
#
# Usage: bench/rebuild-bench.sh [BUILD_DIR]   (default: $BUILD_DIR, else <repo>/build)
# Environment: RUNS (3), COMPLAINTS (213000: about 1,000,000 events), OTHER_COMPLAINTS (20000),
# DAYS (365), RATE (50), WINDOW (20), BATCH (empty: tally rebuild's default), STALL_SECONDS (300),
# TALLY_STACK_PG_BIN (/usr/lib/postgresql/15/bin).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source-path=SCRIPTDIR/.. source=scripts/lib/run.sh
source "$repo/scripts/lib/run.sh"
build=${1:-${BUILD_DIR:-$repo/build}}
runs=${RUNS:-3}
complaints=${COMPLAINTS:-213000}
other_complaints=${OTHER_COMPLAINTS:-20000}
days=${DAYS:-365}
rate=${RATE:-50}
window=${WINDOW:-20}
batch=${BATCH:-}
stall=${STALL_SECONDS:-300}
svc_bin=$build/bin/command-svc
proj_bin=$build/bin/projector
query_bin=$build/bin/query-svc
sim_bin=$build/bin/tally-sim
tally_bin=$build/bin/tally
load_bin=$build/bin/bench-queryload

check_count runs complaints other_complaints days rate window stall
[[ -z $batch || $batch =~ ^[1-9][0-9]*$ ]] || die "BATCH must be a positive integer"
need_bin "$svc_bin" "$proj_bin" "$query_bin" "$sim_bin" "$tally_bin" "$load_bin"
[[ -x $pg_bin/psql ]] || die "$pg_bin/psql not found (install postgresql-15)"
need_cmd curl python3 redis-server redis-cli

run_init
run_workdir
stack_private_up # pg_dsn, svc_pg_dsn, pg_pid, redis_url, redis_port, redis_pid
dsn=$pg_dsn
TALLY_PG_DSN=$dsn TALLY_LOG_LEVEL=warn "$svc_bin" migrate || die "migration failed"
cmd_svc_start "$svc_bin" true 2
# With PostgreSQL, so that the timed rebuild is the only one (TALLY_PROJECTOR_REBUILDS off).
projector_svc_start "$proj_bin" TALLY_PG_DSN="$svc_pg_dsn" TALLY_PROJECTOR_VERIFY_EVERY_S=0 \
    TALLY_PROJECTOR_REBUILDS=false
query_svc_start "$query_bin" 2
cmd_port=${cmd_grpc#*:} proj_http=${projector_http#*:} q_port=${query_grpc#*:}

echo "rebuild benchmark: tenant big with $complaints complaints over $days days, tenant small with $other_complaints"
bench_about projector "$proj_bin" projector
echo
t0=$EPOCHREALTIME
"$sim_bin" seed --command "127.0.0.1:$cmd_port" --tenants big:Europe/Berlin \
    --complaints "$complaints" --days "$days" >"$work/seed.out" 2>&1 || {
    log_tail "$work/seed.out"
    die "tally-sim seed (big) failed"
}
"$sim_bin" seed --command "127.0.0.1:$cmd_port" --tenants small:America/New_York \
    --complaints "$other_complaints" --days "$days" >>"$work/seed.out" 2>&1 || {
    log_tail "$work/seed.out"
    die "tally-sim seed (small) failed"
}
total=$(psql_q -c 'SELECT count(*) FROM events')
big_events=$(psql_q -c "SELECT count(*) FROM events WHERE tenant_id = 'big'")
projector_wait_applied "127.0.0.1:$proj_http" "$total" "$stall"
awk -v n="$total" -v b="$big_events" -v t0="$t0" -v t1="$EPOCHREALTIME" 'BEGIN {
    printf "imported and applied: %d events (%d of tenant big) in %.1f s\n", n, b, t1 - t0 }'
# The import leaves autovacuum work behind: done now, so that it does not run (at 60% of a
# core) during the first rebuild, which took 50-57 s then against 31-32 s for the second.
psql_q -c 'VACUUM (ANALYZE)' >/dev/null
echo "Redis used_memory: $(redis_info memory used_memory_human)"
echo

# measure RUN LABEL: the small tenant's load for WINDOW s, with the rebuild of big when LABEL
# is rebuild; a row of the results.
row='%-3s %-7s %8s %9s %8.2f %8.2f %8.2f %7.0f %7.0f %7.0f %s'
measure() {
    local run=$1 label=$2 out rb=- eps=- r0 r1 p0 p1 t0 t1 rc=0 note=""
    "$load_bin" --target "127.0.0.1:$q_port" --tenant small --rate "$rate" --warmup 2 \
        --duration "$window" >"$work/load.out" 2>"$work/load.err" &
    proc_adopt load $!
    sleep 2
    r0=$(proc_ticks "$redis_pid" redis-server)
    p0=$(pg_ticks "$pg_pid")
    t0=$EPOCHREALTIME
    if [[ $label == rebuild ]]; then
        rcli CONFIG RESETSTAT >/dev/null
        local args=(rebuild --tenant big --json --pg-dsn "$svc_pg_dsn" --redis-url "$redis_url")
        [[ -n $batch ]] && args+=(--batch "$batch")
        (
            rc=0
            "$tally_bin" "${args[@]}" >"$work/rebuild.out" 2>"$work/rebuild.err" || rc=$?
            times >"$work/times"
            exit $rc
        ) || rc=$?
        t1=$EPOCHREALTIME
        rcli INFO commandstats | tr -d '\r' >"$work/cmdstats.$run"
        ((rc == 0)) || die "tally rebuild failed ($rc): $(tail -3 "$work/rebuild.err")"
        rb=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
        eps=$(awk -v a="$t0" -v b="$t1" -v n="$big_events" 'BEGIN { printf "%.0f", n / (b - a) }')
        awk -v w="$window" -v s="$rb" 'BEGIN { exit !(s > w) }' && note="(the rebuild outlasted the window)"
        # calls written merged (counted by the rebuilder) and merged ones sent again per event
        note="$note $(tr ',' '\n' <"$work/rebuild.out" | awk -F: '$1 == "\"merged_calls\"" { m = $2 }
            $1 == "\"split_calls\"" { s = $2 } END { printf "merged %d, split %d calls", m, s }')"
    else
        sleep "$window"
        t1=$EPOCHREALTIME
    fi
    r1=$(proc_ticks "$redis_pid" redis-server)
    p1=$(pg_ticks "$pg_pid")
    proc_wait load || die "bench-queryload failed: $(cat "$work/load.err")"
    out=$(cat "$work/load.out")
    echo "$run $label: $out" >>"$work/raw"
    local cli=0
    [[ $label == rebuild ]] && cli=$(tail -n 1 "$work/times" | awk -v hz="$clk_tck" '{ for (i = 1; i <= 2; i++) {
            split($i, a, /[ms]/); s += a[1] * 60 + a[2] } } END { printf "%d\n", s * hz + 0.5 }')
    awk -v run="$run" -v l="$label" -v rb="$rb" -v eps="$eps" -v out="$out" -v r=$((r1 - r0)) \
        -v p=$((p1 - p0)) -v c="$cli" -v hz="$clk_tck" -v t0="$t0" -v t1="$t1" -v fmt="$row" \
        -v note="$note" 'BEGIN {
            n = split(out, f, " "); for (i = 1; i <= n; i++) { split(f[i], kv, "="); v[kv[1]] = kv[2] }
            s = t1 - t0
            printf fmt "\n", run, l, rb, eps, v["p50_ms"], v["p99_ms"], v["max_ms"],
                100 * r / hz / s, 100 * p / hz / s, 100 * c / hz / s, note }' | tee -a "$work/results"
}

echo "small tenant's GetDashboard at $rate/s over $window s (base: alone; rebuild: during tally rebuild of big);"
echo "CPU % of one core over the rebuild (or the window): Redis, PostgreSQL, the rebuilder"
table_header "$row" run test rebuild_s events/s p50ms p99ms maxms 'redis%' 'pg%' 'tally%' ''
: >"$work/results"
for run in $(seq "$runs"); do
    measure "$run" base
    measure "$run" rebuild
    "$tally_bin" verify --tenant big --pg-dsn "$svc_pg_dsn" --redis-url "$redis_url" --settle-ms 2000 \
        >"$work/verify.out" 2>&1 || die "tally verify --tenant big is not clean: $(tail -5 "$work/verify.out")"
done
echo
echo "medians over $runs runs"
for l in base rebuild; do
    col() { awk -v l="$l" -v c="$1" '$2 == l { print $c }' "$work/results" | median; }
    # shellcheck disable=SC2059
    printf "$row\n" med "$l" "$(col 3)" "$(col 4)" "$(col 5)" "$(col 6)" "$(col 7)" "$(col 8)" \
        "$(col 9)" "$(col 10)" ""
done
echo "top Redis commands by total time over the rebuild of run 1 (INFO commandstats; FCALL"
echo "includes the calls inside it, the small tenant's queries are in the rest):"
awk -F'[:=,]' '/^cmdstat_/ { sub(/^cmdstat_/, "", $1); printf "  %-24s %9d calls %10.0f ms %9.2f us/call\n", $1, $3, $5 / 1000, $7 }' \
    "$work/cmdstats.1" | sort -k4 -g -r | awk 'NR <= 10'
echo "generation of big now: $(rcli GET '{t:big}:gen'); Redis used_memory: $(redis_info memory used_memory_human)"
echo "machine after: $(uptime)"
