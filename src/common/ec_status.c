/* The status table: one row per ec_status, the only place HTTP and gRPC codes are chosen. */
#include "common/ec_status.h"

#include <stdio.h>
#include <string.h>

/* gRPC status codes, numerically as in grpc/status.h. */
enum {
    GRPC_OK_ = 0,
    GRPC_INVALID_ARGUMENT_ = 3,
    GRPC_DEADLINE_EXCEEDED_ = 4,
    GRPC_NOT_FOUND_ = 5,
    GRPC_PERMISSION_DENIED_ = 7,
    GRPC_RESOURCE_EXHAUSTED_ = 8,
    GRPC_FAILED_PRECONDITION_ = 9,
    GRPC_UNIMPLEMENTED_ = 12,
    GRPC_INTERNAL_ = 13,
    GRPC_UNAVAILABLE_ = 14,
    GRPC_UNAUTHENTICATED_ = 16,
};

static const struct ec_status_info status_table[EC_STATUS_COUNT] = {
    [EC_OK] = { 200, GRPC_OK_, "ok" },
    [EC_EINVAL] = { 400, GRPC_INVALID_ARGUMENT_, "invalid_request" },
    [EC_EUNAUTH] = { 401, GRPC_UNAUTHENTICATED_, "unauthorized" },
    [EC_EFORBIDDEN] = { 403, GRPC_PERMISSION_DENIED_, "forbidden" },
    [EC_ENOTFOUND] = { 404, GRPC_NOT_FOUND_, "not_found" },
    [EC_EMETHOD] = { 405, GRPC_UNIMPLEMENTED_, "method_not_allowed" },
    [EC_ECONFLICT] = { 409, GRPC_FAILED_PRECONDITION_, "conflict" },
    [EC_ETOOBIG] = { 413, GRPC_RESOURCE_EXHAUSTED_, "payload_too_large" },
    [EC_ERATELIMIT] = { 429, GRPC_RESOURCE_EXHAUSTED_, "rate_limited" },
    [EC_EUNAVAIL] = { 503, GRPC_UNAVAILABLE_, "unavailable" },
    [EC_ETIMEOUT] = { 504, GRPC_DEADLINE_EXCEEDED_, "timeout" },
    [EC_EUPSTREAM] = { 502, GRPC_UNAVAILABLE_, "bad_gateway" },
    [EC_EUNIMPL] = { 501, GRPC_UNIMPLEMENTED_, "not_implemented" },
    [EC_EINTERNAL] = { 500, GRPC_INTERNAL_, "internal_error" },
};

const struct ec_status_info *ec_status_info(enum ec_status status)
{
    if ((unsigned)status >= EC_STATUS_COUNT)
        status = EC_EINTERNAL;
    return &status_table[status];
}

enum ec_status ec_status_from_grpc(int grpc_code)
{
    switch (grpc_code) {
    case GRPC_OK_:
        return EC_OK;
    case GRPC_INVALID_ARGUMENT_:
        return EC_EINVAL;
    case GRPC_DEADLINE_EXCEEDED_:
        return EC_ETIMEOUT;
    case GRPC_NOT_FOUND_:
        return EC_ENOTFOUND;
    case GRPC_PERMISSION_DENIED_:
        return EC_EFORBIDDEN;
    case GRPC_RESOURCE_EXHAUSTED_:
        return EC_ERATELIMIT;
    case GRPC_FAILED_PRECONDITION_:
        return EC_ECONFLICT;
    case GRPC_UNIMPLEMENTED_:
        return EC_EUNIMPL;
    case GRPC_UNAVAILABLE_:
        return EC_EUNAVAIL;
    case GRPC_UNAUTHENTICATED_:
        return EC_EUNAUTH;
    default:
        return EC_EINTERNAL;
    }
}

enum ec_status ec_err_vset(struct ec_err *err, enum ec_status status, const char *code,
                           const char *fmt, va_list ap)
{
    if (err == NULL)
        return status;
    err->status = status;
    err->code = code;
    if (fmt != NULL)
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    else
        err->msg[0] = '\0';
    return status;
}

enum ec_status ec_err_set(struct ec_err *err, enum ec_status status, const char *code,
                          const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ec_err_vset(err, status, code, fmt, ap);
    va_end(ap);
    return status;
}

void ec_err_clear(struct ec_err *err)
{
    if (err == NULL)
        return;
    err->status = EC_OK;
    err->code = NULL;
    err->msg[0] = '\0';
}

const char *ec_err_code(const struct ec_err *err)
{
    if (err->code != NULL)
        return err->code;
    return ec_status_info(err->status)->code;
}
