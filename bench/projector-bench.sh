#!/usr/bin/env bash
# The projector benchmark: how fast the real projector applies events to a private Redis, and
# what the read model costs in memory. Three parts, each on a fresh redis-server of its own:
#
#  a. Catch-up: EVENTS events (bench-eventgen: a seeded, realistic mix of TENANTS tenants) are
#     put into tally:events:0 first; then the projector starts and is timed until its /metrics
#     show every event applied (or skipped as a duplicate). RUNS runs at the projector's
#     default batch, then one run per size in BATCHES. Each run also reports the CPU that Redis
#     and the projector used (and the rest of the machine), and FCALL's calls and time from
#     INFO commandstats.
#  b. Lag: the projector runs while bench-eventgen writes LAG_RATE events/s for LAG_SECONDS s;
#     then tally_projector_lag_seconds and tally_projector_batch_seconds are read from /metrics
#     (buckets, and p50/p90/p99 interpolated within the cumulative buckets).
#  c. Memory (first catch-up run): INFO memory used_memory empty, with the stream, after the
#     catch-up, and after DEL of the stream (= the read model), per complaint and per million
#     complaints, and MEMORY USAGE of every read-model key, grouped by kind.
# Prints numbers only; it fails only when something does not work (a server does not start,
# events are parked or never applied), never on a time. See bench/README.md.
#
# Usage: bench/projector-bench.sh [BUILD_DIR]    (default: $BUILD_DIR, else <repo>/build)
# Environment: RUNS (3), EVENTS (1000000), TENANTS (3), SEED (1), BATCH (2000: the projector's
# default), BATCHES ("100 500 2000"; "" skips), LAG_RATE (1000), LAG_SECONDS (60; 0 skips),
# STALL_SECONDS (120: give up when nothing is applied for this long).
# Builds nothing: expects BUILD_DIR/bin/projector and BUILD_DIR/bin/bench-eventgen.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source-path=SCRIPTDIR/.. source=scripts/lib/run.sh
source "$repo/scripts/lib/run.sh"
build=${1:-${BUILD_DIR:-$repo/build}}
runs=${RUNS:-3}
events=${EVENTS:-1000000}
tenants=${TENANTS:-3}
seed=${SEED:-1}
batch=${BATCH:-2000}
batches=${BATCHES-100 500 2000}
lag_rate=${LAG_RATE:-1000}
lag_seconds=${LAG_SECONDS:-60}
stall_seconds=${STALL_SECONDS:-120}
projector_bin=$build/bin/projector
eventgen_bin=$build/bin/bench-eventgen
stream=tally:events:0
http_port= # the projector's HTTP port (proj_start)

need_cmd redis-server redis-cli curl python3
need_bin "$projector_bin" "$eventgen_bin"
check_count runs events tenants batch lag_rate stall_seconds
check_int seed lag_seconds

run_init
run_workdir

# proj_start BATCH: the projector against our Redis (with a clean environment: it refuses
# TALLY_* variables it does not know); waits until /healthz answers. Sets http_port, proj_pid.
proj_start() {
    free_port http_port
    svc_start projector "http://127.0.0.1:$http_port/healthz" \
        env -i PATH="$PATH" TALLY_REDIS_URL="$redis_url" TALLY_HTTP_LISTEN="127.0.0.1:$http_port" \
        TALLY_LOG_LEVEL=warn TALLY_PROJECTOR_BATCH="$1" "$projector_bin"
    proj_pid=${proc_pid[projector]}
}

scrape() {
    metrics_fetch "127.0.0.1:$http_port" || die "cannot read the projector's /metrics"
}

load1() {
    cut -d' ' -f1 /proc/loadavg
}

# eventgen ARGS...: bench-eventgen against our Redis; its summary line goes to stdout.
eventgen() {
    "$eventgen_bin" --redis "127.0.0.1:$redis_port" --tenants "$tenants" --seed "$seed" "$@"
}

# wait_applied N: until the projector has applied (or skipped) N events.
wait_applied() {
    projector_wait_applied "127.0.0.1:$http_port" "$1" "$stall_seconds"
}

# memory_report: part c, on the Redis of a finished catch-up (the stream is deleted).
memory_report() {
    local complaints=0 open=0 t used_after used_model
    used_after=$(redis_info memory used_memory)
    for t in $(seq 0 $((tenants - 1))); do
        complaints=$((complaints + $(rcli HLEN "{t:tenant-$t}:1:cv")))
        open=$((open + $(rcli ZCARD "{t:tenant-$t}:1:open")))
    done
    rcli DEL "$stream" >/dev/null
    used_model=$(redis_info memory used_memory)
    rcli --scan --pattern '{t:*' >"$work/keys"
    sed 's/^/MEMORY USAGE "/; s/$/" SAMPLES 0/' "$work/keys" | rcli >"$work/sizes"
    paste "$work/keys" "$work/sizes" >"$work/keysizes"
    {
        echo "memory (run 1, INFO memory used_memory; $complaints complaints, $open of them open):"
        awk -v e="$mem_empty" -v s="$mem_stream" -v su="$stream_usage" -v a="$used_after" \
            -v m="$used_model" -v c="$complaints" -v n="$events" 'BEGIN {
                printf "  empty Redis                      %12d B\n", e
                printf "  + %d-event stream               %12d B  (stream: MEMORY USAGE %d B, %.0f B/entry)\n", n, s, su, su / n
                printf "  after the catch-up               %12d B\n", a
                printf "  after DEL of the stream          %12d B\n", m
                printf "  read model (last - empty)        %12d B = %.1f MiB\n", m - e, (m - e) / 1048576
                printf "  per complaint                    %12.0f B\n", (m - e) / c
                printf "  per million complaints (linear)  %12.0f MiB\n", (m - e) / c * 1e6 / 1048576
            }'
        echo
        echo "  read-model keys by kind (MEMORY USAGE ... SAMPLES 0, all tenants; M = a month):"
        awk '{
                k = $1; sub(/^\{t:[^}]*\}:/, "", k); sub(/^[0-9]+:/, "", k)
                gsub(/[0-9][0-9][0-9][0-9]-[0-9][0-9]/, "M", k)
                n[k]++; b[k] += $2; tot += $2
            } END {
                for (k in n) printf "  %-12s %6d keys %12d B %6.1f%%\n", k, n[k], b[k], 100 * b[k] / tot
                printf "  %-12s %6d keys %12d B (sum of MEMORY USAGE)\n", "total", NR, tot
            }' "$work/keysizes" | sort -k4 -n -r
        echo
        echo "  biggest keys:"
        sort -k2 -n -r "$work/keysizes" | awk 'NR <= 10 { printf "  %-36s %12d B\n", $1, $2 }'
        echo
        per_complaint=$(awk '$1 ~ /:(cv|open|od)$/ { b += $2 } END { print b }' "$work/keysizes")
        months=$(awk '$1 ~ /:d:[0-9-]+$/' "$work/keysizes" | wc -l)
        awk -v b="$per_complaint" -v c="$complaints" -v o="$open" -v months="$months" -v tot="$(awk '{ t += $2 } END { print t }' "$work/keysizes")" 'BEGIN {
                printf "  grows with complaints: cv + open + od = %d B, %.0f B per complaint (open and od hold\n", b, b / c
                printf "    only the %d open ones), i.e. %.0f MiB per million complaints\n", o, b / c * 1e6 / 1048576
                printf "  grows with days x groups x tenants (counters, histograms, leaderboards): %d B = %.1f MiB\n", tot - b, (tot - b) / 1048576
                printf "    for these %d tenant-months, %.0f KiB per tenant-month\n", months, (tot - b) / months / 1024
            }'
    } | tee "$work/memory.txt"
}

# catchup LABEL BATCH MEMORY: one catch-up run on a fresh Redis; appends a line to results.
catchup() {
    local label=$1 b=$2 with_memory=$3 load t0 t1 r0 r1 p0 p1 m0 m1 gen_out
    redis_private_start
    mem_empty=$(redis_info memory used_memory)
    gen_out=$(eventgen --events "$events")
    echo "  $gen_out" >>"$work/eventgen.txt"
    [[ $(rcli XLEN "$stream") == "$events" ]] || die "the stream does not hold $events entries"
    mem_stream=$(redis_info memory used_memory)
    stream_usage=$(rcli MEMORY USAGE "$stream" SAMPLES 0)
    rcli CONFIG RESETSTAT >/dev/null
    load=$(load1)
    read -r m0 _ < <(machine_ticks)
    r0=$(proc_ticks "$redis_pid" redis-server)
    t0=$EPOCHREALTIME
    proj_start "$b"
    p0=0
    wait_applied "$events"
    t1=$EPOCHREALTIME
    r1=$(proc_ticks "$redis_pid" redis-server)
    p1=$(proc_ticks "$proj_pid" projector)
    read -r m1 _ < <(machine_ticks)
    local gaps parked pending
    gaps=$(metric tally_projector_gaps_total)
    parked=$(metric tally_projector_parked_total)
    ((parked == 0)) || die "$parked events were parked (see tally:dead:0)"
    rcli INFO commandstats | tr -d '\r' >"$work/cmdstats"
    svc_stop projector
    pending=$(rcli XINFO GROUPS "$stream" | awk 'p == 1 { print } { p = /^pending$/ ? 1 : 0 }')
    ((pending == 0)) || die "$pending entries still pending after the catch-up"
    local fcalls fusec
    fcalls=$(awk -F'[:=,]' '$1 == "cmdstat_fcall" { print $3 }' "$work/cmdstats")
    fusec=$(awk -F'[:=,]' '$1 == "cmdstat_fcall" { print $5 }' "$work/cmdstats")
    awk -v l="$label" -v b="$b" -v n="$events" -v t0="$t0" -v t1="$t1" -v r="$((r1 - r0))" \
        -v p="$((p1 - p0))" -v m="$((m1 - m0))" -v hz="$clk_tck" -v fc="$fcalls" -v fu="$fusec" \
        -v g="$gaps" -v ld="$load" -v fmt="$row_fmt" 'BEGIN {
            s = t1 - t0; rs = r / hz; ps = p / hz; os = m / hz - rs - ps
            if (os < 0) os = 0
            printf fmt "\n", l, b, n / s, s, 100 * rs / s, 100 * ps / s, 100 * os / s, fc, n / fc,
                fu / fc, fu / n, rs * 1e6 / n, g, ld
        }' | tee -a "$work/results"
    if [[ $with_memory == 1 ]]; then
        cp "$work/cmdstats" "$work/cmdstats.run1"
        memory_report >/dev/null
    fi
    redis_private_stop
}

# quantile Q FILE: like PromQL histogram_quantile, from "le cumulative-count" lines (+Inf last).
quantile() {
    awk -v q="$1" '{ le[NR] = $1; c[NR] = $2 } END {
            total = c[NR]; if (total == 0) { print "n/a"; exit }
            rank = q * total; prev = 0; prevc = 0
            for (i = 1; i <= NR; i++) {
                if (c[i] >= rank) {
                    if (le[i] == "+Inf") { printf "> %s s", le[i - 1]; exit }
                    v = prev + (le[i] - prev) * (rank - prevc) / (c[i] - prevc)
                    printf "%.4f s (bucket <= %s)", v, le[i]; exit
                }
                prev = le[i]; prevc = c[i]
            }
        }' "$2"
}

# histogram NAME: prints the buckets of a histogram of the last scrape and its p50/p90/p99.
histogram() {
    local name=$1
    awk -v n="${name}_bucket" 'index($1, n "{") == 1 {
            le = $1; sub(/.*le="/, "", le); sub(/".*/, "", le); print le, $2 }' \
        "$work/metrics" >"$work/hist"
    local count sum
    count=$(metric "${name}_count")
    sum=$(metric "${name}_sum")
    awk -v c="$count" -v s="$sum" 'BEGIN { printf "  count %d, mean %.4f s\n", c, c ? s / c : 0 }'
    awk '{ printf "  le %-7s %9d cumulative %9d\n", $1, $2 - prev, $2; prev = $2 }' "$work/hist"
    echo "  p50 $(quantile 0.5 "$work/hist"); p90 $(quantile 0.9 "$work/hist"); p99 $(quantile 0.99 "$work/hist")"
}

# lag_run: part b.
lag_run() {
    local n=$((lag_rate * lag_seconds)) load r0 r1 p0 p1 t0 t1 gen_out
    redis_private_start
    proj_start "$batch"
    for _ in $(seq 100); do # the projector creates the group (MKSTREAM) once connected
        [[ $(rcli XINFO GROUPS "$stream" 2>/dev/null) == *projector* ]] && break
        sleep 0.1
    done
    load=$(load1)
    r0=$(proc_ticks "$redis_pid" redis-server)
    p0=$(proc_ticks "$proj_pid" projector)
    t0=$EPOCHREALTIME
    gen_out=$(eventgen --rate "$lag_rate" --duration "$lag_seconds")
    wait_applied "$n"
    t1=$EPOCHREALTIME
    r1=$(proc_ticks "$redis_pid" redis-server)
    p1=$(proc_ticks "$proj_pid" projector)
    scrape
    {
        echo "lag at $lag_rate events/s for $lag_seconds s (batch $batch; load $load at the start):"
        echo "  $gen_out"
        awk -v r="$((r1 - r0))" -v p="$((p1 - p0))" -v hz="$clk_tck" -v t0="$t0" -v t1="$t1" \
            'BEGIN { s = t1 - t0; printf "  CPU: Redis %.1f%%, projector %.1f%% of one core over %.1f s\n", 100 * r / hz / s, 100 * p / hz / s, s }'
        echo "  gaps $(metric tally_projector_gaps_total), parked $(metric tally_projector_parked_total), duplicates $(metric tally_projector_duplicates_total)"
        echo
        echo "tally_projector_lag_seconds (apply time - recorded_at_ms):"
        histogram tally_projector_lag_seconds
        echo
        echo "tally_projector_batch_seconds (read-to-ack time of one batch; $(awk -v a="$(metric tally_projector_events_applied_total)" -v c="$(metric tally_projector_batch_seconds_count)" 'BEGIN { printf "%.2f", c ? a / c : 0 }') events per batch):"
        histogram tally_projector_batch_seconds
    } >"$work/lag.txt"
    svc_stop projector
    redis_private_stop
}

# The table: one row per catch-up run (printed by catchup), the median row after them.
row_fmt='%-6s %5d %9.0f %7.1f %6.0f %6.0f %6.0f %8d %6.1f %7.1f %7.1f %7.1f %5d %5.2f'
med_fmt='%-6s %5d %9.0f %7.1f %6.0f %6.0f %6.0f %8.0f %6.1f %7.1f %7.1f %7.1f %5s %5.2f'
header() {
    table_header "$row_fmt" run batch events/s seconds redis% proj% other% FCALLs ev/FC us/FC \
        us/ev cpu/ev gaps load
}

echo "projector catch-up: $events events of $tenants tenants (seed $seed) preloaded into $stream"
bench_about projector "$projector_bin"
echo "columns: CPU % of one core while catching up (Redis, the projector, everything else on the"
echo "machine); FCALL calls, events per FCALL, us per FCALL and FCALL us per event (commandstats);"
echo "cpu/ev: Redis CPU us per event; load: 1-minute load average at the start of the run"
echo
: >"$work/results"
: >"$work/eventgen.txt"
header
for run in $(seq "$runs"); do
    catchup "$run" "$batch" $((run == 1))
done
med() { # med COLUMN: its median over the default-batch runs
    awk -v c="$1" '$1 ~ /^[0-9]+$/ { print $c }' "$work/results" | median
}
# shellcheck disable=SC2059  # the table's row format
printf "$med_fmt\n" median "$batch" "$(med 3)" "$(med 4)" "$(med 5)" "$(med 6)" "$(med 7)" \
    "$(med 8)" "$(med 9)" "$(med 10)" "$(med 11)" "$(med 12)" - "$(med 14)" | tee "$work/median"
for b in $batches; do
    catchup "b$b" "$b" 0
done
echo
echo "bench-eventgen (preload):"
cat "$work/eventgen.txt"
echo
echo "top commands by total time, run 1 (INFO commandstats; FCALL includes the calls inside it):"
awk -F'[:=,]' '/^cmdstat_/ { sub(/^cmdstat_/, "", $1); printf "  %-16s %9d calls %10.0f ms %8.2f us/call\n", $1, $3, $5 / 1000, $7 }' \
    "$work/cmdstats.run1" | sort -k4 -g -r | awk 'NR <= 12'
echo
cat "$work/memory.txt"
if ((lag_seconds > 0)); then
    echo
    lag_run
    cat "$work/lag.txt"
fi

echo
echo "summary"
awk -v goal=100000 '{ printf "  catch-up, batch %s: median %.0f events/s over '"$runs"' runs (goal %d: %s)\n", $2, $3, goal, ($3 >= goal ? "met" : "NOT met") }' "$work/median"
awk '$1 ~ /^b/ { printf "  catch-up, batch %s: %.0f events/s (one run)\n", $2, $3 }' "$work/results"
if ((lag_seconds > 0)); then
    awk '/^tally_projector_lag_seconds/ { l = 1 } l && /^  p50/ { sub(/^  /, ""); print "  lag at '"$lag_rate"' events/s: " $0; exit }' "$work/lag.txt"
fi
awk '/per million complaints \(linear\)/ { print "  read model: " $5 " MiB per million complaints (all of it divided by the complaints)" }
    /per complaint  / { print "  read model: " $3 " B per complaint (all of it divided by the complaints)" }
    /i\.e\. .* MiB per million/ { sub(/.*i\.e\. /, ""); print "  read model, the part that grows with complaints: " $0 }
    /per tenant-month$/ { sub(/^ *for /, ""); print "  read model, day/month counters: " $0 }' "$work/memory.txt"
echo "  load at the end: $(uptime)"
