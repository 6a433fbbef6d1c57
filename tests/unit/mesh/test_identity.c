/* Caller identity: SPIFFE id parsing, role names and the role masks methods declare. */
#include "mesh/rpc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static enum ec_status parse(const char *uri, struct rpc_peer *peer, struct ec_err *err)
{
    return rpc_spiffe_parse(uri, strlen(uri), peer, err);
}

static void test_spiffe_good(void **state)
{
    struct rpc_peer p;
    struct ec_err err = { 0 };
    assert_int_equal(parse("spiffe://edgecoder/coordinator/coord-a.1", &p, &err), EC_OK);
    assert_int_equal(p.role, RPC_ROLE_COORDINATOR);
    assert_string_equal(p.id, "coord-a.1");
    assert_string_equal(p.spiffe_id, "spiffe://edgecoder/coordinator/coord-a.1");
    assert_int_equal(parse("spiffe://edgecoder/control-plane/cp_1", &p, &err), EC_OK);
    assert_int_equal(p.role, RPC_ROLE_CONTROL_PLANE);
    assert_int_equal(parse("spiffe://edgecoder/agent/A", &p, &err), EC_OK);
    assert_int_equal(p.role, RPC_ROLE_AGENT);

    char longest[RPC_SPIFFE_ID_MAX];
    int n = snprintf(longest, sizeof(longest), "spiffe://edgecoder/control-plane/");
    memset(longest + n, 'x', RPC_PEER_ID_MAX);
    longest[n + RPC_PEER_ID_MAX] = '\0';
    assert_int_equal(parse(longest, &p, &err), EC_OK);
    assert_int_equal(strlen(p.id), RPC_PEER_ID_MAX);
    assert_string_equal(p.spiffe_id, longest);
}

static void test_spiffe_bad(void **state)
{
    static const char *const bad[] = {
        "",
        "spiffe://",
        "https://edgecoder/coordinator/a",
        "spiffe://other/coordinator/a", /* wrong trust domain */
        "spiffe://edgecoderx/coordinator/a",
        "spiffe://edgecoder",
        "spiffe://edgecoder/",
        "spiffe://edgecoder/coordinator",  /* no id */
        "spiffe://edgecoder/coordinator/", /* empty id */
        "spiffe://edgecoder//a",           /* empty role */
        "spiffe://edgecoder/admin/a",      /* unknown role */
        "spiffe://edgecoder/coordinator/a/b",
        "spiffe://edgecoder/coordinator/a b",
        "spiffe://edgecoder/Coordinator/a",
        "\x01\xff garbage",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct rpc_peer p;
        struct ec_err err = { 0 };
        assert_int_equal(parse(bad[i], &p, &err), EC_EUNAUTH);
        assert_int_equal(p.role, RPC_ROLE_NONE);
        assert_string_equal(p.id, "");
        assert_string_equal(ec_err_code(&err), "peer_identity_invalid");
        assert_true(err.msg[0] != '\0');
    }
    /* A NUL inside the value (auth properties are length-delimited) is refused. */
    struct rpc_peer p;
    assert_int_equal(rpc_spiffe_parse("spiffe://edgecoder/agent/a\0b", 28, &p, NULL), EC_EUNAUTH);
    /* One byte over the id limit. */
    char over[RPC_SPIFFE_ID_MAX + 8];
    int n = snprintf(over, sizeof(over), "spiffe://edgecoder/agent/");
    memset(over + n, 'y', RPC_PEER_ID_MAX + 1);
    over[n + RPC_PEER_ID_MAX + 1] = '\0';
    assert_int_equal(parse(over, &p, NULL), EC_EUNAUTH);
}

static void test_roles(void **state)
{
    assert_string_equal(rpc_role_name(RPC_ROLE_PORTAL), "portal");
    assert_string_equal(rpc_role_name(RPC_ROLE_NONE), "none");
    assert_int_equal(rpc_role_from_name("inference", 9), RPC_ROLE_INFERENCE);
    assert_int_equal(rpc_role_from_name("inferencex", 10), RPC_ROLE_NONE);
    assert_int_equal(rpc_role_from_name("infer", 5), RPC_ROLE_NONE);

    unsigned mask = RPC_ROLE_COORDINATOR | RPC_ROLE_CONTROL_PLANE;
    assert_true(rpc_role_allowed(mask, RPC_ROLE_COORDINATOR));
    assert_true(rpc_role_allowed(mask, RPC_ROLE_CONTROL_PLANE));
    assert_false(rpc_role_allowed(mask, RPC_ROLE_PORTAL));
    assert_false(rpc_role_allowed(mask, RPC_ROLE_NONE));
    assert_false(rpc_role_allowed(0, RPC_ROLE_COORDINATOR));
    assert_true(rpc_role_allowed(RPC_ROLES_ANY, RPC_ROLE_NONE));
    assert_true(rpc_role_allowed(RPC_ROLES_ANY, RPC_ROLE_AGENT));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spiffe_good),
        cmocka_unit_test(test_spiffe_bad),
        cmocka_unit_test(test_roles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
