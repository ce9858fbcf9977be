.POSIX:
# snaprun — see README.md.  The version lives here and nowhere else.
# POSIX make (make, bmake): build, check, install.  The quality gates need
# GNU make and live in GNUmakefile, which GNU make reads instead of this
# file and which includes it.
VERSION = 0.2.0

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

check: snaprun
	SNAPRUN="$$PWD/snaprun" $(RUN_TESTS)

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
	rm -rf snaprun build

.PHONY: all check install uninstall clean
