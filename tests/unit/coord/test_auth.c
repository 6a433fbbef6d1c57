/* Signed agent requests: requests signed with ec_crypto as an agent signs them verify, every
 * failure has its code and reason, the nonce cache and rate windows keep their bounds, replays
 * race safely across threads; prints verifications/s. With EC_COMPAT_VECTORS=<json> it instead
 * checks vectors made by an independent implementation (tests/integration/41_*) and writes its
 * own signed requests to EC_COMPAT_OUT. */
#include "coord/coord_auth.h"
#include "coord/coord_auth_int.h"

#include "common/ec_log.h"
#include "common/ec_mem.h"

#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define NOW 1760000000000LL /* a fixed "now" keeps every case deterministic */

/* One request as an agent builds it; h points into the struct itself. */
struct req {
    char agent_id[64], ts[24], nonce[40], sha[EC_HEX_ENCODED_LEN(EC_SHA256_LEN) + 1];
    char sig[EC_B64_ENCODED_LEN(EC_ED25519_SIG_LEN) + 1];
    const char *path;
    char body[160];
    struct coord_signed_headers h;
};

static struct ec_key *new_key(void)
{
    struct ec_key *k = NULL;
    assert_int_equal(ec_key_generate(EC_KEY_ED25519, &k, NULL), EC_OK);
    return k;
}

/* A UUID-shaped random nonce, as the original's crypto.randomUUID(). */
static void random_nonce(char out[40])
{
    uint8_t b[16];
    ec_random_bytes(b, sizeof(b));
    char hex[33];
    ec_hex_encode(hex, sizeof(hex), b, sizeof(b));
    snprintf(out, 40, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
}

static void sign_req(struct req *r, const struct ec_key *key, const char *agent_id, int64_t ts)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->agent_id, sizeof(r->agent_id), "%s", agent_id);
    snprintf(r->ts, sizeof(r->ts), "%lld", (long long)ts);
    random_nonce(r->nonce);
    r->path = "/heartbeat";
    snprintf(r->body, sizeof(r->body), "{\"agentId\":\"%s\",\"powerTelemetry\":{}}", agent_id);
    uint8_t md[EC_SHA256_LEN];
    ec_sha256(r->body, strlen(r->body), md);
    ec_hex_encode(r->sha, sizeof(r->sha), md, sizeof(md));
    char canonical[512];
    size_t n = coord_auth_canonical(canonical, sizeof(canonical), r->ts, r->nonce, "POST", r->path,
                                    r->sha);
    assert_true(n > 0);
    uint8_t sig[EC_ED25519_SIG_LEN];
    assert_int_equal(ec_key_sign(key, canonical, n, sig, NULL), EC_OK);
    ec_b64_encode(r->sig, sizeof(r->sig), sig, sizeof(sig));
    r->h = (struct coord_signed_headers){ r->agent_id, r->ts, r->nonce, r->sha, r->sig };
}

static enum ec_status verify(struct coord_auth *a, struct req *r, const struct ec_key *key,
                             bool loopback, int64_t now, struct ec_err *err)
{
    ec_err_clear(err);
    return coord_auth_verify(a, &r->h, "POST", r->path, r->body, strlen(r->body), key, r->agent_id,
                             loopback, now, err);
}

#define assert_refused(st, err, want_status, want_code, want_reason) \
    do {                                                             \
        assert_int_equal((st), (want_status));                       \
        assert_string_equal(ec_err_code(err), (want_code));          \
        assert_string_equal((err)->msg, (want_reason));              \
    } while (0)

static struct coord_auth *new_auth(size_t nonce_cap, int64_t rate_max, int64_t rate_window)
{
    struct coord_auth_opts o = { .max_skew_ms = 120000,
                                 .nonce_ttl_ms = 300000,
                                 .nonce_capacity = nonce_cap,
                                 .rate_limit_max = rate_max,
                                 .rate_limit_window_ms = rate_window };
    return coord_auth_new(&o);
}

static void test_canonical(void **state)
{
    char out[128];
    size_t n =
        coord_auth_canonical(out, sizeof(out), "1700000000000", "n-1", "POST", "/pull", "ab");
    assert_string_equal(out, "1700000000000\nn-1\nPOST\n/pull\nab");
    assert_int_equal(n, strlen(out));
    assert_int_equal(coord_auth_canonical(out, n, "1700000000000", "n-1", "POST", "/pull", "ab"),
                     0);
    assert_string_equal(out, "");
}

static void test_signed_ok_and_unsigned(void **state)
{
    struct coord_auth *a = new_auth(0, 0, 0);
    struct ec_key *k = new_key();
    struct req r;
    struct ec_err err;
    sign_req(&r, k, "agent-1", NOW - 5000);
    assert_true(coord_signed_headers_present(&r.h));
    assert_int_equal(verify(a, &r, k, false, NOW, &err), EC_OK);
    /* Uppercase body-hash hex is the agent's choice: it signed what it sent. */
    sign_req(&r, k, "agent-1", NOW);
    for (char *p = r.sha; *p; p++)
        *p = (char)(*p >= 'a' && *p <= 'f' ? *p - 32 : *p);
    char canonical[512];
    size_t n =
        coord_auth_canonical(canonical, sizeof(canonical), r.ts, r.nonce, "POST", r.path, r.sha);
    uint8_t sig[EC_ED25519_SIG_LEN];
    assert_int_equal(ec_key_sign(k, canonical, n, sig, NULL), EC_OK);
    ec_b64_encode(r.sig, sizeof(r.sig), sig, sizeof(sig));
    assert_int_equal(verify(a, &r, k, false, NOW, &err), EC_OK);

    /* Unsigned: fine for an agent without a key, refused once one is registered. */
    struct coord_signed_headers none = { 0 };
    assert_false(coord_signed_headers_present(&none));
    assert_int_equal(coord_auth_verify(a, &none, "POST", "/heartbeat", "{}", 2, NULL, "agent-2",
                                       false, NOW, &err),
                     EC_OK);
    assert_int_equal(
        coord_auth_verify(a, NULL, "POST", "/heartbeat", NULL, 0, NULL, NULL, false, NOW, &err),
        EC_OK);
    enum ec_status st =
        coord_auth_verify(a, &none, "POST", "/heartbeat", "{}", 2, k, "agent-1", false, NOW, &err);
    assert_refused(st, &err, EC_EUNAUTH, "signature_invalid", "unsigned_request_from_keyed_agent");
    /* Signed, but the agent registered no key. */
    sign_req(&r, k, "agent-1", NOW);
    assert_refused(verify(a, &r, NULL, false, NOW, &err), &err, EC_EUNAUTH, "signature_invalid",
                   "agent_key_not_registered");
    ec_key_free(k);
    coord_auth_free(a);
    coord_auth_free(NULL);
}

static void test_each_missing_header(void **state)
{
    struct coord_auth *a = new_auth(0, 0, 0);
    struct ec_key *k = new_key();
    struct ec_err err;
    for (int i = 0; i < 5; i++) {
        struct req r;
        sign_req(&r, k, "agent-1", NOW);
        const char **field[] = { &r.h.agent_id, &r.h.timestamp_ms, &r.h.nonce, &r.h.body_sha256,
                                 &r.h.signature };
        *field[i] = NULL;
        assert_false(coord_signed_headers_present(&r.h));
        assert_refused(verify(a, &r, k, false, NOW, &err), &err, EC_EUNAUTH, "signature_invalid",
                       "incomplete_signature_headers");
        /* ... also for an agent without a key: a half-signed request is never "unsigned". */
        assert_int_equal(verify(a, &r, NULL, false, NOW, &err), EC_EUNAUTH);
    }
    ec_key_free(k);
    coord_auth_free(a);
}

static void test_bad_timestamps_and_skew(void **state)
{
    struct coord_auth *a = new_auth(0, 0, 0);
    struct ec_key *k = new_key();
    struct ec_err err;
    struct req r;
    static const char *const bad[] = { "",     "abc",     "12.5",  "-5",  "+1760000000000",
                                       " 176", "1.76e12", "0x1f4", "1 2", "1234567890123456" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sign_req(&r, k, "agent-1", NOW);
        r.h.timestamp_ms = bad[i];
        assert_refused(verify(a, &r, k, false, NOW, &err), &err, EC_EUNAUTH, "signature_invalid",
                       "timestamp_invalid");
    }
    int64_t skew = 120000;
    sign_req(&r, k, "agent-1", NOW - skew - 1);
    assert_refused(verify(a, &r, k, false, NOW, &err), &err, EC_EUNAUTH, "signature_invalid",
                   "timestamp_skew");
    sign_req(&r, k, "agent-1", NOW + skew + 1);
    assert_refused(verify(a, &r, k, false, NOW, &err), &err, EC_EUNAUTH, "signature_invalid",
                   "timestamp_skew");
    sign_req(&r, k, "agent-1", NOW - skew);
    assert_int_equal(verify(a, &r, k, false, NOW, &err), EC_OK);
    sign_req(&r, k, "agent-1", NOW + skew);
    assert_int_equal(verify(a, &r, k, false, NOW, &err), EC_OK);
    ec_key_free(k);
    coord_auth_free(a);
}

static void test_tampering_and_wrong_key(void **state)
{
    struct coord_auth *a = new_auth(0, 0, 0);
    struct ec_key *k = new_key(), *other = new_key();
    struct ec_err err;
    struct req r;
    /* The body changed, the original's header hash (and so a valid signature) kept. */
    sign_req(&r, k, "agent-1", NOW);
    memcpy(strstr(r.body, "{}"), "[]", 2);
    assert_refused(verify(a, &r, k, false, NOW, &err), &err, EC_EUNAUTH, "signature_invalid",
                   "body_hash_mismatch");
    sign_req(&r, k, "agent-1", NOW);
    r.sha[10] = 'g';
    assert_refused(verify(a, &r, k, false, NOW, &err), &err, EC_EUNAUTH, "signature_invalid",
                   "body_hash_malformed");
    sign_req(&r, k, "agent-1", NOW);
    assert_refused(verify(a, &r, other, false, NOW, &err), &err, EC_EUNAUTH, "signature_invalid",
                   "signature_mismatch");
    /* The nonce of a forged request is not burnt: the genuine one still passes. */
    assert_int_equal(verify(a, &r, k, false, NOW, &err), EC_OK);
    /* Another path than the one signed. */
    sign_req(&r, k, "agent-1", NOW);
    r.path = "/pull";
    assert_refused(verify(a, &r, k, false, NOW, &err), &err, EC_EUNAUTH, "signature_invalid",
                   "signature_mismatch");
    static const char *const bad_sigs[] = { "", "!!!!", "AAAA", "not base64 at all" };
    for (size_t i = 0; i < sizeof(bad_sigs) / sizeof(bad_sigs[0]); i++) {
        sign_req(&r, k, "agent-1", NOW);
        r.h.signature = bad_sigs[i];
        assert_refused(verify(a, &r, k, false, NOW, &err), &err, EC_EUNAUTH, "signature_invalid",
                       "signature_malformed");
    }
    sign_req(&r, k, "agent-1", NOW);
    r.sig[87] = '\0'; /* drop the padding */
    assert_refused(verify(a, &r, k, false, NOW, &err), &err, EC_EUNAUTH, "signature_invalid",
                   "signature_malformed");
    /* Header values with control characters or over their limits. */
    sign_req(&r, k, "agent-1", NOW);
    r.h.nonce = "abc\nPOST";
    assert_refused(verify(a, &r, k, false, NOW, &err), &err, EC_EUNAUTH, "signature_invalid",
                   "nonce_invalid");
    char longid[200];
    memset(longid, 'a', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    r.h.agent_id = longid;
    assert_refused(verify(a, &r, k, false, NOW, &err), &err, EC_EUNAUTH, "signature_invalid",
                   "agent_id_header_invalid");
    ec_key_free(k);
    ec_key_free(other);
    coord_auth_free(a);
}

static void test_replay_and_agent_mismatch(void **state)
{
    struct coord_auth *a = new_auth(0, 0, 0);
    struct ec_key *k = new_key();
    struct ec_err err;
    struct req r;
    sign_req(&r, k, "agent-1", NOW);
    assert_int_equal(verify(a, &r, k, false, NOW, &err), EC_OK);
    assert_refused(verify(a, &r, k, false, NOW + 1000, &err), &err, EC_EUNAUTH, "signature_invalid",
                   "replay");
    /* Still refused at the edge of the skew window, then by the skew check itself. */
    assert_refused(verify(a, &r, k, false, NOW + 120000, &err), &err, EC_EUNAUTH,
                   "signature_invalid", "replay");
    assert_refused(verify(a, &r, k, false, NOW + 120001, &err), &err, EC_EUNAUTH,
                   "signature_invalid", "timestamp_skew");
    /* body agentId differs from x-agent-id */
    sign_req(&r, k, "agent-1", NOW);
    enum ec_status st = coord_auth_verify(a, &r.h, "POST", r.path, r.body, strlen(r.body), k,
                                          "agent-2", false, NOW, &err);
    assert_refused(st, &err, EC_EUNAUTH, "agent_id_mismatch", "agent_id_mismatch");
    sign_req(&r, k, "agent-1", NOW);
    assert_int_equal(coord_auth_verify(a, &r.h, "POST", r.path, r.body, strlen(r.body), k, NULL,
                                       false, NOW, &err),
                     EC_OK);
    ec_key_free(k);
    coord_auth_free(a);
}

static void test_rate_limit(void **state)
{
    struct coord_auth *a = new_auth(0, 3, 60000);
    struct ec_key *k = new_key(), *k2 = new_key();
    struct ec_err err;
    struct req r;
    for (int i = 0; i < 3; i++) {
        sign_req(&r, k, "agent-1", NOW);
        assert_int_equal(verify(a, &r, k, false, NOW + i, &err), EC_OK);
    }
    sign_req(&r, k, "agent-1", NOW);
    assert_refused(verify(a, &r, k, false, NOW + 10, &err), &err, EC_EUNAUTH, "signature_invalid",
                   "rate_limited");
    /* Other agents are not affected; loopback skips the limit; forged and replayed requests
     * naming an agent do not count against it. */
    sign_req(&r, k2, "agent-2", NOW);
    assert_int_equal(verify(a, &r, k2, false, NOW + 10, &err), EC_OK);
    for (int i = 0; i < 10; i++) {
        sign_req(&r, k, "agent-1", NOW);
        assert_int_equal(verify(a, &r, k, true, NOW + 10, &err), EC_OK);
    }
    for (int i = 0; i < 5; i++) {
        sign_req(&r, k2, "agent-2", NOW);
        assert_int_equal(verify(a, &r, k, false, NOW + 10, &err), EC_EUNAUTH);
    }
    assert_int_equal(verify(a, &r, k2, false, NOW + 10, &err), EC_OK);
    assert_refused(verify(a, &r, k2, false, NOW + 10, &err), &err, EC_EUNAUTH, "signature_invalid",
                   "replay");
    sign_req(&r, k2, "agent-2", NOW);
    assert_int_equal(verify(a, &r, k2, false, NOW + 10, &err), EC_OK);
    /* /register resets the window. */
    coord_auth_reset_agent(a, "agent-1");
    coord_auth_reset_agent(a, "never-seen");
    coord_auth_reset_agent(a, NULL);
    sign_req(&r, k, "agent-1", NOW);
    assert_int_equal(verify(a, &r, k, false, NOW + 20, &err), EC_OK);
    /* Sliding: half way into the next window half the old count still weighs. */
    struct coord__rates *rt = coord__rates_new(16, 4, 1000);
    uint8_t fp[COORD__FP_LEN] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
    for (int i = 0; i < 4; i++)
        assert_true(coord__rates_take(rt, fp, 0, true));
    assert_false(coord__rates_take(rt, fp, 999, true));
    assert_true(coord__rates_take(rt, fp, 1500, true));  /* 4 * 0.5 + 0 + 1 <= 4 */
    assert_true(coord__rates_take(rt, fp, 1500, true));  /* 2 + 1 + 1 <= 4 */
    assert_false(coord__rates_take(rt, fp, 1500, true)); /* 2 + 2 + 1 > 4 */
    assert_false(coord__rates_take(rt, fp, 1500, false));
    assert_true(coord__rates_take(rt, fp, 4000, true)); /* idle two windows: a fresh start */
    /* The table holds at most 16 active agents, fails closed, and prunes idle ones. */
    for (uint8_t i = 0; i < 15; i++) {
        fp[8] = (uint8_t)(100 + i);
        assert_true(coord__rates_take(rt, fp, 4000, true));
    }
    fp[8] = 200;
    assert_false(coord__rates_take(rt, fp, 4000, true));
    assert_true(coord__rates_take(rt, fp, 4000, false)); /* a peek never adds */
    assert_true(coord__rates_take(rt, fp, 6001, true));
    coord__rates_free(rt);
    ec_key_free(k);
    ec_key_free(k2);
    coord_auth_free(a);
}

static void test_nonce_capacity(void **state)
{
    /* Through coord_auth: a full cache refuses (429) rather than forget a live nonce. */
    struct coord_auth *a = new_auth(8, 1000, 60000);
    struct ec_key *k = new_key();
    struct ec_err err;
    struct req first, r;
    sign_req(&first, k, "agent-1", NOW);
    assert_int_equal(verify(a, &first, k, false, NOW, &err), EC_OK);
    for (int i = 1; i < 8; i++) {
        sign_req(&r, k, "agent-1", NOW);
        assert_int_equal(verify(a, &r, k, false, NOW, &err), EC_OK);
    }
    sign_req(&r, k, "agent-1", NOW);
    assert_refused(verify(a, &r, k, false, NOW + 1, &err), &err, EC_ERATELIMIT, "rate_limited",
                   "nonce_cache_full");
    assert_refused(verify(a, &first, k, false, NOW + 1, &err), &err, EC_EUNAUTH,
                   "signature_invalid", "replay");
    /* Kept until ts + ttl - skew = ts + 180 s (+ < 2 s of rounding), then room again. */
    sign_req(&r, k, "agent-1", NOW + 120000);
    assert_refused(verify(a, &r, k, false, NOW + 179000, &err), &err, EC_ERATELIMIT, "rate_limited",
                   "nonce_cache_full");
    assert_int_equal(verify(a, &r, k, false, NOW + 182000, &err), EC_OK);
    ec_key_free(k);
    coord_auth_free(a);

    /* The table itself: growth keeps every entry, expiry is never early, idle shards empty. */
    struct coord__nonces *n = coord__nonces_new(5000, 300000);
    uint8_t fp[COORD__FP_LEN];
    for (int round = 0; round < 2; round++) {
        for (uint32_t i = 0; i < 4000; i++) {
            uint8_t seed[4] = { (uint8_t)i, (uint8_t)(i >> 8), 7, 9 };
            uint8_t md[EC_SHA256_LEN];
            ec_sha256(seed, sizeof(seed), md);
            memcpy(fp, md, sizeof(fp));
            assert_int_equal(coord__nonces_add(n, fp, NOW + 100000, NOW + round),
                             round == 0 ? COORD__NONCE_FRESH : COORD__NONCE_REPLAY);
        }
    }
    assert_int_equal(coord__nonces_used(n), 4000);
    assert_int_equal(coord__nonces_add(n, fp, NOW + 200000, NOW + 100999), COORD__NONCE_REPLAY);
    assert_int_equal(coord__nonces_add(n, fp, NOW + 300000, NOW + 102000), COORD__NONCE_FRESH);
    assert_int_equal(coord__nonces_add(n, fp, NOW + 500000, NOW + 299000), COORD__NONCE_REPLAY);
    fp[0] ^= 1;
    assert_int_equal(coord__nonces_add(n, fp, NOW + 1200000, NOW + 1000000), COORD__NONCE_FRESH);
    assert_true(coord__nonces_used(n) < 4000);
    coord__nonces_free(n);
    coord__nonces_free(NULL);
}

/* --- Threads ------------------------------------------------------------------------------ */

struct worker {
    pthread_t thread;
    struct coord_auth *auth;
    struct req *reqs;
    const struct ec_key *const *keys;
    size_t nreqs, nkeys;
    pthread_barrier_t *barrier;
    size_t ok, replay, other;
    double cpu_s; /* the thread's CPU time: a figure the other load on the machine spoils less */
};

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *verify_all(void *arg)
{
    struct worker *w = arg;
    double cpu0 = thread_cpu_s();
    for (size_t i = 0; i < w->nreqs; i++) {
        if (w->barrier != NULL)
            pthread_barrier_wait(w->barrier);
        struct ec_err err;
        struct req *r = &w->reqs[i];
        enum ec_status st = verify(w->auth, r, w->keys[i % w->nkeys], false, NOW, &err);
        if (st == EC_OK)
            w->ok++;
        else if (strcmp(err.msg, "replay") == 0)
            w->replay++;
        else
            w->other++;
    }
    w->cpu_s = thread_cpu_s() - cpu0;
    return NULL;
}

/* nkeys agents "agent-<i>"; request i is signed by key i % nkeys. */
static struct req *sign_many(size_t n, struct ec_key **keys, size_t nkeys)
{
    struct req *reqs = ec_xcalloc(n, sizeof(*reqs));
    for (size_t i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof(id), "agent-%zu", i % nkeys);
        sign_req(&reqs[i], keys[i % nkeys], id, NOW);
        reqs[i].h = (struct coord_signed_headers){ reqs[i].agent_id, reqs[i].ts, reqs[i].nonce,
                                                   reqs[i].sha, reqs[i].sig };
    }
    return reqs;
}

/* Runs nthreads workers over consecutive slices of reqs; returns the seconds taken. */
static double run_workers(struct coord_auth *a, struct req *reqs, size_t n, struct ec_key **keys,
                          size_t nkeys, size_t nthreads, struct worker *w)
{
    int64_t t0 = ec_mono_us();
    size_t per = n / nthreads;
    for (size_t t = 0; t < nthreads; t++) {
        w[t] = (struct worker){ .auth = a,
                                .reqs = reqs + t * per,
                                .nreqs = per,
                                .keys = (const struct ec_key *const *)keys,
                                .nkeys = nkeys };
        /* keys index by request number; the slices start on multiples of nkeys */
        assert_int_equal(per % nkeys, 0);
        assert_int_equal(pthread_create(&w[t].thread, NULL, verify_all, &w[t]), 0);
    }
    for (size_t t = 0; t < nthreads; t++)
        pthread_join(w[t].thread, NULL);
    return (double)(ec_mono_us() - t0) / 1e6;
}

static void test_threads(void **state)
{
    enum { NKEYS = 8, PER_THREAD = 200, NTHREADS = 4, ROUNDS = 100 };
    struct ec_key *keys[NKEYS];
    for (size_t i = 0; i < NKEYS; i++)
        keys[i] = new_key();
    struct coord_auth *a = new_auth(0, 1000000, 60000);
    struct req *reqs = sign_many(PER_THREAD * NTHREADS, keys, NKEYS);
    struct worker w[NTHREADS];
    run_workers(a, reqs, PER_THREAD * NTHREADS, keys, NKEYS, NTHREADS, w);
    for (size_t t = 0; t < NTHREADS; t++)
        assert_int_equal(w[t].ok, PER_THREAD);

    /* The same request raced from two threads, ROUNDS times: exactly one wins each round. */
    struct req *race = sign_many(ROUNDS, keys, 1);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 2);
    for (size_t t = 0; t < 2; t++) {
        w[t] = (struct worker){ .auth = a,
                                .reqs = race,
                                .nreqs = ROUNDS,
                                .keys = (const struct ec_key *const *)keys,
                                .nkeys = 1,
                                .barrier = &barrier };
        assert_int_equal(pthread_create(&w[t].thread, NULL, verify_all, &w[t]), 0);
    }
    for (size_t t = 0; t < 2; t++)
        pthread_join(w[t].thread, NULL);
    pthread_barrier_destroy(&barrier);
    assert_int_equal(w[0].ok + w[1].ok, ROUNDS);
    assert_int_equal(w[0].replay + w[1].replay, ROUNDS);
    assert_int_equal(w[0].other + w[1].other, 0);
    free(race);
    free(reqs);
    coord_auth_free(a);
    for (size_t i = 0; i < NKEYS; i++)
        ec_key_free(keys[i]);
}

/* Figures for the lead, not assertions: EC_AUTH_BENCH_N requests (default 4000). */
static void test_throughput(void **state)
{
    enum { NKEYS = 64 };
    const char *env = getenv("EC_AUTH_BENCH_N");
    size_t n = env ? (size_t)strtoul(env, NULL, 10) : 4000;
    n = n < NKEYS * 2 ? NKEYS * 2 : n / (NKEYS * 2) * (NKEYS * 2);
    struct ec_key *keys[NKEYS];
    for (size_t i = 0; i < NKEYS; i++)
        keys[i] = new_key();
    struct req *reqs = sign_many(n, keys, NKEYS);
    struct worker w[2];

    double cpu0 = thread_cpu_s();
    for (size_t i = 0; i < n; i++) {
        struct req *r = &reqs[i];
        char canonical[512];
        size_t len = coord_auth_canonical(canonical, sizeof(canonical), r->ts, r->nonce, "POST",
                                          r->path, r->sha);
        uint8_t sig[EC_ED25519_SIG_LEN + 2];
        size_t sig_len = 0;
        ec_b64_decode(sig, sizeof(sig), &sig_len, r->sig, strlen(r->sig), NULL);
        assert_int_equal(ec_key_verify(keys[i % NKEYS], canonical, len, sig, sig_len, NULL), EC_OK);
    }
    double raw_cpu = thread_cpu_s() - cpu0;
    for (size_t threads = 1; threads <= 2; threads++) {
        struct coord_auth *a = new_auth(0, 1000000, 60000);
        double secs = run_workers(a, reqs, n, keys, NKEYS, threads, w), cpu = 0;
        for (size_t t = 0; t < threads; t++) {
            assert_int_equal(w[t].ok, n / threads);
            cpu += w[t].cpu_s;
        }
        printf("coord_auth_verify, %zu thread(s): %.0f verifications/s wall, %.0f per CPU-second "
               "(%zu requests, %.2f s)\n",
               threads, (double)n / secs, (double)n / cpu, n, secs);
        coord_auth_free(a);
    }
    printf("ec_key_verify alone: %.0f per CPU-second, %.1f us each (coord_auth_verify adds the "
           "difference)\n",
           (double)n / raw_cpu, raw_cpu / (double)n * 1e6);
    free(reqs);
    for (size_t i = 0; i < NKEYS; i++)
        ec_key_free(keys[i]);
}

/* --- Compatibility vectors (driven by tests/integration/41_coord_compat_vectors.py) ------- */

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Checks every case of in["auth"], then signs requests as an agent and writes them to out. */
static int compat_run(const char *in_path, const char *out_path)
{
    json_error_t jerr;
    json_t *in = json_load_file(in_path, 0, &jerr);
    if (in == NULL) {
        fprintf(stderr, "compat: cannot read %s: %s\n", in_path, jerr.text);
        return 1;
    }
    json_t *auth = json_object_get(in, "auth");
    const char *pem = jstr(auth, "public_key_pem");
    struct ec_key *key = NULL;
    struct ec_err err = { 0 };
    int failures = 0;
    if (pem == NULL || ec_key_load_public_pem(EC_KEY_ED25519, pem, strlen(pem), &key, &err)) {
        fprintf(stderr, "compat: bad public_key_pem: %s\n", err.msg);
        json_decref(in);
        return 1;
    }
    int64_t now = json_integer_value(json_object_get(auth, "now_ms"));
    struct coord_auth *a = new_auth(0, 1000000, 60000);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(auth, "cases"), i, c)
    {
        struct coord_signed_headers h = { jstr(c, "agent_id"), jstr(c, "timestamp_ms"),
                                          jstr(c, "nonce"), jstr(c, "body_sha256"),
                                          jstr(c, "signature") };
        const char *body = jstr(c, "body"), *expect = jstr(c, "expect");
        ec_err_clear(&err);
        enum ec_status st = coord_auth_verify(a, &h, "POST", jstr(c, "path"), body, strlen(body),
                                              key, jstr(c, "body_agent_id"), false, now, &err);
        const char *got = st == EC_OK ? "ok" : ec_err_code(&err), *reason = jstr(c, "reason");
        bool pass = strcmp(got, expect) == 0 && (reason == NULL || strcmp(reason, err.msg) == 0);
        failures += !pass;
        printf("compat auth %-28s expect %-18s got %-18s (%s) %s\n", jstr(c, "name"), expect, got,
               err.msg, pass ? "ok" : "FAIL");
    }
    coord_auth_free(a);
    ec_key_free(key);

    /* The C side as an agent: a key, its public PEM and signed requests. */
    struct ec_key *agent = new_key();
    struct ec_buf pub;
    ec_buf_init(&pub, 4096);
    assert_int_equal(ec_key_write_public_pem(agent, &pub, NULL), EC_OK);
    json_t *cases = json_array();
    for (int k = 0; k < 3; k++) {
        struct req r;
        sign_req(&r, agent, "c-agent", now + k);
        json_array_append_new(cases,
                              json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "agent_id", r.agent_id,
                                        "timestamp_ms", r.ts, "nonce", r.nonce, "body_sha256",
                                        r.sha, "signature", r.sig, "path", r.path, "body", r.body));
    }
    json_t *out = json_pack("{s:{s:s,s:o}}", "auth_c", "public_key_pem", pub.data, "cases", cases);
    if (out_path != NULL && json_dump_file(out, out_path, JSON_INDENT(1)) != 0)
        failures++;
    json_decref(out);
    ec_buf_release(&pub);
    ec_key_free(agent);
    json_decref(in);
    printf("compat auth: %d failure(s)\n", failures);
    return failures != 0;
}

int main(void)
{
    ec_log_setup("test", EC_LOG_WARN, 2); /* refusals are logged at info */
    const char *vectors = getenv("EC_COMPAT_VECTORS");
    if (vectors != NULL)
        return compat_run(vectors, getenv("EC_COMPAT_OUT"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical),
        cmocka_unit_test(test_signed_ok_and_unsigned),
        cmocka_unit_test(test_each_missing_header),
        cmocka_unit_test(test_bad_timestamps_and_skew),
        cmocka_unit_test(test_tampering_and_wrong_key),
        cmocka_unit_test(test_replay_and_agent_mismatch),
        cmocka_unit_test(test_rate_limit),
        cmocka_unit_test(test_nonce_capacity),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_throughput),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
