#!/usr/bin/env bash
# bench/bench.sh — measure snaprun against what users would do instead.
#
# usage: bench/bench.sh [--quick] [--hyperfine] [--keep-dir] [--only LIST] SNAPRUN
#
# Every comparison is measured in one interleaved run (A,B,A,B,...) so that
# machine noise hits both sides, and reported as a ratio of medians.
# Each result line reads:   name   value   goal   ok | MISS | info | skip
#
#   --quick      small files and few samples (about two minutes; for CI)
#   --hyperfine  also cross-check the small-file numbers with hyperfine
#   --keep-dir   do not delete the working directory at the end
#   --only LIST  run only these sections, e.g. --only 1,5 (m: concurrent
#                mypy runs sharing one cache, each conflict mode)
#
# Environment:
#   BENCH_DIR    parent directory for the working directory (default: $TMPDIR
#                or /var/tmp, whichever is not tmpfs). Use a disk filesystem.
#   MYPY         a newer mypy command (1.20+, sharded SQLite cache) for
#                sections 8 and m, e.g. MYPY=/opt/mypy/bin/mypy; `mypy` on
#                PATH is measured too.
#
# Exit status: 0 when everything ran, even if goals were missed (they are
# printed as MISS); 1 when something failed to run; 2 on bad usage.
# Needs bash >= 4.4 (bash >= 5 for a fork-free clock), coreutils; optional:
# /usr/bin/time (GNU time, for peak memory), root + losetup + mkfs.xfs (for
# the reflink sections), filefrag, hyperfine, mypy (sections 7 and 8),
# sponge (moreutils, section 9).

# The shell snippets run by sh -c expand "$1" themselves.
# shellcheck disable=SC2016
set -u -o pipefail
export LC_ALL=C

QUICK=0 HYPERFINE=0 KEEPDIR=0 SNAPRUN='' ONLY=123456789m
usage() { echo "usage: $0 [--quick] [--hyperfine] [--keep-dir] [--only LIST] SNAPRUN" >&2; exit 2; }
while (($#)); do
	case $1 in
	--quick) QUICK=1 ;;
	--hyperfine) HYPERFINE=1 ;;
	--keep-dir) KEEPDIR=1 ;;
	--only) (($# > 1)) || usage; ONLY=${2//[ ,]/}; shift ;;
	--only=*) ONLY=${1#*=}; ONLY=${ONLY//[ ,]/} ;;
	-h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
	--) shift; break ;;
	-*) usage ;;
	*) break ;;
	esac
	shift
done
(($# == 1)) || usage
SNAPRUN=$1

want() { [[ $ONLY == *"$1"* ]]; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
note() { printf '  # %s\n' "$*"; }

case $SNAPRUN in /*) ;; *) SNAPRUN=$PWD/$SNAPRUN ;; esac
[[ -x $SNAPRUN && -f $SNAPRUN ]] || die "$SNAPRUN: not an executable file"
TRUE=$(type -P true) || die "true: not found"   # "true alone"; snaprun gets plain `true`, found on PATH as users would

# ---------------------------------------------------------------- sizes ----
KIB=1024 MIB=$((1024 * 1024))
if ((QUICK)); then
	LARGE=$((64 * MIB))                    # section 2, 4, 5
	XSMALL=$((16 * MIB)) XLARGE=$((256 * MIB)) XIMG=1G
	S1_SAMPLES=21 S1_BATCH=10              # fixed overhead
	S2_SAMPLES=5                           # large copy
	S3_SAMPLES=9                           # reflink fs
	S4_SAMPLES=9 S4_BATCH=5 S4L_SAMPLES=3  # durability
	S5_RUNS=3                              # memory
	S6_PER_WORKER=5                        # contention
	S7_DIRS=20 S7_FILES=100 S7_SAMPLES=3   # tree copy: 2,000 files
	S7W_DIRS=4000 S7W_FILES=10000 S7W_SAMPLES=3  # wide trees
	S8_SAMPLES=5                           # mypy warm runs
	S9_SAMPLES=11 S9_BATCH=5               # filter mode, small file
	S9L_SAMPLES=3 FLARGE=$((64 * MIB))     # filter mode, large file
else
	LARGE=$((1024 * MIB))
	XSMALL=$((64 * MIB)) XLARGE=$((1024 * MIB)) XIMG=3G
	S1_SAMPLES=101 S1_BATCH=20
	S2_SAMPLES=9
	S3_SAMPLES=31
	S4_SAMPLES=31 S4_BATCH=10 S4L_SAMPLES=5
	S5_RUNS=5
	S6_PER_WORKER=50
	S7_DIRS=100 S7_FILES=100 S7_SAMPLES=5
	S7W_DIRS=40000 S7W_FILES=100000 S7W_SAMPLES=3
	S8_SAMPLES=9 S8E_SAMPLES=5
	S9_SAMPLES=31 S9_BATCH=10
	S9L_SAMPLES=5 FLARGE=$((256 * MIB))
fi
SMALL=$((4 * KIB))
WORKERS=8

human() { # bytes -> "4 KiB" / "64 MiB" / "1 GiB"
	local b=$1
	if ((b >= 1024 * MIB && b % (1024 * MIB) == 0)); then echo "$((b / (1024 * MIB))) GiB"
	elif ((b >= MIB && b % MIB == 0)); then echo "$((b / MIB)) MiB"
	else echo "$((b / KIB)) KiB"; fi
}

# ---------------------------------------------------------------- clock ----
# now -> $NOW in microseconds, without forking when bash has EPOCHREALTIME.
if [[ -n ${EPOCHREALTIME:-} ]]; then
	now() { NOW=${EPOCHREALTIME/[.,]/}; NOW=$((10#$NOW)); }
else
	now() { NOW=$(date +%s%6N); }
fi

# run CMD... : run once, quietly, and fail the benchmark if it fails.
run() { "$@" </dev/null >/dev/null || die "failed (exit $?): $*"; }

# exits LIST CMD... : run CMD; succeed when its exit status is in LIST (0,1),
# for commands that are meant to exit non-zero (CMD=false; mypy reporting
# type errors). A function, so wrapping a timed command costs no fork.
# shellcheck disable=SC2317  # invoked through the command arrays
exits() {
	local want=$1 r; shift
	"$@"; r=$?
	[[ ,$want, == *",$r,"* ]] && return 0
	printf 'bench: exit %s, expected %s: %s\n' "$r" "$want" "$*" >&2
	return 1
}

# time_batch N CMD... -> $T = mean microseconds per invocation over N runs
time_batch() {
	local n=$1 i t0; shift
	now; t0=$NOW
	for ((i = 0; i < n; i++)); do
		"$@" </dev/null >/dev/null || die "failed (exit $?): $*"
	done
	now; T=$(((NOW - t0) / n))
}

# time_steady CMD... -> $T: one untimed run, flush, then one timed run, flush.
# The untimed run puts the machine in the state this command leaves behind
# (page cache, free memory), so the timed run does not pay for what the
# other command of the pair did. Without it, on VMs with free-page
# reporting, a command that needs fresh memory pays for the other's habits.
time_steady() {
	run "$@"; dropdirty
	time_batch 1 "$@"; dropdirty
}

# median VALUES... -> $MED (and the smallest, $MIN)
median() {
	local -a s
	mapfile -t s < <(printf '%s\n' "$@" | sort -n)
	local n=${#s[@]}
	if ((n % 2)); then MED=${s[n / 2]}; else MED=$(((s[n / 2 - 1] + s[n / 2]) / 2)); fi
	MIN=${s[0]}
}

# fmt_ms US -> "1.234"
fmt_ms() { awk -v u="$1" 'BEGIN { printf "%.3f", u / 1000 }'; }
# fmt_s US -> "1.2"
fmt_s() { awk -v u="$1" 'BEGIN { printf "%.1f", u / 1e6 }'; }
# ratio A B -> "0.412"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "inf"; else printf "%.3f", a / b }'; }

# ---------------------------------------------------------------- table ----
MISSES=0 OKS=0
declare -a MISSED=()
section() { printf '\n== %s\n' "$*"; printf '  %-46s %12s %12s  %s\n' name value goal status; }
# row NAME VALUE GOAL   (GOAL: "<= 0.5", "< 10", ">= 1", "= 0", or "-" for info)
row() {
	local name=$1 value=$2 goal=$3 st
	if [[ $goal == - ]]; then
		st=info
	else
		st=$(awk -v v="$value" -v g="$goal" 'BEGIN {
			split(g, p, " "); op = p[1]
			if (op == "=") ok = (v == p[2])
			else {
				n = p[2] + 0; v = v + 0
				ok = (op == "<=") ? v <= n : (op == "<") ? v < n : (op == ">=") ? v >= n : (op == ">") ? v > n : 0
			}
			print ok ? "ok" : "MISS" }')
		if [[ $st == ok ]]; then ((OKS++)); else ((MISSES++)); MISSED+=("$name: $value (goal $goal)"); fi
	fi
	printf '  %-46s %12s %12s  %s\n' "$name" "$value" "$goal" "$st"
}
skip() { printf '  %-46s %12s %12s  %s\n' "$1" - - "skip: $2"; }

# ------------------------------------------------------------- work dir ----
fstype() { stat -f -c %T "$1" 2>/dev/null || echo unknown; }
if [[ -n ${BENCH_DIR:-} ]]; then
	PARENT=$BENCH_DIR
	[[ -d $PARENT ]] || die "BENCH_DIR=$PARENT: not a directory"
else
	PARENT=
	for d in "${TMPDIR:-}" /var/tmp /tmp; do
		[[ -n $d && -d $d && -w $d ]] || continue
		[[ $(fstype "$d") == tmpfs ]] && continue
		PARENT=$d; break
	done
	[[ -n $PARENT ]] || PARENT=${TMPDIR:-/tmp}
fi
WORK=$(mktemp -d "$PARENT/snaprun-bench.XXXXXX") || die "cannot make a directory in $PARENT"
MNT='' LOOPDEV='' BGPIDS=()

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
	local p
	for p in "${BGPIDS[@]}"; do kill "$p" 2>/dev/null; done
	if [[ -n $MNT ]] && mountpoint -q "$MNT" 2>/dev/null; then
		umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
	fi
	[[ -n $LOOPDEV ]] && losetup -d "$LOOPDEV" 2>/dev/null
	if ((KEEPDIR)); then echo "bench: working directory kept: $WORK" >&2
	else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cd "$WORK" || die "cd $WORK"

# ------------------------------------------------------------- header ----
cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
[[ -n $cpu ]] || cpu=$(uname -m)
version=$("$SNAPRUN" --version 2>&1 | head -n 1) || die "$SNAPRUN --version failed"
FSTYPE=$(fstype "$WORK")
# statfs cannot tell ext4 from ext2/ext3; findmnt can.
FSNAME=$(findmnt -n -o FSTYPE -T "$WORK" 2>/dev/null) || FSNAME=
if [[ -n $FSNAME && $FSNAME != "$FSTYPE" ]]; then FSDESC="$FSNAME (stat -f: $FSTYPE)"; FSTYPE=$FSNAME
else FSDESC=$FSTYPE; fi
echo "snaprun benchmark ($([[ $QUICK == 1 ]] && echo quick || echo full))"
printf '  %-10s %s\n' \
	binary "$SNAPRUN" \
	version "$version" \
	cpu "$cpu" \
	cores "$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)" \
	kernel "$(uname -sr)" \
	dir "$WORK" \
	fs "$FSDESC" \
	date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
	load "$(cut -d ' ' -f 1-3 /proc/loadavg 2>/dev/null || echo unknown)"
[[ $FSTYPE == tmpfs ]] && note "the working directory is on tmpfs: copy and sync costs are not a disk's (set BENCH_DIR)"
busy() { # warn when the machine is not quiet: results will be noisy
	local l c
	l=$(cut -d ' ' -f 1 /proc/loadavg 2>/dev/null) || return 0
	c=$(nproc 2>/dev/null || echo 1)
	awk -v l="$l" -v c="$c" 'BEGIN { exit !(l > c / 2) }' &&
		note "load average $l on $c cores: the machine is busy, expect noise (rerun when idle)"
}
busy
T_START=$SECONDS

# Space: the large file, its copy, and (reflink section) an image holding
# XLARGE + XSMALL.
avail_kib=$(df -Pk "$WORK" | awk 'NR == 2 { print $4 }')
need_kib=$(((2 * LARGE + XLARGE + XSMALL) / KIB + 64 * 1024))
HAVE_SPACE=1
((avail_kib >= need_kib)) || HAVE_SPACE=0

mkfile() { # mkfile PATH BYTES : real (non-sparse) data
	head -c "$2" /dev/zero >"$1" || die "cannot write $1"
}
# dropdirty [PATH...] : flush dirty pages of PATHs' filesystems, then of the
# working directory's (which holds the loop images, so last).
dropdirty() {
	local p
	for p in "$@" .; do sync -f "$p" 2>/dev/null || sync; done
}

mkfile small.db "$SMALL"
if ((HAVE_SPACE)) && { want 2 || want 4 || want 5; }; then
	mkfile large.db "$LARGE"
	dropdirty
fi
LARGE_H=$(human "$LARGE")
nospace() { skip "$1" "needs $((need_kib / 1024)) MiB free in $WORK, has $((avail_kib / 1024)) MiB"; }

# xfs_up SIZE : make a sparse image of SIZE in the working directory, format
# it with `mkfs.xfs -m reflink=1` and loop-mount it on $WORK/mnt ($MNT). On
# failure set $XFS_WHY and return 1; xfs_down undoes what was done.
xfs_up() {
	local c
	XFS_WHY=
	((EUID == 0)) || { XFS_WHY="not root (needs a loop mount)"; return 1; }
	for c in mkfs.xfs losetup mount umount; do
		command -v "$c" >/dev/null || { XFS_WHY="$c not installed (xfsprogs, util-linux)"; return 1; }
	done
	grep -qw xfs /proc/filesystems 2>/dev/null || modprobe xfs 2>/dev/null
	truncate -s "$1" xfs.img || { XFS_WHY="cannot create image"; return 1; }
	mkfs.xfs -q -f -m reflink=1 xfs.img >mkfs.log 2>&1 || { XFS_WHY="mkfs.xfs -m reflink=1 failed: $(head -n 1 mkfs.log)"; return 1; }
	LOOPDEV=$(losetup -f --show xfs.img 2>losetup.log) || { LOOPDEV=; XFS_WHY="losetup failed: $(head -n 1 losetup.log)"; return 1; }
	mkdir -p mnt || { XFS_WHY="cannot make mount point"; return 1; }
	mount -t xfs "$LOOPDEV" "$WORK/mnt" 2>mount.log || { XFS_WHY="mount failed: $(head -n 1 mount.log)"; return 1; }
	MNT=$WORK/mnt
}
xfs_down() {
	if [[ -n $MNT ]]; then
		umount "$MNT" 2>/dev/null || die "cannot unmount $MNT"
		MNT=
	fi
	if [[ -n $LOOPDEV ]]; then
		losetup -d "$LOOPDEV" 2>/dev/null || die "cannot detach $LOOPDEV"
		LOOPDEV=
	fi
	rm -f xfs.img
}

# ============================================================ section 1 ====
s1() {
section "1. fixed overhead: 4 KiB file, CMD=true (median of $S1_SAMPLES samples x $S1_BATCH runs)"
A=("$SNAPRUN" --no-sync small.db true)
B=(sh -c 'cp "$1" "$2" && true "$2" && mv "$2" "$1"' sh small.db small.db.tmp)
C=("$TRUE")
for _ in 1 2 3 4 5; do run "${A[@]}"; run "${B[@]}"; run "${C[@]}"; done
sa=() sb=() sc=()
for ((s = 0; s < S1_SAMPLES; s++)); do
	if ((s % 2)); then
		time_batch "$S1_BATCH" "${C[@]}"; sc+=("$T")
		time_batch "$S1_BATCH" "${B[@]}"; sb+=("$T")
		time_batch "$S1_BATCH" "${A[@]}"; sa+=("$T")
	else
		time_batch "$S1_BATCH" "${A[@]}"; sa+=("$T")
		time_batch "$S1_BATCH" "${B[@]}"; sb+=("$T")
		time_batch "$S1_BATCH" "${C[@]}"; sc+=("$T")
	fi
done
median "${sa[@]}"; ma=$MED
median "${sb[@]}"; mb=$MED
median "${sc[@]}"; mc=$MED
row "snaprun --no-sync f true (ms)" "$(fmt_ms "$ma")" -
row "sh -c 'cp f t && true t && mv t f' (ms)" "$(fmt_ms "$mb")" -
row "true alone (ms)" "$(fmt_ms "$mc")" -
row "snaprun / recipe" "$(ratio "$ma" "$mb")" "<= 0.5"
row "snaprun / CMD alone" "$(ratio "$ma" "$mc")" "<= 2.5"
row "snaprun - CMD alone (ms)" "$(fmt_ms $((ma - mc)))" -
if ((HYPERFINE)); then
	if command -v hyperfine >/dev/null; then
		note "hyperfine cross-check:"
		hyperfine -N -w 20 -r $((S1_SAMPLES * S1_BATCH)) \
			"'$SNAPRUN' --no-sync small.db true" \
			"sh -c 'cp small.db small.db.tmp && true small.db.tmp && mv small.db.tmp small.db'" \
			"$TRUE" 2>&1 | sed 's/^/  | /' || die "hyperfine failed"
	else
		note "hyperfine not installed: cross-check skipped"
	fi
fi

}
want 1 && s1

# ============================================================ section 2 ====
s2() {
section "2. copy cost: $LARGE_H file on $FSTYPE (median of $S2_SAMPLES, interleaved, page cache warm, each timed run after an untimed one)"
if ((HAVE_SPACE)); then
	A=("$SNAPRUN" --no-sync large.db true)
	B=(cp --reflink=auto large.db large.copy)
	C=(sh -c 'cp --reflink=auto "$1" "$2" && mv "$2" "$1"' sh large.db large.tmp)
	sa=() sb=() sc=()
	for ((s = 0; s < S2_SAMPLES; s++)); do
		if ((s % 2)); then
			time_steady "${C[@]}"; sc+=("$T")
			time_steady "${B[@]}"; sb+=("$T")
			time_steady "${A[@]}"; sa+=("$T")
		else
			time_steady "${A[@]}"; sa+=("$T")
			time_steady "${B[@]}"; sb+=("$T")
			time_steady "${C[@]}"; sc+=("$T")
		fi
	done
	median "${sa[@]}"; ma=$MED; mina=$MIN
	median "${sb[@]}"; mb=$MED; minb=$MIN
	median "${sc[@]}"; mc=$MED
	row "snaprun --no-sync f true (ms)" "$(fmt_ms "$ma")" -
	row "cp --reflink=auto f t (ms)" "$(fmt_ms "$mb")" -
	row "sh -c 'cp f t && mv t f' (ms)" "$(fmt_ms "$mc")" -
	row "snaprun / cp" "$(ratio "$ma" "$mb")" "<= 1.05"
	row "snaprun / cp, best of each" "$(ratio "$mina" "$minb")" -
	row "snaprun / (cp && mv)" "$(ratio "$ma" "$mc")" -
	row "snaprun throughput (MiB/s)" "$(awk -v b="$LARGE" -v u="$ma" 'BEGIN { printf "%.0f", b / 1048576 / (u / 1e6) }')" -
	rm -f large.copy large.tmp
	case $FSTYPE in
	xfs|btrfs|bcachefs|zfs) note "$FSTYPE may reflink: both sides may be clones here" ;;
	*) note "$FSTYPE has no reflink: both sides copy the data in the kernel" ;;
	esac
else
	nospace "large-file copy"
fi

}
want 2 && s2

# ============================================================ section 3 ====
s3() {
section "3. reflink filesystem: snapshot+commit of $(human "$XSMALL") vs $(human "$XLARGE") (xfs, median of $S3_SAMPLES)"
s3_skip() { skip "reflink snapshot" "$1"; }
s3_run() {
	((EUID == 0)) || { s3_skip "not root (needs a loop mount)"; return; }
	((HAVE_SPACE)) || { nospace "reflink snapshot"; return; }
	xfs_up "$XIMG" || { s3_skip "$XFS_WHY"; return; }
	mkfile "$MNT/small.db" "$XSMALL"
	mkfile "$MNT/large.db" "$XLARGE"
	sync -f "$MNT"
	# Did the snapshot share the original's extents (FICLONE)?
	if command -v filefrag >/dev/null; then
		local shared=no
		"$SNAPRUN" --no-sync "$MNT/large.db" sh -c 'filefrag -v "$1" | grep -q shared' sh {} </dev/null >/dev/null 2>&1 && shared=yes
		row "snapshot shares extents (reflink used)" "$shared" "= yes"
	fi
	local A=("$SNAPRUN" --no-sync "$MNT/small.db" true) B=("$SNAPRUN" --no-sync "$MNT/large.db" true)
	local C=("$SNAPRUN" "$MNT/small.db" true) D=("$SNAPRUN" "$MNT/large.db" true)
	local sa=() sb=() sc=() sd=() s ma mb mc md
	for s in 1 2 3; do run "${A[@]}"; run "${B[@]}"; run "${C[@]}"; run "${D[@]}"; done
	for ((s = 0; s < S3_SAMPLES; s++)); do
		if ((s % 2)); then
			time_batch 1 "${B[@]}"; sb+=("$T"); time_batch 1 "${A[@]}"; sa+=("$T")
			time_batch 1 "${D[@]}"; sd+=("$T"); time_batch 1 "${C[@]}"; sc+=("$T")
		else
			time_batch 1 "${A[@]}"; sa+=("$T"); time_batch 1 "${B[@]}"; sb+=("$T")
			time_batch 1 "${C[@]}"; sc+=("$T"); time_batch 1 "${D[@]}"; sd+=("$T")
		fi
	done
	median "${sa[@]}"; ma=$MED; median "${sb[@]}"; mb=$MED
	median "${sc[@]}"; mc=$MED; median "${sd[@]}"; md=$MED
	row "--no-sync, $(human "$XSMALL") (ms)" "$(fmt_ms "$ma")" "< 10"
	row "--no-sync, $(human "$XLARGE") (ms)" "$(fmt_ms "$mb")" "< 10"
	row "--no-sync, $(human "$XLARGE") / $(human "$XSMALL")" "$(ratio "$mb" "$ma")" "<= 1.5"
	row "durable (default), $(human "$XSMALL") (ms)" "$(fmt_ms "$mc")" -
	row "durable (default), $(human "$XLARGE") (ms)" "$(fmt_ms "$md")" -
	row "durable, $(human "$XLARGE") / $(human "$XSMALL")" "$(ratio "$md" "$mc")" -
	note "xfs on a loop device over $FSTYPE: durable numbers include the host's flush"
}
s3_run
xfs_down

}
want 3 && s3

# ============================================================ section 4 ====
s4() {
section "4. cost of durability: default (fsync file + dir) vs --no-sync"
A=("$SNAPRUN" small.db true)
B=("$SNAPRUN" --no-sync small.db true)
run "${A[@]}"; run "${B[@]}"
sa=() sb=()
for ((s = 0; s < S4_SAMPLES; s++)); do
	if ((s % 2)); then
		time_batch "$S4_BATCH" "${B[@]}"; sb+=("$T"); time_batch "$S4_BATCH" "${A[@]}"; sa+=("$T")
	else
		time_batch "$S4_BATCH" "${A[@]}"; sa+=("$T"); time_batch "$S4_BATCH" "${B[@]}"; sb+=("$T")
	fi
done
median "${sa[@]}"; ma=$MED; median "${sb[@]}"; mb=$MED
row "4 KiB, default (ms)" "$(fmt_ms "$ma")" -
row "4 KiB, --no-sync (ms)" "$(fmt_ms "$mb")" -
row "4 KiB, default / --no-sync" "$(ratio "$ma" "$mb")" -
if ((HAVE_SPACE)); then
	A=("$SNAPRUN" large.db true)
	B=("$SNAPRUN" --no-sync large.db true)
	sa=() sb=()
	dropdirty
	for ((s = 0; s < S4L_SAMPLES; s++)); do
		if ((s % 2)); then
			time_batch 1 "${B[@]}"; sb+=("$T"); dropdirty; time_batch 1 "${A[@]}"; sa+=("$T"); dropdirty
		else
			time_batch 1 "${A[@]}"; sa+=("$T"); dropdirty; time_batch 1 "${B[@]}"; sb+=("$T"); dropdirty
		fi
	done
	median "${sa[@]}"; ma=$MED; median "${sb[@]}"; mb=$MED
	row "$LARGE_H, default (ms)" "$(fmt_ms "$ma")" -
	row "$LARGE_H, --no-sync (ms)" "$(fmt_ms "$mb")" -
	row "$LARGE_H, default / --no-sync" "$(ratio "$ma" "$mb")" -
	note "--no-sync leaves the data to background writeback (flushed between samples, untimed)"
else
	nospace "$LARGE_H durability"
fi

}
want 4 && s4

# ============================================================ section 5 ====
s5() {
section "5. peak memory (max RSS of snaprun and CMD, worst of $S5_RUNS)"
GNUTIME=/usr/bin/time
if [[ -x $GNUTIME ]] && "$GNUTIME" -f %M -o rss.out "$TRUE" 2>/dev/null && [[ -s rss.out ]]; then
	maxrss() { # maxrss FILE -> $RSS (KiB), worst of S5_RUNS
		local i r; RSS=0
		for ((i = 0; i < S5_RUNS; i++)); do
			"$GNUTIME" -f %M -o rss.out "$SNAPRUN" --no-sync "$1" true </dev/null >/dev/null ||
				die "failed: $SNAPRUN --no-sync $1 true"
			r=$(tail -n 1 rss.out)
			((r > RSS)) && RSS=$r
		done
	}
	"$GNUTIME" -f %M -o rss.out "$TRUE"; r0=$(tail -n 1 rss.out)
	maxrss small.db; r1=$RSS
	row "4 KiB file (KiB)" "$r1" "< 2048"
	if ((HAVE_SPACE)); then
		maxrss large.db; r2=$RSS
		row "$LARGE_H file (KiB)" "$r2" "< 2048"
		row "$LARGE_H - 4 KiB (KiB)" "$((r2 - r1))" "<= 128"
	else
		nospace "$LARGE_H peak memory"
	fi
	row "for scale: true alone (KiB)" "$r0" -
else
	skip "peak memory" "GNU time not found at $GNUTIME (apt-get install time)"
fi

}
want 5 && s5

# ============================================================ section 6 ====
s6() {
section "6. contention: $WORKERS concurrent loops x $S6_PER_WORKER runs on one file, CMD appends a line (--no-sync)"
# contend LABEL OPTS... : prints rows. Each worker counts its exit statuses.
contend() {
	local label=$1 w i t0 ok=0 tf=0 n p; shift
	local total=$((WORKERS * S6_PER_WORKER))
	: >c.db; rm -f w.*
	local pids=()
	now; t0=$NOW
	for ((w = 0; w < WORKERS; w++)); do
		(
			trap - EXIT
			o=0 f=0 x=0
			for ((i = 0; i < S6_PER_WORKER; i++)); do
				"$SNAPRUN" --no-sync "$@" c.db sh -c 'echo x >> "$1"' sh {} </dev/null >/dev/null 2>>w.err
				case $? in 0) ((o++)) ;; 75) ((f++)) ;; *) ((x++)) ;; esac
			done
			echo "$o $f $x" >"w.$w"
		) &
		pids+=($!)
	done
	BGPIDS=("${pids[@]}")
	wait "${pids[@]}"
	now; BGPIDS=()
	local dt=$((NOW - t0)) o f x other=0
	for ((w = 0; w < WORKERS; w++)); do
		read -r o f x <"w.$w" || die "contention worker $w did not finish"
		ok=$((ok + o)) tf=$((tf + f)) other=$((other + x))
	done
	((other == 0)) || die "contention ($label): $other runs failed unexpectedly: $(head -n 1 w.err)"
	n=$(wc -l <c.db)
	local left
	left=$(find . -maxdepth 1 -name '.c.db.snaprun*' ! -name '*.lock' | wc -l)
	row "$label: runs/s" "$(awk -v n="$total" -v u="$dt" 'BEGIN { printf "%.0f", n / (u / 1e6) }')" -
	row "$label: lines kept / runs" "$n/$total" -
	((tf)) && row "$label: runs exited 75" "$tf" -
	if [[ $label == --lock ]]; then row "$label: runs lost" "$((total - n))" "= 0"; fi
	row "$label: leftovers beside FILE" "$left" "= 0"
}
contend --lock --lock
contend overwrite --on-conflict=overwrite
contend keep --on-conflict=keep
contend fail --on-conflict=fail
contend retry --on-conflict=retry
rm -f c.db w.* .c.db.snaprun.lock

}
want 6 && s6

# ================================================================= mypy ====
# The code base for mypy (sections 7 and 8): stdlib packages, copied below one
# package `sb` so that they do not shadow typeshed's stubs of the same names.
# The config sets ignore_errors: mypy still checks everything but reports
# nothing, exits 0 and so caches every module (mypy 1.0 does not cache a
# module with errors, which would make its "warm" run half cold). errors.ini
# is the same without it (section 8, full run, for information).
MYPY_PKGS='email json http xml logging unittest importlib concurrent urllib asyncio'
CODE=$WORK/mypy/code
PYVER='' MODS=0 MWHY=''
declare -A MCACHE=() MCOLD=() MFAIL=()
# mypy_code : make the code base once; else $MWHY and return 1
mypy_code() {
	[[ -d $CODE/sb ]] && return 0
	local lib=/usr/lib/python3.11 p
	[[ -d $lib ]] || lib=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])' 2>/dev/null) || lib=
	PYVER=${lib##*/python}
	[[ -d $lib && $PYVER =~ ^3\.[0-9]+$ ]] || { MWHY="no Python 3 standard library found for the code base"; return 1; }
	mkdir -p "$CODE/sb" || die "cannot make $CODE"
	: >"$CODE/sb/__init__.py" || die "cannot write $CODE/sb/__init__.py"
	for p in $MYPY_PKGS; do
		[[ -d $lib/$p ]] && { cp -r "$lib/$p" "$CODE/sb/" || die "cannot copy $lib/$p"; }
	done
	find "$CODE/sb" -depth -type d \( -name __pycache__ -o -name test -o -name tests \) -exec rm -rf {} +
	MODS=$(find "$CODE/sb" -name '*.py' | wc -l)
	((MODS > 1)) || { MWHY="none of $MYPY_PKGS in $lib"; rm -rf "$CODE"; return 1; }
	printf '[mypy]\nignore_errors = True\n' >"$CODE/clean.ini"
	printf '[mypy]\n' >"$CODE/errors.ini"
	note "code base: $MODS modules of $lib ($MYPY_PKGS)"
}
# mypy_cold KEY CONFIG MYPY... : once per KEY, a cold run of MYPY over the code
# base into $WORK/mypy/KEY/cache -> $MC (the cache), ${MCOLD[KEY]} (its
# time); else $MWHY and return 1. mypy exits 1 when it reports errors.
mypy_cold() {
	local key=$1 cfg=$2 dir=$WORK/mypy/$1 r t0; shift 2
	if [[ -n ${MCACHE[$key]:-} ]]; then MC=${MCACHE[$key]}; return 0; fi
	if [[ -n ${MFAIL[$key]:-} ]]; then MWHY=${MFAIL[$key]}; return 1; fi
	mypy_code || { MFAIL[$key]=$MWHY; return 1; }
	mkdir -p "$dir" || die "cannot make $dir"
	now; t0=$NOW
	"$@" --config-file "$CODE/$cfg" --python-version "$PYVER" --cache-dir "$dir/cache" "$CODE/sb" \
		</dev/null >"$dir/cold.log" 2>&1
	r=$?
	now
	if ((r > 1)) || [[ ! -d $dir/cache ]]; then
		MWHY="cold run of $* exited $r: $(grep -m 1 . "$dir/cold.log")"
		MFAIL[$key]=$MWHY
		return 1
	fi
	MCOLD[$key]=$((NOW - t0)) MCACHE[$key]=$dir/cache MC=$dir/cache
	dropdirty
}
# mypy_desc CACHE -> "JSON cache, 753 files, 19 MiB"
mypy_desc() {
	local kind=cache n kib
	if [[ -n $(find "$1" -name '*.db' -print -quit) ]]; then kind="SQLite cache"
	elif [[ -n $(find "$1" -name '*.meta.json' -print -quit) ]]; then kind="JSON cache"; fi
	n=$(find "$1" -type f | wc -l)
	kib=$(du -sk "$1" | cut -f 1)
	echo "$kind, $n files, $((kib / 1024)) MiB"
}

# ============================================================ section 7 ====
s7() {
local nfiles=$((S7_DIRS * S7_FILES))
section "7. tree copy: snapshot of a directory vs cp -a --reflink=auto (median of $S7_SAMPLES, interleaved)"
# mktree DIR : S7_DIRS directories of S7_FILES text files of 200 to 499 bytes
mktree() {
	local d x dirs=()
	for ((d = 0; d < S7_DIRS; d++)); do printf -v x '%s/d%03d' "$1" "$d"; dirs+=("$x"); done
	mkdir -p "${dirs[@]}" || die "cannot make $1"
	awk -v top="$1" -v nd="$S7_DIRS" -v nf="$S7_FILES" 'BEGIN {
		b = "the quick brown fox jumps over the lazy dog 0123456789"
		while (length(b) < 600) b = b " " b
		for (d = 0; d < nd; d++)
			for (f = 0; f < nf; f++) {
				p = sprintf("%s/d%03d/f%03d.txt", top, d, f)
				printf "%s\n", substr(b, 1 + f % 50, 199 + (d * 37 + f * 11) % 300) > p
				close(p)
			}
	}' || die "cannot fill $1"
}
# mkwide DIR DIRS FILES : DIR with DIRS empty subdirectories and FILES files of
# a few bytes, all side by side (a wide directory: every walk must stay linear)
mkwide() {
	mkdir -p "$1" || die "cannot make $1"
	awk -v top="$1" -v nd="$2" -v nf="$3" 'BEGIN {
		for (d = 0; d < nd; d++) printf "%s/d%06d\n", top, d
	}' | xargs -r mkdir || die "cannot fill $1"
	awk -v top="$1" -v nf="$3" 'BEGIN {
		for (f = 0; f < nf; f++) { p = sprintf("%s/f%06d", top, f); print f > p; close(p) }
	}' || die "cannot fill $1"
}
# tree_cost LABEL TREE [GOAL SAMPLES] : what taking a snapshot costs, snaprun
# vs cp -a, and a full commit. One run at a time, dirty pages flushed between
# them (untimed). GOAL is the ratio's, "<= 1.1" unless given; SAMPLES,
# S7_SAMPLES unless given.
tree_cost() {
	local label=$1 tree=$2 goal=${3:-<= 1.1} n=${4:-$S7_SAMPLES}
	local s ma mb mc sa=() sb=() sc=()
	local A=(exits 1 "$SNAPRUN" --no-sync "$tree" -- false)
	local B=(sh -c 'cp -a --reflink=auto "$1" "$2" && rm -rf "$2"' sh "$tree" "$tree.cp")
	local C=("$SNAPRUN" --no-sync "$tree" -- true)
	run "${A[@]}"; run "${B[@]}"; dropdirty "$tree"   # both read the tree once
	for ((s = 0; s < n; s++)); do
		if ((s % 2)); then
			time_batch 1 "${C[@]}"; sc+=("$T"); dropdirty "$tree"
			time_batch 1 "${B[@]}"; sb+=("$T"); dropdirty "$tree"
			time_batch 1 "${A[@]}"; sa+=("$T"); dropdirty "$tree"
		else
			time_batch 1 "${A[@]}"; sa+=("$T"); dropdirty "$tree"
			time_batch 1 "${B[@]}"; sb+=("$T"); dropdirty "$tree"
			time_batch 1 "${C[@]}"; sc+=("$T"); dropdirty "$tree"
		fi
	done
	median "${sa[@]}"; ma=$MED; median "${sb[@]}"; mb=$MED; median "${sc[@]}"; mc=$MED
	row "$label: snaprun -- false (ms)" "$(fmt_ms "$ma")" -
	row "$label: cp -a && rm -rf (ms)" "$(fmt_ms "$mb")" -
	row "$label: snaprun / cp -a" "$(ratio "$ma" "$mb")" "$goal"
	row "$label: commit, snaprun -- true (ms)" "$(fmt_ms "$mc")" -
}
# tree_shared LABEL TREE : inside a snapshot, count the regular files with an
# extent that is not shared (filefrag -v flags): a reflink copy has none.
# (No {} in the script: snaprun would replace it.)
tree_shared() {
	local out n bad
	command -v filefrag >/dev/null || { skip "$1: files not sharing extents" "filefrag not installed (e2fsprogs)"; return; }
	out=$("$SNAPRUN" --no-sync "$2" -- sh -c 'find "$1" -type f -print0 | xargs -0 filefrag -v |
		awk "/^File size of / { n++ } /^ *[0-9]+: / && !/shared/ { bad[n] = 1 }
			END { b = 0; for (k in bad) b++; print n + 0, b }"' sh {} </dev/null 2>&1) ||
		die "snapshot check of $2 failed: $out"
	read -r n bad <<<"$out"
	[[ $n =~ ^[0-9]+$ && $n != 0 && $bad =~ ^[0-9]+$ ]] || { n=0; bad="?"; note "filefrag check: $out"; }
	row "$1: files not sharing extents (of $n)" "$bad" "= 0"
}
local mc_ok=0
if command -v mypy >/dev/null; then
	mypy_cold deb clean.ini mypy && mc_ok=1
	((mc_ok)) && note "mypy cache: $(mypy_desc "$MC") (mypy $(mypy --version | awk '{ print $2 }'), cold run $(fmt_s "${MCOLD[deb]}") s)"
else
	MWHY="mypy not installed (apt-get install mypy)"
fi
local avail
avail=$(df -Pk "$WORK" | awk 'NR == 2 { print $4 }')
if ((avail < 1024 * 1024)); then
	skip "tree copy" "needs 1024 MiB free in $WORK, has $((avail / 1024)) MiB"
	return
fi
mktree tree
dropdirty
tree_cost "$FSTYPE $nfiles files" "$WORK/tree"
rm -rf tree
note "wide trees (median of $S7W_SAMPLES): $((S7W_DIRS / 1000))k dirs, $S7W_DIRS empty sibling directories; $((S7W_FILES / 1000))k files, $S7W_FILES files of a few bytes in one directory"
mkwide wide-dirs "$S7W_DIRS" 0
dropdirty
tree_cost "$FSTYPE $((S7W_DIRS / 1000))k dirs" "$WORK/wide-dirs" "<= 1.5" "$S7W_SAMPLES"
rm -rf wide-dirs
mkwide wide-files 0 "$S7W_FILES"
dropdirty
tree_cost "$FSTYPE $((S7W_FILES / 1000))k files" "$WORK/wide-files" "<= 1.5" "$S7W_SAMPLES"
rm -rf wide-files
if ((mc_ok)); then tree_cost "$FSTYPE mypy cache" "$MC"
else skip "$FSTYPE mypy cache" "$MWHY"; fi
if xfs_up 1G; then
	mktree "$MNT/tree"
	((mc_ok)) && { cp -a "$MC" "$MNT/mypy-cache" || die "cannot copy $MC to $MNT"; }
	dropdirty "$MNT"
	tree_shared "xfs $nfiles files" "$MNT/tree"
	tree_cost "xfs $nfiles files" "$MNT/tree"
	if ((mc_ok)); then
		tree_shared "xfs mypy cache" "$MNT/mypy-cache"
		tree_cost "xfs mypy cache" "$MNT/mypy-cache"
	else
		skip "xfs mypy cache" "$MWHY"
	fi
	note "xfs: a loop-mounted image made with mkfs.xfs -m reflink=1"
else
	skip "xfs with reflink, tree copy" "$XFS_WHY"
fi
xfs_down

}
want 7 && s7

# ============================================================ section 8 ====
s8() {
section "8. mypy warm run: snaprun --no-sync -c 0,1 CACHE -- mypy --cache-dir {} vs mypy alone (interleaved)"
# mypy_warm LABEL KEY CONFIG GOAL SAMPLES MYPY... : interleaved warm runs of
# MYPY on the cache of KEY, through snaprun (which commits a new cache every
# run) and alone. If snaprun's copy were not a faithful one (times, sizes),
# mypy would find the cache stale and both sides would run cold: the row
# "warm / cold" catches that, since the ratio alone would not.
mypy_warm() {
	local label=$1 key=$2 cfg=$3 goal=$4 n=$5 s ma mb sa=() sb=(); shift 5
	mypy_cold "$key" "$cfg" "$@" || { skip "$label" "$MWHY"; return; }
	local cache=$MC args=(--config-file "$CODE/$cfg" --python-version "$PYVER")
	local A=(exits '0,1' "$SNAPRUN" --no-sync -c '0,1' "$cache" -- "$@" "${args[@]}" --cache-dir {} "$CODE/sb")
	local B=(exits '0,1' "$@" "${args[@]}" --cache-dir "$cache" "$CODE/sb")
	note "$label: $(mypy_desc "$cache"), cold run $(fmt_s "${MCOLD[$key]}") s, median of $n"
	run "${A[@]}"; run "${B[@]}"; dropdirty
	for ((s = 0; s < n; s++)); do
		if ((s % 2)); then
			time_batch 1 "${B[@]}"; sb+=("$T"); dropdirty
			time_batch 1 "${A[@]}"; sa+=("$T"); dropdirty
		else
			time_batch 1 "${A[@]}"; sa+=("$T"); dropdirty
			time_batch 1 "${B[@]}"; sb+=("$T"); dropdirty
		fi
	done
	median "${sa[@]}"; ma=$MED; median "${sb[@]}"; mb=$MED
	row "$label: through snaprun (ms)" "$(fmt_ms "$ma")" -
	row "$label: mypy alone (ms)" "$(fmt_ms "$mb")" -
	row "$label: snaprun / mypy alone" "$(ratio "$ma" "$mb")" "$goal"
	row "$label: snaprun - mypy alone (ms)" "$(fmt_ms $((ma - mb)))" -
	if [[ $goal != - ]]; then
		row "$label: warm / cold (cache stays warm)" "$(ratio "$mb" "${MCOLD[$key]}")" "<= 0.5"
	fi
}
local v mm
if command -v mypy >/dev/null; then
	v=$(mypy --version 2>/dev/null | awk '{ print $2 }')
	mypy_warm "mypy $v" deb clean.ini "<= 1.05" "$S8_SAMPLES" mypy
	if ((QUICK)); then
		skip "mypy $v, errors shown" "full run only"
	else
		mypy_warm "mypy $v, errors shown" deb-errors errors.ini - "$S8E_SAMPLES" mypy
		note "errors shown: mypy 1.0 exits 1 and does not cache the modules with errors, so its warm run rechecks them"
	fi
else
	skip "mypy on PATH" "mypy not installed (apt-get install mypy)"
fi
if [[ -z ${MYPY:-} ]]; then
	skip "newer mypy (\$MYPY)" "MYPY not set (a mypy 1.20+ command, for the sharded SQLite cache)"
else
	read -r -a mm <<<"$MYPY"
	if command -v "${mm[0]}" >/dev/null; then
		v=$("${mm[@]}" --version 2>/dev/null | awk '{ print $2 }')
		mypy_warm "mypy ${v:-\$MYPY}" new clean.ini "<= 1.05" "$S8_SAMPLES" "${mm[@]}"
	else
		skip "newer mypy (\$MYPY)" "MYPY=$MYPY: not found"
	fi
fi

}
want 8 && s8

# ============================================================ section 9 ====
s9() {
section "9. filter mode: the same edit (sed s/a/b/) by snaprun -f, sed | sponge and sed -i (median of $S9_SAMPLES x $S9_BATCH runs; large: of $S9L_SAMPLES; interleaved)"
if ! "$SNAPRUN" --help 2>&1 | grep -q -- --filter; then
	skip "filter mode" "$SNAPRUN --help has no --filter (not built)"
	return
fi
local sp=1
command -v sponge >/dev/null || sp=0
# mktext PATH BYTES : text lines of 64 bytes, each with several a's
mktext() {
	yes 'a man, a plan, a canal: Panama! The quick brown fox, a lazy cat' | head -c "$2" >"$1"
	((PIPESTATUS[1] == 0)) || die "cannot write $1"
}
# filter_rows LABEL MA MB MC : rows for snaprun (A), sponge (B), sed -i (C)
filter_rows() {
	row "$1: snaprun -f f -- sed (ms)" "$(fmt_ms "$2")" -
	if ((sp)); then row "$1: sh -c 'sed < f | sponge f' (ms)" "$(fmt_ms "$3")" -
	else skip "$1: sed < f | sponge f" "sponge not installed (moreutils)"; fi
	row "$1: sed -i (ms)" "$(fmt_ms "$4")" -
	((sp)) && row "$1: snaprun / sponge" "$(ratio "$2" "$3")" "<= 1.0"
	row "$1: snaprun / sed -i" "$(ratio "$2" "$4")" -
}
local s ma mb=0 mc sa=() sb=() sc=()
mktext fs.txt "$SMALL"
local A=("$SNAPRUN" --no-sync -f fs.txt -- sed s/a/b/)
local B=(sh -c 'sed s/a/b/ <"$1" | sponge "$1"' sh fs.txt)
local C=(sed -i s/a/b/ fs.txt)
for _ in 1 2 3; do run "${A[@]}"; ((sp)) && run "${B[@]}"; run "${C[@]}"; done
for ((s = 0; s < S9_SAMPLES; s++)); do
	if ((s % 2)); then
		time_batch "$S9_BATCH" "${C[@]}"; sc+=("$T")
		((sp)) && { time_batch "$S9_BATCH" "${B[@]}"; sb+=("$T"); }
		time_batch "$S9_BATCH" "${A[@]}"; sa+=("$T")
	else
		time_batch "$S9_BATCH" "${A[@]}"; sa+=("$T")
		((sp)) && { time_batch "$S9_BATCH" "${B[@]}"; sb+=("$T"); }
		time_batch "$S9_BATCH" "${C[@]}"; sc+=("$T")
	fi
done
median "${sa[@]}"; ma=$MED; ((sp)) && { median "${sb[@]}"; mb=$MED; }; median "${sc[@]}"; mc=$MED
filter_rows "$(human "$SMALL")" "$ma" "$mb" "$mc"
rm -f fs.txt

local avail
avail=$(df -Pk "$WORK" | awk 'NR == 2 { print $4 }')
if ((avail < 4 * FLARGE / KIB + 64 * 1024)); then
	skip "$(human "$FLARGE") filter" "needs $((4 * FLARGE / MIB + 64)) MiB free in $WORK, has $((avail / 1024)) MiB"
	return
fi
# Every timed run edits a fresh copy of the same text (copied untimed, then
# flushed), so that all runs make the same edit.
mktext fl.orig "$FLARGE"
A=("$SNAPRUN" --no-sync -f fl.txt -- sed s/a/b/)
B=(sh -c 'sed s/a/b/ <"$1" | sponge "$1"' sh fl.txt)
C=(sed -i s/a/b/ fl.txt)
fresh() { cp fl.orig fl.txt || die "cannot copy fl.orig"; dropdirty; }
time_fresh() { fresh; time_batch 1 "$@"; dropdirty; }
fresh; run "${A[@]}"; ((sp)) && { fresh; run "${B[@]}"; }; fresh; run "${C[@]}"
sa=() sb=() sc=()
for ((s = 0; s < S9L_SAMPLES; s++)); do
	if ((s % 2)); then
		time_fresh "${C[@]}"; sc+=("$T")
		((sp)) && { time_fresh "${B[@]}"; sb+=("$T"); }
		time_fresh "${A[@]}"; sa+=("$T")
	else
		time_fresh "${A[@]}"; sa+=("$T")
		((sp)) && { time_fresh "${B[@]}"; sb+=("$T"); }
		time_fresh "${C[@]}"; sc+=("$T")
	fi
done
median "${sa[@]}"; ma=$MED; ((sp)) && { median "${sb[@]}"; mb=$MED; }; median "${sc[@]}"; mc=$MED
filter_rows "$(human "$FLARGE")" "$ma" "$mb" "$mc"
rm -f fl.orig fl.txt

}
want 9 && s9

# ============================================================ section m ====
# Four mypy runs at once, each on its own package, sharing one cache, in
# each way of sharing it; then one full run shows what the four kept (its
# time, and how many modules it found fresh).  Cold: from no cache.  Warm:
# from the cache the full run left, each run's package changed first.  The
# packages are Debian's python3 libraries (oauthlib; jwt, yaml; argcomplete,
# httplib2; blinker, distro), copied; the config ignores errors and missing
# imports, so that every module is cached.
CM_SETS=('oauthlib' 'jwt yaml' 'argcomplete httplib2' 'blinker distro')
CM=$WORK/cm
# cm_code : the four packages, once; else $MWHY and return 1
cm_code() {
	[[ -d $CM/code ]] && return 0
	local lib=/usr/lib/python3/dist-packages i p
	for i in 0 1 2 3; do
		for p in ${CM_SETS[i]}; do
			[[ -d $lib/$p ]] || { MWHY="$lib/$p: not installed"; return 1; }
			mkdir -p "$CM/code/$i" && cp -r "$lib/$p" "$CM/code/$i/" || die "cannot copy $lib/$p"
		done
	done
	find "$CM/code" -depth -type d -name __pycache__ -exec rm -rf {} +
	printf '[mypy]\nignore_errors = True\nignore_missing_imports = True\n' >"$CM/mypy.ini"
	note "packages: $(find "$CM/code" -name '*.py' | wc -l) files (${CM_SETS[*]})"
}
# cm_paths I : the package directories of set I (all four sets: "all")
cm_paths() {
	local i p
	for i in $([[ $1 == all ]] && echo 0 1 2 3 || echo "$1"); do
		for p in ${CM_SETS[i]}; do printf '%s\n' "$CM/code/$i/$p"; done
	done
}
# cm_run HOW I MYPY... : one run of mypy on set I (or all) the way HOW shares
# the cache $CM/cache; its verbose log in $CM/log.I
cm_run() {
	local how=$1 i=$2 paths opts=() cmd=(); shift 2
	mapfile -t paths < <(cm_paths "$i")
	case $how in
	alone) "$@" -v --config-file "$CM/mypy.ini" --cache-dir "$CM/cache" "${paths[@]}"
		return $? ;;
	overwrite) ;;
	lock) opts=(-x) ;;
	retry) opts=(--on-conflict=retry --retries=10) ;;
	merge) opts=(--merge='"$SNAPRUN_MERGE_MYPY" "$@"') ;;
	esac
	"$SNAPRUN" -c 0,1 "${opts[@]}" "$CM/cache" -- \
		"$@" -v --config-file "$CM/mypy.ini" --cache-dir {} "${paths[@]}"
} 
# cm_four HOW MYPY... -> $T: wall time of four runs at once (one per set)
cm_four() {
	local how=$1 i t0 pids=() bad=0; shift
	now; t0=$NOW
	for i in 0 1 2 3; do
		cm_run "$how" "$i" "$@" </dev/null >"$CM/log.$i" 2>&1 &
		pids+=($!)
	done
	for i in 0 1 2 3; do wait "${pids[i]}" || bad=$((bad + 1)); done
	now; T=$((NOW - t0))
	((bad == 0)) || note "$how: $bad of the four runs failed (exit > 1 or 75); first lines: $(grep -h -m 1 -i 'error\|snaprun:' "$CM"/log.[0-3] | head -n 2 | tr '\n' ' ')"
}
# cm_full HOW MYPY... -> $T (its time), $FRESH (modules it found fresh)
cm_full() {
	local how=$1 t0; shift
	now; t0=$NOW
	cm_run "$how" all "$@" </dev/null >"$CM/log.full" 2>&1
	now; T=$((NOW - t0))
	FRESH=$(grep -c 'Metadata fresh' "$CM/log.full")
}
# cm_rows LABEL MYPY... : cold and warm rows for every way of sharing
cm_rows() {
	local label=$1 how i wall; shift
	declare -A W=() F=()
	for how in alone overwrite lock retry merge; do
		rm -rf "$CM/cache" "$CM"/.cache.snaprun.*; dropdirty
		cm_four "$how" "$@"; wall=$T; W[$how]=$wall
		cm_full "$how" "$@"; F[$how]=$FRESH
		row "$label, $how: cold, four at once (s)" "$(fmt_s "$wall")" -
		row "$label, $how: cold, then full run (s)" "$(fmt_s "$T")" -
		row "$label, $how: cold, then fresh in full run" "$FRESH" -
		for i in 0 1 2 3; do
			printf 'bench_changed_%s = %s\n' "$i" "$RANDOM" >>"$CM/code/$i/$(cut -d' ' -f1 <<<"${CM_SETS[i]}")/__init__.py"
		done
		dropdirty
		cm_four "$how" "$@"; wall=$T
		cm_full "$how" "$@"
		row "$label, $how: warm, four at once (s)" "$(fmt_s "$wall")" -
		row "$label, $how: warm, then full run (s)" "$(fmt_s "$T")" -
		row "$label, $how: warm, then fresh in full run" "$FRESH" -
	done
	row "$label: merge / overwrite, cold four at once" "$(ratio "${W[merge]}" "${W[overwrite]}")" "<= 1.10"
	row "$label: modules lost by merge vs --lock (cold)" "$((F[lock] > F[merge] ? F[lock] - F[merge] : 0))" "= 0"
	rm -rf "$CM/cache"
}
sm() {
section "m. mypy: four runs at once on disjoint packages sharing one cache, then a full run (cold and warm; alone, overwrite, --lock, retry, --merge)"
export SNAPRUN_MERGE_MYPY=${SNAPRUN_MERGE_MYPY:-$(dirname "$SNAPRUN")/snaprun-merge-mypy}
if [[ ! -x $SNAPRUN_MERGE_MYPY ]]; then
	skip "mypy merge" "$SNAPRUN_MERGE_MYPY: not found (set SNAPRUN_MERGE_MYPY)"
	return
fi
cm_code || { skip "concurrent mypy runs" "$MWHY"; return; }
local v mm
if command -v mypy >/dev/null; then
	v=$(mypy --version 2>/dev/null | awk '{ print $2 }')
	cm_rows "mypy $v" mypy
else
	skip "mypy on PATH" "mypy not installed (apt-get install mypy)"
fi
if [[ -n ${MYPY:-} ]]; then
	read -r -a mm <<<"$MYPY"
	v=$("${mm[@]}" --version 2>/dev/null | awk '{ print $2 }')
	cm_rows "mypy ${v:-\$MYPY}" "${mm[@]}"
else
	skip "newer mypy (\$MYPY)" "MYPY not set (a mypy 1.20+ command, for the sharded SQLite cache)"
fi
}
want m && sm

# ============================================================== summary ====
printf '\n== summary: %d goals met, %d missed, %ds\n' "$OKS" "$MISSES" $((SECONDS - T_START))
busy
for m in "${MISSED[@]}"; do printf '  MISS %s\n' "$m"; done
exit 0
