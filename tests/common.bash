# Shared setup for every test file: a fresh directory per test, the binary
# under test, and the few assertions the files have in common.

SNAPRUN=${SNAPRUN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/snaprun}

setup() {
	slow_test
	T=$(mktemp -d "${BATS_TMPDIR:-/tmp}/snaprun-test.XXXXXX")
	cd "$T" || return 1
	trace_on_error
}

# trace_on_error: bats (1.8) records where the test is before every
# command it runs, which costs a fifth of the suite's time; take that
# record only when a command fails instead, so that a failure is reported
# as bats reports it.  Without those bats functions, nothing changes.
trace_on_error() {
	declare -F bats_capture_stack_trace bats_error_trap >/dev/null || return 0
	trap - DEBUG
	trap traced_error ERR
}

traced_error() {
	local st=$?
	bats_capture_stack_trace
	BATS_DEBUG_LAST_STACK_TRACE_IS_VALID=1
	return_status "$st"
	bats_error_trap
}

return_status() {
	return "$1"
}

teardown() {
	cd / && rm -rf "$T"
}

# leftovers DIR: every name snaprun may have left in DIR but its lock
# file, a line each, and in the array LEFT (globs: no process started).
leftovers() {
	local f nullglob=
	shopt -q nullglob && nullglob=1
	shopt -s nullglob
	LEFT=()
	for f in "$1"/*.snaprun* "$1"/.*.snaprun*; do
		[[ ${f##*/} == *.snaprun.lock ]] || LEFT+=("${f##*/}")
	done
	[ -n "$nullglob" ] || shopt -u nullglob
	[ "${#LEFT[@]}" -eq 0 ] || printf '%s\n' "${LEFT[@]}"
}

no_leftovers() {
	leftovers "$1" >/dev/null
	if [ "${#LEFT[@]}" -gt 0 ]; then
		printf 'left behind in %s:\n' "$1" >&2
		printf '%s\n' "${LEFT[@]}" >&2
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

# slow_test: a test whose name begins with "slow: " (one long scenario) or
# "stress: " (many random rounds) runs only with SNAPRUN_SLOW set, as make
# check-slow sets it.  tests/run does not even start it otherwise; one
# started anyway (a bats run by hand, a SNAPRUN_TEST_FILTER) is skipped
# with the reason tests/run counts apart.
slow_test() {
	case $BATS_TEST_DESCRIPTION in
	"slow: "* | "stress: "*)
		[ -n "${SNAPRUN_SLOW-}" ] || skip "make check-slow runs it" ;;
	esac
}

# stress QUICK FULL: how many times a stress test repeats: FULL in make
# check-slow (SNAPRUN_STRESS=full), QUICK when one is run by hand.
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

# nap SECONDS: sleep without starting a process, for the polling loops: a
# read that times out on a FIFO of this test file's that nobody writes.
nap() {
	local fifo=${BATS_FILE_TMPDIR:-$T}/nap
	[ -p "$fifo" ] || mkfifo "$fifo" 2>/dev/null || [ -p "$fifo" ] || {
		sleep "$1"
		return 0
	}
	read -r -t "$1" <>"$fifo" || :
}

# wait_blocked LOCKFILE: until some process waits in flock(2) on LOCKFILE.
wait_blocked() {
	local maj min ino id i
	read -r maj min ino < <(stat -c '%Hd %Ld %i' "$1")
	# /proc/locks names a file as MAJOR:MINOR:INODE, the first two in hex
	id=$(printf '%02x:%02x:%s' "$maj" "$min" "$ino")
	for (( i = 0; i < 200; i++ )); do
		grep -Fq -- " $id " <(grep -F -- '->' /proc/locks) && return 0
		nap 0.05
	done
	echo "nobody waits for the lock on $1 ($id)" >&2
	return 1
}
