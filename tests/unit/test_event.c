/* Events: defaults, setters and getters, JSON in and out, copies. */
#include "testutil.h"
#include "core-internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <avro.h>

static const char *SCHEMA =
	"[{\"type\":\"record\",\"name\":\"Deposited\",\"fields\":["
	" {\"name\":\"account_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"owner\",\"type\":{\"type\":\"string\","
	"  \"logicalType\":\"uuid\"},\"disintegrate.id\":true},"
	" {\"name\":\"referrer\",\"type\":[\"null\",\"long\"],\"default\":null,"
	"  \"disintegrate.id\":true},"
	" {\"name\":\"amount\",\"type\":\"long\"},"
	" {\"name\":\"count\",\"type\":\"int\",\"default\":3},"
	" {\"name\":\"ratio\",\"type\":\"double\"},"
	" {\"name\":\"f\",\"type\":\"float\",\"default\":1.5},"
	" {\"name\":\"flag\",\"type\":\"boolean\",\"default\":true},"
	" {\"name\":\"note\",\"type\":[\"null\",\"string\"],\"default\":null},"
	" {\"name\":\"memo\",\"type\":[\"string\",\"null\"],\"default\":\"hi\"},"
	" {\"name\":\"data\",\"type\":\"bytes\",\"default\":\"\\u00ff\\u0000A\"},"
	" {\"name\":\"code\",\"type\":{\"type\":\"fixed\",\"name\":\"Code\","
	"  \"size\":4}},"
	" {\"name\":\"kind\",\"type\":{\"type\":\"enum\",\"name\":\"Kind\","
	"  \"symbols\":[\"CASH\",\"CARD\"]},\"default\":\"CARD\"},"
	" {\"name\":\"tags\",\"type\":{\"type\":\"array\",\"items\":\"string\"},"
	"  \"default\":[\"a\",\"b\"]},"
	" {\"name\":\"attrs\",\"type\":{\"type\":\"map\",\"values\":\"long\"},"
	"  \"default\":{}},"
	" {\"name\":\"money\",\"type\":{\"type\":\"record\",\"name\":\"Money\","
	"  \"fields\":[{\"name\":\"cents\",\"type\":\"long\"},"
	"   {\"name\":\"currency\",\"type\":\"string\",\"default\":\"EUR\"}]}},"
	" {\"name\":\"either\",\"type\":[\"null\",\"int\",\"string\",\"Money\"],"
	"  \"default\":null}]},"
	" {\"type\":\"record\",\"name\":\"Closed\",\"fields\":["
	" {\"name\":\"account_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"fee\",\"type\":\"Money\"}]}]";

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

static dis_event *new_event(const char *type)
{
	dis_event *ev = NULL;

	assert_int_equal(dis_event_new(schema, type, &ev), 0);
	return ev;
}

static void test_defaults(void **state)
{
	dis_event *ev = new_event("Deposited");
	const char *s;
	const void *b;
	size_t len;
	int64_t l;
	int32_t i;
	double d;
	bool flag;
	char *json;

	(void)state;
	assert_string_equal(dis_event_type(ev), "Deposited");
	assert_ptr_equal(dis_event_schema(ev), schema);
	assert_int_equal(dis_event_id(ev), 0);
	assert_int_equal(dis_event_position(ev).tx, 0);
	assert_int_equal(dis__event_type_index(ev), 0);
	assert_int_equal(dis_event_get_string(ev, "account_id", &s), 0);
	assert_string_equal(s, "");
	assert_int_equal(dis_event_get_long(ev, "amount", &l), 0);
	assert_int_equal(l, 0);
	assert_int_equal(dis_event_get_int(ev, "count", &i), 0);
	assert_int_equal(i, 3);
	assert_int_equal(dis_event_get_double(ev, "f", &d), 0);
	assert_true(d == 1.5);
	assert_int_equal(dis_event_get_boolean(ev, "flag", &flag), 0);
	assert_true(flag);
	assert_true(dis_event_is_null(ev, "note"));
	assert_true(dis_event_is_null(ev, "referrer"));
	assert_false(dis_event_is_null(ev, "memo"));
	assert_int_equal(dis_event_get_string(ev, "memo", &s), 0);
	assert_string_equal(s, "hi");
	assert_int_equal(dis_event_get_bytes(ev, "data", &b, &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(b,
			    "\xff\x00"
			    "A",
			    3);
	assert_int_equal(dis_event_get_bytes(ev, "code", &b, &len), 0);
	assert_int_equal(len, 4);
	assert_memory_equal(b, "\0\0\0\0", 4);
	assert_int_equal(dis_event_get_string(ev, "kind", &s), 0);
	assert_string_equal(s, "CARD");
	assert_int_equal(dis_event_data_json(ev, &json), 0);
	assert_non_null(strstr(json, "\"tags\":[\"a\",\"b\"]"));
	assert_non_null(strstr(json, "\"money\":{\"cents\":0,"
				     "\"currency\":\"EUR\"}"));
	assert_non_null(strstr(json, "\"either\":null"));
	dis_free(json);
	dis_event_free(ev);
	dis_event_free(NULL);

	assert_int_equal(dis_event_new(schema, "Nope", &ev), DIS_ENOTFOUND);
}

static void test_setters_getters(void **state)
{
	dis_event *ev = new_event("Deposited");
	const char *s;
	const void *b;
	size_t len;
	int64_t l;
	int32_t i;
	double d;
	bool flag;

	(void)state;
	assert_int_equal(dis_event_set_string(ev, "account_id", "acc-1"), 0);
	assert_int_equal(dis_event_get_string(ev, "account_id", &s), 0);
	assert_string_equal(s, "acc-1");

	assert_int_equal(dis_event_set_long(ev, "amount", INT64_MIN), 0);
	assert_int_equal(dis_event_get_long(ev, "amount", &l), 0);
	assert_true(l == INT64_MIN);
	assert_int_equal(dis_event_get_int(ev, "amount", &i), DIS_EINVAL);
	assert_int_equal(dis_event_set_int(ev, "amount", -7), 0);
	assert_int_equal(dis_event_get_int(ev, "amount", &i), 0);
	assert_int_equal(i, -7);

	/* int fields widen to long; set_long on an int checks the range */
	assert_int_equal(dis_event_set_int(ev, "count", 42), 0);
	assert_int_equal(dis_event_get_long(ev, "count", &l), 0);
	assert_int_equal(l, 42);
	assert_int_equal(dis_event_set_long(ev, "count", 1LL << 40),
			 DIS_EINVAL);
	assert_int_equal(dis_event_set_long(ev, "count", -5), 0);
	assert_int_equal(dis_event_get_int(ev, "count", &i), 0);
	assert_int_equal(i, -5);

	assert_int_equal(dis_event_set_double(ev, "ratio", 0.25), 0);
	assert_int_equal(dis_event_get_double(ev, "ratio", &d), 0);
	assert_true(d == 0.25);
	assert_int_equal(dis_event_set_double(ev, "f", 2.5), 0);
	assert_int_equal(dis_event_get_double(ev, "f", &d), 0);
	assert_true(d == 2.5);
	assert_int_equal(dis_event_set_double(ev, "f", 1e300), DIS_EINVAL);

	assert_int_equal(dis_event_set_boolean(ev, "flag", false), 0);
	assert_int_equal(dis_event_get_boolean(ev, "flag", &flag), 0);
	assert_false(flag);

	assert_int_equal(dis_event_set_bytes(ev, "data", "\0\1\2", 3), 0);
	assert_int_equal(dis_event_get_bytes(ev, "data", &b, &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(b, "\0\1\2", 3);
	assert_int_equal(dis_event_set_bytes(ev, "data", NULL, 0), 0);
	assert_int_equal(dis_event_get_bytes(ev, "data", &b, &len), 0);
	assert_int_equal(len, 0);
	assert_int_equal(dis_event_set_bytes(ev, "code", "abcd", 4), 0);
	assert_int_equal(dis_event_set_bytes(ev, "code", "abc", 3), DIS_EINVAL);

	assert_int_equal(dis_event_set_string(ev, "kind", "CASH"), 0);
	assert_int_equal(dis_event_get_string(ev, "kind", &s), 0);
	assert_string_equal(s, "CASH");
	assert_int_equal(dis_event_set_string(ev, "kind", "GOLD"), DIS_EINVAL);

	/* nullable unions, both orders */
	assert_int_equal(dis_event_set_string(ev, "note", "n"), 0);
	assert_false(dis_event_is_null(ev, "note"));
	assert_int_equal(dis_event_get_string(ev, "note", &s), 0);
	assert_string_equal(s, "n");
	assert_int_equal(dis_event_set_null(ev, "note"), 0);
	assert_true(dis_event_is_null(ev, "note"));
	assert_int_equal(dis_event_get_string(ev, "note", &s), DIS_EINVAL);
	assert_int_equal(dis_event_set_null(ev, "memo"), 0);
	assert_true(dis_event_is_null(ev, "memo"));
	assert_int_equal(dis_event_set_long(ev, "referrer", 9), 0);
	assert_int_equal(dis_event_get_long(ev, "referrer", &l), 0);
	assert_int_equal(l, 9);
	/* a wider union: the setter's own type wins */
	assert_int_equal(dis_event_set_int(ev, "either", 5), 0);
	assert_int_equal(dis_event_get_int(ev, "either", &i), 0);
	assert_int_equal(dis_event_set_string(ev, "either", "s"), 0);
	assert_int_equal(dis_event_get_string(ev, "either", &s), 0);
	assert_string_equal(s, "s");

	/* type errors */
	assert_int_equal(dis_event_set_null(ev, "amount"), DIS_EINVAL);
	assert_int_equal(dis_event_set_string(ev, "amount", "5"), DIS_EINVAL);
	assert_int_equal(dis_event_set_long(ev, "account_id", 5), DIS_EINVAL);
	assert_int_equal(dis_event_set_boolean(ev, "amount", true), DIS_EINVAL);
	assert_int_equal(dis_event_set_double(ev, "amount", 1.0), DIS_EINVAL);
	assert_int_equal(dis_event_set_bytes(ev, "note", "x", 1), DIS_EINVAL);
	assert_int_equal(dis_event_get_string(ev, "amount", &s), DIS_EINVAL);
	assert_int_equal(dis_event_get_long(ev, "ratio", &l), DIS_EINVAL);
	assert_int_equal(dis_event_get_boolean(ev, "amount", &flag),
			 DIS_EINVAL);
	assert_int_equal(dis_event_get_double(ev, "amount", &d), DIS_EINVAL);
	assert_int_equal(dis_event_set_string(ev, "account_id", "\xff"),
			 DIS_EINVAL);
	assert_int_equal(dis_event_set_string(ev, "nope", "x"), DIS_ENOTFOUND);
	assert_int_equal(dis_event_get_long(ev, "nope", &l), DIS_ENOTFOUND);
	assert_false(dis_event_is_null(ev, "nope"));

	/* uuid ids: checked and lowercased */
	assert_int_equal(dis_event_set_string(ev, "owner", "not-a-uuid"),
			 DIS_EINVAL);
	assert_int_equal(
		dis_event_set_string(ev, "owner",
				     "123E4567-E89B-12D3-A456-426614174000"),
		0);
	assert_int_equal(dis_event_get_string(ev, "owner", &s), 0);
	assert_string_equal(s, "123e4567-e89b-12d3-a456-426614174000");
	dis_event_free(ev);
}

static void test_idval(void **state)
{
	dis_event *ev = new_event("Deposited"), *closed = new_event("Closed");
	int acc = dis_schema_id_index(schema, "account_id");
	int owner = dis_schema_id_index(schema, "owner");
	int ref = dis_schema_id_index(schema, "referrer");
	dis__idval v;

	(void)state;
	assert_int_equal(dis_event_set_string(ev, "account_id", "a1"), 0);
	assert_int_equal(dis__event_idval(ev, acc, &v), 0);
	assert_true(v.present);
	assert_int_equal(v.type, DIS_ID_STRING);
	assert_string_equal(v.str, "a1");

	/* an unset uuid is not valid uuid text */
	assert_int_equal(dis__event_idval(ev, owner, &v), DIS_EINVAL);
	assert_int_equal(
		dis_event_set_string(ev, "owner",
				     "123e4567-e89b-12d3-a456-426614174000"),
		0);
	assert_int_equal(dis__event_idval(ev, owner, &v), 0);
	assert_true(v.present);
	assert_int_equal(v.type, DIS_ID_UUID);
	assert_string_equal(v.str, "123e4567-e89b-12d3-a456-426614174000");

	assert_int_equal(dis__event_idval(ev, ref, &v), 0);
	assert_false(v.present);
	assert_int_equal(v.type, DIS_ID_LONG);
	assert_int_equal(dis_event_set_long(ev, "referrer", -3), 0);
	assert_int_equal(dis__event_idval(ev, ref, &v), 0);
	assert_true(v.present);
	assert_int_equal(v.num, -3);

	/* a type that does not declare the id: absent */
	assert_int_equal(dis__event_idval(closed, ref, &v), 0);
	assert_false(v.present);
	assert_int_equal(dis__event_idval(closed, 99, &v), DIS_EINVAL);
	dis_event_free(ev);
	dis_event_free(closed);
}

static const char *FULL =
	"{\"account_id\":\"x'); DROP TABLE event; --\","
	"\"owner\":\"00000000-0000-0000-0000-00000000000A\","
	"\"referrer\":12,\"amount\":-9007199254740993,\"count\":-2147483648,"
	"\"ratio\":0.1,\"f\":\"NaN\",\"flag\":false,\"note\":\"caf\\u00e9 \\\"q\\\"\","
	"\"memo\":null,\"data\":\"\\u0000\\u00ff\\u007f\","
	"\"code\":\"ab\\u00e9\\u0001\",\"kind\":\"CASH\","
	"\"tags\":[],\"attrs\":{\"k\":1,\"z\":-1},"
	"\"money\":{\"cents\":5},\"either\":{\"cents\":1,\"currency\":\"USD\"}}";

static void test_json_round_trip(void **state)
{
	char err[DIS_ERRMSG_LEN];
	dis_event *ev = NULL, *back = NULL;
	char *json, *json2;
	const char *s;
	const void *b;
	size_t len;
	double d;

	(void)state;
	assert_int_equal(dis_event_from_json(schema, "Deposited", FULL, &ev,
					     err, sizeof(err)),
			 0);
	assert_int_equal(dis_event_get_string(ev, "account_id", &s), 0);
	assert_string_equal(s, "x'); DROP TABLE event; --");
	assert_int_equal(dis_event_get_string(ev, "owner", &s), 0);
	assert_string_equal(s, "00000000-0000-0000-0000-00000000000a");
	assert_int_equal(dis_event_get_double(ev, "f", &d), 0);
	assert_true(isnan(d));
	assert_int_equal(dis_event_get_bytes(ev, "data", &b, &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(b, "\x00\xff\x7f", 3);
	assert_int_equal(dis_event_get_bytes(ev, "code", &b, &len), 0);
	assert_memory_equal(b, "ab\xe9\x01", 4);
	assert_int_equal(dis_event_get_string(ev, "note", &s), 0);
	assert_string_equal(s, "caf\xc3\xa9 \"q\"");

	assert_int_equal(dis_event_data_json(ev, &json), 0);
	assert_non_null(strstr(json, "\"account_id\":\"x'); DROP TABLE event; "
				     "--\""));
	assert_non_null(strstr(json, "\"f\":\"NaN\""));
	assert_non_null(strstr(json, "\"money\":{\"cents\":5,"
				     "\"currency\":\"EUR\"}"));
	assert_int_equal(dis_event_from_json(schema, "Deposited", json, &back,
					     err, sizeof(err)),
			 0);
	assert_int_equal(dis_event_data_json(back, &json2), 0);
	assert_string_equal(json, json2);
	/* NaN != NaN: compare after making f comparable */
	assert_int_equal(dis_event_set_double(ev, "f", 1), 0);
	assert_int_equal(dis_event_set_double(back, "f", 1), 0);
	assert_true(dis_event_equal(ev, back));
	dis_free(json);
	dis_free(json2);

	dis__event_set_stored(ev, 42, (dis_position){7, 42});
	assert_int_equal(dis_event_id(ev), 42);
	assert_int_equal(dis_event_position(ev).tx, 7);
	assert_int_equal(dis_event_to_json(ev, &json), 0);
	assert_memory_equal(json,
			    "{\"id\":42,\"type\":\"Deposited\","
			    "\"data\":{\"account_id\":",
			    strlen("{\"id\":42,\"type\":\"Deposited\","
				   "\"data\":{\"account_id\":"));
	dis_free(json);
	dis_event_free(ev);
	dis_event_free(back);
}

struct bad_json {
	const char *json;
	const char *expect;
};

/*
 * A union's value renders plain when it reads back as its branch, else in
 * Avro's tagged form, which reads back too: a double of ["float",
 * "double"] is not rounded to a float, NaN of ["string","double"] is not
 * the string "NaN", a map holding one key named like a branch stays a map.
 */
static void test_json_unions_read_back(void **state)
{
	static const char *const schema_json =
		"[{\"type\":\"record\",\"name\":\"U\",\"fields\":["
		"{\"name\":\"k\",\"type\":\"string\",\"disintegrate.id\":true},"
		"{\"name\":\"fd\",\"type\":[\"float\",\"double\"]},"
		"{\"name\":\"sd\",\"type\":[\"string\",\"double\"]},"
		"{\"name\":\"sb\",\"type\":[\"string\",\"bytes\"]},"
		"{\"name\":\"md\",\"type\":[{\"type\":\"map\","
		"\"values\":\"long\"},\"long\"]},"
		"{\"name\":\"opt\",\"type\":[\"null\",\"string\"]},"
		"{\"name\":\"il\",\"type\":[\"int\",\"long\"]},"
		"{\"name\":\"il2\",\"type\":[\"int\",\"long\"]},"
		"{\"name\":\"r\",\"type\":[{\"type\":\"record\",\"name\":\"A\","
		"\"fields\":[{\"name\":\"x\",\"type\":\"int\",\"default\":1}]},"
		"{\"type\":\"record\",\"name\":\"B\",\"fields\":["
		"{\"name\":\"x\",\"type\":\"int\"}]}]}]}]";
	static const char *const tagged[] = {
		"\"fd\":{\"double\":0.10000000000000001}",
		"\"sd\":{\"double\":\"NaN\"}",
		"\"sb\":{\"bytes\":\"\\u0000x\"}",
		"\"md\":{\"map\":{\"long\":3}}",
		"\"opt\":\"x\"",
		"\"il\":{\"long\":5}",
		"\"il2\":7",
		"\"r\":{\"B\":{\"x\":2}}"};
	char err[DIS_ERRMSG_LEN], *json, *json2;
	dis_schema *u;
	dis_event *ev, *back;

	(void)state;
	assert_int_equal(dis_schema_parse(schema_json, &u, err, sizeof(err)),
			 0);
	assert_int_equal(
		dis_event_from_json(
			u, "U",
			"{\"k\":\"a\",\"fd\":{\"double\":0.1},"
			"\"sd\":{\"double\":\"NaN\"},\"sb\":{\"bytes\":\"\\u0000x\"},"
			"\"md\":{\"map\":{\"long\":3}},\"opt\":\"x\","
			"\"il\":{\"long\":5},\"il2\":7,\"r\":{\"B\":{\"x\":2}}}",
			&ev, err, sizeof(err)),
		0);
	assert_int_equal(dis_event_data_json(ev, &json), 0);
	for (size_t i = 0; i < sizeof(tagged) / sizeof(tagged[0]); i++)
		if (!strstr(json, tagged[i]))
			fail_msg("%s not in %s", tagged[i], json);
	assert_int_equal(
		dis_event_from_json(u, "U", json, &back, err, sizeof(err)), 0);
	assert_int_equal(dis_event_data_json(back, &json2), 0);
	assert_string_equal(json, json2);
	dis_free(json);
	dis_free(json2);
	dis_event_free(back);
	dis_event_free(ev);

	/* The tagged form's value must fit its branch. */
	assert_int_equal(dis_event_from_json(
				 u, "U",
				 "{\"k\":\"a\",\"fd\":{\"double\":\"zz\"},"
				 "\"sd\":1,\"sb\":\"q\",\"md\":3,\"opt\":null,"
				 "\"il\":5,\"il2\":7,\"r\":{\"x\":2}}",
				 &ev, err, sizeof(err)),
			 DIS_ESERDE);
	assert_non_null(strstr(err, "field fd"));
	dis_schema_free(u);
}

static void test_json_errors(void **state)
{
	static const struct bad_json bad[] = {
		{"{\"amount\":1,\"ratio\":1,\"code\":\"abcd\","
		 "\"money\":{\"cents\":1},\"bogus\":1}",
		 "unknown field \"bogus\""},
		{"{\"amount\":1,\"ratio\":1,\"code\":\"abcd\"}",
		 "field account_id: missing, and the field has no default"},
		{"{\"account_id\":\"a\",\"owner\":\"00000000-0000-0000-0000-"
		 "000000000000\",\"amount\":\"1\",\"ratio\":1,"
		 "\"code\":\"abcd\",\"money\":{\"cents\":1}}",
		 "field amount: expected a long, got a string"},
		{"{\"account_id\":\"a\",\"owner\":\"00000000-0000-0000-0000-"
		 "000000000000\",\"amount\":1,\"count\":2147483648,\"ratio\":1,"
		 "\"code\":\"abcd\",\"money\":{\"cents\":1}}",
		 "field count: 2147483648 is out of the range of an int"},
		{"{\"account_id\":\"a\",\"owner\":\"00000000-0000-0000-0000-"
		 "000000000000\",\"amount\":1,\"ratio\":1,"
		 "\"code\":\"abc\",\"money\":{\"cents\":1}}",
		 "field code: fixed Code holds 4 bytes, got 3"},
		{"{\"account_id\":\"a\",\"owner\":\"00000000-0000-0000-0000-"
		 "000000000000\",\"amount\":1,\"ratio\":1,\"kind\":\"GOLD\","
		 "\"code\":\"abcd\",\"money\":{\"cents\":1}}",
		 "field kind: \"GOLD\" is not a symbol of enum Kind"},
		{"{\"account_id\":\"a\",\"owner\":\"00000000-0000-0000-0000-"
		 "000000000000\",\"amount\":1,\"ratio\":1,"
		 "\"code\":\"abcd\",\"money\":{\"cents\":1.5}}",
		 "field money.cents: expected a long, got a number"},
		{"{\"account_id\":\"a\",\"owner\":\"00000000-0000-0000-0000-"
		 "000000000000\",\"amount\":1,\"ratio\":1,\"tags\":[\"a\",2],"
		 "\"code\":\"abcd\",\"money\":{\"cents\":1}}",
		 "field tags[1]: expected a string, got an integer"},
		{"{\"account_id\":\"a\",\"owner\":\"00000000-0000-0000-0000-"
		 "000000000000\",\"amount\":1,\"ratio\":1,\"note\":5,"
		 "\"code\":\"abcd\",\"money\":{\"cents\":1}}",
		 "field note: expected a string, got an integer"},
		{"{\"account_id\":\"a\",\"owner\":\"00000000-0000-0000-0000-"
		 "000000000000\",\"amount\":1,\"ratio\":1,\"either\":true,"
		 "\"code\":\"abcd\",\"money\":{\"cents\":1}}",
		 "field either: a boolean fits none of the union's 4 types"},
		{"{\"account_id\":\"a\",\"owner\":\"00000000-0000-0000-0000-"
		 "000000000000\",\"amount\":1,\"ratio\":1,\"data\":\"\\u0100\","
		 "\"code\":\"abcd\",\"money\":{\"cents\":1}}",
		 "field data: bytes are written as a string of characters"},
		{"{\"account_id\":\"a\",\"owner\":\"nope\",\"amount\":1,"
		 "\"ratio\":1,\"code\":\"abcd\",\"money\":{\"cents\":1}}",
		 "field owner: \"nope\" is not a uuid"},
		{"{\"account_id\":", "invalid JSON: line 1"},
		{"[1]", "must be a JSON object"},
	};
	char err[DIS_ERRMSG_LEN];
	dis_event *ev;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		ev = NULL;
		err[0] = '\0';
		assert_int_equal(dis_event_from_json(schema, "Deposited",
						     bad[i].json, &ev, err,
						     sizeof(err)),
				 DIS_ESERDE);
		assert_null(ev);
		if (!strstr(err, bad[i].expect))
			fail_msg("case %zu: message \"%s\" lacks \"%s\"", i,
				 err, bad[i].expect);
	}
	assert_int_equal(dis_event_from_json(schema, "Nope", "{}", &ev, err,
					     sizeof(err)),
			 DIS_ENOTFOUND);
}

static void test_copy_equal(void **state)
{
	dis_event *a = new_event("Deposited"), *b = NULL, *c;

	(void)state;
	assert_int_equal(dis_event_set_string(a, "account_id", "a"), 0);
	assert_int_equal(dis_event_set_string(a, "note", "kept"), 0);
	dis__event_set_stored(a, 5, (dis_position){3, 5});
	assert_int_equal(dis_event_copy(a, &b), 0);
	assert_true(dis_event_equal(a, b));
	assert_int_equal(dis_event_id(b), 5);
	assert_int_equal(dis_event_position(b).tx, 3);
	assert_int_equal(dis_event_set_string(b, "note", "changed"), 0);
	assert_false(dis_event_equal(a, b));
	dis_event_free(a);
	/* the copy does not share the original's storage */
	assert_int_equal(dis_event_set_null(b, "note"), 0);
	c = new_event("Closed");
	assert_false(dis_event_equal(b, c));
	assert_non_null(dis_event_avro(c));
	dis_event_free(b);
	dis_event_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_setters_getters),
		cmocka_unit_test(test_idval),
		cmocka_unit_test(test_json_round_trip),
		cmocka_unit_test(test_json_unions_read_back),
		cmocka_unit_test(test_json_errors),
		cmocka_unit_test(test_copy_equal),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
