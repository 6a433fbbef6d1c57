/* Capped growable buffer. */
#include "common/ec_buf.h"
#include "common/ec_mem.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ec_buf_init(struct ec_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max ? max : SIZE_MAX - 1;
}

void ec_buf_release(struct ec_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void ec_buf_reset(struct ec_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

enum ec_status ec_buf_reserve(struct ec_buf *b, size_t extra)
{
    if (extra > b->max - b->len)
        return EC_ETOOBIG;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return EC_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    b->data = ec_xrealloc(b->data, cap);
    b->cap = cap;
    return EC_OK;
}

enum ec_status ec_buf_append(struct ec_buf *b, const void *p, size_t n)
{
    enum ec_status st = ec_buf_reserve(b, n);
    if (st != EC_OK)
        return st;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return EC_OK;
}

enum ec_status ec_buf_puts(struct ec_buf *b, const char *s)
{
    return ec_buf_append(b, s, strlen(s));
}

enum ec_status ec_buf_putc(struct ec_buf *b, char c)
{
    return ec_buf_append(b, &c, 1);
}

enum ec_status ec_buf_printf(struct ec_buf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return EC_EINTERNAL;
    if ((size_t)n < sizeof(small))
        return ec_buf_append(b, small, (size_t)n);
    enum ec_status st = ec_buf_reserve(b, (size_t)n);
    if (st != EC_OK)
        return st;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return EC_OK;
}

enum ec_status ec_buf_json_escape(struct ec_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        enum ec_status st = ec_buf_append(b, s + start, i - start);
        if (st != EC_OK)
            return st;
        char esc[7] = { '\\', 0, 0, 0, 0, 0, 0 };
        size_t elen = 2;
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        }
        st = ec_buf_append(b, esc, elen);
        if (st != EC_OK)
            return st;
        start = i + 1;
    }
    return ec_buf_append(b, s + start, n - start);
}

char *ec_buf_detach(struct ec_buf *b, size_t *len)
{
    char *p = b->data;
    if (len)
        *len = b->len;
    if (p == NULL)
        p = ec_xstrdup("");
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}
