/*
 * Fuzz target: Avro payload decoding (dis__event_decode).
 *
 * Input: one selector byte, then the payload. The selector's low bits pick
 * the event type of the writer schema; bit 3 decodes into the evolved
 * reader schema instead of the writer's own. A decoded event must encode,
 * decode and render as JSON back to the same values; a payload the
 * pre-scan accepts must decode with its own schema; a lazily decoded event
 * (the store's way) and its copy, first used in various ways, must hold
 * the same values.
 */
#include "fuzz.h"
#include "serde-internal.h"
#include "../lazy_compare.h"

static const char *WRITER =
	"[{\"type\":\"record\",\"name\":\"Everything\",\"fields\":["
	" {\"name\":\"s\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"n\",\"type\":\"long\",\"disintegrate.id\":true},"
	" {\"name\":\"u\",\"type\":{\"type\":\"string\","
	"  \"logicalType\":\"uuid\"},\"disintegrate.id\":true},"
	" {\"name\":\"i\",\"type\":\"int\"},"
	" {\"name\":\"l\",\"type\":\"long\"},"
	" {\"name\":\"f\",\"type\":\"float\"},"
	" {\"name\":\"d\",\"type\":\"double\"},"
	" {\"name\":\"b\",\"type\":\"boolean\"},"
	" {\"name\":\"raw\",\"type\":\"bytes\"},"
	" {\"name\":\"txt\",\"type\":\"string\"},"
	" {\"name\":\"fx\",\"type\":{\"type\":\"fixed\",\"name\":\"Fx\","
	"  \"size\":4}},"
	" {\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\","
	"  \"symbols\":[\"A\",\"B\",\"C\"]}},"
	" {\"name\":\"rec\",\"type\":{\"type\":\"record\",\"name\":\"R\","
	"  \"fields\":[{\"name\":\"x\",\"type\":\"int\"},"
	"  {\"name\":\"tag\",\"type\":[\"null\",\"E\"]}]}},"
	" {\"name\":\"opt\",\"type\":[\"null\",\"string\",\"long\",\"R\"]},"
	" {\"name\":\"arr\",\"type\":{\"type\":\"array\",\"items\":\"int\"}},"
	" {\"name\":\"recs\",\"type\":{\"type\":\"array\",\"items\":\"R\"}},"
	" {\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":"
	"  {\"type\":\"array\",\"items\":\"float\"}}},"
	" {\"name\":\"nulls\",\"type\":{\"type\":\"array\",\"items\":\"null\"}},"
	" {\"name\":\"gone\",\"type\":\"string\"}]},"
	" {\"type\":\"record\",\"name\":\"Small\",\"fields\":["
	" {\"name\":\"s\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"acct\",\"type\":[\"null\",\"string\"],"
	"  \"disintegrate.id\":true},"
	" {\"name\":\"maybe\",\"type\":[\"null\",\"long\"]}]},"
	" {\"type\":\"record\",\"name\":\"Nest\",\"fields\":["
	" {\"name\":\"v\",\"type\":\"int\"},"
	" {\"name\":\"grid\",\"type\":{\"type\":\"array\",\"items\":"
	"  {\"type\":\"array\",\"items\":[\"null\",\"int\",\"R\"]}}},"
	" {\"name\":\"index\",\"type\":{\"type\":\"map\",\"values\":"
	"  {\"type\":\"map\",\"values\":\"R\"}}}]},"
	" {\"type\":\"record\",\"name\":\"Empty\",\"fields\":[]},"
	" {\"type\":\"record\",\"name\":\"Old\",\"fields\":["
	" {\"name\":\"n\",\"type\":\"long\",\"disintegrate.id\":true}]}]";

/* The same types evolved: promotions, reordered and added enum symbols,
 * removed fields, added fields with defaults of every kind. "Old" is gone. */
static const char *READER =
	"[{\"type\":\"record\",\"name\":\"Everything\",\"fields\":["
	" {\"name\":\"added_s\",\"type\":\"string\",\"default\":\"dflt\"},"
	" {\"name\":\"u\",\"type\":{\"type\":\"string\","
	"  \"logicalType\":\"uuid\"},\"disintegrate.id\":true},"
	" {\"name\":\"s\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"n\",\"type\":\"long\",\"disintegrate.id\":true},"
	" {\"name\":\"i\",\"type\":\"long\"},"
	" {\"name\":\"l\",\"type\":\"double\"},"
	" {\"name\":\"f\",\"type\":\"double\"},"
	" {\"name\":\"d\",\"type\":\"double\"},"
	" {\"name\":\"b\",\"type\":\"boolean\"},"
	" {\"name\":\"raw\",\"type\":\"string\"},"
	" {\"name\":\"txt\",\"type\":\"bytes\"},"
	" {\"name\":\"fx\",\"type\":{\"type\":\"fixed\",\"name\":\"Fx\","
	"  \"size\":4}},"
	" {\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\","
	"  \"symbols\":[\"C\",\"B\",\"A\",\"D\"],\"default\":\"D\"}},"
	" {\"name\":\"rec\",\"type\":{\"type\":\"record\",\"name\":\"R\","
	"  \"fields\":[{\"name\":\"x\",\"type\":\"long\"},"
	"  {\"name\":\"note\",\"type\":\"string\",\"default\":\"n\"},"
	"  {\"name\":\"tag\",\"type\":[\"null\",\"E\"]}]}},"
	" {\"name\":\"opt\",\"type\":[\"null\",\"string\",\"double\",\"R\"]},"
	" {\"name\":\"arr\",\"type\":{\"type\":\"array\",\"items\":\"long\"}},"
	" {\"name\":\"recs\",\"type\":{\"type\":\"array\",\"items\":\"R\"}},"
	" {\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":"
	"  {\"type\":\"array\",\"items\":\"double\"}}},"
	" {\"name\":\"nulls\",\"type\":{\"type\":\"array\",\"items\":\"null\"}},"
	" {\"name\":\"added_rec\",\"type\":{\"type\":\"record\","
	"  \"name\":\"Added\",\"fields\":[{\"name\":\"a\",\"type\":\"int\"},"
	"  {\"name\":\"e\",\"type\":\"E\",\"default\":\"B\"}]},"
	"  \"default\":{\"a\":3}},"
	" {\"name\":\"added_arr\",\"type\":{\"type\":\"array\","
	"  \"items\":\"long\"},\"default\":[1,2]},"
	" {\"name\":\"added_map\",\"type\":{\"type\":\"map\","
	"  \"values\":\"string\"},\"default\":{\"x\":\"y\"}},"
	" {\"name\":\"added_fx\",\"type\":\"Fx\",\"default\":\"ab\\u00ffd\"},"
	" {\"name\":\"added_bytes\",\"type\":\"bytes\","
	"  \"default\":\"\\u0000\\u00ff\"},"
	" {\"name\":\"added_e\",\"type\":\"E\",\"default\":\"D\"},"
	" {\"name\":\"added_u\",\"type\":[\"null\",\"long\"],\"default\":null},"
	" {\"name\":\"added_f\",\"type\":\"float\",\"default\":1.5},"
	" {\"name\":\"added_b\",\"type\":\"boolean\",\"default\":true}]},"
	" {\"type\":\"record\",\"name\":\"Small\",\"fields\":["
	" {\"name\":\"s\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"acct\",\"type\":[\"null\",\"string\"],"
	"  \"disintegrate.id\":true},"
	" {\"name\":\"maybe\",\"type\":[\"null\",\"long\",\"string\"]},"
	" {\"name\":\"z\",\"type\":[\"string\",\"null\"],\"default\":\"zz\"}]},"
	" {\"type\":\"record\",\"name\":\"Nest\",\"fields\":["
	" {\"name\":\"v\",\"type\":\"long\"},"
	" {\"name\":\"w\",\"type\":\"long\",\"default\":0},"
	" {\"name\":\"grid\",\"type\":{\"type\":\"array\",\"items\":"
	"  {\"type\":\"array\",\"items\":[\"null\",\"long\",\"R\"]}}},"
	" {\"name\":\"index\",\"type\":{\"type\":\"map\",\"values\":"
	"  {\"type\":\"map\",\"values\":\"R\"}}}]},"
	" {\"type\":\"record\",\"name\":\"Empty\",\"fields\":["
	" {\"name\":\"x\",\"type\":\"int\",\"default\":5}]}]";

static dis_schema *writer, *reader;

static void free_schemas(void)
{
	dis_schema_free(reader);
	dis_schema_free(writer);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	writer = fz_schema(WRITER);
	reader = fz_schema(READER);
	atexit(free_schemas);
	return 0;
}

/*
 * Fresh undecoded events of one payload, in one view slot (into another
 * schema than the writer's, a decoded event of their own, kept until the
 * next).
 */
typedef struct fresh_ctx {
	const dis_schema *into;
	const char *type;
	const uint8_t *data;
	size_t size;
	dis_event *slot, *own;
} fresh_ctx;

static dis_event *fresh(void *arg)
{
	fresh_ctx *c = arg;
	char err[DIS_ERRMSG_LEN];
	dis_event *ev;

	dis_event_free(c->own);
	c->own = NULL;
	if (dis__event_decode_view(c->into, writer, c->type, c->data, c->size,
				   &c->slot, &ev, err, sizeof(err)))
		return NULL;
	if (ev != c->slot)
		c->own = ev;
	return ev;
}

/*
 * The getters that read a not yet decoded event in place (numbers,
 * booleans, strings, bytes, the null test, domain ids) give the eager
 * event's results for every field, each on an event still undecoded.
 */
static void check_in_place(const dis_event *eager, const dis_schema *into,
			   const char *type, const uint8_t *data, size_t size)
{
	avro_schema_t rec =
		dis__schema_type_avro(into, dis__schema_type_index(into, type));
	size_t n = avro_schema_record_size(rec);
	fresh_ctx c = {into, type, data, size, NULL, NULL};

	for (size_t i = 0; i < n; i++) {
		const char *f = avro_schema_record_field_name(rec, (int)i);
		const char *bad = lazy_getter_differs(eager, f, fresh, &c);

		fz_check(!bad, "%s %s differs", bad, f);
	}
	for (size_t j = 0; j < dis_schema_id_count(into); j++)
		fz_check(!lazy_idval_differs(eager, (int)j, fresh, &c),
			 "id %zu differs", j);
	dis_event_free(c.slot);
	dis_event_free(c.own);
}

/* The lazy decoding of the same bytes agrees with the eager one. */
static void check_lazy(const dis_event *eager, const dis_schema *into,
		       const char *type, const uint8_t *data, size_t size)
{
	char err[DIS_ERRMSG_LEN] = "";
	dis_event *lazy = NULL, *copy = NULL;
	char *want = fz_data_json(eager, "eager"), *got;
	int rc;

	rc = dis__event_decode_view(into, writer, type, data, size, NULL, &lazy,
				    err, sizeof(err));
	fz_check(rc == 0, "lazy decode failed where eager worked: %s", err);
	/* A copy made before first use, used after the original is gone. */
	rc = dis_event_copy(lazy, &copy);
	fz_check(rc == 0, "copy of a lazy event: %s", dis_strerror(rc));
	/* Fields read in place, then first use by a getter, then as a
	 * whole. */
	check_in_place(eager, into, type, data, size);
	if (dis_schema_id_count(into) > 0) {
		const char *s;

		(void)dis_event_get_string(lazy, dis_schema_id_name(into, 0),
					   &s);
	}
	got = fz_data_json(lazy, "lazy");
	fz_check(strcmp(want, got) == 0, "lazy decode differs:\n%s\n%s", want,
		 got);
	free(got);
	dis_event_free(lazy);
	fz_roundtrip(copy, "copy of a lazy event");
	got = fz_data_json(copy, "lazy copy");
	fz_check(strcmp(want, got) == 0, "lazy copy differs:\n%s\n%s", want,
		 got);
	free(got);
	fz_check(dis_event_equal(copy, eager) || strstr(want, "NaN"),
		 "dis_event_equal: a lazy copy differs");
	dis_event_free(copy);
	free(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[DIS_ERRMSG_LEN] = "";
	const dis_schema *into;
	const char *type;
	dis_event *ev = NULL;
	size_t ntypes = dis_schema_type_count(writer);
	int scan, rc, t;

	if (size < 1)
		return 0;
	t = (int)((data[0] & 7) % ntypes);
	type = dis_schema_type_name(writer, (size_t)t);
	into = data[0] & 8 ? reader : writer;
	data++;
	size--;

	scan = dis__avro_scan(dis__schema_type_avro(writer, t), data, size,
			      err, sizeof(err));
	fz_check(scan == 0 || scan == DIS_ESERDE, "scan: %s",
		 dis_strerror(scan));
	{
		size_t n;
		const dis__scan_op *plan = dis__schema_type_plan(writer, t, &n);

		fz_check(dis__avro_scan_plan(plan, n, data, size, err,
					     sizeof(err)) == scan,
			 "the scan plan and the scan disagree");
	}

	err[0] = '\0';
	rc = dis__event_decode(into, writer, type, data, size, &ev, err,
			       sizeof(err));
	if (rc) {
		fz_check_code(rc, "decode");
		fz_check_err(err, sizeof(err), "decode");
		fz_check(rc == DIS_ESERDE || rc == DIS_ENOMEM,
			 "decode: unexpected %s: %s", dis_strerror(rc), err);
		fz_check(into != writer || scan != 0,
			 "the pre-scan accepted a payload that does not "
			 "decode: %s",
			 err);
		return 0;
	}
	fz_check(scan == 0, "decoded a payload the pre-scan refused");
	fz_check(ev && strcmp(dis_event_type(ev), type) == 0,
		 "decode: wrong event");
	fz_check(dis_event_schema(ev) == into, "decode: wrong schema");
	fz_roundtrip(ev, "decoded event");
	check_lazy(ev, into, type, data, size);
	dis_event_free(ev);
	return 0;
}
