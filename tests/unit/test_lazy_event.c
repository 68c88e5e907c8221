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
#include "serde-internal.h"
#include "../lazy_compare.h"

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

/* Numbers and booleans of every kind, behind every kind of field. */
static const char RICH[] =
	"[{\"type\":\"record\",\"name\":\"Rich\",\"fields\":["
	" {\"name\":\"s\",\"type\":\"string\"},"
	" {\"name\":\"arr\",\"type\":{\"type\":\"array\",\"items\":\"long\"}},"
	" {\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":\"string\"}},"
	" {\"name\":\"rec\",\"type\":{\"type\":\"record\",\"name\":\"In\","
	"  \"fields\":[{\"name\":\"a\",\"type\":\"int\"},"
	"  {\"name\":\"b\",\"type\":\"string\"}]}},"
	" {\"name\":\"fx\",\"type\":{\"type\":\"fixed\",\"name\":\"F3\","
	"  \"size\":3}},"
	" {\"name\":\"en\",\"type\":{\"type\":\"enum\",\"name\":\"E\","
	"  \"symbols\":[\"X\",\"Y\"]}},"
	" {\"name\":\"by\",\"type\":\"bytes\"},"
	" {\"name\":\"i\",\"type\":\"int\"},"
	" {\"name\":\"l\",\"type\":\"long\"},"
	" {\"name\":\"wide\",\"type\":\"long\"},"
	" {\"name\":\"f\",\"type\":\"float\"},"
	" {\"name\":\"d\",\"type\":\"double\"},"
	" {\"name\":\"t\",\"type\":\"boolean\"},"
	" {\"name\":\"ol\",\"type\":[\"null\",\"long\"]},"
	" {\"name\":\"on\",\"type\":[\"null\",\"long\"]},"
	" {\"name\":\"od\",\"type\":[\"double\",\"null\"]},"
	" {\"name\":\"os\",\"type\":[\"null\",\"string\"]},"
	" {\"name\":\"z\",\"type\":\"int\"}]}]";

static const char RICH_JSON[] =
	"{\"s\":\"h\\u00e9llo, a string longer than one varint byte of "
	"length: 0123456789012345678901234567890123456789012345678901234\","
	"\"arr\":[1,300,-5],\"m\":{\"k\":\"v\",\"k2\":\"\"},"
	"\"rec\":{\"a\":-1,\"b\":\"x\"},\"fx\":\"abc\",\"en\":\"Y\","
	"\"by\":\"\\u0000\\u00ff\",\"i\":-70000,\"l\":1099511627776,"
	"\"wide\":3000000000,\"f\":1.5,\"d\":-2.25,\"t\":true,"
	"\"ol\":42,\"on\":null,\"od\":0.5,\"os\":\"s\",\"z\":9}";

/* New undecoded events of the encoded RICH_JSON, in one view slot. */
typedef struct rich_views {
	dis_schema *schema;
	const dis__buf *bytes;
	dis_event *view;
} rich_views;

static dis_event *fresh(void *arg)
{
	rich_views *r = arg;
	char err[256];

	if (dis__event_decode_view(r->schema, r->schema, "Rich", r->bytes->data,
				   r->bytes->len, &r->view, &r->view, err,
				   sizeof(err)))
		return NULL;
	return r->view;
}

/*
 * Numbers, booleans, enums, strings, bytes and nulls of a not yet decoded
 * event are read from its bytes (dis__avro_field_read), with the results
 * and errors of the decoded event for every getter and field.
 */
static void test_numbers_in_place(void **state)
{
	static const char *const fields[] = {"s",  "arr", "m", "rec",    "fx",
					     "en", "by",  "i", "l",      "wide",
					     "f",  "d",   "t", "ol",     "on",
					     "od", "os",  "z", "missing"};
	dis_schema *rich = dt_schema(RICH);
	dis_event *eager, *view;
	const dis__scan_op *ops;
	dis__avro_field num;
	char err[256];
	dis__buf b;
	rich_views rv = {rich, &b, NULL};
	size_t n;
	int read = 0;

	(void)state;
	if (dis_event_from_json(rich, "Rich", RICH_JSON, &eager, err,
				sizeof(err)))
		fail_msg("%s", err);
	dis__buf_init(&b);
	assert_int_equal(dis__event_encode(eager, &b, err, sizeof(err)), 0);
	ops = dis__schema_type_plan(rich, dis__schema_type_index(rich, "Rich"),
				    &n);
	assert_int_equal(n, 18);
	for (size_t i = 0; i < n; i++)
		if (dis__avro_field_read(ops, n, i, b.data, b.len, &num) == 0)
			read++;
	/* all but arr m rec read in place (on: its null) */
	assert_int_equal(read, 15);
	for (size_t k = 0; k < sizeof(fields) / sizeof(*fields); k++) {
		const char *bad =
			lazy_getter_differs(eager, fields[k], fresh, &rv);

		if (bad)
			fail_msg("%s of %s differs", bad, fields[k]);
	}
	/*
	 * The values themselves, read in place on one event; then the cases
	 * that take the decoding path (which decodes the event).
	 */
	{
		int64_t l;
		int32_t i;
		double d;
		bool t;
		const char *str, *again;
		const void *bytes;
		size_t blen;

		assert_non_null(view = fresh(&rv));
		assert_int_equal(dis_event_get_int(view, "i", &i), 0);
		assert_int_equal(i, -70000);
		assert_int_equal(dis_event_get_long(view, "l", &l), 0);
		assert_int_equal(l, INT64_C(1099511627776));
		assert_int_equal(dis_event_get_double(view, "f", &d), 0);
		assert_true(d == 1.5);
		assert_int_equal(dis_event_get_double(view, "d", &d), 0);
		assert_true(d == -2.25);
		assert_int_equal(dis_event_get_boolean(view, "t", &t), 0);
		assert_true(t);
		assert_int_equal(dis_event_get_long(view, "ol", &l), 0);
		assert_int_equal(l, 42);
		assert_int_equal(dis_event_get_double(view, "od", &d), 0);
		assert_true(d == 0.5);
		assert_int_equal(dis_event_get_int(view, "z", &i), 0);
		assert_int_equal(i, 9);
		assert_int_equal(dis_event_get_string(view, "s", &str), 0);
		assert_non_null(strstr(str, "h\xc3\xa9llo"));
		assert_int_equal(dis_event_get_string(view, "s", &again), 0);
		assert_ptr_equal(str, again); /* copied once */
		assert_int_equal(dis_event_get_string(view, "en", &str), 0);
		assert_string_equal(str, "Y");
		assert_int_equal(dis_event_get_string(view, "os", &str), 0);
		assert_string_equal(str, "s");
		assert_int_equal(dis_event_get_bytes(view, "by", &bytes, &blen),
				 0);
		assert_int_equal(blen, 2); /* JSON code points 0-255: bytes */
		assert_memory_equal(bytes, "\x00\xff", 2);
		assert_int_equal(dis_event_get_bytes(view, "fx", &bytes, &blen),
				 0);
		assert_int_equal(blen, 3);
		assert_memory_equal(bytes, "abc", 3);
		assert_true(dis_event_is_null(view, "on"));
		assert_false(dis_event_is_null(view, "ol"));
		/* Decoding from here on. */
		assert_int_equal(dis_event_get_int(view, "wide", &i),
				 DIS_EINVAL);
		assert_int_equal(dis_event_get_long(view, "on", &l),
				 DIS_EINVAL);
		assert_int_equal(dis_event_get_string(view, "by", &str),
				 DIS_EINVAL);
		assert_int_equal(dis_event_get_long(view, "missing", &l),
				 DIS_ENOTFOUND);
		assert_int_equal(dis_event_get_long(view, "z", NULL),
				 DIS_EINVAL);
	}
	dis_event_free(rv.view);
	dis_event_free(eager);
	dis__buf_free(&b);
	dis_schema_free(rich);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_free_undecoded),
		cmocka_unit_test(test_getters),
		cmocka_unit_test(test_copy_equal_json),
		cmocka_unit_test(test_set),
		cmocka_unit_test(test_corrupt),
		cmocka_unit_test(test_numbers_in_place),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
