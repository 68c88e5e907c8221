/*
 * Policies: listeners whose handler makes decisions. The decision maker of
 * each event runs on the batch's store, so its loads read inside the batch
 * transaction and its append joins it: the emitted events commit with the
 * checkpoint, or not at all.
 */
#include "projections-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dis_policy {
	char *id;
	dis_query *query;
	dis_policy_fn fn;
	void *arg;
	bool retry_set;
	unsigned attempts, base_us, max_us;
	dis_maker_stats stats;
};

int dis_policy_new(const char *id, const dis_query *query, dis_policy_fn fn,
		   void *arg, dis_policy **out)
{
	dis_policy *p;

	if (!id || !*id || strlen(id) > DIS_LISTENER_ID_MAX || !query || !fn ||
	    !out || dis_query_check(query))
		return DIS_EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return DIS_ENOMEM;
	p->id = dis__strdup(id);
	if (!p->id || dis_query_copy(query, &p->query)) {
		free(p->id);
		free(p);
		return DIS_ENOMEM;
	}
	p->fn = fn;
	p->arg = arg;
	*out = p;
	return 0;
}

void dis_policy_free(dis_policy *p)
{
	if (!p)
		return;
	dis_query_free(p->query);
	free(p->id);
	free(p);
}

int dis_policy_set_retry(dis_policy *p, unsigned max_attempts, unsigned base_us,
			 unsigned max_us)
{
	if (!p || max_attempts < 1)
		return DIS_EINVAL;
	p->retry_set = true;
	p->attempts = max_attempts;
	p->base_us = base_us;
	p->max_us = max_us;
	return 0;
}

const char *dis_policy_id(const dis_policy *p)
{
	return p ? p->id : NULL;
}

const dis_query *dis_policy_query(const dis_policy *p)
{
	return p ? p->query : NULL;
}

static void add_stats(dis_maker_stats *sum, const dis_maker_stats *s)
{
	sum->decisions += s->decisions;
	sum->succeeded += s->succeeded;
	sum->domain_errors += s->domain_errors;
	sum->conflicts += s->conflicts;
	sum->retries += s->retries;
	sum->gave_up += s->gave_up;
	sum->events_read += s->events_read;
	sum->events_appended += s->events_appended;
	sum->snapshots_loaded += s->snapshots_loaded;
	sum->snapshots_ignored += s->snapshots_ignored;
	sum->snapshots_stored += s->snapshots_stored;
}

int dis_policy_handler(void *arg, dis_batch *batch, const dis_event *ev)
{
	dis_policy *p = arg;
	dis_maker *m;
	dis_maker_stats st;
	int rc;

	rc = dis_maker_new(dis_batch_store(batch), &m);
	if (rc)
		return dis_batch_fail(batch, rc, "policy %s: %s", p->id,
				      dis_strerror(rc));
	if (p->retry_set)
		dis_maker_set_retry(m, p->attempts, p->base_us, p->max_us);
	rc = p->fn(p->arg, m, ev);
	dis_maker_get_stats(m, &st);
	add_stats(&p->stats, &st);
	if (rc)
		dis_batch_fail(batch, rc, "policy %s: %s (%s)", p->id,
			       dis_strerror(rc), dis_maker_errmsg(m));
	dis_maker_free(m);
	return rc;
}

int dis_policy_attach(dis_policy *p, dis_runtime *rt,
		      const dis_listener_config *cfg)
{
	if (!p || !rt)
		return DIS_EINVAL;
	return dis_runtime_add_listener(rt, p->id, p->query, dis_policy_handler,
					p, cfg);
}

void dis_policy_get_stats(const dis_policy *p, dis_maker_stats *out)
{
	if (!out)
		return;
	memset(out, 0, sizeof(*out));
	if (p)
		*out = p->stats;
}
