#!/usr/bin/env bash
# The persistence benchmark, run by `make bench-persist`: durable events per
# second of the persistence thread at --batch-max 1, 100 and 1000, next to
# one INSERT per event and to psql \copy of the same rows into the same
# table (the database's own ceiling), then parleyd --db end to end at
# 10,000 events/s (with the default --batch-delay, then with 0). Prints a
# table next to the targets; about a minute and a half, four at most.
#
# Environment (make bench-persist sets all but the last):
#   PERSIST_BENCH, PARLEYD, PARLEY_BENCH   the binaries
#   PG_PRIVATE        tests/pg-private.sh (a throw-away cluster)
#   BENCH_OUT         where results go (bench-results/persist): one JSON per
#                     run, the server logs, summary.md
#   BENCH_QUICK=1     tiny runs: checks the suite, measures nothing
#
# CPUs. With two or more, PostgreSQL (every process of the private cluster,
# pinned once it is up; backends inherit it) gets the last allowed CPU to
# itself for the in-process runs, and persist-bench or psql the first: the
# database is the ceiling being measured, so it must not fight its own
# client for a core. End to end, parleyd takes the first CPU and
# parley-bench shares the last with PostgreSQL (at 10,000 events/s the
# backend needs about half a core); PERSIST_PIN=0 pins nothing.
#
# Exit status: 0 when every run completed without loss or error; 1 when a
# run failed or lost anything; 2 when a tool is missing. Missing a speed
# target is reported, not a failure: one noisy run is not a regression.
set -euo pipefail

: "${PERSIST_BENCH:?set PERSIST_BENCH to the persist-bench binary}"
: "${PARLEYD:?set PARLEYD to the parleyd binary}"
: "${PARLEY_BENCH:?set PARLEY_BENCH to the parley-bench binary}"
: "${PG_PRIVATE:?set PG_PRIVATE to tests/pg-private.sh}"
OUT=${BENCH_OUT:-bench-results/persist}
QUICK=${BENCH_QUICK:-0}
PIN=${PERSIST_PIN:-1}

die() { echo "bench-persist: $*" >&2; exit 2; }
note() { echo "bench-persist: $*" >&2; }
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for tool in taskset jq curl psql timeout; do
	command -v "$tool" >/dev/null || die "$tool is missing (apt-get install util-linux jq curl postgresql-client)"
done

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT"/*.json "$OUT"/*.log "$OUT"/*.txt "$OUT/summary.md" "$OUT/rows.copy"

# Sizes. The ceiling and batch-max 100 and 1000 write the same N rows into
# an empty table: the indexes grow during a run, so rows/s depends on N.
if [ "$QUICK" = 1 ]; then
	N=20000; N1=500; NI=500; PACE_S=1; RATE=2000; E2E_RATE=1000
	E2E=(-c 20 -r 10 -p 1 --rate "$E2E_RATE" -d 1 --warmup 0.5 --drain 0.5)
else
	N=500000; N1=10000; NI=5000; PACE_S=5; RATE=10000; E2E_RATE=10000
	E2E=(-c 200 -r 100 -p 1 --rate "$E2E_RATE" -d 10 --warmup 2 --drain 2)
fi
ROOMS=100

allowed_cpus
APP_CPU=${CPUS[0]}
DB_CPU=${CPUS[${#CPUS[@]}-1]}
if [ "$PIN" != 1 ] || [ ${#CPUS[@]} -lt 2 ]; then
	[ "$PIN" != 1 ] || note "one CPU only: the database and its client share it"
	PIN=0
fi
# on_app / on_db CMD...: run pinned (or not).
on_app() { if [ "$PIN" = 1 ]; then taskset -c "$APP_CPU" "$@"; else "$@"; fi; }
on_db() { if [ "$PIN" = 1 ]; then taskset -c "$DB_CPU" "$@"; else "$@"; fi; }

PGDIR=
SERVER_PID=
CONNINFO=

cleanup() {
	stop_server
	[ -z "$PGDIR" ] || "$PG_PRIVATE" stop "$PGDIR" >/dev/null 2>&1 || true
	rm -f "$OUT/rows.copy"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

failed=0

# ---- the database -----------------------------------------------------------

PGDIR=$(mktemp -u /tmp/parley-pbench-pg.XXXXXX)
CONNINFO=$("$PG_PRIVATE" start "$PGDIR") || { PGDIR=; die "the private PostgreSQL did not start"; }
if [ "$PIN" = 1 ]; then
	pm=$(head -n 1 "$PGDIR/data/postmaster.pid")
	for pid in "$pm" $(ps -o pid= --ppid "$pm"); do
		taskset -apc "$DB_CPU" "$pid" >/dev/null 2>&1 || note "could not pin PostgreSQL process $pid"
	done
fi
PGVERSION=$(psql -X "$CONNINFO" -Atc 'SHOW server_version' 2>/dev/null || echo '?')
PGCONF=$(psql -X "$CONNINFO" -Atc "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ', ' ORDER BY name)
	FROM pg_settings WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync', 'wal_sync_method',
	'full_page_writes', 'max_wal_size', 'lc_collate')" 2>/dev/null || echo '?')

# ---- runs ------------------------------------------------------------------------

# pbench NAME [persist-bench args...]: one run, pinned, its JSON kept.
pbench() {
	local name=$1 rc=0; shift
	echo "=== $name: persist-bench $*"
	on_app timeout 90 "$PERSIST_BENCH" --conninfo "$CONNINFO" -r "$ROOMS" -q --json "$@" \
		>"$OUT/$name.json" 2>"$OUT/$name.log" || rc=$?
	if [ "$rc" -ne 0 ] || ! jq -e .ok "$OUT/$name.json" >/dev/null 2>&1; then
		echo "--- $name FAILED (exit $rc)"
		cat "$OUT/$name.json" "$OUT/$name.log"
		failed=1
		return 0
	fi
	jq -r 'def f(x): if x == null then "-" else (x * 100 | round / 100 | tostring) end;
	"  \(.committed) events in \(f(.seconds)) s = \(f(.events_per_s))/s; ack ms p50 \(f(.ack_ms.p50)) p99 \(f(.ack_ms.p99)) max \(f(.ack_ms.max))" +
	(if .mode == "persist" then "; \(.batches) batches, commit \(f(.commit_ms_mean)) ms mean; thread CPU \(f(.thread_cpu_pct))%" else "" end) +
	"; backend CPU \(f(.backend_cpu_pct))%"' "$OUT/$name.json"
}

# Saturation: as fast as the thread takes them (the backlog of 100000 keeps
# the producer ahead). Latency here is mostly queueing in that backlog.
pbench batch-1 --mode persist --batch-max 1 -n "$N1"
pbench batch-100 --mode persist --batch-max 100 -n "$N"
pbench batch-1000 --mode persist --batch-max 1000 -n "$N"

# Paced: ack latency at a rate each setting holds; batch-max 1 cannot hold
# 10,000/s, so it is paced at half of what it just sustained.
eps1=$(jq -r '.events_per_s // 0 | floor' "$OUT/batch-1.json" 2>/dev/null || echo 0)
RATE1=$(( eps1 / 2 / 100 * 100 ))
[ "$RATE1" -ge 100 ] || RATE1=100
[ "$RATE1" -le "$RATE" ] || RATE1=$RATE
for b in 1 100 1000; do
	r=$RATE; [ "$b" = 1 ] && r=$RATE1
	pbench "paced-$b" --mode persist --batch-max "$b" --rate "$r" -n $(( r * PACE_S )) -d $(( PACE_S + 2 ))
done

pbench insert --mode insert -n "$NI" -d 15

# ---- the ceiling: psql \copy of the same rows -----------------------------------------

echo "=== ceiling: psql \\copy of $N rows (the best of two)"
"$PERSIST_BENCH" --mode rows -n "$N" -r "$ROOMS" >"$OUT/rows.copy"
ceiling=0
for i in 1 2; do
	# The rows name rooms 1..ROOMS by id: reset makes exactly those.
	if ! on_app "$PERSIST_BENCH" --mode reset -r "$ROOMS" --conninfo "$CONNINFO" 2>>"$OUT/ceiling.log"; then
		echo "--- ceiling FAILED: reset"; failed=1; break
	fi
	t0=$(date +%s%N)
	out=$(on_app timeout 90 psql -X -q -v ON_ERROR_STOP=1 "$CONNINFO" -c "\\copy events (room_id, seq, kind, user_name, target, body, emoji, add, client_id, ts) FROM '$OUT/rows.copy'" 2>&1) || {
		echo "--- ceiling FAILED: $out"; failed=1; break; }
	t1=$(date +%s%N)
	n=$(psql -X "$CONNINFO" -Atc 'SELECT count(*) FROM events')
	if [ "$n" != "$N" ]; then
		echo "--- ceiling FAILED: $n rows in the table, $N copied"; failed=1; break
	fi
	eps=$(awk -v n="$N" -v ns=$(( t1 - t0 )) 'BEGIN { printf "%.0f", n / (ns / 1e9) }')
	echo "  copy $i: $N rows in $(awk -v ns=$(( t1 - t0 )) 'BEGIN { printf "%.2f", ns / 1e9 }') s = $eps/s"
	[ "$eps" -le "$ceiling" ] || ceiling=$eps
done
jq -n --argjson rows "$N" --argjson eps "$ceiling" '{mode: "ceiling", rows: $rows, events_per_s: $eps}' \
	>"$OUT/ceiling.json"
rm -f "$OUT/rows.copy"

# ---- end to end: parleyd --db and parley-bench persist ----------------------------------


# e2e NAME [parleyd args...]: a fresh parleyd --db on an empty table, and
# parley-bench persist against it.
e2e() {
	local name=$1 ready= rc=0; shift
	echo "=== $name: parleyd --db${*:+ $*}, parley-bench persist ${E2E[*]}"
	on_app "$PERSIST_BENCH" --mode reset -r "$ROOMS" --conninfo "$CONNINFO" 2>>"$OUT/$name.log" || true
	PORT=$(pick_port)
	# Not through on_app: $! must be parleyd itself (--server-pid, kill),
	# and a function run in the background is a subshell.
	if [ "$PIN" = 1 ]; then
		taskset -c "$APP_CPU" "$PARLEYD" -l "127.0.0.1:$PORT" -t 1 --allow-anonymous \
			--rate 0 --log-level warn --db "$CONNINFO" "$@" 2>"$OUT/parleyd-$name.log" &
	else
		"$PARLEYD" -l "127.0.0.1:$PORT" -t 1 --allow-anonymous \
			--rate 0 --log-level warn --db "$CONNINFO" "$@" 2>"$OUT/parleyd-$name.log" &
	fi
	SERVER_PID=$!
	for _ in $(seq 1 100); do
		# Acks mean durable only once the database answers: /readyz says so.
		curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && { ready=1; break; }
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.1
	done
	if [ -z "$ready" ]; then
		echo "--- $name FAILED: parleyd --db never became ready"
		cat "$OUT/parleyd-$name.log"
		failed=1
		stop_server
		return 0
	fi
	on_db timeout 90 "$PARLEY_BENCH" persist --port "$PORT" --server-pid "$SERVER_PID" \
		--json -q "${E2E[@]}" >"$OUT/$name.json" || rc=$?
	curl -s "http://127.0.0.1:$PORT/metrics" >"$OUT/metrics-$name.txt" 2>/dev/null || true
	stop_server
	if [ "$rc" -ne 0 ] || ! jq -e .ok "$OUT/$name.json" >/dev/null 2>&1; then
		echo "--- $name FAILED (exit $rc)"
		cat "$OUT/$name.json"
		failed=1
		return 0
	fi
	jq -r 'def f(x): if x == null then "-" else (x * 100 | round / 100 | tostring) end;
	"  \(f(.events_per_s)) events/s, \(f(.deliveries_per_s)) deliveries/s, lost \(.lost); delivery p50 \(f(.latency_ms.p50)) p99 \(f(.latency_ms.p99)) ms; ack p50 \(f(.ack_latency_ms.p50)) p99 \(f(.ack_latency_ms.p99)) ms"' \
		"$OUT/$name.json"
	awk '/^parley_persist_batches_total/ { b = $2 } /^parley_persist_rows_total/ { r = $2 }
	END { if (b > 0) printf "  %d batches of %.1f records\n", b, r / b }' "$OUT/metrics-$name.txt"
}

# The defaults, which the target is about; then --batch-delay 0, to show
# what the wait for company after an idle spell costs at this rate.
e2e e2e
e2e e2e-delay0 --batch-delay 0

# ---- summary -------------------------------------------------------------------------------

val() { jq -r "$2 // \"-\" | if type == \"number\" then (. * 100 | round / 100) else . end" "$OUT/$1.json" 2>/dev/null || echo -; }
# verdict VALUE OP LIMIT: met / missed / - (no number)
verdict() {
	case $1 in -|null|'') echo "-"; return ;; esac
	awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN {
		ok = (op == "<") ? (v < l) : (v >= l); print ok ? "met" : "missed" }'
}
of_ceiling() {
	case $1 in -|null|'') echo "-"; return ;; esac
	awk -v v="$1" -v c="$ceiling" 'BEGIN { if (c > 0) printf "%.0f%%", 100 * v / c; else print "-" }'
}
# row NAME LABEL: one line of the throughput table.
row() {
	local e
	e=$(val "$1" .events_per_s)
	echo "| $2 | $(val "$1" .committed) | $(printf '%.0f' "$e" 2>/dev/null || echo "$e") | $(of_ceiling "$e") | $(val "$1" .ack_ms.p50) | $(val "$1" .ack_ms.p99) | $(val "$1" .backend_cpu_pct) |"
}
# prow NAME LABEL: one line of the paced table.
prow() {
	echo "| $2 | $(val "$1" .rate) | $(val "$1" .events_per_s) | $(val "$1" .rows_per_batch) | $(val "$1" .ack_ms.p50) | $(val "$1" .ack_ms.p99) | $(val "$1" .ack_ms.p99_9) | $(val "$1" .ack_ms.max) |"
}

cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
eps1000=$(val batch-1000 .events_per_s)
pct1000=$(awk -v v="$eps1000" -v c="$ceiling" 'BEGIN { if (c > 0 && v != "-") printf "%.1f", 100 * v / c; else print "-" }')
e2e_p99=$(val e2e .latency_ms.p99)
{
	echo "Measured $(date -u +%Y-%m-%d) on $(nproc) CPUs ($cpu_model), Linux $(uname -r);"
	echo "PostgreSQL $PGVERSION ($PGCONF)."
	if [ "$PIN" = 1 ]; then
		echo "PostgreSQL pinned to CPU $DB_CPU; persist-bench, psql and parleyd to CPU $APP_CPU; parley-bench to CPU $DB_CPU."
	else
		echo "Nothing pinned."
	fi
	echo "Rows: chat events (85% messages of 60-100 bytes, 10% reactions, 5% edits; a UUID client id on each) over $ROOMS rooms, into an empty events table with its indexes (primary key, client id, target)."
	echo
	echo "Sustained, as fast as taken (ack latency here is queueing in the 100000 backlog):"
	echo
	echo "| run | events | events/s | of ceiling | ack p50 ms | ack p99 ms | backend CPU % |"
	echo "| --- | --- | --- | --- | --- | --- | --- |"
	row batch-1 "persist --batch-max 1"
	row batch-100 "persist --batch-max 100"
	row batch-1000 "persist --batch-max 1000"
	row insert "one INSERT per event (autocommit)"
	echo "| psql \\copy, one transaction (ceiling) | $N | $ceiling | 100% | | | |"
	echo
	echo "Paced, open loop (latency from when each event was due, submit to commit notice):"
	echo
	echo "| run | offered/s | events/s | rows/batch | ack p50 ms | ack p99 ms | p99.9 ms | max ms |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
	prow paced-1 "persist --batch-max 1"
	prow paced-100 "persist --batch-max 100"
	prow paced-1000 "persist --batch-max 1000"
	echo
	echo "| target | measured | |"
	echo "| --- | --- | --- |"
	echo "| >= 100000 durable events/s (batch-max 1000) | $eps1000 | $(verdict "$eps1000" ">=" 100000) |"
	echo "| >= 50% of the ceiling (batch-max 1000) | $pct1000% of $ceiling | $(verdict "$pct1000" ">=" 50) |"
	echo "| send-to-delivery p99 < 10 ms at $E2E_RATE events/s (parleyd --db) | $e2e_p99 ms (p50 $(val e2e .latency_ms.p50), ack p99 $(val e2e .ack_latency_ms.p99) ms, $(val e2e .events_per_s) events/s, lost $(val e2e .lost)) | $(verdict "$e2e_p99" "<" 10) |"
	echo "| the same with --batch-delay 0 (for comparison) | $(val e2e-delay0 .latency_ms.p99) ms (p50 $(val e2e-delay0 .latency_ms.p50), lost $(val e2e-delay0 .lost)) | |"
} >"$OUT/summary.md"
echo "=== summary ($OUT/summary.md)"
cat "$OUT/summary.md"
[ "$QUICK" = 1 ] && echo "bench-persist: quick mode: the numbers above check the suite, not the code"
exit "$failed"
