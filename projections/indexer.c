/*
 * The id indexer: a listener over the types declaring a domain id that
 * copies the id's value from each event's payload into the event table's
 * column where it is NULL (events stored before the field was an id).
 */
#include "projections-internal.h"

#include <event2/event.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dis_indexer {
	const dis_schema *schema;
	int id;
	char lid[DIS_LISTENER_ID_MAX + 1];
	char *update_sql;
	dis_query *query;
	uint64_t events;
	char *nulls_sql; /* counts the rows still to fill */
	dis__buf types;  /* text[] literal of the types declaring the id */
};

int dis_indexer_new(const dis_schema *schema, const char *id, dis_indexer **out)
{
	dis_indexer *ix;
	dis_filter *f;
	const char *name;
	char sql[256];
	int idx, rc;

	if (!schema || !id || !out)
		return DIS_EINVAL;
	idx = dis_schema_id_index(schema, id);
	if (idx < 0)
		return DIS_ENOTFOUND;
	name = dis_schema_id_name(schema, (size_t)idx);
	ix = calloc(1, sizeof(*ix));
	if (!ix)
		return DIS_ENOMEM;
	ix->schema = schema;
	ix->id = idx;
	snprintf(ix->lid, sizeof(ix->lid), DIS_INDEXER_PREFIX "%s", name);
	/* The name is a validated identifier. */
	snprintf(sql, sizeof(sql),
		 "UPDATE event SET \"%s\" = $1::%s WHERE event_id = $2::int8"
		 " AND \"%s\" IS NULL",
		 name,
		 dis_schema_id_type(schema, (size_t)idx) == DIS_ID_LONG ? "int8"
		 : dis_schema_id_type(schema, (size_t)idx) == DIS_ID_UUID
			 ? "uuid"
			 : "text",
		 name);
	ix->update_sql = dis__strdup(sql);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM event WHERE \"%s\" IS NULL"
		 " AND event_type = ANY($1::text[])",
		 name);
	ix->nulls_sql = dis__strdup(sql);
	rc = ix->update_sql && ix->nulls_sql ? dis_query_new(schema, &ix->query)
					     : DIS_ENOMEM;
	if (!rc)
		rc = dis_query_add_filter(ix->query, &f);
	for (size_t t = 0; !rc && t < dis_schema_type_count(schema); t++) {
		const char *type = dis_schema_type_name(schema, t);

		if (!dis_schema_type_has_id(schema, type, name))
			continue;
		rc = dis_filter_type(f, type);
		dis__buf_array_ident(&ix->types, type);
	}
	dis__buf_array_end(&ix->types);
	if (!rc)
		rc = dis_query_check(ix->query);
	if (!rc && !dis__buf_cstr(&ix->types))
		rc = DIS_ENOMEM;
	if (rc) {
		dis_indexer_free(ix);
		return rc;
	}
	*out = ix;
	return 0;
}

void dis_indexer_free(dis_indexer *ix)
{
	if (!ix)
		return;
	dis_query_free(ix->query);
	free(ix->update_sql);
	free(ix->nulls_sql);
	dis__buf_free(&ix->types);
	free(ix);
}

uint64_t dis_indexer_events(const dis_indexer *ix)
{
	return ix ? ix->events : 0;
}

static int index_handler(void *arg, dis_batch *batch, const dis_event *ev)
{
	dis_indexer *ix = arg;
	dis__idval v;
	char num[24], eid[24];
	const char *vals[2] = {NULL, eid};
	int rc;

	ix->events++;
	rc = dis__event_idval(ev, ix->id, &v);
	if (rc)
		return dis_batch_fail(batch, DIS_ESERDE,
				      "event %" PRId64 ": cannot read %s",
				      dis_event_id(ev), ix->lid);
	if (!v.present)
		return 0;
	if (v.type == DIS_ID_LONG) {
		snprintf(num, sizeof(num), "%" PRId64, v.num);
		vals[0] = num;
	} else {
		vals[0] = v.str;
	}
	snprintf(eid, sizeof(eid), "%" PRId64, dis_event_id(ev));
	/* Queued: no round trip per event. */
	return dis_batch_exec(batch, ix->update_sql, 2, vals, NULL, NULL);
}

int dis_indexer_attach(dis_indexer *ix, dis_runtime *rt,
		       const dis_listener_config *cfg)
{
	if (!ix || !rt)
		return DIS_EINVAL;
	return dis_runtime_add_listener(rt, ix->lid, ix->query, index_handler,
					ix, cfg);
}

/* ---- backfill ---- */

/* Rows of the id's types whose column is NULL. */
static int count_nulls(dis_indexer *ix, dis_store *store, uint64_t *out)
{
	const char *v[1] = {dis__buf_cstr(&ix->types)};
	PGresult *res = PQexecParams(dis_store_conn(store), ix->nulls_sql, 1,
				     NULL, v, NULL, NULL, 0);
	int rc = 0;

	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		*out = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	else
		rc = dis__store_pg_fail(store, res,
					"counting the rows to fill");
	PQclear(res);
	return rc;
}

typedef struct backfill {
	struct event_base *base;
	dis_runtime *rt;
	dis_position target;
	dis_position ck;
	int result;
	bool stopping;
	char *err;
	size_t errlen;
} backfill;

static void bf_stopped(void *arg, dis_runtime *rt, int status)
{
	backfill *b = arg;

	(void)rt;
	if (status && !b->result) {
		b->result = status;
		dis__errf(b->err, b->errlen, "stopping the indexer: %s",
			  dis_strerror(status));
	}
	event_base_loopbreak(b->base);
}

static void bf_stop(backfill *b)
{
	if (b->stopping)
		return;
	b->stopping = true;
	if (dis_runtime_stop(b->rt, bf_stopped, b))
		event_base_loopbreak(b->base);
}

static void bf_halted(void *arg, dis_runtime *rt, const char *id, int code,
		      const char *msg)
{
	backfill *b = arg;

	(void)rt;
	if (!b->result) {
		b->result = code ? code : DIS_EPG;
		dis__errf(b->err, b->errlen, "%s: %s", id, msg);
	}
	bf_stop(b);
}

static void bf_tick(evutil_socket_t fd, short what, void *arg)
{
	backfill *b = arg;
	dis_listener_stats *st = NULL;
	size_t n = 0;

	(void)fd;
	(void)what;
	if (b->stopping || dis_runtime_stats(b->rt, &st, &n) || n != 1) {
		dis_free(st);
		return;
	}
	b->ck = st->checkpoint;
	if (st->batches > 0 && dis_position_cmp(st->checkpoint, b->target) >= 0)
		bf_stop(b);
	dis_free(st);
}

int dis_index_backfill(const char *conninfo, const dis_schema *schema,
		       const char *id, dis_log_fn log, void *log_arg,
		       dis_index_report *report, char *errbuf, size_t errlen)
{
	char scratch[DIS_ERRMSG_LEN];
	backfill b = {0};
	dis_store *store = NULL;
	dis_indexer *ix = NULL;
	dis_listener_config cfg;
	struct event *timer = NULL;
	struct timeval tick = {0, 50 * 1000};
	double t0 = dis__mono_s();
	uint64_t nulls_before = 0, nulls_after = 0;
	bool built = false;
	int rc;

	b.err = errbuf ? errbuf : scratch;
	b.errlen = errbuf ? errlen : sizeof(scratch);
	if (!schema || !id) {
		dis__errf(b.err, b.errlen, "schema and id are required");
		return DIS_EINVAL;
	}
	rc = dis_indexer_new(schema, id, &ix);
	if (rc) {
		dis__errf(b.err, b.errlen,
			  rc == DIS_ENOTFOUND
				  ? "the schema declares no domain id \"%s\""
				  : "cannot index \"%s\"",
			  id);
		return rc;
	}
	rc = dis_store_open(conninfo, schema, &store, b.err, b.errlen);
	if (!rc) {
		dis_store_set_log(store, log, log_arg);
		rc = dis_store_migrate(store);
		if (!rc)
			rc = dis_store_head(store, &b.target);
		if (!rc)
			rc = count_nulls(ix, store, &nulls_before);
		if (rc)
			dis__errf(b.err, b.errlen, "%s",
				  dis_store_errmsg(store));
	}
	if (!rc) {
		b.base = event_base_new();
		rc = b.base ? dis_runtime_new(b.base, conninfo, schema, &b.rt,
					      b.err, b.errlen)
			    : DIS_ENOMEM;
	}
	if (!rc) {
		if (log)
			dis_runtime_set_log(b.rt, log, log_arg, DIS_LOG_INFO);
		dis_runtime_set_stopped_cb(b.rt, bf_halted, &b);
		dis_listener_config_init(&cfg);
		cfg.poll_interval_ms = 100;
		cfg.on_poison = DIS_POISON_STOP;
		cfg.retry.max_attempts = 3;
		cfg.retry.delay_ms = 100;
		rc = dis_indexer_attach(ix, b.rt, &cfg);
		if (rc)
			dis__errf(b.err, b.errlen, "%s",
				  dis_runtime_errmsg(b.rt));
	}
	if (!rc) {
		timer = event_new(b.base, -1, EV_PERSIST, bf_tick, &b);
		rc = timer && !event_add(timer, &tick) ? 0 : DIS_ENOMEM;
	}
	if (!rc && (rc = dis_runtime_start(b.rt)))
		dis__errf(b.err, b.errlen, "%s", dis_runtime_errmsg(b.rt));
	if (!rc) {
		event_base_dispatch(b.base);
		rc = b.result;
	}
	if (!rc && (rc = count_nulls(ix, store, &nulls_after)))
		dis__errf(b.err, b.errlen, "%s", dis_store_errmsg(store));
	if (!rc && (rc = dis__store_index_id(store, id, &built)))
		dis__errf(b.err, b.errlen, "%s", dis_store_errmsg(store));
	if (!rc && report) {
		report->events = ix->events;
		report->filled = nulls_before > nulls_after
					 ? nulls_before - nulls_after
					 : 0;
		report->position = b.ck;
		report->seconds = dis__mono_s() - t0;
		report->index_built = built;
	}
	dis_runtime_free(b.rt);
	if (timer)
		event_free(timer);
	if (b.base)
		event_base_free(b.base);
	dis_store_free(store);
	dis_indexer_free(ix);
	return rc;
}
