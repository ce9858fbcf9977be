# Shared setup for every test file: a fresh directory per test, the binary
# under test, and the few assertions the files have in common.

SNAPRUN=${SNAPRUN:-$BATS_TEST_DIRNAME/../snaprun}

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
