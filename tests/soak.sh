#!/usr/bin/env bash
# tests/soak.sh SNAPRUN: random concurrent runs of snaprun in every conflict
# mode (overwrite, keep, fail, retry, merge, and --lock), some SIGKILLed at
# random instants, on a file, a tree and a filter; then the invariants:
#   - FILE (DIR) is always one whole version: a reader samples the file
#     and the filter's file all along, each sample and each end state is a
#     sorted list of whole tokens (a tree: files each holding its name);
#   - no update is lost under --lock, retry and merge: in rounds without
#     overwrite, every run of those modes that exited 0 has its token in the
#     end state;
#   - nothing is left after --clean once the CMDs of killed runs are gone.
# Prints what it ran and what it found; exits 1 on the first violation.
#
# Environment: SOAK_SECONDS (default 180), SOAK_RUNS (runs per round,
# default 6), SOAK_DIR (parent of the working directory, default $TMPDIR).
set -u -o pipefail

SNAPRUN=${1:?usage: tests/soak.sh SNAPRUN}
case $SNAPRUN in /*) ;; *) SNAPRUN=$PWD/$SNAPRUN ;; esac
SECONDS_WANTED=${SOAK_SECONDS:-180}
RUNS=${SOAK_RUNS:-6}
W=$(mktemp -d "${SOAK_DIR:-${TMPDIR:-/tmp}}/snaprun-soak.XXXXXX") || exit 1
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1

# Bash reports each killed job on stderr: the waits go with theirs to
# /dev/null, the findings to 3.
exec 3>&2
fail() {
	printf 'soak: FAILED: %s\n' "$*" >&3
	exit 1
}

# ALARM SECS CMD...: CMD in this very process (its pid is the one to
# kill), ended by an alarm if it hangs.
ALARM=(perl -e 'alarm shift; exec { $ARGV[0] } @ARGV or exit 127')

# well_formed FILE: a sorted list of whole tokens (or empty).
well_formed() {
	! grep -qvx 't[0-9]*-[0-9]*' "$1" && sort -c "$1" 2>/dev/null
}

# tree_ok DIR: nothing in it but files named as tokens holding their name.
tree_ok() {
	local e
	[ -d "$1" ] && [ ! -L "$1" ] || return 1
	for e in "$1"/* "$1"/.[!.]*; do
		[ -e "$e" ] || continue
		[[ ${e##*/} == t*-* ]] && [ -f "$e" ] && [ "$(cat "$e")" = "${e##*/}" ] || return 1
	done
}

# reader: samples f and g until stop exists; counts in reads, bad in bad.
reader() {
	local n=0 t
	while [ ! -e stop ]; do
		for t in f g; do
			cp "$t" "sample.$t" 2>/dev/null || continue
			well_formed "sample.$t" || { cp "sample.$t" bad; echo "$t" >>bad.which; }
			n=$((n + 1))
		done
	done
	echo "$n" >reads
}

# options MODE: snaprun's options for a conflict mode.
options() {
	case $1 in
	overwrite) echo "--on-conflict=overwrite" ;;
	keep | fail) echo "--on-conflict=$1" ;;
	retry) echo "--on-conflict=retry --retries=50" ;;
	lock) echo "-x -w 60" ;;
	merge) echo "merge" ;;
	esac
}

# launch KIND MODE TOKEN: one run in the background; its pid in PID.
launch() {
	local kind=$1 mode=$2 tok=$3 nap="0.0$((RANDOM % 5))$((RANDOM % 10))" opts
	read -ra opts <<<"$(options "$mode")"
	case $kind in
	file)
		[ "$mode" != merge ] || opts=(--merge='sort -u "$1" "$2" -o "$1"')
		"${ALARM[@]}" 120 "$SNAPRUN" --no-sync "${opts[@]}" f -- \
			sh -c 'echo "$2" >> "$1"; sort -o "$1" "$1"; sleep "$3"' sh {} "$tok" "$nap" ;;
	tree)
		[ "$mode" != merge ] || opts=(--merge='cp -Rn "$2"/. "$1"/')
		"${ALARM[@]}" 120 "$SNAPRUN" --no-sync "${opts[@]}" d -- \
			sh -c 'echo "$2" > "$1/$2"; sleep "$3"' sh {} "$tok" "$nap" ;;
	filter)
		[ "$mode" != merge ] || opts=(--merge='sort -u "$1" "$2" -o "$1"')
		"${ALARM[@]}" 120 "$SNAPRUN" -f "${opts[@]}" g -- \
			sh -c '{ cat; echo "$1"; } | sort; sleep "$2"' sh "$tok" "$nap" ;;
	esac >/dev/null 2>>"err.$tok" &
	PID=$!
}

# cleaned: --clean, until the CMDs of killed runs have let go (10 s at most).
cleaned() {
	local i t
	for i in $(seq 200); do
		for t in f d g; do "$SNAPRUN" --clean "$t" 2>>clean.err || fail "--clean $t exited $?"; done
		[ -z "$(find . -maxdepth 1 -name '.*.snaprun.*' ! -name '*.snaprun.lock')" ] && return 0
		sleep 0.05
	done
	fail "left after --clean: $(find . -maxdepth 1 -name '.*.snaprun.*' ! -name '*.snaprun.lock')"
}

declare -A RAN EXITS
MODES=(overwrite keep fail retry merge lock)
LOSSLESS=(keep fail retry merge lock)
: >f
: >g
mkdir d
: >reads
reader &
READER=$!
start=$SECONDS round=0 kills=0 checked=0 total=0
while ((SECONDS - start < SECONDS_WANTED)); do
	round=$((round + 1))
	kinds=(file tree filter)
	kind=${kinds[RANDOM % 3]}
	lossless=$((RANDOM % 2))
	pids=() toks=() modes=() toks_st=()
	for i in $(seq 1 "$RUNS"); do
		if ((lossless)); then mode=${LOSSLESS[RANDOM % 5]}; else mode=${MODES[RANDOM % 6]}; fi
		tok="t$round-$i"
		launch "$kind" "$mode" "$tok"
		pids+=("$PID") toks+=("$tok") modes+=("$mode")
		RAN[$kind/$mode]=$((${RAN[$kind/$mode]:-0} + 1))
		total=$((total + 1))
	done
	# about one run in four is SIGKILLed, 0-300 ms in
	{
		for i in "${!pids[@]}"; do
			((RANDOM % 4 == 0)) || continue
			sleep "0.$((RANDOM % 3))$((RANDOM % 10))"
			kill -9 "${pids[i]}" 2>/dev/null && kills=$((kills + 1))
		done
		for i in "${!pids[@]}"; do
			st=0
			wait "${pids[i]}" || st=$?
			EXITS[${modes[i]}:$st]=$((${EXITS[${modes[i]}:$st]:-0} + 1))
			case $st in 0 | 75 | 137) ;; *) fail "round $round: ${modes[i]} run exited $st: $(cat "err.${toks[i]}")" ;; esac
			toks_st[i]=$st
		done
	} 2>/dev/null
	cleaned
	case $kind in
	file) well_formed f || fail "round $round: f is not one whole version" ;;
	filter) well_formed g || fail "round $round: g is not one whole version" ;;
	tree) tree_ok d || fail "round $round: d is not one whole version" ;;
	esac
	((lossless)) || continue
	for i in "${!pids[@]}"; do
		case ${modes[i]} in retry | merge | lock) ;; *) continue ;; esac
		[ "${toks_st[i]}" = 0 ] || continue
		checked=$((checked + 1))
		case $kind in
		file) grep -qx "${toks[i]}" f ;;
		filter) grep -qx "${toks[i]}" g ;;
		tree) [ -f "d/${toks[i]}" ] ;;
		esac || fail "round $round: ${modes[i]} run ${toks[i]} exited 0 but its update is lost"
	done
done
touch stop
wait "$READER"
[ ! -e bad ] || fail "a reader saw a partial version of $(sort -u bad.which | tr '\n' ' ')"

echo "soak: $round rounds of $RUNS concurrent runs in $((SECONDS - start)) s: $total runs, $kills SIGKILLed"
echo "soak: runs by target/mode:"
for k in $(printf '%s\n' "${!RAN[@]}" | sort); do printf '  %-18s %s\n' "$k" "${RAN[$k]}"; done
echo "soak: exit statuses by mode:"
for k in $(printf '%s\n' "${!EXITS[@]}" | sort); do printf '  %-18s %s\n' "$k" "${EXITS[$k]}"; done
echo "soak: reader samples, all whole: $(cat reads)"
echo "soak: lossless rounds: $checked updates of --lock, retry and merge runs that exited 0, none lost"
echo "soak: end state: f $(wc -l <f) tokens, g $(wc -l <g), d $(find d -type f | wc -l) files; nothing left after --clean"
echo "soak: passed"
