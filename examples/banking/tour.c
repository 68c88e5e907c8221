/*
 * A decision end to end, for the README's tour: a balance state read from
 * the log, a withdrawal that refuses to overdraw, made by a decision maker
 * that appends only if no debit was committed meanwhile (and retries if one
 * was). Runs against the database of the PG* environment.
 */
#include <stdio.h>
#include <string.h>

#include <disintegrate/disintegrate.h>

extern const char bank_avsc[]; /* banking.avsc, embedded by the build */

/* The state: one account's balance, from its AccountBalance stream. */
struct balance {
	int64_t account_id;
	int64_t amount;
};

static int balance_query(const void *state, dis_query *q)
{
	const struct balance *b = state;
	dis_filter *f;

	dis_query_add_filter(q, &f);
	dis_filter_stream(f, "AccountBalance");
	dis_filter_where_long(f, "account_id", b->account_id);
	return dis_query_check(q);
}

static int balance_mutate(void *state, const dis_event *ev)
{
	struct balance *b = state;
	const char *type = dis_event_type(ev);
	int64_t amount = 0;

	dis_event_get_long(ev, "amount", &amount);
	if (!strcmp(type, "AmountDeposited") ||
	    !strcmp(type, "TransferReceived"))
		b->amount += amount;
	else
		b->amount -= amount;
	return 0;
}

static const dis_state_def balance_def = {
	.name = "TourBalance",
	.size = sizeof(struct balance),
	.query = balance_query,
	.mutate = balance_mutate,
};

/* The decision: withdraw, unless the balance is too low. */
enum { INSUFFICIENT_BALANCE = 1 };

struct withdraw {
	int64_t account_id;
	int64_t amount;
};

static int withdraw(dis_ctx *ctx, const void *const *states, const void *params)
{
	const struct balance *b = states[0];
	const struct withdraw *w = params;
	dis_event *ev;
	int rc;

	if (b->amount < w->amount)
		return dis_ctx_fail(ctx, INSUFFICIENT_BALANCE,
				    "balance %lld is less than %lld",
				    (long long)b->amount, (long long)w->amount);
	if ((rc = dis_ctx_emit(ctx, "AmountWithdrawn", &ev)))
		return rc;
	dis_event_set_long(ev, "account_id", w->account_id);
	return dis_event_set_long(ev, "amount", w->amount);
}

int main(void)
{
	struct withdraw w = {.account_id = 42, .amount = 30};
	struct balance init = {.account_id = 42};
	dis_schema *schema = NULL;
	dis_store *store = NULL;
	dis_maker *maker = NULL;
	dis_decision *d = NULL;
	char err[256];
	int rc;

	if (dis_schema_parse(bank_avsc, &schema, err, sizeof(err)) ||
	    dis_store_open(NULL, schema, &store, err, sizeof(err)) ||
	    dis_store_migrate(store) || dis_maker_new(store, &maker)) {
		fprintf(stderr, "setup failed: %s\n",
			store ? dis_store_errmsg(store) : err);
		return 2;
	}
	dis_decision_new(schema, "Withdraw", withdraw, &w, sizeof(w), &d);
	dis_decision_add_state(d, &balance_def, &init);

	rc = dis_maker_make(maker, d); /* load, decide, append, retry */
	if (rc == 0)
		printf("withdrawn: event %lld\n",
		       (long long)dis_event_id(dis_decision_event(d, 0)));
	else if (rc == DIS_EDOMAIN)
		printf("refused (%d): %s\n", dis_decision_domain_code(d),
		       dis_decision_errmsg(d));
	else
		printf("failed: %s: %s\n", dis_strerror(rc),
		       dis_decision_errmsg(d));

	dis_decision_free(d);
	dis_maker_free(maker);
	dis_store_free(store);
	dis_schema_free(schema);
	return rc == 0 || rc == DIS_EDOMAIN ? 0 : 1;
}
