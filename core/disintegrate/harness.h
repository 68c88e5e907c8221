/*
 * Given / when / then tests for decisions.
 *
 * A harness holds one case at a time: the events that already happened
 * (given), the decision to make (when), and checks on its outcome (then).
 * It runs in memory (no database) or against a real store, and both modes
 * run the decision maker's own load, dispatch, process and append code, so
 * a case that passes in one mode means the same in the other. In store mode
 * the given events are appended to the store, the decision is made there,
 * and `then` also checks that what the decision emitted is in the log.
 *
 * Every call returns 0 or a DIS_E* code; a failed check returns DIS_EINVAL
 * with the reason in dis_harness_errmsg(). With cmocka, wrap calls in
 * DIS_HARNESS_OK(h, call) to fail the test with that reason:
 *
 *	DIS_HARNESS_OK(h, dis_harness_given(h, "AccountOpened",
 *					    "{\"account_id\": 1}"));
 *	assert_int_equal(bank_withdraw(schema, 1, 10, &d), 0);
 *	DIS_HARNESS_OK(h, dis_harness_when(h, d));
 *	DIS_HARNESS_OK(h, dis_harness_then_err(h, BANK_EINSUFFICIENT));
 *
 * The library itself never calls cmocka; only the macro does, in the test.
 */
#ifndef DISINTEGRATE_HARNESS_H
#define DISINTEGRATE_HARNESS_H

#include <disintegrate/common.h>
#include <disintegrate/decision.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dis_harness dis_harness;

/* An in-memory harness over `schema` (which must outlive it). */
DIS_API int dis_harness_new(const dis_schema *schema, dis_harness **out);
/*
 * A harness on a real, migrated store (borrowed). dis_harness_reset()
 * empties the store's event and snapshot tables: give it a database of its
 * own.
 */
DIS_API int dis_harness_new_store(dis_store *store, dis_harness **out);
DIS_API void dis_harness_free(dis_harness *h);

/* Forgets the case (events, decision, outcome) to start another. */
DIS_API int dis_harness_reset(dis_harness *h);

DIS_API bool dis_harness_is_store(const dis_harness *h);
DIS_API const dis_schema *dis_harness_schema(const dis_harness *h);
/* The maker the harness uses: set its retry and snapshot options here. */
DIS_API dis_maker *dis_harness_maker(dis_harness *h);
/* Why the last call failed. Never NULL. */
DIS_API const char *dis_harness_errmsg(const dis_harness *h);

/* An event that happened before the decision, from a JSON object. */
DIS_API int dis_harness_given(dis_harness *h, const char *type,
			      const char *json);
/* The same from an event (copied). */
DIS_API int dis_harness_given_event(dis_harness *h, const dis_event *ev);
/*
 * An event someone else appends after the decision's first load and before
 * its append: the first append then conflicts if the event matches the
 * validation query, and the retry sees it.
 */
DIS_API int dis_harness_meanwhile(dis_harness *h, const char *type,
				  const char *json);

/*
 * Makes the decision, which the harness takes over (it is freed by the next
 * reset or by dis_harness_free). Returns 0 when the decision ran, whatever
 * its outcome (the then calls check that), or an error of the harness: the
 * given events could not be appended, or d is NULL (a failed constructor).
 */
DIS_API int dis_harness_when(dis_harness *h, dis_decision *d);
/* The decision of the case (to read its states or events), or NULL. */
DIS_API const dis_decision *dis_harness_decision(const dis_harness *h);

/*
 * The decision succeeded and emitted exactly these events, given as pairs
 * of type and JSON object and ended by NULL: then(h, NULL) expects none.
 */
DIS_API int dis_harness_then(dis_harness *h, ...)
#if defined(__GNUC__) || defined(__clang__)
	__attribute__((sentinel))
#endif
	;
DIS_API int dis_harness_then_events(dis_harness *h,
				    const dis_event *const *events, size_t n);
/* The decision refused with domain error `code` (its dis_ctx_fail code). */
DIS_API int dis_harness_then_err(dis_harness *h, int code);
/* The decision returned `status` (a DIS_E* code, e.g. DIS_ECONFLICT). */
DIS_API int dis_harness_then_status(dis_harness *h, int status);
/*
 * The decision succeeded and `fn` accepts it (non-zero: the check fails).
 * fn may use cmocka asserts directly.
 */
typedef int (*dis_harness_assert_fn)(void *arg, const dis_decision *d);
DIS_API int dis_harness_then_assert(dis_harness *h, dis_harness_assert_fn fn,
				    void *arg);

/* For cmocka tests: fail the running test with the harness's message. */
#define DIS_HARNESS_OK(h, call)                                \
	do {                                                   \
		if ((call) != 0)                               \
			fail_msg("%s", dis_harness_errmsg(h)); \
	} while (0)

#ifdef __cplusplus
}
#endif
#endif
