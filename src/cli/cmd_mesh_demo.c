/* edgecoder mesh-demo: serves edgecoder.v1.Demo (+ health, reflection) over mTLS, and is the C
 * client the integration tests and `tools/bench rpc` drive (--call, --bench). */
#include "cli/commands.h"
#include "cli/service.h"
#include "common/ec_config.h"
#include "common/ec_log.h"
#include "common/ec_mem.h"
#include "mesh/demo_service.h"
#include "mesh/rpc.h"

#include "edgecoder/v1/demo.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct serve_cfg {
    char *host;
    int64_t port;
    char *tls_ca, *tls_cert, *tls_key;
    int64_t threads, max_streams, max_message_bytes, grace_ms;
};

static const struct ec_cfg_var serve_vars[] = {
    { "MESH_DEMO_HOST", EC_CFG_STR, EC_CFG_FIELD(struct serve_cfg, host), "127.0.0.1", 0, 0, 0,
      NULL, "address to listen on" },
    { "MESH_DEMO_PORT", EC_CFG_INT, EC_CFG_FIELD(struct serve_cfg, port), "4499", 0, 65535, 0, NULL,
      "gRPC port (0 picks a free one)" },
    { "EDGECODER_TLS_CA", EC_CFG_PATH, EC_CFG_FIELD(struct serve_cfg, tls_ca), NULL, 0, 0,
      EC_CFG_REQUIRED, NULL, "PEM CA that signs every mesh certificate" },
    { "EDGECODER_TLS_CERT", EC_CFG_PATH, EC_CFG_FIELD(struct serve_cfg, tls_cert), NULL, 0, 0,
      EC_CFG_REQUIRED, NULL, "PEM certificate of this server" },
    { "EDGECODER_TLS_KEY", EC_CFG_PATH, EC_CFG_FIELD(struct serve_cfg, tls_key), NULL, 0, 0,
      EC_CFG_REQUIRED | EC_CFG_SECRET, NULL, "PEM private key of this server" },
    { "MESH_DEMO_THREADS", EC_CFG_INT, EC_CFG_FIELD(struct serve_cfg, threads), "0", 0, 64, 0, NULL,
      "completion-queue worker threads (0: one per core)" },
    { "MESH_DEMO_MAX_STREAMS", EC_CFG_INT, EC_CFG_FIELD(struct serve_cfg, max_streams), "64", 1,
      4096, 0, NULL, "concurrent streaming calls" },
    { "MESH_DEMO_MAX_MESSAGE_BYTES", EC_CFG_INT, EC_CFG_FIELD(struct serve_cfg, max_message_bytes),
      "4194304", 1024, 67108864, 0, NULL, "largest message in either direction" },
    { "MESH_DEMO_SHUTDOWN_GRACE_MS", EC_CFG_INT, EC_CFG_FIELD(struct serve_cfg, grace_ms), "5000",
      1, 600000, 0, NULL, "how long calls in flight may finish at shutdown" },
};
static const struct ec_cfg_spec serve_spec = { "mesh-demo", serve_vars,
                                               sizeof(serve_vars) / sizeof(serve_vars[0]), NULL };

struct client_cfg {
    char *tls_ca, *tls_cert, *tls_key;
};

static void client_check(const void *cfg, bool production, struct ec_cfg_problems *p)
{
    const struct client_cfg *c = cfg;
    if ((c->tls_cert == NULL) != (c->tls_key == NULL))
        ec_cfg_problem(p, "EDGECODER_TLS_CERT", "and EDGECODER_TLS_KEY go together");
}

static const struct ec_cfg_var client_vars[] = {
    { "EDGECODER_TLS_CA", EC_CFG_PATH, EC_CFG_FIELD(struct client_cfg, tls_ca), NULL, 0, 0,
      EC_CFG_REQUIRED, NULL, "PEM CA that signs every mesh certificate" },
    { "EDGECODER_TLS_CERT", EC_CFG_PATH, EC_CFG_FIELD(struct client_cfg, tls_cert), NULL, 0, 0, 0,
      NULL, "PEM client certificate (unset: present none, which servers refuse)" },
    { "EDGECODER_TLS_KEY", EC_CFG_PATH, EC_CFG_FIELD(struct client_cfg, tls_key), NULL, 0, 0,
      EC_CFG_SECRET, NULL, "PEM private key of the client certificate" },
};
static const struct ec_cfg_spec client_spec = { "mesh-demo", client_vars,
                                                sizeof(client_vars) / sizeof(client_vars[0]),
                                                client_check };

static int usage(FILE *out, int status)
{
    fprintf(out,
            "usage: edgecoder mesh-demo                 serve Demo, health and reflection\n"
            "       edgecoder mesh-demo --help-config\n"
            "       edgecoder mesh-demo --call ADDR echo TEXT|count N|health [SERVICE] [options]\n"
            "           --timeout-ms N --delay-ms N --interval-ms N --fail CODE\n"
            "           --request-id ID --server-name NAME --retry\n"
            "       edgecoder mesh-demo --bench ADDR [--threads N] [--seconds S] [--inflight N]\n"
            "           [--payload BYTES] [--timeout-ms N]\n"
            "Clients read EDGECODER_TLS_CA, EDGECODER_TLS_CERT and EDGECODER_TLS_KEY.\n");
    return status;
}

static int serve(void)
{
    struct serve_cfg cfg;
    ec_config_load_or_exit(&serve_spec, &cfg);
    ec_log_setup("mesh-demo", EC_LOG_INFO, 2);
    sigset_t sigs;
    cli_block_stop_signals(&sigs); /* before grpc_init: its threads inherit the mask */
    rpc_runtime_init();

    char listen[300];
    snprintf(listen, sizeof(listen), "%s:%lld", cfg.host, (long long)cfg.port);
    struct rpc_server_opts opts = {
        .listen = listen,
        .tls = { cfg.tls_ca, cfg.tls_cert, cfg.tls_key },
        .threads = (int)cfg.threads,
        .max_streams = (int)cfg.max_streams,
        .max_message_bytes = (size_t)cfg.max_message_bytes,
        .shutdown_grace_ms = cfg.grace_ms,
    };
    struct ec_err err = { 0 };
    int status = 0;
    struct rpc_server *srv = rpc_server_new(&opts, &err);
    if (srv == NULL || rpc_server_add_service(srv, &demo_service, &err) != EC_OK ||
        rpc_server_start(srv, &err) != EC_OK) {
        EC_ERROR("mesh-demo cannot start", EC_LS("error", err.msg));
        status = 1;
    } else {
        cli_wait_stop_signal(&sigs);
    }
    rpc_server_free(srv);
    rpc_runtime_shutdown();
    ec_config_release(&serve_spec, &cfg);
    return status;
}

/* --- client modes --------------------------------------------------------------------------------
 */

struct client_args {
    const char *addr;
    const char *what; /* echo, count, health */
    const char *arg;
    int64_t timeout_ms, delay_ms, interval_ms;
    const char *fail, *request_id, *server_name;
    bool retry;
    int threads, inflight;
    double seconds;
    int payload;
};

static bool parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* Options after the positional words; false on anything unknown or malformed. */
static bool parse_options(int argc, char **argv, int i, struct client_args *a)
{
    for (; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t n = 0;
        if (strcmp(o, "--retry") == 0) {
            a->retry = true;
            continue;
        }
        if (v == NULL)
            return false;
        i++;
        if (strcmp(o, "--fail") == 0)
            a->fail = v;
        else if (strcmp(o, "--request-id") == 0)
            a->request_id = v;
        else if (strcmp(o, "--server-name") == 0)
            a->server_name = v;
        else if (strcmp(o, "--seconds") == 0)
            a->seconds = strtod(v, NULL);
        else if (!parse_int(v, 0, 100000000, &n))
            return false;
        else if (strcmp(o, "--timeout-ms") == 0)
            a->timeout_ms = n;
        else if (strcmp(o, "--delay-ms") == 0)
            a->delay_ms = n;
        else if (strcmp(o, "--interval-ms") == 0)
            a->interval_ms = n;
        else if (strcmp(o, "--threads") == 0 && n >= 1 && n <= 256)
            a->threads = (int)n;
        else if (strcmp(o, "--inflight") == 0 && n >= 1 && n <= 100000)
            a->inflight = (int)n;
        else if (strcmp(o, "--payload") == 0 && n <= 1 << 20)
            a->payload = (int)n;
        else
            return false;
    }
    return a->seconds >= 0 && a->seconds <= 3600;
}

static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(j);
}

static int print_error(json_t *j, enum ec_status st, const struct ec_err *err)
{
    json_object_set_new(j, "ok", json_false());
    json_object_set_new(j, "grpc_code", json_integer(ec_status_info(st)->grpc_code));
    json_object_set_new(j, "code", json_string(ec_err_code(err)));
    json_object_set_new(j, "message", json_string(err->msg));
    print_json(j);
    return 1;
}

static enum ec_status on_count(void *ud, const ProtobufCMessage *msg, struct ec_err *err)
{
    int64_t i = ((const Edgecoder__V1__CountReply *)msg)->i;
    json_array_append_new(ud, json_integer(i));
    /* Progress as it arrives, on stderr: the final JSON on stdout comes only at the end. */
    fprintf(stderr, "{\"progress\":%lld}\n", (long long)i);
    fflush(stderr);
    return EC_OK;
}

static int call_once(struct rpc_channel *ch, const struct client_args *a)
{
    struct rpc_md md[1] = { { "x-request-id", a->request_id } };
    struct rpc_call_opts opts = { a->timeout_ms, md, a->request_id ? 1 : 0, a->retry };
    struct ec_err err = { 0 };
    struct ec_arena arena;
    ec_arena_init(&arena);
    json_t *j = json_object();
    enum ec_status st;
    if (strcmp(a->what, "echo") == 0) {
        Edgecoder__V1__EchoRequest req = EDGECODER__V1__ECHO_REQUEST__INIT;
        Edgecoder__V1__ErrorReply fail = EDGECODER__V1__ERROR_REPLY__INIT;
        req.text = (char *)a->arg;
        if (a->delay_ms > 0) {
            req.delay_present_case = EDGECODER__V1__ECHO_REQUEST__DELAY_PRESENT_DELAY_MS;
            req.delay_ms = (uint32_t)a->delay_ms;
        }
        if (a->fail != NULL) {
            fail.error = (char *)a->fail;
            req.fail = &fail;
        }
        ProtobufCMessage *resp;
        st = rpc_unary(ch, DEMO_ECHO_PATH, &req.base, &edgecoder__v1__echo_reply__descriptor,
                       &arena, &resp, &opts, &err);
        if (st == EC_OK) {
            const Edgecoder__V1__EchoReply *r = (const void *)resp;
            json_object_set_new(j, "text", json_string(r->text));
            json_object_set_new(j, "peer_spiffe_id", json_string(r->peer_spiffe_id));
            json_object_set_new(j, "peer_role", json_string(r->peer_role));
            json_object_set_new(j, "peer_id", json_string(r->peer_id));
            json_object_set_new(j, "request_id", json_string(r->request_id));
            json_object_set_new(j, "deadline_ms", json_integer(r->deadline_ms));
        }
    } else if (strcmp(a->what, "count") == 0) {
        Edgecoder__V1__CountRequest req = EDGECODER__V1__COUNT_REQUEST__INIT;
        req.n = (uint32_t)strtoul(a->arg, NULL, 10);
        if (a->interval_ms > 0) {
            req.interval_present_case = EDGECODER__V1__COUNT_REQUEST__INTERVAL_PRESENT_INTERVAL_MS;
            req.interval_ms = (uint32_t)a->interval_ms;
        }
        json_t *values = json_array();
        json_object_set_new(j, "values", values);
        st = rpc_server_stream(ch, DEMO_COUNT_PATH, &req.base,
                               &edgecoder__v1__count_reply__descriptor, on_count, values, &opts,
                               &err);
    } else {
        Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
        req.service = (char *)(a->arg ? a->arg : "");
        ProtobufCMessage *resp;
        st = rpc_unary(ch, "/grpc.health.v1.Health/Check", &req.base,
                       &grpc__health__v1__health_check_response__descriptor, &arena, &resp, &opts,
                       &err);
        if (st == EC_OK)
            json_object_set_new(
                j, "status",
                json_integer(((const Grpc__Health__V1__HealthCheckResponse *)resp)->status));
    }
    ec_arena_release(&arena);
    if (st != EC_OK)
        return print_error(j, st, &err);
    json_object_set_new(j, "ok", json_true());
    print_json(j);
    return 0;
}

static int bench(struct rpc_channel *ch, const struct client_args *a)
{
    struct demo_bench_opts o = { a->threads, a->inflight, a->seconds, a->payload,
                                 a->timeout_ms > 0 ? a->timeout_ms : 10000 };
    struct demo_bench_result r;
    demo_bench_run(ch, &o, &r);
    json_t *j = json_object();
    json_object_set_new(j, "threads", json_integer(o.threads));
    json_object_set_new(j, "inflight", json_integer(o.inflight));
    json_object_set_new(j, "payload", json_integer(o.payload));
    json_object_set_new(j, "seconds", json_real(r.seconds));
    json_object_set_new(j, "calls", json_integer((json_int_t)r.calls));
    json_object_set_new(j, "errors", json_integer((json_int_t)r.errors));
    json_object_set_new(j, "rpcs_per_sec", json_integer((json_int_t)r.rpcs_per_sec));
    json_object_set_new(j, "p50_us", json_integer(r.p50_us));
    json_object_set_new(j, "p90_us", json_integer(r.p90_us));
    json_object_set_new(j, "p99_us", json_integer(r.p99_us));
    json_object_set_new(j, "max_us", json_integer(r.max_us));
    if (r.first_error[0] != '\0')
        json_object_set_new(j, "first_error", json_string(r.first_error));
    print_json(j);
    return r.errors == 0 ? 0 : 1;
}

static int client_main(bool bench_mode, struct client_args *a)
{
    struct client_cfg cfg;
    ec_config_load_or_exit(&client_spec, &cfg);
    rpc_runtime_init();
    struct rpc_channel_opts opts = { .tls = { cfg.tls_ca, cfg.tls_cert, cfg.tls_key },
                                     .server_name = a->server_name };
    struct ec_err err = { 0 };
    int status;
    struct rpc_channel *ch = rpc_channel_new(a->addr, &opts, &err);
    if (ch == NULL) {
        fprintf(stderr, "edgecoder mesh-demo: %s\n", err.msg);
        status = 78;
    } else {
        status = bench_mode ? bench(ch, a) : call_once(ch, a);
    }
    rpc_channel_free(ch);
    rpc_runtime_shutdown();
    ec_config_release(&client_spec, &cfg);
    return status;
}

int cmd_mesh_demo(int argc, char **argv)
{
    if (argc == 1)
        return serve();
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return usage(stdout, 0);
    if (strcmp(argv[1], "--help-config") == 0) {
        ec_config_print_help(&serve_spec, stdout, argc > 2 && strcmp(argv[2], "--markdown") == 0);
        return 0;
    }
    struct client_args a = { .threads = 1, .inflight = 1, .seconds = 5, .payload = 64 };
    if (strcmp(argv[1], "--call") == 0 && argc >= 4) {
        a.addr = argv[2];
        a.what = argv[3];
        int next = 4;
        if (strcmp(a.what, "echo") == 0 || strcmp(a.what, "count") == 0) {
            if (argc < 5)
                return usage(stderr, 64);
            a.arg = argv[next++];
        } else if (strcmp(a.what, "health") == 0) {
            if (argc > 4 && argv[4][0] != '-')
                a.arg = argv[next++];
        } else {
            return usage(stderr, 64);
        }
        if (!parse_options(argc, argv, next, &a))
            return usage(stderr, 64);
        return client_main(false, &a);
    }
    if (strcmp(argv[1], "--bench") == 0 && argc >= 3) {
        a.addr = argv[2];
        if (!parse_options(argc, argv, 3, &a))
            return usage(stderr, 64);
        return client_main(true, &a);
    }
    return usage(stderr, 64);
}
