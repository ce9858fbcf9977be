/*
 * snaprun - run a command on a private snapshot of a file, then commit
 * the snapshot back over the file with one atomic rename.
 *
 * The steps of main() are the steps of SPEC.md "What one run does";
 * snaprun(1) is the user's contract.
 */
#define _GNU_SOURCE	/* Linux: O_DIRECTORY, copy_file_range, renameat2 */

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
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

/* Linux only: kernel-side copies and extended attributes.  Elsewhere, or
 * with SNAPRUN_PLAIN_COPY, the portable read/write path does the copy. */
#if defined(__linux__) && !defined(SNAPRUN_PLAIN_COPY)
#define FAST_COPY 1
#include <sys/ioctl.h>
#ifndef FICLONE
#define FICLONE _IOW(0x94, 9, int)	/* from <linux/fs.h>, absent in musl */
#endif
#endif
#ifdef __linux__
#include <sys/xattr.h>
#endif

#ifndef NAME_MAX
#define NAME_MAX 255
#endif

#ifdef __APPLE__	/* the same timestamps under other names */
#define st_mtim st_mtimespec
#define st_ctim st_ctimespec
#endif

#ifndef SNAPRUN_VERSION
#define SNAPRUN_VERSION "unknown"
#endif

enum {
	EXIT_CONFLICT = 75,	/* EX_TEMPFAIL: try again later */
	EXIT_FAILED = 125,
	EXIT_NOEXEC = 126,
	EXIT_NOTFOUND = 127,
};

enum conflict { OVERWRITE, KEEP, FAIL, RETRY };
enum missing { ABSENT, EMPTY, ERROR };
enum outcome { COMMITTED, CONFLICTED, NOTHING };

static const char *const conflict_modes[] = { "overwrite", "keep", "fail", "retry", NULL };
static const char *const missing_modes[] = { "absent", "empty", "error", NULL };

static struct {
	const char *placeholder;
	const char *root;
	unsigned char commit_on[256];
	enum conflict conflict;
	long retries;
	int lock;
	double wait;
	int nonblock;
	enum missing missing;
	int sync;
	int keep;
	int clean;
	int verbose;
} opt = {
	.placeholder = "{}",
	.commit_on = { [0] = 1 },
	.conflict = OVERWRITE,
	.retries = 3,
	.missing = ABSENT,
	.sync = 1,
};

/* One run's state; global so that every exit path can clean up. */
static struct {
	const char *file;	/* FILE as the user gave it */
	char *dir;		/* directory of FILE's final target */
	char *base;		/* basename of FILE's final target */
	char *prefix;		/* ".BASE.snaprun.", the start of our names */
	char *rel;		/* snapshot path inside the private directory */
	int snapdirfd;		/* the snapshot's own directory, held open so
				 * that CMD cannot redirect the commit by a link */
	const char *snapname;	/* the snapshot's name in it */
	int dirfd;
	int lockfd;
	char *priv;		/* private directory, as a path */
	const char *privname;	/* its name inside dir */
	int privfd;		/* locked for as long as we or CMD live */
	char *snapshot;		/* the snapshot, as a path */
	int srcfd;		/* FILE as snapshotted; -1 when it was absent */
	struct stat orig;	/* FILE's identity and metadata at that time */
	pid_t child;
	int keepable;		/* CMD ran on the snapshot, not committed */
} run = { .dirfd = -1, .lockfd = -1, .privfd = -1, .snapdirfd = -1, .srcfd = -1 };

static volatile sig_atomic_t caught;
static volatile sig_atomic_t timed_out;
static char errbuf[BUFSIZ];	/* stderr line-buffered: one write a message */

/* The one way snaprun speaks: "snaprun: WHAT: WHY", always one line. */
static void say(const char *what, const char *why)
{
	const char *parts[2] = { what, why };
	int i;

	fputs("snaprun: ", stderr);
	for (i = 0; i < 2; i++) {
		const unsigned char *p;

		if (i)
			fputs(": ", stderr);
		for (p = (const unsigned char *)parts[i]; *p; p++) {
			if (*p == '\n')
				fputs("\\n", stderr);
			else if (*p < ' ' || *p == 0x7f)
				fputc('?', stderr);
			else
				fputc(*p, stderr);
		}
	}
	fputc('\n', stderr);
}

static void verbose(const char *what, const char *detail)
{
	if (opt.verbose)
		say(what, detail);
}

static void discard(void);

static _Noreturn void die_by(int sig);

/* A failure that a signal caused (an interrupted wait) is that signal's. */
static _Noreturn void die(const char *what, const char *why)
{
	if (!caught)
		say(what, why);
	discard();
	if (caught)
		die_by(caught);
	exit(EXIT_FAILED);
}

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
	/* cppcheck-suppress unreachableCode ; raise returns when sig cannot kill */
	_exit(128 + sig);
}

/* Leave as CMD left: its status, or its signal. */
static _Noreturn void exit_like(int status)
{
	if (WIFSIGNALED(status))
		die_by(WTERMSIG(status));
	exit(WEXITSTATUS(status));
}

static void check_interrupt(void)
{
	if (caught) {
		discard();
		die_by(caught);
	}
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		die("malloc", strerror(errno));
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

static void usage(void)
{
	fputs("usage: snaprun [OPTION]... FILE [--] CMD [ARG]...\n"
	    "       snaprun --clean FILE\n"
	    "Run CMD on a private snapshot of FILE; replace FILE atomically with\n"
	    "the snapshot when CMD succeeds.  {} in CMD stands for the snapshot.\n"
	    "\n"
	    "  -I, --placeholder=STR   replace STR instead of {}\n"
	    "      --root=DIR          lay out the snapshot below DIR; {} is that copy of DIR\n"
	    "  -c, --commit-on=LIST    exit statuses that commit, e.g. 0,1 or 0-2 (default 0)\n"
	    "      --on-conflict=MODE  FILE changed meanwhile: overwrite (default), keep,\n"
	    "                          fail or retry\n"
	    "      --retries=N         runs again with --on-conflict=retry (default 3)\n"
	    "  -x, --lock              serialise whole runs on FILE\n"
	    "  -w, --wait=SECONDS      give up waiting for the lock after SECONDS (implies -x)\n"
	    "  -n, --nonblock          give up at once if the lock is taken (implies -x)\n"
	    "      --missing=MODE      FILE absent: absent (default), empty or error\n"
	    "      --no-sync           skip the fsyncs (for caches that can be rebuilt)\n"
	    "  -k, --keep              keep the snapshot when nothing is committed\n"
	    "      --clean             remove what killed runs left beside FILE\n"
	    "  -v, --verbose           say each step on stderr\n"
	    "  -h, --help              show this help\n"
	    "  -V, --version           show the version\n"
	    "\n"
	    "Exit status: CMD's; 75 conflict or lock not taken; 125 snaprun failed;\n"
	    "126 CMD not executable; 127 CMD not found.  See snaprun(1).\n", stdout);
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
	die(option, why);
}

static long parse_number(const char *option, const char *s, long max)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(s, &end, 10);
	if (errno || end == s || *end || n < 0 || n > max)
		die(option, "not a number in range");
	return n;
}

/* "0,1" or "0-2,5": every status listed commits. */
static void parse_commit_on(const char *list)
{
	char *copy = join(list), *tok, *save, *dash;
	int n = 0;

	memset(opt.commit_on, 0, sizeof opt.commit_on);
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save), n++) {
		long lo, hi;

		dash = strchr(tok, '-');
		if (dash)
			*dash = '\0';
		lo = parse_number("--commit-on", tok, 255);
		hi = dash ? parse_number("--commit-on", dash + 1, 255) : lo;
		if (lo > hi)
			die("--commit-on", "range runs backwards");
		while (lo <= hi)
			opt.commit_on[lo++] = 1;
	}
	if (!n)
		die("--commit-on", "empty list");
	free(copy);
}

/* Returns the index of FILE in argv. */
static int parse_options(int argc, char **argv)
{
	enum { O_ROOT = 256, O_CONFLICT, O_RETRIES, O_MISSING, O_NOSYNC, O_CLEAN };
	static const struct option longs[] = {
		{ "placeholder", required_argument, NULL, 'I' },
		{ "root", required_argument, NULL, O_ROOT },
		{ "commit-on", required_argument, NULL, 'c' },
		{ "on-conflict", required_argument, NULL, O_CONFLICT },
		{ "retries", required_argument, NULL, O_RETRIES },
		{ "lock", no_argument, NULL, 'x' },
		{ "wait", required_argument, NULL, 'w' },
		{ "nonblock", no_argument, NULL, 'n' },
		{ "missing", required_argument, NULL, O_MISSING },
		{ "no-sync", no_argument, NULL, O_NOSYNC },
		{ "keep", no_argument, NULL, 'k' },
		{ "clean", no_argument, NULL, O_CLEAN },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *bad;
	char *end;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:I:c:xw:nkvhV", longs, NULL)) != -1) {
		switch (c) {
		case 'I':
			if (!*optarg)
				die("--placeholder", "must not be empty");
			opt.placeholder = optarg;
			break;
		case O_ROOT: opt.root = optarg; break;
		case 'c': parse_commit_on(optarg); break;
		case O_CONFLICT: opt.conflict = pick("--on-conflict", optarg, conflict_modes); break;
		case O_RETRIES: opt.retries = parse_number("--retries", optarg, 1000000); break;
		case 'x': opt.lock = 1; break;
		case 'w':
			errno = 0;
			opt.wait = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(opt.wait >= 0 && opt.wait < 1e9))
				die("--wait", "not a number of seconds");
			opt.lock = 1;
			opt.nonblock |= opt.wait < 1e-6;	/* below the timer's grain */
			break;
		case 'n': opt.nonblock = opt.lock = 1; break;
		case O_MISSING: opt.missing = pick("--missing", optarg, missing_modes); break;
		case O_NOSYNC: opt.sync = 0; break;
		case 'k': opt.keep = 1; break;
		case O_CLEAN: opt.clean = 1; break;
		case 'v': opt.verbose = 1; break;
		case 'h': usage(); exit(0);
		case 'V': puts("snaprun " SNAPRUN_VERSION); exit(0);
		default:
			bad = argv[optind - 1 < argc ? optind - 1 : argc - 1];
			die(bad, c == ':' ? "needs an argument" : "unknown option (see --help)");
		}
	}
	if (optind >= argc)
		die("usage", "snaprun [OPTION]... FILE [--] CMD [ARG]... (see --help)");
	if (opt.clean && optind + 1 != argc)
		die("--clean", "takes FILE and no command");
	if (!opt.clean && (optind + 1 == argc ||
	    (optind + 2 == argc && strcmp(argv[optind + 1], "--") == 0)))
		die(argv[optind], "no command to run (see --help)");
	return optind;
}

/* "." for "name", "a" for "a/name", "/" for "/name". */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *d;

	if (!slash)
		return join(".");
	if (slash == path)
		return join("/");
	d = join(path);
	d[slash - path] = '\0';
	return d;
}

/* The kernel's fs.protected_symlinks rule, which following links by
 * hand would bypass: in a sticky world-writable directory (/tmp), follow
 * only links owned by us or by the directory's owner. */
static int may_follow(const char *link, const struct stat *st)
{
	char *dir = dir_of(link);
	struct stat d;
	int ok = stat(dir, &d) != 0 || (d.st_mode & (S_ISVTX | S_IWOTH)) != (S_ISVTX | S_IWOTH) ||
	    st->st_uid == geteuid() || st->st_uid == d.st_uid;

	free(dir);
	return ok;
}

/* Only a regular file can be snapshotted; anything else is refused
 * before it is opened, since opening a FIFO or a device acts on it. */
static void must_be_regular(const char *file, const struct stat *st)
{
	if (S_ISDIR(st->st_mode))
		die(file, "is a directory");
	if (!S_ISREG(st->st_mode))
		die(file, "not a regular file");
}

/* Follow symbolic links to the final target, which may not exist yet. */
static char *final_target(const char *file)
{
	char *path = join(file);
	int hops;

	for (hops = 0;; hops++) {
		char link[PATH_MAX], *dir;
		struct stat st;
		ssize_t n;

		if (lstat(path, &st) != 0) {
			if (errno != ENOENT)
				die(file, strerror(errno));
			return path;
		}
		if (!S_ISLNK(st.st_mode)) {
			must_be_regular(file, &st);
			return path;
		}
		if (hops == 40)
			die(file, strerror(ELOOP));
		if (!may_follow(path, &st))
			die(file, "another user's symbolic link in a sticky directory; not followed");
		n = readlink(path, link, sizeof link - 1);
		if (n < 0)
			die(file, strerror(errno));
		link[n] = '\0';
		dir = dir_of(path);
		free(path);
		path = link[0] == '/' ? join(link) : join(dir, "/", link);
		free(dir);
	}
}

/* mkdir -p path below the directory at, and open it.  With O_NOFOLLOW
 * in flags, no part of path may be a symbolic link. */
static int make_dirs(int at, const char *path, int flags)
{
	char *copy = join(path), *part, *save;
	int fd = openat(at, *path == '/' ? "/" : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	for (part = strtok_r(copy, "/", &save); fd >= 0 && part; part = strtok_r(NULL, "/", &save)) {
		int next = -1, e;

		if (mkdirat(fd, part, 0777) == 0 || errno == EEXIST)
			next = openat(fd, part, O_RDONLY | O_DIRECTORY | O_CLOEXEC | flags);
		e = errno;
		close(fd);
		errno = e;
		fd = next;
	}
	free(copy);
	return fd;
}

/* With --root, the snapshot sits at FILE's path below DIR. */
static char *path_below_root(void)
{
	char *root = realpath(opt.root, NULL), *dir = realpath(run.dir, NULL);
	size_t n;
	char *rel;

	if (!root)
		die(opt.root, strerror(errno));
	if (!dir)
		die(run.dir, strerror(errno));
	n = strlen(root);
	if (strcmp(root, "/") == 0)
		n = 0;
	if (strncmp(dir, root, n) != 0 || (dir[n] != '/' && dir[n] != '\0'))
		die(run.file, "not below the --root directory");
	rel = dir[n] ? join(dir + n + 1, "/", run.base) : join(run.base);
	free(root);
	free(dir);
	return rel;
}

/* ".BASE.snaprun.", BASE cut short where the longest name made from it,
 * ".BASE.snaprun.XXXXXX.kept", would exceed NAME_MAX. */
static char *name_prefix(const char *base)
{
	char *p = join(".", base, ".snaprun.");
	size_t room = NAME_MAX - strlen("XXXXXX.kept");

	if (strlen(p) > room)
		memcpy(p + room - strlen(".snaprun."), ".snaprun.", sizeof ".snaprun.");
	return p;
}

/* Step 1: find FILE's directory and name, creating the parents of an
 * absent FILE unless --missing=error. */
static void resolve(const char *file)
{
	char *target;
	const char *slash;

	if (!*file)
		die("FILE", "the name is empty");
	target = final_target(file);
	slash = strrchr(target, '/');
	run.file = file;
	run.base = join(slash ? slash + 1 : target);
	run.dir = dir_of(target);
	free(target);
	if (!*run.base || strcmp(run.base, ".") == 0 || strcmp(run.base, "..") == 0)
		die(file, "is a directory");
	run.dirfd = open(run.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (run.dirfd < 0 && errno == ENOENT && opt.missing != ERROR && !opt.clean &&
	    (run.dirfd = make_dirs(AT_FDCWD, run.dir, 0)) >= 0)
		verbose(run.dir, "created missing directories");
	if (run.dirfd < 0)
		die(run.dir, strerror(errno));
	run.rel = opt.root ? path_below_root() : join(run.base);
	run.prefix = name_prefix(run.base);
}

/* Open ".BASE.snaprun.lock", creating it if asked; -1 when it is absent.
 * Anything there but a regular file could block or mislead: refused. */
static int open_lock(int create)
{
	char *name = join(run.prefix, "lock");
	int fd = openat(run.dirfd, name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC |
	    (create ? O_CREAT : 0), 0666);
	struct stat st;

	/* A commit that only joins in the locking does without a lock file
	 * it cannot open, rather than lose CMD's work. */
	if (fd < 0 && (errno == ENOENT || errno == EACCES) && !create) {
		free(name);
		return -1;
	}
	if (fd < 0 || fstat(fd, &st) != 0)
		die(name, strerror(errno));
	if (!S_ISREG(st.st_mode))
		die(name, "not a regular file");
	/* Every user of FILE must be able to open it, whatever our umask. */
	if (create && st.st_uid == geteuid() && (st.st_mode & 0444) != 0444)
		(void)fchmod(fd, 0644);
	free(name);
	return fd;
}

/* flock(2) the open lock file; with how LOCK_NB, or once timed_out, give
 * up with 75. */
static void wait_for_lock(int how)
{
	while (flock(run.lockfd, how) != 0) {
		if (errno == EWOULDBLOCK || timed_out) {
			say(run.file, "locked by another run");
			discard();
			exit(EXIT_CONFLICT);
		}
		if (errno != EINTR)
			die(run.file, strerror(errno));
		check_interrupt();
	}
}

static void lock_timeout(int sig)
{
	(void)sig;
	timed_out = 1;
}

/* -x: the lock is held from before the snapshot to after the commit. */
static void lock_run(void)
{
	/* The timer fires again every 10 ms: an alarm that comes before
	 * flock starts to wait must not leave it waiting for ever. */
	struct itimerval t = { { 0, 10000 }, { 0, 0 } }, off = { { 0, 0 }, { 0, 0 } };
	struct sigaction sa = { .sa_handler = lock_timeout };

	run.lockfd = open_lock(1);
	if (opt.wait > 0 && !opt.nonblock) {
		sigaction(SIGALRM, &sa, NULL);
		t.it_value.tv_sec = (time_t)opt.wait;
		t.it_value.tv_usec = (suseconds_t)((opt.wait - (double)t.it_value.tv_sec) * 1e6);
		setitimer(ITIMER_REAL, &t, NULL);
	}
	wait_for_lock(opt.nonblock ? LOCK_EX | LOCK_NB : LOCK_EX);
	setitimer(ITIMER_REAL, &off, NULL);
	verbose(run.file, "locked");
}

/* Around a commit, the lock is held for a moment only. */
static void lock_commit(int create)
{
	run.lockfd = open_lock(create);
	if (run.lockfd >= 0)
		wait_for_lock(LOCK_EX);
}

static void release_lock(void)
{
	if (run.lockfd >= 0)
		close(run.lockfd);
	run.lockfd = -1;
}

static int remove_tree(int at, const char *name);

/* Remove the directory name below at and all in it. */
static int remove_dir(int at, const char *name)
{
	struct dirent *e;
	DIR *d;
	int fd, err = 0;

	if (unlinkat(at, name, AT_REMOVEDIR) == 0)
		return 0;	/* empty, as after most commits */
	/* CMD may have left it read-only or unreadable (as go mod download
	 * does); it is ours to empty.  Never through a link. */
	(void)fchmodat(at, name, S_IRWXU, AT_SYMLINK_NOFOLLOW);
	fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -1;
	}
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
		    remove_tree(fd, e->d_name) != 0 && !err)
			err = errno;
	closedir(d);
	if (unlinkat(at, name, AT_REMOVEDIR) == 0)
		return 0;
	if (err)
		errno = err;	/* the cause, not the "not empty" it leads to */
	return -1;
}

/* Remove name below at, whatever it is; never follows a symbolic link. */
static int remove_tree(int at, const char *name)
{
	if (unlinkat(at, name, 0) == 0 || errno == ENOENT)
		return 0;
	return remove_dir(at, name);
}

/* Leftovers of runs that died are private directories nobody holds
 * locked: a live run, or the CMD of a dead one, keeps its lock. */
static void remove_leftovers(void)
{
	size_t n = strlen(run.prefix);
	struct dirent *e;
	struct stat st;
	DIR *d;
	int fd;

	/* A directory links to itself twice and once from each directory
	 * in it (btrfs says 1 instead): at 2 there is nothing to look for. */
	if (fstat(run.dirfd, &st) == 0 && st.st_nlink == 2)
		return;
	fd = fcntl(run.dirfd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0 || !(d = fdopendir(fd)))
		die(run.dir, strerror(errno));
	while ((e = readdir(d))) {
		int priv;

		if (strncmp(e->d_name, run.prefix, n) != 0 || strlen(e->d_name) != n + 6)
			continue;
		priv = openat(run.dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (priv < 0)
			continue;
		if (flock(priv, LOCK_EX | LOCK_NB) == 0) {
			if (remove_dir(run.dirfd, e->d_name) == 0)
				verbose(e->d_name, "removed what a killed run left");
			else
				say(e->d_name, strerror(errno));
		}
		close(priv);
	}
	closedir(d);
}

/* Make and lock the private directory.  A cleaner may remove it between
 * mkdtemp and flock: then it is unlinked, and we make another. */
static void make_private_dir(void)
{
	for (;;) {
		struct stat st;

		run.priv = join(run.dir, "/", run.prefix, "XXXXXX");
		run.privname = run.priv + strlen(run.dir) + 1;
		if (!mkdtemp(run.priv))
			die(run.priv, strerror(errno));
		/* Not close-on-exec: CMD inherits the lock, see remove_leftovers. */
		run.privfd = openat(run.dirfd, run.privname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
		if (run.privfd >= 0) {
			if (flock(run.privfd, LOCK_EX) != 0 || fstat(run.privfd, &st) != 0)
				die(run.priv, strerror(errno));
			if (st.st_nlink > 0)
				return;
			close(run.privfd);
		} else if (errno != ENOENT) {
			die(run.priv, strerror(errno));
		}
		free(run.priv);
	}
}

#ifdef __linux__
static void copy_xattrs(int from, int to)
{
	ssize_t n = flistxattr(from, NULL, 0);
	char *names, *name;

	if (n <= 0)
		return;
	names = xmalloc((size_t)n);
	n = flistxattr(from, names, (size_t)n);
	for (name = names; n > 0 && name < names + n; name += strlen(name) + 1) {
		ssize_t len = fgetxattr(from, name, NULL, 0);
		char *value;

		if (len < 0)
			continue;
		value = xmalloc((size_t)len);
		len = fgetxattr(from, name, value, (size_t)len);
		/* Attributes this filesystem or user may not set are not ours
		 * to keep, as with cp --preserve=xattr. */
		if (len >= 0 && fsetxattr(to, name, value, (size_t)len, 0) != 0 &&
		    errno != ENOTSUP && errno != EPERM && errno != EACCES)
			die(run.snapshot, strerror(errno));
		free(value);
	}
	free(names);
}
#else
static void copy_xattrs(int from, int to)	/* no portable interface */
{
	(void)from;
	(void)to;
}
#endif

/* Owner first: chown clears the set-id bits that chmod then restores. */
static void copy_metadata(int from, int to)
{
	const struct stat *st = &run.orig;
	mode_t mode = st->st_mode & 07777;

	/* Ids we may not give stay ours, as with cp -p, and the set-id bits
	 * go with them: they must not start to mean us. */
	if (fchown(to, st->st_uid, st->st_gid) != 0) {
		mode &= (mode_t)~S_ISUID;
		if (fchown(to, (uid_t)-1, st->st_gid) != 0)
			mode &= (mode_t)~S_ISGID;
	}
	if (fchmod(to, mode) != 0)
		die(run.snapshot, strerror(errno));
	copy_xattrs(from, to);
}

static _Noreturn void copy_failed(void)
{
	const char *why = strerror(errno);

	die(join("copying ", run.file), why);
}

/* Copy len bytes at off, in the kernel when it can. */
static void copy_range(int in, int out, off_t off, off_t len)
{
	static char buf[1 << 17];
#ifdef FAST_COPY
	static int kernel_copy = 1;

	while (kernel_copy && len > 0) {
		off_t i = off, o = off;
		ssize_t n = copy_file_range(in, &i, out, &o, len > (1 << 30) ? 1 << 30 : (size_t)len, 0);

		if (n < 0 && errno == EINTR) {
			check_interrupt();
			continue;
		}
		if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL)) {
			kernel_copy = 0;
			break;
		}
		if (n < 0)
			copy_failed();
		if (n == 0)
			return;	/* FILE shrank under us */
		off += n;
		len -= n;
		check_interrupt();
	}
#endif
	while (len > 0) {
		ssize_t n = pread(in, buf, len > (off_t)sizeof buf ? sizeof buf : (size_t)len, off), w;

		if (n < 0 && errno == EINTR) {
			check_interrupt();
			continue;
		}
		if (n < 0)
			copy_failed();
		if (n == 0)
			return;
		for (w = 0; w < n;) {
			ssize_t k = pwrite(out, buf + w, (size_t)(n - w), off + w);

			if (k < 0 && errno != EINTR)
				copy_failed();
			w += k > 0 ? k : 0;
			check_interrupt();
		}
		off += n;
		len -= n;
	}
}

/* Copy the data of a size bytes long file: a reflink where the
 * filesystem shares extents, else segment by segment so holes stay holes. */
static const char *copy_data(int in, int out, off_t size)
{
	off_t off = 0;

#ifdef FAST_COPY
	if (ioctl(out, FICLONE, in) == 0)
		return "reflink";
#endif
	while (off < size) {
		off_t data = off, hole = size;
#ifdef SEEK_HOLE
		data = lseek(in, off, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break;	/* only a hole is left */
		if (data < 0)
			data = off;
		hole = lseek(in, data, SEEK_HOLE);
		if (hole < 0 || hole > size)
			hole = size;
#endif
		copy_range(in, out, data, hole - data);
		off = hole;
	}
	if (ftruncate(out, size) != 0)
		copy_failed();
#ifdef FAST_COPY
	return "copy_file_range";
#else
	return "read/write";
#endif
}

/* Step 2: FILE (held open: the kernel cannot reuse an inode we hold, so
 * its number stays its identity) copied into a new private directory. */
static void take_snapshot(void)
{
	const char *how = "absent";
	char *sub = dir_of(run.rel);
	int out = -1;

	make_private_dir();
	run.snapshot = join(run.priv, "/", run.rel);
	run.snapname = strrchr(run.snapshot, '/') + 1;
	run.snapdirfd = make_dirs(run.privfd, sub, O_NOFOLLOW);
	free(sub);
	if (run.snapdirfd < 0)
		die(run.snapshot, strerror(errno));
	run.srcfd = openat(run.dirfd, run.base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (run.srcfd < 0 && errno != ENOENT)
		die(run.file, strerror(errno));
	if (run.srcfd >= 0) {
		if (fstat(run.srcfd, &run.orig) != 0)
			die(run.file, strerror(errno));
		must_be_regular(run.file, &run.orig);	/* replaced since resolve */
		out = openat(run.snapdirfd, run.snapname, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (out < 0)
			die(run.snapshot, strerror(errno));
		how = copy_data(run.srcfd, out, run.orig.st_size);
		copy_metadata(run.srcfd, out);
		if (run.orig.st_nlink > 1) {
			char why[80];

			snprintf(why, sizeof why, "has %ju hard links; the commit replaces this name only",
			    (uintmax_t)run.orig.st_nlink);
			say(run.file, why);
		}
	} else if (opt.missing == ERROR) {
		die(run.file, strerror(ENOENT));
	} else if (opt.missing == EMPTY) {
		how = "empty";
		out = openat(run.snapdirfd, run.snapname, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (out < 0)
			die(run.snapshot, strerror(errno));
	}
	if (out >= 0 && close(out) != 0)
		copy_failed();
	verbose(run.snapshot, how);
}

/* Step 3: the placeholder replaced, everywhere, in every argument. */
static char **substitute(char **argv, const char *path)
{
	size_t plen = strlen(opt.placeholder), rlen = strlen(path), argc = 0, i;
	char **out;

	while (argv[argc])
		argc++;
	out = xmalloc((argc + 1) * sizeof *out);
	for (i = 0; i < argc; i++) {
		const char *s, *hit;
		size_t n = 0;
		char *d;

		for (s = argv[i]; (hit = strstr(s, opt.placeholder)); s = hit + plen)
			n++;
		out[i] = d = xmalloc(strlen(argv[i]) + n * rlen + 1);
		for (s = argv[i]; (hit = strstr(s, opt.placeholder)); s = hit + plen) {
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

	for (a = args; *a; a++)
		free(*a);
	free(args);
}

/* A signal from the terminal already reached CMD when CMD is still in
 * our process group; any other is forwarded. */
static void on_signal(int sig, siginfo_t *info, void *context)
{
	(void)context;
	caught = sig;
	if (run.child <= 0)
		return;
#ifdef SI_KERNEL
	if (info->si_code == SI_KERNEL && getpgid(run.child) == getpgrp())
		return;
#else
	(void)info;
#endif
	kill(run.child, sig);
}

/* The signals snaprun forwards, and CMD gets back at their default.
 * One ignored when snaprun started (a background job, nohup) stays
 * ignored, for CMD too. */
static sigset_t handled;

static void catch_signals(void)
{
	static const int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT };
	struct sigaction sa, was;
	size_t i;

	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO;	/* no SA_RESTART: a lock wait must end */
	sigfillset(&sa.sa_mask);
	signal(SIGCHLD, SIG_DFL);	/* an inherited SIG_IGN would reap CMD for us */
	sigemptyset(&handled);
	/* A closed stderr must not stop the cleanup; CMD still gets SIGPIPE. */
	if (sigaction(SIGPIPE, NULL, &was) == 0 && was.sa_handler != SIG_IGN) {
		signal(SIGPIPE, SIG_IGN);
		sigaddset(&handled, SIGPIPE);
	}
	for (i = 0; i < sizeof forwarded / sizeof *forwarded; i++) {
		if (sigaction(forwarded[i], NULL, &was) == 0 && was.sa_handler == SIG_IGN)
			continue;
		sigaction(forwarded[i], &sa, NULL);
		sigaddset(&handled, forwarded[i]);
	}
}

/* Step 4: run CMD, no shell, and wait for it. */
static int run_command(char **argv)
{
	char **args = opt.root ? substitute(argv, run.priv) : substitute(argv, run.snapshot);
	posix_spawnattr_t attr;
	sigset_t all, old;
	siginfo_t info;
	int status, err;
	pid_t pid;

	if (setenv("SNAPRUN_FILE", run.snapshot, 1) != 0 ||
	    setenv("SNAPRUN_ROOT", run.priv, 1) != 0 ||
	    setenv("SNAPRUN_ORIGINAL", run.file, 1) != 0)
		die("setenv", strerror(errno));
	verbose("running", args[0]);
	/* Blocked until the child is known, so that every signal is either
	 * forwarded or meets CMD with its default action. */
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	if (caught) {
		free_args(args);
		check_interrupt();
	}
	if ((err = posix_spawnattr_init(&attr)) != 0 ||
	    (err = posix_spawnattr_setsigmask(&attr, &old)) != 0 ||
	    (err = posix_spawnattr_setsigdefault(&attr, &handled)) != 0 ||
	    (err = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)) != 0)
		die("posix_spawn", strerror(err));
	err = posix_spawnp(&run.child, args[0], NULL, &attr, args, environ);
	posix_spawnattr_destroy(&attr);
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (err != 0) {
		say(args[0], strerror(err));
		free_args(args);
		discard();
		exit(err == ENOENT ? EXIT_NOTFOUND : EXIT_NOEXEC);
	}
	run.keepable = 1;
	/* Reap only once run.child is cleared: until then the handler may
	 * kill it, and a zombie's pid cannot have been given to another. */
	while (waitid(P_PID, (id_t)run.child, &info, WEXITED | WNOWAIT) != 0)
		if (errno != EINTR)
			die("waitid", strerror(errno));
	pid = run.child;
	run.child = 0;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			die("waitpid", strerror(errno));
	free_args(args);
	return status;
}

static int commits(int status)
{
	return WIFEXITED(status) && opt.commit_on[WEXITSTATUS(status)];
}

/* An SQLite database left with its journal was not closed cleanly: the
 * snapshot alone is not the database. */
static void refuse_sidecars(void)
{
	static const char *const sidecars[] = { "-wal", "-journal" };
	size_t i;

	for (i = 0; i < 2; i++) {
		char *side = join(run.snapname, sidecars[i]);
		struct stat st;

		if (fstatat(run.snapdirfd, side, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_size > 0) {
			char why[NAME_MAX + 80];

			snprintf(why, sizeof why, "%s is not empty (database not closed cleanly); "
			    "nothing committed", side);
			free(side);
			die(run.file, why);
		}
		free(side);
	}
}

/* Is FILE still what was snapshotted?  srcfd pins the old inode, so a
 * new file cannot come back with its number. */
static int changed_since_snapshot(void)
{
	const struct stat *o = &run.orig;
	struct stat now;

	if (fstatat(run.dirfd, run.base, &now, AT_SYMLINK_NOFOLLOW) != 0) {
		if (errno != ENOENT)
			die(run.file, strerror(errno));
		return run.srcfd >= 0;
	}
	return run.srcfd < 0 || now.st_dev != o->st_dev || now.st_ino != o->st_ino ||
	    now.st_size != o->st_size ||
	    now.st_mtim.tv_sec != o->st_mtim.tv_sec || now.st_mtim.tv_nsec != o->st_mtim.tv_nsec ||
	    now.st_ctim.tv_sec != o->st_ctim.tv_sec || now.st_ctim.tv_nsec != o->st_ctim.tv_nsec;
}

/* rename(2) the snapshot over FILE.  Under --no-sync, on Linux, the two
 * are exchanged instead when FILE is there: ext4 flushes a file's data
 * when a rename replaces another (auto_da_alloc), which is the cost
 * --no-sync waives.  The old FILE then goes with the private directory;
 * a directory put in FILE's place meanwhile, which rename would refuse
 * to replace, is exchanged back. */
static int replace_file(void)
{
#ifdef RENAME_EXCHANGE
	struct stat old;

	if (!opt.sync && run.srcfd >= 0 &&
	    renameat2(run.snapdirfd, run.snapname, run.dirfd, run.base, RENAME_EXCHANGE) == 0) {
		if (fstatat(run.snapdirfd, run.snapname, &old, AT_SYMLINK_NOFOLLOW) != 0 ||
		    !S_ISDIR(old.st_mode))
			return 0;
		if (renameat2(run.snapdirfd, run.snapname, run.dirfd, run.base, RENAME_EXCHANGE) == 0)
			errno = EISDIR;
		return -1;
	}
#endif
	return renameat(run.snapdirfd, run.snapname, run.dirfd, run.base);
}

/* Step 6, first half: only a regular, self-contained snapshot, with
 * FILE's metadata and on disk, may replace FILE.  Returns 0 when FILE was
 * absent and CMD made none: nothing to commit. */
static int ready_to_commit(void)
{
	int fd = openat(run.snapdirfd, run.snapname, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	struct stat st;

	if (fd < 0 && errno == ENOENT && run.srcfd < 0)
		return 0;
	if (fd < 0 && errno == ELOOP)
		die(run.file, "the snapshot was replaced by a symbolic link; nothing committed");
	if (fd < 0 && errno == ENOENT)
		die(run.file, "the snapshot was removed; nothing committed");
	if (fd < 0 || fstat(fd, &st) != 0)
		die(run.snapshot, strerror(errno));
	if (!S_ISREG(st.st_mode))
		die(run.file, "the snapshot is no longer a regular file; nothing committed");
	/* A link to a file elsewhere would be committed, and chmod-ed, as
	 * FILE: only a file of the snapshot's own is FILE's next version. */
	if (st.st_nlink != 1)
		die(run.file, "the snapshot has another hard link; nothing committed");
	refuse_sidecars();
	if (run.srcfd >= 0)
		copy_metadata(run.srcfd, fd);
	if (opt.sync && fsync(fd) != 0)
		die(run.snapshot, strerror(errno));
	close(fd);
	return 1;
}

/* Step 6, second half: the conflict check and the rename, one step
 * against other runs.  Runs that check create the lock file; the default
 * mode only takes it when it is there, so that it leaves nothing behind. */
static enum outcome commit(void)
{
	if (!ready_to_commit())
		return NOTHING;
	if (!opt.lock)
		lock_commit(opt.conflict != OVERWRITE);
	if (opt.conflict != OVERWRITE && changed_since_snapshot()) {
		if (!opt.lock)
			release_lock();
		return CONFLICTED;
	}
	check_interrupt();
	if (replace_file() != 0)
		die(run.file, strerror(errno));
	run.keepable = 0;
	if (!opt.lock)
		release_lock();
	/* Committed: a directory that cannot be flushed (some FUSE and
	 * network filesystems) is worth a word, not a failure. */
	if (opt.sync && fsync(run.dirfd) != 0 && errno != EINVAL && errno != ENOTSUP)
		say(run.dir, strerror(errno));
	verbose(run.file, "committed");
	return COMMITTED;
}

/* Step 7: the private directory goes, or with --keep (once CMD ran on
 * it) is set aside under a name no cleaner takes for a leftover. */
static void discard(void)
{
	if (run.privfd >= 0) {
		struct stat st;
		char *kept = join(run.priv, ".kept");
		int keep = opt.keep && run.keepable &&
		    fstatat(run.snapdirfd, run.snapname, &st, AT_SYMLINK_NOFOLLOW) == 0;

		if (keep && rename(run.priv, kept) == 0) {
			char *path = join(kept, "/", run.rel);

			say("snapshot kept", path);
			free(path);
		} else {
			if (keep)
				say(kept, strerror(errno));
			if (remove_dir(run.dirfd, run.privname) != 0)
				say(run.priv, strerror(errno));
		}
		free(kept);
		if (run.snapdirfd >= 0)
			close(run.snapdirfd);
		run.snapdirfd = -1;
		close(run.privfd);
		run.privfd = -1;
		free(run.priv);
		free(run.snapshot);
	}
	if (run.srcfd >= 0)
		close(run.srcfd);
	run.srcfd = -1;
	run.keepable = 0;
}

/* stdin, stdout and stderr open, so no descriptor of ours becomes one. */
static void open_std_fds(void)
{
	int fd;

	do
		fd = open("/dev/null", O_RDWR);
	while (fd >= 0 && fd <= 2);
	if (fd > 2)
		close(fd);
}

int main(int argc, char **argv)
{
	int status, i;
	long attempt;

	open_std_fds();
	setvbuf(stderr, errbuf, _IOLBF, sizeof errbuf);
	i = parse_options(argc, argv);
	catch_signals();
	resolve(argv[i]);
	if (opt.clean) {
		remove_leftovers();
		return 0;
	}
	i += argv[i + 1] && strcmp(argv[i + 1], "--") == 0 ? 2 : 1;
	if (opt.lock)
		lock_run();
	remove_leftovers();
	for (attempt = 0;; attempt++) {
		enum outcome outcome;

		take_snapshot();
		check_interrupt();
		status = run_command(argv + i);
		check_interrupt();
		if (!commits(status)) {
			discard();
			exit_like(status);
		}
		outcome = commit();
		discard();
		if (outcome != CONFLICTED)
			break;
		verbose(run.file, "changed since the snapshot");
		if (opt.conflict == KEEP)
			break;
		if (opt.conflict == FAIL || attempt >= opt.retries) {
			say(run.file, "changed by another run; nothing committed");
			return EXIT_CONFLICT;
		}
	}
	exit_like(status);
}
