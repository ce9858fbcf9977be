.POSIX:
# snaprun — see README.md.  The version lives here and nowhere else (the
# man page's footer carries it too; tests/release.bats checks they agree).
# POSIX make (make, bmake): build, check, install.  The quality gates need
# GNU make and live in GNUmakefile, which GNU make reads instead of this
# file and which includes it.
VERSION = 0.3.0

PREFIX  = /usr/local
BINDIR  = $(PREFIX)/bin
MANDIR  = $(PREFIX)/share/man
BASHDIR = $(PREFIX)/share/bash-completion/completions
ZSHDIR  = $(PREFIX)/share/zsh/site-functions
FISHDIR = $(PREFIX)/share/fish/vendor_completions.d

# Set these on the command line (make CC=clang CFLAGS=-O3).  With GNU make,
# CFLAGS may also come from the environment (see GNUmakefile).
# CPPFLAGS=-DSNAPRUN_PLAIN_COPY compiles out FICLONE and copy_file_range,
# so the portable read/write path can be built and tested on Linux too.
CC      = cc
CFLAGS  = -O2 -g
WARN    = -Wall -Wextra -Wpedantic
SR_CPPFLAGS = -DSNAPRUN_VERSION='"$(VERSION)"'

BATS    = bats
RUN_TESTS = BATS=$(BATS) tests/run

# The build directory is mapped away so that any checkout builds the same
# bytes; the shell's $PWD is the directory make runs in.
all: snaprun

snaprun: snapshot.c
	$(CC) -std=c11 $(WARN) -ffile-prefix-map="$$PWD"=. $(SR_CPPFLAGS) \
		$(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ snapshot.c

# check: the suite, several test files at once, but for the long tests;
# check-slow: those (named "slow: ..." or "stress: ..."; the stress tests,
# random kills and races, repeated in full) and the tests with real mypy
# (tests/slow, and the examples that run it).
check: snaprun need-bats
	SNAPRUN="$$PWD/snaprun" $(RUN_TESTS)

check-slow: snaprun need-bats
	SNAPRUN_SLOW=1 SNAPRUN="$$PWD/snaprun" $(RUN_TESTS) tests/slow/*.bats \
		tests/examples.bats
	SNAPRUN_SLOW=only SNAPRUN_STRESS=full SNAPRUN="$$PWD/snaprun" $(RUN_TESTS)

# Without bats the suite cannot run: say so, and how to get it.
need-bats:
	@command -v $(BATS) >/dev/null 2>&1 || { \
		echo "make: $(BATS) not found: the tests need bats-core" \
		"(Debian, Ubuntu: apt-get install bats; Fedora: dnf install" \
		"bats; macOS: brew install bats-core; or" \
		"https://github.com/bats-core/bats-core)" >&2; exit 1; }

install: snaprun
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(BASHDIR) $(DESTDIR)$(ZSHDIR) $(DESTDIR)$(FISHDIR)
	install -m 755 snaprun $(DESTDIR)$(BINDIR)/snaprun
	install -m 755 snaprun-merge-mypy $(DESTDIR)$(BINDIR)/snaprun-merge-mypy
	install -m 644 man/snaprun.1 $(DESTDIR)$(MANDIR)/man1/snaprun.1
	install -m 644 completions/snaprun.bash $(DESTDIR)$(BASHDIR)/snaprun
	install -m 644 completions/_snaprun $(DESTDIR)$(ZSHDIR)/_snaprun
	install -m 644 completions/snaprun.fish $(DESTDIR)$(FISHDIR)/snaprun.fish

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/snaprun $(DESTDIR)$(BINDIR)/snaprun-merge-mypy \
		$(DESTDIR)$(MANDIR)/man1/snaprun.1 \
		$(DESTDIR)$(BASHDIR)/snaprun $(DESTDIR)$(ZSHDIR)/_snaprun \
		$(DESTDIR)$(FISHDIR)/snaprun.fish

clean:
	rm -rf snaprun build snaprun-*.tar.gz

.PHONY: all check check-slow need-bats install uninstall clean
