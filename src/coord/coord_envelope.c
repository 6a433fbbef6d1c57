/* Envelope encryption of tasks and results, byte-compatible with the original's Node crypto:
 * X25519 -> HKDF-SHA256(salt = subtaskId, info = "edgecoder-envelope") -> AES-256-GCM, the
 * ciphertext in base64 without the tag, the 12-byte nonce and the 16-byte tag in lowercase hex. */
#include "coord/coord_envelope.h"

#include "common/ec_mem.h"

#include <string.h>

#define ENVELOPE_INFO   "edgecoder-envelope"
#define SUBTASK_ID_MAX  256
#define PLAINTEXT_MAX   ((size_t)16 << 20) /* tasks and results; the edge's body limit is lower */
#define PAYLOAD_B64_MAX EC_B64_ENCODED_LEN(PLAINTEXT_MAX)
#define KEY_B64_LEN     EC_B64_ENCODED_LEN(EC_KEY_RAW_LEN)
#define NONCE_HEX_LEN   EC_HEX_ENCODED_LEN(EC_AES256GCM_IV_LEN)
#define TAG_HEX_LEN     EC_HEX_ENCODED_LEN(EC_AES256GCM_TAG_LEN)
#define DECRYPT_FAILED  "envelope_decrypt_failed"

_Static_assert(COORD_ENVELOPE_KEY_LEN == EC_AES256GCM_KEY_LEN, "envelope key is an AES-256 key");

/* A raw 32-byte X25519 public key in standard padded base64, as the original registers it. */
static enum ec_status import_public_b64(const char *b64, const char *what, struct ec_key **out,
                                        struct ec_err *err)
{
    if (b64 == NULL)
        return ec_err_set(err, EC_EINVAL, NULL, "%s is missing", what);
    uint8_t raw[EC_KEY_RAW_LEN + 2];
    size_t len = 0;
    if (strnlen(b64, KEY_B64_LEN + 1) != KEY_B64_LEN ||
        ec_b64_decode(raw, sizeof(raw), &len, b64, KEY_B64_LEN, NULL) != EC_OK ||
        len != EC_KEY_RAW_LEN)
        return ec_err_set(err, EC_EINVAL, NULL, "%s is not base64 of a 32-byte X25519 key", what);
    return ec_key_import_raw_public(EC_KEY_X25519, raw, len, out, err);
}

static enum ec_status check_subtask_id(const char *subtask_id, struct ec_err *err)
{
    size_t n = subtask_id ? strnlen(subtask_id, SUBTASK_ID_MAX + 1) : 0;
    if (n == 0 || n > SUBTASK_ID_MAX)
        return ec_err_set(err, EC_EINVAL, NULL, "subtask id must have 1 to %d bytes",
                          SUBTASK_ID_MAX);
    return EC_OK;
}

/* ECDH, then HKDF-SHA256 with the subtask id (UTF-8 bytes as given) as the salt. */
static enum ec_status derive_key(const struct ec_key *priv, const struct ec_key *peer,
                                 const char *subtask_id, uint8_t key[COORD_ENVELOPE_KEY_LEN],
                                 struct ec_err *err)
{
    uint8_t shared[EC_X25519_SECRET_LEN];
    enum ec_status st = ec_key_derive(priv, peer, shared, err);
    if (st == EC_OK)
        st = ec_hkdf_sha256(subtask_id, strlen(subtask_id), shared, sizeof(shared), ENVELOPE_INFO,
                            strlen(ENVELOPE_INFO), key, COORD_ENVELOPE_KEY_LEN, err);
    ec_crypto_wipe(shared, sizeof(shared));
    if (st != EC_OK)
        ec_crypto_wipe(key, COORD_ENVELOPE_KEY_LEN);
    return st;
}

enum ec_status coord_envelope_seal_with_key(const uint8_t key[COORD_ENVELOPE_KEY_LEN],
                                            const void *plaintext, size_t len,
                                            struct ec_arena *arena, const char **payload_b64,
                                            const char **nonce_hex, const char **tag_hex,
                                            struct ec_err *err)
{
    if (len > PLAINTEXT_MAX)
        return ec_err_set(err, EC_ETOOBIG, NULL, "envelope plaintext of %zu bytes is over %zu", len,
                          PLAINTEXT_MAX);
    if (plaintext == NULL && len > 0)
        return ec_err_set(err, EC_EINVAL, NULL, "envelope plaintext is missing");
    uint8_t iv[EC_AES256GCM_IV_LEN], tag[EC_AES256GCM_TAG_LEN];
    ec_random_bytes(iv, sizeof(iv));
    uint8_t *ct = ec_arena_alloc(arena, len > 0 ? len : 1);
    enum ec_status st = ec_aes256gcm_seal(key, iv, NULL, 0, plaintext, len, ct, tag, err);
    if (st != EC_OK)
        return st;
    *payload_b64 = ec_b64_encode_arena(arena, ct, len);
    *nonce_hex = ec_hex_encode_arena(arena, iv, sizeof(iv));
    *tag_hex = ec_hex_encode_arena(arena, tag, sizeof(tag));
    return EC_OK;
}

enum ec_status coord_envelope_seal(const char *agent_x25519_b64, const char *subtask_id,
                                   const void *plaintext, size_t len, struct ec_arena *arena,
                                   struct coord_envelope *out, struct ec_err *err)
{
    memset(out, 0, sizeof(*out));
    struct ec_key *agent = NULL, *ephemeral = NULL;
    enum ec_status st = check_subtask_id(subtask_id, err);
    if (st == EC_OK)
        st = import_public_b64(agent_x25519_b64, "agent x25519PublicKey", &agent, err);
    if (st == EC_OK)
        st = ec_key_generate(EC_KEY_X25519, &ephemeral, err);
    if (st == EC_OK)
        st = derive_key(ephemeral, agent, subtask_id, out->key, err);
    if (st == EC_OK)
        st = coord_envelope_seal_with_key(out->key, plaintext, len, arena, &out->encrypted_payload,
                                          &out->nonce, &out->tag, err);
    if (st == EC_OK) {
        uint8_t raw[EC_KEY_RAW_LEN];
        ec_key_export_raw_public(ephemeral, raw);
        out->ephemeral_public_key = ec_b64_encode_arena(arena, raw, sizeof(raw));
    } else {
        ec_crypto_wipe(out->key, sizeof(out->key));
    }
    ec_key_free(agent);
    ec_key_free(ephemeral); /* the ephemeral private key never outlives the seal */
    return st;
}

/* Exactly n hex characters decoding to n / 2 bytes. */
static bool decode_hex_exact(const char *hex, size_t n, uint8_t *out)
{
    size_t len = 0;
    return hex != NULL && strnlen(hex, n + 1) == n &&
           ec_hex_decode(out, n / 2, &len, hex, n, NULL) == EC_OK && len == n / 2;
}

enum ec_status coord_envelope_open(const uint8_t key[COORD_ENVELOPE_KEY_LEN],
                                   const char *encrypted_payload_b64, const char *nonce_hex,
                                   const char *tag_hex, struct ec_arena *arena, char **plaintext,
                                   size_t *len, struct ec_err *err)
{
    *plaintext = NULL;
    *len = 0;
    uint8_t iv[EC_AES256GCM_IV_LEN], tag[EC_AES256GCM_TAG_LEN];
    if (!decode_hex_exact(nonce_hex, NONCE_HEX_LEN, iv))
        return ec_err_set(err, EC_EINVAL, DECRYPT_FAILED, "envelope nonce is not %d hex digits",
                          NONCE_HEX_LEN);
    if (!decode_hex_exact(tag_hex, TAG_HEX_LEN, tag))
        return ec_err_set(err, EC_EINVAL, DECRYPT_FAILED, "envelope tag is not %d hex digits",
                          TAG_HEX_LEN);
    size_t b64_len = encrypted_payload_b64 ? strnlen(encrypted_payload_b64, PAYLOAD_B64_MAX + 1)
                                           : PAYLOAD_B64_MAX + 1;
    if (b64_len > PAYLOAD_B64_MAX)
        return ec_err_set(err, EC_EINVAL, DECRYPT_FAILED,
                          "encrypted payload is missing or longer than %zu characters",
                          (size_t)PAYLOAD_B64_MAX);
    uint8_t *ct = NULL;
    size_t ct_len = 0;
    if (ec_b64_decode_arena(arena, encrypted_payload_b64, b64_len, &ct, &ct_len, NULL) != EC_OK)
        return ec_err_set(err, EC_EINVAL, DECRYPT_FAILED, "encrypted payload is not base64");
    char *pt = ec_arena_alloc(arena, ct_len + 1);
    if (ec_aes256gcm_open(key, iv, NULL, 0, ct, ct_len, tag, pt, NULL) != EC_OK)
        return ec_err_set(err, EC_EINVAL, DECRYPT_FAILED,
                          "envelope does not authenticate under the subtask's key");
    pt[ct_len] = '\0';
    *plaintext = pt;
    *len = ct_len;
    return EC_OK;
}

enum ec_status coord_envelope_agent_key(const struct ec_key *agent_x25519_private,
                                        const char *ephemeral_public_key_b64,
                                        const char *subtask_id, uint8_t key[COORD_ENVELOPE_KEY_LEN],
                                        struct ec_err *err)
{
    memset(key, 0, COORD_ENVELOPE_KEY_LEN);
    if (agent_x25519_private == NULL)
        return ec_err_set(err, EC_EINVAL, NULL, "agent X25519 private key is missing");
    enum ec_status st = check_subtask_id(subtask_id, err);
    struct ec_key *ephemeral = NULL;
    if (st == EC_OK)
        st = import_public_b64(ephemeral_public_key_b64, "envelope ephemeralPublicKey", &ephemeral,
                               err);
    if (st == EC_OK)
        st = derive_key(agent_x25519_private, ephemeral, subtask_id, key, err);
    ec_key_free(ephemeral);
    return st;
}
