/* `edgecoder inference client ...`: the Inference and Ollama clients as a command-line tool
 * (integration tests, tools/bench_inference). */
#ifndef INF_TOOL_H
#define INF_TOOL_H

/* argv[0] is "client"; returns the process exit status. */
int inf_tool_main(int argc, char **argv);

#endif
