/* The development CA on OpenSSL 3, with no deprecated API: certificates are built field by field,
 * the SAN from GENERAL_NAMEs rather than a config string, so no input can smuggle in an extra
 * name. Every OpenSSL error is turned into an ec_err and taken off OpenSSL's queue. */
#define OPENSSL_API_COMPAT    30000
#define OPENSSL_NO_DEPRECATED 1

#include "common/ec_x509.h"
#include "common/ec_crypto.h"
#include "common/ec_mem.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CA_COMMON_NAME "EdgeCoder CA"
/* Certificates start this long before they are made, so that a peer whose clock is a little
 * behind does not refuse a certificate issued a moment ago. */
#define BACKDATE_SECONDS (5 * 60)
#define SERIAL_BYTES     16

struct ec_x509_ca {
    X509 *cert;
    EVP_PKEY *key;
};

static const char *const roles[] = { "coordinator", "control-plane", "inference", "portal",
                                     "agent" };

/* An error for what failed, with OpenSSL's reason. Call after ERR_set_mark. */
static enum ec_status ossl_fail(struct ec_err *err, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
    ec_err_set(err, EC_EINTERNAL, NULL, "%s: %s", what, reason != NULL ? reason : "openssl error");
    ERR_pop_to_mark();
    return EC_EINTERNAL;
}

/* --- Checks ------------------------------------------------------------------------------- */

enum ec_status ec_x509_check_role(const char *role, struct ec_err *err)
{
    if (role == NULL)
        return ec_err_set(err, EC_EINVAL, NULL, "role is missing");
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
        if (strcmp(role, roles[i]) == 0)
            return EC_OK;
    return ec_err_set(err, EC_EINVAL, NULL, "\"%.64s\" is not a role (%s)", role,
                      EC_X509_ROLES_TEXT);
}

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

enum ec_status ec_x509_check_id(const char *id, struct ec_err *err)
{
    if (id == NULL || id[0] == '\0')
        return ec_err_set(err, EC_EINVAL, NULL, "id is empty");
    size_t len = strlen(id);
    if (len > EC_X509_ID_MAX)
        return ec_err_set(err, EC_EINVAL, NULL, "id \"%.64s...\" is longer than %d characters", id,
                          EC_X509_ID_MAX);
    for (size_t i = 0; i < len; i++)
        if (!is_alnum(id[i]) && id[i] != '.' && id[i] != '_' && id[i] != '-')
            return ec_err_set(err, EC_EINVAL, NULL,
                              "id \"%s\" has a character other than A-Z a-z 0-9 . _ -", id);
    if (strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
        return ec_err_set(err, EC_EINVAL, NULL, "id \"%s\" is not a SPIFFE path segment", id);
    return EC_OK;
}

/* The 4 or 16 bytes of an IPv4 or IPv6 address; 0 when text is neither. */
static size_t ip_parse(const char *text, uint8_t out[16])
{
    if (inet_pton(AF_INET, text, out) == 1)
        return 4;
    if (inet_pton(AF_INET6, text, out) == 1)
        return 16;
    return 0;
}

enum ec_status ec_x509_check_ip(const char *addr, struct ec_err *err)
{
    uint8_t bytes[16];
    if (addr == NULL || ip_parse(addr, bytes) == 0)
        return ec_err_set(err, EC_EINVAL, NULL, "\"%.64s\" is not an IPv4 or IPv6 address",
                          addr != NULL ? addr : "");
    return EC_OK;
}

enum ec_status ec_x509_check_dns(const char *name, struct ec_err *err)
{
    uint8_t ip[16];
    if (name == NULL || name[0] == '\0')
        return ec_err_set(err, EC_EINVAL, NULL, "DNS name is empty");
    size_t len = strlen(name);
    if (len > 253)
        return ec_err_set(err, EC_EINVAL, NULL,
                          "DNS name \"%.64s...\" is longer than 253 characters", name);
    if (ip_parse(name, ip) != 0)
        return ec_err_set(err, EC_EINVAL, NULL, "\"%s\" is an IP address, not a DNS name", name);
    size_t label_start = 0;
    bool label_numeric = true;
    for (size_t i = 0; i <= len; i++) {
        char c = name[i];
        if (c == '.' || c == '\0') {
            size_t label_len = i - label_start;
            if (label_len == 0 || label_len > 63)
                return ec_err_set(err, EC_EINVAL, NULL,
                                  "DNS name \"%s\" has a label that is empty or longer than 63 "
                                  "characters",
                                  name);
            if (name[label_start] == '-' || name[i - 1] == '-')
                return ec_err_set(err, EC_EINVAL, NULL,
                                  "DNS name \"%s\" has a label that starts or ends with \"-\"",
                                  name);
            if (c == '\0' && label_numeric)
                return ec_err_set(err, EC_EINVAL, NULL,
                                  "DNS name \"%s\" ends in an all-numeric label", name);
            label_start = i + 1;
            label_numeric = true;
        } else if (is_alnum(c) || c == '-') {
            if (c < '0' || c > '9')
                label_numeric = false;
        } else {
            return ec_err_set(err, EC_EINVAL, NULL,
                              "DNS name \"%s\" has a character other than letters, digits, "
                              "\"-\" and \".\"",
                              name);
        }
    }
    return EC_OK;
}

enum ec_status ec_x509_parse_days(const char *text, int *days, struct ec_err *err)
{
    long value = 0;
    size_t len = text != NULL ? strlen(text) : 0;
    bool ok = len > 0 && len <= 5;
    for (size_t i = 0; ok && i < len; i++) {
        ok = text[i] >= '0' && text[i] <= '9';
        value = value * 10 + (text[i] - '0');
    }
    if (!ok || value < 1 || value > EC_X509_DAYS_MAX)
        return ec_err_set(err, EC_EINVAL, NULL, "\"%.32s\" is not a number of days in 1..%d",
                          text != NULL ? text : "", EC_X509_DAYS_MAX);
    *days = (int)value;
    return EC_OK;
}

size_t ec_x509_spiffe_uri(char *out, size_t cap, const char *role, const char *id)
{
    int n = snprintf(out, cap, "%s%s/%s", EC_X509_SPIFFE_PREFIX, role, id);
    EC_ASSERT(n >= 0);
    return (size_t)n;
}

/* --- Building certificates ---------------------------------------------------------------- */

static EVP_PKEY *p256_generate(void)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

static void time_format(const ASN1_TIME *t, char out[EC_X509_TIME_LEN + 1])
{
    struct tm tm;
    int ok = ASN1_TIME_to_tm(t, &tm);
    EC_ASSERT(ok == 1);
    size_t n = strftime(out, EC_X509_TIME_LEN + 1, "%Y-%m-%dT%H:%M:%SZ", &tm);
    EC_ASSERT(n == EC_X509_TIME_LEN);
}

/* A random positive serial: 16 bytes with the top bit clear, never zero (RFC 5280 4.1.2.2). */
static bool serial_set(X509 *cert)
{
    uint8_t bytes[SERIAL_BYTES];
    do {
        ec_random_bytes(bytes, sizeof(bytes));
        bytes[0] &= 0x7f;
    } while (bytes[0] == 0 && bytes[1] == 0); /* keeps the serial long, and so non-zero */
    BIGNUM *bn = BN_bin2bn(bytes, sizeof(bytes), NULL);
    ASN1_INTEGER *serial = bn != NULL ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    bool ok = serial != NULL && X509_set_serialNumber(cert, serial) == 1;
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    return ok;
}

/* The fields every certificate here has: v3, serial, subject CN, validity, public key. The
 * issuer name is the subject's when issuer is NULL (self-signed). */
static X509 *cert_new(const char *common_name, EVP_PKEY *key, const X509 *issuer,
                      const ASN1_TIME *not_after)
{
    X509 *cert = X509_new();
    X509_NAME *name = X509_NAME_new();
    bool ok =
        cert != NULL && name != NULL && X509_set_version(cert, X509_VERSION_3) == 1 &&
        serial_set(cert) &&
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)common_name,
                                   -1, -1, 0) == 1 &&
        X509_set_subject_name(cert, name) == 1 &&
        X509_set_issuer_name(cert, issuer != NULL ? X509_get_subject_name(issuer) : name) == 1 &&
        X509_gmtime_adj(X509_getm_notBefore(cert), -BACKDATE_SECONDS) != NULL &&
        X509_set1_notAfter(cert, not_after) == 1 && X509_set_pubkey(cert, key) == 1;
    X509_NAME_free(name);
    if (!ok) {
        X509_free(cert);
        return NULL;
    }
    return cert;
}

/* One extension in OpenSSL's config syntax ("critical,CA:TRUE"); the values are constants. */
static bool ext_add(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
    bool ok = ext != NULL && X509_add_ext(cert, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

static bool san_push(GENERAL_NAMES *names, int type, const char *value)
{
    GENERAL_NAME *gen = GENERAL_NAME_new();
    ASN1_STRING *str = type == GEN_IPADD ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();
    bool ok = gen != NULL && str != NULL;
    if (ok && type == GEN_IPADD) {
        uint8_t ip[16];
        size_t ip_len = ip_parse(value, ip);
        ok = ip_len != 0 && ASN1_OCTET_STRING_set(str, ip, (int)ip_len) == 1;
    } else if (ok) {
        ok = ASN1_STRING_set(str, value, -1) == 1;
    }
    if (!ok) {
        ASN1_STRING_free(str);
        GENERAL_NAME_free(gen);
        return false;
    }
    GENERAL_NAME_set0_value(gen, type, str);
    if (sk_GENERAL_NAME_push(names, gen) <= 0) {
        GENERAL_NAME_free(gen);
        return false;
    }
    return true;
}

static bool san_add(X509 *cert, const char *uri, const struct ec_x509_leaf_spec *spec)
{
    GENERAL_NAMES *names = sk_GENERAL_NAME_new_null();
    bool ok = names != NULL && san_push(names, GEN_URI, uri);
    for (size_t i = 0; ok && i < spec->dns_count; i++)
        ok = san_push(names, GEN_DNS, spec->dns[i]);
    for (size_t i = 0; ok && i < spec->ip_count; i++)
        ok = san_push(names, GEN_IPADD, spec->ips[i]);
    ok = ok && X509_add1_ext_i2d(cert, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT) == 1;
    GENERAL_NAMES_free(names);
    return ok;
}

/* PEM of a certificate and of a private key (PKCS#8, through a secure-memory BIO that is
 * cleared when freed). */
static enum ec_status pem_write(X509 *cert, EVP_PKEY *key, struct ec_buf *cert_pem,
                                struct ec_buf *key_pem, struct ec_err *err)
{
    ERR_set_mark();
    BIO *cert_bio = BIO_new(BIO_s_mem());
    BIO *key_bio = BIO_new(BIO_s_secmem());
    if (cert_bio == NULL || key_bio == NULL || PEM_write_bio_X509(cert_bio, cert) != 1 ||
        PEM_write_bio_PrivateKey(key_bio, key, NULL, NULL, 0, NULL, NULL) != 1) {
        BIO_free(cert_bio);
        BIO_free(key_bio);
        return ossl_fail(err, "cannot write PEM");
    }
    ERR_pop_to_mark();
    char *text = NULL;
    long cert_len = BIO_get_mem_data(cert_bio, &text);
    enum ec_status st = ec_buf_append(cert_pem, text, (size_t)cert_len);
    long key_len = BIO_get_mem_data(key_bio, &text);
    if (st == EC_OK)
        st = ec_buf_append(key_pem, text, (size_t)key_len);
    BIO_free(cert_bio);
    BIO_free(key_bio);
    if (st != EC_OK)
        return ec_err_set(err, st, NULL, "PEM does not fit the buffer");
    return EC_OK;
}

/* --- Certificate authority ---------------------------------------------------------------- */

enum ec_status ec_x509_ca_create(int days, struct ec_x509_ca **out, struct ec_err *err)
{
    *out = NULL;
    if (days < 1 || days > EC_X509_DAYS_MAX)
        return ec_err_set(err, EC_EINVAL, NULL, "%d is not a number of days in 1..%d", days,
                          EC_X509_DAYS_MAX);
    ERR_set_mark();
    EVP_PKEY *key = p256_generate();
    ASN1_TIME *not_after = X509_time_adj_ex(NULL, days, 0, NULL);
    X509 *cert =
        key != NULL && not_after != NULL ? cert_new(CA_COMMON_NAME, key, NULL, not_after) : NULL;
    bool ok = cert != NULL &&
              ext_add(cert, cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") &&
              ext_add(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign") &&
              ext_add(cert, cert, NID_subject_key_identifier, "hash") &&
              X509_sign(cert, key, EVP_sha256()) > 0;
    ASN1_TIME_free(not_after);
    if (!ok) {
        X509_free(cert);
        EVP_PKEY_free(key);
        return ossl_fail(err, "cannot make the CA certificate");
    }
    ERR_pop_to_mark();
    struct ec_x509_ca *ca = ec_xmalloc(sizeof(*ca));
    ca->cert = cert;
    ca->key = key;
    *out = ca;
    return EC_OK;
}

/* Refuses to decrypt: an encrypted key would make the default callback prompt on the terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return 0;
}

enum ec_status ec_x509_ca_load(const char *cert_pem, size_t cert_len, const char *key_pem,
                               size_t key_len, struct ec_x509_ca **out, struct ec_err *err)
{
    *out = NULL;
    if (cert_len > INT_MAX || key_len > INT_MAX)
        return ec_err_set(err, EC_EINVAL, NULL, "CA PEM is too long");
    ERR_set_mark();
    BIO *bio = BIO_new_mem_buf(cert_pem, (int)cert_len);
    X509 *cert = bio != NULL ? PEM_read_bio_X509(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    bio = BIO_new_mem_buf(key_pem, (int)key_len);
    EVP_PKEY *key = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    enum ec_status st = EC_OK;
    if (cert == NULL)
        st = ec_err_set(err, EC_EINVAL, NULL, "CA certificate is not a PEM certificate");
    else if (key == NULL)
        st = ec_err_set(err, EC_EINVAL, NULL, "CA key is not an unencrypted PEM private key");
    else if (X509_check_ca(cert) != 1)
        st = ec_err_set(err, EC_EINVAL, NULL, "CA certificate is not a CA (no CA:TRUE)");
    else if (!EVP_PKEY_is_a(key, "EC"))
        st = ec_err_set(err, EC_EINVAL, NULL, "CA key is %s, expected EC",
                        EVP_PKEY_get0_type_name(key) != NULL ? EVP_PKEY_get0_type_name(key)
                                                             : "of an unknown type");
    else if (X509_check_private_key(cert, key) != 1)
        st = ec_err_set(err, EC_EINVAL, NULL, "CA key does not match the CA certificate");
    ERR_pop_to_mark();
    if (st != EC_OK) {
        X509_free(cert);
        EVP_PKEY_free(key);
        return st;
    }
    struct ec_x509_ca *ca = ec_xmalloc(sizeof(*ca));
    ca->cert = cert;
    ca->key = key;
    *out = ca;
    return EC_OK;
}

enum ec_status ec_x509_ca_write_pem(const struct ec_x509_ca *ca, struct ec_buf *cert_pem,
                                    struct ec_buf *key_pem, struct ec_err *err)
{
    return pem_write(ca->cert, ca->key, cert_pem, key_pem, err);
}

void ec_x509_ca_not_after(const struct ec_x509_ca *ca, char out[EC_X509_TIME_LEN + 1])
{
    time_format(X509_get0_notAfter(ca->cert), out);
}

void ec_x509_ca_free(struct ec_x509_ca *ca)
{
    if (ca == NULL)
        return;
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    free(ca);
}

/* --- Leaves ------------------------------------------------------------------------------- */

static enum ec_status leaf_spec_check(const struct ec_x509_leaf_spec *spec, struct ec_err *err)
{
    enum ec_status st = ec_x509_check_role(spec->role, err);
    if (st == EC_OK)
        st = ec_x509_check_id(spec->id, err);
    for (size_t i = 0; st == EC_OK && i < spec->dns_count; i++)
        st = ec_x509_check_dns(spec->dns[i], err);
    for (size_t i = 0; st == EC_OK && i < spec->ip_count; i++)
        st = ec_x509_check_ip(spec->ips[i], err);
    if (st == EC_OK && (spec->days < 1 || spec->days > EC_X509_DAYS_MAX))
        st = ec_err_set(err, EC_EINVAL, NULL, "%d is not a number of days in 1..%d", spec->days,
                        EC_X509_DAYS_MAX);
    return st;
}

enum ec_status ec_x509_leaf_issue(const struct ec_x509_ca *ca, const struct ec_x509_leaf_spec *spec,
                                  struct ec_buf *cert_pem, struct ec_buf *key_pem,
                                  char not_after[EC_X509_TIME_LEN + 1], struct ec_err *err)
{
    enum ec_status st = leaf_spec_check(spec, err);
    if (st != EC_OK)
        return st;
    ERR_set_mark();
    ASN1_TIME *leaf_end = X509_time_adj_ex(NULL, spec->days, 0, NULL);
    if (leaf_end == NULL)
        return ossl_fail(err, "cannot compute the leaf's expiry");
    if (ASN1_TIME_compare(leaf_end, X509_get0_notAfter(ca->cert)) > 0) {
        char ca_end[EC_X509_TIME_LEN + 1], want_end[EC_X509_TIME_LEN + 1];
        time_format(X509_get0_notAfter(ca->cert), ca_end);
        time_format(leaf_end, want_end);
        ASN1_TIME_free(leaf_end);
        ERR_pop_to_mark();
        return ec_err_set(err, EC_EINVAL, NULL,
                          "%d days would end at %s, after the CA expires at %s", spec->days,
                          want_end, ca_end);
    }

    char uri[EC_X509_SPIFFE_MAX + 1];
    char common_name[EC_X509_SPIFFE_MAX + 1];
    ec_x509_spiffe_uri(uri, sizeof(uri), spec->role, spec->id);
    snprintf(common_name, sizeof(common_name), "%s/%s", spec->role, spec->id);

    EVP_PKEY *key = p256_generate();
    X509 *cert = key != NULL ? cert_new(common_name, key, ca->cert, leaf_end) : NULL;
    ASN1_TIME_free(leaf_end);
    bool ok = cert != NULL && ext_add(cert, ca->cert, NID_basic_constraints, "critical,CA:FALSE") &&
              ext_add(cert, ca->cert, NID_key_usage, "critical,digitalSignature,keyAgreement") &&
              ext_add(cert, ca->cert, NID_ext_key_usage, "serverAuth,clientAuth") &&
              ext_add(cert, ca->cert, NID_subject_key_identifier, "hash") &&
              ext_add(cert, ca->cert, NID_authority_key_identifier, "keyid:always") &&
              san_add(cert, uri, spec) && X509_sign(cert, ca->key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(cert);
        EVP_PKEY_free(key);
        return ossl_fail(err, "cannot make the leaf certificate");
    }
    ERR_pop_to_mark();
    if (not_after != NULL)
        time_format(X509_get0_notAfter(cert), not_after);
    st = pem_write(cert, key, cert_pem, key_pem, err);
    X509_free(cert);
    EVP_PKEY_free(key);
    return st;
}

/* --- PEM files ---------------------------------------------------------------------------- */

static enum ec_status errno_fail(struct ec_err *err, const char *what, const char *path)
{
    int e = errno;
    enum ec_status st = e == ENOENT ? EC_ENOTFOUND : e == EEXIST ? EC_ECONFLICT : EC_EINTERNAL;
    return ec_err_set(err, st, NULL, "cannot %s \"%s\": %s", what, path, strerror(e));
}

static bool write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Makes a rename or link in the directory of path durable. */
static void dir_sync(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

enum ec_status ec_x509_pem_write_file(const char *path, const void *data, size_t n, mode_t mode,
                                      bool overwrite, struct ec_err *err)
{
    char token[16];
    char tmp[PATH_MAX];
    ec_random_token_buf(token, sizeof(token), 9);
    int len = snprintf(tmp, sizeof(tmp), "%s.tmp-%s", path, token);
    if (len < 0 || (size_t)len >= sizeof(tmp))
        return ec_err_set(err, EC_EINVAL, NULL, "path \"%.64s...\" is too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0)
        return errno_fail(err, "create", path);
    if (!write_all(fd, data, n) || fsync(fd) != 0) {
        enum ec_status st = errno_fail(err, "write", path);
        close(fd);
        unlink(tmp);
        return st;
    }
    if (close(fd) != 0) {
        enum ec_status st = errno_fail(err, "write", path);
        unlink(tmp);
        return st;
    }
    if (overwrite ? rename(tmp, path) != 0 : link(tmp, path) != 0) {
        enum ec_status st = errno == EEXIST
                                ? ec_err_set(err, EC_ECONFLICT, NULL, "\"%s\" already exists", path)
                                : errno_fail(err, "create", path);
        unlink(tmp);
        return st;
    }
    if (!overwrite)
        unlink(tmp);
    dir_sync(path);
    return EC_OK;
}

enum ec_status ec_x509_pem_read_file(const char *path, struct ec_buf *out, struct ec_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno_fail(err, "open", path);
    enum ec_status st = EC_OK;
    size_t total = 0;
    for (;;) {
        if (ec_buf_reserve(out, 4096) != EC_OK) {
            st = ec_err_set(err, EC_ETOOBIG, NULL, "\"%s\" does not fit the buffer", path);
            break;
        }
        ssize_t r = read(fd, out->data + out->len, out->cap - out->len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            st = errno_fail(err, "read", path);
            break;
        }
        if (r == 0)
            break;
        total += (size_t)r;
        if (total > EC_X509_PEM_MAX) {
            st = ec_err_set(err, EC_ETOOBIG, NULL, "\"%s\" is longer than %d bytes", path,
                            EC_X509_PEM_MAX);
            break;
        }
        out->len += (size_t)r;
        out->data[out->len] = '\0';
    }
    close(fd);
    return st;
}
