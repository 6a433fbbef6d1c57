/* The one status enum of the program and the table that maps each status to its HTTP status,
 * gRPC status code and stable snake_case error code. Handlers return a status; transports map it.
 */
#ifndef EC_STATUS_H
#define EC_STATUS_H

#include <stdarg.h>
#include <stddef.h>

enum ec_status {
    EC_OK = 0,
    EC_EINVAL,     /* bad input from the caller: 400 / INVALID_ARGUMENT */
    EC_EUNAUTH,    /* missing or wrong credential: 401 / UNAUTHENTICATED */
    EC_EFORBIDDEN, /* authenticated but not allowed: 403 / PERMISSION_DENIED */
    EC_ENOTFOUND,  /* 404 / NOT_FOUND */
    EC_EMETHOD,    /* method not allowed on the resource: 405 / UNIMPLEMENTED */
    EC_ECONFLICT,  /* state conflict, e.g. a lease not held: 409 / FAILED_PRECONDITION */
    EC_ETOOBIG,    /* payload over its limit: 413 / RESOURCE_EXHAUSTED */
    EC_ERATELIMIT, /* 429 / RESOURCE_EXHAUSTED */
    EC_EUNAVAIL,   /* a dependency is down; retry later: 503 / UNAVAILABLE */
    EC_ETIMEOUT,   /* a deadline passed: 504 / DEADLINE_EXCEEDED */
    EC_EUPSTREAM,  /* a dependency answered badly: 502 / UNAVAILABLE */
    EC_EUNIMPL,    /* 501 / UNIMPLEMENTED */
    EC_EINTERNAL,  /* a bug or an unexpected failure: 500 / INTERNAL */
    EC_STATUS_COUNT
};

struct ec_status_info {
    int http_status;
    int grpc_code;    /* grpc_status_code value; kept as int so common does not include gRPC */
    const char *code; /* default snake_case error code */
};

/* Never NULL; an out-of-range status maps to EC_EINTERNAL's row. */
const struct ec_status_info *ec_status_info(enum ec_status status);

/* The status a gRPC status code stands for (EC_EINTERNAL for codes with no better match). */
enum ec_status ec_status_from_grpc(int grpc_code);

/* An error: a status, an optional specific code (static string, e.g. "mesh_unauthorized") that
 * overrides the table's default, and a message in PostgreSQL's style (lower case, the reason and
 * the offending value). Fallible functions take `struct ec_err *err` last; err may be NULL. */
struct ec_err {
    enum ec_status status;
    const char *code;
    char msg[240];
};

enum ec_status ec_err_set(struct ec_err *err, enum ec_status status, const char *code,
                          const char *fmt, ...) __attribute__((format(printf, 4, 5)));
enum ec_status ec_err_vset(struct ec_err *err, enum ec_status status, const char *code,
                           const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));
void ec_err_clear(struct ec_err *err);
/* The code to show a caller: err->code when set, else the status table's. */
const char *ec_err_code(const struct ec_err *err);

#endif
