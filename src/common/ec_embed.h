/* Files embedded into the binary at build time (cmake/embed.cmake): web assets, SQL migrations.
 * Each table ends with a row whose path is NULL. Paths are relative to the embedded folder. */
#ifndef EC_EMBED_H
#define EC_EMBED_H

#include <stddef.h>

struct ec_embedded_file {
    const char *path;
    const unsigned char *data; /* NUL-terminated for convenience; len excludes the NUL */
    size_t len;
};

extern const struct ec_embedded_file edge_assets[];   /* assets/ */
extern const struct ec_embedded_file ec_migrations[]; /* db/: "coordinator/0001_x.sql", ... */

#endif
