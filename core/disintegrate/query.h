/*
 * Stream queries: which events a state, a validation or a listener reads.
 *
 * A query is a union (OR) of filters. A filter selects:
 *   - event types: those added with dis_filter_type()/dis_filter_stream(),
 *     or every type of the schema when none was added,
 *   - minus the types given to dis_filter_exclude(),
 *   - restricted by domain-id equalities (dis_filter_where_*). An equality
 *     applies only to the event types that declare that id: a type without
 *     the id is selected whatever its other fields hold. Several equalities
 *     all apply (AND). An equality on an id that none of the filter's types
 *     declares is an error,
 *   - and, with dis_filter_after(), only events after a position.
 * dis_query_matches() and the SQL the store runs agree exactly.
 *
 * Builder calls record the first error on the query and make the later calls
 * no-ops; dis_query_check() (and every store call taking the query) returns
 * it, and dis_query_errmsg() says what it was. A filter whose types are all
 * excluded, or a query without filters, is DIS_EINVAL.
 */
#ifndef DISINTEGRATE_QUERY_H
#define DISINTEGRATE_QUERY_H

#include <disintegrate/common.h>
#include <disintegrate/schema.h>
#include <disintegrate/event.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dis_query dis_query;
typedef struct dis_filter dis_filter;

/* An empty query over `schema` (the schema must outlive it). */
DIS_API int dis_query_new(const dis_schema *schema, dis_query **out);
DIS_API int dis_query_copy(const dis_query *query, dis_query **out);
DIS_API void dis_query_free(dis_query *query);

/* Adds a filter and returns it through *out; the query owns it. */
DIS_API int dis_query_add_filter(dis_query *query, dis_filter **out);
/* Adds (copies of) every filter of `other`. */
DIS_API int dis_query_union(dis_query *query, const dis_query *other);

DIS_API int dis_filter_type(dis_filter *f, const char *type);
DIS_API int dis_filter_stream(dis_filter *f, const char *stream);
DIS_API int dis_filter_exclude(dis_filter *f, const char *type);
DIS_API int dis_filter_where_string(dis_filter *f, const char *id,
				    const char *value);
DIS_API int dis_filter_where_long(dis_filter *f, const char *id,
				  int64_t value);
/* `uuid` in text form; DIS_EINVAL when it is not a valid UUID. */
DIS_API int dis_filter_where_uuid(dis_filter *f, const char *id,
				  const char *uuid);
DIS_API int dis_filter_after(dis_filter *f, dis_position pos);

/*
 * Restricts every filter of the query (add them first) to shard k of n by
 * domain id `id`: an event of a type declaring `id` is in shard
 * (first 32 bits of md5(text of the value)) mod n, where the text is the
 * string (UTF-8), the decimal number or the lower-case UUID; events of
 * types without `id`, or with a null value, are in shard 0. So the n
 * sharded copies of a query select every event of it exactly once, and
 * all events with the same id value in the same shard. DIS_EINVAL when
 * k >= n, the query has no filter or is already sharded, or none of its
 * types declares `id`; DIS_ENOTFOUND for an unknown id.
 */
DIS_API int dis_query_shard(dis_query *query, const char *id, uint32_t n,
			    uint32_t k);

/* 0 when the query is usable, else its first error. */
DIS_API int dis_query_check(const dis_query *query);
DIS_API const char *dis_query_errmsg(const dis_query *query);
DIS_API const dis_schema *dis_query_schema(const dis_query *query);

/* Whether `ev` is selected by the query (uses the event's position). */
DIS_API bool dis_query_matches(const dis_query *query, const dis_event *ev);

/*
 * A canonical text of the query: two queries selecting the same events by
 * the same filters give the same text. Freed with dis_free().
 */
DIS_API int dis_query_describe(const dis_query *query, char **text);

/* Whether the query can select events of `type` at all. */
DIS_API bool dis_query_has_type(const dis_query *query, const char *type);

#ifdef __cplusplus
}
#endif
#endif
