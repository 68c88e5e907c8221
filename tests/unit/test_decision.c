/*
 * Decisions, the maker and the harness in memory: multi-state loading,
 * dispatch by each state's own query, results and errors, conflict retries
 * with re-initialised states, snapshots over the in-memory log, and the
 * harness's own messages.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "testutil.h"
#include "counter.h"
#include "decision-internal.h"

static dis_schema *schema;
static dis_harness *h;

#define OK(call) DIS_HARNESS_OK(h, call)

static int setup(void **state)
{
	(void)state;
	schema = dt_schema(counter_avsc);
	assert_int_equal(dis_harness_new(schema, &h), 0);
	counter_mutations = counter_destroys = 0;
	counter_refuse_snapshot = counter_wide_query = false;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	dis_harness_free(h);
	dis_schema_free(schema);
	return 0;
}

static void given_added(const char *id, int64_t n)
{
	char json[128];

	snprintf(json, sizeof(json), "{\"counter_id\": \"%s\", \"n\": %lld}",
		 id, (long long)n);
	OK(dis_harness_given(h, "Added", json));
}

/* Each state gets exactly the events of its own query. */
static void multi_state_loading_dispatches_by_query(void **state)
{
	static const char *const ids[] = {"a", "b", "a", "c"};
	const dis_decision *d;
	dis_decision *nd = NULL;

	(void)state;
	given_added("a", 1);
	given_added("b", 10);
	OK(dis_harness_given(h, "Noted", "{\"note\": \"hello\"}"));
	given_added("a", 2);
	OK(dis_harness_given(h, "Reset", "{\"counter_id\": \"b\"}"));
	given_added("b", 5);
	given_added("x", 100);
	assert_int_equal(counter_read(schema, &counter_def, ids, 4, &nd), 0);
	OK(dis_harness_when(h, nd));
	OK(dis_harness_then(h, NULL));
	d = dis_harness_decision(h);
	assert_int_equal(dis_decision_state_count(d), 4);
	assert_int_equal(counter_at(d, 0)->total, 3);
	assert_int_equal(counter_at(d, 0)->count, 2);
	assert_int_equal(counter_at(d, 1)->total, 5);
	assert_int_equal(counter_at(d, 1)->count, 3);
	assert_int_equal(counter_at(d, 2)->total, 3);
	assert_int_equal(counter_at(d, 3)->total, 0);
	assert_int_equal(counter_at(d, 3)->count, 0);
	/* One load over the union: a, b, Noted is not read, x is not. */
	assert_int_equal(dis_decision_events_read(d), 5);
	assert_int_equal(dis_decision_attempts(d), 1);
}

static void a_decision_appends_its_events(void **state)
{
	struct add_params p = {.n = 4};
	dis_decision *d = NULL;

	(void)state;
	given_added("a", 1);
	assert_int_equal(counter_add(schema, "a", &p, &d), 0);
	OK(dis_harness_when(h, d));
	OK(dis_harness_then(h, "Added", "{\"counter_id\": \"a\", \"n\": 4}",
			    NULL));
	assert_int_equal(dis_event_id(dis_decision_event(d, 0)), 2);
}

static void a_decision_without_events_appends_nothing(void **state)
{
	struct add_params p = {.n = 4, .emit_nothing = true};
	dis_decision *d = NULL;

	(void)state;
	given_added("a", 1);
	assert_int_equal(counter_add(schema, "a", &p, &d), 0);
	OK(dis_harness_when(h, d));
	/* then() also checks the log holds nothing after the given event. */
	OK(dis_harness_then(h, NULL));
	OK(dis_harness_then_status(h, 0));
}

static void a_domain_error_has_code_and_message(void **state)
{
	struct add_params p = {.n = 4, .limit = 3};
	dis_decision *d = NULL;

	(void)state;
	assert_int_equal(counter_add(schema, "a", &p, &d), 0);
	OK(dis_harness_when(h, d));
	OK(dis_harness_then_err(h, 7));
	OK(dis_harness_then_status(h, DIS_EDOMAIN));
	assert_int_equal(dis_decision_result(d), DIS_EDOMAIN);
	assert_int_equal(dis_decision_domain_code(d), 7);
	assert_string_equal(dis_decision_errmsg(d),
			    "counter a at 0: adding 4 passes 3");
	assert_int_equal(dis_decision_event_count(d), 0);
}

static void other_process_errors_are_returned(void **state)
{
	struct add_params p = {.n = 1, .fail_with = DIS_ENOMEM};
	dis_decision *d = NULL;

	(void)state;
	assert_int_equal(counter_add(schema, "a", &p, &d), 0);
	OK(dis_harness_when(h, d));
	OK(dis_harness_then_status(h, DIS_ENOMEM));
	assert_non_null(strstr(dis_decision_errmsg(d), "process failed"));
}

static void a_failed_emit_fails_the_decision(void **state)
{
	struct add_params p = {.n = 1, .emit_unknown = true};
	dis_decision *d = NULL;

	(void)state;
	assert_int_equal(counter_add(schema, "a", &p, &d), 0);
	OK(dis_harness_when(h, d));
	OK(dis_harness_then_status(h, DIS_ENOTFOUND));
	assert_non_null(strstr(dis_decision_errmsg(d), "NoSuchType"));
	OK(dis_harness_then_status(h, DIS_ENOTFOUND));
}

static void the_harness_explains_mismatches(void **state)
{
	struct add_params p = {.n = 4};
	dis_decision *d = NULL;

	(void)state;
	assert_int_equal(counter_add(schema, "a", &p, &d), 0);
	OK(dis_harness_when(h, d));
	assert_int_equal(dis_harness_then(h, "Added",
					  "{\"counter_id\": \"a\", \"n\": 5}",
					  NULL),
			 DIS_EINVAL);
	assert_non_null(strstr(dis_harness_errmsg(h), "\"n\":5"));
	assert_non_null(strstr(dis_harness_errmsg(h), "\"n\":4"));
	assert_int_equal(dis_harness_then(h, NULL), DIS_EINVAL);
	assert_non_null(
		strstr(dis_harness_errmsg(h), "expected 0 event(s), got 1"));
	assert_int_equal(dis_harness_then_err(h, 7), DIS_EINVAL);
	assert_non_null(strstr(dis_harness_errmsg(h), "success with 1"));
	/* A second decision needs a reset. */
	assert_int_equal(counter_add(schema, "a", &p, &d), 0);
	assert_int_equal(dis_harness_when(h, d), DIS_ESTATE);
	assert_int_equal(dis_harness_when(h, NULL), DIS_ESTATE);
	OK(dis_harness_reset(h));
	assert_int_equal(dis_harness_when(h, NULL), DIS_EINVAL);
	assert_non_null(strstr(dis_harness_errmsg(h), "constructor"));
}

static void no_states_appends_unchecked(void **state)
{
	dis_decision *d = NULL;

	(void)state;
	given_added("a", 1);
	assert_int_equal(dis_decision_new(schema, "Note", nothing_process, NULL,
					  0, &d),
			 0);
	OK(dis_harness_when(h, d));
	OK(dis_harness_then(h, NULL));
}

static int note_process(dis_ctx *ctx, const void *const *states,
			const void *params)
{
	(void)states;
	(void)params;
	return dis_ctx_emit_json(ctx, "Noted", "{\"note\": \"unique\"}");
}

/* A validation query without states: "only if nothing matches yet". */
static void validation_without_states_checks_existence(void **state)
{
	dis_decision *d = NULL;
	dis_query *v;
	dis_filter *f;

	(void)state;
	OK(dis_harness_given(h, "Noted", "{\"note\": \"x\"}"));
	assert_int_equal(
		dis_decision_new(schema, "Note", note_process, NULL, 0, &d), 0);
	assert_int_equal(dis_decision_validation(d, &v), 0);
	assert_int_equal(dis_query_add_filter(v, &f), 0);
	assert_int_equal(dis_filter_type(f, "Noted"), 0);
	assert_int_equal(dis_maker_set_retry(dis_harness_maker(h), 1, 0, 0), 0);
	OK(dis_harness_when(h, d));
	OK(dis_harness_then_status(h, DIS_ECONFLICT));

	OK(dis_harness_reset(h));
	assert_int_equal(
		dis_decision_new(schema, "Note", note_process, NULL, 0, &d), 0);
	assert_int_equal(dis_decision_validation(d, &v), 0);
	assert_int_equal(dis_query_add_filter(v, &f), 0);
	assert_int_equal(dis_filter_type(f, "Noted"), 0);
	OK(dis_harness_when(h, d));
	OK(dis_harness_then(h, "Noted", "{\"note\": \"unique\"}", NULL));
}

/* A conflict reloads re-initialised states (no double counting). */
static void a_conflict_is_retried_on_fresh_states(void **state)
{
	struct add_params p = {.n = 1, .limit = 10};
	const dis_decision *d;
	dis_decision *nd = NULL;
	dis_maker_stats st;

	(void)state;
	given_added("a", 3);
	OK(dis_harness_meanwhile(h, "Added",
				 "{\"counter_id\": \"a\", \"n\": 6}"));
	assert_int_equal(counter_add(schema, "a", &p, &nd), 0);
	OK(dis_harness_when(h, nd));
	OK(dis_harness_then(h, "Added", "{\"counter_id\": \"a\", \"n\": 1}",
			    NULL));
	d = dis_harness_decision(h);
	assert_int_equal(dis_decision_attempts(d), 2);
	assert_int_equal(counter_at(d, 0)->total, 9);
	assert_int_equal(counter_at(d, 0)->count, 2);
	assert_int_equal(counter_at(d, 0)->nhistory, 2);
	dis_maker_get_stats(dis_harness_maker(h), &st);
	assert_int_equal(st.conflicts, 1);
	assert_int_equal(st.retries, 1);
	assert_int_equal(st.gave_up, 0);
	assert_int_equal(st.succeeded, 1);
}

/* A backend whose append always conflicts, over an empty log. */
static int conflicting_loads;

static int fake_load(void *self, const dis_query *q, const void *since,
		     dis_event_fn fn, void *arg, void **version)
{
	(void)self;
	(void)q;
	(void)since;
	(void)fn;
	(void)arg;
	conflicting_loads++;
	*version = malloc(1);
	return *version ? 0 : DIS_ENOMEM;
}

static int fake_append(void *self, dis_event *const *evs, size_t n,
		       const dis_query *validation, const void *version,
		       void **next)
{
	(void)self;
	(void)evs;
	(void)n;
	(void)validation;
	(void)version;
	(void)next;
	return DIS_ECONFLICT;
}

static void fake_version_free(void *v)
{
	free(v);
}

static const char *fake_errmsg(void *self)
{
	(void)self;
	return "conflict";
}

static void retries_end_in_a_reported_conflict(void **state)
{
	dis__backend be = {
		.load = fake_load,
		.append = fake_append,
		.version_free = fake_version_free,
		.errmsg = fake_errmsg,
	};
	struct add_params p = {.n = 1};
	dis_maker *m = NULL;
	dis_decision *d = NULL;
	dis_maker_stats st;

	(void)state;
	conflicting_loads = 0;
	assert_int_equal(dis__maker_new_backend(&be, &m), 0);
	assert_int_equal(dis_maker_set_retry(m, 4, 10, 100), 0);
	assert_int_equal(dis_maker_set_retry(m, 0, 10, 100), DIS_EINVAL);
	assert_int_equal(counter_add(schema, "a", &p, &d), 0);
	assert_int_equal(dis_maker_make(m, d), DIS_ECONFLICT);
	assert_int_equal(dis_decision_result(d), DIS_ECONFLICT);
	assert_int_equal(dis_decision_attempts(d), 4);
	assert_int_equal(conflicting_loads, 4);
	assert_non_null(strstr(dis_decision_errmsg(d), "4 attempts"));
	assert_string_equal(dis_maker_errmsg(m), dis_decision_errmsg(d));
	dis_maker_get_stats(m, &st);
	assert_int_equal(st.decisions, 1);
	assert_int_equal(st.conflicts, 4);
	assert_int_equal(st.retries, 3);
	assert_int_equal(st.gave_up, 1);
	assert_int_equal(st.conflicts, st.retries + st.gave_up);
	dis_decision_free(d);
	dis_maker_free(m);
}

/* Appends Added events to counter `id` through the maker, one each. */
static void add_through(dis_maker *m, const char *id, int n)
{
	for (int i = 0; i < n; i++) {
		struct add_params p = {.n = 1};
		dis_decision *d = NULL;

		assert_int_equal(counter_add(schema, id, &p, &d), 0);
		assert_int_equal(dis_maker_make(m, d), 0);
		dis_decision_free(d);
	}
}

static void snapshots_in_memory(void **state)
{
	dis_maker *m = dis_harness_maker(h);
	const char *id = "a";
	dis_decision *d = NULL;
	dis_maker_stats st;

	(void)state;
	dis_maker_set_snapshots(m, true, 5);
	add_through(m, "a", 20);
	add_through(m, "b", 3);
	dis_maker_get_stats(m, &st);
	/* Loads of a that applied more than 5 events stored snapshots. */
	assert_true(st.snapshots_stored > 0);
	assert_true(st.snapshots_loaded > 0);

	/* A read now continues from the last snapshot. */
	assert_int_equal(counter_read(schema, &counter_def, &id, 1, &d), 0);
	assert_int_equal(dis_maker_load(m, d), 0);
	assert_int_equal(counter_at(d, 0)->total, 20);
	assert_int_equal(counter_at(d, 0)->count, 20);
	assert_true(dis_decision_events_read(d) <= 6);
	dis_decision_free(d);

	/* A snapshot its state refuses is ignored: rebuilt from the start. */
	counter_refuse_snapshot = true;
	dis_maker_get_stats(m, &st);
	assert_int_equal(counter_read(schema, &counter_def, &id, 1, &d), 0);
	assert_int_equal(dis_maker_load(m, d), 0);
	assert_int_equal(counter_at(d, 0)->total, 20);
	assert_int_equal(counter_at(d, 0)->count, 20);
	assert_int_equal(dis_decision_events_read(d), 20);
	{
		dis_maker_stats after;

		dis_maker_get_stats(m, &after);
		assert_int_equal(after.snapshots_ignored,
				 st.snapshots_ignored + 1);
	}
	dis_decision_free(d);
	counter_refuse_snapshot = false;

	/* Another snapshot schema: ignored too. */
	assert_int_equal(counter_read(schema, &counter_def_v2, &id, 1, &d), 0);
	assert_int_equal(dis_maker_load(m, d), 0);
	assert_int_equal(counter_at(d, 0)->total, 20);
	assert_int_equal(dis_decision_events_read(d), 20);
	dis_decision_free(d);

	/* A changed query finds no snapshot at all. */
	counter_wide_query = true;
	dis_maker_get_stats(m, &st);
	assert_int_equal(counter_read(schema, &counter_def, &id, 1, &d), 0);
	assert_int_equal(dis_maker_load(m, d), 0);
	assert_int_equal(counter_at(d, 0)->total, 20);
	assert_int_equal(dis_decision_events_read(d), 20);
	{
		dis_maker_stats after;

		dis_maker_get_stats(m, &after);
		assert_int_equal(after.snapshots_loaded, st.snapshots_loaded);
		assert_int_equal(after.snapshots_ignored, st.snapshots_ignored);
	}
	dis_decision_free(d);
	counter_wide_query = false;
}

/* A state's snapshot and another state's full load in one decision. */
static void snapshot_and_plain_states_together(void **state)
{
	static const char *const ids[] = {"a", "b"};
	dis_maker *m = dis_harness_maker(h);
	const char *a = "a";
	dis_decision *d = NULL;

	(void)state;
	add_through(m, "a", 12);
	add_through(m, "b", 4);
	dis_maker_set_snapshots(m, true, 10);
	/* Store a's snapshot (12 events > 10), not b's. */
	assert_int_equal(counter_read(schema, &counter_def, &a, 1, &d), 0);
	assert_int_equal(dis_maker_load(m, d), 0);
	dis_decision_free(d);
	add_through(m, "a", 2);
	add_through(m, "b", 1);
	assert_int_equal(counter_read(schema, &counter_def, ids, 2, &d), 0);
	assert_int_equal(dis_maker_load(m, d), 0);
	assert_int_equal(counter_at(d, 0)->total, 14);
	assert_int_equal(counter_at(d, 1)->total, 5);
	/* 2 for a (after its snapshot), 5 for b. */
	assert_int_equal(dis_decision_events_read(d), 7);
	dis_decision_free(d);
}

static void bad_state_definitions_are_refused(void **state)
{
	dis_state_def bad = counter_def;
	struct counter init = {.id = "a"};
	dis_decision *d = NULL;

	(void)state;
	assert_int_equal(
		dis_decision_new(schema, "X", nothing_process, NULL, 0, &d), 0);
	bad.mutate = NULL;
	assert_int_equal(dis_decision_add_state(d, &bad, &init), DIS_EINVAL);
	bad = counter_def;
	bad.snapshot_load = NULL;
	assert_int_equal(dis_decision_add_state(d, &bad, &init), DIS_EINVAL);
	assert_non_null(strstr(dis_decision_errmsg(d), "snapshot"));
	counter_wide_query = false;
	init.id = "a";
	assert_int_equal(dis_decision_add_state(d, &counter_def, &init), 0);
	assert_int_equal(dis_decision_state_count(d), 1);
	assert_null(dis_decision_state(d, 1));
	assert_int_equal(dis_decision_new(NULL, "X", nothing_process, NULL, 0,
					  &d),
			 DIS_EINVAL);
	dis_decision_free(d);
	dis_decision_free(NULL);
	dis_maker_free(NULL);
	dis_harness_free(NULL);
}

/*
 * The state cache over the in-memory log: a second decision on a counter
 * skips the load; a meanwhile event makes the cached attempt conflict and
 * the decision is made again on a load (one attempt allowed: the stale
 * cached one is not counted).
 */
static void cached_states_in_memory(void **state)
{
	dis_maker *m = dis_harness_maker(h);
	struct add_params p = {.n = 2};
	const dis_decision *d;
	dis_decision *nd = NULL;
	dis_maker_stats st;

	(void)state;
	assert_int_equal(dis_maker_set_cache(m, 4), 0);
	assert_int_equal(dis_maker_set_retry(m, 1, 0, 0), 0);
	assert_int_equal(counter_add(schema, "a", &p, &nd), 0);
	assert_int_equal(dis_maker_make(m, nd), 0);
	dis_decision_free(nd);
	p.n = 3;
	assert_int_equal(counter_add(schema, "a", &p, &nd), 0);
	assert_int_equal(dis_maker_make(m, nd), 0);
	assert_int_equal(dis_decision_events_read(nd), 0);
	assert_int_equal(counter_at(nd, 0)->total, 2);
	dis_decision_free(nd);

	OK(dis_harness_meanwhile(h, "Added",
				 "{\"counter_id\": \"a\", \"n\": 6}"));
	p.n = 1;
	assert_int_equal(counter_add(schema, "a", &p, &nd), 0);
	OK(dis_harness_when(h, nd));
	OK(dis_harness_then(h, "Added", "{\"counter_id\": \"a\", \"n\": 1}",
			    NULL));
	d = dis_harness_decision(h);
	assert_int_equal(counter_at(d, 0)->total, 11);
	assert_int_equal(dis_decision_attempts(d), 2);
	dis_maker_get_stats(m, &st);
	assert_int_equal(st.cache_hits, 2);
	assert_int_equal(st.cache_stale, 1);
	assert_int_equal(st.conflicts, 0);
}

/*
 * A cached state restarts from the decision's own events: only those its
 * query matches are applied (here one of two: the other is another
 * counter's).
 */
static void cached_state_skips_own_events_of_other_streams(void **state)
{
	dis_maker *m = dis_harness_maker(h);
	static const char *const others[] = {"b"};
	struct add_params p = {.n = 1, .other_id = "b"};
	dis_decision *nd = NULL;
	dis_maker_stats st;

	(void)state;
	assert_int_equal(dis_maker_set_cache(m, 4), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(counter_add(schema, "a", &p, &nd), 0);
		assert_int_equal(dis_maker_make(m, nd), 0);
		assert_int_equal(counter_at(nd, 0)->total, i);
		dis_decision_free(nd);
	}
	dis_maker_get_stats(m, &st);
	assert_int_equal(st.cache_hits, 2);
	assert_int_equal(counter_read(schema, &counter_def, others, 1, &nd), 0);
	assert_int_equal(dis_maker_load(m, nd), 0);
	assert_int_equal(counter_at(nd, 0)->total, 300);
	dis_decision_free(nd);
}

/*
 * The version a cached state is exact at: the append's snapshot with its
 * own transaction made visible, and every one between still invisible.
 */
static void version_seeing_a_later_transaction(void **state)
{
	static const struct {
		const char *snap;
		uint64_t tx;
		const char *want; /* NULL: too far, none */
		int rc;
	} cases[] = {
		{"10:20:12,15", 22, "10:23:12,15,20,21", 0},
		{"10:20:12,15", 20, "10:21:12,15", 0},
		{"10:20:", 20, "10:21:", 0},
		{"20:20:", 25, "20:26:20,21,22,23,24", 0},
		{"10:20:12,15", 15, "10:20:12", 0},
		{"10:20:12,15", 17, "10:20:12,15", 0},
		{"10:20:", 20 + DIS__VERSION_SPAN + 1, NULL, 0},
		{"10:20:12,x", 22, NULL, DIS_EINVAL},
		{"10:20:25", 22, NULL, DIS_EINVAL},
		{"20:10:", 22, NULL, DIS_EINVAL},
		{"10:20", 22, NULL, DIS_EINVAL},
		{"10:20:", 5, NULL, DIS_EINVAL},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *out = (char *)"unset";
		int rc = dis__version_seeing(cases[i].snap, cases[i].tx, &out);

		assert_int_equal(rc, cases[i].rc);
		if (cases[i].want) {
			assert_non_null(out);
			assert_string_equal(out, cases[i].want);
		} else {
			assert_null(out);
		}
		free(out);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			multi_state_loading_dispatches_by_query, setup,
			teardown),
		cmocka_unit_test_setup_teardown(a_decision_appends_its_events,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			a_decision_without_events_appends_nothing, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			a_domain_error_has_code_and_message, setup, teardown),
		cmocka_unit_test_setup_teardown(
			other_process_errors_are_returned, setup, teardown),
		cmocka_unit_test_setup_teardown(
			a_failed_emit_fails_the_decision, setup, teardown),
		cmocka_unit_test_setup_teardown(the_harness_explains_mismatches,
						setup, teardown),
		cmocka_unit_test_setup_teardown(no_states_appends_unchecked,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			validation_without_states_checks_existence, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			a_conflict_is_retried_on_fresh_states, setup, teardown),
		cmocka_unit_test_setup_teardown(
			retries_end_in_a_reported_conflict, setup, teardown),
		cmocka_unit_test_setup_teardown(snapshots_in_memory, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			snapshot_and_plain_states_together, setup, teardown),
		cmocka_unit_test_setup_teardown(
			bad_state_definitions_are_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(cached_states_in_memory, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			cached_state_skips_own_events_of_other_streams, setup,
			teardown),
		cmocka_unit_test(version_seeing_a_later_transaction),
	};

	return cmocka_run_group_tests_name("decision", tests, NULL, NULL);
}
