/* Internal to the agent runtime: the pieces its files share (URL lists, back-off, the outbox, the
 * identity, coordinator choice, signed requests, the work itself) and the runtime's state. */
#ifndef EC_AGENT_INT_H
#define EC_AGENT_INT_H

#include "agent/agent.h"
#include "agent/sandbox.h"
#include "common/ec_buf.h"
#include "common/ec_crypto.h"
#include "common/ec_http.h"

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_VERSION      "0.1.0"
#define AGENT_URL_MAX      512
#define AGENT_ID_MAX       128
#define AGENT_ENV_KEY_LEN  32
#define AGENT_OUTPUT_MAX   (200 * 1024) /* below the coordinator's 256 KiB output cap */
#define AGENT_ERROR_MAX    (48 * 1024)
#define AGENT_PROVIDER_LOC "edgecoder-local"
#define AGENT_PROVIDER_OLL "ollama-local"

/* --- URL lists (agent_urls.c) ------------------------------------------------------------ */

/* An ordered list of coordinator base URLs, without duplicates, each http(s)://host[:port][/path]
 * without a trailing '/'. Owned strings. */
struct agent_urls {
    char **items;
    size_t count;
};

/* Checks and normalises one base URL into out (cap bytes); EC_EINVAL says why. */
enum ec_status agent_url_normalize(const char *in, size_t len, char *out, size_t cap,
                                   struct ec_err *err);
/* Appends url when not present yet; false when it was (or is invalid). */
bool agent_urls_add(struct agent_urls *l, const char *url);
/* "u1, u2,u3": every entry must be valid (the first bad one is named); empty entries skipped. */
enum ec_status agent_urls_parse(const char *text, struct agent_urls *out, struct ec_err *err);
void agent_urls_release(struct agent_urls *l);
/* The registry's JSON ({generatedAt, count, coordinators:[{peerId, coordinatorUrl, source}]}):
 * each valid coordinatorUrl in order; entries without one are skipped. */
enum ec_status agent_urls_from_registry(const json_t *doc, struct agent_urls *out,
                                        struct ec_err *err);

/* --- back-off (agent_urls.c) ------------------------------------------------------------- */

/* Exponential back-off with jitter: the n-th delay is drawn uniformly from [d/2, d] where
 * d = min(base * 2^n, max). */
struct agent_backoff {
    int64_t base_ms, max_ms;
    int attempts;
    uint64_t rng; /* xorshift state; 0 is replaced by a random seed on first use */
};

int64_t agent_backoff_next(struct agent_backoff *b);
void agent_backoff_reset(struct agent_backoff *b);

/* --- the outbox (agent_outbox.c) --------------------------------------------------------- */

/* One result waiting for delivery: what to POST to /result (already sealed when the work came
 * sealed, so no plaintext result is kept on disk for sealed work). */
struct agent_outbox_item {
    char *subtask_id;
    int attempt;
    int64_t created_at_ms;
    char *coordinator_url; /* where the lease was taken (informational) */
    char *body;            /* the /result JSON body, exactly as it will be sent */
    char *file;            /* file name inside the outbox directory (set by put/load) */
};

enum ec_status agent_outbox_encode(const struct agent_outbox_item *item, struct ec_buf *out,
                                   struct ec_err *err);
/* Strict: every field present with the right type. Strings in out are heap copies. */
enum ec_status agent_outbox_decode(const char *text, size_t len, struct agent_outbox_item *out,
                                   struct ec_err *err);
void agent_outbox_item_release(struct agent_outbox_item *item);
/* "r-<16 hex of sha256(subtaskId)>-<attempt>.json" into out. */
void agent_outbox_file_name(const char *subtask_id, int attempt, char *out, size_t cap);

struct agent_outbox;
enum ec_status agent_outbox_open(const char *state_dir, struct agent_outbox **out,
                                 struct ec_err *err);
void agent_outbox_close(struct agent_outbox *ob);
/* Writes item durably (temporary file, fsync, rename, fsync of the directory). */
enum ec_status agent_outbox_put(struct agent_outbox *ob, struct agent_outbox_item *item,
                                struct ec_err *err);
void agent_outbox_remove(struct agent_outbox *ob, const char *file);
/* Every item on disk, oldest first; unreadable files are logged and moved aside. Release each
 * item and free the array. */
enum ec_status agent_outbox_load(struct agent_outbox *ob, struct agent_outbox_item **items,
                                 size_t *count, struct ec_err *err);

/* --- identity (agent_identity.c) --------------------------------------------------------- */

struct agent_identity {
    struct ec_key *sign;   /* Ed25519 pair */
    struct ec_key *x25519; /* X25519 pair for envelopes */
    char *public_pem;      /* SPKI PEM of sign */
    char x25519_b64[EC_B64_ENCODED_LEN(EC_KEY_RAW_LEN) + 1];
    char default_id[32]; /* agent-<12 hex of sha256(raw public key)> */
};

/* Loads the two keys from the state directory, or creates them (0600) on first start. */
enum ec_status agent_identity_load(const char *state_dir, struct agent_identity *id,
                                   struct ec_err *err);
void agent_identity_release(struct agent_identity *id);
/* Writes data to dir/name atomically and durably with the given mode. */
enum ec_status agent_write_file(const char *dir, const char *name, const void *data, size_t len,
                                unsigned mode, struct ec_err *err);
/* mkdir -p with mode for the last component. */
enum ec_status agent_mkdirs(const char *path, unsigned mode, struct ec_err *err);

/* --- coordinator choice (agent_coords.c) ------------------------------------------------- */

/* The candidates and which one is in use. Used by the control thread only, except
 * agent_coords_current which takes the lock. */
struct agent_coords {
    pthread_mutex_t lock; /* guards current */
    char current[AGENT_URL_MAX];
    struct agent_urls list;
    size_t index;
    int failures; /* consecutive, against current */
    struct agent_backoff backoff;
    int64_t resolved_at_ms;
};

struct agent;
void agent_coords_init(struct agent_coords *c, const struct agent_config *cfg);
void agent_coords_release(struct agent_coords *c);
/* Registry -> cache file -> COORDINATOR_URL: rebuilds the list and picks its first entry. */
void agent_coords_resolve(struct agent *a);
/* Copies the URL in use into out. */
void agent_coords_current(struct agent_coords *c, char *out, size_t cap);
/* A definite answer from the current coordinator: resets failures and back-off. */
void agent_coords_success(struct agent *a);
/* A failed exchange; returns how long to wait before trying again (ms). After failover_after
 * failures in a row it moves to the next candidate (re-resolving after the last) and sets
 * *switched. */
int64_t agent_coords_failure(struct agent *a, bool *switched);
/* Remembers the working coordinator in the cache file. */
void agent_coords_save_cache(struct agent *a);

/* --- the runtime's state (agent_runtime.c) ----------------------------------------------- */

/* A subtask taken from the coordinator. */
struct agent_job {
    char *subtask_id, *task_id, *language, *input, *kind;
    int attempt;
    int64_t timeout_ms;
    bool sealed;
    uint8_t key[AGENT_ENV_KEY_LEN]; /* the envelope key, when sealed */
    char coordinator_url[AGENT_URL_MAX];
    int64_t received_at_ms;
    struct agent_job *next;
};

void agent_job_free(struct agent_job *job);

/* What the work produced. */
struct agent_work_result {
    bool ok;
    char *output; /* heap, never NULL */
    char *error;  /* heap or NULL */
    int64_t duration_ms;
    int64_t started_at_ms, finished_at_ms;
    const char *provider; /* static */
    const char *model;    /* static or owned by the config */
};

void agent_work_result_release(struct agent_work_result *r);

struct agent_provider;

struct agent {
    const struct agent_config *cfg;
    char agent_id[AGENT_ID_MAX + 1];
    char os[64];
    struct agent_identity id;
    struct ec_http_client *http;
    struct agent_coords coords;
    struct agent_outbox *outbox;
    struct agent_provider *provider;
    struct sandbox_opts sandbox;
    const char *sandbox_advertised; /* what /register says: none | docker | vm */

    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t cond;  /* work queued, a slot freed, a result written, stop */
    char *mesh_token;     /* heap or NULL */
    struct agent_job *queue_head, *queue_tail;
    int running; /* jobs taken by workers and not finished */
    int queued;  /* jobs waiting for a worker */
    int cap;     /* effective concurrency: min(MAX_CONCURRENT_TASKS, policy) */
    int64_t memory_limit_mb;
    struct agent_outbox_item *pending; /* results waiting for delivery */
    size_t npending, cap_pending;
    bool stopping;     /* agent_stop called: no new pulls */
    bool workers_quit; /* the workers may exit once the queue is empty */

    pthread_t *workers;
    int nworkers;
};

/* What an answer means for the runtime. */
enum agent_outcome {
    AGENT_OK = 0,
    AGENT_UNREGISTERED, /* the coordinator does not know us (or our key): register again */
    AGENT_DORMANT,      /* node not activated (or blacklisted): wait for approval */
    AGENT_RETRY,        /* transport failure or a server error: back off, maybe fail over */
    AGENT_RATE_LIMITED, /* slow down */
    AGENT_DROPPED,      /* a result with a definite answer: remove it from the outbox */
};

const char *agent_outcome_name(enum agent_outcome o);
/* From an HTTP status and the answer's error and reason codes ("" when absent). */
enum agent_outcome agent_classify(long status, const char *error, const char *reason);
/* The coordinator's policy: maxConcurrentTasks and memoryLimitMb may lower ours. */
void agent_apply_policy(struct agent *a, const json_t *policy);
/* agent_protocol.c: one exchange each with the current coordinator. */
enum agent_outcome agent_register(struct agent *a, char *reason, size_t reason_cap);
enum agent_outcome agent_heartbeat(struct agent *a);
/* *job is NULL when there was no work; *defer_ms is the coordinator's deferMs, if any. */
enum agent_outcome agent_pull(struct agent *a, struct agent_job **job, int64_t *defer_ms);
/* The /result body for a job's result (sealed when the job came sealed). Caller frees. */
char *agent_result_body(struct agent *a, const struct agent_job *job,
                        const struct agent_work_result *r);
/* AGENT_DROPPED when the coordinator gave a definite answer (taken, duplicate, lease gone). */
enum agent_outcome agent_deliver(struct agent *a, const struct agent_outbox_item *item);

/* Signed POST of body (exact bytes) to base_url + path with the mesh token. resp->json holds
 * the answer. Transport failures are returned; any HTTP status is EC_OK. */
enum ec_status agent_post(struct agent *a, const char *base_url, const char *path, const char *body,
                          size_t len, bool sign, struct ec_http_response *resp, struct ec_err *err);
/* The answer's "error" and "reason" strings ("" when absent). */
const char *agent_resp_error(const struct ec_http_response *resp);
const char *agent_resp_reason(const struct ec_http_response *resp);

/* --- the work (agent_work.c, agent_ollama.c) --------------------------------------------- */

enum ec_status agent_provider_new(struct agent *a, struct agent_provider **out, struct ec_err *err);
void agent_provider_free(struct agent_provider *p);
/* Whether the provider can do work now: edgecoder-local always; ollama-local while Ollama
 * answers with the model (agent_ollama_ready). */
enum ec_status agent_provider_ready(struct agent *a, struct ec_err *err);
/* Runs one job to a result (never fails: a failure is a result with ok false). */
void agent_work_run(struct agent *a, const struct agent_job *job, struct agent_work_result *r);

/* The deterministic offline provider's choice: the code to run for a subtask input. Returns
 * heap text; *is_template says whether the input was prose (a fixed template program). */
char *agent_local_program(const char *input, enum sandbox_language lang, bool *is_template);
/* The first fenced code block's body (any tag, or the given language's), else NULL. Heap. */
char *agent_extract_code(const char *text);

/* Runs code in the sandbox with the agent's limits into r (output, error, ok). */
void agent_run_code(struct agent *a, enum sandbox_language lang, const char *code,
                    int64_t timeout_ms, struct agent_work_result *r);
/* How long one program of this job may run: AGENT_RUN_TIMEOUT_MS or the subtask's timeoutMs. */
int64_t agent__run_timeout(const struct agent *a, const struct agent_job *job);

/* ollama-local (agent_ollama.c): plan -> code -> run -> reflect, at most two iterations. */
struct agent_ollama;
enum ec_status agent_ollama_new(const struct agent_config *cfg, struct agent_ollama **out,
                                struct ec_err *err);
void agent_ollama_free(struct agent_ollama *ol); /* NULL is a no-op */
/* Ollama answers and has OLLAMA_MODEL pulled: EC_OK; else EC_EUNAVAIL saying which. */
enum ec_status agent_ollama_ready(struct agent_ollama *ol, struct ec_err *err);
void agent_ollama_run(struct agent *a, struct agent_ollama *ol, const struct agent_job *job,
                      enum sandbox_language lang, struct agent_work_result *r);

#endif
