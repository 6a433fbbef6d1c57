/* Arena allocator: an inline first block, then chunks that grow for large requests. */
#include "common/ec_arena.h"
#include "common/ec_mem.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ec_arena_chunk {
    struct ec_arena_chunk *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
};

struct ec_arena_cleanup {
    struct ec_arena_cleanup *next;
    ec_cleanup_fn fn;
    void *ptr;
};

#define ALIGN16(n) (((n) + 15u) & ~(size_t)15u)

void ec_arena_init(struct ec_arena *a)
{
    a->head = NULL;
    a->cleanups = NULL;
    a->chunk_size = 8192;
    a->first_used = 0;
}

void ec_arena_reset(struct ec_arena *a)
{
    /* Cleanup records live in the arena itself, so run them all before freeing chunks. */
    for (struct ec_arena_cleanup *c = a->cleanups; c != NULL; c = c->next)
        c->fn(c->ptr);
    a->cleanups = NULL;
    struct ec_arena_chunk *ch = a->head;
    while (ch != NULL) {
        struct ec_arena_chunk *next = ch->next;
        free(ch);
        ch = next;
    }
    a->head = NULL;
    a->first_used = 0;
}

void ec_arena_release(struct ec_arena *a)
{
    ec_arena_reset(a);
}

void *ec_arena_alloc(struct ec_arena *a, size_t n)
{
    n = ALIGN16(n ? n : 1);
    /* The inline block is aligned by its offset within the struct; align the pointer itself. */
    uintptr_t base = (uintptr_t)a->first;
    size_t pad = (size_t)((16 - (base & 15)) & 15);
    if (a->head == NULL && pad + a->first_used + n <= sizeof(a->first)) {
        void *p = a->first + pad + a->first_used;
        a->first_used += n;
        return p;
    }
    struct ec_arena_chunk *ch = a->head;
    if (ch == NULL || ch->size - ch->used < n) {
        size_t size = a->chunk_size;
        if (n > size / 4)
            size = n; /* a big allocation gets a chunk of its own */
        struct ec_arena_chunk *fresh = ec_xmalloc(sizeof(*fresh) + size);
        fresh->size = size;
        fresh->used = 0;
        if (n == size && ch != NULL) {
            /* keep the current chunk at the head so its free space stays usable */
            fresh->next = ch->next;
            ch->next = fresh;
            fresh->used = n;
            return fresh->data;
        }
        fresh->next = ch;
        a->head = fresh;
        if (a->chunk_size < 65536)
            a->chunk_size *= 2;
        ch = fresh;
    }
    void *p = ch->data + ch->used;
    ch->used += n;
    return p;
}

void *ec_arena_zalloc(struct ec_arena *a, size_t n)
{
    void *p = ec_arena_alloc(a, n);
    memset(p, 0, n);
    return p;
}

char *ec_arena_memdup(struct ec_arena *a, const void *p, size_t n)
{
    char *q = ec_arena_alloc(a, n + 1);
    if (n)
        memcpy(q, p, n);
    q[n] = '\0';
    return q;
}

char *ec_arena_strndup(struct ec_arena *a, const char *s, size_t n)
{
    return ec_arena_memdup(a, s, strnlen(s, n));
}

char *ec_arena_strdup(struct ec_arena *a, const char *s)
{
    return ec_arena_memdup(a, s, strlen(s));
}

char *ec_arena_sprintf(struct ec_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    EC_ASSERT(n >= 0);
    char *p = ec_arena_alloc(a, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void ec_arena_defer(struct ec_arena *a, ec_cleanup_fn fn, void *ptr)
{
    struct ec_arena_cleanup *c = ec_arena_alloc(a, sizeof(*c));
    c->fn = fn;
    c->ptr = ptr;
    c->next = a->cleanups;
    a->cleanups = c;
}
