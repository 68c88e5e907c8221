/*
 * The convenience runner: a runtime on an event_base of its own, stopped
 * gracefully by SIGINT/SIGTERM or dis_runner_stop() (from any thread or a
 * signal handler: it writes a byte to a pipe the loop watches). A second
 * signal while stopping gives up waiting.
 */
#include "listener-internal.h"

#include <event2/event.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct dis_runner {
	struct event_base *base;
	dis_runtime *rt;
	bool signals;
	int pipe[2];
	struct event *ev_pipe;
	struct event *ev_int;
	struct event *ev_term;
	bool stopping;
	int result;
	int halt_code;
	dis_listener_stopped_fn user_fn;
	void *user_arg;
};

int dis_runner_new(const char *conninfo, const dis_schema *schema,
		   dis_runner **out, char *errbuf, size_t errlen)
{
	dis_runner *r;
	int rc;

	if (!schema || !out) {
		dis__errf(errbuf, errlen, "schema and out are required");
		return DIS_EINVAL;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		dis__errf(errbuf, errlen, "out of memory");
		return DIS_ENOMEM;
	}
	r->pipe[0] = r->pipe[1] = -1;
	r->signals = true;
	r->base = event_base_new();
	if (!r->base || pipe2(r->pipe, O_NONBLOCK | O_CLOEXEC)) {
		dis__errf(errbuf, errlen, "cannot create the event loop: %s",
			  strerror(errno));
		dis_runner_free(r);
		return DIS_EIO;
	}
	rc = dis_runtime_new(r->base, conninfo, schema, &r->rt, errbuf, errlen);
	if (rc) {
		dis_runner_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

dis_runtime *dis_runner_runtime(dis_runner *r)
{
	return r ? r->rt : NULL;
}

void dis_runner_set_signals(dis_runner *r, bool on)
{
	if (r)
		r->signals = on;
}

static void on_stopped(void *arg, dis_runtime *rt, int status)
{
	dis_runner *r = arg;

	(void)rt;
	if (!r->result)
		r->result = r->halt_code ? r->halt_code : status;
	event_base_loopexit(r->base, NULL);
}

static void begin_stop(dis_runner *r)
{
	if (r->stopping) {
		/* Asked again: stop waiting for the batches in flight. */
		dis__rt_log(r->rt, DIS_LOG_WARN,
			    "stop requested again: "
			    "giving up on a graceful stop");
		r->result = DIS_ECANCELED;
		event_base_loopbreak(r->base);
		return;
	}
	r->stopping = true;
	if (dis_runtime_stop(r->rt, on_stopped, r))
		event_base_loopexit(r->base, NULL);
}

static void on_halted(void *arg, dis_runtime *rt, const char *id, int code,
		      const char *msg)
{
	dis_runner *r = arg;

	if (r->user_fn)
		r->user_fn(r->user_arg, rt, id, code, msg);
	for (size_t i = 0; i < rt->nls; i++)
		if (!rt->ls[i]->halted)
			return;
	/* Every listener stopped on its own: nothing left to run. */
	if (!r->halt_code)
		r->halt_code = code ? code : DIS_ESTATE;
	if (!r->stopping)
		begin_stop(r);
}

static void on_pipe(evutil_socket_t fd, short what, void *arg)
{
	char buf[64];

	(void)what;
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	begin_stop(arg);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	dis_runner *r = arg;

	(void)what;
	dis__rt_log(r->rt, DIS_LOG_INFO, "signal %d: stopping", (int)sig);
	begin_stop(r);
}

static void drop_events(dis_runner *r)
{
	if (r->ev_pipe)
		event_free(r->ev_pipe);
	if (r->ev_int)
		event_free(r->ev_int);
	if (r->ev_term)
		event_free(r->ev_term);
	r->ev_pipe = r->ev_int = r->ev_term = NULL;
}

int dis_runner_run(dis_runner *r)
{
	int rc;

	if (!r)
		return DIS_EINVAL;
	r->stopping = false;
	r->result = 0;
	r->halt_code = 0;
	if (r->rt->stopped_fn != on_halted) {
		r->user_fn = r->rt->stopped_fn;
		r->user_arg = r->rt->stopped_arg;
	}
	dis_runtime_set_stopped_cb(r->rt, on_halted, r);
	r->ev_pipe = event_new(r->base, r->pipe[0], EV_READ | EV_PERSIST,
			       on_pipe, r);
	if (!r->ev_pipe || event_add(r->ev_pipe, NULL))
		goto oom;
	if (r->signals) {
		r->ev_int = evsignal_new(r->base, SIGINT, on_signal, r);
		r->ev_term = evsignal_new(r->base, SIGTERM, on_signal, r);
		if (!r->ev_int || !r->ev_term || event_add(r->ev_int, NULL) ||
		    event_add(r->ev_term, NULL))
			goto oom;
	}
	rc = dis_runtime_start(r->rt);
	if (rc) {
		drop_events(r);
		return rc;
	}
	event_base_dispatch(r->base);
	drop_events(r);
	return r->result;
oom:
	drop_events(r);
	return DIS_ENOMEM;
}

void dis_runner_stop(dis_runner *r)
{
	ssize_t n;

	if (!r || r->pipe[1] < 0)
		return;
	n = write(r->pipe[1], "s", 1);
	(void)n;
}

void dis_runner_free(dis_runner *r)
{
	if (!r)
		return;
	dis_runtime_free(r->rt);
	drop_events(r);
	if (r->pipe[0] >= 0)
		close(r->pipe[0]);
	if (r->pipe[1] >= 0)
		close(r->pipe[1]);
	if (r->base)
		event_base_free(r->base);
	free(r);
}
