/*
 * Decisions, states and the decision maker.
 *
 * A state is the user's C struct plus a dis_state_def describing it: which
 * events it reads (a stream query built from the state's id values), how an
 * event changes it, and optionally how to snapshot it. A decision holds any
 * number of states, an optional validation query and a process callback.
 * The decision maker loads the states from the event log, runs process, and
 * appends the events it emitted only if no event matching the validation
 * query was committed since the states were read; on such a conflict it
 * retries (reloading the states) per its retry policy.
 *
 *	struct balance { int64_t account_id; int64_t amount; };
 *
 *	static int balance_query(const void *state, dis_query *q)
 *	{
 *		const struct balance *b = state;
 *		dis_filter *f;
 *		int rc = dis_query_add_filter(q, &f);
 *
 *		if (rc == 0)
 *			rc = dis_filter_stream(f, "AccountBalance");
 *		if (rc == 0)
 *			rc = dis_filter_where_long(f, "account_id", b->account_id);
 *		return rc;
 *	}
 *
 *	static int balance_mutate(void *state, const dis_event *ev)
 *	{
 *		struct balance *b = state;
 *		int64_t amount = 0;
 *
 *		dis_event_get_long(ev, "amount", &amount);
 *		b->amount += strcmp(dis_event_type(ev), "AmountDeposited") == 0 ?
 *			     amount : -amount;
 *		return 0;
 *	}
 *
 *	static const dis_state_def balance_def = {
 *		.name = "AccountBalance",
 *		.size = sizeof(struct balance),
 *		.query = balance_query,
 *		.mutate = balance_mutate,
 *	};
 *
 * Lifetimes: a state starts as a byte copy of the initial value given to
 * dis_decision_add_state(). Pointers in that value (an id string, say) are
 * borrowed and must outlive the decision (dis_decision_strdup() makes a copy
 * the decision owns). Memory that mutate or snapshot_load allocate belongs to
 * the state; destroy frees it. The maker re-initialises states (destroy, then
 * a fresh copy of the initial value) before every attempt.
 *
 * Threads: a decision and a maker are used by one thread at a time; one maker
 * per thread (each on its own store) is safe. State definitions and schemas
 * may be shared.
 */
#ifndef DISINTEGRATE_DECISION_H
#define DISINTEGRATE_DECISION_H

#include <disintegrate/common.h>
#include <disintegrate/schema.h>
#include <disintegrate/event.h>
#include <disintegrate/query.h>
#include <disintegrate/store.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- states ---- */

typedef struct dis_state_def {
	/* Names the state in messages and snapshots (keep it stable). */
	const char *name;
	/* sizeof the state struct. */
	size_t size;
	/*
	 * Adds the filters selecting the state's events to `q`, from the id
	 * values in `state`. Returns 0 or a DIS_E* code.
	 */
	int (*query)(const void *state, dis_query *q);
	/*
	 * Applies one event matching the state's query (borrowed: copy what
	 * you keep). A non-zero return fails the load with that code.
	 */
	int (*mutate)(void *state, const dis_event *ev);
	/* Optional: frees what mutate or snapshot_load allocated. */
	void (*destroy)(void *state);

	/*
	 * Optional snapshots. snapshot_schema is an Avro record schema (JSON);
	 * snapshot_save writes the state into `rec`, a record of that schema,
	 * with the dis_event_set_* API; snapshot_load reads it back into a
	 * state that holds the initial value (ids set). A non-zero return from
	 * snapshot_load discards the snapshot: the state is rebuilt from the
	 * log. Changing the snapshot schema invalidates stored snapshots, and so
 * does an event schema change that changes what the state's query selects
 * (a type that comes to declare an id the query filters on).
	 */
	const char *snapshot_schema;
	int (*snapshot_save)(const void *state, dis_event *rec);
	int (*snapshot_load)(void *state, const dis_event *rec);
} dis_state_def;

/* ---- decisions ---- */

typedef struct dis_decision dis_decision;
typedef struct dis_ctx dis_ctx;

/*
 * The business rule. `states` are the decision's states in the order they
 * were added, loaded and read-only; `params` is the decision's copy of the
 * parameters. Emit events with dis_ctx_emit(); refuse with
 * `return dis_ctx_fail(ctx, MY_ERROR, "...")`. Returns 0, DIS_EDOMAIN (from
 * dis_ctx_fail) or another DIS_E* code. It may run more than once (after a
 * conflict); what it emitted in an earlier attempt is discarded.
 */
typedef int (*dis_process_fn)(dis_ctx *ctx, const void *const *states,
			      const void *params);

/*
 * A new decision named `name` (for messages) over `schema` (which must
 * outlive it). `params_size` bytes at `params` are copied (may be 0/NULL);
 * pointers inside are borrowed. *out untouched on failure.
 */
DIS_API int dis_decision_new(const dis_schema *schema, const char *name,
			     dis_process_fn process, const void *params,
			     size_t params_size, dis_decision **out);
DIS_API void dis_decision_free(dis_decision *d);

/*
 * Adds a state of kind `def` whose initial value is the def->size bytes at
 * `init` (ids set, the rest as a fresh state has it). The state's query is
 * built now. Errors: DIS_EINVAL (bad def, query error: see
 * dis_decision_errmsg), DIS_ENOMEM.
 */
DIS_API int dis_decision_add_state(dis_decision *d, const dis_state_def *def,
				   const void *init);

/*
 * The validation query, owned by the decision and empty at first: add its
 * filters. Without this call the validation query is the union of the
 * states' queries. A decision with neither states nor validation query
 * appends without a check.
 */
DIS_API int dis_decision_validation(dis_decision *d, dis_query **q);

/*
 * The decision's copy of its parameters (NULL when it has none), to set
 * pointers to strings the decision owns after dis_decision_strdup().
 */
DIS_API void *dis_decision_params(dis_decision *d);

/* A copy of `s` owned by the decision (freed with it); NULL on no memory. */
DIS_API const char *dis_decision_strdup(dis_decision *d, const char *s);

DIS_API const char *dis_decision_name(const dis_decision *d);
DIS_API const dis_schema *dis_decision_schema(const dis_decision *d);

/* States, as left by the last load (read them after dis_maker_make/load). */
DIS_API size_t dis_decision_state_count(const dis_decision *d);
DIS_API const void *dis_decision_state(const dis_decision *d, size_t i);
/* The query of state i (owned by the decision). */
DIS_API const dis_query *dis_decision_state_query(const dis_decision *d,
						  size_t i);

/*
 * Outcome of the last make: 0 or its DIS_E* code; for DIS_EDOMAIN the
 * user's code and message. Never NULL ("" after success).
 */
DIS_API int dis_decision_result(const dis_decision *d);
DIS_API int dis_decision_domain_code(const dis_decision *d);
DIS_API const char *dis_decision_errmsg(const dis_decision *d);

/* Events emitted by the last attempt (with ids once appended). */
DIS_API size_t dis_decision_event_count(const dis_decision *d);
DIS_API const dis_event *dis_decision_event(const dis_decision *d, size_t i);

/* The version the states were loaded at (NULL before a store load). */
DIS_API const dis_version *dis_decision_version(const dis_decision *d);
/* Attempts the last make took, and events read by its last load. */
DIS_API unsigned dis_decision_attempts(const dis_decision *d);
DIS_API size_t dis_decision_events_read(const dis_decision *d);

/* ---- inside process ---- */

/*
 * Emits a new event of `type` (fields at their defaults): set its fields
 * through *ev, which the decision owns. DIS_ENOTFOUND for an unknown type.
 * A failed emit also fails the decision, even if process returns 0.
 */
DIS_API int dis_ctx_emit(dis_ctx *ctx, const char *type, dis_event **ev);
/* Emits an event given as a JSON object of its fields. */
DIS_API int dis_ctx_emit_json(dis_ctx *ctx, const char *type, const char *json);
/* Emits a copy of `ev`. */
DIS_API int dis_ctx_emit_copy(dis_ctx *ctx, const dis_event *ev);
/*
 * Records a domain error (the user's `code`, any int, and a message) and
 * returns DIS_EDOMAIN for process to return.
 */
DIS_API int dis_ctx_fail(dis_ctx *ctx, int code, const char *fmt, ...)
	DIS_PRINTF(3, 4);
DIS_API const dis_schema *dis_ctx_schema(const dis_ctx *ctx);

/* ---- the decision maker ---- */

typedef struct dis_maker dis_maker;

typedef struct dis_maker_stats {
	uint64_t decisions;     /* dis_maker_make calls */
	uint64_t succeeded;     /* ... that returned 0 */
	uint64_t domain_errors; /* ... that returned DIS_EDOMAIN */
	uint64_t conflicts;     /* appends refused with DIS_ECONFLICT */
	uint64_t retries;       /* attempts after a conflict */
	uint64_t gave_up;       /* makes that returned DIS_ECONFLICT */
	uint64_t events_read;   /* events delivered by loads */
	uint64_t events_appended;
	uint64_t snapshots_loaded;
	uint64_t snapshots_ignored; /* found but undecodable or stale schema */
	uint64_t snapshots_stored;
	uint64_t cache_hits;  /* attempts that started from cached states */
	uint64_t cache_stale; /* ... that had to decide again on a load */
} dis_maker_stats;

/*
 * A decision maker on `store` (borrowed; it must outlive the maker). The
 * store may wrap a connection inside an open transaction: then the loads
 * and the append run in it (snapshots are read but not written there).
 * Defaults: 5 attempts, backoff 1 ms doubling up to 100 ms with full
 * jitter, snapshots off.
 */
DIS_API int dis_maker_new(dis_store *store, dis_maker **out);
DIS_API void dis_maker_free(dis_maker *m);

/*
 * Conflict retries: at most `max_attempts` attempts in all (>= 1); before
 * attempt n+1 sleep a random time in [0, min(max_us, base_us * 2^(n-1))].
 */
DIS_API int dis_maker_set_retry(dis_maker *m, unsigned max_attempts,
				unsigned base_us, unsigned max_us);
/*
 * Snapshots for states whose def has snapshot support: load them, and store
 * a state after a load that applied more than `every` events to it. Needs
 * the snapshot table (dis_store_migrate).
 */
DIS_API void dis_maker_set_snapshots(dis_maker *m, bool enabled,
				     unsigned every);
DIS_API void dis_maker_set_log(dis_maker *m, dis_log_fn fn, void *arg);
/*
 * Keeps the states of up to `entries` decisions in memory (0, the default:
 * none; the least recently used go first). A decision whose states are
 * cached skips the load: it decides on them and appends in one round trip,
 * checked against the version the cached states are exact at. The state
 * is the one a load would give unless another writer appended events
 * matching it meanwhile: then the check refuses the append and the maker
 * decides again on a load (a refusal, or nothing to append, on a cached
 * state is also decided again on a load, in case the state was stale).
 * The attempt on the stale state is not counted against max_attempts
 * (dis_decision_attempts() includes it); stats count cache_hits and
 * cache_stale. dis_decision_events_read() is 0 for a decision served from
 * the cache.
 *
 * Served: dis_maker_make of a decision whose states all have a snapshot
 * schema (the maker copies a state only through snapshot_save and
 * snapshot_load), outside a caller's open transaction: there the cache is
 * neither read (the check does not flag that transaction's own events) nor
 * filled (it could still roll back). A decision with a validation query of
 * its own is checked, when served from the cache, against that query and
 * its states' queries together (an event that changed a cached state
 * refuses the append even where the decision's own query would let it
 * through); its loaded attempts keep their own check. Process must be a
 * function of the states and params: on a stale cached state it runs once
 * more. Returns DIS_ENOMEM, or DIS_EINVAL for a NULL maker.
 */
DIS_API int dis_maker_set_cache(dis_maker *m, size_t entries);

/*
 * Makes the decision: load, process, append with the validation check,
 * retrying on conflict. Returns 0 (the events are appended, possibly none),
 * DIS_EDOMAIN (process refused: dis_decision_domain_code/errmsg),
 * DIS_ECONFLICT (still conflicting after the last attempt), DIS_EPG,
 * DIS_ECONN, DIS_ESERDE, ... (detail in dis_decision_errmsg and
 * dis_maker_errmsg). The decision stays the caller's.
 */
DIS_API int dis_maker_make(dis_maker *m, dis_decision *d);
/* Only loads the decision's states (and its version): read-your-state. */
DIS_API int dis_maker_load(dis_maker *m, dis_decision *d);

DIS_API const char *dis_maker_errmsg(const dis_maker *m);
DIS_API void dis_maker_get_stats(const dis_maker *m, dis_maker_stats *out);
DIS_API dis_store *dis_maker_store(dis_maker *m);

#ifdef __cplusplus
}
#endif
#endif
