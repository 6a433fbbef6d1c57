/* The small core: status table, arena, capped buffer, and JSON log lines. */
#include "common/ec_arena.h"
#include "common/ec_buf.h"
#include "common/ec_log.h"
#include "common/ec_status.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

static void test_status_table(void **state)
{
    assert_int_equal(ec_status_info(EC_EINVAL)->http_status, 400);
    assert_int_equal(ec_status_info(EC_EINVAL)->grpc_code, 3);
    assert_int_equal(ec_status_info(EC_EUNAVAIL)->http_status, 503);
    assert_int_equal(ec_status_info(EC_ETOOBIG)->http_status, 413);
    assert_string_equal(ec_status_info(EC_ENOTFOUND)->code, "not_found");
    /* Every row is filled: no status maps to 0 or a NULL code. */
    for (int s = 0; s < EC_STATUS_COUNT; s++) {
        assert_true(ec_status_info((enum ec_status)s)->http_status >= 200);
        assert_non_null(ec_status_info((enum ec_status)s)->code);
    }
    assert_int_equal(ec_status_info((enum ec_status)999)->http_status, 500);
    assert_int_equal(ec_status_from_grpc(14), EC_EUNAVAIL);
    assert_int_equal(ec_status_from_grpc(7), EC_EFORBIDDEN);

    struct ec_err err;
    assert_int_equal(ec_err_set(&err, EC_EUNAUTH, "mesh_unauthorized", "bad token"), EC_EUNAUTH);
    assert_string_equal(ec_err_code(&err), "mesh_unauthorized");
    ec_err_set(&err, EC_EINVAL, NULL, "field %s", "x");
    assert_string_equal(ec_err_code(&err), "invalid_request");
    assert_string_equal(err.msg, "field x");
}

static int cleanups_run;
static void count_cleanup(void *p)
{
    cleanups_run += *(int *)p;
}

static void test_arena(void **state)
{
    struct ec_arena a;
    ec_arena_init(&a);
    for (int round = 0; round < 3; round++) {
        cleanups_run = 0;
        char *small = ec_arena_strdup(&a, "hello");
        assert_string_equal(small, "hello");
        assert_int_equal((uintptr_t)ec_arena_alloc(&a, 3) % 16, 0);
        /* Past the inline block, into chunks, including one bigger than a chunk. */
        for (int i = 0; i < 200; i++) {
            char *p = ec_arena_alloc(&a, 100);
            assert_int_equal((uintptr_t)p % 16, 0);
            memset(p, 0xab, 100);
        }
        char *big = ec_arena_zalloc(&a, 1 << 20);
        assert_int_equal(big[(1 << 20) - 1], 0);
        assert_string_equal(ec_arena_sprintf(&a, "%d-%s", 42, "x"), "42-x");
        assert_string_equal(ec_arena_strndup(&a, "abcdef", 3), "abc");
        int *one = ec_arena_alloc(&a, sizeof(int));
        *one = 1;
        ec_arena_defer(&a, count_cleanup, one);
        ec_arena_defer(&a, count_cleanup, one);
        ec_arena_reset(&a);
        assert_int_equal(cleanups_run, 2);
    }
    ec_arena_release(&a);
}

static void test_buf_cap(void **state)
{
    struct ec_buf b;
    ec_buf_init(&b, 10);
    assert_int_equal(ec_buf_puts(&b, "0123456789"), EC_OK);
    assert_int_equal(ec_buf_putc(&b, 'x'), EC_ETOOBIG);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.data, "0123456789");
    ec_buf_reset(&b);
    assert_int_equal(ec_buf_printf(&b, "%05d", 42), EC_OK);
    assert_string_equal(b.data, "00042");
    ec_buf_release(&b);

    ec_buf_init(&b, 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(ec_buf_printf(&b, "%d,", i), EC_OK);
    assert_int_equal(strncmp(b.data, "0,1,2,", 6), 0);
    size_t len;
    char *p = ec_buf_detach(&b, &len);
    assert_int_equal(strlen(p), len);
    free(p);
    assert_null(b.data);
}

static void test_json_escape(void **state)
{
    struct ec_buf b;
    ec_buf_init(&b, 0);
    const char in[] = "a\"b\\c\n\x01\x7f";
    ec_buf_putc(&b, '"');
    ec_buf_json_escape(&b, in, sizeof(in) - 1);
    ec_buf_putc(&b, '"');
    json_error_t jerr;
    json_t *j = json_loads(b.data, JSON_DECODE_ANY, &jerr);
    assert_non_null(j);
    assert_string_equal(json_string_value(j), in);
    json_decref(j);
    ec_buf_release(&b);
}

static void read_log(int fd, char *out, size_t cap)
{
    ssize_t n = read(fd, out, cap - 1);
    assert_true(n > 0);
    out[n] = '\0';
}

static void test_log_lines(void **state)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    ec_log_setup("unit", EC_LOG_INFO, fds[1]);
    char line[8192];

    EC_DEBUG("hidden");
    EC_INFO("request done", EC_LS("req_id", "r-1"), EC_LI("status", 200), EC_LB("ok", 1),
            EC_LD("dur_ms", 1.5), EC_LS("nothing", NULL));
    read_log(fds[0], line, sizeof(line));
    assert_int_equal(line[strlen(line) - 1], '\n');
    json_error_t jerr;
    json_t *j = json_loads(line, 0, &jerr);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "lvl")), "info");
    assert_string_equal(json_string_value(json_object_get(j, "svc")), "unit");
    assert_string_equal(json_string_value(json_object_get(j, "msg")), "request done");
    assert_string_equal(json_string_value(json_object_get(j, "req_id")), "r-1");
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 200);
    assert_true(json_is_true(json_object_get(j, "ok")));
    assert_true(json_is_null(json_object_get(j, "nothing")));
    assert_non_null(json_object_get(j, "ts"));
    assert_non_null(strstr(line, "\"dur_ms\":1.500"));
    json_decref(j);

    /* Numbers are formatted without printf: check the edges. */
    EC_INFO("numbers", EC_LI("min", INT64_MIN), EC_LI("max", INT64_MAX), EC_LD("neg", -2.0005),
            EC_LD("small", 0.0004), EC_LD("nan", 0.0 / 0.0));
    read_log(fds[0], line, sizeof(line));
    assert_non_null(strstr(line, "\"min\":-9223372036854775808"));
    assert_non_null(strstr(line, "\"max\":9223372036854775807"));
    assert_non_null(strstr(line, "\"neg\":-2.001"));
    assert_non_null(strstr(line, "\"small\":0.000"));
    assert_non_null(strstr(line, "\"nan\":null"));
    j = json_loads(line, 0, &jerr);
    assert_non_null(j);
    json_decref(j);

    /* Fields that do not fit are dropped whole; the line still parses. */
    char big[600];
    memset(big, '"', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    EC_WARN("big", EC_LS("a", big), EC_LS("b", big), EC_LS("c", big));
    read_log(fds[0], line, sizeof(line));
    j = json_loads(line, 0, &jerr);
    assert_non_null(j);
    assert_true(json_is_true(json_object_get(j, "truncated")));
    assert_string_equal(json_string_value(json_object_get(j, "lvl")), "warn");
    json_decref(j);

    ec_log_setup("edgecoder", EC_LOG_INFO, STDERR_FILENO);
    close(fds[0]);
    close(fds[1]);
}

static int readable(int fd)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    return poll(&pfd, 1, 0) == 1;
}

static void test_log_buffered(void **state)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    ec_log_setup("unit", EC_LOG_INFO, fds[1]);
    ec_log_set_buffered(60000); /* the flusher will not fire during this test */
    char line[8192];

    EC_INFO("first", EC_LI("n", 1));
    EC_INFO("second", EC_LI("n", 2));
    assert_false(readable(fds[0])); /* info lines wait in this thread's buffer */
    ec_log_flush();
    read_log(fds[0], line, sizeof(line));
    assert_non_null(strstr(line, "\"msg\":\"first\""));
    assert_non_null(strstr(line, "\"msg\":\"second\""));
    assert_true(strstr(line, "first") < strstr(line, "second"));

    /* A warning is never delayed, and the info line before it comes out first. */
    EC_INFO("before");
    EC_WARN("urgent");
    read_log(fds[0], line, sizeof(line));
    assert_non_null(strstr(line, "before"));
    assert_non_null(strstr(line, "urgent"));
    assert_true(strstr(line, "before") < strstr(line, "urgent"));

    /* A full buffer is written without waiting for the flusher. */
    for (int i = 0; i < 200; i++)
        EC_INFO("filler line to fill the per-thread buffer", EC_LI("i", i));
    assert_true(readable(fds[0]));
    ec_log_flush();
    while (readable(fds[0]))
        read_log(fds[0], line, sizeof(line));

    ec_log_setup("edgecoder", EC_LOG_INFO, STDERR_FILENO);
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_table), cmocka_unit_test(test_arena),
        cmocka_unit_test(test_buf_cap),      cmocka_unit_test(test_json_escape),
        cmocka_unit_test(test_log_lines),    cmocka_unit_test(test_log_buffered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
