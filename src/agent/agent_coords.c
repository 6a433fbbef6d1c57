/* Which coordinator to talk to: the discovery registry (COORDINATOR_DISCOVERY_URL, or
 * CONTROL_PLANE_URL's /network/coordinators), else the cache file in the state directory, then
 * COORDINATOR_URL's list; after AGENT_FAILOVER_AFTER failures in a row the next candidate, with
 * exponential back-off and jitter between attempts. */
#include "agent/agent_int.h"
#include "common/ec_log.h"
#include "common/ec_mem.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CACHE_FILE          "coordinator-cache.json"
#define CACHE_MAX           (64u << 10)
#define REGISTRY_TIMEOUT_MS 5000

void agent_coords_init(struct agent_coords *c, const struct agent_config *cfg)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
    c->backoff.base_ms = cfg->backoff_base_ms;
    c->backoff.max_ms = cfg->backoff_max_ms;
}

void agent_coords_release(struct agent_coords *c)
{
    agent_urls_release(&c->list);
    pthread_mutex_destroy(&c->lock);
}

static void set_current(struct agent_coords *c, const char *url)
{
    pthread_mutex_lock(&c->lock);
    snprintf(c->current, sizeof(c->current), "%s", url);
    pthread_mutex_unlock(&c->lock);
}

void agent_coords_current(struct agent_coords *c, char *out, size_t cap)
{
    pthread_mutex_lock(&c->lock);
    snprintf(out, cap, "%s", c->current);
    pthread_mutex_unlock(&c->lock);
}

static bool set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* GET the registry; its coordinators in order into out. */
static enum ec_status fetch_registry(struct agent *a, const char *url, struct agent_urls *out,
                                     struct ec_err *err)
{
    struct ec_http_request req = {
        .method = EC_HTTP_GET,
        .url = url,
        .connect_timeout_ms = REGISTRY_TIMEOUT_MS,
        .timeout_ms = REGISTRY_TIMEOUT_MS,
        .max_response_bytes = 1u << 20,
    };
    struct ec_http_response resp;
    ec_http_response_init(&resp);
    enum ec_status st = ec_http_json(a->http, &req, NULL, &resp, err);
    if (st == EC_OK)
        st = ec_http_response_check(&resp, err);
    if (st == EC_OK)
        st = agent_urls_from_registry(resp.json, out, err);
    ec_http_response_release(&resp);
    return st;
}

static void load_cache(struct agent *a, struct agent_urls *out)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/%s", a->cfg->state_dir, CACHE_FILE);
    json_t *doc = json_load_file(path, 0, NULL);
    if (doc == NULL)
        return;
    const char *current = json_string_value(json_object_get(doc, "coordinatorUrl"));
    if (current != NULL)
        agent_urls_add(out, current);
    const json_t *list = json_object_get(doc, "coordinators");
    size_t i;
    const json_t *v;
    json_array_foreach(list, i, v)
    {
        if (json_is_string(v))
            agent_urls_add(out, json_string_value(v));
    }
    json_decref(doc);
}

void agent_coords_save_cache(struct agent *a)
{
    struct agent_coords *c = &a->coords;
    char current[AGENT_URL_MAX];
    agent_coords_current(c, current, sizeof(current));
    json_t *list = json_array();
    for (size_t i = 0; i < c->list.count; i++)
        json_array_append_new(list, json_string(c->list.items[i]));
    json_t *doc = json_pack("{s:s,s:o,s:I}", "coordinatorUrl", current, "coordinators", list,
                            "updatedAtMs", (json_int_t)ec_now_ms());
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (text == NULL)
        return;
    struct ec_err err = { 0 };
    if (agent_write_file(a->cfg->state_dir, CACHE_FILE, text, strlen(text), 0600, &err) != EC_OK)
        EC_WARN("cannot write the coordinator cache", EC_LS("reason", err.msg));
    free(text);
}

void agent_coords_resolve(struct agent *a)
{
    struct agent_coords *c = &a->coords;
    const struct agent_config *cfg = a->cfg;
    struct agent_urls list = { 0 };
    const char *source = "config";
    char registry[AGENT_URL_MAX + 32] = "";
    if (set(cfg->discovery_url)) {
        snprintf(registry, sizeof(registry), "%s", cfg->discovery_url);
    } else if (set(cfg->control_plane_url)) {
        char base[AGENT_URL_MAX];
        if (agent_url_normalize(cfg->control_plane_url, strlen(cfg->control_plane_url), base,
                                sizeof(base), NULL) == EC_OK)
            snprintf(registry, sizeof(registry), "%s/network/coordinators", base);
    }
    if (registry[0] != '\0') {
        struct ec_err err = { 0 };
        if (fetch_registry(a, registry, &list, &err) == EC_OK && list.count > 0)
            source = "registry";
        else
            EC_WARN("discovery registry unavailable; using the cache and COORDINATOR_URL",
                    EC_LS("reason", err.msg[0] ? err.msg : "no coordinators listed"));
    }
    if (list.count == 0) {
        load_cache(a, &list);
        if (list.count > 0)
            source = "cache";
    }
    struct agent_urls fixed = { 0 };
    agent_urls_parse(cfg->coordinator_url, &fixed, NULL); /* validated at load */
    for (size_t i = 0; i < fixed.count; i++)
        agent_urls_add(&list, fixed.items[i]);
    agent_urls_release(&fixed);

    agent_urls_release(&c->list);
    c->list = list;
    c->index = 0;
    c->failures = 0;
    c->resolved_at_ms = ec_mono_ms();
    if (c->list.count > 0)
        set_current(c, c->list.items[0]);
    EC_INFO("coordinator chosen", EC_LS("url", c->current), EC_LS("source", source),
            EC_LI("candidates", c->list.count));
}

void agent_coords_success(struct agent *a)
{
    a->coords.failures = 0;
    agent_backoff_reset(&a->coords.backoff);
}

int64_t agent_coords_failure(struct agent *a, bool *switched)
{
    struct agent_coords *c = &a->coords;
    *switched = false;
    int64_t delay = agent_backoff_next(&c->backoff);
    if (++c->failures < a->cfg->failover_after)
        return delay;
    char old[AGENT_URL_MAX];
    agent_coords_current(c, old, sizeof(old));
    if (c->index + 1 < c->list.count) {
        c->index++;
        c->failures = 0;
        set_current(c, c->list.items[c->index]);
    } else {
        /* Every candidate failed: ask the registry again, and start over from the first. */
        agent_coords_resolve(a);
    }
    char now[AGENT_URL_MAX];
    agent_coords_current(c, now, sizeof(now));
    *switched = strcmp(old, now) != 0;
    EC_WARN("coordinator unreachable; failing over", EC_LS("from", old), EC_LS("to", now),
            EC_LI("retry_in_ms", delay));
    return delay;
}
