# shellcheck shell=bash disable=SC2154  # run.sh's globals: proc_pid, pid_stat_f, run_log_dir
# scripts/lib/measure.sh: what the benchmarks measure and print with: CPU ticks (a process,
# PostgreSQL, the machine), percentiles and medians, a value from /metrics, table headers and
# the lines that say what ran where. Sourced by bench/*.sh after scripts/lib/run.sh (its die).
#
# CPU time is in clock ticks: clk_tck of them make a second (getconf CLK_TCK, 100 here).
# Numbers for percentile and median come one a line on stdin, in any order.

# shellcheck disable=SC2034  # read by the scripts
clk_tck=$(getconf CLK_TCK)
measure_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# ---- CPU ticks ------------------------------------------------------------------------------
# proc_ticks PID [NAME]: user + system CPU time of a process (fields 14 and 15 of
# /proc/PID/stat); dies, naming NAME, when it is gone.
proc_ticks() {
    pid_stat "$1" || die "${2:-process} (pid $1) is gone (killed from outside?)"
    printf '%s\n' $((pid_stat_f[11] + pid_stat_f[12]))
}

# pg_ticks POSTMASTER_PID: CPU time of a PostgreSQL server: the postmaster with its reaped
# children (cutime, cstime) plus every live child (backends, WAL writer, checkpointer...).
pg_ticks() {
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | sed 's/^\([0-9]*\) (.*) /\1 /' |
        awk -v pm="$1" '$1 == pm { t += $13 + $14 + $15 + $16 } $3 == pm { t += $13 + $14 }
                        END { print t + 0 }'
}

# machine_ticks: "BUSY TOTAL" of all CPUs together (/proc/stat): busy is user, nice, system,
# irq, softirq and steal; the total adds idle and iowait.
machine_ticks() {
    awk '$1 == "cpu" { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6 }' /proc/stat
}

# ---- percentiles and medians ----------------------------------------------------------------
# percentile P...: the P-th percentiles (nearest rank) of the numbers on stdin, on one line.
percentile() {
    sort -g | awk -v ps="$*" '{ v[NR] = $1 } END {
            n = split(ps, p, " ")
            for (i = 1; i <= n; i++) {
                r = int(p[i] / 100 * NR + 0.999999)
                if (r < 1) r = 1
                printf "%s%s", (i > 1 ? " " : ""), v[r]
            }
            printf "\n"
        }'
}

# median [FORMAT]: the median of the numbers on stdin (the mean of the middle two for an even
# count), printed with the printf FORMAT (default %.15g); "-" when the numbers are "-" (a
# column that does not apply).
# shellcheck disable=SC2120  # FORMAT is optional
median() {
    sort -g | awk -v f="${1:-%.15g}" '{ v[NR] = $1 } END {
            if (v[1] == "-") print "-"
            else printf f "\n", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        }'
}

# ---- /metrics -------------------------------------------------------------------------------
# metrics_fetch HOST:PORT [FILE]: http://HOST:PORT/metrics into FILE ($work/metrics).
metrics_fetch() {
    curl -fsS --max-time 5 "http://$1/metrics" >"${2:-$work/metrics}"
}

# metric NAME [FILE]: the value of the unlabelled series NAME in FILE ($work/metrics, the last
# metrics_fetch); 0 when it is absent.
metric() {
    awk -v n="$1" '$1 == n { v = $2 } END { print v + 0 }' "${2:-$work/metrics}"
}

# ---- Tally's services ----------------------------------------------------------------------
# projector_wait_applied HOST:PORT N STALL_SECONDS: polls the projector's /metrics (into
# $work/metrics) every 0.1 s until applied + duplicates + parked events reach N; dies when
# that count does not move for STALL_SECONDS, or when the projector (proc_pid[projector])
# exits.
projector_wait_applied() {
    local addr=$1 want=$2 stall=$3 n last=-1 last_change=$SECONDS
    local log=$run_log_dir/projector.log
    while :; do
        metrics_fetch "$addr" || die "cannot read the projector's /metrics"
        n=$(($(metric tally_projector_events_applied_total) + $(metric tally_projector_duplicates_total) + $(metric tally_projector_parked_total)))
        ((n >= want)) && return 0
        if ((n != last)); then
            last=$n
            last_change=$SECONDS
        elif ((SECONDS - last_change > stall)); then
            die "stalled at $n of $want events for $stall s: $(tail -5 "$log")"
        fi
        pid_alive "${proc_pid[projector]}" || die "projector died: $(tail -5 "$log")"
        sleep 0.1
    done
}

# ---- what is printed ------------------------------------------------------------------------
# table_header ROW_FORMAT NAME...: the header line of a table whose rows are printed with the
# printf ROW_FORMAT: each conversion (%8.1f, %-5s, %3d...) becomes a string of the same width.
table_header() {
    local fmt
    fmt=$(sed -E 's/%(-?[0-9]*)(\.[0-9]+)?[a-zA-Z]/%\1s/g' <<<"$1")
    shift
    # shellcheck disable=SC2059  # the format is the point
    printf "$fmt\n" "$@"
}

# bench_about LABEL BINARY [DIR...]: two lines: the machine (CPUs, uptime and load), and the
# binary measured (its time) with the commit of the checkout, marked when files under the DIRs
# are modified.
bench_about() {
    local label=$1 bin=$2 dirty=""
    shift 2
    if (($#)) && git -C "$measure_repo" status --porcelain -- "$@" 2>/dev/null | grep -q .; then
        dirty=" ($(IFS=/ && echo "$*") modified)"
    fi
    echo "machine: $(nproc) CPUs; $(uptime)"
    echo "$label: $bin ($(stat -c %y "$bin" | cut -d. -f1)); repo at $(git -C "$measure_repo" rev-parse --short HEAD 2>/dev/null || echo '?')$dirty"
}
