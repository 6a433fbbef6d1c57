/* Coordinator -> inference request signatures: the signer, the trusted-keys table and the
 * verifier with its skew window and nonce replay cache. The scheme is in inference_sig.h. */
#include "inference/inference_sig.h"

#include "common/ec_mem.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NONCE_KEY_LEN 16
#define MAX_TRUSTED   256

struct trusted_key {
    char *peer_id;
    struct ec_key *key;
};

/* A remembered nonce: in a hash bucket chain and in the insertion-order list used to expire. */
struct nonce_entry {
    uint8_t key[NONCE_KEY_LEN];
    int64_t expires_ms;
    struct nonce_entry *bucket_next;
    struct nonce_entry *fifo_next;
};

struct inf_sig_verifier {
    int64_t max_skew_ms, nonce_ttl_ms;
    size_t nonce_capacity;
    struct trusted_key keys[MAX_TRUSTED];
    size_t nkeys;
    pthread_mutex_t lock; /* guards everything below */
    struct nonce_entry **buckets;
    size_t nbuckets; /* a power of two */
    struct nonce_entry *fifo_head, *fifo_tail;
    size_t nnonces;
};

static bool valid_token_chars(const char *s, size_t max)
{
    size_t n = strlen(s);
    return n > 0 && n <= max &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") == n;
}

enum ec_status inf_sig_payload(struct ec_buf *out, const char *peer_id, const char *path,
                               int64_t timestamp_ms, const char *nonce, const char *body_sha256)
{
    enum ec_status st = ec_buf_puts(out, "{\"peerId\":\"");
    if (st == EC_OK)
        st = ec_buf_json_escape(out, peer_id, strlen(peer_id));
    if (st == EC_OK)
        st = ec_buf_puts(out, "\",\"method\":\"POST\",\"path\":\"");
    if (st == EC_OK)
        st = ec_buf_json_escape(out, path, strlen(path));
    if (st == EC_OK)
        st = ec_buf_printf(out, "\",\"timestampMs\":%lld,\"nonce\":\"", (long long)timestamp_ms);
    if (st == EC_OK)
        st = ec_buf_json_escape(out, nonce, strlen(nonce));
    if (st == EC_OK)
        st = ec_buf_puts(out, "\",\"bodySha256\":\"");
    if (st == EC_OK)
        st = ec_buf_json_escape(out, body_sha256, strlen(body_sha256));
    if (st == EC_OK)
        st = ec_buf_puts(out, "\"}");
    return st;
}

enum ec_status inf_sig_sign(const struct ec_key *key, const char *peer_id, const char *path,
                            const void *body, size_t body_len, int64_t now_ms,
                            struct inf_sig_md *out, struct ec_err *err)
{
    memset(out, 0, sizeof(*out));
    if (peer_id == NULL || !valid_token_chars(peer_id, INF_SIG_PEER_ID_MAX))
        return ec_err_set(err, EC_EINVAL, NULL,
                          "peer id \"%.64s\" is not 1..128 characters of [A-Za-z0-9._:-]",
                          peer_id != NULL ? peer_id : "");
    if (key == NULL || !ec_key_has_private(key))
        return ec_err_set(err, EC_EINVAL, NULL, "signing needs an Ed25519 private key");
    snprintf(out->peer_id, sizeof(out->peer_id), "%s", peer_id);
    snprintf(out->timestamp_ms, sizeof(out->timestamp_ms), "%lld", (long long)now_ms);
    ec_random_token_buf(out->nonce, sizeof(out->nonce), INF_SIG_NONCE_BYTES);
    uint8_t digest[EC_SHA256_LEN];
    ec_sha256(body_len > 0 ? body : "", body_len, digest);
    ec_hex_encode(out->body_sha256, sizeof(out->body_sha256), digest, sizeof(digest));

    struct ec_buf payload;
    ec_buf_init(&payload, 0);
    enum ec_status st =
        inf_sig_payload(&payload, peer_id, path, now_ms, out->nonce, out->body_sha256);
    uint8_t sig[EC_ED25519_SIG_LEN];
    if (st == EC_OK)
        st = ec_key_sign(key, payload.data, payload.len, sig, err);
    else
        ec_err_set(err, st, NULL, "cannot build the signature payload");
    if (st == EC_OK)
        ec_b64_encode(out->signature, sizeof(out->signature), sig, sizeof(sig));
    ec_buf_release(&payload);
    return st;
}

/* --- the verifier ----------------------------------------------------------------------------- */

struct inf_sig_verifier *inf_sig_verifier_new(const struct inf_sig_verifier_opts *opts)
{
    struct inf_sig_verifier *v = ec_xcalloc(1, sizeof(*v));
    struct inf_sig_verifier_opts o = { 0 };
    if (opts != NULL)
        o = *opts;
    v->max_skew_ms = o.max_skew_ms > 0 ? o.max_skew_ms : INF_SIG_DEFAULT_SKEW_MS;
    v->nonce_ttl_ms = o.nonce_ttl_ms > 0 ? o.nonce_ttl_ms : INF_SIG_DEFAULT_NONCE_TTL_MS;
    if (v->nonce_ttl_ms < v->max_skew_ms)
        v->nonce_ttl_ms = v->max_skew_ms;
    v->nonce_capacity = o.nonce_capacity > 0 ? o.nonce_capacity : INF_SIG_DEFAULT_NONCE_CAP;
    v->nbuckets = 1024;
    while (v->nbuckets < v->nonce_capacity / 4 && v->nbuckets < (1u << 20))
        v->nbuckets <<= 1;
    v->buckets = ec_xcalloc(v->nbuckets, sizeof(*v->buckets));
    pthread_mutex_init(&v->lock, NULL);
    return v;
}

void inf_sig_verifier_free(struct inf_sig_verifier *v)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < v->nkeys; i++) {
        free(v->keys[i].peer_id);
        ec_key_free(v->keys[i].key);
    }
    struct nonce_entry *e = v->fifo_head;
    while (e != NULL) {
        struct nonce_entry *next = e->fifo_next;
        free(e);
        e = next;
    }
    free(v->buckets);
    pthread_mutex_destroy(&v->lock);
    free(v);
}

enum ec_status inf_sig_verifier_add_pem(struct inf_sig_verifier *v, const char *peer_id,
                                        const char *pem, struct ec_err *err)
{
    if (peer_id == NULL || !valid_token_chars(peer_id, INF_SIG_PEER_ID_MAX))
        return ec_err_set(err, EC_EINVAL, NULL,
                          "trusted peer id \"%.64s\" is not 1..128 characters of [A-Za-z0-9._:-]",
                          peer_id != NULL ? peer_id : "");
    struct ec_key *key = NULL;
    struct ec_err kerr = { 0 };
    if (pem == NULL ||
        ec_key_load_public_pem(EC_KEY_ED25519, pem, strlen(pem), &key, &kerr) != EC_OK)
        return ec_err_set(err, EC_EINVAL, NULL,
                          "the key of trusted peer \"%s\" is not an Ed25519 public key PEM (%s)",
                          peer_id, kerr.msg);
    for (size_t i = 0; i < v->nkeys; i++) {
        if (strcmp(v->keys[i].peer_id, peer_id) == 0) {
            ec_key_free(v->keys[i].key);
            v->keys[i].key = key;
            return EC_OK;
        }
    }
    if (v->nkeys >= MAX_TRUSTED) {
        ec_key_free(key);
        return ec_err_set(err, EC_EINVAL, NULL, "more than %d trusted coordinator keys",
                          MAX_TRUSTED);
    }
    v->keys[v->nkeys].peer_id = ec_xstrdup(peer_id);
    v->keys[v->nkeys].key = key;
    v->nkeys++;
    return EC_OK;
}

enum ec_status inf_sig_verifier_add_json(struct inf_sig_verifier *v, const char *json_text,
                                         struct ec_err *err)
{
    json_error_t jerr;
    json_t *obj = json_loads(json_text, 0, &jerr);
    if (!json_is_object(obj)) {
        json_decref(obj);
        return ec_err_set(err, EC_EINVAL, NULL, "is not a JSON object {\"peerId\":\"PEM\"}");
    }
    enum ec_status st = EC_OK;
    const char *peer;
    json_t *pem;
    json_object_foreach(obj, peer, pem)
    {
        if (!json_is_string(pem)) {
            st = ec_err_set(err, EC_EINVAL, NULL, "the key of \"%.64s\" is not a string", peer);
            break;
        }
        if ((st = inf_sig_verifier_add_pem(v, peer, json_string_value(pem), err)) != EC_OK)
            break;
    }
    json_decref(obj);
    return st;
}

size_t inf_sig_verifier_key_count(const struct inf_sig_verifier *v)
{
    return v->nkeys;
}

static const struct ec_key *trusted(const struct inf_sig_verifier *v, const char *peer_id)
{
    for (size_t i = 0; i < v->nkeys; i++)
        if (strcmp(v->keys[i].peer_id, peer_id) == 0)
            return v->keys[i].key;
    return NULL;
}

static void nonce_key(const char *peer_id, const char *nonce, uint8_t out[NONCE_KEY_LEN])
{
    struct ec_sha256_ctx *ctx = ec_sha256_new();
    ec_sha256_update(ctx, peer_id, strlen(peer_id) + 1); /* the NUL separates the two */
    ec_sha256_update(ctx, nonce, strlen(nonce));
    uint8_t digest[EC_SHA256_LEN];
    ec_sha256_final(ctx, digest);
    ec_sha256_free(ctx);
    memcpy(out, digest, NONCE_KEY_LEN);
}

static size_t bucket_of(const struct inf_sig_verifier *v, const uint8_t key[NONCE_KEY_LEN])
{
    uint64_t h;
    memcpy(&h, key, sizeof(h));
    return (size_t)(h & (v->nbuckets - 1));
}

/* Called with the lock held: forgets nonces whose time has passed (oldest first). */
static void nonces_prune(struct inf_sig_verifier *v, int64_t now_ms)
{
    while (v->fifo_head != NULL && v->fifo_head->expires_ms <= now_ms) {
        struct nonce_entry *e = v->fifo_head;
        struct nonce_entry **pp = &v->buckets[bucket_of(v, e->key)];
        while (*pp != NULL && *pp != e)
            pp = &(*pp)->bucket_next;
        if (*pp == e)
            *pp = e->bucket_next;
        v->fifo_head = e->fifo_next;
        if (v->fifo_head == NULL)
            v->fifo_tail = NULL;
        v->nnonces--;
        free(e);
    }
}

static bool nonce_seen_locked(const struct inf_sig_verifier *v, const uint8_t key[NONCE_KEY_LEN],
                              int64_t now_ms)
{
    for (const struct nonce_entry *e = v->buckets[bucket_of(v, key)]; e != NULL; e = e->bucket_next)
        if (e->expires_ms > now_ms && memcmp(e->key, key, NONCE_KEY_LEN) == 0)
            return true;
    return false;
}

static bool nonce_seen(struct inf_sig_verifier *v, const uint8_t key[NONCE_KEY_LEN], int64_t now_ms)
{
    pthread_mutex_lock(&v->lock);
    bool seen = nonce_seen_locked(v, key, now_ms);
    pthread_mutex_unlock(&v->lock);
    return seen;
}

/* Remembers the nonce unless it is already there (a concurrent twin won): EC_EUNAUTH then. */
static enum ec_status nonce_remember(struct inf_sig_verifier *v, const uint8_t key[NONCE_KEY_LEN],
                                     int64_t now_ms, struct ec_err *err)
{
    enum ec_status st = EC_OK;
    pthread_mutex_lock(&v->lock);
    nonces_prune(v, now_ms);
    if (nonce_seen_locked(v, key, now_ms)) {
        st = ec_err_set(err, EC_EUNAUTH, "inference_signature_replay", "nonce already used");
    } else if (v->nnonces >= v->nonce_capacity) {
        st =
            ec_err_set(err, EC_ERATELIMIT, "inference_nonce_cache_full",
                       "too many signed requests within the nonce window (%zu)", v->nonce_capacity);
    } else {
        struct nonce_entry *e = ec_xcalloc(1, sizeof(*e));
        memcpy(e->key, key, NONCE_KEY_LEN);
        e->expires_ms = now_ms + v->nonce_ttl_ms;
        size_t b = bucket_of(v, key);
        e->bucket_next = v->buckets[b];
        v->buckets[b] = e;
        if (v->fifo_tail != NULL)
            v->fifo_tail->fifo_next = e;
        else
            v->fifo_head = e;
        v->fifo_tail = e;
        v->nnonces++;
    }
    pthread_mutex_unlock(&v->lock);
    return st;
}

static bool parse_timestamp(const char *s, int64_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 15 || strspn(s, "0123456789") != n)
        return false;
    *out = strtoll(s, NULL, 10);
    return true;
}

enum ec_status inf_sig_verify(struct inf_sig_verifier *v, const struct inf_sig_request *req,
                              int64_t now_ms, struct ec_err *err)
{
    if (req->peer_id == NULL || req->timestamp_ms == NULL || req->nonce == NULL ||
        req->body_sha256 == NULL || req->signature == NULL || req->peer_id[0] == '\0' ||
        req->nonce[0] == '\0' || req->signature[0] == '\0')
        return ec_err_set(err, EC_EUNAUTH, "inference_signature_missing",
                          "the x-inference-* signature metadata is missing");
    const struct ec_key *key =
        strlen(req->peer_id) <= INF_SIG_PEER_ID_MAX ? trusted(v, req->peer_id) : NULL;
    if (key == NULL)
        return ec_err_set(err, EC_EUNAUTH, "inference_signature_untrusted_peer",
                          "coordinator \"%.64s\" is not trusted", req->peer_id);
    int64_t ts;
    if (!parse_timestamp(req->timestamp_ms, &ts))
        return ec_err_set(err, EC_EUNAUTH, "inference_signature_invalid_timestamp",
                          "x-inference-timestamp-ms \"%.24s\" is not a number", req->timestamp_ms);
    int64_t skew = now_ms > ts ? now_ms - ts : ts - now_ms;
    if (skew > v->max_skew_ms)
        return ec_err_set(err, EC_EUNAUTH, "inference_signature_expired",
                          "timestamp is %lld ms from now (at most %lld)", (long long)skew,
                          (long long)v->max_skew_ms);
    if (!valid_token_chars(req->nonce, INF_SIG_NONCE_MAX))
        return ec_err_set(err, EC_EUNAUTH, "inference_signature_invalid",
                          "x-inference-nonce is not 1..128 characters of [A-Za-z0-9._:-]");
    uint8_t nkey[NONCE_KEY_LEN];
    nonce_key(req->peer_id, req->nonce, nkey);
    if (nonce_seen(v, nkey, now_ms))
        return ec_err_set(err, EC_EUNAUTH, "inference_signature_replay", "nonce already used");
    uint8_t digest[EC_SHA256_LEN];
    ec_sha256(req->body_len > 0 ? req->body : "", req->body_len, digest);
    char hex[EC_HEX_ENCODED_LEN(EC_SHA256_LEN) + 1];
    ec_hex_encode(hex, sizeof(hex), digest, sizeof(digest));
    if (strlen(req->body_sha256) != sizeof(hex) - 1 ||
        strncasecmp(hex, req->body_sha256, sizeof(hex) - 1) != 0)
        return ec_err_set(err, EC_EUNAUTH, "inference_signature_body_mismatch",
                          "x-inference-body-sha256 is not the SHA-256 of the request");

    uint8_t sig[EC_ED25519_SIG_LEN + 2];
    size_t sig_len = 0;
    size_t b64_len = strlen(req->signature);
    if (b64_len > EC_B64_ENCODED_LEN(EC_ED25519_SIG_LEN) ||
        ec_b64_decode(sig, sizeof(sig), &sig_len, req->signature, b64_len, NULL) != EC_OK ||
        sig_len != EC_ED25519_SIG_LEN)
        return ec_err_set(err, EC_EUNAUTH, "inference_signature_invalid",
                          "x-inference-signature is not a base64 Ed25519 signature");
    struct ec_buf payload;
    ec_buf_init(&payload, 0);
    /* The payload is built from the received hash text (as the original did). */
    enum ec_status st =
        inf_sig_payload(&payload, req->peer_id, req->path, ts, req->nonce, req->body_sha256);
    if (st == EC_OK && ec_key_verify(key, payload.data, payload.len, sig, sig_len, NULL) != EC_OK)
        st = EC_EUNAUTH;
    ec_buf_release(&payload);
    if (st != EC_OK)
        return ec_err_set(err, EC_EUNAUTH, "inference_signature_invalid",
                          "the signature of coordinator \"%.64s\" does not verify", req->peer_id);
    return nonce_remember(v, nkey, now_ms, err);
}
