#!/usr/bin/env bash
#
# The test command: installs missing Debian packages, builds with -Werror,
# starts a throwaway PostgreSQL cluster (unless PGHOST, PGDATABASE or
# DIS_TEST_DB name a database), runs the test suites and deletes the cluster,
# also on failure or Ctrl-C.
#
#   tests/run.sh                  what CI runs: suites unit, pg and fault in
#                                 build/, the same under ASan+UBSan in
#                                 build-fuzz/ (clang), the listener tests
#                                 under valgrind, and a short run of each
#                                 fuzz target
#   tests/run.sh --asan           unit, pg and fault under ASan+UBSan (gcc)
#                                 in build-asan/
#   tests/run.sh --suite pg       only that suite (repeatable); besides
#                                 unit, pg, fault: sanitize (the three under
#                                 ASan+UBSan in build-fuzz/), valgrind, fuzz
#   tests/run.sh --bench          the benchmarks instead (not pass/fail)
#   tests/run.sh -- ARGS          ARGS go to `meson test` (test names, ...)
#
# Arguments it does not know go to `meson test` as well. It ends with a line
# "N passed, N failed, N skipped" and exits non-zero when anything failed.
# DIS_BUILD_DIR overrides the build directory (relative to the repository),
# DIS_FUZZ_BUILD_DIR the clang one.

set -euo pipefail

# shellcheck source=tests/pgenv.sh
. "$(dirname "${BASH_SOURCE[0]}")/pgenv.sh"

usage() {
	sed -n '3,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

# Seconds of fuzzing in all, shared by the fuzz targets (each also replays
# its corpus), in a default run.
FUZZ_BUDGET=40
# The listener tests (suite pg), run under valgrind (memcheck): any memory
# error or definitely lost block fails them.
VALGRIND_TESTS=(listener policy)
VALGRIND=(valgrind --quiet --leak-check=full --show-leak-kinds=definite
	--errors-for-leak-kinds=definite --error-exitcode=99 --num-callers=30
	"--suppressions=$DIS_ROOT/tests/valgrind.supp")

asan=0
bench=0
suites=()
extra=()
while [ $# -gt 0 ]; do
	case $1 in
	--asan) asan=1 ;;
	--bench) bench=1 ;;
	--suite)
		[ $# -ge 2 ] || dis_die "--suite needs a name"
		suites+=("$2")
		shift
		;;
	--suite=*) suites+=("${1#--suite=}") ;;
	-h | --help)
		usage
		exit 0
		;;
	--)
		shift
		extra+=("$@")
		break
		;;
	*) extra+=("$1") ;;
	esac
	shift
done

# Which suites run where: unit, pg and fault in the main build; "sanitize"
# runs them again in the clang ASan+UBSan build, which also holds the fuzz
# targets; "valgrind" runs the listener tests of the main build under
# valgrind. A default run does all of it.
main_suites=()
san_suites=()
valgrind=0
fuzz=0
if [ ${#suites[@]} -eq 0 ]; then
	main_suites=(unit pg fault)
	if [ $asan = 0 ] && [ $bench = 0 ] && [ ${#extra[@]} -eq 0 ]; then
		san_suites=(unit pg fault)
		valgrind=1
		grep -q "^ *\['" "$DIS_ROOT/tests/fuzz/meson.build" && fuzz=1
	fi
else
	for s in "${suites[@]}"; do
		case $s in
		fuzz) fuzz=1 ;;
		valgrind) valgrind=1 ;;
		sanitize) san_suites=(unit pg fault) ;;
		*) main_suites+=("$s") ;;
		esac
	done
fi
if [ $bench = 1 ]; then
	san_suites=()
	valgrind=0
	fuzz=0
fi
abs() {
	case $1 in
	/*) printf '%s\n' "$1" ;;
	*) printf '%s\n' "$DIS_ROOT/$1" ;;
	esac
}

build=$(abs "${DIS_BUILD_DIR:-build}")
setup=(-Dwerror=true)
if [ $asan = 1 ]; then
	build=$(abs "${DIS_BUILD_DIR:-build-asan}")
	setup+=(-Db_sanitize=address,undefined -Db_lundef=false)
fi
if [ $asan = 1 ] || [ $fuzz = 1 ] || [ ${#san_suites[@]} -gt 0 ]; then
	export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:print_summary=1}
	export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
fi
# CI never skips a test for want of a database.
if [ "${CI-}" = true ]; then
	unset DIS_TEST_ALLOW_SKIP
fi

passed=0
failed=0
skipped=0
status=0

# run_tests BUILD NAME [meson test args]: runs the tests, keeping meson's
# log of them as meson-logs/NAME.json (so runs in one build directory do
# not clash; with --wrapper W meson names it NAME-W.json), and adds up the
# outcomes.
run_tests() {
	local dir=$1 name=$2 rc=0 log

	shift 2
	rm -f "$dir/meson-logs/$name.json" "$dir/meson-logs/$name"-*.json
	dis_log "meson test -C $dir $*"
	meson test -C "$dir" --print-errorlogs --logbase "$name" "$@" || rc=$?
	log=$dir/meson-logs/$name.json
	if [ ! -f "$log" ]; then
		for log in "$dir/meson-logs/$name"-*.json; do
			break
		done
	fi
	count_tests "$log" "$rc"
}

# count_tests TESTLOG STATUS: adds the outcomes of a meson test run.
count_tests() {
	local counts p f s

	counts=$(python3 - "$1" <<-'EOF'
	import json, sys
	ok = fail = skip = 0
	try:
	    with open(sys.argv[1]) as f:
	        for line in f:
	            if not line.strip():
	                continue
	            r = json.loads(line).get("result", "")
	            if r in ("OK", "EXPECTEDFAIL"):
	                ok += 1
	            elif r == "SKIP":
	                skip += 1
	            else:
	                fail += 1
	except FileNotFoundError:
	    pass
	print(ok, fail, skip)
	EOF
	) || counts="0 0 0"
	read -r p f s <<<"$counts"
	# A failed run that logged no failure (no log, a crash) counts as one.
	if [ "$2" != 0 ] && [ "$f" = 0 ]; then
		f=1
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + s))
	if [ "$2" != 0 ]; then
		dis_log "meson test exited with status $2 ($1)"
		status=1
	fi
}

# Each test uses a database of its own; fault tests restart the server, so
# they run last and alone. The builds' runs go one after the other: they share one cluster, and the read
# barrier is cluster wide, so a slow run (valgrind) holding transactions
# open would hold back the listeners of the others.
without_fault() {
	local s

	for s in "$@"; do
		[ "$s" = fault ] || printf '%s\n' "$s"
	done
}

dis_install_deps

fuzzdir=$(abs "${DIS_FUZZ_BUILD_DIR:-build-fuzz}")
ntargets=$(grep -c "^ *\['" "$DIS_ROOT/tests/fuzz/meson.build" || :)
seconds=$((FUZZ_BUDGET / (ntargets > 0 ? ntargets : 1)))
[ $seconds -gt 0 ] || seconds=1

if [ ${#main_suites[@]} -gt 0 ] || [ $bench = 1 ] || [ $valgrind = 1 ]; then
	# gcc unless CC says otherwise: on a system with clang alone, cc is
	# clang (see DIS_DEB_PACKAGES).
	CC=${CC:-gcc} dis_build "$build" "${setup[@]}"
fi
if [ ${#san_suites[@]} -gt 0 ] || [ $fuzz = 1 ]; then
	# libFuzzer needs clang; -Dfuzz=true instruments the whole library.
	CC=clang dis_build "$fuzzdir" -Dfuzz=true -Dfuzz_seconds=$seconds \
		-Db_sanitize=address,undefined -Db_lundef=false
fi

if [ ${#main_suites[@]} -gt 0 ] || [ $bench = 1 ] ||
	[ ${#san_suites[@]} -gt 0 ] || [ $valgrind = 1 ]; then
	dis_pg_trap
	DIS_PG_LOG_COPY=$build/meson-logs/postgresql.log
	dis_pg_start
	if [ $bench = 1 ]; then
		run_tests "$build" testlog --benchmark --verbose "${extra[@]}"
	else
		mapfile -t main_now < <(without_fault "${main_suites[@]}")
		mapfile -t san_now < <(without_fault "${san_suites[@]}")
		if [ ${#main_now[@]} -gt 0 ]; then
			args=()
			for s in "${main_now[@]}"; do
				args+=(--suite "$s")
			done
			# Sanitized code runs a few times slower.
			[ $asan = 0 ] || args+=(--timeout-multiplier 3)
			run_tests "$build" testlog "${args[@]}" "${extra[@]}"
		fi
		if [ ${#san_now[@]} -gt 0 ]; then
			args=()
			for s in "${san_now[@]}"; do
				args+=(--suite "$s")
			done
			run_tests "$fuzzdir" testlog-sanitize "${args[@]}" \
				--timeout-multiplier 3 "${extra[@]}"
		fi
		if [ $valgrind = 1 ]; then
			run_tests "$build" testlog-valgrind --suite pg \
				--wrapper "${VALGRIND[*]}" --timeout-multiplier 10 \
				"${VALGRIND_TESTS[@]}"
		fi
		for s in "${main_suites[@]}"; do
			[ "$s" = fault ] || continue
			args=(--suite fault)
			[ $asan = 0 ] || args+=(--timeout-multiplier 3)
			run_tests "$build" testlog-fault "${args[@]}" "${extra[@]}"
		done
		for s in "${san_suites[@]}"; do
			[ "$s" = fault ] || continue
			run_tests "$fuzzdir" testlog-sanitize-fault --suite fault \
				--timeout-multiplier 3 "${extra[@]}"
		done
	fi
	dis_pg_stop
fi

if [ $fuzz = 1 ]; then
	run_tests "$fuzzdir" testlog-fuzz --suite fuzz "${extra[@]}"
fi

if [ $status = 0 ] && [ $bench = 0 ] &&
	[ $((passed + failed + skipped)) = 0 ]; then
	dis_log "no test ran"
	status=1
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ $status = 0 ] && [ $failed = 0 ]
