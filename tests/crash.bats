#!/usr/bin/env bats
# SIGKILL of snaprun at any instant: FILE is always one intact version, the
# leftovers go with the next run or --clean, never while their CMD lives.

load common
load conc_helper

# spawn, kill_gated, calibrate and kill_loop: see conc_helper (shared with
# dirs.bats, which kills directory runs the same way).

@test "stress: SIGKILL at random instants of copy, CMD and commit: FILE intact, leftovers cleaned" {
	local size=$((8 * 1024 * 1024)) iters=${SNAPRUN_CRASH_ITERS:-$(stress 12 80)}
	local work='cat "$1" > "$2"'
	mkdir d src
	head -c "$size" /dev/urandom >src/v0
	head -c "$size" /dev/urandom >src/v1
	cp src/v0 d/f
	# Each round calibrates (median of 5) how long a whole run takes here,
	# and when its CMD starts (later under sanitizers), so the kills spread
	# over all of it; every other kill lands before CMD would start (the
	# copy is short).  Rounds go on until a third of the kills found the
	# run still running, however the load changes meanwhile.
	kill_rounds $((iters / 3)) "$iters" 10 d/f "$work" '0-$EARLY' '0-$FULL'
	note "crash: kills of 8 MiB runs: $TALLY"
}

@test "leftovers of a killed run stay while its CMD lives, go once it ends" {
	make_gate
	echo data >f
	kill_gated f "$T/gate" C new {}
	local left=$LEFT
	[ -n "$left" ]
	[ -f "$left/f" ]
	[ "$(cat "$left/f")" = new ]
	run timeout 10 "$SNAPRUN" --clean f
	[ "$status" -eq 0 ]
	[ "$(leftovers .)" = "$left" ]
	[ -f "$left/f" ]
	# An ordinary run must not take it either.
	run timeout 10 "$SNAPRUN" f -- true
	[ "$status" -eq 0 ]
	[ "$(leftovers .)" = "$left" ]
	[ -f "$left/f" ]
	[ "$(cat f)" = data ]
	touch C.go.1
	wait "$DRAIN"
	run timeout 10 "$SNAPRUN" --clean f
	[ "$status" -eq 0 ]
	no_leftovers .
	[ "$(cat f)" = data ] # the killed run committed nothing
}

@test "an ordinary run removes a dead run's leftovers once its CMD has ended" {
	make_gate
	echo data >f
	kill_gated f "$T/gate" C new {}
	[ -n "$LEFT" ]
	touch C.go.1
	wait "$DRAIN"
	run timeout 10 "$SNAPRUN" f sh -c 'echo next > {}'
	[ "$status" -eq 0 ]
	no_leftovers .
	[ "$(cat f)" = next ]
}

@test "SIGKILL of a --lock run leaves no stale lock" {
	make_gate
	echo data >f
	kill_gated --lock f "$T/gate" C new {}
	touch C.go.1
	wait "$DRAIN"
	[ -f .f.snaprun.lock ]
	run timeout 10 "$SNAPRUN" --lock -n f sh -c 'echo next > {}'
	[ "$status" -eq 0 ]
	[ "$(cat f)" = next ]
	no_leftovers .
}

@test "--clean and other runs leave a live run's private directory alone" {
	make_gate
	echo data >f
	timeout 30 "$SNAPRUN" f "$T/gate" A from-A {} 3>&- &
	local a=$! st=0 left
	wait_for A.started.1
	left=$(leftovers .)
	[ -n "$left" ]
	run timeout 10 "$SNAPRUN" --clean f
	[ "$status" -eq 0 ]
	run timeout 10 "$SNAPRUN" f -- true
	[ "$status" -eq 0 ]
	[ "$(leftovers .)" = "$left" ]
	[ "$(cat "$left/f")" = from-A ]
	touch A.go.1
	wait "$a" || st=$?
	[ "$st" -eq 0 ]
	[ "$(cat f)" = from-A ]
	no_leftovers .
}
