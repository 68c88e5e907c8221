/*
 * Appends against raw PostgreSQL, in the same run, same table and indexes:
 *   raw:     single-row INSERT ... VALUES, one commit each;
 *   checked: dis_store_append of one event with a validation query on a
 *            boundary no one else touches (the check runs; 0 conflicts).
 * Prints a table and `bench=NAME value=V unit=U baseline=B ratio=R` lines.
 *
 *   bench-append [SECONDS] [CONNS...]     default 5 s, 1 4 16
 */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *SCHEMA =
	"[{\"type\":\"record\",\"name\":\"Deposited\",\"fields\":["
	" {\"name\":\"account_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"amount\",\"type\":\"long\"}]},"
	" {\"type\":\"record\",\"name\":\"Withdrawn\",\"fields\":["
	" {\"name\":\"account_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"amount\",\"type\":\"long\"}]}]";

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int run_id;

typedef struct job {
	const char *conninfo;
	const dis_schema *schema;
	bool raw;
	int thread;
	double seconds;
	long done;
	long conflicts;
	char error[256];
} job;

static void *raw_main(void *arg)
{
	job *j = arg;
	PGconn *c = PQconnectdb(j->conninfo);
	unsigned char payload[24];
	char acct[64];
	double until;

	memset(payload, 0x11, sizeof(payload));
	payload[0] = 0xD1;
	if (PQstatus(c) != CONNECTION_OK) {
		snprintf(j->error, sizeof(j->error), "%s", PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	until = now_s() + j->seconds;
	while (now_s() < until) {
		const char *vals[3] = {"Deposited", (const char *)payload, acct};
		int lens[3] = {0, (int)sizeof(payload), 0};
		int fmts[3] = {0, 1, 0};
		PGresult *r;

		snprintf(acct, sizeof(acct), "raw-%d-%d-%ld", run_id, j->thread,
			 j->done);
		r = PQexecParams(c,
				 "INSERT INTO event (event_type, payload, "
				 "account_id) VALUES ($1, $2, $3)",
				 3, NULL, vals, lens, fmts, 0);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			snprintf(j->error, sizeof(j->error), "%s",
				 PQresultErrorMessage(r));
			PQclear(r);
			break;
		}
		PQclear(r);
		j->done++;
	}
	PQfinish(c);
	return NULL;
}

static void *checked_main(void *arg)
{
	job *j = arg;
	dis_store *st;
	char acct[64];
	double until;

	if (dis_store_open(j->conninfo, j->schema, &st, j->error,
			   sizeof(j->error)))
		return NULL;
	until = now_s() + j->seconds;
	while (now_s() < until) {
		dis_query *q;
		dis_filter *f;
		dis_event *ev;
		int rc;

		snprintf(acct, sizeof(acct), "chk-%d-%d-%ld", run_id, j->thread,
			 j->done);
		dis_query_new(j->schema, &q);
		dis_query_add_filter(q, &f);
		dis_filter_type(f, "Deposited");
		dis_filter_type(f, "Withdrawn");
		dis_filter_where_string(f, "account_id", acct);
		dis_event_new(j->schema, "Deposited", &ev);
		dis_event_set_string(ev, "account_id", acct);
		dis_event_set_long(ev, "amount", 10);
		rc = dis_store_append(st, &ev, 1, q, NULL, NULL);
		dis_event_free(ev);
		dis_query_free(q);
		if (rc == DIS_ECONFLICT) {
			j->conflicts++;
		} else if (rc) {
			snprintf(j->error, sizeof(j->error), "%s",
				 dis_store_errmsg(st));
			break;
		}
		j->done++;
	}
	dis_store_free(st);
	return NULL;
}

static double run(const char *conninfo, const dis_schema *schema, bool raw,
		  int conns, double seconds, long *conflicts)
{
	pthread_t th[64];
	job jobs[64];
	long total = 0;
	double t0 = now_s(), el;

	*conflicts = 0;
	run_id++;
	for (int i = 0; i < conns; i++) {
		jobs[i] = (job){conninfo, schema, raw, i, seconds, 0, 0, ""};
		pthread_create(&th[i], NULL, raw ? raw_main : checked_main,
			       &jobs[i]);
	}
	for (int i = 0; i < conns; i++) {
		pthread_join(th[i], NULL);
		if (jobs[i].error[0]) {
			fprintf(stderr, "bench-append: %s\n", jobs[i].error);
			exit(1);
		}
		total += jobs[i].done;
		*conflicts += jobs[i].conflicts;
	}
	el = now_s() - t0;
	return (double)total / el;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 5;
	int conns[8] = {1, 4, 16}, nconns = 3;
	char *conninfo;
	dis_schema *schema;
	dis_store *st;

	if (argc > 2) {
		nconns = 0;
		for (int i = 2; i < argc && nconns < 8; i++)
			conns[nconns++] = atoi(argv[i]);
	}
	conninfo = dt_fresh_db();
	schema = dt_schema(SCHEMA);
	st = dt_store(conninfo, schema);
	printf("%-28s %12s %12s %7s %9s\n", "figure", "appends/s", "raw/s",
	       "ratio", "conflicts");
	for (int i = 0; i < nconns; i++) {
		long c0, c1;
		double raw = run(conninfo, schema, true, conns[i], seconds, &c0);
		double chk = run(conninfo, schema, false, conns[i], seconds,
				 &c1);
		char name[64];

		snprintf(name, sizeof(name), "append_checked_%dc", conns[i]);
		printf("%-28s %12.0f %12.0f %6.0f%% %9ld\n", name, chk, raw,
		       100 * chk / raw, c1);
		printf("bench=%s value=%.0f unit=appends/s baseline=%.0f "
		       "ratio=%.3f\n",
		       name, chk, raw, chk / raw);
		printf("bench=spurious_conflicts_%dc value=%ld unit=count "
		       "baseline=0 ratio=0\n",
		       conns[i], c1);
		fflush(stdout);
	}
	dis_store_free(st);
	dis_schema_free(schema);
	free(conninfo);
	return 0;
}
