/*
 * Decisions and the decision maker: load the states a decision needs, run
 * it, append what it emitted under the validation check, retry conflicts.
 */
#include "decision-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

/* ---- decisions ---- */

struct dis_ctx {
	dis_decision *d;
	int err; /* first failed emit: fails the decision whatever process says */
};

struct dstate {
	const dis_state_def *def;
	void *seed; /* the initial value */
	void *cur;  /* the loaded state */
	bool dirty; /* cur may own memory (destroy before reuse) */
	dis_query *query;
	char *query_text; /* canonical text, for snapshots; lazy */
	char *snap_fp;    /* what its snapshot must match; lazy */
	size_t applied;   /* events applied by the last load */
	int64_t last_id;  /* highest event id in the state */
	size_t group;     /* which load of the attempt feeds it */
	bool snapped;     /* started from a snapshot this attempt */
	void *since;      /* that snapshot's version */
};

struct dis_decision {
	const dis_schema *schema;
	char *name;
	dis_process_fn process;
	void *params;
	struct dstate *states;
	const void **curs; /* states[i].cur, as process receives them */
	size_t nstates;
	size_t cap;
	dis_query *validation; /* the user's, or NULL */
	dis_query *all;        /* union of the state queries; lazy */
	dis_event **events;
	size_t nevents;
	size_t evcap;
	char **strings;
	size_t nstrings;
	size_t strcap;
	int result;
	int domain_code;
	char errmsg[DIS_ERRMSG_LEN];
	void *version; /* of the attempt's first load */
	void (*version_free)(void *);
	bool store_version;
	unsigned attempts;
	size_t events_read;
	dis_ctx ctx;
};

int dis__decision_fail(dis_decision *d, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	dis__verrf(d->errmsg, sizeof(d->errmsg), fmt, ap);
	va_end(ap);
	d->result = code;
	return code;
}

int dis_decision_new(const dis_schema *schema, const char *name,
		     dis_process_fn process, const void *params,
		     size_t params_size, dis_decision **out)
{
	dis_decision *d;

	if (!schema || !process || !out || (params_size && !params))
		return DIS_EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return DIS_ENOMEM;
	d->schema = schema;
	d->process = process;
	d->name = dis__strdup(name ? name : "decision");
	if (params_size) {
		d->params = malloc(params_size);
		if (d->params)
			memcpy(d->params, params, params_size);
	}
	if (!d->name || (params_size && !d->params)) {
		free(d->name);
		free(d->params);
		free(d);
		return DIS_ENOMEM;
	}
	d->ctx.d = d;
	*out = d;
	return 0;
}

static void clear_events(dis_decision *d)
{
	for (size_t i = 0; i < d->nevents; i++)
		dis_event_free(d->events[i]);
	d->nevents = 0;
}

static void clear_version(dis_decision *d)
{
	if (d->version && d->version_free)
		d->version_free(d->version);
	d->version = NULL;
	d->version_free = NULL;
	d->store_version = false;
}

static void state_since_free(dis_decision *d, struct dstate *s)
{
	if (s->since && d->version_free)
		d->version_free(s->since);
	s->since = NULL;
}

/* Puts state s back to its initial value. */
static void state_reset(struct dstate *s)
{
	if (s->dirty && s->def->destroy)
		s->def->destroy(s->cur);
	memcpy(s->cur, s->seed, s->def->size);
	s->dirty = false;
	s->applied = 0;
	s->last_id = 0;
	s->snapped = false;
}

void dis_decision_free(dis_decision *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->nstates; i++) {
		struct dstate *s = &d->states[i];

		if (s->dirty && s->def->destroy)
			s->def->destroy(s->cur);
		state_since_free(d, s);
		free(s->seed);
		free(s->cur);
		dis_query_free(s->query);
		free(s->query_text);
		free(s->snap_fp);
	}
	clear_events(d);
	clear_version(d);
	for (size_t i = 0; i < d->nstrings; i++)
		free(d->strings[i]);
	free(d->strings);
	free(d->events);
	free(d->states);
	free(d->curs);
	dis_query_free(d->validation);
	dis_query_free(d->all);
	free(d->params);
	free(d->name);
	free(d);
}

static int check_def(dis_decision *d, const dis_state_def *def)
{
	if (!def || !def->name || !def->size || !def->query || !def->mutate)
		return dis__decision_fail(
			d, DIS_EINVAL,
			"state definition needs name, size, query and mutate");
	if (def->snapshot_schema &&
	    (!def->snapshot_save || !def->snapshot_load))
		return dis__decision_fail(
			d, DIS_EINVAL,
			"state %s: a snapshot schema needs snapshot_save and "
			"snapshot_load",
			def->name);
	return 0;
}

int dis_decision_add_state(dis_decision *d, const dis_state_def *def,
			   const void *init)
{
	struct dstate s;
	int rc;

	if (!d || !init)
		return DIS_EINVAL;
	if ((rc = check_def(d, def)))
		return rc;
	if (d->nstates == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 4;
		struct dstate *ns = realloc(d->states, cap * sizeof(*ns));
		const void **nc;

		if (!ns)
			return DIS_ENOMEM;
		d->states = ns;
		nc = realloc(d->curs, cap * sizeof(*nc));
		if (!nc)
			return DIS_ENOMEM;
		d->curs = nc;
		d->cap = cap;
	}
	memset(&s, 0, sizeof(s));
	s.def = def;
	s.seed = malloc(def->size);
	s.cur = malloc(def->size);
	if (!s.seed || !s.cur || dis_query_new(d->schema, &s.query) != 0) {
		free(s.seed);
		free(s.cur);
		return DIS_ENOMEM;
	}
	memcpy(s.seed, init, def->size);
	memcpy(s.cur, init, def->size);
	rc = def->query(s.seed, s.query);
	if (rc == 0)
		rc = dis_query_check(s.query);
	if (rc != 0) {
		dis__decision_fail(d, rc < 0 ? rc : DIS_EINVAL,
				   "state %s: query: %s", def->name,
				   dis_query_errmsg(s.query));
		free(s.seed);
		free(s.cur);
		dis_query_free(s.query);
		return d->result;
	}
	d->states[d->nstates] = s;
	d->curs[d->nstates] = s.cur;
	d->nstates++;
	dis_query_free(d->all);
	d->all = NULL;
	return 0;
}

int dis_decision_validation(dis_decision *d, dis_query **q)
{
	int rc;

	if (!d || !q)
		return DIS_EINVAL;
	if (!d->validation && (rc = dis_query_new(d->schema, &d->validation)))
		return rc;
	*q = d->validation;
	return 0;
}

const char *dis_decision_strdup(dis_decision *d, const char *s)
{
	char *copy;

	if (!d || !s)
		return NULL;
	if (d->nstrings == d->strcap) {
		size_t cap = d->strcap ? d->strcap * 2 : 4;
		char **ns = realloc(d->strings, cap * sizeof(*ns));

		if (!ns)
			return NULL;
		d->strings = ns;
		d->strcap = cap;
	}
	copy = dis__strdup(s);
	if (copy)
		d->strings[d->nstrings++] = copy;
	return copy;
}

void *dis_decision_params(dis_decision *d)
{
	return d ? d->params : NULL;
}

const char *dis_decision_name(const dis_decision *d)
{
	return d ? d->name : "";
}

const dis_schema *dis_decision_schema(const dis_decision *d)
{
	return d ? d->schema : NULL;
}

size_t dis_decision_state_count(const dis_decision *d)
{
	return d ? d->nstates : 0;
}

const void *dis_decision_state(const dis_decision *d, size_t i)
{
	return d && i < d->nstates ? d->states[i].cur : NULL;
}

const dis_query *dis_decision_state_query(const dis_decision *d, size_t i)
{
	return d && i < d->nstates ? d->states[i].query : NULL;
}

int dis_decision_result(const dis_decision *d)
{
	return d ? d->result : DIS_EINVAL;
}

int dis_decision_domain_code(const dis_decision *d)
{
	return d ? d->domain_code : 0;
}

const char *dis_decision_errmsg(const dis_decision *d)
{
	return d ? d->errmsg : "";
}

size_t dis_decision_event_count(const dis_decision *d)
{
	return d ? d->nevents : 0;
}

const dis_event *dis_decision_event(const dis_decision *d, size_t i)
{
	return d && i < d->nevents ? d->events[i] : NULL;
}

const dis_version *dis_decision_version(const dis_decision *d)
{
	return d && d->store_version ? (const dis_version *)d->version : NULL;
}

unsigned dis_decision_attempts(const dis_decision *d)
{
	return d ? d->attempts : 0;
}

size_t dis_decision_events_read(const dis_decision *d)
{
	return d ? d->events_read : 0;
}

void dis__decision_reset(dis_decision *d)
{
	for (size_t i = 0; i < d->nstates; i++) {
		state_reset(&d->states[i]);
		state_since_free(d, &d->states[i]);
	}
	clear_events(d);
	clear_version(d);
	d->events_read = 0;
	d->result = 0;
	d->domain_code = 0;
	d->errmsg[0] = '\0';
	d->ctx.err = 0;
}

const dis_query *dis__decision_all(dis_decision *d)
{
	if (d->all || d->nstates == 0)
		return d->all;
	if (d->nstates == 1)
		return d->states[0].query;
	if (dis_query_new(d->schema, &d->all) != 0)
		return NULL;
	for (size_t i = 0; i < d->nstates; i++) {
		if (dis_query_union(d->all, d->states[i].query) != 0) {
			dis_query_free(d->all);
			d->all = NULL;
			return NULL;
		}
	}
	return d->all;
}

const dis_query *dis__decision_validation(dis_decision *d)
{
	if (d->validation)
		return d->validation;
	return dis__decision_all(d);
}

dis_event *const *dis__decision_events(const dis_decision *d, size_t *n)
{
	*n = d->nevents;
	return d->events;
}

int dis__decision_process(dis_decision *d)
{
	int rc;

	clear_events(d);
	d->ctx.err = 0;
	d->domain_code = 0;
	d->errmsg[0] = '\0';
	rc = d->process(&d->ctx, (const void *const *)d->curs, d->params);
	if (d->ctx.err && rc != DIS_EDOMAIN) {
		/* A failed emit wins over a process that ignored it. */
		if (rc == 0 || !d->errmsg[0])
			return d->result = d->ctx.err;
		return d->result = rc;
	}
	if (rc == DIS_EDOMAIN) {
		if (!d->errmsg[0])
			dis__errf(d->errmsg, sizeof(d->errmsg),
				  "%s: domain error", d->name);
		clear_events(d);
		return d->result = DIS_EDOMAIN;
	}
	if (rc > 0)
		rc = DIS_EINVAL;
	if (rc != 0) {
		clear_events(d);
		if (!d->errmsg[0])
			dis__errf(d->errmsg, sizeof(d->errmsg),
				  "%s: process failed: %s", d->name,
				  dis_strerror(rc));
		return d->result = rc;
	}
	return d->result = 0;
}

/* ---- the process context ---- */

static int ctx_push(dis_ctx *ctx, dis_event *ev)
{
	dis_decision *d = ctx->d;

	if (d->nevents == d->evcap) {
		size_t cap = d->evcap ? d->evcap * 2 : 4;
		dis_event **ne = realloc(d->events, cap * sizeof(*ne));

		if (!ne) {
			dis_event_free(ev);
			return DIS_ENOMEM;
		}
		d->events = ne;
		d->evcap = cap;
	}
	d->events[d->nevents++] = ev;
	return 0;
}

static int ctx_error(dis_ctx *ctx, int rc, const char *what, const char *type,
		     const char *detail)
{
	if (!ctx->err) {
		ctx->err = rc;
		dis__errf(ctx->d->errmsg, sizeof(ctx->d->errmsg),
			  "%s: %s %s: %s", ctx->d->name, what,
			  type ? type : "(null)", detail);
	}
	return rc;
}

int dis_ctx_emit(dis_ctx *ctx, const char *type, dis_event **ev)
{
	dis_event *e = NULL;
	int rc;

	if (!ctx || !type)
		return DIS_EINVAL;
	rc = dis_event_new(ctx->d->schema, type, &e);
	if (rc)
		return ctx_error(ctx, rc, "cannot emit", type,
				 dis_strerror(rc));
	if ((rc = ctx_push(ctx, e)))
		return ctx_error(ctx, rc, "cannot emit", type,
				 dis_strerror(rc));
	if (ev)
		*ev = e;
	return 0;
}

int dis_ctx_emit_json(dis_ctx *ctx, const char *type, const char *json)
{
	char err[DIS_ERRMSG_LEN] = "";
	dis_event *e = NULL;
	int rc;

	if (!ctx || !type || !json)
		return DIS_EINVAL;
	rc = dis_event_from_json(ctx->d->schema, type, json, &e, err,
				 sizeof(err));
	if (rc)
		return ctx_error(ctx, rc, "cannot emit", type,
				 err[0] ? err : dis_strerror(rc));
	if ((rc = ctx_push(ctx, e)))
		return ctx_error(ctx, rc, "cannot emit", type,
				 dis_strerror(rc));
	return 0;
}

int dis_ctx_emit_copy(dis_ctx *ctx, const dis_event *ev)
{
	dis_event *e = NULL;
	int rc;

	if (!ctx || !ev)
		return DIS_EINVAL;
	if (dis_event_schema(ev) != ctx->d->schema)
		return ctx_error(ctx, DIS_EINVAL, "cannot emit",
				 dis_event_type(ev), "event of another schema");
	if ((rc = dis_event_copy(ev, &e)) || (rc = ctx_push(ctx, e)))
		return ctx_error(ctx, rc, "cannot emit", dis_event_type(ev),
				 dis_strerror(rc));
	return 0;
}

int dis_ctx_fail(dis_ctx *ctx, int code, const char *fmt, ...)
{
	va_list ap;

	if (!ctx)
		return DIS_EDOMAIN;
	ctx->d->domain_code = code;
	if (fmt) {
		va_start(ap, fmt);
		dis__verrf(ctx->d->errmsg, sizeof(ctx->d->errmsg), fmt, ap);
		va_end(ap);
	}
	return DIS_EDOMAIN;
}

const dis_schema *dis_ctx_schema(const dis_ctx *ctx)
{
	return ctx ? ctx->d->schema : NULL;
}

/* ---- the maker ---- */

/*
 * A decided state kept for the next decision on it (dis_maker_set_cache):
 * each state encoded with its snapshot schema as the decision saw it, the
 * events the decision appended, and the version that append left.
 * Restoring both gives exactly the states a load at that version gives.
 */
struct cache_entry {
	char *key; /* the states' definitions and queries */
	uint64_t hash;
	uint64_t used; /* the maker's tick at the last use */
	void *version;
	dis__buf *snaps; /* one per state */
	size_t nstates;
	dis_event **events;
	size_t nevents;
};

struct codec_slot {
	const dis_state_def *def;
	dis__snapcodec codec;
	bool ok;
};

struct dis_maker {
	dis__backend be;
	dis_store *store; /* NULL for other backends */
	unsigned max_attempts;
	unsigned base_us;
	unsigned max_us;
	bool snapshots;
	unsigned every;
	dis_log_fn log;
	void *log_arg;
	dis__maker_hook hook;
	void *hook_arg;
	uint64_t rng;
	struct codec_slot *codecs;
	size_t ncodecs;
	struct cache_entry *cache;
	size_t ncache;
	size_t cache_cap;
	uint64_t tick;
	dis_maker_stats stats;
	char errmsg[DIS_ERRMSG_LEN];
};

/* The store backend. */

static int st_load(void *self, const dis_query *q, const void *since,
		   dis_event_fn fn, void *arg, void **version)
{
	dis_version *v = NULL;
	int rc;

	if (since)
		rc = dis_store_load_since(self, q, since, fn, arg, &v);
	else
		rc = dis_store_load(self, q, fn, arg, &v);
	if (rc == 0)
		*version = v;
	else
		dis_version_free(v);
	return rc;
}

static int st_append(void *self, dis_event *const *evs, size_t n,
		     const dis_query *validation, const void *version,
		     void **next)
{
	dis_version *v = NULL;
	int rc = dis__store_append_next(self, evs, n, validation, version, NULL,
					next ? &v : NULL);

	if (next)
		*next = v;
	return rc;
}

static int st_version_plus(void *self, const void *version, const dis_event *ev,
			   void **out)
{
	dis_version *v;
	int rc = dis__version_after(dis_version_text(version),
				    dis_event_position(ev).tx, &v);

	(void)self;
	*out = v;
	return rc;
}

static void st_version_free(void *v)
{
	dis_version_free(v);
}

static const char *st_version_text(const void *v)
{
	return dis_version_text(v);
}

static int st_version_parse(void *self, const char *text, void **out)
{
	dis_version *v;
	int rc;

	(void)self;
	if ((rc = dis_version_parse(text, &v)))
		return rc;
	*out = v;
	return 0;
}

static int st_snap_fetch(void *self, dis__snaprow *rows, size_t n)
{
	return dis__snapshot_fetch(self, rows, n);
}

static int st_snap_put(void *self, const dis__snaprow *row)
{
	return dis__snapshot_put(self, row);
}

static bool st_snap_writable(void *self)
{
	return PQtransactionStatus(dis_store_conn(self)) == PQTRANS_IDLE;
}

static bool st_tx_failed(void *self)
{
	PGconn *c = dis_store_conn(self);

	return !c || PQtransactionStatus(c) == PQTRANS_INERROR ||
	       PQstatus(c) != CONNECTION_OK;
}

static const char *st_errmsg(void *self)
{
	return dis_store_errmsg(self);
}

static void maker_init(dis_maker *m)
{
	struct timespec ts;

	m->max_attempts = 5;
	m->base_us = 1000;
	m->max_us = 100000;
	m->every = 100;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	m->rng = dis__hash64(&m, sizeof(m),
			     (uint64_t)ts.tv_nsec ^
				     ((uint64_t)ts.tv_sec << 32)) |
		 1;
}

int dis__maker_new_backend(const dis__backend *be, dis_maker **out)
{
	dis_maker *m;

	if (!be || !out || !be->load || !be->append)
		return DIS_EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return DIS_ENOMEM;
	m->be = *be;
	maker_init(m);
	*out = m;
	return 0;
}

int dis_maker_new(dis_store *store, dis_maker **out)
{
	dis__backend be = {
		.self = store,
		.load = st_load,
		.append = st_append,
		.version_plus = st_version_plus,
		.version_free = st_version_free,
		.version_text = st_version_text,
		.version_parse = st_version_parse,
		.snap_fetch = st_snap_fetch,
		.snap_put = st_snap_put,
		.snap_writable = st_snap_writable,
		.tx_failed = st_tx_failed,
		.errmsg = st_errmsg,
		.store_versions = true,
	};
	dis_maker *m = NULL;
	int rc;

	if (!store || !out)
		return DIS_EINVAL;
	if ((rc = dis__maker_new_backend(&be, &m)))
		return rc;
	m->store = store;
	*out = m;
	return 0;
}

void dis_maker_free(dis_maker *m)
{
	if (!m)
		return;
	dis_maker_set_cache(m, 0);
	for (size_t i = 0; i < m->ncodecs; i++)
		dis__snapcodec_fini(&m->codecs[i].codec);
	free(m->codecs);
	free(m);
}

int dis_maker_set_retry(dis_maker *m, unsigned max_attempts, unsigned base_us,
			unsigned max_us)
{
	if (!m || max_attempts < 1)
		return DIS_EINVAL;
	m->max_attempts = max_attempts;
	m->base_us = base_us;
	m->max_us = max_us < base_us ? base_us : max_us;
	return 0;
}

void dis_maker_set_snapshots(dis_maker *m, bool enabled, unsigned every)
{
	if (!m)
		return;
	m->snapshots = enabled;
	m->every = every;
}

void dis_maker_set_log(dis_maker *m, dis_log_fn fn, void *arg)
{
	if (!m)
		return;
	m->log = fn;
	m->log_arg = arg;
}

void dis__maker_set_hook(dis_maker *m, dis__maker_hook fn, void *arg)
{
	m->hook = fn;
	m->hook_arg = arg;
}

const char *dis_maker_errmsg(const dis_maker *m)
{
	return m ? m->errmsg : "";
}

void dis_maker_get_stats(const dis_maker *m, dis_maker_stats *out)
{
	if (m && out)
		*out = m->stats;
}

dis_store *dis_maker_store(dis_maker *m)
{
	return m ? m->store : NULL;
}

static void mlog(dis_maker *m, dis_log_level level, const char *fmt, ...)
	DIS_PRINTF(3, 4);

static void mlog(dis_maker *m, dis_log_level level, const char *fmt, ...)
{
	char msg[DIS_ERRMSG_LEN];
	va_list ap;

	if (!m->log)
		return;
	va_start(ap, fmt);
	dis__verrf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	m->log(m->log_arg, level, msg);
}

/* Records a failure of the backend on the decision and the maker. */
static int backend_fail(dis_maker *m, dis_decision *d, int rc, const char *what)
{
	const char *detail = m->be.errmsg ? m->be.errmsg(m->be.self) : "";

	return dis__decision_fail(d, rc, "%s: %s: %s", d->name, what,
				  detail && *detail ? detail
						    : dis_strerror(rc));
}

/* Snapshots. */

static const dis__snapcodec *codec_for(dis_maker *m, const dis_state_def *def)
{
	struct codec_slot *slots;
	char err[DIS_ERRMSG_LEN];

	for (size_t i = 0; i < m->ncodecs; i++)
		if (m->codecs[i].def == def)
			return m->codecs[i].ok ? &m->codecs[i].codec : NULL;
	slots = realloc(m->codecs, (m->ncodecs + 1) * sizeof(*slots));
	if (!slots)
		return NULL;
	m->codecs = slots;
	slots = &m->codecs[m->ncodecs++];
	memset(slots, 0, sizeof(*slots));
	slots->def = def;
	slots->ok = dis__snapcodec_init(&slots->codec, def, err, sizeof(err)) ==
		    0;
	if (!slots->ok)
		mlog(m, DIS_LOG_WARN, "state %s: snapshots off: %s", def->name,
		     err);
	return slots->ok ? &slots->codec : NULL;
}

static bool snap_capable(dis_maker *m, const struct dstate *s)
{
	return m->snapshots && m->be.snap_fetch && s->def->snapshot_schema;
}

static const char *state_query_text(struct dstate *s)
{
	if (!s->query_text && dis_query_describe(s->query, &s->query_text))
		s->query_text = NULL;
	return s->query_text;
}

/*
 * What a stored snapshot must match besides its name and query text: the
 * fingerprint of the state's record schema, then a hash of the query's
 * load statement. The text does not say which types an equality applies
 * to (those declaring its id): after the event schema changes, the same
 * text may select other events, and a snapshot built before must not be
 * reused.
 */
static const char *state_snap_fp(struct dstate *s, const dis__snapcodec *c)
{
	dis__sql sql;
	uint64_t h;
	char buf[80];

	if (s->snap_fp)
		return s->snap_fp;
	dis__sql_init(&sql);
	if (dis__load_sql(s->query, NULL, &sql) || sql.oom || sql.text.oom) {
		dis__sql_free(&sql);
		return NULL;
	}
	h = dis__hash64_add(dis__hash64_start(0), sql.text.data, sql.text.len);
	for (int i = 0; i < sql.nparams; i++)
		h = sql.params[i] ? dis__hash64_add(h, sql.params[i],
						    strlen(sql.params[i]) + 1)
				  : dis__hash64_add(h, "\xff", 1);
	snprintf(buf, sizeof(buf), "%s/%016" PRIx64, c->fp, dis__hash64_end(h));
	dis__sql_free(&sql);
	s->snap_fp = dis__strdup(buf);
	return s->snap_fp;
}

/*
 * Starts each snapshot-capable state from its stored snapshot, when one
 * exists for the same name and query and decodes with the same schema.
 * Anything wrong with a snapshot leaves the state at its initial value.
 */
static int snapshots_load(dis_maker *m, dis_decision *d)
{
	dis__snaprow *rows;
	size_t *idx;
	size_t n = 0;
	int rc = 0;

	rows = calloc(d->nstates, sizeof(*rows));
	idx = calloc(d->nstates, sizeof(*idx));
	if (!rows || !idx) {
		free(rows);
		free(idx);
		return dis__decision_fail(d, DIS_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < d->nstates; i++) {
		struct dstate *s = &d->states[i];

		if (!snap_capable(m, s) || !codec_for(m, s->def) ||
		    !state_query_text(s) ||
		    !state_snap_fp(s, codec_for(m, s->def)))
			continue;
		rows[n].name = s->def->name;
		rows[n].query = s->query_text;
		idx[n++] = i;
	}
	if (n > 0)
		rc = m->be.snap_fetch(m->be.self, rows, n);
	if (rc != 0) {
		if (m->be.tx_failed && m->be.tx_failed(m->be.self)) {
			backend_fail(m, d, rc, "reading snapshots");
			goto out;
		}
		mlog(m, DIS_LOG_WARN, "%s: snapshots not read: %s", d->name,
		     m->be.errmsg ? m->be.errmsg(m->be.self) : "");
		rc = 0;
		n = 0;
	}
	for (size_t k = 0; k < n; k++) {
		struct dstate *s = &d->states[idx[k]];
		const dis__snapcodec *c = codec_for(m, s->def);
		char err[DIS_ERRMSG_LEN] = "";
		void *since = NULL;

		if (!rows[k].found)
			continue;
		if (!rows[k].schema_fp ||
		    strcmp(rows[k].schema_fp, s->snap_fp)) {
			dis__errf(err, sizeof(err),
				  "the state's schema or the query's meaning "
				  "under the event schema changed");
		} else if (!rows[k].version ||
			   m->be.version_parse(m->be.self, rows[k].version,
					       &since)) {
			dis__errf(err, sizeof(err), "bad version");
		} else {
			s->dirty = true;
			if (dis__snapshot_decode(c, s->cur, rows[k].data,
						 rows[k].len, err,
						 sizeof(err)) != 0 &&
			    !err[0])
				dis__errf(err, sizeof(err), "undecodable");
		}
		if (err[0]) {
			/* Ignore it entirely: rebuild from the start. */
			if (since)
				m->be.version_free(since);
			state_reset(s);
			m->stats.snapshots_ignored++;
			mlog(m, DIS_LOG_WARN, "state %s: snapshot ignored: %s",
			     s->def->name, err);
			continue;
		}
		s->snapped = true;
		s->since = since;
		s->last_id = rows[k].last_id;
		m->stats.snapshots_loaded++;
	}
out:
	for (size_t k = 0; k < d->nstates; k++)
		dis__snaprow_clear(&rows[k]);
	free(rows);
	free(idx);
	return rc;
}

static void snapshots_store(dis_maker *m, dis_decision *d, void **versions)
{
	if (!m->be.snap_put ||
	    (m->be.snap_writable && !m->be.snap_writable(m->be.self)))
		return;
	for (size_t i = 0; i < d->nstates; i++) {
		struct dstate *s = &d->states[i];
		const dis__snapcodec *c;
		char err[DIS_ERRMSG_LEN] = "";
		dis__snaprow row;
		dis__buf buf;
		int rc;

		if (!snap_capable(m, s) || s->applied <= m->every ||
		    !versions[s->group] || !(c = codec_for(m, s->def)) ||
		    !state_query_text(s) || !state_snap_fp(s, c))
			continue;
		memset(&row, 0, sizeof(row));
		dis__buf_init(&buf);
		rc = dis__snapshot_encode(c, s->cur, &buf, &row.json, err,
					  sizeof(err));
		if (rc == 0) {
			row.name = s->def->name;
			row.query = s->query_text;
			row.schema_fp = s->snap_fp;
			row.version =
				(char *)m->be.version_text(versions[s->group]);
			row.data = buf.data;
			row.len = buf.len;
			row.last_id = s->last_id;
			rc = m->be.snap_put(m->be.self, &row);
			if (rc)
				dis__errf(err, sizeof(err), "%s",
					  m->be.errmsg
						  ? m->be.errmsg(m->be.self)
						  : "");
		}
		if (rc == 0)
			m->stats.snapshots_stored++;
		else
			mlog(m, DIS_LOG_WARN,
			     "state %s: snapshot not stored: %s", s->def->name,
			     err);
		free(row.json);
		dis__buf_free(&buf);
	}
}

/* Loading. */

struct dispatch {
	dis_maker *m;
	dis_decision *d;
	size_t group;
	bool single; /* only one state in the group: the load matched it */
	int rc;
};

static int dispatch_event(void *arg, const dis_event *ev)
{
	struct dispatch *dp = arg;
	dis_decision *d = dp->d;

	d->events_read++;
	for (size_t i = 0; i < d->nstates; i++) {
		struct dstate *s = &d->states[i];
		int64_t id;
		int rc;

		if (s->group != dp->group)
			continue;
		if (!dp->single && !dis_query_matches(s->query, ev))
			continue;
		s->dirty = true;
		rc = s->def->mutate(s->cur, ev);
		if (rc != 0) {
			dis__decision_fail(
				d, rc < 0 ? rc : DIS_EINVAL,
				"state %s: mutate failed on %s event %lld",
				s->def->name, dis_event_type(ev),
				(long long)dis_event_id(ev));
			return dp->rc = d->result;
		}
		s->applied++;
		id = dis_event_id(ev);
		if (id > s->last_id)
			s->last_id = id;
	}
	return 0;
}

/* The state cache. */

static void cache_entry_free(dis_maker *m, struct cache_entry *e)
{
	free(e->key);
	if (e->version)
		m->be.version_free(e->version);
	for (size_t i = 0; i < e->nstates; i++)
		dis__buf_free(&e->snaps[i]);
	free(e->snaps);
	for (size_t i = 0; i < e->nevents; i++)
		dis_event_free(e->events[i]);
	free(e->events);
	memset(e, 0, sizeof(*e));
}

static void cache_drop(dis_maker *m, size_t i)
{
	cache_entry_free(m, &m->cache[i]);
	m->cache[i] = m->cache[--m->ncache];
}

/* The least recently used entry (the cache is not empty). */
static size_t cache_lru(const dis_maker *m)
{
	size_t lru = 0;

	for (size_t i = 1; i < m->ncache; i++)
		if (m->cache[i].used < m->cache[lru].used)
			lru = i;
	return lru;
}

/*
 * The key of the decision's states, or NULL when the cache cannot serve
 * it: a state without a snapshot schema (the maker can copy a state only
 * through it), or a caller's open transaction (the check skips that
 * transaction's own events, which a state cached before it has not seen).
 */
static char *cache_key(dis_maker *m, dis_decision *d)
{
	dis__buf b;

	if (!m->cache_cap || d->nstates == 0 ||
	    (m->be.snap_writable && !m->be.snap_writable(m->be.self)))
		return NULL;
	dis__buf_init(&b);
	for (size_t i = 0; i < d->nstates; i++) {
		struct dstate *s = &d->states[i];

		if (!s->def->snapshot_schema || !codec_for(m, s->def) ||
		    !state_query_text(s)) {
			dis__buf_free(&b);
			return NULL;
		}
		dis__buf_printf(&b, "%p %s\x1f%s\x1e", (const void *)s->def,
				s->def->name, s->query_text);
	}
	return b.oom ? (dis__buf_free(&b), NULL) : dis__buf_take(&b);
}

static uint64_t cache_hash(const char *key)
{
	return dis__hash64(key, strlen(key), 0);
}

/* The entry of `key`, whose cache_hash is `h`, marked as used now. */
static struct cache_entry *cache_find(dis_maker *m, const char *key, uint64_t h)
{
	for (size_t i = 0; i < m->ncache; i++)
		if (m->cache[i].hash == h && !strcmp(m->cache[i].key, key)) {
			m->cache[i].used = ++m->tick;
			return &m->cache[i];
		}
	return NULL;
}

/* Starts the states from the entry instead of a load. */
static int cache_restore(dis_maker *m, dis_decision *d,
			 const struct cache_entry *e)
{
	/* Not `single`: the entry's events are the decision's own, which
	 * need not match any state's query. */
	struct dispatch dp = {m, d, 0, false, 0};
	char err[DIS_ERRMSG_LEN] = "";
	int rc = 0;

	for (size_t i = 0; i < d->nstates && rc == 0; i++) {
		struct dstate *s = &d->states[i];

		s->group = 0;
		s->dirty = true;
		rc = dis__snapshot_decode(codec_for(m, s->def), s->cur,
					  e->snaps[i].data, e->snaps[i].len,
					  err, sizeof(err));
	}
	for (size_t i = 0; i < e->nevents && rc == 0; i++)
		rc = dispatch_event(&dp, e->events[i]);
	d->events_read = 0; /* none came from the log */
	if (rc == 0)
		rc = m->be.version_parse(m->be.self,
					 m->be.version_text(e->version),
					 &d->version);
	if (rc != 0)
		return dis__decision_fail(d, rc, "%s: cached state: %s",
					  d->name,
					  err[0] ? err : dis_strerror(rc));
	d->version_free = m->be.version_free;
	d->store_version = m->be.store_versions;
	return 0;
}

/*
 * Keeps the decision's states as it saw them, its appended events and
 * `next` (taken over) under `key`, replacing the key's entry or else the
 * least recently used one when the cache is full.
 */
static void cache_store(dis_maker *m, dis_decision *d, const char *key,
			void *next)
{
	struct cache_entry e = {0}, *slot;
	char err[DIS_ERRMSG_LEN] = "";
	int rc = DIS_ENOMEM;

	e.version = next;
	if (!(e.key = dis__strdup(key)) ||
	    !(e.snaps = calloc(d->nstates, sizeof(*e.snaps))) ||
	    !(e.events = calloc(d->nevents, sizeof(*e.events))))
		goto out;
	e.hash = cache_hash(key);
	for (rc = 0; e.nstates < d->nstates && rc == 0; e.nstates++) {
		struct dstate *s = &d->states[e.nstates];

		dis__buf_init(&e.snaps[e.nstates]);
		rc = dis__snapshot_encode(codec_for(m, s->def), s->cur,
					  &e.snaps[e.nstates], NULL, err,
					  sizeof(err));
	}
	for (; e.nevents < d->nevents && rc == 0; e.nevents++)
		rc = dis_event_copy(d->events[e.nevents], &e.events[e.nevents]);
out:
	if (rc != 0) {
		mlog(m, DIS_LOG_WARN, "%s: state not cached: %s", d->name,
		     err[0] ? err : dis_strerror(rc));
		cache_entry_free(m, &e);
		return;
	}
	if (!(slot = cache_find(m, key, e.hash)) && m->ncache < m->cache_cap) {
		slot = &m->cache[m->ncache++];
		memset(slot, 0, sizeof(*slot));
	} else if (!slot) {
		slot = &m->cache[cache_lru(m)];
	}
	cache_entry_free(m, slot);
	*slot = e;
	slot->used = ++m->tick;
}

int dis_maker_set_cache(dis_maker *m, size_t entries)
{
	struct cache_entry *c;

	if (!m)
		return DIS_EINVAL;
	while (m->ncache > entries)
		cache_drop(m, cache_lru(m));
	if (entries == 0) {
		free(m->cache);
		m->cache = NULL;
	} else {
		if (!(c = realloc(m->cache, entries * sizeof(*c))))
			return DIS_ENOMEM;
		m->cache = c;
	}
	m->cache_cap = entries;
	return 0;
}

/*
 * Loads every state: one load over the union of the states without a
 * usable snapshot, then one load per snapshotted state of the events its
 * snapshot did not see. The decision's version is the first load's: every
 * later load sees at least what it saw, so an event any state missed is
 * one the first version did not see, and the append check catches it.
 */
static int load_states(dis_maker *m, dis_decision *d)
{
	size_t nplain = 0, ngroups = 1;
	dis_query *plainq = NULL;
	void **versions;
	int rc = 0;

	if (d->nstates == 0)
		return 0;
	if (m->snapshots && (rc = snapshots_load(m, d)))
		return rc;
	for (size_t i = 0; i < d->nstates; i++) {
		struct dstate *s = &d->states[i];

		if (s->snapped) {
			s->group = ngroups++;
		} else {
			s->group = 0;
			nplain++;
		}
	}
	versions = calloc(ngroups, sizeof(*versions));
	if (!versions)
		return dis__decision_fail(d, DIS_ENOMEM, "out of memory");
	for (size_t g = 0; g < ngroups && rc == 0; g++) {
		struct dispatch dp = {m, d, g, false, 0};
		const dis_query *q = NULL;
		const void *since = NULL;

		if (g == 0 && nplain == 0)
			continue;
		if (g == 0 && nplain == d->nstates) {
			q = dis__decision_all(d);
			dp.single = d->nstates == 1;
		} else if (g == 0) {
			if ((rc = dis_query_new(d->schema, &plainq)))
				break;
			for (size_t i = 0; i < d->nstates && rc == 0; i++)
				if (d->states[i].group == 0)
					rc = dis_query_union(
						plainq, d->states[i].query);
			q = plainq;
			dp.single = nplain == 1;
		} else {
			for (size_t i = 0; i < d->nstates; i++)
				if (d->states[i].group == g) {
					q = d->states[i].query;
					since = d->states[i].since;
				}
			dp.single = true;
		}
		if (rc == 0 && !q)
			rc = DIS_ENOMEM;
		if (rc != 0) {
			dis__decision_fail(d, rc, "%s: building the load query",
					   d->name);
			break;
		}
		rc = m->be.load(m->be.self, q, since, dispatch_event, &dp,
				&versions[g]);
		if (dp.rc != 0)
			rc = dp.rc; /* a mutate failed: result already set */
		else if (rc != 0)
			backend_fail(m, d, rc, "loading state");
		if (rc == 0 && !d->version) {
			d->version = versions[g];
			d->version_free = m->be.version_free;
			d->store_version = m->be.store_versions;
		}
	}
	m->stats.events_read += d->events_read;
	if (rc == 0 && m->snapshots)
		snapshots_store(m, d, versions);
	for (size_t g = 0; g < ngroups; g++)
		if (versions[g] && versions[g] != d->version)
			m->be.version_free(versions[g]);
	free(versions);
	dis_query_free(plainq);
	return rc;
}

/* The steps of one load over all states, for the asynchronous runtime. */

const dis_query *dis__decision_load_begin(dis_decision *d)
{
	for (size_t i = 0; i < d->nstates; i++)
		d->states[i].group = 0;
	return dis__decision_all(d);
}

int dis__decision_apply(dis_decision *d, const dis_event *ev)
{
	struct dispatch dp = {NULL, d, 0, d->nstates == 1, 0};

	dispatch_event(&dp, ev);
	return dp.rc;
}

void dis__decision_set_version(dis_decision *d, dis_version *v)
{
	clear_version(d);
	d->version = v;
	d->version_free = st_version_free;
	d->store_version = true;
}

void dis__decision_set_attempts(dis_decision *d, unsigned attempts)
{
	d->attempts = attempts;
}

void dis__decision_succeed(dis_decision *d)
{
	d->result = 0;
	d->errmsg[0] = '\0';
}

/* Full jitter: random in [0, min(max, base * 2^(attempt-1))]. */
static void backoff(dis_maker *m, unsigned attempt)
{
	uint64_t cap = m->base_us, x;
	struct timespec ts;

	for (unsigned i = 1; i < attempt && cap < m->max_us; i++)
		cap *= 2;
	if (cap > m->max_us)
		cap = m->max_us;
	if (cap == 0)
		return;
	x = m->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	m->rng = x;
	x = (x * 0x2545F4914F6CDD1DULL) % (cap + 1);
	ts.tv_sec = (time_t)(x / 1000000);
	ts.tv_nsec = (long)(x % 1000000) * 1000;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/*
 * One attempt: load the states (or restore them from `cached`), process,
 * append. *sent tells whether the append was sent. With a cache key, the
 * states are remembered with the version the append leaves.
 *
 * A cached attempt is checked against `wide` when the decision has a
 * validation query of its own: that query and every state's, so that the
 * check also catches what made a cached state stale. After a loaded
 * attempt checked by the decision's own (perhaps narrower) query, the
 * version kept is the load's plus the append's transaction: the insert's
 * snapshot could hold state events that query let through unseen.
 */
static int attempt_once(dis_maker *m, dis_decision *d, bool decide,
			const char *key, const struct cache_entry *cached,
			const dis_query *wide, bool *sent)
{
	const dis_query *validation;
	dis_event *const *evs;
	void *next = NULL;
	bool covered; /* the check covers every state's query */
	size_t n;
	int rc;

	*sent = false;
	dis__decision_reset(d);
	if (cached) {
		if ((rc = cache_restore(m, d, cached)))
			return rc;
		m->stats.cache_hits++;
	} else if ((rc = load_states(m, d))) {
		return rc;
	}
	if (m->hook && (rc = m->hook(m->hook_arg, d, d->attempts)))
		return dis__decision_fail(d, rc, "%s: hook failed", d->name);
	if (!decide)
		return 0;
	if ((rc = dis__decision_process(d)))
		return rc;
	evs = dis__decision_events(d, &n);
	if (n == 0)
		return 0;
	validation = dis__decision_validation(d);
	covered = !d->validation;
	if (cached && wide) {
		validation = wide;
		covered = true;
	}
	if (!validation && d->nstates > 0)
		return dis__decision_fail(d, DIS_ENOMEM, "out of memory");
	if (validation && (rc = dis_query_check(validation)))
		return dis__decision_fail(d, rc, "%s: validation query: %s",
					  d->name,
					  dis_query_errmsg(validation));
	*sent = true;
	rc = m->be.append(m->be.self, evs, n, validation, d->version,
			  key && covered ? &next : NULL);
	if (rc != 0)
		return backend_fail(m, d, rc, "appending");
	m->stats.events_appended += n;
	if (key && !covered && m->be.version_plus &&
	    m->be.version_plus(m->be.self, d->version, evs[0], &next))
		next = NULL;
	if (next)
		cache_store(m, d, key, next);
	return 0;
}

static int run(dis_maker *m, dis_decision *d, bool decide)
{
	const struct cache_entry *cached;
	unsigned free_attempt = 0; /* a stale cached one */
	dis_query *wide = NULL;
	char *key;
	bool sent;
	int rc;

	if (!m || !d)
		return DIS_EINVAL;
	if (decide)
		m->stats.decisions++;
	key = decide ? cache_key(m, d) : NULL;
	cached = key ? cache_find(m, key, cache_hash(key)) : NULL;
	/* Only an attempt on a cached state is checked against `wide`. */
	if (cached && d->validation &&
	    (dis_query_new(d->schema, &wide) ||
	     dis_query_union(wide, d->validation) || !dis__decision_all(d) ||
	     dis_query_union(wide, dis__decision_all(d)))) {
		free(key); /* out of memory: decide without the cache */
		key = NULL;
		cached = NULL;
	}
	d->attempts = 0;
	for (;;) {
		d->attempts++;
		rc = attempt_once(m, d, decide, key, cached, wide, &sent);
		if (cached && !(sent && rc == 0)) {
			/*
			 * Decided on a cached state that may be stale: a
			 * conflict says it was, a refusal or nothing to
			 * append may be its doing. Forget it and decide again
			 * on a load at once; that attempt is not counted
			 * against max_attempts. An append that failed
			 * otherwise may have committed: that error stands.
			 */
			cache_drop(m, (size_t)(cached - m->cache));
			cached = NULL;
			if (!sent || rc == DIS_ECONFLICT) {
				m->stats.cache_stale++;
				free_attempt = 1;
				continue;
			}
		}
		if (rc != DIS_ECONFLICT)
			break;
		m->stats.conflicts++;
		if (d->attempts - free_attempt >= m->max_attempts ||
		    (m->be.tx_failed && m->be.tx_failed(m->be.self))) {
			m->stats.gave_up++;
			dis__decision_fail(
				d, DIS_ECONFLICT,
				"%s: conflict: events matching the validation "
				"query were appended concurrently (%u attempt%s)",
				d->name, d->attempts,
				d->attempts == 1 ? "" : "s");
			break;
		}
		m->stats.retries++;
		mlog(m, DIS_LOG_DEBUG, "%s: conflict, retrying (attempt %u)",
		     d->name, d->attempts + 1);
		backoff(m, d->attempts - free_attempt);
	}
	free(key);
	dis_query_free(wide);
	d->result = rc;
	if (rc == 0) {
		d->errmsg[0] = '\0';
		m->errmsg[0] = '\0';
		if (decide)
			m->stats.succeeded++;
	} else {
		if (rc == DIS_EDOMAIN)
			m->stats.domain_errors++;
		dis__errf(m->errmsg, sizeof(m->errmsg), "%s", d->errmsg);
	}
	return rc;
}

int dis_maker_make(dis_maker *m, dis_decision *d)
{
	return run(m, d, true);
}

int dis_maker_load(dis_maker *m, dis_decision *d)
{
	return run(m, d, false);
}
