#!/bin/sh
# idle-rss.sh - the server's resident memory per idle WebSocket connection.
#
#   tests/idle-rss.sh [N=15000] [PROCS=3]
#
# Starts $PARLEYD (default ./parleyd) on a free 127.0.0.1 port with -t 2 and
# $PARLEYD_ARGS, reads its VmRSS, opens N idle connections from PROCS
# idle_conns processes (source addresses 127.0.0.2, .3, ...), reads VmRSS
# again and prints the difference per connection. $IDLE_CONNS overrides the
# client (default: tests/idle_conns next to this script, or in the build
# tree). Every wait is bounded; the trap stops everything on exit.
set -u

N=${1:-15000}
PROCS=${2:-3}
PARLEYD=${PARLEYD:-./parleyd}
PARLEYD_ARGS=${PARLEYD_ARGS:-}
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${IDLE_CONNS:-}" ]; then
	if [ -x ./tests/idle_conns ]; then IDLE_CONNS=./tests/idle_conns
	else IDLE_CONNS=$here/idle_conns; fi
fi
CONNECT_TIMEOUT=${CONNECT_TIMEOUT:-120}

die() { echo "idle-rss: $*" >&2; exit 1; }
# kill -0 also succeeds for a zombie: look at the state.
alive() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

[ -x "$PARLEYD" ] || die "server binary $PARLEYD not found (set PARLEYD)"
[ -x "$IDLE_CONNS" ] || die "client $IDLE_CONNS not found (make tests/idle_conns)"
if ! [ "$N" -gt 0 ] 2>/dev/null || ! [ "$PROCS" -gt 0 ] 2>/dev/null ||
    [ "$PROCS" -ge 250 ]; then
	die "bad N or PROCS"
fi

tmp=$(mktemp -d /tmp/idle-rss.XXXXXX) || die "mktemp"
spid=""
cpids=""

# shellcheck disable=SC2317 # called by the trap
cleanup() {
	for p in $cpids; do kill -TERM "$p" 2>/dev/null; done
	for p in $cpids; do wait "$p" 2>/dev/null; done
	if [ -n "$spid" ] && kill -0 "$spid" 2>/dev/null; then
		kill -KILL "$spid" 2>/dev/null
		wait "$spid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Enough descriptors for the server and each client.
# shellcheck disable=SC3045 # dash, bash and busybox sh all have these
ulimit -n "$(ulimit -Hn)" 2>/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null)
[ -n "$port" ] || die "no free port (python3 needed)"

# shellcheck disable=SC2086 # PARLEYD_ARGS is split on purpose
"$PARLEYD" -l "127.0.0.1:$port" -t 2 --allow-anonymous $PARLEYD_ARGS >"$tmp/server.log" 2>&1 &
spid=$!

healthz() {
	timeout 2 python3 - "$port" <<'EOF' 2>/dev/null
import sys, urllib.request
try:
    r = urllib.request.urlopen("http://127.0.0.1:%s/healthz" % sys.argv[1], timeout=1)
    sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

metric() {
	timeout 5 python3 - "$port" "$1" <<'EOF' 2>/dev/null
import sys, urllib.request
body = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=3).read().decode()
for line in body.splitlines():
    f = line.split()
    if len(f) >= 2 and f[0] == sys.argv[2]:
        print(f[1]); break
EOF
}

i=0
until healthz; do
	alive "$spid" || { cat "$tmp/server.log" >&2; die "server exited"; }
	i=$((i + 1))
	[ $i -lt 100 ] || { cat "$tmp/server.log" >&2; die "server not ready in 10 s"; }
	sleep 0.1
done

rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$spid/status"; }   # KiB

sleep 1
base=$(rss)
echo "server pid $spid port $port, baseline VmRSS ${base} KiB"

per=$((N / PROCS))
rest=$((N - per * PROCS))
k=0
while [ $k -lt "$PROCS" ]; do
	n=$per
	[ $k -lt "$rest" ] && n=$((n + 1))
	"$IDLE_CONNS" -p "$port" -n "$n" -s "127.0.0.$((k + 2))" -t 3600 \
	    -T "$CONNECT_TIMEOUT" >"$tmp/client.$k" 2>"$tmp/client.$k.err" &
	cpids="$cpids $!"
	k=$((k + 1))
done

# Wait (bounded) until every client printed its "connected" line.
limit=$((CONNECT_TIMEOUT + 30))
start=$(date +%s)
while :; do
	done_n=0
	k=0
	while [ $k -lt "$PROCS" ]; do
		grep -q '^connected' "$tmp/client.$k" 2>/dev/null && done_n=$((done_n + 1))
		k=$((k + 1))
	done
	[ $done_n -eq "$PROCS" ] && break
	[ $(($(date +%s) - start)) -lt $limit ] || die "clients did not finish connecting in ${limit} s"
	alive "$spid" || die "server died while connecting"
	sleep 0.2
done

connected=0
failed=0
k=0
while [ $k -lt "$PROCS" ]; do
	line=$(grep '^connected' "$tmp/client.$k")
	echo "client $k (127.0.0.$((k + 2))): $line"
	# shellcheck disable=SC2086 # split "connected N failed F seconds S"
	set -- $line
	connected=$((connected + $2))
	failed=$((failed + $4))
	k=$((k + 1))
done

sleep 2
loaded=$(rss)
conns=$(metric parley_connections)
echo "connections: $connected connected, $failed failed; parley_connections ${conns:-?}"
echo "baseline VmRSS: ${base} KiB"
echo "loaded VmRSS:   ${loaded} KiB"
if [ "$connected" -gt 0 ]; then
	awk -v b="$base" -v l="$loaded" -v n="$connected" 'BEGIN {
		d = (l - b) * 1024 / n
		printf "per connection: %.0f bytes (%.2f KiB) over %d connections\n", d, d / 1024, n }'
fi

# Stop the clients, then the server; the server must exit 0.
for p in $cpids; do kill -TERM "$p" 2>/dev/null; done
for p in $cpids; do wait "$p" 2>/dev/null; done
cpids=""
kill -TERM "$spid"
i=0
while alive "$spid" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if alive "$spid"; then
	die "server did not exit within 10 s of SIGTERM"
fi
wait "$spid"
st=$?
spid=""
echo "server exit status: $st"
[ "$st" -eq 0 ] || { tail -20 "$tmp/server.log" >&2; exit 1; }
[ "$failed" -eq 0 ] || exit 1
exit 0
