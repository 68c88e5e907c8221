/*
 * Event schema: one Avro schema (.avsc) defines every event type.
 *
 * The schema is a record or, usually, a union of records; each record's name
 * is an event type. A field carrying the attribute "disintegrate.id": true is
 * a domain id and becomes an indexed column of the event table. Id types:
 *   "string"                              -> TEXT
 *   "long"                                -> BIGINT
 *   {"type":"string","logicalType":"uuid"} -> UUID
 * A record may list the streams it belongs to with
 * "disintegrate.streams": ["name", ...]; a stream is a named set of types.
 *
 * Identifiers (type names, id names, stream names) follow
 * ^[A-Za-z_][A-Za-z0-9_]*$, are at most 63 bytes, and ids may not be one of
 * the event table's own columns, a PostgreSQL system column (xmin, ctid,
 * ...) or start with "dis_". The same id declared with two types is an
 * error. Every violation fails the load with DIS_ESCHEMA and a message.
 *
 * A dis_schema is immutable after loading (except dis_schema_add_stream) and
 * may be shared between threads once loaded.
 */
#ifndef DISINTEGRATE_SCHEMA_H
#define DISINTEGRATE_SCHEMA_H

#include <disintegrate/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dis_schema dis_schema;

typedef enum dis_id_type {
	DIS_ID_STRING = 1,
	DIS_ID_LONG = 2,
	DIS_ID_UUID = 3
} dis_id_type;

/*
 * Parses an .avsc document held in `json` (NUL terminated). On failure
 * returns DIS_ESCHEMA (or DIS_ENOMEM), leaves *out untouched and writes the
 * reason into errbuf (may be NULL).
 */
DIS_API int dis_schema_parse(const char *json, dis_schema **out, char *errbuf,
			     size_t errlen);
/* Same, reading the document from a file (DIS_EIO when unreadable). */
DIS_API int dis_schema_load_file(const char *path, dis_schema **out,
				 char *errbuf, size_t errlen);
DIS_API void dis_schema_free(dis_schema *schema);

/* The schema's JSON text, as given. Owned by the schema. */
DIS_API const char *dis_schema_json(const dis_schema *schema);

/* Event types, in declaration order. */
DIS_API size_t dis_schema_type_count(const dis_schema *schema);
DIS_API const char *dis_schema_type_name(const dis_schema *schema, size_t i);
DIS_API bool dis_schema_has_type(const dis_schema *schema, const char *type);

/* Domain ids across all types, in first-declaration order. */
DIS_API size_t dis_schema_id_count(const dis_schema *schema);
DIS_API const char *dis_schema_id_name(const dis_schema *schema, size_t i);
DIS_API dis_id_type dis_schema_id_type(const dis_schema *schema, size_t i);
/* Index of the id called `name`, or -1. */
DIS_API int dis_schema_id_index(const dis_schema *schema, const char *name);
/* Whether event type `type` declares domain id `id`. */
DIS_API bool dis_schema_type_has_id(const dis_schema *schema, const char *type,
				    const char *id);

/* Streams: named subsets of event types. */
DIS_API size_t dis_schema_stream_count(const dis_schema *schema);
DIS_API const char *dis_schema_stream_name(const dis_schema *schema, size_t i);
/* Types of stream `name`; DIS_ENOTFOUND when there is no such stream. */
DIS_API int dis_schema_stream_types(const dis_schema *schema, const char *name,
				    const char *const **types, size_t *n);
/* Declares a stream in code. DIS_ESCHEMA for unknown types or bad names. */
DIS_API int dis_schema_add_stream(dis_schema *schema, const char *name,
				  const char *const *types, size_t n,
				  char *errbuf, size_t errlen);

/* Checks an identifier against the rules above; 0 or DIS_EINVAL. */
DIS_API int dis_identifier_check(const char *name, char *errbuf,
				 size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
