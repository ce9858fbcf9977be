#!/usr/bin/env bats
# The musl build (musl 1.2.3 has no renameat2 or statx wrapper and no
# RENAME_* flags) calls the system calls itself: it has the exchange and
# commits directories as the glibc build does.

load common

REPO=$(cd "$BATS_TEST_DIRNAME/.." && pwd)

@test "slow: a musl build lists the exchange and commits a directory" {
	need_cmd musl-gcc
	[ "$(uname -s)" = Linux ] || skip "the exchange is Linux's"
	musl-gcc -std=c11 -O2 -o "$T/snaprun-musl" "$REPO/snapshot.c"
	run "$T/snaprun-musl" -V
	[ "$status" -eq 0 ]
	[[ ${lines[1]} == "features:"*" exchange "* ]]
	mkdir -p d/sub
	echo old > d/sub/f
	run "$T/snaprun-musl" d -- sh -c 'echo new > "$1/sub/f"; echo added > "$1/g"' sh {}
	[ "$status" -eq 0 ]
	[ "$(cat d/sub/f)" = new ]
	[ "$(cat d/g)" = added ]
	no_leftovers .
}
