/*
 * Fuzz target: stream queries from `disctl tail` arguments
 * (disctl_build_query, then dis__query_sql and dis__read_sql).
 *
 * Input: arguments separated by NUL bytes, as in argv: "--type" T,
 * "--stream" S, "--where" ID=VALUE, "--from" POSITION (also in the
 * "--opt=value" form). "--or" starts another query, united with the first
 * by dis_query_union (the CLI builds one). "--shard" ID/N splits the result
 * into N shards by domain id ID (dis_query_shard, as listeners do). Other
 * arguments are ignored.
 *
 * Checks: the SQL binds every value (no quote, semicolon or comment in its
 * text; every $n bound and used; only schema ids quoted), a copy describes
 * the same, dis_query_matches agrees on a fixed set of events with a direct
 * reading of the arguments, and the N shards of a query select each of its
 * events exactly once.
 */
#include "fuzz.h"
#include "cliparse.h"

#include <errno.h>

static const char *SCHEMA =
	"[{\"type\":\"record\",\"name\":\"Deposited\","
	"  \"disintegrate.streams\":[\"money\"],\"fields\":["
	" {\"name\":\"account_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"amount\",\"type\":\"long\"}]},"
	" {\"type\":\"record\",\"name\":\"Withdrawn\","
	"  \"disintegrate.streams\":[\"money\"],\"fields\":["
	" {\"name\":\"account_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"amount\",\"type\":\"long\"}]},"
	" {\"type\":\"record\",\"name\":\"Opened\","
	"  \"disintegrate.streams\":[\"life\"],\"fields\":["
	" {\"name\":\"account_id\",\"type\":\"string\",\"disintegrate.id\":true},"
	" {\"name\":\"customer\",\"type\":\"long\",\"disintegrate.id\":true},"
	" {\"name\":\"key\",\"type\":{\"type\":\"string\","
	"  \"logicalType\":\"uuid\"},\"disintegrate.id\":true}]},"
	" {\"type\":\"record\",\"name\":\"Closed\","
	"  \"disintegrate.streams\":[\"life\"],\"fields\":["
	" {\"name\":\"account_id\",\"type\":[\"null\",\"string\"],"
	"  \"disintegrate.id\":true}]},"
	" {\"type\":\"record\",\"name\":\"Note\",\"fields\":["
	" {\"name\":\"text\",\"type\":\"string\"}]}]";

static const char *const EVENTS[][2] = {
	{"Deposited", "{\"account_id\":\"A-1\",\"amount\":5}"},
	{"Deposited",
	 "{\"account_id\":\"x'); DROP TABLE event; --\",\"amount\":1}"},
	{"Withdrawn", "{\"account_id\":\"A-1\",\"amount\":2}"},
	{"Withdrawn", "{\"account_id\":\"\",\"amount\":2}"},
	{"Opened", "{\"account_id\":\"A-2\",\"customer\":42,"
		   "\"key\":\"6ba7b810-9dad-11d1-80b4-00c04fd430c8\"}"},
	{"Opened", "{\"account_id\":\"A-1\",\"customer\":-9223372036854775808,"
		   "\"key\":\"00000000-0000-0000-0000-000000000000\"}"},
	{"Closed", "{\"account_id\":null}"},
	{"Closed", "{\"account_id\":\"A-1\"}"},
	{"Note", "{\"text\":\"A-1\"}"},
};
#define NEVENTS (sizeof(EVENTS) / sizeof(EVENTS[0]))
#define MAXARGS 64
#define MAXGROUPS 4

static dis_schema *schema;
static dis_event *events[NEVENTS];

static void free_all(void)
{
	for (size_t i = 0; i < NEVENTS; i++)
		dis_event_free(events[i]);
	dis_schema_free(schema);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[DIS_ERRMSG_LEN];

	(void)argc;
	(void)argv;
	schema = fz_schema(SCHEMA);
	atexit(free_all);
	for (size_t i = 0; i < NEVENTS; i++) {
		if (dis_event_from_json(schema, EVENTS[i][0], EVENTS[i][1],
					&events[i], err, sizeof(err)))
			fz_fail("event %zu: %s", i, err);
		dis__event_set_stored(events[i], (int64_t)i + 1,
				      (dis_position){100 + i, (int64_t)i + 1});
	}
	return 0;
}

/* One query's arguments. */
typedef struct group {
	const char *types[MAXARGS];
	const char *streams[MAXARGS];
	const char *wheres[MAXARGS];
	size_t ntypes, nstreams, nwheres;
} group;

/* Whether `arg` is option `name`; its value then goes to *value. */
static bool option(const char *const *argv, size_t argc, size_t *i,
		   const char *name, const char **value)
{
	size_t n = strlen(name);

	if (strncmp(argv[*i], name, n) != 0)
		return false;
	if (argv[*i][n] == '=') {
		*value = argv[*i] + n + 1;
		return true;
	}
	if (argv[*i][n] != '\0' || *i + 1 >= argc)
		return false;
	*value = argv[++*i];
	return true;
}

/* A direct reading of one group: does it select the event? */
static bool group_matches(const group *g, const dis_event *ev)
{
	const char *type = dis_event_type(ev);
	bool typed = g->ntypes == 0 && g->nstreams == 0;

	for (size_t i = 0; i < g->ntypes && !typed; i++)
		typed = strcmp(g->types[i], type) == 0;
	for (size_t i = 0; i < g->nstreams && !typed; i++) {
		const char *const *types;
		size_t n;

		if (dis_schema_stream_types(schema, g->streams[i], &types, &n))
			continue;
		for (size_t k = 0; k < n && !typed; k++)
			typed = strcmp(types[k], type) == 0;
	}
	if (!typed)
		return false;
	for (size_t i = 0; i < g->nwheres; i++) {
		const char *eq = strchr(g->wheres[i], '=');
		char name[128];
		const char *value = eq + 1;
		dis__idval v;
		char a[37], b[37];
		int idx;

		snprintf(name, sizeof(name), "%.*s",
			 (int)(eq - g->wheres[i]), g->wheres[i]);
		idx = dis_schema_id_index(schema, name);
		if (!dis_schema_type_has_id(schema, type, name))
			continue;
		if (dis__event_idval(ev, idx, &v))
			fz_fail("idval of a built-in event");
		if (!v.present)
			return false;
		switch (v.type) {
		case DIS_ID_LONG:
			if (strtoll(value, NULL, 10) != v.num)
				return false;
			break;
		case DIS_ID_UUID:
			if (dis__uuid_normalize(value, a) ||
			    dis__uuid_normalize(v.str, b) || strcmp(a, b))
				return false;
			break;
		default:
			if (strcmp(value, v.str))
				return false;
		}
	}
	return true;
}

/* String constants the query SQL may hold (shards hash the id's text). */
static const char *const LITERALS[] = {"'x'", "'UTF8'"};
#define NLITERALS (sizeof(LITERALS) / sizeof(LITERALS[0]))

/* The SQL binds every value: nothing from the arguments is in its text. */
static void check_sql(const dis__sql *s, size_t first_param)
{
	const char *t = (const char *)s->text.data;
	size_t len = s->text.len;
	unsigned char *used = calloc((size_t)s->nparams + 1, 1);
	int depth = 0;

	fz_check(used, "out of memory");
	fz_check(memchr(t, '\0', len) == NULL, "NUL in the SQL text");
	for (size_t i = 0; i < len; i++) {
		char c = t[i];

		/* The only literals are the library's own constants. */
		if (c == '\'') {
			size_t k;

			for (k = 0; k < NLITERALS; k++)
				if (!strncmp(t + i, LITERALS[k],
					     strlen(LITERALS[k])))
					break;
			fz_check(k < NLITERALS, "a literal in the SQL text: %.*s",
				 (int)len, t);
			i += strlen(LITERALS[k]) - 1;
			continue;
		}
		fz_check(c != ';' && c != '\\', "'%c' in the SQL text: %.*s",
			 c, (int)len, t);
		fz_check(!(c == '-' && i + 1 < len && t[i + 1] == '-'),
			 "comment in the SQL text");
		if (c == '(')
			depth++;
		if (c == ')')
			fz_check(--depth >= 0, "unbalanced ) in the SQL text");
		if (c == '$') {
			long n = strtol(t + i + 1, NULL, 10);

			fz_check(n >= 1 && n <= s->nparams,
				 "$%ld outside 1..%d", n, s->nparams);
			used[n] = 1;
		}
		if (c == '"') {
			const char *q = memchr(t + i + 1, '"', len - i - 1);
			char name[128];

			fz_check(q && q - (t + i + 1) < (long)sizeof(name),
				 "unterminated identifier in the SQL text");
			snprintf(name, sizeof(name), "%.*s",
				 (int)(q - (t + i + 1)), t + i + 1);
			fz_check(dis_schema_id_index(schema, name) >= 0,
				 "identifier \"%s\" is not a domain id", name);
			i = (size_t)(q - t);
		}
	}
	fz_check(depth == 0, "unbalanced ( in the SQL text");
	for (int n = (int)first_param; n <= s->nparams; n++)
		fz_check(used[n], "parameter $%d bound but not used", n);
	free(used);
}

static void check_query(const dis_query *q, const group *groups,
			size_t ngroups, dis_position from, bool direct)
{
	dis_query *copy = NULL;
	char *d1 = NULL, *d2 = NULL;
	int64_t *keys = NULL;
	size_t nkeys = 0;
	dis__sql s;
	int rc;

	dis__sql_init(&s);
	rc = dis__query_sql(q, &s);
	fz_check(rc == 0, "dis__query_sql: %s", dis_strerror(rc));
	fz_check(dis__buf_cstr(&s.text), "out of memory");
	check_sql(&s, 1);
	dis__sql_free(&s);

	dis__sql_init(&s);
	rc = dis__read_sql(q, from, 1000, &s);
	fz_check(rc == 0, "dis__read_sql: %s", dis_strerror(rc));
	fz_check(!s.oom && !s.text.oom && dis__buf_cstr(&s.text),
		 "dis__read_sql: out of memory");
	for (const char *t = (const char *)s.text.data,
			*end = t + s.text.len;
	     (t = memchr(t, '\'', (size_t)(end - t))) != NULL;) {
		size_t k;

		for (k = 0; k < NLITERALS; k++)
			if (!strncmp(t, LITERALS[k], strlen(LITERALS[k])))
				break;
		fz_check(k < NLITERALS, "a literal in the read SQL: %s", t);
		t += strlen(LITERALS[k]);
	}
	dis__sql_free(&s);

	rc = dis__query_lock_keys(q, &keys, &nkeys);
	fz_check(rc == 0 && nkeys > 0, "lock keys: %s", dis_strerror(rc));
	free(keys);

	rc = dis_query_copy(q, &copy);
	fz_check(rc == 0, "copy: %s", dis_strerror(rc));
	fz_check(dis_query_describe(q, &d1) == 0 &&
			 dis_query_describe(copy, &d2) == 0,
		 "describe failed");
	fz_check(strcmp(d1, d2) == 0, "a copy describes differently");
	dis_free(d1);
	dis_free(d2);

	for (size_t i = 0; i < NEVENTS; i++) {
		bool want = false, got = dis_query_matches(q, events[i]);

		for (size_t g = 0; g < ngroups && !want; g++)
			want = group_matches(&groups[g], events[i]);
		fz_check(!direct || got == want,
			 "event %zu (%s): dis_query_matches says %d, the "
			 "arguments say %d",
			 i, EVENTS[i][1], got, want);
		fz_check(dis_query_matches(copy, events[i]) == got,
			 "a copy matches differently");
		fz_check(dis_query_has_type(q, dis_event_type(events[i])) ||
				 !got,
			 "matches a type it cannot select");
	}
	dis_query_free(copy);
}

/* The n shards of `q` by `id` partition its events. */
static void check_shards(const dis_query *q, const group *groups,
			 size_t ngroups, const char *spec, dis_position from)
{
	const char *slash = strrchr(spec, '/');
	unsigned char hits[NEVENTS] = {0};
	char id[128];
	long n;
	int first = 1, rc0 = 0;

	if (!slash || (size_t)(slash - spec) >= sizeof(id))
		return;
	n = strtol(slash + 1, NULL, 10);
	if (n < 1 || n > 16)
		return;
	snprintf(id, sizeof(id), "%.*s", (int)(slash - spec), spec);
	for (long k = 0; k < n; k++) {
		dis_query *part = NULL;
		int rc;

		fz_check(dis_query_copy(q, &part) == 0, "copy failed");
		rc = dis_query_shard(part, id, (uint32_t)n, (uint32_t)k);
		fz_check(rc == 0 || rc == DIS_EINVAL || rc == DIS_ENOTFOUND,
			 "shard: unexpected %s", dis_strerror(rc));
		fz_check(first || rc == rc0,
			 "shard %ld of %ld: %s, shard 0: %s", k, n,
			 dis_strerror(rc), dis_strerror(rc0));
		first = 0;
		rc0 = rc;
		if (rc) {
			fz_check(dis_query_check(part) == rc ||
					 dis_query_check(part) == 0,
				 "shard: the query records another error");
			dis_query_free(part);
			continue;
		}
		check_query(part, groups, ngroups, from, false);
		for (size_t i = 0; i < NEVENTS; i++)
			if (dis_query_matches(part, events[i])) {
				fz_check(dis_query_matches(q, events[i]),
					 "shard %ld selects event %zu, which "
					 "the query does not",
					 k, i);
				hits[i]++;
			}
		dis_query_free(part);
	}
	if (rc0)
		return;
	for (size_t i = 0; i < NEVENTS; i++)
		fz_check(hits[i] == (dis_query_matches(q, events[i]) ? 1 : 0),
			 "event %zu is in %d of the %ld shards of %s", i,
			 hits[i], n, id);
}

static void check_from(const char *text, dis_position *from)
{
	dis_position p, back;
	char buf[48];

	if (dis_position_parse(text, &p))
		return;
	dis_position_format(p, buf, sizeof(buf));
	fz_check(dis_position_parse(buf, &back) == 0 &&
			 dis_position_cmp(p, back) == 0,
		 "position \"%s\" formats as \"%s\", which reads back "
		 "differently",
		 text, buf);
	*from = p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static group groups[MAXGROUPS];
	const char *argv[MAXARGS];
	dis_query *q = NULL, *part;
	dis_position from = DIS_POSITION_START;
	const char *shard = NULL;
	size_t argc = 0, ngroups = 1, i;
	char *text, *p, *end;
	bool ok = true;
	int rc;

	if (size > 4096)
		return 0;
	text = fz_cstr(data, size);
	for (p = text, end = text + size; p <= end && argc < MAXARGS;
	     p += strlen(p) + 1)
		argv[argc++] = p;

	memset(groups, 0, sizeof(groups));
	for (i = 0; i < argc; i++) {
		group *g = &groups[ngroups - 1];
		const char *v;

		if (strcmp(argv[i], "--or") == 0) {
			if (ngroups == MAXGROUPS)
				break;
			ngroups++;
		} else if (option(argv, argc, &i, "--type", &v)) {
			g->types[g->ntypes++] = v;
		} else if (option(argv, argc, &i, "--stream", &v)) {
			g->streams[g->nstreams++] = v;
		} else if (option(argv, argc, &i, "--where", &v)) {
			g->wheres[g->nwheres++] = v;
		} else if (option(argv, argc, &i, "--from", &v)) {
			check_from(v, &from);
		} else if (option(argv, argc, &i, "--shard", &v)) {
			shard = v;
		}
	}

	for (i = 0; i < ngroups && ok; i++) {
		disctl_query_args a = {
			.types = groups[i].types,
			.ntypes = groups[i].ntypes,
			.streams = groups[i].streams,
			.nstreams = groups[i].nstreams,
			.wheres = groups[i].wheres,
			.nwheres = groups[i].nwheres,
		};
		char err[DIS_ERRMSG_LEN] = "";

		part = (dis_query *)&part;
		rc = disctl_build_query(schema, &a, &part, err, sizeof(err));
		if (rc) {
			fz_check_code(rc, "build");
			fz_check(rc == DIS_EINVAL || rc == DIS_ENOMEM,
				 "build: unexpected %s: %s", dis_strerror(rc),
				 err);
			fz_check_err(err, sizeof(err), "build");
			fz_check(part == (dis_query *)&part,
				 "build: *out set on failure");
			ok = false;
			break;
		}
		check_query(part, &groups[i], 1, from, true);
		if (!q) {
			q = part;
			continue;
		}
		rc = dis_query_union(q, part);
		fz_check(rc == 0, "union: %s", dis_strerror(rc));
		dis_query_free(part);
	}
	if (ok && ngroups > 1)
		check_query(q, groups, ngroups, from, true);
	if (ok && shard)
		check_shards(q, groups, ngroups, shard, from);
	dis_query_free(q);
	free(text);
	return 0;
}
