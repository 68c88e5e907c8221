/*
 * Notifications of appends: one per append when alone; skipped while
 * another session holds the notification token of the same payload (that
 * session's notification commits later); and, under concurrent appends,
 * every committed event is seen by a read that a notification triggered.
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
#include "core-internal.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>

static dis_schema *schema;
static char *conninfo;
static dis_store *store;
static PGconn *listen_conn;

static int setup(void **state)
{
	(void)state;
	schema = dt_schema(counter_avsc);
	conninfo = dt_fresh_db();
	store = dt_store(conninfo, schema);
	listen_conn = dt_connect(conninfo);
	dt_exec(listen_conn, "LISTEN " DIS__NOTIFY_CHANNEL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	PQfinish(listen_conn);
	dis_store_free(store);
	dis_schema_free(schema);
	free(conninfo);
	return 0;
}

static void append_one(dis_store *st, const char *id)
{
	dis_event *ev;

	assert_int_equal(dis_event_new(schema, "Added", &ev), 0);
	dis_event_set_string(ev, "counter_id", id);
	dis_event_set_long(ev, "n", 1);
	if (dis_store_append(st, &ev, 1, NULL, NULL, NULL))
		fail_msg("append: %s", dis_store_errmsg(st));
	dis_event_free(ev);
}

/* Notifications that arrive within `ms`; the last payload into `last`. */
static int drain(PGconn *c, int ms, char *last, size_t len)
{
	struct pollfd p = {PQsocket(c), POLLIN, 0};
	PGnotify *n;
	int count = 0;

	while (poll(&p, 1, ms) > 0) {
		PQconsumeInput(c);
		while ((n = PQnotifies(c)) != NULL) {
			if (last)
				snprintf(last, len, "%s", n->extra);
			count++;
			PQfreemem(n);
		}
		ms = 50;
	}
	return count;
}

static void test_one_per_append(void **state)
{
	char payload[64] = "";

	(void)state;
	append_one(store, "a");
	assert_int_equal(drain(listen_conn, 500, payload, sizeof(payload)), 1);
	assert_string_equal(payload, "Added");
	append_one(store, "b");
	append_one(store, "c");
	assert_int_equal(drain(listen_conn, 500, NULL, 0), 2);
}

/* While the token is held elsewhere the append does not notify; the
 * holder's notification would commit after it. */
static void test_token_held(void **state)
{
	PGconn *holder = dt_connect(conninfo);
	char token[24], sql[256];

	(void)state;
	dis__notify_token("Added", token);
	snprintf(sql, sizeof(sql), "SELECT pg_advisory_lock(%s)", token);
	dt_exec(holder, sql);
	append_one(store, "a");
	assert_int_equal(drain(listen_conn, 300, NULL, 0), 0);
	snprintf(sql, sizeof(sql), "SELECT pg_advisory_unlock(%s)", token);
	dt_exec(holder, sql);
	append_one(store, "b");
	assert_int_equal(drain(listen_conn, 500, NULL, 0), 1);
	/* The store's own session does not keep the token. */
	{
		char *v;

		snprintf(sql, sizeof(sql),
			 "SELECT count(*) FROM pg_locks WHERE locktype = "
			 "'advisory' AND ((classid::bigint << 32) | "
			 "objid::bigint) = %s",
			 token);
		v = dt_scalar(holder, sql);
		assert_string_equal(v, "0");
		free(v);
	}
	PQfinish(holder);
}

#define WRITERS 8
#define PER_WRITER 150

static int writers_done;

static void *writer(void *arg)
{
	dis_store *st;
	char err[256], id[32];
	char *fail = NULL;

	(void)arg;
	if (dis_store_open(conninfo, schema, &st, err, sizeof(err))) {
		fail = strdup(err);
		goto out;
	}
	for (int i = 0; i < PER_WRITER && !fail; i++) {
		dis_event *ev;

		snprintf(id, sizeof(id), "w%d", i % 7);
		dis_event_new(schema, "Added", &ev);
		dis_event_set_string(ev, "counter_id", id);
		dis_event_set_long(ev, "n", 1);
		if (dis_store_append(st, &ev, 1, NULL, NULL, NULL))
			fail = strdup(dis_store_errmsg(st));
		dis_event_free(ev);
	}
	dis_store_free(st);
out:
	__atomic_add_fetch(&writers_done, 1, __ATOMIC_SEQ_CST);
	return fail;
}

static long long visible(PGconn *c)
{
	char *v = dt_scalar(c, "SELECT count(*) FROM event");
	long long n = atoll(v);

	free(v);
	return n;
}

/*
 * A listener's view: after each notification, count the visible events.
 * Once the writers are done and the notifications stop, the last read
 * triggered by a notification must have seen every event: no append's
 * wake-up was lost by coalescing.
 */
static void test_coverage(void **state)
{
	pthread_t th[WRITERS];
	long long total = (long long)WRITERS * PER_WRITER, seen = 0;
	int notes = 0;

	(void)state;
	writers_done = 0;
	for (int i = 0; i < WRITERS; i++)
		pthread_create(&th[i], NULL, writer, NULL);
	for (;;) {
		bool done = __atomic_load_n(&writers_done, __ATOMIC_SEQ_CST) ==
			    WRITERS;
		int n = drain(listen_conn, done ? 1000 : 100, NULL, 0);

		if (n > 0) {
			notes += n;
			seen = visible(listen_conn);
		} else if (done) {
			break;
		}
	}
	for (int i = 0; i < WRITERS; i++) {
		char *err = NULL;

		pthread_join(th[i], (void **)&err);
		if (err)
			fail_msg("writer: %s", err);
	}
	assert_int_equal(visible(listen_conn), total);
	if (seen != total)
		fail_msg("the last notification-triggered read saw %lld of "
			 "%lld events",
			 seen, total);
	print_message("%d notifications for %lld appends\n", notes, total);
	assert_true(notes >= 1 && notes <= total);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_one_per_append, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_token_held, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_coverage, setup, teardown),
	};

	(void)counter_read;
	(void)counter_at;
	(void)counter_add;
	dt_require_pg();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
