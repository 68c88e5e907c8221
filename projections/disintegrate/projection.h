/*
 * Read-model projections, policies, sharded listeners and the id indexer:
 * handlers for the listener runtime (listener.h) whose effects commit in
 * the listener's batch transaction, together with its checkpoint.
 *
 * ---- Projections ----
 *
 * A projection is declared, not coded: the DDL of its table and, per event
 * type, the SQL to run for an event of that type. In both, {table} stands
 * for the table's (quoted) name; in the SQL, $field stands for the value of
 * the event's field `field`, bound as a parameter (text format; cast where
 * PostgreSQL cannot infer the type, e.g. $seats::int). $event_id and
 * $event_type are the event's id and type (they win over fields of those
 * names). Strings, dollar-quoted strings, quoted identifiers and comments
 * are left alone. Values: strings and enums as text, numbers in decimal,
 * booleans as true/false, bytes as bytea (\x...), null as NULL, records,
 * arrays and maps as JSON.
 *
 *	dis_projection *p;
 *	dis_projection_new(schema, "course_view", &p, err, sizeof(err));
 *	dis_projection_set_ddl(p, "CREATE TABLE {table} (course_id TEXT"
 *			       " PRIMARY KEY, seats INT NOT NULL)");
 *	dis_projection_on(p, "CourseCreated", "INSERT INTO {table}"
 *			  " VALUES ($course_id, $seats)");
 *	dis_projection_install(p, store);      create the table, record it
 *	dis_projection_attach(p, runtime, NULL);  keep it current
 *
 * The listener of a projection has the projection's name as id and writes
 * the table of that name. Its writes run on the batch's connection, so a
 * table row and the checkpoint commit together: each event takes effect
 * exactly once, whatever crashes.
 *
 * Rebuild without downtime (`disctl rebuild NAME`, dis_projection_rebuild):
 * the definition recorded by the last install is built into NAME__rebuild
 * by a listener "NAME:rebuild" from the start of the log while NAME keeps
 * serving; once it has caught up, one transaction applies the last events,
 * renames NAME to NAME__old and NAME__rebuild to NAME, and moves the
 * checkpoint of NAME's listeners (NAME and its shards NAME#k/n) to the
 * rebuilt position; NAME__old is dropped after. Readers see the old table
 * or the new one, never a half-built one. The new table gets the old
 * one's privileges (and its owner, when the rebuilding role is a member
 * of it); everything else about it comes from the DDL. Query the table by
 * name (a view defined on it would follow the old table and keep it from
 * being dropped); leave index and constraint names to PostgreSQL (or they
 * collide with the shadow's). A rebuild needs the rights of the table's
 * owner and to write event_listener (the dis_admin role of
 * docs/roles.sql).
 *
 * ---- Policies ----
 *
 * A policy reacts to events by making decisions. Its decision maker runs
 * on the batch's store: loads read inside the batch transaction and the
 * append joins it, so the events a policy emits commit with the listener's
 * checkpoint (exactly once). Conflicts are retried by the maker per the
 * policy's retry settings; a decision still conflicting fails the event,
 * which the listener retries per its own retry policy.
 *
 * ---- Shards ----
 *
 * dis_runtime_add_sharded() registers a listener as n listeners "ID#k/n",
 * each selecting the events of shard k by a domain id (dis_query_shard()):
 * events with the same id value are in the same shard and handled in log
 * order; each shard has its own checkpoint; different runtimes or
 * processes may work different shards (or the same ones: one works a
 * shard at a time).
 *
 * ---- The id indexer ----
 *
 * When a field becomes a domain id, dis_store_migrate() adds its column,
 * but events stored before hold NULL there. The indexer is a listener
 * ("index:ID") that reads those events' payloads and fills the column
 * (only where it is NULL). dis_index_backfill() (`disctl index ID`) runs
 * it until it has passed the end of the log as of the call.
 *
 * Threads: a projection, policy or indexer handle is used by the thread of
 * the runtime it is attached to, and must outlive that runtime.
 */
#ifndef DISINTEGRATE_PROJECTION_H
#define DISINTEGRATE_PROJECTION_H

#include <disintegrate/common.h>
#include <disintegrate/schema.h>
#include <disintegrate/event.h>
#include <disintegrate/query.h>
#include <disintegrate/store.h>
#include <disintegrate/decision.h>
#include <disintegrate/listener.h>

#ifdef __cplusplus
extern "C" {
#endif

struct pg_conn;

/* ---- projections ---- */

typedef struct dis_projection dis_projection;

/* Longest projection name: the table name plus "__rebuild" fits 63 bytes. */
#define DIS_PROJECTION_NAME_MAX 54

/*
 * A projection called `name` (an identifier of at most
 * DIS_PROJECTION_NAME_MAX bytes: its table and its listener id) over
 * `schema`, which must outlive it. On failure *out is untouched and errbuf
 * says why (DIS_EINVAL, DIS_ENOMEM).
 */
DIS_API int dis_projection_new(const dis_schema *schema, const char *name,
			       dis_projection **out, char *errbuf,
			       size_t errlen);
DIS_API void dis_projection_free(dis_projection *p);

/* Detail of the last failure on the projection. Never NULL. */
DIS_API const char *dis_projection_errmsg(const dis_projection *p);
DIS_API const char *dis_projection_name(const dis_projection *p);
DIS_API void dis_projection_set_log(dis_projection *p, dis_log_fn fn,
				    void *arg);

/*
 * The statements creating the table (any number, separated by ';'), with
 * {table} for its name. Required before install. DIS_EINVAL when it holds
 * a $parameter or no {table}.
 */
DIS_API int dis_projection_set_ddl(dis_projection *p, const char *ddl);

/*
 * Adds a statement to run for every event of `type` (several run in the
 * order added). Errors: DIS_ENOTFOUND for an unknown type, DIS_EINVAL for
 * a $name that is neither a field of the type nor $event_id/$event_type,
 * a positional $1, or an unterminated quote; the message says which.
 */
DIS_API int dis_projection_on(dis_projection *p, const char *type,
			      const char *sql);

/*
 * The projection's stream query (the types it has statements for), owned
 * by the projection; NULL before the first dis_projection_on().
 */
DIS_API const dis_query *dis_projection_query(const dis_projection *p);

/*
 * The definition as JSON ({"name", "ddl", "on": [{"type", "sql"}]}),
 * freed with dis_free(); and a projection from such a text.
 */
DIS_API int dis_projection_to_json(const dis_projection *p, char **json);
DIS_API int dis_projection_from_json(const dis_schema *schema, const char *json,
				     dis_projection **out, char *errbuf,
				     size_t errlen);

/*
 * Records the definition in the dis_projection table and creates the
 * table from the DDL when it does not exist (one transaction; concurrent
 * installs are serialised). When the table exists and the recorded
 * definition differs, the new one is recorded and a warning logged: run a
 * rebuild to apply it to the existing rows. Blocking; needs `store`
 * outside a transaction. DIS_EPG etc. with the detail on the projection.
 */
DIS_API int dis_projection_install(dis_projection *p, dis_store *store);

/*
 * Registers the projection's listener (id = its name, its query) with
 * `rt`; cfg NULL = the runtime's defaults. See dis_runtime_add_listener().
 */
DIS_API int dis_projection_attach(dis_projection *p, dis_runtime *rt,
				  const dis_listener_config *cfg);

/*
 * The projection as a dis_handler_fn (arg: the projection), to register it
 * with dis_runtime_add_listener() or dis_runtime_add_sharded().
 */
DIS_API int dis_projection_handler(void *projection, dis_batch *batch,
				   const dis_event *ev);

/*
 * Runs the statements for `ev` on `conn` (blocking) against table `table`
 * (NULL: the projection's own). Events of other types are ignored.
 * DIS_EPG with the server's message on the projection; DIS_ESERDE when
 * a field cannot be bound, such as a string holding a NUL byte (text
 * cannot store it: the event fails rather than store it cut short).
 */
DIS_API int dis_projection_apply(dis_projection *p, struct pg_conn *conn,
				 const char *table, const dis_event *ev);

/* ---- rebuild ---- */

typedef struct dis_rebuild_progress {
	const char *phase;     /* "building", "swapping", "done" */
	uint64_t events;       /* events applied to the new table so far */
	int64_t events_behind; /* estimated, while building */
	dis_position position; /* the new table's checkpoint */
	double seconds;        /* since the start */
} dis_rebuild_progress;

typedef struct dis_rebuild_options {
	/* Called about every 200 ms and once per phase; a non-zero return
	 * cancels the rebuild (DIS_ECANCELED; the live table is untouched). */
	int (*progress)(void *arg, const dis_rebuild_progress *p);
	void *progress_arg;
	dis_log_fn log;
	void *log_arg;
	/* Swap once this few events are left (default 1000). */
	uint32_t swap_behind;
	/* How long the swap waits for readers holding the table (default
	 * 5000 ms); it tries again up to 20 times. */
	uint32_t lock_timeout_ms;
	/* Events per batch while building (default 1000). */
	uint32_t fetch_size;
} dis_rebuild_options;

/*
 * Rebuilds projection `name` from its recorded definition (see above).
 * `conninfo` as for dis_store_open(); `schema` is the event schema (opts
 * may be NULL). Only one rebuild of a projection runs at a time
 * (DIS_ESTATE for a second one). A failing statement fails the rebuild
 * (the live table stays as it was). On success *out (may be NULL) gets
 * the last progress. Errors: DIS_ENOTFOUND (no such projection recorded),
 * DIS_ECONN, DIS_EPG, DIS_ECANCELED, ... with the reason in errbuf.
 */
DIS_API int dis_projection_rebuild(const char *conninfo,
				   const dis_schema *schema, const char *name,
				   const dis_rebuild_options *opts,
				   dis_rebuild_progress *out, char *errbuf,
				   size_t errlen);

/* ---- policies ---- */

typedef struct dis_policy dis_policy;

/*
 * Reacts to `ev` (borrowed) by making decisions with `maker` (valid during
 * the call; its store is the batch's). Returns 0 when done; non-zero fails
 * the event. A decision refused with DIS_EDOMAIN usually means there is
 * nothing to do: return 0 then.
 */
typedef int (*dis_policy_fn)(void *arg, dis_maker *maker, const dis_event *ev);

/*
 * A policy: listener `id` (see dis_runtime_add_listener), its `query`
 * (copied) and `fn`. Conflict retries default to the maker's (5 attempts).
 * On failure *out is untouched.
 */
DIS_API int dis_policy_new(const char *id, const dis_query *query,
			   dis_policy_fn fn, void *arg, dis_policy **out);
DIS_API void dis_policy_free(dis_policy *p);
/* Conflict retries of the policy's decisions; see dis_maker_set_retry(). */
DIS_API int dis_policy_set_retry(dis_policy *p, unsigned max_attempts,
				 unsigned base_us, unsigned max_us);
DIS_API const char *dis_policy_id(const dis_policy *p);
DIS_API const dis_query *dis_policy_query(const dis_policy *p);
/* Registers the policy's listener with `rt` (cfg NULL: defaults). */
DIS_API int dis_policy_attach(dis_policy *p, dis_runtime *rt,
			      const dis_listener_config *cfg);
/* The policy as a dis_handler_fn (arg: the policy). */
DIS_API int dis_policy_handler(void *policy, dis_batch *batch,
			       const dis_event *ev);
/* The policy's decision statistics, summed over its events (including
 * the attempts of batches that were rolled back). Call it from the
 * runtime's thread, or after the runtime stopped. */
DIS_API void dis_policy_get_stats(const dis_policy *p, dis_maker_stats *out);

/* ---- shards ---- */

/*
 * The id of shard k of n of listener `id`, "ID#k/n", into buf.
 * DIS_EINVAL when it does not fit or k >= n.
 */
DIS_API int dis_shard_listener_id(char *buf, size_t len, const char *id,
				  uint32_t k, uint32_t n);

/*
 * Registers listener `id` split into `n` shards by domain id `shard_id`:
 * for each k in mine[0..nmine) (NULL: every shard) a listener "ID#k/n"
 * over `query` restricted to shard k (dis_query_shard), with `handler`,
 * `arg` and `cfg`. Every process working the listener must use the same
 * n. The arguments of every shard are checked first (DIS_EINVAL,
 * DIS_ENOTFOUND: nothing registered); should the runtime then refuse one
 * (a duplicate id, DIS_ENOMEM), the shards before it stay registered and
 * dis_runtime_errmsg() says why.
 */
DIS_API int dis_runtime_add_sharded(dis_runtime *rt, const char *id,
				    const dis_query *query,
				    const char *shard_id, uint32_t n,
				    const uint32_t *mine, size_t nmine,
				    dis_handler_fn handler, void *arg,
				    const dis_listener_config *cfg);

/* ---- the id indexer ---- */

typedef struct dis_indexer dis_indexer;

/* The indexer's listener id for domain id `id`: "index:ID". */
#define DIS_INDEXER_PREFIX "index:"

/*
 * An indexer filling the column of domain id `id` of `schema` (which must
 * outlive it) for the events of the types that declare it.
 * DIS_ENOTFOUND for an unknown id. On failure *out is untouched.
 */
DIS_API int dis_indexer_new(const dis_schema *schema, const char *id,
			    dis_indexer **out);
DIS_API void dis_indexer_free(dis_indexer *ix);
/* Registers its listener with `rt` (the runtime must use the same schema). */
DIS_API int dis_indexer_attach(dis_indexer *ix, dis_runtime *rt,
			       const dis_listener_config *cfg);
/* Events it handled so far (including those of rolled-back batches). */
DIS_API uint64_t dis_indexer_events(const dis_indexer *ix);

typedef struct dis_index_report {
	uint64_t events;       /* events of the id's types read */
	uint64_t filled;       /* rows of the id's types whose column went
				* from NULL to a value (counted before and
				* after; nulls in payloads stay NULL) */
	dis_position position; /* the indexer's checkpoint at the end */
	double seconds;
	bool index_built; /* the column's (id, tx) index was missing
				* and has been built */
} dis_index_report;

/*
 * Migrates the store for `schema` (adding the column), then runs the
 * indexer of `id` until its checkpoint has passed the newest event as of
 * the call. Then makes sure the column has its index on (id, tx), which
 * a column that existed before the migration (a Disintegrate table, or
 * one migrated before the index included tx) may lack: it is built with
 * CREATE INDEX CONCURRENTLY, so writes go on (it waits for transactions
 * open at its start). `log` may be NULL. Errors with the reason in errbuf.
 */
DIS_API int dis_index_backfill(const char *conninfo, const dis_schema *schema,
			       const char *id, dis_log_fn log, void *log_arg,
			       dis_index_report *report, char *errbuf,
			       size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
