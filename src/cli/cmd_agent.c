/* edgecoder agent: load the configuration (or exit 78), start the agent runtime, run until
 * SIGINT or SIGTERM, then let work in flight finish and keep undelivered results on disk. */
#include "agent/agent.h"
#include "cli/commands.h"
#include "cli/service.h"
#include "common/ec_config.h"
#include "common/ec_http.h"
#include "common/ec_log.h"
#include "common/ec_mem.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: edgecoder agent [--help-config [--markdown]]\n"
            "Registers with a coordinator (COORDINATOR_URL, or the discovery registry), pulls\n"
            "subtasks and runs them in the sandbox until SIGINT or SIGTERM. Keys, the\n"
            "coordinator cache and undelivered results live in AGENT_STATE_DIR.\n");
}

struct signal_waiter {
    sigset_t set;
    struct agent *agent;
};

static void *wait_for_signal(void *arg)
{
    struct signal_waiter *w = arg;
    cli_wait_stop_signal(&w->set);
    agent_stop(w->agent);
    return NULL;
}

/* $HOME/.edgecoder/agent when AGENT_STATE_DIR is unset. */
static bool default_state_dir(struct agent_config *cfg)
{
    if (cfg->state_dir != NULL && cfg->state_dir[0] != '\0')
        return true;
    const char *home = getenv("HOME");
    if (home == NULL || home[0] == '\0')
        return false;
    size_t n = strlen(home) + 32;
    free(cfg->state_dir);
    cfg->state_dir = ec_xmalloc(n);
    snprintf(cfg->state_dir, n, "%s/.edgecoder/agent", home);
    return true;
}

int cmd_agent(int argc, char **argv)
{
    int early = cli_service_args(argc, argv, &agent_config_spec, usage);
    if (early >= 0)
        return early;
    struct agent_config cfg;
    ec_config_load_or_exit(&agent_config_spec, &cfg);
    ec_log_env_apply("agent", &cfg.log);
    if (!default_state_dir(&cfg)) {
        fprintf(stderr, "edgecoder agent: invalid configuration (1 problem):\n  AGENT_STATE_DIR: "
                        "is unset and so is HOME\n");
        ec_config_release(&agent_config_spec, &cfg);
        return EC_EXIT_CONFIG;
    }

    /* Blocked before any thread starts, so only the waiter below sees them. */
    struct signal_waiter w = { 0 };
    cli_block_stop_signals(&w.set);

    struct ec_err err = { 0 };
    int status = 0;
    struct agent *a = NULL;
    if (ec_http_global_init(&err) != EC_OK || agent_new(&cfg, &a, &err) != EC_OK) {
        EC_ERROR("agent cannot start", EC_LS("error", ec_err_code(&err)), EC_LS("reason", err.msg));
        status = 1;
    } else {
        w.agent = a;
        pthread_t waiter;
        EC_ASSERT(pthread_create(&waiter, NULL, wait_for_signal, &w) == 0);
        agent_run(a);
        /* agent_run returns only after agent_stop, i.e. after the waiter took its signal. */
        pthread_join(waiter, NULL);
    }
    agent_free(a);
    ec_log_flush();
    ec_config_release(&agent_config_spec, &cfg);
    return status;
}
