/* Protobuf bodies on the edge: a request body decoded into a protobuf-c message and a message
 * encoded as the response, both through the one JSON <-> protobuf codec (edge_pbjson.h). */
#include "edge/edge_int.h"
#include "edge/edge_pbjson.h"

enum ec_status edge_req_decode_pb(struct edge_req *req, const ProtobufCMessageDescriptor *desc,
                                  const struct edge_pbjson_opts *opts, ProtobufCMessage **out,
                                  struct ec_err *err)
{
    *out = NULL;
    /* Parsed by edge_req_json first, so malformed JSON is "invalid_json" on every route. */
    json_t *json;
    enum ec_status st = edge_req_json(req, &json, err);
    if (st != EC_OK)
        return st;
    return edge_pbjson_decode_json(desc, json, opts, req->arena, out, err);
}

enum ec_status edge_resp_pb(struct edge_resp *resp, const ProtobufCMessage *msg,
                            const struct edge_pbjson_opts *opts, struct ec_err *err)
{
    ec_buf_reset(resp->buf);
    enum ec_status st = edge_pbjson_encode(msg, opts, resp->buf, err);
    if (st != EC_OK)
        return st;
    edge_resp_bytes(resp, "application/json", resp->buf->data, resp->buf->len);
    return EC_OK;
}
