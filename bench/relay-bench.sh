#!/usr/bin/env bash
# The relay benchmark: how fast command-svc's outbox relay publishes a backlog, and what each
# event costs the relay, PostgreSQL and Redis (issue 10: >= 100,000 events/s). See
# bench/README.md.
#
# A private stack (scripts/stack in TALLY_STACK_DIR, PostgreSQL and Redis on free loopback
# ports unless given, fsync on, default settings) gets a backlog once: command-svc with the
# relay off (TALLY_RELAY=false), `tally-sim seed --complaints COMPLAINTS` through
# ImportComplaints (about 4.9 events per complaint, realistic envelopes), then ANALYZE; the
# database is kept as a template. Each measured run copies the template into a fresh database
# (every row unpublished, no dead tuples), empties Redis, starts command-svc with the relay on
# and times it from its start until /metrics say tally_relay_published_total = the rows; then
# tally_relay_backlog must say 0, every row be marked and every entry be on the streams. CPU
# (user + system) of command-svc (the relay; its gRPC workers idle), of PostgreSQL (the
# postmaster and its children) and of redis-server over the run, per event.
#
# Runs alternate over every configuration, SVC_BINS x BATCHES (run 1: A B; run 2: B A; ...),
# so that two builds or batch sizes are compared in one session.
#
# Usage: bench/relay-bench.sh [BUILD_DIR]   (default: $BUILD_DIR, else <repo>/build)
# Environment: RUNS (3), COMPLAINTS (200000), BATCHES ("": command-svc's default
# TALLY_RELAY_BATCH; a list runs each), SVC_BINS (BUILD_DIR/bin/command-svc; a list of
# command-svc binaries to compare), PARTITIONS (1, TALLY_STREAM_PARTITIONS), STALL_SECONDS
# (60), PGSS (0; 1: load pg_stat_statements and print the relay's statements of the last run),
# TALLY_STACK_DIR (<repo>/.stack-relay-bench), TALLY_STACK_PG_PORT, TALLY_STACK_REDIS_PORT
# (free ports), KEEP_STACK (0; 1 keeps the stack's data: the next run skips the seed when the
# template has COMPLAINTS' worth).
#
# Prints numbers only; fails only when something does not work (a server does not start or
# stop cleanly, the seed fails, the relay stalls or leaves a row unmarked), never on a time.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source-path=SCRIPTDIR/.. source=scripts/lib/run.sh
source "$repo/scripts/lib/run.sh"
build=${1:-${BUILD_DIR:-$repo/build}}
runs=${RUNS:-3}
complaints=${COMPLAINTS:-200000}
batches=${BATCHES:-}
svc_bins=${SVC_BINS:-$build/bin/command-svc}
partitions=${PARTITIONS:-1}
stall=${STALL_SECONDS:-60}
pgss=${PGSS:-0}
sim_bin=$build/bin/tally-sim
pg_bin=${TALLY_STACK_PG_BIN:-/usr/lib/postgresql/15/bin}

check_count runs complaints partitions stall
read -ra bins <<<"$svc_bins"
need_bin "$sim_bin" "${bins[@]}"
[[ -x $pg_bin/psql ]] || die "$pg_bin/psql not found (install postgresql-15)"
need_cmd curl python3 redis-cli
read -ra sizes <<<"${batches:--}"
for b in "${sizes[@]}"; do
    [[ $b == - || $b =~ ^[1-9][0-9]*$ ]] || die "BATCHES: positive integers, got '$b'"
done

export TALLY_STACK_DIR=${TALLY_STACK_DIR:-$repo/.stack-relay-bench}
if [[ -z ${TALLY_STACK_PG_PORT:-} || -z ${TALLY_STACK_REDIS_PORT:-} ]]; then
    free_port TALLY_STACK_PG_PORT TALLY_STACK_REDIS_PORT
fi
export TALLY_STACK_PG_PORT TALLY_STACK_REDIS_PORT
dsn_base=postgresql://tally@127.0.0.1:$TALLY_STACK_PG_PORT
dsn=$dsn_base/tally                                                    # the owner's
svc_dsn=postgresql://tally_app@127.0.0.1:$TALLY_STACK_PG_PORT/tally # the service role's
redis_url=redis://127.0.0.1:$TALLY_STACK_REDIS_PORT/0

stack_end=clean # at exit: the stack goes, with its data unless KEEP_STACK=1
[[ ${KEEP_STACK:-0} != 1 ]] || stack_end=down
# shellcheck disable=SC2317  # invoked at exit
stack_stop() { "$repo/scripts/stack" "$stack_end"; }
run_init
run_workdir
run_at_exit stack_stop

psql_at() { # psql_at DATABASE ARGS...: quiet, unaligned, stop on error
    local db=$1
    shift
    PGOPTIONS='-c client_min_messages=warning' "$pg_bin/psql" "$dsn_base/$db" -X -q -tA \
        -v ON_ERROR_STOP=1 "$@"
}

"$repo/scripts/stack" up >/dev/null || die "scripts/stack up failed"
if ((pgss)); then
    psql_at postgres -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"
    "$repo/scripts/stack" down 2>/dev/null
    "$repo/scripts/stack" up >/dev/null || die "scripts/stack up (pg_stat_statements) failed"
fi
pg_pid=$(head -n 1 "$TALLY_STACK_DIR/pg/postmaster.pid")
redis_pid=$(head -n 1 "$TALLY_STACK_DIR/redis.pid")

# svc_up BIN RELAY [BATCH]: command-svc on free ports against database tally, until /readyz;
# sets svc_pid and http (its metrics address).
svc_up() {
    local port http_port
    free_port port http_port
    http=127.0.0.1:$http_port
    local -a env=(TALLY_GRPC_LISTEN="127.0.0.1:$port" TALLY_HTTP_LISTEN="$http"
        TALLY_PG_DSN="$svc_dsn" TALLY_REDIS_URL="$redis_url" TALLY_RELAY="$2"
        TALLY_STREAM_PARTITIONS="$partitions" TALLY_STREAM_MAXLEN=1000000000
        TALLY_LOG_LEVEL=warn)
    [[ ${3:--} == - ]] || env+=(TALLY_RELAY_BATCH="$3")
    auth_dev_up "$(dirname "$1")"
    env+=("${auth_env[@]}")
    svc_start command-svc "http://$http/readyz" env "${env[@]}" "$1"
    svc_pid=${proc_pid[command-svc]}
    grpc=127.0.0.1:$port
}

# The backlog, once: seeded with the relay off, kept as the template tally_seed.
seeded=$(psql_at postgres -c "SELECT count(*) FROM pg_database WHERE datname = 'tally_seed'")
# A template from before migration 0006 (no outbox table) is seeded again.
if ((seeded)) && [[ $(psql_at tally_seed -c "SELECT to_regclass('outbox') IS NOT NULL") == t &&
    $(psql_at tally_seed -c "SELECT count(*) FROM complaints") == "$complaints" ]]; then
    say "reusing the seeded template"
else
    say "seeding $complaints complaints with the relay off"
    psql_at postgres -c 'DROP DATABASE IF EXISTS tally_seed' \
        -c 'DROP DATABASE IF EXISTS tally WITH (FORCE)' -c 'CREATE DATABASE tally'
    TALLY_PG_DSN=$dsn TALLY_LOG_LEVEL=warn "${bins[0]}" migrate || die "migration failed"
    svc_up "${bins[0]}" false
    t0=$SECONDS
    "$sim_bin" seed --command "$grpc" --complaints "$complaints" --clients 2 \
        >"$work/seed.out" 2>"$work/seed.err" || die "tally-sim seed failed: $(tail -3 "$work/seed.err")"
    say "seeded in $((SECONDS - t0)) s: $(cat "$work/seed.out")"
    svc_stop command-svc
    psql_at tally -c ANALYZE
    psql_at postgres -c 'ALTER DATABASE tally RENAME TO tally_seed'
fi
rows=$(psql_at tally_seed -c "SELECT count(*) FROM outbox")
((rows > 0)) || die "the template has no unpublished rows"
payload=$(psql_at tally_seed -c "SELECT round(avg(octet_length(payload))) FROM events")

results=$work/results
: >"$results"
row_fmt='%-3s %-6s %5s %8d %7.2f %8.0f %6.1f %6.1f %6.1f %6.1f %5.0f %5.2f'
row() {
    # shellcheck disable=SC2059  # the table's row format
    printf "$row_fmt\n" "$@"
}
header() {
    table_header "$row_fmt" run build batch events seconds ev/s relay pg redis total other% load
}

# measure RUN BIN_INDEX BATCH: one run on a fresh copy of the template; appends its row.
measure() {
    local run=$1 bi=$2 batch=$3 bin=${bins[$2]} load t0 t1 s1 p0 p1 r0 r1 b0 a0 b1 a1
    local published backlog last=-1 last_change unmarked entries k p
    psql_at postgres -c 'DROP DATABASE IF EXISTS tally WITH (FORCE)' \
        -c 'CREATE DATABASE tally TEMPLATE tally_seed STRATEGY FILE_COPY'
    ((pgss == 0)) || psql_at tally -c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements' \
        -c 'SELECT pg_stat_statements_reset()' >/dev/null
    psql_at tally -c CHECKPOINT
    rcli FLUSHALL >/dev/null
    rcli CONFIG RESETSTAT >/dev/null
    load=$(awk '{ print $1 }' /proc/loadavg)
    p0=$(pg_ticks "$pg_pid")
    r0=$(proc_ticks "$redis_pid" redis-server)
    read -r b0 a0 < <(machine_ticks)
    t0=$(date +%s%N) # command-svc starts now: all its CPU is the run's
    svc_up "$bin" true "$batch"
    last_change=$SECONDS
    while :; do
        metrics_fetch "$http" || die "cannot read command-svc's /metrics"
        published=$(metric tally_relay_published_total)
        ((published < rows)) || break
        if ((published != last)); then
            last=$published last_change=$SECONDS
        elif ((SECONDS - last_change > stall)); then
            die "the relay stalled at $published of $rows events for $stall s"
        fi
        pid_alive "$svc_pid" || die "command-svc died: $(tail -5 "$run_log_dir/command-svc.log")"
        sleep 0.05
    done
    t1=$(date +%s%N)
    s1=$(proc_ticks "$svc_pid" command-svc)
    p1=$(pg_ticks "$pg_pid")
    r1=$(proc_ticks "$redis_pid" redis-server)
    read -r b1 a1 < <(machine_ticks)
    # The gauge must reach 0 (not timed). It is counted about once a second, but a count that
    # fails (one that took over a second, before ef8ac00) pauses it for a minute.
    for ((k = 0; k < 750; k++)); do
        metrics_fetch "$http" || die "cannot read command-svc's /metrics"
        backlog=$(metric tally_relay_backlog)
        ((backlog > 0)) || break
        sleep 0.1
    done
    ((backlog == 0)) || die "tally_relay_backlog is $backlog after every event was published"
    rcli INFO commandstats | tr -d '\r' >"$work/commandstats.$bi.$batch"
    if ((pgss)); then
        psql_at tally -F ' | ' -c "SELECT calls, rows, round(total_exec_time::numeric, 0),
                round(mean_exec_time::numeric, 3), shared_blks_hit + shared_blks_read,
                wal_bytes, left(regexp_replace(query, '\s+', ' ', 'g'), 90)
            FROM pg_stat_statements WHERE total_exec_time > 10 ORDER BY total_exec_time DESC
            LIMIT 8" >"$work/pgss.$bi.$batch"
    fi
    svc_stop command-svc
    unmarked=$(psql_at tally -c "SELECT count(*) FROM outbox")
    ((unmarked == 0)) || die "$unmarked rows are still unpublished after the run"
    entries=0
    for ((p = 0; p < partitions; p++)); do
        entries=$((entries + $(rcli XLEN "tally:events:$p")))
    done
    ((entries >= rows)) || die "the streams hold $entries entries for $rows events"
    awk -v hz="$clk_tck" -v n="$rows" -v ns=$((t1 - t0)) -v sv="$s1" -v pg=$((p1 - p0)) \
        -v rd=$((r1 - r0)) -v busy=$((b1 - b0)) -v all=$((a1 - a0)) 'BEGIN {
            us = 1e6 / hz / n; other = busy - sv - pg - rd
            printf "%.3f %.0f %.2f %.2f %.2f %.2f %.0f\n", ns / 1e9, n / (ns / 1e9), sv * us,
                pg * us, rd * us, (sv + pg + rd) * us, (other > 0 ? 100 * other / all : 0) }' |
        {
            read -r secs rate svus pgus rdus tot otherp
            row "$run" "$bi" "$batch" "$rows" "$secs" "$rate" "$svus" "$pgus" "$rdus" "$tot" \
                "$otherp" "$load"
        } | tee -a "$results"
}

echo "relay-bench: $(date -u '+%Y-%m-%d %H:%M UTC'); $rows unpublished events from $complaints" \
    "complaints (tally-sim seed), payload $payload B on average; $partitions partition(s)"
bench_about "build 0" "${bins[0]}" command-svc
for ((bi = 1; bi < ${#bins[@]}; bi++)); do
    bench_about "build $bi" "${bins[$bi]}" command-svc | tail -n 1
done
echo "relay, pg, redis, total: CPU us per event of command-svc, PostgreSQL, redis-server;" \
    "other%: both cores' share used by none of them; batch -: command-svc's default"
echo
header
configs=()
for bi in "${!bins[@]}"; do
    for b in "${sizes[@]}"; do
        configs+=("$bi $b")
    done
done
nc=${#configs[@]}
for ((run = 1; run <= runs; run++)); do
    for ((k = 0; k < nc; k++)); do
        i=$(((run % 2) ? k : nc - 1 - k))
        # shellcheck disable=SC2086  # "build batch"
        measure "$run" ${configs[i]}
    done
done

echo
echo "medians of $runs runs:"
header
for c in "${configs[@]}"; do
    read -r bi b <<<"$c"
    fields=()
    for k in 5 6 7 8 9 10 11 12; do
        fields+=("$(awk -v bi="$bi" -v b="$b" -v k=$k '$2 == bi && $3 == b { print $k }' \
            "$results" | median)")
    done
    row med "$bi" "$b" "$rows" "${fields[@]}"
done
for c in "${configs[@]}"; do
    read -r bi b <<<"$c"
    echo
    echo "build $bi batch $b, last run: Redis commands (INFO commandstats: calls, usec/call, usec/event)"
    awk -F'[:,=]' -v n="$rows" '/^cmdstat_/ { sub(/^cmdstat_/, "", $1)
            printf "  %-14s %9d %8.2f %8.3f\n", $1, $3, $7, $5 / n }' \
        "$work/commandstats.$bi.$b" | sort -k4 -g -r | head -6
    if ((pgss)); then
        echo "build $bi batch $b, last run: PostgreSQL statements (calls | rows | total ms | mean ms | blocks | WAL bytes | query)"
        sed 's/^/  /' "$work/pgss.$bi.$b"
    fi
done
echo "load at the end:$(uptime | sed 's/.*load average://')"
