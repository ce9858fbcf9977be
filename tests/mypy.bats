#!/usr/bin/env bats
# The documented primary use: mypy's SQLite cache shared by concurrent runs.

load common
load conc_helper

# mypy_pyver: X.Y of the Python that runs mypy (mypy's default target, and
# so the name of the directory its cache goes in).
mypy_pyver() {
	local py='' line
	line=$(head -n1 "$(command -v mypy)")
	case $line in
	'#!'*)
		set -- ${line#\#!}
		[ "${1##*/}" != env ] || shift
		py=${1:-}
		;;
	esac
	[ -n "$py" ] && command -v "$py" >/dev/null 2>&1 || py=python3
	"$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])'
}

# make_pkg: src/pkg, __init__ plus 12 modules, each importing earlier ones.
make_pkg() {
	local i
	mkdir -p src/pkg
	: >src/pkg/__init__.py
	printf 'def f0(x: int) -> int:\n    return x\n' >src/pkg/m0.py
	for i in $(seq 1 11); do
		{
			echo "from pkg.m$((i - 1)) import f$((i - 1))"
			echo "from pkg.m$((i / 2)) import f$((i / 2)) as g"
			printf 'def f%d(x: int) -> int:\n    return f%d(x) + g(%d)\n' "$i" "$((i - 1))" "$i"
		} >src/pkg/m$i.py
	done
}

mypy_setup() {
	need_cmd mypy
	need_cmd sqlite3
	XY=$(mypy_pyver)
	DB=.mypy_cache/$XY/cache.db
	make_pkg
}

# recipe [MYPY-OPTION]...: the documented recipe.
recipe() {
	timeout 120 "$SNAPRUN" --commit-on=0,1 --root .mypy_cache "$DB" -- \
		mypy --python-version "$XY" --sqlite-cache --cache-dir {} "$@" src
}

# fresh OUTPUT: how many of our 13 modules mypy -v found fresh in its cache.
fresh() {
	grep -c 'Metadata fresh for pkg' <<<"$1" || true
}

@test "mypy: cold start creates the cache through snaprun, the next run is warm" {
	mypy_setup
	[ ! -e .mypy_cache ]
	run recipe -v
	[ "$status" -eq 0 ]
	[ "$(fresh "$output")" -eq 0 ]
	[ -f "$DB" ]
	[ "$(sqlite3 "$DB" 'pragma integrity_check')" = ok ]
	no_leftovers ".mypy_cache/$XY"
	run recipe -v
	[ "$status" -eq 0 ]
	[ "$(fresh "$output")" -eq 13 ]
	no_leftovers ".mypy_cache/$XY"
}

@test "mypy: type errors (exit 1) still commit the cache" {
	mypy_setup
	run recipe
	[ "$status" -eq 0 ]
	local sum0
	sum0=$(md5 "$DB")
	printf 'bad: int = "not an int"\n' >>src/pkg/m5.py
	run recipe
	[ "$status" -eq 1 ]
	[[ "$output" == *'src/pkg/m5.py'*'error'* ]]
	[ "$(md5 "$DB")" != "$sum0" ]
	[ "$(sqlite3 "$DB" 'pragma integrity_check')" = ok ]
	no_leftovers ".mypy_cache/$XY"
	# mypy drops modules with (transitive) errors from its cache: the next
	# run finds no metadata for m5 (it would find stale metadata had the
	# failing run's cache been discarded) and the 6 modules below it fresh.
	run recipe -v
	[ "$status" -eq 1 ]
	[[ "$output" == *'Metadata not found for pkg.m5'* ]]
	[ "$(fresh "$output")" -eq 6 ]
}

@test "mypy: a syntax error (exit 2) commits nothing" {
	mypy_setup
	run recipe
	[ "$status" -eq 0 ]
	local sum0 ino0
	sum0=$(md5 "$DB")
	ino0=$(stat -c %i "$DB")
	printf 'def broken(:\n' >>src/pkg/m7.py
	run recipe
	[ "$status" -eq 2 ]
	[ "$(md5 "$DB")" = "$sum0" ]
	[ "$(stat -c %i "$DB")" = "$ino0" ]
	no_leftovers ".mypy_cache/$XY"
}

@test "mypy: six concurrent cold runs on one cache, all clean, cache intact and warm" {
	mypy_setup
	local i pids=() st bad=0 t0 cold warm
	t0=$EPOCHREALTIME
	for i in 1 2 3 4 5 6; do
		recipe >out.$i 2>err.$i 3>&- &
		pids+=($!)
	done
	for i in 1 2 3 4 5 6; do
		st=0
		wait "${pids[i - 1]}" || st=$?
		[ "$st" -eq 0 ] || { echo "run $i exited $st:" >&2; cat out.$i err.$i >&2; bad=1; }
	done
	cold=$(since "$t0")
	[ "$bad" -eq 0 ]
	if grep -iE 'database is locked|malformed|disk image' out.* err.*; then
		false
	fi
	[ -f "$DB" ]
	[ "$(sqlite3 "$DB" 'pragma integrity_check')" = ok ]
	no_leftovers ".mypy_cache/$XY"
	t0=$EPOCHREALTIME
	run recipe -v
	warm=$(since "$t0")
	note "mypy: 6 concurrent cold runs ${cold}s, then one warm run ${warm}s"
	[ "$status" -eq 0 ]
	[ "$(fresh "$output")" -eq 13 ]
}
