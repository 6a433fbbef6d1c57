/* Envelope encryption: a known answer computed with an independent implementation, seal and open
 * in both directions (task to agent, result to coordinator), the wire formats, tampering and
 * malformed input. With EC_COMPAT_VECTORS=<json> it instead checks envelopes made Node-style by
 * tests/integration/41_coord_compat_vectors.py and writes C-made ones to EC_COMPAT_OUT. */
#include "coord/coord_envelope.h"

#include "common/ec_mem.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static const char TASK[] = "{\"input\":\"print(1)\",\"snapshotRef\":"
                           "\"0123456789abcdef0123456789abcdef01234567\",\"kind\":\"python\"}";

/* Computed with python3-cryptography (X25519, HKDF, AESGCM) from fixed keys and IV. */
static const char KAT_AGENT_PRIV[] =
    "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20";
static const char KAT_AGENT_PUB[] = "B6N8vBQgk8i3VdwbEOhstCY3StFqqFPtC9/AsrhtHHw=";
static const char KAT_EPHEMERAL[] = "VxR2nRFr92Q2rnS8eT0sMK0ZA8WaxSc4BcfiaYtBDDY=";
static const char KAT_SUBTASK[] = "3f2a9c1e-0b7d-4e5f-8a6b-1c2d3e4f5a6b";
static const char KAT_KEY[] = "92ab15427889914f88948ead211a9de879159df37bf781e34a102cecc6df5878";
static const char KAT_IV[] = "c8c9cacbcccdcecfd0d1d2d3";
static const char KAT_CT[] = "/fCYj8pWxZb4J6UDh3gmRenZAGgL9jQudJ2138/r4Tbnip3QVMRyVJg1FfpHjIYiL7h"
                             "A9G4Js8fih4YUpjqoErsM/3Me8b6Msm1BAjlHhD/l8PKu3/OZbOTBknzE";
static const char KAT_TAG[] = "ed37cf4130d87d049bc1191bfa6fede7";

static struct ec_key *x25519_from_hex(const char *hex)
{
    uint8_t raw[EC_KEY_RAW_LEN];
    size_t len = 0;
    struct ec_key *k = NULL;
    assert_int_equal(ec_hex_decode(raw, sizeof(raw), &len, hex, strlen(hex), NULL), EC_OK);
    assert_int_equal(ec_key_import_raw_private(EC_KEY_X25519, raw, len, &k, NULL), EC_OK);
    return k;
}

static char *public_b64(struct ec_arena *a, const struct ec_key *k)
{
    uint8_t raw[EC_KEY_RAW_LEN];
    ec_key_export_raw_public(k, raw);
    return ec_b64_encode_arena(a, raw, sizeof(raw));
}

static bool is_lower_hex(const char *s, size_t want)
{
    if (strlen(s) != want)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

#define assert_decrypt_failed(st, err)                                    \
    do {                                                                  \
        assert_int_equal((st), EC_EINVAL);                                \
        assert_string_equal(ec_err_code(err), "envelope_decrypt_failed"); \
    } while (0)

static void test_known_answer(void **state)
{
    struct ec_arena a;
    ec_arena_init(&a);
    struct ec_key *agent = x25519_from_hex(KAT_AGENT_PRIV);
    assert_string_equal(public_b64(&a, agent), KAT_AGENT_PUB);
    uint8_t key[COORD_ENVELOPE_KEY_LEN];
    struct ec_err err;
    assert_int_equal(coord_envelope_agent_key(agent, KAT_EPHEMERAL, KAT_SUBTASK, key, &err), EC_OK);
    assert_string_equal(ec_hex_encode_arena(&a, key, sizeof(key)), KAT_KEY);
    char *pt = NULL;
    size_t len = 0;
    assert_int_equal(coord_envelope_open(key, KAT_CT, KAT_IV, KAT_TAG, &a, &pt, &len, &err), EC_OK);
    assert_int_equal(len, strlen(TASK));
    assert_string_equal(pt, TASK);
    /* Upper-case hex from a lenient agent still opens. */
    char upper_tag[sizeof(KAT_TAG)];
    for (size_t i = 0; i < sizeof(KAT_TAG); i++)
        upper_tag[i] =
            (char)(KAT_TAG[i] >= 'a' && KAT_TAG[i] <= 'f' ? KAT_TAG[i] - 32 : KAT_TAG[i]);
    assert_int_equal(coord_envelope_open(key, KAT_CT, KAT_IV, upper_tag, &a, &pt, &len, &err),
                     EC_OK);
    ec_key_free(agent);
    ec_arena_release(&a);
}

static void test_seal_open_both_ways(void **state)
{
    struct ec_arena a;
    ec_arena_init(&a);
    struct ec_key *agent = NULL;
    struct ec_err err;
    assert_int_equal(ec_key_generate(EC_KEY_X25519, &agent, NULL), EC_OK);
    const char *subtask = "task-1:0";
    struct coord_envelope env;
    assert_int_equal(
        coord_envelope_seal(public_b64(&a, agent), subtask, TASK, strlen(TASK), &a, &env, &err),
        EC_OK);
    /* The wire format: raw key base64, ciphertext base64 without the tag, hex nonce and tag. */
    assert_int_equal(strlen(env.ephemeral_public_key), 44);
    assert_true(is_lower_hex(env.nonce, 24));
    assert_true(is_lower_hex(env.tag, 32));
    uint8_t *ct = NULL;
    size_t ct_len = 0;
    assert_int_equal(ec_b64_decode_arena(&a, env.encrypted_payload, strlen(env.encrypted_payload),
                                         &ct, &ct_len, NULL),
                     EC_OK);
    assert_int_equal(ct_len, strlen(TASK));

    /* The agent derives the same key and opens the task... */
    uint8_t key[COORD_ENVELOPE_KEY_LEN];
    assert_int_equal(coord_envelope_agent_key(agent, env.ephemeral_public_key, subtask, key, &err),
                     EC_OK);
    assert_memory_equal(key, env.key, sizeof(key));
    char *pt = NULL;
    size_t len = 0;
    assert_int_equal(
        coord_envelope_open(key, env.encrypted_payload, env.nonce, env.tag, &a, &pt, &len, &err),
        EC_OK);
    assert_string_equal(pt, TASK);
    /* ...and seals its result, which the coordinator opens with the key kept from the seal. */
    static const char result[] = "{\"ok\":true,\"output\":\"1\\n\",\"durationMs\":12}";
    const char *payload, *nonce, *tag;
    assert_int_equal(
        coord_envelope_seal_with_key(key, result, strlen(result), &a, &payload, &nonce, &tag, &err),
        EC_OK);
    assert_string_not_equal(nonce, env.nonce);
    assert_int_equal(coord_envelope_open(env.key, payload, nonce, tag, &a, &pt, &len, &err), EC_OK);
    assert_string_equal(pt, result);
    /* Another subtask id derives another key. */
    uint8_t other[COORD_ENVELOPE_KEY_LEN];
    assert_int_equal(
        coord_envelope_agent_key(agent, env.ephemeral_public_key, "task-1:1", other, &err), EC_OK);
    assert_memory_not_equal(other, env.key, sizeof(other));
    assert_decrypt_failed(coord_envelope_open(other, payload, nonce, tag, &a, &pt, &len, &err),
                          &err);
    assert_null(pt);
    /* An empty plaintext is a valid envelope too. */
    assert_int_equal(coord_envelope_seal_with_key(key, NULL, 0, &a, &payload, &nonce, &tag, &err),
                     EC_OK);
    assert_string_equal(payload, "");
    assert_int_equal(coord_envelope_open(env.key, payload, nonce, tag, &a, &pt, &len, &err), EC_OK);
    assert_int_equal(len, 0);
    assert_string_equal(pt, "");
    ec_key_free(agent);
    ec_arena_release(&a);
}

/* Flips one character of s to another of the same alphabet. */
static char *flip(struct ec_arena *a, const char *s, size_t at)
{
    char *t = ec_arena_strdup(a, s);
    t[at] = t[at] == 'A' ? 'B' : (t[at] == '0' ? '1' : (t[at] == 'a' ? 'b' : 'a'));
    return t;
}

static void test_tampering(void **state)
{
    struct ec_arena a;
    ec_arena_init(&a);
    uint8_t key[COORD_ENVELOPE_KEY_LEN];
    size_t len = 0;
    assert_int_equal(ec_hex_decode(key, sizeof(key), &len, KAT_KEY, 64, NULL), EC_OK);
    struct ec_err err;
    char *pt = NULL;
    assert_decrypt_failed(
        coord_envelope_open(key, flip(&a, KAT_CT, 5), KAT_IV, KAT_TAG, &a, &pt, &len, &err), &err);
    assert_decrypt_failed(
        coord_envelope_open(key, KAT_CT, flip(&a, KAT_IV, 0), KAT_TAG, &a, &pt, &len, &err), &err);
    assert_decrypt_failed(
        coord_envelope_open(key, KAT_CT, KAT_IV, flip(&a, KAT_TAG, 31), &a, &pt, &len, &err), &err);
    key[0] ^= 1;
    assert_decrypt_failed(coord_envelope_open(key, KAT_CT, KAT_IV, KAT_TAG, &a, &pt, &len, &err),
                          &err);
    assert_null(pt);
    assert_int_equal(len, 0);
    /* Truncated ciphertext (a whole base64 quantum less). */
    char *short_ct = ec_arena_strndup(&a, KAT_CT, strlen(KAT_CT) - 4);
    key[0] ^= 1;
    assert_decrypt_failed(coord_envelope_open(key, short_ct, KAT_IV, KAT_TAG, &a, &pt, &len, &err),
                          &err);
    ec_arena_release(&a);
}

static void test_malformed(void **state)
{
    struct ec_arena a;
    ec_arena_init(&a);
    uint8_t key[COORD_ENVELOPE_KEY_LEN] = { 0 };
    struct ec_err err;
    char *pt = NULL;
    size_t len = 0;
    /* Open: every malformed field is 400 envelope_decrypt_failed, a short tag included (Node's
     * decipher would take a truncated tag; we do not). */
    static const char *const bad_b64[] = { "@@@@", "QUJ", "QU=D", " QUJD", "QUJD\n", NULL };
    for (size_t i = 0; i < sizeof(bad_b64) / sizeof(bad_b64[0]); i++)
        assert_decrypt_failed(
            coord_envelope_open(key, bad_b64[i], KAT_IV, KAT_TAG, &a, &pt, &len, &err), &err);
    static const char *const bad_iv[] = { "", "c8c9", "zzc9cacbcccdcecfd0d1d2d3",
                                          "c8c9cacbcccdcecfd0d1d2d3d4", NULL };
    for (size_t i = 0; i < sizeof(bad_iv) / sizeof(bad_iv[0]); i++)
        assert_decrypt_failed(
            coord_envelope_open(key, KAT_CT, bad_iv[i], KAT_TAG, &a, &pt, &len, &err), &err);
    static const char *const bad_tag[] = { "", "ed37cf4130d87d049bc1191bfa6fed", "ed37cf4130d87d04",
                                           "xd37cf4130d87d049bc1191bfa6fede7", NULL };
    for (size_t i = 0; i < sizeof(bad_tag) / sizeof(bad_tag[0]); i++)
        assert_decrypt_failed(
            coord_envelope_open(key, KAT_CT, KAT_IV, bad_tag[i], &a, &pt, &len, &err), &err);

    /* Seal: a malformed or unusable agent key is EC_EINVAL. */
    struct coord_envelope env;
    char zero_key[45];
    uint8_t zeros[EC_KEY_RAW_LEN] = { 0 };
    ec_b64_encode(zero_key, sizeof(zero_key), zeros, sizeof(zeros)); /* small order: no secret */
    const char *const bad_keys[] = {
        "",
        "abc",
        "B6N8vBQgk8i3VdwbEOhstCY3StFqqFPtC9/AsrhtHHw",  /* no padding */
        "B6N8vBQgk8i3VdwbEOhstCY3StFqqFPtC9_AsrhtHHw=", /* base64url */
        "B6N8vBQgk8i3VdwbEOhstCY3StFqqFPtC9/AsrhtHA==", /* 31 bytes */
        "B6N8vBQgk8i3VdwbEOhstCY3StFqqFPtC9/AsrhtHHwA", /* 33 bytes */
        zero_key,
        NULL,
    };
    for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
        ec_err_clear(&err);
        assert_int_equal(
            coord_envelope_seal(bad_keys[i], "s-1", TASK, strlen(TASK), &a, &env, &err), EC_EINVAL);
        for (size_t j = 0; j < sizeof(env.key); j++)
            assert_int_equal(env.key[j], 0);
    }
    assert_int_equal(coord_envelope_seal(KAT_AGENT_PUB, "", TASK, 1, &a, &env, &err), EC_EINVAL);
    assert_int_equal(coord_envelope_seal(KAT_AGENT_PUB, NULL, TASK, 1, &a, &env, &err), EC_EINVAL);
    char long_id[300];
    memset(long_id, 'x', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    assert_int_equal(coord_envelope_seal(KAT_AGENT_PUB, long_id, TASK, 1, &a, &env, &err),
                     EC_EINVAL);
    /* Agent side: a bad ephemeral key, or a key of the wrong kind. */
    struct ec_key *agent = x25519_from_hex(KAT_AGENT_PRIV), *ed = NULL;
    uint8_t k2[COORD_ENVELOPE_KEY_LEN];
    assert_int_equal(coord_envelope_agent_key(agent, "abc", KAT_SUBTASK, k2, &err), EC_EINVAL);
    assert_int_equal(coord_envelope_agent_key(agent, zero_key, KAT_SUBTASK, k2, &err), EC_EINVAL);
    assert_int_equal(coord_envelope_agent_key(NULL, KAT_EPHEMERAL, KAT_SUBTASK, k2, &err),
                     EC_EINVAL);
    assert_int_equal(ec_key_generate(EC_KEY_ED25519, &ed, NULL), EC_OK);
    assert_int_equal(coord_envelope_agent_key(ed, KAT_EPHEMERAL, KAT_SUBTASK, k2, &err), EC_EINVAL);
    ec_key_free(ed);
    ec_key_free(agent);
    ec_arena_release(&a);
}

/* --- Compatibility vectors (driven by tests/integration/41_coord_compat_vectors.py) ------- */

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : "";
}

static int compat_check(bool pass, const char *what, const char *name, const char *detail)
{
    printf("compat envelope %-12s %-24s %s%s%s\n", what, name, pass ? "ok" : "FAIL",
           detail ? ": " : "", detail ? detail : "");
    return !pass;
}

/* node_sealed: opened as an agent; node_results: opened as the coordinator; seal_for: sealed
 * here for Python to open, along with a result sealed as the agent of each node_sealed. */
static int compat_run(const char *in_path, const char *out_path)
{
    json_error_t jerr;
    json_t *in = json_load_file(in_path, 0, &jerr);
    if (in == NULL) {
        fprintf(stderr, "compat: cannot read %s: %s\n", in_path, jerr.text);
        return 1;
    }
    struct ec_arena a;
    ec_arena_init(&a);
    int failures = 0;
    size_t i;
    json_t *c, *sealed = json_array(), *agent_results = json_array();
    json_array_foreach(json_object_get(in, "node_sealed"), i, c)
    {
        struct ec_key *agent = x25519_from_hex(jstr(c, "agent_private_hex"));
        uint8_t key[COORD_ENVELOPE_KEY_LEN];
        struct ec_err err = { 0 };
        char *pt = NULL;
        size_t len = 0;
        enum ec_status st = coord_envelope_agent_key(agent, jstr(c, "ephemeral_public_key"),
                                                     jstr(c, "subtask_id"), key, &err);
        if (st == EC_OK)
            st = coord_envelope_open(key, jstr(c, "encrypted_payload"), jstr(c, "nonce"),
                                     jstr(c, "tag"), &a, &pt, &len, &err);
        bool pass = st == EC_OK && strcmp(pt, jstr(c, "plaintext")) == 0 &&
                    strcmp(ec_hex_encode_arena(&a, key, sizeof(key)), jstr(c, "key_hex")) == 0;
        failures += compat_check(pass, "node_sealed", jstr(c, "subtask_id"), err.msg);
        const char *result = "{\"ok\":true,\"output\":\"from C\",\"durationMs\":7}";
        const char *payload = "", *nonce = "", *tag = "";
        if (st == EC_OK)
            st = coord_envelope_seal_with_key(key, result, strlen(result), &a, &payload, &nonce,
                                              &tag, &err);
        json_array_append_new(agent_results,
                              json_pack("{s:s,s:s,s:s,s:s,s:s}", "subtask_id",
                                        jstr(c, "subtask_id"), "encrypted_payload", payload,
                                        "nonce", nonce, "tag", tag, "plaintext", result));
        ec_key_free(agent);
    }
    json_array_foreach(json_object_get(in, "node_results"), i, c)
    {
        uint8_t key[COORD_ENVELOPE_KEY_LEN];
        size_t len = 0;
        const char *key_hex = jstr(c, "key_hex");
        struct ec_err err = { 0 };
        char *pt = NULL;
        enum ec_status st = EC_EINVAL;
        if (ec_hex_decode(key, sizeof(key), &len, key_hex, strlen(key_hex), NULL) == EC_OK &&
            len == sizeof(key))
            st = coord_envelope_open(key, jstr(c, "encrypted_payload"), jstr(c, "nonce"),
                                     jstr(c, "tag"), &a, &pt, &len, &err);
        const char *got = st == EC_OK ? "ok" : ec_err_code(&err);
        bool pass = strcmp(got, jstr(c, "expect")) == 0 &&
                    (st != EC_OK || strcmp(pt, jstr(c, "plaintext")) == 0);
        failures += compat_check(pass, "node_result", jstr(c, "name"), err.msg);
    }
    json_array_foreach(json_object_get(in, "seal_for"), i, c)
    {
        struct coord_envelope env;
        struct ec_err err = { 0 };
        const char *pt = jstr(c, "plaintext");
        enum ec_status st = coord_envelope_seal(jstr(c, "agent_public_b64"), jstr(c, "subtask_id"),
                                                pt, strlen(pt), &a, &env, &err);
        failures += compat_check(st == EC_OK, "seal", jstr(c, "subtask_id"), err.msg);
        if (st == EC_OK)
            json_array_append_new(
                sealed,
                json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "subtask_id", jstr(c, "subtask_id"),
                          "ephemeral_public_key", env.ephemeral_public_key, "encrypted_payload",
                          env.encrypted_payload, "nonce", env.nonce, "tag", env.tag, "key_hex",
                          ec_hex_encode_arena(&a, env.key, sizeof(env.key))));
    }
    json_t *out = json_pack("{s:o,s:o}", "sealed", sealed, "agent_results", agent_results);
    if (out_path != NULL && json_dump_file(out, out_path, JSON_INDENT(1)) != 0)
        failures++;
    json_decref(out);
    json_decref(in);
    ec_arena_release(&a);
    printf("compat envelope: %d failure(s)\n", failures);
    return failures != 0;
}

int main(void)
{
    const char *vectors = getenv("EC_COMPAT_VECTORS");
    if (vectors != NULL)
        return compat_run(vectors, getenv("EC_COMPAT_OUT"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answer),
        cmocka_unit_test(test_seal_open_both_ways),
        cmocka_unit_test(test_tampering),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
