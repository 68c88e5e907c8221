/*
 * Internals of the projections module (projection.c, rebuild.c, policy.c,
 * shard.c, indexer.c, metrics.c). Never installed.
 */
#ifndef DISINTEGRATE_PROJECTIONS_INTERNAL_H
#define DISINTEGRATE_PROJECTIONS_INTERNAL_H

#include "core-internal.h"

#include <disintegrate/listener.h>
#include <disintegrate/projection.h>
#include <disintegrate/metrics.h>

#include <libpq-fe.h>

/* The table recording installed projections. */
#define DIS__PROJECTION_TABLE "dis_projection"
/* Suffixes of a rebuild's tables and listener. */
#define DIS__REBUILD_SUFFIX "__rebuild"
#define DIS__OLD_SUFFIX "__old"
#define DIS__REBUILD_LISTENER_SUFFIX ":rebuild"

/* Runs `sql` (no parameters) on a blocking connection; 0 or DIS_E* with
 * the server's message in err. */
int dis__pq_exec(PGconn *conn, const char *sql, char *err, size_t errlen);
/* Maps a failed result to a DIS_E* code (DIS_ECONN when the connection
 * broke) and writes "what: message" into err. */
int dis__pq_fail(PGconn *conn, const PGresult *res, const char *what, char *err,
		 size_t errlen);

/* The projection's DDL rendered for `table` (malloc'd). */
char *dis__projection_ddl(const dis_projection *p, const char *table);
/* Statement i (in the order added) rendered for `table`, and the names of
 * its parameters in $n order (for tests; malloc'd, NULL on no memory). */
char *dis__projection_sql(const dis_projection *p, size_t i, const char *table);
const char *dis__projection_param(const dis_projection *p, size_t i, size_t n);
/* dis_projection_handler's work against `table` (NULL: the projection's):
 * the statements are queued in the batch (dis_batch_exec). */
int dis__projection_apply_batch(dis_projection *p, dis_batch *batch,
				const char *table, const dis_event *ev);
/* Creates dis_projection when missing (inside the caller's transaction,
 * serialised by an advisory lock). */
int dis__projection_migrate(PGconn *conn, char *err, size_t errlen);
/* Advisory-lock key of projection `name` (session lock of a rebuild). */
int64_t dis__projection_lock_key(const char *name);

/* Monotonic seconds. */
double dis__mono_s(void);

#endif
