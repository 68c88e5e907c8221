/* Error codes, positions and small shared utilities of the public API. */
#include "core-internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>

const char *dis_strerror(int code)
{
	switch (code) {
	case DIS_OK: return "success";
	case DIS_EINVAL: return "invalid argument or input";
	case DIS_ENOMEM: return "out of memory";
	case DIS_EPG: return "PostgreSQL error";
	case DIS_ESERDE: return "payload could not be encoded or decoded";
	case DIS_ECONFLICT: return "concurrent change: validation query changed";
	case DIS_EDOMAIN: return "decision refused (domain error)";
	case DIS_ECANCELED: return "canceled";
	case DIS_ESCHEMA: return "invalid event schema";
	case DIS_ENOTFOUND: return "not found";
	case DIS_ECONN: return "connection to PostgreSQL failed or was lost";
	case DIS_ETIMEDOUT: return "timed out";
	case DIS_EPERM: return "permission denied";
	case DIS_EIO: return "I/O error";
	case DIS_ESTATE: return "call not valid in the current state";
	default: return "unknown error";
	}
}

void dis_free(void *p)
{
	free(p);
}

int dis_position_cmp(dis_position a, dis_position b)
{
	if (a.tx != b.tx)
		return a.tx < b.tx ? -1 : 1;
	if (a.id != b.id)
		return a.id < b.id ? -1 : 1;
	return 0;
}

char *dis_position_format(dis_position p, char *buf, size_t len)
{
	snprintf(buf, len, "%" PRIu64 ":%" PRId64, p.tx, p.id);
	return buf;
}

int dis_position_parse(const char *text, dis_position *out)
{
	char *end;
	unsigned long long tx;
	long long id;

	if (!text || !out || !*text)
		return DIS_EINVAL;
	if (text[0] == '0' && text[1] == '\0') {
		*out = DIS_POSITION_START;
		return 0;
	}
	if (*text < '0' || *text > '9')
		return DIS_EINVAL;
	errno = 0;
	tx = strtoull(text, &end, 10);
	if (errno || *end != ':' || end[1] < '0' || end[1] > '9')
		return DIS_EINVAL;
	id = strtoll(end + 1, &end, 10);
	if (errno || *end != '\0')
		return DIS_EINVAL;
	out->tx = tx;
	out->id = id;
	return 0;
}
