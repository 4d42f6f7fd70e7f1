#!/usr/bin/env bash
# The standard benchmark suite, run by `make bench`: starts its own parleyd
# (in memory, then against a private PostgreSQL) pinned to one CPU, runs
# parley-bench pinned to another, and prints a table of the measured
# numbers next to the targets. Every run is bounded; the whole suite takes
# about two minutes.
#
# Environment (make bench sets the first four):
#   PARLEYD, PARLEY_BENCH   the binaries
#   LOOPBACK_FLOOR          src/bench/loopback-floor: the kernel's own cost
#                           of the fan-out's sends, printed as the floor
#   PG_PRIVATE              tests/pg-private.sh (a throw-away cluster)
#   BENCH_OUT               where results go (bench-results): one JSON per
#                           run, the server logs, ramp.png, summary.md
#   BENCH_QUICK=1           tiny runs (seconds, not minutes): checks the
#                           suite itself, measures nothing worth keeping
#
# Exit status: 0 when every run completed without loss or error; 1 when a
# run failed or lost anything; 2 when a tool is missing. Missing a speed
# target is reported, not a failure: one noisy run is not a regression.
set -euo pipefail

: "${PARLEYD:?set PARLEYD to the parleyd binary}"
: "${PARLEY_BENCH:?set PARLEY_BENCH to the parley-bench binary}"
PG_PRIVATE=${PG_PRIVATE:-}
OUT=${BENCH_OUT:-bench-results}
QUICK=${BENCH_QUICK:-0}

die() { echo "bench: $*" >&2; exit 2; }
note() { echo "bench: $*" >&2; }
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for tool in taskset jq curl; do
	command -v "$tool" >/dev/null || die "$tool is missing (apt-get install util-linux jq curl)"
done
command -v gnuplot >/dev/null || die "gnuplot is missing (apt-get install gnuplot-nox)"

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT"/*.json "$OUT"/*.log "$OUT/ramp.png" "$OUT/summary.md"

# One process may hold at most the hard open-files limit (20000 here).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[ "$NOFILE" = unlimited ] && NOFILE=1048576

# Server on the first allowed CPU, the generator on the second.
allowed_cpus
SERVER_CPU=${CPUS[0]}
GEN_CPU=${CPUS[1]:-${CPUS[0]}}
[ ${#CPUS[@]} -ge 2 ] || note "one CPU only: server and generator share it, numbers mean little"

# Sizes. Idle/connect: 19000 connections if the limit allows (it is the
# limit of one parleyd here), spread over two generator processes.
if [ "$QUICK" = 1 ]; then
	IDLE_C=400; FAN_C=400; FAN_R=4; PROCS_IDLE=2
	DUR=1; WARM=0.5; DRAIN=0.5; RATE_LO=2000; RATE_HI=8000
	RAMP=(--rate 2000 --ramp-step 4000 --ramp-max 10000 -d 1 --warmup 0.3 --drain 0.5)
	PERSIST_RATE=1000
	P99_LIMIT=100     # sanitizer builds run this too: hold, not race
else
	IDLE_C=$(( NOFILE - 1000 < 19000 ? NOFILE - 1000 : 19000 ))
	FAN_C=10000; FAN_R=100; PROCS_IDLE=2
	DUR=10; WARM=2; DRAIN=2; RATE_LO=20000; RATE_HI=90000
	RAMP=(--rate 20000 --ramp-step 20000 --ramp-max 200000 -d 4 --warmup 1 --drain 1)
	PERSIST_RATE=10000
	P99_LIMIT=10
fi
IDLE_R=$(( IDLE_C / 100 ))

SERVER_PID=
PORT=
PGDIR=


# start_server NAME [parleyd args...]: a fresh parleyd, pinned, on a new port.
start_server() {
	local name=$1; shift
	PORT=$(pick_port)
	taskset -c "$SERVER_CPU" "$PARLEYD" -l "127.0.0.1:$PORT" -t 1 \
		--allow-anonymous --rate 0 --log-level warn "$@" \
		2>"$OUT/parleyd-$name.log" &
	SERVER_PID=$!
	for _ in $(seq 1 100); do
		curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && return 0
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.1
	done
	cat "$OUT/parleyd-$name.log" >&2
	die "parleyd did not start"
}

cleanup() {
	stop_server
	if [ -n "$PGDIR" ] && [ -n "$PG_PRIVATE" ]; then
		"$PG_PRIVATE" stop "$PGDIR" >/dev/null 2>&1 || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

failed=0

# bench NAME SCENARIO [parley-bench args...]: run pinned, keep the JSON,
# print its key lines.
bench() {
	local name=$1 scenario=$2 rc=0; shift 2
	echo "=== $name: parley-bench $scenario $*"
	taskset -c "$GEN_CPU" "$PARLEY_BENCH" "$scenario" --port "$PORT" \
		--server-pid "$SERVER_PID" --json -q "$@" >"$OUT/$name.json" || rc=$?
	if [ "$rc" -ne 0 ] || ! jq -e .ok "$OUT/$name.json" >/dev/null 2>&1; then
		echo "--- $name FAILED (exit $rc)"
		cat "$OUT/$name.json"
		failed=1
		return 0
	fi
	show "$name"
}

# The lines of a result a reader wants, from its JSON.
show() {
	jq -r '
	def f(x): if x == null then "-" else (x * 100 | round / 100 | tostring) end;
	if .scenario == "idle" then
	  "  \(.joined) joined in \(f(.connect_s)) s, held \(.held_s) s, \(.dropped_connections) dropped; server RSS \(f(.server_rss_bytes_per_connection)) bytes/connection"
	elif .scenario == "connect" then
	  "  \(.joined) joined, \(.failed) failed in \(f(.connect_s)) s = \(f(.connections_per_s))/s; handshake p50 \(f(.handshake_ms.p50)) ms p99 \(f(.handshake_ms.p99)) ms; server \(f(.server_us_per_connection)) us/connection"
	elif .scenario == "ramp" then
	  (.steps[] | "  \(f(.target_deliveries_per_s))/s: achieved \(f(.deliveries_per_s)), lost \(.lost), p99 \(f(.latency_ms.p99)) ms, server \(f(.server_us_per_delivery)) us/delivery, generator \(f(.generator_cpu_pct))% -> \(.verdict)"),
	  "  held \(f(.held_deliveries_per_s)) deliveries/s; stopped: \(.stopped)"
	else
	  "  \(f(.deliveries_per_s)) deliveries/s, \(f(.events_per_s)) events/s, lost \(.lost); delivery p50 \(f(.latency_ms.p50)) p99 \(f(.latency_ms.p99)) p99.9 \(f(.latency_ms.p99_9)) ms; ack p50 \(f(.ack_latency_ms.p50)) p99 \(f(.ack_latency_ms.p99)) ms; server \(f(.server_us_per_delivery)) us/delivery (\(f(.server_us_per_event)) us/event); generator \(f(.generator_cpu_pct))%\(if .generator_bound then " GENERATOR-BOUND" else "" end)"
	end' "$OUT/$1.json"
}

# ---- in memory ----------------------------------------------------------

start_server idle
bench idle idle -c "$IDLE_C" -r "$IDLE_R" -p "$PROCS_IDLE" -d "$DUR"
stop_server

start_server connect
bench connect connect -c "$IDLE_C" -r "$IDLE_R" -p "$PROCS_IDLE"
stop_server

# The floor under the next run: the same sends, at the same rate, from a
# program that does nothing else (pinned like parleyd, reader like the
# generator).
if [ -n "${LOOPBACK_FLOOR:-}" ]; then
	echo "=== floor: loopback-floor -c $FAN_C -r $FAN_R --rate $RATE_LO"
	if taskset -c "$SERVER_CPU" "$LOOPBACK_FLOOR" -c "$FAN_C" -r "$FAN_R" \
	    --rate "$RATE_LO" -d "$DUR" --reader-cpu "$GEN_CPU" >"$OUT/floor.json" &&
	    jq -e .ok "$OUT/floor.json" >/dev/null; then
		jq -r '"  \(.us_per_send) us of CPU per send(), p99 \(.latency_ms.p99) ms from event to read"' "$OUT/floor.json"
	else
		echo "--- floor FAILED"
		cat "$OUT/floor.json"
		failed=1
	fi
fi

start_server fanout
bench fanout-low fanout -c "$FAN_C" -r "$FAN_R" -p 1 --rate "$RATE_LO" \
	-d "$DUR" --warmup "$WARM" --drain "$DRAIN"
stop_server

start_server fanout-high
bench fanout-high fanout -c "$FAN_C" -r "$FAN_R" -p 1 --rate "$RATE_HI" \
	-d "$DUR" --warmup "$WARM" --drain "$DRAIN"
stop_server

start_server ramp
bench ramp ramp -c "$FAN_C" -r "$FAN_R" -p 1 "${RAMP[@]}" --p99-limit "$P99_LIMIT" \
	--plot "$OUT/ramp.png"
stop_server

# ---- with a private PostgreSQL -------------------------------------------

persist_note=
if [ -z "$PG_PRIVATE" ]; then
	persist_note="skipped: PG_PRIVATE not set"
else
	PGDIR=$(mktemp -u /tmp/parley-bench-pg.XXXXXX)
	if ! conninfo=$("$PG_PRIVATE" start "$PGDIR"); then
		echo "--- persist FAILED: the private PostgreSQL did not start"
		failed=1
		PGDIR=
	else
		start_server persist --db "$conninfo"
		# Acks mean durable only once the schema is in and the database
		# answers: /readyz says so.
		ready=
		for _ in $(seq 1 100); do
			curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && { ready=1; break; }
			sleep 0.1
		done
		if [ -z "$ready" ]; then
			echo "--- persist FAILED: parleyd --db never became ready"
			cat "$OUT/parleyd-persist.log" >&2
			failed=1
		else
			bench persist persist -c 200 -r 100 -p 1 --rate "$PERSIST_RATE" \
				-d "$DUR" --warmup "$WARM" --drain "$DRAIN"
		fi
		stop_server
		"$PG_PRIVATE" stop "$PGDIR" >/dev/null || true
		PGDIR=
	fi
fi
[ -z "$persist_note" ] || echo "=== persist: $persist_note"

# ---- summary ---------------------------------------------------------------

val() { jq -r "$2 // \"-\" | if type == \"number\" then (. * 100 | round / 100) else . end" "$OUT/$1.json" 2>/dev/null || echo -; }
# verdict VALUE OP LIMIT: met / missed / - (no number)
verdict() {
	case $1 in -|null|'') echo "-"; return ;; esac
	awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN {
		ok = (op == "<=") ? (v <= l) : (v >= l); print ok ? "met" : "missed" }'
}

cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
{
	echo "Measured $(date -u +%Y-%m-%d) on $(nproc) CPUs ($cpu_model), Linux $(uname -r);"
	echo "parleyd -t 1 pinned to CPU $SERVER_CPU, parley-bench pinned to CPU $GEN_CPU."
	echo
	echo "| measure | target | measured | |"
	echo "| --- | --- | --- | --- |"
	v=$(val idle .joined); echo "| connections held by one parleyd (idle) | 19000 | $v | $(verdict "$v" ">=" 19000) |"
	v=$(val idle .server_rss_bytes_per_connection); echo "| server RSS per idle connection, bytes | <= 2048 | $v | $(verdict "$v" "<=" 2048) |"
	v=$(val connect .connections_per_s); echo "| connections per second (hello + join, rooms of 100) | | $v | |"
	v=$(val fanout-low .server_us_per_delivery); echo "| server CPU per delivery at $RATE_LO/s, us | <= 12 | $v | $(verdict "$v" "<=" 12) |"
	v=$(val fanout-low .latency_ms.p99); echo "| p99 send-to-delivery at $RATE_LO/s, ms | < 2 | $v | $(verdict "$v" "<=" 2) |"
	v=$(val fanout-low .lost); echo "| lost at $RATE_LO/s | 0 | $v | $(verdict "$v" "<=" 0) |"
	if [ -f "$OUT/floor.json" ]; then
		v=$(val floor .us_per_send); echo "| floor: CPU per send() at $RATE_LO/s with no server code, us | | $v | |"
		v=$(val floor .latency_ms.p99); echo "| floor: p99 event-to-read of those sends, ms | | $v | |"
	fi
	v=$(val fanout-high .lost); a=$(val fanout-high .deliveries_per_s)
	held=missed
	if [ "$(verdict "$v" "<=" 0)" = met ] && [ "$(verdict "$a" ">=" $((RATE_HI * 99 / 100)))" = met ]; then held=met; fi
	[ "$RATE_HI" -ge 90000 ] || held=-
	echo "| deliveries/s held without loss | >= 90000 | $a achieved, $v lost | $held |"
	v=$(val fanout-high .latency_ms.p99); echo "| p99 at $RATE_HI/s, ms | | $v | |"
	v=$(val ramp .held_deliveries_per_s); echo "| highest rate held (p99 <= $P99_LIMIT ms, no loss), deliveries/s | | $v | |"
	if [ -f "$OUT/persist.json" ]; then
		v=$(val persist .events_per_s); echo "| durable events/s at $PERSIST_RATE/s offered | | $v | |"
		v=$(val persist .ack_latency_ms.p99); echo "| ack p99 with --db, ms | | $v | |"
		v=$(val persist .latency_ms.p99); echo "| send-to-delivery p99 with --db, ms | < 10 | $v | $(verdict "$v" "<=" 10) |"
	else
		echo "| durable events/s (persist) | | $persist_note | |"
	fi
	if [ "$QUICK" != 1 ] && [ -f "$OUT/floor.json" ] && [ "$(verdict "$(val floor .us_per_send)" "<=" 12)" = missed ]; then
		echo
		echo "Note: the kernel alone charged more than 12 us per send() in this run: the per-delivery target is below this machine's floor."
	fi
	for f in "$OUT"/*.json; do
		[ "$(basename "$f")" != floor.json ] || continue   # no generator there
		if jq -e '.generator_bound == true or ([.steps[]?.generator_bound] | any)' "$f" >/dev/null 2>&1; then
			echo
			echo "Note: the generator was near its CPU bound in $(basename "$f" .json); that result is a lower bound on the server."
		fi
	done
} >"$OUT/summary.md"
echo "=== summary ($OUT/summary.md; plot: $OUT/ramp.png)"
cat "$OUT/summary.md"
[ "$QUICK" = 1 ] && echo "bench: quick mode: the numbers above check the suite, not the server"
exit "$failed"
