/* The sandbox executor: names and defaults of modes and languages, and sandbox_run's outline
 * (subset check, spawn, result). Spawning and capture live in sandbox_exec.c. */
#include "agent/sandbox.h"

#include <stdlib.h>
#include <string.h>

struct name_entry {
    const char *name;
    int value;
};

static const struct name_entry mode_names[] = {
    { "bubblewrap", SANDBOX_BWRAP },
    { "bwrap", SANDBOX_BWRAP },
    { "docker", SANDBOX_DOCKER },
    { "none", SANDBOX_NONE },
};

static const struct name_entry language_names[] = {
    { "python", SANDBOX_PYTHON },         { "py", SANDBOX_PYTHON },
    { "javascript", SANDBOX_JAVASCRIPT }, { "js", SANDBOX_JAVASCRIPT },
    { "node", SANDBOX_JAVASCRIPT },
};

static int name_lookup(const struct name_entry *table, size_t n, const char *name)
{
    if (name == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (strcmp(table[i].name, name) == 0)
            return table[i].value;
    return -1;
}

int sandbox_mode_parse(const char *name)
{
    return name_lookup(mode_names, sizeof(mode_names) / sizeof(mode_names[0]), name);
}

const char *sandbox_mode_name(enum sandbox_mode mode)
{
    switch (mode) {
    case SANDBOX_BWRAP:
        return "bubblewrap";
    case SANDBOX_DOCKER:
        return "docker";
    case SANDBOX_NONE:
        return "none";
    }
    return "unknown";
}

int sandbox_language_parse(const char *name)
{
    return name_lookup(language_names, sizeof(language_names) / sizeof(language_names[0]), name);
}

const char *sandbox_language_name(enum sandbox_language lang)
{
    switch (lang) {
    case SANDBOX_PYTHON:
        return "python";
    case SANDBOX_JAVASCRIPT:
        return "javascript";
    }
    return "unknown";
}

enum ec_status sandbox_probe(const struct sandbox_opts *opts, struct ec_err *err)
{
    return ec_err_set(err, EC_EUNIMPL, "sandbox_unavailable", "sandbox not implemented yet");
}

enum ec_status sandbox_run(const struct sandbox_opts *opts, enum sandbox_language lang,
                           const char *code, size_t code_len, struct sandbox_result *result,
                           struct ec_err *err)
{
    return ec_err_set(err, EC_EUNIMPL, "sandbox_unavailable", "sandbox not implemented yet");
}

void sandbox_result_release(struct sandbox_result *result)
{
    if (result == NULL)
        return;
    free(result->stdout_text);
    free(result->stderr_text);
    result->stdout_text = NULL;
    result->stderr_text = NULL;
}
