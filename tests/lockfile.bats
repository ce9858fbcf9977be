#!/usr/bin/env bats
# --lock-file=PATH: the lock file to use instead of the one beside FILE.

load common
load fs_helper

# hold LOCKFILE: flock(1) holds LOCKFILE until "$T/go" appears.
hold() {
	flock "$1" sh -c 'echo > "$0/held"; until [ -e "$0/go" ]; do sleep 0.05; done' "$T" 3>&- &
	HOLDER=$!
	wait_for "$T/held"
}

release() {
	: > "$T/go"
	wait "$HOLDER"
}

@test "--lock-file: two -x runs on one lock file serialise, whatever their FILE" {
	mkdir locks
	echo a > f
	echo b > g
	hold locks/shared.lock
	run "$SNAPRUN" -x -n --lock-file=locks/shared.lock f sh -c 'echo x > "$1"' sh {}
	[ "$status" -eq 75 ]
	[ "$(cat f)" = a ]
	run "$SNAPRUN" -w 0.2 --lock-file="$T/locks/shared.lock" g true
	[ "$status" -eq 75 ]
	release
	# one run holds it while the other tries: the second is told so
	"$SNAPRUN" -x --lock-file=locks/shared.lock f sh -c \
		'echo > "$0/in"; until [ -e "$0/out" ]; do sleep 0.05; done; echo x > "$1"' "$T" {} &
	first=$!
	wait_for "$T/in"
	run "$SNAPRUN" -n --lock-file=locks/shared.lock g sh -c 'echo y > "$1"' sh {}
	[ "$status" -eq 75 ]
	[ "$(cat g)" = b ]
	: > "$T/out"
	wait "$first"
	[ "$(cat f)" = x ]
	run "$SNAPRUN" -n --lock-file=locks/shared.lock g sh -c 'echo y > "$1"' sh {}
	[ "$status" -eq 0 ]
	[ "$(cat g)" = y ]
}

@test "--lock-file: the lock file is made there, none beside FILE" {
	mkdir d run
	echo 0 > d/counter
	local mode
	for mode in -x --on-conflict=fail --on-conflict=retry --on-conflict=keep ""; do
		run "$SNAPRUN" $mode --lock-file=run/counter.lock d/counter \
			sh -c 'echo $(( $(cat "$1") + 1 )) > "$1"' sh {}
		[ "$status" -eq 0 ]
	done
	[ "$(cat d/counter)" = 5 ]
	[ -f run/counter.lock ]
	[ ! -e d/.counter.snaprun.lock ]
	[ -z "$(find d -name '*.snaprun*')" ]
	[ "$(stat -c %a run/counter.lock)" = 644 ]
}

@test "--lock-file: the default mode's commit waits for it" {
	echo old > f
	: > my.lock
	hold my.lock
	("$SNAPRUN" --lock-file=my.lock f sh -c 'echo new > "$1"; echo > "$0/ran"' "$T" {}
	 echo "$?" > "$T/rc") &
	runner=$!
	wait_for "$T/ran"
	wait_blocked my.lock || { release; wait "$runner"; false; }
	[ "$(cat f)" = old ]
	release
	wait "$runner"
	[ "$(cat "$T/rc")" = 0 ]
	[ "$(cat f)" = new ]
}

@test "--lock-file: a symbolic link or a non-file there is never used" {
	echo old > f
	ln -s target.lock link.lock
	run "$SNAPRUN" -x --lock-file=link.lock f sh -c 'echo new > "$1"' sh {}
	[ "$status" -eq 125 ]
	[[ $output == "snaprun: link.lock: "* ]]
	[ ! -e target.lock ]
	mkfifo fifo.lock
	run timeout 10 "$SNAPRUN" --lock-file=fifo.lock f sh -c 'echo new > "$1"' sh {}
	[ "$status" -eq 125 ]
	[ "$output" = "snaprun: fifo.lock: not a regular file" ]
	[ "$(cat f)" = old ]
	run "$SNAPRUN" -x --lock-file=nodir/x.lock f true
	[ "$status" -eq 125 ]
	[ "$output" = "snaprun: --lock-file: nodir: No such file or directory" ]
	run "$SNAPRUN" -x --lock-file= f true
	[ "$status" -eq 125 ]
	no_leftovers .
}

@test "--lock-file: another user's lock file in a sticky directory is refused" {
	need_root "makes a file of another user"
	need_cmd setpriv
	chmod 755 "$T"
	mkdir pub
	chmod 1777 pub
	setpriv --reuid=nobody --regid=nogroup --clear-groups touch pub/x.lock
	echo old > f
	run "$SNAPRUN" -x --lock-file=pub/x.lock f sh -c 'echo new > "$1"' sh {}
	[ "$status" -eq 125 ]
	[ "$output" = "snaprun: pub/x.lock: another user's file; remove it to lock here" ]
	[ "$(cat f)" = old ]
}
