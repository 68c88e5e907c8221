/*
 * The courses load program: many threads subscribe students to courses
 * (and unsubscribe them) for a fixed time while a listener keeps the read
 * model current and the policy unsubscribes the students of the courses
 * that close meanwhile; optionally `disctl rebuild courses` runs halfway.
 * Then it waits for the listeners to catch up and replays the log: no
 * subscription ever took a seat that was not free, no student ever held
 * more than two courses, every other rule held, no closed course keeps
 * students, and the read model equals the replay. Exit 0 when all hold.
 *
 *   courses_load [--db CONNINFO] [--seconds N] [--threads N] [--courses N]
 *                [--seats N] [--students N] [--closes N] [--rebuild DISCTL]
 */
#include "courses.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct config {
	const char *db;
	double seconds;
	int threads;
	int courses;
	int seats;
	int students;
	int closes;
	const char *disctl;
} config;

typedef struct writer {
	const config *cfg;
	const dis_schema *schema;
	int index;
	pthread_t thread;
	double deadline;
	uint64_t decisions, ok, domain, failed;
	uint64_t by_code[16];
	dis_maker_stats stats;
	char error[512];
} writer;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void course_name(char *buf, size_t len, int i)
{
	snprintf(buf, len, "course-%03d", i);
}

static void student_name(char *buf, size_t len, int i)
{
	snprintf(buf, len, "student-%04d", i);
}

/* Makes one decision; counts its outcome. Returns non-zero on a failure
 * that is not the domain's. */
static int make(writer *w, dis_maker *m, dis_decision *d)
{
	int rc = dis_maker_make(m, d);

	w->decisions++;
	if (rc == 0) {
		w->ok++;
	} else if (rc == DIS_EDOMAIN) {
		int code = dis_decision_domain_code(d);

		w->domain++;
		if (code >= 0 && code < 16)
			w->by_code[code]++;
		rc = 0;
	} else if (rc == DIS_ECONFLICT) {
		/* Retried and still conflicting: reported, not fatal. */
		w->failed++;
		rc = 0;
	} else {
		snprintf(w->error, sizeof(w->error), "%s: %s",
			 dis_decision_name(d), dis_decision_errmsg(d));
	}
	dis_decision_free(d);
	return rc;
}

static void *writer_main(void *arg)
{
	writer *w = arg;
	const config *cfg = w->cfg;
	dis_store *store = NULL;
	dis_maker *m = NULL;
	uint64_t seed = 0x9E3779B97F4A7C15ULL * (uint64_t)(w->index + 1);
	char err[400];
	int closed = 0, rc;
	double t0 = now_s();

	if (dis_store_open(cfg->db, w->schema, &store, err, sizeof(err)) ||
	    dis_maker_new(store, &m)) {
		snprintf(w->error, sizeof(w->error), "connect: %s", err);
		dis_store_free(store);
		return NULL;
	}
	dis_maker_set_retry(m, 10, 200, 20000);
	while (now_s() < w->deadline) {
		char course[32], student[32];
		dis_decision *d = NULL;
		uint64_t r = next_rand(&seed);

		course_name(course, sizeof(course),
			    (int)(r % (uint64_t)cfg->courses));
		student_name(student, sizeof(student),
			     (int)((r >> 20) % (uint64_t)cfg->students));
		/* Writer 0 closes a course now and then. */
		if (w->index == 0 && closed < cfg->closes &&
		    now_s() - t0 >=
			    cfg->seconds * (closed + 1) / (cfg->closes + 1)) {
			course_name(course, sizeof(course), closed++);
			rc = courses_close(w->schema, course, &d);
		} else if ((r >> 40) % 100 < 2) {
			char name[48];

			snprintf(name, sizeof(name), "renamed %" PRIu64,
				 (r >> 8) % 1000);
			rc = courses_rename(w->schema, course, name, &d);
		} else if ((r >> 40) % 100 < 72) {
			rc = courses_subscribe(w->schema, student, course, &d);
		} else {
			rc = courses_unsubscribe(w->schema, student, course,
						 &d);
		}
		if (rc) {
			snprintf(w->error, sizeof(w->error),
				 "building a decision: %s", dis_strerror(rc));
			break;
		}
		if (make(w, m, d))
			break;
	}
	dis_maker_get_stats(m, &w->stats);
	dis_maker_free(m);
	dis_store_free(store);
	return NULL;
}

/* ---- the listeners ---- */

typedef struct listeners {
	dis_runner *runner;
	pthread_t thread;
	int rc;
} listeners;

static void *listeners_main(void *arg)
{
	listeners *l = arg;

	l->rc = dis_runner_run(l->runner);
	return NULL;
}

static void log_warnings(void *arg, dis_log_level level, const char *msg)
{
	(void)arg;
	if (level <= DIS_LOG_WARN)
		fprintf(stderr, "courses_load: %s\n", msg);
}

/* ---- the rebuild ---- */

typedef struct rebuild {
	const config *cfg;
	const char *schema_path;
	double at;
	pthread_t thread;
	int status;
	double seconds;
} rebuild;

static void *rebuild_main(void *arg)
{
	rebuild *r = arg;
	char *argv[10];
	int argc = 0, st;
	pid_t pid;
	double t0;

	while (now_s() < r->at)
		usleep(10000);
	argv[argc++] = (char *)r->cfg->disctl;
	if (r->cfg->db) {
		argv[argc++] = (char *)"--db";
		argv[argc++] = (char *)r->cfg->db;
	}
	argv[argc++] = (char *)"rebuild";
	argv[argc++] = (char *)"--schema";
	argv[argc++] = (char *)r->schema_path;
	argv[argc++] = (char *)COURSES_PROJECTION;
	argv[argc] = NULL;
	printf("running disctl rebuild %s during the load\n",
	       COURSES_PROJECTION);
	fflush(stdout);
	t0 = now_s();
	pid = fork();
	if (pid == 0) {
		execv(argv[0], argv);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		r->status = -1;
	else
		r->status = WIFEXITED(st) ? WEXITSTATUS(st)
					  : 128 + WTERMSIG(st);
	r->seconds = now_s() - t0;
	return NULL;
}

/* ---- setup and checks ---- */

static int setup(const config *cfg, const dis_schema *schema, dis_store *store)
{
	dis_maker *m;
	int rc = dis_maker_new(store, &m);

	for (int i = 0; !rc && i < cfg->courses; i++) {
		char id[32], name[48];
		dis_decision *d;

		course_name(id, sizeof(id), i);
		snprintf(name, sizeof(name), "Course %d", i);
		if (!(rc = courses_create(schema, id, name, cfg->seats, &d))) {
			rc = dis_maker_make(m, d);
			dis_decision_free(d);
		}
	}
	for (int i = 0; !rc && i < cfg->students; i++) {
		char id[32];
		dis_decision *d;

		student_name(id, sizeof(id), i);
		if (!(rc = courses_register(schema, id, "A student", &d))) {
			rc = dis_maker_make(m, d);
			dis_decision_free(d);
		}
	}
	if (rc)
		fprintf(stderr, "setup: %s\n", dis_maker_errmsg(m));
	dis_maker_free(m);
	return rc;
}

static int write_schema(char *path)
{
	int fd = mkstemp(path);
	size_t len = strlen(courses_avsc);

	if (fd < 0)
		return -1;
	if (write(fd, courses_avsc, len) != (ssize_t)len) {
		close(fd);
		return -1;
	}
	return close(fd);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: courses_load [--db CONNINFO] [--seconds N] "
		"[--threads N] [--courses N]\n"
		"                    [--seats N] [--students N] [--closes N] "
		"[--rebuild DISCTL]\n");
}

static int parse(int argc, char **argv, config *cfg)
{
	static const struct option opts[] = {
		{"db", required_argument, NULL, 'd'},
		{"seconds", required_argument, NULL, 't'},
		{"threads", required_argument, NULL, 'n'},
		{"courses", required_argument, NULL, 'c'},
		{"seats", required_argument, NULL, 's'},
		{"students", required_argument, NULL, 'u'},
		{"closes", required_argument, NULL, 'x'},
		{"rebuild", required_argument, NULL, 'r'},
		{NULL, 0, NULL, 0},
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'd': cfg->db = optarg; break;
		case 't': cfg->seconds = atof(optarg); break;
		case 'n': cfg->threads = atoi(optarg); break;
		case 'c': cfg->courses = atoi(optarg); break;
		case 's': cfg->seats = atoi(optarg); break;
		case 'u': cfg->students = atoi(optarg); break;
		case 'x': cfg->closes = atoi(optarg); break;
		case 'r': cfg->disctl = optarg; break;
		default: usage(); return -1;
		}
	}
	if (optind != argc || cfg->seconds <= 0 || cfg->threads < 1 ||
	    cfg->threads > 256 || cfg->courses < 1 || cfg->seats < 1 ||
	    cfg->students < 1 || cfg->closes < 0 ||
	    cfg->closes > cfg->courses) {
		usage();
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	config cfg = {.seconds = 10,
		      .threads = 8,
		      .courses = 20,
		      .seats = 15,
		      .students = 150,
		      .closes = 3};
	char err[1024] = "", schema_path[] = "/tmp/courses-avsc-XXXXXX";
	dis_schema *schema = NULL;
	dis_store *store = NULL;
	dis_projection *proj = NULL;
	dis_policy *policy = NULL;
	listeners l = {0};
	rebuild rb = {0};
	writer *ws = NULL;
	courses_model *model = NULL;
	dis_maker_stats total = {0};
	uint64_t decisions = 0, ok = 0, domain = 0, failed = 0;
	uint64_t by_code[16] = {0};
	double t0, elapsed;
	int rc, bad = 0;

	if (parse(argc, argv, &cfg))
		return 2;
	if ((rc = courses_schema(&schema, err, sizeof(err))) ||
	    (rc = dis_store_open(cfg.db, schema, &store, err, sizeof(err)))) {
		fprintf(stderr, "courses_load: %s\n", err);
		return 1;
	}
	if ((rc = dis_store_migrate(store))) {
		fprintf(stderr, "courses_load: %s\n", dis_store_errmsg(store));
		return 1;
	}
	if ((rc = courses_projection(schema, &proj, err, sizeof(err))) ||
	    (rc = dis_projection_install(proj, store)) ||
	    (rc = courses_policy(schema, &policy))) {
		fprintf(stderr, "courses_load: %s\n",
			proj ? dis_projection_errmsg(proj) : err);
		return 1;
	}
	if (setup(&cfg, schema, store))
		return 1;
	printf("courses_load: %d threads for %.0f s on %d courses of %d seats, "
	       "%d students, %d closes%s\n",
	       cfg.threads, cfg.seconds, cfg.courses, cfg.seats, cfg.students,
	       cfg.closes, cfg.disctl ? ", a rebuild halfway" : "");
	fflush(stdout);

	/* The listeners: the read model and the policy. */
	if ((rc = dis_runner_new(cfg.db, schema, &l.runner, err,
				 sizeof(err)))) {
		fprintf(stderr, "courses_load: %s\n", err);
		return 1;
	}
	dis_runner_set_signals(l.runner, false);
	dis_runtime_set_log(dis_runner_runtime(l.runner), log_warnings, NULL,
			    DIS_LOG_WARN);
	if (dis_projection_attach(proj, dis_runner_runtime(l.runner), NULL) ||
	    dis_policy_attach(policy, dis_runner_runtime(l.runner), NULL) ||
	    pthread_create(&l.thread, NULL, listeners_main, &l)) {
		fprintf(stderr, "courses_load: cannot start the listeners\n");
		return 1;
	}

	t0 = now_s();
	if (cfg.disctl) {
		if (write_schema(schema_path)) {
			fprintf(stderr, "courses_load: %s: %s\n", schema_path,
				strerror(errno));
			return 1;
		}
		rb.cfg = &cfg;
		rb.schema_path = schema_path;
		rb.at = t0 + cfg.seconds / 2;
		pthread_create(&rb.thread, NULL, rebuild_main, &rb);
	}
	ws = calloc((size_t)cfg.threads, sizeof(*ws));
	for (int i = 0; ws && i < cfg.threads; i++) {
		ws[i].cfg = &cfg;
		ws[i].schema = schema;
		ws[i].index = i;
		ws[i].deadline = t0 + cfg.seconds;
		pthread_create(&ws[i].thread, NULL, writer_main, &ws[i]);
	}
	for (int i = 0; ws && i < cfg.threads; i++) {
		pthread_join(ws[i].thread, NULL);
		decisions += ws[i].decisions;
		ok += ws[i].ok;
		domain += ws[i].domain;
		failed += ws[i].failed;
		total.conflicts += ws[i].stats.conflicts;
		total.retries += ws[i].stats.retries;
		for (int k = 0; k < 16; k++)
			by_code[k] += ws[i].by_code[k];
		if (ws[i].error[0]) {
			fprintf(stderr, "courses_load: writer %d: %s\n", i,
				ws[i].error);
			bad = 1;
		}
	}
	elapsed = now_s() - t0;
	if (cfg.disctl) {
		pthread_join(rb.thread, NULL);
		unlink(schema_path);
		printf("rebuild: disctl exited %d after %.2f s\n", rb.status,
		       rb.seconds);
		if (rb.status != 0)
			bad = 1;
	}
	printf("decisions: %" PRIu64 " in %.1f s (%.0f/s): %" PRIu64
	       " applied, %" PRIu64 " refused by the rules, %" PRIu64
	       " gave up on conflicts\n",
	       decisions, elapsed, (double)decisions / elapsed, ok, domain,
	       failed);
	printf("refusals: no seat %" PRIu64 ", too many courses %" PRIu64
	       ", already subscribed %" PRIu64 ", not subscribed %" PRIu64
	       ", course closed %" PRIu64 "\n",
	       by_code[COURSES_ENO_SEATS], by_code[COURSES_ETOO_MANY_COURSES],
	       by_code[COURSES_EALREADY_SUBSCRIBED],
	       by_code[COURSES_ENOT_SUBSCRIBED],
	       by_code[COURSES_ECOURSE_CLOSED]);
	printf("conflicts: %" PRIu64 ", retries: %" PRIu64 "\n",
	       total.conflicts, total.retries);

	t0 = now_s();
	if (courses_wait_caught_up(store, 120)) {
		fprintf(stderr, "courses_load: the listeners did not catch "
				"up within 120 s\n");
		bad = 1;
	}
	printf("listeners caught up %.2f s after the writers stopped\n",
	       now_s() - t0);
	dis_runner_stop(l.runner);
	pthread_join(l.thread, NULL);
	if (l.rc) {
		fprintf(stderr, "courses_load: listeners ended with %s\n",
			dis_strerror(l.rc));
		bad = 1;
	}

	if ((rc = courses_replay(store, &model, err, sizeof(err)))) {
		fprintf(stderr, "courses_load: %s\n", err);
		return 1;
	}
	printf("replay: %" PRIu64 " events, %" PRIu64 " subscriptions, %" PRIu64
	       " unsubscriptions, at most %d courses per student\n",
	       model->events, model->subscriptions, model->unsubscriptions,
	       model->max_held);
	printf("check: seats never negative: %s (%" PRIu64 ")\n",
	       model->negative_seats ? "NO" : "yes", model->negative_seats);
	printf("check: no student above %d courses: %s (%" PRIu64 ")\n",
	       COURSES_MAX_PER_STUDENT, model->too_many ? "NO" : "yes",
	       model->too_many);
	printf("check: every other rule held: %s (%" PRIu64 ")\n",
	       model->other_violations ? "NO" : "yes", model->other_violations);
	if (model->first_violation[0])
		printf("  first violation: %s\n", model->first_violation);
	printf("check: closed courses without students: %s (%zu left)\n",
	       courses_model_closed_with_students(model) ? "NO" : "yes",
	       courses_model_closed_with_students(model));
	rc = courses_compare_table(model, dis_store_conn(store),
				   COURSES_PROJECTION, err, sizeof(err));
	printf("check: read model equals the replay: %s%s%s\n",
	       rc ? "NO: " : "yes", rc ? err : "", "");
	if (model->negative_seats || model->too_many ||
	    model->other_violations ||
	    courses_model_closed_with_students(model) || rc)
		bad = 1;
	printf("%s\n", bad ? "FAILED" : "OK");

	courses_model_free(model);
	free(ws);
	dis_runner_free(l.runner);
	dis_policy_free(policy);
	dis_projection_free(proj);
	dis_store_free(store);
	dis_schema_free(schema);
	return bad;
}
