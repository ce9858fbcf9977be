# Shared setup for every test file: a fresh directory per test, the binary
# under test, and the few assertions the files have in common.

SNAPRUN=${SNAPRUN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/snaprun}

setup() {
	T=$(mktemp -d "${BATS_TMPDIR:-/tmp}/snaprun-test.XXXXXX")
	cd "$T" || return 1
}

teardown() {
	cd / && rm -rf "$T"
}

# leftovers DIR: every name snaprun may have left in DIR but its lock file.
leftovers() {
	find "$1" -maxdepth 1 -name '*.snaprun*' ! -name '*.snaprun.lock' -printf '%f\n'
}

no_leftovers() {
	local left
	left=$(leftovers "$1")
	if [ -n "$left" ]; then
		printf 'left behind in %s:\n%s\n' "$1" "$left" >&2
		return 1
	fi
}

need_root() {
	[ "$(id -u)" -eq 0 ] || skip "needs root: $1"
}

need_cmd() {
	command -v "$1" >/dev/null || skip "$1 is not installed"
}

# need_feature NAME: skip unless this build has NAME (one of the words on
# the "features:" line of snaprun -V: reflink, copy_file_range, xattrs,
# exchange, leases, mounts), as a build for a system with POSIX alone has none.
need_feature() {
	"$SNAPRUN" -V | grep -q "^features:.* $1\( \|$\)" ||
		skip "this build of snaprun has no $1"
}

# The tests that act as another user (nobody) run the binary from a copy
# in $T, which they open to others: the checkout may be in a directory
# nobody can enter (root's 0700 home, a mktemp -d workspace).
NOBODY=(setpriv --reuid=nobody --regid=nogroup --clear-groups)

# as_nobody CMD [ARG]...: CMD as user nobody, who can reach $T.  An
# argument that names the binary under test ($SNAPRUN) names nobody's copy
# of it instead.
as_nobody() {
	local a args=()
	nobody_ready
	for a in "$@"; do
		[ "$a" != "$SNAPRUN" ] || a=$T/.nobody/snaprun
		args+=("$a")
	done
	"${NOBODY[@]}" "${args[@]}"
}

# nobody_ready: skip unless this run is root and can switch to nobody;
# $T opened to others and nobody's copy of the binary made in it, once.
nobody_ready() {
	need_root "runs a command as another user"
	need_cmd setpriv
	chmod 755 "$T"
	if [ ! -x "$T/.nobody/snaprun" ]; then
		mkdir -p -m 755 "$T/.nobody"
		install -m 755 "$SNAPRUN" "$T/.nobody/snaprun"
	fi
}

# need_nobody: skip, saying why, unless nobody can run the binary.
need_nobody() {
	nobody_ready
	"${NOBODY[@]}" true 2>/dev/null || skip "cannot run as nobody"
	"${NOBODY[@]}" test -x "$T/.nobody/snaprun" ||
		skip "nobody cannot reach $T (BATS_TMPDIR is closed to others)"
}

# stress QUICK FULL: how many times a stress test repeats: QUICK in make
# check, FULL in make check-slow (SNAPRUN_STRESS=full), which runs only
# the tests whose names begin with "stress:".
stress() {
	if [ "${SNAPRUN_STRESS-}" = full ]; then echo "$2"; else echo "$1"; fi
}

# git_top DIR: DIR is the top of a git checkout (not a tree unpacked
# somewhere inside another checkout, as make distcheck unpacks the
# tarball inside this one).
git_top() {
	local prefix
	prefix=$(git -C "$1" rev-parse --show-prefix 2>/dev/null) && [ -z "$prefix" ]
}

# under_strace: snaprun is about to run under strace.  LeakSanitizer
# cannot work under ptrace and would fail a sanitizer build's exit status,
# so it is turned off for those runs (the other sanitizers stay on).
under_strace() {
	export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
}

# need_strace CALLS: skip unless strace is installed and can trace CALLS
# here (its trial writes the file trace); what runs next is under_strace.
need_strace() {
	need_cmd strace
	under_strace
	strace -qq -o trace -e trace="$1" true 2>/dev/null || skip "strace cannot trace here"
}

# wait_blocked LOCKFILE: until some process waits in flock(2) on LOCKFILE.
wait_blocked() {
	local maj min ino id i
	read -r maj min ino < <(stat -c '%Hd %Ld %i' "$1")
	# /proc/locks names a file as MAJOR:MINOR:INODE, the first two in hex
	id=$(printf '%02x:%02x:%s' "$maj" "$min" "$ino")
	for (( i = 0; i < 200; i++ )); do
		grep -Fq -- " $id " <(grep -F -- '->' /proc/locks) && return 0
		sleep 0.05
	done
	echo "nobody waits for the lock on $1 ($id)" >&2
	return 1
}
