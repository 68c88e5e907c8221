/*
 * disctl: operate a disintegrate-c event store from the command line.
 *
 * Each subcommand is one row of the `commands` table: its name, the options
 * it accepts, how many operands it takes, its help text and the function
 * that runs it. Exit status: 0 ok, 1 usage or input error, 2 database or
 * connection error, 3 conflict.
 *
 * Only messages the library produced (which never hold a password) and our
 * own texts are printed; the --db conninfo is never echoed.
 */
#include <disintegrate/disintegrate.h>

#include "cliparse.h"
#include "cmd_projections.h"
#include "cmd_listeners.h"
#include "core-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { ST_OK = 0, ST_USAGE = 1, ST_DB = 2, ST_CONFLICT = 3 };

/* Events per read (tail) and per append statement (append). */
#define READ_BATCH 500
#define APPEND_CHUNK 1000
/* --follow re-reads this often without a notification (milliseconds). */
#define FOLLOW_POLL_MS 1000
/* Re-read interval while events committed before the start are still
 * held back by older open transactions (milliseconds). */
#define CATCH_UP_WAIT_MS 20

/* Options; a command lists those it accepts. */
enum {
	OPT_DB = 1u << 0,
	OPT_SCHEMA = 1u << 1,
	OPT_FROM = 1u << 2,
	OPT_FOLLOW = 1u << 3,
	OPT_TYPE = 1u << 4,
	OPT_STREAM = 1u << 5,
	OPT_WHERE = 1u << 6,
	OPT_TO = 1u << 7
};

typedef struct strv {
	const char **v;
	size_t n;
} strv;

typedef struct args {
	const char *db;
	const char *schema;
	const char *from;
	const char *to;
	bool follow;
	strv types;
	strv streams;
	strv wheres;
	char **operands;
	int noperands;
} args;

typedef struct command {
	const char *name;
	int (*run)(const struct command *cmd, args *a);
	unsigned opts;
	int min_operands;
	int max_operands;
	const char *synopsis;
	const char *help;
} command;

static const char *progname = "disctl";

static void msg(const char *fmt, ...) DIS_PRINTF(1, 2);

static void msg(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Exit status for a library error code. */
static int status_of(int rc)
{
	switch (rc) {
	case 0: return ST_OK;
	case DIS_ECONFLICT: return ST_CONFLICT;
	case DIS_EINVAL:
	case DIS_ESCHEMA:
	case DIS_ENOTFOUND: return ST_USAGE;
	default: return ST_DB;
	}
}

static int load_schema(const args *a, dis_schema **out)
{
	char err[DIS_ERRMSG_LEN] = "";
	int rc;

	if (!a->schema) {
		msg("--schema FILE is required");
		return ST_USAGE;
	}
	rc = dis_schema_load_file(a->schema, out, err, sizeof(err));
	if (rc) {
		msg("schema %s: %s", a->schema, *err ? err : dis_strerror(rc));
		return ST_USAGE;
	}
	return ST_OK;
}

static int connect_store(const args *a, const dis_schema *schema,
			 dis_store **store)
{
	char err[DIS_ERRMSG_LEN] = "";
	int rc;

	rc = dis_store_open(a->db, schema, store, err, sizeof(err));
	if (rc) {
		msg("cannot connect: %s", *err ? err : dis_strerror(rc));
		return rc == DIS_EINVAL ? ST_USAGE : ST_DB;
	}
	return ST_OK;
}

static void close_store(dis_schema *schema, dis_store *store)
{
	dis_store_free(store);
	dis_schema_free(schema);
}

static int store_fail(dis_store *store, const char *what, int rc)
{
	msg("%s: %s", what, dis_store_errmsg(store));
	return status_of(rc);
}

/* ---- init ---- */

static int cmd_init(const command *cmd, args *a)
{
	dis_schema *schema = NULL;
	dis_store *store = NULL;
	int st, rc;

	(void)cmd;
	st = load_schema(a, &schema);
	if (!st)
		st = connect_store(a, schema, &store);
	if (st) {
		dis_schema_free(schema);
		return st;
	}
	rc = dis_store_migrate(store);
	if (rc) {
		st = store_fail(store, "migrate", rc);
	} else {
		printf("migrated: %zu event types, %zu domain ids\n",
		       dis_schema_type_count(schema),
		       dis_schema_id_count(schema));
	}
	close_store(schema, store);
	return st;
}

/* ---- append ---- */

typedef struct evlist {
	dis_event **v;
	size_t n;
	size_t cap;
} evlist;

static int evlist_push(evlist *l, dis_event *ev)
{
	dis_event **v;
	size_t cap;

	if (l->n == l->cap) {
		cap = l->cap ? l->cap * 2 : 64;
		v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return DIS_ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = ev;
	return 0;
}

static void evlist_free(evlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		dis_event_free(l->v[i]);
	free(l->v);
}

/* Parses every line of `in`; on a bad line names it and stops. */
static int read_events(const dis_schema *schema, FILE *in, evlist *events)
{
	char err[DIS_ERRMSG_LEN];
	char *line = NULL;
	size_t cap = 0, lineno = 0;
	ssize_t len;
	dis_event *ev;
	int st = ST_OK, rc;

	while ((len = getline(&line, &cap, in)) >= 0) {
		lineno++;
		err[0] = '\0';
		rc = disctl_parse_event(schema, line, (size_t)len, &ev, err,
					sizeof(err));
		if (!rc && ev && evlist_push(events, ev)) {
			dis_event_free(ev);
			rc = DIS_ENOMEM;
		}
		if (rc) {
			msg("append: line %zu: %s", lineno,
			    *err ? err : dis_strerror(rc));
			st = ST_USAGE;
			break;
		}
	}
	if (st == ST_OK && ferror(in)) {
		msg("append: reading standard input: %s", strerror(errno));
		st = ST_USAGE;
	}
	free(line);
	return st;
}

static int exec_simple(PGconn *conn, const char *sql)
{
	PGresult *r = PQexec(conn, sql);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;

	if (!ok)
		msg("append: %s: %s", sql, PQerrorMessage(conn));
	PQclear(r);
	return ok ? 0 : -1;
}

/*
 * Appends all events in one transaction, in chunks so no statement grows
 * past PostgreSQL's limits. Either all are appended or none.
 */
static int append_all(dis_store *store, evlist *events, int64_t *ids)
{
	PGconn *conn = dis_store_conn(store);
	bool chunked = events->n > APPEND_CHUNK;
	int rc;

	if (chunked && exec_simple(conn, "BEGIN"))
		return ST_DB;
	for (size_t i = 0; i < events->n; i += APPEND_CHUNK) {
		size_t n = events->n - i;

		if (n > APPEND_CHUNK)
			n = APPEND_CHUNK;
		rc = dis_store_append(store, events->v + i, n, NULL, NULL,
				      ids + i);
		if (rc) {
			msg("append: %s", dis_store_errmsg(store));
			if (chunked)
				PQclear(PQexec(conn, "ROLLBACK"));
			return rc == DIS_ESERDE ? ST_USAGE : status_of(rc);
		}
	}
	if (chunked && exec_simple(conn, "COMMIT"))
		return ST_DB;
	return ST_OK;
}

static int cmd_append(const command *cmd, args *a)
{
	dis_schema *schema = NULL;
	dis_store *store = NULL;
	evlist events = {0};
	int64_t *ids = NULL;
	int st;

	(void)cmd;
	st = load_schema(a, &schema);
	if (st)
		return st;
	/* Validate every line before touching the database. */
	st = read_events(schema, stdin, &events);
	if (st || events.n == 0)
		goto out;
	ids = calloc(events.n, sizeof(*ids));
	if (!ids) {
		msg("append: out of memory");
		st = ST_USAGE;
		goto out;
	}
	st = connect_store(a, schema, &store);
	if (st)
		goto out;
	st = append_all(store, &events, ids);
	for (size_t i = 0; st == ST_OK && i < events.n; i++)
		printf("%" PRId64 "\n", ids[i]);
out:
	free(ids);
	evlist_free(&events);
	close_store(schema, store);
	return st;
}

/* ---- tail ---- */

static int stop_pipe[2] = {-1, -1};
static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
	int saved = errno;
	char c = 1;
	ssize_t w;

	(void)sig;
	stop_requested = 1;
	w = write(stop_pipe[1], &c, 1);
	(void)w;
	errno = saved;
}

static int install_stop_handlers(void)
{
	struct sigaction sa;

	if (pipe(stop_pipe))
		return -1;
	for (int i = 0; i < 2; i++) {
		fcntl(stop_pipe[i], F_SETFL,
		      fcntl(stop_pipe[i], F_GETFL) | O_NONBLOCK);
		fcntl(stop_pipe[i], F_SETFD, FD_CLOEXEC);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGINT, &sa, NULL) || sigaction(SIGTERM, &sa, NULL))
		return -1;
	return 0;
}

/* Drops pending notifications; returns whether there were any. */
static bool drain_notifies(PGconn *conn)
{
	PGnotify *n;
	bool any = false;

	while ((n = PQnotifies(conn))) {
		PQfreemem(n);
		any = true;
	}
	return any;
}

/*
 * Waits for a notification on the event channel, the poll interval, or a
 * stop signal. Returns 1 to stop, 0 to read again, -1 when the connection
 * failed.
 */
static int wait_for_events(PGconn *conn, int timeout_ms)
{
	struct pollfd pfd[2];
	int n;

	if (!PQconsumeInput(conn))
		return -1;
	if (drain_notifies(conn))
		return stop_requested ? 1 : 0;
	pfd[0] = (struct pollfd){.fd = PQsocket(conn), .events = POLLIN};
	pfd[1] = (struct pollfd){.fd = stop_pipe[0], .events = POLLIN};
	n = poll(pfd, 2, timeout_ms);
	if (n < 0 && errno != EINTR)
		return -1;
	if (stop_requested)
		return 1;
	if (n > 0 && pfd[0].revents) {
		if (!PQconsumeInput(conn))
			return -1;
		drain_notifies(conn);
	}
	return 0;
}

typedef struct tail_ctx {
	size_t n;
	int64_t bad_id;
} tail_ctx;

static int print_event(void *arg, const dis_event *ev)
{
	tail_ctx *t = arg;
	char *json;
	int rc;

	rc = dis_event_to_json(ev, &json);
	if (rc) {
		t->bad_id = dis_event_id(ev);
		return rc;
	}
	fputs(json, stdout);
	fputc('\n', stdout);
	dis_free(json);
	t->n++;
	return 0;
}

/* Prints the events readable now after *pos, batch after batch. */
static int read_available(dis_store *store, const dis_query *query,
			  dis_position *pos)
{
	tail_ctx t;
	dis_position next;
	int rc;

	do {
		t = (tail_ctx){0};
		rc = dis_store_read(store, query, *pos, READ_BATCH, print_event,
				    &t, &next);
		if (fflush(stdout) == EOF) {
			msg("tail: writing output: %s", strerror(errno));
			return ST_USAGE;
		}
		if (rc && t.bad_id) {
			msg("tail: event %" PRId64
			    " cannot be shown as JSON: %s",
			    t.bad_id, dis_strerror(rc));
			return ST_DB;
		}
		if (rc) {
			msg("tail: %s", dis_store_errmsg(store));
			return status_of(rc) == ST_CONFLICT ? ST_CONFLICT
							    : ST_DB;
		}
		*pos = next;
	} while (t.n == READ_BATCH && !stop_requested);
	return ST_OK;
}

/* --from: "TX:ID" (or "0") is a position; a plain number N means "after
 * event N". */
static int resolve_from(dis_store *store, const char *from, dis_position *pos)
{
	int64_t id;
	char *end;
	int rc;

	*pos = DIS_POSITION_START;
	if (!from)
		return ST_OK;
	if (strchr(from, ':') || strcmp(from, "0") == 0) {
		if (dis_position_parse(from, pos)) {
			msg("--from \"%s\": expected a position TX:ID or an "
			    "event id",
			    from);
			return ST_USAGE;
		}
		return ST_OK;
	}
	errno = 0;
	id = strtoll(from, &end, 10);
	if (errno || *end || end == from || *from == '-' || *from == '+') {
		msg("--from \"%s\": expected a position TX:ID or an event id",
		    from);
		return ST_USAGE;
	}
	rc = dis_store_position_of(store, id, pos);
	if (rc == DIS_ENOTFOUND) {
		msg("--from %s: no event with that id", from);
		return ST_USAGE;
	}
	if (rc)
		return store_fail(store, "--from", rc);
	return ST_OK;
}

static int cmd_tail(const command *cmd, args *a)
{
	disctl_query_args qa = {
		.types = a->types.v,
		.ntypes = a->types.n,
		.streams = a->streams.v,
		.nstreams = a->streams.n,
		.wheres = a->wheres.v,
		.nwheres = a->wheres.n,
	};
	char err[DIS_ERRMSG_LEN] = "";
	dis_schema *schema = NULL;
	dis_store *store = NULL;
	dis_query *query = NULL;
	dis_position pos, head;
	char text[48];
	PGconn *conn;
	int st, rc, w = 0, waits = 0;

	(void)cmd;
	st = load_schema(a, &schema);
	if (st)
		return st;
	/* Bad arguments are reported before connecting. */
	rc = disctl_build_query(schema, &qa, &query, err, sizeof(err));
	if (rc) {
		msg("%s", *err ? err : dis_strerror(rc));
		st = ST_USAGE;
		goto out;
	}
	/* From here on SIGINT and SIGTERM end a --follow with status 0. */
	if (a->follow && install_stop_handlers()) {
		msg("tail: cannot install signal handlers: %s",
		    strerror(errno));
		st = ST_DB;
		goto out;
	}
	st = connect_store(a, schema, &store);
	if (st)
		goto out;
	st = resolve_from(store, a->from, &pos);
	if (st)
		goto out;
	conn = dis_store_conn(store);
	if (a->follow) {
		PGresult *r;

		/* LISTEN before the first read, so no wake-up is missed. */
		r = PQexec(conn, "LISTEN " DIS__NOTIFY_CHANNEL);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			msg("tail: LISTEN: %s", PQerrorMessage(conn));
			PQclear(r);
			st = ST_DB;
			goto out;
		}
		PQclear(r);
	}
	/*
	 * Every event committed before now is printed, even one whose
	 * transaction started long ago: a read stops at the barrier below
	 * transactions still open, so read on until the head is passed.
	 */
	rc = dis_store_head(store, &head);
	if (rc) {
		st = store_fail(store, "tail", rc);
		goto out;
	}
	for (;;) {
		st = read_available(store, query, &pos);
		if (st || stop_requested)
			break;
		if (dis_position_cmp(pos, head) < 0) {
			if (++waits == 5000 / CATCH_UP_WAIT_MS)
				msg("tail: waiting for open transactions to "
				    "finish before position %s",
				    dis_position_format(head, text,
							sizeof(text)));
			if (!a->follow) {
				usleep(CATCH_UP_WAIT_MS * 1000);
				continue;
			}
			w = wait_for_events(conn, CATCH_UP_WAIT_MS);
		} else if (a->follow) {
			w = wait_for_events(conn, FOLLOW_POLL_MS);
		} else {
			break;
		}
		if (w > 0)
			break;
		if (w < 0) {
			msg("tail: connection lost: %s", PQerrorMessage(conn));
			st = ST_DB;
			break;
		}
	}
out:
	dis_query_free(query);
	close_store(schema, store);
	return st;
}

/* ---- projections (cmd_projections.c) ---- */

static int cmd_rebuild(const command *cmd, args *a)
{
	(void)cmd;
	return disctl_rebuild(a->db, a->schema, a->operands[0]);
}

static int cmd_index(const command *cmd, args *a)
{
	(void)cmd;
	return disctl_index(a->db, a->schema, a->operands[0]);
}

/* ---- listeners (cmd_listeners.c) ---- */

static int cmd_listeners(const command *cmd, args *a)
{
	(void)cmd;
	return disctl_listeners(a->db, a->schema);
}

static int cmd_reset(const command *cmd, args *a)
{
	(void)cmd;
	return disctl_reset(a->db, a->schema, a->operands[0], a->to);
}

/* ---- the table ---- */

static const command commands[] = {
	{
		.name = "init",
		.run = cmd_init,
		.opts = OPT_DB | OPT_SCHEMA,
		.synopsis = "init --schema FILE",
		.help = "Create or upgrade the event store's tables for the "
			"schema\n(idempotent).",
	},
	{
		.name = "append",
		.run = cmd_append,
		.opts = OPT_DB | OPT_SCHEMA,
		.synopsis = "append --schema FILE < EVENTS",
		.help = "Append events read as JSON lines on standard input,\n"
			"  {\"type\": \"T\", \"data\": {...}}\n"
			"(an \"id\" member, as `tail` prints it, is ignored; "
			"blank lines\nare skipped). Every line is checked "
			"first; a bad line is\nreported with its number and "
			"nothing is appended. Otherwise all\nevents are "
			"appended in one transaction, without a consistency\n"
			"check, and their ids are printed one per line.",
	},
	{
		.name = "tail",
		.run = cmd_tail,
		.opts = OPT_DB | OPT_SCHEMA | OPT_FROM | OPT_FOLLOW | OPT_TYPE |
			OPT_STREAM | OPT_WHERE,
		.synopsis =
			"tail --schema FILE [--from POSITION] [--follow] "
			"[--type T]... [--stream S]... [--where ID=VALUE]...",
		.help = "Print matching events as JSON lines,\n"
			"  {\"id\": N, \"type\": \"T\", \"data\": {...}}\n"
			"in delivery (position) order. --from takes a "
			"position TX:ID\nor an event id N (start after it). "
			"--type and --stream select\nevent types (default: "
			"all); --where ID=VALUE keeps the events\nwhose domain "
			"id ID equals VALUE (types without that id are\nkept, "
			"as in every stream query). Every event committed "
			"before the\nstart is printed (if an older "
			"transaction is still open, tail\nwaits for it); "
			"with --follow, tail then keeps waiting for new\n"
			"events until SIGINT or SIGTERM, and exits 0.",
	},
	{
		.name = "rebuild",
		.run = cmd_rebuild,
		.opts = OPT_DB | OPT_SCHEMA,
		.min_operands = 1,
		.max_operands = 1,
		.synopsis = "rebuild --schema FILE PROJECTION",
		.help = "Rebuild an installed projection from the whole log "
			"without\ndowntime: build PROJECTION__rebuild under "
			"the listener\nPROJECTION:rebuild, then swap it in "
			"and move the checkpoints of\nthe projection's "
			"listeners, in one transaction. SIGINT or\nSIGTERM "
			"cancels (the live table stays).",
	},
	{
		.name = "index",
		.run = cmd_index,
		.opts = OPT_DB | OPT_SCHEMA,
		.min_operands = 1,
		.max_operands = 1,
		.synopsis = "index --schema FILE ID",
		.help = "Fill the column of domain id ID for events stored "
			"before the\nschema declared it: migrate for the "
			"schema, then run the\nlistener index:ID over the "
			"log until it has passed the newest\nevent. Then "
			"build the column's index on (ID, tx) if it has "
			"none\n(a column older than that index): CREATE "
			"INDEX CONCURRENTLY,\nwrites go on.",
	},
	{
		.name = "listeners",
		.run = cmd_listeners,
		.opts = OPT_DB | OPT_SCHEMA,
		.synopsis = "listeners",
		.help = "Show every listener as the database records it: its "
			"checkpoint,\nthe head of the log, the events of its "
			"types past the checkpoint\n(BEHIND) and the age of "
			"the oldest of them (LAG), its state,\nthe attempts "
			"at its failing event, its dead letters, when a\n"
			"runtime last wrote its row, and its last error.",
	},
	{
		.name = "reset",
		.run = cmd_reset,
		.opts = OPT_DB | OPT_SCHEMA | OPT_TO,
		.min_operands = 1,
		.max_operands = 1,
		.synopsis = "reset LISTENER [--to POSITION]",
		.help = "Move LISTENER's checkpoint to POSITION (TX:ID, or an "
			"event id N:\ncontinue after event N; default 0, the "
			"start) and clear its\nfailure state, e.g. to "
			"reproject from scratch or to skip a\npoison event. "
			"Waits for a batch in flight; running listeners\n"
			"pick the new checkpoint up at their next batch, and "
			"a listener\nstopped on a poison event resumes.",
	},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
	fprintf(f, "usage: %s [--db CONNINFO] COMMAND [OPTIONS]\n\n", progname);
	fprintf(f, "Commands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %s %s\n", progname, commands[i].synopsis);
	fprintf(f,
		"\nOptions of every command:\n"
		"  --db CONNINFO  libpq connection string or URI (default: "
		"the PG*\n"
		"                 environment variables)\n"
		"  --help         help on a command: %s COMMAND --help\n"
		"\nExit status: 0 ok, 1 usage or input error, 2 database or "
		"connection\nerror, 3 conflict.\n",
		progname);
}

static void command_help(const command *c)
{
	printf("usage: %s [--db CONNINFO] %s\n\n%s\n", progname, c->synopsis,
	       c->help);
}

static int run_command(const command *c, int argc, char **argv, const char *db)
{
	static const struct option longopts[] = {
		{"db", required_argument, NULL, 'd'},
		{"schema", required_argument, NULL, 's'},
		{"from", required_argument, NULL, 'f'},
		{"follow", no_argument, NULL, 'F'},
		{"type", required_argument, NULL, 't'},
		{"stream", required_argument, NULL, 'S'},
		{"where", required_argument, NULL, 'w'},
		{"to", required_argument, NULL, 'T'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static const struct {
		int ch;
		unsigned opt;
	} optbits[] = {
		{'d', OPT_DB},     {'s', OPT_SCHEMA}, {'f', OPT_FROM},
		{'F', OPT_FOLLOW}, {'t', OPT_TYPE},   {'S', OPT_STREAM},
		{'w', OPT_WHERE},  {'T', OPT_TO},
	};
	args a = {0};
	int ch, idx, st;
	size_t vsize = (size_t)argc * sizeof(char *);

	a.types.v = malloc(vsize);
	a.streams.v = malloc(vsize);
	a.wheres.v = malloc(vsize);
	if (!a.types.v || !a.streams.v || !a.wheres.v) {
		msg("out of memory");
		st = ST_USAGE;
		goto out;
	}
	a.db = db;
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":h", longopts, &idx)) != -1) {
		unsigned bit = 0;

		for (size_t i = 0; i < sizeof(optbits) / sizeof(optbits[0]);
		     i++) {
			if (optbits[i].ch == ch)
				bit = optbits[i].opt;
		}
		if (ch == 'h') {
			command_help(c);
			st = ST_OK;
			goto out;
		}
		if (ch == '?' || ch == ':' || !(c->opts & bit)) {
			if (ch == ':')
				msg("%s: option %s needs a value", c->name,
				    argv[optind - 1]);
			else if (ch == '?' && optopt)
				msg("%s: unknown option -%c", c->name, optopt);
			else if (ch == '?')
				msg("%s: unknown option %s", c->name,
				    argv[optind - 1]);
			else
				msg("%s: option --%s does not apply here",
				    c->name, longopts[idx].name);
			fprintf(stderr, "usage: %s %s\n", progname,
				c->synopsis);
			st = ST_USAGE;
			goto out;
		}
		switch (ch) {
		case 'd': a.db = optarg; break;
		case 's': a.schema = optarg; break;
		case 'f': a.from = optarg; break;
		case 'F': a.follow = true; break;
		case 't': a.types.v[a.types.n++] = optarg; break;
		case 'S': a.streams.v[a.streams.n++] = optarg; break;
		case 'w': a.wheres.v[a.wheres.n++] = optarg; break;
		case 'T': a.to = optarg; break;
		}
	}
	a.operands = argv + optind;
	a.noperands = argc - optind;
	if (a.noperands < c->min_operands || a.noperands > c->max_operands) {
		msg("%s: %s", c->name,
		    a.noperands < c->min_operands ? "missing operand"
						  : "too many operands");
		fprintf(stderr, "usage: %s %s\n", progname, c->synopsis);
		st = ST_USAGE;
		goto out;
	}
	st = c->run(c, &a);
out:
	free(a.types.v);
	free(a.streams.v);
	free(a.wheres.v);
	if (st == ST_OK && fflush(stdout) == EOF) {
		msg("writing output: %s", strerror(errno));
		st = ST_USAGE;
	}
	return st;
}

int main(int argc, char **argv)
{
	const char *db = NULL;
	int i;

	/* Global options before the command: --db and --help. */
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return ST_OK;
		} else if (!strcmp(argv[i], "--db") && i + 1 < argc) {
			db = argv[++i];
		} else if (!strncmp(argv[i], "--db=", 5)) {
			db = argv[i] + 5;
		} else {
			msg("unknown option %s", argv[i]);
			usage(stderr);
			return ST_USAGE;
		}
	}
	if (i == argc) {
		usage(stderr);
		return ST_USAGE;
	}
	for (size_t c = 0; c < NCOMMANDS; c++) {
		if (strcmp(argv[i], commands[c].name) == 0) {
			return run_command(&commands[c], argc - i, argv + i,
					   db);
		}
	}
	msg("unknown command \"%s\"", argv[i]);
	usage(stderr);
	return ST_USAGE;
}
