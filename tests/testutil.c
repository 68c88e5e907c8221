/* Test helpers: a fresh database per test, and calls that fail the test. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DT_MAX_DBS 64
#define DT_NAME_LEN 64

static char dt_dbs[DT_MAX_DBS][DT_NAME_LEN];
static int dt_ndbs;
static pid_t dt_owner_pid;
static unsigned dt_counter;

/* The conninfo of the server's maintenance database. */
static const char *admin_conninfo(void)
{
	const char *s = getenv("DIS_TEST_DB");

	return s && *s ? s : "";
}

/*
 * Connects to the maintenance database. Without DIS_TEST_DB or PGDATABASE,
 * libpq would pick a database named after the user, which may not exist:
 * fall back to "postgres".
 */
static PGconn *admin_connect(void)
{
	PGconn *c = PQconnectdb(admin_conninfo());
	const char *db = getenv("PGDATABASE");

	if (PQstatus(c) == CONNECTION_OK)
		return c;
	if (!*admin_conninfo() && !(db && *db)) {
		PQfinish(c);
		c = PQconnectdb("dbname=postgres");
	}
	return c;
}

static int env_is(const char *name, const char *value)
{
	const char *s = getenv(name);

	return s && strcmp(s, value) == 0;
}

void dt_require_pg(void)
{
	static int checked;
	PGconn *c;

	if (checked)
		return;
	c = admin_connect();
	if (PQstatus(c) == CONNECTION_OK) {
		PQfinish(c);
		checked = 1;
		return;
	}
	if (env_is("DIS_TEST_ALLOW_SKIP", "1")) {
		fprintf(stderr, "skipped: no PostgreSQL reachable: %s",
			PQerrorMessage(c));
		PQfinish(c);
		exit(77);
	}
	fprintf(stderr,
		"error: this test needs PostgreSQL and none is reachable: %s"
		"Run the tests with tests/run.sh (it starts a throwaway "
		"cluster), or point PGHOST/PGPORT/PGUSER/PGDATABASE or "
		"DIS_TEST_DB at a server, or set DIS_TEST_ALLOW_SKIP=1 to "
		"skip.\n",
		PQerrorMessage(c));
	PQfinish(c);
	exit(1);
}

static void drop_dbs(void)
{
	PGconn *c;
	char sql[DT_NAME_LEN + 64];

	if (getpid() != dt_owner_pid || dt_ndbs == 0 ||
	    env_is("DIS_TEST_KEEP_DB", "1"))
		return;
	c = admin_connect();
	if (PQstatus(c) == CONNECTION_OK) {
		for (int i = 0; i < dt_ndbs; i++) {
			snprintf(sql, sizeof(sql),
				 "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)",
				 dt_dbs[i]);
			PQclear(PQexec(c, sql));
		}
	}
	PQfinish(c);
	dt_ndbs = 0;
}

static uint32_t random32(void)
{
	uint32_t r;
	struct timespec ts;

	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) == (ssize_t)sizeof(r))
		return r;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint32_t)ts.tv_nsec ^ ((uint32_t)getpid() << 16);
}

/* Appends `key='value'` with libpq's quoting to buf. */
static void append_kv(char *buf, size_t len, const char *key, const char *val)
{
	size_t n = strlen(buf);

	n += (size_t)snprintf(buf + n, n < len ? len - n : 0, "%s%s='",
			      n ? " " : "", key);
	for (; *val && n + 3 < len; val++) {
		if (*val == '\'' || *val == '\\')
			buf[n++] = '\\';
		buf[n++] = *val;
	}
	if (n + 2 <= len) {
		buf[n++] = '\'';
		buf[n] = '\0';
	}
}

/*
 * Conninfo for database `name` on the admin server. With the PG*
 * environment a plain "dbname=..." is enough; with DIS_TEST_DB (maybe a
 * URI), repeat the options the admin connection used, except its dbname.
 */
static char *conninfo_for(PGconn *admin, const char *name)
{
	PQconninfoOption *opts;
	char *buf;
	size_t len = 4096;

	buf = calloc(1, len);
	if (!buf)
		fail_msg("out of memory");
	if (*admin_conninfo()) {
		opts = PQconninfo(admin);
		for (PQconninfoOption *o = opts; o && o->keyword; o++) {
			if (!o->val || !*o->val ||
			    !strcmp(o->keyword, "dbname"))
				continue;
			append_kv(buf, len, o->keyword, o->val);
		}
		PQconninfoFree(opts);
	}
	append_kv(buf, len, "dbname", name);
	return buf;
}

char *dt_fresh_db(void)
{
	char name[DT_NAME_LEN];
	char sql[DT_NAME_LEN + 32];
	PGconn *c;
	PGresult *r;
	char *info;

	dt_require_pg();
	/* A forked child neither inherits nor drops its parent's databases. */
	if (dt_owner_pid != getpid()) {
		if (!dt_owner_pid)
			atexit(drop_dbs);
		dt_owner_pid = getpid();
		dt_ndbs = 0;
	}
	if (dt_ndbs == DT_MAX_DBS)
		fail_msg("dt_fresh_db: more than %d databases in one test "
			 "program",
			 DT_MAX_DBS);
	snprintf(name, sizeof(name), "dis_test_%ld_%u_%08x", (long)getpid(),
		 dt_counter++, random32());
	c = admin_connect();
	if (PQstatus(c) != CONNECTION_OK) {
		fail_msg("dt_fresh_db: cannot connect: %s", PQerrorMessage(c));
	}
	snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\"", name);
	r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		fail_msg("dt_fresh_db: %s: %s", sql, PQresultErrorMessage(r));
	}
	PQclear(r);
	memcpy(dt_dbs[dt_ndbs++], name, sizeof(name));
	info = conninfo_for(c, name);
	PQfinish(c);
	return info;
}

PGconn *dt_connect(const char *conninfo)
{
	PGconn *c = PQconnectdb(conninfo ? conninfo : "");

	if (PQstatus(c) != CONNECTION_OK) {
		fail_msg("cannot connect: %s", PQerrorMessage(c));
	}
	return c;
}

void dt_exec(PGconn *conn, const char *sql)
{
	PGresult *r = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(r);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		fail_msg("SQL failed: %s\n  statement: %s",
			 r ? PQresultErrorMessage(r) : PQerrorMessage(conn),
			 sql);
	}
	PQclear(r);
}

char *dt_fmt(const char *f, ...)
{
	va_list ap;
	char *s;

	va_start(ap, f);
	if (vasprintf(&s, f, ap) < 0)
		fail_msg("out of memory");
	va_end(ap);
	return s;
}

void dt_random_hex(char *out, size_t bytes)
{
	unsigned char r[32];
	struct timespec ts;

	assert_true(bytes <= sizeof(r));
	if (getrandom(r, bytes, GRND_NONBLOCK) != (ssize_t)bytes) {
		clock_gettime(CLOCK_REALTIME, &ts);
		for (size_t i = 0; i < bytes; i++)
			r[i] = (unsigned char)(ts.tv_nsec >> (i % 4 * 8)) ^
			       (unsigned char)(getpid() + i);
	}
	for (size_t i = 0; i < bytes; i++)
		sprintf(out + 2 * i, "%02x", r[i]);
}

int dt_batch_run(dis_batch *b, const char *sql, int nparams,
		 const char *const *values)
{
	PGresult *r = PQexecParams(dis_batch_conn(b), sql, nparams, NULL,
				   values, NULL, NULL, 0);
	int rc = 0;

	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		rc = dis_batch_fail(b, DIS_EPG, "%s", PQresultErrorMessage(r));
	PQclear(r);
	return rc;
}

int dt_count_event(void *arg, const dis_event *ev)
{
	(void)ev;
	(*(int *)arg)++;
	return 0;
}

char *dt_scalar(PGconn *conn, const char *sql)
{
	PGresult *r = PQexec(conn, sql);
	char *v = NULL;

	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fail_msg("SQL failed: %s\n  statement: %s",
			 r ? PQresultErrorMessage(r) : PQerrorMessage(conn),
			 sql);
	}
	if (PQntuples(r) > 0 && PQnfields(r) > 0 && !PQgetisnull(r, 0, 0)) {
		v = strdup(PQgetvalue(r, 0, 0));
		if (!v)
			fail_msg("out of memory");
	}
	PQclear(r);
	return v;
}

dis_schema *dt_schema(const char *json)
{
	dis_schema *s = NULL;
	char err[512] = "";
	int rc = dis_schema_parse(json, &s, err, sizeof(err));

	if (rc != 0) {
		fail_msg("schema does not load: %s: %s", dis_strerror(rc), err);
	}
	return s;
}

dis_store *dt_store(const char *conninfo, const dis_schema *schema)
{
	dis_store *st = NULL;
	char err[512] = "";
	int rc = dis_store_open(conninfo, schema, &st, err, sizeof(err));

	if (rc != 0) {
		fail_msg("dis_store_open: %s: %s", dis_strerror(rc), err);
	}
	rc = dis_store_migrate(st);
	if (rc != 0) {
		fail_msg("dis_store_migrate: %s: %s", dis_strerror(rc),
			 dis_store_errmsg(st));
	}
	return st;
}

int dt_have_cluster(void)
{
	const char *d = getenv("DIS_PGDATA");
	const char *b = getenv("DIS_PG_BINDIR");

	return d && *d && b && *b;
}

int dt_pg_ctl(const char *args)
{
	const char *owner = getenv("DIS_PG_OWNER");
	const char *data = getenv("DIS_PGDATA");
	const char *log = getenv("DIS_PG_LOG");
	int as_owner = owner && *owner && geteuid() == 0;
	char cmd[4096];
	int st;

	if (!dt_have_cluster())
		fail_msg(
			"dt_pg_ctl needs the throwaway cluster of tests/run.sh "
			"(DIS_PGDATA and DIS_PG_BINDIR unset)");
	/* pg_ctl wants a working directory its user can read. */
	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && %s%s%s'%s/pg_ctl' -D '%s' -l '%s' %s >/dev/null",
		 data, as_owner ? "runuser -u '" : "", as_owner ? owner : "",
		 as_owner ? "' -- " : "", getenv("DIS_PG_BINDIR"), data,
		 log && *log ? log : "/dev/null", args);
	fflush(NULL);
	st = system(cmd);
	if (st == -1)
		fail_msg("dt_pg_ctl: %s", strerror(errno));
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
