/*
 * Events: a record of the event schema (an avro-c generic value) plus its
 * id and position once stored.
 *
 * Events read from the store are decoded lazily: the store checks their
 * Avro binary at once (dis__avro_scan: every length, index and string;
 * nothing allocated) and the event keeps the bytes; the generic value is
 * built on the first access to a field that needs it. A reader that looks
 * only at the type, id and position (a listener skipping events, a
 * projection keyed on the id) never pays for decoding, and the getters of
 * numbers, booleans, enums, strings and bytes, the null test and domain
 * ids read their field in place (lazy_field). value_of() is the one way
 * to the generic value.
 *
 * Setters and getters work on a field's type, or on the matching branch of
 * a union field (["null", T], [T, "null"] or any other union): a setter
 * picks the branch of its own type first, then one it converts to without
 * loss (set_long on an int branch when the value fits, set_int on a long,
 * set_double on a float, set_string on an enum by symbol, set_bytes on a
 * fixed of that size).
 *
 * Domain ids of uuid type must be canonical text (8-4-4-4-12 hex digits);
 * the setter and dis_event_from_json store them lowercased, as PostgreSQL
 * prints them.
 */
#include "core-internal.h"
#include "serde-internal.h"

#include <ctype.h>
#include <math.h>
#include <float.h>
#include <stdlib.h>
#include <string.h>

/* A string of an undecoded event read in place: a NUL-terminated copy. */
struct kept_str {
	int idx; /* the field's */
	char *s;
};

struct dis_event {
	const dis_schema *schema;
	int type;
	int64_t id;
	dis_position pos;
	avro_value_t value;
	/* Not decoded yet: `raw` (in this allocation) holds the binary. */
	bool lazy;
	const unsigned char *raw;
	size_t rawlen;
	/* Strings read in place, kept until the event is freed or reused. */
	struct kept_str *strs;
	size_t nstrs;
};

static void drop_strs(dis_event *ev)
{
	for (size_t i = 0; i < ev->nstrs; i++)
		free(ev->strs[i].s);
	free(ev->strs);
	ev->strs = NULL;
	ev->nstrs = 0;
}

/* ---- internals ---- */

/*
 * The event's record, decoded now if it was not yet (the only change a
 * reader makes to an event: not thread safe, like the rest). NULL when
 * decoding fails, which after the scan means out of memory.
 */
static avro_value_t *value_of(const dis_event *cev)
{
	dis_event *ev = (dis_event *)cev;
	char err[DIS_ERRMSG_LEN];

	if (ev->lazy) {
		if (dis__avro_read_record(ev->schema, ev->type, ev->raw,
					  ev->rawlen, &ev->value, err,
					  sizeof(err)))
			return NULL;
		ev->lazy = false;
	}
	return &ev->value;
}

avro_value_t *dis__event_value(const dis_event *ev)
{
	return value_of(ev);
}

int dis__event_view(dis_event **slot, const dis_schema *schema, int t,
		    const void *data, size_t len)
{
	dis_event *ev = *slot;

	if (!ev) {
		ev = malloc(sizeof(*ev));
		if (!ev)
			return DIS_ENOMEM;
		*slot = ev;
	} else {
		if (!ev->lazy)
			avro_value_decref(&ev->value);
		drop_strs(ev);
	}
	memset(ev, 0, sizeof(*ev));
	ev->schema = schema;
	ev->type = t;
	ev->lazy = true;
	ev->raw = data;
	ev->rawlen = len;
	return 0;
}

int dis__event_wrap_raw(const dis_schema *schema, int t, const void *data,
			size_t len, dis_event **out)
{
	dis_event *ev = malloc(sizeof(*ev) + len);

	if (!ev)
		return DIS_ENOMEM;
	memset(ev, 0, sizeof(*ev));
	ev->schema = schema;
	ev->type = t;
	ev->lazy = true;
	ev->raw = (const unsigned char *)(ev + 1);
	ev->rawlen = len;
	if (len)
		memcpy(ev + 1, data, len);
	*out = ev;
	return 0;
}

int dis__event_wrap(const dis_schema *schema, int t, avro_value_t *value,
		    dis_event **out)
{
	dis_event *ev = calloc(1, sizeof(*ev));

	if (!ev) {
		avro_value_decref(value);
		return DIS_ENOMEM;
	}
	ev->schema = schema;
	ev->type = t;
	ev->value = *value;
	*out = ev;
	return 0;
}

void dis__event_set_stored(dis_event *ev, int64_t id, dis_position pos)
{
	ev->id = id;
	ev->pos = pos;
}

int dis__event_type_index(const dis_event *ev)
{
	return ev->type;
}

static bool uuid_text_ok(const char *s, size_t len)
{
	if (len != 36)
		return false;
	for (size_t i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!isxdigit((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

/* Whether `field` of the event's type is a domain id of uuid type. */
static bool is_uuid_id(const dis_event *ev, const char *field)
{
	int id = dis_schema_id_index(ev->schema, field);
	const int *ids;
	size_t n;

	if (id < 0 || dis_schema_id_type(ev->schema, (size_t)id) != DIS_ID_UUID)
		return false;
	n = dis__schema_type_ids(ev->schema, ev->type, &ids);
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

static avro_schema_t vschema(const avro_value_t *v)
{
	return dis__avro_deref(avro_value_get_schema(v));
}

static int lazy_field(const dis_event *ev, const char *field,
		      dis__avro_field *out, int *index);
static int lazy_string(const dis_event *cev, int idx, const dis__avro_field *f,
		       const char **value);

int dis__event_idval(const dis_event *ev, int id_index, dis__idval *out)
{
	const char *name = dis_schema_id_name(ev->schema, (size_t)id_index);
	avro_value_t f, b;
	avro_schema_t a;
	dis__avro_field in;
	size_t len;
	int idx;

	avro_value_t *v;

	if (!name || !out)
		return DIS_EINVAL;
	memset(out, 0, sizeof(*out));
	out->type = dis_schema_id_type(ev->schema, (size_t)id_index);
	if (!dis_schema_type_has_id(
		    ev->schema,
		    dis_schema_type_name(ev->schema, (size_t)ev->type), name))
		return 0;
	/* Undecoded: read in place (shard filters and indexers see every
	 * event); anything unusual takes the decoded path below. */
	if (!lazy_field(ev, name, &in, &idx)) {
		if (in.type == AVRO_NULL)
			return 0;
		if (in.type == AVRO_INT64 && out->type == DIS_ID_LONG) {
			out->num = in.l;
			out->present = true;
			return 0;
		}
		if (in.type == AVRO_STRING && out->type != DIS_ID_LONG) {
			if (memchr(in.str, '\0', in.len) ||
			    (out->type == DIS_ID_UUID &&
			     !uuid_text_ok((const char *)in.str, in.len)))
				return DIS_EINVAL;
			if (lazy_string(ev, idx, &in, &out->str))
				return DIS_ENOMEM;
			out->present = true;
			return 0;
		}
	}
	if (!(v = value_of(ev)))
		return DIS_ENOMEM;
	if (avro_value_get_by_name(v, name, &f, NULL))
		return DIS_ENOTFOUND;
	a = vschema(&f);
	if (a && is_avro_union(a)) {
		if (avro_value_get_current_branch(&f, &b))
			return DIS_EINVAL;
		f = b;
		a = vschema(&f);
	}
	if (!a)
		return DIS_EINVAL;
	switch (avro_typeof(a)) {
	case AVRO_NULL: return 0;
	case AVRO_STRING:
		if (out->type == DIS_ID_LONG)
			return DIS_EINVAL;
		if (avro_value_get_string(&f, &out->str, &len))
			return DIS_EINVAL;
		len = len ? len - 1 : 0;
		if (memchr(out->str, '\0', len))
			return DIS_EINVAL;
		if (out->type == DIS_ID_UUID && !uuid_text_ok(out->str, len))
			return DIS_EINVAL;
		out->present = true;
		return 0;
	case AVRO_INT64:
		if (out->type != DIS_ID_LONG ||
		    avro_value_get_long(&f, &out->num))
			return DIS_EINVAL;
		out->present = true;
		return 0;
	default: return DIS_EINVAL;
	}
}

/* ---- construction ---- */

static int new_value(const dis_schema *schema, int t, avro_value_t *v)
{
	if (avro_generic_value_new(dis__schema_type_iface(schema, t), v))
		return DIS_ENOMEM;
	return 0;
}

int dis_event_new(const dis_schema *schema, const char *type, dis_event **out)
{
	char err[DIS_ERRMSG_LEN];
	avro_value_t v;
	int t, rc;

	if (!schema || !type || !out)
		return DIS_EINVAL;
	t = dis__schema_type_index(schema, type);
	if (t < 0)
		return DIS_ENOTFOUND;
	rc = new_value(schema, t, &v);
	if (rc)
		return rc;
	rc = dis__avro_resolve(schema, &v, dis__schema_type_template(schema, t),
			       NULL, err, sizeof(err));
	if (rc) {
		avro_value_decref(&v);
		return rc == DIS_ENOMEM ? rc : DIS_ESERDE;
	}
	return dis__event_wrap(schema, t, &v, out);
}

/* Checks and lowercases the uuid ids of a new event. */
static int normalize_uuids(dis_event *ev, char *errbuf, size_t errlen)
{
	const int *ids;
	size_t n = dis__schema_type_ids(ev->schema, ev->type, &ids);

	for (size_t i = 0; i < n; i++) {
		const char *name =
			dis_schema_id_name(ev->schema, (size_t)ids[i]);
		const char *str;
		char lower[37];
		avro_value_t f, b;
		size_t len;

		if (dis_schema_id_type(ev->schema, (size_t)ids[i]) !=
		    DIS_ID_UUID)
			continue;
		if (!value_of(ev))
			return DIS_ENOMEM;
		if (avro_value_get_by_name(&ev->value, name, &f, NULL))
			return DIS_ESERDE;
		if (is_avro_union(vschema(&f))) {
			if (avro_value_get_current_branch(&f, &b))
				return DIS_ESERDE;
			f = b;
		}
		if (!is_avro_string(vschema(&f)))
			continue;
		if (avro_value_get_string(&f, &str, &len))
			return DIS_ESERDE;
		len = len ? len - 1 : 0;
		if (!uuid_text_ok(str, len)) {
			dis__errf(errbuf, errlen,
				  "field %s: \"%.40s\" is not "
				  "a uuid (expected 8-4-4-4-12 hex digits)",
				  name, str);
			return DIS_ESERDE;
		}
		for (size_t k = 0; k <= 36; k++)
			lower[k] = (char)tolower((unsigned char)str[k]);
		if (memcmp(lower, str, 36) != 0 &&
		    avro_value_set_string_len(&f, lower, 37))
			return DIS_ENOMEM;
	}
	return 0;
}

int dis_event_from_json(const dis_schema *schema, const char *type,
			const char *json, dis_event **out, char *errbuf,
			size_t errlen)
{
	json_error_t jerr;
	dis_event *ev;
	avro_value_t v;
	json_t *root;
	int t, rc;

	if (!schema || !type || !json || !out) {
		dis__errf(errbuf, errlen, "dis_event_from_json: NULL argument");
		return DIS_EINVAL;
	}
	t = dis__schema_type_index(schema, type);
	if (t < 0) {
		dis__errf(errbuf, errlen, "unknown event type \"%.64s\"", type);
		return DIS_ENOTFOUND;
	}
	root = json_loads(
		json, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY,
		&jerr);
	if (!root) {
		dis__errf(errbuf, errlen,
			  "event %s: invalid JSON: line %d, "
			  "column %d: %s",
			  type, jerr.line, jerr.column, jerr.text);
		return DIS_ESERDE;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		dis__errf(errbuf, errlen,
			  "event %s: the data must be a JSON "
			  "object of its fields",
			  type);
		return DIS_ESERDE;
	}
	rc = new_value(schema, t, &v);
	if (rc) {
		json_decref(root);
		dis__errf(errbuf, errlen, "out of memory");
		return rc;
	}
	rc = dis__json_to_avro(schema, &v, root, NULL, errbuf, errlen);
	json_decref(root);
	if (rc) {
		avro_value_decref(&v);
		return rc;
	}
	rc = dis__event_wrap(schema, t, &v, &ev);
	if (rc) {
		dis__errf(errbuf, errlen, "out of memory");
		return rc;
	}
	rc = normalize_uuids(ev, errbuf, errlen);
	if (rc) {
		dis_event_free(ev);
		return rc;
	}
	*out = ev;
	return 0;
}

int dis_event_copy(const dis_event *ev, dis_event **out)
{
	char err[DIS_ERRMSG_LEN];
	dis_event *copy;
	avro_value_t v;
	int rc;

	if (!ev || !out)
		return DIS_EINVAL;
	if (ev->lazy) {
		/* Still undecoded: copy the bytes. */
		rc = dis__event_wrap_raw(ev->schema, ev->type, ev->raw,
					 ev->rawlen, &copy);
		if (rc)
			return rc;
		copy->id = ev->id;
		copy->pos = ev->pos;
		*out = copy;
		return 0;
	}
	rc = new_value(ev->schema, ev->type, &v);
	if (rc)
		return rc;
	rc = dis__avro_resolve(ev->schema, &v, &ev->value, NULL, err,
			       sizeof(err));
	if (rc) {
		avro_value_decref(&v);
		return rc == DIS_ENOMEM ? rc : DIS_ESERDE;
	}
	rc = dis__event_wrap(ev->schema, ev->type, &v, &copy);
	if (rc)
		return rc;
	copy->id = ev->id;
	copy->pos = ev->pos;
	*out = copy;
	return 0;
}

void dis_event_free(dis_event *ev)
{
	if (!ev)
		return;
	if (!ev->lazy)
		avro_value_decref(&ev->value);
	drop_strs(ev);
	free(ev);
}

const dis_schema *dis_event_schema(const dis_event *ev)
{
	return ev ? ev->schema : NULL;
}

const char *dis_event_type(const dis_event *ev)
{
	return ev ? dis_schema_type_name(ev->schema, (size_t)ev->type) : NULL;
}

int64_t dis_event_id(const dis_event *ev)
{
	return ev ? ev->id : 0;
}

dis_position dis_event_position(const dis_event *ev)
{
	return ev ? ev->pos : DIS_POSITION_START;
}

struct avro_value *dis_event_avro(dis_event *ev)
{
	return ev ? value_of(ev) : NULL;
}

/* ---- setters ---- */

enum want { W_STRING, W_LONG, W_INT, W_DOUBLE, W_BOOLEAN, W_BYTES, W_NULL };

/* The value a setter writes, for the fit checks. */
struct setval {
	enum want want;
	const char *str;
	int64_t num;
	double dbl;
	size_t len;
};

/* 2: the setter's own type; 1: converts without loss; 0: no. */
static int fit(avro_schema_t a, const struct setval *sv)
{
	switch (sv->want) {
	case W_STRING:
		if (is_avro_string(a))
			return 2;
		return is_avro_enum(a) &&
		       avro_schema_enum_get_by_name(a, sv->str) >= 0;
	case W_LONG:
		if (is_avro_int64(a))
			return 2;
		return is_avro_int32(a) && sv->num >= INT32_MIN &&
		       sv->num <= INT32_MAX;
	case W_INT:
		if (is_avro_int32(a))
			return 2;
		return is_avro_int64(a);
	case W_DOUBLE:
		if (is_avro_double(a))
			return 2;
		return is_avro_float(a) &&
		       (!isfinite(sv->dbl) || fabs(sv->dbl) <= FLT_MAX);
	case W_BOOLEAN: return is_avro_boolean(a) ? 2 : 0;
	case W_BYTES:
		if (is_avro_bytes(a))
			return 2;
		return is_avro_fixed(a) &&
		       avro_schema_fixed_size(a) == (int64_t)sv->len;
	case W_NULL: return is_avro_null(a) ? 2 : 0;
	}
	return 0;
}

/* Finds where a setter writes: the field, or its best union branch. */
static int target(dis_event *ev, const char *field, const struct setval *sv,
		  avro_value_t *out)
{
	avro_value_t f;
	avro_schema_t a;
	int best = -1, score = 0;

	if (!ev || !field)
		return DIS_EINVAL;
	if (!value_of(ev))
		return DIS_ENOMEM;
	if (avro_value_get_by_name(&ev->value, field, &f, NULL))
		return DIS_ENOTFOUND;
	a = vschema(&f);
	if (!a)
		return DIS_EINVAL;
	if (!is_avro_union(a)) {
		if (!fit(a, sv))
			return DIS_EINVAL;
		*out = f;
		return 0;
	}
	for (size_t i = 0; i < avro_schema_union_size(a); i++) {
		int s = fit(
			dis__avro_deref(avro_schema_union_branch(a, (int)i)),
			sv);

		if (s > score) {
			score = s;
			best = (int)i;
		}
	}
	if (best < 0)
		return DIS_EINVAL;
	if (avro_value_set_branch(&f, best, out))
		return DIS_ENOMEM;
	return 0;
}

static int avro_set_rc(int rc)
{
	if (!rc)
		return 0;
	return rc == ENOMEM ? DIS_ENOMEM : DIS_EINVAL;
}

int dis_event_set_string(dis_event *ev, const char *field, const char *value)
{
	struct setval sv = {.want = W_STRING, .str = value};
	char lower[37];
	avro_value_t t;
	size_t len;
	int rc;

	if (!value)
		return DIS_EINVAL;
	len = strlen(value);
	if (!dis__utf8_valid((const unsigned char *)value, len))
		return DIS_EINVAL;
	rc = target(ev, field, &sv, &t);
	if (rc)
		return rc;
	if (is_avro_enum(vschema(&t)))
		return avro_set_rc(avro_value_set_enum(
			&t, avro_schema_enum_get_by_name(vschema(&t), value)));
	if (is_uuid_id(ev, field)) {
		if (!uuid_text_ok(value, len))
			return DIS_EINVAL;
		for (size_t k = 0; k <= 36; k++)
			lower[k] = (char)tolower((unsigned char)value[k]);
		value = lower;
	}
	return avro_set_rc(avro_value_set_string_len(&t, value, len + 1));
}

int dis_event_set_long(dis_event *ev, const char *field, int64_t value)
{
	struct setval sv = {.want = W_LONG, .num = value};
	avro_value_t t;
	int rc = target(ev, field, &sv, &t);

	if (rc)
		return rc;
	if (is_avro_int32(vschema(&t)))
		return avro_set_rc(avro_value_set_int(&t, (int32_t)value));
	return avro_set_rc(avro_value_set_long(&t, value));
}

int dis_event_set_int(dis_event *ev, const char *field, int32_t value)
{
	struct setval sv = {.want = W_INT, .num = value};
	avro_value_t t;
	int rc = target(ev, field, &sv, &t);

	if (rc)
		return rc;
	if (is_avro_int64(vschema(&t)))
		return avro_set_rc(avro_value_set_long(&t, value));
	return avro_set_rc(avro_value_set_int(&t, value));
}

int dis_event_set_double(dis_event *ev, const char *field, double value)
{
	struct setval sv = {.want = W_DOUBLE, .dbl = value};
	avro_value_t t;
	int rc = target(ev, field, &sv, &t);

	if (rc)
		return rc;
	if (is_avro_float(vschema(&t)))
		return avro_set_rc(avro_value_set_float(&t, (float)value));
	return avro_set_rc(avro_value_set_double(&t, value));
}

int dis_event_set_boolean(dis_event *ev, const char *field, bool value)
{
	struct setval sv = {.want = W_BOOLEAN};
	avro_value_t t;
	int rc = target(ev, field, &sv, &t);

	if (rc)
		return rc;
	return avro_set_rc(avro_value_set_boolean(&t, value ? 1 : 0));
}

int dis_event_set_bytes(dis_event *ev, const char *field, const void *value,
			size_t len)
{
	static char empty[1];
	struct setval sv = {.want = W_BYTES, .len = len};
	avro_value_t t;
	void *buf = len ? (void *)value : empty;
	int rc;

	if (!value && len)
		return DIS_EINVAL;
	rc = target(ev, field, &sv, &t);
	if (rc)
		return rc;
	if (is_avro_fixed(vschema(&t)))
		return avro_set_rc(avro_value_set_fixed(&t, buf, len));
	return avro_set_rc(avro_value_set_bytes(&t, buf, len));
}

int dis_event_set_null(dis_event *ev, const char *field)
{
	struct setval sv = {.want = W_NULL};
	avro_value_t t;
	int rc = target(ev, field, &sv, &t);

	if (rc)
		return rc;
	return avro_set_rc(avro_value_set_null(&t));
}

/* ---- getters ---- */

/*
 * A field of an event not decoded yet, read from its binary without
 * decoding the rest (a mutate or a projection reading an amount or an id
 * must not pay for a generic value of the whole record), with its index
 * in *index (when not NULL). 1 when it takes the decoding path: not lazy, no such field,
 * a type read only by decoding.
 */
static int lazy_field(const dis_event *ev, const char *field,
		      dis__avro_field *out, int *index)
{
	const dis__scan_op *ops;
	size_t n;
	int idx;

	if (!ev || !ev->lazy || !field)
		return 1;
	ops = dis__schema_type_plan(ev->schema, ev->type, &n);
	idx = avro_schema_record_field_get_index(
		dis__schema_type_avro(ev->schema, ev->type), field);
	if (!ops || idx < 0)
		return 1;
	if (index)
		*index = idx;
	return dis__avro_field_read(ops, n, (size_t)idx, ev->raw, ev->rawlen,
				    out);
}

/* A string field of an undecoded event, copied once with its NUL. */
static int lazy_string(const dis_event *cev, int idx, const dis__avro_field *f,
		       const char **value)
{
	dis_event *ev = (dis_event *)cev;
	struct kept_str *grown;
	char *copy;

	for (size_t i = 0; i < ev->nstrs; i++)
		if (ev->strs[i].idx == idx) {
			*value = ev->strs[i].s;
			return 0;
		}
	grown = realloc(ev->strs, (ev->nstrs + 1) * sizeof(*grown));
	if (!grown)
		return DIS_ENOMEM;
	ev->strs = grown;
	copy = malloc(f->len + 1);
	if (!copy)
		return DIS_ENOMEM;
	memcpy(copy, f->str, f->len);
	copy[f->len] = '\0';
	ev->strs[ev->nstrs++] = (struct kept_str){idx, copy};
	*value = copy;
	return 0;
}

/* The field's value, through a union's current branch. */
static int current(const dis_event *ev, const char *field, avro_value_t *out,
		   avro_schema_t *schema)
{
	avro_value_t f, b;

	if (!ev || !field)
		return DIS_EINVAL;
	if (!value_of(ev))
		return DIS_ENOMEM;
	if (avro_value_get_by_name(&ev->value, field, &f, NULL))
		return DIS_ENOTFOUND;
	*schema = vschema(&f);
	if (*schema && is_avro_union(*schema)) {
		if (avro_value_get_current_branch(&f, &b))
			return DIS_EINVAL;
		f = b;
		*schema = vschema(&f);
	}
	if (!*schema)
		return DIS_EINVAL;
	*out = f;
	return 0;
}

int dis_event_get_string(const dis_event *ev, const char *field,
			 const char **value)
{
	avro_value_t v;
	avro_schema_t a;
	dis__avro_field in;
	size_t len;
	int rc, sym, idx;

	if (value && !lazy_field(ev, field, &in, &idx)) {
		if (in.type == AVRO_STRING)
			return lazy_string(ev, idx, &in, value);
		if (in.type == AVRO_ENUM &&
		    (*value = avro_schema_enum_get(in.schema, (int)in.l)))
			return 0;
	}
	rc = current(ev, field, &v, &a);
	if (rc)
		return rc;
	if (!value)
		return DIS_EINVAL;
	if (is_avro_string(a))
		return avro_set_rc(avro_value_get_string(&v, value, &len));
	if (is_avro_enum(a)) {
		rc = avro_value_get_enum(&v, &sym);
		if (rc || !(*value = avro_schema_enum_get(a, sym)))
			return DIS_EINVAL;
		return 0;
	}
	return DIS_EINVAL;
}

int dis_event_get_long(const dis_event *ev, const char *field, int64_t *value)
{
	avro_value_t v;
	avro_schema_t a;
	dis__avro_field num;
	int32_t i;
	int rc;

	if (value && !lazy_field(ev, field, &num, NULL) &&
	    (num.type == AVRO_INT64 || num.type == AVRO_INT32)) {
		*value = num.l;
		return 0;
	}
	rc = current(ev, field, &v, &a);

	if (rc)
		return rc;
	if (!value)
		return DIS_EINVAL;
	if (is_avro_int64(a))
		return avro_set_rc(avro_value_get_long(&v, value));
	if (is_avro_int32(a)) {
		rc = avro_value_get_int(&v, &i);
		if (!rc)
			*value = i;
		return avro_set_rc(rc);
	}
	return DIS_EINVAL;
}

int dis_event_get_int(const dis_event *ev, const char *field, int32_t *value)
{
	avro_value_t v;
	avro_schema_t a;
	dis__avro_field num;
	int64_t l;
	int rc;

	if (value && !lazy_field(ev, field, &num, NULL) &&
	    (num.type == AVRO_INT32 ||
	     (num.type == AVRO_INT64 && num.l >= INT32_MIN &&
	      num.l <= INT32_MAX))) {
		*value = (int32_t)num.l;
		return 0;
	}
	rc = current(ev, field, &v, &a);
	if (rc)
		return rc;
	if (!value)
		return DIS_EINVAL;
	if (is_avro_int32(a))
		return avro_set_rc(avro_value_get_int(&v, value));
	if (is_avro_int64(a)) {
		rc = avro_value_get_long(&v, &l);
		if (rc || l < INT32_MIN || l > INT32_MAX)
			return DIS_EINVAL;
		*value = (int32_t)l;
		return 0;
	}
	return DIS_EINVAL;
}

int dis_event_get_double(const dis_event *ev, const char *field, double *value)
{
	avro_value_t v;
	avro_schema_t a;
	dis__avro_field num;
	float f;
	int rc;

	if (value && !lazy_field(ev, field, &num, NULL) &&
	    (num.type == AVRO_DOUBLE || num.type == AVRO_FLOAT)) {
		*value = num.d;
		return 0;
	}
	rc = current(ev, field, &v, &a);

	if (rc)
		return rc;
	if (!value)
		return DIS_EINVAL;
	if (is_avro_double(a))
		return avro_set_rc(avro_value_get_double(&v, value));
	if (is_avro_float(a)) {
		rc = avro_value_get_float(&v, &f);
		if (!rc)
			*value = f;
		return avro_set_rc(rc);
	}
	return DIS_EINVAL;
}

int dis_event_get_boolean(const dis_event *ev, const char *field, bool *value)
{
	avro_value_t v;
	avro_schema_t a;
	dis__avro_field num;
	int b, rc;

	if (value && !lazy_field(ev, field, &num, NULL) &&
	    num.type == AVRO_BOOLEAN) {
		*value = num.l != 0;
		return 0;
	}
	rc = current(ev, field, &v, &a);
	if (rc)
		return rc;
	if (!value || !is_avro_boolean(a))
		return DIS_EINVAL;
	rc = avro_value_get_boolean(&v, &b);
	if (!rc)
		*value = b != 0;
	return avro_set_rc(rc);
}

int dis_event_get_bytes(const dis_event *ev, const char *field,
			const void **value, size_t *len)
{
	avro_value_t v;
	avro_schema_t a;
	dis__avro_field in;
	const char *s;
	size_t n;
	int rc;

	/* In place: the bytes live as long as the event's. */
	if (value && len && !lazy_field(ev, field, &in, NULL) &&
	    (in.type == AVRO_BYTES || in.type == AVRO_FIXED ||
	     in.type == AVRO_STRING)) {
		*value = in.len ? (const void *)in.str : "";
		*len = in.len;
		return 0;
	}
	rc = current(ev, field, &v, &a);
	if (rc)
		return rc;
	if (!value || !len)
		return DIS_EINVAL;
	if (is_avro_bytes(a))
		rc = avro_value_get_bytes(&v, value, len);
	else if (is_avro_fixed(a))
		rc = avro_value_get_fixed(&v, value, len);
	else if (is_avro_string(a)) {
		rc = avro_value_get_string(&v, &s, &n);
		if (!rc) {
			*value = s;
			*len = n ? n - 1 : 0;
		}
	} else {
		return DIS_EINVAL;
	}
	if (!rc && !*value)
		*value = "";
	return avro_set_rc(rc);
}

bool dis_event_is_null(const dis_event *ev, const char *field)
{
	avro_value_t v;
	avro_schema_t a;
	dis__avro_field in;

	if (!lazy_field(ev, field, &in, NULL))
		return in.type == AVRO_NULL;
	if (current(ev, field, &v, &a))
		return false;
	return is_avro_null(a);
}

/* ---- JSON ---- */

static json_t *data_json(const dis_event *ev, int *rc)
{
	char err[DIS_ERRMSG_LEN];
	json_t *j = NULL;

	if (!value_of(ev)) {
		*rc = DIS_ENOMEM;
		return NULL;
	}
	*rc = dis__avro_to_json(ev->schema, &ev->value, &j, err, sizeof(err));
	if (*rc && *rc != DIS_ENOMEM)
		*rc = DIS_ESERDE;
	return j;
}

static int dump(json_t *j, char **out)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);

	json_decref(j);
	if (!s)
		return DIS_ENOMEM;
	/* jansson allocates with malloc: dis_free() frees it */
	*out = s;
	return 0;
}

int dis_event_data_json(const dis_event *ev, char **json)
{
	json_t *j;
	int rc;

	if (!ev || !json)
		return DIS_EINVAL;
	j = data_json(ev, &rc);
	if (rc)
		return rc;
	return dump(j, json);
}

int dis_event_to_json(const dis_event *ev, char **json)
{
	json_t *data, *j;
	int rc;

	if (!ev || !json)
		return DIS_EINVAL;
	data = data_json(ev, &rc);
	if (rc)
		return rc;
	j = json_object();
	if (!j) {
		json_decref(data);
		return DIS_ENOMEM;
	}
	/* json_object_set_new() takes the value even when it fails */
	if (json_object_set_new(j, "id", json_integer(ev->id)) ||
	    json_object_set_new(j, "type", json_string(dis_event_type(ev)))) {
		json_decref(data);
		json_decref(j);
		return DIS_ENOMEM;
	}
	if (json_object_set_new(j, "data", data)) {
		json_decref(j);
		return DIS_ENOMEM;
	}
	return dump(j, json);
}

bool dis_event_equal(const dis_event *a, const dis_event *b)
{
	if (!a || !b)
		return a == b;
	if (strcmp(dis_event_type(a), dis_event_type(b)) != 0)
		return false;
	if (!value_of(a) || !value_of(b))
		return false;
	return avro_value_equal((avro_value_t *)&a->value,
				(avro_value_t *)&b->value) != 0;
}
