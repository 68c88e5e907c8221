/*
 * A small account domain shared by tests that need decisions with a real
 * invariant: Deposited and Withdrawn events carrying an account_id and an
 * amount, and a Balance state summing them (withdrawals negative).
 */
#ifndef DIS_TEST_BALANCE_H
#define DIS_TEST_BALANCE_H

#include <stdint.h>
#include <string.h>

#include <disintegrate/disintegrate.h>

/* The two records, for a schema's union (add more types after them). */
#define BALANCE_AVSC_TYPES                                          \
	"{\"type\":\"record\",\"name\":\"Deposited\",\"fields\":["  \
	" {\"name\":\"account_id\",\"type\":\"string\","            \
	"\"disintegrate.id\":true},"                                \
	" {\"name\":\"amount\",\"type\":\"long\"}]},"               \
	" {\"type\":\"record\",\"name\":\"Withdrawn\",\"fields\":[" \
	" {\"name\":\"account_id\",\"type\":\"string\","            \
	"\"disintegrate.id\":true},"                                \
	" {\"name\":\"amount\",\"type\":\"long\"}]}"

struct balance {
	const char *account;
	int64_t amount;
};

/* Deposits and withdrawals of the state's account. */
static inline int balance_query(const void *state, dis_query *q)
{
	const struct balance *b = state;
	dis_filter *f;
	int rc = dis_query_add_filter(q, &f);

	if (!rc)
		rc = dis_filter_type(f, "Deposited");
	if (!rc)
		rc = dis_filter_type(f, "Withdrawn");
	if (!rc)
		rc = dis_filter_where_string(f, "account_id", b->account);
	return rc;
}

/* The event's amount, negative for a withdrawal. */
static inline int balance_signed_amount(const dis_event *ev, int64_t *out)
{
	int64_t a = 0;
	int rc = dis_event_get_long(ev, "amount", &a);

	*out = strcmp(dis_event_type(ev), "Deposited") ? -a : a;
	return rc;
}

static inline int balance_mutate(void *state, const dis_event *ev)
{
	struct balance *b = state;
	int64_t a;
	int rc = balance_signed_amount(ev, &a);

	b->amount += a;
	return rc;
}

/* The Balance state (no snapshots). */
static const dis_state_def balance_state = {
	.name = "Balance",
	.size = sizeof(struct balance),
	.query = balance_query,
	.mutate = balance_mutate,
};

/* Snapshots of a balance: its amount (the account is the state's id). */
static inline int balance_save(const void *state, dis_event *rec)
{
	return dis_event_set_long(rec, "amount",
				  ((const struct balance *)state)->amount);
}

static inline int balance_load(void *state, const dis_event *rec)
{
	return dis_event_get_long(rec, "amount",
				  &((struct balance *)state)->amount);
}

/* The Balance state with snapshots, so a maker can cache it. */
static const dis_state_def balance_snap_state = {
	.name = "Balance",
	.size = sizeof(struct balance),
	.query = balance_query,
	.mutate = balance_mutate,
	.snapshot_schema = "{\"type\": \"record\", \"name\": "
			   "\"BalanceState\", \"fields\": [{\"name\": "
			   "\"amount\", \"type\": \"long\"}]}",
	.snapshot_save = balance_save,
	.snapshot_load = balance_load,
};

#endif
