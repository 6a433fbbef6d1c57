/* What every long-running command (coordinator, inference, agent, the demos) does the same way:
 * its arguments (--help-config [--markdown], --help, nothing else) and its stop signals. */
#ifndef EC_CLI_SERVICE_H
#define EC_CLI_SERVICE_H

#include "common/ec_config.h"

#include <signal.h>
#include <stdio.h>

/* Handles the command line of a service that takes no arguments of its own: prints the config
 * table for --help-config (markdown with --markdown), usage for --help (exit 0) or for anything
 * else (exit 64). Returns -1 when the service should run, else the status to exit with. */
int cli_service_args(int argc, char **argv, const struct ec_cfg_spec *spec,
                     void (*usage)(FILE *out));

/* Blocks SIGINT and SIGTERM in the calling thread and fills set with them. Call before any
 * thread starts (gRPC's and civetweb's included): threads inherit the mask, so only the
 * waiter below ever sees the signals. */
void cli_block_stop_signals(sigset_t *set);
/* Waits for SIGINT or SIGTERM (blocked by cli_block_stop_signals) and logs "stopping". */
void cli_wait_stop_signal(const sigset_t *set);

#endif
