/* `edgecoder inference client ...`: the coordinator-side Inference client and the Ollama client
 * as a command-line tool, for the integration tests (the signing path end to end) and
 * tools/bench_inference (latency percentiles, streamed tokens per second). */
#include "inference/inf_tool.h"

#include "common/ec_arena.h"
#include "common/ec_buf.h"
#include "common/ec_crypto.h"
#include "common/ec_http.h"
#include "common/ec_mem.h"
#include "inference/inference_client.h"
#include "inference/inference_sig.h"
#include "inference/ollama.h"
#include "mesh/rpc.h"

#include "edgecoder/v1/inference.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_USAGE 64
#define MAX_COUNT  1000000

struct tool_args {
    const char *prompt, *task_id, *language, *snapshot_ref, *model, *task, *failed_code;
    const char *errors[16];
    size_t n_errors;
    long count;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: edgecoder inference client decompose --prompt TEXT [--task-id ID]\n"
            "                                  [--language L] [--snapshot-ref REF] [--count N]\n"
            "       edgecoder inference client escalate --task TEXT --failed-code CODE\n"
            "                                  [--error TEXT]... [--language L]\n"
            "       edgecoder inference client chat --prompt TEXT [--model M] [--count N]\n"
            "       edgecoder inference client ollama-generate --prompt TEXT [--model M]\n"
            "                                  [--count N]\n"
            "\n"
            "Calls the Inference service as a coordinator does, from the environment:\n"
            "INFERENCE_URL, EDGECODER_TLS_CA, EDGECODER_TLS_CERT, EDGECODER_TLS_KEY,\n"
            "INFERENCE_AUTH_TOKEN, COORDINATOR_PEER_ID and COORDINATOR_PRIVATE_KEY_PEM (calls are\n"
            "signed when both are set). ollama-generate calls OLLAMA_HOST directly. Prints one\n"
            "JSON object; with --count N also the latency percentiles of N calls (p50Us, p99Us)\n"
            "and, for chat, tokens per second.\n");
}

static const char *env_or_null(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

static int parse_args(int argc, char **argv, struct tool_args *a)
{
    memset(a, 0, sizeof(*a));
    a->count = 0;
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "edgecoder inference client: %s needs a value\n", k);
            return EXIT_USAGE;
        }
        const char *v = argv[++i];
        if (strcmp(k, "--prompt") == 0)
            a->prompt = v;
        else if (strcmp(k, "--task-id") == 0)
            a->task_id = v;
        else if (strcmp(k, "--language") == 0)
            a->language = v;
        else if (strcmp(k, "--snapshot-ref") == 0)
            a->snapshot_ref = v;
        else if (strcmp(k, "--model") == 0)
            a->model = v;
        else if (strcmp(k, "--task") == 0)
            a->task = v;
        else if (strcmp(k, "--failed-code") == 0)
            a->failed_code = v;
        else if (strcmp(k, "--error") == 0 && a->n_errors < 16)
            a->errors[a->n_errors++] = v;
        else if (strcmp(k, "--count") == 0 && (a->count = strtol(v, NULL, 10)) > 0 &&
                 a->count <= MAX_COUNT)
            continue;
        else {
            fprintf(stderr, "edgecoder inference client: unexpected argument \"%s\"\n", k);
            return EXIT_USAGE;
        }
    }
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* ,"calls":N,"p50Us":..,"p99Us":.. */
static void put_percentiles(struct ec_buf *b, int64_t *us, size_t n)
{
    qsort(us, n, sizeof(*us), cmp_i64);
    ec_buf_printf(b, ",\"calls\":%zu,\"p50Us\":%lld,\"p99Us\":%lld", n, (long long)us[n / 2],
                  (long long)us[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1]);
}

static void put_string(struct ec_buf *b, const char *key, const char *s)
{
    ec_buf_printf(b, ",\"%s\":\"", key);
    ec_buf_json_escape(b, s, strlen(s));
    ec_buf_putc(b, '"');
}

static int fail(const struct ec_err *err)
{
    struct ec_buf b;
    ec_buf_init(&b, 0);
    ec_buf_puts(&b, "{\"ok\":false");
    put_string(&b, "error", ec_err_code(err));
    put_string(&b, "message", err->msg);
    ec_buf_puts(&b, "}\n");
    fputs(b.data, stdout);
    ec_buf_release(&b);
    return 1;
}

struct tool_client {
    struct inf_client *client;
    struct ec_key *key;
};

static enum ec_status client_open(struct tool_client *tc, struct ec_err *err)
{
    memset(tc, 0, sizeof(*tc));
    const char *pem = env_or_null("COORDINATOR_PRIVATE_KEY_PEM");
    const char *peer = env_or_null("COORDINATOR_PEER_ID");
    if (pem != NULL && peer != NULL) {
        enum ec_status st =
            ec_key_load_private_pem(EC_KEY_ED25519, pem, strlen(pem), &tc->key, err);
        if (st != EC_OK)
            return st;
    }
    struct inf_client_opts o = {
        .url = env_or_null("INFERENCE_URL"),
        .tls = { env_or_null("EDGECODER_TLS_CA"), env_or_null("EDGECODER_TLS_CERT"),
                 env_or_null("EDGECODER_TLS_KEY") },
        .auth_token = env_or_null("INFERENCE_AUTH_TOKEN"),
        .peer_id = tc->key != NULL ? peer : NULL,
        .signing_key = tc->key,
    };
    return inf_client_new(&o, &tc->client, err);
}

static void client_close(struct tool_client *tc)
{
    inf_client_free(tc->client);
    ec_key_free(tc->key);
}

static int run_decompose(const struct tool_args *a)
{
    struct ec_err err = { 0 };
    struct tool_client tc;
    if (client_open(&tc, &err) != EC_OK) {
        client_close(&tc);
        return fail(&err);
    }
    size_t n = a->count > 0 ? (size_t)a->count : 1;
    int64_t *us = ec_xcalloc(n, sizeof(*us));
    struct ec_arena arena;
    ec_arena_init(&arena);
    struct inf_decomposition d = { 0 };
    enum ec_status st = EC_OK;
    for (size_t i = 0; i < n && st == EC_OK; i++) {
        ec_arena_reset(&arena);
        int64_t t0 = ec_mono_us();
        st = inf_client_decompose(tc.client, a->task_id, a->prompt, a->language, a->snapshot_ref,
                                  &arena, &d, &err);
        us[i] = ec_mono_us() - t0;
    }
    int rc = 0;
    if (st != EC_OK) {
        rc = fail(&err);
    } else {
        struct ec_buf b;
        ec_buf_init(&b, 0);
        ec_buf_printf(&b, "{\"ok\":true,\"fallback\":%s", d.fallback ? "true" : "false");
        put_string(&b, "fallbackReason", d.fallback_reason);
        ec_buf_puts(&b, ",\"subtasks\":[");
        for (size_t i = 0; i < d.count; i++) {
            ec_buf_puts(&b, i ? ",{\"input\":\"" : "{\"input\":\"");
            ec_buf_json_escape(&b, d.subtasks[i].input, strlen(d.subtasks[i].input));
            ec_buf_printf(&b, "\",\"language\":\"%s\",\"timeoutMs\":%lld}", d.subtasks[i].language,
                          (long long)d.subtasks[i].timeout_ms);
        }
        ec_buf_putc(&b, ']');
        if (a->count > 0)
            put_percentiles(&b, us, n);
        ec_buf_puts(&b, "}\n");
        fputs(b.data, stdout);
        ec_buf_release(&b);
    }
    ec_arena_release(&arena);
    free(us);
    client_close(&tc);
    return rc;
}

static int run_escalate(const struct tool_args *a)
{
    struct ec_err err = { 0 };
    struct tool_client tc;
    if (client_open(&tc, &err) != EC_OK) {
        client_close(&tc);
        return fail(&err);
    }
    struct ec_arena arena;
    ec_arena_init(&arena);
    struct inf_escalation e;
    enum ec_status st = inf_client_escalate(tc.client, a->task_id, a->task, a->failed_code,
                                            a->errors, a->n_errors, a->language, &arena, &e, &err);
    int rc = 0;
    if (st != EC_OK) {
        rc = fail(&err);
    } else {
        struct ec_buf b;
        ec_buf_init(&b, 0);
        ec_buf_puts(&b, "{\"ok\":true");
        put_string(&b, "improvedCode", e.improved_code);
        put_string(&b, "explanation", e.explanation);
        ec_buf_puts(&b, "}\n");
        fputs(b.data, stdout);
        ec_buf_release(&b);
    }
    ec_arena_release(&arena);
    client_close(&tc);
    return rc;
}

/* --- chat: a raw stream call, signed the same way ------------------------------------------- */

struct chat_state {
    size_t chunks;
    int64_t tokens; /* Ollama chunks, as the service counts them in TokenChunk.tokens */
    bool done;
    struct ec_buf text;
};

static enum ec_status on_chunk(void *ud, const uint8_t *msg, size_t len, struct ec_err *err)
{
    struct chat_state *cs = ud;
    Edgecoder__V1__TokenChunk *c = edgecoder__v1__token_chunk__unpack(NULL, len, msg);
    if (c == NULL)
        return ec_err_set(err, EC_EUPSTREAM, NULL, "a TokenChunk does not parse");
    cs->chunks++;
    cs->tokens += c->tokens;
    cs->done = cs->done || c->done;
    ec_buf_puts(&cs->text, c->content);
    edgecoder__v1__token_chunk__free_unpacked(c, NULL);
    return EC_OK;
}

static int run_chat(const struct tool_args *a)
{
    struct ec_err err = { 0 };
    const char *url = env_or_null("INFERENCE_URL");
    char *target = NULL;
    if (inf_client_target(url, &target, &err) != EC_OK)
        return fail(&err);
    struct rpc_channel_opts copts = {
        .tls = { env_or_null("EDGECODER_TLS_CA"), env_or_null("EDGECODER_TLS_CERT"),
                 env_or_null("EDGECODER_TLS_KEY") },
    };
    struct rpc_channel *ch = rpc_channel_new(target, &copts, &err);
    free(target);
    if (ch == NULL)
        return fail(&err);
    struct ec_key *key = NULL;
    const char *pem = env_or_null("COORDINATOR_PRIVATE_KEY_PEM");
    const char *peer = env_or_null("COORDINATOR_PEER_ID");
    if (pem != NULL && peer != NULL &&
        ec_key_load_private_pem(EC_KEY_ED25519, pem, strlen(pem), &key, &err) != EC_OK) {
        rpc_channel_free(ch);
        return fail(&err);
    }
    Edgecoder__V1__ChatMessage m;
    edgecoder__v1__chat_message__init(&m);
    m.role = "user";
    m.content = (char *)(a->prompt != NULL ? a->prompt : "");
    Edgecoder__V1__ChatMessage *msgs[1] = { &m };
    Edgecoder__V1__ChatRequest req;
    edgecoder__v1__chat_request__init(&req);
    req.model = (char *)(a->model != NULL ? a->model : "");
    req.messages = msgs;
    req.n_messages = 1;
    size_t len = edgecoder__v1__chat_request__get_packed_size(&req);
    uint8_t *bytes = ec_xmalloc(len + 1);
    edgecoder__v1__chat_request__pack(&req, bytes);

    size_t n = a->count > 0 ? (size_t)a->count : 1;
    int64_t *us = ec_xcalloc(n, sizeof(*us));
    struct chat_state cs = { 0 };
    ec_buf_init(&cs.text, 1u << 24);
    const char *token = env_or_null("INFERENCE_AUTH_TOKEN");
    enum ec_status st = EC_OK;
    int64_t total_us = 0;
    for (size_t i = 0; i < n && st == EC_OK; i++) {
        struct rpc_md md[6];
        size_t nmd = 0;
        struct inf_sig_md sig;
        if (token != NULL)
            md[nmd++] = (struct rpc_md){ INF_TOKEN_MD, token };
        if (key != NULL) {
            st = inf_sig_sign(key, peer, "/edgecoder.v1.Inference/Chat", bytes, len, ec_now_ms(),
                              &sig, &err);
            md[nmd++] = (struct rpc_md){ INF_SIG_MD_PEER_ID, sig.peer_id };
            md[nmd++] = (struct rpc_md){ INF_SIG_MD_TIMESTAMP, sig.timestamp_ms };
            md[nmd++] = (struct rpc_md){ INF_SIG_MD_NONCE, sig.nonce };
            md[nmd++] = (struct rpc_md){ INF_SIG_MD_BODY, sig.body_sha256 };
            md[nmd++] = (struct rpc_md){ INF_SIG_MD_SIGNATURE, sig.signature };
        }
        if (st != EC_OK)
            break;
        ec_buf_reset(&cs.text);
        cs.done = false;
        cs.tokens = 0;
        struct rpc_call_opts opts = { .timeout_ms = 120000, .md = md, .n_md = nmd };
        int64_t t0 = ec_mono_us();
        st = rpc_server_stream_raw(ch, "/edgecoder.v1.Inference/Chat", bytes, len, on_chunk, &cs,
                                   &opts, &err);
        us[i] = ec_mono_us() - t0;
        total_us += us[i];
    }
    int rc = 0;
    if (st != EC_OK) {
        rc = fail(&err);
    } else {
        struct ec_buf b;
        ec_buf_init(&b, 0);
        ec_buf_printf(&b, "{\"ok\":true,\"done\":%s,\"chunks\":%zu,\"tokens\":%lld",
                      cs.done ? "true" : "false", cs.chunks, (long long)cs.tokens);
        put_string(&b, "text", cs.text.data != NULL ? cs.text.data : "");
        if (a->count > 0) {
            put_percentiles(&b, us, n);
            /* Over all calls: the last call's counts times the number of calls. */
            ec_buf_printf(&b, ",\"tokensPerSec\":%.0f,\"messagesPerSec\":%.0f",
                          total_us > 0 ? (double)cs.tokens * (double)n * 1e6 / (double)total_us
                                       : 0.0,
                          total_us > 0 ? (double)cs.chunks * 1e6 / (double)total_us : 0.0);
        }
        ec_buf_puts(&b, "}\n");
        fputs(b.data, stdout);
        ec_buf_release(&b);
    }
    ec_buf_release(&cs.text);
    free(us);
    free(bytes);
    ec_key_free(key);
    rpc_channel_free(ch);
    return rc;
}

static int run_ollama_generate(const struct tool_args *a)
{
    struct ec_err err = { 0 };
    struct inf_ollama *ol = NULL;
    if (inf_ollama_new(NULL, &ol, &err) != EC_OK)
        return fail(&err);
    size_t n = a->count > 0 ? (size_t)a->count : 1;
    int64_t *us = ec_xcalloc(n, sizeof(*us));
    char *text = NULL;
    enum ec_status st = EC_OK;
    for (size_t i = 0; i < n && st == EC_OK; i++) {
        free(text);
        text = NULL;
        int64_t t0 = ec_mono_us();
        st = inf_ollama_generate(ol, a->model != NULL ? a->model : "qwen2.5:7b",
                                 a->prompt != NULL ? a->prompt : "", NULL, &text, &err);
        us[i] = ec_mono_us() - t0;
    }
    int rc = 0;
    if (st != EC_OK) {
        rc = fail(&err);
    } else {
        struct ec_buf b;
        ec_buf_init(&b, 0);
        ec_buf_puts(&b, "{\"ok\":true");
        put_string(&b, "response", text);
        if (a->count > 0)
            put_percentiles(&b, us, n);
        ec_buf_puts(&b, "}\n");
        fputs(b.data, stdout);
        ec_buf_release(&b);
    }
    free(text);
    free(us);
    inf_ollama_free(ol);
    return rc;
}

int inf_tool_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    struct tool_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc != 0)
        return rc;
    static const struct {
        const char *name;
        int (*run)(const struct tool_args *a);
    } modes[] = {
        { "decompose", run_decompose },
        { "escalate", run_escalate },
        { "chat", run_chat },
        { "ollama-generate", run_ollama_generate },
    };
    const struct tool_args *ap = &a;
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (strcmp(argv[1], modes[i].name) != 0)
            continue;
        struct ec_err err = { 0 };
        if (ec_http_global_init(&err) != EC_OK)
            return fail(&err);
        rpc_runtime_init();
        rc = modes[i].run(ap);
        rpc_runtime_shutdown();
        ec_http_global_cleanup();
        return rc;
    }
    fprintf(stderr, "edgecoder inference client: unknown mode \"%s\"\n\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
