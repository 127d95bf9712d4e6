#!/usr/bin/env bash
# The query benchmark: how fast the real query-svc answers tally.v1.Dashboard for a tenant with a
# year of about 400,000 complaints. On a private redis-server (a free loopback port, a mktemp
# directory, no persistence, stopped by a trap):
#
#  1. Fill: bench-eventgen --until-now writes a year of one tenant's events ending now (EVENTS,
#     about 4.8 per complaint), and the real projector applies them until caught up. Prints how
#     long that took and INFO memory (with the stream, and after DEL of the stream = the read
#     model). The projector is stopped before measuring: Redis serves only the queries.
#  2. Check: the real query-svc (TALLY_WORKERS from WORKERS) answers one GetDashboard; its
#     figures are printed and must be sane (the status counts add up to the complaints written,
#     the 30-day trend, resolution, agent and category panels are not empty), and bin/tally
#     draws it when it was built.
#  3. Measure, RUNS times for each WORKERS value (a fresh query-svc each time, the values
#     alternating run by run), with bench-queryload:
#       low:   GetDashboard open loop at LOW_RATE/s for LOW_SECONDS s: p50/p99 from the due time
#       cN:    GetDashboard closed loop at concurrency N for each N in CONCURRENCY: pages/s
#       ov:    GetOverview closed loop at OV_CONCURRENCY: QPS
#     Each line also gives the CPU split over the measured seconds, as % of one core: query-svc,
#     redis-server, the load generator, and everything else on the machine (/proc/stat minus
#     the three): the machine has 2 cores for all of them. And CPU us per request of query-svc
#     and Redis, the steadiest numbers.
#  Then the medians over the runs, INFO commandstats of one saturated GetDashboard run (which
#  Redis commands a page costs), and optionally (PERF=1) perf profiles of query-svc and Redis.
#
# Prints numbers only; it fails only when something does not work (a server does not start or
# stop cleanly, an event is parked, a call fails, the reply is not sane), never on a time. See
# bench/README.md.
#
# Usage: bench/query-bench.sh [BUILD_DIR]    (default: $BUILD_DIR, else <repo>/build)
# Environment: RUNS (3), EVENTS (1920000: about 400,000 complaints), SEED (1), WORKERS ("2 4"),
# LOW_RATE (50), LOW_SECONDS (20), CONCURRENCY ("1 4 16 64"), OV_CONCURRENCY (16), DURATION (10:
# seconds of each closed-loop measurement), WARMUP (2), CONNECTIONS (1), PROJ_BATCH (empty: the
# projector's default), STALL_SECONDS (120), PERF (0; 1 = perf record query-svc and Redis for
# DURATION s during one saturated run, needs perf).
# Builds nothing: expects BUILD_DIR/bin/{projector,query-svc,bench-eventgen,bench-queryload};
# BUILD_DIR/bin/tally, when there, shows the checked page as the CLI draws it.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source-path=SCRIPTDIR/.. source=scripts/lib/run.sh
source "$repo/scripts/lib/run.sh"
build=${1:-${BUILD_DIR:-$repo/build}}
runs=${RUNS:-3}
events=${EVENTS:-1920000}
seed=${SEED:-1}
workers_list=${WORKERS:-2 4}
low_rate=${LOW_RATE:-50}
low_seconds=${LOW_SECONDS:-20}
concurrency_list=${CONCURRENCY:-1 4 16 64}
ov_concurrency=${OV_CONCURRENCY:-16}
duration=${DURATION:-10}
warmup=${WARMUP:-2}
connections=${CONNECTIONS:-1}
proj_batch=${PROJ_BATCH:-}
stall_seconds=${STALL_SECONDS:-120}
perf_on=${PERF:-0}
projector_bin=$build/bin/projector
query_bin=$build/bin/query-svc
eventgen_bin=$build/bin/bench-eventgen
load_bin=$build/bin/bench-queryload
stream=tally:events:0
tenant="tenant-0"
grpc_port= # query-svc's gRPC port (query_start)

need_cmd redis-server redis-cli curl python3
((perf_on == 0)) || command -v perf >/dev/null || die "PERF=1 needs perf"
need_bin "$projector_bin" "$query_bin" "$eventgen_bin" "$load_bin"
check_count runs events low_rate low_seconds ov_concurrency duration connections stall_seconds
for v in $workers_list $concurrency_list; do
    [[ $v =~ ^[1-9][0-9]*$ ]] || die "WORKERS and CONCURRENCY must list positive integers"
done
check_int seed warmup
[[ -z $proj_batch || $proj_batch =~ ^[1-9][0-9]*$ ]] || die "PROJ_BATCH must be a positive integer"

run_init
run_workdir

# fill: part 1.
fill() {
    local gen_out written http_port t0 t1
    gen_out=$("$eventgen_bin" --redis "127.0.0.1:$redis_port" --events "$events" --tenants 1 \
        --seed "$seed" --until-now)
    echo "  $gen_out"
    written=$(awk '{ print $2 }' <<<"$gen_out")
    complaints=$(sed -n 's/.*: \([0-9]*\) complaints;.*/\1/p' <<<"$gen_out")
    [[ $(rcli XLEN "$stream") == "$written" ]] || die "the stream does not hold $written entries"
    local mem_stream
    mem_stream=$(redis_info memory used_memory)

    free_port http_port
    local batch_env=()
    [[ -n $proj_batch ]] && batch_env=(TALLY_PROJECTOR_BATCH="$proj_batch")
    t0=$EPOCHREALTIME
    svc_start projector "http://127.0.0.1:$http_port/healthz" \
        env -i PATH="$PATH" TALLY_REDIS_URL="$redis_url" TALLY_HTTP_LISTEN="127.0.0.1:$http_port" \
        TALLY_LOG_LEVEL=warn "${batch_env[@]}" "$projector_bin"
    projector_wait_applied "127.0.0.1:$http_port" "$written" "$stall_seconds"
    t1=$EPOCHREALTIME
    (($(metric tally_projector_parked_total) == 0)) || die "events were parked (see tally:dead:0)"
    svc_stop projector
    awk -v n="$written" -v t0="$t0" -v t1="$t1" -v b="${proj_batch:-default}" 'BEGIN {
        printf "  projector (batch %s): %d events applied in %.1f s (%.0f events/s)\n", b, n, t1 - t0, n / (t1 - t0) }'
    local mem_after mem_model
    mem_after=$(redis_info memory used_memory)
    rcli DEL "$stream" >/dev/null
    mem_model=$(redis_info memory used_memory)
    awk -v s="$mem_stream" -v a="$mem_after" -v m="$mem_model" -v c="$complaints" 'BEGIN {
        printf "  INFO memory used_memory: with the stream %.1f MiB, after the catch-up %.1f MiB,\n", s / 1048576, a / 1048576
        printf "  after DEL of the stream (the read model) %.1f MiB = %.0f B per complaint\n", m / 1048576, m / c }'
    echo "  $(rcli INFO memory | tr -d '\r' | grep -E '^(used_memory_human|used_memory_rss_human|mem_fragmentation_ratio):' | tr '\n' ' ')"
    echo "  keys: $(rcli DBSIZE); open complaints: $(rcli ZCARD "{t:$tenant}:1:open")"
}

# query_start WORKERS: a fresh query-svc on free ports (grpc_port), waits for /healthz.
query_start() {
    local http_port
    free_port grpc_port http_port
    auth_dev_up "$(dirname "$query_bin")"
    svc_start query-svc "http://127.0.0.1:$http_port/healthz" \
        env -i PATH="$PATH" "${auth_env[@]}" TALLY_REDIS_URL="$redis_url" TALLY_GRPC_LISTEN="127.0.0.1:$grpc_port" \
        TALLY_HTTP_LISTEN="127.0.0.1:$http_port" TALLY_WORKERS="$1" TALLY_LOG_LEVEL=warn "$query_bin"
    query_pid=${proc_pid[query-svc]}
}

# check: part 2, one GetDashboard through bench-queryload --once.
check() {
    "$load_bin" --target "127.0.0.1:$grpc_port" --tenant "$tenant" --once >"$work/once" ||
        die "GetDashboard failed: $(cat "$work/once")"
    paste -d' ' - - - - <"$work/once" | sed 's/^/  /'
    awk -F= -v c="$complaints" '{ v[$1] = $2 } END {
            s = v["overview.open"] + v["overview.in_progress"] + v["overview.resolved"] + v["overview.closed"]
            if (s != c) { print "status counts add up to " s ", not the " c " complaints written"; exit 1 }
            n = split("trend.created trend.resolved resolution.count agents.resolved categories.total overview.backlog freshness.events_applied", k, " ")
            for (i = 1; i <= n; i++) if (v[k[i]] + 0 <= 0) { print k[i] " is " v[k[i]] + 0; exit 1 }
            if (v["trend.buckets"] != 30) { print "the default trend has " v["trend.buckets"] " buckets, not 30"; exit 1 }
        }' "$work/once" >"$work/check" || die "the GetDashboard reply is not sane: $(cat "$work/check")"
    echo "  sane: the status counts add up to the $complaints complaints; no panel is empty"
    if [[ -x $build/bin/tally ]]; then
        echo
        echo "  the same page as the tally CLI shows it (tally dashboard --once --ascii):"
        if COLUMNS=100 "$build/bin/tally" dashboard --query "127.0.0.1:$grpc_port" --tenant "$tenant" \
            --once --ascii >"$work/tally.out" 2>&1; then
            sed 's/^/  | /' "$work/tally.out"
        else
            echo "  (tally failed, not counted against the benchmark: $(tail -3 "$work/tally.out"))"
        fi
    fi
}

# measure RUN WORKERS LABEL SECONDS ARGS...: one bench-queryload run of SECONDS measured seconds
# (after WARMUP) against query-svc, and the CPU of query-svc, Redis and the rest of the machine
# over those seconds; appends a line to results. INFO commandstats is reset at the start (the
# warm-up is in it) and kept for the closed-loop runs.
measure() {
    local run=$1 w=$2 label=$3 secs=$4 q0 q1 r0 r1 m0 m1 t0 t1 out rc=0
    shift 4
    rcli CONFIG RESETSTAT >/dev/null
    "$load_bin" --target "127.0.0.1:$grpc_port" --tenant "$tenant" --connections "$connections" \
        --warmup "$warmup" --duration "$secs" "$@" >"$work/load.out" 2>"$work/load.err" &
    proc_adopt load $!
    sleep "$warmup"
    q0=$(proc_ticks "$query_pid" query-svc)
    r0=$(proc_ticks "$redis_pid" redis-server)
    read -r m0 _ < <(machine_ticks)
    t0=$EPOCHREALTIME
    if [[ $label == perf ]]; then
        perf record -q -F 499 -g -p "$query_pid" -o "$work/query.perf" -- sleep "$secs" 2>/dev/null &
        proc_adopt perf-query $!
        perf record -q -F 499 -g -p "$redis_pid" -o "$work/redis.perf" -- sleep "$secs" 2>/dev/null &
        proc_adopt perf-redis $!
    fi
    sleep "$secs"
    q1=$(proc_ticks "$query_pid" query-svc)
    r1=$(proc_ticks "$redis_pid" redis-server)
    read -r m1 _ < <(machine_ticks)
    t1=$EPOCHREALTIME
    proc_wait load || rc=$?
    if [[ $label == perf ]]; then
        proc_wait perf-query || true
        proc_wait perf-redis || true
    fi
    out=$(cat "$work/load.out")
    echo "$run w$w $label: $out" >>"$work/raw"
    ((rc == 0)) || die "bench-queryload ($label) failed ($rc): $out $(cat "$work/load.err")"
    [[ $label == c* ]] && rcli INFO commandstats | tr -d '\r' >"$work/cmdstats.$label.w$w.r$run"
    awk -v run="$run" -v w="$w" -v l="$label" -v q="$((q1 - q0))" -v r="$((r1 - r0))" \
        -v m="$((m1 - m0))" -v hz="$clk_tck" -v t0="$t0" -v t1="$t1" -v out="$out" \
        -v fmt="$row_fmt" 'BEGIN {
            n = split(out, f, " "); for (i = 1; i <= n; i++) { split(f[i], kv, "="); v[kv[1]] = kv[2] }
            s = t1 - t0; qs = q / hz; rs = r / hz; cs = v["client_cpu_pct"] / 100 * s
            os = m / hz - qs - rs - cs; if (os < 0) os = 0
            req = v["rate"] * s
            printf fmt "\n", run, w, l, v["rate"], v["p50_ms"], v["p90_ms"], v["p99_ms"], v["max_ms"],
                100 * qs / s, 100 * rs / s, 100 * cs / s, 100 * os / s,
                (req ? qs * 1e6 / req : 0), (req ? rs * 1e6 / req : 0), v["client_us_per_req"]
        }' | tee -a "$work/results"
}

# The table: a row per measurement (printed by measure), and the median rows.
row_fmt='%-4s %3d %-5s %8.1f %7.2f %7.2f %7.2f %7.1f %5.0f %5.0f %5.0f %5.0f %7.0f %7.0f %6.0f'
header() {
    table_header "$row_fmt" run wrk test 'rate/s' p50ms p90ms p99ms maxms 'qsvc%' 'redis%' \
        'load%' 'other%' 'qsvc/r' 'redis/r' 'load/r'
}

echo "query benchmark: one tenant, a year of events ending now ($events events, seed $seed)"
bench_about query-svc "$query_bin" query-svc common
echo
echo "1. fill (bench-eventgen --until-now, then the projector until caught up)"
redis_private_start
fill
echo
echo "2. one GetDashboard (default request: the 30 days ending today), workers ${workers_list%% *}"
query_start "${workers_list%% *}"
check
svc_stop query-svc
echo
echo "3. measurements (rate/s: achieved; latency in ms; CPU % of one core over the run:"
echo "   query-svc, redis-server, the load generator, everything else; CPU us per request of"
echo "   query-svc, Redis and the load generator). low = GetDashboard open loop at $low_rate/s"
echo "   (latency from the due time), cN = GetDashboard closed loop at concurrency N, ov ="
echo "   GetOverview closed loop at concurrency $ov_concurrency; $connections connection(s)"
echo
: >"$work/results"
header
perf_c=$(awk -v l="$concurrency_list" 'BEGIN { n = split(l, c, " "); print c[(n > 2) ? n - 1 : n] }')
for run in $(seq "$runs"); do
    for w in $workers_list; do
        query_start "$w"
        measure "$run" "$w" low "$low_seconds" --rate "$low_rate"
        for c in $concurrency_list; do
            measure "$run" "$w" "c$c" "$duration" --concurrency "$c"
        done
        measure "$run" "$w" ov "$duration" --method GetOverview --concurrency "$ov_concurrency"
        if [[ $perf_on == 1 && $run == 1 && $w == "${workers_list%% *}" ]]; then
            measure "$run" "$w" perf "$duration" --concurrency "$perf_c" >/dev/null
        fi
        svc_stop query-svc
    done
done

echo
echo "medians over $runs runs"
header
read -ra fmts <<<"$row_fmt" # a format per column
for w in $workers_list; do
    labels=(low)
    for c in $concurrency_list; do
        labels+=("c$c")
    done
    for l in "${labels[@]}" ov; do
        awk -v w="$w" -v l="$l" '$1 ~ /^[0-9]+$/ && $2 == w && $3 == l' "$work/results" >"$work/sel"
        # shellcheck disable=SC2059  # the table's row format
        printf "${fmts[0]} ${fmts[1]} ${fmts[2]}" med "$w" "$l"
        for ((i = 3; i < ${#fmts[@]}; i++)); do
            printf ' %s' "$(awk -v c=$((i + 1)) '{ print $c }' "$work/sel" | median "${fmts[i]}")"
        done
        printf '\n'
    done
done | tee "$work/medians"

first_w=${workers_list%% *}
echo
echo "Redis commands of one GetDashboard page (INFO commandstats of run 1, workers $first_w, c$perf_c,"
echo "warm-up included; pages = GET calls, one per page):"
cmdstats_page() { # cmdstats_page FILE TOTAL: per-page lines, or with TOTAL=1 the total line
    awk -F'[:=,]' -v total="$2" '/^cmdstat_/ && $1 !~ /_(config|info|ping|select)/ {
            sub(/^cmdstat_/, "", $1); calls[$1] = $3; usec[$1] = $5; tot += $5 }
        END {
            pages = calls["get"]; if (!pages) { if (total) print "  no GET calls recorded"; exit }
            if (total) { printf "  %-12s %8.1f us/page over %d pages\n", "total", tot / pages, pages; exit }
            for (c in calls) printf "  %-12s %6.1f calls/page %8.1f us/call %8.1f us/page %5.1f%%\n",
                c, calls[c] / pages, usec[c] / calls[c], usec[c] / pages, 100 * usec[c] / tot
        }' "$1"
}
cmdstats_page "$work/cmdstats.c$perf_c.w$first_w.r1" 0 | sort -k6 -g -r
cmdstats_page "$work/cmdstats.c$perf_c.w$first_w.r1" 1

echo
echo "bench-queryload's own lines (send_lag_p99_ms: how late the open loop's sends went out):"
grep -v ' perf: ' "$work/raw" | sed 's/bench-queryload: //; s/^/  /'

if [[ $perf_on == 1 ]]; then
    for who in query-svc redis-server; do
        echo
        echo "perf: $who during a GetDashboard closed loop at concurrency $perf_c (self time, top 25)"
        perf report -i "$work/${who%%-*}.perf" --no-children --sort dso,symbol --stdio 2>/dev/null |
            grep -E '^ +[0-9.]+%' | sed 's/  */ /g; s/ - - *$//' | awk 'NR <= 25'
    done
fi

echo
echo "summary (preliminary when the machine was shared; other% is what others took)"
awk -v goal_p50=2 -v goal_p99=5 -v goal_rate=1000 '
    $1 == "med" && $3 == "low" { printf "  GetDashboard at %s/s, %d workers: p50 %.2f ms (goal < %d: %s), p99 %.2f ms (goal < %d: %s)\n",
        '"$low_rate"', $2, $5, goal_p50, ($5 < goal_p50) ? "met" : "NOT met", $7, goal_p99, ($7 < goal_p99) ? "met" : "NOT met" }
    $1 == "med" && $3 ~ /^c/ { if ($4 > best[$2]) { best[$2] = $4; at[$2] = $3; p99[$2] = $7 } }
    $1 == "med" && $3 == "ov" { printf "  GetOverview, %d workers: %.0f QPS at concurrency '"$ov_concurrency"'\n", $2, $4 }
    END { for (w in best) printf "  GetDashboard saturation, %s workers: %.0f pages/s at %s (p99 %.1f ms; goal > %d: %s)\n",
        w, best[w], at[w], p99[w], goal_rate, (best[w] > goal_rate) ? "met" : "NOT met" }' "$work/medians"
echo "  load at the end: $(uptime)"
