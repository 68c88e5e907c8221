/*
 * The decision maker on PostgreSQL: multi-state loads and their version,
 * empty decisions, conflict retries between connections, serialised
 * concurrent decisions, and decisions inside an open transaction (a
 * listener's batch).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <cmocka.h>

#include "testutil.h"
#include "counter.h"
#include "decision-internal.h"

static dis_schema *schema;
static char *conninfo;
static dis_store *store;
static dis_maker *maker;

static int setup(void **state)
{
	(void)state;
	schema = dt_schema(counter_avsc);
	conninfo = dt_fresh_db();
	store = dt_store(conninfo, schema);
	assert_int_equal(dis_maker_new(store, &maker), 0);
	counter_wide_query = counter_refuse_snapshot = false;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	dis_maker_free(maker);
	dis_store_free(store);
	dis_schema_free(schema);
	free(conninfo);
	return 0;
}

static void add(dis_maker *m, const char *id, int64_t n)
{
	struct add_params p = {.n = n};
	dis_decision *d = NULL;

	assert_int_equal(counter_add(schema, id, &p, &d), 0);
	if (dis_maker_make(m, d) != 0)
		fail_msg("add: %s", dis_decision_errmsg(d));
	dis_decision_free(d);
}

static void note(dis_store *s, const char *text)
{
	dis_event *ev;

	assert_int_equal(dis_event_new(schema, "Noted", &ev), 0);
	assert_int_equal(dis_event_set_string(ev, "note", text), 0);
	assert_int_equal(dis_store_append(s, &ev, 1, NULL, NULL, NULL), 0);
	dis_event_free(ev);
}

static void multi_state_loading_gives_states_and_version(void **state)
{
	static const char *const ids[] = {"a", "b", "c"};
	dis_decision *d = NULL;
	dis_event *ev;

	(void)state;
	add(maker, "a", 1);
	add(maker, "b", 10);
	note(store, "x");
	add(maker, "a", 2);
	add(maker, "z", 100);
	assert_int_equal(counter_read(schema, &counter_def, ids, 3, &d), 0);
	assert_int_equal(dis_maker_load(maker, d), 0);
	assert_int_equal(counter_at(d, 0)->total, 3);
	assert_int_equal(counter_at(d, 1)->total, 10);
	assert_int_equal(counter_at(d, 2)->total, 0);
	assert_int_equal(dis_decision_events_read(d), 3);
	assert_non_null(dis_decision_version(d));
	assert_non_null(strchr(dis_version_text(dis_decision_version(d)), ':'));

	/* The version is the load's: nothing changed, the check passes... */
	assert_int_equal(dis_event_new(schema, "Noted", &ev), 0);
	assert_int_equal(dis_event_set_string(ev, "note", "y"), 0);
	assert_int_equal(dis_store_append(store, &ev, 1,
					  dis_decision_state_query(d, 1),
					  dis_decision_version(d), NULL),
			 0);
	/* ...and after a change to b it conflicts. */
	add(maker, "b", 1);
	assert_int_equal(dis_store_append(store, &ev, 1,
					  dis_decision_state_query(d, 1),
					  dis_decision_version(d), NULL),
			 DIS_ECONFLICT);
	/* A change to z does not matter to the union of a, b, c. */
	dis_event_free(ev);
	dis_decision_free(d);
}

static void a_decision_without_events_appends_nothing(void **state)
{
	struct add_params p = {.n = 1, .emit_nothing = true};
	dis_position before, after;
	dis_decision *d = NULL;

	(void)state;
	add(maker, "a", 1);
	assert_int_equal(dis_store_head(store, &before), 0);
	assert_int_equal(counter_add(schema, "a", &p, &d), 0);
	assert_int_equal(dis_maker_make(maker, d), 0);
	assert_int_equal(dis_decision_event_count(d), 0);
	assert_int_equal(dis_store_head(store, &after), 0);
	assert_int_equal(dis_position_cmp(before, after), 0);
	dis_decision_free(d);
}

static void a_domain_error_appends_nothing(void **state)
{
	struct add_params p = {.n = 5, .limit = 3};
	dis_position before, after;
	dis_decision *d = NULL;

	(void)state;
	assert_int_equal(dis_store_head(store, &before), 0);
	assert_int_equal(counter_add(schema, "a", &p, &d), 0);
	assert_int_equal(dis_maker_make(maker, d), DIS_EDOMAIN);
	assert_int_equal(dis_decision_domain_code(d), 7);
	assert_int_equal(dis_store_head(store, &after), 0);
	assert_int_equal(dis_position_cmp(before, after), 0);
	dis_decision_free(d);
}

/* Another connection appends to the boundary between load and append. */
struct interferer {
	dis_maker *other;
	unsigned every; /* interfere on attempts <= this */
	int calls;
};

static int interfere(void *arg, dis_decision *d, unsigned attempt)
{
	struct interferer *in = arg;

	(void)d;
	if (attempt > in->every)
		return 0;
	in->calls++;
	add(in->other, "a", 2);
	return 0;
}

static void a_conflict_is_retried_and_sees_the_new_state(void **state)
{
	struct add_params p = {.n = 1, .limit = 6};
	struct interferer in = {0};
	dis_store *other_store = dt_store(conninfo, schema);
	dis_decision *d = NULL;
	dis_maker_stats st;

	(void)state;
	assert_int_equal(dis_maker_new(other_store, &in.other), 0);
	add(maker, "a", 2);
	in.every = 1;
	dis__maker_set_hook(maker, interfere, &in);
	assert_int_equal(counter_add(schema, "a", &p, &d), 0);
	assert_int_equal(dis_maker_make(maker, d), 0);
	assert_int_equal(dis_decision_attempts(d), 2);
	assert_int_equal(counter_at(d, 0)->total, 4);
	assert_int_equal(counter_at(d, 0)->count, 2);
	dis_decision_free(d);

	/* Interfering on every attempt exhausts them: reported. */
	in.every = 100;
	in.calls = 0;
	assert_int_equal(dis_maker_set_retry(maker, 3, 100, 1000), 0);
	p.limit = 0;
	assert_int_equal(counter_add(schema, "a", &p, &d), 0);
	assert_int_equal(dis_maker_make(maker, d), DIS_ECONFLICT);
	assert_int_equal(dis_decision_attempts(d), 3);
	assert_int_equal(in.calls, 3);
	dis_maker_get_stats(maker, &st);
	assert_int_equal(st.conflicts, 4);
	assert_int_equal(st.retries, 3);
	assert_int_equal(st.gave_up, 1);
	dis_decision_free(d);
	dis__maker_set_hook(maker, NULL, NULL);
	dis_maker_free(in.other);
	dis_store_free(other_store);
}

/*
 * Concurrent decisions on one counter, each appending n = count + 1: if
 * any two had both committed from the same state, two events would carry
 * the same n. Serialised decisions give exactly 1..N.
 */
#define THREADS 4
#define PER_THREAD 25

struct seq_worker {
	pthread_t t;
	int ok;
	int gave_up;
	char err[256];
};

static int next_process(dis_ctx *ctx, const void *const *states,
			const void *params)
{
	const struct counter *c = states[0];
	dis_event *ev;
	int rc;

	(void)params;
	if ((rc = dis_ctx_emit(ctx, "Added", &ev)) ||
	    (rc = dis_event_set_string(ev, "counter_id", c->id)))
		return rc;
	return dis_event_set_long(ev, "n", c->count + 1);
}

static void *seq_work(void *arg)
{
	struct seq_worker *w = arg;
	dis_store *s = NULL;
	dis_maker *m = NULL;

	if (dis_store_open(conninfo, schema, &s, w->err, sizeof(w->err)) ||
	    dis_maker_new(s, &m)) {
		dis_store_free(s);
		return NULL;
	}
	dis_maker_set_retry(m, 50, 200, 5000);
	for (int i = 0; i < PER_THREAD; i++) {
		struct counter init = {.id = "seq"};
		dis_decision *d = NULL;
		int rc;

		if (dis_decision_new(schema, "Next", next_process, NULL, 0,
				     &d) ||
		    dis_decision_add_state(d, &counter_def, &init)) {
			dis_decision_free(d);
			break;
		}
		rc = dis_maker_make(m, d);
		if (rc == 0)
			w->ok++;
		else if (rc == DIS_ECONFLICT)
			w->gave_up++;
		else
			snprintf(w->err, sizeof(w->err), "%s",
				 dis_decision_errmsg(d));
		dis_decision_free(d);
	}
	dis_maker_free(m);
	dis_store_free(s);
	return NULL;
}

static int seen[THREADS * PER_THREAD + 2];
static int dupes;

static int check_seq(void *arg, const dis_event *ev)
{
	int64_t n = 0;

	(void)arg;
	dis_event_get_long(ev, "n", &n);
	if (n < 1 || n > THREADS * PER_THREAD || seen[n]++)
		dupes++;
	return 0;
}

static void concurrent_decisions_are_serialised(void **state)
{
	struct seq_worker w[THREADS];
	const char *id = "seq";
	dis_decision *d = NULL;
	int ok = 0;

	(void)state;
	memset(w, 0, sizeof(w));
	for (int i = 0; i < THREADS; i++)
		pthread_create(&w[i].t, NULL, seq_work, &w[i]);
	for (int i = 0; i < THREADS; i++) {
		pthread_join(w[i].t, NULL);
		if (w[i].err[0])
			fail_msg("worker %d: %s", i, w[i].err);
		ok += w[i].ok;
	}
	print_message("%d of %d decisions committed\n", ok,
		      THREADS * PER_THREAD);
	assert_true(ok > 0);
	assert_int_equal(counter_read(schema, &counter_def, &id, 1, &d), 0);
	assert_int_equal(dis_maker_load(maker, d), 0);
	assert_int_equal(counter_at(d, 0)->count, ok);
	dis_decision_free(d);
	memset(seen, 0, sizeof(seen));
	dupes = 0;
	{
		dis_query *q;
		dis_filter *f;

		assert_int_equal(dis_query_new(schema, &q), 0);
		assert_int_equal(dis_query_add_filter(q, &f), 0);
		assert_int_equal(
			dis_filter_where_string(f, "counter_id", "seq"), 0);
		assert_int_equal(
			dis_store_load(store, q, check_seq, NULL, NULL), 0);
		dis_query_free(q);
	}
	assert_int_equal(dupes, 0);
	for (int n = 1; n <= ok; n++)
		assert_int_equal(seen[n], 1);
}

/* A listener's batch: decisions inside the caller's open transaction. */
static void decisions_join_an_open_transaction(void **state)
{
	PGconn *conn = dt_connect(conninfo);
	struct add_params p = {.n = 1, .limit = 2};
	const char *id = "tx";
	dis_store *ws = NULL;
	dis_maker *wm = NULL;
	dis_decision *d = NULL;
	dis_maker_stats st;

	(void)state;
	assert_int_equal(dis_store_wrap(conn, schema, &ws), 0);
	assert_int_equal(dis_maker_new(ws, &wm), 0);
	dis_maker_set_snapshots(wm, true, 0);

	/* Rolled back: nothing stays. */
	dt_exec(conn, "BEGIN");
	add(wm, "tx", 1);
	dt_exec(conn, "ROLLBACK");
	assert_int_equal(counter_read(schema, &counter_def, &id, 1, &d), 0);
	assert_int_equal(dis_maker_load(maker, d), 0);
	assert_int_equal(counter_at(d, 0)->count, 0);
	dis_decision_free(d);

	/* Two decisions in one transaction: the second sees the first. */
	dt_exec(conn, "BEGIN");
	add(wm, "tx", 1);
	add(wm, "tx", 1);
	assert_int_equal(counter_add(schema, "tx", &p, &d), 0);
	assert_int_equal(dis_maker_make(wm, d), DIS_EDOMAIN);
	assert_int_equal(counter_at(d, 0)->total, 2);
	dis_decision_free(d);
	dt_exec(conn, "COMMIT");
	dis_maker_get_stats(wm, &st);
	assert_int_equal(st.snapshots_stored, 0);
	assert_int_equal(st.conflicts, 0);

	assert_int_equal(counter_read(schema, &counter_def, &id, 1, &d), 0);
	assert_int_equal(dis_maker_load(maker, d), 0);
	assert_int_equal(counter_at(d, 0)->total, 2);
	dis_decision_free(d);
	dis_maker_free(wm);
	dis_store_free(ws);
	PQfinish(conn);
}

/* Database errors come back as DIS_EPG/DIS_ECONN with a message. */
static void database_errors_are_reported(void **state)
{
	struct add_params p = {.n = 1};
	dis_decision *d = NULL;
	int rc;

	(void)state;
	dt_exec(dis_store_conn(store), "DROP TABLE event");
	assert_int_equal(counter_add(schema, "a", &p, &d), 0);
	rc = dis_maker_make(maker, d);
	assert_int_equal(rc, DIS_EPG);
	assert_non_null(strstr(dis_decision_errmsg(d), "event"));
	dis_decision_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			multi_state_loading_gives_states_and_version, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			a_decision_without_events_appends_nothing, setup,
			teardown),
		cmocka_unit_test_setup_teardown(a_domain_error_appends_nothing,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			a_conflict_is_retried_and_sees_the_new_state, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			concurrent_decisions_are_serialised, setup, teardown),
		cmocka_unit_test_setup_teardown(
			decisions_join_an_open_transaction, setup, teardown),
		cmocka_unit_test_setup_teardown(database_errors_are_reported,
						setup, teardown),
	};

	dt_require_pg();
	return cmocka_run_group_tests_name("decision (pg)", tests, NULL, NULL);
}
