#!/usr/bin/env bats
# The documented primary use: mypy's SQLite cache shared by concurrent runs.

load ../common
load ../conc_helper
load ../mypy_helper

mypy_setup() {
	need_cmd mypy
	need_cmd sqlite3
	XY=$(pyver_of mypy)
	DB=.mypy_cache/$XY/cache.db
	make_pkg
}

# recipe [MYPY-OPTION]...: the documented recipe.
recipe() {
	timeout 120 "$SNAPRUN" --commit-on=0,1 --root .mypy_cache "$DB" -- \
		mypy --python-version "$XY" --sqlite-cache --cache-dir {} "$@" src
}

# cache_ino, cache_sum: the cache database's inode and checksum.
cache_ino() {
	stat -c %i "$DB"
}

cache_sum() {
	md5 "$DB"
}

# db_ok: the cache database is there, intact, and nothing is left beside it.
db_ok() {
	[ -f "$DB" ]
	[ "$(sqlite3 "$DB" 'pragma integrity_check')" = ok ]
	no_leftovers ".mypy_cache/$XY"
}

@test "mypy: cold start creates the cache through snaprun, the next run is warm" {
	mypy_setup
	[ ! -e .mypy_cache ]
	recipe_finds 0
	db_ok
	recipe_finds 13
	no_leftovers ".mypy_cache/$XY"
}

@test "mypy: type errors (exit 1) still commit the cache" {
	prime_cache
	break_types
	[ "$(cache_sum)" != "$SUM0" ]
	db_ok
	m5_dropped
}

@test "mypy: a syntax error (exit 2) commits nothing" {
	prime_cache
	break_syntax
	[ "$(cache_sum)" = "$SUM0" ]
	[ "$(cache_ino)" = "$INO0" ]
	no_leftovers ".mypy_cache/$XY"
}

@test "stress: mypy: six concurrent cold runs on one cache, all clean, cache intact and warm" {
	mypy_setup
	cold_runs 6
	if grep -iE 'database is locked|malformed|disk image' out.* err.*; then
		false
	fi
	db_ok
	warm_after_cold mypy
}
