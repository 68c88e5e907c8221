/*
 * The fault matrix: a listener process projecting a read model and writer
 * processes making decisions (deposits, and withdrawals that must never
 * overdraw) run while, in turn,
 *   1. their backends are terminated, three times;
 *   2. the server restarts;
 *   3. the server stops for 20 seconds;
 *   4. a lock on the event table holds appends past the writers'
 *      lock_timeout (1 s).
 * Afterwards: no event a writer saw committed is missing, none was applied
 * twice, the read model equals a replay of the log, no balance went below
 * zero, every failed decision came back with a clear error (a known code
 * and a message saying what happened), and every process recovered by
 * itself: the same processes made decisions and caught up after the last
 * fault, and exited cleanly when asked.
 *
 * Needs the throwaway cluster of tests/run.sh (it stops the server).
 * Three runs in a row: tests/run.sh --suite fault -- --repeat 3 matrix
 */
#include "balance.h"
#include "testutil.h"

#include <disintegrate/listener.h>

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *SCHEMA = "[" BALANCE_AVSC_TYPES "]";

static const char *READ_MODEL =
	"CREATE TABLE fm_balance (account_id text PRIMARY KEY,"
	" amount bigint NOT NULL);"
	"CREATE TABLE fm_applied (event_id bigint PRIMARY KEY,"
	" times int NOT NULL)";

#define WRITERS 3
#define ACCOUNTS 6
#define LISTENER_ID "fm-balances"

static char *db;
static dis_schema *schema;
static char tmpdir[] = "/tmp/dis-fault-matrix.XXXXXX";
static volatile sig_atomic_t stop_flag;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
	struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !stop_flag)
		;
}

static void on_term(int sig)
{
	(void)sig;
	stop_flag = 1;
}

/* ---- the writers ---- */

struct move {
	const char *type;
	int64_t amount;
};

static int decide_move(dis_ctx *ctx, const void *const *states,
		       const void *params)
{
	const struct balance *b = states[0];
	const struct move *m = params;
	dis_event *ev;
	int rc;

	if (!strcmp(m->type, "Withdrawn") && b->amount < m->amount)
		return dis_ctx_fail(ctx, 1, "insufficient funds on %s",
				    b->account);
	rc = dis_ctx_emit(ctx, m->type, &ev);
	if (!rc)
		rc = dis_event_set_string(ev, "account_id", b->account);
	if (!rc)
		rc = dis_event_set_long(ev, "amount", m->amount);
	return rc;
}

/* Writes `msg` on one line (libpq's messages span several). */
static void put_line(FILE *out, const char *msg)
{
	for (; *msg; msg++)
		fputc(*msg == '\n' || *msg == '\t' ? ' ' : *msg, out);
	fputc('\n', out);
}

/* Opens a store (retrying until it works or we are told to stop). */
static dis_store *writer_connect(const char *conninfo, FILE *out)
{
	char err[512];
	dis_store *st = NULL;

	while (!stop_flag) {
		if (!dis_store_open(conninfo, schema, &st, err, sizeof(err)))
			return st;
		fprintf(out, "%.3f connect ", now());
		put_line(out, err);
		sleep_s(0.1);
	}
	return NULL;
}

/*
 * A writer process: decisions on random accounts until SIGTERM. Each
 * outcome is one line of its log:
 *   T ok N ID...      appended N events
 *   T fail CODE MSG   the decision failed
 */
static int writer_main(int w)
{
	static const char *const accounts[ACCOUNTS] = {"A", "B", "C",
						       "D", "E", "F"};
	char path[sizeof(tmpdir) + 32], *conninfo;
	unsigned seed = (unsigned)(getpid() * 2654435761u);
	dis_store *st;
	FILE *out;

	signal(SIGTERM, on_term);
	snprintf(path, sizeof(path), "%s/writer-%d", tmpdir, w);
	out = fopen(path, "w");
	if (!out)
		return 2;
	setvbuf(out, NULL, _IOLBF, 0);
	/* The decision's configured lock timeout. */
	if (asprintf(&conninfo, "%s options='-c lock_timeout=1000'", db) < 0)
		return 2;
	st = writer_connect(conninfo, out);
	while (!stop_flag && st) {
		struct balance init = {.account = accounts[rand_r(&seed) %
							   ACCOUNTS]};
		struct move m = {rand_r(&seed) % 3 ? "Deposited" : "Withdrawn",
				 1 + rand_r(&seed) % 20};
		dis_decision *d;
		dis_maker *mk;
		int rc;

		if (dis_maker_new(st, &mk) ||
		    dis_decision_new(schema, "move", decide_move, &m, sizeof(m),
				     &d))
			return 3;
		dis_maker_set_retry(mk, 8, 1000, 50000);
		if (dis_decision_add_state(d, &balance_state, &init))
			return 3;
		rc = dis_maker_make(mk, d);
		if (rc == 0) {
			size_t n = dis_decision_event_count(d);

			fprintf(out, "%.3f ok %zu", now(), n);
			for (size_t i = 0; i < n; i++)
				fprintf(out, " %" PRId64,
					dis_event_id(dis_decision_event(d, i)));
			fputc('\n', out);
		} else {
			fprintf(out, "%.3f fail %d ", now(), rc);
			put_line(out, dis_decision_errmsg(d));
		}
		dis_decision_free(d);
		dis_maker_free(mk);
		if (rc && PQstatus(dis_store_conn(st)) != CONNECTION_OK) {
			dis_store_free(st);
			st = writer_connect(conninfo, out);
		}
		sleep_s(0.005 * (rand_r(&seed) % 4));
	}
	dis_store_free(st);
	free(conninfo);
	fclose(out);
	return 0;
}

/* ---- the listener ---- */

static int exec_params(PGconn *c, const char *sql, int n,
		       const char *const *vals)
{
	PGresult *r = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;

	PQclear(r);
	return ok;
}

static int project(void *arg, dis_batch *batch, const dis_event *ev)
{
	PGconn *c = dis_batch_conn(batch);
	char id[32], amount[32];
	const char *account, *v[2];
	int64_t a;

	(void)arg;
	if (dis_event_get_string(ev, "account_id", &account) ||
	    balance_signed_amount(ev, &a))
		return dis_batch_fail(batch, DIS_EINVAL, "bad event");
	snprintf(id, sizeof(id), "%" PRId64, dis_event_id(ev));
	snprintf(amount, sizeof(amount), "%" PRId64, a);
	v[0] = id;
	if (!exec_params(c,
			 "INSERT INTO fm_applied VALUES ($1, 1) ON CONFLICT "
			 "(event_id) DO UPDATE SET times = fm_applied.times + 1",
			 1, v))
		return dis_batch_fail(batch, DIS_EPG, "%s",
				      PQerrorMessage(c));
	v[0] = account;
	v[1] = amount;
	if (!exec_params(c,
			 "INSERT INTO fm_balance VALUES ($1, $2) ON CONFLICT "
			 "(account_id) DO UPDATE SET amount = "
			 "fm_balance.amount + EXCLUDED.amount",
			 2, v))
		return dis_batch_fail(batch, DIS_EPG, "%s",
				      PQerrorMessage(c));
	return 0;
}

static int listener_main(void)
{
	dis_listener_config cfg;
	dis_runtime_options o;
	char err[512];
	dis_runner *r;
	dis_query *q;
	dis_filter *f;
	int rc;

	if (dis_runner_new(db, schema, &r, err, sizeof(err)))
		return 2;
	dis_runtime_options_init(&o);
	o.reconnect_min_ms = 50;
	o.reconnect_max_ms = 1000;
	o.connect_timeout_ms = 2000;
	if (dis_runtime_set_options(dis_runner_runtime(r), &o))
		return 3;
	dis_listener_config_init(&cfg);
	cfg.poll_interval_ms = 200;
	cfg.fetch_size = 100;
	/* A failure here is the infrastructure's: retry it forever. */
	cfg.retry.kind = DIS_RETRY_EXPONENTIAL;
	cfg.retry.max_attempts = 0;
	cfg.retry.delay_ms = 50;
	cfg.retry.max_delay_ms = 1000;
	if (dis_query_new(schema, &q) || dis_query_add_filter(q, &f) ||
	    dis_runtime_add_listener(dis_runner_runtime(r), LISTENER_ID, q,
				     project, NULL, &cfg))
		return 3;
	dis_query_free(q);
	rc = dis_runner_run(r);
	dis_runner_free(r);
	return rc == 0 ? 0 : 4;
}

/* ---- the test ---- */

static pid_t spawn(int (*fn)(int), int arg)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(fn(arg));
	return pid;
}

static int listener_entry(int unused)
{
	(void)unused;
	return listener_main();
}

static int exit_status(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		assert_int_equal(errno, EINTR);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A control connection that survives the faults. */
static PGconn *ctl;

static PGconn *control(void)
{
	PGresult *r = PQexec(ctl, "SELECT 1");
	bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;

	PQclear(r);
	for (int i = 0; i < 200 && !ok; i++) {
		PQreset(ctl);
		ok = PQstatus(ctl) == CONNECTION_OK;
		if (!ok)
			sleep_s(0.1);
	}
	if (!ok)
		fail_msg("cannot reconnect: %s", PQerrorMessage(ctl));
	return ctl;
}

static char *scalar(const char *sql)
{
	return dt_scalar(control(), sql);
}

static long long scalar_ll(const char *sql)
{
	char *v = scalar(sql);
	long long n = v ? atoll(v) : 0;

	free(v);
	return n;
}

/* Whether the listener's checkpoint has passed every committed event. */
static bool caught_up(void)
{
	return scalar_ll("SELECT count(*) FROM event e, event_listener l "
			 "WHERE l.id = '" LISTENER_ID "' AND (e.tx, e.event_id)"
			 " > (l.checkpoint_tx, l.checkpoint_id)") == 0 &&
	       scalar_ll("SELECT count(*) FROM event_listener WHERE id = '"
			 LISTENER_ID "'") == 1;
}

typedef struct outcome {
	int ok, fail_conn, fail_timeout, fail_conflict, fail_domain;
	double last_ok;
	char conn_msg[160], timeout_msg[160]; /* the first of each */
} outcome;

/* Reads a writer's log: checks each failure, collects committed ids. */
static void read_writer(int w, outcome *o, int64_t **ids, size_t *nids,
			size_t *cap)
{
	char path[sizeof(tmpdir) + 32], line[2048];
	FILE *f;

	snprintf(path, sizeof(path), "%s/writer-%d", tmpdir, w);
	f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		double t = atof(line);
		char *p = strchr(line, ' ');
		int code, off = 0;

		assert_non_null(p);
		p++;
		if (!strncmp(p, "ok ", 3)) {
			char *q = p + 3;
			long n = strtol(q, &q, 10);

			for (long i = 0; i < n; i++) {
				if (*nids == *cap) {
					*cap = *cap ? *cap * 2 : 256;
					*ids = realloc(*ids,
						       *cap * sizeof(**ids));
					assert_non_null(*ids);
				}
				(*ids)[(*nids)++] = strtoll(q, &q, 10);
			}
			o->ok++;
			o->last_ok = t;
			continue;
		}
		if (!strncmp(p, "connect ", 8))
			continue;
		if (sscanf(p, "fail %d %n", &code, &off) != 1 || !off)
			fail_msg("writer %d: unreadable line %s", w, line);
		p += off;
		p[strcspn(p, "\n")] = '\0';
		/* A clear error: a known code and what happened. */
		if (strlen(p) < 10)
			fail_msg("writer %d: failure %s without a message", w,
				 dis_strerror(code));
		switch (code) {
		case DIS_ECONN:
			if (!o->fail_conn++)
				snprintf(o->conn_msg, sizeof(o->conn_msg), "%s",
					 p);
			break;
		case DIS_ETIMEDOUT:
			if (!strstr(p, "timeout"))
				fail_msg("writer %d: a timeout that does not "
					 "say so: %s",
					 w, p);
			if (!o->fail_timeout++)
				snprintf(o->timeout_msg,
					 sizeof(o->timeout_msg), "%s", p);
			break;
		case DIS_ECONFLICT: o->fail_conflict++; break;
		case DIS_EDOMAIN:
			if (!strstr(p, "insufficient funds"))
				fail_msg("writer %d: %s", w, p);
			o->fail_domain++;
			break;
		default:
			fail_msg("writer %d: decision failed with %s: %s", w,
				 dis_strerror(code), p);
		}
	}
	fclose(f);
}

/* The read model against a replay of the log. */
typedef struct replay {
	char account[ACCOUNTS + 2][8];
	int64_t amount[ACCOUNTS + 2];
	int n;
	int64_t events;
	bool negative;
} replay;

static int replay_event(void *arg, const dis_event *ev)
{
	replay *r = arg;
	const char *account;
	int64_t a;
	int i;

	if (dis_event_get_string(ev, "account_id", &account) ||
	    balance_signed_amount(ev, &a))
		return DIS_EINVAL;
	for (i = 0; i < r->n && strcmp(r->account[i], account); i++)
		;
	if (i == r->n) {
		if (r->n == ACCOUNTS + 2)
			return DIS_EINVAL;
		snprintf(r->account[r->n++], sizeof(r->account[0]), "%s",
			 account);
	}
	r->amount[i] += a;
	if (r->amount[i] < 0)
		r->negative = true;
	r->events++;
	return 0;
}

static void check_replay(void)
{
	dis_store *st = dt_store(db, schema);
	dis_position pos = DIS_POSITION_START, next;
	replay r;
	dis_query *q;
	dis_filter *f;
	char sql[256];

	memset(&r, 0, sizeof(r));
	assert_int_equal(dis_query_new(schema, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	for (;;) {
		int64_t before = r.events;

		assert_int_equal(dis_store_read(st, q, pos, 1000, replay_event,
						&r, &next),
				 0);
		if (r.events == before &&
		    dis_position_cmp(next, pos) == 0)
			break;
		pos = next;
	}
	dis_query_free(q);
	dis_store_free(st);

	assert_false(r.negative);
	assert_int_equal(scalar_ll("SELECT count(*) FROM event"), r.events);
	/* Each event applied exactly once. */
	assert_int_equal(scalar_ll("SELECT count(*) FROM fm_applied"),
			 r.events);
	assert_int_equal(scalar_ll("SELECT count(*) FROM fm_applied "
				   "WHERE times <> 1"),
			 0);
	assert_int_equal(scalar_ll("SELECT count(*) FROM fm_applied a "
				   "LEFT JOIN event e USING (event_id) "
				   "WHERE e.event_id IS NULL"),
			 0);
	assert_int_equal(scalar_ll("SELECT count(*) FROM fm_balance"), r.n);
	for (int i = 0; i < r.n; i++) {
		snprintf(sql, sizeof(sql),
			 "SELECT amount FROM fm_balance WHERE account_id = "
			 "'%s'",
			 r.account[i]);
		assert_int_equal(scalar_ll(sql), r.amount[i]);
	}
	print_message("replay: %" PRId64 " events over %d accounts match "
		      "the read model\n",
		      r.events, r.n);
}

static void test_fault_matrix(void **state)
{
	pid_t writers[WRITERS], listener;
	outcome o[WRITERS];
	int64_t *ids = NULL;
	size_t nids = 0, cap = 0;
	double faults_end;
	long long killed = 0;
	char *missing, sql[128];

	(void)state;
	if (!dt_have_cluster())
		fail_msg("the fault matrix stops the server: run it with "
			 "tests/run.sh (DIS_PGDATA, DIS_PG_BINDIR)");
	listener = spawn(listener_entry, 0);
	for (int w = 0; w < WRITERS; w++)
		writers[w] = spawn(writer_main, w);
	sleep_s(2);

	/* 1. Backends terminated. */
	for (int i = 0; i < 3; i++) {
		killed += scalar_ll("SELECT count(pg_terminate_backend(pid)) "
				    "FROM pg_stat_activity WHERE datname = "
				    "current_database() AND pid <> "
				    "pg_backend_pid()");
		sleep_s(0.7);
	}
	sleep_s(1.5);
	/* 2. The server restarts. */
	assert_int_equal(dt_pg_ctl("restart -m fast -w -t 60"), 0);
	sleep_s(3);
	/* 3. The server is away for 20 seconds. */
	assert_int_equal(dt_pg_ctl("stop -m fast -w -t 60"), 0);
	sleep_s(20);
	assert_int_equal(dt_pg_ctl("start -w -t 60"), 0);
	sleep_s(3);
	/* 4. Appends wait on a lock past their lock_timeout. */
	dt_exec(control(), "BEGIN; LOCK TABLE event IN EXCLUSIVE MODE");
	sleep_s(3);
	dt_exec(control(), "COMMIT");
	faults_end = now();
	print_message("terminated %lld backends, restarted, stopped 20 s, "
		      "held the event table for 3 s\n",
		      killed);

	/* Everyone goes on by themselves. */
	sleep_s(3);
	for (int w = 0; w < WRITERS; w++)
		kill(writers[w], SIGTERM);
	for (int w = 0; w < WRITERS; w++)
		assert_int_equal(exit_status(writers[w]), 0);
	for (double end = now() + 90; !caught_up() && now() < end;)
		sleep_s(0.2);
	assert_true(caught_up());
	kill(listener, SIGTERM);
	assert_int_equal(exit_status(listener), 0);

	memset(o, 0, sizeof(o));
	for (int w = 0; w < WRITERS; w++) {
		read_writer(w, &o[w], &ids, &nids, &cap);
		print_message("writer %d: %d ok, failed: %d connection, %d "
			      "timeout, %d conflict, %d refused\n",
			      w, o[w].ok, o[w].fail_conn, o[w].fail_timeout,
			      o[w].fail_conflict, o[w].fail_domain);
		if (o[w].conn_msg[0])
			print_message("  e.g. %s\n", o[w].conn_msg);
		if (o[w].timeout_msg[0])
			print_message("  e.g. %s\n", o[w].timeout_msg);
		if (o[w].last_ok <= faults_end)
			fail_msg("writer %d made no decision after the faults",
				 w);
	}
	/* The lock held appends past their timeout at least once. */
	assert_true(o[0].fail_timeout + o[1].fail_timeout + o[2].fail_timeout >
		    0);

	/* No committed event lost. */
	dt_exec(control(), "CREATE TEMP TABLE fm_seen (event_id bigint)");
	for (size_t i = 0; i < nids; i++) {
		snprintf(sql, sizeof(sql), "INSERT INTO fm_seen VALUES (%" PRId64
			 ")", ids[i]);
		dt_exec(control(), sql);
	}
	missing = scalar("SELECT count(*) FROM fm_seen s LEFT JOIN event e "
			 "USING (event_id) WHERE e.event_id IS NULL");
	assert_string_equal(missing, "0");
	free(missing);
	free(ids);
	check_replay();
}

static int setup(void **state)
{
	dis_store *st;

	(void)state;
	if (!mkdtemp(tmpdir))
		fail_msg("mkdtemp: %s", strerror(errno));
	db = dt_fresh_db();
	schema = dt_schema(SCHEMA);
	st = dt_store(db, schema);
	dis_store_free(st);
	ctl = dt_connect(db);
	dt_exec(ctl, READ_MODEL);
	return 0;
}

static int teardown(void **state)
{
	char path[sizeof(tmpdir) + 32];

	(void)state;
	for (int w = 0; w < WRITERS; w++) {
		snprintf(path, sizeof(path), "%s/writer-%d", tmpdir, w);
		unlink(path);
	}
	rmdir(tmpdir);
	PQfinish(ctl);
	dis_schema_free(schema);
	free(db);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fault_matrix),
	};

	dt_require_pg();
	return cmocka_run_group_tests(tests, setup, teardown);
}
