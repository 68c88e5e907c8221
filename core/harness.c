/*
 * The given/when/then harness: the decision maker over an in-memory log,
 * or over a real store, with checks that explain themselves.
 */
#include "decision-internal.h"
#include <disintegrate/harness.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

/* ---- the in-memory backend ---- */

typedef struct memver {
	size_t n; /* events in the log when the load ran */
	char text[24];
} memver;

typedef struct memlog {
	const dis_schema *schema;
	dis_event **evs;
	size_t n;
	size_t cap;
	dis__snaprow *snaps;
	size_t nsnaps;
	char errmsg[DIS_ERRMSG_LEN];
} memlog;

static int mem_push(memlog *log, const dis_event *ev, dis_event *stored)
{
	dis_event *copy;
	dis_position pos;
	int rc;

	if (log->n == log->cap) {
		size_t cap = log->cap ? log->cap * 2 : 16;
		dis_event **ne = realloc(log->evs, cap * sizeof(*ne));

		if (!ne)
			return DIS_ENOMEM;
		log->evs = ne;
		log->cap = cap;
	}
	if ((rc = dis_event_copy(ev, &copy)))
		return rc;
	pos.tx = (uint64_t)log->n + 1;
	pos.id = (int64_t)log->n + 1;
	dis__event_set_stored(copy, pos.id, pos);
	if (stored)
		dis__event_set_stored(stored, pos.id, pos);
	log->evs[log->n++] = copy;
	return 0;
}

static void mem_clear(memlog *log)
{
	for (size_t i = 0; i < log->n; i++)
		dis_event_free(log->evs[i]);
	log->n = 0;
	for (size_t i = 0; i < log->nsnaps; i++) {
		free((char *)log->snaps[i].name);
		free((char *)log->snaps[i].query);
		dis__snaprow_clear(&log->snaps[i]);
	}
	free(log->snaps);
	log->snaps = NULL;
	log->nsnaps = 0;
}

static int mem_version(memlog *log, void **out)
{
	memver *v = malloc(sizeof(*v));

	if (!v)
		return DIS_ENOMEM;
	v->n = log->n;
	snprintf(v->text, sizeof(v->text), "%zu", v->n);
	*out = v;
	return 0;
}

static int mem_load(void *self, const dis_query *q, const void *since,
		    dis_event_fn fn, void *arg, void **version)
{
	memlog *log = self;
	const memver *from = since;
	size_t n = log->n;
	int rc;

	if ((rc = dis_query_check(q))) {
		dis__errf(log->errmsg, sizeof(log->errmsg), "query: %s",
			  dis_query_errmsg(q));
		return rc;
	}
	for (size_t i = from ? from->n : 0; i < n; i++) {
		if (!dis_query_matches(q, log->evs[i]))
			continue;
		if ((rc = fn(arg, log->evs[i])))
			return rc;
	}
	return mem_version(log, version);
}

static int mem_append(void *self, dis_event *const *evs, size_t n,
		      const dis_query *validation, const void *version,
		      void **next)
{
	memlog *log = self;
	const memver *v = version;
	int rc;

	if (validation) {
		for (size_t i = v ? v->n : 0; i < log->n; i++) {
			if (dis_query_matches(validation, log->evs[i])) {
				dis__errf(log->errmsg, sizeof(log->errmsg),
					  "event %zu (%s) matches the "
					  "validation query and was appended "
					  "since the load",
					  i + 1, dis_event_type(log->evs[i]));
				return DIS_ECONFLICT;
			}
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (dis_event_schema(evs[i]) != log->schema) {
			dis__errf(log->errmsg, sizeof(log->errmsg),
				  "event %zu is of another schema", i);
			return DIS_EINVAL;
		}
	}
	for (size_t i = 0; i < n; i++)
		if ((rc = mem_push(log, evs[i], evs[i])))
			return rc;
	if (next && mem_version(log, next))
		*next = NULL;
	return 0;
}

static void mem_version_free(void *v)
{
	free(v);
}

static const char *mem_version_text(const void *v)
{
	return ((const memver *)v)->text;
}

static int mem_version_parse(void *self, const char *text, void **out)
{
	memlog *log = self;
	char *end;
	unsigned long long n = strtoull(text, &end, 10);
	memver *v;

	if (end == text || *end || n > log->n)
		return DIS_EINVAL;
	if (!(v = malloc(sizeof(*v))))
		return DIS_ENOMEM;
	v->n = (size_t)n;
	snprintf(v->text, sizeof(v->text), "%zu", v->n);
	*out = v;
	return 0;
}

static char *dup_or_null(const char *s)
{
	return s ? dis__strdup(s) : NULL;
}

static int snap_copy(dis__snaprow *dst, const dis__snaprow *src)
{
	dst->schema_fp = dup_or_null(src->schema_fp);
	dst->version = dup_or_null(src->version);
	dst->json = dup_or_null(src->json);
	dst->data = malloc(src->len ? src->len : 1);
	if (dst->data && src->len)
		memcpy(dst->data, src->data, src->len);
	dst->len = src->len;
	dst->last_id = src->last_id;
	dst->found = true;
	if (!dst->data || (src->schema_fp && !dst->schema_fp) ||
	    (src->version && !dst->version)) {
		dis__snaprow_clear(dst);
		return DIS_ENOMEM;
	}
	return 0;
}

static dis__snaprow *mem_snap_find(memlog *log, const char *name,
				   const char *query)
{
	for (size_t i = 0; i < log->nsnaps; i++)
		if (!strcmp(log->snaps[i].name, name) &&
		    !strcmp(log->snaps[i].query, query))
			return &log->snaps[i];
	return NULL;
}

static int mem_snap_fetch(void *self, dis__snaprow *rows, size_t n)
{
	memlog *log = self;

	for (size_t i = 0; i < n; i++) {
		const dis__snaprow *s =
			mem_snap_find(log, rows[i].name, rows[i].query);

		if (s && snap_copy(&rows[i], s))
			return DIS_ENOMEM;
	}
	return 0;
}

static int mem_snap_put(void *self, const dis__snaprow *row)
{
	memlog *log = self;
	dis__snaprow *s = mem_snap_find(log, row->name, row->query);
	dis__snaprow fresh;

	if (s && s->last_id > row->last_id &&
	    !strcmp(s->schema_fp ? s->schema_fp : "", row->schema_fp))
		return 0;
	memset(&fresh, 0, sizeof(fresh));
	if (snap_copy(&fresh, row))
		return DIS_ENOMEM;
	if (s) {
		dis__snaprow_clear(s);
		fresh.name = s->name;
		fresh.query = s->query;
		*s = fresh;
		return 0;
	}
	s = realloc(log->snaps, (log->nsnaps + 1) * sizeof(*s));
	if (!s) {
		dis__snaprow_clear(&fresh);
		return DIS_ENOMEM;
	}
	log->snaps = s;
	fresh.name = dis__strdup(row->name);
	fresh.query = dis__strdup(row->query);
	if (!fresh.name || !fresh.query) {
		free((char *)fresh.name);
		free((char *)fresh.query);
		dis__snaprow_clear(&fresh);
		return DIS_ENOMEM;
	}
	log->snaps[log->nsnaps++] = fresh;
	return 0;
}

static const char *mem_errmsg(void *self)
{
	return ((memlog *)self)->errmsg;
}

/* ---- the harness ---- */

typedef struct evlist {
	dis_event **evs;
	size_t n;
	size_t cap;
} evlist;

struct dis_harness {
	const dis_schema *schema;
	dis_store *store; /* NULL: in memory */
	memlog mem;
	dis_maker *maker;
	evlist given;     /* store mode: appended at `when` */
	evlist meanwhile; /* appended after the first load */
	size_t before;    /* events in the log before the decision's append */
	dis_decision *d;
	bool ran;
	char errmsg[DIS_ERRMSG_LEN];
};

static int hfail(dis_harness *h, int code, const char *fmt, ...)
	DIS_PRINTF(3, 4);

static int hfail(dis_harness *h, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	dis__verrf(h->errmsg, sizeof(h->errmsg), fmt, ap);
	va_end(ap);
	return code;
}

static int evlist_push(evlist *l, dis_event *ev)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		dis_event **ne = realloc(l->evs, cap * sizeof(*ne));

		if (!ne)
			return DIS_ENOMEM;
		l->evs = ne;
		l->cap = cap;
	}
	l->evs[l->n++] = ev;
	return 0;
}

static void evlist_clear(evlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		dis_event_free(l->evs[i]);
	l->n = 0;
}

static void evlist_free(evlist *l)
{
	evlist_clear(l);
	free(l->evs);
	l->evs = NULL;
	l->cap = 0;
}

/* Appends events without a check: to the memory log or the store. */
static int log_append(dis_harness *h, evlist *l, const char *what)
{
	int rc = 0;

	if (l->n == 0)
		return 0;
	if (!h->store) {
		for (size_t i = 0; i < l->n && rc == 0; i++)
			rc = mem_push(&h->mem, l->evs[i], NULL);
		if (rc)
			return hfail(h, rc, "%s: %s", what, dis_strerror(rc));
		return 0;
	}
	rc = dis_store_append(h->store, l->evs, l->n, NULL, NULL, NULL);
	if (rc)
		return hfail(h, rc, "%s: %s", what, dis_store_errmsg(h->store));
	return 0;
}

static int meanwhile_hook(void *arg, dis_decision *d, unsigned attempt)
{
	dis_harness *h = arg;

	(void)d;
	if (attempt != 1 || h->meanwhile.n == 0)
		return 0;
	return log_append(h, &h->meanwhile, "appending the meanwhile events");
}

static int harness_new(const dis_schema *schema, dis_store *store,
		       dis_harness **out)
{
	dis_harness *h;
	int rc;

	h = calloc(1, sizeof(*h));
	if (!h)
		return DIS_ENOMEM;
	h->schema = schema;
	h->store = store;
	h->mem.schema = schema;
	if (store) {
		rc = dis_maker_new(store, &h->maker);
	} else {
		dis__backend be = {
			.self = &h->mem,
			.load = mem_load,
			.append = mem_append,
			.version_free = mem_version_free,
			.version_text = mem_version_text,
			.version_parse = mem_version_parse,
			.snap_fetch = mem_snap_fetch,
			.snap_put = mem_snap_put,
			.errmsg = mem_errmsg,
		};
		rc = dis__maker_new_backend(&be, &h->maker);
	}
	if (rc) {
		free(h);
		return rc;
	}
	/* Conflicts in a test come from `meanwhile`: retry at once. */
	dis_maker_set_retry(h->maker, 5, 0, 0);
	dis__maker_set_hook(h->maker, meanwhile_hook, h);
	*out = h;
	return 0;
}

int dis_harness_new(const dis_schema *schema, dis_harness **out)
{
	if (!schema || !out)
		return DIS_EINVAL;
	return harness_new(schema, NULL, out);
}

int dis_harness_new_store(dis_store *store, dis_harness **out)
{
	if (!store || !out)
		return DIS_EINVAL;
	return harness_new(dis_store_schema(store), store, out);
}

static void clear_case(dis_harness *h)
{
	evlist_clear(&h->given);
	evlist_clear(&h->meanwhile);
	dis_decision_free(h->d);
	h->d = NULL;
	h->ran = false;
	h->before = 0;
	h->errmsg[0] = '\0';
}

void dis_harness_free(dis_harness *h)
{
	if (!h)
		return;
	clear_case(h);
	evlist_free(&h->given);
	evlist_free(&h->meanwhile);
	mem_clear(&h->mem);
	free(h->mem.evs);
	dis_maker_free(h->maker);
	free(h);
}

int dis_harness_reset(dis_harness *h)
{
	PGresult *res;
	int rc = 0;

	if (!h)
		return DIS_EINVAL;
	clear_case(h);
	if (!h->store) {
		mem_clear(&h->mem);
		return 0;
	}
	res = PQexec(dis_store_conn(h->store), "TRUNCATE event, snapshot");
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		rc = hfail(h, DIS_EPG, "emptying the store: %s",
			   PQresultErrorMessage(res));
	PQclear(res);
	return rc;
}

bool dis_harness_is_store(const dis_harness *h)
{
	return h && h->store;
}

const dis_schema *dis_harness_schema(const dis_harness *h)
{
	return h ? h->schema : NULL;
}

dis_maker *dis_harness_maker(dis_harness *h)
{
	return h ? h->maker : NULL;
}

const char *dis_harness_errmsg(const dis_harness *h)
{
	return h ? h->errmsg : "no harness";
}

const dis_decision *dis_harness_decision(const dis_harness *h)
{
	return h ? h->d : NULL;
}

static int event_from_json(dis_harness *h, const char *type, const char *json,
			   dis_event **out)
{
	char err[DIS_ERRMSG_LEN] = "";
	int rc;

	rc = dis_event_from_json(h->schema, type, json ? json : "{}", out, err,
				 sizeof(err));
	if (rc)
		return hfail(h, rc, "event %s %s: %s", type ? type : "(null)",
			     json ? json : "{}",
			     err[0] ? err : dis_strerror(rc));
	return 0;
}

static int given_to(dis_harness *h, evlist *l, dis_event *ev)
{
	int rc;

	if (h->ran) {
		dis_event_free(ev);
		return hfail(h, DIS_ESTATE,
			     "the decision already ran: reset "
			     "the harness for a new case");
	}
	if ((rc = evlist_push(l, ev))) {
		dis_event_free(ev);
		return hfail(h, rc, "out of memory");
	}
	return 0;
}

int dis_harness_given(dis_harness *h, const char *type, const char *json)
{
	dis_event *ev;
	int rc;

	if (!h || !type)
		return DIS_EINVAL;
	if ((rc = event_from_json(h, type, json, &ev)))
		return rc;
	return given_to(h, &h->given, ev);
}

int dis_harness_given_event(dis_harness *h, const dis_event *ev)
{
	dis_event *copy;
	int rc;

	if (!h || !ev)
		return DIS_EINVAL;
	if (dis_event_schema(ev) != h->schema)
		return hfail(h, DIS_EINVAL, "given event of another schema");
	if ((rc = dis_event_copy(ev, &copy)))
		return hfail(h, rc, "copying the given event");
	return given_to(h, &h->given, copy);
}

int dis_harness_meanwhile(dis_harness *h, const char *type, const char *json)
{
	dis_event *ev;
	int rc;

	if (!h || !type)
		return DIS_EINVAL;
	if ((rc = event_from_json(h, type, json, &ev)))
		return rc;
	return given_to(h, &h->meanwhile, ev);
}

/* Copies of the in-memory log's events, in order. */
static int mem_events(dis_harness *h, evlist *out)
{
	for (size_t i = 0; i < h->mem.n; i++) {
		dis_event *copy;
		int rc;

		if ((rc = dis_event_copy(h->mem.evs[i], &copy)))
			return hfail(h, rc, "copying the log");
		if ((rc = evlist_push(out, copy))) {
			dis_event_free(copy);
			return hfail(h, rc, "copying the log");
		}
	}
	return 0;
}

static int collect(void *arg, const dis_event *ev)
{
	evlist *l = arg;
	dis_event *copy;
	int rc;

	if ((rc = dis_event_copy(ev, &copy)))
		return rc;
	if ((rc = evlist_push(l, copy)))
		dis_event_free(copy);
	return rc;
}

static int read_log(dis_harness *h, evlist *out)
{
	dis_query *q = NULL;
	dis_filter *f;
	int rc;

	if (!h->store)
		return mem_events(h, out);
	if ((rc = dis_query_new(h->schema, &q)) ||
	    (rc = dis_query_add_filter(q, &f))) {
		dis_query_free(q);
		return hfail(h, rc, "building the log query");
	}
	rc = dis_store_load(h->store, q, collect, out, NULL);
	dis_query_free(q);
	if (rc)
		return hfail(h, rc, "reading the log: %s",
			     dis_store_errmsg(h->store));
	return 0;
}

static size_t log_count(dis_harness *h, int *rc)
{
	evlist l = {0};
	size_t n;

	*rc = read_log(h, &l);
	n = l.n;
	evlist_free(&l);
	return n;
}

int dis_harness_when(dis_harness *h, dis_decision *d)
{
	int rc;

	if (!h)
		return DIS_EINVAL;
	if (h->ran) {
		dis_decision_free(d);
		return hfail(h, DIS_ESTATE,
			     "the decision already ran: reset "
			     "the harness for a new case");
	}
	if (!d)
		return hfail(h, DIS_EINVAL,
			     "no decision (its constructor "
			     "failed?)");
	if (dis_decision_schema(d) != h->schema) {
		dis_decision_free(d);
		return hfail(h, DIS_EINVAL, "decision of another schema");
	}
	h->d = d;
	h->ran = true;
	if ((rc = log_append(h, &h->given, "appending the given events")))
		return rc;
	evlist_clear(&h->given);
	h->before = log_count(h, &rc) + h->meanwhile.n;
	if (rc)
		return rc;
	dis_maker_make(h->maker, d);
	return 0;
}

/* Text of a decision's outcome, for messages. */
static void outcome(const dis_harness *h, char *buf, size_t len)
{
	int rc = dis_decision_result(h->d);

	if (rc == DIS_EDOMAIN)
		snprintf(buf, len, "domain error %d: %s",
			 dis_decision_domain_code(h->d),
			 dis_decision_errmsg(h->d));
	else if (rc)
		snprintf(buf, len, "%s: %s", dis_strerror(rc),
			 dis_decision_errmsg(h->d));
	else
		snprintf(buf, len, "success with %zu event(s)",
			 dis_decision_event_count(h->d));
}

static int need_run(dis_harness *h)
{
	if (!h->ran || !h->d)
		return hfail(h, DIS_ESTATE,
			     "no decision ran (call "
			     "dis_harness_when first)");
	return 0;
}

static char *json_of(const dis_event *ev)
{
	char *json = NULL;

	if (dis_event_data_json(ev, &json))
		return NULL;
	return json;
}

static int mismatch(dis_harness *h, const char *what, size_t i,
		    const dis_event *want, const dis_event *got)
{
	char *wj = json_of(want), *gj = json_of(got);

	hfail(h, DIS_EINVAL, "%s %zu: expected %s %s, got %s %s", what, i,
	      dis_event_type(want), wj ? wj : "?", dis_event_type(got),
	      gj ? gj : "?");
	dis_free(wj);
	dis_free(gj);
	return DIS_EINVAL;
}

/*
 * The decision's events, then the log's tail: what the decision reports it
 * appended is what the log holds after the events that were there before.
 */
static int check_events(dis_harness *h, const dis_event *const *want, size_t n)
{
	size_t got = dis_decision_event_count(h->d);
	char buf[DIS_ERRMSG_LEN];
	evlist log = {0};
	int rc;

	if (dis_decision_result(h->d) != 0) {
		outcome(h, buf, sizeof(buf));
		return hfail(h, DIS_EINVAL, "expected %zu event(s), got %s", n,
			     buf);
	}
	if (got != n) {
		char *first = got ? json_of(dis_decision_event(h->d, 0)) : NULL;

		hfail(h, DIS_EINVAL, "expected %zu event(s), got %zu%s%s%s%s",
		      n, got, got ? ": first " : "",
		      got ? dis_event_type(dis_decision_event(h->d, 0)) : "",
		      got ? " " : "", first ? first : "");
		dis_free(first);
		return DIS_EINVAL;
	}
	for (size_t i = 0; i < n; i++)
		if (!dis_event_equal(want[i], dis_decision_event(h->d, i)))
			return mismatch(h, "event", i, want[i],
					dis_decision_event(h->d, i));
	if ((rc = read_log(h, &log)))
		return rc;
	if (log.n != h->before + n) {
		hfail(h, DIS_EINVAL,
		      "the log holds %zu event(s) after the "
		      "decision, expected %zu + %zu",
		      log.n, h->before, n);
		evlist_free(&log);
		return DIS_EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		if (!dis_event_equal(want[i], log.evs[h->before + i])) {
			rc = mismatch(h, "logged event", i, want[i],
				      log.evs[h->before + i]);
			evlist_free(&log);
			return rc;
		}
	}
	evlist_free(&log);
	return 0;
}

int dis_harness_then(dis_harness *h, ...)
{
	evlist want = {0};
	va_list ap;
	int rc;

	if (!h)
		return DIS_EINVAL;
	if ((rc = need_run(h)))
		return rc;
	va_start(ap, h);
	for (;;) {
		const char *type = va_arg(ap, const char *);
		const char *json;
		dis_event *ev;

		if (!type)
			break;
		json = va_arg(ap, const char *);
		if ((rc = event_from_json(h, type, json, &ev)))
			break;
		if ((rc = evlist_push(&want, ev))) {
			dis_event_free(ev);
			hfail(h, rc, "out of memory");
			break;
		}
	}
	va_end(ap);
	if (rc == 0)
		rc = check_events(h, (const dis_event *const *)want.evs,
				  want.n);
	evlist_free(&want);
	return rc;
}

int dis_harness_then_events(dis_harness *h, const dis_event *const *events,
			    size_t n)
{
	int rc;

	if (!h || (n && !events))
		return DIS_EINVAL;
	if ((rc = need_run(h)))
		return rc;
	return check_events(h, events, n);
}

int dis_harness_then_err(dis_harness *h, int code)
{
	char buf[DIS_ERRMSG_LEN];
	int rc;

	if (!h)
		return DIS_EINVAL;
	if ((rc = need_run(h)))
		return rc;
	if (dis_decision_result(h->d) == DIS_EDOMAIN &&
	    dis_decision_domain_code(h->d) == code)
		return 0;
	outcome(h, buf, sizeof(buf));
	return hfail(h, DIS_EINVAL, "expected domain error %d, got %s", code,
		     buf);
}

int dis_harness_then_status(dis_harness *h, int status)
{
	char buf[DIS_ERRMSG_LEN];
	int rc;

	if (!h)
		return DIS_EINVAL;
	if ((rc = need_run(h)))
		return rc;
	if (dis_decision_result(h->d) == status)
		return 0;
	outcome(h, buf, sizeof(buf));
	return hfail(h, DIS_EINVAL, "expected %s (%d), got %s",
		     dis_strerror(status), status, buf);
}

int dis_harness_then_assert(dis_harness *h, dis_harness_assert_fn fn, void *arg)
{
	char buf[DIS_ERRMSG_LEN];
	int rc;

	if (!h || !fn)
		return DIS_EINVAL;
	if ((rc = need_run(h)))
		return rc;
	if (dis_decision_result(h->d) != 0) {
		outcome(h, buf, sizeof(buf));
		return hfail(h, DIS_EINVAL, "expected success, got %s", buf);
	}
	if ((rc = fn(arg, h->d)) != 0)
		return hfail(h, DIS_EINVAL,
			     "the assertion callback refused "
			     "the outcome (%d)",
			     rc);
	return 0;
}
