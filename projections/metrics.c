/*
 * /metrics (Prometheus text format 0.0.4) and /health over evhttp, from
 * the statistics of the runtimes added (dis_runtime_stats).
 */
#include "projections-internal.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_RUNTIMES 64

struct dis_metrics {
	struct event_base *base;
	struct evhttp *http;
	uint16_t port;
	dis_runtime *rts[MAX_RUNTIMES];
	size_t nrts;
};

/* Every listener's statistics with the index of its runtime. */
typedef struct snapshot {
	dis_listener_stats *st[MAX_RUNTIMES];
	size_t n[MAX_RUNTIMES];
	size_t nrts;
} snapshot;

static void snapshot_free(snapshot *s)
{
	for (size_t i = 0; i < s->nrts; i++)
		dis_free(s->st[i]);
}

static int snapshot_take(dis_metrics *m, snapshot *s)
{
	memset(s, 0, sizeof(*s));
	for (size_t i = 0; i < m->nrts; i++) {
		int rc = dis_runtime_stats(m->rts[i], &s->st[i], &s->n[i]);

		if (rc) {
			snapshot_free(s);
			return rc;
		}
		s->nrts = i + 1;
	}
	return 0;
}

static bool healthy(const dis_listener_stats *st)
{
	return st->connected && (st->state == DIS_LISTENER_RUNNING ||
				 st->state == DIS_LISTENER_RETRYING ||
				 st->state == DIS_LISTENER_WAITING);
}

/* The label set {listener="ID"[,runtime="R"]} with ID escaped. */
static void labels(dis__buf *b, const dis_listener_stats *st, size_t rt,
		   size_t nrts, const char *extra)
{
	dis__buf_puts(b, "{listener=\"");
	for (const char *p = st->id; *p; p++) {
		if (*p == '\\')
			dis__buf_puts(b, "\\\\");
		else if (*p == '"')
			dis__buf_puts(b, "\\\"");
		else if (*p == '\n')
			dis__buf_puts(b, "\\n");
		else
			dis__buf_append(b, p, 1);
	}
	dis__buf_puts(b, "\"");
	if (nrts > 1)
		dis__buf_printf(b, ",runtime=\"%zu\"", rt);
	if (extra) {
		dis__buf_puts(b, ",");
		dis__buf_puts(b, extra);
	}
	dis__buf_puts(b, "}");
}

typedef enum kind { K_COUNTER, K_GAUGE } kind;

typedef struct simple {
	const char *name;
	kind kind;
	const char *help;
} simple;

static const simple SIMPLE[] = {
	{"dis_listener_events_handled_total", K_COUNTER,
	 "Events handled by the listener's handler."},
	{"dis_listener_errors_total", K_COUNTER,
	 "Handler failures, bad payloads and infrastructure errors."},
	{"dis_listener_retries_total", K_COUNTER, "Retries of failed events."},
	{"dis_listener_dead_letters_total", K_COUNTER,
	 "Events written to the dead-letter table."},
	{"dis_listener_batches_total", K_COUNTER, "Committed batches."},
	{"dis_listener_skipped_batches_total", K_COUNTER,
	 "Batches skipped because another process held the listener."},
	{"dis_listener_reconnects_total", K_COUNTER,
	 "Reconnections to PostgreSQL."},
	{"dis_listener_lag_events", K_GAUGE,
	 "Events in the log past the listener's checkpoint."},
	{"dis_listener_lag_seconds", K_GAUGE,
	 "Age of the oldest event past the checkpoint."},
	{"dis_listener_up", K_GAUGE,
	 "1 when the listener runs and is connected."},
	{"dis_listener_connected", K_GAUGE,
	 "1 when the listener's connection is up."},
	{"dis_listener_last_event_id", K_GAUGE,
	 "Id of the newest event the listener has handled."},
};

static double simple_value(size_t i, const dis_listener_stats *st)
{
	switch (i) {
	case 0: return (double)st->events_handled;
	case 1: return (double)st->errors;
	case 2: return (double)st->retries;
	case 3: return (double)st->dead_letters;
	case 4: return (double)st->batches;
	case 5: return (double)st->skipped_batches;
	case 6: return (double)st->reconnects;
	case 7: return (double)(st->events_behind > 0 ? st->events_behind : 0);
	case 8: return st->seconds_behind > 0 ? st->seconds_behind : 0;
	case 9: return healthy(st) ? 1 : 0;
	case 10: return st->connected ? 1 : 0;
	case 11: return (double)st->last_event_id;
	}
	return 0;
}

static void put_number(dis__buf *b, double v)
{
	if (v == (double)(int64_t)v && v < 9e15 && v > -9e15)
		dis__buf_printf(b, " %" PRId64 "\n", (int64_t)v);
	else
		dis__buf_printf(b, " %.9g\n", v);
}

static void render(dis__buf *b, const snapshot *s)
{
	static const dis_listener_state states[] = {DIS_LISTENER_STARTING,
						    DIS_LISTENER_RUNNING,
						    DIS_LISTENER_RETRYING,
						    DIS_LISTENER_WAITING,
						    DIS_LISTENER_STOPPED};
	const char *h = "dis_listener_batch_duration_seconds";

	for (size_t i = 0; i < sizeof(SIMPLE) / sizeof(*SIMPLE); i++) {
		dis__buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n",
				SIMPLE[i].name, SIMPLE[i].help, SIMPLE[i].name,
				SIMPLE[i].kind == K_COUNTER ? "counter"
							    : "gauge");
		for (size_t r = 0; r < s->nrts; r++)
			for (size_t l = 0; l < s->n[r]; l++) {
				dis__buf_puts(b, SIMPLE[i].name);
				labels(b, &s->st[r][l], r, s->nrts, NULL);
				put_number(b, simple_value(i, &s->st[r][l]));
			}
	}
	dis__buf_puts(b, "# HELP dis_listener_state The listener's state "
			 "(1 for the current one).\n"
			 "# TYPE dis_listener_state gauge\n");
	for (size_t r = 0; r < s->nrts; r++)
		for (size_t l = 0; l < s->n[r]; l++)
			for (size_t k = 0; k < sizeof(states) / sizeof(*states);
			     k++) {
				char extra[64];

				snprintf(extra, sizeof(extra), "state=\"%s\"",
					 dis_listener_state_name(states[k]));
				dis__buf_puts(b, "dis_listener_state");
				labels(b, &s->st[r][l], r, s->nrts, extra);
				put_number(b, s->st[r][l].state == states[k]);
			}
	dis__buf_printf(b,
			"# HELP %s Duration of committed batches.\n"
			"# TYPE %s histogram\n",
			h, h);
	for (size_t r = 0; r < s->nrts; r++)
		for (size_t l = 0; l < s->n[r]; l++) {
			const dis_listener_stats *st = &s->st[r][l];
			uint64_t cum = 0;

			for (size_t i = 0; i < DIS_LISTENER_HIST_BUCKETS; i++) {
				char extra[64];

				cum += st->batch_hist[i];
				if (i + 1 == DIS_LISTENER_HIST_BUCKETS)
					snprintf(extra, sizeof(extra),
						 "le=\"+Inf\"");
				else
					snprintf(extra, sizeof(extra),
						 "le=\"%g\"",
						 dis_listener_hist_bound(i));
				dis__buf_printf(b, "%s_bucket", h);
				labels(b, st, r, s->nrts, extra);
				put_number(b, (double)cum);
			}
			dis__buf_printf(b, "%s_sum", h);
			labels(b, st, r, s->nrts, NULL);
			dis__buf_printf(b, " %.9g\n", st->batch_seconds_sum);
			dis__buf_printf(b, "%s_count", h);
			labels(b, st, r, s->nrts, NULL);
			put_number(b, (double)cum);
		}
}

int dis_metrics_render(dis_metrics *m, char **text)
{
	snapshot s;
	dis__buf b;
	int rc;

	if (!m || !text)
		return DIS_EINVAL;
	if ((rc = snapshot_take(m, &s)))
		return rc;
	dis__buf_init(&b);
	render(&b, &s);
	snapshot_free(&s);
	if (b.oom) {
		dis__buf_free(&b);
		return DIS_ENOMEM;
	}
	*text = dis__buf_take(&b);
	return *text ? 0 : DIS_ENOMEM;
}

int dis_metrics_health(dis_metrics *m, bool *ok, char **text)
{
	snapshot s;
	dis__buf b;
	bool all = true;
	int rc;

	if (!m || !ok || !text)
		return DIS_EINVAL;
	if ((rc = snapshot_take(m, &s)))
		return rc;
	dis__buf_init(&b);
	for (size_t r = 0; r < s.nrts; r++)
		for (size_t l = 0; l < s.n[r]; l++) {
			const dis_listener_stats *st = &s.st[r][l];

			if (healthy(st))
				continue;
			all = false;
			dis__buf_printf(&b, "%s: %s%s%s", st->id,
					dis_listener_state_name(st->state),
					st->connected ? "" : ", not connected",
					st->last_error[0] ? ": " : "");
			/* One line per listener. */
			for (const char *p = st->last_error; *p; p++)
				dis__buf_append(
					&b, *p == '\n' || *p == '\t' ? " " : p,
					1);
			dis__buf_puts(&b, "\n");
		}
	snapshot_free(&s);
	if (all)
		dis__buf_puts(&b, "ok\n");
	if (b.oom) {
		dis__buf_free(&b);
		return DIS_ENOMEM;
	}
	*ok = all;
	*text = dis__buf_take(&b);
	return *text ? 0 : DIS_ENOMEM;
}

static void reply(struct evhttp_request *req, int code, const char *reason,
		  const char *type, const char *body)
{
	struct evbuffer *out = evbuffer_new();

	evhttp_add_header(evhttp_request_get_output_headers(req),
			  "Content-Type", type);
	evhttp_add_header(evhttp_request_get_output_headers(req),
			  "Cache-Control", "no-store");
	if (out && body)
		evbuffer_add(out, body, strlen(body));
	evhttp_send_reply(req, code, reason, out);
	if (out)
		evbuffer_free(out);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	dis_metrics *m = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	char *text = NULL;
	bool ok = false;

	if (!path) {
		reply(req, 400, "Bad Request", "text/plain", "bad request\n");
	} else if (!strcmp(path, "/metrics")) {
		if (dis_metrics_render(m, &text))
			reply(req, 500, "Internal Server Error", "text/plain",
			      "out of memory\n");
		else
			reply(req, 200, "OK",
			      "text/plain; version=0.0.4; charset=utf-8", text);
	} else if (!strcmp(path, "/health")) {
		if (dis_metrics_health(m, &ok, &text))
			reply(req, 500, "Internal Server Error", "text/plain",
			      "out of memory\n");
		else
			reply(req, ok ? 200 : 503,
			      ok ? "OK" : "Service Unavailable",
			      "text/plain; charset=utf-8", text);
	} else {
		reply(req, 404, "Not Found", "text/plain",
		      "try /metrics or /health\n");
	}
	free(text);
}

/*
 * The listening socket, made here rather than by evhttp so that a bad
 * address is our error message (libevent would log to stderr) and the
 * bound port can be read back.
 */
static int listen_on(const char *address, uint16_t port, uint16_t *bound,
		     char *errbuf, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, one = 1;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, address,
		      &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		ss.ss_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons(port);
		sl = sizeof(struct sockaddr_in);
	} else if (inet_pton(AF_INET6, address,
			     &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		ss.ss_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
		sl = sizeof(struct sockaddr_in6);
	} else {
		dis__errf(errbuf, errlen,
			  "\"%s\" is not a numeric IPv4 or IPv6 address",
			  address);
		return -1;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&ss, sl) || listen(fd, 128) ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl)) {
		dis__errf(errbuf, errlen, "cannot listen on %s port %u: %s",
			  address, (unsigned)port, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*bound = ntohs(ss.ss_family == AF_INET
			       ? ((struct sockaddr_in *)&ss)->sin_port
			       : ((struct sockaddr_in6 *)&ss)->sin6_port);
	return fd;
}

int dis_metrics_new(struct event_base *base, const char *address, uint16_t port,
		    dis_metrics **out, char *errbuf, size_t errlen)
{
	dis_metrics *m;
	int fd;

	if (!base || !address || !out) {
		dis__errf(errbuf, errlen, "base, address and out are required");
		return DIS_EINVAL;
	}
	m = calloc(1, sizeof(*m));
	if (!m || !(m->http = evhttp_new(base))) {
		free(m);
		dis__errf(errbuf, errlen, "out of memory");
		return DIS_ENOMEM;
	}
	m->base = base;
	evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_gencb(m->http, on_request, m);
	fd = listen_on(address, port, &m->port, errbuf, errlen);
	/* evhttp owns the socket from here (closed by evhttp_free). */
	if (fd < 0 || !evhttp_accept_socket_with_handle(m->http, fd)) {
		if (fd >= 0) {
			close(fd);
			dis__errf(errbuf, errlen, "out of memory");
		}
		evhttp_free(m->http);
		free(m);
		return fd < 0 ? DIS_EIO : DIS_ENOMEM;
	}
	*out = m;
	return 0;
}

void dis_metrics_free(dis_metrics *m)
{
	if (!m)
		return;
	evhttp_free(m->http);
	free(m);
}

uint16_t dis_metrics_port(const dis_metrics *m)
{
	return m ? m->port : 0;
}

int dis_metrics_add_runtime(dis_metrics *m, dis_runtime *rt)
{
	if (!m || !rt)
		return DIS_EINVAL;
	for (size_t i = 0; i < m->nrts; i++)
		if (m->rts[i] == rt)
			return 0;
	if (m->nrts == MAX_RUNTIMES)
		return DIS_EINVAL;
	m->rts[m->nrts++] = rt;
	return 0;
}

void dis_metrics_remove_runtime(dis_metrics *m, dis_runtime *rt)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->nrts; i++)
		if (m->rts[i] == rt) {
			memmove(&m->rts[i], &m->rts[i + 1],
				(m->nrts - i - 1) * sizeof(*m->rts));
			m->nrts--;
			return;
		}
}
