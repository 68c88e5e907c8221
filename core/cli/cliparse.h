/*
 * Parsing of disctl's input: JSON event lines and query arguments. Kept
 * apart from the command code so tests and fuzz targets can link it
 * (`disctl_parse_dep`). Not part of the library's API.
 */
#ifndef DISCTL_CLIPARSE_H
#define DISCTL_CLIPARSE_H

#include <disintegrate/disintegrate.h>

/*
 * Parses one line of `disctl append` input, {"type": T, "data": {...}},
 * into a new event of `schema` (an "id" member, as `disctl tail` prints it,
 * is accepted and ignored). A line holding only white space gives 0 and
 * *out == NULL. Errors: DIS_EINVAL (not the expected shape, unknown type, a
 * domain id value the event table cannot hold, such as a malformed UUID),
 * DIS_ESERDE (data does not fit the type), DIS_ENOMEM; the reason goes to
 * err and *out is NULL.
 */
int disctl_parse_event(const dis_schema *schema, const char *line, size_t len,
		       dis_event **out, char *err, size_t errlen);

/* Arguments of a query: types, streams and ID=VALUE equalities. */
typedef struct disctl_query_args {
	const char *const *types;
	size_t ntypes;
	const char *const *streams;
	size_t nstreams;
	const char *const *wheres;
	size_t nwheres;
} disctl_query_args;

/*
 * Builds a query of one filter: the given types and streams (every type
 * when there are none) with every equality. A VALUE is read by the type of
 * its domain id in the schema (text, whole number or UUID). On failure
 * returns DIS_EINVAL (or DIS_ENOMEM), *out is untouched and err names the
 * bad argument.
 */
int disctl_build_query(const dis_schema *schema, const disctl_query_args *a,
		       dis_query **out, char *err, size_t errlen);

#endif
