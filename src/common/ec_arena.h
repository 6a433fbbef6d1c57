/* A per-request arena: bump allocation from chunks, freed all at once. Non-memory resources
 * (PGresult, json_t, buffers) register a cleanup that runs, newest first, on reset or release.
 * An arena is confined to one thread. */
#ifndef EC_ARENA_H
#define EC_ARENA_H

#include <stdarg.h>
#include <stddef.h>

struct ec_arena_chunk;
struct ec_arena_cleanup;

struct ec_arena {
    struct ec_arena_chunk *head;       /* newest chunk first */
    struct ec_arena_cleanup *cleanups; /* newest first */
    size_t chunk_size;
    char first[2048]; /* inline first chunk: small requests never call malloc */
    size_t first_used;
};

void ec_arena_init(struct ec_arena *a);
/* Runs the cleanups and frees every chunk; the arena can be used again. */
void ec_arena_reset(struct ec_arena *a);
void ec_arena_release(struct ec_arena *a);

/* 16-byte aligned; never NULL (out of memory aborts). */
void *ec_arena_alloc(struct ec_arena *a, size_t n);
void *ec_arena_zalloc(struct ec_arena *a, size_t n);
char *ec_arena_strdup(struct ec_arena *a, const char *s);
char *ec_arena_strndup(struct ec_arena *a, const char *s, size_t n);
char *ec_arena_memdup(struct ec_arena *a, const void *p, size_t n);
char *ec_arena_sprintf(struct ec_arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

typedef void (*ec_cleanup_fn)(void *ptr);
void ec_arena_defer(struct ec_arena *a, ec_cleanup_fn fn, void *ptr);

#endif
