# Helpers for the concurrency, crash and mypy tests.  Load after common.
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
		sleep 0.01
	done
}

# md5 FILE: the checksum of FILE alone.
md5() {
	md5sum <"$1" | cut -c1-32
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

# make_gate: write $T/gate, a CMD that stalls until the test lets it go.
#   gate NAME TEXT SNAPSHOT
# counts its invocation N in NAME.count, writes TEXT into SNAPSHOT, creates
# NAME.started.N, then waits (at most 10 s) for NAME.go.N; exits 0 when let
# go, 1 when it gave up waiting.  All NAME.* files are in the working
# directory, outside any snapshot.
make_gate() {
	cat >"$T/gate" <<-'EOF'
	#!/bin/sh
	name=$1 text=$2 snap=$3
	n=$(( $(cat "$name.count" 2>/dev/null || echo 0) + 1 ))
	echo "$n" >"$name.count"
	printf '%s\n' "$text" >"$snap"
	: >"$name.started.$n"
	i=0
	while [ ! -e "$name.go.$n" ] && [ "$i" -lt 1000 ]; do
		sleep 0.01
		i=$((i + 1))
	done
	[ -e "$name.go.$n" ]
	EOF
	chmod +x "$T/gate"
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
