/* edgecoder coordinator: load the configuration (or exit 78), start the HTTP edge, the gRPC
 * Coordinator service, the lease sweeper and the ledger chainer, wait for SIGINT or SIGTERM,
 * stop gracefully. */
#include "cli/commands.h"
#include "common/ec_config.h"
#include "common/ec_http.h"
#include "common/ec_log.h"
#include "coord/coord.h"
#include "mesh/rpc.h"

#include <malloc.h>
#include <pthread.h>
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
    if (argc >= 2 && strcmp(argv[1], "--help-config") == 0) {
        ec_config_print_help(&coord_config_spec, stdout,
                             argc >= 3 && strcmp(argv[2], "--markdown") == 0);
        return 0;
    }
    if (argc >= 2) {
        bool help = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0;
        usage(help ? stdout : stderr);
        return help ? 0 : 64;
    }

    /* glibc gives each busy thread its own malloc arena (up to 8 per core); with one HTTP thread
     * per connection that is most of the process's memory. Two arenas cost little contention at
     * this allocation rate. MALLOC_ARENA_MAX still wins when set. */
    if (getenv("MALLOC_ARENA_MAX") == NULL)
        mallopt(M_ARENA_MAX, 2);
    struct coord_config cfg;
    ec_config_load_or_exit(&coord_config_spec, &cfg);
    ec_log_env_apply("coordinator", &cfg.log);

    /* Blocked before any thread starts (gRPC's included), so only sigwait below sees them. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
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
        int sig = 0;
        sigwait(&stop_signals, &sig);
        EC_INFO("stopping", EC_LS("signal", sig == SIGINT ? "SIGINT" : "SIGTERM"));
    }
    coord_free(c);
    rpc_runtime_shutdown();
    ec_log_flush();
    ec_config_release(&coord_config_spec, &cfg);
    return status;
}
