/*
 * Internal interfaces between the schema and event code (core/schema.c,
 * core/event.c) and the Avro serde (serde/). Never installed.
 *
 * The JSON form of a value (dis__json_*) is Avro JSON with plain values for
 * unions: a union holding a long is 5, not {"long": 5}. Bytes and fixed are
 * strings of code points U+0000..U+00FF, one per byte, as in Avro JSON.
 * Non-finite floats and doubles are the strings "NaN", "Infinity" and
 * "-Infinity".
 */
#ifndef DISINTEGRATE_SERDE_INTERNAL_H
#define DISINTEGRATE_SERDE_INTERNAL_H

#include "core-internal.h"

#include <avro.h>
#include <jansson.h>

/*
 * Largest payload encoded or decoded, checked before decoding: a ceiling
 * above the store's own (configurable) limit.
 */
#define DIS__PAYLOAD_MAX ((size_t)256 << 20)
/* Deepest nesting of types a schema may have. */
#define DIS__SCHEMA_MAX_DEPTH 64
/* Largest "fixed" size a schema may declare. */
#define DIS__FIXED_MAX ((int64_t)1 << 16)

/* ---- schema accessors (core/schema.c) ---- */

/* Record schema of event type `t`. */
avro_schema_t dis__schema_type_avro(const dis_schema *schema, int t);
/* Generic value class of event type `t`. */
avro_value_iface_t *dis__schema_type_iface(const dis_schema *schema, int t);
/* A read-only value of type `t` with every field at its default. */
const avro_value_t *dis__schema_type_template(const dis_schema *schema, int t);
/*
 * The JSON definition of a record or enum of the schema (NULL when the
 * schema does not define `named`). Owned by the schema.
 */
json_t *dis__schema_named_json(const dis_schema *schema, avro_schema_t named);

/* Follows an Avro link (a reference to a named type) to its target. */
avro_schema_t dis__avro_deref(avro_schema_t s);

/* ---- event internals (core/event.c) ---- */

/* The event's record value. */
avro_value_t *dis__event_value(const dis_event *ev);
/*
 * A new event of type `t` owning `value` (a record of that type made from
 * the schema's type class). On failure the value is freed.
 */
int dis__event_wrap(const dis_schema *schema, int t, avro_value_t *value,
		    dis_event **out);

/*
 * A new event of type `t` holding `len` bytes of Avro binary (copied),
 * decoded on first use. The bytes must have passed dis__avro_scan with the
 * event's own schema.
 */
int dis__event_wrap_raw(const dis_schema *schema, int t, const void *data,
			size_t len, dis_event **out);
/*
 * The same without a copy or an allocation per event: *slot (allocated on
 * first use, NULL before; free with dis_event_free) becomes an undecoded
 * event over `data`, which must outlive every use of it. Whatever *slot
 * held before is released. For reading many events one at a time.
 */
int dis__event_view(dis_event **slot, const dis_schema *schema, int t,
		    const void *data, size_t len);

/* ---- Avro binary (serde/codec.c) ---- */

/* Decodes a record of type `t` of `schema` into a new generic value. */
int dis__avro_read_record(const dis_schema *schema, int t, const void *data,
			  size_t len, avro_value_t *out, char *err,
			  size_t errlen);

/* ---- JSON <-> Avro values (serde/json.c) ---- */

/*
 * Sets `dest` from JSON `j`. `schema` provides the defaults of record
 * fields missing from `j`. DIS_ESERDE with a message naming the field
 * (prefixed with `path` when not NULL) on mismatch.
 */
int dis__json_to_avro(const dis_schema *schema, avro_value_t *dest, json_t *j,
		      const char *path, char *err, size_t errlen);
/* Renders `src`, a value of `schema`'s types, as a new JSON value (*out,
 * owned by the caller). */
int dis__avro_to_json(const dis_schema *schema, const avro_value_t *src,
		      json_t **out, char *err, size_t errlen);
/*
 * Sets every part of `dest` to its default where the schema gives one,
 * to zero/empty/the first union branch or enum symbol otherwise.
 */
int dis__avro_set_defaults(const dis_schema *schema, avro_value_t *dest,
			   char *err, size_t errlen);
/* Whether `s` is valid UTF-8 (NUL bytes allowed). */
bool dis__utf8_valid(const unsigned char *s, size_t len);

/* ---- resolution (serde/resolve.c) ---- */

/*
 * Copies `src` (of a writer schema) into `dest` (of `reader`'s schema),
 * applying Avro schema resolution: fields by name, promotions
 * int->long->float->double and string<->bytes, enums by symbol, unions by
 * branch, reader fields missing in the writer from their default. With
 * identical schemas this is a deep copy. DIS_ESERDE with a message.
 */
int dis__avro_resolve(const dis_schema *reader, avro_value_t *dest,
		      const avro_value_t *src, const char *path, char *err,
		      size_t errlen);

/* ---- binary checks (serde/scan.c) ---- */

/*
 * Walks `schema` over Avro binary `data` and checks every length, count,
 * index and varint against the bytes present, and that the data ends where
 * the value does. Allocates nothing. 0 or DIS_ESERDE with a message.
 */
int dis__avro_scan(avro_schema_t schema, const void *data, size_t len,
		   char *err, size_t errlen);

/*
 * The same scan of one record type, with its fields looked up once (at
 * schema load) instead of on every scan: a third of a small event's scan
 * went to finding its fields.
 */
typedef struct dis__scan_op {
	avro_type_t type;
	avro_schema_t schema; /* the field's, dereferenced */
} dis__scan_op;
/* The plan of `record` in *ops (free() it), *n fields. */
int dis__scan_plan_build(avro_schema_t record, dis__scan_op **ops,
			 size_t *n);
int dis__avro_scan_plan(const dis__scan_op *ops, size_t n, const void *data,
			size_t len, char *err, size_t errlen);
/*
 * Field `idx` of a record that dis__avro_scan_plan passed, read straight
 * from its binary when it holds a number, a boolean, an enum, a string,
 * bytes, a fixed or null (through a union's branch): its Avro type and
 * schema, and the value (int, long, boolean, enum index in l; float,
 * double in d; the bytes of a string, bytes or fixed, not NUL-terminated,
 * in str and len, inside `data`). Returns 0, or 1 when the field holds
 * anything else or the data is not what the scan passed: the caller then
 * decodes.
 */
typedef struct dis__avro_field {
	avro_type_t type;
	avro_schema_t schema;
	int64_t l;
	double d;
	const unsigned char *str;
	size_t len;
} dis__avro_field;
int dis__avro_field_read(const dis__scan_op *ops, size_t n, size_t idx,
			 const void *data, size_t len, dis__avro_field *out);
/* The plan of type `t` built at load (NULL with 0 fields). */
const dis__scan_op *dis__schema_type_plan(const dis_schema *schema, int t,
					  size_t *n);

#endif
