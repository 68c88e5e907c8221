/*
 * Helpers shared by the test programs (cmocka). Link `testutil_dep`.
 *
 * Where the database comes from: DIS_TEST_DB (a libpq conninfo or URI) if
 * set, else the PG* environment variables that tests/run.sh exports. A test
 * that finds no reachable server fails, unless DIS_TEST_ALLOW_SKIP=1 asks
 * for a skip (exit 77). CI never sets it.
 *
 * The dt_* helpers that can fail end the running cmocka test with a message
 * (fail_msg), so call them from the test's own thread; in worker threads use
 * libpq and the library directly.
 */
#ifndef DIS_TESTUTIL_H
#define DIS_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <disintegrate/disintegrate.h>

/*
 * Checks that a database server is reachable (once per process). If not,
 * exits 77 when DIS_TEST_ALLOW_SKIP=1, else prints why and exits 1.
 */
void dt_require_pg(void);

/*
 * Creates an empty database with a unique name and returns a libpq conninfo
 * for it (malloc'd, the caller frees it). The database is dropped when the
 * process exits (set DIS_TEST_KEEP_DB=1 to keep it for a post-mortem).
 * Calls dt_require_pg() first.
 */
char *dt_fresh_db(void);

/* Connects or fails the test with libpq's message. */
PGconn *dt_connect(const char *conninfo);

/* Runs SQL (any number of statements) or fails the test with the server's
 * message. */
void dt_exec(PGconn *conn, const char *sql);

/* printf into a new string (malloc'd); fails the test when out of memory. */
char *dt_fmt(const char *f, ...) DIS_PRINTF(1, 2);

/* `bytes` random bytes (at most 32) as 2 * bytes hex digits and a NUL. */
void dt_random_hex(char *out, size_t bytes);

/*
 * A handler's blocking write: runs `sql` with text parameters on the
 * batch's connection; on failure fails the batch with the server's message
 * (dis_batch_fail) and returns that code, else 0.
 */
int dt_batch_run(dis_batch *b, const char *sql, int nparams,
		 const char *const *values);

/* Runs a query and returns the first column of its first row (malloc'd;
 * NULL when there is no row or the value is NULL). Fails the test on error. */
char *dt_scalar(PGconn *conn, const char *sql);

/* A dis_event_fn counting the events into the int at arg. */
int dt_count_event(void *arg, const dis_event *ev);

/* Parses a schema or fails the test with the parser's message. */
dis_schema *dt_schema(const char *json);

/* Opens a store on `conninfo` and migrates it, or fails the test. */
dis_store *dt_store(const char *conninfo, const dis_schema *schema);

/*
 * Whether the server is the throwaway cluster of tests/run.sh, which tests
 * may stop and restart with dt_pg_ctl().
 */
int dt_have_cluster(void);

/*
 * Runs `pg_ctl -D $DIS_PGDATA <args>` as the cluster's owner, e.g.
 * dt_pg_ctl("restart -m fast -w"). Returns pg_ctl's exit status; fails the
 * test when there is no throwaway cluster.
 */
int dt_pg_ctl(const char *args);

#endif
