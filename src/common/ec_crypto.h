/* Every cryptographic primitive the program uses, on OpenSSL 3 EVP only: Ed25519 and X25519 keys,
 * SHA-256, HMAC, HKDF, scrypt, AES-256-GCM, base64/base64url/hex, the CSPRNG and constant-time
 * comparison. Nothing else in the tree includes OpenSSL's crypto headers for these. */
#ifndef EC_CRYPTO_H
#define EC_CRYPTO_H

#include "common/ec_arena.h"
#include "common/ec_buf.h"
#include "common/ec_status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EC_KEY_RAW_LEN       32 /* raw Ed25519 / X25519 public key, private seed or scalar */
#define EC_ED25519_SIG_LEN   64
#define EC_X25519_SECRET_LEN 32
#define EC_SHA256_LEN        32
#define EC_HMAC_SHA256_LEN   32
#define EC_HKDF_SHA256_MAX   (255 * 32) /* RFC 5869: L <= 255 * HashLen */
#define EC_AES256GCM_KEY_LEN 32
#define EC_AES256GCM_IV_LEN  12
#define EC_AES256GCM_TAG_LEN 16

/* Text lengths, without the NUL, for n input bytes; usable for array sizes. */
#define EC_B64_ENCODED_LEN(n)    (((n) + 2) / 3 * 4)
#define EC_B64URL_ENCODED_LEN(n) (((n)*4 + 2) / 3) /* unpadded */
#define EC_HEX_ENCODED_LEN(n)    ((n)*2)
/* An upper bound on the bytes that len characters of base64 or base64url decode to. */
#define EC_B64_DECODED_MAX(len) ((len) / 4 * 3 + 2)

/* --- Keys --------------------------------------------------------------------------------- */

enum ec_key_alg {
    EC_KEY_ED25519 = 1, /* signatures */
    EC_KEY_X25519,      /* key agreement */
};

/* An Ed25519 or X25519 key, public only or a key pair. Immutable once made, so it may be shared
 * between threads. Caller frees with ec_key_free. */
struct ec_key;

enum ec_status ec_key_generate(enum ec_key_alg alg, struct ec_key **out, struct ec_err *err);
/* PKCS#8 "PRIVATE KEY" PEM (unencrypted; an encrypted one is refused, never prompted for) and
 * SubjectPublicKeyInfo "PUBLIC KEY" PEM. A key of another algorithm than alg is EC_EINVAL, so a
 * configured X25519 key can never be used to sign, nor an RSA key slipped in. */
enum ec_status ec_key_load_private_pem(enum ec_key_alg alg, const char *pem, size_t len,
                                       struct ec_key **out, struct ec_err *err);
enum ec_status ec_key_load_public_pem(enum ec_key_alg alg, const char *pem, size_t len,
                                      struct ec_key **out, struct ec_err *err);
/* Raw keys: the 32-byte Ed25519 seed (RFC 8032) or X25519 scalar (RFC 7748), and the 32-byte
 * public key. len must be EC_KEY_RAW_LEN. */
enum ec_status ec_key_import_raw_private(enum ec_key_alg alg, const void *raw, size_t len,
                                         struct ec_key **out, struct ec_err *err);
enum ec_status ec_key_import_raw_public(enum ec_key_alg alg, const void *raw, size_t len,
                                        struct ec_key **out, struct ec_err *err);
void ec_key_export_raw_public(const struct ec_key *key, uint8_t out[EC_KEY_RAW_LEN]);
/* Append PEM text to out. The private PEM needs a key pair; the public PEM works for either.
 * out is not wiped when released: callers holding a private PEM wipe it with ec_crypto_wipe. */
enum ec_status ec_key_write_private_pem(const struct ec_key *key, struct ec_buf *out,
                                        struct ec_err *err);
enum ec_status ec_key_write_public_pem(const struct ec_key *key, struct ec_buf *out,
                                       struct ec_err *err);
enum ec_key_alg ec_key_get_alg(const struct ec_key *key);
bool ec_key_has_private(const struct ec_key *key);
void ec_key_free(struct ec_key *key);

/* Ed25519 (pure, no context). Signing needs a key pair. Verify returns EC_OK when the signature
 * is good and EC_EUNAUTH for any bad signature, a wrong length included; EC_EINVAL only for a
 * key that is not Ed25519. */
enum ec_status ec_key_sign(const struct ec_key *key, const void *msg, size_t n,
                           uint8_t sig[EC_ED25519_SIG_LEN], struct ec_err *err);
/* Validators for a config table (ec_cfg_var.validate): an Ed25519 private key as unencrypted
 * PKCS#8 PEM text, a public key as SPKI PEM text. The message never quotes the value. */
enum ec_status ec_key_validate_ed25519_private_pem(const char *pem, struct ec_err *err);
enum ec_status ec_key_validate_ed25519_public_pem(const char *pem, struct ec_err *err);

enum ec_status ec_key_verify(const struct ec_key *key, const void *msg, size_t n, const void *sig,
                             size_t sig_len, struct ec_err *err);
/* X25519: key must hold a private key, peer a public one. A peer that yields the all-zero secret
 * (a small-order point) is EC_EINVAL. Feed the secret through HKDF, never use it as a key. */
enum ec_status ec_key_derive(const struct ec_key *key, const struct ec_key *peer,
                             uint8_t secret[EC_X25519_SECRET_LEN], struct ec_err *err);

/* --- Hashes, MACs, KDFs ------------------------------------------------------------------- */

/* These cannot fail on valid arguments; an OpenSSL failure here is a broken build and aborts. */
void ec_sha256(const void *data, size_t n, uint8_t out[EC_SHA256_LEN]);
void ec_hmac_sha256(const void *key, size_t key_len, const void *data, size_t n,
                    uint8_t out[EC_HMAC_SHA256_LEN]);

/* Incremental SHA-256. Final writes the digest and starts the context over. One thread at a time.
 */
struct ec_sha256_ctx;
struct ec_sha256_ctx *ec_sha256_new(void);
void ec_sha256_update(struct ec_sha256_ctx *ctx, const void *data, size_t n);
void ec_sha256_final(struct ec_sha256_ctx *ctx, uint8_t out[EC_SHA256_LEN]);
void ec_sha256_free(struct ec_sha256_ctx *ctx);

/* RFC 5869 extract-then-expand. salt and info may be empty (NULL, 0); an empty salt is HashLen
 * zero bytes, as the RFC says. okm_len is 1..EC_HKDF_SHA256_MAX, else EC_EINVAL. */
enum ec_status ec_hkdf_sha256(const void *salt, size_t salt_len, const void *ikm, size_t ikm_len,
                              const void *info, size_t info_len, void *okm, size_t okm_len,
                              struct ec_err *err);

/* RFC 7914. n is a power of two > 1; r, p > 0. maxmem caps the memory scrypt may use (about
 * 128 * n * r + 128 * r * p bytes); 0 keeps OpenSSL's default of 1025 MiB. Parameters that are
 * invalid or need more than maxmem are EC_EINVAL. */
enum ec_status ec_scrypt(const void *pass, size_t pass_len, const void *salt, size_t salt_len,
                         uint64_t n, uint32_t r, uint32_t p, uint64_t maxmem, void *out,
                         size_t out_len, struct ec_err *err);

/* --- AES-256-GCM -------------------------------------------------------------------------- */

/* The ciphertext is exactly n bytes; out may equal in. aad may be NULL when aad_len is 0. An IV
 * must never repeat under one key: use a random one (ec_random_bytes) or a counter.
 * Open returns EC_EUNAUTH when the tag does not match (wrong key, IV, aad, or tampered
 * ciphertext or tag), and then zeroes out so that unauthenticated plaintext is never seen. */
enum ec_status ec_aes256gcm_seal(const uint8_t key[EC_AES256GCM_KEY_LEN],
                                 const uint8_t iv[EC_AES256GCM_IV_LEN], const void *aad,
                                 size_t aad_len, const void *in, size_t n, void *out,
                                 uint8_t tag[EC_AES256GCM_TAG_LEN], struct ec_err *err);
enum ec_status ec_aes256gcm_open(const uint8_t key[EC_AES256GCM_KEY_LEN],
                                 const uint8_t iv[EC_AES256GCM_IV_LEN], const void *aad,
                                 size_t aad_len, const void *in, size_t n,
                                 const uint8_t tag[EC_AES256GCM_TAG_LEN], void *out,
                                 struct ec_err *err);

/* --- Encodings ---------------------------------------------------------------------------- */

/* Encoders return the text length without the NUL, like snprintf. They write the text and a NUL
 * only when out_cap exceeds that length; otherwise out (if out_cap > 0) is left an empty string.
 * Base64 is the standard alphabet with padding, base64url the URL-safe one without padding
 * (RFC 4648 sections 4 and 5); hex is lowercase. */
size_t ec_b64_encode(char *out, size_t out_cap, const void *in, size_t n);
size_t ec_b64url_encode(char *out, size_t out_cap, const void *in, size_t n);
size_t ec_hex_encode(char *out, size_t out_cap, const void *in, size_t n);
/* NUL-terminated text allocated in a. */
char *ec_b64_encode_arena(struct ec_arena *a, const void *in, size_t n);
char *ec_b64url_encode_arena(struct ec_arena *a, const void *in, size_t n);
char *ec_hex_encode_arena(struct ec_arena *a, const void *in, size_t n);

/* Decoders read exactly n characters of in (no NUL needed) and are strict, so that a value has
 * one encoding: no whitespace, no characters of the other base64 alphabet, padding only at the
 * end and, for base64, required; base64url takes it or not, but only complete. Non-zero unused
 * bits in the last character are refused too. Hex takes either case. Bad input is EC_EINVAL, as
 * is output longer than out_cap; *out_len is the decoded length. Characters are mapped without
 * table lookups or data-dependent branches, since what is decoded is often a key or token. */
enum ec_status ec_b64_decode(void *out, size_t out_cap, size_t *out_len, const char *in, size_t n,
                             struct ec_err *err);
enum ec_status ec_b64url_decode(void *out, size_t out_cap, size_t *out_len, const char *in,
                                size_t n, struct ec_err *err);
enum ec_status ec_hex_decode(void *out, size_t out_cap, size_t *out_len, const char *in, size_t n,
                             struct ec_err *err);
/* The bytes are allocated in a, with a NUL after them for decoded text's sake. */
enum ec_status ec_b64_decode_arena(struct ec_arena *a, const char *in, size_t n, uint8_t **out,
                                   size_t *out_len, struct ec_err *err);
enum ec_status ec_b64url_decode_arena(struct ec_arena *a, const char *in, size_t n, uint8_t **out,
                                      size_t *out_len, struct ec_err *err);
enum ec_status ec_hex_decode_arena(struct ec_arena *a, const char *in, size_t n, uint8_t **out,
                                   size_t *out_len, struct ec_err *err);

/* --- Randomness and comparison ------------------------------------------------------------ */

/* From OpenSSL's CSPRNG. There is no safe fallback if it fails, so failure aborts. */
void ec_random_bytes(void *out, size_t n);
/* nbytes (at most 256) random bytes as base64url text (EC_B64URL_ENCODED_LEN(nbytes) characters),
 * for session ids, CSRF tokens and the like; 32 bytes is the usual strength. The _buf form asserts
 * that out_cap has room for the text and its NUL, and returns the text length. */
char *ec_random_token(struct ec_arena *a, size_t nbytes);
size_t ec_random_token_buf(char *out, size_t out_cap, size_t nbytes);

/* Time depends only on the lengths, never on the contents, so comparing a secret (MAC, token,
 * password hash) against a guess leaks nothing but its length. Two empty inputs are equal. */
bool ec_ct_equal(const void *a, size_t alen, const void *b, size_t blen);
/* The same for NUL-terminated strings. NULL equals nothing, not even NULL, so that a missing
 * secret never matches a missing guess. */
bool ec_ct_streq(const char *a, const char *b);

/* Zeroes memory in a way the compiler cannot drop, for keys and passwords that go out of scope. */
void ec_crypto_wipe(void *p, size_t n);

#endif
