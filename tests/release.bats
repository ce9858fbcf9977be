#!/usr/bin/env bats
# The release: one version (the Makefile's) everywhere, and make dist's
# tarball reproducible with exactly the files git tracks but CI's.

load common

REPO=$(cd "$BATS_TEST_DIRNAME/.." && pwd)

makefile_version() {
	sed -n 's/^VERSION *= *//p' "$REPO/Makefile"
}

# need_git_checkout: make dist lists what git tracks.
need_git_checkout() {
	need_cmd git
	need_cmd make
	git_top "$REPO" ||
		skip "not a git checkout (a tarball's tree): nothing to list"
	make -C "$REPO" -s -n dist >/dev/null 2>&1 || skip "make dist needs GNU make"
}

@test "the man page's footer carries the Makefile's version" {
	local v
	v=$(makefile_version)
	[ -n "$v" ]
	[ "$(sed -n 's/^\.Os snaprun //p' "$REPO/man/snaprun.1")" = "$v" ]
}

@test "NEWS starts with the Makefile's version" {
	[ "$(grep -m1 -oE '^\* Noteworthy changes in release [0-9.]+' "$REPO/NEWS")" = \
		"* Noteworthy changes in release $(makefile_version)" ]
}

@test "make dist: two runs give the same bytes" {
	need_git_checkout
	make -C "$REPO" -s dist TARBALL="$T/a.tar.gz" >/dev/null
	touch "$REPO/Makefile"	# a newer mtime changes nothing
	make -C "$REPO" -s dist TARBALL="$T/b.tar.gz" >/dev/null
	cmp "$T/a.tar.gz" "$T/b.tar.gz"
	# gzip -n: no name, no time in the gzip header
	[ "$(od -An -tx1 -j4 -N4 "$T/a.tar.gz" | tr -d ' ')" = 00000000 ]
}

@test "make dist: exactly the files git tracks but CI's, owner 0, one mtime" {
	need_git_checkout
	local v=snaprun-$(makefile_version)
	make -C "$REPO" -s dist TARBALL="$T/a.tar.gz" >/dev/null
	run tar -tzf "$T/a.tar.gz"
	[ "$output" = "$(git -C "$REPO" ls-files | grep -Ev '^\.ci/|^\.github/|^\.git' |
		LC_ALL=C sort | sed "s,^,$v/,")" ]
	# what a build, its tests and its install need is there
	local f
	for f in Makefile GNUmakefile snapshot.c man/snaprun.1 COPYING NEWS \
		completions/snaprun.bash completions/_snaprun completions/snaprun.fish \
		tests/run tests/common.bash; do
		grep -qx "$v/$f" <<<"$output" || { echo "missing: $f" >&2; false; }
	done
	[ "$(tar -tvzf "$T/a.tar.gz" | awk '{ print $2 }' | sort -u)" = 0/0 ]
	[ "$(tar -tvzf "$T/a.tar.gz" | awk '{ print $4, $5 }' | sort -u | wc -l)" = 1 ]
	tar -tvzf "$T/a.tar.gz" "$v/tests/run" | grep -q '^-rwxr-xr-x'
}

@test "slow: a build from the unpacked tarball reports the version, git or not" {
	need_git_checkout
	need_cmd cc
	local v
	v=$(makefile_version)
	make -C "$REPO" -s dist TARBALL="$T/a.tar.gz" >/dev/null
	mkdir "$T/x"
	tar -xzf "$T/a.tar.gz" -C "$T/x"
	# no git anywhere above: a PATH without it, and GIT_DIR nowhere
	run env PATH=/usr/bin:/bin GIT_DIR=/nonexistent GIT_CEILING_DIRECTORIES="$T" \
		make -s -C "$T/x/snaprun-$v"
	[ "$status" -eq 0 ]
	run "$T/x/snaprun-$v/snaprun" --version
	[ "${lines[0]}" = "snaprun $v" ]
}

@test "make check without bats says that bats is missing and how to get it" {
	need_cmd make
	run make -s -C "$REPO" check BATS=/nonexistent/bats
	[ "$status" -ne 0 ]
	[[ $output == *"/nonexistent/bats not found: the tests need bats-core"* ]]
	[[ $output == *"apt-get install bats"* ]]
	[[ $output != *passed* ]]
}
