# snaprun — see README.md.  The version lives here and nowhere else.
VERSION = 0.1.0

PREFIX  = /usr/local
BINDIR  = $(PREFIX)/bin
MANDIR  = $(PREFIX)/share/man
BASHDIR = $(PREFIX)/share/bash-completion/completions
ZSHDIR  = $(PREFIX)/share/zsh/site-functions
FISHDIR = $(PREFIX)/share/fish/vendor_completions.d

CC      ?= cc
CFLAGS  ?= -O2 -g
WARN     = -Wall -Wextra -Wpedantic
# PLAIN_COPY=1 compiles out FICLONE and copy_file_range, so the portable
# read/write path can be built and tested on Linux too.
PLAIN_COPY =
SR_CPPFLAGS = -DSNAPRUN_VERSION='"$(VERSION)"' \
	$(if $(PLAIN_COPY),-DSNAPRUN_PLAIN_COPY)

BATS    = bats
RUN_TESTS = BATS=$(BATS) tests/run

# The build directory is mapped away so that any checkout builds the same bytes.
SR_FLAGS = -std=c11 $(WARN) -ffile-prefix-map=$(CURDIR)=. $(SR_CPPFLAGS) $(CPPFLAGS)
COMPILE  = $(CC) $(SR_FLAGS)

all: snaprun

snaprun: snapshot.c
	$(COMPILE) $(CFLAGS) $(LDFLAGS) -o $@ snapshot.c

check: snaprun
	SNAPRUN=$(CURDIR)/snaprun $(RUN_TESTS)

# Quality gates: the same suite against other builds, then static checks.
# The few tests a build cannot honour (peak memory under a sanitizer,
# reflinks without the fast path) see it in the binary and skip.
SANITIZE = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
SAN_LOG  = $(CURDIR)/build/asan/report

build/asan/snaprun: snapshot.c
	mkdir -p $(@D)
	$(COMPILE) -O1 -g $(SANITIZE) -o $@ snapshot.c

build/plain/snaprun: snapshot.c
	mkdir -p $(@D)
	$(COMPILE) -DSNAPRUN_PLAIN_COPY $(CFLAGS) $(LDFLAGS) -o $@ snapshot.c

build/musl/snaprun: snapshot.c
	mkdir -p $(@D)
	musl-gcc $(SR_FLAGS) $(CFLAGS) $(LDFLAGS) -o $@ snapshot.c

check-asan: build/asan/snaprun
	rm -f $(SAN_LOG).*
	ASAN_OPTIONS=log_path=$(SAN_LOG) UBSAN_OPTIONS=log_path=$(SAN_LOG):print_stacktrace=1 \
	SNAPRUN=$(CURDIR)/build/asan/snaprun $(RUN_TESTS)
	@# A run killed while LeakSanitizer stops it writes only "Unable to
	@# get registers": no finding.  Any report proper fails the gate.
	@if cat $(SAN_LOG).* 2>/dev/null | grep -E 'ERROR|runtime error'; then \
		cat $(SAN_LOG).*; exit 1; fi

check-plain: build/plain/snaprun
	SNAPRUN=$(CURDIR)/build/plain/snaprun $(RUN_TESTS)

check-musl: build/musl/snaprun
	SNAPRUN=$(CURDIR)/build/musl/snaprun $(RUN_TESTS)

VALGRIND = valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect

valgrind: snaprun
	tests/valgrind.sh "$(VALGRIND)" $(CURDIR)/snaprun

cppcheck:
	cppcheck -q --std=c11 --enable=warning,style,performance,portability \
		--error-exitcode=1 --inline-suppr -D__linux__ snapshot.c

analyze:
	gcc $(SR_FLAGS) -Werror -fanalyzer -c -o /dev/null snapshot.c

lint:
	@out=$$(mandoc -Tlint -W warning man/snaprun.1; groff -ww -z -mandoc man/snaprun.1 2>&1); \
	if [ -n "$$out" ]; then echo "$$out"; exit 1; fi

# Two builds from clean, in two different directories: the same bytes.
check-repro:
	rm -rf build/repro && mkdir -p build/repro/a build/repro/b
	cp Makefile snapshot.c build/repro/a && cp Makefile snapshot.c build/repro/b
	$(MAKE) -s -C build/repro/a snaprun && $(MAKE) -s -C build/repro/b snaprun
	cmp build/repro/a/snaprun build/repro/b/snaprun

bench: snaprun
	bench/bench.sh $(CURDIR)/snaprun

bench-quick: snaprun
	bench/bench.sh --quick $(CURDIR)/snaprun

gates: check-asan check-plain check-musl check-repro valgrind cppcheck analyze lint bench-quick

install: snaprun
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(BASHDIR) $(DESTDIR)$(ZSHDIR) $(DESTDIR)$(FISHDIR)
	install -m 755 snaprun $(DESTDIR)$(BINDIR)/snaprun
	install -m 644 man/snaprun.1 $(DESTDIR)$(MANDIR)/man1/snaprun.1
	install -m 644 completions/snaprun.bash $(DESTDIR)$(BASHDIR)/snaprun
	install -m 644 completions/_snaprun $(DESTDIR)$(ZSHDIR)/_snaprun
	install -m 644 completions/snaprun.fish $(DESTDIR)$(FISHDIR)/snaprun.fish

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/snaprun $(DESTDIR)$(MANDIR)/man1/snaprun.1 \
		$(DESTDIR)$(BASHDIR)/snaprun $(DESTDIR)$(ZSHDIR)/_snaprun \
		$(DESTDIR)$(FISHDIR)/snaprun.fish

clean:
	rm -rf snaprun build

.PHONY: all check install uninstall clean check-asan check-plain check-musl \
	check-repro valgrind cppcheck analyze lint bench bench-quick gates
