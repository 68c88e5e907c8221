/*
 * Fuzz target: .avsc schema loading (dis_schema_parse).
 *
 * Input: the schema text. A schema that loads must give every event type a
 * default event that encodes, decodes (with the schema itself, and into a
 * second copy of the schema through the resolver) and renders as JSON back
 * to the same values; its ids and streams must be consistent.
 */
#include "fuzz.h"

static void check_type(const dis_schema *s, const dis_schema *twin,
		       size_t t)
{
	const char *type = dis_schema_type_name(s, t);
	char err[DIS_ERRMSG_LEN] = "";
	dis_event *ev = NULL, *back = NULL;
	char *a, *b;
	dis__buf buf;
	int rc;

	fz_check(type && dis_schema_has_type(s, type), "type %zu has no name",
		 t);
	rc = dis_event_new(s, type, &ev);
	if (rc == DIS_ENOMEM)
		return;
	fz_check(rc == 0, "dis_event_new(%s): %s", type, dis_strerror(rc));
	fz_roundtrip(ev, type);

	/* The resolver between two loads of the same text is a deep copy. */
	dis__buf_init(&buf);
	rc = dis__event_encode(ev, &buf, err, sizeof(err));
	fz_check(rc == 0, "%s: encode: %s", type, err);
	rc = dis__event_decode(twin, s, type, buf.data, buf.len, &back, err,
			       sizeof(err));
	fz_check(rc == 0, "%s: decode into a twin schema: %s", type, err);
	a = fz_data_json(ev, type);
	b = fz_data_json(back, type);
	fz_check(strcmp(a, b) == 0, "%s: resolved copy differs:\n%s\n%s",
		 type, a, b);
	free(a);
	free(b);
	dis_event_free(back);
	dis__buf_free(&buf);
	dis_event_free(ev);
}

static void check_ids(const dis_schema *s)
{
	size_t nid = dis_schema_id_count(s);

	for (size_t i = 0; i < nid; i++) {
		const char *name = dis_schema_id_name(s, i);
		dis_id_type type = dis_schema_id_type(s, i);

		fz_check(name && dis_identifier_check(name, NULL, 0) == 0,
			 "id %zu: bad name", i);
		fz_check(dis_schema_id_index(s, name) == (int)i,
			 "id %s: index mismatch", name);
		fz_check(type == DIS_ID_STRING || type == DIS_ID_LONG ||
				 type == DIS_ID_UUID,
			 "id %s: bad type %d", name, (int)type);
	}
	for (size_t i = 0; i < dis_schema_stream_count(s); i++) {
		const char *name = dis_schema_stream_name(s, i);
		const char *const *types;
		size_t n;

		fz_check(name && dis_schema_stream_types(s, name, &types,
							 &n) == 0,
			 "stream %zu: not found by name", i);
		for (size_t k = 0; k < n; k++)
			fz_check(dis_schema_has_type(s, types[k]),
				 "stream %s: unknown type", name);
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[DIS_ERRMSG_LEN] = "";
	dis_schema *s = NULL, *twin = NULL;
	char *text;
	size_t n;
	int rc;

	/* Larger documents add nothing but time. */
	if (size > 64 * 1024)
		return 0;
	text = fz_cstr(data, size);
	rc = dis_schema_parse(text, &s, err, sizeof(err));
	if (rc) {
		fz_check_code(rc, "parse");
		fz_check(rc == DIS_ESCHEMA || rc == DIS_ENOMEM,
			 "parse: unexpected %s: %s", dis_strerror(rc), err);
		fz_check_err(err, sizeof(err), "parse");
		fz_check(s == NULL, "parse: *out set on failure");
		free(text);
		return 0;
	}
	fz_check(strcmp(dis_schema_json(s), text) == 0,
		 "dis_schema_json differs from the text given");
	rc = dis_schema_parse(text, &twin, err, sizeof(err));
	fz_check(rc == 0, "the same text failed to load twice: %s", err);

	n = dis_schema_type_count(s);
	fz_check(n > 0, "a schema without event types loaded");
	for (size_t t = 0; t < n; t++)
		check_type(s, twin, t);
	check_ids(s);
	fz_check(strlen(dis__schema_fingerprint(s)) == 16,
		 "fingerprint is not 16 hex digits");
	fz_check(strcmp(dis__schema_fingerprint(s),
			dis__schema_fingerprint(twin)) == 0,
		 "fingerprint differs between two loads");
	dis_schema_free(twin);
	dis_schema_free(s);
	free(text);
	return 0;
}
