/* The per-machine soft state of the signed-request check: a nonce cache that forgets an entry
 * only once its request would be refused for skew anyway, and per-agent sliding rate windows.
 * Both are open-addressing tables of fixed-size entries, split into shards with a mutex each so
 * that HTTP workers rarely meet, bounded by a capacity and pruned of expired entries. */
#include "coord/coord_auth_int.h"

#include "common/ec_mem.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MIN_SLOTS         64
#define PRUNE_INTERVAL_MS 1000    /* expiries have 1 s granularity: pruning sooner frees nothing */
#define PRUNE_MAX_AGE_MS  3600000 /* a shard is swept at least hourly while it is in use */
#define MAX_RETENTION_MS  259200000             /* 3 days */
#define SHARD_ALIGN       64                    /* one cache line per shard header */
#define NEVER_MS          (-(INT64_C(1) << 60)) /* "long ago", without overflow in now - then */

/* A fingerprint's bytes: 0..3 pick the shard, 8..15 are the tag kept in the table (and its top
 * 32 bits the home slot), so that shard and tag never share bits. */
static uint32_t fp_shard_bits(const uint8_t fp[COORD__FP_LEN])
{
    return (uint32_t)fp[0] | (uint32_t)fp[1] << 8 | (uint32_t)fp[2] << 16 | (uint32_t)fp[3] << 24;
}

static uint64_t fp_tag(const uint8_t fp[COORD__FP_LEN])
{
    uint64_t t = 0;
    for (int i = 8; i < 16; i++)
        t = t << 8 | fp[i];
    return t != 0 ? t : 1; /* 0 marks an empty slot */
}

/* Lemire's multiply-shift: any table size, no modulo. */
static size_t home_slot(uint64_t tag, size_t nslots)
{
    return (size_t)(((tag >> 32) * (uint64_t)nslots) >> 32);
}

/* Linear probing stays short up to 80 % load; a table of max_slots holds cap entries. */
static size_t load_limit(size_t nslots, size_t cap)
{
    size_t by_load = nslots / 5 * 4 + nslots % 5 * 4 / 5;
    return by_load < cap ? by_load : cap;
}

static size_t max_slots_for(size_t cap)
{
    return cap + cap / 4 + 1;
}

static size_t shard_count(size_t capacity, size_t per_shard_floor, size_t most)
{
    size_t n = 1;
    while (n < most && capacity / (n * 2) >= per_shard_floor)
        n *= 2;
    return n;
}

static void *xaligned_calloc(size_t count, size_t size)
{
    size_t bytes = (count * size + SHARD_ALIGN - 1) / SHARD_ALIGN * SHARD_ALIGN;
    void *p = aligned_alloc(SHARD_ALIGN, bytes);
    EC_ASSERT(p != NULL);
    memset(p, 0, bytes);
    return p;
}

/* Whole seconds for expiry stamps, clamped to what 32 bits hold (the year 2106). */
static uint32_t secs_floor(int64_t ms)
{
    if (ms <= 0)
        return 0;
    return ms / 1000 >= UINT32_MAX ? UINT32_MAX : (uint32_t)(ms / 1000);
}

static uint32_t secs_ceil(int64_t ms)
{
    if (ms <= 0)
        return 0;
    int64_t s = ms / 1000 + (ms % 1000 != 0);
    return s >= UINT32_MAX ? UINT32_MAX : (uint32_t)s;
}

/* --- Nonce cache -------------------------------------------------------------------------- */

struct nonce_shard {
    pthread_mutex_t lock; /* guards everything below */
    uint64_t *tags;       /* 0: empty slot */
    uint32_t *expires_s;  /* live while now (in whole seconds) <= this */
    size_t nslots;        /* 0 until the first add */
    size_t used;          /* occupied slots, live or expired */
    int64_t last_prune_ms;
    int64_t last_add_ms;
} __attribute__((aligned(SHARD_ALIGN)));

struct coord__nonces {
    size_t nshards; /* a power of two */
    size_t shard_cap;
    size_t max_slots;
    int64_t max_retention_ms;
    struct nonce_shard *shards;
};

struct coord__nonces *coord__nonces_new(size_t capacity, int64_t max_retention_ms)
{
    EC_ASSERT(capacity > 0 && max_retention_ms > 0 && max_retention_ms <= MAX_RETENTION_MS);
    struct coord__nonces *n = ec_xcalloc(1, sizeof(*n));
    n->nshards = shard_count(capacity, 1024, 64);
    n->shard_cap = (capacity + n->nshards - 1) / n->nshards;
    n->max_slots = max_slots_for(n->shard_cap);
    n->max_retention_ms = max_retention_ms;
    n->shards = xaligned_calloc(n->nshards, sizeof(struct nonce_shard));
    for (size_t i = 0; i < n->nshards; i++) {
        EC_ASSERT(pthread_mutex_init(&n->shards[i].lock, NULL) == 0);
        n->shards[i].last_prune_ms = NEVER_MS;
    }
    return n;
}

void coord__nonces_free(struct coord__nonces *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->nshards; i++) {
        pthread_mutex_destroy(&n->shards[i].lock);
        free(n->shards[i].tags);
        free(n->shards[i].expires_s);
    }
    free(n->shards);
    free(n);
}

/* Rehashes the live entries into a table of nslots (0 frees it). */
static void nonce_rebuild(struct nonce_shard *s, size_t nslots, uint32_t now_s)
{
    uint64_t *old_tags = s->tags;
    uint32_t *old_exp = s->expires_s;
    size_t old_n = s->nslots;
    s->tags = nslots ? ec_xcalloc(nslots, sizeof(uint64_t)) : NULL;
    s->expires_s = nslots ? ec_xcalloc(nslots, sizeof(uint32_t)) : NULL;
    s->nslots = nslots;
    s->used = 0;
    for (size_t i = 0; i < old_n && nslots > 0; i++) {
        if (old_tags[i] == 0 || old_exp[i] < now_s)
            continue;
        size_t j = home_slot(old_tags[i], nslots);
        while (s->tags[j] != 0)
            j = j + 1 < nslots ? j + 1 : 0;
        s->tags[j] = old_tags[i];
        s->expires_s[j] = old_exp[i];
        s->used++;
    }
    free(old_tags);
    free(old_exp);
}

static void nonce_prune(struct nonce_shard *s, uint32_t now_s, int64_t now_ms)
{
    size_t live = 0;
    for (size_t i = 0; i < s->nslots; i++)
        live += s->tags[i] != 0 && s->expires_s[i] >= now_s;
    size_t target = s->nslots;
    while (target / 2 >= MIN_SLOTS && (live + 1) * 4 <= target / 2)
        target /= 2;
    nonce_rebuild(s, live == 0 ? 0 : target, now_s);
    s->last_prune_ms = now_ms;
}

/* Room for one more entry: prune (at most once a second), then grow up to max_slots. */
static bool nonce_make_room(const struct coord__nonces *n, struct nonce_shard *s, uint32_t now_s,
                            int64_t now_ms)
{
    if (s->nslots > 0 && s->used + 1 <= load_limit(s->nslots, n->shard_cap))
        return true;
    if (s->nslots > 0 &&
        (now_ms - s->last_prune_ms >= PRUNE_INTERVAL_MS || now_ms < s->last_prune_ms))
        nonce_prune(s, now_s, now_ms);
    while (s->nslots == 0 || s->used + 1 > load_limit(s->nslots, n->shard_cap)) {
        if (s->nslots >= n->max_slots)
            return false;
        size_t grown = s->nslots < MIN_SLOTS / 2 ? MIN_SLOTS : s->nslots * 2;
        nonce_rebuild(s, grown < n->max_slots ? grown : n->max_slots, now_s);
    }
    return true;
}

enum probe { PROBE_LIVE, PROBE_REUSE, PROBE_EMPTY, PROBE_NONE };

/* Finds tag's slot: PROBE_LIVE if it is remembered; else the slot to write: an expired one on
 * the probe path (reusing it keeps the run unbroken) or the empty slot that ends the run. */
static enum probe nonce_probe(const struct nonce_shard *s, uint64_t tag, uint32_t now_s,
                              size_t *slot)
{
    if (s->nslots == 0)
        return PROBE_NONE;
    size_t reuse = SIZE_MAX;
    size_t j = home_slot(tag, s->nslots);
    for (size_t k = 0; k < s->nslots; k++) {
        if (s->tags[j] == 0) {
            *slot = reuse != SIZE_MAX ? reuse : j;
            return reuse != SIZE_MAX ? PROBE_REUSE : PROBE_EMPTY;
        }
        bool live = s->expires_s[j] >= now_s;
        if (s->tags[j] == tag && live)
            return PROBE_LIVE;
        if (!live && reuse == SIZE_MAX)
            reuse = j;
        j = j + 1 < s->nslots ? j + 1 : 0;
    }
    *slot = reuse;
    return reuse != SIZE_MAX ? PROBE_REUSE : PROBE_NONE;
}

enum coord__nonce_result coord__nonces_add(struct coord__nonces *n, const uint8_t fp[COORD__FP_LEN],
                                           int64_t expires_at_ms, int64_t now_ms)
{
    EC_ASSERT(expires_at_ms - now_ms <= n->max_retention_ms);
    struct nonce_shard *s = &n->shards[fp_shard_bits(fp) & (n->nshards - 1)];
    uint64_t tag = fp_tag(fp);
    uint32_t now_s = secs_floor(now_ms), exp_s = secs_ceil(expires_at_ms);
    enum coord__nonce_result res = COORD__NONCE_FRESH;

    pthread_mutex_lock(&s->lock);
    /* Second rounding keeps an entry up to 2 s past its expiry; idle for longer than anything is
     * kept, every entry has expired. */
    if (s->nslots > 0 && now_ms - s->last_add_ms > n->max_retention_ms + 2000) {
        nonce_rebuild(s, 0, now_s);
    } else if (s->nslots > 0 && (now_ms - s->last_prune_ms >= PRUNE_MAX_AGE_MS)) {
        nonce_prune(s, now_s, now_ms);
    }
    s->last_add_ms = now_ms;
    size_t slot = 0;
    enum probe p = nonce_probe(s, tag, now_s, &slot);
    if (p == PROBE_LIVE) {
        res = COORD__NONCE_REPLAY;
    } else if (p == PROBE_REUSE) {
        s->tags[slot] = tag;
        s->expires_s[slot] = exp_s;
    } else if (!nonce_make_room(n, s, now_s, now_ms)) {
        res = COORD__NONCE_FULL;
    } else {
        /* The table may have been rebuilt, and held no live copy of tag before: probe again. */
        p = nonce_probe(s, tag, now_s, &slot);
        EC_ASSERT(p == PROBE_EMPTY || p == PROBE_REUSE);
        s->used += p == PROBE_EMPTY;
        s->tags[slot] = tag;
        s->expires_s[slot] = exp_s;
    }
    pthread_mutex_unlock(&s->lock);
    return res;
}

size_t coord__nonces_used(struct coord__nonces *n)
{
    size_t used = 0;
    for (size_t i = 0; i < n->nshards; i++) {
        pthread_mutex_lock(&n->shards[i].lock);
        used += n->shards[i].used;
        pthread_mutex_unlock(&n->shards[i].lock);
    }
    return used;
}

/* --- Per-agent rate windows --------------------------------------------------------------- */

struct rate_entry {
    uint64_t tag; /* 0: empty slot */
    int64_t window_start_ms;
    uint32_t prev; /* requests counted in the previous fixed window */
    uint32_t cur;  /* ... and in the current one */
};

struct rate_shard {
    pthread_mutex_t lock; /* guards everything below */
    struct rate_entry *slots;
    size_t nslots;
    size_t used;
    int64_t last_prune_ms;
} __attribute__((aligned(SHARD_ALIGN)));

struct coord__rates {
    size_t nshards;
    size_t shard_cap;
    size_t max_slots;
    uint32_t limit;
    int64_t window_ms;
    struct rate_shard *shards;
};

struct coord__rates *coord__rates_new(size_t max_agents, int64_t limit, int64_t window_ms)
{
    EC_ASSERT(max_agents > 0 && limit > 0 && limit <= INT32_MAX && window_ms > 0);
    struct coord__rates *r = ec_xcalloc(1, sizeof(*r));
    r->nshards = shard_count(max_agents, 256, 16);
    r->shard_cap = (max_agents + r->nshards - 1) / r->nshards;
    r->max_slots = max_slots_for(r->shard_cap);
    r->limit = (uint32_t)limit;
    r->window_ms = window_ms;
    r->shards = xaligned_calloc(r->nshards, sizeof(struct rate_shard));
    for (size_t i = 0; i < r->nshards; i++) {
        EC_ASSERT(pthread_mutex_init(&r->shards[i].lock, NULL) == 0);
        r->shards[i].last_prune_ms = NEVER_MS;
    }
    return r;
}

void coord__rates_free(struct coord__rates *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nshards; i++) {
        pthread_mutex_destroy(&r->shards[i].lock);
        free(r->shards[i].slots);
    }
    free(r->shards);
    free(r);
}

/* Idle for two windows: its count can no longer matter. */
static bool rate_live(const struct coord__rates *r, const struct rate_entry *e, int64_t now_ms)
{
    return now_ms - e->window_start_ms < 2 * r->window_ms;
}

static void rate_rebuild(const struct coord__rates *r, struct rate_shard *s, size_t nslots,
                         int64_t now_ms)
{
    struct rate_entry *old = s->slots;
    size_t old_n = s->nslots;
    s->slots = nslots ? ec_xcalloc(nslots, sizeof(*s->slots)) : NULL;
    s->nslots = nslots;
    s->used = 0;
    for (size_t i = 0; i < old_n && nslots > 0; i++) {
        if (old[i].tag == 0 || !rate_live(r, &old[i], now_ms))
            continue;
        size_t j = home_slot(old[i].tag, nslots);
        while (s->slots[j].tag != 0)
            j = j + 1 < nslots ? j + 1 : 0;
        s->slots[j] = old[i];
        s->used++;
    }
    free(old);
}

static struct rate_entry *rate_find(struct rate_shard *s, uint64_t tag, struct rate_entry **empty)
{
    *empty = NULL;
    if (s->nslots == 0)
        return NULL;
    size_t j = home_slot(tag, s->nslots);
    for (size_t k = 0; k < s->nslots; k++) {
        if (s->slots[j].tag == tag)
            return &s->slots[j];
        if (s->slots[j].tag == 0) {
            *empty = &s->slots[j];
            return NULL;
        }
        j = j + 1 < s->nslots ? j + 1 : 0;
    }
    return NULL;
}

static struct rate_entry *rate_insert(struct coord__rates *r, struct rate_shard *s, uint64_t tag,
                                      int64_t now_ms)
{
    if (s->nslots == 0 || s->used + 1 > load_limit(s->nslots, r->shard_cap)) {
        if (s->nslots > 0 &&
            (now_ms - s->last_prune_ms >= PRUNE_INTERVAL_MS || now_ms < s->last_prune_ms)) {
            rate_rebuild(r, s, s->nslots, now_ms);
            s->last_prune_ms = now_ms;
        }
        while (s->nslots == 0 || s->used + 1 > load_limit(s->nslots, r->shard_cap)) {
            if (s->nslots >= r->max_slots)
                return NULL;
            size_t grown = s->nslots < MIN_SLOTS / 2 ? MIN_SLOTS : s->nslots * 2;
            rate_rebuild(r, s, grown < r->max_slots ? grown : r->max_slots, now_ms);
        }
    }
    struct rate_entry *empty = NULL;
    EC_ASSERT(rate_find(s, tag, &empty) == NULL && empty != NULL);
    *empty = (struct rate_entry){ .tag = tag, .window_start_ms = now_ms };
    s->used++;
    return empty;
}

static bool rate_take_locked(const struct coord__rates *r, struct rate_entry *e, int64_t now_ms,
                             bool count)
{
    int64_t w = r->window_ms;
    if (now_ms - e->window_start_ms >= w) {
        int64_t k = (now_ms - e->window_start_ms) / w;
        e->prev = k == 1 ? e->cur : 0;
        e->cur = 0;
        e->window_start_ms += k * w;
    }
    int64_t elapsed = now_ms - e->window_start_ms;
    if (elapsed < 0) /* the clock stepped back: count it in the current window */
        elapsed = 0;
    double estimate = (double)e->prev * (double)(w - elapsed) / (double)w + (double)e->cur;
    if (estimate + 1.0 > (double)r->limit)
        return false;
    e->cur += count;
    return true;
}

bool coord__rates_take(struct coord__rates *r, const uint8_t fp[COORD__FP_LEN], int64_t now_ms,
                       bool count)
{
    struct rate_shard *s = &r->shards[fp_shard_bits(fp) & (r->nshards - 1)];
    uint64_t tag = fp_tag(fp);
    bool ok = !count; /* a peek at an agent with no window yet */
    pthread_mutex_lock(&s->lock);
    struct rate_entry *empty = NULL;
    struct rate_entry *e = rate_find(s, tag, &empty);
    if (e == NULL && count)
        e = rate_insert(r, s, tag, now_ms);
    if (e != NULL)
        ok = rate_take_locked(r, e, now_ms, count);
    pthread_mutex_unlock(&s->lock);
    return ok;
}

void coord__rates_reset(struct coord__rates *r, const uint8_t fp[COORD__FP_LEN])
{
    struct rate_shard *s = &r->shards[fp_shard_bits(fp) & (r->nshards - 1)];
    pthread_mutex_lock(&s->lock);
    struct rate_entry *empty = NULL;
    struct rate_entry *e = rate_find(s, fp_tag(fp), &empty);
    if (e != NULL)
        e->prev = e->cur = 0;
    pthread_mutex_unlock(&s->lock);
}
