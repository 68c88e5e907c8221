/*
 * Avro schema resolution: reads a value decoded with the writer's schema
 * into a value of the reader's schema.
 *
 * avro-c 1.11 has a resolver (avro_resolved_writer) but it cannot fill a
 * reader field that the writer lacks from the field's default, which is
 * the whole point of adding fields with defaults. So we do it here, on
 * decoded generic values:
 *   - records: fields matched by name; writer-only fields are dropped;
 *     reader-only fields take their JSON default (DIS_ESERDE without one);
 *     named types (records, enums, fixed) match by simple name;
 *   - promotions: int -> long, float, double; long -> float, double;
 *     float -> double; string <-> bytes;
 *   - enums by symbol; a symbol the reader lacks takes the reader enum's
 *     "default" when it has one;
 *   - unions: the writer's branch is read as the first reader branch of
 *     the same type, else the first it can be promoted to; a non-union on
 *     either side is read through the other side's matching branch.
 * Field aliases are not supported.
 */
#include "serde-internal.h"

#include <stdlib.h>
#include <string.h>

struct rctx {
	const dis_schema *reader;
	char path[256];
	size_t plen;
	char *err;
	size_t errlen;
};

static int rfail(struct rctx *c, const char *fmt, ...) DIS_PRINTF(2, 3);

static int rfail(struct rctx *c, const char *fmt, ...)
{
	char msg[DIS_ERRMSG_LEN];
	va_list ap;

	va_start(ap, fmt);
	dis__verrf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->plen)
		dis__errf(c->err, c->errlen, "field %s: %s", c->path, msg);
	else
		dis__errf(c->err, c->errlen, "%s", msg);
	return DIS_ESERDE;
}

static int ravro(struct rctx *c, int rc)
{
	if (rc == ENOMEM) {
		dis__errf(c->err, c->errlen, "out of memory");
		return DIS_ENOMEM;
	}
	return rfail(c, "%s", avro_strerror());
}

/* Appends what fits of `s` to the path. */
static void rput(struct rctx *c, const char *s, size_t n)
{
	size_t room = sizeof(c->path) - 1 - c->plen;

	if (n > room)
		n = room;
	memcpy(c->path + c->plen, s, n);
	c->plen += n;
	c->path[c->plen] = '\0';
}

/* Steps into `name` (or element `index`); formatted by hand: every value
 * resolved takes a step, an error message rarely reads it. */
static size_t rpath(struct rctx *c, const char *name, size_t index)
{
	size_t saved = c->plen;

	if (name) {
		if (c->plen)
			rput(c, ".", 1);
		rput(c, name, strlen(name));
	} else {
		char digits[21];

		rput(c, "[", 1);
		rput(c, digits, dis__utoa(index, digits));
		rput(c, "]", 1);
	}
	return saved;
}

static void rpop(struct rctx *c, size_t saved)
{
	c->plen = saved;
	c->path[saved] = '\0';
}

static const char *kind(avro_schema_t a)
{
	if (is_avro_named_type(a))
		return avro_schema_name(a);
	return avro_schema_type_name(a);
}

static bool same_name(avro_schema_t r, avro_schema_t w)
{
	return strcmp(avro_schema_name(r), avro_schema_name(w)) == 0;
}

/* Writer schema `w` read as reader schema `r` without promotion. */
static bool exact(avro_schema_t r, avro_schema_t w)
{
	if (avro_typeof(r) != avro_typeof(w))
		return false;
	if (is_avro_named_type(r))
		return same_name(r, w);
	return true;
}

/* Writer schema `w` promotable to reader schema `r`. */
static bool promotable(avro_schema_t r, avro_schema_t w)
{
	avro_type_t rt = avro_typeof(r), wt = avro_typeof(w);

	switch (rt) {
	case AVRO_INT64: return wt == AVRO_INT32;
	case AVRO_FLOAT: return wt == AVRO_INT32 || wt == AVRO_INT64;
	case AVRO_DOUBLE:
		return wt == AVRO_INT32 || wt == AVRO_INT64 || wt == AVRO_FLOAT;
	case AVRO_STRING: return wt == AVRO_BYTES;
	case AVRO_BYTES: return wt == AVRO_STRING;
	default: return false;
	}
}

/* Reader union branch for writer schema `w`, or -1. */
static int pick_branch(avro_schema_t ru, avro_schema_t w)
{
	size_t n = avro_schema_union_size(ru);

	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < n; i++) {
			avro_schema_t b = dis__avro_deref(
				avro_schema_union_branch(ru, (int)i));

			if (b && (pass ? promotable(b, w) : exact(b, w)))
				return (int)i;
		}
	}
	return -1;
}

static int resolve(struct rctx *c, avro_value_t *dest, const avro_value_t *src);

static int resolve_record(struct rctx *c, avro_value_t *dest, avro_schema_t r,
			  const avro_value_t *src, avro_schema_t w)
{
	json_t *fields =
		json_object_get(dis__schema_named_json(c->reader, r), "fields");
	size_t n = avro_schema_record_size(r), saved;
	int rc;

	for (size_t i = 0; i < n; i++) {
		const char *name = avro_schema_record_field_name(r, (int)i);
		avro_value_t df, sf;
		json_t *d;

		rc = avro_value_get_by_index(dest, i, &df, NULL);
		if (rc)
			return ravro(c, rc);
		saved = rpath(c, name, 0);
		if (avro_schema_record_field_get_index(w, name) >= 0) {
			rc = avro_value_get_by_name(src, name, &sf, NULL);
			rc = rc ? ravro(c, rc) : resolve(c, &df, &sf);
		} else {
			d = json_object_get(json_array_get(fields, i),
					    "default");
			if (d)
				rc = dis__json_to_avro(c->reader, &df, d,
						       c->path, c->err,
						       c->errlen);
			else
				rc = rfail(c,
					   "the writer's record %s lacks "
					   "this field and the reader gives "
					   "it no default",
					   avro_schema_name(w));
		}
		rpop(c, saved);
		if (rc)
			return rc;
	}
	return 0;
}

static int resolve_enum(struct rctx *c, avro_value_t *dest, avro_schema_t r,
			const avro_value_t *src, avro_schema_t w)
{
	const char *sym;
	int idx, rc;

	rc = avro_value_get_enum(src, &idx);
	if (rc)
		return ravro(c, rc);
	if (idx < 0 || idx >= avro_schema_enum_number_of_symbols(w))
		return rfail(c, "enum %s value %d is out of range",
			     avro_schema_name(w), idx);
	sym = avro_schema_enum_get(w, idx);
	idx = avro_schema_enum_get_by_name(r, sym);
	if (idx < 0) {
		json_t *d = json_object_get(
			dis__schema_named_json(c->reader, r), "default");

		if (json_is_string(d))
			idx = avro_schema_enum_get_by_name(
				r, json_string_value(d));
		if (idx < 0)
			return rfail(c,
				     "symbol %s of enum %s is unknown to "
				     "the reader, and the reader's enum has "
				     "no default",
				     sym, avro_schema_name(r));
	}
	rc = avro_value_set_enum(dest, idx);
	return rc ? ravro(c, rc) : 0;
}

static int resolve_list(struct rctx *c, avro_value_t *dest,
			const avro_value_t *src, bool map)
{
	avro_value_t sc, dc;
	const char *key;
	size_t n, saved;
	int rc;

	rc = avro_value_get_size(src, &n);
	if (!rc)
		rc = avro_value_reset(dest);
	if (rc)
		return ravro(c, rc);
	for (size_t i = 0; i < n; i++) {
		key = NULL;
		rc = avro_value_get_by_index(src, i, &sc, &key);
		if (!rc)
			rc = map ? avro_value_add(dest, key, &dc, NULL, NULL)
				 : avro_value_append(dest, &dc, NULL);
		if (rc)
			return ravro(c, rc);
		saved = rpath(c, map ? key : NULL, i);
		rc = resolve(c, &dc, &sc);
		rpop(c, saved);
		if (rc)
			return rc;
	}
	return 0;
}

/* Sets a string from possibly non-terminated bytes. */
static int set_string_bytes(struct rctx *c, avro_value_t *dest, const void *buf,
			    size_t n)
{
	char *copy;
	int rc;

	if (!dis__utf8_valid(buf, n))
		return rfail(c, "bytes read as a string are not valid UTF-8");
	copy = malloc(n + 1);
	if (!copy)
		return ravro(c, ENOMEM);
	if (n)
		memcpy(copy, buf, n);
	copy[n] = '\0';
	rc = avro_value_set_string_len(dest, copy, n + 1);
	free(copy);
	return rc ? ravro(c, rc) : 0;
}

static int resolve_primitive(struct rctx *c, avro_value_t *dest,
			     avro_schema_t r, const avro_value_t *src,
			     avro_schema_t w)
{
	static char empty[1];
	avro_type_t wt = avro_typeof(w);
	const void *buf = NULL;
	const char *str = NULL;
	size_t n = 0;
	int32_t i32 = 0;
	int64_t i64 = 0;
	float f = 0;
	double d = 0;
	int b, rc = 0;

	/* read the writer's number in its widest form */
	switch (wt) {
	case AVRO_INT32:
		rc = avro_value_get_int(src, &i32);
		i64 = i32;
		d = i32;
		break;
	case AVRO_INT64:
		rc = avro_value_get_long(src, &i64);
		d = (double)i64;
		break;
	case AVRO_FLOAT:
		rc = avro_value_get_float(src, &f);
		d = f;
		break;
	case AVRO_DOUBLE: rc = avro_value_get_double(src, &d); break;
	default: break;
	}
	if (rc)
		return ravro(c, rc);

	switch (avro_typeof(r)) {
	case AVRO_NULL: rc = avro_value_set_null(dest); break;
	case AVRO_BOOLEAN:
		rc = avro_value_get_boolean(src, &b);
		if (!rc)
			rc = avro_value_set_boolean(dest, b);
		break;
	case AVRO_INT32: rc = avro_value_set_int(dest, i32); break;
	case AVRO_INT64: rc = avro_value_set_long(dest, i64); break;
	case AVRO_FLOAT:
		if (wt == AVRO_FLOAT)
			rc = avro_value_set_float(dest, f);
		else
			rc = avro_value_set_float(dest, wt == AVRO_INT64
								? (float)i64
								: (float)i32);
		break;
	case AVRO_DOUBLE: rc = avro_value_set_double(dest, d); break;
	case AVRO_STRING:
		if (wt == AVRO_BYTES) {
			rc = avro_value_get_bytes(src, &buf, &n);
			if (rc)
				break;
			return set_string_bytes(c, dest, n ? buf : empty, n);
		}
		rc = avro_value_get_string(src, &str, &n);
		if (!rc)
			rc = avro_value_set_string_len(dest, n ? str : empty,
						       n ? n : 1);
		break;
	case AVRO_BYTES:
		if (wt == AVRO_STRING) {
			rc = avro_value_get_string(src, &str, &n);
			buf = str;
			n = n ? n - 1 : 0;
		} else {
			rc = avro_value_get_bytes(src, &buf, &n);
		}
		if (!rc)
			rc = avro_value_set_bytes(dest, n ? (void *)buf : empty,
						  n);
		break;
	case AVRO_FIXED:
		if (avro_schema_fixed_size(r) != avro_schema_fixed_size(w))
			return rfail(c,
				     "fixed %s has %lld bytes for the "
				     "writer, %lld for the reader",
				     avro_schema_name(r),
				     (long long)avro_schema_fixed_size(w),
				     (long long)avro_schema_fixed_size(r));
		rc = avro_value_get_fixed(src, &buf, &n);
		if (!rc)
			rc = avro_value_set_fixed(dest, n ? (void *)buf : empty,
						  n);
		break;
	default: return rfail(c, "unsupported Avro type");
	}
	return rc ? ravro(c, rc) : 0;
}

static int resolve(struct rctx *c, avro_value_t *dest, const avro_value_t *src)
{
	avro_schema_t r = dis__avro_deref(avro_value_get_schema(dest));
	avro_schema_t w = dis__avro_deref(avro_value_get_schema(src));
	avro_value_t sb, db;
	int rc, i;

	if (!r || !w)
		return ravro(c, EINVAL);
	if (is_avro_union(w)) {
		rc = avro_value_get_current_branch(src, &sb);
		if (rc)
			return rfail(c, "the writer's union has no value");
		return resolve(c, dest, &sb);
	}
	if (is_avro_union(r)) {
		i = pick_branch(r, w);
		if (i < 0)
			return rfail(c,
				     "the writer's %s fits no type of the "
				     "reader's union",
				     kind(w));
		rc = avro_value_set_branch(dest, i, &db);
		if (!rc)
			rc = avro_value_reset(&db);
		return rc ? ravro(c, rc) : resolve(c, &db, src);
	}
	if (!exact(r, w) && !promotable(r, w))
		return rfail(c,
			     "the writer's %s cannot be read as the "
			     "reader's %s",
			     kind(w), kind(r));
	switch (avro_typeof(r)) {
	case AVRO_RECORD: return resolve_record(c, dest, r, src, w);
	case AVRO_ENUM: return resolve_enum(c, dest, r, src, w);
	case AVRO_ARRAY:
	case AVRO_MAP: return resolve_list(c, dest, src, is_avro_map(r));
	default: return resolve_primitive(c, dest, r, src, w);
	}
}

int dis__avro_resolve(const dis_schema *reader, avro_value_t *dest,
		      const avro_value_t *src, const char *path, char *err,
		      size_t errlen)
{
	struct rctx c;

	memset(&c, 0, sizeof(c));
	c.reader = reader;
	c.err = err;
	c.errlen = errlen;
	if (path) {
		snprintf(c.path, sizeof(c.path), "%s", path);
		c.plen = strlen(c.path);
	}
	return resolve(&c, dest, src);
}
