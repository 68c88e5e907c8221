/*
 * Internals of decisions, the decision maker, snapshots and the harness
 * (core/decision.c, core/snapshot.c, core/harness.c). Never installed.
 *
 * The maker runs a decision in separable steps over a backend: the store
 * (libpq) or an in-memory log (the harness). Both run the very same load,
 * dispatch, process and append code; only where events come from differs.
 */
#ifndef DISINTEGRATE_DECISION_INTERNAL_H
#define DISINTEGRATE_DECISION_INTERNAL_H

#include "core-internal.h"
#include <disintegrate/decision.h>

/* ---- snapshots (core/snapshot.c) ---- */

/* A state kind's snapshot record schema, parsed once per maker. */
typedef struct dis__snapcodec {
	const dis_state_def *def;
	dis_schema *schema;
	const char *type; /* the record's name, owned by schema */
	const char *fp;   /* the schema's fingerprint, owned by schema */
} dis__snapcodec;

int dis__snapcodec_init(dis__snapcodec *c, const dis_state_def *def, char *err,
			size_t errlen);
void dis__snapcodec_fini(dis__snapcodec *c);
/* Avro binary of `state` into out; *json (may be NULL) gets a JSON text. */
int dis__snapshot_encode(const dis__snapcodec *c, const void *state,
			 dis__buf *out, char **json, char *err, size_t errlen);
/* Fills `state` (holding its initial value) from Avro binary. */
int dis__snapshot_decode(const dis__snapcodec *c, void *state, const void *data,
			 size_t len, char *err, size_t errlen);

/* One snapshot row: the key, and the value found or to store. */
typedef struct dis__snaprow {
	const char *name;  /* state name */
	const char *query; /* dis_query_describe of the state's query */
	bool found;
	char *schema_fp; /* fingerprint of the snapshot schema */
	char *version;   /* backend version text of the load */
	unsigned char *data;
	size_t len;
	int64_t last_id; /* highest event id applied (informative) */
	char *json;      /* the state as JSON, for humans (may be NULL) */
} dis__snaprow;

void dis__snaprow_clear(dis__snaprow *row);

/* The snapshot table on the store: fetch rows by key, upsert one row. */
int dis__snapshot_fetch(dis_store *store, dis__snaprow *rows, size_t n);
int dis__snapshot_put(dis_store *store, const dis__snaprow *row);

/* ---- backends ---- */

typedef struct dis__backend {
	void *self;
	/* Events matching q (that `since` did not see, when given). */
	int (*load)(void *self, const dis_query *q, const void *since,
		    dis_event_fn fn, void *arg, void **version);
	/*
	 * When `next` is not NULL it gets the version the append leaves
	 * (what the load at `version` saw plus these events; exact because
	 * nothing matching the validation query came between), or NULL
	 * when the backend cannot tell (inside a caller's transaction).
	 */
	int (*append)(void *self, dis_event *const *evs, size_t n,
		      const dis_query *validation, const void *version,
		      void **next);
	/*
	 * Optional: the version that saw what `version` saw plus the
	 * transaction of `ev`, appended since (*out NULL when it cannot be
	 * told). For a state cached after an append whose check did not
	 * cover the states' queries.
	 */
	int (*version_plus)(void *self, const void *version,
			    const dis_event *ev, void **out);
	void (*version_free)(void *version);
	const char *(*version_text)(const void *version);
	int (*version_parse)(void *self, const char *text, void **out);
	/* Optional (NULL: no snapshots). */
	int (*snap_fetch)(void *self, dis__snaprow *rows, size_t n);
	int (*snap_put)(void *self, const dis__snaprow *row);
	/* Whether snapshots may be written now (not inside a transaction). */
	bool (*snap_writable)(void *self);
	/* Whether a failed statement left an open transaction unusable. */
	bool (*tx_failed)(void *self);
	const char *(*errmsg)(void *self);
	/* Whether versions are dis_version handles. */
	bool store_versions;
} dis__backend;

/* A maker over any backend (copied); the harness's in-memory maker. */
int dis__maker_new_backend(const dis__backend *be, dis_maker **out);

/*
 * Test hook: called after the states were loaded, before process, with the
 * attempt number (1, 2, ...). A non-zero return fails the make with it.
 */
typedef int (*dis__maker_hook)(void *arg, dis_decision *d, unsigned attempt);
void dis__maker_set_hook(dis_maker *m, dis__maker_hook fn, void *arg);

/* The decision's steps, for the maker and later an asynchronous runtime. */
/* Puts every state back to its initial value; clears emitted events. */
void dis__decision_reset(dis_decision *d);
/* The query of a load that feeds every state (the union); owned by d. */
const dis_query *dis__decision_all(dis_decision *d);
/* Runs process; 0, DIS_EDOMAIN or an error, recorded as the result. */
int dis__decision_process(dis_decision *d);
/* The validation query for the append (NULL: append unchecked). */
const dis_query *dis__decision_validation(dis_decision *d);
/* Records the outcome and its message. Returns code. */
int dis__decision_fail(dis_decision *d, int code, const char *fmt, ...)
	DIS_PRINTF(3, 4);
/* The emitted events, for the append. */
dis_event *const *dis__decision_events(const dis_decision *d, size_t *n);

/*
 * One load of every state at once (no snapshots), for the asynchronous
 * runtime: load_begin (after reset) gives the load's query, NULL when the
 * decision has no states; apply feeds one loaded event to the states it
 * matches (a failed mutate is recorded as the result and returned);
 * set_version hands the load's version over to the decision.
 */
const dis_query *dis__decision_load_begin(dis_decision *d);
int dis__decision_apply(dis_decision *d, const dis_event *ev);
void dis__decision_set_version(dis_decision *d, dis_version *v);
void dis__decision_set_attempts(dis_decision *d, unsigned attempts);
/* Records success: result 0, no message. */
void dis__decision_succeed(dis_decision *d);

#endif
