/* Relays a streamed Ollama answer to a gRPC stream. The Ollama call runs on a helper thread and
 * queues its chunks; the handler thread sends whatever has queued as one TokenChunk each time the
 * previous send completes. A slow model's tokens go out one by one as they arrive; a model faster
 * than the caller has its tokens merged rather than waiting behind one send per token. The queue
 * is capped: a full queue makes the Ollama reader wait (back-pressure, nothing dropped). */
#include "inference/inf_relay.h"

#include "common/ec_buf.h"
#include "common/ec_mem.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define QUEUE_MAX_BYTES (256u << 10)
#define MAX_TEXT_BYTES  (64u << 20) /* one answer, all chunks together */

struct relay_queue {
    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t has_data, has_space;
    struct ec_buf content;
    int32_t tokens;
    bool done;
    char done_reason[64];
    int64_t eval_count;
    bool finished; /* the Ollama call returned */
    bool cancelled;
    size_t total_bytes;
    enum ec_status status;
    struct ec_err err;
    /* The Ollama call, run on the helper thread. */
    inf_relay_run_fn run;
    void *run_arg;
};

static enum ec_status push_chunk(void *ctx, const struct inf_ollama_chunk *chunk,
                                 struct ec_err *err)
{
    struct relay_queue *q = ctx;
    if (chunk->content_len == 0 && !chunk->done)
        return EC_OK; /* nothing to relay */
    if (memchr(chunk->content, '\0', chunk->content_len) != NULL)
        return ec_err_set(err, EC_EUNAVAIL, INF_OLLAMA_ERROR_CODE,
                          "ollama sent a NUL character in the text");
    enum ec_status st = EC_OK;
    pthread_mutex_lock(&q->lock);
    while (!q->cancelled && q->content.len > 0 &&
           q->content.len + chunk->content_len > QUEUE_MAX_BYTES)
        pthread_cond_wait(&q->has_space, &q->lock);
    q->total_bytes += chunk->content_len;
    if (q->cancelled) {
        st = ec_err_set(err, EC_EUNAVAIL, "stream_cancelled", "the caller went away");
    } else if (q->total_bytes > MAX_TEXT_BYTES) {
        st = ec_err_set(err, EC_EUNAVAIL, INF_OLLAMA_ERROR_CODE, "ollama answer is over %u bytes",
                        MAX_TEXT_BYTES);
    } else {
        ec_buf_append(&q->content, chunk->content, chunk->content_len);
        q->tokens++;
        if (chunk->done) {
            q->done = true;
            snprintf(q->done_reason, sizeof(q->done_reason), "%s", chunk->done_reason);
            q->eval_count = chunk->eval_count;
        }
        pthread_cond_signal(&q->has_data);
    }
    pthread_mutex_unlock(&q->lock);
    return st;
}

static void *producer(void *arg)
{
    struct relay_queue *q = arg;
    struct ec_err err = { 0 };
    enum ec_status st = q->run(q->run_arg, push_chunk, q, &err);
    pthread_mutex_lock(&q->lock);
    q->status = st;
    q->err = err;
    q->finished = true;
    pthread_cond_signal(&q->has_data);
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

enum ec_status inf_relay_stream(struct rpc_call *call, const char *model, inf_relay_run_fn run,
                                void *run_arg, int64_t *tokens_relayed, struct ec_err *err)
{
    struct relay_queue q = { .run = run, .run_arg = run_arg };
    pthread_mutex_init(&q.lock, NULL);
    pthread_cond_init(&q.has_data, NULL);
    pthread_cond_init(&q.has_space, NULL);
    ec_buf_init(&q.content, 0);
    struct ec_buf sending;
    ec_buf_init(&sending, 0);
    *tokens_relayed = 0;

    pthread_t thread;
    if (pthread_create(&thread, NULL, producer, &q) != 0) {
        ec_buf_release(&q.content);
        ec_buf_release(&sending);
        pthread_cond_destroy(&q.has_space);
        pthread_cond_destroy(&q.has_data);
        pthread_mutex_destroy(&q.lock);
        return ec_err_set(err, EC_EINTERNAL, NULL, "cannot start the relay thread");
    }
    enum ec_status send_st = EC_OK;
    bool first = true, finished = false;
    while (!finished && send_st == EC_OK) {
        pthread_mutex_lock(&q.lock);
        while (q.tokens == 0 && !q.finished)
            pthread_cond_wait(&q.has_data, &q.lock);
        /* Take everything queued; the reader may go on filling the queue meanwhile. */
        struct ec_buf tmp = q.content;
        q.content = sending;
        sending = tmp;
        ec_buf_reset(&q.content);
        int32_t tokens = q.tokens;
        bool done = q.done;
        char done_reason[64];
        memcpy(done_reason, q.done_reason, sizeof(done_reason));
        int64_t eval_count = q.eval_count;
        q.tokens = 0;
        finished = q.finished;
        pthread_cond_signal(&q.has_space);
        pthread_mutex_unlock(&q.lock);
        if (tokens == 0)
            continue;
        Edgecoder__V1__TokenChunk msg;
        edgecoder__v1__token_chunk__init(&msg);
        msg.content = sending.data != NULL ? sending.data : "";
        msg.done = done;
        msg.done_reason = done ? done_reason : "";
        msg.eval_count = done ? eval_count : 0;
        msg.tokens = tokens;
        if (first || done)
            msg.model = (char *)model;
        first = false;
        send_st = rpc_stream_send(call, &msg.base, err);
        if (send_st == EC_OK)
            *tokens_relayed += tokens;
        ec_buf_reset(&sending);
    }
    if (send_st != EC_OK) {
        pthread_mutex_lock(&q.lock);
        q.cancelled = true;
        pthread_cond_signal(&q.has_space);
        pthread_mutex_unlock(&q.lock);
    }
    pthread_join(thread, NULL);
    enum ec_status st = send_st;
    if (st == EC_OK && q.status != EC_OK) {
        st = q.status;
        if (err != NULL)
            *err = q.err;
    }
    ec_buf_release(&q.content);
    ec_buf_release(&sending);
    pthread_cond_destroy(&q.has_space);
    pthread_cond_destroy(&q.has_data);
    pthread_mutex_destroy(&q.lock);
    return st;
}
