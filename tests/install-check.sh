#!/usr/bin/env bash
# make check: "make install DESTDIR=..." into a scratch directory, then what
# it installed: programs, every man page of dist_man_MANS, the unit (naming
# the installed program and config), the sysusers.d and tmpfiles.d files,
# the example config. The installed parleyd must run. "make uninstall"
# must then leave no file behind. Last, an operator's edited parleyd.conf
# must survive a second install (the new example goes next to it as
# parleyd.conf.dist) and an uninstall.
set -euo pipefail

build=${abs_top_builddir:?}
top=${PARLEY_SRCDIR:?}
: "${MAKE:?}" "${PARLEY_VERSION:?}" "${PARLEY_MANS:?}"
: "${PARLEY_BINDIR:?}" "${PARLEY_MANDIR:?}" "${PARLEY_SYSCONFDIR:?}"
: "${PARLEY_UNITDIR:?}" "${PARLEY_SYSUSERSDIR:?}" "${PARLEY_TMPFILESDIR:?}"

tmp=$(mktemp -d /tmp/parley-install-check.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
dest=$tmp/dest
fails=0
ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# make TARGET: this build's make, without what the make running the tests
# passes down (its jobserver, TESTS=...), bounded in time, output kept for
# when it fails.
make_in_build() {
	local target=$1 rc=0
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL timeout 120 \
		"$MAKE" -C "$build" "$target" DESTDIR="$dest" >"$tmp/$target.log" 2>&1 || rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "FAIL: make $target DESTDIR=$dest exited $rc:"
		tail -n 30 "$tmp/$target.log" | sed 's/^/    /'
		exit 1
	fi
	echo "install-check: make $target DESTDIR=$dest: done"
}
# installed PATH: a file under DESTDIR.
installed() {
	if [ -f "$dest$1" ]; then ok "installed $1"; else fail "not installed: $1"; fi
}
# same PATH SOURCE: installed and identical to SOURCE.
same() {
	if [ ! -f "$dest$1" ]; then
		fail "not installed: $1"
	elif cmp -s "$2" "$dest$1"; then
		ok "installed $1 (= ${2#"$top"/})"
	else
		fail "$1 differs from ${2#"$top"/}"
	fi
}
files_left() { find "$dest" -type f -o -type l; }

make_in_build install

for prog in parleyd parley-bench; do
	if [ -x "$dest$PARLEY_BINDIR/$prog" ]; then ok "installed $PARLEY_BINDIR/$prog"; else fail "not installed: $PARLEY_BINDIR/$prog"; fi
done
if out=$(timeout 10 "$dest$PARLEY_BINDIR/parleyd" --version 2>&1) && [[ "$out" == *"$PARLEY_VERSION"* ]]; then
	ok "installed parleyd --version: $out"
else
	fail "installed parleyd --version: '$out' (expected $PARLEY_VERSION)"
fi

# Every page the build ships, in the section its suffix names.
case " $PARLEY_MANS " in
*" man/parleyd.8 "*) ;;
*) fail "dist_man_MANS has no man/parleyd.8" ;;
esac
for page in $PARLEY_MANS; do
	same "$PARLEY_MANDIR/man${page##*.}/${page##*/}" "$top/$page"
done

unit=$PARLEY_UNITDIR/parleyd.service
installed "$unit"
execstart="ExecStart=$PARLEY_BINDIR/parleyd --config $PARLEY_SYSCONFDIR/parley/parleyd.conf"
if [ -f "$dest$unit" ] && grep -qxF "$execstart" "$dest$unit"; then
	ok "unit: $execstart"
else
	fail "unit has no line '$execstart'"
fi
same "$PARLEY_SYSUSERSDIR/parley.conf" "$top/systemd/parleyd.sysusers"
same "$PARLEY_TMPFILESDIR/parley.conf" "$top/systemd/parleyd.tmpfiles"
conf=$PARLEY_SYSCONFDIR/parley/parleyd.conf
same "$conf" "$top/systemd/parleyd.conf"

echo "install-check: installed files:"
files_left | sed "s|^$dest|    |" | sort

make_in_build uninstall
if [ -n "$(files_left)" ]; then
	fail "make uninstall left files:"
	files_left | sed "s|^$dest|    |"
else
	ok "make uninstall left no file"
fi

# An operator's config: kept by install and by uninstall.
mkdir -p "$(dirname "$dest$conf")"
printf 'listen = 127.0.0.1:9999\n' >"$dest$conf"
make_in_build install
if [ "$(cat "$dest$conf")" = "listen = 127.0.0.1:9999" ]; then
	ok "install kept an existing $conf"
else
	fail "install replaced an existing $conf"
fi
same "$conf.dist" "$top/systemd/parleyd.conf"
make_in_build uninstall
left=$(files_left | sed "s|^$dest||")
if [ "$left" = "$conf" ]; then
	ok "uninstall kept the operator's $conf and removed the rest"
else
	fail "after uninstall, expected only $conf; left: ${left:-nothing}"
fi

[ "$fails" -eq 0 ] && echo "install-check: all checks passed"
[ "$fails" -eq 0 ]
