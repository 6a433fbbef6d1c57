/* Internals of the sandbox executor shared between its files (sandbox*.c) and its unit tests:
 * limit defaults, the subset checks, the command lines of each mode and the process runner. */
#ifndef EC_AGENT_SANDBOX_INT_H
#define EC_AGENT_SANDBOX_INT_H

#include "agent/sandbox.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SANDBOX_DEFAULT_TIMEOUT_MS 10000
#define SANDBOX_DEFAULT_MEMORY     (256u << 20)
#define SANDBOX_DEFAULT_PROCESSES  64
#define SANDBOX_DEFAULT_FILE_BYTES (16u << 20)
#define SANDBOX_DEFAULT_OUTPUT     (64u << 10)
#define SANDBOX_MAX_CODE_BYTES     (1u << 20)
#define SANDBOX_MAX_TIMEOUT_MS     (3600 * 1000)
/* Exit code of a program the subset check refused (the shell's "cannot execute"). */
#define SANDBOX_EXIT_REJECTED 126
#define SANDBOX_EXIT_TIMEOUT  124

/* Sandboxed programs run as uid/gid SANDBOX_UID_BASE + slot when the caller is root, one slot
 * per concurrent run (held through an abstract unix socket, so across processes too), so that
 * RLIMIT_NPROC applies and the run's processes can be swept by uid. */
#define SANDBOX_UID_BASE  2000000000u
#define SANDBOX_UID_SLOTS 256u

/* Applies the documented defaults to every zero field and clamps the rest to sane ranges. */
void sandbox__limits_resolve(const struct sandbox_limits *in, struct sandbox_limits *out);

/* --- subset checks (sandbox_subset.c): defence in depth, not the boundary. Each returns true
 * when the code passes; otherwise false with a one-line reason (line numbers 1-based). */
bool sandbox__denylist_scan(enum sandbox_language lang, const char *code, size_t len, char *reason,
                            size_t reason_cap);
/* JavaScript's stand-in for the original's acorn allow-list: identifiers and keywords outside
 * strings, comments and regular expressions, checked against the blocked lists. */
bool sandbox__js_token_check(const char *code, size_t len, char *reason, size_t reason_cap);
/* What runs on the host before any process starts: size, NUL bytes, the deny-list and, for
 * JavaScript, the token check. Python's AST allow-list runs inside the sandbox. */
bool sandbox__subset_check(enum sandbox_language lang, const char *code, size_t len, char *reason,
                           size_t reason_cap);
/* The Python wrapper run inside the sandbox: `python3 -I -S -B -c <this> FILE|-`. It checks the
 * program with the ast allow-list, writes SANDBOX_PYCHECK_MARK " ok" or " reject: <reason>" as
 * the first line of stderr, then execs a fresh interpreter on the program (or exits 126). */
extern const char sandbox__py_checker[];
#define SANDBOX_PYCHECK_MARK "edgecoder-subset-check:"

/* --- command lines (sandbox_argv.c) */
struct sandbox__argv {
    char **v; /* NULL-terminated; each string owned */
    size_t n;
    size_t cap;
};
void sandbox__argv_init(struct sandbox__argv *a);
void sandbox__argv_push(struct sandbox__argv *a, const char *s);
void sandbox__argv_pushf(struct sandbox__argv *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sandbox__argv_release(struct sandbox__argv *a);

/* Absolute path of an installed program (python3, node, bwrap, docker) or NULL. The
 * interpreters are looked up under /usr only: that is what the sandbox binds. */
const char *sandbox__interpreter_path(enum sandbox_language lang);
const char *sandbox__program_path(const char *name);

/* What the interpreter is told, after its path: the same in every mode, script last. */
void sandbox__interpreter_args(struct sandbox__argv *a, enum sandbox_language lang,
                               const struct sandbox_limits *lim, bool subset_check,
                               const char *script);
/* bwrap's arguments up to and including "--"; the code is read from fd 3 into
 * /sandbox/main.<ext> and the status JSON goes to fd 4. */
void sandbox__bwrap_args(struct sandbox__argv *a, const char *bwrap, enum sandbox_language lang,
                         const struct sandbox_limits *lim);
/* docker run's arguments up to and including the image; the code arrives on stdin. */
void sandbox__docker_args(struct sandbox__argv *a, const char *docker, const char *name,
                          const char *image, const struct sandbox_limits *lim);
#define SANDBOX_WORK_DIR      "/sandbox"
#define SANDBOX_DEFAULT_IMAGE "node:20-bookworm"
#define SANDBOX_CODE_FD       3
#define SANDBOX_STATUS_FD     4

/* --- the process runner (sandbox_exec.c) */
struct sandbox__cmd {
    char *const *argv; /* argv[0] is an absolute path */
    char *const *envp;
    int stdin_fd;      /* -1: /dev/null */
    int code_fd;       /* -1 or placed at SANDBOX_CODE_FD */
    bool bwrap_status; /* a pipe at SANDBOX_STATUS_FD for bwrap's --json-status-fd */
    bool drop_uid;     /* run as uid/gid `uid` (the caller is root) */
    uid_t uid;
    bool rlimits;            /* apply lim's rlimits in the child (not for the docker client) */
    const char *cwd;         /* NULL: inherit */
    const char *docker_name; /* docker mode: the container to `docker kill` on timeout */
    const struct sandbox_limits *lim;
};

struct sandbox__outcome {
    int exit_code;
    bool timed_out;
    bool started;      /* bwrap reported the child's pid (bwrap_status only) */
    size_t stdout_len; /* of result->stdout_text, which may hold NUL bytes until sanitized */
    size_t stderr_len;
    struct sandbox_result *result;
};

/* Runs cmd to completion or the wall timeout, captures stdout and stderr up to the cap, kills
 * whatever is left of the tree, and fills result's streams, flags, exit code and duration. */
enum ec_status sandbox__exec(const struct sandbox__cmd *cmd, struct sandbox__outcome *out,
                             struct ec_err *err);

/* A uid slot for one run (root only); *sock is held until sandbox__uid_release. */
enum ec_status sandbox__uid_acquire(uid_t *uid, int *sock, struct ec_err *err);
void sandbox__uid_release(int sock);

/* Replaces invalid UTF-8 and NUL bytes by U+FFFD in place (may grow the string); returns the
 * new string (the old one is freed or reused). */
char *sandbox__utf8_sanitize(char *s, size_t len, size_t *out_len);

#endif
