#!/usr/bin/env bats
# --progress, --no-progress and the progress line on a terminal: one line
# on stderr, rewritten in place (\r) and erased when the work is done.

load common
load fs_helper

teardown() {
	[ -S "$T/tmux.sock" ] && tmux -S "$T/tmux.sock" kill-server 2>/dev/null
	cd / && rm -rf "$T"
}

# tree DIR N: a directory of N small files (a copy of it counts entries,
# whatever the filesystem; every 64 entries the clock is read).  Only a
# build with the atomic exchange takes a tree.
tree() {
	need_feature exchange	# a build without it takes no tree
	mkdir -p "$1"
	awk -v d="$1" -v n="$2" 'BEGIN {
		for (i = 0; i < n; i++) { f = d "/f" i; print i > f; close(f) }
	}'
}

# on_tty ARG...: snaprun with ARG... under a pseudo-terminal (script(1));
# what the terminal got is in "$T/raw", its exit status in $status.
on_tty() {
	need_cmd script
	printf '%q ' "$SNAPRUN" "$@" > "$T/cmd"
	status=0
	script -qec "sh $T/cmd" "$T/raw" </dev/null >/dev/null 2>&1 || status=$?
	# the header and footer script(1) adds are not the terminal's
	sed -i -e '1{/^Script started/d}' -e '/^Script done/d' "$T/raw"
}

# last_on_line FILE: what is left on the terminal's last line, FILE being
# what was written to it: the text after the last carriage return.
last_on_line() {
	tr -d '\n' < "$1" | awk -v RS='\r' 'length($0) { l = $0 } END { print l }'
}

# erased FILE: after the last carriage return FILE holds only blanks and
# the end of the line: what was drawn is gone.
erased() {
	local last
	last=$(last_on_line "$1")
	if [ -n "${last// }" ]; then
		printf 'left on the line: %q\n' "$last" >&2
		return 1
	fi
}

@test "--progress on a terminal: a tree copy and its removal shown on one line, erased" {
	tree d 1000
	on_tty --progress --no-sync d -- sh -c 'echo x > "$1/new"' sh {}
	[ "$status" -eq 0 ]
	[ -f d/new ]
	grep -q $'\rsnaprun: copying d: .*[0-9]* entries, [0-9]*/s' "$T/raw"
	grep -q $'\rsnaprun: removing ./.d.snaprun.' "$T/raw"
	# every update starts with \r and no update ends a line
	[ "$(grep -c '' "$T/raw")" -le 1 ]
	erased "$T/raw"
	no_leftovers .
}

@test "slow: --progress on a terminal: what the screen shows at the end is no progress line" {
	need_cmd tmux
	need_cmd script
	tree d 1000
	printf '%q ' "$SNAPRUN" --progress --no-sync d true > "$T/cmd"
	tmux -S "$T/tmux.sock" new-session -d -x 100 -y 10 \
		"printf 'before\n'; sh $T/cmd; printf 'after:%s\n' \$?; echo > $T/done; sleep 60"
	wait_for "$T/done"
	run tmux -S "$T/tmux.sock" capture-pane -p
	[[ $output == *before* ]]
	[[ $output == *after:0* ]]
	[[ $output != *snaprun* ]]
	# and something was drawn on the way: the pane's own record of it
	tmux -S "$T/tmux.sock" kill-server
	on_tty --progress --no-sync d true
	grep -q 'snaprun: copying d:' "$T/raw"
}

@test "--progress: a big file's copy shows bytes of the total and the rate" {
	case $(stat -f -c %T .) in
	btrfs|xfs|bcachefs|zfs) skip "a reflink filesystem copies no bytes to show" ;;
	esac
	head -c $(( 64 << 20 )) /dev/zero | tr '\0' x > big
	on_tty --progress --no-sync big true
	[ "$status" -eq 0 ]
	grep -qE $'\rsnaprun: copying big: [0-9.]+ [KMG]i?B of 64.0 MiB, [0-9.]+ [KMG]?i?B/s' "$T/raw"
	erased "$T/raw"
}

@test "--progress forces the line when stderr is not a terminal; CMD's stderr is untouched" {
	tree d 300
	"$SNAPRUN" --progress d -- sh -c 'echo from-cmd >&2' 2> err
	grep -q $'\rsnaprun: copying d: ' err
	grep -qx 'from-cmd' <(tr '\r' '\n' < err)
	erased err
}

@test "without a terminal and without --progress, stderr gets no progress bytes" {
	tree d 200
	"$SNAPRUN" --no-sync d -- sh -c 'echo x > "$1/new"' sh {} 2> err
	[ -f d/new ]
	[ ! -s err ]
	"$SNAPRUN" --progress --no-progress d true 2> err
	[ ! -s err ]
}

@test "--no-progress on a terminal shows none" {
	tree d 200
	on_tty --no-progress --no-sync d true
	[ "$status" -eq 0 ]
	[ -z "$(tr -d '\n' < "$T/raw")" ]
	on_tty --progress --no-progress --no-sync d true
	[ -z "$(tr -d '\n' < "$T/raw")" ]
}

@test "--progress: an error ends the line first; the message stands on its own" {
	tree d 500
	mkfifo d/zz-fifo
	on_tty --progress --no-sync d true
	[ "$status" -eq 125 ]
	grep -q 'snaprun: copying d:' "$T/raw"
	# the message starts where the erased line was, and ends its own line
	grep -qx $'.*\rsnaprun: d/zz-fifo: not a regular file, directory or symbolic link; nothing snapshotted\r*' "$T/raw"
	erased "$T/raw"
	no_leftovers .
}
