/* The mesh's configuration: the seed's URL variables (PORTAL_SERVICE_URL, INFERENCE_URL, ...) read
 * as gRPC targets, and the checks of the TLS identity variables every gRPC service has. */
#include "common/ec_config.h"
#include "common/ec_mem.h"
#include "mesh/rpc.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum ec_status rpc_target_from_url(const char *url, int default_port, char **target,
                                   struct ec_err *err)
{
    *target = NULL;
    if (url == NULL)
        return ec_err_set(err, EC_EINVAL, NULL, "no URL given");
    bool https;
    const char *rest;
    if (strncasecmp(url, "grpcs://", 8) == 0) {
        https = false;
        rest = url + 8;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        https = true;
        rest = url + 8;
    } else {
        return ec_err_set(err, EC_EINVAL, NULL,
                          "\"%.80s\": use grpcs://host:port or https://host (plaintext is refused)",
                          url);
    }
    size_t hostlen;
    const char *after;
    if (rest[0] == '[') { /* [v6]:port */
        const char *close = strchr(rest, ']');
        if (close == NULL)
            return ec_err_set(err, EC_EINVAL, NULL, "\"%.80s\": unclosed '[' in the host", url);
        hostlen = (size_t)(close - rest) + 1;
        after = close + 1;
    } else {
        hostlen = strcspn(rest, ":/?#");
        after = rest + hostlen;
    }
    if (hostlen == 0 || hostlen > 253)
        return ec_err_set(err, EC_EINVAL, NULL, "\"%.80s\" has no usable host", url);
    for (size_t i = 0; i < hostlen; i++)
        if (!isalnum((unsigned char)rest[i]) && strchr(".-_[]:", rest[i]) == NULL)
            return ec_err_set(err, EC_EINVAL, NULL, "\"%.80s\": bad character in the host", url);
    long port = default_port;
    if (*after == ':') {
        char *end = NULL;
        long given = strtol(after + 1, &end, 10);
        if (end == after + 1 || given < 1 || given > 65535 || (*end != '\0' && *end != '/'))
            return ec_err_set(err, EC_EINVAL, NULL, "\"%.80s\": cannot parse the port", url);
        if (!https)
            port = given; /* an https URL's port is its HTTPS port, not the gRPC one */
        after = end;
    }
    if (!https && *after != '\0' && strcmp(after, "/") != 0)
        return ec_err_set(err, EC_EINVAL, NULL, "\"%.80s\": a grpcs:// address takes no path", url);
    size_t cap = hostlen + 8;
    *target = ec_xmalloc(cap);
    snprintf(*target, cap, "%.*s:%ld", (int)hostlen, rest, port);
    return EC_OK;
}

static bool set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

bool rpc_tls_cfg_check(const char *ca, const char *cert, const char *key, bool production,
                       const char *service, struct ec_cfg_problems *p)
{
    int n = set(ca) + set(cert) + set(key);
    if (n != 0 && n != 3)
        ec_cfg_problem(p, "EDGECODER_TLS_CERT",
                       "EDGECODER_TLS_CA, EDGECODER_TLS_CERT and EDGECODER_TLS_KEY go together");
    else if (n == 0 && production)
        ec_cfg_problem(p, "EDGECODER_TLS_CERT",
                       "EDGECODER_TLS_CA, EDGECODER_TLS_CERT and EDGECODER_TLS_KEY are required "
                       "when EDGECODER_ENV=production (the gRPC %s service)",
                       service);
    return n == 3;
}
