/* Internal utilities: error formatting, growable buffers, hashing. */
#include "core-internal.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dis__verrf(char *buf, size_t len, const char *fmt, va_list ap)
{
	if (!buf || len == 0)
		return;
	vsnprintf(buf, len, fmt, ap);
}

void dis__errf(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	dis__verrf(buf, len, fmt, ap);
	va_end(ap);
}

void dis__buf_init(dis__buf *b)
{
	memset(b, 0, sizeof(*b));
}

void dis__buf_free(dis__buf *b)
{
	free(b->data);
	dis__buf_init(b);
}

void dis__buf_reset(dis__buf *b)
{
	b->len = 0;
	b->oom = false;
}

int dis__buf_reserve(dis__buf *b, size_t extra)
{
	size_t want, cap;
	unsigned char *p;

	if (b->oom)
		return DIS_ENOMEM;
	if (extra > SIZE_MAX - b->len - 1) {
		b->oom = true;
		return DIS_ENOMEM;
	}
	want = b->len + extra + 1;
	if (want <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 64;
	while (cap < want)
		cap = cap > SIZE_MAX / 2 ? want : cap * 2;
	p = realloc(b->data, cap);
	if (!p) {
		b->oom = true;
		return DIS_ENOMEM;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

void dis__buf_append(dis__buf *b, const void *data, size_t len)
{
	if (len == 0 || dis__buf_reserve(b, len))
		return;
	memcpy(b->data + b->len, data, len);
	b->len += len;
}

void dis__buf_puts(dis__buf *b, const char *s)
{
	dis__buf_append(b, s, strlen(s));
}

void dis__buf_array_ident(dis__buf *b, const char *name)
{
	dis__buf_puts(b, b->len ? ",\"" : "{\"");
	dis__buf_puts(b, name);
	dis__buf_puts(b, "\"");
}

void dis__buf_array_end(dis__buf *b)
{
	dis__buf_puts(b, b->len ? "}" : "{}");
}

void dis__buf_printf(dis__buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->oom = true;
		return;
	}
	if (dis__buf_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

const char *dis__buf_cstr(dis__buf *b)
{
	if (dis__buf_reserve(b, 0))
		return NULL;
	b->data[b->len] = '\0';
	return (const char *)b->data;
}

char *dis__buf_take(dis__buf *b)
{
	char *p;

	if (!dis__buf_cstr(b)) {
		dis__buf_free(b);
		return NULL;
	}
	p = (char *)b->data;
	dis__buf_init(b);
	return p;
}

char *dis__strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = malloc(n);

	if (p)
		memcpy(p, s, n);
	return p;
}

size_t dis__utoa(uint64_t v, char out[21])
{
	char tmp[20];
	size_t k = sizeof(tmp), n;

	do
		tmp[--k] = (char)('0' + v % 10);
	while ((v /= 10) > 0);
	n = sizeof(tmp) - k;
	memcpy(out, tmp + k, n);
	out[n] = '\0';
	return n;
}

/* FNV-1a 64 with a final avalanche (splitmix64 finalizer), in pieces. */
uint64_t dis__hash64_start(uint64_t seed)
{
	return 0xcbf29ce484222325ULL ^ seed;
}

uint64_t dis__hash64_add(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

uint64_t dis__hash64_end(uint64_t h)
{
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 31;
	return h;
}

uint64_t dis__hash64(const void *data, size_t len, uint64_t seed)
{
	return dis__hash64_end(
		dis__hash64_add(dis__hash64_start(seed), data, len));
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int dis__uuid_normalize(const char *in, char out[37])
{
	static const char digits[] = "0123456789abcdef";
	size_t o = 0;

	if (!in)
		return DIS_EINVAL;
	for (size_t i = 0; i < 36; i++) {
		int c = (unsigned char)in[i];

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return DIS_EINVAL;
			out[o++] = '-';
			continue;
		}
		int v = hexval(c);
		if (v < 0)
			return DIS_EINVAL;
		out[o++] = digits[v];
	}
	if (in[36] != '\0')
		return DIS_EINVAL;
	out[36] = '\0';
	return 0;
}

#define CONN_SECRETS 4

/* Whether a dbname value is itself a connection string (libpq expands
 * those in some calls). */
static bool is_conninfo(const char *s)
{
	return strchr(s, '=') || !strncmp(s, "postgresql://", 13) ||
	       !strncmp(s, "postgres://", 11);
}

/*
 * Adds the passwords of libpq options `opts` (freed here) to `secret`,
 * looking into a dbname that is a connection string too; sets *malformed
 * when such a dbname does not parse.
 */
static void collect_secrets(PQconninfoOption *opts, char **secret,
			    bool *malformed, int depth)
{
	char *err = NULL;

	for (PQconninfoOption *o = opts; o && o->keyword; o++) {
		if (!o->val || !*o->val)
			continue;
		if (!strcmp(o->keyword, "password")) {
			for (int i = 0; i < CONN_SECRETS; i++)
				if (!secret[i]) {
					secret[i] = dis__strdup(o->val);
					break;
				}
		} else if (!strcmp(o->keyword, "dbname") && depth < 2 &&
			   is_conninfo(o->val)) {
			PQconninfoOption *inner = PQconninfoParse(o->val, &err);

			if (inner)
				collect_secrets(inner, secret, malformed,
						depth + 1);
			else
				*malformed = true;
			PQfreemem(err);
			err = NULL;
		}
	}
	PQconninfoFree(opts);
}

void dis__conn_errmsg(const char *conninfo, struct pg_conn *conn,
		      const char *msg, char *out, size_t len)
{
	char *secret[CONN_SECRETS] = {NULL};
	PQconninfoOption *opts;
	char *perr = NULL;
	bool malformed = false;
	dis__buf b;

	if (!out || !len)
		return;
	if (conninfo && *conninfo) {
		opts = PQconninfoParse(conninfo, &perr);
		if (opts)
			collect_secrets(opts, secret, &malformed, 0);
		else
			malformed = true;
		PQfreemem(perr);
	}
	if (conn)
		collect_secrets(PQconninfo(conn), secret, &malformed, 0);
	dis__buf_init(&b);
	for (const char *p = msg ? msg : ""; *p;) {
		const char *q;
		bool hit = false;

		for (int i = 0; i < CONN_SECRETS && !hit; i++) {
			size_t n = secret[i] ? strlen(secret[i]) : 0;

			if (n && !strncmp(p, secret[i], n)) {
				dis__buf_puts(&b, "***");
				p += n;
				hit = true;
			}
		}
		if (hit)
			continue;
		if (malformed && *p == '"') {
			q = strchr(p + 1, '"');
			dis__buf_puts(&b, "\"***\"");
			p = q ? q + 1 : p + strlen(p);
			continue;
		}
		dis__buf_append(&b, p, 1);
		p++;
	}
	while (b.len && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == ' '))
		b.len--;
	snprintf(out, len, "%s",
		 b.oom || !dis__buf_cstr(&b) ? "out of memory"
					     : (const char *)b.data);
	dis__buf_free(&b);
	for (int i = 0; i < CONN_SECRETS; i++)
		free(secret[i]);
}
