/* libFuzzer target for the signed-request headers and the envelope fields. Input: one flag byte,
 * then '\n'-separated fields (agent id, timestamp, nonce, body hash, signature, path, body agentId,
 * envelope payload, nonce, tag, ephemeral key; "\x01" alone means absent) and the rest is the body.
 * Flags let the target sign, hash or timestamp the request itself, so the checks past the
 * signature (nonce cache, rate windows, agentId) are reached too. Must never crash, never accept
 * a signature it did not make, never accept a replay. */
#include "common/ec_log.h"
#include "coord/coord_auth.h"
#include "coord/coord_envelope.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum {
    F_SIGN = 1 << 0,       /* replace the signature with a valid one */
    F_HASH = 1 << 1,       /* replace the body hash with the right one */
    F_LOOPBACK = 1 << 2,   /* socket address is loopback */
    F_NO_KEY = 1 << 3,     /* the agent registered no key */
    F_NOW = 1 << 4,        /* replace the timestamp with now */
    F_TWICE = 1 << 5,      /* send it again: must be refused */
    F_SAME_AGENT = 1 << 6, /* body agentId = x-agent-id */
    F_MANY = 1 << 7,       /* many requests with fresh nonces, time moving: fills the tables */
};

enum {
    FIELD_AGENT,
    FIELD_TS,
    FIELD_NONCE,
    FIELD_SHA,
    FIELD_SIG,
    FIELD_PATH,
    FIELD_BODY_AGENT,
    FIELD_PAYLOAD,
    FIELD_ENV_NONCE,
    FIELD_TAG,
    FIELD_EPHEMERAL,
    NFIELDS
};

#define NOW 1760000000000LL

static struct ec_key *sign_key, *agent_x25519;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_signed_headers: %s\n", what);
    abort();
}

static void setup_keys(void)
{
    uint8_t seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)(i * 7 + 1);
    if (ec_key_import_raw_private(EC_KEY_ED25519, seed, 32, &sign_key, NULL) != EC_OK ||
        ec_key_import_raw_private(EC_KEY_X25519, seed, 32, &agent_x25519, NULL) != EC_OK)
        die("cannot make the fixed keys");
    /* EC_FUZZ_VERBOSE=1 shows each refusal and its reason, to see what a seed reaches. */
    ec_log_setup("fuzz", getenv("EC_FUZZ_VERBOSE") ? EC_LOG_DEBUG : EC_LOG_ERROR, 2);
}

/* Header values as civetweb hands them over: NUL-terminated, cut at an embedded NUL. */
static char *field_dup(struct ec_arena *a, const uint8_t *p, size_t n)
{
    if (n == 1 && p[0] == 1)
        return NULL;
    return ec_arena_strndup(a, (const char *)p, n);
}

static void sign_into(struct ec_arena *a, struct coord_signed_headers *h, const char *path)
{
    if (h->timestamp_ms == NULL || h->nonce == NULL || h->body_sha256 == NULL)
        return;
    char canonical[4096];
    size_t n = coord_auth_canonical(canonical, sizeof(canonical), h->timestamp_ms, h->nonce, "POST",
                                    path, h->body_sha256);
    uint8_t sig[EC_ED25519_SIG_LEN];
    if (n == 0 || ec_key_sign(sign_key, canonical, n, sig, NULL) != EC_OK)
        return;
    h->signature = ec_b64_encode_arena(a, sig, sizeof(sig));
}

static void check_auth(struct ec_arena *a, unsigned flags, char **f, const uint8_t *body,
                       size_t body_len)
{
    struct coord_auth_opts o = { .max_skew_ms = 120000,
                                 .nonce_ttl_ms = 300000,
                                 .nonce_capacity = 16,
                                 .rate_limit_max = 8,
                                 .rate_limit_window_ms = 1000 };
    struct coord_auth *auth = coord_auth_new(&o);
    struct coord_signed_headers h = { f[FIELD_AGENT], f[FIELD_TS], f[FIELD_NONCE], f[FIELD_SHA],
                                      f[FIELD_SIG] };
    const char *path = f[FIELD_PATH] ? f[FIELD_PATH] : "/heartbeat";
    const struct ec_key *key = (flags & F_NO_KEY) ? NULL : sign_key;
    const char *body_agent = (flags & F_SAME_AGENT) ? h.agent_id : f[FIELD_BODY_AGENT];
    if (flags & F_NOW)
        h.timestamp_ms = ec_arena_sprintf(a, "%lld", NOW);
    if (flags & F_HASH) {
        uint8_t md[EC_SHA256_LEN];
        ec_sha256(body, body_len, md);
        h.body_sha256 = ec_hex_encode_arena(a, md, sizeof(md));
    }
    int rounds = (flags & F_MANY) ? 40 : 1;
    for (int i = 0; i < rounds; i++) {
        int64_t now = NOW + (int64_t)i * 97;
        if (flags & F_MANY && h.nonce != NULL)
            h.nonce = ec_arena_sprintf(a, "%.100s%d", f[FIELD_NONCE] ? f[FIELD_NONCE] : "", i);
        bool signed_here = false;
        if (flags & F_SIGN) {
            const char *before = h.signature;
            sign_into(a, &h, path);
            signed_here = h.signature != before;
        }
        struct ec_err err = { 0 };
        bool loopback = (flags & F_LOOPBACK) != 0;
        enum ec_status st = coord_auth_verify(auth, &h, "POST", path, body, body_len, key,
                                              body_agent, loopback, now, &err);
        if (st != EC_OK && st != EC_EUNAUTH && st != EC_ERATELIMIT)
            die("unexpected status");
        if (st == EC_OK && key != NULL && !signed_here)
            die("accepted a signature the target did not make");
        if (st == EC_OK && (flags & F_TWICE) && coord_signed_headers_present(&h) &&
            coord_auth_verify(auth, &h, "POST", path, body, body_len, key, body_agent, loopback,
                              now, &err) == EC_OK)
            die("accepted a replay");
        if (st != EC_OK && err.msg[0] == '\0')
            die("a refusal without a reason");
    }
    coord_auth_reset_agent(auth, h.agent_id);
    coord_auth_free(auth);
}

static void check_envelope(struct ec_arena *a, char **f, const uint8_t *body, size_t body_len)
{
    uint8_t key[COORD_ENVELOPE_KEY_LEN];
    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = (uint8_t)(i * 3);
    char *pt = NULL;
    size_t len = 0;
    struct ec_err err = { 0 };
    if (coord_envelope_open(key, f[FIELD_PAYLOAD], f[FIELD_ENV_NONCE], f[FIELD_TAG], a, &pt, &len,
                            &err) == EC_OK)
        die("opened an envelope nobody sealed");
    if (strcmp(ec_err_code(&err), "envelope_decrypt_failed") != 0)
        die("open failed with another code");

    /* The agent side on the fuzzed ephemeral key and subtask id (the path field). */
    uint8_t agent_key[COORD_ENVELOPE_KEY_LEN];
    enum ec_status st =
        coord_envelope_agent_key(agent_x25519, f[FIELD_EPHEMERAL], f[FIELD_PATH], agent_key, &err);
    if (st != EC_OK && st != EC_EINVAL)
        die("agent key derivation failed unexpectedly");

    /* Sealing the body for the fuzzed agent key, then opening it as that agent would. */
    struct coord_envelope env;
    st = coord_envelope_seal(f[FIELD_EPHEMERAL], f[FIELD_PATH], body, body_len, a, &env, &err);
    if (st != EC_OK && st != EC_EINVAL)
        die("seal failed unexpectedly");
    if (st == EC_OK) {
        if (coord_envelope_open(env.key, env.encrypted_payload, env.nonce, env.tag, a, &pt, &len,
                                &err) != EC_OK ||
            len != body_len || memcmp(pt, body, len) != 0)
            die("a sealed envelope did not open to its plaintext");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (sign_key == NULL)
        setup_keys();
    if (size == 0)
        return 0;
    unsigned flags = data[0];
    const uint8_t *p = data + 1, *end = data + size;
    struct ec_arena arena;
    ec_arena_init(&arena);
    char *f[NFIELDS] = { 0 };
    for (int i = 0; i < NFIELDS; i++) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) {
            f[i] = NULL; /* fields past the end are absent */
            continue;
        }
        f[i] = field_dup(&arena, p, (size_t)(nl - p));
        p = nl + 1;
    }
    check_auth(&arena, flags, f, p, (size_t)(end - p));
    check_envelope(&arena, f, p, (size_t)(end - p));
    ec_arena_release(&arena);
    return 0;
}
