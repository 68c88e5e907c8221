/*
 * Helpers shared by the libFuzzer targets of tests/fuzz. A target fails by
 * calling fz_fail(), which prints the reason and aborts, so libFuzzer
 * records the input as a crash. Global schemas are parsed once (in
 * LLVMFuzzerInitialize) and freed at exit: avro-c keeps a reference count in
 * front of each value, so LeakSanitizer reports schemas still alive at exit
 * as leaks otherwise.
 */
#ifndef DIS_FUZZ_H
#define DIS_FUZZ_H

#include <disintegrate/disintegrate.h>

#include "core-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define fz_fail(...)                                                       \
	do {                                                               \
		fprintf(stderr, "fuzz check failed at %s:%d: ", __FILE__, \
			__LINE__);                                         \
		fprintf(stderr, __VA_ARGS__);                              \
		fputc('\n', stderr);                                       \
		abort();                                                   \
	} while (0)

#define fz_check(cond, ...)                   \
	do {                                  \
		if (!(cond))                  \
			fz_fail(__VA_ARGS__); \
	} while (0)

/* A NUL-terminated copy of the input (free it). */
static inline char *fz_cstr(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		abort();
	if (size)
		memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* Parses a built-in schema or aborts. */
static inline dis_schema *fz_schema(const char *json)
{
	char err[DIS_ERRMSG_LEN];
	dis_schema *s = NULL;

	if (dis_schema_parse(json, &s, err, sizeof(err)))
		fz_fail("built-in schema: %s", err);
	return s;
}

/* An error code from a failed call: one of the DIS_E* codes. */
static inline void fz_check_code(int rc, const char *what)
{
	fz_check(rc < 0 && rc >= DIS_ESTATE, "%s: unknown return code %d",
		 what, rc);
}

/* A failure left a message (NUL terminated within the buffer). */
static inline void fz_check_err(const char *err, size_t len,
				const char *what)
{
	fz_check(memchr(err, '\0', len) != NULL, "%s: error not terminated",
		 what);
	fz_check(err[0] != '\0', "%s: failed without a message", what);
}

/*
 * The data JSON of an event (freed by the caller). Compared instead of
 * dis_event_equal() where a value may be NaN, which never equals itself.
 */
static inline char *fz_data_json(const dis_event *ev, const char *what)
{
	char *json = NULL;
	int rc = dis_event_data_json(ev, &json);

	fz_check(rc == 0, "%s: dis_event_data_json: %s", what,
		 dis_strerror(rc));
	return json;
}

/*
 * Checks that the event survives encoding and decoding with its own
 * schema, and that its JSON rendering reads back as the same event (what
 * `disctl tail | disctl append` relies on) when the event could be stored:
 * an id value the event table cannot hold (a NUL byte, an unset or
 * malformed UUID) is DIS_EINVAL and refused at append. Also reads its
 * domain ids and lock keys.
 */
static inline void fz_roundtrip(const dis_event *ev, const char *what)
{
	const dis_schema *schema = dis_event_schema(ev);
	const char *type = dis_event_type(ev);
	char err[DIS_ERRMSG_LEN] = "";
	dis_event *back = NULL;
	char *json, *json2, *full;
	int64_t *keys = NULL;
	size_t nkeys = 0;
	bool storable = true;
	dis__buf b;
	int rc;

	for (size_t i = 0; i < dis_schema_id_count(schema); i++) {
		dis__idval v;

		rc = dis__event_idval(ev, (int)i, &v);
		fz_check(rc == 0 || rc == DIS_EINVAL, "%s: idval: %s", what,
			 dis_strerror(rc));
		if (rc)
			storable = false;
	}
	rc = dis__event_lock_keys(ev, &keys, &nkeys);
	fz_check(rc == 0 || (rc == DIS_EINVAL && !storable),
		 "%s: lock keys: %s", what, dis_strerror(rc));
	fz_check(rc || nkeys >= 1, "%s: an event has at least its type's key",
		 what);
	free(keys);

	json = fz_data_json(ev, what);

	dis__buf_init(&b);
	rc = dis__event_encode(ev, &b, err, sizeof(err));
	fz_check(rc == 0, "%s: encode: %s", what, err);
	rc = dis__event_decode(schema, schema, type, b.data, b.len, &back,
			       err, sizeof(err));
	fz_check(rc == 0, "%s: decode of own encoding: %s", what, err);
	json2 = fz_data_json(back, what);
	fz_check(strcmp(json, json2) == 0,
		 "%s: binary round trip differs:\n%s\n%s", what, json, json2);
	free(json2);
	dis_event_free(back);
	dis__buf_free(&b);

	back = NULL;
	rc = dis_event_from_json(schema, type, json, &back, err, sizeof(err));
	fz_check(rc == 0 || !storable,
		 "%s: its own JSON does not read back: %s\n%s", what, err,
		 json);
	if (rc == 0) {
		/* Reading JSON lowercases uuid ids (a payload from elsewhere
		 * may hold them in upper case); a second trip changes
		 * nothing. */
		json2 = fz_data_json(back, what);
		fz_check(strcasecmp(json, json2) == 0,
			 "%s: JSON round trip differs:\n%s\n%s", what, json,
			 json2);
		dis_event_free(back);
		if (strcmp(json, json2) != 0) {
			char *json3;

			rc = dis_event_from_json(schema, type, json2, &back,
						 err, sizeof(err));
			fz_check(rc == 0, "%s: second JSON trip: %s", what,
				 err);
			json3 = fz_data_json(back, what);
			fz_check(strcmp(json2, json3) == 0,
				 "%s: second JSON trip differs:\n%s\n%s", what,
				 json2, json3);
			free(json3);
			dis_event_free(back);
		}
		free(json2);
	}

	full = NULL;
	rc = dis_event_to_json(ev, &full);
	fz_check(rc == 0, "%s: dis_event_to_json: %s", what,
		 dis_strerror(rc));
	dis_free(full);
	free(json);
}

#endif
