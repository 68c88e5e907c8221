/*
 * Asynchronous decisions (disintegrate/async.h) on a few non-blocking
 * connections (pq.c), each running one pipeline at a time:
 *
 *   BEGIN; lock the union of the batch's keys (sorted);
 *   one check-and-insert per decision; COMMIT      appends that are ready
 *   load; load; ...                                states of new attempts
 *   notify                                         after the commit
 *   DEALLOCATE ...                                 evicted statements
 *   sync
 *
 * Statements come from the store (dis__append_build, dis__load_sql) and are
 * prepared once per connection and shape. The loads follow the commit so
 * that they see it: a decision on a boundary the batch just wrote loads
 * the new state instead of conflicting. The notification runs after the
 * commit, in the implicit transaction of the loads (no xid, no WAL flush),
 * so the cluster-wide notify lock is never held across a WAL flush.
 *
 * A decision goes: queued -> loading (its load in a pipeline) -> processed
 * -> ready (its append built) -> appending (in a pipeline) -> done; after a
 * conflict it waits (backoff timer) and is queued again. Each job is on
 * exactly one list at a time: queued, ready, waiting, a connection's loads
 * or appends, or done (outcome known, callback not yet called).
 *
 * Two decisions share a transaction only when their lock keys do not
 * overlap (no exclusive key of one is a key of the other): the check of
 * one excludes the transaction's own rows, so it could not see the other.
 * A transaction that fails (a statement error) is split: its decisions are
 * tried again one per transaction, and one that fails alone gets the error.
 *
 * Callbacks: the user's result callbacks run only from deliver(), after
 * the connection work of the current loop callback is done. Every entry
 * from the loop counts itself in `depth`; dis_async_free() from inside a
 * callback marks the runtime dead, and the outermost entry frees it.
 */
#include "pq-internal.h"
#include "decision-internal.h"

#include <disintegrate/async.h>

#include <event2/event.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STMT_CACHE 64
#define NOTIFY_MAX 7000
#define NAME_LEN 32

typedef struct job job;
typedef struct conn conn;

typedef struct jlist {
	job *head;
	job *tail;
	size_t n;
} jlist;

enum jstate { J_QUEUED, J_LOADING, J_READY, J_APPENDING, J_WAITING, J_DONE };

struct job {
	dis_async *a;
	dis_decision *d;
	dis_async_fn fn;
	void *arg;
	enum jstate st;
	unsigned attempts;
	bool solo; /* a transaction with it failed: alone from now on */
	bool has_app;
	dis__append app;
	bool has_sql;
	dis__sql load; /* the load statement, until it is sent */
	struct event *timer;
	jlist *list;
	job *prev;
	job *next;
	int rc; /* outcome, when done */
};

/* A statement prepared (or being prepared) on a connection. */
enum { P_NEW, P_SENT, P_READY };

typedef struct pentry {
	char *sql;
	uint64_t hash;
	unsigned id;
	int st;
	uint64_t used;
} pentry;

/* What each statement of the pipeline in flight is. */
enum kind {
	K_OTHER,
	K_PREPARE,
	K_BEGIN,
	K_LOCK,
	K_INSERT,
	K_COMMIT,
	K_LOAD,
	K_NOTIFY,
	K_DEALLOC,
	K_SETUP,
	K_ROLLBACK
};

typedef struct slot {
	int kind;
	job *j;
	unsigned stmt; /* K_PREPARE: the cache entry's id */
} slot;

enum cstate { C_DOWN, C_CONNECTING, C_SETUP, C_IDLE, C_BUSY, C_ROLLBACK };

struct conn {
	dis_async *a;
	int idx;
	dis__pq *pq;
	dis_store *store; /* wraps the current connection: codec, errors */
	enum cstate st;
	struct event *timer; /* reconnect */
	uint32_t backoff_ms;
	jlist loads; /* jobs whose load is in flight here */
	jlist apps;  /* jobs whose append is in flight here */

	/* The pipeline: statements and what they are. */
	dis__stmt *stmts;
	slot *slots;
	char (*names)[NAME_LEN];
	int n;
	int cap;
	size_t ndealloc; /* evicted names sent for DEALLOCATE */

	pentry cache[STMT_CACHE];
	size_t ncache;
	unsigned next_id;
	uint64_t clock;
	char *evicted[STMT_CACHE];
	size_t nevicted;
	char dealloc_sql[STMT_CACHE][NAME_LEN + 16];
};

struct dis_async {
	struct event_base *base;
	char *conninfo;
	char *appname;
	const dis_schema *schema;
	dis_async_options opts;
	conn *conns;
	unsigned nconns;
	jlist queued;
	jlist ready;
	jlist waiting;
	jlist done;
	size_t pending;
	struct event *ev_pump;
	bool pump_scheduled;
	bool stopping;
	bool dead;
	int depth;
	uint64_t rng;
	dis_log_fn log;
	void *log_arg;
	char errmsg[DIS_ERRMSG_LEN];
	dis_async_stats stats;

	/* Scratch for building a pipeline. */
	dis__lock *locks;
	size_t nlocks;
	size_t lockcap;
	dis__buf keys;
	dis__buf excl;
	dis__buf notify;
};

/* ---- lists ---- */

static void jl_remove(job *j)
{
	jlist *l = j->list;

	if (!l)
		return;
	if (j->prev)
		j->prev->next = j->next;
	else
		l->head = j->next;
	if (j->next)
		j->next->prev = j->prev;
	else
		l->tail = j->prev;
	l->n--;
	j->prev = j->next = NULL;
	j->list = NULL;
}

static void jl_push(jlist *l, job *j)
{
	jl_remove(j);
	j->prev = l->tail;
	j->next = NULL;
	if (l->tail)
		l->tail->next = j;
	else
		l->head = j;
	l->tail = j;
	l->n++;
	j->list = l;
}

static void jl_push_front(jlist *l, job *j)
{
	jl_remove(j);
	j->prev = NULL;
	j->next = l->head;
	if (l->head)
		l->head->prev = j;
	else
		l->tail = j;
	l->head = j;
	l->n++;
	j->list = l;
}

/* ---- small helpers ---- */

static void alog(dis_async *a, dis_log_level level, const char *fmt, ...)
	DIS_PRINTF(3, 4);

static void alog(dis_async *a, dis_log_level level, const char *fmt, ...)
{
	char msg[DIS_ERRMSG_LEN];
	va_list ap;

	if (!a->log)
		return;
	va_start(ap, fmt);
	dis__verrf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	a->log(a->log_arg, level, msg);
}

static uint64_t next_rand(dis_async *a)
{
	uint64_t x = a->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	a->rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* The backoff before attempt `attempt` + 1, in microseconds. */
static uint64_t backoff_us(dis_async *a, unsigned attempt)
{
	uint64_t cap = a->opts.retry_base_us;

	for (unsigned i = 1; i < attempt && cap < a->opts.retry_max_us; i++)
		cap *= 2;
	if (cap > a->opts.retry_max_us)
		cap = a->opts.retry_max_us;
	return cap ? next_rand(a) % (cap + 1) : 0;
}

static void schedule_pump(dis_async *a)
{
	if (a->pump_scheduled || a->dead)
		return;
	a->pump_scheduled = true;
	event_active(a->ev_pump, EV_TIMEOUT, 1);
}

/* ---- outcomes ---- */

static void job_release(job *j)
{
	if (j->has_app)
		dis__append_free(&j->app);
	j->has_app = false;
	if (j->has_sql)
		dis__sql_free(&j->load);
	j->has_sql = false;
	if (j->timer)
		event_free(j->timer);
	j->timer = NULL;
}

/*
 * Ends a job with `rc`: the decision records it (for rc != 0 with the
 * message, unless the decision recorded its own), and the job waits on the
 * done list for its callback.
 */
static void finish(job *j, int rc, const char *fmt, ...) DIS_PRINTF(3, 4);

static void finish(job *j, int rc, const char *fmt, ...)
{
	dis_async *a = j->a;
	va_list ap;

	if (rc == 0) {
		dis__decision_succeed(j->d);
		a->stats.succeeded++;
	} else {
		if (fmt) {
			char msg[DIS_ERRMSG_LEN];

			va_start(ap, fmt);
			dis__verrf(msg, sizeof(msg), fmt, ap);
			va_end(ap);
			dis__decision_fail(j->d, rc, "%s: %s",
					   dis_decision_name(j->d), msg);
		} else if (dis_decision_result(j->d) != rc) {
			dis__decision_fail(j->d, rc, "%s: %s",
					   dis_decision_name(j->d),
					   dis_strerror(rc));
		}
		if (rc == DIS_EDOMAIN)
			a->stats.domain_errors++;
		else if (rc == DIS_ECANCELED)
			a->stats.canceled++;
		else
			a->stats.failed++;
	}
	j->rc = rc;
	j->st = J_DONE;
	jl_push(&a->done, j);
}

/* Calls the callback of finished job `j`, which is gone then. */
static void deliver_one(dis_async *a, job *j)
{
	dis_async_fn fn = j->fn;
	void *arg = j->arg;
	dis_decision *d = j->d;
	int rc = j->rc;

	jl_remove(j);
	job_release(j);
	free(j);
	a->pending--;
	a->depth++;
	fn(arg, d, rc);
	a->depth--;
}

/*
 * Calls the callbacks of the finished jobs. Returns false when the runtime
 * was freed by one of them: the caller must not touch it any more.
 */
static bool deliver(dis_async *a)
{
	job *j;

	while ((j = a->done.head) != NULL) {
		deliver_one(a, j);
		if (a->dead)
			return false;
	}
	return true;
}

static void on_job_timer(evutil_socket_t fd, short what, void *arg);

/* A failed check: queue another attempt after the backoff, or give up. */
static void conflict(job *j)
{
	dis_async *a = j->a;
	uint64_t us;

	a->stats.conflicts++;
	if (a->stopping) {
		finish(j, DIS_ECANCELED,
		       "conflict, not retried: the runtime is stopping");
		return;
	}
	if (j->attempts >= a->opts.max_attempts) {
		a->stats.gave_up++;
		finish(j, DIS_ECONFLICT,
		       "conflict: events matching the validation query were "
		       "appended concurrently (%u attempt%s)",
		       j->attempts, j->attempts == 1 ? "" : "s");
		return;
	}
	a->stats.retries++;
	if (j->has_app)
		dis__append_free(&j->app);
	j->has_app = false;
	us = backoff_us(a, j->attempts);
	if (us == 0) {
		j->st = J_QUEUED;
		jl_push(&a->queued, j);
		schedule_pump(a);
		return;
	}
	if (!j->timer)
		j->timer = evtimer_new(a->base, on_job_timer, j);
	if (j->timer) {
		struct timeval tv = {(time_t)(us / 1000000),
				     (suseconds_t)(us % 1000000)};

		if (evtimer_add(j->timer, &tv) == 0) {
			j->st = J_WAITING;
			jl_push(&a->waiting, j);
			return;
		}
	}
	/* No timer: retry at once. */
	j->st = J_QUEUED;
	jl_push(&a->queued, j);
	schedule_pump(a);
}

/* ---- the statement cache of a connection ---- */

static void cache_clear(conn *c)
{
	for (size_t i = 0; i < c->ncache; i++)
		free(c->cache[i].sql);
	c->ncache = 0;
	for (size_t i = 0; i < c->nevicted; i++)
		free(c->evicted[i]);
	c->nevicted = 0;
}

static pentry *cache_find_id(conn *c, unsigned id)
{
	for (size_t i = 0; i < c->ncache; i++)
		if (c->cache[i].id == id)
			return &c->cache[i];
	return NULL;
}

/* The entry for `sql`, added if new (evicting the least recently used one
 * that is not being prepared); NULL when out of memory or all are busy. */
static pentry *cache_get(conn *c, const char *sql)
{
	uint64_t h = dis__hash64(sql, strlen(sql), 0);
	pentry *e = NULL;
	char *copy;

	for (size_t i = 0; i < c->ncache; i++)
		if (c->cache[i].hash == h && !strcmp(c->cache[i].sql, sql)) {
			c->cache[i].used = ++c->clock;
			return &c->cache[i];
		}
	if (c->ncache == STMT_CACHE) {
		for (size_t i = 0; i < c->ncache; i++)
			if (c->cache[i].st != P_SENT &&
			    (!e || c->cache[i].used < e->used))
				e = &c->cache[i];
		if (!e || c->nevicted == STMT_CACHE)
			return NULL;
	}
	copy = dis__strdup(sql);
	if (!copy)
		return NULL;
	if (e) {
		if (e->st == P_READY) {
			char name[NAME_LEN];

			snprintf(name, sizeof(name), "dis_async_%u", e->id);
			c->evicted[c->nevicted] = dis__strdup(name);
			if (c->evicted[c->nevicted])
				c->nevicted++;
		}
		free(e->sql);
	} else {
		e = &c->cache[c->ncache++];
	}
	*e = (pentry){copy, h, ++c->next_id, P_NEW, ++c->clock};
	return e;
}

/* ---- building a pipeline ---- */

static void add_stmt(conn *c, dis__stmt st, int kind, job *j, unsigned id)
{
	c->stmts[c->n] = st;
	c->slots[c->n] = (slot){kind, j, id};
	c->n++;
}

/* Adds the execution of `sql`, prepared first if it is new here. */
static void add_exec(conn *c, const char *sql, int nparams,
		     const char *const *values, const int *lengths,
		     const int *formats, int binary, int kind, job *j)
{
	pentry *e = cache_get(c, sql);
	dis__stmt st = {.sql = sql,
			.nparams = nparams,
			.values = values,
			.lengths = lengths,
			.formats = formats,
			.binary = binary};

	if (e) {
		char *name = c->names[c->n];

		snprintf(name, NAME_LEN, "dis_async_%u", e->id);
		if (e->st == P_NEW) {
			add_stmt(c,
				 (dis__stmt){.name = name,
					     .sql = e->sql,
					     .prepare = true,
					     .nparams = 0},
				 K_PREPARE, NULL, e->id);
			e->st = P_SENT;
			/* The execution gets a name slot of its own. */
			snprintf(c->names[c->n], NAME_LEN, "%s", name);
		}
		st.name = c->names[c->n];
		st.sql = NULL;
	}
	add_stmt(c, st, kind, j, 0);
}

/* Whether `l` (sorted) overlaps the batch's locks so far (sorted). */
static bool locks_overlap(const dis_async *a, const dis__lock *l, size_t n)
{
	size_t i = 0, k = 0;

	while (i < n && k < a->nlocks) {
		if (l[i].key < a->locks[k].key) {
			i++;
		} else if (l[i].key > a->locks[k].key) {
			k++;
		} else {
			if (l[i].exclusive || a->locks[k].exclusive)
				return true;
			i++;
			k++;
		}
	}
	return false;
}

/* Merges `l` (sorted) into the batch's locks. */
static int locks_merge(dis_async *a, const dis__lock *l, size_t n)
{
	size_t total = a->nlocks + n, i = n, k = a->nlocks, out;

	if (total > a->lockcap) {
		size_t cap = total * 2;
		dis__lock *p = realloc(a->locks, cap * sizeof(*p));

		if (!p)
			return DIS_ENOMEM;
		a->locks = p;
		a->lockcap = cap;
	}
	/* Merge from the back, in place; equal keys become one. */
	out = total;
	while (i > 0 || k > 0) {
		dis__lock x;

		if (k == 0 || (i > 0 && l[i - 1].key > a->locks[k - 1].key)) {
			x = l[--i];
		} else if (i == 0 || a->locks[k - 1].key > l[i - 1].key) {
			x = a->locks[--k];
		} else {
			x = a->locks[--k];
			x.exclusive = x.exclusive || l[--i].exclusive;
		}
		a->locks[--out] = x;
	}
	if (out > 0)
		memmove(a->locks, a->locks + out,
			(total - out) * sizeof(*a->locks));
	a->nlocks = total - out;
	return 0;
}

/* Adds the types of a job's notification to the batch's payload. */
static void notify_merge(dis_async *a, const char *types, bool *any)
{
	const char *p = types;

	if (*any)
		return;
	if (!*types) {
		*any = true;
		return;
	}
	while (*p) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		const char *have = dis__buf_cstr(&a->notify);
		bool seen = false;

		for (const char *q = have; *q && !seen;) {
			const char *qe = strchr(q, ',');
			size_t ql = qe ? (size_t)(qe - q) : strlen(q);

			seen = ql == len && !memcmp(q, p, len);
			q += ql + (qe ? 1 : 0);
		}
		if (!seen) {
			if (a->notify.len)
				dis__buf_puts(&a->notify, ",");
			dis__buf_append(&a->notify, p, len);
		}
		p += len + (e ? 1 : 0);
	}
	if (a->notify.len > NOTIFY_MAX)
		*any = true;
}

static void after_load(conn *c, job *j);

/*
 * Starts the next attempt of a queued job: resets the decision and builds
 * its load. A decision without states needs no load: it is processed now.
 * Returns true when a load statement was built.
 */
static bool start_attempt(conn *c, job *j)
{
	const dis_query *q;
	int rc;

	dis__decision_reset(j->d);
	j->attempts++;
	dis__decision_set_attempts(j->d, j->attempts);
	q = dis__decision_load_begin(j->d);
	if (!q && dis_decision_state_count(j->d) > 0) {
		finish(j, DIS_ENOMEM, "out of memory");
		return false;
	}
	if (!q) {
		after_load(c, j);
		return false;
	}
	dis__sql_init(&j->load);
	j->has_sql = true;
	rc = dis__load_sql(q, NULL, &j->load);
	if (rc) {
		finish(j, rc, "building the load statement: %s",
		       dis_strerror(rc));
		return false;
	}
	return true;
}

static void conn_lost(conn *c, const char *why);

/*
 * Sends the next pipeline of an idle connection: up to `napps` appends of
 * ready jobs whose boundaries do not overlap, and up to `nloads` loads.
 * Returns whether it sent one.
 */
static bool send_pipeline(conn *c, size_t napps, size_t nloads)
{
	static const int bin2[2] = {1, 1};
	dis_async *a = c->a;
	const char *lock_vals[2];
	int lock_lens[2];
	const char *nvals[1];
	bool any_type = false;
	job *j, *next;
	int rc;

again:
	c->n = 0;
	a->nlocks = 0;
	dis__buf_reset(&a->notify);

	/* Appends: one transaction, boundaries that do not overlap. */
	for (j = a->ready.head; j && c->apps.n < napps; j = next) {
		next = j->next;
		if (j->solo && c->apps.n > 0)
			continue;
		if (locks_overlap(a, j->app.locks, j->app.nlocks)) {
			a->stats.held_back++;
			continue;
		}
		if (locks_merge(a, j->app.locks, j->app.nlocks)) {
			if (c->apps.n == 0) {
				finish(j, DIS_ENOMEM, "out of memory");
				continue;
			}
			break;
		}
		notify_merge(a, j->app.notify, &any_type);
		j->st = J_APPENDING;
		jl_push(&c->apps, j);
		if (j->solo)
			break;
	}
	if (c->apps.n) {
		dis__buf_reset(&a->keys);
		dis__buf_reset(&a->excl);
		if (dis__lock_params(a->locks, a->nlocks, &a->keys, &a->excl)) {
			while ((j = c->apps.head) != NULL) {
				j->st = J_READY;
				jl_push_front(&a->ready, j);
			}
			return false;
		}
		lock_vals[0] = (const char *)a->keys.data;
		lock_vals[1] = (const char *)a->excl.data;
		lock_lens[0] = (int)a->keys.len;
		lock_lens[1] = (int)a->excl.len;
		/* Whatever the session's default: see DIS__LOCK_JOINED_SQL. */
		add_stmt(c,
			 (dis__stmt){
				 .sql = "BEGIN ISOLATION LEVEL READ COMMITTED"},
			 K_BEGIN, NULL, 0);
		add_exec(c, DIS__LOCK_SQL, 2, lock_vals, lock_lens, bin2, 0,
			 K_LOCK, NULL);
		for (j = c->apps.head; j; j = j->next)
			add_exec(c, dis__buf_cstr(&j->app.insert.text),
				 j->app.insert.nparams,
				 (const char *const *)j->app.insert.params,
				 j->app.lengths, j->app.formats, 1, K_INSERT,
				 j);
		add_stmt(c, (dis__stmt){.sql = "COMMIT"}, K_COMMIT, NULL, 0);
	}

	/* Loads, after the commit so that they see it. */
	while (c->loads.n < nloads && (j = a->queued.head) != NULL) {
		jl_remove(j);
		if (!start_attempt(c, j))
			continue;
		j->st = J_LOADING;
		jl_push(&c->loads, j);
		add_exec(c, dis__buf_cstr(&j->load.text), j->load.nparams,
			 (const char *const *)j->load.params, NULL, NULL, 1,
			 K_LOAD, j);
	}

	if (c->apps.n) {
		/* A plain notification, every time: the runtime never takes
		 * the store's notification token, so no one waits on it. */
		nvals[0] = any_type ? "" : dis__buf_cstr(&a->notify);
		add_exec(c, DIS__NOTIFY_SQL, 1, nvals, NULL, NULL, 0, K_NOTIFY,
			 NULL);
	}
	if (c->n == 0) {
		/* Decisions without states went straight to ready. */
		if (a->ready.n) {
			napps = a->ready.n < a->opts.max_batch
					? a->ready.n
					: a->opts.max_batch;
			goto again;
		}
		return false;
	}
	c->ndealloc = c->nevicted;
	for (size_t i = 0; i < c->ndealloc; i++) {
		snprintf(c->dealloc_sql[i], sizeof(c->dealloc_sql[i]),
			 "DEALLOCATE %s", c->evicted[i]);
		add_stmt(c, (dis__stmt){.sql = c->dealloc_sql[i]}, K_DEALLOC,
			 NULL, 0);
	}

	rc = dis__pq_send(c->pq, c->stmts, c->n);
	for (j = c->loads.head; j; j = j->next) {
		dis__sql_free(&j->load);
		j->has_sql = false;
	}
	if (rc) {
		conn_lost(c, dis__pq_errmsg(c->pq));
		return false;
	}
	c->st = C_BUSY;
	a->stats.pipelines++;
	if (c->apps.n) {
		a->stats.transactions++;
		a->stats.appends += c->apps.n;
	}
	return true;
}

static bool usable(const conn *c)
{
	return c->st == C_IDLE || c->st == C_BUSY || c->st == C_ROLLBACK;
}

/*
 * Gives work to the idle connections, greedily: the first takes up to
 * max_batch of each kind, the next what is left. Splitting evenly was
 * slower (measured: 64 in flight, 2 connections: 4.0k-6.6k decisions/s
 * split, 5.2k-10k on one connection): every round trip and every commit
 * costs the same whatever its size, so full batches win, and a second
 * connection is for the work that arrives while the first is busy.
 */
static void pump(dis_async *a)
{
	size_t batch = a->opts.max_batch;

	if (a->dead)
		return;
	for (unsigned i = 0; i < a->nconns; i++) {
		conn *c = &a->conns[i];

		if (c->st != C_IDLE)
			continue;
		if (!a->ready.n && !a->queued.n)
			break;
		send_pipeline(c, batch, batch);
	}
}

/* ---- results ---- */

static int apply_event(void *arg, const dis_event *ev)
{
	job *j = arg;

	return dis__decision_apply(j->d, ev);
}

/* After the load (or none): process, then build the append. */
static void after_load(conn *c, job *j)
{
	dis_async *a = c->a;
	const dis_query *validation;
	dis_event *const *evs;
	size_t n;
	int rc;

	if (a->stopping) {
		finish(j, DIS_ECANCELED, "canceled: the runtime is stopping");
		return;
	}
	rc = dis__decision_process(j->d);
	if (rc) {
		finish(j, rc, NULL);
		return;
	}
	evs = dis__decision_events(j->d, &n);
	if (n == 0) {
		finish(j, 0, NULL);
		return;
	}
	validation = dis__decision_validation(j->d);
	if (!validation && dis_decision_state_count(j->d) > 0) {
		finish(j, DIS_ENOMEM, "out of memory");
		return;
	}
	rc = dis__append_build(c->store, evs, n, validation,
			       dis_decision_version(j->d), &j->app);
	if (rc) {
		dis__append_free(&j->app);
		finish(j, rc, "appending: %s", dis_store_errmsg(c->store));
		return;
	}
	j->has_app = true;
	j->st = J_READY;
	jl_push(&a->ready, j);
}

static void load_done(conn *c, job *j, const PGresult *res)
{
	dis_version *v = NULL;
	int rc;

	rc = dis__load_result(c->store, res, apply_event, j, &v);
	c->a->stats.events_read += dis_decision_events_read(j->d);
	if (rc) {
		dis_version_free(v);
		if (dis_decision_result(j->d) == rc)
			finish(j, rc, NULL); /* a mutate failed */
		else
			finish(j, rc, "loading state: %s",
			       dis_store_errmsg(c->store));
		return;
	}
	dis__decision_set_version(j->d, v);
	after_load(c, j);
}

static const char *result_error(const PGresult *r, const char **sqlstate)
{
	static const char aborted[] =
		"statement not run: an earlier one failed";
	const char *m;

	*sqlstate = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	if (!r)
		return "no result";
	if (PQresultStatus(r) == PGRES_PIPELINE_ABORTED)
		return aborted;
	m = PQresultErrorMessage(r);
	return m && *m ? m : PQresStatus(PQresultStatus(r));
}

static bool result_ok(const PGresult *r)
{
	ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;

	return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

/* Copies a server message without its trailing newline. */
static void chomp(char *dst, size_t len, const char *src)
{
	size_t n;

	snprintf(dst, len, "%s", src ? src : "");
	n = strlen(dst);
	while (n && (dst[n - 1] == '\n' || dst[n - 1] == ' '))
		dst[--n] = '\0';
}

/* The outcome of the append transaction of a finished pipeline. */
static void appends_done(conn *c)
{
	dis_async *a = c->a;
	const PGresult *fail = NULL;
	bool committed = false;
	job *j;

	for (int i = 0; i < c->n; i++) {
		const PGresult *r = dis__pq_result(c->pq, i);
		int k = c->slots[i].kind;

		if (k != K_BEGIN && k != K_LOCK && k != K_INSERT &&
		    k != K_COMMIT && k != K_PREPARE)
			continue;
		if (!result_ok(r) && !fail &&
		    (!r || PQresultStatus(r) != PGRES_PIPELINE_ABORTED))
			fail = r;
		if (k == K_COMMIT && result_ok(r) &&
		    !strcmp(PQcmdStatus((PGresult *)r), "COMMIT"))
			committed = true;
		if (k == K_COMMIT)
			break;
	}
	if (committed) {
		for (int i = 0; i < c->n; i++) {
			int rc;

			if (c->slots[i].kind != K_INSERT || !c->slots[i].j)
				continue;
			j = c->slots[i].j;
			rc = dis__append_result(
				c->store, dis__pq_result(c->pq, i), &j->app,
				dis__decision_events(j->d, &(size_t){0}), NULL);
			if (rc == 0) {
				a->stats.events_appended += j->app.nevents;
				finish(j, 0, NULL);
			} else if (rc == DIS_ECONFLICT) {
				conflict(j);
			} else {
				finish(j, rc, "appending: %s",
				       dis_store_errmsg(c->store));
			}
		}
		return;
	}
	/* The transaction failed: split it, or report the error. */
	{
		const char *state = NULL;
		char msg[DIS_ERRMSG_LEN];
		int code;

		chomp(msg, sizeof(msg),
		      fail ? result_error(fail, &state)
			   : "the append transaction did not commit");
		code = state ? dis__sqlstate_code(state) : DIS_EPG;
		bool split = c->apps.n > 1;

		if (split) {
			a->stats.split++;
			alog(a, DIS_LOG_DEBUG,
			     "append transaction failed (%s); trying its "
			     "decisions one by one",
			     msg);
		}
		while ((j = c->apps.head) != NULL) {
			if (split) {
				j->solo = true;
				j->st = J_READY;
				jl_push(&a->ready, j);
			} else if (code == DIS_ECONFLICT) {
				jl_remove(j);
				conflict(j);
			} else {
				jl_remove(j);
				finish(j, code, "appending: %s", msg);
			}
		}
	}
}

static void send_rollback(conn *c)
{
	c->n = 0;
	add_stmt(c, (dis__stmt){.sql = "ROLLBACK"}, K_ROLLBACK, NULL, 0);
	if (dis__pq_send(c->pq, c->stmts, c->n)) {
		conn_lost(c, dis__pq_errmsg(c->pq));
		return;
	}
	c->st = C_ROLLBACK;
}

/* A notification for every event type, in a pipeline of its own. */
static void send_notify(conn *c)
{
	static const char *const any[1] = {""};

	c->n = 0;
	add_exec(c, DIS__NOTIFY_SQL, 1, any, NULL, NULL, 0, K_NOTIFY, NULL);
	if (dis__pq_send(c->pq, c->stmts, c->n)) {
		conn_lost(c, dis__pq_errmsg(c->pq));
		return;
	}
	c->st = C_BUSY;
	c->a->stats.pipelines++;
}

/* Every result of the pipeline is in. */
static void pipeline_done(conn *c)
{
	dis_async *a = c->a;
	bool rollback, committed = false, owed = false;
	job *j;

	if (!dis__pq_lend(c->pq)) {
		conn_lost(c, "cannot use the connection");
		return;
	}
	/* Statements prepared, and the evicted ones dropped. */
	for (int i = 0; i < c->n; i++) {
		const PGresult *r = dis__pq_result(c->pq, i);
		pentry *e;

		if (c->slots[i].kind == K_PREPARE &&
		    (e = cache_find_id(c, c->slots[i].stmt)) != NULL)
			e->st = result_ok(r) ? P_READY : P_NEW;
	}
	if (c->ndealloc > 0) {
		const PGresult *r = dis__pq_result(c->pq, c->n - 1);

		if (result_ok(r)) {
			for (size_t i = 0; i < c->ndealloc; i++)
				free(c->evicted[i]);
			memmove(c->evicted, c->evicted + c->ndealloc,
				(c->nevicted - c->ndealloc) *
					sizeof(*c->evicted));
			c->nevicted -= c->ndealloc;
		}
		c->ndealloc = 0;
	}
	if (c->apps.n)
		appends_done(c);
	for (int i = 0; i < c->n; i++) {
		const PGresult *r = dis__pq_result(c->pq, i);
		/* Its own prepare, sent just before it when new. */
		const PGresult *prep = i > 0 && c->slots[i - 1].kind ==
							       K_PREPARE
					       ? dis__pq_result(c->pq, i - 1)
					       : NULL;
		const char *state;
		char msg[DIS_ERRMSG_LEN];

		j = c->slots[i].j;
		if (c->slots[i].kind != K_LOAD || !j)
			continue;
		jl_remove(j);
		if (r && PQresultStatus(r) == PGRES_TUPLES_OK) {
			load_done(c, j, r);
			continue;
		}
		if ((!r || PQresultStatus(r) == PGRES_PIPELINE_ABORTED) &&
		    prep && !result_ok(prep) &&
		    PQresultStatus(prep) != PGRES_PIPELINE_ABORTED) {
			/* Its own statement failed to prepare: it would
			 * again, every time. */
			chomp(msg, sizeof(msg), result_error(prep, &state));
			finish(j, state ? dis__sqlstate_code(state) : DIS_EPG,
			       "preparing the load: %s", msg);
			continue;
		}
		if (!r || PQresultStatus(r) == PGRES_PIPELINE_ABORTED) {
			/* Not run: an earlier statement failed. */
			j->attempts--;
			j->st = J_QUEUED;
			jl_push_front(&a->queued, j);
			continue;
		}
		chomp(msg, sizeof(msg), result_error(r, &state));
		finish(j, state ? dis__sqlstate_code(state) : DIS_EPG,
		       "loading state: %s", msg);
	}
	for (int i = 0; i < c->n; i++) {
		const PGresult *r = dis__pq_result(c->pq, i);
		const char *state;

		if (c->slots[i].kind == K_COMMIT && result_ok(r))
			committed = true;
		if (c->slots[i].kind != K_NOTIFY || result_ok(r))
			continue;
		/* A load after the commit failed, and the notification
		 * went down with it: the events are committed, so it is
		 * owed (sent alone next). */
		if (committed)
			owed = true;
		if (r && PQresultStatus(r) != PGRES_PIPELINE_ABORTED)
			alog(a, DIS_LOG_WARN, "notification not sent: %s",
			     result_error(r, &state));
	}
	c->n = 0;
	if (dis__pq_take_back(c->pq)) {
		conn_lost(c, dis__pq_errmsg(c->pq));
		return;
	}
	rollback = PQtransactionStatus(dis__pq_conn(c->pq)) == PQTRANS_INERROR;
	if (rollback) {
		send_rollback(c);
		return;
	}
	if (owed)
		send_notify(c);
	else
		c->st = C_IDLE;
	pump(a);
}

/* ---- connections ---- */

static void on_conn_timer(evutil_socket_t fd, short what, void *arg);

static bool any_usable(const dis_async *a)
{
	for (unsigned i = 0; i < a->nconns; i++)
		if (usable(&a->conns[i]))
			return true;
	return false;
}

/* Ends every job waiting for a connection (none works). */
static void fail_queued(dis_async *a, const char *why)
{
	job *j;

	while ((j = a->queued.head) != NULL) {
		jl_remove(j);
		finish(j, DIS_ECONN, "no connection: %s", why);
	}
	while ((j = a->ready.head) != NULL) {
		jl_remove(j);
		finish(j, DIS_ECONN, "no connection: %s", why);
	}
}

/*
 * The connection is gone (or never came): loads in flight are queued
 * again, appends in flight end with DIS_ECONN (their outcome is unknown),
 * and a reconnect is scheduled.
 */
static void conn_lost(conn *c, const char *why)
{
	dis_async *a = c->a;
	bool connecting = c->st == C_CONNECTING || c->st == C_SETUP;
	struct timeval tv;
	uint32_t d;
	job *j;

	dis__errf(a->errmsg, sizeof(a->errmsg), "connection %d: %s", c->idx,
		  why);
	alog(a, DIS_LOG_WARN, "%s", a->errmsg);
	while ((j = c->loads.tail) != NULL) {
		j->attempts--;
		j->st = J_QUEUED;
		jl_push_front(&a->queued, j);
	}
	while ((j = c->apps.head) != NULL) {
		jl_remove(j);
		finish(j, DIS_ECONN,
		       "connection lost while appending: the outcome is "
		       "unknown (%s)",
		       why);
	}
	for (int i = 0; i < c->n; i++)
		c->slots[i].j = NULL;
	c->n = 0;
	c->ndealloc = 0;
	cache_clear(c);
	if (c->store)
		dis__store_rebind(c->store, NULL);
	dis__pq_close(c->pq);
	c->st = C_DOWN;
	c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2
				      : a->opts.reconnect_min_ms;
	if (c->backoff_ms > a->opts.reconnect_max_ms)
		c->backoff_ms = a->opts.reconnect_max_ms;
	d = c->backoff_ms / 2 +
	    (uint32_t)(next_rand(a) % (c->backoff_ms / 2 + 1));
	tv.tv_sec = d / 1000;
	tv.tv_usec = (suseconds_t)(d % 1000) * 1000;
	if (c->timer)
		evtimer_add(c->timer, &tv);
	if (connecting && !any_usable(a))
		fail_queued(a, why);
	/* The loads it had go to a connection still up, now. */
	else if (a->queued.n && any_usable(a))
		schedule_pump(a);
}

static void conn_start(conn *c)
{
	dis_async *a = c->a;
	int rc;

	rc = dis__pq_connect(c->pq, a->conninfo, a->appname,
			     a->opts.connect_timeout_ms);
	if (rc) {
		c->st = C_CONNECTING;
		conn_lost(c, dis__pq_errmsg(c->pq));
		return;
	}
	c->st = C_CONNECTING;
}

/* Connected: find (or register) the schema's registry id. */
static void conn_setup(conn *c)
{
	const char *vals[2];
	int rc;

	if (!c->store) {
		rc = dis_store_wrap(dis__pq_conn(c->pq), c->a->schema,
				    &c->store);
		if (rc) {
			conn_lost(c, "out of memory");
			return;
		}
	} else {
		dis__store_rebind(c->store, dis__pq_conn(c->pq));
	}
	dis__store_schema_params(c->store, vals);
	c->n = 0;
	add_stmt(c,
		 (dis__stmt){.sql = DIS__SCHEMA_REGISTER_SQL,
			     .nparams = 2,
			     .values = vals},
		 K_SETUP, NULL, 0);
	if (dis__pq_send(c->pq, c->stmts, c->n)) {
		conn_lost(c, dis__pq_errmsg(c->pq));
		return;
	}
	c->st = C_SETUP;
}

static void setup_done(conn *c)
{
	PGresult *r = dis__pq_result(c->pq, 0);
	char msg[DIS_ERRMSG_LEN];
	const char *state;

	c->n = 0;
	if (!r || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1) {
		chomp(msg, sizeof(msg),
		      r && PQresultStatus(r) == PGRES_TUPLES_OK
			      ? "the schema registry returned no id"
			      : result_error(r, &state));
		conn_lost(c, msg);
		return;
	}
	dis__store_set_schema_id(c->store, (int32_t)atol(PQgetvalue(r, 0, 0)));
	c->backoff_ms = 0;
	c->st = C_IDLE;
	pump(c->a);
}

/* Frees the runtime once nothing of it is on the stack. */
static void destroy(dis_async *a);

static void leave(dis_async *a)
{
	a->depth--;
	if (a->dead && a->depth == 0)
		destroy(a);
}

static void on_pq(dis__pq *pq, void *arg, dis__pq_event ev, int status)
{
	conn *c = arg;
	dis_async *a = c->a;

	(void)pq;
	a->depth++;
	switch (ev) {
	case DIS__PQ_CONNECTED:
		if (status)
			conn_lost(c, dis__pq_errmsg(c->pq));
		else
			conn_setup(c);
		break;
	case DIS__PQ_RESULTS:
		if (c->st == C_SETUP)
			setup_done(c);
		else if (c->st == C_ROLLBACK) {
			if (dis__pq_check(c->pq, NULL) >= 0) {
				conn_lost(c, dis__pq_errmsg(c->pq));
			} else {
				c->n = 0;
				c->st = C_IDLE;
				pump(a);
			}
		} else {
			pipeline_done(c);
		}
		break;
	case DIS__PQ_LOST: conn_lost(c, dis__pq_errmsg(c->pq)); break;
	case DIS__PQ_NOTIFY: {
		PGnotify *n;

		while ((n = dis__pq_notify(c->pq)) != NULL)
			PQfreemem(n);
		break;
	}
	}
	deliver(a);
	leave(a);
}

static void on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
	conn *c = arg;
	dis_async *a = c->a;

	(void)fd;
	(void)what;
	a->depth++;
	if (c->st == C_DOWN && !a->dead)
		conn_start(c);
	deliver(a);
	leave(a);
}

static void on_job_timer(evutil_socket_t fd, short what, void *arg)
{
	job *j = arg;
	dis_async *a = j->a;

	(void)fd;
	(void)what;
	if (j->st != J_WAITING)
		return;
	j->st = J_QUEUED;
	jl_push(&a->queued, j);
	schedule_pump(a);
}

static void on_pump(evutil_socket_t fd, short what, void *arg)
{
	dis_async *a = arg;

	(void)fd;
	(void)what;
	a->depth++;
	a->pump_scheduled = false;
	pump(a);
	deliver(a);
	leave(a);
}

/* ---- the API ---- */

void dis_async_options_init(dis_async_options *o)
{
	if (!o)
		return;
	memset(o, 0, sizeof(*o));
	o->connections = 2;
	o->max_batch = 64;
	o->max_attempts = 5;
	o->retry_base_us = 1000;
	o->retry_max_us = 100000;
	o->application_name = "disintegrate-async";
	o->connect_timeout_ms = 10000;
	o->reconnect_min_ms = 100;
	o->reconnect_max_ms = 10000;
}

static void destroy(dis_async *a)
{
	for (unsigned i = 0; a->conns && i < a->nconns; i++) {
		conn *c = &a->conns[i];

		if (c->store)
			dis__store_rebind(c->store, NULL);
		dis_store_free(c->store);
		dis__pq_free(c->pq);
		if (c->timer)
			event_free(c->timer);
		cache_clear(c);
		free(c->stmts);
		free(c->slots);
		free(c->names);
	}
	free(a->conns);
	if (a->ev_pump)
		event_free(a->ev_pump);
	free(a->locks);
	dis__buf_free(&a->keys);
	dis__buf_free(&a->excl);
	dis__buf_free(&a->notify);
	free(a->conninfo);
	free(a->appname);
	free(a);
}

int dis_async_new(struct event_base *base, const char *conninfo,
		  const dis_schema *schema, const dis_async_options *opts,
		  dis_async **out, char *errbuf, size_t errlen)
{
	dis_async *a;
	struct timespec ts;
	int cap;

	if (!base || !schema || !out) {
		dis__errf(errbuf, errlen, "base, schema and out are required");
		return DIS_EINVAL;
	}
	a = calloc(1, sizeof(*a));
	if (!a) {
		dis__errf(errbuf, errlen, "out of memory");
		return DIS_ENOMEM;
	}
	if (opts)
		a->opts = *opts;
	else
		dis_async_options_init(&a->opts);
	if (a->opts.connections == 0 || a->opts.connections > 64 ||
	    a->opts.max_batch == 0 || a->opts.max_batch > 4096 ||
	    a->opts.max_attempts == 0) {
		free(a);
		dis__errf(errbuf, errlen,
			  "options: connections 1..64, max_batch 1..4096 and "
			  "max_attempts >= 1 are required");
		return DIS_EINVAL;
	}
	if (a->opts.retry_max_us < a->opts.retry_base_us)
		a->opts.retry_max_us = a->opts.retry_base_us;
	if (a->opts.reconnect_min_ms == 0)
		a->opts.reconnect_min_ms = 1;
	if (a->opts.reconnect_max_ms < a->opts.reconnect_min_ms)
		a->opts.reconnect_max_ms = a->opts.reconnect_min_ms;
	a->base = base;
	a->schema = schema;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	a->rng = dis__hash64(&a, sizeof(a),
			     (uint64_t)ts.tv_nsec ^
				     ((uint64_t)ts.tv_sec << 32)) |
		 1;
	dis__buf_init(&a->keys);
	dis__buf_init(&a->excl);
	dis__buf_init(&a->notify);
	a->conninfo = dis__strdup(conninfo ? conninfo : "");
	a->appname = dis__strdup(a->opts.application_name
					 ? a->opts.application_name
					 : "disintegrate-async");
	a->opts.application_name = NULL;
	a->ev_pump = event_new(base, -1, 0, on_pump, a);
	a->nconns = a->opts.connections;
	a->conns = calloc(a->nconns, sizeof(*a->conns));
	if (!a->conninfo || !a->appname || !a->ev_pump || !a->conns)
		goto nomem;
	/* The most statements one pipeline can hold. */
	cap = 4 * (int)a->opts.max_batch + 16 + STMT_CACHE;
	for (unsigned i = 0; i < a->nconns; i++) {
		conn *c = &a->conns[i];

		c->a = a;
		c->idx = (int)i;
		c->cap = cap;
		c->pq = dis__pq_new(base, on_pq, c);
		c->timer = evtimer_new(base, on_conn_timer, c);
		c->stmts = calloc((size_t)cap, sizeof(*c->stmts));
		c->slots = calloc((size_t)cap, sizeof(*c->slots));
		c->names = calloc((size_t)cap, sizeof(*c->names));
		if (!c->pq || !c->timer || !c->stmts || !c->slots || !c->names)
			goto nomem;
	}
	/* A failed attempt is retried from the loop (see conn_lost). */
	for (unsigned i = 0; i < a->nconns; i++)
		conn_start(&a->conns[i]);
	*out = a;
	return 0;

nomem:
	dis__errf(errbuf, errlen, "out of memory");
	destroy(a);
	return DIS_ENOMEM;
}

/* Cancels one job (not yet done) with DIS_ECANCELED. */
static void cancel(job *j, const char *why)
{
	if (j->timer)
		evtimer_del(j->timer);
	jl_remove(j);
	finish(j, DIS_ECANCELED, "%s", why);
}

/* Forgets a job in a connection's pipeline (its result is ignored). */
static void unslot(conn *c, job *j)
{
	for (int i = 0; i < c->n; i++)
		if (c->slots[i].j == j)
			c->slots[i].j = NULL;
}

void dis_async_stop(dis_async *a)
{
	job *j;

	if (!a || a->stopping)
		return;
	a->stopping = true;
	while ((j = a->queued.head) != NULL)
		cancel(j, "canceled: the runtime is stopping");
	while ((j = a->waiting.head) != NULL)
		cancel(j, "canceled: the runtime is stopping");
	while ((j = a->ready.head) != NULL)
		cancel(j, "canceled: the runtime is stopping");
	for (unsigned i = 0; i < a->nconns; i++) {
		conn *c = &a->conns[i];

		while ((j = c->loads.head) != NULL) {
			unslot(c, j);
			cancel(j, "canceled: the runtime is stopping");
		}
	}
	a->depth++;
	deliver(a);
	leave(a);
}

void dis_async_free(dis_async *a)
{
	job *j;

	if (!a || a->dead)
		return;
	a->stopping = true;
	a->dead = true;
	while ((j = a->queued.head) != NULL)
		cancel(j, "canceled: the runtime was freed");
	while ((j = a->waiting.head) != NULL)
		cancel(j, "canceled: the runtime was freed");
	while ((j = a->ready.head) != NULL)
		cancel(j, "canceled: the runtime was freed");
	for (unsigned i = 0; i < a->nconns; i++) {
		conn *c = &a->conns[i];

		while ((j = c->loads.head) != NULL) {
			unslot(c, j);
			cancel(j, "canceled: the runtime was freed");
		}
		while ((j = c->apps.head) != NULL) {
			unslot(c, j);
			cancel(j, "canceled while its append was in flight: "
				  "the outcome is unknown");
		}
	}
	/* Deliver every outcome, known or canceled; callbacks may not
	 * resurrect the runtime (submit fails once it is dead). */
	while ((j = a->done.head) != NULL)
		deliver_one(a, j);
	if (a->depth == 0)
		destroy(a);
}

int dis_async_submit(dis_async *a, dis_decision *d, dis_async_fn fn, void *arg)
{
	job *j;

	if (!a || !d || !fn)
		return DIS_EINVAL;
	if (a->stopping || a->dead)
		return DIS_ESTATE;
	if (dis_decision_schema(d) != a->schema)
		return DIS_EINVAL;
	j = calloc(1, sizeof(*j));
	if (!j)
		return DIS_ENOMEM;
	j->a = a;
	j->d = d;
	j->fn = fn;
	j->arg = arg;
	j->st = J_QUEUED;
	dis__sql_init(&j->load);
	jl_push(&a->queued, j);
	a->pending++;
	a->stats.submitted++;
	schedule_pump(a);
	return 0;
}

size_t dis_async_pending(const dis_async *a)
{
	return a ? a->pending : 0;
}

const char *dis_async_errmsg(const dis_async *a)
{
	if (!a)
		return "runtime is NULL";
	return a->errmsg[0] ? a->errmsg : "no error";
}

void dis_async_set_log(dis_async *a, dis_log_fn fn, void *arg)
{
	if (!a)
		return;
	a->log = fn;
	a->log_arg = arg;
	for (unsigned i = 0; i < a->nconns; i++) {
		char tag[32];

		snprintf(tag, sizeof(tag), "async connection %u", i);
		dis__pq_set_log(a->conns[i].pq, fn, arg, DIS_LOG_DEBUG, tag);
	}
}

void dis_async_get_stats(const dis_async *a, dis_async_stats *out)
{
	if (a && out)
		*out = a->stats;
}
