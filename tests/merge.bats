#!/usr/bin/env bats
# --merge=SCRIPT: a run whose FILE (or DIR) another run committed meanwhile
# merges the two under the commit lock, instead of losing either.  Every
# conflict here is made, not hoped for: run A's CMD stalls (hold) until run
# B has committed.

load common
load conc_helper

setup_file() {
	export BATS_NO_PARALLELIZE_WITHIN_FILE=true
}

# make_hold: $T/hold NAME, for a CMD: marks NAME.started, then waits (at
# most 10 s) for NAME.go, failing without it.
make_hold() {
	cat >"$T/hold" <<-'EOF'
	#!/bin/sh
	: >"$T/$1.started"
	i=0
	while [ ! -e "$T/$1.go" ] && [ "$i" -lt 1000 ]; do
		sleep 0.01
		i=$((i + 1))
	done
	[ -e "$T/$1.go" ]
	EOF
	chmod +x "$T/hold"
	export T
}

# start_held NAME ARG...: `snaprun ARG...` in the background, whose CMD
# calls "$T/hold NAME"; returns once it holds.  Its stderr in NAME.err.
start_held() {
	local name=$1
	shift
	make_hold
	timeout 30 "$SNAPRUN" "$@" 2>"$name.err" 3>&- &
	HELD=$!
	wait_for "$name.started"
}

# release NAME STATUS: let NAME go; the held run ends with STATUS.
release() {
	local st=0
	touch "$1.go"
	wait "$HELD" || st=$?
	if [ "$st" -ne "$2" ]; then
		echo "the held run exited $st, expected $2:" >&2
		cat "$1.err" >&2
		return 1
	fi
}

# 3-way text merge, as the man page prints it.
GIT_MERGE='git merge-file "$1" "$3" "$2"'

lines() {
	printf '%s\n' "$@"
}

# ---------------------------------------------------------------- usage

@test "--merge: with --lock, -w, -n or another --on-conflict mode, empty, or merge without it: 125, naming both, nothing run" {
	echo old >f
	for opts in "--merge=true -x" "--merge=true -w 5" "--merge=true -n" \
		"--merge=true --on-conflict=overwrite" "--merge=true --on-conflict=keep" \
		"--on-conflict=fail --merge=true" "--merge=true --on-conflict=retry" \
		"--merge=" "--on-conflict=merge"; do
		# shellcheck disable=SC2086
		run "$SNAPRUN" $opts f -- sh -c 'echo new > {}; : > ran'
		[ "$status" -eq 125 ] || { echo "$opts: exit $status" >&2; false; }
		case $opts in
		*-x* | *-w* | *-n*) [[ "$output" == *--merge*--lock* ]] ;;
		*--on-conflict=merge) [[ "$output" == *--on-conflict=merge*--merge=SCRIPT* ]] ;;
		*--on-conflict*) [[ "$output" == *--merge*--on-conflict=* ]] ;;
		*) [[ "$output" == *"--merge: the script is empty"* ]] ;;
		esac
		[ "$(cat f)" = old ] && [ ! -e ran ]
	done
	no_leftovers .
	"$SNAPRUN" --on-conflict=merge --merge=true f -- true
}

@test "--merge: FILE unchanged since the snapshot is a plain commit; SCRIPT does not run" {
	echo old >f
	run "$SNAPRUN" -v --merge=': > merged; exit 1' f -- sh -c 'echo new > {}'
	[ "$status" -eq 0 ]
	[ "$(cat f)" = new ] && [ ! -e merged ]
	[[ "$output" != *merging* ]]
	no_leftovers .
}

# ---------------------------------------------------------------- text

@test "--merge: git merge-file joins two concurrent edits of different lines; \$3 is the base" {
	need_cmd git
	lines a b c d e >f
	start_held A --merge='cp "$3" base.seen; '"$GIT_MERGE" f -- \
		sh -c 'sed -i s/^b/B/ "$1" && "$T/hold" A' sh {}
	"$SNAPRUN" f -- sed -i s/^d/D/ {}
	[ "$(cat f)" = "$(lines a b c D e)" ]
	release A 0
	[ "$(cat f)" = "$(lines a B c D e)" ]
	[ "$(cat base.seen)" = "$(lines a b c d e)" ]
	no_leftovers .
}

@test "--merge: a conflicting text merge exits 75, FILE is the other run's version; -k keeps ours" {
	need_cmd git
	for keep in "" -k; do
		lines a b c >f
		rm -f A.*
		start_held A $keep --merge="$GIT_MERGE" f -- \
			sh -c 'sed -i s/^b/ours/ "$1" && "$T/hold" A' sh {}
		"$SNAPRUN" f -- sed -i s/^b/theirs/ {}
		release A 75
		[ "$(cat f)" = "$(lines a theirs c)" ]
		grep -q 'merge failed (exit 1); nothing committed' A.err
		if [ -z "$keep" ]; then
			no_leftovers .
			continue
		fi
		grep -q 'snapshot kept: ' A.err
		kept=$(sed -n 's/^snaprun: snapshot kept: //p' A.err)
		grep -qx ours "$kept"
		rm -rf ./.f.snaprun.*.kept
	done
}

@test "--merge: sort -u joins two sorted lists, in either order of commit" {
	for order in 1 2; do
		lines apple kiwi >f
		rm -f A.*
		if [ "$order" = 1 ]; then mine=cherry other=banana; else mine=banana other=cherry; fi
		start_held A --merge='sort -u "$1" "$2" -o "$1"' f -- \
			sh -c 'echo '"$mine"' >> "$1" && sort -o "$1" "$1" && "$T/hold" A' sh {}
		"$SNAPRUN" --merge='sort -u "$1" "$2" -o "$1"' f -- sh -c 'echo '"$other"' >> {}; sort -o {} {}'
		release A 0
		[ "$(cat f)" = "$(lines apple banana cherry kiwi)" ]
	done
	no_leftovers .
}

# ---------------------------------------------------------------- SQLite

# db_rows DB: the rows of table r, sorted, on one line.
db_rows() {
	python3 -c 'import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print(" ".join(sorted(r[0] for r in db.execute("select v from r"))))' "$1"
}

db_ok() {
	[ "$(python3 -c 'import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute("pragma integrity_check").fetchone()[0])' "$1")" = ok ]
}

# PY_ADD ROW DB and PY_MERGE OURS THEIRS: with python3's sqlite3.
PY_ADD='import sqlite3, sys
db = sqlite3.connect(sys.argv[2])
db.execute("insert into r values (?)", (sys.argv[1],))
db.commit()
db.close()'
PY_MERGE='import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("attach ? as t", (sys.argv[2],))
db.execute("insert or ignore into main.r select * from t.r")
db.commit()
db.close()'
export PY_ADD PY_MERGE

@test "--merge: two runs each adding a row with the sqlite3 CLI, committed in either order: both rows kept" {
	need_cmd sqlite3
	local merge='sqlite3 "$1" "ATTACH '"'"'$2'"'"' AS t; INSERT OR IGNORE INTO main.r SELECT * FROM t.r;"'
	for order in 1 2; do
		rm -f db A.*
		sqlite3 db 'CREATE TABLE r (v TEXT PRIMARY KEY); INSERT INTO r VALUES ("base");'
		if [ "$order" = 1 ]; then mine=x other=y; else mine=y other=x; fi
		start_held A --merge="$merge" db -- \
			sh -c 'sqlite3 "$1" "INSERT INTO r VALUES ('"'$mine'"')" && "$T/hold" A' sh {}
		"$SNAPRUN" --merge="$merge" db -- sqlite3 {} "INSERT INTO r VALUES ('$other')"
		release A 0
		[ "$(db_rows db)" = "base x y" ]
		db_ok db
	done
	no_leftovers .
}

@test "slow: --merge: two runs each adding a row with python3's sqlite3, committed in either order: both rows kept" {
	for order in 1 2; do
		rm -f db A.*
		python3 -c 'import sqlite3; d = sqlite3.connect("db"); d.execute("create table r (v text primary key)"); d.execute("insert into r values (\"base\")"); d.commit()'
		if [ "$order" = 1 ]; then mine=x other=y; else mine=y other=x; fi
		start_held A --merge='python3 -c "$PY_MERGE" "$1" "$2"' db -- \
			sh -c 'python3 -c "$PY_ADD" '"$mine"' "$1" && "$T/hold" A' sh {}
		PY_ADD=$PY_ADD "$SNAPRUN" --merge='python3 -c "$PY_MERGE" "$1" "$2"' db -- \
			sh -c 'python3 -c "$PY_ADD" '"$other"' {}'
		release A 0
		[ "$(db_rows db)" = "base x y" ]
		db_ok db
	done
	no_leftovers .
}

@test "slow: --merge: 8 concurrent runs, each adding a unique row: all 8 rows, integrity ok, 7 merges" {
	local i pids=()
	make_hold
	python3 -c 'import sqlite3; d = sqlite3.connect("db"); d.execute("create table r (v text primary key)"); d.commit()'
	# Every run has taken its snapshot (and added its row) before any
	# commits: each commit but the first finds db changed.
	for i in 1 2 3 4 5 6 7 8; do
		timeout 60 "$SNAPRUN" -v --merge='python3 -c "$PY_MERGE" "$1" "$2"' db -- \
			sh -c 'python3 -c "$PY_ADD" row'"$i"' "$1" && "$T/hold" R'"$i" sh {} \
			2>"err.$i" 3>&- &
		pids+=($!)
	done
	for i in 1 2 3 4 5 6 7 8; do wait_for "R$i.started"; done
	for i in 1 2 3 4 5 6 7 8; do touch "R$i.go"; done
	wait_all "${pids[@]}"
	[ -z "$FAILED" ] || { echo "failed: $FAILED" >&2; cat err.* >&2; false; }
	[ "$(db_rows db)" = "row1 row2 row3 row4 row5 row6 row7 row8" ]
	db_ok db
	[ "$(cat err.* | grep -c 'merging')" -eq 7 ]
	no_leftovers .
}

# ---------------------------------------------------------------- isolation

@test "--merge: SCRIPT gets private copies (\$1, \$2, \$3 inside the private directory), never the live path" {
	echo old >f
	echo caller-input >in
	make_hold
	timeout 30 "$SNAPRUN" --merge='printf "%s\n" "$0" "$1" "$2" "$3" > args; cat > stdin.seen' f -- \
		sh -c 'echo ours > "$1" && "$T/hold" A' sh {} <in 2>A.err 3>&- &
	HELD=$!
	wait_for A.started
	"$SNAPRUN" f -- sh -c 'echo theirs > {}'
	release A 0
	[ "$(sed -n 1p args)" = snaprun-merge ]
	priv=$(sed -n 2p args)
	priv=${priv%/f}
	[[ "$priv" == ./.f.snaprun.?????? ]]
	[[ "$(sed -n 3p args)" == "$priv"/.theirs.*/f ]]
	[[ "$(sed -n 4p args)" == "$priv"/.base.*/f ]]
	# stdin is /dev/null, not the caller's
	[ -e stdin.seen ] && [ ! -s stdin.seen ]
	no_leftovers .
}

# merge_refused TARGET STATUS SCRIPT: f (or the tree d) is "theirs",
# committed by another run while run A, --merge=SCRIPT, held; A ends with
# STATUS.
merge_refused() {
	rm -f A.*
	start_held A --merge="$3" "$1" -- \
		sh -c 'if test -d "$1"; then echo o > "$1/o"; else echo ours > "$1"; fi; "$T/hold" A' sh {}
	"$SNAPRUN" "$1" -- sh -c 'test -d {} && echo 2 > {}/b || echo theirs > {}'
	release A "$2"
}

@test "--merge: a SCRIPT that writes into \$2 (theirs) changes nothing live" {
	echo old >f
	merge_refused f 75 'echo scribbled > "$2"; exit 1'
	[ "$(cat f)" = theirs ]
	no_leftovers .
}

@test "--merge: a SCRIPT that writes into \$2 (theirs) changes nothing live, for a directory" {
	need_feature exchange
	mkdir d && echo 1 >d/a
	merge_refused d 75 'echo scribbled > "$2/new"; rm "$2/a"; exit 1'
	[ "$(ls d)" = "$(lines a b)" ] && [ "$(cat d/a)" = 1 ]
	no_leftovers .
}

@test "--merge: SCRIPT's stdout goes to stderr; CMD's stdout stays clean" {
	echo old >f
	make_hold
	timeout 30 "$SNAPRUN" --merge='echo merge-noise; cp "$2" "$1"' f -- \
		sh -c 'echo cmd-out; echo ours > "$1" && "$T/hold" A' sh {} >A.out 2>A.err 3>&- &
	HELD=$!
	wait_for A.started
	"$SNAPRUN" f -- sh -c 'echo theirs > {}'
	release A 0
	[ "$(cat A.out)" = cmd-out ]
	grep -qx merge-noise A.err
	[ "$(cat f)" = theirs ]
}

@test "--merge: a plain command name gets ours, theirs and base as its arguments" {
	mkdir bin
	printf '#!/bin/sh\nprintf "%%s\\n" "$#" >"$T/argc"\ncat "$2" >>"$1"\n' >bin/joiner
	chmod +x bin/joiner
	echo old >f
	PATH=$T/bin:$PATH start_held A --merge=joiner f -- \
		sh -c 'echo ours > "$1" && "$T/hold" A' sh {}
	"$SNAPRUN" f -- sh -c 'echo theirs > {}'
	release A 0
	[ "$(cat argc)" = 3 ]
	[ "$(cat f)" = "$(lines ours theirs)" ]
}

# ---------------------------------------------------------------- refused

@test "--merge: a SCRIPT that leaves \$1 a symlink, or removes it, is refused (125), nothing committed" {
	for how in 'ln -sf "$2" "$1"' 'rm "$1"'; do
		echo old >f
		merge_refused f 125 "$how"
		grep -q 'nothing committed' A.err
		[ ! -L f ] && [ "$(cat f)" = theirs ]
	done
	no_leftovers .
}

@test "--merge: a SCRIPT that puts a FIFO into the tree is refused (125), nothing committed" {
	need_feature exchange
	mkdir d && echo 1 >d/a
	merge_refused d 125 'mkfifo "$1/fifo"'
	grep -q 'fifo: in the new tree, not a regular file' A.err
	[ "$(ls d)" = "$(lines a b)" ]
	no_leftovers .
}

# ---------------------------------------------------------------- modes

@test "--merge: a directory (BASE is empty), with --no-sync and -c" {
	need_feature exchange
	mkdir d && echo 1 >d/a
	start_held A --no-sync -c 0,3 --merge='[ -z "$3" ] && cp -Rn "$2"/. "$1"/' d -- \
		sh -c 'echo ours > "$1/ours"; "$T/hold" A && exit 3' sh {}
	"$SNAPRUN" d -- sh -c 'echo theirs > {}/theirs'
	release A 3
	[ "$(ls d)" = "$(lines a ours theirs)" ]
	no_leftovers .
}

@test "--merge: a filter's output is \$1" {
	lines b >f
	start_held A -f --merge='sort -u "$1" "$2" -o "$1"' f -- \
		sh -c 'cat; echo a; "$T/hold" A' sh
	"$SNAPRUN" -f f -- sh -c 'cat; echo c'
	release A 0
	[ "$(cat f)" = "$(lines a b c)" ]
	no_leftovers .
}

@test "--merge: with --root, \$1 is the file below the private root" {
	mkdir -p cache/3.11
	echo old >cache/3.11/f
	start_held A --root cache --merge='cat "$2" >> "$1"; echo "$1" > "$T/ours.path"' cache/3.11/f -- \
		sh -c 'echo ours > "$1/3.11/f" && "$T/hold" A' sh {}
	"$SNAPRUN" cache/3.11/f -- sh -c 'echo theirs > {}'
	release A 0
	[ "$(cat cache/3.11/f)" = "$(lines ours theirs)" ]
	[[ "$(cat ours.path)" == cache/3.11/.f.snaprun.??????/3.11/f ]]
	no_leftovers cache/3.11
}

# held_merge SCRIPT: f is "theirs", committed by another run while run A
# (pid HELD, --merge=SCRIPT) held; A is merging, its SCRIPT has made
# M.started.
held_merge() {
	echo old >f
	make_hold
	# SIGINT at its default, as a background job of a script has it ignored
	env --default-signal=INT "${ALARM[@]}" 30 "$SNAPRUN" --merge="$1" f -- \
		sh -c 'echo ours > "$1" && "$T/hold" A' sh {} 2>A.err 3>&- &
	HELD=$!
	wait_for A.started
	"$SNAPRUN" f -- sh -c 'echo theirs > {}'
	touch A.go
	wait_for M.started
}

@test "--merge: another run's commit during a held merge waits for it (the merge is under the commit lock)" {
	held_merge '"$T/hold" M && cat "$2" >> "$1"'
	# C commits in the default mode: it joins the lock and waits, as the
	# kernel's table of locks shows.
	timeout 30 "$SNAPRUN" f -- sh -c 'echo third > {}' 3>&- &
	c=$!
	ino=$(stat -c %i .f.snaprun.lock)
	for i in $(seq 1000); do
		! grep -q -- "-> FLOCK .*:$ino " /proc/locks || break
		sleep 0.01
	done
	grep -q -- "-> FLOCK .*:$ino " /proc/locks
	[ "$(cat f)" = theirs ]
	touch M.go
	st=0
	wait "$HELD" || st=$?
	[ "$st" -eq 0 ]
	wait "$c"
	[ "$(cat f)" = third ]
}

# ---------------------------------------------------------------- signals

@test "--merge: SIGINT during the merge: SCRIPT gets it, nothing committed, snaprun dies by SIGINT" {
	held_merge 'trap "echo got > \"\$T/int.seen\"; exit 1" INT; : > "$T/M.started"; while :; do sleep 0.01; done'
	kill -INT "$HELD"
	st=0
	wait "$HELD" || st=$?
	[ "$st" -eq 130 ]
	[ "$(cat f)" = theirs ]
	[ "$(cat int.seen)" = got ]
	no_leftovers .
}

# cleaned DIR: a cleanup (--clean, or an ordinary run) leaves nothing
# beside f, once the orphaned SCRIPT of a killed run is gone (it holds the
# private directory's lock until then); at most 10 s.
cleaned() {
	local i
	for i in $(seq 200); do
		if [ $((i % 2)) = 1 ]; then
			"$SNAPRUN" --clean f
		else
			"$SNAPRUN" --no-sync f -- true
		fi
		[ -n "$(leftovers .)" ] || return 0
		sleep 0.05
	done
	no_leftovers .
}

@test "slow: --merge: SIGKILL during the merge (at its start, mid-write, or after it at a random instant): FILE is theirs or merged, never partial; leftovers cleaned" {
	local it phase st old=0 merged=0 pid
	make_hold
	for it in $(seq 1 12); do
		phase=$((it % 3))
		echo base >f
		rm -f A.* M.*
		# phase 0: killed before SCRIPT touches $1; 1: when it has
		# written half of it; 2: after it exited 0, 0-30 ms later.
		"${ALARM[@]}" 30 "$SNAPRUN" --merge='
			[ '"$phase"' = 0 ] && : > "$T/M.at" && "$T/hold" M
			printf "theirs\n" > "$1"
			[ '"$phase"' = 1 ] && : > "$T/M.at" && "$T/hold" M
			printf "ours\n" >> "$1"
			: > "$T/M.done"' f -- \
			sh -c 'echo ours > "$1" && "$T/hold" A' sh {} 2>A.err 3>&- &
		pid=$!
		wait_for A.started
		"$SNAPRUN" f -- sh -c 'echo theirs > {}'
		touch A.go
		if [ "$phase" = 2 ]; then
			wait_for M.done
			sleep "0.0$((RANDOM % 31 / 10))$((RANDOM % 10))"
		else
			wait_for M.at
		fi
		kill -9 "$pid" 2>/dev/null || true
		st=0
		wait "$pid" || st=$?
		touch M.go
		[ "$st" -eq 137 ] || [ "$phase" = 2 ] || { echo "iteration $it: exit $st" >&2; false; }
		[ -f f ] && [ ! -L f ]
		case $(cat f) in
		theirs) old=$((old + 1)) ;;
		"$(lines theirs ours)")
			[ "$phase" = 2 ] || { echo "iteration $it (phase $phase): merged" >&2; false; }
			merged=$((merged + 1))
			;;
		*) echo "iteration $it (phase $phase): f is neither version:" >&2; cat f >&2; false ;;
		esac
		[ "$st" -ne 0 ] || [ "$(cat f)" = "$(lines theirs ours)" ]
		cleaned
		case $(cat f) in theirs | "$(lines theirs ours)") ;; *) false ;; esac
	done
	note "12 SIGKILLs during merges: FILE theirs $old, merged $merged; all cleaned"
}
