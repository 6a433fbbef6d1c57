/* Verification of signed agent requests: the original's headers and canonical string, with its
 * flaws fixed (the body hash is recomputed, keyed agents must sign, nonces are remembered for as
 * long as a replay could pass the skew check, and per-agent rate windows are bounded). */
#include "coord/coord_auth.h"

#include "common/ec_log.h"
#include "common/ec_mem.h"
#include "coord/coord_auth_int.h"

#include <stdlib.h>
#include <string.h>

#define AGENT_ID_MAX     128
#define NONCE_MAX        128 /* the original sends a 36-character UUID */
#define TIMESTAMP_DIGITS 15  /* milliseconds since 1970 have 13 until the year 2286 */
#define METHOD_MAX       16
#define PATH_MAX_LEN     1024
#define BODY_SHA256_HEX  EC_HEX_ENCODED_LEN(EC_SHA256_LEN)
#define SIGNATURE_B64    EC_B64_ENCODED_LEN(EC_ED25519_SIG_LEN)
#define CANONICAL_MAX \
    (TIMESTAMP_DIGITS + NONCE_MAX + METHOD_MAX + PATH_MAX_LEN + BODY_SHA256_HEX + 5)
#define RATE_MAX_AGENTS (1 << 16) /* keyed agents with an active window on this machine */
#define SALT_LEN        32

#define DEFAULT_SKEW_MS      120000
#define DEFAULT_NONCE_TTL_MS 300000
#define DEFAULT_NONCE_CAP    ((size_t)1 << 20)
#define DEFAULT_RATE_MAX     30
#define DEFAULT_RATE_WINDOW  60000
#define MAX_SKEW_MS          86400000 /* a day */
#define MAX_NONCE_TTL_MS     (2 * (int64_t)86400000)
#define MAX_NONCE_CAP        ((size_t)1 << 26) /* 15 bytes each at most: about 1 GB */

/* Immutable after coord_auth_new but for the two tables, which lock per shard. */
struct coord_auth {
    int64_t max_skew_ms;
    int64_t nonce_keep_ms;  /* how long past its timestamp a nonce is remembered */
    uint8_t salt[SALT_LEN]; /* keys the fingerprints, so nobody can aim at table slots */
    struct coord__nonces *nonces;
    struct coord__rates *rates;
};

static int64_t opt_or(int64_t v, int64_t dflt, int64_t max)
{
    if (v <= 0)
        return dflt;
    return v > max ? max : v;
}

struct coord_auth *coord_auth_new(const struct coord_auth_opts *opts)
{
    static const struct coord_auth_opts defaults = { 0 };
    if (opts == NULL)
        opts = &defaults;
    struct coord_auth *a = ec_xcalloc(1, sizeof(*a));
    a->max_skew_ms = opt_or(opts->max_skew_ms, DEFAULT_SKEW_MS, MAX_SKEW_MS);
    int64_t ttl = opt_or(opts->nonce_ttl_ms, DEFAULT_NONCE_TTL_MS, MAX_NONCE_TTL_MS);
    /* A replay is refused by the skew check once now > ts + skew, so the nonce must be kept at
     * least until then, whatever the TTL says. Past that the TTL counts from the earliest moment
     * the request could have been accepted (ts - skew): with the defaults a nonce is kept until
     * ts + 180 s, which leaves 60 s of slack should the wall clock step back. */
    a->nonce_keep_ms =
        ttl - a->max_skew_ms > a->max_skew_ms ? ttl - a->max_skew_ms : a->max_skew_ms;
    size_t cap = opts->nonce_capacity > 0 ? opts->nonce_capacity : DEFAULT_NONCE_CAP;
    cap = cap < MAX_NONCE_CAP ? cap : MAX_NONCE_CAP;
    a->nonces = coord__nonces_new(cap, a->max_skew_ms + a->nonce_keep_ms);
    a->rates =
        coord__rates_new(RATE_MAX_AGENTS, opt_or(opts->rate_limit_max, DEFAULT_RATE_MAX, INT32_MAX),
                         opt_or(opts->rate_limit_window_ms, DEFAULT_RATE_WINDOW, MAX_SKEW_MS));
    ec_random_bytes(a->salt, sizeof(a->salt));
    return a;
}

void coord_auth_free(struct coord_auth *auth)
{
    if (auth == NULL)
        return;
    coord__nonces_free(auth->nonces);
    coord__rates_free(auth->rates);
    ec_crypto_wipe(auth->salt, sizeof(auth->salt));
    free(auth);
}

bool coord_signed_headers_present(const struct coord_signed_headers *h)
{
    return h != NULL && h->agent_id != NULL && h->timestamp_ms != NULL && h->nonce != NULL &&
           h->body_sha256 != NULL && h->signature != NULL;
}

static bool any_header_present(const struct coord_signed_headers *h)
{
    return h != NULL && (h->agent_id != NULL || h->timestamp_ms != NULL || h->nonce != NULL ||
                         h->body_sha256 != NULL || h->signature != NULL);
}

size_t coord_auth_canonical(char *out, size_t out_cap, const char *timestamp_ms, const char *nonce,
                            const char *method, const char *path, const char *body_sha256_hex)
{
    const char *parts[] = { timestamp_ms, nonce, method, path, body_sha256_hex };
    size_t len = 0;
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        len += strlen(parts[i]) + (i > 0);
    if (out_cap <= len) {
        if (out_cap > 0)
            out[0] = '\0';
        return 0;
    }
    char *p = out;
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        if (i > 0)
            *p++ = '\n';
        size_t n = strlen(parts[i]);
        memcpy(p, parts[i], n);
        p += n;
    }
    *p = '\0';
    return len;
}

/* Length of s if it has 1..max bytes all in [lo, 0x7e] (or >= 0x80 when high is allowed), else
 * 0. No header value may hold a control character: '\n' separates the canonical fields. */
static size_t text_len(const char *s, size_t max, unsigned char lo, bool high)
{
    size_t n = strnlen(s, max + 1);
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == 0x7f || (c > 0x7f && !high) || c < lo)
            return 0;
    }
    return n;
}

/* A strict decimal integer: digits only, no sign, space, fraction or exponent. */
static bool parse_timestamp(const char *s, int64_t *out)
{
    size_t n = strnlen(s, TIMESTAMP_DIGITS + 1);
    if (n == 0 || n > TIMESTAMP_DIGITS)
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* SHA-256 under the secret salt of a domain byte, the agent id and, for nonces, '\n' and the
 * nonce (neither holds '\n'); the first COORD__FP_LEN bytes. */
static void fingerprint(const struct coord_auth *a, char domain, const char *agent_id,
                        size_t agent_len, const char *nonce, size_t nonce_len,
                        uint8_t fp[COORD__FP_LEN])
{
    uint8_t buf[SALT_LEN + 2 + AGENT_ID_MAX + NONCE_MAX];
    size_t n = 0;
    memcpy(buf, a->salt, SALT_LEN);
    n += SALT_LEN;
    buf[n++] = (uint8_t)domain;
    memcpy(buf + n, agent_id, agent_len);
    n += agent_len;
    if (nonce != NULL) {
        buf[n++] = '\n';
        memcpy(buf + n, nonce, nonce_len);
        n += nonce_len;
    }
    uint8_t md[EC_SHA256_LEN];
    ec_sha256(buf, n, md);
    memcpy(fp, md, COORD__FP_LEN);
    ec_crypto_wipe(buf, SALT_LEN);
}

/* Every refusal: one log line with the reason (never a header value but a checked agent id),
 * and err->msg set to the reason for the caller's `reason` field. */
static enum ec_status refuse(struct ec_err *err, enum ec_status status, const char *code,
                             const char *reason, const char *agent_id)
{
    if (agent_id != NULL)
        EC_INFO("signed request refused", EC_LS("reason", reason), EC_LS("agent_id", agent_id));
    else
        EC_INFO("signed request refused", EC_LS("reason", reason));
    return ec_err_set(err, status, code, "%s", reason);
}

#define INVALID(reason, agent) refuse(err, EC_EUNAUTH, "signature_invalid", reason, agent)

/* The cryptographic part: body hash, then the Ed25519 signature over the canonical string. */
static enum ec_status check_signature(const struct coord_signed_headers *h, const char *method,
                                      const char *path, const void *body, size_t body_len,
                                      const struct ec_key *agent_key, struct ec_err *err)
{
    if (strnlen(h->body_sha256, BODY_SHA256_HEX + 1) != BODY_SHA256_HEX)
        return INVALID("body_hash_malformed", h->agent_id);
    uint8_t claimed[EC_SHA256_LEN], actual[EC_SHA256_LEN];
    size_t len = 0;
    if (ec_hex_decode(claimed, sizeof(claimed), &len, h->body_sha256, BODY_SHA256_HEX, NULL) !=
        EC_OK)
        return INVALID("body_hash_malformed", h->agent_id);
    ec_sha256(body, body_len, actual);
    if (!ec_ct_equal(claimed, sizeof(claimed), actual, sizeof(actual)))
        return INVALID("body_hash_mismatch", h->agent_id);

    uint8_t sig[EC_ED25519_SIG_LEN + 2];
    if (strnlen(h->signature, SIGNATURE_B64 + 1) != SIGNATURE_B64 ||
        ec_b64_decode(sig, sizeof(sig), &len, h->signature, SIGNATURE_B64, NULL) != EC_OK ||
        len != EC_ED25519_SIG_LEN)
        return INVALID("signature_malformed", h->agent_id);
    if (text_len(method, METHOD_MAX, 0x21, false) == 0 ||
        text_len(path, PATH_MAX_LEN, 0x21, true) == 0)
        return INVALID("request_path_invalid", h->agent_id);
    char canonical[CANONICAL_MAX + 1];
    size_t n = coord_auth_canonical(canonical, sizeof(canonical), h->timestamp_ms, h->nonce, method,
                                    path, h->body_sha256);
    EC_ASSERT(n > 0);
    if (ec_key_verify(agent_key, canonical, n, sig, len, NULL) != EC_OK)
        return INVALID("signature_mismatch", h->agent_id);
    return EC_OK;
}

enum ec_status coord_auth_verify(struct coord_auth *auth, const struct coord_signed_headers *h,
                                 const char *method, const char *path, const void *body,
                                 size_t body_len, const struct ec_key *agent_key,
                                 const char *body_agent_id, bool is_loopback, int64_t now_ms,
                                 struct ec_err *err)
{
    EC_ASSERT(auth != NULL && method != NULL && path != NULL && (body != NULL || body_len == 0));
    if (!any_header_present(h)) {
        if (agent_key == NULL)
            return EC_OK; /* an agent that never registered a key: the original's unsigned path */
        return INVALID("unsigned_request_from_keyed_agent", NULL);
    }
    if (!coord_signed_headers_present(h))
        return INVALID("incomplete_signature_headers", NULL);
    size_t agent_len = text_len(h->agent_id, AGENT_ID_MAX, 0x20, true);
    if (agent_len == 0)
        return INVALID("agent_id_header_invalid", NULL);
    const char *agent = h->agent_id;
    if (agent_key == NULL)
        return INVALID("agent_key_not_registered", agent);

    /* A peek first, so that an agent over its limit costs no signature check; the request is
     * counted only once it has proven genuine and new (below), so forged or replayed requests
     * naming an agent cannot use up its budget. */
    uint8_t rate_fp[COORD__FP_LEN];
    if (!is_loopback) {
        fingerprint(auth, 'r', agent, agent_len, NULL, 0, rate_fp);
        if (!coord__rates_take(auth->rates, rate_fp, now_ms, false))
            return INVALID("rate_limited", agent);
    }

    int64_t ts = 0;
    if (!parse_timestamp(h->timestamp_ms, &ts))
        return INVALID("timestamp_invalid", agent);
    if (ts < now_ms - auth->max_skew_ms || ts > now_ms + auth->max_skew_ms)
        return INVALID("timestamp_skew", agent);
    size_t nonce_len = text_len(h->nonce, NONCE_MAX, 0x21, false);
    if (nonce_len == 0)
        return INVALID("nonce_invalid", agent);

    enum ec_status st = check_signature(h, method, path, body, body_len, agent_key, err);
    if (st != EC_OK)
        return st;

    /* Recorded only now, so that forged requests cannot burn an agent's nonces. */
    uint8_t nonce_fp[COORD__FP_LEN];
    fingerprint(auth, 'n', agent, agent_len, h->nonce, nonce_len, nonce_fp);
    switch (coord__nonces_add(auth->nonces, nonce_fp, ts + auth->nonce_keep_ms, now_ms)) {
    case COORD__NONCE_FRESH:
        break;
    case COORD__NONCE_REPLAY:
        return INVALID("replay", agent);
    case COORD__NONCE_FULL:
        /* Forgetting a live nonce would open a replay window: refuse until entries expire. */
        return refuse(err, EC_ERATELIMIT, "rate_limited", "nonce_cache_full", agent);
    }
    if (!is_loopback && !coord__rates_take(auth->rates, rate_fp, now_ms, true))
        return INVALID("rate_limited", agent);
    if (body_agent_id != NULL && strcmp(body_agent_id, agent) != 0)
        return refuse(err, EC_EUNAUTH, "agent_id_mismatch", "agent_id_mismatch", agent);
    return EC_OK;
}

void coord_auth_reset_agent(struct coord_auth *auth, const char *agent_id)
{
    size_t agent_len = agent_id ? text_len(agent_id, AGENT_ID_MAX, 0x20, true) : 0;
    if (agent_len == 0)
        return;
    uint8_t fp[COORD__FP_LEN];
    fingerprint(auth, 'r', agent_id, agent_len, NULL, 0, fp);
    coord__rates_reset(auth->rates, fp);
}
