#!/usr/bin/env bash
#
# The test command: installs missing Debian packages, builds with -Werror,
# starts a throwaway PostgreSQL cluster (unless PGHOST, PGDATABASE or
# DIS_TEST_DB name a database), runs the test suites and deletes the cluster,
# also on failure or Ctrl-C.
#
#   tests/run.sh                  suites unit, pg and fault in build/, then
#                                 a short fuzz run in build-fuzz/ (clang)
#   tests/run.sh --asan           unit, pg and fault under ASan+UBSan in
#                                 build-asan/
#   tests/run.sh --suite pg       only that suite (repeatable; fuzz too)
#   tests/run.sh --bench          the benchmarks instead (not pass/fail)
#   tests/run.sh -- ARGS          ARGS go to `meson test` (test names, ...)
#
# Arguments it does not know go to `meson test` as well. It ends with a line
# "N passed, N failed, N skipped" and exits non-zero when anything failed.
# DIS_BUILD_DIR overrides the build directory (relative to the repository).

set -euo pipefail

# shellcheck source=tests/pgenv.sh
. "$(dirname "${BASH_SOURCE[0]}")/pgenv.sh"

usage() {
	sed -n '3,18s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

# Seconds of fuzzing in all, shared by the fuzz targets, in a default run.
FUZZ_BUDGET=60

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

# Which suites run where: fuzz in its own clang build, the rest in the main
# build. A default run adds the fuzz smoke run once there are fuzz targets.
main_suites=()
fuzz=0
if [ ${#suites[@]} -eq 0 ]; then
	main_suites=(unit pg fault)
	if [ $asan = 0 ] && [ $bench = 0 ] && [ ${#extra[@]} -eq 0 ] &&
		grep -q "^ *\['" "$DIS_ROOT/tests/fuzz/meson.build"; then
		fuzz=1
	fi
else
	for s in "${suites[@]}"; do
		if [ "$s" = fuzz ]; then
			fuzz=1
		else
			main_suites+=("$s")
		fi
	done
fi
if [ $bench = 1 ]; then
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
if [ $asan = 1 ] || [ $fuzz = 1 ]; then
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

# run_tests BUILD [meson test args]: runs and adds up the outcomes.
run_tests() {
	local dir=$1 testlog counts p f s rc=0

	shift
	testlog=$dir/meson-logs/testlog.json
	rm -f "$testlog"
	dis_log "meson test -C $dir $*"
	meson test -C "$dir" --print-errorlogs "$@" || rc=$?
	counts=$(python3 - "$testlog" <<-'EOF'
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
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + s))
	if [ "$rc" != 0 ]; then
		dis_log "meson test exited with status $rc"
		status=1
	fi
}

dis_install_deps

if [ ${#main_suites[@]} -gt 0 ] || [ $bench = 1 ]; then
	dis_build "$build" "${setup[@]}"
	dis_pg_trap
	DIS_PG_LOG_COPY=$build/meson-logs/postgresql.log
	dis_pg_start
	if [ $bench = 1 ]; then
		run_tests "$build" --benchmark --verbose "${extra[@]}"
	else
		args=()
		for s in "${main_suites[@]}"; do
			args+=(--suite "$s")
		done
		# Sanitized code runs a few times slower.
		[ $asan = 0 ] || args+=(--timeout-multiplier 3)
		run_tests "$build" "${args[@]}" "${extra[@]}"
	fi
	dis_pg_stop
fi

if [ $fuzz = 1 ]; then
	# libFuzzer needs clang; -Dfuzz=true instruments the whole library.
	ntargets=$(grep -c "^ *\['" "$DIS_ROOT/tests/fuzz/meson.build" || :)
	seconds=$((FUZZ_BUDGET / (ntargets > 0 ? ntargets : 1)))
	[ $seconds -gt 0 ] || seconds=1
	fuzzdir=$(abs "${DIS_FUZZ_BUILD_DIR:-build-fuzz}")
	CC=clang dis_build "$fuzzdir" -Dfuzz=true -Dfuzz_seconds=$seconds \
		-Db_sanitize=address,undefined -Db_lundef=false
	run_tests "$fuzzdir" --suite fuzz "${extra[@]}"
fi

if [ $status = 0 ] && [ $bench = 0 ] &&
	[ $((passed + failed + skipped)) = 0 ]; then
	dis_log "no test ran"
	status=1
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ $status = 0 ] && [ $failed = 0 ]
