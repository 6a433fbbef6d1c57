/* Relays a streamed Ollama answer (generate or chat) to a gRPC server stream of TokenChunk,
 * merging the tokens that queue up while a send is in flight. */
#ifndef INF_RELAY_H
#define INF_RELAY_H

#include "inference/ollama.h"
#include "mesh/rpc.h"

#include "edgecoder/v1/inference.pb-c.h"

#include <stdint.h>

/* Runs the Ollama call (on a helper thread), handing each chunk to fn(ctx, ...). */
typedef enum ec_status (*inf_relay_run_fn)(void *arg, inf_ollama_chunk_fn fn, void *ctx,
                                           struct ec_err *err);

/* Returns when the answer is done (EC_OK), Ollama failed (its status, EC_EUNAVAIL) or the caller
 * went away (rpc_stream_send's status); the helper thread has exited either way. model goes on
 * the first and last message; *tokens_relayed counts the Ollama chunks sent. */
enum ec_status inf_relay_stream(struct rpc_call *call, const char *model, inf_relay_run_fn run,
                                void *run_arg, int64_t *tokens_relayed, struct ec_err *err);

#endif
