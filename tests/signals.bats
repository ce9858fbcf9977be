load common
load fs_helper

# Signals sent to snaprun while CMD runs: CMD is stopped and reaped, nothing
# is committed, nothing is left, and snaprun dies by the same signal.

teardown() {
	stop_strays
	cd / && rm -rf "$T"
}

# spawn ARG...: run snaprun ARG... in the background under waitstatus (its
# end is written to $T/st), stdin empty, stdout and stderr to $T/out and
# $T/err. Sets wrpid and, once snaprun runs, srpid.
spawn() {
	waitstatus "$T/st" "$SNAPRUN" "$@" </dev/null >"$T/out" 2>"$T/err" 3>&- &
	wrpid=$!
	wait_for "$T/st.pid"
	srpid=$(cat "$T/st.pid")
}

# spawn_cmd FILE SCRIPT [OPTION]...: spawn snaprun OPTION... FILE with CMD
# `sh -c SCRIPT sh {} PIDFILE` and wait until SCRIPT has written its pid
# to "$2" (PIDFILE). Sets wrpid, srpid and cmdpid.
spawn_cmd() {
	local file=$1 script=$2
	shift 2
	spawn "$@" "$file" sh -c "$script" sh {} "$T/cmdpid"
	wait_for "$T/cmdpid"
	cmdpid=$(cat "$T/cmdpid")
}

# ended_by STATUS: wait for snaprun's end, which must be STATUS as
# waitstatus writes it ("signal N core C" or "exit N").
ended_by() {
	wait_for "$T/st" 15
	if [ "$(cat "$T/st")" != "$1" ]; then
		echo "snaprun ended with '$(cat "$T/st")', expected '$1'" >&2
		return 1
	fi
}

# start_run [SNAPRUN OPTION]... -- SCRIPT: run snaprun on f (holding "old")
# in the background with CMD `sh -c SCRIPT sh {} PIDFILE`; SCRIPT writes its
# pid to "$2" once it has written into the snapshot. Sets srpid and cmdpid.
start_run() {
	local opts=()
	while [ "$1" != -- ]; do opts+=("$1"); shift; done
	shift
	printf old > f
	spawn_cmd f "$1" "${opts[@]}"
	# CMD is a child of snaprun
	[ "$(ps -o ppid= -p "$cmdpid" | tr -d ' ')" = "$srpid" ]
	[ -f "$T/f" ]
}

writer='printf new > "$1"; echo $$ > "$2"; exec sleep 30'

# finish EXPECTED: wait for snaprun's end and check the outcome.
finish() {
	wait_for "$T/st" 15
	cat "$T/err" >&2
	ended_by "$1"
	pid_gone "$srpid"
	pid_gone "$cmdpid"
	srpid= cmdpid=
	expect_content "$T/f" old
	no_leftovers "$T"
	[ ! -e "$T/core" ]
}

@test "SIGTERM to snaprun: CMD is stopped, nothing committed, snaprun dies by SIGTERM" {
	start_run -- "$writer"
	kill -TERM "$srpid"
	finish "signal 15 core 0"
}

@test "SIGINT to snaprun: CMD is stopped, nothing committed, snaprun dies by SIGINT" {
	start_run -- "$writer"
	kill -INT "$srpid"
	finish "signal 2 core 0"
}

@test "SIGHUP to snaprun: CMD is stopped, nothing committed, snaprun dies by SIGHUP" {
	start_run -- "$writer"
	kill -HUP "$srpid"
	finish "signal 1 core 0"
}

@test "SIGQUIT to snaprun: dies by SIGQUIT without dumping core" {
	ulimit -c unlimited 2>/dev/null || true
	start_run -- 'ulimit -c 0; printf new > "$1"; echo $$ > "$2"; exec sleep 30'
	kill -QUIT "$srpid"
	finish "signal 3 core 0"
}

@test "bash sees 128+N after a signal: 143 for SIGTERM, 130 for SIGINT" {
	for sig in TERM INT; do
		rm -f cmdpid
		printf old > f
		# a background job starts with INT ignored: give it back its default
		env --default-signal=INT "$SNAPRUN" f sh -c "$writer" sh {} "$T/cmdpid" \
			</dev/null >out 2>err 3>&- &
		srpid=$!
		wait_for cmdpid
		cmdpid=$(cat cmdpid)
		kill -"$sig" "$srpid"
		st=0
		wait "$srpid" || st=$?
		echo "SIG$sig: bash saw $st; $(cat err)" >&2
		if [ $sig = TERM ]; then [ "$st" -eq 143 ]; else [ "$st" -eq 130 ]; fi
		pid_gone "$cmdpid"
		srpid= cmdpid=
		expect_content f old
		no_leftovers .
	done
}

@test "SIGINT to the whole process group (as from a terminal): same outcome" {
	SR_NEWPGRP=1 start_run -- "$writer"
	kill -INT -- "-$srpid"
	finish "signal 2 core 0"
}

@test "SIGTERM to the whole process group: same outcome" {
	SR_NEWPGRP=1 start_run -- "$writer"
	kill -TERM -- "-$srpid"
	finish "signal 15 core 0"
}

@test "CMD that catches the signal and exits 0 is still not committed" {
	start_run -- 'trap "exit 0" TERM; printf new > "$1"; echo $$ > "$2"; while :; do sleep 0.05; done'
	kill -TERM "$srpid"
	finish "signal 15 core 0"
}

@test "CMD that catches the signal and exits with a status that does not commit: snaprun still dies by the signal" {
	start_run -- 'trap "exit 3" TERM; printf new > "$1"; echo $$ > "$2"; while :; do sleep 0.05; done'
	kill -TERM "$srpid"
	finish "signal 15 core 0"
}

@test "CMD that catches the signal and exits 0 is not committed even under -c 0-255" {
	start_run -c 0-255 -- 'trap "exit 0" HUP; printf new > "$1"; echo $$ > "$2"; while :; do sleep 0.05; done'
	kill -HUP "$srpid"
	finish "signal 1 core 0"
}

@test "a signal with --keep: nothing committed, snaprun still dies by the signal" {
	start_run --keep -- "$writer"
	kill -TERM "$srpid"
	ended_by "signal 15 core 0"
	pid_gone "$cmdpid"
	srpid= cmdpid=
	expect_content f old
	# whatever was kept is a .kept directory, never a live private one
	left=$(leftovers .)
	[ -z "$left" ] || [[ $left == *.kept ]]
}

@test "a signal while a missing FILE's CMD runs creates no FILE" {
	rm -f f
	spawn_cmd new.db "$writer"
	kill -TERM "$srpid"
	ended_by "signal 15 core 0"
	pid_gone "$cmdpid"
	srpid= cmdpid=
	[ ! -e new.db ]
	no_leftovers .
}

@test "after a SIGKILL of snaprun, FILE is old or new, never partial" {
	head -c 3000000 /dev/urandom > f
	cp f ref
	spawn_cmd f 'echo $$ > "$2"; exec sleep 30'
	kill -KILL "$srpid"
	ended_by "signal 9 core 0"
	cmp f ref
	kill -KILL "$cmdpid" 2>/dev/null || true
	pid_gone "$cmdpid"
	srpid= cmdpid=
}

# sr_sigchld_ignored ARG...: `run` snaprun ARG... started with SIGCHLD
# ignored, stderr apart. (timeout outside: it would reset SIGCHLD itself)
sr_sigchld_ignored() {
	run --separate-stderr timeout 30 perl -e '$SIG{CHLD} = "IGNORE"; exec { $ARGV[0] } @ARGV' \
		"$SNAPRUN" "$@"
}

@test "started with SIGCHLD ignored, snaprun still sees CMD's status and commits" {
	printf old > f
	sr_sigchld_ignored f sh -c 'printf new > "$1"' sh {}
	expect_status 0
	expect_content f new
	[ -z "$stderr" ]
	sr_sigchld_ignored f sh -c 'printf newer > "$1"; exit 3' sh {}
	expect_status 3
	expect_content f new
	no_leftovers .
}

@test "SIGTERM while the snapshot is still being copied: no CMD, nothing left" {
	head -c 200M /dev/zero > big
	spawn big sh -c ': > "$0/ran"; echo $$ > "$0/cmdpid"; exec sleep 30' "$T" {}
	sleep 0.02
	kill -TERM "$srpid"
	ended_by "signal 15 core 0"
	pid_gone "$srpid"
	if [ -s cmdpid ]; then
		# the copy won the race: CMD must be gone all the same
		cmdpid=$(cat cmdpid)
		pid_gone "$cmdpid"
	fi
	srpid= cmdpid=
	[ "$(stat -c %s big)" -eq $((200 * 1024 * 1024)) ]
	cmp -n $((200 * 1024 * 1024)) big /dev/zero
	no_leftovers .
}

@test "stderr is a pipe nobody reads: snaprun neither strands CMD nor leaves its directory" {
	printf old > f
	# a pipe whose reader is already gone: writing to it raises SIGPIPE
	exec 4> >(exec true)
	sleep 0.2
	waitstatus "$T/st" "$SNAPRUN" -v f sh -c 'echo $$ > "$0/cmdpid"; sleep 0.3; printf new > "$1"' "$T" {} \
		</dev/null >"$T/out" 2>&4 3>&- &
	wrpid=$!
	exec 4>&-
	wait_for "$T/st" 15
	echo "snaprun: $(cat "$T/st")" >&2
	if [ -s cmdpid ]; then
		cmdpid=$(cat cmdpid)
		pid_gone "$cmdpid" 2
	fi
	srpid= cmdpid=
	[ "$(cat f)" = old ] || [ "$(cat f)" = new ]
	no_leftovers .
}
