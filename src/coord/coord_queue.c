/* The durable queue: its lifecycle, shared checks, submission (a task and its subtasks in one
 * transaction with a task_enqueue ledger event) and the counts behind /status. Claims are in
 * coord_queue_claim.c, results and expiry in coord_queue_result.c, GET /tasks/:id in
 * coord_queue_json.c. */
#include "coord/coord_queue.h"

#include "common/ec_crypto.h"
#include "common/ec_mem.h"
#include "coord/coord_ledger.h"
#include "coord/coord_queue_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* --- lifecycle ---------------------------------------------------------------------------- */

enum ec_status coord_queue_new(const struct coord_queue_opts *opts, struct coord_queue **out,
                               struct ec_err *err)
{
    *out = NULL;
    if (opts == NULL || opts->pool == NULL)
        return ec_err_set(err, EC_EINVAL, NULL, "queue needs a database pool");
    if (opts->coordinator_id == NULL || opts->coordinator_id[0] == '\0')
        return ec_err_set(err, EC_EINVAL, NULL, "queue needs a coordinator id");
    if (opts->lease_grace_ms < 0 || opts->lease_grace_ms > COORD_QUEUE_GRACE_MAX_MS)
        return ec_err_set(err, EC_EINVAL, NULL, "lease grace %" PRId64 " ms is not in 0..%d",
                          opts->lease_grace_ms, COORD_QUEUE_GRACE_MAX_MS);
    if (opts->max_attempts < 0 || opts->max_attempts > COORD_QUEUE_ATTEMPTS_MAX)
        return ec_err_set(err, EC_EINVAL, NULL, "max attempts %d is not in 1..%d",
                          opts->max_attempts, COORD_QUEUE_ATTEMPTS_MAX);
    struct coord_queue *q = ec_xcalloc(1, sizeof(*q));
    q->pool = opts->pool;
    q->coordinator_id = ec_xstrdup(opts->coordinator_id);
    q->lease_grace_ms = opts->lease_grace_ms > 0 ? opts->lease_grace_ms : 30000;
    q->max_attempts = opts->max_attempts > 0 ? opts->max_attempts : 3;
    *out = q;
    return EC_OK;
}

void coord_queue_free(struct coord_queue *q)
{
    if (q == NULL)
        return;
    free(q->coordinator_id);
    free(q);
}

/* --- shared helpers ----------------------------------------------------------------------- */

const char *coord_queue__i64(struct ec_arena *a, int64_t v)
{
    return ec_arena_sprintf(a, "%" PRId64, v);
}

int64_t coord_queue__int(const struct pg_result *res, int row, int col)
{
    const char *v = ec_pg_value(res, row, col);
    EC_ASSERT(v != NULL);
    return strtoll(v, NULL, 10);
}

static enum ec_status check_id_max(const char *field, const char *v, bool required, size_t max,
                                   struct ec_err *err)
{
    if (v == NULL)
        return required ? ec_err_set(err, EC_EINVAL, NULL, "%s is required", field) : EC_OK;
    size_t n = strlen(v);
    if (n == 0 || n > max)
        return ec_err_set(err, EC_EINVAL, NULL, "%s must be 1 to %zu bytes long, got %zu", field,
                          max, n);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
            return ec_err_set(err, EC_EINVAL, NULL, "%s holds a control character", field);
    return coord_queue__check_text(field, v, max, err);
}

enum ec_status coord_queue__check_id(const char *field, const char *v, bool required,
                                     struct ec_err *err)
{
    return check_id_max(field, v, required, COORD_QUEUE_ID_MAX, err);
}

enum ec_status coord_queue__check_subtask_id(const char *v, struct ec_err *err)
{
    return check_id_max("subtaskId", v, true, COORD_QUEUE_ID_MAX + 3, err);
}

static size_t utf8_valid_prefix(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len;
        uint32_t min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, min = 0x10000;
        } else {
            return i;
        }
        if (i + len > n)
            return i;
        uint32_t cp = c & (0x7f >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += len;
    }
    return n;
}

enum ec_status coord_queue__check_text(const char *field, const char *v, size_t max,
                                       struct ec_err *err)
{
    size_t n = strlen(v);
    if (n > max)
        return ec_err_set(err, EC_ETOOBIG, NULL, "%s is %zu bytes, over the limit of %zu", field, n,
                          max);
    size_t ok = utf8_valid_prefix((const unsigned char *)v, n);
    if (ok != n)
        return ec_err_set(err, EC_EINVAL, NULL, "%s is not valid UTF-8 at byte %zu", field, ok);
    return EC_OK;
}

static bool one_of(const char *v, const char *const *allowed)
{
    for (; *allowed != NULL; allowed++)
        if (strcmp(v, *allowed) == 0)
            return true;
    return false;
}

/* --- submit: validation ------------------------------------------------------------------- */

static const char *const languages[] = { "python", "javascript", NULL };
static const char *const kinds[] = { "micro_loop", "single_step", NULL };
static const char *const resource_classes[] = { "cpu", "gpu", NULL };

/* The submission with its defaults applied. */
struct norm_task {
    const char *task_id, *prompt, *language, *snapshot_ref, *submitter, *project, *tenant;
    const char *resource_class, *requested_model;
    int priority;
    bool fallback;
    bool has_deps;
};

static const char *dflt(const char *v, const char *d)
{
    return v != NULL ? v : d;
}

/* Depth-first search for a cycle through the dependency graph; color 0 new, 1 on the path,
 * 2 done. */
static bool dep_cycle(const struct coord_subtask_spec *st, size_t i, unsigned char *color)
{
    color[i] = 1;
    for (size_t k = 0; k < st[i].n_depends_on; k++) {
        size_t d = (size_t)st[i].depends_on[k];
        if (color[d] == 1 || (color[d] == 0 && dep_cycle(st, d, color)))
            return true;
    }
    color[i] = 2;
    return false;
}

static enum ec_status check_subtask(const struct coord_subtask_spec *s, size_t i, size_t n,
                                    struct ec_err *err)
{
    char field[48];
    snprintf(field, sizeof(field), "subtasks[%zu].input", i);
    if (s->input == NULL)
        return ec_err_set(err, EC_EINVAL, NULL, "%s is required", field);
    enum ec_status st = coord_queue__check_text(field, s->input, COORD_QUEUE_TEXT_MAX, err);
    if (st != EC_OK)
        return st;
    if (s->language != NULL && !one_of(s->language, languages))
        return ec_err_set(err, EC_EINVAL, NULL,
                          "subtasks[%zu].language must be python or javascript, got \"%.40s\"", i,
                          s->language);
    if (s->kind != NULL && !one_of(s->kind, kinds))
        return ec_err_set(err, EC_EINVAL, NULL,
                          "subtasks[%zu].kind must be micro_loop or single_step, got \"%.40s\"", i,
                          s->kind);
    if (s->timeout_ms < 0 || s->timeout_ms > COORD_QUEUE_TIMEOUT_MAX_MS)
        return ec_err_set(err, EC_EINVAL, NULL,
                          "subtasks[%zu].timeoutMs must be 0 (the default) to %d, got %" PRId64, i,
                          COORD_QUEUE_TIMEOUT_MAX_MS, s->timeout_ms);
    if (s->n_depends_on > COORD_QUEUE_DEPS_MAX)
        return ec_err_set(err, EC_EINVAL, NULL, "subtasks[%zu].dependsOn has %zu entries, over %d",
                          i, s->n_depends_on, COORD_QUEUE_DEPS_MAX);
    for (size_t k = 0; k < s->n_depends_on; k++) {
        int d = s->depends_on[k];
        if (d < 0 || (size_t)d >= n || (size_t)d == i)
            return ec_err_set(err, EC_EINVAL, NULL,
                              "subtasks[%zu].dependsOn[%zu] = %d is not another subtask's index", i,
                              k, d);
        for (size_t j = 0; j < k; j++)
            if (s->depends_on[j] == d)
                return ec_err_set(err, EC_EINVAL, NULL, "subtasks[%zu].dependsOn lists %d twice", i,
                                  d);
    }
    return EC_OK;
}

static enum ec_status normalise(const struct coord_task_spec *spec, struct norm_task *t,
                                struct ec_err *err)
{
    enum ec_status st;
    if ((st = coord_queue__check_id("taskId", spec->task_id, true, err)) != EC_OK)
        return st;
    if (spec->prompt == NULL || spec->prompt[0] == '\0')
        return ec_err_set(err, EC_EINVAL, NULL, "prompt is required");
    if ((st = coord_queue__check_text("prompt", spec->prompt, COORD_QUEUE_TEXT_MAX, err)) != EC_OK)
        return st;
    t->task_id = spec->task_id;
    t->prompt = spec->prompt;
    t->language = dflt(spec->language, "python");
    if (!one_of(t->language, languages))
        return ec_err_set(err, EC_EINVAL, NULL,
                          "language must be python or javascript, got \"%.40s\"", t->language);
    if (spec->snapshot_ref == NULL || spec->snapshot_ref[0] == '\0')
        return ec_err_set(err, EC_EINVAL, NULL, "snapshotRef is required");
    if ((st = coord_queue__check_text("snapshotRef", spec->snapshot_ref, COORD_QUEUE_REF_MAX,
                                      err)) != EC_OK)
        return st;
    t->snapshot_ref = spec->snapshot_ref;
    t->submitter = dflt(spec->submitter_account_id, "anonymous");
    t->project = dflt(spec->project_id, "default");
    t->tenant = spec->tenant_id != NULL && spec->tenant_id[0] != '\0' ? spec->tenant_id : NULL;
    t->requested_model = spec->requested_model != NULL && spec->requested_model[0] != '\0'
                             ? spec->requested_model
                             : NULL;
    if ((st = coord_queue__check_id("submitterAccountId", t->submitter, true, err)) != EC_OK ||
        (st = coord_queue__check_id("projectId", t->project, true, err)) != EC_OK ||
        (st = coord_queue__check_id("tenantId", t->tenant, false, err)) != EC_OK ||
        (st = coord_queue__check_id("requestedModel", t->requested_model, false, err)) != EC_OK)
        return st;
    t->resource_class = dflt(spec->resource_class, "cpu");
    if (!one_of(t->resource_class, resource_classes))
        return ec_err_set(err, EC_EINVAL, NULL, "resourceClass must be cpu or gpu, got \"%.40s\"",
                          t->resource_class);
    if (spec->priority < 0 || spec->priority > 100)
        return ec_err_set(err, EC_EINVAL, NULL, "priority must be 0..100, got %d", spec->priority);
    t->priority = spec->priority;
    t->fallback = spec->decomposition_fallback;
    if (spec->n_subtasks == 0 || spec->subtasks == NULL)
        return ec_err_set(err, EC_EINVAL, NULL, "subtasks must not be empty");
    if (spec->n_subtasks > COORD_QUEUE_SUBTASKS_MAX)
        return ec_err_set(err, EC_EINVAL, NULL, "a task has at most %d subtasks, got %zu",
                          COORD_QUEUE_SUBTASKS_MAX, spec->n_subtasks);
    t->has_deps = false;
    for (size_t i = 0; i < spec->n_subtasks; i++) {
        if ((st = check_subtask(&spec->subtasks[i], i, spec->n_subtasks, err)) != EC_OK)
            return st;
        t->has_deps |= spec->subtasks[i].n_depends_on > 0;
    }
    if (t->has_deps) {
        unsigned char color[COORD_QUEUE_SUBTASKS_MAX] = { 0 };
        for (size_t i = 0; i < spec->n_subtasks; i++)
            if (color[i] == 0 && dep_cycle(spec->subtasks, i, color))
                return ec_err_set(err, EC_EINVAL, NULL,
                                  "subtasks[%zu].dependsOn is part of a dependency cycle", i);
    }
    return EC_OK;
}

/* --- submit: storage ---------------------------------------------------------------------- */

static json_t *jstr_or_null(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}

static const char *subtask_id(struct ec_arena *a, const char *task_id, size_t i)
{
    return ec_arena_sprintf(a, "%s:%zu", task_id, i);
}

/* The subtasks as JSON rows for json_to_recordset, and the SHA-256 (hex) of the normalised
 * submission, which a resubmission of the same task id must match. The subtasks are not in it:
 * they are derived (a model may split the same submission differently twice). */
static enum ec_status encode_spec(struct ec_arena *a, const struct coord_task_spec *spec,
                                  const struct norm_task *t, const char **rows_json,
                                  const char **sha_hex, struct ec_err *err)
{
    json_t *rows = json_array();
    for (size_t i = 0; i < spec->n_subtasks; i++) {
        const struct coord_subtask_spec *s = &spec->subtasks[i];
        json_t *deps = json_array();
        for (size_t k = 0; k < s->n_depends_on; k++)
            json_array_append_new(deps, json_integer(s->depends_on[k]));
        int64_t timeout = s->timeout_ms > 0 ? s->timeout_ms : COORD_QUEUE_TIMEOUT_DEFAULT;
        json_array_append_new(
            rows, json_pack("{s:s,s:i,s:s,s:s,s:s,s:I,s:o,s:i}", "id", subtask_id(a, t->task_id, i),
                            "i", (int)i, "kind", dflt(s->kind, "single_step"), "language",
                            dflt(s->language, t->language), "input", s->input, "timeout_ms",
                            (json_int_t)timeout, "deps", deps, "pending", (int)s->n_depends_on));
    }
    json_t *whole =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:s,s:i,s:o}", "taskId", t->task_id, "prompt",
                  t->prompt, "language", t->language, "snapshotRef", t->snapshot_ref, "submitter",
                  t->submitter, "projectId", t->project, "tenantId", jstr_or_null(t->tenant),
                  "resourceClass", t->resource_class, "priority", t->priority, "requestedModel",
                  jstr_or_null(t->requested_model));
    char *rows_text = json_dumps(rows, JSON_COMPACT);
    char *whole_text = whole != NULL ? json_dumps(whole, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(rows);
    json_decref(whole);
    enum ec_status st = EC_OK;
    if (rows_text == NULL || whole_text == NULL) {
        /* Every string was checked to be UTF-8, so this is a bug or out of memory. */
        st = ec_err_set(err, EC_EINTERNAL, NULL, "cannot encode task %.64s", t->task_id);
    } else {
        uint8_t sha[EC_SHA256_LEN];
        ec_sha256(whole_text, strlen(whole_text), sha);
        *sha_hex = ec_hex_encode_arena(a, sha, sizeof(sha));
        *rows_json = ec_arena_strdup(a, rows_text);
    }
    free(rows_text);
    free(whole_text);
    return st;
}

struct submit_ctx {
    const struct norm_task *t;
    size_t n_subtasks;
    int max_attempts;
    const char *rows_json, *sha_hex;
    const char **stored_ids; /* a repeated submission: the ids stored the first time */
    size_t n_stored;
};

static enum ec_status submit_tx(struct ec_pg_conn *c, struct ec_arena *a, void *p,
                                struct ec_err *err)
{
    struct submit_ctx *x = p;
    const struct norm_task *t = x->t;
    int64_t now = ec_now_ms();
    const char *params[] = { t->task_id,
                             t->prompt,
                             t->language,
                             t->snapshot_ref,
                             t->submitter,
                             t->project,
                             t->tenant,
                             t->resource_class,
                             coord_queue__i64(a, t->priority),
                             t->requested_model,
                             t->fallback ? "true" : "false",
                             coord_queue__i64(a, (int64_t)x->n_subtasks),
                             t->has_deps ? "true" : "false",
                             x->sha_hex,
                             coord_queue__i64(a, now),
                             x->rows_json,
                             coord_queue__i64(a, x->max_attempts),
                             coord_queue__i64(a, ec_mono_us() % COORD_QUEUE_COMPLETION_SHARDS) };
    struct pg_result *res;
    /* The task and its subtasks in one statement; nothing when the task id exists. seq (age)
     * follows the index: rows are inserted in index order. */
    enum ec_status st = ec_pg_query(
        c,
        "WITH t AS (INSERT INTO tasks (task_id, prompt, language, snapshot_ref, "
        " submitter_account_id, project_id, tenant_id, resource_class, priority, "
        " requested_model, decomposition_fallback, n_subtasks, has_dependencies, spec_sha256, "
        " created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::integer, $10, "
        " $11::boolean, $12::integer, $13::boolean, $14, $15::bigint) "
        " ON CONFLICT (task_id) DO NOTHING RETURNING task_id), "
        "s AS (INSERT INTO subtasks (subtask_id, task_id, subtask_index, kind, language, input, "
        " timeout_ms, project_id, tenant_id, priority, requested_model, state, max_attempts, "
        " depends_on, deps_pending, enqueued_at_ms) "
        " SELECT x.id, t.task_id, x.i, x.kind, x.language, x.input, x.timeout_ms, $6, $7, "
        " $9::integer, $10, CASE WHEN x.pending > 0 THEN 'blocked' ELSE 'queued' END, "
        " $17::integer, ARRAY(SELECT d::integer FROM json_array_elements_text(x.deps) AS d), "
        " x.pending, $15::bigint "
        " FROM t CROSS JOIN json_to_recordset($16::json) AS x(id text, i integer, kind text, "
        " language text, input text, timeout_ms bigint, deps json, pending integer) "
        " ORDER BY x.i RETURNING 1), "
        "n AS (INSERT INTO queue_totals (shard, enqueued) SELECT $18::smallint, count(*) FROM s "
        " HAVING count(*) > 0 ON CONFLICT (shard) "
        " DO UPDATE SET enqueued = queue_totals.enqueued + excluded.enqueued) "
        "SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM s)",
        18, params, a, &res, err);
    if (st != EC_OK)
        return st;
    if (coord_queue__int(res, 0, 0) == 0) {
        /* The id exists: the same submission again is answered as the first one was. */
        st = ec_pg_query(c, "SELECT spec_sha256 FROM tasks WHERE task_id = $1", 1, params, a, &res,
                         err);
        if (st != EC_OK)
            return st;
        if (ec_pg_nrows(res) == 1 && strcmp(ec_pg_value(res, 0, 0), x->sha_hex) == 0) {
            st = ec_pg_query(c,
                             "SELECT subtask_id FROM subtasks WHERE task_id = $1 "
                             "ORDER BY subtask_index",
                             1, params, a, &res, err);
            if (st != EC_OK)
                return st;
            x->n_stored = (size_t)ec_pg_nrows(res);
            x->stored_ids = ec_arena_alloc(a, (x->n_stored + 1) * sizeof(*x->stored_ids));
            for (size_t i = 0; i < x->n_stored; i++)
                x->stored_ids[i] = ec_pg_value(res, (int)i, 0);
            return EC_OK;
        }
        return ec_err_set(err, EC_ECONFLICT, "task_exists",
                          "task %.64s exists with a different body", t->task_id);
    }
    EC_ASSERT(coord_queue__int(res, 0, 1) == (int64_t)x->n_subtasks);
    struct coord_ledger_event ev = { .event_type = "task_enqueue",
                                     .task_id = t->task_id,
                                     .actor_id = t->submitter,
                                     .issued_at_ms = now };
    return coord_ledger_record(c, a, &ev, err);
}

enum ec_status coord_queue_submit(struct coord_queue *q, struct ec_arena *arena,
                                  const struct coord_task_spec *spec, const char ***subtask_ids,
                                  size_t *n_ids, struct ec_err *err)
{
    *subtask_ids = NULL;
    *n_ids = 0;
    struct norm_task t;
    enum ec_status st = normalise(spec, &t, err);
    if (st != EC_OK)
        return st;
    struct submit_ctx x = { .t = &t,
                            .n_subtasks = spec->n_subtasks,
                            .max_attempts = q->max_attempts };
    if ((st = encode_spec(arena, spec, &t, &x.rows_json, &x.sha_hex, err)) != EC_OK)
        return st;
    if ((st = ec_pg_tx(q->pool, EC_PG_READ_COMMITTED, arena, submit_tx, &x, err)) != EC_OK)
        return st;
    if (x.stored_ids != NULL) {
        *subtask_ids = x.stored_ids;
        *n_ids = x.n_stored;
        return EC_OK;
    }
    const char **ids = ec_arena_alloc(arena, spec->n_subtasks * sizeof(*ids));
    for (size_t i = 0; i < spec->n_subtasks; i++)
        ids[i] = subtask_id(arena, t.task_id, i);
    *subtask_ids = ids;
    *n_ids = spec->n_subtasks;
    return EC_OK;
}

/* --- counts ------------------------------------------------------------------------------- */

static enum ec_status counts_fn(struct ec_pg_conn *c, struct ec_arena *a, void *p,
                                struct ec_err *err)
{
    struct coord_queue_counts *out = p;
    struct pg_result *res;
    /* In one snapshot: leased and failed from their partial indexes (few rows), completions
     * and subtasks ever enqueued from their shard rows, and queued (runnable or blocked) as
     * what is left, so that a large backlog is never counted row by row. */
    enum ec_status st =
        ec_pg_query(c,
                    "SELECT e.n - l.n - d.n - f.n, l.n, d.n, f.n FROM "
                    "(SELECT coalesce(sum(enqueued), 0) AS n FROM queue_totals) e, "
                    "(SELECT count(*) AS n FROM subtasks WHERE state = 'leased') l, "
                    "(SELECT coalesce(sum(completions), 0) AS n FROM project_completions) d, "
                    "(SELECT count(*) AS n FROM subtasks WHERE state = 'failed') f",
                    0, NULL, a, &res, err);
    if (st != EC_OK)
        return st;
    out->queued = coord_queue__int(res, 0, 0);
    out->leased = coord_queue__int(res, 0, 1);
    out->completed = coord_queue__int(res, 0, 2);
    out->failed = coord_queue__int(res, 0, 3);
    return EC_OK;
}

enum ec_status coord_queue_counts(struct coord_queue *q, struct coord_queue_counts *out,
                                  struct ec_err *err)
{
    memset(out, 0, sizeof(*out));
    struct ec_arena a;
    ec_arena_init(&a);
    enum ec_status st = ec_pg_with_conn(q->pool, &a, counts_fn, out, err);
    ec_arena_release(&a);
    return st;
}
