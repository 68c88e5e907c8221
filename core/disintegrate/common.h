/*
 * disintegrate-c: common definitions shared by every public header.
 *
 * Return codes: every fallible function returns 0 on success or one of the
 * negative DIS_E* codes below. The detail of a failure lives on the handle
 * that failed (dis_store_errmsg(), dis_query_errmsg(), ...), or in the
 * caller's errbuf for constructors that have no handle yet.
 */
#ifndef DISINTEGRATE_COMMON_H
#define DISINTEGRATE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#if defined(__GNUC__) || defined(__clang__)
#define DIS_API __attribute__((visibility("default")))
#define DIS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define DIS_API
#define DIS_PRINTF(f, a)
#endif

#ifdef __cplusplus
extern "C" {
#endif

enum {
	DIS_OK = 0,
	DIS_EINVAL = -1,     /* bad argument or input (usage error) */
	DIS_ENOMEM = -2,     /* out of memory */
	DIS_EPG = -3,        /* PostgreSQL reported an error */
	DIS_ESERDE = -4,     /* payload or JSON could not be encoded/decoded */
	DIS_ECONFLICT = -5,  /* the validation query changed since the load */
	DIS_EDOMAIN = -6,    /* a decision refused: domain error */
	DIS_ECANCELED = -7,  /* pending work canceled by shutdown */
	DIS_ESCHEMA = -8,    /* the event schema is invalid */
	DIS_ENOTFOUND = -9,  /* no such event type, field, listener, ... */
	DIS_ECONN = -10,     /* connection to PostgreSQL failed or was lost */
	DIS_ETIMEDOUT = -11, /* a lock or statement timed out */
	DIS_EPERM = -12,     /* the database role lacks a privilege */
	DIS_EIO = -13,       /* file or socket I/O failed */
	DIS_ESTATE = -14     /* call not valid in the handle's current state */
};

/* Static, human readable text for a DIS_E* code. Never NULL. */
DIS_API const char *dis_strerror(int code);

/* Logging: the library never prints. Install a callback to see its log. */
typedef enum dis_log_level {
	DIS_LOG_ERROR = 0,
	DIS_LOG_WARN = 1,
	DIS_LOG_INFO = 2,
	DIS_LOG_DEBUG = 3
} dis_log_level;

typedef void (*dis_log_fn)(void *arg, dis_log_level level, const char *msg);

/* Frees memory the library returned to the caller (JSON text, copies). */
DIS_API void dis_free(void *p);

/*
 * A position in the event log: (transaction id, event id). Events are
 * delivered in position order; every event is at a position greater than
 * every event delivered before it. {0, 0} is the start of the log.
 */
typedef struct dis_position {
	uint64_t tx;
	int64_t id;
} dis_position;

#define DIS_POSITION_START ((dis_position){0, 0})

/* -1, 0 or 1 as a is before, equal to or after b. */
DIS_API int dis_position_cmp(dis_position a, dis_position b);
/* Text form "TX:ID" into buf (at least 48 bytes). Returns buf. */
DIS_API char *dis_position_format(dis_position p, char *buf, size_t len);
/* Parses "TX:ID" (or "0" for the start). DIS_EINVAL when malformed. */
DIS_API int dis_position_parse(const char *text, dis_position *out);

#ifdef __cplusplus
}
#endif
#endif
