#!/usr/bin/env bats
# SIGKILL of snaprun at any instant: FILE is always one intact version, the
# leftovers go with the next run or --clean, never while their CMD lives.

load common
load conc_helper

# Each killed run writes its stdout (and so its CMD's) into a pipe drained by
# a background cat; that cat ends only when the last process holding the
# pipe (snaprun, the child it forked, CMD) is gone.  So "wait $DRAIN" waits
# for CMD even after snaprun died and CMD was orphaned.

# spawn ARGS...: start "$SNAPRUN" ARGS in the background; sets PID and DRAIN.
spawn() {
	rm -f "$T/pipe"
	mkfifo "$T/pipe"
	cat "$T/pipe" >/dev/null 3>&- &
	DRAIN=$!
	local w
	exec {w}>"$T/pipe"
	"$SNAPRUN" "$@" >&"$w" {w}>&- 3>&- &
	PID=$!
	exec {w}>&-
}

@test "SIGKILL at random instants of copy, CMD and commit: FILE intact, leftovers cleaned" {
	local size=$((8 * 1024 * 1024)) iters=${SNAPRUN_CRASH_ITERS:-80}
	local it m0 m1 cur next mnext after st left d_ms phase
	local before_cmd=0 in_cmd=0 after_cmd=0 finished=0 got_new=0 kept_old=0 had_left=0
	mkdir d src
	head -c "$size" /dev/urandom >src/v0
	head -c "$size" /dev/urandom >src/v1
	m0=$(md5 src/v0)
	m1=$(md5 src/v1)
	cp src/v0 d/f
	# Calibrate (median of 5): how long a whole run takes here, and when its
	# CMD starts (later under sanitizers), so the kills spread over all of it.
	local t0 full early times=() starts=()
	for it in 1 2 3 4 5; do
		t0=$EPOCHREALTIME
		spawn d/f sh -c 'date +%s.%N > "$0"; cat "$1" > "$2"' \
			"$T/cal.start" "$T/src/v$((it % 2))" {}
		wait "$PID"
		wait "$DRAIN"
		times+=("$(since "$t0")")
		starts+=("$(awk -v a="$t0" '{ printf "%.3f\n", $1 - a }' cal.start)")
	done
	full=$(printf '%s\n' "${times[@]}" | sort -n | awk 'NR == 3 { m = int($1 * 1000) } END { print (m < 10 ? 10 : m) }')
	early=$(printf '%s\n' "${starts[@]}" | sort -n | awk 'NR == 3 { m = int($1 * 1000) } END { print (m < 2 ? 2 : m) }')
	cp src/v0 d/f
	cur=$m0
	for ((it = 1; it <= iters; it++)); do
		if [ "$cur" = "$m0" ]; then next=v1 mnext=$m1; else next=v0 mnext=$m0; fi
		rm -f cmd.started cmd.done
		spawn d/f sh -c ': > "$0.started"; cat "$1" > "$2"; : > "$0.done"' \
			"$T/cmd" "$T/src/$next" {}
		# Kill anywhere from the start (copy) through CMD to the commit.
		# Every other kill before CMD would start: the copy is short.
		if ((it % 2)); then d_ms=$((RANDOM % (full + 1))); else d_ms=$((RANDOM % (early + 1))); fi
		sleep "$(printf '%d.%03d' $((d_ms / 1000)) $((d_ms % 1000)))"
		kill -9 "$PID" 2>/dev/null || true
		phase=after
		if [ ! -e cmd.started ]; then
			phase=before
		elif [ ! -e cmd.done ]; then
			phase=during
		fi
		st=0
		wait "$PID" || st=$?
		if [ "$st" -eq 137 ]; then
			case $phase in
			before) before_cmd=$((before_cmd + 1)) ;;
			during) in_cmd=$((in_cmd + 1)) ;;
			after) after_cmd=$((after_cmd + 1)) ;;
			esac
		fi
		[ "$st" -eq 137 ] || [ "$st" -eq 0 ] || { echo "iteration $it: snaprun exited $st" >&2; false; }
		[ "$st" -ne 0 ] || finished=$((finished + 1))
		wait "$DRAIN" # CMD is gone too
		after=$(md5 d/f)
		if [ "$after" = "$cur" ]; then
			kept_old=$((kept_old + 1))
		elif [ "$after" = "$mnext" ]; then
			got_new=$((got_new + 1))
		else
			echo "iteration $it (kill after ${d_ms} ms): FILE is neither version" >&2
			false
		fi
		[ "$st" -ne 0 ] || [ "$after" != "$cur" ] || { echo "iteration $it: exit 0 but nothing committed" >&2; false; }
		left=$(leftovers d)
		[ -z "$left" ] || had_left=$((had_left + 1))
		# Alternate: --clean, or an ordinary run that cleans up on its own.
		if ((it % 2)); then
			run timeout 30 "$SNAPRUN" --clean d/f
		else
			run timeout 30 "$SNAPRUN" --no-sync d/f -- true
		fi
		[ "$status" -eq 0 ] || { echo "iteration $it: cleanup exited $status: $output" >&2; false; }
		no_leftovers d || { echo "iteration $it: left before cleanup: $left" >&2; false; }
		[ "$(md5 d/f)" = "$after" ]
		cur=$after
	done
	note "crash: $iters kills of 8 MiB runs within 0..${full} ms (CMD starts at ~${early} ms): $before_cmd before CMD, $in_cmd during CMD," \
		"$after_cmd after CMD (commit), $finished finished first;" \
		"FILE new $got_new, old $kept_old; leftovers after $had_left kills; all cleaned"
	# Most runs were really killed (not finished before the kill).
	[ $((before_cmd + in_cmd + after_cmd)) -ge $((iters / 3)) ]
}

@test "leftovers of a killed run stay while its CMD lives, go once it ends" {
	make_gate
	echo data >f
	spawn f "$T/gate" C new {}
	wait_for C.started.1
	local st=0 left
	kill -9 "$PID"
	wait "$PID" || st=$?
	[ "$st" -eq 137 ]
	left=$(leftovers .)
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
	spawn f "$T/gate" C new {}
	wait_for C.started.1
	kill -9 "$PID"
	wait "$PID" || true
	[ -n "$(leftovers .)" ]
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
	spawn --lock f "$T/gate" C new {}
	wait_for C.started.1
	kill -9 "$PID"
	wait "$PID" || true
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
