/* Forward-only SQL migrations: NNNN_name.sql files, embedded at build time or read from a
 * directory, applied in order under an advisory lock and recorded with their SHA-256 in
 * schema_migrations. The list functions are pure; only ec_migrate_run touches a database. */
#ifndef EC_MIGRATE_H
#define EC_MIGRATE_H

#include "common/ec_arena.h"
#include "common/ec_embed.h"
#include "common/ec_status.h"

#include <stddef.h>

struct ec_migration {
    int version;      /* the NNNN prefix */
    const char *file; /* "0001_service_meta.sql", without the directory */
    const char *sql;  /* NUL-terminated body */
    size_t len;
};

/* Sorted by version, strictly increasing. Items and strings are borrowed from the source
 * (embedded table) or allocated in the arena given to the loader. */
struct ec_migration_list {
    struct ec_migration *items;
    size_t count;
};

/* The version of a file named NNNN_name.sql: four or more digits, an underscore, a non-empty name
 * of letters, digits, '_' and '-', and ".sql". Version 0 and versions past 999999999 are
 * rejected. */
enum ec_status ec_migration_name_parse(const char *file, int *version, struct ec_err *err);

/* Parses every item's version from its file name, sorts by version and rejects bad names and
 * duplicate versions, naming the file. Gaps between versions are allowed. */
enum ec_status ec_migration_list_check(struct ec_migration *items, size_t count,
                                       struct ec_err *err);

/* The migrations of database `db` ("coordinator", "portal") from an embedded table: the rows
 * whose path starts with "<db>/". No rows is an error. */
enum ec_status ec_migration_list_embedded(const struct ec_embedded_file *table, const char *db,
                                          struct ec_arena *arena, struct ec_migration_list *out,
                                          struct ec_err *err);
/* Every regular file in dir (dot files skipped); for tests and one-off repairs. */
enum ec_status ec_migration_list_dir(const char *dir, struct ec_arena *arena,
                                     struct ec_migration_list *out, struct ec_err *err);

/* The SHA-256 of a migration's body as 64 lower-case hex digits plus NUL. */
void ec_migration_checksum(const struct ec_migration *m, char hex[65]);

struct ec_migrate_report {
    const struct ec_migration **applied; /* in the order applied; allocated in the arena */
    size_t napplied;
    int current; /* the highest applied version afterwards, 0 if none */
};

/* Connects to conninfo (never logged) on a dedicated connection, takes the migrations advisory
 * lock, and applies, each in its own transaction, every migration not yet recorded. Refuses
 * before applying anything if a recorded checksum differs from the file, if the database records
 * a version the list lacks (a newer schema than this binary), or if a missing version is older
 * than the newest recorded one. Stops at the first failing file, naming it with PostgreSQL's
 * message; what was applied before stays applied and is in the report. A file must not contain
 * its own BEGIN/COMMIT. Status: EC_EUNAVAIL when the database cannot be reached, EC_ECONFLICT when
 * it refuses, EC_EINTERNAL when a migration fails. */
enum ec_status ec_migrate_run(const char *conninfo, const struct ec_migration_list *list,
                              struct ec_arena *arena, struct ec_migrate_report *report,
                              struct ec_err *err);

#endif
