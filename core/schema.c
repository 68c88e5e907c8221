/*
 * Event schema: loads an Avro .avsc, checks it and indexes its event types,
 * domain ids and streams.
 *
 * Loading happens in three passes:
 *   1. jansson parses the text; our own walk checks the Avro structure
 *      (names, references, unions, nesting depth, no recursion) so that
 *      avro-c's parser only ever sees schemas it accepts, and every mistake
 *      gets a precise message;
 *   2. avro-c parses the same text; a walk over its result and the JSON side
 *      by side pairs every record and enum with its JSON definition, which
 *      keeps the field defaults and our custom attributes;
 *   3. event types, ids and streams are read from the top-level records and
 *      a default-filled template value is built for each type (this checks
 *      every default against its field's type).
 *
 * Decisions:
 *   - The event type is the record's simple name (without namespace); two
 *     records with the same simple name in different namespaces are an
 *     error.
 *   - Recursive types are rejected (an event payload never needs them, and
 *     they would let data drive recursion depth).
 *   - A domain id field may be optional: ["null", T] or [T, "null"] with T
 *     one of the id types; a null value means the event has no value for
 *     that id (NULL column).
 *   - Id names are compared case-insensitively against the reserved names
 *     and against each other (PostgreSQL folds unquoted identifiers).
 */
#include "core-internal.h"
#include "serde-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ID_ATTR "disintegrate.id"
#define STREAMS_ATTR "disintegrate.streams"

struct schema_type {
	char *name;
	avro_schema_t rec;
	json_t *json;
	avro_value_iface_t *iface;
	avro_value_t tmpl;
	int *ids;
	size_t nids;
	dis__scan_op *plan; /* its fields for dis__avro_scan_plan */
	size_t nplan;
};

struct schema_id {
	char *name;
	dis_id_type type;
};

struct schema_stream {
	char *name;
	const char **types; /* point into the schema's type names */
	size_t n;
};

struct schema_named {
	avro_schema_t avro;
	json_t *json;
};

struct dis_schema {
	char *json;
	json_t *root;
	avro_schema_t avro;
	/* One generic class for the whole schema: avro-c resolves a reference
	 * to a named type only within the class_from_schema call that built
	 * the type, so each event type's class is taken from this one. */
	avro_value_iface_t *master;
	char fingerprint[17];
	struct schema_type *types;
	size_t ntypes;
	struct schema_id *ids;
	size_t nids;
	struct schema_stream *streams;
	size_t nstreams;
	struct schema_named *named;
	size_t nnamed;
};

static const char *const reserved_ids[] = {
	"event_id",
	"event_type",
	"payload",
	"inserted_at",
	"tx",
	"schema_id",
	/* PostgreSQL's system columns: no table may have a column so named */
	"xmin",
	"xmax",
	"cmin",
	"cmax",
	"ctid",
	"tableoid",
	"oid",
};

/* Most values (record fields, union headers, leaves) one event may hold
 * outside arrays and maps; bounds the work and memory of one value. */
#define MAX_NODES ((size_t)1 << 16)

/* ---- identifiers ---- */

int dis_identifier_check(const char *name, char *errbuf, size_t errlen)
{
	size_t i, len;

	if (!name) {
		dis__errf(errbuf, errlen, "identifier is missing");
		return DIS_EINVAL;
	}
	len = strlen(name);
	if (len == 0) {
		dis__errf(errbuf, errlen, "identifier is empty");
		return DIS_EINVAL;
	}
	if (len > 63) {
		dis__errf(errbuf, errlen,
			  "identifier \"%.63s...\" is %zu bytes long, longer "
			  "than 63",
			  name, len);
		return DIS_EINVAL;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			  c == '_' || (i > 0 && c >= '0' && c <= '9');

		if (!ok) {
			dis__errf(errbuf, errlen,
				  "identifier \"%s\" has an invalid character "
				  "at byte %zu (allowed: letters, digits and "
				  "'_', not starting with a digit)",
				  name, i);
			return DIS_EINVAL;
		}
	}
	return 0;
}

/* Avro's name rule: like ours without the length limit. */
static bool avro_id_ok(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      c == '_' || (i > 0 && c >= '0' && c <= '9')))
			return false;
	}
	return true;
}

/* Each dot-separated part of `s` is an Avro name. */
static bool avro_fullname_ok(const char *s)
{
	const char *dot;

	for (;;) {
		dot = strchr(s, '.');
		if (!dot)
			return avro_id_ok(s, strlen(s));
		if (!avro_id_ok(s, (size_t)(dot - s)))
			return false;
		s = dot + 1;
	}
}

static bool reserved_id(const char *name)
{
	if (strncasecmp(name, "dis_", 4) == 0)
		return true;
	for (size_t i = 0; i < sizeof(reserved_ids) / sizeof(*reserved_ids);
	     i++)
		if (strcasecmp(name, reserved_ids[i]) == 0)
			return true;
	return false;
}

static bool primitive_name(const char *s)
{
	static const char *const prim[] = {
		"null",  "boolean", "int",   "long",
		"float", "double",  "bytes", "string",
	};

	for (size_t i = 0; i < sizeof(prim) / sizeof(*prim); i++)
		if (strcmp(s, prim[i]) == 0)
			return true;
	return false;
}

/* ---- pass 1: structural check on the JSON ---- */

enum def_kind { DEF_RECORD, DEF_ENUM, DEF_FIXED };

struct def {
	char *fullname;
	enum def_kind kind;
	bool busy;    /* a record whose fields are being walked */
	size_t nodes; /* values in one instance, see MAX_NODES */
};

struct check {
	struct def *defs;
	size_t ndefs, cap;
	char *err;
	size_t errlen;
	const char *rec;   /* innermost record being walked, for messages */
	const char *field; /* its field being walked */
	int rc;
};

static const char *kind_name(enum def_kind k)
{
	switch (k) {
	case DEF_RECORD: return "record";
	case DEF_ENUM: return "enum";
	default: return "fixed";
	}
}

static int check_fail(struct check *c, int rc, const char *fmt, ...)
	DIS_PRINTF(3, 4);

static int check_fail(struct check *c, int rc, const char *fmt, ...)
{
	char msg[DIS_ERRMSG_LEN];
	va_list ap;

	va_start(ap, fmt);
	dis__verrf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->rec && c->field)
		dis__errf(c->err, c->errlen,
			  "invalid Avro schema: %s (in record %s, field %s)",
			  msg, c->rec, c->field);
	else if (c->rec)
		dis__errf(c->err, c->errlen,
			  "invalid Avro schema: %s (in record %s)", msg,
			  c->rec);
	else
		dis__errf(c->err, c->errlen, "invalid Avro schema: %s", msg);
	c->rc = rc;
	return rc;
}

static char *qualify(const char *name, const char *ns)
{
	dis__buf b;

	dis__buf_init(&b);
	if (ns && *ns && !strchr(name, '.'))
		dis__buf_printf(&b, "%s.%s", ns, name);
	else
		dis__buf_puts(&b, name);
	return dis__buf_take(&b);
}

static struct def *find_def(struct check *c, const char *fullname)
{
	for (size_t i = 0; i < c->ndefs; i++)
		if (strcmp(c->defs[i].fullname, fullname) == 0)
			return &c->defs[i];
	return NULL;
}

/*
 * A union branch's identity for the duplicate check: the primitive or
 * container kind, or the full name of a named type.
 */
static char *branch_key(json_t *j, const char *ns)
{
	const char *t = NULL;

	if (json_is_string(j))
		t = json_string_value(j);
	else if (json_is_object(j))
		t = json_string_value(json_object_get(j, "type"));
	if (!t)
		return NULL;
	if (primitive_name(t) || strcmp(t, "array") == 0 ||
	    strcmp(t, "map") == 0)
		return dis__strdup(t);
	if (json_is_object(j) &&
	    (strcmp(t, "record") == 0 || strcmp(t, "enum") == 0 ||
	     strcmp(t, "fixed") == 0)) {
		const char *name =
			json_string_value(json_object_get(j, "name"));
		json_t *nsj = json_object_get(j, "namespace");

		if (!name)
			return NULL;
		if (json_is_string(nsj) && !strchr(name, '.'))
			ns = json_string_value(nsj);
		return qualify(name, ns);
	}
	return qualify(t, ns);
}

static int walk_check(struct check *c, json_t *j, const char *ns, int depth,
		      size_t *nodes);

static int check_ref(struct check *c, const char *name, const char *ns,
		     size_t *nodes)
{
	char *full;
	struct def *d;

	*nodes = 1;
	if (primitive_name(name))
		return 0;
	full = qualify(name, ns);
	if (!full)
		return check_fail(c, DIS_ENOMEM, "out of memory");
	d = find_def(c, full);
	if (!d) {
		check_fail(c, DIS_ESCHEMA,
			   "unknown type \"%s\" (named types must be defined "
			   "before they are used)",
			   full);
		free(full);
		return DIS_ESCHEMA;
	}
	if (d->busy) {
		check_fail(c, DIS_ESCHEMA,
			   "recursive type \"%s\" is not supported", full);
		free(full);
		return DIS_ESCHEMA;
	}
	*nodes = d->nodes;
	free(full);
	return 0;
}

/*
 * Registers the named type defined by object `j`; *space receives its
 * namespace (for its fields), owned by the def list entry's name.
 */
static int define_named(struct check *c, json_t *j, enum def_kind kind,
			const char *ns, char **fullname_out)
{
	json_t *namej = json_object_get(j, "name");
	json_t *nsj = json_object_get(j, "namespace");
	const char *name, *dot;
	char *full;

	if (!json_is_string(namej))
		return check_fail(c, DIS_ESCHEMA,
				  "a %s needs a \"name\" string",
				  kind_name(kind));
	name = json_string_value(namej);
	if (nsj && !json_is_string(nsj))
		return check_fail(c, DIS_ESCHEMA,
				  "%s \"%s\": \"namespace\" must be a string",
				  kind_name(kind), name);
	if (strchr(name, '.'))
		full = dis__strdup(name);
	else if (nsj)
		full = qualify(name, json_string_value(nsj));
	else
		full = qualify(name, ns);
	if (!full)
		return check_fail(c, DIS_ENOMEM, "out of memory");
	dot = strrchr(full, '.');
	if (!avro_fullname_ok(full) || primitive_name(dot ? dot + 1 : full)) {
		check_fail(c, DIS_ESCHEMA,
			   "%s name \"%s\" is not a valid "
			   "Avro name",
			   kind_name(kind), full);
		free(full);
		return DIS_ESCHEMA;
	}
	if (find_def(c, full)) {
		check_fail(c, DIS_ESCHEMA, "type name \"%s\" is defined twice",
			   full);
		free(full);
		return DIS_ESCHEMA;
	}
	if (c->ndefs == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		struct def *p = realloc(c->defs, cap * sizeof(*p));

		if (!p) {
			free(full);
			return check_fail(c, DIS_ENOMEM, "out of memory");
		}
		c->defs = p;
		c->cap = cap;
	}
	c->defs[c->ndefs].fullname = full;
	c->defs[c->ndefs].kind = kind;
	c->defs[c->ndefs].busy = kind == DEF_RECORD;
	c->defs[c->ndefs].nodes = 1;
	c->ndefs++;
	*fullname_out = full;
	return 0;
}

static int check_record(struct check *c, json_t *j, const char *ns, int depth,
			size_t *nodes)
{
	const char *saved_rec = c->rec, *saved_field = c->field;
	json_t *fields, *f;
	char *full, *space;
	const char *dot;
	size_t i, k, idx, sub, total = 1;
	int rc;

	rc = define_named(c, j, DEF_RECORD, ns, &full);
	if (rc)
		return rc;
	idx = c->ndefs - 1;
	dot = strrchr(full, '.');
	space = dot ? strndup(full, (size_t)(dot - full)) : NULL;
	if (dot && !space)
		return check_fail(c, DIS_ENOMEM, "out of memory");
	fields = json_object_get(j, "fields");
	c->rec = full;
	c->field = NULL;
	if (!json_is_array(fields)) {
		rc = check_fail(c, DIS_ESCHEMA,
				"a record needs a \"fields\" "
				"array");
		goto out;
	}
	json_array_foreach(fields, i, f) {
		json_t *fname = json_object_get(f, "name");
		json_t *ftype = json_object_get(f, "type");
		const char *fn;

		c->field = NULL;
		if (!json_is_object(f)) {
			rc = check_fail(c, DIS_ESCHEMA,
					"field %zu is not an "
					"object",
					i);
			goto out;
		}
		if (!json_is_string(fname)) {
			rc = check_fail(c, DIS_ESCHEMA,
					"field %zu needs a "
					"\"name\" string",
					i);
			goto out;
		}
		fn = json_string_value(fname);
		if (!avro_id_ok(fn, strlen(fn))) {
			rc = check_fail(c, DIS_ESCHEMA,
					"field name \"%s\" is "
					"not a valid Avro name",
					fn);
			goto out;
		}
		for (k = 0; k < i; k++) {
			json_t *other = json_object_get(
				json_array_get(fields, k), "name");

			if (strcmp(json_string_value(other), fn) == 0) {
				rc = check_fail(c, DIS_ESCHEMA,
						"field \"%s\" "
						"is declared twice",
						fn);
				goto out;
			}
		}
		c->field = fn;
		if (!ftype) {
			rc = check_fail(c, DIS_ESCHEMA,
					"the field needs a "
					"\"type\"");
			goto out;
		}
		rc = walk_check(c, ftype, space, depth + 1, &sub);
		if (rc)
			goto out;
		total += sub;
		if (total > MAX_NODES) {
			rc = check_fail(c, DIS_ESCHEMA,
					"the record is too "
					"large: one value of it holds more "
					"than %zu values",
					MAX_NODES);
			goto out;
		}
	}
	c->defs[idx].busy = false;
	c->defs[idx].nodes = total;
	*nodes = total;
out:
	free(space);
	c->rec = saved_rec;
	c->field = saved_field;
	return rc;
}

static int check_enum(struct check *c, json_t *j, const char *ns)
{
	json_t *syms = json_object_get(j, "symbols");
	json_t *dflt = json_object_get(j, "default");
	json_t *s;
	char *full;
	size_t i, k;
	int rc;

	rc = define_named(c, j, DEF_ENUM, ns, &full);
	if (rc)
		return rc;
	if (!json_is_array(syms) || json_array_size(syms) == 0)
		return check_fail(c, DIS_ESCHEMA,
				  "enum \"%s\" needs a "
				  "non-empty \"symbols\" array",
				  full);
	if (json_array_size(syms) > INT32_MAX)
		return check_fail(c, DIS_ESCHEMA,
				  "enum \"%s\" has too many "
				  "symbols",
				  full);
	json_array_foreach(syms, i, s) {
		const char *v = json_string_value(s);

		if (!v || !avro_id_ok(v, strlen(v)))
			return check_fail(c, DIS_ESCHEMA,
					  "enum \"%s\": symbol "
					  "%zu is not a valid Avro name",
					  full, i);
		for (k = 0; k < i; k++)
			if (strcmp(json_string_value(json_array_get(syms, k)),
				   v) == 0)
				return check_fail(c, DIS_ESCHEMA,
						  "enum \"%s\": "
						  "symbol \"%s\" is listed "
						  "twice",
						  full, v);
	}
	if (dflt) {
		bool found = false;

		json_array_foreach(syms, i, s)
			if (json_is_string(dflt) &&
			    strcmp(json_string_value(s),
				   json_string_value(dflt)) == 0)
				found = true;
		if (!found)
			return check_fail(c, DIS_ESCHEMA,
					  "enum \"%s\": "
					  "\"default\" is not one of its "
					  "symbols",
					  full);
	}
	return 0;
}

static int check_fixed(struct check *c, json_t *j, const char *ns,
		       size_t *nodes)
{
	json_t *size = json_object_get(j, "size");
	char *full;
	int rc;

	rc = define_named(c, j, DEF_FIXED, ns, &full);
	if (rc)
		return rc;
	/* size 0 is refused: avro-c cannot decode it */
	if (!json_is_integer(size) || json_integer_value(size) < 1 ||
	    json_integer_value(size) > DIS__FIXED_MAX)
		return check_fail(c, DIS_ESCHEMA,
				  "fixed \"%s\" needs an "
				  "integer \"size\" from 1 to %lld",
				  full, (long long)DIS__FIXED_MAX);
	/* the bytes are held inline: count them against MAX_NODES */
	*nodes = 1 + (size_t)json_integer_value(size) / 16;
	c->defs[c->ndefs - 1].nodes = *nodes;
	return 0;
}

static int check_union(struct check *c, json_t *j, const char *ns, int depth,
		       size_t *nodes)
{
	char **keys;
	size_t i, k, sub, n = json_array_size(j);
	json_t *b;
	int rc = 0;

	*nodes = 1;
	if (n == 0)
		return check_fail(c, DIS_ESCHEMA,
				  "a union needs at least one "
				  "branch");
	keys = calloc(n, sizeof(*keys));
	if (!keys)
		return check_fail(c, DIS_ENOMEM, "out of memory");
	json_array_foreach(j, i, b) {
		if (json_is_array(b)) {
			rc = check_fail(c, DIS_ESCHEMA,
					"a union may not "
					"directly contain a union");
			break;
		}
		rc = walk_check(c, b, ns, depth + 1, &sub);
		if (rc)
			break;
		if (sub + 1 > *nodes)
			*nodes = sub + 1;
		keys[i] = branch_key(b, ns);
		if (!keys[i]) {
			rc = check_fail(c, DIS_ENOMEM, "out of memory");
			break;
		}
		for (k = 0; k < i; k++)
			if (strcmp(keys[k], keys[i]) == 0)
				break;
		if (k < i) {
			rc = check_fail(c, DIS_ESCHEMA,
					"a union lists type "
					"\"%s\" twice",
					keys[i]);
			break;
		}
	}
	for (i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
	return rc;
}

static int walk_check(struct check *c, json_t *j, const char *ns, int depth,
		      size_t *nodes)
{
	const char *t;
	json_t *sub;
	size_t items;

	*nodes = 1;
	if (depth > DIS__SCHEMA_MAX_DEPTH)
		return check_fail(c, DIS_ESCHEMA,
				  "types nest deeper than %d "
				  "levels",
				  DIS__SCHEMA_MAX_DEPTH);
	if (json_is_string(j))
		return check_ref(c, json_string_value(j), ns, nodes);
	if (json_is_array(j))
		return check_union(c, j, ns, depth, nodes);
	if (!json_is_object(j))
		return check_fail(c, DIS_ESCHEMA,
				  "a type must be a string, an "
				  "array (union) or an object");
	t = json_string_value(json_object_get(j, "type"));
	if (!t)
		return check_fail(c, DIS_ESCHEMA,
				  "a type object needs a "
				  "\"type\" string");
	if (strcmp(t, "record") == 0)
		return check_record(c, j, ns, depth, nodes);
	if (strcmp(t, "enum") == 0)
		return check_enum(c, j, ns);
	if (strcmp(t, "fixed") == 0)
		return check_fixed(c, j, ns, nodes);
	if (strcmp(t, "array") == 0 || strcmp(t, "map") == 0) {
		bool arr = t[0] == 'a';

		sub = json_object_get(j, arr ? "items" : "values");
		if (!sub)
			return check_fail(c, DIS_ESCHEMA, "%s needs \"%s\"",
					  arr ? "an array" : "a map",
					  arr ? "items" : "values");
		/* elements are separate allocations: the array is one */
		return walk_check(c, sub, ns, depth + 1, &items);
	}
	return check_ref(c, t, ns, nodes);
}

/* A top-level union branch must define its record inline. */
static bool branch_is_record(json_t *b)
{
	const char *t = json_string_value(json_object_get(b, "type"));

	return json_is_object(b) && t && strcmp(t, "record") == 0;
}

static const char *json_kind(json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	default: return "null";
	}
}

static int check_top(json_t *root, char *err, size_t errlen)
{
	struct check c;
	json_t *b;
	size_t i, nodes;
	int rc = 0;

	memset(&c, 0, sizeof(c));
	c.err = err;
	c.errlen = errlen;
	if (json_is_object(root)) {
		const char *t =
			json_string_value(json_object_get(root, "type"));

		if (!t || strcmp(t, "record") != 0) {
			dis__errf(err, errlen,
				  "the schema must be a record or "
				  "a union (JSON array) of records; its top "
				  "level is a \"%s\" type",
				  t ? t : "?");
			return DIS_ESCHEMA;
		}
		rc = walk_check(&c, root, NULL, 0, &nodes);
	} else if (json_is_array(root)) {
		if (json_array_size(root) == 0) {
			dis__errf(err, errlen,
				  "the schema is an empty union: "
				  "it declares no event type");
			return DIS_ESCHEMA;
		}
		json_array_foreach(root, i, b) {
			if (!branch_is_record(b)) {
				dis__errf(err, errlen,
					  "top-level union branch "
					  "%zu is not a record definition: "
					  "every event type must be a record "
					  "defined at the top level",
					  i);
				return DIS_ESCHEMA;
			}
		}
		rc = walk_check(&c, root, NULL, 0, &nodes);
	} else {
		dis__errf(err, errlen,
			  "the schema must be a record or a union "
			  "(JSON array) of records, not %s",
			  json_kind(root));
		return DIS_ESCHEMA;
	}
	for (i = 0; i < c.ndefs; i++)
		free(c.defs[i].fullname);
	free(c.defs);
	return rc;
}

/* ---- pass 2: pair avro-c's schema with its JSON ---- */

avro_schema_t dis__avro_deref(avro_schema_t s)
{
	while (s && is_avro_link(s))
		s = avro_schema_link_target(s);
	return s;
}

static int add_named(dis_schema *s, avro_schema_t a, json_t *j)
{
	struct schema_named *p;

	p = realloc(s->named, (s->nnamed + 1) * sizeof(*p));
	if (!p)
		return DIS_ENOMEM;
	s->named = p;
	p[s->nnamed].avro = a;
	p[s->nnamed].json = j;
	s->nnamed++;
	return 0;
}

/* A record holding no value at all (no fields, or only such records). */
static bool empty_record(avro_schema_t a)
{
	a = dis__avro_deref(a);
	if (!is_avro_record(a))
		return false;
	for (size_t i = 0; i < avro_schema_record_size(a); i++)
		if (!empty_record(
			    avro_schema_record_field_get_by_index(a, (int)i)))
			return false;
	return true;
}

/* pair_walk found an array of empty records (avro-c cannot append to
 * an array of zero-sized items) */
#define PAIR_EMPTY_ITEMS 1

/*
 * `j` is a schema JSON already checked in pass 1 and `a` its avro-c form.
 * Returns 0, PAIR_EMPTY_ITEMS or a DIS_E* code.
 */
static int pair_walk(dis_schema *s, avro_schema_t a, json_t *j)
{
	size_t i, n;
	int rc;

	if (!a || is_avro_link(a) || json_is_string(j))
		return 0;
	switch (avro_typeof(a)) {
	case AVRO_RECORD: {
		json_t *fields = json_object_get(j, "fields");

		rc = add_named(s, a, j);
		if (rc)
			return rc;
		n = avro_schema_record_size(a);
		if (n != json_array_size(fields))
			return DIS_ESCHEMA;
		for (i = 0; i < n; i++) {
			json_t *f = json_array_get(fields, i);

			rc = pair_walk(s,
				       avro_schema_record_field_get_by_index(
					       a, (int)i),
				       json_object_get(f, "type"));
			if (rc)
				return rc;
		}
		return 0;
	}
	case AVRO_ENUM: return add_named(s, a, j);
	case AVRO_UNION:
		n = avro_schema_union_size(a);
		if (!json_is_array(j) || n != json_array_size(j))
			return DIS_ESCHEMA;
		for (i = 0; i < n; i++) {
			rc = pair_walk(s, avro_schema_union_branch(a, (int)i),
				       json_array_get(j, i));
			if (rc)
				return rc;
		}
		return 0;
	case AVRO_ARRAY:
		if (empty_record(avro_schema_array_items(a)))
			return PAIR_EMPTY_ITEMS;
		return pair_walk(s, avro_schema_array_items(a),
				 json_object_get(j, "items"));
	case AVRO_MAP:
		return pair_walk(s, avro_schema_map_values(a),
				 json_object_get(j, "values"));
	default: return 0;
	}
}

json_t *dis__schema_named_json(const dis_schema *schema, avro_schema_t named)
{
	named = dis__avro_deref(named);
	for (size_t i = 0; i < schema->nnamed; i++)
		if (schema->named[i].avro == named)
			return schema->named[i].json;
	return NULL;
}

/* ---- pass 3: types, ids, streams ---- */

/* A short description of a field's JSON type for messages. */
static void describe_type(json_t *t, char *buf, size_t len)
{
	if (json_is_string(t)) {
		dis__errf(buf, len, "%s", json_string_value(t));
	} else if (json_is_array(t)) {
		dis__errf(buf, len, "a union of %zu types", json_array_size(t));
	} else {
		const char *k = json_string_value(json_object_get(t, "type"));
		const char *n = json_string_value(json_object_get(t, "name"));
		const char *lt =
			json_string_value(json_object_get(t, "logicalType"));

		if (n)
			dis__errf(buf, len, "%s %s", k ? k : "?", n);
		else if (lt)
			dis__errf(buf, len, "%s (%s)", k ? k : "?", lt);
		else
			dis__errf(buf, len, "%s", k ? k : "?");
	}
}

/* The id type of a plain (non-union) field type JSON, or 0. */
static dis_id_type plain_id_type(json_t *t)
{
	const char *k, *lt;

	if (json_is_string(t)) {
		k = json_string_value(t);
		lt = NULL;
	} else if (json_is_object(t)) {
		k = json_string_value(json_object_get(t, "type"));
		lt = json_string_value(json_object_get(t, "logicalType"));
	} else {
		return 0;
	}
	if (!k)
		return 0;
	if (strcmp(k, "string") == 0)
		return lt && strcmp(lt, "uuid") == 0 ? DIS_ID_UUID
						     : DIS_ID_STRING;
	if (strcmp(k, "long") == 0)
		return DIS_ID_LONG;
	return 0;
}

static dis_id_type field_id_type(json_t *t)
{
	json_t *a, *b;

	if (json_is_array(t)) {
		if (json_array_size(t) != 2)
			return 0;
		a = json_array_get(t, 0);
		b = json_array_get(t, 1);
		if (json_is_string(a) &&
		    strcmp(json_string_value(a), "null") == 0)
			return plain_id_type(b);
		if (json_is_string(b) &&
		    strcmp(json_string_value(b), "null") == 0)
			return plain_id_type(a);
		return 0;
	}
	return plain_id_type(t);
}

static const char *id_type_name(dis_id_type t)
{
	switch (t) {
	case DIS_ID_STRING: return "string";
	case DIS_ID_LONG: return "long";
	case DIS_ID_UUID: return "uuid";
	default: return "?";
	}
}

/* Which type first declared id `id` (for messages). */
static const char *id_first_type(const dis_schema *s, int id)
{
	for (size_t t = 0; t < s->ntypes; t++)
		for (size_t k = 0; k < s->types[t].nids; k++)
			if (s->types[t].ids[k] == id)
				return s->types[t].name;
	return "?";
}

static int add_type_id(dis_schema *s, struct schema_type *ty, json_t *field,
		       char *err, size_t errlen)
{
	const char *fname = json_string_value(json_object_get(field, "name"));
	json_t *ftype = json_object_get(field, "type");
	char msg[DIS_ERRMSG_LEN];
	dis_id_type idt;
	size_t i;
	int *p;

	if (dis_identifier_check(fname, msg, sizeof(msg))) {
		dis__errf(err, errlen,
			  "event type %s: id field name is "
			  "invalid: %s",
			  ty->name, msg);
		return DIS_ESCHEMA;
	}
	if (reserved_id(fname)) {
		dis__errf(err, errlen,
			  "event type %s: id name \"%s\" is "
			  "reserved (it is, or may become, a column of the "
			  "event table, or is a PostgreSQL system column; "
			  "names starting with \"dis_\" are reserved too)",
			  ty->name, fname);
		return DIS_ESCHEMA;
	}
	idt = field_id_type(ftype);
	if (!idt) {
		describe_type(ftype, msg, sizeof(msg));
		dis__errf(err, errlen,
			  "event type %s: field \"%s\" is marked "
			  "\"" ID_ATTR "\" but its type (%s) is not a valid id "
			  "type: use string, long, {\"type\": \"string\", "
			  "\"logicalType\": \"uuid\"} or a [\"null\", T] union "
			  "of one of them",
			  ty->name, fname, msg);
		return DIS_ESCHEMA;
	}
	for (i = 0; i < s->nids; i++) {
		if (strcmp(s->ids[i].name, fname) == 0)
			break;
		if (strcasecmp(s->ids[i].name, fname) == 0) {
			dis__errf(err, errlen,
				  "event type %s: id \"%s\" "
				  "differs only in case from id \"%s\" of "
				  "type %s",
				  ty->name, fname, s->ids[i].name,
				  id_first_type(s, (int)i));
			return DIS_ESCHEMA;
		}
	}
	if (i < s->nids && s->ids[i].type != idt) {
		dis__errf(err, errlen,
			  "id \"%s\" is declared with two types: "
			  "%s in event type %s and %s in event type %s",
			  fname, id_type_name(s->ids[i].type),
			  id_first_type(s, (int)i), id_type_name(idt),
			  ty->name);
		return DIS_ESCHEMA;
	}
	if (i == s->nids) {
		struct schema_id *ids;
		char *name = dis__strdup(fname);

		ids = name ? realloc(s->ids, (s->nids + 1) * sizeof(*ids))
			   : NULL;
		if (!ids) {
			free(name);
			return DIS_ENOMEM;
		}
		s->ids = ids;
		ids[s->nids].name = name;
		ids[s->nids].type = idt;
		s->nids++;
	}
	p = realloc(ty->ids, (ty->nids + 1) * sizeof(*p));
	if (!p)
		return DIS_ENOMEM;
	ty->ids = p;
	p[ty->nids++] = (int)i;
	return 0;
}

static int stream_index(const dis_schema *s, const char *name)
{
	for (size_t i = 0; i < s->nstreams; i++)
		if (strcmp(s->streams[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* Adds type name `type` (owned by the schema) to stream `name`. */
static int stream_add_type(dis_schema *s, const char *name, const char *type)
{
	struct schema_stream *st;
	const char **types;
	int i = stream_index(s, name);

	if (i < 0) {
		char *copy = dis__strdup(name);

		st = copy ? realloc(s->streams, (s->nstreams + 1) * sizeof(*st))
			  : NULL;
		if (!st) {
			free(copy);
			return DIS_ENOMEM;
		}
		s->streams = st;
		st = &s->streams[s->nstreams++];
		memset(st, 0, sizeof(*st));
		st->name = copy;
	} else {
		st = &s->streams[i];
	}
	for (size_t k = 0; k < st->n; k++)
		if (strcmp(st->types[k], type) == 0)
			return 0;
	types = realloc(st->types, (st->n + 1) * sizeof(*types));
	if (!types)
		return DIS_ENOMEM;
	st->types = types;
	types[st->n++] = type;
	return 0;
}

static int read_type_attrs(dis_schema *s, struct schema_type *ty, char *err,
			   size_t errlen)
{
	json_t *fields = json_object_get(ty->json, "fields");
	json_t *streams = json_object_get(ty->json, STREAMS_ATTR);
	json_t *f, *v;
	char msg[DIS_ERRMSG_LEN];
	size_t i;
	int rc;

	json_array_foreach(fields, i, f) {
		json_t *attr = json_object_get(f, ID_ATTR);

		if (!attr)
			continue;
		if (!json_is_boolean(attr)) {
			dis__errf(err, errlen,
				  "event type %s: field \"%s\": "
				  "\"" ID_ATTR "\" must be true or false, not "
				  "%s",
				  ty->name,
				  json_string_value(json_object_get(f, "name")),
				  json_kind(attr));
			return DIS_ESCHEMA;
		}
		if (json_is_false(attr))
			continue;
		rc = add_type_id(s, ty, f, err, errlen);
		if (rc)
			return rc;
	}
	if (!streams)
		return 0;
	if (!json_is_array(streams)) {
		dis__errf(err, errlen,
			  "event type %s: \"" STREAMS_ATTR "\" "
			  "must be an array of stream names",
			  ty->name);
		return DIS_ESCHEMA;
	}
	json_array_foreach(streams, i, v) {
		if (!json_is_string(v)) {
			dis__errf(err, errlen,
				  "event type %s: \"" STREAMS_ATTR
				  "\" entry %zu is not a string",
				  ty->name, i);
			return DIS_ESCHEMA;
		}
		if (dis_identifier_check(json_string_value(v), msg,
					 sizeof(msg))) {
			dis__errf(err, errlen,
				  "event type %s: stream name is "
				  "invalid: %s",
				  ty->name, msg);
			return DIS_ESCHEMA;
		}
		rc = stream_add_type(s, json_string_value(v), ty->name);
		if (rc)
			return rc;
	}
	return 0;
}

/* Custom attributes are only read on event types: refuse them elsewhere. */
static int check_nested_attrs(const dis_schema *s, char *err, size_t errlen)
{
	for (size_t i = 0; i < s->nnamed; i++) {
		avro_schema_t a = s->named[i].avro;
		json_t *j = s->named[i].json, *f;
		size_t t, k;

		if (!is_avro_record(a))
			continue;
		for (t = 0; t < s->ntypes; t++)
			if (s->types[t].rec == a)
				break;
		if (t < s->ntypes)
			continue;
		if (json_object_get(j, STREAMS_ATTR)) {
			dis__errf(err, errlen,
				  "record %s is not an event type "
				  "(not at the top level), so it cannot have "
				  "\"" STREAMS_ATTR "\"",
				  avro_schema_name(a));
			return DIS_ESCHEMA;
		}
		json_array_foreach(json_object_get(j, "fields"), k, f) {
			if (json_is_true(json_object_get(f, ID_ATTR))) {
				dis__errf(err, errlen,
					  "record %s is not an "
					  "event type (not at the top level), "
					  "so its field \"%s\" cannot be a "
					  "domain id",
					  avro_schema_name(a),
					  json_string_value(
						  json_object_get(f, "name")));
				return DIS_ESCHEMA;
			}
		}
	}
	return 0;
}

static int add_type(dis_schema *s, avro_schema_t rec, char *err, size_t errlen)
{
	const char *name = avro_schema_name(rec);
	char msg[DIS_ERRMSG_LEN];
	struct schema_type *p;
	json_t *j = dis__schema_named_json(s, rec);

	if (!j) {
		dis__errf(err, errlen,
			  "invalid Avro schema: record %s has no "
			  "definition",
			  name);
		return DIS_ESCHEMA;
	}
	for (size_t i = 0; i < s->ntypes; i++) {
		if (strcmp(s->types[i].name, name) == 0) {
			dis__errf(err, errlen,
				  "event type \"%s\" is declared "
				  "twice (the type is the record name without "
				  "its namespace)",
				  name);
			return DIS_ESCHEMA;
		}
	}
	if (dis_identifier_check(name, msg, sizeof(msg))) {
		dis__errf(err, errlen, "event type name is invalid: %s", msg);
		return DIS_ESCHEMA;
	}
	p = realloc(s->types, (s->ntypes + 1) * sizeof(*p));
	if (!p)
		return DIS_ENOMEM;
	s->types = p;
	p = &p[s->ntypes];
	memset(p, 0, sizeof(*p));
	p->name = dis__strdup(name);
	if (!p->name)
		return DIS_ENOMEM;
	p->rec = rec;
	p->json = j;
	s->ntypes++;
	return 0;
}

/*
 * Each type's class, from the master class: the record itself when the
 * schema is one record, else the union's branches.
 */
static int type_classes(dis_schema *s, char *err, size_t errlen)
{
	avro_value_t u, b;
	int rc = 0;

	s->master = avro_generic_class_from_schema(s->avro);
	if (!s->master) {
		dis__errf(err, errlen, "invalid Avro schema: %s",
			  avro_strerror());
		return DIS_ESCHEMA;
	}
	for (size_t t = 0; t < s->ntypes; t++) {
		rc = dis__scan_plan_build(s->types[t].rec, &s->types[t].plan,
					  &s->types[t].nplan);
		if (rc) {
			dis__errf(err, errlen, "%s",
				  rc == DIS_ENOMEM ? "out of memory"
						   : "event type is not a record");
			return rc == DIS_ENOMEM ? rc : DIS_ESCHEMA;
		}
	}
	if (is_avro_record(s->avro)) {
		s->types[0].iface = avro_value_iface_incref(s->master);
		return 0;
	}
	if (avro_generic_value_new(s->master, &u))
		return DIS_ENOMEM;
	for (size_t t = 0; t < s->ntypes; t++) {
		if (avro_value_set_branch(&u, (int)t, &b)) {
			rc = DIS_ENOMEM;
			break;
		}
		s->types[t].iface = avro_value_iface_incref(b.iface);
	}
	avro_value_decref(&u);
	return rc;
}

struct seen {
	avro_schema_t *recs;
	size_t n;
};

/*
 * Checks the defaults of every record reachable from scratch value `v`
 * (each record once), trying every union branch and one element of every
 * array and map.
 */
static int defaults_walk(const dis_schema *s, avro_value_t *v,
			 struct seen *seen, char *err, size_t errlen)
{
	avro_schema_t a = dis__avro_deref(avro_value_get_schema(v));
	char msg[DIS_ERRMSG_LEN];
	avro_value_t c;
	size_t i, n;
	int rc = 0;

	if (!a)
		return DIS_ENOMEM;
	switch (avro_typeof(a)) {
	case AVRO_RECORD: {
		json_t *fields =
			json_object_get(dis__schema_named_json(s, a), "fields");
		avro_schema_t *p;

		for (i = 0; i < seen->n; i++)
			if (seen->recs[i] == a)
				return 0;
		p = realloc(seen->recs, (seen->n + 1) * sizeof(*p));
		if (!p)
			return DIS_ENOMEM;
		seen->recs = p;
		p[seen->n++] = a;
		n = avro_schema_record_size(a);
		for (i = 0; i < n; i++) {
			json_t *f = json_array_get(fields, i);
			json_t *d = json_object_get(f, "default");

			if (avro_value_get_by_index(v, i, &c, NULL))
				return DIS_ENOMEM;
			if (d) {
				rc = dis__json_to_avro(s, &c, d, NULL, msg,
						       sizeof(msg));
				if (rc == DIS_ENOMEM)
					return rc;
				if (rc) {
					dis__errf(err, errlen,
						  "record %s: the "
						  "default of field \"%s\" "
						  "does not fit its type: %s",
						  avro_schema_name(a),
						  json_string_value(
							  json_object_get(
								  f, "name")),
						  msg);
					return DIS_ESCHEMA;
				}
			}
			rc = defaults_walk(s, &c, seen, err, errlen);
			if (rc)
				return rc;
		}
		return 0;
	}
	case AVRO_UNION:
		n = avro_schema_union_size(a);
		for (i = 0; i < n && !rc; i++) {
			if (avro_value_set_branch(v, (int)i, &c))
				return DIS_ENOMEM;
			rc = defaults_walk(s, &c, seen, err, errlen);
		}
		return rc;
	case AVRO_ARRAY:
		if (avro_value_append(v, &c, NULL))
			return DIS_ENOMEM;
		rc = defaults_walk(s, &c, seen, err, errlen);
		avro_value_reset(v);
		return rc;
	case AVRO_MAP:
		if (avro_value_add(v, "k", &c, NULL, NULL))
			return DIS_ENOMEM;
		rc = defaults_walk(s, &c, seen, err, errlen);
		avro_value_reset(v);
		return rc;
	default: return 0;
	}
}

/* Every field default must fit its field's type. */
static int check_defaults(const dis_schema *s, char *err, size_t errlen)
{
	struct seen seen = {NULL, 0};
	int rc = 0;

	for (size_t t = 0; t < s->ntypes && !rc; t++) {
		avro_value_t v;

		if (avro_generic_value_new(s->types[t].iface, &v)) {
			rc = DIS_ENOMEM;
			break;
		}
		rc = defaults_walk(s, &v, &seen, err, errlen);
		avro_value_decref(&v);
	}
	free(seen.recs);
	return rc;
}

static int build_templates(dis_schema *s, char *err, size_t errlen)
{
	char msg[DIS_ERRMSG_LEN];

	for (size_t t = 0; t < s->ntypes; t++) {
		struct schema_type *ty = &s->types[t];
		int rc;

		if (avro_generic_value_new(ty->iface, &ty->tmpl)) {
			ty->tmpl.iface = NULL;
			return DIS_ENOMEM;
		}
		rc = dis__avro_set_defaults(s, &ty->tmpl, msg, sizeof(msg));
		if (rc == DIS_ENOMEM)
			return rc;
		if (rc) {
			dis__errf(err, errlen,
				  "event type %s: cannot build its "
				  "default value: %s",
				  ty->name, msg);
			return DIS_ESCHEMA;
		}
	}
	return 0;
}

static int fingerprint(dis_schema *s)
{
	char *canon = json_dumps(s->root, JSON_COMPACT | JSON_SORT_KEYS |
						  JSON_ENCODE_ANY);
	uint64_t h;

	if (!canon)
		return DIS_ENOMEM;
	h = dis__hash64(canon, strlen(canon), 0);
	free(canon);
	snprintf(s->fingerprint, sizeof(s->fingerprint), "%016llx",
		 (unsigned long long)h);
	return 0;
}

void dis_schema_free(dis_schema *schema)
{
	size_t i;

	if (!schema)
		return;
	for (i = 0; i < schema->ntypes; i++) {
		struct schema_type *ty = &schema->types[i];

		if (ty->tmpl.iface)
			avro_value_decref(&ty->tmpl);
		if (ty->iface)
			avro_value_iface_decref(ty->iface);
		free(ty->name);
		free(ty->ids);
		free(ty->plan);
	}
	free(schema->types);
	for (i = 0; i < schema->nids; i++)
		free(schema->ids[i].name);
	free(schema->ids);
	for (i = 0; i < schema->nstreams; i++) {
		free(schema->streams[i].name);
		free(schema->streams[i].types);
	}
	free(schema->streams);
	free(schema->named);
	if (schema->master)
		avro_value_iface_decref(schema->master);
	if (schema->avro)
		avro_schema_decref(schema->avro);
	json_decref(schema->root);
	free(schema->json);
	free(schema);
}

/*
 * Removes the field defaults from a copy of the (checked) schema JSON:
 * avro-c ignores them, and its parser rejects the "\u0000" a bytes
 * default may hold.
 */
static void strip_defaults(json_t *j)
{
	const char *t;
	json_t *f;
	size_t i;

	if (json_is_array(j)) {
		json_array_foreach(j, i, f)
			strip_defaults(f);
		return;
	}
	t = json_string_value(json_object_get(j, "type"));
	if (!t)
		return;
	if (strcmp(t, "record") == 0) {
		json_array_foreach(json_object_get(j, "fields"), i, f) {
			json_object_del(f, "default");
			strip_defaults(json_object_get(f, "type"));
		}
	} else if (strcmp(t, "array") == 0) {
		strip_defaults(json_object_get(j, "items"));
	} else if (strcmp(t, "map") == 0) {
		strip_defaults(json_object_get(j, "values"));
	}
}

static int avro_parse(dis_schema *s, char *err, size_t errlen)
{
	json_t *copy = json_deep_copy(s->root);
	char *text;
	int rc;

	if (!copy)
		return DIS_ENOMEM;
	strip_defaults(copy);
	text = json_dumps(copy, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(copy);
	if (!text)
		return DIS_ENOMEM;
	rc = avro_schema_from_json_length(text, strlen(text), &s->avro);
	free(text);
	if (rc) {
		s->avro = NULL;
		dis__errf(err, errlen, "invalid Avro schema: %s",
			  avro_strerror());
		return DIS_ESCHEMA;
	}
	return 0;
}

static int load(dis_schema *s, char *err, size_t errlen)
{
	json_error_t jerr;
	size_t len = strlen(s->json);
	int rc;

	s->root = json_loadb(s->json, len,
			     JSON_DECODE_ANY | JSON_ALLOW_NUL |
				     JSON_REJECT_DUPLICATES,
			     &jerr);
	if (!s->root) {
		dis__errf(err, errlen,
			  "the schema is not valid JSON: line %d, "
			  "column %d: %s",
			  jerr.line, jerr.column, jerr.text);
		return DIS_ESCHEMA;
	}
	rc = check_top(s->root, err, errlen);
	if (rc)
		return rc;
	rc = avro_parse(s, err, errlen);
	if (rc)
		return rc;
	rc = pair_walk(s, s->avro, s->root);
	if (rc == PAIR_EMPTY_ITEMS) {
		dis__errf(err, errlen,
			  "invalid Avro schema: the items of an array may not "
			  "be a record without fields");
		return DIS_ESCHEMA;
	}
	if (rc) {
		if (rc == DIS_ESCHEMA)
			dis__errf(err, errlen,
				  "invalid Avro schema: avro-c "
				  "read it differently than expected");
		return rc;
	}
	if (is_avro_record(s->avro)) {
		rc = add_type(s, s->avro, err, errlen);
	} else {
		for (size_t i = 0; i < avro_schema_union_size(s->avro); i++) {
			rc = add_type(s,
				      dis__avro_deref(avro_schema_union_branch(
					      s->avro, (int)i)),
				      err, errlen);
			if (rc)
				break;
		}
	}
	if (rc)
		return rc;
	for (size_t t = 0; t < s->ntypes; t++) {
		rc = read_type_attrs(s, &s->types[t], err, errlen);
		if (rc)
			return rc;
	}
	rc = check_nested_attrs(s, err, errlen);
	if (!rc)
		rc = type_classes(s, err, errlen);
	if (!rc)
		rc = check_defaults(s, err, errlen);
	if (!rc)
		rc = build_templates(s, err, errlen);
	if (!rc)
		rc = fingerprint(s);
	return rc;
}

int dis_schema_parse(const char *json, dis_schema **out, char *errbuf,
		     size_t errlen)
{
	dis_schema *s;
	int rc;

	if (!json || !out) {
		dis__errf(errbuf, errlen, "dis_schema_parse: NULL argument");
		return DIS_EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s || !(s->json = dis__strdup(json))) {
		free(s);
		dis__errf(errbuf, errlen, "out of memory");
		return DIS_ENOMEM;
	}
	rc = load(s, errbuf, errlen);
	if (rc) {
		if (rc == DIS_ENOMEM)
			dis__errf(errbuf, errlen,
				  "out of memory loading the "
				  "schema");
		dis_schema_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

int dis_schema_load_file(const char *path, dis_schema **out, char *errbuf,
			 size_t errlen)
{
	dis__buf b;
	char chunk[8192];
	FILE *f;
	size_t n;
	int rc;

	if (!path || !out) {
		dis__errf(errbuf, errlen,
			  "dis_schema_load_file: NULL argument");
		return DIS_EINVAL;
	}
	f = fopen(path, "rb");
	if (!f) {
		dis__errf(errbuf, errlen, "cannot open schema file %s: %s",
			  path, strerror(errno));
		return DIS_EIO;
	}
	dis__buf_init(&b);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		dis__buf_append(&b, chunk, n);
	if (ferror(f)) {
		dis__errf(errbuf, errlen, "cannot read schema file %s: %s",
			  path, strerror(errno));
		fclose(f);
		dis__buf_free(&b);
		return DIS_EIO;
	}
	fclose(f);
	if (!dis__buf_cstr(&b)) {
		dis__buf_free(&b);
		dis__errf(errbuf, errlen, "out of memory");
		return DIS_ENOMEM;
	}
	if (memchr(b.data, '\0', b.len)) {
		dis__errf(errbuf, errlen, "schema file %s contains a NUL byte",
			  path);
		dis__buf_free(&b);
		return DIS_ESCHEMA;
	}
	rc = dis_schema_parse((const char *)b.data, out, errbuf, errlen);
	dis__buf_free(&b);
	return rc;
}

/* ---- accessors ---- */

const char *dis_schema_json(const dis_schema *schema)
{
	return schema ? schema->json : NULL;
}

size_t dis_schema_type_count(const dis_schema *schema)
{
	return schema ? schema->ntypes : 0;
}

const char *dis_schema_type_name(const dis_schema *schema, size_t i)
{
	if (!schema || i >= schema->ntypes)
		return NULL;
	return schema->types[i].name;
}

int dis__schema_type_index(const dis_schema *schema, const char *type)
{
	if (!schema || !type)
		return -1;
	for (size_t i = 0; i < schema->ntypes; i++)
		if (strcmp(schema->types[i].name, type) == 0)
			return (int)i;
	return -1;
}

bool dis_schema_has_type(const dis_schema *schema, const char *type)
{
	return dis__schema_type_index(schema, type) >= 0;
}

size_t dis_schema_id_count(const dis_schema *schema)
{
	return schema ? schema->nids : 0;
}

const char *dis_schema_id_name(const dis_schema *schema, size_t i)
{
	if (!schema || i >= schema->nids)
		return NULL;
	return schema->ids[i].name;
}

dis_id_type dis_schema_id_type(const dis_schema *schema, size_t i)
{
	if (!schema || i >= schema->nids)
		return (dis_id_type)0;
	return schema->ids[i].type;
}

int dis_schema_id_index(const dis_schema *schema, const char *name)
{
	if (!schema || !name)
		return -1;
	for (size_t i = 0; i < schema->nids; i++)
		if (strcmp(schema->ids[i].name, name) == 0)
			return (int)i;
	return -1;
}

bool dis_schema_type_has_id(const dis_schema *schema, const char *type,
			    const char *id)
{
	int t = dis__schema_type_index(schema, type);
	int i = dis_schema_id_index(schema, id);

	if (t < 0 || i < 0)
		return false;
	for (size_t k = 0; k < schema->types[t].nids; k++)
		if (schema->types[t].ids[k] == i)
			return true;
	return false;
}

size_t dis__schema_type_ids(const dis_schema *schema, int t, const int **ids)
{
	if (!schema || t < 0 || (size_t)t >= schema->ntypes) {
		if (ids)
			*ids = NULL;
		return 0;
	}
	if (ids)
		*ids = schema->types[t].ids;
	return schema->types[t].nids;
}

const char *dis__schema_fingerprint(const dis_schema *schema)
{
	return schema->fingerprint;
}

size_t dis_schema_stream_count(const dis_schema *schema)
{
	return schema ? schema->nstreams : 0;
}

const char *dis_schema_stream_name(const dis_schema *schema, size_t i)
{
	if (!schema || i >= schema->nstreams)
		return NULL;
	return schema->streams[i].name;
}

int dis_schema_stream_types(const dis_schema *schema, const char *name,
			    const char *const **types, size_t *n)
{
	int i;

	if (!schema || !name)
		return DIS_EINVAL;
	i = stream_index(schema, name);
	if (i < 0)
		return DIS_ENOTFOUND;
	if (types)
		*types = schema->streams[i].types;
	if (n)
		*n = schema->streams[i].n;
	return 0;
}

int dis_schema_add_stream(dis_schema *schema, const char *name,
			  const char *const *types, size_t n, char *errbuf,
			  size_t errlen)
{
	char msg[DIS_ERRMSG_LEN];
	size_t i;
	int rc;

	if (!schema || !name || (n && !types)) {
		dis__errf(errbuf, errlen,
			  "dis_schema_add_stream: NULL argument");
		return DIS_EINVAL;
	}
	if (dis_identifier_check(name, msg, sizeof(msg))) {
		dis__errf(errbuf, errlen, "stream name is invalid: %s", msg);
		return DIS_ESCHEMA;
	}
	if (stream_index(schema, name) >= 0) {
		dis__errf(errbuf, errlen, "stream \"%s\" is already declared",
			  name);
		return DIS_ESCHEMA;
	}
	if (n == 0) {
		dis__errf(errbuf, errlen, "stream \"%s\" lists no event type",
			  name);
		return DIS_ESCHEMA;
	}
	for (i = 0; i < n; i++) {
		if (dis__schema_type_index(schema, types[i]) < 0) {
			dis__errf(errbuf, errlen,
				  "stream \"%s\" names an "
				  "unknown event type \"%s\"",
				  name, types[i] ? types[i] : "(null)");
			return DIS_ESCHEMA;
		}
	}
	for (i = 0; i < n; i++) {
		int t = dis__schema_type_index(schema, types[i]);

		rc = stream_add_type(schema, name, schema->types[t].name);
		if (rc) {
			dis__errf(errbuf, errlen, "out of memory");
			return rc;
		}
	}
	return 0;
}

/* ---- serde accessors ---- */

avro_schema_t dis__schema_type_avro(const dis_schema *schema, int t)
{
	return schema->types[t].rec;
}

const dis__scan_op *dis__schema_type_plan(const dis_schema *schema, int t,
					  size_t *n)
{
	*n = schema->types[t].nplan;
	return schema->types[t].plan;
}

avro_value_iface_t *dis__schema_type_iface(const dis_schema *schema, int t)
{
	return schema->types[t].iface;
}

const avro_value_t *dis__schema_type_template(const dis_schema *schema, int t)
{
	return &schema->types[t].tmpl;
}
