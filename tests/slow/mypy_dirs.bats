#!/usr/bin/env bats
# The directory recipe for mypy: the whole cache directory is one snapshot,
#   snaprun -c 0,1 .mypy_cache -- mypy --cache-dir {} src
# Debian's mypy (1.0, JSON cache), and a newer one (sharded SQLite cache)
# given as a command in $MYPY.

load ../common
load ../conc_helper
load ../mypy_helper

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

# cache_ino, cache_sum: the cache directory's inode and checksum.
cache_ino() {
	stat -c %i .mypy_cache
}

cache_sum() {
	tree_sum .mypy_cache
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
	recipe_finds 0
	[ -d .mypy_cache ] && [ ! -L .mypy_cache ]
	[ -f .mypy_cache/CACHEDIR.TAG ]
	json_cache_valid
	no_leftovers .
	recipe_finds 13
	no_leftovers .
}

@test "mypy (JSON cache): type errors (exit 1) commit the cache" {
	prime_cache
	break_types
	[ "$(cache_ino)" != "$INO0" ]
	[ "$(cache_sum)" != "$SUM0" ]
	no_leftovers .
	m5_dropped
}

@test "mypy (JSON cache): a syntax error (exit 2) commits nothing" {
	prime_cache
	break_syntax
	[ "$(cache_ino)" = "$INO0" ]
	[ "$(cache_sum)" = "$SUM0" ]
	no_leftovers .
}

@test "stress: mypy (JSON cache): six concurrent cold runs all exit 0, the cache is valid and the next run warm" {
	mypy_setup
	cold_runs 6
	json_cache_valid
	no_leftovers .
	warm_after_cold "mypy JSON cache"
}

@test "newer mypy from \$MYPY (sharded SQLite cache): every shard passes integrity_check, the next run is warm" {
	[ -n "${MYPY-}" ] || skip "MYPY is not set (a newer mypy command, e.g. 'python3 -m mypy')"
	need_cmd sqlite3
	local mypy db n=0
	read -ra mypy <<<"$MYPY"
	mypy_setup "${mypy[@]}"
	recipe_finds 0
	no_leftovers .
	for db in ".mypy_cache/$XY"/cache.*.db; do
		[ -f "$db" ] || continue
		n=$((n + 1))
		[ "$(sqlite3 "$db" 'pragma integrity_check')" = ok ] || { echo "$db is damaged" >&2; false; }
	done
	note "newer mypy: $n SQLite shards in .mypy_cache/$XY"
	[ "$n" -ge 2 ]
	recipe_finds 13
	no_leftovers .
}
