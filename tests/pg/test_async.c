/*
 * The asynchronous decision runtime (disintegrate/async.h) on PostgreSQL:
 * every submitted decision gets exactly one callback; results, domain
 * errors, conflicts and statement errors arrive through it; overlapping
 * decisions never share a transaction; a failed transaction is split;
 * stop and free cancel cleanly (also from inside a callback); a failed
 * submit never calls back; lost connections are reported and replaced.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "testutil.h"
#include "counter.h"

#include <disintegrate/async.h>
#include <event2/event.h>

#include <stdio.h>
#include <time.h>

#define MAXJ 512

static dis_schema *schema;
static char *conninfo;
static dis_store *store;
static struct event_base *base;

/* One submitted decision and what came back for it. */
typedef struct rec {
	dis_decision *d;
	int calls;
	int rc;
	unsigned attempts;
	int domain;
	char msg[256];
} rec;

static rec recs[MAXJ];
static int nrecs;
static int ncalls;
static dis_async *freer;     /* free this runtime from the first callback */
static dis_async *stopper;   /* stop this runtime from the first callback */
static dis_async *submitter; /* submit from the callbacks: must fail */
static int submit_rc;
static dis_decision *late; /* submitted from a callback */

static int setup(void **state)
{
	(void)state;
	schema = dt_schema(counter_avsc);
	conninfo = dt_fresh_db();
	store = dt_store(conninfo, schema);
	base = event_base_new();
	assert_non_null(base);
	memset(recs, 0, sizeof(recs));
	nrecs = ncalls = 0;
	freer = stopper = submitter = NULL;
	submit_rc = 0;
	late = NULL;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < nrecs; i++)
		dis_decision_free(recs[i].d);
	dis_decision_free(late);
	event_base_free(base);
	dis_store_free(store);
	dis_schema_free(schema);
	free(conninfo);
	return 0;
}

static void done(void *arg, dis_decision *d, int rc)
{
	rec *r = arg;

	if (!r) {
		ncalls++;
		return;
	}
	assert_ptr_equal(r->d, d);
	r->calls++;
	r->rc = rc;
	r->attempts = dis_decision_attempts(d);
	r->domain = dis_decision_domain_code(d);
	snprintf(r->msg, sizeof(r->msg), "%s", dis_decision_errmsg(d));
	ncalls++;
	if (submitter) {
		struct add_params p = {.n = 1};

		assert_int_equal(counter_add(schema, "late", &p, &late), 0);
		submit_rc = dis_async_submit(submitter, late, done, NULL);
		submitter = NULL;
	}
	if (stopper) {
		dis_async *a = stopper;

		stopper = NULL;
		dis_async_stop(a);
	}
	if (freer) {
		dis_async *a = freer;

		freer = NULL;
		dis_async_free(a);
	}
}

static rec *submit(dis_async *a, const char *id, const struct add_params *p)
{
	rec *r = &recs[nrecs];

	assert_true(nrecs < MAXJ);
	assert_int_equal(counter_add(schema, id, p, &r->d), 0);
	assert_int_equal(dis_async_submit(a, r->d, done, r), 0);
	nrecs++;
	return r;
}

static bool all_called(void *arg)
{
	(void)arg;
	return ncalls >= nrecs;
}

static void run_until(bool (*cond)(void *), void *arg, int ms)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!cond(arg)) {
		struct timeval tv = {0, 5000};
		double el;

		clock_gettime(CLOCK_MONOTONIC, &t);
		el = (double)(t.tv_sec - t0.tv_sec) +
		     (double)(t.tv_nsec - t0.tv_nsec) / 1e9;
		if (el * 1000 > ms)
			fail_msg("timed out: %d of %d callbacks", ncalls,
				 nrecs);
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
}

static dis_async *new_async(unsigned conns, unsigned attempts)
{
	dis_async_options o;
	dis_async *a = NULL;
	char err[256];

	dis_async_options_init(&o);
	o.connections = conns;
	o.max_attempts = attempts;
	o.retry_base_us = 100;
	o.retry_max_us = 2000;
	if (dis_async_new(base, conninfo, schema, &o, &a, err, sizeof(err)))
		fail_msg("dis_async_new: %s", err);
	return a;
}

static long long total_of(const char *id)
{
	char sql[256];
	char *v;
	long long n;
	PGconn *c = dis_store_conn(store);

	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM event WHERE counter_id = '%s'", id);
	v = dt_scalar(c, sql);
	n = v ? atoll(v) : -1;
	free(v);
	return n;
}

/* Every decision gets one callback with 0; its events get their ids. */
static void test_results(void **state)
{
	static char ids[40][16];
	dis_async *a = new_async(2, 5);
	dis_async_stats st;

	(void)state;
	for (int i = 0; i < 40; i++) {
		struct add_params p = {.n = i + 1};

		snprintf(ids[i], sizeof(ids[i]), "c%d", i);
		submit(a, ids[i], &p);
	}
	assert_int_equal(dis_async_pending(a), 40);
	assert_int_equal(ncalls, 0); /* never from inside submit */
	run_until(all_called, NULL, 30000);
	assert_int_equal(dis_async_pending(a), 0);
	for (int i = 0; i < 40; i++) {
		const dis_event *ev;

		assert_int_equal(recs[i].calls, 1);
		if (recs[i].rc != 0)
			fail_msg("decision %d: %s", i, recs[i].msg);
		assert_int_equal(dis_decision_event_count(recs[i].d), 1);
		ev = dis_decision_event(recs[i].d, 0);
		assert_true(dis_event_id(ev) > 0);
		assert_int_equal(total_of(ids[i]), 1);
	}
	dis_async_get_stats(a, &st);
	assert_int_equal(st.submitted, 40);
	assert_int_equal(st.succeeded, 40);
	assert_int_equal(st.appends, 40);
	/* Pipelined: fewer transactions than decisions. */
	assert_true(st.transactions < 40);
	dis_async_free(a);
	assert_int_equal(ncalls, 40);
}

/*
 * Twenty decisions on one counter with a limit, all in flight at once:
 * overlapping boundaries never share a transaction, so exactly ten fit
 * and the rest are refused (domain error) or conflict, never over the
 * limit.
 */
static void test_overlap(void **state)
{
	dis_async *a = new_async(2, 50);
	int ok = 0, refused = 0;
	dis_async_stats st;

	(void)state;
	for (int i = 0; i < 20; i++) {
		struct add_params p = {.n = 10, .limit = 100};

		submit(a, "hot", &p);
	}
	run_until(all_called, NULL, 60000);
	for (int i = 0; i < 20; i++) {
		assert_int_equal(recs[i].calls, 1);
		if (recs[i].rc == 0)
			ok++;
		else if (recs[i].rc == DIS_EDOMAIN && recs[i].domain == 7)
			refused++;
		else
			fail_msg("decision %d: %d %s", i, recs[i].rc,
				 recs[i].msg);
	}
	assert_int_equal(ok, 10);
	assert_int_equal(refused, 10);
	assert_int_equal(total_of("hot"), 10);
	dis_async_get_stats(a, &st);
	assert_true(st.held_back > 0 || st.conflicts > 0);
	dis_async_free(a);
}

/* Process hook: append a conflicting event from another connection on the
 * first attempt(s) of the decisions on counter "victim". */
static int inject_left;

static int inject_process(dis_ctx *ctx, const void *const *states,
			  const void *params)
{
	const struct counter *c = states[0];

	if (inject_left > 0 && !strcmp(c->id, "victim")) {
		dis_event *ev;

		inject_left--;
		assert_int_equal(dis_event_new(schema, "Added", &ev), 0);
		dis_event_set_string(ev, "counter_id", "victim");
		dis_event_set_long(ev, "n", 1000);
		assert_int_equal(
			dis_store_append(store, &ev, 1, NULL, NULL, NULL), 0);
		dis_event_free(ev);
	}
	return add_process(ctx, states, params);
}

static rec *submit_inject(dis_async *a, const char *id)
{
	rec *r = &recs[nrecs];
	struct counter init = {.id = id};
	struct add_params p = {.n = 1};

	assert_int_equal(dis_decision_new(schema, "Inject", inject_process, &p,
					  sizeof(p), &r->d),
			 0);
	assert_int_equal(dis_decision_add_state(r->d, &counter_def, &init), 0);
	assert_int_equal(dis_async_submit(a, r->d, done, r), 0);
	nrecs++;
	return r;
}

/*
 * A conflict comes through the callback (DIS_ECONFLICT after the last
 * attempt) while the decision sharing its transaction commits.
 */
static void test_conflict(void **state)
{
	dis_async *a = new_async(1, 1);
	dis_async_stats st;
	rec *victim, *other;

	(void)state;
	inject_left = 1;
	victim = submit_inject(a, "victim");
	other = submit_inject(a, "bystander");
	run_until(all_called, NULL, 30000);
	assert_int_equal(victim->calls, 1);
	assert_int_equal(victim->rc, DIS_ECONFLICT);
	assert_non_null(strstr(victim->msg, "conflict"));
	assert_int_equal(other->calls, 1);
	assert_int_equal(other->rc, 0);
	assert_int_equal(total_of("victim"), 1); /* only the injected one */
	assert_int_equal(total_of("bystander"), 1);
	dis_async_get_stats(a, &st);
	assert_int_equal(st.conflicts, 1);
	assert_int_equal(st.gave_up, 1);
	assert_int_equal(st.transactions, 1);
	assert_int_equal(st.appends, 2);
	dis_async_free(a);
}

/* With attempts left, the conflicting decision reloads and commits. */
static void test_conflict_retry(void **state)
{
	dis_async *a = new_async(2, 5);
	rec *victim;

	(void)state;
	inject_left = 2;
	victim = submit_inject(a, "victim");
	run_until(all_called, NULL, 30000);
	assert_int_equal(victim->calls, 1);
	if (victim->rc != 0)
		fail_msg("victim: %s", victim->msg);
	assert_int_equal(victim->attempts, 3);
	assert_int_equal(total_of("victim"), 3);
	dis_async_free(a);
}

/* Domain errors and process failures come through the callback. */
static void test_domain(void **state)
{
	dis_async *a = new_async(1, 5);
	struct add_params refuse = {.n = 5, .limit = 1};
	struct add_params broken = {.n = 1, .fail_with = DIS_EIO};
	struct add_params nothing = {.n = 1, .emit_nothing = true};
	struct add_params unknown = {.n = 1, .emit_unknown = true};
	rec *r1, *r2, *r3, *r4;

	(void)state;
	r1 = submit(a, "d1", &refuse);
	r2 = submit(a, "d2", &broken);
	r3 = submit(a, "d3", &nothing);
	r4 = submit(a, "d4", &unknown);
	run_until(all_called, NULL, 30000);
	assert_int_equal(r1->rc, DIS_EDOMAIN);
	assert_int_equal(r1->domain, 7);
	assert_non_null(strstr(r1->msg, "passes"));
	assert_int_equal(r2->rc, DIS_EIO);
	assert_int_equal(r3->rc, 0);
	assert_int_equal(dis_decision_event_count(r3->d), 0);
	assert_int_equal(r4->rc, DIS_ENOTFOUND);
	for (int i = 0; i < 4; i++)
		assert_int_equal(recs[i].calls, 1);
	assert_int_equal(total_of("d1") + total_of("d2") + total_of("d3") +
				 total_of("d4"),
			 0);
	dis_async_free(a);
}

/*
 * A statement error fails the transaction: its decisions are tried one
 * by one, the failing one gets the error, the others commit.
 */
static void test_split(void **state)
{
	dis_async *a = new_async(1, 5);
	struct add_params p = {.n = 1};
	dis_async_stats st;
	rec *bad;

	(void)state;
	dt_exec(dis_store_conn(store),
		"ALTER TABLE event ADD CONSTRAINT no_evil "
		"CHECK (counter_id IS DISTINCT FROM 'evil')");
	submit(a, "good1", &p);
	bad = submit(a, "evil", &p);
	submit(a, "good2", &p);
	run_until(all_called, NULL, 30000);
	assert_int_equal(bad->calls, 1);
	assert_int_equal(bad->rc, DIS_EPG);
	assert_non_null(strstr(bad->msg, "no_evil"));
	assert_int_equal(recs[0].rc, 0);
	assert_int_equal(recs[2].rc, 0);
	assert_int_equal(total_of("good1"), 1);
	assert_int_equal(total_of("good2"), 1);
	assert_int_equal(total_of("evil"), 0);
	dis_async_get_stats(a, &st);
	assert_int_equal(st.split, 1);
	/* The connection is usable afterwards. */
	submit(a, "good3", &p);
	run_until(all_called, NULL, 30000);
	assert_int_equal(recs[3].rc, 0);
	dis_async_free(a);
}

/* Free cancels everything pending, from inside the call, once each. */
static void test_free_cancels(void **state)
{
	static char ids[30][16];
	dis_async *a = new_async(2, 5);

	(void)state;
	for (int i = 0; i < 30; i++) {
		struct add_params p = {.n = 1};

		snprintf(ids[i], sizeof(ids[i]), "f%d", i);
		submit(a, ids[i], &p);
	}
	dis_async_free(a);
	assert_int_equal(ncalls, 30);
	for (int i = 0; i < 30; i++) {
		assert_int_equal(recs[i].calls, 1);
		assert_int_equal(recs[i].rc, DIS_ECANCELED);
	}
	/* Nothing more comes from the loop. */
	{
		struct timeval tv = {0, 100000};

		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	assert_int_equal(ncalls, 30);
}

/*
 * Freeing the runtime from inside a callback: every other decision still
 * gets exactly one callback (its outcome or DIS_ECANCELED), a submit from
 * a callback during the free fails, and nothing touches freed memory.
 */
static void test_free_in_callback(void **state)
{
	static char ids[60][16];
	dis_async *a = new_async(2, 5);

	(void)state;
	for (int i = 0; i < 60; i++) {
		struct add_params p = {.n = 1};

		snprintf(ids[i], sizeof(ids[i]), "g%d", i);
		submit(a, ids[i], &p);
	}
	freer = a;
	run_until(all_called, NULL, 30000);
	for (int i = 0; i < 60; i++) {
		assert_int_equal(recs[i].calls, 1);
		assert_true(recs[i].rc == 0 || recs[i].rc == DIS_ECANCELED);
	}
	/* The loop holds nothing of the freed runtime. */
	{
		struct timeval tv = {0, 200000};

		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	assert_int_equal(ncalls, 60);
}

/*
 * Stop: decisions whose append has not been sent are canceled at once;
 * appends in flight finish with their real outcome; pending reaches 0;
 * submit is refused afterwards and never calls back.
 */
static void test_stop(void **state)
{
	static char ids[300][16];
	dis_async *a = new_async(2, 5);
	int ok = 0, canceled = 0;
	size_t before;
	rec extra = {0};
	struct add_params p = {.n = 1};

	(void)state;
	for (int i = 0; i < 300; i++) {
		snprintf(ids[i], sizeof(ids[i]), "s%d", i);
		submit(a, ids[i], &p);
	}
	/* Stop from the first callback: some appends are then in flight. */
	stopper = a;
	run_until(all_called, NULL, 30000);
	assert_int_equal(dis_async_pending(a), 0);
	for (int i = 0; i < 300; i++) {
		assert_int_equal(recs[i].calls, 1);
		if (recs[i].rc == 0) {
			ok++;
			assert_int_equal(total_of(ids[i]), 1);
		} else {
			assert_int_equal(recs[i].rc, DIS_ECANCELED);
			assert_int_equal(total_of(ids[i]), 0);
			canceled++;
		}
	}
	assert_true(ok > 0);
	assert_true(canceled > 0);
	assert_int_equal(counter_add(schema, "late", &p, &extra.d), 0);
	assert_int_equal(dis_async_submit(a, extra.d, done, &extra),
			 DIS_ESTATE);
	before = (size_t)ncalls;
	dis_async_free(a);
	assert_int_equal((size_t)ncalls, before);
	assert_int_equal(extra.calls, 0);
	dis_decision_free(extra.d);
}

/* A failed submit never calls back. */
static void test_submit_fails(void **state)
{
	dis_async *a = new_async(1, 5);
	dis_schema *other = dt_schema(counter_avsc);
	struct add_params p = {.n = 1};
	rec r = {0};

	(void)state;
	assert_int_equal(counter_add(other, "x", &p, &r.d), 0);
	assert_int_equal(dis_async_submit(a, r.d, done, &r), DIS_EINVAL);
	assert_int_equal(dis_async_submit(a, NULL, done, &r), DIS_EINVAL);
	assert_int_equal(dis_async_submit(a, r.d, NULL, &r), DIS_EINVAL);
	assert_int_equal(dis_async_pending(a), 0);
	dis_async_free(a);
	assert_int_equal(r.calls, 0);
	assert_int_equal(ncalls, 0);
	dis_decision_free(r.d);
	dis_schema_free(other);
}

/* No server: the decisions fail with DIS_ECONN through the callback. */
static void test_no_server(void **state)
{
	dis_async_options o;
	dis_async *a = NULL;
	struct add_params p = {.n = 1};
	char err[256];
	rec *r;

	(void)state;
	dis_async_options_init(&o);
	o.connections = 1;
	o.connect_timeout_ms = 2000;
	assert_int_equal(dis_async_new(base, "host=/nonexistent port=1", schema,
				       &o, &a, err, sizeof(err)),
			 0);
	r = submit(a, "n", &p);
	run_until(all_called, NULL, 20000);
	assert_int_equal(r->calls, 1);
	assert_int_equal(r->rc, DIS_ECONN);
	assert_non_null(strstr(r->msg, "connection"));
	dis_async_free(a);
	assert_int_equal(r->calls, 1);
}

static bool count_at_least(void *arg)
{
	return ncalls >= *(int *)arg;
}

/*
 * The server ends the runtime's connections mid-stream: every decision
 * gets one callback (0, or DIS_ECONN when its append was in flight), the
 * database holds exactly the successful ones, and later decisions work.
 */
static void test_connection_lost(void **state)
{
	static char ids[200][16];
	dis_async *a = new_async(2, 5);
	PGconn *killer = dt_connect(conninfo);
	int want = 20, lost = 0;

	(void)state;
	for (int i = 0; i < 200; i++) {
		struct add_params p = {.n = 1};

		snprintf(ids[i], sizeof(ids[i]), "k%d", i);
		submit(a, ids[i], &p);
	}
	run_until(count_at_least, &want, 30000);
	dt_exec(killer, "SELECT pg_terminate_backend(pid) FROM "
			"pg_stat_activity WHERE application_name = "
			"'disintegrate-async'");
	run_until(all_called, NULL, 60000);
	for (int i = 0; i < 200; i++) {
		assert_int_equal(recs[i].calls, 1);
		if (recs[i].rc == 0) {
			assert_int_equal(total_of(ids[i]), 1);
		} else {
			if (recs[i].rc != DIS_ECONN)
				fail_msg("decision %d: %d %s", i, recs[i].rc,
					 recs[i].msg);
			assert_non_null(strstr(recs[i].msg, "unknown"));
			lost++;
		}
	}
	/* Later decisions go through the new connections. */
	{
		struct add_params p = {.n = 1};
		rec *r = submit(a, "after", &p);

		run_until(all_called, NULL, 30000);
		if (r->rc != 0)
			fail_msg("after reconnect: %s", r->msg);
	}
	print_message("%d appends were in flight when the connections "
		      "were lost\n",
		      lost);
	PQfinish(killer);
	dis_async_free(a);
}

/* A callback may submit; during free that fails (and never calls back). */
static void test_submit_from_callback(void **state)
{
	dis_async *a = new_async(1, 5);
	struct add_params p = {.n = 1};

	(void)state;
	submit(a, "x1", &p);
	submitter = a;
	run_until(all_called, NULL, 30000);
	assert_int_equal(submit_rc, 0);
	/* The late one (NULL arg) is done or pending; free ends it. */
	assert_int_equal(dis_async_pending(a) + (size_t)ncalls, 2);
	dis_async_free(a);
	assert_int_equal(ncalls, 2);
}

/* Runs the loop for `ms` milliseconds. */
static void pause_ms(int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static int count_notifies(PGconn *l)
{
	PGnotify *n;
	int k = 0;

	PQconsumeInput(l);
	while ((n = PQnotifies(l)) != NULL) {
		PQfreemem(n);
		k++;
	}
	return k;
}

/*
 * A's append commits in the pipeline that also carries B's load, which
 * the server refuses (invalid UTF-8): the notification after the commit
 * went down with the load's implicit transaction. A's events are
 * committed, so the notification is sent on its own.
 */
static void test_notify_survives_a_failed_load(void **state)
{
	dis_async *a = new_async(1, 5);
	PGconn *l = dt_connect(conninfo);
	struct add_params p = {.n = 1};
	rec *ra, *rb;

	(void)state;
	dt_exec(l, "LISTEN new_events");
	pause_ms(500); /* connected and idle */
	ra = submit(a, "a1", &p);
	/* One pass of the loop sends A's load; B queues behind it and
	 * goes with A's append. */
	event_base_loop(base, EVLOOP_NONBLOCK);
	rb = submit(a, "\xff", &p);
	run_until(all_called, NULL, 20000);
	assert_int_equal(ra->rc, 0);
	assert_int_not_equal(rb->rc, 0);
	assert_int_equal(total_of("a1"), 1);
	pause_ms(300);
	assert_true(count_notifies(l) >= 1);
	PQfinish(l);
	dis_async_free(a);
}

/*
 * A load whose statement cannot be prepared (a domain id column the table
 * lacks) ends its decision with the error, instead of being sent again
 * and again.
 */
static void test_load_that_cannot_prepare(void **state)
{
	dis_async *a = new_async(1, 5);
	PGconn *c = dt_connect(conninfo);
	struct add_params p = {.n = 1};
	dis_async_stats st;
	rec *r;

	(void)state;
	pause_ms(500);
	dt_exec(c, "ALTER TABLE event RENAME COLUMN counter_id TO "
		   "counter_id_old");
	r = submit(a, "p1", &p);
	run_until(all_called, NULL, 10000);
	assert_int_equal(r->rc, DIS_EPG);
	assert_non_null(strstr(r->msg, "preparing the load"));
	dis_async_get_stats(a, &st);
	assert_true(st.pipelines < 10);
	dt_exec(c, "ALTER TABLE event RENAME COLUMN counter_id_old TO "
		   "counter_id");
	PQfinish(c);
	dis_async_free(a);
}

/*
 * A connection is lost while its load waits on a lock, and will not
 * reconnect for a minute: the load goes at once to the other connection,
 * idle, instead of waiting for the reconnect.
 */
static void test_lost_load_moves_to_idle_connection(void **state)
{
	dis_async_options o;
	dis_async *a = NULL;
	PGconn *locker = dt_connect(conninfo);
	PGconn *admin = dt_connect(conninfo);
	struct add_params p = {.n = 1};
	char err[256], *k;
	rec *r;

	(void)state;
	dis_async_options_init(&o);
	o.connections = 2;
	o.reconnect_min_ms = 60000;
	o.reconnect_max_ms = 60000;
	if (dis_async_new(base, conninfo, schema, &o, &a, err, sizeof(err)))
		fail_msg("dis_async_new: %s", err);
	pause_ms(500);
	dt_exec(locker, "BEGIN; LOCK TABLE event IN ACCESS EXCLUSIVE MODE");
	r = submit(a, "s1", &p);
	pause_ms(300); /* its load waits on the lock */
	k = dt_scalar(admin, "SELECT count(pg_terminate_backend(pid)) FROM "
			     "pg_stat_activity WHERE application_name = "
			     "'disintegrate-async' AND wait_event_type = "
			     "'Lock'");
	assert_string_equal(k, "1");
	free(k);
	dt_exec(locker, "COMMIT");
	run_until(all_called, NULL, 5000);
	assert_int_equal(r->rc, 0);
	assert_int_equal(total_of("s1"), 1);
	PQfinish(locker);
	PQfinish(admin);
	dis_async_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_results, setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_notify_survives_a_failed_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_that_cannot_prepare,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_lost_load_moves_to_idle_connection, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_overlap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conflict, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conflict_retry, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_domain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_split, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_cancels, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_free_in_callback, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_submit_fails, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_no_server, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_connection_lost, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_submit_from_callback,
						setup, teardown),
	};

	/* Shared helpers this file does not need. */
	(void)counter_read;
	(void)counter_at;
	dt_require_pg();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
