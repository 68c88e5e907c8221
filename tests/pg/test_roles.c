/*
 * Least privilege: the roles of docs/roles.sql (argv[1]). An admin member
 * migrates and a second admin upgrades; a writer appends and makes
 * decisions (with snapshots) but cannot migrate or touch other tables; a
 * listener projects into its read model, a policy (listener and writer)
 * appends from its handler; and a role missing one right gets DIS_EPERM
 * with a message naming the object it lacks the right on.
 */
#include "balance.h"
#include "testutil.h"
#include "core-internal.h"

#include <event2/event.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *SCHEMA =
	"[" BALANCE_AVSC_TYPES ","
	" {\"type\":\"record\",\"name\":\"Audited\",\"fields\":["
	" {\"name\":\"account_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"event\",\"type\":\"long\"}]}]";

/* Version 2 adds a domain id (a new column and index: ALTER TABLE). */
static const char *SCHEMA2 =
	"[{\"type\":\"record\",\"name\":\"Deposited\",\"fields\":["
	" {\"name\":\"account_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"amount\",\"type\":\"long\"}]},"
	" {\"type\":\"record\",\"name\":\"Withdrawn\",\"fields\":["
	" {\"name\":\"account_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"amount\",\"type\":\"long\"}]},"
	" {\"type\":\"record\",\"name\":\"Audited\",\"fields\":["
	" {\"name\":\"account_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"event\",\"type\":\"long\"}]},"
	" {\"type\":\"record\",\"name\":\"Moved\",\"fields\":["
	" {\"name\":\"account_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"branch\",\"type\":\"long\",\"disintegrate.id\":true}]}]";

static const char *roles_sql_path;
static char *roles_sql;
static dis_schema *schema;
static char *db;   /* the test database, as the superuser */
static PGconn *su; /* superuser connection to it */

enum { ADMIN, ADMIN2, WRITER, LISTENER, POLICY, NOBODY, NROLES };
static const char *const ROLE_KIND[NROLES] = {
	"admin", "admin2", "writer", "listener", "policy", "nobody"};
static const char *const ROLE_GROUPS[NROLES] = {
	"dis_admin", "dis_admin", "dis_writer", "dis_listener",
	"dis_listener, dis_writer", NULL};
static char role[NROLES][64];

/* ---- helpers ---- */

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (!f)
		fail_msg("cannot read %s: %s", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return buf;
}

/* docs/roles.sql, run as the superuser on the test database. */
static void apply_roles_sql(void)
{
	dt_exec(su, roles_sql);
}

/* Conninfo of the test database as login role `r`. */
static char *as(int r)
{
	return dt_fmt("%s user='%s'", db, role[r]);
}

static dis_store *open_as(int r, const dis_schema *s)
{
	char err[DIS_ERRMSG_LEN] = "", *ci = as(r);
	dis_store *st = NULL;

	if (dis_store_open(ci, s, &st, err, sizeof(err)))
		fail_msg("%s cannot connect: %s", ROLE_KIND[r], err);
	free(ci);
	return st;
}

/* Checks a refused call: DIS_EPERM, naming `object`. */
#define assert_denied(rc, msg, object) \
	assert_denied_(rc, msg, object, __LINE__)
static void assert_denied_(int rc, const char *msg, const char *object,
			   int line)
{
	if (rc != DIS_EPERM || !strstr(msg, "permission denied") ||
	    !strstr(msg, object))
		fail_msg("line %d: expected DIS_EPERM naming %s, got %s: %s",
			 line, object, dis_strerror(rc), msg);
}

/* Runs SQL on the store's connection; returns its SQLSTATE ("" = ok). */
static const char *raw_sql(dis_store *st, const char *sql, char *state)
{
	PGresult *r = PQexec(dis_store_conn(st), sql);
	const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);

	snprintf(state, 6, "%s", s ? s : "");
	PQclear(r);
	return state;
}

static int append_deposit(dis_store *st, const char *account, int64_t amount)
{
	dis_event *ev;
	int rc;

	assert_int_equal(dis_event_new(schema, "Deposited", &ev), 0);
	assert_int_equal(dis_event_set_string(ev, "account_id", account), 0);
	assert_int_equal(dis_event_set_long(ev, "amount", amount), 0);
	rc = dis_store_append(st, &ev, 1, NULL, NULL, NULL);
	dis_event_free(ev);
	return rc;
}

static void drop_roles(void)
{
	char sql[1024];
	PGconn *c;

	if (!db || !role[0][0])
		return;
	c = PQconnectdb(db);
	if (PQstatus(c) == CONNECTION_OK) {
		for (int r = 0; r < NROLES; r++) {
			if (!role[r][0])
				continue;
			snprintf(sql, sizeof(sql),
				 "DROP OWNED BY \"%s\" CASCADE; "
				 "DROP ROLE IF EXISTS \"%s\"",
				 role[r], role[r]);
			PQclear(PQexec(c, sql));
		}
	}
	PQfinish(c);
}

static int setup(void **state)
{
	char rnd[13];
	char sql[1024];

	(void)state;
	roles_sql = slurp(roles_sql_path);
	schema = dt_schema(SCHEMA);
	db = dt_fresh_db();
	su = dt_connect(db);
	dt_random_hex(rnd, 6);
	/* Before any table exists: the roles and schema rights only. */
	apply_roles_sql();
	atexit(drop_roles);
	for (int r = 0; r < NROLES; r++) {
		snprintf(role[r], sizeof(role[r]), "dis_t_%s_%s", ROLE_KIND[r],
			 rnd);
		snprintf(sql, sizeof(sql), "CREATE ROLE \"%s\" LOGIN%s%s",
			 role[r], ROLE_GROUPS[r] ? " IN ROLE " : "",
			 ROLE_GROUPS[r] ? ROLE_GROUPS[r] : "");
		dt_exec(su, sql);
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	PQfinish(su);
	drop_roles();
	memset(role, 0, sizeof(role));
	dis_schema_free(schema);
	free(roles_sql);
	free(db);
	db = NULL;
	return 0;
}

/* ---- migrating ---- */

static void test_admin_migrates(void **state)
{
	dis_schema *s2 = dt_schema(SCHEMA2);
	dis_store *st;
	char *owner;
	int rc;

	(void)state;
	/* Nobody but an admin may create the tables. */
	st = open_as(WRITER, schema);
	rc = dis_store_migrate(st);
	assert_denied(rc, dis_store_errmsg(st), "schema public");
	dis_store_free(st);

	st = open_as(ADMIN, schema);
	rc = dis_store_migrate(st);
	if (rc)
		fail_msg("admin migrate: %s", dis_store_errmsg(st));
	dis_store_free(st);
	/* The rights on the new tables, and the admin role owns them. */
	apply_roles_sql();
	owner = dt_scalar(su, "SELECT tableowner FROM pg_tables "
			      "WHERE tablename = 'event'");
	assert_string_equal(owner, "dis_admin");
	free(owner);

	/* Another admin upgrades them: a new id column and index. */
	st = open_as(ADMIN2, s2);
	rc = dis_store_migrate(st);
	if (rc)
		fail_msg("second admin migrate: %s", dis_store_errmsg(st));
	dis_store_free(st);
	apply_roles_sql();
	owner = dt_scalar(su, "SELECT count(*) FROM information_schema.columns "
			      "WHERE table_name = 'event' "
			      "AND column_name = 'branch'");
	assert_string_equal(owner, "1");
	free(owner);
	dis_schema_free(s2);
}

/* ---- the writer ---- */

static int withdraw(dis_ctx *ctx, const void *const *states,
		    const void *params)
{
	const struct balance *b = states[0];
	int64_t amount = *(const int64_t *)params;
	dis_event *ev;
	int rc;

	if (b->amount < amount)
		return dis_ctx_fail(ctx, 1, "insufficient funds");
	rc = dis_ctx_emit(ctx, "Withdrawn", &ev);
	if (!rc)
		rc = dis_event_set_string(ev, "account_id", b->account);
	if (!rc)
		rc = dis_event_set_long(ev, "amount", amount);
	return rc;
}

static void log_to_buf(void *arg, dis_log_level level, const char *msg)
{
	(void)level;
	dis__buf_printf(arg, "%s\n", msg);
}

/* Withdraws through the decision maker (its log into `log` when not
 * NULL); returns its result. */
static int make_withdrawal(dis_store *st, const char *account, int64_t amount,
			   char *msg, size_t len, dis__buf *log)
{
	struct balance init = {.account = account};
	dis_decision *d;
	dis_maker *m;
	int rc;

	assert_int_equal(dis_maker_new(st, &m), 0);
	dis_maker_set_snapshots(m, true, 1);
	if (log)
		dis_maker_set_log(m, log_to_buf, log);
	assert_int_equal(dis_decision_new(schema, "withdraw", withdraw, &amount,
					  sizeof(amount), &d),
			 0);
	assert_int_equal(dis_decision_add_state(d, &balance_snap_state, &init),
			 0);
	rc = dis_maker_make(m, d);
	snprintf(msg, len, "%s", rc ? dis_decision_errmsg(d) : "");
	dis_decision_free(d);
	dis_maker_free(m);
	return rc;
}

static void test_writer_decides(void **state)
{
	char msg[DIS_ERRMSG_LEN], st5[6];
	dis_store *st = open_as(WRITER, schema);
	char *n;
	int rc;

	(void)state;
	for (int i = 0; i < 3; i++)
		if ((rc = append_deposit(st, "W-1", 10)))
			fail_msg("writer append: %s", dis_store_errmsg(st));
	rc = make_withdrawal(st, "W-1", 25, msg, sizeof(msg), NULL);
	if (rc)
		fail_msg("writer decision: %s: %s", dis_strerror(rc), msg);
	rc = make_withdrawal(st, "W-1", 25, msg, sizeof(msg), NULL);
	assert_int_equal(rc, DIS_EDOMAIN);
	n = dt_scalar(su, "SELECT count(*) FROM snapshot");
	assert_true(atoi(n) >= 1);
	free(n);

	/* Nothing beyond that. */
	assert_string_equal(raw_sql(st, "DELETE FROM event", st5), "42501");
	assert_string_equal(raw_sql(st, "UPDATE event SET payload = ''", st5),
			    "42501");
	assert_string_equal(raw_sql(st, "SELECT * FROM event_listener", st5),
			    "42501");
	assert_string_equal(
		raw_sql(st, "INSERT INTO event_schema (fingerprint, schema) "
			    "VALUES ('x', 'y')",
			st5),
		"42501");
	assert_string_equal(raw_sql(st, "CREATE TABLE t (x int)", st5),
			    "42501");
	dis_store_free(st);
}

/* Each right taken away in turn: the error names what it is on. */
static void test_missing_right_named(void **state)
{
	static const struct {
		const char *revoke, *grant, *object;
	} RIGHTS[] = {
		{"REVOKE INSERT ON event FROM dis_writer",
		 "GRANT INSERT ON event TO dis_writer", "table event"},
		{"REVOKE USAGE ON SEQUENCE seq_event_event_id FROM dis_writer",
		 "GRANT USAGE ON SEQUENCE seq_event_event_id TO dis_writer",
		 "sequence seq_event_event_id"},
		{"REVOKE SELECT ON event_schema FROM dis_writer",
		 "GRANT SELECT ON event_schema TO dis_writer",
		 "table event_schema"},
	};
	char msg[DIS_ERRMSG_LEN];
	dis__buf log;
	dis_store *st;
	int rc;

	(void)state;
	for (size_t i = 0; i < sizeof(RIGHTS) / sizeof(RIGHTS[0]); i++) {
		dt_exec(su, RIGHTS[i].revoke);
		st = open_as(WRITER, schema);
		rc = append_deposit(st, "R-1", 1);
		assert_denied(rc, dis_store_errmsg(st), RIGHTS[i].object);
		print_message("%s: %s\n", RIGHTS[i].revoke,
			      dis_store_errmsg(st));
		dis_store_free(st);
		dt_exec(su, RIGHTS[i].grant);
	}

	/* Snapshots are an optimisation: without the right to read them a
	 * decision still succeeds from the log, and the log names it. */
	dt_exec(su, "REVOKE SELECT ON snapshot FROM dis_writer");
	st = open_as(WRITER, schema);
	assert_int_equal(append_deposit(st, "R-2", 5), 0);
	dis__buf_init(&log);
	rc = make_withdrawal(st, "R-2", 1, msg, sizeof(msg), &log);
	if (rc)
		fail_msg("decision without snapshots: %s", msg);
	if (!strstr(dis__buf_cstr(&log), "permission denied for table "
					 "snapshot"))
		fail_msg("the maker's log does not name the snapshot "
			 "table:\n%s",
			 dis__buf_cstr(&log));
	dis__buf_free(&log);
	dis_store_free(st);
	dt_exec(su, "GRANT SELECT ON snapshot TO dis_writer");

	/* A role with no rights at all. */
	st = open_as(NOBODY, schema);
	{
		dis_position next;
		dis_query *q;
		dis_filter *f;

		assert_int_equal(dis_query_new(schema, &q), 0);
		assert_int_equal(dis_query_add_filter(q, &f), 0);
		rc = dis_store_read(st, q, DIS_POSITION_START, 10, NULL, NULL,
				    &next);
		dis_query_free(q);
	}
	assert_denied(rc, dis_store_errmsg(st), "table event");
	dis_store_free(st);
}

/* ---- the listener and the policy ---- */

typedef struct run {
	int handled;
	int failed;
	char last_error[DIS_ERRMSG_LEN];
	dis__buf log;
} run;

static void capture(void *arg, dis_log_level level, const char *msg)
{
	run *r = arg;

	(void)level;
	dis__buf_printf(&r->log, "%s\n", msg);
}

/* Projection: balance per account into read_balance. */
static int project(void *arg, dis_batch *batch, const dis_event *ev)
{
	run *r = arg;
	const char *vals[2];
	char amount[32];
	const char *account;
	int64_t a = 0;
	PGresult *res;

	dis_event_get_string(ev, "account_id", &account);
	dis_event_get_long(ev, "amount", &a);
	snprintf(amount, sizeof(amount), "%lld",
		 (long long)(strcmp(dis_event_type(ev), "Deposited") ? -a : a));
	vals[0] = account;
	vals[1] = amount;
	res = PQexecParams(dis_batch_conn(batch),
			   "INSERT INTO read_balance AS b VALUES ($1, $2) "
			   "ON CONFLICT (account_id) DO UPDATE "
			   "SET amount = b.amount + EXCLUDED.amount",
			   2, NULL, vals, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		int rc = dis_batch_fail(batch, DIS_EPERM, "%s",
					PQresultErrorMessage(res));

		r->failed++;
		PQclear(res);
		return rc;
	}
	PQclear(res);
	r->handled++;
	return 0;
}

/* Policy: every deposit is audited by a new event, appended in the batch. */
static int audit(void *arg, dis_batch *batch, const dis_event *ev)
{
	run *r = arg;
	const char *account;
	dis_event *out;
	dis_store *st = dis_batch_store(batch);
	int rc;

	dis_event_get_string(ev, "account_id", &account);
	assert_int_equal(dis_event_new(schema, "Audited", &out), 0);
	dis_event_set_string(out, "account_id", account);
	dis_event_set_long(out, "event", dis_event_id(ev));
	rc = dis_store_append(st, &out, 1, NULL, NULL, NULL);
	dis_event_free(out);
	if (rc) {
		r->failed++;
		return dis_batch_fail(batch, rc, "%s", dis_store_errmsg(st));
	}
	r->handled++;
	return 0;
}

/*
 * Runs listener `id` as role `r` until it has handled `want` events or
 * failed (or 20 s passed); fills r->last_error from its stats.
 */
static void run_listener(int who, const char *id, const char *type,
			 dis_handler_fn fn, run *r, int want)
{
	struct event_base *base = event_base_new();
	struct timeval tick = {0, 50000};
	char err[DIS_ERRMSG_LEN] = "", *ci = as(who);
	dis_listener_config cfg;
	dis_listener_stats *stats = NULL;
	dis_runtime *rt = NULL;
	dis_query *q;
	dis_filter *f;
	size_t n = 0;
	int rc;

	memset(r, 0, sizeof(*r));
	dis__buf_init(&r->log);
	rc = dis_runtime_new(base, ci, schema, &rt, err, sizeof(err));
	if (rc)
		fail_msg("dis_runtime_new: %s", err);
	dis_runtime_set_log(rt, capture, r, DIS_LOG_INFO);
	dis_listener_config_init(&cfg);
	cfg.poll_interval_ms = 100;
	cfg.retry.kind = DIS_RETRY_ABORT;
	cfg.on_poison = DIS_POISON_STOP;
	assert_int_equal(dis_query_new(schema, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_filter_type(f, type), 0);
	assert_int_equal(dis_runtime_add_listener(rt, id, q, fn, r, &cfg), 0);
	dis_query_free(q);
	assert_int_equal(dis_runtime_start(rt), 0);
	for (int i = 0; i < 400; i++) {
		event_base_loopexit(base, &tick);
		event_base_dispatch(base);
		assert_int_equal(dis_runtime_stats(rt, &stats, &n), 0);
		assert_int_equal(n, 1);
		snprintf(r->last_error, sizeof(r->last_error), "%s",
			 stats[0].last_error);
		rc = stats[0].state == DIS_LISTENER_STOPPED ||
		     (r->handled >= want && stats[0].batches > 0 &&
		      stats[0].events_behind == 0);
		dis_free(stats);
		if (rc)
			break;
	}
	dis_runtime_free(rt);
	event_base_free(base);
	free(ci);
}

static void test_listener_projects(void **state)
{
	dis_store *w = open_as(WRITER, schema);
	char *v;
	run r;

	(void)state;
	/* The read model belongs to the admin, the listener writes it. */
	dt_exec(su, "CREATE TABLE read_balance (account_id text PRIMARY KEY,"
		    " amount bigint NOT NULL);"
		    "ALTER TABLE read_balance OWNER TO dis_admin;"
		    "GRANT SELECT, INSERT, UPDATE ON read_balance"
		    " TO dis_listener");
	assert_int_equal(append_deposit(w, "L-1", 7), 0);
	assert_int_equal(append_deposit(w, "L-1", 5), 0);
	dis_store_free(w);

	run_listener(LISTENER, "balances", "Deposited", project, &r, 3);
	if (r.failed || r.last_error[0])
		fail_msg("the listener failed: %s\n%s", r.last_error,
			 dis__buf_cstr(&r.log));
	v = dt_scalar(su, "SELECT amount FROM read_balance "
			  "WHERE account_id = 'L-1'");
	assert_non_null(v);
	assert_string_equal(v, "12");
	free(v);
	v = dt_scalar(su, "SELECT checkpoint_tx::text::bigint > 0 "
			  "FROM event_listener WHERE id = 'balances'");
	assert_string_equal(v, "t");
	free(v);
	dis__buf_free(&r.log);

	/* Without rights on its read model, the error names it. */
	dt_exec(su, "REVOKE INSERT, UPDATE ON read_balance FROM dis_listener");
	w = open_as(WRITER, schema);
	assert_int_equal(append_deposit(w, "L-2", 1), 0);
	dis_store_free(w);
	run_listener(LISTENER, "balances", "Deposited", project, &r, 1);
	assert_true(r.failed > 0);
	if (!strstr(r.last_error, "permission denied for table read_balance"))
		fail_msg("last error: %s\n%s", r.last_error,
			 dis__buf_cstr(&r.log));
	dis__buf_free(&r.log);
	dt_exec(su, "GRANT INSERT, UPDATE ON read_balance TO dis_listener");

	/* A writer is no listener: its checkpoint table is out of reach. */
	run_listener(WRITER, "by-writer", "Deposited", project, &r, 1);
	if (!strstr(r.last_error, "permission denied for table event_listener") &&
	    !strstr(dis__buf_cstr(&r.log),
		    "permission denied for table event_listener"))
		fail_msg("last error: %s\n%s", r.last_error,
			 dis__buf_cstr(&r.log));
	assert_int_equal(r.handled, 0);
	dis__buf_free(&r.log);
}

static void test_policy_appends(void **state)
{
	dis_store *w = open_as(WRITER, schema);
	char *before, *after;
	run r;

	(void)state;
	assert_int_equal(append_deposit(w, "P-1", 3), 0);
	dis_store_free(w);
	before = dt_scalar(su, "SELECT count(*) FROM event "
			       "WHERE event_type = 'Audited'");

	/* A listener role alone cannot append: the policy fails. */
	run_listener(LISTENER, "auditor", "Deposited", audit, &r, 1);
	assert_true(r.failed > 0);
	if (!strstr(r.last_error, "permission denied"))
		fail_msg("last error: %s\n%s", r.last_error,
			 dis__buf_cstr(&r.log));
	dis__buf_free(&r.log);
	after = dt_scalar(su, "SELECT count(*) FROM event "
			      "WHERE event_type = 'Audited'");
	assert_string_equal(before, after);
	free(after);

	/* Reset the stopped listener, then run it with both roles. */
	dt_exec(su, "DELETE FROM event_listener WHERE id = 'auditor';"
		    "DELETE FROM event_dead_letter WHERE listener_id = 'auditor'");
	run_listener(POLICY, "auditor", "Deposited", audit, &r, 1);
	if (r.failed || r.last_error[0])
		fail_msg("the policy failed: %s\n%s", r.last_error,
			 dis__buf_cstr(&r.log));
	after = dt_scalar(su, "SELECT count(*) FROM event e, event d "
			      "WHERE e.event_type = 'Audited' "
			      "AND d.event_type = 'Deposited' "
			      "AND e.account_id = d.account_id");
	assert_true(atoi(after) >= 1);
	assert_true(r.handled >= 1);
	free(after);
	free(before);
	dis__buf_free(&r.log);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_admin_migrates),
		cmocka_unit_test(test_writer_decides),
		cmocka_unit_test(test_missing_right_named),
		cmocka_unit_test(test_listener_projects),
		cmocka_unit_test(test_policy_appends),
	};

	if (argc < 2) {
		fprintf(stderr, "usage: %s docs/roles.sql\n", argv[0]);
		return 1;
	}
	roles_sql_path = argv[1];
	dt_require_pg();
	return cmocka_run_group_tests(tests, setup, teardown);
}
