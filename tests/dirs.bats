#!/usr/bin/env bats
# Directory snapshots (issue 10): DIR is a whole tree, copied as `cp -a`
# does, committed by one atomic exchange. The sections follow the numbered
# items of the behaviour contract; mypy (item 14) is in slow/mypy_dirs.bats.

load common
load fs_helper
# Last: conc_helper's wait_for (PATH exists) replaces fs_helper's (PATH is
# non-empty); fs_helper keeps the latter as wait_nonempty.
load conc_helper

# Stop what a test left running when an assertion failed half-way (KILL_PIDS:
# our background jobs; GATED: start_gated's run), then undo every mount
# below $T and remove $T.
teardown() {
	local p mine=()
	for p in ${KILL_PIDS-} ${GATED-}; do
		# only our own children still running: a reaped pid may be reused
		[ "$(ps -o ppid= -p "$p" 2>/dev/null | tr -d ' ')" = "$BASHPID" ] && mine+=("$p")
	done
	for p in "${mine[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${mine[@]}"; do wait "$p" 2>/dev/null || true; done
	# read-only directories (0500) would stop an unprivileged rm -rf
	if [ -n "${T-}" ] && [ -d "$T" ]; then
		find "$T" -xdev -type d ! -perm -u+w -exec chmod u+w {} + 2>/dev/null || true
	fi
	unmount_all
}

# ------------------------------------------------------------------ helpers

# make_tree DIR: a small tree: nested and empty directories, files (an
# empty one, a binary one, a name with a space), symbolic links (relative,
# upwards, dangling, to a directory, to a directory outside the tree).
make_tree() {
	local d=$1
	mkdir -p "$d/sub/deeper" "$d/empty" "$d/sub/empty2" "$T/outside"
	printf 'alpha\n' >"$d/a"
	printf 'bravo\n' >"$d/b"
	head -c 70000 /dev/urandom >"$d/sub/bin"
	: >"$d/sub/zero"
	printf 'charlie\n' >"$d/sub/deeper/c"
	printf 'space\n' >"$d/sp ace"
	printf 'secret\n' >"$T/outside/secret"
	ln -s a "$d/link-a"
	ln -s ../a "$d/sub/link-up"
	ln -s /nonexistent/snaprun-target "$d/dangling"
	ln -s sub "$d/link-dir"
	ln -s "$T/outside" "$d/link-out"
}

# make_d: the tree d (make_tree), with its manifest in `before` and its
# inode in `i0`, as `unchanged d "$i0" "$before"` wants them.
make_d() {
	make_tree d
	before=$(manifest d)
	i0=$(ino d)
}

# manifest DIR: DIR's own type, mode, owner and mtime, then one line per
# entry below it (sorted relative name, type, mode, owner, link count,
# mtime, symlink target), then the checksum of every regular file. Two
# trees with the same manifest are copies as `cp -a` makes them.
manifest() {
	(
		cd "$1" || exit 1
		stat -c 'top|%F|%a|%U:%G|%Y' .
		find . -mindepth 1 -print0 | LC_ALL=C sort -z |
			xargs -0 -r stat -c '%n|%F|%a|%U:%G|%h|%Y|%N'
		find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r md5sum
	)
}

# unchanged DIR INODE MANIFEST: DIR still has that inode and manifest.
unchanged() {
	if [ "$(ino "$1")" != "$2" ]; then
		echo "$1 was replaced (inode $2 -> $(ino "$1"))" >&2
		return 1
	fi
	if [ "$(manifest "$1")" != "$3" ]; then
		echo "$1 changed:" >&2
		diff <(printf '%s\n' "$3") <(manifest "$1") >&2
		return 1
	fi
}

# same_text A B: two texts are equal, else show the difference.
same_text() {
	if [ "$1" != "$2" ]; then
		diff <(printf '%s\n' "$1") <(printf '%s\n' "$2") >&2
		return 1
	fi
}

# traced CALLS ARG...: `run` snaprun ARG... (bounded by timeout) under
# strace -f -y, its CALLS (with the paths of their descriptors) written to
# the file trace.
traced() {
	local calls=$1
	shift
	run strace -f -y -qq -o trace -e trace="$calls" timeout 30 "$SNAPRUN" "$@"
}

# limited OPTION VALUE ARG...: `snaprun ARG...` (bounded by timeout) under
# `ulimit OPTION VALUE`, with only stdin, stdout and stderr open.
limited() {
	local o=$1 v=$2
	shift 2
	perl -e 'use POSIX (); POSIX::close($_) for 3 .. 1023;
		exec { $ARGV[0] } @ARGV or exit 127' \
		bash -c 'ulimit "$1" "$2" && shift 2 && exec timeout -k 5 "$@"' \
		bash "$o" "$v" "$SR_TIMEOUT" "$SNAPRUN" "$@"
}

# ------------------------------------------------------- 1. the snapshot

@test "{} is .d.snaprun.XXXXXX/d beside DIR (mode 0700), a copy of the whole tree; symlinks stay links" {
	need_feature exchange
	make_tree d
	before=$(manifest d)
	export -f manifest
	run --separate-stderr sr d bash -c '
		manifest "$1" > "$2/in-snapshot"
		printf "%s\n" "$1" > "$2/path"
		stat -c %a "$1/.." > "$2/privmode"
		(cd "$1/../.." && pwd -P) > "$2/privparent"' bash {} "$T"
	expect_status 0
	same_text "$before" "$(cat in-snapshot)"
	p=$(cat path)
	[ "$(basename "$p")" = d ]
	[[ $(basename "$(dirname "$p")") =~ $(snapshot_dir_re d) ]]
	[ "$(cat privparent)" = "$(pwd -P)" ]
	[ "$(cat privmode)" = 700 ]
	# the links were not followed: still links, with their own target text
	[ -L d/link-dir ] && [ "$(readlink d/link-dir)" = sub ]
	[ -L d/link-out ] && [ "$(readlink d/link-out)" = "$T/outside" ]
	[ -L d/dangling ] && [ "$(readlink d/dangling)" = /nonexistent/snaprun-target ]
	[ -d d/empty ] && [ -z "$(ls -A d/empty)" ]
	same_text "$before" "$(manifest d)"
	no_leftovers .
}

@test "hard links inside the tree stay hard links in the copy and in the result" {
	need_feature exchange
	mkdir -p d/sub d/other
	printf 'linked\n' >d/h1
	ln d/h1 d/sub/h2
	printf 'pair\n' >d/sub/p1
	ln d/sub/p1 d/other/p2
	orig=$(ino d/h1)
	run sr d sh -c 'stat -c "%i %h" "$1/h1" "$1/sub/h2" "$1/sub/p1" "$1/other/p2" > "$0/links"' "$T" {}
	expect_status 0
	cat links >&2
	mapfile -t l <links
	# in the copy: each pair is one inode with 2 links, and not the original's
	[ "${l[0]}" = "${l[1]}" ] && [ "${l[0]#* }" = 2 ]
	[ "${l[2]}" = "${l[3]}" ] && [ "${l[2]#* }" = 2 ]
	[ "${l[0]% *}" != "${l[2]% *}" ]
	[ "${l[0]% *}" != "$orig" ]
	# and after the commit
	[ "$(ino d/h1)" = "$(ino d/sub/h2)" ]
	[ "$(stat -c %h d/h1)" = 2 ]
	[ "$(ino d/sub/p1)" = "$(ino d/other/p2)" ]
	[ "$(stat -c %h d/other/p2)" = 2 ]
	[ "$(ino d/h1)" != "$(ino d/sub/p1)" ]
	expect_content d/sub/h2 $'linked\n'
	expect_content d/other/p2 $'pair\n'
	no_leftovers .
}

@test "modes are kept, 0500 directories and 0400 files included (umask 077)" {
	need_feature exchange
	umask 077
	mkdir -p d/ro/inner d/open d/sticky d/sgid
	printf r >d/ro/file
	printf i >d/ro/inner/f
	printf x >d/open/exec
	printf w >d/open/shared
	chmod 400 d/ro/file d/ro/inner/f
	chmod 500 d/ro/inner d/ro
	chmod 755 d/open/exec d/open
	chmod 664 d/open/shared
	chmod 1777 d/sticky
	chmod 2750 d/sgid
	chmod 750 d
	before=$(manifest d)
	export -f manifest
	run sr d bash -c 'manifest "$1" > "$2/in-snapshot"' bash {} "$T"
	expect_status 0
	same_text "$before" "$(cat in-snapshot)"
	same_text "$before" "$(manifest d)"
	[ "$(stat -c %a d/ro d/ro/file d/ro/inner | tr '\n' ' ')" = "500 400 500 " ]
	[ "$(stat -c %a d)" = 750 ]
	no_leftovers .
}

@test "as an unprivileged owner: 0500 directories and 0400 files are copied, committed, and the old tree removed" {
	need_feature exchange
	need_nobody
	mkdir w rec
	chown nobody:nogroup w rec
	as_nobody sh -c '
		mkdir -p w/d/ro/inner w/d/rw && printf r > w/d/ro/file &&
		printf i > w/d/ro/inner/f && printf x > w/d/rw/x &&
		chmod 400 w/d/ro/file w/d/ro/inner/f && chmod 500 w/d/ro/inner w/d/ro'
	before=$(manifest w/d/ro)
	export -f manifest
	run --separate-stderr as_nobody timeout 30 "$SNAPRUN" w/d bash -c '
		manifest "$1/ro" > "$2/in-snapshot" && printf new > "$1/rw/new"' bash {} "$T/rec"
	expect_status 0
	same_text "$before" "$(cat rec/in-snapshot)"
	same_text "$before" "$(manifest w/d/ro)"
	expect_content w/d/rw/new new
	no_leftovers w
}

@test "owner and group of every entry, symlinks included, are kept (as root)" {
	need_feature exchange
	need_root "chown"
	make_tree d
	chown nobody:nogroup d d/a d/sub d/sub/deeper/c
	chown daemon:daemon d/empty d/sub/bin
	chown -h nobody:nogroup d/link-a d/dangling
	chown -h daemon:nogroup d/sub/link-up
	owners() { (cd "$1" && find . -print0 | LC_ALL=C sort -z | xargs -0 stat -c '%n %U:%G'); }
	before=$(owners d)
	[[ $before == *"./dangling nobody:nogroup"* ]]
	export -f owners
	run sr d bash -c 'owners "$1" > "$2/in-snapshot"' bash {} "$T"
	expect_status 0
	same_text "$before" "$(cat in-snapshot)"
	same_text "$before" "$(owners d)"
	no_leftovers .
}

@test "user.* extended attributes of files and directories are kept" {
	need_feature exchange
	need_feature xattrs
	need_cmd setfattr
	need_cmd getfattr
	make_tree d
	setfattr -n user.snaprun.k -v file d/a 2>/dev/null || skip "this filesystem has no user xattrs"
	setfattr -n user.snaprun.k -v dir d/sub
	setfattr -n user.snaprun.top -v top d
	setfattr -n user.snaprun.bin -v 0x00ff01 d/sub/deeper/c
	setfattr -n user.snaprun.empty d/empty
	xattrs() {
		(cd "$1" && find . ! -type l -print0 | LC_ALL=C sort -z |
			xargs -0 getfattr -h -d -e hex -m '^user\.' -- 2>/dev/null)
	}
	before=$(xattrs d)
	[[ $before == *user.snaprun.bin=0x00ff01* ]]
	export -f xattrs
	run sr d bash -c 'xattrs "$1" > "$2/in-snapshot"' bash {} "$T"
	expect_status 0
	same_text "$before" "$(cat in-snapshot)"
	same_text "$before" "$(xattrs d)"
	no_leftovers .
}

@test "ACLs are copied exactly; a default ACL on DIR's parent adds nothing to the copy or the result" {
	need_feature exchange
	need_feature xattrs
	need_cmd setfacl
	need_cmd getfacl
	mkdir p
	make_tree p/d
	setfacl -m u:daemon:r p/d/a 2>/dev/null || skip "this filesystem has no POSIX ACLs"
	setfacl -m u:daemon:rx,g:daemon:r p/d/sub
	setfacl -d -m u:daemon:rwx p/d/sub
	setfacl -m u:daemon:rwx p/d
	# set last: the tree inherited nothing from it, the private directory would
	setfacl -d -m u:nobody:rwx p
	acls() { (cd "$1" && find . ! -type l -print0 | LC_ALL=C sort -z | xargs -0 getfacl -p --); }
	before=$(acls p/d)
	[[ $before != *nobody* ]]
	[[ $before == *default:user:daemon:rwx* ]]
	export -f acls
	run sr p/d bash -c 'acls "$1" > "$2/in-snapshot"; printf new > "$1/newfile"; mkdir "$1/newdir"' bash {} "$T"
	expect_status 0
	same_text "$before" "$(cat in-snapshot)"
	after=$(cd p/d && find . ! -type l ! -name newfile ! -name newdir -print0 |
		LC_ALL=C sort -z | xargs -0 getfacl -p --)
	same_text "$before" "$after"
	# what CMD made inherits from the copy's ACLs only, never from p's default
	run getfacl -p p/d/newfile p/d/newdir
	[[ $output != *nobody* ]] || { echo "$output" >&2; false; }
	no_leftovers p
}

@test "modification times of files, directories and symlinks are kept" {
	need_feature exchange
	make_tree d
	local i=0 e
	while IFS= read -r -d '' e; do
		i=$((i + 1))
		touch -h -d "@$((1000000000 + i * 3671))" "$e"
	done < <(find d -print0)
	mtimes() { (cd "$1" && find . -print0 | LC_ALL=C sort -z | xargs -0 stat -c '%n %Y'); }
	before=$(mtimes d)
	[ "$(stat -c %Y d/link-out)" -lt 1100000000 ]
	[ "$(stat -c %Y d/sub)" -lt 1100000000 ]
	export -f mtimes
	run sr d bash -c 'mtimes "$1" > "$2/in-snapshot"' bash {} "$T"
	expect_status 0
	same_text "$before" "$(cat in-snapshot)"
	same_text "$before" "$(mtimes d)"
	no_leftovers .
}

# ----------------------------------------- 2. refused before CMD runs

# refused_before_cmd DIR WANT: snaprun DIR exits 125 with one error line
# naming WANT, without running CMD; DIR keeps its inode and manifest and
# nothing is left beside it.
refused_before_cmd() {
	local d=$1 want=$2 before i0
	before=$(manifest "$d")
	i0=$(ino "$d")
	run --separate-stderr timeout -k 2 15 "$SNAPRUN" "$d" sh -c ': > "$0/ran"; echo new > "$1/a"' "$T" {}
	expect_status 125
	one_error_line
	[[ $stderr == *"$want"* ]] || { echo "stderr does not name $want: $stderr" >&2; return 1; }
	[ ! -e ran ]
	unchanged "$d" "$i0" "$before"
	no_leftovers "$(dirname "$d")"
}

@test "a FIFO inside the tree: 125 before CMD, naming it, nothing changed (no hang)" {
	need_feature exchange
	make_tree d
	mkfifo d/sub/deeper/the-fifo
	refused_before_cmd d sub/deeper/the-fifo
	[ -p d/sub/deeper/the-fifo ]
}

@test "a unix socket inside the tree: 125 before CMD, naming it" {
	need_feature exchange
	need_cmd python3
	make_tree d
	python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' d/sub/the-socket ||
		skip "cannot make a unix socket"
	refused_before_cmd d sub/the-socket
	[ -S d/sub/the-socket ]
}

@test "a character or block device inside the tree: 125 before CMD, naming it" {
	need_feature exchange
	need_root "mknod"
	make_tree d
	mknod d/sub/the-chardev c 1 3 2>/dev/null || skip "cannot make a device node here"
	refused_before_cmd d sub/the-chardev
	rm d/sub/the-chardev
	mknod d/sub/deeper/the-blockdev b 7 200 2>/dev/null || skip "cannot make a block device node here"
	refused_before_cmd d sub/deeper/the-blockdev
}

@test "a tmpfs mounted inside the tree: 125 before CMD, naming the mount point" {
	need_feature exchange
	need_root "mount"
	make_tree d
	mkdir d/sub/mounted
	mount -t tmpfs -o size=1m tmpfs d/sub/mounted 2>/dev/null || skip "cannot mount a tmpfs here"
	printf m >d/sub/mounted/in-tmpfs
	refused_before_cmd d sub/mounted
	findmnt -rn "$T/d/sub/mounted" >/dev/null
}

@test "a bind mount of a directory of the same filesystem inside the tree: 125 before CMD, naming it" {
	need_feature exchange
	need_root "mount --bind"
	make_tree d
	mkdir -p elsewhere d/sub/bound
	printf e >elsewhere/e
	mount --bind elsewhere d/sub/bound 2>/dev/null || skip "cannot bind-mount here"
	[ "$(stat -c %d d/sub/bound)" = "$(stat -c %d d)" ]
	refused_before_cmd d sub/bound
	findmnt -rn "$T/d/sub/bound" >/dev/null
}

@test "DIR itself a mount point: 125 before CMD, naming it" {
	need_feature exchange
	need_root "mount"
	mkdir mnt-dir
	mount -t tmpfs -o size=1m tmpfs mnt-dir 2>/dev/null || skip "cannot mount a tmpfs here"
	make_tree mnt-dir
	refused_before_cmd mnt-dir mnt-dir
	findmnt -rn "$T/mnt-dir" >/dev/null
}

# ------------------------------------------------------------- 3. commit

@test "commit: DIR is replaced by the new tree (new inode), the old tree is removed, nothing left" {
	need_feature exchange
	make_tree d
	# a link from outside to a file of the old tree: its count drops when
	# the old tree is removed
	ln d/b outside-link
	[ "$(stat -c %h outside-link)" = 2 ]
	i0=$(ino d)
	run --separate-stderr sr d sh -c '
		printf new > "$1/a"; rm "$1/sub/deeper/c"; mkdir -p "$1/added/x"
		printf y > "$1/added/x/y"; ln -s added/x/y "$1/link-y"' sh {}
	expect_status 0
	[ "$(ino d)" != "$i0" ]
	expect_content d/a new
	[ ! -e d/sub/deeper/c ]
	expect_content d/added/x/y y
	[ "$(readlink d/link-y)" = added/x/y ]
	expect_content d/b $'bravo\n'
	[ "$(ino d/b)" != "$(ino outside-link)" ]
	[ "$(stat -c %h outside-link)" = 1 ]
	no_leftovers .
}

@test "the commit is one renameat2 RENAME_EXCHANGE with DIR; an absent DIR comes in by RENAME_NOREPLACE" {
	need_feature exchange
	need_strace renameat2
	make_tree d
	# renames: one line per successful rename-family call, "FLAGS OLD NEW"
	# with the directory descriptors resolved (strace -y)
	renames() {
		perl -ne '
			BEGIN { $cwd = shift }
			next unless /^(?:\d+ +)?(rename|renameat|renameat2)\((.*)\) = 0$/;
			my ($f, $a) = ($1, $2);
			$a =~ s/AT_FDCWD(?!<)/AT_FDCWD<$cwd>/g;
			if ($f eq "rename") {
				my @p = $a =~ /^"([^"]*)", "([^"]*)"/ or next;
				s{^(?!/)}{$cwd/} for @p;
				print "NONE $p[0] $p[1]\n";
			} else {
				my ($d1, $n1, $d2, $n2, $fl) =
					$a =~ /^\S+?<([^>]*)>, "([^"]*)", \S+?<([^>]*)>, "([^"]*)"(?:, (\S+))?/ or next;
				print(($fl // "NONE") . " $d1/$n1 $d2/$n2\n");
			}' "$T" trace
	}
	traced rename,renameat,renameat2 d sh -c 'printf new > "$1/a"' sh {}
	expect_status 0
	expect_content d/a new
	renames >&2
	# exactly one exchange, with DIR
	[ "$(renames | grep -c '^RENAME_EXCHANGE ')" -eq 1 ]
	renames | grep "^RENAME_EXCHANGE " | grep -q " $T/d\( \|$\)"
	# and no other rename ever moved DIR away or put something at its name
	! renames | grep -v '^RENAME_EXCHANGE ' | grep " $T/d\( \|$\)"
	traced rename,renameat,renameat2 new-dir sh -c 'mkdir "$1" && printf n > "$1/n"' sh {}
	expect_status 0
	expect_content new-dir/n n
	renames >&2
	renames | grep "^RENAME_NOREPLACE " | grep -q " $T/new-dir$"
	! renames | grep -v '^RENAME_NOREPLACE ' | grep " $T/new-dir\( \|$\)"
	no_leftovers .
}

@test "the new tree is flushed before the exchange and the parent after it; --no-sync flushes nothing" {
	need_feature exchange
	need_strace syncfs
	make_tree d
	local calls=fsync,fdatasync,syncfs,sync,sync_file_range,rename,renameat,renameat2
	traced $calls d sh -c 'printf new > "$1/sub/deeper/c"' sh {}
	expect_status 0
	expect_content d/sub/deeper/c new
	cat trace >&2
	awk '/RENAME_EXCHANGE/ { r = NR } /sync[a-z_]*\(/ && !r { before++ } /sync[a-z_]*\(/ && r { after++ } END { exit !(r && before && after) }' trace
	traced $calls --no-sync d sh -c 'printf newer > "$1/sub/deeper/c"' sh {}
	expect_status 0
	expect_content d/sub/deeper/c newer
	grep -q RENAME_EXCHANGE trace
	! grep -Eq 'sync[a-z_]*\(' trace
	no_leftovers .
}

@test "DIR given as a symlink to a directory: the target is replaced, the link stays a link" {
	need_feature exchange
	make_tree real
	ln -s real link
	i0=$(ino real)
	run sr link sh -c 'printf new > "$1/a"' sh {}
	expect_status 0
	[ -L link ] && [ "$(readlink link)" = real ]
	[ "$(ino real)" != "$i0" ]
	expect_content real/a new
	no_leftovers .
}

@test "CMD exits non-zero: DIR unchanged (same inode, same content); --commit-on=0,1 commits 1, not 2" {
	need_feature exchange
	make_d
	for st in 1 2 42; do
		run sr d sh -c 'printf new > "$1/a"; mkdir "$1/more"; exit "$2"' sh {} "$st"
		expect_status "$st"
		unchanged d "$i0" "$before"
		no_leftovers .
	done
	run sr --commit-on=0,1 d sh -c 'printf two > "$1/a"; exit 2' sh {}
	expect_status 2
	unchanged d "$i0" "$before"
	run sr --commit-on=0,1 d sh -c 'printf one > "$1/a"; exit 1' sh {}
	expect_status 1
	[ "$(ino d)" != "$i0" ]
	expect_content d/a one
	no_leftovers .
}

@test "CMD that replaces {} by a new directory of its own: that directory is committed" {
	need_feature exchange
	make_tree d
	i0=$(ino d)
	run sr d sh -c 'rm -rf "$1" && mkdir "$1" && printf fresh > "$1/only"' sh {}
	expect_status 0
	[ "$(ino d)" != "$i0" ]
	[ "$(ls -A d)" = only ]
	expect_content d/only fresh
	no_leftovers .
}

@test "SIGTERM to snaprun while CMD runs: nothing committed, snaprun dies by SIGTERM, nothing left" {
	need_feature exchange
	make_d
	waitstatus "$T/st" "${ALARM[@]}" 30 "$SNAPRUN" d sh -c \
		'printf new > "$1/a"; echo $$ > "$0/cmdpid"; exec sleep 30' "$T" {} </dev/null >out 2>err 3>&- &
	KILL_PIDS+=" $!"
	wait_for "$T/cmdpid"
	wait_for "$T/st.pid"
	cmdpid=$(cat cmdpid)
	kill -TERM "$(cat st.pid)"
	wait_for "$T/st" 15
	[ "$(cat st)" = "signal 15 core 0" ]
	pid_gone "$cmdpid"
	unchanged d "$i0" "$before"
	no_leftovers .
}

# ------------------------------------------- 4. bad results refused at commit

# refused_at_commit SCRIPT [WANT]: with the tree d, snaprun d sh -c SCRIPT
# sh {} exits 125 with one error line (naming WANT if given); d is
# unchanged and nothing is left.
refused_at_commit() {
	local before i0
	before=$(manifest d)
	i0=$(ino d)
	run --separate-stderr timeout -k 2 15 "$SNAPRUN" d sh -c "$1" sh {}
	expect_status 125
	one_error_line
	if [ -n "${2-}" ]; then
		[[ $stderr == *"$2"* ]] || { echo "stderr does not name $2: $stderr" >&2; return 1; }
	fi
	unchanged d "$i0" "$before"
	no_leftovers .
}

@test "CMD replaces {} with a symlink (to a good tree, or dangling): 125, DIR unchanged, nothing left" {
	need_feature exchange
	make_tree d
	make_tree good
	printf evil >good/a
	refused_at_commit 'rm -rf "$1" && ln -s "'"$T"'/good" "$1"'
	refused_at_commit 'rm -rf "$1" && ln -s /nonexistent/x "$1"'
	expect_content good/a evil
	[ ! -L d ]
}

@test "CMD replaces {} with a regular file: 125, DIR unchanged, nothing left" {
	need_feature exchange
	make_tree d
	refused_at_commit 'rm -rf "$1" && printf file > "$1"'
	[ -d d ]
}

@test "CMD makes a FIFO or a socket inside the tree: 125 naming it, DIR unchanged, nothing left" {
	need_feature exchange
	make_tree d
	refused_at_commit 'printf new > "$1/a" && mkfifo "$1/sub/made-fifo"' sub/made-fifo
	command -v python3 >/dev/null || skip "python3 is not installed"
	refused_at_commit 'printf new > "$1/a" && python3 -c "import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])" "$1/sub/deeper/made-sock"' \
		sub/deeper/made-sock
}

# ------------------------------------------------------------- 5. absent DIR

@test "absent DIR (and parents): CMD does mkdir {} and fills it, committed as a directory" {
	need_feature exchange
	[ ! -e x ]
	run --separate-stderr sr x/y/d sh -c '
		mkdir "$1" && mkdir -p "$1/s/t" && printf one > "$1/s/t/f" &&
		ln -s s/t/f "$1/l" && mkdir "$1/empty"' sh {}
	expect_status 0
	[ -d x/y/d ] && [ ! -L x/y/d ]
	expect_content x/y/d/s/t/f one
	[ "$(readlink x/y/d/l)" = s/t/f ]
	[ -d x/y/d/empty ]
	no_leftovers x/y
	no_leftovers x
	# and the next run starts from it
	run sr x/y/d sh -c 'cat "$1/s/t/f" > "$0/seen" && printf two > "$1/s/t/f"' "$T" {}
	expect_status 0
	expect_content seen one
	expect_content x/y/d/s/t/f two
	no_leftovers x/y
}

@test "absent DIR and CMD makes nothing: exit 0, one line saying 'nothing', nothing created" {
	run --separate-stderr sr d true
	expect_status 0
	one_error_line
	[[ $stderr == *nothing* ]]
	[ ! -e d ] && [ ! -L d ]
	no_leftovers .
}

# ----------------------------------------------------------------- 6. readers

# commit_versions N: N commits in a row on d, commit i writing "i" into
# d/a, d/b and d/sub/c.
commit_versions() {
	local i
	for ((i = 1; i <= $1; i++)); do
		timeout 30 "$SNAPRUN" --no-sync d sh -c \
			'for f in a b sub/c; do echo "$2" > "$1/$f"; done' sh {} "$i" ||
			{ echo "commit $i failed" >&2; return 1; }
	done
}

@test "stress: readers: [ -d DIR ] never fails during many commits" {
	need_feature exchange
	mkdir -p d/sub
	for f in a b sub/c; do echo 0 >"d/$f"; done
	# a bash of its own: bats' traps would slow a loop in this shell down
	bash -c '
		n=0 bad=0 end=$((SECONDS + 60))
		while [ ! -e stop ] && [ "$SECONDS" -lt "$end" ]; do
			[ -d d ] || bad=$((bad + 1))
			n=$((n + 1))
		done
		echo "$n $bad" > reader.out' 3>&- &
	reader=$!
	KILL_PIDS+=" $reader"
	commits=$(stress 30 100)
	commit_versions "$commits"
	touch stop
	wait "$reader"
	read -r n bad <reader.out
	note "[ -d DIR ]: $n checks during $commits commits, $bad failed"
	[ "$bad" -eq 0 ]
	[ "$n" -ge $((commits * 10)) ]
	expect_content d/a "$commits"$'\n'
	no_leftovers .
}

@test "stress: readers: one that opens DIR and reads its files sees one version, never two mixed" {
	need_feature exchange
	mkdir -p d/sub
	for f in a b sub/c; do echo 0 >"d/$f"; done
	# chdir into DIR, then read a, b and sub/c relative to it, as
	# `cd DIR && cat a b sub/c` does
	perl -e '
		my ($dir, $stop, $out) = @ARGV;
		my ($n, $whole, $failed, $gone, @mixed, %seen) = (0, 0, 0, 0);
		my $end = time + 60;
		sub slurp { open(my $f, "<", $_[0]) or return undef; local $/; my $s = <$f>; return $s }
		until (-e $stop || time > $end) {
			$n++;
			unless (chdir $dir) { $gone++; next }
			my @v = map { slurp($_) } qw(a b sub/c);
			if (grep { !defined } @v) { $failed++; next }
			if ($v[0] eq $v[1] && $v[1] eq $v[2]) { $whole++; $seen{$v[0]} = 1 }
			else { chomp @v; push @mixed, join(",", @v) }
		}
		open(my $o, ">", $out) or die;
		printf $o "%d %d %d %d %d %d\n", $n, $whole, $failed, $gone, scalar @mixed, scalar keys %seen;
		print $o "$_\n" for @mixed[0 .. ($#mixed < 9 ? $#mixed : 9)];
	' "$T/d" "$T/stop" "$T/reader.out" 3>&- &
	reader=$!
	KILL_PIDS+=" $reader"
	commits=$(stress 30 100)
	commit_versions "$commits"
	touch stop
	wait "$reader"
	read -r n whole failed gone mixed versions <reader.out
	note "reader in DIR: $n reads during $commits commits: $whole whole ($versions versions)," \
		"$failed failed as the old tree went, $gone could not enter DIR, $mixed mixed"
	[ "$mixed" -eq 0 ] || { cat reader.out >&2; false; }
	[ "$gone" -eq 0 ]
	[ "$whole" -ge $((commits / 5)) ]
	[ "$versions" -ge 2 ]
	expect_content d/sub/c "$commits"$'\n'
	no_leftovers .
}

# ----------------------------------------------------------- 7. concurrency

@test "slow: --lock: 8 parallel writers each adding a file: all 8 there, runs never overlap" {
	need_feature exchange
	mkdir d
	echo base >d/base
	parallel_writers 8 --lock d sh -c \
		'mkdir "$0/busy" || exit 9; ls "$1" > /dev/null; sleep 0.05; echo @i@ > "$1/w@i@"; rmdir "$0/busy"' "$T" {}
	for i in $(seq 1 8); do expect_content "d/w$i" "$i"$'\n'; done
	[ "$(ls d | wc -l)" -eq 9 ]
	no_leftovers .
}

@test "slow: retry --retries=50: 8 parallel writers each adding a file lose none, conflicts happened" {
	need_feature exchange
	mkdir d
	echo base >d/base
	: >calls
	parallel_writers 8 --on-conflict=retry --retries=50 d sh -c \
		'echo @i@ >> "$0/calls"; ls "$1" > /dev/null; sleep 0.05; echo @i@ > "$1/w@i@"' "$T" {}
	for i in $(seq 1 8); do expect_content "d/w$i" "$i"$'\n'; done
	[ "$(ls d | wc -l)" -eq 9 ]
	calls=$(wc -l <calls)
	note "retry: 8 directory writers, $calls CMD runs"
	[ "$calls" -gt 8 ]
	no_leftovers .
}

@test "slow: fail: of 8 parallel writers exactly those that exit 0 have their file" {
	need_feature exchange
	local n=8 i pids=() st ok=0 lost=0
	mkdir d
	echo base >d/base
	for i in $(seq 1 "$n"); do
		timeout 60 "$SNAPRUN" --on-conflict=fail d sh -c \
			'ls "$1" > /dev/null; sleep 0.05; echo "$2" > "$1/w$2"' sh {} "$i" 3>&- &
		pids+=($!)
		sleep 0.02
	done
	for i in $(seq 1 "$n"); do
		st=0
		wait "${pids[i - 1]}" || st=$?
		case $st in
		0) ok=$((ok + 1)); [ -f "d/w$i" ] || { echo "writer $i exited 0, its file is missing" >&2; false; } ;;
		75) lost=$((lost + 1)); [ ! -e "d/w$i" ] || { echo "writer $i exited 75, its file is there" >&2; false; } ;;
		*) echo "writer $i exited $st" >&2; false ;;
		esac
	done
	note "fail: $n directory writers, $ok committed, $lost refused with 75"
	[ "$ok" -ge 1 ]
	[ "$(ls d | wc -l)" -eq $((ok + 1)) ]
	no_leftovers .
}

# held_while_b_commits OPTION B-SCRIPT: d/who holds "old"; run A,
# `snaprun OPTION d` with CMD `gate A from-A {}/who`, is held in CMD while
# run B, `snaprun OPTION d sh -c B-SCRIPT sh {}`, commits (exit 0); then A
# is let go.
held_while_b_commits() {
	make_gate
	mkdir d
	echo old >d/who
	start_gated A.started.1 "$1" d "$T/gate" A from-A {}/who
	run timeout 10 "$SNAPRUN" "$1" d sh -c "$2" sh {}
	expect_status 0
	touch A.go.1
}

@test "fail: a run whose DIR another run committed meanwhile exits 75, the other's tree stays" {
	need_feature exchange
	held_while_b_commits --on-conflict=fail 'echo from-B > "$1/who"; : > "$1/b-was-here"'
	gated_exits 75
	GATED=
	expect_content d/who $'from-B\n'
	[ -e d/b-was-here ]
	no_leftovers .
}

@test "keep: the conflicting run exits 0 and the other's tree stays; overwrite: the last run wins" {
	need_feature exchange
	held_while_b_commits --on-conflict=keep 'echo from-B > "$1/who"'
	gated_exits 0
	expect_content d/who $'from-B\n'
	start_gated B.started.1 d "$T/gate" B from-A2 {}/who
	run timeout 10 "$SNAPRUN" d sh -c 'echo from-C > "$1/who"' sh {}
	expect_status 0
	expect_content d/who $'from-C\n'
	touch B.go.1
	gated_exits 0
	GATED=
	expect_content d/who $'from-A2\n'
	no_leftovers .
}

@test "stress: snapshots taken while other runs commit are each one whole version (copy taken again)" {
	need_feature exchange
	local i j bad=0 runs=0
	mkdir d
	for i in $(seq 0 99); do echo 0 >"d/f$i"; done
	# the writer: 20 commits, commit v writes "v" into all 100 files
	(
		for v in $(seq 1 20); do
			timeout 30 "$SNAPRUN" --no-sync d sh -c 'for f in "$1"/f*; do echo "$2" > "$f"; done' sh {} "$v" ||
				exit 1
		done
		: >"$T/writer.done"
	) 3>&- &
	writer=$!
	KILL_PIDS+=" $writer"
	# meanwhile, runs whose CMD checks its snapshot: 100 files, one version;
	# exit 5 when whole (nothing committed), 3 when not
	while [ ! -e writer.done ] && kill -0 "$writer" 2>/dev/null && [ "$runs" -lt 300 ]; do
		runs=$((runs + 1))
		st=0
		timeout 30 "$SNAPRUN" --no-sync d sh -c '
			[ "$(ls "$1" | wc -l)" -eq 100 ] || exit 3
			[ "$(cat "$1"/f* | sort -u | wc -l)" -eq 1 ] || exit 3
			exit 5' sh {} || st=$?
		[ "$st" -eq 5 ] || { bad=$((bad + 1)); echo "run $runs exited $st" >&2; }
	done
	wait "$writer"
	note "snapshot consistency: $runs runs during 20 commits of 100 files, $bad saw a partial or mixed tree"
	[ "$bad" -eq 0 ]
	[ "$runs" -ge 5 ]
	[ "$(cat d/f0 d/f99 | sort -u)" = 20 ]
	no_leftovers .
}

# ------------------------------------------------------------ 8. SIGKILL

# make_version DIR SEED: a tree of 10 directories of 8 small files and one
# file of 1 MiB; SEED 1 has t9 where SEED 0 has s9, and other bytes.
make_version() {
	perl -e '
		my ($d, $seed) = @ARGV;
		srand($seed + 7);
		mkdir $d or die "$d: $!";
		for my $i (0 .. 9) {
			my $sub = ($i == 9 && $seed) ? "t$i" : "s$i";
			mkdir "$d/$sub" or die;
			for my $j (0 .. 7) {
				open(my $f, ">", "$d/$sub/f$j") or die;
				print $f join("", map { chr(int(rand(256))) } 1 .. (1 + int(rand(8192))));
				close $f;
			}
		}
		open(my $f, ">", "$d/big") or die;
		print $f pack("N*", map { int(rand(2**32)) } 1 .. 262144);
		close $f;
	' "$1" "$2"
}

@test "stress: SIGKILL at random instants of copy, CMD and commit: DIR is the old or the new tree whole, leftovers cleaned" {
	need_feature exchange
	local iters=${SNAPRUN_DIR_CRASH_ITERS:-$(stress 9 40)}
	# CMD makes the snapshot version NEXT: empty it, copy NEXT in
	local work='rm -rf "$2"/* && cp -a "$1"/. "$2"/'
	mkdir src
	make_version src/v0 0
	make_version src/v1 1
	cp -a src/v0 d
	[ "$(tree_sum d)" = "$(tree_sum src/v0)" ]
	# Rounds, each calibrated afresh (median of 5: a whole run, and when
	# its CMD starts and ends), until a third of the kills found the run
	# still running: a third of the kills anywhere, a third in the copy
	# before CMD, a third after CMD (the commit and the removal of the old
	# tree).
	kill_rounds $((iters / 3)) "$iters" 2 d "$work" '0-$FULL' '0-$EARLY' '$LATE-$FULL'
	note "dir crash: $TALLY"
}

@test "a killed run's leftover tree stays while its CMD lives, --clean removes it once CMD ended" {
	need_feature exchange
	make_gate
	make_d
	kill_gated d "$T/gate" C new {}/a
	local left=$LEFT
	[ -n "$left" ]
	[ -d "$left/d/sub/deeper" ]
	[ "$(cat "$left/d/a")" = new ]
	run timeout 10 "$SNAPRUN" --clean d
	[ "$status" -eq 0 ]
	[ "$(leftovers .)" = "$left" ]
	[ -d "$left/d/sub" ]
	# an ordinary run must not take it either
	run timeout 10 "$SNAPRUN" d -- sh -c 'exit 1'
	[ "$status" -eq 1 ]
	[ "$(leftovers .)" = "$left" ]
	touch C.go.1
	wait "$DRAIN"
	run timeout 10 "$SNAPRUN" --clean d
	[ "$status" -eq 0 ]
	no_leftovers .
	unchanged d "$i0" "$before"
	# the cleanup never followed the tree's link out of it
	expect_content outside/secret $'secret\n'
}

# -------------------------------------------------------------- 9. SQLite

# shards.py DIR FIRST LAST TAG clean|kill: in DIR, cache.FIRST.db ..
# cache.LAST.db, each in WAL mode with a table t(k, v), get the row (k, TAG),
# committed; then every connection is closed, or the writer kills itself
# with SIGKILL, its commits only in the -wal files.
write_shards_py() {
	cat >"$T/shards.py" <<-'EOF'
	import os, signal, sqlite3, sys
	d, first, last, tag, how = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
	conns = []
	for k in range(first, last + 1):
	    c = sqlite3.connect(os.path.join(d, "cache.%d.db" % k))
	    assert c.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
	    c.execute("PRAGMA wal_autocheckpoint=0")
	    c.execute("CREATE TABLE IF NOT EXISTS t(k INTEGER, v TEXT)")
	    c.execute("INSERT INTO t VALUES(?, ?)", (k, tag))
	    c.commit()
	    conns.append(c)
	if how == "kill":
	    os.kill(os.getpid(), signal.SIGKILL)
	for c in conns:
	    c.close()
	EOF
}

# sqlite3_shards DIR FIRST LAST TAG: the same with the sqlite3 CLI.
sqlite3_shards() {
	local k
	for k in $(seq "$2" "$3"); do
		sqlite3 "$1/cache.$k.db" "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS t(k INTEGER, v TEXT);
			INSERT INTO t VALUES($k, '$4');" >/dev/null || return 1
	done
}

# shards_hold DIR ROWS: every cache.K.db in DIR passes integrity_check and
# holds the rows (K, v) for v in ROWS (comma-separated), in WAL mode.
shards_hold() {
	local k got
	for k in $(seq 0 15); do
		got=$(sqlite3 "$1/cache.$k.db" "pragma integrity_check; pragma journal_mode;
			SELECT group_concat(k || ':' || v) FROM (SELECT * FROM t ORDER BY rowid);")
		local want
		want=$(printf 'ok\nwal\n%s' "$(printf '%s' "$2" | tr ',' '\n' | sed "s/^/$k:/" | paste -sd,)")
		[ "$got" = "$want" ] || { printf 'cache.%d.db: got\n%s\nwanted\n%s\n' "$k" "$got" "$want" >&2; return 1; }
	done
}

@test "slow: CMD writes 16 WAL-mode databases (python3 sqlite3 and the sqlite3 CLI): committed, integrity ok, rows there" {
	need_feature exchange
	need_cmd sqlite3
	need_cmd python3
	write_shards_py
	export -f sqlite3_shards
	mkdir d
	echo 'Signature: 8a477f597d28d172789f06886806bc55' >d/CACHEDIR.TAG
	run sr d bash -c 'python3 "$0/shards.py" "$1" 0 7 one clean && sqlite3_shards "$1" 8 15 one' "$T" {}
	expect_status 0
	[ "$(ls d/cache.*.db | wc -l)" -eq 16 ]
	shards_hold d one
	# a second run, each tool on the other half
	run sr d bash -c 'sqlite3_shards "$1" 0 7 two && python3 "$0/shards.py" "$1" 8 15 two clean' "$T" {}
	expect_status 0
	shards_hold d one,two
	[ -f d/CACHEDIR.TAG ]
	no_leftovers .
}

@test "slow: a writer killed after its commits leaves -wal files: still committed, the rows are in DIR's databases" {
	need_feature exchange
	need_cmd sqlite3
	need_cmd python3
	write_shards_py
	mkdir d
	python3 shards.py d 0 15 one clean
	i0=$(ino d)
	run --separate-stderr sr d sh -c 'python3 "$0/shards.py" "$1" 0 15 two kill; echo "$?" > "$0/writer.st"; exit 0' "$T" {}
	expect_status 0
	[ "$(cat writer.st)" = 137 ]
	[ "$(ino d)" != "$i0" ]
	# the sidecars travelled with the tree (checked before anything opens them)
	for k in $(seq 0 15); do
		[ -s "d/cache.$k.db-wal" ] || { echo "d/cache.$k.db-wal is missing or empty" >&2; ls -la d >&2; false; }
	done
	# the next snapshot carries them too: its CMD sees the rows (exit 3: no commit)
	run sr d sh -c 'for k in $(seq 0 15); do sqlite3 "$1/cache.$k.db" "SELECT group_concat(v) FROM t" || exit 1; done > "$0/seen"; exit 3' "$T" {}
	expect_status 3
	[ "$(sort -u seen)" = one,two ]
	[ "$(wc -l <seen)" -eq 16 ]
	shards_hold d one,two
	no_leftovers .
}

# ----------------------------------------------------------------- 10. --root

@test "--root R R/3.11: {} is the private copy of R with 3.11 inside; the commit replaces R/3.11" {
	need_feature exchange
	mkdir -p R/3.11/sub
	echo old >R/3.11/a
	echo deep >R/3.11/sub/c
	echo other >R/keepme
	i0=$(ino R/3.11)
	run sr --root R R/3.11 -- sh -c '
		test "$SNAPRUN_ROOT" = "$1" && test -d "$1/3.11" && test "$(cat "$1/3.11/a")" = old &&
		test "$(cat "$1/3.11/sub/c")" = deep && echo new > "$1/3.11/b" && printf %s "$1" > "$0/root"' "$T" {}
	expect_status 0
	expect_content R/3.11/b $'new\n'
	expect_content R/3.11/a $'old\n'
	expect_content R/3.11/sub/c $'deep\n'
	[ "$(ino R/3.11)" != "$i0" ]
	expect_content R/keepme $'other\n'
	# the private directory was beside R/3.11
	[[ $(basename "$(cat root)") =~ $(snapshot_dir_re 3.11) ]]
	[ "$(cd "$(dirname "$(cat root)")" && pwd -P)" = "$(cd R && pwd -P)" ]
	no_leftovers R
	# CMD that rebuilds 3.11 from scratch under {}
	run sr --root R R/3.11 -- sh -c 'rm -rf "$1/3.11" && mkdir "$1/3.11" && echo rebuilt > "$1/3.11/r"' sh {}
	expect_status 0
	[ "$(ls R/3.11)" = r ]
	no_leftovers R
}

@test "--root R R/3.11 with nothing there yet: CMD makes {}/3.11 and it is committed" {
	need_feature exchange
	run sr --root R R/3.11 -- sh -c 'mkdir -p "$1/3.11/x" && echo cold > "$1/3.11/x/f"' sh {}
	expect_status 0
	[ -d R/3.11 ]
	expect_content R/3.11/x/f $'cold\n'
	no_leftovers R
	no_leftovers .
}

# ------------------------------------------------------ 11. --keep, --clean

@test "--keep: a failed CMD keeps the tree copy in .d.snaprun.XXXXXX.kept/d, named on stderr; --clean leaves it" {
	need_feature exchange
	make_d
	run --separate-stderr sr --keep d sh -c 'printf new > "$1/a"; mkdir "$1/added"; exit 4' sh {}
	expect_status 4
	unchanged d "$i0" "$before"
	kept=$(find . -maxdepth 1 -name '.d.snaprun.*.kept')
	[ -n "$kept" ] && [ "$(printf '%s\n' "$kept" | wc -l)" -eq 1 ]
	[ -d "$kept/d" ]
	expect_content "$kept/d/a" new
	[ -d "$kept/d/added" ]
	expect_content "$kept/d/sub/deeper/c" $'charlie\n'
	[ "$(readlink "$kept/d/link-out")" = "$T/outside" ]
	[[ $stderr == *"$(basename "$kept")"* ]]
	[[ $stderr == snaprun:* ]]
	run timeout 10 "$SNAPRUN" --clean d
	[ "$status" -eq 0 ]
	[ -d "$kept/d/sub" ]
}

@test "--clean removes a dead run's leftover tree, never following its links out" {
	need_feature exchange
	make_tree d
	mkdir precious
	echo keep >precious/p
	before=$(manifest d)
	i0=$(ino d)
	# CMD adds links out of the tree, then snaprun and CMD die by SIGKILL
	spawn d sh -c 'ln -s "$0/precious" "$1/to-precious"; ln -s "$0/precious/p" "$1/sub/to-p";
		echo $$ > "$0/cmdpid"; exec sleep 30' "$T" {}
	wait_for cmdpid
	kill -9 "$PID" "$(cat cmdpid)"
	wait "$PID" || true
	wait "$DRAIN"
	left=$(leftovers .)
	[ -n "$left" ]
	[ -L "$left/d/to-precious" ]
	run --separate-stderr timeout 10 "$SNAPRUN" --clean d
	expect_status 0
	no_leftovers .
	unchanged d "$i0" "$before"
	expect_content precious/p $'keep\n'
	expect_content outside/secret $'secret\n'
}

# ----------------------------------------------------------------- 12. depth

@test "slow: a chain of 1500 nested directories is copied and committed under ulimit -n 64" {
	need_feature exchange
	local deep
	deep=$(printf 'd/%.0s' $(seq 1500))
	mkdir -p "top/$deep"
	echo old >"top/${deep}leaf"
	ln "top/${deep}leaf" leaf-link
	i0=$(ino top)
	run --separate-stderr limited -n 64 top sh -c \
		'test "$(cat "$1/$2leaf")" = old && echo new > "$1/$2leaf" && mkdir "$1/$2more"' sh {} "$deep"
	[[ $stderr != *"Too many open files"* ]] || { echo "$stderr" >&2; false; }
	expect_status 0
	[ "$(ino top)" != "$i0" ]
	expect_content "top/${deep}leaf" $'new\n'
	[ -d "top/${deep}more" ]
	[ "$(find top -type d | wc -l)" -eq 1502 ]
	# the old chain was removed whole
	[ "$(stat -c %h leaf-link)" = 1 ]
	no_leftovers .
}

# --------------------------------------------------------------- 13. -f

@test "-f with a directory DIR: 125, CMD not run, DIR unchanged" {
	make_d
	for o in -f --filter; do
		run --separate-stderr sr "$o" d sh -c ': > "$0/ran"; cat' "$T"
		expect_status 125
		one_error_line
		[ ! -e ran ]
		unchanged d "$i0" "$before"
		no_leftovers .
	done
}

# ------------------------------------------------------ no atomic exchange

@test "a build without the atomic exchange refuses a directory commit with 125, DIR unchanged" {
	if timeout 10 "$SNAPRUN" -V | grep -q '^features:.* exchange\( \|$\)'; then
		skip "this build has the atomic exchange"
	fi
	make_d
	run --separate-stderr sr d sh -c 'printf new > "$1/a"' sh {}
	expect_status 125
	one_error_line
	unchanged d "$i0" "$before"
	no_leftovers .
	# an absent DIR that CMD makes a directory is not committed either
	run --separate-stderr sr new-dir sh -c 'mkdir "$1" && printf n > "$1/n"' sh {}
	expect_status 125
	one_error_line
	[ ! -e new-dir ]
	no_leftovers .
}

# ------------------------------------------------ slips of the hand (issue 14)

@test "slow: a tree CMD never changed is not committed (no exchange, no flush); every kind of change is" {
	need_feature exchange
	need_strace renameat2,syncfs,fsync
	make_d
	traced renameat2,syncfs,fsync d -- sh -c 'find "$1" > /dev/null; cat "$1/a" > /dev/null' sh {}
	expect_status 0
	unchanged d "$i0" "$before"
	! grep -E 'renameat2|syncfs|fsync' trace
	no_leftovers .
	# the slip: CMD changed DIR itself, not {}: kept, and said
	run --separate-stderr sr d -- sh -c 'printf new > d/new'
	expect_status 0
	expect_content d/new new
	[[ $stderr == *"CMD most likely wrote d itself"* ]]
	rm d/new
	# each change below, at once and deep in the tree, is committed
	for c in 'printf X | dd of="$1/sub/deeper/c" conv=notrunc status=none' \
		'chmod 600 "$1/sub/deeper/c"' 'touch -d 2001-01-01 "$1/sub/deeper/c"' \
		'chmod 700 "$1/sub/empty2"' 'mkdir "$1/sub/empty2/n"' 'rm "$1/sub/deeper/c"' \
		'mv "$1/sub/deeper/c" "$1/sub/deeper/d"' 'ln "$1/sub/bin" "$1/sub/deeper/l"' \
		'rmdir "$1/sub/empty2"' 'ln -sfn b "$1/link-a"' \
		'rm -r "$1/sub"; cp -a d/sub "$1/sub"'; do
		rm -rf d
		make_tree d
		i=$(ino d)
		run sr d -- sh -c "$c" sh {}
		expect_status 0
		[ "$(ino d)" != "$i" ] || { echo "not committed: $c" >&2; false; }
	done
	no_leftovers .
}

@test "DIR removed during CMD: the new tree is renamed in where nothing is, as a removed FILE is made again" {
	need_feature exchange
	make_d
	run --separate-stderr sr d -- sh -c 'printf new > "$1/a"; rm -rf d' sh {}
	expect_status 0
	[ -z "$stderr" ]
	expect_content d/a new
	expect_content d/b $'bravo\n'
	no_leftovers .
	# under a checking mode it is a conflict, as for a file
	run --separate-stderr sr --on-conflict=fail d -- sh -c 'printf newer > "$1/a"; rm -rf d' sh {}
	expect_status 75
	[ ! -e d ]
	no_leftovers .
}

@test "ENOSPC while copying a tree's file data names the file" {
	need_feature exchange
	mount_tmpfs m 4M
	mkdir -p m/d/sub
	printf a > m/d/a
	head -c 3M /dev/zero > m/d/sub/big
	run --separate-stderr sr m/d -- sh -c ': > "$0/ran"' "$T"
	expect_status 125
	one_error_line
	[[ $stderr == *"m/d/sub/big: No space left on device" ]]
	[ ! -e ran ]
	no_leftovers m
}
