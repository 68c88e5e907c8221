/*
 * The cart example: users add, remove and update items in their cart;
 * coupons are emitted with a quantity and applied to carts. Applying a
 * coupon decides on two states at once, the user's cart and the coupon, so
 * two users racing for the last coupon cannot both get it.
 *
 * Decisions are built by the cart_* constructors (the strings are copied)
 * and freed by the caller with dis_decision_free().
 */
#ifndef CART_H
#define CART_H

#include <disintegrate/disintegrate.h>

/* Domain errors (dis_decision_domain_code). */
enum {
	CART_EINVALID_QUANTITY = 1,
	CART_EITEM_IN_CART = 2,
	CART_EITEM_NOT_IN_CART = 3,
	CART_ECOUPON_ALREADY_APPLIED = 4,
	CART_ECOUPON_NOT_AVAILABLE = 5
};

/* The event schema (cart.avsc), embedded. */
extern const char cart_avsc[];
int cart_schema(dis_schema **out, char *errbuf, size_t errlen);

struct cart_item {
	char *item_id;
	int32_t quantity;
};

/* A user's cart: items and applied coupon are owned (see cart_def). */
struct cart {
	const char *user_id;
	struct cart_item *items;
	size_t nitems;
	char *coupon; /* NULL: none applied */
};

struct coupon {
	const char *coupon_id;
	int64_t available;
};

extern const dis_state_def cart_def;   /* with snapshots */
extern const dis_state_def coupon_def; /* with snapshots */

int cart_add_item(const dis_schema *schema, const char *user, const char *item,
		  int32_t quantity, dis_decision **out);
int cart_remove_item(const dis_schema *schema, const char *user,
		     const char *item, dis_decision **out);
int cart_update_item(const dis_schema *schema, const char *user,
		     const char *item, int32_t quantity, dis_decision **out);
int cart_emit_coupon(const dis_schema *schema, const char *coupon,
		     int32_t quantity, dis_decision **out);
int cart_apply_coupon(const dis_schema *schema, const char *user,
		      const char *coupon, dis_decision **out);

/* The item of the cart, or NULL. */
const struct cart_item *cart_find(const struct cart *c, const char *item);

#endif
