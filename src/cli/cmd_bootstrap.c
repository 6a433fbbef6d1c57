/* edgecoder bootstrap coordinator: applies the coordinator database's migrations and, with
 * OLLAMA_AUTO_INSTALL=true, pulls OLLAMA_MODEL through Ollama's /api/pull, then prints one JSON
 * summary {ok, database, modelBootstrap}. It never downloads or runs an installer: Ollama must
 * already be running at OLLAMA_HOST. */
#include "cli/commands.h"
#include "common/ec_arena.h"
#include "common/ec_buf.h"
#include "common/ec_config.h"
#include "common/ec_embed.h"
#include "common/ec_http.h"
#include "common/ec_log.h"
#include "common/ec_migrate.h"
#include "inference/ollama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define EXIT_USAGE 64

static void usage(FILE *out)
{
    fprintf(out,
            "usage: edgecoder bootstrap coordinator\n"
            "\n"
            "Applies the coordinator migrations to DATABASE_URL, then, when\n"
            "OLLAMA_AUTO_INSTALL=true, pulls OLLAMA_MODEL (default qwen2.5:7b) through the Ollama\n"
            "at OLLAMA_HOST (default http://127.0.0.1:11434) unless it is installed already.\n"
            "Never installs Ollama itself. Prints\n"
            "{\"ok\":..,\"database\":{..},\"modelBootstrap\":{..}} on stdout.\n"
            "Exit status: 0 ok, 1 failed, 64 bad usage, 78 no DATABASE_URL.\n");
}

static void put_str(struct ec_buf *b, const char *key, const char *value)
{
    ec_buf_printf(b, "\"%s\":\"", key);
    ec_buf_json_escape(b, value, strlen(value));
    ec_buf_putc(b, '"');
}

static bool migrate(const char *url, struct ec_buf *out)
{
    struct ec_arena arena;
    ec_arena_init(&arena);
    struct ec_err err = { 0 };
    struct ec_migrate_report report = { 0 };
    struct ec_migration_list list;
    enum ec_status st =
        ec_migration_list_embedded(ec_migrations, "coordinator", &arena, &list, &err);
    if (st == EC_OK)
        st = ec_migrate_run(url, &list, &arena, &report, &err);
    ec_buf_printf(out, "{\"ok\":%s,\"name\":\"coordinator\",\"applied\":[",
                  st == EC_OK ? "true" : "false");
    for (size_t i = 0; i < report.napplied; i++) {
        ec_buf_puts(out, i ? ",\"" : "\"");
        ec_buf_json_escape(out, report.applied[i]->file, strlen(report.applied[i]->file));
        ec_buf_putc(out, '"');
    }
    ec_buf_printf(out, "],\"current\":%d", report.current);
    if (st != EC_OK) {
        ec_buf_putc(out, ',');
        put_str(out, "error", ec_err_code(&err));
        ec_buf_putc(out, ',');
        put_str(out, "message", err.msg);
    }
    ec_buf_putc(out, '}');
    ec_arena_release(&arena);
    return st == EC_OK;
}

struct pull_log {
    char last_status[128];
};

static enum ec_status on_progress(void *ctx, const struct inf_ollama_progress *p,
                                  struct ec_err *err)
{
    struct pull_log *pl = ctx;
    if (strcmp(p->status, pl->last_status) != 0) {
        snprintf(pl->last_status, sizeof(pl->last_status), "%s", p->status);
        EC_INFO("model pull", EC_LS("status", p->status), EC_LI("completed", p->completed),
                EC_LI("total", p->total));
    }
    return EC_OK;
}

static bool model_bootstrap(struct ec_buf *out)
{
    const char *auto_install = getenv("OLLAMA_AUTO_INSTALL");
    const char *model = getenv("OLLAMA_MODEL");
    if (model == NULL || model[0] == '\0')
        model = "qwen2.5:7b";
    ec_buf_puts(out, "{");
    put_str(out, "model", model);
    if (auto_install == NULL || strcasecmp(auto_install, "true") != 0) {
        ec_buf_puts(out, ",\"autoInstall\":false,\"ok\":true,\"action\":\"skipped\"}");
        return true;
    }
    ec_buf_puts(out, ",\"autoInstall\":true,");
    struct ec_err err = { 0 };
    struct inf_ollama *ol = NULL;
    enum ec_status st = inf_ollama_new(NULL, &ol, &err);
    const char *action = "pulled";
    if (st == EC_OK) {
        put_str(out, "host", inf_ollama_host(ol));
        ec_buf_putc(out, ',');
        struct inf_ollama_models models;
        st = inf_ollama_tags(ol, &models, &err);
        if (st == EC_OK && inf_ollama_models_has(&models, model)) {
            action = "present";
        } else if (st == EC_OK) {
            struct pull_log pl = { "" };
            st = inf_ollama_pull(ol, model, on_progress, &pl, &err);
        }
        inf_ollama_models_release(&models);
    }
    inf_ollama_free(ol);
    if (st == EC_OK) {
        ec_buf_printf(out, "\"ok\":true,\"action\":\"%s\"}", action);
        return true;
    }
    ec_buf_puts(out, "\"ok\":false,\"action\":\"failed\",");
    put_str(out, "error", ec_err_code(&err));
    ec_buf_putc(out, ',');
    put_str(out, "message", err.msg);
    ec_buf_putc(out, '}');
    return false;
}

int cmd_bootstrap(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc != 2 || strcmp(argv[1], "coordinator") != 0) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *url = getenv("DATABASE_URL");
    if (url == NULL || url[0] == '\0') {
        fprintf(stderr, "edgecoder bootstrap: DATABASE_URL is not set\n");
        return EC_EXIT_CONFIG;
    }
    ec_log_setup("bootstrap", EC_LOG_INFO, STDERR_FILENO);
    struct ec_err err = { 0 };
    if (ec_http_global_init(&err) != EC_OK) {
        fprintf(stderr, "edgecoder bootstrap: %s\n", err.msg);
        return 1;
    }
    struct ec_buf db, model;
    ec_buf_init(&db, 0);
    ec_buf_init(&model, 0);
    bool db_ok = migrate(url, &db);
    /* The model is pulled only onto a migrated database: a half-bootstrapped machine should fail
     * fast, not spend minutes downloading first. */
    bool model_ok =
        db_ok ? model_bootstrap(&model)
              : (ec_buf_puts(&model, "{\"ok\":false,\"action\":\"not attempted\"}"), false);
    printf("{\"ok\":%s,\"database\":%s,\"modelBootstrap\":%s}\n",
           db_ok && model_ok ? "true" : "false", db.data, model.data);
    fflush(stdout);
    ec_buf_release(&db);
    ec_buf_release(&model);
    ec_http_global_cleanup();
    ec_log_flush();
    return db_ok && model_ok ? 0 : 1;
}
