/* A development certificate authority on OpenSSL 3: an EC P-256 CA and leaf certificates whose URI
 * SAN spiffe://edgecoder/<role>/<id> is a service's transport identity, the checks on what goes
 * into them, and PEM files written atomically with the right mode from the start. */
#ifndef EC_X509_H
#define EC_X509_H

#include "common/ec_buf.h"
#include "common/ec_status.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define EC_X509_SPIFFE_PREFIX "spiffe://edgecoder/"
#define EC_X509_ROLES_TEXT    "coordinator, control-plane, inference, portal, agent"
#define EC_X509_ID_MAX        64
#define EC_X509_DAYS_MAX      3650
#define EC_X509_TIME_LEN      20 /* "2035-01-02T03:04:05Z" */
/* The longest SPIFFE URI a valid role and id make, without the NUL. */
#define EC_X509_SPIFFE_MAX (sizeof(EC_X509_SPIFFE_PREFIX) - 1 + 13 + 1 + EC_X509_ID_MAX)
#define EC_X509_PEM_MAX    (1024 * 1024) /* cap on a PEM file read back */

/* --- Checks on what goes into a certificate ----------------------------------------------- */

/* Each returns EC_OK or EC_EINVAL with a message naming the value; NULL is EC_EINVAL too.
 * role: one of EC_X509_ROLES_TEXT. id: [A-Za-z0-9._-]{1,64}, but not "." or "..", which are not
 * SPIFFE path segments. dns: an RFC 1123 host name (labels of letters, digits and inner hyphens,
 * at most 63 characters each and 253 in all, no trailing dot, no wildcard), not an IP address.
 * ip: an IPv4 dotted quad or an IPv6 address (no zone). days: decimal 1..EC_X509_DAYS_MAX. */
enum ec_status ec_x509_check_role(const char *role, struct ec_err *err);
enum ec_status ec_x509_check_id(const char *id, struct ec_err *err);
enum ec_status ec_x509_check_dns(const char *name, struct ec_err *err);
enum ec_status ec_x509_check_ip(const char *addr, struct ec_err *err);
enum ec_status ec_x509_parse_days(const char *text, int *days, struct ec_err *err);

/* "spiffe://edgecoder/<role>/<id>" into out, snprintf-style (the length is returned). */
size_t ec_x509_spiffe_uri(char *out, size_t cap, const char *role, const char *id);

/* --- Certificate authority ---------------------------------------------------------------- */

/* A CA certificate and its private key. Immutable once made. Caller frees with ec_x509_ca_free. */
struct ec_x509_ca;

/* A new EC P-256 key and a self-signed certificate, CN "EdgeCoder CA", valid for days
 * (1..EC_X509_DAYS_MAX): basicConstraints critical CA:TRUE pathlen:0, keyUsage critical
 * keyCertSign cRLSign, subjectKeyIdentifier. */
enum ec_status ec_x509_ca_create(int days, struct ec_x509_ca **out, struct ec_err *err);
/* A CA from its certificate PEM and its unencrypted private key PEM. EC_EINVAL when either does
 * not parse, the certificate is not a CA, or the key is not the certificate's. */
enum ec_status ec_x509_ca_load(const char *cert_pem, size_t cert_len, const char *key_pem,
                               size_t key_len, struct ec_x509_ca **out, struct ec_err *err);
/* Appends the certificate PEM and the PKCS#8 private key PEM. key_pem is not wiped when released:
 * the caller wipes it with ec_crypto_wipe. */
enum ec_status ec_x509_ca_write_pem(const struct ec_x509_ca *ca, struct ec_buf *cert_pem,
                                    struct ec_buf *key_pem, struct ec_err *err);
/* The certificate's notAfter as EC_X509_TIME_LEN characters of UTC ISO 8601 and a NUL. */
void ec_x509_ca_not_after(const struct ec_x509_ca *ca, char out[EC_X509_TIME_LEN + 1]);
void ec_x509_ca_free(struct ec_x509_ca *ca);

/* What a leaf certificate says. dns and ips may be NULL when their counts are 0. */
struct ec_x509_leaf_spec {
    const char *role;
    const char *id;
    const char *const *dns;
    size_t dns_count;
    const char *const *ips;
    size_t ip_count;
    int days;
};

/* A new EC P-256 key and a certificate for it signed by ca: subject CN "<role>/<id>"; SAN of the
 * SPIFFE URI, then each DNS name and IP; basicConstraints critical CA:FALSE; keyUsage critical
 * digitalSignature keyAgreement; extendedKeyUsage serverAuth clientAuth; subject and authority
 * key identifiers; a random positive serial of up to 128 bits. Every field of spec is checked as
 * above (EC_EINVAL), and a leaf that would outlive the CA is refused (EC_EINVAL). Appends the
 * certificate PEM and the PKCS#8 key PEM (the caller wipes key_pem); not_after may be NULL. */
enum ec_status ec_x509_leaf_issue(const struct ec_x509_ca *ca, const struct ec_x509_leaf_spec *spec,
                                  struct ec_buf *cert_pem, struct ec_buf *key_pem,
                                  char not_after[EC_X509_TIME_LEN + 1], struct ec_err *err);

/* --- PEM files ---------------------------------------------------------------------------- */

/* Writes data to path through a temporary file in the same directory, created O_EXCL with mode
 * (0600 for keys) so the data is never readable more widely, fsynced, then put in place: renamed
 * over path when overwrite, else linked, so that an existing path is never replaced (EC_ECONFLICT)
 * even by a racing writer. The directory is fsynced after. */
enum ec_status ec_x509_pem_write_file(const char *path, const void *data, size_t n, mode_t mode,
                                      bool overwrite, struct ec_err *err);
/* Appends the file's contents to out; EC_ENOTFOUND when it does not exist, EC_ETOOBIG past
 * EC_X509_PEM_MAX bytes. */
enum ec_status ec_x509_pem_read_file(const char *path, struct ec_buf *out, struct ec_err *err);

#endif
