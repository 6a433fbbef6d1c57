/* Structured logs: one JSON object per line, one write(2): ts, lvl, svc, msg, then fields.
 * msg is a constant phrase; variable data goes in fields. Never log tokens, keys or bodies. */
#ifndef EC_LOG_H
#define EC_LOG_H

#include "common/ec_config.h"

#include <stddef.h>
#include <stdint.h>

enum ec_log_level { EC_LOG_DEBUG, EC_LOG_INFO, EC_LOG_WARN, EC_LOG_ERROR };

enum ec_log_type { EC_LF_END = 0, EC_LF_STR, EC_LF_INT, EC_LF_DBL, EC_LF_BOOL };

struct ec_log_field {
    enum ec_log_type type;
    const char *key;
    union {
        const char *s;
        int64_t i;
        double d;
    } v;
};

#define EC_LS(k, val) ((struct ec_log_field){ .type = EC_LF_STR, .key = (k), .v.s = (val) })
#define EC_LI(k, val) \
    ((struct ec_log_field){ .type = EC_LF_INT, .key = (k), .v.i = (int64_t)(val) })
#define EC_LD(k, val) ((struct ec_log_field){ .type = EC_LF_DBL, .key = (k), .v.d = (double)(val) })
#define EC_LB(k, val) ((struct ec_log_field){ .type = EC_LF_BOOL, .key = (k), .v.i = !!(val) })

/* The service name ("coordinator", "portal", ...), the minimum level, and the fd (default 2). */
void ec_log_setup(const char *svc, enum ec_log_level min_level, int fd);
enum ec_log_level ec_log_level_parse(const char *s, enum ec_log_level dflt);
/* Debug and info lines are buffered per thread and written at least every interval_ms (also when
 * a buffer fills, at thread exit and at process exit); warnings and errors are never delayed.
 * 0 or less: no change (lines are written at once by default). */
void ec_log_set_buffered(int interval_ms);
/* Writes every thread's buffered lines now. */
void ec_log_flush(void);
int ec_log_enabled(enum ec_log_level lvl);
void ec_log_fields(enum ec_log_level lvl, const char *msg, const struct ec_log_field *fields);

/* The EDGECODER_LOG_* variables every service shares: embed a struct ec_log_env in the service's
 * config struct, put EC_LOG_ENV_CFG_VARS(struct my_cfg, member) in its table, and call
 * ec_log_env_apply once the config has loaded. */
struct ec_log_env {
    char *level;
    int64_t flush_ms;
};

enum ec_status ec_log_validate_level(const char *value, struct ec_err *err);
void ec_log_env_apply(const char *svc, const struct ec_log_env *env);

#define EC_LOG_ENV_CFG_VARS(type, member)                                                          \
    { "EDGECODER_LOG_LEVEL",                                                                       \
      EC_CFG_STR,                                                                                  \
      offsetof(type, member.level),                                                                \
      "info",                                                                                      \
      0,                                                                                           \
      0,                                                                                           \
      0,                                                                                           \
      ec_log_validate_level,                                                                       \
      "least severe log level written: debug, info, warn or error" },                              \
    {                                                                                              \
        "EDGECODER_LOG_FLUSH_MS", EC_CFG_INT, offsetof(type, member.flush_ms), "200", 0, 10000, 0, \
            NULL,                                                                                  \
            "debug/info lines (the access log) are written in batches at least this often, "       \
            "milliseconds; 0 writes every line at once"                                            \
    }

#define EC_LOG_(lvl, msg, ...)                                                               \
    do {                                                                                     \
        if (ec_log_enabled(lvl))                                                             \
            ec_log_fields(lvl, msg,                                                          \
                          (const struct ec_log_field[]){ __VA_ARGS__ __VA_OPT__(, ){ 0 } }); \
    } while (0)
#define EC_DEBUG(msg, ...) EC_LOG_(EC_LOG_DEBUG, msg __VA_OPT__(, ) __VA_ARGS__)
#define EC_INFO(msg, ...)  EC_LOG_(EC_LOG_INFO, msg __VA_OPT__(, ) __VA_ARGS__)
#define EC_WARN(msg, ...)  EC_LOG_(EC_LOG_WARN, msg __VA_OPT__(, ) __VA_ARGS__)
#define EC_ERROR(msg, ...) EC_LOG_(EC_LOG_ERROR, msg __VA_OPT__(, ) __VA_ARGS__)

#endif
