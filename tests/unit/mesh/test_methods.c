/* The method table (sorted, binary-searched on the raw method slice) and error-code interning. */
#include "mesh/rpc_int.h"

#include "edgecoder/v1/demo.pb-c.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static enum ec_status h(struct rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
                        struct ec_err *err)
{
    return EC_OK;
}

#define M(p)                                                               \
    {                                                                      \
        .path = p, .req = &edgecoder__v1__echo_request__descriptor,        \
        .resp = &edgecoder__v1__echo_reply__descriptor, .kind = RPC_UNARY, \
        .allowed_roles = RPC_ROLE_COORDINATOR, .unary = h                  \
    }

static const struct rpc_method a_methods[] = { M("/x.A/Zeta"), M("/x.A/Alpha"), M("/x.A/Mid") };
static const struct rpc_method b_methods[] = { M("/x.B/Alpha"), M("/x.B/Alph") };

static void test_table_lookup(void **state)
{
    struct rpc_service svcs[] = { { "x.A", a_methods, 3, NULL }, { "x.B", b_methods, 2, NULL } };
    struct rpc__method_table t;
    struct ec_err err = { 0 };
    assert_int_equal(rpc__method_table_build(&t, svcs, 2, &err), EC_OK);
    assert_int_equal(t.n, 5);
    for (size_t i = 1; i < t.n; i++)
        assert_true(strcmp(t.entries[i - 1].method->path, t.entries[i].method->path) < 0);
    static const char *const paths[] = { "/x.A/Zeta", "/x.A/Alpha", "/x.A/Mid", "/x.B/Alpha",
                                         "/x.B/Alph" };
    for (size_t i = 0; i < 5; i++) {
        const struct rpc__method_entry *e = rpc__method_table_find(&t, paths[i], strlen(paths[i]));
        assert_non_null(e);
        assert_string_equal(e->method->path, paths[i]);
        assert_string_equal(e->service->name, paths[i][3] == 'A' ? "x.A" : "x.B");
    }
    /* The slice is not NUL-terminated: only len bytes count. */
    assert_non_null(rpc__method_table_find(&t, "/x.B/Alphabet", 9));
    assert_string_equal(rpc__method_table_find(&t, "/x.B/Alphabet", 9)->method->path, "/x.B/Alph");
    assert_null(rpc__method_table_find(&t, "/x.B/Alphabet", 13));
    assert_null(rpc__method_table_find(&t, "/x.A/alpha", 10));
    assert_null(rpc__method_table_find(&t, "", 0));
    assert_null(rpc__method_table_find(&t, "/x.C/Alpha", 10));
    rpc__method_table_release(&t);

    struct rpc__method_table empty;
    assert_int_equal(rpc__method_table_build(&empty, NULL, 0, &err), EC_OK);
    assert_null(rpc__method_table_find(&empty, "/x.A/Mid", 8));
    rpc__method_table_release(&empty);
}

static void test_table_rejects(void **state)
{
    struct rpc__method_table t;
    struct ec_err err = { 0 };
    struct rpc_service dup[] = { { "x.A", a_methods, 3, NULL }, { "x.A", a_methods, 1, NULL } };
    assert_int_equal(rpc__method_table_build(&t, dup, 2, &err), EC_ECONFLICT);
    assert_non_null(strstr(err.msg, "registered twice"));

    static const struct rpc_method wrong_service[] = { M("/x.B/Alpha") };
    struct rpc_service s1 = { "x.A", wrong_service, 1, NULL };
    assert_int_equal(rpc__method_table_build(&t, &s1, 1, &err), EC_EINVAL);

    static const struct rpc_method no_method[] = { M("/x.A/") };
    struct rpc_service s2 = { "x.A", no_method, 1, NULL };
    assert_int_equal(rpc__method_table_build(&t, &s2, 1, &err), EC_EINVAL);

    static const struct rpc_method nested[] = { M("/x.A/B/C") };
    struct rpc_service s3 = { "x.A", nested, 1, NULL };
    assert_int_equal(rpc__method_table_build(&t, &s3, 1, &err), EC_EINVAL);

    static const struct rpc_method no_handler[] = {
        { .path = "/x.A/B",
          .req = &edgecoder__v1__echo_request__descriptor,
          .resp = &edgecoder__v1__echo_reply__descriptor,
          .kind = RPC_UNARY },
    };
    struct rpc_service s4 = { "x.A", no_handler, 1, NULL };
    assert_int_equal(rpc__method_table_build(&t, &s4, 1, &err), EC_EINVAL);
    assert_non_null(strstr(err.msg, "no handler"));
}

static void test_intern_codes(void **state)
{
    /* Status-table codes come back as the table's own strings. */
    assert_ptr_equal(rpc__intern_code("not_found", 9), ec_status_info(EC_ENOTFOUND)->code);
    const char *a = rpc__intern_code("mesh_unauthorized", 17);
    assert_non_null(a);
    assert_string_equal(a, "mesh_unauthorized");
    assert_ptr_equal(rpc__intern_code("mesh_unauthorized_and_more", 17), a);
    assert_null(rpc__intern_code("", 0));
    assert_null(rpc__intern_code("Bad-Code", 8));
    assert_null(rpc__intern_code("a\nb", 3));
    char long_code[80];
    memset(long_code, 'a', sizeof(long_code));
    assert_null(rpc__intern_code(long_code, sizeof(long_code)));
    /* The table is capped: a flood of distinct codes ends in NULL, never a crash or growth. */
    int interned = 0;
    for (int i = 0; i < 400; i++) {
        char code[16];
        int n = snprintf(code, sizeof(code), "flood_%d", i);
        if (rpc__intern_code(code, (size_t)n) != NULL)
            interned++;
    }
    assert_true(interned > 0 && interned < 400);
    assert_ptr_equal(rpc__intern_code("mesh_unauthorized", 17), a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_lookup),
        cmocka_unit_test(test_table_rejects),
        cmocka_unit_test(test_intern_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
