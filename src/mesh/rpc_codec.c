/* Glue between protobuf-c, gRPC byte buffers, deadlines and files: shared by server and client. */
#include "common/ec_mem.h"
#include "mesh/rpc_grpc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEM_MAX (1u << 20)

grpc_byte_buffer *rpc__pack(const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

grpc_byte_buffer *rpc__bytes_to_buffer(const uint8_t *data, size_t len)
{
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)data, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

bool rpc__buffer_slice(grpc_byte_buffer *bb, grpc_slice *out)
{
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb)) {
        *out = grpc_empty_slice();
        return false;
    }
    *out = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    return true;
}

static void *arena_alloc(void *arena, size_t n)
{
    return ec_arena_alloc(arena, n ? n : 1);
}

static void arena_free(void *arena, void *p)
{
    (void)arena; /* the arena frees everything at once */
    (void)p;
}

ProtobufCMessage *rpc__unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                              size_t len, struct ec_arena *arena)
{
    ProtobufCAllocator a = { arena_alloc, arena_free, arena };
    return protobuf_c_message_unpack(desc, &a, len, data);
}

gpr_timespec rpc__deadline_in(int64_t ms)
{
    if (ms > INT64_MAX / 2)
        return gpr_inf_future(GPR_CLOCK_MONOTONIC);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

int64_t rpc__ms_left(gpr_timespec deadline)
{
    if (gpr_time_cmp(deadline, gpr_inf_future(deadline.clock_type)) == 0)
        return INT64_MAX;
    gpr_timespec d = gpr_convert_clock_type(deadline, GPR_CLOCK_MONOTONIC);
    gpr_timespec left = gpr_time_sub(d, gpr_now(GPR_CLOCK_MONOTONIC));
    return left.tv_sec * 1000 + left.tv_nsec / 1000000;
}

struct timespec rpc__abstime_in(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (ms > 365LL * 24 * 3600 * 1000) /* "forever" without overflowing time_t arithmetic */
        ms = 365LL * 24 * 3600 * 1000;
    if (ms < 0)
        ms = 0;
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}

void rpc__cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &attr);
    pthread_condattr_destroy(&attr);
}

char *rpc__read_pem(const char *path, const char *what, struct ec_err *err)
{
    if (path == NULL || path[0] == '\0') {
        ec_err_set(err, EC_EINVAL, NULL, "no %s file given", what);
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        ec_err_set(err, EC_EINVAL, NULL, "cannot open %s file \"%s\": %s", what, path,
                   strerror(errno));
        return NULL;
    }
    char *buf = ec_xmalloc(PEM_MAX + 1);
    size_t n = fread(buf, 1, PEM_MAX + 1, f);
    bool failed = ferror(f);
    fclose(f);
    if (failed || n == 0 || n > PEM_MAX) {
        ec_err_set(err, EC_EINVAL, NULL, "cannot read %s file \"%s\": %s", what, path,
                   failed   ? "read error"
                   : n == 0 ? "empty file"
                            : "larger than 1 MiB");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (strstr(buf, "-----BEGIN ") == NULL) {
        ec_err_set(err, EC_EINVAL, NULL, "%s file \"%s\" is not PEM", what, path);
        free(buf);
        return NULL;
    }
    return ec_xrealloc(buf, n + 1);
}

const char *rpc_code_name(int code)
{
    static const char *const names[] = {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    if ((unsigned)code < sizeof(names) / sizeof(names[0]))
        return names[code];
    return "UNKNOWN";
}

grpc_slice rpc__slice_from_md(const grpc_metadata_array *md, const char *key, bool *found)
{
    size_t klen = strlen(key);
    for (size_t i = 0; i < md->count; i++) {
        const grpc_slice *k = &md->metadata[i].key;
        if (GRPC_SLICE_LENGTH(*k) == klen && memcmp(GRPC_SLICE_START_PTR(*k), key, klen) == 0) {
            *found = true;
            return md->metadata[i].value;
        }
    }
    *found = false;
    return grpc_empty_slice();
}
