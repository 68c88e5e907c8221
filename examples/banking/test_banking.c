/*
 * Given/when/then cases of the banking example. The same cases run in
 * memory (unit suite) and, with --store, against a fresh PostgreSQL
 * database (pg suite).
 */
#include "example_cases.h"

#include "banking.h"

static void it_opens_an_account(void **state)
{
	(void)state;
	WHEN(bank_open(schema, 1, &d));
	THEN("AccountOpened", "{\"account_id\": 1}");
}

static void it_does_not_open_an_account_twice(void **state)
{
	(void)state;
	GIVEN("AccountOpened", "{\"account_id\": 1}");
	WHEN(bank_open(schema, 1, &d));
	THEN_ERR(BANK_EALREADY_OPENED);
}

static void it_closes_an_account(void **state)
{
	(void)state;
	GIVEN("AccountOpened", "{\"account_id\": 1}");
	WHEN(bank_close(schema, 1, &d));
	THEN("AccountClosed", "{\"account_id\": 1}");
}

static void it_does_not_close_a_missing_account(void **state)
{
	(void)state;
	GIVEN("AccountOpened", "{\"account_id\": 2}");
	WHEN(bank_close(schema, 1, &d));
	THEN_ERR(BANK_EACCOUNT_NOT_FOUND);
}

static void it_does_not_close_a_closed_account(void **state)
{
	(void)state;
	GIVEN("AccountOpened", "{\"account_id\": 1}");
	GIVEN("AccountClosed", "{\"account_id\": 1}");
	WHEN(bank_close(schema, 1, &d));
	THEN_ERR(BANK_EACCOUNT_CLOSED);
}

static void it_deposits_an_amount(void **state)
{
	(void)state;
	GIVEN("AccountOpened", "{\"account_id\": 1}");
	WHEN(bank_deposit(schema, 1, 20, &d));
	THEN("AmountDeposited", "{\"account_id\": 1, \"amount\": 20}");
}

static void it_does_not_deposit_into_a_missing_account(void **state)
{
	(void)state;
	WHEN(bank_deposit(schema, 1, 20, &d));
	THEN_ERR(BANK_EACCOUNT_NOT_FOUND);
}

static void it_does_not_deposit_into_a_closed_account(void **state)
{
	(void)state;
	GIVEN("AccountOpened", "{\"account_id\": 1}");
	GIVEN("AccountClosed", "{\"account_id\": 1}");
	WHEN(bank_deposit(schema, 1, 20, &d));
	THEN_ERR(BANK_EACCOUNT_CLOSED);
}

static void it_does_not_deposit_a_negative_amount(void **state)
{
	(void)state;
	GIVEN("AccountOpened", "{\"account_id\": 1}");
	WHEN(bank_deposit(schema, 1, -5, &d));
	THEN_ERR(BANK_EINVALID_AMOUNT);
}

static void it_withdraws_an_amount(void **state)
{
	(void)state;
	GIVEN("AccountOpened", "{\"account_id\": 1}");
	GIVEN("AmountDeposited", "{\"account_id\": 1, \"amount\": 10}");
	WHEN(bank_withdraw(schema, 1, 10, &d));
	THEN("AmountWithdrawn", "{\"account_id\": 1, \"amount\": 10}");
}

static void it_does_not_withdraw_from_a_missing_account(void **state)
{
	(void)state;
	WHEN(bank_withdraw(schema, 1, 10, &d));
	THEN_ERR(BANK_EACCOUNT_NOT_FOUND);
}

static void it_does_not_withdraw_from_a_closed_account(void **state)
{
	(void)state;
	GIVEN("AccountOpened", "{\"account_id\": 1}");
	GIVEN("AccountClosed", "{\"account_id\": 1}");
	WHEN(bank_withdraw(schema, 1, 5, &d));
	THEN_ERR(BANK_EACCOUNT_CLOSED);
}

static void it_does_not_withdraw_more_than_the_balance(void **state)
{
	(void)state;
	GIVEN("AccountOpened", "{\"account_id\": 1}");
	GIVEN("AmountDeposited", "{\"account_id\": 1, \"amount\": 10}");
	GIVEN("AmountWithdrawn", "{\"account_id\": 1, \"amount\": 6}");
	WHEN(bank_withdraw(schema, 1, 5, &d));
	THEN_ERR(BANK_EINSUFFICIENT_BALANCE);
}

static void it_reads_only_the_accounts_own_events(void **state)
{
	(void)state;
	GIVEN("AccountOpened", "{\"account_id\": 1}");
	GIVEN("AccountOpened", "{\"account_id\": 2}");
	GIVEN("AmountDeposited", "{\"account_id\": 2, \"amount\": 100}");
	GIVEN("AmountDeposited", "{\"account_id\": 1, \"amount\": 3}");
	WHEN(bank_withdraw(schema, 1, 4, &d));
	THEN_ERR(BANK_EINSUFFICIENT_BALANCE);
}

static void it_sends_a_transfer(void **state)
{
	(void)state;
	GIVEN("AccountOpened", "{\"account_id\": 1}");
	GIVEN("AmountDeposited", "{\"account_id\": 1, \"amount\": 100}");
	GIVEN("AccountOpened", "{\"account_id\": 2}");
	WHEN(bank_transfer(schema, 1, 2, 7, &d));
	THEN("TransferSent",
	     "{\"account_id\": 1, \"to_account\": 2, \"amount\": 7}",
	     "TransferReceived",
	     "{\"account_id\": 2, \"from_account\": 1, \"amount\": 7}");
}

static void it_does_not_transfer_from_a_missing_account(void **state)
{
	(void)state;
	GIVEN("AccountOpened", "{\"account_id\": 2}");
	WHEN(bank_transfer(schema, 1, 2, 7, &d));
	THEN_ERR(BANK_EACCOUNT_NOT_FOUND);
}

static void it_does_not_transfer_to_a_missing_account(void **state)
{
	(void)state;
	GIVEN("AccountOpened", "{\"account_id\": 1}");
	GIVEN("AmountDeposited", "{\"account_id\": 1, \"amount\": 5}");
	WHEN(bank_transfer(schema, 1, 2, 3, &d));
	THEN_ERR(BANK_EACCOUNT_NOT_FOUND);
}

static void it_does_not_transfer_more_than_the_balance(void **state)
{
	(void)state;
	GIVEN("AccountOpened", "{\"account_id\": 1}");
	GIVEN("AmountDeposited", "{\"account_id\": 1, \"amount\": 7}");
	GIVEN("AccountOpened", "{\"account_id\": 2}");
	WHEN(bank_transfer(schema, 1, 2, 8, &d));
	THEN_ERR(BANK_EINSUFFICIENT_BALANCE);
}

static void it_spends_a_received_transfer(void **state)
{
	(void)state;
	GIVEN("AccountOpened", "{\"account_id\": 2}");
	GIVEN("TransferReceived",
	      "{\"account_id\": 2, \"from_account\": 1, \"amount\": 9}");
	GIVEN("TransferSent",
	      "{\"account_id\": 1, \"to_account\": 2, \"amount\": 9}");
	WHEN(bank_withdraw(schema, 2, 9, &d));
	THEN("AmountWithdrawn", "{\"account_id\": 2, \"amount\": 9}");
}

static int one_withdrawal_of_ten(void *arg, const dis_decision *d)
{
	const dis_event *ev;
	int64_t amount = 0, account = 0;
	const struct bank_balance *bal;

	(void)arg;
	assert_int_equal(dis_decision_event_count(d), 1);
	ev = dis_decision_event(d, 0);
	assert_string_equal(dis_event_type(ev), "AmountWithdrawn");
	assert_int_equal(dis_event_get_long(ev, "account_id", &account), 0);
	assert_int_equal(dis_event_get_long(ev, "amount", &amount), 0);
	assert_int_equal(account, 1);
	assert_int_equal(amount, 10);
	assert_true(dis_event_id(ev) > 0);
	/* The states the decision saw. */
	assert_int_equal(dis_decision_state_count(d), 2);
	bal = dis_decision_state(d, 1);
	assert_int_equal(bal->balance, 10);
	return 0;
}

static void it_supports_custom_assertions(void **state)
{
	(void)state;
	GIVEN("AccountOpened", "{\"account_id\": 1}");
	GIVEN("AmountDeposited", "{\"account_id\": 1, \"amount\": 10}");
	WHEN(bank_withdraw(schema, 1, 10, &d));
	OK(dis_harness_then_assert(h, one_withdrawal_of_ten, NULL));
}

/* A deposit committed during a withdrawal does not make it conflict. */
static void a_deposit_never_invalidates_a_withdrawal(void **state)
{
	(void)state;
	GIVEN("AccountOpened", "{\"account_id\": 1}");
	GIVEN("AmountDeposited", "{\"account_id\": 1, \"amount\": 10}");
	MEANWHILE("AmountDeposited", "{\"account_id\": 1, \"amount\": 50}");
	MEANWHILE("TransferReceived",
		  "{\"account_id\": 1, \"from_account\": 2, \"amount\": 5}");
	WHEN(bank_withdraw(schema, 1, 10, &d));
	THEN("AmountWithdrawn", "{\"account_id\": 1, \"amount\": 10}");
	assert_int_equal(dis_decision_attempts(dis_harness_decision(h)), 1);
}

/* A withdrawal committed meanwhile does: the retry sees it and refuses. */
static void a_concurrent_withdrawal_invalidates_a_withdrawal(void **state)
{
	(void)state;
	GIVEN("AccountOpened", "{\"account_id\": 1}");
	GIVEN("AmountDeposited", "{\"account_id\": 1, \"amount\": 10}");
	MEANWHILE("AmountWithdrawn", "{\"account_id\": 1, \"amount\": 8}");
	WHEN(bank_withdraw(schema, 1, 5, &d));
	THEN_ERR(BANK_EINSUFFICIENT_BALANCE);
	assert_int_equal(dis_decision_attempts(dis_harness_decision(h)), 2);
}

/* Closing the beneficiary meanwhile invalidates a transfer. */
static void closing_the_beneficiary_invalidates_a_transfer(void **state)
{
	(void)state;
	GIVEN("AccountOpened", "{\"account_id\": 1}");
	GIVEN("AmountDeposited", "{\"account_id\": 1, \"amount\": 10}");
	GIVEN("AccountOpened", "{\"account_id\": 2}");
	MEANWHILE("AccountClosed", "{\"account_id\": 2}");
	WHEN(bank_transfer(schema, 1, 2, 5, &d));
	THEN_ERR(BANK_EACCOUNT_CLOSED);
	assert_int_equal(dis_decision_attempts(dis_harness_decision(h)), 2);
}

/* With no retries left the conflict is reported. */
static void a_conflict_without_retries_is_reported(void **state)
{
	(void)state;
	assert_int_equal(dis_maker_set_retry(dis_harness_maker(h), 1, 0, 0), 0);
	GIVEN("AccountOpened", "{\"account_id\": 1}");
	GIVEN("AmountDeposited", "{\"account_id\": 1, \"amount\": 10}");
	MEANWHILE("AmountWithdrawn", "{\"account_id\": 1, \"amount\": 1}");
	WHEN(bank_withdraw(schema, 1, 5, &d));
	OK(dis_harness_then_status(h, DIS_ECONFLICT));
	assert_int_equal(dis_maker_set_retry(dis_harness_maker(h), 5, 0, 0), 0);
}

/* The states round-trip through their snapshots. */
static void it_decides_from_snapshots(void **state)
{
	dis_maker *m = dis_harness_maker(h);
	dis_maker_stats st;

	(void)state;
	dis_maker_set_snapshots(m, true, 0);
	GIVEN("AccountOpened", "{\"account_id\": 1}");
	GIVEN("AmountDeposited", "{\"account_id\": 1, \"amount\": 10}");
	GIVEN("AmountWithdrawn", "{\"account_id\": 1, \"amount\": 3}");
	WHEN(bank_withdraw(schema, 1, 7, &d));
	THEN("AmountWithdrawn", "{\"account_id\": 1, \"amount\": 7}");
	dis_maker_get_stats(m, &st);
	assert_true(st.snapshots_stored >= 2);
	dis_maker_set_snapshots(m, false, 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(it_opens_an_account, case_setup),
		cmocka_unit_test_setup(it_does_not_open_an_account_twice,
				       case_setup),
		cmocka_unit_test_setup(it_closes_an_account, case_setup),
		cmocka_unit_test_setup(it_does_not_close_a_missing_account,
				       case_setup),
		cmocka_unit_test_setup(it_does_not_close_a_closed_account,
				       case_setup),
		cmocka_unit_test_setup(it_deposits_an_amount, case_setup),
		cmocka_unit_test_setup(
			it_does_not_deposit_into_a_missing_account, case_setup),
		cmocka_unit_test_setup(
			it_does_not_deposit_into_a_closed_account, case_setup),
		cmocka_unit_test_setup(it_does_not_deposit_a_negative_amount,
				       case_setup),
		cmocka_unit_test_setup(it_withdraws_an_amount, case_setup),
		cmocka_unit_test_setup(
			it_does_not_withdraw_from_a_missing_account,
			case_setup),
		cmocka_unit_test_setup(
			it_does_not_withdraw_from_a_closed_account, case_setup),
		cmocka_unit_test_setup(
			it_does_not_withdraw_more_than_the_balance, case_setup),
		cmocka_unit_test_setup(it_reads_only_the_accounts_own_events,
				       case_setup),
		cmocka_unit_test_setup(it_sends_a_transfer, case_setup),
		cmocka_unit_test_setup(
			it_does_not_transfer_from_a_missing_account,
			case_setup),
		cmocka_unit_test_setup(
			it_does_not_transfer_to_a_missing_account, case_setup),
		cmocka_unit_test_setup(
			it_does_not_transfer_more_than_the_balance, case_setup),
		cmocka_unit_test_setup(it_spends_a_received_transfer,
				       case_setup),
		cmocka_unit_test_setup(it_supports_custom_assertions,
				       case_setup),
		cmocka_unit_test_setup(a_deposit_never_invalidates_a_withdrawal,
				       case_setup),
		cmocka_unit_test_setup(
			a_concurrent_withdrawal_invalidates_a_withdrawal,
			case_setup),
		cmocka_unit_test_setup(
			closing_the_beneficiary_invalidates_a_transfer,
			case_setup),
		cmocka_unit_test_setup(a_conflict_without_retries_is_reported,
				       case_setup),
		cmocka_unit_test_setup(it_decides_from_snapshots, case_setup),
	};

	return run_example_cases("banking", bank_schema, tests,
				 sizeof(tests) / sizeof(tests[0]), argc, argv);
}
