/* disctl input parsing: JSON event lines and query arguments. */
#include "cliparse.h"
#include "core-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(int code, char *err, size_t errlen, const char *fmt, ...)
	DIS_PRINTF(4, 5);

static int fail(int code, char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

static bool blank(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
			return false;
	}
	return true;
}

/*
 * Refuses (and frees) an event whose domain id holds a value the event
 * table cannot store (a malformed UUID, a NUL byte), as the store would.
 */
static int check_ids(dis_event **ev, char *err, size_t errlen)
{
	const dis_schema *schema = dis_event_schema(*ev);
	const char *type = dis_event_type(*ev);
	dis__idval v;

	for (size_t i = 0; i < dis_schema_id_count(schema); i++) {
		const char *id = dis_schema_id_name(schema, i);

		if (!dis_schema_type_has_id(schema, type, id) ||
		    !dis__event_idval(*ev, (int)i, &v))
			continue;
		dis_event_free(*ev);
		*ev = NULL;
		return fail(DIS_EINVAL, err, errlen,
			    "domain id \"%s\" has no valid value%s", id,
			    dis_schema_id_type(schema, i) == DIS_ID_UUID
				    ? " (not a UUID)"
				    : "");
	}
	return 0;
}

int disctl_parse_event(const dis_schema *schema, const char *line, size_t len,
		       dis_event **out, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root, *type, *data;
	const char *key;
	json_t *val;
	char *text;
	int rc;

	*out = NULL;
	if (blank(line, len))
		return 0;
	/* As dis_event_from_json reads: "\u0000" is how Avro's JSON writes
	 * a zero byte of a bytes field, and how tail prints it. */
	root = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
			  &jerr);
	if (!root)
		return fail(DIS_EINVAL, err, errlen,
			    "invalid JSON at column %d: %s", jerr.column,
			    jerr.text);
	rc = DIS_EINVAL;
	if (!json_is_object(root)) {
		fail(rc, err, errlen,
		     "expected an object {\"type\": ..., \"data\": {...}}");
		goto out;
	}
	json_object_foreach(root, key, val) {
		if (strcmp(key, "type") && strcmp(key, "data") &&
		    strcmp(key, "id")) {
			fail(rc, err, errlen,
			     "unexpected member \"%s\" (expected \"type\" and "
			     "\"data\")",
			     key);
			goto out;
		}
	}
	type = json_object_get(root, "type");
	data = json_object_get(root, "data");
	if (!json_is_string(type) ||
	    strlen(json_string_value(type)) != json_string_length(type)) {
		fail(rc, err, errlen, "\"type\" must be a string without NUL");
		goto out;
	}
	if (!json_is_object(data)) {
		fail(rc, err, errlen, "\"data\" must be an object");
		goto out;
	}
	if (!dis_schema_has_type(schema, json_string_value(type))) {
		fail(rc, err, errlen, "unknown event type \"%s\"",
		     json_string_value(type));
		goto out;
	}
	text = json_dumps(data, JSON_COMPACT);
	if (!text) {
		rc = fail(DIS_ENOMEM, err, errlen, "out of memory");
		goto out;
	}
	rc = dis_event_from_json(schema, json_string_value(type), text, out,
				 err, errlen);
	free(text);
	if (!rc)
		rc = check_ids(out, err, errlen);
out:
	json_decref(root);
	return rc;
}

/* Strict base-10 int64: the whole text, no blanks, no overflow. */
static bool parse_long(const char *s, int64_t *v)
{
	char *end;
	long long n;

	if (!*s || (*s != '-' && (*s < '0' || *s > '9')))
		return false;
	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno || *end)
		return false;
	*v = n;
	return true;
}

/*
 * Adds one ID=VALUE equality to filter f of query q. Returns DIS_EINVAL
 * with a message naming the argument when it is not usable.
 */
static int add_where(dis_query *q, dis_filter *f, const char *arg, char *err,
		     size_t errlen)
{
	const dis_schema *schema = dis_query_schema(q);
	const char *eq = strchr(arg, '=');
	char name[128];
	const char *value;
	size_t n;
	int idx, rc;
	int64_t num;

	if (!eq || eq == arg)
		return fail(DIS_EINVAL, err, errlen,
			    "--where \"%s\": expected ID=VALUE", arg);
	n = (size_t)(eq - arg);
	if (n >= sizeof(name))
		return fail(DIS_EINVAL, err, errlen,
			    "--where: domain id name too long");
	memcpy(name, arg, n);
	name[n] = '\0';
	value = eq + 1;
	idx = dis_schema_id_index(schema, name);
	if (idx < 0)
		return fail(DIS_EINVAL, err, errlen,
			    "--where \"%s\": the schema has no domain id "
			    "\"%s\"",
			    arg, name);
	switch (dis_schema_id_type(schema, (size_t)idx)) {
	case DIS_ID_LONG:
		if (!parse_long(value, &num))
			return fail(DIS_EINVAL, err, errlen,
				    "--where \"%s\": \"%s\" is not a whole "
				    "number (domain id \"%s\" is a long)",
				    arg, value, name);
		rc = dis_filter_where_long(f, name, num);
		break;
	case DIS_ID_UUID: rc = dis_filter_where_uuid(f, name, value); break;
	default: rc = dis_filter_where_string(f, name, value); break;
	}
	if (rc)
		return fail(rc, err, errlen, "--where \"%s\": %s", arg,
			    dis_query_errmsg(q));
	return 0;
}

int disctl_build_query(const dis_schema *schema, const disctl_query_args *a,
		       dis_query **out, char *err, size_t errlen)
{
	dis_query *q = NULL;
	dis_filter *f = NULL;
	int rc;

	rc = dis_query_new(schema, &q);
	if (rc)
		return fail(rc, err, errlen, "cannot create a query: %s",
			    dis_strerror(rc));
	rc = dis_query_add_filter(q, &f);
	if (rc) {
		fail(rc, err, errlen, "cannot create a query: %s",
		     dis_strerror(rc));
		goto fail;
	}
	for (size_t i = 0; i < a->ntypes; i++) {
		if (!dis_schema_has_type(schema, a->types[i])) {
			rc = fail(DIS_EINVAL, err, errlen,
				  "--type \"%s\": no such event type",
				  a->types[i]);
			goto fail;
		}
		dis_filter_type(f, a->types[i]);
	}
	for (size_t i = 0; i < a->nstreams; i++) {
		const char *const *types;
		size_t n;

		if (dis_schema_stream_types(schema, a->streams[i], &types,
					    &n)) {
			rc = fail(DIS_EINVAL, err, errlen,
				  "--stream \"%s\": no such stream",
				  a->streams[i]);
			goto fail;
		}
		dis_filter_stream(f, a->streams[i]);
	}
	for (size_t i = 0; i < a->nwheres; i++) {
		rc = add_where(q, f, a->wheres[i], err, errlen);
		if (rc)
			goto fail;
	}
	/* The builder calls above record their first error on the query. */
	rc = dis_query_check(q);
	if (rc) {
		fail(rc, err, errlen, "%s", dis_query_errmsg(q));
		goto fail;
	}
	*out = q;
	return 0;
fail:
	dis_query_free(q);
	return rc;
}
