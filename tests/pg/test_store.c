/*
 * The event store on a real PostgreSQL: ports of disintegrate-postgres's
 * event store tests, plus the ordering and conflict cases of DESIGN
 * sections 5 and 6.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *SCHEMA =
	"[{\"type\":\"record\",\"name\":\"ItemAdded\",\"fields\":["
	" {\"name\":\"cart_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"product_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"quantity\",\"type\":\"long\"}]},"
	" {\"type\":\"record\",\"name\":\"ItemRemoved\",\"fields\":["
	" {\"name\":\"cart_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"product_id\",\"type\":\"string\",\"disintegrate.id\":true}]},"
	" {\"type\":\"record\",\"name\":\"CartClosed\",\"fields\":["
	" {\"name\":\"cart_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"note\",\"type\":\"string\"}]},"
	" {\"type\":\"record\",\"name\":\"Tick\",\"fields\":["
	" {\"name\":\"writer\",\"type\":\"long\",\"disintegrate.id\":true},"
	" {\"name\":\"n\",\"type\":\"long\"}]}]";

typedef struct fixture {
	char *conninfo;
	dis_schema *schema;
	dis_store *store;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));

	f->conninfo = dt_fresh_db();
	f->schema = dt_schema(SCHEMA);
	f->store = dt_store(f->conninfo, f->schema);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;

	dis_store_free(f->store);
	dis_schema_free(f->schema);
	free(f->conninfo);
	free(f);
	return 0;
}

static dis_event *item_added(const dis_schema *s, const char *cart,
			     const char *product, int64_t qty)
{
	dis_event *ev;

	assert_int_equal(dis_event_new(s, "ItemAdded", &ev), 0);
	assert_int_equal(dis_event_set_string(ev, "cart_id", cart), 0);
	assert_int_equal(dis_event_set_string(ev, "product_id", product), 0);
	assert_int_equal(dis_event_set_long(ev, "quantity", qty), 0);
	return ev;
}

static dis_event *item_removed(const dis_schema *s, const char *cart,
			       const char *product)
{
	dis_event *ev;

	assert_int_equal(dis_event_new(s, "ItemRemoved", &ev), 0);
	assert_int_equal(dis_event_set_string(ev, "cart_id", cart), 0);
	assert_int_equal(dis_event_set_string(ev, "product_id", product), 0);
	return ev;
}

static dis_event *tick(const dis_schema *s, int64_t writer, int64_t n)
{
	dis_event *ev;

	assert_int_equal(dis_event_new(s, "Tick", &ev), 0);
	assert_int_equal(dis_event_set_long(ev, "writer", writer), 0);
	assert_int_equal(dis_event_set_long(ev, "n", n), 0);
	return ev;
}

static void append1(dis_store *st, dis_event *ev, const dis_query *q,
		    const dis_version *v, int expect)
{
	int rc = dis_store_append(st, &ev, 1, q, v, NULL);

	if (rc != expect)
		fail_msg("append: expected %d, got %d: %s", expect, rc,
			 dis_store_errmsg(st));
	dis_event_free(ev);
}

/* The query "ItemAdded/ItemRemoved of cart `cart`". */
static dis_query *cart_query(const dis_schema *s, const char *cart)
{
	dis_query *q;
	dis_filter *f;

	assert_int_equal(dis_query_new(s, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_filter_type(f, "ItemAdded"), 0);
	assert_int_equal(dis_filter_type(f, "ItemRemoved"), 0);
	assert_int_equal(dis_filter_where_string(f, "cart_id", cart), 0);
	assert_int_equal(dis_query_check(q), 0);
	return q;
}

typedef struct collected {
	dis_event *ev[64];
	int n;
} collected;

static int collect(void *arg, const dis_event *ev)
{
	collected *c = arg;

	assert_true(c->n < 64);
	assert_int_equal(dis_event_copy(ev, &c->ev[c->n]), 0);
	c->n++;
	return 0;
}

static void collected_free(collected *c)
{
	for (int i = 0; i < c->n; i++)
		dis_event_free(c->ev[i]);
	c->n = 0;
}

/* it_queries_events: only the matching events, plus a version. */
static void test_query_by_id(void **state)
{
	fixture *f = *state;
	dis_query *q = cart_query(f->schema, "c1");
	collected c = {0};
	dis_version *v = NULL;
	const char *product;

	append1(f->store, item_added(f->schema, "c1", "p1", 1), NULL, NULL, 0);
	append1(f->store, item_added(f->schema, "c2", "p2", 1), NULL, NULL, 0);
	append1(f->store, item_removed(f->schema, "c1", "p1"), NULL, NULL, 0);
	append1(f->store, item_added(f->schema, "c2", "p3", 1), NULL, NULL, 0);

	assert_int_equal(dis_store_load(f->store, q, collect, &c, &v), 0);
	assert_int_equal(c.n, 2);
	assert_string_equal(dis_event_type(c.ev[0]), "ItemAdded");
	assert_string_equal(dis_event_type(c.ev[1]), "ItemRemoved");
	assert_int_equal(dis_event_get_string(c.ev[1], "product_id", &product),
			 0);
	assert_string_equal(product, "p1");
	assert_true(dis_position_cmp(dis_event_position(c.ev[0]),
				     dis_event_position(c.ev[1])) < 0);
	assert_non_null(v);
	assert_non_null(dis_version_text(v));
	for (int i = 0; i < c.n; i++)
		assert_true(dis_query_matches(q, c.ev[i]));
	collected_free(&c);
	dis_version_free(v);
	dis_query_free(q);
}

/* it_appends_events: ids assigned in order; type and payload round-trip. */
static void test_append_round_trip(void **state)
{
	fixture *f = *state;
	dis_event *evs[2] = {item_added(f->schema, "c1", "p1", 7),
			     item_removed(f->schema, "c1", "p1")};
	dis_query *q = cart_query(f->schema, "c1");
	collected c = {0};
	int64_t ids[2] = {0, 0};
	int64_t qty;

	assert_int_equal(dis_store_append(f->store, evs, 2, q, NULL, ids), 0);
	assert_true(ids[0] > 0);
	assert_true(ids[1] > ids[0]);
	assert_int_equal(dis_event_id(evs[0]), ids[0]);

	assert_int_equal(dis_store_load(f->store, q, collect, &c, NULL), 0);
	assert_int_equal(c.n, 2);
	assert_int_equal(dis_event_id(c.ev[0]), ids[0]);
	assert_int_equal(dis_event_id(c.ev[1]), ids[1]);
	assert_true(dis_event_equal(c.ev[0], evs[0]));
	assert_true(dis_event_equal(c.ev[1], evs[1]));
	assert_int_equal(dis_event_get_long(c.ev[0], "quantity", &qty), 0);
	assert_int_equal(qty, 7);

	/* The id columns hold the domain ids. */
	PGconn *pg = dt_connect(f->conninfo);
	char *cart = dt_scalar(pg, "SELECT string_agg(cart_id || '/' || "
				   "product_id || '/' || event_type, ',' ORDER "
				   "BY event_id) FROM event");
	assert_string_equal(cart, "c1/p1/ItemAdded,c1/p1/ItemRemoved");
	free(cart);
	PQfinish(pg);
	collected_free(&c);
	dis_event_free(evs[0]);
	dis_event_free(evs[1]);
	dis_query_free(q);
}

/* Index entries read on table event, as the statistics have them now. */
static long event_index_reads(dis_store *st, PGconn *reader)
{
	char *v;
	long n;

	/* The store's session reports its counts when it goes idle. */
	dt_exec(dis_store_conn(st), "SELECT pg_stat_force_next_flush()");
	dt_exec(dis_store_conn(st), "SELECT 1");
	v = dt_scalar(reader, "SELECT sum(idx_tup_read) FROM "
			      "pg_stat_user_indexes WHERE relname = 'event'");
	n = atol(v);
	free(v);
	return n;
}

/*
 * Domain ids are indexed with tx: an append's check reads the id's events
 * from the load's xmin on, not the id's whole stream.
 */
static void test_check_reads_only_recent_events(void **state)
{
	fixture *f = *state;
	PGconn *pg = dt_connect(f->conninfo);
	dis_query *q = cart_query(f->schema, "long");
	dis_version *loaded = NULL, *v = NULL;
	dis_event *evs[500], *ev;
	char *def, text[64];
	unsigned long long xmax;
	long before, after;
	int n = 0;

	def = dt_scalar(pg, "SELECT indexdef FROM pg_indexes WHERE indexname "
			    "= 'idx_event_cart_id'");
	assert_non_null(strstr(def, "(cart_id, tx)"));
	free(def);
	for (int b = 0; b < 10; b++) {
		for (int i = 0; i < 500; i++)
			evs[i] = item_added(f->schema, "long", "p", 1);
		assert_int_equal(dis_store_append(f->store, evs, 500, NULL,
						  NULL, NULL),
				 0);
		for (int i = 0; i < 500; i++)
			dis_event_free(evs[i]);
	}
	assert_int_equal(
		dis_store_load(f->store, q, dt_count_event, &n, &loaded), 0);
	assert_int_equal(n, 5000);
	/*
	 * The load's xmin is the cluster's oldest open transaction, which
	 * other tests running beside this one hold back (the check then
	 * reads the stream from there: 2000 of these 5000 once). Nothing
	 * else writes to this database, so the version that saw everything
	 * below the load's xmax is the same for this table.
	 */
	xmax = strtoull(strchr(dis_version_text(loaded), ':') + 1, NULL, 10);
	snprintf(text, sizeof(text), "%llu:%llu:", xmax, xmax);
	assert_int_equal(dis_version_parse(text, &v), 0);
	dis_version_free(loaded);
	before = event_index_reads(f->store, pg);
	ev = item_added(f->schema, "long", "p", 1);
	assert_int_equal(dis_store_append(f->store, &ev, 1, q, v, NULL), 0);
	after = event_index_reads(f->store, pg);
	print_message("index entries read by the check: %ld\n", after - before);
	assert_true(after - before < 100);
	/* And it still finds what the load did not see. */
	assert_int_equal(dis_store_append(f->store, &ev, 1, q, v, NULL),
			 DIS_ECONFLICT);
	dis_event_free(ev);
	dis_version_free(v);
	dis_query_free(q);
	PQfinish(pg);
}

/* it_appends_unchecked: no validation query, nothing can conflict. */
static void test_append_unchecked(void **state)
{
	fixture *f = *state;
	dis_query *q = cart_query(f->schema, "c1");
	dis_version *v = NULL;
	collected c = {0};

	assert_int_equal(dis_store_load(f->store, q, NULL, NULL, &v), 0);
	append1(f->store, item_added(f->schema, "c1", "p1", 1), NULL, NULL, 0);
	append1(f->store, item_added(f->schema, "c1", "p2", 1), NULL, v, 0);
	assert_int_equal(dis_store_load(f->store, q, collect, &c, NULL), 0);
	assert_int_equal(c.n, 2);
	collected_free(&c);
	dis_version_free(v);
	dis_query_free(q);
}

/* A second append with the same version conflicts, on an empty store. */
static void test_conflict_same_version_empty(void **state)
{
	fixture *f = *state;
	dis_query *q = cart_query(f->schema, "c1");
	dis_version *v = NULL;

	assert_int_equal(dis_store_load(f->store, q, NULL, NULL, &v), 0);
	append1(f->store, item_added(f->schema, "c1", "p1", 1), q, v, 0);
	append1(f->store, item_added(f->schema, "c1", "p2", 1), q, v,
		DIS_ECONFLICT);
	/* Nothing of the failed append was stored. */
	PGconn *pg = dt_connect(f->conninfo);
	char *n = dt_scalar(pg, "SELECT count(*) FROM event");
	assert_string_equal(n, "1");
	free(n);
	PQfinish(pg);
	dis_version_free(v);
	dis_query_free(q);
}

/* Conflict when the queried boundary changed; other boundaries do not. */
static void test_conflict_boundary_changed(void **state)
{
	fixture *f = *state;
	dis_query *q1 = cart_query(f->schema, "c1");
	dis_query *q2 = cart_query(f->schema, "c2");
	dis_version *v1 = NULL, *v2 = NULL;

	append1(f->store, item_added(f->schema, "c1", "p1", 1), NULL, NULL, 0);
	assert_int_equal(dis_store_load(f->store, q1, NULL, NULL, &v1), 0);
	assert_int_equal(dis_store_load(f->store, q2, NULL, NULL, &v2), 0);
	/* Someone else changes cart c1. */
	append1(f->store, item_removed(f->schema, "c1", "p1"), NULL, NULL, 0);
	append1(f->store, item_added(f->schema, "c1", "p9", 1), q1, v1,
		DIS_ECONFLICT);
	assert_string_not_equal(dis_store_errmsg(f->store), "no error");
	/* Cart c2 was not touched: its decision goes through. */
	append1(f->store, item_added(f->schema, "c2", "p9", 1), q2, v2, 0);
	dis_version_free(v1);
	dis_version_free(v2);
	dis_query_free(q1);
	dis_query_free(q2);
}

/*
 * DESIGN section 6: W holds an uncommitted matching event with a lower id,
 * X commits a higher one, the decision loads (sees X), W commits: the
 * decision's append must conflict.
 */
static void test_out_of_order_conflict(void **state)
{
	fixture *f = *state;
	dis_query *q = cart_query(f->schema, "c1");
	PGconn *wconn = dt_connect(f->conninfo), *xconn = dt_connect(f->conninfo);
	dis_store *w, *x;
	dis_version *v = NULL;
	collected c = {0};
	int64_t wid, xid;
	dis_event *ev;

	assert_int_equal(dis_store_wrap(wconn, f->schema, &w), 0);
	assert_int_equal(dis_store_wrap(xconn, f->schema, &x), 0);
	dt_exec(wconn, "BEGIN");
	ev = item_added(f->schema, "c1", "pw", 1);
	assert_int_equal(dis_store_append(w, &ev, 1, NULL, NULL, &wid), 0);
	dis_event_free(ev);
	ev = item_added(f->schema, "c1", "px", 1);
	assert_int_equal(dis_store_append(x, &ev, 1, NULL, NULL, &xid), 0);
	dis_event_free(ev);
	assert_true(wid < xid);

	assert_int_equal(dis_store_load(f->store, q, collect, &c, &v), 0);
	assert_int_equal(c.n, 1);
	assert_int_equal(dis_event_id(c.ev[0]), xid);
	dt_exec(wconn, "COMMIT");

	append1(f->store, item_added(f->schema, "c1", "pd", 1), q, v,
		DIS_ECONFLICT);
	collected_free(&c);
	dis_version_free(v);
	dis_store_free(w);
	dis_store_free(x);
	PQfinish(wconn);
	PQfinish(xconn);
	dis_query_free(q);
}

/*
 * W appends to cart c2 and holds it uncommitted; the store's connection
 * opens a transaction with `begin` and loads the cart (seeing `seen`
 * events); W commits; then an append under that load's version must
 * return `expect`. The store's transaction is left open.
 */
static void writer_commits_after_load(fixture *f, dis_store *w, PGconn *wconn,
				      const char *begin, int seen, int expect)
{
	dis_query *q = cart_query(f->schema, "c2");
	dis_version *v = NULL;
	collected c = {0};
	dis_event *ev = item_added(f->schema, "c2", "pw", 1);

	dt_exec(wconn, "BEGIN");
	assert_int_equal(dis_store_append(w, &ev, 1, NULL, NULL, NULL), 0);
	dis_event_free(ev);
	dt_exec(dis_store_conn(f->store), begin);
	assert_int_equal(dis_store_load(f->store, q, collect, &c, &v), 0);
	assert_int_equal(c.n, seen);
	dt_exec(wconn, "COMMIT");
	append1(f->store, item_added(f->schema, "c2", "pd", 1), q, v, expect);
	collected_free(&c);
	dis_version_free(v);
	dis_query_free(q);
}

/*
 * Inside a REPEATABLE READ (or SERIALIZABLE) transaction the check would
 * read the transaction's first snapshot: the out-of-order case above would
 * slip through, so such an append is refused; inside READ COMMITTED the
 * same case conflicts.
 */
static void test_append_refuses_snapshot_isolation(void **state)
{
	fixture *f = *state;
	PGconn *wconn = dt_connect(f->conninfo);
	PGconn *conn = dis_store_conn(f->store);
	dis_store *w;

	assert_int_equal(dis_store_wrap(wconn, f->schema, &w), 0);
	writer_commits_after_load(f, w, wconn,
				  "BEGIN ISOLATION LEVEL REPEATABLE READ", 0,
				  DIS_ESTATE);
	assert_non_null(strstr(dis_store_errmsg(f->store), "READ COMMITTED"));
	assert_int_equal(PQtransactionStatus(conn), PQTRANS_INERROR);
	dt_exec(conn, "ROLLBACK");

	/* The same in READ COMMITTED: a conflict. */
	writer_commits_after_load(f, w, wconn,
				  "BEGIN ISOLATION LEVEL READ COMMITTED", 1,
				  DIS_ECONFLICT);
	dt_exec(conn, "ROLLBACK");
	dis_store_free(w);
	PQfinish(wconn);
}

/* Advisory locks this store's backend holds (none between calls). */
static void assert_no_advisory_locks(dis_store *st)
{
	char *locks = dt_scalar(dis_store_conn(st),
				"SELECT count(*) FROM pg_locks WHERE "
				"locktype = 'advisory' AND pid = "
				"pg_backend_pid()");

	assert_non_null(locks);
	assert_string_equal(locks, "0");
	free(locks);
}

/*
 * A validation query binding more values than PostgreSQL takes in one
 * statement is refused before anything is sent: the store stays usable,
 * outside a transaction, holding no lock.
 */
static void test_append_with_too_many_values(void **state)
{
	fixture *f = *state;
	PGconn *conn = dis_store_conn(f->store);
	dis_query *q;
	dis_filter *fl;
	char cart[32];

	assert_int_equal(dis_query_new(f->schema, &q), 0);
	for (int i = 0; i < 70000; i++) {
		snprintf(cart, sizeof(cart), "many-%d", i);
		assert_int_equal(dis_query_add_filter(q, &fl), 0);
		assert_int_equal(dis_filter_type(fl, "ItemAdded"), 0);
		assert_int_equal(dis_filter_where_string(fl, "cart_id", cart),
				 0);
	}
	append1(f->store, item_added(f->schema, "many-1", "p", 1), q, NULL,
		DIS_EINVAL);
	assert_non_null(strstr(dis_store_errmsg(f->store), "65535"));
	assert_int_equal(PQpipelineStatus(conn), PQ_PIPELINE_OFF);
	assert_int_equal(PQtransactionStatus(conn), PQTRANS_IDLE);
	assert_no_advisory_locks(f->store);
	dis_query_free(q);
	q = cart_query(f->schema, "many-1");
	append1(f->store, item_added(f->schema, "many-1", "p", 1), q, NULL, 0);
	dis_query_free(q);
}

/*
 * Statements discarded under the store (DEALLOCATE on its connection):
 * the append runs again, once, and keeps no notification token (which
 * would leave other appends skipping their notifications). Only the
 * insert gone: its lock statement has taken the token when the insert
 * fails. Everything gone: the first statement fails.
 */
static void test_append_after_deallocate(void **state)
{
	fixture *f = *state;
	PGconn *conn = dis_store_conn(f->store);
	char *name, *sql;

	append1(f->store, item_added(f->schema, "dealloc", "p", 1), NULL, NULL,
		0);
	name = dt_scalar(conn, "SELECT name FROM pg_prepared_statements "
			       "WHERE statement LIKE 'INSERT INTO event%'");
	assert_non_null(name);
	sql = dt_fmt("DEALLOCATE %s", name);
	dt_exec(conn, sql);
	free(sql);
	free(name);
	for (int i = 0; i < 2; i++) {
		append1(f->store, item_added(f->schema, "dealloc", "p", 1),
			NULL, NULL, 0);
		assert_no_advisory_locks(f->store);
	}
	dt_exec(conn, "DEALLOCATE ALL");
	for (int i = 0; i < 2; i++) {
		append1(f->store, item_added(f->schema, "dealloc", "p", 1),
			NULL, NULL, 0);
		assert_no_advisory_locks(f->store);
	}
}

typedef struct reader {
	int64_t ids[16];
	int n;
} reader;

static int read_ids(void *arg, const dis_event *ev)
{
	reader *r = arg;

	assert_true(r->n < 16);
	r->ids[r->n++] = dis_event_id(ev);
	return 0;
}

/*
 * Reads from *pos until `want` events have been read in all or 20 s have
 * passed. The barrier is cluster wide: a transaction open in another
 * database (a test running beside this one) delays delivery, never loses it.
 */
static int read_until(dis_store *st, const dis_query *q, dis_position *pos,
		      reader *r, int want)
{
	for (int i = 0; i < 2000; i++) {
		int rc = dis_store_read(st, q, *pos, 100, read_ids, r, pos);

		if (rc || r->n >= want)
			return rc;
		usleep(10000);
	}
	return 0;
}

static dis_query *all_query(const dis_schema *s)
{
	dis_query *q;
	dis_filter *f;

	assert_int_equal(dis_query_new(s, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	return q;
}

/*
 * stream_does_not_skip_events_when_writers_commit_out_of_order: a reader
 * that has read past the later event must still get the earlier one.
 */
static void test_read_out_of_order(void **state)
{
	fixture *f = *state;
	dis_query *q = all_query(f->schema);
	PGconn *wconn = dt_connect(f->conninfo);
	dis_store *w;
	dis_position pos = DIS_POSITION_START, next;
	reader r = {0};
	int64_t wid, xid;
	dis_event *ev;

	assert_int_equal(dis_store_wrap(wconn, f->schema, &w), 0);
	dt_exec(wconn, "BEGIN");
	ev = tick(f->schema, 1, 1);
	assert_int_equal(dis_store_append(w, &ev, 1, NULL, NULL, &wid), 0);
	dis_event_free(ev);
	ev = tick(f->schema, 2, 1);
	assert_int_equal(dis_store_append(f->store, &ev, 1, NULL, NULL, &xid),
			 0);
	dis_event_free(ev);

	/* W is open: the committed later event is held back, not skipped. */
	assert_int_equal(dis_store_read(f->store, q, pos, 100, read_ids, &r,
					&next), 0);
	assert_int_equal(r.n, 0);
	pos = next;
	dt_exec(wconn, "COMMIT");
	next = pos;
	assert_int_equal(read_until(f->store, q, &next, &r, 2), 0);
	assert_int_equal(r.n, 2);
	assert_true((r.ids[0] == wid && r.ids[1] == xid) ||
		    (r.ids[0] == xid && r.ids[1] == wid));
	/* Nothing is delivered twice. */
	pos = next;
	assert_int_equal(dis_store_read(f->store, q, pos, 100, read_ids, &r,
					&next), 0);
	assert_int_equal(r.n, 2);
	dis_store_free(w);
	PQfinish(wconn);
	dis_query_free(q);
}

/*
 * epoch_does_not_exceed_max_committed_event_id: after a rolled back
 * append the position never runs ahead of what is committed, so the next
 * committed event is still read.
 */
static void test_position_after_rollback(void **state)
{
	fixture *f = *state;
	dis_query *q = all_query(f->schema);
	PGconn *wconn = dt_connect(f->conninfo);
	dis_store *w;
	dis_position pos = DIS_POSITION_START, next, head;
	reader r = {0};
	dis_event *ev;
	int64_t id;

	append1(f->store, tick(f->schema, 1, 1), NULL, NULL, 0);
	assert_int_equal(dis_store_wrap(wconn, f->schema, &w), 0);
	dt_exec(wconn, "BEGIN");
	ev = tick(f->schema, 2, 1);
	assert_int_equal(dis_store_append(w, &ev, 1, NULL, NULL, &id), 0);
	dis_event_free(ev);
	dt_exec(wconn, "ROLLBACK");

	next = pos;
	assert_int_equal(read_until(f->store, q, &next, &r, 1), 0);
	assert_int_equal(r.n, 1);
	/* The head is the committed event: the rolled back one left no
	 * trace, and the read position covers the head. */
	assert_int_equal(dis_store_head(f->store, &head), 0);
	assert_int_equal(head.id, r.ids[0]);
	assert_true(dis_position_cmp(next, head) >= 0);
	/* The next committed event comes after the position. */
	ev = tick(f->schema, 3, 1);
	assert_int_equal(dis_store_append(f->store, &ev, 1, NULL, NULL, &id), 0);
	assert_true(dis_position_cmp(dis_event_position(ev), next) > 0);
	dis_event_free(ev);
	assert_int_equal(read_until(f->store, q, &next, &r, 2), 0);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.ids[1], id);
	dis_store_free(w);
	PQfinish(wconn);
	dis_query_free(q);
}

static void test_empty_append_and_bad_query(void **state)
{
	fixture *f = *state;
	dis_query *q;
	dis_filter *flt;
	dis_event *none[1] = {NULL};

	assert_int_equal(dis_store_append(f->store, none, 0, NULL, NULL, NULL),
			 DIS_EINVAL);
	assert_non_null(strstr(dis_store_errmsg(f->store), "at least one"));

	assert_int_equal(dis_query_new(f->schema, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &flt), 0);
	assert_int_equal(dis_filter_type(flt, "Tick"), 0);
	assert_int_equal(dis_filter_exclude(flt, "Tick"), 0);
	assert_int_equal(dis_store_load(f->store, q, NULL, NULL, NULL),
			 DIS_EINVAL);
	assert_non_null(strstr(dis_store_errmsg(f->store), "excludes"));
	dis_query_free(q);
}

/* A hostile value is data, in an id filter and in a payload. */
static void test_injection_round_trips(void **state)
{
	fixture *f = *state;
	const char *evil = "x'); DROP TABLE event; --";
	dis_query *q = cart_query(f->schema, evil);
	collected c = {0};
	dis_event *ev;
	const char *got;

	assert_int_equal(dis_event_new(f->schema, "CartClosed", &ev), 0);
	assert_int_equal(dis_event_set_string(ev, "cart_id", evil), 0);
	assert_int_equal(dis_event_set_string(ev, "note", evil), 0);
	append1(f->store, ev, NULL, NULL, 0);
	append1(f->store, item_added(f->schema, evil, evil, 1), NULL, NULL, 0);
	assert_int_equal(dis_store_load(f->store, q, collect, &c, NULL), 0);
	assert_int_equal(c.n, 1);
	assert_int_equal(dis_event_get_string(c.ev[0], "product_id", &got), 0);
	assert_string_equal(got, evil);
	collected_free(&c);
	dis_query_free(q);

	/* The closing event, found through its cart id, keeps its note. */
	dis_filter *flt;
	assert_int_equal(dis_query_new(f->schema, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &flt), 0);
	assert_int_equal(dis_filter_type(flt, "CartClosed"), 0);
	assert_int_equal(dis_filter_where_string(flt, "cart_id", evil), 0);
	assert_int_equal(dis_store_load(f->store, q, collect, &c, NULL), 0);
	assert_int_equal(c.n, 1);
	assert_int_equal(dis_event_get_string(c.ev[0], "note", &got), 0);
	assert_string_equal(got, evil);
	collected_free(&c);
	dis_query_free(q);
}

/* Corrupt payloads are DIS_ESERDE naming the event, never a crash. */
static void test_corrupt_payloads(void **state)
{
	fixture *f = *state;
	dis_query *q = all_query(f->schema);
	PGconn *pg = dt_connect(f->conninfo);
	char *sid = dt_scalar(pg, "SELECT min(id) FROM event_schema");
	char sql[512];
	int rc;

	/* Framed with the real schema id, Tick{writer, n} with a string-free
	 * record: garbage varints. */
	snprintf(sql, sizeof(sql),
		 "INSERT INTO event (event_id, event_type, payload, writer) "
		 "VALUES (900001, 'Tick', '\\xd1'::bytea || "
		 "int4send(%s) || '\\xffffffffffffffffffff'::bytea, 1)",
		 sid);
	dt_exec(pg, sql);
	rc = dis_store_load(f->store, q, NULL, NULL, NULL);
	assert_int_equal(rc, DIS_ESERDE);
	assert_non_null(strstr(dis_store_errmsg(f->store), "900001"));
	dt_exec(pg, "DELETE FROM event");

	/* A string whose length prefix claims about 2^62 bytes. */
	snprintf(sql, sizeof(sql),
		 "INSERT INTO event (event_id, event_type, payload, cart_id) "
		 "VALUES (900002, 'CartClosed', '\\xd1'::bytea || "
		 "int4send(%s) || '\\x02'::bytea || 'a'::bytea || "
		 "'\\xfeffffffffffffff7f'::bytea, 'a')",
		 sid);
	dt_exec(pg, sql);
	rc = dis_store_load(f->store, q, NULL, NULL, NULL);
	assert_int_equal(rc, DIS_ESERDE);
	assert_non_null(strstr(dis_store_errmsg(f->store), "900002"));
	dt_exec(pg, "DELETE FROM event");

	/* No frame at all (e.g. a JSON payload of another tool). */
	dt_exec(pg, "INSERT INTO event (event_id, event_type, payload) VALUES "
		    "(900003, 'Tick', '{\"writer\":1}'::bytea)");
	dis_position next = DIS_POSITION_START;
	reader r = {0};
	rc = read_until(f->store, q, &next, &r, 1);
	assert_int_equal(rc, DIS_ESERDE);
	assert_non_null(strstr(dis_store_errmsg(f->store), "900003"));

	free(sid);
	PQfinish(pg);
	dis_query_free(q);
}

/* Two processes (here: connections in threads) migrating at once. */
typedef struct migrator {
	const char *conninfo;
	const dis_schema *schema;
	int rc;
	char err[256];
} migrator;

static void *migrate_thread(void *arg)
{
	migrator *m = arg;
	dis_store *st;

	m->rc = dis_store_open(m->conninfo, m->schema, &st, m->err,
			       sizeof(m->err));
	if (m->rc)
		return NULL;
	m->rc = dis_store_migrate(st);
	if (m->rc)
		snprintf(m->err, sizeof(m->err), "%s", dis_store_errmsg(st));
	dis_store_free(st);
	return NULL;
}

static void test_concurrent_migrate(void **state)
{
	fixture *f = *state;
	char *fresh = dt_fresh_db();
	migrator m[4];
	pthread_t t[4];

	for (int i = 0; i < 4; i++) {
		m[i] = (migrator){fresh, f->schema, -99, ""};
		pthread_create(&t[i], NULL, migrate_thread, &m[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		if (m[i].rc)
			fail_msg("migration %d failed: %s", i, m[i].err);
	}
	/* And again: idempotent. */
	migrate_thread(&m[0]);
	assert_int_equal(m[0].rc, 0);
	free(fresh);
}

/* A column of the wrong type for a domain id is a clear error. */
static void test_migrate_type_mismatch(void **state)
{
	fixture *f = *state;
	char *fresh = dt_fresh_db();
	PGconn *pg = dt_connect(fresh);
	dis_store *st;

	dt_exec(pg, "CREATE SEQUENCE seq_event_event_id; CREATE TABLE event ("
		    "event_id BIGINT PRIMARY KEY DEFAULT "
		    "nextval('seq_event_event_id'), event_type VARCHAR(255), "
		    "payload BYTEA, inserted_at TIMESTAMP DEFAULT now(), "
		    "writer TEXT)");
	assert_int_equal(dis_store_open(fresh, f->schema, &st, NULL, 0), 0);
	assert_int_equal(dis_store_migrate(st), DIS_ESCHEMA);
	assert_non_null(strstr(dis_store_errmsg(st), "writer"));
	dis_store_free(st);
	PQfinish(pg);
	free(fresh);
}

/* An existing Disintegrate table: old rows read as long committed. */
static void test_migrate_existing_disintegrate(void **state)
{
	fixture *f = *state;
	char *fresh = dt_fresh_db();
	PGconn *pg = dt_connect(fresh);
	dis_store *st;
	char *tx;

	dt_exec(pg, "CREATE SEQUENCE seq_event_event_id; CREATE TABLE event ("
		    "event_id BIGINT PRIMARY KEY DEFAULT "
		    "nextval('seq_event_event_id'), event_type VARCHAR(255), "
		    "payload BYTEA, inserted_at TIMESTAMP DEFAULT now());"
		    "INSERT INTO event (event_type, payload) VALUES "
		    "('Old', '\\x00')");
	st = dt_store(fresh, f->schema);
	tx = dt_scalar(pg, "SELECT tx::text FROM event WHERE event_type = 'Old'");
	assert_string_equal(tx, "0");
	free(tx);
	append1(st, tick(f->schema, 1, 1), NULL, NULL, 0);
	tx = dt_scalar(pg, "SELECT (tx > '0'::xid8)::text FROM event WHERE "
			   "event_type = 'Tick'");
	assert_string_equal(tx, "true");
	free(tx);
	dis_store_free(st);
	PQfinish(pg);
	free(fresh);
}

/* A bare event id gives its position. */
static void test_position_of(void **state)
{
	fixture *f = *state;
	dis_event *ev = tick(f->schema, 1, 1);
	dis_position p;

	assert_int_equal(dis_store_append(f->store, &ev, 1, NULL, NULL, NULL),
			 0);
	assert_int_equal(dis_store_position_of(f->store, dis_event_id(ev), &p),
			 0);
	assert_int_equal(dis_position_cmp(p, dis_event_position(ev)), 0);
	assert_int_equal(dis_store_position_of(f->store, 424242, &p),
			 DIS_ENOTFOUND);
	dis_event_free(ev);
}

/* An event whose uuid id was never set is refused, not stored as NULL. */
static void test_unset_uuid_id_refused(void **state)
{
	fixture *f = *state;
	dis_schema *s = dt_schema(
		"{\"type\":\"record\",\"name\":\"Seen\",\"fields\":["
		"{\"name\":\"who\",\"type\":{\"type\":\"string\","
		"\"logicalType\":\"uuid\"},\"disintegrate.id\":true}]}");
	dis_store *st = dt_store(f->conninfo, s);
	dis_event *ev;

	assert_int_equal(dis_event_new(s, "Seen", &ev), 0);
	assert_int_equal(dis_store_append(st, &ev, 1, NULL, NULL, NULL),
			 DIS_EINVAL);
	assert_non_null(strstr(dis_store_errmsg(st), "\"who\""));
	assert_int_equal(dis_event_set_string(
				 ev, "who", "0E2B7C4A-1111-4222-8333-444455556666"),
			 0);
	assert_int_equal(dis_store_append(st, &ev, 1, NULL, NULL, NULL), 0);
	dis_event_free(ev);
	dis_store_free(st);
	dis_schema_free(s);
}

/*
 * A type named Null: unquoted in a text[] literal it would read as a null
 * and match nothing, so its events would never load and never conflict.
 */
static void test_type_named_null(void **state)
{
	fixture *f = *state;
	dis_schema *s = dt_schema(
		"[{\"type\":\"record\",\"name\":\"Null\",\"fields\":["
		"{\"name\":\"k\",\"type\":\"long\",\"disintegrate.id\":true}]},"
		"{\"type\":\"record\",\"name\":\"NULL\",\"fields\":["
		"{\"name\":\"n\",\"type\":\"long\"}]}]");
	dis_store *st = dt_store(f->conninfo, s);
	dis_event *ev[2];
	dis_version *v = NULL;
	collected got = {0};
	dis_query *q;
	dis_filter *flt;

	assert_int_equal(dis_event_new(s, "Null", &ev[0]), 0);
	assert_int_equal(dis_event_set_long(ev[0], "k", 1), 0);
	assert_int_equal(dis_event_new(s, "NULL", &ev[1]), 0);
	assert_int_equal(dis_store_append(st, ev, 2, NULL, NULL, NULL), 0);
	assert_int_equal(dis_query_new(s, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &flt), 0);
	assert_int_equal(dis_filter_type(flt, "Null"), 0);
	assert_int_equal(dis_filter_where_long(flt, "k", 1), 0);
	assert_int_equal(dis_query_add_filter(q, &flt), 0);
	assert_int_equal(dis_filter_type(flt, "NULL"), 0);
	assert_int_equal(dis_query_check(q), 0);
	assert_int_equal(dis_store_load(st, q, collect, &got, &v), 0);
	assert_int_equal(got.n, 2);
	collected_free(&got);
	/* Another writer's Null event: the stale decision conflicts. */
	assert_int_equal(dis_store_append(st, ev, 1, NULL, NULL, NULL), 0);
	assert_int_equal(dis_store_append(st, ev, 1, q, v, NULL),
			 DIS_ECONFLICT);
	dis_version_free(v);
	dis_query_free(q);
	dis_event_free(ev[0]);
	dis_event_free(ev[1]);
	dis_store_free(st);
	dis_schema_free(s);
}

/*
 * Statements are prepared and cached per query shape: more shapes than the
 * cache holds, and a connection whose statements were discarded, still
 * work.
 */
static void test_statement_cache(void **state)
{
	fixture *f = *state;
	PGconn *pg = dis_store_conn(f->store);
	char *n;

	append1(f->store, item_added(f->schema, "c1", "p1", 1), NULL, NULL, 0);
	for (int round = 0; round < 2; round++) {
		for (int shape = 1; shape <= 80; shape++) {
			dis_query *q;
			dis_filter *flt;
			collected c = {0};

			assert_int_equal(dis_query_new(f->schema, &q), 0);
			for (int k = 0; k < shape; k++) {
				assert_int_equal(dis_query_add_filter(q, &flt),
						 0);
				assert_int_equal(dis_filter_where_string(
							 flt, "cart_id", "c1"),
						 0);
			}
			if (dis_store_load(f->store, q, collect, &c, NULL))
				fail_msg("round %d shape %d: %s", round, shape,
					 dis_store_errmsg(f->store));
			assert_int_equal(c.n, 1);
			collected_free(&c);
			dis_query_free(q);
		}
		/* Evicted statements are deallocated, not leaked. */
		n = dt_scalar(pg, "SELECT count(*) FROM pg_prepared_statements");
		assert_true(atoi(n) <= 64 + 8);
		free(n);
		/* Someone discards our statements: the store re-prepares. */
		dt_exec(pg, "DISCARD ALL");
	}
	dis_query *zz = cart_query(f->schema, "zz");
	append1(f->store, item_added(f->schema, "zz", "p2", 1), zz, NULL, 0);
	dis_query_free(zz);
}

/*
 * Schema evolution through the registry: events written with an older
 * schema are decoded with it and resolved to the reader's schema, and a
 * field added since reads back its default.
 */
static void test_evolution_through_registry(void **state)
{
	fixture *f = *state;
	char *fresh = dt_fresh_db();
	dis_schema *v1 = dt_schema(
		"{\"type\":\"record\",\"name\":\"Joined\",\"fields\":["
		"{\"name\":\"member\",\"type\":\"string\","
		"\"disintegrate.id\":true},"
		"{\"name\":\"age\",\"type\":\"int\"}]}");
	dis_schema *v2 = dt_schema(
		"{\"type\":\"record\",\"name\":\"Joined\",\"fields\":["
		"{\"name\":\"member\",\"type\":\"string\","
		"\"disintegrate.id\":true},"
		"{\"name\":\"age\",\"type\":\"long\"},"
		"{\"name\":\"level\",\"type\":\"string\","
		"\"default\":\"bronze\"},"
		"{\"name\":\"referrer\",\"type\":[\"null\",\"string\"],"
		"\"default\":null}]}");
	dis_store *old = dt_store(fresh, v1), *cur = dt_store(fresh, v2);
	dis_query *q;
	dis_filter *flt;
	collected c = {0};
	dis_event *ev;
	const char *level;
	int64_t age;

	(void)f;
	assert_int_equal(dis_event_new(v1, "Joined", &ev), 0);
	assert_int_equal(dis_event_set_string(ev, "member", "m1"), 0);
	assert_int_equal(dis_event_set_int(ev, "age", 41), 0);
	append1(old, ev, NULL, NULL, 0);
	assert_int_equal(dis_event_new(v2, "Joined", &ev), 0);
	assert_int_equal(dis_event_set_string(ev, "member", "m2"), 0);
	assert_int_equal(dis_event_set_long(ev, "age", 7), 0);
	assert_int_equal(dis_event_set_string(ev, "level", "gold"), 0);
	append1(cur, ev, NULL, NULL, 0);

	assert_int_equal(dis_query_new(v2, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &flt), 0);
	if (dis_store_load(cur, q, collect, &c, NULL))
		fail_msg("load: %s", dis_store_errmsg(cur));
	assert_int_equal(c.n, 2);
	/* Written with v1: int promoted to long, new fields defaulted. */
	assert_int_equal(dis_event_get_long(c.ev[0], "age", &age), 0);
	assert_int_equal(age, 41);
	assert_int_equal(dis_event_get_string(c.ev[0], "level", &level), 0);
	assert_string_equal(level, "bronze");
	assert_true(dis_event_is_null(c.ev[0], "referrer"));
	assert_int_equal(dis_event_get_string(c.ev[1], "level", &level), 0);
	assert_string_equal(level, "gold");
	collected_free(&c);
	dis_query_free(q);

	PGconn *pg = dt_connect(fresh);
	char *n = dt_scalar(pg, "SELECT count(*) FROM event_schema");
	assert_string_equal(n, "2");
	free(n);
	PQfinish(pg);
	dis_store_free(old);
	dis_store_free(cur);
	dis_schema_free(v1);
	dis_schema_free(v2);
	free(fresh);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_query_by_id, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_check_reads_only_recent_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_round_trip, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_append_unchecked, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			test_conflict_same_version_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conflict_boundary_changed,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_order_conflict,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_append_refuses_snapshot_isolation, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			test_append_with_too_many_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_after_deallocate,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_out_of_order, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_position_after_rollback,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_append_and_bad_query,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_injection_round_trips,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_payloads, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_migrate, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_migrate_type_mismatch,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_migrate_existing_disintegrate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_position_of, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_unset_uuid_id_refused,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_type_named_null, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_statement_cache, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_evolution_through_registry,
						setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
