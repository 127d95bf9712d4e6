#!/usr/bin/env bash
# The write-side benchmark: CreateComplaint over gRPC (command-svc, loaded by bench-loadgen)
# beside pgbench running command-svc's own CreateComplaint statement on the same database, at
# the same concurrency, in the same session. The ratio gRPC QPS / pgbench TPS is the figure
# (issue 3's goal: at least 0.7). See bench/README.md.
#
# Usage: bench/create-vs-pgbench.sh [BUILD_DIR]   runs the benchmark
#        bench/create-vs-pgbench.sh --write-sql   regenerates bench/pgbench-create.sql from cmd.c
#
# A private stack (scripts/stack with TALLY_STACK_DIR=<repo>/.stack-bench, PostgreSQL on 15450
# and Redis on 16450, fsync on, default settings) is started, the database "tally" is dropped
# and recreated, migrated, and given a tenant and a category. Then for each relay mode and each
# concurrency C, RUNS times: pgbench -c C and bench-loadgen --concurrency C against a fresh
# command-svc (TALLY_WORKERS=C), in alternating order, each for WARMUP + DURATION seconds with
# a CHECKPOINT before it. Everything started is stopped at the end (and the stack's data
# deleted unless KEEP_STACK=1).
#
# Environment: BUILD_DIR (<repo>/build), RUNS (3), RELAY_RUNS (1; 0 skips the relay-on pass),
# DURATION (20), WARMUP (2), CONCURRENCY ("8 32"), CONNECTIONS (1), PGBENCH_JOBS (2), TENANTS (1),
# TALLY_STACK_DIR, TALLY_STACK_PG_PORT (15450), TALLY_STACK_REDIS_PORT (16450), KEEP_STACK (0),
# NOTIFY_TRIGGER (on; "off" drops the NOTIFY from the events trigger after migrating: an experiment
# that shows what the per-statement NOTIFY costs both sides, not a supported configuration).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source-path=SCRIPTDIR/.. source=scripts/lib/run.sh
source "$repo/scripts/lib/run.sh"
sql_file=$repo/bench/pgbench-create.sql
cmd_c=$repo/command-svc/cmd.c
tenant=bench
category=c1
# TENANTS=N: bench-loadgen spreads its calls over N tenants (bench, bench-2, ...), so that a
# command-svc worker's consecutive calls change tenant and pay row-level security's set_config;
# pgbench stays on the first (its SQL runs as the owner, without the policies).
tenants=$tenant
for ((i = 2; i <= ${TENANTS:-1}; i++)); do tenants+=,$tenant-$i; done

# gen_sql: prints the pgbench script: the [S_CREATE] statement of cmd.c (its C string literals
# joined, the MS() macro expanded as cmd.c defines it) with $1..$9 replaced by pgbench
# variables and fixed values. Fails on anything it does not understand rather than guess.
gen_sql() {
    python3 - "$cmd_c" <<'PY'
import bisect, re, sys

src = open(sys.argv[1]).read()
newlines = [i for i, ch in enumerate(src) if ch == "\n"]
def fail(msg):
    sys.exit("gen_sql: %s: %s (update bench/create-vs-pgbench.sh)" % (sys.argv[1], msg))

TOKEN = re.compile(r'\s+|/\*.*?\*/|"((?:[^"\\\n]|\\.)*)"|([A-Za-z_]\w*)|(\d+)|(.)', re.S)
def tokens(text, base=0):
    """(kind, value, source line) of each C token of text, which starts at offset base."""
    for m in TOKEN.finditer(text):
        line = bisect.bisect(newlines, base + m.start())
        if m.group(1) is not None:
            if re.search(r'\\[^"\\]', m.group(1)):
                fail("unsupported escape in a string literal")
            yield ("str", re.sub(r'\\(["\\])', r"\1", m.group(1)), line)
        elif m.group(2):
            yield ("id", m.group(2), line)
        elif m.group(3):
            yield ("num", m.group(3), line)
        elif m.group(4):
            yield ("punct", m.group(4), line)

macro = re.search(r'^#define MS\(x\) (.*)$', src, re.M)
if not macro:
    fail("no '#define MS(x)'")
ms_body = [t[:2] for t in tokens(macro.group(1))]

def expand(toks):
    """Joins string literals, expanding MS("..."); returns ([(source line, text)], the rest)."""
    out = []
    while toks and toks[0][0] in ("str", "id"):
        kind, val, line = toks.pop(0)
        if kind == "str":
            out.append((line, val))
            continue
        if val != "MS" or [t[:2] for t in toks[:1]] != [("punct", "(")] or \
                toks[1][0] != "str" or [t[:2] for t in toks[2:3]] != [("punct", ")")]:
            fail("unexpected identifier %r in the statement" % val)
        arg = toks[1][1]
        del toks[:3]
        for bk, bv in ms_body:
            if bk == "str":
                out.append((line, bv))
            elif (bk, bv) == ("id", "x"):
                out.append((line, arg))
            else:
                fail("unexpected token %r in MS()" % bv)
    return out, toks

start = src.find("[S_CREATE] = {")
if start < 0:
    fail("no '[S_CREATE] = {' entry")
base = start + len("[S_CREATE] = {")
end = src.find("}", base)  # the entry's end (a "}" inside the SQL would fail the checks below)
name, toks = expand(list(tokens(src[base:end + 1], base)))
if "".join(v for _, v in name) != "create_complaint" or toks[0][:2] != ("punct", ","):
    fail("entry does not start with \"create_complaint\",")
pieces, toks = expand(toks[1:])
if [t[:2] for t in toks[:3]] != [("punct", ","), ("num", "9"), ("punct", "}")]:
    fail("the statement is not followed by ', 9 }' (nine parameters)")
sql = "".join(v for _, v in pieces)
if sorted(set(re.findall(r"\$(\d+)", sql)), key=int) != [str(i) for i in range(1, 10)]:
    fail("the statement does not use exactly $1..$9")

# The statement laid out as in cmd.c, one line per source line: a line break goes only where
# it is whitespace to SQL (outside quotes, not between two characters of one word).
text, quoted, prev = "", False, None
for line, val in pieces:
    if prev is not None and line != prev and not quoted and text and val and \
            not (re.match(r"\w", text[-1]) and re.match(r"\w", val[0])):
        text += "\n"
    text += val
    quoted ^= val.count("'") % 2 == 1
    prev = line
if text.replace("\n", "") != sql:
    fail("internal error: the layout changed the statement")

TITLE = "Kiosk 12 charged my card twice, ref 0001234"
DESCRIPTION = (
    "The self-service kiosk in the main hall rejected my card three times this morning and "
    "then charged it twice for a single ticket. The receipt shows only one purchase, but my "
    "bank statement lists two identical amounts a minute apart. Please refund the duplicate "
    "charge and check whether the kiosk is faulty, because other customers had the same issue.")
CUSTOMER = "customer-01234"
def field(num, value):  # a length-delimited protobuf field
    return bytes([num << 3 | 2, len(value)]) + value
# The event body: a packed tally.v1.ComplaintCreated {category_id "c1", priority MEDIUM,
# customer_id, title, status OPEN}, as command-svc builds it for such a request.
payload = (field(1, b"c1") + bytes([0x10, 2]) + field(3, CUSTOMER.encode()) +
           field(4, TITLE.encode()) + bytes([0x28, 1]))
params = {
    "1": ":tenant", "2": ":key", "3": r"'\x0102030405060708'::bytea", "4": ":category",
    "5": ":prio", "6": "'%s'" % TITLE, "7": "'%s'" % DESCRIPTION, "8": "'%s'" % CUSTOMER,
    "9": r"'\x%s'::bytea" % payload.hex(),
}
body = re.sub(r"\$(\d+)", lambda m: params[m.group(1)], text)

print("""\
-- CreateComplaint as pgbench runs it: the [S_CREATE] statement of command-svc/cmd.c, verbatim
-- (its literals joined, MS() expanded), with pgbench variables for its parameters.
-- GENERATED by `bench/create-vs-pgbench.sh --write-sql`; do not edit. The benchmark regenerates
-- it from cmd.c and refuses to run while this copy differs, so it stays in sync with cmd.c.
--
-- Run with -M prepared (command-svc prepares it too) and these variables:
--   pgbench -n -M prepared -f bench/pgbench-create.sql -D tenant=T -D category=C \\
--       -D run=$(date +%%s) -D n=0 -c 8 -j 2 -T 20 postgresql://...
-- tenant and category must exist. The idempotency key is unique per transaction for up to 99
-- clients and 10^7 transactions per client and run: run * 10^9 + client_id * 10^7 + n.
-- Parameters: $1 :tenant, $2 :key, $3 a fixed 8-byte request hash, $4 :category, $5 :prio
-- (1..4), $6 a %d-byte title, $7 a %d-byte description, $8 a customer id, $9 a %d-byte
-- packed ComplaintCreated.
\\set n :n + 1
\\set prio random(1, 4)
\\set key :run * 1000000000 + :client_id * 10000000 + :n""" %
      (len(TITLE), len(DESCRIPTION), len(payload)))
print(body + ";")
PY
}

if [[ ${1:-} == --write-sql ]]; then
    gen_sql >"$sql_file"
    echo "wrote $sql_file"
    exit 0
fi

build=${1:-${BUILD_DIR:-$repo/build}}
runs=${RUNS:-3}
relay_runs=${RELAY_RUNS:-1}
duration=${DURATION:-20}
warmup=${WARMUP:-2}
concurrency=${CONCURRENCY:-"8 32"}
connections=${CONNECTIONS:-1}
pgbench_jobs=${PGBENCH_JOBS:-2}
export TALLY_STACK_DIR=${TALLY_STACK_DIR:-$repo/.stack-bench}
export TALLY_STACK_PG_PORT=${TALLY_STACK_PG_PORT:-15450}
export TALLY_STACK_REDIS_PORT=${TALLY_STACK_REDIS_PORT:-16450}
svc_bin=$build/bin/command-svc
lg_bin=$build/bin/bench-loadgen
dsn=postgresql://tally@127.0.0.1:$TALLY_STACK_PG_PORT/tally # the owner's: psql, pgbench
svc_dsn=postgresql://tally_app@127.0.0.1:$TALLY_STACK_PG_PORT/tally # command-svc's
pg_dsn=$dsn # psql_q

check_count runs duration connections pgbench_jobs
check_int relay_runs warmup
for c in $concurrency; do
    if ! [[ $c =~ ^[1-9][0-9]*$ ]] || ((c > 99)); then
        die "CONCURRENCY: integers 1..99 (the pgbench keys allow 99 clients), got '$c'"
    fi
done
need_bin "$svc_bin" "$lg_bin"
for tool in "$pg_bin/pgbench" "$pg_bin/psql"; do
    [[ -x $tool ]] || die "$tool not found (install postgresql-15)"
done
need_cmd curl python3

# At exit, after command-svc is stopped: the stack goes down (and its data unless KEEP_STACK=1).
# shellcheck disable=SC2317  # invoked at exit
stack_stop() {
    if [[ ${KEEP_STACK:-0} == 1 ]]; then
        "$repo/scripts/stack" down
    else
        "$repo/scripts/stack" clean
    fi
}
run_init
run_workdir
run_at_exit stack_stop

# The statement must be cmd.c's own: regenerate it and compare with the checked-in copy.
gen_sql >"$work/pgbench-create.sql"
if ! cmp -s "$work/pgbench-create.sql" "$sql_file"; then
    diff -u "$sql_file" "$work/pgbench-create.sql" >&2 || true
    die "bench/pgbench-create.sql differs from [S_CREATE] in command-svc/cmd.c (diff above):" \
        "review the change, then run bench/create-vs-pgbench.sh --write-sql"
fi


# A fixed port can be taken for a moment as the local end of someone's outgoing connection
# (15450 and 16450 lie in Linux's ephemeral range): try a few times.
for attempt in 1 2 3 4 5; do
    "$repo/scripts/stack" up >/dev/null && break
    ((attempt < 5)) || die "scripts/stack up failed 5 times; if a port was in use, choose ports" \
        "above Linux's ephemeral range (61000+): TALLY_STACK_PG_PORT, TALLY_STACK_REDIS_PORT"
    sleep 5
done
"$pg_bin/psql" "${dsn%/tally}/postgres" -X -q -v ON_ERROR_STOP=1 \
    -c 'DROP DATABASE IF EXISTS tally WITH (FORCE)' -c 'CREATE DATABASE tally' ||
    die "cannot recreate database tally"
TALLY_PG_DSN=$dsn TALLY_LOG_LEVEL=warn "$svc_bin" migrate || die "migration failed"
psql_q -c "INSERT INTO tenants (tenant_id, name, time_zone)
             SELECT t, 'Bench', 'Europe/Berlin' FROM unnest(string_to_array('$tenants', ',')) t" \
    -c "INSERT INTO categories (tenant_id, category_id, name) SELECT tenant_id, '$category',
             'Billing' FROM tenants"
case ${NOTIFY_TRIGGER:-on} in
on) ;;
off) # the trigger keeps filling the outbox (migration 0006), without its NOTIFY
    psql_q -c 'CREATE OR REPLACE FUNCTION tally_events_outbox() RETURNS trigger LANGUAGE plpgsql
        AS $$ BEGIN INSERT INTO outbox (seq) SELECT seq FROM new_events; RETURN NULL; END $$' ;;
*) die "NOTIFY_TRIGGER: on or off" ;;
esac
pg_pid=$(head -n 1 "$TALLY_STACK_DIR/pg/postmaster.pid")
redis_pid=$(head -n 1 "$TALLY_STACK_DIR/redis.pid")

# cmd_start WORKERS RELAY: starts command-svc on free loopback ports (port), waits until /readyz.
cmd_start() {
    local http_port
    free_port port http_port
    auth_dev_up "$(dirname "$svc_bin")"
    svc_start command-svc "http://127.0.0.1:$http_port/readyz" \
        env "${auth_env[@]}" TALLY_GRPC_LISTEN="127.0.0.1:$port" TALLY_HTTP_LISTEN="127.0.0.1:$http_port" \
        TALLY_PG_DSN="$svc_dsn" TALLY_REDIS_URL="redis://127.0.0.1:$TALLY_STACK_REDIS_PORT/0" \
        TALLY_WORKERS="$1" TALLY_RELAY="$2" TALLY_LOG_LEVEL=warn "$svc_bin"
    svc_pid=${proc_pid[command-svc]}
}

rows() {
    psql_q -c 'SELECT count(*) FROM idempotency_keys'
}
# client_cpu FILE: seconds of children's CPU from the `times` output in FILE.
client_cpu() {
    tail -n 1 "$1" | awk '{ for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] } }
                          END { print s }'
}

results=$work/results
: >"$results"

# run_side MODE C RUN SIDE: one measured run; appends a line to the results.
run_side() {
    local mode=$1 c=$2 run=$3 side=$4 before after t0 t1 p0 p1 b0 b1 a0 a1 calls
    local qps p50 p99 avg ccpu svcpu=- r0 r1 svt=0
    psql_q -c CHECKPOINT
    before=$(rows)
    if [[ $side == grpc ]]; then
        if [[ $mode == on ]]; then # a live relay keeps up: do not hand it the pgbench rows
            psql_q -c 'DELETE FROM outbox'
            psql_q -c CHECKPOINT
        fi
        cmd_start "$c" "$([[ $mode == on ]] && echo true || echo false)"
        t0=$(proc_ticks "$svc_pid" command-svc)
    fi
    p0=$(pg_ticks "$pg_pid")
    r0=$(proc_ticks "$redis_pid" redis-server)
    read -r b0 a0 < <(machine_ticks)
    if [[ $side == pgbench ]]; then
        rm -f "$work"/pgb.*
        (
            rc=0
            "$pg_bin/pgbench" -n -M prepared -f "$sql_file" -c "$c" -j "$pgbench_jobs" \
                -T $((warmup + duration)) -D tenant=$tenant -D category=$category \
                -D run="$(date +%s)" -D n=0 -l --log-prefix="$work/pgb" "$dsn" \
                >"$work/pgbench.out" 2>&1 || rc=$?
            times >"$work/times"
            exit $rc
        ) || die "pgbench failed: $(cat "$work/pgbench.out")"
        grep -q '^number of failed transactions: 0 ' "$work/pgbench.out" ||
            die "pgbench: failed transactions: $(cat "$work/pgbench.out")"
        calls=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' \
            "$work/pgbench.out")
        # The transactions that ended in the measured window (latencies in ms to pgb.lat).
        read -r qps avg _ < <(pgbench_window "$work/pgb" "$warmup" "$duration" "$work/pgb.lat")
        read -r p50 p99 < <(percentile 50 99 <"$work/pgb.lat" |
            awk '{ printf "%.3f %.3f\n", $1, $2 }')
    else
        (
            rc=0
            "$lg_bin" --target "127.0.0.1:$port" --tenant "$tenants" --category $category \
                --concurrency "$c" --connections "$connections" --duration "$duration" \
                --warmup "$warmup" >"$work/loadgen.out" 2>&1 || rc=$?
            times >"$work/times"
            exit $rc
        ) || die "bench-loadgen failed: $(cat "$work/loadgen.out")"
        read -r calls qps p50 p99 < <(awk '/^RESULT / {
            for (i = 2; i <= NF; i++) { split($i, kv, "="); r[kv[1]] = kv[2] }
            print r["ok_total"], r["qps"], r["p50_ms"], r["p99_ms"] }' "$work/loadgen.out")
        avg=-
        t1=$(proc_ticks "$svc_pid" command-svc)
    fi
    sleep 0.5 # let the postmaster reap pgbench's backends, so that their CPU is counted
    p1=$(pg_ticks "$pg_pid")
    r1=$(proc_ticks "$redis_pid" redis-server)
    read -r b1 a1 < <(machine_ticks)
    if [[ $side == grpc ]]; then
        svc_stop command-svc
        svt=$((t1 - t0))
        svcpu=$(awk -v d=$svt -v hz="$clk_tck" -v n="$calls" 'BEGIN { printf "%.0f", d * 1e6 / hz / n }')
    fi
    after=$(rows)
    ((after - before == calls)) ||
        die "$side wrote $((after - before)) complaints but reported $calls successful calls"
    ccpu=$(client_cpu "$work/times")
    # busy%: both cores, whoever used them; other%: the part used by none of the processes above.
    awk -v hz="$clk_tck" -v n="$calls" -v pg=$((p1 - p0)) -v rd=$((r1 - r0)) -v cl="$ccpu" \
        -v sv=$svt -v busy=$((b1 - b0)) -v all=$((a1 - a0)) 'BEGIN {
            other = busy - pg - rd - sv - cl * hz
            printf "%.0f %.0f %.0f %.0f %.0f\n", pg * 1e6 / hz / n, rd * 1e6 / hz / n, cl * 1e6 / n,
                100 * busy / all, (other > 0 ? 100 * other / all : 0) }' |
        { read -r pgus rdus clus busyp otherp
          row "$mode" "$c" "$run" "$side" "$qps" "$p50" "$p99" "$avg" "$pgus" "$svcpu" "$rdus" \
              "$clus" "$busyp" "$otherp"; } | tee -a "$results"
}

# row FIELDS...: one line of a table (numbers, or - where a column does not apply).
row_fmt='%-5s %3s %3s %-7s %8.0f %7.2f %7.2f %7s %6s %6s %6s %6s %5s %6s'
row() {
    # shellcheck disable=SC2059  # the table's row format
    printf "$row_fmt\n" "$@"
}

header() {
    table_header "$row_fmt" relay C run side QPS/TPS "p50 ms" "p99 ms" "avg ms" "pg us" "svc us" \
        "rd us" "cli us" busy% other%
}

echo "create-vs-pgbench: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores; load:$(uptime | sed 's/.*load average://')"
echo "pgbench -n -M prepared -f bench/pgbench-create.sql -c C -j $pgbench_jobs -T $((warmup + duration)) (first ${warmup} s not measured)"
echo "bench-loadgen --concurrency C --connections $connections --warmup $warmup --duration $duration; command-svc TALLY_WORKERS=C"
echo "PostgreSQL: scripts/stack defaults (fsync on), CHECKPOINT before every run; the events trigger's NOTIFY ${NOTIFY_TRIGGER:-on}"
echo
header
modes="off"
((relay_runs == 0)) || modes="off on"
for mode in $modes; do
    n=$runs
    [[ $mode == on ]] && n=$relay_runs
    for c in $concurrency; do
        for run in $(seq "$n"); do
            if ((run % 2)); then
                run_side "$mode" "$c" "$run" pgbench
                run_side "$mode" "$c" "$run" grpc
            else
                run_side "$mode" "$c" "$run" grpc
                run_side "$mode" "$c" "$run" pgbench
            fi
        done
    done
done

# med MODE C SIDE COLUMN [FORMAT]: the median of one column over the runs ("-" if the
# column does not apply), printed with FORMAT.
med() {
    awk -v m="$1" -v c="$2" -v s="$3" -v k="$4" '$1 == m && $2 == c && $4 == s { print $k }' \
        "$results" | median "${5:-%.15g}"
}

echo
echo "medians; pg, svc, rd, cli us: CPU microseconds per call of PostgreSQL, command-svc, Redis"
echo "and the client (pgbench or bench-loadgen); busy%: both cores, whoever used them; other%: the"
echo "share of both cores that none of these used (other work on the machine: high = disturbed):"
header
for mode in $modes; do
    for c in $concurrency; do
        for side in pgbench grpc; do
            fields=()
            for k in 5 6 7; do
                fields+=("$(med "$mode" "$c" $side $k)")
            done
            fields+=("$(med "$mode" "$c" $side 8 %.3f)")
            for k in 9 10 11 12 13 14; do
                fields+=("$(med "$mode" "$c" $side $k %.0f)")
            done
            row "$mode" "$c" med "$side" "${fields[@]}"
        done
    done
done
echo
# The figure: the ratio of the medians, and the median of the ratios within each run (gRPC and
# pgbench ran back to back there, so it is less sensitive to whatever else the machine does).
for mode in $modes; do
    for c in $concurrency; do
        ratios=$(awk -v m="$mode" -v c="$c" '$1 == m && $2 == c { q[$3, $4] = $5; runs[$3] = 1 }
            END { for (r in runs) printf "%.15g\n", q[r, "grpc"] / q[r, "pgbench"] }' "$results" |
            sort -g)
        awk -v m="$mode" -v c="$c" -v g="$(med "$mode" "$c" grpc 5)" \
            -v p="$(med "$mode" "$c" pgbench 5)" -v g99="$(med "$mode" "$c" grpc 7)" \
            -v p99="$(med "$mode" "$c" pgbench 7)" -v med="$(median <<<"$ratios")" \
            -v list="$(awk '{ printf " %.2f", $1 }' <<<"$ratios")" 'BEGIN {
                printf "relay %-3s C=%-2s gRPC/pgbench QPS: %.2f of the medians, %.2f median of" \
                    " the runs (%s ); p99 %.2f; goal >= 0.70\n", m, c, g / p, med,
                    substr(list, 2), g99 / p99
            }'
    done
done
echo "load at the end:$(uptime | sed 's/.*load average://')"
