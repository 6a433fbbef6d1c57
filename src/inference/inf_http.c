/* The inference service's HTTP edge: GET /health ({"ok":true}, as the original answered) and the
 * service's counters appended to the edge's built-in /metrics. */
#include "inference/inference.h"

#include "common/ec_mem.h"

#include <jansson.h>

static enum ec_status h_health(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    struct inf_service *s = req->ctx;
    edge_resp_json(resp, json_pack("{s:b,s:s,s:I}", "ok", 1, "service", "inference", "uptimeMs",
                                   (json_int_t)(ec_now_ms() - s->started_ms)));
    return EC_OK;
}

const struct edge_route inf__routes[] = {
    { "GET", "/health", NULL, 0, h_health },
};
const size_t inf__nroutes = sizeof(inf__routes) / sizeof(inf__routes[0]);

static void counter(struct ec_buf *out, const char *name, const char *help, atomic_llong *value)
{
    ec_buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %lld\n", name, help, name, name,
                  (long long)atomic_load(value));
}

void inf__metrics_text(struct ec_buf *out, void *ctx)
{
    struct inf_service *s = ctx;
    struct inf_metrics *m = &s->metrics;
    counter(out, "inference_decompose_requests_total", "Decompose calls", &m->decompose_requests);
    counter(out, "inference_decompose_successes_total", "Decompose calls the model answered",
            &m->decompose_successes);
    counter(out, "inference_decompose_model_calls_total", "model calls made by Decompose",
            &m->decompose_model_calls);
    counter(out, "inference_decompose_fallbacks_total",
            "Decompose replies that fell back to one subtask", &m->decompose_fallbacks);
    counter(out, "inference_escalate_requests_total", "Escalate calls", &m->escalate_requests);
    counter(out, "inference_escalate_successes_total", "Escalate calls answered",
            &m->escalate_successes);
    counter(out, "inference_escalate_failures_total", "Escalate calls the model failed",
            &m->escalate_failures);
    counter(out, "inference_stream_requests_total", "Generate, Chat and PullModel streams",
            &m->stream_requests);
    counter(out, "inference_stream_failures_total", "streams that ended in an error",
            &m->stream_failures);
    counter(out, "inference_stream_tokens_total", "token messages relayed", &m->stream_tokens);
    counter(out, "inference_auth_failures_total", "calls refused by the token or signature check",
            &m->auth_failures);
    counter(out, "inference_model_latency_ms_total", "milliseconds spent waiting for the model",
            &m->total_latency_ms);
}
