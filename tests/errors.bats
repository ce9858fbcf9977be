load common
load fs_helper

# What snaprun refuses, and how it says so: one line, the right status,
# FILE untouched, nothing left behind.

# -------------------------------------------------------- CMD not runnable

@test "CMD not found: 127, one line on stderr" {
	printf old > f
	run -127 --separate-stderr sr f /nonexistent/dir/cmd {}
	one_error_line
	[[ $stderr == */nonexistent/dir/cmd* ]]
	# (a PATH without unreadable directories: those turn ENOENT into EACCES)
	PATH=/usr/bin:/bin run -127 --separate-stderr sr f snaprun-no-such-command-on-path {}
	one_error_line
	[[ $stderr == *snaprun-no-such-command-on-path* ]]
	expect_content f old
	no_leftovers .
}

# refuses_cmd STATUS ./NAME: with f holding "old", snaprun f ./NAME exits
# STATUS with one error line naming NAME; f is untouched, nothing is left.
refuses_cmd() {
	printf old > f
	run "-$1" --separate-stderr sr f "$2" {}
	one_error_line
	[[ $stderr == *"${2#./}"* ]]
	expect_content f old
	no_leftovers .
}

@test "CMD not executable: 126, one line on stderr" {
	printf '#!/bin/sh\nprintf new > "$1"\n' > notexec
	chmod 644 notexec
	refuses_cmd 126 ./notexec
}

@test "CMD is a directory: 126, one line on stderr" {
	mkdir adir
	refuses_cmd 126 ./adir
}

@test "CMD with a bad interpreter: 126 or 127, one line on stderr" {
	printf old > f
	printf '#!/nonexistent/interpreter\n' > badinterp
	chmod 755 badinterp
	status=0
	sr f ./badinterp {} 2>err || status=$?
	[ "$status" -eq 126 ] || [ "$status" -eq 127 ]
	stderr=$(cat err)
	one_error_line
	expect_content f old
	no_leftovers .
}

@test "CMD not found with a missing FILE creates nothing" {
	run -127 --separate-stderr sr new.db /nonexistent/cmd {}
	one_error_line
	[ ! -e new.db ]
	run -127 --separate-stderr sr --missing=empty new.db /nonexistent/cmd {}
	one_error_line
	[ ! -e new.db ]
	no_leftovers .
}

# ------------------------------------------------------------------ usage

@test "unknown options are refused with 125 and one line" {
	printf old > f
	for o in --bogus -Z --commit-onn=0; do
		run --separate-stderr sr "$o" f sh -c ': > ran' sh {}
		expect_status 125
		one_error_line
		[ ! -e ran ]
	done
	expect_content f old
	no_leftovers .
}

@test "an option missing its argument is refused with 125" {
	for o in -I -c --root --commit-on --missing; do
		run --separate-stderr sr "$o"
		expect_status 125
		one_error_line
	done
}

@test "missing CMD or FILE is refused with 125" {
	printf old > f
	run --separate-stderr sr f
	expect_status 125
	one_error_line
	run --separate-stderr sr f --
	expect_status 125
	one_error_line
	run --separate-stderr sr
	expect_status 125
	one_error_line
	expect_content f old
	no_leftovers .
}

@test "an empty FILE argument is refused with 125" {
	run --separate-stderr sr '' true
	expect_status 125
	one_error_line
}

@test "options after FILE belong to CMD" {
	printf old > f
	run sr f echo -v --keep {}
	expect_status 0
	[[ ${lines[0]} == "-v --keep "*/f ]]
}

# ------------------------------------------------------------ not regular

@test "FILE is a FIFO: 125 at once, without opening it and hanging" {
	mkfifo p
	run --separate-stderr timeout 10 "$SNAPRUN" p sh -c ': > ran' sh {}
	expect_status 125
	one_error_line
	[ ! -e ran ]
	[ -p p ]
	no_leftovers .
}

@test "FILE is a character device: 125" {
	if [ "$(id -u)" -eq 0 ]; then
		# a private node, so that a broken snaprun cannot touch /dev
		mknod nulldev c 1 3 2>/dev/null || skip "cannot make a device node here"
		dev=nulldev
	else
		dev=/dev/null
	fi
	run --separate-stderr timeout 10 "$SNAPRUN" "$dev" sh -c ': > ran' sh {}
	expect_status 125
	one_error_line
	[ ! -e ran ]
	[ -c "$dev" ]
	no_leftovers .
}

@test "FILE is a symlink to a device: 125" {
	need_root "mknod"
	mknod nulldev c 1 3 2>/dev/null || skip "cannot make a device node here"
	ln -s nulldev link
	run --separate-stderr timeout 10 "$SNAPRUN" link sh -c ': > ran' sh {}
	expect_status 125
	one_error_line
	[ ! -e ran ]
	[ -L link ] && [ -c nulldev ]
	no_leftovers .
}

@test "FILE is a unix socket: 125" {
	need_cmd python3
	python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' sock ||
		skip "cannot make a unix socket"
	[ -S sock ]
	run --separate-stderr timeout 10 "$SNAPRUN" sock sh -c ': > ran' sh {}
	expect_status 125
	one_error_line
	[ ! -e ran ]
	[ -S sock ]
	no_leftovers .
}

@test "FILE below a regular file (ENOTDIR): 125, nothing created" {
	printf x > plain
	run --separate-stderr sr plain/sub/f.db sh -c ': > ran' sh {}
	expect_status 125
	one_error_line
	[ ! -e ran ]
	expect_content plain x
}

@test "error messages stay one line when FILE's name contains a newline" {
	n=$'bad\nname'
	mkfifo "$n"
	run --separate-stderr sr "$n" sh -c ': > ran' sh {}
	expect_status 125
	one_error_line
	[ ! -e ran ]
	m=$'dir\nx/file.db'
	run --separate-stderr sr --missing=error "$m" sh -c ': > ran' sh {}
	expect_status 125
	one_error_line
	[ ! -e ran ]
	mkfifo "fifo"$'\n'"x"
	run --separate-stderr timeout 10 "$SNAPRUN" "fifo"$'\n'"x" true
	expect_status 125
	one_error_line
}

@test "the hard-link warning stays one line when FILE's name contains a newline" {
	n=$'hard\nlink'
	printf old > "$n"
	ln "$n" other
	run --separate-stderr sr "$n" sh -c 'printf new > "$1"' sh {}
	expect_status 0
	one_error_line
	expect_content "$n" new
	expect_content other old
}

# ------------------------------------------------------------ commit checks

@test "CMD deletes the snapshot: 125, FILE unchanged" {
	printf old > f
	run --separate-stderr sr f sh -c 'rm "$1"' sh {}
	expect_status 125
	one_error_line
	expect_content f old
	no_leftovers .
}

@test "CMD replaces the snapshot with a symlink: 125, FILE unchanged and not a link" {
	printf old > f
	printf evil > evil
	run --separate-stderr sr f sh -c 'rm "$1" && ln -s "$PWD/evil" "$1"' sh {}
	expect_status 125
	one_error_line
	[ ! -L f ]
	expect_content f old
	expect_content evil evil
	no_leftovers .
}

@test "CMD replaces the snapshot with a dangling symlink: 125, nothing committed" {
	printf old > f
	run --separate-stderr sr f sh -c 'rm "$1" && ln -s /nonexistent/target "$1"' sh {}
	expect_status 125
	one_error_line
	[ ! -L f ]
	expect_content f old
	no_leftovers .
}

@test "CMD replaces the snapshot with a directory: 125, FILE unchanged" {
	printf old > f
	run --separate-stderr sr f sh -c 'rm "$1" && mkdir "$1" && : > "$1/x"' sh {}
	expect_status 125
	one_error_line
	expect_content f old
	no_leftovers .
}

@test "CMD puts a symlink where an absent FILE's snapshot would be: 125, nothing created" {
	printf evil > evil
	run --separate-stderr sr new.db sh -c 'ln -s "$PWD/evil" "$1"' sh {}
	expect_status 125
	one_error_line
	[ ! -e new.db ] && [ ! -L new.db ]
	expect_content evil evil
	no_leftovers .
}

# refuses_hot_sidecar SUFFIX: a CMD that leaves a non-empty BASENAME-SUFFIX
# beside the snapshot is refused with 125 and a reason naming it; FILE and
# the directory are as before.
refuses_hot_sidecar() {
	printf old > f.db
	run --separate-stderr sr f.db sh -c 'printf new > "$1"; printf hot > "$1-'"$1"'"' sh {}
	expect_status 125
	one_error_line
	[[ $stderr == *-"$1"* ]]
	expect_content f.db old
	no_leftovers .
	[ ! -e "f.db-$1" ]
}

@test "a non-empty BASENAME-journal beside the snapshot is refused with 125 and the reason" {
	refuses_hot_sidecar journal
}

@test "a non-empty BASENAME-wal beside the snapshot is refused with 125 and the reason" {
	refuses_hot_sidecar wal
}

@test "a refused sidecar also applies with --root" {
	mkdir -p R/3.11
	printf old > R/3.11/cache.db
	run --separate-stderr sr --root R R/3.11/cache.db sh -c 'printf new > {}/3.11/cache.db; printf hot > {}/3.11/cache.db-journal'
	expect_status 125
	one_error_line
	[[ $stderr == *-journal* ]]
	expect_content R/3.11/cache.db old
	no_leftovers R/3.11
}

@test "a hot sidecar beside a newly created FILE is refused and nothing is created" {
	run --separate-stderr sr new.db sh -c 'printf new > "$1"; printf hot > "$1-wal"' sh {}
	expect_status 125
	one_error_line
	[[ $stderr == *-wal* ]]
	[ ! -e new.db ] && [ ! -e new.db-wal ]
	no_leftovers .
}

@test "empty -wal and -journal sidecars are fine" {
	printf old > f.db
	run --separate-stderr sr f.db sh -c 'printf new > "$1"; : > "$1-wal"; : > "$1-journal"; : > "$1-shm"' sh {}
	expect_status 0
	expect_content f.db new
	[ ! -e f.db-wal ] && [ ! -e f.db-journal ] && [ ! -e f.db-shm ]
	no_leftovers .
}

@test "a sidecar refusal with --keep keeps the snapshot and the sidecar" {
	printf old > f.db
	run --separate-stderr sr --keep f.db sh -c 'printf new > "$1"; printf hot > "$1-wal"' sh {}
	expect_status 125
	expect_content f.db old
	kept=$(find . -maxdepth 1 -name '.f.db.snaprun.*.kept')
	[ -n "$kept" ] && [ -d "$kept" ]
	expect_content "$kept/f.db-wal" hot
	[[ $stderr == *-wal* ]]
	[[ $stderr == *"$(basename "$kept")"* ]]
}

@test "a hot SQLite rollback journal left by a killed sqlite3 is refused" {
	need_cmd sqlite3
	sqlite3 f.db 'PRAGMA journal_mode=DELETE; CREATE TABLE t(x); INSERT INTO t VALUES(1);' >/dev/null
	cp f.db ref.db
	# a transaction too big for the page cache spills, so the journal is
	# written; then sqlite3 dies without rolling back.
	mkfifo sqlin
	run --separate-stderr sr f.db sh -c '
		exec 2>/dev/null
		sqlite3 "$1" < sqlin > /dev/null &
		p=$!
		exec 3> sqlin
		echo "PRAGMA cache_size=10; BEGIN; CREATE TABLE big(y); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 20000) INSERT INTO big SELECT randomblob(200) FROM c;" >&3
		i=0
		while [ ! -s "$1-journal" ] && [ $i -lt 250 ]; do sleep 0.02; i=$((i+1)); done
		sleep 0.1
		kill -KILL $p
		wait $p
		exec 3>&-
		[ -s "$1-journal" ] || exit 99
		exit 0' sh {}
	[ "$status" -ne 99 ] || skip "sqlite3 did not leave a journal in time"
	expect_status 125
	one_error_line
	[[ $stderr == *-journal* ]]
	cmp f.db ref.db
	no_leftovers .
}

@test "an empty placeholder is refused with 125" {
	printf old > f
	run --separate-stderr sr -I '' f sh -c ': > ran' sh {}
	expect_status 125
	one_error_line
	[ ! -e ran ]
}

@test "FILE with a trailing slash that names a regular file: 125" {
	printf old > f
	run --separate-stderr sr f/ sh -c ': > ran' sh {}
	expect_status 125
	one_error_line
	[ ! -e ran ]
	expect_content f old
	no_leftovers .
}

@test "FILE is / or . : 125, nothing created" {
	for f in / . ..; do
		run --separate-stderr sr "$f" sh -c ': > "$0/ran"' "$T"
		expect_status 125
		one_error_line
		[ ! -e ran ]
	done
	no_leftovers .
	no_leftovers /
}

# ------------------------------------------- messages that say what to do

@test "typo/../f with typo missing: ENOENT as the kernel gives, nothing made" {
	printf old > f
	run --separate-stderr sr typo/../f sh -c 'printf new > "$1"' sh {}
	expect_status 125
	one_error_line
	[[ $stderr == *"typo/../f: No such file or directory"* ]]
	[ ! -e typo ]
	expect_content f old
	# deeper, and after a link: the same
	run --separate-stderr sr a/b/../../f true
	expect_status 125
	[ ! -e a ]
	no_leftovers .
}

@test "a FILE whose directory is not writable: the directory named, and that snaprun writes there" {
	need_nobody
	mkdir ro
	printf old > ro/f
	chmod 755 ro
	for opt in "" -x; do
		run --separate-stderr as_nobody "$SNAPRUN" $opt ro/f true
		expect_status 125
		one_error_line
		[[ $stderr == "snaprun: ro: snaprun needs to write in FILE's directory"*"Permission denied" ]]
	done
	expect_content ro/f old
	no_leftovers ro
}

@test "a missing --root directory is named with the option, and what was made for FILE goes" {
	run --separate-stderr sr --root nowhere new/f true
	expect_status 125
	one_error_line
	[ "$stderr" = "snaprun: --root: nowhere: No such file or directory" ]
	[ ! -e new ]
}

@test "bad option values are named with their option: --commit-on taking FILE, 1,,2, +1, a backward range" {
	printf old > f
	run --separate-stderr sr --commit-on f -- true
	expect_status 125
	one_error_line
	[[ $stderr == *"--commit-on: 'f' is not a list of exit statuses"* ]]
	for v in 1,,2 ,1 1, +1 ' 1' 1-+2 256; do
		run --separate-stderr sr -c "$v" f sh -c ': > ran'
		expect_status 125
		one_error_line
		[[ $stderr == *"--commit-on: '$v'"* ]]
		[ ! -e ran ]
	done
	run --separate-stderr sr -c 2-1 f true
	expect_status 125
	[[ $stderr == *"'2-1': a range runs backwards"* ]]
	run --separate-stderr sr --retries=+3 f true
	expect_status 125
	[[ $stderr == *"--retries: '+3' is not a number"* ]]
	expect_content f old
}

@test "--on-conflict=retry giving up says after how many tries" {
	printf 0 > f
	# every try changes the snapshot and, behind it, FILE
	run --separate-stderr sr --on-conflict=retry --retries=2 f sh -c 'printf new > "$1"; printf x >> f' sh {}
	expect_status 75
	one_error_line
	[[ $stderr == *"changed by another run on each of 3 tries (--retries=2)"* ]]
	expect_content f 0xxx
	no_leftovers .
}

@test "-v: a wait for the lock is announced once; keep says that it dropped the result" {
	printf old > f
	: > .f.snaprun.lock
	perl -e 'open(my $l, "<", ".f.snaprun.lock") or die; flock($l, 2) or die;
		open(my $h, ">", "held") or die; print $h "x"; close $h; sleep 30' 3>&- &
	holder=$!
	wait_nonempty held 10
	run --separate-stderr sr -v -w 0.3 f true
	kill "$holder" 2>/dev/null || true
	wait "$holder" 2>/dev/null || true
	expect_status 75
	[ "$(grep -c 'waiting for the lock' <<<"$stderr")" -eq 1 ]
	run --separate-stderr sr -v --on-conflict=keep f sh -c 'printf new > "$1"; printf other > f.tmp; mv f.tmp f' sh {}
	expect_status 0
	expect_content f other
	[[ $stderr == *"this run's result dropped (--on-conflict=keep)"* ]]
	# without -v, keep stays silent
	run --separate-stderr sr --on-conflict=keep f sh -c 'printf new > "$1"; printf again > f.tmp; mv f.tmp f' sh {}
	expect_status 0
	[ -z "$stderr" ]
}
