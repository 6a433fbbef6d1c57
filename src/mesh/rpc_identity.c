/* Caller identity: SPIFFE ids spiffe://edgecoder/<role>/<id> and the role bitmask of a method. */
#include "mesh/rpc.h"

#include <string.h>

static const struct {
    enum rpc_role role;
    const char *name;
} role_names[] = {
    { RPC_ROLE_COORDINATOR, "coordinator" },
    { RPC_ROLE_CONTROL_PLANE, "control-plane" },
    { RPC_ROLE_INFERENCE, "inference" },
    { RPC_ROLE_PORTAL, "portal" },
    { RPC_ROLE_AGENT, "agent" },
};

const char *rpc_role_name(enum rpc_role role)
{
    for (size_t i = 0; i < sizeof(role_names) / sizeof(role_names[0]); i++)
        if (role_names[i].role == role)
            return role_names[i].name;
    return "none";
}

enum rpc_role rpc_role_from_name(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(role_names) / sizeof(role_names[0]); i++)
        if (strlen(role_names[i].name) == len && memcmp(role_names[i].name, name, len) == 0)
            return role_names[i].role;
    return RPC_ROLE_NONE;
}

bool rpc_role_allowed(unsigned allowed_roles, enum rpc_role role)
{
    if (allowed_roles == RPC_ROLES_ANY)
        return true;
    return role != RPC_ROLE_NONE && (allowed_roles & (unsigned)role) != 0;
}

static bool id_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

/* Shows at most 80 bytes of an untrusted value, with non-printable bytes as '?'. */
static void printable(char *out, size_t cap, const char *s, size_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"') ? s[i] : '?';
    out[n] = '\0';
}

enum ec_status rpc_spiffe_parse(const char *uri, size_t len, struct rpc_peer *out,
                                struct ec_err *err)
{
    static const char prefix[] = "spiffe://";
    static const char domain[] = RPC_TRUST_DOMAIN "/";
    char shown[81];
    memset(out, 0, sizeof(*out));
    printable(shown, sizeof(shown), uri, len);
    if (len < sizeof(prefix) - 1 || memcmp(uri, prefix, sizeof(prefix) - 1) != 0)
        return ec_err_set(err, EC_EUNAUTH, "peer_identity_invalid", "\"%s\" is not a spiffe:// URI",
                          shown);
    const char *p = uri + sizeof(prefix) - 1;
    const char *end = uri + len;
    if ((size_t)(end - p) < sizeof(domain) - 1 || memcmp(p, domain, sizeof(domain) - 1) != 0)
        return ec_err_set(err, EC_EUNAUTH, "peer_identity_invalid",
                          "\"%s\" is not in trust domain \"%s\"", shown, RPC_TRUST_DOMAIN);
    p += sizeof(domain) - 1;
    const char *slash = memchr(p, '/', (size_t)(end - p));
    if (slash == NULL || slash == p)
        return ec_err_set(err, EC_EUNAUTH, "peer_identity_invalid",
                          "\"%s\" has no role and id (want spiffe://%s/<role>/<id>)", shown,
                          RPC_TRUST_DOMAIN);
    enum rpc_role role = rpc_role_from_name(p, (size_t)(slash - p));
    if (role == RPC_ROLE_NONE)
        return ec_err_set(err, EC_EUNAUTH, "peer_identity_invalid", "\"%s\" names no known role",
                          shown);
    const char *id = slash + 1;
    size_t id_len = (size_t)(end - id);
    if (id_len == 0 || id_len > RPC_PEER_ID_MAX)
        return ec_err_set(err, EC_EUNAUTH, "peer_identity_invalid",
                          "\"%s\" needs an id of 1 to %d characters", shown, RPC_PEER_ID_MAX);
    for (size_t i = 0; i < id_len; i++)
        if (!id_char_ok(id[i]))
            return ec_err_set(err, EC_EUNAUTH, "peer_identity_invalid",
                              "\"%s\" has a character outside [A-Za-z0-9._-] in its id", shown);
    out->role = role;
    memcpy(out->id, id, id_len);
    out->id[id_len] = '\0';
    memcpy(out->spiffe_id, uri, len); /* fits: prefix + longest role + id is the buffer size */
    out->spiffe_id[len] = '\0';
    return EC_OK;
}
