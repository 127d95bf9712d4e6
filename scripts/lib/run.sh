# shellcheck shell=bash
# scripts/lib/run.sh: the harness Tally's shell scripts share: messages, what runs at exit, free
# ports, processes that are started, waited for and stopped, a private redis-server, and what
# the benchmarks measure and print with (CPU ticks, percentiles and medians, /metrics values,
# table headers). Sourced by bench/*.sh, scripts/demo, scripts/stack and scripts/test: each of
# these used to be written in every script.
#
# Usage (from a bash script under `set -euo pipefail`):
#   source "$repo/scripts/lib/run.sh"
#   run_init                  # the EXIT, INT and TERM traps (below)
#   run_workdir               # work=$(mktemp -d), deleted at exit; process logs go there
#   free_port grpc_port http_port
#   svc_start query-svc "http://127.0.0.1:$http_port/healthz" env -i PATH="$PATH" ... "$bin"
#   svc_stop query-svc        # SIGTERM; it must exit 0 within run_stop_timeout
#
# Messages start with run_name (the script's file name without .sh; set it to change that):
# say to stderr, die to stderr and exit 1.
#
# Exit: run_init traps EXIT, and makes SIGINT and SIGTERM exit 130 and 143, so that one cleanup
# runs however the script ends: the functions given to run_at_exit (the last given first; each
# may change run_rc, the status the script exits with), then SIGKILL for every process that
# proc_start started and nobody stopped, then the work directory goes. run_keep turns all of
# that off (a script that leaves its processes running on purpose).
#
# Processes: proc_start runs a command in its own session (setsid), so a Ctrl-C reaches the
# script alone and the script stops what it started. It is known by a NAME: proc_pid[NAME] is
# its pid, proc_names lists the running ones in start order, and its output goes to
# $run_log_dir/NAME.log (run_log_dir defaults to the work directory).

run_name=${0##*/}
run_name=${run_name%.sh}
run_rc=0
run_at_exit_fns=()
run_log_dir=
run_ready_timeout=10 # seconds svc_start waits for a process to be ready
run_stop_timeout=15  # seconds proc_stop waits after SIGTERM before it sends SIGKILL
work=
declare -gA proc_pid=()
proc_names=()
proc_rc=0
proc_killed=0
pid_stat_f=()
# Set by redis_private_start for the scripts (and read by rcli).
# shellcheck disable=SC2034
redis_port='' redis_url='' redis_pid=''

# ---- messages -------------------------------------------------------------------------------
say() { printf '%s: %s\n' "$run_name" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$run_name" "$*" >&2
    exit 1
}

# log_tail FILE [LINES]: the last LINES (25) lines of a log, indented, to stderr.
log_tail() {
    if [[ -s $1 ]]; then
        printf -- '--- last lines of %s ---\n' "$1" >&2
        tail -n "${2:-25}" -- "$1" | sed 's/^/  /' >&2
        printf -- '---\n' >&2
    fi
}

# run_usage: prints the script's header comment (from line 2 to `set -euo pipefail`).
run_usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

# need_cmd TOOL...: dies unless every TOOL is on PATH.
need_cmd() {
    local tool
    for tool; do
        command -v "$tool" >/dev/null || die "$tool not found"
    done
}

# need_bin PATH...: dies unless every PATH (BUILD_DIR/bin/NAME) is an executable.
need_bin() {
    local bin
    for bin; do
        [[ -x $bin ]] || die "$bin not found: build first (cmake --build ${bin%/bin/*})"
    done
}

# check_count VAR... / check_int VAR...: dies unless each variable named holds a positive
# integer / an integer >= 0; the message names the variable in capitals.
check_count() {
    local v
    for v; do
        [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "${v^^} must be a positive integer, got '${!v}'"
    done
}
check_int() {
    local v
    for v; do
        [[ ${!v} =~ ^[0-9]+$ ]] || die "${v^^} must be an integer >= 0, got '${!v}'"
    done
}

# ---- exit -----------------------------------------------------------------------------------
# shellcheck disable=SC2120  # NAME is optional
run_init() {
    [[ -z ${1:-} ]] || run_name=$1
    trap run_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# run_at_exit FUNCTION: FUNCTION runs at exit (without errexit; it must not die).
run_at_exit() {
    run_at_exit_fns+=("$1")
}

# run_keep: from now on the script exits without any cleanup.
run_keep() {
    trap - EXIT INT TERM
}

# shellcheck disable=SC2317  # invoked by the EXIT trap
run_exit() {
    run_rc=$?
    trap - EXIT INT TERM
    local i
    for ((i = ${#run_at_exit_fns[@]} - 1; i >= 0; i--)); do
        "${run_at_exit_fns[i]}" || true
    done
    for ((i = ${#proc_names[@]} - 1; i >= 0; i--)); do
        proc_kill "${proc_names[i]}"
    done
    if [[ -n $work ]]; then
        rm -rf -- "$work"
    fi
    exit "$run_rc"
}

# run_workdir: work=$(mktemp -d), deleted at exit; the default run_log_dir.
run_workdir() {
    work=$(mktemp -d)
    run_log_dir=${run_log_dir:-$work}
}

# ---- ports ----------------------------------------------------------------------------------
# free_port VAR...: sets each VAR to a loopback TCP port that nothing listens on now, each a
# different one (the sockets are all bound before any is closed).
free_port() {
    local _fp_out _fp_i=0 _fp_var
    local -a _fp_ports
    _fp_out=$(python3 -c 'import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$#") || die "free_port: python3 failed"
    read -ra _fp_ports <<<"$_fp_out"
    for _fp_var; do
        printf -v "$_fp_var" '%s' "${_fp_ports[_fp_i++]}"
    done
}

# port_in_use [HOST:]PORT: true when something accepts TCP connections there (host 127.0.0.1).
port_in_use() {
    local host=127.0.0.1 port=$1
    if [[ $1 == *:* ]]; then
        host=${1%:*} port=${1##*:}
    fi
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

# ---- processes ------------------------------------------------------------------------------
# pid_stat PID: reads /proc/PID/stat into the array pid_stat_f, from field 3 (the state) on,
# so that field N of proc(5) is pid_stat_f[N-3]; fails when there is no such process. (The
# command name in parentheses before it may hold spaces.)
pid_stat() {
    local stat
    [[ $1 =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    read -ra pid_stat_f <<<"${stat##*) }"
}

# pid_state PID: prints the state letter of a process (R, S, Z...); fails when there is none.
pid_state() {
    pid_stat "$1" || return 1
    printf '%s\n' "${pid_stat_f[0]}"
}

# pid_alive PID: true while PID names a running process; a zombie counts as gone.
pid_alive() {
    pid_stat "$1" && [[ ${pid_stat_f[0]} != Z ]]
}

# pid_stop PID [TIMEOUT]: SIGTERM, then SIGKILL when PID still runs TIMEOUT (run_stop_timeout)
# seconds later. Sets proc_rc to its exit status when it is a child of this shell (128 +
# signal when a signal ended it) and proc_killed to 1 when it needed SIGKILL. Returns 0 when
# it exited 0 on its own.
pid_stop() {
    local pid=$1 deadline=$((SECONDS + ${2:-$run_stop_timeout}))
    proc_rc=0 proc_killed=0
    kill -TERM "$pid" 2>/dev/null || true
    while pid_alive "$pid"; do
        if ((SECONDS >= deadline)); then
            kill -KILL "$pid" 2>/dev/null || true
            proc_killed=1
            deadline=$((SECONDS + 5)) # not a child of ours: wait until it is gone
            while pid_alive "$pid" && ((SECONDS < deadline)); do
                sleep 0.05
            done
            break
        fi
        sleep 0.1
    done
    wait "$pid" 2>/dev/null || proc_rc=$?
    ((proc_rc == 0 && proc_killed == 0))
}

# proc_start NAME COMMAND [ARGS...]: starts COMMAND in the background in its own session,
# output to $run_log_dir/NAME.log; proc_pid[NAME] is its pid. Variables for it: `env` in
# COMMAND.
proc_start() {
    local name=$1
    shift
    [[ -n $run_log_dir ]] || die "proc_start $name: no run_log_dir (run_workdir sets one)"
    [[ -z ${proc_pid[$name]:-} ]] || die "proc_start $name: already started"
    setsid "$@" >"$run_log_dir/$name.log" 2>&1 &
    proc_pid[$name]=$!
    proc_names+=("$name")
}

# proc_adopt NAME PID: a background process the script started itself (with redirections of
# its own) is NAME from now on, stopped, waited for and cleaned up like proc_start's.
proc_adopt() {
    [[ -z ${proc_pid[$1]:-} ]] || die "proc_adopt $1: already started"
    proc_pid[$1]=$2
    proc_names+=("$1")
}

# proc_wait NAME: waits until NAME exits by itself, forgets it, and returns its exit status
# (also in proc_rc).
proc_wait() {
    local pid=${proc_pid[$1]:-}
    [[ -n $pid ]] || die "proc_wait $1: not started"
    proc_rc=0
    wait "$pid" || proc_rc=$?
    proc_forget "$1"
    return "$proc_rc"
}

# proc_forget NAME: NAME is no longer ours to stop (it was stopped, or it exited).
proc_forget() {
    local n
    local -a rest=()
    for n in "${proc_names[@]}"; do
        [[ $n == "$1" ]] || rest+=("$n")
    done
    proc_names=("${rest[@]}")
    unset 'proc_pid[$1]'
}

# proc_stop NAME [TIMEOUT]: pid_stop of a process proc_start started (same proc_rc,
# proc_killed and status); it is forgotten afterwards.
proc_stop() {
    local pid=${proc_pid[$1]:-} rc=0
    [[ -n $pid ]] || die "proc_stop $1: not started"
    pid_stop "$pid" "${2:-}" || rc=1
    proc_forget "$1"
    return "$rc"
}

# proc_kill NAME: SIGKILL when it still runs (cleanup after a failure), and forget it.
proc_kill() {
    local pid=${proc_pid[$1]:-}
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    proc_forget "$1"
}

# svc_ready URL: true when URL answers now. http(s)://...: status 200; tcp://HOST:PORT: it
# accepts a connection; redis://HOST:PORT/DB: PING says PONG.
svc_ready() {
    local hp
    case $1 in
    http://* | https://*)
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1" 2>/dev/null) == 200 ]]
        ;;
    tcp://*)
        hp=${1#tcp://}
        (exec 3<>"/dev/tcp/${hp%:*}/${hp##*:}") 2>/dev/null
        ;;
    redis://*) [[ $(redis-cli -u "$1" PING 2>/dev/null) == PONG ]] ;;
    *) die "svc_ready: cannot check '$1'" ;;
    esac
}

# svc_wait NAME URLS [TIMEOUT]: waits until every URL in URLS (separated by spaces; see
# svc_ready) answers, up to TIMEOUT (run_ready_timeout) seconds. Dies, with the end of NAME's
# log, when the process exits first or the time runs out.
svc_wait() {
    local name=$1 pid=${proc_pid[$1]} url rc deadline=$((SECONDS + ${3:-$run_ready_timeout}))
    local -a list
    read -ra list <<<"$2"
    for url in "${list[@]}"; do
        until svc_ready "$url"; do
            if ! pid_alive "$pid"; then
                rc=0
                wait "$pid" || rc=$?
                proc_forget "$name"
                log_tail "$run_log_dir/$name.log"
                die "$name exited with code $rc before it was ready"
            fi
            if ((SECONDS >= deadline)); then
                log_tail "$run_log_dir/$name.log"
                die "$name is not ready after ${3:-$run_ready_timeout} s: $url does not answer"
            fi
            sleep 0.1
        done
    done
}

# svc_start NAME URLS COMMAND [ARGS...]: proc_start, then svc_wait.
svc_start() {
    local name=$1 urls=$2
    shift 2
    proc_start "$name" "$@"
    svc_wait "$name" "$urls"
}

# svc_stop NAME: proc_stop; dies, with the end of its log, unless it exited 0 on its own.
svc_stop() {
    local name=$1
    proc_stop "$name" && return 0
    log_tail "$run_log_dir/$name.log"
    if ((proc_killed)); then
        die "$name did not exit within $run_stop_timeout s of SIGTERM"
    fi
    die "$name exited $proc_rc after SIGTERM"
}

# ---- a private redis-server -----------------------------------------------------------------
# redis_private_start: a fresh, empty redis-server of this script's own on a free loopback
# port, without persistence, its files in $work/redis; sets redis_port, redis_url and
# redis_pid, and waits until it answers PING. Its process is named redis-server.
redis_private_start() {
    free_port redis_port
    redis_url=redis://127.0.0.1:$redis_port/0
    rm -rf -- "$work/redis"
    mkdir -- "$work/redis"
    svc_start redis-server "$redis_url" redis-server --bind 127.0.0.1 --port "$redis_port" \
        --save "" --appendonly no --dir "$work/redis" --daemonize no
    redis_pid=${proc_pid[redis-server]}
}

# redis_private_stop: SIGTERM; it must exit 0.
redis_private_stop() {
    svc_stop redis-server
    # shellcheck disable=SC2034  # read by the scripts
    redis_pid=
}

# rcli ARGS...: redis-cli against redis_url (the private one, or any the script sets).
rcli() {
    redis-cli -u "$redis_url" "$@"
}

# redis_info SECTION FIELD: one field of INFO SECTION (rcli).
redis_info() {
    rcli INFO "$1" | tr -d '\r' | awk -F: -v f="$2" '$1 == f { print $2 }'
}

# ---- measuring (the benchmarks) ------------------------------------------------------------
# CPU time is in clock ticks: clk_tck of them make a second (getconf CLK_TCK, 100 here).
# Numbers for percentile and median come one a line on stdin, in any order.
# shellcheck disable=SC2034  # read by the scripts
clk_tck=$(getconf CLK_TCK)
run_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

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
# exits. One python3 process polls: a shell loop of curl and awk took a quarter of a core
# from the machine it measures.
projector_wait_applied() {
    local log=$run_log_dir/projector.log rc=0
    python3 - "$1" "$2" "$3" "${proc_pid[projector]}" "$work/metrics" <<'PY' || rc=$?
import os, sys, time, urllib.request
addr, want, stall, pid, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
names = ("tally_projector_events_applied_total", "tally_projector_duplicates_total",
         "tally_projector_parked_total")
last, changed = -1, time.monotonic()
while True:
    try:
        body = urllib.request.urlopen("http://%s/metrics" % addr, timeout=5).read().decode()
    except OSError as e:
        print("cannot read the projector's /metrics: %s" % e, file=sys.stderr)
        sys.exit(3)
    n = 0
    for line in body.splitlines():
        f = line.split()
        if len(f) == 2 and f[0] in names:
            n += int(float(f[1]))
    if n >= want:
        with open(out, "w") as fh:
            fh.write(body)
        sys.exit(0)
    if n != last:
        last, changed = n, time.monotonic()
    elif time.monotonic() - changed > stall:
        print("stalled at %d of %d events for %g s" % (n, want, stall), file=sys.stderr)
        sys.exit(1)
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(2)
    time.sleep(0.1)
PY
    case $rc in
    0) ;;
    2) die "projector died: $(tail -5 "$log")" ;;
    *) die "waiting for $2 events applied failed: $(tail -5 "$log")" ;;
    esac
}

# wait_until SECONDS WHAT COMMAND [ARGS...]: runs COMMAND every 0.1 s until it succeeds; dies
# saying WHAT was awaited when SECONDS pass first.
wait_until() {
    local secs=$1 what=$2 deadline=$((SECONDS + $1))
    shift 2
    until "$@"; do
        ((SECONDS < deadline)) || die "$what: not within $secs s"
        sleep 0.1
    done
}

# ---- a private stack: PostgreSQL and Redis (scripts/stack) -------------------------------
# stack_private_up: scripts/stack in $work/stack on free loopback ports (PostgreSQL 15 with
# its defaults, fsync on; Redis without persistence), taken down with its data at exit; the
# database tally exists and is empty. Sets pg_dsn (the owner: migrations, psql), svc_pg_dsn
# (the services' role tally_app, held to row-level security), pg_pid, redis_port, redis_url and
# redis_pid.
# Needs run_workdir first.
# shellcheck disable=SC2034  # the variables are for the scripts
stack_private_up() {
    [[ -n $work ]] || die "stack_private_up: no work directory (run_workdir first)"
    chmod 755 "$work" # the stack's PostgreSQL runs as the postgres user when we are root
    export TALLY_STACK_DIR=$work/stack
    free_port TALLY_STACK_PG_PORT TALLY_STACK_REDIS_PORT
    export TALLY_STACK_PG_PORT TALLY_STACK_REDIS_PORT
    run_at_exit stack_private_clean
    "$run_repo/scripts/stack" up >/dev/null 2>"$work/stack.log" || {
        log_tail "$work/stack.log"
        die "scripts/stack up failed"
    }
    pg_dsn=postgresql://tally@127.0.0.1:$TALLY_STACK_PG_PORT/tally
    svc_pg_dsn=postgresql://tally_app@127.0.0.1:$TALLY_STACK_PG_PORT/tally
    pg_pid=$(head -n 1 "$TALLY_STACK_DIR/pg/postmaster.pid")
    redis_port=$TALLY_STACK_REDIS_PORT
    redis_url=redis://127.0.0.1:$redis_port/0
    redis_pid=$(head -n 1 "$TALLY_STACK_DIR/redis.pid")
}

# shellcheck disable=SC2317  # invoked at exit
stack_private_clean() {
    "$run_repo/scripts/stack" clean >/dev/null 2>&1
}

# pg_bin: PostgreSQL 15's programs (TALLY_STACK_PG_BIN, as scripts/stack).
pg_bin=${TALLY_STACK_PG_BIN:-/usr/lib/postgresql/15/bin}

# psql_q ARGS...: psql against pg_dsn (or PSQL_DSN when set): quiet, unaligned, tuples only,
# stopping at the first error; warnings not shown.
psql_q() {
    PGOPTIONS='-c client_min_messages=warning' "$pg_bin/psql" "${PSQL_DSN:-$pg_dsn}" -X -q -tA \
        -v ON_ERROR_STOP=1 "$@"
}

# pgbench_window LOG_PREFIX WARMUP DURATION LAT_FILE: from the per-transaction logs of a
# pgbench run (-l --log-prefix=LOG_PREFIX; lines "client tx latency_us script epoch_s
# epoch_us", the end time), the transactions that ended in the measured window (after WARMUP
# s, for DURATION s, from the first transaction's start): their latencies in ms, one a line, to
# LAT_FILE, and "TPS MEAN_MS N" on stdout. With -R the latency is measured from the scheduled
# start (pgbench's own rule), so lag behind the schedule counts.
pgbench_window() {
    cat "$1".* | python3 -c '
import sys
w, d = float(sys.argv[1]), float(sys.argv[2])
tx = [(int(f[4]) + int(f[5]) / 1e6, int(f[2])) for f in (l.split() for l in sys.stdin)]
if not tx:
    sys.exit("pgbench_window: no transactions logged")
t0 = min(end - lat / 1e6 for end, lat in tx)
t1 = min(t0 + w + d, max(end for end, lat in tx))  # pgbench may stop a little early
lat = [l for end, l in tx if t0 + w <= end < t1]
open(sys.argv[3], "w").write("".join("%.3f\n" % (l / 1000) for l in sorted(lat)))
span = max(t1 - t0 - w, 1e-9)
print("%.1f %.3f %d" % (len(lat) / span, (sum(lat) / len(lat) / 1000) if lat else 0, len(lat)))
' "$2" "$3" "$4"
}

# ---- bearer tokens for a script's services and clients -------------------------------------
# secret_file_make PATH: an HS256 secret (48 random bytes, base64, one line) at PATH, mode 600,
# unless PATH holds one already; dies when it cannot be written.
secret_file_make() {
    [[ -s $1 ]] && return 0
    if ! (umask 077 && head -c 48 /dev/urandom | base64 -w0 >"$1.tmp" && echo >>"$1.tmp") ||
        ! mv -- "$1.tmp" "$1"; then
        die "cannot write $1"
    fi
}

# auth_dev_up BIN_DIR: a development HS256 secret of the script's own ($work/jwt-secret, made
# once) for its services, which add "${auth_env[@]}" to their environment, and an admin token
# for every tenant, signed with it by BIN_DIR/tally, exported as TALLY_TOKEN for its clients
# (gclient, tally, tally-sim and the load generators read it; h2load takes
# -H "authorization: Bearer $TALLY_TOKEN"). Needs run_workdir first; quick when done already.
# shellcheck disable=SC2034  # auth_env is for the scripts
auth_dev_up() {
    [[ -n ${auth_env[*]:-} ]] && return 0
    [[ -n $work ]] || die "auth_dev_up: no work directory (run_workdir first)"
    [[ -x $1/tally ]] || die "auth_dev_up: no $1/tally (it mints the token): build it first"
    secret_file_make "$work/jwt-secret"
    auth_env=(TALLY_AUTH_JWT_SECRET_FILE="$work/jwt-secret")
    TALLY_TOKEN=$(env "${auth_env[@]}" "$1/tally" token --role admin --tenant '*' --ttl 86400 \
        --subject "$(basename "$0")") || die "tally token failed"
    export TALLY_TOKEN
}
auth_env=()

# ---- Tally's services, started for a benchmark --------------------------------------------
# Each on free loopback ports with a clean environment (a service refuses TALLY_* variables it
# does not know), the script's bearer-token secret (auth_dev_up) and logging at warn, against
# svc_pg_dsn and redis_url; extra VAR=VALUE arguments
# are added to its environment. Each waits until it is ready and sets NAME_grpc (host:port),
# NAME_http (host:port of /metrics) and NAME_pid. Stop them with svc_stop NAME.

# cmd_svc_start BIN RELAY WORKERS [VAR=VALUE...]: command-svc (TALLY_RELAY=RELAY), until
# /readyz; sets cmd_grpc, cmd_http, cmd_pid.
# shellcheck disable=SC2034  # the variables are for the scripts
cmd_svc_start() {
    local bin=$1 relay=$2 workers=$3 gp hp
    shift 3
    free_port gp hp
    cmd_grpc=127.0.0.1:$gp cmd_http=127.0.0.1:$hp
    auth_dev_up "$(dirname "$bin")"
    svc_start command-svc "http://$cmd_http/readyz" env -i PATH="$PATH" "${auth_env[@]}" \
        TALLY_GRPC_LISTEN="$cmd_grpc" TALLY_HTTP_LISTEN="$cmd_http" TALLY_PG_DSN="$svc_pg_dsn" \
        TALLY_REDIS_URL="$redis_url" TALLY_RELAY="$relay" TALLY_WORKERS="$workers" \
        TALLY_LOG_LEVEL=warn "$@" "$bin"
    cmd_pid=${proc_pid[command-svc]}
}

# projector_svc_start BIN [VAR=VALUE...]: the projector (without TALLY_PG_DSN: no verify
# loop), until /healthz; sets projector_http, projector_pid.
# shellcheck disable=SC2034  # the variables are for the scripts
projector_svc_start() {
    local bin=$1 hp
    shift
    free_port hp
    projector_http=127.0.0.1:$hp
    svc_start projector "http://$projector_http/healthz" env -i PATH="$PATH" \
        TALLY_REDIS_URL="$redis_url" TALLY_HTTP_LISTEN="$projector_http" TALLY_LOG_LEVEL=warn \
        "$@" "$bin"
    projector_pid=${proc_pid[projector]}
}

# query_svc_start BIN WORKERS [VAR=VALUE...]: query-svc, until /healthz; sets query_grpc,
# query_http, query_pid.
# shellcheck disable=SC2034  # the variables are for the scripts
query_svc_start() {
    local bin=$1 workers=$2 gp hp
    shift 2
    free_port gp hp
    query_grpc=127.0.0.1:$gp query_http=127.0.0.1:$hp
    auth_dev_up "$(dirname "$bin")"
    svc_start query-svc "http://$query_http/healthz" env -i PATH="$PATH" "${auth_env[@]}" \
        TALLY_REDIS_URL="$redis_url" TALLY_GRPC_LISTEN="$query_grpc" \
        TALLY_HTTP_LISTEN="$query_http" TALLY_WORKERS="$workers" TALLY_LOG_LEVEL=warn "$@" "$bin"
    query_pid=${proc_pid[query-svc]}
}

# ---- histograms from /metrics ---------------------------------------------------------------
# hist_buckets NAME [FILE]: the buckets of histogram NAME in FILE ($work/metrics), one
# "le cumulative-count" line each (+Inf last).
hist_buckets() {
    awk -v n="${1}_bucket" 'index($1, n "{") == 1 {
            le = $1; sub(/.*le="/, "", le); sub(/".*/, "", le); print le, $2 }' \
        "${2:-$work/metrics}"
}

# hist_diff BEFORE AFTER: the buckets of AFTER minus those of BEFORE (hist_buckets files of
# one histogram): what was observed between two scrapes.
hist_diff() {
    awk 'NR == FNR { b[$1] = $2; next } { print $1, $2 - b[$1] }' "$1" "$2"
}

# hist_quantile Q FILE: the Q-quantile (0..1) of hist_buckets lines, interpolated linearly
# within its bucket as PromQL's histogram_quantile does; "n/a" when empty, ">LE" when it falls
# in the +Inf bucket (LE the last finite bound).
hist_quantile() {
    awk -v q="$1" '{ le[NR] = $1; c[NR] = $2 } END {
            total = c[NR]; if (total == 0) { print "n/a"; exit }
            rank = q * total; prev = 0; prevc = 0
            for (i = 1; i <= NR; i++) {
                if (c[i] >= rank) {
                    if (le[i] == "+Inf") { printf ">%s\n", le[i - 1]; exit }
                    printf "%.6f\n", prev + (le[i] - prev) * (rank - prevc) / (c[i] - prevc); exit
                }
                prev = le[i]; prevc = c[i]
            }
        }' "$2"
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
    if (($#)) && git -C "$run_repo" status --porcelain -- "$@" 2>/dev/null | grep -q .; then
        dirty=" ($(IFS=/ && echo "$*") modified)"
    fi
    echo "machine: $(nproc) CPUs; $(uptime)"
    echo "$label: $bin ($(stat -c %y "$bin" | cut -d. -f1)); repo at $(git -C "$run_repo" rev-parse --short HEAD 2>/dev/null || echo '?')$dirty"
}

# ---- pinned npm packages --------------------------------------------------------------------
# npm_ci DIR: DIR's npm packages as its package-lock.json pins them (npm ci), unless its
# node_modules is already newer than the lock. Dies when node or npm is missing or npm ci fails.
# For tools/k8s-check (scripts/check-k8s) and tests/clients/node (scripts/test).
npm_ci() {
    local dir=$1
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        die "npm_ci $dir: no node or npm on PATH"
    fi
    [[ -d $dir/node_modules && ! $dir/package-lock.json -nt $dir/node_modules ]] && return 0
    say "npm ci in ${dir#"$run_repo"/}"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci in $dir failed"
    touch "$dir/node_modules"
}
