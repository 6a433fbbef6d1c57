/* The agent registry: a sharded in-memory hash of registered agents (signing key, envelope key,
 * profile, liveness) in front of the agents table. A heartbeat touches memory only; the
 * housekeeper writes liveness in batches (coord_agents_flush). An agent not in memory (after a
 * restart, or registered on another machine) is loaded from the database on first use. */
#include "coord/coord_agents_int.h"
#include "common/ec_mem.h"
#include "coord/coord_ledger.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t coord__agent_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

struct coord__shard *coord__agent_shard(struct coord_agents *a, uint64_t h)
{
    return &a->shards[(h >> 58) % COORD__AGENT_SHARDS];
}

/* Under the shard's lock. */
struct coord__agent *coord__agent_find(struct coord__shard *s, uint64_t h, const char *id)
{
    for (struct coord__agent *ag = s->buckets[h % s->nbuckets]; ag; ag = ag->next)
        if (ag->hash == h && strcmp(ag->id, id) == 0)
            return ag;
    return NULL;
}

static void grow(struct coord__shard *s)
{
    size_t n = s->nbuckets * 2;
    struct coord__agent **b = ec_xcalloc(n, sizeof(*b));
    for (size_t i = 0; i < s->nbuckets; i++) {
        struct coord__agent *ag = s->buckets[i];
        while (ag) {
            struct coord__agent *next = ag->next;
            ag->next = b[ag->hash % n];
            b[ag->hash % n] = ag;
            ag = next;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
}

static void insert(struct coord__shard *s, struct coord__agent *ag)
{
    if (s->count + 1 > s->nbuckets)
        grow(s);
    ag->next = s->buckets[ag->hash % s->nbuckets];
    s->buckets[ag->hash % s->nbuckets] = ag;
    s->count++;
}

static struct coord_agent_key *key_new(const struct ec_key *pub, const char *pem)
{
    /* The registry keeps its own copy, from the raw public key. */
    uint8_t raw[EC_KEY_RAW_LEN];
    ec_key_export_raw_public(pub, raw);
    struct coord_agent_key *k = ec_xcalloc(1, sizeof(*k));
    if (ec_key_import_raw_public(EC_KEY_ED25519, raw, sizeof(raw), &k->key, NULL) != EC_OK)
        EC_ASSERT(!"a valid public key re-imports");
    k->pem = ec_xstrdup(pem);
    atomic_init(&k->refs, 1);
    return k;
}

const struct ec_key *coord_agent_key_get(const struct coord_agent_key *k)
{
    return k ? k->key : NULL;
}

void coord_agent_key_unref(struct coord_agent_key *k)
{
    if (k == NULL || atomic_fetch_sub(&k->refs, 1) != 1)
        return;
    ec_key_free(k->key);
    free(k->pem);
    free(k);
}

static void key_unref_cleanup(void *p)
{
    coord_agent_key_unref(p);
}

void coord__replace(char **field, const char *value)
{
    if (value == NULL)
        return;
    if (*field != NULL && strcmp(*field, value) == 0)
        return;
    free(*field);
    *field = ec_xstrdup(value);
}

void coord__copy_fixed(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static void agent_free(struct coord__agent *ag)
{
    coord_agent_key_unref(ag->key);
    free(ag->id);
    free(ag->x25519);
    free(ag->device_id);
    free(ag->os);
    free(ag->version);
    free(ag->mode);
    free(ag->provider);
    free(ag->client_type);
    free(ag->sandbox_mode);
    free(ag->owner_email);
    free(ag->enrollment_reason);
    free(ag->revoked);
    free(ag->power_telemetry);
    free(ag);
}

enum ec_status coord_agents_new(const struct coord_agents_opts *opts, struct coord_agents **out,
                                struct ec_err *err)
{
    struct coord_agents *a = ec_xcalloc(1, sizeof(*a));
    a->pool = opts->pool;
    a->online_window_ms = opts->online_window_ms > 0 ? opts->online_window_ms : 120000;
    a->max_agents = opts->max_agents > 0 ? opts->max_agents : (size_t)1 << 20;
    for (size_t i = 0; i < COORD__AGENT_SHARDS; i++) {
        pthread_mutex_init(&a->shards[i].lock, NULL);
        a->shards[i].nbuckets = 64;
        a->shards[i].buckets = ec_xcalloc(64, sizeof(struct coord__agent *));
    }
    *out = a;
    return EC_OK;
}

void coord_agents_free(struct coord_agents *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < COORD__AGENT_SHARDS; i++) {
        struct coord__shard *s = &a->shards[i];
        for (size_t b = 0; b < s->nbuckets; b++) {
            struct coord__agent *ag = s->buckets[b];
            while (ag) {
                struct coord__agent *next = ag->next;
                agent_free(ag);
                ag = next;
            }
        }
        free(s->buckets);
        pthread_mutex_destroy(&s->lock);
    }
    free(a);
}

/* --- loading from the database ----------------------------------------------------------- */

#define AGENT_COLUMNS                                                                      \
    "agent_id, device_id, os, version, mode, local_model_provider, client_type, "          \
    "max_concurrent_tasks, sandbox_mode, public_key_pem, x25519_public_key, owner_email, " \
    "enrollment_reason, power_telemetry, active_model, active_model_param_size, "          \
    "model_swap_in_progress, registered_at_ms, last_seen_ms, revoked_reason"

struct load_call {
    const char *agent_id;
    struct pg_result *res;
};

static enum ec_status load_row(struct ec_pg_conn *conn, struct ec_arena *arena, void *ctx,
                               struct ec_err *err)
{
    struct load_call *call = ctx;
    const char *params[1] = { call->agent_id };
    return ec_pg_query(conn, "SELECT " AGENT_COLUMNS " FROM agents WHERE agent_id = $1", 1, params,
                       arena, &call->res, err);
}

static const char *col(const struct pg_result *res, int row, int c)
{
    return ec_pg_value(res, row, c);
}

static char *dup_or_null(const char *s)
{
    return s ? ec_xstrdup(s) : NULL;
}

/* A new agent from a row of AGENT_COLUMNS. NULL when its stored key does not parse (logged). */
static struct coord__agent *agent_from_row_at(const struct pg_result *res, int row,
                                              struct coord_agent_key *reuse)
{
    struct coord__agent *ag = ec_xcalloc(1, sizeof(*ag));
    ag->id = ec_xstrdup(col(res, row, 0));
    ag->hash = coord__agent_hash(ag->id);
    ag->device_id = dup_or_null(col(res, row, 1));
    ag->os = dup_or_null(col(res, row, 2));
    ag->version = dup_or_null(col(res, row, 3));
    ag->mode = dup_or_null(col(res, row, 4));
    ag->provider = dup_or_null(col(res, row, 5));
    ag->client_type = dup_or_null(col(res, row, 6));
    ag->max_concurrent = atoi(col(res, row, 7));
    ag->sandbox_mode = dup_or_null(col(res, row, 8));
    const char *pem = col(res, row, 9);
    if (pem != NULL && reuse != NULL && strcmp(reuse->pem, pem) == 0) {
        atomic_fetch_add(&reuse->refs, 1); /* the same key: no PEM parsing */
        ag->key = reuse;
    } else if (pem != NULL) {
        struct ec_key *pub = NULL;
        if (ec_key_load_public_pem(EC_KEY_ED25519, pem, strlen(pem), &pub, NULL) != EC_OK) {
            EC_ERROR("stored agent key does not parse", EC_LS("agent_id", ag->id));
            agent_free(ag);
            return NULL;
        }
        ag->key = key_new(pub, pem);
        ec_key_free(pub);
    }
    ag->x25519 = dup_or_null(col(res, row, 10));
    ag->owner_email = dup_or_null(col(res, row, 11));
    ag->enrollment_reason = dup_or_null(col(res, row, 12));
    ag->power_telemetry = dup_or_null(col(res, row, 13));
    coord__copy_fixed(ag->active_model, sizeof(ag->active_model), col(res, row, 14));
    coord__copy_fixed(ag->param_size, sizeof(ag->param_size), col(res, row, 15));
    ag->swap = col(res, row, 16) != NULL && col(res, row, 16)[0] == 't';
    ag->registered_at_ms = strtoll(col(res, row, 17), NULL, 10);
    ag->last_seen_ms = strtoll(col(res, row, 18), NULL, 10);
    ag->persisted_seen_ms = ag->last_seen_ms; /* what the row says */
    ag->revoked = dup_or_null(col(res, row, 19));
    ag->leases = -1; /* leases from before this machine knew the agent: ask the queue */
    return ag;
}

static struct coord__agent *agent_from_row(const struct pg_result *res,
                                           struct coord_agent_key *reuse)
{
    return agent_from_row_at(res, 0, reuse);
}

static void fill_view(const struct coord__agent *ag, struct ec_arena *arena,
                      struct coord_agent_view *out)
{
    out->key = ag->key;
    if (ag->key != NULL) {
        atomic_fetch_add(&ag->key->refs, 1);
        ec_arena_defer(arena, key_unref_cleanup, ag->key);
        out->public_key_pem = ec_arena_strdup(arena, ag->key->pem);
    } else {
        out->public_key_pem = NULL;
    }
    out->x25519_public_key = ag->x25519 ? ec_arena_strdup(arena, ag->x25519) : NULL;
    out->sandbox_mode = ec_arena_strdup(arena, ag->sandbox_mode ? ag->sandbox_mode : "none");
    out->active_model = ag->active_model[0] ? ec_arena_strdup(arena, ag->active_model) : NULL;
    out->revoked_reason = ag->revoked ? ec_arena_strdup(arena, ag->revoked) : NULL;
}

enum ec_status coord_agents_lookup(struct coord_agents *a, const char *agent_id,
                                   struct ec_arena *arena, struct coord_agent_view *out,
                                   struct ec_err *err)
{
    memset(out, 0, sizeof(*out));
    uint64_t h = coord__agent_hash(agent_id);
    struct coord__shard *s = coord__agent_shard(a, h);
    pthread_mutex_lock(&s->lock);
    struct coord__agent *ag = coord__agent_find(s, h, agent_id);
    if (ag != NULL) {
        fill_view(ag, arena, out);
        pthread_mutex_unlock(&s->lock);
        return EC_OK;
    }
    pthread_mutex_unlock(&s->lock);

    struct load_call call = { agent_id, NULL };
    enum ec_status st = ec_pg_with_conn(a->pool, arena, load_row, &call, err);
    if (st != EC_OK)
        return st;
    if (ec_pg_nrows(call.res) == 0)
        return ec_err_set(err, EC_ENOTFOUND, "agent_not_registered", "%s", "agent_not_registered");
    struct coord__agent *loaded = agent_from_row(call.res, NULL);
    if (loaded == NULL)
        return ec_err_set(err, EC_EINTERNAL, NULL, "the stored key of the agent does not parse");
    pthread_mutex_lock(&s->lock);
    ag = coord__agent_find(
        s, h, agent_id); /* another thread may have loaded or registered it meanwhile */
    if (ag == NULL) {
        if (atomic_load(&a->total) >= a->max_agents) {
            pthread_mutex_unlock(&s->lock);
            agent_free(loaded);
            return ec_err_set(err, EC_EUNAVAIL, "agent_registry_full",
                              "this machine holds its maximum of %zu agents", a->max_agents);
        }
        insert(s, loaded);
        atomic_fetch_add(&a->total, 1);
        ag = loaded;
        loaded = NULL;
    }
    fill_view(ag, arena, out);
    pthread_mutex_unlock(&s->lock);
    if (loaded != NULL)
        agent_free(loaded);
    return EC_OK;
}

/* --- registration ------------------------------------------------------------------------ */

struct register_call {
    const struct coord_agent_profile *p;
    bool allowed, revoke;
    const char *coordinator_id;
    int64_t now_ms;
    struct pg_result *res;
};

static enum ec_status record(struct ec_pg_conn *conn, struct ec_arena *arena, const char *type,
                             const char *actor, const char *payload, int64_t now_ms,
                             struct ec_err *err)
{
    struct coord_ledger_event ev = {
        .event_type = type, .actor_id = actor, .payload_json = payload, .issued_at_ms = now_ms
    };
    return coord_ledger_record(conn, arena, &ev, err);
}

static enum ec_status register_tx(struct ec_pg_conn *conn, struct ec_arena *arena, void *ctx,
                                  struct ec_err *err)
{
    struct register_call *call = ctx;
    const struct coord_agent_profile *p = call->p;
    json_t *payload = json_pack("{s:s,s:s,s:b,s:s,s:s?,s:s?}", "nodeId", p->agent_id, "nodeKind",
                                "agent", "allowed", call->allowed, "reason", p->enrollment_reason,
                                "sourceIp", p->source_ip, "ownerEmail", p->owner_email);
    char *text = json_dumps(payload, JSON_COMPACT);
    json_decref(payload);
    char *payload_text = ec_arena_strdup(arena, text);
    free(text);
    enum ec_status st = record(conn, arena, "node_validation", call->coordinator_id, payload_text,
                               call->now_ms, err);
    if (st != EC_OK)
        return st;
    if (!call->allowed) {
        if (!call->revoke)
            return EC_OK;
        const char *params[2] = { p->agent_id, p->enrollment_reason };
        return ec_pg_query(conn, "UPDATE agents SET revoked_reason = $2 WHERE agent_id = $1", 2,
                           params, NULL, NULL, err);
    }

    char maxc[16], now[24];
    snprintf(maxc, sizeof(maxc), "%d", p->max_concurrent_tasks);
    snprintf(now, sizeof(now), "%lld", (long long)call->now_ms);
    const char *params[16] = { p->agent_id,
                               p->device_id,
                               p->os,
                               p->version,
                               p->mode,
                               p->local_model_provider,
                               p->client_type,
                               maxc,
                               p->sandbox_mode,
                               p->public_key_pem,
                               p->x25519_public_key,
                               p->owner_email,
                               p->enrollment_reason,
                               p->source_ip,
                               p->power_telemetry_json,
                               now };
    st = ec_pg_query(
        conn,
        "INSERT INTO agents (agent_id, device_id, os, version, mode, local_model_provider, "
        "client_type, max_concurrent_tasks, sandbox_mode, public_key_pem, x25519_public_key, "
        "owner_email, enrollment_reason, source_ip, power_telemetry, registered_at_ms, "
        "last_seen_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::int, $9, $10, $11, $12, $13, $14, "
        "$15, $16::bigint, $16::bigint) "
        "ON CONFLICT (agent_id) DO UPDATE SET device_id = EXCLUDED.device_id, os = EXCLUDED.os, "
        "version = EXCLUDED.version, mode = EXCLUDED.mode, "
        "local_model_provider = EXCLUDED.local_model_provider, "
        "client_type = EXCLUDED.client_type, "
        "max_concurrent_tasks = EXCLUDED.max_concurrent_tasks, "
        "sandbox_mode = EXCLUDED.sandbox_mode, "
        "public_key_pem = COALESCE(EXCLUDED.public_key_pem, agents.public_key_pem), "
        "x25519_public_key = COALESCE(EXCLUDED.x25519_public_key, agents.x25519_public_key), "
        "owner_email = COALESCE(EXCLUDED.owner_email, agents.owner_email), "
        "enrollment_reason = EXCLUDED.enrollment_reason, source_ip = EXCLUDED.source_ip, "
        "revoked_reason = NULL, "
        "power_telemetry = COALESCE(EXCLUDED.power_telemetry, agents.power_telemetry), "
        "last_seen_ms = GREATEST(agents.last_seen_ms, EXCLUDED.last_seen_ms) "
        "RETURNING " AGENT_COLUMNS,
        16, params, arena, &call->res, err);
    if (st != EC_OK)
        return st;
    return record(conn, arena, "node_approval", call->coordinator_id, payload_text, call->now_ms,
                  err);
}

/* Replaces what memory knows of an agent with the row just written. Under the shard's lock. */
static void adopt_row(struct coord__agent *ag, const struct pg_result *res)
{
    struct coord__agent *fresh = agent_from_row(res, ag->key);
    if (fresh == NULL)
        return;
#define TAKE(f)             \
    do {                    \
        void *tmp_ = ag->f; \
        ag->f = fresh->f;   \
        fresh->f = tmp_;    \
    } while (0)
    TAKE(device_id);
    TAKE(os);
    TAKE(version);
    TAKE(mode);
    TAKE(provider);
    TAKE(client_type);
    TAKE(sandbox_mode);
    TAKE(owner_email);
    TAKE(enrollment_reason);
    TAKE(x25519);
    TAKE(power_telemetry);
#undef TAKE
    free(ag->revoked);
    ag->revoked = NULL;
    /* Keep the key object when the key did not change: requests in flight hold it. */
    if (fresh->key != NULL && (ag->key == NULL || strcmp(ag->key->pem, fresh->key->pem) != 0)) {
        struct coord_agent_key *old = ag->key;
        ag->key = fresh->key;
        fresh->key = old;
    }
    ag->max_concurrent = fresh->max_concurrent;
    ag->registered_at_ms = fresh->registered_at_ms;
    if (fresh->last_seen_ms > ag->last_seen_ms)
        ag->last_seen_ms = fresh->last_seen_ms;
    ag->persisted_seen_ms = fresh->last_seen_ms; /* the row just written */
    agent_free(fresh);
}

enum ec_status coord_agents_register(struct coord_agents *a, struct ec_arena *arena,
                                     const struct coord_agent_profile *p,
                                     const struct ec_key *public_key, bool allowed, bool revoke,
                                     const char *coordinator_id, int64_t now_ms, struct ec_err *err)
{
    struct register_call call = { p, allowed, revoke && !allowed, coordinator_id, now_ms, NULL };
    enum ec_status st = ec_pg_tx(a->pool, EC_PG_READ_COMMITTED, arena, register_tx, &call, err);
    if (st != EC_OK || (!allowed && !call.revoke))
        return st;
    uint64_t h = coord__agent_hash(p->agent_id);
    struct coord__shard *s = coord__agent_shard(a, h);
    pthread_mutex_lock(&s->lock);
    struct coord__agent *ag = coord__agent_find(s, h, p->agent_id);
    if (!allowed) {
        if (ag != NULL) {
            coord__replace(&ag->revoked, p->enrollment_reason);
            ag->reg_at_ms = 0;
        }
        pthread_mutex_unlock(&s->lock);
        return EC_OK;
    }
    if (ag == NULL) {
        ag = agent_from_row(call.res, NULL);
        if (ag != NULL && atomic_load(&a->total) >= a->max_agents) {
            agent_free(ag); /* full: it is loaded again on its next request, or refused */
            ag = NULL;
        } else if (ag != NULL) {
            insert(s, ag);
            atomic_fetch_add(&a->total, 1);
        }
    } else {
        adopt_row(ag, call.res);
    }
    if (ag != NULL && p->fingerprint != NULL) {
        memcpy(ag->reg_fp, p->fingerprint, COORD_REGISTER_FP_LEN);
        ag->reg_at_ms = now_ms;
    }
    pthread_mutex_unlock(&s->lock);
    (void)public_key; /* the stored PEM (just parsed again) is the one memory keeps */
    return EC_OK;
}

bool coord_agents_register_recent(struct coord_agents *a, const char *agent_id,
                                  const uint8_t fp[COORD_REGISTER_FP_LEN],
                                  const char *power_telemetry_json, int64_t now_ms)
{
    uint64_t h = coord__agent_hash(agent_id);
    struct coord__shard *s = coord__agent_shard(a, h);
    pthread_mutex_lock(&s->lock);
    struct coord__agent *ag = coord__agent_find(s, h, agent_id);
    bool recent = ag != NULL && ag->reg_at_ms != 0 &&
                  now_ms - ag->reg_at_ms < COORD_REGISTER_CACHE_MS &&
                  ec_ct_equal(ag->reg_fp, sizeof(ag->reg_fp), fp, COORD_REGISTER_FP_LEN);
    if (recent) {
        if (now_ms > ag->last_seen_ms)
            ag->last_seen_ms = now_ms;
        coord__replace(&ag->power_telemetry, power_telemetry_json);
        ag->dirty = true;
    }
    pthread_mutex_unlock(&s->lock);
    return recent;
}

struct preload_call {
    int64_t since_ms;
    size_t limit;
    struct pg_result *res;
};

static enum ec_status preload_query(struct ec_pg_conn *conn, struct ec_arena *arena, void *ctx,
                                    struct ec_err *err)
{
    struct preload_call *call = ctx;
    char since[24], limit[24];
    snprintf(since, sizeof(since), "%lld", (long long)call->since_ms);
    snprintf(limit, sizeof(limit), "%zu", call->limit);
    const char *params[2] = { since, limit };
    return ec_pg_query(conn,
                       "SELECT " AGENT_COLUMNS " FROM agents WHERE last_seen_ms >= $1::bigint "
                       "ORDER BY last_seen_ms DESC LIMIT $2::bigint",
                       2, params, arena, &call->res, err);
}

enum ec_status coord_agents_preload(struct coord_agents *a, int64_t since_ms, size_t *loaded,
                                    struct ec_err *err)
{
    struct ec_arena arena;
    ec_arena_init(&arena);
    struct preload_call call = { since_ms, a->max_agents, NULL };
    *loaded = 0;
    enum ec_status st = ec_pg_with_conn(a->pool, &arena, preload_query, &call, err);
    for (int r = 0; st == EC_OK && r < ec_pg_nrows(call.res); r++) {
        struct coord__agent *ag = agent_from_row_at(call.res, r, NULL);
        if (ag == NULL)
            continue;
        struct coord__shard *s = coord__agent_shard(a, ag->hash);
        pthread_mutex_lock(&s->lock);
        bool present = coord__agent_find(s, ag->hash, ag->id) != NULL;
        bool room = atomic_load(&a->total) < a->max_agents;
        if (!present && room) {
            insert(s, ag);
            atomic_fetch_add(&a->total, 1);
            (*loaded)++;
        }
        pthread_mutex_unlock(&s->lock);
        if (present || !room)
            agent_free(ag);
    }
    ec_arena_release(&arena);
    return st;
}

/* --- liveness ---------------------------------------------------------------------------- */

enum ec_status coord_agents_heartbeat(struct coord_agents *a, const char *agent_id,
                                      const struct coord_heartbeat *hb, int64_t now_ms,
                                      struct ec_err *err)
{
    uint64_t h = coord__agent_hash(agent_id);
    struct coord__shard *s = coord__agent_shard(a, h);
    pthread_mutex_lock(&s->lock);
    struct coord__agent *ag = coord__agent_find(s, h, agent_id);
    if (ag == NULL) {
        pthread_mutex_unlock(&s->lock);
        return ec_err_set(err, EC_EUNAUTH, "mesh_unauthorized", "%s", "agent_not_registered");
    }
    if (now_ms > ag->last_seen_ms)
        ag->last_seen_ms = now_ms;
    bool changed = false;
    if (hb->active_model != NULL && strcmp(ag->active_model, hb->active_model) != 0) {
        coord__copy_fixed(ag->active_model, sizeof(ag->active_model), hb->active_model);
        changed = true;
    }
    if (hb->active_model_param_size != NULL &&
        strcmp(ag->param_size, hb->active_model_param_size) != 0) {
        coord__copy_fixed(ag->param_size, sizeof(ag->param_size), hb->active_model_param_size);
        changed = true;
    }
    if (hb->model_swap_in_progress >= 0 && ag->swap != (hb->model_swap_in_progress != 0)) {
        ag->swap = hb->model_swap_in_progress != 0;
        changed = true;
    }
    if (hb->sandbox_mode != NULL &&
        (ag->sandbox_mode == NULL || strcmp(ag->sandbox_mode, hb->sandbox_mode) != 0)) {
        coord__replace(&ag->sandbox_mode, hb->sandbox_mode);
        changed = true;
    }
    if (hb->power_telemetry_json != NULL)
        coord__replace(&ag->power_telemetry, hb->power_telemetry_json);
    if (changed || ag->last_seen_ms - ag->persisted_seen_ms >= COORD__LIVENESS_PERSIST_MS)
        ag->dirty = true;
    ag->seen = true;
    pthread_mutex_unlock(&s->lock);
    return EC_OK;
}

static void lease_delta(struct coord_agents *a, const char *agent_id, int delta)
{
    uint64_t h = coord__agent_hash(agent_id);
    struct coord__shard *s = coord__agent_shard(a, h);
    pthread_mutex_lock(&s->lock);
    struct coord__agent *ag = coord__agent_find(s, h, agent_id);
    if (ag != NULL) {
        if (delta > 0) {
            ag->claims++;
            ag->leases = ag->leases < 0 ? -1 : ag->leases + 1;
        } else if (ag->leases > 0) {
            ag->leases--;
        }
    }
    pthread_mutex_unlock(&s->lock);
}

void coord_agents_lease_claimed(struct coord_agents *a, const char *agent_id)
{
    lease_delta(a, agent_id, +1);
}

void coord_agents_lease_done(struct coord_agents *a, const char *agent_id)
{
    lease_delta(a, agent_id, -1);
}
