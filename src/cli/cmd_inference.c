/* edgecoder inference: load the configuration (or exit 78), start the HTTP edge (/health,
 * /metrics) and the gRPC Inference service, wait for SIGINT or SIGTERM, stop gracefully.
 * `edgecoder inference client ...` is the coordinator-side client as a tool (tests, benchmarks;
 * see src/inference/inf_tool.c). */
#include "cli/commands.h"
#include "cli/service.h"
#include "common/ec_config.h"
#include "common/ec_http.h"
#include "common/ec_log.h"
#include "inference/inf_tool.h"
#include "inference/inference.h"
#include "mesh/rpc.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: edgecoder inference [--help-config [--markdown]]\n"
                 "       edgecoder inference client --help\n"
                 "Serves the gRPC Inference service (INFERENCE_GRPC_PORT, mTLS) and /health and\n"
                 "/metrics (INFERENCE_PORT) until SIGINT or SIGTERM. Ollama is reached at\n"
                 "OLLAMA_HOST. docs/inference.md describes the caller checks and signatures.\n");
}

int cmd_inference(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "client") == 0)
        return inf_tool_main(argc - 1, argv + 1);
    int early = cli_service_args(argc, argv, &inf_config_spec, usage);
    if (early >= 0)
        return early;

    struct inf_config cfg;
    ec_config_load_or_exit(&inf_config_spec, &cfg);
    ec_log_env_apply("inference", &cfg.log);

    sigset_t stop_signals;
    cli_block_stop_signals(&stop_signals);
    struct ec_err err = { 0 };
    if (ec_http_global_init(&err) != EC_OK) {
        EC_ERROR("cannot initialise the HTTP client", EC_LS("reason", err.msg));
        ec_config_release(&inf_config_spec, &cfg);
        return 1;
    }
    rpc_runtime_init();

    int status = 0;
    struct inf_service *s = NULL;
    enum ec_status st = inf_service_new(&cfg, &s, &err);
    if (st == EC_EINVAL) {
        fprintf(stderr, "edgecoder inference: invalid configuration (1 problem):\n  %s\n", err.msg);
        status = EC_EXIT_CONFIG;
    } else if (st != EC_OK || (st = inf_service_start(s, &err)) != EC_OK) {
        EC_ERROR("inference cannot start", EC_LS("error", ec_err_code(&err)),
                 EC_LS("reason", err.msg));
        status = 1;
    } else {
        cli_wait_stop_signal(&stop_signals);
    }
    inf_service_free(s);
    rpc_runtime_shutdown();
    ec_http_global_cleanup();
    ec_log_flush();
    ec_config_release(&inf_config_spec, &cfg);
    return status;
}
