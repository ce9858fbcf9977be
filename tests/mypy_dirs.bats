#!/usr/bin/env bats
# The directory recipe for mypy: the whole cache directory is one snapshot,
#   snaprun -c 0,1 .mypy_cache -- mypy --cache-dir {} src
# Debian's mypy (1.0, JSON cache), and a newer one (sharded SQLite cache)
# given as a command in $MYPY.

load common
load conc_helper

# pyver_of PROGRAM: X.Y of the Python that runs PROGRAM (a python itself, or
# a script whose #! line names one): mypy's default target, and so the name
# of the directory its cache goes in.
pyver_of() {
	local py='' line prog
	prog=$(command -v "$1") || return 1
	case ${prog##*/} in
	python*) py=$prog ;;
	*)
		line=$(head -n1 "$prog")
		case $line in
		'#!'*)
			set -- ${line#\#!}
			[ "${1##*/}" != env ] || shift
			py=${1:-}
			;;
		esac
		;;
	esac
	# a wrapper script (#!/bin/sh) names no python: the default one
	case ${py##*/} in python*) ;; *) py= ;; esac
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

# mypy_setup [COMMAND]...: the mypy to use, in MYPY_CMD (default: Debian's
# mypy, without the PYTHONPATH that may be set for a newer one in $MYPY);
# XY, the target version; the package to check.
mypy_setup() {
	need_feature exchange
	if [ $# -eq 0 ]; then
		need_cmd mypy
		MYPY_CMD=(env -u PYTHONPATH mypy)
		XY=$(env -u PYTHONPATH bash -c "$(declare -f pyver_of); pyver_of mypy")
	else
		MYPY_CMD=("$@")
		XY=$(pyver_of "$1")
	fi
	make_pkg
}

# recipe [MYPY-OPTION]...: the directory recipe.
recipe() {
	timeout 120 "$SNAPRUN" -c 0,1 .mypy_cache -- \
		"${MYPY_CMD[@]}" --python-version "$XY" --cache-dir {} "$@" src
}

# fresh OUTPUT: how many of our 13 modules mypy -v found fresh in its cache.
fresh() {
	grep -c 'Metadata fresh for pkg' <<<"$1" || true
}

# tree_sum DIR: every regular file's md5sum over the sorted relative names.
tree_sum() {
	(cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r md5sum) |
		md5sum | cut -c1-32
}

# json_cache_valid: the JSON cache has our modules, and every file in it
# parses.
json_cache_valid() {
	[ -f ".mypy_cache/$XY/pkg/m11.meta.json" ] || { echo "no metadata for pkg.m11" >&2; return 1; }
	python3 - ".mypy_cache/$XY" <<-'EOF'
	import json, pathlib, sys
	files = list(pathlib.Path(sys.argv[1]).rglob("*.json"))
	assert len(files) > 26, len(files)
	for f in files:
	    json.loads(f.read_text())
	EOF
}

@test "mypy (JSON cache): cold start creates .mypy_cache through snaprun, the next run is warm" {
	mypy_setup
	[ ! -e .mypy_cache ]
	run recipe -v
	[ "$status" -eq 0 ]
	[ "$(fresh "$output")" -eq 0 ]
	[ -d .mypy_cache ] && [ ! -L .mypy_cache ]
	[ -f .mypy_cache/CACHEDIR.TAG ]
	json_cache_valid
	no_leftovers .
	run recipe -v
	[ "$status" -eq 0 ]
	[ "$(fresh "$output")" -eq 13 ]
	no_leftovers .
}

@test "mypy (JSON cache): type errors (exit 1) commit the cache" {
	mypy_setup
	run recipe
	[ "$status" -eq 0 ]
	local ino0 sum0
	ino0=$(stat -c %i .mypy_cache)
	sum0=$(tree_sum .mypy_cache)
	printf 'bad: int = "not an int"\n' >>src/pkg/m5.py
	run recipe
	[ "$status" -eq 1 ]
	[[ "$output" == *'src/pkg/m5.py'*'error'* ]]
	[ "$(stat -c %i .mypy_cache)" != "$ino0" ]
	[ "$(tree_sum .mypy_cache)" != "$sum0" ]
	no_leftovers .
	# mypy drops modules with (transitive) errors from its cache: the next
	# run finds no metadata for m5 (it would find stale metadata had the
	# failing run's cache been discarded) and the 6 modules below it fresh.
	run recipe -v
	[ "$status" -eq 1 ]
	[[ "$output" == *'Metadata not found for pkg.m5'* ]]
	[ "$(fresh "$output")" -eq 6 ]
}

@test "mypy (JSON cache): a syntax error (exit 2) commits nothing" {
	mypy_setup
	run recipe
	[ "$status" -eq 0 ]
	local ino0 sum0
	ino0=$(stat -c %i .mypy_cache)
	sum0=$(tree_sum .mypy_cache)
	printf 'def broken(:\n' >>src/pkg/m7.py
	run recipe
	[ "$status" -eq 2 ]
	[ "$(stat -c %i .mypy_cache)" = "$ino0" ]
	[ "$(tree_sum .mypy_cache)" = "$sum0" ]
	no_leftovers .
}

@test "mypy (JSON cache): six concurrent cold runs all exit 0, the cache is valid and the next run warm" {
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
	json_cache_valid
	no_leftovers .
	t0=$EPOCHREALTIME
	run recipe -v
	warm=$(since "$t0")
	note "mypy JSON cache: 6 concurrent cold runs ${cold}s, then one warm run ${warm}s"
	[ "$status" -eq 0 ]
	[ "$(fresh "$output")" -eq 13 ]
}

@test "newer mypy from \$MYPY (sharded SQLite cache): every shard passes integrity_check, the next run is warm" {
	[ -n "${MYPY-}" ] || skip "MYPY is not set (a newer mypy command, e.g. 'python3 -m mypy')"
	need_cmd sqlite3
	local mypy db n=0
	read -ra mypy <<<"$MYPY"
	mypy_setup "${mypy[@]}"
	run recipe -v
	[ "$status" -eq 0 ] || { echo "$output" | tail -5 >&2; false; }
	[ "$(fresh "$output")" -eq 0 ]
	no_leftovers .
	for db in ".mypy_cache/$XY"/cache.*.db; do
		[ -f "$db" ] || continue
		n=$((n + 1))
		[ "$(sqlite3 "$db" 'pragma integrity_check')" = ok ] || { echo "$db is damaged" >&2; false; }
	done
	note "newer mypy: $n SQLite shards in .mypy_cache/$XY"
	[ "$n" -ge 2 ]
	run recipe -v
	[ "$status" -eq 0 ]
	[ "$(fresh "$output")" -eq 13 ]
	no_leftovers .
}
