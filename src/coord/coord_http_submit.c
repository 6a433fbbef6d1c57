/* Submitting work and reading it back: POST /submit (validated, decomposed, stored with its
 * subtasks in one transaction) and GET /tasks/:taskId, which the original did not have. */
#include "coord/coord_http_int.h"
#include "inference/inference_client.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#define SNAPSHOT_REF_MAX  2048
#define FALLBACK_TIMEOUT  30000 /* the original's fallback subtask */
#define TASK_ID_FIELD_MAX COORD_ID_MAX

static const char *const languages[] = { "python", "javascript", NULL };
static const char *const resource_classes[] = { "cpu", "gpu", NULL };

/* A 40-hex commit id, or an https:// URL with a host and nothing unprintable. */
static bool snapshot_ref_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 40 && strspn(s, "0123456789abcdefABCDEF") == 40)
        return true;
    if (strncasecmp(s, "https://", 8) != 0 || n <= 8 || s[8] == '/' || s[8] == ':')
        return false;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p == 0x7f)
            return false;
    return true;
}

/* The original's fallback: one subtask holding the prompt. */
static void one_subtask(struct ec_arena *a, struct coord_task_spec *t)
{
    struct coord_subtask_spec *one = ec_arena_zalloc(a, sizeof(*one));
    *one = (struct coord_subtask_spec){ .input = t->prompt,
                                        .language = t->language,
                                        .kind = "micro_loop",
                                        .timeout_ms = FALLBACK_TIMEOUT };
    t->decomposition_fallback = true;
    t->subtasks = one;
    t->n_subtasks = 1;
}

/* The task's subtasks: from Inference.Decompose when INFERENCE_URL is set, else (and whenever
 * the service cannot answer) one subtask holding the prompt, the original's fallback. The
 * service's own fallback (its model was unusable) is kept as it said. */
/* A split the queue can store: the service's answer is checked here rather than blamed on the
 * submitter, and one that would be refused falls back like an unreachable service. */
static bool split_usable(const struct inf_decomposition *d)
{
    if (d->count == 0 || d->count > COORD_QUEUE_SUBTASKS_MAX)
        return false;
    for (size_t i = 0; i < d->count; i++)
        if (strlen(d->subtasks[i].input) > COORD_QUEUE_TEXT_MAX)
            return false;
    return true;
}

static void decompose(struct coord *c, struct ec_arena *a, struct coord_task_spec *t)
{
    struct inf_decomposition d = { 0 };
    if (c->inference != NULL) {
        struct ec_err why = { 0 };
        if (inf_client_decompose(c->inference, t->task_id, t->prompt, t->language, t->snapshot_ref,
                                 a, &d, &why) != EC_OK) {
            EC_WARN("decomposition failed: one subtask holds the prompt", EC_LS("task", t->task_id),
                    EC_LS("code", ec_err_code(&why)), EC_LS("error", why.msg));
            d.count = 0;
        } else if (!split_usable(&d)) {
            EC_WARN("decomposition failed: one subtask holds the prompt", EC_LS("task", t->task_id),
                    EC_LS("code", "unusable_split"), EC_LI("subtasks", (int64_t)d.count));
        }
    }
    if (!split_usable(&d)) {
        one_subtask(a, t);
        return;
    }
    struct coord_subtask_spec *subs = ec_arena_zalloc(a, d.count * sizeof(*subs));
    for (size_t i = 0; i < d.count; i++) {
        const struct inf_subtask *s = &d.subtasks[i];
        const char *lang =
            s->language != NULL && s->language[0] != '\0' ? s->language : t->language;
        if (strcmp(lang, "python") != 0 && strcmp(lang, "javascript") != 0)
            lang = t->language; /* the model named a language no agent runs */
        int64_t timeout = s->timeout_ms > 0 ? s->timeout_ms : FALLBACK_TIMEOUT;
        if (timeout > COORD_QUEUE_TIMEOUT_MAX_MS)
            timeout = COORD_QUEUE_TIMEOUT_MAX_MS;
        subs[i] = (struct coord_subtask_spec){
            .input = s->input, .language = lang, .kind = "micro_loop", .timeout_ms = timeout
        };
    }
    t->decomposition_fallback = d.fallback;
    t->subtasks = subs;
    t->n_subtasks = d.count;
}

enum ec_status coord__parse_submit(const json_t *b, struct coord_task_spec *t, struct ec_err *err)
{
    int64_t priority = 50;
    enum ec_status st;
    if ((st = coord__field_id(b, "taskId", true, &t->task_id, err)) != EC_OK ||
        (st = coord__field_str(b, "prompt", true, 1, COORD_QUEUE_TEXT_MAX, NULL, &t->prompt,
                               err)) != EC_OK ||
        (st = coord__field_enum(b, "language", languages, false, "python", &t->language, err)) !=
            EC_OK ||
        (st = coord__field_str(b, "snapshotRef", true, 1, SNAPSHOT_REF_MAX, NULL, &t->snapshot_ref,
                               err)) != EC_OK)
        return st;
    if (!snapshot_ref_ok(t->snapshot_ref))
        return ec_err_set(err, EC_EINVAL, NULL,
                          "snapshotRef: expected a 40-hex commit id or an https:// URL");
    if ((st = coord__field_id(b, "submitterAccountId", false, &t->submitter_account_id, err)) !=
            EC_OK ||
        (st = coord__field_id(b, "projectId", false, &t->project_id, err)) != EC_OK ||
        (st = coord__field_id(b, "tenantId", false, &t->tenant_id, err)) != EC_OK ||
        (st = coord__field_enum(b, "resourceClass", resource_classes, false, "cpu",
                                &t->resource_class, err)) != EC_OK ||
        (st = coord__field_int(b, "priority", false, 0, 100, 50, &priority, err)) != EC_OK ||
        (st = coord__field_str(b, "requestedModel", false, 1, 128, NULL, &t->requested_model,
                               err)) != EC_OK)
        return st;
    if (t->submitter_account_id == NULL)
        t->submitter_account_id = "anonymous";
    if (t->project_id == NULL)
        t->project_id = "default";
    t->priority = (int)priority;
    /* sandboxRequired is accepted and ignored, as in the original: tenant work never goes to an
     * agent without a sandbox anyway. */
    return EC_OK;
}

enum ec_status coord__h_submit(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    struct coord *c = req->ctx;
    json_t *b;
    enum ec_status st = coord__body_object(req, &b, err);
    if (st != EC_OK)
        return st;
    struct coord_task_spec t = { 0 };
    if ((st = coord__parse_submit(b, &t, err)) != EC_OK)
        return st;
    decompose(c, req->arena, &t);
    const char **ids = NULL;
    size_t n = 0;
    if ((st = coord_queue_submit(c->queue, req->arena, &t, &ids, &n, err)) != EC_OK)
        return st;
    coord_work_added(c);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, json_string(ids[i]));
    edge_resp_json(resp, json_pack("{s:s,s:o}", "taskId", t.task_id, "subtasks", list));
    return EC_OK;
}

enum ec_status coord__h_task(struct edge_req *req, struct edge_resp *resp, struct ec_err *err)
{
    struct coord *c = req->ctx;
    const char *id = edge_req_param(req, "taskId");
    if (id == NULL || !coord__id_ok(id, TASK_ID_FIELD_MAX))
        return ec_err_set(err, EC_EINVAL, NULL,
                          "taskId: must be 1..%d printable characters without spaces",
                          TASK_ID_FIELD_MAX);
    json_t *out = NULL;
    enum ec_status st = coord_queue_task_json(c->queue, id, &out, err);
    if (st != EC_OK)
        return st;
    edge_resp_json(resp, out);
    return EC_OK;
}
