/*
 * What the examples' given/when/then tests share: one harness for all the
 * cases of a file, in memory or, with --store, over a fresh PostgreSQL
 * database; each case starts from an empty history (case_setup); and the
 * macros the cases are written in. A test file defines its cases and calls
 * run_example_cases() from main().
 */
#ifndef DIS_TEST_EXAMPLE_CASES_H
#define DIS_TEST_EXAMPLE_CASES_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "testutil.h"

typedef int (*example_schema_fn)(dis_schema **out, char *errbuf, size_t errlen);

static example_schema_fn example_schema;
static bool store_mode;
static dis_schema *schema;
static dis_store *store;
static dis_harness *h;

#define OK(call) DIS_HARNESS_OK(h, call)
#define GIVEN(type, json) OK(dis_harness_given(h, type, json))
#define MEANWHILE(type, json) OK(dis_harness_meanwhile(h, type, json))
/* `ctor` builds the decision into `d`. */
#define WHEN(ctor)                           \
	do {                                 \
		dis_decision *d = NULL;      \
		assert_int_equal((ctor), 0); \
		OK(dis_harness_when(h, d));  \
	} while (0)
#define THEN(...) OK(dis_harness_then(h, __VA_ARGS__, NULL))
#define THEN_NOTHING() OK(dis_harness_then(h, NULL))
#define THEN_ERR(code) OK(dis_harness_then_err(h, code))

static int group_setup(void **state)
{
	char err[256];

	(void)state;
	assert_int_equal(example_schema(&schema, err, sizeof(err)), 0);
	if (store_mode) {
		char *conninfo = dt_fresh_db();

		store = dt_store(conninfo, schema);
		free(conninfo);
		assert_int_equal(dis_harness_new_store(store, &h), 0);
	} else {
		assert_int_equal(dis_harness_new(schema, &h), 0);
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	dis_harness_free(h);
	dis_store_free(store);
	dis_schema_free(schema);
	return 0;
}

static int case_setup(void **state)
{
	(void)state;
	OK(dis_harness_reset(h));
	return 0;
}

/* Runs `n` cases named "NAME (memory)", or "NAME (store)" with --store. */
static inline int run_example_cases(const char *name, example_schema_fn fn,
				    const struct CMUnitTest *tests, size_t n,
				    int argc, char **argv)
{
	char group[64];

	example_schema = fn;
	store_mode = argc > 1 && strcmp(argv[1], "--store") == 0;
	snprintf(group, sizeof(group), "%s (%s)", name,
		 store_mode ? "store" : "memory");
	return _cmocka_run_group_tests(group, tests, n, group_setup,
				       group_teardown);
}

#endif
