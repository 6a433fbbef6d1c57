/* Migrations: validating and ordering the list of files (pure), and applying the missing ones
 * to a database under an advisory lock, each in its own transaction. */
#include "common/ec_migrate.h"
#include "common/ec_log.h"
#include "common/ec_mem.h"

#include <libpq-fe.h>
#include <openssl/evp.h>

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* pg_advisory_lock key held for a whole run, so concurrent migrators of one database take turns
 * and the later ones find nothing left to do. The bytes spell "ECmigr". */
#define MIGRATE_LOCK_KEY 0x45436d696772LL

/* A migration file bigger than this is a mistake (a data dump), not a schema change. */
#define MIGRATION_MAX_BYTES (16u << 20)

/* --- the list (pure) ---------------------------------------------------------------------- */

enum ec_status ec_migration_name_parse(const char *file, int *version, struct ec_err *err)
{
    const char *p = file;
    long v = 0;
    size_t digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++)
        if (digits < 9)
            v = v * 10 + (*p - '0');
    size_t name_len = 0;
    const char *name = p + 1;
    if (*p == '_')
        name_len = strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
    if (digits < 4 || *p != '_' || name_len == 0 || strcmp(name + name_len, ".sql") != 0)
        return ec_err_set(err, EC_EINVAL, NULL,
                          "migration file name \"%s\" does not match NNNN_name.sql", file);
    if (digits > 9 || v == 0)
        return ec_err_set(err, EC_EINVAL, NULL,
                          "migration file name \"%s\" has a version outside 1..999999999", file);
    *version = (int)v;
    return EC_OK;
}

static int migration_cmp(const void *a, const void *b)
{
    const struct ec_migration *x = a, *y = b;
    if (x->version != y->version)
        return x->version < y->version ? -1 : 1;
    return strcmp(x->file, y->file);
}

enum ec_status ec_migration_list_check(struct ec_migration *items, size_t count, struct ec_err *err)
{
    for (size_t i = 0; i < count; i++) {
        enum ec_status st = ec_migration_name_parse(items[i].file, &items[i].version, err);
        if (st != EC_OK)
            return st;
    }
    /* Numeric, not by name: "10000_x.sql" sorts before "9999_y.sql" as text. */
    qsort(items, count, sizeof(*items), migration_cmp);
    for (size_t i = 1; i < count; i++)
        if (items[i].version == items[i - 1].version)
            return ec_err_set(err, EC_EINVAL, NULL,
                              "migrations \"%s\" and \"%s\" have the same version %d",
                              items[i - 1].file, items[i].file, items[i].version);
    return EC_OK;
}

enum ec_status ec_migration_list_embedded(const struct ec_embedded_file *table, const char *db,
                                          struct ec_arena *arena, struct ec_migration_list *out,
                                          struct ec_err *err)
{
    size_t prefix_len = strlen(db);
    size_t count = 0;
    out->items = NULL;
    out->count = 0;
    for (const struct ec_embedded_file *f = table; f->path != NULL; f++)
        if (strncmp(f->path, db, prefix_len) == 0 && f->path[prefix_len] == '/')
            count++;
    if (prefix_len == 0 || count == 0)
        return ec_err_set(err, EC_EINVAL, NULL, "no migrations for database \"%s\"", db);
    struct ec_migration *items = ec_arena_zalloc(arena, count * sizeof(*items));
    size_t n = 0;
    for (const struct ec_embedded_file *f = table; f->path != NULL; f++) {
        if (strncmp(f->path, db, prefix_len) != 0 || f->path[prefix_len] != '/')
            continue;
        items[n].file = f->path + prefix_len + 1;
        items[n].sql = (const char *)f->data;
        items[n].len = f->len;
        n++;
    }
    enum ec_status st = ec_migration_list_check(items, count, err);
    if (st != EC_OK)
        return st;
    out->items = items;
    out->count = count;
    return EC_OK;
}

static enum ec_status file_read(const char *path, const char *file, struct ec_arena *arena,
                                struct ec_migration *m, struct ec_err *err)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return ec_err_set(err, EC_EINVAL, NULL, "cannot open migration \"%s\": %s", file,
                          strerror(errno));
    struct stat sb;
    enum ec_status st = EC_OK;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = ec_err_set(err, EC_EINVAL, NULL, "migration \"%s\" is not a regular file", file);
    } else if ((uintmax_t)sb.st_size > MIGRATION_MAX_BYTES) {
        st = ec_err_set(err, EC_EINVAL, NULL, "migration \"%s\" is larger than %u bytes", file,
                        MIGRATION_MAX_BYTES);
    } else {
        size_t len = (size_t)sb.st_size;
        char *body = ec_arena_alloc(arena, len + 1);
        if (fread(body, 1, len, fp) != len)
            st = ec_err_set(err, EC_EINVAL, NULL, "cannot read migration \"%s\"", file);
        body[len] = '\0';
        m->file = ec_arena_strdup(arena, file);
        m->sql = body;
        m->len = len;
    }
    fclose(fp);
    return st;
}

enum ec_status ec_migration_list_dir(const char *dir, struct ec_arena *arena,
                                     struct ec_migration_list *out, struct ec_err *err)
{
    out->items = NULL;
    out->count = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return ec_err_set(err, EC_EINVAL, NULL, "cannot open migrations directory \"%s\": %s", dir,
                          strerror(errno));
    size_t count = 0, cap = 16;
    struct ec_migration *items = ec_arena_zalloc(arena, cap * sizeof(*items));
    enum ec_status st = EC_OK;
    struct dirent *e;
    while (st == EC_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (count == cap) {
            struct ec_migration *grown = ec_arena_zalloc(arena, 2 * cap * sizeof(*items));
            memcpy(grown, items, cap * sizeof(*items));
            items = grown;
            cap *= 2;
        }
        char *path = ec_arena_sprintf(arena, "%s/%s", dir, e->d_name);
        st = file_read(path, e->d_name, arena, &items[count], err);
        count++;
    }
    closedir(d);
    if (st != EC_OK)
        return st;
    if (count == 0)
        return ec_err_set(err, EC_EINVAL, NULL, "no migrations in directory \"%s\"", dir);
    st = ec_migration_list_check(items, count, err);
    if (st != EC_OK)
        return st;
    out->items = items;
    out->count = count;
    return EC_OK;
}

void ec_migration_checksum(const struct ec_migration *m, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EC_ASSERT(EVP_Digest(m->sql, m->len, md, &md_len, EVP_sha256(), NULL) == 1 && md_len == 32);
    for (size_t i = 0; i < md_len; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* --- applying ----------------------------------------------------------------------------- */

struct applied_row {
    int version;
    const char *checksum;
};

static void notice_log(void *arg, const char *message)
{
    (void)arg;
    EC_DEBUG("database notice", EC_LS("notice", message));
}

static void first_line(char *dst, size_t n, const char *src)
{
    size_t len = strcspn(src, "\n");
    if (len >= n)
        len = n - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* Runs trusted SQL (ours, never network input); false with PostgreSQL's message in msg. */
static bool exec_ok(PGconn *pg, const char *sql, PGresult **keep, char *msg, size_t msg_len,
                    int *line)
{
    PGresult *r = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
    if (!ok) {
        const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        first_line(msg, msg_len, primary != NULL ? primary : PQerrorMessage(pg));
        const char *pos = PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION);
        if (line != NULL && pos != NULL) {
            /* The position counts characters from 1; count lines up to it over UTF-8. */
            long chars = strtol(pos, NULL, 10);
            *line = 1;
            for (const unsigned char *p = (const unsigned char *)sql; *p && chars > 1; p++) {
                if ((*p & 0xC0) == 0x80)
                    continue;
                if (*p == '\n')
                    (*line)++;
                chars--;
            }
        }
    }
    if (ok && keep != NULL)
        *keep = r;
    else
        PQclear(r);
    return ok;
}

static enum ec_status setup_fail(PGconn *pg, const char *what, const char *msg, struct ec_err *err)
{
    if (PQstatus(pg) != CONNECTION_OK)
        return ec_err_set(err, EC_EUNAVAIL, "database_unavailable", "%s: %s", what, msg);
    return ec_err_set(err, EC_EINTERNAL, NULL, "%s: %s", what, msg);
}

static enum ec_status load_applied(PGconn *pg, struct ec_arena *arena, struct applied_row **rows,
                                   size_t *nrows, struct ec_err *err)
{
    char msg[200];
    PGresult *r = NULL;
    if (!exec_ok(pg,
                 "CREATE TABLE IF NOT EXISTS schema_migrations ("
                 " version int PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                 " applied_at timestamptz NOT NULL DEFAULT now())",
                 NULL, msg, sizeof(msg), NULL) ||
        !exec_ok(pg, "SELECT version, checksum FROM schema_migrations ORDER BY version", &r, msg,
                 sizeof(msg), NULL))
        return setup_fail(pg, "cannot read schema_migrations", msg, err);
    *nrows = (size_t)PQntuples(r);
    *rows = ec_arena_zalloc(arena, (*nrows + 1) * sizeof(**rows));
    for (size_t i = 0; i < *nrows; i++) {
        (*rows)[i].version = atoi(PQgetvalue(r, (int)i, 0));
        (*rows)[i].checksum = ec_arena_strdup(arena, PQgetvalue(r, (int)i, 1));
    }
    PQclear(r);
    return EC_OK;
}

static const struct ec_migration *list_find(const struct ec_migration_list *list, int version)
{
    for (size_t i = 0; i < list->count; i++)
        if (list->items[i].version == version)
            return &list->items[i];
    return NULL;
}

/* Everything that makes the run refuse, checked before anything is applied. */
static enum ec_status check_applied(const struct ec_migration_list *list,
                                    const struct applied_row *rows, size_t nrows,
                                    struct ec_err *err)
{
    int newest = 0;
    for (size_t i = 0; i < nrows; i++) {
        const struct ec_migration *m = list_find(list, rows[i].version);
        if (m == NULL)
            return ec_err_set(err, EC_ECONFLICT, NULL,
                              "database has migration version %d, which this binary does not "
                              "know: the schema is newer than this binary",
                              rows[i].version);
        char sum[65];
        ec_migration_checksum(m, sum);
        if (strcmp(sum, rows[i].checksum) != 0)
            return ec_err_set(err, EC_ECONFLICT, NULL,
                              "migration \"%s\" was changed after it was applied (checksum "
                              "%.12s... in the database, %.12s... in the file)",
                              m->file, rows[i].checksum, sum);
        if (rows[i].version > newest)
            newest = rows[i].version;
    }
    for (size_t i = 0; i < list->count; i++) {
        const struct ec_migration *m = &list->items[i];
        bool recorded = false;
        for (size_t j = 0; j < nrows && !recorded; j++)
            recorded = rows[j].version == m->version;
        if (!recorded && m->version < newest)
            return ec_err_set(err, EC_ECONFLICT, NULL,
                              "migration \"%s\" is older than the database's version %d but was "
                              "never applied; forward-only migrations cannot go back",
                              m->file, newest);
    }
    return EC_OK;
}

static enum ec_status apply_one(PGconn *pg, const struct ec_migration *m, struct ec_err *err)
{
    char msg[200] = "", sum[65], version[16];
    int line = 0;
    ec_migration_checksum(m, sum);
    snprintf(version, sizeof(version), "%d", m->version);
    const char *params[] = { version, m->file, sum };
    if (!exec_ok(pg, "BEGIN", NULL, msg, sizeof(msg), NULL))
        return setup_fail(pg, "cannot begin a transaction", msg, err);
    /* PQexec runs a multi-statement body inside our transaction; it is trusted, embedded SQL. */
    if (!exec_ok(pg, m->sql, NULL, msg, sizeof(msg), &line)) {
        PQclear(PQexec(pg, "ROLLBACK"));
        if (line > 0)
            return ec_err_set(err, EC_EINTERNAL, NULL, "migration \"%s\" failed at line %d: %s",
                              m->file, line, msg);
        return ec_err_set(err, EC_EINTERNAL, NULL, "migration \"%s\" failed: %s", m->file, msg);
    }
    PGresult *r = PQexecParams(pg,
                               "INSERT INTO schema_migrations (version, name, checksum)"
                               " VALUES ($1, $2, $3)",
                               3, NULL, params, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        first_line(msg, sizeof(msg), PQerrorMessage(pg));
    PQclear(r);
    if (!ok || !exec_ok(pg, "COMMIT", NULL, msg, sizeof(msg), NULL)) {
        PQclear(PQexec(pg, "ROLLBACK"));
        return ec_err_set(err, EC_EINTERNAL, NULL, "cannot record migration \"%s\": %s", m->file,
                          msg);
    }
    return EC_OK;
}

static enum ec_status run_locked(PGconn *pg, const struct ec_migration_list *list,
                                 struct ec_arena *arena, struct ec_migrate_report *report,
                                 struct ec_err *err)
{
    struct applied_row *rows = NULL;
    size_t nrows = 0;
    enum ec_status st = load_applied(pg, arena, &rows, &nrows, err);
    if (st != EC_OK)
        return st;
    for (size_t i = 0; i < nrows; i++)
        if (rows[i].version > report->current)
            report->current = rows[i].version;
    st = check_applied(list, rows, nrows, err);
    if (st != EC_OK)
        return st;
    for (size_t i = 0; i < list->count; i++) {
        const struct ec_migration *m = &list->items[i];
        if (m->version <= report->current)
            continue; /* check_applied proved every older one is recorded */
        int64_t started = ec_mono_ms();
        st = apply_one(pg, m, err);
        if (st != EC_OK) {
            EC_ERROR("migration failed", EC_LS("file", m->file), EC_LS("error", err->msg));
            return st;
        }
        report->applied[report->napplied++] = m;
        report->current = m->version;
        EC_INFO("migration applied", EC_LS("file", m->file), EC_LI("version", m->version),
                EC_LI("dur_ms", ec_mono_ms() - started));
    }
    return EC_OK;
}

enum ec_status ec_migrate_run(const char *conninfo, const struct ec_migration_list *list,
                              struct ec_arena *arena, struct ec_migrate_report *report,
                              struct ec_err *err)
{
    report->applied =
        ec_arena_zalloc(arena, (list->count + 1) * sizeof(const struct ec_migration *));
    report->napplied = 0;
    report->current = 0;

    char *parse_msg = NULL;
    PQconninfoOption *parsed = PQconninfoParse(conninfo, &parse_msg);
    if (parsed == NULL) {
        /* libpq's message may quote the URL, and the URL may hold a password. */
        PQfreemem(parse_msg);
        return ec_err_set(err, EC_EINVAL, NULL, "cannot parse the database URL");
    }
    PQconninfoFree(parsed);

    const char *const keys[] = { "connect_timeout", "application_name", "dbname", NULL };
    const char *const vals[] = { "10", "edgecoder-migrate", conninfo, NULL };
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(pg) != CONNECTION_OK) {
        char msg[200];
        first_line(msg, sizeof(msg), PQerrorMessage(pg));
        PQfinish(pg);
        return ec_err_set(err, EC_EUNAVAIL, "database_unavailable",
                          "cannot connect to the database: %s", msg);
    }
    PQsetNoticeProcessor(pg, notice_log, NULL);

    char msg[200] = "", lock_sql[96], unlock_sql[96];
    snprintf(lock_sql, sizeof(lock_sql), "SELECT pg_advisory_lock(%lld)", MIGRATE_LOCK_KEY);
    snprintf(unlock_sql, sizeof(unlock_sql), "SELECT pg_advisory_unlock(%lld)", MIGRATE_LOCK_KEY);
    enum ec_status st;
    /* A migrator stuck holding the lock for ten minutes is a problem for a person, not a wait.
     * The notices of CREATE TABLE IF NOT EXISTS are noise. */
    if (!exec_ok(pg, "SET client_min_messages = warning", NULL, msg, sizeof(msg), NULL) ||
        !exec_ok(pg, "SET lock_timeout = '10min'", NULL, msg, sizeof(msg), NULL) ||
        !exec_ok(pg, lock_sql, NULL, msg, sizeof(msg), NULL) ||
        !exec_ok(pg, "RESET lock_timeout", NULL, msg, sizeof(msg), NULL)) {
        st = setup_fail(pg, "cannot take the migrations lock", msg, err);
    } else {
        st = run_locked(pg, list, arena, report, err);
        /* Ending the session would release the lock too; unlocking says so explicitly. */
        PQclear(PQexec(pg, unlock_sql));
    }
    PQfinish(pg);
    return st;
}
