/*
 * Shared by the listener tests (pg, fault) and benchmarks: the cart schema,
 * appending events, a read model and its handler, and running an event
 * loop until a condition holds.
 */
#ifndef DIS_TEST_LISTENER_UTIL_H
#define DIS_TEST_LISTENER_UTIL_H

#include "testutil.h"

#include <disintegrate/listener.h>
#include <event2/event.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const TL_SCHEMA =
	"[{\"type\":\"record\",\"name\":\"ShoppingCartAdded\",\"fields\":["
	" {\"name\":\"cart_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"product_id\",\"type\":\"string\","
	"  \"disintegrate.id\":true},"
	" {\"name\":\"quantity\",\"type\":\"long\"}]},"
	" {\"type\":\"record\",\"name\":\"ShoppingCartRemoved\",\"fields\":["
	" {\"name\":\"cart_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"product_id\",\"type\":\"string\","
	"  \"disintegrate.id\":true},"
	" {\"name\":\"quantity\",\"type\":\"long\"}]},"
	" {\"type\":\"record\",\"name\":\"Other\",\"fields\":["
	" {\"name\":\"n\",\"type\":\"long\"}]}]";

/* The read model: carts (as in disintegrate-postgres's tests), plus a log
 * of every handled event to check exactly-once delivery. */
static const char *const TL_READ_MODEL =
	"CREATE TABLE IF NOT EXISTS carts (cart_id TEXT, product_id TEXT,"
	" quantity INT);"
	"CREATE TABLE IF NOT EXISTS totals (cart_id TEXT PRIMARY KEY,"
	" quantity BIGINT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS handled (listener TEXT, event_id BIGINT"
	" NOT NULL, pid INT DEFAULT pg_backend_pid())";

static inline double tl_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void tl_log(void *arg, dis_log_level level, const char *msg)
{
	static const char *names[] = {"error", "warn", "info", "debug"};
	const char *v = getenv("DIS_TEST_VERBOSE");

	(void)arg;
	if (v && *v && (int)level <= atoi(v))
		fprintf(stderr, "[%s] %s\n", names[level], msg);
}

static inline dis_event *tl_added(const dis_schema *s, const char *cart,
				  const char *product, int64_t qty)
{
	dis_event *ev;

	assert_int_equal(dis_event_new(s, "ShoppingCartAdded", &ev), 0);
	assert_int_equal(dis_event_set_string(ev, "cart_id", cart), 0);
	assert_int_equal(dis_event_set_string(ev, "product_id", product), 0);
	assert_int_equal(dis_event_set_long(ev, "quantity", qty), 0);
	return ev;
}

static inline dis_event *tl_other(const dis_schema *s, int64_t n)
{
	dis_event *ev;

	assert_int_equal(dis_event_new(s, "Other", &ev), 0);
	assert_int_equal(dis_event_set_long(ev, "n", n), 0);
	return ev;
}

/* Appends one event (unchecked) and frees it; returns its id. */
static inline int64_t tl_append(dis_store *st, dis_event *ev)
{
	int64_t id = 0;
	int rc = dis_store_append(st, &ev, 1, NULL, NULL, &id);

	if (rc)
		fail_msg("append: %s", dis_store_errmsg(st));
	dis_event_free(ev);
	return id;
}

/* Appends n cart events, `per` per transaction, carts c0..c9. */
static inline void tl_append_carts(dis_store *st, const dis_schema *s, int n,
				   int per)
{
	dis_event *evs[256];

	if (per > 256)
		per = 256;
	for (int i = 0; i < n;) {
		int k = 0;

		for (; k < per && i < n; k++, i++) {
			char cart[16];

			snprintf(cart, sizeof(cart), "c%d", i % 10);
			evs[k] = tl_added(s, cart, "p", 1 + i % 3);
		}
		if (dis_store_append(st, evs, (size_t)k, NULL, NULL, NULL))
			fail_msg("append: %s", dis_store_errmsg(st));
		for (int j = 0; j < k; j++)
			dis_event_free(evs[j]);
	}
}

static inline dis_query *tl_query_types(const dis_schema *s,
					const char *const *types, int n)
{
	dis_query *q;
	dis_filter *f;

	assert_int_equal(dis_query_new(s, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	for (int i = 0; i < n; i++)
		assert_int_equal(dis_filter_type(f, types[i]), 0);
	assert_int_equal(dis_query_check(q), 0);
	return q;
}

static inline dis_query *tl_cart_query(const dis_schema *s)
{
	const char *t[] = {"ShoppingCartAdded", "ShoppingCartRemoved"};

	return tl_query_types(s, t, 2);
}

/* Counters a test handler keeps. */
typedef struct tl_counter {
	int handled;
	int64_t last_id;
	double last_at;
	int fail_id_times; /* fail event fail_id this many times */
	int64_t fail_id;
	int always_fail_id; /* fail this event every time */
	/* fail this event while dis_batch_attempt() is below first_ok */
	int64_t early_fail_id;
	uint32_t first_ok;
	uint32_t max_attempt_seen;
	bool out_of_order;
	dis_position last_pos;
} tl_counter;

/*
 * The cart projection: one carts row and one handled row per event, and
 * the cart's running total, all in the batch transaction.
 */
static inline int tl_cart_handler(void *arg, dis_batch *b, const dis_event *ev)
{
	tl_counter *c = arg;
	const char *cart = "", *product = "";
	int64_t qty = 0;
	char q[24], id[24];
	const char *v[3];
	int rc;
	dis_position pos = dis_event_position(ev);

	if (c) {
		if (dis_position_cmp(pos, c->last_pos) <= 0) {
			/* Also after a rolled-back batch (redelivery). */
			c->out_of_order = true;
			if (getenv("DIS_TEST_VERBOSE"))
				fprintf(stderr,
					"out of order: %" PRIu64 ":%" PRId64
					" after %" PRIu64 ":%" PRId64 " (%s)\n",
					pos.tx, pos.id, c->last_pos.tx,
					c->last_pos.id,
					dis_batch_listener_id(b));
		}
		if (dis_batch_attempt(b) > c->max_attempt_seen)
			c->max_attempt_seen = dis_batch_attempt(b);
		if (c->always_fail_id && dis_event_id(ev) == c->always_fail_id)
			return dis_batch_fail(b, DIS_EDOMAIN,
					      "always failing on %" PRId64,
					      dis_event_id(ev));
		if (c->early_fail_id == dis_event_id(ev) &&
		    dis_batch_attempt(b) < c->first_ok)
			return dis_batch_fail(b, DIS_EDOMAIN,
					      "failing attempt %" PRIu32,
					      dis_batch_attempt(b));
		if (c->fail_id == dis_event_id(ev) && c->fail_id_times > 0) {
			c->fail_id_times--;
			return dis_batch_fail(b, DIS_EDOMAIN,
					      "failing on purpose");
		}
	}
	if (!strcmp(dis_event_type(ev), "ShoppingCartAdded")) {
		dis_event_get_string(ev, "cart_id", &cart);
		dis_event_get_string(ev, "product_id", &product);
		dis_event_get_long(ev, "quantity", &qty);
		snprintf(q, sizeof(q), "%" PRId64, qty);
		v[0] = cart;
		v[1] = product;
		v[2] = q;
		rc = dt_batch_run(
			b,
			"WITH a AS (INSERT INTO carts VALUES "
			"($1, $2, $3::int)) INSERT INTO totals "
			"VALUES ($1, $3::bigint) ON CONFLICT (cart_id)"
			" DO UPDATE SET quantity = totals.quantity "
			"+ EXCLUDED.quantity",
			3, v);
		if (rc)
			return rc;
	}
	snprintf(id, sizeof(id), "%" PRId64, dis_event_id(ev));
	v[0] = dis_batch_listener_id(b);
	v[1] = id;
	rc = dt_batch_run(b,
			  "INSERT INTO handled (listener, event_id) "
			  "VALUES ($1, $2::bigint)",
			  2, v);
	if (rc)
		return rc;
	if (c) {
		c->handled++;
		c->last_id = dis_event_id(ev);
		c->last_at = tl_now();
		c->last_pos = pos;
	}
	return 0;
}

/*
 * The same projection with pipelined writes (dis_batch_exec). Fails the
 * statements of event c->always_fail_id (a CHECK on carts.quantity is not
 * needed: it inserts a NULL into a NOT NULL column of `handled`).
 */
static inline int tl_cart_handler_q(void *arg, dis_batch *b,
				    const dis_event *ev)
{
	tl_counter *c = arg;
	const char *cart = "", *product = "";
	int64_t qty = 0;
	char q[24], id[24];
	const char *v[3];
	int rc;

	if (!strcmp(dis_event_type(ev), "ShoppingCartAdded")) {
		dis_event_get_string(ev, "cart_id", &cart);
		dis_event_get_string(ev, "product_id", &product);
		dis_event_get_long(ev, "quantity", &qty);
		snprintf(q, sizeof(q), "%" PRId64, qty);
		v[0] = cart;
		v[1] = product;
		v[2] = q;
		rc = dis_batch_exec(
			b, "INSERT INTO carts VALUES ($1, $2, $3::int)", 3, v,
			NULL, NULL);
		if (!rc)
			rc = dis_batch_exec(
				b,
				"INSERT INTO totals VALUES ($1, "
				"$2::bigint) ON CONFLICT (cart_id) DO "
				"UPDATE SET quantity = totals.quantity"
				" + EXCLUDED.quantity",
				2, (const char *const[]){cart, q}, NULL, NULL);
		if (rc)
			return rc;
	}
	snprintf(id, sizeof(id), "%" PRId64, dis_event_id(ev));
	v[0] = dis_batch_listener_id(b);
	v[1] = c && c->always_fail_id == dis_event_id(ev) ? NULL : id;
	rc = dis_batch_exec(b,
			    "INSERT INTO handled (listener, event_id) "
			    "VALUES ($1, $2::bigint)",
			    2, v, NULL, NULL);
	if (rc)
		return rc;
	if (c) {
		c->handled++;
		c->last_id = dis_event_id(ev);
		c->last_at = tl_now();
	}
	return 0;
}

/* Runs the loop until cond(arg) holds or timeout_ms passes. */
static inline bool tl_run_until(struct event_base *base, bool (*cond)(void *),
				void *arg, int timeout_ms)
{
	double end = tl_now() + timeout_ms / 1000.0;

	while (!cond(arg)) {
		struct timeval tv = {0, 5000};

		if (tl_now() > end)
			return false;
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	return true;
}

/*
 * dis_listener_reset from a thread of its own, on a store of its own (as
 * `disctl reset` from another process): it waits for the row lock of a
 * batch in flight, which only the caller's loop finishes. The caller sets
 * conninfo, schema, id, to and (optionally) notify, a channel notified
 * once the reset committed.
 */
typedef struct tl_reset {
	const char *conninfo;
	const dis_schema *schema;
	const char *id;
	dis_position to;
	const char *notify;
	int rc;    /* the reset's, or the store's open; -100 until done */
	double at; /* tl_now() once the reset had committed */
	int done;
} tl_reset;

static inline void *tl_reset_thread(void *p)
{
	tl_reset *j = p;
	dis_store *st;
	char err[256];

	j->rc = dis_store_open(j->conninfo, j->schema, &st, err, sizeof(err));
	if (!j->rc) {
		j->rc = dis_listener_reset(st, j->id, j->to);
		j->at = tl_now();
		if (!j->rc && j->notify) {
			const char *v[1] = {j->notify};

			PQclear(PQexecParams(dis_store_conn(st),
					     "SELECT pg_notify($1, '')", 1,
					     NULL, v, NULL, NULL, 0));
		}
		dis_store_free(st);
	}
	__atomic_store_n(&j->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static inline bool tl_reset_done(void *arg)
{
	return __atomic_load_n(&((tl_reset *)arg)->done, __ATOMIC_SEQ_CST);
}

/* Runs the reset in a thread while the loop runs; false when the thread
 * did not start or the reset did not end within timeout_ms. */
static inline bool tl_reset_running(struct event_base *base, tl_reset *j,
				    int timeout_ms)
{
	pthread_t t;

	j->rc = -100;
	j->done = 0;
	if (pthread_create(&t, NULL, tl_reset_thread, j) ||
	    !tl_run_until(base, tl_reset_done, j, timeout_ms))
		return false;
	pthread_join(t, NULL);
	return true;
}

static inline void tl_run_for(struct event_base *base, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static inline long long tl_count(PGconn *c, const char *sql)
{
	char *v = dt_scalar(c, sql);
	long long n = v ? atoll(v) : -1;

	free(v);
	return n;
}

/* Stops the runtime and runs the loop until the stop callback came. */
typedef struct tl_stop {
	bool done;
	int status;
	int calls;
} tl_stop;

static inline void tl_stopped(void *arg, dis_runtime *rt, int status)
{
	tl_stop *s = arg;

	(void)rt;
	s->done = true;
	s->status = status;
	s->calls++;
}

static inline bool tl_stop_done(void *arg)
{
	return ((tl_stop *)arg)->done;
}

static inline void tl_stop_runtime(struct event_base *base, dis_runtime *rt)
{
	tl_stop s = {0};

	assert_int_equal(dis_runtime_stop(rt, tl_stopped, &s), 0);
	assert_true(tl_run_until(base, tl_stop_done, &s, 30000));
	assert_int_equal(s.status, 0);
	assert_int_equal(s.calls, 1);
}

/* The listener's committed checkpoint as the database holds it. */
static inline dis_position tl_db_checkpoint(PGconn *c, const char *id)
{
	char sql[256];
	dis_position p = {0, 0};
	PGresult *r;

	snprintf(sql, sizeof(sql),
		 "SELECT checkpoint_tx::text, checkpoint_id FROM "
		 "event_listener WHERE id = '%s'",
		 id);
	r = PQexec(c, sql);
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
		p.tx = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
		p.id = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
	}
	PQclear(r);
	return p;
}

/* ---- the read model against a fresh replay of the log ---- */

typedef struct tl_replay {
	char cart[64][32];
	int64_t sum[64];
	int ncarts;
	long events;
} tl_replay;

static inline int tl_replay_fn(void *arg, const dis_event *ev)
{
	tl_replay *r = arg;
	const char *cart = "";
	int64_t q = 0;
	int i;

	r->events++;
	if (strcmp(dis_event_type(ev), "ShoppingCartAdded"))
		return 0;
	dis_event_get_string(ev, "cart_id", &cart);
	dis_event_get_long(ev, "quantity", &q);
	for (i = 0; i < r->ncarts && strcmp(r->cart[i], cart); i++)
		;
	if (i == r->ncarts) {
		if (r->ncarts == 64)
			return DIS_ENOMEM;
		snprintf(r->cart[r->ncarts++], sizeof(r->cart[0]), "%s", cart);
	}
	r->sum[i] += q;
	return 0;
}

/*
 * Replays the cart events from the log and checks that the read model of
 * listener `id` (handled, totals) equals it: every event once, none twice.
 */
static inline void tl_check_replay(const char *conninfo,
				   const dis_schema *schema, const char *id)
{
	dis_store *st;
	dis_query *q = tl_cart_query(schema);
	tl_replay r;
	dis_position pos = DIS_POSITION_START, next;
	PGconn *c = dt_connect(conninfo);
	PGresult *res;
	char sql[256], err[256];

	memset(&r, 0, sizeof(r));
	if (dis_store_open(conninfo, schema, &st, err, sizeof(err)))
		fail_msg("store: %s", err);
	for (;;) {
		long before = r.events;

		if (dis_store_read(st, q, pos, 5000, tl_replay_fn, &r, &next))
			fail_msg("replay: %s", dis_store_errmsg(st));
		pos = next;
		if (r.events == before)
			break;
	}
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM handled WHERE listener = '%s'", id);
	assert_int_equal(tl_count(c, sql), r.events);
	snprintf(sql, sizeof(sql),
		 "SELECT count(DISTINCT event_id) FROM handled WHERE "
		 "listener = '%s'",
		 id);
	assert_int_equal(tl_count(c, sql), r.events);
	res = PQexec(c, "SELECT cart_id, quantity FROM totals");
	assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
	assert_int_equal(PQntuples(res), r.ncarts);
	for (int i = 0; i < PQntuples(res); i++) {
		int k;

		for (k = 0;
		     k < r.ncarts && strcmp(r.cart[k], PQgetvalue(res, i, 0));
		     k++)
			;
		assert_true(k < r.ncarts);
		assert_int_equal(atoll(PQgetvalue(res, i, 1)), r.sum[k]);
	}
	PQclear(res);
	print_message("replay: %ld events, %d carts: read model matches\n",
		      r.events, r.ncarts);
	PQfinish(c);
	dis_query_free(q);
	dis_store_free(st);
}

#endif
