/* The sandbox: runs one piece of untrusted code (Python or JavaScript) and reports what it did.
 * This header is the contract between the agent runtime and the executor behind it.
 *
 * Modes: bubblewrap (the default and the security boundary: fresh user, pid, net, ipc and uts
 * namespaces, read-only system binds, a private tmpfs work dir, nothing of the user's files),
 * docker (--network=none --read-only --memory --cpus --pids-limit), none (the host, only when set
 * explicitly). Every mode applies the same limits; the wall-clock timeout kills the whole process
 * tree and reports exit code 124 with timed_out set. */
#ifndef EC_AGENT_SANDBOX_H
#define EC_AGENT_SANDBOX_H

#include "common/ec_status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sandbox_mode {
    SANDBOX_BWRAP = 0,
    SANDBOX_DOCKER,
    SANDBOX_NONE,
};

enum sandbox_language {
    SANDBOX_PYTHON = 0,
    SANDBOX_JAVASCRIPT,
};

/* "bubblewrap"|"docker"|"none" (also "bwrap"); -1 when unknown. */
int sandbox_mode_parse(const char *name);
const char *sandbox_mode_name(enum sandbox_mode mode);
/* "python"|"javascript" (also "py", "js", "node"); -1 when unknown. */
int sandbox_language_parse(const char *name);
const char *sandbox_language_name(enum sandbox_language lang);

struct sandbox_limits {
    int64_t wall_timeout_ms; /* 0: 10000; the whole tree is killed at this point, exit 124 */
    int64_t cpu_seconds;     /* RLIMIT_CPU; 0: wall timeout rounded up */
    uint64_t memory_bytes;   /* RLIMIT_AS (docker: --memory); 0: 256 MiB */
    uint64_t max_processes;  /* RLIMIT_NPROC inside the user namespace (docker: --pids-limit);
                                0: 64 */
    uint64_t max_file_bytes; /* RLIMIT_FSIZE; 0: 16 MiB */
    size_t max_output_bytes; /* stdout and stderr each kept up to this; 0: 64 KiB */
};

struct sandbox_opts {
    enum sandbox_mode mode;
    struct sandbox_limits limits;
    const char *docker_image; /* docker mode; NULL: a Debian image with python3 and node */
    bool skip_subset_check;   /* run code the subset check would refuse: for tests and
                                 benchmarks of the boundary itself, never for tenant work */
};

struct sandbox_result {
    int exit_code;     /* the program's exit status; 124 on timeout; 128+N when killed by N */
    bool timed_out;    /* the wall-clock timeout fired */
    bool ok;           /* exit_code == 0 and not timed out and not rejected */
    bool rejected;     /* the subset check refused the code before running it */
    char *stdout_text; /* owned, NUL-terminated, capped (truncated flagged below); valid
                          UTF-8: invalid bytes and NULs become U+FFFD */
    char *stderr_text; /* owned; when rejected, why */
    bool stdout_truncated;
    bool stderr_truncated;
    int64_t duration_ms; /* wall time from spawn to reap */
};

/* Checks that the sandbox can run at all in this mode (bwrap present and user namespaces allowed;
 * docker daemon reachable; interpreters found). err says what is missing. */
enum ec_status sandbox_probe(const struct sandbox_opts *opts, struct ec_err *err);

/* Runs code written in lang. Blocks until the program ends or is killed; safe to call from
 * several threads at once (each run has its own work dir and process tree). A result is filled
 * whenever EC_OK is returned, including failing programs, timeouts and rejections; anything else
 * means the sandbox itself could not run (err says why, result untouched). */
enum ec_status sandbox_run(const struct sandbox_opts *opts, enum sandbox_language lang,
                           const char *code, size_t code_len, struct sandbox_result *result,
                           struct ec_err *err);

/* Frees the result's strings; the struct may be reused. */
void sandbox_result_release(struct sandbox_result *result);

#endif
