#!/usr/bin/env bats
# What CMD, another user or a hostile name beside FILE must not be able
# to make snaprun do.

load common
load fs_helper

@test "--root: a link CMD puts inside the private directory cannot redirect the commit" {
	mkdir -p R/sub out
	printf old > R/sub/db
	printf secret > out/db
	chmod 600 out/db
	run --separate-stderr sr --root R R/sub/db -- \
		sh -c 'rm -r "$1/sub" && ln -s "$2" "$1/sub"' sh {} "$T/out"
	expect_status 125
	one_error_line
	expect_content R/sub/db old
	expect_content out/db secret
	[ "$(stat -c %a out/db)" = 600 ]
	no_leftovers R/sub
}

@test "a snapshot CMD replaced by a hard link to another file is not committed" {
	printf old > f
	printf key > secret
	chmod 600 secret
	run --separate-stderr sr f sh -c 'ln -f "$2" "$1"' sh {} "$T/secret"
	expect_status 125
	one_error_line
	[[ $stderr == *"hard link"* ]]
	expect_content f old
	[ "$(stat -c %a secret)" = 600 ]
	[ "$(stat -c %h secret)" -eq 1 ]
	no_leftovers .
}

@test "another user's symlink in a sticky world-writable directory is not followed" {
	need_root "makes a link as another user"
	mkdir -m 1777 shared
	mkdir -m 700 mine
	printf private > mine/conf
	as_nobody ln -s "$T/mine/conf" shared/cache.db
	run --separate-stderr sr shared/cache.db sh -c 'printf replaced > "$1"' sh {}
	expect_status 125
	one_error_line
	[[ $stderr == *"symbolic link"* ]]
	expect_content mine/conf private
	[ -L shared/cache.db ]
	no_leftovers shared
	no_leftovers mine
}

@test "our own symlink in a sticky world-writable directory is followed" {
	mkdir -m 1777 shared
	printf old > target
	ln -s "$T/target" shared/link
	run sr shared/link sh -c 'printf new > "$1"' sh {}
	expect_status 0
	expect_content target new
	[ -L shared/link ]
}

@test "a FIFO where the lock file goes: 125 at once, no hang" {
	printf old > f
	mkfifo .f.snaprun.lock
	run --separate-stderr timeout 10 "$SNAPRUN" -n f sh -c 'printf new > "$1"' sh {}
	expect_status 125
	one_error_line
	[[ $stderr == *"not a regular file"* ]]
	expect_content f old
	run --separate-stderr timeout 10 "$SNAPRUN" --on-conflict=fail f sh -c 'printf new > "$1"' sh {}
	expect_status 125
	expect_content f old
	no_leftovers .
}

@test "set-id bits are dropped when the owner cannot be kept" {
	need_root "makes a file owned by another user"
	mkdir -m 777 pub
	printf old > pub/tool
	chown daemon:daemon pub/tool
	chmod 6775 pub/tool
	run as_nobody "$SNAPRUN" pub/tool sh -c 'printf new > "$1"' sh {}
	expect_status 0
	expect_content pub/tool new
	[ "$(stat -c %U pub/tool)" = nobody ]
	[ "$(stat -c %a pub/tool)" = 775 ]
}

@test "set-id bits stay when the owner is kept" {
	need_root "sets the owner"
	printf old > tool
	chown daemon:daemon tool
	chmod 6755 tool
	run sr tool sh -c 'printf new > "$1"' sh {}
	expect_status 0
	[ "$(stat -c %U:%G:%a tool)" = daemon:daemon:6755 ]
}

@test "-k keeps the snapshot of a FILE whose name is as long as names get" {
	n=$(printf 'k%.0s' $(seq 255))
	printf old > "$n"
	run --separate-stderr sr -k "$n" sh -c 'printf new > "$1"; exit 4' sh {}
	expect_status 4
	expect_content "$n" old
	kept=$(find . -maxdepth 1 -name '*.kept')
	[ -n "$kept" ]
	expect_content "$kept/$n" new
	[[ $stderr == *"$kept"* ]]
}

@test "--no-sync: a directory put in FILE's place during CMD is left whole" {
	printf old > f
	run --separate-stderr sr --no-sync f sh -c \
		'printf new > "$1"; rm "$2/f"; mkdir "$2/f"; printf precious > "$2/f/data"' sh {} "$T"
	expect_status 125
	one_error_line
	[ -d f ]
	expect_content f/data precious
	no_leftovers .
}

@test "a lock file made under umask 077 still lets other users commit" {
	need_root "runs as two users"
	mkdir -m 777 pub && cd pub
	printf old > f
	chmod 666 f
	(umask 077 && sr -x f true)
	[ "$(stat -c %a .f.snaprun.lock)" = 644 ]
	run --separate-stderr as_nobody "$SNAPRUN" f sh -c 'printf new > "$1"' sh {}
	expect_status 0
	expect_content f new
	run --separate-stderr as_nobody "$SNAPRUN" -x f sh -c 'printf newer > "$1"' sh {}
	expect_status 0
	expect_content f newer
}

@test "directories CMD leaves unreadable are removed, also for an unprivileged user" {
	need_root "runs as another user"
	mkdir -m 777 pub && cd pub
	printf old > f
	chmod 666 f
	run --separate-stderr as_nobody "$SNAPRUN" f sh -c \
		'mkdir "$SNAPRUN_ROOT/d" "$SNAPRUN_ROOT/e" && : > "$SNAPRUN_ROOT/d/x" &&
		 chmod 000 "$SNAPRUN_ROOT/d" && chmod 300 "$SNAPRUN_ROOT/e" && printf new > "$1"' sh {}
	expect_status 0
	[ -z "$stderr" ]
	expect_content f new
	no_leftovers .
}

@test "-n wins over -w: a held lock fails at once" {
	printf old > f
	sr -x f sleep 8 &
	holder=$!
	for _ in $(seq 50); do [ -n "$(leftovers .)" ] && break; sleep 0.05; done
	start=$(date +%s%N)
	run --separate-stderr sr -n -w 2 f true
	elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
	wait "$holder"
	expect_status 75
	one_error_line
	[ "$elapsed" -lt 5000 ] # the holder holds it for 8 s
}

@test "a FIFO as FILE is refused without being opened: a writer waiting on it stays blocked" {
	mkfifo fifo
	# this writer blocks until something opens the FIFO for reading
	sh -c 'echo data > fifo; echo released > writer.out' &
	writer=$!
	run --separate-stderr timeout 10 "$SNAPRUN" fifo true
	expect_status 125
	one_error_line
	sleep 0.2
	kill -0 "$writer"
	[ ! -e writer.out ]
	kill "$writer"
	no_leftovers .
}

@test "a file's snapshot that CMD turned into a directory is never committed, with or without a lock" {
	for opt in -x --on-conflict=fail --no-sync ''; do
		printf hello > f
		run --separate-stderr sr $opt f sh -c 'rm "$1" && mkdir "$1" && echo x > "$1/a"' sh {}
		expect_status 125
		one_error_line
		[[ $stderr == *"not a regular file"* ]]
		expect_content f hello
		no_leftovers .
	done
	# -f with FILE absent: the output is a file, never a directory
	run --separate-stderr sr -f --missing=empty nf sh -c 'rm "$SNAPRUN_ROOT/out/nf" && mkdir "$SNAPRUN_ROOT/out/nf"'
	expect_status 125
	one_error_line
	[ ! -e nf ]
	no_leftovers .
}

@test "a lock file that is a symlink or a FIFO, another user's, does not stop a default-mode commit" {
	need_root "makes files as another user"
	mkdir -m 1777 pub
	printf old > pub/f
	as_nobody ln -s /nonexistent pub/.f.snaprun.lock
	run --separate-stderr sr pub/f sh -c 'printf new > "$1"' sh {}
	expect_status 0
	expect_content pub/f new
	rm pub/.f.snaprun.lock
	as_nobody mkfifo pub/.f.snaprun.lock
	run --separate-stderr sr pub/f sh -c 'printf newer > "$1"' sh {}
	expect_status 0
	expect_content pub/f newer
	[ -p pub/.f.snaprun.lock ]
	no_leftovers pub
}

@test "a directory renamed inside DIR while it is copied: no partial tree is ever committed" {
	need_feature exchange
	need_strace fchown
	mkdir -p D/a
	for i in $(seq 1 60); do echo "$i" > "D/s$i"; done
	for i in $(seq 1 200); do echo "$i" > "D/a/f$i"; done
	# each file's copy is slowed (2 ms at its fchown): the copy is inside
	# D/a from 0-120 ms to 400-520 ms, whatever order readdir gives, and
	# the rename lands at 250 ms
	( sleep 0.25; mv D/a D/a2 ) 3>&- &
	mover=$!
	under_strace
	run --separate-stderr timeout 60 strace -f -o /dev/null \
		-e trace=fchown -e inject=fchown:delay_enter=2000 \
		"$SNAPRUN" D sh -c 'echo x > "$1/new"' sh {}
	wait "$mover"
	if [ "$status" -eq 0 ]; then
		# the rename missed the copy: what was committed is one whole
		# version, a or a2 with all 200 files, and CMD's file
		[ -e D/new ]
		[ "$(find D/a D/a2 -type f 2>/dev/null | wc -l)" -eq 200 ]
	else
		expect_status 125
		one_error_line
		[ ! -e D/new ]
	fi
	[ "$(ls D | grep -c '^s')" -eq 60 ]
	no_leftovers .
}
