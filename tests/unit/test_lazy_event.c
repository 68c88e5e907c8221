/*
 * Events decoded on first use (the store's reads): the bytes are checked
 * at once, a corrupt payload is refused before any event exists, and
 * every operation on a not yet decoded event behaves as on a decoded one.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "testutil.h"
#include "core-internal.h"

static const char SCHEMA[] =
	"[{\"type\":\"record\",\"name\":\"Added\",\"fields\":["
	" {\"name\":\"cart_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"note\",\"type\":[\"null\",\"string\"],\"default\":null},"
	" {\"name\":\"qty\",\"type\":\"long\"}]}]";

static dis_schema *schema;
static dis__buf bytes;

static int setup(void **state)
{
	dis_event *ev;
	char err[256];

	(void)state;
	schema = dt_schema(SCHEMA);
	assert_int_equal(dis_event_from_json(schema, "Added",
					     "{\"cart_id\": \"c1\", \"note\": "
					     "\"hi\", \"qty\": 7}",
					     &ev, err, sizeof(err)),
			 0);
	dis__buf_init(&bytes);
	assert_int_equal(dis__event_encode(ev, &bytes, err, sizeof(err)), 0);
	dis_event_free(ev);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	dis__buf_free(&bytes);
	dis_schema_free(schema);
	return 0;
}

static dis_event *lazy(void)
{
	dis_event *ev = NULL;
	char err[256];

	assert_int_equal(dis__event_decode_view(schema, schema, "Added",
						bytes.data, bytes.len, NULL,
						&ev, err, sizeof(err)),
			 0);
	return ev;
}

/* Never decoded: freed without a leak (ASan), type known. */
static void test_free_undecoded(void **state)
{
	dis_event *ev = lazy();

	(void)state;
	assert_string_equal(dis_event_type(ev), "Added");
	dis_event_free(ev);
}

static void test_getters(void **state)
{
	dis_event *ev = lazy();
	const char *s;
	int64_t q;
	dis__idval v;

	(void)state;
	assert_int_equal(dis_event_get_string(ev, "cart_id", &s), 0);
	assert_string_equal(s, "c1");
	assert_int_equal(dis_event_get_long(ev, "qty", &q), 0);
	assert_int_equal(q, 7);
	assert_int_equal(dis__event_idval(ev, 0, &v), 0);
	assert_true(v.present);
	assert_string_equal(v.str, "c1");
	dis_event_free(ev);
}

/* A copy of an undecoded event is an undecoded event, equal to it. */
static void test_copy_equal_json(void **state)
{
	dis_event *ev = lazy(), *copy = NULL, *eager = NULL;
	char *a = NULL, *b = NULL, err[256];

	(void)state;
	assert_int_equal(dis_event_copy(ev, &copy), 0);
	assert_true(dis_event_equal(ev, copy));
	assert_int_equal(dis_event_to_json(ev, &a), 0);
	assert_int_equal(dis_event_to_json(copy, &b), 0);
	assert_string_equal(a, b);
	assert_non_null(strstr(a, "\"hi\""));
	assert_int_equal(dis__event_decode(schema, schema, "Added", bytes.data,
					   bytes.len, &eager, err, sizeof(err)),
			 0);
	assert_true(dis_event_equal(eager, ev));
	dis_free(a);
	dis_free(b);
	dis_event_free(eager);
	dis_event_free(copy);
	dis_event_free(ev);
}

/* Setting a field decodes first; the rest is kept. */
static void test_set(void **state)
{
	dis_event *ev = lazy();
	dis__buf again;
	const char *s;
	char err[256];

	(void)state;
	assert_int_equal(dis_event_set_long(ev, "qty", 9), 0);
	assert_int_equal(dis_event_get_string(ev, "note", &s), 0);
	assert_string_equal(s, "hi");
	dis__buf_init(&again);
	assert_int_equal(dis__event_encode(ev, &again, err, sizeof(err)), 0);
	assert_true(again.len == bytes.len);
	dis__buf_free(&again);
	dis_event_free(ev);
}

/* Corrupt bytes are refused at once, as by the eager decode. */
static void test_corrupt(void **state)
{
	unsigned char bad[64];
	dis_event *ev = NULL;
	char err[256] = "";

	(void)state;
	memcpy(bad, bytes.data, bytes.len);
	bad[0] = 0x7f; /* a string length past the end */
	assert_int_equal(dis__event_decode_view(schema, schema, "Added", bad,
						bytes.len, NULL, &ev, err,
						sizeof(err)),
			 DIS_ESERDE);
	assert_null(ev);
	assert_non_null(strstr(err, "corrupt"));
	assert_int_equal(dis__event_decode_view(schema, schema, "Added",
						bytes.data, bytes.len - 1, NULL,
						&ev, err, sizeof(err)),
			 DIS_ESERDE);
	assert_int_equal(dis__event_decode_view(schema, schema, "Nope",
						bytes.data, bytes.len, NULL,
						&ev, err, sizeof(err)),
			 DIS_ESERDE);
	assert_null(ev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_free_undecoded),
		cmocka_unit_test(test_getters),
		cmocka_unit_test(test_copy_equal_json),
		cmocka_unit_test(test_set),
		cmocka_unit_test(test_corrupt),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
