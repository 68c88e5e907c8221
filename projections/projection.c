/*
 * Projections: a table's DDL plus, per event type, SQL statements whose
 * $field parameters are bound from the event's fields. Compiling a
 * statement scans it once the way PostgreSQL's lexer would (strings,
 * quoted identifiers, dollar quotes, comments), turns each $name into a
 * positional $n and remembers where {table} goes.
 */
#include "projections-internal.h"

#include <avro.h>
#include <jansson.h>

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Advisory-lock key serialising installs ("dis-proj"). */
#define INSTALL_LOCK_KEY "7235441166829893738"

typedef enum param_kind {
	P_FIELD = 0,
	P_EVENT_ID = 1,
	P_EVENT_TYPE = 2
} param_kind;

typedef struct tparam {
	param_kind kind;
	size_t field; /* P_FIELD: index of the field in the record */
	char *name;
} tparam;

/* A compiled template: text pieces with {table} between them. */
typedef struct tmpl {
	char *text;       /* without the {table} markers */
	size_t *table_at; /* offsets in text where the table name goes */
	size_t ntable;
	tparam *params;
	size_t nparams;
} tmpl;

typedef struct tstmt {
	int type;     /* event type index */
	char *source; /* as given */
	tmpl t;
	char *rendered; /* for `rendered_for` */
	char rendered_for[64];
} tstmt;

struct dis_projection {
	const dis_schema *schema;
	char name[DIS_PROJECTION_NAME_MAX + 1];
	char *ddl;
	tmpl ddl_t;
	tstmt *stmts;
	size_t nstmts;
	dis_query *query;
	dis__buf *scratch; /* parameter values, one buffer per parameter */
	size_t nscratch;
	const char **values;
	dis_log_fn log;
	void *log_arg;
	char errmsg[DIS_ERRMSG_LEN];
};

static int pfail(dis_projection *p, int code, const char *fmt, ...)
	DIS_PRINTF(3, 4);

static int pfail(dis_projection *p, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	dis__verrf(p->errmsg, sizeof(p->errmsg), fmt, ap);
	va_end(ap);
	return code;
}

static void plog(dis_projection *p, dis_log_level level, const char *fmt, ...)
	DIS_PRINTF(3, 4);

static void plog(dis_projection *p, dis_log_level level, const char *fmt, ...)
{
	char msg[DIS_ERRMSG_LEN];
	va_list ap;

	if (!p->log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	p->log(p->log_arg, level, msg);
}

double dis__mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- libpq helpers shared by the module ---- */

int dis__pq_fail(PGconn *conn, const PGresult *res, const char *what, char *err,
		 size_t errlen)
{
	const char *msg = res ? PQresultErrorMessage(res) : "";
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
				: NULL;
	char text[DIS_ERRMSG_LEN];
	size_t n;
	int code = DIS_EPG;

	if (!msg || !*msg)
		msg = PQerrorMessage(conn);
	snprintf(text, sizeof(text), "%s", msg ? msg : "");
	n = strlen(text);
	while (n && (text[n - 1] == '\n' || text[n - 1] == ' '))
		text[--n] = '\0';
	if (state && (!strcmp(state, "55P03") || !strcmp(state, "57014")))
		code = DIS_ETIMEDOUT;
	else if (state && !strcmp(state, "42501"))
		code = DIS_EPERM;
	else if (state && (!strcmp(state, "40001") || !strcmp(state, "40P01")))
		code = DIS_ECONFLICT;
	if (PQstatus(conn) == CONNECTION_BAD) {
		code = DIS_ECONN;
		if (!*text)
			snprintf(text, sizeof(text), "connection lost");
	}
	dis__errf(err, errlen, "%s: %s", what, text);
	return code;
}

int dis__pq_exec(PGconn *conn, const char *sql, char *err, size_t errlen)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);
	int rc = 0;

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		rc = dis__pq_fail(conn, res, "running SQL", err, errlen);
	PQclear(res);
	return rc;
}

/* ---- templates ---- */

static void tmpl_free(tmpl *t)
{
	for (size_t i = 0; i < t->nparams; i++)
		free(t->params[i].name);
	free(t->params);
	free(t->table_at);
	free(t->text);
	memset(t, 0, sizeof(*t));
}

static bool ident_start(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
	       c >= 0x80;
}

static bool ident_char(int c)
{
	return ident_start(c) || (c >= '0' && c <= '9');
}

/* Length of an identifier at s (0 when none). */
static size_t ident_len(const char *s)
{
	size_t n = 0;

	if (!ident_start((unsigned char)s[0]))
		return 0;
	while (ident_char((unsigned char)s[n]))
		n++;
	return n;
}

typedef struct compiler {
	dis_projection *p;
	const char *what;        /* for messages: "DDL" or "CourseCreated" */
	int type;                /* event type index, -1 for the DDL */
	const avro_value_t *rec; /* a record of the type, for field lookup */
	dis__buf out;
	tmpl *t;
} compiler;

static int add_table(compiler *c)
{
	size_t *p = realloc(c->t->table_at, (c->t->ntable + 1) * sizeof(*p));

	if (!p)
		return DIS_ENOMEM;
	c->t->table_at = p;
	p[c->t->ntable++] = c->out.len;
	return 0;
}

/* Resolves $name into its positional number (1-based). */
static int add_param(compiler *c, const char *name, size_t len, int *num)
{
	tmpl *t = c->t;
	tparam *p;
	param_kind kind = P_FIELD;
	size_t field = 0;
	char buf[256];

	if (len >= sizeof(buf))
		return pfail(c->p, DIS_EINVAL, "%s: parameter name too long",
			     c->what);
	memcpy(buf, name, len);
	buf[len] = '\0';
	for (size_t i = 0; i < t->nparams; i++) {
		if (!strcmp(t->params[i].name, buf)) {
			*num = (int)i + 1;
			return 0;
		}
	}
	if (c->type < 0)
		return pfail(c->p, DIS_EINVAL,
			     "the DDL may not hold parameters ($%s)", buf);
	if (!strcmp(buf, "event_id")) {
		kind = P_EVENT_ID;
	} else if (!strcmp(buf, "event_type")) {
		kind = P_EVENT_TYPE;
	} else {
		avro_value_t f;

		if (avro_value_get_by_name(c->rec, buf, &f, &field))
			return pfail(c->p, DIS_EINVAL, "%s has no field \"%s\"",
				     c->what, buf);
	}
	p = realloc(t->params, (t->nparams + 1) * sizeof(*p));
	if (!p)
		return DIS_ENOMEM;
	t->params = p;
	p[t->nparams].kind = kind;
	p[t->nparams].field = field;
	p[t->nparams].name = dis__strdup(buf);
	if (!p[t->nparams].name)
		return DIS_ENOMEM;
	t->nparams++;
	*num = (int)t->nparams;
	return 0;
}

/* Copies a quoted section starting at s[0] (the opening quote). */
static int skip_quoted(compiler *c, const char *s, size_t *i, char q,
		       bool backslash)
{
	size_t j = *i + 1;

	for (;;) {
		if (!s[j])
			return pfail(c->p, DIS_EINVAL, "%s: unterminated %s",
				     c->what,
				     q == '"' ? "quoted identifier" : "string");
		if (backslash && s[j] == '\\' && s[j + 1]) {
			j += 2;
			continue;
		}
		if (s[j] == q) {
			if (s[j + 1] == q) {
				j += 2;
				continue;
			}
			j++;
			break;
		}
		j++;
	}
	dis__buf_append(&c->out, s + *i, j - *i);
	*i = j;
	return 0;
}

static int compile(compiler *c, const char *s)
{
	size_t i = 0;
	bool ended = false; /* after a ';' */
	int rc;

	while (s[i]) {
		unsigned char ch = (unsigned char)s[i];

		if (ended && ch != ' ' && ch != '\t' && ch != '\n' &&
		    ch != '\r' && ch != ';' &&
		    !(ch == '-' && s[i + 1] == '-') &&
		    !(ch == '/' && s[i + 1] == '*') && c->type >= 0)
			return pfail(c->p, DIS_EINVAL,
				     "%s: one statement per call (add "
				     "another)",
				     c->what);
		if (ch == '\'') {
			bool esc =
				i > 0 && (s[i - 1] == 'E' || s[i - 1] == 'e') &&
				(i < 2 || !ident_char((unsigned char)s[i - 2]));

			if ((rc = skip_quoted(c, s, &i, '\'', esc)))
				return rc;
		} else if (ch == '"') {
			if ((rc = skip_quoted(c, s, &i, '"', false)))
				return rc;
		} else if (ch == '-' && s[i + 1] == '-') {
			size_t j = i;

			while (s[j] && s[j] != '\n')
				j++;
			dis__buf_append(&c->out, s + i, j - i);
			i = j;
		} else if (ch == '/' && s[i + 1] == '*') {
			size_t j = i + 2;
			int depth = 1;

			while (s[j] && depth) {
				if (s[j] == '/' && s[j + 1] == '*') {
					depth++;
					j += 2;
				} else if (s[j] == '*' && s[j + 1] == '/') {
					depth--;
					j += 2;
				} else {
					j++;
				}
			}
			if (depth)
				return pfail(c->p, DIS_EINVAL,
					     "%s: unterminated comment",
					     c->what);
			dis__buf_append(&c->out, s + i, j - i);
			i = j;
		} else if (ch == '$' && i > 0 &&
			   (ident_char((unsigned char)s[i - 1]) ||
			    s[i - 1] == '$')) {
			/* Part of an identifier such as a$b. */
			dis__buf_append(&c->out, s + i, 1);
			i++;
		} else if (ch == '$') {
			size_t n = ident_len(s + i + 1);

			if (s[i + 1] == '$' || (n && s[i + 1 + n] == '$')) {
				/* Dollar quote $tag$ ... $tag$. */
				size_t tag = (s[i + 1] == '$' ? 0 : n) + 2;
				const char *end = s + i + tag;
				const char *close;

				for (;;) {
					close = strstr(end, "$");
					if (!close)
						break;
					if (!strncmp(close, s + i, tag))
						break;
					end = close + 1;
				}
				if (!close)
					return pfail(c->p, DIS_EINVAL,
						     "%s: unterminated dollar "
						     "quote",
						     c->what);
				close += tag;
				dis__buf_append(&c->out, s + i,
						(size_t)(close - (s + i)));
				i = (size_t)(close - s);
			} else if (n) {
				int num = 0;

				if ((rc = add_param(c, s + i + 1, n, &num)))
					return rc;
				dis__buf_printf(&c->out, "$%d", num);
				i += 1 + n;
			} else if (s[i + 1] >= '0' && s[i + 1] <= '9') {
				return pfail(c->p, DIS_EINVAL,
					     "%s: positional parameters are "
					     "not allowed; name the field "
					     "($field)",
					     c->what);
			} else {
				dis__buf_append(&c->out, s + i, 1);
				i++;
			}
		} else if (ch == '{' && !strncmp(s + i, "{table}", 7)) {
			if ((rc = add_table(c)))
				return rc;
			i += 7;
		} else {
			if (ch == ';')
				ended = true;
			dis__buf_append(&c->out, s + i, 1);
			i++;
		}
	}
	if (c->out.oom)
		return DIS_ENOMEM;
	c->t->text = dis__buf_take(&c->out);
	return c->t->text ? 0 : DIS_ENOMEM;
}

static int compile_tmpl(dis_projection *p, const char *what, int type,
			const avro_value_t *rec, const char *src, tmpl *out)
{
	compiler c = {.p = p, .what = what, .type = type, .rec = rec};
	tmpl t = {0};
	int rc;

	c.t = &t;
	dis__buf_init(&c.out);
	rc = compile(&c, src);
	dis__buf_free(&c.out);
	if (rc) {
		if (rc == DIS_ENOMEM)
			pfail(p, rc, "out of memory");
		tmpl_free(&t);
		return rc;
	}
	*out = t;
	return 0;
}

/* The template's text with `table` (quoted) where {table} was. */
static char *render(const tmpl *t, const char *table)
{
	dis__buf b;
	size_t at = 0;

	dis__buf_init(&b);
	for (size_t i = 0; i < t->ntable; i++) {
		dis__buf_append(&b, t->text + at, t->table_at[i] - at);
		dis__buf_printf(&b, "\"%s\"", table);
		at = t->table_at[i];
	}
	dis__buf_puts(&b, t->text + at);
	return dis__buf_take(&b);
}

/* ---- lifecycle ---- */

static int check_name(const char *name, char *err, size_t errlen)
{
	char why[DIS_ERRMSG_LEN];

	if (!name) {
		dis__errf(err, errlen, "projection name is NULL");
		return DIS_EINVAL;
	}
	if (dis_identifier_check(name, why, sizeof(why))) {
		dis__errf(err, errlen, "projection name: %s", why);
		return DIS_EINVAL;
	}
	if (strlen(name) > DIS_PROJECTION_NAME_MAX) {
		dis__errf(err, errlen,
			  "projection name \"%s\" is longer than %d bytes",
			  name, DIS_PROJECTION_NAME_MAX);
		return DIS_EINVAL;
	}
	return 0;
}

int dis_projection_new(const dis_schema *schema, const char *name,
		       dis_projection **out, char *errbuf, size_t errlen)
{
	dis_projection *p;
	int rc;

	if (!schema || !out) {
		dis__errf(errbuf, errlen, "schema and out are required");
		return DIS_EINVAL;
	}
	if ((rc = check_name(name, errbuf, errlen)))
		return rc;
	p = calloc(1, sizeof(*p));
	if (!p) {
		dis__errf(errbuf, errlen, "out of memory");
		return DIS_ENOMEM;
	}
	p->schema = schema;
	snprintf(p->name, sizeof(p->name), "%s", name);
	*out = p;
	return 0;
}

void dis_projection_free(dis_projection *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nstmts; i++) {
		free(p->stmts[i].source);
		free(p->stmts[i].rendered);
		tmpl_free(&p->stmts[i].t);
	}
	free(p->stmts);
	tmpl_free(&p->ddl_t);
	free(p->ddl);
	dis_query_free(p->query);
	for (size_t i = 0; i < p->nscratch; i++)
		dis__buf_free(&p->scratch[i]);
	free(p->scratch);
	free(p->values);
	free(p);
}

const char *dis_projection_errmsg(const dis_projection *p)
{
	if (!p)
		return "projection is NULL";
	return p->errmsg[0] ? p->errmsg : "no error";
}

const char *dis_projection_name(const dis_projection *p)
{
	return p ? p->name : NULL;
}

void dis_projection_set_log(dis_projection *p, dis_log_fn fn, void *arg)
{
	if (!p)
		return;
	p->log = fn;
	p->log_arg = arg;
}

int dis_projection_set_ddl(dis_projection *p, const char *ddl)
{
	tmpl t;
	char *copy;
	int rc;

	if (!p)
		return DIS_EINVAL;
	if (!ddl)
		return pfail(p, DIS_EINVAL, "DDL is NULL");
	if ((rc = compile_tmpl(p, "DDL", -1, NULL, ddl, &t)))
		return rc;
	if (t.ntable == 0) {
		tmpl_free(&t);
		return pfail(p, DIS_EINVAL,
			     "the DDL must create {table} (the projection's "
			     "table name)");
	}
	copy = dis__strdup(ddl);
	if (!copy) {
		tmpl_free(&t);
		return pfail(p, DIS_ENOMEM, "out of memory");
	}
	tmpl_free(&p->ddl_t);
	free(p->ddl);
	p->ddl_t = t;
	p->ddl = copy;
	return 0;
}

/* Rebuilds the query: one filter over every type with statements. */
static int rebuild_query(dis_projection *p)
{
	dis_query *q;
	dis_filter *f;
	int rc;

	if ((rc = dis_query_new(p->schema, &q)))
		return rc;
	rc = dis_query_add_filter(q, &f);
	for (size_t i = 0; i < p->nstmts && !rc; i++)
		rc = dis_filter_type(
			f, dis_schema_type_name(p->schema,
						(size_t)p->stmts[i].type));
	if (!rc)
		rc = dis_query_check(q);
	if (rc) {
		dis_query_free(q);
		return rc;
	}
	dis_query_free(p->query);
	p->query = q;
	return 0;
}

static int grow_scratch(dis_projection *p, size_t n)
{
	dis__buf *s;
	const char **v;

	if (n <= p->nscratch)
		return 0;
	s = realloc(p->scratch, n * sizeof(*s));
	if (!s)
		return DIS_ENOMEM;
	p->scratch = s;
	for (size_t i = p->nscratch; i < n; i++)
		dis__buf_init(&s[i]);
	p->nscratch = n;
	v = realloc(p->values, n * sizeof(*v));
	if (!v)
		return DIS_ENOMEM;
	p->values = v;
	return 0;
}

int dis_projection_on(dis_projection *p, const char *type, const char *sql)
{
	dis_event *proto;
	tstmt *s, st = {0};
	int t, rc;

	if (!p)
		return DIS_EINVAL;
	if (!type || !sql)
		return pfail(p, DIS_EINVAL, "type and sql are required");
	t = dis__schema_type_index(p->schema, type);
	if (t < 0)
		return pfail(p, DIS_ENOTFOUND, "unknown event type \"%s\"",
			     type);
	if ((rc = dis_event_new(p->schema, type, &proto)))
		return pfail(p, rc, "%s: cannot make an event of the type",
			     type);
	rc = compile_tmpl(p, type, t, dis_event_avro(proto), sql, &st.t);
	dis_event_free(proto);
	if (rc)
		return rc;
	st.type = t;
	st.source = dis__strdup(sql);
	s = realloc(p->stmts, (p->nstmts + 1) * sizeof(*s));
	if (!st.source || !s || grow_scratch(p, st.t.nparams)) {
		free(st.source);
		tmpl_free(&st.t);
		if (s)
			p->stmts = s;
		return pfail(p, DIS_ENOMEM, "out of memory");
	}
	p->stmts = s;
	p->stmts[p->nstmts++] = st;
	if ((rc = rebuild_query(p))) {
		p->nstmts--;
		free(st.source);
		tmpl_free(&p->stmts[p->nstmts].t);
		return pfail(p, rc, "building the projection's query");
	}
	return 0;
}

const dis_query *dis_projection_query(const dis_projection *p)
{
	return p ? p->query : NULL;
}

char *dis__projection_ddl(const dis_projection *p, const char *table)
{
	return p->ddl ? render(&p->ddl_t, table) : NULL;
}

char *dis__projection_sql(const dis_projection *p, size_t i, const char *table)
{
	return i < p->nstmts ? render(&p->stmts[i].t, table) : NULL;
}

const char *dis__projection_param(const dis_projection *p, size_t i, size_t n)
{
	if (i >= p->nstmts || n >= p->stmts[i].t.nparams)
		return NULL;
	return p->stmts[i].t.params[n].name;
}

/* ---- JSON ---- */

int dis_projection_to_json(const dis_projection *p, char **json)
{
	json_t *root, *on;
	json_free_t jfree;
	char *text;

	if (!p || !json)
		return DIS_EINVAL;
	root = json_object();
	on = json_array();
	if (!root || !on) {
		json_decref(root);
		json_decref(on);
		return DIS_ENOMEM;
	}
	json_object_set_new(root, "name", json_string(p->name));
	json_object_set_new(root, "ddl",
			    p->ddl ? json_string(p->ddl) : json_null());
	for (size_t i = 0; i < p->nstmts; i++) {
		json_t *o = json_object();

		if (!o)
			break;
		json_object_set_new(
			o, "type",
			json_string(dis_schema_type_name(
				p->schema, (size_t)p->stmts[i].type)));
		json_object_set_new(o, "sql", json_string(p->stmts[i].source));
		json_array_append_new(on, o);
	}
	json_object_set_new(root, "on", on);
	text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(root);
	if (!text)
		return DIS_ENOMEM;
	/* Ours to free with dis_free(), whatever allocator jansson uses. */
	json_get_alloc_funcs(NULL, &jfree);
	*json = dis__strdup(text);
	jfree(text);
	return *json ? 0 : DIS_ENOMEM;
}

int dis_projection_from_json(const dis_schema *schema, const char *json,
			     dis_projection **out, char *errbuf, size_t errlen)
{
	json_error_t jerr;
	json_t *root, *name, *ddl, *on, *item;
	dis_projection *p = NULL;
	size_t i;
	int rc;

	if (!schema || !json || !out) {
		dis__errf(errbuf, errlen, "schema, json and out are required");
		return DIS_EINVAL;
	}
	root = json_loads(json, 0, &jerr);
	if (!root) {
		dis__errf(errbuf, errlen, "projection definition: %s",
			  jerr.text);
		return DIS_EINVAL;
	}
	name = json_object_get(root, "name");
	ddl = json_object_get(root, "ddl");
	on = json_object_get(root, "on");
	if (!json_is_object(root) || !json_is_string(name) ||
	    !json_is_string(ddl) || !json_is_array(on)) {
		dis__errf(errbuf, errlen,
			  "projection definition: expected {\"name\", "
			  "\"ddl\", \"on\": [...]}");
		json_decref(root);
		return DIS_EINVAL;
	}
	rc = dis_projection_new(schema, json_string_value(name), &p, errbuf,
				errlen);
	if (!rc && (rc = dis_projection_set_ddl(p, json_string_value(ddl))))
		dis__errf(errbuf, errlen, "%s", p->errmsg);
	json_array_foreach(on, i, item) {
		json_t *type = json_object_get(item, "type");
		json_t *sql = json_object_get(item, "sql");

		if (rc)
			break;
		if (!json_is_string(type) || !json_is_string(sql)) {
			dis__errf(errbuf, errlen,
				  "projection definition: \"on\" holds "
				  "{\"type\", \"sql\"} objects");
			rc = DIS_EINVAL;
			break;
		}
		rc = dis_projection_on(p, json_string_value(type),
				       json_string_value(sql));
		if (rc)
			dis__errf(errbuf, errlen, "%s", p->errmsg);
	}
	json_decref(root);
	if (rc) {
		dis_projection_free(p);
		return rc;
	}
	*out = p;
	return 0;
}

/* ---- applying events ---- */

static const char hexdig[] = "0123456789abcdef";

static void put_hex(dis__buf *b, const void *data, size_t len)
{
	const unsigned char *u = data;

	dis__buf_puts(b, "\\x");
	for (size_t i = 0; i < len; i++) {
		char two[2] = {hexdig[u[i] >> 4], hexdig[u[i] & 15]};

		dis__buf_append(b, two, 2);
	}
}

static void put_double(dis__buf *b, double d)
{
	if (isnan(d))
		dis__buf_puts(b, "NaN");
	else if (isinf(d))
		dis__buf_puts(b, d > 0 ? "Infinity" : "-Infinity");
	else
		dis__buf_printf(b, "%.17g", d);
}

/* The text of an Avro value; *null when it is null. DIS_EINVAL: a string
 * holding a NUL byte. */
static int value_text(avro_value_t *v, dis__buf *b, bool *null)
{
	const char *s;
	const void *bytes;
	size_t len;
	int32_t i32;
	int64_t i64;
	float f;
	double d;
	int boolean, sym;
	avro_value_t branch;
	avro_schema_t sch;
	char *json;

	*null = false;
	switch (avro_value_get_type(v)) {
	case AVRO_STRING:
		if (avro_value_get_string(v, &s, &len))
			return DIS_ESERDE;
		/* PostgreSQL's text holds no NUL: libpq would send the
		 * string cut at it. */
		if (len > 1 && memchr(s, 0, len - 1))
			return DIS_EINVAL;
		dis__buf_append(b, s, len ? len - 1 : 0);
		return 0;
	case AVRO_BYTES:
		if (avro_value_get_bytes(v, &bytes, &len))
			return DIS_ESERDE;
		put_hex(b, bytes, len);
		return 0;
	case AVRO_FIXED:
		if (avro_value_get_fixed(v, &bytes, &len))
			return DIS_ESERDE;
		put_hex(b, bytes, len);
		return 0;
	case AVRO_INT32:
		if (avro_value_get_int(v, &i32))
			return DIS_ESERDE;
		dis__buf_printf(b, "%" PRId32, i32);
		return 0;
	case AVRO_INT64:
		if (avro_value_get_long(v, &i64))
			return DIS_ESERDE;
		dis__buf_printf(b, "%" PRId64, i64);
		return 0;
	case AVRO_FLOAT:
		if (avro_value_get_float(v, &f))
			return DIS_ESERDE;
		put_double(b, (double)f);
		return 0;
	case AVRO_DOUBLE:
		if (avro_value_get_double(v, &d))
			return DIS_ESERDE;
		put_double(b, d);
		return 0;
	case AVRO_BOOLEAN:
		if (avro_value_get_boolean(v, &boolean))
			return DIS_ESERDE;
		dis__buf_puts(b, boolean ? "true" : "false");
		return 0;
	case AVRO_NULL: *null = true; return 0;
	case AVRO_ENUM:
		sch = avro_value_get_schema(v);
		if (avro_value_get_enum(v, &sym) || !sch)
			return DIS_ESERDE;
		s = avro_schema_enum_get(sch, sym);
		if (!s)
			return DIS_ESERDE;
		dis__buf_puts(b, s);
		return 0;
	case AVRO_UNION:
		if (avro_value_get_current_branch(v, &branch))
			return DIS_ESERDE;
		return value_text(&branch, b, null);
	default:
		if (avro_value_to_json(v, 1, &json))
			return DIS_ESERDE;
		dis__buf_puts(b, json);
		free(json);
		return 0;
	}
}

/* Renders the statement for `table` (cached) and binds its parameters
 * from `ev` into p->values. */
static int prepare_stmt(dis_projection *p, tstmt *st, const char *table,
			const dis_event *ev)
{
	avro_value_t *rec = dis_event_avro((dis_event *)ev);

	if (!st->rendered || strcmp(st->rendered_for, table)) {
		char *r = render(&st->t, table);

		if (!r)
			return pfail(p, DIS_ENOMEM, "out of memory");
		free(st->rendered);
		st->rendered = r;
		snprintf(st->rendered_for, sizeof(st->rendered_for), "%s",
			 table);
	}
	for (size_t i = 0; i < st->t.nparams; i++) {
		const tparam *tp = &st->t.params[i];
		dis__buf *b = &p->scratch[i];
		bool null = false;
		avro_value_t f;

		dis__buf_reset(b);
		switch (tp->kind) {
		case P_EVENT_ID:
			dis__buf_printf(b, "%" PRId64, dis_event_id(ev));
			break;
		case P_EVENT_TYPE: dis__buf_puts(b, dis_event_type(ev)); break;
		case P_FIELD: {
			int rc = avro_value_get_by_index(rec, tp->field, &f,
							 NULL);

			if (!rc)
				rc = value_text(&f, b, &null);
			if (rc)
				return pfail(p, DIS_ESERDE,
					     "projection %s: event %" PRId64
					     " (%s): %s %s",
					     p->name, dis_event_id(ev),
					     dis_event_type(ev),
					     rc == DIS_EINVAL
						     ? "a NUL byte (PostgreSQL "
						       "text cannot hold one) "
						       "in field"
						     : "cannot read field",
					     tp->name);
			break;
		}
		}
		p->values[i] = null ? NULL : dis__buf_cstr(b);
		if (!null && !p->values[i])
			return pfail(p, DIS_ENOMEM, "out of memory");
	}
	return 0;
}

/*
 * Runs the statements for `ev`: queued in the batch (pipelined, no round
 * trip per event) when `batch` is given, else one by one on `conn`.
 */
static int apply(dis_projection *p, PGconn *conn, dis_batch *batch,
		 const char *table, const dis_event *ev)
{
	int t, rc;

	if (dis_event_schema(ev) != p->schema)
		return pfail(p, DIS_EINVAL,
			     "projection %s: the event belongs to another "
			     "schema",
			     p->name);
	if (table && (strlen(table) > 63 || strchr(table, '"')))
		return pfail(p, DIS_EINVAL, "bad table name");
	t = dis__event_type_index(ev);
	for (size_t i = 0; i < p->nstmts; i++) {
		tstmt *st = &p->stmts[i];
		PGresult *res;
		ExecStatusType rs;

		if (st->type != t)
			continue;
		if ((rc = prepare_stmt(p, st, table ? table : p->name, ev)))
			return rc;
		if (batch) {
			rc = dis_batch_exec(batch, st->rendered,
					    (int)st->t.nparams, p->values, NULL,
					    NULL);
			if (rc)
				return pfail(p, rc,
					     "projection %s: event %" PRId64
					     " (%s): cannot queue a statement",
					     p->name, dis_event_id(ev),
					     dis_event_type(ev));
			continue;
		}
		res = PQexecParams(conn, st->rendered, (int)st->t.nparams, NULL,
				   p->values, NULL, NULL, 0);
		rs = PQresultStatus(res);
		if (rs != PGRES_COMMAND_OK && rs != PGRES_TUPLES_OK) {
			char what[160];

			snprintf(what, sizeof(what),
				 "projection %s: event %" PRId64 " (%s)",
				 p->name, dis_event_id(ev), dis_event_type(ev));
			rc = dis__pq_fail(conn, res, what, p->errmsg,
					  sizeof(p->errmsg));
			PQclear(res);
			return rc;
		}
		PQclear(res);
	}
	return 0;
}

int dis_projection_apply(dis_projection *p, PGconn *conn, const char *table,
			 const dis_event *ev)
{
	if (!p || !conn || !ev)
		return DIS_EINVAL;
	return apply(p, conn, NULL, table, ev);
}

int dis__projection_apply_batch(dis_projection *p, dis_batch *batch,
				const char *table, const dis_event *ev)
{
	return apply(p, NULL, batch, table, ev);
}

int dis_projection_handler(void *arg, dis_batch *batch, const dis_event *ev)
{
	dis_projection *p = arg;
	int rc;

	if (!p || !batch || !ev)
		return DIS_EINVAL;
	rc = apply(p, NULL, batch, NULL, ev);
	if (rc)
		return dis_batch_fail(batch, rc, "%s", p->errmsg);
	return 0;
}

int dis_projection_attach(dis_projection *p, dis_runtime *rt,
			  const dis_listener_config *cfg)
{
	int rc;

	if (!p || !rt)
		return DIS_EINVAL;
	if (!p->query)
		return pfail(p, DIS_EINVAL,
			     "projection %s has no statements "
			     "(dis_projection_on)",
			     p->name);
	rc = dis_runtime_add_listener(rt, p->name, p->query,
				      dis_projection_handler, p, cfg);
	if (rc)
		return pfail(p, rc, "%s", dis_runtime_errmsg(rt));
	return 0;
}

/* ---- install ---- */

int64_t dis__projection_lock_key(const char *name)
{
	char key[128];

	snprintf(key, sizeof(key), "dis-projection:%s", name);
	return (int64_t)dis__hash64(key, strlen(key), 0x70726f6a);
}

int dis__projection_migrate(PGconn *conn, char *err, size_t errlen)
{
	int rc = dis__pq_exec(conn,
			      "SELECT pg_advisory_xact_lock(" INSTALL_LOCK_KEY
			      ")",
			      err, errlen);

	if (!rc)
		rc = dis__pq_exec(
			conn,
			"CREATE TABLE IF NOT EXISTS " DIS__PROJECTION_TABLE " ("
			" name TEXT PRIMARY KEY,"
			" definition TEXT NOT NULL,"
			" fingerprint TEXT NOT NULL,"
			" generation INT NOT NULL DEFAULT 1,"
			" installed_at TIMESTAMPTZ NOT NULL DEFAULT now(),"
			" rebuilt_at TIMESTAMPTZ)",
			err, errlen);
	return rc;
}

/* One row's first column, or NULL (into *out, malloc'd). */
static int query_value(PGconn *conn, const char *sql, int n,
		       const char *const *vals, char **out, char *err,
		       size_t errlen)
{
	PGresult *res = PQexecParams(conn, sql, n, NULL, vals, NULL, NULL, 0);
	int rc = 0;

	*out = NULL;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		rc = dis__pq_fail(conn, res, "query", err, errlen);
	} else if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0)) {
		*out = dis__strdup(PQgetvalue(res, 0, 0));
		if (!*out)
			rc = DIS_ENOMEM;
	}
	PQclear(res);
	return rc;
}

int dis_projection_install(dis_projection *p, dis_store *store)
{
	PGconn *conn;
	char *json = NULL, *have_table = NULL, *have_fp = NULL, *ddl = NULL;
	char fp[24], quoted[72];
	int rc, was;

	if (!p || !store)
		return DIS_EINVAL;
	if (!p->ddl)
		return pfail(
			p, DIS_EINVAL,
			"projection %s has no DDL (dis_projection_set_ddl)",
			p->name);
	if (!p->query)
		return pfail(p, DIS_EINVAL,
			     "projection %s has no statements "
			     "(dis_projection_on)",
			     p->name);
	conn = dis_store_conn(store);
	if (PQtransactionStatus(conn) != PQTRANS_IDLE)
		return pfail(p, DIS_ESTATE,
			     "install needs a connection outside a "
			     "transaction");
	if ((rc = dis_projection_to_json(p, &json)))
		return pfail(p, rc, "out of memory");
	snprintf(fp, sizeof(fp), "%016" PRIx64,
		 dis__hash64(json, strlen(json), 0));
	snprintf(quoted, sizeof(quoted), "\"%s\"", p->name);
	was = PQisnonblocking(conn);
	if (was)
		PQsetnonblocking(conn, 0);
	rc = dis__pq_exec(conn, "BEGIN", p->errmsg, sizeof(p->errmsg));
	if (!rc)
		rc = dis__projection_migrate(conn, p->errmsg,
					     sizeof(p->errmsg));
	if (!rc) {
		const char *v[1] = {quoted};

		rc = query_value(conn, "SELECT to_regclass($1)::text", 1, v,
				 &have_table, p->errmsg, sizeof(p->errmsg));
	}
	if (!rc) {
		const char *v[1] = {p->name};

		rc = query_value(
			conn,
			"SELECT fingerprint FROM " DIS__PROJECTION_TABLE
			" WHERE name = $1",
			1, v, &have_fp, p->errmsg, sizeof(p->errmsg));
	}
	if (!rc && !have_table) {
		ddl = dis__projection_ddl(p, p->name);
		rc = ddl ? dis__pq_exec(conn, ddl, p->errmsg, sizeof(p->errmsg))
			 : pfail(p, DIS_ENOMEM, "out of memory");
		if (rc) {
			char keep[DIS_ERRMSG_LEN];

			memcpy(keep, p->errmsg, sizeof(keep));
			pfail(p, rc, "projection %s: creating the table: %s",
			      p->name, keep);
		}
	}
	if (!rc) {
		const char *v[3] = {p->name, json, fp};
		PGresult *res = PQexecParams(
			conn,
			"INSERT INTO " DIS__PROJECTION_TABLE
			" (name, definition, fingerprint) VALUES ($1, $2, $3)"
			" ON CONFLICT (name) DO UPDATE SET"
			" definition = EXCLUDED.definition,"
			" fingerprint = EXCLUDED.fingerprint,"
			" installed_at = now()"
			" WHERE " DIS__PROJECTION_TABLE ".fingerprint <>"
			" EXCLUDED.fingerprint",
			3, NULL, v, NULL, NULL, 0);

		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			rc = dis__pq_fail(conn, res, "recording the projection",
					  p->errmsg, sizeof(p->errmsg));
		PQclear(res);
	}
	if (!rc)
		rc = dis__pq_exec(conn, "COMMIT", p->errmsg, sizeof(p->errmsg));
	if (rc && PQtransactionStatus(conn) != PQTRANS_IDLE)
		PQclear(PQexec(conn, "ROLLBACK"));
	if (was)
		PQsetnonblocking(conn, 1);
	if (!rc && have_table && have_fp && strcmp(have_fp, fp))
		plog(p, DIS_LOG_WARN,
		     "projection %s: the definition changed since its table "
		     "was built; `disctl rebuild %s` applies it to the "
		     "events already projected",
		     p->name, p->name);
	free(json);
	free(have_table);
	free(have_fp);
	free(ddl);
	return rc;
}
