#!/usr/bin/env bash
# The import benchmark: how many complaints/s ImportComplaints writes, and what each complaint
# costs in CPU in command-svc, PostgreSQL and the client.
#
# A private stack (scripts/stack in a temporary TALLY_STACK_DIR, PostgreSQL and Redis on free
# loopback ports, default settings, fsync on) is started. Then for each relay mode (off, then
# on: TALLY_RELAY=false/true) RUNS times, alternating the modes run by run: the database
# "tally" is dropped, recreated and migrated, a fresh command-svc (TALLY_WORKERS=CLIENTS)
# starts, and `tally-sim seed` imports COMPLAINTS complaints of TENANTS with CLIENTS concurrent
# connections (batches of 1,000, as seed sends them). A run measures from the seed's start to
# its end (the reference data it writes first is a few calls), and the CPU ticks of
# command-svc, of PostgreSQL (the postmaster and every backend) and of tally-sim meanwhile.
# With the relay on, the run also waits until the relay has published every event (the events
# left unpublished reach 0) and reports that time separately.
#
# Prints numbers only; fails only when something does not work (a server does not start,
# seed fails or imports fewer complaints than asked), never on a time. See bench/README.md.
#
# Usage: bench/import-bench.sh [BUILD_DIR]   (default: $BUILD_DIR, else <repo>/build)
# Environment: RUNS (3), COMPLAINTS (200000), CLIENTS (2), TENANTS (tally-sim's default three),
# RELAY_MODES ("off on"), STALL_SECONDS (120: the relay's catch-up gives up after this long
# without progress), TALLY_STACK_PG_BIN (/usr/lib/postgresql/15/bin), PG_STAT (0; 1 installs
# pg_stat_statements and prints the import's statements by total time after each run).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source-path=SCRIPTDIR/.. source=scripts/lib/run.sh
source "$repo/scripts/lib/run.sh"
build=${1:-${BUILD_DIR:-$repo/build}}
runs=${RUNS:-3}
complaints=${COMPLAINTS:-200000}
clients=${CLIENTS:-2}
tenants=${TENANTS:-}
modes=${RELAY_MODES:-off on}
stall=${STALL_SECONDS:-120}
pg_stat=${PG_STAT:-0}
pg_bin=${TALLY_STACK_PG_BIN:-/usr/lib/postgresql/15/bin}
svc_bin=$build/bin/command-svc
sim_bin=$build/bin/tally-sim

check_count runs complaints clients stall
need_bin "$svc_bin" "$sim_bin"
[[ -x $pg_bin/psql ]] || die "$pg_bin/psql not found (install postgresql-15)"
need_cmd curl python3 redis-server
for m in $modes; do
    [[ $m == on || $m == off ]] || die "RELAY_MODES: 'off', 'on' or both, got '$m'"
done

run_init
run_workdir
chmod 755 "$work" # the stack's PostgreSQL may run as the postgres user
export TALLY_STACK_DIR=$work/stack
free_port TALLY_STACK_PG_PORT TALLY_STACK_REDIS_PORT
export TALLY_STACK_PG_PORT TALLY_STACK_REDIS_PORT
dsn=postgresql://tally@127.0.0.1:$TALLY_STACK_PG_PORT/tally         # the owner's
svc_dsn=postgresql://tally_app@127.0.0.1:$TALLY_STACK_PG_PORT/tally # command-svc's

# shellcheck disable=SC2317  # invoked at exit
stack_stop() {
    "$repo/scripts/stack" clean 2>/dev/null
}
run_at_exit stack_stop
"$repo/scripts/stack" up >/dev/null 2>"$work/stack.log" || {
    log_tail "$work/stack.log"
    die "scripts/stack up failed"
}
pg_pid=$(head -n 1 "$TALLY_STACK_DIR/pg/postmaster.pid")

psql_q() {
    "$pg_bin/psql" "$dsn" -X -q -tA -v ON_ERROR_STOP=1 "$@"
}

# fresh_db: database "tally" dropped, recreated and migrated (and pg_stat_statements reset).
fresh_db() {
    "$pg_bin/psql" "${dsn%/tally}/postgres" -X -q -v ON_ERROR_STOP=1 \
        -c 'DROP DATABASE IF EXISTS tally WITH (FORCE)' -c 'CREATE DATABASE tally' ||
        die "cannot recreate database tally"
    TALLY_PG_DSN=$dsn TALLY_LOG_LEVEL=warn "$svc_bin" migrate || die "migration failed"
    if ((pg_stat)); then
        psql_q -c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements' \
            -c 'SELECT pg_stat_statements_reset()' >/dev/null
    fi
    psql_q -c CHECKPOINT
}

if ((pg_stat)); then
    psql_q -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"
    "$repo/scripts/stack" down 2>/dev/null
    "$repo/scripts/stack" up >/dev/null 2>>"$work/stack.log" || die "stack restart failed"
    pg_pid=$(head -n 1 "$TALLY_STACK_DIR/pg/postmaster.pid")
fi

# cmd_start RELAY: a fresh command-svc on free ports (port); waits until /readyz.
cmd_start() {
    local http_port
    free_port port http_port
    auth_dev_up "$(dirname "$svc_bin")"
    svc_start command-svc "http://127.0.0.1:$http_port/readyz" \
        env -i PATH="$PATH" "${auth_env[@]}" TALLY_GRPC_LISTEN="127.0.0.1:$port" \
        TALLY_HTTP_LISTEN="127.0.0.1:$http_port" TALLY_PG_DSN="$svc_dsn" \
        TALLY_REDIS_URL="redis://127.0.0.1:$TALLY_STACK_REDIS_PORT/0" \
        TALLY_WORKERS="$clients" TALLY_RELAY="$1" TALLY_LOG_LEVEL=warn "$svc_bin"
    svc_pid=${proc_pid[command-svc]}
}

# wait_published: until no event is left unpublished; dies after STALL_SECONDS without progress.
wait_published() {
    local left last=-1 since=$SECONDS
    while :; do
        left=$(psql_q -c 'SELECT count(*) FROM outbox')
        ((left == 0)) && return 0
        if ((left != last)); then
            last=$left since=$SECONDS
        elif ((SECONDS - since > stall)); then
            die "the relay left $left events unpublished for $stall s"
        fi
        pid_alive "$svc_pid" || die "command-svc died: $(tail -5 "$run_log_dir/command-svc.log")"
        sleep 0.2
    done
}

ms() { date +%s%3N; }
results=$work/results
: >"$results"
row='%-5s %3d %9.0f %8.2f %9d %10.1f %10.1f %10.1f %10.1f %9s'

# run_one MODE RUN: one measured import; appends a row to the results and prints it.
run_one() {
    local mode=$1 run=$2 relay=false t0 t1 s0 s1 p0 p1 c1 rc=0 pub=- n ev
    [[ $mode == on ]] && relay=true
    fresh_db
    redis-cli -p "$TALLY_STACK_REDIS_PORT" FLUSHALL >/dev/null
    cmd_start "$relay"
    local -a sim_args=(seed --command "127.0.0.1:$port" --complaints "$complaints"
        --clients "$clients")
    [[ -z $tenants ]] || sim_args+=(--tenants "$tenants")
    s0=$(proc_ticks "$svc_pid" command-svc)
    p0=$(pg_ticks "$pg_pid")
    t0=$(ms)
    (
        rc=0
        "$sim_bin" "${sim_args[@]}" >"$work/sim.out" 2>"$work/sim.err" || rc=$?
        times >"$work/times"
        exit $rc
    ) || rc=$?
    t1=$(ms)
    s1=$(proc_ticks "$svc_pid" command-svc)
    p1=$(pg_ticks "$pg_pid")
    ((rc == 0)) || {
        log_tail "$work/sim.err"
        die "tally-sim seed failed (exit $rc)"
    }
    # The client's CPU: the subshell's children (user + system) from `times`, in ticks.
    c1=$(tail -n 1 "$work/times" | awk -v hz="$clk_tck" '{ for (i = 1; i <= 2; i++) {
            split($i, a, /[ms]/); s += a[1] * 60 + a[2] } } END { printf "%d\n", s * hz + 0.5 }')
    n=$(psql_q -c 'SELECT count(*) FROM complaints')
    ev=$(psql_q -c 'SELECT count(*) FROM events WHERE imported')
    ((n == complaints)) || die "$n complaints in the database after importing $complaints"
    if [[ $mode == on ]]; then
        wait_published
        pub=$(awk -v a="$t0" -v b="$(ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }')
    fi
    if ((pg_stat)); then
        {
            echo "pg_stat_statements, $mode run $run (ms total, calls, rows, ms/call):"
            psql_q -F ' | ' -c "SELECT round(total_exec_time::numeric, 0), calls, rows,
                round((total_exec_time / calls)::numeric, 2), left(regexp_replace(query, '\s+', ' ', 'g'), 90)
                FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12"
        } >&2
    fi
    svc_stop command-svc
    # shellcheck disable=SC2059  # the format is the point
    printf "$row\n" "$mode" "$run" "$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { print n / ((b - a) / 1000) }')" \
        "$(awk -v e="$ev" -v n="$n" 'BEGIN { print e / n }')" "$ev" \
        "$(awk -v t=$((s1 - s0)) -v h="$clk_tck" -v n="$n" 'BEGIN { print t / h * 1e6 / n }')" \
        "$(awk -v t=$((p1 - p0)) -v h="$clk_tck" -v n="$n" 'BEGIN { print t / h * 1e6 / n }')" \
        "$(awk -v t="$c1" -v h="$clk_tck" -v n="$n" 'BEGIN { print t / h * 1e6 / n }')" \
        "$(awk -v t=$((s1 - s0 + p1 - p0 + c1)) -v h="$clk_tck" -v n="$n" 'BEGIN { print t / h * 1e6 / n }')" \
        "$pub" | tee -a "$results"
}

bench_about "command-svc" "$svc_bin" command-svc
echo "import: tally-sim seed of $complaints complaints, $clients clients, command-svc with $clients workers; $runs runs per relay mode, alternating"
echo
table_header "$row" relay run complnt/s events/c events svc_us/c pg_us/c sim_us/c total_us/c publish_s
for run in $(seq 1 "$runs"); do
    for mode in $modes; do
        run_one "$mode" "$run"
    done
done
echo
echo "median per relay mode (CPU in us per complaint; publish_s: from the seed's start until the relay published every event):"
table_header "$row" relay runs complnt/s events/c events svc_us/c pg_us/c sim_us/c total_us/c publish_s
for mode in $modes; do
    col() { awk -v m="$mode" -v c="$1" '$1 == m { print $c }' "$results" | median; }
    # shellcheck disable=SC2059
    # the median of an even count of event counts can end in .5, which %d refuses
    printf "$row\n" "$mode" "$runs" "$(col 3)" "$(col 4)" "$(printf '%.0f' "$(col 5)")" "$(col 6)" "$(col 7)" \
        "$(col 8)" "$(col 9)" "$(col 10)"
done
echo "machine after: $(uptime)"
