/*
 * The store under concurrency, on a real PostgreSQL:
 *  - 8 writers commit out of order for 10 s while a reader tails: every
 *    committed event is read exactly once, in position order;
 *  - decisions on disjoint boundaries never conflict;
 *  - concurrent withdrawals on one account never let two conflicting
 *    decisions both commit.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *SCHEMA =
	"[{\"type\":\"record\",\"name\":\"Deposited\",\"fields\":["
	" {\"name\":\"account_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"amount\",\"type\":\"long\"}]},"
	" {\"type\":\"record\",\"name\":\"Withdrawn\",\"fields\":["
	" {\"name\":\"account_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"amount\",\"type\":\"long\"}]},"
	" {\"type\":\"record\",\"name\":\"Tick\",\"fields\":["
	" {\"name\":\"writer\",\"type\":\"long\",\"disintegrate.id\":true},"
	" {\"name\":\"n\",\"type\":\"long\"}]}]";

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- writers and a tailing reader ---- */

#define WRITERS 8
#define MAX_IDS 400000

typedef struct shared {
	const char *conninfo;
	const dis_schema *schema;
	double until;
	atomic_int writers_left;
	pthread_mutex_t lock;
	int64_t *committed;
	size_t ncommitted;
	int64_t *read;
	size_t nread;
	char error[512];
} shared;

typedef struct writer_arg {
	shared *sh;
	int id;
} writer_arg;

static void set_error(shared *sh, const char *what, const char *msg)
{
	pthread_mutex_lock(&sh->lock);
	if (!sh->error[0])
		snprintf(sh->error, sizeof(sh->error), "%s: %s", what, msg);
	pthread_mutex_unlock(&sh->lock);
}

static void *writer_main(void *arg)
{
	writer_arg *wa = arg;
	shared *sh = wa->sh;
	unsigned seed = (unsigned)wa->id * 7919u + 1;
	dis_store *st;
	char err[256];
	int64_t n = 0;

	if (dis_store_open(sh->conninfo, sh->schema, &st, err, sizeof(err))) {
		set_error(sh, "writer connect", err);
		goto out;
	}
	while (now_s() < sh->until && !sh->error[0]) {
		dis_event *evs[3];
		int64_t ids[3];
		int k = 1 + rand_r(&seed) % 3;
		bool rollback = rand_r(&seed) % 10 == 0;
		PGresult *r;

		for (int i = 0; i < k; i++) {
			dis_event_new(sh->schema, "Tick", &evs[i]);
			dis_event_set_long(evs[i], "writer", wa->id);
			dis_event_set_long(evs[i], "n", n++);
		}
		PQclear(PQexec(dis_store_conn(st), "BEGIN"));
		int rc = dis_store_append(st, evs, (size_t)k, NULL, NULL, ids);
		for (int i = 0; i < k; i++)
			dis_event_free(evs[i]);
		if (rc) {
			set_error(sh, "writer append", dis_store_errmsg(st));
			break;
		}
		/* Sleep inside the transaction: commits come out of id order. */
		usleep((useconds_t)(rand_r(&seed) % 4000));
		r = PQexec(dis_store_conn(st), rollback ? "ROLLBACK" : "COMMIT");
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			set_error(sh, "writer commit",
				  PQerrorMessage(dis_store_conn(st)));
			PQclear(r);
			break;
		}
		PQclear(r);
		if (!rollback) {
			pthread_mutex_lock(&sh->lock);
			for (int i = 0; i < k && sh->ncommitted < MAX_IDS; i++)
				sh->committed[sh->ncommitted++] = ids[i];
			pthread_mutex_unlock(&sh->lock);
		}
	}
	dis_store_free(st);
out:
	atomic_fetch_sub(&sh->writers_left, 1);
	return NULL;
}

typedef struct tail_state {
	shared *sh;
	dis_position last;
	bool order_broken;
} tail_state;

static int on_read(void *arg, const dis_event *ev)
{
	tail_state *t = arg;

	if (dis_position_cmp(dis_event_position(ev), t->last) <= 0)
		t->order_broken = true;
	t->last = dis_event_position(ev);
	if (t->sh->nread < MAX_IDS)
		t->sh->read[t->sh->nread++] = dis_event_id(ev);
	return 0;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static void test_tail_while_writers_commit_out_of_order(void **state)
{
	shared sh = {0};
	pthread_t th[WRITERS];
	writer_arg wa[WRITERS];
	dis_schema *schema = dt_schema(SCHEMA);
	char *conninfo = dt_fresh_db();
	dis_store *reader = dt_store(conninfo, schema);
	dis_query *q;
	dis_filter *f;
	tail_state ts = {&sh, DIS_POSITION_START, false};
	dis_position pos = DIS_POSITION_START;
	int reads = 0;

	(void)state;
	sh.conninfo = conninfo;
	sh.schema = schema;
	sh.committed = calloc(MAX_IDS, sizeof(int64_t));
	sh.read = calloc(MAX_IDS, sizeof(int64_t));
	pthread_mutex_init(&sh.lock, NULL);
	atomic_init(&sh.writers_left, WRITERS);
	sh.until = now_s() + 10.5;
	assert_int_equal(dis_query_new(schema, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_filter_type(f, "Tick"), 0);

	for (int i = 0; i < WRITERS; i++) {
		wa[i] = (writer_arg){&sh, i + 1};
		pthread_create(&th[i], NULL, writer_main, &wa[i]);
	}
	/*
	 * Tail while they write; once they are done, drain until the read
	 * position passes the head. (The barrier is cluster wide, so a
	 * transaction open elsewhere may hold a read back for a while.)
	 */
	bool draining = false;
	dis_position head = DIS_POSITION_START;
	double deadline = 0;
	for (;;) {
		size_t before = sh.nread;

		if (!draining && atomic_load(&sh.writers_left) == 0) {
			draining = true;
			assert_int_equal(dis_store_head(reader, &head), 0);
			deadline = now_s() + 60;
		}
		if (dis_store_read(reader, q, pos, 100, on_read, &ts, &pos))
			fail_msg("read: %s", dis_store_errmsg(reader));
		reads++;
		if (draining && dis_position_cmp(pos, head) >= 0)
			break;
		if (draining && now_s() > deadline)
			fail_msg("the read position never passed the head");
		if (sh.nread == before)
			usleep(1000);
	}
	for (int i = 0; i < WRITERS; i++)
		pthread_join(th[i], NULL);
	if (sh.error[0])
		fail_msg("%s", sh.error);

	print_message("writers committed %zu events; reader read %zu in %d "
		      "reads\n",
		      sh.ncommitted, sh.nread, reads);
	assert_false(ts.order_broken);
	assert_true(sh.ncommitted > 1000);
	assert_true(sh.ncommitted < MAX_IDS);
	assert_int_equal(sh.nread, sh.ncommitted);
	qsort(sh.committed, sh.ncommitted, sizeof(int64_t), cmp_i64);
	qsort(sh.read, sh.nread, sizeof(int64_t), cmp_i64);
	for (size_t i = 0; i < sh.nread; i++)
		if (sh.read[i] != sh.committed[i])
			fail_msg("event %lld read, expected %lld",
				 (long long)sh.read[i],
				 (long long)sh.committed[i]);

	dis_query_free(q);
	dis_store_free(reader);
	dis_schema_free(schema);
	free(sh.committed);
	free(sh.read);
	free(conninfo);
}

/* ---- decisions: balance of an account, withdraw if enough ---- */

typedef struct account_state {
	int64_t balance;
	bool went_negative;
} account_state;

static int apply(void *arg, const dis_event *ev)
{
	account_state *a = arg;
	int64_t amount = 0;

	dis_event_get_long(ev, "amount", &amount);
	if (strcmp(dis_event_type(ev), "Deposited") == 0)
		a->balance += amount;
	else
		a->balance -= amount;
	if (a->balance < 0)
		a->went_negative = true;
	return 0;
}

static dis_query *account_query(const dis_schema *schema, const char *acct)
{
	dis_query *q;
	dis_filter *f;

	dis_query_new(schema, &q);
	dis_query_add_filter(q, &f);
	dis_filter_type(f, "Deposited");
	dis_filter_type(f, "Withdrawn");
	dis_filter_where_string(f, "account_id", acct);
	return q;
}

/* One decision: load, check, append with validation. */
static int withdraw(dis_store *st, const dis_schema *schema, const char *acct,
		    int64_t amount, bool *refused)
{
	dis_query *q = account_query(schema, acct);
	account_state a = {0, false};
	dis_version *v = NULL;
	dis_event *ev;
	int rc = dis_store_load(st, q, apply, &a, &v);

	*refused = false;
	if (!rc && a.balance < amount)
		*refused = true;
	if (!rc && !*refused) {
		dis_event_new(schema, "Withdrawn", &ev);
		dis_event_set_string(ev, "account_id", acct);
		dis_event_set_long(ev, "amount", amount);
		rc = dis_store_append(st, &ev, 1, q, v, NULL);
		dis_event_free(ev);
	}
	dis_version_free(v);
	dis_query_free(q);
	return rc;
}

typedef struct decider {
	const char *conninfo;
	const dis_schema *schema;
	char account[64];
	bool own_account; /* disjoint: deposit first, then withdraw */
	double until;
	int decisions;
	int conflicts;
	int refused;
	char error[256];
} decider;

static void *decider_main(void *arg)
{
	decider *d = arg;
	dis_store *st;

	if (dis_store_open(d->conninfo, d->schema, &st, d->error,
			   sizeof(d->error)))
		return NULL;
	while (now_s() < d->until) {
		bool refused;
		int rc;

		if (d->own_account) {
			dis_event *ev;
			dis_query *q = account_query(d->schema, d->account);
			dis_version *v = NULL;

			/* A checked deposit on our own boundary. */
			rc = dis_store_load(st, q, NULL, NULL, &v);
			dis_event_new(d->schema, "Deposited", &ev);
			dis_event_set_string(ev, "account_id", d->account);
			dis_event_set_long(ev, "amount", 10);
			if (!rc)
				rc = dis_store_append(st, &ev, 1, q, v, NULL);
			dis_event_free(ev);
			dis_version_free(v);
			dis_query_free(q);
			if (rc == DIS_ECONFLICT)
				d->conflicts++;
			else if (rc)
				break;
			d->decisions++;
		}
		rc = withdraw(st, d->schema, d->account, 10, &refused);
		if (rc == DIS_ECONFLICT) {
			d->conflicts++;
			continue;
		}
		if (rc) {
			snprintf(d->error, sizeof(d->error), "%s",
				 dis_store_errmsg(st));
			break;
		}
		d->decisions++;
		d->refused += refused;
		if (refused && !d->own_account)
			break;
	}
	dis_store_free(st);
	return NULL;
}

static void run_deciders(decider *d, int n)
{
	pthread_t th[16];

	for (int i = 0; i < n; i++)
		pthread_create(&th[i], NULL, decider_main, &d[i]);
	for (int i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		if (d[i].error[0])
			fail_msg("decider %d: %s", i, d[i].error);
	}
}

static void test_disjoint_boundaries_never_conflict(void **state)
{
	dis_schema *schema = dt_schema(SCHEMA);
	char *conninfo = dt_fresh_db();
	dis_store *st = dt_store(conninfo, schema);
	decider d[6];
	int decisions = 0, conflicts = 0;

	(void)state;
	for (int i = 0; i < 6; i++) {
		d[i] = (decider){.conninfo = conninfo, .schema = schema,
				 .own_account = true, .until = now_s() + 4};
		snprintf(d[i].account, sizeof(d[i].account), "acct-%d", i);
	}
	run_deciders(d, 6);
	for (int i = 0; i < 6; i++) {
		decisions += d[i].decisions;
		conflicts += d[i].conflicts;
	}
	print_message("6 connections, disjoint boundaries: %d decisions, %d "
		      "conflicts\n",
		      decisions, conflicts);
	assert_true(decisions > 100);
	assert_int_equal(conflicts, 0);
	dis_store_free(st);
	dis_schema_free(schema);
	free(conninfo);
}

static void test_hot_account_never_overdrawn(void **state)
{
	dis_schema *schema = dt_schema(SCHEMA);
	char *conninfo = dt_fresh_db();
	dis_store *st = dt_store(conninfo, schema);
	decider d[8];
	dis_event *ev;
	dis_query *q = account_query(schema, "hot");
	account_state a = {0, false};
	int conflicts = 0;
	PGconn *pg;
	char *n;

	(void)state;
	dis_event_new(schema, "Deposited", &ev);
	dis_event_set_string(ev, "account_id", "hot");
	dis_event_set_long(ev, "amount", 500);
	assert_int_equal(dis_store_append(st, &ev, 1, NULL, NULL, NULL), 0);
	dis_event_free(ev);

	for (int i = 0; i < 8; i++)
		d[i] = (decider){.conninfo = conninfo, .schema = schema,
				 .account = "hot", .until = now_s() + 30};
	run_deciders(d, 8);
	for (int i = 0; i < 8; i++)
		conflicts += d[i].conflicts;

	/* Replay in position order: exactly 50 withdrawals of 10 fit. */
	assert_int_equal(dis_store_load(st, q, apply, &a, NULL), 0);
	assert_false(a.went_negative);
	assert_int_equal(a.balance, 0);
	pg = dt_connect(conninfo);
	n = dt_scalar(pg, "SELECT count(*) FROM event WHERE event_type = "
			  "'Withdrawn'");
	assert_string_equal(n, "50");
	free(n);
	PQfinish(pg);
	print_message("8 connections on one account: 50 withdrawals, %d "
		      "conflicts retried\n",
		      conflicts);
	assert_true(conflicts > 0);
	dis_query_free(q);
	dis_store_free(st);
	dis_schema_free(schema);
	free(conninfo);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tail_while_writers_commit_out_of_order),
		cmocka_unit_test(test_disjoint_boundaries_never_conflict),
		cmocka_unit_test(test_hot_account_never_overdrawn),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
