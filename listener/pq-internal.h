/*
 * A non-blocking libpq connection on a libevent base: asynchronous connect
 * and pipelines of statements answered by one callback. Never installed.
 *
 * Connect: PQconnectStartParams, then PQconnectPoll driven by socket events;
 * PQsocket is read again after every step (it changes when libpq tries
 * another address or host). A timer bounds the whole attempt.
 *
 * Send: a pipeline (libpq pipeline mode) of statements ending in one sync;
 * when the sync's result arrives the callback gets DIS__PQ_RESULTS and the
 * results are readable with dis__pq_result() until the next send or close.
 * A failed statement aborts the ones after it up to the sync
 * (PGRES_PIPELINE_ABORTED), as PostgreSQL does.
 *
 * While idle the connection is watched, so a server that goes away or a
 * notification is seen at once.
 *
 * Callbacks run from the loop, never from inside a dis__pq_* call. A
 * callback may send, close or connect again, but must not free the
 * dis__pq: free it only from outside its callbacks.
 */
#ifndef DISINTEGRATE_PQ_INTERNAL_H
#define DISINTEGRATE_PQ_INTERNAL_H

#include "core-internal.h"

#include <libpq-fe.h>

struct event_base;

typedef struct dis__pq dis__pq;

typedef enum dis__pq_state {
	DIS__PQ_CLOSED = 0,
	DIS__PQ_CONNECTING,
	DIS__PQ_IDLE,
	DIS__PQ_BUSY
} dis__pq_state;

typedef enum dis__pq_event {
	/* Connect finished: status 0, or DIS_ECONN/DIS_ETIMEDOUT (closed). */
	DIS__PQ_CONNECTED,
	/* Every result of the pipeline is in (status 0). */
	DIS__PQ_RESULTS,
	/* The connection broke (busy or idle); it is closed now. */
	DIS__PQ_LOST,
	/* Notifications are waiting: drain them with dis__pq_notify(). */
	DIS__PQ_NOTIFY
} dis__pq_event;

typedef void (*dis__pq_fn)(dis__pq *pq, void *arg, dis__pq_event ev,
			   int status);

/* One statement of a pipeline. */
typedef struct dis__stmt {
	/* Prepared statement to execute; NULL: execute `sql` directly. */
	const char *name;
	/* Text: executed when name is NULL, prepared as `name` when
	 * prepare is set. */
	const char *sql;
	bool prepare;
	int nparams;
	const char *const *values;
	const int *lengths; /* NULL: text parameters */
	const int *formats;
	int binary; /* results in binary */
} dis__stmt;

dis__pq *dis__pq_new(struct event_base *base, dis__pq_fn fn, void *arg);
/* Closes (no callback) and frees. Not from inside its own callback. */
void dis__pq_free(dis__pq *pq);

/* Where log lines (server notices) go; `tag` prefixes them. */
void dis__pq_set_log(dis__pq *pq, dis_log_fn fn, void *arg, int level,
		     const char *tag);

/*
 * Starts connecting. Returns 0 (DIS__PQ_CONNECTED follows) or an error
 * without callback (message in dis__pq_errmsg()).
 */
int dis__pq_connect(dis__pq *pq, const char *conninfo, const char *appname,
		    uint32_t timeout_ms);

/* Closes the connection (the server rolls back an open transaction).
 * No callback. */
void dis__pq_close(dis__pq *pq);

/*
 * Sends `n` statements as one pipeline. DIS__PQ_IDLE only (DIS_ESTATE
 * else). Returns 0 (DIS__PQ_RESULTS or DIS__PQ_LOST follows) or an error
 * without callback: the connection is then closed.
 */
int dis__pq_send(dis__pq *pq, const dis__stmt *stmts, int n);

/* Results of the last pipeline, by statement (NULL when none came). */
int dis__pq_nresults(const dis__pq *pq);
PGresult *dis__pq_result(const dis__pq *pq, int i);
/* Takes result i over: the caller PQclear()s it. */
PGresult *dis__pq_take(dis__pq *pq, int i);
/*
 * Index of the first statement whose result is not `want[i]` (want NULL:
 * COMMAND_OK or TUPLES_OK), or -1 when all succeeded; its message goes
 * to dis__pq_errmsg().
 */
int dis__pq_check(dis__pq *pq, const ExecStatusType *want);
/* The same over statements from .. to-1 (want indexed from `from`). */
int dis__pq_check_range(dis__pq *pq, int from, int to,
			const ExecStatusType *want);

/* The next waiting notification (free with PQfreemem), or NULL. */
PGnotify *dis__pq_notify(dis__pq *pq);

dis__pq_state dis__pq_get_state(const dis__pq *pq);
PGconn *dis__pq_conn(dis__pq *pq);
const char *dis__pq_errmsg(const dis__pq *pq);
/* SQLSTATE of the failure dis__pq_check() reported, or "". */
const char *dis__pq_sqlstate(const dis__pq *pq);
int dis__pq_backend_pid(const dis__pq *pq);

/*
 * Hands the idle connection to synchronous code (blocking mode, socket
 * not watched) and takes it back. While lent, the dis__pq does nothing.
 * dis__pq_take_back() returns DIS_ECONN (and closes) when the connection
 * broke meanwhile.
 */
PGconn *dis__pq_lend(dis__pq *pq);
int dis__pq_take_back(dis__pq *pq);

#endif
