/* Event schema loading and validation, without a database. */
#include "testutil.h"
#include "core-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *BANK =
	"[{\"type\":\"record\",\"name\":\"Opened\",\"namespace\":\"bank\","
	"  \"disintegrate.streams\":[\"account\"],\"fields\":["
	"  {\"name\":\"account_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	"  {\"name\":\"owner\",\"type\":{\"type\":\"string\","
	"   \"logicalType\":\"uuid\"},\"disintegrate.id\":true},"
	"  {\"name\":\"branch\",\"type\":\"long\",\"disintegrate.id\":true},"
	"  {\"name\":\"note\",\"type\":\"string\",\"disintegrate.id\":false}]},"
	" {\"type\":\"record\",\"name\":\"Deposited\","
	"  \"disintegrate.streams\":[\"account\",\"money\"],\"fields\":["
	"  {\"name\":\"account_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	"  {\"name\":\"amount\",\"type\":\"long\"},"
	"  {\"name\":\"referrer\",\"type\":[\"null\",\"long\"],"
	"   \"default\":null,\"disintegrate.id\":true}]},"
	" {\"type\":\"record\",\"name\":\"Audited\",\"fields\":["
	"  {\"name\":\"auditor\",\"type\":[{\"type\":\"string\","
	"   \"logicalType\":\"uuid\"},\"null\"],\"disintegrate.id\":true}]}]";

static dis_schema *parse_ok(const char *json)
{
	char err[DIS_ERRMSG_LEN] = "";
	dis_schema *s = NULL;
	int rc = dis_schema_parse(json, &s, err, sizeof(err));

	if (rc)
		fail_msg("schema did not load (%d): %s", rc, err);
	return s;
}

static void test_types_ids_streams(void **state)
{
	const char *const *types;
	dis_schema *s = parse_ok(BANK);
	const int *ids;
	size_t n;

	(void)state;
	assert_string_equal(dis_schema_json(s), BANK);
	assert_int_equal(dis_schema_type_count(s), 3);
	/* the type is the record name without its namespace */
	assert_string_equal(dis_schema_type_name(s, 0), "Opened");
	assert_string_equal(dis_schema_type_name(s, 1), "Deposited");
	assert_string_equal(dis_schema_type_name(s, 2), "Audited");
	assert_null(dis_schema_type_name(s, 3));
	assert_true(dis_schema_has_type(s, "Deposited"));
	assert_false(dis_schema_has_type(s, "bank.Opened"));
	assert_int_equal(dis__schema_type_index(s, "Audited"), 2);
	assert_int_equal(dis__schema_type_index(s, "Nope"), -1);

	assert_int_equal(dis_schema_id_count(s), 5);
	assert_string_equal(dis_schema_id_name(s, 0), "account_id");
	assert_int_equal(dis_schema_id_type(s, 0), DIS_ID_STRING);
	assert_string_equal(dis_schema_id_name(s, 1), "owner");
	assert_int_equal(dis_schema_id_type(s, 1), DIS_ID_UUID);
	assert_string_equal(dis_schema_id_name(s, 2), "branch");
	assert_int_equal(dis_schema_id_type(s, 2), DIS_ID_LONG);
	assert_string_equal(dis_schema_id_name(s, 3), "referrer");
	assert_int_equal(dis_schema_id_type(s, 3), DIS_ID_LONG);
	assert_string_equal(dis_schema_id_name(s, 4), "auditor");
	assert_int_equal(dis_schema_id_type(s, 4), DIS_ID_UUID);
	assert_int_equal(dis_schema_id_index(s, "branch"), 2);
	assert_int_equal(dis_schema_id_index(s, "note"), -1);
	assert_int_equal(dis_schema_id_index(s, "amount"), -1);

	assert_true(dis_schema_type_has_id(s, "Opened", "owner"));
	assert_true(dis_schema_type_has_id(s, "Deposited", "account_id"));
	assert_false(dis_schema_type_has_id(s, "Deposited", "owner"));
	assert_false(dis_schema_type_has_id(s, "Nope", "owner"));
	n = dis__schema_type_ids(s, 1, &ids);
	assert_int_equal(n, 2);
	assert_int_equal(ids[0], 0);
	assert_int_equal(ids[1], 3);

	assert_int_equal(dis_schema_stream_count(s), 2);
	assert_string_equal(dis_schema_stream_name(s, 0), "account");
	assert_string_equal(dis_schema_stream_name(s, 1), "money");
	assert_int_equal(dis_schema_stream_types(s, "account", &types, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(types[0], "Opened");
	assert_string_equal(types[1], "Deposited");
	assert_int_equal(dis_schema_stream_types(s, "nope", &types, &n),
			 DIS_ENOTFOUND);
	dis_schema_free(s);
}

static void test_single_record(void **state)
{
	dis_schema *s = parse_ok(
		"{\"type\":\"record\",\"name\":\"a.b.Pinged\",\"fields\":[]}");

	(void)state;
	assert_int_equal(dis_schema_type_count(s), 1);
	assert_string_equal(dis_schema_type_name(s, 0), "Pinged");
	assert_int_equal(dis_schema_id_count(s), 0);
	assert_int_equal(dis_schema_stream_count(s), 0);
	dis_schema_free(s);
	dis_schema_free(NULL);
}

static void test_fingerprint(void **state)
{
	dis_schema *a = parse_ok(BANK), *b = parse_ok(BANK), *c, *d;
	char *spaced = malloc(strlen(BANK) * 2 + 1), *p = spaced;
	const char *fa = dis__schema_fingerprint(a);

	(void)state;
	assert_int_equal(strlen(fa), 16);
	assert_int_equal(strspn(fa, "0123456789abcdef"), 16);
	assert_string_equal(fa, dis__schema_fingerprint(b));
	/* formatting does not change it */
	for (const char *q = BANK; *q; q++) {
		*p++ = *q;
		if (*q == ',')
			*p++ = '\n';
	}
	*p = '\0';
	c = parse_ok(spaced);
	assert_string_equal(fa, dis__schema_fingerprint(c));
	/* content does */
	d = parse_ok("{\"type\":\"record\",\"name\":\"Pinged\",\"fields\":[]}");
	assert_string_not_equal(fa, dis__schema_fingerprint(d));
	free(spaced);
	dis_schema_free(a);
	dis_schema_free(b);
	dis_schema_free(c);
	dis_schema_free(d);
}

static void test_load_file(void **state)
{
	char path[] = "/tmp/dis-schema-XXXXXX";
	char err[DIS_ERRMSG_LEN];
	dis_schema *s = NULL;
	int fd = mkstemp(path);
	FILE *f;

	(void)state;
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs(BANK, f);
	fclose(f);
	assert_int_equal(dis_schema_load_file(path, &s, err, sizeof(err)), 0);
	assert_int_equal(dis_schema_type_count(s), 3);
	dis_schema_free(s);
	unlink(path);
	s = NULL;
	assert_int_equal(dis_schema_load_file(path, &s, err, sizeof(err)),
			 DIS_EIO);
	assert_null(s);
	assert_non_null(strstr(err, path));
}

static void test_identifier_check(void **state)
{
	char err[DIS_ERRMSG_LEN];
	char name[70];

	(void)state;
	assert_int_equal(dis_identifier_check("account_id", err, sizeof(err)),
			 0);
	assert_int_equal(dis_identifier_check("_x9", NULL, 0), 0);
	assert_int_equal(dis_identifier_check("", err, sizeof(err)),
			 DIS_EINVAL);
	assert_non_null(strstr(err, "empty"));
	assert_int_equal(dis_identifier_check("9lives", err, sizeof(err)),
			 DIS_EINVAL);
	assert_int_equal(dis_identifier_check("a-b", err, sizeof(err)),
			 DIS_EINVAL);
	assert_non_null(strstr(err, "byte 1"));
	assert_int_equal(dis_identifier_check("caf\xc3\xa9", err, sizeof(err)),
			 DIS_EINVAL);
	memset(name, 'a', 63);
	name[63] = '\0';
	assert_int_equal(dis_identifier_check(name, err, sizeof(err)), 0);
	name[63] = 'a';
	name[64] = '\0';
	assert_int_equal(dis_identifier_check(name, err, sizeof(err)),
			 DIS_EINVAL);
	assert_non_null(strstr(err, "longer than 63"));
	assert_int_equal(dis_identifier_check(NULL, err, sizeof(err)),
			 DIS_EINVAL);
}

/* ---- bad schemas ---- */

#define REC(name, fields) \
	"{\"type\":\"record\",\"name\":\"" name "\",\"fields\":[" fields "]}"
#define ID(name, type) \
	"{\"name\":\"" name "\",\"type\":" type ",\"disintegrate.id\":true}"
#define LONG64 \
	"a123456789a123456789a123456789a123456789a123456789a123456789abcd"

struct bad {
	const char *what;
	const char *json;
	const char *expect; /* substring of the message */
};

static const struct bad BAD[] = {
	{"broken JSON", "[" REC("A", "") ",", "not valid JSON: line 1"},
	{"top level enum",
	 "{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"X\"]}",
	 "its top level is a \"enum\" type"},
	{"top level string", "\"string\"", "of records, not a string"},
	{"empty union", "[]", "empty union"},
	{"union branch not a record", "[" REC("A", "") ",\"string\"]",
	 "top-level union branch 1 is not a record"},
	{"double id", "[" REC("A", ID("x", "\"double\"")) "]",
	 "its type (double) is not a valid id type"},
	{"record id", "[" REC("A", ID("x", REC("R", ""))) "]",
	 "its type (record R) is not a valid id type"},
	{"int id", "[" REC("A", ID("x", "\"int\"")) "]",
	 "its type (int) is not a valid id type"},
	{"union id", "[" REC("A", ID("x", "[\"string\",\"long\"]")) "]",
	 "its type (a union of 2 types) is not a valid id type"},
	{"long type name", "[" REC(LONG64, "") "]",
	 "event type name is invalid: identifier \"a123456789"},
	{"long id name", "[" REC("A", ID(LONG64, "\"string\"")) "]",
	 "id field name is invalid"},
	{"bad Avro field name", "[" REC("A", ID("a-b", "\"string\"")) "]",
	 "field name \"a-b\" is not a valid Avro name"},
	{"bad type name", "[" REC("9A", "") "]",
	 "record name \"9A\" is not a valid Avro name"},
	{"bad stream name",
	 "[{\"type\":\"record\",\"name\":\"A\",\"fields\":[],"
	 "\"disintegrate.streams\":[\"bad-name\"]}]",
	 "stream name is invalid"},
	{"streams not array",
	 "[{\"type\":\"record\",\"name\":\"A\",\"fields\":[],"
	 "\"disintegrate.streams\":\"s\"}]",
	 "must be an array of stream names"},
	{"reserved event_id", "[" REC("A", ID("event_id", "\"long\"")) "]",
	 "id name \"event_id\" is reserved"},
	{"reserved tx", "[" REC("A", ID("tx", "\"long\"")) "]",
	 "id name \"tx\" is reserved"},
	{"reserved case", "[" REC("A", ID("Payload", "\"string\"")) "]",
	 "id name \"Payload\" is reserved"},
	{"reserved dis_", "[" REC("A", ID("dis_seq", "\"long\"")) "]",
	 "id name \"dis_seq\" is reserved"},
	{"system column", "[" REC("A", ID("XMin", "\"long\"")) "]",
	 "id name \"XMin\" is reserved"},
	{"system column ctid", "[" REC("A", ID("ctid", "\"string\"")) "]",
	 "id name \"ctid\" is reserved"},
	{"two types",
	 "[" REC("A", ID("acc", "\"string\"")) "," REC("B", ID("acc",
							       "\"long\"")) "]",
	 "id \"acc\" is declared with two types: string in event type A "
	 "and long in event type B"},
	{"uuid vs string",
	 "[" REC("A", ID("acc", "\"string\"")) "," REC(
		 "B", ID("acc",
			 "{\"type\":\"string\",\"logicalType\":\"uuid\"}")) "]",
	 "string in event type A and uuid in event type B"},
	{"case twins",
	 "[" REC("A", ID("acc", "\"string\"")) "," REC(
		 "B", ID("Acc", "\"string\"")) "]",
	 "id \"Acc\" differs only in case from id \"acc\""},
	{"duplicate type", "[" REC("x.A", "") "," REC("y.A", "") "]",
	 "event type \"A\" is declared twice"},
	{"defined twice", "[" REC("A", "") "," REC("A", "") "]",
	 "type name \"A\" is defined twice"},
	{"id not boolean",
	 "[" REC("A", "{\"name\":\"x\",\"type\":\"string\","
		      "\"disintegrate.id\":\"yes\"}") "]",
	 "\"disintegrate.id\" must be true or false, not a string"},
	{"nested id",
	 "[" REC("A", "{\"name\":\"m\",\"type\":" REC(
			      "Money", ID("cur", "\"string\"")) "}") "]",
	 "record Money is not an event type"},
	{"unknown type",
	 "[" REC("A", "{\"name\":\"m\",\"type\":\"Money\"}") "]",
	 "unknown type \"Money\""},
	{"recursive",
	 "[" REC("A", "{\"name\":\"next\",\"type\":[\"null\",\"A\"]}") "]",
	 "recursive type \"A\" is not supported"},
	{"bad default",
	 "[" REC("A",
		 "{\"name\":\"n\",\"type\":\"long\",\"default\":\"x\"}") "]",
	 "the default of field \"n\" does not fit its type"},
	{"bad nested default",
	 "[" REC("A",
		 "{\"name\":\"m\",\"type\":[\"null\"," REC(
			 "M",
			 "{\"name\":\"c\",\"type\":\"int\",\"default\":1.5}") "]}") "]",
	 "record M: the default of field \"c\""},
	{"duplicate field",
	 "[" REC("A", "{\"name\":\"n\",\"type\":\"long\"},"
		      "{\"name\":\"n\",\"type\":\"long\"}") "]",
	 "field \"n\" is declared twice"},
	{"duplicate key",
	 "{\"type\":\"record\",\"name\":\"A\",\"name\":\"B\",\"fields\":[]}",
	 "duplicate object key"},
	{"no fields", "[{\"type\":\"record\",\"name\":\"A\"}]",
	 "a record needs a \"fields\" array"},
	{"union in union",
	 "[" REC("A", "{\"name\":\"u\",\"type\":[[\"null\"]]}") "]",
	 "a union may not directly contain a union"},
	{"union twice",
	 "[" REC("A", "{\"name\":\"u\",\"type\":[\"string\",\"string\"]}") "]",
	 "a union lists type \"string\" twice"},
	{"fixed size",
	 "[" REC("A", "{\"name\":\"f\",\"type\":{\"type\":"
		      "\"fixed\",\"name\":\"F\",\"size\":1099511627776}}") "]",
	 "fixed \"F\" needs an integer \"size\""},
	{"array of empty records",
	 "[" REC("A", "{\"name\":\"e\",\"type\":{\"type\":\"array\","
		      "\"items\":" REC("E", "") "}}") "]",
	 "the items of an array may not be a record without fields"},
	{"enum empty",
	 "[" REC("A", "{\"name\":\"e\",\"type\":{\"type\":"
		      "\"enum\",\"name\":\"E\",\"symbols\":[]}}") "]",
	 "enum \"E\" needs a non-empty \"symbols\" array"},
	{"field type number", "[" REC("A", "{\"name\":\"e\",\"type\":5}") "]",
	 "a type must be a string, an array (union) or an object"},
	{"too big",
	 "[" REC("A",
		 "{\"name\":\"a\",\"type\":" REC(
			 "B",
			 "{\"name\":\"f\",\"type\":{\"type\":\"fixed\",\"name\":\"F\","
			 "\"size\":65536}},{\"name\":\"g\",\"type\":\"F\"},"
			 "{\"name\":\"h\",\"type\":\"F\"},{\"name\":\"i\",\"type\":\"F\"},"
			 "{\"name\":\"j\",\"type\":\"F\"},{\"name\":\"k\",\"type\":\"F\"},"
			 "{\"name\":\"l\",\"type\":\"F\"},{\"name\":\"m\",\"type\":\"F\"},"
			 "{\"name\":\"n\",\"type\":\"F\"},{\"name\":\"o\",\"type\":\"F\"},"
			 "{\"name\":\"p\",\"type\":\"F\"},{\"name\":\"q\",\"type\":\"F\"},"
			 "{\"name\":\"r\",\"type\":\"F\"},{\"name\":\"s\",\"type\":\"F\"},"
			 "{\"name\":\"t\",\"type\":\"F\"},{\"name\":\"u\",\"type\":\"F\"},"
			 "{\"name\":\"v\",\"type\":\"F\"}") "}") "]",
	 "the record is too large"},
};

#define NBAD (sizeof(BAD) / sizeof(*BAD))

static void test_bad_schemas(void **state)
{
	static char msgs[NBAD][DIS_ERRMSG_LEN];
	dis_schema *s;

	(void)state;
	for (size_t i = 0; i < NBAD; i++) {
		int rc;

		s = NULL;
		msgs[i][0] = '\0';
		rc = dis_schema_parse(BAD[i].json, &s, msgs[i],
				      sizeof(msgs[i]));
		if (rc != DIS_ESCHEMA)
			fail_msg("%s: expected DIS_ESCHEMA, got %d (%s)",
				 BAD[i].what, rc, msgs[i]);
		assert_null(s);
		if (!strstr(msgs[i], BAD[i].expect))
			fail_msg("%s: message \"%s\" lacks \"%s\"", BAD[i].what,
				 msgs[i], BAD[i].expect);
	}
	for (size_t i = 0; i < NBAD; i++)
		for (size_t k = i + 1; k < NBAD; k++)
			if (strcmp(msgs[i], msgs[k]) == 0)
				fail_msg("%s and %s give the same message: %s",
					 BAD[i].what, BAD[k].what, msgs[i]);
}

static void test_deep_nesting(void **state)
{
	char err[DIS_ERRMSG_LEN];
	dis__buf b;
	dis_schema *s = NULL;

	(void)state;
	dis__buf_init(&b);
	dis__buf_puts(&b, "["
			  "{\"type\":\"record\",\"name\":\"A\",\"fields\":["
			  "{\"name\":\"x\",\"type\":");
	for (int i = 0; i < 200; i++)
		dis__buf_puts(&b, "{\"type\":\"array\",\"items\":");
	dis__buf_puts(&b, "\"long\"");
	for (int i = 0; i < 200; i++)
		dis__buf_puts(&b, "}");
	dis__buf_puts(&b, "}]}]");
	assert_int_equal(dis_schema_parse(dis__buf_cstr(&b), &s, err,
					  sizeof(err)),
			 DIS_ESCHEMA);
	assert_non_null(strstr(err, "nest deeper than"));
	dis__buf_free(&b);
}

static void test_add_stream(void **state)
{
	const char *const ok[] = {"Opened", "Audited", "Opened"};
	const char *const bad[] = {"Opened", "Closed"};
	const char *const *types;
	char err[DIS_ERRMSG_LEN];
	dis_schema *s = parse_ok(BANK);
	size_t n;

	(void)state;
	assert_int_equal(
		dis_schema_add_stream(s, "review", ok, 3, err, sizeof(err)), 0);
	assert_int_equal(dis_schema_stream_types(s, "review", &types, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(types[0], "Opened");
	assert_string_equal(types[1], "Audited");
	assert_int_equal(dis_schema_add_stream(s, "other", bad, 2, err,
					       sizeof(err)),
			 DIS_ESCHEMA);
	assert_non_null(strstr(err, "stream \"other\" names an unknown event "
				    "type \"Closed\""));
	assert_int_equal(dis_schema_stream_types(s, "other", &types, &n),
			 DIS_ENOTFOUND);
	assert_int_equal(dis_schema_add_stream(s, "account", ok, 1, err,
					       sizeof(err)),
			 DIS_ESCHEMA);
	assert_non_null(strstr(err, "already declared"));
	assert_int_equal(dis_schema_add_stream(s, "x y", ok, 1, err,
					       sizeof(err)),
			 DIS_ESCHEMA);
	assert_non_null(strstr(err, "stream name is invalid"));
	assert_int_equal(dis_schema_add_stream(s, "empty", ok, 0, err,
					       sizeof(err)),
			 DIS_ESCHEMA);
	dis_schema_free(s);
}

/* Mutated schemas load or fail cleanly; run under ASan this finds crashes
 * and leaks. */
static void test_mutations(void **state)
{
	static const char alphabet[] = "{}[]\",:0123456789abnrtsl \\.-";
	char err[DIS_ERRMSG_LEN];
	size_t len = strlen(BANK);
	char *buf = malloc(len + 1);
	unsigned seed = 12345;

	(void)state;
	for (int round = 0; round < 3000; round++) {
		dis_schema *s = NULL;
		int edits = 1 + round % 4;

		memcpy(buf, BANK, len + 1);
		for (int e = 0; e < edits; e++) {
			seed = seed * 1103515245u + 12345u;
			size_t at = (seed >> 8) % len;

			seed = seed * 1103515245u + 12345u;
			if ((seed >> 8) % 5 == 0)
				buf[at] = '\0';
			else
				buf[at] = alphabet[(seed >> 12) %
						   (sizeof(alphabet) - 1)];
		}
		if (dis_schema_parse(buf, &s, err, sizeof(err)) == 0)
			dis_schema_free(s);
		else
			assert_true(strlen(err) > 0);
	}
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_types_ids_streams),
		cmocka_unit_test(test_single_record),
		cmocka_unit_test(test_fingerprint),
		cmocka_unit_test(test_load_file),
		cmocka_unit_test(test_identifier_check),
		cmocka_unit_test(test_bad_schemas),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_add_stream),
		cmocka_unit_test(test_mutations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
