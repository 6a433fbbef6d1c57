/* Internals of the gRPC client shared by the blocking (rpc_client.c) and asynchronous
 * (rpc_async.c) calls: one call's ops, metadata and results. */
#ifndef EC_RPC_CLIENT_INT_H
#define EC_RPC_CLIENT_INT_H

#include "mesh/rpc_grpc.h"

#define RPC__CLIENT_MAX_MD 16

struct rpc__client_call {
    grpc_call *call;
    grpc_metadata md[RPC__CLIENT_MAX_MD]; /* copied slices, released with the call */
    size_t n_md;
    grpc_op ops[6]; /* the unary batch; a stream uses 0-3 first and 5 last */
    grpc_byte_buffer *send;
    grpc_byte_buffer *recv;
    grpc_metadata_array initial_md;
    grpc_metadata_array trailing_md;
    grpc_status_code status;
    grpc_slice details;
    const char *error_string; /* gpr_free'd */
    /* asynchronous calls only */
    const ProtobufCMessageDescriptor *resp_desc;
    void *user;
    bool tls;
};

void rpc__client_call_init(struct rpc__client_call *cc);
void rpc__client_call_release(struct rpc__client_call *cc);
/* Creates the call on cq and starts its first batch with cc itself as the tag: all six ops for a
 * unary call, the sending ops and initial metadata for a stream. cc->send must be set. */
enum ec_status rpc__client_call_start(struct rpc__client_call *cc, struct rpc_channel *ch,
                                      grpc_completion_queue *cq, const char *method,
                                      const struct rpc_call_opts *o, gpr_timespec deadline,
                                      bool unary, struct ec_err *err);
/* EC_OK, or the call's status with x-error-code and details in err. */
enum ec_status rpc__client_call_status(const struct rpc__client_call *cc, bool tls,
                                       struct ec_err *err);
bool rpc__channel_tls(const struct rpc_channel *ch);

#endif
