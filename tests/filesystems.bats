load common
load fs_helper

# Real filesystems: a full one, a read-only one, an unwritable directory,
# reflinks on XFS, and a large copy in little memory.

teardown() {
	unmount_all
}

# mount_xfs_reflink DIR: a 300 MiB XFS image with reflink, loop-mounted.
mount_xfs_reflink() {
	need_root "loop mount"
	need_cmd mkfs.xfs
	truncate -s 300M "$T/img"
	mkfs.xfs -q -m reflink=1 "$T/img" >/dev/null 2>&1 || skip "mkfs.xfs -m reflink=1 failed"
	mkdir -p "$1"
	mount -o loop "$T/img" "$1" 2>/dev/null || skip "loop mount failed (no loop devices?)"
}

# A build with the kernel copy paths compiled out (the portable read/write
# build) cannot clone.
need_kernel_copy() {
	need_feature reflink
}

# ------------------------------------------------------------------ ENOSPC

@test "no space for the copy: 125, 'No space left on device', FILE unchanged, nothing left" {
	mount_tmpfs mnt 1m
	head -c 700K /dev/urandom > mnt/f
	cp mnt/f ref
	run --separate-stderr sr mnt/f sh -c ': > "$0/ran"' "$T"
	expect_status 125
	one_error_line
	[[ $stderr == *"No space left on device"* ]]
	[[ $stderr == *mnt/* ]]
	[ ! -e ran ]
	cmp mnt/f ref
	no_leftovers mnt
	# all the space came back: the same file fits again
	head -c 200K /dev/urandom > mnt/after
}

@test "no space with --keep: still 125 and nothing half-copied is kept" {
	mount_tmpfs mnt 1m
	head -c 700K /dev/urandom > mnt/f
	cp mnt/f ref
	run --separate-stderr sr --keep mnt/f true
	expect_status 125
	one_error_line
	[[ $stderr == *"No space left on device"* ]]
	cmp mnt/f ref
	no_leftovers mnt
}

@test "the snapshot is made on FILE's filesystem, not the working directory's" {
	mount_tmpfs mnt 4m
	printf old > mnt/f
	run sr mnt/f sh -c 'stat -f -c %T "$(dirname "$1")" > fstype; printf new > "$1"' sh {}
	expect_status 0
	expect_content fstype $'tmpfs\n'
	expect_content mnt/f new
	no_leftovers mnt
}

# --------------------------------------------------------------- read-only

@test "read-only filesystem: 125, one line, FILE unchanged, nothing left" {
	mount_tmpfs mnt 4m
	printf old > mnt/f
	printf old > mnt/g
	mount -o remount,ro mnt || skip "cannot remount read-only"
	run --separate-stderr sr mnt/f sh -c ': > "$0/ran"' "$T"
	expect_status 125
	one_error_line
	[[ $stderr == *"Read-only file system"* ]]
	[ ! -e ran ]
	expect_content mnt/f old
	no_leftovers mnt
}

@test "read-only filesystem and a missing FILE or parent: 125" {
	mount_tmpfs mnt 4m
	mount -o remount,ro mnt || skip "cannot remount read-only"
	for f in mnt/new.db mnt/a/b/new.db; do
		run --separate-stderr sr "$f" sh -c ': > "$0/ran"' "$T"
		expect_status 125
		one_error_line
		[[ $stderr == *"Read-only file system"* ]]
		[ ! -e ran ]
	done
	[ -z "$(ls -A mnt)" ]
}

# ---------------------------------------------------------- permissions

# sr_as_nobody ARG...: `run` snaprun ARG... as nobody, stderr apart.
sr_as_nobody() {
	run --separate-stderr as_nobody timeout 30 "$SNAPRUN" "$@"
}

# denied_to_nobody FILE: snaprun FILE, run by nobody, exits 125 with one
# "Permission denied" line and never runs CMD (which would create w/ran).
denied_to_nobody() {
	sr_as_nobody "$1" sh -c ': > "$0/w/ran"' "$T"
	expect_status 125
	one_error_line
	[[ $stderr == *"Permission denied"* ]]
	[ ! -e w/ran ]
}

@test "unwritable directory as an unprivileged user: 125 'Permission denied'" {
	need_nobody
	mkdir ro w
	chmod 777 w
	printf old > ro/f
	chmod 644 ro/f
	chmod 755 ro
	denied_to_nobody ro/f
	[[ $stderr == *ro* ]]
	expect_content ro/f old
	[ "$(stat -c %U ro/f)" = root ]
	no_leftovers ro
}

@test "unreadable FILE as an unprivileged user: 125 'Permission denied'" {
	need_nobody
	mkdir w
	chmod 777 w
	printf secret > w/f
	chmod 600 w/f
	denied_to_nobody w/f
	expect_content w/f secret
	no_leftovers w
}

@test "an unprivileged user commits in a writable directory" {
	need_nobody
	mkdir w
	chown nobody:nogroup w
	printf old > w/f
	chown nobody:nogroup w/f
	chmod 640 w/f
	sr_as_nobody w/f sh -c 'printf new > "$1"' sh {}
	expect_status 0
	expect_content w/f new
	[ "$(stat -c %U:%G:%a w/f)" = nobody:nogroup:640 ]
	no_leftovers w
}

@test "as an unprivileged user, read-only directories CMD leaves are still cleaned up" {
	need_nobody
	mkdir w
	chown nobody:nogroup w
	as_nobody sh -c 'printf old > w/f'
	# as `go mod download` does: read-only trees
	sr_as_nobody w/f sh -c '
		d=$(dirname "$1")
		mkdir -p "$d/mod/a/b" && : > "$d/mod/a/b/x" && : > "$d/mod/y"
		chmod 555 "$d/mod/a/b" "$d/mod/a" "$d/mod"
		printf new > "$1"' sh {}
	expect_status 0
	expect_content w/f new
	[ -z "$stderr" ]
	no_leftovers w
	[ "$(ls -A w)" = f ]
}

# ---------------------------------------------------------------- reflinks

@test "on XFS with reflink the snapshot shares FILE's extents" {
	need_cmd filefrag
	need_cmd xfs_io
	need_kernel_copy
	mount_xfs_reflink mnt
	xfs_io -f -c 'pwrite -q -S 0xab -b 4m 0 64m' -c fsync mnt/big
	run --separate-stderr sr -v mnt/big sh -c 'filefrag -v "$1" > "$0/frag"; printf x | dd of="$1" bs=1 conv=notrunc status=none' "$T" {}
	expect_status 0
	cat frag >&2
	grep -q shared frag
	[ "$(head -c 1 mnt/big)" = x ]
	[ "$(stat -c %s mnt/big)" -eq $((64 * 1024 * 1024)) ]
	[ "$(tail -c 1 mnt/big | od -An -tx1 | tr -d ' ')" = ab ]
	no_leftovers mnt
}

@test "on XFS with reflink, -v says the copy was a reflink clone" {
	need_kernel_copy
	mount_xfs_reflink mnt
	head -c 1M /dev/urandom > mnt/f
	run --separate-stderr sr -v mnt/f true
	expect_status 0
	printf '%s\n' "$stderr" >&2
	[[ $stderr =~ [Rr]eflink|[Cc]lone|FICLONE ]]
	no_leftovers mnt
}

@test "on XFS with reflink a 64 MiB snapshot costs no data blocks" {
	need_kernel_copy
	mount_xfs_reflink mnt
	xfs_io -f -c 'pwrite -q -S 0xcd -b 4m 0 64m' -c fsync mnt/big
	sync -f mnt
	run --separate-stderr sr mnt/big sh -c 'sync -f "$1"; df -k --output=used "$1" | tail -1 > "$0/used-during"' "$T" {}
	expect_status 0
	used_before=$(df -k --output=used mnt | tail -1)
	[[ $(cat used-during) =~ ^\ *[0-9]+$ ]]
	echo "used during the run: $(cat used-during) KiB, after: $used_before KiB" >&2
	# a full copy would use 65536 KiB more; allow a little metadata
	[ $(( $(cat used-during) - used_before )) -lt 8192 ]
	no_leftovers mnt
}

# ------------------------------------------------------------- big copy

@test "slow: a 200 MB FILE is copied with a small peak memory and identical content" {
	[ -x /usr/bin/time ] || skip "/usr/bin/time is not installed"
	if is_sanitized; then skip "peak memory is not meaningful in a sanitizer build"; fi
	[ "$(head -c 2 "$SNAPRUN")" != '#!' ] || skip "$SNAPRUN is a wrapper script"
	head -c 200M /dev/urandom > big
	sum=$(md5sum < big)
	run --separate-stderr /usr/bin/time -f %M -o mem timeout 60 "$SNAPRUN" --no-sync big sh -c 'stat -c %s "$1" > "$0/snapsize"' "$T" {}
	expect_status 0
	[ "$(cat snapsize)" -eq $((200 * 1024 * 1024)) ]
	[ "$(md5sum < big)" = "$sum" ]
	echo "max RSS: $(cat mem) KiB" >&2
	[ "$(tail -1 mem)" -lt 4096 ]
	no_leftovers .
}
