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

/* Makes d with m, failing the test unless that returns `want`. */
static dis_decision *make_want(dis_maker *m, dis_decision *d, int want)
{
	int rc = dis_maker_make(m, d);

	if (rc != want)
		fail_msg("%s: %d, wanted %d: %s", dis_decision_name(d), rc,
			 want, dis_decision_errmsg(d));
	return d;
}

/* Adds n to counter id with maker m; returns the decision (caller frees). */
static dis_decision *add_d(dis_maker *m, const char *id,
			   const struct add_params *p, int want)
{
	dis_decision *d = NULL;

	assert_int_equal(counter_add(schema, id, p, &d), 0);
	return make_want(m, d, want);
}

static void add(dis_maker *m, const char *id, int64_t n)
{
	struct add_params p = {.n = n};

	dis_decision_free(add_d(m, id, &p, 0));
}

/* Appends one event of `type` with one string field, unchecked. */
static void append_one(dis_store *s, const char *type, const char *field,
		       const char *value)
{
	dis_event *ev;

	assert_int_equal(dis_event_new(schema, type, &ev), 0);
	assert_int_equal(dis_event_set_string(ev, field, value), 0);
	assert_int_equal(dis_store_append(s, &ev, 1, NULL, NULL, NULL), 0);
	dis_event_free(ev);
}

static void note(dis_store *s, const char *text)
{
	append_one(s, "Noted", "note", text);
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

static size_t seq_cache; /* the workers' dis_maker_set_cache */

static void *seq_work(void *arg)
{
	struct seq_worker *w = arg;
	dis_store *s = NULL;
	dis_maker *m = NULL;

	if (dis_store_open(conninfo, schema, &s, w->err, sizeof(w->err)) ||
	    dis_maker_new(s, &m) || dis_maker_set_cache(m, seq_cache)) {
		dis_maker_free(m);
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

static void run_seq(size_t cache)
{
	struct seq_worker w[THREADS];
	const char *id = "seq";
	dis_decision *d = NULL;
	int ok = 0;

	seq_cache = cache;
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

static void concurrent_decisions_are_serialised(void **state)
{
	(void)state;
	run_seq(0);
}

/* The same with cached states: most of them are stale by the append. */
static void concurrent_cached_decisions_are_serialised(void **state)
{
	(void)state;
	run_seq(4);
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

/* ---- the state cache ---- */

static dis_maker_stats stats_of(dis_maker *m)
{
	dis_maker_stats st;

	dis_maker_get_stats(m, &st);
	return st;
}

/*
 * Every event of counter id but the decision's own is visible in its
 * version, and its own is not: by PostgreSQL's reading of the text.
 */
static void assert_version_sees_before(const dis_decision *d, const char *id)
{
	char own[32];
	const char *vals[3] = {dis_version_text(dis_decision_version(d)), id,
			       own};
	PGresult *r;

	snprintf(own, sizeof(own), "%lld",
		 (long long)dis_event_id(dis_decision_event(d, 0)));
	r = PQexecParams(dis_store_conn(store),
			 "SELECT count(*) FILTER (WHERE pg_visible_in_snapshot("
			 "tx, $1::pg_snapshot) <> (event_id <> $3::int8)), "
			 "count(*) FROM event WHERE counter_id = $2",
			 3, NULL, vals, NULL, NULL, 0);
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	assert_string_equal(PQgetvalue(r, 0, 0), "0");
	assert_string_not_equal(PQgetvalue(r, 0, 1), "1");
	PQclear(r);
}

static void cached_states_skip_the_load(void **state)
{
	struct add_params p = {.n = 2};
	dis_decision *d;
	dis_maker_stats st;

	(void)state;
	assert_int_equal(dis_maker_set_cache(maker, 8), 0);
	d = add_d(maker, "a", &p, 0); /* loads, then keeps the state */
	assert_int_equal(stats_of(maker).cache_hits, 0);
	dis_decision_free(d);
	note(store, "not the counter's"); /* changes nothing it reads */
	p.n = 3;
	d = add_d(maker, "a", &p, 0);
	st = stats_of(maker);
	assert_int_equal(st.cache_hits, 1);
	assert_int_equal(st.cache_stale, 0);
	assert_int_equal(dis_decision_events_read(d), 0);
	assert_int_equal(dis_decision_attempts(d), 1);
	assert_int_equal(counter_at(d, 0)->total, 2);
	assert_int_equal(counter_at(d, 0)->count, 1);
	/* Its version sees the first decision's event, not its own. */
	assert_version_sees_before(d, "a");
	dis_decision_free(d);
	p.n = 4;
	d = add_d(maker, "a", &p, 0);
	assert_int_equal(stats_of(maker).cache_hits, 2);
	assert_int_equal(counter_at(d, 0)->total, 5);
	assert_int_equal(counter_at(d, 0)->count, 2);
	dis_decision_free(d);

	/* The log agrees: 2 + 3 + 4. */
	{
		const char *id = "a";

		assert_int_equal(counter_read(schema, &counter_def, &id, 1, &d),
				 0);
		assert_int_equal(dis_maker_load(maker, d), 0);
		assert_int_equal(counter_at(d, 0)->total, 9);
		assert_int_equal(dis_decision_events_read(d), 3);
		dis_decision_free(d);
	}
	/* Loads are never served from the cache. */
	assert_int_equal(stats_of(maker).cache_hits, 2);
}

static void a_stale_cached_state_is_decided_again(void **state)
{
	struct add_params p = {.n = 2};
	dis_store *other_store = dt_store(conninfo, schema);
	dis_maker *other = NULL;
	dis_decision *d;
	dis_maker_stats st;

	(void)state;
	assert_int_equal(dis_maker_new(other_store, &other), 0);
	assert_int_equal(dis_maker_set_cache(maker, 8), 0);
	/* One attempt only: the stale cached one must not use it up. */
	assert_int_equal(dis_maker_set_retry(maker, 1, 0, 0), 0);
	dis_decision_free(add_d(maker, "a", &p, 0));
	add(other, "a", 5);
	p.n = 1;
	d = add_d(maker, "a", &p, 0);
	st = stats_of(maker);
	assert_int_equal(st.cache_hits, 1);
	assert_int_equal(st.cache_stale, 1);
	assert_int_equal(st.conflicts, 0);
	assert_int_equal(dis_decision_attempts(d), 2);
	assert_int_equal(counter_at(d, 0)->total, 7);
	assert_int_equal(dis_decision_events_read(d), 2);
	dis_decision_free(d);

	/* Decided on the load, it is cached again: the next one hits. */
	d = add_d(maker, "a", &p, 0);
	assert_int_equal(stats_of(maker).cache_hits, 2);
	assert_int_equal(stats_of(maker).cache_stale, 1);
	assert_int_equal(counter_at(d, 0)->total, 8);
	dis_decision_free(d);

	/*
	 * Stale between restore and append (the hook runs in between, on
	 * attempt 1), then a conflict on the first load too (attempt 2):
	 * with 2 attempts allowed, the third (loaded) one still runs.
	 */
	{
		struct interferer in = {other, 2, 0};

		assert_int_equal(dis_maker_set_retry(maker, 2, 0, 0), 0);
		dis__maker_set_hook(maker, interfere, &in);
		d = add_d(maker, "a", &p, 0);
		dis__maker_set_hook(maker, NULL, NULL);
		assert_int_equal(in.calls, 2);
		assert_int_equal(dis_decision_attempts(d), 3);
		st = stats_of(maker);
		assert_int_equal(st.cache_hits, 3);
		assert_int_equal(st.cache_stale, 2);
		assert_int_equal(st.conflicts, 1);
		assert_int_equal(st.gave_up, 0);
		/* 9, and the interferer's 2 twice */
		assert_int_equal(counter_at(d, 0)->total, 13);
		dis_decision_free(d);
	}
	dis_maker_free(other);
	dis_store_free(other_store);
}

static void a_refusal_on_a_cached_state_is_checked_on_a_load(void **state)
{
	struct add_params p = {.n = 8};
	dis_store *other_store = dt_store(conninfo, schema);
	dis_decision *d;

	(void)state;
	assert_int_equal(dis_maker_set_cache(maker, 8), 0);
	dis_decision_free(add_d(maker, "a", &p, 0));         /* cached at 8 */
	append_one(other_store, "Reset", "counter_id", "a"); /* now 0 */
	/* The cached 8 would refuse 8 + 5 > 10; the log's 0 accepts. */
	p.n = 5;
	p.limit = 10;
	d = add_d(maker, "a", &p, 0);
	assert_int_equal(counter_at(d, 0)->total, 0);
	assert_int_equal(stats_of(maker).cache_stale, 1);
	dis_decision_free(d);

	/* A true refusal is one too (after the load confirms it). */
	p.n = 6;
	d = add_d(maker, "a", &p, DIS_EDOMAIN);
	assert_int_equal(dis_decision_domain_code(d), 7);
	assert_int_equal(counter_at(d, 0)->total, 5);
	assert_true(dis_decision_events_read(d) > 0);
	assert_int_equal(stats_of(maker).cache_hits, 2);
	assert_int_equal(stats_of(maker).cache_stale, 2);
	dis_decision_free(d);

	/* Nothing to append on a cached state: also decided on a load. */
	p.n = 1;
	p.limit = 0;
	dis_decision_free(add_d(maker, "a", &p, 0)); /* cached at 6 */
	p.emit_nothing = true;
	d = add_d(maker, "a", &p, 0);
	assert_int_equal(dis_decision_event_count(d), 0);
	assert_int_equal(counter_at(d, 0)->total, 6);
	assert_true(dis_decision_events_read(d) > 0);
	assert_int_equal(stats_of(maker).cache_stale, 3);
	dis_decision_free(d);
	dis_store_free(other_store);
}

/* Rolled back or not yet committed: nothing of it may be cached. */
static void a_callers_transaction_fills_no_cache(void **state)
{
	PGconn *conn = dt_connect(conninfo);
	struct add_params p = {.n = 1};
	dis_store *ws = NULL;
	dis_maker *wm = NULL;
	dis_decision *d;

	(void)state;
	assert_int_equal(dis_store_wrap(conn, schema, &ws), 0);
	assert_int_equal(dis_maker_new(ws, &wm), 0);
	assert_int_equal(dis_maker_set_cache(wm, 8), 0);
	dt_exec(conn, "BEGIN");
	dis_decision_free(add_d(wm, "tx", &p, 0));
	dis_decision_free(add_d(wm, "tx", &p, 0));
	dt_exec(conn, "ROLLBACK");
	d = add_d(wm, "tx", &p, 0);
	assert_int_equal(counter_at(d, 0)->total, 0);
	assert_int_equal(stats_of(wm).cache_hits, 0);
	dis_decision_free(d);
	/* That one committed on its own: cached. */
	d = add_d(wm, "tx", &p, 0);
	assert_int_equal(counter_at(d, 0)->total, 1);
	assert_int_equal(stats_of(wm).cache_hits, 1);
	dis_decision_free(d);

	/*
	 * Cached at 2 before the transaction: inside it a decision sees the
	 * transaction's own events, which the check would not flag.
	 */
	dt_exec(conn, "BEGIN");
	dis_decision_free(add_d(wm, "tx", &p, 0));
	d = add_d(wm, "tx", &p, 0);
	assert_int_equal(counter_at(d, 0)->total, 3);
	dis_decision_free(d);
	dt_exec(conn, "COMMIT");
	assert_int_equal(stats_of(wm).cache_hits, 1);
	/* The entry of before misses those two: the check says so. */
	d = add_d(wm, "tx", &p, 0);
	assert_int_equal(counter_at(d, 0)->total, 4);
	assert_int_equal(stats_of(wm).cache_hits, 2);
	assert_int_equal(stats_of(wm).cache_stale, 1);
	dis_decision_free(d);
	dis_maker_free(wm);
	dis_store_free(ws);
	PQfinish(conn);
}

/* The Counter state without snapshots: the maker cannot copy it. */
static const dis_state_def counter_plain_def = {
	.name = "Counter",
	.size = sizeof(struct counter),
	.query = counter_query,
	.mutate = counter_mutate,
	.destroy = counter_destroy,
};

static void states_without_snapshots_are_not_cached(void **state)
{
	struct add_params p = {.n = 1};
	struct counter init = {.id = "a"};
	dis_decision *d;

	(void)state;
	assert_int_equal(dis_maker_set_cache(maker, 8), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(dis_decision_new(schema, "Add", add_process,
						  &p, sizeof(p), &d),
				 0);
		assert_int_equal(dis_decision_add_state(d, &counter_plain_def,
							&init),
				 0);
		assert_int_equal(dis_maker_make(maker, d), 0);
		assert_int_equal(dis_decision_events_read(d), (size_t)i);
		dis_decision_free(d);
	}
	assert_int_equal(stats_of(maker).cache_hits, 0);
}

/* Adds n to counter a, validating Resets of a only (narrower). */
static dis_decision *add_narrow(int64_t n)
{
	struct add_params p = {.n = n};
	dis_decision *d = NULL;
	dis_query *q;
	dis_filter *f;

	assert_int_equal(counter_add(schema, "a", &p, &d), 0);
	assert_int_equal(dis_decision_validation(d, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_filter_type(f, "Reset"), 0);
	assert_int_equal(dis_filter_where_string(f, "counter_id", "a"), 0);
	return make_want(maker, d, 0);
}

/*
 * A validation query narrower than the state: a cached attempt is checked
 * against both, and a loaded one keeps the load's version, so an Added
 * the narrow check lets through is never taken as seen.
 */
static void a_narrower_validation_is_cached_safely(void **state)
{
	dis_store *other_store = dt_store(conninfo, schema);
	struct interferer in = {0};
	dis_decision *d;

	(void)state;
	assert_int_equal(dis_maker_new(other_store, &in.other), 0);
	assert_int_equal(dis_maker_set_cache(maker, 8), 0);
	dis_decision_free(add_narrow(1));
	d = add_narrow(2);
	assert_int_equal(dis_decision_events_read(d), 0);
	assert_int_equal(counter_at(d, 0)->total, 1);
	dis_decision_free(d);

	/* An Added from elsewhere: the cached attempt must not miss it. */
	add(in.other, "a", 5);
	d = add_narrow(3);
	assert_int_equal(counter_at(d, 0)->total, 8);
	assert_int_equal(stats_of(maker).cache_hits, 2);
	assert_int_equal(stats_of(maker).cache_stale, 1);
	dis_decision_free(d);

	/*
	 * A loaded attempt, and an Added lands between its load and its
	 * append: its own check passes (it validates Resets only), and the
	 * state it keeps has not seen that Added: the next decision on the
	 * cached state must find out.
	 */
	assert_int_equal(dis_maker_set_cache(maker, 0), 0);
	assert_int_equal(dis_maker_set_cache(maker, 8), 0);
	in.every = 1;
	dis__maker_set_hook(maker, interfere, &in);
	d = add_narrow(4);
	dis__maker_set_hook(maker, NULL, NULL);
	assert_int_equal(in.calls, 1);
	assert_int_equal(dis_decision_attempts(d), 1);
	assert_int_equal(counter_at(d, 0)->total, 11);
	dis_decision_free(d);
	d = add_narrow(1);
	/* 11, its 4 and the interferer's 2 */
	assert_int_equal(counter_at(d, 0)->total, 17);
	assert_int_equal(stats_of(maker).cache_hits, 3);
	assert_int_equal(stats_of(maker).cache_stale, 2);
	dis_decision_free(d);
	/* And then it is served again. */
	d = add_narrow(1);
	assert_int_equal(dis_decision_events_read(d), 0);
	assert_int_equal(counter_at(d, 0)->total, 18);
	dis_decision_free(d);
	dis_maker_free(in.other);
	dis_store_free(other_store);
}

static void the_cache_keeps_the_most_recent_states(void **state)
{
	dis_maker_stats st;

	(void)state;
	assert_int_equal(dis_maker_set_cache(maker, 2), 0);
	add(maker, "a", 1);
	add(maker, "b", 1);
	add(maker, "a", 1); /* hit; b is now the oldest */
	add(maker, "c", 1); /* b goes */
	add(maker, "b", 1); /* miss; a goes */
	add(maker, "c", 1); /* hit */
	st = stats_of(maker);
	assert_int_equal(st.cache_hits, 2);
	/* Shrinking keeps the most recent. */
	assert_int_equal(dis_maker_set_cache(maker, 1), 0);
	add(maker, "b", 1); /* gone: c was used last */
	add(maker, "b", 1); /* hit */
	assert_int_equal(stats_of(maker).cache_hits, 3);
	assert_int_equal(dis_maker_set_cache(maker, 0), 0);
	add(maker, "b", 1);
	assert_int_equal(stats_of(maker).cache_hits, 3);
	assert_int_equal(stats_of(maker).cache_stale, 0);
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
		cmocka_unit_test_setup_teardown(
			concurrent_cached_decisions_are_serialised, setup,
			teardown),
		cmocka_unit_test_setup_teardown(cached_states_skip_the_load,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			a_stale_cached_state_is_decided_again, setup, teardown),
		cmocka_unit_test_setup_teardown(
			a_refusal_on_a_cached_state_is_checked_on_a_load, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			a_callers_transaction_fills_no_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(
			states_without_snapshots_are_not_cached, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			a_narrower_validation_is_cached_safely, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			the_cache_keeps_the_most_recent_states, setup,
			teardown),
	};

	dt_require_pg();
	return cmocka_run_group_tests_name("decision (pg)", tests, NULL, NULL);
}
