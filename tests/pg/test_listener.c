/*
 * The listener runtime on a real PostgreSQL: ports of disintegrate-postgres's
 * listener tests (with the notifier test made real), exactly-once delivery
 * with two runtimes and two processes, poison events both ways, retries,
 * two runtimes in two threads, a transaction holding the barrier, stop and
 * free from inside a handler, reset, and the runner.
 */
#include "test_listener_util.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct fixture {
	char *conninfo;
	dis_schema *schema;
	dis_store *store; /* for appends */
	PGconn *conn;     /* for checks */
	struct event_base *base;
	dis_runtime *rt;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	char err[256];

	f->conninfo = dt_fresh_db();
	f->schema = dt_schema(TL_SCHEMA);
	f->store = dt_store(f->conninfo, f->schema);
	f->conn = dt_connect(f->conninfo);
	dt_exec(f->conn, TL_READ_MODEL);
	f->base = event_base_new();
	assert_non_null(f->base);
	if (dis_runtime_new(f->base, f->conninfo, f->schema, &f->rt, err,
			    sizeof(err)))
		fail_msg("runtime: %s", err);
	dis_runtime_set_log(f->rt, tl_log, NULL, DIS_LOG_DEBUG);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;

	dis_runtime_free(f->rt);
	event_base_free(f->base);
	PQfinish(f->conn);
	dis_store_free(f->store);
	dis_schema_free(f->schema);
	free(f->conninfo);
	free(f);
	return 0;
}

static dis_listener_config poller(uint32_t poll_ms, bool notifier)
{
	dis_listener_config c;

	dis_listener_config_init(&c);
	c.poll_interval_ms = poll_ms;
	c.notifier = notifier;
	return c;
}

typedef struct wait_n {
	tl_counter *c;
	int n;
} wait_n;

static bool handled_n(void *arg)
{
	wait_n *w = arg;

	return w->c->handled >= w->n;
}

static dis_listener_stats stats_of(dis_runtime *rt, const char *id)
{
	dis_listener_stats *st, out;
	size_t n;

	memset(&out, 0, sizeof(out));
	assert_int_equal(dis_runtime_stats(rt, &st, &n), 0);
	for (size_t i = 0; i < n; i++)
		if (!strcmp(st[i].id, id)) {
			out = st[i];
			out.id = NULL;
			out.last_error = NULL;
		}
	dis_free(st);
	return out;
}

/* Registers listener "carts" (the cart projection counting into c) over
 * q, which it frees (the runtime keeps a copy), and starts the runtime. */
static void start_carts(fixture *f, dis_query *q, tl_counter *c,
			const dis_listener_config *cfg)
{
	assert_int_equal(dis_runtime_add_listener(f->rt, "carts", q,
						  tl_cart_handler, c, cfg),
			 0);
	dis_query_free(q);
	assert_int_equal(dis_runtime_start(f->rt), 0);
}

/* A reset from another thread (tl_reset) on the fixture's database. */
static int reset_running(fixture *f, const char *id, dis_position to)
{
	tl_reset j = {.conninfo = f->conninfo,
		      .schema = f->schema,
		      .id = id,
		      .to = to};

	assert_true(tl_reset_running(f->base, &j, 10000));
	return j.rc;
}

/* ---- ports of disintegrate-postgres's tests ---- */

/* it_handles_events / it_runs_event_listeners: the poller delivers. */
static void test_runs_event_listener(void **state)
{
	fixture *f = *state;
	tl_counter c = {0};
	wait_n w = {&c, 1};
	dis_query *q = tl_cart_query(f->schema);
	dis_listener_config cfg = poller(10, false);
	PGresult *r;

	tl_append(f->store, tl_added(f->schema, "cart_1", "product_1", 1));
	start_carts(f, q, &c, &cfg);
	assert_true(tl_run_until(f->base, handled_n, &w, 10000));
	tl_stop_runtime(f->base, f->rt);

	r = PQexec(f->conn, "SELECT cart_id, product_id, quantity FROM carts");
	assert_int_equal(PQntuples(r), 1);
	assert_string_equal(PQgetvalue(r, 0, 0), "cart_1");
	assert_string_equal(PQgetvalue(r, 0, 1), "product_1");
	assert_string_equal(PQgetvalue(r, 0, 2), "1");
	PQclear(r);
	assert_int_equal(c.handled, 1);
	/* The checkpoint is committed with the read model. */
	assert_true(tl_db_checkpoint(f->conn, "carts").tx > 0);
}

static bool caught_up(void *arg)
{
	fixture *f = arg;
	dis_listener_stats s = stats_of(f->rt, "carts");

	return s.batches >= 1;
}

/*
 * it_runs_event_listener_with_db_listener, made real: with a 60 s poll,
 * events appended after start reach the handler through NOTIFY.
 */
static void test_notifier_delivers(void **state)
{
	fixture *f = *state;
	tl_counter c = {0};
	wait_n w = {&c, 0};
	dis_query *q = tl_cart_query(f->schema);
	dis_listener_config cfg = poller(60000, true);
	dis_listener_stats s;
	double t0, worst = 0;

	start_carts(f, q, &c, &cfg);
	assert_true(tl_run_until(f->base, caught_up, f, 10000));
	/* The LISTEN connection is up before we append. */
	for (int i = 0; i < 400 && !dis_runtime_notifier_connected(f->rt); i++)
		tl_run_for(f->base, 5);
	assert_true(dis_runtime_notifier_connected(f->rt));
	for (int i = 1; i <= 5; i++) {
		t0 = tl_now();
		tl_append(f->store,
			  tl_added(f->schema, "cart_1", "product_1", i));
		w.n = i;
		assert_true(tl_run_until(f->base, handled_n, &w, 3000));
		if (c.last_at - t0 > worst)
			worst = c.last_at - t0;
	}
	print_message("notifier: worst commit-to-handler %.1f ms\n",
		      worst * 1000);
	assert_true(worst < 2.0);
	tl_run_for(f->base, 50);
	s = stats_of(f->rt, "carts");
	assert_int_equal(s.events_handled, 5);
	assert_int_equal(s.state, DIS_LISTENER_RUNNING);
	tl_stop_runtime(f->base, f->rt);
	assert_int_equal(tl_count(f->conn, "SELECT count(*) FROM carts"), 5);
}

/* A narrow listener moves its checkpoint past events it does not read,
 * and is not woken by notifications of other types. */
static void test_checkpoint_advances_past_other_types(void **state)
{
	fixture *f = *state;
	tl_counter c = {0};
	dis_query *q = tl_cart_query(f->schema);
	dis_listener_config cfg = poller(60000, true);
	dis_listener_stats s0, s1;
	dis_position ck, head;

	start_carts(f, q, &c, &cfg);
	assert_true(tl_run_until(f->base, caught_up, f, 10000));
	for (int i = 0; i < 400 && !dis_runtime_notifier_connected(f->rt); i++)
		tl_run_for(f->base, 5);
	/* (LISTEN coming up wakes the listener once.) */
	tl_run_for(f->base, 200);
	s0 = stats_of(f->rt, "carts");
	for (int i = 0; i < 20; i++)
		tl_append(f->store, tl_other(f->schema, i));
	tl_run_for(f->base, 300);
	s1 = stats_of(f->rt, "carts");
	assert_int_equal(s1.batches, s0.batches); /* not woken */
	dis_runtime_wake(f->rt);
	tl_run_for(f->base, 300);
	assert_int_equal(c.handled, 0);
	assert_int_equal(dis_store_head(f->store, &head), 0);
	ck = tl_db_checkpoint(f->conn, "carts");
	assert_true(dis_position_cmp(ck, head) > 0);
	tl_stop_runtime(f->base, f->rt);
}

/* ---- exactly once ---- */

typedef struct total_wait {
	fixture *f;
	long long n;
} total_wait;

static bool handled_rows(void *arg)
{
	total_wait *w = arg;

	return tl_count(w->f->conn, "SELECT count(*) FROM handled") >= w->n;
}

/* Two runtimes (one loop) run the same listener: each event once. */
static void test_two_runtimes_same_listener(void **state)
{
	fixture *f = *state;
	dis_runtime *rt2;
	char err[256];
	tl_counter c1 = {0}, c2 = {0};
	dis_query *q = tl_cart_query(f->schema);
	dis_listener_config cfg = poller(50, true);
	total_wait w = {f, 600};

	cfg.fetch_size = 7;
	assert_int_equal(dis_runtime_new(f->base, f->conninfo, f->schema, &rt2,
					 err, sizeof(err)),
			 0);
	dis_runtime_set_log(rt2, tl_log, NULL, DIS_LOG_DEBUG);
	assert_int_equal(dis_runtime_add_listener(f->rt, "carts", q,
						  tl_cart_handler, &c1, &cfg),
			 0);
	assert_int_equal(dis_runtime_add_listener(rt2, "carts", q,
						  tl_cart_handler, &c2, &cfg),
			 0);
	dis_query_free(q);
	assert_int_equal(dis_runtime_start(f->rt), 0);
	assert_int_equal(dis_runtime_start(rt2), 0);
	for (int i = 0; i < 30; i++) {
		tl_append_carts(f->store, f->schema, 20, 1 + i % 5);
		tl_run_for(f->base, 10);
	}
	assert_true(tl_run_until(f->base, handled_rows, &w, 20000));
	tl_run_for(f->base, 200);
	tl_stop_runtime(f->base, f->rt);
	tl_stop_runtime(f->base, rt2);
	print_message("two runtimes: %d + %d events\n", c1.handled, c2.handled);
	assert_int_equal(c1.handled + c2.handled, 600);
	assert_false(c1.out_of_order || c2.out_of_order);
	assert_int_equal(tl_count(f->conn, "SELECT count(*) FROM handled"),
			 600);
	assert_int_equal(tl_count(f->conn, "SELECT count(DISTINCT event_id)"
					   " FROM handled"),
			 600);
	assert_int_equal(tl_count(f->conn, "SELECT sum(quantity) FROM carts"),
			 tl_count(f->conn, "SELECT sum(quantity) FROM totals"));
	dis_runtime_free(rt2);
}

/* A child process: runs listener "carts" until SIGTERM (the runner). */
static int child_main(const char *conninfo, const dis_schema *schema)
{
	dis_runner *r;
	dis_query *q;
	dis_filter *flt;
	dis_listener_config cfg;
	char err[256];
	int rc;

	if (dis_runner_new(conninfo, schema, &r, err, sizeof(err)))
		return 2;
	dis_runtime_set_log(dis_runner_runtime(r), tl_log, NULL, DIS_LOG_DEBUG);
	dis_query_new(schema, &q);
	dis_query_add_filter(q, &flt);
	dis_filter_type(flt, "ShoppingCartAdded");
	dis_filter_type(flt, "ShoppingCartRemoved");
	dis_listener_config_init(&cfg);
	cfg.poll_interval_ms = 50;
	cfg.fetch_size = 13;
	if (dis_runtime_add_listener(dis_runner_runtime(r), "carts", q,
				     tl_cart_handler, NULL, &cfg))
		return 3;
	dis_query_free(q);
	rc = dis_runner_run(r);
	dis_runner_free(r);
	return rc == 0 ? 0 : 4;
}

/* Two processes run the same listener: every event handled once. */
static void test_two_processes(void **state)
{
	fixture *f = *state;
	pid_t pid[2];
	total_wait w = {f, 1000};
	PGconn *c = f->conn;
	int status;

	for (int i = 0; i < 2; i++) {
		pid[i] = fork();
		assert_true(pid[i] >= 0);
		if (pid[i] == 0)
			_exit(child_main(f->conninfo, f->schema));
	}
	for (int i = 0; i < 50; i++) {
		tl_append_carts(f->store, f->schema, 20, 1 + i % 4);
		usleep(2000);
	}
	for (double end = tl_now() + 30; !handled_rows(&w) && tl_now() < end;)
		usleep(20000);
	for (int i = 0; i < 2; i++) {
		kill(pid[i], SIGTERM);
		assert_int_equal(waitpid(pid[i], &status, 0), pid[i]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	print_message("two processes: %lld and %lld events by backend\n",
		      tl_count(c, "SELECT count(*) FROM handled GROUP BY pid "
				  "ORDER BY 1 LIMIT 1"),
		      tl_count(c, "SELECT count(*) FROM handled GROUP BY pid "
				  "ORDER BY 1 DESC LIMIT 1"));
	assert_int_equal(tl_count(c, "SELECT count(*) FROM handled"), 1000);
	assert_int_equal(tl_count(c, "SELECT count(DISTINCT event_id) FROM "
				     "handled"),
			 1000);
	/* The checkpoint is at or past the last event. */
	assert_int_equal(tl_count(c, "SELECT count(*) FROM event e, "
				     "event_listener l WHERE l.id = 'carts' "
				     "AND (e.tx, e.event_id) > "
				     "(l.checkpoint_tx, l.checkpoint_id)"),
			 0);
}

/* ---- poison events ---- */

static int64_t insert_garbage(PGconn *c)
{
	char *id = dt_scalar(c, "INSERT INTO event (event_type, payload, "
				"cart_id, product_id) VALUES "
				"('ShoppingCartAdded', '\\xd1000000ff0102', "
				"'cart_x', 'p') RETURNING event_id");
	int64_t n = atoll(id);

	free(id);
	return n;
}

typedef struct halt_seen {
	int calls;
	int code;
	char msg[512];
} halt_seen;

static void on_halt(void *arg, dis_runtime *rt, const char *id, int code,
		    const char *msg)
{
	halt_seen *h = arg;

	(void)rt;
	(void)id;
	h->calls++;
	h->code = code;
	snprintf(h->msg, sizeof(h->msg), "%s", msg);
}

static bool halted(void *arg)
{
	return ((halt_seen *)arg)->calls > 0;
}

/* A corrupt payload is dead-lettered and the listener goes on. */
static void test_corrupt_payload_dead_letter(void **state)
{
	fixture *f = *state;
	tl_counter c = {0};
	wait_n w = {&c, 2};
	dis_query *q = tl_cart_query(f->schema);
	dis_listener_config cfg = poller(20, true);
	int64_t bad;
	char sql[256], *err;
	dis_listener_stats s;

	cfg.on_poison = DIS_POISON_DEAD_LETTER;
	tl_append(f->store, tl_added(f->schema, "c1", "p", 1));
	bad = insert_garbage(f->conn);
	tl_append(f->store, tl_added(f->schema, "c2", "p", 2));
	start_carts(f, q, &c, &cfg);
	assert_true(tl_run_until(f->base, handled_n, &w, 10000));
	tl_run_for(f->base, 100);
	s = stats_of(f->rt, "carts");
	tl_stop_runtime(f->base, f->rt);
	assert_int_equal(c.handled, 2);
	assert_int_equal(s.dead_letters, 1);
	snprintf(sql, sizeof(sql),
		 "SELECT error FROM event_dead_letter WHERE listener_id = "
		 "'carts' AND event_id = %" PRId64 " AND action = 'skipped'",
		 bad);
	err = dt_scalar(f->conn, sql);
	assert_non_null(err);
	snprintf(sql, sizeof(sql), "event %" PRId64, bad);
	print_message("dead letter: %s\n", err);
	assert_non_null(strstr(err, sql));
	free(err);
	assert_int_equal(tl_count(f->conn, "SELECT count(*) FROM handled"), 2);
}

/* A corrupt payload stops the listener (per config) until a reset. */
static void test_corrupt_payload_stops(void **state)
{
	fixture *f = *state;
	tl_counter c = {0};
	wait_n w = {&c, 2};
	halt_seen h = {0};
	dis_query *q = tl_cart_query(f->schema);
	dis_listener_config cfg = poller(20, true);
	dis_position after_bad;
	int64_t bad;
	dis_listener_stats s;
	char sql[256];

	cfg.on_poison = DIS_POISON_STOP;
	dis_runtime_set_stopped_cb(f->rt, on_halt, &h);
	tl_append(f->store, tl_added(f->schema, "c1", "p", 1));
	bad = insert_garbage(f->conn);
	tl_append(f->store, tl_added(f->schema, "c2", "p", 2));
	start_carts(f, q, &c, &cfg);
	assert_true(tl_run_until(f->base, halted, &h, 10000));
	tl_run_for(f->base, 200);
	s = stats_of(f->rt, "carts");
	assert_int_equal(c.handled, 1); /* stopped in front of it */
	assert_int_equal(s.state, DIS_LISTENER_STOPPED);
	assert_int_equal(s.dead_letters, 1);
	assert_int_equal(h.code, DIS_ESERDE);
	print_message("stopped: %s\n", h.msg);
	snprintf(
		sql, sizeof(sql),
		"SELECT count(*) FROM event_dead_letter WHERE event_id = %" PRId64
		" AND action = 'stopped'",
		bad);
	assert_int_equal(tl_count(f->conn, sql), 1);
	/* The row names the event it stopped at. */
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM event_listener WHERE state = 'stopped'"
		 " AND last_error LIKE '%%event%%' AND failed_event_id = "
		 "%" PRId64 " AND attempts = 1",
		 bad);
	assert_int_equal(tl_count(f->conn, sql), 1);
	/* The operator skips it: the running listener resumes. */
	assert_int_equal(dis_store_position_of(f->store, bad, &after_bad), 0);
	assert_int_equal(reset_running(f, "carts", after_bad), 0);
	assert_true(tl_run_until(f->base, handled_n, &w, 10000));
	s = stats_of(f->rt, "carts");
	assert_int_equal(s.state, DIS_LISTENER_RUNNING);
	tl_stop_runtime(f->base, f->rt);
	assert_int_equal(tl_count(f->conn, "SELECT count(*) FROM handled"), 2);
}

/* ---- handler failures ---- */

static void test_retry_then_success(void **state)
{
	fixture *f = *state;
	tl_counter c = {0};
	wait_n w = {&c, 6};
	dis_query *q = tl_cart_query(f->schema);
	dis_listener_config cfg = poller(20, true);
	int64_t ids[6];
	dis_listener_stats s;

	cfg.retry.kind = DIS_RETRY_FIXED;
	cfg.retry.delay_ms = 20;
	cfg.retry.max_attempts = 5;
	for (int i = 0; i < 6; i++)
		ids[i] = tl_append(f->store, tl_added(f->schema, "c", "p", 1));
	c.fail_id = ids[3];
	c.fail_id_times = 2;
	start_carts(f, q, &c, &cfg);
	assert_true(tl_run_until(f->base, handled_n, &w, 10000));
	tl_run_for(f->base, 100);
	s = stats_of(f->rt, "carts");
	tl_stop_runtime(f->base, f->rt);
	assert_int_equal(c.max_attempt_seen, 3);
	assert_int_equal(s.retries, 2);
	assert_int_equal(s.errors, 2);
	/* Events 0..2 were handled in rolled-back batches too, but their
	 * effects committed once. */
	assert_int_equal(tl_count(f->conn, "SELECT count(*) FROM handled"), 6);
	assert_int_equal(tl_count(f->conn, "SELECT count(DISTINCT event_id) "
					   "FROM handled"),
			 6);
	assert_int_equal(tl_count(f->conn, "SELECT quantity FROM totals"), 6);
}

static void test_retry_exhausted_dead_letter(void **state)
{
	fixture *f = *state;
	tl_counter c = {0};
	wait_n w = {&c, 4};
	dis_query *q = tl_cart_query(f->schema);
	dis_listener_config cfg = poller(20, true);
	int64_t ids[5];
	char sql[256], *v;

	cfg.retry.kind = DIS_RETRY_EXPONENTIAL;
	cfg.retry.delay_ms = 5;
	cfg.retry.max_delay_ms = 20;
	cfg.retry.jitter = 0.5;
	cfg.retry.max_attempts = 3;
	cfg.on_poison = DIS_POISON_DEAD_LETTER;
	for (int i = 0; i < 5; i++)
		ids[i] = tl_append(f->store, tl_added(f->schema, "c", "p", 1));
	c.always_fail_id = (int)ids[2];
	start_carts(f, q, &c, &cfg);
	assert_true(tl_run_until(f->base, handled_n, &w, 10000));
	tl_run_for(f->base, 100);
	tl_stop_runtime(f->base, f->rt);
	assert_int_equal(tl_count(f->conn, "SELECT count(*) FROM handled"), 4);
	snprintf(sql, sizeof(sql),
		 "SELECT attempts || ' ' || error FROM event_dead_letter "
		 "WHERE event_id = %" PRId64,
		 ids[2]);
	v = dt_scalar(f->conn, sql);
	assert_non_null(v);
	print_message("dead letter: %s\n", v);
	assert_non_null(strstr(v, "3 always failing on"));
	free(v);
}

/*
 * Two failing events in one batch: A fails on its first attempt only, B
 * always. A's count survives B's failures (the batch cut in front of B
 * runs A again, as attempt 2), so B reaches its last attempt and is
 * dead-lettered, and the listener goes on.
 */
static void test_two_failing_events(void **state)
{
	fixture *f = *state;
	tl_counter c = {0};
	wait_n w = {&c, 4};
	dis_query *q = tl_cart_query(f->schema);
	dis_listener_config cfg = poller(20, true);
	int64_t ids[5];
	char sql[256];

	cfg.retry.kind = DIS_RETRY_FIXED;
	cfg.retry.delay_ms = 10;
	cfg.retry.max_attempts = 3;
	cfg.on_poison = DIS_POISON_DEAD_LETTER;
	for (int i = 0; i < 5; i++)
		ids[i] = tl_append(f->store, tl_added(f->schema, "c", "p", 1));
	c.early_fail_id = ids[1];
	c.first_ok = 2;
	c.always_fail_id = (int)ids[3];
	start_carts(f, q, &c, &cfg);
	assert_true(tl_run_until(f->base, handled_n, &w, 10000));
	tl_run_for(f->base, 100);
	tl_stop_runtime(f->base, f->rt);
	assert_int_equal(tl_count(f->conn, "SELECT count(*) FROM handled"), 4);
	snprintf(sql, sizeof(sql),
		 "SELECT attempts FROM event_dead_letter WHERE event_id = "
		 "%" PRId64,
		 ids[3]);
	assert_int_equal(tl_count(f->conn, sql), 3);
	assert_int_equal(
		tl_count(f->conn, "SELECT count(*) FROM event_dead_letter"), 1);
	assert_int_equal(c.max_attempt_seen, 3);
}

/* A COMMIT that fails (deferred constraint) is pinned on its event. */
static void test_commit_failure_isolated(void **state)
{
	fixture *f = *state;
	tl_counter c = {0};
	dis_query *q = tl_cart_query(f->schema);
	dis_listener_config cfg = poller(20, true);
	int64_t ids[6];
	char sql[256];
	total_wait w = {f, 5};

	/* Quantities 10, 11, 12, 10, 14, 15: the fourth clashes at COMMIT. */
	dt_exec(f->conn, "CREATE TABLE uniq (k BIGINT, CONSTRAINT uk UNIQUE (k)"
			 " DEFERRABLE INITIALLY DEFERRED);"
			 "CREATE FUNCTION f_uniq() RETURNS trigger LANGUAGE "
			 "plpgsql AS $$ BEGIN INSERT INTO uniq VALUES "
			 "(NEW.quantity); RETURN NEW; END $$;"
			 "CREATE TRIGGER t_uniq AFTER INSERT ON carts FOR EACH "
			 "ROW EXECUTE FUNCTION f_uniq()");
	cfg.retry.kind = DIS_RETRY_FIXED;
	cfg.retry.delay_ms = 10;
	cfg.retry.max_attempts = 2;
	cfg.on_poison = DIS_POISON_DEAD_LETTER;
	cfg.fetch_size = 100;
	for (int i = 0; i < 6; i++)
		ids[i] = tl_append(f->store, tl_added(f->schema, "c", "p",
						      i == 3 ? 10 : i + 10));
	start_carts(f, q, &c, &cfg);
	assert_true(tl_run_until(f->base, handled_rows, &w, 15000));
	tl_run_for(f->base, 200);
	tl_stop_runtime(f->base, f->rt);
	assert_int_equal(tl_count(f->conn, "SELECT count(*) FROM handled"), 5);
	snprintf(
		sql, sizeof(sql),
		"SELECT count(*) FROM event_dead_letter WHERE event_id = %" PRId64
		" AND attempts = 2",
		ids[3]);
	assert_int_equal(tl_count(f->conn, sql), 1);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM handled WHERE event_id = %" PRId64,
		 ids[3]);
	assert_int_equal(tl_count(f->conn, sql), 0);
}

/* ---- two runtimes, two threads ---- */

typedef struct thread_arg {
	const char *conninfo;
	const dis_schema *schema;
	const char *id;
	int want;
	int got;
	int rc;
} thread_arg;

/* Committed events (the handler also sees redelivered ones). */
static bool thread_done(void *arg)
{
	dis_listener_stats *st;
	size_t n;
	bool done;

	if (dis_runtime_stats(arg, &st, &n))
		return false;
	done = n == 1 && st[0].events_handled >= 200;
	dis_free(st);
	return done;
}

static void *thread_main(void *p)
{
	thread_arg *a = p;
	struct event_base *base = event_base_new();
	dis_runtime *rt;
	dis_query *q;
	dis_filter *flt;
	dis_listener_config cfg;
	tl_counter c = {0};
	tl_stop st = {0};
	char err[256];

	a->rc = -1;
	if (!base || dis_runtime_new(base, a->conninfo, a->schema, &rt, err,
				     sizeof(err)))
		return NULL;
	dis_runtime_set_log(rt, tl_log, NULL, DIS_LOG_DEBUG);
	dis_query_new(a->schema, &q);
	dis_query_add_filter(q, &flt);
	dis_filter_type(flt, "ShoppingCartAdded");
	dis_listener_config_init(&cfg);
	cfg.poll_interval_ms = 30;
	cfg.fetch_size = 17;
	dis_runtime_add_listener(rt, a->id, q, tl_cart_handler, &c, &cfg);
	dis_query_free(q);
	dis_runtime_start(rt);
	for (double end = tl_now() + 20; !thread_done(rt) && tl_now() < end;)
		tl_run_for(base, 10);
	dis_runtime_stop(rt, tl_stopped, &st);
	for (double end = tl_now() + 20; !st.done && tl_now() < end;)
		tl_run_for(base, 10);
	a->got = thread_done(rt) ? 200 : c.handled;
	/* No out-of-order check: both threads' projections update the same
	 * totals rows, so their batches may deadlock and be redelivered. */
	a->rc = st.done ? 0 : 1;
	dis_runtime_free(rt);
	event_base_free(base);
	return NULL;
}

/* Takes advisory lock 424242 in the batch transaction. */
static int locking_handler(void *arg, dis_batch *b, const dis_event *ev)
{
	PGresult *r = PQexec(dis_batch_conn(b),
			     "SELECT pg_advisory_xact_lock(424242)");
	int rc = 0;

	(void)ev;
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		rc = dis_batch_fail(b, DIS_EPG, "%s", PQresultErrorMessage(r));
	else
		(*(int *)arg)++;
	PQclear(r);
	return rc;
}

/*
 * A handler waiting for a lock another session holds gives up after
 * lock_timeout_ms and is retried, instead of holding the loop (and every
 * other listener of the runtime) until that session lets go.
 */
static void test_lock_wait_is_cut(void **state)
{
	fixture *f = *state;
	tl_counter c = {0};
	wait_n w = {&c, 1};
	dis_query *q = tl_cart_query(f->schema);
	dis_listener_config cfg = poller(20, true);
	dis_listener_stats s;
	int locked = 0;
	double t0;

	cfg.lock_timeout_ms = 200;
	cfg.retry.kind = DIS_RETRY_FIXED;
	cfg.retry.delay_ms = 50;
	cfg.retry.max_attempts = 0;
	dt_exec(f->conn, "SELECT pg_advisory_lock(424242)");
	tl_append(f->store, tl_added(f->schema, "c", "p", 1));
	assert_int_equal(dis_runtime_add_listener(f->rt, "locks", q,
						  locking_handler, &locked,
						  &cfg),
			 0);
	/* Another listener of the runtime goes on meanwhile. */
	assert_int_equal(dis_runtime_add_listener(f->rt, "carts", q,
						  tl_cart_handler, &c, NULL),
			 0);
	dis_query_free(q);
	assert_int_equal(dis_runtime_start(f->rt), 0);
	t0 = tl_now();
	assert_true(tl_run_until(f->base, handled_n, &w, 10000));
	tl_run_for(f->base, 1000);
	print_message("other listener handled after %.2f s\n", tl_now() - t0);
	s = stats_of(f->rt, "locks");
	assert_int_equal(locked, 0);
	assert_true(s.errors >= 2);
	assert_int_equal(s.state, DIS_LISTENER_RETRYING);
	/* Let go: the next attempt takes the lock. */
	dt_exec(f->conn, "SELECT pg_advisory_unlock(424242)");
	for (int i = 0; i < 100 && !locked; i++)
		tl_run_for(f->base, 50);
	tl_stop_runtime(f->base, f->rt);
	assert_int_equal(locked, 1);
}

static void test_two_threads(void **state)
{
	fixture *f = *state;
	pthread_t t[2];
	thread_arg a[2] = {{f->conninfo, f->schema, "thread-a", 200, 0, 0},
			   {f->conninfo, f->schema, "thread-b", 200, 0, 0}};

	for (int i = 0; i < 2; i++)
		assert_int_equal(
			pthread_create(&t[i], NULL, thread_main, &a[i]), 0);
	for (int i = 0; i < 20; i++) {
		tl_append_carts(f->store, f->schema, 10, 3);
		usleep(5000);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(a[i].rc, 0);
		assert_int_equal(a[i].got, 200);
	}
	assert_int_equal(tl_count(f->conn, "SELECT count(*) FROM handled "
					   "WHERE listener = 'thread-a'"),
			 200);
	assert_int_equal(tl_count(f->conn, "SELECT count(*) FROM handled "
					   "WHERE listener = 'thread-b'"),
			 200);
}

/* ---- a transaction holding the barrier ---- */

static bool waiting(void *arg)
{
	fixture *f = arg;

	return stats_of(f->rt, "carts").state == DIS_LISTENER_WAITING;
}

typedef struct blocked_by {
	fixture *f;
	int pid;
} blocked_by;

static bool named_blocker(void *arg)
{
	blocked_by *b = arg;
	dis_listener_stats s = stats_of(b->f->rt, "carts");

	return s.state == DIS_LISTENER_WAITING && s.blocker_pid == b->pid;
}

static void test_waiting_on_transaction(void **state)
{
	fixture *f = *state;
	tl_counter c = {0};
	wait_n w = {&c, 3};
	dis_query *q = tl_cart_query(f->schema);
	dis_listener_config cfg = poller(60000, true);
	PGconn *blocker = dt_connect(f->conninfo);
	blocked_by by = {f, 0};
	dis_listener_stats s;

	cfg.wait_warn_ms = 300;
	start_carts(f, q, &c, &cfg);
	assert_true(tl_run_until(f->base, caught_up, f, 10000));
	dt_exec(blocker, "BEGIN; SELECT pg_current_xact_id()");
	for (int i = 0; i < 3; i++)
		tl_append(f->store, tl_added(f->schema, "c", "p", 1));
	assert_true(tl_run_until(f->base, waiting, f, 5000));
	/*
	 * Named within a few rechecks. (A transaction that began before the
	 * blocker, such as an autovacuum ANALYZE of the event table, holds
	 * the barrier first and is rightly named while it runs.)
	 */
	by.pid = PQbackendPID(blocker);
	assert_true(tl_run_until(f->base, named_blocker, &by, 10000));
	tl_run_for(f->base, 400);
	s = stats_of(f->rt, "carts");
	print_message("waiting on backend %d for %.2f s, %" PRId64
		      " events behind\n",
		      s.blocker_pid, s.blocker_seconds, s.events_behind);
	assert_int_equal(s.state, DIS_LISTENER_WAITING);
	assert_int_equal(s.blocker_pid, PQbackendPID(blocker));
	assert_true(s.events_behind >= 3);
	assert_int_equal(c.handled, 0);
	/* It ends without a notification: the listener looks again. */
	dt_exec(blocker, "COMMIT");
	assert_true(tl_run_until(f->base, handled_n, &w, 3000));
	tl_run_for(f->base, 100);
	s = stats_of(f->rt, "carts");
	assert_int_equal(s.state, DIS_LISTENER_RUNNING);
	tl_stop_runtime(f->base, f->rt);
	PQfinish(blocker);
}

/* ---- stop and free from inside a handler ---- */

typedef struct inside {
	fixture *f;
	int calls;
	bool do_free;
	tl_stop stop;
} inside;

static int stopping_handler(void *arg, dis_batch *b, const dis_event *ev)
{
	inside *in = arg;
	int rc = tl_cart_handler(NULL, b, ev);

	if (++in->calls == 3) {
		if (in->do_free)
			dis_runtime_free(in->f->rt);
		else
			assert_int_equal(dis_runtime_stop(in->f->rt, tl_stopped,
							  &in->stop),
					 0);
	}
	return rc;
}

static bool three_calls(void *arg)
{
	return ((inside *)arg)->calls >= 3;
}

static void test_stop_inside_handler(void **state)
{
	fixture *f = *state;
	inside in = {f, 0, false, {0}};
	dis_query *q = tl_cart_query(f->schema);
	dis_listener_config cfg = poller(20, true);

	tl_append_carts(f->store, f->schema, 10, 10);
	assert_int_equal(dis_runtime_add_listener(f->rt, "carts", q,
						  stopping_handler, &in, &cfg),
			 0);
	dis_query_free(q);
	assert_int_equal(dis_runtime_start(f->rt), 0);
	assert_true(tl_run_until(f->base, tl_stop_done, &in.stop, 10000));
	assert_int_equal(in.stop.status, 0);
	assert_int_equal(in.calls, 3);
	/* The batch committed up to the event in hand. */
	assert_int_equal(tl_count(f->conn, "SELECT count(*) FROM handled"), 3);
	assert_int_equal(tl_db_checkpoint(f->conn, "carts").id,
			 tl_count(f->conn,
				  "SELECT max(event_id) FROM handled"));
	/* And it starts again. */
	in.stop.done = false;
	assert_int_equal(dis_runtime_start(f->rt), 0);
	total_wait w = {f, 10};
	assert_true(tl_run_until(f->base, handled_rows, &w, 10000));
	tl_stop_runtime(f->base, f->rt);
	assert_int_equal(tl_count(f->conn, "SELECT count(DISTINCT event_id) "
					   "FROM handled"),
			 10);
}

static void test_free_inside_handler(void **state)
{
	fixture *f = *state;
	inside in = {f, 0, true, {0}};
	dis_query *q = tl_cart_query(f->schema);
	dis_listener_config cfg = poller(20, true);

	tl_append_carts(f->store, f->schema, 10, 10);
	assert_int_equal(dis_runtime_add_listener(f->rt, "carts", q,
						  stopping_handler, &in, &cfg),
			 0);
	dis_query_free(q);
	assert_int_equal(dis_runtime_start(f->rt), 0);
	assert_true(tl_run_until(f->base, three_calls, &in, 10000));
	f->rt = NULL; /* freed by the handler */
	tl_run_for(f->base, 100);
	/* Freed mid-batch: the server rolled it back. */
	assert_int_equal(tl_count(f->conn, "SELECT count(*) FROM handled"), 0);
}

/* Freed with a stop pending: the callback gets DIS_ECANCELED once. */
static void test_free_with_stop_pending(void **state)
{
	fixture *f = *state;
	tl_stop st = {0};
	dis_query *q = tl_cart_query(f->schema);
	dis_listener_config cfg = poller(20, true);

	assert_int_equal(dis_runtime_add_listener(f->rt, "carts", q,
						  tl_cart_handler, NULL, &cfg),
			 0);
	dis_query_free(q);
	assert_int_equal(dis_runtime_start(f->rt), 0);
	tl_run_for(f->base, 5);
	assert_int_equal(dis_runtime_stop(f->rt, tl_stopped, &st), 0);
	assert_int_equal(dis_runtime_stop(f->rt, tl_stopped, &st), DIS_ESTATE);
	dis_runtime_free(f->rt);
	f->rt = NULL;
	assert_int_equal(st.calls, 1);
	assert_int_equal(st.status, DIS_ECANCELED);
	tl_run_for(f->base, 20);
	assert_int_equal(st.calls, 1);
}

/* Freed from inside its own stop callback. */
typedef struct free_in_stop {
	int calls;
} free_in_stop;

static void stop_then_free(void *arg, dis_runtime *rt, int status)
{
	free_in_stop *x = arg;

	assert_int_equal(status, 0);
	x->calls++;
	dis_runtime_free(rt);
}

static bool stop_called(void *arg)
{
	return ((free_in_stop *)arg)->calls > 0;
}

static bool five_handled(void *arg)
{
	fixture *f = arg;

	return tl_count(f->conn, "SELECT count(*) FROM handled") >= 5;
}

static void test_free_inside_stop_callback(void **state)
{
	fixture *f = *state;
	free_in_stop x = {0};
	dis_query *q = tl_cart_query(f->schema);
	dis_listener_config cfg = poller(20, true);

	tl_append_carts(f->store, f->schema, 5, 5);
	assert_int_equal(dis_runtime_add_listener(f->rt, "carts", q,
						  tl_cart_handler, NULL, &cfg),
			 0);
	dis_query_free(q);
	assert_int_equal(dis_runtime_start(f->rt), 0);
	/* Not a fixed time: a transaction elsewhere in the cluster may hold
	 * the barrier back for a while. */
	assert_true(tl_run_until(f->base, five_handled, f, 20000));
	assert_int_equal(dis_runtime_stop(f->rt, stop_then_free, &x), 0);
	f->rt = NULL;
	assert_true(tl_run_until(f->base, stop_called, &x, 10000));
	tl_run_for(f->base, 20);
	assert_int_equal(x.calls, 1);
	assert_int_equal(tl_count(f->conn, "SELECT count(*) FROM handled"), 5);
}

/* ---- reset replays ---- */

static void test_reset_replays(void **state)
{
	fixture *f = *state;
	tl_counter c = {0};
	wait_n w = {&c, 10};
	dis_query *q = tl_cart_query(f->schema);
	dis_listener_config cfg = poller(20, true);
	dis_listener_info *info;
	size_t n;

	tl_append_carts(f->store, f->schema, 10, 2);
	start_carts(f, q, &c, &cfg);
	assert_true(tl_run_until(f->base, handled_n, &w, 10000));
	tl_run_for(f->base, 50);
	assert_int_equal(dis_listener_list(f->store, &info, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(info[0].id, "carts");
	assert_int_equal(info[0].events_behind, 0);
	assert_true(info[0].checkpoint.tx > 0);
	dis_free(info);
	/* Reprojection: truncate the read model, move the checkpoint back. */
	dt_exec(f->conn, "TRUNCATE carts, totals, handled");
	assert_int_equal(reset_running(f, "carts", DIS_POSITION_START), 0);
	assert_int_equal(reset_running(f, "nope", DIS_POSITION_START),
			 DIS_ENOTFOUND);
	w.n = 20;
	assert_true(tl_run_until(f->base, handled_n, &w, 10000));
	tl_stop_runtime(f->base, f->rt);
	assert_int_equal(tl_count(f->conn, "SELECT count(*) FROM handled"), 10);
	assert_int_equal(tl_count(f->conn, "SELECT sum(quantity) FROM totals"),
			 tl_count(f->conn, "SELECT sum(quantity) FROM carts"));
}

/* ---- read-ahead ---- */

#define SQL_LISTENER_CONNS                                       \
	"SELECT count(*) FROM pg_stat_activity WHERE datname = " \
	"current_database() AND application_name = "             \
	"'disintegrate-listener'"
#define SQL_LISTENER_PIDS                                           \
	"SELECT coalesce(sum(pid), 0) FROM pg_stat_activity WHERE " \
	"datname = current_database() AND application_name = "      \
	"'disintegrate-listener'"

/* The ids the handler saw, in order; a reset thread started at one. */
typedef struct seen_ids {
	int64_t ids[4096];
	int n;
	int goal;         /* seen_n: this many */
	int64_t reset_at; /* start the reset when this id comes first */
	tl_reset job;
	PGconn *conn; /* for checks */
	pthread_t t;
	bool started;
} seen_ids;

static int record_id(void *arg, dis_batch *b, const dis_event *ev)
{
	seen_ids *s = arg;

	(void)b;
	if (s->n < 4096)
		s->ids[s->n++] = dis_event_id(ev);
	if (!s->started && dis_event_id(ev) == s->reset_at) {
		/* It waits for this batch's row lock: the next batch meets
		 * the moved checkpoint with its rows read ahead. */
		s->started = true;
		assert_int_equal(pthread_create(&s->t, NULL, tl_reset_thread,
						&s->job),
				 0);
		/* Until it waits (or this batch would not be the one). */
		for (int i = 0; i < 500; i++) {
			if (tl_count(s->conn,
				     "SELECT count(*) FROM pg_stat_activity "
				     "WHERE wait_event_type = 'Lock' AND "
				     "query LIKE 'UPDATE event_listener%'") > 0)
				break;
			usleep(10000);
		}
	}
	/* Slower from there: the reset gets in within a probe interval
	 * (100 ms), long before the first pass could end. */
	if (s->started)
		usleep(1000);
	return 0;
}

static bool seen_n(void *arg)
{
	seen_ids *s = arg;

	return s->n >= s->goal;
}

/* Adds listener `id` over the cart query, recording into `s`. */
static void add_recorder(fixture *f, const char *id, seen_ids *s,
			 const dis_listener_config *cfg)
{
	dis_query *q = tl_cart_query(f->schema);

	assert_int_equal(
		dis_runtime_add_listener(f->rt, id, q, record_id, s, cfg), 0);
	dis_query_free(q);
}

static int64_t *event_ids(fixture *f, int *n)
{
	PGresult *r = PQexec(f->conn, "SELECT event_id FROM event "
				      "ORDER BY tx, event_id");
	int64_t *ids;

	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	*n = PQntuples(r);
	ids = calloc((size_t)*n, sizeof(*ids));
	for (int i = 0; i < *n; i++)
		ids[i] = atoll(PQgetvalue(r, i, 0));
	PQclear(r);
	return ids;
}

/* Listener connections, once at most `n` are left (or `ms` went by). */
static long long conns_within(fixture *f, long long n, int ms)
{
	long long k = tl_count(f->conn, SQL_LISTENER_CONNS);

	for (int t = 0; t < ms && k > n; t += 50) {
		tl_run_for(f->base, 50);
		k = tl_count(f->conn, SQL_LISTENER_CONNS);
	}
	return k;
}

/*
 * Catching up with small batches, each batch after the first takes rows
 * read ahead on the second connection: every event once, in order; with
 * read_ahead off none is. Caught up, the second connection stays for
 * read_ahead_keep_ms, then it is gone.
 */
static void test_read_ahead_catch_up(void **state)
{
	fixture *f = *state;
	int nev;
	int64_t *ids;

	tl_append_carts(f->store, f->schema, 600, 50);
	ids = event_ids(f, &nev);
	assert_int_equal(nev, 600);
	for (int off = 0; off < 2; off++) {
		seen_ids *s = calloc(1, sizeof(*s));
		dis_listener_config cfg = poller(20, true);
		char id[16];
		dis_listener_stats st;

		s->reset_at = -1;
		s->goal = nev;
		cfg.fetch_size = 20;
		cfg.read_ahead = !off;
		cfg.read_ahead_keep_ms = 1000;
		snprintf(id, sizeof(id), "ahead%d", off);
		add_recorder(f, id, s, &cfg);
		if (!off)
			assert_int_equal(dis_runtime_start(f->rt), 0);
		assert_true(tl_run_until(f->base, seen_n, s, 20000));
		tl_run_for(f->base, 100);
		assert_int_equal(s->n, nev);
		for (int i = 0; i < nev; i++)
			assert_int_equal(s->ids[i], ids[i]);
		st = stats_of(f->rt, id);
		if (off) {
			assert_int_equal(st.read_ahead_batches, 0);
		} else {
			/* 30 batches: all but the first few read ahead. */
			assert_true(st.batches >= 30);
			assert_true(st.read_ahead_batches >= 20);
		}
		assert_int_equal(st.events_handled, (uint64_t)nev);
		/* Caught up: the listener's connection and the LISTEN one,
		 * and the read-ahead's for a second. */
		if (!off)
			assert_int_equal(tl_count(f->conn, SQL_LISTENER_CONNS),
					 3);
		assert_true(conns_within(f, 1 + 1 + off, 5000) <= 1 + 1 + off);
		free(s);
	}
	tl_stop_runtime(f->base, f->rt);
	free(ids);
}

/*
 * Caught up, the read-ahead's connection stays (read_ahead_keep_ms, 60 s
 * by default): a reset to the start is read again through it, with no
 * connection opened; every event twice, in order.
 */
static void test_read_ahead_kept(void **state)
{
	fixture *f = *state;
	seen_ids *s = calloc(1, sizeof(*s));
	dis_listener_config cfg = poller(20, true);
	int64_t *ids;
	int64_t pids;
	uint64_t first;
	int nev;

	tl_append_carts(f->store, f->schema, 300, 50);
	ids = event_ids(f, &nev);
	cfg.fetch_size = 20;
	s->reset_at = -1;
	s->goal = nev;
	add_recorder(f, "kept", s, &cfg);
	assert_int_equal(dis_runtime_start(f->rt), 0);
	assert_true(tl_run_until(f->base, seen_n, s, 20000));
	tl_run_for(f->base, 100);
	first = stats_of(f->rt, "kept").read_ahead_batches;
	assert_true(first >= 5);
	assert_int_equal(tl_count(f->conn, SQL_LISTENER_CONNS), 3);
	pids = tl_count(f->conn, SQL_LISTENER_PIDS);
	assert_int_equal(reset_running(f, "kept", DIS_POSITION_START), 0);
	s->goal = 2 * nev;
	assert_true(tl_run_until(f->base, seen_n, s, 20000));
	tl_run_for(f->base, 100);
	assert_int_equal(s->n, 2 * nev);
	for (int i = 0; i < 2 * nev; i++)
		assert_int_equal(s->ids[i], ids[i % nev]);
	assert_true(stats_of(f->rt, "kept").read_ahead_batches >= first + 5);
	/* The same three server processes. */
	assert_int_equal(tl_count(f->conn, SQL_LISTENER_CONNS), 3);
	assert_int_equal(tl_count(f->conn, SQL_LISTENER_PIDS), pids);
	tl_stop_runtime(f->base, f->rt);
	/* Stopped: no timer of the kept connection left on the loop. */
	assert_int_equal(
		event_base_get_num_events(f->base, EVENT_BASE_COUNT_ADDED), 0);
	free(ids);
	free(s);
}

/*
 * A reset that lands while the next batch's rows are read ahead: those
 * rows are dropped, and delivery starts over from the reset position.
 * What the handler saw is events 1..k in order, then all of them again.
 */
static void test_read_ahead_reset(void **state)
{
	fixture *f = *state;
	seen_ids *s = calloc(1, sizeof(*s));
	dis_listener_config cfg = poller(20, true);
	int nev, k;
	int64_t *ids;

	tl_append_carts(f->store, f->schema, 300, 50);
	ids = event_ids(f, &nev);
	cfg.fetch_size = 10;
	s->reset_at = ids[54];
	s->job = (tl_reset){.conninfo = f->conninfo,
			    .schema = f->schema,
			    .id = "carts",
			    .to = DIS_POSITION_START,
			    .rc = -100};
	s->conn = f->conn;
	add_recorder(f, "carts", s, &cfg);
	assert_int_equal(dis_runtime_start(f->rt), 0);
	assert_true(tl_run_until(f->base, tl_reset_done, &s->job, 20000));
	pthread_join(s->t, NULL);
	assert_int_equal(s->job.rc, 0);
	/* Run until the second pass has ended. */
	for (int i = 0; i < 400 && (s->n < nev + 55 || s->ids[s->n - 1] !=
							      ids[nev - 1]);
	     i++)
		tl_run_for(f->base, 50);
	tl_run_for(f->base, 100);
	tl_stop_runtime(f->base, f->rt);
	/* The first pass: 1..k, at least to the event that reset. */
	for (k = 0; k < s->n && k < nev && s->ids[k] == ids[k]; k++)
		;
	assert_true(k >= 55);
	assert_true(k < nev);
	/* Then everything from the start, once, in order. */
	assert_int_equal(s->n, k + nev);
	for (int i = 0; i < nev; i++)
		assert_int_equal(s->ids[k + i], ids[i]);
	assert_true(stats_of(f->rt, "carts").read_ahead_batches > 0);
	free(ids);
	free(s);
}

/*
 * A corrupt payload in the middle of rows read ahead (batches take them
 * ten at a time out of larger reads): that event is dead-lettered under
 * its own id and type, every other one is handled once, in order, and the
 * last batch, shorter than the rest, ends the catch-up.
 */
static void test_read_ahead_poison(void **state)
{
	fixture *f = *state;
	seen_ids *s = calloc(1, sizeof(*s));
	dis_listener_config cfg = poller(20, true);
	int nev, k = 0;
	int64_t *ids, bad;
	char sql[256];

	tl_append_carts(f->store, f->schema, 54, 54);
	bad = insert_garbage(f->conn);
	tl_append_carts(f->store, f->schema, 101, 101);
	ids = event_ids(f, &nev);
	assert_int_equal(nev, 156);
	cfg.fetch_size = 10;
	cfg.on_poison = DIS_POISON_DEAD_LETTER;
	s->reset_at = -1;
	s->goal = nev - 1;
	add_recorder(f, "carts", s, &cfg);
	assert_int_equal(dis_runtime_start(f->rt), 0);
	assert_true(tl_run_until(f->base, seen_n, s, 20000));
	tl_run_for(f->base, 100);
	tl_stop_runtime(f->base, f->rt);
	assert_int_equal(s->n, nev - 1);
	for (int i = 0; i < nev; i++)
		if (ids[i] != bad)
			assert_int_equal(s->ids[k++], ids[i]);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM event_dead_letter WHERE event_id = "
		 "%" PRId64 " AND event_type = 'ShoppingCartAdded' AND "
		 "action = 'skipped'",
		 bad);
	assert_int_equal(tl_count(f->conn, sql), 1);
	assert_int_equal(
		tl_count(f->conn, "SELECT count(*) FROM event_dead_letter"), 1);
	assert_true(stats_of(f->rt, "carts").read_ahead_batches > 0);
	assert_true(dis_position_cmp(tl_db_checkpoint(f->conn, "carts"),
				     (dis_position){0, 0}) > 0);
	free(ids);
	free(s);
}

/* ---- the runner ---- */

typedef struct runner_arg {
	dis_runner *r;
	int rc;
} runner_arg;

static void *runner_thread(void *p)
{
	runner_arg *a = p;

	a->rc = dis_runner_run(a->r);
	return NULL;
}

static void test_runner_stop(void **state)
{
	fixture *f = *state;
	dis_runner *r;
	runner_arg a = {0};
	pthread_t t;
	char err[256];
	dis_query *q = tl_cart_query(f->schema);
	dis_listener_config cfg = poller(20, true);
	total_wait w = {f, 50};

	assert_int_equal(dis_runner_new(f->conninfo, f->schema, &r, err,
					sizeof(err)),
			 0);
	dis_runner_set_signals(r, false);
	dis_runtime_set_log(dis_runner_runtime(r), tl_log, NULL, DIS_LOG_DEBUG);
	assert_int_equal(dis_runtime_add_listener(dis_runner_runtime(r),
						  "carts", q, tl_cart_handler,
						  NULL, &cfg),
			 0);
	dis_query_free(q);
	a.r = r;
	a.rc = -100;
	assert_int_equal(pthread_create(&t, NULL, runner_thread, &a), 0);
	tl_append_carts(f->store, f->schema, 50, 5);
	for (double end = tl_now() + 10; !handled_rows(&w) && tl_now() < end;)
		usleep(10000);
	dis_runner_stop(r);
	pthread_join(t, NULL);
	assert_int_equal(a.rc, 0);
	dis_runner_free(r);
	assert_int_equal(tl_count(f->conn, "SELECT count(*) FROM handled"), 50);
}

/* SIGTERM: the runner stops gracefully and returns 0. */
static void test_runner_signal(void **state)
{
	fixture *f = *state;
	pid_t pid = fork();
	int status;
	total_wait w = {f, 30};

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(child_main(f->conninfo, f->schema));
	tl_append_carts(f->store, f->schema, 30, 3);
	for (double end = tl_now() + 10; !handled_rows(&w) && tl_now() < end;)
		usleep(10000);
	kill(pid, SIGTERM);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(tl_count(f->conn, "SELECT count(*) FROM handled"), 30);
}

/* Bad arguments are errors with a message, never crashes. */
static void test_bad_arguments(void **state)
{
	fixture *f = *state;
	dis_query *q = tl_cart_query(f->schema);
	dis_schema *other = dt_schema(TL_SCHEMA);
	dis_query *q2 = tl_cart_query(other);
	char longid[DIS_LISTENER_ID_MAX + 2];

	memset(longid, 'x', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = '\0';
	assert_int_equal(dis_runtime_add_listener(f->rt, "", q, tl_cart_handler,
						  NULL, NULL),
			 DIS_EINVAL);
	assert_int_equal(dis_runtime_add_listener(f->rt, longid, q,
						  tl_cart_handler, NULL, NULL),
			 DIS_EINVAL);
	assert_int_equal(dis_runtime_add_listener(f->rt, "x", q2,
						  tl_cart_handler, NULL, NULL),
			 DIS_EINVAL);
	print_message("%s\n", dis_runtime_errmsg(f->rt));
	assert_int_equal(dis_runtime_add_listener(f->rt, "x", q,
						  tl_cart_handler, NULL, NULL),
			 0);
	assert_int_equal(dis_runtime_add_listener(f->rt, "x", q,
						  tl_cart_handler, NULL, NULL),
			 DIS_EINVAL);
	assert_int_equal(dis_runtime_stop(f->rt, NULL, NULL), DIS_ESTATE);
	assert_int_equal(dis_runtime_start(f->rt), 0);
	assert_int_equal(dis_runtime_start(f->rt), DIS_ESTATE);
	dis_runtime_free(NULL);
	dis_runner_free(NULL);
	dis_query_free(q);
	dis_query_free(q2);
	dis_schema_free(other);
}

/* A listener added while the runtime runs starts at once. */
static void test_add_while_running(void **state)
{
	fixture *f = *state;
	tl_counter c1 = {0}, c2 = {0};
	wait_n w1 = {&c1, 20}, w2 = {&c2, 20};
	dis_query *q = tl_cart_query(f->schema);
	dis_listener_config cfg = poller(60000, true);

	tl_append_carts(f->store, f->schema, 20, 4);
	assert_int_equal(dis_runtime_add_listener(f->rt, "first", q,
						  tl_cart_handler, &c1, &cfg),
			 0);
	assert_int_equal(dis_runtime_start(f->rt), 0);
	assert_true(tl_run_until(f->base, handled_n, &w1, 10000));
	assert_int_equal(dis_runtime_add_listener(f->rt, "second", q,
						  tl_cart_handler, &c2, &cfg),
			 0);
	dis_query_free(q);
	assert_true(tl_run_until(f->base, handled_n, &w2, 10000));
	tl_stop_runtime(f->base, f->rt);
}

/* A COMMIT that does not finish: the stop closes it after its timeout. */
static int sleepy_handler(void *arg, dis_batch *b, const dis_event *ev)
{
	(void)arg;
	(void)ev;
	if (dis_batch_exec(b, "INSERT INTO slow VALUES (1)", 0, NULL, NULL,
			   NULL))
		return DIS_EPG;
	return 0;
}

/* The batch's COMMIT is well inside its 3 s trigger (not about to end:
 * pg_stat_activity still shows a finished statement active briefly). */
static bool committing(void *arg)
{
	fixture *f = arg;

	return tl_count(f->conn,
			"SELECT count(*) FROM pg_stat_activity WHERE "
			"query = 'COMMIT' AND state = 'active' AND "
			"datname = current_database() AND clock_timestamp() - "
			"query_start BETWEEN interval '100 ms' AND "
			"interval '2 s'") > 0;
}

static void test_stop_timeout(void **state)
{
	fixture *f = *state;
	dis_query *q = tl_cart_query(f->schema);
	dis_listener_config cfg = poller(20, true);
	dis_runtime_options o;
	tl_stop st = {0};

	dt_exec(f->conn,
		"CREATE TABLE slow (a INT);"
		"CREATE FUNCTION f_slow() RETURNS trigger LANGUAGE "
		"plpgsql AS $$ BEGIN PERFORM pg_sleep(3); RETURN NULL;"
		" END $$;"
		"CREATE CONSTRAINT TRIGGER t_slow AFTER INSERT ON slow "
		"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE "
		"FUNCTION f_slow()");
	dis_runtime_options_init(&o);
	o.stop_timeout_ms = 300;
	assert_int_equal(dis_runtime_set_options(f->rt, &o), 0);
	tl_append(f->store, tl_added(f->schema, "c", "p", 1));
	assert_int_equal(dis_runtime_add_listener(f->rt, "slow", q,
						  sleepy_handler, NULL, &cfg),
			 0);
	dis_query_free(q);
	assert_int_equal(dis_runtime_start(f->rt), 0);
	assert_int_equal(dis_runtime_set_options(f->rt, &o), DIS_ESTATE);
	assert_true(tl_run_until(f->base, committing, f, 10000));
	assert_int_equal(dis_runtime_stop(f->rt, tl_stopped, &st), 0);
	assert_true(tl_run_until(f->base, tl_stop_done, &st, 2000));
	assert_int_equal(st.status, DIS_ETIMEDOUT);
	assert_int_equal(st.calls, 1);
	assert_int_equal(stats_of(f->rt, "slow").state, DIS_LISTENER_STOPPED);
}

/* ---- pipelined writes ---- */

/* Queued writes commit with the checkpoint; a failing one is pinned on
 * its event, which is retried and dead-lettered; the rest commit once. */
static void test_pipelined_writes(void **state)
{
	fixture *f = *state;
	tl_counter c = {0};
	dis_query *q = tl_cart_query(f->schema);
	dis_listener_config cfg = poller(20, true);
	total_wait w = {f, 199};
	int64_t bad = 0;
	char sql[256];

	cfg.retry.kind = DIS_RETRY_FIXED;
	cfg.retry.delay_ms = 5;
	cfg.retry.max_attempts = 3;
	cfg.on_poison = DIS_POISON_DEAD_LETTER;
	cfg.fetch_size = 64;
	for (int i = 0; i < 200; i++) {
		int64_t id =
			tl_append(f->store, tl_added(f->schema, "c", "p", 1));

		if (i == 137)
			bad = id;
	}
	c.always_fail_id = (int)bad;
	assert_int_equal(dis_runtime_add_listener(f->rt, "carts", q,
						  tl_cart_handler_q, &c, &cfg),
			 0);
	dis_query_free(q);
	assert_int_equal(dis_runtime_start(f->rt), 0);
	assert_true(tl_run_until(f->base, handled_rows, &w, 15000));
	tl_run_for(f->base, 100);
	tl_stop_runtime(f->base, f->rt);
	assert_int_equal(tl_count(f->conn, "SELECT count(*) FROM handled"),
			 199);
	assert_int_equal(tl_count(f->conn, "SELECT count(DISTINCT event_id) "
					   "FROM handled"),
			 199);
	/* Its carts and totals rows rolled back with it. */
	assert_int_equal(tl_count(f->conn, "SELECT count(*) FROM carts"), 199);
	assert_int_equal(tl_count(f->conn, "SELECT quantity FROM totals"), 199);
	snprintf(
		sql, sizeof(sql),
		"SELECT count(*) FROM event_dead_letter WHERE event_id = %" PRId64
		" AND attempts = 3 AND error LIKE '%%null value%%'",
		bad);
	assert_int_equal(tl_count(f->conn, sql), 1);
}

/* A handler may queue writes and then use the connection directly. */
static int mixed_handler(void *arg, dis_batch *b, const dis_event *ev)
{
	char id[24];
	const char *v[2];
	PGresult *r;
	int ok;

	(void)arg;
	snprintf(id, sizeof(id), "%" PRId64, dis_event_id(ev));
	v[0] = dis_batch_listener_id(b);
	v[1] = id;
	if (dis_batch_exec(b,
			   "INSERT INTO handled (listener, event_id) "
			   "VALUES ($1, $2::bigint)",
			   2, v, NULL, NULL))
		return DIS_EPG;
	/* Sees its own queued row: the queue is synced first. */
	r = PQexecParams(dis_batch_conn(b),
			 "SELECT count(*) FROM handled WHERE event_id = $1", 1,
			 NULL, &v[1], NULL, NULL, 0);
	ok = PQresultStatus(r) == PGRES_TUPLES_OK &&
	     !strcmp(PQgetvalue(r, 0, 0), "1");
	PQclear(r);
	return ok ? 0 : dis_batch_fail(b, DIS_EPG, "queued row not seen");
}

static void test_mixed_queue_and_conn(void **state)
{
	fixture *f = *state;
	dis_query *q = tl_cart_query(f->schema);
	dis_listener_config cfg = poller(20, true);
	total_wait w = {f, 30};

	cfg.retry.kind = DIS_RETRY_ABORT;
	tl_append_carts(f->store, f->schema, 30, 7);
	assert_int_equal(dis_runtime_add_listener(f->rt, "carts", q,
						  mixed_handler, NULL, &cfg),
			 0);
	dis_query_free(q);
	assert_int_equal(dis_runtime_start(f->rt), 0);
	assert_true(tl_run_until(f->base, handled_rows, &w, 10000));
	tl_run_for(f->base, 50);
	assert_int_equal(stats_of(f->rt, "carts").errors, 0);
	tl_stop_runtime(f->base, f->rt);
	assert_int_equal(tl_count(f->conn, "SELECT count(*) FROM handled"), 30);
}

/* A policy: the handler appends an event in the batch transaction. */
static int policy_handler(void *arg, dis_batch *b, const dis_event *ev)
{
	dis_event *out;
	int rc;

	(void)arg;
	rc = dis_event_new(dis_event_schema(ev), "Other", &out);
	if (!rc)
		rc = dis_event_set_long(out, "n", dis_event_id(ev));
	if (!rc)
		rc = dis_store_append(dis_batch_store(b), &out, 1, NULL, NULL,
				      NULL);
	dis_event_free(out);
	return rc;
}

static void test_policy_appends_in_batch(void **state)
{
	fixture *f = *state;
	dis_query *q = tl_cart_query(f->schema);
	dis_listener_config cfg = poller(20, true);
	const char *other[] = {"Other"};
	dis_query *qo = tl_query_types(f->schema, other, 1);
	tl_counter c = {0};
	wait_n w = {&c, 40};

	tl_append_carts(f->store, f->schema, 40, 3);
	assert_int_equal(dis_runtime_add_listener(f->rt, "policy", q,
						  policy_handler, NULL, &cfg),
			 0);
	/* A second listener sees the policy's events. */
	assert_int_equal(dis_runtime_add_listener(f->rt, "others", qo,
						  tl_cart_handler, &c, &cfg),
			 0);
	dis_query_free(q);
	dis_query_free(qo);
	assert_int_equal(dis_runtime_start(f->rt), 0);
	assert_true(tl_run_until(f->base, handled_n, &w, 10000));
	tl_run_for(f->base, 100);
	tl_stop_runtime(f->base, f->rt);
	assert_int_equal(tl_count(f->conn, "SELECT count(*) FROM event WHERE "
					   "event_type = 'Other'"),
			 40);
	assert_int_equal(c.handled, 40);
}

/* ---- disctl listeners / disctl reset ---- */

static const char *disctl_path;

static int run_disctl(const char *conninfo, const char *args, char *out,
		      size_t len)
{
	char cmd[1024];
	FILE *p;
	size_t n;
	int st;

	snprintf(cmd, sizeof(cmd), "'%s' --db '%s' %s 2>&1", disctl_path,
		 conninfo, args);
	p = popen(cmd, "r");
	assert_non_null(p);
	n = fread(out, 1, len - 1, p);
	out[n] = '\0';
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_disctl_listeners_reset(void **state)
{
	fixture *f = *state;
	tl_counter c = {0};
	wait_n w = {&c, 5};
	dis_query *q = tl_cart_query(f->schema);
	dis_listener_config cfg = poller(20, true);
	char out[4096], args[128];
	int64_t ids[5];

	if (!disctl_path)
		fail_msg("pass the disctl binary as the first argument");
	for (int i = 0; i < 5; i++)
		ids[i] = tl_append(f->store, tl_added(f->schema, "c", "p", 1));
	start_carts(f, q, &c, &cfg);
	assert_true(tl_run_until(f->base, handled_n, &w, 10000));
	tl_stop_runtime(f->base, f->rt);
	assert_int_equal(run_disctl(f->conninfo, "listeners", out, sizeof(out)),
			 0);
	print_message("%s", out);
	assert_non_null(strstr(out, "LISTENER"));
	assert_non_null(strstr(out, "carts"));
	/* The last state the runtime wrote: running, or waiting when a
	 * transaction elsewhere in the cluster held the barrier back. */
	assert_true(strstr(out, "running") || strstr(out, "waiting"));
	/* Back to after event 2: three events behind. */
	snprintf(args, sizeof(args), "reset carts --to %" PRId64, ids[1]);
	assert_int_equal(run_disctl(f->conninfo, args, out, sizeof(out)), 0);
	print_message("%s", out);
	assert_int_equal(run_disctl(f->conninfo, "listeners", out, sizeof(out)),
			 0);
	print_message("%s", out);
	assert_non_null(strstr(out, " 3 "));
	assert_int_equal(
		run_disctl(f->conninfo, "reset nope", out, sizeof(out)), 1);
	assert_int_equal(run_disctl(f->conninfo, "reset carts --to x:y", out,
				    sizeof(out)),
			 1);
	assert_int_equal(run_disctl(f->conninfo, "reset carts --to 0", out,
				    sizeof(out)),
			 0);
	/* The projection is rebuilt from the start on the next run. */
	dt_exec(f->conn, "TRUNCATE carts, totals, handled");
	c.handled = 0;
	assert_int_equal(dis_runtime_start(f->rt), 0);
	assert_true(tl_run_until(f->base, handled_n, &w, 10000));
	tl_stop_runtime(f->base, f->rt);
	assert_int_equal(tl_count(f->conn, "SELECT count(*) FROM handled"), 5);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_runs_event_listener, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_notifier_delivers, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_checkpoint_advances_past_other_types, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_two_runtimes_same_listener,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_processes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_corrupt_payload_dead_letter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_payload_stops,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_retry_then_success, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_retry_exhausted_dead_letter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_failing_events, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_lock_wait_is_cut, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_commit_failure_isolated,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_threads, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_waiting_on_transaction,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_inside_handler, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_free_inside_handler, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_free_with_stop_pending,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_inside_stop_callback,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_ahead_catch_up, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_read_ahead_kept, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_read_ahead_reset, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_read_ahead_poison, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reset_replays, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_runner_stop, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_runner_signal, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_arguments, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_add_while_running, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stop_timeout, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_pipelined_writes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_mixed_queue_and_conn,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_policy_appends_in_batch,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_disctl_listeners_reset,
						setup, teardown),
	};

	disctl_path = argc > 1 ? argv[1] : NULL;
	dt_require_pg();
	if (getenv("DIS_TEST_FILTER"))
		cmocka_set_test_filter(getenv("DIS_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
