/*
 * Policies.
 *
 * 1. The courses policy: closing a course unsubscribes its students.
 * 2. A conflict inside the batch transaction is retried by the maker and
 *    the retry sees the event that caused it.
 * 3. The policy's emitted events and the checkpoint commit atomically: a
 *    child process running a policy (one Pong per Ping, with no guard
 *    against duplicates) is killed with SIGKILL in the middle of batches,
 *    again and again, and restarted; at the end there is exactly one Pong
 *    per Ping.
 */
#include "testutil.h"
#include "../../examples/courses/courses.h"

#include <event2/event.h>

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long long count(PGconn *c, const char *sql)
{
	char *v = dt_scalar(c, sql);
	long long n = v ? atoll(v) : -1;

	free(v);
	return n;
}

static void run_for(struct event_base *base, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

/* Runs the loop until `sql` counts `want` (or 20 s pass). */
static bool run_until_count(struct event_base *base, PGconn *c, const char *sql,
			    long long want)
{
	double until = now_s() + 20;

	while (now_s() < until) {
		if (count(c, sql) == want)
			return true;
		run_for(base, 20);
	}
	return false;
}

static void stopped(void *arg, dis_runtime *rt, int status)
{
	(void)rt;
	(void)status;
	*(bool *)arg = true;
}

static void stop_runtime(struct event_base *base, dis_runtime *rt)
{
	bool done = false;

	assert_int_equal(dis_runtime_stop(rt, stopped, &done), 0);
	while (!done)
		run_for(base, 10);
}

static void make(dis_maker *m, int rc, dis_decision *d)
{
	assert_int_equal(rc, 0);
	rc = dis_maker_make(m, d);
	if (rc)
		fail_msg("%s: %s", dis_decision_name(d),
			 dis_decision_errmsg(d));
	dis_decision_free(d);
}

/* ---- 1 ---- */

static void test_closing_a_course_unsubscribes(void **state)
{
	char *conninfo = dt_fresh_db();
	char err[256];
	dis_schema *s;
	dis_store *st;
	dis_maker *m;
	dis_policy *p;
	dis_runtime *rt;
	struct event_base *base = event_base_new();
	PGconn *c = dt_connect(conninfo);
	dis_decision *d = NULL;
	dis_maker_stats ps;
	int rc;

	(void)state;
	assert_int_equal(courses_schema(&s, err, sizeof(err)), 0);
	st = dt_store(conninfo, s);
	assert_int_equal(dis_maker_new(st, &m), 0);
	assert_int_equal(courses_policy(s, &p), 0);
	assert_int_equal(
		dis_runtime_new(base, conninfo, s, &rt, err, sizeof(err)), 0);
	assert_int_equal(dis_policy_attach(p, rt, NULL), 0);
	assert_int_equal(dis_runtime_start(rt), 0);

	rc = courses_create(s, "c1", "One", 10, &d);
	make(m, rc, d);
	rc = courses_create(s, "c2", "Two", 10, &d);
	make(m, rc, d);
	for (int i = 0; i < 5; i++) {
		char id[8];

		snprintf(id, sizeof(id), "s%d", i);
		rc = courses_register(s, id, "x", &d);
		make(m, rc, d);
		rc = courses_subscribe(s, id, "c1", &d);
		make(m, rc, d);
		rc = courses_subscribe(s, id, "c2", &d);
		make(m, rc, d);
	}
	rc = courses_unsubscribe(s, "s0", "c1", &d);
	make(m, rc, d);
	rc = courses_close(s, "c1", &d);
	make(m, rc, d);
	/* s1..s4 are unsubscribed from c1 by the policy; c2 keeps all. */
	assert_true(run_until_count(base, c,
				    "SELECT count(*) FROM event"
				    " WHERE event_type ="
				    " 'StudentUnsubscribed'",
				    5));
	run_for(base, 200);
	assert_int_equal(count(c, "SELECT count(*) FROM event WHERE event_type"
				  " = 'StudentUnsubscribed' AND course_id ="
				  " 'c2'"),
			 0);
	/* Closing again is refused, and nothing more is emitted. */
	rc = courses_close(s, "c1", &d);
	assert_int_equal(rc, 0);
	assert_int_equal(dis_maker_make(m, d), DIS_EDOMAIN);
	dis_decision_free(d);
	stop_runtime(base, rt);
	dis_policy_get_stats(p, &ps);
	assert_int_equal(ps.decisions, 1);
	assert_int_equal(ps.events_appended, 4);

	dis_runtime_free(rt);
	event_base_free(base);
	dis_policy_free(p);
	dis_maker_free(m);
	dis_store_free(st);
	dis_schema_free(s);
	PQfinish(c);
	free(conninfo);
}

/* ---- 2 and 3: pings and pongs ---- */

static const char *const PING_SCHEMA =
	"[{\"type\":\"record\",\"name\":\"Ping\",\"fields\":["
	"  {\"name\":\"n\",\"type\":\"long\",\"disintegrate.id\":true}]},"
	" {\"type\":\"record\",\"name\":\"Pong\",\"fields\":["
	"  {\"name\":\"n\",\"type\":\"long\",\"disintegrate.id\":true}]}]";

static dis_query *ping_query(const dis_schema *s)
{
	dis_query *q;
	dis_filter *f;

	dis_query_new(s, &q);
	dis_query_add_filter(q, &f);
	dis_filter_type(f, "Ping");
	return q;
}

static int emit_pong(dis_ctx *ctx, const void *const *states,
		     const void *params)
{
	dis_event *ev;
	int rc = dis_ctx_emit(ctx, "Pong", &ev);

	(void)states;
	return rc ? rc : dis_event_set_long(ev, "n", *(const int64_t *)params);
}

/* 2: a guarded pong whose first load is overtaken by another writer. */

struct seen {
	int64_t n;
	bool ponged;
};

static int interfere; /* appends a Pong from elsewhere during this many loads */

static int seen_query(const void *state, dis_query *q)
{
	const struct seen *s = state;
	dis_filter *f;
	int rc = dis_query_add_filter(q, &f);

	if (!rc)
		rc = dis_filter_where_long(f, "n", s->n);
	return rc;
}

static dis_store *other_store;

static int guarded_mutate(void *state, const dis_event *ev)
{
	struct seen *s = state;

	if (!strcmp(dis_event_type(ev), "Pong"))
		s->ponged = true;
	if (interfere > 0 && !strcmp(dis_event_type(ev), "Ping")) {
		dis_event *pong;

		interfere--;
		if (dis_event_new(dis_store_schema(other_store), "Pong",
				  &pong) ||
		    dis_event_set_long(pong, "n", s->n) ||
		    dis_store_append(other_store, &pong, 1, NULL, NULL, NULL))
			return DIS_EPG;
		dis_event_free(pong);
	}
	return 0;
}

static const dis_state_def guarded_def = {
	.name = "Guarded",
	.size = sizeof(struct seen),
	.query = seen_query,
	.mutate = guarded_mutate,
};

static int guarded_process(dis_ctx *ctx, const void *const *states,
			   const void *params)
{
	const struct seen *s = states[0];

	if (s->ponged)
		return dis_ctx_fail(ctx, 1, "already ponged");
	return emit_pong(ctx, states, params);
}

static int guarded_policy(void *arg, dis_maker *m, const dis_event *ev)
{
	const dis_schema *s = arg;
	struct seen init = {0};
	dis_decision *d;
	int rc;

	dis_event_get_long(ev, "n", &init.n);
	if ((rc = dis_decision_new(s, "GuardedPong", guarded_process, &init.n,
				   sizeof(init.n), &d)))
		return rc;
	rc = dis_decision_add_state(d, &guarded_def, &init);
	if (!rc)
		rc = dis_maker_make(m, d);
	dis_decision_free(d);
	return rc == DIS_EDOMAIN ? 0 : rc;
}

static void test_conflict_retried_in_the_batch(void **state)
{
	char *conninfo = dt_fresh_db();
	char err[256];
	dis_schema *s = dt_schema(PING_SCHEMA);
	dis_store *st = dt_store(conninfo, s);
	dis_query *q = ping_query(s);
	dis_policy *p;
	dis_runtime *rt;
	struct event_base *base = event_base_new();
	PGconn *c = dt_connect(conninfo);
	dis_maker_stats ps;
	dis_event *ping;

	(void)state;
	assert_int_equal(
		dis_store_open(conninfo, s, &other_store, err, sizeof(err)), 0);
	assert_int_equal(dis_policy_new("guarded", q, guarded_policy, s, &p),
			 0);
	assert_int_equal(dis_policy_set_retry(p, 3, 100, 1000), 0);
	assert_int_equal(
		dis_runtime_new(base, conninfo, s, &rt, err, sizeof(err)), 0);
	assert_int_equal(dis_policy_attach(p, rt, NULL), 0);
	interfere = 1;
	assert_int_equal(dis_event_new(s, "Ping", &ping), 0);
	assert_int_equal(dis_event_set_long(ping, "n", 7), 0);
	assert_int_equal(dis_store_append(st, &ping, 1, NULL, NULL, NULL), 0);
	dis_event_free(ping);
	assert_int_equal(dis_runtime_start(rt), 0);
	for (double until = now_s() + 20; now_s() < until;) {
		dis_policy_get_stats(p, &ps);
		if (ps.decisions > 0)
			break;
		run_for(base, 20);
	}
	stop_runtime(base, rt);
	dis_policy_get_stats(p, &ps);
	print_message("decisions %" PRIu64 ", conflicts %" PRIu64
		      ", retries %" PRIu64 ", appended %" PRIu64 "\n",
		      ps.decisions, ps.conflicts, ps.retries,
		      ps.events_appended);
	/* The first append conflicted with the Pong appended meanwhile; the
	 * retry, still in the batch transaction, saw it and emitted none. */
	assert_int_equal(ps.conflicts, 1);
	assert_int_equal(ps.retries, 1);
	assert_int_equal(ps.events_appended, 0);
	assert_int_equal(ps.domain_errors, 1);
	assert_int_equal(count(c, "SELECT count(*) FROM event"
				  " WHERE event_type = 'Pong'"),
			 1);
	dis_runtime_free(rt);
	event_base_free(base);
	dis_policy_free(p);
	dis_query_free(q);
	dis_store_free(other_store);
	dis_store_free(st);
	dis_schema_free(s);
	PQfinish(c);
	free(conninfo);
}

/* 3: an unguarded pong per ping, killed mid-batch. */

static int slow_pong_policy(void *arg, dis_maker *m, const dis_event *ev)
{
	const dis_schema *s = arg;
	int64_t n = 0;
	dis_decision *d;
	int rc;

	dis_event_get_long(ev, "n", &n);
	/* No state and no guard: a batch applied twice would pong twice. */
	if ((rc = dis_decision_new(s, "Pong", emit_pong, &n, sizeof(n), &d)))
		return rc;
	rc = dis_maker_make(m, d);
	dis_decision_free(d);
	usleep(3000);
	return rc;
}

static int pong_child(const char *conninfo, const dis_schema *s)
{
	dis_runner *r;
	dis_policy *p;
	dis_query *q = ping_query(s);
	dis_listener_config cfg;
	dis_runtime_options o;
	char err[256];
	int rc;

	if (dis_runner_new(conninfo, s, &r, err, sizeof(err)))
		return 2;
	dis_runtime_options_init(&o);
	o.application_name = "policy-child";
	dis_runtime_set_options(dis_runner_runtime(r), &o);
	if (dis_policy_new("pong", q, slow_pong_policy, (void *)s, &p))
		return 3;
	dis_listener_config_init(&cfg);
	cfg.poll_interval_ms = 50;
	cfg.fetch_size = 25;
	if (dis_policy_attach(p, dis_runner_runtime(r), &cfg))
		return 3;
	rc = dis_runner_run(r);
	dis_runner_free(r);
	dis_policy_free(p);
	dis_query_free(q);
	return rc == 0 ? 0 : 4;
}

static pid_t spawn_child(const char *conninfo, const dis_schema *s)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(pong_child(conninfo, s));
	return pid;
}

static int wait_child(pid_t pid)
{
	int st;

	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void append_pings(dis_store *st, const dis_schema *s, int from, int n)
{
	for (int i = from; i < from + n;) {
		dis_event *evs[10];
		int k = 0;

		for (; k < 10 && i < from + n; k++, i++) {
			assert_int_equal(dis_event_new(s, "Ping", &evs[k]), 0);
			assert_int_equal(dis_event_set_long(evs[k], "n", i), 0);
		}
		assert_int_equal(dis_store_append(st, evs, (size_t)k, NULL,
						  NULL, NULL),
				 0);
		for (int j = 0; j < k; j++)
			dis_event_free(evs[j]);
	}
}

static void test_kill_mid_batch(void **state)
{
	char *conninfo = dt_fresh_db();
	dis_schema *s = dt_schema(PING_SCHEMA);
	dis_store *st = dt_store(conninfo, s);
	PGconn *c = dt_connect(conninfo);
	int pings = 0, kills = 0, mid_batch = 0;
	pid_t pid;
	double until;

	(void)state;
	for (int round = 0; round < 10; round++) {
		double give_up = now_s() + 10;
		bool in_batch = false;

		append_pings(st, s, pings, 60);
		pings += 60;
		pid = spawn_child(conninfo, s);
		/* Wait until the child is inside a batch that has written
		 * (its transaction has an id), then kill it. */
		while (now_s() < give_up && !in_batch) {
			in_batch = count(c, "SELECT count(*) FROM"
					    " pg_stat_activity WHERE"
					    " application_name = 'policy-child'"
					    " AND backend_xid IS NOT NULL") > 0;
			if (!in_batch)
				usleep(1000);
		}
		usleep((useconds_t)(round * 7000));
		kill(pid, SIGKILL);
		assert_int_equal(wait_child(pid), 128 + SIGKILL);
		kills++;
		mid_batch += in_batch;
	}
	/* A last child finishes the job. */
	pid = spawn_child(conninfo, s);
	until = now_s() + 60;
	while (now_s() < until &&
	       count(c, "SELECT count(*) FROM event_listener WHERE id = 'pong'"
			" AND (checkpoint_tx, checkpoint_id) >= (SELECT tx,"
			" event_id FROM event WHERE event_type = 'Ping'"
			" ORDER BY tx DESC, event_id DESC LIMIT 1)") != 1)
		usleep(50000);
	kill(pid, SIGTERM);
	assert_int_equal(wait_child(pid), 0);
	print_message("%d pings, %d kills (%d inside a writing batch), %lld "
		      "pongs\n",
		      pings, kills, mid_batch,
		      count(c, "SELECT count(*) FROM event"
			       " WHERE event_type = 'Pong'"));
	assert_true(mid_batch >= 5);
	/* Exactly one Pong per Ping: none missing, none twice. */
	assert_int_equal(count(c, "SELECT count(*) FROM event"
				  " WHERE event_type = 'Pong'"),
			 pings);
	assert_int_equal(count(c, "SELECT count(*) FROM (SELECT n FROM event"
				  " GROUP BY n HAVING count(*) FILTER (WHERE"
				  " event_type = 'Pong') <> 1 OR count(*)"
				  " FILTER (WHERE event_type = 'Ping') <> 1)"
				  " x"),
			 0);
	assert_int_equal(count(c, "SELECT count(*) FROM event_dead_letter"), 0);
	dis_store_free(st);
	dis_schema_free(s);
	PQfinish(c);
	free(conninfo);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_closing_a_course_unsubscribes),
		cmocka_unit_test(test_conflict_retried_in_the_batch),
		cmocka_unit_test(test_kill_mid_batch),
	};

	return cmocka_run_group_tests_name("policy", tests, NULL, NULL);
}
