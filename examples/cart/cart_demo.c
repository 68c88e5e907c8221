/*
 * The cart demo: a short scenario against the database of the PG*
 * environment, ending with two users racing for the last coupon.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cart.h"

static dis_schema *schema;
static dis_maker *maker;

/* `dp` is read after `rc` (its constructor's result) was computed. */
static int decide(const char *what, int rc, dis_decision **dp)
{
	dis_decision *d = *dp;

	if (rc) {
		printf("%-40s cannot build: %s\n", what, dis_strerror(rc));
		return rc;
	}
	rc = dis_maker_make(maker, d);
	if (rc == 0)
		printf("%-40s ok\n", what);
	else if (rc == DIS_EDOMAIN)
		printf("%-40s refused: %s\n", what, dis_decision_errmsg(d));
	else
		printf("%-40s failed: %s\n", what, dis_decision_errmsg(d));
	dis_decision_free(d);
	*dp = NULL;
	return rc == DIS_EDOMAIN ? 0 : rc;
}

static int nothing(dis_ctx *ctx, const void *const *states, const void *params)
{
	(void)ctx;
	(void)states;
	(void)params;
	return 0;
}

/* Loads a user's cart (no decision) and prints it. */
static int show(const char *user)
{
	struct cart init = {.user_id = user};
	const struct cart *c;
	dis_decision *d;
	int rc;

	if ((rc = dis_decision_new(schema, "ShowCart", nothing, NULL, 0, &d)))
		return rc;
	if ((rc = dis_decision_add_state(d, &cart_def, &init)) == 0 &&
	    (rc = dis_maker_load(maker, d)) == 0) {
		c = dis_decision_state(d, 0);
		printf("\n%s's cart:", user);
		for (size_t i = 0; i < c->nitems; i++)
			printf(" %d x %s", (int)c->items[i].quantity,
			       c->items[i].item_id);
		printf("%s%s\n", c->coupon ? ", coupon " : ", no coupon",
		       c->coupon ? c->coupon : "");
	}
	dis_decision_free(d);
	return rc;
}

int main(void)
{
	char err[512], u1[32], u2[32], c1[32];
	dis_store *store = NULL;
	dis_decision *d = NULL;
	int rc;

	if (cart_schema(&schema, err, sizeof(err))) {
		fprintf(stderr, "schema: %s\n", err);
		return 1;
	}
	if (dis_store_open(NULL, schema, &store, err, sizeof(err))) {
		fprintf(stderr, "connect: %s\n", err);
		return 2;
	}
	if (dis_store_migrate(store) || dis_maker_new(store, &maker)) {
		fprintf(stderr, "setup: %s\n", dis_store_errmsg(store));
		return 2;
	}
	snprintf(u1, sizeof(u1), "ann-%ld", (long)time(NULL));
	snprintf(u2, sizeof(u2), "bob-%ld", (long)time(NULL));
	snprintf(c1, sizeof(c1), "SPRING-%ld", (long)time(NULL));

	if ((rc = decide("ann adds 2 apples",
			 cart_add_item(schema, u1, "apple", 2, &d), &d)) ||
	    (rc = decide("ann adds 1 pear",
			 cart_add_item(schema, u1, "pear", 1, &d), &d)) ||
	    (rc = decide("ann adds apples again",
			 cart_add_item(schema, u1, "apple", 1, &d), &d)) ||
	    (rc = decide("ann wants 5 apples",
			 cart_update_item(schema, u1, "apple", 5, &d), &d)) ||
	    (rc = decide("ann removes the pear",
			 cart_remove_item(schema, u1, "pear", &d), &d)) ||
	    (rc = decide("bob adds 1 melon",
			 cart_add_item(schema, u2, "melon", 1, &d), &d)) ||
	    (rc = decide("one coupon is emitted",
			 cart_emit_coupon(schema, c1, 1, &d), &d)) ||
	    (rc = decide("ann applies it",
			 cart_apply_coupon(schema, u1, c1, &d), &d)) ||
	    (rc = decide("bob applies it too",
			 cart_apply_coupon(schema, u2, c1, &d), &d)) ||
	    (rc = decide("ann applies it again",
			 cart_apply_coupon(schema, u1, c1, &d), &d)))
		goto out;

	if ((rc = show(u1)) || (rc = show(u2)))
		goto out;
out:
	dis_maker_free(maker);
	dis_store_free(store);
	dis_schema_free(schema);
	return rc ? 2 : 0;
}
