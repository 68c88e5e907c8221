/*
 * The listener tables (migration) and their administration: listing the
 * listeners with their lag, and moving a checkpoint. Blocking libpq on a
 * dis_store's connection.
 *
 * event_listener keeps disintegrate-postgres's columns (id,
 * last_processed_event_id, updated_at) and adds the position (checkpoint_tx,
 * checkpoint_id), the state and failure of the runtime that last worked it,
 * the types its query selects (for the lag), and a reset counter that tells
 * running runtimes their checkpoint was moved. A row created by
 * Disintegrate gets its position from last_processed_event_id.
 */
#include "listener-internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char MIGRATION[] =
	"DO $$ BEGIN"
	/* Serialises concurrent migrations of these tables ("dis-lstn"). */
	" PERFORM pg_advisory_xact_lock(7235441166829892718);"
	" CREATE TABLE IF NOT EXISTS event_listener ("
	"  id TEXT PRIMARY KEY,"
	"  last_processed_event_id BIGINT,"
	"  updated_at TIMESTAMP DEFAULT now());"
	/* ALTER TABLE locks the table even when there is nothing to add:
	 * only when something is missing. */
	" IF NOT EXISTS (SELECT 1 FROM pg_attribute"
	"   WHERE attrelid = 'event_listener'::regclass"
	"   AND attname = 'resets' AND NOT attisdropped) THEN"
	"  ALTER TABLE event_listener"
	"   ADD COLUMN IF NOT EXISTS checkpoint_tx xid8,"
	"   ADD COLUMN IF NOT EXISTS checkpoint_id BIGINT,"
	"   ADD COLUMN IF NOT EXISTS state TEXT,"
	"   ADD COLUMN IF NOT EXISTS last_error TEXT,"
	"   ADD COLUMN IF NOT EXISTS error_at TIMESTAMPTZ,"
	"   ADD COLUMN IF NOT EXISTS attempts INT NOT NULL DEFAULT 0,"
	"   ADD COLUMN IF NOT EXISTS failed_event_id BIGINT,"
	"   ADD COLUMN IF NOT EXISTS event_types TEXT[],"
	"   ADD COLUMN IF NOT EXISTS query TEXT,"
	"   ADD COLUMN IF NOT EXISTS owner TEXT,"
	"   ADD COLUMN IF NOT EXISTS resets BIGINT NOT NULL DEFAULT 0;"
	" END IF;"
	/* Disintegrate's rows: continue after their last processed event. */
	" UPDATE event_listener AS l SET"
	"  checkpoint_tx = coalesce((SELECT e.tx FROM event AS e"
	"   WHERE e.event_id = l.last_processed_event_id), '0'),"
	"  checkpoint_id = coalesce(l.last_processed_event_id, 0)"
	"  WHERE l.checkpoint_tx IS NULL;"
	" CREATE TABLE IF NOT EXISTS event_dead_letter ("
	"  listener_id TEXT NOT NULL,"
	"  event_id BIGINT NOT NULL,"
	"  event_tx xid8 NOT NULL,"
	"  event_type TEXT NOT NULL,"
	"  error TEXT NOT NULL,"
	"  attempts INT NOT NULL,"
	"  action TEXT NOT NULL,"
	"  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),"
	"  dead_at TIMESTAMPTZ NOT NULL DEFAULT now(),"
	"  PRIMARY KEY (listener_id, event_id));"
	" END $$";

int dis__listener_migrate(dis_store *store)
{
	PGconn *conn = dis_store_conn(store);
	int was = PQisnonblocking(conn);
	PGresult *res;
	int rc = 0;

	if (was)
		PQsetnonblocking(conn, 0);
	res = PQexec(conn, MIGRATION);
	if (was)
		PQsetnonblocking(conn, 1);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		rc = dis__store_pg_fail(store, res,
					"migrating the listener "
					"tables");
	PQclear(res);
	return rc;
}

/* ---- listing ---- */

#define SQL_LIST                                                              \
	"SELECT l.id, coalesce(l.checkpoint_tx, '0')::text,"                  \
	" coalesce(l.checkpoint_id, 0), coalesce(h.tx, '0')::text,"           \
	" coalesce(h.event_id, 0), p.behind, p.age,"                          \
	" coalesce(l.state, ''), coalesce(l.last_error, ''), l.attempts,"     \
	" coalesce(l.failed_event_id, 0),"                                    \
	" (SELECT count(*) FROM event_dead_letter AS d"                       \
	"   WHERE d.listener_id = l.id),"                                     \
	" coalesce(l.owner, ''),"                                             \
	" coalesce(extract(epoch FROM localtimestamp - l.updated_at), 0)"     \
	"::float8"                                                            \
	" FROM event_listener AS l"                                           \
	" LEFT JOIN LATERAL (SELECT tx, event_id FROM event"                  \
	"  ORDER BY tx DESC, event_id DESC LIMIT 1) AS h ON true"             \
	" LEFT JOIN LATERAL (SELECT count(*) AS behind,"                      \
	"  coalesce(extract(epoch FROM clock_timestamp()::timestamp"          \
	"   - min(e.inserted_at)), 0)::float8 AS age"                         \
	"  FROM event AS e WHERE (e.tx, e.event_id) >"                        \
	"   (coalesce(l.checkpoint_tx, '0'), coalesce(l.checkpoint_id, 0))"   \
	"  AND (l.event_types IS NULL OR e.event_type = ANY (l.event_types))" \
	" ) AS p ON true ORDER BY l.id"

int dis_listener_list(dis_store *store, dis_listener_info **out, size_t *n)
{
	PGconn *conn;
	PGresult *res;
	dis_listener_info *info;
	size_t rows, size = 0;
	char *p;

	if (!store || !out || !n)
		return DIS_EINVAL;
	conn = dis_store_conn(store);
	res = PQexecParams(conn, SQL_LIST, 0, NULL, NULL, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		int rc = dis__store_pg_fail(store, res, "listing listeners");

		PQclear(res);
		return rc;
	}
	rows = (size_t)PQntuples(res);
	for (size_t r = 0; r < rows; r++)
		size += strlen(PQgetvalue(res, (int)r, 0)) +
			strlen(PQgetvalue(res, (int)r, 7)) +
			strlen(PQgetvalue(res, (int)r, 8)) +
			strlen(PQgetvalue(res, (int)r, 12)) + 4;
	info = calloc(1, rows * sizeof(*info) + size + 1);
	if (!info) {
		PQclear(res);
		return dis__store_fail(store, DIS_ENOMEM, "out of memory");
	}
	p = (char *)(info + rows);
	for (size_t r = 0; r < rows; r++) {
		dis_listener_info *i = &info[r];
		int row = (int)r;
		const int text[4] = {0, 7, 8, 12};
		const char **dst[4] = {&i->id, &i->state, &i->last_error,
				       &i->owner};

		for (int k = 0; k < 4; k++) {
			size_t len = strlen(PQgetvalue(res, row, text[k])) + 1;

			memcpy(p, PQgetvalue(res, row, text[k]), len);
			*dst[k] = p;
			p += len;
		}
		i->checkpoint.tx = strtoull(PQgetvalue(res, row, 1), NULL, 10);
		i->checkpoint.id = strtoll(PQgetvalue(res, row, 2), NULL, 10);
		i->head.tx = strtoull(PQgetvalue(res, row, 3), NULL, 10);
		i->head.id = strtoll(PQgetvalue(res, row, 4), NULL, 10);
		i->events_behind = strtoll(PQgetvalue(res, row, 5), NULL, 10);
		i->seconds_behind = strtod(PQgetvalue(res, row, 6), NULL);
		i->attempts =
			(uint32_t)strtoul(PQgetvalue(res, row, 9), NULL, 10);
		i->failed_event_id =
			strtoll(PQgetvalue(res, row, 10), NULL, 10);
		i->dead_letters = strtoll(PQgetvalue(res, row, 11), NULL, 10);
		i->updated_seconds_ago = strtod(PQgetvalue(res, row, 13), NULL);
		if (i->events_behind == 0)
			i->seconds_behind = 0;
	}
	PQclear(res);
	*out = info;
	*n = rows;
	return 0;
}

/* ---- reset ---- */

#define SQL_RESET                                                            \
	"UPDATE event_listener SET checkpoint_tx = $2::xid8,"                \
	" checkpoint_id = $3::bigint, last_processed_event_id = $3::bigint," \
	" resets = resets + 1, attempts = 0, failed_event_id = NULL,"        \
	" last_error = NULL, error_at = NULL, state = 'reset',"              \
	" updated_at = now() WHERE id = $1"

int dis_listener_reset(dis_store *store, const char *id, dis_position to)
{
	char tx[24], eid[24];
	const char *v[3] = {id, tx, eid};
	PGresult *res;
	int rc = 0;

	if (!store || !id || !*id || to.id < 0)
		return DIS_EINVAL;
	snprintf(tx, sizeof(tx), "%" PRIu64, to.tx);
	snprintf(eid, sizeof(eid), "%" PRId64, to.id);
	res = PQexecParams(dis_store_conn(store), SQL_RESET, 3, NULL, v, NULL,
			   NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		rc = dis__store_pg_fail(store, res, "resetting the listener");
	else if (strcmp(PQcmdTuples(res), "1"))
		rc = dis__store_fail(store, DIS_ENOTFOUND,
				     "no listener called \"%s\"", id);
	PQclear(res);
	return rc;
}
