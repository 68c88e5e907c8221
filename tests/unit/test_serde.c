/* Avro payloads: encode/decode, corrupt data, schema evolution. */
#include "testutil.h"
#include "core-internal.h"
#include "serde-internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *ALL =
	"[{\"type\":\"record\",\"name\":\"Everything\",\"fields\":["
	" {\"name\":\"s\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"l\",\"type\":\"long\"},"
	" {\"name\":\"i\",\"type\":\"int\"},"
	" {\"name\":\"d\",\"type\":\"double\"},"
	" {\"name\":\"f\",\"type\":\"float\"},"
	" {\"name\":\"b\",\"type\":\"boolean\"},"
	" {\"name\":\"raw\",\"type\":\"bytes\"},"
	" {\"name\":\"fx\",\"type\":{\"type\":\"fixed\",\"name\":\"Fx\","
	"  \"size\":2}},"
	" {\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\","
	"  \"symbols\":[\"A\",\"B\",\"C\"]}},"
	" {\"name\":\"u\",\"type\":[\"null\",\"string\",\"long\"]},"
	" {\"name\":\"arr\",\"type\":{\"type\":\"array\",\"items\":\"long\"}},"
	" {\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":\"string\"}},"
	" {\"name\":\"nulls\",\"type\":{\"type\":\"array\",\"items\":\"null\"}},"
	" {\"name\":\"rec\",\"type\":{\"type\":\"record\",\"name\":\"R\","
	"  \"fields\":[{\"name\":\"x\",\"type\":\"long\"}]}}]},"
	" {\"type\":\"record\",\"name\":\"Str\",\"fields\":["
	" {\"name\":\"s\",\"type\":\"string\"}]},"
	" {\"type\":\"record\",\"name\":\"Nulls\",\"fields\":["
	" {\"name\":\"n\",\"type\":{\"type\":\"array\",\"items\":\"null\"}}]},"
	" {\"type\":\"record\",\"name\":\"Longs\",\"fields\":["
	" {\"name\":\"n\",\"type\":{\"type\":\"array\",\"items\":\"long\"}}]},"
	" {\"type\":\"record\",\"name\":\"Flag\",\"fields\":["
	" {\"name\":\"b\",\"type\":\"boolean\"},"
	" {\"name\":\"e\",\"type\":\"E\"},"
	" {\"name\":\"u\",\"type\":[\"null\",\"long\"]}]}]";

static const char *FULL =
	"{\"s\":\"x'); DROP TABLE event; --\",\"l\":-1234567890123,"
	"\"i\":-7,\"d\":2.5,\"f\":-0.5,\"b\":true,\"raw\":\"\\u0000\\u00ff\","
	"\"fx\":\"ab\",\"e\":\"C\",\"u\":\"text\",\"arr\":[1,-2,300000],"
	"\"m\":{\"k\":\"v\",\"k2\":\"\"},\"nulls\":[null,null],"
	"\"rec\":{\"x\":99}}";

static dis_schema *all;

static int setup(void **state)
{
	(void)state;
	all = dt_schema(ALL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	dis_schema_free(all);
	return 0;
}

static dis_event *from_json(const dis_schema *s, const char *type,
			    const char *json)
{
	char err[DIS_ERRMSG_LEN];
	dis_event *ev = NULL;

	if (dis_event_from_json(s, type, json, &ev, err, sizeof(err)))
		fail_msg("from_json: %s", err);
	return ev;
}

static void encode(const dis_event *ev, dis__buf *out)
{
	char err[DIS_ERRMSG_LEN];

	dis__buf_init(out);
	if (dis__event_encode(ev, out, err, sizeof(err)))
		fail_msg("encode: %s", err);
}

static int decode(const dis_schema *reader, const dis_schema *writer,
		  const char *type, const void *data, size_t len,
		  dis_event **out, char *err)
{
	*out = NULL;
	err[0] = '\0';
	return dis__event_decode(reader, writer, type, data, len, out, err,
				 DIS_ERRMSG_LEN);
}

/* zig-zag varint */
static size_t put_long(unsigned char *p, int64_t v)
{
	uint64_t n = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
	size_t k = 0;

	while (n & ~(uint64_t)0x7F) {
		p[k++] = (unsigned char)((n & 0x7F) | 0x80);
		n >>= 7;
	}
	p[k++] = (unsigned char)n;
	return k;
}

static void test_round_trip(void **state)
{
	char err[DIS_ERRMSG_LEN];
	dis_event *ev = from_json(all, "Everything", FULL), *back;
	dis_schema *same = dt_schema(ALL);
	dis__buf b;
	char *j1, *j2;

	(void)state;
	encode(ev, &b);
	assert_true(b.len > 20);
	assert_int_equal(
		decode(all, all, "Everything", b.data, b.len, &back, err), 0);
	assert_true(dis_event_equal(ev, back));
	assert_int_equal(dis_event_data_json(ev, &j1), 0);
	assert_int_equal(dis_event_data_json(back, &j2), 0);
	assert_string_equal(j1, j2);
	dis_free(j2);
	dis_event_free(back);

	/* a separately loaded, identical schema resolves to the same */
	assert_int_equal(
		decode(same, all, "Everything", b.data, b.len, &back, err), 0);
	assert_ptr_equal(dis_event_schema(back), same);
	assert_int_equal(dis_event_data_json(back, &j2), 0);
	assert_string_equal(j1, j2);
	dis_free(j1);
	dis_free(j2);
	dis_event_free(back);

	/* encode appends */
	assert_int_equal(dis__event_encode(ev, &b, err, sizeof(err)), 0);
	assert_memory_equal(b.data, b.data + b.len / 2, b.len / 2);
	dis__buf_free(&b);
	dis_event_free(ev);
	dis_schema_free(same);
}

static void test_truncated_and_trailing(void **state)
{
	char err[DIS_ERRMSG_LEN];
	dis_event *ev = from_json(all, "Everything", FULL), *back;
	unsigned char *copy;
	dis__buf b;

	(void)state;
	encode(ev, &b);
	for (size_t n = 0; n < b.len; n++) {
		/* a fresh allocation of exactly n bytes: ASan sees overreads */
		copy = malloc(n ? n : 1);
		memcpy(copy, b.data, n);
		assert_int_equal(decode(all, all, "Everything", copy, n, &back,
					err),
				 DIS_ESERDE);
		assert_null(back);
		assert_non_null(strstr(err, "corrupt Avro data"));
		free(copy);
	}
	dis__buf_append(&b, "\0", 1);
	assert_int_equal(decode(all, all, "Everything", b.data, b.len, &back,
				err),
			 DIS_ESERDE);
	assert_non_null(strstr(err, "1 bytes of trailing data"));
	dis__buf_free(&b);
	dis_event_free(ev);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_huge_lengths(void **state)
{
	char err[DIS_ERRMSG_LEN];
	unsigned char buf[64];
	dis_event *ev;
	double t0 = now();
	size_t n;

	(void)state;
	/* a string length of 2^62 followed by 3 bytes */
	n = put_long(buf, (int64_t)1 << 62);
	memcpy(buf + n, "abc", 3);
	assert_int_equal(decode(all, all, "Str", buf, n + 3, &ev, err),
			 DIS_ESERDE);
	assert_non_null(strstr(err, "string length 4611686018427387904 "
				    "exceeds the 3 bytes left"));
	/* a negative string length */
	n = put_long(buf, -5);
	assert_int_equal(decode(all, all, "Str", buf, n, &ev, err), DIS_ESERDE);
	assert_non_null(strstr(err, "negative string length"));

	/* 2^62 nulls take no bytes: bounded by the work budget */
	n = put_long(buf, (int64_t)1 << 62);
	buf[n++] = 0;
	assert_int_equal(decode(all, all, "Nulls", buf, n, &ev, err),
			 DIS_ESERDE);
	assert_non_null(strstr(err, "too many values"));
	/* 2^62 longs need at least a byte each */
	n = put_long(buf, (int64_t)1 << 62);
	buf[n++] = 0;
	assert_int_equal(decode(all, all, "Longs", buf, n, &ev, err),
			 DIS_ESERDE);
	assert_non_null(strstr(err, "needs at least 1 bytes each"));
	/* negative count with a huge byte size */
	n = put_long(buf, -2);
	n += put_long(buf + n, (int64_t)1 << 60);
	buf[n++] = 2;
	buf[n++] = 4;
	buf[n++] = 0;
	assert_int_equal(decode(all, all, "Longs", buf, n, &ev, err),
			 DIS_ESERDE);
	assert_non_null(strstr(err, "block byte size"));
	/* negative count with the right byte size is fine */
	n = put_long(buf, -2);
	n += put_long(buf + n, 2);
	buf[n++] = 2;
	buf[n++] = 4;
	buf[n++] = 0;
	assert_int_equal(decode(all, all, "Longs", buf, n, &ev, err), 0);
	dis_event_free(ev);
	/* INT64_MIN block count */
	n = put_long(buf, INT64_MIN);
	buf[n++] = 0;
	assert_int_equal(decode(all, all, "Longs", buf, n, &ev, err),
			 DIS_ESERDE);
	/* an 11-byte varint */
	memset(buf, 0xff, 11);
	buf[11] = 0;
	assert_int_equal(decode(all, all, "Longs", buf, 12, &ev, err),
			 DIS_ESERDE);
	assert_non_null(strstr(err, "overflows 64 bits"));
	/* a payload over the size cap is refused before it is read */
	assert_int_equal(decode(all, all, "Str", buf, DIS__PAYLOAD_MAX + 1, &ev,
				err),
			 DIS_ESERDE);
	assert_non_null(strstr(err, "more than the limit"));
	assert_true(now() - t0 < 2.0);
}

static void test_corrupt_values(void **state)
{
	char err[DIS_ERRMSG_LEN];
	dis_event *ev;
	unsigned char buf[16];

	(void)state;
	/* Flag: boolean, enum E, union [null, long] */
	memcpy(buf, "\x02\x00\x00", 3);
	assert_int_equal(decode(all, all, "Flag", buf, 3, &ev, err),
			 DIS_ESERDE);
	assert_non_null(strstr(err, "boolean byte is 2"));
	memcpy(buf, "\x01\x06\x00", 3);
	assert_int_equal(decode(all, all, "Flag", buf, 3, &ev, err),
			 DIS_ESERDE);
	assert_non_null(strstr(err, "enum E index 3 is out of range"));
	memcpy(buf, "\x01\x04\x04", 3);
	assert_int_equal(decode(all, all, "Flag", buf, 3, &ev, err),
			 DIS_ESERDE);
	assert_non_null(strstr(err, "union index 2 is out of range"));
	memcpy(buf, "\x01\x04\x02\x07", 4);
	assert_int_equal(decode(all, all, "Flag", buf, 4, &ev, err), 0);
	dis_event_free(ev);
	/* a string that is not UTF-8 */
	memcpy(buf, "\x04\xc3\x28", 3);
	assert_int_equal(decode(all, all, "Str", buf, 3, &ev, err), DIS_ESERDE);
	assert_non_null(strstr(err, "not valid UTF-8"));
	/* unknown types */
	assert_int_equal(decode(all, all, "Nope", buf, 3, &ev, err),
			 DIS_ESERDE);
	assert_non_null(strstr(err, "not in the writer schema"));
}

/* Random and mutated bytes never crash (run under ASan too). */
static void test_random_bytes(void **state)
{
	static const char *types[] = {"Everything", "Str", "Nulls", "Longs",
				      "Flag"};
	char err[DIS_ERRMSG_LEN];
	dis_event *ev = from_json(all, "Everything", FULL);
	unsigned seed = 99;
	unsigned char *buf;
	dis__buf b;
	int ok = 0;

	(void)state;
	encode(ev, &b);
	dis_event_free(ev);
	for (int round = 0; round < 20000; round++) {
		size_t n;
		const char *type = types[round % 5];

		if (round % 2) {
			n = b.len;
			buf = malloc(n);
			memcpy(buf, b.data, n);
			for (int e = 0; e < 1 + round % 3; e++) {
				seed = seed * 1103515245u + 12345u;
				buf[(seed >> 8) % n] =
					(unsigned char)(seed >> 20);
			}
			type = "Everything";
		} else {
			seed = seed * 1103515245u + 12345u;
			n = (seed >> 8) % 48;
			buf = malloc(n ? n : 1);
			for (size_t k = 0; k < n; k++) {
				seed = seed * 1103515245u + 12345u;
				buf[k] = (unsigned char)(seed >> 16);
			}
		}
		switch (decode(all, all, type, buf, n, &ev, err)) {
		case 0: {
			char *json;

			ok++;
			/* whatever decodes also renders and re-encodes */
			if (dis_event_data_json(ev, &json) == 0)
				dis_free(json);
			dis__buf c;

			dis__buf_init(&c);
			assert_int_equal(
				dis__event_encode(ev, &c, err, sizeof(err)), 0);
			dis__buf_free(&c);
			dis_event_free(ev);
			break;
		}
		case DIS_ESERDE: assert_true(strlen(err) > 0); break;
		default: fail_msg("unexpected result: %s", err);
		}
		free(buf);
	}
	assert_true(ok > 0);
	dis__buf_free(&b);
}

static void test_encode_refuses_bad_utf8(void **state)
{
	char err[DIS_ERRMSG_LEN];
	dis_event *ev = from_json(all, "Str", "{\"s\":\"ok\"}");
	avro_value_t f;
	dis__buf b;

	(void)state;
	assert_int_equal(
		avro_value_get_by_name(dis_event_avro(ev), "s", &f, NULL), 0);
	assert_int_equal(avro_value_set_string(&f, "\xff\xfe"), 0);
	dis__buf_init(&b);
	assert_int_equal(dis__event_encode(ev, &b, err, sizeof(err)),
			 DIS_ESERDE);
	assert_non_null(strstr(err, "not valid UTF-8"));
	assert_int_equal(b.len, 0);
	dis__buf_free(&b);
	dis_event_free(ev);
}

/* ---- evolution ---- */

static const char *V1 =
	"[{\"type\":\"record\",\"name\":\"Deposited\",\"fields\":["
	" {\"name\":\"account_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"amount\",\"type\":\"int\"},"
	" {\"name\":\"legacy\",\"type\":\"string\"},"
	" {\"name\":\"kind\",\"type\":{\"type\":\"enum\",\"name\":\"Kind\","
	"  \"symbols\":[\"CASH\",\"CARD\"]}},"
	" {\"name\":\"money\",\"type\":{\"type\":\"record\",\"name\":\"Money\","
	"  \"fields\":[{\"name\":\"cents\",\"type\":\"int\"}]}},"
	" {\"name\":\"ratio\",\"type\":\"float\"},"
	" {\"name\":\"blob\",\"type\":\"string\"},"
	" {\"name\":\"text\",\"type\":\"bytes\"},"
	" {\"name\":\"maybe\",\"type\":\"string\"},"
	" {\"name\":\"opt\",\"type\":[\"null\",\"int\"]},"
	" {\"name\":\"list\",\"type\":{\"type\":\"array\",\"items\":\"int\"}}]},"
	" {\"type\":\"record\",\"name\":\"Closed\",\"fields\":["
	" {\"name\":\"account_id\",\"type\":\"string\"}]}]";

static const char *V2 =
	"[{\"type\":\"record\",\"name\":\"Deposited\",\"fields\":["
	" {\"name\":\"account_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"currency\",\"type\":\"string\",\"default\":\"EUR\"},"
	" {\"name\":\"amount\",\"type\":\"long\"},"
	" {\"name\":\"fee\",\"type\":\"long\",\"default\":7},"
	" {\"name\":\"note\",\"type\":[\"null\",\"string\"],\"default\":null},"
	" {\"name\":\"kind\",\"type\":{\"type\":\"enum\",\"name\":\"Kind\","
	"  \"symbols\":[\"WIRE\",\"CARD\",\"CASH\"]}},"
	" {\"name\":\"money\",\"type\":{\"type\":\"record\",\"name\":\"Money\","
	"  \"fields\":[{\"name\":\"cents\",\"type\":\"long\"},"
	"  {\"name\":\"currency\",\"type\":\"string\",\"default\":\"USD\"}]}},"
	" {\"name\":\"ratio\",\"type\":\"double\"},"
	" {\"name\":\"blob\",\"type\":\"bytes\"},"
	" {\"name\":\"text\",\"type\":\"string\"},"
	" {\"name\":\"maybe\",\"type\":[\"null\",\"string\"]},"
	" {\"name\":\"opt\",\"type\":[\"null\",\"double\"]},"
	" {\"name\":\"list\",\"type\":{\"type\":\"array\",\"items\":\"long\"}}]}]";

static const char *V3 =
	"[{\"type\":\"record\",\"name\":\"Deposited\",\"fields\":["
	" {\"name\":\"account_id\",\"type\":\"string\"},"
	" {\"name\":\"required\",\"type\":\"long\"}]}]";

static const char *V4 =
	"[{\"type\":\"record\",\"name\":\"Deposited\",\"fields\":["
	" {\"name\":\"kind\",\"type\":{\"type\":\"enum\",\"name\":\"Kind\","
	"  \"symbols\":[\"WIRE\"]}}]}]";

static const char *V5 =
	"[{\"type\":\"record\",\"name\":\"Deposited\",\"fields\":["
	" {\"name\":\"kind\",\"type\":{\"type\":\"enum\",\"name\":\"Kind\","
	"  \"symbols\":[\"WIRE\",\"OTHER\"],\"default\":\"OTHER\"}}]}]";

static const char *V6 =
	"[{\"type\":\"record\",\"name\":\"Deposited\",\"fields\":["
	" {\"name\":\"list\",\"type\":{\"type\":\"array\",\"items\":\"int\"}}]}]";

static const char *OLD_PAYLOAD =
	"{\"account_id\":\"acc\",\"amount\":-5,\"legacy\":\"gone\","
	"\"kind\":\"CASH\",\"money\":{\"cents\":250},\"ratio\":0.5,"
	"\"blob\":\"caf\\u00e9\",\"text\":\"abc\",\"maybe\":\"m\",\"opt\":3,"
	"\"list\":[1,2]}";

static void test_evolution_defaults(void **state)
{
	char err[DIS_ERRMSG_LEN];
	dis_schema *v1 = dt_schema(V1), *v2 = dt_schema(V2);
	dis_event *old = from_json(v1, "Deposited", OLD_PAYLOAD), *ev;
	const char *s;
	const void *bytes;
	size_t len;
	int64_t l;
	double d;
	char *json;
	dis__buf b;

	(void)state;
	encode(old, &b);
	assert_int_equal(decode(v2, v1, "Deposited", b.data, b.len, &ev, err),
			 0);
	assert_ptr_equal(dis_event_schema(ev), v2);
	/* fields added with defaults: string, long, nullable */
	assert_int_equal(dis_event_get_string(ev, "currency", &s), 0);
	assert_string_equal(s, "EUR");
	assert_int_equal(dis_event_get_long(ev, "fee", &l), 0);
	assert_int_equal(l, 7);
	assert_true(dis_event_is_null(ev, "note"));
	/* int -> long */
	assert_int_equal(dis_event_get_long(ev, "amount", &l), 0);
	assert_int_equal(l, -5);
	/* enum by symbol, though reordered */
	assert_int_equal(dis_event_get_string(ev, "kind", &s), 0);
	assert_string_equal(s, "CASH");
	/* float -> double, string -> bytes, bytes -> string */
	assert_int_equal(dis_event_get_double(ev, "ratio", &d), 0);
	assert_true(d == 0.5);
	assert_int_equal(dis_event_get_bytes(ev, "blob", &bytes, &len), 0);
	assert_int_equal(len, 5);
	assert_memory_equal(bytes, "caf\xc3\xa9", 5);
	assert_int_equal(dis_event_get_string(ev, "text", &s), 0);
	assert_string_equal(s, "abc");
	/* into a union */
	assert_int_equal(dis_event_get_string(ev, "maybe", &s), 0);
	assert_string_equal(s, "m");
	assert_int_equal(dis_event_get_double(ev, "opt", &d), 0);
	assert_true(d == 3);
	/* nested record: promoted field and added default */
	assert_int_equal(dis_event_data_json(ev, &json), 0);
	assert_non_null(strstr(json, "\"money\":{\"cents\":250,"
				     "\"currency\":\"USD\"}"));
	assert_non_null(strstr(json, "\"list\":[1,2]"));
	assert_null(strstr(json, "legacy"));
	dis_free(json);
	dis_event_free(ev);

	/* a type the reader dropped */
	dis_event_free(old);
	old = from_json(v1, "Closed", "{\"account_id\":\"a\"}");
	dis__buf_free(&b);
	encode(old, &b);
	assert_int_equal(decode(v2, v1, "Closed", b.data, b.len, &ev, err),
			 DIS_ESERDE);
	assert_non_null(strstr(err, "not in the reader schema"));
	dis__buf_free(&b);
	dis_event_free(old);
	dis_schema_free(v1);
	dis_schema_free(v2);
}

/* A V2 Deposited whose list is `list` (JSON), encoded into *out. */
static void v2_encoded(const dis_schema *v2, const char *list, dis__buf *out)
{
	char json[512];
	dis_event *ev;

	snprintf(json, sizeof(json),
		 "{\"account_id\":\"a\",\"amount\":1,\"kind\":\"CARD\","
		 "\"money\":{\"cents\":1},\"ratio\":1,\"blob\":\"\","
		 "\"text\":\"\",\"maybe\":null,\"opt\":null,\"list\":%s}",
		 list);
	ev = from_json(v2, "Deposited", json);
	encode(ev, out);
	dis_event_free(ev);
}

static void test_evolution_errors(void **state)
{
	char err[DIS_ERRMSG_LEN];
	dis_schema *v1 = dt_schema(V1), *v2 = dt_schema(V2);
	dis_schema *v3 = dt_schema(V3), *v4 = dt_schema(V4);
	dis_schema *v5 = dt_schema(V5), *v6 = dt_schema(V6);
	dis_event *old = from_json(v1, "Deposited", OLD_PAYLOAD), *ev;
	const char *s;
	dis__buf b;

	(void)state;
	encode(old, &b);
	/* a reader field the writer lacks, without default */
	assert_int_equal(decode(v3, v1, "Deposited", b.data, b.len, &ev, err),
			 DIS_ESERDE);
	assert_null(ev);
	assert_non_null(strstr(err, "field required: the writer's record "
				    "Deposited lacks this field and the "
				    "reader gives it no default"));
	/* an enum symbol the reader lacks */
	assert_int_equal(decode(v4, v1, "Deposited", b.data, b.len, &ev, err),
			 DIS_ESERDE);
	assert_non_null(strstr(err, "symbol CASH of enum Kind is unknown"));
	/* ... unless the reader's enum has a default */
	assert_int_equal(decode(v5, v1, "Deposited", b.data, b.len, &ev, err),
			 0);
	assert_int_equal(dis_event_get_string(ev, "kind", &s), 0);
	assert_string_equal(s, "OTHER");
	dis_event_free(ev);
	/* no demotion: long written, int read */
	dis__buf_free(&b);
	dis_event_free(old);
	v2_encoded(v2, "[]", &b);
	assert_int_equal(decode(v1, v2, "Deposited", b.data, b.len, &ev, err),
			 DIS_ESERDE);
	assert_non_null(strstr(err, "field amount: the writer's long cannot "
				    "be read as the reader's int"));
	dis__buf_free(&b);
	/* the path names the element */
	v2_encoded(v2, "[1,2,3,4,5,6,7,8,9,10,11]", &b);
	assert_int_equal(decode(v6, v2, "Deposited", b.data, b.len, &ev, err),
			 DIS_ESERDE);
	assert_non_null(strstr(err, "field list[0]: the writer's long cannot "
				    "be read as the reader's int"));
	dis__buf_free(&b);
	dis_schema_free(v1);
	dis_schema_free(v2);
	dis_schema_free(v3);
	dis_schema_free(v4);
	dis_schema_free(v5);
	dis_schema_free(v6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_truncated_and_trailing),
		cmocka_unit_test(test_huge_lengths),
		cmocka_unit_test(test_corrupt_values),
		cmocka_unit_test(test_random_bytes),
		cmocka_unit_test(test_encode_refuses_bad_utf8),
		cmocka_unit_test(test_evolution_defaults),
		cmocka_unit_test(test_evolution_errors),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
