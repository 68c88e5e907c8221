/*
 * Sharded listeners: one listener per shard, "ID#k/n", each over the
 * query restricted to its shard (dis_query_shard), with a checkpoint of
 * its own.
 */
#include "projections-internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dis_shard_listener_id(char *buf, size_t len, const char *id, uint32_t k,
			  uint32_t n)
{
	int w;

	if (!buf || !id || !*id || n == 0 || k >= n)
		return DIS_EINVAL;
	w = snprintf(buf, len, "%s#%" PRIu32 "/%" PRIu32, id, k, n);
	if (w < 0 || (size_t)w >= len || w > DIS_LISTENER_ID_MAX)
		return DIS_EINVAL;
	return 0;
}

/*
 * Checks every shard before any is registered, so a bad argument registers
 * nothing: its id, a shard given twice, its query, and an id the runtime
 * has already (`st`: its listeners).
 */
static int check_shards(dis_runtime *rt, const char *id, const dis_query *query,
			const char *shard_id, uint32_t n, const uint32_t *mine,
			size_t count, const dis_listener_stats *st, size_t nst,
			dis_handler_fn handler, void *arg,
			const dis_listener_config *cfg)
{
	char lid[DIS_LISTENER_ID_MAX + 1];
	int rc;

	for (size_t i = 0; i < count; i++) {
		uint32_t k = mine ? mine[i] : (uint32_t)i;
		dis_query *q;

		if (dis_shard_listener_id(lid, sizeof(lid), id, k, n))
			return DIS_EINVAL;
		for (size_t j = 0; mine && j < i; j++)
			if (mine[j] == k)
				return DIS_EINVAL;
		/* Registered already: the runtime refuses it as it does any
		 * duplicate, with its message, and registers nothing. */
		for (size_t j = 0; j < nst; j++)
			if (!strcmp(st[j].id, lid))
				return dis_runtime_add_listener(
					rt, lid, query, handler, arg, cfg);
		if ((rc = dis_query_copy(query, &q)))
			return rc;
		rc = dis_query_shard(q, shard_id, n, k);
		if (!rc)
			rc = dis_query_check(q);
		dis_query_free(q);
		if (rc)
			return rc;
	}
	return 0;
}

int dis_runtime_add_sharded(dis_runtime *rt, const char *id,
			    const dis_query *query, const char *shard_id,
			    uint32_t n, const uint32_t *mine, size_t nmine,
			    dis_handler_fn handler, void *arg,
			    const dis_listener_config *cfg)
{
	char lid[DIS_LISTENER_ID_MAX + 1];
	size_t count = mine ? nmine : n, nst = 0;
	dis_listener_stats *st = NULL;
	int rc;

	if (!rt || !id || !query || !shard_id || !handler || n == 0 ||
	    (mine && nmine == 0))
		return DIS_EINVAL;
	if ((rc = dis_runtime_stats(rt, &st, &nst)))
		return rc;
	rc = check_shards(rt, id, query, shard_id, n, mine, count, st, nst,
			  handler, arg, cfg);
	dis_free(st);
	if (rc)
		return rc;
	for (size_t i = 0; i < count; i++) {
		uint32_t k = mine ? mine[i] : (uint32_t)i;
		dis_query *q;

		dis_shard_listener_id(lid, sizeof(lid), id, k, n);
		if ((rc = dis_query_copy(query, &q)))
			return rc;
		rc = dis_query_shard(q, shard_id, n, k);
		if (!rc)
			rc = dis_runtime_add_listener(rt, lid, q, handler, arg,
						      cfg);
		dis_query_free(q);
		if (rc)
			return rc;
	}
	return 0;
}
