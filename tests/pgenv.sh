# shellcheck shell=bash
#
# Shared set-up for tests/run.sh, examples/demo.sh and the benchmark command.
# Source it from bash; it defines functions and changes nothing by itself.
#
#   dis_install_deps [PKG...]   install missing Debian packages (apt-get)
#   dis_build DIR [-Dopt=v...]  configure DIR (once) and build it
#   dis_pg_trap                 stop the cluster on EXIT, INT and TERM
#   dis_pg_start                use the caller's database, or start a
#                               throwaway PostgreSQL cluster; exports PG*
#   dis_pg_stop                 stop and delete the throwaway cluster
#
# A database given by the caller (PGHOST, PGDATABASE or DIS_TEST_DB set) is
# used as is. Otherwise dis_pg_start creates a cluster in a temporary
# directory, reachable only through a unix socket in that directory, trust
# authentication (but members of role dis_password_login must give their
# password, over SCRAM), superuser "postgres", and exports
#   PGHOST PGPORT PGUSER PGDATABASE  for libpq,
#   DIS_PGDATA DIS_PG_BINDIR DIS_PG_OWNER DIS_PG_LOG  for tests that stop or
#   restart the server (DIS_PG_OWNER: user to run pg_ctl as, "" = ourselves).

DIS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# gcc builds build/ (and valgrind reads its DWARF); clang the fuzz build.
DIS_DEB_PACKAGES=(meson ninja-build pkg-config gcc libc6-dev libpq-dev
	libevent-dev libavro-dev libcmocka-dev libjansson-dev postgresql
	clang libclang-rt-14-dev valgrind)

DIS_PG_TMP=
DIS_PG_LOG_COPY=

dis_log() {
	printf '==> %s\n' "$*" >&2
}

dis_die() {
	printf '%s: error: %s\n' "${0##*/}" "$*" >&2
	exit 1
}

dis_as_root() {
	if [ "$(id -u)" = 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		dis_die "not root and no sudo: cannot run $*"
	fi
}

# Installs the packages of DIS_DEB_PACKAGES (and any given) that are missing.
dis_install_deps() {
	local p missing=()

	if ! command -v dpkg-query >/dev/null 2>&1; then
		dis_log "not a Debian system: install ${DIS_DEB_PACKAGES[*]} yourself"
		return 0
	fi
	for p in "${DIS_DEB_PACKAGES[@]}" "$@"; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
			grep -q ' ok installed$'; then
			missing+=("$p")
		fi
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	dis_log "installing missing packages: ${missing[*]}"
	dis_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q ||
		dis_die "apt-get update failed"
	dis_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends "${missing[@]}" </dev/null ||
		dis_die "apt-get install ${missing[*]} failed"
}

# dis_build DIR [meson options]: sets DIR up with the options (or applies
# them to an existing build directory) and builds everything.
dis_build() {
	local dir=$1

	shift
	cd "$DIS_ROOT" || dis_die "cannot enter $DIS_ROOT"
	if [ -f "$dir/meson-private/coredata.dat" ]; then
		if ! meson configure "$dir" "$@" >/dev/null; then
			dis_log "reconfiguring $dir from scratch"
			meson setup --wipe "$dir" "$@" || dis_die "meson setup failed"
		fi
	else
		meson setup "$dir" "$@" || dis_die "meson setup failed"
	fi
	meson compile -C "$dir" || dis_die "build failed in $dir"
}

# The PostgreSQL server binaries (initdb, pg_ctl).
dis_pg_bindir() {
	local d

	for d in "$(pg_config --bindir 2>/dev/null)" /usr/lib/postgresql/15/bin; do
		if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
			printf '%s\n' "$d"
			return 0
		fi
	done
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	if [ -n "$d" ] && [ -x "$d/initdb" ]; then
		printf '%s\n' "$d"
		return 0
	fi
	return 1
}

# Runs a command as the cluster's owner, inside the cluster directory.
dis_pg_as_owner() {
	if [ -z "${DIS_PG_OWNER-}" ]; then
		(cd "$DIS_PG_TMP" && "$@")
	elif command -v runuser >/dev/null 2>&1; then
		(cd "$DIS_PG_TMP" && runuser -u "$DIS_PG_OWNER" -- "$@")
	else
		(cd "$DIS_PG_TMP" &&
			su -s /bin/bash "$DIS_PG_OWNER" -c "$(printf '%q ' "$@")")
	fi
}

dis_pg_trap() {
	trap dis_pg_stop EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

dis_pg_start() {
	local port=5432

	if [ -n "${PGHOST-}${PGDATABASE-}${DIS_TEST_DB-}" ]; then
		dis_log "using the database from the environment" \
			"(PGHOST=${PGHOST-} PGDATABASE=${PGDATABASE-}" \
			"DIS_TEST_DB ${DIS_TEST_DB:+set}${DIS_TEST_DB:-unset})"
		return 0
	fi
	DIS_PG_BINDIR=$(dis_pg_bindir) ||
		dis_die "PostgreSQL server binaries not found (install postgresql)"
	DIS_PG_OWNER=
	if [ "$(id -u)" = 0 ]; then
		id postgres >/dev/null 2>&1 ||
			dis_die "running as root needs a 'postgres' user to run the server"
		DIS_PG_OWNER=postgres
	fi
	DIS_PG_TMP=$(mktemp -d "${TMPDIR:-/tmp}/dis-pg.XXXXXX") ||
		dis_die "mktemp failed"
	chmod 755 "$DIS_PG_TMP"
	if [ -n "$DIS_PG_OWNER" ]; then
		chown "$DIS_PG_OWNER:" "$DIS_PG_TMP" || dis_die "chown failed"
	fi
	DIS_PGDATA=$DIS_PG_TMP/data
	DIS_PG_LOG=$DIS_PG_TMP/server.log

	dis_log "starting a throwaway PostgreSQL cluster in $DIS_PG_TMP"
	if ! dis_pg_as_owner "$DIS_PG_BINDIR/initdb" -D "$DIS_PGDATA" \
		-U postgres --auth=trust --encoding=UTF8 --locale=C \
		--no-sync >"$DIS_PG_TMP/initdb.log" 2>&1; then
		cat "$DIS_PG_TMP/initdb.log" >&2
		dis_die "initdb failed"
	fi
	# Members of role dis_password_login must give their password (over
	# SCRAM; tests/pg/test_secrets.c); every other role is trusted.
	dis_pg_as_owner sh -c '{ echo "local all +dis_password_login scram-sha-256";
		cat "$1"; } >"$1.new" && mv "$1.new" "$1"' sh \
		"$DIS_PGDATA/pg_hba.conf" || dis_die "cannot edit pg_hba.conf"
	cat >>"$DIS_PGDATA/postgresql.conf" <<-EOF

	# throwaway test cluster (tests/pgenv.sh)
	listen_addresses = ''
	unix_socket_directories = '$DIS_PG_TMP'
	port = $port
	max_connections = 200
	EOF
	if ! dis_pg_as_owner "$DIS_PG_BINDIR/pg_ctl" -D "$DIS_PGDATA" \
		-l "$DIS_PG_LOG" -w -t 60 start >/dev/null; then
		cat "$DIS_PG_LOG" >&2
		dis_die "the PostgreSQL server did not start"
	fi

	unset PGHOSTADDR PGSERVICE PGSERVICEFILE PGPASSWORD PGPASSFILE \
		PGOPTIONS PGSSLMODE
	export PGHOST=$DIS_PG_TMP PGPORT=$port PGUSER=postgres
	export PGDATABASE=postgres
	export DIS_PGDATA DIS_PG_BINDIR DIS_PG_OWNER DIS_PG_LOG
}

# Stops the throwaway cluster (if any) and deletes it. Safe to call twice.
dis_pg_stop() {
	local pid

	[ -n "${DIS_PG_TMP-}" ] || return 0
	if [ -f "$DIS_PGDATA/postmaster.pid" ]; then
		if ! dis_pg_as_owner "$DIS_PG_BINDIR/pg_ctl" -D "$DIS_PGDATA" \
			-m immediate -w -t 30 stop >/dev/null 2>&1; then
			pid=$(head -n 1 "$DIS_PGDATA/postmaster.pid" 2>/dev/null)
			[ -z "$pid" ] || kill -9 "$pid" 2>/dev/null || :
		fi
	fi
	if [ -n "$DIS_PG_LOG_COPY" ] && [ -f "$DIS_PG_LOG" ]; then
		cp "$DIS_PG_LOG" "$DIS_PG_LOG_COPY" 2>/dev/null || :
	fi
	rm -rf "$DIS_PG_TMP" || :
	DIS_PG_TMP=
}
