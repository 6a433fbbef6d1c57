/* libFuzzer target for the sandbox's host-side subset checks: the Python and JavaScript
 * deny-lists and the JavaScript token check over arbitrary bytes (NULs included) must never
 * crash or read out of bounds, must always explain a refusal, and must agree with each other:
 * what the deny-list refuses, the whole check refuses. The first byte picks the language. */
#include "agent/sandbox_int.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what, const char *reason)
{
    fprintf(stderr, "fuzz_subset_check: %s (%s)\n", what, reason);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    enum sandbox_language lang = (data[0] & 1) ? SANDBOX_JAVASCRIPT : SANDBOX_PYTHON;
    /* An exact-size copy so ASan sees any read past the end. */
    size_t len = size - 1;
    char *code = malloc(len > 0 ? len : 1);
    memcpy(code, data + 1, len);

    char reason[256];
    reason[0] = '\0';
    bool deny_ok = sandbox__denylist_scan(lang, code, len, reason, sizeof(reason));
    if (!deny_ok && (reason[0] == '\0' || strlen(reason) >= sizeof(reason)))
        die("deny-list refusal without a reason", reason);

    char js_reason[256];
    js_reason[0] = '\0';
    bool js_ok = sandbox__js_token_check(code, len, js_reason, sizeof(js_reason));
    if (!js_ok && js_reason[0] == '\0')
        die("token check refusal without a reason", js_reason);

    char all_reason[256];
    all_reason[0] = '\0';
    bool all_ok = sandbox__subset_check(lang, code, len, all_reason, sizeof(all_reason));
    if (!all_ok && all_reason[0] == '\0')
        die("subset refusal without a reason", all_reason);
    if (all_ok && !deny_ok)
        die("the deny-list refused but the whole check passed", reason);
    if (all_ok && lang == SANDBOX_JAVASCRIPT && !js_ok)
        die("the token check refused but the whole check passed", js_reason);
    if (all_ok && memchr(code, '\0', len) != NULL)
        die("a NUL byte passed", "");

    /* A zero-sized reason buffer is never written. */
    char canary = 'c';
    sandbox__denylist_scan(lang, code, len, &canary, 0);
    sandbox__js_token_check(code, len, &canary, 0);
    if (canary != 'c')
        die("wrote into an empty reason buffer", "");
    free(code);
    return 0;
}
