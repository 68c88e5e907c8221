/*
 * Fuzz target: `disctl append` input lines (disctl_parse_event).
 *
 * Input: JSON lines, as disctl reads them from stdin (each line with its
 * newline, NUL bytes included). Every line is parsed against a schema with
 * ids of each kind and nested values; an event that parses must round-trip
 * through Avro and through its own JSON, and the `disctl tail` line it
 * prints must parse back as the same event.
 */
#include "fuzz.h"
#include "cliparse.h"

static const char *SCHEMA =
	"[{\"type\":\"record\",\"name\":\"Deposited\","
	"  \"disintegrate.streams\":[\"money\"],\"fields\":["
	" {\"name\":\"account_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"amount\",\"type\":\"long\"},"
	" {\"name\":\"note\",\"type\":[\"null\",\"string\"],\"default\":null}]},"
	" {\"type\":\"record\",\"name\":\"Withdrawn\","
	"  \"disintegrate.streams\":[\"money\"],\"fields\":["
	" {\"name\":\"account_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"amount\",\"type\":\"long\"},"
	" {\"name\":\"rate\",\"type\":\"double\",\"default\":1.0},"
	" {\"name\":\"f\",\"type\":\"float\",\"default\":0.5}]},"
	" {\"type\":\"record\",\"name\":\"Opened\",\"fields\":["
	" {\"name\":\"account_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"customer\",\"type\":\"long\",\"disintegrate.id\":true},"
	" {\"name\":\"key\",\"type\":{\"type\":\"string\","
	"  \"logicalType\":\"uuid\"},\"disintegrate.id\":true},"
	" {\"name\":\"kind\",\"type\":{\"type\":\"enum\",\"name\":\"Kind\","
	"  \"symbols\":[\"CHECKING\",\"SAVINGS\"]},\"default\":\"CHECKING\"},"
	" {\"name\":\"owner\",\"type\":{\"type\":\"record\",\"name\":\"Person\","
	"  \"fields\":[{\"name\":\"name\",\"type\":\"string\"},"
	"  {\"name\":\"age\",\"type\":[\"null\",\"int\"],\"default\":null}]}},"
	" {\"name\":\"tags\",\"type\":{\"type\":\"array\",\"items\":\"string\"},"
	"  \"default\":[]},"
	" {\"name\":\"limits\",\"type\":{\"type\":\"map\",\"values\":\"long\"},"
	"  \"default\":{}},"
	" {\"name\":\"sig\",\"type\":[\"null\",\"bytes\",{\"type\":\"fixed\","
	"  \"name\":\"Sig\",\"size\":3}],\"default\":null},"
	" {\"name\":\"flag\",\"type\":\"boolean\",\"default\":false},"
	" {\"name\":\"joint\",\"type\":{\"type\":\"array\",\"items\":\"Person\"},"
	"  \"default\":[]}]},"
	" {\"type\":\"record\",\"name\":\"Closed\",\"fields\":["
	" {\"name\":\"account_id\",\"type\":[\"null\",\"string\"],"
	"  \"disintegrate.id\":true}]}]";

static dis_schema *schema;

static void free_schema(void)
{
	dis_schema_free(schema);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	schema = fz_schema(SCHEMA);
	atexit(free_schema);
	return 0;
}

/* The line `disctl tail` prints for the event must read back as it. */
static void check_tail_line(const dis_event *ev)
{
	char err[DIS_ERRMSG_LEN] = "";
	dis_event *back = NULL;
	char *line = NULL, *a, *b;
	int rc;

	rc = dis_event_to_json(ev, &line);
	fz_check(rc == 0, "to_json: %s", dis_strerror(rc));
	rc = disctl_parse_event(schema, line, strlen(line), &back, err,
				sizeof(err));
	fz_check(rc == 0 && back, "the tail line does not parse: %s\n%s", err,
		 line);
	a = fz_data_json(ev, "parsed");
	b = fz_data_json(back, "reparsed");
	fz_check(strcmp(a, b) == 0 &&
			 strcmp(dis_event_type(ev), dis_event_type(back)) == 0,
		 "the tail line reads back differently:\n%s\n%s", a, b);
	free(a);
	free(b);
	dis_free(line);
	dis_event_free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
		char err[DIS_ERRMSG_LEN] = "";
		dis_event *ev = (dis_event *)&ev;
		int rc;

		rc = disctl_parse_event(schema, p, len, &ev, err, sizeof(err));
		p += len;
		if (rc) {
			fz_check_code(rc, "parse");
			fz_check(rc == DIS_EINVAL || rc == DIS_ESERDE ||
					 rc == DIS_ENOMEM,
				 "parse: unexpected %s: %s", dis_strerror(rc),
				 err);
			fz_check_err(err, sizeof(err), "parse");
			fz_check(ev == NULL, "parse: event set on failure");
			continue;
		}
		if (!ev)
			continue;
		fz_check(dis_event_schema(ev) == schema, "wrong schema");
		fz_roundtrip(ev, "parsed line");
		check_tail_line(ev);
		dis_event_free(ev);
	}
	return 0;
}
