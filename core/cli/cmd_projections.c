/*
 * disctl rebuild and disctl index: thin wrappers around
 * dis_projection_rebuild() and dis_index_backfill() that print progress on
 * standard error and the outcome on standard output. SIGINT or SIGTERM
 * cancels a rebuild (the live table stays as it was).
 */
#include <disintegrate/disintegrate.h>

#include "cmd_projections.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

enum { ST_OK = 0, ST_USAGE = 1, ST_DB = 2, ST_CONFLICT = 3 };

static volatile sig_atomic_t canceled;

static void on_signal(int sig)
{
	(void)sig;
	canceled = 1;
}

static void catch_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static void log_cb(void *arg, dis_log_level level, const char *msg)
{
	(void)arg;
	if (level <= DIS_LOG_WARN)
		fprintf(stderr, "disctl: %s\n", msg);
}

static int status_of(int rc)
{
	switch (rc) {
	case 0: return ST_OK;
	case DIS_ECONFLICT: return ST_CONFLICT;
	case DIS_EINVAL:
	case DIS_ESCHEMA:
	case DIS_ENOTFOUND:
	case DIS_ESTATE:
	case DIS_ECANCELED: return ST_USAGE;
	default: return ST_DB;
	}
}

static int load_schema(const char *path, dis_schema **out)
{
	char err[512] = "";
	int rc;

	if (!path) {
		fprintf(stderr, "disctl: --schema FILE is required\n");
		return ST_USAGE;
	}
	rc = dis_schema_load_file(path, out, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "disctl: schema %s: %s\n", path,
			*err ? err : dis_strerror(rc));
		return ST_USAGE;
	}
	return ST_OK;
}

typedef struct progress {
	const char *name;
	const char *phase;
	double printed;
} progress;

static int on_progress(void *arg, const dis_rebuild_progress *p)
{
	progress *pr = arg;

	if (pr->phase != p->phase || p->seconds - pr->printed >= 1.0) {
		fprintf(stderr,
			"disctl: rebuild %s: %s, %" PRIu64 " events, %" PRId64
			" behind, %.1f s\n",
			pr->name, p->phase, p->events, p->events_behind,
			p->seconds);
		pr->phase = p->phase;
		pr->printed = p->seconds;
	}
	return canceled ? 1 : 0;
}

int disctl_rebuild(const char *db, const char *schema_path, const char *name)
{
	dis_schema *schema = NULL;
	dis_rebuild_options o;
	dis_rebuild_progress done;
	progress pr = {.name = name};
	char err[1024] = "", pos[48];
	int st, rc;

	if ((st = load_schema(schema_path, &schema)))
		return st;
	catch_signals();
	memset(&o, 0, sizeof(o));
	o.progress = on_progress;
	o.progress_arg = &pr;
	o.log = log_cb;
	rc = dis_projection_rebuild(db, schema, name, &o, &done, err,
				    sizeof(err));
	if (rc) {
		fprintf(stderr, "disctl: rebuild %s: %s\n", name,
			*err ? err : dis_strerror(rc));
		dis_schema_free(schema);
		return status_of(rc);
	}
	printf("rebuilt %s: %" PRIu64 " events in %.2f s, checkpoint %s\n",
	       name, done.events, done.seconds,
	       dis_position_format(done.position, pos, sizeof(pos)));
	dis_schema_free(schema);
	return ST_OK;
}

int disctl_index(const char *db, const char *schema_path, const char *id)
{
	dis_schema *schema = NULL;
	dis_index_report rep;
	char err[1024] = "", pos[48];
	int st, rc;

	if ((st = load_schema(schema_path, &schema)))
		return st;
	rc = dis_index_backfill(db, schema, id, log_cb, NULL, &rep, err,
				sizeof(err));
	if (rc) {
		fprintf(stderr, "disctl: index %s: %s\n", id,
			*err ? err : dis_strerror(rc));
		dis_schema_free(schema);
		return status_of(rc);
	}
	printf("indexed %s: %" PRIu64 " events read, %" PRIu64
	       " filled in %.2f s, checkpoint %s\n",
	       id, rep.events, rep.filled, rep.seconds,
	       dis_position_format(rep.position, pos, sizeof(pos)));
	if (rep.index_built)
		printf("built the index on event (%s, tx)\n", id);
	dis_schema_free(schema);
	return ST_OK;
}
