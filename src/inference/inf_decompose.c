/* The decomposition prompt and the parser of the model's answer. Models wrap JSON in prose and
 * ``` fences and leave trailing commas; the parser finds the array, cleans it, and keeps only
 * items it can use. */
#include "inference/inf_decompose.h"

#include "common/ec_buf.h"

#include <ctype.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MAX_ARRAY_TRIES 8 /* '[' positions tried before giving up (bounds the work) */
#define UNUSABLE        "decompose_unusable"

const char *inf_language_normalize(const char *name)
{
    static const struct {
        const char *alias;
        const char *language;
    } aliases[] = {
        { "python", "python" },         { "py", "python" },          { "python3", "python" },
        { "javascript", "javascript" }, { "js", "javascript" },      { "node", "javascript" },
        { "nodejs", "javascript" },     { "node.js", "javascript" },
    };
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
        if (strcasecmp(name, aliases[i].alias) == 0)
            return aliases[i].language;
    return NULL;
}

int64_t inf_subtask_timeout_ms(const char *input, size_t len)
{
    int64_t units = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)input[i];
        if ((c & 0xC0) != 0x80)
            units++; /* a character starts here */
        if (c >= 0xF0 && c <= 0xF7)
            units++; /* outside the BMP: a surrogate pair in UTF-16 */
    }
    int64_t ms = 5000 + (units / 50) * 1000;
    return ms < 60000 ? ms : 60000;
}

char *inf_decompose_prompt(struct ec_arena *arena, const char *prompt, const char *language)
{
    return ec_arena_sprintf(
        arena,
        "You split a programming task into small, independent subtasks that worker agents "
        "can each solve alone.\n"
        "Answer with a JSON array only, no prose, of at most %d objects of the form "
        "{\"input\": \"<a complete, self-contained instruction>\", \"language\": \"%s\"}.\n"
        "A task that is already small becomes an array of one object.\n\n"
        "Language: %s\nTask:\n%s\n",
        INF_DECOMPOSE_MAX_SUBTASKS, language, language, prompt);
}

/* The inside of the first ``` fence (after its info line); [*start, *end) is the whole text when
 * there is no fence. */
static void fence_region(const char *s, size_t len, size_t *start, size_t *end)
{
    *start = 0;
    *end = len;
    const char *open = memmem(s, len, "```", 3);
    if (open == NULL)
        return;
    size_t from = (size_t)(open - s) + 3;
    const char *nl = memchr(s + from, '\n', len - from);
    from = nl != NULL ? (size_t)(nl - s) + 1 : from;
    const char *close = memmem(s + from, len - from, "```", 3);
    *start = from;
    *end = close != NULL ? (size_t)(close - s) : len;
}

/* From s[open] == '[' to its matching ']', skipping brackets inside strings; 0 when unbalanced. */
static size_t matching_close(const char *s, size_t len, size_t open)
{
    int depth = 0;
    bool in_str = false;
    for (size_t i = open; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
            continue;
        }
        if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++depth > 64)
                return 0;
        } else if (c == ']' || c == '}') {
            if (--depth == 0)
                return c == ']' ? i : 0;
            if (depth < 0)
                return 0;
        }
    }
    return 0;
}

/* Copies s[0..len) into out without commas that only precede a closing bracket. */
static enum ec_status drop_trailing_commas(const char *s, size_t len, struct ec_buf *out)
{
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\' && i + 1 < len) {
                if (ec_buf_append(out, s + i, 2) != EC_OK)
                    return EC_ETOOBIG;
                i++;
                continue;
            }
            if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == ',') {
            size_t j = i + 1;
            while (j < len && isspace((unsigned char)s[j]))
                j++;
            if (j < len && (s[j] == ']' || s[j] == '}'))
                continue;
        }
        if (ec_buf_putc(out, c) != EC_OK)
            return EC_ETOOBIG;
    }
    return EC_OK;
}

static const char *trimmed(struct ec_arena *arena, const char *s, size_t n, size_t *out_len)
{
    while (n > 0 && isspace((unsigned char)s[0])) {
        s++;
        n--;
    }
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    *out_len = n;
    return ec_arena_strndup(arena, s, n);
}

/* Adds the usable items of array to out; returns how many items it looked at. */
static void take_items(json_t *array, const char *default_language, struct ec_arena *arena,
                       struct inf_subtask_list *out)
{
    size_t i;
    json_t *item;
    json_array_foreach(array, i, item)
    {
        if (out->count >= INF_DECOMPOSE_MAX_SUBTASKS)
            break;
        json_t *input = json_is_string(item) ? item : json_object_get(item, "input");
        if (!json_is_string(input))
            continue;
        size_t n = json_string_length(input);
        const char *text = json_string_value(input);
        if (n > INF_DECOMPOSE_MAX_INPUT_BYTES || memchr(text, '\0', n) != NULL)
            continue;
        size_t tn;
        const char *t = trimmed(arena, text, n, &tn);
        if (tn == 0)
            continue;
        const char *lang =
            inf_language_normalize(json_string_value(json_object_get(item, "language")));
        struct inf_subtask *st = &out->items[out->count++];
        st->input = t;
        st->language = lang != NULL ? lang : default_language;
        st->timeout_ms = inf_subtask_timeout_ms(t, tn);
    }
}

/* Tries the arrays starting in s[from..to); EC_OK once one gives a usable subtask. */
static enum ec_status parse_region(const char *s, size_t from, size_t to,
                                   const char *default_language, struct ec_arena *arena,
                                   struct inf_subtask_list *out, char *why, size_t why_cap)
{
    int tries = 0;
    size_t pos = from;
    while (pos < to && tries < MAX_ARRAY_TRIES) {
        const char *open = memchr(s + pos, '[', to - pos);
        if (open == NULL)
            break;
        size_t at = (size_t)(open - s);
        tries++;
        size_t close = matching_close(s, to, at);
        if (close == 0) {
            snprintf(why, why_cap, "the JSON array is not closed");
            pos = at + 1;
            continue;
        }
        struct ec_buf clean;
        ec_buf_init(&clean, INF_DECOMPOSE_MAX_ANSWER_BYTES);
        json_t *array = NULL;
        json_error_t jerr;
        if (drop_trailing_commas(s + at, close - at + 1, &clean) == EC_OK)
            array = json_loadb(clean.data != NULL ? clean.data : "", clean.len, 0, &jerr);
        else
            snprintf(jerr.text, sizeof(jerr.text), "too long");
        ec_buf_release(&clean);
        if (!json_is_array(array)) {
            snprintf(why, why_cap, "the JSON array does not parse (%.120s)",
                     array == NULL ? jerr.text : "not an array");
            json_decref(array);
            pos = at + 1;
            continue;
        }
        take_items(array, default_language, arena, out);
        json_decref(array);
        if (out->count > 0)
            return EC_OK;
        snprintf(why, why_cap, "the JSON array holds no subtask with a non-empty \"input\"");
        pos = close + 1;
    }
    return EC_EINVAL;
}

enum ec_status inf_decompose_parse(const char *answer, size_t len, const char *default_language,
                                   struct ec_arena *arena, struct inf_subtask_list *out,
                                   struct ec_err *err)
{
    out->count = 0;
    const char *dflt = inf_language_normalize(default_language);
    if (dflt == NULL)
        dflt = INF_DEFAULT_LANGUAGE;
    if (len > INF_DECOMPOSE_MAX_ANSWER_BYTES)
        return ec_err_set(err, EC_EINVAL, UNUSABLE, "the answer is over %u bytes",
                          INF_DECOMPOSE_MAX_ANSWER_BYTES);
    size_t start, end;
    fence_region(answer, len, &start, &end);
    char why[200];
    snprintf(why, sizeof(why), "the answer holds no JSON array");
    if (parse_region(answer, start, end, dflt, arena, out, why, sizeof(why)) == EC_OK)
        return EC_OK;
    /* The array may sit outside the fence (a fenced example, then the answer). */
    if ((start != 0 || end != len) &&
        parse_region(answer, 0, len, dflt, arena, out, why, sizeof(why)) == EC_OK)
        return EC_OK;
    out->count = 0;
    if (len == 0)
        snprintf(why, sizeof(why), "the answer is empty");
    return ec_err_set(err, EC_EINVAL, UNUSABLE, "%s", why);
}
