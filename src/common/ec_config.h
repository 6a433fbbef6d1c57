/* Table-driven configuration from the environment. Each service declares one table of variables
 * (env name, type, field offset, default, range or validator, flags, description). Loading
 * checks every variable and collects every problem; the caller prints them all and exits 78. */
#ifndef EC_CONFIG_H
#define EC_CONFIG_H

#include "common/ec_buf.h"
#include "common/ec_status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define EC_EXIT_CONFIG 78 /* EX_CONFIG from sysexits.h */

enum ec_cfg_type {
    EC_CFG_STR,  /* char * (heap; freed by ec_config_release) */
    EC_CFG_INT,  /* int64_t, within [min, max] */
    EC_CFG_BOOL, /* bool: true/false/1/0/yes/no/on/off */
    EC_CFG_URL,  /* char *: http(s):// or grpc(s):// with a host */
    EC_CFG_PATH, /* char *: a path to an existing readable file */
};

enum {
    EC_CFG_SECRET = 1u << 0,        /* never printed; --help-config shows "(secret)" */
    EC_CFG_REQUIRED = 1u << 1,      /* must be set in every mode */
    EC_CFG_REQUIRED_PROD = 1u << 2, /* must be set, and non-empty, when EDGECODER_ENV=production */
};

struct ec_cfg_var {
    const char *env;
    enum ec_cfg_type type;
    size_t offset; /* of the field in the service's config struct */
    const char *dflt;
    int64_t min, max; /* EC_CFG_INT only */
    unsigned flags;
    /* Optional extra check on a set value; fill err and return non-OK to reject it. */
    enum ec_status (*validate)(const char *value, struct ec_err *err);
    const char *desc;
};

struct ec_cfg_problems {
    struct ec_buf text; /* one line per problem */
    int count;
};

struct ec_cfg_spec {
    const char *service;
    const struct ec_cfg_var *vars;
    size_t nvars;
    /* Cross-field rules (production or otherwise), run after every variable loaded. */
    void (*check)(const void *cfg, bool production, struct ec_cfg_problems *problems);
};

#define EC_CFG_FIELD(type, field) offsetof(type, field)

/* True when EDGECODER_ENV=production. */
bool ec_config_production(void);

void ec_cfg_problem(struct ec_cfg_problems *p, const char *env, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fills cfg from the environment; returns the number of problems, each appended to `problems`
 * (initialised here; release with ec_buf_release(&problems->text)). */
int ec_config_load(const struct ec_cfg_spec *spec, void *cfg, struct ec_cfg_problems *problems);
/* Loads, or prints every problem to stderr and exits with EC_EXIT_CONFIG. */
void ec_config_load_or_exit(const struct ec_cfg_spec *spec, void *cfg);
void ec_config_release(const struct ec_cfg_spec *spec, void *cfg);
/* The table for people: plain text, or a Markdown table for the README. */
void ec_config_print_help(const struct ec_cfg_spec *spec, FILE *out, bool markdown);

/* Common validators. */
enum ec_status ec_cfg_validate_listen(const char *value, struct ec_err *err); /* [host:]port */
/* For a variable's validator: value must be one of the NULL-terminated allowed list; the error
 * lists them. */
enum ec_status ec_cfg_validate_one_of(const char *value, const char *const *allowed,
                                      struct ec_err *err);

#endif
