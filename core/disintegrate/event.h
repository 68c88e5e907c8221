/*
 * Events: a typed record of the event schema plus, once stored, its id and
 * position. Fields are read and written by name; the value must fit the
 * field's Avro type (DIS_EINVAL otherwise, DIS_ENOTFOUND for no such
 * field). A field of a ["null", T] union is set by the setter of T and
 * cleared by dis_event_set_null(). Nested values are reached with
 * dis_event_avro() and the avro-c value API.
 *
 * An event passed to a callback is borrowed: it is valid only during the
 * callback. dis_event_copy() makes one to keep.
 */
#ifndef DISINTEGRATE_EVENT_H
#define DISINTEGRATE_EVENT_H

#include <disintegrate/common.h>
#include <disintegrate/schema.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dis_event dis_event;
struct avro_value;

/* A new event of `type` with every field at its default (or zero). */
DIS_API int dis_event_new(const dis_schema *schema, const char *type,
			  dis_event **out);
/*
 * A new event of `type` from a JSON object of its fields (Avro JSON with
 * plain values for unions: {"amount": 5, "note": null}, read as the first
 * branch that takes the value; Avro's tagged form {"u": {"double": 0.1}}
 * picks the branch). Missing fields take their defaults; a missing field
 * without default, an unknown field or a value of the wrong type fails
 * with DIS_ESERDE and a message in errbuf. The JSON functions below write
 * a union's value tagged only where the plain value would read back as
 * another branch, so what they write reads back as it was.
 */
DIS_API int dis_event_from_json(const dis_schema *schema, const char *type,
				const char *json, dis_event **out,
				char *errbuf, size_t errlen);
DIS_API int dis_event_copy(const dis_event *ev, dis_event **out);
DIS_API void dis_event_free(dis_event *ev);

DIS_API const dis_schema *dis_event_schema(const dis_event *ev);
DIS_API const char *dis_event_type(const dis_event *ev);
/* Event id and position, both 0 until the event is stored. */
DIS_API int64_t dis_event_id(const dis_event *ev);
DIS_API dis_position dis_event_position(const dis_event *ev);

DIS_API int dis_event_set_string(dis_event *ev, const char *field,
				 const char *value);
DIS_API int dis_event_set_long(dis_event *ev, const char *field,
			       int64_t value);
DIS_API int dis_event_set_int(dis_event *ev, const char *field, int32_t value);
DIS_API int dis_event_set_double(dis_event *ev, const char *field,
				 double value);
DIS_API int dis_event_set_boolean(dis_event *ev, const char *field,
				  bool value);
DIS_API int dis_event_set_bytes(dis_event *ev, const char *field,
				const void *value, size_t len);
DIS_API int dis_event_set_null(dis_event *ev, const char *field);

/* Getters. A string is owned by the event. int fields widen to long. */
DIS_API int dis_event_get_string(const dis_event *ev, const char *field,
				 const char **value);
DIS_API int dis_event_get_long(const dis_event *ev, const char *field,
			       int64_t *value);
DIS_API int dis_event_get_int(const dis_event *ev, const char *field,
			      int32_t *value);
DIS_API int dis_event_get_double(const dis_event *ev, const char *field,
				 double *value);
DIS_API int dis_event_get_boolean(const dis_event *ev, const char *field,
				  bool *value);
DIS_API int dis_event_get_bytes(const dis_event *ev, const char *field,
				const void **value, size_t *len);
/* Whether the field is null (a ["null", T] union holding null). */
DIS_API bool dis_event_is_null(const dis_event *ev, const char *field);

/*
 * The event's fields as a JSON object text, {"field": value, ...}. The
 * caller frees *json with dis_free().
 */
DIS_API int dis_event_data_json(const dis_event *ev, char **json);
/* {"id": N, "type": T, "data": {...}}; freed with dis_free(). */
DIS_API int dis_event_to_json(const dis_event *ev, char **json);

/* The record as an avro-c value (avro_value_t *), for nested fields. */
DIS_API struct avro_value *dis_event_avro(dis_event *ev);

/* Whether two events have the same type and field values. */
DIS_API bool dis_event_equal(const dis_event *a, const dis_event *b);

#ifdef __cplusplus
}
#endif
#endif
