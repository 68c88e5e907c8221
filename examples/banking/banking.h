/*
 * The banking example: accounts that are opened and closed, deposits,
 * withdrawals and transfers, as decisions over two kinds of state.
 *
 * States: bank_account (opened? closed?) reads the AccountState stream of
 * one account; bank_balance reads its AccountBalance stream. Both support
 * snapshots.
 *
 * Decisions are built by the bank_* constructors and made by a decision
 * maker (or a test harness); the caller frees them with
 * dis_decision_free(). A withdrawal validates against the account's state
 * and its debits only: a deposit (or an incoming transfer) committed while
 * it was decided never makes it conflict, because credits cannot make a
 * sufficient balance insufficient.
 */
#ifndef BANKING_H
#define BANKING_H

#include <disintegrate/disintegrate.h>

/* Domain errors (dis_decision_domain_code). */
enum {
	BANK_EINVALID_AMOUNT = 1,
	BANK_EINSUFFICIENT_BALANCE = 2,
	BANK_EALREADY_OPENED = 3,
	BANK_EACCOUNT_NOT_FOUND = 4,
	BANK_EACCOUNT_CLOSED = 5
};

/* The event schema (banking.avsc), embedded. */
extern const char bank_avsc[];
/* Parses it. */
int bank_schema(dis_schema **out, char *errbuf, size_t errlen);

struct bank_account {
	int64_t account_id;
	bool opened;
	bool closed;
};

struct bank_balance {
	int64_t account_id;
	int64_t balance;
};

extern const dis_state_def bank_account_def;
extern const dis_state_def bank_balance_def;

int bank_open(const dis_schema *schema, int64_t account, dis_decision **out);
int bank_close(const dis_schema *schema, int64_t account, dis_decision **out);
int bank_deposit(const dis_schema *schema, int64_t account, int64_t amount,
		 dis_decision **out);
int bank_withdraw(const dis_schema *schema, int64_t account, int64_t amount,
		  dis_decision **out);
int bank_transfer(const dis_schema *schema, int64_t from, int64_t to,
		  int64_t amount, dis_decision **out);

/* Read-your-state: loads the balance of an account. */
int bank_balance_of(dis_maker *maker, const dis_schema *schema, int64_t account,
		    int64_t *balance);

#endif
