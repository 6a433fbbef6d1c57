/* The pure part of the migrator: file names, ordering, duplicates, and the embedded table. */
#include "common/ec_arena.h"
#include "common/ec_embed.h"
#include "common/ec_migrate.h"
#include "common/ec_status.h"

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

#define ITEM(f)                                   \
    {                                             \
        .file = (f), .sql = "SELECT 1;", .len = 9 \
    }

static void test_name_parse(void **state)
{
    struct ec_err err = { 0 };
    int v = -1;
    assert_int_equal(ec_migration_name_parse("0001_service_meta.sql", &v, &err), EC_OK);
    assert_int_equal(v, 1);
    assert_int_equal(ec_migration_name_parse("10000_big-one.sql", &v, &err), EC_OK);
    assert_int_equal(v, 10000);

    static const char *const bad[] = {
        "001_short.sql",
        "0001service.sql",
        "0001_.sql",
        "0001_x.SQL",
        "0001_x.sql.orig",
        "x0001_x.sql",
        "0001_a b.sql",
        "0001_x",
        "0000_zero.sql",
        "1234567890_too_big.sql",
        "",
        "coordinator/0001_x.sql",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ec_err_clear(&err);
        assert_int_equal(ec_migration_name_parse(bad[i], &v, &err), EC_EINVAL);
        /* The message names the offending file. */
        assert_non_null(strstr(err.msg, bad[i]));
    }
}

static void test_list_orders_numerically(void **state)
{
    struct ec_migration items[] = { ITEM("0010_c.sql"), ITEM("0002_b.sql"), ITEM("10000_e.sql"),
                                    ITEM("0001_a.sql"), ITEM("9999_d.sql") };
    struct ec_err err = { 0 };
    assert_int_equal(ec_migration_list_check(items, 5, &err), EC_OK);
    static const int want[] = { 1, 2, 10, 9999, 10000 };
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(items[i].version, want[i]);
    assert_string_equal(items[4].file, "10000_e.sql");
}

static void test_list_allows_gaps(void **state)
{
    struct ec_migration items[] = { ITEM("0001_a.sql"), ITEM("0005_b.sql"), ITEM("0003_c.sql") };
    struct ec_err err = { 0 };
    assert_int_equal(ec_migration_list_check(items, 3, &err), EC_OK);
    assert_int_equal(items[1].version, 3);
    assert_int_equal(items[2].version, 5);
}

static void test_list_rejects_bad_name(void **state)
{
    struct ec_migration items[] = { ITEM("0001_a.sql"), ITEM("README.md") };
    struct ec_err err = { 0 };
    assert_int_equal(ec_migration_list_check(items, 2, &err), EC_EINVAL);
    assert_non_null(strstr(err.msg, "\"README.md\""));
}

static void test_list_rejects_duplicate_version(void **state)
{
    struct ec_migration items[] = { ITEM("0002_b.sql"), ITEM("0001_a.sql"), ITEM("02_x.sql") };
    struct ec_err err = { 0 };
    assert_int_equal(ec_migration_list_check(items, 3, &err), EC_EINVAL); /* 02_x: too short */

    struct ec_migration dup[] = { ITEM("0002_b.sql"), ITEM("0001_a.sql"), ITEM("00002_c.sql") };
    ec_err_clear(&err);
    assert_int_equal(ec_migration_list_check(dup, 3, &err), EC_EINVAL);
    assert_non_null(strstr(err.msg, "0002_b.sql"));
    assert_non_null(strstr(err.msg, "00002_c.sql"));
    assert_non_null(strstr(err.msg, "same version 2"));
}

static void test_embedded_table(void **state)
{
    struct ec_arena arena;
    ec_arena_init(&arena);
    struct ec_err err = { 0 };
    static const char *const dbs[] = { "coordinator", "portal" };
    for (size_t d = 0; d < 2; d++) {
        struct ec_migration_list list;
        assert_int_equal(ec_migration_list_embedded(ec_migrations, dbs[d], &arena, &list, &err),
                         EC_OK);
        assert_true(list.count >= 1);
        assert_int_equal(list.items[0].version, 1);
        assert_string_equal(list.items[0].file, "0001_service_meta.sql");
        assert_non_null(strstr(list.items[0].sql, "CREATE TABLE service_meta"));
        assert_int_equal(strlen(list.items[0].sql), list.items[0].len);
        for (size_t i = 1; i < list.count; i++)
            assert_true(list.items[i].version > list.items[i - 1].version);
    }
    struct ec_migration_list none;
    assert_int_equal(ec_migration_list_embedded(ec_migrations, "nosuch", &arena, &none, &err),
                     EC_EINVAL);
    /* A prefix of a database's name is not that database. */
    assert_int_equal(ec_migration_list_embedded(ec_migrations, "coord", &arena, &none, &err),
                     EC_EINVAL);
    ec_arena_release(&arena);
}

static void test_embedded_filter(void **state)
{
    static const unsigned char body[] = "SELECT 1;";
    const struct ec_embedded_file table[] = {
        { "portal/0001_a.sql", body, 9 },
        { "coordinator/0002_b.sql", body, 9 },
        { "coordinator/0001_a.sql", body, 9 },
        { NULL, NULL, 0 },
    };
    const struct ec_embedded_file nested[] = {
        { "coordinator/0001_a.sql", body, 9 },
        { "coordinator/old/0002_b.sql", body, 9 },
        { NULL, NULL, 0 },
    };
    struct ec_arena arena;
    ec_arena_init(&arena);
    struct ec_err err = { 0 };
    struct ec_migration_list list;
    assert_int_equal(ec_migration_list_embedded(table, "coordinator", &arena, &list, &err), EC_OK);
    assert_int_equal(list.count, 2);
    assert_string_equal(list.items[0].file, "0001_a.sql");
    assert_string_equal(list.items[1].file, "0002_b.sql");
    assert_int_equal(ec_migration_list_embedded(nested, "coordinator", &arena, &list, &err),
                     EC_EINVAL);
    assert_non_null(strstr(err.msg, "old/0002_b.sql"));
    ec_arena_release(&arena);
}

static void write_file(const char *dir, const char *name, const char *body)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(body, f);
    fclose(f);
}

static void test_dir_source(void **state)
{
    char dir[] = "/tmp/ec-migrate-XXXXXX";
    assert_non_null(mkdtemp(dir));
    write_file(dir, "0002_b.sql", "CREATE TABLE b (x int);\n");
    write_file(dir, "0001_a.sql", "CREATE TABLE a (x int);\n");
    write_file(dir, ".hidden", "ignored");
    struct ec_arena arena;
    ec_arena_init(&arena);
    struct ec_err err = { 0 };
    struct ec_migration_list list;
    assert_int_equal(ec_migration_list_dir(dir, &arena, &list, &err), EC_OK);
    assert_int_equal(list.count, 2);
    assert_string_equal(list.items[0].file, "0001_a.sql");
    assert_string_equal(list.items[1].sql, "CREATE TABLE b (x int);\n");

    char sum[65];
    ec_migration_checksum(&list.items[0], sum);
    /* sha256("CREATE TABLE a (x int);\n") */
    assert_string_equal(sum, "1c0a5f21cdffcd4210b24724676c9084acc427f170eb1a8bdd097e359601ecca");

    write_file(dir, "notes.txt", "x");
    assert_int_equal(ec_migration_list_dir(dir, &arena, &list, &err), EC_EINVAL);
    assert_non_null(strstr(err.msg, "notes.txt"));

    char path[512];
    const char *names[] = { "0001_a.sql", "0002_b.sql", ".hidden", "notes.txt" };
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    assert_int_equal(ec_migration_list_dir(dir, &arena, &list, &err), EC_EINVAL);
    rmdir(dir);
    assert_int_equal(ec_migration_list_dir(dir, &arena, &list, &err), EC_EINVAL);
    ec_arena_release(&arena);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_parse),
        cmocka_unit_test(test_list_orders_numerically),
        cmocka_unit_test(test_list_allows_gaps),
        cmocka_unit_test(test_list_rejects_bad_name),
        cmocka_unit_test(test_list_rejects_duplicate_version),
        cmocka_unit_test(test_embedded_table),
        cmocka_unit_test(test_embedded_filter),
        cmocka_unit_test(test_dir_source),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
