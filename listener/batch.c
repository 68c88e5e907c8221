/*
 * One listener: its connection and its batches.
 *
 * States (dis__lstate): DOWN -> CONNECTING -> SETUP -> IDLE, then per batch
 *   IDLE -> FETCH -> [REFETCH | AHEAD] -> HANDLE -> COMMIT -> IDLE
 *                 \-> ROLLBACK -> IDLE (skipped, failed, stopped listener)
 * and DOWN again from anywhere when the connection breaks. AHEAD: the rows
 * come from a read-ahead (ahead.c) still on its way.
 *
 * A batch costs two round trips plus the handlers' own:
 *   1. BEGIN; fetch (gap-free read past the cached checkpoint); lock the
 *      listener's row FOR UPDATE SKIP LOCKED, reading its checkpoint. The
 *      fetch comes first so that the batch has no transaction id when the
 *      barrier is read (a locked row gives it one). When the locked
 *      checkpoint differs from the cached one (another process moved it,
 *      or a reset), the batch fetches again from it (REFETCH).
 *   2. (handlers, synchronously, on the connection in blocking mode)
 *   3. write the checkpoint; probe the head and the oldest event past the
 *      new checkpoint (lag, and whether a transaction holds the barrier);
 *      COMMIT.
 *
 * Failure of event k (handler error, aborted transaction, bad payload):
 * ROLLBACK; the next batch carries only events 0..k-1 ("prefix") and runs
 * at once; then event k is retried after the policy's delay, or, when it is
 * poison, the next batch carries it alone and dead-letters it instead of
 * calling the handler. A bad payload found while the transaction is still
 * healthy is dead-lettered on the spot. A COMMIT that fails after several
 * events runs them again one per batch to find the culprit.
 */
#include "listener-internal.h"

#include <event2/event.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_FETCH "dis_l_fetch"
#define S_LOCK "dis_l_lock"
#define S_COMMIT "dis_l_commit"
#define S_PROBE "dis_l_probe"
#define S_DEAD "dis_l_dead"

#define SQL_BEGIN "BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE"

#define SQL_REGISTER                                               \
	"INSERT INTO event_listener (id, last_processed_event_id," \
	" checkpoint_tx, checkpoint_id, event_types, query)"       \
	" VALUES ($1, 0, '0', 0, $2::text[], $3) ON CONFLICT (id) DO NOTHING"

#define SQL_ROW_COLUMNS                                                   \
	"coalesce(checkpoint_tx, '0')::text, coalesce(checkpoint_id, 0)," \
	" resets, coalesce(last_processed_event_id, 0)"                   \
	" FROM event_listener WHERE id = $1"

#define SQL_READ_ROW "SELECT " SQL_ROW_COLUMNS

#define SQL_LOCK "SELECT " SQL_ROW_COLUMNS " FOR UPDATE SKIP LOCKED"

#define SQL_COMMIT_ROW                                                  \
	"UPDATE event_listener SET checkpoint_tx = $2::xid8,"           \
	" checkpoint_id = $3::bigint,"                                  \
	" last_processed_event_id ="                                    \
	"  greatest(coalesce(last_processed_event_id, 0), $4::bigint)," \
	" updated_at = now(), state = $5::text,"                        \
	" error_at = CASE WHEN $6::text = '' THEN NULL"                 \
	"  WHEN last_error IS DISTINCT FROM $6::text THEN now()"        \
	"  ELSE error_at END,"                                          \
	" last_error = nullif($6::text, ''), attempts = $7::int,"       \
	" failed_event_id = nullif($8::bigint, 0), owner = $9::text,"   \
	" event_types = $10::text[], query = $11::text"                 \
	" WHERE id = $1"

/* A note of a failure, written outside the batch unless another process
 * holds the row (then that process is the one working it). */
#define SQL_NOTE                                                        \
	"UPDATE event_listener SET state = $2::text,"                   \
	" last_error = nullif($3::text, ''), error_at = now(),"         \
	" attempts = $4::int, failed_event_id = nullif($5::bigint, 0)," \
	" owner = $6::text, updated_at = now()"                         \
	" WHERE id = (SELECT id FROM event_listener WHERE id = $1"      \
	" FOR UPDATE SKIP LOCKED)"

#define SQL_PROBE                                                           \
	"SELECT h.tx::text, h.event_id, p.tx::text, p.event_id,"            \
	" extract(epoch FROM clock_timestamp()::timestamp - p.inserted_at)" \
	"::float8 FROM (SELECT 1) AS one"                                   \
	" LEFT JOIN LATERAL (SELECT tx, event_id FROM event"                \
	"  ORDER BY tx DESC, event_id DESC LIMIT 1) AS h ON true"           \
	" LEFT JOIN LATERAL (SELECT tx, event_id, inserted_at FROM event"   \
	"  WHERE (tx, event_id) > ($1::xid8, $2::bigint)"                   \
	"  ORDER BY tx, event_id LIMIT 1) AS p ON true"

#define SQL_BLOCKER                                                      \
	"SELECT pid, extract(epoch FROM clock_timestamp() - xact_start)" \
	"::float8, coalesce(application_name, ''), coalesce(state, '')"  \
	" FROM pg_stat_activity WHERE backend_xid = $1::xid8::xid"       \
	" UNION ALL SELECT 0, extract(epoch FROM clock_timestamp() -"    \
	" prepared)::float8, 'prepared transaction ' || gid, 'prepared'" \
	" FROM pg_prepared_xacts WHERE transaction = $1::xid8::xid LIMIT 1"

#define SQL_DEAD                                                          \
	"INSERT INTO event_dead_letter (listener_id, event_id, event_tx," \
	" event_type, error, attempts, action)"                           \
	" VALUES ($1, $2::bigint, $3::xid8, $4, $5, $6::int, $7)"         \
	" ON CONFLICT (listener_id, event_id) DO UPDATE SET"              \
	" error = EXCLUDED.error,"                                        \
	" attempts = event_dead_letter.attempts + EXCLUDED.attempts,"     \
	" action = EXCLUDED.action, dead_at = now()"

/* Batches "stuck" on the same barrier this long ask who holds it. */
#define BLOCKER_AFTER_MS 50
/* ... and report the state WAITING after this long. */
#define WAITING_AFTER_MS 200
#define RECHECK_MAX_MS 500
/* The row is rewritten at least this often (its updated_at: alive). */
#define ROW_HEARTBEAT_MS 60000
/* Chained batches (catching up) probe the head and lag this often. */
#define CHAIN_PROBE_MS 100

static void start_batch(dis__listener *l);
static void on_rollback(dis__listener *l);
static void on_timer(evutil_socket_t fd, short what, void *arg);
static void on_pq(dis__pq *pq, void *arg, dis__pq_event ev, int status);

/* ---- small helpers ---- */

void dis__l_log(dis__listener *l, dis_log_level level, const char *fmt, ...)
{
	dis_runtime *rt = l->rt;
	char msg[DIS_ERRMSG_LEN + 256];
	int n;
	va_list ap;

	if (!rt->log || (int)level > rt->log_level)
		return;
	n = snprintf(msg, sizeof(msg), "%s: ", l->tag);
	if (n < 0 || (size_t)n >= sizeof(msg))
		n = 0;
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	rt->log(rt->log_arg, level, msg);
}

static void set_error(dis__listener *l, int code, const char *fmt, ...)
	DIS_PRINTF(3, 4);

static void set_error(dis__listener *l, int code, const char *fmt, ...)
{
	va_list ap;

	l->last_code = code;
	va_start(ap, fmt);
	vsnprintf(l->last_error, sizeof(l->last_error), fmt, ap);
	va_end(ap);
	l->row_dirty = true;
}

static void clear_error(dis__listener *l)
{
	if (l->last_code || l->last_error[0])
		l->row_dirty = true;
	l->last_code = 0;
	l->last_error[0] = '\0';
}

static void set_state(dis__listener *l, dis_listener_state s)
{
	if (l->state != s)
		l->row_dirty = true;
	l->state = s;
}

static const char *db_state(const dis__listener *l)
{
	return dis_listener_state_name(l->halted ? DIS_LISTENER_STOPPED
						 : l->state);
}

/* Failed attempts of event `id` so far (past the checkpoint). */
static uint32_t failures_of(const dis__listener *l, int64_t id)
{
	for (size_t i = 0; i < l->nfailed; i++)
		if (l->failed[i].pos.id == id)
			return l->failed[i].attempts;
	return 0;
}

/* Counts a failed attempt of the event at `pos`; returns its attempts. */
static uint32_t failures_add(dis__listener *l, dis_position pos)
{
	size_t i;

	for (i = 0; i < l->nfailed; i++)
		if (l->failed[i].pos.id == pos.id)
			return ++l->failed[i].attempts;
	if (l->nfailed == l->failed_cap) {
		size_t cap = l->failed_cap ? 2 * l->failed_cap : 4;
		struct dis__lfailed *f =
			realloc(l->failed, cap * sizeof(*l->failed));

		/* Out of memory: counted as the first attempt, as when
		 * only the failing event was remembered. */
		if (!f)
			return 1;
		l->failed = f;
		l->failed_cap = cap;
	}
	l->failed[l->nfailed].pos = pos;
	l->failed[l->nfailed].attempts = 1;
	return l->failed[l->nfailed++].attempts;
}

/* Forgets the events the checkpoint has passed (all: `all`). */
static void failures_prune(dis__listener *l, bool all)
{
	size_t kept = 0;

	for (size_t i = 0; i < l->nfailed; i++)
		if (!all && dis_position_cmp(l->failed[i].pos, l->ck) > 0)
			l->failed[kept++] = l->failed[i];
	l->nfailed = kept;
}

static void clear_failure(dis__listener *l)
{
	l->fail_id = 0;
	l->fail_attempts = 0;
	l->fail_code = 0;
	l->fail_msg[0] = '\0';
	l->poison = false;
	l->fail_due_ms = 0;
	l->prefix = 0;
	l->single = 0;
}

static void drop_rows(dis__listener *l)
{
	if (!l->rows_lent)
		PQclear(l->rows);
	l->rows = NULL;
	l->rows_lent = false;
	l->row0 = 0;
	l->nrows = 0;
}

static void arm_timer(dis__listener *l, uint64_t at_ms)
{
	uint64_t now = dis__now_ms();
	uint64_t d = at_ms > now ? at_ms - now : 0;
	struct timeval tv = {(time_t)(d / 1000),
			     (suseconds_t)(d % 1000) * 1000};

	evtimer_add(l->ev_timer, &tv);
}

/* Whether the row's checkpoint differs from the cached one; adopts it. */
static bool adopt_row(dis__listener *l, const PGresult *r, bool known)
{
	dis_position ck;
	int64_t resets;

	ck.tx = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
	ck.id = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
	resets = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
	l->last_id = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
	if (known && !dis_position_cmp(ck, l->ck) && resets == l->resets)
		return false;
	if (known) {
		char a[48], b[48];

		dis__l_log(l, DIS_LOG_INFO,
			   "checkpoint moved from %s to %s (by another "
			   "process or a reset)",
			   dis_position_format(l->ck, a, sizeof(a)),
			   dis_position_format(ck, b, sizeof(b)));
		clear_failure(l);
		failures_prune(l, true);
		l->row_dirty = true;
		if (l->halted) {
			l->halted = false;
			clear_error(l);
			set_state(l, DIS_LISTENER_RUNNING);
			dis__l_log(l, DIS_LOG_INFO, "resumed");
		}
	}
	l->ck = ck;
	l->resets = resets;
	return true;
}

/* ---- lifecycle ---- */

static char *types_literal(const dis_query *q)
{
	const dis_schema *s = dis_query_schema(q);
	dis__buf b;

	dis__buf_init(&b);
	for (size_t i = 0; i < dis_schema_type_count(s); i++) {
		const char *t = dis_schema_type_name(s, i);

		if (dis_query_has_type(q, t))
			dis__buf_array_ident(&b, t);
	}
	dis__buf_array_end(&b);
	return dis__buf_take(&b);
}

int dis__listener_init(dis__listener *l, char *err, size_t errlen)
{
	dis__sql sql;
	int rc;

	snprintf(l->tag, sizeof(l->tag), "listener %s", l->id);
	l->types_array = types_literal(l->query);
	if (dis_query_describe(l->query, &l->query_text))
		l->query_text = NULL;
	dis__sql_init(&sql);
	/* Any position but the start: the general form of the statement. */
	rc = dis__read_sql(l->query, (dis_position){1, 1}, 1, &sql);
	if (!rc)
		l->fetch_sql = dis__strdup(dis__buf_cstr(&sql.text));
	dis__sql_free(&sql);
	if (rc) {
		dis__errf(err, errlen, "listener %s: cannot build its read: %s",
			  l->id, dis_strerror(rc));
		return rc;
	}
	l->pq = dis__pq_new(l->rt->base, on_pq, l);
	l->ev_timer = evtimer_new(l->rt->base, on_timer, l);
	if (!l->types_array || !l->query_text || !l->fetch_sql || !l->pq ||
	    !l->ev_timer) {
		dis__errf(err, errlen, "out of memory");
		return DIS_ENOMEM;
	}
	dis__pq_set_log(l->pq, l->rt->log, l->rt->log_arg, l->rt->log_level,
			l->tag);
	l->state = DIS_LISTENER_STOPPED;
	return 0;
}

void dis__listener_release(dis__listener *l)
{
	if (!l)
		return;
	dis__listener_forget_prepared(l);
	free(l->q);
	free(l->failed);
	drop_rows(l);
	dis__ahead_free(l);
	dis_store_free(l->store);
	dis__pq_free(l->pq);
	if (l->ev_timer)
		event_free(l->ev_timer);
	dis_query_free(l->query);
	free(l->types_array);
	free(l->query_text);
	free(l->fetch_sql);
	dis_event_free(l->view);
	free(l->id);
	free(l);
}

void dis__listener_close(dis__listener *l)
{
	dis__listener_forget_prepared(l);
	drop_rows(l);
	dis__ahead_drop(l, true);
	dis_store_free(l->store);
	l->store = NULL;
	dis__pq_close(l->pq);
	evtimer_del(l->ev_timer);
	l->st = DIS__L_CLOSED;
	l->state = DIS_LISTENER_STOPPED;
	l->fail = DIS__F_NONE;
}

void dis__listener_start(dis__listener *l)
{
	if (l->st != DIS__L_CLOSED)
		return;
	dis__pq_set_log(l->pq, l->rt->log, l->rt->log_arg, l->rt->log_level,
			l->tag);
	l->stopping = false;
	l->st = DIS__L_DOWN;
	l->due_ms = 0;
	l->backoff_ms = 0;
	l->state = l->halted ? DIS_LISTENER_STOPPED : DIS_LISTENER_STARTING;
	dis__listener_schedule(l);
}

bool dis__listener_wants(const dis__listener *l, char *const *types, size_t n)
{
	if (!l->cfg.notifier || l->halted || l->stopping ||
	    l->st == DIS__L_CLOSED)
		return false;
	if (n == 0)
		return true;
	for (size_t i = 0; i < n; i++)
		if (dis_query_has_type(l->query, types[i]))
			return true;
	return false;
}

/* ---- connection ---- */

/* The connection broke or could not be made: back off, then reconnect. */
static void conn_down(dis__listener *l, const char *why)
{
	dis_runtime *rt = l->rt;
	uint32_t lo = rt->opts.reconnect_min_ms, hi = rt->opts.reconnect_max_ms;
	uint64_t d;

	dis__listener_forget_prepared(l);
	drop_rows(l);
	dis__ahead_drop(l, true);
	/* A lost connection is closed (freed) already: keep the store off
	 * it. */
	if (l->store && dis_store_conn(l->store) != dis__pq_conn(l->pq))
		dis__store_rebind(l->store, NULL);
	dis_store_free(l->store);
	l->store = NULL;
	dis__pq_close(l->pq);
	l->fail = DIS__F_NONE;
	if (l->stopping) {
		l->st = DIS__L_CLOSED;
		l->state = DIS_LISTENER_STOPPED;
		dis__rt_check_stopped(rt);
		return;
	}
	l->st = DIS__L_DOWN;
	l->errors++;
	set_error(l, DIS_ECONN, "connection: %s", why);
	if (!l->halted)
		set_state(l, DIS_LISTENER_RETRYING);
	l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : lo;
	if (l->backoff_ms > hi)
		l->backoff_ms = hi;
	d = dis__jitter(rt, l->backoff_ms, 0.5);
	l->due_ms = dis__now_ms() + d;
	dis__l_log(l, DIS_LOG_WARN,
		   "connection: %s; reconnecting in %" PRIu64 " ms", why, d);
	dis__listener_schedule(l);
}

static void connect_now(dis__listener *l)
{
	dis_runtime *rt = l->rt;
	int rc = dis__pq_connect(l->pq, rt->conninfo, rt->appname,
				 rt->opts.connect_timeout_ms);

	if (rc) {
		conn_down(l, dis__pq_errmsg(l->pq));
		return;
	}
	l->st = DIS__L_CONNECTING;
}

static void on_connected(dis__listener *l)
{
	const char *reg[3] = {l->id, l->types_array, l->query_text};
	const char *id[1] = {l->id};
	char lock_ms[16];
	const char *lock_timeout[1] = {lock_ms};
	dis__stmt s[9] = {
		{.sql = SQL_REGISTER, .nparams = 3, .values = reg},
		{.name = S_FETCH, .sql = l->fetch_sql, .prepare = true},
		{.name = S_LOCK, .sql = SQL_LOCK, .prepare = true},
		{.name = S_COMMIT, .sql = SQL_COMMIT_ROW, .prepare = true},
		{.name = S_PROBE, .sql = SQL_PROBE, .prepare = true},
		{.name = S_DEAD, .sql = SQL_DEAD, .prepare = true},
		{.sql = SQL_READ_ROW, .nparams = 1, .values = id},
		/* The connection runs only batches (see durable_commit). */
		{.sql = l->cfg.durable_commit ? "SET synchronous_commit = on"
					      : "SET synchronous_commit = off"},
		/* in ms; 0: none (see lock_timeout_ms) */
		{.sql = "SELECT set_config('lock_timeout', $1, false)",
		 .nparams = 1,
		 .values = lock_timeout},
	};
	int rc;

	snprintf(lock_ms, sizeof(lock_ms), "%" PRIu32, l->cfg.lock_timeout_ms);
	rc = dis_store_wrap(dis__pq_conn(l->pq), l->rt->schema, &l->store);
	if (rc) {
		conn_down(l, "out of memory");
		return;
	}
	dis_store_set_log(l->store, l->rt->log, l->rt->log_arg);
	/* The fetch statement's parameter count, for PQsendPrepare. */
	s[1].nparams = 0;
	rc = dis__pq_send(l->pq, s, 9);
	if (rc) {
		conn_down(l, dis__pq_errmsg(l->pq));
		return;
	}
	l->st = DIS__L_SETUP;
}

static void on_setup(dis__listener *l)
{
	int bad = dis__pq_check(l->pq, NULL);
	const char *state = dis__pq_sqlstate(l->pq);
	PGresult *row;
	char why[DIS_ERRMSG_LEN + 64];

	if (bad >= 0) {
		snprintf(why, sizeof(why), "setting up: %s%s",
			 dis__pq_errmsg(l->pq),
			 !strcmp(state, "42P01") || !strcmp(state, "42703")
				 ? " (run dis_store_migrate / disctl init)"
				 : "");
		conn_down(l, why);
		return;
	}
	row = dis__pq_result(l->pq, 6);
	if (PQntuples(row) != 1) {
		conn_down(l, "setting up: the listener's row vanished");
		return;
	}
	adopt_row(l, row, l->committed_once);
	if (l->committed_once)
		l->reconnects++;
	l->st = DIS__L_IDLE;
	l->row_dirty = true;
	l->pending = true;
	dis__l_log(l, DIS_LOG_INFO, "connected (backend %d)",
		   dis__pq_backend_pid(l->pq));
	dis__listener_schedule(l);
}

/* ---- scheduling ---- */

void dis__listener_schedule(dis__listener *l)
{
	dis_runtime *rt = l->rt;
	uint64_t now, due;

	if (rt->free_requested || rt->destroying)
		return;
	if (l->stopping) {
		switch (l->st) {
		case DIS__L_COMMIT:
		case DIS__L_HANDLE: return; /* finishes first */
		case DIS__L_CLOSED: break;
		default: dis__listener_close(l); break;
		}
		dis__rt_check_stopped(rt);
		return;
	}
	now = dis__now_ms();
	if (l->st == DIS__L_DOWN) {
		if (now >= l->due_ms)
			connect_now(l);
		else
			arm_timer(l, l->due_ms);
		return;
	}
	if (l->st != DIS__L_IDLE)
		return;
	due = l->due_ms;
	/* The failing event waits for its retry; its prefix does not. */
	if (l->fail_id && !l->prefix && l->fail_due_ms > due)
		due = l->fail_due_ms;
	if (l->pending && now >= due) {
		start_batch(l);
		return;
	}
	if (!l->pending) {
		uint64_t at = l->next_poll_ms;

		if (l->recheck_at_ms && l->recheck_at_ms < at)
			at = l->recheck_at_ms;
		due = at > due ? at : due;
	}
	arm_timer(l, due);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	dis__listener *l = arg;
	dis_runtime *rt = l->rt;

	(void)fd;
	(void)what;
	dis__rt_enter(rt);
	if (l->st == DIS__L_IDLE) {
		uint64_t now = dis__now_ms();

		if (now >= l->next_poll_ms ||
		    (l->recheck_at_ms && now >= l->recheck_at_ms))
			l->pending = true;
	}
	dis__listener_schedule(l);
	dis__rt_leave(rt);
}

/* ---- the batch ---- */

static void start_batch(dis__listener *l)
{
	const char *id[1] = {l->id};
	dis__sql sql;
	dis__stmt s[3] = {
		{.sql = SQL_BEGIN},
		{.binary = 1},
		{.name = S_LOCK, .nparams = 1, .values = id},
	};
	size_t limit = l->cfg.fetch_size;
	int rc;

	if (l->poison || l->single)
		limit = 1;
	else if (l->prefix)
		limit = l->prefix;
	l->pending = false;
	l->recheck_at_ms = 0;
	l->t0 = dis__now_s();
	l->from = l->ck;
	l->limit = limit;
	l->fail = DIS__F_NONE;
	l->rows_ahead = dis__ahead_covers(l, l->ck, limit);
	if (l->rows_ahead) {
		s[1] = s[2];
		rc = dis__pq_send(l->pq, s, 2);
		goto sent;
	}
	dis__sql_init(&sql);
	rc = dis__read_sql(l->query, l->ck, limit, &sql);
	if (rc) {
		dis__sql_free(&sql);
		conn_down(l, "out of memory");
		return;
	}
	s[1] = dis__listener_read_stmt(l, &sql, S_FETCH);
	rc = dis__pq_send(l->pq, s, 3);
	dis__sql_free(&sql);
sent:
	if (rc) {
		conn_down(l, dis__pq_errmsg(l->pq));
		return;
	}
	l->st = DIS__L_FETCH;
}

static void send_refetch(dis__listener *l)
{
	dis__sql sql;
	dis__stmt s;
	int rc;

	l->from = l->ck;
	dis__sql_init(&sql);
	rc = dis__read_sql(l->query, l->ck, l->limit, &sql);
	if (rc) {
		dis__sql_free(&sql);
		conn_down(l, "out of memory");
		return;
	}
	s = dis__listener_read_stmt(l, &sql, S_FETCH);
	rc = dis__pq_send(l->pq, &s, 1);
	dis__sql_free(&sql);
	if (rc) {
		conn_down(l, dis__pq_errmsg(l->pq));
		return;
	}
	l->st = DIS__L_REFETCH;
}

dis__stmt dis__listener_read_stmt(const dis__listener *l, dis__sql *sql,
				  const char *name)
{
	dis__stmt s = {.binary = 1,
		       .nparams = sql->nparams,
		       .values = (const char *const *)sql->params};

	if (!strcmp(dis__buf_cstr(&sql->text), l->fetch_sql))
		s.name = name;
	else
		s.sql = dis__buf_cstr(&sql->text);
	return s;
}

/*
 * Ends the batch without committing: ROLLBACK, plus a note of the failure
 * in the row, or the row's registration when it was missing.
 */
static void send_rollback(dis__listener *l)
{
	char attempts[16], failed[24];
	const char *note[6] = {l->id,    db_state(l), l->last_error,
			       attempts, failed,      l->rt->owner};
	const char *reg[3] = {l->id, l->types_array, l->query_text};
	dis__stmt s[2];
	int n = 0, rc;

	snprintf(attempts, sizeof(attempts), "%" PRIu32, l->fail_attempts);
	snprintf(failed, sizeof(failed), "%" PRId64, l->fail_id);
	if (PQtransactionStatus(dis__pq_conn(l->pq)) != PQTRANS_IDLE)
		s[n++] = (dis__stmt){.sql = "ROLLBACK"};
	if (l->fail == DIS__F_EVENT || l->fail == DIS__F_INFRA)
		s[n++] = (dis__stmt){
			.sql = SQL_NOTE, .nparams = 6, .values = note};
	else if (l->fail == DIS__F_SKIP)
		s[n++] = (dis__stmt){
			.sql = SQL_REGISTER, .nparams = 3, .values = reg};
	drop_rows(l);
	if (n == 0) {
		on_rollback(l);
		return;
	}
	rc = dis__pq_send(l->pq, s, n);
	if (rc) {
		conn_down(l, dis__pq_errmsg(l->pq));
		return;
	}
	l->st = DIS__L_ROLLBACK;
}

/* Our own statements failed: roll back, back off, try again. */
static void infra_fail(dis__listener *l, const char *what)
{
	l->errors++;
	set_error(l, DIS_EPG, "%s: %s", what, dis__pq_errmsg(l->pq));
	if (!l->halted)
		set_state(l, DIS_LISTENER_RETRYING);
	dis__l_log(l, DIS_LOG_WARN, "%s", l->last_error);
	l->fail = DIS__F_INFRA;
	send_rollback(l);
}

static uint64_t retry_delay(dis__listener *l)
{
	const dis_retry_policy *p = &l->cfg.retry;
	uint64_t d = p->delay_ms;

	if (p->kind == DIS_RETRY_EXPONENTIAL) {
		for (uint32_t i = 1; i < l->fail_attempts; i++) {
			d *= 2;
			if (p->max_delay_ms && d >= p->max_delay_ms) {
				d = p->max_delay_ms;
				break;
			}
		}
		if (p->max_delay_ms && d > p->max_delay_ms)
			d = p->max_delay_ms;
	}
	return dis__jitter(l->rt, d, p->jitter);
}

/*
 * Event `id`, the idx-th of the batch, failed. Counts the attempt and
 * decides: retry after a delay, or poison.
 */
static void event_failed(dis__listener *l, int idx, dis_position pos, int code,
			 const char *msg, bool poison_now)
{
	const dis_retry_policy *p = &l->cfg.retry;
	int64_t id = pos.id;

	l->fail_id = id;
	l->fail_pos = pos;
	l->fail_attempts = failures_add(l, pos);
	l->fail_code = code;
	snprintf(l->fail_msg, sizeof(l->fail_msg), "%s", msg);
	l->errors++;
	set_error(l, code, "event %" PRId64 ": %s", id, msg);
	l->prefix = (uint32_t)idx;
	l->single = 0;
	l->fail = DIS__F_EVENT;
	if (poison_now || p->kind == DIS_RETRY_ABORT ||
	    (p->max_attempts && l->fail_attempts >= p->max_attempts)) {
		l->poison = true;
		l->fail_due_ms = 0;
		dis__l_log(l, DIS_LOG_ERROR,
			   "event %" PRId64 " failed (attempt %" PRIu32
			   "), giving up: %s",
			   id, l->fail_attempts, msg);
	} else {
		uint64_t d = retry_delay(l);

		l->fail_due_ms = dis__now_ms() + d;
		l->retries++;
		set_state(l, DIS_LISTENER_RETRYING);
		dis__l_log(l, DIS_LOG_WARN,
			   "event %" PRId64 " failed (attempt %" PRIu32
			   "): %s; retrying in %" PRIu64 " ms",
			   id, l->fail_attempts, msg, d);
	}
}

/*
 * Writes the dead letter of row r inside the batch (blocking call).
 * Returns 0 or DIS_EPG (the transaction is then aborted).
 */
static int dead_letter(dis__listener *l, PGconn *conn, int r, const char *error,
		       uint32_t attempts, bool skip)
{
	dis_position p = dis__row_position(l->rows, l->row0 + r, 1);
	char id[24], tx[24], att[16];
	const char *v[7] = {l->id,
			    id,
			    tx,
			    PQgetvalue(l->rows, l->row0 + r, 3),
			    error,
			    att,
			    skip ? "skipped" : "stopped"};
	PGresult *res;
	int rc = 0;

	snprintf(id, sizeof(id), "%" PRId64, p.id);
	snprintf(tx, sizeof(tx), "%" PRIu64, p.tx);
	snprintf(att, sizeof(att), "%" PRIu32, attempts ? attempts : 1);
	res = PQexecPrepared(conn, S_DEAD, 7, v, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		set_error(l, DIS_EPG,
			  "writing the dead letter of event %" PRId64 ": %s",
			  p.id, PQresultErrorMessage(res));
		rc = DIS_EPG;
	}
	PQclear(res);
	if (rc)
		return rc;
	l->dead++; /* counted when the batch commits */
	if (skip) {
		dis__l_log(l, DIS_LOG_ERROR,
			   "event %" PRId64 " dead-lettered, going on: %s",
			   p.id, error);
	} else {
		l->halt_after = true;
		l->last_code = l->fail_code ? l->fail_code : DIS_ESERDE;
		snprintf(l->last_error, sizeof(l->last_error),
			 "stopped at event %" PRId64 ": %.400s", p.id, error);
		l->row_dirty = true;
		dis__l_log(l, DIS_LOG_ERROR,
			   "event %" PRId64 " dead-lettered, listener "
			   "stopped in front of it: %s",
			   p.id, error);
	}
	return 0;
}

static void commit(dis__listener *l);

/* Why the handler's call failed, in words. */
static void failure_text(dis__listener *l, PGconn *conn, int rc,
			 PGTransactionStatusType ts, const char *store_before,
			 char *out, size_t len)
{
	const char *serr = l->store ? dis_store_errmsg(l->store) : "";

	if (ts == PQTRANS_IDLE)
		snprintf(out, len,
			 "the handler ended the batch transaction "
			 "(never COMMIT or ROLLBACK in a handler)");
	else if (ts == PQTRANS_ACTIVE)
		snprintf(out, len, "the handler left a query running");
	else if (rc == 0)
		snprintf(out, len,
			 "the handler left the transaction "
			 "aborted: %s",
			 PQerrorMessage(conn));
	else if (strncmp(serr, store_before, sizeof(l->store_msg) - 1) &&
		 strcmp(serr, "no error"))
		snprintf(out, len, "handler failed (%s): %s", dis_strerror(rc),
			 serr);
	else if (ts == PQTRANS_INERROR)
		snprintf(out, len, "handler failed (%s): %s", dis_strerror(rc),
			 PQerrorMessage(conn));
	else
		snprintf(out, len, "handler failed (%s)", dis_strerror(rc));
	/* libpq's messages end in a newline. */
	for (size_t n = strlen(out); n && out[n - 1] == '\n'; n--)
		out[n - 1] = '\0';
}

/* ---- pipelined writes of handlers (dis_batch_exec) ---- */

void dis__listener_forget_prepared(dis__listener *l)
{
	for (int i = 0; i < l->nprep; i++)
		free(l->prep[i].sql);
	l->nprep = 0;
	l->queued = 0;
}

static void drop_prepared(dis__listener *l, int slot)
{
	free(l->prep[slot].sql);
	l->prep[slot].sql = NULL;
}

/*
 * Collects the results of the statements handlers queued: returns 0, or
 * -1 when one failed (the first failure's event index and message are in
 * q_fail_idx / q_msg; the transaction is then aborted).
 */
static int queue_sync(dis__listener *l, PGconn *conn)
{
	int got = 0, n = l->queued;
	bool seen = false;
	PGresult *r;

	if (n == 0)
		return l->q_failed ? -1 : 0;
	l->queued = 0;
	if (!PQpipelineSync(conn))
		goto broken;
	while (got < n) {
		ExecStatusType st;

		r = PQgetResult(conn);
		if (!r) {
			if (PQstatus(conn) != CONNECTION_OK)
				goto broken;
			if (seen) {
				got++;
				seen = false;
			}
			continue;
		}
		seen = true;
		st = PQresultStatus(r);
		if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
			if (l->q[got].prep >= 0)
				drop_prepared(l, l->q[got].prep);
			if (!l->q_failed) {
				l->q_failed = true;
				l->q_fail_idx = l->q[got].idx;
				snprintf(l->q_msg, sizeof(l->q_msg), "%s",
					 st == PGRES_PIPELINE_ABORTED
						 ? "aborted"
						 : PQresultErrorMessage(r));
			}
		}
		PQclear(r);
	}
	/* Up to the sync. */
	while ((r = PQgetResult(conn)) != NULL ||
	       PQstatus(conn) == CONNECTION_OK) {
		ExecStatusType st = r ? PQresultStatus(r) : PGRES_EMPTY_QUERY;

		PQclear(r);
		if (st == PGRES_PIPELINE_SYNC)
			break;
	}
	if (PQstatus(conn) != CONNECTION_OK || !PQexitPipelineMode(conn))
		goto broken;
	return l->q_failed ? -1 : 0;
broken:
	if (!l->q_failed) {
		l->q_failed = true;
		l->q_fail_idx = l->batch.idx;
		snprintf(l->q_msg, sizeof(l->q_msg), "%s",
			 PQerrorMessage(conn));
	}
	return -1;
}

int dis_batch_exec(dis_batch *b, const char *sql, int nparams,
		   const char *const *values, const int *lengths,
		   const int *formats)
{
	dis__listener *l;
	PGconn *conn;
	const char *name = NULL;
	int slot = -1;

	if (!b || !sql || nparams < 0 || (nparams && !values))
		return DIS_EINVAL;
	l = b->l;
	if (l->st != DIS__L_HANDLE || !l->store)
		return dis_batch_fail(b, DIS_ESTATE,
				      "dis_batch_exec outside "
				      "a handler call");
	conn = dis_store_conn(l->store);
	if (l->queued + 2 > l->qcap) {
		int cap = l->qcap ? l->qcap * 2 : 256;
		struct dis__queued *q = realloc(l->q, (size_t)cap * sizeof(*q));

		if (!q)
			return dis_batch_fail(b, DIS_ENOMEM, "out of memory");
		l->q = q;
		l->qcap = cap;
	}
	if (PQpipelineStatus(conn) == PQ_PIPELINE_OFF &&
	    !PQenterPipelineMode(conn))
		return dis_batch_fail(b, DIS_ECONN, "pipeline: %s",
				      PQerrorMessage(conn));
	/* The same text is parsed once per connection. */
	for (int i = 0; i < l->nprep; i++)
		if (l->prep[i].sql && !strcmp(l->prep[i].sql, sql)) {
			slot = i;
			break;
		}
	if (slot < 0 && l->nprep < DIS__PREPARED_MAX) {
		slot = l->nprep;
		l->prep[slot].sql = dis__strdup(sql);
		if (l->prep[slot].sql) {
			l->nprep++;
			snprintf(l->prep[slot].name, sizeof(l->prep[slot].name),
				 "dis_x%d", slot);
			if (!PQsendPrepare(conn, l->prep[slot].name, sql,
					   nparams, NULL)) {
				drop_prepared(l, slot);
				return dis_batch_fail(b, DIS_ECONN,
						      "queueing: %s",
						      PQerrorMessage(conn));
			}
			l->q[l->queued++] = (struct dis__queued){b->idx, slot};
		} else {
			slot = -1;
		}
	}
	if (slot >= 0 && l->prep[slot].sql)
		name = l->prep[slot].name;
	if (name ? !PQsendQueryPrepared(conn, name, nparams, values, lengths,
					formats, 0)
		 : !PQsendQueryParams(conn, sql, nparams, NULL, values, lengths,
				      formats, 0))
		return dis_batch_fail(b, DIS_ECONN, "queueing: %s",
				      PQerrorMessage(conn));
	l->q[l->queued++] = (struct dis__queued){b->idx, -1};
	/* Bound what waits in libpq's buffers. */
	if (l->queued >= DIS__QUEUE_SYNC_AT)
		queue_sync(l, conn);
	return 0;
}

/* Runs the handler over the fetched rows; then commits or rolls back. */

/* The first event of the batch that failed, and why. */
typedef struct first_fail {
	int idx;
	int code;
	bool poison;
	char msg[DIS_ERRMSG_LEN];
} first_fail;

static void note_fail(first_fail *f, int idx, int code, bool poison,
		      const char *msg)
{
	if (f->idx >= 0 && f->idx <= idx)
		return;
	f->idx = idx;
	f->code = code;
	f->poison = poison;
	snprintf(f->msg, sizeof(f->msg), "%s", msg);
	for (size_t n = strlen(f->msg); n && f->msg[n - 1] == '\n'; n--)
		f->msg[n - 1] = '\0';
}

/* A queued statement failed: its event is the batch's failure. */
static void take_queue_failure(dis__listener *l, first_fail *f)
{
	if (l->q_failed)
		note_fail(f, l->q_fail_idx, DIS_EPG, false, l->q_msg);
}

/*
 * Decodes row i. Decoding may query the schema registry (an unknown writer
 * schema), which libpq refuses while writes are queued: then collect the
 * queue and decode again. Returns the decode's code, or 1 when the queue
 * held a failure (the batch ends there).
 */
static int decode_row(dis__listener *l, PGconn *conn, int i,
		      const dis_position *pos, dis_event **ev)
{
	int rc = dis__store_event_view_row(l->store, l->rows, l->row0 + i, 1,
					   pos, &l->view, ev);

	if (rc && rc != DIS_ESERDE &&
	    PQpipelineStatus(conn) != PQ_PIPELINE_OFF) {
		if (queue_sync(l, conn))
			return 1;
		rc = dis__store_event_view_row(l->store, l->rows, l->row0 + i,
					       1, pos, &l->view, ev);
	}
	return rc;
}

static void handle(dis__listener *l)
{
	dis_runtime *rt = l->rt;
	dis_batch *b;
	PGconn *conn;
	first_fail ff = {.idx = -1};
	bool skip = l->cfg.on_poison == DIS_POISON_DEAD_LETTER;
	int rc, i;

	l->st = DIS__L_HANDLE;
	l->last = l->from;
	l->max_id = 0;
	l->done = l->handled = l->dead = 0;
	l->fail_ok = false;
	l->cut = false;
	l->halt_after = false;
	l->queued = 0;
	l->q_failed = false;
	conn = dis__pq_lend(l->pq);
	if (!conn) {
		conn_down(l, "connection not idle after the fetch");
		return;
	}
	b = &l->batch;
	b->l = l;
	if (l->fail_id && dis_position_cmp(l->fail_pos, l->ck) <= 0) {
		/* The checkpoint is past the failing event already. */
		clear_failure(l);
	}
	for (i = 0; i < l->nrows; i++) {
		dis_position pos = dis__row_position(l->rows, l->row0 + i, 1);
		PGTransactionStatusType ts;
		dis_event *ev;

		if (rt->stopping || l->stopping || rt->free_requested) {
			l->cut = true;
			break;
		}
		if (l->poison && pos.id == l->fail_id) {
			ev = NULL;
			rc = DIS_ESERDE;
		} else {
			rc = decode_row(l, conn, i, &pos, &ev);
			if (rc == 1)
				break;
		}
		if (rc == DIS_ESERDE) {
			/* A poison event: dead-lettered, never handled. */
			bool known = l->poison && pos.id == l->fail_id;
			char why[DIS_ERRMSG_LEN];

			snprintf(why, sizeof(why), "%s",
				 known ? l->fail_msg
				       : dis_store_errmsg(l->store));
			if (queue_sync(l, conn))
				break;
			if (!known) {
				l->errors++;
				l->fail_code = DIS_ESERDE;
			}
			if (PQtransactionStatus(conn) != PQTRANS_INTRANS ||
			    dead_letter(l, conn, i, why,
					known ? l->fail_attempts : 1, skip)) {
				if (!known)
					note_fail(&ff, i, DIS_ESERDE, true,
						  why);
				else
					l->fail = DIS__F_INFRA;
				break;
			}
			if (!skip) {
				/* The row names the event it stopped at. */
				if (!known) {
					l->fail_id = pos.id;
					l->fail_pos = pos;
					l->fail_attempts = 1;
				}
				l->cut = true;
				break;
			}
			if (known)
				clear_failure(l);
			l->last = pos;
			l->done++;
			continue;
		}
		if (rc) {
			l->errors++;
			set_error(l, rc, "%s", dis_store_errmsg(l->store));
			dis__l_log(l, DIS_LOG_WARN, "%s", l->last_error);
			l->fail = DIS__F_INFRA;
			break;
		}
		b->idx = i;
		b->attempt = failures_of(l, pos.id) + 1;
		b->failed = false;
		b->code = 0;
		/* What the store said before, to tell a new message. */
		if (strncmp(dis_store_errmsg(l->store), l->store_msg,
			    sizeof(l->store_msg) - 1))
			snprintf(l->store_msg, sizeof(l->store_msg), "%s",
				 dis_store_errmsg(l->store));
		rc = l->fn(l->arg, b, ev);
		if (ev != l->view)
			dis_event_free(ev);
		if (rt->free_requested)
			goto out; /* the runtime goes away on the way out */
		if (PQstatus(conn) != CONNECTION_OK)
			break; /* take_back reports it */
		ts = PQtransactionStatus(conn);
		/* With writes queued the status is "active" until the sync. */
		if (rc == 0 && (ts == PQTRANS_INTRANS ||
				(ts == PQTRANS_ACTIVE && l->queued > 0))) {
			/* Cleared once committed: COMMIT may still fail. */
			if (pos.id == l->fail_id)
				l->fail_ok = true;
			l->last = pos;
			if (pos.id > l->max_id)
				l->max_id = pos.id;
			l->handled_id = pos.id;
			l->done++;
			l->handled++;
			continue;
		}
		if (b->failed && rc) {
			note_fail(&ff, i, b->code, false, b->msg);
		} else {
			char msg[DIS_ERRMSG_LEN];

			if (l->queued)
				queue_sync(l, conn);
			failure_text(l, conn, rc, PQtransactionStatus(conn),
				     l->store_msg, msg, sizeof(msg));
			note_fail(&ff, i, rc ? rc : DIS_EPG, false, msg);
		}
		break;
	}
	if (PQstatus(conn) == CONNECTION_OK)
		queue_sync(l, conn);
	take_queue_failure(l, &ff);
	if (ff.idx >= 0 && l->fail != DIS__F_INFRA)
		event_failed(l, ff.idx,
			     dis__row_position(l->rows, l->row0 + ff.idx, 1),
			     ff.code, ff.msg, ff.poison);
out:
	if (rt->free_requested)
		return;
	if (dis__pq_take_back(l->pq)) {
		conn_down(l, dis__pq_errmsg(l->pq));
		return;
	}
	if (l->fail != DIS__F_NONE) {
		if (l->fail == DIS__F_INFRA && !l->halted)
			set_state(l, DIS_LISTENER_RETRYING);
		send_rollback(l);
		return;
	}
	commit(l);
}

static void fetched(dis__listener *l, PGresult *rows)
{
	int n;

	l->rows = rows;
	l->rows_lent = false;
	l->row0 = 0;
	if (!rows || PQntuples(rows) < 1 ||
	    dis__read_result(rows, l->limit, l->from, &n, &l->next)) {
		l->errors++;
		set_error(l, DIS_EPG,
			  "unexpected fetch result: rows missing or out "
			  "of position order");
		l->fail = DIS__F_INFRA;
		send_rollback(l);
		return;
	}
	l->nrows = n;
	l->barrier = dis__get_be64(PQgetvalue(rows, PQntuples(rows) - 1, 0));
	/* Full: another batch follows from here; read it meanwhile. */
	if ((size_t)n == l->limit && l->limit == l->cfg.fetch_size &&
	    !l->prefix && !l->single && !l->poison && !l->fail_id)
		dis__ahead_start(l, l->next, l->cfg.fetch_size);
	handle(l);
}

/* The read-ahead's rows, or its wait, or (failed) a fetch of our own. */
void dis__listener_ahead_in(dis__listener *l)
{
	dis__ahead_slice sl;
	bool pending;

	if (dis__ahead_take(l, &sl, &pending)) {
		/* Checked in order (and their read's barrier) as a whole. */
		l->ahead_batches++;
		l->rows = sl.res;
		l->rows_lent = true;
		l->row0 = sl.row0;
		l->nrows = sl.nrows;
		l->next = sl.next;
		l->barrier = sl.barrier;
		handle(l);
	} else if (pending) {
		l->st = DIS__L_AHEAD;
	} else {
		l->st = DIS__L_FETCH;
		send_refetch(l);
	}
}

/*
 * Results of BEGIN, fetch and lock from statement k of the pipeline, or
 * (ahead) of BEGIN and lock, the rows coming from the read-ahead.
 */
static void on_fetch_at(dis__listener *l, int k, bool ahead)
{
	int nst = ahead ? 2 : 3;
	PGresult *lock;

	if (dis__pq_check_range(l->pq, k, k + nst, NULL) >= 0) {
		infra_fail(l, "starting a batch");
		return;
	}
	lock = dis__pq_result(l->pq, k + nst - 1);
	if (PQntuples(lock) != 1) {
		/* Another process works the listener (or its row is gone). */
		l->skipped++;
		l->fail = DIS__F_SKIP;
		send_rollback(l);
		return;
	}
	if (adopt_row(l, lock, true)) {
		send_refetch(l);
		return;
	}
	if (l->halted) {
		l->fail = DIS__F_HALTED;
		send_rollback(l);
		return;
	}
	if (ahead)
		dis__listener_ahead_in(l);
	else
		fetched(l, dis__pq_take(l->pq, k + 1));
}

static void on_fetch(dis__listener *l)
{
	on_fetch_at(l, 0, l->rows_ahead);
}

static void on_refetch(dis__listener *l)
{
	if (dis__pq_check(l->pq, NULL) >= 0) {
		infra_fail(l, "fetching events");
		return;
	}
	fetched(l, dis__pq_take(l->pq, 0));
}

/* Whether the next batch can start behind this one's COMMIT. */
static bool chainable(const dis__listener *l)
{
	const dis_runtime *rt = l->rt;
	bool full = (size_t)l->nrows == l->limit;

	return (l->pending || full) && !l->cut && !l->halt_after &&
	       !l->halted && !l->stopping && !rt->stopping && !l->fail_id &&
	       !l->prefix && !l->single && !l->poison &&
	       l->fail == DIS__F_NONE && !l->want_blocker;
}

static void commit(dis__listener *l)
{
	char ck_tx[24], ck_id[24], max_id[24], att[16], fid[24];
	char barrier[24];
	const char *upd[11] = {
		l->id,        ck_tx,          ck_id,        max_id,
		NULL,         l->last_error,  att,          fid,
		l->rt->owner, l->types_array, l->query_text};
	const char *probe[2] = {ck_tx, ck_id};
	const char *blk[1] = {barrier};
	dis__stmt s[7];
	dis__sql next;
	int n = 0, rc;
	uint64_t now = dis__now_ms();
	/*
	 * Chained, the next batch locks the row right behind this COMMIT,
	 * before anyone waiting for it (a reset) can: every probe interval
	 * the chain breaks for a round trip, which lets them in.
	 */
	bool chain = chainable(l) && now - l->probe_ms < CHAIN_PROBE_MS;

	/* The state once this batch commits (written with it). */
	if (!l->halt_after && !l->halted &&
	    (l->state == DIS_LISTENER_STARTING ||
	     (l->state == DIS_LISTENER_RETRYING && !l->fail_id))) {
		set_state(l, DIS_LISTENER_RUNNING);
		if (l->last_code == DIS_ECONN || l->last_code == DIS_EPG)
			clear_error(l);
	}
	l->ck_new = l->cut || l->halt_after ? l->last : l->next;
	if (dis_position_cmp(l->ck_new, l->ck) < 0)
		l->ck_new = l->ck;
	/*
	 * Moving the checkpoint up to the barrier past nothing saves no
	 * rescan: an idle listener writes its row only for its heartbeat.
	 * (Events that came since the last probe show up in this one, past
	 * the kept checkpoint, and the recheck then writes.)
	 */
	l->wrote_row =
		l->row_dirty || l->halt_after || l->done > 0 ||
		now - l->row_written_ms >= ROW_HEARTBEAT_MS ||
		(dis_position_cmp(l->ck_new, l->ck) &&
		 (!l->head_known || dis_position_cmp(l->head, l->ck) > 0));
	if (!l->wrote_row)
		l->ck_new = l->ck;
	snprintf(ck_tx, sizeof(ck_tx), "%" PRIu64, l->ck_new.tx);
	snprintf(ck_id, sizeof(ck_id), "%" PRId64, l->ck_new.id);
	snprintf(max_id, sizeof(max_id), "%" PRId64, l->max_id);
	snprintf(barrier, sizeof(barrier), "%" PRIu64, l->barrier);
	if (l->halt_after) {
		snprintf(att, sizeof(att), "%" PRIu32, l->fail_attempts);
		snprintf(fid, sizeof(fid), "%" PRId64, l->fail_id);
	} else {
		snprintf(att, sizeof(att), "%" PRIu32,
			 l->fail_id ? l->fail_attempts : 0);
		snprintf(fid, sizeof(fid), "%" PRId64, l->fail_id);
	}
	upd[4] = l->halt_after ? "stopped" : db_state(l);
	if (l->wrote_row)
		s[n++] = (dis__stmt){
			.name = S_COMMIT, .nparams = 11, .values = upd};
	/*
	 * The probe (head, lag) is two index descents, a tenth of a no-op
	 * batch: catching up, the next batch is known to wait anyway.
	 */
	l->idx_probe = -1;
	if (!chain) {
		l->idx_probe = n;
		l->probe_ms = now;
		s[n++] = (dis__stmt){
			.name = S_PROBE, .nparams = 2, .values = probe};
	}
	l->idx_blocker = -1;
	if (l->want_blocker) {
		l->idx_blocker = n;
		s[n++] = (dis__stmt){
			.sql = SQL_BLOCKER, .nparams = 1, .values = blk};
	}
	l->idx_commit = n;
	s[n++] = (dis__stmt){.sql = "COMMIT"};
	/*
	 * More is known to wait (a notification came during the batch, or
	 * it was full): the next batch rides in the same pipeline, right
	 * behind the COMMIT, which saves a round trip per batch.
	 */
	l->chain_k = 0;
	if (chain) {
		const char *id[1] = {l->id};

		dis__sql_init(&next);
		/* With the rows read ahead already (or on their way), the
		 * next batch only begins and locks. */
		l->rows_ahead =
			dis__ahead_covers(l, l->ck_new, l->cfg.fetch_size);
		if (l->rows_ahead || !dis__read_sql(l->query, l->ck_new,
						    l->cfg.fetch_size, &next)) {
			l->chain_k = n;
			l->chain_from = l->ck_new;
			l->chain_limit = l->cfg.fetch_size;
			s[n++] = (dis__stmt){.sql = SQL_BEGIN};
			if (!l->rows_ahead)
				s[n++] = dis__listener_read_stmt(l, &next,
								 S_FETCH);
			s[n++] = (dis__stmt){
				.name = S_LOCK, .nparams = 1, .values = id};
			l->pending = false;
		}
		rc = dis__pq_send(l->pq, s, n);
		dis__sql_free(&next);
	} else {
		rc = dis__pq_send(l->pq, s, n);
	}
	if (rc) {
		conn_down(l, dis__pq_errmsg(l->pq));
		return;
	}
	l->st = DIS__L_COMMIT;
}

static void record_duration(dis__listener *l, double secs)
{
	size_t i = 0;

	l->batch_sum += secs;
	if (secs > l->batch_max)
		l->batch_max = secs;
	while (i + 1 < DIS_LISTENER_HIST_BUCKETS &&
	       secs > dis_listener_hist_bound(i))
		i++;
	l->hist[i]++;
}

/* Lag and "waiting on a transaction" from the probe after a commit. */
static void after_probe(dis__listener *l, const PGresult *p,
			const PGresult *blocker, bool more)
{
	uint64_t now = dis__now_ms();
	bool pend = false;

	if (p && PQntuples(p) == 1) {
		if (!PQgetisnull(p, 0, 0)) {
			l->head.tx = strtoull(PQgetvalue(p, 0, 0), NULL, 10);
			l->head.id = strtoll(PQgetvalue(p, 0, 1), NULL, 10);
		}
		l->head_known = true;
		pend = !PQgetisnull(p, 0, 2);
		if (pend) {
			int64_t first = strtoll(PQgetvalue(p, 0, 3), NULL, 10);

			l->behind = l->head.id - first + 1;
			if (l->behind < 1)
				l->behind = 1;
			l->behind_secs = strtod(PQgetvalue(p, 0, 4), NULL);
			if (l->behind_secs < 0)
				l->behind_secs = 0;
		} else {
			l->behind = 0;
			l->behind_secs = 0;
		}
	}
	if (blocker && PQntuples(blocker) == 1) {
		l->blocker_pid = atoi(PQgetvalue(blocker, 0, 0));
		l->blocker_secs = strtod(PQgetvalue(blocker, 0, 1), NULL);
	}
	if (more) {
		l->pending = true;
		l->held_since_ms = 0;
		l->recheck_ms = 0;
	} else if (pend) {
		/*
		 * Committed events lie past the new checkpoint: either they
		 * committed after the fetch (a notification is coming), or a
		 * transaction that began before them is still open and holds
		 * the barrier (it may end without a notification). Look again
		 * soon, then less and less often.
		 */
		l->recheck_ms = l->recheck_ms ? l->recheck_ms * 2 : 2;
		if (l->recheck_ms > RECHECK_MAX_MS)
			l->recheck_ms = RECHECK_MAX_MS;
		l->recheck_at_ms = now + l->recheck_ms;
		if (!l->held_since_ms || l->barrier != l->held_barrier) {
			l->held_since_ms = now;
			l->held_barrier = l->barrier;
		}
	} else {
		l->held_since_ms = 0;
		l->recheck_ms = 0;
	}
	if (!l->held_since_ms) {
		l->want_blocker = false;
		l->warned = false;
		l->blocker_pid = 0;
		l->blocker_secs = 0;
		if (l->state == DIS_LISTENER_WAITING)
			set_state(l, DIS_LISTENER_RUNNING);
		return;
	}
	l->want_blocker = now - l->held_since_ms >= BLOCKER_AFTER_MS;
	if (now - l->held_since_ms >= WAITING_AFTER_MS && !l->halted)
		set_state(l, DIS_LISTENER_WAITING);
	if (!l->warned && now - l->held_since_ms >= l->cfg.wait_warn_ms) {
		l->warned = true;
		if (l->blocker_pid || (blocker && PQntuples(blocker) == 1))
			dis__l_log(l, DIS_LOG_WARN,
				   "waiting on transaction %" PRIu64
				   " of backend %d (%s, %s), open for %.1f s",
				   l->barrier, l->blocker_pid,
				   blocker && PQntuples(blocker)
					   ? PQgetvalue(blocker, 0, 2)
					   : "?",
				   blocker && PQntuples(blocker)
					   ? PQgetvalue(blocker, 0, 3)
					   : "?",
				   l->blocker_secs);
		else
			dis__l_log(l, DIS_LOG_WARN,
				   "waiting on transaction %" PRIu64
				   " (backend not visible), %.1f s",
				   l->barrier,
				   (double)(now - l->held_since_ms) / 1000);
	}
}

static void on_commit(dis__listener *l)
{
	dis_runtime *rt = l->rt;
	int k = l->chain_k;
	int bad = dis__pq_check_range(l->pq, 0, l->idx_commit + 1, NULL);
	bool full, more;
	PGresult *probe, *blocker;
	uint64_t now;

	l->chain_k = 0;
	if (bad >= 0) {
		/* (A chained batch was aborted with it.) */
		if (bad == l->idx_commit && l->handled > 0) {
			/* COMMIT itself failed: deferred checks or a
			 * serialization failure of the handlers' writes. */
			char msg[DIS_ERRMSG_LEN];

			snprintf(msg, sizeof(msg), "commit failed: %s",
				 dis__pq_errmsg(l->pq));
			l->halt_after = false;
			if (l->handled == 1 || l->single) {
				event_failed(l, 0, l->last, DIS_EPG, msg,
					     false);
				/* Its retry must run alone again. */
				l->prefix = 0;
				l->single = 1;
			} else {
				l->errors++;
				set_error(l, DIS_EPG, "%s", msg);
				l->single = (uint32_t)l->handled;
				l->fail = DIS__F_INFRA;
				dis__l_log(l, DIS_LOG_WARN,
					   "%s; retrying its %d events one "
					   "by one",
					   msg, l->handled);
			}
			send_rollback(l);
			return;
		}
		l->halt_after = false;
		infra_fail(l, "committing the batch");
		return;
	}
	now = dis__now_ms();
	full = !l->cut && !l->halt_after && (size_t)l->nrows == l->limit;
	if (l->fail_ok && !l->poison)
		clear_failure(l);
	if (l->limit == l->prefix && l->prefix && !l->poison)
		l->prefix = 0;
	else if (l->single && !l->poison)
		l->single--;
	if (dis_position_cmp(l->ck_new, l->ck)) {
		char a[48];

		dis__l_log(l, DIS_LOG_DEBUG, "%d events, checkpoint %s",
			   l->done,
			   dis_position_format(l->ck_new, a, sizeof(a)));
	}
	l->ck = l->ck_new;
	failures_prune(l, false);
	if (l->max_id > l->last_id)
		l->last_id = l->max_id;
	l->committed_once = true;
	if (l->wrote_row) {
		l->row_dirty = false;
		l->row_written_ms = now;
	}
	l->batches++;
	l->events_handled += (uint64_t)l->handled;
	l->dead_letters += (uint64_t)l->dead;
	record_duration(l, dis__now_s() - l->t0);
	l->backoff_ms = 0;
	l->due_ms = 0;
	probe = dis__pq_result(l->pq, l->idx_probe);
	blocker = dis__pq_result(l->pq, l->idx_blocker);
	/* A chained batch is already the "more". */
	more = !k && (full || l->prefix || l->single || l->poison);
	after_probe(l, probe, blocker, more);
	drop_rows(l);
	l->st = DIS__L_IDLE;
	l->next_poll_ms = now + l->cfg.poll_interval_ms;
	if (k) {
		/* The chained batch: as if start_batch() had sent it. */
		l->t0 = dis__now_s();
		l->from = l->chain_from;
		l->limit = l->chain_limit;
		l->fail = DIS__F_NONE;
		l->recheck_at_ms = 0;
		l->st = DIS__L_FETCH;
		if (l->stopping) {
			dis__listener_schedule(l); /* closes: rolls back */
			return;
		}
		on_fetch_at(l, k, l->rows_ahead);
		return;
	}
	/* Caught up: the read-ahead connection has no use until the next
	 * full batch. */
	if (!full)
		dis__ahead_idle(l);
	if (l->halt_after) {
		l->halt_after = false;
		l->halted = true;
		l->pending = false;
		set_state(l, DIS_LISTENER_STOPPED);
		l->row_dirty = false;
		clear_failure(l);
		dis__rt_listener_halted(rt, l);
		if (rt->free_requested)
			return;
	}
	dis__listener_schedule(l);
}

static void on_rollback(dis__listener *l)
{
	dis_runtime *rt = l->rt;
	uint64_t now = dis__now_ms();
	uint64_t d;

	drop_rows(l);
	l->st = DIS__L_IDLE;
	l->next_poll_ms = now + l->cfg.poll_interval_ms;
	switch (l->fail) {
	case DIS__F_SKIP:
		/* The other process handles the wake-ups meanwhile; look
		 * again in a while, in case it goes away. */
		d = l->cfg.poll_interval_ms < 1000 ? l->cfg.poll_interval_ms
						   : 1000;
		l->due_ms = now + dis__jitter(rt, d, 0.5);
		break;
	case DIS__F_INFRA:
		l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2
					      : rt->opts.reconnect_min_ms;
		if (l->backoff_ms > rt->opts.reconnect_max_ms)
			l->backoff_ms = rt->opts.reconnect_max_ms;
		l->due_ms = now + dis__jitter(rt, l->backoff_ms, 0.5);
		l->pending = true;
		break;
	case DIS__F_EVENT: l->pending = true; break;
	default: break;
	}
	l->fail = DIS__F_NONE;
	dis__listener_schedule(l);
}

static void on_pq(dis__pq *pq, void *arg, dis__pq_event ev, int status)
{
	dis__listener *l = arg;
	dis_runtime *rt = l->rt;
	PGnotify *n;

	dis__rt_enter(rt);
	switch (ev) {
	case DIS__PQ_CONNECTED:
		if (status)
			conn_down(l, dis__pq_errmsg(pq));
		else
			on_connected(l);
		break;
	case DIS__PQ_LOST: conn_down(l, dis__pq_errmsg(pq)); break;
	case DIS__PQ_NOTIFY:
		while ((n = dis__pq_notify(pq)) != NULL)
			PQfreemem(n);
		break;
	case DIS__PQ_RESULTS:
		switch (l->st) {
		case DIS__L_SETUP: on_setup(l); break;
		case DIS__L_FETCH: on_fetch(l); break;
		case DIS__L_REFETCH: on_refetch(l); break;
		case DIS__L_COMMIT: on_commit(l); break;
		case DIS__L_ROLLBACK: on_rollback(l); break;
		default: break;
		}
		break;
	}
	dis__rt_leave(rt);
}

/* ---- the batch handle ---- */

/* Blocking use of the connection: queued writes must be in first. */
static void sync_for_caller(dis_batch *b)
{
	dis__listener *l = b->l;

	if (l->queued && l->store && l->st == DIS__L_HANDLE)
		queue_sync(l, dis_store_conn(l->store));
}

dis_store *dis_batch_store(dis_batch *b)
{
	if (!b)
		return NULL;
	sync_for_caller(b);
	return b->l->store;
}

struct pg_conn *dis_batch_conn(dis_batch *b)
{
	if (!b || !b->l->store)
		return NULL;
	sync_for_caller(b);
	return dis_store_conn(b->l->store);
}

const char *dis_batch_listener_id(const dis_batch *b)
{
	return b ? b->l->id : NULL;
}

uint32_t dis_batch_attempt(const dis_batch *b)
{
	return b ? b->attempt : 0;
}

int dis_batch_fail(dis_batch *b, int code, const char *fmt, ...)
{
	va_list ap;

	if (code >= 0)
		code = DIS_EINVAL;
	if (!b)
		return code;
	b->failed = true;
	b->code = code;
	b->msg[0] = '\0';
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(b->msg, sizeof(b->msg), fmt, ap);
		va_end(ap);
	}
	return code;
}
