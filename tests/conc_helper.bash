# Helpers for the concurrency, crash, directory and mypy tests.  Load after
# common.
#
# Background jobs close descriptor 3 (3>&-): bats waits for every holder of
# it before it ends a test, and an orphaned CMD must not hold the suite.

# since START: seconds elapsed since START (a value of $EPOCHREALTIME).
since() {
	awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f\n", b - a }'
}

# lt A B: A < B, as numbers.
lt() {
	awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'
}

# wait_for PATH [SECONDS]: poll until PATH exists (default 10 s).
wait_for() {
	local n=$((${2:-10} * 100))
	while [ ! -e "$1" ]; do
		n=$((n - 1))
		if [ "$n" -le 0 ]; then
			echo "timed out waiting for $1" >&2
			return 1
		fi
		nap 0.01
	done
}

# md5 FILE: the checksum of FILE alone.
md5() {
	md5sum <"$1" | cut -c1-32
}

# tree_sum DIR: the checksum of a whole tree: every regular file's md5sum
# over the sorted relative names.
tree_sum() {
	(cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r md5sum) |
		md5sum | cut -c1-32
}

# wait_all PID...: wait for each job (in this shell: not under run); FAILED
# lists "PID:STATUS" for each that did not exit 0.
wait_all() {
	local p st
	FAILED=
	for p in "$@"; do
		st=0
		wait "$p" || st=$?
		[ "$st" -eq 0 ] || FAILED+="$p:$st "
	done
}

# note TEXT: a line in the TAP output (numbers for the report).
note() {
	echo "# $*" >&3
}

# write_gate PATH BEFORE AFTER: write PATH, a CMD that stalls until the
# test lets it go.  Called as `PATH NAME [TEXT [SNAPSHOT]]` it counts its
# invocation N in NAME.count, runs the shell lines BEFORE, creates
# NAME.started.N, waits (at most 10 s) for NAME.go.N, then runs the lines
# AFTER, which see $name, $text, $snap and $n and must fail when NAME.go.N
# never came.  All NAME.* files are in the working directory, outside any
# snapshot.
write_gate() {
	{
		cat <<-'EOF'
		#!/bin/sh
		name=$1 text=$2 snap=$3
		n=$(( $(cat "$name.count" 2>/dev/null || echo 0) + 1 ))
		echo "$n" >"$name.count"
		EOF
		printf '%s\n' "$2"
		cat <<-'EOF'
		: >"$name.started.$n"
		i=0
		while [ ! -e "$name.go.$n" ] && [ "$i" -lt 215 ]; do
			if [ "$i" -lt 20 ]; then sleep 0.01; else sleep 0.05; fi
			i=$((i + 1))
		done
		EOF
		printf '%s\n' "$3"
	} >"$1"
	chmod +x "$1"
}

# make_gate: write $T/gate, a gate (see write_gate)
#   gate NAME TEXT SNAPSHOT
# that writes TEXT into SNAPSHOT before it creates NAME.started.N; exits 0
# when let go, 1 when it gave up waiting.
make_gate() {
	write_gate "$T/gate" 'printf "%s\n" "$text" >"$snap"' '[ -e "$name.go.$n" ]'
}

# parallel_writers N ARG...: run `snaprun ARG...` N times at once, each
# @i@ in ARG replaced by the writer's number (1..N); fail, naming them,
# unless every writer exits 0.
parallel_writers() {
	local n=$1 i pids=()
	shift
	for i in $(seq 1 "$n"); do
		timeout 60 "$SNAPRUN" "${@//@i@/$i}" 3>&- &
		pids+=($!)
	done
	wait_all "${pids[@]}"
	[ -z "$FAILED" ] || { echo "failed writers (pid:status): $FAILED" >&2; return 1; }
}

# start_gated STARTED ARG...: start `snaprun ARG...` in the background (its
# pid in GATED) and wait until the file STARTED (a gate's NAME.started.N)
# exists.
start_gated() {
	local started=$1
	shift
	timeout 30 "$SNAPRUN" "$@" 3>&- &
	GATED=$!
	wait_for "$started"
}

# gated_exits STATUS: the run started by start_gated ends with STATUS.
gated_exits() {
	local st=0
	wait "$GATED" || st=$?
	if [ "$st" -ne "$1" ]; then
		echo "the gated run exited $st, expected $1" >&2
		return 1
	fi
}

# commits_from_b ARG...: `run` snaprun ARG... (options and FILE) with a
# CMD that writes "from-B"; it must exit 0.
commits_from_b() {
	run timeout 10 "$SNAPRUN" "$@" sh -c 'echo from-B > {}'
	[ "$status" -eq 0 ]
}

# ------------------------------------------ SIGKILL at any instant
# (crash.bats for a FILE, dirs.bats for a DIR)

# ALARM SECS CMD [ARG]...: CMD bounded in time, in this very process (its
# pid is the one to signal): an alarm set before exec ends it.
ALARM=(perl -e 'alarm shift; exec { $ARGV[0] } @ARGV or exit 127')

# spawn ARG...: start "$SNAPRUN" ARG... in the background (bounded by an
# alarm); sets PID (also added to KILL_PIDS) and DRAIN.  Its stdout, and
# so its CMD's, goes into a pipe drained by a background cat that ends only
# when every holder of the pipe (snaprun, the child it forked, CMD) is
# gone: "wait $DRAIN" waits for CMD even after snaprun died and CMD was
# orphaned.
spawn() {
	rm -f "$T/pipe"
	mkfifo "$T/pipe"
	cat "$T/pipe" >/dev/null 3>&- &
	DRAIN=$!
	local w
	exec {w}>"$T/pipe"
	"${ALARM[@]}" 60 "$SNAPRUN" "$@" >&"$w" {w}>&- 3>&- &
	PID=$!
	exec {w}>&-
	KILL_PIDS+=" $PID"
}

# kill_gated ARG...: spawn ARG..., a run whose CMD is `gate C ...` (see
# make_gate), SIGKILL it once that CMD has started and wait for it: it
# dies by the signal (137) while the gate still holds its CMD.  LEFT: the
# leftovers in the working directory then.
kill_gated() {
	local st=0
	spawn "$@"
	wait_for C.started.1
	kill -9 "$PID"
	wait "$PID" || st=$?
	[ "$st" -eq 137 ]
	LEFT=$(leftovers .)
}

# The runs of calibrate and kill_loop make TARGET (FILE or DIR) the version
# src/v0 or src/v1 of the working directory: their CMD is
#   sh -c SCRIPT MARK "$T/src/vN" {}
# where SCRIPT marks when it starts and when it ends in files named after
# MARK and runs the test's WORK in between: shell lines that make the
# snapshot "$2" a copy of "$1".

# median_ms MIN SECONDS...: the median of five times, in whole
# milliseconds, at least MIN.
median_ms() {
	local min=$1
	shift
	printf '%s\n' "$@" | sort -n |
		awk -v min="$min" 'NR == 3 { m = int($1 * 1000) } END { print (m < min ? min : m) }'
}

# calibrate MIN TARGET WORK: five whole runs on TARGET (src/v1, v0, v1, v0,
# v1 in turn); sets the medians, in ms, of how long a run takes (FULL, at
# least MIN), when its CMD starts (EARLY) and when it ends (LATE, below
# FULL), so that kills can be aimed at each part of a run.
calibrate() {
	local min=$1 target=$2 work=$3 it t0 times=() starts=() ends=()
	for it in 1 2 3 4 5; do
		t0=$EPOCHREALTIME
		spawn "$target" sh -c 'date +%s.%N > "$0.start"; '"$work"' && date +%s.%N > "$0.end"' \
			"$T/cal" "$T/src/v$((it % 2))" {}
		wait "$PID"
		wait "$DRAIN"
		times+=("$(since "$t0")")
		starts+=("$(awk -v a="$t0" '{ printf "%.3f\n", $1 - a }' cal.start)")
		ends+=("$(awk -v a="$t0" '{ printf "%.3f\n", $1 - a }' cal.end)")
	done
	FULL=$(median_ms "$min" "${times[@]}")
	EARLY=$(median_ms 2 "${starts[@]}")
	LATE=$(median_ms 2 "${ends[@]}")
	[ "$LATE" -lt "$FULL" ] || LATE=$((FULL - 1))
}

# kill_loop ITERS TARGET WORK WINDOW...: ITERS runs on TARGET, a copy of
# src/v0 or src/v1 to begin with, each making the other version and SIGKILLed after
# a random delay: run I picks it from its WINDOW, the one at index I modulo
# the number of WINDOWs, each "LO-HI" in ms.  After each kill and its CMD's
# end, TARGET is still a file (or a directory, as it was) and is whole:
# the old version or the new one, nothing else (by md5 or tree_sum), the
# new one if snaprun exited 0 (it ran to its end first).  Then a cleanup
# run (odd runs: --clean; even: an ordinary run of `true`) exits 0, leaves
# nothing beside TARGET and TARGET as it was.
# Sets KILLED, how many runs the kill found running, and TALLY, a summary:
# the kills by where they found the run, the versions found, the leftovers.
kill_loop() {
	local iters=$1 target=$2 work=$3
	shift 3
	local windows=("$@") it m0 m1 cur next mnext after st left d_ms lo hi phase
	local before_cmd=0 in_cmd=0 after_cmd=0 finished=0 got_new=0 kept_old=0 had_left=0
	local what=FILE sum=md5 dir
	[ ! -d "$target" ] || what=DIR sum=tree_sum
	dir=$(dirname "$target")
	m0=$("$sum" src/v0)
	m1=$("$sum" src/v1)
	[ "$m0" != "$m1" ]
	cur=$("$sum" "$target")
	[ "$cur" = "$m0" ] || [ "$cur" = "$m1" ] ||
		{ echo "$target is neither src/v0 nor src/v1" >&2; return 1; }
	for ((it = 1; it <= iters; it++)); do
		if [ "$cur" = "$m0" ]; then next=v1 mnext=$m1; else next=v0 mnext=$m0; fi
		rm -f cmd.started cmd.done
		spawn "$target" sh -c ': > "$0.started"; '"$work"' && : > "$0.done"' "$T/cmd" "$T/src/$next" {}
		lo=${windows[it % ${#windows[@]}]%-*}
		hi=${windows[it % ${#windows[@]}]#*-}
		d_ms=$((lo + RANDOM % (hi - lo + 1)))
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
		[ "$st" -eq 137 ] || [ "$st" -eq 0 ] || { echo "iteration $it: snaprun exited $st" >&2; return 1; }
		[ "$st" -ne 0 ] || finished=$((finished + 1))
		wait "$DRAIN" # CMD is gone too
		if [ "$what" = DIR ]; then [ -d "$target" ]; else [ -f "$target" ]; fi && [ ! -L "$target" ] ||
			{ echo "iteration $it: $what is missing" >&2; return 1; }
		after=$("$sum" "$target")
		if [ "$after" = "$cur" ]; then
			kept_old=$((kept_old + 1))
		elif [ "$after" = "$mnext" ]; then
			got_new=$((got_new + 1))
		else
			echo "iteration $it (kill after ${d_ms} ms, $phase CMD): $what is neither version" >&2
			return 1
		fi
		[ "$st" -ne 0 ] || [ "$after" != "$cur" ] || { echo "iteration $it: exit 0 but nothing committed" >&2; return 1; }
		left=$(leftovers "$dir")
		[ -z "$left" ] || had_left=$((had_left + 1))
		if ((it % 2)); then
			run timeout 30 "$SNAPRUN" --clean "$target"
		else
			run timeout 30 "$SNAPRUN" --no-sync "$target" -- true
		fi
		[ "$status" -eq 0 ] || { echo "iteration $it: cleanup exited $status: $output" >&2; return 1; }
		no_leftovers "$dir" || { echo "iteration $it: left before cleanup: $left" >&2; return 1; }
		[ "$("$sum" "$target")" = "$after" ] || { echo "iteration $it: the cleanup changed $what" >&2; return 1; }
		cur=$after
	done
	KILLED=$((before_cmd + in_cmd + after_cmd))
	TALLY="$before_cmd before CMD, $in_cmd during CMD, $after_cmd after CMD (commit), $finished finished first;"
	TALLY+=" $what new $got_new, old $kept_old; leftovers after $had_left kills; all cleaned"
}

# kill_rounds NEED ITERS MIN TARGET WORK WINDOW...: kill_loop rounds of
# ITERS runs until NEED of the kills found the run still running, each
# round calibrated afresh (calibrate MIN TARGET WORK), so that a machine
# that became busier or idler meanwhile only costs another round.  Each
# WINDOW is expanded after the calibration ('0-$EARLY').  Gives up after
# four rounds.  KILLED and TALLY add up the rounds; ROUNDS counts them.
kill_rounds() {
	local need=$1 iters=$2 min=$3 target=$4 work=$5 w killed=0 all=
	local windows
	shift 5
	for ((ROUNDS = 1; ROUNDS <= 4; ROUNDS++)); do
		calibrate "$min" "$target" "$work"
		windows=()
		for w in "$@"; do
			windows+=("$(eval "echo \"$w\"")")
		done
		kill_loop "$iters" "$target" "$work" "${windows[@]}" || return 1
		killed=$((killed + KILLED))
		all+="round $ROUNDS (0..${FULL} ms, CMD ~${EARLY}..${LATE} ms): $KILLED killed; $TALLY "
		if [ "$killed" -ge "$need" ]; then
			break
		fi
	done
	KILLED=$killed
	TALLY=$all
	if [ "$KILLED" -lt "$need" ]; then
		echo "only $KILLED of the kills in $((ROUNDS - 1)) rounds found a run still running: $TALLY" >&2
		return 1
	fi
}
