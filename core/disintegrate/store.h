/*
 * The event store on PostgreSQL (libpq, blocking calls).
 *
 * A dis_store is one connection plus the schema. It is not thread safe: use
 * one store per thread. All values are bound as parameters; identifiers come
 * only from the validated schema.
 *
 * Reading for decisions (dis_store_load) returns every matching event visible
 * now and a version: the database snapshot of that read. Appending with a
 * validation query and a version (dis_store_append) succeeds only if no event
 * matching the validation query was committed that the version did not see;
 * otherwise it returns DIS_ECONFLICT and appends nothing. The check is exact
 * whatever order concurrent transactions commit in.
 *
 * Reading the log in order (dis_store_read) is gap free: it returns events
 * by position, never one behind a position already returned, and advances
 * the position past ranges without matching events.
 */
#ifndef DISINTEGRATE_STORE_H
#define DISINTEGRATE_STORE_H

#include <disintegrate/common.h>
#include <disintegrate/schema.h>
#include <disintegrate/event.h>
#include <disintegrate/query.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dis_store dis_store;
typedef struct dis_version dis_version;
struct pg_conn;

/*
 * Connects with a libpq conninfo string (NULL or "" = PG* environment
 * variables). The schema must outlive the store. On failure *out is
 * untouched and errbuf says why (DIS_ECONN; passwords are never echoed).
 */
DIS_API int dis_store_open(const char *conninfo, const dis_schema *schema,
			   dis_store **out, char *errbuf, size_t errlen);
/* A store over the caller's connection, which it borrows and never closes. */
DIS_API int dis_store_wrap(struct pg_conn *conn, const dis_schema *schema,
			   dis_store **out);
DIS_API void dis_store_free(dis_store *store);

/* Detail of the last failure on this store. Never NULL. */
DIS_API const char *dis_store_errmsg(const dis_store *store);
DIS_API struct pg_conn *dis_store_conn(dis_store *store);
DIS_API const dis_schema *dis_store_schema(const dis_store *store);
DIS_API void dis_store_set_log(dis_store *store, dis_log_fn fn, void *arg);
/* Payloads larger than this are refused before decoding (default 16 MiB). */
DIS_API void dis_store_set_max_payload(dis_store *store, size_t bytes);

/*
 * Creates or upgrades the tables, functions and indexes (one column and
 * index per domain id), and registers the schema. Idempotent; several
 * processes may migrate at once.
 */
DIS_API int dis_store_migrate(dis_store *store);

/*
 * Called per event; a non-zero return stops the read and is returned. The
 * event is valid during the call only (dis_event_copy keeps one).
 */
typedef int (*dis_event_fn)(void *arg, const dis_event *ev);

/*
 * Calls fn for every event matching `query` visible now, in position order,
 * and returns the version of that read in *version (free with
 * dis_version_free; may be NULL when not wanted).
 */
DIS_API int dis_store_load(dis_store *store, const dis_query *query,
			   dis_event_fn fn, void *arg, dis_version **version);
/*
 * Like dis_store_load, but only the matching events that `since` did not
 * see (used to continue from a snapshot).
 */
DIS_API int dis_store_load_since(dis_store *store, const dis_query *query,
				 const dis_version *since, dis_event_fn fn,
				 void *arg, dis_version **version);

/*
 * Appends `n` events in one transaction (one round trip). When `validation`
 * is given, fails with DIS_ECONFLICT if an event matching it was committed
 * that `version` did not see (a NULL version means "saw nothing"). On
 * success ids_out (may be NULL) receives the assigned event ids in order and
 * each event gets its id. n == 0 is DIS_EINVAL. If the connection is inside
 * a transaction block the append joins it; that transaction must be READ
 * COMMITTED (under REPEATABLE READ or SERIALIZABLE the check could not see
 * what commits after the transaction's snapshot): otherwise DIS_ESTATE,
 * and the transaction is aborted.
 */
DIS_API int dis_store_append(dis_store *store, dis_event *const *events,
			     size_t n, const dis_query *validation,
			     const dis_version *version, int64_t *ids_out);

/*
 * Reads up to `limit` events matching `query` after position `from`, in
 * position order, below the gap-free barrier. *next receives the position
 * to continue from (past the last event, or up to the barrier when fewer
 * than `limit` events matched). Returns 0 or an error.
 */
DIS_API int dis_store_read(dis_store *store, const dis_query *query,
			   dis_position from, size_t limit, dis_event_fn fn,
			   void *arg, dis_position *next);

/* Position of the newest committed event (START when empty). */
DIS_API int dis_store_head(dis_store *store, dis_position *out);

/* Position of event `event_id` (for "continue after event N"). */
DIS_API int dis_store_position_of(dis_store *store, int64_t event_id,
				  dis_position *out);

/* Versions. */
DIS_API void dis_version_free(dis_version *v);
DIS_API int dis_version_copy(const dis_version *v, dis_version **out);
/* Text form (a pg_snapshot); owned by the version. */
DIS_API const char *dis_version_text(const dis_version *v);
DIS_API int dis_version_parse(const char *text, dis_version **out);

#ifdef __cplusplus
}
#endif
#endif
