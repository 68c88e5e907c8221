/*
 * Rebuilding a projection without downtime.
 *
 *   1. prepare: take the projection's rebuild lock (a session advisory
 *      lock), read its recorded definition, create NAME__rebuild from the
 *      DDL, forget the rebuild listener's old row;
 *   2. build: a runtime of our own runs listener NAME:rebuild from the
 *      start of the log into NAME__rebuild, until it is a few events
 *      behind;
 *   3. swap, in one transaction: lock the rebuild listener's row and the
 *      rows of NAME's listeners (waiting for a batch in flight, keeping
 *      the next ones out), apply the last events, rename NAME to NAME__old
 *      and NAME__rebuild to NAME, move the checkpoints of NAME's listeners
 *      to the rebuilt position, drop the rebuild listener's row;
 *   4. drop NAME__old.
 * A lock timeout in the swap (a reader holding the table) rolls it back and
 * tries again.
 */
#include "projections-internal.h"

#include <event2/event.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SWAP_ATTEMPTS 20
#define CATCH_UP_LIMIT 1000
#define TICK_MS 100
#define PROGRESS_EVERY_S 0.2

typedef struct rb {
	const char *conninfo;
	const dis_schema *schema;
	const char *name;
	dis_rebuild_options o;
	dis_projection *p;
	char shadow[80];
	char old[80];
	char lid[DIS_LISTENER_ID_MAX + 1];
	dis_store *store;
	dis_rebuild_progress prog;
	double t0;
	double last_progress;
	char *err;
	size_t errlen;

	struct event_base *base;
	dis_runtime *rt;
	struct event *timer;
	int result;
	bool stopping;
	uint64_t caught_up; /* events applied during the swap */
} rb;

static int rb_fail(rb *r, int code, const char *fmt, ...) DIS_PRINTF(3, 4);

static int rb_fail(rb *r, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	dis__verrf(r->err, r->errlen, fmt, ap);
	va_end(ap);
	return code;
}

static void rb_log(rb *r, dis_log_level level, const char *fmt, ...)
	DIS_PRINTF(3, 4);

static void rb_log(rb *r, dis_log_level level, const char *fmt, ...)
{
	char msg[DIS_ERRMSG_LEN];
	va_list ap;

	if (!r->o.log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	r->o.log(r->o.log_arg, level, msg);
}

/* Reports progress; non-zero when the caller cancels. */
static int report(rb *r, const char *phase, bool force)
{
	double now = dis__mono_s();

	r->prog.phase = phase;
	r->prog.seconds = now - r->t0;
	if (!r->o.progress)
		return 0;
	if (!force && now - r->last_progress < PROGRESS_EVERY_S)
		return 0;
	r->last_progress = now;
	return r->o.progress(r->o.progress_arg, &r->prog);
}

static int exec_params(rb *r, const char *what, const char *sql, int n,
		       const char *const *vals, PGresult **out)
{
	PGconn *conn = dis_store_conn(r->store);
	PGresult *res = PQexecParams(conn, sql, n, NULL, vals, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);
	char msg[DIS_ERRMSG_LEN];
	int rc;

	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
		if (out)
			*out = res;
		else
			PQclear(res);
		return 0;
	}
	rc = dis__pq_fail(conn, res, what, msg, sizeof(msg));
	PQclear(res);
	return rb_fail(r, rc, "%s", msg);
}

static int exec_sql(rb *r, const char *what, const char *sql)
{
	return exec_params(r, what, sql, 0, NULL, NULL);
}

static void rollback(rb *r)
{
	PGconn *conn = dis_store_conn(r->store);

	if (PQtransactionStatus(conn) != PQTRANS_IDLE)
		PQclear(PQexec(conn, "ROLLBACK"));
}

/* ---- 1. prepare ---- */

static int lock_rebuild(rb *r)
{
	char key[24];
	const char *v[1] = {key};
	PGresult *res;
	int rc;

	snprintf(key, sizeof(key), "%" PRId64,
		 dis__projection_lock_key(r->name));
	rc = exec_params(r, "locking the rebuild",
			 "SELECT pg_try_advisory_lock($1::int8)", 1, v, &res);
	if (rc)
		return rc;
	rc = strcmp(PQgetvalue(res, 0, 0), "t")
		     ? rb_fail(r, DIS_ESTATE,
			       "another rebuild of projection %s is running",
			       r->name)
		     : 0;
	PQclear(res);
	return rc;
}

static int load_definition(rb *r)
{
	const char *v[1] = {r->name};
	PGresult *res;
	char why[DIS_ERRMSG_LEN];
	int rc;

	rc = exec_params(r, "looking for the projection table",
			 "SELECT to_regclass('" DIS__PROJECTION_TABLE
			 "') IS NOT NULL",
			 0, NULL, &res);
	if (rc)
		return rc;
	rc = strcmp(PQgetvalue(res, 0, 0), "t") ? DIS_ENOTFOUND : 0;
	PQclear(res);
	if (rc)
		return rb_fail(r, rc,
			       "no projection is installed in this database");
	rc = exec_params(r, "reading the projection",
			 "SELECT definition FROM " DIS__PROJECTION_TABLE
			 " WHERE name = $1",
			 1, v, &res);
	if (rc)
		return rc;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return rb_fail(r, DIS_ENOTFOUND,
			       "no projection \"%s\" is installed", r->name);
	}
	rc = dis_projection_from_json(r->schema, PQgetvalue(res, 0, 0), &r->p,
				      why, sizeof(why));
	PQclear(res);
	if (rc)
		return rb_fail(r, rc,
			       "projection %s: its recorded definition does "
			       "not fit the schema: %s",
			       r->name, why);
	if (!dis_projection_query(r->p))
		return rb_fail(r, DIS_EINVAL, "projection %s has no statements",
			       r->name);
	dis_projection_set_log(r->p, r->o.log, r->o.log_arg);
	return 0;
}

static int prepare(rb *r)
{
	const char *v[1] = {r->lid};
	char sql[256], *ddl;
	int rc;

	if ((rc = lock_rebuild(r)) || (rc = load_definition(r)))
		return rc;
	ddl = dis__projection_ddl(r->p, r->shadow);
	if (!ddl)
		return rb_fail(r, DIS_ENOMEM, "out of memory");
	rc = exec_sql(r, "preparing the rebuild", "BEGIN");
	snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS \"%s\", \"%s\"",
		 r->shadow, r->old);
	if (!rc)
		rc = exec_sql(r, "dropping a previous rebuild's tables", sql);
	if (!rc) {
		char msg[DIS_ERRMSG_LEN];

		/* The DDL may hold several statements: simple protocol. */
		rc = dis__pq_exec(dis_store_conn(r->store), ddl, msg,
				  sizeof(msg));
		if (rc)
			rb_fail(r, rc, "projection %s: creating %s: %s",
				r->name, r->shadow, msg);
	}
	if (!rc)
		rc = exec_params(r, "forgetting a previous rebuild",
				 "DELETE FROM event_listener WHERE id = $1", 1,
				 v, NULL);
	if (!rc)
		rc = exec_params(r, "forgetting a previous rebuild",
				 "DELETE FROM event_dead_letter"
				 " WHERE listener_id = $1",
				 1, v, NULL);
	if (!rc)
		rc = exec_sql(r, "preparing the rebuild", "COMMIT");
	if (rc)
		rollback(r);
	free(ddl);
	return rc;
}

/* ---- 2. build ---- */

static int rb_handler(void *arg, dis_batch *batch, const dis_event *ev)
{
	rb *r = arg;
	int rc = dis__projection_apply_batch(r->p, batch, r->shadow, ev);

	if (rc)
		return dis_batch_fail(batch, rc, "%s",
				      dis_projection_errmsg(r->p));
	return 0;
}

static void on_rt_stopped(void *arg, dis_runtime *rt, int status)
{
	rb *r = arg;

	(void)rt;
	if (status && !r->result)
		r->result = rb_fail(r, status,
				    "stopping the rebuild listener: %s",
				    dis_strerror(status));
	event_base_loopbreak(r->base);
}

static void stop_runtime(rb *r)
{
	if (r->stopping)
		return;
	r->stopping = true;
	if (dis_runtime_stop(r->rt, on_rt_stopped, r))
		event_base_loopbreak(r->base);
}

static void on_halted(void *arg, dis_runtime *rt, const char *id, int code,
		      const char *msg)
{
	rb *r = arg;

	(void)rt;
	(void)id;
	if (!r->result)
		r->result = rb_fail(r, code ? code : DIS_EPG,
				    "rebuilding projection %s: %s", r->name,
				    msg);
	stop_runtime(r);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	rb *r = arg;
	dis_listener_stats *st = NULL;
	size_t n = 0;

	(void)fd;
	(void)what;
	if (r->stopping)
		return;
	if (dis_runtime_stats(r->rt, &st, &n) || n != 1) {
		dis_free(st);
		return;
	}
	r->prog.events = st->events_handled;
	r->prog.events_behind = st->events_behind;
	r->prog.position = st->checkpoint;
	if (report(r, "building", false)) {
		r->result = rb_fail(r, DIS_ECANCELED, "rebuild canceled");
		stop_runtime(r);
	} else if (st->state == DIS_LISTENER_RUNNING && st->batches > 0 &&
		   st->events_behind <= (int64_t)r->o.swap_behind) {
		stop_runtime(r);
	}
	dis_free(st);
}

static int build(rb *r)
{
	dis_listener_config cfg;
	dis_runtime_options ro;
	struct timeval tick = {0, TICK_MS * 1000};
	char err[DIS_ERRMSG_LEN] = "";
	int rc;

	r->base = event_base_new();
	if (!r->base)
		return rb_fail(r, DIS_ENOMEM, "cannot create an event loop");
	rc = dis_runtime_new(r->base, r->conninfo, r->schema, &r->rt, err,
			     sizeof(err));
	if (rc)
		return rb_fail(r, rc, "%s", err);
	dis_runtime_options_init(&ro);
	ro.application_name = "disintegrate-rebuild";
	dis_runtime_set_options(r->rt, &ro);
	if (r->o.log)
		dis_runtime_set_log(r->rt, r->o.log, r->o.log_arg,
				    DIS_LOG_INFO);
	dis_runtime_set_stopped_cb(r->rt, on_halted, r);
	dis_listener_config_init(&cfg);
	cfg.fetch_size = r->o.fetch_size;
	cfg.poll_interval_ms = 200;
	cfg.on_poison = DIS_POISON_STOP;
	cfg.retry.kind = DIS_RETRY_EXPONENTIAL;
	cfg.retry.max_attempts = 3;
	cfg.retry.delay_ms = 100;
	cfg.retry.max_delay_ms = 1000;
	rc = dis_runtime_add_listener(r->rt, r->lid, dis_projection_query(r->p),
				      rb_handler, r, &cfg);
	if (rc)
		return rb_fail(r, rc, "%s", dis_runtime_errmsg(r->rt));
	r->timer = event_new(r->base, -1, EV_PERSIST, on_tick, r);
	if (!r->timer || event_add(r->timer, &tick))
		return rb_fail(r, DIS_ENOMEM, "cannot create a timer");
	if ((rc = dis_runtime_start(r->rt)))
		return rb_fail(r, rc, "%s", dis_runtime_errmsg(r->rt));
	rb_log(r, DIS_LOG_INFO, "projection %s: building %s", r->name,
	       r->shadow);
	event_base_dispatch(r->base);
	return r->result;
}

static void build_cleanup(rb *r)
{
	dis_runtime_free(r->rt);
	r->rt = NULL;
	if (r->timer)
		event_free(r->timer);
	r->timer = NULL;
	if (r->base)
		event_base_free(r->base);
	r->base = NULL;
}

/* ---- 3. swap ---- */

typedef struct catch_up {
	rb *r;
	size_t n;
	int rc;
} catch_up;

static int catch_up_event(void *arg, const dis_event *ev)
{
	catch_up *c = arg;
	int rc = dis_projection_apply(c->r->p, dis_store_conn(c->r->store),
				      c->r->shadow, ev);

	c->n++;
	if (rc)
		c->rc = rb_fail(c->r, rc, "%s", dis_projection_errmsg(c->r->p));
	return rc;
}

static void parse_position(const PGresult *res, int row, dis_position *pos)
{
	pos->tx = strtoull(PQgetvalue(res, row, 0), NULL, 10);
	pos->id = strtoll(PQgetvalue(res, row, 1), NULL, 10);
}

/*
 * What the DDL does not say but the live table has: its privileges, and
 * its owner when we may give the new table to it. Identifiers are quoted
 * by the server (format %I, quote_ident).
 */
static int carry_over(rb *r)
{
	char live[80];
	const char *v[2] = {live, r->shadow};
	PGresult *res = NULL;
	int rc;

	snprintf(live, sizeof(live), "\"%s\"", r->name);
	rc = exec_params(
		r, "reading the live table's privileges",
		"SELECT format('GRANT %s ON %I TO %s%s', a.privilege_type,"
		" $2::text, CASE WHEN a.grantee = 0 THEN 'PUBLIC'"
		" ELSE quote_ident(g.rolname) END,"
		" CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE ''"
		" END) FROM pg_class AS c CROSS JOIN LATERAL aclexplode(c.relacl)"
		" AS a LEFT JOIN pg_roles AS g ON g.oid = a.grantee"
		" WHERE c.oid = to_regclass($1::text) AND a.grantee <> c.relowner"
		" UNION ALL SELECT format('ALTER TABLE %I OWNER TO %I', $2::text,"
		" o.rolname) FROM pg_class AS c JOIN pg_roles AS o"
		" ON o.oid = c.relowner WHERE c.oid = to_regclass($1::text)"
		" AND o.rolname <> current_user"
		" AND pg_has_role(o.oid, 'MEMBER')",
		2, v, &res);
	for (int i = 0; !rc && i < PQntuples(res); i++)
		rc = exec_sql(r, "carrying privileges over",
			      PQgetvalue(res, i, 0));
	PQclear(res);
	return rc;
}

/* One attempt at the swap transaction. */
static int swap_once(rb *r, int *generation)
{
	const char *vl[1] = {r->lid};
	const char *vn[1] = {r->name};
	char sql[256], timeout[32], tx[24], id[24];
	PGresult *res = NULL, *ids = NULL;
	dis_position ck;
	catch_up c = {.r = r};
	int rc;

	snprintf(timeout, sizeof(timeout), "SET LOCAL lock_timeout = %" PRIu32,
		 r->o.lock_timeout_ms);
	rc = exec_sql(r, "starting the swap", "BEGIN");
	if (!rc)
		rc = exec_sql(r, "starting the swap", timeout);
	if (!rc)
		rc = exec_params(
			r, "locking the rebuild listener",
			"SELECT coalesce(checkpoint_tx, '0')::text,"
			" coalesce(checkpoint_id, 0)"
			" FROM event_listener WHERE id = $1 FOR UPDATE",
			1, vl, &res);
	if (!rc && PQntuples(res) != 1)
		rc = rb_fail(r, DIS_ENOTFOUND,
			     "the rebuild listener's row is gone");
	if (!rc)
		parse_position(res, 0, &ck);
	PQclear(res);
	res = NULL;
	/* The live listeners: NAME and its shards NAME#k/n. */
	if (!rc)
		rc = exec_params(r, "locking the projection's listeners",
				 "SELECT id FROM event_listener WHERE id = $1"
				 " OR left(id, length($1) + 1) = $1 || '#'"
				 " ORDER BY id FOR UPDATE",
				 1, vn, &ids);
	/* The last events, up to the barrier (our own transaction id bounds
	 * it now that we hold row locks). */
	while (!rc) {
		dis_position next;
		size_t before = c.n;

		rc = dis_store_read(r->store, dis_projection_query(r->p), ck,
				    CATCH_UP_LIMIT, catch_up_event, &c, &next);
		if (rc && !c.rc)
			rc = rb_fail(r, rc, "catching up: %s",
				     dis_store_errmsg(r->store));
		if (rc)
			break;
		ck = next;
		if (c.n - before < CATCH_UP_LIMIT)
			break;
	}
	if (!rc) {
		char quoted[80];
		const char *v[1] = {quoted};

		snprintf(quoted, sizeof(quoted), "\"%s\"", r->name);
		rc = exec_params(r, "looking for the live table",
				 "SELECT to_regclass($1) IS NOT NULL", 1, v,
				 &res);
	}
	if (!rc && !strcmp(PQgetvalue(res, 0, 0), "t")) {
		rc = carry_over(r);
		snprintf(sql, sizeof(sql),
			 "ALTER TABLE \"%s\" RENAME TO \"%s\"", r->name,
			 r->old);
		if (!rc)
			rc = exec_sql(r, "renaming the old table", sql);
	}
	PQclear(res);
	res = NULL;
	if (!rc) {
		snprintf(sql, sizeof(sql),
			 "ALTER TABLE \"%s\" RENAME TO \"%s\"", r->shadow,
			 r->name);
		rc = exec_sql(r, "renaming the new table", sql);
	}
	for (int i = 0; !rc && i < PQntuples(ids); i++) {
		rc = dis_listener_reset(r->store, PQgetvalue(ids, i, 0), ck);
		if (rc)
			rb_fail(r, rc, "moving the checkpoint of %s: %s",
				PQgetvalue(ids, i, 0),
				dis_store_errmsg(r->store));
	}
	snprintf(tx, sizeof(tx), "%" PRIu64, ck.tx);
	snprintf(id, sizeof(id), "%" PRId64, ck.id);
	if (!rc && PQntuples(ids) == 0) {
		const char *v[3] = {r->name, tx, id};

		rc = exec_params(r, "creating the projection's listener",
				 "INSERT INTO event_listener (id,"
				 " last_processed_event_id, checkpoint_tx,"
				 " checkpoint_id) VALUES ($1, $3::bigint,"
				 " $2::xid8, $3::bigint)",
				 3, v, NULL);
	}
	PQclear(ids);
	if (!rc)
		rc = exec_params(r, "dropping the rebuild listener",
				 "DELETE FROM event_listener WHERE id = $1", 1,
				 vl, NULL);
	if (!rc)
		rc = exec_params(r, "recording the rebuild",
				 "UPDATE " DIS__PROJECTION_TABLE
				 " SET generation = generation + 1,"
				 " rebuilt_at = now() WHERE name = $1"
				 " RETURNING generation",
				 1, vn, &res);
	if (!rc && PQntuples(res) == 1)
		*generation = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	if (!rc)
		rc = exec_sql(r, "committing the swap", "COMMIT");
	if (rc) {
		rollback(r);
		return rc;
	}
	r->caught_up += c.n;
	r->prog.position = ck;
	return 0;
}

static int swap(rb *r)
{
	int generation = 0, rc = 0;

	for (int attempt = 1; attempt <= SWAP_ATTEMPTS; attempt++) {
		if (report(r, "swapping", true))
			return rb_fail(r, DIS_ECANCELED, "rebuild canceled");
		rc = swap_once(r, &generation);
		if (rc != DIS_ETIMEDOUT)
			break;
		rb_log(r, DIS_LOG_WARN,
		       "projection %s: the swap waited %" PRIu32
		       " ms for a lock (attempt %d): %s",
		       r->name, r->o.lock_timeout_ms, attempt, r->err);
		usleep(100000u * (unsigned)(attempt < 10 ? attempt : 10));
	}
	if (!rc)
		rb_log(r, DIS_LOG_INFO,
		       "projection %s: generation %d in place (%" PRIu64
		       " events applied in the swap)",
		       r->name, generation, r->caught_up);
	return rc;
}

/* ---- 4. drop the old table ---- */

static void drop_old(rb *r)
{
	char sql[128], timeout[48];

	snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS \"%s\"", r->old);
	snprintf(timeout, sizeof(timeout), "SET LOCAL lock_timeout = %" PRIu32,
		 r->o.lock_timeout_ms);
	for (int attempt = 1; attempt <= SWAP_ATTEMPTS; attempt++) {
		int rc = exec_sql(r, "dropping the old table", "BEGIN");

		if (!rc)
			rc = exec_sql(r, "dropping the old table", timeout);
		if (!rc)
			rc = exec_sql(r, "dropping the old table", sql);
		if (!rc)
			rc = exec_sql(r, "dropping the old table", "COMMIT");
		if (!rc)
			return;
		rollback(r);
		if (rc != DIS_ETIMEDOUT)
			break;
		usleep(100000);
	}
	rb_log(r, DIS_LOG_WARN,
	       "projection %s: could not drop %s (the next rebuild will): "
	       "%s",
	       r->name, r->old, r->err);
}

/* On failure: the new table and the listener row go (best effort). */
static void discard(rb *r)
{
	char sql[128];
	const char *v[1] = {r->lid};
	char keep[DIS_ERRMSG_LEN];

	if (!r->store || PQstatus(dis_store_conn(r->store)) != CONNECTION_OK)
		return;
	snprintf(keep, sizeof(keep), "%s", r->err ? r->err : "");
	rollback(r);
	snprintf(sql, sizeof(sql), "DROP TABLE IF EXISTS \"%s\"", r->shadow);
	exec_sql(r, "discarding the rebuild", sql);
	exec_params(r, "discarding the rebuild",
		    "DELETE FROM event_listener WHERE id = $1", 1, v, NULL);
	if (r->err)
		snprintf(r->err, r->errlen, "%s", keep);
}

int dis_projection_rebuild(const char *conninfo, const dis_schema *schema,
			   const char *name, const dis_rebuild_options *opts,
			   dis_rebuild_progress *out, char *errbuf,
			   size_t errlen)
{
	char scratch[DIS_ERRMSG_LEN];
	rb r = {0};
	int rc;

	r.err = errbuf ? errbuf : scratch;
	r.errlen = errbuf ? errlen : sizeof(scratch);
	if (r.errlen)
		r.err[0] = '\0';
	if (!schema || !name)
		return rb_fail(&r, DIS_EINVAL, "schema and name are required");
	if (dis_identifier_check(name, NULL, 0) ||
	    strlen(name) > DIS_PROJECTION_NAME_MAX)
		return rb_fail(&r, DIS_EINVAL, "bad projection name \"%s\"",
			       name);
	r.conninfo = conninfo;
	r.schema = schema;
	r.name = name;
	if (opts)
		r.o = *opts;
	if (!r.o.swap_behind)
		r.o.swap_behind = 1000;
	if (!r.o.lock_timeout_ms)
		r.o.lock_timeout_ms = 5000;
	if (!r.o.fetch_size)
		r.o.fetch_size = 1000;
	snprintf(r.shadow, sizeof(r.shadow), "%s" DIS__REBUILD_SUFFIX, name);
	snprintf(r.old, sizeof(r.old), "%s" DIS__OLD_SUFFIX, name);
	snprintf(r.lid, sizeof(r.lid), "%s" DIS__REBUILD_LISTENER_SUFFIX, name);
	r.t0 = dis__mono_s();
	rc = dis_store_open(conninfo, schema, &r.store, r.err, r.errlen);
	if (rc)
		return rc;
	dis_store_set_log(r.store, r.o.log, r.o.log_arg);
	rc = prepare(&r);
	if (!rc) {
		rc = build(&r);
		build_cleanup(&r);
	}
	if (!rc)
		rc = swap(&r);
	if (!rc) {
		drop_old(&r);
		r.prog.events += r.caught_up;
		r.prog.events_behind = 0;
		report(&r, "done", true);
		if (out)
			*out = r.prog;
	} else if (rc != DIS_ESTATE && rc != DIS_ENOTFOUND) {
		discard(&r);
	}
	dis_projection_free(r.p);
	dis_store_free(r.store);
	return rc;
}
