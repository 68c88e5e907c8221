/*
 * The listener runtime: feeds events to handlers, in position order, each
 * exactly once in effect, on the caller's libevent loop.
 *
 * A runtime holds listeners. A listener has an id (its row in the
 * event_listener table holds its checkpoint), a stream query, a handler and
 * a config. The runtime works each listener in batches; one batch is one
 * transaction on the listener's own connection:
 *
 *   BEGIN; read up to fetch_size matching events past the checkpoint under
 *   the gap-free barrier; lock the listener's row (FOR UPDATE SKIP LOCKED:
 *   when another process holds it, this one skips the batch); call the
 *   handler for each event; write the checkpoint; COMMIT.
 *
 * The handler gets the batch (dis_batch_store(), dis_batch_conn()): what it
 * writes through that connection commits together with the checkpoint, so a
 * read model or a policy's appended events take effect exactly once, even
 * when the process dies mid-batch or two processes run the same listener.
 * Effects outside the database (mail, HTTP) may repeat after a failure: the
 * events of a rolled-back batch are delivered again.
 *
 * Wake-ups: one LISTEN connection per runtime, shared by its listeners,
 * receives the notification every append transaction sends; a listener
 * whose query can select one of the notified types runs a batch soon (many
 * notifications coalesce into one batch). Polling every poll_interval is
 * the fallback and the heartbeat. A batch that found nothing still moves
 * the checkpoint up to the barrier.
 *
 * Connections: non-blocking libpq on the caller's event_base. A listener
 * has one work connection of its own; the handler runs synchronously inside
 * the loop and may make blocking libpq calls on it (the connection is in
 * blocking mode while handlers run; the loop waits for the handler). On
 * connection loss or a server restart the runtime reconnects with
 * exponential backoff and jitter, LISTENs again and catches up from the
 * checkpoints.
 *
 * Failures: a handler that fails (non-zero return, or leaves the
 * transaction aborted) rolls the batch back; the events before the failing
 * one are committed again without delay and the failing event is retried
 * per the retry policy. An event whose handler still fails after
 * max_attempts, and an event whose payload cannot be decoded, is poison:
 * it is written to the event_dead_letter table (listener, event, error,
 * attempts, time) and the listener goes on past it, or stops in front of it,
 * per on_poison. A stopped listener resumes when `disctl reset` (or
 * dis_listener_reset()) moves its checkpoint.
 *
 * A transaction that stays open holds the barrier back for every reader:
 * the listener then reports the state DIS_LISTENER_WAITING with the backend
 * holding it (pid, how long) and logs a warning; it never skips.
 *
 * Threads: a runtime and everything it hands out belong to the thread that
 * runs its event_base. There is no global state: runtimes on different
 * bases in different threads are independent.
 */
#ifndef DISINTEGRATE_LISTENER_H
#define DISINTEGRATE_LISTENER_H

#include <disintegrate/common.h>
#include <disintegrate/schema.h>
#include <disintegrate/event.h>
#include <disintegrate/query.h>
#include <disintegrate/store.h>

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;
struct pg_conn;

typedef struct dis_runtime dis_runtime;
typedef struct dis_batch dis_batch;

/* Longest listener id, in bytes. */
#define DIS_LISTENER_ID_MAX 200

/* ---- configuration ---- */

typedef enum dis_retry_kind {
	DIS_RETRY_ABORT = 0,      /* no retry: the first failure is poison */
	DIS_RETRY_FIXED = 1,      /* wait delay_ms between attempts */
	DIS_RETRY_EXPONENTIAL = 2 /* delay_ms, doubling up to max_delay_ms */
} dis_retry_kind;

typedef struct dis_retry_policy {
	dis_retry_kind kind;
	/* Handler attempts per event before it is poison; 0 = no limit. */
	uint32_t max_attempts;
	uint32_t delay_ms;
	uint32_t max_delay_ms;
	/* 0..1: each delay d is drawn uniformly from [d * (1 - jitter), d]. */
	double jitter;
} dis_retry_policy;

typedef enum dis_poison_action {
	DIS_POISON_STOP = 0,       /* dead-letter it and stop in front of it */
	DIS_POISON_DEAD_LETTER = 1 /* dead-letter it and go on past it */
} dis_poison_action;

typedef struct dis_listener_config {
	uint32_t poll_interval_ms; /* run a batch after this long idle */
	uint32_t fetch_size;       /* events per batch (transaction) */
	bool notifier;             /* wake on NOTIFY (else poll only) */
	dis_retry_policy retry;
	dis_poison_action on_poison;
	/* Log a warning when a transaction holds the barrier back this long. */
	uint32_t wait_warn_ms;
	/*
	 * Wait for each batch's COMMIT to reach disk (synchronous_commit).
	 * Off by default: a server crash may then undo the last batches
	 * (their read-model writes and checkpoint together; the events are
	 * delivered again), and nothing durable can depend on an undone
	 * batch, because WAL is flushed in order. On, a batch costs one
	 * WAL flush, which bounds latency on slow disks.
	 */
	bool durable_commit;
	/*
	 * Catching up, read the next batch on a second connection while the
	 * handlers of the current one run (opened at the first full batch).
	 * On by default; off saves that connection.
	 */
	bool read_ahead;
	/*
	 * How long that connection stays open once caught up, for the next
	 * time the listener falls behind: no connect then, and its server
	 * process has the table's buffers mapped already (a new one reads
	 * its first pass slower). 0 closes it at once.
	 */
	uint32_t read_ahead_keep_ms;
	/*
	 * Handlers run on the event loop: while one of their statements
	 * waits for a lock (a policy's append behind another append on the
	 * same boundary, held by a transaction left open, or by a dis_async
	 * pipeline on the same loop that this wait keeps from being sent), no
	 * other listener of the runtime runs and it cannot stop. A wait
	 * longer than this fails the event (retried per `retry`); 0 waits
	 * without limit.
	 */
	uint32_t lock_timeout_ms;
} dis_listener_config;

/*
 * Fills `cfg` with the defaults: poll every 5 s, fetch_size 1000, notifier
 * on, exponential retry from 100 ms to 30 s with jitter 0.2 and at most 10
 * attempts, poison events stop the listener, warn after 5 s of waiting,
 * asynchronous commit of batches, read-ahead on, its connection kept 60 s
 * after catching up, lock waits of handlers cut at 2 s.
 */
DIS_API void dis_listener_config_init(dis_listener_config *cfg);

typedef struct dis_runtime_options {
	/* application_name of the connections unless the conninfo sets one. */
	const char *application_name; /* default "disintegrate-listener" */
	uint32_t connect_timeout_ms;  /* default 10 s */
	uint32_t reconnect_min_ms;    /* default 100 ms */
	uint32_t reconnect_max_ms;    /* default 10 s */
	/* dis_runtime_stop() closes what is still busy after this long. */
	uint32_t stop_timeout_ms; /* default 30 s */
	/* Idle LISTEN connection checked with a query this often. */
	uint32_t heartbeat_ms; /* default 30 s */
} dis_runtime_options;

DIS_API void dis_runtime_options_init(dis_runtime_options *opts);

/* ---- handlers ---- */

/*
 * Called for each event of a batch, in position order. `ev` is borrowed
 * (valid during the call). Return 0 when handled; anything else fails the
 * event (see the failure rules above; dis_batch_fail() attaches a message).
 * The handler may call dis_runtime_stop() or dis_runtime_free(): the batch
 * then ends after this event (committing what was handled, unless freed).
 */
typedef int (*dis_handler_fn)(void *arg, dis_batch *batch, const dis_event *ev);

/*
 * The batch's store: a dis_store over the batch transaction's connection.
 * Appends and reads through it join the batch transaction. Valid during
 * the handler call; never free it.
 */
DIS_API dis_store *dis_batch_store(dis_batch *batch);
/* The batch transaction's libpq connection (blocking mode). Never close
 * it, never COMMIT or ROLLBACK on it (savepoints are fine). */
DIS_API struct pg_conn *dis_batch_conn(dis_batch *batch);
DIS_API const char *dis_batch_listener_id(const dis_batch *batch);
/* 1 on the first delivery of this event by this process, then 2, 3, ... */
DIS_API uint32_t dis_batch_attempt(const dis_batch *batch);
/*
 * Records why the handler fails the event (kept as the listener's last
 * error and in the dead-letter row). Returns `code` (DIS_EINVAL when it is
 * not negative), so a handler can `return dis_batch_fail(b, rc, ...)`.
 */
DIS_API int dis_batch_fail(dis_batch *batch, int code, const char *fmt, ...)
	DIS_PRINTF(3, 4);

/*
 * Queues a statement in the batch transaction without waiting for its
 * result (libpq pipeline mode): a projection writing a row per event
 * costs no round trip per event. The text is prepared once per
 * connection (up to 32 distinct texts; more run unprepared). Results are
 * collected before the batch commits; when a queued statement fails, the
 * event whose handler queued it fails (retry and poison rules apply) and
 * the batch rolls back to before it. Parameters as PQexecParams (text
 * unless formats says binary); results are discarded. dis_batch_conn()
 * and dis_batch_store() collect what is queued first, so a handler may mix
 * both. Returns 0, or an error recorded as with dis_batch_fail().
 */
DIS_API int dis_batch_exec(dis_batch *batch, const char *sql, int nparams,
			   const char *const *values, const int *lengths,
			   const int *formats);

/* ---- the runtime ---- */

/*
 * A runtime on the caller's event_base, which it never dispatches, breaks
 * or frees (the base must outlive the runtime). `conninfo` is a libpq
 * conninfo string or URI (NULL or "" = PG* environment variables). The
 * schema must outlive the runtime. Nothing connects before
 * dis_runtime_start(). On failure *out is untouched and errbuf says why.
 */
DIS_API int dis_runtime_new(struct event_base *base, const char *conninfo,
			    const dis_schema *schema, dis_runtime **out,
			    char *errbuf, size_t errlen);
/* Replaces the options (NULL: defaults). Before dis_runtime_start() only:
 * DIS_ESTATE after. */
DIS_API int dis_runtime_set_options(dis_runtime *rt,
				    const dis_runtime_options *opts);
/* Installs the log callback; messages are at most `level` verbose. */
DIS_API void dis_runtime_set_log(dis_runtime *rt, dis_log_fn fn, void *arg,
				 dis_log_level level);
/* Detail of the last failed call on the runtime. Never NULL. */
DIS_API const char *dis_runtime_errmsg(const dis_runtime *rt);

/*
 * Registers a listener. `id` is its row in event_listener (at most
 * DIS_LISTENER_ID_MAX bytes, unique in the runtime); `query` is copied and
 * must be over the runtime's schema; `cfg` is copied (NULL: defaults).
 * Allowed before and after start (not while stopping). DIS_EINVAL for a bad
 * argument or a duplicate id, with the reason in dis_runtime_errmsg().
 */
DIS_API int dis_runtime_add_listener(dis_runtime *rt, const char *id,
				     const dis_query *query,
				     dis_handler_fn handler, void *arg,
				     const dis_listener_config *cfg);

/*
 * Starts connecting and working the listeners. The tables must exist
 * (dis_store_migrate(); `disctl init`); each listener's row is created at
 * its first connection. Connection failures are not errors here: the
 * runtime keeps retrying and reports them through the log and the stats.
 * DIS_ESTATE when already started.
 */
DIS_API int dis_runtime_start(dis_runtime *rt);

/*
 * Called once when a stop completes: status 0 when every listener ended
 * cleanly (its batch committed or rolled back, connections closed),
 * DIS_ETIMEDOUT when stop_timeout_ms forced connections closed,
 * DIS_ECANCELED when the runtime was freed first.
 */
typedef void (*dis_runtime_stop_fn)(void *arg, dis_runtime *rt, int status);

/*
 * Graceful stop: no new batch starts; a batch waiting on the server is
 * rolled back, or awaited when it is committing; a handler running now
 * finishes its event and the batch commits up to it. `fn` (may be NULL) is
 * called from the loop, never from inside this call. DIS_ESTATE when not
 * running or already stopping (fn is then not called). The runtime can be
 * started again after the callback.
 */
DIS_API int dis_runtime_stop(dis_runtime *rt, dis_runtime_stop_fn fn,
			     void *arg);

/* Runs a batch for every listener soon, as if notified. */
DIS_API void dis_runtime_wake(dis_runtime *rt);

/*
 * Frees the runtime now: connections are closed (the server rolls back
 * batches in flight), a pending stop callback gets DIS_ECANCELED. Safe from
 * inside the runtime's own callbacks (the handle goes away when the
 * callback returns). NULL is a no-op.
 */
DIS_API void dis_runtime_free(dis_runtime *rt);

/*
 * Called when a listener stops on its own (a poison event with
 * DIS_POISON_STOP): code is the failure's DIS_E* code, msg its text.
 */
typedef void (*dis_listener_stopped_fn)(void *arg, dis_runtime *rt,
					const char *id, int code,
					const char *msg);
DIS_API void dis_runtime_set_stopped_cb(dis_runtime *rt,
					dis_listener_stopped_fn fn, void *arg);

/* ---- statistics ---- */

typedef enum dis_listener_state {
	DIS_LISTENER_STARTING = 0, /* connecting, not yet worked a batch */
	DIS_LISTENER_RUNNING = 1,  /* working or caught up */
	DIS_LISTENER_RETRYING = 2, /* waiting to retry an event or reconnect */
	DIS_LISTENER_WAITING = 3,  /* an open transaction holds the barrier */
	DIS_LISTENER_STOPPED = 4   /* stopped (poison event, or runtime) */
} dis_listener_state;

/* Static name of a state: "starting", "running", ... */
DIS_API const char *dis_listener_state_name(dis_listener_state state);

/* Batch duration histogram: bucket i counts batches that took at most
 * dis_listener_hist_bound(i) seconds; the last bucket is +Inf. */
#define DIS_LISTENER_HIST_BUCKETS 14
DIS_API double dis_listener_hist_bound(size_t i);

typedef struct dis_listener_stats {
	const char *id;
	dis_listener_state state;
	bool connected;
	dis_position checkpoint; /* committed position */
	/* The newest event handled, as event_listener's
	 * last_processed_event_id holds it (the checkpoint's id is 0 when
	 * a batch ends at the barrier). */
	int64_t last_event_id;
	dis_position head;       /* newest event in the log (last seen) */
	/* Events past the checkpoint (any type; estimated from event ids),
	 * and the age of the oldest of them. 0 when caught up. */
	int64_t events_behind;
	double seconds_behind;
	/* While WAITING: the backend whose transaction holds the barrier
	 * (pid 0 when it cannot be seen) and how long it has been open. */
	int blocker_pid;
	double blocker_seconds;
	uint32_t attempts;      /* failed attempts of the current event */
	int last_error_code;    /* 0 when none */
	const char *last_error; /* "" when none */
	uint64_t events_handled;
	uint64_t errors; /* handler failures, bad payloads, infra */
	uint64_t retries;
	uint64_t dead_letters;
	uint64_t batches;         /* committed batches */
	uint64_t skipped_batches; /* another process held the listener */
	uint64_t reconnects;
	uint64_t read_ahead_batches; /* batches whose rows were read ahead */
	double batch_seconds_sum;
	double batch_seconds_max;
	uint64_t batch_hist[DIS_LISTENER_HIST_BUCKETS];
} dis_listener_stats;

/*
 * A snapshot of every listener's statistics, in registration order. One
 * allocation: free *out with dis_free(); its strings live inside it.
 */
DIS_API int dis_runtime_stats(dis_runtime *rt, dis_listener_stats **out,
			      size_t *n);

/* Whether the LISTEN connection is up (false when no listener uses it). */
DIS_API bool dis_runtime_notifier_connected(const dis_runtime *rt);

/* ---- administration (blocking, on a store) ---- */

/* A listener as the database records it. */
typedef struct dis_listener_info {
	const char *id;
	dis_position checkpoint;
	dis_position head;      /* newest event in the log */
	int64_t events_behind;  /* events of its types past the checkpoint */
	double seconds_behind;  /* age of the oldest of them, 0 if none */
	const char *state;      /* as last written by a runtime */
	const char *last_error; /* "" when none */
	uint32_t attempts;
	int64_t failed_event_id; /* 0 when none */
	int64_t dead_letters;
	const char *owner; /* host:pid of the last runtime to write */
	double updated_seconds_ago;
} dis_listener_info;

/* Every listener row, by id. One allocation: free *out with dis_free(). */
DIS_API int dis_listener_list(dis_store *store, dis_listener_info **out,
			      size_t *n);

/*
 * Moves listener `id`'s checkpoint to `to` (DIS_POSITION_START replays
 * everything) and clears its failure state. Waits for a batch in flight to
 * finish. Running runtimes pick the new checkpoint up at their next batch;
 * a listener stopped on a poison event resumes. DIS_ENOTFOUND when there
 * is no such listener.
 */
DIS_API int dis_listener_reset(dis_store *store, const char *id,
			       dis_position to);

/* ---- the convenience runner ---- */

typedef struct dis_runner dis_runner;

/*
 * A runtime on an event_base of its own. dis_runner_run() dispatches it
 * until SIGINT or SIGTERM (or dis_runner_stop()), stops gracefully and
 * returns 0. Signals: a process can have one runner handling signals at a
 * time (libevent's rule); see dis_runner_set_signals().
 */
DIS_API int dis_runner_new(const char *conninfo, const dis_schema *schema,
			   dis_runner **out, char *errbuf, size_t errlen);
/* The runner's runtime: add listeners, set options and the log on it. */
DIS_API dis_runtime *dis_runner_runtime(dis_runner *runner);
/* Whether run() handles SIGINT and SIGTERM (default true). */
DIS_API void dis_runner_set_signals(dis_runner *runner, bool on);
/*
 * Starts the runtime and dispatches the loop. Returns 0 after a graceful
 * stop; the stop status when it was not graceful (DIS_ETIMEDOUT); the
 * code of the failure when every listener stopped on its own; or a start
 * error.
 */
DIS_API int dis_runner_run(dis_runner *runner);
/* Asks a running run() to stop gracefully. Safe from any thread and from
 * a signal handler. */
DIS_API void dis_runner_stop(dis_runner *runner);
DIS_API void dis_runner_free(dis_runner *runner);

#ifdef __cplusplus
}
#endif
#endif
