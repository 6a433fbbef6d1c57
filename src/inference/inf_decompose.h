/* Decomposition: the prompt that asks the model for subtasks, the robust parser of its answer
 * (code fences, text around the array, trailing commas) and the original's timeout formula.
 * Pure functions; the parser sees untrusted model output and is fuzzed. */
#ifndef INF_DECOMPOSE_H
#define INF_DECOMPOSE_H

#include "common/ec_arena.h"
#include "common/ec_status.h"

#include <stddef.h>
#include <stdint.h>

#define INF_DECOMPOSE_MAX_SUBTASKS     10
#define INF_DECOMPOSE_MAX_ANSWER_BYTES (1u << 20)
#define INF_DECOMPOSE_MAX_INPUT_BYTES  (64u << 10) /* one subtask's input */
#define INF_DECOMPOSE_MAX_PROMPT_BYTES (256u << 10)
#define INF_FALLBACK_TIMEOUT_MS        30000
#define INF_DEFAULT_LANGUAGE           "python"

/* One subtask as the service answers it and the client returns it. */
struct inf_subtask {
    const char *input;    /* NUL-terminated */
    const char *language; /* "python" or "javascript" */
    int64_t timeout_ms;
};

struct inf_subtask_list {
    struct inf_subtask items[INF_DECOMPOSE_MAX_SUBTASKS];
    size_t count;
};

/* "python" or "javascript" for a name a model or caller may use ("py", "JS", "node", ...); NULL
 * for anything else. */
const char *inf_language_normalize(const char *name);

/* The original's formula: min(5000 + floor(len/50) * 1000, 60000), len counted in UTF-16 code
 * units as JavaScript's String.length does. */
int64_t inf_subtask_timeout_ms(const char *input, size_t len);

/* The instruction sent to the model; allocated in arena. */
char *inf_decompose_prompt(struct ec_arena *arena, const char *prompt, const char *language);

/* Parses a model's answer: the first JSON array found (inside a ``` fence when there is one),
 * trailing commas tolerated; items are objects with a non-empty string "input" and an optional
 * "language" (unknown or missing: default_language), or plain strings. Unusable items are
 * skipped; at most INF_DECOMPOSE_MAX_SUBTASKS are kept. Strings go to arena. An answer with no
 * usable subtask is EC_EINVAL with code "decompose_unusable" and the reason in err->msg. */
enum ec_status inf_decompose_parse(const char *answer, size_t len, const char *default_language,
                                   struct ec_arena *arena, struct inf_subtask_list *out,
                                   struct ec_err *err);

#endif
