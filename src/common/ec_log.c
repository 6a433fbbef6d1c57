/* JSON-lines logger. Each line is built on the stack and written with one write(2), so lines
 * from different threads never interleave. */
#include "common/ec_log.h"
#include "common/ec_buf.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static const char *log_svc = "edgecoder";
static enum ec_log_level log_min = EC_LOG_INFO;
static int log_fd = STDERR_FILENO;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void ec_log_setup(const char *svc, enum ec_log_level min_level, int fd)
{
    log_svc = svc;
    log_min = min_level;
    log_fd = fd;
}

enum ec_log_level ec_log_level_parse(const char *s, enum ec_log_level dflt)
{
    for (size_t i = 0; s != NULL && i < sizeof(level_names) / sizeof(level_names[0]); i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return (enum ec_log_level)i;
    return dflt;
}

int ec_log_enabled(enum ec_log_level lvl)
{
    return lvl >= log_min;
}

void ec_log_fields(enum ec_log_level lvl, const char *msg, const struct ec_log_field *fields)
{
    char stack[2048];
    /* cap is the stack array and max keeps room for the closing "}\n": ec_buf never reallocates. */
    struct ec_buf b = { .data = stack, .len = 0, .cap = sizeof(stack), .max = sizeof(stack) - 32 };
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);

    ec_buf_printf(&b, "{\"ts\":\"%s.%03ldZ\",\"lvl\":\"%s\",\"svc\":\"", when, ts.tv_nsec / 1000000,
                  level_names[lvl]);
    ec_buf_json_escape(&b, log_svc, strlen(log_svc));
    ec_buf_puts(&b, "\",\"msg\":\"");
    ec_buf_json_escape(&b, msg, strlen(msg));
    ec_buf_putc(&b, '"');
    int truncated = 0;
    for (const struct ec_log_field *f = fields; f != NULL && f->type != EC_LF_END; f++) {
        size_t field_start = b.len;
        int bad = ec_buf_puts(&b, ",\"") != EC_OK;
        bad |= ec_buf_json_escape(&b, f->key, strlen(f->key)) != EC_OK;
        bad |= ec_buf_puts(&b, "\":") != EC_OK;
        switch (f->type) {
        case EC_LF_STR:
            if (f->v.s == NULL) {
                bad |= ec_buf_puts(&b, "null") != EC_OK;
                break;
            }
            bad |= ec_buf_putc(&b, '"') != EC_OK;
            bad |= ec_buf_json_escape(&b, f->v.s, strnlen(f->v.s, 512)) != EC_OK;
            bad |= ec_buf_putc(&b, '"') != EC_OK;
            break;
        case EC_LF_INT:
            bad |= ec_buf_printf(&b, "%lld", (long long)f->v.i) != EC_OK;
            break;
        case EC_LF_DBL:
            bad |= ec_buf_printf(&b, "%.3f", f->v.d) != EC_OK;
            break;
        case EC_LF_BOOL:
            bad |= ec_buf_puts(&b, f->v.i ? "true" : "false") != EC_OK;
            break;
        case EC_LF_END:
            break;
        }
        if (bad) {
            /* A field that does not fit is dropped whole, so the line still parses. */
            b.len = field_start;
            truncated = 1;
            break;
        }
    }
    if (truncated) {
        memcpy(b.data + b.len, ",\"truncated\":true", 17);
        b.len += 17;
    }
    memcpy(b.data + b.len, "}\n", 2);
    b.len += 2;
    ssize_t w = write(log_fd, b.data, b.len);
    (void)w;
}
