/* The ollama-local provider: plan -> code -> run -> reflect through the Ollama client, at most
 * two iterations (the original's maxIterations), stopping at the first program that runs
 * cleanly. The result is the last program's stdout and stderr. */
#include "agent/agent_int.h"
#include "common/ec_log.h"
#include "common/ec_mem.h"
#include "inference/ollama.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ITERATIONS   2
#define PROMPT_TASK_MAX  (32 * 1024)
#define PROMPT_CODE_MAX  (32 * 1024)
#define PROMPT_ERR_MAX   (8 * 1024)
#define MODEL_TIMEOUT_MS 180000

struct agent_ollama {
    struct inf_ollama *client;
    char *model;
};

enum ec_status agent_ollama_new(const struct agent_config *cfg, struct agent_ollama **out,
                                struct ec_err *err)
{
    struct inf_ollama_opts opts = { .host = cfg->ollama_host };
    struct inf_ollama *client = NULL;
    enum ec_status st = inf_ollama_new(&opts, &client, err);
    if (st != EC_OK)
        return st;
    struct agent_ollama *ol = ec_xcalloc(1, sizeof(*ol));
    ol->client = client;
    ol->model = ec_xstrdup(cfg->ollama_model);
    *out = ol;
    return EC_OK;
}

void agent_ollama_free(struct agent_ollama *ol)
{
    if (ol == NULL)
        return;
    inf_ollama_free(ol->client);
    free(ol->model);
    free(ol);
}

enum ec_status agent_ollama_ready(struct agent_ollama *ol, struct ec_err *err)
{
    struct inf_ollama_models models = { 0 };
    enum ec_status st = inf_ollama_tags(ol->client, &models, err);
    bool has = st == EC_OK && inf_ollama_models_has(&models, ol->model);
    inf_ollama_models_release(&models);
    if (st != EC_OK)
        return st;
    if (!has)
        return ec_err_set(err, EC_EUNAVAIL, "model_missing",
                          "Ollama at %s has no model %.128s (ollama pull it)",
                          inf_ollama_host(ol->client), ol->model);
    return EC_OK;
}

/* The code in a model's answer: the first fenced block, else the whole answer trimmed. */
static char *code_from_answer(const char *answer)
{
    char *code = agent_extract_code(answer);
    if (code != NULL)
        return code;
    while (isspace((unsigned char)*answer))
        answer++;
    size_t n = strlen(answer);
    while (n > 0 && isspace((unsigned char)answer[n - 1]))
        n--;
    return ec_xstrndup(answer, n);
}

static enum ec_status ask(struct agent_ollama *ol, const char *prompt, char **answer,
                          struct ec_err *err)
{
    struct inf_ollama_gen_opts opts = { .timeout_ms = MODEL_TIMEOUT_MS };
    return inf_ollama_generate(ol->client, ol->model, prompt, &opts, answer, err);
}

static char *prompt_plan(const char *lang, const char *task)
{
    struct ec_buf b;
    ec_buf_init(&b, 0);
    ec_buf_printf(&b,
                  "You are EdgeCoder's coding agent. Write a short numbered plan (at most five "
                  "steps) for solving this task in %s. Do not write code yet.\n\nTask:\n%.*s\n",
                  lang, PROMPT_TASK_MAX, task);
    return ec_buf_detach(&b, NULL);
}

static char *prompt_code(const char *lang, const char *task, const char *plan)
{
    struct ec_buf b;
    ec_buf_init(&b, 0);
    ec_buf_printf(&b,
                  "Write one complete %s program that solves the task and prints its result to "
                  "standard output. Use the language alone: no imports or requires, no files, no "
                  "network. Answer with a single fenced code block.\n\nTask:\n%.*s\n\nPlan:\n"
                  "%.*s\n",
                  lang, PROMPT_TASK_MAX, task, PROMPT_TASK_MAX, plan);
    return ec_buf_detach(&b, NULL);
}

static char *prompt_reflect(const char *lang, const char *task, const char *code, const char *error)
{
    struct ec_buf b;
    ec_buf_init(&b, 0);
    ec_buf_printf(&b,
                  "The %s program below failed. Find the mistake and answer with a single fenced "
                  "code block holding the whole corrected program (still no imports, files or "
                  "network).\n\nTask:\n%.*s\n\nProgram:\n```%s\n%.*s\n```\n\nError output:\n"
                  "%.*s\n",
                  lang, PROMPT_TASK_MAX, task, lang, PROMPT_CODE_MAX, code, PROMPT_ERR_MAX,
                  error != NULL ? error : "(none)");
    return ec_buf_detach(&b, NULL);
}

static void model_failed(struct agent_work_result *r, const struct ec_err *err)
{
    free(r->error);
    char msg[sizeof(err->msg) + 32];
    snprintf(msg, sizeof(msg), "%s: %s", INF_OLLAMA_ERROR_CODE, err->msg);
    r->error = ec_xstrdup(msg);
    r->ok = false;
    EC_WARN("the local model failed", EC_LS("reason", err->msg));
}

void agent_ollama_run(struct agent *a, struct agent_ollama *ol, const struct agent_job *job,
                      enum sandbox_language lang, struct agent_work_result *r)
{
    const char *lname = sandbox_language_name(lang);
    r->provider = AGENT_PROVIDER_OLL;
    r->model = ol->model;
    struct ec_err err = { 0 };
    char *prompt = prompt_plan(lname, job->input);
    char *plan = NULL, *answer = NULL, *code = NULL;
    enum ec_status st = ask(ol, prompt, &plan, &err);
    free(prompt);
    if (st == EC_OK) {
        prompt = prompt_code(lname, job->input, plan);
        st = ask(ol, prompt, &answer, &err);
        free(prompt);
    }
    for (int iteration = 1; st == EC_OK; iteration++) {
        free(code);
        code = code_from_answer(answer);
        free(answer);
        answer = NULL;
        agent_run_code(a, lang, code, agent__run_timeout(a, job), r);
        EC_INFO("iteration ran", EC_LS("subtask_id", job->subtask_id),
                EC_LI("iteration", iteration), EC_LB("ok", r->ok));
        if (r->ok || iteration >= MAX_ITERATIONS)
            break;
        prompt = prompt_reflect(lname, job->input, code, r->error);
        st = ask(ol, prompt, &answer, &err);
        free(prompt);
    }
    if (st != EC_OK)
        model_failed(r, &err);
    free(plan);
    free(answer);
    free(code);
}
