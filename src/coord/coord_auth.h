/* Signed agent requests (the original's scheme, its flaws fixed): verification of the
 * x-agent-id / x-timestamp-ms / x-nonce / x-body-sha256 / x-signature headers, a nonce cache
 * over the skew window and per-agent rate limits. Transport-free and thread-safe. */
#ifndef COORD_AUTH_H
#define COORD_AUTH_H

#include "common/ec_crypto.h"
#include "common/ec_status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct coord_auth_opts {
    int64_t max_skew_ms;          /* SECURITY_MAX_SKEW_MS, default 120000 */
    int64_t nonce_ttl_ms;         /* SECURITY_NONCE_TTL_MS, default 300000 (>= 2 * skew) */
    size_t nonce_capacity;        /* most nonces remembered at once (memory bound), e.g. 1<<20 */
    int64_t rate_limit_max;       /* AGENT_RATE_LIMIT_MAX signed requests per window, default 30 */
    int64_t rate_limit_window_ms; /* AGENT_RATE_LIMIT_WINDOW_MS, default 60000 */
};

/* The five headers as received (NULL when absent). */
struct coord_signed_headers {
    const char *agent_id;
    const char *timestamp_ms;
    const char *nonce;
    const char *body_sha256;
    const char *signature; /* base64 of the 64-byte Ed25519 signature */
};

struct coord_auth;

struct coord_auth *coord_auth_new(const struct coord_auth_opts *opts);
void coord_auth_free(struct coord_auth *auth); /* NULL is a no-op */

/* True when all five headers are present; false when none is. Some but not all present is
 * EC_EUNAUTH "signature_invalid" from coord_auth_verify. */
bool coord_signed_headers_present(const struct coord_signed_headers *h);

/* Verifies one request. agent_key is the key the agent registered (NULL when it registered
 * none); body_agent_id is the agentId in the parsed body (NULL when none). is_loopback (from the
 * socket address only) skips the rate limit, as the original did. Order and outcomes:
 *   - unsigned request: OK if agent_key is NULL (an agent that never registered a key), else
 *     EC_EUNAUTH "signature_invalid" (once a key is registered, unsigned requests are refused);
 *   - rate limit per agent (sliding window) -> EC_EUNAUTH "signature_invalid", reason
 *     "rate_limited";
 *   - no registered key for a signed request -> EC_EUNAUTH "signature_invalid";
 *   - timestamp not an integer, or |now - ts| > max_skew -> "signature_invalid";
 *   - sha256 hex of the received body bytes != x-body-sha256 -> "signature_invalid" (the
 *     original trusted the header);
 *   - Ed25519 over "<timestampMs>\n<nonce>\nPOST\n<path>\n<bodySha256>" fails ->
 *     "signature_invalid";
 *   - nonce seen within the TTL -> "signature_invalid", reason "replay" (recorded only after the
 *     signature verified, so forged requests cannot burn nonces);
 *   - body agentId != x-agent-id -> EC_EUNAUTH "agent_id_mismatch".
 * err->msg carries a short reason (never the signature or body). */
enum ec_status coord_auth_verify(struct coord_auth *auth, const struct coord_signed_headers *h,
                                 const char *method, const char *path, const void *body,
                                 size_t body_len, const struct ec_key *agent_key,
                                 const char *body_agent_id, bool is_loopback, int64_t now_ms,
                                 struct ec_err *err);

/* Forgets an agent's rate-limit window (the original reset it on every /register). */
void coord_auth_reset_agent(struct coord_auth *auth, const char *agent_id);

/* The canonical string the agent signs, into out (NUL-terminated); returns its length, or 0 if
 * out_cap is too small. Exposed for tests, the simulator and the agent. */
size_t coord_auth_canonical(char *out, size_t out_cap, const char *timestamp_ms, const char *nonce,
                            const char *method, const char *path, const char *body_sha256_hex);

#endif
