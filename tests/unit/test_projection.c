/*
 * Projection definitions without a database: compiling $field parameters
 * and {table}, what is left alone (strings, quoted identifiers, dollar
 * quotes, comments), the errors, and the JSON round trip. Also the shard
 * listener ids and dis_query_shard's argument checks.
 */
#include "testutil.h"
#include "projections-internal.h"

#include <stdlib.h>
#include <string.h>

static const char *const SCHEMA =
	"[{\"type\":\"record\",\"name\":\"Created\",\"fields\":["
	" {\"name\":\"item_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"qty\",\"type\":\"int\"},"
	" {\"name\":\"note\",\"type\":[\"null\",\"string\"],\"default\":null}]},"
	" {\"type\":\"record\",\"name\":\"Dropped\",\"fields\":["
	" {\"name\":\"item_id\",\"type\":\"string\",\"disintegrate.id\":true}]},"
	" {\"type\":\"record\",\"name\":\"Tick\",\"fields\":["
	" {\"name\":\"n\",\"type\":\"long\"}]}]";

static dis_schema *schema;
static dis_projection *p;

static int setup(void **state)
{
	char err[256];

	(void)state;
	schema = dt_schema(SCHEMA);
	assert_int_equal(
		dis_projection_new(schema, "items", &p, err, sizeof(err)), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	dis_projection_free(p);
	dis_schema_free(schema);
	return 0;
}

static void check_sql(size_t i, const char *table, const char *want)
{
	char *sql = dis__projection_sql(p, i, table);

	assert_non_null(sql);
	assert_string_equal(sql, want);
	free(sql);
}

static void names_and_table(void **state)
{
	(void)state;
	assert_int_equal(
		dis_projection_on(p, "Created",
				  "INSERT INTO {table} (id, qty, note, ev)"
				  " VALUES ($item_id, $qty::int, $note,"
				  " $event_id) ON CONFLICT (id) DO UPDATE SET"
				  " qty = {table}.qty + $qty"),
		0);
	check_sql(0, "items",
		  "INSERT INTO \"items\" (id, qty, note, ev) VALUES ($1, "
		  "$2::int, $3, $4) ON CONFLICT (id) DO UPDATE SET qty = "
		  "\"items\".qty + $2");
	check_sql(0, "items__rebuild",
		  "INSERT INTO \"items__rebuild\" (id, qty, note, ev) VALUES "
		  "($1, $2::int, $3, $4) ON CONFLICT (id) DO UPDATE SET qty = "
		  "\"items__rebuild\".qty + $2");
	assert_string_equal(dis__projection_param(p, 0, 0), "item_id");
	assert_string_equal(dis__projection_param(p, 0, 1), "qty");
	assert_string_equal(dis__projection_param(p, 0, 2), "note");
	assert_string_equal(dis__projection_param(p, 0, 3), "event_id");
	assert_null(dis__projection_param(p, 0, 4));
	assert_true(dis_query_has_type(dis_projection_query(p), "Created"));
	assert_false(dis_query_has_type(dis_projection_query(p), "Dropped"));
}

static void quotes_are_left_alone(void **state)
{
	(void)state;
	assert_int_equal(
		dis_projection_on(
			p, "Dropped",
			"DELETE FROM {table} WHERE id = $item_id AND"
			" note <> '$qty {table}' AND \"$weird{table}\" = 1"
			" AND x = E'it\\'s $no' AND y = $$ $no $$"
			" AND z = $tag$ $no $tag$ -- $no {table}\n"
			" AND w = 2 /* $no /* nested */ {table} */ AND a$b = 1"),
		0);
	check_sql(0, "t",
		  "DELETE FROM \"t\" WHERE id = $1 AND note <> '$qty {table}'"
		  " AND \"$weird{table}\" = 1 AND x = E'it\\'s $no' AND y = "
		  "$$ $no $$ AND z = $tag$ $no $tag$ -- $no {table}\n AND w = "
		  "2 /* $no /* nested */ {table} */ AND a$b = 1");
	assert_null(dis__projection_param(p, 0, 1));
}

static void errors_say_what(void **state)
{
	(void)state;
	assert_int_equal(dis_projection_on(p, "Nope", "SELECT 1"),
			 DIS_ENOTFOUND);
	assert_int_equal(
		dis_projection_on(p, "Dropped",
				  "DELETE FROM {table} WHERE x = $qty"),
		DIS_EINVAL);
	assert_non_null(strstr(dis_projection_errmsg(p), "qty"));
	assert_int_equal(dis_projection_on(p, "Dropped",
					   "DELETE FROM {table} WHERE x = $1"),
			 DIS_EINVAL);
	assert_non_null(strstr(dis_projection_errmsg(p), "positional"));
	assert_int_equal(dis_projection_on(p, "Dropped",
					   "DELETE FROM {table} WHERE x = 'a"),
			 DIS_EINVAL);
	assert_int_equal(dis_projection_on(p, "Dropped", "SELECT $$ x"),
			 DIS_EINVAL);
	assert_int_equal(dis_projection_on(p, "Dropped", "SELECT /* x"),
			 DIS_EINVAL);
	assert_int_equal(dis_projection_on(p, "Dropped", "SELECT 1; SELECT 2"),
			 DIS_EINVAL);
	assert_non_null(strstr(dis_projection_errmsg(p), "one statement"));
	/* A trailing semicolon and comment are fine. */
	assert_int_equal(
		dis_projection_on(p, "Dropped", "SELECT $item_id; -- done"), 0);
	assert_int_equal(dis_projection_set_ddl(p, "CREATE TABLE x (a int)"),
			 DIS_EINVAL);
	assert_int_equal(dis_projection_set_ddl(
				 p, "CREATE TABLE {table} (a int DEFAULT $x)"),
			 DIS_EINVAL);
	assert_int_equal(dis_projection_set_ddl(p,
						"CREATE TABLE {table} (a int);"
						" CREATE INDEX ON {table} (a)"),
			 0);
	assert_int_equal(dis_projection_on(NULL, "Dropped", "x"), DIS_EINVAL);
	assert_int_equal(dis_projection_install(p, NULL), DIS_EINVAL);
}

static void names_are_checked(void **state)
{
	dis_projection *q = NULL;
	char err[256];
	char long_name[80];

	(void)state;
	assert_int_equal(dis_projection_new(schema, "bad name", &q, err,
					    sizeof(err)),
			 DIS_EINVAL);
	assert_null(q);
	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[DIS_PROJECTION_NAME_MAX + 1] = '\0';
	assert_int_equal(dis_projection_new(schema, long_name, &q, err,
					    sizeof(err)),
			 DIS_EINVAL);
	long_name[DIS_PROJECTION_NAME_MAX] = '\0';
	assert_int_equal(
		dis_projection_new(schema, long_name, &q, err, sizeof(err)), 0);
	dis_projection_free(q);
	dis_projection_free(NULL);
}

static void json_round_trip(void **state)
{
	dis_projection *q = NULL;
	char *a, *b, err[256];

	(void)state;
	assert_int_equal(dis_projection_set_ddl(
				 p, "CREATE TABLE {table} (id text, n int)"),
			 0);
	assert_int_equal(dis_projection_on(p, "Created",
					   "INSERT INTO {table} VALUES "
					   "($item_id, $qty)"),
			 0);
	assert_int_equal(
		dis_projection_on(p, "Tick", "UPDATE {table} SET n = $n"), 0);
	assert_int_equal(dis_projection_to_json(p, &a), 0);
	assert_int_equal(
		dis_projection_from_json(schema, a, &q, err, sizeof(err)), 0);
	assert_int_equal(dis_projection_to_json(q, &b), 0);
	assert_string_equal(a, b);
	assert_string_equal(dis_projection_name(q), "items");
	dis_free(a);
	dis_free(b);
	dis_projection_free(q);
	q = NULL;
	assert_int_equal(dis_projection_from_json(schema, "{\"name\": 1}", &q,
						  err, sizeof(err)),
			 DIS_EINVAL);
	assert_int_equal(
		dis_projection_from_json(
			schema,
			"{\"name\":\"x\",\"ddl\":\"CREATE TABLE {table} ()\","
			"\"on\":[{\"type\":\"Tick\",\"sql\":\"SELECT $nope\"}]}",
			&q, err, sizeof(err)),
		DIS_EINVAL);
	assert_non_null(strstr(err, "nope"));
	assert_null(q);
}

static void shard_arguments(void **state)
{
	char id[DIS_LISTENER_ID_MAX + 1];
	dis_query *q;
	dis_filter *f;
	char *text;

	(void)state;
	assert_int_equal(dis_shard_listener_id(id, sizeof(id), "l", 2, 4), 0);
	assert_string_equal(id, "l#2/4");
	assert_int_equal(dis_shard_listener_id(id, sizeof(id), "l", 4, 4),
			 DIS_EINVAL);
	assert_int_equal(dis_shard_listener_id(id, 4, "long", 0, 1),
			 DIS_EINVAL);

	assert_int_equal(dis_query_new(schema, &q), 0);
	assert_int_equal(dis_query_shard(q, "item_id", 4, 1), DIS_EINVAL);
	dis_query_free(q);

	assert_int_equal(dis_query_new(schema, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_filter_type(f, "Tick"), 0);
	assert_int_equal(dis_query_shard(q, "item_id", 4, 1), DIS_EINVAL);
	dis_query_free(q);

	assert_int_equal(dis_query_new(schema, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_query_shard(q, "nope", 4, 1), DIS_ENOTFOUND);
	dis_query_free(q);

	assert_int_equal(dis_query_new(schema, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_query_shard(q, "item_id", 4, 4), DIS_EINVAL);
	dis_query_free(q);

	assert_int_equal(dis_query_new(schema, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_query_shard(q, "item_id", 4, 3), 0);
	assert_int_equal(dis_query_shard(q, "item_id", 4, 2), DIS_EINVAL);
	dis_query_free(q);

	assert_int_equal(dis_query_new(schema, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_query_shard(q, "item_id", 4, 3), 0);
	assert_int_equal(dis_query_describe(q, &text), 0);
	assert_non_null(strstr(text, ";shard=item_id:3/4"));
	dis_free(text);
	dis_query_free(q);
}

/* Every event is in exactly one shard, the same one for the same id. */
static void shards_partition_in_memory(void **state)
{
	enum { N = 5 };
	dis_query *q[N];
	char json[128];

	(void)state;
	for (uint32_t k = 0; k < N; k++) {
		dis_filter *f;

		assert_int_equal(dis_query_new(schema, &q[k]), 0);
		assert_int_equal(dis_query_add_filter(q[k], &f), 0);
		assert_int_equal(dis_query_shard(q[k], "item_id", N, k), 0);
	}
	for (int i = 0; i < 500; i++) {
		dis_event *ev;
		int hits = 0, where = -1;

		snprintf(json, sizeof(json), "{\"item_id\": \"item %d\"}",
			 i / 2);
		assert_int_equal(
			dis_event_from_json(schema, i % 3 ? "Dropped" : "Tick",
					    i % 3 ? json : "{\"n\": 1}", &ev,
					    NULL, 0),
			0);
		for (int k = 0; k < N; k++)
			if (dis_query_matches(q[k], ev)) {
				hits++;
				where = k;
			}
		assert_int_equal(hits, 1);
		if (i % 3 == 0)
			assert_int_equal(where, 0); /* no item_id: shard 0 */
		dis_event_free(ev);
	}
	for (int k = 0; k < N; k++)
		dis_query_free(q[k]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(names_and_table, setup,
						teardown),
		cmocka_unit_test_setup_teardown(quotes_are_left_alone, setup,
						teardown),
		cmocka_unit_test_setup_teardown(errors_say_what, setup,
						teardown),
		cmocka_unit_test_setup_teardown(names_are_checked, setup,
						teardown),
		cmocka_unit_test_setup_teardown(json_round_trip, setup,
						teardown),
		cmocka_unit_test_setup_teardown(shard_arguments, setup,
						teardown),
		cmocka_unit_test_setup_teardown(shards_partition_in_memory,
						setup, teardown),
	};

	return cmocka_run_group_tests_name("projection", tests, NULL, NULL);
}
