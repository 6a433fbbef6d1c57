/* The agent's durable identity: an Ed25519 signing key and an X25519 envelope key, created 0600
 * in the state directory on first start and reused after, so the coordinator keeps knowing the
 * agent by the key it registered. Also the durable file writes the state directory needs. */
#include "agent/agent_int.h"
#include "common/ec_log.h"
#include "common/ec_mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SIGN_KEY_FILE   "identity-ed25519.pem"
#define X25519_KEY_FILE "identity-x25519.pem"
#define KEY_FILE_MAX    4096

enum ec_status agent_mkdirs(const char *path, unsigned mode, struct ec_err *err)
{
    char buf[1024];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return ec_err_set(err, EC_EINVAL, NULL, "the path \"%.80s...\" is too long", path);
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return ec_err_set(err, EC_EINTERNAL, NULL, "cannot create directory \"%s\": %s", buf,
                              strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, (mode_t)mode) != 0 && errno != EEXIST)
        return ec_err_set(err, EC_EINTERNAL, NULL, "cannot create directory \"%s\": %s", buf,
                          strerror(errno));
    struct stat stt;
    if (stat(buf, &stt) != 0 || !S_ISDIR(stt.st_mode))
        return ec_err_set(err, EC_EINTERNAL, NULL, "\"%s\" is not a directory", buf);
    return EC_OK;
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

enum ec_status agent_write_file(const char *dir, const char *name, const void *data, size_t len,
                                unsigned mode, struct ec_err *err)
{
    char path[1024], tmp[1024];
    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path) ||
        snprintf(tmp, sizeof(tmp), "%s/.tmp-%s", dir, name) >= (int)sizeof(tmp))
        return ec_err_set(err, EC_EINVAL, NULL, "the path of \"%.64s\" is too long", name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
    if (fd < 0)
        return ec_err_set(err, EC_EINTERNAL, NULL, "cannot create \"%s\": %s", tmp,
                          strerror(errno));
    fchmod(fd, (mode_t)mode); /* an old temporary file may have had another mode */
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return ec_err_set(err, EC_EINTERNAL, NULL, "cannot write \"%s\": %s", tmp, strerror(e));
        }
        p += n;
        left -= (size_t)n;
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return ec_err_set(err, EC_EINTERNAL, NULL, "cannot fsync \"%s\": %s", tmp, strerror(e));
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return ec_err_set(err, EC_EINTERNAL, NULL, "cannot rename \"%s\": %s", tmp, strerror(e));
    }
    fsync_dir(dir);
    return EC_OK;
}

/* Reads a key file; EC_ENOTFOUND when it does not exist. A file others may read is refused, as
 * ssh refuses such a private key. */
static enum ec_status read_key_file(const char *dir, const char *name, struct ec_buf *out,
                                    struct ec_err *err)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            return EC_ENOTFOUND;
        return ec_err_set(err, EC_EINTERNAL, NULL, "cannot open \"%s\": %s", path, strerror(errno));
    }
    struct stat stt;
    if (fstat(fd, &stt) != 0 || !S_ISREG(stt.st_mode) || (stt.st_mode & 077) != 0) {
        close(fd);
        return ec_err_set(err, EC_EFORBIDDEN, NULL,
                          "\"%s\" must be a regular file only its owner can read (chmod 600)",
                          path);
    }
    char buf[KEY_FILE_MAX];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == sizeof(buf))
            break;
    }
    close(fd);
    enum ec_status st = ec_buf_append(out, buf, len);
    ec_crypto_wipe(buf, sizeof(buf));
    return st;
}

static enum ec_status load_or_create(const char *dir, const char *name, enum ec_key_alg alg,
                                     struct ec_key **key, bool *created, struct ec_err *err)
{
    struct ec_buf pem;
    ec_buf_init(&pem, KEY_FILE_MAX);
    enum ec_status st = read_key_file(dir, name, &pem, err);
    if (st == EC_OK) {
        st = ec_key_load_private_pem(alg, pem.data != NULL ? pem.data : "", pem.len, key, err);
        if (st != EC_OK)
            ec_err_set(err, st, NULL, "%s/%s does not hold a %s private key", dir, name,
                       alg == EC_KEY_ED25519 ? "Ed25519" : "X25519");
    } else if (st == EC_ENOTFOUND) {
        *created = true;
        ec_err_clear(err);
        if ((st = ec_key_generate(alg, key, err)) == EC_OK &&
            (st = ec_key_write_private_pem(*key, &pem, err)) == EC_OK)
            st = agent_write_file(dir, name, pem.data, pem.len, 0600, err);
    }
    if (pem.data != NULL)
        ec_crypto_wipe(pem.data, pem.cap);
    ec_buf_release(&pem);
    return st;
}

enum ec_status agent_identity_load(const char *state_dir, struct agent_identity *id,
                                   struct ec_err *err)
{
    memset(id, 0, sizeof(*id));
    enum ec_status st = agent_mkdirs(state_dir, 0700, err);
    if (st != EC_OK)
        return st;
    bool created_sign = false, created_x = false;
    if ((st = load_or_create(state_dir, SIGN_KEY_FILE, EC_KEY_ED25519, &id->sign, &created_sign,
                             err)) != EC_OK ||
        (st = load_or_create(state_dir, X25519_KEY_FILE, EC_KEY_X25519, &id->x25519, &created_x,
                             err)) != EC_OK) {
        agent_identity_release(id);
        return st;
    }
    struct ec_buf pub;
    ec_buf_init(&pub, KEY_FILE_MAX);
    if ((st = ec_key_write_public_pem(id->sign, &pub, err)) != EC_OK) {
        ec_buf_release(&pub);
        agent_identity_release(id);
        return st;
    }
    id->public_pem = ec_buf_detach(&pub, NULL);
    uint8_t raw[EC_KEY_RAW_LEN], digest[EC_SHA256_LEN];
    ec_key_export_raw_public(id->x25519, raw);
    ec_b64_encode(id->x25519_b64, sizeof(id->x25519_b64), raw, sizeof(raw));
    ec_key_export_raw_public(id->sign, raw);
    ec_sha256(raw, sizeof(raw), digest);
    char hex[13];
    ec_hex_encode(hex, sizeof(hex), digest, 6);
    snprintf(id->default_id, sizeof(id->default_id), "agent-%s", hex);
    EC_INFO("agent identity", EC_LS("state_dir", state_dir), EC_LB("created", created_sign),
            EC_LS("key_fingerprint", hex));
    return EC_OK;
}

void agent_identity_release(struct agent_identity *id)
{
    ec_key_free(id->sign);
    ec_key_free(id->x25519);
    free(id->public_pem);
    memset(id, 0, sizeof(*id));
}
