/* The sandbox's pure parts: mode and language names, limit defaults, the deny-lists, the
 * JavaScript token check, UTF-8 clean-up, the bubblewrap command line (what is and is not bound),
 * and rejection without a process. */
#include "agent/sandbox_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_names(void **state)
{
    assert_int_equal(sandbox_mode_parse("bubblewrap"), SANDBOX_BWRAP);
    assert_int_equal(sandbox_mode_parse("bwrap"), SANDBOX_BWRAP);
    assert_int_equal(sandbox_mode_parse("docker"), SANDBOX_DOCKER);
    assert_int_equal(sandbox_mode_parse("none"), SANDBOX_NONE);
    assert_int_equal(sandbox_mode_parse("vm"), -1);
    assert_int_equal(sandbox_mode_parse("Docker"), -1);
    assert_int_equal(sandbox_mode_parse(""), -1);
    assert_int_equal(sandbox_mode_parse(NULL), -1);
    assert_string_equal(sandbox_mode_name(SANDBOX_BWRAP), "bubblewrap");
    assert_string_equal(sandbox_mode_name(SANDBOX_DOCKER), "docker");
    assert_string_equal(sandbox_mode_name(SANDBOX_NONE), "none");

    assert_int_equal(sandbox_language_parse("python"), SANDBOX_PYTHON);
    assert_int_equal(sandbox_language_parse("py"), SANDBOX_PYTHON);
    assert_int_equal(sandbox_language_parse("javascript"), SANDBOX_JAVASCRIPT);
    assert_int_equal(sandbox_language_parse("js"), SANDBOX_JAVASCRIPT);
    assert_int_equal(sandbox_language_parse("node"), SANDBOX_JAVASCRIPT);
    assert_int_equal(sandbox_language_parse("typescript"), -1);
    assert_int_equal(sandbox_language_parse(NULL), -1);
    assert_string_equal(sandbox_language_name(SANDBOX_PYTHON), "python");
    assert_string_equal(sandbox_language_name(SANDBOX_JAVASCRIPT), "javascript");
}

static void test_limit_defaults(void **state)
{
    struct sandbox_limits in = { 0 }, out;
    sandbox__limits_resolve(&in, &out);
    assert_int_equal(out.wall_timeout_ms, 10000);
    assert_int_equal(out.cpu_seconds, 10);
    assert_int_equal(out.memory_bytes, 256u << 20);
    assert_int_equal(out.max_processes, 64);
    assert_int_equal(out.max_file_bytes, 16u << 20);
    assert_int_equal(out.max_output_bytes, 64u << 10);

    in = (struct sandbox_limits){ .wall_timeout_ms = 1500, .memory_bytes = 1, .max_processes = 2 };
    sandbox__limits_resolve(&in, &out);
    assert_int_equal(out.cpu_seconds, 2); /* rounded up */
    assert_int_equal(out.memory_bytes, 32u << 20);
    assert_int_equal(out.max_processes, 8);

    in = (struct sandbox_limits){ .wall_timeout_ms = -5, .cpu_seconds = 3 };
    sandbox__limits_resolve(&in, &out);
    assert_int_equal(out.wall_timeout_ms, 10000);
    assert_int_equal(out.cpu_seconds, 3);
    sandbox__limits_resolve(NULL, &out);
    assert_int_equal(out.wall_timeout_ms, 10000);
}

static bool denied(enum sandbox_language lang, const char *code, const char *want)
{
    char reason[256] = "";
    bool ok = sandbox__denylist_scan(lang, code, strlen(code), reason, sizeof(reason));
    if (!ok && want != NULL && strstr(reason, want) == NULL)
        fail_msg("reason \"%s\" lacks \"%s\"", reason, want);
    return !ok;
}

static void test_python_denylist(void **state)
{
    assert_true(denied(SANDBOX_PYTHON, "exec('1')", "\"exec(\" at line 1"));
    assert_true(denied(SANDBOX_PYTHON, "x = 1\ny = eval ('2')", "\"eval(\" at line 2"));
    assert_true(denied(SANDBOX_PYTHON, "compile(s, 'f', 'exec')", "compile("));
    assert_true(denied(SANDBOX_PYTHON, "m = __import__", "__import__"));
    assert_true(denied(SANDBOX_PYTHON, "import os", "import os"));
    assert_true(denied(SANDBOX_PYTHON, "import   os.path", "import os"));
    assert_true(denied(SANDBOX_PYTHON, "import os, sys", "import os"));
    assert_true(denied(SANDBOX_PYTHON, "import subprocess\n", "import subprocess"));
    assert_true(denied(SANDBOX_PYTHON, "open('/etc/passwd')", "open("));
    assert_true(denied(SANDBOX_PYTHON, "f = x.open(1)", "open("));
    assert_true(denied(SANDBOX_PYTHON, "websocket_count = 1", "socket"));
    /* Other identifiers that merely end like a denied call are not calls of it. */
    assert_false(denied(SANDBOX_PYTHON, "retrieval(1)\nreopen(2)\nmy_exec (3)", NULL));
    assert_false(denied(SANDBOX_PYTHON, "import osmosis\nimport sys", NULL));
    assert_false(denied(SANDBOX_PYTHON, "evaluate = 1\nprint(evaluate)", NULL));
    assert_false(denied(SANDBOX_PYTHON, "eval", NULL)); /* no call at the very end */
    assert_false(denied(SANDBOX_PYTHON, "", NULL));
}

static void test_javascript_denylist(void **state)
{
    assert_true(denied(SANDBOX_JAVASCRIPT, "eval('1')", "eval("));
    assert_true(denied(SANDBOX_JAVASCRIPT, "new Function('return 1')", "Function("));
    assert_true(denied(SANDBOX_JAVASCRIPT, "const fs = require ('fs')", "require("));
    assert_true(denied(SANDBOX_JAVASCRIPT, "process.exit(1)", "process."));
    assert_true(denied(SANDBOX_JAVASCRIPT, "process\n  .env", "process."));
    assert_true(denied(SANDBOX_JAVASCRIPT, "fs.readFileSync('x')", "fs."));
    assert_true(denied(SANDBOX_JAVASCRIPT, "'child_process'", "child_process"));
    assert_false(denied(SANDBOX_JAVASCRIPT, "refs.push(1); processed.x = 2; myeval(3)", NULL));
    assert_false(denied(SANDBOX_JAVASCRIPT, "console.log(1)", NULL));
}

static bool js_ok(const char *code, const char *want)
{
    char reason[256] = "";
    bool ok = sandbox__js_token_check(code, strlen(code), reason, sizeof(reason));
    if (!ok && want != NULL && strstr(reason, want) == NULL)
        fail_msg("reason \"%s\" lacks \"%s\"", reason, want);
    if (!ok && want == NULL)
        fail_msg("refused: %s", reason);
    return ok;
}

static void test_javascript_tokens(void **state)
{
    assert_false(js_ok("const m = new Map();", "\"new\" is not allowed at line 1"));
    assert_false(js_ok("\n\nclass A {}", "\"class\" is not allowed at line 3"));
    assert_false(js_ok("console.log(this)", "\"this\""));
    assert_false(js_ok("globalThis.x = 1", "\"globalThis\""));
    assert_false(js_ok("[].map.constructor('x')", "\"constructor\""));
    assert_false(js_ok("o.__proto__ = null", "\"__proto__\""));
    assert_false(js_ok("async function f() {}", "\"async\""));
    assert_false(js_ok("const x = `a ${new Date()} b`", "\"new\""));
    assert_false(js_ok("const x = `a ${`b ${Reflect}`}`", "\"Reflect\""));
    assert_false(js_ok("\\u0065val('1')", "escape sequences"));
    assert_false(js_ok("const s = 'unterminated", "unterminated string"));
    assert_false(js_ok("/* open comment", "unterminated comment"));
    assert_false(js_ok("const t = `open", "unterminated"));

    /* Words inside strings, comments, templates and regular expressions are not code. */
    assert_true(js_ok("// new class this\nconst s = 'new \\' this'; /* Proxy */", NULL));
    assert_true(js_ok("const t = `new ${1 + 2} class`; const r = /this|new/g;", NULL));
    assert_true(js_ok("const half = a / 2 / b; const re = x.match(/\\//);", NULL));
    assert_true(js_ok("const o = { a: 1 }; o.new = 2; o.class = 3; console.log(o?.this);", NULL));
    assert_true(js_ok("const f = (x) => x * 2.5; if (f(2) > 1) { console.log(`${f(1)}`); }", NULL));
    assert_true(js_ok("return /x/.test(s)", NULL));
}

static void test_subset_check_limits(void **state)
{
    char reason[256];
    assert_false(sandbox__subset_check(SANDBOX_PYTHON, "print(1)\0x", 10, reason, sizeof(reason)));
    assert_non_null(strstr(reason, "NUL byte at line 1"));
    size_t big = SANDBOX_MAX_CODE_BYTES + 1;
    char *code = malloc(big);
    memset(code, ' ', big);
    assert_false(sandbox__subset_check(SANDBOX_PYTHON, code, big, reason, sizeof(reason)));
    assert_non_null(strstr(reason, "over the"));
    assert_true(sandbox__subset_check(SANDBOX_PYTHON, code, big - 1, reason, sizeof(reason)));
    free(code);
    assert_true(
        sandbox__subset_check(SANDBOX_JAVASCRIPT, "console.log(1)", 14, reason, sizeof(reason)));
    assert_false(sandbox__subset_check(SANDBOX_JAVASCRIPT, "new Map()", 9, reason, sizeof(reason)));
    /* A reason never overflows its buffer. */
    char tiny[8];
    assert_false(sandbox__subset_check(SANDBOX_PYTHON, "exec(1)", 7, tiny, sizeof(tiny)));
    assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
}

static void sanitized_is(const char *in, size_t len, const char *want)
{
    char *s = malloc(len + 1);
    memcpy(s, in, len);
    s[len] = '\0';
    size_t out_len;
    s = sandbox__utf8_sanitize(s, len, &out_len);
    assert_string_equal(s, want);
    assert_int_equal(out_len, strlen(want));
    free(s);
}

static void test_utf8(void **state)
{
    sanitized_is("plain\n", 6, "plain\n");
    sanitized_is("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14,
                 "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    sanitized_is("a\xff"
                 "b",
                 3,
                 "a\xef\xbf\xbd"
                 "b");
    sanitized_is("a\0b", 3,
                 "a\xef\xbf\xbd"
                 "b");
    sanitized_is("\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd");                 /* overlong */
    sanitized_is("\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* surrogate */
    sanitized_is("x\xe2\x82", 3, "x\xef\xbf\xbd\xef\xbf\xbd");               /* cut at the end */
    sanitized_is("", 0, "");
}

static bool has_arg(char **argv, const char *a)
{
    for (size_t i = 0; argv[i] != NULL; i++)
        if (strcmp(argv[i], a) == 0)
            return true;
    return false;
}

static void test_bwrap_command_line(void **state)
{
    struct sandbox_limits lim;
    sandbox__limits_resolve(NULL, &lim);
    struct sandbox__argv a;
    sandbox__argv_init(&a);
    sandbox__bwrap_args(&a, "/usr/bin/bwrap", SANDBOX_PYTHON, &lim);
    const char *must[] = { "--unshare-user",   "--unshare-pid",   "--unshare-net",
                           "--unshare-ipc",    "--unshare-uts",   "--die-with-parent",
                           "--new-session",    "--clearenv",      "--as-pid-1",
                           "--disable-userns", "/sandbox/main.py" };
    for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++)
        if (!has_arg(a.v, must[i]))
            fail_msg("bwrap lacks %s", must[i]);
    const char *never[] = { "/home", "/root", "/work",       "/tmp",  "/run",
                            "/var",  "/etc",  "--share-net", "--bind" };
    for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++)
        if (has_arg(a.v, never[i]))
            fail_msg("bwrap binds or allows %s", never[i]);
    assert_string_equal(a.v[a.n - 1], "--");
    sandbox__argv_push(&a, "/usr/bin/node");
    sandbox__interpreter_args(&a, SANDBOX_JAVASCRIPT, &lim, false, "/sandbox/main.js");
    assert_true(has_arg(a.v, "--jitless"));
    assert_true(has_arg(a.v, "--max-old-space-size=128"));
    assert_null(a.v[a.n]);
    sandbox__argv_release(&a);

    sandbox__argv_init(&a);
    sandbox__docker_args(&a, "/usr/bin/docker", "c1", "img", &lim);
    const char *docker[] = { "--network=none",
                             "--read-only",
                             "--memory=268435456b",
                             "--pids-limit=64",
                             "--cap-drop=ALL",
                             "--user=65534:65534",
                             "img" };
    for (size_t i = 0; i < sizeof(docker) / sizeof(docker[0]); i++)
        if (!has_arg(a.v, docker[i]))
            fail_msg("docker lacks %s", docker[i]);
    sandbox__argv_release(&a);
}

static void test_rejection_runs_nothing(void **state)
{
    struct sandbox_opts opts = { .mode = SANDBOX_BWRAP };
    struct sandbox_result res = { 0 };
    struct ec_err err = { 0 };
    const char code[] = "print('ran')\nopen('/etc/passwd')\n";
    assert_int_equal(sandbox_run(&opts, SANDBOX_PYTHON, code, strlen(code), &res, &err), EC_OK);
    assert_true(res.rejected);
    assert_false(res.ok);
    assert_int_equal(res.exit_code, SANDBOX_EXIT_REJECTED);
    assert_string_equal(res.stdout_text, "");
    assert_string_equal(res.stderr_text, "outside_subset: denied pattern \"open(\" at line 2");
    sandbox_result_release(&res);
    assert_null(res.stdout_text);
    sandbox_result_release(&res); /* twice is fine */

    assert_int_equal(sandbox_run(&opts, (enum sandbox_language)7, "", 0, &res, &err), EC_EINVAL);
    opts.mode = (enum sandbox_mode)9;
    assert_int_equal(sandbox_run(&opts, SANDBOX_PYTHON, "", 0, &res, &err), EC_EINVAL);
    assert_int_equal(sandbox_run(NULL, SANDBOX_PYTHON, "", 0, &res, &err), EC_EINVAL);
    assert_int_equal(sandbox_probe(NULL, &err), EC_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_limit_defaults),
        cmocka_unit_test(test_python_denylist),
        cmocka_unit_test(test_javascript_denylist),
        cmocka_unit_test(test_javascript_tokens),
        cmocka_unit_test(test_subset_check_limits),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_bwrap_command_line),
        cmocka_unit_test(test_rejection_runs_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
