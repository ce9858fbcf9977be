#!/usr/bin/env bats
# snaprun-merge-mypy with real mypy, the recipe
#   snaprun -c 0,1 --merge=snaprun-merge-mypy .mypy_cache -- mypy --cache-dir {} src
# run concurrently: Debian's mypy (1.0: JSON cache and --sqlite-cache) and a
# newer one given as a command in $MYPY (the sharded SQLite cache; skipped
# without it).  The merge on caches made by hand: ../mypy_merge.bats.

load ../common
load ../conc_helper
load ../mypy_helper

# ------------------------------------------------------------- real mypy

# make_pkgs N: src/p1 .. src/pN, each a copy of make_pkg's package.
make_pkgs() {
	local i
	make_pkg
	for i in $(seq 1 "$1"); do
		mkdir -p "src/p$i"
		for f in src/pkg/*.py; do
			sed "s/\bpkg\b/p$i/g" "$f" >"src/p$i/${f##*/}"
		done
	done
	rm -r src/pkg
	# one type error, so that the output says something
	printf 'bad: int = "not an int"\n' >>src/p2/m11.py
}

# fresh_all OUTPUT: how many modules of our packages mypy -v found fresh.
fresh_all() {
	grep -c 'Metadata fresh for p[0-9]' <<<"$1" || true
}

# merged_runs N MYPY... -- MYPY-OPTION...: N runs of the merge recipe at
# once, run I on src/pI alone; each holds after mypy until all have
# finished it, so that all but the first to commit merge.
merged_runs() {
	local n=$1 i st pids=() mypy=()
	shift
	while [ "$1" != -- ]; do mypy+=("$1"); shift; done
	shift
	export T
	for i in $(seq 1 "$n"); do
		timeout 300 "$SNAPRUN" -v -c 0,1 --merge=snaprun-merge-mypy .mypy_cache -- \
			sh -c '"$@"; st=$?; : > "$T/R.started.'"$i"'"
				while [ ! -e "$T/R.go" ]; do sleep 0.01; done; exit $st' sh \
			"${mypy[@]}" --cache-dir {} "$@" "src/p$i" >"out.$i" 2>"err.$i" 3>&- &
		pids+=($!)
	done
	for i in $(seq 1 "$n"); do wait_for "R.started.$i" 300; done
	touch R.go
	for i in $(seq 1 "$n"); do
		st=0
		wait "${pids[i - 1]}" || st=$?
		# mypy exits 1 on src/p2's type error
		[ "$st" -eq $((i == 2)) ] || { echo "run $i exited $st" >&2; cat "err.$i" >&2; return 1; }
	done
	[ "$(cat err.* | grep -c 'merging')" -eq $((n - 1)) ]
}

# merge_then_full N MYPY... -- MYPY-OPTION...: merged_runs, then a full run
# of the recipe: it finds as many of our modules fresh as plain mypy does
# on a cache it made itself (cold, then warm), and prints what a cold run
# prints.  Sets FULL, that run's verbose output.
merge_then_full() {
	local n=$1 i mypy=() opts=() cold warm
	shift
	while [ "$1" != -- ]; do mypy+=("$1"); shift; done
	shift
	opts=("$@")
	make_pkgs "$n"
	cold=$("${mypy[@]}" --cache-dir plain "${opts[@]}" src 2>&1) || true
	warm=$("${mypy[@]}" -v --cache-dir plain "${opts[@]}" src 2>&1) || true
	[ "$(fresh_all "$warm")" -gt 0 ]
	merged_runs "$n" "${mypy[@]}" -- "${opts[@]}"
	run "$SNAPRUN" -c 0,1 --merge=snaprun-merge-mypy .mypy_cache -- \
		"${mypy[@]}" -v --cache-dir {} "${opts[@]}" src
	[ "$status" -eq 1 ]
	FULL=$output
	note "$n merged runs, then a full run: $(fresh_all "$FULL") of our modules fresh; plain mypy warm: $(fresh_all "$warm")"
	[ "$(fresh_all "$FULL")" -eq "$(fresh_all "$warm")" ]
	run "$SNAPRUN" -c 0,1 .mypy_cache -- "${mypy[@]}" --cache-dir {} "${opts[@]}" src
	[ "$output" = "$cold" ]
	# Warm: every package changed, then the runs again.  A module that one
	# run rewrote is newer in theirs than the snapshot's version in ours:
	# the merge keeps the rewrite.
	for i in $(seq 1 "$n"); do echo "changed = $i" >>"src/p$i/m0.py"; done
	"${mypy[@]}" --cache-dir plain "${opts[@]}" src >/dev/null 2>&1 || true
	warm=$("${mypy[@]}" -v --cache-dir plain "${opts[@]}" src 2>&1) || true
	rm -f R.*
	merged_runs "$n" "${mypy[@]}" -- "${opts[@]}"
	run "$SNAPRUN" -c 0,1 --merge=snaprun-merge-mypy .mypy_cache -- \
		"${mypy[@]}" -v --cache-dir {} "${opts[@]}" src
	note "warm: $n merged runs, each on a changed package, then a full run: $(fresh_all "$output") fresh; plain mypy: $(fresh_all "$warm")"
	[ "$(fresh_all "$output")" -eq "$(fresh_all "$warm")" ]
	no_leftovers .
}

# debian_mypy: Debian's mypy, without a PYTHONPATH meant for a newer one.
debian_mypy() {
	need_feature exchange
	need_cmd mypy
	on_path
	DEB=(env -u PYTHONPATH mypy)
}

@test "real mypy 1.0 (JSON cache): 3 concurrent merged runs on disjoint packages, then a full run finds all fresh" {
	debian_mypy
	merge_then_full 3 "${DEB[@]}" --
	XY=$(env -u PYTHONPATH bash -c "$(declare -f pyver_of); pyver_of mypy")
	[ -f ".mypy_cache/$XY/p3/m11.meta.json" ]
}

@test "real mypy 1.0 (--sqlite-cache): 3 concurrent merged runs, then a full run finds all fresh; integrity ok" {
	debian_mypy
	merge_then_full 3 "${DEB[@]}" -- --sqlite-cache
	local db
	for db in .mypy_cache/*/cache.db; do
		[ "$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("pragma integrity_check").fetchone()[0])' "$db")" = ok ]
	done
}

@test "MYPY (>= 1.20, sharded SQLite cache): 4 concurrent merged runs, then a full run finds all fresh; every shard passes integrity_check" {
	[ -n "${MYPY:-}" ] || skip "set MYPY to a mypy >= 1.20 to run this"
	need_feature exchange
	on_path
	merge_then_full 4 $MYPY --
	local db n=0
	for db in .mypy_cache/*/cache.*.db; do
		[ "$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("pragma integrity_check").fetchone()[0])' "$db")" = ok ]
		n=$((n + 1))
	done
	[ "$n" -eq 16 ]
}
