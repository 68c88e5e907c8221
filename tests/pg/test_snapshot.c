/*
 * Snapshots on PostgreSQL: the table (Disintegrate-compatible, migrated
 * twice at once), storing and loading, a state of 10,000 events that loads
 * from its snapshot reading only what came after it, undecodable snapshots
 * ignored entirely, and a changed query, snapshot schema or meaning of the
 * query under a new event schema invalidating.
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
	dis_maker_set_snapshots(maker, true, 10);
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

/* Appends n Added events (n = 1 each) to counter id, in batches. */
static void append_added(const char *id, int n)
{
	dis_event *evs[500];

	while (n > 0) {
		int k = n < 500 ? n : 500;

		for (int i = 0; i < k; i++) {
			assert_int_equal(
				dis_event_new(schema, "Added", &evs[i]), 0);
			assert_int_equal(dis_event_set_string(evs[i],
							      "counter_id", id),
					 0);
			assert_int_equal(dis_event_set_long(evs[i], "n", 1), 0);
		}
		assert_int_equal(dis_store_append(store, evs, (size_t)k, NULL,
						  NULL, NULL),
				 0);
		for (int i = 0; i < k; i++)
			dis_event_free(evs[i]);
		n -= k;
	}
}

/* Loads counter id with `def`; returns the decision (caller frees). */
static dis_decision *load(const dis_state_def *def, const char *id)
{
	dis_decision *d = NULL;

	assert_int_equal(counter_read(schema, def, &id, 1, &d), 0);
	if (dis_maker_load(maker, d) != 0)
		fail_msg("load: %s", dis_decision_errmsg(d));
	return d;
}

static dis_maker_stats stats(void)
{
	dis_maker_stats st;

	dis_maker_get_stats(maker, &st);
	return st;
}

static void a_snapshot_is_stored_and_loaded(void **state)
{
	PGconn *conn = dis_store_conn(store);
	dis_decision *d;
	char *text, *want;

	(void)state;
	append_added("a", 50);
	d = load(&counter_def, "a");
	assert_int_equal(dis_decision_events_read(d), 50);
	assert_int_equal(stats().snapshots_stored, 1);

	/* The row: Disintegrate's columns filled, plus ours. */
	assert_int_equal(
		dis_query_describe(dis_decision_state_query(d, 0), &want), 0);
	text = dt_scalar(conn, "SELECT name FROM snapshot");
	assert_string_equal(text, "Counter");
	free(text);
	text = dt_scalar(conn, "SELECT query FROM snapshot");
	assert_string_equal(text, want);
	free(text);
	dis_free(want);
	text = dt_scalar(conn, "SELECT version = (SELECT max(event_id) FROM "
			       "event) FROM snapshot");
	assert_string_equal(text, "t");
	free(text);
	text = dt_scalar(conn, "SELECT payload::json->>'total' FROM snapshot");
	assert_string_equal(text, "50");
	free(text);
	text = dt_scalar(conn, "SELECT read_version IS NOT NULL AND state "
			       "IS NOT NULL AND state_schema IS NOT NULL "
			       "FROM snapshot");
	assert_string_equal(text, "t");
	free(text);
	dis_decision_free(d);

	/* Loaded from it: nothing to read. */
	d = load(&counter_def, "a");
	assert_int_equal(counter_at(d, 0)->total, 50);
	assert_int_equal(counter_at(d, 0)->count, 50);
	assert_int_equal(dis_decision_events_read(d), 0);
	assert_int_equal(stats().snapshots_loaded, 1);
	dis_decision_free(d);

	/* Then only what came after it. */
	append_added("a", 5);
	append_added("b", 5);
	d = load(&counter_def, "a");
	assert_int_equal(counter_at(d, 0)->total, 55);
	assert_int_equal(dis_decision_events_read(d), 5);
	dis_decision_free(d);
}

static void ten_thousand_events_load_from_the_snapshot(void **state)
{
	struct add_params p = {.n = 1};
	dis_decision *d;

	(void)state;
	append_added("big", 10000);
	d = load(&counter_def, "big");
	assert_int_equal(counter_at(d, 0)->total, 10000);
	assert_int_equal(dis_decision_events_read(d), 10000);
	assert_int_equal(stats().snapshots_stored, 1);
	dis_decision_free(d);

	append_added("big", 7);
	append_added("other", 30);
	/* A decision on it reads the 7 events after the snapshot. */
	assert_int_equal(counter_add(schema, "big", &p, &d), 0);
	assert_int_equal(dis_maker_make(maker, d), 0);
	assert_int_equal(dis_decision_events_read(d), 7);
	assert_int_equal(counter_at(d, 0)->total, 10007);
	assert_int_equal(stats().snapshots_loaded, 1);
	dis_decision_free(d);

	d = load(&counter_def, "big");
	assert_int_equal(counter_at(d, 0)->total, 10008);
	assert_int_equal(dis_decision_events_read(d), 8);
	dis_decision_free(d);
}

static void an_undecodable_snapshot_is_ignored(void **state)
{
	PGconn *conn = dis_store_conn(store);
	dis_decision *d;

	(void)state;
	append_added("a", 20);
	dis_decision_free(load(&counter_def, "a"));
	append_added("a", 3);

	/* Garbage bytes: rebuilt from the start, not from its version. */
	dt_exec(conn, "UPDATE snapshot SET state = '\\xffffffffffffff01'");
	d = load(&counter_def, "a");
	assert_int_equal(counter_at(d, 0)->total, 23);
	assert_int_equal(counter_at(d, 0)->count, 23);
	assert_int_equal(dis_decision_events_read(d), 23);
	assert_int_equal(stats().snapshots_ignored, 1);
	assert_int_equal(stats().snapshots_loaded, 0);
	dis_decision_free(d);
	/* That load stored a good one again. */
	d = load(&counter_def, "a");
	assert_int_equal(dis_decision_events_read(d), 0);
	assert_int_equal(counter_at(d, 0)->total, 23);
	dis_decision_free(d);

	/* Truncated bytes, and a version that does not parse. */
	dt_exec(conn, "UPDATE snapshot SET state = substr(state, 1, 1)");
	d = load(&counter_def, "a");
	assert_int_equal(counter_at(d, 0)->total, 23);
	assert_int_equal(dis_decision_events_read(d), 23);
	dis_decision_free(d);
	dt_exec(conn, "UPDATE snapshot SET read_version = 'nonsense'");
	d = load(&counter_def, "a");
	assert_int_equal(counter_at(d, 0)->total, 23);
	assert_int_equal(dis_decision_events_read(d), 23);
	dis_decision_free(d);

	/* A state that refuses its snapshot. */
	counter_refuse_snapshot = true;
	d = load(&counter_def, "a");
	assert_int_equal(counter_at(d, 0)->total, 23);
	assert_int_equal(dis_decision_events_read(d), 23);
	assert_int_equal(stats().snapshots_ignored, 4);
	dis_decision_free(d);
}

static void a_changed_query_or_schema_invalidates(void **state)
{
	PGconn *conn = dis_store_conn(store);
	dis_decision *d;
	char *text;

	(void)state;
	append_added("a", 20);
	dis_decision_free(load(&counter_def, "a"));

	/* Another query: another snapshot key, nothing to start from. */
	counter_wide_query = true;
	d = load(&counter_def, "a");
	assert_int_equal(dis_decision_events_read(d), 20);
	assert_int_equal(stats().snapshots_loaded, 0);
	dis_decision_free(d);
	text = dt_scalar(conn, "SELECT count(*) FROM snapshot");
	assert_string_equal(text, "2");
	free(text);
	counter_wide_query = false;

	/* Another snapshot schema under the same name and query. */
	d = load(&counter_def_v2, "a");
	assert_int_equal(dis_decision_events_read(d), 20);
	assert_int_equal(counter_at(d, 0)->total, 20);
	assert_int_equal(stats().snapshots_ignored, 1);
	dis_decision_free(d);
	/* ...which replaced it with its own. */
	d = load(&counter_def_v2, "a");
	assert_int_equal(dis_decision_events_read(d), 0);
	assert_int_equal(counter_at(d, 0)->total, 20);
	dis_decision_free(d);
}

/*
 * A schema change can change what the same query text selects: v2 gives
 * type T the id k that only U declared, so "T or U where k = 1" no longer
 * takes T events without k. The snapshot built under v1 must be ignored.
 */
static const char evolve_v1[] =
	"[{\"type\":\"record\",\"name\":\"T\",\"fields\":["
	"{\"name\":\"x\",\"type\":\"long\"}]},"
	"{\"type\":\"record\",\"name\":\"U\",\"fields\":["
	"{\"name\":\"k\",\"type\":\"long\",\"disintegrate.id\":true}]}]";
static const char evolve_v2[] =
	"[{\"type\":\"record\",\"name\":\"T\",\"fields\":["
	"{\"name\":\"x\",\"type\":\"long\"},{\"name\":\"k\",\"type\":"
	"[\"null\",\"long\"],\"default\":null,\"disintegrate.id\":true}]},"
	"{\"type\":\"record\",\"name\":\"U\",\"fields\":["
	"{\"name\":\"k\",\"type\":\"long\",\"disintegrate.id\":true}]}]";

struct seen {
	int64_t k;
	int64_t count;
};

static int seen_query(const void *state, dis_query *q)
{
	dis_filter *f;
	int rc = dis_query_add_filter(q, &f);

	if (!rc)
		rc = dis_filter_type(f, "T");
	if (!rc)
		rc = dis_filter_type(f, "U");
	if (!rc)
		rc = dis_filter_where_long(f, "k",
					   ((const struct seen *)state)->k);
	return rc ? rc : dis_query_check(q);
}

static int seen_mutate(void *state, const dis_event *ev)
{
	(void)ev;
	((struct seen *)state)->count++;
	return 0;
}

static int seen_save(const void *state, dis_event *rec)
{
	return dis_event_set_long(rec, "count",
				  ((const struct seen *)state)->count);
}

static int seen_load(void *state, const dis_event *rec)
{
	return dis_event_get_long(rec, "count", &((struct seen *)state)->count);
}

static const dis_state_def seen_def = {
	.name = "Seen",
	.size = sizeof(struct seen),
	.query = seen_query,
	.mutate = seen_mutate,
	.snapshot_schema = "{\"type\":\"record\",\"name\":\"SeenSnap\","
			   "\"fields\":[{\"name\":\"count\",\"type\":"
			   "\"long\"}]}",
	.snapshot_save = seen_save,
	.snapshot_load = seen_load,
};

static int no_events(dis_ctx *ctx, const void *const *states,
		     const void *params)
{
	(void)ctx;
	(void)states;
	(void)params;
	return 0;
}

/* Loads Seen for k = 1 under `s`; returns its count. */
static int64_t seen_count(const char *db, const dis_schema *s,
			  dis_maker_stats *st)
{
	dis_store *str = dt_store(db, s);
	struct seen init = {1, 0};
	dis_decision *d;
	dis_maker *m;
	int64_t n;

	assert_int_equal(dis_maker_new(str, &m), 0);
	dis_maker_set_snapshots(m, true, 0);
	assert_int_equal(
		dis_decision_new(s, "CountSeen", no_events, NULL, 0, &d), 0);
	assert_int_equal(dis_decision_add_state(d, &seen_def, &init), 0);
	if (dis_maker_load(m, d))
		fail_msg("load: %s", dis_decision_errmsg(d));
	n = ((const struct seen *)dis_decision_state(d, 0))->count;
	dis_maker_get_stats(m, st);
	dis_decision_free(d);
	dis_maker_free(m);
	dis_store_free(str);
	return n;
}

static void a_schema_change_of_the_query_invalidates(void **state)
{
	dis_schema *v1 = dt_schema(evolve_v1), *v2 = dt_schema(evolve_v2);
	char *db = dt_fresh_db();
	dis_store *st = dt_store(db, v1);
	dis_maker_stats stats;
	dis_event *ev[2];

	(void)state;
	assert_int_equal(dis_event_new(v1, "T", &ev[0]), 0);
	assert_int_equal(dis_event_new(v1, "U", &ev[1]), 0);
	assert_int_equal(dis_event_set_long(ev[1], "k", 1), 0);
	assert_int_equal(dis_store_append(st, ev, 2, NULL, NULL, NULL), 0);
	dis_event_free(ev[0]);
	dis_event_free(ev[1]);
	dis_store_free(st);

	assert_int_equal(seen_count(db, v1, &stats), 2);
	assert_int_equal(stats.snapshots_stored, 1);
	/* The same text under v2: T without k is no longer selected. */
	assert_int_equal(seen_count(db, v2, &stats), 1);
	assert_int_equal(stats.snapshots_loaded, 0);
	assert_int_equal(stats.snapshots_ignored, 1);
	assert_int_equal(seen_count(db, v2, &stats), 1);
	assert_int_equal(stats.snapshots_loaded, 1);
	dis_schema_free(v1);
	dis_schema_free(v2);
	free(db);
}

static void snapshots_need_more_than_every_events(void **state)
{
	dis_decision *d;

	(void)state;
	append_added("a", 10);
	dis_decision_free(load(&counter_def, "a"));
	assert_int_equal(stats().snapshots_stored, 0);
	append_added("a", 1);
	d = load(&counter_def, "a");
	assert_int_equal(stats().snapshots_stored, 1);
	dis_decision_free(d);
	/* Disabled: neither read nor written. */
	dis_maker_set_snapshots(maker, false, 0);
	d = load(&counter_def, "a");
	assert_int_equal(dis_decision_events_read(d), 11);
	assert_int_equal(stats().snapshots_loaded, 0);
	dis_decision_free(d);
}

/* The table of disintegrate-postgres, with a row of its own: migrated. */
static void a_disintegrate_table_is_migrated_in_place(void **state)
{
	char *fresh = dt_fresh_db();
	PGconn *conn = dt_connect(fresh);
	dis_store *s;
	char *text;

	(void)state;
	dt_exec(conn, "CREATE TABLE snapshot (id uuid PRIMARY KEY, name text,"
		      " query text, version bigint, payload text,"
		      " inserted_at TIMESTAMP DEFAULT now());"
		      "INSERT INTO snapshot (id, name, query, version, payload)"
		      " VALUES (gen_random_uuid(), 'cart-state', '(0|x|)', 3,"
		      " '{}')");
	s = dt_store(fresh, schema);
	text = dt_scalar(conn, "SELECT count(*) FROM information_schema.columns"
			       " WHERE table_name = 'snapshot'");
	assert_string_equal(text, "9");
	free(text);
	text = dt_scalar(conn, "SELECT name FROM snapshot");
	assert_string_equal(text, "cart-state");
	free(text);
	dis_store_free(s);
	PQfinish(conn);
	free(fresh);
}

struct migrator {
	pthread_t t;
	const char *conninfo;
	int rc;
	char err[256];
};

static void *migrate(void *arg)
{
	struct migrator *m = arg;
	dis_store *s = NULL;

	m->rc = dis_store_open(m->conninfo, schema, &s, m->err, sizeof(m->err));
	if (m->rc == 0) {
		m->rc = dis_store_migrate(s);
		if (m->rc)
			snprintf(m->err, sizeof(m->err), "%s",
				 dis_store_errmsg(s));
	}
	dis_store_free(s);
	return NULL;
}

static void two_processes_migrate_at_once(void **state)
{
	char *fresh = dt_fresh_db();
	struct migrator m[4];

	(void)state;
	for (int i = 0; i < 4; i++) {
		memset(&m[i], 0, sizeof(m[i]));
		m[i].conninfo = fresh;
		pthread_create(&m[i].t, NULL, migrate, &m[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(m[i].t, NULL);
		if (m[i].rc)
			fail_msg("migration %d: %s", i, m[i].err);
	}
	free(fresh);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(a_snapshot_is_stored_and_loaded,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			ten_thousand_events_load_from_the_snapshot, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			an_undecodable_snapshot_is_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(
			a_changed_query_or_schema_invalidates, setup, teardown),
		cmocka_unit_test(a_schema_change_of_the_query_invalidates),
		cmocka_unit_test_setup_teardown(
			snapshots_need_more_than_every_events, setup, teardown),
		cmocka_unit_test_setup_teardown(
			a_disintegrate_table_is_migrated_in_place, setup,
			teardown),
		cmocka_unit_test_setup_teardown(two_processes_migrate_at_once,
						setup, teardown),
	};

	dt_require_pg();
	return cmocka_run_group_tests_name("snapshot (pg)", tests, NULL, NULL);
}
