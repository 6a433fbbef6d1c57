/* edgecoder migrate: applies the forward-only migrations of one database (embedded, or from a
 * directory) and prints one JSON summary line on stdout. */
#include "cli/commands.h"
#include "common/ec_arena.h"
#include "common/ec_buf.h"
#include "common/ec_config.h"
#include "common/ec_embed.h"
#include "common/ec_log.h"
#include "common/ec_migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXIT_USAGE 64 /* EX_USAGE from sysexits.h */

/* The databases this binary migrates and where each one's URL comes from by default. */
static const struct {
    const char *db;
    const char *url_env;
} databases[] = {
    { "coordinator", "DATABASE_URL" },
    { "portal", "PORTAL_DATABASE_URL" },
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: edgecoder migrate --db coordinator|portal [--url URL] [--dir DIR]\n"
            "\n"
            "Applies, in order and each in its own transaction, the migrations the database has\n"
            "not recorded in schema_migrations. Concurrent runs take turns on an advisory lock.\n"
            "Refuses, applying nothing, if an applied file's checksum changed or the database\n"
            "has a version this binary does not know.\n"
            "\n"
            "  --db NAME   coordinator or portal\n"
            "  --url URL   PostgreSQL URL; default $DATABASE_URL (coordinator) or\n"
            "              $PORTAL_DATABASE_URL (portal)\n"
            "  --dir DIR   read NNNN_name.sql files from DIR instead of the embedded ones\n"
            "\n"
            "Prints {\"ok\":true,\"database\":...,\"applied\":[files],\"current\":N} on stdout.\n"
            "Exit status: 0 applied or nothing to do, 1 failed, 64 bad usage, 78 no URL.\n");
}

/* "--name value" or "--name=value"; advances *i past a separate value. */
static const char *option_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] != '\0' || *i + 1 >= argc)
        return NULL;
    return argv[++*i];
}

static void json_string(struct ec_buf *b, const char *s)
{
    ec_buf_putc(b, '"');
    ec_buf_json_escape(b, s, strlen(s));
    ec_buf_putc(b, '"');
}

static void print_summary(const char *db, const struct ec_migrate_report *report,
                          const struct ec_err *err)
{
    struct ec_buf b;
    ec_buf_init(&b, 0);
    ec_buf_printf(&b, "{\"ok\":%s,\"database\":", err == NULL ? "true" : "false");
    json_string(&b, db);
    ec_buf_puts(&b, ",\"applied\":[");
    for (size_t i = 0; i < report->napplied; i++) {
        if (i > 0)
            ec_buf_putc(&b, ',');
        json_string(&b, report->applied[i]->file);
    }
    ec_buf_printf(&b, "],\"current\":%d", report->current);
    if (err != NULL) {
        ec_buf_puts(&b, ",\"error\":");
        json_string(&b, ec_err_code(err));
        ec_buf_puts(&b, ",\"message\":");
        json_string(&b, err->msg);
    }
    ec_buf_puts(&b, "}\n");
    fputs(b.data, stdout);
    fflush(stdout);
    ec_buf_release(&b);
}

int cmd_migrate(int argc, char **argv)
{
    const char *db = NULL, *url = NULL, *dir = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if ((v = option_value(argc, argv, &i, "--db")) != NULL) {
            db = v;
        } else if ((v = option_value(argc, argv, &i, "--url")) != NULL) {
            url = v;
        } else if ((v = option_value(argc, argv, &i, "--dir")) != NULL) {
            dir = v;
        } else {
            fprintf(stderr, "edgecoder migrate: unexpected argument \"%s\"\n\n", argv[i]);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    const char *url_env = NULL;
    for (size_t i = 0; db != NULL && i < sizeof(databases) / sizeof(databases[0]); i++)
        if (strcmp(db, databases[i].db) == 0)
            url_env = databases[i].url_env;
    if (url_env == NULL) {
        fprintf(stderr, "edgecoder migrate: --db must be coordinator or portal\n\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    if (url == NULL)
        url = getenv(url_env);
    if (url == NULL || url[0] == '\0') {
        fprintf(stderr, "edgecoder migrate: no database URL: set %s or pass --url\n", url_env);
        return EC_EXIT_CONFIG;
    }

    ec_log_setup("migrate", EC_LOG_INFO, STDERR_FILENO);
    struct ec_arena arena;
    ec_arena_init(&arena);
    struct ec_err err = { 0 };
    struct ec_migrate_report report = { 0 };
    struct ec_migration_list list;
    enum ec_status st = dir != NULL
                            ? ec_migration_list_dir(dir, &arena, &list, &err)
                            : ec_migration_list_embedded(ec_migrations, db, &arena, &list, &err);
    if (st == EC_OK)
        st = ec_migrate_run(url, &list, &arena, &report, &err);
    print_summary(db, &report, st == EC_OK ? NULL : &err);
    if (st != EC_OK)
        fprintf(stderr, "edgecoder migrate: %s\n", err.msg);
    ec_arena_release(&arena);
    return st == EC_OK ? 0 : 1;
}
