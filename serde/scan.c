/*
 * A check of Avro binary data against its writer schema that allocates
 * nothing, run before avro-c decodes it.
 *
 * avro-c trusts the lengths in the data: a string length of 2^62 makes it
 * try to allocate 2^62 bytes, a block count of 2^62 makes it loop
 * appending elements, a 10-byte varint overflows. This walk reads every
 * varint (at most 10 bytes, no overflow), checks every string, bytes and
 * fixed length against the bytes left, bounds every array and map block
 * count by the bytes left divided by the smallest encoding of one item,
 * checks union and enum indexes, booleans, int ranges and UTF-8, checks
 * the byte size of negative-count blocks, and that the value ends exactly
 * where the data does. Items that take no bytes (null, empty records) are
 * bounded by a budget of visited values proportional to the data size.
 */
#include "serde-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCAN_CACHE 32

struct scan {
	const unsigned char *start, *p, *end;
	size_t steps, max_steps;
	char *err;
	size_t errlen;
	struct {
		avro_schema_t s;
		size_t min;
	} cache[SCAN_CACHE];
	size_t ncache;
};

static int sfail(struct scan *s, const char *fmt, ...) DIS_PRINTF(2, 3);

static int sfail(struct scan *s, const char *fmt, ...)
{
	char msg[DIS_ERRMSG_LEN];
	va_list ap;

	va_start(ap, fmt);
	dis__verrf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	dis__errf(s->err, s->errlen, "corrupt Avro data at byte %zu of %zu: %s",
		  (size_t)(s->p - s->start), (size_t)(s->end - s->start), msg);
	return DIS_ESERDE;
}

static size_t left(const struct scan *s)
{
	return (size_t)(s->end - s->p);
}

static int varint(struct scan *s, int64_t *out, const char *what)
{
	uint64_t v = 0;
	unsigned char b;

	/* One byte (small values and lengths): most varints. */
	if (s->p != s->end && !(*s->p & 0x80)) {
		v = *s->p++;
		*out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
		return 0;
	}
	for (int i = 0; i < 10; i++) {
		if (s->p == s->end)
			return sfail(s, "the data ends inside the %s", what);
		b = *s->p++;
		if (i == 9 && b > 1)
			return sfail(s, "the %s overflows 64 bits", what);
		v |= (uint64_t)(b & 0x7F) << (7 * i);
		if (!(b & 0x80)) {
			*out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
			return 0;
		}
	}
	return sfail(s, "the %s is longer than 10 bytes", what);
}

static size_t sat_add(size_t a, size_t b)
{
	return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

/* Fewest bytes one value of `a` can take. */
static size_t min_size(avro_schema_t a, int depth)
{
	size_t n, m, best;

	a = dis__avro_deref(a);
	if (!a || depth > 2 * DIS__SCHEMA_MAX_DEPTH)
		return 0;
	switch (avro_typeof(a)) {
	case AVRO_NULL: return 0;
	case AVRO_FLOAT: return 4;
	case AVRO_DOUBLE: return 8;
	case AVRO_FIXED: return (size_t)avro_schema_fixed_size(a);
	case AVRO_RECORD:
		m = 0;
		n = avro_schema_record_size(a);
		for (size_t i = 0; i < n; i++)
			m = sat_add(
				m,
				min_size(avro_schema_record_field_get_by_index(
						 a, (int)i),
					 depth + 1));
		return m;
	case AVRO_UNION:
		best = SIZE_MAX;
		n = avro_schema_union_size(a);
		for (size_t i = 0; i < n; i++) {
			m = min_size(avro_schema_union_branch(a, (int)i),
				     depth + 1);
			if (m < best)
				best = m;
		}
		return sat_add(1, n ? best : 0);
	default:
		/* boolean, int, long, enum, string, bytes, array, map */
		return 1;
	}
}

static size_t min_size_cached(struct scan *s, avro_schema_t a)
{
	size_t m;

	for (size_t i = 0; i < s->ncache; i++)
		if (s->cache[i].s == a)
			return s->cache[i].min;
	m = min_size(a, 0);
	if (s->ncache < SCAN_CACHE) {
		s->cache[s->ncache].s = a;
		s->cache[s->ncache].min = m;
		s->ncache++;
	}
	return m;
}

static int scan_value(struct scan *s, avro_schema_t a, int depth);

static int scan_string(struct scan *s, bool utf8, const char *what)
{
	int64_t n;
	int rc = varint(s, &n, what);

	if (rc)
		return rc;
	if (n < 0)
		return sfail(s, "negative %s length %lld", what, (long long)n);
	if ((uint64_t)n > left(s))
		return sfail(s, "%s length %lld exceeds the %zu bytes left",
			     what, (long long)n, left(s));
	if (utf8 && !dis__utf8_valid(s->p, (size_t)n))
		return sfail(s, "the %s is not valid UTF-8", what);
	s->p += n;
	return 0;
}

static int scan_blocks(struct scan *s, avro_schema_t a, int depth)
{
	bool map = is_avro_map(a);
	avro_schema_t item = map ? avro_schema_map_values(a)
				 : avro_schema_array_items(a);
	const char *what = map ? "map" : "array";
	size_t m = min_size_cached(s, item);
	int64_t count, size;
	int rc;

	if (map)
		m = sat_add(m, 1);
	for (;;) {
		const unsigned char *block;
		bool sized = false;

		rc = varint(s, &count, "block count");
		if (rc)
			return rc;
		if (count == 0)
			return 0;
		if (count < 0) {
			if (count == INT64_MIN)
				return sfail(s, "%s block count overflows",
					     what);
			count = -count;
			rc = varint(s, &size, "block byte size");
			if (rc)
				return rc;
			if (size < 0 || (uint64_t)size > left(s))
				return sfail(s,
					     "%s block byte size %lld does "
					     "not fit the %zu bytes left",
					     what, (long long)size, left(s));
			sized = true;
		}
		if (m > 0 && (uint64_t)count > left(s) / m)
			return sfail(s,
				     "%s block of %lld items needs at least "
				     "%zu bytes each, only %zu bytes are left",
				     what, (long long)count, m, left(s));
		block = s->p;
		for (int64_t i = 0; i < count; i++) {
			if (map) {
				rc = scan_string(s, true, "map key");
				if (rc)
					return rc;
			}
			rc = scan_value(s, item, depth + 1);
			if (rc)
				return rc;
		}
		if (sized && (size_t)(s->p - block) != (size_t)size)
			return sfail(s,
				     "%s block byte size says %lld bytes, "
				     "its items take %zu",
				     what, (long long)size,
				     (size_t)(s->p - block));
	}
}

/*
 * A value of a type without children (`a` dereferenced): 1 when `a` has
 * children, else 0 or the error.
 */
static int scan_leaf(struct scan *s, avro_type_t type, avro_schema_t a)
{
	int64_t v;
	size_t n;
	int rc;

	switch (type) {
	case AVRO_NULL: return 0;
	case AVRO_BOOLEAN:
		if (left(s) < 1)
			return sfail(s, "the data ends inside a boolean");
		if (*s->p > 1)
			return sfail(s, "boolean byte is %u, not 0 or 1",
				     *s->p);
		s->p++;
		return 0;
	case AVRO_INT32:
		rc = varint(s, &v, "int");
		if (!rc && (v < INT32_MIN || v > INT32_MAX))
			return sfail(s, "int value %lld is out of range",
				     (long long)v);
		return rc;
	case AVRO_INT64: return varint(s, &v, "long");
	case AVRO_FLOAT:
	case AVRO_DOUBLE:
		n = is_avro_float(a) ? 4 : 8;
		if (left(s) < n)
			return sfail(s, "the data ends inside a %s",
				     n == 4 ? "float" : "double");
		s->p += n;
		return 0;
	case AVRO_STRING: return scan_string(s, true, "string");
	case AVRO_BYTES: return scan_string(s, false, "bytes");
	case AVRO_FIXED:
		n = (size_t)avro_schema_fixed_size(a);
		if (left(s) < n)
			return sfail(s, "fixed %s needs %zu bytes, %zu left",
				     avro_schema_name(a), n, left(s));
		s->p += n;
		return 0;
	case AVRO_ENUM:
		rc = varint(s, &v, "enum index");
		if (!rc &&
		    (v < 0 || v >= avro_schema_enum_number_of_symbols(a)))
			return sfail(s, "enum %s index %lld is out of range",
				     avro_schema_name(a), (long long)v);
		return rc;
	default: return 1;
	}
}

static int scan_value(struct scan *s, avro_schema_t a, int depth)
{
	avro_type_t type;
	int64_t v;
	size_t n;
	int rc;

	a = dis__avro_deref(a);
	if (!a)
		return sfail(s, "no schema");
	if (depth > 2 * DIS__SCHEMA_MAX_DEPTH)
		return sfail(s, "values nest too deep");
	if (++s->steps > s->max_steps)
		return sfail(s, "the data holds too many values for its size");
	type = avro_typeof(a);
	rc = scan_leaf(s, type, a);
	if (rc != 1)
		return rc;
	switch (type) {
	case AVRO_UNION:
		rc = varint(s, &v, "union index");
		if (rc)
			return rc;
		if (v < 0 || (uint64_t)v >= avro_schema_union_size(a))
			return sfail(s, "union index %lld is out of range",
				     (long long)v);
		return scan_value(s, avro_schema_union_branch(a, (int)v),
				  depth + 1);
	case AVRO_RECORD:
		n = avro_schema_record_size(a);
		for (size_t i = 0; i < n; i++) {
			rc = scan_value(s,
					avro_schema_record_field_get_by_index(
						a, (int)i),
					depth + 1);
			if (rc)
				return rc;
		}
		return 0;
	case AVRO_ARRAY:
	case AVRO_MAP: return scan_blocks(s, a, depth);
	default: return sfail(s, "unsupported Avro type");
	}
}

static void scan_init(struct scan *s, const void *data, size_t len,
		      char *err, size_t errlen)
{
	static const unsigned char none[1];

	/* Not the cache: only its first ncache entries are read (zeroing
	 * all of them was a tenth of a small event's scan). */
	s->steps = 0;
	s->ncache = 0;
	s->start = data ? data : none;
	s->p = s->start;
	s->end = s->start + (data ? len : 0);
	s->err = err;
	s->errlen = errlen;
	/*
	 * Values that take no bytes (nulls, records) are bounded by this
	 * budget: a few values per byte (a null union is two values in one
	 * byte) plus slack. avro-c then holds a few bytes per value.
	 */
	s->max_steps = (len < SIZE_MAX / 8 ? len * 4 : SIZE_MAX / 2) +
		       ((size_t)1 << 16);
}

static int scan_end(struct scan *s)
{
	if (s->p != s->end)
		return sfail(s, "%zu bytes of trailing data after the value",
			     left(s));
	return 0;
}

int dis__scan_plan_build(avro_schema_t record, dis__scan_op **ops,
			 size_t *n)
{
	size_t k;

	*ops = NULL;
	*n = 0;
	record = dis__avro_deref(record);
	if (!record || !is_avro_record(record))
		return DIS_EINVAL;
	k = avro_schema_record_size(record);
	if (k == 0)
		return 0;
	*ops = calloc(k, sizeof(**ops));
	if (!*ops)
		return DIS_ENOMEM;
	for (size_t i = 0; i < k; i++) {
		avro_schema_t f = dis__avro_deref(
			avro_schema_record_field_get_by_index(record, (int)i));

		if (!f) {
			free(*ops);
			*ops = NULL;
			return DIS_EINVAL;
		}
		(*ops)[i].schema = f;
		(*ops)[i].type = avro_typeof(f);
	}
	*n = k;
	return 0;
}

/* One field of a plan: checked, and stepped over. */
static int scan_field(struct scan *s, const dis__scan_op *op)
{
	avro_type_t t = op->type;
	int rc;

	/*
	 * Most fields: a number or a length in one varint byte, and
	 * (strings) ASCII text; anything else takes the full path.
	 */
	if (s->p != s->end && !(*s->p & 0x81)) {
		size_t k = *s->p >> 1;

		if (t == AVRO_INT64 || t == AVRO_INT32) {
			s->p++;
			return 0;
		}
		if ((t == AVRO_STRING || t == AVRO_BYTES) && k < left(s)) {
			const unsigned char *q = s->p + 1;
			size_t j = 0;

			if (t == AVRO_STRING)
				while (j < k && q[j] < 0x80)
					j++;
			if (t == AVRO_BYTES || j == k) {
				s->p = q + k;
				return 0;
			}
		}
	}
	rc = scan_leaf(s, t, op->schema);
	if (rc == 1)
		rc = scan_value(s, op->schema, 1);
	return rc;
}

int dis__avro_scan_plan(const dis__scan_op *ops, size_t n, const void *data,
			size_t len, char *err, size_t errlen)
{
	struct scan s;
	int rc;

	scan_init(&s, data, len, err, errlen);
	s.steps = 1 + n; /* the record and its fields */
	if (s.steps > s.max_steps)
		return sfail(&s, "the data holds too many values for its size");
	for (size_t i = 0; i < n; i++)
		if ((rc = scan_field(&s, &ops[i])))
			return rc;
	return scan_end(&s);
}

/* Little-endian bytes (Avro's float and double). */
static uint64_t get_le(const unsigned char *p, size_t n)
{
	uint64_t v = 0;

	while (n-- > 0)
		v = (v << 8) | p[n];
	return v;
}

int dis__avro_field_read(const dis__scan_op *ops, size_t n, size_t idx,
			 const void *data, size_t len, dis__avro_field *out)
{
	char err[DIS_ERRMSG_LEN];
	struct scan s;
	avro_schema_t a;
	avro_type_t t;
	int64_t v;

	if (idx >= n)
		return 1;
	scan_init(&s, data, len, err, sizeof(err));
	s.steps = 1 + n;
	for (size_t i = 0; i < idx; i++)
		if (scan_field(&s, &ops[i]))
			return 1;
	a = ops[idx].schema;
	t = ops[idx].type;
	if (t == AVRO_UNION) {
		if (varint(&s, &v, "union index") || v < 0 ||
		    (uint64_t)v >= avro_schema_union_size(a))
			return 1;
		a = dis__avro_deref(avro_schema_union_branch(a, (int)v));
		if (!a)
			return 1;
		t = avro_typeof(a);
	}
	out->type = t;
	out->schema = a;
	switch (t) {
	case AVRO_NULL: return 0;
	case AVRO_INT32:
	case AVRO_INT64: return varint(&s, &out->l, "number") ? 1 : 0;
	case AVRO_ENUM:
		if (varint(&s, &out->l, "enum index") || out->l < 0 ||
		    out->l >= avro_schema_enum_number_of_symbols(a))
			return 1;
		return 0;
	case AVRO_STRING:
	case AVRO_BYTES:
		if (varint(&s, &v, "length") || v < 0 || (uint64_t)v > left(&s))
			return 1;
		out->str = s.p;
		out->len = (size_t)v;
		return 0;
	case AVRO_FIXED:
		out->len = (size_t)avro_schema_fixed_size(a);
		if (out->len > left(&s))
			return 1;
		out->str = s.p;
		return 0;
	case AVRO_BOOLEAN:
		if (left(&s) < 1 || *s.p > 1)
			return 1;
		out->l = *s.p;
		return 0;
	case AVRO_FLOAT: {
		uint32_t bits;
		float f;

		if (left(&s) < 4)
			return 1;
		bits = (uint32_t)get_le(s.p, 4);
		memcpy(&f, &bits, 4);
		out->d = f;
		return 0;
	}
	case AVRO_DOUBLE: {
		uint64_t bits;

		if (left(&s) < 8)
			return 1;
		bits = get_le(s.p, 8);
		memcpy(&out->d, &bits, 8);
		return 0;
	}
	default: return 1;
	}
}

int dis__avro_scan(avro_schema_t schema, const void *data, size_t len,
		   char *err, size_t errlen)
{
	struct scan s;
	int rc;

	scan_init(&s, data, len, err, errlen);
	rc = scan_value(&s, schema, 0);
	if (rc)
		return rc;
	return scan_end(&s);
}

