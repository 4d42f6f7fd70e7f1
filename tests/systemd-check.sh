#!/usr/bin/env bash
# make check: the systemd files as systemd 252 reads them.
#   - the generated parleyd.service has what the operations issue asks for
#     (Type=notify, ExecReload, Restart=on-failure, LimitNOFILE=1048576,
#     StateDirectory=, ConfigurationDirectory=, the configured paths);
#   - "systemd-analyze verify" has nothing to say about it;
#   - "systemd-analyze security --offline=yes" scores it 1.0 or better;
#   - sysusers.d and tmpfiles.d files are applied to a scratch root, and
#     what they make there is checked.
# Nothing here touches the host: every run of a systemd tool is --root'ed
# into a temporary directory, or a dry run.
set -euo pipefail

top=${PARLEY_SRCDIR:?}
build=${abs_top_builddir:?}
: "${PARLEYD:?}" "${PARLEY_BINDIR:?}" "${PARLEY_SYSCONFDIR:?}" "${PARLEY_MANS:?}"
for tool in systemd-analyze systemd-sysusers systemd-tmpfiles; do
	if ! command -v "$tool" >/dev/null; then
		echo "SKIP: $tool is not installed (.ci/setup installs systemd)"
		exit 77
	fi
done

unit=$build/systemd/parleyd.service
sysusers=$top/systemd/parleyd.sysusers
tmpfiles=$top/systemd/parleyd.tmpfiles
MAX_EXPOSURE=1.0

tmp=$(mktemp -d /tmp/parley-systemd-check.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fails=0
ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# Every systemd tool gets a time limit, so a hang is a failure, not a stuck
# make check.
run() { timeout 60 "$@"; }

echo "systemd-check: $(systemd-analyze --version | head -n 1)"
if [ ! -f "$unit" ]; then
	echo "FAIL: $unit was not built"
	exit 1
fi

# ---- The unit's settings ----
# has KEY=VALUE: a line of the [Service] section, exactly.
has() {
	if grep -qxF -- "$1" "$unit"; then ok "unit: $1"; else fail "unit has no line '$1'"; fi
}
has "Type=notify"
has "NotifyAccess=main"
has "Restart=on-failure"
has "LimitNOFILE=1048576"
has "User=parley"
has "Group=parley"
has "StateDirectory=parley"
has "ConfigurationDirectory=parley"
has "ExecStart=$PARLEY_BINDIR/parleyd --config $PARLEY_SYSCONFDIR/parley/parleyd.conf"
if grep -qE '^ExecReload=.*kill -(HUP|s HUP|SIGHUP) \$MAINPID$' "$unit"; then
	ok "unit: ExecReload sends SIGHUP to \$MAINPID"
else
	fail "unit has no ExecReload= sending SIGHUP"
fi
for key in WatchdogSec TimeoutStopSec RestartSec; do
	if grep -qE "^$key=[0-9]+" "$unit"; then ok "unit: $(grep -E "^$key=" "$unit")"; else fail "unit has no $key="; fi
done
# A chat broker must stay reachable from anywhere: neither of these, which
# the exposure score would reward.
for key in PrivateNetwork=yes IPAddressDeny=; do
	if grep -qE "^$key" "$unit"; then fail "unit sets $key (clients could not connect)"; else ok "unit: no $key"; fi
done
if grep -q '@[a-z_]*@' "$unit"; then
	fail "unit has unsubstituted @...@: $(grep -o '@[a-z_]*@' "$unit" | sort -u | tr '\n' ' ')"
else
	ok "unit: every @...@ substituted"
fi

# ---- systemd-analyze verify ----
# verify checks that ExecStart= exists, so the copy it reads runs the
# parleyd of this build instead of the not yet installed one; every other
# line is the generated unit's. Its Documentation= pages are looked up in
# a MANPATH made of this tree's pages (when man(1) is there at all).
sed "s|^ExecStart=$PARLEY_BINDIR/parleyd |ExecStart=$PARLEYD |" "$unit" >"$tmp/parleyd.service"
man_check=yes
if command -v man >/dev/null; then
	for page in $PARLEY_MANS; do
		section=${page##*.}
		mkdir -p "$tmp/man/man$section"
		ln -s "$top/$page" "$tmp/man/man$section/"
	done
	export MANPATH=$tmp/man
else
	man_check=no
	echo "note: man(1) is not installed: verify does not check Documentation="
fi
if out=$(run systemd-analyze verify --man="$man_check" "$tmp/parleyd.service" 2>&1) &&
	[ -z "$out" ]; then
	ok "systemd-analyze verify: clean (man pages checked: $man_check)"
else
	fail "systemd-analyze verify:"
	printf '%s\n' "$out" | sed 's/^/    /'
fi

# ---- systemd-analyze security ----
# --threshold=10 makes systemd-analyze exit non-zero above 1.0 (it compares
# tenths); the score is also read from its "Overall exposure level" line.
rc=0
run systemd-analyze security --offline=yes --threshold=10 "$unit" >"$tmp/security.out" 2>&1 || rc=$?
line=$(grep 'Overall exposure level' "$tmp/security.out" || true)
score=$(printf '%s\n' "$line" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9][0-9]*\.[0-9]\).*/\1/p')
if [ -z "$score" ]; then
	fail "systemd-analyze security printed no exposure level (exit $rc)"
	sed 's/^/    /' "$tmp/security.out"
else
	echo "systemd-check: Overall ${line#*Overall }"
	if [ "$rc" -eq 0 ] && awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }'; then
		ok "exposure $score <= $MAX_EXPOSURE (systemd-analyze security --threshold=10 exits 0)"
	else
		fail "exposure $score, more than $MAX_EXPOSURE (systemd-analyze exit $rc); what counts:"
		grep '✗' "$tmp/security.out" | sed 's/^/    /' || true
	fi
fi

# ---- sysusers.d ----
# A dry run against the host says what it would create (nothing when
# parley exists already); the real run goes into a scratch root, whose
# passwd and group the tmpfiles.d check then resolves names from.
if out=$(run systemd-sysusers --dry-run "$sysusers" 2>&1); then
	ok "systemd-sysusers --dry-run: parses ($(printf '%s\n' "$out" | grep -m1 . || echo "nothing to do here"))"
else
	fail "systemd-sysusers --dry-run:"
	printf '%s\n' "$out" | sed 's/^/    /'
fi
root=$tmp/root
mkdir -p "$root/etc"
if out=$(run systemd-sysusers --root="$root" "$sysusers" 2>&1) &&
	grep -q '^parley:x:[0-9]*:[0-9]*:.*:/var/lib/parley:' "$root/etc/passwd" &&
	grep -q '^parley:x:[0-9]*:' "$root/etc/group"; then
	ok "sysusers.d: system user and group parley, home /var/lib/parley ($(grep '^parley:' "$root/etc/passwd"))"
else
	fail "sysusers.d did not create parley in a scratch root:"
	printf '%s\n' "$out" | sed 's/^/    /'
	cat "$root/etc/passwd" 2>/dev/null | sed 's/^/    passwd: /'
fi

# ---- tmpfiles.d ----
# Applied to the scratch root with a world-readable jwt.secret in place.
# systemd-tmpfiles 252 has no --dry-run. Without root, chown fails and only
# that is forgiven: the modes are still checked, the owners then not.
mkdir -p "$root/etc/parley"
echo secret >"$root/etc/parley/jwt.secret"
chmod 0644 "$root/etc/parley/jwt.secret"
rc=0
run systemd-tmpfiles --root="$root" --create "$tmpfiles" >"$tmp/tmpfiles.out" 2>&1 || rc=$?
as_root=yes
[ "$(id -u)" -eq 0 ] || as_root=no
if [ "$rc" -eq 0 ]; then
	ok "systemd-tmpfiles --create: applied without a complaint"
elif [ "$as_root" = no ] && ! grep -v 'fchownat() .* failed: Operation not permitted' "$tmp/tmpfiles.out" | grep -q .; then
	ok "systemd-tmpfiles --create: applied (not root: owners not set, not checked)"
else
	fail "systemd-tmpfiles --create exited $rc:"
	sed 's/^/    /' "$tmp/tmpfiles.out"
fi
uid=$(awk -F: '$1 == "parley" { print $3 }' "$root/etc/passwd" 2>/dev/null || true)
gid=$(awk -F: '$1 == "parley" { print $3 }' "$root/etc/group" 2>/dev/null || true)
# expect PATH TYPE MODE UID:GID
expect() {
	local path=$root$1 got want
	if [ ! -e "$path" ]; then
		fail "tmpfiles.d: $1 missing"
		return
	fi
	want="$2 $3"
	got="$(stat -c '%F %a' "$path")"
	if [ "$as_root" = yes ]; then
		want="$want $4"
		got="$got $(stat -c '%u:%g' "$path")"
	fi
	if [ "$got" = "$want" ]; then ok "tmpfiles.d: $1 is $got"; else fail "tmpfiles.d: $1 is $got, not $want"; fi
}
expect /var/log/parley directory 750 "$uid:$gid"
expect /run/parley-root directory 755 0:0
expect /etc/parley/jwt.secret "regular file" 640 "0:$gid"
# The root directory the unit names is the one tmpfiles.d makes.
rootdir=$(sed -n 's/^RootDirectory=//p' "$unit")
if [ -n "$rootdir" ] && ! grep -qE "^d $rootdir " "$tmpfiles"; then
	fail "unit's RootDirectory=$rootdir is not made by tmpfiles.d"
fi

[ "$fails" -eq 0 ] && echo "systemd-check: all checks passed"
[ "$fails" -eq 0 ]
