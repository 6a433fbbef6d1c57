/* edgecoder coordinator: load the configuration (or exit 78), start the HTTP edge, the gRPC
 * Coordinator service, the lease sweeper and the ledger chainer, wait for SIGINT or SIGTERM,
 * stop gracefully. */
#include "cli/commands.h"
#include "cli/service.h"
#include "common/ec_config.h"
#include "common/ec_http.h"
#include "common/ec_log.h"
#include "coord/coord.h"
#include "mesh/rpc.h"

#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: edgecoder coordinator [--help-config [--markdown]]\n"
                 "Serves the agent API (HTTP, COORDINATOR_PORT) and the gRPC Coordinator service\n"
                 "(COORDINATOR_GRPC_PORT) until SIGINT or SIGTERM. The database must be migrated\n"
                 "first: edgecoder migrate --db coordinator.\n");
}

int cmd_coordinator(int argc, char **argv)
{
    int early = cli_service_args(argc, argv, &coord_config_spec, usage);
    if (early >= 0)
        return early;

    /* glibc gives each busy thread its own malloc arena (up to 8 per core); with one HTTP thread
     * per connection that is most of the process's memory. Two arenas cost little contention at
     * this allocation rate. MALLOC_ARENA_MAX still wins when set. */
    if (getenv("MALLOC_ARENA_MAX") == NULL)
        mallopt(M_ARENA_MAX, 2);
    struct coord_config cfg;
    ec_config_load_or_exit(&coord_config_spec, &cfg);
    ec_log_env_apply("coordinator", &cfg.log);

    sigset_t stop_signals;
    cli_block_stop_signals(&stop_signals);
    struct ec_err err = { 0 };
    if (ec_http_global_init(&err) != EC_OK) {
        EC_ERROR("cannot initialise the HTTP client", EC_LS("reason", err.msg));
        ec_config_release(&coord_config_spec, &cfg);
        return 1;
    }
    rpc_runtime_init();

    int status = 0;
    struct coord *c = NULL;
    enum ec_status st = coord_new(&cfg, &c, &err);
    if (st == EC_EINVAL) {
        /* Configuration the table could not judge alone (e.g. DATABASE_URL's syntax). */
        fprintf(stderr, "edgecoder coordinator: invalid configuration (1 problem):\n  %s\n",
                err.msg);
        status = EC_EXIT_CONFIG;
    } else if (st != EC_OK || (st = coord_start(c, &err)) != EC_OK) {
        EC_ERROR("coordinator cannot start", EC_LS("error", ec_err_code(&err)),
                 EC_LS("reason", err.msg));
        status = 1;
    } else {
        cli_wait_stop_signal(&stop_signals);
    }
    coord_free(c);
    rpc_runtime_shutdown();
    ec_log_flush();
    ec_config_release(&coord_config_spec, &cfg);
    return status;
}
