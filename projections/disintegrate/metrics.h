/*
 * Metrics and health of listener runtimes over HTTP (libevent's evhttp),
 * on the caller's event_base, which it never dispatches or frees.
 *
 *   GET /metrics  Prometheus text format (version 0.0.4). Per listener,
 *                 labelled listener="ID": events handled, errors, retries,
 *                 dead letters, batches, skipped batches, reconnects
 *                 (counters); lag in events and in seconds, up, state
 *                 (gauges); batch duration (histogram).
 *   GET /health   200 "ok" when every listener of every added runtime runs
 *                 (running, retrying or waiting on a transaction) and is
 *                 connected; 503 with the listeners that are not, else.
 *
 * The runtimes must run on the same event_base (their statistics are read
 * from the loop's thread). Bind to 127.0.0.1 unless the port is meant to be
 * reachable from elsewhere: there is no authentication.
 */
#ifndef DISINTEGRATE_METRICS_H
#define DISINTEGRATE_METRICS_H

#include <disintegrate/common.h>
#include <disintegrate/listener.h>

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;

typedef struct dis_metrics dis_metrics;

/*
 * Serves /metrics and /health on `address`:`port` (port 0: any free port,
 * see dis_metrics_port). On failure *out is untouched and errbuf says why
 * (DIS_EIO when the address cannot be bound).
 */
DIS_API int dis_metrics_new(struct event_base *base, const char *address,
			    uint16_t port, dis_metrics **out, char *errbuf,
			    size_t errlen);
/* Closes the socket. NULL is a no-op. */
DIS_API void dis_metrics_free(dis_metrics *m);
/* The port it listens on. */
DIS_API uint16_t dis_metrics_port(const dis_metrics *m);

/* Adds a runtime to report (at most 64); remove it before freeing it. */
DIS_API int dis_metrics_add_runtime(dis_metrics *m, dis_runtime *rt);
DIS_API void dis_metrics_remove_runtime(dis_metrics *m, dis_runtime *rt);

/*
 * The texts the endpoints serve, for other servers: the Prometheus text
 * into *text (dis_free), and the health verdict (true: healthy) with its
 * text.
 */
DIS_API int dis_metrics_render(dis_metrics *m, char **text);
DIS_API int dis_metrics_health(dis_metrics *m, bool *healthy, char **text);

#ifdef __cplusplus
}
#endif
#endif
