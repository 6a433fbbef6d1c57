/* Allocation that cannot fail (out of memory aborts), assertions, and small time helpers. */
#ifndef EC_MEM_H
#define EC_MEM_H

#include <stddef.h>
#include <stdint.h>

void *ec_xmalloc(size_t n);
void *ec_xcalloc(size_t count, size_t n);
void *ec_xrealloc(void *p, size_t n);
char *ec_xstrdup(const char *s);
char *ec_xstrndup(const char *s, size_t n);

/* A broken invariant is a bug: log file:line and abort. */
#define EC_ASSERT(cond)                                \
    do {                                               \
        if (!(cond))                                   \
            ec_assert_fail(#cond, __FILE__, __LINE__); \
    } while (0)
_Noreturn void ec_assert_fail(const char *expr, const char *file, int line);

/* Milliseconds: wall clock (for timestamps) and monotonic (for durations and deadlines). */
int64_t ec_now_ms(void);
int64_t ec_mono_ms(void);
int64_t ec_mono_us(void);

#endif
