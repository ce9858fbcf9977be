#!/usr/bin/env bats
# Filter mode (-f, --filter): CMD reads FILE on stdin, its stdout becomes
# FILE's next version, committed as in the default mode (issue 11).

load common
load fs_helper
load conc_helper

teardown() {
	stop_strays
	unmount_all
}

# unchanged_since SUM INODE FILE: FILE has checksum SUM and is still the
# inode INODE (nothing was committed over it).
unchanged_since() {
	[ "$(md5 "$3")" = "$1" ] || { echo "$3: content changed" >&2; return 1; }
	[ "$(ino "$3")" = "$2" ] || { echo "$3: replaced by another inode" >&2; return 1; }
}

# make_fgate: write $T/fgate, a filter CMD that stalls until the test lets
# it go (a gate, see write_gate in conc_helper).
#   fgate NAME TEXT
# once let go (else it exits 1), copies its stdin to NAME.seen.N and
# writes that to stdout followed by the line TEXT.
make_fgate() {
	write_gate "$T/fgate" : '[ -e "$name.go.$n" ] || exit 1
cat >"$name.seen.$n"
cat "$name.seen.$n"
printf "%s\n" "$text"'
}

# limited_f BLOCKS ARG...: `snaprun ARG...` (bounded by timeout) under
# `ulimit -f BLOCKS`, with only stdin, stdout and stderr open and SIGXFSZ
# at its default action.
limited_f() {
	local v=$1
	shift
	perl -e 'use POSIX (); POSIX::close($_) for 3 .. 1023; $SIG{XFSZ} = "DEFAULT";
		exec { $ARGV[0] } @ARGV or exit 127' \
		bash -c 'ulimit -f "$1" && shift && exec timeout -k 5 "$@"' \
		bash "$v" "$SR_TIMEOUT" "$SNAPRUN" "$@"
}

# ------------------------------------------------------------ the basics

@test "jq: FILE on stdin, CMD's stdout committed by rename, nothing on snaprun's stdout" {
	need_cmd jq
	printf '{"name":"app","version":1}\n' > f.json
	i0=$(ino f.json)
	# the caller's stdin is not what CMD reads
	run --separate-stderr sr -f f.json -- jq -c '.version = 2' <<<'{"name":"caller","version":9}'
	expect_status 0
	[ -z "$output" ]
	[ -z "$stderr" ]
	expect_content f.json $'{"name":"app","version":2}\n'
	[ "$(ino f.json)" != "$i0" ]
	no_leftovers .
	# the default mode leaves nothing at all, not even a lock file
	[ "$(ls -A)" = f.json ]
	# --filter is -f
	run sr --filter f.json -- jq -c '.version += 1'
	expect_status 0
	expect_content f.json $'{"name":"app","version":3}\n'
	[ "$(ls -A)" = f.json ]
}

@test "sort -u: requirements.txt sorted and deduplicated; stdin is FILE from its start" {
	printf 'requests\nflask\nnumpy\nflask\nrequests\n' > requirements.txt
	run sr -f requirements.txt -- sort -u
	expect_status 0
	expect_content requirements.txt $'flask\nnumpy\nrequests\n'
	# snaprun's own stdin is FILE, already read past its first line: CMD
	# still reads all of FILE
	{
		read -r _
		run sr -f requirements.txt -- wc -l
	} < requirements.txt
	expect_status 0
	[ "$(tr -d ' ' < requirements.txt)" = 3 ]
	no_leftovers .
}

@test "CMD's stderr stays the caller's; its stdout goes only into FILE" {
	printf 'old\n' > f
	run --separate-stderr sr -f f -- sh -c 'echo to-stderr >&2; cat; echo added'
	expect_status 0
	[ "$stderr" = to-stderr ]
	[ -z "$output" ]
	expect_content f $'old\nadded\n'
	no_leftovers .
}

@test "the sponge failure: a filter that fails half-way leaves FILE untouched" {
	need_cmd jq
	# jq prints the first two values of a stream, then fails on the third
	printf '1\n2\n{bad\n' > stream
	chmod 640 stream
	sum=$(md5 stream) i0=$(ino stream)
	jst=0
	jq . < stream > /dev/null 2>&1 || jst=$?
	[ "$jst" -ne 0 ]
	run --separate-stderr sr -f stream -- jq .
	expect_status "$jst"
	[ -z "$output" ]
	[[ $stderr == *"parse error"* ]]
	unchanged_since "$sum" "$i0" stream
	[ "$(stat -c %a stream)" = 640 ]
	no_leftovers .
	# a filter that wrote part of FILE and exits 3
	seq 1 1000 > f
	sum=$(md5 f) i0=$(ino f)
	run sr -f f -- sh -c 'head -n 10; exit 3'
	expect_status 3
	unchanged_since "$sum" "$i0" f
	no_leftovers .
}

@test "commit set: -c 0,1 commits a filter that exits 1, not one that exits 2" {
	printf 'old\n' > f
	run sr -c 0,1 -f f -- sh -c 'cat; echo one; exit 1'
	expect_status 1
	expect_content f $'old\none\n'
	run sr -c 0,1 -f f -- sh -c 'cat; echo two; exit 2'
	expect_status 2
	expect_content f $'old\none\n'
	no_leftovers .
}

@test "an empty output with status 0 empties FILE" {
	printf 'old\n' > f
	chmod 604 f
	run sr -f f -- true
	expect_status 0
	[ -f f ]
	[ "$(stat -c %s:%a f)" = 0:604 ]
	# an empty output with a status outside the commit set changes nothing
	printf 'old\n' > g
	run sr -f g -- false
	expect_status 1
	expect_content g $'old\n'
	# nor does it create an absent FILE
	run sr -f --missing=empty absent -- sh -c 'echo partial; exit 1'
	expect_status 1
	[ ! -e absent ]
	no_leftovers .
}

@test "absent FILE with --missing=empty: stdin is empty, FILE is created with mode 0666 minus umask" {
	umask 022
	run sr -f --missing=empty new1 -- sh -c 'printf "%s bytes\n" "$(wc -c | tr -d " ")"'
	expect_status 0
	expect_content new1 $'0 bytes\n'
	[ "$(stat -c %a new1)" = 644 ]
	umask 027
	run sr -f --missing=empty sub/dir/new2 -- echo hello
	expect_status 0
	expect_content sub/dir/new2 $'hello\n'
	[ "$(stat -c %a sub/dir/new2)" = 640 ]
	# an empty output is a valid first version too
	umask 002
	run sr -f --missing=empty new3 -- true
	expect_status 0
	[ -f new3 ]
	[ "$(stat -c %s:%a new3)" = 0:664 ]
	no_leftovers .
	no_leftovers sub/dir
}

# ---------------------------------------------------------- metadata

@test "permission bits are kept (0640, 0755, 0604, 0600 under umask 077)" {
	umask 077
	for m in 640 755 604 600; do
		printf 'b\na\n' > f
		chmod "$m" f
		run sr -f f -- sort
		expect_status 0
		expect_content f $'a\nb\n'
		[ "$(stat -c %a f)" = "$m" ]
		rm f
	done
	no_leftovers .
}

@test "owner and group are kept (as root)" {
	need_root "chown"
	printf 'b\na\nb\n' > f
	chown nobody:nogroup f
	chmod 640 f
	run sr -f f -- sort -u
	expect_status 0
	expect_content f $'a\nb\n'
	[ "$(stat -c %U:%G:%a f)" = nobody:nogroup:640 ]
	no_leftovers .
}

@test "a user xattr and the ACL are kept exactly" {
	need_feature xattrs
	need_cmd setfattr
	need_cmd getfattr
	need_cmd setfacl
	need_cmd getfacl
	printf 'old\n' > f
	chmod 640 f
	setfattr -n user.snaprun.test -v hello f 2>/dev/null || skip "this filesystem has no user xattrs"
	setfacl -m u:nobody:rw,g:nogroup:r f 2>/dev/null || skip "this filesystem has no ACLs"
	acl=$(getfacl -c f) mode=$(stat -c %a f) i0=$(ino f)
	[[ $acl == *user:nobody:rw-* ]]
	run sr -f f -- sed s/old/new/
	expect_status 0
	expect_content f $'new\n'
	[ "$(ino f)" != "$i0" ]
	[ "$(getfattr --only-values -n user.snaprun.test f)" = hello ]
	[ "$(getfacl -c f)" = "$acl" ]
	[ "$(stat -c %a f)" = "$mode" ]
	no_leftovers .
	# a FILE without an ACL in a directory with a default ACL gets none
	mkdir d
	printf 'old\n' > d/g
	chmod 640 d/g
	setfacl -d -m u:nobody:rwx,g:nogroup:rx d
	acl=$(getfacl -c d/g)
	run sr -f d/g -- sed s/old/new/
	expect_status 0
	expect_content d/g $'new\n'
	[ "$(getfacl -c d/g)" = "$acl" ]
	[ "$(stat -c %a d/g)" = 640 ]
	no_leftovers d
}

@test "FILE is a symlink: the target is replaced and the link stays a link" {
	mkdir real
	printf 'old\n' > real/data.txt
	ln -s real/data.txt link
	run sr -f link -- sed s/old/new/
	expect_status 0
	[ -L link ]
	[ "$(readlink link)" = real/data.txt ]
	expect_content real/data.txt $'new\n'
	no_leftovers .
	no_leftovers real
	[ "$(ls -A real)" = data.txt ]
}

# ---------------------------------------------------- {} and SNAPRUN_FILE

@test "{} names a read-only copy in .BASE.snaprun.XXXXXX/in/BASE, also SNAPRUN_FILE" {
	need_cmd jq
	printf '{"a":1}\n' > f.json
	chmod 664 f.json
	run sr -f f.json -- sh -c '
		printf "%s\n" "$1" "$SNAPRUN_FILE" "$SNAPRUN_ROOT" > "$0/env"
		stat -c %a "$1" > "$0/mode"
		cmp - "$1" > "$0/cmp" 2>&1 || exit 9
		cp "$1" "$0/copy"
		jq -c ".a = 2" "$1" || exit 8' "$T" {}
	expect_status 0
	expect_content f.json $'{"a":2}\n'
	mapfile -t e < ./env
	[ "${e[0]}" = "${e[1]}" ]
	[[ ${e[0]} =~ /\.f\.json\.snaprun\.[^/]{6}/in/f\.json$ ]]
	[ "${e[2]}" = "${e[0]%/in/f.json}" ]
	[ "$(cat mode)" = 444 ]
	cmp copy <(printf '{"a":1}\n')
	[ "$(stat -c %a f.json)" = 664 ]
	no_leftovers .
	# the issue's own example
	run --separate-stderr sr -f f.json -- jq -c '.b = 3' {}
	expect_status 0
	[ -z "$output" ]
	expect_content f.json $'{"a":2,"b":3}\n'
	no_leftovers .
}

@test "with {}, stdin is still all of FILE from its start, also a sparse FILE" {
	# the copy into in/ seeks FILE for its holes: stdin must not start there
	printf 'head\n' > f
	truncate -s 1M f
	printf 'tail\n' >> f
	sum=$(md5 f)
	run sr -f f -- sh -c 'md5sum | cut -c1-32 > "$0/stdin.md5"; cat "$1"; echo more' "$T" {}
	expect_status 0
	[ "$(cat stdin.md5)" = "$sum" ]
	[ "$(stat -c %s f)" -eq $((1048576 + 5 + 5)) ]
	[ "$(tail -n 2 f)" = $'tail\nmore' ]
	[ "$(head -n 1 f)" = head ]
	no_leftovers .
}

@test "without the placeholder no copy is made and SNAPRUN_FILE is not set" {
	printf 'old\n' > f
	# not even one an outer caller set
	SNAPRUN_FILE=/outer/value run sr -f f -- sh -c '
		printf "%s\n" "${SNAPRUN_FILE-unset}" > "$0/file"
		[ -d "$SNAPRUN_ROOT" ] && : > "$0/root-ok"
		find "$SNAPRUN_ROOT" -mindepth 1 -printf "%P\n" | sort > "$0/tree"
		cat' "$T"
	expect_status 0
	expect_content f $'old\n'
	expect_content file $'unset\n'
	[ -e root-ok ]
	cat tree >&2
	if grep -q '^in' tree; then echo 'in/ was made' >&2; false; fi
	grep -qx out/f tree
	no_leftovers .
}

# ---------------------------------------------------------- refusals

@test "a directory FILE with -f: 125, one line, CMD not run, nothing left" {
	mkdir d
	printf x > d/inside
	run --separate-stderr sr -f d -- sh -c ': > "$0/ran"; echo y' "$T"
	expect_status 125
	one_error_line
	[[ $stderr == *d* ]]
	[ ! -e ran ]
	[ -d d ]
	[ "$(ls -A d)" = inside ]
	expect_content d/inside x
	no_leftovers .
}

@test "-f with --root: 125, one line, CMD not run, FILE unchanged, nothing left" {
	mkdir r
	printf 'old\n' > r/g
	for args in "-f --root=r" "--root=r -f" "--filter --root r"; do
		# shellcheck disable=SC2086
		run --separate-stderr sr $args r/g -- sh -c ': > "$0/ran"; echo new' "$T"
		expect_status 125
		one_error_line
		[[ $stderr == *--root* ]]
		[ ! -e ran ]
		expect_content r/g $'old\n'
		no_leftovers r
		no_leftovers .
	done
}

@test "CMD not found: 127, not executable: 126; one line, FILE unchanged, an absent FILE not created" {
	printf 'old\n' > f
	i0=$(ino f)
	run -127 --separate-stderr sr -f f -- /nonexistent/dir/filter
	one_error_line
	[[ $stderr == */nonexistent/dir/filter* ]]
	unchanged_since "$(printf 'old\n' | md5sum | cut -c1-32)" "$i0" f
	PATH=/usr/bin:/bin run -127 --separate-stderr sr -f --missing=empty absent -- snaprun-no-such-filter
	one_error_line
	[ ! -e absent ]
	printf '#!/bin/sh\ncat\n' > notexec
	chmod 644 notexec
	run -126 --separate-stderr sr -f f -- ./notexec
	one_error_line
	[[ $stderr == *notexec* ]]
	unchanged_since "$(printf 'old\n' | md5sum | cut -c1-32)" "$i0" f
	no_leftovers .
}

# ------------------------------------------------- space and size limits

@test "ENOSPC while writing CMD's output: 125 'No space left on device', FILE unchanged, nothing left (CMD exit 0 and 4)" {
	mount_tmpfs mnt 1m
	head -c 100K /dev/urandom > mnt/f
	chmod 640 mnt/f
	sum=$(md5 mnt/f) i0=$(ino mnt/f)
	used0=$(df -k --output=used mnt | tail -1)
	for st in 0 4; do
		run --separate-stderr sr -f mnt/f -- sh -c 'head -c 5M /dev/zero; exit "$0"' "$st"
		expect_status 125
		one_error_line
		[[ $stderr == *"No space left on device"* ]]
		unchanged_since "$sum" "$i0" mnt/f
		no_leftovers mnt
		[ "$(ls -A mnt)" = f ]
	done
	# all the space came back
	[ "$(df -k --output=used mnt | tail -1)" -le "$used0" ]
	# and a filter that fits still commits there
	run sr -f mnt/f -- head -c 1000
	expect_status 0
	[ "$(stat -c %s:%a mnt/f)" = 1000:640 ]
	no_leftovers mnt
}

@test "ulimit -f below CMD's output: 125 'File too large', FILE unchanged, not killed by SIGXFSZ" {
	printf 'old\n' > f
	sum=$(md5 f) i0=$(ino f)
	run --separate-stderr limited_f 100 -f f -- sh -c 'head -c 1M /dev/zero; exit 0'
	[ "$status" -ne 153 ] || { echo "snaprun was killed by SIGXFSZ (153)" >&2; false; }
	expect_status 125
	one_error_line
	[[ $stderr == *"File too large"* ]]
	unchanged_since "$sum" "$i0" f
	no_leftovers .
	# under the limit the same run commits
	run --separate-stderr limited_f 100 -f f -- head -c 50K /dev/zero
	expect_status 0
	[ "$(stat -c %s f)" -eq 51200 ]
	no_leftovers .
}

# ------------------------------------------------ a background holder

@test "a background process still holding CMD's stdout: 125, one line, FILE unchanged, no waiting for it" {
	printf 'old\n' > f
	sum=$(md5 f) i0=$(ino f)
	t0=$EPOCHREALTIME
	run --separate-stderr sr -f f -- sh -c '
		cat
		(trap "" PIPE; sleep 6; echo late 2>/dev/null; : > "$0/bgdone") &' "$T" 3>&-
	el=$(since "$t0")
	note "snaprun returned after ${el}s"
	expect_status 125
	one_error_line
	lt "$el" 4 # the holder holds it for 6 s
	[ ! -e bgdone ]
	unchanged_since "$sum" "$i0" f
	no_leftovers .
	# once the holder has written and ended, still nothing changed
	wait_for bgdone 10
	unchanged_since "$sum" "$i0" f
	no_leftovers .
}

# ---------------------------------------------------------- concurrency

@test "six concurrent -x awk counters: FILE ends at 6" {
	echo 0 > counter
	parallel_writers 6 -f -x counter -- awk '{ print $1 + 1 }'
	expect_content counter $'6\n'
	no_leftovers .
	# the same with runs that overlap for certain (each holds 0.2 s)
	echo 0 > counter
	parallel_writers 6 -f -x counter -- sh -c \
		"mkdir $T/busy || exit 9; sleep 0.2; awk '{ print \$1 + 1 }'; rmdir $T/busy"
	expect_content counter $'6\n'
	no_leftovers .
	[ -f .counter.snaprun.lock ]
}

@test "six concurrent -x filters appending a line each: six lines" {
	: > lines
	parallel_writers 6 -f -x lines -- sh -c 'cat; sleep 0.1; echo line-@i@'
	[ "$(wc -l < lines)" -eq 6 ]
	for i in 1 2 3 4 5 6; do
		[ "$(grep -cx "line-$i" lines)" -eq 1 ] || { cat lines >&2; false; }
	done
	no_leftovers .
}

@test "-n: a filter refused with 75 while an -x filter holds the lock" {
	make_fgate
	printf 'old\n' > f
	start_gated H.started.1 -x -f f -- "$T/fgate" H held
	run --separate-stderr sr -n -f f -- sh -c ': > "$0/ran"; cat; echo intruder' "$T"
	expect_status 75
	[ ! -e ran ]
	expect_content f $'old\n'
	touch H.go.1
	gated_exits 0
	expect_content f $'old\nheld\n'
	no_leftovers .
}

# held_while_b_commits B-SCRIPT [OPTION]...: f holds "old"; run A,
# `snaprun OPTION... -f f` with the filter `fgate A from-A`, and hold it in
# CMD while run B, `snaprun -f f -- sh -c B-SCRIPT`, commits (exit 0).
held_while_b_commits() {
	local b=$1
	shift
	make_fgate
	printf 'old\n' > f
	start_gated A.started.1 "$@" -f f -- "$T/fgate" A from-A
	run sr -f f -- sh -c "$b"
	expect_status 0
}

# a_goes STATUS: let A go; it exits STATUS, its first try having read "old".
a_goes() {
	touch A.go.1
	gated_exits "$1"
	expect_content A.seen.1 $'old\n'
}

@test "a commit by another run during CMD does not change what CMD reads" {
	held_while_b_commits 'echo from-B'
	expect_content f $'from-B\n'
	a_goes 0
	# overwrite (the default): A's output wins
	expect_content f $'old\nfrom-A\n'
	no_leftovers .
}

@test "--on-conflict=fail: FILE replaced during CMD, 75, the other's version stays" {
	held_while_b_commits 'cat; echo from-B' --on-conflict=fail
	expect_content f $'old\nfrom-B\n'
	a_goes 75
	expect_content f $'old\nfrom-B\n'
	no_leftovers .
}

@test "--on-conflict=keep: FILE replaced during CMD, CMD's status 0, the other's version stays" {
	held_while_b_commits 'cat; echo from-B' --on-conflict=keep
	a_goes 0
	expect_content f $'old\nfrom-B\n'
	no_leftovers .
}

@test "--on-conflict=retry: the second try reads a fresh snapshot, the other's version" {
	held_while_b_commits 'cat; echo from-B' --on-conflict=retry --retries=1
	touch A.go.1
	wait_for A.started.2
	touch A.go.2
	gated_exits 0
	[ "$(cat A.count)" -eq 2 ]
	expect_content A.seen.1 $'old\n'
	expect_content A.seen.2 $'old\nfrom-B\n'
	expect_content f $'old\nfrom-B\nfrom-A\n'
	no_leftovers .
}

# ---------------------------------------------------------- a big stream

@test "slow: a 100 MiB stream: identical content, committed, bounded peak RSS" {
	[ -x /usr/bin/time ] || skip "/usr/bin/time is not installed"
	if is_sanitized; then skip "peak memory is not meaningful in a sanitizer build"; fi
	[ "$(head -c 2 "$SNAPRUN")" != '#!' ] || skip "$SNAPRUN is a wrapper script"
	head -c 100M /dev/urandom > big
	sum=$(md5 big) i0=$(ino big)
	run --separate-stderr /usr/bin/time -f %M -o mem timeout 60 "$SNAPRUN" --no-sync -f big -- cat
	expect_status 0
	[ -z "$output" ]
	[ "$(stat -c %s big)" -eq $((100 * 1024 * 1024)) ]
	[ "$(md5 big)" = "$sum" ]
	[ "$(ino big)" != "$i0" ]
	note "max RSS: $(tail -1 mem) KiB"
	[ "$(tail -1 mem)" -lt 16384 ]
	no_leftovers .
}

# ----------------------------------------------------- -k and signals

@test "-k with a failing filter: the kept directory holds out/BASE with what CMD wrote" {
	printf 'old\n' > f
	run --separate-stderr sr -k -f f -- sh -c 'cat; echo partial; exit 4'
	expect_status 4
	expect_content f $'old\n'
	kept=$(find . -maxdepth 1 -name '.f.snaprun.*.kept')
	[ -n "$kept" ]
	[ "$(printf '%s\n' "$kept" | wc -l)" -eq 1 ]
	[ -d "$kept" ]
	expect_content "$kept/out/f" $'old\npartial\n'
	[[ $stderr == *"$(basename "$kept")"* ]]
	# nothing else is left
	[ "$(leftovers .)" = "$(basename "$kept")" ]
}

@test "SIGTERM to snaprun while CMD runs: nothing committed, CMD stopped, snaprun dies by SIGTERM (143)" {
	printf 'old\n' > f
	sum=$(md5 f) i0=$(ino f)
	timeout -k 5 30 "$SNAPRUN" -f f -- sh -c '
		cat; echo new
		echo $PPID > "$0/srpid.tmp" && mv "$0/srpid.tmp" "$0/srpid"
		echo $$ > "$0/cmdpid.tmp" && mv "$0/cmdpid.tmp" "$0/cmdpid"
		exec sleep 30' "$T" </dev/null >out 2>err 3>&- &
	wrpid=$!
	wait_for cmdpid
	srpid=$(cat srpid) cmdpid=$(cat cmdpid)
	# CMD's parent is snaprun, the child of timeout
	[ "$(ps -o ppid= -p "$srpid" | tr -d ' ')" = "$wrpid" ]
	kill -TERM "$srpid"
	st=0
	wait "$wrpid" || st=$?
	wrpid=''
	cat err >&2
	[ "$st" -eq 143 ]
	pid_gone "$srpid"
	pid_gone "$cmdpid"
	srpid='' cmdpid=''
	[ ! -s out ]
	unchanged_since "$sum" "$i0" f
	no_leftovers .
}

# ------------------------------------------------ slips of the hand (issue 14)

@test "an absent FILE is an error (125, naming --missing=empty), nothing made; the man page's counter starts from nothing" {
	run --separate-stderr sr -f stat.json -- cat
	expect_status 125
	one_error_line
	[[ $stderr == *stat.json*"No such file or directory"*"--missing=empty"* ]]
	[ ! -e stat.json ]
	# nor its directories
	run --separate-stderr sr -f typo/stat.json -- cat
	expect_status 125
	one_error_line
	[[ $stderr == *"--missing=empty"* ]]
	[ ! -e typo ]
	[ -z "$(ls -A)" ]
	# --missing=error says the same without the hint
	run --separate-stderr sr -f --missing=error stat.json -- cat
	expect_status 125
	one_error_line
	[ ! -e stat.json ]
	# the counter of snaprun(1), three times from nothing
	for n in 1 2 3; do
		run sr -f -x --missing=empty counter -- awk '{ n = $1 } END { print n + 1 }'
		expect_status 0
		expect_content counter "$n"$'\n'
	done
	no_leftovers .
}

@test "an in-place editor on {}: the copy and its directory are read-only; changed anyway (root), 125, FILE unchanged" {
	printf 'a\n' > f
	run sr -f f -- sh -c 'stat -c %a "$1" "${1%/*}" > "$0/modes"; cat' "$T" {}
	expect_status 0
	[ "$(tr '\n' ' ' < modes)" = "444 500 " ]
	sum=$(md5 f) i0=$(ino f)
	# root ignores modes: sed -i replaces the copy, dd writes it in place
	run --separate-stderr sr -f f -- sed -i s/a/A/ {}
	expect_status 125
	one_error_line
	[[ $stderr == *"in filter mode the new version is what CMD writes on standard output"* ]]
	unchanged_since "$sum" "$i0" f
	no_leftovers .
	run --separate-stderr sr -f f -- sh -c 'printf A | dd of="$1" conv=notrunc status=none; cat' sh {}
	expect_status 125
	one_error_line
	unchanged_since "$sum" "$i0" f
	no_leftovers .
}

@test "an in-place editor on {} as another user: it cannot write the copy, and nothing is committed" {
	need_nobody
	mkdir d
	printf 'a\n' > d/f
	chown nobody d d/f
	sum=$(md5 d/f) i0=$(ino d/f)
	run as_nobody "$SNAPRUN" -f d/f -- sed -i s/a/A/ {}
	[ "$status" -ne 0 ]
	[ "$status" -ne 125 ]	# sed's own failure
	unchanged_since "$sum" "$i0" d/f
	no_leftovers d
}

@test "a background writer that never stops: 125 at once, naming it, not drained until the disk is full" {
	mount_tmpfs m 64M
	printf 'old\n' > m/f
	sum=$(md5 m/f) i0=$(ino m/f)
	run --separate-stderr sr -f m/f -- sh -c 'cat /dev/zero & echo hi'
	expect_status 125
	one_error_line
	[[ $stderr == *"left running"*" still holds its standard output"* ]]
	[[ $stderr != *"No space"* ]]
	unchanged_since "$sum" "$i0" m/f
	no_leftovers m
	# closing the pipe ended the writer (named where /proc tells)
	if [[ $stderr == *"(pid "* ]]; then
		pid=${stderr#*pid }
		pid_gone "${pid%%)*}" 10
	fi
}

@test "a slow background writer is noticed as soon as CMD ends, not after hundreds of its writes" {
	printf 'old\n' > f
	sum=$(md5 f) i0=$(ino f)
	# the writer counts its writes; closing the pipe ends it (SIGPIPE)
	run --separate-stderr sr -f f -- sh -c '
		(i=0; while echo x; do i=$((i + 1)); echo "$i" > "$0/count"; sleep 0.01; done) &
		echo hi' "$T"
	expect_status 125
	one_error_line
	unchanged_since "$sum" "$i0" f
	no_leftovers .
	# 0.2.0 read on until the pipe had been busy for 256 polls; a margin
	# of 100 writes (a second) is far from both
	sleep 0.2
	# (none at all when the pipe closed before its first write)
	n=$(cat count 2>/dev/null || echo 0)
	note "the writer wrote $n times"
	[ "$n" -lt 100 ]
}

@test "-f warns about FILE's other hard links, as the default mode does" {
	printf 'old\n' > f
	ln f other
	run --separate-stderr sr -f f -- sed s/old/new/
	expect_status 0
	one_error_line
	[[ $stderr == *"has 2 hard links; the commit replaces this name only"* ]]
	expect_content f $'new\n'
	expect_content other $'old\n'
}
