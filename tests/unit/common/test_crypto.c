/* Unit tests for ec_crypto against published vectors: RFC 8032, 7748, 4231, 5869, 7914, 4648, the
 * GCM specification (McGrew-Viega) and FIPS 180-2, plus tampering, rejection and round trips. */
#include "common/ec_crypto.h"
#include "common/ec_mem.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Hex from the RFCs into out; the length is checked by the caller. */
static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t len = 0;
    struct ec_err err;
    assert_int_equal(ec_hex_decode(out, cap, &len, hex, strlen(hex), &err), EC_OK);
    return len;
}

static void assert_hex_equal(const uint8_t *got, size_t n, const char *want_hex)
{
    char got_hex[1024];
    assert_true(n * 2 < sizeof(got_hex));
    ec_hex_encode(got_hex, sizeof(got_hex), got, n);
    assert_string_equal(got_hex, want_hex);
}

/* --- SHA-256, HMAC, HKDF, scrypt ---------------------------------------------------------- */

static void test_sha256_vectors(void **state)
{
    uint8_t md[EC_SHA256_LEN];
    ec_sha256("abc", 3, md);
    assert_hex_equal(md, sizeof(md),
                     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ec_sha256(NULL, 0, md);
    assert_hex_equal(md, sizeof(md),
                     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

    struct ec_sha256_ctx *ctx = ec_sha256_new();
    ec_sha256_update(ctx, "a", 1);
    ec_sha256_update(ctx, NULL, 0);
    ec_sha256_update(ctx, "bc", 2);
    ec_sha256_final(ctx, md);
    assert_hex_equal(md, sizeof(md),
                     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* final starts the context over */
    ec_sha256_final(ctx, md);
    assert_hex_equal(md, sizeof(md),
                     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    ec_sha256_free(ctx);
    ec_sha256_free(NULL);
}

static void test_hmac_sha256_rfc4231(void **state)
{
    uint8_t key4[25];
    for (size_t i = 0; i < sizeof(key4); i++)
        key4[i] = (uint8_t)(i + 1);
    uint8_t k0b[20], kaa20[20], kaa131[131], ddd[50], dcd[50];
    memset(k0b, 0x0b, sizeof(k0b));
    memset(kaa20, 0xaa, sizeof(kaa20));
    memset(kaa131, 0xaa, sizeof(kaa131));
    memset(ddd, 0xdd, sizeof(ddd));
    memset(dcd, 0xcd, sizeof(dcd));
    static const char data6[] = "Test Using Larger Than Block-Size Key - Hash Key First";
    static const char data7[] =
        "This is a test using a larger than block-size key and a larger than block-size data. "
        "The key needs to be hashed before being used by the HMAC algorithm.";
    const struct {
        const void *key;
        size_t key_len;
        const void *data;
        size_t data_len;
        const char *mac;
    } cases[] = {
        /* test case 1 */
        { k0b, sizeof(k0b), "Hi There", 8,
          "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
        /* test case 2 */
        { "Jefe", 4, "what do ya want for nothing?", 28,
          "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
        /* test case 3 */
        { kaa20, sizeof(kaa20), ddd, sizeof(ddd),
          "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe" },
        /* test case 4 */
        { key4, sizeof(key4), dcd, sizeof(dcd),
          "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b" },
        /* test case 6 */
        { kaa131, sizeof(kaa131), data6, sizeof(data6) - 1,
          "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
        /* test case 7 */
        { kaa131, sizeof(kaa131), data7, sizeof(data7) - 1,
          "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t mac[EC_HMAC_SHA256_LEN];
        ec_hmac_sha256(cases[i].key, cases[i].key_len, cases[i].data, cases[i].data_len, mac);
        assert_hex_equal(mac, sizeof(mac), cases[i].mac);
    }
}

static void test_hkdf_sha256_rfc5869(void **state)
{
    struct ec_err err;
    uint8_t ikm1[22], salt1[13], info1[10];
    memset(ikm1, 0x0b, sizeof(ikm1));
    for (size_t i = 0; i < sizeof(salt1); i++)
        salt1[i] = (uint8_t)i;
    for (size_t i = 0; i < sizeof(info1); i++)
        info1[i] = (uint8_t)(0xf0 + i);
    uint8_t ikm2[80], salt2[80], info2[80];
    for (size_t i = 0; i < 80; i++) {
        ikm2[i] = (uint8_t)i;
        salt2[i] = (uint8_t)(0x60 + i);
        info2[i] = (uint8_t)(0xb0 + i);
    }
    uint8_t okm[82];

    /* test case 1 */
    assert_int_equal(ec_hkdf_sha256(salt1, sizeof(salt1), ikm1, sizeof(ikm1), info1, sizeof(info1),
                                    okm, 42, &err),
                     EC_OK);
    assert_hex_equal(okm, 42,
                     "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b8"
                     "87185865");
    /* test case 2 */
    assert_int_equal(ec_hkdf_sha256(salt2, sizeof(salt2), ikm2, sizeof(ikm2), info2, sizeof(info2),
                                    okm, 82, &err),
                     EC_OK);
    assert_hex_equal(okm, 82,
                     "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7"
                     "827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5"
                     "c1f3434f1d87");
    /* test case 3: empty salt and info */
    assert_int_equal(ec_hkdf_sha256(NULL, 0, ikm1, sizeof(ikm1), NULL, 0, okm, 42, &err), EC_OK);
    assert_hex_equal(okm, 42,
                     "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4"
                     "b61a96c8");

    /* output length limits: 1..255*32 */
    uint8_t *big = ec_xmalloc(EC_HKDF_SHA256_MAX + 1);
    assert_int_equal(
        ec_hkdf_sha256(NULL, 0, ikm1, sizeof(ikm1), NULL, 0, big, EC_HKDF_SHA256_MAX, &err), EC_OK);
    assert_int_equal(
        ec_hkdf_sha256(NULL, 0, ikm1, sizeof(ikm1), NULL, 0, big, EC_HKDF_SHA256_MAX + 1, &err),
        EC_EINVAL);
    assert_int_equal(ec_hkdf_sha256(NULL, 0, ikm1, sizeof(ikm1), NULL, 0, big, 0, &err), EC_EINVAL);
    free(big);
}

static void test_scrypt_rfc7914(void **state)
{
    struct ec_err err;
    uint8_t out[64];
    assert_int_equal(ec_scrypt("", 0, "", 0, 16, 1, 1, 0, out, sizeof(out), &err), EC_OK);
    assert_hex_equal(out, sizeof(out),
                     "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442fcd0069ded09"
                     "48f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906");
    assert_int_equal(
        ec_scrypt("password", 8, "NaCl", 4, 1024, 8, 16, 32u << 20, out, sizeof(out), &err), EC_OK);
    assert_hex_equal(out, sizeof(out),
                     "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22"
                     "a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640");

    assert_int_equal(ec_scrypt("pw", 2, "salt", 4, 15, 1, 1, 0, out, sizeof(out), &err), EC_EINVAL);
    assert_int_equal(ec_scrypt("pw", 2, "salt", 4, 1, 1, 1, 0, out, sizeof(out), &err), EC_EINVAL);
    assert_int_equal(ec_scrypt("pw", 2, "salt", 4, 16, 0, 1, 0, out, sizeof(out), &err), EC_EINVAL);
    /* 128 * N * r = 1 MiB does not fit in 64 KiB */
    assert_int_equal(ec_scrypt("pw", 2, "salt", 4, 1024, 8, 1, 64u << 10, out, sizeof(out), &err),
                     EC_EINVAL);
    assert_int_equal(err.status, EC_EINVAL);
}

/* --- Ed25519 ------------------------------------------------------------------------------ */

static const struct {
    const char *secret, *public, *msg, *sig;
} rfc8032[] = {
    /* section 7.1, TEST 1 */
    { "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
      "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
      "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701c"
      "f9b46bd25bf5f0595bbe24655141438e7a100b" },
    /* TEST 2 */
    { "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
      "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
      "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0"
      "f11d8c387b2eaeb4302aeeb00d291612bb0c00" },
    /* TEST 3 */
    { "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
      "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
      "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f76098"
      "4dc6594a7c15e9716ed28dc027beceea1ec40a" },
};

static void test_ed25519_rfc8032(void **state)
{
    struct ec_err err;
    for (size_t v = 0; v < sizeof(rfc8032) / sizeof(rfc8032[0]); v++) {
        uint8_t secret[32], public[32], msg[8], sig[64], got[64], raw[32];
        assert_int_equal(unhex(rfc8032[v].secret, secret, sizeof(secret)), 32);
        assert_int_equal(unhex(rfc8032[v].public, public, sizeof(public)), 32);
        size_t msg_len = unhex(rfc8032[v].msg, msg, sizeof(msg));
        assert_int_equal(unhex(rfc8032[v].sig, sig, sizeof(sig)), 64);

        struct ec_key *priv = NULL, *pub = NULL;
        assert_int_equal(ec_key_import_raw_private(EC_KEY_ED25519, secret, 32, &priv, &err), EC_OK);
        assert_true(ec_key_has_private(priv));
        assert_int_equal(ec_key_get_alg(priv), EC_KEY_ED25519);
        ec_key_export_raw_public(priv, raw);
        assert_memory_equal(raw, public, 32);
        assert_int_equal(ec_key_sign(priv, msg, msg_len, got, &err), EC_OK);
        assert_memory_equal(got, sig, 64);

        assert_int_equal(ec_key_import_raw_public(EC_KEY_ED25519, public, 32, &pub, &err), EC_OK);
        assert_false(ec_key_has_private(pub));
        assert_int_equal(ec_key_verify(pub, msg, msg_len, sig, 64, &err), EC_OK);
        assert_int_equal(ec_key_verify(priv, msg, msg_len, sig, 64, &err), EC_OK);

        /* one flipped bit in the message (or, for the empty one, an added byte) */
        if (msg_len > 0) {
            msg[msg_len - 1] ^= 0x01;
            assert_int_equal(ec_key_verify(pub, msg, msg_len, sig, 64, &err), EC_EUNAUTH);
            msg[msg_len - 1] ^= 0x01;
        } else {
            assert_int_equal(ec_key_verify(pub, "\0", 1, sig, 64, &err), EC_EUNAUTH);
        }
        /* one flipped bit in R and in S, at either end of each */
        const size_t flips[] = { 0, 31, 32, 63 };
        for (size_t f = 0; f < sizeof(flips) / sizeof(flips[0]); f++) {
            sig[flips[f]] ^= 0x01;
            assert_int_equal(ec_key_verify(pub, msg, msg_len, sig, 64, &err), EC_EUNAUTH);
            assert_int_equal(err.status, EC_EUNAUTH);
            sig[flips[f]] ^= 0x01;
        }
        /* wrong lengths are a failed verification, not a crash */
        assert_int_equal(ec_key_verify(pub, msg, msg_len, sig, 63, &err), EC_EUNAUTH);
        assert_int_equal(ec_key_verify(pub, msg, msg_len, sig, 0, &err), EC_EUNAUTH);
        /* the right signature under another vector's key */
        struct ec_key *other = NULL;
        uint8_t other_pub[32];
        unhex(rfc8032[(v + 1) % 3].public, other_pub, sizeof(other_pub));
        assert_int_equal(ec_key_import_raw_public(EC_KEY_ED25519, other_pub, 32, &other, &err),
                         EC_OK);
        assert_int_equal(ec_key_verify(other, msg, msg_len, sig, 64, &err), EC_EUNAUTH);
        ec_key_free(other);

        /* a public key cannot sign */
        assert_int_equal(ec_key_sign(pub, msg, msg_len, got, &err), EC_EINVAL);
        ec_key_free(priv);
        ec_key_free(pub);
    }
}

static void test_ed25519_generate_sign_verify(void **state)
{
    struct ec_err err;
    struct ec_key *a = NULL, *b = NULL, *x = NULL;
    assert_int_equal(ec_key_generate(EC_KEY_ED25519, &a, &err), EC_OK);
    assert_int_equal(ec_key_generate(EC_KEY_ED25519, &b, &err), EC_OK);
    uint8_t pa[32], pb[32], sig[64];
    ec_key_export_raw_public(a, pa);
    ec_key_export_raw_public(b, pb);
    assert_memory_not_equal(pa, pb, 32);

    static const char msg[] = "lease 42 renewed";
    assert_int_equal(ec_key_sign(a, msg, sizeof(msg) - 1, sig, &err), EC_OK);
    assert_int_equal(ec_key_verify(a, msg, sizeof(msg) - 1, sig, sizeof(sig), &err), EC_OK);
    assert_int_equal(ec_key_verify(b, msg, sizeof(msg) - 1, sig, sizeof(sig), &err), EC_EUNAUTH);

    /* algorithms do not mix */
    assert_int_equal(ec_key_generate(EC_KEY_X25519, &x, &err), EC_OK);
    assert_int_equal(ec_key_sign(x, msg, sizeof(msg) - 1, sig, &err), EC_EINVAL);
    assert_int_equal(ec_key_verify(x, msg, sizeof(msg) - 1, sig, sizeof(sig), &err), EC_EINVAL);
    uint8_t secret[32];
    assert_int_equal(ec_key_derive(a, b, secret, &err), EC_EINVAL);

    /* raw keys of the wrong size */
    struct ec_key *k = (struct ec_key *)&k;
    assert_int_equal(ec_key_import_raw_public(EC_KEY_ED25519, pa, 31, &k, &err), EC_EINVAL);
    assert_null(k);
    assert_int_equal(ec_key_import_raw_private(EC_KEY_ED25519, pa, 33, &k, &err), EC_EINVAL);
    assert_null(k);

    ec_key_free(a);
    ec_key_free(b);
    ec_key_free(x);
    ec_key_free(NULL);
}

/* --- X25519 ------------------------------------------------------------------------------- */

/* X25519(k, u) through the public API: k as a raw private key, u as a raw public key. */
static void x25519(const uint8_t k[32], const uint8_t u[32], uint8_t out[32])
{
    struct ec_err err;
    struct ec_key *priv = NULL, *peer = NULL;
    assert_int_equal(ec_key_import_raw_private(EC_KEY_X25519, k, 32, &priv, &err), EC_OK);
    assert_int_equal(ec_key_import_raw_public(EC_KEY_X25519, u, 32, &peer, &err), EC_OK);
    assert_int_equal(ec_key_derive(priv, peer, out, &err), EC_OK);
    ec_key_free(priv);
    ec_key_free(peer);
}

static void test_x25519_rfc7748_scalar_mult(void **state)
{
    static const struct {
        const char *scalar, *u, *out;
    } cases[] = {
        { "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
          "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
          "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552" },
        /* u has its top bit set, which X25519 must ignore */
        { "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
          "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
          "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t k[32], u[32], out[32];
        unhex(cases[i].scalar, k, sizeof(k));
        unhex(cases[i].u, u, sizeof(u));
        x25519(k, u, out);
        assert_hex_equal(out, 32, cases[i].out);
    }

    /* the iterated test: k = u = 9, then k, u = X25519(k, u), k */
    uint8_t k[32] = { 9 }, u[32] = { 9 }, next[32];
    for (int i = 1; i <= 1000; i++) {
        x25519(k, u, next);
        memcpy(u, k, 32);
        memcpy(k, next, 32);
        if (i == 1)
            assert_hex_equal(k, 32,
                             "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079");
    }
    assert_hex_equal(k, 32, "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51");
}

static void test_x25519_rfc7748_alice_bob(void **state)
{
    struct ec_err err;
    uint8_t a_priv[32], b_priv[32], raw[32], s1[32], s2[32];
    unhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", a_priv, 32);
    unhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb", b_priv, 32);
    struct ec_key *alice = NULL, *bob = NULL;
    assert_int_equal(ec_key_import_raw_private(EC_KEY_X25519, a_priv, 32, &alice, &err), EC_OK);
    assert_int_equal(ec_key_import_raw_private(EC_KEY_X25519, b_priv, 32, &bob, &err), EC_OK);
    ec_key_export_raw_public(alice, raw);
    assert_hex_equal(raw, 32, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    ec_key_export_raw_public(bob, raw);
    assert_hex_equal(raw, 32, "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");

    /* each side with the other's public key only */
    struct ec_key *alice_pub = NULL, *bob_pub = NULL;
    assert_int_equal(ec_key_import_raw_public(EC_KEY_X25519, raw, 32, &bob_pub, &err), EC_OK);
    ec_key_export_raw_public(alice, raw);
    assert_int_equal(ec_key_import_raw_public(EC_KEY_X25519, raw, 32, &alice_pub, &err), EC_OK);
    assert_int_equal(ec_key_derive(alice, bob_pub, s1, &err), EC_OK);
    assert_int_equal(ec_key_derive(bob, alice_pub, s2, &err), EC_OK);
    assert_hex_equal(s1, 32, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    assert_memory_equal(s1, s2, 32);

    /* a public key cannot derive */
    assert_int_equal(ec_key_derive(alice_pub, bob_pub, s1, &err), EC_EINVAL);
    ec_key_free(alice);
    ec_key_free(bob);
    ec_key_free(alice_pub);
    ec_key_free(bob_pub);
}

static void test_x25519_generate_and_small_order(void **state)
{
    struct ec_err err;
    struct ec_key *a = NULL, *b = NULL, *zero = NULL;
    uint8_t s1[32], s2[32], u0[32] = { 0 };
    assert_int_equal(ec_key_generate(EC_KEY_X25519, &a, &err), EC_OK);
    assert_int_equal(ec_key_generate(EC_KEY_X25519, &b, &err), EC_OK);
    assert_int_equal(ec_key_derive(a, b, s1, &err), EC_OK);
    assert_int_equal(ec_key_derive(b, a, s2, &err), EC_OK);
    assert_memory_equal(s1, s2, 32);

    /* u = 0 is of small order: the all-zero secret is refused */
    assert_int_equal(ec_key_import_raw_public(EC_KEY_X25519, u0, 32, &zero, &err), EC_OK);
    assert_int_equal(ec_key_derive(a, zero, s1, &err), EC_EINVAL);
    ec_key_free(a);
    ec_key_free(b);
    ec_key_free(zero);
}

/* --- PEM ---------------------------------------------------------------------------------- */

static void pem_round_trip(enum ec_key_alg alg)
{
    struct ec_err err;
    struct ec_key *key = NULL, *priv = NULL, *pub = NULL;
    struct ec_buf priv_pem, pub_pem;
    ec_buf_init(&priv_pem, 4096);
    ec_buf_init(&pub_pem, 4096);
    assert_int_equal(ec_key_generate(alg, &key, &err), EC_OK);
    assert_int_equal(ec_key_write_private_pem(key, &priv_pem, &err), EC_OK);
    assert_int_equal(ec_key_write_public_pem(key, &pub_pem, &err), EC_OK);
    assert_non_null(strstr(priv_pem.data, "-----BEGIN PRIVATE KEY-----\n"));
    assert_non_null(strstr(pub_pem.data, "-----BEGIN PUBLIC KEY-----\n"));

    assert_int_equal(ec_key_load_private_pem(alg, priv_pem.data, priv_pem.len, &priv, &err), EC_OK);
    assert_true(ec_key_has_private(priv));
    assert_int_equal(ec_key_load_public_pem(alg, pub_pem.data, pub_pem.len, &pub, &err), EC_OK);
    assert_false(ec_key_has_private(pub));
    uint8_t r0[32], r1[32], r2[32];
    ec_key_export_raw_public(key, r0);
    ec_key_export_raw_public(priv, r1);
    ec_key_export_raw_public(pub, r2);
    assert_memory_equal(r0, r1, 32);
    assert_memory_equal(r0, r2, 32);

    /* the reloaded private key is the same key, not just the same public half */
    if (alg == EC_KEY_ED25519) {
        uint8_t s0[64], s1[64];
        assert_int_equal(ec_key_sign(key, "m", 1, s0, &err), EC_OK);
        assert_int_equal(ec_key_sign(priv, "m", 1, s1, &err), EC_OK);
        assert_memory_equal(s0, s1, 64);
        assert_int_equal(ec_key_verify(pub, "m", 1, s1, 64, &err), EC_OK);
    } else {
        struct ec_key *peer = NULL;
        uint8_t s0[32], s1[32];
        assert_int_equal(ec_key_generate(EC_KEY_X25519, &peer, &err), EC_OK);
        assert_int_equal(ec_key_derive(key, peer, s0, &err), EC_OK);
        assert_int_equal(ec_key_derive(priv, peer, s1, &err), EC_OK);
        assert_memory_equal(s0, s1, 32);
        ec_key_free(peer);
    }

    /* what was written as one algorithm does not load as the other */
    enum ec_key_alg other = alg == EC_KEY_ED25519 ? EC_KEY_X25519 : EC_KEY_ED25519;
    struct ec_key *bad = (struct ec_key *)&bad;
    assert_int_equal(ec_key_load_private_pem(other, priv_pem.data, priv_pem.len, &bad, &err),
                     EC_EINVAL);
    assert_null(bad);
    assert_int_equal(ec_key_load_public_pem(other, pub_pem.data, pub_pem.len, &bad, &err),
                     EC_EINVAL);
    /* a public PEM is not a private key, and a public key has no private PEM */
    assert_int_equal(ec_key_load_private_pem(alg, pub_pem.data, pub_pem.len, &bad, &err),
                     EC_EINVAL);
    assert_int_equal(ec_key_write_private_pem(pub, &priv_pem, &err), EC_EINVAL);

    ec_crypto_wipe(priv_pem.data, priv_pem.len);
    ec_buf_release(&priv_pem);
    ec_buf_release(&pub_pem);
    ec_key_free(key);
    ec_key_free(priv);
    ec_key_free(pub);
}

static void test_pem_round_trip_ed25519(void **state)
{
    pem_round_trip(EC_KEY_ED25519);
}

static void test_pem_round_trip_x25519(void **state)
{
    pem_round_trip(EC_KEY_X25519);
}

static void test_pem_known_key_and_garbage(void **state)
{
    struct ec_err err;
    /* RFC 8032 TEST 1's seed in PKCS#8 (RFC 8410 section 10.3 layout): 302e020100300506032b6570
     * 04220420 followed by the seed. */
    static const char pem[] = "-----BEGIN PRIVATE KEY-----\n"
                              "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
                              "-----END PRIVATE KEY-----\n";
    struct ec_key *key = NULL;
    assert_int_equal(ec_key_load_private_pem(EC_KEY_ED25519, pem, sizeof(pem) - 1, &key, &err),
                     EC_OK);
    uint8_t raw[32];
    ec_key_export_raw_public(key, raw);
    assert_hex_equal(raw, 32, rfc8032[0].public);
    struct ec_buf out;
    ec_buf_init(&out, 0);
    assert_int_equal(ec_key_write_private_pem(key, &out, &err), EC_OK);
    assert_string_equal(out.data, pem);
    ec_buf_release(&out);
    ec_key_free(key);

    static const char garbage[] = "-----BEGIN PRIVATE KEY-----\nnot base64\n"
                                  "-----END PRIVATE KEY-----\n";
    assert_int_equal(
        ec_key_load_private_pem(EC_KEY_ED25519, garbage, sizeof(garbage) - 1, &key, &err),
        EC_EINVAL);
    assert_null(key);
    assert_int_equal(ec_key_load_public_pem(EC_KEY_ED25519, "", 0, &key, &err), EC_EINVAL);
    assert_true(strlen(err.msg) > 0);
    /* only the first half of the PEM: the length is honoured, not a NUL */
    assert_int_equal(ec_key_load_private_pem(EC_KEY_ED25519, pem, 40, &key, &err), EC_EINVAL);

    /* a buffer too small for the PEM */
    struct ec_key *gen = NULL;
    assert_int_equal(ec_key_generate(EC_KEY_ED25519, &gen, &err), EC_OK);
    ec_buf_init(&out, 16);
    assert_int_equal(ec_key_write_public_pem(gen, &out, &err), EC_ETOOBIG);
    ec_buf_release(&out);
    ec_key_free(gen);
}

/* --- AES-256-GCM -------------------------------------------------------------------------- */

static void test_aes256gcm_vectors(void **state)
{
    struct ec_err err;
    uint8_t key[32], iv[12], aad[20], pt[60], ct[60], tag[16], out[60];
    /* McGrew-Viega test case 16: 256-bit key, 60-byte plaintext, 20-byte aad */
    unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", key, 32);
    unhex("cafebabefacedbaddecaf888", iv, 12);
    unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", aad, 20);
    unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e"
          "2449a6b525b16aedf5aa0de657ba637b39",
          pt, 60);
    assert_int_equal(ec_aes256gcm_seal(key, iv, aad, 20, pt, 60, ct, tag, &err), EC_OK);
    assert_hex_equal(ct, 60,
                     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590d"
                     "bb3da7b08b1056828838c5f61e6393ba7a0abcc9f662");
    assert_hex_equal(tag, 16, "76fc6ece0f4e1768cddf8853bb2d551b");
    assert_int_equal(ec_aes256gcm_open(key, iv, aad, 20, ct, 60, tag, out, &err), EC_OK);
    assert_memory_equal(out, pt, 60);

    /* test case 14: zero key and IV, one zero block, no aad */
    uint8_t zkey[32] = { 0 }, ziv[12] = { 0 }, zpt[16] = { 0 };
    assert_int_equal(ec_aes256gcm_seal(zkey, ziv, NULL, 0, zpt, 16, ct, tag, &err), EC_OK);
    assert_hex_equal(ct, 16, "cea7403d4d606b6e074ec5d3baf39d18");
    assert_hex_equal(tag, 16, "d0d1c8a799996bf0265b98b5d48ab919");
    /* test case 13: nothing at all, only a tag */
    assert_int_equal(ec_aes256gcm_seal(zkey, ziv, NULL, 0, NULL, 0, NULL, tag, &err), EC_OK);
    assert_hex_equal(tag, 16, "530f8afbc74536b9a963b4f1c4cb738b");
    assert_int_equal(ec_aes256gcm_open(zkey, ziv, NULL, 0, NULL, 0, tag, NULL, &err), EC_OK);
}

static void test_aes256gcm_tamper(void **state)
{
    struct ec_err err;
    uint8_t key[32], iv[12], tag[16], ct[100], out[100];
    static const char msg[] = "session 7f3a belongs to account 12; expires 1767225600";
    static const char aad[] = "cookie:v1";
    const size_t n = sizeof(msg) - 1, aad_len = sizeof(aad) - 1;
    ec_random_bytes(key, sizeof(key));
    ec_random_bytes(iv, sizeof(iv));
    assert_int_equal(ec_aes256gcm_seal(key, iv, aad, aad_len, msg, n, ct, tag, &err), EC_OK);
    assert_memory_not_equal(ct, msg, n);
    assert_int_equal(ec_aes256gcm_open(key, iv, aad, aad_len, ct, n, tag, out, &err), EC_OK);
    assert_memory_equal(out, msg, n);

    /* any change is EC_EUNAUTH and leaves no plaintext behind */
    static const uint8_t zeros[100];
    ct[n / 2] ^= 0x80;
    assert_int_equal(ec_aes256gcm_open(key, iv, aad, aad_len, ct, n, tag, out, &err), EC_EUNAUTH);
    assert_int_equal(err.status, EC_EUNAUTH);
    assert_memory_equal(out, zeros, n);
    ct[n / 2] ^= 0x80;
    tag[15] ^= 0x01;
    assert_int_equal(ec_aes256gcm_open(key, iv, aad, aad_len, ct, n, tag, out, &err), EC_EUNAUTH);
    tag[15] ^= 0x01;
    assert_int_equal(ec_aes256gcm_open(key, iv, "cookie:v2", aad_len, ct, n, tag, out, &err),
                     EC_EUNAUTH);
    assert_int_equal(ec_aes256gcm_open(key, iv, NULL, 0, ct, n, tag, out, &err), EC_EUNAUTH);
    assert_int_equal(ec_aes256gcm_open(key, iv, aad, aad_len, ct, n - 1, tag, out, &err),
                     EC_EUNAUTH);
    iv[0] ^= 0x01;
    assert_int_equal(ec_aes256gcm_open(key, iv, aad, aad_len, ct, n, tag, out, &err), EC_EUNAUTH);
    iv[0] ^= 0x01;
    key[31] ^= 0x01;
    assert_int_equal(ec_aes256gcm_open(key, iv, aad, aad_len, ct, n, tag, out, &err), EC_EUNAUTH);
    key[31] ^= 0x01;

    /* in place */
    memcpy(out, msg, n);
    assert_int_equal(ec_aes256gcm_seal(key, iv, aad, aad_len, out, n, out, tag, &err), EC_OK);
    assert_memory_equal(out, ct, n);
    assert_int_equal(ec_aes256gcm_open(key, iv, aad, aad_len, out, n, tag, out, &err), EC_OK);
    assert_memory_equal(out, msg, n);
}

/* --- Encodings ---------------------------------------------------------------------------- */

static void test_rfc4648_vectors(void **state)
{
    static const struct {
        const char *in, *b64, *b64url, *hex;
    } cases[] = {
        { "", "", "", "" },
        { "f", "Zg==", "Zg", "66" },
        { "fo", "Zm8=", "Zm8", "666f" },
        { "foo", "Zm9v", "Zm9v", "666f6f" },
        { "foob", "Zm9vYg==", "Zm9vYg", "666f6f62" },
        { "fooba", "Zm9vYmE=", "Zm9vYmE", "666f6f6261" },
        { "foobar", "Zm9vYmFy", "Zm9vYmFy", "666f6f626172" },
    };
    struct ec_err err;
    struct ec_arena arena;
    ec_arena_init(&arena);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *in = cases[i].in;
        size_t n = strlen(in), len = 99;
        char text[16];
        uint8_t bin[16];
        assert_int_equal(ec_b64_encode(text, sizeof(text), in, n), strlen(cases[i].b64));
        assert_string_equal(text, cases[i].b64);
        assert_int_equal(EC_B64_ENCODED_LEN(n), strlen(cases[i].b64));
        assert_int_equal(ec_b64url_encode(text, sizeof(text), in, n), strlen(cases[i].b64url));
        assert_string_equal(text, cases[i].b64url);
        assert_int_equal(EC_B64URL_ENCODED_LEN(n), strlen(cases[i].b64url));
        assert_int_equal(ec_hex_encode(text, sizeof(text), in, n), 2 * n);
        assert_string_equal(text, cases[i].hex);
        assert_string_equal(ec_b64_encode_arena(&arena, in, n), cases[i].b64);
        assert_string_equal(ec_b64url_encode_arena(&arena, in, n), cases[i].b64url);
        assert_string_equal(ec_hex_encode_arena(&arena, in, n), cases[i].hex);

        assert_int_equal(
            ec_b64_decode(bin, sizeof(bin), &len, cases[i].b64, strlen(cases[i].b64), &err), EC_OK);
        assert_int_equal(len, n);
        assert_memory_equal(bin, in, n);
        /* base64url with and without padding */
        assert_int_equal(ec_b64url_decode(bin, sizeof(bin), &len, cases[i].b64url,
                                          strlen(cases[i].b64url), &err),
                         EC_OK);
        assert_int_equal(len, n);
        assert_memory_equal(bin, in, n);
        assert_int_equal(
            ec_b64url_decode(bin, sizeof(bin), &len, cases[i].b64, strlen(cases[i].b64), &err),
            EC_OK);
        assert_int_equal(len, n);
        assert_memory_equal(bin, in, n);
        assert_int_equal(
            ec_hex_decode(bin, sizeof(bin), &len, cases[i].hex, strlen(cases[i].hex), &err), EC_OK);
        assert_int_equal(len, n);
        assert_memory_equal(bin, in, n);

        uint8_t *dec = NULL;
        assert_int_equal(
            ec_b64_decode_arena(&arena, cases[i].b64, strlen(cases[i].b64), &dec, &len, &err),
            EC_OK);
        assert_string_equal((char *)dec, in);
        assert_int_equal(ec_b64url_decode_arena(&arena, cases[i].b64url, strlen(cases[i].b64url),
                                                &dec, &len, &err),
                         EC_OK);
        assert_string_equal((char *)dec, in);
        assert_int_equal(
            ec_hex_decode_arena(&arena, cases[i].hex, strlen(cases[i].hex), &dec, &len, &err),
            EC_OK);
        assert_string_equal((char *)dec, in);
    }
    /* RFC 4648's BASE16 is upper case; decoding takes either */
    uint8_t bin[8];
    size_t len = 0;
    assert_int_equal(ec_hex_decode(bin, sizeof(bin), &len, "666F6F626172", 12, &err), EC_OK);
    assert_memory_equal(bin, "foobar", 6);
    assert_int_equal(ec_hex_decode(bin, sizeof(bin), &len, "DeadBeef", 8, &err), EC_OK);
    assert_hex_equal(bin, len, "deadbeef");
    ec_arena_release(&arena);
}

/* Every byte value and every length up to 3 full groups, through each codec. */
static void test_encoding_round_trips(void **state)
{
    struct ec_err err;
    uint8_t data[256], back[256];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(255 - i);
    char text[400];
    for (size_t n = 0; n <= sizeof(data); n++) {
        size_t len = 0, tl;
        tl = ec_b64_encode(text, sizeof(text), data, n);
        assert_int_equal(ec_b64_decode(back, sizeof(back), &len, text, tl, &err), EC_OK);
        assert_int_equal(len, n);
        assert_memory_equal(back, data, n);
        tl = ec_b64url_encode(text, sizeof(text), data, n);
        assert_null(memchr(text, '=', tl));
        assert_null(memchr(text, '+', tl));
        assert_null(memchr(text, '/', tl));
        assert_int_equal(ec_b64url_decode(back, sizeof(back), &len, text, tl, &err), EC_OK);
        assert_int_equal(len, n);
        assert_memory_equal(back, data, n);
        tl = ec_hex_encode(text, sizeof(text) < 2 * n + 1 ? 0 : sizeof(text), data, n);
        if (2 * n + 1 <= sizeof(text)) {
            assert_int_equal(ec_hex_decode(back, sizeof(back), &len, text, tl, &err), EC_OK);
            assert_int_equal(len, n);
            assert_memory_equal(back, data, n);
        }
    }
    /* both alphabets' last two characters */
    uint8_t hi[3] = { 0xfb, 0xff, 0xbf };
    assert_int_equal(ec_b64_encode(text, sizeof(text), hi, 3), 4);
    assert_string_equal(text, "+/+/");
    assert_int_equal(ec_b64url_encode(text, sizeof(text), hi, 3), 4);
    assert_string_equal(text, "-_-_");
}

/* Decodes text from a heap copy of exactly n bytes, so ASan catches any read past the input. */
static enum ec_status decode_exact(enum ec_status (*decode)(void *, size_t, size_t *, const char *,
                                                            size_t, struct ec_err *),
                                   const char *text, size_t n)
{
    char *copy = ec_xmalloc(n);
    memcpy(copy, text, n);
    uint8_t out[64];
    size_t len = 0;
    struct ec_err err;
    ec_err_clear(&err);
    enum ec_status st = decode(out, sizeof(out), &len, copy, n, &err);
    free(copy);
    if (st != EC_OK) {
        assert_int_equal(err.status, st);
        assert_true(strlen(err.msg) > 0);
        assert_int_equal(len, 0);
    }
    return st;
}

#define DECODE(fn, lit) decode_exact(fn, lit, sizeof(lit) - 1)

static void test_encoding_rejects(void **state)
{
    /* base64: padding is required and only at the end, nothing but the alphabet */
    assert_int_equal(DECODE(ec_b64_decode, "Zm9vYmFy"), EC_OK);
    assert_int_equal(DECODE(ec_b64_decode, "Zg"), EC_EINVAL);
    assert_int_equal(DECODE(ec_b64_decode, "Zg="), EC_EINVAL);
    assert_int_equal(DECODE(ec_b64_decode, "Z==="), EC_EINVAL);
    assert_int_equal(DECODE(ec_b64_decode, "===="), EC_EINVAL);
    assert_int_equal(DECODE(ec_b64_decode, "=Zg="), EC_EINVAL);
    assert_int_equal(DECODE(ec_b64_decode, "Zg==Zm8="), EC_EINVAL);
    assert_int_equal(DECODE(ec_b64_decode, "Zm9v YmE"), EC_EINVAL);
    assert_int_equal(DECODE(ec_b64_decode, "Zm9vYmE\n"), EC_EINVAL);
    assert_int_equal(DECODE(ec_b64_decode, "Zm9v\0mFy"), EC_EINVAL);
    assert_int_equal(DECODE(ec_b64_decode, "Zm9v\xffmFy"), EC_EINVAL);
    assert_int_equal(DECODE(ec_b64_decode, "-_-_"), EC_EINVAL);
    assert_int_equal(DECODE(ec_b64_decode, "A"), EC_EINVAL);
    /* non-zero unused bits: another spelling of "f" and of "fo" */
    assert_int_equal(DECODE(ec_b64_decode, "Zh=="), EC_EINVAL);
    assert_int_equal(DECODE(ec_b64_decode, "Zm9="), EC_EINVAL);

    /* base64url: padding optional but, if there, complete */
    assert_int_equal(DECODE(ec_b64url_decode, "Zg"), EC_OK);
    assert_int_equal(DECODE(ec_b64url_decode, "Zg=="), EC_OK);
    assert_int_equal(DECODE(ec_b64url_decode, "Zg="), EC_EINVAL);
    assert_int_equal(DECODE(ec_b64url_decode, "Zm9vY"), EC_EINVAL);
    assert_int_equal(DECODE(ec_b64url_decode, "A"), EC_EINVAL);
    assert_int_equal(DECODE(ec_b64url_decode, "+/+/"), EC_EINVAL);
    assert_int_equal(DECODE(ec_b64url_decode, "-_-_"), EC_OK);
    assert_int_equal(DECODE(ec_b64url_decode, "Zh"), EC_EINVAL);
    assert_int_equal(DECODE(ec_b64url_decode, "Zg=A"), EC_EINVAL);
    assert_int_equal(DECODE(ec_b64url_decode, "Zm9v.mFy"), EC_EINVAL);

    /* hex */
    assert_int_equal(DECODE(ec_hex_decode, "00ff"), EC_OK);
    assert_int_equal(DECODE(ec_hex_decode, "0"), EC_EINVAL);
    assert_int_equal(DECODE(ec_hex_decode, "0g"), EC_EINVAL);
    assert_int_equal(DECODE(ec_hex_decode, "0 "), EC_EINVAL);
    assert_int_equal(DECODE(ec_hex_decode, "0x00"), EC_EINVAL);
    assert_int_equal(DECODE(ec_hex_decode, "@0"), EC_EINVAL);
    assert_int_equal(DECODE(ec_hex_decode, "`0"), EC_EINVAL);
    assert_int_equal(DECODE(ec_hex_decode, "G0"), EC_EINVAL);

    /* output that does not fit the caller's buffer */
    struct ec_err err;
    uint8_t small[2];
    size_t len = 0;
    assert_int_equal(ec_b64_decode(small, sizeof(small), &len, "Zm9v", 4, &err), EC_EINVAL);
    assert_int_equal(ec_b64url_decode(small, sizeof(small), &len, "Zm9v", 4, &err), EC_EINVAL);
    assert_int_equal(ec_hex_decode(small, sizeof(small), &len, "666f6f", 6, &err), EC_EINVAL);
    assert_int_equal(ec_b64_decode(small, sizeof(small), &len, "Zm8=", 4, &err), EC_OK);
    assert_int_equal(len, 2);

    /* arena decoders fail the same way */
    struct ec_arena arena;
    ec_arena_init(&arena);
    uint8_t *out = (uint8_t *)&out;
    assert_int_equal(ec_b64_decode_arena(&arena, "Zg", 2, &out, &len, &err), EC_EINVAL);
    assert_null(out);
    assert_int_equal(ec_hex_decode_arena(&arena, "zz", 2, &out, &len, &err), EC_EINVAL);
    assert_null(out);
    ec_arena_release(&arena);
}

static void test_encoders_small_buffer(void **state)
{
    char text[4] = "xyz";
    /* needs 8 characters and a NUL: nothing written but an empty string */
    assert_int_equal(ec_b64_encode(text, sizeof(text), "foobar", 6), 8);
    assert_string_equal(text, "");
    memcpy(text, "xyz", 4);
    assert_int_equal(ec_b64url_encode(text, sizeof(text), "foo", 3), 4);
    assert_string_equal(text, "");
    memcpy(text, "xyz", 4);
    assert_int_equal(ec_hex_encode(text, sizeof(text), "ab", 2), 4);
    assert_string_equal(text, "");
    /* sizing call */
    assert_int_equal(ec_b64_encode(NULL, 0, "foobar", 6), 8);
    assert_int_equal(ec_b64url_encode(NULL, 0, "fooba", 5), 7);
    assert_int_equal(ec_hex_encode(NULL, 0, "foobar", 6), 12);
    /* exactly enough */
    assert_int_equal(ec_hex_encode(text, sizeof(text) - 1, "a", 1), 2);
    assert_string_equal(text, "61");
}

/* --- Randomness and comparison ------------------------------------------------------------ */

static void test_random(void **state)
{
    uint8_t a[32] = { 0 }, b[32] = { 0 };
    static const uint8_t zeros[32];
    ec_random_bytes(a, sizeof(a));
    ec_random_bytes(b, sizeof(b));
    assert_memory_not_equal(a, zeros, 32);
    assert_memory_not_equal(a, b, 32);
    ec_random_bytes(NULL, 0);

    struct ec_arena arena;
    ec_arena_init(&arena);
    char *t1 = ec_random_token(&arena, 32), *t2 = ec_random_token(&arena, 32);
    assert_int_equal(strlen(t1), 43);
    assert_int_equal(strlen(t1), EC_B64URL_ENCODED_LEN(32));
    assert_string_not_equal(t1, t2);
    assert_int_equal(strspn(t1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                     43);
    uint8_t raw[32];
    size_t len = 0;
    struct ec_err err;
    assert_int_equal(ec_b64url_decode(raw, sizeof(raw), &len, t1, strlen(t1), &err), EC_OK);
    assert_int_equal(len, 32);

    char buf[EC_B64URL_ENCODED_LEN(16) + 1];
    assert_int_equal(ec_random_token_buf(buf, sizeof(buf), 16), 22);
    assert_int_equal(strlen(buf), 22);
    ec_arena_release(&arena);
}

static void test_ct_equal(void **state)
{
    assert_true(ec_ct_equal("secret", 6, "secret", 6));
    assert_false(ec_ct_equal("secret", 6, "secreT", 6));
    assert_false(ec_ct_equal("secret", 6, "Secret", 6));
    assert_false(ec_ct_equal("secret", 6, "secret!", 7));
    assert_false(ec_ct_equal("secret!", 7, "secret", 6));
    assert_false(ec_ct_equal("secret", 6, "", 0));
    assert_false(ec_ct_equal("", 0, "secret", 6));
    assert_true(ec_ct_equal("", 0, "", 0));
    assert_true(ec_ct_equal(NULL, 0, NULL, 0));
    /* differs only in a high bit of the last byte */
    uint8_t a[64], b[64];
    memset(a, 0x5a, sizeof(a));
    memcpy(b, a, sizeof(b));
    assert_true(ec_ct_equal(a, 64, b, 64));
    b[63] ^= 0x80;
    assert_false(ec_ct_equal(a, 64, b, 64));

    assert_true(ec_ct_streq("token", "token"));
    assert_false(ec_ct_streq("token", "tokem"));
    assert_false(ec_ct_streq("token", "toke"));
    assert_false(ec_ct_streq("toke", "token"));
    assert_true(ec_ct_streq("", ""));
    assert_false(ec_ct_streq("", "x"));
    assert_false(ec_ct_streq(NULL, "x"));
    assert_false(ec_ct_streq("x", NULL));
    assert_false(ec_ct_streq(NULL, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_hmac_sha256_rfc4231),
        cmocka_unit_test(test_hkdf_sha256_rfc5869),
        cmocka_unit_test(test_scrypt_rfc7914),
        cmocka_unit_test(test_ed25519_rfc8032),
        cmocka_unit_test(test_ed25519_generate_sign_verify),
        cmocka_unit_test(test_x25519_rfc7748_scalar_mult),
        cmocka_unit_test(test_x25519_rfc7748_alice_bob),
        cmocka_unit_test(test_x25519_generate_and_small_order),
        cmocka_unit_test(test_pem_round_trip_ed25519),
        cmocka_unit_test(test_pem_round_trip_x25519),
        cmocka_unit_test(test_pem_known_key_and_garbage),
        cmocka_unit_test(test_aes256gcm_vectors),
        cmocka_unit_test(test_aes256gcm_tamper),
        cmocka_unit_test(test_rfc4648_vectors),
        cmocka_unit_test(test_encoding_round_trips),
        cmocka_unit_test(test_encoding_rejects),
        cmocka_unit_test(test_encoders_small_buffer),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_ct_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
