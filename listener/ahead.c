/*
 * Read-ahead while catching up: the next batch's rows, read on a second
 * connection while the handlers of the current batch run.
 *
 * A batch that came back full is followed by another; its start is known
 * as soon as the rows are in (the position of the last one). So while the
 * handlers run and the batch commits on the listener's connection, a
 * second connection runs that next read, and the next batch takes its
 * rows instead of fetching them itself: the server reads while the client
 * works, where one connection would leave one of them idle.
 *
 * The read is the batch's own gap-free statement (events and barrier from
 * one snapshot), only run earlier and in a transaction of its own, so the
 * rows are what the next batch would have fetched at that moment. The next
 * batch still locks the listener's row first; when the checkpoint there is
 * not where the read started (another process or a reset moved it), the
 * rows are dropped and the batch fetches again from the row's checkpoint.
 * The read starts while the current batch is open; when that batch holds
 * a transaction id the barrier stays below it (the batch's own appends
 * come in a later read), which shortens a read but never skips an event.
 *
 * Anything that goes wrong here (no connection, a failed read) only costs
 * the speed-up: the batch then fetches its rows on its own connection.
 * The connection is opened at the first full batch and closed once a batch
 * comes back short (caught up) or the listener closes.
 */
#include "listener-internal.h"

#include <stdlib.h>
#include <string.h>

/* After a failed connect, no read-ahead for this long. */
#define AHEAD_PAUSE_MS 10000
#define S_AHEAD "dis_l_ahead"

/* The read is prepared once per connection (parsing it anew was a tenth
 * of each read). */
static int send_setup(dis__listener *l)
{
	dis__stmt s = {.name = S_AHEAD, .sql = l->fetch_sql, .prepare = true};

	l->ahead_setup = dis__pq_send(l->apq, &s, 1) == 0;
	return l->ahead_setup ? 0 : DIS_ECONN;
}

static void send_read(dis__listener *l)
{
	dis__sql sql;
	dis__stmt s = {.binary = 1};
	int rc;

	l->ahead_want = false;
	dis__sql_init(&sql);
	rc = dis__read_sql(l->query, l->ahead_from, l->ahead_limit, &sql);
	if (!rc) {
		if (!strcmp(dis__buf_cstr(&sql.text), l->fetch_sql))
			s.name = S_AHEAD;
		else
			s.sql = dis__buf_cstr(&sql.text);
		s.nparams = sql.nparams;
		s.values = (const char *const *)sql.params;
		rc = dis__pq_send(l->apq, &s, 1);
	}
	dis__sql_free(&sql);
	l->ahead_busy = rc == 0;
}

/* The read is over (rows in, or failed): a batch waiting on it goes on. */
static void read_over(dis__listener *l)
{
	l->ahead_busy = false;
	l->ahead_want = false;
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
			read_over(l);
		} else if (send_setup(l)) {
			read_over(l);
		}
		break;
	case DIS__PQ_LOST:
		l->ahead_setup = false;
		read_over(l);
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
				read_over(l);
			} else if (l->ahead_want) {
				send_read(l);
				if (!l->ahead_busy)
					read_over(l);
			}
			break;
		}
		if (dis__pq_check(pq, NULL) < 0)
			l->ahead = dis__pq_take(pq, 0);
		else
			dis__l_log(l, DIS_LOG_DEBUG, "read-ahead: %s",
				   dis__pq_errmsg(pq));
		read_over(l);
		break;
	}
	dis__rt_leave(rt);
}

void dis__ahead_start(dis__listener *l, dis_position from, size_t limit)
{
	dis_runtime *rt = l->rt;

	dis__ahead_drop(l, false);
	if (!l->cfg.read_ahead || l->ahead_busy ||
	    dis__now_ms() < l->ahead_pause_ms)
		return;
	if (!l->apq) {
		l->apq = dis__pq_new(rt->base, on_apq, l);
		if (!l->apq)
			return;
		dis__pq_set_log(l->apq, rt->log, rt->log_arg, rt->log_level,
				l->tag);
	}
	l->ahead_from = from;
	l->ahead_limit = limit;
	switch (dis__pq_get_state(l->apq)) {
	case DIS__PQ_CLOSED:
		if (dis__pq_connect(l->apq, rt->conninfo, rt->appname,
				    rt->opts.connect_timeout_ms))
			return;
		l->ahead_want = true;
		break;
	case DIS__PQ_CONNECTING: l->ahead_want = true; break;
	case DIS__PQ_IDLE: send_read(l); break;
	default:
		/* Busy with its set-up: the read follows it. */
		l->ahead_want = l->ahead_setup;
		break;
	}
}

bool dis__ahead_covers(const dis__listener *l, dis_position from, size_t limit)
{
	return (l->ahead || l->ahead_busy || l->ahead_want) &&
	       !dis_position_cmp(l->ahead_from, from) && l->ahead_limit == limit;
}

PGresult *dis__ahead_take(dis__listener *l, bool *pending)
{
	PGresult *r = l->ahead;

	l->ahead = NULL;
	*pending = !r && (l->ahead_busy || l->ahead_want);
	return r;
}

void dis__ahead_drop(dis__listener *l, bool close)
{
	PQclear(l->ahead);
	l->ahead = NULL;
	l->ahead_want = false;
	if (close && l->apq) {
		dis__pq_close(l->apq);
		l->ahead_busy = false;
		l->ahead_setup = false;
	}
}

void dis__ahead_free(dis__listener *l)
{
	dis__ahead_drop(l, true);
	dis__pq_free(l->apq);
	l->apq = NULL;
}
