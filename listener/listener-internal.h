/*
 * Internals of the listener runtime, shared by runtime.c (the runtime, its
 * LISTEN connection, stop and free, statistics) and batch.c (one listener's
 * connection and batch state machine). Never installed.
 */
#ifndef DISINTEGRATE_LISTENER_INTERNAL_H
#define DISINTEGRATE_LISTENER_INTERNAL_H

#include "core-internal.h"
#include "pq-internal.h"

#include <disintegrate/listener.h>

struct event;

/* Tables and statements shared with the administration functions. */
#define DIS__LISTENER_TABLE "event_listener"
#define DIS__DEAD_LETTER_TABLE "event_dead_letter"

/* A listener's connection and batch state. */
typedef enum dis__lstate {
	DIS__L_CLOSED = 0, /* not started, or stopped by the runtime */
	DIS__L_DOWN,       /* no connection: the timer brings the next try */
	DIS__L_CONNECTING,
	DIS__L_SETUP, /* registering the row, preparing statements */
	DIS__L_IDLE,
	DIS__L_FETCH,   /* BEGIN; fetch; lock the row */
	DIS__L_REFETCH, /* fetch again from the checkpoint just locked */
	DIS__L_AHEAD,   /* locked; waiting for the read-ahead's rows */
	DIS__L_HANDLE,  /* handlers running (synchronously) */
	DIS__L_COMMIT,  /* checkpoint; probe; COMMIT */
	DIS__L_ROLLBACK /* ROLLBACK (and a note of the failure) */
} dis__lstate;

/* How a batch ended, when it did not commit. */
typedef enum dis__lfail {
	DIS__F_NONE = 0,
	DIS__F_SKIP,   /* another process holds the listener */
	DIS__F_HALTED, /* stopped listener: nothing to do */
	DIS__F_EVENT,  /* the failing event's handler (or payload) */
	DIS__F_INFRA   /* our own statements or the database */
} dis__lfail;

typedef struct dis__listener dis__listener;

/* Reads ahead held or on their way, at most. */
#define DIS__AHEAD_MAX 2

/* Statements handlers queue with dis_batch_exec(), by parsed text. */
#define DIS__PREPARED_MAX 32
/* Queued statements are synced at least this often. */
#define DIS__QUEUE_SYNC_AT 4096

struct dis__queued {
	int idx;  /* the event whose handler queued it */
	int prep; /* the prepared-statement slot it creates, or -1 */
};

struct dis_batch {
	dis__listener *l;
	int idx; /* the event's index in the batch */
	uint32_t attempt;
	bool failed;
	int code;
	char msg[DIS_ERRMSG_LEN];
};

struct dis__listener {
	dis_runtime *rt;
	char *id;
	dis_query *query;
	dis_handler_fn fn;
	void *arg;
	dis_listener_config cfg;
	char *types_array; /* text[] literal: the types the query can select */
	char *query_text;
	char *fetch_sql; /* the prepared fetch statement's text */
	/* The event handed to the handler, over the fetched row's bytes
	 * (reused row after row: no allocation per event). */
	dis_event *view;
	char tag[DIS_LISTENER_ID_MAX + 16];

	dis__pq *pq;
	dis_store *store;
	struct event *ev_timer;
	dis__lstate st;
	bool pending;   /* a batch is wanted */
	bool stopping;  /* the runtime is stopping: close when possible */
	bool halted;    /* stopped in front of a poison event */
	bool row_dirty; /* state, error or metadata to write */
	bool committed_once;
	uint64_t due_ms; /* no connect/batch before (backoff) */
	uint64_t next_poll_ms;
	uint64_t recheck_at_ms; /* look again then (0: no) */
	uint64_t row_written_ms;
	uint64_t probe_ms; /* when the last probe was sent */
	uint32_t backoff_ms;

	/* The checkpoint as the row holds it. */
	dis_position ck;
	int64_t resets;
	int64_t last_id; /* the row's last_processed_event_id */

	/* The batch in flight. */
	struct dis_batch batch;
	double t0;
	PGresult *rows;
	bool rows_lent; /* rows of a read-ahead: not the batch's to free */
	int row0;       /* the batch's first row in `rows` */
	int nrows;
	size_t limit;
	dis_position from;
	dis_position next;
	uint64_t barrier;
	dis_position last; /* position after the last event done */
	int64_t max_id;
	int64_t handled_id; /* the last event handled */
	int done;           /* events done (handled or dead-lettered) */
	int handled;        /* events handled by the handler */
	int dead;           /* events dead-lettered */
	bool cut;           /* ended before its last row */
	bool fail_ok;       /* the failing event was handled this time */
	bool halt_after;    /* a poison event stops the listener */
	dis__lfail fail;
	dis_position ck_new;
	bool want_blocker;
	bool wrote_row;
	/* The commit pipeline: where its results are, and a next batch
	 * chained behind it (BEGIN, fetch, lock from chain_k; 0: none). */
	int idx_probe;
	int idx_blocker;
	int idx_commit;
	int chain_k;
	bool rows_ahead; /* the next batch takes the read-ahead rows */
	dis_position chain_from;
	size_t chain_limit;

	/* Read-ahead while catching up (ahead.c): reads in position order,
	 * each starting where the one before ended; those with rows first,
	 * then at most one out on apq (or waiting for it to connect). */
	dis__pq *apq;
	struct dis__ahead_read {
		dis_position from; /* where the read starts */
		dis_position at;   /* where its rows not yet taken start */
		dis_position end;  /* where the next read starts */
		PGresult *res;     /* NULL until in */
		int nrows;         /* event rows */
		int served;        /* rows taken by batches */
		uint64_t barrier;
	} ahead[DIS__AHEAD_MAX];
	int nahead;
	size_t ahead_slice;    /* rows per batch (fetch_size) */
	size_t ahead_rows;     /* rows per read */
	PGresult *ahead_lent;  /* a read taken whole, until its batch ends */
	bool ahead_out;        /* a read is out on apq */
	bool ahead_stale;      /* ... and was dropped: its rows go nowhere */
	bool ahead_setup;      /* apq's set-up (prepare) is out */
	uint64_t ahead_pause_ms; /* none before (apq failed to connect) */
	struct event *ahead_keep; /* closes apq, read_ahead_keep_ms idle */
	char store_msg[160]; /* the store's message before a handler */

	/* Writes queued by handlers (dis_batch_exec). */
	struct dis__queued *q;
	int queued;
	int qcap;
	bool q_failed;
	int q_fail_idx;
	char q_msg[DIS_ERRMSG_LEN];
	struct {
		char *sql;
		char name[16];
	} prep[DIS__PREPARED_MAX];
	int nprep;

	/* Failed attempts per event past the checkpoint, not only of the
	 * failing event: a batch cut in front of a failing event runs the
	 * events before it again, and one of them may have failed before. */
	struct dis__lfailed {
		dis_position pos;
		uint32_t attempts;
	} * failed;
	size_t nfailed, failed_cap;

	/* The failing event. */
	int64_t fail_id; /* 0: none */
	dis_position fail_pos;
	uint32_t fail_attempts;
	int fail_code;
	char fail_msg[DIS_ERRMSG_LEN];
	bool poison;          /* dead-letter it when it comes first */
	uint64_t fail_due_ms; /* retry not before */
	uint32_t prefix;      /* next batch: at most this many events */
	uint32_t single;      /* so many next batches carry one event */

	/* Waiting on a transaction that holds the barrier. */
	uint64_t held_since_ms;
	uint64_t held_barrier;
	uint32_t recheck_ms;
	bool warned;

	/* Statistics. */
	dis_listener_state state;
	dis_position head;
	bool head_known;
	int64_t behind;
	double behind_secs;
	int blocker_pid;
	double blocker_secs;
	int last_code;
	char last_error[DIS_ERRMSG_LEN];
	uint64_t events_handled, errors, retries, dead_letters, batches,
		skipped, reconnects, ahead_batches;
	double batch_sum, batch_max;
	uint64_t hist[DIS_LISTENER_HIST_BUCKETS];
};

struct dis_runtime {
	struct event_base *base;
	char *conninfo;
	const dis_schema *schema;
	dis_runtime_options opts;
	char appname[64];
	char owner[128];
	dis_log_fn log;
	void *log_arg;
	int log_level;
	dis_listener_stopped_fn stopped_fn;
	void *stopped_arg;
	dis__listener **ls;
	size_t nls;
	size_t cap;

	/* The LISTEN connection. */
	dis__pq *npq;
	int nst;
	struct event *nev_timer;
	uint32_t nbackoff;
	uint64_t ndue_ms;

	bool running;
	bool stopping;
	dis_runtime_stop_fn stop_fn;
	void *stop_arg;
	int stop_status;
	struct event *ev_stop;
	struct event *ev_stop_timeout;

	int depth; /* runtime callbacks on the stack */
	bool free_requested;
	bool destroying;
	uint64_t rng;
	char errmsg[DIS_ERRMSG_LEN];
};

/* runtime.c */
uint64_t dis__now_ms(void);
double dis__now_s(void);
/* d drawn from [d * (1 - jitter), d]. */
uint64_t dis__jitter(dis_runtime *rt, uint64_t d, double jitter);
void dis__rt_log(dis_runtime *rt, dis_log_level level, const char *fmt, ...)
	DIS_PRINTF(3, 4);
void dis__rt_enter(dis_runtime *rt);
void dis__rt_leave(dis_runtime *rt);
/* A listener closed during a stop: completes the stop when it was last. */
void dis__rt_check_stopped(dis_runtime *rt);
/* A listener stopped on a poison event. */
void dis__rt_listener_halted(dis_runtime *rt, dis__listener *l);

/* batch.c */
int dis__listener_init(dis__listener *l, char *err, size_t errlen);
void dis__listener_release(dis__listener *l);
/*
 * Read-ahead (ahead.c): start reading batches of `limit` events from
 * `from` on the second connection (nothing when off or paused); whether
 * the next batch from `from` is read or on its way; take its rows (false,
 * with *pending when they are still coming: dis__listener_ahead_in() is
 * called then, in the DIS__L_AHEAD state); drop them (and close the
 * connection); free.
 */
/* A batch's rows out of a read-ahead: rows row0.. of res (lent). */
typedef struct dis__ahead_slice {
	PGresult *res;
	int row0;
	int nrows;
	dis_position next; /* the checkpoint after them */
	uint64_t barrier;
} dis__ahead_slice;

void dis__ahead_start(dis__listener *l, dis_position from, size_t limit);
bool dis__ahead_covers(const dis__listener *l, dis_position from,
		       size_t limit);
bool dis__ahead_take(dis__listener *l, dis__ahead_slice *out, bool *pending);
void dis__ahead_drop(dis__listener *l, bool close);
/* Caught up: drops the reads, closes apq once idle read_ahead_keep_ms. */
void dis__ahead_idle(dis__listener *l);
void dis__ahead_free(dis__listener *l);
/* batch.c: the read-ahead a locked batch waits on is over. */
void dis__listener_ahead_in(dis__listener *l);
/*
 * The statement of a gap-free read built in `sql` (binary results): the
 * listener's fetch prepared as `name` on that connection when the text is
 * the fetch's own, else the text. Valid while `sql` is.
 */
dis__stmt dis__listener_read_stmt(const dis__listener *l, dis__sql *sql,
				  const char *name);

void dis__l_log(dis__listener *l, dis_log_level level, const char *fmt, ...)
	DIS_PRINTF(3, 4);
/* Decides and starts what comes next (connect, batch, timer, close). */
void dis__listener_schedule(dis__listener *l);
/* Starts working (from CLOSED). */
void dis__listener_start(dis__listener *l);
/* Closes now (stop timeout, or a stop while not committing). */
void dis__listener_close(dis__listener *l);
/* The connection's prepared handler statements are gone. */
void dis__listener_forget_prepared(dis__listener *l);
/* Whether the notification payload (types, "" = any) concerns it. */
bool dis__listener_wants(const dis__listener *l, char *const *types, size_t n);

#endif
