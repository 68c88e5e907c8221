#!/usr/bin/env bash
#
# The demo command: installs missing Debian packages, builds, starts a
# throwaway PostgreSQL cluster (unless PGHOST, PGDATABASE or DIS_TEST_DB
# name a database) and runs the demo program against it (through the PG*
# environment). Arguments go to the demo program. The cluster is deleted
# when the demo ends, also on failure or Ctrl-C.

set -euo pipefail

# The demo program, relative to the repository (or absolute).
DEMO=${DIS_DEMO:-build/examples/banking/banking_demo}

# shellcheck source=tests/pgenv.sh
. "$(dirname "${BASH_SOURCE[0]}")/../tests/pgenv.sh"

case $DEMO in
/*) demo_bin=$DEMO ;;
*) demo_bin=$DIS_ROOT/$DEMO ;;
esac

dis_install_deps
dis_build "$DIS_ROOT/build"
if [ ! -x "$demo_bin" ]; then
	dis_die "the demo program $DEMO was not built (is it in examples/meson.build?)"
fi

dis_pg_trap
dis_pg_start
dis_log "running $DEMO"
rc=0
"$demo_bin" "$@" || rc=$?
exit $rc
