/* Unit tests for ec_x509: a CA and a leaf made in memory verify with OpenSSL's own chain check
 * and carry the SPIFFE URI, EKU and CA:FALSE they promise; bad input is refused; PEM files are
 * written with their mode, never over an existing file unless asked, and leave no temp file. */
#include "common/ec_buf.h"
#include "common/ec_crypto.h"
#include "common/ec_mem.h"
#include "common/ec_x509.h"

#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <dirent.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* --- Checks ------------------------------------------------------------------------------- */

static void test_check_role(void **state)
{
    struct ec_err err;
    const char *good[] = { "coordinator", "control-plane", "inference", "portal", "agent" };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_int_equal(ec_x509_check_role(good[i], &err), EC_OK);
    const char *bad[] = { "", "Agent", "agents", "agent ", "control_plane", "admin" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ec_x509_check_role(bad[i], &err), EC_EINVAL);
    assert_int_equal(ec_x509_check_role("admin", &err), EC_EINVAL);
    assert_non_null(strstr(err.msg, "\"admin\""));
    assert_int_equal(ec_x509_check_role(NULL, &err), EC_EINVAL);
}

static void test_check_id(void **state)
{
    struct ec_err err;
    char longest[EC_X509_ID_MAX + 2];
    memset(longest, 'a', EC_X509_ID_MAX);
    longest[EC_X509_ID_MAX] = '\0';
    const char *good[] = { "a", "node-1", "A.b_c-9", "...", ".a", longest };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_int_equal(ec_x509_check_id(good[i], &err), EC_OK);
    longest[EC_X509_ID_MAX] = 'a';
    longest[EC_X509_ID_MAX + 1] = '\0';
    const char *bad[] = { "", ".", "..", "a/b", "a b", "a:b", "caf\xc3\xa9", "a%2f", longest };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ec_x509_check_id(bad[i], &err), EC_EINVAL);
    assert_int_equal(ec_x509_check_id("a/b", &err), EC_EINVAL);
    assert_non_null(strstr(err.msg, "\"a/b\""));
    assert_int_equal(ec_x509_check_id(NULL, &err), EC_EINVAL);
}

static void test_check_dns(void **state)
{
    struct ec_err err;
    char label63[64], label64[65], total254[255];
    memset(label63, 'a', 63);
    label63[63] = '\0';
    memset(label64, 'a', 64);
    label64[64] = '\0';
    for (size_t i = 0; i < 254; i++)
        total254[i] = i % 2 == 0 ? 'a' : '.';
    total254[253] = 'b'; /* 254 characters of short labels: one too many */
    total254[254] = '\0';
    const char *good[] = { "localhost",
                           "coordinator.internal",
                           "a-b.example.com",
                           "xn--bcher-kva.example",
                           "1a.example",
                           "a.b2",
                           label63 };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_int_equal(ec_x509_check_dns(good[i], &err), EC_OK);
    const char *bad[] = { "",      "-a.example",    "a-.example", "a..b",  ".a",        "a.",
                          "a_b",   "*.example.com", "a b",        "a/b",   "127.0.0.1", "::1",
                          "1.2.3", "999.1.1.1",     label64,      total254 };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ec_x509_check_dns(bad[i], &err), EC_EINVAL);
    assert_int_equal(ec_x509_check_dns("a_b", &err), EC_EINVAL);
    assert_non_null(strstr(err.msg, "\"a_b\""));
    assert_int_equal(ec_x509_check_dns(NULL, &err), EC_EINVAL);
}

static void test_check_ip(void **state)
{
    struct ec_err err;
    const char *good[] = { "127.0.0.1", "0.0.0.0", "255.255.255.255",         "::1",
                           "::",        "fe80::1", "2001:db8::8a2e:370:7334", "::ffff:10.0.0.1" };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_int_equal(ec_x509_check_ip(good[i], &err), EC_OK);
    const char *bad[] = { "",         "1.2.3",     "256.1.1.1",    "1.2.3.4.5",    " 1.2.3.4",
                          "1.2.3.4 ", "localhost", "fe80::1%eth0", "2001:db8:::1", "[::1]" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ec_x509_check_ip(bad[i], &err), EC_EINVAL);
    assert_int_equal(ec_x509_check_ip("999.1.1.1", &err), EC_EINVAL);
    assert_non_null(strstr(err.msg, "\"999.1.1.1\""));
    assert_int_equal(ec_x509_check_ip(NULL, &err), EC_EINVAL);
}

static void test_parse_days(void **state)
{
    struct ec_err err;
    int days = 0;
    assert_int_equal(ec_x509_parse_days("1", &days, &err), EC_OK);
    assert_int_equal(days, 1);
    assert_int_equal(ec_x509_parse_days("3650", &days, &err), EC_OK);
    assert_int_equal(days, 3650);
    assert_int_equal(ec_x509_parse_days("0365", &days, &err), EC_OK);
    assert_int_equal(days, 365);
    days = 7;
    const char *bad[] = { "", "0", "3651", "-1", "+5", "1x", " 5", "5 ", "1e3", "99999999999" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ec_x509_parse_days(bad[i], &days, &err), EC_EINVAL);
    assert_int_equal(days, 7);
    assert_int_equal(ec_x509_parse_days(NULL, &days, &err), EC_EINVAL);
    assert_int_equal(ec_x509_parse_days("3651", &days, &err), EC_EINVAL);
    assert_non_null(strstr(err.msg, "\"3651\""));
}

static void test_spiffe_uri(void **state)
{
    char uri[EC_X509_SPIFFE_MAX + 1];
    char id[EC_X509_ID_MAX + 1];
    memset(id, 'z', EC_X509_ID_MAX);
    id[EC_X509_ID_MAX] = '\0';
    assert_int_equal(ec_x509_spiffe_uri(uri, sizeof(uri), "control-plane", id), EC_X509_SPIFFE_MAX);
    assert_int_equal(ec_x509_spiffe_uri(uri, sizeof(uri), "agent", "a-1"), 28);
    assert_string_equal(uri, "spiffe://edgecoder/agent/a-1");
}

/* --- CA and leaves ------------------------------------------------------------------------ */

struct pair {
    struct ec_buf cert;
    struct ec_buf key;
};

static void pair_init(struct pair *p)
{
    ec_buf_init(&p->cert, 0);
    ec_buf_init(&p->key, 0);
}

static void pair_release(struct pair *p)
{
    ec_buf_release(&p->cert);
    ec_buf_release(&p->key);
}

static X509 *cert_parse(const struct ec_buf *pem)
{
    BIO *bio = BIO_new_mem_buf(pem->data, (int)pem->len);
    assert_non_null(bio);
    X509 *cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    assert_non_null(cert);
    return cert;
}

static EVP_PKEY *key_parse(const struct ec_buf *pem)
{
    assert_non_null(strstr(pem->data, "-----BEGIN PRIVATE KEY-----")); /* PKCS#8 */
    BIO *bio = BIO_new_mem_buf(pem->data, (int)pem->len);
    assert_non_null(bio);
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    assert_non_null(key);
    assert_true(EVP_PKEY_is_a(key, "EC"));
    return key;
}

/* X509_verify_cert of leaf against ca alone, strict, for a TLS purpose; the verify error. */
static int chain_verify(X509 *ca, X509 *leaf, int purpose)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    assert_non_null(store);
    assert_non_null(ctx);
    assert_int_equal(X509_STORE_add_cert(store, ca), 1);
    assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
    X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_X509_STRICT);
    assert_int_equal(X509_STORE_CTX_set_purpose(ctx, purpose), 1);
    int ok = X509_verify_cert(ctx);
    int error = X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return ok == 1 ? X509_V_OK : (error != X509_V_OK ? error : -1);
}

static struct ec_x509_ca *ca_make(struct pair *pem, int days)
{
    struct ec_x509_ca *ca = NULL;
    struct ec_err err;
    assert_int_equal(ec_x509_ca_create(days, &ca, &err), EC_OK);
    assert_int_equal(ec_x509_ca_write_pem(ca, &pem->cert, &pem->key, &err), EC_OK);
    return ca;
}

static void test_ca_certificate(void **state)
{
    struct pair pem;
    pair_init(&pem);
    struct ec_x509_ca *ca = ca_make(&pem, 30);
    X509 *cert = cert_parse(&pem.cert);
    EVP_PKEY *key = key_parse(&pem.key);
    assert_int_equal(X509_check_private_key(cert, key), 1);
    assert_int_equal(X509_check_ca(cert), 1);
    uint32_t flags = X509_get_extension_flags(cert);
    assert_true(flags & EXFLAG_SS);
    assert_true(flags & EXFLAG_CA);
    assert_int_equal(X509_get_pathlen(cert), 0);
    assert_int_equal(X509_get_key_usage(cert), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    assert_non_null(X509_get0_subject_key_id(cert));
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(cert, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_int_equal(crit, 1);
    BASIC_CONSTRAINTS_free(bc);
    char cn[64];
    assert_int_equal(
        X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn)), 12);
    assert_string_equal(cn, "EdgeCoder CA");
    /* self-signed: verifies against itself */
    assert_int_equal(chain_verify(cert, cert, X509_PURPOSE_ANY), X509_V_OK);
    /* about 30 days from now */
    int pday = 0, psec = 0;
    assert_int_equal(ASN1_TIME_diff(&pday, &psec, NULL, X509_get0_notAfter(cert)), 1);
    assert_true(pday == 29 || pday == 30);

    char not_after[EC_X509_TIME_LEN + 1];
    ec_x509_ca_not_after(ca, not_after);
    assert_int_equal(strlen(not_after), EC_X509_TIME_LEN);
    assert_int_equal(not_after[10], 'T');
    assert_int_equal(not_after[19], 'Z');

    /* The PEM round trip gives back a usable CA. */
    struct ec_x509_ca *loaded = NULL;
    struct ec_err err;
    assert_int_equal(
        ec_x509_ca_load(pem.cert.data, pem.cert.len, pem.key.data, pem.key.len, &loaded, &err),
        EC_OK);
    char loaded_not_after[EC_X509_TIME_LEN + 1];
    ec_x509_ca_not_after(loaded, loaded_not_after);
    assert_string_equal(loaded_not_after, not_after);
    ec_x509_ca_free(loaded);

    struct ec_x509_ca *none = NULL;
    assert_int_equal(ec_x509_ca_create(0, &none, &err), EC_EINVAL);
    assert_int_equal(ec_x509_ca_create(EC_X509_DAYS_MAX + 1, &none, &err), EC_EINVAL);
    assert_null(none);

    X509_free(cert);
    EVP_PKEY_free(key);
    ec_x509_ca_free(ca);
    ec_x509_ca_free(NULL);
    pair_release(&pem);
}

static bool san_has(GENERAL_NAMES *names, int type, const void *value, size_t len)
{
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        int got_type = 0;
        ASN1_STRING *str = GENERAL_NAME_get0_value(sk_GENERAL_NAME_value(names, i), &got_type);
        if (got_type == type && (size_t)ASN1_STRING_length(str) == len &&
            memcmp(ASN1_STRING_get0_data(str), value, len) == 0)
            return true;
    }
    return false;
}

static void test_leaf_verifies(void **state)
{
    struct pair ca_pem, leaf_pem;
    pair_init(&ca_pem);
    pair_init(&leaf_pem);
    struct ec_x509_ca *made = ca_make(&ca_pem, 30);
    ec_x509_ca_free(made);
    /* Issue from the CA as loaded back from its PEM, as `certs issue` does. */
    struct ec_x509_ca *ca = NULL;
    struct ec_err err;
    assert_int_equal(ec_x509_ca_load(ca_pem.cert.data, ca_pem.cert.len, ca_pem.key.data,
                                     ca_pem.key.len, &ca, &err),
                     EC_OK);
    const char *dns[] = { "localhost", "coord.internal" };
    const char *ips[] = { "127.0.0.1", "::1" };
    struct ec_x509_leaf_spec spec = { .role = "coordinator",
                                      .id = "coord-1",
                                      .dns = dns,
                                      .dns_count = 2,
                                      .ips = ips,
                                      .ip_count = 2,
                                      .days = 7 };
    char not_after[EC_X509_TIME_LEN + 1];
    assert_int_equal(ec_x509_leaf_issue(ca, &spec, &leaf_pem.cert, &leaf_pem.key, not_after, &err),
                     EC_OK);
    assert_int_equal(strlen(not_after), EC_X509_TIME_LEN);

    X509 *ca_cert = cert_parse(&ca_pem.cert);
    X509 *leaf = cert_parse(&leaf_pem.cert);
    EVP_PKEY *leaf_key = key_parse(&leaf_pem.key);
    assert_int_equal(X509_check_private_key(leaf, leaf_key), 1);
    assert_int_equal(chain_verify(ca_cert, leaf, X509_PURPOSE_SSL_SERVER), X509_V_OK);
    assert_int_equal(chain_verify(ca_cert, leaf, X509_PURPOSE_SSL_CLIENT), X509_V_OK);
    assert_int_equal(X509_check_issued(ca_cert, leaf), X509_V_OK);

    /* CA:FALSE, present and critical */
    assert_int_equal(X509_check_ca(leaf), 0);
    uint32_t flags = X509_get_extension_flags(leaf);
    assert_true(flags & EXFLAG_BCONS);
    assert_false(flags & EXFLAG_CA);
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(leaf, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_int_equal(crit, 1);
    assert_int_equal(bc->ca, 0);
    BASIC_CONSTRAINTS_free(bc);
    assert_int_equal(X509_get_key_usage(leaf), KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT);
    assert_int_equal(X509_get_extended_key_usage(leaf), XKU_SSL_SERVER | XKU_SSL_CLIENT);
    assert_non_null(X509_get0_subject_key_id(leaf));
    assert_int_equal(
        ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(leaf), X509_get0_subject_key_id(ca_cert)),
        0);

    /* SAN: the SPIFFE URI first, then the DNS names and IPs; nothing else */
    GENERAL_NAMES *names = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    assert_non_null(names);
    assert_int_equal(sk_GENERAL_NAME_num(names), 5);
    int type = 0;
    ASN1_STRING *first = GENERAL_NAME_get0_value(sk_GENERAL_NAME_value(names, 0), &type);
    assert_int_equal(type, GEN_URI);
    static const char uri[] = "spiffe://edgecoder/coordinator/coord-1";
    assert_int_equal(ASN1_STRING_length(first), strlen(uri));
    assert_memory_equal(ASN1_STRING_get0_data(first), uri, strlen(uri));
    assert_true(san_has(names, GEN_DNS, "localhost", 9));
    assert_true(san_has(names, GEN_DNS, "coord.internal", 14));
    static const uint8_t v4[4] = { 127, 0, 0, 1 };
    static const uint8_t v6[16] = { [15] = 1 };
    assert_true(san_has(names, GEN_IPADD, v4, 4));
    assert_true(san_has(names, GEN_IPADD, v6, 16));
    GENERAL_NAMES_free(names);
    /* hostname and IP checks a TLS client would make */
    assert_int_equal(X509_check_host(leaf, "localhost", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(leaf, "127.0.0.1", 0), 1);
    assert_int_equal(X509_check_ip_asc(leaf, "10.0.0.1", 0), 0);

    char cn[64];
    X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn, sizeof(cn));
    assert_string_equal(cn, "coordinator/coord-1");

    /* a positive serial of 65..128 bits */
    BIGNUM *serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf), NULL);
    assert_non_null(serial);
    assert_false(BN_is_negative(serial));
    assert_true(BN_num_bits(serial) > 64 && BN_num_bits(serial) <= 128);
    BN_free(serial);

    X509_free(ca_cert);
    X509_free(leaf);
    EVP_PKEY_free(leaf_key);
    ec_x509_ca_free(ca);
    pair_release(&ca_pem);
    pair_release(&leaf_pem);
}

static void test_leaf_other_ca_fails(void **state)
{
    struct pair pem_a, pem_b, leaf_pem;
    pair_init(&pem_a);
    pair_init(&pem_b);
    pair_init(&leaf_pem);
    struct ec_x509_ca *ca_a = ca_make(&pem_a, 30);
    struct ec_x509_ca *ca_b = ca_make(&pem_b, 30);
    struct ec_x509_leaf_spec spec = { .role = "agent", .id = "a1", .days = 1 };
    struct ec_err err;
    assert_int_equal(ec_x509_leaf_issue(ca_a, &spec, &leaf_pem.cert, &leaf_pem.key, NULL, &err),
                     EC_OK);
    X509 *b = cert_parse(&pem_b.cert);
    X509 *leaf = cert_parse(&leaf_pem.cert);
    assert_int_not_equal(chain_verify(b, leaf, X509_PURPOSE_SSL_CLIENT), X509_V_OK);

    /* Loading CA A's certificate with CA B's key is refused. */
    struct ec_x509_ca *mixed = NULL;
    assert_int_equal(ec_x509_ca_load(pem_a.cert.data, pem_a.cert.len, pem_b.key.data, pem_b.key.len,
                                     &mixed, &err),
                     EC_EINVAL);
    assert_null(mixed);
    /* A leaf is not a CA. */
    assert_int_equal(ec_x509_ca_load(leaf_pem.cert.data, leaf_pem.cert.len, leaf_pem.key.data,
                                     leaf_pem.key.len, &mixed, &err),
                     EC_EINVAL);
    assert_non_null(strstr(err.msg, "not a CA"));
    assert_int_equal(ec_x509_ca_load("junk", 4, pem_a.key.data, pem_a.key.len, &mixed, &err),
                     EC_EINVAL);
    assert_int_equal(ec_x509_ca_load(pem_a.cert.data, pem_a.cert.len, "junk", 4, &mixed, &err),
                     EC_EINVAL);
    /* An Ed25519 key is not a CA key here. */
    struct ec_key *ed = NULL;
    struct ec_buf ed_pem;
    ec_buf_init(&ed_pem, 0);
    assert_int_equal(ec_key_generate(EC_KEY_ED25519, &ed, &err), EC_OK);
    assert_int_equal(ec_key_write_private_pem(ed, &ed_pem, &err), EC_OK);
    assert_int_equal(
        ec_x509_ca_load(pem_a.cert.data, pem_a.cert.len, ed_pem.data, ed_pem.len, &mixed, &err),
        EC_EINVAL);
    ec_buf_release(&ed_pem);
    ec_key_free(ed);

    X509_free(b);
    X509_free(leaf);
    ec_x509_ca_free(ca_a);
    ec_x509_ca_free(ca_b);
    pair_release(&pem_a);
    pair_release(&pem_b);
    pair_release(&leaf_pem);
}

static void test_leaf_rejects_bad_spec(void **state)
{
    struct pair ca_pem, leaf_pem;
    pair_init(&ca_pem);
    pair_init(&leaf_pem);
    struct ec_x509_ca *ca = ca_make(&ca_pem, 10);
    const char *bad_dns[] = { "bad_name" };
    const char *bad_ip[] = { "1.2.3" };
    const struct ec_x509_leaf_spec specs[] = {
        { .role = "root", .id = "a", .days = 1 },
        { .role = NULL, .id = "a", .days = 1 },
        { .role = "agent", .id = "..", .days = 1 },
        { .role = "agent", .id = NULL, .days = 1 },
        { .role = "agent", .id = "a", .dns = bad_dns, .dns_count = 1, .days = 1 },
        { .role = "agent", .id = "a", .ips = bad_ip, .ip_count = 1, .days = 1 },
        { .role = "agent", .id = "a", .days = 0 },
        { .role = "agent", .id = "a", .days = EC_X509_DAYS_MAX + 1 },
        { .role = "agent", .id = "a", .days = 11 }, /* outlives the CA */
    };
    struct ec_err err;
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
        assert_int_equal(
            ec_x509_leaf_issue(ca, &specs[i], &leaf_pem.cert, &leaf_pem.key, NULL, &err),
            EC_EINVAL);
        assert_int_equal(leaf_pem.cert.len, 0);
        assert_int_equal(leaf_pem.key.len, 0);
    }
    assert_non_null(strstr(err.msg, "after the CA expires"));
    ec_x509_ca_free(ca);
    pair_release(&ca_pem);
    pair_release(&leaf_pem);
}

/* --- PEM files ---------------------------------------------------------------------------- */

static size_t dir_count(const char *path)
{
    DIR *dir = opendir(path);
    assert_non_null(dir);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(dir);
    return n;
}

static void test_pem_files(void **state)
{
    char dir[] = "/tmp/ec-x509-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char key_path[64], cert_path[64];
    snprintf(key_path, sizeof(key_path), "%s/a.key", dir);
    snprintf(cert_path, sizeof(cert_path), "%s/a.pem", dir);
    mode_t old_umask = umask(022);
    struct ec_err err;
    struct stat st;

    assert_int_equal(ec_x509_pem_write_file(key_path, "one", 3, 0600, false, &err), EC_OK);
    assert_int_equal(stat(key_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(ec_x509_pem_write_file(cert_path, "cert", 4, 0644, false, &err), EC_OK);
    assert_int_equal(stat(cert_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);

    /* never over an existing file unless asked; the old contents stay */
    assert_int_equal(ec_x509_pem_write_file(key_path, "two", 3, 0600, false, &err), EC_ECONFLICT);
    assert_non_null(strstr(err.msg, "already exists"));
    struct ec_buf buf;
    ec_buf_init(&buf, 0);
    assert_int_equal(ec_x509_pem_read_file(key_path, &buf, &err), EC_OK);
    assert_string_equal(buf.data, "one");
    assert_int_equal(ec_x509_pem_write_file(key_path, "three", 5, 0600, true, &err), EC_OK);
    ec_buf_reset(&buf);
    assert_int_equal(ec_x509_pem_read_file(key_path, &buf, &err), EC_OK);
    assert_string_equal(buf.data, "three");
    assert_int_equal(stat(key_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(dir_count(dir), 2); /* no temp file left behind */

    /* a larger file reads back whole */
    size_t big_len = 100000;
    char *big = ec_xmalloc(big_len);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (char)('a' + i % 26);
    assert_int_equal(ec_x509_pem_write_file(cert_path, big, big_len, 0644, true, &err), EC_OK);
    ec_buf_reset(&buf);
    assert_int_equal(ec_x509_pem_read_file(cert_path, &buf, &err), EC_OK);
    assert_int_equal(buf.len, big_len);
    assert_memory_equal(buf.data, big, big_len);
    free(big);

    char missing[64];
    snprintf(missing, sizeof(missing), "%s/none", dir);
    ec_buf_reset(&buf);
    assert_int_equal(ec_x509_pem_read_file(missing, &buf, &err), EC_ENOTFOUND);
    snprintf(missing, sizeof(missing), "%s/no/such/dir", dir);
    assert_int_equal(ec_x509_pem_write_file(missing, "x", 1, 0600, false, &err), EC_ENOTFOUND);
    assert_int_equal(dir_count(dir), 2);
    ec_buf_release(&buf);

    umask(old_umask);
    unlink(key_path);
    unlink(cert_path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_role),          cmocka_unit_test(test_check_id),
        cmocka_unit_test(test_check_dns),           cmocka_unit_test(test_check_ip),
        cmocka_unit_test(test_parse_days),          cmocka_unit_test(test_spiffe_uri),
        cmocka_unit_test(test_ca_certificate),      cmocka_unit_test(test_leaf_verifies),
        cmocka_unit_test(test_leaf_other_ca_fails), cmocka_unit_test(test_leaf_rejects_bad_spec),
        cmocka_unit_test(test_pem_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
