/*
 * The event store on libpq: migration, the schema registry, loads with a
 * version, the exact append check, and the gap-free batch read.
 *
 * Appends run as one pipeline (one round trip, one sync): BEGIN,
 *   1. take advisory locks in key order: exclusive on the validation
 *      query's boundary keys, shared on the appended events' keys;
 *   2. insert every event in one statement that first checks that no event
 *      matching the validation query is invisible to the load's snapshot
 *      (that statement's snapshot is taken after the locks are held);
 * COMMIT, then
 *   3. notify once, in a transaction of its own.
 * See DESIGN sections 5 and 6.
 */
#include "core-internal.h"

#include <libpq-fe.h>

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_PAYLOAD (16u * 1024 * 1024)
#define FRAME_MAGIC 0xD1
#define FRAME_LEN 5
#define NOTIFY_MAX 7000
/* Advisory-lock key serialising concurrent migrations ("dis-migr"). */
#define MIGRATE_LOCK_KEY "7235441166829889906"

/* Values one statement may bind (libpq's and the protocol's limit). */
#define MAX_PARAMS 65535

#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_TEXT 25

/*
 * Statements are prepared on first use and kept per store, by SQL text:
 * the text depends only on the query's shape, its values are parameters.
 * Names are unique per process, so stores sharing a connection never
 * collide.
 */
#define STMT_CACHE 64

typedef struct cached_stmt {
	char *sql;
	uint64_t hash;
	unsigned id;
	uint64_t used;
	bool ready;    /* prepared on the server */
	char name[40]; /* named once: formatting it per use cost more than
			* sending the statement */
} cached_stmt;

/* One statement of a pipeline. */
typedef struct pstmt {
	const char *sql;
	int nparams;
	const char *const *values;
	const int *lengths;
	const int *formats;
	int binary;
} pstmt;

typedef struct reg_entry {
	int32_t id;
	char *fingerprint;
	char *json;
	dis_schema *parsed; /* writer schema, parsed on first use */
} reg_entry;

struct dis_store {
	PGconn *conn;
	bool owned;
	const dis_schema *schema;
	char errmsg[DIS_ERRMSG_LEN];
	dis_log_fn log;
	void *log_arg;
	size_t max_payload;
	int32_t schema_id; /* registry id of `schema`, 0 until known */
	reg_entry *reg;
	size_t nreg;
	uint64_t uid;
	unsigned next_stmt;
	uint64_t clock;
	cached_stmt stmts[STMT_CACHE];
	size_t nstmts;
	char *evicted[STMT_CACHE]; /* names to DEALLOCATE next time */
	size_t nevicted;
	bool trailer_failed; /* the last pipeline's trailer failed */
};

struct dis_version {
	char *text;
};

/* ---- small helpers ---- */

static uint32_t get_be32(const unsigned char *u)
{
	return ((uint32_t)u[0] << 24) | ((uint32_t)u[1] << 16) |
	       ((uint32_t)u[2] << 8) | u[3];
}

static void put_be32(dis__buf *b, uint32_t v)
{
	unsigned char u[4] = {v >> 24, v >> 16, v >> 8, v};

	dis__buf_append(b, u, 4);
}

static void put_be64(dis__buf *b, uint64_t v)
{
	unsigned char u[8];

	for (int i = 7; i >= 0; i--, v >>= 8)
		u[i] = (unsigned char)v;
	dis__buf_append(b, u, 8);
}

/* One-dimensional binary array header (PostgreSQL's array_send). */
static void array_begin(dis__buf *b, uint32_t oid, size_t n, bool nulls)
{
	put_be32(b, n ? 1 : 0);
	put_be32(b, nulls ? 1 : 0);
	put_be32(b, oid);
	if (n) {
		put_be32(b, (uint32_t)n);
		put_be32(b, 1);
	}
}

static void array_elem(dis__buf *b, const void *data, size_t len)
{
	put_be32(b, (uint32_t)len);
	dis__buf_append(b, data, len);
}

static void array_null(dis__buf *b)
{
	put_be32(b, 0xFFFFFFFFu);
}

int dis__store_fail(dis_store *store, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	dis__verrf(store->errmsg, sizeof(store->errmsg), fmt, ap);
	va_end(ap);
	if (store->log)
		store->log(store->log_arg, DIS_LOG_DEBUG, store->errmsg);
	return code;
}

/* Copies libpq's text without its trailing newline. */
static void chomp_copy(char *dst, size_t len, const char *src)
{
	size_t n;

	snprintf(dst, len, "%s", src ? src : "");
	n = strlen(dst);
	while (n && (dst[n - 1] == '\n' || dst[n - 1] == ' '))
		dst[--n] = '\0';
}

int dis__sqlstate_code(const char *state)
{
	if (!state)
		return DIS_EPG;
	if (!strcmp(state, "40001") || !strcmp(state, "40P01"))
		return DIS_ECONFLICT;
	if (!strcmp(state, "55P03") || !strcmp(state, "57014"))
		return DIS_ETIMEDOUT;
	if (!strcmp(state, "42501"))
		return DIS_EPERM;
	if (!strncmp(state, "08", 2) || !strcmp(state, "57P01") ||
	    !strcmp(state, "57P02") || !strcmp(state, "57P03"))
		return DIS_ECONN;
	return DIS_EPG;
}

int dis__store_pg_fail(dis_store *store, const PGresult *res, const char *what)
{
	char msg[DIS_ERRMSG_LEN];
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
				: NULL;
	int code = dis__sqlstate_code(state);

	if (res && PQresultErrorMessage(res)[0])
		chomp_copy(msg, sizeof(msg), PQresultErrorMessage(res));
	else
		chomp_copy(msg, sizeof(msg), PQerrorMessage(store->conn));
	if (PQstatus(store->conn) == CONNECTION_BAD)
		code = DIS_ECONN;
	if (code == DIS_ECONN && !msg[0])
		snprintf(msg, sizeof(msg), "connection lost");
	return dis__store_fail(store, code, "%s: %s", what, msg);
}

/*
 * Blocking calls on a connection the caller may keep non-blocking (the
 * listener's): switch for the call and restore afterwards.
 */
static int blocking_begin(dis_store *store)
{
	int was = PQisnonblocking(store->conn);

	if (was)
		PQsetnonblocking(store->conn, 0);
	return was;
}

static void blocking_end(dis_store *store, int was)
{
	if (was)
		PQsetnonblocking(store->conn, 1);
}

static void stmt_name(const dis_store *s, unsigned id, char *buf, size_t n)
{
	snprintf(buf, n, "dis_%" PRIx64 "_%u", s->uid, id);
}

/*
 * The cache's key of a statement text, eight bytes a step (the byte-wise
 * dis__hash64 of every statement's text was a tenth of an append's client
 * instructions). Only compared within this process.
 */
static uint64_t stmt_hash(const char *sql)
{
	size_t len = strlen(sql), i = 0;
	uint64_t h = len * 0x9e3779b97f4a7c15ULL;

	for (; i + 8 <= len; i += 8) {
		uint64_t w;

		memcpy(&w, sql + i, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdULL;
		h ^= h >> 32;
	}
	for (; i < len; i++)
		h = (h ^ (unsigned char)sql[i]) * 0x100000001b3ULL;
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ULL;
	return h ^ (h >> 32);
}

/* A prepared statement's name, dropped with the next pipeline. */
static void stmt_evict(dis_store *s, const cached_stmt *c)
{
	if (!c->ready || s->nevicted >= STMT_CACHE)
		return;
	s->evicted[s->nevicted] = dis__strdup(c->name);
	if (s->evicted[s->nevicted])
		s->nevicted++;
}

/* The cache entry for `sql`, added (evicting the least used) if new. */
static cached_stmt *stmt_get(dis_store *s, const char *sql)
{
	uint64_t h = stmt_hash(sql);
	cached_stmt *c = NULL;
	char *copy;

	for (size_t i = 0; i < s->nstmts; i++)
		if (s->stmts[i].hash == h && !strcmp(s->stmts[i].sql, sql)) {
			c = &s->stmts[i];
			c->used = ++s->clock;
			return c;
		}
	copy = dis__strdup(sql);
	if (!copy)
		return NULL;
	if (s->nstmts < STMT_CACHE) {
		c = &s->stmts[s->nstmts++];
	} else {
		c = &s->stmts[0];
		for (size_t i = 1; i < s->nstmts; i++)
			if (s->stmts[i].used < c->used)
				c = &s->stmts[i];
		stmt_evict(s, c);
		free(c->sql);
	}
	*c = (cached_stmt){copy, h, ++s->next_stmt, ++s->clock, false, ""};
	stmt_name(s, c->id, c->name, sizeof(c->name));
	return c;
}

/* Forgets every prepared statement (the server lost them). */
static void stmt_forget(dis_store *s)
{
	for (size_t i = 0; i < s->nstmts; i++)
		s->stmts[i].ready = false;
}

/*
 * Someone discarded some of our statements (DEALLOCATE on a shared
 * connection): each is prepared again under a new name, so that those
 * still there do not collide; the old names are dropped with the next
 * pipeline's evictions (a name already gone fails there harmlessly).
 */
static void stmt_renew(dis_store *s)
{
	for (size_t i = 0; i < s->nstmts; i++) {
		cached_stmt *c = &s->stmts[i];

		stmt_evict(s, c);
		c->id = ++s->next_stmt;
		stmt_name(s, c->id, c->name, sizeof(c->name));
		c->ready = false;
	}
}

/* Takes the first failed result of a pipeline, keeping the first one. */
static void keep_error(PGresult **first, PGresult *res)
{
	if (!*first)
		*first = res;
	else
		PQclear(res);
}

/*
 * Runs `n` statements as one pipeline: one round trip and, outside a
 * transaction block, one implicit transaction (a failure rolls back all).
 * Statements are prepared on first use. On success results[i] holds the
 * result of statement i (NULL for a statement without one); on failure
 * the error is recorded and returned.
 */
/* Queues one statement, preparing it first when it is new. */
static int send_stmt(dis_store *s, const pstmt *st, cached_stmt **cache,
		     bool *prepared)
{
	int ok = 1;

	*cache = stmt_get(s, st->sql);
	*prepared = false;
	if (!*cache)
		return PQsendQueryParams(s->conn, st->sql, st->nparams, NULL,
					 st->values, st->lengths, st->formats,
					 st->binary);
	if (!(*cache)->ready) {
		ok = PQsendPrepare(s->conn, (*cache)->name, st->sql,
				   st->nparams, NULL);
		*prepared = true;
	}
	return ok && PQsendQueryPrepared(s->conn, (*cache)->name, st->nparams,
					 st->values, st->lengths, st->formats,
					 st->binary);
}

typedef struct pipe_state {
	PGresult *err;
	bool aborted;
} pipe_state;

static bool is_state(const PGresult *res, const char *sqlstate)
{
	const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	return st && !strcmp(st, sqlstate);
}

/* Reads the results of one queued statement (its prepare, if sent). */
static void read_stmt(dis_store *s, cached_stmt *cache, bool prepared,
		      PGresult **result, pipe_state *ps)
{
	PGresult *res;

	for (int part = prepared ? 0 : 1; part < 2; part++) {
		while ((res = PQgetResult(s->conn))) {
			ExecStatusType t = PQresultStatus(res);

			if (t == PGRES_FATAL_ERROR && part == 0 &&
			    is_state(res, "42P05")) {
				/* Prepared already (a pipeline abandoned after
				 * its prepare was sent): usable from now on;
				 * this pipeline failed with it. */
				cache->ready = true;
				keep_error(&ps->err, res);
			} else if (t == PGRES_FATAL_ERROR) {
				keep_error(&ps->err, res);
			} else if (t == PGRES_PIPELINE_ABORTED) {
				ps->aborted = true;
				PQclear(res);
			} else if (part == 0) {
				if (t == PGRES_COMMAND_OK)
					cache->ready = true;
				PQclear(res);
			} else if (result && !*result &&
				   (t == PGRES_TUPLES_OK ||
				    t == PGRES_COMMAND_OK)) {
				*result = res;
			} else {
				PQclear(res);
			}
		}
		if (PQstatus(s->conn) == CONNECTION_BAD)
			return;
	}
}

/* Reads up to and including the next sync point. */
static void read_sync(dis_store *s)
{
	PGresult *res;

	while (PQstatus(s->conn) != CONNECTION_BAD &&
	       (res = PQgetResult(s->conn))) {
		ExecStatusType t = PQresultStatus(res);

		PQclear(res);
		if (t == PGRES_PIPELINE_SYNC)
			break;
	}
}

/*
 * After a statement could not be queued: what was queued goes with a sync
 * and its results are read and dropped (marking the statements whose
 * prepare succeeded), so that the connection leaves pipeline mode with
 * nothing of it pending. A block the queued statements opened stays open:
 * the caller rolls it back.
 */
static void pipeline_abandon(dis_store *s, size_t nevicted, cached_stmt **cache,
			     const bool *prepared, int queued)
{
	pipe_state ignored = {NULL, false};

	/* Without a sync the server would answer nothing: the connection
	 * is lost or out of memory, and the next call reports it. */
	if (!PQpipelineSync(s->conn))
		return;
	for (size_t i = 0; i < nevicted; i++)
		read_stmt(s, NULL, false, NULL, &ignored);
	if (nevicted)
		read_sync(s);
	for (int i = 0; i < queued; i++)
		read_stmt(s, cache[i], prepared[i], NULL, &ignored);
	PQclear(ignored.err);
	/* The rest: a prepare queued without its execution, the sync. */
	for (int i = 0; i < 64 && PQstatus(s->conn) != CONNECTION_BAD &&
			!PQexitPipelineMode(s->conn);
	     i++)
		PQclear(PQgetResult(s->conn));
}

/*
 * The pipeline: [evictions] sync, statements [trailer] sync. The evictions
 * are a sync group of their own; neither their failure nor the trailer's
 * fails the call (the trailer's is logged). The trailer runs only when the
 * statements succeeded; in a transaction of its own when they end theirs
 * with COMMIT (one sync: the server sends all results in one flush).
 */
static int pipeline_once(dis_store *s, const char *what, const pstmt *st,
			 int n, const pstmt *trailer, PGresult **results,
			 bool *stale)
{
	cached_stmt *cache[8], *tcache = NULL;
	bool prepared[8], tprepared = false;
	pipe_state ps = {NULL, false}, tps = {NULL, false};
	int was, rc = 0, ok = 1, queued = 0;
	size_t sent_evictions;
	/* Evicted statements are dropped only outside a transaction block,
	 * so a failure there (the server lost them already) cannot touch the
	 * caller's work. */
	size_t nevicted = PQtransactionStatus(s->conn) == PQTRANS_IDLE
				  ? s->nevicted
				  : 0;

	*stale = false;
	s->trailer_failed = false;
	if (n > 8)
		return dis__store_fail(s, DIS_EINVAL, "pipeline too long");
	/* libpq refuses more; refused midway, the statements queued before
	 * would run without the rest. */
	for (int i = 0; i < n; i++)
		if (st[i].nparams > MAX_PARAMS)
			return dis__store_fail(
				s, DIS_EINVAL,
				"%s: the statement binds %d values, more than "
				"the %d PostgreSQL takes",
				what, st[i].nparams, MAX_PARAMS);
	was = blocking_begin(s);
	if (!PQenterPipelineMode(s->conn)) {
		blocking_end(s, was);
		return dis__store_pg_fail(s, NULL, what);
	}
	for (size_t i = 0; i < nevicted && ok; i++) {
		char sql[64];

		snprintf(sql, sizeof(sql), "DEALLOCATE %s", s->evicted[i]);
		ok = PQsendQueryParams(s->conn, sql, 0, NULL, NULL, NULL, NULL,
				       0);
	}
	if (nevicted && ok)
		ok = PQpipelineSync(s->conn);
	sent_evictions = nevicted && ok ? nevicted : 0;
	for (int i = 0; i < n; i++)
		results[i] = NULL;
	for (queued = 0; queued < n && ok; queued += ok)
		ok = send_stmt(s, &st[queued], &cache[queued],
			       &prepared[queued]);
	if (trailer && ok)
		ok = send_stmt(s, trailer, &tcache, &tprepared);
	ok = ok && PQpipelineSync(s->conn);
	if (!ok) {
		rc = dis__store_pg_fail(s, NULL, what);
		pipeline_abandon(s, sent_evictions, cache, prepared, queued);
		blocking_end(s, was);
		return rc ? rc : DIS_ECONN;
	}
	if (nevicted) {
		pipe_state ignored = {NULL, false};

		for (size_t i = 0; i < nevicted; i++)
			read_stmt(s, NULL, false, NULL, &ignored);
		PQclear(ignored.err);
		read_sync(s);
	}
	for (int i = 0; i < n; i++)
		read_stmt(s, cache[i], prepared[i], &results[i], &ps);
	if (trailer) {
		read_stmt(s, tcache, tprepared, NULL, &tps);
		s->trailer_failed = tps.err != NULL;
		if (tps.err && s->log) {
			char msg[DIS_ERRMSG_LEN];

			chomp_copy(msg, sizeof(msg),
				   PQresultErrorMessage(tps.err));
			s->log(s->log_arg, DIS_LOG_WARN, msg);
		}
		PQclear(tps.err);
	}
	read_sync(s);
	PQexitPipelineMode(s->conn);
	blocking_end(s, was);
	for (size_t i = 0; i < nevicted; i++)
		free(s->evicted[i]);
	memmove(s->evicted, s->evicted + nevicted,
		(s->nevicted - nevicted) * sizeof(*s->evicted));
	s->nevicted -= nevicted;
	if (ps.err || ps.aborted || PQstatus(s->conn) == CONNECTION_BAD) {
		const char *state =
			ps.err ? PQresultErrorField(ps.err, PG_DIAG_SQLSTATE)
			       : NULL;

		*stale = state && !strcmp(state, "26000");
		rc = dis__store_pg_fail(s, ps.err, what);
		PQclear(ps.err);
		for (int i = 0; i < n; i++) {
			PQclear(results[i]);
			results[i] = NULL;
		}
		return rc;
	}
	return 0;
}

/* After a failure inside the block the statements opened themselves. */
static void rollback_own(dis_store *s)
{
	int was;
	PGTransactionStatusType ts = PQtransactionStatus(s->conn);

	if (ts != PQTRANS_INERROR && ts != PQTRANS_INTRANS)
		return;
	was = blocking_begin(s);
	PQclear(PQexec(s->conn, "ROLLBACK"));
	blocking_end(s, was);
}

/*
 * Runs `st` outside the caller's error path: when the connection is up
 * and outside a transaction; its result and error are dropped, the
 * store's error stays.
 */
static void exec_aside(dis_store *s, const pstmt *st)
{
	int was;

	if (PQstatus(s->conn) != CONNECTION_OK ||
	    PQtransactionStatus(s->conn) != PQTRANS_IDLE)
		return;
	was = blocking_begin(s);
	PQclear(PQexecParams(s->conn, st->sql, st->nparams, NULL, st->values,
			     st->lengths, st->formats, st->binary));
	blocking_end(s, was);
}

/*
 * Runs the pipeline; outside a transaction block its statements are one
 * implicit transaction, rolled back whole on failure. With `own_block`
 * they open and commit a block themselves (BEGIN first), which a failure
 * leaves aborted: it is rolled back here. `undo` (may be NULL) undoes
 * what a failed attempt kept past its rollback (a session lock) before
 * the attempt is made again.
 */
static int pipeline(dis_store *s, const char *what, const pstmt *st, int n,
		    const pstmt *trailer, bool own_block, const pstmt *undo,
		    PGresult **results)
{
	bool stale;
	int rc = pipeline_once(s, what, st, n, trailer, results, &stale);

	if (rc && own_block)
		rollback_own(s);
	/* Someone discarded our statements; outside a transaction block the
	 * failed pipeline was rolled back whole, so run it again. */
	if (rc && stale) {
		stmt_renew(s);
		if (undo)
			exec_aside(s, undo);
		if (PQtransactionStatus(s->conn) == PQTRANS_IDLE)
			rc = pipeline_once(s, what, st, n, trailer, results,
					   &stale);
		if (rc && own_block)
			rollback_own(s);
	}
	return rc;
}

/* Runs one statement into *out; returns 0 or the recorded error code. */
static int run(dis_store *store, const char *what, const char *sql,
	       int nparams, const char *const *values, const int *lengths,
	       const int *formats, int binary, ExecStatusType want,
	       PGresult **out)
{
	pstmt st = {sql, nparams, values, lengths, formats, binary};
	PGresult *res = NULL;
	int rc = pipeline(store, what, &st, 1, NULL, false, NULL, &res);

	if (rc)
		return rc;
	if (!res || PQresultStatus(res) != want) {
		PQclear(res);
		return dis__store_fail(store, DIS_EPG, "%s: unexpected result",
				       what);
	}
	*out = res;
	return 0;
}

static int exec_sql(dis_store *store, const char *what, const char *sql)
{
	int was = blocking_begin(store);
	PGresult *res = PQexec(store->conn, sql);
	int rc = 0;

	blocking_end(store, was);
	if (!res || (PQresultStatus(res) != PGRES_COMMAND_OK &&
		     PQresultStatus(res) != PGRES_TUPLES_OK))
		rc = dis__store_pg_fail(store, res, what);
	PQclear(res);
	return rc;
}

/* exec_sql after a failure: the store's error stays the first one. */
static void exec_keeping_error(dis_store *s, const char *what, const char *sql)
{
	char keep[DIS_ERRMSG_LEN];

	memcpy(keep, s->errmsg, sizeof(keep));
	exec_sql(s, what, sql);
	memcpy(s->errmsg, keep, sizeof(keep));
}

/* ---- lifecycle ---- */

static int store_new(PGconn *conn, bool owned, const dis_schema *schema,
		     dis_store **out)
{
	static atomic_uint_fast64_t next_uid = 1;
	dis_store *s = calloc(1, sizeof(*s));

	if (!s)
		return DIS_ENOMEM;
	s->uid = atomic_fetch_add(&next_uid, 1);
	s->conn = conn;
	s->owned = owned;
	s->schema = schema;
	s->max_payload = DEFAULT_MAX_PAYLOAD;
	*out = s;
	return 0;
}

/* Server notices go to the log callback, never to stderr. */
static void on_notice(void *arg, const char *message)
{
	dis_store *s = arg;
	char msg[DIS_ERRMSG_LEN];

	if (!s->log)
		return;
	chomp_copy(msg, sizeof(msg), message);
	s->log(s->log_arg, DIS_LOG_INFO, msg);
}

int dis_store_open(const char *conninfo, const dis_schema *schema,
		   dis_store **out, char *errbuf, size_t errlen)
{
	PGconn *conn;
	char msg[DIS_ERRMSG_LEN];
	int rc;

	if (!schema || !out) {
		dis__errf(errbuf, errlen, "schema and out are required");
		return DIS_EINVAL;
	}
	conn = PQconnectdb(conninfo ? conninfo : "");
	if (!conn) {
		dis__errf(errbuf, errlen, "out of memory");
		return DIS_ENOMEM;
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		/* libpq quotes a malformed conninfo, password and all. */
		dis__conn_errmsg(conninfo, conn, PQerrorMessage(conn), msg,
				 sizeof(msg));
		dis__errf(errbuf, errlen, "cannot connect to PostgreSQL: %s",
			  msg);
		PQfinish(conn);
		return DIS_ECONN;
	}
	rc = store_new(conn, true, schema, out);
	if (!rc)
		PQsetNoticeProcessor(conn, on_notice, *out);
	if (rc) {
		dis__errf(errbuf, errlen, "out of memory");
		PQfinish(conn);
	}
	return rc;
}

int dis_store_wrap(PGconn *conn, const dis_schema *schema, dis_store **out)
{
	if (!conn || !schema || !out)
		return DIS_EINVAL;
	return store_new(conn, false, schema, out);
}

void dis__store_rebind(dis_store *s, PGconn *conn)
{
	s->conn = conn;
	stmt_forget(s);
	for (size_t i = 0; i < s->nevicted; i++)
		free(s->evicted[i]);
	s->nevicted = 0;
}

static void registry_clear(dis_store *s)
{
	for (size_t i = 0; i < s->nreg; i++) {
		free(s->reg[i].fingerprint);
		free(s->reg[i].json);
		dis_schema_free(s->reg[i].parsed);
	}
	free(s->reg);
	s->reg = NULL;
	s->nreg = 0;
}

/*
 * A borrowed connection outlives the store: drop our prepared statements
 * from it when it is idle and usable (one round trip).
 */
static void stmt_release(dis_store *s)
{
	dis__buf sql;

	dis__buf_init(&sql);
	for (size_t i = 0; i < s->nstmts; i++) {
		if (!s->stmts[i].ready)
			continue;
		dis__buf_printf(&sql, "DEALLOCATE %s;", s->stmts[i].name);
	}
	for (size_t i = 0; i < s->nevicted; i++)
		dis__buf_printf(&sql, "DEALLOCATE %s;", s->evicted[i]);
	if (sql.len && !sql.oom) {
		int was = blocking_begin(s);

		PQclear(PQexec(s->conn, dis__buf_cstr(&sql)));
		blocking_end(s, was);
	}
	dis__buf_free(&sql);
}

void dis_store_free(dis_store *s)
{
	if (!s)
		return;
	if (!s->owned && PQstatus(s->conn) == CONNECTION_OK &&
	    PQtransactionStatus(s->conn) == PQTRANS_IDLE)
		stmt_release(s);
	for (size_t i = 0; i < s->nstmts; i++)
		free(s->stmts[i].sql);
	for (size_t i = 0; i < s->nevicted; i++)
		free(s->evicted[i]);
	registry_clear(s);
	if (s->owned)
		PQfinish(s->conn);
	free(s);
}

const char *dis_store_errmsg(const dis_store *s)
{
	if (!s)
		return "store is NULL";
	return s->errmsg[0] ? s->errmsg : "no error";
}

PGconn *dis_store_conn(dis_store *s)
{
	return s ? s->conn : NULL;
}

const dis_schema *dis_store_schema(const dis_store *s)
{
	return s ? s->schema : NULL;
}

void dis_store_set_log(dis_store *s, dis_log_fn fn, void *arg)
{
	if (!s)
		return;
	s->log = fn;
	s->log_arg = arg;
}

void dis_store_set_max_payload(dis_store *s, size_t bytes)
{
	if (s)
		s->max_payload = bytes ? bytes : DEFAULT_MAX_PAYLOAD;
}

/* ---- schema registry ---- */

/* Reloads every registered schema (id, fingerprint, JSON). */
static int registry_load(dis_store *s)
{
	PGresult *res;
	int n, rc;
	reg_entry *reg;

	rc = run(s, "reading the schema registry",
		 "SELECT id, fingerprint, schema FROM event_schema ORDER BY id",
		 0, NULL, NULL, NULL, 0, PGRES_TUPLES_OK, &res);
	if (rc)
		return rc;
	n = PQntuples(res);
	reg = calloc(n ? (size_t)n : 1, sizeof(*reg));
	if (!reg) {
		PQclear(res);
		return dis__store_fail(s, DIS_ENOMEM, "out of memory");
	}
	for (int i = 0; i < n; i++) {
		reg[i].id = (int32_t)atol(PQgetvalue(res, i, 0));
		reg[i].fingerprint = dis__strdup(PQgetvalue(res, i, 1));
		reg[i].json = dis__strdup(PQgetvalue(res, i, 2));
	}
	PQclear(res);
	registry_clear(s);
	s->reg = reg;
	s->nreg = (size_t)n;
	for (size_t i = 0; i < s->nreg; i++)
		if (!s->reg[i].fingerprint || !s->reg[i].json) {
			/* No entry without its texts: lookups compare them. */
			registry_clear(s);
			return dis__store_fail(s, DIS_ENOMEM, "out of memory");
		}
	return 0;
}

static reg_entry *registry_find(dis_store *s, int32_t id)
{
	for (size_t i = 0; i < s->nreg; i++)
		if (s->reg[i].id == id)
			return &s->reg[i];
	return NULL;
}

/*
 * The registry id of the store's own schema. Outside a transaction an
 * unregistered schema is registered; inside one (a listener's batch) it
 * must already be, since a rolled back registration would leave payloads
 * pointing at nothing.
 */
static int schema_id(dis_store *s, int32_t *out)
{
	const char *fp = dis__schema_fingerprint(s->schema);
	const char *vals[2] = {fp, dis_schema_json(s->schema)};
	PGresult *res;
	int rc;

	if (s->schema_id) {
		*out = s->schema_id;
		return 0;
	}
	rc = run(s, "looking up the event schema",
		 "SELECT id FROM event_schema WHERE fingerprint = $1", 1, vals,
		 NULL, NULL, 0, PGRES_TUPLES_OK, &res);
	if (rc)
		return rc;
	if (PQntuples(res) == 0) {
		PQclear(res);
		if (PQtransactionStatus(s->conn) != PQTRANS_IDLE)
			return dis__store_fail(
				s, DIS_ESTATE,
				"the event schema (fingerprint %s) is not "
				"registered; run dis_store_migrate (disctl "
				"init) first",
				fp);
		rc = run(s, "registering the event schema",
			 DIS__SCHEMA_REGISTER_SQL, 2, vals, NULL, NULL, 0,
			 PGRES_TUPLES_OK, &res);
		if (rc)
			return rc;
		if (PQntuples(res) == 0) {
			PQclear(res);
			/* Lost a race with a concurrent registration. */
			return schema_id(s, out);
		}
	}
	s->schema_id = (int32_t)atol(PQgetvalue(res, 0, 0));
	PQclear(res);
	*out = s->schema_id;
	return 0;
}

bool dis__store_schema_id_known(const dis_store *s)
{
	return s->schema_id != 0;
}

void dis__store_schema_params(const dis_store *s, const char *vals[2])
{
	vals[0] = dis__schema_fingerprint(s->schema);
	vals[1] = dis_schema_json(s->schema);
}

void dis__store_set_schema_id(dis_store *s, int32_t id)
{
	s->schema_id = id;
}

/* The schema a payload was written with. */
static int writer_schema(dis_store *s, int32_t id, const dis_schema **out)
{
	reg_entry *e;
	char err[DIS_ERRMSG_LEN];
	int rc;

	if (s->schema_id && id == s->schema_id) {
		*out = s->schema;
		return 0;
	}
	e = registry_find(s, id);
	if (!e) {
		if ((rc = registry_load(s)))
			return rc;
		e = registry_find(s, id);
		if (!e)
			return dis__store_fail(s, DIS_ESERDE,
					       "writer schema %" PRId32
					       " is not in the registry",
					       id);
	}
	if (!strcmp(e->fingerprint, dis__schema_fingerprint(s->schema))) {
		s->schema_id = id;
		*out = s->schema;
		return 0;
	}
	if (!e->parsed) {
		rc = dis_schema_parse(e->json, &e->parsed, err, sizeof(err));
		if (rc)
			return dis__store_fail(s, DIS_ESERDE,
					       "writer schema %" PRId32
					       " cannot be read: %s",
					       id, err);
	}
	*out = e->parsed;
	return 0;
}

/* ---- migration ---- */

static const char *id_sql_type(dis_id_type t)
{
	switch (t) {
	case DIS_ID_LONG: return "bigint";
	case DIS_ID_UUID: return "uuid";
	default: return "text";
	}
}

/*
 * The name of the index of domain id column `name`, "idx_event_<name>"
 * plus `suffix`, or a hash of the name when that would pass PostgreSQL's
 * 63-byte limit.
 */
static void id_index_name(const char *name, const char *suffix, char *out,
			  size_t len)
{
	if (strlen(name) + strlen(suffix) + 10 <= 63)
		snprintf(out, len, "idx_event_%s%s", name, suffix);
	else
		snprintf(out, len, "idx_event_%016" PRIx64 "%s",
			 dis__hash64(name, strlen(name), 0), suffix);
}

/* Adds a column and an index per domain id that the table lacks. */
static int migrate_id_columns(dis_store *s)
{
	PGresult *res;
	size_t nids = dis_schema_id_count(s->schema);
	int rc = run(s, "reading the event table's columns",
		     "SELECT column_name, udt_name FROM "
		     "information_schema.columns WHERE table_name = "
		     "'event' AND table_schema = current_schema()",
		     0, NULL, NULL, NULL, 0, PGRES_TUPLES_OK, &res);

	if (rc)
		return rc;
	for (size_t i = 0; i < nids && !rc; i++) {
		const char *name = dis_schema_id_name(s->schema, i);
		const char *type = id_sql_type(dis_schema_id_type(s->schema, i));
		const char *have = NULL;
		char sql[512], idx[80];

		for (int r = 0; r < PQntuples(res); r++)
			if (!strcmp(PQgetvalue(res, r, 0), name))
				have = PQgetvalue(res, r, 1);
		if (have) {
			const char *want = !strcmp(type, "bigint") ? "int8"
					 : type;
			if (strcmp(have, want))
				rc = dis__store_fail(
					s, DIS_ESCHEMA,
					"column event.\"%s\" is %s but the "
					"schema declares domain id \"%s\" as %s",
					name, have, name, type);
			continue;
		}
		snprintf(sql, sizeof(sql),
			 "ALTER TABLE event ADD COLUMN IF NOT EXISTS \"%s\" %s",
			 name, type);
		rc = exec_sql(s, "adding a domain id column", sql);
		if (rc)
			break;
		id_index_name(name, "", idx, sizeof(idx));
		/*
		 * With tx: the append's check reads only the id's events
		 * from the load's xmin on, however long its stream (a 20k
		 * event stream: 3 index pages and 0.15 ms instead of every
		 * row and 1.6 ms on (id) alone).
		 */
		snprintf(sql, sizeof(sql),
			 "CREATE INDEX IF NOT EXISTS \"%s\" ON event (\"%s\", "
			 "tx)",
			 idx, name);
		rc = exec_sql(s, "indexing a domain id column", sql);
	}
	PQclear(res);
	return rc;
}

/*
 * The btree indexes of event led by (column $1, tx): name, valid. An index
 * whose concurrent build failed is there but not valid.
 */
#define ID_TX_INDEXES_SQL                                                    \
	"SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON " \
	"c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam WHERE "      \
	"i.indrelid = 'event'::regclass AND am.amname = 'btree' AND "        \
	"i.indpred IS NULL AND i.indkey[0] = (SELECT attnum FROM "           \
	"pg_attribute WHERE attrelid = i.indrelid AND attname = $1) AND "    \
	"i.indkey[1] = (SELECT attnum FROM pg_attribute WHERE attrelid = "   \
	"i.indrelid AND attname = 'tx') ORDER BY i.indisvalid DESC"

/* Holding the session lock of the id's index build (see below). */
static int index_id_locked(dis_store *s, const char *id, bool *built)
{
	char idx[80], sql[256], msg[DIS_ERRMSG_LEN];
	const char *vals[1] = {id};
	PGresult *res;
	bool valid, mine, leftover = false;
	int rc, was;

	id_index_name(id, "_tx", idx, sizeof(idx));
	rc = run(s, "looking for the index of a domain id", ID_TX_INDEXES_SQL,
		 1, vals, NULL, NULL, 0, PGRES_TUPLES_OK, &res);
	if (rc)
		return rc;
	valid = PQntuples(res) > 0 && !strcmp(PQgetvalue(res, 0, 1), "t");
	for (int r = 0; r < PQntuples(res); r++)
		leftover |= !strcmp(PQgetvalue(res, r, 0), idx);
	PQclear(res);
	if (valid)
		return 0;
	/* Left invalid by a build that failed or was cancelled. */
	if (leftover) {
		snprintf(sql, sizeof(sql), "DROP INDEX CONCURRENTLY \"%s\"",
			 idx);
		if ((rc = exec_sql(s, "dropping an index left invalid", sql)))
			return rc;
	}
	if (s->log) {
		snprintf(msg, sizeof(msg),
			 "building index %s on event (\"%s\", tx) "
			 "concurrently",
			 idx, id);
		s->log(s->log_arg, DIS_LOG_INFO, msg);
	}
	snprintf(sql, sizeof(sql),
		 "CREATE INDEX CONCURRENTLY \"%s\" ON event (\"%s\", tx)", idx,
		 id);
	was = blocking_begin(s);
	res = PQexec(s->conn, sql);
	blocking_end(s, was);
	if (PQresultStatus(res) == PGRES_COMMAND_OK) {
		PQclear(res);
		*built = true;
		return 0;
	}
	/* The name taken (42P07): another build under way, or an index
	 * not ours. Else the index is ours, left invalid: drop it, so the
	 * writes do not keep it up. */
	mine = !is_state(res, "42P07");
	rc = dis__store_pg_fail(s, res, "building the index of a domain id");
	PQclear(res);
	if (mine) {
		snprintf(sql, sizeof(sql),
			 "DROP INDEX CONCURRENTLY IF EXISTS \"%s\"", idx);
		exec_keeping_error(s, "dropping the index that failed", sql);
	}
	return rc;
}

int dis__store_index_id(dis_store *s, const char *id, bool *built)
{
	static const char seed[] = "disintegrate index build";
	char key[24], sql[64];
	const char *vals[1] = {key};
	PGresult *res;
	int rc;

	*built = false;
	if (dis_schema_id_index(s->schema, id) < 0)
		return dis__store_fail(s, DIS_ENOTFOUND,
				       "the schema declares no domain id "
				       "\"%s\"",
				       id);
	if (PQtransactionStatus(s->conn) != PQTRANS_IDLE)
		return dis__store_fail(s, DIS_ESTATE,
				       "building an index needs a connection "
				       "outside a transaction");
	/*
	 * One build of an id's index at a time: an invalid index of that
	 * name is then a leftover, never another session's build under way.
	 * A session lock, tried, not awaited: waiting inside a statement
	 * would hold back the other build's wait for older snapshots.
	 */
	snprintf(key, sizeof(key), "%" PRId64,
		 (int64_t)dis__hash64(id, strlen(id),
				      dis__hash64(seed, sizeof(seed), 0)));
	rc = run(s, "locking the index build",
		 "SELECT pg_try_advisory_lock($1::int8)", 1, vals, NULL, NULL,
		 0, PGRES_TUPLES_OK, &res);
	if (rc)
		return rc;
	if (strcmp(PQgetvalue(res, 0, 0), "t")) {
		PQclear(res);
		return dis__store_fail(s, DIS_ESTATE,
				       "another session is building the index "
				       "of \"%s\"; try again when it is done",
				       id);
	}
	PQclear(res);
	rc = index_id_locked(s, id, built);
	snprintf(sql, sizeof(sql), "SELECT pg_advisory_unlock(%s)", key);
	exec_keeping_error(s, "unlocking the index build", sql);
	return rc;
}

static const char *const MIGRATION[] = {
	"CREATE SEQUENCE IF NOT EXISTS seq_event_event_id",
	"CREATE TABLE IF NOT EXISTS event ("
	" event_id BIGINT PRIMARY KEY DEFAULT nextval('seq_event_event_id'),"
	" event_type VARCHAR(255) NOT NULL,"
	" payload BYTEA NOT NULL,"
	" inserted_at TIMESTAMP DEFAULT now())",
	/* Rows of an existing Disintegrate database get tx 0: committed. */
	"DO $$ BEGIN"
	" IF NOT EXISTS (SELECT 1 FROM information_schema.columns"
	"  WHERE table_schema = current_schema() AND table_name = 'event'"
	"  AND column_name = 'tx') THEN"
	"  ALTER TABLE event ADD COLUMN tx xid8 NOT NULL DEFAULT '0';"
	"  ALTER TABLE event ALTER COLUMN tx SET DEFAULT pg_current_xact_id();"
	" END IF; END $$",
	"CREATE INDEX IF NOT EXISTS idx_event_type_btree ON event (event_type)",
	"CREATE INDEX IF NOT EXISTS idx_event_tx ON event (tx, event_id)",
	"CREATE TABLE IF NOT EXISTS event_schema ("
	" id SERIAL PRIMARY KEY,"
	" fingerprint TEXT NOT NULL UNIQUE,"
	" schema TEXT NOT NULL,"
	" created_at TIMESTAMPTZ NOT NULL DEFAULT now())",
	/* Takes the append's advisory locks in the order given. */
	"CREATE OR REPLACE FUNCTION dis_lock_keys(keys bigint[],"
	" exclusive boolean[]) RETURNS void LANGUAGE plpgsql AS $$"
	" BEGIN"
	"  FOR i IN 1 .. coalesce(array_length(keys, 1), 0) LOOP"
	"   IF exclusive[i] THEN PERFORM pg_advisory_xact_lock(keys[i]);"
	"   ELSE PERFORM pg_advisory_xact_lock_shared(keys[i]); END IF;"
	"  END LOOP;"
	" END $$",
};

int dis_store_migrate(dis_store *s)
{
	int32_t id;
	int rc;

	if (!s)
		return DIS_EINVAL;
	if (PQtransactionStatus(s->conn) != PQTRANS_IDLE)
		return dis__store_fail(s, DIS_ESTATE,
				       "migrate needs a connection outside a "
				       "transaction");
	rc = exec_sql(s, "starting the migration", "BEGIN");
	if (rc)
		return rc;
	rc = exec_sql(s, "locking the migration",
		      "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK_KEY ")");
	if (!rc)
		rc = exec_sql(s, "migrating",
			      "SET LOCAL client_min_messages = warning");
	for (size_t i = 0; !rc && i < sizeof(MIGRATION) / sizeof(*MIGRATION);
	     i++)
		rc = exec_sql(s, "migrating", MIGRATION[i]);
	if (!rc)
		rc = migrate_id_columns(s);
	if (!rc)
		rc = dis__snapshot_migrate(s);
	if (!rc)
		rc = dis__listener_migrate(s);
	if (!rc)
		rc = exec_sql(s, "committing the migration", "COMMIT");
	if (rc) {
		exec_keeping_error(s, "rolling back the migration", "ROLLBACK");
		return rc;
	}
	s->schema_id = 0;
	return schema_id(s, &id);
}

/* ---- reading events ---- */

dis_position dis__row_position(const PGresult *res, int row, int col)
{
	dis_position p;

	p.id = (int64_t)dis__get_be64(PQgetvalue(res, row, col));
	p.tx = dis__get_be64(PQgetvalue(res, row, col + 1));
	return p;
}

int dis__store_event_view_row(dis_store *s, const PGresult *res, int row,
			      int col, const dis_position *known,
			      dis_event **view, dis_event **out)
{
	const dis_schema *writer = NULL;
	const unsigned char *payload;
	dis_event *ev;
	dis_position pos;
	const char *type;
	char err[DIS_ERRMSG_LEN];
	int64_t id;
	size_t len;
	int rc;

	if (PQfformat(res, col) != 1 || PQfformat(res, col + 3) != 1)
		return dis__store_fail(s, DIS_EINVAL,
				       "event rows must be read in binary");
	pos = known ? *known : dis__row_position(res, row, col);
	id = pos.id;
	type = PQgetvalue(res, row, col + 2);
	payload = (const unsigned char *)PQgetvalue(res, row, col + 3);
	len = (size_t)PQgetlength(res, row, col + 3);

	if (len > s->max_payload)
		return dis__store_fail(s, DIS_ESERDE,
				       "event %" PRId64 " (%s): payload of %zu "
				       "bytes exceeds the limit of %zu",
				       id, type, len, s->max_payload);
	if (len < FRAME_LEN || payload[0] != FRAME_MAGIC)
		return dis__store_fail(s, DIS_ESERDE,
				       "event %" PRId64 " (%s): payload is not "
				       "a framed Avro record",
				       id, type);
	rc = writer_schema(s, (int32_t)get_be32(payload + 1), &writer);
	if (rc) {
		if (rc == DIS_ESERDE) {
			char keep[DIS_ERRMSG_LEN];

			memcpy(keep, s->errmsg, sizeof(keep));
			return dis__store_fail(s, rc, "event %" PRId64 " (%s): %s",
					       id, type, keep);
		}
		return rc;
	}
	rc = dis__event_decode_view(s->schema, writer, type,
				    payload + FRAME_LEN, len - FRAME_LEN, view,
				    &ev, err, sizeof(err));
	if (rc)
		return dis__store_fail(s, rc == DIS_ENOMEM ? rc : DIS_ESERDE,
				       "event %" PRId64 " (%s): %s", id, type,
				       err);
	dis__event_set_stored(ev, id, pos);
	*out = ev;
	return 0;
}

/* Calls fn for every event row of `res` (columns from `col`). */
static int deliver_rows(dis_store *s, const PGresult *res, int col,
			dis_event_fn fn, void *arg)
{
	dis_event *view = NULL;
	int rc = 0;

	for (int r = 0; r < PQntuples(res) && !rc; r++) {
		dis_event *ev;

		if (PQgetisnull(res, r, col))
			continue;
		rc = dis__store_event_view_row(s, res, r, col, NULL, &view,
					       &ev);
		if (rc)
			break;
		rc = fn ? fn(arg, ev) : 0;
		if (ev != view)
			dis_event_free(ev);
	}
	dis_event_free(view);
	return rc;
}

static int version_new(const char *text, dis_version **out)
{
	dis_version *v = malloc(sizeof(*v));

	if (!v)
		return DIS_ENOMEM;
	v->text = dis__strdup(text);
	if (!v->text) {
		free(v);
		return DIS_ENOMEM;
	}
	*out = v;
	return 0;
}

/* The events of `query` that snapshot parameter $n did not see. */
static void sql_unseen(dis__sql *sql, const char *snapshot)
{
	int n;

	dis__sql_puts(sql, " AND tx >= pg_snapshot_xmin(");
	dis__sql_param(sql, snapshot);
	n = sql->nparams;
	dis__sql_printf(sql, "::pg_snapshot) AND NOT pg_visible_in_snapshot("
			     "tx, $%d::pg_snapshot)",
			n);
}

int dis__load_sql(const dis_query *query, const char *since, dis__sql *sql)
{
	int rc;

	dis__sql_puts(sql, "SELECT pg_current_snapshot()::text, e.* FROM "
			   "(SELECT 1) AS one LEFT JOIN LATERAL (SELECT "
			   DIS__EVENT_COLUMNS " FROM event WHERE ");
	rc = dis__query_sql(query, sql);
	if (since)
		sql_unseen(sql, since);
	dis__sql_puts(sql, ") AS e ON true ORDER BY e.tx, e.event_id");
	if (rc)
		return rc;
	return sql->oom || sql->text.oom ? DIS_ENOMEM : 0;
}

int dis__load_result(dis_store *s, const PGresult *res, dis_event_fn fn,
		     void *arg, dis_version **version)
{
	int rc = deliver_rows(s, res, 1, fn, arg);

	if (!rc && version && PQntuples(res) > 0) {
		char *text = PQgetvalue(res, 0, 0);

		if (version_new(text, version))
			rc = dis__store_fail(s, DIS_ENOMEM, "out of memory");
	}
	return rc;
}

static int load(dis_store *s, const dis_query *query, const dis_version *since,
		dis_event_fn fn, void *arg, dis_version **version)
{
	dis__sql sql;
	PGresult *res;
	int rc;

	if (!s || !query)
		return DIS_EINVAL;
	if ((rc = dis_query_check(query)))
		return dis__store_fail(s, rc, "query: %s",
				       dis_query_errmsg(query));
	dis__sql_init(&sql);
	rc = dis__load_sql(query, since ? since->text : NULL, &sql);
	if (rc) {
		dis__sql_free(&sql);
		return dis__store_fail(s, rc, "building the load statement");
	}
	rc = run(s, "loading events", dis__buf_cstr(&sql.text), sql.nparams,
		 (const char *const *)sql.params, NULL, NULL, 1,
		 PGRES_TUPLES_OK, &res);
	dis__sql_free(&sql);
	if (rc)
		return rc;
	rc = dis__load_result(s, res, fn, arg, version);
	PQclear(res);
	return rc;
}

int dis_store_load(dis_store *s, const dis_query *query, dis_event_fn fn,
		   void *arg, dis_version **version)
{
	return load(s, query, NULL, fn, arg, version);
}

int dis_store_load_since(dis_store *s, const dis_query *query,
			 const dis_version *since, dis_event_fn fn, void *arg,
			 dis_version **version)
{
	if (!since)
		return load(s, query, NULL, fn, arg, version);
	return load(s, query, since, fn, arg, version);
}

/* Transactions below it have ended: every event under it is visible. */
#define BARRIER_SQL "pg_snapshot_xmin(pg_current_snapshot())"

int dis__read_sql(const dis_query *query, dis_position from, size_t limit,
		  dis__sql *sql)
{
	int rc;

	/*
	 * The events, then one row with the barrier: both read the
	 * statement's one snapshot. Neither a join (which projected every
	 * row through it: a quarter of a 1000-row fetch) nor an outer sort
	 * (half of it): UNION ALL returns its branches in order and the
	 * first in its index order; dis__read_result checks both. (The
	 * type as text: an Append passing varchar on cost a tenth more.)
	 */
	dis__sql_puts(sql, "(SELECT NULL::xid8 AS barrier, event_id, tx, "
			   "event_type::text, payload FROM event WHERE "
			   "(tx, event_id) > (");
	dis__sql_param_u64(sql, from.tx);
	dis__sql_puts(sql, "::xid8, ");
	dis__sql_param_i64(sql, from.id);
	dis__sql_puts(sql, ") AND tx < " BARRIER_SQL " AND ");
	rc = dis__query_sql(query, sql);
	dis__sql_puts(sql, " ORDER BY tx, event_id LIMIT ");
	dis__sql_param_i64(sql, (int64_t)limit);
	dis__sql_puts(sql, ") UNION ALL SELECT " BARRIER_SQL
			   ", NULL, NULL, NULL, NULL");
	if (rc)
		return rc;
	return sql->oom || sql->text.oom ? DIS_ENOMEM : 0;
}

int dis__read_result(const PGresult *res, size_t limit, dis_position from,
		     int *nrows, dis_position *next)
{
	int rows = 0;
	dis_position last = from;
	uint64_t barrier = 0;
	int last_row = PQntuples(res) - 1;

	if (last_row < 0 || PQnfields(res) < 5 || PQfformat(res, 0) != 1 ||
	    PQgetisnull(res, last_row, 0) || !PQgetisnull(res, last_row, 1))
		return DIS_EPG;
	barrier = dis__get_be64(PQgetvalue(res, last_row, 0));
	for (int r = 0; r < last_row; r++) {
		dis_position p;

		if (PQgetisnull(res, r, 1))
			return DIS_EPG;
		rows++;
		p = dis__row_position(res, r, 1);
		if (dis_position_cmp(p, last) <= 0)
			return DIS_EPG;
		last = p;
	}
	*nrows = rows;
	if ((size_t)rows < limit) {
		/* Everything below the barrier has been seen. */
		dis_position b = {barrier, 0};

		if (dis_position_cmp(b, last) > 0)
			last = b;
	}
	*next = last;
	return 0;
}

int dis_store_read(dis_store *s, const dis_query *query, dis_position from,
		   size_t limit, dis_event_fn fn, void *arg, dis_position *next)
{
	dis__sql sql;
	PGresult *res;
	int rows, rc;

	if (!s || !query || !next || limit == 0)
		return DIS_EINVAL;
	if ((rc = dis_query_check(query)))
		return dis__store_fail(s, rc, "query: %s",
				       dis_query_errmsg(query));
	dis__sql_init(&sql);
	rc = dis__read_sql(query, from, limit, &sql);
	if (rc) {
		dis__sql_free(&sql);
		return dis__store_fail(s, rc, "building the read statement");
	}
	rc = run(s, "reading events", dis__buf_cstr(&sql.text), sql.nparams,
		 (const char *const *)sql.params, NULL, NULL, 1,
		 PGRES_TUPLES_OK, &res);
	dis__sql_free(&sql);
	if (rc)
		return rc;
	if (dis__read_result(res, limit, from, &rows, next))
		rc = dis__store_fail(s, DIS_EPG,
				     "unexpected read result: rows missing "
				     "or out of position order");
	else
		rc = deliver_rows(s, res, 1, fn, arg);
	PQclear(res);
	return rc;
}

int dis_store_head(dis_store *s, dis_position *out)
{
	PGresult *res;
	int rc;

	if (!s || !out)
		return DIS_EINVAL;
	rc = run(s, "reading the head position",
		 "SELECT event_id, tx FROM event ORDER BY tx DESC, "
		 "event_id DESC LIMIT 1",
		 0, NULL, NULL, NULL, 1, PGRES_TUPLES_OK, &res);
	if (rc)
		return rc;
	*out = PQntuples(res) == 1 ? dis__row_position(res, 0, 0)
				   : DIS_POSITION_START;
	PQclear(res);
	return 0;
}

int dis_store_position_of(dis_store *s, int64_t event_id, dis_position *out)
{
	char id[32];
	const char *vals[1] = {id};
	PGresult *res;
	int rc;

	if (!s || !out)
		return DIS_EINVAL;
	snprintf(id, sizeof(id), "%" PRId64, event_id);
	rc = run(s, "reading an event's position",
		 "SELECT tx FROM event WHERE event_id = $1::int8", 1, vals,
		 NULL, NULL, 1, PGRES_TUPLES_OK, &res);
	if (rc)
		return rc;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return dis__store_fail(s, DIS_ENOTFOUND,
				       "no event with id %" PRId64, event_id);
	}
	out->tx = dis__get_be64(PQgetvalue(res, 0, 0));
	out->id = event_id;
	PQclear(res);
	return 0;
}

/* ---- appending ---- */

static int cmp_lock(const void *a, const void *b)
{
	const dis__lock *x = a, *y = b;

	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	/* Exclusive first, so the dedup below keeps it. */
	return (int)y->exclusive - (int)x->exclusive;
}

static int push_keys(dis__lock **all, size_t *n, size_t *cap, int64_t *keys,
		     size_t nkeys, bool exclusive)
{
	if (*n + nkeys > *cap) {
		size_t c = (*n + nkeys) * 2;
		dis__lock *p = realloc(*all, c * sizeof(*p));

		if (!p) {
			free(keys);
			return DIS_ENOMEM;
		}
		*all = p;
		*cap = c;
	}
	for (size_t i = 0; i < nkeys; i++)
		(*all)[(*n)++] = (dis__lock){keys[i], exclusive};
	free(keys);
	return 0;
}

/* The append's lock keys, sorted and deduplicated (exclusive wins). */
static int append_locks(dis_store *s, dis_event *const *events, size_t n,
			const dis_query *validation, dis__lock **out,
			size_t *nout)
{
	dis__lock *all = NULL;
	size_t nall = 0, cap = 0, uniq = 0;
	int64_t *k;
	size_t nk;
	int rc = 0;

	if (validation) {
		rc = dis__query_lock_keys(validation, &k, &nk);
		if (!rc)
			rc = push_keys(&all, &nall, &cap, k, nk, true);
	}
	for (size_t i = 0; i < n && !rc; i++) {
		rc = dis__event_lock_keys(events[i], &k, &nk);
		if (!rc)
			rc = push_keys(&all, &nall, &cap, k, nk, false);
	}
	if (rc) {
		free(all);
		return dis__store_fail(s, rc, "computing lock keys");
	}
	qsort(all, nall, sizeof(*all), cmp_lock);
	for (size_t i = 0; i < nall; i++)
		if (uniq == 0 || all[uniq - 1].key != all[i].key)
			all[uniq++] = all[i];
	*out = all;
	*nout = uniq;
	return 0;
}

/* Sorted, deduplicated keys as the two binary arrays dis_lock_keys takes. */
int dis__lock_params(const dis__lock *locks, size_t n, dis__buf *keys,
		     dis__buf *excl)
{
	array_begin(keys, OID_INT8, n, false);
	array_begin(excl, OID_BOOL, n, false);
	for (size_t i = 0; i < n; i++) {
		unsigned char b = locks[i].exclusive;

		put_be32(keys, 8);
		put_be64(keys, (uint64_t)locks[i].key);
		array_elem(excl, &b, 1);
	}
	return keys->oom || excl->oom ? DIS_ENOMEM : 0;
}

void dis__notify_token(const char *payload, char out[24])
{
	static const char seed[] = "disintegrate notify token";
	int64_t k = (int64_t)dis__hash64(payload, strlen(payload),
					 dis__hash64(seed, sizeof(seed), 0));

	snprintf(out, 24, "%" PRId64, k);
}

/* The comma-separated distinct types of the batch, or "" when too long. */
static char *notify_payload(dis_event *const *events, size_t n)
{
	dis__buf b;

	dis__buf_init(&b);
	for (size_t i = 0; i < n; i++) {
		const char *type = dis_event_type(events[i]);
		bool seen = false;

		for (size_t j = 0; j < i && !seen; j++)
			seen = !strcmp(type, dis_event_type(events[j]));
		if (seen)
			continue;
		if (b.len)
			dis__buf_puts(&b, ",");
		dis__buf_puts(&b, type);
		if (b.len > NOTIFY_MAX) {
			b.len = 0;
			break;
		}
	}
	return dis__buf_take(&b);
}

/*
 * The binary arrays of the insert: types, framed payloads, then one array
 * per domain id (text, or int8 for long ids; NULL where the event's type
 * does not declare the id or the value is null).
 */
static int insert_arrays(dis_store *s, dis_event *const *events, size_t n,
			 int32_t sid, dis__buf *arrays, bool *nulls)
{
	size_t nids = dis_schema_id_count(s->schema);
	/* One event: plain binary values instead of arrays. */
	bool scalar = n == 1;
	dis__buf payload;
	char err[DIS_ERRMSG_LEN];
	int rc = 0;

	if (!scalar) {
		array_begin(&arrays[0], OID_TEXT, n, false);
		array_begin(&arrays[1], OID_BYTEA, n, false);
		for (size_t j = 0; j < nids; j++)
			array_begin(&arrays[2 + j],
				    dis_schema_id_type(s->schema, j) ==
						    DIS_ID_LONG
					    ? OID_INT8
					    : OID_TEXT,
				    n, true);
	}
	dis__buf_init(&payload);
	for (size_t i = 0; i < n && !rc; i++) {
		const dis_event *ev = events[i];
		const char *type = dis_event_type(ev);
		unsigned char frame[FRAME_LEN] = {FRAME_MAGIC, sid >> 24,
						  sid >> 16, sid >> 8, sid};

		if (dis_event_schema(ev) != s->schema) {
			rc = dis__store_fail(s, DIS_EINVAL,
					     "event %zu (%s) belongs to another "
					     "schema than the store's",
					     i, type);
			break;
		}
		if (scalar)
			dis__buf_append(&arrays[0], type, strlen(type));
		else
			array_elem(&arrays[0], type, strlen(type));
		dis__buf_reset(&payload);
		dis__buf_append(&payload, frame, sizeof(frame));
		rc = dis__event_encode(ev, &payload, err, sizeof(err));
		if (rc) {
			rc = dis__store_fail(s, DIS_ESERDE,
					     "event %zu (%s): %s", i, type,
					     err);
			break;
		}
		if (payload.len > s->max_payload) {
			rc = dis__store_fail(s, DIS_ESERDE,
					     "event %zu (%s): payload of %zu "
					     "bytes exceeds the limit of %zu",
					     i, type, payload.len,
					     s->max_payload);
			break;
		}
		if (scalar)
			dis__buf_append(&arrays[1], payload.data, payload.len);
		else
			array_elem(&arrays[1], payload.data, payload.len);
		for (size_t j = 0; j < nids && !rc; j++) {
			const char *id = dis_schema_id_name(s->schema, j);
			dis__idval v;
			dis__buf *a = &arrays[2 + j];
			bool null = false;

			if (!dis_schema_type_has_id(s->schema, type, id)) {
				null = true;
			} else if (dis__event_idval(ev, (int)j, &v)) {
				rc = dis__store_fail(s, DIS_EINVAL,
						     "event %zu (%s): domain id "
						     "\"%s\" has no valid value",
						     i, type, id);
			} else if (!v.present) {
				null = true;
			} else if (v.type == DIS_ID_LONG) {
				if (!scalar)
					put_be32(a, 8);
				put_be64(a, (uint64_t)v.num);
			} else if (scalar) {
				dis__buf_append(a, v.str, strlen(v.str));
			} else {
				array_elem(a, v.str, strlen(v.str));
			}
			if (null && scalar)
				nulls[2 + j] = true;
			else if (null)
				array_null(a);
		}
	}
	if (!rc && payload.oom)
		rc = dis__store_fail(s, DIS_ENOMEM, "out of memory");
	dis__buf_free(&payload);
	for (size_t j = 0; j < nids + 2 && !rc; j++)
		if (arrays[j].oom)
			rc = dis__store_fail(s, DIS_ENOMEM, "out of memory");
	return rc;
}

/* WHERE NOT EXISTS (an event matching `validation` that `version` did not
 * see), or nothing without a validation query. */
static int insert_check(const dis_query *validation,
			const dis_version *version, dis__sql *sql)
{
	int rc;

	if (!validation)
		return 0;
	dis__sql_puts(sql, " WHERE NOT EXISTS (SELECT 1 FROM event WHERE ");
	rc = dis__query_sql(validation, sql);
	if (version)
		sql_unseen(sql, version->text);
	/*
	 * A transaction's own earlier events were seen by a load made inside
	 * it, though its snapshot does not count its own xid.
	 */
	dis__sql_puts(sql, " AND tx IS DISTINCT FROM "
			   "pg_current_xact_id_if_assigned())");
	return rc;
}

/* INSERT ... SELECT FROM unnest(arrays) [WHERE NOT EXISTS (check)], or
 * for one event INSERT ... SELECT values [WHERE NOT EXISTS (check)]. */
static int insert_sql(dis_store *s, size_t n, const dis_query *validation,
		      const dis_version *version, dis__sql *sql)
{
	size_t nids = dis_schema_id_count(s->schema);
	int rc = 0;

	/* Placeholders $1..$k are the binary values or arrays, bound by the
	 * caller. */
	for (size_t j = 0; j < nids + 2; j++)
		dis__sql_bind(sql, "");
	dis__sql_puts(sql, "INSERT INTO event (event_type, payload");
	for (size_t j = 0; j < nids; j++)
		dis__sql_printf(sql, ", \"%s\"", dis_schema_id_name(s->schema, j));
	if (n == 1) {
		/* One event: a plain row, cheaper than unnest and its sort. */
		dis__sql_puts(sql, ") SELECT $1::text, $2::bytea");
		for (size_t j = 0; j < nids; j++) {
			dis_id_type t = dis_schema_id_type(s->schema, j);

			dis__sql_printf(sql, ", $%zu::%s", j + 3,
					t == DIS_ID_LONG   ? "int8"
					: t == DIS_ID_UUID ? "text::uuid"
							   : "text");
		}
		rc = insert_check(validation, version, sql);
		dis__sql_puts(sql, " RETURNING event_id, tx");
		if (!rc && (sql->oom || sql->text.oom))
			rc = DIS_ENOMEM;
		return rc;
	}
	dis__sql_puts(sql, ") SELECT u.t, u.p");
	for (size_t j = 0; j < nids; j++)
		dis__sql_printf(sql, ", u.c%zu%s", j,
				dis_schema_id_type(s->schema, j) == DIS_ID_UUID
					? "::uuid"
					: "");
	dis__sql_puts(sql, " FROM unnest($1::text[], $2::bytea[]");
	for (size_t j = 0; j < nids; j++)
		dis__sql_printf(sql, ", $%zu::%s[]", j + 3,
				dis_schema_id_type(s->schema, j) == DIS_ID_LONG
					? "int8"
					: "text");
	dis__sql_puts(sql, ") WITH ORDINALITY AS u(t, p");
	for (size_t j = 0; j < nids; j++)
		dis__sql_printf(sql, ", c%zu", j);
	dis__sql_puts(sql, ", o)");
	rc = insert_check(validation, version, sql);
	dis__sql_puts(sql, " ORDER BY u.o RETURNING event_id, tx");
	if (!rc && (sql->oom || sql->text.oom))
		rc = DIS_ENOMEM;
	return rc;
}

void dis__append_free(dis__append *a)
{
	if (!a)
		return;
	free(a->locks);
	dis__sql_free(&a->insert);
	free(a->lengths);
	free(a->formats);
	free(a->notify);
	memset(a, 0, sizeof(*a));
	dis__sql_init(&a->insert);
}

int dis__append_build(dis_store *s, dis_event *const *events, size_t n,
		      const dis_query *validation, const dis_version *version,
		      dis__append *a)
{
	size_t narr = dis_schema_id_count(s->schema) + 2;
	dis__buf *arrays = NULL;
	bool *nulls = NULL;
	int rc;

	memset(a, 0, sizeof(*a));
	dis__sql_init(&a->insert);
	if (!events || n == 0)
		return dis__store_fail(s, DIS_EINVAL,
				       "an append needs at least one event");
	if (n > INT32_MAX)
		return dis__store_fail(s, DIS_EINVAL, "too many events");
	for (size_t i = 0; i < n; i++)
		if (!events[i])
			return dis__store_fail(s, DIS_EINVAL,
					       "event %zu is NULL", i);
	if (validation && (rc = dis_query_check(validation)))
		return dis__store_fail(s, rc, "validation query: %s",
				       dis_query_errmsg(validation));
	if (!s->schema_id)
		return dis__store_fail(s, DIS_ESTATE,
				       "the event schema's registry id is not "
				       "known yet");
	a->nevents = n;
	a->checked = validation != NULL;
	arrays = calloc(narr, sizeof(*arrays));
	nulls = calloc(narr, sizeof(*nulls));
	if (!arrays || !nulls) {
		free(arrays);
		free(nulls);
		return dis__store_fail(s, DIS_ENOMEM, "out of memory");
	}
	for (size_t j = 0; j < narr; j++)
		dis__buf_init(&arrays[j]);
	if ((rc = insert_arrays(s, events, n, s->schema_id, arrays, nulls)))
		goto out;
	if ((rc = append_locks(s, events, n, validation, &a->locks,
			       &a->nlocks)))
		goto out;
	if ((rc = insert_sql(s, n, validation, version, &a->insert))) {
		dis__store_fail(s, rc, "building the append statement");
		goto out;
	}
	a->lengths = calloc((size_t)a->insert.nparams, sizeof(*a->lengths));
	a->formats = calloc((size_t)a->insert.nparams, sizeof(*a->formats));
	a->notify = notify_payload(events, n);
	if (!a->lengths || !a->formats || !a->notify) {
		rc = dis__store_fail(s, DIS_ENOMEM, "out of memory");
		goto out;
	}
	/* The arrays (or values) become the insert's first parameters, in
	 * binary; a NULL value is a NULL pointer, an empty one a 0-byte
	 * value. */
	for (size_t j = 0; j < narr; j++) {
		free(a->insert.params[j]);
		a->insert.params[j] = NULL;
		a->formats[j] = 1;
		if (nulls[j])
			continue;
		if (!arrays[j].data && !dis__buf_reserve(&arrays[j], 1))
			arrays[j].data[0] = '\0';
		if (!arrays[j].data) {
			rc = dis__store_fail(s, DIS_ENOMEM, "out of memory");
			goto out;
		}
		if (arrays[j].len > INT32_MAX) {
			rc = dis__store_fail(s, DIS_EINVAL,
					     "the append's events come to more "
					     "than 2 GB in one value");
			goto out;
		}
		a->insert.params[j] = (char *)arrays[j].data;
		a->lengths[j] = (int)arrays[j].len;
		dis__buf_init(&arrays[j]);
	}
out:
	for (size_t j = 0; j < narr; j++)
		dis__buf_free(&arrays[j]);
	free(arrays);
	free(nulls);
	return rc;
}

int dis__append_result(dis_store *s, const PGresult *res, const dis__append *a,
		       dis_event *const *events, int64_t *ids_out)
{
	size_t n = a->nevents;

	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK)
		return dis__store_fail(s, DIS_EPG, "append returned no ids");
	if ((size_t)PQntuples(res) != n) {
		if (a->checked && PQntuples(res) == 0)
			return dis__store_fail(s, DIS_ECONFLICT,
					       "an event matching the "
					       "validation query was appended "
					       "since the state was loaded");
		return dis__store_fail(s, DIS_EPG,
				       "append returned %d ids for %zu events",
				       PQntuples(res), n);
	}
	for (size_t i = 0; i < n; i++) {
		dis_position pos = dis__row_position(res, (int)i, 0);

		dis__event_set_stored(events[i], pos.id, pos);
		if (ids_out)
			ids_out[i] = pos.id;
	}
	return 0;
}

/*
 * The version seeing what `snapshot` (pg_snapshot text) saw plus
 * transaction `tx`, which started after it: tx becomes visible, every
 * transaction between the snapshot's xmax and tx stays invisible. *out is
 * NULL when that would list more than DIS__VERSION_SPAN transactions.
 */
int dis__version_seeing(const char *snapshot, uint64_t tx, char **out)
{
	unsigned long long xmin, xmax, x;
	const char *p;
	char *end;
	dis__buf b;

	*out = NULL;
	if (!snapshot || sscanf(snapshot, "%llu:%llu:", &xmin, &xmax) != 2 ||
	    !(p = strchr(snapshot, ':')) || !(p = strchr(p + 1, ':')) ||
	    xmin > xmax || tx < xmin)
		return DIS_EINVAL;
	if (tx >= xmax && tx - xmax > DIS__VERSION_SPAN)
		return 0;
	dis__buf_init(&b);
	dis__buf_printf(&b, "%llu:%llu:", xmin,
			tx >= xmax ? (unsigned long long)tx + 1 : xmax);
	for (p++; *p; p = *end ? end + 1 : end) {
		x = strtoull(p, &end, 10);
		if (end == p || (*end && *end != ',') || x < xmin ||
		    x >= xmax) {
			dis__buf_free(&b);
			return DIS_EINVAL;
		}
		if (x != tx)
			dis__buf_printf(&b, "%llu,", x);
	}
	for (x = xmax; x < tx; x++)
		dis__buf_printf(&b, "%llu,", x);
	if (b.len && b.data[b.len - 1] == ',')
		b.len--;
	if (b.oom || !(*out = dis__buf_take(&b))) {
		dis__buf_free(&b);
		return DIS_ENOMEM;
	}
	return 0;
}

int dis__version_after(const char *snapshot, uint64_t tx, dis_version **out)
{
	char *text = NULL;
	int rc = dis__version_seeing(snapshot, tx, &text);

	*out = NULL;
	if (rc == 0 && text && version_new(text, out))
		rc = DIS_ENOMEM;
	free(text);
	return rc;
}

/*
 * After the append's own block: what it saw, its own events included.
 * The events are committed whatever happens here: a snapshot that cannot
 * be used leaves *next NULL (the caller then loads afresh).
 */
static void next_version(const PGresult *res, dis_version **next)
{
	if (PQnfields(res) >= 3 && !PQgetisnull(res, 0, 2))
		dis__version_after(PQgetvalue(res, 0, 2),
				   dis__row_position(res, 0, 0).tx, next);
}

int dis_store_append(dis_store *s, dis_event *const *events, size_t n,
		     const dis_query *validation, const dis_version *version,
		     int64_t *ids_out)
{
	return dis__store_append_next(s, events, n, validation, version,
				      ids_out, NULL);
}

int dis__store_append_next(dis_store *s, dis_event *const *events, size_t n,
			   const dis_query *validation,
			   const dis_version *version, int64_t *ids_out,
			   dis_version **next)
{
	static const int bin2[2] = {1, 1};
	dis__append a;
	dis__buf keys, excl;
	PGresult *results[5] = {NULL, NULL, NULL, NULL, NULL};
	int32_t sid;
	int ins = 1, rc;
	bool alone, keep_next;

	if (!s)
		return DIS_EINVAL;
	if (!events || n == 0)
		return dis__store_fail(s, DIS_EINVAL,
				       "an append needs at least one event");
	if (PQtransactionStatus(s->conn) == PQTRANS_INERROR)
		return dis__store_fail(s, DIS_ESTATE,
				       "the connection's transaction is "
				       "aborted; roll it back first");
	if ((rc = schema_id(s, &sid)))
		return rc;
	dis__buf_init(&keys);
	dis__buf_init(&excl);
	/* Outside a transaction the append is a block of its own. */
	alone = PQtransactionStatus(s->conn) == PQTRANS_IDLE;
	keep_next = next && alone;
	if (next)
		*next = NULL;
	rc = dis__append_build(s, events, n, validation, version, &a);
	if (!rc && keep_next)
		dis__sql_puts(&a.insert, ", pg_current_snapshot()::text");
	if (!rc && (a.insert.text.oom ||
		    dis__lock_params(a.locks, a.nlocks, &keys, &excl)))
		rc = dis__store_fail(s, DIS_ENOMEM, "out of memory");
	if (!rc) {
		const char *lock_vals[2] = {(const char *)keys.data,
					    (const char *)excl.data};
		int lock_lens[2] = {(int)keys.len, (int)excl.len};
		char token[24];
		const char *nvals[2] = {a.notify, token};
		const char *tok_vals[3] = {(const char *)keys.data,
					   (const char *)excl.data, token};
		int tok_lens[3] = {(int)keys.len, (int)excl.len, 0};
		static const int tok_fmts[3] = {1, 1, 0};
		pstmt st[3] = {
			{DIS__LOCK_JOINED_SQL, 2, lock_vals, lock_lens, bin2,
			 0},
			{dis__buf_cstr(&a.insert.text), a.insert.nparams,
			 (const char *const *)a.insert.params, a.lengths,
			 a.formats, 1},
			{DIS__NOTIFY_SQL, 1, nvals, NULL, NULL, 0},
		};
		pstmt own = {DIS__NOTIFY_OWN_SQL, 2, nvals, NULL, NULL, 0};
		/* After a failed block or notification: if this session
		 * holds the token, others skipped their notifications on
		 * its word: notify, and release it. Also before a retried
		 * block, which takes the token again. */
		pstmt recover = {
			DIS__NOTIFY_RECOVER_SQL, 2, nvals, NULL, NULL, 0};

		dis__notify_token(a.notify, token);

		pstmt block[4] = {{"BEGIN ISOLATION LEVEL READ COMMITTED", 0,
				   NULL, NULL, NULL, 0},
				  {DIS__LOCK_TOKEN_SQL, 3, tok_vals, tok_lens,
				   tok_fmts, 0},
				  st[1],
				  {"COMMIT", 0, NULL, NULL, NULL, 0}};

		/*
		 * Outside a transaction block the append is a block of its
		 * own (each statement takes its own snapshot, so the check
		 * sees what committed before the locks were granted). The
		 * notification is a transaction of its own after that COMMIT,
		 * so the cluster-wide notify lock is not held across the
		 * append's WAL flush, which would serialise every append.
		 * NOTIFY gives it an xid, but a transaction that wrote no WAL
		 * besides its commit record commits without a flush (checked:
		 * 100 notifications, one pwrite, no fdatasync). Both ride in
		 * one sync, so the server answers in one flush (measured:
		 * ~10 us less client and server CPU per append than the
		 * implicit block plus a sync of its own for the notification).
		 * A failed notification is logged: the events are committed
		 * by then. Inside the caller's transaction the append and the
		 * notification join that transaction.
		 */
		if (alone) {
			rc = pipeline(s, "appending events", block, 4, &own,
				      true, &recover, results);
			ins = 2;
			if (rc || s->trailer_failed)
				exec_aside(s, &recover);
		} else {
			rc = pipeline(s, "appending events", st, 3, NULL, false,
				      NULL, results);
			if (rc && strstr(s->errmsg, DIS__NEEDS_READ_COMMITTED))
				rc = dis__store_fail(
					s, DIS_ESTATE,
					DIS__NEEDS_READ_COMMITTED
					" (its check must see what commits "
					"after the transaction's snapshot); "
					"the transaction is aborted");
		}
	}
	if (!rc)
		rc = dis__append_result(s, results[ins], &a, events, ids_out);
	if (!rc && keep_next)
		next_version(results[ins], next);
	for (int i = 0; i < 5; i++)
		PQclear(results[i]);
	dis__append_free(&a);
	dis__buf_free(&keys);
	dis__buf_free(&excl);
	return rc;
}

/* ---- versions ---- */

void dis_version_free(dis_version *v)
{
	if (!v)
		return;
	free(v->text);
	free(v);
}

int dis_version_copy(const dis_version *v, dis_version **out)
{
	if (!v || !out)
		return DIS_EINVAL;
	return version_new(v->text, out);
}

const char *dis_version_text(const dis_version *v)
{
	return v ? v->text : NULL;
}

/* "xmin:xmax:xip,xip,..." with decimal numbers. */
int dis_version_parse(const char *text, dis_version **out)
{
	int colons = 0;

	if (!text || !out || !*text)
		return DIS_EINVAL;
	for (const char *p = text; *p; p++) {
		if (*p == ':') {
			if (++colons > 2 || p == text || p[-1] == ':')
				return DIS_EINVAL;
		} else if (*p == ',') {
			if (colons != 2 || p[-1] == ':' || p[-1] == ',' ||
			    !p[1])
				return DIS_EINVAL;
		} else if (*p < '0' || *p > '9') {
			return DIS_EINVAL;
		}
	}
	if (colons != 2)
		return DIS_EINVAL;
	return version_new(text, out);
}
