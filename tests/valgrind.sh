#!/bin/sh
# Representative runs of snaprun under valgrind: a commit, a discarded
# run, --root, --lock with --on-conflict, an error, an exec failure,
# --clean, a directory snapshot and filter mode.  valgrind's own exit
# status (99) marks any error or leak.
# usage: tests/valgrind.sh "VALGRIND COMMAND" SNAPRUN
set -u
vg=$1 bin=$2
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
head -c 1048576 /dev/urandom >data
mkdir -p cache/3.11 && printf 'x' >cache/3.11/cache.db
failed=0

expect() { # expect STATUS ARG...: run snaprun under valgrind
	want=$1; shift
	$vg "$bin" "$@" >/dev/null 2>vg.log
	got=$?
	if [ "$got" -ne "$want" ]; then
		echo "valgrind: snaprun $*: exit $got, expected $want" >&2
		cat vg.log >&2
		failed=1
	fi
}

expect 0 -v data -- sh -c 'printf more >>"$1"' sh '{}'
expect 3 --keep data -- sh -c 'exit 3'
expect 0 --root cache -c 0,1 cache/3.11/cache.db -- sh -c 'printf y >>"$1/3.11/cache.db"' sh '{}'
expect 0 -x --on-conflict=retry --retries=2 data -- true
expect 0 --missing=empty new/file -- true
expect 125 . -- true
expect 127 data -- no-such-command-here
expect 0 --clean data
mkdir -p tree/sub && printf 1 >tree/a && ln tree/a tree/sub/b && ln -s a tree/l
expect 0 tree -- sh -c 'printf 2 >"$1/sub/c"' sh '{}'
expect 3 tree -- sh -c 'exit 3'
expect 0 -f data -- cat
expect 0 -f data -- sh -c 'cat "$1"' sh '{}'
expect 0 -f --missing=empty --on-conflict=fail new.txt -- echo hi
expect 125 -f absent.txt -- cat
expect 0 made/for/it -- true
expect 125 -f data -- sh -c 'sleep 1 & echo hi'
expect 125 -f data -- sh -c 'printf x >>"$1"; cat' sh '{}'
exit $failed
