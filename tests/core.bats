load common
load fs_helper

# One run of snaprun: the snapshot, CMD, the commit, the options around them.

write_new='printf new > "$1"'

# commits_under_name NAME: a FILE called NAME holding "old" is committed as
# "new" by a CMD that writes its snapshot, and nothing is left beside it.
commits_under_name() {
	printf old > "$1"
	run sr "$1" sh -c "$write_new" sh {}
	expect_status 0
	expect_content "$1" new
	no_leftovers .
}

# ---------------------------------------------------------------- basics

@test "CMD edits the snapshot and FILE is committed" {
	printf old > f
	run --separate-stderr sr f sh -c "$write_new" sh {}
	expect_status 0
	expect_content f new
	[ -z "$stderr" ]
	no_leftovers .
	# default mode (overwrite, no --lock) leaves nothing at all
	[ "$(ls -A)" = f ]
}

@test "the snapshot starts as an exact copy of FILE" {
	head -c 1234567 /dev/urandom > f
	cp f ref
	run sr f sh -c 'cmp "$1" ref && : > ran' sh {}
	expect_status 0
	[ -e ran ]
	cmp f ref
	no_leftovers .
}

@test "CMD that changes nothing: FILE keeps its content" {
	printf 'same\n' > f
	run sr f sh -c ': > ran' sh {}
	expect_status 0
	[ -e ran ]
	expect_content f $'same\n'
	no_leftovers .
}

@test "the snapshot is a separate file: FILE keeps its old content while CMD runs" {
	printf old > f
	run sr f sh -c 'printf new > "$1"; cat f > during; [ "$(stat -c %i "$1")" != "$(stat -c %i f)" ] && : > ran' sh {}
	expect_status 0
	[ -e ran ]
	expect_content during old
	expect_content f new
}

@test "a reader that opened FILE before the commit keeps reading the old version" {
	printf old > f
	exec 5< f
	run sr f sh -c "$write_new" sh {}
	expect_status 0
	expect_content f new
	[ "$(cat <&5)" = old ]
	exec 5<&-
}

@test "FILE given as ./f, as an absolute path and through .." {
	mkdir sub
	printf 0 > f
	run sr ./f sh -c 'printf 1 > "$1"' sh {}
	expect_status 0
	expect_content f 1
	run sr "$T/f" sh -c 'printf 2 > "$1"' sh {}
	expect_status 0
	expect_content f 2
	run sr sub/../f sh -c 'printf 3 > "$1"' sh {}
	expect_status 0
	expect_content f 3
	no_leftovers .
	no_leftovers sub
}

@test "placeholder is replaced in every argument, also inside larger ones" {
	printf old > f
	run sr f sh -c 'printf "%s\n" "$@" > args; printf new > "$1"' sh {} --x={} 'a{}b{}c' plain
	expect_status 0
	expect_content f new
	mapfile -t a < args
	[ "${#a[@]}" -eq 4 ]
	p=${a[0]}
	[[ $(basename "$(dirname "$p")") =~ $(snapshot_dir_re f) ]]
	[ "$(basename "$p")" = f ]
	[ "${a[1]}" = "--x=$p" ]
	[ "${a[2]}" = "a${p}b${p}c" ]
	[ "${a[3]}" = plain ]
	no_leftovers .
}

@test "the placeholder inside an sh -c script is replaced too" {
	printf old > f
	run sr f sh -c 'printf new > {}'
	expect_status 0
	expect_content f new
}

@test "-I STR sets another placeholder and {} is then left alone" {
	printf old > f
	run sr -I @@ f sh -c 'printf "%s" "$2" > arg2; printf new > "$1"' sh @@ {}
	expect_status 0
	expect_content f new
	expect_content arg2 '{}'
	no_leftovers .
}

@test "--placeholder=STR works like -I and may be several characters" {
	printf old > f
	run sr --placeholder=SNAP f sh -c 'printf "%s|%s|%s\\n" "$1" "$2" "$3" > args; printf new > "${1#--in=}"' sh --in=SNAP xSNAPySNAP '{}'
	expect_status 0
	expect_content f new
	IFS='|' read -r a1 a2 a3 < args
	p=${a1#--in=}
	[ "$(basename "$p")" = f ]
	[[ $(basename "$(dirname "$p")") =~ $(snapshot_dir_re f) ]]
	[ "$a2" = "x${p}y${p}" ]
	[ "$a3" = '{}' ]
	no_leftovers .
}

@test "the substituted path is not scanned again for the placeholder" {
	printf old > f
	# the snapshot path itself contains "snap"
	run sr -I snap f sh -c 'printf "%s\n" "$1" "$2" > args; printf new > "$1"' sh snap xsnapysnap
	expect_status 0
	expect_content f new
	mapfile -t a < args
	[[ ${a[0]} == *.f.snaprun.*/f ]]
	[ "${a[1]}" = "x${a[0]}y${a[0]}" ]
	# FILE's own name contains {}
	printf old > 'x{}.db'
	run sr 'x{}.db' sh -c 'printf "%s\n" "$1" > args; printf new > "$1"' sh {}
	expect_status 0
	expect_content 'x{}.db' new
	[[ $(cat args) == *'.x{}.db.snaprun.'*'/x{}.db' ]]
	no_leftovers .
}

@test "placeholder occurrences are replaced left to right without overlap" {
	printf old > f
	run sr -I aa f sh -c 'printf "%s\n" "$1" "$2" > args' sh aaa aaaa
	expect_status 0
	mapfile -t a < args
	p=${a[0]%a}
	[[ $p == *.f.snaprun.*/f ]]
	[ "${a[0]}" = "${p}a" ]
	[ "${a[1]}" = "${p}${p}" ]
}

@test "the placeholder is replaced in the command name too" {
	printf '#!/bin/sh\nprintf "#!/bin/sh\\nexit 0\\n" > "$0"\n' > script
	chmod 755 script
	run sr script {}
	expect_status 0
	[ "$(cat script)" = $'#!/bin/sh\nexit 0' ]
	[ -x script ]
	no_leftovers .
}

@test "SNAPRUN_FILE, SNAPRUN_ROOT and SNAPRUN_ORIGINAL are exported to CMD" {
	mkdir sub
	printf old > sub/f
	run sr sub/f sh -c 'printf "%s\n" "$SNAPRUN_FILE" "$SNAPRUN_ROOT" "$SNAPRUN_ORIGINAL" "$1" > env.txt; printf new > "$SNAPRUN_FILE"' sh {}
	expect_status 0
	expect_content sub/f new
	mapfile -t e < env.txt
	[ "${e[0]}" = "${e[3]}" ]               # SNAPRUN_FILE is what {} became
	[ "${e[1]}" = "$(dirname "${e[0]}")" ]  # the private directory
	[ "${e[2]}" = sub/f ]                   # FILE as given
	no_leftovers sub
}

@test "the -- after FILE is optional and only the first one is dropped" {
	printf old > f
	run sr f -- sh -c 'printf "%s," "$@" > args; printf new > "$2"' sh -- {}
	expect_status 0
	expect_content f new
	[[ $(cat args) == --,*/f, ]]
	printf old > f
	run sr f sh -c 'printf "%s," "$@" > args; printf new > "$2"' sh -- {}
	expect_status 0
	expect_content f new
	[[ $(cat args) == --,*/f, ]]
}

@test "CMD runs with the caller's working directory, stdin, stdout and stderr" {
	mkdir sub
	printf old > f
	cd sub
	run --separate-stderr sr ../f sh -c 'pwd -P; cat; echo to-stderr >&2; cat "$1" > seen' sh {} <<<"from-stdin"
	expect_status 0
	[ "${lines[0]}" = "$(pwd -P)" ]
	[ "${lines[1]}" = from-stdin ]
	[ "$stderr" = to-stderr ]
	expect_content seen old
	no_leftovers ..
}

@test "the snapshot lives under FILE's basename in a private 0700 directory beside FILE" {
	umask 000
	mkdir -p a/b
	printf old > a/b/data.db
	run sr a/b/data.db sh -c '
		d=$(dirname "$1")
		{ basename "$1"; basename "$d"; stat -c %a "$d"; cd "$d/.." && pwd -P; } > info' sh {}
	expect_status 0
	mapfile -t i < info
	[ "${i[0]}" = data.db ]
	[[ ${i[1]} =~ $(snapshot_dir_re data.db) ]]
	[[ ${i[1]} == *.snaprun* ]]
	[ "${i[2]}" = 700 ]
	[ "${i[3]}" = "$(cd a/b && pwd -P)" ]
	no_leftovers a/b
	no_leftovers .
}

@test "two runs get different private directories" {
	printf old > f
	sr f sh -c 'dirname "$1" > one' sh {}
	sr f sh -c 'dirname "$1" > two' sh {}
	[ "$(cat one)" != "$(cat two)" ]
}

@test "nothing is left beside FILE after success or failure" {
	printf old > f
	run sr f sh -c 'printf new > "$1"; : > "$1-journal"; mkdir "$(dirname "$1")/sub"; : > "$(dirname "$1")/sub/x"' sh {}
	# an empty journal is fine; the extra files CMD left are removed
	expect_status 0
	expect_content f new
	[ "$(ls -A)" = f ]
	run sr f sh -c 'printf newer > "$1"; : > "$(dirname "$1")/junk"; exit 1' sh {}
	expect_status 1
	expect_content f new
	[ "$(ls -A)" = f ]
}

@test "cleanup never follows a symbolic link out of the private directory" {
	printf old > f
	mkdir keepdir
	printf precious > keepdir/precious
	printf precious > precious
	run sr f sh -c 'd=$(dirname "$1"); ln -s "$PWD/keepdir" "$d/dirlink"; ln -s "$PWD/precious" "$d/filelink"; printf new > "$1"' sh {}
	expect_status 0
	expect_content f new
	expect_content keepdir/precious precious
	expect_content precious precious
	no_leftovers .
}

# ------------------------------------------------------ CMD's exit status

@test "CMD exits nonzero: nothing is committed and snaprun exits that status" {
	printf old > f
	for st in 1 2 3 42 124 125 126 127 255; do
		run "-$st" sr f sh -c 'printf new > "$1"; exit "$2"' sh {} "$st"
		expect_status "$st"
		expect_content f old
		no_leftovers .
	done
}

@test "--commit-on=0,1 commits on 1 but not on 2" {
	printf old > f
	run sr --commit-on=0,1 f sh -c 'printf one > "$1"; exit 1' sh {}
	expect_status 1
	expect_content f one
	run sr --commit-on=0,1 f sh -c 'printf two > "$1"; exit 2' sh {}
	expect_status 2
	expect_content f one
	run sr --commit-on=0,1 f sh -c 'printf zero > "$1"' sh {}
	expect_status 0
	expect_content f zero
	no_leftovers .
}

@test "-c with a range 0-2 commits on 2 but not on 3" {
	printf old > f
	run sr -c 0-2 f sh -c 'printf two > "$1"; exit 2' sh {}
	expect_status 2
	expect_content f two
	run sr -c 0-2 f sh -c 'printf three > "$1"; exit 3' sh {}
	expect_status 3
	expect_content f two
	run sr --commit-on 1,5-7,255 f sh -c 'printf six > "$1"; exit 6' sh {}
	expect_status 6
	expect_content f six
	run sr --commit-on 1,5-7,255 f sh -c 'printf x255 > "$1"; exit 255' sh {}
	expect_status 255
	expect_content f x255
	no_leftovers .
}

@test "--commit-on accepts repeated values and overlapping ranges" {
	printf old > f
	run sr -c 0,0,3-5,4-4,5 f sh -c 'printf four > "$1"; exit 4' sh {}
	expect_status 4
	expect_content f four
	run sr -c 0-0 f sh -c 'printf zero > "$1"' sh {}
	expect_status 0
	expect_content f zero
	no_leftovers .
}

@test "a commit set without 0 does not commit a successful CMD" {
	printf old > f
	run sr -c 3 f sh -c 'printf new > "$1"; : > ran' sh {}
	expect_status 0
	[ -e ran ]
	expect_content f old
	no_leftovers .
}

@test "invalid --commit-on lists are refused with 125 before CMD runs" {
	printf old > f
	for list in x 256 -1 1- 1,x a-b 1x 0-256; do
		run --separate-stderr sr --commit-on="$list" f sh -c 'printf new > "$1"; : > ran' sh {}
		if [ "$status" -ne 125 ]; then
			echo "--commit-on='$list' gave status $status" >&2
			return 1
		fi
		one_error_line
		[ ! -e ran ]
		expect_content f old
	done
	no_leftovers .
}

@test "CMD killed by a signal: no commit, snaprun dies by the same signal" {
	printf old > f
	run sr f sh -c 'printf new > "$1"; kill -TERM $$' sh {}
	expect_status 143
	expect_content f old
	no_leftovers .
	waitstatus st "$SNAPRUN" f sh -c 'printf new > "$1"; kill -KILL $$' sh {}
	[ "$(cat st)" = "signal 9 core 0" ]
	waitstatus st "$SNAPRUN" f sh -c 'printf new > "$1"; kill -USR1 $$' sh {}
	[ "$(cat st)" = "signal 10 core 0" ]
	expect_content f old
	no_leftovers .
}

@test "CMD killed by a signal is not committed even if it is in the commit set" {
	printf old > f
	waitstatus st "$SNAPRUN" -c 0-255 f sh -c 'printf new > "$1"; kill -TERM $$' sh {}
	[ "$(cat st)" = "signal 15 core 0" ]
	expect_content f old
	no_leftovers .
}

@test "CMD dumping core: snaprun dies by the same signal without a core dump of its own" {
	printf old > f
	ulimit -c unlimited 2>/dev/null || skip "cannot raise the core size limit"
	waitstatus st "$SNAPRUN" f sh -c 'printf new > "$1"; ulimit -c 0; kill -QUIT $$' sh {}
	[ "$(cat st)" = "signal 3 core 0" ]
	expect_content f old
	no_leftovers .
}

# ------------------------------------------------------------ preservation

@test "permission bits are kept: 0640, 0755, 0604 (also under umask 077)" {
	umask 077
	for m in 640 755 604 600; do
		printf old > f
		chmod "$m" f
		run sr f sh -c 'stat -c %a "$1" > snapmode; printf new > "$1"' sh {}
		expect_status 0
		[ "$(cat snapmode)" = "$m" ]
		[ "$(stat -c %a f)" = "$m" ]
		expect_content f new
		rm f
	done
	no_leftovers .
}

@test "owner and group are kept when running as root" {
	need_root "chown"
	printf old > f
	chown nobody:nogroup f
	chmod 640 f
	run sr f sh -c 'stat -c %U:%G "$1" > snapowner; printf new > "$1"' sh {}
	expect_status 0
	expect_content f new
	[ "$(cat snapowner)" = nobody:nogroup ]
	[ "$(stat -c %U:%G:%a f)" = nobody:nogroup:640 ]
	no_leftovers .
}

@test "setuid, setgid and sticky bits survive with the owner (as root)" {
	need_root "chown"
	for m in 4755 2750 1777 6711; do
		printf old > f
		chown nobody:nogroup f
		chmod "$m" f
		run sr f sh -c 'stat -c %a "$1" > snapmode; printf new > "$1"' sh {}
		expect_status 0
		expect_content f new
		[ "$(cat snapmode)" = "$m" ]
		[ "$(stat -c %a:%U:%G f)" = "$m:nobody:nogroup" ]
		rm f
	done
	no_leftovers .
}

@test "user extended attributes are kept" {
	need_feature xattrs
	need_cmd setfattr
	need_cmd getfattr
	printf old > f
	setfattr -n user.snaprun.test -v hello f 2>/dev/null || skip "this filesystem has no user xattrs"
	run sr f sh -c 'getfattr --only-values -n user.snaprun.test "$1" > snapxattr; printf new > "$1"' sh {}
	expect_status 0
	expect_content f new
	expect_content snapxattr hello
	[ "$(getfattr --only-values -n user.snaprun.test f)" = hello ]
	no_leftovers .
}

@test "POSIX ACLs are kept" {
	need_feature xattrs
	need_cmd setfacl
	need_cmd getfacl
	printf old > f
	setfacl -m u:nobody:rw f 2>/dev/null || skip "this filesystem has no ACLs"
	before=$(getfacl -c f)
	run sr f sh -c "$write_new" sh {}
	expect_status 0
	expect_content f new
	[ "$(getfacl -c f)" = "$before" ]
	[[ $before == *user:nobody:rw-* ]]
}

@test "metadata is kept even when CMD replaces the snapshot by its own rename" {
	printf old > f
	chmod 640 f
	xattr=
	if "$SNAPRUN" -V | grep -q '^features:.* xattrs' && command -v setfattr >/dev/null &&
		setfattr -n user.snaprun.test -v kept f 2>/dev/null; then
		xattr=1
	fi
	owner=$(stat -c %U:%G f)
	if [ "$(id -u)" -eq 0 ]; then
		chown nobody:nogroup f
		owner=nobody:nogroup
	fi
	umask 022
	run sr f sh -c 'printf new > {}.tmp && mv {}.tmp {}'
	expect_status 0
	expect_content f new
	[ "$(stat -c %a f)" = 640 ]
	[ "$(stat -c %U:%G f)" = "$owner" ]
	if [ -n "$xattr" ]; then
		[ "$(getfattr --only-values -n user.snaprun.test f)" = kept ]
	fi
	no_leftovers .
}

# ---------------------------------------------------------------- symlinks

@test "FILE is a symlink: the target is updated and the link stays a link" {
	mkdir real
	printf old > real/data.db
	ln -s real/data.db link
	run sr link sh -c 'basename "$1" > base; (cd "$(dirname "$1")/.." && pwd -P) > where; printf %s "$SNAPRUN_ORIGINAL" > orig; printf new > "$1"' sh {}
	expect_status 0
	[ -L link ]
	[ "$(readlink link)" = real/data.db ]
	expect_content real/data.db new
	expect_content base $'data.db\n'
	expect_content orig link
	[ "$(cat where)" = "$(cd real && pwd -P)" ]
	no_leftovers .
	no_leftovers real
}

@test "relative and chained symlinks are followed to the final target" {
	mkdir a b
	printf old > a/t
	ln -s ../a/t b/l1
	ln -s b/l1 l2
	ln -s l2 l3
	run sr l3 sh -c "$write_new" sh {}
	expect_status 0
	expect_content a/t new
	[ "$(readlink b/l1)" = ../a/t ]
	[ "$(readlink l2)" = b/l1 ]
	[ "$(readlink l3)" = l2 ]
	no_leftovers .
	no_leftovers a
	no_leftovers b
}

@test "symlink given by absolute path to a target by absolute path" {
	mkdir real
	printf old > real/t
	ln -s "$T/real/t" "$T/link"
	run sr "$T/link" sh -c "$write_new" sh {}
	expect_status 0
	[ -L link ]
	expect_content real/t new
	no_leftovers real
	no_leftovers .
}

@test "dangling symlink with --missing=absent: CMD's file becomes the target" {
	ln -s target.db link
	run sr link sh -c '[ ! -e "$1" ] && basename "$1" > base && printf new > "$1"' sh {}
	expect_status 0
	[ -L link ]
	[ "$(readlink link)" = target.db ]
	expect_content target.db new
	expect_content base $'target.db\n'
	no_leftovers .
}

@test "dangling symlink into missing directories: they are created, the link kept" {
	ln -s data/sub/target.db link
	run sr link sh -c 'printf new > "$1"' sh {}
	expect_status 0
	[ -L link ]
	expect_content data/sub/target.db new
	no_leftovers data/sub
	no_leftovers .
}

@test "FILE reached through a symlinked directory" {
	mkdir real
	printf old > real/f
	ln -s real dl
	run sr dl/f sh -c "$write_new" sh {}
	expect_status 0
	expect_content real/f new
	[ -L dl ]
	[ "$(ls -A real)" = f ]
}

@test "dangling symlink and CMD writes nothing: nothing is created" {
	ln -s target.db link
	run sr link sh -c ': > ran' sh {}
	expect_status 0
	[ -e ran ]
	[ -L link ]
	[ ! -e target.db ]
	no_leftovers .
}

@test "symlink loop is refused with 125, without hanging" {
	ln -s a b
	ln -s b a
	ln -s self self
	for f in a self; do
		run --separate-stderr timeout 10 "$SNAPRUN" "$f" sh -c ': > ran' sh {}
		expect_status 125
		one_error_line
		[ ! -e ran ]
	done
	[ -L a ] && [ -L b ] && [ -L self ]
	no_leftovers .
}

@test "hard-linked FILE: warning, the name is replaced, the other link keeps the old content" {
	printf old > f
	ln f g
	run --separate-stderr sr f sh -c "$write_new" sh {}
	expect_status 0
	expect_content f new
	expect_content g old
	[ "$(stat -c %i f)" != "$(stat -c %i g)" ]
	[[ $stderr == 'snaprun: '*'hard link'* ]]
	[[ $stderr == *2\ hard\ links* ]]
	[[ $stderr == *f* ]]
	no_leftovers .
}

# ------------------------------------------------------------------ names

@test "FILE name with spaces" {
	printf old > 'my data file.db'
	run sr 'my data file.db' sh -c 'basename "$1" > base; printf new > "$1"' sh {}
	expect_status 0
	expect_content 'my data file.db' new
	expect_content base 'my data file.db'$'\n'
	no_leftovers .
}

@test "FILE name with a newline" {
	commits_under_name $'two\nlines.db'
}

@test "FILE name with a leading dash after --" {
	printf old > -f
	run sr -- -f -- sh -c "$write_new" sh {}
	expect_status 0
	expect_content ./-f new
	printf old > -f
	run sr -- -f sh -c "$write_new" sh {}
	expect_status 0
	expect_content ./-f new
	no_leftovers .
}

@test "FILE name with printf directives, with -v and in an error" {
	printf old > '%s%n%x.db'
	run --separate-stderr sr -v '%s%n%x.db' sh -c "$write_new" sh {}
	expect_status 0
	expect_content '%s%n%x.db' new
	[[ $stderr == *'%s%n%x.db'* ]]
	run --separate-stderr sr --missing=error '%s%n%s%s.db' true
	expect_status 125
	one_error_line
	[[ $stderr == *'%s%n%s%s.db'* ]]
	no_leftovers .
}

@test "FILE name that is not valid UTF-8" {
	commits_under_name $'bad\xff\xfe.db'
}

@test "FILE name with glob, quote and backslash characters" {
	commits_under_name "it's [a] *\\x.db"
}

# ---------------------------------------------------------------- --missing

@test "--missing=absent (default): CMD creates FILE and it is committed" {
	run sr new.db sh -c '[ ! -e "$1" ] && [ -d "$(dirname "$1")" ] && printf created > "$1"' sh {}
	expect_status 0
	expect_content new.db created
	no_leftovers .
	rm new.db
	run sr --missing=absent new.db sh -c 'printf created > "$1"' sh {}
	expect_status 0
	expect_content new.db created
}

@test "--missing=absent: CMD creates nothing, FILE stays absent, status is CMD's" {
	run sr new.db true
	expect_status 0
	[ ! -e new.db ]
	no_leftovers .
	run sr new.db sh -c 'printf x > "$1"; exit 3' sh {}
	expect_status 3
	[ ! -e new.db ]
	no_leftovers .
}

@test "missing parent directories are created" {
	run sr a/b/c/new.db sh -c 'printf created > "$1"' sh {}
	expect_status 0
	expect_content a/b/c/new.db created
	no_leftovers a/b/c
}

@test "--missing=empty: CMD starts from an empty file, committed even if untouched" {
	run sr --missing=empty new.db sh -c '[ -f "$1" ] && [ ! -s "$1" ]' sh {}
	expect_status 0
	[ -f new.db ] && [ ! -s new.db ]
	rm new.db
	run sr --missing=empty new.db sh -c 'printf x >> "$1"' sh {}
	expect_status 0
	expect_content new.db x
	# an existing FILE is not emptied
	run sr --missing=empty new.db sh -c 'printf y >> "$1"' sh {}
	expect_status 0
	expect_content new.db xy
	no_leftovers .
}

@test "--missing=error: 125, CMD not run, no directories created" {
	run --separate-stderr sr --missing=error sub/new.db sh -c ': > ran' sh {}
	expect_status 125
	one_error_line
	[ ! -e ran ]
	[ ! -e sub ]
	run --separate-stderr sr --missing=error new.db sh -c ': > ran' sh {}
	expect_status 125
	one_error_line
	[[ $stderr == *new.db* ]]
	[ ! -e ran ]
	[ ! -e new.db ]
	# an existing FILE is fine
	printf old > f
	run sr --missing=error f sh -c "$write_new" sh {}
	expect_status 0
	expect_content f new
	no_leftovers .
}

@test "--missing with an unknown mode is refused with 125" {
	run --separate-stderr sr --missing=bogus f true
	expect_status 125
	one_error_line
}

# ------------------------------------------------------------------- --root

@test "--root: the snapshot is laid out below the private directory and committed" {
	mkdir -p R/3.11
	printf old > R/3.11/cache.db
	run sr --root R R/3.11/cache.db -- sh -c '
		test -f {}/3.11/cache.db && test "$(cat {}/3.11/cache.db)" = old &&
		test "$SNAPRUN_ROOT" = {} && test "$SNAPRUN_FILE" = {}/3.11/cache.db &&
		printf new > {}/3.11/cache.db && printf %s {} > root'
	expect_status 0
	expect_content R/3.11/cache.db new
	# the private directory is beside FILE
	[ "$(cd "$(dirname "$(cat root)")" && pwd -P)" = "$(cd R/3.11 && pwd -P)" ]
	no_leftovers R/3.11
	no_leftovers R
	no_leftovers .
}

@test "--root=DIR/ with a trailing slash and a cold start" {
	mkdir R
	run sr --root=R/ R/3.11/cache.db -- sh -c 'mkdir -p "$1/3.11" && printf x > "$1/3.11/cache.db"' sh {}
	expect_status 0
	expect_content R/3.11/cache.db x
	no_leftovers R/3.11
	no_leftovers R
}

@test "--root and FILE spelled differently (relative, absolute, ., ..) still match" {
	mkdir -p R/3.11
	printf 0 > R/3.11/cache.db
	run sr --root R "$T/R/3.11/cache.db" sh -c 'printf 1 > {}/3.11/cache.db'
	expect_status 0
	expect_content R/3.11/cache.db 1
	run sr --root "$T/R" R/3.11/cache.db sh -c 'printf 2 > {}/3.11/cache.db'
	expect_status 0
	expect_content R/3.11/cache.db 2
	run sr --root R/3.11/.. R/3.11/cache.db sh -c 'printf 3 > {}/3.11/cache.db'
	expect_status 0
	expect_content R/3.11/cache.db 3
	cd R/3.11
	run sr --root . cache.db sh -c 'printf 4 > {}/cache.db'
	expect_status 0
	expect_content cache.db 4
	run sr --root .. cache.db sh -c 'printf 5 > {}/3.11/cache.db'
	expect_status 0
	expect_content cache.db 5
	cd "$T"
	no_leftovers R/3.11
	no_leftovers R
}

@test "--root that is FILE itself is refused with 125" {
	printf old > f
	run --separate-stderr sr --root f f sh -c ': > ran' sh {}
	expect_status 125
	one_error_line
	[ ! -e ran ]
}

@test "--root that is not an ancestor of FILE is refused with 125" {
	mkdir R other
	printf old > other/x.db
	run --separate-stderr sr --root R other/x.db -- sh -c ': > ran' sh {}
	expect_status 125
	one_error_line
	[ ! -e ran ]
	expect_content other/x.db old
	# a sibling whose name starts with the root's name is not below it
	mkdir R2
	printf old > R2/x.db
	run --separate-stderr sr --root R R2/x.db -- sh -c ': > ran' sh {}
	expect_status 125
	one_error_line
	[ ! -e ran ]
	no_leftovers other
	no_leftovers R2
}

# ------------------------------------------------------ --keep, -v, misc

@test "--keep: a failed CMD keeps the snapshot in a .kept directory named on stderr" {
	printf old > f
	run --separate-stderr sr --keep f sh -c 'printf new > "$1"; exit 4' sh {}
	expect_status 4
	expect_content f old
	kept=$(find . -maxdepth 1 -name '.f.snaprun.*.kept')
	[ "$(printf '%s\n' "$kept" | wc -l)" -eq 1 ]
	[ -n "$kept" ]
	[ -d "$kept" ]
	expect_content "$kept/f" new
	[[ $stderr == *"$(basename "$kept")"* ]]
	[[ $stderr == snaprun:* ]]
}

@test "--keep with CMD killed by a signal: kept, and snaprun dies by the signal" {
	printf old > f
	run --separate-stderr sr -k f sh -c 'printf new > "$1"; kill -TERM $$' sh {}
	expect_status 143
	expect_content f old
	kept=$(find . -maxdepth 1 -name '.f.snaprun.*.kept')
	[ -n "$kept" ] && [ -d "$kept" ]
	expect_content "$kept/f" new
	[[ $stderr == *"$(basename "$kept")"* ]]
}

@test "-k with a successful CMD commits and keeps nothing" {
	printf old > f
	run sr -k f sh -c "$write_new" sh {}
	expect_status 0
	expect_content f new
	[ "$(ls -A)" = f ]
}

@test "--no-sync still commits" {
	printf old > f
	run sr --no-sync f sh -c "$write_new" sh {}
	expect_status 0
	expect_content f new
	no_leftovers .
}

@test "--no-sync -k: a commit replaces FILE whole, keeps nothing, and the old inode stays intact" {
	printf old > f
	ln f other
	exec 4< f
	run sr --no-sync -k f sh -c "$write_new" sh {}
	expect_status 0
	expect_content f new
	expect_content other old
	[ "$(cat <&4)" = old ]
	exec 4<&-
	[ "$(stat -c %h f)" -eq 1 ]
	[ -z "$(find . -maxdepth 1 -name '*.kept')" ]
	no_leftovers .
}

@test "a commit flushes the snapshot before the rename and the directory after; --no-sync does neither" {
	need_cmd strace
	printf old > f
	# LeakSanitizer cannot run under ptrace; leaks are checked elsewhere
	export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
	strace -qq -o trace -e trace=fsync,fdatasync,sync_file_range,syncfs,sync,rename,renameat,renameat2 true 2>/dev/null ||
		skip "strace cannot trace here"
	run strace -f -qq -o trace -e trace=fsync,fdatasync,syncfs,sync,rename,renameat,renameat2 \
		timeout 30 "$SNAPRUN" f sh -c "$write_new" sh {}
	expect_status 0
	expect_content f new
	cat trace >&2
	# -f: timeout is traced, snaprun is its child
	awk '/rename/ { r = NR } /sync/ && !r { before++ } /sync/ && r { after++ } END { exit !(r && before && after) }' trace
	printf old > f
	run strace -f -qq -o trace -e trace=fsync,fdatasync,syncfs,sync,rename,renameat,renameat2 \
		"$SNAPRUN" --no-sync f sh -c "$write_new" sh {}
	expect_status 0
	expect_content f new
	grep -q rename trace
	! grep -q sync trace
	no_leftovers .
}

@test "-v says each step on stderr and leaves stdout to CMD" {
	printf old > f
	run --separate-stderr sr -v f sh -c 'printf new > "$1"; echo cmd-out' sh {}
	expect_status 0
	expect_content f new
	[ "$output" = cmd-out ]
	n=$(printf '%s\n' "$stderr" | grep -c '^snaprun: ')
	[ "$n" -ge 3 ]
	[ "$n" -eq "$(printf '%s\n' "$stderr" | wc -l)" ]
	printf '%s\n' "$stderr" | grep -qi commit
	no_leftovers .
}

@test "--help and -h print usage on stdout and exit 0" {
	for o in --help -h; do
		run --separate-stderr sr "$o"
		expect_status 0
		[[ $output == *[Uu]sage* ]]
		[[ $output == *snaprun* ]]
		[ -z "$stderr" ]
	done
}

@test "--version and -V print the version on stdout and exit 0" {
	for o in --version -V; do
		run --separate-stderr sr "$o"
		expect_status 0
		[[ ${lines[0]} =~ ^snaprun\ [0-9]+\.[0-9]+ ]]
		[ -z "$stderr" ]
	done
}

# ------------------------------------------------------------- descriptors

@test "CMD gets only stdin, stdout, stderr and one descriptor on the private directory" {
	printf old > f
	status=0
	closefds timeout 30 "$SNAPRUN" f sh -c '
		LC_ALL=C ls -l /proc/self/fd > fds
		(cd "$(dirname "$1")" && pwd -P) > privdir
		printf new > "$1"' sh {} </dev/null >out 2>err || status=$?
	expect_status 0
	expect_content f new
	# drop the header and the descriptor ls itself reads /proc/self/fd with
	awk 'NF >= 3 && $(NF-1) == "->" && $NF !~ "^/proc/[0-9]+/fd$" { print $(NF-2), $NF }' fds > seen
	cat fds >&2
	[ "$(cut -d' ' -f1 seen | sort -n | head -3 | tr '\n' ' ')" = "0 1 2 " ]
	[ "$(wc -l < seen)" -eq 4 ]
	extra=$(awk '$1 > 2 { print $2 }' seen)
	[ "$extra" = "$(cat privdir)" ]
	[ "$(awk '$1 == 0 { print $2 }' seen)" = /dev/null ]
	[ "$(awk '$1 == 1 { print $2 }' seen)" = "$T/fds" ]
	[ "$(awk '$1 == 2 { print $2 }' seen)" = "$T/err" ]
	no_leftovers .
}

@test "the private directory descriptor is read-only and holds a flock" {
	printf old > f
	run closefds timeout 30 "$SNAPRUN" f sh -c '
		for n in 3 4 5 6 7 8 9; do
			[ -e /proc/$$/fd/$n ] || continue
			[ -d /proc/$$/fd/$n ] && cp /proc/$$/fdinfo/$n fdinfo
		done
		true' sh {} </dev/null
	expect_status 0
	[ -s fdinfo ]
	cat fdinfo >&2
	# O_ACCMODE bits are the low two bits of the octal flags: 0 = O_RDONLY
	flags=$(sed -n 's/^flags:[[:space:]]*//p' fdinfo)
	[ -n "$flags" ]
	[ $(( 8#$flags & 3 )) -eq 0 ]
	grep -q '^lock:.*FLOCK' fdinfo
}

# ----------------------------------------------------------------- sqlite

@test "an SQLite database edited by sqlite3 through {} is committed" {
	need_cmd sqlite3
	sqlite3 f.db 'CREATE TABLE t(x); INSERT INTO t VALUES(1);'
	run sr f.db sqlite3 {} 'INSERT INTO t VALUES(2);'
	expect_status 0
	[ "$(sqlite3 f.db 'SELECT group_concat(x) FROM t')" = 1,2 ]
	no_leftovers .
	[ ! -e f.db-journal ]
}

@test "an SQLite database in WAL mode is committed when sqlite3 closes cleanly" {
	need_cmd sqlite3
	sqlite3 w.db 'PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES(1);' >/dev/null
	run sr w.db sqlite3 {} 'INSERT INTO t VALUES(2);'
	expect_status 0
	[ "$(sqlite3 w.db 'SELECT group_concat(x) FROM t')" = 1,2 ]
	no_leftovers .
}

# ------------------------------------------------------------------- more

@test "snaprun nested in snaprun: the inner run commits into the outer snapshot" {
	printf old > f
	run sr f "$SNAPRUN" -I @@ {} sh -c 'printf new > "$1"' sh @@
	expect_status 0
	expect_content f new
	[ "$(ls -A)" = f ]
}

@test "CMD's environment: SNAPRUN_* set by an outer caller are replaced" {
	printf old > f
	SNAPRUN_FILE=/bad SNAPRUN_ROOT=/bad SNAPRUN_ORIGINAL=/bad run sr f sh -c 'printf "%s\n" "$SNAPRUN_FILE" "$SNAPRUN_ROOT" "$SNAPRUN_ORIGINAL" > env.txt; printf new > "$SNAPRUN_FILE"' sh
	expect_status 0
	expect_content f new
	! grep -q /bad env.txt
	[ "$(sed -n 3p env.txt)" = f ]
}

@test "other environment variables reach CMD untouched" {
	printf old > f
	MY_SETTING='a b{}c' run sr f sh -c 'printf %s "$MY_SETTING" > env.txt' sh
	expect_status 0
	expect_content env.txt 'a b{}c'
}

@test "with stdin and stdout closed, no snaprun descriptor takes their place in CMD" {
	printf old > f
	status=0
	closefds timeout 30 "$SNAPRUN" f sh -c '
		LC_ALL=C ls -l /proc/self/fd > "$0/fds" 2>&1
		(cd "$(dirname "$1")" && pwd -P) > "$0/privdir"
		printf new > "$1"' "$T" {} <&- >&- 2>err || status=$?
	expect_status 0
	expect_content f new
	cat fds >&2
	priv=$(cat privdir)
	# fds 0 and 1 are closed or harmless, never the private directory
	awk '$(NF-2) <= 2 { print $NF }' fds > low
	! grep -qxF "$priv" low
	grep -q " -> $priv\$" fds
	no_leftovers .
}

@test "a hidden FILE (leading dot) works" {
	printf old > .cache.db
	run sr .cache.db sh -c 'basename "$1" > base; printf new > "$1"' sh {}
	expect_status 0
	expect_content .cache.db new
	expect_content base $'.cache.db\n'
	[ "$(ls -A)" = $'.cache.db\nbase' ]
}

@test "a very long basename commits or is refused cleanly, never half-done" {
	n=$(printf 'a%.0s' $(seq 250)).db
	printf old > "$n"
	run --separate-stderr sr "$n" sh -c 'printf new > "$1"' sh {}
	if [ "$status" -eq 0 ]; then
		expect_content "$n" new
	else
		expect_status 125
		one_error_line
		[[ $stderr == *"File name too long"* ]]
		expect_content "$n" old
	fi
	no_leftovers .
	[ "$(ls -A | wc -l)" -eq 1 ]
}

# ------------------------------------------------ slips of the hand (issue 14)

@test "a forgotten {}: CMD edits FILE itself, the edit stays, stderr names the slip, CMD's status (also -x and fail)" {
	printf 'apple\n' > fruit.txt
	run --separate-stderr sr fruit.txt -- sed -i s/apple/APPLE/ fruit.txt
	expect_status 0
	expect_content fruit.txt $'APPLE\n'
	one_error_line
	[[ $stderr == *"CMD most likely wrote fruit.txt itself"*"{}"* ]]
	no_leftovers .
	# under -x and --on-conflict=fail the likelier cause is named, not
	# another run, and the status is still CMD's
	for opt in -x --on-conflict=fail; do
		run --separate-stderr sr "$opt" fruit.txt -- sed -i s/APPLE/Apple/ fruit.txt
		expect_status 0
		expect_content fruit.txt $'Apple\n'
		[[ $stderr == *"most likely wrote fruit.txt"* ]]
		[[ $stderr != *"another run"* ]]
		sed -i s/Apple/APPLE/ fruit.txt
	done
	# a CMD with {} that wrote FILE instead is named the same way
	printf 'apple\n' > fruit.txt
	run --separate-stderr sr fruit.txt -- sh -c 'printf pear > fruit.txt; : "$1"' sh {}
	expect_status 0
	expect_content fruit.txt pear
	[[ $stderr == *"wrote fruit.txt instead of {}"* ]]
	no_leftovers .
}

@test "a snapshot CMD never changed is not committed: no rename, no fsync, FILE's inode stays" {
	need_strace rename,renameat,renameat2,fsync,fdatasync
	printf 'same\n' > f
	i0=$(ino f)
	run --separate-stderr strace -f -qq -o trace -e trace=rename,renameat,renameat2,fsync,fdatasync \
		"$SNAPRUN" f -- sh -c 'cat "$1" >/dev/null' sh {}
	expect_status 0
	[ -z "$stderr" ]
	[ "$(ino f)" = "$i0" ]
	expect_content f $'same\n'
	! grep -E 'rename|fsync|fdatasync' trace
	no_leftovers .
	# with -v it says why
	run --separate-stderr sr -v f true
	expect_status 0
	[[ $stderr == *"nothing to commit"* ]]
	[ "$(ino f)" = "$i0" ]
}

@test "slow: every change to the snapshot is committed, however soon after it was taken" {
	# same size, in place, at once: only the change time can tell, and it
	# must never be taken for no change
	printf 'a\n' > f
	for c in b c d e f g h i j k l m n o p q r s t u; do
		run sr f sh -c 'printf "%s\n" "$0" | dd of="$1" conv=notrunc status=none' "$c" {}
		expect_status 0
		expect_content f "$c"$'\n'
	done
	# a chmod alone, a touch to an old date, a replacement by rename
	chmod 600 f
	run sr f chmod 640 {}
	expect_status 0
	[ "$(stat -c %a f)" = 600 ]	# FILE's metadata wins, as always
	i0=$(ino f)
	run sr f touch -d 2001-01-01 {}
	expect_status 0
	[ "$(ino f)" != "$i0" ]
	run sr f sh -c 'printf x > "$1.new" && mv "$1.new" "$1"' sh {}
	expect_status 0
	expect_content f x
	no_leftovers .
}

@test "directories made for an absent FILE are removed again when nothing is committed" {
	# CMD makes nothing, or fails: what snaprun made goes
	run sr confg/a/state.json true
	expect_status 0
	[ ! -e confg ]
	run sr confg/a/state.json sh -c 'printf x > "$1"; exit 3' sh {}
	expect_status 3
	[ ! -e confg ]
	# a failed run (125) too
	run sr --root nowhere confg/a/state.json true
	expect_status 125
	[ ! -e confg ]
	# only what it made: an existing parent stays
	mkdir keepme
	run sr keepme/new/f true
	expect_status 0
	[ -d keepme ] && [ ! -e keepme/new ]
	# only while empty: a directory CMD put something in stays
	run sr made/sub/f sh -c 'printf side > made/side' sh {}
	expect_status 0
	expect_content made/side side
	[ ! -e made/sub ]
	# committed: everything stays
	run sr c1/c2/f sh -c 'printf x > "$1"' sh {}
	expect_status 0
	expect_content c1/c2/f x
	no_leftovers c1/c2
}

@test "FILE's directory moved away during CMD: 125, nothing committed into the moved directory" {
	mkdir d
	printf old > d/f
	run --separate-stderr sr d/f sh -c 'printf new > "$1"; mv d d.old' sh {}
	expect_status 125
	one_error_line
	[[ $stderr == *"moved away or replaced during the run"* ]]
	expect_content d.old/f old
	no_leftovers d.old
	# replaced by another directory of the same name: the same
	mv d.old d
	run --separate-stderr sr d/f sh -c 'printf new > "$1"; mv d d.old; mkdir d' sh {}
	expect_status 125
	expect_content d.old/f old
	[ -z "$(ls -A d)" ]
	no_leftovers d.old
}
