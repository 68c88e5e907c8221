/*
 * A non-blocking libpq connection on a libevent base (see pq-internal.h).
 *
 * The state machine: CLOSED -> CONNECTING (PQconnectPoll steps, one socket
 * event per step, re-created because the socket may change) -> IDLE (the
 * socket is watched for reads: notifications, or the server going away)
 * <-> BUSY (a pipeline is out; a write event is added while PQflush has
 * more to send; results are collected as they arrive until the sync).
 */
#include "pq-internal.h"

#include <event2/event.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dis__pq {
	struct event_base *base;
	dis__pq_fn fn;
	void *arg;
	PGconn *conn;
	dis__pq_state state;
	bool lent;
	struct event *ev_io;      /* connect step, then persistent read */
	struct event *ev_write;   /* while PQflush has more to send */
	struct event *ev_timeout; /* bounds the connect */
	unsigned gen;             /* bumped by every close */
	int in_cb;                /* callbacks on the stack */
	bool dead;                /* freed from inside a callback */
	uint32_t timeout_ms;

	/* The pipeline in flight. */
	PGresult **res;
	int nres;
	int cap;
	int cur;
	bool got_cur;
	PGnotify *notify; /* one taken to see whether any is waiting */

	char errmsg[DIS_ERRMSG_LEN];
	char sqlstate[8];
	dis_log_fn log;
	void *log_arg;
	int log_level;
	char tag[64];
};

static void pq_log(dis__pq *pq, dis_log_level level, const char *fmt, ...)
	DIS_PRINTF(3, 4);

static void pq_log(dis__pq *pq, dis_log_level level, const char *fmt, ...)
{
	char msg[DIS_ERRMSG_LEN + 128];
	int n;
	va_list ap;

	if (!pq->log || (int)level > pq->log_level)
		return;
	n = snprintf(msg, sizeof(msg), "%s: ", pq->tag);
	if (n < 0 || (size_t)n >= sizeof(msg))
		n = 0;
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	pq->log(pq->log_arg, level, msg);
}

/* Copies libpq's text without its trailing newlines. */
static void set_err(dis__pq *pq, const char *prefix, const char *text)
{
	size_t n;

	snprintf(pq->errmsg, sizeof(pq->errmsg), "%s%s", prefix,
		 text && *text ? text : "connection lost");
	n = strlen(pq->errmsg);
	while (n && (pq->errmsg[n - 1] == '\n' || pq->errmsg[n - 1] == ' '))
		pq->errmsg[--n] = '\0';
}

/* libpq's text about a failed connection attempt, its password hidden
 * (it quotes a malformed conninfo whole). */
static void set_conn_err(dis__pq *pq, const char *conninfo)
{
	char msg[sizeof(pq->errmsg)];

	dis__conn_errmsg(conninfo, pq->conn, PQerrorMessage(pq->conn), msg,
			 sizeof(msg));
	set_err(pq, "", msg);
}

static void on_notice(void *arg, const PGresult *res)
{
	dis__pq *pq = arg;
	const char *sev =
		PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *msg = PQresultErrorMessage(res);
	size_t n = strlen(msg);

	while (n && msg[n - 1] == '\n')
		n--;
	pq_log(pq,
	       sev && !strcmp(sev, "WARNING") ? DIS_LOG_WARN : DIS_LOG_DEBUG,
	       "server: %.*s", (int)n, msg);
}

static void clear_results(dis__pq *pq)
{
	for (int i = 0; i < pq->nres; i++)
		PQclear(pq->res[i]);
	pq->nres = 0;
}

static void free_events(dis__pq *pq)
{
	if (pq->ev_io)
		event_free(pq->ev_io);
	if (pq->ev_write)
		event_free(pq->ev_write);
	pq->ev_io = NULL;
	pq->ev_write = NULL;
	if (pq->ev_timeout)
		event_del(pq->ev_timeout);
}

void dis__pq_close(dis__pq *pq)
{
	if (!pq)
		return;
	free_events(pq);
	clear_results(pq);
	if (pq->notify) {
		PQfreemem(pq->notify);
		pq->notify = NULL;
	}
	if (pq->conn)
		PQfinish(pq->conn);
	pq->conn = NULL;
	pq->state = DIS__PQ_CLOSED;
	pq->lent = false;
	pq->gen++;
}

dis__pq *dis__pq_new(struct event_base *base, dis__pq_fn fn, void *arg)
{
	dis__pq *pq = calloc(1, sizeof(*pq));

	if (!pq)
		return NULL;
	pq->base = base;
	pq->fn = fn;
	pq->arg = arg;
	snprintf(pq->tag, sizeof(pq->tag), "connection");
	return pq;
}

static void destroy(dis__pq *pq)
{
	dis__pq_close(pq);
	if (pq->ev_timeout)
		event_free(pq->ev_timeout);
	free(pq->res);
	free(pq);
}

void dis__pq_free(dis__pq *pq)
{
	if (!pq)
		return;
	if (pq->in_cb) {
		/* The callback's caller frees it on the way out. */
		dis__pq_close(pq);
		pq->dead = true;
		return;
	}
	destroy(pq);
}

/*
 * Calls the owner. Returns false when the owner closed or freed the
 * connection meanwhile: the caller must then leave it alone.
 */
static bool emit(dis__pq *pq, dis__pq_event ev, int status)
{
	unsigned gen = pq->gen;

	pq->in_cb++;
	pq->fn(pq, pq->arg, ev, status);
	pq->in_cb--;
	if (pq->dead) {
		if (!pq->in_cb)
			destroy(pq);
		return false;
	}
	return gen == pq->gen;
}

void dis__pq_set_log(dis__pq *pq, dis_log_fn fn, void *arg, int level,
		     const char *tag)
{
	pq->log = fn;
	pq->log_arg = arg;
	pq->log_level = level;
	snprintf(pq->tag, sizeof(pq->tag), "%s", tag ? tag : "connection");
}

/* Ends in failure: closes and reports `ev` with `status`. */
static void fail(dis__pq *pq, dis__pq_event ev, int status)
{
	dis__pq_close(pq);
	emit(pq, ev, status);
}

/* ---- connecting ---- */

static void on_connect_io(evutil_socket_t fd, short what, void *arg);
static void on_read(evutil_socket_t fd, short what, void *arg);
static void on_write(evutil_socket_t fd, short what, void *arg);

/* Waits for the socket (read again: it may have changed) to be ready. */
static int watch_step(dis__pq *pq, short what)
{
	int fd = PQsocket(pq->conn);

	if (fd < 0) {
		set_conn_err(pq, NULL);
		return DIS_ECONN;
	}
	if (pq->ev_io)
		event_free(pq->ev_io);
	pq->ev_io = event_new(pq->base, fd, what, on_connect_io, pq);
	if (!pq->ev_io || event_add(pq->ev_io, NULL)) {
		snprintf(pq->errmsg, sizeof(pq->errmsg),
			 "cannot watch the connection's socket");
		return DIS_ENOMEM;
	}
	return 0;
}

static void connected(dis__pq *pq)
{
	int fd = PQsocket(pq->conn);

	event_del(pq->ev_timeout);
	if (pq->ev_io)
		event_free(pq->ev_io);
	pq->ev_io = NULL;
	if (PQsetnonblocking(pq->conn, 1)) {
		set_err(pq, "", PQerrorMessage(pq->conn));
		fail(pq, DIS__PQ_CONNECTED, DIS_ECONN);
		return;
	}
	pq->ev_io = event_new(pq->base, fd, EV_READ | EV_PERSIST, on_read, pq);
	pq->ev_write = event_new(pq->base, fd, EV_WRITE, on_write, pq);
	if (!pq->ev_io || !pq->ev_write || event_add(pq->ev_io, NULL)) {
		snprintf(pq->errmsg, sizeof(pq->errmsg),
			 "cannot watch the connection's socket");
		fail(pq, DIS__PQ_CONNECTED, DIS_ENOMEM);
		return;
	}
	pq->state = DIS__PQ_IDLE;
	emit(pq, DIS__PQ_CONNECTED, 0);
}

static void connect_step(dis__pq *pq)
{
	int rc = 0;

	switch (PQconnectPoll(pq->conn)) {
	case PGRES_POLLING_READING: rc = watch_step(pq, EV_READ); break;
	case PGRES_POLLING_WRITING: rc = watch_step(pq, EV_WRITE); break;
	case PGRES_POLLING_OK: connected(pq); return;
	default:
		set_conn_err(pq, NULL);
		rc = DIS_ECONN;
		break;
	}
	if (rc)
		fail(pq, DIS__PQ_CONNECTED, rc);
}

static void on_connect_io(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	connect_step(arg);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	dis__pq *pq = arg;

	(void)fd;
	(void)what;
	if (pq->state != DIS__PQ_CONNECTING)
		return;
	snprintf(pq->errmsg, sizeof(pq->errmsg),
		 "connection timed out after %u ms", pq->timeout_ms);
	fail(pq, DIS__PQ_CONNECTED, DIS_ETIMEDOUT);
}

int dis__pq_connect(dis__pq *pq, const char *conninfo, const char *appname,
		    uint32_t timeout_ms)
{
	/*
	 * Entries before "dbname" are defaults the conninfo may override;
	 * fallback_application_name never overrides the user's choice.
	 */
	const char *keys[] = {"keepalives",
			      "keepalives_idle",
			      "keepalives_interval",
			      "keepalives_count",
			      "dbname",
			      "fallback_application_name",
			      NULL};
	const char *vals[] = {"1",
			      "30",
			      "10",
			      "3",
			      conninfo ? conninfo : "",
			      appname ? appname : "disintegrate",
			      NULL};
	struct timeval tv;
	int rc;

	if (pq->state != DIS__PQ_CLOSED)
		return DIS_ESTATE;
	pq->errmsg[0] = '\0';
	pq->conn = PQconnectStartParams(keys, vals, 1);
	if (!pq->conn) {
		snprintf(pq->errmsg, sizeof(pq->errmsg), "out of memory");
		return DIS_ENOMEM;
	}
	if (PQstatus(pq->conn) == CONNECTION_BAD) {
		set_conn_err(pq, conninfo);
		dis__pq_close(pq);
		return DIS_ECONN;
	}
	PQsetNoticeReceiver(pq->conn, on_notice, pq);
	if (!pq->ev_timeout)
		pq->ev_timeout = evtimer_new(pq->base, on_timeout, pq);
	pq->timeout_ms = timeout_ms ? timeout_ms : 10000;
	tv.tv_sec = pq->timeout_ms / 1000;
	tv.tv_usec = (pq->timeout_ms % 1000) * 1000;
	if (!pq->ev_timeout || evtimer_add(pq->ev_timeout, &tv)) {
		snprintf(pq->errmsg, sizeof(pq->errmsg), "out of memory");
		dis__pq_close(pq);
		return DIS_ENOMEM;
	}
	pq->state = DIS__PQ_CONNECTING;
	/* libpq: act as if PQconnectPoll had asked to wait for writing. */
	rc = watch_step(pq, EV_WRITE);
	if (rc)
		dis__pq_close(pq);
	return rc;
}

/* ---- pipelines ---- */

static int flush(dis__pq *pq)
{
	int r = PQflush(pq->conn);

	if (r < 0) {
		set_err(pq, "", PQerrorMessage(pq->conn));
		return DIS_ECONN;
	}
	if (r > 0 && event_add(pq->ev_write, NULL)) {
		snprintf(pq->errmsg, sizeof(pq->errmsg),
			 "cannot watch the connection's socket");
		return DIS_ENOMEM;
	}
	return 0;
}

int dis__pq_send(dis__pq *pq, const dis__stmt *stmts, int n)
{
	PGconn *c = pq->conn;
	int rc;

	if (pq->state != DIS__PQ_IDLE || pq->lent || n <= 0)
		return DIS_ESTATE;
	clear_results(pq);
	pq->sqlstate[0] = '\0';
	if (n > pq->cap) {
		PGresult **r = realloc(pq->res, (size_t)n * sizeof(*r));

		if (!r) {
			snprintf(pq->errmsg, sizeof(pq->errmsg),
				 "out of memory");
			return DIS_ENOMEM;
		}
		pq->res = r;
		pq->cap = n;
	}
	memset(pq->res, 0, (size_t)n * sizeof(*pq->res));
	pq->nres = n;
	pq->cur = 0;
	pq->got_cur = false;
	if (PQpipelineStatus(c) == PQ_PIPELINE_OFF && !PQenterPipelineMode(c))
		goto broken;
	for (int i = 0; i < n; i++) {
		const dis__stmt *s = &stmts[i];
		int ok;

		if (s->prepare)
			ok = PQsendPrepare(c, s->name, s->sql, s->nparams,
					   NULL);
		else if (s->name)
			ok = PQsendQueryPrepared(c, s->name, s->nparams,
						 s->values, s->lengths,
						 s->formats, s->binary);
		else
			ok = PQsendQueryParams(c, s->sql, s->nparams, NULL,
					       s->values, s->lengths,
					       s->formats, s->binary);
		if (!ok)
			goto broken;
	}
	if (!PQpipelineSync(c))
		goto broken;
	pq->state = DIS__PQ_BUSY;
	rc = flush(pq);
	if (rc) {
		dis__pq_close(pq);
		return rc;
	}
	return 0;

broken:
	set_err(pq, "sending: ", PQerrorMessage(c));
	dis__pq_close(pq);
	return DIS_ECONN;
}

static bool is_error(const PGresult *r)
{
	ExecStatusType st = PQresultStatus(r);

	return st == PGRES_FATAL_ERROR || st == PGRES_PIPELINE_ABORTED ||
	       st == PGRES_BAD_RESPONSE;
}

/*
 * Collects the results that are complete. Returns true when the sync
 * arrived (the pipeline is over).
 */
static bool collect(dis__pq *pq)
{
	int nulls = 0;

	while (!PQisBusy(pq->conn)) {
		PGresult *r = PQgetResult(pq->conn);

		if (!r) {
			/* End of one statement's results. */
			if (pq->got_cur) {
				pq->cur++;
				pq->got_cur = false;
				nulls = 0;
			} else if (++nulls > 1) {
				break;
			}
			continue;
		}
		nulls = 0;
		if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
			PQclear(r);
			return true;
		}
		if (pq->cur < pq->nres) {
			PGresult **slot = &pq->res[pq->cur];

			/* Keep the first result, or the first error. */
			if (!*slot) {
				*slot = r;
			} else if (is_error(r) && !is_error(*slot)) {
				PQclear(*slot);
				*slot = r;
			} else {
				PQclear(r);
			}
			pq->got_cur = true;
		} else {
			PQclear(r);
		}
	}
	return false;
}

/* Reports a lost connection. */
static void lost(dis__pq *pq)
{
	set_err(pq, "", PQerrorMessage(pq->conn));
	fail(pq, DIS__PQ_LOST, DIS_ECONN);
}

/* Delivers what the input holds; at most one callback per generation. */
static void process(dis__pq *pq)
{
	if (pq->state == DIS__PQ_BUSY) {
		bool done = collect(pq);

		if (PQstatus(pq->conn) == CONNECTION_BAD) {
			lost(pq);
			return;
		}
		if (!done)
			goto notifications;
		if (PQpipelineStatus(pq->conn) != PQ_PIPELINE_OFF &&
		    !PQexitPipelineMode(pq->conn)) {
			set_err(pq, "leaving pipeline mode: ",
				PQerrorMessage(pq->conn));
			fail(pq, DIS__PQ_LOST, DIS_ECONN);
			return;
		}
		pq->state = DIS__PQ_IDLE;
		if (!emit(pq, DIS__PQ_RESULTS, 0) || pq->lent)
			return;
	}
	if (pq->state == DIS__PQ_IDLE && PQstatus(pq->conn) == CONNECTION_BAD) {
		lost(pq);
		return;
	}
notifications:
	if (pq->state == DIS__PQ_IDLE || pq->state == DIS__PQ_BUSY) {
		if (!pq->notify)
			pq->notify = PQnotifies(pq->conn);
		if (pq->notify)
			emit(pq, DIS__PQ_NOTIFY, 0);
	}
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
	dis__pq *pq = arg;

	(void)fd;
	(void)what;
	if (pq->lent)
		return;
	if (!PQconsumeInput(pq->conn)) {
		lost(pq);
		return;
	}
	process(pq);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
	dis__pq *pq = arg;
	int rc;

	(void)fd;
	(void)what;
	if (pq->lent || pq->state != DIS__PQ_BUSY)
		return;
	rc = flush(pq);
	if (rc) {
		fail(pq, DIS__PQ_LOST, rc);
		return;
	}
	/* Sending may have read input: results can be waiting already. */
	process(pq);
}

int dis__pq_nresults(const dis__pq *pq)
{
	return pq->nres;
}

PGresult *dis__pq_result(const dis__pq *pq, int i)
{
	return i >= 0 && i < pq->nres ? pq->res[i] : NULL;
}

PGresult *dis__pq_take(dis__pq *pq, int i)
{
	PGresult *r = dis__pq_result(pq, i);

	if (r)
		pq->res[i] = NULL;
	return r;
}

int dis__pq_check(dis__pq *pq, const ExecStatusType *want)
{
	return dis__pq_check_range(pq, 0, pq->nres, want);
}

int dis__pq_check_range(dis__pq *pq, int from, int to,
			const ExecStatusType *want)
{
	if (to > pq->nres)
		to = pq->nres;
	for (int i = from; i < to; i++) {
		PGresult *r = pq->res[i];
		ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
		bool ok = want ? st == want[i - from]
			       : st == PGRES_COMMAND_OK ||
					  st == PGRES_TUPLES_OK;
		const char *state;

		if (ok)
			continue;
		state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
		snprintf(pq->sqlstate, sizeof(pq->sqlstate), "%s",
			 state ? state : "");
		if (!r)
			snprintf(pq->errmsg, sizeof(pq->errmsg),
				 "statement %d: no result", i + 1);
		else if (st == PGRES_PIPELINE_ABORTED)
			snprintf(pq->errmsg, sizeof(pq->errmsg),
				 "statement %d: aborted", i + 1);
		else if (PQresultErrorMessage(r)[0])
			set_err(pq, "", PQresultErrorMessage(r));
		else
			snprintf(pq->errmsg, sizeof(pq->errmsg),
				 "statement %d: unexpected result %s", i + 1,
				 PQresStatus(st));
		return i;
	}
	return -1;
}

PGnotify *dis__pq_notify(dis__pq *pq)
{
	PGnotify *n = pq->notify;

	if (n) {
		pq->notify = NULL;
		return n;
	}
	return pq->conn ? PQnotifies(pq->conn) : NULL;
}

dis__pq_state dis__pq_get_state(const dis__pq *pq)
{
	return pq->state;
}

PGconn *dis__pq_conn(dis__pq *pq)
{
	return pq->conn;
}

const char *dis__pq_errmsg(const dis__pq *pq)
{
	return pq->errmsg[0] ? pq->errmsg : "no error";
}

const char *dis__pq_sqlstate(const dis__pq *pq)
{
	return pq->sqlstate;
}

int dis__pq_backend_pid(const dis__pq *pq)
{
	return pq->conn && pq->state >= DIS__PQ_IDLE ? PQbackendPID(pq->conn)
						     : 0;
}

PGconn *dis__pq_lend(dis__pq *pq)
{
	if (pq->state != DIS__PQ_IDLE || pq->lent)
		return NULL;
	event_del(pq->ev_io);
	PQsetnonblocking(pq->conn, 0);
	pq->lent = true;
	return pq->conn;
}

int dis__pq_take_back(dis__pq *pq)
{
	PGresult *r;

	if (!pq->lent)
		return pq->state == DIS__PQ_IDLE ? 0 : DIS_ECONN;
	pq->lent = false;
	/*
	 * Results the borrower left unread (blocking mode: waits for them).
	 * A connection left copying or pipelining is not ours to fix.
	 */
	while (PQstatus(pq->conn) == CONNECTION_OK &&
	       PQpipelineStatus(pq->conn) == PQ_PIPELINE_OFF &&
	       (r = PQgetResult(pq->conn)) != NULL) {
		ExecStatusType st = PQresultStatus(r);

		PQclear(r);
		if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT ||
		    st == PGRES_COPY_BOTH) {
			set_err(pq, "", "connection left in COPY mode");
			dis__pq_close(pq);
			return DIS_ECONN;
		}
	}
	if (PQstatus(pq->conn) != CONNECTION_OK ||
	    PQpipelineStatus(pq->conn) != PQ_PIPELINE_OFF) {
		set_err(pq, "",
			PQstatus(pq->conn) == CONNECTION_OK
				? "connection left in pipeline mode"
				: PQerrorMessage(pq->conn));
		dis__pq_close(pq);
		return DIS_ECONN;
	}
	if (PQsetnonblocking(pq->conn, 1) || event_add(pq->ev_io, NULL)) {
		set_err(pq, "", PQerrorMessage(pq->conn));
		dis__pq_close(pq);
		return DIS_ECONN;
	}
	return 0;
}
