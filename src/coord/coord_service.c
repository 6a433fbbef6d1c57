/* The coordinator context: identity keys, pool, queue, auth, ledger, gate and agent registry;
 * the background threads (lease sweeper; housekeeper for queue counts and liveness flushes);
 * start and graceful stop; and the service functions behind /status, /capacity and
 * /health/runtime. */
#include "coord/coord.h"
#include "common/ec_http.h"
#include "common/ec_mem.h"
#include "coord/coord_auth.h"
#include "coord/coord_ledger.h"
#include "inference/inference_client.h"
#include "mesh/rpc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define STATUS_FAILING_MS   1000
#define PROBE_CACHE_MS      2000
#define HOUSEKEEP_PERIOD_MS 250
#define FLUSH_PERIOD_MS     1000
#define SWEEP_PERIOD_MS     1000

static bool set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* --- identity ---------------------------------------------------------------------------- */

static enum ec_status load_identity(struct coord *c, struct ec_err *err)
{
    const struct coord_config *cfg = c->cfg;
    enum ec_status st;
    if (set(cfg->private_key_pem)) {
        st = ec_key_load_private_pem(EC_KEY_ED25519, cfg->private_key_pem,
                                     strlen(cfg->private_key_pem), &c->identity_key, err);
        if (st != EC_OK)
            return st;
    } else {
        if (c->production)
            return ec_err_set(err, EC_EINVAL, NULL, "COORDINATOR_PRIVATE_KEY_PEM is required");
        st = ec_key_generate(EC_KEY_ED25519, &c->identity_key, err);
        if (st != EC_OK)
            return st;
        c->ephemeral_key = true;
        EC_WARN("no COORDINATOR_PRIVATE_KEY_PEM: using an ephemeral signing key; ledger "
                "signatures will not verify after a restart");
    }
    struct ec_buf pem;
    ec_buf_init(&pem, 4096);
    st = ec_key_write_public_pem(c->identity_key, &pem, err);
    if (st != EC_OK) {
        ec_buf_release(&pem);
        return st;
    }
    c->public_key_pem = ec_buf_detach(&pem, NULL);
    if (set(cfg->peer_id)) {
        c->peer_id = ec_xstrdup(cfg->peer_id);
    } else {
        uint8_t digest[EC_SHA256_LEN];
        ec_sha256(cfg->public_url, strlen(cfg->public_url), digest);
        char hex[EC_HEX_ENCODED_LEN(EC_SHA256_LEN) + 1];
        ec_hex_encode(hex, sizeof(hex), digest, sizeof(digest));
        c->peer_id = ec_xmalloc(6 + 12 + 1);
        snprintf(c->peer_id, 6 + 12 + 1, "coord-%.12s", hex);
    }
    return EC_OK;
}

static void ollama_base(struct coord *c)
{
    const char *h = c->cfg->ollama_host;
    bool has_scheme = strncasecmp(h, "http://", 7) == 0 || strncasecmp(h, "https://", 8) == 0;
    snprintf(c->ollama_base, sizeof(c->ollama_base), "%s%s", has_scheme ? "" : "http://", h);
    size_t n = strlen(c->ollama_base);
    while (n > 0 && c->ollama_base[n - 1] == '/')
        c->ollama_base[--n] = '\0';
}

enum ec_status coord_new(const struct coord_config *cfg, struct coord **out, struct ec_err *err)
{
    struct coord *c = ec_xcalloc(1, sizeof(*c));
    c->cfg = cfg;
    c->production = ec_config_production();
    pthread_mutex_init(&c->probe_lock, NULL);
    pthread_mutex_init(&c->bg_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->bg_cond, &ca);
    pthread_condattr_destroy(&ca);
    ollama_base(c);
    *out = c;

    enum ec_status st = load_identity(c, err);
    if (st != EC_OK)
        return st;
    if (set(cfg->portal_service_url) &&
        (st = rpc_target_from_url(cfg->portal_service_url, COORD_PORTAL_GRPC_PORT,
                                  &c->portal_target, err)) != EC_OK)
        return st;

    if (set(cfg->inference_url)) {
        struct inf_client_opts iopts = { .url = cfg->inference_url,
                                         .tls = { cfg->tls_ca, cfg->tls_cert, cfg->tls_key },
                                         .auth_token = cfg->inference_auth_token,
                                         .peer_id = c->peer_id,
                                         .signing_key = c->identity_key,
                                         .timeout_ms = cfg->inference_timeout_ms };
        if ((st = inf_client_new(&iopts, &c->inference, err)) != EC_OK)
            return st;
    }

    struct ec_pg_pool_opts popts = { .application_name = "edgecoder-coordinator",
                                     .statement_timeout_ms = 30000 };
    st = ec_pg_pool_new(cfg->database_url, (int)cfg->db_pool_size, &popts, &c->pool, err);
    if (st != EC_OK)
        return st;
    struct coord_queue_opts qopts = { .pool = c->pool,
                                      .coordinator_id = c->peer_id,
                                      .lease_grace_ms = cfg->lease_grace_ms,
                                      .max_attempts = (int)cfg->max_attempts };
    if ((st = coord_queue_new(&qopts, &c->queue, err)) != EC_OK)
        return st;
    struct coord_auth_opts aopts = { .max_skew_ms = cfg->max_skew_ms,
                                     .nonce_ttl_ms = cfg->nonce_ttl_ms,
                                     .nonce_capacity = (size_t)cfg->nonce_capacity,
                                     .rate_limit_max = cfg->rate_limit_max,
                                     .rate_limit_window_ms = cfg->rate_limit_window_ms };
    c->auth = coord_auth_new(&aopts);
    struct coord_gate_opts gopts = { .portal_target = c->portal_target,
                                     .tls = { cfg->tls_ca, cfg->tls_cert, cfg->tls_key },
                                     .service_token = cfg->portal_service_token,
                                     .timeout_ms = 5000 };
    if ((st = coord_gate_new(&gopts, &c->gate, err)) != EC_OK)
        return st;
    struct coord_agents_opts agopts = { .pool = c->pool,
                                        .online_window_ms = cfg->online_window_ms };
    if ((st = coord_agents_new(&agopts, &c->agents, err)) != EC_OK)
        return st;
    struct ec_http_client_opts hopts = { .user_agent = "edgecoder-coordinator", .max_idle = 2 };
    c->http = ec_http_client_new(&hopts);
    return EC_OK;
}

/* --- background threads ------------------------------------------------------------------ */

/* Sleeps up to ms; false once stop was asked. */
static bool bg_wait(struct coord *c, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->bg_lock);
    while (!c->bg_stop && pthread_cond_timedwait(&c->bg_cond, &c->bg_lock, &ts) != ETIMEDOUT)
        ;
    bool go_on = !c->bg_stop;
    pthread_mutex_unlock(&c->bg_lock);
    return go_on;
}

/* Logs a background failure once when it starts and once when it ends, not every period. */
static void note_failure(const char *what, bool *failing, enum ec_status st,
                         const struct ec_err *err)
{
    if (st != EC_OK && !*failing)
        EC_WARN("background task failing", EC_LS("task", what), EC_LS("error", ec_err_code(err)),
                EC_LS("reason", err->msg));
    else if (st == EC_OK && *failing)
        EC_INFO("background task recovered", EC_LS("task", what));
    *failing = st != EC_OK;
}

static void *sweeper_main(void *arg)
{
    struct coord *c = arg;
    bool failing = false;
    while (bg_wait(c, SWEEP_PERIOD_MS)) {
        int requeued = 0, failed = 0;
        struct ec_err err = { 0 };
        enum ec_status st = coord_queue_expire(c->queue, ec_now_ms(), &requeued, &failed, &err);
        note_failure("lease sweeper", &failing, st, &err);
        if (st != EC_OK)
            continue;
        atomic_store(&c->last_requeued, requeued);
        if (requeued > 0)
            coord_work_added(c);
        if (requeued > 0 || failed > 0)
            EC_INFO("expired leases", EC_LI("requeued", requeued), EC_LI("failed", failed));
    }
    return NULL;
}

static void refresh_counts(struct coord *c, bool *failing)
{
    uint64_t seq = atomic_load(&c->work_seq); /* before the query: later work bumps past it */
    struct coord_queue_counts counts;
    struct ec_err err = { 0 };
    enum ec_status st = coord_queue_counts(c->queue, &counts, &err);
    note_failure("queue counts", failing, st, &err);
    if (st != EC_OK) {
        int64_t zero = 0;
        atomic_compare_exchange_strong(&c->counts_failing_since_ms, &zero, ec_mono_ms());
    } else {
        atomic_store(&c->counts_failing_since_ms, 0);
        atomic_store(&c->count_queued, counts.queued);
        atomic_store(&c->count_leased, counts.leased);
        atomic_store(&c->count_completed, counts.completed);
        atomic_store(&c->count_failed, counts.failed);
        atomic_store(&c->counts_at_ms, ec_mono_ms());
        atomic_store(&c->counts_work_seq, seq);
    }
}

static void *housekeeper_main(void *arg)
{
    struct coord *c = arg;
    bool counts_failing = false, flush_failing = false;
    int64_t next_flush = ec_mono_ms() + FLUSH_PERIOD_MS;
    size_t loaded = 0;
    struct ec_err perr = { 0 };
    if (coord_agents_preload(c->agents, ec_now_ms() - c->cfg->online_window_ms, &loaded, &perr) ==
        EC_OK)
        EC_INFO("agents preloaded", EC_LI("agents", (int64_t)loaded));
    else
        EC_WARN("agents not preloaded; each is loaded on its first request",
                EC_LS("reason", perr.msg));
    do {
        refresh_counts(c, &counts_failing);
        atomic_store(&c->count_online, coord_agents_count_online(c->agents, ec_now_ms()));
        if (ec_mono_ms() >= next_flush) {
            struct ec_err err = { 0 };
            enum ec_status st = coord_agents_flush(c->agents, c->queue, ec_now_ms(), &err);
            note_failure("liveness flush", &flush_failing, st, &err);
            next_flush = ec_mono_ms() + FLUSH_PERIOD_MS;
        }
    } while (bg_wait(c, HOUSEKEEP_PERIOD_MS));
    return NULL;
}

/* --- start and stop ---------------------------------------------------------------------- */

static enum ec_status start_rpc(struct coord *c, struct ec_err *err)
{
    const struct coord_config *cfg = c->cfg;
    if (!set(cfg->tls_cert)) {
        EC_WARN("no EDGECODER_TLS_CERT: the gRPC Coordinator service is not started");
        return EC_OK;
    }
    char listen[32];
    snprintf(listen, sizeof(listen), "0.0.0.0:%lld", (long long)cfg->grpc_port);
    struct rpc_server_opts opts = { .listen = listen,
                                    .tls = { cfg->tls_ca, cfg->tls_cert, cfg->tls_key },
                                    .threads = 2 };
    c->rpc = rpc_server_new(&opts, err);
    if (c->rpc == NULL)
        return err ? err->status : EC_EINTERNAL;
    c->rpc_service = ec_xcalloc(1, sizeof(*c->rpc_service));
    *c->rpc_service =
        (struct rpc_service){ COORD_RPC_SERVICE, coord__rpc_methods, coord__rpc_nmethods, c };
    enum ec_status st = rpc_server_add_service(c->rpc, c->rpc_service, err);
    if (st == EC_OK)
        st = rpc_server_start(c->rpc, err);
    return st;
}

enum ec_status coord_start(struct coord *c, struct ec_err *err)
{
    const struct coord_config *cfg = c->cfg;
    struct coord_ledger_opts lopts = { .pool = c->pool,
                                       .coordinator_id = c->peer_id,
                                       .signing_key = c->identity_key,
                                       .chain_interval_ms = 50 };
    enum ec_status st = coord_ledger_start(&lopts, &c->ledger, err);
    if (st != EC_OK)
        return st;
    bool failing = false;
    refresh_counts(c, &failing); /* so that /status has counts from its first request */
    if (pthread_create(&c->sweeper, NULL, sweeper_main, c) != 0)
        return ec_err_set(err, EC_EINTERNAL, NULL, "cannot start the sweeper thread");
    c->sweeper_started = true;
    if (pthread_create(&c->housekeeper, NULL, housekeeper_main, c) != 0)
        return ec_err_set(err, EC_EINTERNAL, NULL, "cannot start the housekeeper thread");
    c->housekeeper_started = true;

    struct edge_config ecfg = { .port = (int)cfg->port };
    edge_env_apply(&cfg->http, &ecfg);
    struct edge_service svc = {
        .name = "coordinator",
        .routes = coord__routes,
        .nroutes = coord__nroutes,
        .pre_route = coord__pre_route,
        .ctx = c,
    };
    if ((st = edge_server_start(&ecfg, &svc, &c->edge, err)) != EC_OK)
        return st;
    if ((st = start_rpc(c, err)) != EC_OK)
        return st;
    EC_INFO("coordinator started", EC_LS("peer_id", c->peer_id),
            EC_LI("http_port", edge_server_port(c->edge)),
            EC_LI("grpc_port", c->rpc ? rpc_server_port(c->rpc) : 0),
            EC_LB("portal_validation", c->portal_target != NULL),
            EC_LB("mesh_token", set(cfg->mesh_token)), EC_LB("ephemeral_key", c->ephemeral_key));
    return EC_OK;
}

void coord_stop(struct coord *c)
{
    if (c == NULL)
        return;
    edge_server_stop(c->edge); /* no HTTP request runs after this */
    c->edge = NULL;
    if (c->rpc != NULL)
        rpc_server_shutdown(c->rpc);
    pthread_mutex_lock(&c->bg_lock);
    c->bg_stop = true;
    pthread_cond_broadcast(&c->bg_cond);
    pthread_mutex_unlock(&c->bg_lock);
    if (c->sweeper_started)
        pthread_join(c->sweeper, NULL);
    if (c->housekeeper_started)
        pthread_join(c->housekeeper, NULL);
    c->sweeper_started = c->housekeeper_started = false;
    if (c->agents != NULL && c->pool != NULL) {
        struct ec_err err = { 0 };
        if (coord_agents_flush(c->agents, NULL, ec_now_ms(), &err) != EC_OK)
            EC_WARN("final liveness flush failed", EC_LS("reason", err.msg));
    }
    coord_ledger_stop(c->ledger); /* chains what is pending */
    c->ledger = NULL;
}

void coord_free(struct coord *c)
{
    if (c == NULL)
        return;
    coord_stop(c);
    rpc_server_free(c->rpc);
    free(c->rpc_service);
    ec_http_client_free(c->http);
    inf_client_free(c->inference);
    coord_agents_free(c->agents);
    coord_gate_free(c->gate);
    coord_auth_free(c->auth);
    coord_queue_free(c->queue);
    ec_pg_pool_free(c->pool);
    ec_key_free(c->identity_key);
    free(c->public_key_pem);
    free(c->peer_id);
    free(c->portal_target);
    pthread_mutex_destroy(&c->probe_lock);
    pthread_mutex_destroy(&c->bg_lock);
    pthread_cond_destroy(&c->bg_cond);
    free(c);
}

/* --- service functions ------------------------------------------------------------------- */

enum ec_status coord_status_get(struct coord *c, Edgecoder__V1__StatusReply *out,
                                struct ec_err *err)
{
    int64_t failing = atomic_load(&c->counts_failing_since_ms);
    if (atomic_load(&c->counts_at_ms) == 0 ||
        (failing != 0 && ec_mono_ms() - failing >= STATUS_FAILING_MS))
        return ec_err_set(err, EC_EUNAVAIL, "database_unavailable",
                          "the queue counts cannot be read");
    edgecoder__v1__status_reply__init(out);
    out->queued = atomic_load(&c->count_queued);
    out->leased = atomic_load(&c->count_leased);
    out->completed = atomic_load(&c->count_completed);
    out->failed = atomic_load(&c->count_failed);
    out->results = out->completed + out->failed;
    out->agents = atomic_load(&c->count_online);
    return EC_OK;
}

bool coord_queue_surely_empty(struct coord *c)
{
    int64_t at = atomic_load(&c->counts_at_ms);
    return at != 0 && ec_mono_ms() - at < 2000 && atomic_load(&c->counts_failing_since_ms) == 0 &&
           atomic_load(&c->count_queued) == 0 &&
           atomic_load(&c->work_seq) == atomic_load(&c->counts_work_seq);
}

void coord_work_added(struct coord *c)
{
    atomic_fetch_add(&c->work_seq, 1);
}

void coord_capacity_get(struct coord *c, struct ec_arena *arena, Edgecoder__V1__CapacityReply *out,
                        Edgecoder__V1__CapacityTotals *totals)
{
    edgecoder__v1__capacity_reply__init(out);
    edgecoder__v1__capacity_totals__init(totals);
    struct coord_agents_filter f = { .connected_only = true };
    Edgecoder__V1__Agent **agents;
    size_t n;
    coord_agents_list(c->agents, arena, &f, ec_now_ms(), &agents, &n);
    for (size_t i = 0; i < n; i++) {
        const Edgecoder__V1__Agent *a = agents[i];
        totals->agents_connected++;
        totals->total_capacity += a->max_concurrent_tasks;
        totals->swarm_enabled_count += strcmp(a->mode, "swarm-only") == 0;
        totals->ide_enabled_count += strcmp(a->mode, "ide-enabled") == 0;
        totals->local_ollama_count += strcmp(a->local_model_provider, "ollama-local") == 0;
    }
    out->totals = totals;
    out->agents = agents;
    out->n_agents = n;
}

/* One GET against Ollama with short timeouts; the JSON answer in resp. */
static enum ec_status ollama_get(struct coord *c, const char *path, struct ec_http_response *resp,
                                 struct ec_err *err)
{
    char url[320];
    snprintf(url, sizeof(url), "%s%s", c->ollama_base, path);
    struct ec_http_request req = { .method = EC_HTTP_GET,
                                   .url = url,
                                   .connect_timeout_ms = 500,
                                   .timeout_ms = 1500,
                                   .max_response_bytes = 1u << 20 };
    enum ec_status st = ec_http_json(c->http, &req, NULL, resp, err);
    if (st == EC_OK)
        st = ec_http_response_check(resp, err);
    if (st == EC_OK && !json_is_object(resp->json))
        st = ec_err_set(err, EC_EUPSTREAM, NULL, "%s answered without a JSON object", path);
    return st;
}

static void probe_now(struct coord *c, struct coord_ollama_probe *p)
{
    memset(p, 0, sizeof(*p));
    struct ec_http_response resp;
    ec_http_response_init(&resp);
    struct ec_err err = { 0 };
    if (ollama_get(c, "/api/version", &resp, &err) == EC_OK) {
        const char *v = json_string_value(json_object_get(resp.json, "version"));
        snprintf(p->version, sizeof(p->version), "%s", v ? v : "");
        if (ollama_get(c, "/api/tags", &resp, &err) == EC_OK) {
            p->reachable = true;
            p->model_count = (int64_t)json_array_size(json_object_get(resp.json, "models"));
        }
    }
    if (!p->reachable)
        snprintf(p->error, sizeof(p->error), "%s", err.msg);
    ec_http_response_release(&resp);
    p->probed_at_ms = ec_mono_ms();
}

void coord_ollama_probe_get(struct coord *c, struct coord_ollama_probe *out)
{
    /* One probe at a time, never under the lock: the route is open to anyone, so a flood of
     * callers must not park HTTP threads behind a slow Ollama. They get the last answer. */
    pthread_mutex_lock(&c->probe_lock);
    bool fresh =
        c->probe.probed_at_ms != 0 && ec_mono_ms() - c->probe.probed_at_ms <= PROBE_CACHE_MS;
    if (fresh || c->probing) {
        *out = c->probe;
        if (out->probed_at_ms == 0)
            snprintf(out->error, sizeof(out->error), "the first probe is under way");
        pthread_mutex_unlock(&c->probe_lock);
        return;
    }
    c->probing = true;
    pthread_mutex_unlock(&c->probe_lock);
    struct coord_ollama_probe p;
    probe_now(c, &p);
    pthread_mutex_lock(&c->probe_lock);
    c->probe = p;
    c->probing = false;
    *out = p;
    pthread_mutex_unlock(&c->probe_lock);
}
