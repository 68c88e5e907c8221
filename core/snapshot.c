/*
 * State snapshots: a state encoded as Avro with its own record schema,
 * stored with the version (database snapshot) of the load that built it.
 *
 * The table is disintegrate-postgres's `snapshot` plus three columns:
 * read_version (the dis_version text), state_schema (fingerprint of the
 * state's record schema) and state (the Avro bytes). `payload` holds the
 * state as JSON for people; `version` the highest event id it applied.
 */
#include "decision-internal.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

/* ---- codec ---- */

int dis__snapcodec_init(dis__snapcodec *c, const dis_state_def *def, char *err,
			size_t errlen)
{
	dis_schema *schema = NULL;
	int rc;

	memset(c, 0, sizeof(*c));
	if (!def->snapshot_schema || !def->snapshot_save ||
	    !def->snapshot_load) {
		dis__errf(err, errlen, "no snapshot support");
		return DIS_EINVAL;
	}
	rc = dis_schema_parse(def->snapshot_schema, &schema, err, errlen);
	if (rc)
		return rc;
	if (dis_schema_type_count(schema) != 1) {
		dis__errf(err, errlen,
			  "snapshot schema must be one record, not %zu",
			  dis_schema_type_count(schema));
		dis_schema_free(schema);
		return DIS_ESCHEMA;
	}
	c->def = def;
	c->schema = schema;
	c->type = dis_schema_type_name(schema, 0);
	c->fp = dis__schema_fingerprint(schema);
	return 0;
}

void dis__snapcodec_fini(dis__snapcodec *c)
{
	dis_schema_free(c->schema);
	memset(c, 0, sizeof(*c));
}

int dis__snapshot_encode(const dis__snapcodec *c, const void *state,
			 dis__buf *out, char **json, char *err, size_t errlen)
{
	dis_event *rec = NULL;
	int rc;

	if ((rc = dis_event_new(c->schema, c->type, &rec))) {
		dis__errf(err, errlen, "snapshot record: %s", dis_strerror(rc));
		return rc;
	}
	rc = c->def->snapshot_save(state, rec);
	if (rc != 0) {
		dis__errf(err, errlen, "snapshot_save failed: %s",
			  dis_strerror(rc));
		rc = rc < 0 ? rc : DIS_EINVAL;
	} else {
		rc = dis__event_encode(rec, out, err, errlen);
	}
	if (rc == 0 && json && dis_event_data_json(rec, json) != 0)
		*json = NULL;
	dis_event_free(rec);
	return rc;
}

int dis__snapshot_decode(const dis__snapcodec *c, void *state, const void *data,
			 size_t len, char *err, size_t errlen)
{
	dis_event *rec = NULL;
	int rc;

	if (!data) {
		dis__errf(err, errlen, "no state");
		return DIS_ESERDE;
	}
	rc = dis__event_decode(c->schema, c->schema, c->type, data, len, &rec,
			       err, errlen);
	if (rc)
		return rc;
	rc = c->def->snapshot_load(state, rec);
	if (rc != 0) {
		dis__errf(err, errlen, "snapshot_load refused it (%d)", rc);
		rc = DIS_ESERDE;
	}
	dis_event_free(rec);
	return rc;
}

void dis__snaprow_clear(dis__snaprow *row)
{
	free(row->schema_fp);
	free(row->version);
	free(row->data);
	free(row->json);
	row->schema_fp = row->version = row->json = NULL;
	row->data = NULL;
	row->len = 0;
	row->found = false;
}

/* ---- the table ---- */

/*
 * One implicit transaction (a multi-statement simple query) under an
 * advisory lock, so concurrent migrations queue instead of racing on the
 * catalog. Inside the caller's transaction it simply joins it. The
 * "already exists" notices are not wanted (the library never prints).
 */
static const char migrate_sql[] =
	"SET LOCAL client_min_messages = warning;"
	"SELECT pg_advisory_xact_lock(7310315846514425451);"
	"CREATE TABLE IF NOT EXISTS snapshot ("
	" id uuid PRIMARY KEY,"
	" name text,"
	" query text,"
	" version bigint,"
	" payload text,"
	" inserted_at timestamp DEFAULT now());"
	"ALTER TABLE snapshot ADD COLUMN IF NOT EXISTS read_version text;"
	"ALTER TABLE snapshot ADD COLUMN IF NOT EXISTS state_schema text;"
	"ALTER TABLE snapshot ADD COLUMN IF NOT EXISTS state bytea;";

int dis__snapshot_migrate(dis_store *store)
{
	PGconn *conn = dis_store_conn(store);
	PGresult *res;
	int rc = 0;

	if (!conn)
		return dis__store_fail(store, DIS_ECONN, "no connection");
	res = PQexec(conn, migrate_sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK &&
	    PQresultStatus(res) != PGRES_TUPLES_OK)
		rc = dis__store_pg_fail(store, res,
					"creating the snapshot table");
	PQclear(res);
	return rc;
}

static int64_t get_i64(const char *p)
{
	uint32_t hi, lo;

	memcpy(&hi, p, 4);
	memcpy(&lo, p + 4, 4);
	return (int64_t)(((uint64_t)ntohl(hi) << 32) | ntohl(lo));
}

static int32_t get_i32(const char *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return (int32_t)ntohl(v);
}

static char *dup_value(const PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col))
		return NULL;
	return dis__strdup(PQgetvalue(res, row, col));
}

int dis__snapshot_fetch(dis_store *store, dis__snaprow *rows, size_t n)
{
	PGconn *conn = dis_store_conn(store);
	dis__sql sql;
	PGresult *res;
	int rc = 0;

	if (n == 0)
		return 0;
	if (!conn)
		return dis__store_fail(store, DIS_ECONN, "no connection");
	dis__sql_init(&sql);
	dis__sql_puts(&sql, "SELECT k.i, s.state_schema, s.read_version,"
			    " s.state, s.version FROM (VALUES ");
	for (size_t i = 0; i < n; i++) {
		dis__sql_printf(&sql, "%s(%zu, ", i ? ", " : "", i);
		dis__sql_param(&sql, rows[i].name);
		dis__sql_puts(&sql, "::text, ");
		dis__sql_param(&sql, rows[i].query);
		dis__sql_puts(&sql, "::text)");
	}
	dis__sql_puts(&sql, ") AS k(i, name, query) JOIN snapshot s"
			    " ON s.id = md5(k.name || chr(31) || k.query)::uuid"
			    " WHERE s.name = k.name AND s.query = k.query"
			    " AND s.state IS NOT NULL");
	if (sql.oom || sql.text.oom) {
		dis__sql_free(&sql);
		return dis__store_fail(store, DIS_ENOMEM, "out of memory");
	}
	res = PQexecParams(conn, dis__buf_cstr(&sql.text), sql.nparams, NULL,
			   (const char *const *)sql.params, NULL, NULL, 1);
	dis__sql_free(&sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		rc = dis__store_pg_fail(store, res, "reading snapshots");
		PQclear(res);
		return rc;
	}
	for (int r = 0; r < PQntuples(res) && rc == 0; r++) {
		dis__snaprow *row;
		int32_t i = get_i32(PQgetvalue(res, r, 0));
		size_t len;

		if (i < 0 || (size_t)i >= n)
			continue;
		row = &rows[i];
		dis__snaprow_clear(row);
		row->schema_fp = dup_value(res, r, 1);
		row->version = dup_value(res, r, 2);
		len = (size_t)PQgetlength(res, r, 3);
		row->data = malloc(len ? len : 1);
		if (row->data)
			memcpy(row->data, PQgetvalue(res, r, 3), len);
		row->len = len;
		row->last_id = PQgetisnull(res, r, 4)
				       ? 0
				       : get_i64(PQgetvalue(res, r, 4));
		if (!row->data ||
		    (!PQgetisnull(res, r, 1) && !row->schema_fp) ||
		    (!PQgetisnull(res, r, 2) && !row->version))
			rc = dis__store_fail(store, DIS_ENOMEM,
					     "out of memory");
		row->found = true;
	}
	PQclear(res);
	return rc;
}

int dis__snapshot_put(dis_store *store, const dis__snaprow *row)
{
	static const char sql[] =
		"INSERT INTO snapshot AS s (id, name, query, version, payload,"
		" read_version, state_schema, state, inserted_at)"
		" VALUES (md5($1 || chr(31) || $2)::uuid, $1, $2, $3::bigint,"
		" $4, $5, $6, $7::bytea, now())"
		" ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,"
		" query = EXCLUDED.query, version = EXCLUDED.version,"
		" payload = EXCLUDED.payload,"
		" read_version = EXCLUDED.read_version,"
		" state_schema = EXCLUDED.state_schema,"
		" state = EXCLUDED.state, inserted_at = now()"
		" WHERE s.state IS NULL OR s.version IS NULL"
		" OR s.version <= EXCLUDED.version"
		" OR s.state_schema IS DISTINCT FROM EXCLUDED.state_schema";
	PGconn *conn = dis_store_conn(store);
	char last[32];
	const char *values[7];
	int lengths[7] = {0};
	int formats[7] = {0};
	PGresult *res;
	int rc = 0;

	if (!conn)
		return dis__store_fail(store, DIS_ECONN, "no connection");
	snprintf(last, sizeof(last), "%lld", (long long)row->last_id);
	values[0] = row->name;
	values[1] = row->query;
	values[2] = last;
	values[3] = row->json;
	values[4] = row->version;
	values[5] = row->schema_fp;
	values[6] = (const char *)row->data;
	lengths[6] = (int)row->len;
	formats[6] = 1;
	res = PQexecParams(conn, sql, 7, NULL, values, lengths, formats, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		rc = dis__store_pg_fail(store, res, "storing a snapshot");
	PQclear(res);
	return rc;
}
