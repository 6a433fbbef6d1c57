/* The decomposition parser on every shape of model answer: clean, fenced, wrapped in prose, with
 * trailing commas, too many items, and each malformed case that must fall back; plus the timeout
 * formula and language names. */
#include "inference/inf_decompose.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static struct ec_arena arena;

static int setup(void **state)
{
    ec_arena_init(&arena);
    return 0;
}

static int teardown(void **state)
{
    ec_arena_release(&arena);
    return 0;
}

static enum ec_status parse(const char *text, struct inf_subtask_list *out, struct ec_err *err)
{
    return inf_decompose_parse(text, strlen(text), "python", &arena, out, err);
}

static void test_clean_array(void **state)
{
    struct inf_subtask_list l;
    struct ec_err err = { 0 };
    assert_int_equal(
        parse("[{\"input\":\"a\",\"language\":\"javascript\"},{\"input\":\"b\"}]", &l, &err),
        EC_OK);
    assert_int_equal(l.count, 2);
    assert_string_equal(l.items[0].input, "a");
    assert_string_equal(l.items[0].language, "javascript");
    assert_string_equal(l.items[1].language, "python");
    assert_int_equal(l.items[0].timeout_ms, 5000);
}

static void test_fenced_with_prose_and_trailing_commas(void **state)
{
    struct inf_subtask_list l;
    struct ec_err err = { 0 };
    const char *text =
        "Here you go:\n```json\n[\n {\"input\": \"one [x]\", \"language\": \"js\",},\n"
        " {\"input\": \"two, ]\"},\n]\n```\nDone [really].";
    assert_int_equal(parse(text, &l, &err), EC_OK);
    assert_int_equal(l.count, 2);
    assert_string_equal(l.items[0].input, "one [x]");
    assert_string_equal(l.items[0].language, "javascript");
    assert_string_equal(l.items[1].input, "two, ]");
}

static void test_text_around_unfenced_array_and_object_wrapper(void **state)
{
    struct inf_subtask_list l;
    struct ec_err err = { 0 };
    assert_int_equal(parse("Sure. [\"write a\", \"write b\"] Hope it helps", &l, &err), EC_OK);
    assert_int_equal(l.count, 2);
    assert_string_equal(l.items[1].input, "write b");
    assert_int_equal(parse("{\"subtasks\": [{\"input\": \"  padded  \"}]}", &l, &err), EC_OK);
    assert_int_equal(l.count, 1);
    assert_string_equal(l.items[0].input, "padded");
    /* A bracketed aside before the array is skipped. */
    assert_int_equal(parse("Steps [draft]: [{\"input\": \"real\"}]", &l, &err), EC_OK);
    assert_int_equal(l.count, 1);
    assert_string_equal(l.items[0].input, "real");
}

static void test_at_most_ten(void **state)
{
    char text[2048] = "[";
    for (int i = 0; i < 14; i++)
        snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s{\"input\":\"s%d\"}",
                 i ? "," : "", i);
    strcat(text, "]");
    struct inf_subtask_list l;
    struct ec_err err = { 0 };
    assert_int_equal(parse(text, &l, &err), EC_OK);
    assert_int_equal(l.count, INF_DECOMPOSE_MAX_SUBTASKS);
    assert_string_equal(l.items[9].input, "s9");
}

static void test_unusable_items_skipped(void **state)
{
    struct inf_subtask_list l;
    struct ec_err err = { 0 };
    assert_int_equal(parse("[{\"input\":\"\"},{\"input\":5},null,{\"x\":1},{\"input\":\"ok\","
                           "\"language\":\"cobol\"}]",
                           &l, &err),
                     EC_OK);
    assert_int_equal(l.count, 1);
    assert_string_equal(l.items[0].input, "ok");
    assert_string_equal(l.items[0].language, "python"); /* unknown language: the task's */
}

static void test_malformed_answers(void **state)
{
    static const char *const cases[] = {
        "",
        "no json here at all",
        "{\"input\": \"an object, not an array\"}",
        "[{\"input\": \"unclosed\"",
        "[]",
        "[{\"task\": \"x\"}]",
        "[{\"input\": \"   \"}]",
        "[1, 2, 3]",
        "```\n[not json,,]\n```",
        "[{\"input\": \"a\\u0000b\"}]",
        "]]]][[[[",
        "```json\n```",
        "[\"\\ud800\"]",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct inf_subtask_list l;
        struct ec_err err = { 0 };
        assert_int_equal(parse(cases[i], &l, &err), EC_EINVAL);
        assert_int_equal(l.count, 0);
        assert_string_equal(ec_err_code(&err), "decompose_unusable");
        assert_true(err.msg[0] != '\0');
    }
}

static void test_deep_nesting_and_huge_answer(void **state)
{
    size_t n = 100000;
    char *deep = malloc(n * 2 + 1);
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    deep[2 * n] = '\0';
    struct inf_subtask_list l;
    struct ec_err err = { 0 };
    assert_int_equal(parse(deep, &l, &err), EC_EINVAL);
    free(deep);
    size_t big = INF_DECOMPOSE_MAX_ANSWER_BYTES + 1;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    huge[big] = '\0';
    assert_int_equal(parse(huge, &l, &err), EC_EINVAL);
    free(huge);
}

static void test_timeout_formula(void **state)
{
    assert_int_equal(inf_subtask_timeout_ms("", 0), 5000);
    char s[4000];
    memset(s, 'a', sizeof(s));
    assert_int_equal(inf_subtask_timeout_ms(s, 49), 5000);
    assert_int_equal(inf_subtask_timeout_ms(s, 50), 6000);
    assert_int_equal(inf_subtask_timeout_ms(s, 120), 7000);
    assert_int_equal(inf_subtask_timeout_ms(s, 3000), 60000);
    /* UTF-16 units: "é" is one, an emoji two, as JavaScript counts them. */
    char text[256] = "";
    for (int i = 0; i < 25; i++)
        strcat(text, "\xF0\x9F\x98\x80"); /* 25 emoji = 50 units */
    assert_int_equal(inf_subtask_timeout_ms(text, strlen(text)), 6000);
    text[0] = '\0';
    for (int i = 0; i < 49; i++)
        strcat(text, "\xC3\xA9");
    assert_int_equal(inf_subtask_timeout_ms(text, strlen(text)), 5000);
}

static void test_language_names(void **state)
{
    assert_string_equal(inf_language_normalize("Python"), "python");
    assert_string_equal(inf_language_normalize("JS"), "javascript");
    assert_string_equal(inf_language_normalize("node"), "javascript");
    assert_null(inf_language_normalize("cobol"));
    assert_null(inf_language_normalize(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_array),
        cmocka_unit_test(test_fenced_with_prose_and_trailing_commas),
        cmocka_unit_test(test_text_around_unfenced_array_and_object_wrapper),
        cmocka_unit_test(test_at_most_ten),
        cmocka_unit_test(test_unusable_items_skipped),
        cmocka_unit_test(test_malformed_answers),
        cmocka_unit_test(test_deep_nesting_and_huge_answer),
        cmocka_unit_test(test_timeout_formula),
        cmocka_unit_test(test_language_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
