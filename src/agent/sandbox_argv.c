/* The command lines of the sandbox: which interpreter with which flags, and what bubblewrap and
 * docker are told. Everything here is decided before the fork; the child only execs. */
#include "agent/sandbox_int.h"

#include "common/ec_mem.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void sandbox__argv_init(struct sandbox__argv *a)
{
    a->cap = 32;
    a->n = 0;
    a->v = ec_xcalloc(a->cap, sizeof(char *));
}

void sandbox__argv_push(struct sandbox__argv *a, const char *s)
{
    if (a->n + 2 > a->cap) {
        a->cap *= 2;
        a->v = ec_xrealloc(a->v, a->cap * sizeof(char *));
    }
    a->v[a->n++] = ec_xstrdup(s);
    a->v[a->n] = NULL;
}

void sandbox__argv_pushf(struct sandbox__argv *a, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    EC_ASSERT(n >= 0 && (size_t)n < sizeof(buf));
    sandbox__argv_push(a, buf);
}

void sandbox__argv_release(struct sandbox__argv *a)
{
    if (a->v != NULL)
        for (size_t i = 0; i < a->n; i++)
            free(a->v[i]);
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

static bool is_executable_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111) != 0;
}

static const char *first_executable(const char *const *candidates)
{
    for (size_t i = 0; candidates[i] != NULL; i++)
        if (is_executable_file(candidates[i]))
            return candidates[i];
    return NULL;
}

const char *sandbox__interpreter_path(enum sandbox_language lang)
{
    static const char *const python[] = { "/usr/bin/python3", "/usr/local/bin/python3", NULL };
    static const char *const node[] = { "/usr/bin/node", "/usr/bin/nodejs", "/usr/local/bin/node",
                                        NULL };
    return first_executable(lang == SANDBOX_PYTHON ? python : node);
}

const char *sandbox__program_path(const char *name)
{
    static const char *const bwrap[] = { "/usr/bin/bwrap", "/usr/local/bin/bwrap", "/bin/bwrap",
                                         NULL };
    static const char *const docker[] = { "/usr/bin/docker", "/usr/local/bin/docker", "/bin/docker",
                                          NULL };
    if (strcmp(name, "bwrap") == 0)
        return first_executable(bwrap);
    if (strcmp(name, "docker") == 0)
        return first_executable(docker);
    return NULL;
}

void sandbox__interpreter_args(struct sandbox__argv *a, enum sandbox_language lang,
                               const struct sandbox_limits *lim, bool subset_check,
                               const char *script)
{
    if (lang == SANDBOX_PYTHON) {
        /* -I: no user site, no PYTHON* env, no script dir on sys.path; -S: no site module;
         * -B: no .pyc written. */
        sandbox__argv_push(a, "-I");
        sandbox__argv_push(a, "-S");
        sandbox__argv_push(a, "-B");
        if (subset_check) {
            sandbox__argv_push(a, "-c");
            sandbox__argv_push(a, sandbox__py_checker);
        }
        sandbox__argv_push(a, script);
        return;
    }
    /* --jitless: V8 otherwise reserves about 0.5 GiB of address space for JIT code up front and
     * cannot start under a 256 MiB RLIMIT_AS; it also removes the JIT from the attack surface.
     * The heap limit sits under the address-space limit so a hog gets V8's clean OOM. */
    uint64_t heap_mb = lim->memory_bytes / 2 / (1u << 20);
    if (heap_mb < 16)
        heap_mb = 16;
    sandbox__argv_push(a, "--jitless");
    sandbox__argv_push(a, "--no-expose-wasm");
    sandbox__argv_push(a, "--disallow-code-generation-from-strings");
    sandbox__argv_pushf(a, "--max-old-space-size=%llu", (unsigned long long)heap_mb);
    sandbox__argv_push(a, script);
}

/* The top-level system paths the interpreters need, bound read-only (or recreated as the same
 * symlinks on merged-/usr systems). Nothing else of the host is visible. */
static void bwrap_system_binds(struct sandbox__argv *a)
{
    static const char *const top[] = { "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32" };
    sandbox__argv_push(a, "--ro-bind");
    sandbox__argv_push(a, "/usr");
    sandbox__argv_push(a, "/usr");
    for (size_t i = 0; i < sizeof(top) / sizeof(top[0]); i++) {
        struct stat st;
        if (lstat(top[i], &st) != 0)
            continue;
        if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            ssize_t n = readlink(top[i], target, sizeof(target) - 1);
            if (n <= 0)
                continue;
            target[n] = '\0';
            sandbox__argv_push(a, "--symlink");
            sandbox__argv_push(a, target);
            sandbox__argv_push(a, top[i]);
        } else if (S_ISDIR(st.st_mode)) {
            sandbox__argv_push(a, "--ro-bind");
            sandbox__argv_push(a, top[i]);
            sandbox__argv_push(a, top[i]);
        }
    }
    static const char *const etc[] = { "/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf",
                                       "/etc/ld.so.conf.d", "/etc/localtime" };
    for (size_t i = 0; i < sizeof(etc) / sizeof(etc[0]); i++) {
        sandbox__argv_push(a, "--ro-bind-try");
        sandbox__argv_push(a, etc[i]);
        sandbox__argv_push(a, etc[i]);
    }
}

static uint64_t work_dir_bytes(const struct sandbox_limits *lim)
{
    return lim->max_file_bytes * 4 + (1u << 20);
}

/* --as-pid-1: the program is the pid namespace's init, so bwrap itself waits for (and reaps)
 * it; with bwrap's own init in between, bwrap exits on an event and leaves that init to the
 * host's pid 1, whose reaping can lag, as a zombie of the run's uid. */
void sandbox__bwrap_args(struct sandbox__argv *a, const char *bwrap, enum sandbox_language lang,
                         const struct sandbox_limits *lim)
{
    static const char *const fixed[] = {
        "--unshare-user",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--disable-userns",
        "--die-with-parent",
        "--as-pid-1",
        "--new-session",
        "--clearenv",
        "--hostname",
        "sandbox",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
    };
    sandbox__argv_push(a, bwrap);
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        sandbox__argv_push(a, fixed[i]);
    bwrap_system_binds(a);
    sandbox__argv_push(a, "--size");
    sandbox__argv_pushf(a, "%llu", (unsigned long long)work_dir_bytes(lim));
    sandbox__argv_push(a, "--tmpfs");
    sandbox__argv_push(a, SANDBOX_WORK_DIR);
    sandbox__argv_push(a, "--perms");
    sandbox__argv_push(a, "0444");
    sandbox__argv_push(a, "--ro-bind-data");
    sandbox__argv_pushf(a, "%d", SANDBOX_CODE_FD);
    sandbox__argv_push(a, lang == SANDBOX_PYTHON ? SANDBOX_WORK_DIR "/main.py"
                                                 : SANDBOX_WORK_DIR "/main.js");
    /* /dev is a private tmpfs too, but unbounded: read-only (its devices still work). */
    sandbox__argv_push(a, "--remount-ro");
    sandbox__argv_push(a, "/dev");
    sandbox__argv_push(a, "--remount-ro");
    sandbox__argv_push(a, "/");
    sandbox__argv_push(a, "--chdir");
    sandbox__argv_push(a, SANDBOX_WORK_DIR);
    static const char *const env[] = { "PATH",   "/usr/bin:/bin",  "HOME", SANDBOX_WORK_DIR,
                                       "TMPDIR", SANDBOX_WORK_DIR, "LANG", "C.UTF-8" };
    for (size_t i = 0; i < sizeof(env) / sizeof(env[0]); i += 2) {
        sandbox__argv_push(a, "--setenv");
        sandbox__argv_push(a, env[i]);
        sandbox__argv_push(a, env[i + 1]);
    }
    sandbox__argv_push(a, "--json-status-fd");
    sandbox__argv_pushf(a, "%d", SANDBOX_STATUS_FD);
    sandbox__argv_push(a, "--");
}

void sandbox__docker_args(struct sandbox__argv *a, const char *docker, const char *name,
                          const char *image, const struct sandbox_limits *lim)
{
    unsigned long long cpu = (unsigned long long)lim->cpu_seconds;
    sandbox__argv_push(a, docker);
    sandbox__argv_push(a, "run");
    sandbox__argv_push(a, "--rm");
    sandbox__argv_push(a, "-i");
    sandbox__argv_pushf(a, "--name=%s", name);
    sandbox__argv_push(a, "--network=none");
    sandbox__argv_push(a, "--read-only");
    sandbox__argv_pushf(a, "--memory=%llub", (unsigned long long)lim->memory_bytes);
    sandbox__argv_pushf(a, "--memory-swap=%llub", (unsigned long long)lim->memory_bytes);
    sandbox__argv_push(a, "--cpus=1");
    sandbox__argv_pushf(a, "--pids-limit=%llu", (unsigned long long)lim->max_processes);
    sandbox__argv_pushf(a, "--ulimit=cpu=%llu:%llu", cpu, cpu + 1);
    sandbox__argv_pushf(a, "--ulimit=fsize=%llu:%llu", (unsigned long long)lim->max_file_bytes,
                        (unsigned long long)lim->max_file_bytes);
    sandbox__argv_push(a, "--ulimit=nofile=256:256");
    sandbox__argv_push(a, "--ulimit=core=0:0");
    sandbox__argv_push(a, "--cap-drop=ALL");
    sandbox__argv_push(a, "--security-opt=no-new-privileges");
    sandbox__argv_push(a, "--user=65534:65534");
    sandbox__argv_pushf(a, "--tmpfs=%s:rw,nosuid,nodev,size=%llu,mode=1777", SANDBOX_WORK_DIR,
                        (unsigned long long)work_dir_bytes(lim));
    sandbox__argv_pushf(a, "--workdir=%s", SANDBOX_WORK_DIR);
    sandbox__argv_pushf(a, "--env=HOME=%s", SANDBOX_WORK_DIR);
    sandbox__argv_pushf(a, "--env=TMPDIR=%s", SANDBOX_WORK_DIR);
    sandbox__argv_push(a, "--env=LANG=C.UTF-8");
    sandbox__argv_push(a, image);
}
