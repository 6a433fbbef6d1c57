/* Config loading: every problem is reported at once, secrets are never echoed, production rules
 * apply only in production, and a bad config exits 78 with the whole list. */
#include "common/ec_config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

struct demo_cfg {
    char *name;
    int64_t port;
    bool flag;
    char *url;
    char *token;
    char *prod_only;
};

static void demo_check(const void *cfg, bool production, struct ec_cfg_problems *p)
{
    const struct demo_cfg *c = cfg;
    if (production && c->flag)
        ec_cfg_problem(p, "DEMO_FLAG", "must be false in production");
}

static const struct ec_cfg_var demo_vars[] = {
    { "DEMO_NAME", EC_CFG_STR, EC_CFG_FIELD(struct demo_cfg, name), "edge", 0, 0, 0, NULL,
      "a name" },
    { "DEMO_PORT", EC_CFG_INT, EC_CFG_FIELD(struct demo_cfg, port), "4301", 1, 65535, 0, NULL,
      "a port" },
    { "DEMO_FLAG", EC_CFG_BOOL, EC_CFG_FIELD(struct demo_cfg, flag), "false", 0, 0, 0, NULL,
      "a flag" },
    { "DEMO_URL", EC_CFG_URL, EC_CFG_FIELD(struct demo_cfg, url), NULL, 0, 0, 0, NULL, "a url" },
    { "DEMO_TOKEN", EC_CFG_STR, EC_CFG_FIELD(struct demo_cfg, token), NULL, 0, 0,
      EC_CFG_SECRET | EC_CFG_REQUIRED_PROD, NULL, "a token" },
    { "DEMO_PROD", EC_CFG_STR, EC_CFG_FIELD(struct demo_cfg, prod_only), NULL, 0, 0,
      EC_CFG_REQUIRED_PROD, NULL, "needed in production" },
};

static const struct ec_cfg_spec demo_spec = { "demo", demo_vars,
                                              sizeof(demo_vars) / sizeof(demo_vars[0]),
                                              demo_check };

static void clear_env(void)
{
    const char *names[] = { "DEMO_NAME",  "DEMO_PORT", "DEMO_FLAG",    "DEMO_URL",
                            "DEMO_TOKEN", "DEMO_PROD", "EDGECODER_ENV" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        unsetenv(names[i]);
}

static void test_defaults(void **state)
{
    clear_env();
    struct demo_cfg cfg;
    struct ec_cfg_problems p;
    assert_int_equal(ec_config_load(&demo_spec, &cfg, &p), 0);
    assert_string_equal(cfg.name, "edge");
    assert_int_equal(cfg.port, 4301);
    assert_false(cfg.flag);
    assert_null(cfg.url);
    ec_buf_release(&p.text);
    ec_config_release(&demo_spec, &cfg);
}

static void test_values(void **state)
{
    clear_env();
    setenv("DEMO_PORT", "8080", 1);
    setenv("DEMO_FLAG", "yes", 1);
    setenv("DEMO_URL", "https://coordinator.edgecoder.io", 1);
    struct demo_cfg cfg;
    struct ec_cfg_problems p;
    assert_int_equal(ec_config_load(&demo_spec, &cfg, &p), 0);
    assert_int_equal(cfg.port, 8080);
    assert_true(cfg.flag);
    assert_string_equal(cfg.url, "https://coordinator.edgecoder.io");
    ec_buf_release(&p.text);
    ec_config_release(&demo_spec, &cfg);
}

static void test_every_problem_reported(void **state)
{
    clear_env();
    setenv("DEMO_PORT", "99999", 1);
    setenv("DEMO_FLAG", "maybe", 1);
    setenv("DEMO_URL", "ftp://x", 1);
    struct demo_cfg cfg;
    struct ec_cfg_problems p;
    assert_int_equal(ec_config_load(&demo_spec, &cfg, &p), 3);
    assert_non_null(strstr(p.text.data, "DEMO_PORT: 99999 is out of range [1, 65535]"));
    assert_non_null(strstr(p.text.data, "DEMO_FLAG: cannot parse \"maybe\" as a boolean"));
    assert_non_null(strstr(p.text.data, "DEMO_URL: \"ftp://x\" is not a URL"));
    ec_buf_release(&p.text);
    ec_config_release(&demo_spec, &cfg);
}

static void test_bad_integer_text(void **state)
{
    clear_env();
    setenv("DEMO_PORT", "80x", 1);
    struct demo_cfg cfg;
    struct ec_cfg_problems p;
    assert_int_equal(ec_config_load(&demo_spec, &cfg, &p), 1);
    assert_non_null(strstr(p.text.data, "cannot parse \"80x\" as an integer"));
    ec_buf_release(&p.text);
    ec_config_release(&demo_spec, &cfg);
}

static void test_production_rules(void **state)
{
    clear_env();
    setenv("EDGECODER_ENV", "production", 1);
    setenv("DEMO_FLAG", "true", 1);
    struct demo_cfg cfg;
    struct ec_cfg_problems p;
    assert_int_equal(ec_config_load(&demo_spec, &cfg, &p), 3);
    assert_non_null(strstr(p.text.data, "DEMO_TOKEN: is required when EDGECODER_ENV=production"));
    assert_non_null(strstr(p.text.data, "DEMO_PROD: is required"));
    assert_non_null(strstr(p.text.data, "DEMO_FLAG: must be false in production"));
    ec_buf_release(&p.text);
    ec_config_release(&demo_spec, &cfg);

    /* An empty token never means "open" in production. */
    setenv("DEMO_TOKEN", "", 1);
    setenv("DEMO_PROD", "x", 1);
    setenv("DEMO_FLAG", "false", 1);
    assert_int_equal(ec_config_load(&demo_spec, &cfg, &p), 1);
    ec_buf_release(&p.text);
    ec_config_release(&demo_spec, &cfg);
    clear_env();
}

static void test_unknown_mode(void **state)
{
    clear_env();
    setenv("EDGECODER_ENV", "prod", 1);
    struct demo_cfg cfg;
    struct ec_cfg_problems p;
    assert_int_equal(ec_config_load(&demo_spec, &cfg, &p), 1);
    assert_non_null(strstr(p.text.data, "EDGECODER_ENV"));
    ec_buf_release(&p.text);
    ec_config_release(&demo_spec, &cfg);
    clear_env();
}

static void test_secret_never_echoed(void **state)
{
    clear_env();
    static const struct ec_cfg_var vars[] = {
        { "DEMO_SECRET_N", EC_CFG_INT, 0, NULL, 0, 10, EC_CFG_SECRET, NULL, "secret number" },
    };
    static const struct ec_cfg_spec spec = { "demo", vars, 1, NULL };
    setenv("DEMO_SECRET_N", "hunter2", 1);
    int64_t n;
    struct ec_cfg_problems p;
    assert_int_equal(ec_config_load(&spec, &n, &p), 1);
    assert_null(strstr(p.text.data, "hunter2"));
    assert_non_null(strstr(p.text.data, "(secret)"));
    ec_buf_release(&p.text);
    unsetenv("DEMO_SECRET_N");
}

static void test_exit_78_lists_all(void **state)
{
    clear_env();
    setenv("DEMO_PORT", "0", 1);
    setenv("DEMO_URL", "nope", 1);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        struct demo_cfg cfg;
        ec_config_load_or_exit(&demo_spec, &cfg);
        _exit(0);
    }
    close(fds[1]);
    char out[4096] = { 0 };
    size_t used = 0;
    ssize_t n;
    while ((n = read(fds[0], out + used, sizeof(out) - 1 - used)) > 0)
        used += (size_t)n;
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), EC_EXIT_CONFIG);
    assert_non_null(strstr(out, "2 problems"));
    assert_non_null(strstr(out, "DEMO_PORT"));
    assert_non_null(strstr(out, "DEMO_URL"));
    clear_env();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_every_problem_reported),
        cmocka_unit_test(test_bad_integer_text),
        cmocka_unit_test(test_production_rules),
        cmocka_unit_test(test_unknown_mode),
        cmocka_unit_test(test_secret_never_echoed),
        cmocka_unit_test(test_exit_78_lists_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
