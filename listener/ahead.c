/*
 * Read-ahead while catching up: the next batch's rows, read on a second
 * connection while the handlers of the current batch run.
 *
 * A batch that came back full is followed by another; its start is known
 * as soon as the rows are in (the position of the last one). So while the
 * handlers run and the batch commits on the listener's connection, a
 * second connection reads on from there, and the next batches take their
 * rows from that read instead of fetching them: the server reads while the
 * client works, where one connection would leave one of them idle. A read
 * asks for several batches' worth (AHEAD_ROWS), which the batches take
 * fetch_size at a time, still one transaction each; a read that comes back
 * full is followed at once by the next, so at most DIS__AHEAD_MAX reads are
 * held or on their way.
 *
 * The read is the batch's own gap-free statement (events and barrier from
 * one snapshot), only run earlier, in a transaction of its own and with a
 * larger limit: its rows in order are what consecutive batches would have
 * fetched at that moment (a batch that ends a read short of its limit
 * moves the checkpoint to the read's barrier, as a short fetch does). The next
 * batch still locks the listener's row first; when the checkpoint there is
 * not where the read started (another process or a reset moved it), the
 * rows are dropped and the batch fetches again from the row's checkpoint.
 * The read starts while the current batch is open; when that batch holds
 * a transaction id the barrier stays below it (the batch's own appends
 * come in a later read), which shortens a read but never skips an event.
 *
 * Anything that goes wrong here (no connection, a failed read) only costs
 * the speed-up: the batch then fetches its rows on its own connection.
 * The connection is opened at the first full batch. Once a batch comes
 * back short (caught up) it stays open read_ahead_keep_ms for the next
 * catch-up, which then needs no connect, and whose server process has the
 * table's buffers mapped already (a new one maps each buffer it touches:
 * its first pass over 1M events took 0.4-0.6 s longer on the VMs this is
 * built on); it closes after that, or when the listener closes.
 */
#include "listener-internal.h"

#include <event2/event.h>

#include <stdlib.h>
#include <string.h>

/* After a failed connect, no read-ahead for this long. */
#define AHEAD_PAUSE_MS 10000
/* Rows one read asks for: a whole number of batches. */
#define AHEAD_ROWS 4096
#define S_AHEAD "dis_l_ahead"

/* The read is prepared once per connection (parsing it anew was a tenth
 * of each read). */
static int send_setup(dis__listener *l)
{
	dis__stmt s = {.name = S_AHEAD, .sql = l->fetch_sql, .prepare = true};

	l->ahead_setup = dis__pq_send(l->apq, &s, 1) == 0;
	return l->ahead_setup ? 0 : DIS_ECONN;
}

/* The read not in yet (always the last), or NULL. */
static struct dis__ahead_read *unread(dis__listener *l)
{
	struct dis__ahead_read *r;

	if (!l->nahead)
		return NULL;
	r = &l->ahead[l->nahead - 1];
	return r->res ? NULL : r;
}

static void queue_read(dis__listener *l, dis_position from)
{
	struct dis__ahead_read *r = &l->ahead[l->nahead++];

	memset(r, 0, sizeof(*r));
	r->from = from;
	r->at = from;
}

/* Sends the read not in yet when the connection is free for it. */
static void pump(dis__listener *l)
{
	struct dis__ahead_read *r = unread(l);
	dis__sql sql;
	dis__stmt s;
	int rc;

	if (!r || l->ahead_out || l->ahead_setup ||
	    dis__pq_get_state(l->apq) != DIS__PQ_IDLE)
		return;
	dis__sql_init(&sql);
	rc = dis__read_sql(l->query, r->from, l->ahead_rows, &sql);
	if (!rc) {
		s = dis__listener_read_stmt(l, &sql, S_AHEAD);
		rc = dis__pq_send(l->apq, &s, 1);
	}
	dis__sql_free(&sql);
	if (rc)
		l->nahead--; /* the batch fetches on its own */
	else
		l->ahead_out = true;
}

/* The read not in yet cannot be had: the batch waiting for it goes on. */
static void read_failed(dis__listener *l)
{
	l->ahead_out = false;
	l->ahead_stale = false;
	if (unread(l))
		l->nahead--;
	if (l->st == DIS__L_AHEAD)
		dis__listener_ahead_in(l);
}

/* Behind the last read, when it came back full and there is room. */
static void read_on(dis__listener *l)
{
	struct dis__ahead_read *r;

	if (l->nahead < 1 || l->nahead >= DIS__AHEAD_MAX || l->stopping ||
	    l->rt->stopping)
		return;
	r = &l->ahead[l->nahead - 1];
	if (r->res && (size_t)r->nrows == l->ahead_rows) {
		queue_read(l, r->end);
		pump(l);
	}
}

/* The rows of the read that was out: keep them, read on behind them. */
static void read_in(dis__listener *l, PGresult *res)
{
	struct dis__ahead_read *r = unread(l);
	int n;

	l->ahead_out = false;
	if (l->ahead_stale || !r) {
		l->ahead_stale = false;
		PQclear(res);
		pump(l);
		return;
	}
	if (!res ||
	    dis__read_result(res, l->ahead_rows, r->from, &n, &r->end)) {
		PQclear(res);
		read_failed(l);
		return;
	}
	r->res = res;
	r->nrows = n;
	r->barrier = dis__get_be64(PQgetvalue(res, PQntuples(res) - 1, 0));
	read_on(l);
	if (l->st == DIS__L_AHEAD)
		dis__listener_ahead_in(l);
}

static void on_apq(dis__pq *pq, void *arg, dis__pq_event ev, int status)
{
	dis__listener *l = arg;
	dis_runtime *rt = l->rt;
	PGnotify *n;

	dis__rt_enter(rt);
	switch (ev) {
	case DIS__PQ_CONNECTED:
		if (status) {
			dis__l_log(l, DIS_LOG_DEBUG, "read-ahead: %s",
				   dis__pq_errmsg(pq));
			l->ahead_pause_ms = dis__now_ms() + AHEAD_PAUSE_MS;
			read_failed(l);
		} else if (send_setup(l)) {
			read_failed(l);
		}
		break;
	case DIS__PQ_LOST:
		l->ahead_setup = false;
		read_failed(l);
		break;
	case DIS__PQ_NOTIFY:
		while ((n = dis__pq_notify(pq)) != NULL)
			PQfreemem(n);
		break;
	case DIS__PQ_RESULTS:
		if (l->ahead_setup) {
			l->ahead_setup = false;
			if (dis__pq_check(pq, NULL) >= 0) {
				dis__l_log(l, DIS_LOG_DEBUG, "read-ahead: %s",
					   dis__pq_errmsg(pq));
				dis__pq_close(pq);
				read_failed(l);
			} else {
				pump(l);
			}
		} else if (dis__pq_check(pq, NULL) < 0) {
			read_in(l, dis__pq_take(pq, 0));
		} else {
			dis__l_log(l, DIS_LOG_DEBUG, "read-ahead: %s",
				   dis__pq_errmsg(pq));
			read_in(l, NULL);
		}
		break;
	}
	dis__rt_leave(rt);
}

void dis__ahead_start(dis__listener *l, dis_position from, size_t limit)
{
	dis_runtime *rt = l->rt;

	/* Read already (the batch took the rows before these). */
	if (dis__ahead_covers(l, from, limit))
		return;
	dis__ahead_drop(l, false);
	if (!l->cfg.read_ahead || dis__now_ms() < l->ahead_pause_ms)
		return;
	if (l->ahead_keep)
		evtimer_del(l->ahead_keep);
	if (!l->apq) {
		l->apq = dis__pq_new(rt->base, on_apq, l);
		if (!l->apq)
			return;
		dis__pq_set_log(l->apq, rt->log, rt->log_arg, rt->log_level,
				l->tag);
	}
	if (dis__pq_get_state(l->apq) == DIS__PQ_CLOSED &&
	    dis__pq_connect(l->apq, rt->conninfo, rt->appname,
			    rt->opts.connect_timeout_ms))
		return;
	l->ahead_slice = limit;
	l->ahead_rows = limit < AHEAD_ROWS ? AHEAD_ROWS / limit * limit : limit;
	queue_read(l, from);
	pump(l);
}

bool dis__ahead_covers(const dis__listener *l, dis_position from, size_t limit)
{
	return l->nahead > 0 && !dis_position_cmp(l->ahead[0].at, from) &&
	       l->ahead_slice == limit;
}

bool dis__ahead_take(dis__listener *l, dis__ahead_slice *out, bool *pending)
{
	struct dis__ahead_read *r = &l->ahead[0];
	int n;

	*pending = false;
	/* The batch before is over: what it borrowed can go. */
	PQclear(l->ahead_lent);
	l->ahead_lent = NULL;
	if (!l->nahead)
		return false;
	if (!r->res) {
		*pending = true;
		return false;
	}
	n = r->nrows - r->served;
	if ((size_t)n > l->ahead_slice)
		n = (int)l->ahead_slice;
	out->res = r->res;
	out->row0 = r->served;
	out->nrows = n;
	out->barrier = r->barrier;
	r->served += n;
	/* The read's end (past the barrier when it was short) after its
	 * last row; else the position of the slice's last row. */
	r->at = r->served == r->nrows
			? r->end
			: dis__row_position(r->res, r->served - 1, 1);
	out->next = r->at;
	if (r->served == r->nrows) {
		/* Taken whole: held until the batch is over. */
		l->ahead_lent = r->res;
		l->nahead--;
		memmove(l->ahead, l->ahead + 1,
			(size_t)l->nahead * sizeof(*l->ahead));
		read_on(l);
	}
	return true;
}

void dis__ahead_drop(dis__listener *l, bool close)
{
	for (int i = 0; i < l->nahead; i++) {
		PGresult *res = l->ahead[i].res;

		if (res && res == l->rows) {
			/* Lent to the batch in flight: freed after it. */
			PQclear(l->ahead_lent);
			l->ahead_lent = res;
		} else {
			PQclear(res);
		}
	}
	l->nahead = 0;
	/* A read still out comes back to nobody. */
	l->ahead_stale = l->ahead_out;
	if (close && l->apq) {
		dis__pq_close(l->apq);
		l->ahead_out = false;
		l->ahead_stale = false;
		l->ahead_setup = false;
	}
	/* Closed: nothing left to keep (a stopped runtime leaves no timer
	 * on the caller's loop). */
	if (close && l->ahead_keep)
		evtimer_del(l->ahead_keep);
}

static void on_keep(evutil_socket_t fd, short what, void *arg)
{
	dis__listener *l = arg;
	dis_runtime *rt = l->rt;

	(void)fd;
	(void)what;
	dis__rt_enter(rt);
	if (!l->nahead)
		dis__ahead_drop(l, true);
	dis__rt_leave(rt);
}

void dis__ahead_idle(dis__listener *l)
{
	uint32_t ms = l->cfg.read_ahead_keep_ms;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	if (!l->apq || !ms || dis__pq_get_state(l->apq) == DIS__PQ_CLOSED) {
		dis__ahead_drop(l, true);
		return;
	}
	dis__ahead_drop(l, false);
	/* Counted from the first batch that found nothing more. */
	if (l->ahead_keep && evtimer_pending(l->ahead_keep, NULL))
		return;
	if (!l->ahead_keep)
		l->ahead_keep = evtimer_new(l->rt->base, on_keep, l);
	if (!l->ahead_keep || evtimer_add(l->ahead_keep, &tv))
		dis__ahead_drop(l, true);
}

void dis__ahead_free(dis__listener *l)
{
	if (l->ahead_keep)
		event_free(l->ahead_keep);
	l->ahead_keep = NULL;
	dis__ahead_drop(l, true);
	PQclear(l->ahead_lent);
	l->ahead_lent = NULL;
	dis__pq_free(l->apq);
	l->apq = NULL;
}
