/* The argument handling and stop signals shared by the service commands (service.h). */
#include "cli/service.h"
#include "common/ec_log.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>

int cli_service_args(int argc, char **argv, const struct ec_cfg_spec *spec,
                     void (*usage)(FILE *out))
{
    if (argc >= 2 && strcmp(argv[1], "--help-config") == 0) {
        ec_config_print_help(spec, stdout, argc >= 3 && strcmp(argv[2], "--markdown") == 0);
        return 0;
    }
    if (argc >= 2) {
        bool help = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0;
        usage(help ? stdout : stderr);
        return help ? 0 : 64;
    }
    return -1;
}

void cli_block_stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, set, NULL);
}

void cli_wait_stop_signal(const sigset_t *set)
{
    int sig = 0;
    while (sigwait(set, &sig) != 0)
        ;
    EC_INFO("stopping", EC_LS("signal", sig == SIGINT ? "SIGINT" : "SIGTERM"));
}
