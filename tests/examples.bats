#!/usr/bin/env bats
# Every example runs as printed: the ```sh blocks of README.md and the
# .Bd -literal blocks of the man page's EXAMPLES are extracted from the
# documents (nothing is copied here by hand), each run with bash -e in a
# scratch directory that holds the files the examples name, with snaprun
# on PATH; then what each example promises is checked.  The examples that
# run mypy or build in a clone run only with SNAPRUN_SLOW set (make check-slow).
#
# In README.md, a block right after "<!-- not run: REASON -->" is skipped
# with REASON, and one after "<!-- in the clone -->" runs in a copy of the
# source tree with HOME in the scratch directory.  A block of the man page
# is one example; the roff escapes \- \e \& are undone.

load common

REPO=$(cd "$BATS_TEST_DIRNAME/.." && pwd)

# extract_readme DIR: N.sh and N.mark for each ```sh block of README.md.
extract_readme() {
	awk -v dir="$1" '
		/^<!-- not run: .* -->$/ { mark = $0; next }
		/^<!-- in the clone -->$/ { mark = "clone"; next }
		/^```sh$/ { n++; inblock = 1; printf "%s\n", mark > (dir "/" n ".mark"); mark = ""; next }
		inblock && /^```$/ { inblock = 0; next }
		inblock { print > (dir "/" n ".sh"); next }
		/./ { mark = "" }
	' "$REPO/README.md"
}

# extract_man DIR: N.sh for each .Bd -literal block of EXAMPLES.
extract_man() {
	awk -v dir="$1" '
		/^\.Sh / { inex = $0 == ".Sh EXAMPLES"; next }
		inex && /^\.Bd -literal/ { n++; inblock = 1; printf "" > (dir "/" n ".mark"); next }
		inblock && /^\.Ed/ { inblock = 0; next }
		inblock {
			l = $0
			gsub(/\\-/, "-", l); gsub(/\\e/, "\\", l); gsub(/\\&/, "", l)
			print l > (dir "/" n ".sh")
		}
	' "$REPO/man/snaprun.1"
}

# The files the examples name, as a user would have them.
fixture() {
	mkdir -p "$T/bin" "$T/home" "$T/work/src/app" "$T/work/.git"
	ln -s "$SNAPRUN" "$T/bin/snaprun"
	ln -s "$REPO/snaprun-merge-mypy" "$T/bin/snaprun-merge-mypy"
	cd "$T/work" || return 1
	printf 'def inc(x: int) -> int:\n    return x + 1\n' > src/app/__init__.py
	printf '{"version": 1, "name": "demo"}\n' > state.json
	printf '[main]\ndebug = on\nname = demo\n' > settings.ini
	printf 'b\na\n' > notes.txt
	printf 'requests\nattrs\nrequests\n' > requirements.txt
	printf 'b.example\na.example\n' > hosts.txt
	printf 'c.example\na.example\n' > new-hosts.txt
	printf '#!/bin/sh\nprintf %s "{\\"version\\": 3}" > "$1"\n' > update-state
	chmod +x update-state
	if command -v sqlite3 >/dev/null; then
		sqlite3 app.db "CREATE TABLE jobs (id INTEGER, state TEXT);
			INSERT INTO jobs VALUES (7, 'new'), (8, 'new');"
	fi
}

# mypy_version: "1 0" for mypy 1.0.1.
mypy_version() {
	mypy --version | sed -n 's/^mypy \([0-9]*\)\.\([0-9]*\).*/\1 \2/p'
}

# needs EXAMPLE: skip, with the reason, what this machine cannot run.
needs() {
	local ex=$1 tool major minor py
	for tool in jq mypy sqlite3 awk sed sort python3; do
		grep -qE "(^|[ '(])$tool( |$)" "$ex" && need_cmd "$tool"
	done
	# a directory snapshot (.mypy_cache itself is FILE) needs the exchange
	grep -q '\.mypy_cache \(--\|\\$\)' "$ex" && need_feature exchange
	if grep -q mypy "$ex"; then
		read -r major minor < <(mypy_version)
		if grep -q -- --sqlite-num-shards "$ex" && (( major * 100 + minor < 120 )); then
			skip "needs mypy >= 1.20 (--sqlite-num-shards); here mypy $major.$minor"
		fi
		if grep -q -- --sqlite-cache "$ex" && (( major * 100 + minor >= 120 )); then
			skip "the recipe for mypy < 1.20 (--sqlite-cache); here mypy $major.$minor"
		fi
		py=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
		if grep -q '\.mypy_cache/[0-9]' "$ex" && ! grep -q "\.mypy_cache/$py/" "$ex"; then
			skip "the example names another Python version than this one ($py)"
		fi
	fi
	return 0
}

# in_clone: a copy of the source tree (what git tracks, or all but build
# products), as a fresh clone would be.
in_clone() {
	mkdir "$T/clone"
	if git_top "$REPO"; then
		git -C "$REPO" ls-files -z | (cd "$REPO" && xargs -0 tar -cf -) |
			tar -xf - -C "$T/clone"
	else
		(cd "$REPO" && tar -cf - --exclude=./build --exclude=./snaprun .) |
			tar -xf - -C "$T/clone"
	fi
	cd "$T/clone" || return 1
}

# promise EXAMPLE PATTERN TEST: when EXAMPLE has PATTERN (a grep BRE),
# the shell TEST must hold after it ran; checked counts the promises.
promise() {
	grep -q -- "$2" "$1" || return 0
	checked=$((checked + 1))
	eval "$3" || { echo "example does $2, but not: $3" >&2; return 1; }
}

# check EXAMPLE: what it promises, for each thing it does.  Every example
# must meet at least one promise.
check() {
	local ex=$1 checked=0 v
	v=$(sed -n 's/^VERSION *= *//p' "$REPO/Makefile")
	promise "$ex" "jq '.version = 2'" \
		'[ "$(jq .version state.json)" = 2 ] && [ "$(jq -r .name state.json)" = demo ]'
	promise "$ex" 'debug = off' \
		'grep -qx "debug = off" settings.ini && grep -qx "name = demo" settings.ini'
	# the directory recipe: .mypy_cache itself is FILE
	promise "$ex" '\.mypy_cache \(--\|\\$\)' \
		'[ -f .mypy_cache/CACHEDIR.TAG ] && [ -n "$(ls -A .mypy_cache/3.*)" ]'
	promise "$ex" 'cache\.db' \
		'[ "$(head -c 15 .mypy_cache/3.*/cache.db)" = "SQLite format 3" ]'
	promise "$ex" 'date >> "$1"' '[ "$(wc -l < notes.txt)" -eq 3 ] && sort -c notes.txt'
	promise "$ex" 'SNAPRUN_FILE' 'grep -q "^checked " notes.txt'
	promise "$ex" 'requirements.txt -- sort -u' \
		'[ "$(cat requirements.txt)" = "$(printf "attrs\nrequests")" ]'
	promise "$ex" 'counter' '[ "$(cat counter)" = 1 ]'
	promise "$ex" 'snaprun.lock.*\.gitignore' 'grep -qxF "*.snaprun.lock" .gitignore'
	promise "$ex" '--lock-file=' \
		'[ -f "$(sed -n "s/.*--lock-file=\([^ ]*\).*/\1/p" "$ex")" ] &&
		 [ -z "$(find . -maxdepth 1 -name "*.snaprun.lock")" ]'
	promise "$ex" 'make install PREFIX=$HOME/.local' \
		'[ -x "$HOME/.local/bin/snaprun" ] && [ -f "$HOME/.local/share/man/man1/snaprun.1" ] &&
		 grep -qx "snaprun $v" "$T/out"'
	promise "$ex" 'sqlite3 {}' \
		'[ "$(sqlite3 app.db "SELECT group_concat(state) FROM jobs ORDER BY id")" = done,new ]'
	promise "$ex" 'new-hosts.txt' \
		'[ "$(cat hosts.txt)" = "$(printf "a.example\nb.example\nc.example")" ]'
	promise "$ex" 'update-state' '[ "$(jq .version state.json)" = 3 ]'
	if [ "$checked" = 0 ]; then
		echo "no promise checked for this example; add one to check() in $BATS_TEST_FILENAME" >&2
		return 1
	fi
	no_leftovers .
}

# example DOC N: run example N of DOC (readme or man) as printed.
example() {
	local dir=$T/examples ex mark
	mkdir -p "$dir"
	"extract_$1" "$dir"
	ex=$dir/$2.sh
	[ -f "$ex" ] || skip "$1 has fewer than $2 examples"
	mark=$(cat "$dir/$2.mark")
	case $mark in
	"<!-- not run: "*) mark=${mark#<!-- not run: }; skip "${mark% -->}" ;;
	esac
	# real mypy runs and builds are make check-slow's, as tests/slow is
	if [ -z "${SNAPRUN_SLOW-}" ] && { [ "$mark" = clone ] ||
		grep -qE "(^|[ '(])mypy( |$)" "$ex"; }; then
		skip "make check-slow runs it"
	fi
	needs "$ex"
	fixture
	export PATH="$T/bin:$PATH" HOME="$T/home"
	[ "$mark" = clone ] && in_clone
	echo "--- $1 example $2:" >&2
	cat "$ex" >&2
	run bash -e -o pipefail "$ex"
	printf '%s\n' "$output" > "$T/out"
	[ "$status" -eq 0 ] || { echo "exit $status: $output" >&2; return 1; }
	check "$ex"
}

# count DOC: how many examples DOC has.
count() {
	local dir=$T/count-$1
	mkdir -p "$dir"
	"extract_$1" "$dir"
	ls "$dir" | grep -c '\.sh$'
}

@test "the README and the man page have examples, no more than these tests run" {
	local r m
	r=$(count readme)
	m=$(count man)
	[ "$r" -ge 8 ] && [ "$m" -ge 6 ]
	# one numbered test below for each
	[ "$r" -le 11 ] || { echo "README.md has $r examples: add tests here" >&2; false; }
	[ "$m" -le 8 ] || { echo "the man page has $m examples: add tests here" >&2; false; }
}

@test "README example 1" { example readme 1; }
@test "README example 2" { example readme 2; }
@test "README example 3" { example readme 3; }
@test "README example 4" { example readme 4; }
@test "README example 5" { example readme 5; }
@test "README example 6" { example readme 6; }
@test "README example 7" { example readme 7; }
@test "README example 8" { example readme 8; }
@test "README example 9" { example readme 9; }
@test "README example 10" { example readme 10; }
@test "README example 11" { example readme 11; }

@test "man page example 1" { example man 1; }
@test "man page example 2" { example man 2; }
@test "man page example 3" { example man 3; }
@test "man page example 4" { example man 4; }
@test "man page example 5" { example man 5; }
@test "man page example 6" { example man 6; }
@test "man page example 7" { example man 7; }
@test "man page example 8" { example man 8; }
