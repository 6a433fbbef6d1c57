/* Internal to the signed-request check: the two bounded, sharded in-memory tables behind it (the
 * nonce cache and the per-agent rate windows, coord_nonce.c), shared with coord_auth.c and the
 * unit tests. Both are keyed by keyed-hash fingerprints, never by the raw header values. */
#ifndef COORD_AUTH_INT_H
#define COORD_AUTH_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define COORD__FP_LEN 16 /* fingerprint bytes: shard, home slot and tag come from disjoint bits */

/* --- Nonce cache -------------------------------------------------------------------------- */

enum coord__nonce_result {
    COORD__NONCE_FRESH,  /* not seen: now remembered until its expiry */
    COORD__NONCE_REPLAY, /* seen and not yet expired */
    COORD__NONCE_FULL,   /* not seen, but the cache holds capacity unexpired nonces already */
};

struct coord__nonces;

/* capacity: most nonces remembered at once (rounded up to a multiple of the shard count).
 * max_retention_ms: the longest any nonce is kept past the now_ms it was added at; at most
 * 3 days (expiry times are stored in 20 bits of seconds). Caller frees with
 * coord__nonces_free. */
struct coord__nonces *coord__nonces_new(size_t capacity, int64_t max_retention_ms);
void coord__nonces_free(struct coord__nonces *n); /* NULL is a no-op */
/* Checks and records a fingerprint in one step under its shard's lock, so that of two threads
 * racing with one nonce exactly one sees FRESH. expires_at_ms - now_ms must not exceed
 * max_retention_ms. An entry is forgotten once now_ms passes its expiry (rounded up to the
 * second): never earlier, so a nonce cannot be replayed while it is remembered. */
enum coord__nonce_result coord__nonces_add(struct coord__nonces *n, const uint8_t fp[COORD__FP_LEN],
                                           int64_t expires_at_ms, int64_t now_ms);
/* Occupied slots (live or expired but not yet pruned), for tests. */
size_t coord__nonces_used(struct coord__nonces *n);

/* --- Per-agent rate windows --------------------------------------------------------------- */

struct coord__rates;

/* At most max_agents agents tracked at once; an agent's entry is dropped once it has been idle
 * for two windows. Caller frees with coord__rates_free. */
struct coord__rates *coord__rates_new(size_t max_agents, int64_t limit, int64_t window_ms);
void coord__rates_free(struct coord__rates *r); /* NULL is a no-op */
/* Returns false when the agent's sliding window already holds limit requests, else true and,
 * with count, counts one request. Counting for a new agent when the table is full of active
 * agents also returns false (fail closed). The sliding window is the two-bucket estimate: the
 * previous fixed window's count weighted by how much of it still overlaps, plus the current
 * window's count. Without count it is a peek, which never adds an entry. */
bool coord__rates_take(struct coord__rates *r, const uint8_t fp[COORD__FP_LEN], int64_t now_ms,
                       bool count);
/* Forgets the agent's window. */
void coord__rates_reset(struct coord__rates *r, const uint8_t fp[COORD__FP_LEN]);

#endif
