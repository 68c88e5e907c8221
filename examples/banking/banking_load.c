/*
 * Load program for the banking example (not a timed test): N threads make
 * withdrawals, transfers and some deposits on a few hot accounts for a
 * while, each thread with its own connection and decision maker. Then the
 * log is replayed in position order to check that no balance ever went
 * negative, that the balances the decisions see equal the replay, and that
 * every conflict was either retried or reported.
 *
 *	banking_load [-t THREADS] [-s SECONDS] [-a ACCOUNTS] [-r ATTEMPTS]
 *	             [-S EVERY] [-c ENTRIES]
 *
 * -S sets the snapshot threshold (default 20; -1 turns snapshots off); -c
 * gives each maker a state cache of that many entries (default 0: none).
 *
 * The database comes from the PG* environment. Exit 0 when every check
 * holds, 1 when one fails, 2 on a setup error.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "banking.h"

#define MAX_ACCOUNTS 64
#define INITIAL 1000

static dis_schema *schema;
static int64_t accounts[MAX_ACCOUNTS];
static int naccounts = 4;
static unsigned attempts = 10;
static int every = 20;
static int cache_entries;
static atomic_bool stop;

struct worker {
	pthread_t thread;
	unsigned seed;
	uint64_t ok, refused, gave_up, failed;
	uint64_t withdrawals, transfers, deposits; /* succeeded */
	uint64_t events;                           /* appended */
	dis_maker_stats stats;
	char error[512];
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	dis_store *store = NULL;
	dis_maker *maker = NULL;
	char err[256];

	if (dis_store_open(NULL, schema, &store, err, sizeof(err)) ||
	    dis_maker_new(store, &maker)) {
		snprintf(w->error, sizeof(w->error), "connect: %s", err);
		dis_store_free(store);
		return NULL;
	}
	dis_maker_set_retry(maker, attempts, 500, 20000);
	dis_maker_set_snapshots(maker, every >= 0,
				every >= 0 ? (unsigned)every : 0);
	if (dis_maker_set_cache(maker, (size_t)cache_entries)) {
		snprintf(w->error, sizeof(w->error), "cache: out of memory");
		dis_maker_free(maker);
		dis_store_free(store);
		return NULL;
	}
	while (!atomic_load(&stop)) {
		int op = rand_r(&w->seed) % 10;
		int64_t a = accounts[rand_r(&w->seed) % naccounts];
		int64_t b = accounts[rand_r(&w->seed) % naccounts];
		int64_t amount = 1 + rand_r(&w->seed) % 60;
		dis_decision *d = NULL;
		int rc;

		if (op < 5)
			rc = bank_withdraw(schema, a, amount, &d);
		else if (op < 8 && a != b)
			rc = bank_transfer(schema, a, b, amount, &d);
		else
			rc = bank_deposit(schema, a, amount / 2 + 1, &d);
		if (rc == 0)
			rc = dis_maker_make(maker, d);
		if (rc == 0) {
			const char *name = dis_decision_name(d);

			w->ok++;
			w->events += dis_decision_event_count(d);
			if (!strcmp(name, "WithdrawAmount"))
				w->withdrawals++;
			else if (!strcmp(name, "SendMoney"))
				w->transfers++;
			else
				w->deposits++;
		} else if (rc == DIS_EDOMAIN) {
			w->refused++;
		} else if (rc == DIS_ECONFLICT) {
			w->gave_up++;
		} else {
			w->failed++;
			snprintf(w->error, sizeof(w->error), "%s: %s",
				 dis_strerror(rc), dis_decision_errmsg(d));
		}
		dis_decision_free(d);
	}
	dis_maker_get_stats(maker, &w->stats);
	dis_maker_free(maker);
	dis_store_free(store);
	return NULL;
}

struct replay {
	int64_t balance[MAX_ACCOUNTS];
	int64_t lowest;
	uint64_t events;
	int64_t negative_at; /* first event id that made a balance negative */
};

static int slot(int64_t account)
{
	for (int i = 0; i < naccounts; i++)
		if (accounts[i] == account)
			return i;
	return -1;
}

static int apply(void *arg, const dis_event *ev)
{
	struct replay *r = arg;
	const char *type = dis_event_type(ev);
	int64_t account, amount;
	int i;

	if (dis_event_get_long(ev, "account_id", &account) ||
	    dis_event_get_long(ev, "amount", &amount) ||
	    (i = slot(account)) < 0)
		return 0;
	r->events++;
	if (!strcmp(type, "AmountDeposited") ||
	    !strcmp(type, "TransferReceived"))
		r->balance[i] += amount;
	else
		r->balance[i] -= amount;
	if (r->balance[i] < r->lowest)
		r->lowest = r->balance[i];
	if (r->balance[i] < 0 && !r->negative_at)
		r->negative_at = dis_event_id(ev);
	return 0;
}

/* Replays every balance event of the accounts in position order. */
static int replay(dis_store *store, struct replay *r)
{
	dis_position pos = DIS_POSITION_START, next;
	dis_query *q = NULL;
	dis_filter *f;
	int rc;

	memset(r, 0, sizeof(*r));
	if ((rc = dis_query_new(schema, &q)))
		return rc;
	for (int i = 0; i < naccounts; i++) {
		dis_query_add_filter(q, &f);
		dis_filter_stream(f, "AccountBalance");
		dis_filter_where_long(f, "account_id", accounts[i]);
	}
	for (;;) {
		uint64_t before = r->events;

		rc = dis_store_read(store, q, pos, 1000, apply, r, &next);
		if (rc ||
		    (r->events == before && dis_position_cmp(next, pos) == 0))
			break;
		pos = next;
		if (r->events == before)
			break;
	}
	dis_query_free(q);
	return rc;
}

int main(int argc, char **argv)
{
	int nthreads = 8, seconds = 10, opt, failures = 0;
	struct worker *workers;
	dis_store *store = NULL;
	dis_maker *maker = NULL;
	dis_maker_stats total = {0};
	uint64_t ok = 0, refused = 0, gave_up = 0, failed = 0, events = 0;
	uint64_t withdrawals = 0, transfers = 0, deposits = 0;
	struct replay r;
	char err[512];
	double t0, elapsed;
	int64_t base;

	while ((opt = getopt(argc, argv, "t:s:a:r:S:c:")) != -1) {
		switch (opt) {
		case 't': nthreads = atoi(optarg); break;
		case 's': seconds = atoi(optarg); break;
		case 'a': naccounts = atoi(optarg); break;
		case 'r': attempts = (unsigned)atoi(optarg); break;
		case 'S': every = atoi(optarg); break;
		case 'c': cache_entries = atoi(optarg); break;
		default:
			fprintf(stderr,
				"usage: %s [-t THREADS] [-s SECONDS] "
				"[-a ACCOUNTS] [-r ATTEMPTS] [-S EVERY] "
				"[-c ENTRIES]\n",
				argv[0]);
			return 2;
		}
	}
	if (nthreads < 1 || seconds < 1 || naccounts < 2 ||
	    naccounts > MAX_ACCOUNTS || attempts < 1 || cache_entries < 0) {
		fprintf(stderr, "bad arguments\n");
		return 2;
	}
	if (bank_schema(&schema, err, sizeof(err)) ||
	    dis_store_open(NULL, schema, &store, err, sizeof(err))) {
		fprintf(stderr, "setup: %s\n", err);
		return 2;
	}
	if (dis_store_migrate(store) || dis_maker_new(store, &maker)) {
		fprintf(stderr, "setup: %s\n", dis_store_errmsg(store));
		return 2;
	}
	base = (int64_t)time(NULL) % 100000000 * 1000;
	for (int i = 0; i < naccounts; i++) {
		dis_decision *d = NULL;

		accounts[i] = base + i;
		if (bank_open(schema, accounts[i], &d) ||
		    dis_maker_make(maker, d)) {
			fprintf(stderr, "open: %s\n", dis_decision_errmsg(d));
			return 2;
		}
		dis_decision_free(d);
		if (bank_deposit(schema, accounts[i], INITIAL, &d) ||
		    dis_maker_make(maker, d)) {
			fprintf(stderr, "deposit: %s\n",
				dis_decision_errmsg(d));
			return 2;
		}
		dis_decision_free(d);
	}

	printf("banking load: %d threads, %d s, %d hot accounts, %u attempts "
	       "per decision, snapshots %s%d, state cache %d\n",
	       nthreads, seconds, naccounts, attempts,
	       every >= 0 ? "every " : "off ", every, cache_entries);
	workers = calloc((size_t)nthreads, sizeof(*workers));
	t0 = now();
	for (int i = 0; i < nthreads; i++) {
		workers[i].seed = (unsigned)(t0 * 1000) + (unsigned)i * 7919u;
		pthread_create(&workers[i].thread, NULL, work, &workers[i]);
	}
	sleep((unsigned)seconds);
	atomic_store(&stop, true);
	for (int i = 0; i < nthreads; i++) {
		struct worker *w = &workers[i];

		pthread_join(w->thread, NULL);
		if (w->error[0]) {
			fprintf(stderr, "thread %d: %s\n", i, w->error);
			failures++;
		}
		ok += w->ok;
		refused += w->refused;
		gave_up += w->gave_up;
		failed += w->failed;
		events += w->events;
		withdrawals += w->withdrawals;
		transfers += w->transfers;
		deposits += w->deposits;
		total.decisions += w->stats.decisions;
		total.conflicts += w->stats.conflicts;
		total.retries += w->stats.retries;
		total.gave_up += w->stats.gave_up;
		total.events_read += w->stats.events_read;
		total.snapshots_loaded += w->stats.snapshots_loaded;
		total.snapshots_stored += w->stats.snapshots_stored;
		total.cache_hits += w->stats.cache_hits;
		total.cache_stale += w->stats.cache_stale;
	}
	elapsed = now() - t0;
	free(workers);

	printf("decisions: %" PRIu64 " (%.0f/s): %" PRIu64 " ok (%" PRIu64
	       " withdrawals, %" PRIu64 " transfers, %" PRIu64
	       " deposits), %" PRIu64 " refused, %" PRIu64
	       " gave up on conflicts, %" PRIu64 " failed\n",
	       total.decisions, (double)total.decisions / elapsed, ok,
	       withdrawals, transfers, deposits, refused, gave_up, failed);
	printf("conflicts: %" PRIu64 ", retries: %" PRIu64 " (%.3f per "
	       "decision), events read: %" PRIu64 ", snapshots loaded %" PRIu64
	       ", stored %" PRIu64 ", cached states used %" PRIu64
	       " (stale %" PRIu64 ")\n",
	       total.conflicts, total.retries,
	       total.decisions ? (double)total.retries / total.decisions : 0.0,
	       total.events_read, total.snapshots_loaded,
	       total.snapshots_stored, total.cache_hits, total.cache_stale);

	if (total.conflicts != total.retries + total.gave_up ||
	    total.gave_up != gave_up) {
		printf("FAIL: conflicts %" PRIu64 " != retries %" PRIu64
		       " + reported %" PRIu64 "\n",
		       total.conflicts, total.retries, gave_up);
		failures++;
	}
	if (failed) {
		printf("FAIL: %" PRIu64 " decisions failed\n", failed);
		failures++;
	}
	if (replay(store, &r)) {
		fprintf(stderr, "replay: %s\n", dis_store_errmsg(store));
		return 2;
	}
	printf("replay: %" PRIu64 " balance events, lowest balance %" PRId64
	       "\n",
	       r.events, r.lowest);
	if (r.negative_at) {
		printf("FAIL: a balance went negative at event %" PRId64 "\n",
		       r.negative_at);
		failures++;
	}
	if (r.events != (uint64_t)naccounts + events) {
		printf("FAIL: the log holds %" PRIu64 " balance events, the "
		       "decisions appended %" PRIu64 "\n",
		       r.events, (uint64_t)naccounts + events);
		failures++;
	}
	for (int i = 0; i < naccounts; i++) {
		int64_t bal = 0;

		if (bank_balance_of(maker, schema, accounts[i], &bal) ||
		    bal != r.balance[i]) {
			printf("FAIL: account %" PRId64 ": state %" PRId64
			       ", replay %" PRId64 "\n",
			       accounts[i], bal, r.balance[i]);
			failures++;
		}
	}
	printf("%s\n", failures ? "FAILED" : "all checks hold");
	dis_maker_free(maker);
	dis_store_free(store);
	dis_schema_free(schema);
	return failures ? 1 : 0;
}
