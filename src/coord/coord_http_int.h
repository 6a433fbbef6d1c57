/* Shared by the coordinator's HTTP files (coord_http_*.c): the signed-agent-request check, the
 * JSON field readers that turn bad input into a 400 naming the field, and the handlers the route
 * table (coord_http_routes.c) lists. */
#ifndef COORD_HTTP_INT_H
#define COORD_HTTP_INT_H

#include "coord/coord.h"
#include "edge/edge.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* Body limits per route. */
#define COORD_BODY_SMALL  (16 * 1024)   /* heartbeat, pull */
#define COORD_BODY_MEDIUM (64 * 1024)   /* register, diagnostics */
#define COORD_BODY_LARGE  (1024 * 1024) /* submit, result */

#define COORD_ID_MAX        128
#define COORD_TELEMETRY_MAX 4096

/* --- requests from agents (coord_http_auth.c) -------------------------------------------- */

/* A parsed and verified agent request. */
struct coord_agent_req {
    json_t *body;                  /* the JSON object; borrowed from the request */
    const char *agent_id;          /* the body's agentId */
    bool known;                    /* the agent is registered */
    bool signed_;                  /* carried all five signature headers, which verified */
    struct coord_agent_view agent; /* when known */
};

/* For /heartbeat, /pull, /result (and /agent/diagnostics): the body must be a JSON object with
 * an agentId; the agent must be registered (else 401 mesh_unauthorized, reason
 * agent_not_registered); the signature headers are verified (coord_auth_verify): a keyed agent's
 * unsigned request, a replay, a tampered body are 401 signature_invalid. */
enum ec_status coord__agent_auth(struct edge_req *req, struct coord_agent_req *out,
                                 struct ec_err *err);
/* Loopback by the socket address only: false whenever a trusted proxy header is present. */
bool coord__socket_is_loopback(const struct edge_req *req);
/* The address to hand the enrollment gate: the socket's, or the proxy header's (never a
 * loopback one, which only the socket may claim). */
const char *coord__gate_ip(const struct edge_req *req);

/* --- JSON fields (coord_http_json.c) ----------------------------------------------------- */

/* The body as a JSON object: 400 invalid_json, or "body: expected a JSON object". */
enum ec_status coord__body_object(struct edge_req *req, json_t **out, struct ec_err *err);
/* A string field of min..max bytes (UTF-8, no NUL); absent or null: dflt when not required. */
enum ec_status coord__field_str(const json_t *o, const char *name, bool required, size_t min,
                                size_t max, const char *dflt, const char **out, struct ec_err *err);
/* An id: 1..COORD_ID_MAX characters, printable ASCII without spaces or quotes. */
enum ec_status coord__field_id(const json_t *o, const char *name, bool required, const char **out,
                               struct ec_err *err);
/* One of allowed (NULL-terminated); absent: dflt (NULL with required false: *out NULL). */
enum ec_status coord__field_enum(const json_t *o, const char *name, const char *const *allowed,
                                 bool required, const char *dflt, const char **out,
                                 struct ec_err *err);
/* An integer in [min, max]; absent: dflt unless required. */
enum ec_status coord__field_int(const json_t *o, const char *name, bool required, int64_t min,
                                int64_t max, int64_t dflt, int64_t *out, struct ec_err *err);
/* A boolean; absent: *out = dflt (which may be -1 for "not sent") unless required. */
enum ec_status coord__field_bool(const json_t *o, const char *name, bool required, int dflt,
                                 int *out, struct ec_err *err);
/* An object field serialised as compact JSON text of at most max bytes, in the arena; absent or
 * null: NULL. */
enum ec_status coord__field_object_text(const json_t *o, const char *name, size_t max,
                                        struct ec_arena *arena, const char **out,
                                        struct ec_err *err);
/* A string or a number (as text), e.g. activeModelParamSize. */
enum ec_status coord__field_scalar_text(const json_t *o, const char *name, size_t max,
                                        struct ec_arena *arena, const char **out,
                                        struct ec_err *err);
bool coord__id_ok(const char *s, size_t max);

/* --- handlers ---------------------------------------------------------------------------- */

/* coord_http_agent.c */
/* --- request bodies: pure parsers (json in, struct out), shared by the handlers and the fuzz
 * target tests/fuzz/fuzz_coord_bodies.c. Strings point into the JSON or the arena. A problem is
 * EC_EINVAL naming the field. */

struct coord_register_input {
    struct coord_agent_profile p;
    const char *registration_token;
    struct ec_key *public_key; /* parsed publicKeyPem; freed with the arena */
};

enum ec_status coord__parse_register(struct ec_arena *arena, const json_t *b,
                                     struct coord_register_input *in, struct ec_err *err);
enum ec_status coord__parse_heartbeat(struct ec_arena *arena, const json_t *b,
                                      struct coord_heartbeat *hb, struct ec_err *err);
/* /result's answer fields (ok, output, error, durationMs), plain or opened from an envelope. */
enum ec_status coord__parse_answer(const json_t *o, struct coord_result *r, struct ec_err *err);
enum ec_status coord__parse_submit(const json_t *b, struct coord_task_spec *t, struct ec_err *err);
/* /agent/diagnostics events: *out is a new JSON array of {event_at_ms, message}. */
enum ec_status coord__parse_diag_events(const json_t *b, int64_t now_ms, json_t **out,
                                        struct ec_err *err);

enum ec_status coord__h_register(struct edge_req *req, struct edge_resp *resp, struct ec_err *err);
enum ec_status coord__h_heartbeat(struct edge_req *req, struct edge_resp *resp, struct ec_err *err);
enum ec_status coord__h_diag_post(struct edge_req *req, struct edge_resp *resp, struct ec_err *err);
enum ec_status coord__h_diag_get(struct edge_req *req, struct edge_resp *resp, struct ec_err *err);
/* coord_http_work.c */
enum ec_status coord__h_pull(struct edge_req *req, struct edge_resp *resp, struct ec_err *err);
enum ec_status coord__h_result(struct edge_req *req, struct edge_resp *resp, struct ec_err *err);
/* coord_http_submit.c */
enum ec_status coord__h_submit(struct edge_req *req, struct edge_resp *resp, struct ec_err *err);
enum ec_status coord__h_task(struct edge_req *req, struct edge_resp *resp, struct ec_err *err);
/* coord_http_status.c */
enum ec_status coord__h_status(struct edge_req *req, struct edge_resp *resp, struct ec_err *err);
enum ec_status coord__h_health(struct edge_req *req, struct edge_resp *resp, struct ec_err *err);
enum ec_status coord__h_capacity(struct edge_req *req, struct edge_resp *resp, struct ec_err *err);
enum ec_status coord__h_identity(struct edge_req *req, struct edge_resp *resp, struct ec_err *err);
enum ec_status coord__h_features(struct edge_req *req, struct edge_resp *resp, struct ec_err *err);
enum ec_status coord__h_models(struct edge_req *req, struct edge_resp *resp, struct ec_err *err);
enum ec_status coord__h_ledger_snapshot(struct edge_req *req, struct edge_resp *resp,
                                        struct ec_err *err);
enum ec_status coord__h_ledger_verify(struct edge_req *req, struct edge_resp *resp,
                                      struct ec_err *err);

/* The original's agent policy (sent, never enforced by its workers). maxConcurrentTasks is not
 * in it: /register grants the agent the concurrency it registered (1..64), and agents that
 * honour the policy would otherwise be held to the original's constant 1. */
#define COORD_POLICY_JSON                                                              \
    "{\"cpuCapPercent\":50,\"memoryLimitMb\":2048,\"idleOnly\":true,\"allowedHours\":" \
    "{\"startHourUtc\":22,\"endHourUtc\":6}}"

#endif
