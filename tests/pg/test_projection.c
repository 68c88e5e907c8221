/*
 * Projections on PostgreSQL: install, parameters of every Avro kind, the
 * read model and checkpoint committing together, and rebuilds: while a
 * service keeps the projection current and writers append, with shards,
 * on an empty log, canceled, failing, and refused (unknown, concurrent).
 */
#include "testutil.h"
#include "projections-internal.h"

#include <event2/event.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const SCHEMA =
	"[{\"type\":\"record\",\"name\":\"Hit\",\"fields\":["
	"  {\"name\":\"key\",\"type\":\"string\",\"disintegrate.id\":true},"
	"  {\"name\":\"weight\",\"type\":\"int\"}]},"
	" {\"type\":\"record\",\"name\":\"Kinds\",\"fields\":["
	"  {\"name\":\"key\",\"type\":\"string\",\"disintegrate.id\":true},"
	"  {\"name\":\"l\",\"type\":\"long\"},"
	"  {\"name\":\"d\",\"type\":\"double\"},"
	"  {\"name\":\"f\",\"type\":\"float\"},"
	"  {\"name\":\"b\",\"type\":\"boolean\"},"
	"  {\"name\":\"opt\",\"type\":[\"null\",\"string\"],\"default\":null},"
	"  {\"name\":\"raw\",\"type\":\"bytes\"},"
	"  {\"name\":\"color\",\"type\":{\"type\":\"enum\",\"name\":\"Color\","
	"   \"symbols\":[\"RED\",\"GREEN\"]}},"
	"  {\"name\":\"tags\",\"type\":{\"type\":\"array\",\"items\":\"string\"}},"
	"  {\"name\":\"pos\",\"type\":{\"type\":\"record\",\"name\":\"Pos\","
	"   \"fields\":[{\"name\":\"x\",\"type\":\"int\"}]}}]},"
	" {\"type\":\"record\",\"name\":\"Boom\",\"fields\":["
	"  {\"name\":\"key\",\"type\":\"string\",\"disintegrate.id\":true},"
	"  {\"name\":\"div\",\"type\":\"int\"}]}]";

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long long count(PGconn *c, const char *sql)
{
	char *v = dt_scalar(c, sql);
	long long n = v ? atoll(v) : -1;

	free(v);
	return n;
}

static char *text(PGconn *c, const char *sql)
{
	char *v = dt_scalar(c, sql);

	return v ? v : strdup("(null)");
}

static int warnings;

static void count_warnings(void *arg, dis_log_level level, const char *msg)
{
	(void)arg;
	(void)msg;
	if (level == DIS_LOG_WARN)
		warnings++;
}

/* The "hits" projection: hits per key, summed weights. */
static dis_projection *hits_projection(const dis_schema *s, const char *sql)
{
	dis_projection *p;
	char err[256];

	assert_int_equal(dis_projection_new(s, "hits", &p, err, sizeof(err)),
			 0);
	assert_int_equal(dis_projection_set_ddl(
				 p, "CREATE TABLE {table} (key TEXT PRIMARY"
				    " KEY, n BIGINT NOT NULL, w BIGINT NOT"
				    " NULL, last BIGINT NOT NULL);"
				    " CREATE INDEX ON {table} (n)"),
			 0);
	if (dis_projection_on(p, "Hit",
			      sql ? sql
				  : "INSERT INTO {table} AS t VALUES ($key, 1,"
				    " $weight, $event_id) ON CONFLICT (key) DO"
				    " UPDATE SET n = t.n + 1, w = t.w +"
				    " EXCLUDED.w, last = EXCLUDED.last"))
		fail_msg("%s", dis_projection_errmsg(p));
	return p;
}

static void append_hits(dis_store *st, const dis_schema *s, int n, int keys,
			uint64_t *seed)
{
	dis_event *evs[50];

	for (int i = 0; i < n;) {
		int k = 0;

		for (; k < 50 && i < n; k++, i++) {
			char key[16];

			*seed = *seed * 6364136223846793005ULL + 1;
			snprintf(key, sizeof(key), "k%d",
				 (int)((*seed >> 33) % (uint64_t)keys));
			assert_int_equal(dis_event_new(s, "Hit", &evs[k]), 0);
			assert_int_equal(
				dis_event_set_string(evs[k], "key", key), 0);
			assert_int_equal(dis_event_set_int(evs[k], "weight",
							   (int)(*seed >> 60)),
					 0);
		}
		if (dis_store_append(st, evs, (size_t)k, NULL, NULL, NULL))
			fail_msg("append: %s", dis_store_errmsg(st));
		for (int j = 0; j < k; j++)
			dis_event_free(evs[j]);
	}
}

/* Rows of `table` that differ from a replay done in SQL. */
static long long hits_differences(PGconn *c, const char *table)
{
	char sql[512];

	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM (SELECT key, count(*) AS n FROM event"
		 " WHERE event_type = 'Hit' GROUP BY key) e FULL JOIN \"%s\" t"
		 " USING (key) WHERE e.n IS DISTINCT FROM t.n",
		 table);
	return count(c, sql);
}

/* ---- a service running the projection on a thread of its own ---- */

typedef struct service {
	const char *conninfo;
	const dis_schema *schema;
	dis_projection *p;
	const char *shard_id; /* NULL: not sharded */
	atomic_int stop;
	pthread_t thread;
	int failed;
} service;

static void service_stopped(void *arg, dis_runtime *rt, int status)
{
	(void)rt;
	(void)status;
	*(bool *)arg = true;
}

static void *service_main(void *arg)
{
	service *sv = arg;
	struct event_base *base = event_base_new();
	dis_runtime *rt;
	dis_listener_config cfg;
	char err[256];
	bool done = false;

	dis_listener_config_init(&cfg);
	cfg.poll_interval_ms = 50;
	cfg.fetch_size = 37;
	if (dis_runtime_new(base, sv->conninfo, sv->schema, &rt, err,
			    sizeof(err))) {
		sv->failed = 1;
		return NULL;
	}
	if (sv->shard_id)
		sv->failed = dis_runtime_add_sharded(
			rt, dis_projection_name(sv->p),
			dis_projection_query(sv->p), sv->shard_id, 3, NULL, 0,
			dis_projection_handler, sv->p, &cfg);
	else
		sv->failed = dis_projection_attach(sv->p, rt, &cfg);
	if (!sv->failed)
		sv->failed = dis_runtime_start(rt);
	while (!sv->failed && !atomic_load(&sv->stop)) {
		struct timeval tv = {0, 10000};

		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	if (!sv->failed && !dis_runtime_stop(rt, service_stopped, &done))
		while (!done) {
			struct timeval tv = {0, 10000};

			event_base_loopexit(base, &tv);
			event_base_dispatch(base);
		}
	dis_runtime_free(rt);
	event_base_free(base);
	return NULL;
}

static void service_start(service *sv)
{
	assert_int_equal(pthread_create(&sv->thread, NULL, service_main, sv),
			 0);
}

static void service_stop(service *sv)
{
	atomic_store(&sv->stop, 1);
	pthread_join(sv->thread, NULL);
	assert_int_equal(sv->failed, 0);
}

/* Waits until the projection's listeners are all past the head. */
static void wait_caught_up(PGconn *c, const char *like, int listeners)
{
	char sql[512];
	double until = now_s() + 30;

	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM event_listener WHERE id LIKE '%s' AND"
		 " (checkpoint_tx, checkpoint_id) >= (SELECT tx, event_id"
		 " FROM event ORDER BY tx DESC, event_id DESC LIMIT 1)",
		 like);
	while (count(c, sql) != listeners && now_s() < until)
		usleep(20000);
	assert_int_equal(count(c, sql), listeners);
}

/* ---- tests ---- */

static void test_install_and_kinds(void **state)
{
	char *conninfo = dt_fresh_db();
	dis_schema *s = dt_schema(SCHEMA);
	dis_store *st = dt_store(conninfo, s);
	PGconn *c = dt_connect(conninfo);
	dis_projection *p, *q;
	dis_event *ev;
	char err[256], *v;
	service sv = {0};

	(void)state;
	assert_int_equal(dis_projection_new(s, "kinds", &p, err, sizeof(err)),
			 0);
	assert_int_equal(dis_projection_set_ddl(
				 p, "CREATE TABLE {table} (key text, l bigint,"
				    " d float8, f float4, b boolean, opt text,"
				    " raw bytea, color text, tags jsonb,"
				    " pos jsonb, ev bigint, ty text)"),
			 0);
	assert_int_equal(dis_projection_on(
				 p, "Kinds",
				 "INSERT INTO {table} VALUES ($key, $l, $d, $f,"
				 " $b, $opt, $raw, $color, $tags, $pos,"
				 " $event_id, $event_type)"),
			 0);
	assert_int_equal(dis_projection_install(p, st), 0);
	assert_int_equal(count(c, "SELECT count(*) FROM kinds"), 0);
	assert_int_equal(count(c, "SELECT generation FROM dis_projection"
				  " WHERE name = 'kinds'"),
			 1);
	/* Installing again changes nothing. */
	assert_int_equal(dis_projection_install(p, st), 0);

	assert_int_equal(
		dis_event_from_json(
			s, "Kinds",
			"{\"key\": \"k'1\", \"l\": -9223372036854775807,"
			" \"d\": 0.1, \"f\": 1.5, \"b\": true, \"opt\": null,"
			" \"raw\": \"\\u0000\\u00ff\", \"color\": \"GREEN\","
			" \"tags\": [\"a\", \"b\"], \"pos\": {\"x\": 3}}",
			&ev, err, sizeof(err)),
		0);
	assert_int_equal(dis_store_append(st, &ev, 1, NULL, NULL, NULL), 0);
	dis_event_free(ev);
	assert_int_equal(
		dis_event_from_json(
			s, "Kinds",
			"{\"key\": \"k2\", \"l\": 5, \"d\": -2e300, \"f\": 0,"
			" \"b\": false, \"opt\": \"here\", \"raw\": \"\","
			" \"color\": \"RED\", \"tags\": [], \"pos\": {\"x\": 0}}",
			&ev, err, sizeof(err)),
		0);
	assert_int_equal(dis_store_append(st, &ev, 1, NULL, NULL, NULL), 0);
	dis_event_free(ev);

	sv.conninfo = conninfo;
	sv.schema = s;
	sv.p = p;
	service_start(&sv);
	wait_caught_up(c, "kinds", 1);
	service_stop(&sv);

	v = text(c, "SELECT concat_ws('|', key, l, d, f, b, coalesce(opt,"
		    " 'NULL'), encode(raw, 'hex'), color, tags, pos, ev, ty)"
		    " FROM kinds ORDER BY ev LIMIT 1");
	assert_string_equal(v, "k'1|-9223372036854775807|0.1|1.5|t|NULL|00ff|"
			       "GREEN|[\"a\", \"b\"]|{\"x\": 3}|1|Kinds");
	free(v);
	v = text(c, "SELECT concat_ws('|', key, l, d, b, opt, encode(raw,"
		    " 'hex'), color, tags) FROM kinds ORDER BY ev OFFSET 1");
	assert_string_equal(v, "k2|5|-2e+300|f|here||RED|[]");
	free(v);

	/* A changed definition is recorded, with a warning. */
	assert_int_equal(dis_projection_new(s, "kinds", &q, err, sizeof(err)),
			 0);
	dis_projection_set_log(q, count_warnings, NULL);
	assert_int_equal(dis_projection_set_ddl(q, "CREATE TABLE {table} ()"),
			 0);
	assert_int_equal(dis_projection_on(q, "Hit", "SELECT $key"), 0);
	assert_int_equal(dis_projection_install(q, st), 0);
	assert_int_equal(warnings, 1);
	v = text(c, "SELECT definition FROM dis_projection");
	assert_non_null(strstr(v, "SELECT $key"));
	free(v);
	dis_projection_free(q);

	dis_projection_free(p);
	dis_store_free(st);
	dis_schema_free(s);
	PQfinish(c);
	free(conninfo);
}

/* A string with a NUL byte fails the event instead of storing the text
 * cut at it (libpq sends parameters as C strings). */
static void test_nul_in_text_fails_the_event(void **state)
{
	char *conninfo = dt_fresh_db();
	dis_schema *s = dt_schema(SCHEMA);
	dis_store *st = dt_store(conninfo, s);
	PGconn *c = dt_connect(conninfo);
	dis_projection *p;
	dis_event *ev;
	char err[256];

	(void)state;
	assert_int_equal(dis_projection_new(s, "opts", &p, err, sizeof(err)),
			 0);
	assert_int_equal(dis_projection_set_ddl(
				 p,
				 "CREATE TABLE {table} (key text, opt text)"),
			 0);
	assert_int_equal(dis_projection_on(p, "Kinds",
					   "INSERT INTO {table} VALUES ($key,"
					   " $opt)"),
			 0);
	assert_int_equal(dis_projection_install(p, st), 0);
	assert_int_equal(
		dis_event_from_json(
			s, "Kinds",
			"{\"key\": \"k\", \"l\": 1, \"d\": 0, \"f\": 0,"
			" \"b\": true, \"opt\": \"ab\\u0000cd\", \"raw\": \"\","
			" \"color\": \"RED\", \"tags\": [], \"pos\": {\"x\": 0}}",
			&ev, err, sizeof(err)),
		0);
	assert_int_equal(dis_projection_apply(p, c, NULL, ev), DIS_ESERDE);
	assert_non_null(strstr(dis_projection_errmsg(p), "NUL byte"));
	assert_non_null(strstr(dis_projection_errmsg(p), "field opt"));
	assert_int_equal(count(c, "SELECT count(*) FROM opts"), 0);
	dis_event_free(ev);

	dis_projection_free(p);
	dis_store_free(st);
	dis_schema_free(s);
	PQfinish(c);
	free(conninfo);
}

/* Writers appending on a thread while the rebuild runs. */
typedef struct writer {
	const char *conninfo;
	const dis_schema *schema;
	atomic_int stop;
	pthread_t thread;
	int appended;
} writer;

static void *writer_main(void *arg)
{
	writer *w = arg;
	dis_store *st;
	char err[256];
	uint64_t seed = 7;

	if (dis_store_open(w->conninfo, w->schema, &st, err, sizeof(err)))
		return NULL;
	while (!atomic_load(&w->stop)) {
		dis_event *ev;
		char key[16];

		seed = seed * 6364136223846793005ULL + 1;
		snprintf(key, sizeof(key), "k%d", (int)((seed >> 33) % 50));
		if (dis_event_new(w->schema, "Hit", &ev) ||
		    dis_event_set_string(ev, "key", key) ||
		    dis_event_set_int(ev, "weight", 1) ||
		    dis_store_append(st, &ev, 1, NULL, NULL, NULL))
			break;
		dis_event_free(ev);
		w->appended++;
		usleep(500);
	}
	dis_store_free(st);
	return NULL;
}

typedef struct readers {
	const char *conninfo;
	atomic_int stop;
	pthread_t thread;
	long reads;
	long bad; /* a read that failed or saw an empty table */
} readers;

/* Reads the live table all along: it is never missing nor half built. */
static void *reader_main(void *arg)
{
	readers *r = arg;
	PGconn *c = PQconnectdb(r->conninfo);

	while (!atomic_load(&r->stop)) {
		PGresult *res = PQexec(c, "SELECT sum(n) FROM hits");

		if (PQresultStatus(res) != PGRES_TUPLES_OK ||
		    PQgetisnull(res, 0, 0) ||
		    atoll(PQgetvalue(res, 0, 0)) < 2000)
			r->bad++;
		r->reads++;
		PQclear(res);
	}
	PQfinish(c);
	return NULL;
}

static int progress_phases;

static int on_progress(void *arg, const dis_rebuild_progress *p)
{
	(void)arg;
	if (getenv("DIS_TEST_VERBOSE"))
		fprintf(stderr, "%.3f %s %" PRIu64 " behind %" PRId64 "\n",
			p->seconds, p->phase, p->events, p->events_behind);
	if (!strcmp(p->phase, "swapping") || !strcmp(p->phase, "done"))
		progress_phases++;
	return 0;
}

static void test_rebuild_while_serving(void **state)
{
	char *conninfo = dt_fresh_db();
	dis_schema *s = dt_schema(SCHEMA);
	dis_store *st = dt_store(conninfo, s);
	PGconn *c = dt_connect(conninfo);
	dis_projection *p = hits_projection(s, NULL);
	service sv = {0};
	writer w = {0};
	readers r = {0};
	dis_rebuild_options o = {0};
	dis_rebuild_progress done;
	uint64_t seed = 1;
	char err[512];

	(void)state;
	assert_int_equal(dis_projection_install(p, st), 0);
	append_hits(st, s, 2000, 50, &seed);
	sv.conninfo = conninfo;
	sv.schema = s;
	sv.p = p;
	service_start(&sv);
	wait_caught_up(c, "hits", 1);
	assert_int_equal(hits_differences(c, "hits"), 0);

	/* Readers and writers all along the rebuild. */
	w.conninfo = conninfo;
	w.schema = s;
	r.conninfo = conninfo;
	pthread_create(&w.thread, NULL, writer_main, &w);
	pthread_create(&r.thread, NULL, reader_main, &r);
	append_hits(st, s, 3000, 50, &seed);
	o.progress = on_progress;
	o.swap_behind = 200;
	if (dis_projection_rebuild(conninfo, s, "hits", &o, &done, err,
				   sizeof(err)))
		fail_msg("rebuild: %s", err);
	print_message("rebuilt: %" PRIu64 " events in %.3f s, %d progress "
		      "phases\n",
		      done.events, done.seconds, progress_phases);
	assert_true(done.events >= 5000);
	assert_int_equal(progress_phases, 2);
	usleep(200000);
	atomic_store(&w.stop, 1);
	pthread_join(w.thread, NULL);
	wait_caught_up(c, "hits", 1);
	usleep(100000);
	atomic_store(&r.stop, 1);
	pthread_join(r.thread, NULL);
	service_stop(&sv);
	print_message("%d events appended during the rebuild; %ld reads, %ld "
		      "bad\n",
		      w.appended, r.reads, r.bad);
	assert_true(w.appended > 0);
	assert_int_equal(r.bad, 0);

	/* The table equals the replay, and the rebuild left nothing. */
	assert_int_equal(hits_differences(c, "hits"), 0);
	assert_int_equal(count(c, "SELECT sum(n) FROM hits"),
			 count(c, "SELECT count(*) FROM event"));
	assert_int_equal(count(c, "SELECT generation FROM dis_projection"
				  " WHERE name = 'hits'"),
			 2);
	assert_int_equal(count(c, "SELECT count(*) FROM pg_class WHERE relname"
				  " IN ('hits__rebuild', 'hits__old')"),
			 0);
	assert_int_equal(count(c, "SELECT count(*) FROM event_listener"
				  " WHERE id = 'hits:rebuild'"),
			 0);
	assert_int_equal(count(c, "SELECT resets FROM event_listener"
				  " WHERE id = 'hits'"),
			 1);

	dis_projection_free(p);
	dis_store_free(st);
	dis_schema_free(s);
	PQfinish(c);
	free(conninfo);
}

static void test_rebuild_sharded_and_empty(void **state)
{
	char *conninfo = dt_fresh_db();
	dis_schema *s = dt_schema(SCHEMA);
	dis_store *st = dt_store(conninfo, s);
	PGconn *c = dt_connect(conninfo);
	dis_projection *p = hits_projection(s, NULL);
	service sv = {0};
	uint64_t seed = 3;
	char err[512];

	(void)state;
	assert_int_equal(dis_projection_install(p, st), 0);
	/* An empty log rebuilds to an empty table. */
	assert_int_equal(dis_projection_rebuild(conninfo, s, "hits", NULL, NULL,
						err, sizeof(err)),
			 0);
	assert_int_equal(count(c, "SELECT count(*) FROM hits"), 0);
	/* Never attached: the rebuild created its listener row. */
	assert_int_equal(count(c, "SELECT count(*) FROM event_listener"
				  " WHERE id = 'hits'"),
			 1);
	dt_exec(c, "DELETE FROM event_listener WHERE id = 'hits'");

	/* Privileges on the table survive a rebuild. */
	{
		char role[40], sql[512];

		snprintf(role, sizeof(role), "dis_test_reader_%d",
			 (int)getpid());
		snprintf(sql, sizeof(sql),
			 "DROP ROLE IF EXISTS %s; CREATE ROLE %s NOLOGIN;"
			 " GRANT SELECT, UPDATE ON hits TO %s",
			 role, role, role);
		dt_exec(c, sql);
		assert_int_equal(dis_projection_rebuild(conninfo, s, "hits",
							NULL, NULL, err,
							sizeof(err)),
				 0);
		snprintf(sql, sizeof(sql),
			 "SELECT has_table_privilege('%s', 'hits', 'SELECT')"
			 "::int + has_table_privilege('%s', 'hits', 'UPDATE')"
			 "::int + has_table_privilege('%s', 'hits', 'DELETE')"
			 "::int",
			 role, role, role);
		assert_int_equal(count(c, sql), 2);
		snprintf(sql, sizeof(sql),
			 "REVOKE ALL ON hits FROM %s; DROP ROLE %s", role,
			 role);
		dt_exec(c, sql);
	}
	dt_exec(c, "DELETE FROM event_listener WHERE id = 'hits'");

	/* Three shards keep it; a rebuild moves all three checkpoints. */
	append_hits(st, s, 1500, 30, &seed);
	sv.conninfo = conninfo;
	sv.schema = s;
	sv.p = p;
	sv.shard_id = "key";
	service_start(&sv);
	wait_caught_up(c, "hits#%/3", 3);
	assert_int_equal(hits_differences(c, "hits"), 0);
	assert_int_equal(dis_projection_rebuild(conninfo, s, "hits", NULL, NULL,
						err, sizeof(err)),
			 0);
	append_hits(st, s, 500, 30, &seed);
	wait_caught_up(c, "hits#%/3", 3);
	service_stop(&sv);
	assert_int_equal(hits_differences(c, "hits"), 0);
	assert_int_equal(count(c, "SELECT count(*) FROM event_listener"
				  " WHERE id LIKE 'hits#%/3' AND resets = 1"),
			 3);
	assert_int_equal(count(c, "SELECT count(*) FROM event_listener"
				  " WHERE id = 'hits'"),
			 0);

	dis_projection_free(p);
	dis_store_free(st);
	dis_schema_free(s);
	PQfinish(c);
	free(conninfo);
}

static int cancel_at_once(void *arg, const dis_rebuild_progress *p)
{
	(void)arg;
	(void)p;
	return 1;
}

static void test_rebuild_refusals(void **state)
{
	char *conninfo = dt_fresh_db();
	dis_schema *s = dt_schema(SCHEMA);
	dis_store *st = dt_store(conninfo, s);
	PGconn *c = dt_connect(conninfo);
	dis_projection *p = hits_projection(s, NULL), *boom;
	dis_rebuild_options o = {0};
	dis_event *ev;
	uint64_t seed = 5;
	char err[512], sql[128];

	(void)state;
	/* Nothing installed yet. */
	assert_int_equal(dis_projection_rebuild(conninfo, s, "hits", NULL, NULL,
						err, sizeof(err)),
			 DIS_ENOTFOUND);
	assert_int_equal(dis_projection_install(p, st), 0);
	assert_int_equal(dis_projection_rebuild(conninfo, s, "nope", NULL, NULL,
						err, sizeof(err)),
			 DIS_ENOTFOUND);
	assert_non_null(strstr(err, "nope"));
	assert_int_equal(dis_projection_rebuild(conninfo, s, "bad name", NULL,
						NULL, err, sizeof(err)),
			 DIS_EINVAL);

	/* A rebuild already running. */
	snprintf(sql, sizeof(sql), "SELECT pg_advisory_lock(%" PRId64 ")",
		 dis__projection_lock_key("hits"));
	dt_exec(c, sql);
	assert_int_equal(dis_projection_rebuild(conninfo, s, "hits", NULL, NULL,
						err, sizeof(err)),
			 DIS_ESTATE);
	dt_exec(c, "SELECT pg_advisory_unlock_all()");

	/* Canceled: the live table stays, the new one goes. */
	append_hits(st, s, 100, 5, &seed);
	dt_exec(c, "INSERT INTO hits VALUES ('live', 1, 1, 1)");
	o.progress = cancel_at_once;
	assert_int_equal(dis_projection_rebuild(conninfo, s, "hits", &o, NULL,
						err, sizeof(err)),
			 DIS_ECANCELED);
	assert_int_equal(count(c, "SELECT count(*) FROM hits"), 1);
	assert_int_equal(count(c, "SELECT count(*) FROM pg_class"
				  " WHERE relname = 'hits__rebuild'"),
			 0);

	/* A statement that fails on some event fails the rebuild. */
	assert_int_equal(dis_projection_new(s, "boom", &boom, err, sizeof(err)),
			 0);
	assert_int_equal(dis_projection_set_ddl(boom,
						"CREATE TABLE {table} (v int)"),
			 0);
	assert_int_equal(dis_projection_on(boom, "Boom",
					   "INSERT INTO {table} VALUES"
					   " (100 / $div::int)"),
			 0);
	assert_int_equal(dis_projection_install(boom, st), 0);
	assert_int_equal(dis_event_from_json(s, "Boom",
					     "{\"key\": \"x\", \"div\": 0}",
					     &ev, err, sizeof(err)),
			 0);
	assert_int_equal(dis_store_append(st, &ev, 1, NULL, NULL, NULL), 0);
	dis_event_free(ev);
	/* Rebuilds read under the cluster-wide barrier: let it pass the event
	 * (a transaction of a test running beside this one may hold it). */
	for (int i = 0; i < 600; i++) {
		if (count(c, "SELECT count(*) FROM event WHERE event_type ="
			     " 'Boom' AND tx < pg_snapshot_xmin("
			     "pg_current_snapshot())") == 1)
			break;
		usleep(100000);
	}
	assert_int_equal(dis_projection_rebuild(conninfo, s, "boom", NULL, NULL,
						err, sizeof(err)),
			 DIS_EPG);
	print_message("failing rebuild: %s\n", err);
	assert_non_null(strstr(err, "division by zero"));
	assert_int_equal(count(c, "SELECT count(*) FROM pg_class WHERE relname"
				  " IN ('boom', 'boom__rebuild')"),
			 1);
	assert_int_equal(count(c, "SELECT count(*) FROM event_listener"
				  " WHERE id = 'boom:rebuild'"),
			 0);

	dis_projection_free(boom);
	dis_projection_free(p);
	dis_store_free(st);
	dis_schema_free(s);
	PQfinish(c);
	free(conninfo);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_install_and_kinds),
		cmocka_unit_test(test_nul_in_text_fails_the_event),
		cmocka_unit_test(test_rebuild_while_serving),
		cmocka_unit_test(test_rebuild_sharded_and_empty),
		cmocka_unit_test(test_rebuild_refusals),
	};

	return cmocka_run_group_tests_name("projection (pg)", tests, NULL,
					   NULL);
}
