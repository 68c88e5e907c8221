/*
 * Secrets: a password given in a connection string (or PGPASSWORD) never
 * appears in an error, a log line or disctl's output.
 *
 * A throwaway role that must give its password (a member of
 * dis_password_login, which the throwaway cluster's pg_hba.conf makes log
 * in over SCRAM; tests/pgenv.sh) connects with a wrong password, to a
 * database that does not exist, through malformed connection strings that
 * libpq quotes back, and with the right password to do something it has
 * no right to: through dis_store_open, the listener runtime and disctl.
 * argv[1] is the disctl binary.
 */
#include "testutil.h"
#include "core-internal.h"

#include <event2/event.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *SCHEMA =
	"[{\"type\":\"record\",\"name\":\"Deposited\",\"fields\":["
	" {\"name\":\"account_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"amount\",\"type\":\"long\"}]}]";

static const char *disctl;
static dis_schema *schema;
static char *db;            /* conninfo of the test database (superuser) */
static char dbname[64];
static char host[1024];
static char port[16];
static char role[64];
static char pw[64];         /* the role's password */
static char wrong[64];      /* a password it does not have */
static bool enforced;       /* does the server check passwords? */
static char tmpdir[] = "/tmp/dis-secrets.XXXXXX";
static char schema_path[sizeof(tmpdir) + 16];

/* ---- helpers ---- */

/* Fails the test when `text` holds either password. */
#define assert_no_secret(text, where) assert_no_secret_(text, where, __LINE__)
static void assert_no_secret_(const char *text, const char *where, int line)
{
	if (!text)
		return;
	if (strstr(text, pw) || strstr(text, wrong))
		fail_msg("line %d: %s shows a password:\n%s", line, where,
			 text);
}

/* "user='role' password='pw'" and the like, appended to the test db's. */
static char *with_login(const char *password)
{
	return dt_fmt("%s user='%s' password='%s'", db, role, password);
}

static void drop_role(void)
{
	PGconn *c;
	char sql[256];

	if (!role[0] || !db)
		return;
	c = PQconnectdb(db);
	if (PQstatus(c) == CONNECTION_OK) {
		snprintf(sql, sizeof(sql), "DROP OWNED BY \"%s\"", role);
		PQclear(PQexec(c, sql));
		snprintf(sql, sizeof(sql), "DROP ROLE IF EXISTS \"%s\"", role);
		PQclear(PQexec(c, sql));
	}
	PQfinish(c);
}

static int setup(void **state)
{
	PQconninfoOption *opts;
	PGconn *c, *probe;
	char hex[33], sql[512], *login;
	FILE *f;

	(void)state;
	db = dt_fresh_db();
	schema = dt_schema(SCHEMA);
	opts = PQconninfoParse(db, NULL);
	for (PQconninfoOption *o = opts; o && o->keyword; o++)
		if (!strcmp(o->keyword, "dbname") && o->val)
			snprintf(dbname, sizeof(dbname), "%s", o->val);
	PQconninfoFree(opts);

	c = dt_connect(db);
	snprintf(host, sizeof(host), "%s", PQhost(c));
	snprintf(port, sizeof(port), "%s", PQport(c));
	dt_random_hex(hex, 8);
	snprintf(role, sizeof(role), "dis_pw_%s", hex);
	dt_random_hex(hex, 12);
	snprintf(pw, sizeof(pw), "Pw%s", hex);
	dt_random_hex(hex, 12);
	snprintf(wrong, sizeof(wrong), "Wrong%s", hex);
	dt_exec(c, "DO $$ BEGIN CREATE ROLE dis_password_login NOLOGIN;"
		   " EXCEPTION WHEN duplicate_object OR unique_violation"
		   " THEN NULL; END $$");
	snprintf(sql, sizeof(sql),
		 "CREATE ROLE \"%s\" LOGIN PASSWORD '%s' "
		 "IN ROLE dis_password_login",
		 role, pw);
	dt_exec(c, sql);
	atexit(drop_role);
	/* The tables exist (owned by the superuser); the role has no
	 * rights on them. */
	dis_store_free(dt_store(db, schema));
	PQfinish(c);

	/* Does the server check this role's password? The throwaway
	 * cluster does; a server of the caller's may trust everyone. */
	login = with_login(wrong);
	probe = PQconnectdb(login);
	enforced = PQstatus(probe) != CONNECTION_OK;
	PQfinish(probe);
	free(login);
	if (!enforced && dt_have_cluster())
		fail_msg("the throwaway cluster does not ask role %s for its "
			 "password: is pg_hba.conf set up by tests/pgenv.sh?",
			 role);

	if (!mkdtemp(tmpdir))
		fail_msg("mkdtemp: %s", strerror(errno));
	snprintf(schema_path, sizeof(schema_path), "%s/s.avsc", tmpdir);
	f = fopen(schema_path, "w");
	assert_non_null(f);
	fputs(SCHEMA, f);
	fclose(f);
	return 0;
}

static int teardown(void **state)
{
	char path[sizeof(tmpdir) + 16];

	(void)state;
	unlink(schema_path);
	/* run_disctl's files */
	snprintf(path, sizeof(path), "%s/in", tmpdir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/out", tmpdir);
	unlink(path);
	rmdir(tmpdir);
	drop_role();
	role[0] = '\0';
	dis_schema_free(schema);
	free(db);
	db = NULL;
	return 0;
}

/* Opens a store that must fail; returns the code, its message in err. */
static int open_fails(const char *conninfo, char *err, size_t len)
{
	dis_store *st = NULL;
	int rc;

	err[0] = '\0';
	rc = dis_store_open(conninfo, schema, &st, err, len);
	if (rc == 0) {
		dis_store_free(st);
		fail_msg("connected with %s", conninfo);
	}
	assert_null(st);
	assert_true(err[0] != '\0');
	return rc;
}

/* ---- the store ---- */

static void test_store_wrong_password(void **state)
{
	char err[DIS_ERRMSG_LEN], *ci;
	int rc;

	(void)state;
	if (!enforced)
		skip();
	ci = with_login(wrong);
	rc = open_fails(ci, err, sizeof(err));
	assert_int_equal(rc, DIS_ECONN);
	assert_non_null(strstr(err, "password authentication failed"));
	assert_no_secret(err, "dis_store_open's error");
	free(ci);

	ci = dt_fmt("postgresql://%s:%s@/%s?host=%s&port=%s", role, wrong,
		    dbname, host, port);
	rc = open_fails(ci, err, sizeof(err));
	assert_int_equal(rc, DIS_ECONN);
	assert_non_null(strstr(err, "password authentication failed"));
	assert_no_secret(err, "dis_store_open's error (URI)");
	free(ci);
}

static void test_store_missing_database(void **state)
{
	char err[DIS_ERRMSG_LEN], *ci;
	int rc;

	(void)state;
	ci = dt_fmt("postgresql://%s:%s@/no_such_db_%s?host=%s&port=%s", role,
		    pw, role, host, port);
	rc = open_fails(ci, err, sizeof(err));
	assert_int_equal(rc, DIS_ECONN);
	assert_non_null(strstr(err, "does not exist"));
	assert_no_secret(err, "dis_store_open's error");
	free(ci);
}

/*
 * Connection strings libpq cannot use; several of its messages quote the
 * bad part, or the whole URI. %1$s is the role, %2$s the password.
 */
static const char *const MALFORMED[] = {
	"postgresql://%1$s:%2$s@[::1/db",
	"postgresql://%1$s:%2$s%%zz@localhost/db",
	"postgresql://%1$s:%2$s@/db?%2$s",
	"postgresql://%1$s:%2$s@/db?sslmode=%2$s",
	"postgresql://%1$s:%2$s@/db?x=1&%2$s=",
	"postgresql://%1$s:%2$s@host:%2$s/db",
	"postgres://%1$s:%2$s@/no_db_%2$s",
	"host=/nonexistent user=%1$s password=%2$s %2$s",
	"host=/nonexistent user=%1$s password='%2$s",
	"user=%1$s password=%2$s port=%2$s",
	"user=%1$s password=%2$s sslmode=%2$s",
	"user=%1$s password=%2$s host=/nonexistent/%2$s",
	"dbname='postgresql://%1$s:%2$s@[::1/db'",
	"user=%1$s password='%2$s' target_session_attrs=%2$s",
};
#define NMALFORMED (sizeof(MALFORMED) / sizeof(MALFORMED[0]))

static void test_store_malformed_conninfo(void **state)
{
	char err[DIS_ERRMSG_LEN], *ci;

	(void)state;
	for (size_t i = 0; i < NMALFORMED; i++) {
		ci = dt_fmt(MALFORMED[i], role, pw);
		open_fails(ci, err, sizeof(err));
		assert_no_secret(err, ci);
		free(ci);
	}
}

/* A password from PGPASSWORD is hidden as well. */
static void test_store_pgpassword(void **state)
{
	char err[DIS_ERRMSG_LEN], *ci;

	(void)state;
	setenv("PGPASSWORD", pw, 1);
	ci = dt_fmt("user=%s port=%s", role, pw);
	open_fails(ci, err, sizeof(err));
	assert_no_secret(err, "an error with PGPASSWORD set");
	free(ci);
	ci = dt_fmt("user=%s sslmode=%s", role, pw);
	open_fails(ci, err, sizeof(err));
	assert_no_secret(err, "an error with PGPASSWORD set");
	free(ci);
	unsetenv("PGPASSWORD");
}

typedef struct logbuf {
	dis__buf text;
	int lines;
} logbuf;

static void capture(void *arg, dis_log_level level, const char *msg)
{
	logbuf *l = arg;

	dis__buf_printf(&l->text, "[%d] %s\n", (int)level, msg);
	l->lines++;
}

/* Connected with the right password: errors and log lines of statements
 * the role has no right to run. */
static void test_store_errors_after_login(void **state)
{
	char err[DIS_ERRMSG_LEN] = "", *ci;
	dis_store *st = NULL;
	dis_query *q;
	dis_filter *f;
	dis_event *ev;
	logbuf log = {.lines = 0};
	int rc;

	(void)state;
	dis__buf_init(&log.text);
	ci = with_login(pw);
	rc = dis_store_open(ci, schema, &st, err, sizeof(err));
	if (rc)
		fail_msg("dis_store_open: %s", err);
	dis_store_set_log(st, capture, &log);

	rc = dis_store_migrate(st);
	assert_int_equal(rc, DIS_EPERM);
	assert_no_secret(dis_store_errmsg(st), "dis_store_errmsg");

	assert_int_equal(dis_query_new(schema, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_filter_type(f, "Deposited"), 0);
	rc = dis_store_load(st, q, NULL, NULL, NULL);
	assert_int_equal(rc, DIS_EPERM);
	assert_no_secret(dis_store_errmsg(st), "dis_store_errmsg");

	assert_int_equal(dis_event_new(schema, "Deposited", &ev), 0);
	assert_int_equal(dis_event_set_string(ev, "account_id", pw), 0);
	rc = dis_store_append(st, &ev, 1, NULL, NULL, NULL);
	assert_int_equal(rc, DIS_EPERM);
	/* (the event's own data may hold anything: not checked here) */
	dis_event_free(ev);

	assert_true(log.lines > 0);
	assert_no_secret(dis__buf_cstr(&log.text), "the store's log");
	dis_query_free(q);
	dis_store_free(st);
	dis__buf_free(&log.text);
	free(ci);
}

/* ---- the listener runtime ---- */

static int no_handler(void *arg, dis_batch *batch, const dis_event *ev)
{
	(void)arg;
	(void)batch;
	(void)ev;
	return 0;
}

/*
 * Runs a runtime on `conninfo` for `ms` milliseconds; checks its errors,
 * stats and log. Returns the log (free it with dis__buf_free).
 */
static void run_runtime(const char *conninfo, int ms, logbuf *log)
{
	struct event_base *base = event_base_new();
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	dis_runtime_options opts;
	dis_listener_stats *stats = NULL;
	char err[DIS_ERRMSG_LEN] = "";
	dis_runtime *rt = NULL;
	dis_query *q;
	dis_filter *f;
	size_t n = 0;
	int rc;

	assert_non_null(base);
	dis__buf_init(&log->text);
	log->lines = 0;
	rc = dis_runtime_new(base, conninfo, schema, &rt, err, sizeof(err));
	assert_no_secret(err, "dis_runtime_new's error");
	if (rc) {
		dis__buf_printf(&log->text, "dis_runtime_new: %s\n", err);
		event_base_free(base);
		return;
	}
	dis_runtime_options_init(&opts);
	opts.connect_timeout_ms = 2000;
	opts.reconnect_min_ms = 50;
	opts.reconnect_max_ms = 200;
	assert_int_equal(dis_runtime_set_options(rt, &opts), 0);
	dis_runtime_set_log(rt, capture, log, DIS_LOG_DEBUG);
	assert_int_equal(dis_query_new(schema, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_runtime_add_listener(rt, "secrets", q, no_handler,
						  NULL, NULL),
			 0);
	dis_query_free(q);
	rc = dis_runtime_start(rt);
	assert_no_secret(dis_runtime_errmsg(rt), "dis_runtime_errmsg");
	if (rc == 0) {
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	assert_no_secret(dis_runtime_errmsg(rt), "dis_runtime_errmsg");
	assert_int_equal(dis_runtime_stats(rt, &stats, &n), 0);
	for (size_t i = 0; i < n; i++) {
		dis__buf_printf(&log->text, "stats: %s\n", stats[i].last_error);
		assert_no_secret(stats[i].last_error, "the listener's stats");
	}
	dis_free(stats);
	dis_runtime_free(rt);
	event_base_free(base);
	assert_no_secret(dis__buf_cstr(&log->text), "the runtime's log");
}

static void test_runtime_wrong_password(void **state)
{
	logbuf log;
	char *ci;

	(void)state;
	if (!enforced)
		skip();
	ci = with_login(wrong);
	run_runtime(ci, 800, &log);
	assert_true(log.lines > 0);
	if (!strstr(dis__buf_cstr(&log.text), "password authentication failed"))
		fail_msg("no word of the failed login in:\n%s",
			 dis__buf_cstr(&log.text));
	dis__buf_free(&log.text);
	free(ci);

	ci = dt_fmt("postgresql://%s:%s@/%s?host=%s&port=%s", role, wrong,
		    dbname, host, port);
	run_runtime(ci, 500, &log);
	dis__buf_free(&log.text);
	free(ci);
}

static void test_runtime_missing_database(void **state)
{
	logbuf log;
	char *ci;

	(void)state;
	ci = dt_fmt("postgresql://%s:%s@/no_such_db_%s?host=%s&port=%s", role,
		    pw, role, host, port);
	run_runtime(ci, 500, &log);
	if (!strstr(dis__buf_cstr(&log.text), "does not exist"))
		fail_msg("no word of the missing database in:\n%s",
			 dis__buf_cstr(&log.text));
	dis__buf_free(&log.text);
	free(ci);
}

static void test_runtime_malformed_conninfo(void **state)
{
	logbuf log;
	char *ci;

	(void)state;
	for (size_t i = 0; i < NMALFORMED; i++) {
		ci = dt_fmt(MALFORMED[i], role, pw);
		run_runtime(ci, 150, &log);
		dis__buf_free(&log.text);
		free(ci);
	}
}

/* Right password, but no rights on the tables: the batch errors. */
static void test_runtime_errors_after_login(void **state)
{
	logbuf log;
	char *ci;

	(void)state;
	ci = with_login(pw);
	run_runtime(ci, 800, &log);
	if (!strstr(dis__buf_cstr(&log.text), "permission denied"))
		fail_msg("no word of the missing privilege in:\n%s",
			 dis__buf_cstr(&log.text));
	dis__buf_free(&log.text);
	free(ci);
}

/* ---- disctl ---- */

static char *slurp_fd(int fd)
{
	dis__buf b;
	char chunk[4096];
	ssize_t n;

	dis__buf_init(&b);
	lseek(fd, 0, SEEK_SET);
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		dis__buf_append(&b, chunk, (size_t)n);
	if (!dis__buf_cstr(&b))
		fail_msg("out of memory");
	return dis__buf_take(&b);
}

/* Runs disctl with stdin from `input`; returns its exit status and its
 * stdout and stderr together in *out. */
static int run_disctl(const char *const *args, const char *input, char **out)
{
	char path[sizeof(tmpdir) + 16];
	const char *argv[16];
	int in, io, st;
	size_t n = 0;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/in", tmpdir);
	in = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(in >= 0);
	if (input)
		assert_int_equal(write(in, input, strlen(input)),
				 (ssize_t)strlen(input));
	lseek(in, 0, SEEK_SET);
	snprintf(path, sizeof(path), "%s/out", tmpdir);
	io = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(io >= 0);
	argv[n++] = disctl;
	for (; *args && n < 15; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(in, 0);
		dup2(io, 1);
		dup2(io, 2);
		execv(disctl, (char *const *)argv);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0)
		assert_int_equal(errno, EINTR);
	*out = slurp_fd(io);
	close(in);
	close(io);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void disctl_hides(const char *conninfo, int want_status)
{
	static const char line[] =
		"{\"type\":\"Deposited\",\"data\":{\"account_id\":\"A\","
		"\"amount\":1}}\n";
	const char *init[] = {"--db", conninfo, "init", "--schema",
			      schema_path, NULL};
	const char *append[] = {"--db", conninfo, "append", "--schema",
				schema_path, NULL};
	const char *tail[] = {"--db", conninfo, "tail", "--schema",
			      schema_path, "--from", "0", NULL};
	const char *usage[] = {"--db", conninfo, "tail", "--bogus", NULL};
	const char *const *cmds[] = {init, append, tail, usage};
	char *out;
	int st;

	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		st = run_disctl(cmds[i], line, &out);
		if (st == 127)
			fail_msg("cannot run %s", disctl);
		assert_no_secret(out, "disctl's output");
		if (cmds[i] == usage)
			assert_int_equal(st, 1);
		else if (want_status >= 0 && st != want_status)
			fail_msg("disctl %s exited %d, not %d:\n%s",
				 cmds[i][2], st, want_status, out);
		free(out);
	}
}

static void test_disctl(void **state)
{
	char *ci;

	(void)state;
	if (enforced) {
		ci = with_login(wrong);
		disctl_hides(ci, 2);
		free(ci);
	}
	ci = dt_fmt("postgresql://%s:%s@/no_such_db_%s?host=%s&port=%s", role,
		    pw, role, host, port);
	disctl_hides(ci, 2);
	free(ci);
	/* Connected, but without rights: a database error, status 2. */
	ci = with_login(pw);
	disctl_hides(ci, 2);
	free(ci);
	for (size_t i = 0; i < NMALFORMED; i++) {
		ci = dt_fmt(MALFORMED[i], role, pw);
		disctl_hides(ci, 2);
		free(ci);
	}
	setenv("PGPASSWORD", pw, 1);
	ci = dt_fmt("user=%s port=%s", role, pw);
	disctl_hides(ci, 2);
	free(ci);
	unsetenv("PGPASSWORD");
}

/* ---- the scrubbing itself, on messages made up here ---- */

static void test_conn_errmsg(void **state)
{
	char out[DIS_ERRMSG_LEN];

	(void)state;
	/* A quoted part of a conninfo that does not parse is hidden. */
	dis__conn_errmsg("postgresql://u:p@[::1/db", NULL,
			 "end of string reached in URI: "
			 "\"postgresql://u:p@[::1/db\"\n",
			 out, sizeof(out));
	assert_string_equal(out, "end of string reached in URI: \"***\"");
	/* The password of one that does, wherever it appears. */
	dis__conn_errmsg("password=hunter2 sslmode=hunter2", NULL,
			 "invalid sslmode value: \"hunter2\" (hunter2)\n", out,
			 sizeof(out));
	assert_string_equal(out, "invalid sslmode value: \"***\" (***)");
	/* Nothing else changes. */
	dis__conn_errmsg("host=/tmp password=hunter2", NULL,
			 "connection to server on socket \"/tmp/x\" failed\n",
			 out, sizeof(out));
	assert_string_equal(out,
			    "connection to server on socket \"/tmp/x\" failed");
	/* Truncation keeps a terminated string. */
	dis__conn_errmsg(NULL, NULL, "abcdef", out, 4);
	assert_string_equal(out, "abc");
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_conn_errmsg),
		cmocka_unit_test(test_store_wrong_password),
		cmocka_unit_test(test_store_missing_database),
		cmocka_unit_test(test_store_malformed_conninfo),
		cmocka_unit_test(test_store_pgpassword),
		cmocka_unit_test(test_store_errors_after_login),
		cmocka_unit_test(test_runtime_wrong_password),
		cmocka_unit_test(test_runtime_missing_database),
		cmocka_unit_test(test_runtime_malformed_conninfo),
		cmocka_unit_test(test_runtime_errors_after_login),
		cmocka_unit_test(test_disctl),
	};

	if (argc < 2) {
		fprintf(stderr, "usage: %s DISCTL\n", argv[0]);
		return 1;
	}
	disctl = argv[1];
	dt_require_pg();
	return cmocka_run_group_tests(tests, setup, teardown);
}
