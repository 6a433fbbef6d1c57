/* The coordinator's client of the gRPC Inference service: one mTLS channel to INFERENCE_URL,
 * every call carrying x-inference-token (when set) and the Ed25519 signature metadata of
 * inference_sig.h.
 *
 * Usage (the coordinator, once at start, then from any thread):
 *
 *     struct inf_client_opts o = {
 *         .url = cfg->inference_url,                      // grpcs://host:port or https://host
 *         .tls = { cfg->tls_ca, cfg->tls_cert, cfg->tls_key },
 *         .auth_token = cfg->inference_auth_token,        // INFERENCE_AUTH_TOKEN, may be NULL
 *         .peer_id = c->peer_id,                          // COORDINATOR_PEER_ID
 *         .signing_key = c->identity_key,                 // borrowed: must outlive the client
 *     };
 *     struct inf_client *ic = NULL;
 *     if (inf_client_new(&o, &ic, &err) != EC_OK) ...      // EC_EINVAL: bad URL or options
 *
 *     struct inf_decomposition d;                           // in /submit, with the request arena
 *     if (inf_client_decompose(ic, task_id, prompt, "python", snapshot_ref, arena, &d, &err)
 *             == EC_OK)
 *         for (size_t i = 0; i < d.count; i++)
 *             enqueue(d.subtasks[i].input, d.subtasks[i].language, d.subtasks[i].timeout_ms);
 *     // d.fallback: the service could not use its model; d.subtasks[0] is the prompt itself.
 *     // A failure (EC_EUNAVAIL when the service is down, EC_EUNAUTH + err->code
 *     // "inference_signature_*" / "inference_unauthorized" when refused) leaves the caller to
 *     // fall back on its own.
 *
 *     inf_client_free(ic);
 */
#ifndef INFERENCE_CLIENT_H
#define INFERENCE_CLIENT_H

#include "common/ec_arena.h"
#include "common/ec_crypto.h"
#include "common/ec_status.h"
#include "inference/inf_decompose.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INF_GRPC_PORT         4402   /* the default port of an https:// INFERENCE_URL */
#define INF_CLIENT_TIMEOUT_MS 330000 /* Decompose may wait minutes for a cold model */

struct inf_client;

struct inf_client_opts {
    const char *url; /* INFERENCE_URL: "grpcs://host:port" or "https://host[:port][/...]" (gRPC
                        port 4402); plaintext schemes are refused */
    struct {
        const char *ca_file, *cert_file, *key_file; /* PEM files: the coordinator's mTLS identity */
    } tls;
    const char *server_name; /* name to verify in the server certificate; NULL: the URL host */
    const char *auth_token;  /* sent as x-inference-token; NULL or "": none */
    const char *peer_id;     /* COORDINATOR_PEER_ID; NULL: calls are not signed */
    const struct ec_key *signing_key; /* Ed25519 key pair; borrowed; NULL: calls not signed */
    int64_t timeout_ms;               /* per call; 0: INF_CLIENT_TIMEOUT_MS */
};

/* A gRPC target "host:port" from an INFERENCE_URL value; caller frees *target with free(). */
enum ec_status inf_client_target(const char *url, char **target, struct ec_err *err);

/* Connects lazily. Caller frees with inf_client_free. Thread-safe once made. */
enum ec_status inf_client_new(const struct inf_client_opts *opts, struct inf_client **out,
                              struct ec_err *err);
void inf_client_free(struct inf_client *c); /* no call may be running; NULL is a no-op */

struct inf_decomposition {
    struct inf_subtask *subtasks; /* strings and array in the arena given */
    size_t count;                 /* 1..10 */
    bool fallback;                /* the service fell back: one subtask holding the prompt */
    const char *fallback_reason;  /* "" unless fallback */
};

/* Inference.Decompose, signed. language "" means python. */
enum ec_status inf_client_decompose(struct inf_client *c, const char *task_id, const char *prompt,
                                    const char *language, const char *snapshot_ref,
                                    struct ec_arena *arena, struct inf_decomposition *out,
                                    struct ec_err *err);

struct inf_escalation {
    const char *improved_code; /* in the arena */
    const char *explanation;
};

/* Inference.Escalate, signed. */
enum ec_status inf_client_escalate(struct inf_client *c, const char *task_id, const char *task,
                                   const char *failed_code, const char *const *error_history,
                                   size_t n_errors, const char *language, struct ec_arena *arena,
                                   struct inf_escalation *out, struct ec_err *err);

#endif
