#!/usr/bin/env bash
#
# The benchmark command (not part of the test pass/fail): builds, starts a
# throwaway PostgreSQL cluster (unless PGHOST, PGDATABASE or DIS_TEST_DB name
# a database), runs every figure of issue 6 next to its raw-PostgreSQL
# baseline measured in the same run, prints the results and a summary table,
# and deletes the cluster. Takes about 3 minutes (at most 5).
#
#   tests/bench/run.sh              everything
#   tests/bench/run.sh --quick      shorter slices and 200k events (~1 min)
#   tests/bench/run.sh --slice S --rounds R     bench-decision's slicing
#
# Every figure also comes as one line
#   bench=NAME value=V unit=U baseline=B ratio=R
# (ratio = value / baseline). The full output is kept in
# $BUILD/meson-logs/bench.txt. DIS_BUILD_DIR overrides the build directory
# (default build/).
#
# The machine's conditions (cores, load, disk flush speed) move these
# figures a lot: the header prints them, and raw and library figures are
# measured interleaved so that a change of conditions hits both.

set -euo pipefail

# shellcheck source=tests/pgenv.sh
. "$(dirname "${BASH_SOURCE[0]}")/../pgenv.sh"

slice=1.5
rounds=3
events=1000000
latency_events=5000
while [ $# -gt 0 ]; do
	case $1 in
	--quick)
		slice=0.7
		rounds=2
		events=200000
		latency_events=2500
		;;
	--slice)
		[ $# -ge 2 ] || dis_die "--slice needs seconds"
		slice=$2
		shift
		;;
	--rounds)
		[ $# -ge 2 ] || dis_die "--rounds needs a number"
		rounds=$2
		shift
		;;
	--events)
		[ $# -ge 2 ] || dis_die "--events needs a number"
		events=$2
		shift
		;;
	-h | --help)
		sed -n '3,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
		exit 0
		;;
	*) dis_die "unknown argument: $1 (see --help)" ;;
	esac
	shift
done

case ${DIS_BUILD_DIR:-build} in
/*) build=${DIS_BUILD_DIR:-build} ;;
*) build=$DIS_ROOT/${DIS_BUILD_DIR:-build} ;;
esac

dis_install_deps
# Only what the benchmarks need (tests/run.sh and CI build everything).
cd "$DIS_ROOT" || dis_die "cannot enter $DIS_ROOT"
if [ -f "$build/meson-private/coredata.dat" ]; then
	meson configure "$build" -Dwerror=true >/dev/null ||
		meson setup --wipe "$build" -Dwerror=true ||
		dis_die "meson setup failed"
else
	meson setup "$build" -Dwerror=true || dis_die "meson setup failed"
fi
meson compile -C "$build" tests/bench/bench-decision \
	tests/bench/bench-listener || dis_die "build failed in $build"
dis_pg_trap
DIS_PG_LOG_COPY=$build/meson-logs/postgresql-bench.log
dis_pg_start

out=$build/meson-logs/bench.txt
mkdir -p "$(dirname "$out")"
: >"$out"
start=$(date +%s)

psql_bin=psql
if [ -n "${DIS_PG_BINDIR-}" ] && [ -x "$DIS_PG_BINDIR/psql" ]; then
	psql_bin=$DIS_PG_BINDIR/psql
fi

# conditions: what moves the figures
{
	echo "conditions:"
	echo "  date          $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "  cpu           $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //')"
	echo "  load average  $(cut -d' ' -f1-3 /proc/loadavg) (before)"
	echo "  server        $("$psql_bin" -XAtc 'SHOW server_version' 2>/dev/null || echo '?')," \
		"synchronous_commit=$("$psql_bin" -XAtc 'SHOW synchronous_commit' 2>/dev/null || echo '?')," \
		"fsync=$("$psql_bin" -XAtc 'SHOW fsync' 2>/dev/null || echo '?')"
	echo "  build         $build ($(meson introspect --buildoptions "$build" 2>/dev/null |
		python3 -c 'import json,sys; print(next((o["value"] for o in json.load(sys.stdin) if o["name"]=="buildtype"), "?"))' 2>/dev/null || echo '?'))"
	echo
} | tee -a "$out"

run() {
	dis_log "$*"
	"$@" 2>&1 | tee -a "$out"
}

run "$build/tests/bench/bench-decision" --slice "$slice" --rounds "$rounds"
echo | tee -a "$out"
run "$build/tests/bench/bench-listener" latency "$latency_events" 500
echo | tee -a "$out"
# Without the variant whose handler blocks on one round trip per event
# (minutes over 1M events; run bench-listener directly for it).
export DIS_BENCH_SKIP_PQEXEC=1
run "$build/tests/bench/bench-listener" catchup "$events"

end=$(date +%s)
{
	echo
	echo "  load average  $(cut -d' ' -f1-3 /proc/loadavg) (after)"
	echo "  elapsed       $((end - start)) s"
	echo
} | tee -a "$out"

# The summary: every figure with its baseline and the goal of issue 6.
python3 - "$out" <<-'EOF' | tee -a "$out"
import re, sys

goals = {
    "append_checked_1c": ("ratio", ">=", 0.90),
    "append_checked_4c": ("ratio", ">=", 0.90),
    "append_checked_16c": ("ratio", ">=", 0.90),
    "decision_sync_1c": ("ratio", ">=", 0.70),
    "decision_sync_4c": ("ratio", ">=", 0.70),
    "decision_sync_16c": ("ratio", ">=", 0.70),
    "spurious_conflicts_1c": ("value", "==", 0),
    "spurious_conflicts_4c": ("value", "==", 0),
    "spurious_conflicts_16c": ("value", "==", 0),
    "decision_async_64": ("ratio", ">", 1.0),
    "listener_catchup_noop": ("ratio", ">=", 0.70),
    "listener_catchup_noop_first": ("ratio", ">=", 0.70),
    "listener_catchup_projection": ("value", ">=", 25000),
    "listener_latency_p99": ("value", "<=", 2.0),
    "listener_rss_end_vs_100k": ("ratio", "<=", 1.10),
}
rows = []
for line in open(sys.argv[1]):
    m = re.match(r"bench=(\S+) value=(\S+) unit=(\S+) baseline=(\S+) ratio=(\S+)", line)
    if m:
        rows.append((m.group(1), float(m.group(2)), m.group(3),
                     float(m.group(4)), float(m.group(5))))
print("summary (goal: issue 6)")
print("  %-36s %14s %-12s %14s %7s  %-14s %s" %
      ("figure", "value", "unit", "baseline", "ratio", "goal", ""))
for name, value, unit, base, ratio in rows:
    goal, verdict = "", ""
    if name in goals:
        what, op, want = goals[name]
        x = ratio if what == "ratio" else value
        ok = {">=": x >= want, ">": x > want, "<=": x <= want,
              "==": x == want}[op]
        goal = "%s %s %g" % (what, op, want)
        verdict = "met" if ok else "MISSED"
    print("  %-36s %14.3f %-12s %14.3f %7.3f  %-14s %s" %
          (name, value, unit, base, ratio, goal, verdict))
EOF
