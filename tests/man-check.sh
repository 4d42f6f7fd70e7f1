#!/usr/bin/env bash
# man-check.sh - the manual pages and the example config against the
# programs they describe.
#
#   1. mandoc -Tlint -W warning prints nothing for every page in man/, and
#      man/include.am installs every page.
#   2. parleyd and parley-bench: the short and long options of --help equal
#      the options the page's OPTIONS section documents (its .It lines),
#      each taking an argument on both sides or on neither.
#   3. The settings of parleyd --help (its long options but help, version,
#      config and check-config) equal the keys parleyd.conf(5) documents in
#      SETTINGS, and a key is marked [SIGHUP] there (".It Cm key ... Bq
#      SIGHUP") exactly when --help marks it [SIGHUP].
#   4. systemd/parleyd.conf lists every key, says [SIGHUP] in the paragraph
#      of exactly the keys --help marks so, comments out each key that has a
#      default at that default, and is accepted by parleyd --check-config as
#      shipped and with every commented-out key line enabled (file paths
#      pointed at files of the test).
#
# Why -W warning: it reports what is wrong in a page (bad macro use, broken
# lists, sections out of order, unusual Xr order). The next level, style,
# adds "referenced manual not found" for pages not installed on the machine
# running the test (our own among them), which says nothing about the page.
#
# Environment (set by AM_TESTS_ENVIRONMENT): PARLEYD, PARLEY_BENCH (the
# binaries) and PARLEY_SRCDIR (the source tree); MAN_CHECK_KEEP=1 keeps the
# lists it compared. Exit 0 pass, 1 fail, 77 skip when mandoc is not
# installed.
set -u

srcdir=${PARLEY_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
parleyd=${PARLEYD:-./parleyd}
bench=${PARLEY_BENCH:-./parley-bench}
mandir=$srcdir/man
example=$srcdir/systemd/parleyd.conf

if ! command -v mandoc >/dev/null 2>&1; then
	echo "SKIP: mandoc is not installed (apt-get install mandoc)"
	exit 77
fi

fail=0
failed() {
	echo "FAIL: $*"
	fail=1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/man-check.XXXXXX") || exit 1
# MAN_CHECK_KEEP=1 keeps the lists compared, for a look at a failure.
if [ -n "${MAN_CHECK_KEEP:-}" ]; then
	echo "lists kept in $tmp"
else
	trap 'rm -rf "$tmp"' EXIT
fi

# A binary's --help, saved once.
help_of() {
	if ! "$1" --help >"$2" 2>&1; then
		failed "$1 --help exited non-zero"
	fi
}
help_of "$parleyd" "$tmp/parleyd.help"
help_of "$bench" "$tmp/bench.help"

# "-x arg", "--name noarg" ... for every option line of a --help: lines of
# the form "  -x, --name ARG  text" or "      --name ARG  text" (exactly
# two or six spaces before the first dash; indented prose that mentions an
# option does not match). An option takes an argument when one space and a
# word starting with a capital letter follow its name.
help_flags() {
	sed -nE 's/^  (-([[:alnum:]]), |    )--([[:alnum:]][-[:alnum:]]*)( ([A-Z][^ ]*)( |$))?.*/\2 \3 \5/p' "$1" |
	while read -r short long arg; do
		# read puts the argument into short when there is no short option.
		if [ -n "$long" ] && [ "${#short}" -gt 1 ]; then
			arg=$long long=$short short=
		elif [ -z "$long" ]; then
			long=$short short=
		fi
		kind=noarg
		[ -n "$arg" ] && kind=arg
		echo "--$long $kind"
		[ -n "$short" ] && echo "-$short $kind"
	done | LC_ALL=C sort -u
}

# The options an mdoc page documents in its OPTIONS section: every .It line
# of the section's outermost lists, parsed for Fl macros. "Fl x" is -x,
# "Fl Fl name" and "Fl \-name" are --name; an option takes an argument when
# Ar follows its name. A short option followed by "," and a long one (".It
# Fl l , Fl Fl listen Ar addr") shares the long one's argument.
page_flags() {
	awk '
	/^\.Sh / { in_opts = ($0 == ".Sh OPTIONS"); depth = 0; next }
	!in_opts { next }
	/^\.Bl / { depth++; next }
	/^\.El/ { depth--; next }
	!/^\.It / || depth != 1 { next }
	{
		line = $0
		gsub(/\\-/, "-", line); gsub(/\\&/, "", line)
		n = split(line, t, /[ \t]+/)
		nf = 0
		for (i = 2; i <= n; i++) {
			if (t[i] != "Fl")
				continue
			if (t[i + 1] == "Fl") {
				name = "--" t[i + 2]; j = i + 3
			} else if (t[i + 1] ~ /^-[[:alnum:]]/) {
				name = "-" t[i + 1]; j = i + 2
			} else if (t[i + 1] ~ /^[[:alnum:]][-[:alnum:]]*$/ &&
			    t[i + 1] !~ /^[A-Z][a-z][a-z]?$/) {
				name = "-" t[i + 1]; j = i + 2
			} else {
				continue        # a bare Fl: a lone dash
			}
			nf++
			flag[nf] = name
			kind[nf] = (t[j] == "Ar") ? "arg" : "noarg"
			paired[nf] = (name !~ /^--/ && t[j] == ",")
			i = j - 1
		}
		for (k = 1; k <= nf; k++) {
			if (paired[k] && k < nf && flag[k + 1] ~ /^--/)
				kind[k] = kind[k + 1]
			print flag[k], kind[k]
		}
	}' "$1" | LC_ALL=C sort -u
}

# Report the differences between two sorted lists, named for the message.
compare() {
	local what=$1 left=$2 lname=$3 right=$4 rname=$5 only
	only=$(LC_ALL=C comm -23 "$left" "$right")
	[ -n "$only" ] && failed "$what: in $lname, not in $rname:"$'\n'"$only"
	only=$(LC_ALL=C comm -13 "$left" "$right")
	[ -n "$only" ] && failed "$what: in $rname, not in $lname:"$'\n'"$only"
}

# ---- 1. mandoc -Tlint ------------------------------------------------------
pages=$(ls "$mandir"/*.[1-9] 2>/dev/null)
[ -n "$pages" ] || failed "no manual pages in $mandir"
for page in $pages; do
	out=$(mandoc -Tlint -W warning "$page" 2>&1)
	[ -n "$out" ] && failed "mandoc -Tlint -W warning $page:"$'\n'"$out"
	base=${page##*/}
	grep -Eq "^dist_man_MANS \+?= *man/$base\$" "$mandir/include.am" ||
		failed "man/include.am does not install man/$base"
done

# ---- 2. --help against OPTIONS ----------------------------------------------
help_flags "$tmp/parleyd.help" >"$tmp/parleyd.help.flags"
page_flags "$mandir/parleyd.8" >"$tmp/parleyd.8.flags"
help_flags "$tmp/bench.help" >"$tmp/bench.help.flags"
page_flags "$mandir/parley-bench.1" >"$tmp/bench.1.flags"
for f in parleyd.help parleyd.8 bench.help bench.1; do
	[ -s "$tmp/$f.flags" ] || failed "no options found in $f"
done
compare "parleyd options" "$tmp/parleyd.help.flags" "parleyd --help" \
	"$tmp/parleyd.8.flags" "parleyd(8) OPTIONS"
compare "parley-bench options" "$tmp/bench.help.flags" "parley-bench --help" \
	"$tmp/bench.1.flags" "parley-bench(1) OPTIONS"

# ---- 3. --help against parleyd.conf(5) -------------------------------------
# Every key: "name live" or "name restart".
sed -nE 's/^  (-[[:alnum:]], |    )--([[:alnum:]][-[:alnum:]]*).*/\2/p' "$tmp/parleyd.help" |
while read -r key; do
	case $key in help | version | config | check-config) continue ;; esac
	if grep -Eq "^  (-[[:alnum:]], |    )--$key( .*)? \[SIGHUP\]\$" "$tmp/parleyd.help"; then
		echo "$key live"
	else
		echo "$key restart"
	fi
done | LC_ALL=C sort >"$tmp/help.keys"
[ -s "$tmp/help.keys" ] || failed "no settings found in parleyd --help"
grep -q ' live$' "$tmp/help.keys" || failed "no [SIGHUP] mark found in parleyd --help"

# The keys of parleyd.conf(5): the .It lines of the outermost lists of its
# SETTINGS section, ".It Cm key Ar type" with "Bq SIGHUP" for live ones.
awk '
/^\.Sh / { in_set = ($0 == ".Sh SETTINGS"); depth = 0; next }
!in_set { next }
/^\.Bl / { depth++; next }
/^\.El/ { depth--; next }
!/^\.It / || depth != 1 { next }
$2 != "Cm" { print "not-a-key:" $0; next }
{ print $3, (/ Bq SIGHUP( |$)/ ? "live" : "restart") }
' "$mandir/parleyd.conf.5" | LC_ALL=C sort >"$tmp/conf5.keys"
if grep -q '^not-a-key:' "$tmp/conf5.keys"; then
	failed "parleyd.conf(5) SETTINGS items that are not .It Cm key:"$'\n'"$(sed -n 's/^not-a-key://p' "$tmp/conf5.keys")"
	sed -i '/^not-a-key:/d' "$tmp/conf5.keys"
fi
compare "parleyd settings (name and [SIGHUP])" "$tmp/help.keys" "parleyd --help" \
	"$tmp/conf5.keys" "parleyd.conf(5) SETTINGS"

# ---- 4. the example config ---------------------------------------------------
if [ ! -s "$example" ]; then
	failed "$example is missing or empty"
else
	# Each key on a "key = value" or "#key = value" line, with "live" when
	# its paragraph (lines between blank ones) says [SIGHUP].
	awk '
	function flush() {
		for (k in para)
			print k, (sighup ? "live" : "restart")
		delete para; sighup = 0
	}
	/^[ \t]*$/ { flush(); next }
	/\[SIGHUP\]/ { sighup = 1 }
	match($0, /^#?[a-z][-a-z0-9]* = /) {
		key = substr($0, 1, RLENGTH - 3); sub(/^#/, "", key); para[key] = 1
	}
	END { flush() }
	' "$example" | LC_ALL=C sort -u >"$tmp/example.keys"
	compare "example config keys (name and [SIGHUP] in its paragraph)" \
		"$tmp/help.keys" "parleyd --help" "$tmp/example.keys" "$example"

	if ! out=$("$parleyd" --check-config -c "$example" 2>&1 >/dev/null); then
		failed "parleyd --check-config -c $example: $out"
	fi

	# Defaults: what --check-config prints without a file.
	if ! (cd "$tmp" && "$parleyd" --check-config) >"$tmp/defaults" 2>"$tmp/defaults.err"; then
		failed "parleyd --check-config without a file: $(cat "$tmp/defaults.err")"
	fi
	while IFS= read -r line; do
		key=${line%% = *} value=${line#* = }
		key=${key#\#}
		default=$(sed -n "s/^$key = //p" "$tmp/defaults")
		if [ -n "$default" ] && [ "$value" != "$default" ]; then
			failed "$example: '$line', but the default is '$default'"
		fi
	done < <(grep -E '^#[a-z][-a-z0-9]* = ' "$example")

	# Every commented-out key enabled: still accepted. --check-config reads
	# the secret file as start would, so the example's path (which need not
	# exist here) becomes a file of ours; the log file likewise. The TLS
	# pair stays off: this version refuses to start with it, and so does
	# --check-config.
	echo "a test secret" >"$tmp/jwt.secret"
	sed -E -e '/^#tls-(cert|key) = /!s/^#([a-z][-a-z0-9]* = )/\1/' \
	    -e "s|^jwt-secret-file = .*|jwt-secret-file = $tmp/jwt.secret|" \
	    -e "s|^log-file = .*|log-file = $tmp/parleyd.log|" \
	    "$example" >"$tmp/enabled.conf"
	if ! out=$("$parleyd" --check-config -c "$tmp/enabled.conf" 2>&1 >/dev/null); then
		failed "$example with every commented-out key enabled: $out"
	fi
fi

[ "$fail" -eq 0 ] && echo "PASS: manual pages, --help and the example config agree"
exit "$fail"
