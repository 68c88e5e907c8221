/*
 * Sharded listeners.
 *
 * 1. The shard of an event computed in memory (dis_query_matches) equals
 *    the one the SQL computes, for thousands of string (ASCII, UTF-8,
 *    empty, every length around MD5's block boundaries), long (extremes,
 *    negatives) and UUID ids and null ids, for several shard counts; and
 *    the shards of a query partition it.
 * 2. A listener in 4 shards worked by 2 processes (one killed halfway and
 *    replaced by a process working all 4 shards) while events are
 *    appended: every event handled exactly once, per-key order kept, each
 *    shard with its own checkpoint.
 */
#include "testutil.h"

#include <disintegrate/listener.h>
#include <disintegrate/projection.h>
#include <jansson.h>

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *const SCHEMA =
	"[{\"type\":\"record\",\"name\":\"S\",\"fields\":["
	"  {\"name\":\"key\",\"type\":\"string\",\"disintegrate.id\":true},"
	"  {\"name\":\"seq\",\"type\":\"long\"}]},"
	" {\"type\":\"record\",\"name\":\"L\",\"fields\":["
	"  {\"name\":\"num\",\"type\":\"long\",\"disintegrate.id\":true}]},"
	" {\"type\":\"record\",\"name\":\"U\",\"fields\":["
	"  {\"name\":\"uid\",\"type\":{\"type\":\"string\","
	"   \"logicalType\":\"uuid\"},\"disintegrate.id\":true}]},"
	" {\"type\":\"record\",\"name\":\"N\",\"fields\":["
	"  {\"name\":\"key\",\"type\":[\"null\",\"string\"],\"default\":null,"
	"   \"disintegrate.id\":true}]},"
	" {\"type\":\"record\",\"name\":\"Other\",\"fields\":["
	"  {\"name\":\"x\",\"type\":\"long\"}]}]";

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* A random valid UTF-8 string of `n` code points (1 to 4 bytes each). */
static void utf8_string(uint64_t *seed, char *out, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t r = rnd(seed);
		uint32_t cp;

		switch (r % 4) {
		case 0: cp = 0x20 + (uint32_t)(r >> 8) % 0x5f; break;
		case 1: cp = 0x80 + (uint32_t)(r >> 8) % 0x700; break;
		case 2: cp = 0x800 + (uint32_t)(r >> 8) % 0xd000; break;
		default: cp = 0x10000 + (uint32_t)(r >> 8) % 0xf0000; break;
		}
		if (cp >= 0xd800 && cp < 0xe000)
			cp = 0x41;
		if (cp < 0x80) {
			out[o++] = (char)cp;
		} else if (cp < 0x800) {
			out[o++] = (char)(0xc0 | cp >> 6);
			out[o++] = (char)(0x80 | (cp & 0x3f));
		} else if (cp < 0x10000) {
			out[o++] = (char)(0xe0 | cp >> 12);
			out[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
			out[o++] = (char)(0x80 | (cp & 0x3f));
		} else {
			out[o++] = (char)(0xf0 | cp >> 18);
			out[o++] = (char)(0x80 | ((cp >> 12) & 0x3f));
			out[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
			out[o++] = (char)(0x80 | (cp & 0x3f));
		}
	}
	out[o] = '\0';
}

typedef struct collected {
	dis_event **evs;
	size_t n, cap;
} collected;

static int collect(void *arg, const dis_event *ev)
{
	collected *c = arg;

	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 1024;
		c->evs = realloc(c->evs, c->cap * sizeof(*c->evs));
		assert_non_null(c->evs);
	}
	return dis_event_copy(ev, &c->evs[c->n++]);
}

/* Every event of the log, by position. */
static void read_all(dis_store *st, const dis_query *q, collected *c)
{
	dis_position pos = DIS_POSITION_START, next, head;

	assert_int_equal(dis_store_head(st, &head), 0);
	for (;;) {
		assert_int_equal(
			dis_store_read(st, q, pos, 5000, collect, c, &next), 0);
		if (dis_position_cmp(next, head) >= 0)
			break;
		pos = next;
	}
}

static dis_query *all_query(const dis_schema *s)
{
	dis_query *q;
	dis_filter *f;

	assert_int_equal(dis_query_new(s, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	return q;
}

static void append_json(dis_store *st, const dis_schema *s, const char *type,
			const char *json, dis_event **batch, size_t *nb)
{
	char err[256];

	if (dis_event_from_json(s, type, json, &batch[*nb], err, sizeof(err)))
		fail_msg("%s: %s", json, err);
	if (++*nb == 200) {
		assert_int_equal(
			dis_store_append(st, batch, *nb, NULL, NULL, NULL), 0);
		for (size_t i = 0; i < *nb; i++)
			dis_event_free(batch[i]);
		*nb = 0;
	}
}

static void test_sql_agrees_with_memory(void **state)
{
	char *conninfo = dt_fresh_db();
	dis_schema *s = dt_schema(SCHEMA);
	dis_store *st = dt_store(conninfo, s);
	dis_event *batch[200];
	size_t nb = 0;
	uint64_t seed = 88172645463325252ULL;
	char buf[2048], str[1024];
	collected all = {0};
	dis_query *q = all_query(s);
	static const uint32_t counts[] = {1, 2, 3, 4, 7, 16, 97, 1000};
	int compared = 0;

	(void)state;
	/* Strings: every length 0..130 bytes of ASCII (MD5 padding edges),
	 * random UTF-8, and quoting characters. */
	for (int len = 0; len <= 130; len++) {
		memset(str, 'a' + len % 26, (size_t)len);
		str[len] = '\0';
		snprintf(buf, sizeof(buf), "{\"key\": \"%s\", \"seq\": 0}",
			 str);
		append_json(st, s, "S", buf, batch, &nb);
	}
	for (int i = 0; i < 1500; i++) {
		json_t *o;
		char *text;

		utf8_string(&seed, str, 1 + rnd(&seed) % 40);
		o = i % 10 ? json_pack("{s:s,s:i}", "key", str, "seq", i)
			   : json_pack("{s:s}", "key", str);
		text = json_dumps(o, 0);
		append_json(st, s, i % 10 ? "S" : "N", text, batch, &nb);
		free(text);
		json_decref(o);
	}
	append_json(st, s, "S", "{\"key\": \"\\\" ' \\\\ $1 %s\", \"seq\": 1}",
		    batch, &nb);
	append_json(st, s, "N", "{\"key\": null}", batch, &nb);
	/* Longs: extremes, small and random ones. */
	append_json(st, s, "L", "{\"num\": 9223372036854775807}", batch, &nb);
	append_json(st, s, "L", "{\"num\": -9223372036854775808}", batch, &nb);
	for (int i = -200; i < 300; i++) {
		snprintf(buf, sizeof(buf), "{\"num\": %d}", i);
		append_json(st, s, "L", buf, batch, &nb);
	}
	for (int i = 0; i < 800; i++) {
		snprintf(buf, sizeof(buf), "{\"num\": %" PRId64 "}",
			 (int64_t)rnd(&seed));
		append_json(st, s, "L", buf, batch, &nb);
	}
	/* UUIDs, some in upper case. */
	for (int i = 0; i < 800; i++) {
		uint64_t a = rnd(&seed), b = rnd(&seed);

		snprintf(buf, sizeof(buf),
			 i % 2 ? "{\"uid\": \"%08" PRIx64 "-%04" PRIx64
				 "-%04" PRIx64 "-%04" PRIx64 "-%012" PRIx64
				 "\"}"
			       : "{\"uid\": \"%08" PRIX64 "-%04" PRIX64
				 "-%04" PRIX64 "-%04" PRIX64 "-%012" PRIX64
				 "\"}",
			 a >> 32, (a >> 16) & 0xffff, a & 0xffff, b >> 48,
			 b & (uint64_t)0xffffffffffff);
		append_json(st, s, "U", buf, batch, &nb);
	}
	for (int i = 0; i < 50; i++) {
		snprintf(buf, sizeof(buf), "{\"x\": %d}", i);
		append_json(st, s, "Other", buf, batch, &nb);
	}
	if (nb) {
		assert_int_equal(
			dis_store_append(st, batch, nb, NULL, NULL, NULL), 0);
		for (size_t i = 0; i < nb; i++)
			dis_event_free(batch[i]);
	}
	read_all(st, q, &all);
	print_message("%zu events\n", all.n);

	for (size_t c = 0; c < sizeof(counts) / sizeof(*counts); c++) {
		uint32_t n = counts[c];
		const char *ids[] = {"key", "num", "uid"};

		for (size_t which = 0; which < 3; which++) {
			unsigned char *seen = calloc(all.n, 1);

			for (uint32_t k = 0; k < n; k++) {
				dis_query *sq;
				collected got = {0};
				size_t j = 0;

				if (n == 1000 && k > 3 && k != 999 && k % 97)
					continue;
				assert_int_equal(dis_query_copy(q, &sq), 0);
				assert_int_equal(dis_query_shard(sq, ids[which],
								 n, k),
						 0);
				read_all(st, sq, &got);
				/* What the SQL chose equals what memory
				 * chooses, event by event. */
				for (size_t i = 0; i < all.n; i++) {
					bool mem = dis_query_matches(
						sq, all.evs[i]);
					bool sql = j < got.n &&
						   dis_event_id(got.evs[j]) ==
							   dis_event_id(
								   all.evs[i]);

					if (sql)
						j++;
					if (mem != sql)
						fail_msg("event %" PRId64
							 " (%s): shard %u/%u "
							 "by %s: memory %d, "
							 "SQL %d",
							 dis_event_id(
								 all.evs[i]),
							 dis_event_type(
								 all.evs[i]),
							 k, n, ids[which], mem,
							 sql);
					if (mem) {
						assert_false(seen[i]);
						seen[i] = 1;
					}
					compared++;
				}
				assert_int_equal(j, got.n);
				for (size_t i = 0; i < got.n; i++)
					dis_event_free(got.evs[i]);
				free(got.evs);
				dis_query_free(sq);
			}
			if (n != 1000)
				for (size_t i = 0; i < all.n; i++)
					assert_true(seen[i]);
			free(seen);
		}
	}
	print_message("%d (event, shard) pairs agree\n", compared);
	for (size_t i = 0; i < all.n; i++)
		dis_event_free(all.evs[i]);
	free(all.evs);
	dis_query_free(q);
	dis_store_free(st);
	dis_schema_free(s);
	free(conninfo);
}

/* ---- 4 shards, 2 processes ---- */

#define NKEYS 40
#define NSHARDS 4

static int shard_handler(void *arg, dis_batch *b, const dis_event *ev)
{
	const char *key = "";
	int64_t seq = 0;
	char eid[24], sq[24];
	const char *v[4] = {dis_batch_listener_id(b), eid, key, sq};
	int rc;

	(void)arg;
	if (!strcmp(dis_event_type(ev), "S")) {
		dis_event_get_string(ev, "key", &key);
		dis_event_get_long(ev, "seq", &seq);
	}
	v[2] = key;
	snprintf(eid, sizeof(eid), "%" PRId64, dis_event_id(ev));
	snprintf(sq, sizeof(sq), "%" PRId64, seq);
	rc = dt_batch_run(b,
			  "INSERT INTO handled (listener, event_id, key, seq)"
			  " VALUES ($1, $2::bigint, $3, $4::bigint)",
			  4, v);
	if (rc)
		return rc;
	/* Slow enough that batches of different processes interleave. */
	if (dis_event_id(ev) % 7 == 0)
		usleep(300);
	return 0;
}

static int child(const char *conninfo, const dis_schema *s,
		 const uint32_t *mine, size_t nmine)
{
	dis_runner *r;
	dis_query *q;
	dis_filter *f;
	dis_listener_config cfg;
	char err[256];
	int rc;

	if (dis_runner_new(conninfo, s, &r, err, sizeof(err)))
		return 2;
	dis_query_new(s, &q);
	dis_query_add_filter(q, &f);
	dis_filter_type(f, "S");
	dis_filter_type(f, "Other");
	dis_listener_config_init(&cfg);
	cfg.poll_interval_ms = 50;
	cfg.fetch_size = 17;
	if (dis_runtime_add_sharded(dis_runner_runtime(r), "sharded", q, "key",
				    NSHARDS, mine, nmine, shard_handler, NULL,
				    &cfg))
		return 3;
	dis_query_free(q);
	rc = dis_runner_run(r);
	dis_runner_free(r);
	return rc == 0 ? 0 : 4;
}

static pid_t spawn(const char *conninfo, const dis_schema *s,
		   const uint32_t *mine, size_t nmine)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(child(conninfo, s, mine, nmine));
	return pid;
}

static int wait_child(pid_t pid)
{
	int st;

	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static long long count(PGconn *c, const char *sql)
{
	char *v = dt_scalar(c, sql);
	long long n = v ? atoll(v) : -1;

	free(v);
	return n;
}

/* Whether every shard's checkpoint is past the head. */
static bool shards_done(PGconn *c)
{
	return count(c,
		     "SELECT count(*) FROM event_listener"
		     " WHERE id LIKE 'sharded#%/4'"
		     " AND (checkpoint_tx, checkpoint_id) >="
		     " (SELECT tx, event_id FROM event"
		     "  ORDER BY tx DESC, event_id DESC LIMIT 1)") == NSHARDS;
}

/* A shard registered already: the call fails and registers no other. */
static void test_sharded_all_or_nothing(void **state)
{
	char *conninfo = dt_fresh_db();
	dis_schema *s = dt_schema(SCHEMA);
	static const uint32_t one[] = {1};
	dis_listener_stats *st;
	dis_runtime *rt;
	dis_runner *r;
	dis_query *q;
	dis_filter *f;
	char err[256];
	size_t n;

	(void)state;
	assert_int_equal(dis_runner_new(conninfo, s, &r, err, sizeof(err)), 0);
	rt = dis_runner_runtime(r);
	assert_int_equal(dis_query_new(s, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_filter_type(f, "S"), 0);
	assert_int_equal(dis_runtime_add_sharded(rt, "sh", q, "key", 3, one, 1,
						 shard_handler, NULL, NULL),
			 0);
	assert_int_equal(dis_runtime_add_sharded(rt, "sh", q, "key", 3, NULL, 0,
						 shard_handler, NULL, NULL),
			 DIS_EINVAL);
	assert_non_null(strstr(dis_runtime_errmsg(rt), "sh#1/3"));
	assert_int_equal(dis_runtime_stats(rt, &st, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(st[0].id, "sh#1/3");
	dis_free(st);
	dis_query_free(q);
	dis_runner_free(r);
	dis_schema_free(s);
	free(conninfo);
}

static void test_four_shards_two_processes(void **state)
{
	char *conninfo = dt_fresh_db();
	dis_schema *s = dt_schema(SCHEMA);
	dis_store *st = dt_store(conninfo, s);
	PGconn *c = dt_connect(conninfo);
	static const uint32_t a_shards[] = {0, 1}, b_shards[] = {2, 3};
	int64_t seq[NKEYS] = {0};
	uint64_t seed = 42;
	int appended = 0;
	pid_t a, b, all;
	double until;

	(void)state;
	dt_exec(c, "CREATE TABLE handled (n BIGSERIAL PRIMARY KEY,"
		   " listener TEXT NOT NULL, event_id BIGINT NOT NULL,"
		   " key TEXT NOT NULL, seq BIGINT NOT NULL,"
		   " pid INT NOT NULL DEFAULT pg_backend_pid())");
	a = spawn(conninfo, s, a_shards, 2);
	b = spawn(conninfo, s, b_shards, 2);
	all = 0;
	for (int round = 0; round < 60; round++) {
		dis_event *evs[20];
		int n = 1 + (int)(rnd(&seed) % 20);

		for (int i = 0; i < n; i++) {
			int k = (int)(rnd(&seed) % NKEYS);
			char key[16];

			if (rnd(&seed) % 10 == 0) {
				assert_int_equal(
					dis_event_new(s, "Other", &evs[i]), 0);
				continue;
			}
			snprintf(key, sizeof(key), "key-%d", k);
			assert_int_equal(dis_event_new(s, "S", &evs[i]), 0);
			assert_int_equal(
				dis_event_set_string(evs[i], "key", key), 0);
			assert_int_equal(
				dis_event_set_long(evs[i], "seq", ++seq[k]), 0);
		}
		assert_int_equal(dis_store_append(st, evs, (size_t)n, NULL,
						  NULL, NULL),
				 0);
		appended += n;
		for (int i = 0; i < n; i++)
			dis_event_free(evs[i]);
		usleep(10000);
		if (round == 30) {
			/* Kill A mid-stream; a process working every shard
			 * takes over its shards and competes for B's. */
			kill(a, SIGKILL);
			assert_int_equal(wait_child(a), 128 + SIGKILL);
			all = spawn(conninfo, s, NULL, 0);
		}
	}
	until = now_s() + 60;
	while (!shards_done(c) && now_s() < until)
		usleep(50000);
	assert_true(shards_done(c));
	kill(b, SIGTERM);
	kill(all, SIGTERM);
	assert_int_equal(wait_child(b), 0);
	assert_int_equal(wait_child(all), 0);

	print_message("%d events; handled by %lld backends; per shard: %lld "
		      "%lld %lld %lld\n",
		      appended,
		      count(c, "SELECT count(DISTINCT pid) FROM handled"),
		      count(c, "SELECT count(*) FROM handled"
			       " WHERE listener = 'sharded#0/4'"),
		      count(c, "SELECT count(*) FROM handled"
			       " WHERE listener = 'sharded#1/4'"),
		      count(c, "SELECT count(*) FROM handled"
			       " WHERE listener = 'sharded#2/4'"),
		      count(c, "SELECT count(*) FROM handled"
			       " WHERE listener = 'sharded#3/4'"));
	/* Exactly once. */
	assert_int_equal(count(c, "SELECT count(*) FROM handled"), appended);
	assert_int_equal(count(c, "SELECT count(DISTINCT event_id)"
				  " FROM handled"),
			 appended);
	assert_int_equal(count(c, "SELECT count(*) FROM event e"
				  " WHERE NOT EXISTS (SELECT 1 FROM handled h"
				  " WHERE h.event_id = e.event_id)"),
			 0);
	/* A key lives in one shard, and its events were handled in order:
	 * in the order rows were written, seq goes 1, 2, 3, ... per key. */
	assert_int_equal(count(c, "SELECT count(*) FROM (SELECT key FROM"
				  " handled WHERE key <> '' GROUP BY key"
				  " HAVING count(DISTINCT listener) > 1) x"),
			 0);
	assert_int_equal(
		count(c, "SELECT count(*) FROM (SELECT key, seq, row_number()"
			 " OVER (PARTITION BY key ORDER BY n) AS r FROM handled"
			 " WHERE key <> '') x WHERE seq <> r"),
		0);
	/* Events without the key (type Other) are shard 0's. */
	assert_int_equal(count(c, "SELECT count(*) FROM handled WHERE key = ''"
				  " AND listener <> 'sharded#0/4'"),
			 0);
	/* Every shard worked, by more than one process overall. */
	assert_int_equal(count(c, "SELECT count(DISTINCT listener)"
				  " FROM handled"),
			 NSHARDS);
	assert_true(count(c, "SELECT count(DISTINCT pid) FROM handled") >= 2);
	PQfinish(c);
	dis_store_free(st);
	dis_schema_free(s);
	free(conninfo);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sql_agrees_with_memory),
		cmocka_unit_test(test_sharded_all_or_nothing),
		cmocka_unit_test(test_four_shards_two_processes),
	};

	return cmocka_run_group_tests_name("shard", tests, NULL, NULL);
}
