#!/usr/bin/env bats
# Concurrent runs on one FILE: --lock, the --on-conflict policies, conflict
# detection, lock waits, atomic replacement under load, SQLite writers.

load common
load conc_helper

# check_lines N: f holds "base" then line-1..line-N, each exactly once.
check_lines() {
	local n=$1 i c
	[ "$(head -n1 f)" = base ] || { echo "first line is not base" >&2; return 1; }
	for i in $(seq 1 "$n"); do
		c=$(grep -cx "line-$i" f || true)
		if [ "$c" -ne 1 ]; then
			echo "line-$i appears $c times in:" >&2
			cat f >&2
			return 1
		fi
	done
	[ "$(wc -l <f)" -eq $((n + 1)) ] || { echo "f has $(wc -l <f) lines, want $((n + 1))" >&2; return 1; }
}

# start_a ARG...: make the gate and start `snaprun ARG... "$T/gate" A from-A
# {}` (ARG: options and FILE) in the background; returns once A's first CMD
# has written "from-A" into its snapshot and stalls.
start_a() {
	make_gate
	start_gated A.started.1 "$@" "$T/gate" A from-A {}
}

# release_a STATUS: let A's first CMD go; A must end with STATUS.
release_a() {
	touch A.go.1
	gated_exits "$1"
}

# b_commits_during_a A-OPTION... -- B-OPTION...: f holds "old"; A, `snaprun
# A-OPTION... f` with the gate as CMD, has started when B, `snaprun
# B-OPTION... f`, commits "from-B" (exit 0). A is left stalled.
b_commits_during_a() {
	local a=()
	while [ "$1" != -- ]; do a+=("$1"); shift; done
	shift
	echo old >f
	start_a "${a[@]}" f
	commits_from_b "$@" f
}

# hold_lock: f holds "old" and a --lock run, H, holds its lock while its
# CMD stalls, having written "held".
hold_lock() {
	make_gate
	echo old >f
	start_gated H.started.1 --lock f "$T/gate" H held {}
}

# release_lock: let H go; it must commit "held".
release_lock() {
	touch H.go.1
	gated_exits 0
	[ "$(cat f)" = held ]
}

# intruder_refused OPTION...: while H holds the lock, snaprun --lock
# OPTION... f exits 75; EL is how long it took, in seconds.
intruder_refused() {
	local t0=$EPOCHREALTIME
	run timeout 10 "$SNAPRUN" --lock "$@" f sh -c 'echo intruder > {}'
	EL=$(since "$t0")
	note "$* refused after ${EL}s"
	[ "$status" -eq 75 ]
}

@test "--lock: 12 parallel writers never overlap, each line present once" {
	local n=12
	echo base >f
	parallel_writers "$n" --lock f \
		sh -c "mkdir $T/busy || exit 9; cat {} >/dev/null; sleep 0.01; echo line-@i@ >> {}; rmdir $T/busy"
	check_lines "$n"
	no_leftovers .
	[ -f .f.snaprun.lock ]
}

@test "retry: 8 parallel slow writers conflict for real and lose no line" {
	local n=8 calls
	echo base >f
	: >calls
	parallel_writers "$n" --on-conflict=retry --retries=50 f \
		sh -c "echo @i@ >> $T/calls; cat {} >/dev/null; sleep 0.05; echo line-@i@ >> {}"
	check_lines "$n"
	calls=$(wc -l <calls)
	note "retry: $n writers, $calls CMD runs, $((calls - n)) conflicts retried"
	[ "$calls" -gt "$n" ] # conflicts did happen
	no_leftovers .
	[ -f .f.snaprun.lock ]
}

@test "fail: of 8 parallel writers exactly those that exit 0 are in FILE" {
	local n=8 i pids=() p st ok=0 lost=0
	echo base >f
	for i in $(seq 1 "$n"); do
		timeout 60 "$SNAPRUN" --on-conflict=fail f \
			sh -c "cat {} >/dev/null; sleep 0.05; echo line-$i >> {}" 3>&- &
		pids+=($!)
		sleep 0.02 # staggered: some snapshots follow a commit, some race it
	done
	for i in $(seq 1 "$n"); do
		st=0
		wait "${pids[i - 1]}" || st=$?
		case $st in
		0)
			ok=$((ok + 1))
			[ "$(grep -cx "line-$i" f)" -eq 1 ] || { echo "writer $i exited 0, its line is missing" >&2; cat f >&2; false; }
			;;
		75)
			lost=$((lost + 1))
			! grep -qx "line-$i" f || { echo "writer $i exited 75, its line is there" >&2; false; }
			;;
		*) echo "writer $i exited $st" >&2; false ;;
		esac
	done
	note "fail: $n writers, $ok committed, $lost refused with 75"
	[ "$ok" -ge 1 ]
	[ "$(wc -l <f)" -eq $((ok + 1)) ]
	no_leftovers .
}

@test "fail: a run whose FILE was committed meanwhile exits 75, keeps the other's" {
	b_commits_during_a --on-conflict=fail -- --on-conflict=fail
	[ "$(cat f)" = from-B ]
	release_a 75
	[ "$(cat f)" = from-B ]
	no_leftovers .
}

@test "keep: the conflicting run exits CMD's status 0, the other's content stays" {
	b_commits_during_a --on-conflict=keep -- --on-conflict=keep
	release_a 0
	[ "$(cat f)" = from-B ]
	no_leftovers .
}

@test "keep: CMD's own non-zero status is passed through on conflict" {
	make_gate
	echo old >f
	start_gated A.started.1 --commit-on=0,3 --on-conflict=keep f \
		sh -c '"$0" A from-A "$1" && exit 3' "$T/gate" {}
	commits_from_b f
	release_a 3
	[ "$(cat f)" = from-B ]
}

@test "overwrite (default): the last run to commit wins" {
	b_commits_during_a --
	[ "$(cat f)" = from-B ]
	release_a 0
	[ "$(cat f)" = from-A ]
	no_leftovers .
}

@test "retry --retries=0: a forced conflict is not retried, exits 75" {
	b_commits_during_a --on-conflict=retry --retries=0 --
	release_a 75
	[ "$(cat A.count)" -eq 1 ]
	[ "$(cat f)" = from-B ]
	no_leftovers .
}

@test "retry --retries=1: a conflict on both tries exits 75 after 2 CMD runs" {
	echo old >f
	local k
	start_a --on-conflict=retry --retries=1 f
	for k in 1 2; do
		wait_for A.started.$k
		run timeout 10 "$SNAPRUN" f sh -c "echo from-B$k > {}"
		[ "$status" -eq 0 ]
		touch A.go.$k
	done
	gated_exits 75
	[ "$(cat A.count)" -eq 2 ]
	[ "$(cat f)" = from-B2 ]
	no_leftovers .
}

@test "retry --retries=1: the second try starts from the other's commit and wins" {
	make_gate
	echo old >f
	start_gated A.started.1 --on-conflict=retry --retries=1 f \
		sh -c 'cat "$1" >> "$0.seen"; "$0" A from-A "$1"' "$T/gate" {}
	commits_from_b f
	touch A.go.1
	wait_for A.started.2
	touch A.go.2
	gated_exits 0
	[ "$(cat A.count)" -eq 2 ]
	[ "$(cat f)" = from-A ]
	# The fresh snapshot of the second try held B's commit.
	[ "$(cat "$T/gate.seen")" = "$(printf 'old\nfrom-B')" ]
}

@test "fail: two runs from an absent FILE, the later commit conflicts (75)" {
	start_a --on-conflict=fail d/f
	commits_from_b --on-conflict=fail d/f
	release_a 75
	[ "$(cat d/f)" = from-B ]
	no_leftovers d
}

@test "fail: FILE removed by another process meanwhile is a conflict (75)" {
	echo old >f
	start_a --on-conflict=fail f
	rm f
	release_a 75
	[ ! -e f ]
	no_leftovers .
}

@test "fail: FILE replaced outside snaprun by a same-size, same-mtime copy is a conflict" {
	printf 'same size and content\n' >f
	start_a --on-conflict=fail f
	cp -p f f.tmp
	mv f.tmp f
	release_a 75
	[ "$(cat f)" = 'same size and content' ]
	no_leftovers .
}

@test "fail: FILE deleted and recreated (inode number reused) is a conflict" {
	printf 'same size and content\n' >f
	local ino0 ino1
	ino0=$(stat -c %i f)
	start_a --on-conflict=fail f
	cp -p f saved
	rm f
	cp -p saved f # same bytes, size and mtime; ext4 tends to hand out the freed inode again
	ino1=$(stat -c %i f)
	note "inode reuse: before $ino0, after $ino1 ($([ "$ino0" = "$ino1" ] && echo reused || echo not reused))"
	release_a 75
	[ "$(cat f)" = 'same size and content' ]
	no_leftovers .
}

@test "--lock -n: exits 75 at once while another run holds the lock" {
	hold_lock
	intruder_refused -n
	lt "$EL" 5 # the lock is held until release_lock: far longer
	release_lock
	no_leftovers .
}

@test "--lock -w 0.3: exits 75 after about 0.3 s while another run holds the lock" {
	hold_lock
	intruder_refused -w 0.3
	lt 0.25 "$EL"
	lt "$EL" 5
	release_lock
}

@test "--lock -w 0 and tiny waits (0.0000001, 0.000001, 0.00001): give up at once" {
	hold_lock
	local t0 el w bad=''
	# -w 0 is -n, as with flock(1); a wait that ends before snaprun even
	# blocks must still end it (the timer may expire before flock(2)).
	for w in 0 0.0000001 0.000001 0.00001; do
		t0=$EPOCHREALTIME
		run timeout 10 "$SNAPRUN" --lock -w "$w" f sh -c 'echo intruder > {}'
		el=$(since "$t0")
		if [ "$status" -ne 75 ] || ! lt "$el" 5; then
			bad+=" -w $w: status $status after ${el}s;"
		fi
	done
	[ -z "$bad" ] || { echo "not refused at once (124: still waiting):$bad" >&2; false; }
	release_lock
}

@test "--lock -w 20: waits for the holder, then runs on its commit" {
	hold_lock
	local w st=0
	timeout 30 "$SNAPRUN" --lock -w 20 f sh -c "cat {} > $T/seen; echo waiter >> {}" 3>&- &
	w=$!
	sleep 0.4
	[ ! -e seen ] # still waiting
	touch H.go.1
	gated_exits 0
	wait "$w" || st=$?
	[ "$st" -eq 0 ]
	[ "$(cat seen)" = held ]
	[ "$(cat f)" = "$(printf 'held\nwaiter')" ]
	no_leftovers .
}

@test "--lock -n: the lock is a flock(2) on the lock file (flock(1) holds it off)" {
	need_cmd flock
	echo old >f
	: >.f.snaprun.lock
	run timeout 10 flock .f.snaprun.lock timeout 10 "$SNAPRUN" --lock -n f sh -c 'echo x > {}'
	[ "$status" -eq 75 ]
	[ "$(cat f)" = old ]
	run timeout 10 "$SNAPRUN" --lock -n f sh -c 'echo new > {}'
	[ "$status" -eq 0 ]
	[ "$(cat f)" = new ]
}

@test "stress: 16 parallel 4 MiB writers: every read of FILE is one writer's whole output" {
	local size=$((4 * 1024 * 1024)) n=16 i pids=() p st reads kinds
	yes init | head -c "$size" >f
	md5 f >valid
	for i in $(seq 1 "$n"); do
		yes "w$i" | head -c "$size" | md5sum | cut -c1-32 >>valid
	done
	# The reader: each pass opens f once and hashes what that open sees.
	(
		end=$((SECONDS + 90))
		while [ ! -e stop ] && [ "$SECONDS" -lt "$end" ]; do
			if s=$(md5sum <f 2>/dev/null); then
				echo "${s:0:32}"
			else
				echo MISSING
			fi
		done >seen
	) 3>&- &
	local reader=$!
	sleep 0.1
	for i in $(seq 1 "$n"); do
		timeout 120 "$SNAPRUN" f sh -c "yes w$i | head -c $size > {}" 3>&- &
		pids+=($!)
	done
	for p in "${pids[@]}"; do
		st=0
		wait "$p" || st=$?
		[ "$st" -eq 0 ] || { echo "writer $p exited $st" >&2; false; }
		grep -qxF "$(md5 f)" valid || { echo "after a commit f is no writer's output" >&2; false; }
	done
	touch stop
	wait "$reader"
	reads=$(wc -l <seen)
	kinds=$(sort -u seen | wc -l)
	note "atomic: $n writers x $size bytes, $reads reads, $kinds distinct versions seen"
	[ "$reads" -ge 1 ]
	if grep -vxFf valid seen >bad; then
		echo "torn, empty or foreign reads: $(wc -l <bad)" >&2
		false
	fi
	# The final file is a writer's, not the initial one.
	p=$(md5 f)
	[ "$p" != "$(head -n1 valid)" ]
	grep -qxF "$p" valid
	[ "$(stat -c %s f)" -eq "$size" ]
	no_leftovers .
	[ ! -e .f.snaprun.lock ] # the default mode leaves nothing at all
}

@test "sqlite3: 6 parallel inserts through retry all land, database intact" {
	need_cmd sqlite3
	local n=6 calls
	sqlite3 db 'create table t(x integer primary key); create table pad(b blob);
		insert into pad values(randomblob(2000000));'
	: >calls
	parallel_writers "$n" --on-conflict=retry --retries=50 db \
		sh -c 'echo >> "$0"; exec sqlite3 "$1" "$2"' "$T/calls" {} "insert into t values(@i@)"
	[ "$(sqlite3 db 'pragma integrity_check')" = ok ]
	[ "$(sqlite3 db 'select count(*) from t')" -eq "$n" ]
	[ "$(sqlite3 db 'select sum(x) from t')" -eq $((n * (n + 1) / 2)) ]
	calls=$(wc -l <calls)
	note "sqlite: $n writers, $calls sqlite3 runs, $((calls - n)) conflicts retried"
	[ ! -e db-journal ]
	no_leftovers .
}

@test "default mode: the rename waits while another holds an existing lock file" {
	need_cmd flock
	echo old >f
	: >.f.snaprun.lock
	flock .f.snaprun.lock sleep 1 &
	holder=$!
	sleep 0.2
	start=$(date +%s%N)
	run timeout 10 "$SNAPRUN" f sh -c 'echo new > "$1"' sh {}
	elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
	wait "$holder"
	[ "$status" -eq 0 ]
	[ "$(cat f)" = new ]
	[ "$elapsed" -ge 500 ]
	no_leftovers .
}

@test "default mode without a lock file creates none" {
	echo old >f
	run timeout 10 "$SNAPRUN" f sh -c 'echo new > "$1"' sh {}
	[ "$status" -eq 0 ]
	[ ! -e .f.snaprun.lock ]
}
