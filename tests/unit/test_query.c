/* Stream queries without a database: building, errors, matching, keys. */
#include "testutil.h"
#include "core-internal.h"

#include <stdlib.h>
#include <string.h>

static const char *SCHEMA =
	"[{\"type\":\"record\",\"name\":\"Opened\",\"fields\":["
	" {\"name\":\"account_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"owner\",\"type\":\"long\",\"disintegrate.id\":true}]},"
	" {\"type\":\"record\",\"name\":\"Deposited\",\"fields\":["
	" {\"name\":\"account_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"amount\",\"type\":\"long\"}]},"
	" {\"type\":\"record\",\"name\":\"Audited\",\"fields\":["
	" {\"name\":\"auditor\",\"type\":{\"type\":\"string\","
	"  \"logicalType\":\"uuid\"},\"disintegrate.id\":true}],"
	" \"disintegrate.streams\":[\"audit\"]}]";

static dis_schema *schema;

static int setup(void **state)
{
	(void)state;
	schema = dt_schema(SCHEMA);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	dis_schema_free(schema);
	return 0;
}

static dis_event *opened(const char *account, int64_t owner)
{
	dis_event *ev;

	assert_int_equal(dis_event_new(schema, "Opened", &ev), 0);
	assert_int_equal(dis_event_set_string(ev, "account_id", account), 0);
	assert_int_equal(dis_event_set_long(ev, "owner", owner), 0);
	return ev;
}

static dis_event *deposited(const char *account)
{
	dis_event *ev;

	assert_int_equal(dis_event_new(schema, "Deposited", &ev), 0);
	assert_int_equal(dis_event_set_string(ev, "account_id", account), 0);
	assert_int_equal(dis_event_set_long(ev, "amount", 5), 0);
	return ev;
}

static dis_event *audited(const char *uuid)
{
	dis_event *ev;

	assert_int_equal(dis_event_new(schema, "Audited", &ev), 0);
	assert_int_equal(dis_event_set_string(ev, "auditor", uuid), 0);
	return ev;
}

static void test_builder_errors(void **state)
{
	dis_query *q;
	dis_filter *f;

	(void)state;
	/* No filter. */
	assert_int_equal(dis_query_new(schema, &q), 0);
	assert_int_equal(dis_query_check(q), DIS_EINVAL);
	assert_non_null(strstr(dis_query_errmsg(q), "no filter"));
	dis_query_free(q);

	/* Unknown type: sticky, later calls are no-ops returning it. */
	assert_int_equal(dis_query_new(schema, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_filter_type(f, "Nope"), DIS_ENOTFOUND);
	assert_int_equal(dis_filter_type(f, "Opened"), DIS_ENOTFOUND);
	assert_int_equal(dis_query_check(q), DIS_ENOTFOUND);
	assert_non_null(strstr(dis_query_errmsg(q), "\"Nope\""));
	dis_query_free(q);

	/* Unknown id, wrong value type, bad uuid, unknown stream. */
	assert_int_equal(dis_query_new(schema, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_filter_where_string(f, "nope", "x"),
			 DIS_ENOTFOUND);
	dis_query_free(q);
	assert_int_equal(dis_query_new(schema, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_filter_where_string(f, "owner", "x"), DIS_EINVAL);
	assert_non_null(strstr(dis_query_errmsg(q), "is a long"));
	dis_query_free(q);
	assert_int_equal(dis_query_new(schema, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_filter_where_uuid(f, "auditor", "not-a-uuid"),
			 DIS_EINVAL);
	dis_query_free(q);
	assert_int_equal(dis_query_new(schema, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_filter_stream(f, "nostream"), DIS_ENOTFOUND);
	dis_query_free(q);

	/* Every named type excluded: an error, not broken SQL. */
	assert_int_equal(dis_query_new(schema, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_filter_type(f, "Opened"), 0);
	assert_int_equal(dis_filter_exclude(f, "Opened"), 0);
	assert_int_equal(dis_query_check(q), DIS_EINVAL);
	assert_non_null(strstr(dis_query_errmsg(q), "excludes every"));
	dis__sql sql;
	dis__sql_init(&sql);
	assert_int_equal(dis__query_sql(q, &sql), DIS_EINVAL);
	dis__sql_free(&sql);
	dis_query_free(q);

	/* An id that none of the selected types declares. */
	assert_int_equal(dis_query_new(schema, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_filter_type(f, "Deposited"), 0);
	assert_int_equal(dis_filter_where_long(f, "owner", 1), 0);
	assert_int_equal(dis_query_check(q), DIS_EINVAL);
	assert_non_null(strstr(dis_query_errmsg(q), "declares"));
	dis_query_free(q);
}

/* An equality applies only to the types that declare the id. */
static void test_match_id_rule(void **state)
{
	dis_query *q;
	dis_filter *f;
	dis_event *o1 = opened("a1", 7), *o2 = opened("a2", 8);
	dis_event *d1 = deposited("a1"), *d2 = deposited("a2");
	dis_event *au = audited("0E2B7C4A-1111-4222-8333-444455556666");

	(void)state;
	assert_int_equal(dis_query_new(schema, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_filter_type(f, "Opened"), 0);
	assert_int_equal(dis_filter_type(f, "Deposited"), 0);
	assert_int_equal(dis_filter_where_string(f, "account_id", "a1"), 0);
	assert_int_equal(dis_filter_where_long(f, "owner", 7), 0);
	assert_int_equal(dis_query_check(q), 0);
	assert_true(dis_query_matches(q, o1));
	assert_false(dis_query_matches(q, o2));
	/* Deposited has no owner: only account_id applies to it. */
	assert_true(dis_query_matches(q, d1));
	assert_false(dis_query_matches(q, d2));
	assert_false(dis_query_matches(q, au));
	assert_true(dis_query_has_type(q, "Deposited"));
	assert_false(dis_query_has_type(q, "Audited"));
	dis_query_free(q);

	/* All types but excluded ones; uuid compared in canonical form. */
	assert_int_equal(dis_query_new(schema, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_filter_exclude(f, "Opened"), 0);
	assert_int_equal(
		dis_filter_where_uuid(f, "auditor",
				      "0e2b7c4a-1111-4222-8333-444455556666"),
		0);
	assert_int_equal(dis_query_check(q), 0);
	assert_false(dis_query_matches(q, o1));
	assert_true(dis_query_matches(q, d1));
	assert_true(dis_query_matches(q, au));
	dis_query_free(q);

	/* Union of two filters; a stream. */
	dis_query *a, *b;
	assert_int_equal(dis_query_new(schema, &a), 0);
	assert_int_equal(dis_query_add_filter(a, &f), 0);
	assert_int_equal(dis_filter_stream(f, "audit"), 0);
	assert_int_equal(dis_query_new(schema, &b), 0);
	assert_int_equal(dis_query_add_filter(b, &f), 0);
	assert_int_equal(dis_filter_type(f, "Opened"), 0);
	assert_int_equal(dis_filter_where_string(f, "account_id", "a2"), 0);
	assert_int_equal(dis_query_union(a, b), 0);
	assert_true(dis_query_matches(a, au));
	assert_true(dis_query_matches(a, o2));
	assert_false(dis_query_matches(a, o1));
	assert_false(dis_query_matches(a, d2));
	dis_query_free(a);
	dis_query_free(b);

	dis_event_free(o1);
	dis_event_free(o2);
	dis_event_free(d1);
	dis_event_free(d2);
	dis_event_free(au);
}

static void test_match_after(void **state)
{
	dis_query *q;
	dis_filter *f;
	dis_event *ev = deposited("a1");
	dis_position at = {100, 5};

	(void)state;
	dis__event_set_stored(ev, 5, at);
	assert_int_equal(dis_query_new(schema, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_filter_after(f, (dis_position){100, 4}), 0);
	assert_true(dis_query_matches(q, ev));
	dis_query_free(q);
	assert_int_equal(dis_query_new(schema, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_filter_after(f, at), 0);
	assert_false(dis_query_matches(q, ev));
	dis_query_free(q);
	dis_event_free(ev);
}

/* Every value is a parameter; identifiers are quoted. */
static void test_sql_binds_values(void **state)
{
	const char *evil = "x'); DROP TABLE event; --";
	dis_query *q;
	dis_filter *f;
	dis__sql sql;
	const char *text;

	(void)state;
	assert_int_equal(dis_query_new(schema, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_filter_type(f, "Opened"), 0);
	assert_int_equal(dis_filter_type(f, "Deposited"), 0);
	assert_int_equal(dis_filter_where_string(f, "account_id", evil), 0);
	assert_int_equal(dis_filter_where_long(f, "owner", 3), 0);
	assert_int_equal(dis_filter_after(f, (dis_position){9, 2}), 0);
	dis__sql_init(&sql);
	assert_int_equal(dis__query_sql(q, &sql), 0);
	text = dis__buf_cstr(&sql.text);
	assert_null(strstr(text, "DROP"));
	assert_null(strstr(text, "'"));
	assert_non_null(strstr(text, "\"account_id\" = $"));
	/* Opened (account_id, owner) and Deposited (account_id) differ in
	 * which equalities apply: two groups. */
	assert_non_null(strstr(text, " OR "));
	int found = 0;
	for (int i = 0; i < sql.nparams; i++)
		found += strcmp(sql.params[i], evil) == 0;
	assert_int_equal(found, 2);
	dis__sql_free(&sql);
	dis_query_free(q);
}

static void test_describe_canonical(void **state)
{
	dis_query *a, *b;
	dis_filter *f;
	char *ta, *tb;

	(void)state;
	assert_int_equal(dis_query_new(schema, &a), 0);
	assert_int_equal(dis_query_add_filter(a, &f), 0);
	assert_int_equal(dis_filter_type(f, "Deposited"), 0);
	assert_int_equal(dis_filter_type(f, "Opened"), 0);
	assert_int_equal(dis_filter_where_string(f, "account_id", "a"), 0);
	assert_int_equal(dis_filter_where_long(f, "owner", 1), 0);
	assert_int_equal(dis_query_new(schema, &b), 0);
	assert_int_equal(dis_query_add_filter(b, &f), 0);
	assert_int_equal(dis_filter_where_long(f, "owner", 1), 0);
	assert_int_equal(dis_filter_type(f, "Opened"), 0);
	assert_int_equal(dis_filter_where_string(f, "account_id", "a"), 0);
	assert_int_equal(dis_filter_type(f, "Deposited"), 0);
	assert_int_equal(dis_query_describe(a, &ta), 0);
	assert_int_equal(dis_query_describe(b, &tb), 0);
	assert_string_equal(ta, tb);
	dis_free(tb);
	/* A different value gives a different text. */
	assert_int_equal(dis_query_add_filter(b, &f), 0);
	assert_int_equal(dis_filter_type(f, "Audited"), 0);
	assert_int_equal(dis_query_describe(b, &tb), 0);
	assert_string_not_equal(ta, tb);
	dis_free(ta);
	dis_free(tb);
	dis_query_free(a);
	dis_query_free(b);
}

/*
 * Values are escaped: a value holding the text's separators does not
 * describe like another query (the description keys cached states and
 * snapshots).
 */
static void test_describe_escapes_values(void **state)
{
	dis_query *a, *b;
	dis_filter *f;
	char *ta, *tb;

	(void)state;
	assert_int_equal(dis_query_new(schema, &a), 0);
	assert_int_equal(dis_query_add_filter(a, &f), 0);
	assert_int_equal(dis_filter_type(f, "Opened"), 0);
	assert_int_equal(dis_filter_where_string(f, "account_id", "a"), 0);
	assert_int_equal(dis_query_add_filter(a, &f), 0);
	assert_int_equal(dis_filter_type(f, "Opened"), 0);
	assert_int_equal(dis_filter_where_string(f, "account_id", "b"), 0);
	assert_int_equal(dis_query_new(schema, &b), 0);
	assert_int_equal(dis_query_add_filter(b, &f), 0);
	assert_int_equal(dis_filter_type(f, "Opened"), 0);
	assert_int_equal(
		dis_filter_where_string(f, "account_id",
					"a | types=Opened;where=account_id=b"),
		0);
	assert_int_equal(dis_query_describe(a, &ta), 0);
	assert_int_equal(dis_query_describe(b, &tb), 0);
	assert_string_not_equal(ta, tb);
	/* Each separator (and a backslash) after a backslash. */
	assert_non_null(strstr(tb, "account_id=a \\| types\\=Opened"));
	dis_free(ta);
	dis_free(tb);
	dis_query_free(a);
	dis_query_free(b);
}

static bool has_key(const int64_t *keys, size_t n, int64_t k)
{
	for (size_t i = 0; i < n; i++)
		if (keys[i] == k)
			return true;
	return false;
}

/* The query of account `account`'s deposits. */
static dis_query *deposits_of(const char *account)
{
	dis_query *q;
	dis_filter *f;

	assert_int_equal(dis_query_new(schema, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(dis_filter_type(f, "Deposited"), 0);
	assert_int_equal(dis_filter_where_string(f, "account_id", account), 0);
	return q;
}

/* A checker's exclusive key is among a matching writer's shared keys. */
static void test_lock_keys_meet(void **state)
{
	dis_query *q;
	dis_event *mine = deposited("a1"), *other = deposited("a2");
	int64_t *qk, *ek, *ok;
	size_t nq, ne, no;

	(void)state;
	q = deposits_of("a1");
	assert_int_equal(dis__query_lock_keys(q, &qk, &nq), 0);
	assert_int_equal(dis__event_lock_keys(mine, &ek, &ne), 0);
	assert_int_equal(dis__event_lock_keys(other, &ok, &no), 0);
	assert_int_equal(nq, 1);
	assert_true(has_key(ek, ne, qk[0]));
	assert_false(has_key(ok, no, qk[0]));
	free(qk);
	free(ek);
	free(ok);
	dis_query_free(q);
	dis_event_free(mine);
	dis_event_free(other);
}

/*
 * Lock keys are shared by every process appending to one store, of
 * whatever version: they must not change. Pinned to values computed
 * from their definition (the seeded FNV-1a + finalizer of type NUL id NUL
 * value, or of the type alone).
 */
static void test_lock_keys_stable(void **state)
{
	dis_query *q;
	dis_event *ev = deposited("a1");
	int64_t *qk, *ek;
	size_t nq, ne;

	(void)state;
	q = deposits_of("a1");
	assert_int_equal(dis__query_lock_keys(q, &qk, &nq), 0);
	assert_int_equal(nq, 1);
	assert_int_equal(qk[0], INT64_C(6068296284403033490));
	assert_int_equal(dis__event_lock_keys(ev, &ek, &ne), 0);
	assert_true(has_key(ek, ne, INT64_C(6068296284403033490)));
	assert_true(has_key(ek, ne, INT64_C(7293692999875980389)));
	free(qk);
	free(ek);
	dis_query_free(q);
	dis_event_free(ev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_builder_errors),
		cmocka_unit_test(test_match_id_rule),
		cmocka_unit_test(test_match_after),
		cmocka_unit_test(test_sql_binds_values),
		cmocka_unit_test(test_describe_canonical),
		cmocka_unit_test(test_describe_escapes_values),
		cmocka_unit_test(test_lock_keys_meet),
		cmocka_unit_test(test_lock_keys_stable),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
