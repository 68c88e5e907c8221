/*
 * Given/when/then cases of the cart example. The same cases run in memory
 * (unit suite) and, with --store, against a fresh PostgreSQL database (pg
 * suite).
 */
#include "example_cases.h"

#include "cart.h"

#define ADDED(user, item, q)                               \
	"{\"user_id\": \"" user "\", \"item_id\": \"" item \
	"\", \"quantity\": " #q "}"

static void it_adds_an_item(void **state)
{
	(void)state;
	GIVEN("ItemAdded", ADDED("u1", "p1", 1));
	WHEN(cart_add_item(schema, "u1", "p2", 4, &d));
	THEN("ItemAdded", ADDED("u1", "p2", 4));
}

static void it_does_not_add_an_item_twice(void **state)
{
	(void)state;
	GIVEN("ItemAdded", ADDED("u1", "p1", 1));
	WHEN(cart_add_item(schema, "u1", "p1", 2, &d));
	THEN_ERR(CART_EITEM_IN_CART);
}

static void another_users_cart_does_not_matter(void **state)
{
	(void)state;
	GIVEN("ItemAdded", ADDED("u2", "p1", 1));
	WHEN(cart_add_item(schema, "u1", "p1", 2, &d));
	THEN("ItemAdded", ADDED("u1", "p1", 2));
}

static void it_does_not_add_a_zero_quantity(void **state)
{
	(void)state;
	WHEN(cart_add_item(schema, "u1", "p1", 0, &d));
	THEN_ERR(CART_EINVALID_QUANTITY);
}

static void it_removes_an_item(void **state)
{
	(void)state;
	GIVEN("ItemAdded", ADDED("u1", "p1", 1));
	WHEN(cart_remove_item(schema, "u1", "p1", &d));
	THEN("ItemRemoved", "{\"user_id\": \"u1\", \"item_id\": \"p1\"}");
}

static void it_does_not_remove_a_removed_item(void **state)
{
	(void)state;
	GIVEN("ItemAdded", ADDED("u1", "p1", 1));
	GIVEN("ItemRemoved", "{\"user_id\": \"u1\", \"item_id\": \"p1\"}");
	WHEN(cart_remove_item(schema, "u1", "p1", &d));
	THEN_ERR(CART_EITEM_NOT_IN_CART);
}

static void it_updates_an_item(void **state)
{
	(void)state;
	GIVEN("ItemAdded", ADDED("u1", "p1", 1));
	WHEN(cart_update_item(schema, "u1", "p1", 3, &d));
	THEN("ItemUpdated", "{\"user_id\": \"u1\", \"item_id\": \"p1\", "
			    "\"new_quantity\": 3}");
}

static void it_does_not_update_a_missing_item(void **state)
{
	(void)state;
	WHEN(cart_update_item(schema, "u1", "p1", 3, &d));
	THEN_ERR(CART_EITEM_NOT_IN_CART);
}

static void it_emits_a_coupon(void **state)
{
	(void)state;
	WHEN(cart_emit_coupon(schema, "c1", 2, &d));
	THEN("CouponEmitted", "{\"coupon_id\": \"c1\", \"quantity\": 2}");
}

static void it_applies_a_coupon(void **state)
{
	(void)state;
	GIVEN("CouponEmitted", "{\"coupon_id\": \"c1\", \"quantity\": 1}");
	GIVEN("ItemAdded", ADDED("u1", "p1", 1));
	WHEN(cart_apply_coupon(schema, "u1", "c1", &d));
	THEN("CouponApplied", "{\"coupon_id\": \"c1\", \"user_id\": \"u1\"}");
}

static void it_does_not_apply_a_second_coupon(void **state)
{
	(void)state;
	GIVEN("CouponEmitted", "{\"coupon_id\": \"c1\", \"quantity\": 5}");
	GIVEN("CouponEmitted", "{\"coupon_id\": \"c2\", \"quantity\": 5}");
	GIVEN("CouponApplied", "{\"coupon_id\": \"c1\", \"user_id\": \"u1\"}");
	WHEN(cart_apply_coupon(schema, "u1", "c2", &d));
	THEN_ERR(CART_ECOUPON_ALREADY_APPLIED);
}

static void it_does_not_apply_an_unknown_coupon(void **state)
{
	(void)state;
	WHEN(cart_apply_coupon(schema, "u1", "c1", &d));
	THEN_ERR(CART_ECOUPON_NOT_AVAILABLE);
}

static void it_does_not_apply_a_used_up_coupon(void **state)
{
	(void)state;
	GIVEN("CouponEmitted", "{\"coupon_id\": \"c1\", \"quantity\": 1}");
	GIVEN("CouponApplied", "{\"coupon_id\": \"c1\", \"user_id\": \"u2\"}");
	WHEN(cart_apply_coupon(schema, "u1", "c1", &d));
	THEN_ERR(CART_ECOUPON_NOT_AVAILABLE);
}

/* Items added meanwhile do not invalidate applying a coupon. */
static void items_added_meanwhile_do_not_conflict(void **state)
{
	(void)state;
	GIVEN("CouponEmitted", "{\"coupon_id\": \"c1\", \"quantity\": 1}");
	MEANWHILE("ItemAdded", ADDED("u1", "p9", 1));
	WHEN(cart_apply_coupon(schema, "u1", "c1", &d));
	THEN("CouponApplied", "{\"coupon_id\": \"c1\", \"user_id\": \"u1\"}");
	assert_int_equal(dis_decision_attempts(dis_harness_decision(h)), 1);
}

/* Another user taking the last coupon meanwhile does. */
static void the_last_coupon_goes_to_one_user(void **state)
{
	(void)state;
	GIVEN("CouponEmitted", "{\"coupon_id\": \"c1\", \"quantity\": 1}");
	MEANWHILE("CouponApplied",
		  "{\"coupon_id\": \"c1\", \"user_id\": \"u2\"}");
	WHEN(cart_apply_coupon(schema, "u1", "c1", &d));
	THEN_ERR(CART_ECOUPON_NOT_AVAILABLE);
	assert_int_equal(dis_decision_attempts(dis_harness_decision(h)), 2);
}

static int cart_has_two_items(void *arg, const dis_decision *d)
{
	const struct cart *c = dis_decision_state(d, 0);
	const struct coupon *cp = dis_decision_state(d, 1);

	(void)arg;
	assert_int_equal(c->nitems, 2);
	assert_non_null(cart_find(c, "p1"));
	assert_int_equal(cart_find(c, "p3")->quantity, 7);
	assert_null(c->coupon);
	assert_int_equal(cp->available, 3);
	return 0;
}

/* A cart with items round-trips through its snapshot (Avro arrays). */
static void it_decides_from_snapshots(void **state)
{
	dis_maker *m = dis_harness_maker(h);
	dis_maker_stats before, after;

	(void)state;
	dis_maker_get_stats(m, &before);
	dis_maker_set_snapshots(m, true, 0);
	GIVEN("CouponEmitted", "{\"coupon_id\": \"c1\", \"quantity\": 3}");
	GIVEN("ItemAdded", ADDED("u1", "p1", 1));
	GIVEN("ItemAdded", ADDED("u1", "p2", 1));
	GIVEN("ItemAdded", ADDED("u1", "p3", 1));
	GIVEN("ItemRemoved", "{\"user_id\": \"u1\", \"item_id\": \"p2\"}");
	GIVEN("ItemUpdated", "{\"user_id\": \"u1\", \"item_id\": \"p3\", "
			     "\"new_quantity\": 7}");
	WHEN(cart_apply_coupon(schema, "u1", "c1", &d));
	OK(dis_harness_then_assert(h, cart_has_two_items, NULL));
	dis_maker_get_stats(m, &after);
	assert_int_equal(after.snapshots_stored - before.snapshots_stored, 2);
	dis_maker_set_snapshots(m, false, 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(it_adds_an_item, case_setup),
		cmocka_unit_test_setup(it_does_not_add_an_item_twice,
				       case_setup),
		cmocka_unit_test_setup(another_users_cart_does_not_matter,
				       case_setup),
		cmocka_unit_test_setup(it_does_not_add_a_zero_quantity,
				       case_setup),
		cmocka_unit_test_setup(it_removes_an_item, case_setup),
		cmocka_unit_test_setup(it_does_not_remove_a_removed_item,
				       case_setup),
		cmocka_unit_test_setup(it_updates_an_item, case_setup),
		cmocka_unit_test_setup(it_does_not_update_a_missing_item,
				       case_setup),
		cmocka_unit_test_setup(it_emits_a_coupon, case_setup),
		cmocka_unit_test_setup(it_applies_a_coupon, case_setup),
		cmocka_unit_test_setup(it_does_not_apply_a_second_coupon,
				       case_setup),
		cmocka_unit_test_setup(it_does_not_apply_an_unknown_coupon,
				       case_setup),
		cmocka_unit_test_setup(it_does_not_apply_a_used_up_coupon,
				       case_setup),
		cmocka_unit_test_setup(items_added_meanwhile_do_not_conflict,
				       case_setup),
		cmocka_unit_test_setup(the_last_coupon_goes_to_one_user,
				       case_setup),
		cmocka_unit_test_setup(it_decides_from_snapshots, case_setup),
	};

	return run_example_cases("cart", cart_schema, tests,
				 sizeof(tests) / sizeof(tests[0]), argc, argv);
}
