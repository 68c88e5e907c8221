/*
 * Listener runtime benchmarks (not pass/fail), each in a fresh database:
 *
 *   latency  commit-to-handler latency, p50/p99/max, of a caught-up
 *            listener (notifier on, 60 s poll) while another connection
 *            appends one event per transaction at about RATE/s;
 *   catchup  catch-up throughput over N events (default 1,000,000) with a
 *            no-op handler and with a handler writing one read-model row
 *            per event in the batch transaction, next to the raw keyset
 *            SELECT rate of the same rows in the same run (raw and no-op
 *            in five turns, the best of each), each with this process's
 *            CPU time per row (the client's share; the rest of the wall
 *            time is the server's and waiting); the process RSS after 100k,
 *            N and 2N events of the last no-op runtime. DIS_BENCH_FETCH
 *            sets the batch size of both (default 1000). A turn runs the
 *            raw read on a new connection and on the benchmark's
 *            long-lived one, then the no-op listener in a new runtime
 *            (its first catch-up: new connections) and, reset to the
 *            start, again in that runtime (its connections kept: a running
 *            service that fell behind); each listener figure is set
 *            against the raw read in the same state (see raw_turn).
 *
 *   bench-listener [latency|catchup|all] [N] [RATE]
 *
 * Prints a table and `bench=NAME value=V unit=U baseline=B ratio=R` lines.
 */
#include "../pg/test_listener_util.h"
#include "core-internal.h"

#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

static long rss_kb(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f)
		return 0;
	if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
		rss = 0;
	fclose(f);
	return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

/* CPU seconds of this process (all threads). */
static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double pct(const double *sorted, size_t n, double p)
{
	size_t i = (size_t)ceil(p / 100.0 * (double)n);

	if (i > 0)
		i--;
	if (i >= n)
		i = n - 1;
	return sorted[i];
}

static void line(const char *name, double value, const char *unit,
		 double baseline)
{
	printf("bench=%s value=%.3f unit=%s baseline=%.3f ratio=%.3f\n", name,
	       value, unit, baseline, baseline > 0 ? value / baseline : 0);
	fflush(stdout);
}

static struct event_base *
new_runtime(const char *conninfo, const dis_schema *schema, dis_runtime **rt)
{
	struct event_base *base = event_base_new();
	char err[256];

	if (!base ||
	    dis_runtime_new(base, conninfo, schema, rt, err, sizeof(err))) {
		fprintf(stderr, "runtime: %s\n", err);
		exit(1);
	}
	dis_runtime_set_log(*rt, tl_log, NULL, DIS_LOG_DEBUG);
	return base;
}

/* ---- latency ---- */

typedef struct lat {
	const char *conninfo;
	const dis_schema *schema;
	int n;
	int rate;
	double *sent;      /* before the append */
	double *committed; /* after the append returned */
	double *handled;   /* in the handler */
	double *raw;       /* a plain libpq LISTEN client got the NOTIFY */
	volatile int appended;
	volatile int raw_seen;
	volatile int raw_ready;
	volatile int seen;
	volatile int go;
} lat;

static int lat_handler(void *arg, dis_batch *b, const dis_event *ev)
{
	lat *l = arg;
	int64_t n = -1;

	(void)b;
	if (dis_event_get_long(ev, "n", &n) == 0 && n >= 0 && n < l->n) {
		l->handled[n] = tl_now();
		__atomic_add_fetch(&l->seen, 1, __ATOMIC_SEQ_CST);
	}
	return 0;
}

static void *lat_appender(void *p)
{
	lat *l = p;
	dis_store *st;
	char err[256];
	double period = 1.0 / l->rate, next;

	if (dis_store_open(l->conninfo, l->schema, &st, err, sizeof(err))) {
		fprintf(stderr, "appender: %s\n", err);
		exit(1);
	}
	while (!__atomic_load_n(&l->go, __ATOMIC_SEQ_CST))
		usleep(1000);
	next = tl_now();
	for (int i = 0; i < l->n; i++) {
		dis_event *ev;

		next += period;
		dis_event_new(l->schema, "Other", &ev);
		dis_event_set_long(ev, "n", i);
		l->sent[i] = tl_now();
		if (dis_store_append(st, &ev, 1, NULL, NULL, NULL)) {
			fprintf(stderr, "append: %s\n", dis_store_errmsg(st));
			exit(1);
		}
		l->committed[i] = tl_now();
		dis_event_free(ev);
		__atomic_store_n(&l->appended, i + 1, __ATOMIC_SEQ_CST);
		while (tl_now() < next)
			usleep((useconds_t)((next - tl_now()) * 1e6) + 1);
	}
	dis_store_free(st);
	return NULL;
}

/*
 * The yardstick: a plain blocking libpq client LISTENing on the same
 * channel; the k-th notification is the k-th append (one per append).
 */
static void *lat_raw(void *p)
{
	lat *l = p;
	PGconn *c = PQconnectdb(l->conninfo);
	PGresult *r = PQexec(c, "LISTEN "
				"new_events");
	double end;

	PQclear(r);
	__atomic_store_n(&l->raw_ready, 1, __ATOMIC_SEQ_CST);
	end = tl_now() + l->n / (double)l->rate + 30;
	while (l->raw_seen < l->n && tl_now() < end) {
		struct pollfd pfd = {PQsocket(c), POLLIN, 0};
		PGnotify *nt;

		if (poll(&pfd, 1, 100) <= 0)
			continue;
		PQconsumeInput(c);
		while ((nt = PQnotifies(c)) != NULL) {
			if (l->raw_seen < l->n)
				l->raw[l->raw_seen++] = tl_now();
			PQfreemem(nt);
		}
	}
	PQfinish(c);
	return NULL;
}

static bool lat_done(void *arg)
{
	lat *l = arg;

	return __atomic_load_n(&l->seen, __ATOMIC_SEQ_CST) >= l->n;
}

static bool lat_ready(void *arg)
{
	dis_runtime *rt = arg;
	dis_listener_stats *st;
	size_t n;
	bool ok;

	if (!dis_runtime_notifier_connected(rt) ||
	    dis_runtime_stats(rt, &st, &n))
		return false;
	ok = n == 1 && st[0].batches > 0;
	dis_free(st);
	return ok;
}

static void bench_latency(int n, int rate)
{
	char *conninfo = dt_fresh_db();
	dis_schema *schema = dt_schema(TL_SCHEMA);
	dis_store *store = dt_store(conninfo, schema);
	const char *types[] = {"Other"};
	dis_query *q = tl_query_types(schema, types, 1);
	dis_listener_config cfg;
	dis_runtime *rt;
	struct event_base *base = new_runtime(conninfo, schema, &rt);
	lat l = {.conninfo = conninfo, .schema = schema, .n = n, .rate = rate};
	pthread_t t, traw;
	double *c2h, *s2h, *s2c, *c2r;
	int warm = n / 10, m = 0;

	l.sent = calloc((size_t)n, sizeof(double));
	l.committed = calloc((size_t)n, sizeof(double));
	l.handled = calloc((size_t)n, sizeof(double));
	l.raw = calloc((size_t)n, sizeof(double));
	c2h = calloc((size_t)n, sizeof(double));
	c2r = calloc((size_t)n, sizeof(double));
	s2h = calloc((size_t)n, sizeof(double));
	s2c = calloc((size_t)n, sizeof(double));
	dis_listener_config_init(&cfg);
	cfg.poll_interval_ms = 60000;
	cfg.notifier = true;
	dis_runtime_add_listener(rt, "latency", q, lat_handler, &l, &cfg);
	dis_runtime_start(rt);
	if (!tl_run_until(base, lat_ready, rt, 10000)) {
		fprintf(stderr, "latency: listener not ready\n");
		exit(1);
	}
	pthread_create(&traw, NULL, lat_raw, &l);
	while (!__atomic_load_n(&l.raw_ready, __ATOMIC_SEQ_CST))
		usleep(1000);
	pthread_create(&t, NULL, lat_appender, &l);
	__atomic_store_n(&l.go, 1, __ATOMIC_SEQ_CST);
	if (!tl_run_until(base, lat_done, &l, n * 1000 / rate + 30000))
		fprintf(stderr, "latency: only %d of %d events arrived\n",
			l.seen, n);
	pthread_join(t, NULL);
	pthread_join(traw, NULL);
	{
		dis_listener_stats *st;
		size_t k;

		dis_runtime_stats(rt, &st, &k);
		printf("latency: %" PRIu64 " batches for %" PRIu64
		       " events, batch mean %.3f ms max %.3f ms\n",
		       st[0].batches, st[0].events_handled,
		       st[0].batch_seconds_sum * 1000 / (double)st[0].batches,
		       st[0].batch_seconds_max * 1000);
		dis_free(st);
	}
	tl_stop_runtime(base, rt);
	for (int i = warm; i < n; i++) {
		if (!l.handled[i])
			continue;
		c2h[m] = fmax(0, l.handled[i] - l.committed[i]) * 1000;
		c2r[m] = fmax(0, l.raw[i] - l.committed[i]) * 1000;
		s2h[m] = (l.handled[i] - l.sent[i]) * 1000;
		s2c[m] = (l.committed[i] - l.sent[i]) * 1000;
		m++;
	}
	qsort(c2h, (size_t)m, sizeof(double), cmp_double);
	qsort(s2h, (size_t)m, sizeof(double), cmp_double);
	qsort(s2c, (size_t)m, sizeof(double), cmp_double);
	qsort(c2r, (size_t)m, sizeof(double), cmp_double);
	printf("latency: %d events at %d/s (first %d not counted)\n", n, rate,
	       warm);
	printf("  %-28s %8s %8s %8s %8s %8s\n", "ms", "p50", "p90", "p95",
	       "p99", "max");
	printf("  %-28s %8.3f %8.3f %8.3f %8.3f %8.3f\n", "commit -> handler",
	       pct(c2h, m, 50), pct(c2h, m, 90), pct(c2h, m, 95),
	       pct(c2h, m, 99), c2h[m - 1]);
	printf("  %-28s %8.3f %8.3f %8.3f %8.3f %8.3f\n",
	       "commit -> raw LISTEN client", pct(c2r, m, 50), pct(c2r, m, 90),
	       pct(c2r, m, 95), pct(c2r, m, 99), c2r[m - 1]);
	printf("  %-28s %8.3f %8.3f %8.3f %8.3f %8.3f\n",
	       "append start -> handler", pct(s2h, m, 50), pct(s2h, m, 90),
	       pct(s2h, m, 95), pct(s2h, m, 99), s2h[m - 1]);
	printf("  %-28s %8.3f %8.3f %8.3f %8.3f %8.3f\n",
	       "append start -> commit", pct(s2c, m, 50), pct(s2c, m, 90),
	       pct(s2c, m, 95), pct(s2c, m, 99), s2c[m - 1]);
	/* Baseline: the same notification seen by a raw libpq client. */
	line("listener_latency_p50", pct(c2h, m, 50), "ms", pct(c2r, m, 50));
	line("listener_latency_p99", pct(c2h, m, 99), "ms", pct(c2r, m, 99));
	dis_runtime_free(rt);
	event_base_free(base);
	dis_query_free(q);
	dis_store_free(store);
	dis_schema_free(schema);
	free(conninfo);
	free(l.sent);
	free(l.committed);
	free(l.handled);
	free(l.raw);
	free(c2r);
	free(c2h);
	free(s2h);
	free(s2c);
}

/* ---- catch-up ---- */

#define CATCHUP_ROUNDS 5

/* Fills the log with n valid events (the bytes of one encoded event),
 * 10,000 per transaction. */
static void fill(PGconn *c, dis_store *st, const dis_schema *s, long n)
{
	char sql[512];
	int64_t first = tl_append(st, tl_added(s, "c0", "p", 1));
	double t0 = tl_now();

	for (long done = 1; done < n;) {
		long k = n - done < 10000 ? n - done : 10000;

		snprintf(sql, sizeof(sql),
			 "INSERT INTO event (event_type, payload, cart_id, "
			 "product_id) SELECT 'ShoppingCartAdded', (SELECT "
			 "payload FROM event WHERE event_id = %" PRId64 "), "
			 "'c' || (g %% 100), 'p' FROM generate_series(1, %ld) "
			 "AS g",
			 first, k);
		dt_exec(c, sql);
		done += k;
	}
	dt_exec(c, "VACUUM ANALYZE event");
	printf("catch-up: %ld events written in %.1f s\n", n, tl_now() - t0);
}

/* Reads every row by keyset, fetch rows at a time, like the listener. */
static double raw_keyset(PGconn *c, long n, int fetch, double *cpu_us)
{
	char tx[24] = "0", id[24] = "0", lim[16];
	const char *v[3] = {tx, id, lim};
	long rows = 0;
	double t0 = tl_now(), c0 = cpu_now();

	snprintf(lim, sizeof(lim), "%d", fetch);
	for (;;) {
		PGresult *r = PQexecParams(
			c,
			"SELECT event_id, tx, event_type, payload FROM event "
			"WHERE (tx, event_id) > ($1::xid8, $2::bigint) AND "
			"event_type = ANY ('{ShoppingCartAdded,"
			"ShoppingCartRemoved}') ORDER BY tx, event_id LIMIT $3",
			3, NULL, v, NULL, NULL, 1);
		int k;

		if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			fprintf(stderr, "raw: %s", PQresultErrorMessage(r));
			exit(1);
		}
		k = PQntuples(r);
		if (k > 0) {
			const unsigned char *p;
			uint64_t a = 0, b = 0;

			p = (const unsigned char *)PQgetvalue(r, k - 1, 0);
			for (int i = 0; i < 8; i++)
				a = (a << 8) | p[i];
			p = (const unsigned char *)PQgetvalue(r, k - 1, 1);
			for (int i = 0; i < 8; i++)
				b = (b << 8) | p[i];
			snprintf(id, sizeof(id), "%" PRIu64, a);
			snprintf(tx, sizeof(tx), "%" PRIu64, b);
		}
		rows += k;
		PQclear(r);
		if (k < fetch)
			break;
	}
	if (rows != n)
		fprintf(stderr, "raw: read %ld rows, expected %ld\n", rows, n);
	*cpu_us = (cpu_now() - c0) * 1e6 / (double)(rows ? rows : 1);
	return (double)rows / (tl_now() - t0);
}

/*
 * One turn of the raw read, on a connection opened for it, timed from the
 * connect as the listener's first catch-up is timed from its start. A
 * server process's first pass over the table is slower than its next
 * ones: it maps each shared buffer it touches, and page faults are slow on
 * this kind of VM (a new backend's first read of the 1M events: 0.4-0.6 s
 * longer than its second, with 2,000-31,000 faults). A listener's first
 * catch-up pays that on its new connections, so its baseline is this
 * read; caught up again on the same connections, it is set against the
 * read on the long-lived connection.
 */
static double raw_turn(const char *conninfo, long n, int fetch, double *cpu_us)
{
	double t0 = tl_now();
	PGconn *fresh = dt_connect(conninfo);

	raw_keyset(fresh, n, fetch, cpu_us);
	PQfinish(fresh);
	return (double)n / (tl_now() - t0);
}

typedef struct catchup {
	long n;
	long seen;
	long rss[3]; /* kB: after 100k events, after n, at the end */
} catchup;

static void seen_one(catchup *c)
{
	if (++c->seen == 100000)
		c->rss[0] = rss_kb();
	if (c->seen == c->n)
		c->rss[1] = rss_kb();
}

enum { NOOP, PROJ_BLOCKING, PROJ_PIPELINED };

static int noop_handler(void *arg, dis_batch *b, const dis_event *ev)
{
	catchup *c = arg;

	(void)b;
	(void)ev;
	seen_one(c);
	return 0;
}

static int projection_handler(void *arg, dis_batch *b, const dis_event *ev)
{
	catchup *c = arg;
	const char *cart = "";
	int64_t qty = 0;
	char id[24], q[24];
	const char *v[3] = {id, NULL, q};
	int rc;

	dis_event_get_string(ev, "cart_id", &cart);
	dis_event_get_long(ev, "quantity", &qty);
	snprintf(id, sizeof(id), "%" PRId64, dis_event_id(ev));
	snprintf(q, sizeof(q), "%" PRId64, qty);
	v[1] = cart;
	/* (prepared once, as dis_batch_exec does, would save parsing) */
	rc = dt_batch_run(b,
			  "INSERT INTO rm (event_id, cart_id, quantity) "
			  "VALUES ($1::bigint, $2, $3::int)",
			  3, v);
	if (rc)
		return rc;
	seen_one(c);
	return 0;
}

/* The same row through dis_batch_exec: no round trip per event. */
static int pipelined_handler(void *arg, dis_batch *b, const dis_event *ev)
{
	catchup *c = arg;
	const char *cart = "";
	int64_t qty = 0;
	char id[24], q[24];
	const char *v[3] = {id, NULL, q};
	int rc;

	dis_event_get_string(ev, "cart_id", &cart);
	dis_event_get_long(ev, "quantity", &qty);
	snprintf(id, sizeof(id), "%" PRId64, dis_event_id(ev));
	snprintf(q, sizeof(q), "%" PRId64, qty);
	v[1] = cart;
	rc = dis_batch_exec(b,
			    "INSERT INTO rm2 (event_id, cart_id, quantity)"
			    " VALUES ($1::bigint, $2, $3::int)",
			    3, v, NULL, NULL);
	if (!rc)
		seen_one(c);
	return rc;
}

typedef struct committed {
	dis_runtime *rt;
	long n;
} committed;

static bool all_committed(void *arg)
{
	committed *c = arg;
	dis_listener_stats *st;
	size_t n;
	bool ok;

	if (dis_runtime_stats(c->rt, &st, &n))
		return false;
	ok = n == 1 && (long)st[0].events_handled >= c->n;
	dis_free(st);
	return ok;
}

/*
 * Catches up over the n events in a new runtime and returns its rate;
 * with `again`, then resets the listener to the start and catches up once
 * more on the same connections (*again: that rate).
 */
static double run_catchup(const char *conninfo, const dis_schema *schema,
			  const char *id, int kind, long n, int fetch,
			  long rss[3], double *batch_ms, double *cpu_us,
			  double *again)
{
	dis_query *q = tl_cart_query(schema);
	dis_listener_config cfg;
	dis_runtime *rt;
	struct event_base *base = new_runtime(conninfo, schema, &rt);
	catchup c = {n, 0, {0, 0, 0}};
	dis_handler_fn fn = kind == NOOP            ? noop_handler
			    : kind == PROJ_BLOCKING ? projection_handler
						    : pipelined_handler;
	committed w = {rt, n};
	dis_listener_stats *st;
	size_t k;
	double t0, c0, rate;

	dis_listener_config_init(&cfg);
	cfg.fetch_size = (uint32_t)fetch;
	cfg.poll_interval_ms = 60000;
	dis_runtime_add_listener(rt, id, q, fn, &c, &cfg);
	dis_query_free(q);
	t0 = tl_now();
	c0 = cpu_now();
	dis_runtime_start(rt);
	if (!tl_run_until(base, all_committed, &w, 600000))
		fprintf(stderr, "catch-up %s: timed out at %ld\n", id, c.seen);
	rate = (double)n / (tl_now() - t0);
	*cpu_us = (cpu_now() - c0) * 1e6 / (double)n;
	if (again) {
		/* The listener polls once a minute: the reset wakes it. */
		tl_reset rw = {.conninfo = conninfo,
			       .schema = schema,
			       .id = id,
			       .to = DIS_POSITION_START,
			       .notify = DIS__NOTIFY_CHANNEL};

		if (!tl_reset_running(base, &rw, 60000) || rw.rc) {
			fprintf(stderr, "catch-up %s: no reset\n", id);
			exit(1);
		}
		/* From the reset's commit on: opening the thread's store is
		 * not the listener's work. */
		t0 = rw.at;
		w.n = 2 * n;
		if (!tl_run_until(base, all_committed, &w, 600000))
			fprintf(stderr, "catch-up %s: timed out again\n", id);
		*again = (double)n / (tl_now() - t0);
	}
	c.rss[2] = rss_kb();
	memcpy(rss, c.rss, sizeof(c.rss));
	dis_runtime_stats(rt, &st, &k);
	*batch_ms = st[0].batches ? st[0].batch_seconds_sum * 1000 /
					    (double)st[0].batches
				  : 0;
	dis_free(st);
	tl_stop_runtime(base, rt);
	dis_runtime_free(rt);
	event_base_free(base);
	return rate;
}

static void bench_catchup(long n)
{
	char *conninfo = dt_fresh_db();
	dis_schema *schema = dt_schema(TL_SCHEMA);
	dis_store *store = dt_store(conninfo, schema);
	PGconn *c = dt_connect(conninfo);
	/* DIS_BENCH_FETCH: another batch size (both sides use it). */
	int fetch = getenv("DIS_BENCH_FETCH") ? atoi(getenv("DIS_BENCH_FETCH"))
					      : 1000;
	long rn[3] = {0}, rp[3] = {0}, rq[3] = {0}; /* RSS, see catchup */
	double raw, warm, noop, again, proj, pipe, noop_ms, proj_ms, pipe_ms;
	double raw_cpu = 0, warm_cpu = 0, noop_cpu = 0, proj_cpu = 0;
	double pipe_cpu = 0;
	bool skip;

	if (fetch < 1)
		fetch = 1000;
	dt_exec(c, "CREATE TABLE rm (event_id BIGINT PRIMARY KEY, "
		   "cart_id TEXT, quantity INT);"
		   "CREATE TABLE rm2 (event_id BIGINT PRIMARY KEY, "
		   "cart_id TEXT, quantity INT)");
	fill(c, store, schema, n);
	/*
	 * The raw read and the no-op listener in turns, the best of each:
	 * a change of the machine's load hits both alike. The RSS figures
	 * are the last run's (the same process after the others).
	 */
	raw = warm = noop = again = noop_ms = 0;
	for (int r = 0; r < CATCHUP_ROUNDS; r++) {
		char id[16];
		double x, ms, cpu, y = 0;

		x = raw_turn(conninfo, n, fetch, &cpu);
		if (x > raw) {
			raw = x;
			raw_cpu = cpu;
		}
		x = raw_keyset(c, n, fetch, &cpu);
		if (x > warm) {
			warm = x;
			warm_cpu = cpu;
		}
		snprintf(id, sizeof(id), "noop%d", r);
		x = run_catchup(conninfo, schema, id, NOOP, n, fetch, rn, &ms,
				&cpu, &y);
		if (x > noop) {
			noop = x;
			noop_ms = ms;
			noop_cpu = cpu;
		}
		if (y > again)
			again = y;
	}
	pipe = run_catchup(conninfo, schema, "pipelined", PROJ_PIPELINED, n,
			   fetch, rq, &pipe_ms, &pipe_cpu, NULL);
	/* DIS_BENCH_SKIP_PQEXEC=1 (tests/bench/run.sh): the blocking
	 * variant takes minutes over 1M events. */
	skip = getenv("DIS_BENCH_SKIP_PQEXEC") != NULL;
	proj = proj_ms = 0;
	if (!skip)
		proj = run_catchup(conninfo, schema, "projection",
				   PROJ_BLOCKING, n, fetch, rp, &proj_ms,
				   &proj_cpu, NULL);
	printf("catch-up over %ld events, fetch %d:\n", n, fetch);
	printf("  %-34s %12.0f rows/s (%.2f us CPU/row)\n",
	       "raw keyset SELECT, new connection", raw, raw_cpu);
	printf("  %-34s %12.0f rows/s (%.2f us CPU/row)\n",
	       "raw keyset SELECT, warm connection", warm, warm_cpu);
	printf("  %-34s %12.0f events/s (%.1f ms/batch, %.2f us CPU/event;"
	       " %.0f%% of the new connection's)\n",
	       "listener, no-op, first catch-up", noop, noop_ms, noop_cpu,
	       raw > 0 ? 100 * noop / raw : 0);
	printf("  %-34s %12.0f events/s (%.0f%% of the warm connection's)\n",
	       "listener, no-op, caught up again", again,
	       warm > 0 ? 100 * again / warm : 0);
	printf("  %-34s %12.0f events/s (%.1f ms/batch, %.2f us CPU/event)\n",
	       "listener, row per event, queued", pipe, pipe_ms, pipe_cpu);
	if (!skip)
		printf("  %-34s %12.0f events/s (%.1f ms/batch, %.2f us "
		       "CPU/event)\n",
		       "listener, row per event, PQexec", proj, proj_ms,
		       proj_cpu);
	printf("  %-34s %8ld kB after 100k, %ld kB after %ld, %ld kB after "
	       "%ld\n",
	       "RSS (no-op)", rn[0], rn[1], n, rn[2], 2 * n);
	printf("  %-34s %8ld kB after 100k, %ld kB after %ld\n",
	       "RSS (queued projection)", rq[0], rq[2], n);
	if (!skip)
		printf("  %-34s %8ld kB after 100k, %ld kB after %ld\n",
		       "RSS (PQexec projection)", rp[0], rp[2], n);
	line("listener_catchup_noop", again, "events/s", warm);
	line("listener_catchup_noop_first", noop, "events/s", raw);
	line("listener_catchup_projection", pipe, "events/s", warm);
	if (!skip)
		line("listener_catchup_projection_pqexec", proj, "events/s",
		     warm);
	line("listener_catchup_raw_keyset", warm, "rows/s", warm);
	line("listener_catchup_raw_keyset_new", raw, "rows/s", warm);
	line("listener_rss_end_vs_100k", (double)rn[2], "kB", (double)rn[0]);
	PQfinish(c);
	dis_store_free(store);
	dis_schema_free(schema);
	free(conninfo);
}

int main(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : "all";
	long n = argc > 2 ? atol(argv[2]) : 0;
	int rate = argc > 3 ? atoi(argv[3]) : 500;

	setvbuf(stdout, NULL, _IOLBF, 0);
	dt_require_pg();
	if (!strcmp(what, "latency") || !strcmp(what, "all"))
		bench_latency(n && strcmp(what, "all") ? (int)n : 5000, rate);
	if (!strcmp(what, "catchup") || !strcmp(what, "all"))
		bench_catchup(n && strcmp(what, "all") ? n : 1000000);
	return 0;
}
