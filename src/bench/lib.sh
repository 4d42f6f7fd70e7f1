# Shared by the bench suites (suite.sh, persist-suite.sh): sourced, not run.
# The sourcing script defines die().

# CPUS: the CPUs this process may run on, one number each, in order.
allowed_cpus() {
	mapfile -t CPUS < <(taskset -pc $$ | sed 's/.*: //' | tr ',' '\n' |
		awk -F- '{ if (NF == 2) for (i = $1; i <= $2; i++) print i; else print $1 }')
}

# A free TCP port on 127.0.0.1, below the ephemeral range: a client's
# local port cannot take it between the check and the bind.
pick_port() {
	local p
	for _ in $(seq 1 50); do
		p=$(( 20000 + RANDOM % 12000 ))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

# Stop the parleyd in $SERVER_PID, if any: TERM (it drains what it took,
# committing held records), ten seconds, then KILL.
stop_server() {
	[ -n "$SERVER_PID" ] || return 0
	kill -TERM "$SERVER_PID" 2>/dev/null || true
	for _ in $(seq 1 100); do
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=
}
