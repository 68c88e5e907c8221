/*
 * The banking demo: a short scenario against the database of the PG*
 * environment (examples/demo.sh starts a throwaway cluster), printing each
 * decision's outcome, the balances and the accounts' event log.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "banking.h"

static dis_schema *schema;
static dis_maker *maker;

/* Makes one decision and says what happened. */
/* `dp` is read after `rc` (its constructor's result) was computed. */
static int decide(const char *what, int rc, dis_decision **dp)
{
	dis_decision *d = *dp;

	if (rc) {
		printf("%-34s cannot build: %s\n", what, dis_strerror(rc));
		return rc;
	}
	rc = dis_maker_make(maker, d);
	if (rc == 0)
		printf("%-34s ok (%zu event%s)\n", what,
		       dis_decision_event_count(d),
		       dis_decision_event_count(d) == 1 ? "" : "s");
	else if (rc == DIS_EDOMAIN)
		printf("%-34s refused: %s\n", what, dis_decision_errmsg(d));
	else
		printf("%-34s failed: %s: %s\n", what, dis_strerror(rc),
		       dis_decision_errmsg(d));
	dis_decision_free(d);
	*dp = NULL;
	return rc == DIS_EDOMAIN ? 0 : rc;
}

static int print_event(void *arg, const dis_event *ev)
{
	char *json = NULL;

	(void)arg;
	if (dis_event_to_json(ev, &json) == 0)
		printf("  %s\n", json);
	dis_free(json);
	return 0;
}

int main(void)
{
	char err[512], what[64];
	dis_store *store = NULL;
	dis_decision *d = NULL;
	dis_query *q = NULL;
	dis_filter *f;
	int64_t a, b, bal;
	int rc;

	if ((rc = bank_schema(&schema, err, sizeof(err)))) {
		fprintf(stderr, "schema: %s\n", err);
		return 1;
	}
	if ((rc = dis_store_open(NULL, schema, &store, err, sizeof(err)))) {
		fprintf(stderr, "connect: %s\n", err);
		return 2;
	}
	if ((rc = dis_store_migrate(store)) ||
	    (rc = dis_maker_new(store, &maker))) {
		fprintf(stderr, "setup: %s\n", dis_store_errmsg(store));
		return 2;
	}
	dis_maker_set_snapshots(maker, true, 2);
	/* Fresh account numbers, so the demo can run again on one database. */
	a = (int64_t)time(NULL) % 100000000 * 10 + 1;
	b = a + 1;
	printf("accounts %lld and %lld\n\n", (long long)a, (long long)b);

#define DECIDE(ctor, ...)                                  \
	do {                                               \
		snprintf(what, sizeof(what), __VA_ARGS__); \
		if ((rc = decide(what, ctor, &d)))         \
			goto out;                          \
	} while (0)
	DECIDE(bank_open(schema, a, &d), "open %lld", (long long)a);
	DECIDE(bank_open(schema, b, &d), "open %lld", (long long)b);
	DECIDE(bank_open(schema, a, &d), "open %lld again", (long long)a);
	DECIDE(bank_deposit(schema, a, 100, &d), "deposit 100 into %lld",
	       (long long)a);
	DECIDE(bank_withdraw(schema, a, 30, &d), "withdraw 30 from %lld",
	       (long long)a);
	DECIDE(bank_withdraw(schema, a, 100, &d), "withdraw 100 from %lld",
	       (long long)a);
	DECIDE(bank_transfer(schema, a, b, 50, &d),
	       "transfer 50 from %lld to %lld", (long long)a, (long long)b);
	DECIDE(bank_withdraw(schema, b, 20, &d), "withdraw 20 from %lld",
	       (long long)b);
	DECIDE(bank_close(schema, b, &d), "close %lld", (long long)b);
	DECIDE(bank_deposit(schema, b, 5, &d), "deposit 5 into %lld",
	       (long long)b);
	DECIDE(bank_transfer(schema, a, b, 5, &d),
	       "transfer 5 from %lld to %lld", (long long)a, (long long)b);
#undef DECIDE

	printf("\n");
	for (int64_t acc = a; acc <= b; acc++) {
		if ((rc = bank_balance_of(maker, schema, acc, &bal)))
			goto out;
		printf("balance of %lld: %lld\n", (long long)acc,
		       (long long)bal);
	}

	printf("\nthe log of both accounts:\n");
	if ((rc = dis_query_new(schema, &q)))
		goto out;
	for (int64_t acc = a; acc <= b; acc++) {
		dis_query_add_filter(q, &f);
		dis_filter_where_long(f, "account_id", acc);
	}
	rc = dis_store_load(store, q, print_event, NULL, NULL);
out:
	if (rc && rc != DIS_EDOMAIN)
		fprintf(stderr, "error: %s: %s\n", dis_strerror(rc),
			dis_maker_errmsg(maker)[0] ? dis_maker_errmsg(maker)
						   : dis_store_errmsg(store));
	dis_query_free(q);
	dis_maker_free(maker);
	dis_store_free(store);
	dis_schema_free(schema);
	return rc ? 2 : 0;
}
