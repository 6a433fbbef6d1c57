/* libFuzzer target for the coordinator's request-body parsers: the JSON an agent or a submitter
 * sends to POST /register, /heartbeat, /result, /submit and /agent/diagnostics, parsed exactly as
 * the handlers parse it. The first byte picks the parser (or all of them); the rest is the body.
 * Must never crash or leak, and a failure must be EC_EINVAL naming a field (400, never 500). */
#include "coord/coord_http_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_refusal(enum ec_status st, const struct ec_err *err)
{
    if (st == EC_OK)
        return;
    /* A refused body is the caller's mistake, reported with a message. */
    if (st != EC_EINVAL || err->msg[0] == '\0')
        abort();
}

/* The strings a parser returned must be readable NUL-terminated text. */
static void touch(const char *s)
{
    if (s != NULL && strlen(s) > (64u << 20))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned which = data[0] % 6;
    json_t *b = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(b)) {
        json_decref(b);
        return 0; /* coord__body_object answers 400 before any parser runs */
    }
    struct ec_arena arena;
    ec_arena_init(&arena);
    struct ec_err err = { 0 };
    enum ec_status st;

    if (which == 0 || which == 5) {
        struct coord_register_input in = { 0 };
        st = coord__parse_register(&arena, b, &in, &err);
        check_refusal(st, &err);
        if (st == EC_OK) {
            touch(in.p.agent_id);
            touch(in.p.os);
            touch(in.p.sandbox_mode);
            touch(in.p.power_telemetry_json);
            if (in.p.max_concurrent_tasks < 1 || in.p.max_concurrent_tasks > 64)
                abort();
        }
    }
    if (which == 1 || which == 5) {
        struct coord_heartbeat hb = { 0 };
        ec_err_clear(&err);
        st = coord__parse_heartbeat(&arena, b, &hb, &err);
        check_refusal(st, &err);
        if (st == EC_OK) {
            touch(hb.active_model);
            touch(hb.active_model_param_size);
        }
    }
    if (which == 2 || which == 5) {
        struct coord_result r = { 0 };
        ec_err_clear(&err);
        st = coord__parse_answer(b, &r, &err);
        check_refusal(st, &err);
        if (st == EC_OK && (r.duration_ms < 0 || r.output == NULL))
            abort();
    }
    if (which == 3 || which == 5) {
        struct coord_task_spec t = { 0 };
        ec_err_clear(&err);
        st = coord__parse_submit(b, &t, &err);
        check_refusal(st, &err);
        if (st == EC_OK && (t.task_id == NULL || t.prompt == NULL || t.snapshot_ref == NULL ||
                            t.priority < 0 || t.priority > 100))
            abort();
    }
    if (which == 4 || which == 5) {
        json_t *rows = NULL;
        ec_err_clear(&err);
        st = coord__parse_diag_events(b, 1700000000000, &rows, &err);
        check_refusal(st, &err);
        json_decref(rows);
    }
    ec_arena_release(&arena);
    json_decref(b);
    return 0;
}
