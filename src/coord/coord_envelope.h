/* Envelope encryption between coordinator and agent, byte-compatible with the original (§5.7):
 * ephemeral X25519 -> ECDH with the agent's registered key -> HKDF-SHA256(ikm = shared secret,
 * salt = subtaskId as UTF-8, info = "edgecoder-envelope", 32 bytes) -> AES-256-GCM with a random
 * 12-byte nonce. Ciphertext base64, nonce and tag hex, the ephemeral public key base64 raw. */
#ifndef COORD_ENVELOPE_H
#define COORD_ENVELOPE_H

#include "common/ec_arena.h"
#include "common/ec_crypto.h"
#include "common/ec_status.h"

#include <stddef.h>
#include <stdint.h>

#define COORD_ENVELOPE_KEY_LEN 32

struct coord_envelope {
    const char *ephemeral_public_key; /* base64 of 32 raw bytes */
    const char *encrypted_payload;    /* base64 of the ciphertext (tag not included) */
    const char *nonce;                /* hex, 12 bytes */
    const char *tag;                  /* hex, 16 bytes */
    /* The derived key: kept by the coordinator (with the lease) to open the agent's result. */
    uint8_t key[COORD_ENVELOPE_KEY_LEN];
};

/* agent_x25519_b64 is the agent's registered x25519PublicKey (base64 raw 32 bytes). Strings are
 * allocated in arena. EC_EINVAL for a malformed agent key. */
enum ec_status coord_envelope_seal(const char *agent_x25519_b64, const char *subtask_id,
                                   const void *plaintext, size_t len, struct ec_arena *arena,
                                   struct coord_envelope *out, struct ec_err *err);

/* Opens an agent's encrypted result with the key derived at seal time. The plaintext is
 * NUL-terminated in arena. A wrong key, nonce, tag or ciphertext is EC_EINVAL with code
 * "envelope_decrypt_failed" (the original answered 400 with that code). */
enum ec_status coord_envelope_open(const uint8_t key[COORD_ENVELOPE_KEY_LEN],
                                   const char *encrypted_payload_b64, const char *nonce_hex,
                                   const char *tag_hex, struct ec_arena *arena, char **plaintext,
                                   size_t *len, struct ec_err *err);

/* The agent's side (the agent runtime and the tests use it): derive the same key from the
 * agent's X25519 private key and the envelope's ephemeral public key, then open or seal. */
enum ec_status coord_envelope_agent_key(const struct ec_key *agent_x25519_private,
                                        const char *ephemeral_public_key_b64,
                                        const char *subtask_id, uint8_t key[COORD_ENVELOPE_KEY_LEN],
                                        struct ec_err *err);
/* Seals with a given key (the agent encrypting its result): fresh random nonce. */
enum ec_status coord_envelope_seal_with_key(const uint8_t key[COORD_ENVELOPE_KEY_LEN],
                                            const void *plaintext, size_t len,
                                            struct ec_arena *arena, const char **payload_b64,
                                            const char **nonce_hex, const char **tag_hex,
                                            struct ec_err *err);

#endif
