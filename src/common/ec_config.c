/* Configuration loader: parse every variable, collect every problem, never stop at the first. */
#include "common/ec_config.h"
#include "common/ec_mem.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const char *const type_names[] = {
    [EC_CFG_STR] = "string", [EC_CFG_INT] = "integer", [EC_CFG_BOOL] = "bool",
    [EC_CFG_URL] = "url",    [EC_CFG_PATH] = "file",
};

bool ec_config_production(void)
{
    const char *env = getenv("EDGECODER_ENV");
    return env != NULL && strcmp(env, "production") == 0;
}

void ec_cfg_problem(struct ec_cfg_problems *p, const char *env, const char *fmt, ...)
{
    va_list ap;
    ec_buf_printf(&p->text, "  %s: ", env);
    char line[512];
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    ec_buf_puts(&p->text, line);
    ec_buf_putc(&p->text, '\n');
    p->count++;
}

static bool parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = { "true", "1", "yes", "on" };
    static const char *const no[] = { "false", "0", "no", "off" };
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

static bool url_ok(const char *s)
{
    static const char *const schemes[] = { "http://", "https://", "grpc://", "grpcs://" };
    for (size_t i = 0; i < 4; i++) {
        size_t n = strlen(schemes[i]);
        if (strncasecmp(s, schemes[i], n) == 0)
            return s[n] != '\0' && s[n] != '/' && s[n] != ':';
    }
    return false;
}

/* Secrets are never echoed back, even in an error about their own value. */
static const char *shown(const struct ec_cfg_var *v, const char *value)
{
    return (v->flags & EC_CFG_SECRET) ? "(secret)" : value;
}

static void load_var(const struct ec_cfg_var *v, void *cfg, bool production,
                     struct ec_cfg_problems *p)
{
    char *field = (char *)cfg + v->offset;
    const char *value = getenv(v->env);
    bool from_env = value != NULL;
    if (value == NULL)
        value = v->dflt;
    if ((v->flags & EC_CFG_REQUIRED) && (value == NULL || value[0] == '\0'))
        ec_cfg_problem(p, v->env, "is required (%s)", v->desc);
    else if ((v->flags & EC_CFG_REQUIRED_PROD) && production && (value == NULL || value[0] == '\0'))
        ec_cfg_problem(p, v->env, "is required when EDGECODER_ENV=production (%s)", v->desc);

    switch (v->type) {
    case EC_CFG_INT: {
        int64_t *out = (int64_t *)(void *)field;
        *out = 0;
        if (value == NULL || value[0] == '\0')
            break;
        char *end = NULL;
        errno = 0;
        long long n = strtoll(value, &end, 10);
        if (errno != 0 || end == value || *end != '\0')
            ec_cfg_problem(p, v->env, "cannot parse \"%s\" as an integer", shown(v, value));
        else if (n < v->min || n > v->max)
            ec_cfg_problem(p, v->env, "%lld is out of range [%lld, %lld]", n, (long long)v->min,
                           (long long)v->max);
        else
            *out = n;
        break;
    }
    case EC_CFG_BOOL: {
        bool *out = (bool *)(void *)field;
        *out = false;
        if (value != NULL && value[0] != '\0' && !parse_bool(value, out))
            ec_cfg_problem(p, v->env, "cannot parse \"%s\" as a boolean (true or false)",
                           shown(v, value));
        break;
    }
    case EC_CFG_URL:
    case EC_CFG_PATH:
    case EC_CFG_STR: {
        char **out = (char **)(void *)field;
        *out = NULL;
        if (value == NULL)
            break;
        if (value[0] != '\0' && v->type == EC_CFG_URL && !url_ok(value))
            ec_cfg_problem(p, v->env,
                           "\"%s\" is not a URL (http, https, grpc or grpcs with a host)",
                           shown(v, value));
        if (value[0] != '\0' && v->type == EC_CFG_PATH && access(value, R_OK) != 0)
            ec_cfg_problem(p, v->env, "cannot read file \"%s\": %s", value, strerror(errno));
        *out = ec_xstrdup(value);
        break;
    }
    }
    if (from_env && value[0] != '\0' && v->validate != NULL) {
        struct ec_err err = { 0 };
        if (v->validate(value, &err) != EC_OK)
            ec_cfg_problem(p, v->env, "%s", err.msg);
    }
}

int ec_config_load(const struct ec_cfg_spec *spec, void *cfg, struct ec_cfg_problems *problems)
{
    ec_buf_init(&problems->text, 64 * 1024);
    problems->count = 0;
    bool production = ec_config_production();
    const char *env = getenv("EDGECODER_ENV");
    if (env != NULL && env[0] != '\0' && strcmp(env, "production") != 0 &&
        strcmp(env, "development") != 0 && strcmp(env, "test") != 0)
        ec_cfg_problem(problems, "EDGECODER_ENV",
                       "\"%s\" is not one of production, development, test", env);
    for (size_t i = 0; i < spec->nvars; i++)
        load_var(&spec->vars[i], cfg, production, problems);
    if (spec->check != NULL)
        spec->check(cfg, production, problems);
    return problems->count;
}

void ec_config_load_or_exit(const struct ec_cfg_spec *spec, void *cfg)
{
    struct ec_cfg_problems problems;
    if (ec_config_load(spec, cfg, &problems) == 0) {
        ec_buf_release(&problems.text);
        return;
    }
    fprintf(stderr, "edgecoder %s: invalid configuration (%d problem%s):\n%s", spec->service,
            problems.count, problems.count == 1 ? "" : "s", problems.text.data);
    fprintf(stderr, "run `edgecoder %s --help-config` for every variable\n", spec->service);
    ec_buf_release(&problems.text);
    exit(EC_EXIT_CONFIG);
}

void ec_config_release(const struct ec_cfg_spec *spec, void *cfg)
{
    for (size_t i = 0; i < spec->nvars; i++) {
        const struct ec_cfg_var *v = &spec->vars[i];
        if (v->type == EC_CFG_STR || v->type == EC_CFG_URL || v->type == EC_CFG_PATH) {
            char **field = (char **)(void *)((char *)cfg + v->offset);
            free(*field);
            *field = NULL;
        }
    }
}

static const char *flags_text(unsigned flags)
{
    if (flags & EC_CFG_REQUIRED)
        return (flags & EC_CFG_SECRET) ? "required, secret" : "required";
    if (flags & EC_CFG_REQUIRED_PROD)
        return (flags & EC_CFG_SECRET) ? "required in production, secret"
                                       : "required in production";
    return (flags & EC_CFG_SECRET) ? "secret" : "";
}

void ec_config_print_help(const struct ec_cfg_spec *spec, FILE *out, bool markdown)
{
    if (markdown) {
        fprintf(out, "| variable | type | default | | description |\n|---|---|---|---|---|\n");
        for (size_t i = 0; i < spec->nvars; i++) {
            const struct ec_cfg_var *v = &spec->vars[i];
            fprintf(out, "| `%s` | %s | %s%s%s | %s | %s |\n", v->env, type_names[v->type],
                    v->dflt ? "`" : "", v->dflt ? v->dflt : "", v->dflt ? "`" : "",
                    flags_text(v->flags), v->desc);
        }
        return;
    }
    fprintf(out,
            "edgecoder %s: configuration from the environment\n"
            "(EDGECODER_ENV=production turns on the production rules)\n\n",
            spec->service);
    for (size_t i = 0; i < spec->nvars; i++) {
        const struct ec_cfg_var *v = &spec->vars[i];
        fprintf(out, "  %-40s %-8s", v->env, type_names[v->type]);
        if (v->type == EC_CFG_INT)
            fprintf(out, " [%lld..%lld]", (long long)v->min, (long long)v->max);
        if (v->dflt != NULL && v->dflt[0] != '\0')
            fprintf(out, " default %s", v->dflt);
        const char *f = flags_text(v->flags);
        if (f[0] != '\0')
            fprintf(out, " (%s)", f);
        fprintf(out, "\n      %s\n", v->desc);
    }
}

enum ec_status ec_cfg_validate_one_of(const char *value, const char *const *allowed,
                                      struct ec_err *err)
{
    char list[160] = "";
    for (size_t i = 0; allowed[i] != NULL; i++) {
        if (strcmp(value, allowed[i]) == 0)
            return EC_OK;
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
                 allowed[i]);
    }
    return ec_err_set(err, EC_EINVAL, NULL, "\"%.64s\" is not one of %s", value, list);
}

enum ec_status ec_cfg_validate_listen(const char *value, struct ec_err *err)
{
    const char *port = strrchr(value, ':');
    port = port ? port + 1 : value;
    char *end = NULL;
    long n = strtol(port, &end, 10);
    if (end == port || *end != '\0' || n < 0 || n > 65535)
        return ec_err_set(err, EC_EINVAL, NULL, "cannot parse \"%s\" as [host:]port", value);
    return EC_OK;
}
