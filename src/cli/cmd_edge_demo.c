/* edgecoder edge-demo (placeholder until the edge lands). */
#include "cli/commands.h"

#include <stdio.h>

int cmd_edge_demo(int argc, char **argv)
{
    fprintf(stderr, "edge-demo: not built yet\n");
    return 1;
}
