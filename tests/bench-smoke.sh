#!/usr/bin/env bash
# make check: the benchmark suite in quick mode (a few hundred connections,
# one-second rounds, a real private PostgreSQL), then checks on what every
# scenario reported. It proves `make bench` and each parley-bench scenario
# work end to end; the numbers themselves mean nothing at this size.
set -euo pipefail

top=${PARLEY_SRCDIR:?}
: "${PARLEYD:?}" "${PARLEY_BENCH:?}"
for tool in taskset jq curl gnuplot; do
	if ! command -v "$tool" >/dev/null; then
		echo "SKIP: $tool is not installed (.ci/setup installs it)"
		exit 77
	fi
done

out=$(mktemp -d /tmp/parley-bench-smoke.XXXXXX)
trap 'rm -rf "$out"' EXIT
rc=0
BENCH_QUICK=1 BENCH_OUT=$out PG_PRIVATE=$top/tests/pg-private.sh \
	timeout 240 bash "$top/src/bench/suite.sh" || rc=$?
if [ "$rc" -ne 0 ]; then
	echo "FAIL: the suite exited with $rc"
	exit 1
fi

fails=0
check() {       # check FILE JQ-EXPRESSION WHAT
	if jq -e "$2" "$out/$1.json" >/dev/null; then
		echo "ok: $1: $3"
	else
		echo "FAIL: $1: $3 ($2)"
		jq . "$out/$1.json" || true
		fails=$((fails + 1))
	fi
}
check idle '.ok and .joined == 400 and .failed == 0 and .dropped_connections == 0' "all 400 held"
# Only that it is measured: under AddressSanitizer a connection takes ~100 KiB.
check idle '.server_rss_bytes_per_connection > 0' "RSS per connection measured"
check connect '.ok and .joined == 400 and .connections_per_s > 0 and .handshake_ms.p50 > 0' "connect rate and handshake times"
check connect '.handshake_ms.p50 <= .handshake_ms.p99 and .handshake_ms.p99 <= .handshake_ms.max' "handshake percentiles ordered"
check fanout-low '.ok and .lost == 0 and .delivered == .expected_deliveries and .delivered > 0' "every delivery arrived"
check fanout-low '.latency_ms.p50 > 0 and .latency_ms.p50 <= .latency_ms.p99 and .ack_latency_ms.p50 > 0' "latency percentiles"
check fanout-low '.server_us_per_delivery > 0 and .generator_cpu_s >= 0' "CPU per delivery measured"
check fanout-high '.ok and .lost == 0' "no loss at the higher rate"
if [ -n "${LOOPBACK_FLOOR:-}" ]; then
	check floor '.ok and .failed == 0 and .us_per_send > 0 and .timed > 0 and .latency_ms.p50 <= .latency_ms.p99' "the kernel floor measured, every frame read"
fi
check ramp '(.steps | length) >= 1 and .steps[0].held and .held_deliveries_per_s >= 2000' "ramp held its first step"
check ramp '[.steps[] | .target_deliveries_per_s] == ([.steps[] | .target_deliveries_per_s] | sort)' "ramp steps go up"
if [ "$(head -c 8 "$out/ramp.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; then
	echo "ok: ramp.png is a PNG"
else
	echo "FAIL: ramp.png missing or not a PNG"
	fails=$((fails + 1))
fi
grep -q '| server RSS per idle connection' "$out/summary.md" || { echo "FAIL: summary.md"; fails=$((fails + 1)); }
grep -q 'durable events/s' "$out/summary.md" || { echo "FAIL: summary.md has no persist row"; fails=$((fails + 1)); }
[ "$fails" -eq 0 ] && echo "bench-smoke: all checks passed"
exit "$fails"
