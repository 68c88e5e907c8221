/*
 * The courses demo (examples/demo.sh runs it against a throwaway cluster):
 * installs the read model, starts the listeners (the read model and the
 * policy that unsubscribes the students of a closed course) on an event
 * loop of its own with /metrics and /health on 127.0.0.1, makes
 * subscription decisions from several threads, closes a course, waits for
 * the listeners, and prints the read model, the listeners' lag and a few
 * metrics. Connects through the PG* environment (or argv[1], a conninfo).
 */
#include "courses.h"

#include <event2/event.h>
#include <event2/thread.h>

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define THREADS 4
#define ATTEMPTS 12
#define NSTUDENTS 10

static const struct {
	const char *id;
	const char *name;
	int32_t seats;
} COURSES[] = {
	{"algebra", "Linear algebra", 4},
	{"poetry", "Modern poetry", 3},
	{"sailing", "Sailing for beginners", 5},
};
#define NCOURSES (sizeof(COURSES) / sizeof(*COURSES))

static const char *conninfo;
static dis_schema *schema;

static void die(const char *what, const char *why)
{
	fprintf(stderr, "courses_demo: %s: %s\n", what, why);
	exit(1);
}

/* Makes a decision on `m`; returns its outcome. */
static int decide(dis_maker *m, int rc, dis_decision *d, const char *what)
{
	if (rc)
		die(what, dis_strerror(rc));
	rc = dis_maker_make(m, d);
	if (rc && rc != DIS_EDOMAIN)
		die(what, dis_decision_errmsg(d));
	dis_decision_free(d);
	return rc;
}

/* ---- the listeners, on a loop thread ---- */

typedef struct loop {
	struct event_base *base;
	dis_runtime *rt;
	dis_metrics *metrics;
	pthread_t thread;
} loop;

static void log_cb(void *arg, dis_log_level level, const char *msg)
{
	(void)arg;
	if (level <= DIS_LOG_WARN)
		fprintf(stderr, "courses_demo: %s\n", msg);
}

static void *loop_main(void *arg)
{
	loop *l = arg;

	event_base_dispatch(l->base);
	return NULL;
}

static void on_stopped(void *arg, dis_runtime *rt, int status)
{
	loop *l = arg;

	(void)rt;
	(void)status;
	event_base_loopbreak(l->base);
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
	loop *l = arg;

	(void)fd;
	(void)what;
	if (dis_runtime_stop(l->rt, on_stopped, l))
		event_base_loopbreak(l->base);
}

/* ---- deciding from several threads ---- */

typedef struct worker {
	int index;
	pthread_t thread;
	int subscribed, unsubscribed, refused[16];
	dis_maker_stats stats;
} worker;

static void *worker_main(void *arg)
{
	worker *w = arg;
	dis_store *store;
	dis_maker *m;
	char err[512];
	unsigned seed = (unsigned)w->index * 7919u + 1;

	if (dis_store_open(conninfo, schema, &store, err, sizeof(err)))
		die("connecting", err);
	if (dis_maker_new(store, &m))
		die("maker", "out of memory");
	for (int i = 0; i < ATTEMPTS; i++) {
		char student[16];
		const char *course = COURSES[rand_r(&seed) % NCOURSES].id;
		bool unsub = rand_r(&seed) % 4 == 0;
		dis_decision *d = NULL;
		int rc;

		snprintf(student, sizeof(student), "s%02d",
			 rand_r(&seed) % NSTUDENTS);
		rc = unsub ? courses_unsubscribe(schema, student, course, &d)
			   : courses_subscribe(schema, student, course, &d);
		if (rc)
			die("decision", dis_strerror(rc));
		rc = dis_maker_make(m, d);
		if (rc == DIS_EDOMAIN) {
			int code = dis_decision_domain_code(d);

			w->refused[code > 0 && code < 16 ? code : 0]++;
		} else if (rc) {
			die(unsub ? "unsubscribe" : "subscribe",
			    dis_decision_errmsg(d));
		}
		dis_decision_free(d);
		if (rc)
			continue;
		if (unsub)
			w->unsubscribed++;
		else
			w->subscribed++;
	}
	dis_maker_get_stats(m, &w->stats);
	dis_maker_free(m);
	dis_store_free(store);
	return NULL;
}

/* ---- reading /metrics over HTTP ---- */

static char *http_get(uint16_t port, const char *path)
{
	struct sockaddr_in sa = {0};
	char req[128], *body = NULL;
	size_t len = 0, cap = 0;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ssize_t n;

	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	snprintf(req, sizeof(req),
		 "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close"
		 "\r\n\r\n",
		 path);
	if (write(fd, req, strlen(req)) < 0) {
		close(fd);
		return NULL;
	}
	for (;;) {
		if (len + 4096 + 1 > cap) {
			char *p = realloc(body, cap = (cap ? cap * 2 : 8192));

			if (!p)
				break;
			body = p;
		}
		n = read(fd, body + len, cap - len - 1);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (body)
		body[len] = '\0';
	return body;
}

/* Prints the metric lines of `text` that start with one of `names`. */
static void print_metrics(const char *text, const char *const *names)
{
	const char *line = strstr(text, "\r\n\r\n");

	for (line = line ? line + 4 : text; *line;) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);

		for (const char *const *n = names; *n; n++)
			if (!strncmp(line, *n, strlen(*n))) {
				printf("  %.*s\n", (int)len, line);
				break;
			}
		if (!end)
			break;
		line = end + 1;
	}
}

/* ---- printing ---- */

static void print_read_model(PGconn *conn)
{
	PGresult *res = PQexec(conn, "SELECT course_id, name, seats,"
				     " available_seats, closed FROM courses"
				     " ORDER BY course_id");

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		die("reading the read model", PQresultErrorMessage(res));
	printf("\nRead model (table courses, kept by listener \"%s\"):\n",
	       COURSES_PROJECTION);
	printf("  %-10s %-24s %6s %10s %7s\n", "course_id", "name", "seats",
	       "available", "closed");
	for (int i = 0; i < PQntuples(res); i++)
		printf("  %-10s %-24s %6s %10s %7s\n", PQgetvalue(res, i, 0),
		       PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
		       PQgetvalue(res, i, 3),
		       PQgetvalue(res, i, 4)[0] == 't' ? "yes" : "no");
	PQclear(res);
}

static void print_listeners(dis_store *store)
{
	dis_listener_info *info;
	size_t n;
	char ck[48], head[48];

	if (dis_listener_list(store, &info, &n))
		die("listing the listeners", dis_store_errmsg(store));
	printf("\nListeners (as the database records them):\n");
	printf("  %-30s %-14s %-14s %7s %9s %s\n", "id", "checkpoint", "head",
	       "behind", "lag (s)", "state");
	for (size_t i = 0; i < n; i++)
		printf("  %-30s %-14s %-14s %7" PRId64 " %9.3f %s\n",
		       info[i].id,
		       dis_position_format(info[i].checkpoint, ck, sizeof(ck)),
		       dis_position_format(info[i].head, head, sizeof(head)),
		       info[i].events_behind, info[i].seconds_behind,
		       info[i].state);
	dis_free(info);
}

int main(int argc, char **argv)
{
	static const char *const shown[] = {
		"dis_listener_events_handled_total",
		"dis_listener_lag_events",
		"dis_listener_lag_seconds",
		"dis_listener_batch_duration_seconds_count",
		"dis_listener_up",
		NULL,
	};
	char err[1024];
	dis_store *store;
	dis_maker *m;
	dis_projection *proj;
	dis_policy *policy;
	courses_model *model;
	loop l = {0};
	worker w[THREADS];
	struct timeval now = {0, 0};
	char *text;
	int closed_students = 0, rc;

	if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
		bool help = !strcmp(argv[1], "--help") ||
			    !strcmp(argv[1], "-h");

		fprintf(help ? stdout : stderr,
			"usage: courses_demo [CONNINFO]\n"
			"Runs the courses demo against CONNINFO (a libpq "
			"conninfo or URI; default: the PG* environment).\n");
		return help ? 0 : 1;
	}
	conninfo = argc > 1 ? argv[1] : NULL;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (evthread_use_pthreads())
		die("libevent", "no thread support");
	if (courses_schema(&schema, err, sizeof(err)))
		die("schema", err);
	if (dis_store_open(conninfo, schema, &store, err, sizeof(err)))
		die("connecting", err);
	if (dis_store_migrate(store))
		die("migrating", dis_store_errmsg(store));
	if (courses_projection(schema, &proj, err, sizeof(err)))
		die("projection", err);
	if (dis_projection_install(proj, store))
		die("installing the read model", dis_projection_errmsg(proj));
	if (courses_policy(schema, &policy))
		die("policy", "cannot create it");
	printf("Courses demo: event store migrated, read model \"%s\" "
	       "installed.\n",
	       COURSES_PROJECTION);

	/* The listeners and the metrics endpoint, on their own thread. */
	l.base = event_base_new();
	if (!l.base)
		die("libevent", "cannot create a loop");
	if (dis_runtime_new(l.base, conninfo, schema, &l.rt, err, sizeof(err)))
		die("runtime", err);
	dis_runtime_set_log(l.rt, log_cb, NULL, DIS_LOG_WARN);
	if (dis_projection_attach(proj, l.rt, NULL) ||
	    dis_policy_attach(policy, l.rt, NULL))
		die("listeners", dis_runtime_errmsg(l.rt));
	if (dis_metrics_new(l.base, "127.0.0.1", 0, &l.metrics, err,
			    sizeof(err)))
		die("metrics", err);
	dis_metrics_add_runtime(l.metrics, l.rt);
	if (dis_runtime_start(l.rt) ||
	    pthread_create(&l.thread, NULL, loop_main, &l))
		die("starting the listeners", dis_runtime_errmsg(l.rt));
	printf("Listeners \"%s\" and \"%s\" running; metrics on "
	       "http://127.0.0.1:%u/metrics\n",
	       COURSES_PROJECTION, COURSES_POLICY,
	       (unsigned)dis_metrics_port(l.metrics));

	/* Courses and students. */
	if (dis_maker_new(store, &m))
		die("maker", "out of memory");
	for (size_t i = 0; i < NCOURSES; i++) {
		dis_decision *d = NULL;

		rc = courses_create(schema, COURSES[i].id, COURSES[i].name,
				    COURSES[i].seats, &d);
		decide(m, rc, d, "create course");
	}
	for (int i = 0; i < NSTUDENTS; i++) {
		char id[16], name[32];
		dis_decision *d = NULL;

		snprintf(id, sizeof(id), "s%02d", i);
		snprintf(name, sizeof(name), "Student %d", i);
		rc = courses_register(schema, id, name, &d);
		decide(m, rc, d, "register student");
	}
	printf("Created %zu courses and registered %d students.\n", NCOURSES,
	       NSTUDENTS);

	/* Concurrent decisions: seats and the two-course limit hold. */
	printf("%d threads make %d subscription decisions each...\n", THREADS,
	       ATTEMPTS);
	memset(w, 0, sizeof(w));
	for (int i = 0; i < THREADS; i++) {
		w[i].index = i;
		pthread_create(&w[i].thread, NULL, worker_main, &w[i]);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(w[i].thread, NULL);
		printf("  thread %d: %2d subscribed, %d unsubscribed; refused: "
		       "%d course full, %d two courses already, %d already "
		       "attending, %d not attending; conflicts retried: %" PRIu64
		       "\n",
		       i, w[i].subscribed, w[i].unsubscribed,
		       w[i].refused[COURSES_ENO_SEATS],
		       w[i].refused[COURSES_ETOO_MANY_COURSES],
		       w[i].refused[COURSES_EALREADY_SUBSCRIBED],
		       w[i].refused[COURSES_ENOT_SUBSCRIBED],
		       w[i].stats.retries);
	}

	/* Closing a course: the policy unsubscribes its students. */
	{
		dis_decision *d = NULL;

		if (courses_close(schema, "algebra", &d))
			die("close", "cannot build the decision");
		decide(m, 0, d, "close course");
		printf("Closed course \"algebra\"; the policy \"%s\" "
		       "unsubscribes its students.\n",
		       COURSES_POLICY);
	}
	if (courses_wait_caught_up(store, 30))
		die("waiting", "the listeners did not catch up in 30 s");

	print_read_model(dis_store_conn(store));
	print_listeners(store);
	text = http_get(dis_metrics_port(l.metrics), "/metrics");
	if (text) {
		printf("\nFrom GET /metrics:\n");
		print_metrics(text, shown);
		free(text);
	}
	text = http_get(dis_metrics_port(l.metrics), "/health");
	if (text) {
		const char *body = strstr(text, "\r\n\r\n");
		size_t status = strcspn(text, "\r\n");

		printf("From GET /health: %.*s, %s", (int)status, text,
		       body ? body + 4 : "\n");
		free(text);
	}

	if (courses_replay(store, &model, err, sizeof(err)))
		die("replay", err);
	rc = courses_compare_table(model, dis_store_conn(store),
				   COURSES_PROJECTION, err, sizeof(err));
	for (size_t i = 0; i < model->ncourses; i++)
		if (!strcmp(model->courses[i].course_id, "algebra"))
			closed_students = model->courses[i].subscribed;
	printf("\nChecks: read model equals a replay of the log: %s; "
	       "seats never negative: %s; at most %d courses per student: "
	       "%s; students left in the closed course: %d.\n",
	       rc ? err : "yes", model->negative_seats ? "NO" : "yes",
	       COURSES_MAX_PER_STUDENT, model->too_many ? "NO" : "yes",
	       closed_students);
	if (rc || model->negative_seats || model->too_many ||
	    model->other_violations || closed_students)
		die("checks", "failed");
	courses_model_free(model);

	/* Graceful stop, from the loop's thread. */
	event_base_once(l.base, -1, EV_TIMEOUT, stop_cb, &l, &now);
	pthread_join(l.thread, NULL);
	{
		dis_maker_stats ps;

		dis_policy_get_stats(policy, &ps);
		printf("The policy made %" PRIu64
		       " decision(s), appending %" PRIu64
		       " unsubscription(s); listeners stopped.\n",
		       ps.decisions, ps.events_appended);
	}
	dis_metrics_free(l.metrics);
	dis_runtime_free(l.rt);
	event_base_free(l.base);
	dis_maker_free(m);
	dis_policy_free(policy);
	dis_projection_free(proj);
	dis_store_free(store);
	dis_schema_free(schema);
	return 0;
}
