/* A growable byte buffer with a hard cap: every buffer filled from the network has one.
 * Always NUL-terminated after data[len] when data is non-NULL. */
#ifndef EC_BUF_H
#define EC_BUF_H

#include "common/ec_status.h"

#include <stdarg.h>
#include <stddef.h>

struct ec_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max; /* appends that would pass this fail with EC_ETOOBIG; 0 means SIZE_MAX */
};

void ec_buf_init(struct ec_buf *b, size_t max);
void ec_buf_release(struct ec_buf *b);
void ec_buf_reset(struct ec_buf *b); /* len = 0, keeps the memory */
enum ec_status ec_buf_reserve(struct ec_buf *b, size_t extra);
enum ec_status ec_buf_append(struct ec_buf *b, const void *p, size_t n);
enum ec_status ec_buf_puts(struct ec_buf *b, const char *s);
enum ec_status ec_buf_putc(struct ec_buf *b, char c);
enum ec_status ec_buf_printf(struct ec_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends s as the inside of a JSON string literal (no quotes added), byte for byte as
 * JavaScript's JSON.stringify writes it: \" \\ \b \f \n \r \t, other control characters as \u00xx
 * in lower-case hex, everything else (DEL and UTF-8 included) as is. Signed records hash this
 * text, so it must not change. */
enum ec_status ec_buf_json_escape(struct ec_buf *b, const char *s, size_t n);
/* Hands the memory to the caller (free with free()); the buffer is left empty. */
char *ec_buf_detach(struct ec_buf *b, size_t *len);

#endif
