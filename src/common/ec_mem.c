/* Allocation wrappers that abort on exhaustion, the assertion hook, and clocks. */
#include "common/ec_mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Noreturn void oom(size_t n)
{
    char line[96];
    int len = snprintf(line, sizeof(line),
                       "{\"lvl\":\"fatal\",\"msg\":\"out of memory\",\"bytes\":%zu}\n", n);
    if (len > 0 && write(STDERR_FILENO, line, (size_t)len) < 0)
        abort();
    abort();
}

void *ec_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *ec_xcalloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (p == NULL)
        oom(count * n);
    return p;
}

void *ec_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *ec_xstrdup(const char *s)
{
    return ec_xstrndup(s, strlen(s));
}

char *ec_xstrndup(const char *s, size_t n)
{
    char *p = ec_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

_Noreturn void ec_assert_fail(const char *expr, const char *file, int line)
{
    char msg[512];
    int len = snprintf(msg, sizeof(msg),
                       "{\"lvl\":\"fatal\",\"msg\":\"assertion failed\",\"expr\":\"%s\","
                       "\"file\":\"%s\",\"line\":%d}\n",
                       expr, file, line);
    if (len > 0 && write(STDERR_FILENO, msg, (size_t)len) < 0)
        abort();
    abort();
}

int64_t ec_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ec_mono_ms(void)
{
    return ec_mono_us() / 1000;
}

int64_t ec_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
