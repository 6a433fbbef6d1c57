/* The agent runtime's pure pieces: coordinator URL lists (COORDINATOR_URL and the registry's
 * JSON), back-off bounds and jitter, the outbox's encoding and its files (durable put, load in
 * order, bad items moved aside, remove), what each coordinator answer means, the identity kept
 * across loads, and the offline provider's choice between code and prose. */
#include "agent/agent_int.h"

#include "common/ec_mem.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

static char *temp_dir(void)
{
    char tmpl[] = "/tmp/ec-agent-unit-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return ec_xstrdup(d);
}

static void rm_rf(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* --- URL lists ---------------------------------------------------------------------------- */

static void test_url_list(void **state)
{
    (void)state;
    struct agent_urls l = { 0 };
    struct ec_err err = { 0 };
    assert_int_equal(agent_urls_parse(" https://a.example:4301/ , http://B.example,,"
                                      "HTTPS://a.example:4301,http://c.example/base//",
                                      &l, &err),
                     EC_OK);
    assert_int_equal(l.count, 3);
    assert_string_equal(l.items[0], "https://a.example:4301");
    assert_string_equal(l.items[1], "http://B.example");
    assert_string_equal(l.items[2], "http://c.example/base");
    agent_urls_release(&l);

    assert_int_equal(agent_urls_parse("", &l, &err), EC_OK);
    assert_int_equal(l.count, 0);
    static const char *const bad[] = { "ftp://x",       "http://",
                                       "https:///path", "example.com",
                                       "http://a b",    "http://user@host",
                                       "http://h?q",    "http://ok, grpc://no" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct agent_urls m = { 0 };
        assert_int_equal(agent_urls_parse(bad[i], &m, &err), EC_EINVAL);
        assert_true(strlen(err.msg) > 0);
        agent_urls_release(&m);
    }
}

static void test_registry_json(void **state)
{
    (void)state;
    json_t *doc = json_loads(
        "{\"generatedAt\":\"2025-01-01T00:00:00Z\",\"count\":4,\"coordinators\":["
        "{\"peerId\":\"bootstrap\",\"coordinatorUrl\":\"https://coord.example\",\"source\":"
        "\"bootstrap\"},"
        "{\"peerId\":\"coord-2\",\"coordinatorUrl\":\"https://coord2.example/\",\"source\":"
        "\"mesh\"},"
        "{\"peerId\":\"bad\",\"coordinatorUrl\":\"ws://nope\"},{\"peerId\":\"none\"},"
        "{\"peerId\":\"dup\",\"coordinatorUrl\":\"https://coord.example\"}]}",
        0, NULL);
    assert_non_null(doc);
    struct agent_urls l = { 0 };
    assert_int_equal(agent_urls_from_registry(doc, &l, NULL), EC_OK);
    assert_int_equal(l.count, 2);
    assert_string_equal(l.items[0], "https://coord.example");
    assert_string_equal(l.items[1], "https://coord2.example");
    agent_urls_release(&l);
    json_decref(doc);
    doc = json_loads("{\"count\":0}", 0, NULL);
    assert_int_equal(agent_urls_from_registry(doc, &l, NULL), EC_EINVAL);
    json_decref(doc);
}

/* --- back-off ----------------------------------------------------------------------------- */

static void test_backoff(void **state)
{
    (void)state;
    struct agent_backoff b = { .base_ms = 100, .max_ms = 1000 };
    int64_t ceiling[] = { 100, 200, 400, 800, 1000, 1000, 1000 };
    for (int round = 0; round < 50; round++) {
        agent_backoff_reset(&b);
        for (size_t i = 0; i < sizeof(ceiling) / sizeof(ceiling[0]); i++) {
            int64_t d = agent_backoff_next(&b);
            assert_true(d >= ceiling[i] / 2);
            assert_true(d <= ceiling[i]);
        }
    }
    /* Jitter: two agents failing together do not retry in lockstep. */
    struct agent_backoff x = { .base_ms = 1000, .max_ms = 1000 }, y = x;
    int differ = 0;
    for (int i = 0; i < 20; i++)
        differ += agent_backoff_next(&x) != agent_backoff_next(&y);
    assert_true(differ > 10);
    /* Many failures never overflow. */
    struct agent_backoff z = { .base_ms = 500, .max_ms = 30000 };
    for (int i = 0; i < 200; i++) {
        int64_t d = agent_backoff_next(&z);
        assert_true(d >= 250 && d <= 30000);
    }
}

/* --- the outbox --------------------------------------------------------------------------- */

static void test_outbox_codec(void **state)
{
    (void)state;
    struct agent_outbox_item in = {
        .subtask_id = "task-1:0",
        .attempt = 2,
        .created_at_ms = 1700000000123,
        .coordinator_url = "https://coord.example",
        .body = "{\"subtaskId\":\"task-1:0\",\"output\":\"h\\u00e9 \\\"q\\\"\\n\"}",
    };
    struct ec_buf b;
    ec_buf_init(&b, 0);
    assert_int_equal(agent_outbox_encode(&in, &b, NULL), EC_OK);
    struct agent_outbox_item out;
    assert_int_equal(agent_outbox_decode(b.data, b.len, &out, NULL), EC_OK);
    assert_string_equal(out.subtask_id, in.subtask_id);
    assert_int_equal(out.attempt, 2);
    assert_true(out.created_at_ms == in.created_at_ms);
    assert_string_equal(out.coordinator_url, in.coordinator_url);
    assert_string_equal(out.body, in.body);
    agent_outbox_item_release(&out);
    ec_buf_release(&b);

    static const char *const bad[] = {
        "",
        "[]",
        "{\"v\":2,\"subtaskId\":\"a\",\"attempt\":1,\"createdAtMs\":1,\"coordinatorUrl\":\"\","
        "\"body\":\"{}\"}",
        "{\"v\":1,\"attempt\":1,\"createdAtMs\":1,\"coordinatorUrl\":\"\",\"body\":\"{}\"}",
        "{\"v\":1,\"subtaskId\":\"a\",\"attempt\":-1,\"createdAtMs\":1,\"coordinatorUrl\":\"\","
        "\"body\":\"{}\"}",
        "{\"v\":1,\"subtaskId\":\"a\",\"attempt\":1,\"createdAtMs\":\"1\",\"coordinatorUrl\":\"\","
        "\"body\":\"{}\"}",
        "{\"v\":1,\"subtaskId\":\"a\",\"attempt\":1,\"createdAtMs\":1,\"coordinatorUrl\":\"\","
        "\"body\":\"not json\"}",
        "{\"v\":1,\"subtaskId\":\"a\",\"subtaskId\":\"b\",\"attempt\":1,\"createdAtMs\":1,"
        "\"coordinatorUrl\":\"\",\"body\":\"{}\"}",
        "{\"v\":1,\"subtaskId\":\"a\",\"attempt\":1,\"createdAtMs\":1,\"coordinatorUrl\":\"\","
        "\"body\":\"{}\"",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ec_err err = { 0 };
        assert_int_equal(agent_outbox_decode(bad[i], strlen(bad[i]), &out, &err), EC_EINVAL);
        assert_null(out.subtask_id);
    }

    char a[64], c[64];
    agent_outbox_file_name("task-1:0", 1, a, sizeof(a));
    agent_outbox_file_name("task-1:0", 2, c, sizeof(c));
    assert_int_equal(strncmp(a, "r-", 2), 0);
    assert_string_not_equal(a, c);
    assert_non_null(strstr(a, ".json"));
    assert_null(strchr(a, ':')); /* any subtask id makes a plain file name */
}

static void test_outbox_files(void **state)
{
    (void)state;
    char *dir = temp_dir();
    struct agent_outbox *ob = NULL;
    assert_int_equal(agent_outbox_open(dir, &ob, NULL), EC_OK);
    struct agent_outbox_item items[3] = {
        { .subtask_id = ec_xstrdup("t:2"),
          .attempt = 1,
          .created_at_ms = 300,
          .coordinator_url = ec_xstrdup("http://c"),
          .body = ec_xstrdup("{\"n\":3}") },
        { .subtask_id = ec_xstrdup("t:0"),
          .attempt = 1,
          .created_at_ms = 100,
          .coordinator_url = ec_xstrdup("http://c"),
          .body = ec_xstrdup("{\"n\":1}") },
        { .subtask_id = ec_xstrdup("t:1"),
          .attempt = 4,
          .created_at_ms = 200,
          .coordinator_url = ec_xstrdup("http://c"),
          .body = ec_xstrdup("{\"n\":2}") },
    };
    for (int i = 0; i < 3; i++)
        assert_int_equal(agent_outbox_put(ob, &items[i], NULL), EC_OK);
    char path[512];
    snprintf(path, sizeof(path), "%s/outbox/%s", dir, items[0].file);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* A torn or foreign file is moved aside, never retried; temporary files are ignored. */
    snprintf(path, sizeof(path), "%s/outbox/r-broken-1.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"v\":1,", f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/outbox/.tmp-r-x-1.json", dir);
    f = fopen(path, "w");
    fputs("partial", f);
    fclose(f);

    struct agent_outbox_item *loaded = NULL;
    size_t n = 0;
    assert_int_equal(agent_outbox_load(ob, &loaded, &n, NULL), EC_OK);
    assert_int_equal(n, 3);
    assert_string_equal(loaded[0].body, "{\"n\":1}");
    assert_string_equal(loaded[1].body, "{\"n\":2}");
    assert_int_equal(loaded[1].attempt, 4);
    assert_string_equal(loaded[2].body, "{\"n\":3}");
    snprintf(path, sizeof(path), "%s/outbox/bad-r-broken-1.json", dir);
    assert_int_equal(access(path, F_OK), 0);

    agent_outbox_remove(ob, loaded[0].file);
    for (size_t i = 0; i < n; i++)
        agent_outbox_item_release(&loaded[i]);
    free(loaded);
    assert_int_equal(agent_outbox_load(ob, &loaded, &n, NULL), EC_OK);
    assert_int_equal(n, 2);
    assert_string_equal(loaded[0].body, "{\"n\":2}");
    for (size_t i = 0; i < n; i++)
        agent_outbox_item_release(&loaded[i]);
    free(loaded);
    for (int i = 0; i < 3; i++)
        agent_outbox_item_release(&items[i]);
    agent_outbox_close(ob);
    rm_rf(dir);
    free(dir);
}

/* --- answers ------------------------------------------------------------------------------ */

static void test_classify(void **state)
{
    (void)state;
    assert_int_equal(agent_classify(200, "", ""), AGENT_OK);
    assert_int_equal(agent_classify(401, "mesh_unauthorized", "agent_not_registered"),
                     AGENT_UNREGISTERED);
    assert_int_equal(agent_classify(401, "mesh_unauthorized", ""), AGENT_UNREGISTERED);
    assert_int_equal(agent_classify(401, "signature_invalid", "agent_key_not_registered"),
                     AGENT_UNREGISTERED);
    assert_int_equal(agent_classify(401, "signature_invalid", "signature_mismatch"),
                     AGENT_UNREGISTERED);
    assert_int_equal(agent_classify(401, "signature_invalid", "rate_limited"), AGENT_RATE_LIMITED);
    assert_int_equal(agent_classify(401, "signature_invalid", "timestamp_skew"), AGENT_RETRY);
    assert_int_equal(agent_classify(403, "node_not_activated", "email_unverified"), AGENT_DORMANT);
    assert_int_equal(agent_classify(403, "agent_blacklisted", ""), AGENT_DORMANT);
    assert_int_equal(agent_classify(429, "rate_limited", ""), AGENT_RATE_LIMITED);
    assert_int_equal(agent_classify(503, "database_unavailable", ""), AGENT_RETRY);
    assert_int_equal(agent_classify(0, "", ""), AGENT_RETRY);
}

/* --- identity ----------------------------------------------------------------------------- */

static void test_identity(void **state)
{
    (void)state;
    char *base = temp_dir();
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/nested/state", base);
    struct agent_identity a, b;
    assert_int_equal(agent_identity_load(dir, &a, NULL), EC_OK);
    assert_int_equal(agent_identity_load(dir, &b, NULL), EC_OK);
    assert_string_equal(a.public_pem, b.public_pem);
    assert_string_equal(a.x25519_b64, b.x25519_b64);
    assert_string_equal(a.default_id, b.default_id);
    assert_int_equal(strncmp(a.default_id, "agent-", 6), 0);
    assert_int_equal(strlen(a.default_id), 18);
    agent_identity_release(&b);
    char path[600];
    snprintf(path, sizeof(path), "%s/identity-ed25519.pem", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    chmod(path, 0640);
    struct ec_err err = { 0 };
    assert_int_equal(agent_identity_load(dir, &b, &err), EC_EFORBIDDEN);
    assert_non_null(strstr(err.msg, "chmod 600"));
    agent_identity_release(&a);
    rm_rf(base);
    free(base);
}

/* --- the offline provider ----------------------------------------------------------------- */

static void test_local_program(void **state)
{
    (void)state;
    bool tpl = true;
    char *p = agent_local_program("print(2 + 3)", SANDBOX_PYTHON, &tpl);
    assert_false(tpl);
    assert_string_equal(p, "print(2 + 3)");
    free(p);
    p = agent_local_program("s = 0\nfor i in range(3):\n    s += i\n# done\nprint(s)\n",
                            SANDBOX_PYTHON, &tpl);
    assert_false(tpl);
    free(p);
    p = agent_local_program("Here:\n```js\nconsole.log(1)\n```\nthanks", SANDBOX_JAVASCRIPT, &tpl);
    assert_false(tpl);
    assert_string_equal(p, "console.log(1)\n");
    free(p);
    p = agent_local_program("[Context from previous subtasks]\nSubtask 0 result: words here\n\n"
                            "[Your task]\nprint('next')",
                            SANDBOX_PYTHON, &tpl);
    assert_false(tpl);
    assert_string_equal(p, "print('next')");
    free(p);
    p = agent_local_program("Write a function that \"reverses\" a string\n", SANDBOX_PYTHON, &tpl);
    assert_true(tpl);
    assert_non_null(strstr(p, "task = \"Write a function that \\\"reverses\\\" a string\\n\""));
    free(p);
    p = agent_local_program("Explain closures", SANDBOX_JAVASCRIPT, &tpl);
    assert_true(tpl);
    assert_non_null(strstr(p, "const task = \"Explain closures\";"));
    free(p);
    char *code = agent_extract_code("no fence here");
    assert_null(code);
    code = agent_extract_code("```python\nprint(1)\n");
    assert_string_equal(code, "print(1)\n");
    free(code);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_list),     cmocka_unit_test(test_registry_json),
        cmocka_unit_test(test_backoff),      cmocka_unit_test(test_outbox_codec),
        cmocka_unit_test(test_outbox_files), cmocka_unit_test(test_classify),
        cmocka_unit_test(test_identity),     cmocka_unit_test(test_local_program),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
