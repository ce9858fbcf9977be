#!/usr/bin/env bash
# bench/bench.sh — measure snaprun against what users would do instead.
#
# usage: bench/bench.sh [--quick] [--hyperfine] [--keep-dir] [--only LIST] SNAPRUN
#
# Every comparison is measured in one interleaved run (A,B,A,B,...) so that
# machine noise hits both sides, and reported as a ratio of medians.
# Each result line reads:   name   value   goal   ok | MISS | info | skip
#
#   --quick      small files and few samples (well under a minute; for CI)
#   --hyperfine  also cross-check the small-file numbers with hyperfine
#   --keep-dir   do not delete the working directory at the end
#   --only LIST  run only these sections, e.g. --only 1,5
#
# Environment:
#   BENCH_DIR    parent directory for the working directory (default: $TMPDIR
#                or /var/tmp, whichever is not tmpfs). Use a disk filesystem.
#
# Exit status: 0 when everything ran, even if goals were missed (they are
# printed as MISS); 1 when something failed to run; 2 on bad usage.
# Needs bash >= 4.4 (bash >= 5 for a fork-free clock), coreutils; optional:
# /usr/bin/time (GNU time, for peak memory), root + losetup + mkfs.xfs (for
# the reflink section), filefrag, hyperfine.

# The shell snippets run by sh -c expand "$1" themselves.
# shellcheck disable=SC2016
set -u -o pipefail
export LC_ALL=C

QUICK=0 HYPERFINE=0 KEEPDIR=0 SNAPRUN='' ONLY=123456
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
else
	LARGE=$((1024 * MIB))
	XSMALL=$((64 * MIB)) XLARGE=$((1024 * MIB)) XIMG=3G
	S1_SAMPLES=101 S1_BATCH=20
	S2_SAMPLES=9
	S3_SAMPLES=31
	S4_SAMPLES=31 S4_BATCH=10 S4L_SAMPLES=5
	S5_RUNS=5
	S6_PER_WORKER=50
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
dropdirty() { sync -f . 2>/dev/null || sync; }

mkfile small.db "$SMALL"
if ((HAVE_SPACE)) && { want 2 || want 4 || want 5; }; then
	mkfile large.db "$LARGE"
	dropdirty
fi
LARGE_H=$(human "$LARGE")
nospace() { skip "$1" "needs $((need_kib / 1024)) MiB free in $WORK, has $((avail_kib / 1024)) MiB"; }

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
	local c
	for c in mkfs.xfs losetup mount umount; do
		command -v "$c" >/dev/null || { s3_skip "$c not installed (xfsprogs, util-linux)"; return; }
	done
	grep -qw xfs /proc/filesystems 2>/dev/null || modprobe xfs 2>/dev/null
	truncate -s "$XIMG" xfs.img || { s3_skip "cannot create image"; return; }
	mkfs.xfs -q -f -m reflink=1 xfs.img >mkfs.log 2>&1 || { s3_skip "mkfs.xfs -m reflink=1 failed: $(head -n 1 mkfs.log)"; return; }
	LOOPDEV=$(losetup -f --show xfs.img 2>losetup.log) || { LOOPDEV=; s3_skip "losetup failed: $(head -n 1 losetup.log)"; return; }
	mkdir -p mnt || { s3_skip "cannot make mount point"; return; }
	mount -t xfs "$LOOPDEV" "$WORK/mnt" 2>mount.log || { s3_skip "mount failed: $(head -n 1 mount.log)"; return; }
	MNT=$WORK/mnt
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

# ============================================================== summary ====
printf '\n== summary: %d goals met, %d missed, %ds\n' "$OKS" "$MISSES" $((SECONDS - T_START))
busy
for m in "${MISSED[@]}"; do printf '  MISS %s\n' "$m"; done
exit 0
