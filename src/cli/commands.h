/* The subcommands of `edgecoder`; each lives in its own cmd_<name>.c. */
#ifndef EC_CLI_COMMANDS_H
#define EC_CLI_COMMANDS_H

int cmd_migrate(int argc, char **argv);
int cmd_edge_demo(int argc, char **argv);
int cmd_mesh_demo(int argc, char **argv);
int cmd_rpc(int argc, char **argv);
int cmd_certs(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_sandbox(int argc, char **argv);
int cmd_coordinator(int argc, char **argv);
int cmd_agent_sim(int argc, char **argv);
int cmd_agent(int argc, char **argv);
int cmd_inference(int argc, char **argv);
int cmd_bootstrap(int argc, char **argv);

#endif
