/*
 * JSON <-> Avro values, written by hand rather than with avro-c's
 * avro_value_to_json: unions are plain values ({"note": null}, not
 * {"note": {"string": ...}}) when that reads back as the same branch, and
 * Avro's tagged form ({"u": {"double": 0.1}}) when another branch would
 * take the plain value (a ["float","double"] union's double, a
 * ["string","bytes"] union's bytes), so that what we render parses back
 * as it was.
 */
#include "serde-internal.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_MAX_LEN 256

struct jctx {
	const dis_schema *schema;
	char path[PATH_MAX_LEN];
	size_t plen;
	char *err;
	size_t errlen;
};

/* ---- helpers ---- */

bool dis__utf8_valid(const unsigned char *s, size_t len)
{
	size_t i = 0;

	/* ASCII eight bytes at a time. */
	while (len - i >= 8) {
		uint64_t w;

		memcpy(&w, s + i, 8);
		if (w & 0x8080808080808080u)
			break;
		i += 8;
	}
	while (i < len) {
		unsigned char c = s[i];
		uint32_t cp;
		size_t n, k;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF) {
			n = 1;
			cp = c & 0x1F;
		} else if (c >= 0xE0 && c <= 0xEF) {
			n = 2;
			cp = c & 0x0F;
		} else if (c >= 0xF0 && c <= 0xF4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (len - i - 1 < n)
			return false;
		for (k = 1; k <= n; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += n + 1;
	}
	return true;
}

static void path_append(struct jctx *c, const char *text)
{
	size_t room = sizeof(c->path) - 1 - c->plen;
	size_t n = strlen(text);

	if (n > room)
		n = room;
	memcpy(c->path + c->plen, text, n);
	c->plen += n;
	c->path[c->plen] = '\0';
}

/* Appends ".name" (or "name" at the start); returns the length to pop. */
static size_t path_field(struct jctx *c, const char *name)
{
	size_t saved = c->plen;

	if (c->plen)
		path_append(c, ".");
	path_append(c, name);
	return saved;
}

static size_t path_index(struct jctx *c, size_t i)
{
	char buf[32];
	size_t saved = c->plen;

	snprintf(buf, sizeof(buf), "[%zu]", i);
	path_append(c, buf);
	return saved;
}

static void path_pop(struct jctx *c, size_t saved)
{
	c->plen = saved;
	c->path[saved] = '\0';
}

static int jfail(struct jctx *c, const char *fmt, ...) DIS_PRINTF(2, 3);

static int jfail(struct jctx *c, const char *fmt, ...)
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

static const char *json_kind(json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	default: return "null";
	}
}

static const char *avro_kind(avro_schema_t a)
{
	switch (avro_typeof(a)) {
	case AVRO_STRING: return "string";
	case AVRO_BYTES: return "bytes";
	case AVRO_INT32: return "int";
	case AVRO_INT64: return "long";
	case AVRO_FLOAT: return "float";
	case AVRO_DOUBLE: return "double";
	case AVRO_BOOLEAN: return "boolean";
	case AVRO_NULL: return "null";
	case AVRO_RECORD: return "record";
	case AVRO_ENUM: return "enum";
	case AVRO_FIXED: return "fixed";
	case AVRO_MAP: return "map";
	case AVRO_ARRAY: return "array";
	case AVRO_UNION: return "union";
	default: return "?";
	}
}

static avro_schema_t value_schema(const avro_value_t *v)
{
	return dis__avro_deref(avro_value_get_schema(v));
}

static json_t *record_fields(const dis_schema *s, avro_schema_t rec)
{
	return json_object_get(dis__schema_named_json(s, rec), "fields");
}

/* ---- JSON -> Avro ---- */

static int to_avro(struct jctx *c, avro_value_t *v, json_t *j);

static int avro_rc(struct jctx *c, int rc)
{
	if (rc == ENOMEM) {
		dis__errf(c->err, c->errlen, "out of memory");
		return DIS_ENOMEM;
	}
	return jfail(c, "%s", avro_strerror());
}

/* Decodes Avro JSON bytes (code points U+0000..U+00FF) into *out. */
static int json_bytes(struct jctx *c, json_t *j, unsigned char **out, size_t *n)
{
	const unsigned char *s = (const unsigned char *)json_string_value(j);
	size_t len = json_string_length(j), i, k = 0;
	unsigned char *buf = malloc(len + 1);

	if (!buf) {
		dis__errf(c->err, c->errlen, "out of memory");
		return DIS_ENOMEM;
	}
	for (i = 0; i < len; i++) {
		if (s[i] < 0x80) {
			buf[k++] = s[i];
		} else if ((s[i] == 0xC2 || s[i] == 0xC3) && i + 1 < len &&
			   (s[i + 1] & 0xC0) == 0x80) {
			buf[k++] = (unsigned char)(((s[i] & 0x03) << 6) |
						   (s[i + 1] & 0x3F));
			i++;
		} else {
			free(buf);
			return jfail(c,
				     "bytes are written as a string of "
				     "characters U+0000 to U+00FF; character "
				     "at byte %zu is above U+00FF",
				     i);
		}
	}
	*out = buf;
	*n = k;
	return 0;
}

static int json_double(struct jctx *c, json_t *j, bool is_float, double *d)
{
	if (json_is_number(j)) {
		*d = json_number_value(j);
	} else if (json_is_string(j)) {
		const char *s = json_string_value(j);

		if (strcmp(s, "NaN") == 0)
			*d = NAN;
		else if (strcmp(s, "Infinity") == 0)
			*d = INFINITY;
		else if (strcmp(s, "-Infinity") == 0)
			*d = -INFINITY;
		else
			return jfail(c,
				     "expected a number (or \"NaN\", "
				     "\"Infinity\", \"-Infinity\"), got the "
				     "string \"%.40s\"",
				     s);
	} else {
		return jfail(c, "expected a number, got %s", json_kind(j));
	}
	if (is_float && isfinite(*d) && fabs(*d) > FLT_MAX)
		return jfail(c, "%g is out of the range of a float", *d);
	return 0;
}

static int record_to_avro(struct jctx *c, avro_value_t *v, avro_schema_t a,
			  json_t *j)
{
	json_t *fields = record_fields(c->schema, a), *fv;
	size_t i, n = avro_schema_record_size(a), saved;
	const char *key;
	int rc;

	if (!json_is_object(j))
		return jfail(c, "expected an object (record %s), got %s",
			     avro_schema_name(a), json_kind(j));
	json_object_foreach(j, key, fv) {
		if (avro_schema_record_field_get_index(a, key) < 0)
			return jfail(c,
				     "unknown field \"%.64s\" (record %s "
				     "has no such field)",
				     key, avro_schema_name(a));
	}
	for (i = 0; i < n; i++) {
		const char *name = avro_schema_record_field_name(a, (int)i);
		avro_value_t f;

		fv = json_object_get(j, name);
		saved = path_field(c, name);
		if (!fv)
			fv = json_object_get(json_array_get(fields, i),
					     "default");
		if (!fv) {
			rc = jfail(c, "missing, and the field has no default");
			path_pop(c, saved);
			return rc;
		}
		rc = avro_value_get_by_index(v, i, &f, NULL);
		if (rc)
			rc = avro_rc(c, rc);
		else
			rc = to_avro(c, &f, fv);
		path_pop(c, saved);
		if (rc)
			return rc;
	}
	return 0;
}

/* Whether Avro type `t` is the usual reading of JSON value `j`. */
static bool natural(avro_type_t t, json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_NULL: return t == AVRO_NULL;
	case JSON_TRUE:
	case JSON_FALSE: return t == AVRO_BOOLEAN;
	case JSON_INTEGER: return t == AVRO_INT32 || t == AVRO_INT64;
	case JSON_REAL: return t == AVRO_FLOAT || t == AVRO_DOUBLE;
	case JSON_STRING: return t == AVRO_STRING || t == AVRO_ENUM;
	case JSON_ARRAY: return t == AVRO_ARRAY;
	default: return t == AVRO_RECORD || t == AVRO_MAP;
	}
}

/*
 * A union takes the first branch that fits the value, trying first the
 * branches that are the usual reading of its JSON kind (an integer tries
 * int and long before float and double, a string tries string and enums
 * before bytes).
 */
static int union_to_avro(struct jctx *c, avro_value_t *v, avro_schema_t a,
			 json_t *j)
{
	size_t n = avro_schema_union_size(a), i, nonnull = 0, only = 0;
	bool objects = false; /* a record or map branch reads objects */
	char scratch[8];
	char *err = c->err;
	size_t errlen = c->errlen;
	avro_value_t b;
	int rc, tagged;

	for (i = 0; i < n; i++) {
		avro_schema_t bs =
			dis__avro_deref(avro_schema_union_branch(a, (int)i));

		if (!bs)
			return avro_rc(c, EINVAL);
		if (!is_avro_null(bs)) {
			nonnull++;
			only = i;
		}
		objects |= is_avro_record(bs) || is_avro_map(bs);
	}
	/* The tagged form: one member named after a branch. An object that
	 * is not one, read plainly, when a branch reads objects. */
	if (json_is_object(j) && json_object_size(j) == 1 &&
	    avro_schema_union_branch_by_name(
		    a, &tagged, json_object_iter_key(json_object_iter(j)))) {
		rc = avro_value_set_branch(v, tagged, &b);
		if (!rc)
			rc = avro_value_reset(&b);
		if (rc)
			return avro_rc(c, rc);
		rc = to_avro(c, &b,
			     json_object_iter_value(json_object_iter(j)));
		if (rc == 0 || rc == DIS_ENOMEM || !objects)
			return rc;
	}
	/* one real type (["null", T]): report T's own error */
	if (!json_is_null(j) && nonnull == 1) {
		rc = avro_value_set_branch(v, (int)only, &b);
		if (!rc)
			rc = avro_value_reset(&b);
		return rc ? avro_rc(c, rc) : to_avro(c, &b, j);
	}
	for (i = 0; i < 2 * n; i++) {
		avro_schema_t bs = dis__avro_deref(
			avro_schema_union_branch(a, (int)(i % n)));

		if (!bs)
			return avro_rc(c, EINVAL);
		if (natural(avro_typeof(bs), j) != (i < n))
			continue;
		rc = avro_value_set_branch(v, (int)(i % n), &b);
		if (!rc)
			rc = avro_value_reset(&b);
		if (rc)
			return avro_rc(c, rc);
		c->err = scratch;
		c->errlen = sizeof(scratch);
		rc = to_avro(c, &b, j);
		c->err = err;
		c->errlen = errlen;
		if (rc == 0 || rc == DIS_ENOMEM) {
			if (rc)
				dis__errf(err, errlen, "out of memory");
			return rc;
		}
	}
	return jfail(c, "%s fits none of the union's %zu types", json_kind(j),
		     n);
}

static int to_avro(struct jctx *c, avro_value_t *v, json_t *j)
{
	avro_schema_t a = value_schema(v);
	unsigned char *buf;
	size_t n, i, saved;
	avro_value_t child;
	json_t *e;
	double d;
	int rc;

	if (!a)
		return avro_rc(c, EINVAL);
	switch (avro_typeof(a)) {
	case AVRO_NULL:
		if (!json_is_null(j))
			return jfail(c, "expected null, got %s", json_kind(j));
		rc = avro_value_set_null(v);
		break;
	case AVRO_BOOLEAN:
		if (!json_is_boolean(j))
			return jfail(c, "expected a boolean, got %s",
				     json_kind(j));
		rc = avro_value_set_boolean(v, json_is_true(j));
		break;
	case AVRO_INT32:
		if (!json_is_integer(j))
			return jfail(c, "expected an int, got %s",
				     json_kind(j));
		if (json_integer_value(j) < INT32_MIN ||
		    json_integer_value(j) > INT32_MAX)
			return jfail(c, "%lld is out of the range of an int",
				     (long long)json_integer_value(j));
		rc = avro_value_set_int(v, (int32_t)json_integer_value(j));
		break;
	case AVRO_INT64:
		if (!json_is_integer(j))
			return jfail(c, "expected a long, got %s",
				     json_kind(j));
		rc = avro_value_set_long(v, (int64_t)json_integer_value(j));
		break;
	case AVRO_FLOAT:
	case AVRO_DOUBLE: {
		bool is_float = is_avro_float(a);

		rc = json_double(c, j, is_float, &d);
		if (rc)
			return rc;
		rc = is_float ? avro_value_set_float(v, (float)d)
			      : avro_value_set_double(v, d);
		break;
	}
	case AVRO_STRING:
		if (!json_is_string(j))
			return jfail(c, "expected a string, got %s",
				     json_kind(j));
		rc = avro_value_set_string_len(v, json_string_value(j),
					       json_string_length(j) + 1);
		break;
	case AVRO_BYTES:
	case AVRO_FIXED:
		if (!json_is_string(j))
			return jfail(c, "expected %s (a string), got %s",
				     avro_kind(a), json_kind(j));
		rc = json_bytes(c, j, &buf, &n);
		if (rc)
			return rc;
		if (is_avro_fixed(a) &&
		    (int64_t)n != avro_schema_fixed_size(a)) {
			free(buf);
			return jfail(c, "fixed %s holds %lld bytes, got %zu",
				     avro_schema_name(a),
				     (long long)avro_schema_fixed_size(a), n);
		}
		rc = is_avro_fixed(a) ? avro_value_set_fixed(v, buf, n)
				      : avro_value_set_bytes(v, buf, n);
		free(buf);
		break;
	case AVRO_ENUM: {
		int sym;

		if (!json_is_string(j))
			return jfail(c, "expected a symbol of enum %s, got %s",
				     avro_schema_name(a), json_kind(j));
		sym = avro_schema_enum_get_by_name(a, json_string_value(j));
		if (sym < 0)
			return jfail(c, "\"%.64s\" is not a symbol of enum %s",
				     json_string_value(j), avro_schema_name(a));
		rc = avro_value_set_enum(v, sym);
		break;
	}
	case AVRO_ARRAY:
		if (!json_is_array(j))
			return jfail(c, "expected an array, got %s",
				     json_kind(j));
		rc = avro_value_reset(v);
		json_array_foreach(j, i, e) {
			if (rc)
				break;
			rc = avro_value_append(v, &child, NULL);
			if (rc)
				break;
			saved = path_index(c, i);
			rc = to_avro(c, &child, e);
			path_pop(c, saved);
			if (rc)
				return rc;
		}
		break;
	case AVRO_MAP: {
		const char *key;

		if (!json_is_object(j))
			return jfail(c, "expected an object (map), got %s",
				     json_kind(j));
		rc = avro_value_reset(v);
		json_object_foreach(j, key, e) {
			if (rc)
				break;
			rc = avro_value_add(v, key, &child, NULL, NULL);
			if (rc)
				break;
			saved = path_field(c, key);
			rc = to_avro(c, &child, e);
			path_pop(c, saved);
			if (rc)
				return rc;
		}
		break;
	}
	case AVRO_RECORD: return record_to_avro(c, v, a, j);
	case AVRO_UNION: return union_to_avro(c, v, a, j);
	default: return jfail(c, "unsupported Avro type");
	}
	return rc ? avro_rc(c, rc) : 0;
}

int dis__json_to_avro(const dis_schema *schema, avro_value_t *dest, json_t *j,
		      const char *path, char *err, size_t errlen)
{
	struct jctx c;

	memset(&c, 0, sizeof(c));
	c.schema = schema;
	c.err = err;
	c.errlen = errlen;
	if (path) {
		snprintf(c.path, sizeof(c.path), "%s", path);
		c.plen = strlen(c.path);
	}
	return to_avro(&c, dest, j);
}

/* ---- Avro -> JSON ---- */

static json_t *real_json(double d)
{
	if (isnan(d))
		return json_string("NaN");
	if (isinf(d))
		return json_string(d > 0 ? "Infinity" : "-Infinity");
	return json_real(d);
}

static json_t *bytes_json(const void *buf, size_t n)
{
	const unsigned char *p = buf;
	dis__buf b;
	json_t *j;

	dis__buf_init(&b);
	if (dis__buf_reserve(&b, n * 2))
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < 0x80) {
			b.data[b.len++] = p[i];
		} else {
			b.data[b.len++] = (unsigned char)(0xC0 | (p[i] >> 6));
			b.data[b.len++] = (unsigned char)(0x80 | (p[i] & 0x3F));
		}
	}
	j = json_stringn(b.len ? (const char *)b.data : "", b.len);
	dis__buf_free(&b);
	return j;
}

static int to_json(struct jctx *c, const avro_value_t *v, json_t **out);

static int to_json_checked(struct jctx *c, const avro_value_t *v, json_t **out)
{
	int rc = to_json(c, v, out);

	if (!rc && !*out) {
		dis__errf(c->err, c->errlen, "out of memory");
		return DIS_ENOMEM;
	}
	return rc;
}

/*
 * Whether `j` reads back as branch `want` into union `a`, read into a new
 * value of `v`'s class (a class made from `a` alone would miss the named
 * types its branches refer to).
 */
static int reads_back(struct jctx *c, const avro_value_t *v, avro_schema_t a,
		      json_t *j, int want, bool *same)
{
	avro_value_t tmp;
	char scratch[8];
	char *err = c->err;
	size_t errlen = c->errlen, plen = c->plen;
	int rc, got = -1;

	if (avro_generic_value_new(v->iface, &tmp)) {
		dis__errf(err, errlen, "out of memory");
		return DIS_ENOMEM;
	}
	c->err = scratch;
	c->errlen = sizeof(scratch);
	rc = union_to_avro(c, &tmp, a, j);
	c->err = err;
	c->errlen = errlen;
	path_pop(c, plen);
	*same = rc == 0 && !avro_value_get_discriminant(&tmp, &got) &&
		got == want;
	avro_value_decref(&tmp);
	if (rc == DIS_ENOMEM)
		dis__errf(err, errlen, "out of memory");
	return rc == DIS_ENOMEM ? rc : 0;
}

/* A union's value: plain when it reads back as its branch, else tagged
 * with the branch's name. */
static int union_to_json(struct jctx *c, const avro_value_t *v, avro_schema_t a,
			 json_t **out)
{
	avro_value_t child;
	avro_schema_t bs;
	size_t nonnull = 0;
	bool same = true;
	json_t *tag;
	int want, rc;

	if (avro_value_get_discriminant(v, &want) ||
	    avro_value_get_current_branch(v, &child))
		return jfail(c, "the union has no value");
	if ((rc = to_json_checked(c, &child, out)))
		return rc;
	for (size_t i = 0; i < avro_schema_union_size(a); i++)
		nonnull += !is_avro_null(avro_schema_union_branch(a, (int)i));
	/* ["null", T] reads every T back as T. */
	if (nonnull > 1 && (rc = reads_back(c, v, a, *out, want, &same))) {
		json_decref(*out);
		*out = NULL;
		return rc;
	}
	if (same)
		return 0;
	bs = dis__avro_deref(avro_schema_union_branch(a, want));
	tag = json_object();
	if (!bs || !tag) {
		json_decref(*out); /* not taken by tag */
		rc = -1;
	} else {
		rc = json_object_set_new(tag, avro_schema_type_name(bs), *out);
	}
	if (rc) {
		json_decref(tag);
		*out = NULL;
		dis__errf(c->err, c->errlen, "out of memory");
		return DIS_ENOMEM;
	}
	*out = tag;
	return 0;
}

static int to_json(struct jctx *c, const avro_value_t *v, json_t **out)
{
	avro_schema_t a = value_schema(v);
	avro_value_t child;
	const void *buf;
	const char *str, *name;
	size_t n, i, saved;
	json_t *j, *cj;
	int rc = 0;

	*out = NULL;
	if (!a)
		return avro_rc(c, EINVAL);
	switch (avro_typeof(a)) {
	case AVRO_NULL: *out = json_null(); return 0;
	case AVRO_BOOLEAN: {
		int b;

		rc = avro_value_get_boolean(v, &b);
		if (!rc)
			*out = json_boolean(b);
		break;
	}
	case AVRO_INT32: {
		int32_t x;

		rc = avro_value_get_int(v, &x);
		if (!rc)
			*out = json_integer(x);
		break;
	}
	case AVRO_INT64: {
		int64_t x;

		rc = avro_value_get_long(v, &x);
		if (!rc)
			*out = json_integer((json_int_t)x);
		break;
	}
	case AVRO_FLOAT: {
		float x;

		rc = avro_value_get_float(v, &x);
		if (!rc)
			*out = real_json(x);
		break;
	}
	case AVRO_DOUBLE: {
		double x;

		rc = avro_value_get_double(v, &x);
		if (!rc)
			*out = real_json(x);
		break;
	}
	case AVRO_STRING:
		rc = avro_value_get_string(v, &str, &n);
		if (rc)
			break;
		n = n ? n - 1 : 0;
		if (!dis__utf8_valid((const unsigned char *)str, n))
			return jfail(c, "the string is not valid UTF-8");
		*out = json_stringn(str, n);
		break;
	case AVRO_BYTES:
		rc = avro_value_get_bytes(v, &buf, &n);
		if (!rc)
			*out = bytes_json(buf, n);
		break;
	case AVRO_FIXED:
		rc = avro_value_get_fixed(v, &buf, &n);
		if (!rc)
			*out = bytes_json(buf, n);
		break;
	case AVRO_ENUM: {
		int sym;

		rc = avro_value_get_enum(v, &sym);
		if (rc)
			break;
		if (sym < 0 || sym >= avro_schema_enum_number_of_symbols(a))
			return jfail(c, "enum %s value %d is not a symbol",
				     avro_schema_name(a), sym);
		*out = json_string(avro_schema_enum_get(a, sym));
		break;
	}
	case AVRO_ARRAY:
	case AVRO_MAP:
	case AVRO_RECORD: {
		bool arr = is_avro_array(a);

		rc = avro_value_get_size(v, &n);
		if (rc)
			break;
		j = arr ? json_array() : json_object();
		if (!j)
			break;
		for (i = 0; i < n; i++) {
			name = NULL;
			rc = avro_value_get_by_index(v, i, &child, &name);
			if (rc)
				break;
			saved = name ? path_field(c, name) : path_index(c, i);
			rc = to_json_checked(c, &child, &cj);
			path_pop(c, saved);
			if (rc) {
				json_decref(j);
				return rc;
			}
			if (arr) {
				rc = json_array_append_new(j, cj);
			} else if (!name ||
				   !dis__utf8_valid((const unsigned char *)name,
						    strlen(name))) {
				json_decref(cj);
				json_decref(j);
				return jfail(c, "a map key is not valid UTF-8");
			} else {
				rc = json_object_set_new_nocheck(j, name, cj);
			}
			if (rc) {
				json_decref(j);
				dis__errf(c->err, c->errlen, "out of memory");
				return DIS_ENOMEM;
			}
		}
		if (rc) {
			json_decref(j);
			break;
		}
		*out = j;
		break;
	}
	case AVRO_UNION: return union_to_json(c, v, a, out);
	default: return jfail(c, "unsupported Avro type");
	}
	if (rc)
		return avro_rc(c, rc);
	if (!*out) {
		dis__errf(c->err, c->errlen, "out of memory");
		return DIS_ENOMEM;
	}
	return 0;
}

int dis__avro_to_json(const dis_schema *schema, const avro_value_t *src,
		      json_t **out, char *err, size_t errlen)
{
	struct jctx c;

	memset(&c, 0, sizeof(c));
	c.schema = schema; /* a union's value is read back to check it */
	c.err = err;
	c.errlen = errlen;
	return to_json_checked(&c, src, out);
}

/* ---- defaults ---- */

static int set_defaults(struct jctx *c, avro_value_t *v)
{
	static const char empty[1];
	avro_schema_t a = value_schema(v);
	avro_value_t child;
	size_t i, n, saved;
	int rc;

	if (!a)
		return avro_rc(c, EINVAL);
	switch (avro_typeof(a)) {
	case AVRO_NULL: rc = avro_value_set_null(v); break;
	case AVRO_BOOLEAN: rc = avro_value_set_boolean(v, 0); break;
	case AVRO_INT32: rc = avro_value_set_int(v, 0); break;
	case AVRO_INT64: rc = avro_value_set_long(v, 0); break;
	case AVRO_FLOAT: rc = avro_value_set_float(v, 0); break;
	case AVRO_DOUBLE: rc = avro_value_set_double(v, 0); break;
	case AVRO_STRING: rc = avro_value_set_string_len(v, empty, 1); break;
	case AVRO_BYTES: rc = avro_value_set_bytes(v, (void *)empty, 0); break;
	case AVRO_FIXED: {
		size_t size = (size_t)avro_schema_fixed_size(a);
		void *zero = calloc(1, size ? size : 1);

		if (!zero)
			return avro_rc(c, ENOMEM);
		rc = avro_value_set_fixed(v, zero, size);
		free(zero);
		break;
	}
	case AVRO_ENUM: rc = avro_value_set_enum(v, 0); break;
	case AVRO_ARRAY:
	case AVRO_MAP: rc = avro_value_reset(v); break;
	case AVRO_UNION:
		rc = avro_value_set_branch(v, 0, &child);
		if (!rc)
			rc = avro_value_reset(&child);
		if (rc)
			break;
		return set_defaults(c, &child);
	case AVRO_RECORD: {
		json_t *fields = record_fields(c->schema, a);

		n = avro_schema_record_size(a);
		for (i = 0; i < n; i++) {
			json_t *d = json_object_get(json_array_get(fields, i),
						    "default");

			rc = avro_value_get_by_index(v, i, &child, NULL);
			if (rc)
				return avro_rc(c, rc);
			saved = path_field(
				c, avro_schema_record_field_name(a, (int)i));
			rc = d ? to_avro(c, &child, d)
			       : set_defaults(c, &child);
			path_pop(c, saved);
			if (rc)
				return rc;
		}
		return 0;
	}
	default: return jfail(c, "unsupported Avro type");
	}
	return rc ? avro_rc(c, rc) : 0;
}

int dis__avro_set_defaults(const dis_schema *schema, avro_value_t *dest,
			   char *err, size_t errlen)
{
	struct jctx c;

	memset(&c, 0, sizeof(c));
	c.schema = schema;
	c.err = err;
	c.errlen = errlen;
	return set_defaults(&c, dest);
}
