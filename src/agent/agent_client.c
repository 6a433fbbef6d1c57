/* Signed requests to a coordinator: the x-mesh-token and the five signature headers
 * (x-agent-id, x-timestamp-ms, x-nonce, x-body-sha256, x-signature) over the canonical string
 * "<timestampMs>\n<nonce>\nPOST\n<path>\n<bodySha256>" (coord_auth_canonical), on the shared
 * keep-alive HTTP client. */
#include "agent/agent_int.h"
#include "common/ec_mem.h"
#include "coord/coord_auth.h"

#include <stdio.h>
#include <string.h>

enum ec_status agent_post(struct agent *a, const char *base_url, const char *path, const char *body,
                          size_t len, bool sign, struct ec_http_response *resp, struct ec_err *err)
{
    char url[AGENT_URL_MAX + 64];
    if (snprintf(url, sizeof(url), "%s%s", base_url, path) >= (int)sizeof(url))
        return ec_err_set(err, EC_EINVAL, NULL, "the coordinator URL is too long");

    struct ec_http_header headers[7];
    size_t nh = 0;
    char mesh[512] = "";
    pthread_mutex_lock(&a->lock);
    if (a->mesh_token != NULL)
        snprintf(mesh, sizeof(mesh), "%s", a->mesh_token);
    pthread_mutex_unlock(&a->lock);
    if (mesh[0] != '\0')
        headers[nh++] = (struct ec_http_header){ "x-mesh-token", mesh };

    char sha_hex[EC_HEX_ENCODED_LEN(EC_SHA256_LEN) + 1], nonce[33], ts[24], canonical[1024];
    char sig_b64[EC_B64_ENCODED_LEN(EC_ED25519_SIG_LEN) + 1];
    if (sign) {
        uint8_t digest[EC_SHA256_LEN], rnd[16], sig[EC_ED25519_SIG_LEN];
        ec_sha256(body, len, digest);
        ec_hex_encode(sha_hex, sizeof(sha_hex), digest, sizeof(digest));
        ec_random_bytes(rnd, sizeof(rnd));
        ec_hex_encode(nonce, sizeof(nonce), rnd, sizeof(rnd));
        snprintf(ts, sizeof(ts), "%lld", (long long)ec_now_ms());
        size_t n =
            coord_auth_canonical(canonical, sizeof(canonical), ts, nonce, "POST", path, sha_hex);
        if (n == 0)
            return ec_err_set(err, EC_EINVAL, NULL, "the request path is too long to sign");
        enum ec_status st = ec_key_sign(a->id.sign, canonical, n, sig, err);
        if (st != EC_OK)
            return st;
        ec_b64_encode(sig_b64, sizeof(sig_b64), sig, sizeof(sig));
        headers[nh++] = (struct ec_http_header){ "x-agent-id", a->agent_id };
        headers[nh++] = (struct ec_http_header){ "x-timestamp-ms", ts };
        headers[nh++] = (struct ec_http_header){ "x-nonce", nonce };
        headers[nh++] = (struct ec_http_header){ "x-body-sha256", sha_hex };
        headers[nh++] = (struct ec_http_header){ "x-signature", sig_b64 };
    }
    struct ec_http_request req = {
        .method = EC_HTTP_POST,
        .url = url,
        .headers = headers,
        .header_count = nh,
        .body = body,
        .body_len = len,
        .content_type = "application/json",
        .connect_timeout_ms = a->cfg->http_timeout_ms < 5000 ? a->cfg->http_timeout_ms : 5000,
        .timeout_ms = a->cfg->http_timeout_ms,
        .first_byte_timeout_ms = a->cfg->http_timeout_ms,
        .idle_timeout_ms = a->cfg->http_timeout_ms,
        .max_response_bytes = 4u << 20,
    };
    enum ec_status st = ec_http_json(a->http, &req, NULL, resp, err);
    ec_crypto_wipe(mesh, sizeof(mesh));
    if (st == EC_EUPSTREAM && resp->status != 0)
        return EC_OK; /* an answer that is not JSON: the status still speaks */
    return st;
}

static const char *field(const struct ec_http_response *resp, const char *name)
{
    const char *s = json_string_value(json_object_get(resp->json, name));
    return s != NULL ? s : "";
}

const char *agent_resp_error(const struct ec_http_response *resp)
{
    return field(resp, "error");
}

const char *agent_resp_reason(const struct ec_http_response *resp)
{
    return field(resp, "reason");
}
