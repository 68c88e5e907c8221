/*
 * Internal interfaces shared between modules. Never installed.
 * Non-static helpers are prefixed dis__.
 */
#ifndef DISINTEGRATE_CORE_INTERNAL_H
#define DISINTEGRATE_CORE_INTERNAL_H

#include <disintegrate/common.h>
#include <disintegrate/schema.h>
#include <disintegrate/event.h>
#include <disintegrate/query.h>
#include <disintegrate/store.h>

#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#define DIS_ERRMSG_LEN 512

/* The big-endian 64-bit integer at p (a binary int8/xid8 column). */
static inline uint64_t dis__get_be64(const void *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return __builtin_bswap64(v);
#else
	{
		const unsigned char *u = p;

		v = 0;
		for (int i = 0; i < 8; i++)
			v = (v << 8) | u[i];
		return v;
	}
#endif
}

/* Formats into a fixed error buffer (NULL buf or 0 len: no-op). */
void dis__errf(char *buf, size_t len, const char *fmt, ...) DIS_PRINTF(3, 4);
void dis__verrf(char *buf, size_t len, const char *fmt, va_list ap);

/* Growable byte buffer. On allocation failure `oom` is set and later
 * appends are no-ops, so a sequence of appends needs one check at the end. */
typedef struct dis__buf {
	unsigned char *data;
	size_t len;
	size_t cap;
	bool oom;
} dis__buf;

void dis__buf_init(dis__buf *b);
void dis__buf_free(dis__buf *b);
void dis__buf_reset(dis__buf *b);
int dis__buf_reserve(dis__buf *b, size_t extra);
void dis__buf_append(dis__buf *b, const void *data, size_t len);
void dis__buf_puts(dis__buf *b, const char *s);
void dis__buf_printf(dis__buf *b, const char *fmt, ...) DIS_PRINTF(2, 3);
/* NUL-terminates (not counted in len) and returns the text. */
const char *dis__buf_cstr(dis__buf *b);
/* Hands the data over (NUL terminated); the buffer is empty after. */
char *dis__buf_take(dis__buf *b);
/*
 * Adds identifier `name` (letters, digits and '_') to the text[] literal
 * `b` holds: "{" first when `b` is empty, else ","; end it with
 * dis__buf_array_end. The element is quoted: unquoted, NULL in any case
 * would read as a null.
 */
void dis__buf_array_ident(dis__buf *b, const char *name);
/* Ends that literal: "}", or "{}" when nothing was added. */
void dis__buf_array_end(dis__buf *b);

char *dis__strdup(const char *s);
/* Decimal text of `v` (no printf: for hot paths); returns its length. */
size_t dis__utoa(uint64_t v, char out[21]);
uint64_t dis__hash64(const void *data, size_t len, uint64_t seed);
/* The same hash over pieces: end(add(add(start(seed), a), b)) equals
 * dis__hash64 of a and b concatenated. */
uint64_t dis__hash64_start(uint64_t seed);
uint64_t dis__hash64_add(uint64_t h, const void *data, size_t len);
uint64_t dis__hash64_end(uint64_t h);

/* Canonical lower-case 8-4-4-4-12 form of a UUID text (36 chars + NUL);
 * DIS_EINVAL when `in` is not one. */
int dis__uuid_normalize(const char *in, char out[37]);

struct pg_conn;
/*
 * Copies libpq's error text `msg` about a connection made from `conninfo`
 * (NULL: the environment) into out, without its trailing newline, with
 * every password hidden: the password of `conninfo` and the one `conn`
 * used (may be NULL; PGPASSWORD included), and those of a dbname that is
 * itself a connection string, are replaced by "***" wherever they appear;
 * when a connection string does not parse, libpq quotes the bad part of it
 * (which may be the password), so every quoted part is replaced too.
 */
void dis__conn_errmsg(const char *conninfo, struct pg_conn *conn,
		      const char *msg, char *out, size_t len);

/* ---- schema internals (core/schema.c) ---- */

/* Index of event type `type`, or -1. */
int dis__schema_type_index(const dis_schema *schema, const char *type);
/* Ids declared by type index `t`: indexes into the schema's id list. */
size_t dis__schema_type_ids(const dis_schema *schema, int t,
			    const int **ids);
/* Stable fingerprint of the schema (hex, 16 chars + NUL). */
const char *dis__schema_fingerprint(const dis_schema *schema);

/* ---- event internals (core/event.c) ---- */

/* A domain id value read from an event. */
typedef struct dis__idval {
	dis_id_type type;
	bool present;     /* false: the field is null/absent */
	const char *str;  /* DIS_ID_STRING and DIS_ID_UUID (text form) */
	int64_t num;      /* DIS_ID_LONG */
} dis__idval;

/* Reads domain id number `id_index` (schema id list) from the event. */
int dis__event_idval(const dis_event *ev, int id_index, dis__idval *out);
/* Marks the event as stored at id/position. */
void dis__event_set_stored(dis_event *ev, int64_t id, dis_position pos);
/* Index of the event's type in its schema. */
int dis__event_type_index(const dis_event *ev);

/* ---- serde (serde/) ---- */

/* Avro binary of the event's record (no framing), appended to out. */
int dis__event_encode(const dis_event *ev, dis__buf *out, char *err,
		      size_t errlen);
/*
 * Decodes Avro binary `data` written with record `type` of `writer` into a
 * new event of `reader` (the same schema when writer == reader). Fields the
 * writer lacked take the reader's defaults. Lengths inside the data are
 * checked against the bytes present before anything is allocated. Fails
 * with DIS_ESERDE and a message; never aborts.
 */
int dis__event_decode(const dis_schema *reader, const dis_schema *writer,
		      const char *type, const void *data, size_t len,
		      dis_event **out, char *err, size_t errlen);
/*
 * The same checks (everything but memory), but with writer == reader the
 * event decodes its bytes on first use of a field: with `slot` NULL it is a
 * new event holding a copy of them; else it is a view over `data` in *slot
 * (dis__event_view; *out == *slot, not to be freed on its own). With
 * another writer *out is a new event, decoded (and resolved) at once.
 */
int dis__event_decode_view(const dis_schema *reader, const dis_schema *writer,
			   const char *type, const void *data, size_t len,
			   dis_event **slot, dis_event **out, char *err,
			   size_t errlen);

/* ---- queries (core/query.c) ---- */

/* SQL text under construction with its bound parameters (text format). */
typedef struct dis__sql {
	dis__buf text;
	char **params;
	int nparams;
	int cap;
	bool oom;
} dis__sql;

void dis__sql_init(dis__sql *s);
void dis__sql_free(dis__sql *s);
void dis__sql_puts(dis__sql *s, const char *text);
void dis__sql_printf(dis__sql *s, const char *fmt, ...) DIS_PRINTF(2, 3);
/* Binds a copy of `value` without touching the text; returns n of $n
 * (0 when out of memory). */
int dis__sql_bind(dis__sql *s, const char *value);
/* Binds a copy of `value` and appends "$n" to the text. */
void dis__sql_param(dis__sql *s, const char *value);
/* Appends "$n" for a new int64 / xid8 parameter. */
void dis__sql_param_i64(dis__sql *s, int64_t value);
void dis__sql_param_u64(dis__sql *s, uint64_t value);

/*
 * Appends the query as a boolean SQL expression over the event table's
 * columns (unqualified), binding every value. The query must pass
 * dis_query_check().
 */
int dis__query_sql(const dis_query *query, dis__sql *sql);

/*
 * Advisory-lock keys of a validation query (exclusive) and of appended
 * events (shared), see DESIGN section 6.
 */
int dis__query_lock_keys(const dis_query *query, int64_t **keys, size_t *n);
int dis__event_lock_keys(const dis_event *ev, int64_t **keys, size_t *n);

/* ---- store internals (core/store.c) ---- */

/* Columns every event read selects, in this order, binary results. */
#define DIS__EVENT_COLUMNS "event_id, tx, event_type, payload"

struct pg_result;
/* The position in binary columns col (event_id) and col + 1 (tx). */
dis_position dis__row_position(const struct pg_result *res, int row, int col);
/*
 * Builds the event in row `row` of a binary-format result whose columns
 * from `col` are DIS__EVENT_COLUMNS; decodes the payload through the store's
 * schema registry. DIS_ESERDE (message names the event id) on bad payloads.
 * With `view` NULL *out is a new event; else, when the payload is in the
 * store's own schema, *out is *view (see dis__event_decode_view), valid
 * while `res` is: free *out only when it is not *view, and *view at the end.
 * `known`: the row's position when the caller read it already, or NULL.
 */
int dis__store_event_view_row(dis_store *store, const struct pg_result *res,
			      int row, int col, const dis_position *known,
			      dis_event **view, dis_event **out);
/*
 * The gap-free batch read of DESIGN section 5 as one statement: events
 * matching `query` after `from`, below the barrier (the xmin of the
 * statement's snapshot), in position order, at most `limit`. Request binary
 * results. Result columns: 0 the barrier (xid8), then DIS__EVENT_COLUMNS
 * from column 1. The event rows come first (barrier NULL), then one row
 * with only the barrier.
 */
int dis__read_sql(const dis_query *query, dis_position from, size_t limit,
		  dis__sql *sql);
/*
 * From such a result: the number of event rows and the position to
 * continue from (after the last event when `limit` rows came back, else at
 * the barrier, never behind `from`). DIS_EPG when the result does not have
 * that shape or its events are not in strictly increasing position order
 * after `from` (the statement relies on the plan keeping its order).
 */
int dis__read_result(const struct pg_result *res, size_t limit,
		     dis_position from, int *nrows, dis_position *next);
/* Sets the store's error message. Returns `code`. */
int dis__store_fail(dis_store *store, int code, const char *fmt, ...)
	DIS_PRINTF(3, 4);
/* Maps a failed PGresult to a DIS_E* code and records its message. */
int dis__store_pg_fail(dis_store *store, const struct pg_result *res,
		       const char *what);
/* DIS_E* code of a SQLSTATE (NULL: DIS_EPG). */
int dis__sqlstate_code(const char *sqlstate);

/*
 * The statements of dis_store_load and dis_store_append, built without
 * being run, for code that sends them itself (the asynchronous decision
 * runtime). Binary results.
 *
 * Load: events matching `query` (and that `since`, a version text, did
 * not see, when not NULL) with the version of the read. Result column 0
 * is the version text, DIS__EVENT_COLUMNS follow from column 1; with no
 * match there is one row whose event columns are NULL.
 */
int dis__load_sql(const dis_query *query, const char *since, dis__sql *sql);
/* Calls fn for each event row of a load result; *version (may be NULL)
 * gets the version of the read. */
int dis__load_result(dis_store *store, const struct pg_result *res,
		     dis_event_fn fn, void *arg, dis_version **version);

/* One advisory-lock key of an append (DESIGN section 6). */
typedef struct dis__lock {
	int64_t key;
	bool exclusive;
} dis__lock;

/*
 * An append, ready to send: the lock statement's keys, then the
 * check-and-insert statement, then the notification (run after the
 * commit). The insert returns one row per event (event_id, tx), or none
 * when the check found a conflict.
 */
typedef struct dis__append {
	dis__lock *locks; /* sorted by key, unique; exclusive wins */
	size_t nlocks;
	dis__sql insert;  /* text; params: binary arrays, then text values */
	int *lengths;     /* of the insert's params */
	int *formats;
	char *notify;     /* the notification's payload */
	size_t nevents;
	bool checked;     /* has a validation query */
} dis__append;

/*
 * Takes the keys in array order (a function scan of unnest yields its
 * rows in order, each evaluated before the next), in plain SQL: about
 * 20 us of server time cheaper per append than the plpgsql
 * dis_lock_keys(), which stays for older clients.
 */
#define DIS__LOCK_COUNT                                                   \
	"count(CASE WHEN u.e THEN pg_advisory_xact_lock(u.k)::text ELSE " \
	"pg_advisory_xact_lock_shared(u.k)::text END)"
#define DIS__LOCK_FROM " FROM unnest($1::int8[], $2::bool[]) AS u(k, e)"
#define DIS__LOCK_KEYS_SQL "SELECT " DIS__LOCK_COUNT DIS__LOCK_FROM
#define DIS__LOCK_SQL DIS__LOCK_KEYS_SQL
/*
 * The lock statement of an append that joins the caller's transaction.
 * Only READ COMMITTED gives the insert a snapshot taken after the locks
 * were granted; under REPEATABLE READ or SERIALIZABLE the check would use
 * the transaction's first snapshot and miss what committed since (the
 * out-of-order case of DESIGN section 6). So it fails with
 * DIS__NEEDS_READ_COMMITTED in its message instead.
 */
#define DIS__NEEDS_READ_COMMITTED \
	"an append inside a transaction needs READ COMMITTED isolation"
#define DIS__LOCK_JOINED_SQL                                            \
	"SELECT " DIS__LOCK_COUNT ", CASE WHEN "                        \
	"current_setting('transaction_isolation') <> 'read committed' " \
	"THEN ('" DIS__NEEDS_READ_COMMITTED ", not ' || "               \
	"current_setting('transaction_isolation'))::int END" DIS__LOCK_FROM
#define DIS__NOTIFY_SQL "SELECT pg_notify('" DIS__NOTIFY_CHANNEL "', $1)"
/*
 * Notifications of appends that commit in a transaction of their own.
 *
 * Listeners need, after each append's commit, some notification with its
 * payload that commits later. PostgreSQL serialises notifying commits on
 * one cluster-wide lock: with 16 appending connections they queued on it.
 * So notifiers with the same payload coalesce through a token, a session
 * advisory lock on a key derived from the payload (dis__notify_token):
 *
 *  - the append's lock statement, once the boundary locks are held, tries
 *    to take the token ($3) and records whether it did in the setting
 *    dis.notify_token: a holder keeps it across its insert and commit;
 *  - after the commit, the notification statement notifies when this
 *    session holds the token or can take it now, and releases it before
 *    its own commit; otherwise another session holds the token, and that
 *    one's notification commits later than this append: it is skipped;
 *  - a holder always notifies before it releases, also when its append
 *    found a conflict or failed (DIS__NOTIFY_RECOVER_SQL).
 *
 * The token is a session lock, released before the notification commits:
 * a transaction lock would be released after the commit is visible, and
 * a notification seen before the skipped append committed would not cover
 * it. Appends inside a caller's transaction notify plainly
 * (DIS__NOTIFY_SQL), and never take the token.
 */
#define DIS__LOCK_TOKEN_SQL                                               \
	"SELECT set_config('dis.notify_token', "                           \
	"pg_try_advisory_lock($3::int8)::text, false) FROM (" DIS__LOCK_KEYS_SQL \
	") AS l"
#define DIS__NOTIFY_OWN_SQL                                               \
	"SELECT pg_notify('" DIS__NOTIFY_CHANNEL "', $1), "                 \
	"pg_advisory_unlock($2::int8), set_config('dis.notify_token', "    \
	"'false', false) FROM (SELECT CASE WHEN "                           \
	"current_setting('dis.notify_token', true) = 'true' THEN true "     \
	"ELSE pg_try_advisory_lock($2::int8) END AS got OFFSET 0) AS t "    \
	"WHERE t.got"
/* After a failure: notify and release, if the token is held. */
#define DIS__NOTIFY_RECOVER_SQL                                           \
	"SELECT pg_notify('" DIS__NOTIFY_CHANNEL "', $1), "                 \
	"pg_advisory_unlock($2::int8), set_config('dis.notify_token', "    \
	"'false', false) FROM pg_locks WHERE locktype = 'advisory' AND "   \
	"pid = pg_backend_pid() AND objsubid = 1 AND mode = "               \
	"'ExclusiveLock' AND ((classid::int8 << 32) | objid::int8) = "     \
	"$2::int8"
/* The token key of a notification payload, as text for $2. */
void dis__notify_token(const char *payload, char out[24]);

/*
 * Builds the append of `n` events (encoded now) under `validation` (may
 * be NULL) at `version` (NULL: saw nothing). The store must know its
 * schema's registry id (dis__store_schema_id_known), else DIS_ESTATE.
 * Errors are recorded on the store. Free with dis__append_free, also
 * after a failure.
 */
int dis__append_build(dis_store *store, dis_event *const *events, size_t n,
		      const dis_query *validation, const dis_version *version,
		      dis__append *out);
void dis__append_free(dis__append *a);

/*
 * dis_store_append that also gives, when `next` is not NULL and the append
 * ran as its own transaction, the version it leaves: what its check saw
 * plus its own events (*next stays NULL inside a caller's transaction or
 * when too many transactions ran beside it). A decision made on a state
 * loaded at `version`, with its own events applied, is exactly the state
 * at *next.
 */
int dis__store_append_next(dis_store *s, dis_event *const *events, size_t n,
			   const dis_query *validation,
			   const dis_version *version, int64_t *ids_out,
			   dis_version **next);
/* Transactions between a snapshot's xmax and a later one it may list. */
#define DIS__VERSION_SPAN 4096
/* See store.c: `snapshot` plus the later transaction tx, as a version. */
int dis__version_seeing(const char *snapshot, uint64_t tx, char **out);
/* The same as a dis_version (*out NULL when the text is NULL). */
int dis__version_after(const char *snapshot, uint64_t tx, dis_version **out);
/* The two binary array parameters of DIS__LOCK_SQL for `locks`. */
int dis__lock_params(const dis__lock *locks, size_t n, dis__buf *keys,
		     dis__buf *excl);
/*
 * Reads the insert's result: 0 (each event gets its id and position,
 * ids_out may be NULL), DIS_ECONFLICT (no row: the check failed) or
 * DIS_EPG; recorded on the store.
 */
int dis__append_result(dis_store *store, const struct pg_result *res,
		       const dis__append *a, dis_event *const *events,
		       int64_t *ids_out);
/*
 * The schema registry id: whether the store knows it, the statement that
 * registers the schema (if needed) and returns its id (params: the
 * fingerprint and the schema JSON, as dis__store_schema_params gives), and
 * setting it from that statement's result.
 */
bool dis__store_schema_id_known(const dis_store *store);
#define DIS__SCHEMA_REGISTER_SQL                                             \
	"WITH ins AS (INSERT INTO event_schema (fingerprint, schema) VALUES " \
	"($1, $2) ON CONFLICT (fingerprint) DO NOTHING RETURNING id) "      \
	"SELECT id FROM ins UNION ALL SELECT id FROM event_schema WHERE "   \
	"fingerprint = $1"
void dis__store_schema_params(const dis_store *store, const char *vals[2]);
void dis__store_set_schema_id(dis_store *store, int32_t id);
/*
 * Points a store made by dis_store_wrap at another connection (NULL: none,
 * e.g. after the old one was closed; dis_store_free is then safe): the
 * statements it prepared on the old one are forgotten.
 */
void dis__store_rebind(dis_store *store, struct pg_conn *conn);
/*
 * Makes sure domain id `id`'s column has a valid btree index led by
 * (id, tx), which an append's check needs to read only the events since
 * its load. Columns that existed before the store's migration (a
 * Disintegrate table, or one migrated before the index included tx) may
 * have none: it is built with CREATE INDEX CONCURRENTLY (writes go on;
 * an index a failed build left invalid is dropped first). One build per
 * id at a time (a session advisory lock): DIS_ESTATE while another
 * session's is under way. *built tells whether one was built. Needs the
 * connection outside a transaction.
 */
int dis__store_index_id(dis_store *store, const char *id, bool *built);

/*
 * NOTIFY: every append transaction sends one notification on this channel;
 * the payload is the comma-separated distinct event types appended, or ""
 * (meaning "any type") when that would be too long.
 */
#define DIS__NOTIFY_CHANNEL "new_events"

/*
 * Migration hooks run by dis_store_migrate() in this order, each idempotent
 * and safe to run from several processes at once:
 *   the event table, functions and schema registry (core/store.c),
 *   dis__snapshot_migrate (core/snapshot.c): the snapshot table,
 *   dis__listener_migrate (listener/): event_listener, dead letters, ...
 */
int dis__snapshot_migrate(dis_store *store);
int dis__listener_migrate(dis_store *store);

#endif
