/* The agent runtime: worker threads that run subtasks (each one sandbox_run at a time) and the
 * control loop that registers once, heartbeats, pulls while a slot is free, delivers results
 * from the outbox, stays dormant while the node is not approved, and fails over between
 * coordinators. SIGTERM: no new work; work in flight finishes and is delivered or left in the
 * outbox. */
#include "agent/agent_int.h"
#include "common/ec_log.h"
#include "common/ec_mem.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#define FLUSH_BATCH         32
#define SHUTDOWN_STEP_MS    200
#define MODEL_UP_CHECK_MS   30000
#define MODEL_DOWN_CHECK_MS 2000

void agent_job_free(struct agent_job *job)
{
    if (job == NULL)
        return;
    free(job->subtask_id);
    free(job->task_id);
    free(job->language);
    free(job->input);
    free(job->kind);
    ec_crypto_wipe(job->key, sizeof(job->key));
    free(job);
}

/* --- waiting ------------------------------------------------------------------------------ */

/* Waits on a->cond (lock held) until woken or ms passed. */
static void wait_locked(struct agent *a, int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&a->cond, &a->lock, &ts);
}

/* --- results into the outbox -------------------------------------------------------------- */

static void pending_push(struct agent *a, struct agent_outbox_item *item, bool front)
{
    if (a->npending == a->cap_pending) {
        a->cap_pending = a->cap_pending ? a->cap_pending * 2 : 16;
        a->pending = ec_xrealloc(a->pending, a->cap_pending * sizeof(*a->pending));
    }
    if (front) {
        memmove(a->pending + 1, a->pending, a->npending * sizeof(*a->pending));
        a->pending[0] = *item;
    } else {
        a->pending[a->npending] = *item;
    }
    a->npending++;
    memset(item, 0, sizeof(*item));
}

static void keep_result(struct agent *a, const struct agent_job *job,
                        const struct agent_work_result *r)
{
    struct agent_outbox_item item = {
        .subtask_id = ec_xstrdup(job->subtask_id),
        .attempt = job->attempt,
        .created_at_ms = ec_now_ms(),
        .coordinator_url = ec_xstrdup(job->coordinator_url),
        .body = agent_result_body(a, job, r),
    };
    struct ec_err err = { 0 };
    if (item.body == NULL) {
        EC_ERROR("cannot encode a result", EC_LS("subtask_id", job->subtask_id));
        agent_outbox_item_release(&item);
        return;
    }
    if (agent_outbox_put(a->outbox, &item, &err) != EC_OK)
        EC_ERROR("cannot write a result to the outbox; kept in memory only",
                 EC_LS("subtask_id", job->subtask_id), EC_LS("reason", err.msg));
    EC_INFO("subtask done", EC_LS("subtask_id", job->subtask_id), EC_LB("ok", r->ok),
            EC_LI("duration_ms", r->duration_ms), EC_LS("provider", r->provider));
    pthread_mutex_lock(&a->lock);
    pending_push(a, &item, false);
    pthread_mutex_unlock(&a->lock);
}

/* --- workers ------------------------------------------------------------------------------ */

static void *worker_main(void *arg)
{
    struct agent *a = arg;
    pthread_mutex_lock(&a->lock);
    for (;;) {
        while (a->queue_head == NULL && !a->workers_quit)
            pthread_cond_wait(&a->cond, &a->lock);
        struct agent_job *job = a->queue_head;
        if (job == NULL)
            break; /* quitting, nothing left */
        a->queue_head = job->next;
        if (a->queue_head == NULL)
            a->queue_tail = NULL;
        a->queued--;
        a->running++;
        pthread_mutex_unlock(&a->lock);

        struct agent_work_result r;
        agent_work_run(a, job, &r);
        keep_result(a, job, &r);
        agent_work_result_release(&r);
        agent_job_free(job);

        pthread_mutex_lock(&a->lock);
        a->running--;
        pthread_cond_broadcast(&a->cond);
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

static void enqueue(struct agent *a, struct agent_job *job)
{
    pthread_mutex_lock(&a->lock);
    if (a->queue_tail != NULL)
        a->queue_tail->next = job;
    else
        a->queue_head = job;
    a->queue_tail = job;
    a->queued++;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->lock);
}

/* --- lifecycle ---------------------------------------------------------------------------- */

static void detect_os(struct agent *a)
{
    if (a->cfg->os != NULL && a->cfg->os[0] != '\0') {
        snprintf(a->os, sizeof(a->os), "%s", a->cfg->os);
        return;
    }
    struct utsname u;
    snprintf(a->os, sizeof(a->os), "%.63s", uname(&u) == 0 ? u.sysname : "linux");
    for (char *p = a->os; *p; p++)
        *p = (char)tolower((unsigned char)*p);
}

static enum ec_status load_outbox(struct agent *a, struct ec_err *err)
{
    struct agent_outbox_item *items = NULL;
    size_t n = 0;
    enum ec_status st = agent_outbox_load(a->outbox, &items, &n, err);
    if (st != EC_OK)
        return st;
    for (size_t i = 0; i < n; i++)
        pending_push(a, &items[i], false);
    free(items);
    if (n > 0)
        EC_INFO("results waiting in the outbox", EC_LI("count", n));
    return EC_OK;
}

enum ec_status agent_new(const struct agent_config *cfg, struct agent **out, struct ec_err *err)
{
    *out = NULL;
    struct agent *a = ec_xcalloc(1, sizeof(*a));
    a->cfg = cfg;
    pthread_mutex_init(&a->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->cond, &ca);
    pthread_condattr_destroy(&ca);
    agent_coords_init(&a->coords, cfg);
    a->cap = (int)cfg->max_concurrent;
    a->memory_limit_mb = cfg->sandbox_memory_mb;
    if (cfg->mesh_token != NULL && cfg->mesh_token[0] != '\0')
        a->mesh_token = ec_xstrdup(cfg->mesh_token);
    detect_os(a);

    int mode = sandbox_mode_parse(cfg->sandbox_mode);
    a->sandbox.mode = mode < 0 ? SANDBOX_BWRAP : (enum sandbox_mode)mode;
    /* What the coordinator is told: "none" keeps tenant work away from this agent. */
    a->sandbox_advertised = sandbox_mode_name(a->sandbox.mode);

    enum ec_status st;
    if ((st = agent_identity_load(cfg->state_dir, &a->id, err)) != EC_OK ||
        (st = agent_outbox_open(cfg->state_dir, &a->outbox, err)) != EC_OK ||
        (st = load_outbox(a, err)) != EC_OK) {
        agent_free(a);
        return st;
    }
    snprintf(a->agent_id, sizeof(a->agent_id), "%s",
             cfg->agent_id != NULL && cfg->agent_id[0] != '\0' ? cfg->agent_id : a->id.default_id);
    struct ec_http_client_opts hopts = { .user_agent = "edgecoder-agent/" AGENT_VERSION,
                                         .tls.ca_file = cfg->tls_ca };
    a->http = ec_http_client_new(&hopts);
    if ((st = agent_provider_new(a, &a->provider, err)) != EC_OK) {
        agent_free(a);
        return st;
    }
    a->nworkers = (int)cfg->max_concurrent;
    a->workers = ec_xcalloc((size_t)a->nworkers, sizeof(*a->workers));
    for (int i = 0; i < a->nworkers; i++)
        EC_ASSERT(pthread_create(&a->workers[i], NULL, worker_main, a) == 0);
    *out = a;
    return EC_OK;
}

void agent_stop(struct agent *a)
{
    pthread_mutex_lock(&a->lock);
    a->stopping = true;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->lock);
}

static void join_workers(struct agent *a)
{
    pthread_mutex_lock(&a->lock);
    a->workers_quit = true;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->lock);
    for (int i = 0; i < a->nworkers; i++)
        pthread_join(a->workers[i], NULL);
    a->nworkers = 0;
}

void agent_free(struct agent *a)
{
    if (a == NULL)
        return;
    if (a->workers != NULL)
        join_workers(a);
    free(a->workers);
    while (a->queue_head != NULL) {
        struct agent_job *j = a->queue_head;
        a->queue_head = j->next;
        agent_job_free(j);
    }
    for (size_t i = 0; i < a->npending; i++)
        agent_outbox_item_release(&a->pending[i]);
    free(a->pending);
    agent_provider_free(a->provider);
    ec_http_client_free(a->http);
    agent_outbox_close(a->outbox);
    agent_identity_release(&a->id);
    agent_coords_release(&a->coords);
    if (a->mesh_token != NULL) {
        ec_crypto_wipe(a->mesh_token, strlen(a->mesh_token));
        free(a->mesh_token);
    }
    pthread_cond_destroy(&a->cond);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

/* --- the control loop --------------------------------------------------------------------- */

struct loop {
    bool sandbox_ok; /* sandbox_probe passed: only then is work taken */
    bool sandbox_warned;
    bool registered;
    bool dormant;
    bool model_ok, model_warned; /* the provider can work (agent_provider_ready) */
    int64_t next_model_check;
    int64_t wait_until;
    int64_t next_heartbeat;
    int64_t next_pull;
    struct agent_backoff slow; /* dormant and rate-limited waits */
};

/* Applies an exchange's outcome; returns false when the loop should start over. */
static bool handle(struct agent *a, struct loop *l, enum agent_outcome o)
{
    int64_t now = ec_mono_ms();
    switch (o) {
    case AGENT_OK:
    case AGENT_DROPPED:
        agent_coords_success(a);
        return true;
    case AGENT_UNREGISTERED:
        agent_coords_success(a);
        l->registered = false;
        return false;
    case AGENT_DORMANT:
        agent_coords_success(a);
        l->registered = false;
        l->wait_until = now + agent_backoff_next(&l->slow);
        return false;
    case AGENT_RATE_LIMITED:
        agent_coords_success(a);
        l->wait_until = now + agent_backoff_next(&l->slow);
        return false;
    case AGENT_RETRY: {
        bool switched = false;
        l->wait_until = now + agent_coords_failure(a, &switched);
        if (switched)
            l->registered = false; /* a new coordinator: introduce ourselves */
        return false;
    }
    }
    return false;
}

static void do_register(struct agent *a, struct loop *l)
{
    char reason[128] = "";
    enum agent_outcome o = agent_register(a, reason, sizeof(reason));
    if (o == AGENT_DORMANT) {
        if (!l->dormant)
            EC_WARN("node not activated: dormant until an operator approves it; retrying with "
                    "back-off",
                    EC_LS("agent_id", a->agent_id), EC_LS("reason", reason));
        l->dormant = true;
    }
    if (!handle(a, l, o))
        return;
    char url[AGENT_URL_MAX];
    agent_coords_current(&a->coords, url, sizeof(url));
    EC_INFO(l->dormant ? "node approved: agent active" : "agent registered",
            EC_LS("agent_id", a->agent_id), EC_LS("coordinator", url));
    l->registered = true;
    l->dormant = false;
    agent_backoff_reset(&l->slow);
    l->next_heartbeat = ec_mono_ms() + a->cfg->heartbeat_ms;
    l->next_pull = 0;
    agent_coords_save_cache(a);
}

/* Delivers waiting results, oldest first; false when the loop should start over. */
static bool flush(struct agent *a, struct loop *l)
{
    for (int i = 0; i < FLUSH_BATCH; i++) {
        pthread_mutex_lock(&a->lock);
        if (a->npending == 0) {
            pthread_mutex_unlock(&a->lock);
            return true;
        }
        struct agent_outbox_item item = a->pending[0];
        a->npending--;
        memmove(a->pending, a->pending + 1, a->npending * sizeof(*a->pending));
        pthread_mutex_unlock(&a->lock);
        enum agent_outcome o = agent_deliver(a, &item);
        if (o == AGENT_DROPPED) {
            if (item.file != NULL)
                agent_outbox_remove(a->outbox, item.file);
            agent_outbox_item_release(&item);
        } else {
            pthread_mutex_lock(&a->lock);
            pending_push(a, &item, true);
            pthread_mutex_unlock(&a->lock);
        }
        if (!handle(a, l, o))
            return false;
    }
    return true;
}

static bool free_slot_locked(const struct agent *a)
{
    return a->running + a->queued < a->cap && a->running + a->queued < a->nworkers;
}

static bool free_slot(struct agent *a)
{
    pthread_mutex_lock(&a->lock);
    bool free_ = free_slot_locked(a);
    pthread_mutex_unlock(&a->lock);
    return free_;
}

/* Like the original, which never registered without Docker: an agent whose sandbox cannot run
 * takes no work (it would only fail it), and keeps checking with back-off. */
static bool sandbox_ready(struct agent *a, struct loop *l)
{
    if (l->sandbox_ok)
        return true;
    struct ec_err err = { 0 };
    if (sandbox_probe(&a->sandbox, &err) == EC_OK) {
        l->sandbox_ok = true;
        if (l->sandbox_warned)
            EC_INFO("the sandbox works now", EC_LS("sandbox", sandbox_mode_name(a->sandbox.mode)));
        return true;
    }
    if (!l->sandbox_warned)
        EC_WARN("the sandbox cannot run here: taking no work until it can",
                EC_LS("sandbox", sandbox_mode_name(a->sandbox.mode)), EC_LS("reason", err.msg));
    l->sandbox_warned = true;
    l->wait_until = ec_mono_ms() + agent_backoff_next(&l->slow);
    return false;
}

/* Work goes through the local model: while it cannot answer, the agent keeps heartbeating and
 * delivering but takes no work (it would only fail it; another agent may do it), checking again
 * every MODEL_DOWN_CHECK_MS, and while it can, every MODEL_UP_CHECK_MS. */
static bool model_ready(struct agent *a, struct loop *l, int64_t now)
{
    if (now < l->next_model_check)
        return l->model_ok;
    struct ec_err err = { 0 };
    bool ok = agent_provider_ready(a, &err) == EC_OK;
    if (ok && !l->model_ok && l->model_warned)
        EC_INFO("the local model answers: taking work again", EC_LS("provider", a->cfg->provider));
    if (!ok && (l->model_ok || !l->model_warned)) {
        EC_WARN("the local model does not answer: taking no work until it does",
                EC_LS("provider", a->cfg->provider), EC_LS("reason", err.msg));
        l->model_warned = true;
    }
    l->model_ok = ok;
    l->next_model_check = now + (ok ? MODEL_UP_CHECK_MS : MODEL_DOWN_CHECK_MS);
    return ok;
}

/* One turn of the loop: whatever is due. */
static void turn(struct agent *a, struct loop *l)
{
    int64_t now = ec_mono_ms();
    if (now < l->wait_until)
        return;
    if (!l->registered) {
        if (!sandbox_ready(a, l))
            return;
        do_register(a, l);
        return;
    }
    if (!flush(a, l))
        return;
    if (now >= l->next_heartbeat) {
        if (!handle(a, l, agent_heartbeat(a)))
            return;
        l->next_heartbeat = ec_mono_ms() + a->cfg->heartbeat_ms;
    }
    if (!free_slot(a) || ec_mono_ms() < l->next_pull)
        return;
    if (!model_ready(a, l, ec_mono_ms())) {
        l->next_pull = l->next_model_check;
        return;
    }
    struct agent_job *job = NULL;
    int64_t defer_ms = 0;
    if (!handle(a, l, agent_pull(a, &job, &defer_ms)))
        return;
    if (job != NULL) {
        enqueue(a, job);
        l->next_pull = 0; /* another slot may be free: ask again at once */
    } else {
        l->next_pull = ec_mono_ms() + (defer_ms > 0 ? defer_ms : a->cfg->poll_ms);
    }
}

/* How long the loop may sleep before something is due (lock held, so that a worker's wake-up
 * cannot slip in between this and the wait). */
static int64_t idle_ms_locked(const struct agent *a, const struct loop *l)
{
    int64_t now = ec_mono_ms();
    if (now < l->wait_until)
        return l->wait_until - now;
    if (!l->registered || a->npending > 0)
        return 0;
    int64_t until = l->next_heartbeat;
    if (free_slot_locked(a) && l->next_pull < until)
        until = l->next_pull;
    return until > now ? until - now : 0;
}

/* After SIGTERM: let the work in flight finish (bounded by the grace period) and deliver its
 * results; one failed delivery and the rest stays in the outbox for the next start. */
static void shutdown_flush(struct agent *a, struct loop *l)
{
    int64_t deadline = ec_mono_ms() + a->cfg->shutdown_grace_ms;
    bool gave_up = !l->registered;
    while (ec_mono_ms() < deadline) {
        pthread_mutex_lock(&a->lock);
        int busy = a->running + a->queued;
        size_t waiting = a->npending;
        pthread_mutex_unlock(&a->lock);
        if (waiting > 0 && !gave_up && !flush(a, l))
            gave_up = true;
        if (busy == 0 && (waiting == 0 || gave_up))
            break;
        pthread_mutex_lock(&a->lock);
        if (a->running + a->queued > 0 && (a->npending == 0 || gave_up))
            wait_locked(a, SHUTDOWN_STEP_MS);
        pthread_mutex_unlock(&a->lock);
    }
}

void agent_run(struct agent *a)
{
    struct loop l = { .slow = { .base_ms = a->cfg->backoff_base_ms,
                                .max_ms = a->cfg->backoff_max_ms } };
    EC_INFO("agent starting", EC_LS("agent_id", a->agent_id), EC_LS("provider", a->cfg->provider),
            EC_LS("sandbox", sandbox_mode_name(a->sandbox.mode)),
            EC_LI("max_concurrent_tasks", a->cfg->max_concurrent));
    agent_coords_resolve(a);
    for (;;) {
        pthread_mutex_lock(&a->lock);
        bool stopping = a->stopping;
        pthread_mutex_unlock(&a->lock);
        if (stopping)
            break;
        turn(a, &l);
        pthread_mutex_lock(&a->lock);
        /* A finished job (a result to deliver, a slot free) or a stop wakes us early. */
        int64_t idle = idle_ms_locked(a, &l);
        if (!a->stopping && idle > 0)
            wait_locked(a, idle);
        pthread_mutex_unlock(&a->lock);
    }
    EC_INFO("agent stopping: finishing work in flight");
    shutdown_flush(a, &l);
    join_workers(a);
    pthread_mutex_lock(&a->lock);
    size_t left = a->npending;
    pthread_mutex_unlock(&a->lock);
    EC_INFO("agent stopped", EC_LI("results_in_outbox", left));
}
