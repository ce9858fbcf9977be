# Helpers shared by the files that run the binary directly (core, errors,
# signals, filesystems, dirs, filter, limits, attack, hardening).
# Loaded after common.bash.

bats_require_minimum_version 1.5.0

# Every run of the binary is bounded in time, so a hang fails the test
# instead of stalling the suite.
SR_TIMEOUT=${SR_TIMEOUT:-60}
sr() {
	timeout -k 5 "$SR_TIMEOUT" "$SNAPRUN" "$@"
}

# one_error_line: after `run --separate-stderr`, stderr is exactly one line
# of the form `snaprun: ...`.
one_error_line() {
	if [ -z "$stderr" ]; then
		echo "expected one error line on stderr, got nothing" >&2
		return 1
	fi
	if [[ $stderr == *$'\n'* ]]; then
		printf 'expected one error line on stderr, got:\n%s\n' "$stderr" >&2
		return 1
	fi
	if [[ $stderr != 'snaprun: '* ]]; then
		printf 'error line does not start with "snaprun: ": %s\n' "$stderr" >&2
		return 1
	fi
	# snaprun: WHAT: WHY
	if [[ $stderr != 'snaprun: '?*': '?* ]]; then
		printf 'error line is not "snaprun: WHAT: WHY": %s\n' "$stderr" >&2
		return 1
	fi
}

# expect_status N: fail with the captured output unless $status is N.
expect_status() {
	if [ "$status" -ne "$1" ]; then
		printf 'expected status %s, got %s\nstdout: %s\nstderr: %s\n' \
			"$1" "$status" "$output" "${stderr-}" >&2
		return 1
	fi
}

# expect_content FILE TEXT: FILE holds exactly TEXT.
expect_content() {
	local got
	if [ ! -f "$1" ]; then
		echo "$1: not a regular file" >&2
		return 1
	fi
	got=$(cat "$1"; echo x)
	got=${got%x}
	if [ "$got" != "$2" ]; then
		printf '%s: expected %q, got %q\n' "$1" "$2" "$got" >&2
		return 1
	fi
}

# wait_nonempty FILE [SECONDS]: wait until FILE exists and is non-empty.
# wait_for is the same here (conc_helper's, loaded after, only waits for
# FILE to exist).
wait_for() {
	wait_nonempty "$@"
}

wait_nonempty() {
	local i n=$(( ${2:-10} * 20 ))
	for (( i = 0; i < n; i++ )); do
		[ -s "$1" ] && return 0
		nap 0.05
	done
	echo "timed out waiting for $1" >&2
	return 1
}

# pid_gone PID [SECONDS]: PID no longer exists (a zombie still counts as
# existing: nobody reaped it).
pid_gone() {
	local i n=$(( ${2:-5} * 20 ))
	for (( i = 0; i < n; i++ )); do
		kill -0 "$1" 2>/dev/null || return 0
		nap 0.05
	done
	echo "process $1 still exists: $(ps -o pid=,stat=,args= -p "$1")" >&2
	return 1
}

# waitstatus OUT CMD [ARG]...: run CMD with INT/QUIT/TERM/HUP/PIPE at their
# default disposition (bash makes background jobs ignore INT and QUIT),
# write its pid to OUT.pid at once, and "exit N" or "signal N core C" to
# OUT when it ends. Meant to be run in the background.
waitstatus() {
	local out=$1
	shift
	perl -e '
		my $out = shift @ARGV;
		$SIG{$_} = "DEFAULT" for qw(INT QUIT TERM HUP PIPE);
		my $pid = fork() // die "fork: $!";
		if ($pid == 0) {
			setpgrp(0, 0) if $ENV{SR_NEWPGRP};
			exec { $ARGV[0] } @ARGV or do { print STDERR "exec: $!\n"; exit 127 };
		}
		open(my $p, ">", "$out.pid.tmp") or die; print $p "$pid\n"; close $p;
		rename("$out.pid.tmp", "$out.pid") or die;
		waitpid($pid, 0);
		my $st = $?;
		open(my $f, ">", "$out.tmp") or die;
		if ($st & 127) { printf $f "signal %d core %d\n", $st & 127, ($st & 128) ? 1 : 0 }
		else { printf $f "exit %d\n", $st >> 8 }
		close $f;
		rename("$out.tmp", $out) or die;
	' "$out" "$@"
}

# ino PATH: PATH's inode number.
ino() {
	stat -c %i "$1"
}

# mount_tmpfs DIR SIZE: a tmpfs of SIZE on DIR (made if need be); skip
# where it cannot be mounted.
mount_tmpfs() {
	need_root "mount"
	mkdir -p "$1"
	mount -t tmpfs -o "size=$2,mode=0755" tmpfs "$1" 2>/dev/null ||
		skip "cannot mount a tmpfs here"
}

# snapshot_dir_re BASENAME: extended regex for a private directory name.
snapshot_dir_re() {
	local b
	b=$(printf '%s' "$1" | sed 's/[][\.*^$+?(){}|/]/\\&/g')
	printf '^\\.%s\\.snaprun\\.[^/]{6}$' "$b"
}

is_sanitized() {
	grep -qa -e __asan_init -e __tsan_init -e __msan_init -e __ubsan_handle "$SNAPRUN"
}

# closefds CMD [ARG]...: run CMD with every descriptor above 2 closed, so
# what CMD's children see is only what snaprun itself opened.
closefds() {
	perl -e 'use POSIX (); POSIX::close($_) for 3 .. 1023; exec { $ARGV[0] } @ARGV or exit 127' "$@"
}

# stop_strays: a teardown step for tests that start snaprun in the
# background (signals, filter): never leave a stray run behind when an
# assertion failed half-way (cmdpid: CMD, srpid: snaprun), and let the
# status writer (wrpid) finish before its directory goes away.
stop_strays() {
	if [ -n "${cmdpid-}" ]; then kill -KILL "$cmdpid" 2>/dev/null || true; fi
	if [ -n "${srpid-}" ]; then kill -KILL "$srpid" 2>/dev/null || true; fi
	if [ -n "${wrpid-}" ]; then wait "$wrpid" 2>/dev/null || true; fi
}

# unmount_all: a teardown for tests that mount below $T: every mount there
# undone, innermost first (lazily if something still holds it), the loop
# device of $T/img detached, then $T removed.
unmount_all() {
	if [ -n "${T-}" ] && [ -d "$T" ]; then
		cd /
		local m=
		# most tests mount nothing: look before starting findmnt
		read -r -d '' m </proc/self/mountinfo || :
		[[ $m != *" $T/"* ]] ||
			findmnt -rn -o TARGET | grep -F "$T/" | sort -r | while read -r m; do
				umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
			done
		if [ -f "$T/img" ]; then
			losetup -j "$T/img" -O NAME -n 2>/dev/null | while read -r m; do
				losetup -d "$m" 2>/dev/null || true
			done
		fi
		rm -rf "$T"
	fi
}
