# Helpers shared by slow/mypy.bats (the SQLite cache file as FILE),
# slow/mypy_dirs.bats (the whole cache directory as DIR) and the merge's
# tests (mypy_merge.bats, slow/mypy_merge.bats).  Load after common and
# conc_helper.
#
# Each of those files defines, for its own recipe:
#   mypy_setup  the mypy to use, XY (the target version), the package
#   recipe      [MYPY-OPTION]...: one run of the recipe
#   cache_ino   the inode of what the recipe commits (FILE or DIR)
#   cache_sum   its checksum

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

# fresh OUTPUT: how many of our 13 modules mypy -v found fresh in its cache.
fresh() {
	grep -c 'Metadata fresh for pkg' <<<"$1" || true
}

# recipe_exits STATUS [MYPY-OPTION]...: `run` the recipe; it exits STATUS
# (else the end of its output is shown).
recipe_exits() {
	local want=$1
	shift
	run recipe "$@"
	if [ "$status" -ne "$want" ]; then
		printf 'the recipe exited %s, expected %s:\n' "$status" "$want" >&2
		tail -5 <<<"$output" >&2
		return 1
	fi
}

# recipe_finds N: a verbose run of the recipe exits 0 and finds N of our
# modules fresh in the cache.
recipe_finds() {
	recipe_exits 0 -v
	[ "$(fresh "$output")" -eq "$1" ]
}

# prime_cache: mypy_setup, then a first run of the recipe (exit 0) makes
# the cache; INO0 and SUM0 are its cache_ino and cache_sum.
prime_cache() {
	mypy_setup
	recipe_exits 0
	INO0=$(cache_ino)
	SUM0=$(cache_sum)
}

# break_types: a type error in m5; the recipe exits 1 and reports it.
break_types() {
	printf 'bad: int = "not an int"\n' >>src/pkg/m5.py
	recipe_exits 1
	[[ "$output" == *'src/pkg/m5.py'*'error'* ]]
}

# m5_dropped: mypy drops modules with (transitive) errors from its cache:
# the next run finds no metadata for m5 (it would find stale metadata had
# the failing run's cache been discarded) and the 6 modules below it fresh.
m5_dropped() {
	recipe_exits 1 -v
	[[ "$output" == *'Metadata not found for pkg.m5'* ]]
	[ "$(fresh "$output")" -eq 6 ]
}

# break_syntax: a syntax error in m7; the recipe exits 2.
break_syntax() {
	printf 'def broken(:\n' >>src/pkg/m7.py
	recipe_exits 2
}

# cold_runs N: N runs of the recipe at once on no cache (the output of run
# I in out.I and err.I); fail, showing theirs, unless every one exits 0.
# COLD: how long they took, in seconds.
cold_runs() {
	local i pids=() st bad=0 t0
	t0=$EPOCHREALTIME
	for i in $(seq 1 "$1"); do
		recipe >out.$i 2>err.$i 3>&- &
		pids+=($!)
	done
	for i in $(seq 1 "$1"); do
		st=0
		wait "${pids[i - 1]}" || st=$?
		[ "$st" -eq 0 ] || { echo "run $i exited $st:" >&2; cat out.$i err.$i >&2; bad=1; }
	done
	COLD=$(since "$t0")
	COLD_RUNS=$1
	[ "$bad" -eq 0 ]
}

# warm_after_cold LABEL: after cold_runs, one more run, timed (a note
# "LABEL: ..." in the TAP output with both times), finds all 13 modules
# fresh.
warm_after_cold() {
	local t0 warm
	t0=$EPOCHREALTIME
	run recipe -v
	warm=$(since "$t0")
	note "$1: $COLD_RUNS concurrent cold runs ${COLD}s, then one warm run ${warm}s"
	[ "$status" -eq 0 ]
	[ "$(fresh "$output")" -eq 13 ]
}

# snaprun-merge-mypy, the merge the recipe names.
MERGE_MYPY=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/snaprun-merge-mypy

# on_path: snaprun-merge-mypy on PATH, as make install puts it.
on_path() {
	mkdir -p "$T/bin"
	ln -sf "$MERGE_MYPY" "$T/bin/snaprun-merge-mypy"
	export PATH="$T/bin:$PATH"
}
