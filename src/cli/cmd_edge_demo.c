/* edgecoder edge-demo: a small service on the HTTP edge, for the edge's integration tests and
 * benchmarks, and the pattern a real service copies (config table, routes, start, wait, stop). */
#include "cli/commands.h"
#include "cli/service.h"
#include "common/ec_config.h"
#include "common/ec_crypto.h"
#include "common/ec_log.h"
#include "common/ec_pg.h"
#include "edge/edge.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct demo_cfg {
    int64_t port;
    struct edge_env http;
    char *token;
    char *database_url;
    struct ec_log_env log;
};

/* What handlers see as req->ctx: immutable once the edge starts (the pool is thread-safe). */
struct demo_ctx {
    const struct demo_cfg *cfg;
    struct ec_pg_pool *pool; /* NULL without DATABASE_URL */
};

static void demo_check(const void *cfg, bool production, struct ec_cfg_problems *problems)
{
    const struct demo_cfg *c = cfg;
    edge_env_check(&c->http, problems);
}

static const struct ec_cfg_var demo_vars[] = {
    { "EDGE_DEMO_PORT", EC_CFG_INT, offsetof(struct demo_cfg, port), "4399", 1, 65535, 0, NULL,
      "port of the demo's HTTP edge" },
    EDGE_ENV_CFG_VARS(struct demo_cfg, http),
    { "EDGE_DEMO_TOKEN", EC_CFG_STR, offsetof(struct demo_cfg, token), NULL, 0, 0, EC_CFG_SECRET,
      NULL, "token that GET /demo/secret wants in x-demo-token; unset: the route always 401s" },
    { "DATABASE_URL", EC_CFG_STR, offsetof(struct demo_cfg, database_url), NULL, 0, 0,
      EC_CFG_SECRET, NULL, "PostgreSQL URL for GET /demo/db; unset: that route answers 503" },
    EC_LOG_ENV_CFG_VARS(struct demo_cfg, log),
};

static const struct ec_cfg_spec demo_spec = {
    .service = "edge-demo",
    .vars = demo_vars,
    .nvars = sizeof(demo_vars) / sizeof(demo_vars[0]),
    .check = demo_check,
};

/* --- handlers ----------------------------------------------------------------------------- */

static enum ec_status demo_hello(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    edge_resp_json_text(resp, "{\"ok\":true,\"message\":\"hello\"}");
    return EC_OK;
}

static enum ec_status demo_echo(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    json_t *body;
    enum ec_status st = edge_req_json(req, &body, err);
    if (st != EC_OK)
        return st;
    edge_resp_json(resp, json_incref(body));
    return EC_OK;
}

static enum ec_status demo_item(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    const char *id = edge_req_param(req, "id");
    size_t n = strspn(id, "0123456789");
    if (n == 0 || n > 18 || id[n] != '\0')
        return ec_err_set(err, EC_ENOTFOUND, "item_not_found", "%s", "");
    json_t *out =
        json_pack("{s:I,s:s}", "id", (json_int_t)strtoll(id, NULL, 10), "requestId", req->id);
    edge_resp_json(resp, out);
    return EC_OK;
}

/* The token is compared in constant time (only its length can leak); no token configured means
 * the route is closed, never open. */
static enum ec_status demo_token_auth(struct edge_req *req, struct ec_err *err)
{
    const struct demo_cfg *cfg = ((const struct demo_ctx *)req->ctx)->cfg;
    const char *given = edge_req_header(req, "x-demo-token");
    if (cfg->token == NULL || cfg->token[0] == '\0' || !ec_ct_streq(given, cfg->token))
        return ec_err_set(err, EC_EUNAUTH, NULL, "%s", "");
    return EC_OK;
}

static enum ec_status demo_secret(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    edge_resp_json_text(resp, "{\"ok\":true,\"secret\":\"the demo secret\"}");
    return EC_OK;
}

static enum ec_status demo_slow(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    const char *ms_text = edge_req_query(req, "ms");
    char *end = NULL;
    errno = 0;
    long ms = ms_text ? strtol(ms_text, &end, 10) : 0;
    if (ms_text != NULL && (end == ms_text || *end != '\0' || errno != 0 || ms < 0 || ms > 60000))
        return ec_err_set(err, EC_EINVAL, NULL, "ms: cannot use \"%s\"; want 0..60000", ms_text);
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    edge_resp_json(resp, json_pack("{s:b,s:i}", "ok", 1, "sleptMs", (int)ms));
    return EC_OK;
}

/* GET /demo/db?n=41: `SELECT $1::int + 1` through the pool, {"ok":true,"value":42}. While the
 * database is down the pool fails fast with EC_EUNAVAIL "database_unavailable", which the edge
 * answers as 503 {"error":"database_unavailable"}: no handler code for it. */
struct db_call {
    const char *n;
    const char *value;
};

static enum ec_status db_add_one(struct ec_pg_conn *conn, struct ec_arena *arena, void *ctx,
                                 struct ec_err *err)
{
    struct db_call *call = ctx;
    struct pg_result *res = NULL;
    const char *params[1] = { call->n };
    enum ec_status st = ec_pg_query(conn, "SELECT $1::int + 1", 1, params, arena, &res, err);
    if (st != EC_OK)
        return st;
    call->value = ec_pg_value(res, 0, 0);
    return EC_OK;
}

static enum ec_status demo_db(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    const struct demo_ctx *ctx = req->ctx;
    if (ctx->pool == NULL)
        return ec_err_set(err, EC_EUNAVAIL, "database_unavailable", "DATABASE_URL is not set");
    struct db_call call = { .n = edge_req_query(req, "n") };
    if (call.n == NULL)
        call.n = "0";
    char *end = NULL;
    errno = 0;
    long n = strtol(call.n, &end, 10);
    if (end == call.n || *end != '\0' || errno != 0 || n < -1000000000L || n > 1000000000L)
        return ec_err_set(err, EC_EINVAL, NULL, "n: cannot use \"%s\"; want 9 digits at most",
                          call.n);
    enum ec_status st = ec_pg_with_conn(ctx->pool, req->arena, db_add_one, &call, err);
    if (st != EC_OK)
        return st;
    edge_resp_json(
        resp, json_pack("{s:b,s:I}", "ok", 1, "value", (json_int_t)strtoll(call.value, NULL, 10)));
    return EC_OK;
}

static const struct edge_route demo_routes[] = {
    { "GET", "/demo/hello", NULL, 0, demo_hello },
    { "POST", "/demo/echo", NULL, 1024, demo_echo },
    { "GET", "/demo/items/:id", NULL, 0, demo_item },
    { "GET", "/demo/secret", demo_token_auth, 0, demo_secret },
    { "GET", "/demo/slow", NULL, 0, demo_slow },
    { "GET", "/demo/db", NULL, 0, demo_db },
};

/* --- the command -------------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out, "usage: edgecoder edge-demo [--help-config [--markdown]]\n"
                 "Serves the demo routes on the HTTP edge until SIGINT or SIGTERM.\n");
}

int cmd_edge_demo(int argc, char **argv)
{
    int early = cli_service_args(argc, argv, &demo_spec, usage);
    if (early >= 0)
        return early;

    struct demo_cfg cfg;
    ec_config_load_or_exit(&demo_spec, &cfg);
    ec_log_env_apply("edge-demo", &cfg.log);

    sigset_t stop_signals;
    cli_block_stop_signals(&stop_signals);

    struct demo_ctx ctx = { .cfg = &cfg };
    if (cfg.database_url != NULL && cfg.database_url[0] != '\0') {
        struct ec_err perr = { 0 };
        if (ec_pg_pool_new(cfg.database_url, 8, NULL, &ctx.pool, &perr) != EC_OK) {
            fprintf(stderr,
                    "edgecoder edge-demo: invalid configuration (1 problem):\n"
                    "  DATABASE_URL: %s\n",
                    perr.msg);
            ec_config_release(&demo_spec, &cfg);
            return EC_EXIT_CONFIG;
        }
    }
    struct edge_config ecfg = { .port = (int)cfg.port };
    edge_env_apply(&cfg.http, &ecfg);
    struct edge_service svc = {
        .name = "edge-demo",
        .routes = demo_routes,
        .nroutes = sizeof(demo_routes) / sizeof(demo_routes[0]),
        .ctx = &ctx,
        .assets_prefix = "/",
        .assets_dir = "demo/",
    };
    struct edge_server *srv = NULL;
    struct ec_err err = { 0 };
    if (edge_server_start(&ecfg, &svc, &srv, &err) != EC_OK) {
        EC_ERROR("cannot start the edge", EC_LS("reason", err.msg));
        ec_pg_pool_free(ctx.pool);
        ec_config_release(&demo_spec, &cfg);
        return 1;
    }

    cli_wait_stop_signal(&stop_signals);
    edge_server_stop(srv); /* no request runs after this, so the pool can go */
    ec_pg_pool_free(ctx.pool);
    ec_config_release(&demo_spec, &cfg);
    return 0;
}
