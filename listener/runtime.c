/*
 * The listener runtime: its listeners, the LISTEN connection they share,
 * start, graceful stop, free (also from inside callbacks) and statistics.
 * One listener's connection and batches are in batch.c.
 *
 * Reentrancy: every entry from the loop (timer, socket, deferred event)
 * goes through dis__rt_enter()/dis__rt_leave(). dis_runtime_free() called
 * while such an entry is on the stack only marks the runtime; the last
 * dis__rt_leave() frees it, after the user's callback has returned.
 */
#include "listener-internal.h"

#include <event2/event.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The LISTEN connection's states. */
enum {
	N_OFF = 0, /* not wanted or stopped */
	N_DOWN,    /* the timer brings the next connect */
	N_CONNECTING,
	N_LISTENING, /* LISTEN sent */
	N_READY,
	N_HEARTBEAT /* a heartbeat query is out */
};

static const double HIST_BOUNDS[DIS_LISTENER_HIST_BUCKETS - 1] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1,    0.25,  0.5,    1,     2.5,  5};

/* ---- small shared helpers ---- */

uint64_t dis__now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

double dis__now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift64*: the runtime's own generator, no global state. */
static uint64_t rng_next(dis_runtime *rt)
{
	uint64_t x = rt->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rt->rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

uint64_t dis__jitter(dis_runtime *rt, uint64_t d, double jitter)
{
	double u;

	if (jitter <= 0 || d == 0)
		return d;
	if (jitter > 1)
		jitter = 1;
	u = (double)(rng_next(rt) >> 11) / 9007199254740992.0;
	return d - (uint64_t)((double)d * jitter * u);
}

void dis__rt_log(dis_runtime *rt, dis_log_level level, const char *fmt, ...)
{
	char msg[DIS_ERRMSG_LEN + 128];
	va_list ap;

	if (!rt->log || (int)level > rt->log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rt->log(rt->log_arg, level, msg);
}

static int rt_fail(dis_runtime *rt, int code, const char *fmt, ...)
	DIS_PRINTF(3, 4);

static int rt_fail(dis_runtime *rt, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	dis__verrf(rt->errmsg, sizeof(rt->errmsg), fmt, ap);
	va_end(ap);
	return code;
}

const char *dis_listener_state_name(dis_listener_state state)
{
	switch (state) {
	case DIS_LISTENER_STARTING: return "starting";
	case DIS_LISTENER_RUNNING: return "running";
	case DIS_LISTENER_RETRYING: return "retrying";
	case DIS_LISTENER_WAITING: return "waiting";
	case DIS_LISTENER_STOPPED: return "stopped";
	}
	return "unknown";
}

double dis_listener_hist_bound(size_t i)
{
	if (i < DIS_LISTENER_HIST_BUCKETS - 1)
		return HIST_BOUNDS[i];
	return 1.0 / 0.0;
}

void dis_listener_config_init(dis_listener_config *cfg)
{
	if (!cfg)
		return;
	memset(cfg, 0, sizeof(*cfg));
	cfg->poll_interval_ms = 5000;
	cfg->fetch_size = 1000;
	cfg->notifier = true;
	cfg->retry.kind = DIS_RETRY_EXPONENTIAL;
	cfg->retry.max_attempts = 10;
	cfg->retry.delay_ms = 100;
	cfg->retry.max_delay_ms = 30000;
	cfg->retry.jitter = 0.2;
	cfg->on_poison = DIS_POISON_STOP;
	cfg->wait_warn_ms = 5000;
	cfg->read_ahead = true;
	cfg->read_ahead_keep_ms = 60000;
	cfg->lock_timeout_ms = 2000;
}

void dis_runtime_options_init(dis_runtime_options *o)
{
	if (!o)
		return;
	memset(o, 0, sizeof(*o));
	o->application_name = "disintegrate-listener";
	o->connect_timeout_ms = 10000;
	o->reconnect_min_ms = 100;
	o->reconnect_max_ms = 10000;
	o->stop_timeout_ms = 30000;
	o->heartbeat_ms = 30000;
}

/* ---- reentrancy ---- */

static void destroy(dis_runtime *rt);

void dis__rt_enter(dis_runtime *rt)
{
	rt->depth++;
}

void dis__rt_leave(dis_runtime *rt)
{
	if (--rt->depth == 0 && rt->free_requested && !rt->destroying)
		destroy(rt);
}

/* ---- the LISTEN connection ---- */

static void n_schedule(dis_runtime *rt);

static bool notifier_wanted(const dis_runtime *rt)
{
	for (size_t i = 0; i < rt->nls; i++)
		if (rt->ls[i]->cfg.notifier)
			return true;
	return false;
}

static void n_arm(dis_runtime *rt, uint64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000),
			     (suseconds_t)(ms % 1000) * 1000};

	evtimer_add(rt->nev_timer, &tv);
}

/* Wakes every listener (after the LISTEN connection came back). */
static void wake_all(dis_runtime *rt, bool notifier_only)
{
	for (size_t i = 0; i < rt->nls && !rt->free_requested; i++) {
		dis__listener *l = rt->ls[i];

		if (notifier_only && !l->cfg.notifier)
			continue;
		if (l->halted || l->stopping || l->st == DIS__L_CLOSED)
			continue;
		l->pending = true;
		dis__listener_schedule(l);
	}
}

static void n_down(dis_runtime *rt, const char *why)
{
	uint32_t lo = rt->opts.reconnect_min_ms, hi = rt->opts.reconnect_max_ms;
	uint64_t d;

	dis__pq_close(rt->npq);
	if (rt->stopping || !rt->running) {
		rt->nst = N_OFF;
		return;
	}
	rt->nbackoff = rt->nbackoff ? rt->nbackoff * 2 : lo;
	if (rt->nbackoff > hi)
		rt->nbackoff = hi;
	d = dis__jitter(rt, rt->nbackoff, 0.5);
	rt->nst = N_DOWN;
	rt->ndue_ms = dis__now_ms() + d;
	dis__rt_log(rt, DIS_LOG_WARN,
		    "notifier: %s; polling only, reconnecting in %" PRIu64
		    " ms",
		    why, d);
	n_arm(rt, d);
}

static void n_dispatch(dis_runtime *rt, char *payload)
{
	char *types[64];
	size_t n = 0;
	char *p = payload;

	/* "A,B,C" (or "" = any type). More types than fit: wake all. */
	while (p && *p) {
		char *comma = strchr(p, ',');

		if (n == sizeof(types) / sizeof(*types)) {
			n = 0;
			break;
		}
		types[n++] = p;
		if (comma)
			*comma++ = '\0';
		p = comma;
	}
	for (size_t i = 0; i < rt->nls && !rt->free_requested; i++) {
		dis__listener *l = rt->ls[i];

		if (dis__listener_wants(l, types, n)) {
			l->pending = true;
			dis__listener_schedule(l);
		}
	}
}

static void n_on_pq(dis__pq *pq, void *arg, dis__pq_event ev, int status)
{
	dis_runtime *rt = arg;
	const dis__stmt listen = {.sql = "LISTEN " DIS__NOTIFY_CHANNEL};
	PGnotify *nt;

	dis__rt_enter(rt);
	switch (ev) {
	case DIS__PQ_CONNECTED:
		if (status) {
			n_down(rt, dis__pq_errmsg(pq));
			break;
		}
		if (dis__pq_send(pq, &listen, 1)) {
			n_down(rt, dis__pq_errmsg(pq));
			break;
		}
		rt->nst = N_LISTENING;
		break;
	case DIS__PQ_LOST: n_down(rt, dis__pq_errmsg(pq)); break;
	case DIS__PQ_RESULTS:
		if (dis__pq_check(pq, NULL) >= 0) {
			char why[DIS_ERRMSG_LEN];

			snprintf(why, sizeof(why), "%s", dis__pq_errmsg(pq));
			n_down(rt, why);
			break;
		}
		if (rt->nst == N_LISTENING) {
			rt->nbackoff = 0;
			dis__rt_log(rt, DIS_LOG_INFO,
				    "notifier: listening (backend %d)",
				    dis__pq_backend_pid(pq));
			/* Whatever was notified while down: catch up. */
			wake_all(rt, true);
		}
		rt->nst = N_READY;
		if (!rt->free_requested)
			n_arm(rt, rt->opts.heartbeat_ms);
		break;
	case DIS__PQ_NOTIFY:
		while (!rt->free_requested && (nt = dis__pq_notify(pq))) {
			if (!strcmp(nt->relname, DIS__NOTIFY_CHANNEL))
				n_dispatch(rt, nt->extra);
			PQfreemem(nt);
		}
		break;
	}
	dis__rt_leave(rt);
}

static void n_connect(dis_runtime *rt)
{
	if (dis__pq_connect(rt->npq, rt->conninfo, rt->appname,
			    rt->opts.connect_timeout_ms)) {
		char why[DIS_ERRMSG_LEN];

		snprintf(why, sizeof(why), "%s", dis__pq_errmsg(rt->npq));
		n_down(rt, why);
		return;
	}
	rt->nst = N_CONNECTING;
}

static void n_on_timer(evutil_socket_t fd, short what, void *arg)
{
	dis_runtime *rt = arg;
	const dis__stmt ping = {.sql = "SELECT 1"};

	(void)fd;
	(void)what;
	dis__rt_enter(rt);
	switch (rt->nst) {
	case N_DOWN: n_connect(rt); break;
	case N_READY:
		if (dis__pq_send(rt->npq, &ping, 1)) {
			char why[DIS_ERRMSG_LEN];

			snprintf(why, sizeof(why), "%s",
				 dis__pq_errmsg(rt->npq));
			n_down(rt, why);
			break;
		}
		rt->nst = N_HEARTBEAT;
		n_arm(rt, rt->opts.heartbeat_ms);
		break;
	case N_HEARTBEAT:
		/* No answer within a whole period: the link is dead. */
		n_down(rt, "no answer to the heartbeat");
		break;
	default: break;
	}
	dis__rt_leave(rt);
}

static void n_schedule(dis_runtime *rt)
{
	if (!rt->running || rt->stopping || rt->nst != N_OFF ||
	    !notifier_wanted(rt))
		return;
	rt->nst = N_DOWN;
	n_connect(rt);
}

bool dis_runtime_notifier_connected(const dis_runtime *rt)
{
	return rt && (rt->nst == N_READY || rt->nst == N_HEARTBEAT);
}

/* ---- construction ---- */

int dis_runtime_new(struct event_base *base, const char *conninfo,
		    const dis_schema *schema, dis_runtime **out, char *errbuf,
		    size_t errlen)
{
	dis_runtime *rt;
	char host[64];
	struct timespec ts;

	if (!base || !schema || !out) {
		dis__errf(errbuf, errlen, "base, schema and out are required");
		return DIS_EINVAL;
	}
	rt = calloc(1, sizeof(*rt));
	if (!rt)
		goto oom;
	rt->base = base;
	rt->schema = schema;
	rt->conninfo = dis__strdup(conninfo ? conninfo : "");
	rt->npq = dis__pq_new(base, n_on_pq, rt);
	rt->nev_timer = evtimer_new(base, n_on_timer, rt);
	if (!rt->conninfo || !rt->npq || !rt->nev_timer)
		goto oom;
	dis_runtime_options_init(&rt->opts);
	snprintf(rt->appname, sizeof(rt->appname), "%s",
		 rt->opts.application_name);
	rt->opts.application_name = rt->appname;
	if (gethostname(host, sizeof(host)))
		snprintf(host, sizeof(host), "?");
	host[sizeof(host) - 1] = '\0';
	snprintf(rt->owner, sizeof(rt->owner), "%s:%ld", host, (long)getpid());
	clock_gettime(CLOCK_REALTIME, &ts);
	rt->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^
		  ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)rt;
	if (!rt->rng)
		rt->rng = 0x9E3779B97F4A7C15ULL;
	rt->log_level = DIS_LOG_INFO;
	dis__pq_set_log(rt->npq, NULL, NULL, 0, "notifier");
	*out = rt;
	return 0;
oom:
	if (rt) {
		free(rt->conninfo);
		dis__pq_free(rt->npq);
		if (rt->nev_timer)
			event_free(rt->nev_timer);
		free(rt);
	}
	dis__errf(errbuf, errlen, "out of memory");
	return DIS_ENOMEM;
}

int dis_runtime_set_options(dis_runtime *rt, const dis_runtime_options *o)
{
	dis_runtime_options d;

	if (!rt)
		return DIS_EINVAL;
	if (rt->running)
		return rt_fail(rt, DIS_ESTATE,
			       "options can change only before start");
	dis_runtime_options_init(&d);
	if (o) {
		if (o->application_name)
			d.application_name = o->application_name;
		if (o->connect_timeout_ms)
			d.connect_timeout_ms = o->connect_timeout_ms;
		if (o->reconnect_min_ms)
			d.reconnect_min_ms = o->reconnect_min_ms;
		if (o->reconnect_max_ms)
			d.reconnect_max_ms = o->reconnect_max_ms;
		if (o->stop_timeout_ms)
			d.stop_timeout_ms = o->stop_timeout_ms;
		if (o->heartbeat_ms)
			d.heartbeat_ms = o->heartbeat_ms;
	}
	if (d.reconnect_max_ms < d.reconnect_min_ms)
		d.reconnect_max_ms = d.reconnect_min_ms;
	snprintf(rt->appname, sizeof(rt->appname), "%s", d.application_name);
	d.application_name = rt->appname;
	rt->opts = d;
	return 0;
}

void dis_runtime_set_log(dis_runtime *rt, dis_log_fn fn, void *arg,
			 dis_log_level level)
{
	if (!rt)
		return;
	rt->log = fn;
	rt->log_arg = arg;
	rt->log_level = level;
	dis__pq_set_log(rt->npq, fn, arg, level, "notifier");
	for (size_t i = 0; i < rt->nls; i++) {
		dis__listener *l = rt->ls[i];

		dis__pq_set_log(l->pq, fn, arg, level, l->tag);
		if (l->store)
			dis_store_set_log(l->store, fn, arg);
	}
}

void dis_runtime_set_stopped_cb(dis_runtime *rt, dis_listener_stopped_fn fn,
				void *arg)
{
	if (!rt)
		return;
	rt->stopped_fn = fn;
	rt->stopped_arg = arg;
}

const char *dis_runtime_errmsg(const dis_runtime *rt)
{
	if (!rt)
		return "runtime is NULL";
	return rt->errmsg[0] ? rt->errmsg : "no error";
}

static void normalize(dis_listener_config *c)
{
	if (!c->fetch_size)
		c->fetch_size = 1000;
	if (c->fetch_size > 1000000)
		c->fetch_size = 1000000;
	if (!c->poll_interval_ms)
		c->poll_interval_ms = 5000;
	if (c->retry.jitter < 0)
		c->retry.jitter = 0;
	if (c->retry.jitter > 1)
		c->retry.jitter = 1;
	if (c->retry.kind == DIS_RETRY_EXPONENTIAL && !c->retry.delay_ms)
		c->retry.delay_ms = 100;
	if (!c->wait_warn_ms)
		c->wait_warn_ms = 5000;
}

int dis_runtime_add_listener(dis_runtime *rt, const char *id,
			     const dis_query *query, dis_handler_fn handler,
			     void *arg, const dis_listener_config *cfg)
{
	dis__listener *l;
	int rc;

	if (!rt)
		return DIS_EINVAL;
	if (!id || !*id || strlen(id) > DIS_LISTENER_ID_MAX)
		return rt_fail(rt, DIS_EINVAL, "a listener id is 1 to %d bytes",
			       DIS_LISTENER_ID_MAX);
	if (!query || !handler)
		return rt_fail(rt, DIS_EINVAL,
			       "listener %s: query and handler are required",
			       id);
	if (rt->stopping || rt->destroying)
		return rt_fail(rt, DIS_ESTATE, "the runtime is stopping");
	if ((rc = dis_query_check(query)))
		return rt_fail(rt, rc, "listener %s: query: %s", id,
			       dis_query_errmsg(query));
	if (dis_query_schema(query) != rt->schema)
		return rt_fail(rt, DIS_EINVAL,
			       "listener %s: the query is over another "
			       "schema than the runtime's",
			       id);
	for (size_t i = 0; i < rt->nls; i++)
		if (!strcmp(rt->ls[i]->id, id))
			return rt_fail(rt, DIS_EINVAL,
				       "listener %s is already registered", id);
	if (rt->nls == rt->cap) {
		size_t cap = rt->cap ? rt->cap * 2 : 4;
		dis__listener **ls = realloc(rt->ls, cap * sizeof(*ls));

		if (!ls)
			return rt_fail(rt, DIS_ENOMEM, "out of memory");
		rt->ls = ls;
		rt->cap = cap;
	}
	l = calloc(1, sizeof(*l));
	if (!l)
		return rt_fail(rt, DIS_ENOMEM, "out of memory");
	l->rt = rt;
	l->fn = handler;
	l->arg = arg;
	if (cfg)
		l->cfg = *cfg;
	else
		dis_listener_config_init(&l->cfg);
	normalize(&l->cfg);
	l->id = dis__strdup(id);
	if (!l->id || dis_query_copy(query, &l->query)) {
		dis__listener_release(l);
		return rt_fail(rt, DIS_ENOMEM, "out of memory");
	}
	rc = dis__listener_init(l, rt->errmsg, sizeof(rt->errmsg));
	if (rc) {
		dis__listener_release(l);
		return rc;
	}
	rt->ls[rt->nls++] = l;
	if (rt->running) {
		dis__listener_start(l);
		n_schedule(rt);
	}
	return 0;
}

/* ---- start, stop, free ---- */

static void on_stop_done(evutil_socket_t fd, short what, void *arg);
static void on_stop_timeout(evutil_socket_t fd, short what, void *arg);

int dis_runtime_start(dis_runtime *rt)
{
	if (!rt)
		return DIS_EINVAL;
	if (rt->running || rt->destroying)
		return rt_fail(rt, DIS_ESTATE,
			       "the runtime is already running");
	if (!rt->ev_stop) {
		rt->ev_stop = event_new(rt->base, -1, 0, on_stop_done, rt);
		rt->ev_stop_timeout =
			evtimer_new(rt->base, on_stop_timeout, rt);
		if (!rt->ev_stop || !rt->ev_stop_timeout)
			return rt_fail(rt, DIS_ENOMEM, "out of memory");
	}
	rt->running = true;
	dis__rt_enter(rt);
	for (size_t i = 0; i < rt->nls && !rt->free_requested; i++)
		dis__listener_start(rt->ls[i]);
	if (!rt->free_requested)
		n_schedule(rt);
	dis__rt_leave(rt);
	return 0;
}

void dis__rt_check_stopped(dis_runtime *rt)
{
	if (!rt->stopping || rt->destroying)
		return;
	for (size_t i = 0; i < rt->nls; i++)
		if (rt->ls[i]->st != DIS__L_CLOSED)
			return;
	if (rt->nst != N_OFF)
		return;
	event_active(rt->ev_stop, 0, 0);
}

static void finish_stop(dis_runtime *rt)
{
	dis_runtime_stop_fn fn = rt->stop_fn;
	void *arg = rt->stop_arg;
	int status = rt->stop_status;

	evtimer_del(rt->ev_stop_timeout);
	event_del(rt->ev_stop);
	rt->running = false;
	rt->stopping = false;
	rt->stop_fn = NULL;
	dis__rt_log(rt, DIS_LOG_INFO, "stopped");
	if (fn)
		fn(arg, rt, status);
}

static void on_stop_done(evutil_socket_t fd, short what, void *arg)
{
	dis_runtime *rt = arg;

	(void)fd;
	(void)what;
	dis__rt_enter(rt);
	if (rt->stopping)
		finish_stop(rt);
	dis__rt_leave(rt);
}

static void on_stop_timeout(evutil_socket_t fd, short what, void *arg)
{
	dis_runtime *rt = arg;

	(void)fd;
	(void)what;
	dis__rt_enter(rt);
	if (rt->stopping) {
		dis__rt_log(rt, DIS_LOG_WARN,
			    "stop timed out: closing connections");
		rt->stop_status = DIS_ETIMEDOUT;
		for (size_t i = 0; i < rt->nls; i++)
			dis__listener_close(rt->ls[i]);
		finish_stop(rt);
	}
	dis__rt_leave(rt);
}

int dis_runtime_stop(dis_runtime *rt, dis_runtime_stop_fn fn, void *arg)
{
	struct timeval tv;

	if (!rt)
		return DIS_EINVAL;
	if (!rt->running || rt->stopping || rt->destroying)
		return rt_fail(rt, DIS_ESTATE, "the runtime is not running");
	rt->stopping = true;
	rt->stop_fn = fn;
	rt->stop_arg = arg;
	rt->stop_status = 0;
	dis__rt_log(rt, DIS_LOG_INFO, "stopping");
	tv.tv_sec = rt->opts.stop_timeout_ms / 1000;
	tv.tv_usec = (rt->opts.stop_timeout_ms % 1000) * 1000;
	evtimer_add(rt->ev_stop_timeout, &tv);
	dis__rt_enter(rt);
	evtimer_del(rt->nev_timer);
	dis__pq_close(rt->npq);
	rt->nst = N_OFF;
	for (size_t i = 0; i < rt->nls && !rt->free_requested; i++) {
		rt->ls[i]->stopping = true;
		dis__listener_schedule(rt->ls[i]);
	}
	dis__rt_check_stopped(rt);
	dis__rt_leave(rt);
	return 0;
}

void dis_runtime_wake(dis_runtime *rt)
{
	if (!rt || !rt->running || rt->stopping || rt->destroying)
		return;
	dis__rt_enter(rt);
	wake_all(rt, false);
	dis__rt_leave(rt);
}

void dis__rt_listener_halted(dis_runtime *rt, dis__listener *l)
{
	if (rt->stopped_fn)
		rt->stopped_fn(rt->stopped_arg, rt, l->id, l->last_code,
			       l->last_error);
}

static void destroy(dis_runtime *rt)
{
	rt->destroying = true;
	if (rt->stop_fn) {
		dis_runtime_stop_fn fn = rt->stop_fn;

		rt->stop_fn = NULL;
		fn(rt->stop_arg, rt, DIS_ECANCELED);
	}
	for (size_t i = 0; i < rt->nls; i++)
		dis__listener_release(rt->ls[i]);
	free(rt->ls);
	dis__pq_free(rt->npq);
	if (rt->nev_timer)
		event_free(rt->nev_timer);
	if (rt->ev_stop)
		event_free(rt->ev_stop);
	if (rt->ev_stop_timeout)
		event_free(rt->ev_stop_timeout);
	free(rt->conninfo);
	free(rt);
}

void dis_runtime_free(dis_runtime *rt)
{
	if (!rt || rt->destroying)
		return;
	if (rt->depth > 0) {
		rt->free_requested = true;
		return;
	}
	destroy(rt);
}

/* ---- statistics ---- */

int dis_runtime_stats(dis_runtime *rt, dis_listener_stats **out, size_t *n)
{
	size_t size, strings = 0;
	dis_listener_stats *st;
	char *p;

	if (!rt || !out || !n)
		return DIS_EINVAL;
	for (size_t i = 0; i < rt->nls; i++)
		strings += strlen(rt->ls[i]->id) +
			   strlen(rt->ls[i]->last_error) + 2;
	size = rt->nls * sizeof(*st) + strings;
	st = calloc(1, size ? size : 1);
	if (!st)
		return rt_fail(rt, DIS_ENOMEM, "out of memory");
	p = (char *)(st + rt->nls);
	for (size_t i = 0; i < rt->nls; i++) {
		const dis__listener *l = rt->ls[i];
		dis_listener_stats *s = &st[i];
		size_t len;

		len = strlen(l->id) + 1;
		memcpy(p, l->id, len);
		s->id = p;
		p += len;
		len = strlen(l->last_error) + 1;
		memcpy(p, l->last_error, len);
		s->last_error = p;
		p += len;
		s->state = l->halted ? DIS_LISTENER_STOPPED : l->state;
		s->connected = l->st >= DIS__L_IDLE;
		s->checkpoint = l->ck;
		s->last_event_id = l->last_id;
		s->head = l->head;
		s->events_behind = l->behind;
		s->seconds_behind = l->behind_secs;
		s->blocker_pid =
			l->state == DIS_LISTENER_WAITING ? l->blocker_pid : 0;
		s->blocker_seconds =
			l->state == DIS_LISTENER_WAITING ? l->blocker_secs : 0;
		s->attempts = l->fail_id ? l->fail_attempts : 0;
		s->last_error_code = l->last_code;
		s->events_handled = l->events_handled;
		s->errors = l->errors;
		s->retries = l->retries;
		s->dead_letters = l->dead_letters;
		s->batches = l->batches;
		s->skipped_batches = l->skipped;
		s->reconnects = l->reconnects;
		s->read_ahead_batches = l->ahead_batches;
		s->batch_seconds_sum = l->batch_sum;
		s->batch_seconds_max = l->batch_max;
		memcpy(s->batch_hist, l->hist, sizeof(s->batch_hist));
	}
	*out = st;
	*n = rt->nls;
	return 0;
}
