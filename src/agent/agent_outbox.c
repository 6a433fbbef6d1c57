/* The outbox: every result is written here (fsync'd, atomic rename) before it is sent, and
 * removed only once a coordinator gave a definite answer, so no result is lost when the agent or
 * the coordinator stops in between. One JSON file per result in <state dir>/outbox. */
#include "agent/agent_int.h"
#include "common/ec_log.h"
#include "common/ec_mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OUTBOX_FORMAT   1
#define OUTBOX_FILE_MAX (4u << 20)

struct agent_outbox {
    char *dir;
};

enum ec_status agent_outbox_encode(const struct agent_outbox_item *item, struct ec_buf *out,
                                   struct ec_err *err)
{
    json_t *o = json_pack(
        "{s:i,s:s,s:i,s:I,s:s,s:s}", "v", OUTBOX_FORMAT, "subtaskId", item->subtask_id, "attempt",
        item->attempt, "createdAtMs", (json_int_t)item->created_at_ms, "coordinatorUrl",
        item->coordinator_url != NULL ? item->coordinator_url : "", "body", item->body);
    if (o == NULL)
        return ec_err_set(err, EC_EINVAL, NULL, "cannot encode the result of a subtask");
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (text == NULL)
        return ec_err_set(err, EC_EINTERNAL, NULL, "cannot serialise an outbox item");
    enum ec_status st = ec_buf_puts(out, text);
    free(text);
    if (st != EC_OK)
        return ec_err_set(err, st, NULL, "an outbox item is too large");
    return EC_OK;
}

enum ec_status agent_outbox_decode(const char *text, size_t len, struct agent_outbox_item *out,
                                   struct ec_err *err)
{
    memset(out, 0, sizeof(*out));
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return ec_err_set(err, EC_EINVAL, NULL, "an outbox item is not a JSON object");
    }
    const json_t *v = json_object_get(o, "v");
    const char *sid = json_string_value(json_object_get(o, "subtaskId"));
    const json_t *attempt = json_object_get(o, "attempt");
    const json_t *created = json_object_get(o, "createdAtMs");
    const char *url = json_string_value(json_object_get(o, "coordinatorUrl"));
    const char *body = json_string_value(json_object_get(o, "body"));
    enum ec_status st = EC_OK;
    if (!json_is_integer(v) || json_integer_value(v) != OUTBOX_FORMAT)
        st = ec_err_set(err, EC_EINVAL, NULL, "an outbox item has an unknown format version");
    else if (sid == NULL || sid[0] == '\0')
        st = ec_err_set(err, EC_EINVAL, NULL, "an outbox item has no subtaskId");
    else if (!json_is_integer(attempt) || json_integer_value(attempt) < 0 ||
             json_integer_value(attempt) > 1000000)
        st = ec_err_set(err, EC_EINVAL, NULL, "an outbox item has no valid attempt");
    else if (!json_is_integer(created) || json_integer_value(created) < 0)
        st = ec_err_set(err, EC_EINVAL, NULL, "an outbox item has no valid createdAtMs");
    else if (url == NULL || body == NULL || body[0] != '{')
        st = ec_err_set(err, EC_EINVAL, NULL, "an outbox item has no result body");
    if (st == EC_OK) {
        out->subtask_id = ec_xstrdup(sid);
        out->attempt = (int)json_integer_value(attempt);
        out->created_at_ms = json_integer_value(created);
        out->coordinator_url = ec_xstrdup(url);
        out->body = ec_xstrdup(body);
    }
    json_decref(o);
    return st;
}

void agent_outbox_item_release(struct agent_outbox_item *item)
{
    free(item->subtask_id);
    free(item->coordinator_url);
    free(item->body);
    free(item->file);
    memset(item, 0, sizeof(*item));
}

void agent_outbox_file_name(const char *subtask_id, int attempt, char *out, size_t cap)
{
    uint8_t digest[EC_SHA256_LEN];
    char hex[17];
    ec_sha256(subtask_id, strlen(subtask_id), digest);
    ec_hex_encode(hex, sizeof(hex), digest, 8);
    snprintf(out, cap, "r-%s-%d.json", hex, attempt);
}

enum ec_status agent_outbox_open(const char *state_dir, struct agent_outbox **out,
                                 struct ec_err *err)
{
    char dir[1024];
    if (snprintf(dir, sizeof(dir), "%s/outbox", state_dir) >= (int)sizeof(dir))
        return ec_err_set(err, EC_EINVAL, NULL, "the state directory path is too long");
    enum ec_status st = agent_mkdirs(dir, 0700, err);
    if (st != EC_OK)
        return st;
    struct agent_outbox *ob = ec_xcalloc(1, sizeof(*ob));
    ob->dir = ec_xstrdup(dir);
    *out = ob;
    return EC_OK;
}

void agent_outbox_close(struct agent_outbox *ob)
{
    if (ob == NULL)
        return;
    free(ob->dir);
    free(ob);
}

enum ec_status agent_outbox_put(struct agent_outbox *ob, struct agent_outbox_item *item,
                                struct ec_err *err)
{
    char name[64];
    agent_outbox_file_name(item->subtask_id, item->attempt, name, sizeof(name));
    struct ec_buf text;
    ec_buf_init(&text, OUTBOX_FILE_MAX);
    enum ec_status st = agent_outbox_encode(item, &text, err);
    if (st == EC_OK)
        st = agent_write_file(ob->dir, name, text.data, text.len, 0600, err);
    ec_buf_release(&text);
    if (st == EC_OK) {
        free(item->file);
        item->file = ec_xstrdup(name);
    }
    return st;
}

void agent_outbox_remove(struct agent_outbox *ob, const char *file)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/%s", ob->dir, file);
    if (unlink(path) != 0 && errno != ENOENT)
        EC_WARN("cannot remove a delivered result from the outbox", EC_LS("file", file),
                EC_LS("reason", strerror(errno)));
}

static enum ec_status read_all(const char *path, struct ec_buf *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return EC_ENOTFOUND;
    char chunk[8192];
    enum ec_status st = EC_OK;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            st = n < 0 ? EC_EINTERNAL : EC_OK;
            break;
        }
        if ((st = ec_buf_append(out, chunk, (size_t)n)) != EC_OK)
            break;
    }
    close(fd);
    return st;
}

static int by_created(const void *pa, const void *pb)
{
    const struct agent_outbox_item *a = pa, *b = pb;
    if (a->created_at_ms != b->created_at_ms)
        return a->created_at_ms < b->created_at_ms ? -1 : 1;
    return strcmp(a->file, b->file);
}

enum ec_status agent_outbox_load(struct agent_outbox *ob, struct agent_outbox_item **items,
                                 size_t *count, struct ec_err *err)
{
    *items = NULL;
    *count = 0;
    DIR *d = opendir(ob->dir);
    if (d == NULL)
        return ec_err_set(err, EC_EINTERNAL, NULL, "cannot read \"%s\": %s", ob->dir,
                          strerror(errno));
    struct ec_buf text;
    ec_buf_init(&text, OUTBOX_FILE_MAX);
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        size_t n = strlen(name);
        if (strncmp(name, "r-", 2) != 0 || n < 7 || strcmp(name + n - 5, ".json") != 0)
            continue;
        char path[1200];
        snprintf(path, sizeof(path), "%s/%s", ob->dir, name);
        ec_buf_reset(&text);
        struct agent_outbox_item item;
        if (read_all(path, &text) != EC_OK ||
            agent_outbox_decode(text.data != NULL ? text.data : "", text.len, &item, NULL) !=
                EC_OK) {
            /* Kept for a person to look at, never retried. */
            char aside[1300];
            snprintf(aside, sizeof(aside), "%s/bad-%s", ob->dir, name);
            rename(path, aside);
            EC_WARN("unreadable outbox item moved aside", EC_LS("file", name));
            continue;
        }
        item.file = ec_xstrdup(name);
        if (*count == cap) {
            cap = cap ? cap * 2 : 16;
            *items = ec_xrealloc(*items, cap * sizeof(**items));
        }
        (*items)[(*count)++] = item;
    }
    closedir(d);
    ec_buf_release(&text);
    if (*count > 1)
        qsort(*items, *count, sizeof(**items), by_created);
    return EC_OK;
}
