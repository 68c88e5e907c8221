/* The cart example's states and decisions. */
#include "cart.h"

#include <stdlib.h>
#include <string.h>

#include <avro.h>

int cart_schema(dis_schema **out, char *errbuf, size_t errlen)
{
	return dis_schema_parse(cart_avsc, out, errbuf, errlen);
}

static int where(dis_query *q, const char *stream, const char *type,
		 const char *id, const char *value)
{
	dis_filter *f;
	int rc;

	if ((rc = dis_query_add_filter(q, &f)))
		return rc;
	if (stream)
		dis_filter_stream(f, stream);
	if (type)
		dis_filter_type(f, type);
	dis_filter_where_string(f, id, value);
	return dis_query_check(q);
}

/* ---- the cart ---- */

const struct cart_item *cart_find(const struct cart *c, const char *item)
{
	for (size_t i = 0; i < c->nitems; i++)
		if (strcmp(c->items[i].item_id, item) == 0)
			return &c->items[i];
	return NULL;
}

static int cart_put(struct cart *c, const char *item, int32_t quantity)
{
	struct cart_item *it = (struct cart_item *)cart_find(c, item);
	struct cart_item *items;

	if (it) {
		it->quantity = quantity;
		return 0;
	}
	items = realloc(c->items, (c->nitems + 1) * sizeof(*items));
	if (!items)
		return DIS_ENOMEM;
	c->items = items;
	it = &items[c->nitems];
	if (!(it->item_id = strdup(item)))
		return DIS_ENOMEM;
	it->quantity = quantity;
	c->nitems++;
	return 0;
}

static void cart_drop(struct cart *c, const char *item)
{
	struct cart_item *it = (struct cart_item *)cart_find(c, item);

	if (!it)
		return;
	free(it->item_id);
	*it = c->items[--c->nitems];
}

static void cart_destroy(void *state)
{
	struct cart *c = state;

	for (size_t i = 0; i < c->nitems; i++)
		free(c->items[i].item_id);
	free(c->items);
	free(c->coupon);
	c->items = NULL;
	c->nitems = 0;
	c->coupon = NULL;
}

static int cart_query(const void *state, dis_query *q)
{
	return where(q, "CartEvent", NULL, "user_id",
		     ((const struct cart *)state)->user_id);
}

static int cart_mutate(void *state, const dis_event *ev)
{
	struct cart *c = state;
	const char *type = dis_event_type(ev);
	const char *item = NULL, *coupon = NULL;
	int32_t quantity = 0;
	int rc;

	if (strcmp(type, "CouponApplied") == 0) {
		if ((rc = dis_event_get_string(ev, "coupon_id", &coupon)))
			return rc;
		free(c->coupon);
		c->coupon = strdup(coupon);
		return c->coupon ? 0 : DIS_ENOMEM;
	}
	if ((rc = dis_event_get_string(ev, "item_id", &item)))
		return rc;
	if (strcmp(type, "ItemAdded") == 0) {
		if ((rc = dis_event_get_int(ev, "quantity", &quantity)))
			return rc;
		return cart_put(c, item, quantity);
	}
	if (strcmp(type, "ItemUpdated") == 0) {
		if ((rc = dis_event_get_int(ev, "new_quantity", &quantity)))
			return rc;
		return cart_put(c, item, quantity);
	}
	cart_drop(c, item);
	return 0;
}

/* The snapshot holds the items as an Avro array, through avro-c. */
static int cart_save(const void *state, dis_event *rec)
{
	const struct cart *c = state;
	avro_value_t *root = (avro_value_t *)dis_event_avro(rec);
	avro_value_t items, item, field;

	if (avro_value_get_by_name(root, "items", &items, NULL))
		return DIS_ESERDE;
	for (size_t i = 0; i < c->nitems; i++) {
		if (avro_value_append(&items, &item, NULL) ||
		    avro_value_get_by_name(&item, "item_id", &field, NULL) ||
		    avro_value_set_string(&field, c->items[i].item_id) ||
		    avro_value_get_by_name(&item, "quantity", &field, NULL) ||
		    avro_value_set_int(&field, c->items[i].quantity))
			return DIS_ESERDE;
	}
	if (c->coupon)
		return dis_event_set_string(rec, "coupon", c->coupon);
	return dis_event_set_null(rec, "coupon");
}

static int cart_load(void *state, const dis_event *rec)
{
	struct cart *c = state;
	avro_value_t *root = (avro_value_t *)dis_event_avro((dis_event *)rec);
	avro_value_t items, item, field;
	const char *coupon;
	size_t n = 0;
	int rc;

	if (avro_value_get_by_name(root, "items", &items, NULL) ||
	    avro_value_get_size(&items, &n))
		return DIS_ESERDE;
	for (size_t i = 0; i < n; i++) {
		const char *id;
		size_t len;
		int32_t quantity;

		if (avro_value_get_by_index(&items, i, &item, NULL) ||
		    avro_value_get_by_name(&item, "item_id", &field, NULL) ||
		    avro_value_get_string(&field, &id, &len) ||
		    avro_value_get_by_name(&item, "quantity", &field, NULL) ||
		    avro_value_get_int(&field, &quantity))
			return DIS_ESERDE;
		if ((rc = cart_put(c, id, quantity)))
			return rc;
	}
	if (!dis_event_is_null(rec, "coupon")) {
		if ((rc = dis_event_get_string(rec, "coupon", &coupon)))
			return rc;
		if (!(c->coupon = strdup(coupon)))
			return DIS_ENOMEM;
	}
	return 0;
}

const dis_state_def cart_def = {
	.name = "Cart",
	.size = sizeof(struct cart),
	.query = cart_query,
	.mutate = cart_mutate,
	.destroy = cart_destroy,
	.snapshot_schema =
		"{\"type\": \"record\", \"name\": \"Cart\", \"fields\": ["
		" {\"name\": \"items\", \"type\": {\"type\": \"array\","
		"  \"items\": {\"type\": \"record\", \"name\": \"CartItem\","
		"   \"fields\": [{\"name\": \"item_id\", \"type\": \"string\"},"
		"    {\"name\": \"quantity\", \"type\": \"int\"}]}}},"
		" {\"name\": \"coupon\", \"type\": [\"null\", \"string\"],"
		"  \"default\": null}]}",
	.snapshot_save = cart_save,
	.snapshot_load = cart_load,
};

/* ---- the coupon ---- */

static int coupon_query(const void *state, dis_query *q)
{
	return where(q, "CouponEvent", NULL, "coupon_id",
		     ((const struct coupon *)state)->coupon_id);
}

static int coupon_mutate(void *state, const dis_event *ev)
{
	struct coupon *c = state;
	int32_t quantity;
	int rc;

	if (strcmp(dis_event_type(ev), "CouponApplied") == 0) {
		c->available--;
		return 0;
	}
	if ((rc = dis_event_get_int(ev, "quantity", &quantity)))
		return rc;
	c->available += quantity;
	return 0;
}

static int coupon_save(const void *state, dis_event *rec)
{
	return dis_event_set_long(rec, "available",
				  ((const struct coupon *)state)->available);
}

static int coupon_load(void *state, const dis_event *rec)
{
	return dis_event_get_long(rec, "available",
				  &((struct coupon *)state)->available);
}

const dis_state_def coupon_def = {
	.name = "Coupon",
	.size = sizeof(struct coupon),
	.query = coupon_query,
	.mutate = coupon_mutate,
	.snapshot_schema =
		"{\"type\": \"record\", \"name\": \"Coupon\", \"fields\": ["
		"{\"name\": \"available\", \"type\": \"long\"}]}",
	.snapshot_save = coupon_save,
	.snapshot_load = coupon_load,
};

/* ---- decisions ---- */

struct cart_op {
	const char *user;
	const char *item;
	const char *coupon;
	int32_t quantity;
};

/*
 * A decision whose parameters are copies of user, item and coupon (each may
 * be NULL), with the cart of `user` and the coupon as states when given.
 */
static int decision(const dis_schema *schema, const char *name,
		    dis_process_fn process, const char *user, const char *item,
		    const char *coupon, int32_t quantity, bool with_cart,
		    bool with_coupon, dis_decision **out)
{
	struct cart_op init = {.quantity = quantity}, *op;
	dis_decision *d;
	int rc;

	if ((rc = dis_decision_new(schema, name, process, &init, sizeof(init),
				   &d)))
		return rc;
	op = dis_decision_params(d);
	op->user = user ? dis_decision_strdup(d, user) : NULL;
	op->item = item ? dis_decision_strdup(d, item) : NULL;
	op->coupon = coupon ? dis_decision_strdup(d, coupon) : NULL;
	if ((user && !op->user) || (item && !op->item) ||
	    (coupon && !op->coupon))
		rc = DIS_ENOMEM;
	if (rc == 0 && with_cart) {
		struct cart c = {.user_id = op->user};

		rc = dis_decision_add_state(d, &cart_def, &c);
	}
	if (rc == 0 && with_coupon) {
		struct coupon c = {.coupon_id = op->coupon};

		rc = dis_decision_add_state(d, &coupon_def, &c);
	}
	if (rc) {
		dis_decision_free(d);
		return rc;
	}
	*out = d;
	return 0;
}

static int emit_item(dis_ctx *ctx, const char *type, const struct cart_op *op,
		     const char *quantity_field)
{
	dis_event *ev;
	int rc;

	if ((rc = dis_ctx_emit(ctx, type, &ev)) ||
	    (rc = dis_event_set_string(ev, "user_id", op->user)) ||
	    (rc = dis_event_set_string(ev, "item_id", op->item)))
		return rc;
	if (quantity_field)
		rc = dis_event_set_int(ev, quantity_field, op->quantity);
	return rc;
}

static int add_process(dis_ctx *ctx, const void *const *states,
		       const void *params)
{
	const struct cart_op *op = params;

	if (op->quantity <= 0)
		return dis_ctx_fail(ctx, CART_EINVALID_QUANTITY,
				    "invalid quantity %d", (int)op->quantity);
	if (cart_find(states[0], op->item))
		return dis_ctx_fail(ctx, CART_EITEM_IN_CART,
				    "%s is already in the cart", op->item);
	return emit_item(ctx, "ItemAdded", op, "quantity");
}

int cart_add_item(const dis_schema *schema, const char *user, const char *item,
		  int32_t quantity, dis_decision **out)
{
	return decision(schema, "AddItem", add_process, user, item, NULL,
			quantity, true, false, out);
}

static int remove_process(dis_ctx *ctx, const void *const *states,
			  const void *params)
{
	const struct cart_op *op = params;

	if (!cart_find(states[0], op->item))
		return dis_ctx_fail(ctx, CART_EITEM_NOT_IN_CART,
				    "%s is not in the cart", op->item);
	return emit_item(ctx, "ItemRemoved", op, NULL);
}

int cart_remove_item(const dis_schema *schema, const char *user,
		     const char *item, dis_decision **out)
{
	return decision(schema, "RemoveItem", remove_process, user, item, NULL,
			0, true, false, out);
}

static int update_process(dis_ctx *ctx, const void *const *states,
			  const void *params)
{
	const struct cart_op *op = params;

	if (op->quantity <= 0)
		return dis_ctx_fail(ctx, CART_EINVALID_QUANTITY,
				    "invalid quantity %d", (int)op->quantity);
	if (!cart_find(states[0], op->item))
		return dis_ctx_fail(ctx, CART_EITEM_NOT_IN_CART,
				    "%s is not in the cart", op->item);
	return emit_item(ctx, "ItemUpdated", op, "new_quantity");
}

int cart_update_item(const dis_schema *schema, const char *user,
		     const char *item, int32_t quantity, dis_decision **out)
{
	return decision(schema, "UpdateItem", update_process, user, item, NULL,
			quantity, true, false, out);
}

/* Emitting coupons needs no state: the decision appends unchecked. */
static int emit_coupon_process(dis_ctx *ctx, const void *const *states,
			       const void *params)
{
	const struct cart_op *op = params;
	dis_event *ev;
	int rc;

	(void)states;
	if (op->quantity <= 0)
		return dis_ctx_fail(ctx, CART_EINVALID_QUANTITY,
				    "invalid quantity %d", (int)op->quantity);
	if ((rc = dis_ctx_emit(ctx, "CouponEmitted", &ev)) ||
	    (rc = dis_event_set_string(ev, "coupon_id", op->coupon)))
		return rc;
	return dis_event_set_int(ev, "quantity", op->quantity);
}

int cart_emit_coupon(const dis_schema *schema, const char *coupon,
		     int32_t quantity, dis_decision **out)
{
	return decision(schema, "EmitCoupon", emit_coupon_process, NULL, NULL,
			coupon, quantity, false, false, out);
}

static int apply_coupon_process(dis_ctx *ctx, const void *const *states,
				const void *params)
{
	const struct cart *cart = states[0];
	const struct coupon *coupon = states[1];
	const struct cart_op *op = params;
	dis_event *ev;
	int rc;

	if (cart->coupon)
		return dis_ctx_fail(ctx, CART_ECOUPON_ALREADY_APPLIED,
				    "coupon %s already applied", cart->coupon);
	if (coupon->available <= 0)
		return dis_ctx_fail(ctx, CART_ECOUPON_NOT_AVAILABLE,
				    "coupon %s is not available", op->coupon);
	if ((rc = dis_ctx_emit(ctx, "CouponApplied", &ev)) ||
	    (rc = dis_event_set_string(ev, "coupon_id", op->coupon)))
		return rc;
	return dis_event_set_string(ev, "user_id", op->user);
}

int cart_apply_coupon(const dis_schema *schema, const char *user,
		      const char *coupon, dis_decision **out)
{
	dis_decision *d = NULL;
	dis_query *v;
	int rc;

	rc = decision(schema, "ApplyCoupon", apply_coupon_process, user, NULL,
		      coupon, 0, true, true, &d);
	if (rc)
		return rc;
	/*
	 * Items added meanwhile do not matter; a coupon applied to this cart
	 * or any change to the coupon does.
	 */
	rc = dis_decision_validation(d, &v);
	if (rc == 0)
		rc = where(v, NULL, "CouponApplied", "user_id", user);
	if (rc == 0)
		rc = where(v, "CouponEvent", NULL, "coupon_id", coupon);
	if (rc) {
		dis_decision_free(d);
		return rc;
	}
	*out = d;
	return 0;
}
