/*
 * The id indexer: a field becomes a domain id in a new version of the
 * schema; the migration adds its column, NULL for the events stored
 * before; the indexer fills it from their payloads (through the library,
 * and through `disctl index`, whose path is argv[1]).
 */
#include "testutil.h"

#include <disintegrate/projection.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *disctl_path;

/* Version 1: sku and lot are plain fields. */
static const char *const V1 =
	"[{\"type\":\"record\",\"name\":\"Added\",\"fields\":["
	"  {\"name\":\"cart_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	"  {\"name\":\"sku\",\"type\":\"string\"},"
	"  {\"name\":\"lot\",\"type\":[\"null\",\"long\"],\"default\":null}]},"
	" {\"type\":\"record\",\"name\":\"Other\",\"fields\":["
	"  {\"name\":\"x\",\"type\":\"long\"}]}]";

/* Version 2: both are domain ids. */
static const char *const V2 =
	"[{\"type\":\"record\",\"name\":\"Added\",\"fields\":["
	"  {\"name\":\"cart_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	"  {\"name\":\"sku\",\"type\":\"string\",\"disintegrate.id\":true},"
	"  {\"name\":\"lot\",\"type\":[\"null\",\"long\"],\"default\":null,"
	"   \"disintegrate.id\":true}]},"
	" {\"type\":\"record\",\"name\":\"Other\",\"fields\":["
	"  {\"name\":\"x\",\"type\":\"long\"}]}]";

static long long count(PGconn *c, const char *sql)
{
	char *v = dt_scalar(c, sql);
	long long n = v ? atoll(v) : -1;

	free(v);
	return n;
}

static void append_v1(dis_store *st, const dis_schema *s, int n)
{
	for (int i = 0; i < n; i++) {
		dis_event *ev[2];
		char cart[16], sku[16];

		snprintf(cart, sizeof(cart), "cart-%d", i % 7);
		snprintf(sku, sizeof(sku), "sku-%d", i % 13);
		assert_int_equal(dis_event_new(s, "Added", &ev[0]), 0);
		assert_int_equal(dis_event_set_string(ev[0], "cart_id", cart),
				 0);
		assert_int_equal(dis_event_set_string(ev[0], "sku", sku), 0);
		if (i % 3)
			assert_int_equal(dis_event_set_long(ev[0], "lot",
							    1000 + i % 5),
					 0);
		assert_int_equal(dis_event_new(s, "Other", &ev[1]), 0);
		assert_int_equal(dis_store_append(st, ev, 2, NULL, NULL, NULL),
				 0);
		dis_event_free(ev[0]);
		dis_event_free(ev[1]);
	}
}

static int loaded(dis_store *st, const dis_schema *s, const char *sku)
{
	dis_query *q;
	dis_filter *f;
	int n = 0;

	assert_int_equal(dis_query_new(s, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_filter_type(f, "Added"), 0);
	assert_int_equal(dis_filter_where_string(f, "sku", sku), 0);
	assert_int_equal(dis_store_load(st, q, dt_count_event, &n, NULL), 0);
	dis_query_free(q);
	return n;
}

/* Every Added row's sku column equals its payload's (Added number k,
 * event 2k + 1, has sku-(k % 13)). */
static void check_columns(PGconn *c)
{
	assert_int_equal(count(c,
			       "SELECT count(*) FROM event WHERE event_type"
			       " = 'Added' AND sku IS DISTINCT FROM 'sku-' ||"
			       " ((event_id / 2) % 13)::text"),
			 0);
}

static void test_backfill(void **state)
{
	char *conninfo = dt_fresh_db();
	dis_schema *v1 = dt_schema(V1), *v2 = dt_schema(V2);
	dis_store *st1 = dt_store(conninfo, v1);
	dis_store *st2;
	PGconn *c = dt_connect(conninfo);
	dis_index_report rep;
	char err[512];

	(void)state;
	/* Event ids start at 1: event 2k+1 is Added number k. */
	append_v1(st1, v1, 390);
	st2 = dt_store(conninfo, v2);
	assert_int_equal(count(c,
			       "SELECT count(*) FROM event"
			       " WHERE event_type = 'Added' AND sku IS NULL"),
			 390);
	assert_int_equal(loaded(st2, v2, "sku-0"), 0);
	/* Events appended with version 2 have their column at once. */
	append_v1(st2, v2, 13);
	assert_int_equal(loaded(st2, v2, "sku-0"), 1);

	assert_int_equal(dis_index_backfill(conninfo, v2, "sku", NULL, NULL,
					    &rep, err, sizeof(err)),
			 0);
	print_message("indexed: %" PRIu64 " events read, %" PRIu64
		      " filled in %.3f s\n",
		      rep.events, rep.filled, rep.seconds);
	assert_int_equal(rep.events, 403);
	assert_int_equal(rep.filled, 390);
	/* The migration added the column with its (sku, tx) index. */
	assert_false(rep.index_built);
	assert_int_equal(count(c,
			       "SELECT count(*) FROM event"
			       " WHERE event_type = 'Added' AND sku IS NULL"),
			 0);
	assert_int_equal(loaded(st2, v2, "sku-0"), 30 + 1);
	check_columns(c);
	/* Other types keep NULL. */
	assert_int_equal(count(c, "SELECT count(*) FROM event"
				  " WHERE event_type = 'Other' AND sku IS NOT"
				  " NULL"),
			 0);
	/* A second run starts from its checkpoint: nothing left to do. */
	assert_int_equal(dis_index_backfill(conninfo, v2, "sku", NULL, NULL,
					    &rep, err, sizeof(err)),
			 0);
	assert_int_equal(rep.filled, 0);
	assert_int_equal(count(c, "SELECT count(*) FROM event_listener"
				  " WHERE id = 'index:sku'"),
			 1);
	/* Unknown id. */
	assert_int_equal(dis_index_backfill(conninfo, v2, "nope", NULL, NULL,
					    &rep, err, sizeof(err)),
			 DIS_ENOTFOUND);

	dis_store_free(st1);
	dis_store_free(st2);
	dis_schema_free(v1);
	dis_schema_free(v2);
	PQfinish(c);
	free(conninfo);
}

/* The indexes of event on (sku, tx), "name:valid:unique", by name. */
#define SKU_TX_INDEXES                                                        \
	"SELECT coalesce(string_agg(c.relname || ':' || i.indisvalid || ':' " \
	"|| i.indisunique, ',' ORDER BY c.relname), '') FROM pg_index i "     \
	"JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = "         \
	"'event'::regclass AND pg_get_indexdef(i.indexrelid) LIKE "           \
	"'%(sku, tx)'"

static void assert_sku_tx_indexes(PGconn *c, const char *want)
{
	char *have = dt_scalar(c, SKU_TX_INDEXES);

	assert_non_null(have);
	assert_string_equal(have, want);
	free(have);
}

/*
 * A column older than the (id, tx) index (a Disintegrate table, or one
 * migrated before the index included tx) has an index on the id alone:
 * the backfill builds the (id, tx) one, concurrently, once; an index a
 * failed build left invalid is replaced.
 */
static void test_index_for_old_column(void **state)
{
	char *conninfo = dt_fresh_db();
	dis_schema *v2 = dt_schema(V2);
	dis_store *st = dt_store(conninfo, v2);
	PGconn *c = dt_connect(conninfo);
	dis_index_report rep;
	PGresult *r;
	char err[512];

	(void)state;
	append_v1(st, v2, 40);
	dt_exec(c, "DROP INDEX idx_event_sku");
	dt_exec(c, "CREATE INDEX idx_event_sku ON event (sku)");
	assert_sku_tx_indexes(c, "");

	assert_int_equal(dis_index_backfill(conninfo, v2, "sku", NULL, NULL,
					    &rep, err, sizeof(err)),
			 0);
	assert_true(rep.index_built);
	assert_sku_tx_indexes(c, "idx_event_sku_tx:true:false");
	/* There now: nothing to build. */
	assert_int_equal(dis_index_backfill(conninfo, v2, "sku", NULL, NULL,
					    &rep, err, sizeof(err)),
			 0);
	assert_false(rep.index_built);
	assert_sku_tx_indexes(c, "idx_event_sku_tx:true:false");

	/* A concurrent build that failed (duplicate keys) leaves its index
	 * invalid under the same name. */
	dt_exec(c, "DROP INDEX idx_event_sku_tx");
	dt_exec(c, "INSERT INTO event (event_type, payload, sku) SELECT "
		   "'Added', ''::bytea, 'dup' FROM generate_series(1, 2)");
	r = PQexec(c, "CREATE UNIQUE INDEX CONCURRENTLY idx_event_sku_tx ON "
		      "event (sku, tx)");
	assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
	PQclear(r);
	assert_sku_tx_indexes(c, "idx_event_sku_tx:false:true");
	dt_exec(c, "DELETE FROM event WHERE sku = 'dup'");
	assert_int_equal(dis_index_backfill(conninfo, v2, "sku", NULL, NULL,
					    &rep, err, sizeof(err)),
			 0);
	assert_true(rep.index_built);
	assert_sku_tx_indexes(c, "idx_event_sku_tx:true:false");

	dis_store_free(st);
	dis_schema_free(v2);
	PQfinish(c);
	free(conninfo);
}

/* disctl index fills a nullable long id (nulls stay NULL). */
static void test_disctl_index(void **state)
{
	char *conninfo;
	dis_schema *v1, *v2;
	dis_store *st1;
	PGconn *c;
	char path[] = "/tmp/dis-indexer-XXXXXX";
	int fd, st;
	pid_t pid;

	(void)state;
	if (!disctl_path)
		skip();
	conninfo = dt_fresh_db();
	v1 = dt_schema(V1);
	v2 = dt_schema(V2);
	st1 = dt_store(conninfo, v1);
	c = dt_connect(conninfo);
	append_v1(st1, v1, 120);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, V2, strlen(V2)), (ssize_t)strlen(V2));
	close(fd);
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		execl(disctl_path, disctl_path, "--db", conninfo, "index",
		      "--schema", path, "lot", (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	unlink(path);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	/* Two thirds carry a lot; the rest stay NULL. */
	assert_int_equal(count(c, "SELECT count(*) FROM event"
				  " WHERE event_type = 'Added' AND lot IS NOT"
				  " NULL"),
			 80);
	assert_int_equal(count(c,
			       "SELECT count(*) FROM event"
			       " WHERE event_type = 'Added' AND lot IS"
			       " DISTINCT FROM CASE WHEN ((event_id - 1) / 2)"
			       " % 3 = 0 THEN NULL ELSE 1000 + ((event_id -"
			       " 1) / 2) % 5 END"),
			 0);
	dis_store_free(st1);
	dis_schema_free(v1);
	dis_schema_free(v2);
	PQfinish(c);
	free(conninfo);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backfill),
		cmocka_unit_test(test_index_for_old_column),
		cmocka_unit_test(test_disctl_index),
	};

	disctl_path = argc > 1 ? argv[1] : NULL;
	return cmocka_run_group_tests_name("indexer", tests, NULL, NULL);
}
