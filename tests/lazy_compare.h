/*
 * The getters that read a not yet decoded event in place, against the
 * same event decoded: shared by the unit test (test_lazy_event.c) and the
 * decode fuzz target. Each getter runs on a fresh undecoded event from
 * `fresh`: a getter that takes the decoding path decodes its event, and a
 * getter after it on the same event would no longer read in place.
 */
#ifndef DIS_TEST_LAZY_COMPARE_H
#define DIS_TEST_LAZY_COMPARE_H

#include "core-internal.h"

#include <stdbool.h>
#include <string.h>

/* A new undecoded event of the bytes under test, or NULL. */
typedef dis_event *(*lazy_fresh_fn)(void *arg);

/*
 * The first getter (its name) whose result or value on `field` differs
 * between a fresh undecoded event and `eager`, or NULL when none does.
 */
static inline const char *lazy_getter_differs(const dis_event *eager,
					      const char *field,
					      lazy_fresh_fn fresh, void *arg)
{
	int64_t l1 = 0, l2 = 0;
	int32_t i1 = 0, i2 = 0;
	double d1 = 0, d2 = 0;
	bool b1 = false, b2 = false;
	const char *s1 = NULL, *s2 = NULL;
	const void *p1 = NULL, *p2 = NULL;
	size_t n1 = 0, n2 = 0;
	dis_event *v;

	if (!(v = fresh(arg)) ||
	    dis_event_get_long(v, field, &l1) !=
		    dis_event_get_long(eager, field, &l2) ||
	    l1 != l2)
		return "get_long";
	if (!(v = fresh(arg)) ||
	    dis_event_get_int(v, field, &i1) !=
		    dis_event_get_int(eager, field, &i2) ||
	    i1 != i2)
		return "get_int";
	/* NaN equals NaN here: the same bits read either way. */
	if (!(v = fresh(arg)) ||
	    dis_event_get_double(v, field, &d1) !=
		    dis_event_get_double(eager, field, &d2) ||
	    (d1 != d2 && !(d1 != d1 && d2 != d2)))
		return "get_double";
	if (!(v = fresh(arg)) ||
	    dis_event_get_boolean(v, field, &b1) !=
		    dis_event_get_boolean(eager, field, &b2) ||
	    b1 != b2)
		return "get_boolean";
	if (!(v = fresh(arg)) ||
	    dis_event_get_string(v, field, &s1) !=
		    dis_event_get_string(eager, field, &s2) ||
	    (s1 != s2 && strcmp(s1, s2)))
		return "get_string";
	if (!(v = fresh(arg)) ||
	    dis_event_get_bytes(v, field, &p1, &n1) !=
		    dis_event_get_bytes(eager, field, &p2, &n2) ||
	    n1 != n2 || (n1 && memcmp(p1, p2, n1)))
		return "get_bytes";
	if (!(v = fresh(arg)) ||
	    dis_event_is_null(v, field) != dis_event_is_null(eager, field))
		return "is_null";
	return NULL;
}

/* Whether domain id `j` of a fresh undecoded event differs from eager's. */
static inline bool lazy_idval_differs(const dis_event *eager, int j,
				      lazy_fresh_fn fresh, void *arg)
{
	dis__idval v1, v2;
	dis_event *v = fresh(arg);
	int r1, r2;

	if (!v)
		return true;
	r1 = dis__event_idval(v, j, &v1);
	r2 = dis__event_idval(eager, j, &v2);
	if (r1 != r2)
		return true;
	return !r1 && (v1.present != v2.present || v1.num != v2.num ||
		       (v1.str != v2.str &&
			(!v1.str || !v2.str || strcmp(v1.str, v2.str))));
}

#endif
