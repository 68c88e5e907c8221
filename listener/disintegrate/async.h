/*
 * Asynchronous decisions on the caller's libevent loop.
 *
 * A dis_async runs decisions (load the states, process, append under the
 * validation check, retry on conflict: what dis_maker_make does) without
 * blocking the loop, and reports each outcome through a callback. It keeps
 * a few non-blocking connections and pipelines many decisions over each:
 * the loads of the decisions that are ready go out together, and the
 * appends of several decisions commit in one transaction (one WAL flush
 * for all of them). Two decisions whose boundaries overlap never share a
 * transaction, so each is still checked against the other; a decision
 * whose check fails is refused alone (DIS_ECONFLICT after its last
 * attempt) and the others of its transaction commit.
 *
 *	static void done(void *arg, dis_decision *d, int result)
 *	{
 *		if (result == DIS_EDOMAIN)
 *			reply_refused(arg, dis_decision_errmsg(d));
 *		else if (result)
 *			reply_error(arg, dis_strerror(result));
 *		else
 *			reply_ok(arg);
 *		dis_decision_free(d);
 *	}
 *
 *	dis_async_submit(async, decision, done, request);
 *
 * Callbacks: every decision accepted by dis_async_submit() gets exactly one
 * callback, from the loop (never from inside dis_async_submit), with
 * result 0 (its events are appended; dis_decision_event() has their ids),
 * DIS_EDOMAIN, DIS_ECONFLICT (still conflicting after the last attempt),
 * DIS_ECONN, DIS_EPG, DIS_ESERDE, ... (detail in dis_decision_errmsg()), or
 * DIS_ECANCELED (dis_async_stop or dis_async_free). If dis_async_submit()
 * fails, the callback is never called. A callback may submit, stop, free
 * the decision, and free the dis_async.
 *
 * Lifetimes: from dis_async_submit() until its callback the decision
 * belongs to the runtime: do not use or free it meanwhile. The runtime
 * never frees a decision or `arg`.
 *
 * Outcomes that cannot be known: when a connection is lost, or the runtime
 * is freed, while a decision's append is on its way, the transaction may or
 * may not have committed. Such a decision ends with DIS_ECONN (connection
 * lost) or DIS_ECANCELED (freed), and dis_decision_errmsg() says that the
 * outcome is unknown. dis_async_stop() avoids the second case.
 *
 * Differences from dis_maker_make: snapshots are not used; the states of a
 * decision are loaded with one statement; retries wait on a timer.
 *
 * Threads: a dis_async belongs to the thread that runs its event_base.
 * Decisions run their process and mutate callbacks on that thread.
 */
#ifndef DISINTEGRATE_ASYNC_H
#define DISINTEGRATE_ASYNC_H

#include <disintegrate/common.h>
#include <disintegrate/schema.h>
#include <disintegrate/decision.h>

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;

typedef struct dis_async dis_async;

typedef struct dis_async_options {
	/* Connections to PostgreSQL (default 2). */
	unsigned connections;
	/* Most decisions loaded, and appended, per round trip (default 64). */
	unsigned max_batch;
	/* Conflict retries, as dis_maker_set_retry (default 5, 1 ms,
	 * 100 ms): at most max_attempts attempts; before attempt n+1 wait a
	 * random time in [0, min(max_us, base_us * 2^(n-1))]. */
	unsigned max_attempts;
	unsigned retry_base_us;
	unsigned retry_max_us;
	/* application_name unless the conninfo sets one
	 * (default "disintegrate-async"). */
	const char *application_name;
	uint32_t connect_timeout_ms; /* default 10 s */
	uint32_t reconnect_min_ms;   /* default 100 ms */
	uint32_t reconnect_max_ms;   /* default 10 s */
} dis_async_options;

/* Fills `opts` with the defaults above. */
DIS_API void dis_async_options_init(dis_async_options *opts);

/* The outcome of a decision; `d` is the caller's again. */
typedef void (*dis_async_fn)(void *arg, dis_decision *d, int result);

/*
 * A runtime on `base` (borrowed: never dispatched, broken or freed; it must
 * outlive the runtime) connecting with `conninfo` (NULL or "": the PG*
 * environment) for decisions over `schema` (borrowed; it must outlive the
 * runtime). `opts` may be NULL for the defaults. Connecting starts now and
 * goes on in the loop; decisions may be submitted at once. The schema is
 * registered if it is not yet (dis_store_migrate must have created the
 * tables). On failure *out is untouched and errbuf says why.
 */
DIS_API int dis_async_new(struct event_base *base, const char *conninfo,
			  const dis_schema *schema,
			  const dis_async_options *opts, dis_async **out,
			  char *errbuf, size_t errlen);

/*
 * Cancels what is pending (each callback with DIS_ECANCELED, from inside
 * this call), closes the connections and frees the runtime. NULL is a
 * no-op. Safe from inside a callback.
 */
DIS_API void dis_async_free(dis_async *a);

/*
 * Queues decision `d` (over the runtime's schema); `fn` gets its outcome.
 * Returns 0, DIS_EINVAL (NULL argument, other schema), DIS_ESTATE (after
 * dis_async_stop) or DIS_ENOMEM; then fn is never called.
 */
DIS_API int dis_async_submit(dis_async *a, dis_decision *d, dis_async_fn fn,
			     void *arg);

/*
 * Shutdown: refuses new decisions, cancels (DIS_ECANCELED, from inside this
 * call) every decision whose append has not been sent, and lets the appends
 * in flight finish with their real outcome. Then dis_async_pending()
 * reaches 0 and the runtime can be freed without unknown outcomes.
 */
DIS_API void dis_async_stop(dis_async *a);

/* Decisions submitted whose callback has not run yet. */
DIS_API size_t dis_async_pending(const dis_async *a);

/* The last connection or runtime failure (a decision's own failure is in
 * dis_decision_errmsg). Never NULL. */
DIS_API const char *dis_async_errmsg(const dis_async *a);
DIS_API void dis_async_set_log(dis_async *a, dis_log_fn fn, void *arg);

typedef struct dis_async_stats {
	uint64_t submitted;
	uint64_t succeeded;
	uint64_t domain_errors;
	uint64_t failed; /* other errors */
	uint64_t canceled;
	uint64_t conflicts;    /* failed checks */
	uint64_t retries;      /* attempts after a conflict */
	uint64_t gave_up;      /* decisions ended with DIS_ECONFLICT */
	uint64_t pipelines;    /* round trips */
	uint64_t transactions; /* append transactions */
	uint64_t appends;      /* decision appends in them */
	uint64_t held_back;    /* appends kept for another transaction
				   (overlapping boundaries) */
	uint64_t split;        /* transactions that failed and were split */
	uint64_t events_read;
	uint64_t events_appended;
} dis_async_stats;

DIS_API void dis_async_get_stats(const dis_async *a, dis_async_stats *out);

#ifdef __cplusplus
}
#endif
#endif
