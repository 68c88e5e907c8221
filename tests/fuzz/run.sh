#!/usr/bin/env bash
#
# Builds the libFuzzer targets (clang, ASan+UBSan) in build-fuzz/ and runs
# each for SECONDS (default 60), one after the other.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]    targets: decode schema append query
#
# Each target starts from its seed corpus tests/fuzz/corpus/TARGET/ (which
# also holds the inputs of past findings, so every run replays them) and
# keeps what it finds in build-fuzz/tests/fuzz/corpus-TARGET/. A finding is
# saved as build-fuzz/tests/fuzz/TARGET-crash-*; the command then exits 1.
# It ends with one line per target: runs, seconds, corpus size, result.
# DIS_FUZZ_BUILD_DIR overrides the build directory; extra libFuzzer flags
# can be given in DIS_FUZZ_FLAGS (e.g. "-jobs=2 -workers=2").

set -euo pipefail

# shellcheck source=tests/pgenv.sh
. "$(dirname "${BASH_SOURCE[0]}")/../pgenv.sh"

all=(decode schema append query)
seconds=60
if [ $# -gt 0 ]; then
	case $1 in
	-h | --help)
		sed -n '3,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
		exit 0
		;;
	*[!0-9]* | '') ;;
	*)
		seconds=$1
		shift
		;;
	esac
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
for t in "${targets[@]}"; do
	case " ${all[*]} " in
	*" $t "*) ;;
	*) dis_die "unknown fuzz target '$t' (targets: ${all[*]})" ;;
	esac
done

build=${DIS_FUZZ_BUILD_DIR:-build-fuzz}
case $build in
/*) ;;
*) build=$DIS_ROOT/$build ;;
esac

dis_install_deps
if [ ! -f "$build/meson-private/coredata.dat" ]; then
	export CC=clang
fi
dis_build "$build" -Dfuzz=true \
	-Db_sanitize=address,undefined -Db_lundef=false

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
dir=$build/tests/fuzz
summary=()
rc=0
for t in "${targets[@]}"; do
	log=$dir/fuzz-$t.log
	mkdir -p "$dir/corpus-$t"
	dis_log "fuzz $t for ${seconds}s (log: $log)"
	st=0
	# shellcheck disable=SC2086
	"$dir/fuzz-$t" -max_total_time="$seconds" -print_final_stats=1 \
		-artifact_prefix="$dir/$t-" ${DIS_FUZZ_FLAGS-} \
		"$dir/corpus-$t" "$DIS_ROOT/tests/fuzz/corpus/$t" \
		>"$log" 2>&1 || st=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" |
		tail -n 1)
	secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" |
		tail -n 1)
	size=$(find "$dir/corpus-$t" "$DIS_ROOT/tests/fuzz/corpus/$t" \
		-type f | wc -l)
	if [ $st = 0 ]; then
		result=ok
	else
		result="FAILED (status $st)"
		rc=1
		grep -E 'ERROR|fuzz check failed|runtime error|Test unit written' \
			"$log" >&2 || tail -n 30 "$log" >&2
	fi
	summary+=("$t: ${runs:-?} runs in ${secs:-?} s, corpus $size files, $result")
done
printf '%s\n' "${summary[@]}"
exit $rc
