/* The work of one subtask: the deterministic offline provider (edgecoder-local: the input run
 * as code when it is code, else a fixed template program, every result labelled), and running
 * code through the sandbox with the agent's limits. The Ollama provider is agent_ollama.c. */
#include "agent/agent_int.h"
#include "common/ec_log.h"
#include "common/ec_mem.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prefixed to every edgecoder-local output: no model produced it. */
#define LOCAL_LABEL       "[edgecoder-local: deterministic offline provider, no model]\n"
#define TASK_MARK         "[Your task]\n"
#define TEMPLATE_TASK_MAX 2000

struct agent_provider {
    bool ollama;
    struct agent_ollama *ol; /* ollama-local only */
};

enum ec_status agent_provider_new(struct agent *a, struct agent_provider **out, struct ec_err *err)
{
    struct agent_provider *p = ec_xcalloc(1, sizeof(*p));
    p->ollama = strcmp(a->cfg->provider, AGENT_PROVIDER_OLL) == 0;
    if (p->ollama) {
        enum ec_status st = agent_ollama_new(a->cfg, &p->ol, err);
        if (st != EC_OK) {
            free(p);
            return st;
        }
    }
    *out = p;
    return EC_OK;
}

enum ec_status agent_provider_ready(struct agent *a, struct ec_err *err)
{
    return a->provider->ollama ? agent_ollama_ready(a->provider->ol, err) : EC_OK;
}

void agent_provider_free(struct agent_provider *p)
{
    if (p == NULL)
        return;
    agent_ollama_free(p->ol);
    free(p);
}

void agent_work_result_release(struct agent_work_result *r)
{
    free(r->output);
    free(r->error);
    r->output = r->error = NULL;
}

/* --- code or prose ------------------------------------------------------------------------ */

char *agent_extract_code(const char *text)
{
    const char *open = strstr(text, "```");
    if (open == NULL)
        return NULL;
    const char *body = strchr(open + 3, '\n');
    if (body == NULL)
        return NULL;
    body++;
    const char *close = strstr(body, "```");
    if (close == NULL)
        close = body + strlen(body);
    return ec_xstrndup(body, (size_t)(close - body));
}

/* Code when every non-empty line carries code punctuation or is a comment; prose otherwise. */
static bool looks_like_code(const char *s)
{
    bool any = false;
    while (*s != '\0') {
        size_t n = strcspn(s, "\n");
        size_t k = 0;
        while (k < n && isspace((unsigned char)s[k]))
            k++;
        if (k < n) {
            any = true;
            const char *line = s + k;
            size_t len = n - k;
            bool comment = line[0] == '#' || (len >= 2 && line[0] == '/' && line[1] == '/');
            bool punct = false;
            for (size_t i = 0; i < len && !punct; i++)
                punct = strchr("()=[]{};:+", line[i]) != NULL;
            if (!comment && !punct)
                return false;
        }
        s += n;
        if (*s == '\n')
            s++;
    }
    return any;
}

char *agent_local_program(const char *input, enum sandbox_language lang, bool *is_template)
{
    /* A released dependant's input carries its context first; the task is what follows. */
    const char *mark = strstr(input, TASK_MARK);
    const char *task = mark != NULL ? mark + strlen(TASK_MARK) : input;
    *is_template = false;
    char *fenced = agent_extract_code(task);
    if (fenced != NULL)
        return fenced;
    if (looks_like_code(task))
        return ec_xstrdup(task);
    *is_template = true;
    size_t n = strnlen(task, TEMPLATE_TASK_MAX);
    struct ec_buf b;
    ec_buf_init(&b, 0);
    ec_buf_puts(&b, lang == SANDBOX_PYTHON ? "task = \"" : "const task = \"");
    ec_buf_json_escape(&b, task, n);
    if (lang == SANDBOX_PYTHON)
        ec_buf_puts(&b, "\"\nprint(\"template program for a prose prompt\")\n"
                        "print(\"task: \" + task)\nprint(\"characters:\", len(task))\n");
    else
        ec_buf_puts(&b, "\";\nconsole.log(\"template program for a prose prompt\");\n"
                        "console.log(\"task: \" + task);\n"
                        "console.log(\"characters: \" + task.length);\n");
    return ec_buf_detach(&b, NULL);
}

/* --- the sandbox -------------------------------------------------------------------------- */

static char *capped_copy(const char *s, size_t max, bool truncated)
{
    size_t n = s != NULL ? strnlen(s, max) : 0;
    static const char more[] = "\n[truncated]";
    bool cut = truncated || (s != NULL && s[n] != '\0');
    /* Never cut a UTF-8 sequence in two: the result travels as a JSON string. */
    while (s != NULL && n > 0 && s[n] != '\0' && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    char *out = ec_xmalloc(n + (cut ? sizeof(more) : 1));
    if (n > 0)
        memcpy(out, s, n);
    if (cut)
        memcpy(out + n, more, sizeof(more));
    else
        out[n] = '\0';
    return out;
}

void agent_run_code(struct agent *a, enum sandbox_language lang, const char *code,
                    int64_t timeout_ms, struct agent_work_result *r)
{
    struct sandbox_opts opts = a->sandbox;
    pthread_mutex_lock(&a->lock);
    int64_t mem_mb = a->memory_limit_mb;
    pthread_mutex_unlock(&a->lock);
    opts.limits.memory_bytes = (uint64_t)mem_mb << 20;
    opts.limits.wall_timeout_ms = timeout_ms;
    opts.limits.max_output_bytes = AGENT_OUTPUT_MAX;
    struct sandbox_result sr = { 0 };
    struct ec_err err = { 0 };
    free(r->output);
    free(r->error);
    r->output = r->error = NULL;
    enum ec_status st = sandbox_run(&opts, lang, code, strlen(code), &sr, &err);
    if (st != EC_OK) {
        r->ok = false;
        r->output = ec_xstrdup("");
        char msg[sizeof(err.msg) + 32];
        snprintf(msg, sizeof(msg), "sandbox_unavailable: %s", err.msg);
        r->error = ec_xstrdup(msg);
        EC_WARN("the sandbox cannot run", EC_LS("reason", err.msg));
        return;
    }
    r->ok = sr.ok;
    r->output = capped_copy(sr.stdout_text, AGENT_OUTPUT_MAX, sr.stdout_truncated);
    const char *why = sr.rejected ? "outside_subset: " : sr.timed_out ? "timeout: " : "";
    size_t elen = sr.stderr_text != NULL ? strlen(sr.stderr_text) : 0;
    if (elen > 0 || why[0] != '\0') {
        char *stderr_text = capped_copy(sr.stderr_text, AGENT_ERROR_MAX, sr.stderr_truncated);
        size_t n = strlen(why) + strlen(stderr_text) + 1;
        r->error = ec_xmalloc(n);
        snprintf(r->error, n, "%s%s", why, stderr_text);
        free(stderr_text);
    } else if (!sr.ok) {
        char msg[48];
        snprintf(msg, sizeof(msg), "exit code %d", sr.exit_code);
        r->error = ec_xstrdup(msg);
    }
    sandbox_result_release(&sr);
}

static enum sandbox_language job_language(const struct agent_job *job)
{
    int lang = sandbox_language_parse(job->language);
    return lang < 0 ? SANDBOX_PYTHON : (enum sandbox_language)lang;
}

int64_t agent__run_timeout(const struct agent *a, const struct agent_job *job)
{
    int64_t t = a->cfg->run_timeout_ms;
    if (job->timeout_ms > 0 && job->timeout_ms < t)
        t = job->timeout_ms;
    return t;
}

static void run_local(struct agent *a, const struct agent_job *job, struct agent_work_result *r)
{
    enum sandbox_language lang = job_language(job);
    bool is_template = false;
    char *program = agent_local_program(job->input, lang, &is_template);
    agent_run_code(a, lang, program, agent__run_timeout(a, job), r);
    free(program);
    size_t n = strlen(LOCAL_LABEL) + strlen(r->output) + 1;
    char *labelled = ec_xmalloc(n);
    snprintf(labelled, n, "%s%s", LOCAL_LABEL, r->output);
    free(r->output);
    r->output = labelled;
    r->provider = AGENT_PROVIDER_LOC;
    r->model = is_template ? "template" : "input-as-code";
}

void agent_work_run(struct agent *a, const struct agent_job *job, struct agent_work_result *r)
{
    memset(r, 0, sizeof(*r));
    r->started_at_ms = ec_now_ms();
    int64_t t0 = ec_mono_ms();
    if (a->provider->ollama)
        agent_ollama_run(a, a->provider->ol, job, job_language(job), r);
    else
        run_local(a, job, r);
    if (r->output == NULL)
        r->output = ec_xstrdup("");
    r->duration_ms = ec_mono_ms() - t0;
    r->finished_at_ms = ec_now_ms();
}
