# shellcheck shell=bash
# shellcheck disable=SC2154  # the variables are bench/run's
# bench/run-report.sh: bench/run's report, sourced by it after the measurements: the JSON of
# every figure, the charts (gnuplot) and performance.md. It reads what bench/run left: the
# figures ($figs: "key value" lines), the samples ($data: lat.NAME latency files in ms, sorted;
# samples.raw from the sampler; phases), and the run's variables (mode, out, the settings).

# The latency files drawn, with their titles: NAME|TITLE.
report_lat_series=(
    "dash_low|GetDashboard, open loop at LOW/s"
    "sql_c1|SQL dashboard (pgbench, 1 client)"
    "create_c8|CreateComplaint, 8 in flight"
    "pgcreate_c8|pgbench CreateComplaint SQL, 8 clients"
    "fresh|freshness at FRESH/s (OK to visible)"
)

# report_json FILE: every figure (numbers as numbers), the settings and the machine.
report_json() {
    python3 - "$figs" "$1" <<PY
import json, sys
figs = {}
for line in open(sys.argv[1]):
    k, _, v = line.rstrip("\n").partition(" ")
    try:
        figs[k] = int(v) if v.lstrip("-").isdigit() else float(v)
    except ValueError:
        figs[k] = v
doc = {
    "mode": "$mode",
    "date_utc": "$(date -u '+%Y-%m-%d %H:%M')",
    "commit": "$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')",
    "machine": {"cpus": $(nproc), "model": "$(report_cpu)", "memory_mib": $(awk '/^MemTotal:/ { printf "%d", $2 / 1024 }' /proc/meminfo),
                "uptime_before": "$uptime_before", "uptime_after": "$uptime_after"},
    "settings": {"complaints": $complaints, "tenant_shares_pct": [$(IFS=, && echo "${shares[*]}")], "low_rate": $low_rate,
                 "fresh_rate": $fresh_rate, "sql_clients": $sql_clients, "saturation_concurrency": $sat_c,
                 "overview_concurrency": $ov_c, "query_workers": $workers, "seconds": {"low": $low_s,
                 "saturation": $sat_s, "sql": $sql_s, "write": $write_s, "fresh": $fresh_s, "mixed": $mix_s}, "parts_complaints": $part_complaints},
    "figures": figs,
}
json.dump(doc, open(sys.argv[2], "w"), indent=2)
open(sys.argv[2], "a").write("\n")
PY
}

report_cpu() {
    awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo | tr -s ' ' | tr -d '"'
}

# report_charts DIR: latency.png (latency by percentile) and lag.png (the projector over time).
report_charts() {
    local dir=$1 plots=() s name title f
    for s in "${report_lat_series[@]}"; do
        name=${s%%|*} title=${s#*|}
        title=${title//LOW/$low_rate}
        title=${title//FRESH/$fresh_rate}
        f=$data/lat.$name
        [[ -s $f ]] || continue
        # x = 1 / (1 - p): 2 at p50, 10 at p90, 100 at p99, 1000 at p99.9
        awk 'NR == FNR { n++; next } { p = (FNR - 0.5) / n; print 1 / (1 - p), $1 }' "$f" "$f" >"$f.pct"
        plots+=("'$f.pct' using 1:2 with lines lw 2 title '$title'")
    done
    local plot
    plot=$(IFS=, && echo "${plots[*]}")
    ((${#plots[@]})) || die "no latency samples to draw"
    gnuplot <<GP || die "gnuplot failed (latency.png)"
set terminal pngcairo size 1000,600 noenhanced
set output '$dir/latency.png'
set title 'Latency by percentile ($mode run, $(date -u '+%Y-%m-%d'))'
set logscale xy
set xrange [1:10000]
set xtics ('p0' 1, 'p50' 2, 'p90' 10, 'p99' 100, 'p99.9' 1000, 'p99.99' 10000)
set ylabel 'ms'
set grid
set key top left
plot $plot
GP
    # The sampler's lines: time published applied lag_sum lag_count. Per interval: the events
    # the relay published and the projector applied per second, the events published and not
    # yet applied (while the relay's count is the first command-svc's: it restarts later), and
    # the mean lag of the events applied (the projector times live events only, not imported
    # ones: during the catch-up of the import it has next to none).
    awk -v t0="$t_relay" 'NR > 1 && $1 > pt {
            dt = $1 - pt; dc = $5 - pc; first = first && $2 >= pp
            printf "%.1f %s %.0f %s %s\n", $1 - t0, (first ? sprintf("%.0f", ($2 - pp) / dt) : "NaN"),
                ($3 - pa) / dt, (first && $2 >= $3 ? $2 - $3 : "NaN"), (dc > 0 ? ($4 - ps) / dc : "NaN")
        } NR == 1 { first = 1 } { pt = $1; pp = $2; pa = $3; ps = $4; pc = $5 }' "$data/samples.raw" >"$data/lag.dat"
    local arrows="" t label
    while read -r t label; do
        arrows+="set arrow from $t, graph 0 to $t, graph 1 nohead dt 2 lc 'gray'"$'\n'
        arrows+="set label '$label' at $t, graph 0.92 offset 0.5,0"$'\n'
    done <"$data/phases"
    gnuplot <<GP || die "gnuplot failed (lag.png)"
set terminal pngcairo size 1000,800 noenhanced
set output '$dir/lag.png'
set multiplot layout 2,1 title 'The relay and the projector over the run ($mode run, $(date -u '+%Y-%m-%d'))'
set grid
set key top right
set xrange [0:*]
$arrows
set ylabel 'events/s'
plot '$data/lag.dat' using 1:2 with lines lw 2 title 'published by the relay/s', \
     '$data/lag.dat' using 1:3 with lines lw 2 title 'applied by the projector/s'
set xlabel 's since the relay and the projector started'
set ylabel 'events published, not applied'
set y2label 'mean lag of live events, s (log)'
set logscale y2
set ytics nomirror
set y2tics
plot '$data/lag.dat' using 1:4 with lines lw 2 title 'published, not applied', \
     '$data/lag.dat' using 1:5 axes x1y2 with points pt 7 ps 0.5 title 'mean lag (s)'
unset multiplot
GP
}

# The table's cells. n: a number with thousands separators; ms: milliseconds; x: a ratio.
report_n() { awk -v v="$1" 'BEGIN { if (v !~ /^-?[0-9.]+$/) { print v; exit }
        s = sprintf("%.0f", v); o = ""; while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) }
        print s o }'; }
report_ms() { awk -v v="$1" 'BEGIN { if (v !~ /^-?[0-9.]+$/) print v; else if (v < 10) printf "%.2f ms\n", v; else if (v < 100) printf "%.1f ms\n", v; else printf "%.0f ms\n", v }'; }
# report_ratio A B WORD: "A/B" as "12.3x" (or "0.63x"), with WORD after it; "-" when either is missing.
report_ratio() { awk -v a="$1" -v b="$2" -v w="${3:-}" 'BEGIN { if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || b == 0) { print "-"; exit }
        r = a / b; printf (r >= 10 ? "%.0fx" : "%.2fx"), r; if (w != "") printf " %s", w; printf "\n" }'; }
report_row() { printf '| %s | %s | %s | %s |\n' "$@"; }

report_table() {
    local f
    f() { figv "$1"; }
    echo "| figure | Tally | reference | ratio |"
    echo "| --- | --- | --- | --- |"
    local tn
    tn="$tenant ($(report_n "$(f largest_tenant_complaints)") complaints)"
    report_row "GetDashboard p50, $tn, open loop at $low_rate pages/s" "$(report_ms "$(f dash_low_p50)")" \
        "SQL on PostgreSQL, 1 client: $(report_ms "$(f sql_c1_p50)")" "$(report_ratio "$(f sql_c1_p50)" "$(f dash_low_p50)" faster)"
    report_row "GetDashboard p99" "$(report_ms "$(f dash_low_p99)")" \
        "SQL p99: $(report_ms "$(f sql_c1_p99)")" "$(report_ratio "$(f sql_c1_p99)" "$(f dash_low_p99)" faster)"
    report_row "GetDashboard p99.9" "$(report_ms "$(f dash_low_p999)")" \
        "SQL p99.9: $(report_ms "$(f sql_c1_p999)") (of $(f sql_c1_pages) pages)" "$(report_ratio "$(f sql_c1_p999)" "$(f dash_low_p999)" faster)"
    report_row "GetDashboard pages/s at saturation ($sat_c in flight)" "$(report_n "$(f dash_sat_pps)")" \
        "SQL, $sql_clients clients: $(f sql_sat_pps) (pgbench's tps over $sql_s s)" "$(report_ratio "$(f dash_sat_pps)" "$(f sql_sat_pps)")"
    report_row "GetOverview QPS ($ov_c in flight)" "$(report_n "$(f overview_qps)")" \
        "grpc.health.v1 Health/Check, same runtime: $(report_n "$(f health_qps)")" "$(report_ratio "$(f overview_qps)" "$(f health_qps)")"
    for c in 8 32; do
        report_row "CreateComplaint TPS, $c in flight (command-svc, $c workers)" "$(report_n "$(f "create_c${c}_tps")")" \
            "pgbench, the service's statement, $c clients: $(report_n "$(f "pgbench_c${c}_tps")")" "$(report_ratio "$(f "create_c${c}_tps")" "$(f "pgbench_c${c}_tps")")"
    done
    report_row "freshness p50 (OK to visible in query-svc) at $(report_n "$(f fresh_rate)") commands/s" "$(report_ms "$(f fresh_p50)")" \
        "the projector's lag over the same seconds (event written, before its commit, to applied) p50: $(report_ms "$(f proj_lag_p50)")" "$(report_ratio "$(f fresh_p50)" "$(f proj_lag_p50)")"
    report_row "freshness p99" "$(report_ms "$(f fresh_p99)")" \
        "projector lag p99: $(report_ms "$(f proj_lag_p99)")" "$(report_ratio "$(f fresh_p99)" "$(f proj_lag_p99)")"
    report_row "write TPS (8 in flight) with $low_rate GetDashboard pages/s ($(f mix_grpc_pps) served)" "$(report_n "$(f mix_grpc_tps)")" \
        "alone: $(report_n "$(f mix_alone_tps)")" "$(report_ratio "$(f mix_grpc_tps)" "$(f mix_alone_tps)")"
    report_row "write TPS with the SQL dashboard at $low_rate pages/s ($(f mix_sql_pps) served)" "$(report_n "$(f mix_sql_tps)")" \
        "alone: $(report_n "$(f mix_alone_tps)")" "$(report_ratio "$(f mix_sql_tps)" "$(f mix_alone_tps)")"
    report_row "ImportComplaints complaints/s (tally-sim seed, 2 clients, relay off)" "$(report_n "$(f import_cps)")" \
        "issue 10's goal: 20,000" "$(report_ratio "$(f import_cps)" 20000)"
    report_row "import-bench.sh: ImportComplaints alone ($(report_n "$part_complaints") complaints, $(f part_import_us_per_complaint) us CPU each)" "$(report_n "$(f part_import_cps)")" \
        "issue 10's goal: 20,000" "$(report_ratio "$(f part_import_cps)" 20000)"
    report_row "relay publish rate, events/s (a backlog of $(report_n "$(f events)"), projector running)" "$(report_n "$(f relay_eps)")" \
        "issue 10's goal: 100,000" "$(report_ratio "$(f relay_eps)" 100000)"
    report_row "relay-bench.sh: the relay alone (a backlog of $(report_n "$part_complaints") complaints' events, $(f part_relay_us_per_event) us CPU each)" "$(report_n "$(f part_relay_eps)")" \
        "issue 10's goal: 100,000" "$(report_ratio "$(f part_relay_eps)" 100000)"
    report_row "projector catch-up, events/s (the same events, from the relay's start)" "$(report_n "$(f projector_eps)")" \
        "issue 10's goal: 100,000" "$(report_ratio "$(f projector_eps)" 100000)"
    case $(f rebuild_s) in
    n/a) report_row "rebuild: not measured (tally rebuild not yet available)" "-" "issue 10's goal: 1,000,000 events in 10 s" "-" ;;
    failed) report_row "rebuild of $tenant: tally rebuild failed" "-" "issue 10's goal: 1,000,000 events in 10 s" "-" ;;
    *) report_row "rebuild of $tenant ($(report_n "$(f rebuild_events)") events)" "$(f rebuild_s) s" \
        "issue 10's goal: 1,000,000 events in 10 s" \
        "$(awk -v e="$(f rebuild_events)" -v s="$(f rebuild_s)" 'BEGIN { printf "%.0f events/s\n", e / s }')" ;;
    esac
    report_row "Redis memory per million complaints (the read model)" "$(f redis_model_mib_per_million) MiB" \
        "PostgreSQL's database per million complaints: $(f pg_mib_per_million) MiB" "$(report_ratio "$(f redis_model_mib_per_million)" "$(f pg_mib_per_million)")"
}

report_md() {
    cat <<MD
# Performance

Generated by \`bench/run\`$([[ $mode == quick ]] && echo ' --quick') on $(date -u '+%Y-%m-%d %H:%M UTC'), commit
\`$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')\`$(git -C "$repo" status --porcelain -- bench command-svc projector query-svc common cli sim scripts ':!*.md' 2>/dev/null | grep -q . && echo ' (with local changes)'); do not edit by hand: run \`bench/run\` again. Every figure
is from this one run, beside its reference measured in the same run (or the goal of issue 10
where there is no other reference). Numbers are never asserted; see
[bench/README.md](../bench/README.md#benchrun-every-figure-beside-its-reference) for how each is taken. All figures:
[performance/performance.json](performance/performance.json).

## The machine

- $(nproc) CPUs ($(report_cpu)), $(awk '/^MemTotal:/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) of memory, $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r).
- Shared: the services, PostgreSQL, Redis and the load generators run on these cores, beside
  whatever else runs. \`uptime\` before: \`${uptime_before# }\`; after: \`${uptime_after# }\`.
- The data: $(report_n "$(figv complaints)") complaints imported over 5 tenants ($(IFS=/ && echo "${shares[*]}") %), $(report_n "$(figv events)")
  events; the largest tenant, $tenant, has $(report_n "$(figv largest_tenant_complaints)") complaints. The run took $(figv run_s) s.

## Figures

$(report_table)

Ratios: for latencies the reference's time over Tally's ("faster"); otherwise Tally's figure
over the reference. Notes on reading them:

- The relay's rate in the pipeline is the rate at which the import's backlog reached the
  stream with the projector running beside it: once a stream holds \`TALLY_STREAM_MAXLEN\`
  (1,000,000 by default) unapplied entries the relay holds back (backpressure) and publishes at
  the projector's pace (the lower chart). The relay alone is \`relay-bench.sh\`'s row.
- Freshness is timed from the command's OK; the projector's lag from the event's
  \`recorded_at\`, which is written before the commit, so the commit's wait is in the lag and
  not in the freshness. The row names the command rate achieved: the open loop asks for
  $fresh_rate/s, and a busy machine may serve fewer (latency then grows instead).
- The SQL dashboard computes what query-svc reads from Redis, over the write database's own
  indexes; its p99.9 is of the few pages it computed in the time given.
- The projector times only live events (not imported ones), so the lag chart has no lag
  during the catch-up of the import.

## Charts

![Latency by percentile](performance/latency.png)

![The projector over the run](performance/lag.png)
MD
}

report_write() {
    report_json "$out/performance/performance.json"
    report_charts "$out/performance"
    report_md >"$out/performance.md"
    echo
    report_table
}
