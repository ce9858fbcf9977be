/*
 * snaprun - run a command on a private snapshot of a file or directory,
 * then commit the snapshot over the original in one atomic step.
 *
 * FILE is copied into a private directory beside it, CMD runs on the
 * copy, and when CMD's exit status is in the commit set the copy is
 * renamed over FILE: a reader sees the old file or the new one, never a
 * mix.  A directory is copied whole and exchanged with its new tree in
 * one renameat2(RENAME_EXCHANGE); with -f, CMD filters FILE from its
 * stdin to its stdout, which becomes the new file.  The private directory
 * stays flock(2)ed while snaprun or CMD lives, so a later run (or --clean)
 * removes a killed run's leftovers only once nothing uses them.  A
 * snapshot CMD left as it was is not committed.  Trees are walked by
 * descriptor, one directory open at a time, each read once (see "walks").
 * A long copy or removal shows one progress line on stderr ("progress").
 *
 * main() calls the steps in order; each is numbered where it is defined:
 *   1. resolve     FILE's final target; its directory opened, by descriptor
 *   2. take        a private directory beside FILE, FILE copied into it
 *   3. substitute  the snapshot's path for the placeholder in CMD
 *   4. run         CMD without a shell, signals forwarded to it
 *   5. decide      CMD exited with a status of the commit set: commit
 *   6. commit      check the snapshot, lock, check for conflicts (merge
 *                  with --merge), rename
 *   7. discard     remove the private directory (or keep it, -k)
 *   8. leave       with CMD's status; 75 conflict or lock; 125 failure
 *
 * The steps hand each other what they use as arguments: the options, the
 * target (FILE resolved) and the snapshot, whose kind (a file, a tree, a
 * filter's output) steps 2 and 6 look at.  Globals hold only what die()
 * and the signal handlers must reach.  snaprun(1) is the user's contract.
 */
#define _GNU_SOURCE	/* renameat2, O_PATH, F_SETLEASE, getentropy */

#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Linux only: renameat2, extended attributes, leases, /proc/self/fd, and
 * the kernel-side copies.  SNAPRUN_POSIX compiles all of it out, as a
 * system with POSIX alone would build it; SNAPRUN_PLAIN_COPY only the
 * copies.  What a build has, -V lists. */
#if defined(__linux__) && !defined(SNAPRUN_POSIX)
#define HAVE_LINUX 1
#include <sys/ioctl.h>	/* FIONREAD */
#include <sys/syscall.h>
#include <sys/sysmacros.h>	/* makedev */
#include <sys/xattr.h>
#if !defined(SNAPRUN_PLAIN_COPY)
#define FAST_COPY 1
#include <sys/ioctl.h>
#ifndef FICLONE
#define FICLONE _IOW(0x94, 9, int)	/* <linux/fs.h>, absent in musl */
#endif
#endif
#if !defined(RENAME_EXCHANGE) && defined(SYS_renameat2)
/* No wrapper in this libc (musl 1.2.3): the system call itself. */
#define RENAME_NOREPLACE (1 << 0)
#define RENAME_EXCHANGE (1 << 1)
static int renameat2(int from, const char *a, int to, const char *b,
    unsigned flags)
{
	return (int)syscall(SYS_renameat2, from, a, to, b, flags);
}
#endif
#if defined(RENAME_EXCHANGE) && defined(RENAME_NOREPLACE)
#define HAVE_EXCHANGE 1
#endif
#if defined(F_SETLEASE)
#define HAVE_LEASE 1
#define HAVE_LEASES 1
#endif
#define HAVE_SYNCFS 1	/* one flush for a whole tree */
#if defined(SYS_statx) && defined(AT_EMPTY_PATH)
#define HAVE_MOUNT_ROOT 1	/* statx tells a bind mount of a file too */
#endif
#if defined(O_PATH)
#define O_WALK O_PATH	/* opens a directory without reading it */
#endif
#endif
#ifndef HAVE_EXCHANGE
#define HAVE_EXCHANGE 0	/* directories cannot be committed */
#endif
#ifndef HAVE_SYNCFS
#define HAVE_SYNCFS 0
#endif
#ifndef HAVE_LEASES
#define HAVE_LEASES 0	/* HAVE_LEASE, for C conditions */
#endif
#ifndef O_WALK
#define O_WALK O_RDONLY
#endif

#ifndef NAME_MAX
#define NAME_MAX 255
#endif

#ifdef __APPLE__	/* the same timestamps under other names */
#define st_atim st_atimespec
#define st_mtim st_mtimespec
#define st_ctim st_ctimespec
#endif

#ifndef SNAPRUN_VERSION
#define SNAPRUN_VERSION "unknown"
#endif

#if defined(__GNUC__)
#define PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF(f, a)
#endif

enum {
	EXIT_CONFLICT = 75,	/* EX_TEMPFAIL: try again later */
	EXIT_FAILED = 125,
	EXIT_NOEXEC = 126,
	EXIT_NOTFOUND = 127,
};

enum conflict { OVERWRITE, KEEP, FAIL, RETRY, MERGE };
enum missing { ABSENT, EMPTY, ERROR };
enum outcome { COMMITTED, CONFLICT, NOTHING, BUSY, UNMERGED };

static const char *const conflict_modes[] = {
	"overwrite", "keep", "fail", "retry", "merge", NULL
};
static const char *const missing_modes[] = { "absent", "empty", "error", NULL };

struct options {
	const char *file;	/* FILE as given */
	const char *placeholder;
	const char *root;	/* --root */
	unsigned char commit_on[256];
	enum conflict conflict;
	int conflict_set;	/* --on-conflict given */
	const char *merge;	/* --merge: SCRIPT */
	long retries;
	int lock;		/* -x */
	double wait;		/* -w, seconds */
	int nonblock;		/* -n */
	enum missing missing;
	int sync;
	int keep;		/* -k */
	int clean;		/* --clean */
	int filter;		/* -f: CMD filters FILE, stdin to stdout */
	int copy;		/* CMD has the placeholder */
	const char *lock_file;	/* --lock-file */
	int progress;		/* --progress 1, --no-progress 0, else -1 */
};

/* The directories a run made for an absent FILE, the last parts of its
 * directory, each as it was made: removed again when nothing is
 * committed. */
struct made {
	struct made_dir {
		dev_t dev;
		ino_t ino;
		char *name;
	} *dirs;
	size_t n, room;
};

/* FILE resolved (step 1), the same for every try. */
struct target {
	const char *file;	/* FILE as given, for messages */
	char *dir;		/* its final target's directory, as a path */
	char *base;		/* its final target's name */
	char *prefix;		/* ".BASE.snaprun.", the start of our names */
	char *rel;		/* the snapshot's path in the private
				 * directory */
	int dirfd;		/* dir, opened without following links */
	struct stat dirst;	/* dir's owner and mode: who may lock here */
	uid_t owner;		/* FILE's owner; (uid_t)-1 when absent */
	struct made made;	/* the directories made for it */
	int lockdir;		/* the lock file's directory (dirfd unless
				 * --lock-file) */
	struct stat lockdirst;	/* its owner and mode: who may lock there */
	char *lockname;		/* the lock file's name in it */
	char *lockpath;		/* the lock file, as a path */
	int lockmade;		/* --lock-file: every commit makes it */
};

/* One snapshot (step 2), handed on to run, commit and discard. */
struct snapshot {
	int dirfd;		/* the target's directory (not ours to close) */
	char name[NAME_MAX + 1];/* the private directory's name in it */
	char *priv;		/* the private directory, as a path */
	int privfd;		/* flocked while snaprun or CMD lives */
	const char *rel;	/* the snapshot inside it */
	char *path;		/* the snapshot, as a path */
	int subfd;		/* the directory the snapshot is in */
	int srcfd;		/* FILE as taken; -1 when it was absent */
	int tree;		/* a directory: the whole tree below it */
	int filter;		/* -f: the snapshot is CMD's standard output */
	int outfd;		/* -f: that file, written by snaprun */
	int outerr;		/* -f: errno of a failed write; -1: a writer
				 * CMD left behind */
	long holder;		/* -f: that writer's pid, when known */
	char *subst;		/* what the placeholder stands for */
	struct stat orig;	/* FILE's identity and metadata then */
	struct stat snap;	/* the snapshot (-f: the read-only copy)
				 * as taken */
	size_t entries;		/* a tree: how many below its top */
	struct timespec mark;	/* a filesystem time after it was taken */
	int settled;		/* any change since sets a ctime >= mark */
	char **args;		/* CMD with the placeholder replaced */
	int ran;		/* CMD ran on it (and nothing was committed) */
	int committed;		/* in FILE's place: what is left is the old */
	const char *file;	/* FILE as given, for messages */
	int keep;		/* -k, for this try */
};

/* What CMD gets back: the signals snaprun handles at their default, and
 * the signal mask snaprun was started with. */
struct signals {
	sigset_t dfl;
	sigset_t mask;
};

static struct snapshot *live;		/* what die() and signals discard */
static struct target *made_for;		/* whose made directories they
					 * remove again */
static volatile pid_t child;		/* CMD, while it runs */
static volatile sig_atomic_t caught;	/* a terminating signal received */
static volatile sig_atomic_t timed_out;	/* -w ran out */
static int verbose;			/* -v */
static char errbuf[BUFSIZ];		/* stderr by lines: one write each */

/* ------------------------------------------------------------ progress */

/* One line on stderr for long work (a big file's copy, a tree's, the
 * removal of an old tree): bytes and entries done, of how many where
 * known, and the rate, rewritten in place and erased when done, as git
 * does.  Shown on a terminal once the work has lasted a second; at once
 * and on any stderr with --progress; never with --no-progress.  The clock
 * is read only every PROGRESS_EVERY units, and between phases an update
 * is one test.  A global: die() must erase it, and the copies deep in
 * the walks count into it. */
#define PROGRESS_EVERY ((uintmax_t)1 << 22)	/* 4 MiB, or 64 entries */
#define PROGRESS_ENTRY ((uintmax_t)1 << 16)

static struct progress {
	int enabled;		/* this run may show it */
	double delay;		/* how long work lasts before it shows */
	const char *what;	/* the phase under way, NULL for none */
	const char *file;
	uintmax_t bytes, entries, total;	/* total bytes, 0 unknown */
	uintmax_t pending;	/* units since the clock was read */
	double start, next;	/* when the phase began; the next update */
	int width;		/* of the line shown, 0 for none */
} progress;

static double monotonic(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* n bytes as "12.3 MiB". */
static char *human(char *buf, size_t size, double n)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	int u = 0;

	while (n >= 1024 && u < 4) {
		n /= 1024;
		u++;
	}
	snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", n, units[u]);
	return buf;
}

/* The line shown, if any, blanked out; the cursor back at its start. */
static void progress_erase(void)
{
	if (progress.width)
		fprintf(stderr, "\r%*s\r", progress.width, "");
	progress.width = 0;
	fflush(stderr);
}

/* The line for what is done now, over the one shown: bytes (of the
 * total), entries, and the rate of what is counted. */
static void progress_draw(double t)
{
	char line[160], b[32], name[80], *c;
	const struct progress *p = &progress;
	double secs = t - p->start > 1e-3 ? t - p->start : 1e-3;
	size_t n = 0;
	int w, room;

	if (p->bytes || p->total) {
		char a[32];

		n += (size_t)snprintf(line, sizeof line, "%s%s%s, ",
		    human(a, sizeof a, (double)p->bytes),
		    p->total ? " of " : "",
		    p->total ? human(b, sizeof b, (double)p->total) : "");
	}
	if (p->entries)
		snprintf(line + n, sizeof line - n, "%ju entries, %.0f/s",
		    p->entries, (double)p->entries / secs);
	else
		snprintf(line + n, sizeof line - n, "%s/s",
		    human(b, sizeof b, (double)p->bytes / secs));
	/* One line of 79 columns at most: the name gives way, and shows
	 * no control character. */
	room = 79 - (int)(strlen(line) + strlen(p->what) + 12);
	snprintf(name, sizeof name, "%.*s", room > 0 ? room : 0, p->file);
	for (c = name; *c; c++)
		if ((unsigned char)*c < ' ' || *c == 0x7f)
			*c = '?';
	w = fprintf(stderr, "\rsnaprun: %s %s: %s", p->what, name, line) - 1;
	if (w < progress.width)
		fprintf(stderr, "%*s", progress.width - w, "");
	progress.width = w > progress.width ? w : progress.width;
	fflush(stderr);
}

/* --progress (1), --no-progress (0), or neither (-1). */
static void progress_setup(int mode)
{
	progress.enabled = mode > 0 || (mode < 0 && isatty(2));
	progress.delay = mode > 0 ? 0 : 1;
}

/* A phase of work on file begins; total bytes, 0 when not known. */
static void progress_start(const char *what, const char *file,
    uintmax_t total)
{
	progress_erase();
	if (!progress.enabled)
		return;
	progress.what = what;
	progress.file = file;
	progress.bytes = progress.entries = progress.pending = 0;
	progress.total = total;
	progress.start = monotonic();
	progress.next = progress.start + progress.delay;
}

/* bytes and entries more done. */
static void progress_add(uintmax_t bytes, uintmax_t entries)
{
	double t;

	if (!progress.what)
		return;
	progress.bytes += bytes;
	progress.entries += entries;
	progress.pending += bytes + entries * PROGRESS_ENTRY;
	if (progress.pending < PROGRESS_EVERY)
		return;
	progress.pending = 0;
	t = monotonic();
	if (t < progress.next)
		return;
	progress.next = t + 0.25;
	progress_draw(t);
}

static void progress_end(void)
{
	progress_erase();
	progress.what = NULL;
}

/* ------------------------------------------------------------ messages */

/* "snaprun: " and the message on one line, control characters shown
 * harmlessly.  A format that ends in ':' gets errno's text appended, as
 * with sbase's eprintf. */
static void vsay(const char *fmt, va_list ap)
{
	char msg[2 * PATH_MAX + 256];
	size_t n = strlen(fmt);
	int err = errno;
	const unsigned char *p;

	vsnprintf(msg, sizeof msg, fmt, ap);
	progress_erase();
	fputs("snaprun: ", stderr);
	for (p = (const unsigned char *)msg; *p; p++) {
		if (*p == '\n')
			fputs("\\n", stderr);
		else if (*p < ' ' || *p == 0x7f)
			fputc('?', stderr);
		else
			fputc(*p, stderr);
	}
	if (n && fmt[n - 1] == ':')
		fprintf(stderr, " %s", strerror(err));
	fputc('\n', stderr);
	errno = err;
}

PRINTF(1, 2) static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay(fmt, ap);
	va_end(ap);
}

/* -v: each step on stderr. */
PRINTF(1, 2) static void note(const char *fmt, ...)
{
	va_list ap;

	if (!verbose)
		return;
	va_start(ap, fmt);
	vsay(fmt, ap);
	va_end(ap);
}

static void discard(struct snapshot *s);
static void unmake_dirs(struct target *t);

/* End by signal sig, as CMD did or as snaprun was told to, without a
 * core dump: shells and make then see the interrupt. */
static _Noreturn void die_by(int sig)
{
	struct rlimit no_core = { 0, 0 };
	sigset_t set;

	setrlimit(RLIMIT_CORE, &no_core);
	signal(sig, SIG_DFL);
	sigemptyset(&set);
	sigaddset(&set, sig);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	raise(sig);
	/* cppcheck-suppress unreachableCode ; raise returns if sig not fatal */
	_exit(128 + sig);
}

/* Fail: one line, the snapshot removed, 125.  A failure that a signal
 * caused (an interrupted wait) is that signal's. */
PRINTF(1, 2) static _Noreturn void die(const char *fmt, ...)
{
	if (!caught) {
		va_list ap;

		va_start(ap, fmt);
		vsay(fmt, ap);
		va_end(ap);
	}
	discard(live);
	unmake_dirs(made_for);
	if (caught)
		die_by(caught);
	exit(EXIT_FAILED);
}

static void check_interrupt(void)
{
	if (caught) {
		discard(live);
		unmake_dirs(made_for);
		die_by(caught);
	}
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		die("malloc:");
	return p;
}

/* The array p of n elements of size bytes, with room for one more. */
static void *grow(void *p, size_t n, size_t *room, size_t size)
{
	if (n < *room)
		return p;
	*room = *room * 2 + 16;
	p = realloc(p, *room * size);
	if (!p)
		die("malloc:");
	return p;
}

/* join("a", "b", ...): the strings end to end, in new memory. */
#define join(...) join_((const char *const[]){ __VA_ARGS__, NULL })

static char *join_(const char *const *parts)
{
	size_t n = 0, i;
	char *r;

	for (i = 0; parts[i]; i++)
		n += strlen(parts[i]);
	r = xmalloc(n + 1);
	*r = '\0';
	for (i = 0; parts[i]; i++)
		strcat(r, parts[i]);
	return r;
}

/* dir and name as one path: "d/n", "/n" for "/", "n" for "". */
static char *path_cat(const char *dir, const char *name)
{
	size_t n = strlen(dir);

	if (!n || dir[n - 1] == '/')
		return join(dir, name);
	return join(dir, "/", name);
}

/* ------------------------------------------------------------- options */

static const char help[] =
"usage: snaprun [OPTION]... FILE|DIR [--] CMD [ARG]...\n"
"       snaprun -f [OPTION]... FILE [--] CMD [ARG]...\n"
"       snaprun --clean FILE|DIR\n"
"Run CMD on a private snapshot of FILE (or of the tree DIR); replace it\n"
"atomically with the snapshot when CMD succeeds.  {} in CMD stands for\n"
"the snapshot.  Options go before FILE.\n"
"\n"
"  -I, --placeholder=STR   replace STR instead of {}\n"
"      --root=DIR          lay the snapshot out below DIR; {} is that\n"
"                          copy of DIR\n"
"  -c, --commit-on=LIST    exit statuses that commit: 0,1 or 0-2 (default 0)\n"
"      --on-conflict=MODE  FILE changed meanwhile: overwrite (default),\n"
"                          keep, fail, retry or merge\n"
"      --retries=N         runs again under retry (default 3)\n"
"      --merge=SCRIPT      FILE changed meanwhile: sh -c SCRIPT merges\n"
"                          ours ($1) with theirs ($2), base $3\n"
"  -x, --lock              serialise whole runs on FILE\n"
"  -w, --wait=SECONDS      give up on the lock after SECONDS (implies -x)\n"
"  -n, --nonblock          give up at once if the lock is taken (implies -x)\n"
"      --lock-file=PATH    lock PATH instead of .FILE.snaprun.lock beside\n"
"                          FILE (made if absent)\n"
"      --missing=MODE      FILE absent: absent (default; -f: an error),\n"
"                          empty or error\n"
"  -f, --filter            CMD reads FILE on stdin; its stdout becomes\n"
"                          FILE's next version; {} is a read-only copy\n"
"      --no-sync           skip every fsync (for rebuildable caches)\n"
"      --progress          show progress on stderr for long copies and\n"
"                          removals (default: on a terminal, after 1 s)\n"
"      --no-progress       never show progress\n"
"  -k, --keep              keep the snapshot if nothing is committed\n"
"      --clean             remove what killed runs left beside FILE\n"
"  -v, --verbose           say each step on stderr\n"
"  -h, --help              show this help\n"
"  -V, --version           show the version and the build's features\n"
"\n"
"Exit status: CMD's; 75 conflict, merge failed or lock not taken;\n"
"125 snaprun failed; "
"126 CMD not executable; 127 CMD not found.  See snaprun(1).\n";

static void usage(void)
{
	fputs(help, stdout);
}

static void version(void)
{
	puts("snaprun " SNAPRUN_VERSION);
	fputs("features:"
#ifdef FAST_COPY
	    " reflink copy_file_range"
#endif
#ifdef HAVE_LINUX
	    " xattrs"
#endif
#if HAVE_EXCHANGE
	    " exchange"
#endif
#ifdef HAVE_LEASE
	    " leases"
#endif
#ifdef HAVE_MOUNT_ROOT
	    " mounts"
#endif
	    " flock\n", stdout);
}

/* -h and -V: a write error (a full disk, a closed stdout) is a failure. */
static _Noreturn void print_and_exit(void (*print)(void))
{
	print();
	if (fflush(stdout) != 0 || ferror(stdout))
		die("standard output:");
	exit(0);
}

static int pick(const char *option, const char *arg, const char *const *names)
{
	char why[128] = "expected";
	int i;

	for (i = 0; names[i]; i++) {
		if (strcmp(arg, names[i]) == 0)
			return i;
		strcat(strcat(why, " "), names[i]);
	}
	die("%s: %s", option, why);
}

/* s as a whole number from 0 to max: digits only, no sign or space. */
static int whole_number(const char *s, long max, long *n)
{
	char *end;

	if (*s < '0' || *s > '9')
		return 0;
	errno = 0;
	*n = strtol(s, &end, 10);
	return !errno && !*end && *n <= max;
}

static long parse_number(const char *option, const char *s, long max)
{
	long n;

	if (!whole_number(s, max, &n))
		die("%s: '%s' is not a number from 0 to %ld", option, s, max);
	return n;
}

/* A status of the --commit-on list, which is named whole when wrong (it
 * may be FILE, taken as the option's value). */
static long exit_status(const char *list, const char *s)
{
	long n;

	if (!whole_number(s, 255, &n))
		die("--commit-on: '%s' is not a list of exit statuses from 0 "
		    "to 255 (such as 0,1 or 0-2)", list);
	return n;
}

/* "0,1" or "0-2,5": every status listed commits. */
static void parse_commit_on(const char *list, unsigned char *set)
{
	char *copy = join(list), *tok, *save, *dash;
	size_t n = strlen(list);

	if (!n || *list == ',' || list[n - 1] == ',' || strstr(list, ",,"))
		die("--commit-on: '%s' has an empty item", list);
	memset(set, 0, 256);
	for (tok = strtok_r(copy, ",", &save); tok;
	    tok = strtok_r(NULL, ",", &save)) {
		long lo, hi;

		dash = strchr(tok, '-');
		if (dash)
			*dash = '\0';
		lo = exit_status(list, tok);
		hi = dash ? exit_status(list, dash + 1) : lo;
		if (lo > hi)
			die("--commit-on: '%s': a range runs backwards", list);
		while (lo <= hi)
			set[lo++] = 1;
	}
	free(copy);
}

static double parse_wait(const char *s)
{
	char *end;
	double w;

	errno = 0;
	w = strtod(s, &end);
	if (errno || end == s || *end || !(w >= 0 && w < 1e9))
		die("--wait: not a number of seconds");
	return w;
}

/* What getopt refused, said as precisely as the argument allows. */
static _Noreturn void bad_option(const char *arg, int c,
    const struct option *longs)
{
	if (c == ':')
		die("%s: needs an argument", arg);
	if (strncmp(arg, "--", 2) == 0) {
		size_t n = strcspn(arg + 2, "="), i, hits = 0, exact = 0;

		for (i = 0; longs[i].name; i++)
			if (strncmp(longs[i].name, arg + 2, n) == 0) {
				hits++;
				exact |= strlen(longs[i].name) == n;
			}
		if (hits > 1 && !exact)
			die("%.*s: ambiguous option (see --help)",
			    (int)n + 2, arg);
		if (hits && arg[n + 2] == '=')
			die("%.*s: takes no argument", (int)n + 2, arg);
	}
	die("%s: unknown option (see --help)", arg);
}

static const struct option longs[] = {
	{ "placeholder", required_argument, NULL, 'I' },
	{ "root", required_argument, NULL, 'R' },
	{ "commit-on", required_argument, NULL, 'c' },
	{ "on-conflict", required_argument, NULL, 'C' },
	{ "retries", required_argument, NULL, 'r' },
	{ "merge", required_argument, NULL, 'G' },
	{ "lock", no_argument, NULL, 'x' },
	{ "lock-file", required_argument, NULL, 'F' },
	{ "wait", required_argument, NULL, 'w' },
	{ "nonblock", no_argument, NULL, 'n' },
	{ "missing", required_argument, NULL, 'M' },
	{ "no-sync", no_argument, NULL, 'S' },
	{ "keep", no_argument, NULL, 'k' },
	{ "clean", no_argument, NULL, 'L' },
	{ "filter", no_argument, NULL, 'f' },
	{ "progress", no_argument, NULL, 'P' },
	{ "no-progress", no_argument, NULL, 'Q' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

/* One option into o.  The long-only ones have letters getopt's short
 * string does not offer. */
static void set_option(struct options *o, int c, const char *arg)
{
	switch (c) {
	case 'I':
		if (!*arg)
			die("--placeholder: must not be empty");
		o->placeholder = arg;
		break;
	case 'R':
		if (!*arg)
			die("--root: the directory name is empty");
		o->root = arg;
		break;
	case 'c': parse_commit_on(arg, o->commit_on); break;
	case 'C':
		o->conflict = (enum conflict)pick("--on-conflict", arg,
		    conflict_modes);
		o->conflict_set = 1;
		break;
	case 'G':
		if (!*arg)
			die("--merge: the script is empty");
		o->merge = arg;
		break;
	case 'r': o->retries = parse_number("--retries", arg, 1000000); break;
	case 'x': o->lock = 1; break;
	case 'F':
		if (!*arg)
			die("--lock-file: the file name is empty");
		o->lock_file = arg;
		break;
	case 'P': o->progress = 1; break;
	case 'Q': o->progress = 0; break;
	case 'w':
		o->wait = parse_wait(arg);
		o->lock = 1;
		o->nonblock |= o->wait < 1e-6;	/* below the timer's grain */
		break;
	case 'n': o->nonblock = o->lock = 1; break;
	case 'M':
		o->missing = (enum missing)pick("--missing", arg,
		    missing_modes);
		break;
	case 'S': o->sync = 0; break;
	case 'k': o->keep = 1; break;
	case 'L': o->clean = 1; break;
	case 'f': o->filter = 1; break;
	case 'v': verbose = 1; break;
	case 'h': print_and_exit(usage);
	case 'V': print_and_exit(version);
	}
}

/* --merge selects --on-conflict=merge, which needs it; it decides the
 * conflicts that -x would prevent, and no other mode goes with it. */
static void merge_options(struct options *o)
{
	if (o->merge && o->lock)
		die("--merge: does not go with --lock (-x, -w or -n), "
		    "which serialises whole runs");
	if (o->merge && o->conflict_set && o->conflict != MERGE)
		die("--merge: does not go with --on-conflict=%s",
		    conflict_modes[o->conflict]);
	if (!o->merge && o->conflict == MERGE)
		die("--on-conflict=merge: needs --merge=SCRIPT");
	if (o->merge)
		o->conflict = MERGE;
}

/* Options up to FILE; returns CMD, what follows FILE or its "--". */
static char **parse_options(int argc, char **argv, struct options *o)
{
	int c, i;

	memset(o, 0, sizeof *o);
	o->placeholder = "{}";
	o->commit_on[0] = 1;
	o->retries = 3;
	o->sync = 1;
	o->progress = -1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:I:c:xw:nfkvhV", longs,
	    NULL)) != -1) {
		if (c == '?' || c == ':')
			bad_option(argv[optind - 1 < argc ? optind - 1 :
			    argc - 1], c, longs);
		set_option(o, c, optarg);
	}
	merge_options(o);
	i = optind;
	if (i >= argc)
		die("usage: snaprun [OPTION]... FILE|DIR [--] CMD [ARG]... "
		    "(see --help)");
	o->file = argv[i++];
	if (o->clean && i != argc)
		die("--clean: takes FILE and no command");
	if (i < argc && strcmp(argv[i], "--") == 0)
		i++;
	if (!o->clean && i >= argc)
		die("%s: no command to run (see --help)", o->file);
	if (o->filter && o->root)
		die("--root: does not go with --filter, whose {} is a file");
	for (c = i; c < argc && !o->copy; c++)
		o->copy = strstr(argv[c], o->placeholder) != NULL;
	return argv + i;
}

/* ------------------------------------------------------------ 1. resolve */

/* The kernel's fs.protected_symlinks rule, which following links by hand
 * would bypass: a link in a sticky world-writable directory (/tmp) is
 * followed only when it is ours or the directory owner's. */
static int may_follow(const char *dir, const struct stat *link)
{
	struct stat d;

	return stat(*dir ? dir : ".", &d) != 0 ||
	    (d.st_mode & (S_ISVTX | S_IWOTH)) != (S_ISVTX | S_IWOTH) ||
	    link->st_uid == geteuid() || link->st_uid == d.st_uid;
}

/* The next part of path at *at, into part; 0 when none is left. */
static int next_part(const char *path, size_t *at, char *part, const char *file)
{
	size_t n;

	while (path[*at] == '/')
		(*at)++;
	n = strcspn(path + *at, "/");
	if (n > NAME_MAX) {
		errno = ENAMETOOLONG;
		die("%s:", file);
	}
	memcpy(part, path + *at, n);
	part[n] = '\0';
	*at += n;
	return n > 0;
}

/* done with its last part dropped, for "..": the parts done hold no
 * links, so this is what the kernel would find. */
static char *parent_of(char *done)
{
	char *slash = strrchr(done, '/');
	size_t n = strlen(done);

	if (!n || strcmp(done + (slash ? slash - done + 1 : 0), "..") == 0) {
		char *up = path_cat(done, "..");

		free(done);
		return up;
	}
	if (slash == done)
		done[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		*done = '\0';
	return done;
}

/* A symbolic link's target, spliced in front of what is left to walk. */
static char *splice_link(const char *link, const char *file, const char *rest)
{
	char target[PATH_MAX];
	ssize_t n = readlink(link, target, sizeof target - 1);

	if (n < 0)
		die("%s:", file);
	target[n] = '\0';
	return join(target, rest);	/* rest is empty or starts with '/' */
}

/* The kernel finds nothing at "missing/.." (ENOENT): neither may a walk
 * that would make the missing directory first.  rest is what follows a
 * part that is absent. */
static void refuse_dotdot(const char *rest, const char *file)
{
	char part[NAME_MAX + 1];
	size_t at = 0;

	while (next_part(rest, &at, part, file))
		if (strcmp(part, "..") == 0) {
			errno = ENOENT;
			die("%s:", file);
		}
}

/* FILE's final target.  Every symbolic link on the way is followed by
 * hand, part by part, each under may_follow(); a missing part ends the
 * walk with the rest as given.  *st is the target's lstat, st_mode 0
 * when it is absent. */
static char *final_target(const char *file, struct stat *st)
{
	char *done = join(*file == '/' ? "/" : ""), *todo = join(file);
	char part[NAME_MAX + 1];
	size_t at = 0;
	int hops = 0;

	memset(st, 0, sizeof *st);
	while (next_part(todo, &at, part, file)) {
		char *cand, *rest;

		if (strcmp(part, ".") == 0)
			continue;
		if (strcmp(part, "..") == 0) {
			done = parent_of(done);
			continue;
		}
		cand = path_cat(done, part);
		if (lstat(cand, st) != 0) {
			if (errno != ENOENT)
				die("%s:", file);
			refuse_dotdot(todo + at, file);
			memset(st, 0, sizeof *st);
			free(done);
			done = join(cand, todo + at);
			free(cand);
			break;
		}
		if (!S_ISLNK(st->st_mode)) {
			if (!S_ISDIR(st->st_mode) && todo[at] == '/') {
				errno = ENOTDIR;
				die("%s:", file);
			}
			free(done);
			done = cand;
			continue;
		}
		if (++hops > 40) {
			errno = ELOOP;
			die("%s:", file);
		}
		if (!may_follow(done, st))
			die("%s: another user's symbolic link in a sticky "
			    "directory; not followed", file);
		rest = splice_link(cand, file, todo + at);
		free(todo);
		free(cand);
		todo = rest;
		at = 0;
		if (*todo == '/') {
			free(done);
			done = join("/");
		}
	}
	free(todo);
	return done;
}

static void forget_made(struct made *m)
{
	while (m->n)
		free(m->dirs[--m->n].name);
}

/* The directory part, opened as fd, made by this run: remembered, after
 * those made just before it (a part that was there starts afresh). */
static void made_dir(struct made *m, int fd, const char *part, int made)
{
	struct stat st;

	if (!made || fstat(fd, &st) != 0) {
		forget_made(m);
		return;
	}
	m->dirs = grow(m->dirs, m->n, &m->room, sizeof *m->dirs);
	m->dirs[m->n].dev = st.st_dev;
	m->dirs[m->n].ino = st.st_ino;
	m->dirs[m->n++].name = join(part);
}

/* Open the directory path below at part by part, never through a
 * symbolic link; with create, make the parts that are missing (mkdir -p),
 * and note them in made (when not NULL).  The descriptor returned can be
 * read and flushed. */
static int walk_dirs(int at, const char *path, int create, struct made *made)
{
	char *copy = join(path), *part, *save;
	int flags = O_WALK | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, e;
	int fd = openat(at, *path == '/' ? "/" : ".", flags & ~O_NOFOLLOW);

	for (part = strtok_r(copy, "/", &save); fd >= 0 && part;
	    part = strtok_r(NULL, "/", &save)) {
		int next = openat(fd, part, flags), new = 0;

		if (next < 0 && errno == ENOENT && create) {
			new = mkdirat(fd, part, 0777) == 0;
			if (new || errno == EEXIST)
				next = openat(fd, part, flags);
		}
		if (made && next >= 0 && strcmp(part, ".") != 0)
			made_dir(made, next, part, new);
		e = errno;
		close(fd);
		errno = e;
		fd = next;
	}
	free(copy);
	if (fd >= 0 && O_WALK != O_RDONLY) {
		int rd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		e = errno;
		close(fd);
		errno = e;
		fd = rd;
	}
	return fd;
}

/* With --root, the snapshot sits at FILE's path below DIR. */
static char *path_below_root(const char *rootdir, const struct target *t)
{
	char *root = realpath(rootdir, NULL), *dir, *rel = NULL;
	size_t n;

	if (!root)
		die("--root: %s:", rootdir);
	dir = realpath(t->dir, NULL);
	n = strcmp(root, "/") == 0 ? 0 : strlen(root);
	if (dir && strncmp(dir, root, n) == 0 &&
	    (dir[n] == '/' || dir[n] == '\0'))
		rel = dir[n] ? join(dir + n + 1, "/", t->base) : join(t->base);
	free(root);
	if (!dir)
		die("%s:", t->dir);
	free(dir);
	if (!rel)
		die("%s: not below the --root directory", t->file);
	return rel;
}

/* ".BASE.snaprun.", BASE cut short where the longest name made from it,
 * ".BASE.snaprun.XXXXXX.kept", would exceed NAME_MAX. */
static char *name_prefix(const char *base)
{
	char *p = join(".", base, ".snaprun.");
	size_t room = NAME_MAX - strlen("XXXXXX.kept");

	if (strlen(p) > room)
		memcpy(p + room - strlen(".snaprun."), ".snaprun.",
		    sizeof ".snaprun.");
	return p;
}

/* -f on an absent FILE: as every filter fails on a missing input (a
 * misspelt name must not become an empty file), unless --missing=empty. */
static void no_input(const char *file, const struct options *o)
{
	if (o->missing == EMPTY)
		return;
	errno = ENOENT;
	if (o->missing == ERROR)
		die("%s:", file);
	die("%s: %s (--missing=empty starts a filter from an empty file)",
	    file, strerror(ENOENT));
}

/* The lock file: ".BASE.snaprun.lock" beside FILE, or --lock-file's
 * PATH, whose directory is opened as given (links followed, as flock(1)
 * does); the lock file itself never through a link. */
static void lock_at(const struct options *o, struct target *t)
{
	const char *slash = o->lock_file ? strrchr(o->lock_file, '/') : NULL;
	char *dir;

	t->lockmade = o->lock_file != NULL;
	if (!o->lock_file) {
		t->lockdir = t->dirfd;
		t->lockdirst = t->dirst;
		t->lockname = join(t->prefix, "lock");
		t->lockpath = path_cat(t->dir, t->lockname);
		return;
	}
	t->lockname = join(slash ? slash + 1 : o->lock_file);
	if (!*t->lockname || !strcmp(t->lockname, ".") ||
	    !strcmp(t->lockname, ".."))
		die("--lock-file: %s: names a directory, not a file",
		    o->lock_file);
	dir = join(slash == o->lock_file ? "/" : slash ? o->lock_file : ".");
	if (slash && slash != o->lock_file)
		dir[slash - o->lock_file] = '\0';
	t->lockpath = join(o->lock_file);
	t->lockdir = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (t->lockdir < 0 || fstat(t->lockdir, &t->lockdirst) != 0)
		die("--lock-file: %s:", dir);
	free(dir);
}

/* 1. Resolve: FILE's final target, its directory opened (and, for an
 * absent FILE, created unless --missing=error), and the lock file's. */
static void resolve(const struct options *o, struct target *t)
{
	struct stat st;
	char *target, *slash;
	int create = !o->clean && (o->missing == EMPTY ||
	    (o->missing == ABSENT && !o->filter));

	memset(&t->made, 0, sizeof t->made);
	if (!*o->file)
		die("FILE: the name is empty");
	target = final_target(o->file, &st);
	slash = strrchr(target, '/');
	t->base = join(slash ? slash + 1 : target);
	if (!*t->base || strcmp(t->base, "..") == 0)
		die("%s: a directory that cannot be replaced; name it as "
		    "PARENT/NAME", o->file);
	if (st.st_mode && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
		die("%s: not a regular file or directory", o->file);
	t->file = o->file;
	t->owner = st.st_mode ? st.st_uid : (uid_t)-1;
	if (slash)
		slash[slash == target] = '\0';
	t->dir = join(slash ? target : ".");
	free(target);
	t->dirfd = walk_dirs(AT_FDCWD, t->dir, create, &t->made);
	made_for = t;
	if (t->dirfd < 0 && errno == ENOENT && o->filter)
		no_input(o->file, o);
	if (t->dirfd < 0 || fstat(t->dirfd, &t->dirst) != 0)
		die("%s:", t->dir);
	if (o->filter && S_ISDIR(st.st_mode))
		die("%s: a directory; --filter takes a file", o->file);
	t->rel = o->root ? path_below_root(o->root, t) :
	    o->filter ? join("out/", t->base) : join(t->base);
	t->prefix = name_prefix(t->base);
	lock_at(o, t);
}

/* --------------------------------------------------------------- locks */

/* In a sticky directory anyone may make a file of our names: only one
 * of the caller's, root's, FILE's owner's or the directory owner's is
 * ours to use. */
static int trusted(const struct target *t, uid_t uid)
{
	return !(t->lockdirst.st_mode & S_ISVTX) || uid == geteuid() ||
	    uid == 0 || uid == t->owner || uid == t->lockdirst.st_uid;
}

/* snaprun works beside FILE: a directory it may not write in is named
 * with what snaprun wants there. */
static void unwritable_dir(const char *dir)
{
	if (errno == EACCES || errno == EPERM || errno == EROFS)
		die("%s: snaprun needs to write in FILE's directory (its "
		    "snapshot and lock go beside FILE):", dir);
}

/* Open the lock file (".BASE.snaprun.lock", or --lock-file's).  Without
 * O_CREAT first: with fs.protected_regular, O_CREAT fails on another
 * user's file in a sticky directory, even for root.  Created, with
 * O_EXCL, only when absent.  create is for the runs that need it (-x,
 * keep, fail, retry, and any with --lock-file): for them anything
 * unusable there is an error.  A commit that only joins in the locking
 * gets -1 instead (absent, unreadable, or not ours to use). */
static int open_lock(const struct target *t, int create)
{
	const char *name = t->lockname;
	int flags = O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC, fd, tries;
	struct stat st;

	/* Anything but a regular file could block or mislead, and opening a
	 * FIFO acts on it: looked at first, never opened.  A commit that
	 * only joins in the locking does without it. */
	if (fstatat(t->lockdir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    !S_ISREG(st.st_mode)) {
		if (!create)
			return -1;
		die("%s: not a regular file", t->lockpath);
	}
	for (tries = 0; tries < 100; tries++) {
		fd = openat(t->lockdir, name, flags);
		if (fd >= 0 || errno != ENOENT || !create)
			break;
		fd = openat(t->lockdir, name, flags | O_CREAT | O_EXCL, 0644);
		if (fd < 0 && errno != EEXIST && t->lockdir == t->dirfd)
			unwritable_dir(t->dir);
		/* Every user of FILE must be able to open it, whatever our
		 * umask. */
		if (fd >= 0 && fchmod(fd, 0644) != 0)
			note("%s: cannot make it readable for all",
			    t->lockpath);
		if (fd >= 0 || errno != EEXIST)
			break;
	}
	/* A commit that only joins in the locking does without a lock file
	 * it cannot open, rather than lose CMD's work. */
	if (fd < 0 && !create &&
	    (errno == ENOENT || errno == EACCES || errno == ELOOP))
		fd = -1;
	else if (fd < 0 || fstat(fd, &st) != 0)
		die("%s:", t->lockpath);
	else if (!S_ISREG(st.st_mode))
		die("%s: not a regular file", t->lockpath);
	else if (!trusted(t, st.st_uid) && create)
		die("%s: another user's file; remove it to lock here",
		    t->lockpath);
	else if (!trusted(t, st.st_uid)) {
		note("%s: another user's file; not used as a lock",
		    t->lockpath);
		close(fd);
		fd = -1;
	}
	return fd;
}

/* Is fd still the lock file?  One deleted while held (tmp cleaners remove
 * old files nobody writes) or replaced locks nothing any more. */
static int still_there(const struct target *t, int fd)
{
	struct stat a, b;

	return fstat(fd, &a) == 0 && a.st_nlink > 0 &&
	    fstatat(t->lockdir, t->lockname, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
	    a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* flock(2) fd; 0 when it is taken (LOCK_NB) or -w ran out.  With -v, a
 * wait is announced, once. */
static int take_lock(const struct target *t, int fd, int how)
{
	static int said;

	if (verbose && !said && !(how & LOCK_NB) &&
	    flock(fd, how | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
		said = 1;
		note("%s: waiting for the lock another run holds (pid %ld "
		    "waits)", t->file, (long)getpid());
	}
	while (flock(fd, how) != 0) {
		if (errno == EWOULDBLOCK || timed_out)
			return 0;
		if (errno != EINTR)
			die("%s:", t->file);
		check_interrupt();
	}
	return 1;
}

static void lock_timeout(int sig)
{
	(void)sig;
	timed_out = 1;
}

/* -w: SIGALRM ends the wait.  The timer fires again every 10 ms: an alarm
 * that comes before flock starts to wait must not leave it waiting. */
static void arm_timer(double wait)
{
	struct itimerval t = { { 0, 10000 }, { 0, 0 } };
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = lock_timeout;
	sigaction(SIGALRM, &sa, NULL);
	t.it_value.tv_sec = (time_t)wait;
	t.it_value.tv_usec =
	    (suseconds_t)((wait - (double)t.it_value.tv_sec) * 1e6);
	setitimer(ITIMER_REAL, &t, NULL);
}

/* Locking at the start of a run, decided here: -x takes the lock for the
 * whole run and returns it (-2: not had in time); keep, fail and retry
 * make sure the lock file is there and ours now, before CMD runs, so that
 * every commit from then on takes it; the default mode takes nothing. */
static int start_lock(const struct target *t, const struct options *o)
{
	struct itimerval off = { { 0, 0 }, { 0, 0 } };
	int fd;

	if (!o->lock) {
		if (o->conflict != OVERWRITE || t->lockmade)
			close(open_lock(t, 1));
		return -1;
	}
	if (o->wait > 0 && !o->nonblock)
		arm_timer(o->wait);
	for (;;) {
		fd = open_lock(t, 1);
		if (!take_lock(t, fd,
		    o->nonblock ? LOCK_EX | LOCK_NB : LOCK_EX)) {
			close(fd);
			fd = -2;
			break;
		}
		if (still_there(t, fd))
			break;
		close(fd);
	}
	setitimer(ITIMER_REAL, &off, NULL);
	if (fd >= 0)
		note("%s: locked", t->file);
	return fd;
}

/* Locking around a commit, decided here: a run under -x holds its lock
 * already; keep, fail and retry lock the lock file, the default mode
 * joins one that is there (and creates none beside FILE, so it leaves
 * nothing behind; --lock-file's is made when the run starts).  Held
 * for a moment; returns it (-1: none) and in *check whether FILE must
 * still be what was snapshotted, which it must also under -x: a change
 * there means something ignored the lock. */
static int commit_lock(const struct target *t, const struct options *o,
    int *check)
{
	int create = o->conflict != OVERWRITE || t->lockmade;

	*check = o->lock || o->conflict != OVERWRITE;
	if (o->lock)
		return -1;
	for (;;) {
		int fd = open_lock(t, create);

		if (fd < 0)
			return -1;
		take_lock(t, fd, LOCK_EX);
		if (still_there(t, fd))
			return fd;
		close(fd);
	}
}

/* --------------------------------------------------------------- walks */

/* A walk of the tree below an open directory, depth first, linear in its
 * entries.  It never follows a link, and it holds a few descriptors
 * however deep the tree: one directory is open at a time, the way back up
 * is by "..", checked against where the walk came from.  Each directory
 * is read once: its entries are handed to the walk during that pass, and
 * the names of the subdirectories to go down into are kept, per level,
 * to continue from when the walk comes back up.  A signal ends the walk
 * at the next entry (EINTR); a removal goes on for a moment first, so a
 * small tree is still removed whole. */
struct level {
	dev_t dev;
	ino_t ino;
	char *name;
	mode_t mode;	/* its st_mode before the walk opened it, or 0 */
};

/* The subdirectories of one directory still to go down into, end to end. */
struct todo {
	char *names;
	size_t len, room, at;
};

struct walk {
	/* An entry of the open directory dir: 0 next, 1 go down into it,
	 * -1 failed (errno). */
	int (*entry)(struct walk *w, int dir, const char *name);
	/* Went down into the deepest level's name, open as fd. */
	int (*down)(struct walk *w, int fd);
	/* All of fd's entries done, before the walk leaves it. */
	int (*done)(struct walk *w, int fd);
	/* Back in fd, out of its entry name. */
	int (*up)(struct walk *w, int fd, const char *name);
	int ours;	/* unreadable directories may be made readable */
	int restore;	/* and are given their mode back when done */
	int grace;	/* a signal ends the walk only after a moment */
	struct level *lv;
	size_t depth, room;
	struct todo *todo;	/* one per level, the top's first */
	size_t troom;
	struct timespec seen;	/* when the walk saw the signal */
	size_t since;		/* entries handled since */
	char *failed;	/* where the walk failed, below its top */
	void *data;
};

/* The path of name below the walk's top, in new memory. */
static char *walk_path(const struct walk *w, const char *name)
{
	size_t i, n = strlen(name) + 1;
	char *p;

	for (i = 0; i < w->depth; i++)
		n += strlen(w->lv[i].name) + 1;
	p = xmalloc(n);
	*p = '\0';
	for (i = 0; i < w->depth; i++)
		strcat(strcat(p, w->lv[i].name), "/");
	return strcat(p, name);
}

static int walk_failed(struct walk *w, const char *name)
{
	int err = errno;

	if (!w->failed)
		w->failed = walk_path(w, name);
	errno = err;
	return -1;
}

/* A signal to act on: at once, or for a removal (w->grace) once it has
 * gone on for 50 ms and 256 entries since it saw the signal (EINTR). */
static int stopped(struct walk *w)
{
	struct timespec now;

	if (!caught)
		return 0;
	if (w->grace && !w->seen.tv_sec && !w->seen.tv_nsec) {
		clock_gettime(CLOCK_MONOTONIC, &w->seen);
		return 0;
	}
	if (w->grace && (++w->since < 256 || w->since % 64))
		return 0;
	if (w->grace) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - w->seen.tv_sec) * 1000 +
		    (now.tv_nsec - w->seen.tv_nsec) / 1000000 < 50)
			return 0;
	}
	errno = EINTR;
	return 1;
}

#ifdef HAVE_LINUX
/* A file or directory of ours that its mode shuts to us, opened anyway:
 * O_PATH opens it without reading, and its /proc/self/fd name is that
 * very inode, so no name that could change meanwhile is chmod-ed.  Its
 * st_mode before is in *was (0 when it was not changed). */
static int open_shut(int at, const char *name, int flags, mode_t add,
    mode_t *was)
{
	char proc[64];
	int p = openat(at, name, O_PATH | O_NOFOLLOW | O_CLOEXEC |
	    (flags & O_DIRECTORY));
	int fd = -1, e;
	struct stat st;

	*was = 0;
	if (p < 0)
		return -1;
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", p);
	if (fstat(p, &st) == 0 &&
	    chmod(proc, (st.st_mode & 07777) | add) == 0) {
		*was = st.st_mode;
		fd = open(proc, flags | O_CLOEXEC);
	}
	e = errno;
	close(p);
	errno = e;
	return fd;
}
#else
/* Without /proc there is only the name; this is inside a directory of
 * the caller's own, which no other user can change. */
static int open_shut(int at, const char *name, int flags, mode_t add,
    mode_t *was)
{
	struct stat st;

	*was = 0;
	if (fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
	    S_ISLNK(st.st_mode) ||
	    fchmodat(at, name, (st.st_mode & 07777) | add,
	    AT_SYMLINK_NOFOLLOW) != 0)
		return -1;
	*was = st.st_mode;
	return openat(at, name, flags | O_NOFOLLOW | O_CLOEXEC);
}
#endif

/* An unreadable directory of ours, made readable and opened. */
static int open_unreadable(int at, const char *name, mode_t *was)
{
	return open_shut(at, name, O_RDONLY | O_DIRECTORY, S_IRWXU, was);
}

/* Hand each entry of the open directory fd to the walk, in one pass;
 * those it goes down into are listed in *t. */
static int read_dir(struct walk *w, int fd, struct todo *t)
{
	int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0), r = 0, e;
	struct dirent *d;
	DIR *dir;

	t->len = t->at = 0;
	if (dfd < 0 || !(dir = fdopendir(dfd))) {
		e = errno;
		if (dfd >= 0)
			close(dfd);
		errno = e;
		return -1;
	}
	rewinddir(dir);
	while (r == 0 && (errno = 0, d = readdir(dir))) {
		const char *n = d->d_name;
		size_t len = strlen(n) + 1;

		if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
			continue;
		r = stopped(w) ? -1 : w->entry(w, fd, n);
		if (r < 0)
			walk_failed(w, n);
		while (r > 0 && t->len + len > t->room)
			t->names = grow(t->names, t->room, &t->room, 1);
		if (r > 0) {
			memcpy(t->names + t->len, n, len);
			t->len += len;
			r = 0;
		}
	}
	if (r == 0 && errno) {
		walk_failed(w, "");
		r = -1;
	}
	e = errno;
	closedir(dir);
	errno = e;
	return r;
}

/* One level down into name, remembered so the way back can be checked. */
static int go_down(struct walk *w, int cur, const char *name)
{
	struct level *l;
	struct stat st;
	int next;

	w->lv = grow(w->lv, w->depth, &w->room, sizeof *w->lv);
	if (fstat(cur, &st) != 0)
		return -1;
	l = &w->lv[w->depth++];
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	l->name = join(name);
	l->mode = 0;
	next = openat(cur, name,
	    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (next < 0 && errno == EACCES && w->ours)
		next = open_unreadable(cur, name, &l->mode);
	if (next >= 0 && w->down && w->down(w, next) != 0) {
		int e = errno;

		close(next);
		errno = e;
		next = -1;
	}
	return next;
}

/* One level back up by "..", which must be where the walk came from. */
static int go_up(struct walk *w, int cur)
{
	struct level *l = &w->lv[--w->depth];
	int next = -1;
	struct stat st;

	next = openat(cur, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	/* Its mode back once it is left: ".." needs it searchable. */
	if (next >= 0 && w->restore && l->mode &&
	    fchmod(cur, l->mode & 07777) != 0) {
		close(next);
		next = -1;
	}
	if (next >= 0 && (fstat(next, &st) != 0 || st.st_dev != l->dev ||
	    st.st_ino != l->ino)) {
		close(next);
		errno = ESTALE;		/* moved while the walk was in it */
		next = -1;
	}
	if (next >= 0 && w->up && w->up(w, next, l->name) != 0) {
		int e = errno;

		close(next);
		errno = e;
		next = -1;
	}
	free(l->name);
	return next;
}

/* The next step from the open directory cur, at the walk's depth: down
 * into the next subdirectory listed, or, when none is left, done and back
 * up.  Returns the directory the walk is in next; -1 with errno, or with
 * errno 0 at the end. */
static int walk_step(struct walk *w, int cur)
{
	struct todo *t = &w->todo[w->depth];
	int next, err;

	if (stopped(w))
		return walk_failed(w, "");
	if (t->at < t->len) {
		const char *name = t->names + t->at;

		t->at += strlen(name) + 1;
		next = go_down(w, cur, name);
		if (next < 0)
			return walk_failed(w, "");
		if (w->depth >= w->troom) {
			size_t had = w->troom;

			w->todo = grow(w->todo, w->depth, &w->troom,
			    sizeof *w->todo);
			memset(w->todo + had, 0,
			    (w->troom - had) * sizeof *w->todo);
		}
		if (read_dir(w, next, &w->todo[w->depth]) == 0)
			return next;
	} else if (w->done && w->done(w, cur) != 0) {
		return walk_failed(w, "");
	} else if (w->depth == 0) {
		errno = 0;
		return -1;
	} else if ((next = go_up(w, cur)) >= 0) {
		return next;
	} else {
		return walk_failed(w, "");
	}
	err = errno;
	close(next);
	errno = err;
	return -1;
}

/* Walk the tree below the open directory top.  Returns 0, or -1 with
 * errno and w->failed. */
static int walk_tree(struct walk *w, int top)
{
	int cur = fcntl(top, F_DUPFD_CLOEXEC, 0), err = 0;
	size_t i;

	w->todo = grow(NULL, 0, &w->troom, sizeof *w->todo);
	memset(w->todo, 0, w->troom * sizeof *w->todo);
	if (cur < 0 || read_dir(w, cur, &w->todo[0]) != 0)
		err = errno;
	while (cur >= 0 && !err) {
		int next = walk_step(w, cur);

		err = next < 0 ? errno : 0;
		close(cur);
		cur = next;
	}
	if (cur >= 0)
		close(cur);
	while (w->depth)
		free(w->lv[--w->depth].name);
	for (i = 0; i < w->troom; i++)
		free(w->todo[i].names);
	free(w->todo);
	free(w->lv);
	w->lv = NULL;
	w->todo = NULL;
	w->room = w->troom = 0;
	errno = err;
	return err ? -1 : 0;
}

/* ------------------------------------------------------------- removal */

/* Make the open directory fd ours to empty: CMD may have left it
 * read-only or unreadable (as go mod download does). */
static int writable(int fd)
{
	struct stat st;

	if (fstat(fd, &st) != 0)
		return -1;
	if ((st.st_mode & S_IRWXU) == S_IRWXU)
		return 0;
	return fchmod(fd, S_IRWXU);
}

static int writable_down(struct walk *w, int fd)
{
	(void)w;
	return writable(fd);
}

/* An entry removed; a directory that is not empty is gone down into. */
static int remove_entry(struct walk *w, int dir, const char *name)
{
	struct stat st;
	int err;

	(void)w;
	progress_add(0, 1);
	if (unlinkat(dir, name, 0) == 0 || errno == ENOENT)
		return 0;
	err = errno;
	if (err != EISDIR && (fstatat(dir, name, &st,
	    AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode))) {
		errno = err;
		return -1;
	}
	if (unlinkat(dir, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
		return 0;
	return errno == ENOTEMPTY || errno == EEXIST ? 1 : -1;
}

/* Back out of name, emptied: it goes too.  Not empty (an entry the
 * one pass did not see): the next pass takes it. */
static int remove_left(struct walk *w, int fd, const char *name)
{
	(void)w;
	return unlinkat(fd, name, AT_REMOVEDIR) == 0 || errno == ENOENT ||
	    errno == ENOTEMPTY || errno == EEXIST ? 0 : -1;
}

/* Empty the open directory top, never through a link; *failed (unless
 * failed is NULL) is where it failed, below top. */
static int clear_dir(int top, char **failed)
{
	struct walk w;
	int e;

	memset(&w, 0, sizeof w);
	w.entry = remove_entry;
	w.down = writable_down;
	w.up = remove_left;
	w.ours = w.grace = 1;
	if (writable(top) == 0 && walk_tree(&w, top) == 0)
		return 0;
	e = errno;
	if (failed && !*failed)
		*failed = w.failed ? w.failed : join("");
	else
		free(w.failed);
	errno = e;
	return -1;
}

static int empty_dir(int top)
{
	return clear_dir(top, NULL);
}

/* Remove the directory name in at, open as fd, with all in it; a second
 * pass takes what appeared during the first.  *failed as for clear_dir. */
static int remove_tree(int at, const char *name, int fd, char **failed)
{
	int pass, e;

	for (pass = 0;; pass++) {
		if (unlinkat(at, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
			return 0;	/* empty, as after most commits */
		if ((errno != ENOTEMPTY && errno != EEXIST) || fd < 0 ||
		    pass == 3 ||
		    (failed ? clear_dir(fd, failed) : empty_dir(fd)) != 0)
			break;
	}
	e = errno;
	if (failed && !*failed)
		*failed = join("");
	errno = e;
	return -1;
}

/* Remove the directory name in at, open as fd, with all in it. */
static int remove_dir(int at, const char *name, int fd)
{
	return remove_tree(at, name, fd, NULL);
}

/* What cannot be removed (a mount, an immutable file, another user's
 * directory) is said once, with where and why, then set aside as
 * NAME.left, which runs leave alone and --clean tries again.  An
 * interrupted removal is left as it is, for the next run.  path is name
 * in at, as a path; failed is where below it the removal failed. */
static void set_aside(int at, const char *name, const char *path,
    const char *failed, int clean)
{
	char left[NAME_MAX + 8];
	size_t n = strlen(name);
	int err = errno;
	const char *sep = *failed ? "/" : "";

	if (caught && err == EINTR) {
		say("%s: interrupted; left for a later run or --clean", path);
		return;
	}
	snprintf(left, sizeof left, "%s%s", name,
	    n > 5 && strcmp(name + n - 5, ".left") == 0 ? "" : ".left");
	if (strcmp(left, name) != 0 && renameat(at, name, at, left) != 0)
		snprintf(left, sizeof left, "%s", name);
	errno = err;
	if (strcmp(left, name) == 0)
		say("%s%s%s: cannot remove it:", path, sep, failed);
	else
		say("%s%s%s: cannot remove it (%s); set aside as %s%s", path,
		    sep, failed, strerror(err), left,
		    clean ? "" : " (see --clean)");
}

/* One leftover, removed when it is the caller's own and nobody holds it
 * locked: a live run, or the CMD of a dead one, keeps its lock.  Returns
 * 1 when it could not be removed. */
static int remove_leftover(const struct target *t, const char *name,
    int clean)
{
	char *where = NULL, *path;
	int priv = openat(t->dirfd, name,
	    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), failed = 0;
	struct stat st;

	if (priv < 0)
		return 0;
	path = path_cat(t->dir, name);
	if (fstat(priv, &st) == 0 && st.st_uid == geteuid() &&
	    flock(priv, LOCK_EX | LOCK_NB) == 0) {
		if (remove_tree(t->dirfd, name, priv, &where) == 0) {
			note("%s: removed what a killed run left", path);
		} else {
			set_aside(t->dirfd, name, path, where, clean);
			failed = 1;
		}
	}
	free(where);
	free(path);
	close(priv);
	return failed;
}

/* Leftovers are the caller's own private directories that nobody holds
 * locked.  Another user's are never touched; those set aside (NAME.left)
 * only by --clean.  Their names are read first: the directory changes as
 * they go.  Returns how many could not be removed. */
static int sweep(const struct target *t, int clean)
{
	size_t n = strlen(t->prefix);
	struct todo names;
	int fd, failed = 0;
	struct dirent *e;
	struct stat st;
	DIR *d;

	/* A directory links to itself twice and once from each directory
	 * in it (btrfs says 1 instead): at 2 there is nothing to look for. */
	if (fstat(t->dirfd, &st) == 0 && st.st_nlink == 2)
		return 0;
	fd = fcntl(t->dirfd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0 || !(d = fdopendir(fd)))
		die("%s:", t->dir);
	memset(&names, 0, sizeof names);
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name) + 1;

		if (strncmp(e->d_name, t->prefix, n) != 0 ||
		    (len != n + 7 && (!clean || len != n + 12 ||
		    strcmp(e->d_name + n + 6, ".left") != 0)))
			continue;
		while (names.len + len > names.room)
			names.names = grow(names.names, names.room,
			    &names.room, 1);
		memcpy(names.names + names.len, e->d_name, len);
		names.len += len;
	}
	closedir(d);
	for (; names.at < names.len && !caught;
	    names.at += strlen(names.names + names.at) + 1)
		failed += remove_leftover(t, names.names + names.at, clean);
	free(names.names);
	return failed;
}

/* What killed runs left beside FILE, removed at the start of a run. */
static int remove_leftovers(const struct target *t)
{
	return sweep(t, 0);
}

/* --clean: those set aside too; says what it could not remove, and why. */
static int clean_leftovers(const struct target *t)
{
	return sweep(t, 1);
}

/* -------------------------------------------------------------- 2. take */

/* Six characters no other user can guess, after prefix. */
static void random_name(char *name, const char *prefix)
{
	static const char set[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	unsigned char r[6];
	size_t i, n = strlen(prefix);

	if (getentropy(r, sizeof r) != 0)
		for (i = 0; i < sizeof r; i++) {
			static unsigned long long mix;

			mix = mix * 6364136223846793005ULL +
			    (unsigned long long)getpid() +
			    (unsigned long long)time(NULL) +
			    (unsigned long long)clock();
			r[i] = (unsigned char)(mix >> 33);
		}
	memcpy(name, prefix, n);
	for (i = 0; i < sizeof r; i++)
		name[n + i] = set[r[i] % (sizeof set - 1)];
	name[n + i] = '\0';
}

/* The private directory: made, opened and locked through the target's
 * directory descriptor, under a new random name (another only when that
 * name exists).  A cleaner may remove it before the lock is had; then it
 * has no links left, and another is made. */
static void make_private_dir(const struct target *t, struct snapshot *s)
{
	int tries;

	for (tries = 0; tries < 1000; tries++) {
		struct stat st;

		check_interrupt();
		random_name(s->name, t->prefix);
		if (mkdirat(t->dirfd, s->name, 0700) != 0) {
			if (errno == EEXIST)
				continue;
			s->name[0] = '\0';
			unwritable_dir(t->dir);
			die("%s:", t->dir);
		}
		live = s;
		/* Not close-on-exec: CMD inherits the lock. */
		s->privfd = openat(t->dirfd, s->name,
		    O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
		if (s->privfd < 0 && errno == ENOENT) {
			s->name[0] = '\0';	/* a cleaner was quicker */
			continue;
		}
		if (s->privfd < 0 || flock(s->privfd, LOCK_EX) != 0 ||
		    fstat(s->privfd, &st) != 0)
			die("%s/%s:", t->dir, s->name);
		if (st.st_nlink > 0)
			return;
		close(s->privfd);
		s->privfd = -1;
		s->name[0] = '\0';
	}
	die("%s: cannot make a private directory", t->dir);
}

static _Noreturn void copy_failed(const char *file)
{
	die("copying %s:", file);
}

/* Copy len bytes at off, in the kernel when it can. */
static void copy_range(int in, int out, off_t off, off_t len, const char *file)
{
	static char buf[1 << 17];
#ifdef FAST_COPY
	static int kernel_copy = 1;

	while (kernel_copy && len > 0) {
		off_t i = off, o = off;
		size_t want = len > (1 << 30) ? 1 << 30 : (size_t)len;
		ssize_t n = copy_file_range(in, &i, out, &o,
		    progress.what && want > 1 << 24 ? 1 << 24 : want, 0);

		if (n < 0 && (errno == EXDEV || errno == ENOSYS ||
		    errno == EOPNOTSUPP || errno == EINVAL)) {
			kernel_copy = 0;
			break;
		}
		if (n < 0 && errno != EINTR)
			copy_failed(file);
		check_interrupt();
		if (n == 0)
			return;	/* FILE shrank under us */
		off += n > 0 ? n : 0;
		len -= n > 0 ? n : 0;
		progress_add((uintmax_t)(n > 0 ? n : 0), 0);
	}
#endif
	while (len > 0) {
		size_t want = len > (off_t)sizeof buf ?
		    sizeof buf : (size_t)len;
		ssize_t n = pread(in, buf, want, off), w;

		if (n < 0 && errno != EINTR)
			copy_failed(file);
		check_interrupt();
		if (n == 0)
			return;
		for (w = 0; n > 0 && w < n;) {
			ssize_t k = pwrite(out, buf + w, (size_t)(n - w),
			    off + w);

			if (k < 0 && errno != EINTR)
				copy_failed(file);
			w += k > 0 ? k : 0;
			check_interrupt();
		}
		off += n > 0 ? n : 0;
		len -= n > 0 ? n : 0;
		progress_add((uintmax_t)(n > 0 ? n : 0), 0);
	}
}

/* Copy the data of the file in, of status st: a reflink where the
 * filesystem shares extents (tried until it fails once), else segment by
 * segment so holes stay holes.  Says how. */
static const char *copy_data(int in, int out, const struct stat *st,
    const char *file)
{
	off_t off = 0, size = st->st_size;
	int sparse = (off_t)st->st_blocks * 512 < size;
#ifdef FAST_COPY
	static int clone = 1;

	if (clone && ioctl(out, FICLONE, in) == 0)
		return "a reflink clone";
	clone &= errno != EOPNOTSUPP && errno != EXDEV && errno != EINVAL &&
	    errno != ENOTTY;
#endif
	while (off < size) {
		off_t data = off, hole = size;
#ifdef SEEK_HOLE
		if (sparse)
			data = lseek(in, off, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break;	/* only a hole is left */
		if (data < 0)
			data = off;
		if (sparse)
			hole = lseek(in, data, SEEK_HOLE);
		if (hole < 0 || hole > size)
			hole = size;
#endif
		copy_range(in, out, data, hole - data, file);
		off = hole;
	}
	if (sparse && ftruncate(out, size) != 0)
		copy_failed(file);
#ifdef FAST_COPY
	return "copied in the kernel";
#else
	return "copied";
#endif
}

#ifdef HAVE_LINUX
#define ACL_PREFIX "system.posix_acl_"	/* access, and default for a
					 * directory */

/* The names of fd's extended attributes, n bytes; NULL when none. */
static char *xattr_names(int fd, ssize_t *n)
{
	char *names;

	*n = flistxattr(fd, NULL, 0);
	if (*n <= 0)
		return NULL;
	names = xmalloc((size_t)*n);
	*n = flistxattr(fd, names, (size_t)*n);
	return names;
}

static int has_name(const char *names, ssize_t n, const char *name)
{
	const char *p;

	for (p = names; p && p < names + n; p += strlen(p) + 1)
		if (strcmp(p, name) == 0)
			return 1;
	return 0;
}

/* from's extended attributes on to, and no others: an ACL inherited from
 * a default ACL above must not widen who may read FILE.  Attributes this
 * filesystem or user may not set are not ours to keep, as with
 * cp --preserve=xattr. */
static void copy_xattrs(int from, int to, const char *path)
{
	ssize_t n, m;
	char *names = xattr_names(from, &n), *had = xattr_names(to, &m), *p;

	for (p = had; p && p < had + m; p += strlen(p) + 1)
		if (!has_name(names, n, p) && fremovexattr(to, p) != 0 &&
		    strncmp(p, ACL_PREFIX, strlen(ACL_PREFIX)) == 0)
			die("%s: cannot remove an inherited ACL:", path);
	/* A read-only mode would refuse them: writable until the mode is
	 * set. */
	if (names && fchmod(to, S_IRWXU) != 0)
		die("%s:", path);
	for (p = names; p && p < names + n; p += strlen(p) + 1) {
		ssize_t len = fgetxattr(from, p, NULL, 0);
		char *value;

		if (len < 0)
			continue;
		value = xmalloc((size_t)len);
		len = fgetxattr(from, p, value, (size_t)len);
		if (len >= 0 && fsetxattr(to, p, value, (size_t)len, 0) != 0 &&
		    errno != ENOTSUP && errno != EPERM && errno != EACCES)
			die("%s:", path);
		free(value);
	}
	free(names);
	free(had);
}
#else
static void copy_xattrs(int from, int to, const char *path)
{
	(void)from;	/* no portable interface */
	(void)to;
	(void)path;
}
#endif

/* FILE's owner and group, extended attributes and mode on the snapshot.
 * Owner first: chown clears the set-id bits and file capabilities.  Mode
 * last: a read-only mode would refuse the attributes.  Ids we may not
 * give stay ours, as with cp -p, and the set-id bits go with them. */
static void copy_metadata(int from, const struct stat *st, int to,
    const char *path)
{
	mode_t mode = st->st_mode & 07777;

	if (fchown(to, st->st_uid, st->st_gid) != 0) {
		mode &= (mode_t)~S_ISUID;
		if (fchown(to, (uid_t)-1, st->st_gid) != 0)
			mode &= (mode_t)~S_ISGID;
	}
	copy_xattrs(from, to, path);
	if (fchmod(to, mode) != 0)
		die("%s:", path);
}

/* An SQLite database is not all in its file while a non-empty -wal or
 * -journal lies beside it.  Returns that side file's name, else NULL. */
static const char *hot_journal(int dirfd, const char *base, char *buf,
    size_t size)
{
	static const char *const sides[] = { "-wal", "-journal" };
	struct stat st;
	size_t i;

	for (i = 0; i < 2; i++) {
		snprintf(buf, size, "%s%s", base, sides[i]);
		if (fstatat(dirfd, buf, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    st.st_size > 0)
			return buf;
	}
	return NULL;
}

/* A copy of FILE alone would lose what its journal holds, and a commit
 * beside it would be spoilt by it. */
static void refuse_hot_journal(const struct target *t, const char *then)
{
	char side[NAME_MAX + 16];

	if (hot_journal(t->dirfd, t->base, side, sizeof side))
		die("%s: %s is not empty (a hot SQLite journal): open the "
		    "database once with its tool to recover it, or snapshot "
		    "the whole directory%s", t->file, side, then);
}

static int mount_root(int fd);

/* FILE opened for the copy; -1 when absent.  Anything but a regular file
 * or a directory is refused from its lstat, before it is opened: opening
 * a FIFO or a device acts on it. */
static int open_source(const struct target *t, struct stat *st)
{
	int fd, kind;

	if (fstatat(t->dirfd, t->base, st, AT_SYMLINK_NOFOLLOW) != 0) {
		if (errno == ENOENT)
			return -1;
		die("%s:", t->file);
	}
	kind = st->st_mode & S_IFMT;
	if (kind != S_IFREG && kind != S_IFDIR)
		die("%s: not a regular file or directory", t->file);
	fd = openat(t->dirfd, t->base,
	    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC |
	    (kind == S_IFDIR ? O_DIRECTORY : 0));
	if (fd < 0 || fstat(fd, st) != 0)
		die("%s:", t->file);
	if ((st->st_mode & S_IFMT) != (mode_t)kind)
		die("%s: replaced while being opened", t->file);
	if (mount_root(fd))
		die("%s: a mount point, which cannot be replaced", t->file);
	return fd;
}

/* The snapshot's own directory below the private one, walked afresh each
 * time without following links: CMD may have rebuilt it. */
static int snapshot_dir(const struct snapshot *s, int create)
{
	const char *slash = strrchr(s->rel, '/');
	char *sub = join(s->rel);
	int fd;

	sub[slash ? slash - s->rel : 0] = '\0';
	fd = walk_dirs(s->privfd, *sub ? sub : ".", create, NULL);
	free(sub);
	return fd;
}

static const char *snapshot_name(const struct snapshot *s)
{
	const char *slash = strrchr(s->rel, '/');

	return slash ? slash + 1 : s->rel;
}

/* ------------------------------------------------------ directory trees */

#ifdef HAVE_MOUNT_ROOT
/* The kernel's struct statx (<linux/stat.h>): statx(2) is called as a
 * system call, since not every libc has a wrapper (musl 1.2.3 has none). */
struct kstatx_time {
	int64_t sec;
	uint32_t nsec;
	int32_t reserved;
};

struct kstatx {
	uint32_t mask, blksize;
	uint64_t attributes;
	uint32_t nlink, uid, gid;
	uint16_t mode, spare;
	uint64_t ino, size, blocks, attributes_mask;
	struct kstatx_time atime, btime, ctime, mtime;
	uint32_t rdev_major, rdev_minor, dev_major, dev_minor;
	uint64_t rest[14];	/* 256 bytes in all */
};
_Static_assert(sizeof(struct kstatx) == 256, "struct statx is 256 bytes");
#define KSTATX_BASIC 0x7ffU	/* STATX_BASIC_STATS */
#define KSTATX_MOUNT_ROOT 0x2000	/* STATX_ATTR_MOUNT_ROOT, Linux 5.8 */
#ifndef AT_NO_AUTOMOUNT
#define AT_NO_AUTOMOUNT 0x800
#endif

static void kstatx_time(struct timespec *ts, const struct kstatx_time *k)
{
	ts->tv_sec = (time_t)k->sec;
	ts->tv_nsec = (long)k->nsec;
}

/* lstat(2) of name in dir (of dir itself for ""), and in *mount whether
 * it is the top of a mount: another filesystem, a bind mount of the same
 * one, or a file bind-mounted over another.  One call for both. */
static int stat_entry(int dir, const char *name, struct stat *st, int *mount)
{
	struct kstatx sx;

	*mount = 0;
	if (syscall(SYS_statx, dir, name, AT_SYMLINK_NOFOLLOW |
	    AT_NO_AUTOMOUNT | (*name ? 0 : AT_EMPTY_PATH), KSTATX_BASIC,
	    &sx) != 0)	/* before Linux 4.11: lstat, no bind mounts */
		return errno != ENOSYS ? -1 : *name ?
		    fstatat(dir, name, st, AT_SYMLINK_NOFOLLOW) : fstat(dir, st);
	memset(st, 0, sizeof *st);
	st->st_dev = makedev(sx.dev_major, sx.dev_minor);
	st->st_ino = (ino_t)sx.ino;
	st->st_mode = (mode_t)sx.mode;
	st->st_nlink = (nlink_t)sx.nlink;
	st->st_uid = (uid_t)sx.uid;
	st->st_gid = (gid_t)sx.gid;
	st->st_size = (off_t)sx.size;
	st->st_blocks = (blkcnt_t)sx.blocks;
	kstatx_time(&st->st_atim, &sx.atime);
	kstatx_time(&st->st_mtim, &sx.mtime);
	kstatx_time(&st->st_ctim, &sx.ctime);
	*mount = (sx.attributes_mask & KSTATX_MOUNT_ROOT) &&
	    (sx.attributes & KSTATX_MOUNT_ROOT);
	return 0;
}
#else
static int stat_entry(int dir, const char *name, struct stat *st, int *mount)
{
	*mount = 0;	/* only another filesystem's st_dev tells */
	return *name ? fstatat(dir, name, st, AT_SYMLINK_NOFOLLOW) :
	    fstat(dir, st);
}
#endif

/* The top of a mount, a bind mount of the same filesystem too. */
static int mount_root(int fd)
{
	struct stat st;
	int mount;

	return stat_entry(fd, "", &st, &mount) == 0 && mount;
}

/* A directory a tree may not take in: another filesystem, or a mount. */
static int foreign(int fd, dev_t dev)
{
	struct stat st;
	int mount;

	return stat_entry(fd, "", &st, &mount) != 0 || st.st_dev != dev ||
	    mount;
}

struct hardlink {
	dev_t dev;
	ino_t ino;
	char *path;	/* its first copy, below the copy's top */
};

/* One tree copy, kept in step with the walk of the original. */
struct copy {
	int dst;		/* the copy of the directory the walk is in */
	int top;		/* the copy's top, for hard links */
	dev_t dev;		/* the tree's filesystem */
	const char *file;	/* DIR, for messages */
	const char *how;	/* how file data was copied */
	size_t entries;
	struct hardlink *links;	/* a hash table of room slots */
	size_t nlinks, room;
};

/* Something no snapshot may hold: 125 before CMD runs, naming it. */
static _Noreturn void refuse_entry(struct walk *w, const char *file,
    const char *name, const char *why)
{
	char *path = walk_path(w, name);
	size_t n = strlen(path);

	if (n && path[n - 1] == '/')
		path[n - 1] = '\0';
	die("%s/%s: %s", file, path, why);
}

/* Where (dev, ino) goes in the table of room slots (a power of 2). */
static size_t link_slot(const struct hardlink *t, size_t room, dev_t dev,
    ino_t ino)
{
	size_t i = (size_t)((uintmax_t)ino * 0x9E3779B97F4A7C15ULL ^
	    (uintmax_t)dev) & (room - 1);

	while (t[i].path && (t[i].ino != ino || t[i].dev != dev))
		i = (i + 1) & (room - 1);
	return i;
}

/* The first copy of a file with more links, from a hash table: a tree
 * of hard links costs what any tree costs. */
static const char *linked(const struct copy *c, const struct stat *st)
{
	if (!c->room)
		return NULL;
	return c->links[link_slot(c->links, c->room, st->st_dev,
	    st->st_ino)].path;
}

static void add_link(struct copy *c, const struct stat *st, char *path)
{
	struct hardlink *l;

	if (2 * (c->nlinks + 1) > c->room) {
		size_t room = c->room ? 2 * c->room : 64, i;

		l = xmalloc(room * sizeof *l);
		memset(l, 0, room * sizeof *l);
		for (i = 0; i < c->room; i++)
			if (c->links[i].path)
				l[link_slot(l, room, c->links[i].dev,
				    c->links[i].ino)] = c->links[i];
		free(c->links);
		c->links = l;
		c->room = room;
	}
	l = &c->links[link_slot(c->links, c->room, st->st_dev, st->st_ino)];
	l->dev = st->st_dev;
	l->ino = st->st_ino;
	l->path = path;
	c->nlinks++;
}

/* A regular file of the tree: its data, metadata and times; a second
 * name of one already copied becomes a hard link to that copy. */
static int copy_file(struct walk *w, struct copy *c, int dir, const char *name,
    const struct stat *st)
{
	const char *first = st->st_nlink > 1 ? linked(c, st) : NULL;
	struct timespec ts[2];
	char *rel, *path;
	int in, out;

	if (first)
		return linkat(c->top, first, c->dst, name, 0);
	in = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (in < 0)
		return -1;
	out = openat(c->dst, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    S_IRUSR | S_IWUSR);
	if (out < 0) {
		close(in);
		return -1;
	}
	/* A failure names the file: which of thousands filled the disk */
	rel = walk_path(w, name);
	path = path_cat(c->file, rel);
	c->how = copy_data(in, out, st, path);
	copy_metadata(in, st, out, path);
	ts[0] = st->st_atim;
	ts[1] = st->st_mtim;
	if (futimens(out, ts) != 0 || close(out) != 0)
		copy_failed(path);
	free(path);
	free(rel);
	close(in);
	if (st->st_nlink > 1)
		add_link(c, st, walk_path(w, name));
	return 0;
}

/* A symbolic link of the tree, as a link (never followed), with its own
 * owner and times, as cp -a keeps them. */
static int copy_link(struct copy *c, int dir, const char *name,
    const struct stat *st)
{
	char target[PATH_MAX + 1];
	ssize_t n = readlinkat(dir, name, target, sizeof target - 1);
	struct timespec ts[2];

	if (n < 0)
		return -1;
	target[n] = '\0';
	if (symlinkat(target, c->dst, name) != 0)
		return -1;
	if (fchownat(c->dst, name, st->st_uid, st->st_gid,
	    AT_SYMLINK_NOFOLLOW) != 0 && errno != EPERM)
		return -1;
	ts[0] = st->st_atim;
	ts[1] = st->st_mtim;
	return utimensat(c->dst, name, ts, AT_SYMLINK_NOFOLLOW);
}

/* An entry of the original tree, copied; a directory is made (private
 * until it is done) and gone down into. */
static int copy_entry(struct walk *w, int dir, const char *name)
{
	struct copy *c = w->data;
	struct stat st;
	int mount;

	if (stat_entry(dir, name, &st, &mount) != 0)
		return -1;
	c->entries++;
	progress_add(0, 1);
	if (mount || (S_ISDIR(st.st_mode) && st.st_dev != c->dev))
		refuse_entry(w, c->file, name,
		    "a mount point; nothing snapshotted");
	if (S_ISDIR(st.st_mode))
		return mkdirat(c->dst, name, S_IRWXU) == 0 ? 1 : -1;
	if (S_ISLNK(st.st_mode))
		return copy_link(c, dir, name, &st);
	if (S_ISREG(st.st_mode))
		return copy_file(w, c, dir, name, &st);
	refuse_entry(w, c->file, name, "not a regular file, directory or "
	    "symbolic link; nothing snapshotted");
}

static int copy_down(struct walk *w, int fd)
{
	struct copy *c = w->data;
	int d;

	if (foreign(fd, c->dev))
		refuse_entry(w, c->file, "",
		    "a mount point; nothing snapshotted");
	d = openat(c->dst, w->lv[w->depth - 1].name,
	    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (d < 0)
		return -1;
	close(c->dst);
	c->dst = d;
	return 0;
}

/* A directory done: the copy climbs to its parent first, then takes the
 * original's metadata and times, mode last, since they may shut it. */
static int copy_done(struct walk *w, int fd)
{
	struct copy *c = w->data;
	struct timespec ts[2];
	struct stat st;
	int up = -1;

	if (fstat(fd, &st) != 0)
		return -1;
	if (w->depth > 0 &&
	    (up = openat(c->dst, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -1;
	copy_metadata(fd, &st, c->dst, c->file);
	ts[0] = st.st_atim;
	ts[1] = st.st_mtim;
	if (futimens(c->dst, ts) != 0) {
		if (up >= 0)
			close(up);
		return -1;
	}
	if (up >= 0) {
		close(c->dst);
		c->dst = up;
	}
	return 0;
}

/* Copy the tree below the open directory src into the directory top. */
static int copy_tree(int src, int top, const char *file, const char **how,
    size_t *entries, char **failed)
{
	struct copy c;
	struct walk w;
	struct stat st;
	int r, e;

	memset(&c, 0, sizeof c);
	memset(&w, 0, sizeof w);
	if (fstat(src, &st) != 0 ||
	    (c.dst = fcntl(top, F_DUPFD_CLOEXEC, 0)) < 0)
		return -1;
	c.top = top;
	c.dev = st.st_dev;
	c.file = file;
	c.how = "no file data";
	w.entry = copy_entry;
	w.down = copy_down;
	w.done = copy_done;
	w.data = &c;
	r = walk_tree(&w, src);
	e = errno;
	close(c.dst);
	while (c.room)
		free(c.links[--c.room].path);
	free(c.links);
	*failed = w.failed;
	*how = c.how;
	*entries = c.entries;
	errno = e;
	return r;
}

/* Was DIR replaced (by another run's commit) since it was opened? */
static int replaced(const struct target *t, const struct snapshot *s)
{
	struct stat now;

	return fstatat(t->dirfd, t->base, &now, AT_SYMLINK_NOFOLLOW) != 0 ||
	    now.st_dev != s->orig.st_dev || now.st_ino != s->orig.st_ino;
}

/* A directory's tree, copied through descriptors.  A run that commits
 * meanwhile exchanges DIR, then removes the old tree that this copy
 * reads: then the copy is thrown away and taken again from the new one,
 * so CMD always starts from one whole version. */
static const char *fill_tree(const struct target *t, struct snapshot *s)
{
	static char how[128];
	const char *name = snapshot_name(s), *data;
	char *failed = NULL;
	int tries;
	size_t n;

	for (tries = 0; tries < 10; tries++, free(failed)) {
		int top;

		if (foreign(s->srcfd, t->dirst.st_dev))
			die("%s: a mount point, which cannot be replaced",
			    t->file);
		/* A directory moves to another parent only when its mover
		 * may write it (its ".." changes): root, or its mode. */
		if (faccessat(t->dirfd, t->base, W_OK, AT_EACCESS) != 0 &&
		    errno == EACCES)
			die("%s: not writable (mode %04o), and a directory "
			    "must be to be exchanged; nothing snapshotted "
			    "(chmod u+w it first)", t->file,
			    (unsigned)s->orig.st_mode & 07777);
		if (mkdirat(s->subfd, name, S_IRWXU) != 0 ||
		    (top = openat(s->subfd, name,
		    O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
			die("%s:", s->path);
		s->tree = 1;
		if (copy_tree(s->srcfd, top, t->file, &data, &n,
		    &failed) == 0 && !replaced(t, s)) {
			close(top);
			s->entries = n;
			snprintf(how, sizeof how, "a tree of %zu entries, %s",
			    n, data);
			return how;
		}
		if (!replaced(t, s))
			die("copying %s/%s:", t->file, failed ? failed : "");
		note("%s: replaced while being copied; copying it again",
		    t->file);
		if (remove_dir(s->subfd, name, top) != 0)
			die("%s:", s->path);
		close(top);
		close(s->srcfd);
		s->srcfd = open_source(t, &s->orig);
		if (s->srcfd < 0 || !S_ISDIR(s->orig.st_mode))
			die("%s: replaced by something else while being "
			    "copied", t->file);
	}
	die("%s: replaced again and again while being copied", t->file);
}

/* FILE's other names keep the old version. */
static void warn_links(const struct target *t, const struct snapshot *s)
{
	if (s->orig.st_nlink > 1)
		say("%s: has %ju hard links; the commit replaces this name "
		    "only", t->file, (uintmax_t)s->orig.st_nlink);
}

/* FILE, or an empty file for --missing=empty, into the snapshot. */
static const char *fill(const struct target *t, const struct options *o,
    struct snapshot *s)
{
	const char *how = "absent";
	int out = -1;

	s->srcfd = open_source(t, &s->orig);
	if (s->srcfd >= 0 && S_ISDIR(s->orig.st_mode)) {
		how = fill_tree(t, s);
	} else if (s->srcfd >= 0) {
		progress.total = (uintmax_t)s->orig.st_size;
		out = openat(s->subfd, snapshot_name(s),
		    O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (out < 0)
			die("%s:", s->path);
		how = copy_data(s->srcfd, out, &s->orig, t->file);
		copy_metadata(s->srcfd, &s->orig, out, s->path);
		warn_links(t, s);
	} else if (o->missing == ERROR) {
		errno = ENOENT;
		die("%s:", t->file);
	} else if (o->missing == EMPTY) {
		how = "empty";
		out = openat(s->subfd, snapshot_name(s),
		    O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (out < 0)
			die("%s:", s->path);
	}
	if (out >= 0 && close(out) != 0)
		copy_failed(t->file);
	return how;
}

/* -f with the placeholder: in/BASE, a read-only copy of FILE (empty when
 * it is absent), for CMD to name. */
static void copy_input(const struct target *t, struct snapshot *s)
{
	int dir, fd;

	s->subst = join(s->priv, "/in/", t->base);
	if (mkdirat(s->privfd, "in", S_IRWXU) != 0 ||
	    (dir = openat(s->privfd, "in", O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) < 0)
		die("%s:", s->subst);
	fd = openat(dir, t->base, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    S_IRUSR | S_IWUSR);
	if (fd < 0)
		die("%s:", s->subst);
	if (s->srcfd >= 0) {
		copy_data(s->srcfd, fd, &s->orig, t->file);
		copy_metadata(s->srcfd, &s->orig, fd, s->subst);
	}
	/* Read-only, and its directory too: an editor that writes in place
	 * (sed -i) fails, instead of leaving an empty output committed. */
	if (fchmod(fd, (s->srcfd >= 0 ? s->orig.st_mode : 0444) & 0555) != 0 ||
	    close(fd) != 0 || fchmod(dir, S_IRUSR | S_IXUSR) != 0)
		die("%s:", s->subst);
	close(dir);
}

/* -f: FILE, held open as it was taken, is what CMD reads on its standard
 * input; out/BASE, a new file that snaprun fills with what CMD writes on
 * its standard output, is what is committed. */
static const char *fill_filter(const struct target *t, const struct options *o,
    struct snapshot *s)
{
	s->filter = 1;
	s->srcfd = open_source(t, &s->orig);
	if (s->srcfd < 0)
		no_input(t->file, o);
	warn_links(t, s);
	/* An absent FILE's next version is a new file, made as any other. */
	s->outfd = openat(s->subfd, snapshot_name(s),
	    O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    s->srcfd < 0 ? 0666 : 0600);
	if (s->outfd < 0)
		die("%s:", s->path);
	if (o->copy)
		copy_input(t, s);
	else
		s->subst = join("");	/* nothing to stand for */
	return o->copy ? "a filter, {} a read-only copy" : "a filter";
}

/* Is a before b? */
static int before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec ||
	    (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* A filesystem time later than every change snaprun made to the
 * snapshot, into *mark: a marker file is made in the private directory
 * (its change time is at or after all of them) and touched until its
 * change time has moved past that (a tick of a coarse clock at most; at
 * once with the fine-grained times of Linux 6.13 and later), then removed
 * before CMD runs.  Any change from then on, by CMD or anyone, sets some
 * change time at or after mark.  0 when that cannot be had within about
 * 100 ms: then every snapshot counts as changed. */
static int settle(int privfd, struct timespec *mark)
{
	static const char name[] = ".snaprun-mark";
	struct timespec ms = { 0, 1000000 }, made;
	struct stat st;
	int fd, tries, ok = 0;

	fd = openat(privfd, name, O_RDONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600);
	if (fd < 0 || fstat(fd, &st) != 0) {
		if (fd >= 0)
			close(fd);
		return 0;	/* a name of the --root layout: no mark */
	}
	made = st.st_ctim;
	for (tries = 1; !ok && tries < 100; tries++) {
		if ((tries > 1 && nanosleep(&ms, NULL) != 0) ||
		    fchmod(fd, tries & 1 ? 0400 : 0600) != 0)
			break;
		ok = fstat(fd, &st) == 0 && before(&made, &st.st_ctim);
	}
	if (ok)
		*mark = st.st_ctim;
	close(fd);
	unlinkat(privfd, name, 0);
	return ok;
}

/* The snapshot as taken, and a mark after it, so that the commit can tell
 * a snapshot that nothing changed (none is committed) and -f a read-only
 * copy that CMD changed (refused).  Nothing to tell for an absent FILE,
 * whose snapshot is new, nor for a filter's output. */
static void mark_taken(const struct target *t, const struct options *o,
    struct snapshot *s)
{
	char *in = join("in/", t->base);
	int ok;

	if (s->filter)
		ok = o->copy && fstatat(s->privfd, in, &s->snap,
		    AT_SYMLINK_NOFOLLOW) == 0;
	else
		ok = s->srcfd >= 0 && fstatat(s->subfd, snapshot_name(s),
		    &s->snap, AT_SYMLINK_NOFOLLOW) == 0;
	if (ok)
		s->settled = settle(s->privfd, &s->mark);
	free(in);
}

/* 2. Take: a new private directory beside FILE, and FILE, held open (the
 * kernel cannot reuse an inode that is open, so its number stays its
 * identity), copied into it under its own name. */
static void take(const struct target *t, const struct options *o,
    struct snapshot *s)
{
	struct stat fst, pst;
	const char *how;

	memset(s, 0, sizeof *s);
	s->dirfd = t->dirfd;
	s->privfd = s->subfd = s->srcfd = s->outfd = -1;
	s->keep = o->keep;
	s->rel = t->rel;
	s->file = t->file;
	if (fstatat(t->dirfd, t->base, &fst, AT_SYMLINK_NOFOLLOW) != 0 ||
	    !S_ISDIR(fst.st_mode))
		refuse_hot_journal(t, "");
	else if (!HAVE_EXCHANGE)
		die("%s: a directory, and this system cannot exchange two "
		    "directories in one step to commit it", t->file);
	make_private_dir(t, s);
	s->priv = path_cat(t->dir, s->name);
	/* CMD finds the snapshot by its path: that must still lead here. */
	if (fstat(s->privfd, &fst) != 0 || stat(s->priv, &pst) != 0 ||
	    fst.st_dev != pst.st_dev || fst.st_ino != pst.st_ino)
		die("%s: the directory was moved or replaced during the run",
		    t->dir);
	s->path = path_cat(s->priv, s->rel);
	s->subfd = snapshot_dir(s, 1);
	if (s->subfd < 0)
		die("%s:", s->path);
	progress_start("copying", t->file, 0);
	how = o->filter ? fill_filter(t, o, s) : fill(t, o, s);
	progress_end();
	mark_taken(t, o, s);
	if (!s->subst)
		s->subst = join(o->root ? s->priv : s->path);
	close(s->subfd);	/* walked again at the commit */
	s->subfd = -1;
	note("%s: snapshot %s (%s)", t->file, s->path, how);
}

/* -------------------------------------------------------- 3. substitute */

/* 3. Substitute: the placeholder replaced by path, everywhere, in every
 * argument, the command name too. */
static char **substitute(char **argv, const char *placeholder, const char *path)
{
	size_t plen = strlen(placeholder), rlen = strlen(path), argc = 0, i;
	char **out;

	while (argv[argc])
		argc++;
	out = xmalloc((argc + 1) * sizeof *out);
	for (i = 0; i < argc; i++) {
		const char *s, *hit;
		size_t n = 0;
		char *d;

		for (s = argv[i]; (hit = strstr(s, placeholder));
		    s = hit + plen)
			n++;
		out[i] = d = xmalloc(strlen(argv[i]) + n * rlen + 1);
		for (s = argv[i]; (hit = strstr(s, placeholder));
		    s = hit + plen) {
			memcpy(d, s, (size_t)(hit - s));
			d += hit - s;
			memcpy(d, path, rlen);
			d += rlen;
		}
		strcpy(d, s);
	}
	out[argc] = NULL;
	return out;
}

static void free_args(char **args)
{
	char **a;

	for (a = args; a && *a; a++)
		free(*a);
	free(args);
}

/* ---------------------------------------------------------------- 4. run */

/* A signal from the terminal already reached CMD when CMD is still in
 * our process group; any other is forwarded. */
static void on_signal(int sig, siginfo_t *info, void *context)
{
	(void)context;
	caught = sig;
	if (child <= 0)
		return;
#ifdef HAVE_LINUX
	if (info->si_code == SI_KERNEL && getpgid(child) == getpgrp())
		return;
#else
	(void)info;
#endif
	kill(child, sig);
}

/* The signals snaprun forwards to CMD, and those it ignores itself: a
 * closed stderr (SIGPIPE), a file size limit (SIGXFSZ: the write fails
 * with "File too large" instead) and a lease break (SIGIO) must not stop
 * the cleanup.  CMD gets each back at its default, and the signal mask
 * snaprun started with.  One ignored at the start (a background job,
 * nohup) stays ignored, for CMD too. */
static void catch_signals(struct signals *sg)
{
	static const int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT };
	static const int ignored[] = { SIGPIPE, SIGXFSZ,
#ifdef SIGIO
		SIGIO,
#endif
	};
	struct sigaction sa, was;
	sigset_t ours;
	size_t i;

	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_signal;
	/* no SA_RESTART: a lock wait must end */
	sa.sa_flags = SA_SIGINFO;
	sigfillset(&sa.sa_mask);
	/* an inherited SIG_IGN would reap CMD for us */
	signal(SIGCHLD, SIG_DFL);
	sigemptyset(&sg->dfl);
	sigemptyset(&ours);
	sigaddset(&ours, SIGALRM);
	for (i = 0; i < sizeof ignored / sizeof *ignored; i++)
		if (sigaction(ignored[i], NULL, &was) == 0 &&
		    was.sa_handler != SIG_IGN) {
			signal(ignored[i], SIG_IGN);
			sigaddset(&sg->dfl, ignored[i]);
		}
	for (i = 0; i < sizeof forwarded / sizeof *forwarded; i++) {
		if (sigaction(forwarded[i], NULL, &was) == 0 &&
		    was.sa_handler == SIG_IGN)
			continue;
		sigaction(forwarded[i], &sa, NULL);
		sigaddset(&sg->dfl, forwarded[i]);
		sigaddset(&ours, forwarded[i]);
	}
	/* Blocked when we started (as by a caller that blocks SIGALRM): the
	 * -w timer and the forwarding need them; CMD gets the mask as it
	 * was. */
	sigprocmask(SIG_UNBLOCK, &ours, &sg->mask);
}

/* Start CMD with the signal mask and dispositions it is owed, and io[0]
 * and io[1] (when not -1) as its standard input and output.  Returns 0 or
 * the error number. */
static int spawn(char **args, const struct signals *sg, const int io[2])
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t all, old;
	pid_t pid;
	int err;

	/* Blocked until the child is known, so that every signal is either
	 * forwarded or meets CMD with its default action. */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	check_interrupt();
	if ((err = posix_spawnattr_init(&attr)) != 0 ||
	    (err = posix_spawnattr_setsigmask(&attr, &sg->mask)) != 0 ||
	    (err = posix_spawnattr_setsigdefault(&attr, &sg->dfl)) != 0 ||
	    (err = posix_spawnattr_setflags(&attr,
	    POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)) != 0 ||
	    (err = posix_spawn_file_actions_init(&fa)) != 0 ||
	    (io[0] >= 0 &&
	    (err = posix_spawn_file_actions_adddup2(&fa, io[0], 0)) != 0) ||
	    (io[1] >= 0 &&
	    (err = posix_spawn_file_actions_adddup2(&fa, io[1], 1)) != 0))
		die("posix_spawn: %s", strerror(err));
	err = posix_spawnp(&pid, args[0], &fa, &attr, args, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (err == 0)
		child = pid;
	sigprocmask(SIG_SETMASK, &old, NULL);
	return err;
}

/* -f: CMD's standard input, FILE from its start (nothing when it was
 * absent), and a pipe for its standard output; *from is the end snaprun
 * reads, without blocking. */
static void filter_io(const struct snapshot *s, int io[2], int *from)
{
	int p[2];

	io[0] = s->srcfd >= 0 ? s->srcfd :
	    open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (io[0] < 0 || (s->srcfd >= 0 && lseek(s->srcfd, 0, SEEK_SET) != 0) ||
	    pipe(p) != 0 || fcntl(p[0], F_SETFD, FD_CLOEXEC) != 0 ||
	    fcntl(p[1], F_SETFD, FD_CLOEXEC) != 0 ||
	    fcntl(p[0], F_SETFL, O_NONBLOCK) != 0)
		die("%s: the filter's input and output:", s->path);
#if defined(HAVE_LINUX) && defined(F_SETPIPE_SZ)
	/* Fewer, larger moves; the default size where this is refused. */
	(void)fcntl(p[0], F_SETPIPE_SZ, 1 << 20);
#endif
	io[1] = p[1];
	*from = p[0];
}

/* Some of what is in the pipe, at most max bytes, moved into the file:
 * the bytes moved, 0 at the end, -1 with errno (EAGAIN: nothing there
 * now). */
static ssize_t move_some(int in, int out, size_t max)
{
	static char buf[1 << 16];
	ssize_t n, w, k;
#ifdef HAVE_LINUX
	static int can_splice = 1;

	if (can_splice) {
		n = splice(in, NULL, out, NULL, max < 1 << 20 ? max : 1 << 20,
		    SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
		if (n >= 0 || errno != EINVAL)
			return n;
		can_splice = 0;	/* not into this file: read and write */
	}
#endif
	n = read(in, buf, max < sizeof buf ? max : sizeof buf);
	for (w = 0; n > 0 && w < n; w += k > 0 ? k : 0)
		if ((k = write(out, buf + w, (size_t)(n - w))) < 0 &&
		    errno != EINTR)
			return -1;
	return n;
}

static int cmd_ended(void)
{
	siginfo_t info;

	info.si_pid = 0;
	return waitid(P_PID, (id_t)child, &info,
	    WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid != 0;
}

/* What the pipe holds now: once CMD has ended, all it wrote. */
static size_t pipe_holds(int fd)
{
#ifdef FIONREAD
	int n;

	if (ioctl(fd, FIONREAD, &n) == 0 && n >= 0)
		return (size_t)n;
#endif
	(void)fd;
	return 1 << 16;	/* a pipe's usual size, as a bound */
}

/* CMD ended and all it wrote moved: the pipe at its end, or still held
 * by a process CMD left running (what it writes is not FILE's). */
static int pipe_ended(int in)
{
	char c;
	ssize_t n;

	while ((n = read(in, &c, 1)) < 0 && errno == EINTR)
		;
	return n == 0 ? 0 : -1;
}

/* -f: what CMD writes, from the pipe into the new file, in constant
 * memory, until the end.  Once CMD has ended, only what the pipe holds
 * then is moved: a process CMD left running that keeps writing is not
 * drained until the disk is full.  Returns 0; an errno for a failed
 * write (the pipe is closed then: CMD sees EPIPE); -1 for a writer left
 * behind. */
static int pump(int in, int out)
{
	struct pollfd p;
	size_t left = SIZE_MAX;	/* once CMD ended: what is left to move */

	p.fd = in;
	p.events = POLLIN;
	for (;;) {
		ssize_t n;
		int r;

		if (left == SIZE_MAX && cmd_ended())
			left = pipe_holds(in);
		if (left == 0)
			return pipe_ended(in);
		n = move_some(in, out, left);
		if (n > 0 && left != SIZE_MAX)
			left -= (size_t)n;
		if (n > 0 || (n < 0 && errno == EINTR))
			continue;
		if (n == 0)
			return 0;
		if (errno != EAGAIN)
			return errno;
		if (left != SIZE_MAX)
			return pipe_ended(in);
		r = poll(&p, 1, 50);
		if (r < 0 && errno != EINTR)
			return errno;
	}
}

#ifdef HAVE_LINUX
/* Does process pid hold the pipe named link ("pipe:[N]")? */
static int holds(long pid, const char *link)
{
	char path[64 + NAME_MAX], got[64];
	struct dirent *e;
	int found = 0;
	DIR *d;

	snprintf(path, sizeof path, "/proc/%ld/fd", pid);
	if (!(d = opendir(path)))
		return 0;
	while (!found && (e = readdir(d))) {
		ssize_t n;

		snprintf(path, sizeof path, "/proc/%ld/fd/%s", pid, e->d_name);
		n = readlink(path, got, sizeof got - 1);
		found = n > 0 && (size_t)n == strlen(link) &&
		    memcmp(got, link, (size_t)n) == 0;
	}
	closedir(d);
	return found;
}

/* The process, other than snaprun, that holds the pipe fd; 0 when none
 * can be seen. */
static long pipe_holder(int fd)
{
	char link[64];
	struct dirent *e;
	struct stat st;
	long pid = 0;
	DIR *d;

	if (fstat(fd, &st) != 0 || !(d = opendir("/proc")))
		return 0;
	snprintf(link, sizeof link, "pipe:[%ju]", (uintmax_t)st.st_ino);
	while (!pid && (e = readdir(d))) {
		long p = atol(e->d_name);

		if (p > 0 && p != (long)getpid() && holds(p, link))
			pid = p;
	}
	closedir(d);
	return pid;
}
#else
static long pipe_holder(int fd)
{
	(void)fd;	/* no portable way to tell */
	return 0;
}
#endif

/* The wait status of the child spawn() started (CMD, or SCRIPT).  Reaped
 * only once child is cleared: until then the handler may kill it, and a
 * zombie's pid cannot have been given to another. */
static int reap(void)
{
	siginfo_t info;
	pid_t pid;
	int status;

	while (waitid(P_PID, (id_t)child, &info, WEXITED | WNOWAIT) != 0)
		if (errno != EINTR)
			die("waitid:");
	pid = child;
	child = 0;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			die("waitpid:");
	return status;
}

/* 4. Run CMD, no shell, and wait for it.  Returns its wait status, or
 * -126 or -127 when it could not be started. */
static int run_command(const struct target *t, struct snapshot *s,
    const struct signals *sg)
{
	int status, err, io[2] = { -1, -1 }, from = -1;

	if (!*s->args[0]) {
		say("CMD: the command name is empty");
		return -EXIT_NOTFOUND;
	}
	if ((s->filter && !s->subst[0] ? unsetenv("SNAPRUN_FILE") :
	    setenv("SNAPRUN_FILE", s->filter ? s->subst : s->path, 1)) != 0 ||
	    setenv("SNAPRUN_ROOT", s->priv, 1) != 0 ||
	    setenv("SNAPRUN_ORIGINAL", t->file, 1) != 0)
		die("setenv:");
	if (s->filter)
		filter_io(s, io, &from);
	note("%s: running %s", t->file, s->args[0]);
	err = spawn(s->args, sg, io);
	if (io[0] >= 0 && io[0] != s->srcfd)
		close(io[0]);
	if (io[1] >= 0)
		close(io[1]);
	if (err != 0 && from >= 0)
		close(from);
	if (err != 0) {
		say("%s: %s%s", s->args[0], strerror(err),
		    *s->args[0] == '-' ? " (options go before FILE)" : "");
		return err == ENOENT ? -EXIT_NOTFOUND : -EXIT_NOEXEC;
	}
	s->ran = 1;
	if (from >= 0) {
		s->outerr = pump(from, s->outfd);
		if (s->outerr < 0)
			s->holder = pipe_holder(from);
		close(from);
	}
	status = reap();
	if (s->outerr > 0) {
		errno = s->outerr;
		die("%s: writing CMD's output into %s:", t->file, s->path);
	}
	return status;
}

/* ------------------------------------------------------------- 5. decide */

/* 5. Decide: CMD ran and exited with a status of the commit set. */
static int decide(int status, const struct target *t, const struct options *o)
{
	int yes = status >= 0 && WIFEXITED(status) &&
	    o->commit_on[WEXITSTATUS(status)];

	if (status >= 0 && WIFSIGNALED(status))
		note("%s: CMD killed by signal %d: discarding the snapshot",
		    t->file, WTERMSIG(status));
	else if (status >= 0)
		note("%s: CMD exited %d: %s", t->file, WEXITSTATUS(status),
		    yes ? "committing" : "discarding the snapshot");
	return yes;
}

/* ------------------------------------------------------------- 6. commit */

#ifdef HAVE_LEASE
/* Is the file fd still open for writing, by a process CMD left running?
 * No read lease can be had on a file that is, so the kernel tells.  1
 * yes, 0 no, -1 cannot tell. */
static int written(int fd)
{
	if (fcntl(fd, F_SETLEASE, F_RDLCK) == 0) {
		fcntl(fd, F_SETLEASE, F_UNLCK);
		return 0;
	}
	return errno == EAGAIN || errno == EBUSY ? 1 : -1;
}
#else
static int written(int fd)
{
	(void)fd;	/* no portable way to tell */
	return -1;
}
#endif

/* The same file, by identity, size and times, as when o was taken. */
static int same_version(const struct stat *now, const struct stat *o)
{
	return now->st_dev == o->st_dev && now->st_ino == o->st_ino &&
	    now->st_size == o->st_size &&
	    now->st_mtim.tv_sec == o->st_mtim.tv_sec &&
	    now->st_mtim.tv_nsec == o->st_mtim.tv_nsec &&
	    now->st_ctim.tv_sec == o->st_ctim.tv_sec &&
	    now->st_ctim.tv_nsec == o->st_ctim.tv_nsec;
}

/* Is st (the snapshot, or the top of its tree, now) as it was taken, and
 * unchanged since its mark?  Then CMD changed nothing: no commit. */
static int untouched(const struct snapshot *s, const struct stat *st)
{
	return s->settled && !s->filter && same_version(st, &s->snap) &&
	    before(&st->st_ctim, &s->mark);
}

/* -f: in filter mode the new version is what CMD writes on its standard
 * output.  A read-only copy that CMD changed or replaced anyway (root
 * ignores modes) means CMD edited it instead: nothing is committed. */
static void refuse_edited_input(const struct target *t,
    const struct snapshot *s)
{
	char *in = join("in/", t->base);
	struct stat st;
	int same = fstatat(s->privfd, in, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    same_version(&st, &s->snap);

	free(in);
	if (!same)
		die("%s: CMD changed or replaced %s, the read-only copy; in "
		    "filter mode the new version is what CMD writes on "
		    "standard output; nothing committed", t->file, s->subst);
}

/* A process CMD left running with the snapshot open for writing could
 * write into FILE after the commit. */
static void refuse_writers(int fd, const char *file)
{
	int r = written(fd);

	if (r > 0)
		die("%s: the snapshot is still open for writing (by a "
		    "process CMD left running?); nothing committed", file);
	if (r < 0 && HAVE_LEASES)
		note("%s: cannot tell whether the snapshot is still open for "
		    "writing", file);
}

/* A file of ours that CMD shut to us (mode 000), opened all the same;
 * its mode stays what CMD made it. */
static int open_ours(int at, const char *name, int flags)
{
	mode_t was;
	int fd = open_shut(at, name, flags, S_IRUSR, &was);

	if (fd >= 0 && fchmod(fd, was & 07777) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The new tree checked before it is committed. */
struct check {
	dev_t dev;		/* its filesystem */
	int sync;		/* each file and directory flushed on its own */
	int unsure;		/* leases cannot tell here (said once) */
	const char *file;	/* DIR, for messages */
	struct timespec mark;	/* the snapshot's mark */
	size_t entries;		/* how many entries below the top */
	int touched;		/* an entry with a ctime at or after mark */
};

/* Nothing but directories, regular files and symbolic links, no mount,
 * and no file that a process CMD left running still holds open for
 * writing: it could write into DIR after the commit. */
static int check_entry(struct walk *w, int dir, const char *name)
{
	struct check *k = w->data;
	struct stat st;
	int fd, r, mount;

	if (stat_entry(dir, name, &st, &mount) != 0)
		return -1;
	k->entries++;
	k->touched |= !before(&st.st_ctim, &k->mark);
	if (mount)
		refuse_entry(w, k->file, name, "in the new tree, a mount "
		    "point; nothing committed");
	if (S_ISDIR(st.st_mode))
		return 1;
	if (S_ISLNK(st.st_mode))
		return 0;
	if (!S_ISREG(st.st_mode))
		refuse_entry(w, k->file, name,
		    "in the new tree, not a regular file, directory or "
		    "symbolic link; nothing committed");
	if (!k->sync && (!HAVE_LEASES || k->unsure))
		return 0;
	fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 && errno == EACCES)
		fd = open_ours(dir, name, O_RDONLY | O_NONBLOCK);
	if (fd < 0)
		return -1;
	r = k->unsure ? 0 : written(fd);
	if (r > 0)
		refuse_entry(w, k->file, name, "in the new tree, still open "
		    "for writing (by a process CMD left running?); nothing "
		    "committed");
	if (r < 0 && HAVE_LEASES && !k->unsure++)
		note("%s: cannot tell whether the new tree's files are still "
		    "open for writing", k->file);
	r = k->sync && fsync(fd) != 0 ? -1 : 0;
	close(fd);
	return r;
}

static int check_down(struct walk *w, int fd)
{
	struct check *k = w->data;

	if (foreign(fd, k->dev))
		refuse_entry(w, k->file, "", "in the new tree, a mount point; "
		    "nothing committed");
	return 0;
}

static int check_done(struct walk *w, int fd)
{
	struct check *k = w->data;

	return k->sync && fsync(fd) != 0 ? -1 : 0;
}

/* 6a, for a tree: nothing in it but directories, regular files and
 * symbolic links, the top with DIR's metadata, all on disk (one syncfs
 * where there is one: far cheaper than a flush per file).  Returns the
 * top open. */
static int ready_tree(const struct target *t, struct snapshot *s,
    const struct options *o)
{
	int fd = openat(s->subfd, snapshot_name(s),
	    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	mode_t was = 0;
	struct check k;
	struct walk w;
	struct stat st;

	/* What CMD shut to its owner is snaprun's to read: it is opened
	 * (and given its mode back), for the check, the flush and the
	 * exchange. */
	if (fd < 0 && errno == EACCES)
		fd = open_unreadable(s->subfd, snapshot_name(s), &was);
	if (fd < 0 || fstat(fd, &st) != 0)
		die("%s:", s->path);
	memset(&w, 0, sizeof w);
	memset(&k, 0, sizeof k);
	k.dev = st.st_dev;
	k.file = t->file;
	k.sync = o->sync && !HAVE_SYNCFS;
	k.mark = s->mark;
	w.entry = check_entry;
	w.down = check_down;
	w.done = check_done;
	w.data = &k;
	w.ours = w.restore = 1;
	if (walk_tree(&w, fd) != 0)
		die("%s/%s:", s->path, w.failed);
	/* Any write, create, delete, rename or chmod sets some ctime. */
	if (!k.touched && k.entries == s->entries && untouched(s, &st)) {
		close(fd);
		return -2;
	}
	if (s->srcfd >= 0)
		copy_metadata(s->srcfd, &s->orig, fd, s->path);
	else if (was && fchmod(fd, was & 07777) != 0)
		die("%s:", s->path);
	if (s->srcfd < 0 && ((was ? was : st.st_mode) & S_IWUSR) == 0 &&
	    geteuid() != 0)
		die("%s: CMD left the new tree's top without write permission "
		    "(mode %04o), which a directory needs to be moved; nothing "
		    "committed", t->file, (unsigned)(was ? was : st.st_mode) &
		    07777);
#if HAVE_SYNCFS
	if (o->sync && syncfs(fd) != 0)
		die("%s:", s->path);
#endif
	s->tree = 1;
	return fd;
}

/* The snapshot must be a regular file of its own: a symbolic link is never
 * committed, nor a link to a file elsewhere, which would be chmod-ed as
 * FILE.  Checked from its lstat, then opened: never a device or socket.
 * Returns it open, or -1 when absent. */
static int open_snapshot(const struct snapshot *s, const char *file)
{
	const char *name = snapshot_name(s);
	struct stat st, fst;
	int fd;

	if (fstatat(s->subfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
		if (errno == ENOENT)
			return -1;
		die("%s:", s->path);
	}
	if (S_ISLNK(st.st_mode))
		die("%s: the snapshot was replaced by a symbolic link; "
		    "nothing committed", file);
	if (!S_ISREG(st.st_mode))
		die("%s: the snapshot is not a regular file; nothing "
		    "committed", file);
	if (st.st_nlink != 1)
		die("%s: the snapshot has another hard link; nothing "
		    "committed", file);
	fd = openat(s->subfd, name,
	    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 && errno == EACCES)	/* mode 000: still ours to commit */
		fd = open_ours(s->subfd, name, O_RDONLY | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &fst) != 0)
		die("%s:", s->path);
	if (fst.st_dev != st.st_dev || fst.st_ino != st.st_ino)
		die("%s: the snapshot changed during the commit; nothing "
		    "committed", file);
	return fd;
}

/* The private directory, and those the snapshot is in below it, are
 * snaprun's: what CMD shut (0500, 0100) is opened again to their owner,
 * so that its result can still be committed. */
static void reopen_private(const struct snapshot *s)
{
	char *sub = join(s->rel), *part, *save, *slash = strrchr(sub, '/');
	int fd = fcntl(s->privfd, F_DUPFD_CLOEXEC, 0);

	*(slash ? slash : sub) = '\0';
	for (part = strtok_r(sub, "/", &save); fd >= 0 && writable(fd) == 0 &&
	    part; part = strtok_r(NULL, "/", &save)) {
		int next = openat(fd, part,
		    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		mode_t was;

		if (next < 0 && errno == EACCES)
			next = open_unreadable(fd, part, &was);
		close(fd);
		fd = next;
	}
	if (fd >= 0)
		close(fd);
	free(sub);
}

/* 6a. Only a self-contained snapshot that nothing still writes to, with
 * FILE's metadata and on disk, may replace FILE.  Returns it open, -1
 * when FILE was absent and CMD made nothing, or -2 when CMD left it as it
 * was taken. */
static int ready(const struct target *t, struct snapshot *s,
    const struct options *o)
{
	char side[NAME_MAX + 16];
	struct stat st;
	int fd;

	if (s->outerr < 0 && s->holder)
		die("%s: a process CMD left running (pid %ld) still holds its "
		    "standard output; nothing committed", t->file, s->holder);
	if (s->outerr < 0)
		die("%s: a process CMD left running still holds its standard "
		    "output; nothing committed", t->file);
	if (s->filter && o->copy)
		refuse_edited_input(t, s);
	if (s->outfd >= 0 && close(s->outfd) != 0)
		die("%s:", s->path);
	s->outfd = -1;
	reopen_private(s);
	s->subfd = snapshot_dir(s, 0);
	if (s->subfd < 0 && (errno == ELOOP || errno == ENOTDIR))
		die("%s: the snapshot's directory is no longer a directory; "
		    "nothing committed", t->file);
	if (s->subfd < 0 && errno != ENOENT)
		die("%s:", s->path);
	if (s->subfd >= 0 && fstatat(s->subfd, snapshot_name(s), &st,
	    AT_SYMLINK_NOFOLLOW) == 0) {
		/* A tree only where one was taken, or made where nothing
		 * was: a file's snapshot never becomes a directory. */
		if (S_ISDIR(st.st_mode) &&
		    (s->tree || (s->srcfd < 0 && !s->filter)))
			return ready_tree(t, s, o);
		if (s->tree && !S_ISLNK(st.st_mode))
			die("%s: the snapshot is no longer a directory; "
			    "nothing committed", t->file);
	}
	fd = s->subfd < 0 ? -1 : open_snapshot(s, t->file);
	if (fd < 0 && s->srcfd >= 0)
		die("%s: the snapshot was removed; nothing committed", t->file);
	if (fd < 0) {
		say("%s: CMD made no file at the snapshot's path; nothing "
		    "committed", t->file);
		return -1;
	}
	if (fstat(fd, &st) == 0 && untouched(s, &st)) {
		close(fd);
		return -2;
	}
	if (hot_journal(s->subfd, snapshot_name(s), side, sizeof side))
		die("%s: %s is not empty (database not closed cleanly); "
		    "nothing committed", t->file, side);
	refuse_hot_journal(t, "; nothing committed");
	refuse_writers(fd, t->file);
	if (s->srcfd >= 0)
		copy_metadata(s->srcfd, &s->orig, fd, s->path);
	if (o->sync && fsync(fd) != 0)
		die("%s:", s->path);
	return fd;
}

/* Is FILE still what was snapshotted?  srcfd pins the old inode, so a new
 * file cannot come back with its number. */
static int changed(const struct target *t, const struct snapshot *s)
{
	struct stat now;

	if (fstatat(t->dirfd, t->base, &now, AT_SYMLINK_NOFOLLOW) != 0) {
		if (errno != ENOENT)
			die("%s:", t->file);
		return s->srcfd >= 0;
	}
	return s->srcfd < 0 || !same_version(&now, &s->orig);
}

#if HAVE_EXCHANGE
/* Exchange the snapshot and FILE, then look at what came out: when it is
 * not what it must be (checked: the file snapshotted; else: of the
 * snapshot's kind, not a directory someone put in a file's place or the
 * reverse), exchange them back.  Returns 0 done, 1 exchanged back, -1
 * with errno when no exchange was made. */
static int exchange(const struct target *t, const struct snapshot *s, int check)
{
	const char *name = snapshot_name(s);
	struct stat out;
	int ok;

	if (renameat2(s->subfd, name, t->dirfd, t->base, RENAME_EXCHANGE) != 0)
		return -1;
	ok = fstatat(s->subfd, name, &out, AT_SYMLINK_NOFOLLOW) == 0 &&
	    (check ? out.st_dev == s->orig.st_dev &&
	    out.st_ino == s->orig.st_ino
	    : !S_ISDIR(out.st_mode) == !s->tree);
	if (ok)
		return 0;
	if (renameat2(s->subfd, name, t->dirfd, t->base, RENAME_EXCHANGE) != 0)
		die("%s: exchanged with the snapshot and not back:", t->file);
	if (!check)
		die("%s: became a %s meanwhile; nothing committed", t->file,
		    s->tree ? "file" : "directory");
	return 1;
}

/* 6b, for a tree: exchanged with DIR, or renamed in where nothing is
 * (never over what appeared meanwhile), in one step either way, so that
 * DIR is at every instant the whole old tree or the whole new one, never
 * missing.  Without an exchange, no commit: never two renames. */
static int place_tree(const struct target *t, const struct snapshot *s,
    int check)
{
	int r = -1;

	if (s->srcfd < 0 && renameat2(s->subfd, snapshot_name(s), t->dirfd,
	    t->base, RENAME_NOREPLACE) == 0)
		return 0;
	if (s->srcfd < 0 && errno == EEXIST && check)
		return 1;	/* DIR appeared meanwhile */
	if (s->srcfd >= 0 || errno == EEXIST)
		r = exchange(t, s, check);
	if (r >= 0)
		return r;
	if (errno == ENOENT && check)
		return 1;	/* DIR went meanwhile */
	if (errno == ENOENT) {	/* DIR went: back where nothing is */
		if (renameat2(s->subfd, snapshot_name(s), t->dirfd, t->base,
		    RENAME_NOREPLACE) == 0)
			return 0;
		if (errno == EEXIST && (r = exchange(t, s, 0)) >= 0)
			return r;
	}
	if (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP)
		die("%s: this filesystem cannot exchange two directories "
		    "in one step; nothing committed", t->file);
	die("%s:", t->file);
}
#endif

/* 6b. Put the snapshot in FILE's place.  A checked commit exchanges the
 * two and looks at what came out: a file other than the one snapshotted
 * means that a run that took no lock committed in between, so they are
 * exchanged back and it is a conflict (returns 1).  FILE absent at the
 * snapshot is renamed in only if nothing appeared.  Unchecked, rename(2);
 * under --no-sync an exchange, since ext4 flushes a file renamed over
 * another (auto_da_alloc), the very cost --no-sync waives. */
static int place(const struct target *t, const struct snapshot *s,
    const struct options *o, int check)
{
#if HAVE_EXCHANGE
	struct stat now;
	int r = -2;

	if (s->tree)
		return place_tree(t, s, check);
	if (check && s->srcfd < 0) {
		r = renameat2(s->subfd, snapshot_name(s), t->dirfd, t->base,
		    RENAME_NOREPLACE) == 0 ? 0 : -1;
		if (r < 0 && errno == EEXIST)
			return 1;	/* FILE appeared meanwhile */
	} else if (check || (!o->sync && s->srcfd >= 0 &&
	    fstatat(t->dirfd, t->base, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISREG(now.st_mode))) {
		r = exchange(t, s, check);
		if (r < 0 && errno == ENOENT && check)
			return 1;	/* FILE went meanwhile */
	}
	if (r >= 0)
		return r;
	/* No exchange here (kernel, filesystem): a plain rename. */
	if (r == -1 && errno != EINVAL && errno != ENOSYS && errno != ENOTSUP &&
	    errno != ENOENT)
		die("%s:", t->file);
#else
	(void)o;
	(void)check;
	if (s->tree)
		die("%s: this system cannot exchange two directories in "
		    "one step; nothing committed", t->file);
#endif
	if (renameat(s->subfd, snapshot_name(s), t->dirfd, t->base) != 0)
		die("%s:", t->file);
	return 0;
}

/* FILE's directory must still be where FILE names it.  Committing into
 * one moved away would change what was set aside there (a backup, an
 * archive), and leave the path FILE without the result. */
static void refuse_moved(const struct target *t)
{
	struct stat was, now;

	if (fstat(t->dirfd, &was) != 0 || stat(t->dir, &now) != 0 ||
	    was.st_dev != now.st_dev || was.st_ino != now.st_ino)
		die("%s: its directory %s was moved away or replaced during "
		    "the run; nothing committed", t->file, t->dir);
}

/* 6, when CMD left the snapshot as it was taken: nothing to commit (no
 * rename, no flush).  FILE changed meanwhile all the same: most likely
 * CMD wrote FILE itself, not its snapshot, and FILE stays as CMD made it
 * (committing the untouched snapshot would undo that edit). */
static enum outcome unchanged(const struct target *t,
    const struct snapshot *s, const struct options *o)
{
	/* Where other runs commit freely, one of them may have. */
	const char *or = o->lock || o->conflict != OVERWRITE ? "" :
	    " (or another run committed meanwhile)";

	if (!changed(t, s))
		note("%s: CMD left the snapshot as it was; nothing to commit",
		    t->file);
	else if (o->copy)
		say("%s: changed during the run while its snapshot %s was "
		    "not: CMD most likely wrote %s instead of %s%s; FILE left "
		    "as it is, nothing committed", t->file, o->placeholder,
		    t->file, o->placeholder, or);
	else
		say("%s: changed during the run while its snapshot was not, "
		    "and CMD has no %s: CMD most likely wrote %s itself (is "
		    "%s missing?); FILE left as it is, nothing committed",
		    t->file, o->placeholder, t->file, o->placeholder);
	return NOTHING;
}

/* 6c. A new directory for one of the merge's inputs, in the private
 * directory under a name of its own (CMD may have made others there);
 * returns it open, and its path in *path. */
static int merge_dir(const struct snapshot *s, const char *prefix,
    char **path)
{
	char name[NAME_MAX + 1];
	int fd;

	random_name(name, prefix);
	*path = path_cat(s->priv, name);
	if (writable(s->privfd) != 0 ||
	    mkdirat(s->privfd, name, S_IRWXU) != 0 ||
	    (fd = openat(s->privfd, name,
	    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		die("%s:", *path);
	return fd;
}

/* 6c. The base, for a file: the version this run started from, copied
 * from the descriptor held since (an empty file when FILE was absent);
 * for a tree, "": its old tree is gone. */
static char *take_base(const struct target *t, const struct snapshot *s)
{
	char *dir, *path;
	int d, fd;

	if (s->tree)
		return join("");
	d = merge_dir(s, ".base.", &dir);
	path = path_cat(dir, t->base);
	fd = openat(d, t->base, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
	    S_IRUSR | S_IWUSR);
	if (fd < 0)
		die("%s:", path);
	if (s->srcfd >= 0)
		copy_data(s->srcfd, fd, &s->orig, t->file);
	if (close(fd) != 0)
		die("%s:", path);
	close(d);
	free(dir);
	return path;
}

/* 6c. Theirs: FILE (or DIR) as it is now, copied into the private
 * directory as a snapshot is taken, and held open in th.  0 when it is
 * gone or not of ours' kind. */
static int take_theirs(const struct target *t, const struct options *o,
    const struct snapshot *s, struct snapshot *th)
{
	struct options plain = *o;
	struct stat st;

	if (fstatat(t->dirfd, t->base, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
	    !S_ISDIR(st.st_mode) != !s->tree)
		return 0;
	memset(th, 0, sizeof *th);
	th->privfd = th->outfd = -1;
	th->subfd = merge_dir(s, ".theirs.", &th->priv);
	th->rel = t->base;
	th->path = path_cat(th->priv, t->base);
	plain.missing = ABSENT;
	note("%s: theirs %s (%s)", t->file, th->path, fill(t, &plain, th));
	close(th->subfd);
	free(th->priv);
	if (th->srcfd >= 0 && !S_ISDIR(th->orig.st_mode) == !s->tree)
		return 1;
	if (th->srcfd >= 0)
		close(th->srcfd);
	free(th->path);
	return 0;
}

/* 6c. SCRIPT, run by /bin/sh as CMD is run (signals forwarded to it),
 * with $1 ours, $2 theirs, $3 the base; stdin /dev/null, stdout our
 * stderr.  A plain command name gets them as its arguments, as git runs
 * one.  Returns 1 when it exited 0. */
static int run_merge(const struct target *t, const struct snapshot *s,
    const char *script, char *theirs, char *base, const struct signals *sg)
{
	static char sh[] = "/bin/sh", c[] = "-c", name[] = "snaprun-merge";
	int plain = !script[strspn(script, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789-_./+,:@%")];
	char *line = plain ? join(script, " \"$@\"") : join(script);
	char *args[] = { sh, c, line, name, s->path, theirs, base, NULL };
	int io[2] = { open("/dev/null", O_RDONLY | O_CLOEXEC), 2 }, st;

	if (io[0] < 0 || setenv("SNAPRUN_ORIGINAL", t->file, 1) != 0)
		die("merge: /dev/null or the environment:");
	note("%s: changed since the snapshot; merging", t->file);
	st = spawn(args, sg, io);
	close(io[0]);
	free(line);
	if (st != 0) {
		say("%s: %s; nothing committed", sh, strerror(st));
		return 0;
	}
	st = reap();
	check_interrupt();	/* a signal: nothing committed, die by it */
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 1;
	if (WIFSIGNALED(st))
		say("%s: the merge was killed by signal %d; nothing "
		    "committed", t->file, WTERMSIG(st));
	else
		say("%s: the merge failed (exit %d); nothing committed",
		    t->file, WEXITSTATUS(st));
	return 0;
}

/* 6c. Merge, under the commit lock, when FILE changed since the snapshot:
 * theirs and the base copied into the private directory (SCRIPT never
 * gets a live path), SCRIPT run, and the merged snapshot readied again,
 * to be checked from here on against theirs, which it merged.  Returns
 * COMMITTED (and *fd the merged snapshot), CONFLICT when FILE went or
 * became another kind, UNMERGED when SCRIPT failed. */
static enum outcome merge(const struct target *t, struct snapshot *s,
    const struct options *o, const struct signals *sg, int *fd)
{
	struct snapshot th;
	char *base = take_base(t, s);
	int ok;

	if (!take_theirs(t, o, s, &th)) {
		free(base);
		return CONFLICT;
	}
	ok = run_merge(t, s, o->merge, th.path, base, sg);
	free(base);
	free(th.path);
	if (s->srcfd >= 0)
		close(s->srcfd);
	s->srcfd = th.srcfd;
	s->orig = th.orig;
	if (!ok)
		return UNMERGED;
	close(*fd);
	close(s->subfd);
	s->subfd = -1;
	*fd = ready(t, s, o);
	return COMMITTED;
}

/* 6. Commit: the snapshot checked and flushed; then, under the lock the
 * mode calls for, the conflict check (and the merge) and the rename; then
 * FILE's directory flushed. */
static enum outcome commit(const struct target *t, struct snapshot *s,
    const struct options *o, const struct signals *sg)
{
	enum outcome out = COMMITTED;
	int fd = ready(t, s, o), lock, check;

	if (fd == -2)
		return unchanged(t, s, o);
	if (fd < 0)
		return NOTHING;
	refuse_moved(t);
	lock = commit_lock(t, o, &check);
	check_interrupt();
	if (check && o->merge && changed(t, s))
		out = merge(t, s, o, sg, &fd);
	if (out == COMMITTED &&
	    ((check && changed(t, s)) || place(t, s, o, check) != 0))
		out = CONFLICT;
	if (lock >= 0)
		close(lock);
	close(fd);
	if (out == CONFLICT)
		note("%s: changed since the snapshot", t->file);
	if (out != COMMITTED)
		return out;
	s->ran = 0;	/* nothing left to keep */
	s->committed = 1;
	/* Committed: a directory that cannot be flushed (some FUSE and
	 * network filesystems) is worth a word, not a failure. */
	if (o->sync && fsync(t->dirfd) != 0 && errno != EINVAL &&
	    errno != ENOTSUP)
		say("%s:", t->dir);
	note("%s: committed", t->file);
	return out;
}

/* ------------------------------------------------------------ 7. discard */

/* The private directory removed.  A signal after the commit does not undo
 * it: that is said, and where the old tree is left when the signal cut
 * its removal short. */
static void remove_private(const struct snapshot *s)
{
	const char *path = s->priv ? s->priv : s->name;
	char *where = NULL;

	if (remove_tree(s->dirfd, s->name, s->privfd, &where) == 0) {
		if (s->committed && caught)
			say("%s: committed before the signal came", s->file);
	} else if (s->committed && caught && errno == EINTR) {
		say("%s: committed before the signal came; the old tree is "
		    "left in %s for a later run or --clean", s->file, path);
	} else {
		set_aside(s->dirfd, s->name, path, where, 0);
	}
	free(where);
}

/* 7. Discard: the private directory and all CMD left in it removed, never
 * through a link; with -k, once CMD ran on it and nothing was committed,
 * set aside under a name no cleaner takes for a leftover. */
static void discard(struct snapshot *s)
{
	char kept[NAME_MAX + 8];

	if (!s)
		return;
	live = NULL;
	snprintf(kept, sizeof kept, "%s.kept", s->name);
	if (s->name[0] && s->keep && s->ran &&
	    renameat(s->dirfd, s->name, s->dirfd, kept) == 0)
		say("snapshot kept: %s.kept/%s", s->priv, s->rel);
	else if (s->name[0]) {
		progress_start("removing", s->priv ? s->priv : s->name, 0);
		remove_private(s);
		progress_end();
	}
	if (s->subfd >= 0)
		close(s->subfd);
	if (s->privfd >= 0)
		close(s->privfd);
	if (s->srcfd >= 0)
		close(s->srcfd);
	if (s->outfd >= 0)
		close(s->outfd);
	free(s->subst);
	free(s->priv);
	free(s->path);
	free_args(s->args);
	memset(s, 0, sizeof *s);
	s->subfd = s->privfd = s->srcfd = s->outfd = -1;
}

/* -------------------------------------------------------------- 8. leave */

/* 8. Leave: the one place the exit status is decided.  CMD's status, or
 * its signal; 75 for a conflict (but keep's), a merge that failed or a
 * lock not had. */
static int leave(enum outcome out, int status, const struct target *t,
    const struct options *o)
{
	if (out == BUSY) {
		say("%s: locked by another run", t->file);
		return EXIT_CONFLICT;
	}
	if (out == CONFLICT && o->conflict == RETRY) {
		say("%s: changed by another run on each of %ld tries "
		    "(--retries=%ld); nothing committed", t->file,
		    o->retries + 1, o->retries);
		return EXIT_CONFLICT;
	}
	if (out == UNMERGED)
		return EXIT_CONFLICT;	/* said why already */
	if (out == CONFLICT && o->conflict != KEEP) {
		say("%s: changed by another run; nothing committed", t->file);
		return EXIT_CONFLICT;
	}
	if (out == CONFLICT)
		note("%s: changed by another run, whose version stays; this "
		    "run's result dropped (--on-conflict=keep)", t->file);
	if (status < 0)
		return -status;		/* CMD could not be started */
	if (WIFSIGNALED(status))
		die_by(WTERMSIG(status));
	return WEXITSTATUS(status);
}

/* Nothing committed: the directories made for an absent FILE removed
 * again, deepest first, each only while it is empty and still the one
 * made, found by ".." from FILE's directory. */
static void unmake_dirs(struct target *t)
{
	struct stat st, in;
	int cur;

	if (!t || !t->made.n)
		return;
	cur = fcntl(t->dirfd, F_DUPFD_CLOEXEC, 0);
	while (cur >= 0 && t->made.n) {
		struct made_dir *m = &t->made.dirs[--t->made.n];
		int up = openat(cur, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (up >= 0 && (fstat(cur, &st) != 0 || st.st_dev != m->dev ||
		    st.st_ino != m->ino ||
		    fstatat(up, m->name, &in, AT_SYMLINK_NOFOLLOW) != 0 ||
		    in.st_dev != m->dev || in.st_ino != m->ino ||
		    unlinkat(up, m->name, AT_REMOVEDIR) != 0)) {
			close(up);
			up = -1;
		}
		free(m->name);
		close(cur);
		cur = up;
	}
	if (cur >= 0)
		close(cur);
	forget_made(&t->made);
}

/* The target's memory and descriptor given back, then code. */
static int finish(struct target *t, int code)
{
	free(t->dir);
	free(t->base);
	free(t->prefix);
	free(t->rel);
	forget_made(&t->made);
	free(t->made.dirs);
	free(t->lockname);
	free(t->lockpath);
	if (t->lockdir != t->dirfd)
		close(t->lockdir);
	close(t->dirfd);
	return code;
}

/* Descriptors 0-2 taken, so that none of ours becomes one.  A closed
 * stream stays unusable (/dev/null opened the wrong way), as it was. */
static void open_std_fds(void)
{
	int fd;

	while ((fd = open("/dev/null", O_RDONLY)) >= 0 && fd < 3) {
		if (fd == 0) {
			close(fd);
			if (open("/dev/null", O_WRONLY) != 0)
				break;
		}
	}
	if (fd > 2)
		close(fd);
}

int main(int argc, char **argv)
{
	struct options o;
	struct target t;
	struct snapshot s;
	struct signals sg;
	enum outcome out = BUSY;
	char **cmd;
	int status = 0, lock;
	long try;

	open_std_fds();				/* none of ours is 0, 1 or 2 */
	setvbuf(stderr, errbuf, _IOLBF, sizeof errbuf);
	cmd = parse_options(argc, argv, &o);	/* options, FILE, then CMD */
	progress_setup(o.progress);		/* on a terminal, or asked */
	catch_signals(&sg);			/* forwarded to CMD */
	resolve(&o, &t);			/* 1. the final target */
	if (o.clean)				/* --clean: leftovers only */
		return finish(&t, clean_leftovers(&t) ? EXIT_FAILED : 0);
	if ((lock = start_lock(&t, &o)) == -2)	/* -x: held from here on */
		return finish(&t, leave(BUSY, 0, &t, &o));
	remove_leftovers(&t);			/* what killed runs left */
	for (try = 0;; try++) {
		take(&t, &o, &s);		/* 2. FILE copied aside */
		/* 3. {} */
		s.args = substitute(cmd, o.placeholder, s.subst);
		status = run_command(&t, &s, &sg);	/* 4. CMD */
		out = decide(status, &t, &o)	/* 5. and 6. */
		    ? commit(&t, &s, &o, &sg) : NOTHING;
		if (out != CONFLICT || o.conflict != RETRY || try >= o.retries)
			break;
		s.keep = 0;			/* -k keeps only the last try */
		discard(&s);			/* 7. before the next try */
	}
	discard(&s);				/* 7. */
	if (out != COMMITTED)			/* and what 1. made for it */
		unmake_dirs(&t);
	check_interrupt();			/* a signal: die by it */
	if (lock >= 0)
		close(lock);
	return finish(&t, leave(out, status, &t, &o));	/* 8. */
}
