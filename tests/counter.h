/*
 * A small domain shared by the decision and snapshot tests: counters that
 * are added to and reset, and a note type that no counter reads.
 */
#ifndef DIS_TEST_COUNTER_H
#define DIS_TEST_COUNTER_H

#include <stdlib.h>
#include <string.h>

#include <disintegrate/disintegrate.h>

static const char counter_avsc[] =
	"[{\"type\": \"record\", \"name\": \"Added\","
	"  \"disintegrate.streams\": [\"Counter\"], \"fields\": ["
	"  {\"name\": \"counter_id\", \"type\": \"string\","
	"   \"disintegrate.id\": true},"
	"  {\"name\": \"n\", \"type\": \"long\"}]},"
	" {\"type\": \"record\", \"name\": \"Reset\","
	"  \"disintegrate.streams\": [\"Counter\"], \"fields\": ["
	"  {\"name\": \"counter_id\", \"type\": \"string\","
	"   \"disintegrate.id\": true}]},"
	" {\"type\": \"record\", \"name\": \"Noted\", \"fields\": ["
	"  {\"name\": \"note\", \"type\": \"string\"}]}]";

/* history is owned (mutate allocates it): exercises destroy. */
struct counter {
	const char *id;
	int64_t total;
	int64_t count;
	int64_t *history;
	size_t nhistory;
};

/* How often the callbacks ran, and switches to misbehave. */
static int counter_mutations;
static int counter_destroys;
static bool counter_refuse_snapshot;
static bool counter_wide_query; /* the query also reads Noted events */

static int counter_query(const void *state, dis_query *q)
{
	const struct counter *c = state;
	dis_filter *f;
	int rc;

	if ((rc = dis_query_add_filter(q, &f)))
		return rc;
	dis_filter_stream(f, "Counter");
	dis_filter_where_string(f, "counter_id", c->id);
	if (counter_wide_query) {
		dis_query_add_filter(q, &f);
		dis_filter_type(f, "Noted");
	}
	return dis_query_check(q);
}

static int counter_push(struct counter *c, int64_t v)
{
	int64_t *h = realloc(c->history, (c->nhistory + 1) * sizeof(*h));

	if (!h)
		return DIS_ENOMEM;
	c->history = h;
	c->history[c->nhistory++] = v;
	return 0;
}

static int counter_mutate(void *state, const dis_event *ev)
{
	struct counter *c = state;
	int64_t n = 0;

	counter_mutations++;
	if (strcmp(dis_event_type(ev), "Reset") == 0) {
		c->total = 0;
	} else if (strcmp(dis_event_type(ev), "Added") == 0) {
		if (dis_event_get_long(ev, "n", &n))
			return DIS_EINVAL;
		c->total += n;
	}
	c->count++;
	return counter_push(c, n);
}

static void counter_destroy(void *state)
{
	struct counter *c = state;

	counter_destroys++;
	free(c->history);
	c->history = NULL;
	c->nhistory = 0;
}

static int counter_save(const void *state, dis_event *rec)
{
	const struct counter *c = state;
	int rc = dis_event_set_long(rec, "total", c->total);

	return rc ? rc : dis_event_set_long(rec, "count", c->count);
}

static int counter_load(void *state, const dis_event *rec)
{
	struct counter *c = state;
	int rc;

	if (counter_refuse_snapshot)
		return DIS_ESERDE;
	rc = dis_event_get_long(rec, "total", &c->total);
	if (rc == 0)
		rc = dis_event_get_long(rec, "count", &c->count);
	/* Owned memory from a snapshot too: destroy must free it. */
	return rc ? rc : counter_push(c, -1);
}

#define COUNTER_SNAPSHOT_SCHEMA                                            \
	"{\"type\": \"record\", \"name\": \"CounterState\", \"fields\": [" \
	"{\"name\": \"total\", \"type\": \"long\"},"                       \
	"{\"name\": \"count\", \"type\": \"long\"}]}"

static const dis_state_def counter_def = {
	.name = "Counter",
	.size = sizeof(struct counter),
	.query = counter_query,
	.mutate = counter_mutate,
	.destroy = counter_destroy,
	.snapshot_schema = COUNTER_SNAPSHOT_SCHEMA,
	.snapshot_save = counter_save,
	.snapshot_load = counter_load,
};

/* The same state with another snapshot schema (an added field). */
static const dis_state_def counter_def_v2 = {
	.name = "Counter",
	.size = sizeof(struct counter),
	.query = counter_query,
	.mutate = counter_mutate,
	.destroy = counter_destroy,
	.snapshot_schema =
		"{\"type\": \"record\", \"name\": \"CounterState\", \"fields\": ["
		"{\"name\": \"total\", \"type\": \"long\"},"
		"{\"name\": \"count\", \"type\": \"long\"},"
		"{\"name\": \"unit\", \"type\": \"string\", \"default\": \"\"}]}",
	.snapshot_save = counter_save,
	.snapshot_load = counter_load,
};

/* Decisions. */

struct add_params {
	int64_t n;
	int64_t limit; /* refuse (domain error 7) past this total; 0: none */
	bool emit_nothing;
	bool emit_unknown;
	int fail_with; /* process returns this */
	const char *other_id; /* also add 100 * n to this counter */
};

static int add_process(dis_ctx *ctx, const void *const *states,
		       const void *params)
{
	const struct add_params *p = params;
	const struct counter *c = states[0];
	dis_event *ev;
	int rc;

	if (p->fail_with)
		return p->fail_with;
	if (p->limit && c->total + p->n > p->limit)
		return dis_ctx_fail(ctx, 7,
				    "counter %s at %lld: adding %lld "
				    "passes %lld",
				    c->id, (long long)c->total, (long long)p->n,
				    (long long)p->limit);
	if (p->emit_nothing)
		return 0;
	if (p->emit_unknown)
		dis_ctx_emit(ctx, "NoSuchType", &ev);
	if (p->other_id &&
	    ((rc = dis_ctx_emit(ctx, "Added", &ev)) ||
	     (rc = dis_event_set_string(ev, "counter_id", p->other_id)) ||
	     (rc = dis_event_set_long(ev, "n", 100 * p->n))))
		return rc;
	if ((rc = dis_ctx_emit(ctx, "Added", &ev)) ||
	    (rc = dis_event_set_string(ev, "counter_id", c->id)))
		return rc;
	return dis_event_set_long(ev, "n", p->n);
}

/* A decision adding n to counter `id` (the id string must outlive it). */
static int counter_add(const dis_schema *schema, const char *id,
		       const struct add_params *p, dis_decision **out)
{
	struct counter init = {.id = id};
	dis_decision *d;
	int rc;

	if ((rc = dis_decision_new(schema, "Add", add_process, p, sizeof(*p),
				   &d)))
		return rc;
	if ((rc = dis_decision_add_state(d, &counter_def, &init))) {
		dis_decision_free(d);
		return rc;
	}
	*out = d;
	return 0;
}

static int nothing_process(dis_ctx *ctx, const void *const *states,
			   const void *params)
{
	(void)ctx;
	(void)states;
	(void)params;
	return 0;
}

/* A decision that only reads counters `ids` (n of them) with `def`. */
static int counter_read(const dis_schema *schema, const dis_state_def *def,
			const char *const *ids, size_t n, dis_decision **out)
{
	dis_decision *d;
	int rc;

	if ((rc = dis_decision_new(schema, "Read", nothing_process, NULL, 0,
				   &d)))
		return rc;
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct counter init = {.id = ids[i]};

		rc = dis_decision_add_state(d, def, &init);
	}
	if (rc) {
		dis_decision_free(d);
		return rc;
	}
	*out = d;
	return 0;
}

static const struct counter *counter_at(const dis_decision *d, size_t i)
{
	return dis_decision_state(d, i);
}

#endif
