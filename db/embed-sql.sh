#!/bin/sh
# Turn migration files (NNNN_name.sql) into C initialisers for migrate.c:
#   { NNNN, "NNNN_name", "...sql..." },
# in the order given. Versions must be unique and ascending.
set -eu
for f in "$@"; do
	base=$(basename "$f" .sql)
	version=$(printf '%s\n' "$base" | sed -n 's/^0*\([0-9][0-9]*\)_.*/\1/p')
	if [ -z "$version" ]; then
		echo "embed-sql.sh: $f: name must be NNNN_name.sql" >&2
		exit 1
	fi
	printf '{ %s, "%s",\n' "$version" "$base"
	sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$/\\n"/' "$f"
	printf '},\n'
done
