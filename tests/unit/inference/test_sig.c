/* The inference request signature: a signed request verifies; each failure gives the original's
 * code in the original's order; a forged request cannot burn a nonce; the payload's exact text. */
#include "inference/inference_sig.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define PATH "/edgecoder.v1.Inference/Decompose"
#define NOW  1700000000000LL

static struct ec_key *key_a, *key_b;
static char *pem_a;

static int setup(void **state)
{
    assert_int_equal(ec_key_generate(EC_KEY_ED25519, &key_a, NULL), EC_OK);
    assert_int_equal(ec_key_generate(EC_KEY_ED25519, &key_b, NULL), EC_OK);
    struct ec_buf b;
    ec_buf_init(&b, 0);
    assert_int_equal(ec_key_write_public_pem(key_a, &b, NULL), EC_OK);
    pem_a = ec_buf_detach(&b, NULL);
    return 0;
}

static int teardown(void **state)
{
    ec_key_free(key_a);
    ec_key_free(key_b);
    free(pem_a);
    return 0;
}

static struct inf_sig_verifier *verifier(void)
{
    struct inf_sig_verifier_opts o = { .max_skew_ms = 120000, .nonce_ttl_ms = 300000 };
    struct inf_sig_verifier *v = inf_sig_verifier_new(&o);
    assert_int_equal(inf_sig_verifier_add_pem(v, "coord-a", pem_a, NULL), EC_OK);
    return v;
}

static struct inf_sig_request request(const struct inf_sig_md *md, const char *body)
{
    return (struct inf_sig_request){ .peer_id = md->peer_id,
                                     .timestamp_ms = md->timestamp_ms,
                                     .nonce = md->nonce,
                                     .body_sha256 = md->body_sha256,
                                     .signature = md->signature,
                                     .path = PATH,
                                     .body = body,
                                     .body_len = strlen(body) };
}

static const char *verify_code(struct inf_sig_verifier *v, const struct inf_sig_request *r,
                               int64_t now)
{
    struct ec_err err = { 0 };
    enum ec_status st = inf_sig_verify(v, r, now, &err);
    return st == EC_OK ? "ok" : err.code;
}

static void test_payload_text(void **state)
{
    struct ec_buf b;
    ec_buf_init(&b, 0);
    assert_int_equal(inf_sig_payload(&b, "coord-a", PATH, 42, "n1", "ab"), EC_OK);
    assert_string_equal(b.data, "{\"peerId\":\"coord-a\",\"method\":\"POST\",\"path\":\"" PATH
                                "\",\"timestampMs\":42,\"nonce\":\"n1\",\"bodySha256\":\"ab\"}");
    ec_buf_release(&b);
}

static void test_signed_request_verifies_once(void **state)
{
    struct inf_sig_verifier *v = verifier();
    struct inf_sig_md md;
    assert_int_equal(inf_sig_sign(key_a, "coord-a", PATH, "body", 4, NOW, &md, NULL), EC_OK);
    struct inf_sig_request r = request(&md, "body");
    assert_string_equal(verify_code(v, &r, NOW + 1000), "ok");
    assert_string_equal(verify_code(v, &r, NOW + 2000), "inference_signature_replay");
    inf_sig_verifier_free(v);
}

static void test_each_failure_has_its_code(void **state)
{
    struct inf_sig_verifier *v = verifier();
    struct inf_sig_md md;
    assert_int_equal(inf_sig_sign(key_a, "coord-a", PATH, "body", 4, NOW, &md, NULL), EC_OK);
    struct inf_sig_request r = request(&md, "body");

    struct inf_sig_request missing = r;
    missing.signature = NULL;
    assert_string_equal(verify_code(v, &missing, NOW), "inference_signature_missing");
    missing = r;
    missing.nonce = "";
    assert_string_equal(verify_code(v, &missing, NOW), "inference_signature_missing");

    struct inf_sig_request untrusted = r;
    untrusted.peer_id = "coord-z";
    assert_string_equal(verify_code(v, &untrusted, NOW), "inference_signature_untrusted_peer");

    struct inf_sig_request bad_ts = r;
    bad_ts.timestamp_ms = "17e11";
    assert_string_equal(verify_code(v, &bad_ts, NOW), "inference_signature_invalid_timestamp");
    bad_ts.timestamp_ms = "-5";
    assert_string_equal(verify_code(v, &bad_ts, NOW), "inference_signature_invalid_timestamp");

    assert_string_equal(verify_code(v, &r, NOW + 120001), "inference_signature_expired");
    assert_string_equal(verify_code(v, &r, NOW - 120001), "inference_signature_expired");

    struct inf_sig_request other_body = r;
    other_body.body = "BODY";
    assert_string_equal(verify_code(v, &other_body, NOW), "inference_signature_body_mismatch");

    struct inf_sig_request other_path = r;
    other_path.path = "/edgecoder.v1.Inference/Escalate";
    assert_string_equal(verify_code(v, &other_path, NOW), "inference_signature_invalid");

    struct inf_sig_md md_b;
    assert_int_equal(inf_sig_sign(key_b, "coord-a", PATH, "body", 4, NOW, &md_b, NULL), EC_OK);
    struct inf_sig_request wrong_key = request(&md_b, "body");
    assert_string_equal(verify_code(v, &wrong_key, NOW), "inference_signature_invalid");

    struct inf_sig_request garbage = r;
    garbage.signature = "not base64!";
    assert_string_equal(verify_code(v, &garbage, NOW), "inference_signature_invalid");

    /* None of the refusals burnt the nonce: the genuine request still verifies, once. */
    assert_string_equal(verify_code(v, &r, NOW), "ok");
    assert_string_equal(verify_code(v, &r, NOW), "inference_signature_replay");
    inf_sig_verifier_free(v);
}

static void test_nonce_expires_and_cache_caps(void **state)
{
    struct inf_sig_verifier_opts o = { .max_skew_ms = 1000,
                                       .nonce_ttl_ms = 2000,
                                       .nonce_capacity = 3 };
    struct inf_sig_verifier *v = inf_sig_verifier_new(&o);
    assert_int_equal(inf_sig_verifier_add_pem(v, "coord-a", pem_a, NULL), EC_OK);
    for (int i = 0; i < 3; i++) {
        struct inf_sig_md md;
        assert_int_equal(inf_sig_sign(key_a, "coord-a", PATH, "b", 1, NOW, &md, NULL), EC_OK);
        struct inf_sig_request r = request(&md, "b");
        assert_string_equal(verify_code(v, &r, NOW), "ok");
    }
    struct inf_sig_md md;
    assert_int_equal(inf_sig_sign(key_a, "coord-a", PATH, "b", 1, NOW, &md, NULL), EC_OK);
    struct inf_sig_request r = request(&md, "b");
    assert_string_equal(verify_code(v, &r, NOW), "inference_nonce_cache_full");
    /* Past the TTL the old nonces are forgotten and room returns. */
    assert_int_equal(inf_sig_sign(key_a, "coord-a", PATH, "b", 1, NOW + 2500, &md, NULL), EC_OK);
    r = request(&md, "b");
    assert_string_equal(verify_code(v, &r, NOW + 2500), "ok");
    inf_sig_verifier_free(v);
}

static void test_trusted_keys_json(void **state)
{
    struct inf_sig_verifier *v = inf_sig_verifier_new(NULL);
    char json[1024];
    char esc[800] = "";
    for (const char *p = pem_a; *p; p++)
        strncat(esc, *p == '\n' ? "\\n" : (char[]){ *p, 0 }, sizeof(esc) - strlen(esc) - 1);
    snprintf(json, sizeof(json), "{\"coord-j\":\"%s\"}", esc);
    assert_int_equal(inf_sig_verifier_add_json(v, json, NULL), EC_OK);
    assert_int_equal(inf_sig_verifier_key_count(v), 1);
    assert_int_equal(inf_sig_verifier_add_json(v, "[1]", NULL), EC_EINVAL);
    assert_int_equal(inf_sig_verifier_add_json(v, "{\"x\":\"not a pem\"}", NULL), EC_EINVAL);
    assert_int_equal(inf_sig_verifier_add_json(v, "{\"bad id!\":\"x\"}", NULL), EC_EINVAL);
    inf_sig_verifier_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_payload_text),
        cmocka_unit_test(test_signed_request_verifies_once),
        cmocka_unit_test(test_each_failure_has_its_code),
        cmocka_unit_test(test_nonce_expires_and_cache_caps),
        cmocka_unit_test(test_trusted_keys_json),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
