#!/usr/bin/env bats
# Walks of a tree (issue 14, items 5-8, 13 and 14): mount points anywhere in
# the tree, walks linear in entries, signals acted on during a walk, late
# writers in a new tree, leftovers that cannot be removed, and what CMD did
# to the permissions of what snaprun owns.

load common
load fs_helper

teardown() {
	local p
	for p in ${KILL_PIDS-}; do kill -KILL "$p" 2>/dev/null || true; done
	for p in ${IMMUTABLE-}; do chattr -i "$p" 2>/dev/null || true; done
	if [ -n "${T-}" ] && [ -d "$T" ]; then
		find "$T" -xdev -type d ! -perm -u+rwx -exec chmod u+rwx {} + 2>/dev/null || true
	fi
	unmount_all
}

# siblings DIR N: DIR with N empty subdirectories.
siblings() {
	mkdir "$1" && (cd "$1" && seq "$2" | xargs mkdir)
}

# small_files DIR N: DIR with N files of a few bytes.
small_files() {
	mkdir "$1" && (cd "$1" && seq "$2" | xargs -n 1000 sh -c 'for f; do echo "$f" > "$f"; done' sh)
}

# dents_bytes TRACE: the bytes getdents64 returned, all calls of TRACE.
dents_bytes() {
	awk '/getdents64\(/ && / = [0-9]+$/ { n += $NF } END { print n + 0 }' "$1"
}

# traced_bg OUT CALLS -e INJECT ARG...: snaprun ARG... under strace -f
# (CALLS and signals into the file trace, with -e INJECT), in the
# background with waitstatus OUT; SRPID is snaprun's pid once it is known.
traced_bg() {
	local out=$1 calls=$2 inject=$4 i
	shift 4
	waitstatus "$out" strace -f -qq -o trace -e trace="$calls" -e "$inject" \
		"$SNAPRUN" "$@" 2>"$out.err" &
	for (( i = 0; i < 200; i++ )); do
		[ -s "$out.pid" ] && SRPID=$(pgrep -P "$(cat "$out.pid")" | head -n 1) && [ -n "$SRPID" ] && break
		sleep 0.05
	done
	[ -n "${SRPID-}" ]
	KILL_PIDS+=" $SRPID"
}

# entries_in GLOB: how many entries the first directory GLOB names has.
entries_in() {
	local d
	for d in $1; do
		[ -d "$d" ] && find "$d" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l && return
	done
	echo 0
}

# ------------------------------------------------------- 5. mount points

@test "a file bind-mounted inside DIR: 125 before CMD, naming it; DIR and the mount stay" {
	need_feature exchange
	need_feature mounts
	need_root "mount --bind"
	mkdir -p d/sub
	echo a > d/a
	echo inner > d/sub/target
	echo outer > outer
	mount --bind outer d/sub/target 2>/dev/null || skip "cannot bind-mount a file here"
	i0=$(ino d)
	run --separate-stderr sr d sh -c ': > "$0/ran"; echo new > "$1/a"' "$T" {}
	expect_status 125
	one_error_line
	[[ $stderr == *"d/sub/target: a mount point"* ]]
	[ ! -e ran ]
	[ "$(ino d)" = "$i0" ]
	expect_content d/a $'a\n'
	findmnt -rn "$T/d/sub/target" >/dev/null
	no_leftovers .
}

@test "a FILE that is itself a bind mount: 125 before CMD, FILE unchanged" {
	need_feature mounts
	need_root "mount --bind"
	echo old > f
	echo other > other
	mount --bind other f 2>/dev/null || skip "cannot bind-mount a file here"
	run --separate-stderr sr f sh -c ': > "$0/ran"; echo new > "$1"' "$T" {}
	expect_status 125
	one_error_line
	[[ $stderr == *"a mount point"* ]]
	[ ! -e ran ]
	expect_content f $'other\n'
	no_leftovers .
}

@test "a file CMD bind-mounts inside the new tree: 125 at the commit's check, DIR unchanged" {
	need_feature exchange
	need_feature mounts
	need_root "mount --bind"
	mkdir d
	echo a > d/a
	echo outer > outer
	i0=$(ino d)
	run --separate-stderr sr d sh -c 'echo new > "$1/a"; : > "$1/m"
		mount --bind "$0/outer" "$1/m" || exit 99' "$T" {}
	[ "$status" -ne 99 ] || skip "cannot bind-mount a file here"
	expect_status 125
	[[ ${stderr%%$'\n'*} == *"d/m: in the new tree, a mount point; nothing committed"* ]]
	[ "$(ino d)" = "$i0" ]
	expect_content d/a $'a\n'
	[ ! -e d/m ]
}

# ------------------------------------------------------- 6. linear walks

@test "slow: 1,500 sibling directories: every directory is read once (getdents64 bytes linear), copy, check and removal" {
	need_feature exchange
	need_strace getdents64
	siblings d 1500
	# copy, then removal of the copy (CMD fails)
	run strace -f -qq -o trace -e trace=getdents64 "$SNAPRUN" d false
	[ "$status" -eq 1 ]
	bytes=$(dents_bytes trace)
	echo "discarding run: $bytes bytes of directory entries read" >&2
	# each name once (about 32 bytes), each empty directory's . and ..:
	# under 200 bytes an entry; reading again after each subdirectory is
	# tens of megabytes
	[ "$bytes" -lt $(( 1500 * 200 )) ]
	# copy, check, exchange, removal of the old tree
	run strace -f -qq -o trace -e trace=getdents64 "$SNAPRUN" d \
		sh -c ': > "$1/new"' sh {}
	[ "$status" -eq 0 ]
	bytes=$(dents_bytes trace)
	echo "committing run: $bytes bytes of directory entries read" >&2
	[ "$bytes" -lt $(( 1500 * 300 )) ]
	[ "$(find d -mindepth 1 | wc -l)" -eq 1501 ]
	no_leftovers .
}

@test "slow: 200 files of 2 hard links each, and 500 sibling directories under ulimit -n 16: copied and committed whole" {
	need_feature exchange
	mkdir -p d/a d/b
	for i in $(seq 200); do echo "$i" > "d/a/$i"; ln "d/a/$i" "d/b/$i"; done
	(cd d && seq 500 | sed 's/^/s/' | xargs mkdir)
	run --separate-stderr perl -e 'use POSIX (); POSIX::close($_) for 3 .. 1023; exec { $ARGV[0] } @ARGV' \
		bash -c 'ulimit -n 16 && exec timeout -k 5 60 "$@"' bash "$SNAPRUN" d sh -c 'echo x > "$1/new"' sh {}
	expect_status 0
	[ -f d/new ]
	for i in 1 100 200; do
		[ "$(stat -c %h "d/a/$i")" = 2 ]
		[ "$(ino "d/a/$i")" = "$(ino "d/b/$i")" ]
	done
	[ "$(find d -links 2 -type f | wc -l)" -eq 400 ]
	[ "$(find d -mindepth 1 -maxdepth 1 -name 's*' -type d | wc -l)" -eq 500 ]
	no_leftovers .
}

# ---------------------------------------------------------- 7. signals

# need_inject CALL: skip unless strace can delay CALL here.
need_inject() {
	need_strace "$1"
	strace -qq -o /dev/null -e trace="$1" -e inject="$1":delay_exit=1:when=1 true 2>/dev/null ||
		skip "this strace cannot delay a system call (-e inject=...:delay_exit)"
}

# term_when TEST: once TEST succeeds (tried for up to 60 s), SIGTERM to
# snaprun (traced_bg's, status in st), which must die by it.
term_when() {
	local i
	for (( i = 0; i < 1200; i++ )); do
		"$1" && break
		sleep 0.05
	done
	"$1"
	kill -TERM "$SRPID"
	wait_nonempty st 60
	[ "$(cat st)" = "signal 15 core 0" ]
}

# term_during CALL N TEST ARG...: snaprun ARG... under strace (CALL, mkdir
# and rmdir traced), its Nth CALL delayed by 5 s; SIGTERM once TEST
# succeeds, as term_when.
term_during() {
	local call=$1 n=$2 test=$3
	shift 3
	traced_bg st "$call,mkdir,rmdir" -e "inject=$call:delay_exit=5000000:when=$n" "$@"
	term_when "$test"
}

# copy_under_way: snaprun has copied 200 entries of d.
copy_under_way() {
	[ "$(entries_in ".d.snaprun.??????/d")" -ge 200 ]
}

# exchanged: d is no longer the directory of inode i0.
exchanged() {
	[ "$(ino d)" != "$i0" ]
}

@test "SIGTERM during a tree copy: acted on at the next entry (at most 2 directories made after it), nothing committed" {
	need_feature exchange
	need_inject mkdirat
	siblings d 1000
	i0=$(ino d)
	# the 300th directory made takes 5 s: the signal comes during the
	# copy, whatever the machine's load
	term_during mkdirat 300 copy_under_way d sh -c ': > "$0/ran"' "$T"
	[ ! -e ran ]
	grep -q -- '--- SIGTERM' trace
	after=$(awk '/--- SIGTERM/ { on = 1; next } on && /mkdir/ { n++ } END { print n + 0 }' trace)
	echo "directories made after SIGTERM: $after" >&2
	[ "$after" -le 2 ]
	[ "$(ino d)" = "$i0" ]
	# a removal cut short by the signal is left for --clean
	run sr --clean d
	expect_status 0
	no_leftovers .
}

@test "slow: SIGTERM during the old tree's removal after the commit: says DIR was committed, dies by SIGTERM, --clean removes the rest" {
	need_feature exchange
	need_inject unlinkat
	small_files d 1000
	i0=$(ino d)
	# the 100th removal (of the old tree: nothing is removed before the
	# commit) takes 5 s: the signal comes during it
	term_during unlinkat 100 exchanged d sh -c 'echo new > "$1/new"' sh {}
	cat st.err >&2
	grep -q 'd: committed before the signal came' st.err
	expect_content d/new $'new\n'
	[ "$(find d -type f | wc -l)" -eq 1001 ]
	run sr --clean d
	expect_status 0
	no_leftovers .
}

# ------------------------------------------------------ 8. late writers

@test "a file of the new tree still open for writing by CMD's background process: 125 naming it, DIR unchanged" {
	need_feature exchange
	need_feature leases
	mkdir -p d/sub
	echo old > d/sub/f
	i0=$(ino d)
	run --separate-stderr sr d sh -c 'echo new > "$1/sub/f"
		(exec 3>>"$1/sub/f" >/dev/null 2>&1; : > "$2.open"; sleep 2; echo LATE >&3) &
		echo $! > "$2"
		i=0; while [ ! -e "$2.open" ] && [ "$i" -lt 500 ]; do sleep 0.01; i=$((i + 1)); done
		exit 0' sh {} "$T/late.pid" 3>&-
	KILL_PIDS+=" $(cat late.pid)"
	expect_status 125
	one_error_line
	[[ $stderr == *"d/sub/f: in the new tree, still open for writing"* ]]
	[ "$(ino d)" = "$i0" ]
	expect_content d/sub/f $'old\n'
	pid_gone "$(cat late.pid)" 5
	expect_content d/sub/f $'old\n'
	no_leftovers .
}

# -------------------------------------------- 13. leftovers that stay

@test "a leftover that cannot be removed (immutable file): said once, set aside, later runs quiet, --clean says what and why" {
	need_root "sets the immutable attribute"
	need_cmd chattr
	echo old > f
	mkdir -p .f.snaprun.ABCDEF/sub
	echo x > .f.snaprun.ABCDEF/sub/stuck
	chattr +i .f.snaprun.ABCDEF/sub/stuck 2>/dev/null || skip "no immutable attribute on this filesystem"
	IMMUTABLE+=" $T/.f.snaprun.ABCDEF.left/sub/stuck $T/.f.snaprun.ABCDEF/sub/stuck"
	run --separate-stderr sr f sh -c 'echo one > "$1"' sh {}
	expect_status 0
	one_error_line
	[[ $stderr == *".f.snaprun.ABCDEF/sub/stuck: cannot remove it (Operation not permitted); set aside as .f.snaprun.ABCDEF.left"* ]]
	expect_content f $'one\n'
	[ -d .f.snaprun.ABCDEF.left ]
	run --separate-stderr sr f sh -c 'echo two > "$1"' sh {}
	expect_status 0
	[ -z "$stderr" ]
	expect_content f $'two\n'
	run --separate-stderr sr --clean f
	expect_status 125
	one_error_line
	[[ $stderr == *".f.snaprun.ABCDEF.left/sub/stuck: cannot remove it: Operation not permitted"* ]]
	chattr -i .f.snaprun.ABCDEF.left/sub/stuck
	run --separate-stderr sr --clean f
	expect_status 0
	[ ! -e .f.snaprun.ABCDEF.left ]
}

@test "as an unprivileged user: a leftover holding another user's directory is set aside once, runs go on" {
	need_nobody
	mkdir w
	echo old > w/f
	mkdir -p w/.f.snaprun.ABCDEF/theirs
	echo x > w/.f.snaprun.ABCDEF/theirs/x
	chown -R nobody w
	chown root w/.f.snaprun.ABCDEF/theirs
	run --separate-stderr as_nobody "$SNAPRUN" w/f sh -c 'echo one > "$1"' sh {}
	expect_status 0
	one_error_line
	[[ $stderr == *"w/.f.snaprun.ABCDEF/theirs/x: cannot remove it (Permission denied); set aside as .f.snaprun.ABCDEF.left"* ]]
	expect_content w/f $'one\n'
	run --separate-stderr as_nobody "$SNAPRUN" w/f sh -c 'echo two > "$1"' sh {}
	expect_status 0
	[ -z "$stderr" ]
	expect_content w/f $'two\n'
	[ -d w/.f.snaprun.ABCDEF.left/theirs ]
}

# ------------------------------------- 14. permissions CMD changed

@test "as an unprivileged user: {} left mode 000 is committed with FILE's mode" {
	need_nobody
	echo old > f
	chmod 640 f
	chown nobody f .
	run --separate-stderr as_nobody "$SNAPRUN" f sh -c 'echo new > "$1"; chmod 000 "$1"' sh {}
	expect_status 0
	expect_content f $'new\n'
	[ "$(stat -c %a f)" = 640 ]
	no_leftovers .
}

@test "as an unprivileged user: the snapshot's directory left 0500 or 0100 by CMD is still committed" {
	need_nobody
	mkdir w
	chown nobody w
	for m in 0500 0100; do
		echo old > w/f
		chown nobody w/f
		run --separate-stderr as_nobody "$SNAPRUN" w/f sh -c 'echo "$2" > "$1"; chmod "$2" "${1%/*}"' sh {} "$m"
		expect_status 0
		expect_content w/f "$m"$'\n'
		no_leftovers w
	done
}

@test "as an unprivileged user: a directory of the new tree left 0000 is committed as CMD left it" {
	need_feature exchange
	need_nobody
	mkdir -p d/sub/deeper
	echo c > d/sub/deeper/c
	chown -R nobody d
	chown nobody .
	run --separate-stderr as_nobody "$SNAPRUN" d sh -c 'echo new > "$1/sub/deeper/c"; chmod 000 "$1/sub/deeper" "$1/sub"' sh {}
	expect_status 0
	[ "$(stat -c %a d/sub)" = 0 ]
	chmod 755 d/sub d/sub/deeper
	expect_content d/sub/deeper/c $'new\n'
	no_leftovers .
}

@test "as an unprivileged owner: a DIR of mode 0555, which cannot be moved, is refused before CMD with the reason" {
	need_feature exchange
	need_nobody
	mkdir d
	echo a > d/a
	chown -R nobody d
	chown nobody .
	chmod 555 d
	run --separate-stderr as_nobody "$SNAPRUN" d sh -c ': > "$0/ran"' "$T"
	expect_status 125
	one_error_line
	[[ $stderr == *"d: not writable (mode 0555)"* ]]
	[ ! -e ran ]
	no_leftovers .
}
