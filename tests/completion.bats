#!/usr/bin/env bats
# Shell completion: each shell is driven for real and the candidates it
# offers are compared with the expected set.

load common

COMP=$BATS_TEST_DIRNAME/../completions

# A working directory with known files, and a PATH directory (outside it)
# with a stub snaprun and two commands only these tests know about.
fixture() {
	mkdir -p "$T/bin" "$T/home" "$T/work/sub"
	: > "$T/work/cache.db"
	: > "$T/work/state.json"
	local c
	for c in snaprun zzsnap-alpha zzsnap-beta; do
		printf '#!/bin/sh\nexit 0\n' > "$T/bin/$c"
		chmod +x "$T/bin/$c"
	done
	export PATH="$T/bin:$PATH" HOME="$T/home"
	export XDG_CONFIG_HOME="$T/home/.config" XDG_DATA_HOME="$T/home/.local/share"
	cd "$T/work"
}

# expect WORD...: the candidates on stdin ($output) are exactly WORD...
expect() {
	local want got
	want=$(printf '%s\n' "$@" | sort -u)
	got=$(printf '%s\n' "$output" | sed '/^$/d' | sort -u)
	if [ "$want" != "$got" ]; then
		printf 'expected candidates:\n%s\ngot:\n%s\n' "$want" "$got" >&2
		return 1
	fi
}

# expect_has WORD...: each WORD is among the candidates
expect_has() {
	local w
	for w in "$@"; do
		if ! grep -qxF -- "$w" <<<"$output"; then
			printf 'expected candidate %s in:\n%s\n' "$w" "$output" >&2
			return 1
		fi
	done
}

# use_shell SHELL: the test drives SHELL (bash, zsh or fish): skip unless
# it can be (need_SHELL, which also sets up the fixture); `offers` asks it.
use_shell() {
	need_"$1"
	COMPLETE=$1_complete
}

# offers LINE [WORD]...: what the shell offers at the end of LINE is
# exactly WORD... (nothing when no WORD is given).
offers() {
	output=$("$COMPLETE" "$1")
	shift
	expect "$@"
}

# The checks every shell shares; SHELL is bash, zsh or fish.

# offers_command_names SHELL: after FILE (and after --), the commands on
# PATH are offered; a dash right after FILE offers only --.
offers_command_names() {
	use_shell "$1"
	offers 'snaprun cache.db zzsnap-' zzsnap-alpha zzsnap-beta
	offers 'snaprun --on-conflict=keep -x cache.db -- zzsnap-' zzsnap-alpha zzsnap-beta
	offers 'snaprun cache.db -' --
}

# offers_cmds_completion SHELL: after CMD, CMD's own completion is used;
# --clean takes no CMD, so nothing is offered after its FILE.
offers_cmds_completion() {
	use_shell "$1"
	offers 'snaprun --missing=empty cache.db zzsnap-alpha ' alpha beta
	offers 'snaprun -x cache.db -- zzsnap-beta st' state.json
	offers 'snaprun --clean cache.db '
}

# offers_option_names SHELL: every long option, without "=" (zsh, fish).
offers_option_names() {
	use_shell "$1"
	offers 'snaprun --' --placeholder --root --commit-on --on-conflict --retries \
		--merge --lock --wait --nonblock --lock-file --missing --filter --no-sync \
		--progress --no-progress --keep --clean --verbose --help --version
}

# ---------------------------------------------------------------- bash

# bash_complete LINE: what bash offers at the end of LINE.  COMP_WORDS is
# split as readline does with the default COMP_WORDBREAKS ("=" is a word
# of its own).  With PLAIN set, a plain bash without bash-completion.
bash_complete() {
	PLAIN=${PLAIN-} bash --norc --noprofile -c '
		[ -n "$PLAIN" ] || . /usr/share/bash-completion/bash_completion || exit 3
		. "$1" || exit 3
		compopt() { :; }   # only valid inside a readline completion
		complete -W "alpha beta" zzsnap-alpha
		line=$2
		COMP_WORDS=()
		for w in $line; do
			while [[ $w == *=* ]]; do
				[[ -n ${w%%=*} ]] && COMP_WORDS+=("${w%%=*}")
				COMP_WORDS+=("=")
				w=${w#*=}
			done
			[[ -n $w ]] && COMP_WORDS+=("$w")
		done
		[[ $line == *[\ =] ]] && COMP_WORDS+=("")
		COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		COMP_LINE=$line COMP_POINT=${#line}
		COMPREPLY=()
		_snaprun snaprun "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
		printf "%s\n" "${COMPREPLY[@]}"
	' bash "$COMP/snaprun.bash" "$1" | sort -u
}

need_bash() {
	[ -r /usr/share/bash-completion/bash_completion ] ||
		skip "bash-completion is not installed"
	fixture
}

plain_bash_complete() {
	PLAIN=1 bash_complete "$1"
}

need_plain_bash() {
	fixture
}

@test "bash: the completion is registered for snaprun" {
	use_shell bash
	run bash --norc -c '. /usr/share/bash-completion/bash_completion; . "$1"; complete -p snaprun' bash "$COMP/snaprun.bash"
	[ "$status" -eq 0 ]
	[[ $output == *"-F _snaprun snaprun" ]]
}

@test "bash: option names" {
	use_shell bash
	offers 'snaprun --' --placeholder= --root= --commit-on= --on-conflict= --retries= \
		--merge= --lock --wait= --nonblock --lock-file= --missing= --filter --no-sync \
		--progress --no-progress --keep --clean --verbose --help --version
	offers 'snaprun -x --on' --on-conflict=
}

@test "bash: --on-conflict values" {
	use_shell bash
	offers 'snaprun --on-conflict=' overwrite keep fail retry merge
	offers 'snaprun --on-conflict r' retry
}

@test "bash: --missing values" {
	use_shell bash
	offers 'snaprun --missing ' absent empty error
	offers 'snaprun -x --missing=e' empty error
}

@test "bash: --root completes directories, -w offers nothing" {
	use_shell bash
	offers 'snaprun --root ' sub
	offers 'snaprun -w '
}

@test "bash: FILE completes files" {
	use_shell bash
	offers 'snaprun ' cache.db state.json sub
	offers 'snaprun --missing=empty -c 0,1 st' state.json
}

@test "bash: after FILE, command names" {
	offers_command_names bash
}

@test "bash: after CMD, CMD's own completion" {
	offers_cmds_completion bash
}

@test "bash: --lock-file completes files" {
	use_shell bash
	offers 'snaprun --lock-file=st' state.json
	offers 'snaprun --lock-file st' state.json
	offers 'snaprun --lock-file=x.lock st' state.json
}

@test "plain bash without bash-completion: sourced without an error, registered" {
	fixture
	run bash --norc --noprofile -c '. "$1" && complete -p snaprun && type _init_completion' bash "$COMP/snaprun.bash"
	[ "$status" -ne 0 ]	# _init_completion is not there...
	[[ ${lines[0]} == *"-F _snaprun snaprun" ]]	# ...and snaprun's is
	[[ $output != *"command not found"* ]]
}

@test "plain bash without bash-completion: options, values, files, commands" {
	use_shell plain_bash
	offers 'snaprun --mis' --missing=
	offers 'snaprun --missing=' absent empty error
	offers 'snaprun --on-conflict=re' retry
	offers 'snaprun --no-pro' --no-progress
	offers 'snaprun --lock-f' --lock-file=
	offers 'snaprun --lock-file=st' state.json
	offers 'snaprun --root ' sub
	offers 'snaprun ' cache.db state.json sub
	offers 'snaprun --missing=empty -c 0,1 st' state.json
	offers 'snaprun --missing=empty cache.db zzsnap-' zzsnap-alpha zzsnap-beta
	offers 'snaprun -x cache.db -- zzsnap-beta st' state.json
}

# ---------------------------------------------------------------- zsh

# zsh_complete LINE: what zsh offers at the end of LINE.  An interactive
# zsh runs in a pseudo-terminal (zpty); compadd is wrapped to log every
# match it is given, and the line is typed followed by TAB.
zsh_complete() {
	local out=$T/zsh.out
	cat > "$T/capture.zsh" <<'EOF'
zmodload zsh/zpty || exit 3
local fp=$1 outf=$2 cmdline=$3 dump=$4 setup=$2.setup line
: >| $outf
cat >| $setup <<SETUP
PROMPT= RPROMPT=
fpath=(${(q)fp} \$fpath)
autoload -Uz compinit && compinit -u -d ${(q)dump}
_zzsnap_alpha() { compadd alpha beta }
compdef _zzsnap_alpha zzsnap-alpha
compadd () {
  if [[ \${@[1,(i)(-|--)]} == *-(O|A|D)\\ * ]]; then builtin compadd "\$@"; return; fi
  local -a __hits
  builtin compadd -O __hits "\$@"
  (( \$#__hits )) && print -rl -- \$__hits >> ${(q)outf}
  builtin compadd "\$@"
}
finish () { print -- '<end>' >> ${(q)outf}; exit }
bindkey '^M' undefined; bindkey '^J' undefined; bindkey '^I' complete-word
comppostfuncs=(finish)
print 'setup''done'
SETUP
zpty z zsh -f -i || exit 3
zpty -w z "source ${(q)setup}"
integer i
for (( i = 0; i < 100; i++ )); do
  zpty -r z line || break
  [[ $line == *setupdone* ]] && break
done
zpty -n -w z "$cmdline"$'\t'
for (( i = 0; i < 200; i++ )); do
  [[ -s $outf && $(<$outf) == *'<end>'* ]] && break
  sleep 0.05
done
zpty -d z
[[ $(<$outf) == *'<end>'* ]] || { print -u2 "zsh did not complete: $cmdline"; exit 4; }
EOF
	# compinit's dump, made by the file's first zsh test, spares the
	# others a scan of every completion function zsh has
	timeout 30 zsh -f "$T/capture.zsh" "$COMP" "$out" "$1" \
		"${BATS_FILE_TMPDIR:-$T}/zcompdump" || return
	grep -vxF '<end>' "$out" | sort -u
}

need_zsh() {
	command -v zsh >/dev/null || skip "zsh is not installed"
	zsh -fc 'zmodload zsh/zpty' 2>/dev/null || skip "zsh has no zpty module"
	fixture
}

@test "slow: zsh: option names" {
	offers_option_names zsh
}

@test "slow: zsh: --on-conflict values" {
	use_shell zsh
	offers 'snaprun --on-conflict=' overwrite keep fail retry merge
}

@test "slow: zsh: --missing values" {
	use_shell zsh
	offers 'snaprun -x --missing=' absent empty error
}

@test "slow: zsh: --root completes directories" {
	use_shell zsh
	offers 'snaprun --root=' sub
}

@test "slow: zsh: FILE completes files" {
	use_shell zsh
	offers 'snaprun ' cache.db state.json sub
	offers 'snaprun -c 0,1 st' state.json
}

@test "slow: zsh: after FILE, command names" {
	offers_command_names zsh
}

@test "slow: zsh: after CMD, CMD's own completion" {
	offers_cmds_completion zsh
}

# ---------------------------------------------------------------- fish

# fish_complete LINE: what fish offers at the end of LINE (the candidate,
# without its description).  The stub snaprun on PATH lets fish autoload
# the completion file from fish_complete_path, as it does once installed.
fish_complete() {
	fish --no-config -c '
		set -p fish_complete_path $argv[1]
		complete -c zzsnap-alpha -f -a "alpha beta"
		complete -C $argv[2]
	' "$COMP" "$1" | cut -f1 | sort -u
}

need_fish() {
	command -v fish >/dev/null || skip "fish is not installed"
	fixture
}

@test "slow: fish: option names" {
	offers_option_names fish
}

@test "slow: fish: --on-conflict values" {
	use_shell fish
	offers 'snaprun --on-conflict=' --on-conflict=overwrite --on-conflict=keep --on-conflict=fail \
		--on-conflict=retry --on-conflict=merge
	offers 'snaprun --on-conflict ' overwrite keep fail retry merge
}

@test "slow: fish: --missing values" {
	use_shell fish
	offers 'snaprun -x --missing ' absent empty error
}

@test "slow: fish: --root completes directories" {
	use_shell fish
	offers 'snaprun --root ' sub/
	offers 'snaprun --root=' --root=sub/
}

@test "slow: fish: FILE completes files" {
	use_shell fish
	offers 'snaprun ' cache.db state.json sub/
	offers 'snaprun -c 0,1 st' state.json
}

@test "slow: fish: after FILE, command names" {
	offers_command_names fish
}

@test "slow: fish: after CMD, CMD's own completion" {
	offers_cmds_completion fish
}
