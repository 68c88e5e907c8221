/*
 * Appends and decisions against raw PostgreSQL, in one database, the same
 * table, row shape and indexes (not pass/fail):
 *
 *   raw      single-row INSERT (prepared) of the same payload, one commit
 *            each: the baseline;
 *   append   dis_store_append of one event, validation query on a
 *            boundary no other connection touches;
 *   decide   dis_maker_make of a deposit: load the account's balance,
 *            process, append under the check (disjoint accounts, 8
 *            decisions per account: loads of 0..7 events);
 *            at 1, 4 and 16 connections. The three kinds run in short
 *            slices, interleaved and rotated over several rounds, so that
 *            the machine's load drifts hit each kind alike;
 *   hot      16 connections on 10 accounts (deposits and withdrawals):
 *            decisions/s, conflict rate, retries per decision;
 *   async    dis_async with 64 decisions in flight (disjoint accounts),
 *            against the synchronous 16-connection figure;
 *   ceiling  what a checked append could reach at best, as plain SQL on
 *            the same table, interleaved with the above: "check" is the
 *            insert under its validation check in one statement, without
 *            locks (not safe: the out-of-order case of DESIGN section 6
 *            slips through); "locked" adds the advisory locks, in one
 *            call of a plpgsql function (the one-round-trip append that
 *            DESIGN section 6 recommends) but without a notification;
 *            "load+locked" is a decision's SQL: the load (rows and
 *            snapshot, not decoded), then the locked call checked
 *            against the load's snapshot (accounts as for decide);
 *            "no notify" is the append's own pipeline as plain SQL
 *            (BEGIN, locks, insert under its check, COMMIT; one sync)
 *            without the notification that follows it;
 *   cost     one connection, one operation at a time: CPU per operation
 *            (of each kind above and each ceiling) of this process and
 *            of its server backend (from /proc/.../schedstat, immune to
 *            waiting), and the backend's wake-ups per operation.
 *
 *   bench-decision [--slice S] [--rounds R] [--only NAME[,NAME]]
 *
 * Prints a table and one `bench=NAME value=V unit=U baseline=B ratio=R`
 * line per figure.
 */
#include "balance.h"
#include "core-internal.h"
#include "testutil.h"

#include <disintegrate/async.h>
#include <event2/event.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static const char *const SCHEMA = "[" BALANCE_AVSC_TYPES "]";

#define MAXCONN 64
/*
 * Disjoint decisions: each account gets this many, so a load reads 0..7
 * events (3.5 on average) whatever the rate: the work per decision does
 * not grow with the throughput measured.
 */
#define DECISIONS_PER_ACCOUNT 8

static char *conninfo;
static dis_schema *schema;
static char *payload; /* one encoded Deposited event, as stored */
static int payload_len;
static atomic_int run_seq;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void line(const char *name, double value, const char *unit,
		 double baseline)
{
	printf("bench=%s value=%.3f unit=%s baseline=%.3f ratio=%.3f\n", name,
	       value, unit, baseline, baseline > 0 ? value / baseline : 0);
	fflush(stdout);
}

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "bench-decision: %s: %s\n", what, msg);
	exit(1);
}

/* ---- the account domain (tests/balance.h) ---- */

struct move {
	int64_t amount; /* > 0 deposit, < 0 withdrawal */
};

static int move_process(dis_ctx *ctx, const void *const *states,
			const void *params)
{
	const struct balance *b = states[0];
	const struct move *m = params;
	dis_event *ev;
	int rc;

	if (m->amount < 0 && b->amount + m->amount < 0)
		return dis_ctx_fail(ctx, 1, "insufficient funds");
	rc = dis_ctx_emit(ctx, m->amount < 0 ? "Withdrawn" : "Deposited", &ev);
	if (!rc)
		rc = dis_event_set_string(ev, "account_id", b->account);
	if (!rc)
		rc = dis_event_set_long(ev, "amount",
					m->amount < 0 ? -m->amount : m->amount);
	return rc;
}

/* A decision moving `amount` on account `id` (copied into the decision),
 * with the balance state `def`. */
static dis_decision *new_move(const char *id, int64_t amount,
			      const dis_state_def *def)
{
	struct move m = {amount};
	struct balance init = {0};
	dis_decision *d;

	if (dis_decision_new(schema, "Move", move_process, &m, sizeof(m), &d))
		die("decision", "out of memory");
	init.account = dis_decision_strdup(d, id);
	if (!init.account || dis_decision_add_state(d, def, &init))
		die("decision", dis_decision_errmsg(d));
	return d;
}

/* ---- synchronous workers ---- */

/* Sliced in rotation: RAW..CACHED, then the ceilings CHECK..PIPED;
 * HOT runs alone. */
enum kind {
	RAW,
	APPEND,
	DECIDE,
	CACHED,
	CHECK,
	LOCKED,
	LOADED,
	PIPED,
	HOT,
	NKINDS
};
static const char *const KIND_NAMES[] = {"raw",    "append", "decide",
					 "cached", "check",  "locked",
					 "loaded", "piped",  "hot"};
/* States the cached makers keep (per connection). */
#define CACHE_ENTRIES 256

/*
 * The ceilings' statements (see the top comment): the library's insert,
 * check and load for one event on an account, as the library's statements
 * read them (concat(event_type) and the account's index).
 */
#define CEILING_CHECK(more)                                                \
	"NOT EXISTS (SELECT 1 FROM event c WHERE "                         \
	"concat(c.event_type) = ANY('{Deposited,Withdrawn}'::text[]) AND " \
	"c.account_id = $3 AND " more                                      \
	"c.tx IS DISTINCT FROM pg_current_xact_id_if_assigned())"
#define CEILING_INSERT(check)                                              \
	"INSERT INTO event AS e (event_type, payload, account_id) SELECT " \
	"$1::text, $2::bytea, $3::text WHERE " check                       \
	" RETURNING e.event_id, e.tx"
#define CEILING_CHECK_SQL CEILING_INSERT(CEILING_CHECK(""))
/*
 * Locks ($4, exclusive where $5), then the insert under its check against
 * the load's snapshot $6 (none: any event of the account). Each statement
 * of a volatile plpgsql function takes a new snapshot: the check sees what
 * committed while the locks were awaited.
 */
#define CEILING_FUNCTION                                                   \
	"CREATE FUNCTION bench_locked_append(text, bytea, text, int8[], "  \
	"bool[], pg_snapshot) RETURNS TABLE (event_id bigint, tx xid8) "   \
	"LANGUAGE plpgsql AS $f$ BEGIN PERFORM CASE WHEN u.e THEN "        \
	"pg_advisory_xact_lock(u.k)::text ELSE "                           \
	"pg_advisory_xact_lock_shared(u.k)::text END FROM unnest($4, $5) " \
	"AS u(k, e); RETURN QUERY " CEILING_INSERT(CEILING_CHECK(          \
		"($6 IS NULL OR (c.tx >= pg_snapshot_xmin($6) AND NOT "    \
		"pg_visible_in_snapshot(c.tx, $6))) AND ")) "; END $f$"
#define CEILING_LOCKED_SQL                                           \
	"SELECT * FROM bench_locked_append($1, $2, $3, $4::int8[], " \
	"$5::bool[], $6::pg_snapshot)"
#define CEILING_LOAD_SQL                                                    \
	"SELECT pg_current_snapshot()::text, e.* FROM (SELECT 1) AS one "   \
	"LEFT JOIN LATERAL (SELECT event_id, tx, event_type, payload FROM " \
	"event WHERE ((concat(event_type) = ANY('{Deposited,Withdrawn}'::"  \
	"text[]) AND account_id = $1))) AS e ON true ORDER BY e.tx, "       \
	"e.event_id"

typedef struct worker {
	enum kind kind;
	int thread;
	int run;
	PGconn *raw;
	dis_store *store;
	dis_maker *maker;
	pthread_t th;
	double start; /* shared start time */
	double until;
	long done;
	long conflicts; /* appends refused, or the maker's conflicts */
	long retries;
	long gave_up;
	long domain;
	char error[512];
} worker;

static void prepare(PGconn *c, const char *name, const char *sql)
{
	PGresult *r = PQprepare(c, name, sql, 0, NULL);

	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		die("prepare", PQresultErrorMessage(r));
	PQclear(r);
}

static void worker_open(worker *w)
{
	if (w->kind == RAW || w->kind == CHECK || w->kind == LOCKED ||
	    w->kind == LOADED || w->kind == PIPED) {
		static const char *const sql[] = {
			[RAW] = "INSERT INTO event (event_type, payload, "
				"account_id) VALUES ($1, $2, $3)",
			[CHECK] = CEILING_CHECK_SQL,
			[LOCKED] = CEILING_LOCKED_SQL,
			[LOADED] = CEILING_LOCKED_SQL,
			[PIPED] = CEILING_CHECK_SQL};

		w->raw = PQconnectdb(conninfo);
		if (PQstatus(w->raw) != CONNECTION_OK)
			die("connect", PQerrorMessage(w->raw));
		prepare(w->raw, "op", sql[w->kind]);
		if (w->kind == LOADED)
			prepare(w->raw, "load", CEILING_LOAD_SQL);
		if (w->kind == PIPED) {
			prepare(w->raw, "begin",
				"BEGIN ISOLATION LEVEL READ COMMITTED");
			/* the append's own lock statement */
			prepare(w->raw, "locks", DIS__LOCK_KEYS_SQL);
			prepare(w->raw, "commit", "COMMIT");
		}
		return;
	}
	if (dis_store_open(conninfo, schema, &w->store, w->error,
			   sizeof(w->error)))
		die("connect", w->error);
	if (w->kind == DECIDE || w->kind == CACHED || w->kind == HOT) {
		if (dis_maker_new(w->store, &w->maker))
			die("maker", "out of memory");
		if (w->kind == CACHED &&
		    dis_maker_set_cache(w->maker, CACHE_ENTRIES))
			die("maker", "out of memory");
	}
}

static void worker_close(worker *w)
{
	dis_maker_free(w->maker);
	dis_store_free(w->store);
	if (w->raw)
		PQfinish(w->raw);
	w->maker = NULL;
	w->store = NULL;
	w->raw = NULL;
}

static uint64_t fnv1a(const char *s, uint64_t seed)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ seed;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	return h;
}

/* "no notify": BEGIN, locks, insert, COMMIT in one pipeline, one sync. */
static int op_piped(worker *w, const char *acct, const char *keys)
{
	const char *lock_vals[2] = {keys, "{t,t,f}"};
	const char *vals[3] = {"Deposited", payload, acct};
	int lens[3] = {0, payload_len, 0}, fmts[3] = {0, 1, 0};
	PGconn *c = w->raw;
	PGresult *r;
	int inserted = -1, rc = 0;

	if (!PQenterPipelineMode(c) ||
	    !PQsendQueryPrepared(c, "begin", 0, NULL, NULL, NULL, 0) ||
	    !PQsendQueryPrepared(c, "locks", 2, lock_vals, NULL, NULL, 0) ||
	    !PQsendQueryPrepared(c, "op", 3, vals, lens, fmts, 0) ||
	    !PQsendQueryPrepared(c, "commit", 0, NULL, NULL, NULL, 0) ||
	    !PQpipelineSync(c)) {
		snprintf(w->error, sizeof(w->error), "%s", PQerrorMessage(c));
		return -1;
	}
	/* Four statements, each a result then NULL, then the sync. */
	for (int i = 0; i < 4; i++) {
		while ((r = PQgetResult(c)) != NULL) {
			ExecStatusType st = PQresultStatus(r);

			if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK &&
			    !rc) {
				snprintf(w->error, sizeof(w->error), "%s",
					 PQresultErrorMessage(r));
				rc = -1;
			}
			if (i == 2)
				inserted = PQntuples(r);
			PQclear(r);
		}
	}
	r = PQgetResult(c);
	if (PQresultStatus(r) != PGRES_PIPELINE_SYNC && !rc) {
		snprintf(w->error, sizeof(w->error), "no pipeline sync");
		rc = -1;
	}
	PQclear(r);
	PQexitPipelineMode(c);
	if (!rc && inserted != 1) {
		snprintf(w->error, sizeof(w->error),
			 "a ceiling's check refused");
		rc = -1;
	}
	return rc;
}

static int op_fail(worker *w, PGresult *r, const char *what)
{
	snprintf(w->error, sizeof(w->error), "%s",
		 what ? what : PQresultErrorMessage(r));
	PQclear(r);
	return -1;
}

/*
 * The raw INSERT, or a ceiling's statements: "loaded" first loads the
 * account as a decision does (rows and snapshot, not decoded), then makes
 * the locked call against the load's snapshot. The locks are three keys
 * of the account, as the library takes for this append: exclusive on the
 * validation query's two, shared on the type's.
 */
static int op_raw(worker *w, const char *acct)
{
	char k[3][24], keys[80];
	const char *vals[6] = {"Deposited", payload,   acct,
			       keys,        "{t,t,f}", NULL};
	int lens[6] = {0, payload_len, 0, 0, 0, 0};
	int fmts[6] = {0, 1, 0, 0, 0, 0};
	PGresult *r, *loaded = NULL;

	/* The snapshot's text is as long as its in-progress list: it stays
	 * in the load's result until the call is made. */
	if (w->kind == LOADED) {
		loaded =
			PQexecPrepared(w->raw, "load", 1, &acct, NULL, NULL, 1);
		if (PQresultStatus(loaded) != PGRES_TUPLES_OK)
			return op_fail(w, loaded, NULL);
		if (PQntuples(loaded) < 1 || PQgetisnull(loaded, 0, 0))
			return op_fail(w, loaded, "load: no snapshot");
		vals[5] = PQgetvalue(loaded, 0, 0);
	}
	/* Keys only where locks are taken: not in the raw baseline's loop. */
	if (w->kind != RAW && w->kind != CHECK) {
		for (int i = 0; i < 3; i++)
			snprintf(k[i], sizeof(k[i]), "%" PRId64,
				 (int64_t)fnv1a(acct, (uint64_t)i));
		snprintf(keys, sizeof(keys), "{%s,%s,%s}", k[0], k[1], k[2]);
	}
	if (w->kind == PIPED)
		return op_piped(w, acct, keys);
	r = PQexecPrepared(w->raw, "op",
			   w->kind == RAW || w->kind == CHECK ? 3 : 6, vals,
			   lens, fmts, 0);
	PQclear(loaded);
	if (PQresultStatus(r) !=
	    (w->kind == RAW ? PGRES_COMMAND_OK : PGRES_TUPLES_OK))
		return op_fail(w, r, NULL);
	/* The accounts are disjoint: every check must pass. */
	if (w->kind != RAW && PQntuples(r) != 1)
		return op_fail(w, r, "a ceiling's check refused");
	PQclear(r);
	return 0;
}

static int op_append(worker *w, const char *acct)
{
	struct balance account = {acct, 0};
	dis_query *q;
	dis_event *ev;
	int rc;

	/* Validation: the account's events, as a decision on it reads. */
	dis_query_new(schema, &q);
	balance_query(&account, q);
	dis_event_new(schema, "Deposited", &ev);
	dis_event_set_string(ev, "account_id", acct);
	dis_event_set_long(ev, "amount", 10);
	rc = dis_store_append(w->store, &ev, 1, q, NULL, NULL);
	dis_event_free(ev);
	dis_query_free(q);
	if (rc == DIS_ECONFLICT) {
		w->conflicts++;
		return 0;
	}
	if (rc)
		snprintf(w->error, sizeof(w->error), "%s",
			 dis_store_errmsg(w->store));
	return rc;
}

static int op_decide(worker *w, const char *acct, int64_t amount)
{
	dis_decision *d = new_move(acct, amount,
				   w->kind == CACHED ? &balance_snap_state
						     : &balance_state);
	int rc = dis_maker_make(w->maker, d);

	if (rc == DIS_EDOMAIN) {
		w->domain++;
		rc = 0;
	} else if (rc == DIS_ECONFLICT) {
		rc = 0; /* counted by the maker's stats */
	} else if (rc) {
		snprintf(w->error, sizeof(w->error), "%s",
			 dis_decision_errmsg(d));
	}
	dis_decision_free(d);
	return rc;
}

static void *worker_main(void *arg)
{
	worker *w = arg;
	uint64_t rng = (uint64_t)w->thread * 0x9E3779B97F4A7C15ULL + 1;
	char acct[64];

	while (now_s() < w->start)
		usleep(200);
	while (now_s() < w->until) {
		int rc;

		switch (w->kind) {
		case RAW:
		case CHECK:
		case LOCKED:
		case PIPED:
			/* r, c, l, p: the kind's initial */
			snprintf(acct, sizeof(acct), "%c%d-%d-%ld",
				 KIND_NAMES[w->kind][0], w->run, w->thread,
				 w->done);
			rc = op_raw(w, acct);
			break;
		case LOADED:
			/* as decide: loads of 0..7 events */
			snprintf(acct, sizeof(acct), "o%d-%d-%ld", w->run,
				 w->thread, w->done / DECISIONS_PER_ACCOUNT);
			rc = op_raw(w, acct);
			break;
		case APPEND:
			snprintf(acct, sizeof(acct), "a%d-%d-%ld", w->run,
				 w->thread, w->done);
			rc = op_append(w, acct);
			break;
		case DECIDE:
		case CACHED:
			/* d, k */
			snprintf(acct, sizeof(acct), "%c%d-%d-%ld",
				 w->kind == DECIDE ? 'd' : 'k', w->run,
				 w->thread, w->done / DECISIONS_PER_ACCOUNT);
			rc = op_decide(w, acct, 10);
			break;
		default:
			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			snprintf(acct, sizeof(acct), "hot%d-%d", w->run,
				 (int)(rng % 10));
			rc = op_decide(w, acct, (rng >> 8) % 2 ? 10 : -5);
			break;
		}
		if (rc)
			break;
		w->done++;
	}
	if (w->maker) {
		dis_maker_stats st;

		dis_maker_get_stats(w->maker, &st);
		/* A cached state found stale counts too: on disjoint
		 * accounts nobody else wrote to it. */
		w->conflicts = (long)(st.conflicts + st.cache_stale);
		w->retries = (long)st.retries;
		w->gave_up = (long)st.gave_up;
	}
	return NULL;
}

typedef struct result {
	double ops;
	double seconds;
	long conflicts;
	long retries;
	long gave_up;
	long domain;
} result;

/* One slice: `conns` connections of `kind` for `seconds`. */
static void slice(enum kind kind, int conns, double seconds, result *res)
{
	worker w[MAXCONN];
	double start;
	int run = atomic_fetch_add(&run_seq, 1);

	memset(w, 0, sizeof(w));
	for (int i = 0; i < conns; i++) {
		w[i].kind = kind;
		w[i].thread = i;
		w[i].run = run;
		worker_open(&w[i]);
	}
	start = now_s() + 0.05;
	for (int i = 0; i < conns; i++) {
		w[i].start = start;
		w[i].until = start + seconds;
		pthread_create(&w[i].th, NULL, worker_main, &w[i]);
	}
	for (int i = 0; i < conns; i++) {
		pthread_join(w[i].th, NULL);
		if (w[i].error[0])
			die(KIND_NAMES[kind], w[i].error);
	}
	/* The slice lasts until its slowest worker's last operation. */
	res->seconds += now_s() - start;
	for (int i = 0; i < conns; i++) {
		res->ops += (double)w[i].done;
		res->conflicts += w[i].conflicts;
		res->retries += w[i].retries;
		res->gave_up += w[i].gave_up;
		res->domain += w[i].domain;
		worker_close(&w[i]);
	}
}

static double rate(const result *r)
{
	return r->seconds > 0 ? r->ops / r->seconds : 0;
}

/* ---- asynchronous ---- */

typedef struct async_run {
	dis_async *a;
	struct event_base *base;
	int run;
	long next;
	long ok;
	long conflicts;
	long domain;
	long errors;
	bool stop;
	char error[512];
	int inflight;
} async_run;

typedef struct async_slot {
	async_run *r;
	int idx;
	long n;
} async_slot;

static void async_submit(async_slot *s);

static void async_done(void *arg, dis_decision *d, int rc)
{
	async_slot *s = arg;
	async_run *r = s->r;

	if (rc == 0)
		r->ok++;
	else if (rc == DIS_ECONFLICT)
		r->conflicts++;
	else if (rc == DIS_EDOMAIN)
		r->domain++;
	else if (rc != DIS_ECANCELED) {
		r->errors++;
		snprintf(r->error, sizeof(r->error), "%s",
			 dis_decision_errmsg(d));
	}
	dis_decision_free(d);
	r->inflight--;
	if (!r->stop && rc != DIS_ECANCELED)
		async_submit(s);
}

static void async_submit(async_slot *s)
{
	async_run *r = s->r;
	char acct[64];
	dis_decision *d;

	snprintf(acct, sizeof(acct), "y%d-%d-%ld", r->run, s->idx,
		 s->n++ / DECISIONS_PER_ACCOUNT);
	d = new_move(acct, 10, &balance_state);
	if (dis_async_submit(r->a, d, async_done, s)) {
		dis_decision_free(d);
		return;
	}
	r->inflight++;
}

static void on_async_stop(evutil_socket_t fd, short what, void *arg)
{
	async_run *r = arg;

	(void)fd;
	(void)what;
	r->stop = true;
	event_base_loopbreak(r->base);
}

/* `inflight` decisions kept in flight for `seconds`. */
static double run_async(int inflight, unsigned conns, double seconds,
			dis_async_stats *stats)
{
	async_run r = {0};
	async_slot *slots = calloc((size_t)inflight, sizeof(*slots));
	dis_async_options o;
	char err[256];
	struct event *stop;
	struct timeval tv = {
		(time_t)seconds,
		(suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};
	double t0, el;

	r.base = event_base_new();
	r.run = atomic_fetch_add(&run_seq, 1);
	dis_async_options_init(&o);
	o.connections = conns;
	if (dis_async_new(r.base, conninfo, schema, &o, &r.a, err, sizeof(err)))
		die("dis_async_new", err);
	/* Warm up: connected and statements prepared. */
	for (int i = 0; i < inflight; i++) {
		slots[i] = (async_slot){&r, i, 0};
		async_submit(&slots[i]);
	}
	r.stop = true;
	while (r.inflight > 0)
		event_base_loop(r.base, EVLOOP_ONCE);
	r.stop = false;
	r.ok = r.conflicts = r.domain = r.errors = 0;
	dis_async_get_stats(r.a, stats);
	{
		dis_async_stats z = *stats;

		memset(stats, 0, sizeof(*stats));
		stop = evtimer_new(r.base, on_async_stop, &r);
		evtimer_add(stop, &tv);
		t0 = now_s();
		for (int i = 0; i < inflight; i++)
			async_submit(&slots[i]);
		event_base_dispatch(r.base);
		el = now_s() - t0;
		/* Drain what is in flight; it is not counted. */
		{
			long counted = r.ok;

			while (r.inflight > 0)
				event_base_loop(r.base, EVLOOP_ONCE);
			r.ok = counted;
		}
		dis_async_get_stats(r.a, stats);
		stats->submitted -= z.submitted;
		stats->succeeded -= z.succeeded;
		stats->pipelines -= z.pipelines;
		stats->transactions -= z.transactions;
		stats->appends -= z.appends;
		stats->conflicts -= z.conflicts;
		stats->held_back -= z.held_back;
		stats->split -= z.split;
	}
	if (r.errors)
		die("async", r.error);
	event_free(stop);
	dis_async_free(r.a);
	event_base_free(r.base);
	free(slots);
	if (r.conflicts)
		fprintf(stderr, "async: %ld conflicts on disjoint accounts\n",
			r.conflicts);
	return (double)r.ok / el;
}

/* ---- CPU per operation ---- */

/* CPU ns, run-queue wait ns and timeslices of a task (schedstat). */
static int schedstat(const char *path, uint64_t v[3])
{
	FILE *f = fopen(path, "r");
	int n;

	if (!f)
		return -1;
	n = fscanf(f, "%" SCNu64 " %" SCNu64 " %" SCNu64, &v[0], &v[1], &v[2]);
	fclose(f);
	return n == 3 ? 0 : -1;
}

/* Profiling aid: only this row of the table (0 raw, 1 append, 2 decide,
 * and so on), announced with its server backend's pid a second before it
 * starts. */
static int cost_only = -1;

/*
 * The i-th operation of a cost run, by the worker's kind, on account
 * "<tag><run>-<n>": a fresh account per append, DECISIONS_PER_ACCOUNT
 * decisions per account.
 */
static int cost_op(worker *w, char tag, int i)
{
	bool decides = w->kind == DECIDE || w->kind == CACHED ||
		       w->kind == LOADED;
	char acct[64];

	snprintf(acct, sizeof(acct), "%c%d-%d", tag, w->run,
		 decides ? i / DECISIONS_PER_ACCOUNT : i);
	if (w->raw)
		return op_raw(w, acct);
	if (w->kind == APPEND)
		return op_append(w, acct);
	return op_decide(w, acct, 10);
}

static void cost(int n)
{
	/* Then the ceilings' statements: what each costs the server. */
	const char *names[] = {"raw INSERT",      "checked append", "decision",
			       "cached decision", "check only",     "locked fn",
			       "no notify",       "load+locked"};
	enum kind kinds[] = {RAW,   APPEND, DECIDE, CACHED,
			     CHECK, LOCKED, PIPED,  LOADED};
	char self[64];

	snprintf(self, sizeof(self), "/proc/self/task/%ld/schedstat",
		 (long)syscall(SYS_gettid));
	printf("\ncost per operation, 1 connection, %d operations each "
	       "(CPU from /proc/*/schedstat):\n",
	       n);
	printf("  %-16s %10s %12s %12s %14s\n", "", "wall us", "client us",
	       "server us", "server wakeups");
	for (int k = 0; k < (int)(sizeof(kinds) / sizeof(kinds[0])); k++) {
		worker w = {0};
		char server[64];

		if (cost_only >= 0 && cost_only != k)
			continue;
		uint64_t c0[3], c1[3], s0[3], s1[3];
		double t0, t1;
		int pid;
		char name[64];

		w.kind = kinds[k];
		w.run = atomic_fetch_add(&run_seq, 1);
		worker_open(&w);
		pid = PQbackendPID(w.raw ? w.raw : dis_store_conn(w.store));
		snprintf(server, sizeof(server), "/proc/%d/schedstat", pid);
		/* Warm: statements prepared, plans cached. */
		for (int i = 0; i < 20; i++)
			cost_op(&w, 'w', i);
		if (cost_only >= 0) {
			fprintf(stderr, "backend pid %d\n", pid);
			sleep(1);
		}
		if (schedstat(self, c0) || schedstat(server, s0)) {
			printf("  (no schedstat: skipped)\n");
			worker_close(&w);
			return;
		}
		t0 = now_s();
		for (int i = 0; i < n; i++)
			if (cost_op(&w, 'c', i))
				die("cost", w.error);
		t1 = now_s();
		schedstat(self, c1);
		schedstat(server, s1);
		printf("  %-16s %10.0f %12.1f %12.1f %14.2f\n", names[k],
		       (t1 - t0) * 1e6 / n, (double)(c1[0] - c0[0]) / 1e3 / n,
		       (double)(s1[0] - s0[0]) / 1e3 / n,
		       (double)(s1[2] - s0[2]) / n);
		snprintf(name, sizeof(name), "cpu_%s_client",
			 KIND_NAMES[kinds[k]]);
		line(name, (double)(c1[0] - c0[0]) / 1e3 / n, "us/op", 0);
		snprintf(name, sizeof(name), "cpu_%s_server",
			 KIND_NAMES[kinds[k]]);
		line(name, (double)(s1[0] - s0[0]) / 1e3 / n, "us/op", 0);
		worker_close(&w);
	}
}

/*
 * The ceilings next to the append and the decision, from the same
 * rotation (see the top comment), as percentages of the raw INSERT: as
 * far as the design's statements, without the library around them, get
 * on this machine.
 */
static void print_ceilings(const int *conns, int nconns, result res[][HOT])
{
	static const struct {
		enum kind kind;
		const char *name; /* of its bench= line */
		int width;        /* of its column, less the % */
	} cols[] = {{CHECK, "ceiling_check", 10},
		    {LOCKED, "ceiling_locked", 9},
		    {PIPED, "ceiling_no_notify", 9},
		    {APPEND, NULL, 7},
		    {LOADED, "ceiling_load_locked", 11},
		    {DECIDE, NULL, 9}};

	printf("\nceilings: the statements as plain SQL, same slices, %% of "
	       "raw INSERT\n");
	printf("  %-6s %12s %11s %10s %10s %8s %12s %10s\n", "conns",
	       "raw INSERT/s", "check only", "locked fn", "no notify",
	       "appends", "load+locked", "decisions");
	for (int c = 0; c < nconns; c++) {
		double raw = rate(&res[c][RAW]);

		printf("  %-6d %12.0f", conns[c], raw);
		for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++)
			printf(" %*.0f%%", cols[i].width,
			       100 * rate(&res[c][cols[i].kind]) / raw);
		printf("\n");
		for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++) {
			char name[64];

			if (!cols[i].name)
				continue;
			snprintf(name, sizeof(name), "%s_%dc", cols[i].name,
				 conns[c]);
			line(name, rate(&res[c][cols[i].kind]), "ops/s", raw);
		}
	}
}

/* ---- main ---- */

static bool wanted(const char *only, const char *name)
{
	const char *p;
	size_t n = strlen(name);

	if (!only)
		return true;
	for (p = only; (p = strstr(p, name)) != NULL; p += n)
		if ((p == only || p[-1] == ',') && (p[n] == ',' || !p[n]))
			return true;
	return false;
}

static void setup(void)
{
	dis_store *st;
	dis_event *ev;
	PGconn *c;
	PGresult *r;

	conninfo = dt_fresh_db();
	schema = dt_schema(SCHEMA);
	st = dt_store(conninfo, schema);
	dis_event_new(schema, "Deposited", &ev);
	dis_event_set_string(ev, "account_id", "seed");
	dis_event_set_long(ev, "amount", 10);
	if (dis_store_append(st, &ev, 1, NULL, NULL, NULL))
		die("seed", dis_store_errmsg(st));
	dis_event_free(ev);
	c = dis_store_conn(st);
	r = PQexecParams(c, "SELECT payload FROM event LIMIT 1", 0, NULL, NULL,
			 NULL, NULL, 1);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
		die("seed", PQresultErrorMessage(r));
	payload_len = PQgetlength(r, 0, 0);
	payload = malloc((size_t)payload_len);
	memcpy(payload, PQgetvalue(r, 0, 0), (size_t)payload_len);
	PQclear(r);
	r = PQexec(c, CEILING_FUNCTION);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		die("ceiling function", PQresultErrorMessage(r));
	PQclear(r);
	dis_store_free(st);
}

int main(int argc, char **argv)
{
	double sl = 1.5;
	int rounds = 3;
	const char *only = NULL;
	int cost_n = 300;
	unsigned async_conns = 2;
	int conns[3] = {1, 4, 16}, nconns = 3;
	result res[3][HOT];
	double sync16 = 0, raw16 = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--slice") && i + 1 < argc)
			sl = atof(argv[++i]);
		else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
			rounds = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--only") && i + 1 < argc)
			only = argv[++i];
		else if (!strcmp(argv[i], "--async-conns") && i + 1 < argc)
			async_conns = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--conns") && i + 1 < argc) {
			char *p = argv[++i];

			for (nconns = 0; nconns < 3 && *p; nconns++) {
				conns[nconns] = (int)strtol(p, &p, 10);
				if (conns[nconns] < 1 ||
				    conns[nconns] > MAXCONN)
					die("--conns", "1..64 connections");
				if (*p == ',')
					p++;
			}
		} else if (!strcmp(argv[i], "--cost") && i + 2 < argc) {
			cost_only = atoi(argv[++i]);
			cost_n = atoi(argv[++i]);
		} else {
			fprintf(stderr,
				"usage: bench-decision [--slice S] [--rounds "
				"R] [--conns 1,4,16] [--async-conns N] [--only "
				"append,ceiling,hot,async,cost] [--cost KIND "
				"N]\n");
			return 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	dt_require_pg();
	setup();
	memset(res, 0, sizeof(res));

	if (wanted(only, "append")) {
		/* The ceilings' slices join the same rotation. */
		int nkinds = wanted(only, "ceiling") ? HOT : CHECK;

		printf("appends and decisions: %d rounds of %.1f s slices, "
		       "raw / append / decide / cached%s interleaved\n",
		       rounds, sl, nkinds > CHECK ? " / ceilings" : "");
		printf("  %-6s %12s %12s %7s %12s %7s %10s %7s %10s\n", "conns",
		       "raw INSERT/s", "appends/s", "ratio", "decisions/s",
		       "ratio", "cached/s", "ratio", "conflicts");
		for (int c = 0; c < nconns; c++) {
			char name[64];
			double raw, app, dec, cached;
			long spurious;

			for (int round = 0; round < rounds; round++)
				for (int k = 0; k < nkinds; k++) {
					int kind = (k + round) % nkinds;

					slice((enum kind)kind, conns[c], sl,
					      &res[c][kind]);
				}
			raw = rate(&res[c][RAW]);
			app = rate(&res[c][APPEND]);
			dec = rate(&res[c][DECIDE]);
			cached = rate(&res[c][CACHED]);
			spurious = res[c][APPEND].conflicts +
				   res[c][DECIDE].conflicts +
				   res[c][CACHED].conflicts;
			printf("  %-6d %12.0f %12.0f %6.0f%% %12.0f %6.0f%% "
			       "%10.0f %6.0f%% %10ld\n",
			       conns[c], raw, app, 100 * app / raw, dec,
			       100 * dec / raw, cached, 100 * cached / raw,
			       spurious);
			snprintf(name, sizeof(name), "raw_insert_%dc",
				 conns[c]);
			line(name, raw, "commits/s", raw);
			snprintf(name, sizeof(name), "append_checked_%dc",
				 conns[c]);
			line(name, app, "appends/s", raw);
			snprintf(name, sizeof(name), "decision_sync_%dc",
				 conns[c]);
			line(name, dec, "decisions/s", raw);
			snprintf(name, sizeof(name), "decision_cached_%dc",
				 conns[c]);
			line(name, cached, "decisions/s", raw);
			snprintf(name, sizeof(name), "spurious_conflicts_%dc",
				 conns[c]);
			line(name, (double)spurious, "count", 0);
			if (conns[c] == 16) {
				sync16 = dec;
				raw16 = raw;
			}
		}
		if (nkinds > CHECK)
			print_ceilings(conns, nconns, res);
	}

	if (wanted(only, "hot")) {
		result hot = {0};
		double attempts;

		slice(HOT, 16, 3 * sl, &hot);
		attempts = hot.ops + (double)hot.retries;
		printf("\nhot contention: 16 connections on 10 accounts, "
		       "%.1f s\n",
		       3 * sl);
		printf("  %.0f decisions/s, %.1f%% of attempts conflicted, "
		       "%.3f retries per decision, %ld gave up, %ld refused "
		       "(funds)\n",
		       rate(&hot),
		       attempts > 0 ? 100 * hot.conflicts / attempts : 0,
		       hot.ops > 0 ? (double)hot.retries / hot.ops : 0,
		       hot.gave_up, hot.domain);
		line("hot_decisions_16c", rate(&hot), "decisions/s", raw16);
		line("hot_conflict_rate",
		     attempts > 0 ? hot.conflicts / attempts : 0, "fraction",
		     0);
		line("hot_retries_per_decision",
		     hot.ops > 0 ? (double)hot.retries / hot.ops : 0, "count",
		     0);
		line("hot_gave_up", (double)hot.gave_up, "count", 0);
	}

	if (wanted(only, "async")) {
		dis_async_stats st;
		double ar = run_async(64, async_conns, 3 * sl, &st);

		printf("\nasync: 64 decisions in flight, %u connections, %.1f "
		       "s\n",
		       async_conns, 3 * sl);
		printf("  %.0f decisions/s (%.1f decisions per transaction, "
		       "%" PRIu64 " round trips, %" PRIu64
		       " held back for overlap)\n",
		       ar,
		       st.transactions
			       ? (double)st.appends / (double)st.transactions
			       : 0,
		       st.pipelines, st.held_back);
		line("decision_async_64", ar, "decisions/s", sync16);
	}

	if (wanted(only, "cost"))
		cost(cost_n);

	dis_schema_free(schema);
	free(payload);
	free(conninfo);
	return 0;
}
