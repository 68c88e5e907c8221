#!/usr/bin/env bash
#
# The demo command: installs missing Debian packages, builds, starts a
# throwaway PostgreSQL cluster (unless PGHOST, PGDATABASE or DIS_TEST_DB
# name a database) and runs the demo program against it (through the PG*
# environment). Arguments go to the demo program. The cluster is deleted
# when the demo ends, also on failure or Ctrl-C.
#
# DIS_BUILD_DIR overrides the build directory (default build/); DIS_DEMO
# names another program of the build directory to run.

set -euo pipefail

# The demo program, relative to the build directory.
DEMO=${DIS_DEMO:-examples/courses/courses_demo}

# shellcheck source=tests/pgenv.sh
. "$(dirname "${BASH_SOURCE[0]}")/../tests/pgenv.sh"

build=${DIS_BUILD_DIR:-build}
case $build in
/*) ;;
*) build=$DIS_ROOT/$build ;;
esac

dis_install_deps
dis_build "$build"
if [ ! -x "$build/$DEMO" ]; then
	dis_die "the demo program $build/$DEMO was not built (is it in examples/meson.build?)"
fi

dis_pg_trap
dis_pg_start
dis_log "running $DEMO"
rc=0
"$build/$DEMO" "$@" || rc=$?
exit $rc
