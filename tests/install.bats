#!/usr/bin/env bats
# make install / uninstall, and the installed documentation.

load common

REPO=$(cd "$BATS_TEST_DIRNAME/.." && pwd)

INSTALLED='usr/bin/snaprun
usr/bin/snaprun-merge-mypy
usr/share/bash-completion/completions/snaprun
usr/share/fish/vendor_completions.d/snaprun.fish
usr/share/man/man1/snaprun.1
usr/share/zsh/site-functions/_snaprun'

# install_to DIR: make install into DIR with PREFIX=/usr
install_to() {
	need_cmd make
	make -s -C "$REPO" install DESTDIR="$1" PREFIX=/usr >/dev/null ||
		{ echo "make install failed" >&2; return 1; }
}

# files DIR: every non-directory below DIR, relative, sorted
files() {
	(cd "$1" && find . ! -type d | sed 's|^\./||' | LC_ALL=C sort)
}

@test "make install puts exactly the six files, with their modes" {
	install_to "$T/dest"
	run files "$T/dest"
	if [ "$output" != "$INSTALLED" ]; then
		printf 'installed:\n%s\nexpected:\n%s\n' "$output" "$INSTALLED" >&2
		false
	fi
	[ "$(stat -c %a "$T/dest/usr/bin/snaprun")" = 755 ]
	[ "$(stat -c %a "$T/dest/usr/bin/snaprun-merge-mypy")" = 755 ]
	cmp "$REPO/snaprun-merge-mypy" "$T/dest/usr/bin/snaprun-merge-mypy"
	local f
	for f in usr/share/man/man1/snaprun.1 \
		usr/share/bash-completion/completions/snaprun \
		usr/share/zsh/site-functions/_snaprun \
		usr/share/fish/vendor_completions.d/snaprun.fish; do
		[ "$(stat -c %a "$T/dest/$f")" = 644 ] || { echo "$f: mode" >&2; false; }
	done
	cmp "$REPO/man/snaprun.1" "$T/dest/usr/share/man/man1/snaprun.1"
	cmp "$REPO/completions/snaprun.bash" "$T/dest/usr/share/bash-completion/completions/snaprun"
	cmp "$REPO/completions/_snaprun" "$T/dest/usr/share/zsh/site-functions/_snaprun"
	cmp "$REPO/completions/snaprun.fish" "$T/dest/usr/share/fish/vendor_completions.d/snaprun.fish"
}

@test "the installed binary runs and reports the Makefile's version" {
	install_to "$T/dest"
	local version
	version=$(sed -n 's/^VERSION *= *//p' "$REPO/Makefile")
	[ -n "$version" ]
	run "$T/dest/usr/bin/snaprun" --version
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "snaprun $version" ]
	printf old > f
	run "$T/dest/usr/bin/snaprun" f sh -c 'printf new > "$1"' sh {}
	[ "$status" -eq 0 ]
	[ "$(cat f)" = new ]
}

@test "make uninstall with the same DESTDIR leaves no files" {
	install_to "$T/dest"
	[ -n "$(files "$T/dest")" ]
	run make -s -C "$REPO" uninstall DESTDIR="$T/dest" PREFIX=/usr
	[ "$status" -eq 0 ]
	run files "$T/dest"
	if [ -n "$output" ]; then
		printf 'left after uninstall:\n%s\n' "$output" >&2
		false
	fi
}

@test "slow: the installed completions are found where each shell looks" {
	install_to "$T/dest"
	local share=$T/dest/usr/share
	if [ -r /usr/share/bash-completion/bash_completion ]; then
		run env XDG_DATA_DIRS="$share" bash --norc --noprofile -c \
			'. /usr/share/bash-completion/bash_completion; __load_completion snaprun; complete -p snaprun'
		[ "$status" -eq 0 ]
		[[ $output == *"-F _snaprun snaprun" ]]
	fi
	if command -v zsh >/dev/null; then
		run zsh -fc 'fpath=($1 $fpath); autoload -Uz compinit; compinit -u -D; print -r -- $_comps[snaprun]' \
			zsh "$share/zsh/site-functions"
		[ "$status" -eq 0 ]
		[ "$output" = _snaprun ]
	fi
	if command -v fish >/dev/null; then
		mkdir -p "$T/home"
		run env HOME="$T/home" XDG_CONFIG_HOME="$T/home/.config" \
			XDG_DATA_HOME="$T/home/.local/share" XDG_DATA_DIRS="$share" \
			PATH="$T/dest/usr/bin:$PATH" \
			fish -c 'complete -C "snaprun --missing="' </dev/null
		[ "$status" -eq 0 ]
		[[ $output == *"--missing=absent"* ]]
	fi
}

@test "the man page is lint-clean (mandoc)" {
	need_cmd mandoc
	run mandoc -Tlint -W warning "$REPO/man/snaprun.1"
	[ -z "$output" ] || { printf '%s\n' "$output" >&2; false; }
}

@test "the man page is lint-clean (groff)" {
	need_cmd groff
	run groff -ww -z -mandoc "$REPO/man/snaprun.1"
	[ "$status" -eq 0 ]
	[ -z "$output" ] || { printf '%s\n' "$output" >&2; false; }
}

@test "the man page documents every option --help lists" {
	[ -x "$SNAPRUN" ] || skip "no binary at $SNAPRUN"
	local opt missing=
	for opt in $("$SNAPRUN" --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
		grep -qE -- "Fl \\\\-${opt#--}( |\$)" "$REPO/man/snaprun.1" || missing+=" $opt"
	done
	for opt in $("$SNAPRUN" --help | grep -oE -- '(^|[ ,])-[A-Za-z]\b' | tr -d ' ,' | sort -u); do
		grep -qE -- "Fl ${opt#-}( |$)" "$REPO/man/snaprun.1" || missing+=" $opt"
	done
	[ -z "$missing" ] || { echo "not in the man page:$missing" >&2; false; }
}
