#!/usr/bin/env bash
# pg-private.sh - a private, throw-away PostgreSQL cluster for tests and
# benchmarks.
#
#   tests/pg-private.sh start DIR   initdb + start a cluster in DIR, print its
#                                   libpq conninfo (also in DIR/conninfo)
#   tests/pg-private.sh stop DIR    stop it and remove DIR
#   tests/pg-private.sh pause DIR   stop it but keep DIR (data, port, conninfo)
#   tests/pg-private.sh resume DIR  start a paused cluster again: same data,
#                                   same port, same conninfo (printed again)
#
# pause and resume let a test take the database away under a running client
# (parleyd) and bring it back; stop still removes everything, paused or not.
#
# Who calls it: the test harness of parley's database tests (one cluster per
# test run), `make bench` and .ci/run. Nothing here touches a system cluster:
# the cluster lives entirely in DIR, listens on 127.0.0.1 only, on a random
# free port (20000-60000; PG_PORT=N forces one), with its unix socket in
# DIR/sock, trust authentication, superuser "parley" and database "parley".
# fsync and synchronous_commit stay on: durability is part of what the tests
# check, and benchmarks should measure the real cost of a commit.
#
# Why it runs as nobody: initdb, pg_ctl and postgres refuse to run as root,
# and CI runs as root. So when invoked as root, DIR is chowned to nobody
# (PG_RUNAS=user overrides) and every PostgreSQL program runs as that user
# through setpriv (or runuser). DIR's parents must be traversable by that
# user, which /tmp is; the script checks and says which parent is not. When
# not root, everything runs as the current user.
#
# Environment: PG_BINDIR (directory holding initdb/pg_ctl; default
# $(pg_config --bindir), else the newest /usr/lib/postgresql/*/bin, else
# PATH), PG_PORT (force the port), PG_RUNAS (user to run as when root).
# Every step is bounded in time; start gives up after about 60 s in total and
# then leaves nothing running. The server log is DIR/server.log, the output of
# initdb & co. DIR/setup.log.
set -euo pipefail

prog=pg-private
T0=$SECONDS
DEADLINE=55            # seconds after which start gives up retrying

usage() {
	cat <<EOF
Usage: $0 start DIR    create DIR if needed, initdb a cluster in DIR/data,
                       start it and print its conninfo (also in DIR/conninfo)
       $0 stop DIR     stop the cluster in DIR and remove DIR
       $0 pause DIR    stop the cluster in DIR, keeping its data and port
       $0 resume DIR   start a paused cluster again (same port, same data)
                       and print its conninfo
       $0 --help       this text
Environment: PG_BINDIR (PostgreSQL bin directory), PG_PORT (force the TCP
port), PG_RUNAS (unprivileged user when run as root, default nobody).
EOF
}

die() { echo "$prog: $*" >&2; exit 1; }
note() { echo "$prog: $*" >&2; }

# The caller's libpq/PostgreSQL environment must not leak into the programs
# run here (PGDATA, PGPORT, PGSSLMODE=require, PGOPTIONS, ...).
for v in PGDATA PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGOPTIONS \
	PGSERVICE PGSERVICEFILE PGSSLMODE PGREQUIRESSL PGGSSENCMODE PGTZ \
	PGCLIENTENCODING PGAPPNAME PGPASSWORD PGPASSFILE PGCONNECT_TIMEOUT \
	PGTARGETSESSIONATTRS PGSYSCONFDIR PGLOCALEDIR PGCTLTIMEOUT; do
	unset "$v"
done

# ---------------------------------------------------------------- binaries

find_bindir() {
	local d
	if [ -n "${PG_BINDIR:-}" ]; then
		if ! [ -x "$PG_BINDIR/initdb" ] || ! [ -x "$PG_BINDIR/pg_ctl" ]; then
			die "PG_BINDIR=$PG_BINDIR does not contain initdb and pg_ctl"
		fi
		BINDIR=$PG_BINDIR
		return
	fi
	if command -v pg_config >/dev/null 2>&1; then
		d=$(pg_config --bindir 2>/dev/null || true)
		if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
			BINDIR=$d
			return
		fi
	fi
	d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
	if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
		BINDIR=$d
		return
	fi
	d=$(command -v initdb 2>/dev/null || true)
	if [ -n "$d" ] && [ -x "$(dirname "$d")/pg_ctl" ]; then
		BINDIR=$(dirname "$d")
		return
	fi
	die "PostgreSQL server programs (initdb, pg_ctl) not found: install postgresql (Debian: postgresql-15) or set PG_BINDIR"
}

find_psql() {
	if [ -x "$BINDIR/psql" ]; then
		PSQL=$BINDIR/psql
	elif command -v psql >/dev/null 2>&1; then
		PSQL=$(command -v psql)
	else
		die "psql not found (Debian: postgresql-client-15)"
	fi
}

# ------------------------------------------------------------ run as owner

RUN_UID=""
RUN_GID=""
PGRUN=()               # command prefix that drops to the run user

# Decide who runs the PostgreSQL programs: an unprivileged user when root.
pick_user() {
	local user=${PG_RUNAS:-nobody}
	[ "$(id -u)" -eq 0 ] || return 0
	RUN_UID=$(id -u "$user" 2>/dev/null) || die "user $user does not exist (set PG_RUNAS)"
	RUN_GID=$(id -g "$user")
	[ "$RUN_UID" -ne 0 ] || die "PG_RUNAS=$user is root; PostgreSQL refuses to run as root"
	set_pgrun
}

set_pgrun() {
	if command -v setpriv >/dev/null 2>&1; then
		PGRUN=(env HOME=/ setpriv --reuid="$RUN_UID" --regid="$RUN_GID" --clear-groups --)
	elif command -v runuser >/dev/null 2>&1; then
		PGRUN=(env HOME=/ runuser -u "$(id -nu "$RUN_UID")" --)
	else
		die "running as root needs setpriv or runuser (util-linux) to drop privileges"
	fi
}

# Run "$@" as the unprivileged user (or as ourselves when not root).
as_pg() { "${PGRUN[@]}" "$@"; }

# Seconds left before the overall deadline, at most $1.
budget() {
	local left=$((DEADLINE - (SECONDS - T0)))
	[ "$left" -gt "$1" ] && left=$1
	echo "$left"
}

# ------------------------------------------------------------------- ports

port_in_use() {
	if command -v ss >/dev/null 2>&1; then
		[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
	else
		timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
	fi
}

# Sets PORT to a random port in 20000-60000 nothing listens on. Not in a
# $(...) subshell: that would replay the same $RANDOM sequence every time.
pick_port() {
	local i
	for i in $(seq 1 200); do
		PORT=$(( ((RANDOM << 15) | RANDOM) % 40001 + 20000 ))
		port_in_use "$PORT" || return 0
	done
	: "$i"
	return 1
}

# --------------------------------------------------------------- postmaster

# pid of the running postmaster of DIR/data, or nothing.
postmaster_pid() {
	local pid pidfile=$1/data/postmaster.pid
	[ -r "$pidfile" ] || return 0
	pid=$(head -n 1 "$pidfile" 2>/dev/null || true)
	case $pid in ''|*[!0-9]*) return 0 ;; esac
	# A zombie or a recycled pid is not our postmaster.
	[ -r "/proc/$pid/status" ] || return 0
	grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null && return 0
	case $(cat "/proc/$pid/comm" 2>/dev/null) in
	postgres|postmaster) echo "$pid" ;;
	esac
}

# Wait up to $2 seconds for pid $1 to be gone (or a zombie).
wait_gone() {
	local pid=$1 i
	for i in $(seq 1 $(($2 * 10))); do
		[ -r "/proc/$pid/status" ] || return 0
		grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null && return 0
		sleep 0.1
	done
	: "$i"
	return 1
}

# Stop the cluster in $1: fast, then immediate, then SIGKILL. Bounded (~30 s).
stop_cluster() {
	local dir=$1 pid log=/dev/null
	pid=$(postmaster_pid "$dir")
	[ -n "$pid" ] || return 0
	[ -w "$dir" ] && log=$dir/setup.log
	if [ -n "${BINDIR:-}" ]; then
		timeout 15 "${PGRUN[@]}" "$BINDIR/pg_ctl" stop -D "$dir/data" -m fast -w -t 10 >>"$log" 2>&1 || true
		wait_gone "$pid" 1 && return 0
		note "fast shutdown did not finish in 10 s, trying immediate"
		timeout 15 "${PGRUN[@]}" "$BINDIR/pg_ctl" stop -D "$dir/data" -m immediate -w -t 10 >>"$log" 2>&1 || true
		wait_gone "$pid" 1 && return 0
	else
		kill -INT "$pid" 2>/dev/null || true      # fast shutdown
		wait_gone "$pid" 10 && return 0
		kill -QUIT "$pid" 2>/dev/null || true     # immediate shutdown
		wait_gone "$pid" 5 && return 0
	fi
	note "postmaster $pid still running, killing it"
	kill -KILL "$pid" 2>/dev/null || true
	if ! wait_gone "$pid" 5; then
		note "could not stop postmaster $pid"
		return 1
	fi
	# Its children notice the postmaster's death and exit on their own.
	sleep 0.5
}

# -------------------------------------------------------------------- start

DIR=""
CREATED_DIR=0          # 1 if start made DIR (CREATED_TOP: with its parents)
CREATED_TOP=""
STARTED_OK=0

# On any failure of start: show the logs, stop the server, remove what we made.
start_cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	[ "$STARTED_OK" -eq 1 ] && exit "$rc"
	[ "$rc" -eq 0 ] && rc=1
	if [ -n "$DIR" ] && [ -d "$DIR" ]; then
		if [ -s "$DIR/setup.log" ]; then
			echo "--- $prog: last lines of setup output:" >&2
			tail -n 15 "$DIR/setup.log" >&2 || true
		fi
		if [ -s "$DIR/server.log" ]; then
			echo "--- $prog: last lines of $DIR/server.log:" >&2
			tail -n 15 "$DIR/server.log" >&2 || true
		fi
		stop_cluster "$DIR" || true
		if [ "$CREATED_DIR" -eq 1 ]; then
			rm -rf -- "$DIR"
			[ "$CREATED_TOP" = "$DIR" ] || rm -rf -- "$CREATED_TOP"
		else
			rm -rf -- "$DIR/data" "$DIR/sock" "$DIR/server.log" \
				"$DIR/setup.log" "$DIR/conninfo" "$DIR/.pg-private"
		fi
	fi
	echo "$prog: start failed, nothing left running" >&2
	exit "$rc"
}

# First parent of $1 (from / down) the run user cannot traverse.
untraversable_parent() {
	local path=$1 p="" part
	local IFS=/
	for part in $path; do
		[ -n "$part" ] || continue
		p=$p/$part
		if ! as_pg test -x "$p" 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
}

conf_quote() { printf "'%s'" "${1//\'/\'\'}"; }

do_start() {
	local arg=$1 parent top who port attempt sockdir sockconf newlog t rc
	local localeopt conninfo out

	find_bindir
	find_psql
	pick_user
	who=$(if [ -n "$RUN_UID" ]; then id -nu "$RUN_UID"; else id -nu; fi)

	case $arg in
	*[\'\"\\]*|*[[:cntrl:]]*) die "DIR must not contain quotes, backslashes or control characters: $arg" ;;
	esac
	if [ -n "${PG_PORT:-}" ]; then
		case $PG_PORT in ''|*[!0-9]*) die "PG_PORT=$PG_PORT is not a port number" ;; esac
		if [ "$PG_PORT" -lt 1024 ] || [ "$PG_PORT" -gt 65535 ]; then
			die "PG_PORT=$PG_PORT is out of range (1024-65535)"
		fi
	fi

	# Create DIR (and its parents) if needed; a DIR that exists must be empty.
	if [ -e "$arg" ] || [ -L "$arg" ]; then
		[ -d "$arg" ] || die "$arg exists and is not a directory"
		[ -z "$(ls -A "$arg")" ] ||
			die "$arg is not empty (a cluster already running there? stop it first)"
	else
		# Remember the topmost directory we create, to remove it on failure.
		top=$arg
		while parent=$(dirname "$top") && [ "$parent" != "$top" ] &&
			! [ -e "$parent" ]; do
			top=$parent
		done
		mkdir -p -- "$arg" || die "cannot create $arg"
		CREATED_TOP=$(cd "$top" && pwd -P) || die "cannot resolve $top"
		CREATED_DIR=1
	fi
	DIR=$(cd "$arg" && pwd -P) || die "cannot resolve $arg"
	[ "$DIR" != / ] || die "DIR must not be /"
	trap start_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	trap 'exit 129' HUP
	# Programs run as nobody cannot work in the caller's directory (/root).
	cd /

	: >"$DIR/.pg-private"     # marks DIR as ours, for stop's rm -rf
	: >"$DIR/setup.log"
	chmod 0700 "$DIR"
	if [ -n "$RUN_UID" ]; then
		chown "$RUN_UID:$RUN_GID" "$DIR" || die "cannot chown $DIR to $who"
	fi
	if ! as_pg test -w "$DIR" -a -x "$DIR" 2>/dev/null; then
		parent=$(untraversable_parent "$DIR")
		if [ -n "$parent" ]; then
			die "$who cannot traverse $parent ($(stat -c '%A %U:%G' "$parent")); put DIR under /tmp or chmod o+x $parent"
		fi
		die "$who cannot write to $DIR"
	fi

	# initdb: C.UTF-8 if the system knows it, else no locale (C) with UTF8.
	for localeopt in --locale=C.UTF-8 --no-locale; do
		t=$(budget 30)
		[ "$t" -ge 2 ] || die "out of time before initdb"
		rc=0
		timeout "$t" "${PGRUN[@]}" "$BINDIR/initdb" -D "$DIR/data" -U parley --auth=trust -E UTF8 \
			"$localeopt" --no-sync >>"$DIR/setup.log" 2>&1 || rc=$?
		[ "$rc" -eq 0 ] && break
		[ "$rc" -eq 124 ] && die "initdb timed out after ${t}s"
		rm -rf -- "$DIR/data"
		[ "$localeopt" = --no-locale ] && die "initdb failed (exit $rc)"
		note "initdb $localeopt failed, retrying with --no-locale"
	done

	# The unix socket path (DIR/sock/.s.PGSQL.NNNNN) must fit in sun_path
	# (108 bytes with the NUL); if DIR is too long, TCP only.
	sockdir=$DIR/sock
	if [ "${#sockdir}" -le 92 ]; then
		as_pg mkdir -m 0700 "$sockdir"
		sockconf=$(conf_quote "$sockdir")
	else
		note "$DIR is too long for a unix socket path; TCP only"
		sockconf="''"
	fi
	echo "include 'private.conf'" >>"$DIR/data/postgresql.conf"

	for attempt in 1 2 3 4 5; do
		if [ -n "${PG_PORT:-}" ]; then
			port=$PG_PORT
		else
			pick_port || die "no free TCP port found in 20000-60000"
			port=$PORT
		fi
		cat >"$DIR/data/private.conf" <<EOF
# Written by tests/pg-private.sh: a private cluster for tests and benchmarks.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = $sockconf
max_connections = 100
shared_buffers = 128MB
fsync = on
synchronous_commit = on
full_page_writes = on
ssl = off
logging_collector = off
log_destination = 'stderr'
log_min_messages = warning
EOF
		[ -z "$RUN_UID" ] || chown "$RUN_UID:$RUN_GID" "$DIR/data/private.conf"
		chmod 0600 "$DIR/data/private.conf"
		# server.log is opened by pg_ctl, as the run user.
		[ -e "$DIR/server.log" ] || as_pg touch "$DIR/server.log"
		newlog=$(( $(stat -c %s "$DIR/server.log") + 1 ))

		t=$(budget 30)
		[ "$t" -ge 2 ] || die "out of time starting the server"
		rc=0
		timeout $((t + 5)) "${PGRUN[@]}" "$BINDIR/pg_ctl" start -D "$DIR/data" -l "$DIR/server.log" -w -t "$t" \
			>>"$DIR/setup.log" 2>&1 || rc=$?
		[ "$rc" -eq 0 ] && break
		# A pg_ctl timeout may leave it starting.
		stop_cluster "$DIR" || die "could not stop the failed server"
		# Only a port clash (someone took it since pick_port) is retried.
		if tail -c "+$newlog" "$DIR/server.log" |
		   grep -qi 'could not bind\|address already in use'; then
			[ -z "${PG_PORT:-}" ] || die "PG_PORT=$PG_PORT is already in use"
			note "port $port was taken, retrying (attempt $attempt)"
			continue
		fi
		die "pg_ctl start failed (exit $rc)"
	done
	[ "$rc" -eq 0 ] || die "could not start the server on a free port after 5 attempts"

	# Database parley, owned by the superuser parley.
	t=$(budget 15)
	[ "$t" -ge 2 ] || die "out of time creating the database"
	timeout "$t" "$PSQL" -X -q -v ON_ERROR_STOP=1 \
		"host=127.0.0.1 port=$port dbname=postgres user=parley connect_timeout=5" \
		-c 'CREATE DATABASE parley OWNER parley' >>"$DIR/setup.log" 2>&1 ||
		die "CREATE DATABASE parley failed"

	conninfo="host=127.0.0.1 port=$port dbname=parley user=parley"
	t=$(budget 15)
	[ "$t" -ge 2 ] || die "out of time verifying the server"
	out=$(timeout "$t" "$PSQL" -X "$conninfo connect_timeout=5" -Atc 'select 1' 2>>"$DIR/setup.log") || true
	[ "$out" = 1 ] || die "the server does not answer 'select 1' on $conninfo"

	echo "$conninfo" >"$DIR/conninfo"
	STARTED_OK=1
	echo "$conninfo"
}

# --------------------------------------------------------------------- stop

# Resolve $1 to a directory start made (or an empty one); sets DIR.
our_dir() {
	local arg=$1
	[ -d "$arg" ] || die "$arg is not a directory"
	DIR=$(cd "$arg" && pwd -P) || die "cannot resolve $arg"
	[ "$DIR" != / ] || die "refusing to use /"
	# Only what start made: DIR marked as ours, or an empty DIR.
	if [ ! -e "$DIR/.pg-private" ] && [ -n "$(ls -A "$DIR")" ]; then
		die "$DIR was not made by $prog start (no .pg-private marker)"
	fi
}

# When root, run PostgreSQL programs as the owner of $1/data (as start did).
as_data_owner() {
	[ "$(id -u)" -eq 0 ] || return 0
	RUN_UID=$(stat -c %u "$1/data")
	RUN_GID=$(stat -c %g "$1/data")
	if [ "$RUN_UID" -eq 0 ]; then
		RUN_UID=""; RUN_GID=""
		return 1
	fi
	set_pgrun
}

do_stop() {
	local arg=$1 dir
	if [ ! -e "$arg" ] && [ ! -L "$arg" ]; then
		return 0
	fi
	our_dir "$arg"
	dir=$DIR
	cd /
	# Binaries are optional for stop: without them, signals do the job.
	BINDIR=""
	if [ -n "$(postmaster_pid "$dir")" ]; then
		(find_bindir) >/dev/null 2>&1 && find_bindir
		# Run pg_ctl as the owner of the data directory.
		as_data_owner "$dir" || BINDIR=""
		stop_cluster "$dir" || die "could not stop the server in $dir"
	fi
	rm -rf -- "$dir" || die "cannot remove $dir"
}

# ------------------------------------------------------------ pause, resume

do_pause() {
	local dir
	our_dir "$1"
	dir=$DIR
	[ -d "$dir/data" ] || die "no cluster in $dir"
	cd /
	[ -n "$(postmaster_pid "$dir")" ] || return 0    # already paused
	find_bindir
	as_data_owner "$dir" || die "$dir/data is owned by root"
	stop_cluster "$dir" || die "could not stop the server in $dir"
}

do_resume() {
	local dir t rc conninfo out newlog
	our_dir "$1"
	dir=$DIR
	[ -d "$dir/data" ] && [ -s "$dir/conninfo" ] || die "no cluster in $dir (was it started?)"
	cd /
	find_bindir
	find_psql
	as_data_owner "$dir" || die "$dir/data is owned by root"
	conninfo=$(cat "$dir/conninfo")
	if [ -z "$(postmaster_pid "$dir")" ]; then
		newlog=$(( $(stat -c %s "$dir/server.log") + 1 ))
		t=$(budget 30)
		rc=0
		timeout $((t + 5)) "${PGRUN[@]}" "$BINDIR/pg_ctl" start -D "$dir/data" -l "$dir/server.log" -w -t "$t" \
			>>"$dir/setup.log" 2>&1 || rc=$?
		if [ "$rc" -ne 0 ]; then
			echo "--- $prog: last lines of $dir/server.log:" >&2
			tail -c "+$newlog" "$dir/server.log" | tail -n 15 >&2 || true
			# A pg_ctl timeout may leave it starting: leave nothing running.
			stop_cluster "$dir" || true
			die "pg_ctl start failed (exit $rc); the cluster stays paused"
		fi
	fi
	t=$(budget 15)
	out=$(timeout "$t" "$PSQL" -X "$conninfo connect_timeout=5" -Atc 'select 1' 2>>"$dir/setup.log") || true
	[ "$out" = 1 ] || die "the server does not answer 'select 1' on $conninfo"
	echo "$conninfo"
}

# --------------------------------------------------------------------- main

case ${1:-} in
-h|--help|help)
	usage
	exit 0
	;;
start|stop|pause|resume)
	if [ $# -ne 2 ] || [ -z "$2" ]; then
		usage >&2
		exit 2
	fi
	case $1 in
	start) do_start "$2" ;;
	stop) do_stop "$2" ;;
	pause) do_pause "$2" ;;
	resume) do_resume "$2" ;;
	esac
	;;
*)
	usage >&2
	exit 2
	;;
esac
