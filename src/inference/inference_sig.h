/* Coordinator -> inference request signatures (issue #5; the original's section 5.3 scheme carried
 * over to gRPC). The coordinator sends five metadata entries with each call:
 *
 *   x-coordinator-peer-id     its peer id (COORDINATOR_PEER_ID)
 *   x-inference-timestamp-ms  milliseconds since the epoch, decimal
 *   x-inference-nonce         a fresh random token (base64url, 8..128 characters)
 *   x-inference-body-sha256   lower-case hex SHA-256 of the serialized request message, exactly
 *                             the bytes sent on the wire
 *   x-inference-signature     base64 Ed25519 signature by the coordinator key over the payload
 *
 * The payload is the original's JSON text, keys in this order, strings escaped as JavaScript's
 * JSON.stringify does, "method" always "POST" and "path" the gRPC method path:
 *
 *   {"peerId":"<id>","method":"POST","path":"/edgecoder.v1.Inference/Decompose",
 *    "timestampMs":<n>,"nonce":"<nonce>","bodySha256":"<hex>"}
 *
 * The verifier checks, in the original's order, each failure EC_EUNAUTH with its code:
 * all five present (inference_signature_missing), peer trusted
 * (inference_signature_untrusted_peer), timestamp numeric (inference_signature_invalid_timestamp),
 * |now - timestamp| <= skew (inference_signature_expired), nonce unseen
 * (inference_signature_replay), body hash equal to the received bytes' hash
 * (inference_signature_body_mismatch), signature good (inference_signature_invalid). A nonce is
 * remembered only once the whole request verified, so forged requests cannot burn nonces. */
#ifndef INFERENCE_SIG_H
#define INFERENCE_SIG_H

#include "common/ec_buf.h"
#include "common/ec_crypto.h"
#include "common/ec_status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INF_SIG_MD_PEER_ID   "x-coordinator-peer-id"
#define INF_SIG_MD_TIMESTAMP "x-inference-timestamp-ms"
#define INF_SIG_MD_NONCE     "x-inference-nonce"
#define INF_SIG_MD_BODY      "x-inference-body-sha256"
#define INF_SIG_MD_SIGNATURE "x-inference-signature"
#define INF_TOKEN_MD         "x-inference-token"

#define INF_SIG_PEER_ID_MAX 128
#define INF_SIG_NONCE_MAX   128
#define INF_SIG_NONCE_BYTES 18 /* 24 base64url characters */

#define INF_SIG_DEFAULT_SKEW_MS      120000
#define INF_SIG_DEFAULT_NONCE_TTL_MS 300000
#define INF_SIG_DEFAULT_NONCE_CAP    (1u << 20)

/* The five metadata values for one signed call; NUL-terminated text. */
struct inf_sig_md {
    char peer_id[INF_SIG_PEER_ID_MAX + 1];
    char timestamp_ms[24];
    char nonce[EC_B64URL_ENCODED_LEN(INF_SIG_NONCE_BYTES) + 1];
    char body_sha256[EC_HEX_ENCODED_LEN(EC_SHA256_LEN) + 1];
    char signature[EC_B64_ENCODED_LEN(EC_ED25519_SIG_LEN) + 1];
};

/* Appends the canonical payload to out. */
enum ec_status inf_sig_payload(struct ec_buf *out, const char *peer_id, const char *path,
                               int64_t timestamp_ms, const char *nonce, const char *body_sha256);

/* Signs a serialized request for method path (e.g. "/edgecoder.v1.Inference/Decompose") at
 * now_ms with a fresh nonce. key must hold an Ed25519 private key; peer_id 1..128 characters. */
enum ec_status inf_sig_sign(const struct ec_key *key, const char *peer_id, const char *path,
                            const void *body, size_t body_len, int64_t now_ms,
                            struct inf_sig_md *out, struct ec_err *err);

/* The verifier: trusted keys (fixed once calls start) and the nonce cache (locked inside). */
struct inf_sig_verifier;

struct inf_sig_verifier_opts {
    int64_t max_skew_ms;   /* 0: INF_SIG_DEFAULT_SKEW_MS */
    int64_t nonce_ttl_ms;  /* 0: INF_SIG_DEFAULT_NONCE_TTL_MS; at least the skew */
    size_t nonce_capacity; /* nonces remembered at once; full refuses (EC_ERATELIMIT) */
};

struct inf_sig_verifier *inf_sig_verifier_new(const struct inf_sig_verifier_opts *opts);
void inf_sig_verifier_free(struct inf_sig_verifier *v); /* NULL is a no-op */
/* Adds (or replaces) a trusted peer's SPKI PEM public key; before any verify. */
enum ec_status inf_sig_verifier_add_pem(struct inf_sig_verifier *v, const char *peer_id,
                                        const char *pem, struct ec_err *err);
/* Adds every peer of the original's INFERENCE_TRUSTED_COORDINATOR_KEYS_JSON: {"peerId":"PEM"}. */
enum ec_status inf_sig_verifier_add_json(struct inf_sig_verifier *v, const char *json_text,
                                         struct ec_err *err);
size_t inf_sig_verifier_key_count(const struct inf_sig_verifier *v);

/* What arrived: metadata values (NULL when absent), the method path, the received bytes. */
struct inf_sig_request {
    const char *peer_id;
    const char *timestamp_ms;
    const char *nonce;
    const char *body_sha256;
    const char *signature;
    const char *path;
    const void *body;
    size_t body_len;
};

enum ec_status inf_sig_verify(struct inf_sig_verifier *v, const struct inf_sig_request *req,
                              int64_t now_ms, struct ec_err *err);

#endif
