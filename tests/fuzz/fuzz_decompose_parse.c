/* libFuzzer target for the decomposition parser: any model answer must parse or be refused
 * without crashing, and whatever it accepts must obey the limits (1..10 subtasks, non-empty
 * input, a known language, the timeout formula's range). */
#include "inference/inf_decompose.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ec_arena arena;
    ec_arena_init(&arena);
    struct inf_subtask_list list;
    struct ec_err err = { 0 };
    if (inf_decompose_parse((const char *)data, size, "python", &arena, &list, &err) == EC_OK) {
        if (list.count == 0 || list.count > INF_DECOMPOSE_MAX_SUBTASKS)
            abort();
        for (size_t i = 0; i < list.count; i++) {
            const struct inf_subtask *s = &list.items[i];
            if (s->input[0] == '\0' || strlen(s->input) > INF_DECOMPOSE_MAX_INPUT_BYTES)
                abort();
            if (strcmp(s->language, "python") != 0 && strcmp(s->language, "javascript") != 0)
                abort();
            if (s->timeout_ms < 5000 || s->timeout_ms > 60000)
                abort();
        }
    } else if (list.count != 0) {
        abort();
    }
    ec_arena_release(&arena);
    return 0;
}
