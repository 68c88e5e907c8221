/*
 * disctl listeners and disctl reset: thin wrappers around
 * dis_listener_list() and dis_listener_reset().
 */
#include <disintegrate/disintegrate.h>

#include "cmd_listeners.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ST_OK = 0, ST_USAGE = 1, ST_DB = 2 };

/* Opening a store needs a schema; listing and resetting do not use it. */
static const char *ANY_SCHEMA =
	"{\"type\":\"record\",\"name\":\"disctl_any\",\"fields\":[]}";

static int open_store(const char *db, const char *schema_path,
		      dis_schema **schema, dis_store **store)
{
	char err[512] = "";
	int rc;

	if (schema_path)
		rc = dis_schema_load_file(schema_path, schema, err,
					  sizeof(err));
	else
		rc = dis_schema_parse(ANY_SCHEMA, schema, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "disctl: schema %s: %s\n",
			schema_path ? schema_path : "(none)",
			*err ? err : dis_strerror(rc));
		return ST_USAGE;
	}
	rc = dis_store_open(db, *schema, store, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "disctl: cannot connect: %s\n",
			*err ? err : dis_strerror(rc));
		dis_schema_free(*schema);
		return rc == DIS_EINVAL ? ST_USAGE : ST_DB;
	}
	return ST_OK;
}

static int status_of(int rc)
{
	switch (rc) {
	case 0: return ST_OK;
	case DIS_EINVAL:
	case DIS_ENOTFOUND: return ST_USAGE;
	default: return ST_DB;
	}
}

static void age(double secs, char *buf, size_t len)
{
	if (secs < 0)
		secs = 0;
	if (secs < 120)
		snprintf(buf, len, "%.1fs", secs);
	else if (secs < 7200)
		snprintf(buf, len, "%.0fm", secs / 60);
	else if (secs < 172800)
		snprintf(buf, len, "%.0fh", secs / 3600);
	else
		snprintf(buf, len, "%.0fd", secs / 86400);
}

/* The last error on one line. */
static void one_line(const char *in, char *out, size_t len)
{
	size_t j = 0;

	for (size_t i = 0; in[i] && j + 1 < len; i++)
		out[j++] = in[i] == '\n' || in[i] == '\t' ? ' ' : in[i];
	out[j] = '\0';
}

int disctl_listeners(const char *db, const char *schema_path)
{
	dis_schema *schema;
	dis_store *store;
	dis_listener_info *info;
	size_t n;
	int st, rc, wid = 8;

	st = open_store(db, schema_path, &schema, &store);
	if (st)
		return st;
	rc = dis_listener_list(store, &info, &n);
	if (rc) {
		fprintf(stderr, "disctl: listeners: %s\n",
			dis_store_errmsg(store));
		dis_store_free(store);
		dis_schema_free(schema);
		return status_of(rc);
	}
	for (size_t i = 0; i < n; i++)
		if ((int)strlen(info[i].id) > wid)
			wid = (int)strlen(info[i].id);
	printf("%-*s  %-22s %-22s %9s %8s %-9s %4s %5s %8s  %s\n", wid,
	       "LISTENER", "CHECKPOINT", "HEAD", "BEHIND", "LAG", "STATE",
	       "TRY", "DEAD", "UPDATED", "LAST ERROR");
	for (size_t i = 0; i < n; i++) {
		const dis_listener_info *l = &info[i];
		char ck[48], head[48], lag[16], upd[16], err[512];

		dis_position_format(l->checkpoint, ck, sizeof(ck));
		dis_position_format(l->head, head, sizeof(head));
		age(l->seconds_behind, lag, sizeof(lag));
		age(l->updated_seconds_ago, upd, sizeof(upd));
		one_line(l->last_error, err, sizeof(err));
		printf("%-*s  %-22s %-22s %9" PRId64 " %8s %-9s %4" PRIu32
		       " %5" PRId64 " %8s  %s\n",
		       wid, l->id, ck, head, l->events_behind, lag,
		       *l->state ? l->state : "-", l->attempts, l->dead_letters,
		       upd, err);
	}
	if (n == 0)
		printf("(no listeners)\n");
	dis_free(info);
	dis_store_free(store);
	dis_schema_free(schema);
	return ST_OK;
}

int disctl_reset(const char *db, const char *schema_path, const char *listener,
		 const char *to)
{
	dis_schema *schema;
	dis_store *store;
	dis_position pos = DIS_POSITION_START;
	char buf[48];
	int st, rc;

	if (to && strchr(to, ':')) {
		if (dis_position_parse(to, &pos)) {
			fprintf(stderr,
				"disctl: --to %s: not a position "
				"(TX:ID or an event id)\n",
				to);
			return ST_USAGE;
		}
		to = NULL;
	} else if (to) {
		char *end;
		long long id;

		errno = 0;
		id = strtoll(to, &end, 10);
		if (errno || *end || end == to || id < 0) {
			fprintf(stderr,
				"disctl: --to %s: not a position "
				"(TX:ID or an event id)\n",
				to);
			return ST_USAGE;
		}
		if (id == 0)
			to = NULL;
	}
	st = open_store(db, schema_path, &schema, &store);
	if (st)
		return st;
	rc = 0;
	if (to) {
		rc = dis_store_position_of(store, strtoll(to, NULL, 10), &pos);
		if (rc)
			fprintf(stderr, "disctl: --to %s: %s\n", to,
				dis_store_errmsg(store));
	}
	if (!rc) {
		rc = dis_listener_reset(store, listener, pos);
		if (rc)
			fprintf(stderr, "disctl: reset: %s\n",
				dis_store_errmsg(store));
		else
			printf("%s: checkpoint moved to %s\n", listener,
			       dis_position_format(pos, buf, sizeof(buf)));
	}
	dis_store_free(store);
	dis_schema_free(schema);
	return status_of(rc);
}
