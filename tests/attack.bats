#!/usr/bin/env bats
# Issue 8, items 1-6: SQLite journals beside FILE, leftovers others plant,
# a re-pointed directory, default ACLs, read-only FILE's xattrs, --root rebuilds.

load common
load fs_helper

teardown() {
	unmount_all
}

# none_left DIR: like no_leftovers, but a binary that made thousands of
# directories is reported by their number, not their names.
none_left() {
	local n
	n=$(leftovers "$1" | wc -l)
	if [ "$n" -ne 0 ]; then
		printf '%s snaprun directories left in %s, such as:\n%s\n' \
			"$n" "$1" "$(leftovers "$1" | head -3)" >&2
		return 1
	fi
}

# not_in FILE ERE: fail, showing the lines, if FILE has a line matching ERE.
not_in() {
	if grep -En -- "$2" "$1" >&2; then
		printf '(those lines of %s match %s)\n' "$1" "$2" >&2
		return 1
	fi
}


# ---------------------------------------------- 1. SQLite journal beside FILE

@test "a non-empty FILE-wal or FILE-journal beside FILE is refused before CMD runs" {
	# control: empty sidecars mean a cleanly closed database
	printf old > db
	: > db-wal
	: > db-journal
	run --separate-stderr sr db sh -c 'printf new > "$1"' sh {}
	expect_status 0
	expect_content db new
	for side in wal journal; do
		rm -f db-wal db-journal ran
		printf old > db
		printf hot > "db-$side"
		run --separate-stderr sr db sh -c ': > "$0/ran"; printf new > "$1"' "$T" {}
		expect_status 125
		one_error_line
		[[ $stderr == *"db-$side"* ]]
		[[ $stderr == *recover* ]]
		[ ! -e ran ]
		expect_content db old
		expect_content "db-$side" hot
		no_leftovers .
	done
}

@test "a WAL database whose writer was killed after a commit is refused, and the committed row survives" {
	need_cmd sqlite3
	need_cmd python3
	sqlite3 db 'PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES(1);' >/dev/null
	# a writer killed right after its commit, as mypy 1.20+ can be
	run python3 -c '
import os, signal, sqlite3
c = sqlite3.connect("db")
c.execute("PRAGMA wal_autocheckpoint=0")
c.execute("INSERT INTO t VALUES(4)")
c.commit()
os.kill(os.getpid(), signal.SIGKILL)'
	[ "$status" -eq 137 ]
	[ -s db-wal ]	# row 4 lives in the WAL only
	sum=$(md5sum db db-wal)
	run --separate-stderr sr db sh -c ': > "$0/ran"; exec sqlite3 "$1" "INSERT INTO t VALUES(5)"' "$T" {}
	expect_status 125
	one_error_line
	[[ $stderr == *db-wal* ]]
	[[ $stderr == *recover* ]]
	[ ! -e ran ]
	[ "$(md5sum db db-wal)" = "$sum" ]
	no_leftovers .
	# the recovery the message points to: open the database once with its tool
	[ "$(sqlite3 db 'SELECT group_concat(x) FROM t')" = 1,4 ]
}

@test "a non-empty FILE-wal or FILE-journal that appears beside FILE during the run is refused at commit" {
	for side in wal journal; do
		rm -f db-wal db-journal
		printf old > db
		run --separate-stderr sr db sh -c 'printf new > "$1"; printf hot > "$0/db-$2"' "$T" {} "$side"
		expect_status 125
		one_error_line
		[[ $stderr == *"db-$side"* ]]
		expect_content db old
		expect_content "db-$side" hot
		no_leftovers .
	done
}

# ---------------------------------------------- 2. cleanup and chmod by name

@test "cleanup chmods only directories it holds open, never a name" {
	need_cmd strace
	under_strace
	strace -o /dev/null true 2>/dev/null || skip "strace cannot trace here"
	printf old > f
	# no -f: only snaprun's own system calls.  As root the unreadable
	# directory opens at once and is fchmod-ed; as its owner it is opened
	# O_PATH|O_DIRECTORY and chmod-ed through /proc/self/fd: either way
	# what is chmod-ed is a descriptor that was opened as a directory.
	run --separate-stderr timeout -k 5 60 strace -o trace.log "$SNAPRUN" f \
		sh -c 'mkdir "$SNAPRUN_ROOT/d"; chmod 000 "$SNAPRUN_ROOT/d"'
	expect_status 0
	no_leftovers .
	expect_content f old
	grep -q '^execve(' trace.log	# the trace is real
	not_in trace.log '^(fchmodat|fchmodat2|syscall_0x1c4)\('
	not_in trace.log '^chmod\("[^/]|^chmod\("/[^p]'
	# every chmod through /proc/self/fd/N: N was opened with O_DIRECTORY
	awk '
		/^openat\(/ && / = [0-9]+$/ { fd = $NF; dir[fd] = /O_DIRECTORY/ }
		match($0, /^chmod\("\/proc\/self\/fd\/[0-9]+"/) {
			n = substr($0, 22, RLENGTH - 22)
			if (!dir[n]) { print "chmod of a descriptor not opened as a directory: " $0; bad = 1 }
		}
		END { exit bad }' trace.log
}

@test "a leftover another user planted in a sticky shared directory is not removed by a run or by --clean" {
	need_root "plants a directory as another user"
	chmod 755 "$T"
	mkdir -m 1777 pub
	printf old > pub/f
	as_nobody sh -c 'mkdir pub/.f.snaprun.AAAAAA && printf mine > pub/.f.snaprun.AAAAAA/data'
	# control: a leftover of root's own, who owns FILE and the directory
	mkdir -m 700 pub/.f.snaprun.BBBBBB
	printf x > pub/.f.snaprun.BBBBBB/data
	run --separate-stderr sr pub/f true
	expect_status 0
	[ ! -e pub/.f.snaprun.BBBBBB ]
	[ -d pub/.f.snaprun.AAAAAA ] || { echo "nobody's directory was removed by a run" >&2; false; }
	expect_content pub/.f.snaprun.AAAAAA/data mine
	[ "$(stat -c %U pub/.f.snaprun.AAAAAA)" = nobody ]
	mkdir -m 700 pub/.f.snaprun.CCCCCC
	printf x > pub/.f.snaprun.CCCCCC/data
	run --separate-stderr sr --clean pub/f
	[ ! -e pub/.f.snaprun.CCCCCC ]
	[ -d pub/.f.snaprun.AAAAAA ] || { echo "nobody's directory was removed by --clean" >&2; false; }
	expect_content pub/.f.snaprun.AAAAAA/data mine
	expect_content pub/f old
}

# ------------------------------------- 3. FILE's directory path re-pointed

# switch_during_wait SWITCH: releases/v1 holds state and a lock someone
# holds; current -> releases/v1.  `snaprun -x current/state` starts and
# waits for the lock; then the shell code SWITCH runs and the lock is let
# go.  Sets status and stderr of that run.  Where we may mount one, a
# small tmpfs (as in the issue) bounds what a looping binary makes: it
# then fails with ENOSPC and thousands of directories are left.
switch_during_wait() {
	need_cmd flock
	mkdir mnt
	if [ "$(id -u)" -eq 0 ] &&
		mount -t tmpfs -o size=16m,nr_inodes=5000,mode=0755 tmpfs mnt 2>/dev/null; then
		cd mnt
	fi
	mkdir -p releases/v1 releases/v2
	echo s > releases/v1/state
	ln -s releases/v1 current
	: > releases/v1/.state.snaprun.lock
	# the run's files stay outside the tmpfs, which a looping binary fills
	flock releases/v1/.state.snaprun.lock sh -c 'echo > "$0/held"; until [ -e "$0/go" ]; do sleep 0.05; done' "$T" 3>&- &
	holder=$!
	wait_for "$T/held" || { : > "$T/go"; wait "$holder"; false; }
	(st=0
	 timeout -k 1 5 "$SNAPRUN" -x current/state sh -c 'echo new >> "$1"' sh {} 2>"$T/err" || st=$?
	 echo "$st" > "$T/rc") 3>&- &
	runner=$!
	wait_blocked releases/v1/.state.snaprun.lock || { : > "$T/go"; wait "$holder" "$runner"; false; }
	eval "$1"
	: > "$T/go"
	wait "$holder"
	wait "$runner"
	status=$(cat "$T/rc")
	stderr=$(cat "$T/err")
}

# A link on FILE's path is followed once, when the run starts: a deploy's
# switch after that does not move the run, which commits where it began.
@test "FILE's path re-pointed during a -x wait: the run ends once, where it began, nothing left" {
	switch_during_wait 'ln -s releases/v2 current.tmp && mv -T current.tmp current'
	expect_status 0
	[ -z "$stderr" ]
	expect_content releases/v1/state $'s\nnew\n'
	[ ! -e releases/v2/state ]
	none_left releases/v1
	none_left releases/v2
}

# FILE's directory itself moved away during the wait: the snapshot's path
# would name nothing, so the run fails once, before CMD, and leaves nothing.
@test "FILE's directory moved away during a -x wait: 125 once, CMD not run, nothing left" {
	switch_during_wait 'mv releases/v1 releases/old && mv releases/v2 releases/v1'
	expect_status 125
	one_error_line
	[[ $stderr == *moved* ]]
	expect_content releases/old/state $'s\n'
	[ ! -e releases/v1/state ]
	none_left releases/v1
	none_left releases/old
}

# ------------------------------------------------- 4. default ACL widening

@test "the committed file's ACL is exactly FILE's: a directory's default ACL adds nobody" {
	need_feature xattrs
	need_cmd setfacl
	need_cmd getfacl
	setfacl -d -m u:nobody:rw . 2>/dev/null || skip "no POSIX ACLs on this filesystem"
	printf old > f
	setfacl -b f	# it inherited the default ACL: FILE has none
	chmod 640 f
	[ "$(getfacl -cp f | grep -c '^user:nobody:')" -eq 0 ]
	run --separate-stderr sr f true
	expect_status 0
	run getfacl -cp f
	[[ $output != *user:nobody:* ]] || { echo "$output" >&2; false; }
	[ "$(stat -c %a f)" = 640 ]
	# a file CMD made itself inherits the default ACL too
	run --separate-stderr sr f sh -c 'echo new > "$1.n" && mv "$1.n" "$1"' sh {}
	expect_status 0
	expect_content f $'new\n'
	run getfacl -cp f
	[[ $output != *user:nobody:* ]] || { echo "$output" >&2; false; }
	[ "$(stat -c %a f)" = 640 ]
	# control: FILE's own access ACL is kept, exactly
	setfacl -m u:daemon:r f
	want=$(getfacl -cp f)
	run --separate-stderr sr f true
	expect_status 0
	[ "$(getfacl -cp f)" = "$want" ]
	run --separate-stderr sr f sh -c 'echo newer > "$1.n" && mv "$1.n" "$1"' sh {}
	expect_status 0
	expect_content f $'newer\n'
	[ "$(getfacl -cp f)" = "$want" ]
	no_leftovers .
}

# ------------------------------------------- 5. xattrs of a read-only FILE

@test "a read-only FILE of an unprivileged owner keeps its user.* xattrs, also when CMD replaces the snapshot" {
	need_feature xattrs
	need_cmd setfattr
	need_cmd getfattr
	# the owner and caller is nobody, or ourselves when we are not root
	owner=(env)
	mkdir d
	if [ "$(id -u)" -eq 0 ]; then
		need_nobody
		chown nobody:nogroup d
		owner=(as_nobody)
	fi
	cd d
	# the owner sets the xattr while FILE is still writable, as it must
	"${owner[@]}" sh -c 'printf old > f && setfattr -n user.tag -v keep f && chmod 0444 f' 2>/dev/null ||
		skip "no user.* xattrs on this filesystem"
	me=$(stat -c %U f)
	[ "$me" != root ]
	run --separate-stderr "${owner[@]}" timeout -k 5 "$SR_TIMEOUT" "$SNAPRUN" f true
	expect_status 0
	[ "$(stat -c %U:%a f)" = "$me:444" ]
	[ "$(getfattr -n user.tag --only-values f)" = keep ]
	run --separate-stderr "${owner[@]}" timeout -k 5 "$SR_TIMEOUT" "$SNAPRUN" f \
		sh -c 'echo new > "$1.n" && mv "$1.n" "$1"' sh {}
	expect_status 0
	expect_content f $'new\n'
	[ "$(stat -c %U:%a f)" = "$me:444" ]
	[ "$(getfattr -n user.tag --only-values f)" = keep ]
	no_leftovers .
}

# --------------------------------------- 6. --root and a rebuilt directory

# rebuilt_under_root [warm] AWAY: --root R on R/3.11/cache.db ("old" when
# warm, absent else); CMD gets rid of {}/3.11 with the shell code AWAY
# ($1 is {}), makes it anew with "new" in cache.db: that is committed.
rebuilt_under_root() {
	mkdir -p R/3.11
	if [ "$1" = warm ]; then
		printf old > R/3.11/cache.db
		shift
	fi
	run --separate-stderr sr --root R R/3.11/cache.db \
		sh -c "$1"' && mkdir "$1/3.11" && echo new > "$1/3.11/cache.db"' sh {}
	expect_status 0
	expect_content R/3.11/cache.db $'new\n'
	no_leftovers R/3.11
}

@test "--root: CMD that rebuilds the snapshot's directory has its result committed (warm)" {
	rebuilt_under_root warm 'rm -rf "$1/3.11"'
}

@test "--root: CMD that builds the snapshot's directory anew has its result committed (cold)" {
	rebuilt_under_root 'rm -rf "$1/3.11"'
}

@test "--root: CMD that moves the old directory aside has its new result committed, not the stale copy" {
	rebuilt_under_root warm 'mv "$1/3.11" "$1/old"'
}
