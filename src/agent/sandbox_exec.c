/* The sandbox's process runner: fork, then in the child only async-signal-safe calls (fds,
 * rlimits, the uid drop) before exec; in the parent, capped capture of stdout and stderr with
 * poll, the wall-clock timeout, and the sweep that leaves nothing of the run alive. */
#include "agent/sandbox_int.h"

#include "common/ec_buf.h"
#include "common/ec_mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* After the program ends, how long to keep reading output from anything still holding the
 * pipes (only possible in mode none without root, where a setsid'd process can escape). */
#define DRAIN_GRACE_MS 500

/* --- uid slots */

enum ec_status sandbox__uid_acquire(uid_t *uid, int *sock, struct ec_err *err)
{
    static atomic_uint next_slot;
    unsigned start = atomic_fetch_add(&next_slot, 1);
    for (unsigned i = 0; i < SANDBOX_UID_SLOTS; i++) {
        unsigned slot = (start + i) % SANDBOX_UID_SLOTS;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return ec_err_set(err, EC_EINTERNAL, "sandbox_unavailable",
                              "cannot create a socket: %s", strerror(errno));
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        /* Abstract name: held while the socket is open, released when this process dies. */
        int n = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "edgecoder-sandbox-uid-%u",
                         SANDBOX_UID_BASE + slot);
        socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
        if (bind(fd, (struct sockaddr *)&sa, len) == 0) {
            *uid = (uid_t)(SANDBOX_UID_BASE + slot);
            *sock = fd;
            return EC_OK;
        }
        close(fd);
    }
    return ec_err_set(err, EC_EUNAVAIL, "sandbox_busy", "all %u sandbox uids are in use",
                      SANDBOX_UID_SLOTS);
}

void sandbox__uid_release(int sock)
{
    if (sock >= 0)
        close(sock);
}

/* Processes of the calling user: without root, RLIMIT_NPROC counts all of them, so the
 * sandbox's allowance is added on top of what already runs. */
static uint64_t count_own_processes(void)
{
    uid_t me = getuid();
    uint64_t count = 0;
    DIR *d = opendir("/proc");
    if (d == NULL)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, 0) == 0 && st.st_uid == me)
            count++;
    }
    closedir(d);
    return count;
}

/* --- the child: only async-signal-safe calls from fork to exec */

struct child_plan {
    int src[5]; /* fds to place at 0..4; -1: none */
    struct rlimit rl[6];
    int rl_res[6];
    int nrl;
    bool drop;
    uid_t uid;
    pid_t parent;
    const char *cwd;
    const char *path;
    char *const *argv;
    char *const *envp;
};

static void child_fail(const char *what)
{
    /* stderr is already the capture pipe here */
    ssize_t unused = write(2, "sandbox: cannot ", 16);
    unused = write(2, what, strlen(what));
    unused = write(2, "\n", 1);
    (void)unused;
    _exit(127);
}

static _Noreturn void child_exec(const struct child_plan *p)
{
    /* Ignored signals and the blocked mask survive exec; the program gets defaults. */
    struct sigaction dfl = { .sa_handler = SIG_DFL };
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    setpgid(0, 0);

    int high[5];
    for (int i = 0; i < 5; i++) {
        high[i] = -1;
        if (p->src[i] >= 0 && (high[i] = fcntl(p->src[i], F_DUPFD, 16)) < 0)
            child_fail("duplicate a descriptor");
    }
    int top = 0;
    for (int i = 0; i < 5; i++) {
        if (high[i] < 0)
            continue;
        if (dup2(high[i], i) < 0)
            child_fail("place a descriptor");
        top = i + 1;
    }
    if (syscall(SYS_close_range, (unsigned)top, ~0u, 0) != 0)
        for (int fd = top; fd < 1024; fd++)
            close(fd);

    for (int i = 0; i < p->nrl; i++)
        if (setrlimit(p->rl_res[i], &p->rl[i]) != 0)
            child_fail("set a resource limit");
    if (p->drop) {
        /* Raw syscalls: glibc's wrappers would try to broadcast to threads this child lacks. */
        if (syscall(SYS_setgroups, 0, NULL) != 0 ||
            syscall(SYS_setresgid, p->uid, p->uid, p->uid) != 0 ||
            syscall(SYS_setresuid, p->uid, p->uid, p->uid) != 0)
            child_fail("drop to the sandbox uid");
    }
    /* Dies with the thread that runs it (the credential change above cleared any earlier
     * setting); if that thread is already gone, so is the reason to run. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != p->parent)
        _exit(127);
    if (p->cwd != NULL && chdir(p->cwd) != 0)
        child_fail("enter the work dir");
    execve(p->path, p->argv, p->envp);
    child_fail("execute the sandbox");
    _exit(127);
}

static void plan_rlimits(struct child_plan *p, const struct sandbox_limits *lim, bool drop)
{
    uint64_t nproc = lim->max_processes;
    if (!drop && getuid() != 0)
        nproc += count_own_processes();
    struct {
        int res;
        uint64_t soft, hard;
    } want[] = {
        { RLIMIT_CPU, (uint64_t)lim->cpu_seconds, (uint64_t)lim->cpu_seconds + 1 },
        { RLIMIT_AS, lim->memory_bytes, lim->memory_bytes },
        { RLIMIT_NPROC, nproc, nproc },
        { RLIMIT_FSIZE, lim->max_file_bytes, lim->max_file_bytes },
        { RLIMIT_NOFILE, 256, 256 },
        { RLIMIT_CORE, 0, 0 },
    };
    p->nrl = 0;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        p->rl_res[p->nrl] = want[i].res;
        p->rl[p->nrl].rlim_cur = (rlim_t)want[i].soft;
        p->rl[p->nrl].rlim_max = (rlim_t)want[i].hard;
        p->nrl++;
    }
}

/* --- killing what is left */

static void sleep_ms(long ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Kills every process of the run's uid: a helper process becomes that uid, and kill(-1) then
 * reaches exactly the processes that uid owns, wherever they moved (new sessions, groups, pid
 * namespaces). One pass suffices: kill(-1) walks the process list under the tasklist lock, and a
 * fork racing with it fails once its parent has SIGKILL pending; the second pass is cheap
 * insurance. Not looped until nothing answers: zombies answer kill() too. */
static void sweep_uid(uid_t uid)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (syscall(SYS_setgroups, 0, NULL) != 0 || syscall(SYS_setresgid, uid, uid, uid) != 0 ||
            syscall(SYS_setresuid, uid, uid, uid) != 0)
            _exit(1);
        if (kill(-1, SIGKILL) == 0) {
            struct timespec ts = { .tv_sec = 0, .tv_nsec = 1000000L };
            nanosleep(&ts, NULL);
            kill(-1, SIGKILL);
        }
        _exit(0);
    }
    if (pid > 0)
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
}

/* `docker kill NAME`: killing the client would leave the container running. */
static void docker_kill(const char *name)
{
    const char *docker = sandbox__program_path("docker");
    if (docker == NULL)
        return;
    char *const argv[] = { (char *)docker, (char *)"kill", (char *)name, NULL };
    char *const envp[] = { (char *)"PATH=/usr/local/bin:/usr/bin:/bin", NULL };
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    pid_t pid = fork();
    if (pid == 0) {
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execve(docker, argv, envp);
        _exit(127);
    }
    if (devnull >= 0)
        close(devnull);
    if (pid < 0)
        return;
    for (int i = 0; i < 1000; i++) { /* up to 10 s */
        pid_t r = waitpid(pid, NULL, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR))
            return;
        sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* --- the parent */

/* bwrap's status JSON names the sandbox's init by its pid outside: `{ "child-pid": N, ...`.
 * A pidfd is taken at once, while bwrap (its parent, which has not reaped it) keeps the pid from
 * being reused. */
static int bwrap_inner_pidfd(const struct ec_buf *status)
{
    if (status->len == 0)
        return -1;
    const char *p = strstr(status->data, "\"child-pid\":");
    if (p == NULL)
        return -1;
    char *end;
    long pid = strtol(p + strlen("\"child-pid\":"), &end, 10);
    if (end == p || pid <= 1)
        return -1;
    return (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
}

struct stream {
    int fd;
    struct ec_buf buf;
    size_t cap;
    bool truncated;
};

static void stream_read(struct stream *s)
{
    char chunk[16384];
    ssize_t n = read(s->fd, chunk, sizeof(chunk));
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        close(s->fd);
        s->fd = -1;
        return;
    }
    size_t room = s->cap > s->buf.len ? s->cap - s->buf.len : 0;
    size_t keep = (size_t)n < room ? (size_t)n : room;
    if (keep > 0)
        EC_ASSERT(ec_buf_append(&s->buf, chunk, keep) == EC_OK);
    if (keep < (size_t)n)
        s->truncated = true; /* the rest is read and dropped so the writer never blocks */
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static int open_pipe(int fds[2], struct ec_err *err)
{
    if (pipe2(fds, O_CLOEXEC) != 0) {
        ec_err_set(err, EC_EINTERNAL, "sandbox_unavailable", "cannot create a pipe: %s",
                   strerror(errno));
        return -1;
    }
    return 0;
}

static int exit_code_of(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 1;
}

enum ec_status sandbox__exec(const struct sandbox__cmd *cmd, struct sandbox__outcome *out,
                             struct ec_err *err)
{
    struct stream streams[3] = { { .fd = -1 }, { .fd = -1 }, { .fd = -1 } };
    int out_pipe[2] = { -1, -1 }, err_pipe[2] = { -1, -1 }, status_pipe[2] = { -1, -1 };
    int devnull = -1;
    enum ec_status st = EC_OK;

    if (open_pipe(out_pipe, err) != 0 || open_pipe(err_pipe, err) != 0 ||
        (cmd->bwrap_status && open_pipe(status_pipe, err) != 0)) {
        st = EC_EINTERNAL;
        goto done;
    }
    devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0) {
        st = ec_err_set(err, EC_EINTERNAL, "sandbox_unavailable", "cannot open /dev/null: %s",
                        strerror(errno));
        goto done;
    }

    struct child_plan plan = {
        .src = { cmd->stdin_fd >= 0 ? cmd->stdin_fd : devnull, out_pipe[1], err_pipe[1],
                 cmd->code_fd, status_pipe[1] },
        .drop = cmd->drop_uid,
        .uid = cmd->uid,
        .parent = getpid(),
        .cwd = cmd->cwd,
        .path = cmd->argv[0],
        .argv = cmd->argv,
        .envp = cmd->envp,
    };
    if (cmd->rlimits)
        plan_rlimits(&plan, cmd->lim, cmd->drop_uid);

    int64_t started_ms = ec_mono_ms();
    pid_t pid = fork();
    if (pid == 0)
        child_exec(&plan);
    if (pid < 0) {
        st =
            ec_err_set(err, EC_EUNAVAIL, "sandbox_unavailable", "cannot fork: %s", strerror(errno));
        goto done;
    }
    close_fd(&out_pipe[1]);
    close_fd(&err_pipe[1]);
    close_fd(&status_pipe[1]);
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);

    size_t cap = cmd->lim->max_output_bytes;
    streams[0] = (struct stream){ .fd = out_pipe[0], .cap = cap };
    streams[1] = (struct stream){ .fd = err_pipe[0], .cap = cap };
    streams[2] = (struct stream){ .fd = status_pipe[0], .cap = 4096 };
    out_pipe[0] = err_pipe[0] = status_pipe[0] = -1;
    for (int i = 0; i < 3; i++)
        ec_buf_init(&streams[i].buf, 0);

    int inner_pidfd = -1;
    bool inner_seen = false;
    int64_t killed_at = 0;
    int64_t deadline = started_ms + cmd->lim->wall_timeout_ms;
    int64_t drain_until = INT64_MAX;
    bool reaped = false, killed = false;
    int wstatus = 0;
    for (;;) {
        bool open_streams = streams[0].fd >= 0 || streams[1].fd >= 0 || streams[2].fd >= 0;
        int64_t now = ec_mono_ms();
        if (reaped && (!open_streams || now >= drain_until))
            break;
        if (!inner_seen && cmd->bwrap_status && streams[2].buf.len > 0 &&
            strchr(streams[2].buf.data, '}') != NULL) {
            inner_pidfd = bwrap_inner_pidfd(&streams[2].buf);
            inner_seen = true;
        }
        if (killed && !reaped && now >= killed_at + 1000)
            kill(pid, SIGKILL); /* bwrap did not follow its sandbox within a second */
        if (!killed && now >= deadline) {
            killed = true;
            killed_at = now;
            out->timed_out = true;
            /* bwrap: the sandbox's init first; the pid namespace dies with it and bwrap reaps
             * it and exits. Killing bwrap first would orphan that init to the host's pid 1. */
            if (inner_pidfd >= 0) {
                syscall(SYS_pidfd_send_signal, inner_pidfd, SIGKILL, NULL, 0);
            } else {
                kill(pid, SIGKILL);
                kill(-pid, SIGKILL);
            }
            if (cmd->docker_name != NULL)
                docker_kill(cmd->docker_name);
        }
        struct pollfd pfd[4];
        int idx[4];
        int n = 0;
        for (int i = 0; i < 3; i++)
            if (streams[i].fd >= 0) {
                pfd[n] = (struct pollfd){ .fd = streams[i].fd, .events = POLLIN };
                idx[n++] = i;
            }
        if (!reaped && pidfd >= 0) {
            pfd[n] = (struct pollfd){ .fd = pidfd, .events = POLLIN };
            idx[n++] = -1;
        }
        int64_t until = reaped ? drain_until : killed ? now + 50 : deadline;
        int64_t wait_ms = until - now;
        if (!reaped && pidfd < 0 && wait_ms > 10)
            wait_ms = 10; /* no pidfd (old kernel): poll waitpid */
        if (wait_ms < 0)
            wait_ms = 0;
        int r = poll(pfd, (nfds_t)n, (int)wait_ms);
        if (r < 0 && errno != EINTR) {
            st = ec_err_set(err, EC_EINTERNAL, "sandbox_unavailable", "poll failed: %s",
                            strerror(errno));
            kill(pid, SIGKILL);
            kill(-pid, SIGKILL);
        }
        for (int i = 0; r > 0 && i < n; i++)
            if (idx[i] >= 0 && (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                stream_read(&streams[idx[i]]);
        if (!reaped) {
            siginfo_t info = { 0 };
            int w = waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT);
            if ((w == 0 && info.si_pid == pid) || (w < 0 && errno == ECHILD)) {
                reaped = true;
                out->result->duration_ms = ec_mono_ms() - started_ms;
                /* The program is done; nothing it started may outlive it. Its group first,
                 * while the unreaped leader keeps the group id from being reused. */
                kill(-pid, SIGKILL);
                while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
                    ;
                /* After the reap: a zombie of the run's uid would keep answering the sweep. */
                if (cmd->drop_uid)
                    sweep_uid(cmd->uid);
                drain_until = ec_mono_ms() + DRAIN_GRACE_MS;
            }
        }
        if (st != EC_OK && reaped)
            break;
    }
    if (pidfd >= 0)
        close(pidfd);
    if (inner_pidfd >= 0)
        close(inner_pidfd);

    if (st == EC_OK) {
        out->exit_code = out->timed_out ? SANDBOX_EXIT_TIMEOUT : exit_code_of(wstatus);
        out->started = streams[2].buf.len > 0 && strstr(streams[2].buf.data, "child-pid") != NULL;
        struct sandbox_result *res = out->result;
        res->stdout_text = ec_buf_detach(&streams[0].buf, &out->stdout_len);
        if (res->stdout_text == NULL)
            res->stdout_text = ec_xstrdup("");
        res->stderr_text = ec_buf_detach(&streams[1].buf, &out->stderr_len);
        if (res->stderr_text == NULL)
            res->stderr_text = ec_xstrdup("");
        res->stdout_truncated = streams[0].truncated;
        res->stderr_truncated = streams[1].truncated;
    }
done:
    for (int i = 0; i < 3; i++) {
        close_fd(&streams[i].fd);
        ec_buf_release(&streams[i].buf);
    }
    close_fd(&out_pipe[0]);
    close_fd(&out_pipe[1]);
    close_fd(&err_pipe[0]);
    close_fd(&err_pipe[1]);
    close_fd(&status_pipe[0]);
    close_fd(&status_pipe[1]);
    close_fd(&devnull);
    return st;
}
