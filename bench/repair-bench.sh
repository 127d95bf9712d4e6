#!/usr/bin/env bash
# The self-repair benchmark: how long the system takes from a FLUSHALL of Redis to a read
# model that `tally verify` finds clean again, rebuilt by the relay from PostgreSQL's event log,
# and what dashboards answer meanwhile.
#
# It runs against the whole-system demo left running (`scripts/demo --keep`: about 200,000
# complaints and 975,000 events seeded into PostgreSQL, a live trickle of commands):
#
#  1. Waits until the read model verifies clean (`tally verify`, every tenant).
#  2. Starts bench-queryload: GetDashboard for TENANT in an open loop at RATE/s for SECONDS s,
#     latency measured from each call's due time, status codes counted (UNAVAILABLE is the
#     honest answer for a tenant not yet back in the read model).
#  3. FLUSHALL. Then polls, every 100 ms: when the relay announced the repair (tally:repair
#     appears), when every event was on the stream again (state applying), when the repair
#     ended (tally:repair gone), and then runs `tally verify` until it is clean.
#  4. Prints the times from the FLUSHALL, the events in PostgreSQL, the query load's line.
#
# Prints numbers only; fails only when something does not work (verify never clean within
# STALL_SECONDS, a tool missing), never on a time. See bench/README.md.
#
# Usage: bench/repair-bench.sh [BUILD_DIR]   (default: $BUILD_DIR, else <repo>/build)
# Environment: TENANT (acme), RATE (20), LOAD_SECONDS (240: how long the query load runs, from 3 s
# before the FLUSHALL), STALL_SECONDS (900), QUERY (127.0.0.1:50052, the demo's query-svc).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source-path=SCRIPTDIR/.. source=scripts/lib/run.sh
source "$repo/scripts/lib/run.sh"
build=${1:-${BUILD_DIR:-$repo/build}}
tenant=${TENANT:-acme}
rate=${RATE:-20}
seconds=${LOAD_SECONDS:-240}
stall=${STALL_SECONDS:-900}
query=${QUERY:-127.0.0.1:50052}
tally=$build/bin/tally
load=$build/bin/bench-queryload

need_bin "$tally" "$load"
eval "$("$repo/scripts/stack" env)"
redis_url=$TALLY_REDIS_URL
rcli PING >/dev/null || die "Redis does not answer at $TALLY_REDIS_URL (scripts/demo --keep first)"
ms() { date +%s%3N; }

verify_clean() { "$tally" verify --days 35 >/dev/null 2>&1; }

say "waiting until the read model verifies clean"
until verify_clean; do
    sleep 2
done
events=$(psql "$TALLY_PG_MIGRATE_DSN" -XAtq -c "SELECT count(*) FROM events") # the owner: every tenant
say "clean; $events events in PostgreSQL"

run_init
run_workdir
out=$work/load.out
"$load" --target "$query" --tenant "$tenant" --rate "$rate" --duration "$seconds" --warmup 1 \
    >"$out" 2>/dev/null &
proc_adopt load $!
sleep 3

t0=$(ms)
rcli FLUSHALL >/dev/null
say "FLUSHALL at $t0"
announced=0 applying=0 ended=0
while ((ended == 0)); do
    ((($(ms) - t0) / 1000 < stall)) || die "the repair did not end within $stall s"
    state=$(rcli HGET tally:repair state)
    now=$(ms)
    if [[ -n $state ]] && ((announced == 0)); then announced=$now; fi
    if [[ $state == applying ]] && ((applying == 0)); then applying=$now; fi
    if [[ -z $state ]] && ((announced > 0)); then ended=$now; fi
    sleep 0.1
done
until verify_clean; do
    ((($(ms) - t0) / 1000 < stall)) || die "verify was not clean within $stall s"
    sleep 1
done
clean=$(ms)
proc_wait load || true

printf 'events_in_postgres=%s\n' "$events"
awk -v t0="$t0" -v a="$announced" -v p="$applying" -v e="$ended" -v c="$clean" 'BEGIN {
    printf "announced_s=%.1f republished_s=%s repair_ended_s=%.1f verify_clean_s=%.1f\n",
        (a - t0) / 1000, (p > 0 ? sprintf("%.1f", (p - t0) / 1000) : "n/a(not_seen)"),
        (e - t0) / 1000, (c - t0) / 1000 }'
printf 'query load during the repair (%s/s GetDashboard %s): %s\n' "$rate" "$tenant" "$(cat "$out")"
