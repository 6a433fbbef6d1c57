/* The coordinator's configuration: how PORTAL_SERVICE_URL and INFERENCE_URL become gRPC targets,
 * every problem of a bad environment reported at once, and the production rules. */
#include "coord/coord.h"
#include "mesh/rpc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void target_is(const char *url, int port, const char *want)
{
    char *target = NULL;
    struct ec_err err = { 0 };
    assert_int_equal(rpc_target_from_url(url, port, &target, &err), EC_OK);
    assert_string_equal(target, want);
    free(target);
}

static void target_refused(const char *url)
{
    char *target = NULL;
    struct ec_err err = { 0 };
    assert_int_equal(rpc_target_from_url(url, 4410, &target, &err), EC_EINVAL);
    assert_null(target);
    assert_true(err.msg[0] != '\0');
}

static void test_grpc_targets(void **state)
{
    target_is("grpcs://portal.internal:7000", 4410, "portal.internal:7000");
    target_is("grpcs://portal.internal", 4410, "portal.internal:4410");
    target_is("grpcs://portal.internal/", 4410, "portal.internal:4410");
    target_is("grpcs://127.0.0.1:4410", 4410, "127.0.0.1:4410");
    target_is("grpcs://[::1]:9", 4410, "[::1]:9");
    /* An https URL names the public HTTPS address; the service's own gRPC port is used. */
    target_is("https://portal.edgecoder.io", 4410, "portal.edgecoder.io:4410");
    target_is("https://portal.edgecoder.io:443/some/path", 4410, "portal.edgecoder.io:4410");
    target_is("https://edgecoder-inference.fly.dev", 4402, "edgecoder-inference.fly.dev:4402");
    target_is("HTTPS://Portal.Example", 4410, "Portal.Example:4410");
    /* Plaintext and nonsense are refused. */
    target_refused("grpc://portal:4410");
    target_refused("http://portal.edgecoder.io");
    target_refused("portal:4410");
    target_refused("grpcs://");
    target_refused("grpcs://:4410");
    target_refused("grpcs://portal:0");
    target_refused("grpcs://portal:99999");
    target_refused("grpcs://portal:12x");
    target_refused("grpcs://portal:4410/path");
    target_refused("grpcs://por tal:4410");
    target_refused("grpcs://[::1:4410");
}

static void clear_env(void)
{
    for (size_t i = 0; i < coord_config_spec.nvars; i++)
        unsetenv(coord_config_spec.vars[i].env);
    unsetenv("EDGECODER_ENV");
}

static int load(struct coord_config *cfg, struct ec_cfg_problems *p)
{
    return ec_config_load(&coord_config_spec, cfg, p);
}

static void test_defaults(void **state)
{
    clear_env();
    setenv("DATABASE_URL", "postgresql://x@127.0.0.1/x", 1);
    struct coord_config cfg;
    struct ec_cfg_problems p;
    assert_int_equal(load(&cfg, &p), 0);
    assert_int_equal(cfg.port, 4301);
    assert_int_equal(cfg.grpc_port, 4401);
    assert_int_equal(cfg.max_skew_ms, 120000);
    assert_int_equal(cfg.nonce_ttl_ms, 300000);
    assert_int_equal(cfg.rate_limit_max, 30);
    assert_int_equal(cfg.max_attempts, 3);
    assert_string_equal(cfg.ollama_host, "http://127.0.0.1:11434");
    assert_string_equal(cfg.local_model_provider, "edgecoder-local");
    assert_string_equal(cfg.network_mode, "public_mesh");
    assert_string_equal(cfg.public_url, "http://127.0.0.1:4301");
    ec_buf_release(&p.text);
    ec_config_release(&coord_config_spec, &cfg);
}

static void test_every_problem_at_once(void **state)
{
    clear_env();
    setenv("COORDINATOR_PORT", "70000", 1);
    setenv("COORDINATOR_PEER_ID", "has space", 1);
    setenv("COORDINATOR_PRIVATE_KEY_PEM", "-----BEGIN PRIVATE KEY-----\nnope\n", 1);
    setenv("PORTAL_SERVICE_URL", "grpc://portal:4410", 1);
    setenv("OLLAMA_HOST", "ftp://x", 1);
    setenv("NETWORK_MODE", "mesh", 1);
    setenv("SECURITY_MAX_SKEW_MS", "200000", 1); /* the TTL is then shorter than twice it */
    setenv("EDGECODER_TLS_CERT", "/etc/hostname", 1);
    struct coord_config cfg;
    struct ec_cfg_problems p;
    int n = load(&cfg, &p);
    const char *text = p.text.data;
    const char *expected[] = { "DATABASE_URL",        "COORDINATOR_PORT",
                               "COORDINATOR_PEER_ID", "COORDINATOR_PRIVATE_KEY_PEM",
                               "PORTAL_SERVICE_URL",  "OLLAMA_HOST",
                               "NETWORK_MODE",        "SECURITY_NONCE_TTL_MS",
                               "EDGECODER_TLS_CERT" };
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
        assert_non_null(strstr(text, expected[i]));
    assert_true(n >= 9);
    assert_null(strstr(text, "nope")); /* a secret's value is never echoed */
    ec_buf_release(&p.text);
    ec_config_release(&coord_config_spec, &cfg);
}

static void test_production_rules(void **state)
{
    clear_env();
    setenv("EDGECODER_ENV", "production", 1);
    setenv("DATABASE_URL", "postgresql://x@127.0.0.1/x", 1);
    struct coord_config cfg;
    struct ec_cfg_problems p;
    load(&cfg, &p);
    const char *need[] = { "MESH_AUTH_TOKEN", "COORDINATOR_PRIVATE_KEY_PEM", "PORTAL_SERVICE_URL",
                           "PORTAL_SERVICE_TOKEN", "EDGECODER_TLS_CERT" };
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
        assert_non_null(strstr(p.text.data, need[i]));
    ec_buf_release(&p.text);
    ec_config_release(&coord_config_spec, &cfg);
    clear_env();
}

static void test_inference_needs_the_mesh_identity(void **state)
{
    clear_env();
    setenv("DATABASE_URL", "postgresql://x@127.0.0.1/x", 1);
    setenv("INFERENCE_URL", "grpcs://inference:4402", 1);
    struct coord_config cfg;
    struct ec_cfg_problems p;
    assert_int_equal(load(&cfg, &p), 1);
    assert_non_null(strstr(p.text.data, "INFERENCE_URL: needs this coordinator's mTLS identity"));
    ec_buf_release(&p.text);
    ec_config_release(&coord_config_spec, &cfg);
    setenv("EDGECODER_TLS_CA", "/etc/hostname", 1);
    setenv("EDGECODER_TLS_CERT", "/etc/hostname", 1);
    setenv("EDGECODER_TLS_KEY", "/etc/hostname", 1);
    setenv("INFERENCE_AUTH_TOKEN", "inference-token-0123456789", 1);
    assert_int_equal(load(&cfg, &p), 0);
    assert_string_equal(cfg.inference_auth_token, "inference-token-0123456789");
    assert_int_equal(cfg.inference_timeout_ms, 120000);
    ec_config_release(&coord_config_spec, &cfg);
    clear_env();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grpc_targets),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_problem_at_once),
        cmocka_unit_test(test_production_rules),
        cmocka_unit_test(test_inference_needs_the_mesh_identity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
