/* The banking example's states and decisions. */
#include "banking.h"

#include <string.h>

int bank_schema(dis_schema **out, char *errbuf, size_t errlen)
{
	return dis_schema_parse(bank_avsc, out, errbuf, errlen);
}

/*
 * Adds a filter for `stream` of one account to q, leaving out the types in
 * `exclude` (NULL-terminated, may be NULL).
 */
static int account_filter(dis_query *q, const char *stream, int64_t account,
			  const char *const *exclude)
{
	dis_filter *f;
	int rc;

	if ((rc = dis_query_add_filter(q, &f)))
		return rc;
	dis_filter_stream(f, stream);
	dis_filter_where_long(f, "account_id", account);
	for (; exclude && *exclude; exclude++)
		dis_filter_exclude(f, *exclude);
	return dis_query_check(q);
}

/* ---- states ---- */

static int account_query(const void *state, dis_query *q)
{
	const struct bank_account *a = state;

	return account_filter(q, "AccountState", a->account_id, NULL);
}

static int account_mutate(void *state, const dis_event *ev)
{
	struct bank_account *a = state;
	const char *type = dis_event_type(ev);

	if (strcmp(type, "AccountOpened") == 0)
		a->opened = true;
	else if (strcmp(type, "AccountClosed") == 0)
		a->closed = true;
	return 0;
}

static int account_save(const void *state, dis_event *rec)
{
	const struct bank_account *a = state;
	int rc = dis_event_set_boolean(rec, "opened", a->opened);

	return rc ? rc : dis_event_set_boolean(rec, "closed", a->closed);
}

static int account_load(void *state, const dis_event *rec)
{
	struct bank_account *a = state;
	int rc = dis_event_get_boolean(rec, "opened", &a->opened);

	return rc ? rc : dis_event_get_boolean(rec, "closed", &a->closed);
}

const dis_state_def bank_account_def = {
	.name = "AccountState",
	.size = sizeof(struct bank_account),
	.query = account_query,
	.mutate = account_mutate,
	.snapshot_schema =
		"{\"type\": \"record\", \"name\": \"AccountState\", \"fields\": ["
		"{\"name\": \"opened\", \"type\": \"boolean\"},"
		"{\"name\": \"closed\", \"type\": \"boolean\"}]}",
	.snapshot_save = account_save,
	.snapshot_load = account_load,
};

static int balance_query(const void *state, dis_query *q)
{
	const struct bank_balance *b = state;

	return account_filter(q, "AccountBalance", b->account_id, NULL);
}

static int balance_mutate(void *state, const dis_event *ev)
{
	struct bank_balance *b = state;
	const char *type = dis_event_type(ev);
	int64_t amount;
	int rc;

	if ((rc = dis_event_get_long(ev, "amount", &amount)))
		return rc;
	if (strcmp(type, "AmountDeposited") == 0 ||
	    strcmp(type, "TransferReceived") == 0)
		b->balance += amount;
	else
		b->balance -= amount;
	return 0;
}

static int balance_save(const void *state, dis_event *rec)
{
	return dis_event_set_long(
		rec, "balance", ((const struct bank_balance *)state)->balance);
}

static int balance_load(void *state, const dis_event *rec)
{
	return dis_event_get_long(rec, "balance",
				  &((struct bank_balance *)state)->balance);
}

const dis_state_def bank_balance_def = {
	.name = "AccountBalance",
	.size = sizeof(struct bank_balance),
	.query = balance_query,
	.mutate = balance_mutate,
	.snapshot_schema =
		"{\"type\": \"record\", \"name\": \"AccountBalance\", \"fields\": ["
		"{\"name\": \"balance\", \"type\": \"long\"}]}",
	.snapshot_save = balance_save,
	.snapshot_load = balance_load,
};

/* ---- decisions ---- */

struct op {
	int64_t account;
	int64_t other; /* a transfer's beneficiary */
	int64_t amount;
};

/* What can reduce a balance: everything but the credits. */
static const char *const credits[] = {"AmountDeposited", "TransferReceived",
				      NULL};

/*
 * A new decision with the state of op->account, then (with_balance) its
 * balance, then (with_beneficiary) the state of op->other.
 */
static int decision(const dis_schema *schema, const char *name,
		    dis_process_fn process, const struct op *op,
		    bool with_balance, bool with_beneficiary,
		    dis_decision **out)
{
	struct bank_account acc = {.account_id = op->account};
	struct bank_balance bal = {.account_id = op->account};
	struct bank_account ben = {.account_id = op->other};
	dis_decision *d;
	int rc;

	if ((rc = dis_decision_new(schema, name, process, op, sizeof(*op), &d)))
		return rc;
	rc = dis_decision_add_state(d, &bank_account_def, &acc);
	if (rc == 0 && with_balance)
		rc = dis_decision_add_state(d, &bank_balance_def, &bal);
	if (rc == 0 && with_beneficiary)
		rc = dis_decision_add_state(d, &bank_account_def, &ben);
	if (rc == 0 && with_balance) {
		/* Validate the debits only; credits never invalidate. */
		dis_query *v;

		rc = dis_decision_validation(d, &v);
		if (rc == 0)
			rc = account_filter(v, "AccountState", op->account,
					    NULL);
		if (rc == 0)
			rc = account_filter(v, "AccountBalance", op->account,
					    credits);
		if (rc == 0 && with_beneficiary)
			rc = account_filter(v, "AccountState", op->other, NULL);
	}
	if (rc) {
		dis_decision_free(d);
		return rc;
	}
	*out = d;
	return 0;
}

static int check_open(dis_ctx *ctx, const struct bank_account *a)
{
	if (!a->opened)
		return dis_ctx_fail(ctx, BANK_EACCOUNT_NOT_FOUND,
				    "account %lld not found",
				    (long long)a->account_id);
	if (a->closed)
		return dis_ctx_fail(ctx, BANK_EACCOUNT_CLOSED,
				    "account %lld is closed",
				    (long long)a->account_id);
	return 0;
}

static int emit(dis_ctx *ctx, const char *type, int64_t account,
		const char *other_field, int64_t other, int64_t amount)
{
	dis_event *ev;
	int rc;

	if ((rc = dis_ctx_emit(ctx, type, &ev)))
		return rc;
	rc = dis_event_set_long(ev, "account_id", account);
	if (rc == 0 && other_field)
		rc = dis_event_set_long(ev, other_field, other);
	if (rc == 0 && amount)
		rc = dis_event_set_long(ev, "amount", amount);
	return rc;
}

static int open_process(dis_ctx *ctx, const void *const *states,
			const void *params)
{
	const struct bank_account *a = states[0];
	const struct op *op = params;

	if (a->opened)
		return dis_ctx_fail(ctx, BANK_EALREADY_OPENED,
				    "account %lld is already open",
				    (long long)op->account);
	return emit(ctx, "AccountOpened", op->account, NULL, 0, 0);
}

int bank_open(const dis_schema *schema, int64_t account, dis_decision **out)
{
	struct op op = {.account = account};

	return decision(schema, "OpenAccount", open_process, &op, false, false,
			out);
}

static int close_process(dis_ctx *ctx, const void *const *states,
			 const void *params)
{
	const struct op *op = params;
	int rc;

	if ((rc = check_open(ctx, states[0])))
		return rc;
	return emit(ctx, "AccountClosed", op->account, NULL, 0, 0);
}

int bank_close(const dis_schema *schema, int64_t account, dis_decision **out)
{
	struct op op = {.account = account};

	return decision(schema, "CloseAccount", close_process, &op, false,
			false, out);
}

static int deposit_process(dis_ctx *ctx, const void *const *states,
			   const void *params)
{
	const struct op *op = params;
	int rc;

	if (op->amount <= 0)
		return dis_ctx_fail(ctx, BANK_EINVALID_AMOUNT,
				    "invalid amount %lld",
				    (long long)op->amount);
	if ((rc = check_open(ctx, states[0])))
		return rc;
	return emit(ctx, "AmountDeposited", op->account, NULL, 0, op->amount);
}

int bank_deposit(const dis_schema *schema, int64_t account, int64_t amount,
		 dis_decision **out)
{
	struct op op = {.account = account, .amount = amount};

	return decision(schema, "DepositAmount", deposit_process, &op, false,
			false, out);
}

static int withdraw_process(dis_ctx *ctx, const void *const *states,
			    const void *params)
{
	const struct bank_balance *b = states[1];
	const struct op *op = params;
	int rc;

	if (op->amount <= 0)
		return dis_ctx_fail(ctx, BANK_EINVALID_AMOUNT,
				    "invalid amount %lld",
				    (long long)op->amount);
	if ((rc = check_open(ctx, states[0])))
		return rc;
	if (b->balance < op->amount)
		return dis_ctx_fail(ctx, BANK_EINSUFFICIENT_BALANCE,
				    "balance %lld is less than %lld",
				    (long long)b->balance,
				    (long long)op->amount);
	return emit(ctx, "AmountWithdrawn", op->account, NULL, 0, op->amount);
}

int bank_withdraw(const dis_schema *schema, int64_t account, int64_t amount,
		  dis_decision **out)
{
	struct op op = {.account = account, .amount = amount};

	return decision(schema, "WithdrawAmount", withdraw_process, &op, true,
			false, out);
}

static int transfer_process(dis_ctx *ctx, const void *const *states,
			    const void *params)
{
	const struct bank_balance *b = states[1];
	const struct op *op = params;
	int rc;

	if (op->amount <= 0 || op->account == op->other)
		return dis_ctx_fail(ctx, BANK_EINVALID_AMOUNT,
				    "invalid transfer of %lld from %lld to "
				    "%lld",
				    (long long)op->amount,
				    (long long)op->account,
				    (long long)op->other);
	if ((rc = check_open(ctx, states[0])) ||
	    (rc = check_open(ctx, states[2])))
		return rc;
	if (b->balance < op->amount)
		return dis_ctx_fail(ctx, BANK_EINSUFFICIENT_BALANCE,
				    "balance %lld is less than %lld",
				    (long long)b->balance,
				    (long long)op->amount);
	if ((rc = emit(ctx, "TransferSent", op->account, "to_account",
		       op->other, op->amount)))
		return rc;
	return emit(ctx, "TransferReceived", op->other, "from_account",
		    op->account, op->amount);
}

int bank_transfer(const dis_schema *schema, int64_t from, int64_t to,
		  int64_t amount, dis_decision **out)
{
	struct op op = {.account = from, .other = to, .amount = amount};

	return decision(schema, "SendMoney", transfer_process, &op, true, true,
			out);
}

static int no_process(dis_ctx *ctx, const void *const *states,
		      const void *params)
{
	(void)ctx;
	(void)states;
	(void)params;
	return 0;
}

int bank_balance_of(dis_maker *maker, const dis_schema *schema, int64_t account,
		    int64_t *balance)
{
	struct bank_balance init = {.account_id = account};
	dis_decision *d;
	int rc;

	if ((rc = dis_decision_new(schema, "Balance", no_process, NULL, 0, &d)))
		return rc;
	rc = dis_decision_add_state(d, &bank_balance_def, &init);
	if (rc == 0)
		rc = dis_maker_load(maker, d);
	if (rc == 0)
		*balance =
			((const struct bank_balance *)dis_decision_state(d, 0))
				->balance;
	dis_decision_free(d);
	return rc;
}
