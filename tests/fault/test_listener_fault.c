/*
 * The listener runtime under faults, while events are being appended:
 *   - its backends are killed (pg_terminate_backend) again and again;
 *   - the server restarts (needs the throwaway cluster of tests/run.sh:
 *     DIS_PGDATA, DIS_PG_BINDIR, DIS_PG_OWNER; fails without it);
 *   - the listener process is killed with SIGKILL mid-batch and restarted.
 * Each time, at the end, the read model equals a fresh replay of the log:
 * no event lost, none applied twice.
 */
#include "../pg/test_listener_util.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct fixture {
	char *conninfo;
	dis_schema *schema;
	dis_store *store;
	PGconn *conn;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));

	f->conninfo = dt_fresh_db();
	f->schema = dt_schema(TL_SCHEMA);
	f->store = dt_store(f->conninfo, f->schema);
	f->conn = dt_connect(f->conninfo);
	dt_exec(f->conn, TL_READ_MODEL);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;

	PQfinish(f->conn);
	dis_store_free(f->store);
	dis_schema_free(f->schema);
	free(f->conninfo);
	free(f);
	return 0;
}

/* Appends n events, 1 to 3 per transaction, surviving connection loss
 * (an append whose outcome was lost may be in the log: the replay tells). */
typedef struct appender {
	const char *conninfo;
	const dis_schema *schema;
	int n;
	int pause_us;
	volatile int done;
	int failures;
} appender;

static void *appender_main(void *p)
{
	appender *a = p;
	dis_store *st = NULL;
	char err[256];
	int i = 0;

	while (i < a->n) {
		dis_event *evs[3];
		int k = 1 + i % 3;

		if (!st && dis_store_open(a->conninfo, a->schema, &st, err,
					  sizeof(err))) {
			st = NULL;
			usleep(100000);
			continue;
		}
		for (int j = 0; j < k; j++) {
			char cart[16];

			snprintf(cart, sizeof(cart), "c%d", (i + j) % 10);
			evs[j] =
				tl_added(a->schema, cart, "p", 1 + (i + j) % 7);
		}
		if (dis_store_append(st, evs, (size_t)k, NULL, NULL, NULL)) {
			a->failures++;
			dis_store_free(st);
			st = NULL;
		} else {
			i += k;
		}
		for (int j = 0; j < k; j++)
			dis_event_free(evs[j]);
		usleep((useconds_t)a->pause_us);
	}
	dis_store_free(st);
	__atomic_store_n(&a->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static bool appender_done(appender *a)
{
	return __atomic_load_n(&a->done, __ATOMIC_SEQ_CST);
}

/* A connection that may have died with the server. */
static PGconn *alive(PGconn *c)
{
	PGresult *r = PQexec(c, "SELECT 1");

	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		PQreset(c);
	PQclear(r);
	return c;
}

/* Whether the listener's committed checkpoint is at the head of the log. */
static bool caught_up_db(fixture *f, const char *id)
{
	dis_position head;

	alive(dis_store_conn(f->store));
	if (dis_store_head(f->store, &head))
		return false;
	return dis_position_cmp(tl_db_checkpoint(alive(f->conn), id), head) >=
	       0;
}

typedef struct loop_ctx {
	fixture *f;
	const char *id;
} loop_ctx;

static bool caught_up_cb(void *arg)
{
	loop_ctx *c = arg;

	return caught_up_db(c->f, c->id);
}

static struct event_base *start_runtime(fixture *f, dis_runtime **rt)
{
	struct event_base *base = event_base_new();
	dis_runtime_options o;
	dis_listener_config cfg;
	dis_query *q = tl_cart_query(f->schema);
	char err[256];

	assert_non_null(base);
	if (dis_runtime_new(base, f->conninfo, f->schema, rt, err, sizeof(err)))
		fail_msg("runtime: %s", err);
	dis_runtime_set_log(*rt, tl_log, NULL, DIS_LOG_DEBUG);
	dis_runtime_options_init(&o);
	o.reconnect_min_ms = 20;
	o.reconnect_max_ms = 500;
	o.connect_timeout_ms = 2000;
	assert_int_equal(dis_runtime_set_options(*rt, &o), 0);
	dis_listener_config_init(&cfg);
	cfg.poll_interval_ms = 200;
	cfg.fetch_size = 50;
	assert_int_equal(dis_runtime_add_listener(*rt, "carts", q,
						  tl_cart_handler, NULL, &cfg),
			 0);
	dis_query_free(q);
	assert_int_equal(dis_runtime_start(*rt), 0);
	return base;
}

static void finish(fixture *f, struct event_base *base, dis_runtime *rt)
{
	loop_ctx c = {f, "carts"};
	dis_listener_stats *st;
	size_t n;

	assert_true(tl_run_until(base, caught_up_cb, &c, 60000));
	assert_int_equal(dis_runtime_stats(rt, &st, &n), 0);
	print_message("listener: %" PRIu64 " events in %" PRIu64
		      " batches, %" PRIu64 " reconnects, %" PRIu64
		      " errors, state %s\n",
		      st[0].events_handled, st[0].batches, st[0].reconnects,
		      st[0].errors, dis_listener_state_name(st[0].state));
	dis_free(st);
	tl_stop_runtime(base, rt);
	dis_runtime_free(rt);
	event_base_free(base);
	tl_check_replay(f->conninfo, f->schema, "carts");
}

static void test_terminate_backends(void **state)
{
	fixture *f = *state;
	dis_runtime *rt;
	struct event_base *base = start_runtime(f, &rt);
	appender a = {f->conninfo, f->schema, 3000, 1000, 0, 0};
	pthread_t t;
	long kills = 0;

	assert_int_equal(pthread_create(&t, NULL, appender_main, &a), 0);
	while (!appender_done(&a)) {
		tl_run_for(base, 150 + (int)(kills % 5) * 40);
		kills += tl_count(f->conn,
				  "SELECT count(pg_terminate_backend(pid)) "
				  "FROM pg_stat_activity WHERE "
				  "application_name = 'disintegrate-listener' "
				  "AND datname = current_database()");
	}
	pthread_join(t, NULL);
	print_message("terminated %ld backends\n", kills);
	assert_true(kills >= 10);
	finish(f, base, rt);
}

static void test_server_restart(void **state)
{
	fixture *f = *state;
	dis_runtime *rt;
	struct event_base *base;
	appender a = {f->conninfo, f->schema, 2000, 1000, 0, 0};
	pthread_t t;

	if (!dt_have_cluster())
		fail_msg("the fault suite restarts the server: run it with "
			 "tests/run.sh (DIS_PGDATA, DIS_PG_BINDIR)");
	base = start_runtime(f, &rt);
	assert_int_equal(pthread_create(&t, NULL, appender_main, &a), 0);
	for (int i = 0; i < 2; i++) {
		tl_run_for(base, 700);
		assert_int_equal(dt_pg_ctl("restart -m fast -w -t 60"), 0);
	}
	while (!appender_done(&a))
		tl_run_for(base, 100);
	pthread_join(t, NULL);
	print_message("appender: %d failed appends across the restarts\n",
		      a.failures);
	finish(f, base, rt);
}

/* A listener process whose handler is slow (batches take a while). */
static int slow_child(const char *conninfo, const dis_schema *schema);

static int slow_handler(void *arg, dis_batch *b, const dis_event *ev)
{
	(void)arg;
	usleep(300);
	return tl_cart_handler(NULL, b, ev);
}

static int slow_child(const char *conninfo, const dis_schema *schema)
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
	cfg.poll_interval_ms = 100;
	cfg.fetch_size = 100;
	if (dis_runtime_add_listener(dis_runner_runtime(r), "carts", q,
				     slow_handler, NULL, &cfg))
		return 3;
	dis_query_free(q);
	rc = dis_runner_run(r);
	dis_runner_free(r);
	return rc == 0 ? 0 : 4;
}

static void test_kill9_mid_batch(void **state)
{
	fixture *f = *state;
	appender a = {f->conninfo, f->schema, 3000, 0, 0, 0};
	int mid = 0, status;
	pid_t pid;

	appender_main(&a);
	for (int round = 0; round < 4; round++) {
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0)
			_exit(slow_child(f->conninfo, f->schema));
		usleep(300000 + round * 70000);
		/* Mid-batch: its connection is inside the batch transaction. */
		mid += (int)tl_count(f->conn,
				     "SELECT count(*) FROM pg_stat_activity "
				     "WHERE application_name = "
				     "'disintegrate-listener' AND state LIKE "
				     "'%in transaction%' AND datname = "
				     "current_database()") > 0;
		kill(pid, SIGKILL);
		assert_int_equal(waitpid(pid, &status, 0), pid);
	}
	print_message("killed 4 times, %d of them mid-batch; %lld events "
		      "handled so far\n",
		      mid, tl_count(f->conn, "SELECT count(*) FROM handled"));
	assert_true(mid >= 2);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(slow_child(f->conninfo, f->schema));
	for (double end = tl_now() + 60;
	     !caught_up_db(f, "carts") && tl_now() < end;)
		usleep(50000);
	assert_true(caught_up_db(f, "carts"));
	kill(pid, SIGTERM);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	tl_check_replay(f->conninfo, f->schema, "carts");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_terminate_backends, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_kill9_mid_batch, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_server_restart, setup,
						teardown),
	};

	dt_require_pg();
	if (getenv("DIS_TEST_FILTER"))
		cmocka_set_test_filter(getenv("DIS_TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
