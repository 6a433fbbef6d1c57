/* edgecoder: one executable for every service and tool; dispatches to a subcommand. */
#include "cli/commands.h"

#include <stdio.h>
#include <string.h>

#ifndef EDGECODER_VERSION
#define EDGECODER_VERSION "dev"
#endif

struct command {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand's name */
    const char *summary;
};

static const struct command commands[] = {
    { "coordinator", cmd_coordinator, "the coordinator: agent API (HTTP) and Coordinator (gRPC)" },
    { "agent", cmd_agent, "the agent: runs a coordinator's subtasks in the sandbox" },
    { "agent-sim", cmd_agent_sim, "many simulated agents against a coordinator (benchmarks)" },
    { "inference", cmd_inference, "the inference service: Inference (gRPC), /health and /metrics" },
    { "bootstrap", cmd_bootstrap, "bootstrap coordinator: migrations, then OLLAMA_MODEL" },
    { "migrate", cmd_migrate, "apply database migrations: migrate --db coordinator|portal" },
    { "edge-demo", cmd_edge_demo, "a minimal HTTP edge service (tests and benchmarks)" },
    { "mesh-demo", cmd_mesh_demo, "the gRPC Demo service over mTLS, and its client (tests)" },
    { "rpc", cmd_rpc, "grpcurl-style debugger: rpc ADDR list|describe SYMBOL|call METHOD JSON" },
    { "certs", cmd_certs, "development CA and SPIFFE leaf certificates: certs init|issue" },
    { "keygen", cmd_keygen, "an Ed25519 signing (or --x25519) key pair as PEM files" },
    { "sandbox", cmd_sandbox, "run a program in the agent's sandbox: sandbox run|probe" },
};

static void usage(FILE *out)
{
    fprintf(out, "usage: edgecoder <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-20s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n`edgecoder <command> --help` describes a command; services also take "
                 "--help-config.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 64;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("edgecoder %s\n", EDGECODER_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "edgecoder: unknown command \"%s\"\n\n", argv[1]);
    usage(stderr);
    return 64;
}
