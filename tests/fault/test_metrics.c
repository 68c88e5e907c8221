/*
 * Metrics and health over HTTP: GET /metrics shows the listener metrics
 * in Prometheus text format (also through the curl program when it is
 * installed); GET /health is 200, turns 503 while the database server is
 * stopped, and 200 again once it is back (dt_pg_ctl).
 */
#include "testutil.h"

#include <disintegrate/metrics.h>
#include <disintegrate/projection.h>
#include <event2/event.h>

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *const SCHEMA =
	"[{\"type\":\"record\",\"name\":\"Hit\",\"fields\":["
	"  {\"name\":\"key\",\"type\":\"string\",\"disintegrate.id\":true}]}]";

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- an HTTP GET on a thread while the loop runs ---- */

typedef struct get {
	uint16_t port;
	const char *path;
	bool curl;
	int status;
	char *body;
	atomic_int done;
} get;

static void *get_main(void *arg)
{
	get *g = arg;
	char req[256], *buf = NULL;
	size_t len = 0, cap = 0;
	ssize_t n;

	if (g->curl) {
		char cmd[256];
		FILE *f;

		snprintf(cmd, sizeof(cmd),
			 "curl -s -w '\\n%%{http_code}' http://127.0.0.1:%u%s",
			 (unsigned)g->port, g->path);
		f = popen(cmd, "r");
		if (f) {
			for (;;) {
				if (len + 4096 + 1 > cap)
					buf = realloc(buf, cap = cap ? cap * 2
								     : 8192);
				n = (ssize_t)fread(buf + len, 1, 4096, f);
				if (n <= 0)
					break;
				len += (size_t)n;
			}
			pclose(f);
		}
		if (buf) {
			char *nl;

			buf[len] = '\0';
			nl = strrchr(buf, '\n');
			if (nl) {
				g->status = atoi(nl + 1);
				*nl = '\0';
			}
			g->body = buf;
		}
		atomic_store(&g->done, 1);
		return NULL;
	}
	struct sockaddr_in sa = {0};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_family = AF_INET;
	sa.sin_port = htons(g->port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		snprintf(req, sizeof(req),
			 "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
			 "Connection: close\r\n\r\n",
			 g->path);
		if (write(fd, req, strlen(req)) == (ssize_t)strlen(req))
			for (;;) {
				if (len + 4096 + 1 > cap)
					buf = realloc(buf, cap = cap ? cap * 2
								     : 8192);
				n = read(fd, buf + len, cap - len - 1);
				if (n <= 0)
					break;
				len += (size_t)n;
			}
	}
	if (fd >= 0)
		close(fd);
	if (buf) {
		char *body;

		buf[len] = '\0';
		g->status = len > 12 ? atoi(buf + 9) : 0;
		body = strstr(buf, "\r\n\r\n");
		g->body = strdup(body ? body + 4 : "");
		free(buf);
	}
	atomic_store(&g->done, 1);
	return NULL;
}

static void loop_for(struct event_base *base, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

/* GETs `path`, running the loop meanwhile; returns the status. */
static int http(struct event_base *base, uint16_t port, const char *path,
		bool curl, char **body)
{
	get g = {.port = port, .path = path, .curl = curl};
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, get_main, &g), 0);
	while (!atomic_load(&g.done))
		loop_for(base, 5);
	pthread_join(t, NULL);
	if (body)
		*body = g.body ? g.body : strdup("");
	else
		free(g.body);
	return g.status;
}

/* The value of the metric line starting with `prefix` (-1 if none). */
static double metric(const char *text, const char *prefix)
{
	const char *p = text;
	size_t n = strlen(prefix);

	while ((p = strstr(p, prefix))) {
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			return atof(p + n + 1);
		p += n;
	}
	return -1;
}

static int handler(void *arg, dis_batch *b, const dis_event *ev)
{
	(void)b;
	(void)ev;
	(*(int *)arg)++;
	return 0;
}

static void test_metrics_and_health(void **state)
{
	char *conninfo = dt_fresh_db();
	dis_schema *s = dt_schema(SCHEMA);
	dis_store *st = dt_store(conninfo, s);
	struct event_base *base = event_base_new();
	dis_runtime *rt;
	dis_runtime_options ro;
	dis_metrics *m;
	dis_query *q;
	dis_filter *f;
	dis_listener_config cfg;
	char err[256], *body;
	int handled = 0, status;
	double until, prev = -1;
	int64_t last_id = 0;
	uint16_t port;

	(void)state;
	if (!dt_have_cluster())
		skip();
	assert_int_equal(dis_query_new(s, &q), 0);
	assert_int_equal(dis_query_add_filter(q, &f), 0);
	assert_int_equal(
		dis_runtime_new(base, conninfo, s, &rt, err, sizeof(err)), 0);
	dis_runtime_options_init(&ro);
	ro.reconnect_max_ms = 500;
	ro.heartbeat_ms = 500;
	assert_int_equal(dis_runtime_set_options(rt, &ro), 0);
	dis_listener_config_init(&cfg);
	cfg.poll_interval_ms = 100;
	assert_int_equal(dis_runtime_add_listener(rt, "hits \"quoted\"", q,
						  handler, &handled, &cfg),
			 0);
	assert_int_equal(
		dis_metrics_new(base, "127.0.0.1", 0, &m, err, sizeof(err)), 0);
	port = dis_metrics_port(m);
	assert_true(port > 0);
	assert_int_equal(dis_metrics_add_runtime(m, rt), 0);
	assert_int_equal(dis_runtime_start(rt), 0);

	for (int i = 0; i < 25; i++) {
		dis_event *ev;

		assert_int_equal(dis_event_new(s, "Hit", &ev), 0);
		assert_int_equal(dis_event_set_string(ev, "key", "k"), 0);
		assert_int_equal(
			dis_store_append(st, &ev, 1, NULL, NULL, &last_id), 0);
		dis_event_free(ev);
	}
	until = now_s() + 10;
	while (handled < 25 && now_s() < until)
		loop_for(base, 10);
	loop_for(base, 200);

	status = http(base, port, "/metrics", false, &body);
	assert_int_equal(status, 200);
	if (getenv("DIS_TEST_VERBOSE"))
		fprintf(stderr, "%s", body);
	assert_non_null(strstr(body, "# TYPE dis_listener_events_handled_total"
				     " counter"));
	assert_non_null(strstr(body, "# TYPE dis_listener_batch_duration_"
				     "seconds histogram"));
	assert_true(metric(body, "dis_listener_events_handled_total{listener="
				 "\"hits \\\"quoted\\\"\"}") == 25);
	assert_true(metric(body, "dis_listener_lag_events{listener=\"hits "
				 "\\\"quoted\\\"\"}") == 0);
	assert_true(metric(body, "dis_listener_lag_seconds{listener=\"hits "
				 "\\\"quoted\\\"\"}") == 0);
	assert_true(metric(body, "dis_listener_errors_total{listener=\"hits "
				 "\\\"quoted\\\"\"}") == 0);
	assert_true(metric(body, "dis_listener_retries_total{listener=\"hits "
				 "\\\"quoted\\\"\"}") == 0);
	assert_true(metric(body, "dis_listener_dead_letters_total{listener="
				 "\"hits \\\"quoted\\\"\"}") == 0);
	assert_true(metric(body, "dis_listener_up{listener=\"hits "
				 "\\\"quoted\\\"\"}") == 1);
	/* The newest event handled, not the checkpoint's id (0 at a
	 * barrier). */
	assert_true(metric(body, "dis_listener_last_event_id{listener=\"hits "
				 "\\\"quoted\\\"\"}") == (double)last_id);
	assert_true(metric(body, "dis_listener_state{listener=\"hits "
				 "\\\"quoted\\\"\",state=\"running\"}") == 1);
	/* The histogram's buckets are cumulative up to +Inf = count. */
	for (size_t i = 0; i + 1 < DIS_LISTENER_HIST_BUCKETS; i++) {
		char name[200];
		double v;

		snprintf(name, sizeof(name),
			 "dis_listener_batch_duration_seconds_bucket{listener="
			 "\"hits \\\"quoted\\\"\",le=\"%g\"}",
			 dis_listener_hist_bound(i));
		v = metric(body, name);
		assert_true(v >= prev);
		prev = v;
	}
	assert_true(metric(body,
			   "dis_listener_batch_duration_seconds_bucket{"
			   "listener=\"hits \\\"quoted\\\"\",le=\"+Inf\"}") ==
		    metric(body, "dis_listener_batch_duration_seconds_count{"
				 "listener=\"hits \\\"quoted\\\"\"}"));
	assert_true(metric(body, "dis_listener_batch_duration_seconds_count{"
				 "listener=\"hits \\\"quoted\\\"\"}") >= 1);
	free(body);

	if (access("/usr/bin/curl", X_OK) == 0) {
		status = http(base, port, "/metrics", true, &body);
		assert_int_equal(status, 200);
		assert_true(metric(body,
				   "dis_listener_events_handled_total{"
				   "listener=\"hits \\\"quoted\\\"\"}") == 25);
		free(body);
	}
	assert_int_equal(http(base, port, "/nope", false, NULL), 404);
	status = http(base, port, "/health", false, &body);
	assert_int_equal(status, 200);
	assert_string_equal(body, "ok\n");
	free(body);

	/* The database goes away: 503. */
	dis_store_free(st);
	st = NULL;
	assert_int_equal(dt_pg_ctl("stop -m fast -w"), 0);
	until = now_s() + 20;
	do {
		loop_for(base, 100);
		status = http(base, port, "/health", false, &body);
		if (status != 503)
			free(body);
	} while (status != 503 && now_s() < until);
	assert_int_equal(status, 503);
	print_message("health while stopped: %s", body);
	assert_non_null(strstr(body, "not connected"));
	free(body);
	status = http(base, port, "/metrics", false, &body);
	assert_int_equal(status, 200);
	assert_true(metric(body, "dis_listener_up{listener=\"hits "
				 "\\\"quoted\\\"\"}") == 0);
	free(body);

	/* And comes back: 200 again. */
	assert_int_equal(dt_pg_ctl("start -w -t 60"), 0);
	until = now_s() + 30;
	do {
		loop_for(base, 100);
		status = http(base, port, "/health", false, NULL);
	} while (status != 200 && now_s() < until);
	assert_int_equal(status, 200);
	status = http(base, port, "/metrics", false, &body);
	assert_true(metric(body, "dis_listener_reconnects_total{listener="
				 "\"hits \\\"quoted\\\"\"}") >= 1);
	free(body);

	dis_metrics_remove_runtime(m, rt);
	dis_metrics_free(m);
	dis_runtime_free(rt);
	event_base_free(base);
	dis_query_free(q);
	dis_schema_free(s);
	free(conninfo);
}

static void test_bad_address(void **state)
{
	struct event_base *base = event_base_new();
	dis_metrics *m = NULL;
	char err[256];

	(void)state;
	assert_int_equal(dis_metrics_new(base, "256.0.0.1", 0, &m, err,
					 sizeof(err)),
			 DIS_EIO);
	assert_null(m);
	assert_int_equal(dis_metrics_new(NULL, "127.0.0.1", 0, &m, err,
					 sizeof(err)),
			 DIS_EINVAL);
	dis_metrics_free(NULL);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_address),
		cmocka_unit_test(test_metrics_and_health),
	};

	return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
