#!/usr/bin/env bash
#
# The test command: installs missing Debian packages, builds with -Werror,
# starts a throwaway PostgreSQL cluster (unless PGHOST, PGDATABASE or
# DIS_TEST_DB name a database), runs the test suites and deletes the cluster,
# also on failure or Ctrl-C.
#
#   tests/run.sh                  suites unit, pg and fault in build/
#   tests/run.sh --asan           the same under ASan+UBSan in build-asan/
#   tests/run.sh --suite pg       only that suite (repeatable)
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
	sed -n '3,16s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

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
[ ${#suites[@]} -gt 0 ] || suites=(unit pg fault)

build=${DIS_BUILD_DIR:-build}
setup=(-Dwerror=true)
if [ $asan = 1 ]; then
	build=${DIS_BUILD_DIR:-build-asan}
	setup+=(-Db_sanitize=address,undefined -Db_lundef=false)
	export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:print_summary=1}
	export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
fi
# CI never skips a test for want of a database.
if [ "${CI-}" = true ]; then
	unset DIS_TEST_ALLOW_SKIP
fi

case $build in
/*) ;;
*) build=$DIS_ROOT/$build ;;
esac

dis_install_deps
dis_build "$build" "${setup[@]}"

dis_pg_trap
DIS_PG_LOG_COPY=$build/meson-logs/postgresql.log
dis_pg_start

# meson writes one JSON line per test here (benchmarks too).
testlog=$build/meson-logs/testlog.json
args=(-C "$build" --print-errorlogs)
if [ $bench = 1 ]; then
	args+=(--benchmark --verbose)
else
	for s in "${suites[@]}"; do
		args+=(--suite "$s")
	done
fi
rm -f "$testlog"
dis_log "meson test ${args[*]} ${extra[*]-}"
rc=0
meson test "${args[@]}" "${extra[@]}" || rc=$?

counts=$(python3 - "$testlog" <<'EOF'
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
read -r passed failed skipped <<<"$counts"
if [ "$rc" != 0 ]; then
	dis_log "meson test exited with status $rc"
elif [ $bench = 0 ] && [ $((passed + failed + skipped)) = 0 ]; then
	dis_log "no test ran (suites: ${suites[*]})"
	rc=1
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$rc" = 0 ] && [ "$failed" = 0 ]
