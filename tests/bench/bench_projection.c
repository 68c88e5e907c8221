/*
 * Projection benchmarks (not pass/fail), in a fresh database: N events
 * (default 200,000) over 1,000 keys, then
 *   - catch-up of the declared projection (one INSERT ... ON CONFLICT per
 *     event, in the listener's batches) next to a no-op handler's;
 *   - dis_projection_rebuild() of the same projection.
 *
 *   bench-projection [N]
 *
 * Prints `bench=NAME value=V unit=U baseline=B ratio=R` lines.
 */
#include "testutil.h"

#include <disintegrate/projection.h>
#include <event2/event.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const SCHEMA =
	"[{\"type\":\"record\",\"name\":\"Hit\",\"fields\":["
	"  {\"name\":\"key\",\"type\":\"string\",\"disintegrate.id\":true},"
	"  {\"name\":\"weight\",\"type\":\"int\"}]}]";

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void line(const char *name, double value, const char *unit,
		 double baseline)
{
	printf("bench=%s value=%.3f unit=%s baseline=%.3f ratio=%.3f\n", name,
	       value, unit, baseline, baseline > 0 ? value / baseline : 0);
	fflush(stdout);
}

static int noop(void *arg, dis_batch *b, const dis_event *ev)
{
	(void)b;
	(void)ev;
	(*(long *)arg)++;
	return 0;
}

typedef struct counted {
	dis_projection *p;
	long n;
} counted;

static int projecting(void *arg, dis_batch *b, const dis_event *ev)
{
	counted *c = arg;

	c->n++;
	return dis_projection_handler(c->p, b, ev);
}

/* Seconds a listener takes to handle `n` events from the start. */
static double catch_up(const char *conninfo, const dis_schema *s,
		       const char *id, const dis_query *q, dis_handler_fn fn,
		       void *arg, long *count, long n)
{
	struct event_base *base = event_base_new();
	dis_runtime *rt;
	dis_listener_config cfg;
	char err[256];
	double t0;

	dis_listener_config_init(&cfg);
	cfg.fetch_size = 1000;
	cfg.poll_interval_ms = 20;
	assert_int_equal(
		dis_runtime_new(base, conninfo, s, &rt, err, sizeof(err)), 0);
	assert_int_equal(dis_runtime_add_listener(rt, id, q, fn, arg, &cfg), 0);
	t0 = now_s();
	assert_int_equal(dis_runtime_start(rt), 0);
	while (*count < n) {
		struct timeval tv = {0, 10000};

		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	t0 = now_s() - t0;
	dis_runtime_free(rt);
	event_base_free(base);
	return t0;
}

static void bench(void **state)
{
	char *conninfo = dt_fresh_db();
	dis_schema *s = dt_schema(SCHEMA);
	dis_store *st = dt_store(conninfo, s);
	dis_projection *p;
	dis_query *q;
	dis_filter *f;
	dis_rebuild_progress done;
	counted c = {0};
	long n = *(long *)*state, seen = 0;
	double t, noop_rate, proj_rate;
	char err[512];

	printf("appending %ld events...\n", n);
	fflush(stdout);
	for (long i = 0; i < n;) {
		dis_event *evs[1000];
		int k = 0;

		for (; k < 1000 && i < n; k++, i++) {
			char key[16];

			snprintf(key, sizeof(key), "k%ld", (i * 7919) % 1000);
			assert_int_equal(dis_event_new(s, "Hit", &evs[k]), 0);
			assert_int_equal(
				dis_event_set_string(evs[k], "key", key), 0);
			assert_int_equal(dis_event_set_int(evs[k], "weight",
							   (int)(i % 10)),
					 0);
		}
		assert_int_equal(dis_store_append(st, evs, (size_t)k, NULL,
						  NULL, NULL),
				 0);
		for (int j = 0; j < k; j++)
			dis_event_free(evs[j]);
	}
	assert_int_equal(dis_projection_new(s, "hits", &p, err, sizeof(err)),
			 0);
	assert_int_equal(dis_projection_set_ddl(
				 p, "CREATE TABLE {table} (key TEXT PRIMARY"
				    " KEY, n BIGINT NOT NULL, w BIGINT NOT"
				    " NULL)"),
			 0);
	assert_int_equal(
		dis_projection_on(p, "Hit",
				  "INSERT INTO {table} AS t VALUES ($key, 1,"
				  " $weight) ON CONFLICT (key) DO UPDATE SET"
				  " n = t.n + 1, w = t.w + EXCLUDED.w"),
		0);
	assert_int_equal(dis_projection_install(p, st), 0);

	assert_int_equal(dis_query_new(s, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	t = catch_up(conninfo, s, "noop", q, noop, &seen, &seen, n);
	noop_rate = (double)n / t;
	printf("no-op handler: %ld events in %.2f s\n", n, t);
	line("projection_noop_catchup", noop_rate, "events/s", 0);

	c.p = p;
	t = catch_up(conninfo, s, "hits", dis_projection_query(p), projecting,
		     &c, &c.n, n);
	proj_rate = (double)n / t;
	printf("projection: %ld events in %.2f s\n", n, t);
	line("projection_catchup", proj_rate, "events/s", noop_rate);

	t = now_s();
	assert_int_equal(dis_projection_rebuild(conninfo, s, "hits", NULL,
						&done, err, sizeof(err)),
			 0);
	t = now_s() - t;
	printf("rebuild: %" PRIu64 " events in %.2f s\n", done.events, t);
	line("projection_rebuild", (double)done.events / t, "events/s",
	     proj_rate);

	dis_query_free(q);
	dis_projection_free(p);
	dis_store_free(st);
	dis_schema_free(s);
	free(conninfo);
}

int main(int argc, char **argv)
{
	static long n = 200000;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_prestate(bench, &n),
	};

	if (argc > 1)
		n = atol(argv[1]);
	return cmocka_run_group_tests_name("bench projection", tests, NULL,
					   NULL);
}
