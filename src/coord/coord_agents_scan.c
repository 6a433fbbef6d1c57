/* The parts of the agent registry that walk every shard: the liveness flush (one UPDATE for
 * the agents with something to write: a changed model or sandbox, or liveness older than
 * COORD__LIVENESS_PERSIST_MS in the database; then lease renewals for every agent seen since the
 * last flush that holds leases) and the
 * listings behind /capacity, /models/available and gRPC ListAgents. */
#include "coord/coord_agents_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLUSH_BATCH 2000

struct renewal {
    char *agent_id;
    uint32_t claims;
};

struct flush_call {
    const char *json;
};

static enum ec_status flush_tx(struct ec_pg_conn *conn, struct ec_arena *arena, void *ctx,
                               struct ec_err *err)
{
    struct flush_call *call = ctx;
    const char *params[1] = { call->json };
    return ec_pg_query(
        conn,
        "UPDATE agents a SET last_seen_ms = GREATEST(a.last_seen_ms, v.last_seen_ms), "
        "active_model = COALESCE(NULLIF(v.active_model, ''), a.active_model), "
        "active_model_param_size = COALESCE(NULLIF(v.param_size, ''), "
        "a.active_model_param_size), model_swap_in_progress = v.swap, "
        "sandbox_mode = COALESCE(v.sandbox_mode, a.sandbox_mode), "
        "power_telemetry = COALESCE(v.power_telemetry, a.power_telemetry) "
        "FROM jsonb_to_recordset($1::jsonb) AS v(agent_id text, last_seen_ms bigint, "
        "active_model text, param_size text, swap boolean, sandbox_mode text, "
        "power_telemetry text) WHERE a.agent_id = v.agent_id",
        1, params, NULL, NULL, err);
}

static void mark_dirty(struct coord_agents *a, json_t *batch)
{
    size_t i;
    json_t *item;
    json_array_foreach(batch, i, item)
    {
        const char *id = json_string_value(json_object_get(item, "agent_id"));
        uint64_t h = coord__agent_hash(id);
        struct coord__shard *s = coord__agent_shard(a, h);
        pthread_mutex_lock(&s->lock);
        struct coord__agent *ag = coord__agent_find(s, h, id);
        if (ag != NULL)
            ag->dirty = true;
        pthread_mutex_unlock(&s->lock);
    }
}

static enum ec_status flush_batch(struct coord_agents *a, json_t *batch, struct ec_err *err)
{
    if (json_array_size(batch) == 0)
        return EC_OK;
    char *text = json_dumps(batch, JSON_COMPACT);
    struct flush_call call = { text };
    enum ec_status st = ec_pg_with_conn(a->pool, NULL, flush_tx, &call, err);
    free(text);
    if (st != EC_OK)
        mark_dirty(a, batch); /* written with the next flush */
    json_array_clear(batch);
    return st;
}

static void renew(struct coord_agents *a, struct coord_queue *queue, const struct renewal *r,
                  int64_t now_ms)
{
    int renewed = 0;
    struct ec_err err = { 0 };
    if (coord_queue_renew(queue, r->agent_id, now_ms, &renewed, &err) != EC_OK)
        return; /* tried again after the next heartbeat */
    uint64_t h = coord__agent_hash(r->agent_id);
    struct coord__shard *s = coord__agent_shard(a, h);
    pthread_mutex_lock(&s->lock);
    struct coord__agent *ag = coord__agent_find(s, h, r->agent_id);
    if (ag != NULL && ag->claims == r->claims)
        ag->leases = renewed; /* the queue's truth, unless a claim raced the renewal */
    pthread_mutex_unlock(&s->lock);
}

enum ec_status coord_agents_flush(struct coord_agents *a, struct coord_queue *queue, int64_t now_ms,
                                  struct ec_err *err)
{
    json_t *batch = json_array();
    struct renewal *renewals = NULL;
    size_t nrenew = 0, cap = 0;
    enum ec_status result = EC_OK;
    for (size_t i = 0; i < COORD__AGENT_SHARDS; i++) {
        struct coord__shard *s = &a->shards[i];
        pthread_mutex_lock(&s->lock);
        for (size_t b = 0; b < s->nbuckets; b++) {
            for (struct coord__agent *ag = s->buckets[b]; ag; ag = ag->next) {
                if (ag->seen && ag->leases != 0) {
                    if (nrenew == cap) {
                        cap = cap ? cap * 2 : 64;
                        renewals = ec_xrealloc(renewals, cap * sizeof(*renewals));
                    }
                    renewals[nrenew++] = (struct renewal){ ec_xstrdup(ag->id), ag->claims };
                }
                ag->seen = false;
                if (!ag->dirty)
                    continue;
                ag->dirty = false;
                ag->persisted_seen_ms = ag->last_seen_ms;
                json_array_append_new(
                    batch,
                    json_pack("{s:s,s:I,s:s,s:s,s:b,s:s?,s:s?}", "agent_id", ag->id, "last_seen_ms",
                              (json_int_t)ag->last_seen_ms, "active_model", ag->active_model,
                              "param_size", ag->param_size, "swap", ag->swap, "sandbox_mode",
                              ag->sandbox_mode, "power_telemetry", ag->power_telemetry));
            }
        }
        pthread_mutex_unlock(&s->lock);
        if (json_array_size(batch) >= FLUSH_BATCH && flush_batch(a, batch, err) != EC_OK)
            result = err ? err->status : EC_EUNAVAIL;
    }
    if (flush_batch(a, batch, err) != EC_OK)
        result = err ? err->status : EC_EUNAVAIL;
    json_decref(batch);
    for (size_t i = 0; i < nrenew; i++) {
        if (queue != NULL)
            renew(a, queue, &renewals[i], now_ms);
        free(renewals[i].agent_id);
    }
    free(renewals);
    return result;
}

/* --- listing ----------------------------------------------------------------------------- */

static char *adup(struct ec_arena *arena, const char *s)
{
    return ec_arena_strdup(arena, s ? s : "");
}

static Edgecoder__V1__Agent *agent_pb(struct ec_arena *arena, const struct coord__agent *ag,
                                      bool owner, bool connected)
{
    Edgecoder__V1__Agent *m = ec_arena_alloc(arena, sizeof(*m));
    edgecoder__v1__agent__init(m);
    m->agent_id = adup(arena, ag->id);
    m->device_id = adup(arena, ag->device_id);
    m->os = adup(arena, ag->os);
    m->version = adup(arena, ag->version);
    m->mode = adup(arena, ag->mode);
    m->local_model_provider = adup(arena, ag->provider);
    m->client_type = adup(arena, ag->client_type);
    m->max_concurrent_tasks = ag->max_concurrent;
    m->sandbox_mode = adup(arena, ag->sandbox_mode);
    m->active_model = adup(arena, ag->active_model);
    m->active_model_param_size = adup(arena, ag->param_size);
    m->model_swap_in_progress = ag->swap;
    m->signing_key_registered = ag->key != NULL;
    m->envelope_key_registered = ag->x25519 != NULL;
    m->enrollment_reason = adup(arena, ag->enrollment_reason);
    m->owner_email = adup(arena, owner ? ag->owner_email : NULL);
    m->registered_at_ms = ag->registered_at_ms;
    m->last_seen_ms = ag->last_seen_ms;
    m->connected = connected;
    m->leases_held = ag->leases > 0 ? ag->leases : 0;
    m->power_telemetry_json = adup(arena, ag->power_telemetry);
    return m;
}

static int by_last_seen_desc(const void *x, const void *y)
{
    const Edgecoder__V1__Agent *a = *(Edgecoder__V1__Agent *const *)x;
    const Edgecoder__V1__Agent *b = *(Edgecoder__V1__Agent *const *)y;
    if (a->last_seen_ms != b->last_seen_ms)
        return a->last_seen_ms > b->last_seen_ms ? -1 : 1;
    return strcmp(a->agent_id, b->agent_id);
}

void coord_agents_list(struct coord_agents *a, struct ec_arena *arena,
                       const struct coord_agents_filter *f, int64_t now_ms,
                       Edgecoder__V1__Agent ***out, size_t *n)
{
    size_t cap = atomic_load(&a->total) + 16, count = 0;
    Edgecoder__V1__Agent **list = ec_arena_alloc(arena, cap * sizeof(*list));
    for (size_t i = 0; i < COORD__AGENT_SHARDS; i++) {
        struct coord__shard *s = &a->shards[i];
        pthread_mutex_lock(&s->lock);
        for (size_t b = 0; b < s->nbuckets; b++)
            for (struct coord__agent *ag = s->buckets[b]; ag && count < cap; ag = ag->next) {
                bool connected = ag->last_seen_ms >= now_ms - a->online_window_ms;
                if (f->connected_only && !connected)
                    continue;
                list[count++] = agent_pb(arena, ag, f->with_owner, connected);
            }
        pthread_mutex_unlock(&s->lock);
    }
    qsort(list, count, sizeof(*list), by_last_seen_desc);
    *out = list;
    *n = f->limit > 0 && count > f->limit ? f->limit : count;
}

int64_t coord_agents_count_online(struct coord_agents *a, int64_t now_ms)
{
    int64_t n = 0;
    for (size_t i = 0; i < COORD__AGENT_SHARDS; i++) {
        struct coord__shard *s = &a->shards[i];
        pthread_mutex_lock(&s->lock);
        for (size_t b = 0; b < s->nbuckets; b++)
            for (struct coord__agent *ag = s->buckets[b]; ag; ag = ag->next)
                n += ag->last_seen_ms >= now_ms - a->online_window_ms;
        pthread_mutex_unlock(&s->lock);
    }
    return n;
}
