/*
 * In-memory matching agrees with the SQL the store runs, exactly: for many
 * generated queries over a fixed log, dis_store_load returns precisely the
 * events that dis_query_matches selects.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *SCHEMA =
	"[{\"type\":\"record\",\"name\":\"A\",\"fields\":["
	" {\"name\":\"k\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"n\",\"type\":\"long\",\"disintegrate.id\":true}]},"
	" {\"type\":\"record\",\"name\":\"B\",\"fields\":["
	" {\"name\":\"k\",\"type\":\"string\",\"disintegrate.id\":true}]},"
	" {\"type\":\"record\",\"name\":\"C\",\"fields\":["
	" {\"name\":\"n\",\"type\":\"long\",\"disintegrate.id\":true},"
	" {\"name\":\"u\",\"type\":[\"null\",{\"type\":\"string\","
	"  \"logicalType\":\"uuid\"}],\"default\":null,"
	"  \"disintegrate.id\":true}]},"
	" {\"type\":\"record\",\"name\":\"D\",\"fields\":["
	" {\"name\":\"x\",\"type\":\"long\"}]}]";

static const char *TYPES[] = {"A", "B", "C", "D"};
static const char *KEYS[] = {"k0", "k1", "k'2"};
static const char *UUIDS[] = {"11111111-2222-4333-8444-555555555555",
			      "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"};

#define NEVENTS 60

static unsigned rnd(unsigned *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	return (*seed >> 16) & 0x7fff;
}

typedef struct log {
	dis_event *ev[NEVENTS];
	int n;
} log_t;

static int keep(void *arg, const dis_event *ev)
{
	log_t *l = arg;

	assert_true(l->n < NEVENTS);
	assert_int_equal(dis_event_copy(ev, &l->ev[l->n]), 0);
	l->n++;
	return 0;
}

typedef struct idset {
	int64_t ids[NEVENTS];
	int n;
} idset;

static int add_id(void *arg, const dis_event *ev)
{
	idset *s = arg;

	s->ids[s->n++] = dis_event_id(ev);
	return 0;
}

static void build_log(dis_store *st, const dis_schema *schema, unsigned seed)
{
	for (int i = 0; i < NEVENTS; i++) {
		const char *type = TYPES[rnd(&seed) % 4];
		dis_event *ev;

		assert_int_equal(dis_event_new(schema, type, &ev), 0);
		if (strcmp(type, "A") == 0 || strcmp(type, "B") == 0)
			assert_int_equal(dis_event_set_string(ev, "k",
							      KEYS[rnd(&seed) %
								   3]),
					 0);
		if (strcmp(type, "A") == 0 || strcmp(type, "C") == 0)
			assert_int_equal(dis_event_set_long(ev, "n",
							    rnd(&seed) % 3),
					 0);
		if (strcmp(type, "C") == 0 && rnd(&seed) % 3)
			assert_int_equal(dis_event_set_string(
						 ev, "u", UUIDS[rnd(&seed) % 2]),
					 0);
		if (strcmp(type, "D") == 0)
			assert_int_equal(dis_event_set_long(ev, "x", i), 0);
		if (dis_store_append(st, &ev, 1, NULL, NULL, NULL))
			fail_msg("append: %s", dis_store_errmsg(st));
		dis_event_free(ev);
	}
}

/* A random query; returns NULL when the builder rejected it. */
static dis_query *random_query(const dis_schema *schema, unsigned *seed,
			       const log_t *log)
{
	dis_query *q;
	int nfilters = 1 + rnd(seed) % 2;

	assert_int_equal(dis_query_new(schema, &q), 0);
	for (int i = 0; i < nfilters; i++) {
		dis_filter *f;

		dis_query_add_filter(q, &f);
		for (int t = 0; t < 4; t++)
			if (rnd(seed) % 3 == 0)
				dis_filter_type(f, TYPES[t]);
		if (rnd(seed) % 5 == 0)
			dis_filter_exclude(f, TYPES[rnd(seed) % 4]);
		if (rnd(seed) % 2)
			dis_filter_where_string(f, "k", KEYS[rnd(seed) % 3]);
		if (rnd(seed) % 2)
			dis_filter_where_long(f, "n", rnd(seed) % 3);
		if (rnd(seed) % 4 == 0)
			dis_filter_where_uuid(f, "u", UUIDS[rnd(seed) % 2]);
		if (rnd(seed) % 4 == 0)
			dis_filter_after(f, dis_event_position(
						    log->ev[rnd(seed) % log->n]));
	}
	if (dis_query_check(q)) {
		dis_query_free(q);
		return NULL;
	}
	return q;
}

static void test_memory_agrees_with_sql(void **state)
{
	char *conninfo = dt_fresh_db();
	dis_schema *schema = dt_schema(SCHEMA);
	dis_store *st = dt_store(conninfo, schema);
	dis_query *all;
	dis_filter *f;
	log_t log = {0};
	unsigned seed = 20261127;
	int checked = 0, nonempty = 0;

	(void)state;
	build_log(st, schema, seed);
	assert_int_equal(dis_query_new(schema, &all), 0);
	assert_int_equal(dis_query_add_filter(all, &f), 0);
	assert_int_equal(dis_store_load(st, all, keep, &log, NULL), 0);
	assert_int_equal(log.n, NEVENTS);

	for (int round = 0; round < 400; round++) {
		dis_query *q = random_query(schema, &seed, &log);
		idset got = {0}, want = {0};

		if (!q)
			continue;
		if (dis_store_load(st, q, add_id, &got, NULL))
			fail_msg("load: %s", dis_store_errmsg(st));
		for (int i = 0; i < log.n; i++)
			if (dis_query_matches(q, log.ev[i]))
				want.ids[want.n++] = dis_event_id(log.ev[i]);
		if (got.n != want.n ||
		    memcmp(got.ids, want.ids, sizeof(int64_t) * (size_t)got.n)) {
			char *text = NULL;

			dis_query_describe(q, &text);
			fail_msg("query %s: SQL selected %d events, memory %d",
				 text, got.n, want.n);
		}
		checked++;
		nonempty += got.n > 0 && got.n < NEVENTS;
		dis_query_free(q);
	}
	/* The generator must exercise real selections, not just all/none. */
	assert_true(checked > 100);
	assert_true(nonempty > 50);

	for (int i = 0; i < log.n; i++)
		dis_event_free(log.ev[i]);
	dis_query_free(all);
	dis_store_free(st);
	dis_schema_free(schema);
	free(conninfo);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_memory_agrees_with_sql),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
