/* The sandbox executor: names and defaults of modes and languages, and sandbox_run's outline
 * (subset check, spawn, result). Spawning and capture live in sandbox_exec.c. */
#include "agent/sandbox_int.h"

#include "common/ec_mem.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct name_entry {
    const char *name;
    int value;
};

static const struct name_entry mode_names[] = {
    { "bubblewrap", SANDBOX_BWRAP },
    { "bwrap", SANDBOX_BWRAP },
    { "docker", SANDBOX_DOCKER },
    { "none", SANDBOX_NONE },
};

static const struct name_entry language_names[] = {
    { "python", SANDBOX_PYTHON },         { "py", SANDBOX_PYTHON },
    { "javascript", SANDBOX_JAVASCRIPT }, { "js", SANDBOX_JAVASCRIPT },
    { "node", SANDBOX_JAVASCRIPT },
};

static int name_lookup(const struct name_entry *table, size_t n, const char *name)
{
    if (name == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (strcmp(table[i].name, name) == 0)
            return table[i].value;
    return -1;
}

int sandbox_mode_parse(const char *name)
{
    return name_lookup(mode_names, sizeof(mode_names) / sizeof(mode_names[0]), name);
}

const char *sandbox_mode_name(enum sandbox_mode mode)
{
    switch (mode) {
    case SANDBOX_BWRAP:
        return "bubblewrap";
    case SANDBOX_DOCKER:
        return "docker";
    case SANDBOX_NONE:
        return "none";
    }
    return "unknown";
}

int sandbox_language_parse(const char *name)
{
    return name_lookup(language_names, sizeof(language_names) / sizeof(language_names[0]), name);
}

const char *sandbox_language_name(enum sandbox_language lang)
{
    switch (lang) {
    case SANDBOX_PYTHON:
        return "python";
    case SANDBOX_JAVASCRIPT:
        return "javascript";
    }
    return "unknown";
}

void sandbox__limits_resolve(const struct sandbox_limits *in, struct sandbox_limits *out)
{
    static const struct sandbox_limits zero;
    if (in == NULL)
        in = &zero;
    *out = *in;
    if (out->wall_timeout_ms <= 0)
        out->wall_timeout_ms = SANDBOX_DEFAULT_TIMEOUT_MS;
    if (out->wall_timeout_ms > SANDBOX_MAX_TIMEOUT_MS)
        out->wall_timeout_ms = SANDBOX_MAX_TIMEOUT_MS;
    if (out->cpu_seconds <= 0)
        out->cpu_seconds = (out->wall_timeout_ms + 999) / 1000;
    if (out->memory_bytes == 0)
        out->memory_bytes = SANDBOX_DEFAULT_MEMORY;
    if (out->memory_bytes < (32u << 20))
        out->memory_bytes = 32u << 20; /* below this no interpreter starts */
    if (out->max_processes == 0)
        out->max_processes = SANDBOX_DEFAULT_PROCESSES;
    if (out->max_processes < 8)
        out->max_processes = 8; /* bwrap's two processes, the interpreter and its threads */
    if (out->max_file_bytes == 0)
        out->max_file_bytes = SANDBOX_DEFAULT_FILE_BYTES;
    if (out->max_output_bytes == 0)
        out->max_output_bytes = SANDBOX_DEFAULT_OUTPUT;
}

/* --- UTF-8 */

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, surrogates or values past
 * U+10FFFF), 0 when invalid. */
static size_t utf8_valid_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c >= 0x01 && c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

char *sandbox__utf8_sanitize(char *s, size_t len, size_t *out_len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, k;
    while (i < len && (k = utf8_valid_len(u + i, len - i)) > 0)
        i += k;
    if (i == len) {
        if (out_len != NULL)
            *out_len = len;
        return s;
    }
    char *clean = ec_xmalloc(len * 3 + 1);
    size_t o = i;
    memcpy(clean, s, i);
    while (i < len) {
        k = utf8_valid_len(u + i, len - i);
        if (k > 0) {
            memcpy(clean + o, s + i, k);
            o += k;
            i += k;
        } else {
            memcpy(clean + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    clean[o] = '\0';
    free(s);
    if (out_len != NULL)
        *out_len = o;
    return clean;
}

/* --- a run */

static void result_reject(struct sandbox_result *res, const char *reason)
{
    size_t n = strlen("outside_subset: ") + strlen(reason) + 1;
    res->stderr_text = ec_xmalloc(n);
    snprintf(res->stderr_text, n, "outside_subset: %s", reason);
    if (res->stdout_text == NULL)
        res->stdout_text = ec_xstrdup("");
    res->rejected = true;
    res->ok = false;
    res->exit_code = SANDBOX_EXIT_REJECTED;
}

/* The in-sandbox checker's verdict is the first line of stderr: removed, and a rejection
 * turned into the result's reason. */
static void apply_py_verdict(struct sandbox_result *res)
{
    static const char mark[] = SANDBOX_PYCHECK_MARK " ";
    char *s = res->stderr_text;
    if (s == NULL || strncmp(s, mark, sizeof(mark) - 1) != 0)
        return;
    char *eol = strchr(s, '\n');
    char *rest = eol != NULL ? eol + 1 : s + strlen(s);
    const char *verdict = s + sizeof(mark) - 1;
    if (strncmp(verdict, "reject: ", 8) == 0) {
        if (eol != NULL)
            *eol = '\0';
        char *reason = ec_xstrdup(verdict + 8);
        free(res->stderr_text);
        res->stderr_text = NULL;
        result_reject(res, reason);
        free(reason);
        res->stderr_truncated = false;
        return;
    }
    memmove(s, rest, strlen(rest) + 1);
}

static int code_memfd(const char *code, size_t len, struct ec_err *err)
{
    int fd = memfd_create("sandbox-code", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        ec_err_set(err, EC_EINTERNAL, "sandbox_unavailable", "cannot create a memfd: %s",
                   strerror(errno));
        return -1;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, code + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            ec_err_set(err, EC_EINTERNAL, "sandbox_unavailable", "cannot write the program: %s",
                       strerror(errno));
            close(fd);
            return -1;
        }
        off += (size_t)n;
    }
    /* Sealed: whoever ends up holding the descriptor reads exactly this program. */
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0 ||
        lseek(fd, 0, SEEK_SET) != 0) {
        ec_err_set(err, EC_EINTERNAL, "sandbox_unavailable", "cannot seal the program: %s",
                   strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP || flag == FTW_D)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

static void remove_tree(const char *dir)
{
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Mode none: a fresh host directory for the program, owned by the run's uid when there is
 * one. */
static enum ec_status none_work_dir(char *dir, size_t cap, const char *code, size_t len,
                                    const char *file, bool chown_to, uid_t uid, struct ec_err *err)
{
    const char *tmp = getenv("TMPDIR");
    if (chown_to || tmp == NULL || tmp[0] != '/')
        tmp = "/tmp";
    snprintf(dir, cap, "%s/edgecoder-sandbox-XXXXXX", tmp);
    if (mkdtemp(dir) == NULL)
        return ec_err_set(err, EC_EUNAVAIL, "sandbox_unavailable",
                          "cannot create a work dir under %s: %s", tmp, strerror(errno));
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    bool ok = fd >= 0;
    size_t off = 0;
    while (ok && off < len) {
        ssize_t n = write(fd, code + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        ok = n > 0;
        off += ok ? (size_t)n : 0;
    }
    if (fd >= 0)
        close(fd);
    if (ok && chown_to)
        ok = chown(dir, uid, uid) == 0;
    if (!ok) {
        remove_tree(dir);
        return ec_err_set(err, EC_EUNAVAIL, "sandbox_unavailable",
                          "cannot prepare the work dir %s: %s", dir, strerror(errno));
    }
    return EC_OK;
}

static void push_env_from_host(struct sandbox__argv *env, const char *name)
{
    const char *v = getenv(name);
    if (v != NULL)
        sandbox__argv_pushf(env, "%s=%s", name, v);
}

enum ec_status sandbox_run(const struct sandbox_opts *opts, enum sandbox_language lang,
                           const char *code, size_t code_len, struct sandbox_result *result,
                           struct ec_err *err)
{
    if (opts == NULL || result == NULL || (code == NULL && code_len > 0))
        return ec_err_set(err, EC_EINVAL, NULL, "sandbox_run needs options, code and a result");
    if (lang != SANDBOX_PYTHON && lang != SANDBOX_JAVASCRIPT)
        return ec_err_set(err, EC_EINVAL, NULL, "unknown sandbox language %d", (int)lang);
    if (opts->mode != SANDBOX_BWRAP && opts->mode != SANDBOX_DOCKER && opts->mode != SANDBOX_NONE)
        return ec_err_set(err, EC_EINVAL, NULL, "unknown sandbox mode %d", (int)opts->mode);
    if (code == NULL)
        code = "";

    struct sandbox_limits lim;
    sandbox__limits_resolve(&opts->limits, &lim);
    struct sandbox_result res = { 0 };
    char reason[256];
    bool checked = !opts->skip_subset_check;
    if (checked ? !sandbox__subset_check(lang, code, code_len, reason, sizeof(reason))
                : code_len > SANDBOX_MAX_CODE_BYTES) {
        if (!checked)
            snprintf(reason, sizeof(reason), "the program is %zu bytes, over the %u-byte limit",
                     code_len, SANDBOX_MAX_CODE_BYTES);
        result_reject(&res, reason);
        *result = res;
        return EC_OK;
    }

    const char *ext = lang == SANDBOX_PYTHON ? "main.py" : "main.js";
    const char *interp = opts->mode == SANDBOX_DOCKER
                             ? (lang == SANDBOX_PYTHON ? "python3" : "node")
                             : sandbox__interpreter_path(lang);
    if (interp == NULL)
        return ec_err_set(err, EC_EUNAVAIL, "sandbox_unavailable",
                          "no %s interpreter under /usr (install %s)", sandbox_language_name(lang),
                          lang == SANDBOX_PYTHON ? "python3" : "nodejs");
    bool root = geteuid() == 0;
    struct sandbox__argv argv, env;
    sandbox__argv_init(&argv);
    sandbox__argv_init(&env);
    struct sandbox__cmd cmd = { .stdin_fd = -1, .code_fd = -1, .lim = &lim };
    int slot_sock = -1, memfd = -1;
    char work_dir[PATH_MAX] = "";
    char docker_name[64];
    char script[PATH_MAX + 16];
    enum ec_status st = EC_OK;

    if (root && opts->mode != SANDBOX_DOCKER) {
        st = sandbox__uid_acquire(&cmd.uid, &slot_sock, err);
        if (st != EC_OK)
            goto done;
        cmd.drop_uid = true;
    }
    switch (opts->mode) {
    case SANDBOX_BWRAP: {
        const char *bwrap = sandbox__program_path("bwrap");
        if (bwrap == NULL) {
            st = ec_err_set(err, EC_EUNAVAIL, "sandbox_unavailable",
                            "bubblewrap (bwrap) is not installed");
            goto done;
        }
        if ((memfd = code_memfd(code, code_len, err)) < 0) {
            st = EC_EINTERNAL;
            goto done;
        }
        sandbox__bwrap_args(&argv, bwrap, lang, &lim);
        sandbox__argv_push(&argv, interp);
        snprintf(script, sizeof(script), "%s/%s", SANDBOX_WORK_DIR, ext);
        sandbox__interpreter_args(&argv, lang, &lim, checked && lang == SANDBOX_PYTHON, script);
        sandbox__argv_push(&env, "PATH=/usr/bin:/bin");
        cmd.code_fd = memfd;
        cmd.bwrap_status = true;
        cmd.rlimits = true;
        break;
    }
    case SANDBOX_NONE:
        st = none_work_dir(work_dir, sizeof(work_dir), code, code_len, ext, cmd.drop_uid, cmd.uid,
                           err);
        if (st != EC_OK)
            goto done;
        sandbox__argv_push(&argv, interp);
        snprintf(script, sizeof(script), "%s/%s", work_dir, ext);
        sandbox__interpreter_args(&argv, lang, &lim, checked && lang == SANDBOX_PYTHON, script);
        sandbox__argv_push(&env, "PATH=/usr/bin:/bin");
        sandbox__argv_pushf(&env, "HOME=%s", work_dir);
        sandbox__argv_pushf(&env, "TMPDIR=%s", work_dir);
        sandbox__argv_push(&env, "LANG=C.UTF-8");
        cmd.cwd = work_dir;
        cmd.rlimits = true;
        break;
    case SANDBOX_DOCKER: {
        static atomic_uint docker_seq;
        const char *docker = sandbox__program_path("docker");
        if (docker == NULL) {
            st = ec_err_set(err, EC_EUNAVAIL, "sandbox_unavailable", "docker is not installed");
            goto done;
        }
        if ((memfd = code_memfd(code, code_len, err)) < 0) {
            st = EC_EINTERNAL;
            goto done;
        }
        snprintf(docker_name, sizeof(docker_name), "edgecoder-sandbox-%ld-%u", (long)getpid(),
                 atomic_fetch_add(&docker_seq, 1));
        sandbox__docker_args(
            &argv, docker, docker_name,
            opts->docker_image != NULL ? opts->docker_image : SANDBOX_DEFAULT_IMAGE, &lim);
        sandbox__argv_push(&argv, interp);
        sandbox__interpreter_args(&argv, lang, &lim, checked && lang == SANDBOX_PYTHON, "-");
        sandbox__argv_push(&env, "PATH=/usr/local/bin:/usr/bin:/bin");
        static const char *const pass[] = {
            "HOME",          "DOCKER_HOST",       "DOCKER_CONTEXT",
            "DOCKER_CONFIG", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"
        };
        for (size_t i = 0; i < sizeof(pass) / sizeof(pass[0]); i++)
            push_env_from_host(&env, pass[i]);
        cmd.stdin_fd = memfd;
        cmd.docker_name = docker_name;
        break;
    }
    }
    cmd.argv = argv.v;
    cmd.envp = env.v;

    struct sandbox__outcome out = { .result = &res };
    st = sandbox__exec(&cmd, &out, err);
    if (st != EC_OK)
        goto done;
    if (opts->mode == SANDBOX_BWRAP && !out.started && !out.timed_out) {
        st = ec_err_set(err, EC_EUNAVAIL, "sandbox_unavailable",
                        "bubblewrap could not start the sandbox (exit %d): %.160s", out.exit_code,
                        res.stderr_text);
        sandbox_result_release(&res);
        goto done;
    }
    if (opts->mode == SANDBOX_DOCKER && out.exit_code == 125 && !out.timed_out) {
        st = ec_err_set(err, EC_EUNAVAIL, "sandbox_unavailable",
                        "docker could not start the container: %.160s", res.stderr_text);
        sandbox_result_release(&res);
        goto done;
    }
    res.exit_code = out.exit_code;
    res.timed_out = out.timed_out;
    res.stdout_text = sandbox__utf8_sanitize(res.stdout_text, out.stdout_len, NULL);
    res.stderr_text = sandbox__utf8_sanitize(res.stderr_text, out.stderr_len, NULL);
    if (checked && lang == SANDBOX_PYTHON)
        apply_py_verdict(&res);
    res.ok = res.exit_code == 0 && !res.timed_out && !res.rejected;
    *result = res;
done:
    if (work_dir[0] != '\0')
        remove_tree(work_dir);
    if (memfd >= 0)
        close(memfd);
    sandbox__uid_release(slot_sock);
    sandbox__argv_release(&argv);
    sandbox__argv_release(&env);
    return st;
}

/* Runs argv (a host tool such as docker) with a short timeout; returns its exit code and
 * its first line of output (stdout, else stderr) in line. */
static enum ec_status probe_tool(char *const *argv, char *line, size_t cap, int *exit_code,
                                 struct ec_err *err)
{
    struct sandbox_limits lim;
    struct sandbox_limits want = { .wall_timeout_ms = 15000, .max_output_bytes = 4096 };
    sandbox__limits_resolve(&want, &lim);
    struct sandbox__argv env;
    sandbox__argv_init(&env);
    sandbox__argv_push(&env, "PATH=/usr/local/bin:/usr/bin:/bin");
    static const char *const pass[] = { "HOME",          "DOCKER_HOST",       "DOCKER_CONTEXT",
                                        "DOCKER_CONFIG", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH" };
    for (size_t i = 0; i < sizeof(pass) / sizeof(pass[0]); i++)
        push_env_from_host(&env, pass[i]);
    struct sandbox__cmd cmd = {
        .argv = argv, .envp = env.v, .stdin_fd = -1, .code_fd = -1, .lim = &lim
    };
    struct sandbox_result res = { 0 };
    struct sandbox__outcome out = { .result = &res };
    enum ec_status st = sandbox__exec(&cmd, &out, err);
    sandbox__argv_release(&env);
    if (st != EC_OK)
        return st;
    const char *text =
        res.stdout_text[0] != '\0' && out.exit_code == 0 ? res.stdout_text : res.stderr_text;
    snprintf(line, cap, "%s", text);
    line[strcspn(line, "\n")] = '\0';
    *exit_code = out.timed_out ? SANDBOX_EXIT_TIMEOUT : out.exit_code;
    sandbox_result_release(&res);
    return EC_OK;
}

static enum ec_status probe_docker(const struct sandbox_opts *opts, struct ec_err *err)
{
    const char *docker = sandbox__program_path("docker");
    if (docker == NULL)
        return ec_err_set(err, EC_EUNAVAIL, "sandbox_unavailable",
                          "docker is not installed (no docker under /usr/bin or /usr/local/bin)");
    char line[512];
    int code = 0;
    char *const info[] = { (char *)docker, (char *)"info", (char *)"--format",
                           (char *)"{{.ServerVersion}}", NULL };
    enum ec_status st = probe_tool(info, line, sizeof(line), &code, err);
    if (st != EC_OK)
        return st;
    if (code != 0 || line[0] == '\0')
        return ec_err_set(err, EC_EUNAVAIL, "sandbox_unavailable",
                          "the docker daemon is not reachable: %s",
                          line[0] != '\0' ? line : "docker info failed");
    const char *image = opts->docker_image != NULL ? opts->docker_image : SANDBOX_DEFAULT_IMAGE;
    char *const inspect[] = { (char *)docker,
                              (char *)"image",
                              (char *)"inspect",
                              (char *)"--format",
                              (char *)"{{.Id}}",
                              (char *)image,
                              NULL };
    st = probe_tool(inspect, line, sizeof(line), &code, err);
    if (st != EC_OK)
        return st;
    if (code != 0)
        return ec_err_set(err, EC_EUNAVAIL, "sandbox_unavailable",
                          "docker image \"%s\" is not present (docker pull %s)", image, image);
    return EC_OK;
}

/* A trial run of each language: proves the namespaces, binds, uid drop and interpreters. */
static enum ec_status probe_trial(const struct sandbox_opts *opts, struct ec_err *err)
{
    static const struct {
        enum sandbox_language lang;
        const char *code;
    } trials[] = {
        { SANDBOX_PYTHON, "print(40 + 2)\n" },
        { SANDBOX_JAVASCRIPT, "console.log(40 + 2);\n" },
    };
    struct sandbox_opts trial_opts = *opts;
    trial_opts.limits.wall_timeout_ms = 20000;
    for (size_t i = 0; i < sizeof(trials) / sizeof(trials[0]); i++) {
        struct sandbox_result res = { 0 };
        enum ec_status st = sandbox_run(&trial_opts, trials[i].lang, trials[i].code,
                                        strlen(trials[i].code), &res, err);
        if (st != EC_OK)
            return st;
        bool good = res.ok && strcmp(res.stdout_text, "42\n") == 0;
        if (!good) {
            ec_err_set(err, EC_EUNAVAIL, "sandbox_unavailable",
                       "a trial %s program failed in mode %s (exit %d%s): %.160s",
                       sandbox_language_name(trials[i].lang), sandbox_mode_name(opts->mode),
                       res.exit_code, res.timed_out ? ", timed out" : "", res.stderr_text);
            sandbox_result_release(&res);
            return EC_EUNAVAIL;
        }
        sandbox_result_release(&res);
    }
    return EC_OK;
}

enum ec_status sandbox_probe(const struct sandbox_opts *opts, struct ec_err *err)
{
    if (opts == NULL)
        return ec_err_set(err, EC_EINVAL, NULL, "sandbox_probe needs options");
    switch (opts->mode) {
    case SANDBOX_DOCKER: {
        enum ec_status st = probe_docker(opts, err);
        return st != EC_OK ? st : probe_trial(opts, err);
    }
    case SANDBOX_BWRAP:
        if (sandbox__program_path("bwrap") == NULL)
            return ec_err_set(err, EC_EUNAVAIL, "sandbox_unavailable",
                              "bubblewrap (bwrap) is not installed");
        /* fall through */
    case SANDBOX_NONE:
        for (int lang = SANDBOX_PYTHON; lang <= SANDBOX_JAVASCRIPT; lang++)
            if (sandbox__interpreter_path((enum sandbox_language)lang) == NULL)
                return ec_err_set(err, EC_EUNAVAIL, "sandbox_unavailable",
                                  "no %s interpreter under /usr (install %s)",
                                  sandbox_language_name((enum sandbox_language)lang),
                                  lang == SANDBOX_PYTHON ? "python3" : "nodejs");
        return probe_trial(opts, err);
    }
    return ec_err_set(err, EC_EINVAL, NULL, "unknown sandbox mode %d", (int)opts->mode);
}

void sandbox_result_release(struct sandbox_result *result)
{
    if (result == NULL)
        return;
    free(result->stdout_text);
    free(result->stderr_text);
    result->stdout_text = NULL;
    result->stderr_text = NULL;
}
