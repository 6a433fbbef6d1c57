/* edgecoder migrate (placeholder until the PostgreSQL layer lands). */
#include "cli/commands.h"

#include <stdio.h>

int cmd_migrate(int argc, char **argv)
{
    fprintf(stderr, "migrate: not built yet\n");
    return 1;
}
