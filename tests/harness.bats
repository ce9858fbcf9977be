#!/usr/bin/env bats
# The test harness itself: what make check prints when a test fails, and
# which tests it runs.  Each test runs bats or tests/run on a small test
# file of its own that loads tests/common.bash.

load common

REPO=$(cd "$BATS_TEST_DIRNAME/.." && pwd)

# sample FILE: a test file with a failing assertion on its line 5, a
# failing helper called on its line 9, a slow test and a stress test.
sample() {
	# (through $t: bats would take a test line of this file for its own)
	local t=@test
	cat > "$1" <<EOF
load $REPO/tests/common
helper() { [ "\$1" = 2 ]; }
$t "a bare assertion" {
	true
	[ 1 = 2 ]
}
$t "a helper" {
	true
	helper 1
}
$t "slow: a long one" { true; }
$t "stress: a random one" { true; }
EOF
}

@test "a failing test names its file, line and command, as bats does" {
	need_cmd "${BATS:-bats}"
	sample "$T/s.bats"
	run "${BATS:-bats}" --tap "$T/s.bats"
	[ "$status" -ne 0 ]
	[[ $output == *"not ok 1 a bare assertion"*"in test file s.bats, line 5)"*"\`[ 1 = 2 ]' failed"* ]]
	[[ $output == *"not ok 2 a helper"*"from function \`helper' in file s.bats, line 2,"*"in test file s.bats, line 9)"* ]]
}

@test "tests/run: the long tests are counted, not run; SNAPRUN_SLOW=only runs them alone" {
	sample "$T/s.bats"
	run env -u SNAPRUN_SLOW "$REPO/tests/run" "$T/s.bats"
	[ "$status" -eq 1 ]
	[[ $output == *"1..2"* ]]
	[[ $output != *"a long one"* ]]
	[[ $output == *"long tests left to make check-slow: 2"*"0 passed, 2 failed, 0 skipped" ]]
	run env SNAPRUN_SLOW=only "$REPO/tests/run" "$T/s.bats"
	[ "$status" -eq 0 ]
	[[ $output == *"ok 1 slow: a long one"*"ok 2 stress: a random one"* ]]
	[[ $output == *"2 passed, 0 failed, 0 skipped" ]]
}
