/* edgecoder sandbox: runs one program in the agent's sandbox and prints the result as JSON, or
 * probes whether a mode can run here. For people checking a machine, for tests and benchmarks. */
#include "agent/sandbox.h"
#include "cli/commands.h"
#include "common/ec_buf.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

static const char sandbox_help[] =
    "usage: edgecoder sandbox run --language python|javascript [options] [FILE|-]\n"
    "       edgecoder sandbox probe [--mode MODE]\n"
    "\n"
    "run: runs the program in FILE (or stdin) in the sandbox the agent uses and prints one JSON\n"
    "object: exitCode, timedOut, ok, rejected, stdout, stderr, stdoutTruncated,\n"
    "stderrTruncated, durationMs, mode, language. Exit status 0 whenever the program was run or\n"
    "rejected (its own status is exitCode), 69 when the sandbox cannot run, 64 on bad usage.\n"
    "probe: checks that MODE can run programs here; prints {\"mode\",\"ok\",\"error\"?}, exits 0\n"
    "or 69.\n"
    "\n"
    "  --language L       python or javascript (also py, js, node)\n"
    "  --mode M           bubblewrap (default), docker, or none (the host itself)\n"
    "  --timeout-ms N     wall-clock limit; the whole tree is killed, exit 124 (default 10000)\n"
    "  --memory-mb N      address space (docker: memory) limit (default 256)\n"
    "  --max-processes N  processes and threads (default 64)\n"
    "  --output-bytes N   stdout and stderr are each kept up to N bytes (default 65536)\n"
    "  --image NAME       docker mode: the image (default node:20-bookworm)\n"
    "  --no-subset-check  run code the subset check would refuse (tests of the boundary)\n"
    "  --help             this text\n";

enum { OPT_TIMEOUT = 1000, OPT_MEMORY, OPT_PROCS, OPT_OUTPUT, OPT_IMAGE, OPT_NO_CHECK };

static const struct option sandbox_options[] = {
    { "language", required_argument, NULL, 'l' },
    { "mode", required_argument, NULL, 'm' },
    { "timeout-ms", required_argument, NULL, OPT_TIMEOUT },
    { "memory-mb", required_argument, NULL, OPT_MEMORY },
    { "max-processes", required_argument, NULL, OPT_PROCS },
    { "output-bytes", required_argument, NULL, OPT_OUTPUT },
    { "image", required_argument, NULL, OPT_IMAGE },
    { "no-subset-check", no_argument, NULL, OPT_NO_CHECK },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

struct sandbox_args {
    bool probe;
    int language; /* -1 until given */
    struct sandbox_opts opts;
    const char *file; /* NULL or "-": stdin */
};

static bool parse_count(const char *opt, const char *value, int64_t max, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0' || v <= 0 || v > max) {
        fprintf(stderr,
                "edgecoder sandbox: %s must be a whole number from 1 to %" PRId64 ", not \"%s\"\n",
                opt, max, value);
        return false;
    }
    *out = v;
    return true;
}

/* Returns 0 to go on, -1 after --help, or an exit status after printing the problem. */
static int sandbox_args_parse(int argc, char **argv, struct sandbox_args *a)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(sandbox_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? EX_USAGE : -1;
    }
    if (strcmp(argv[1], "probe") == 0) {
        a->probe = true;
    } else if (strcmp(argv[1], "run") != 0) {
        fprintf(stderr, "edgecoder sandbox: unknown action \"%s\" (run or probe)\n", argv[1]);
        return EX_USAGE;
    }
    argc--;
    argv++;
    int c;
    int64_t n;
    optind = 0; /* glibc: start a fresh scan */
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:h", sandbox_options, NULL)) != -1) {
        switch (c) {
        case 'l':
            a->language = sandbox_language_parse(optarg);
            if (a->language < 0) {
                fprintf(stderr,
                        "edgecoder sandbox: unknown language \"%s\" (python or javascript)\n",
                        optarg);
                return EX_USAGE;
            }
            break;
        case 'm': {
            int mode = sandbox_mode_parse(optarg);
            if (mode < 0) {
                fprintf(stderr,
                        "edgecoder sandbox: unknown mode \"%s\" (bubblewrap, docker or none)\n",
                        optarg);
                return EX_USAGE;
            }
            a->opts.mode = (enum sandbox_mode)mode;
            break;
        }
        case OPT_TIMEOUT:
            if (!parse_count("--timeout-ms", optarg, 3600000, &n))
                return EX_USAGE;
            a->opts.limits.wall_timeout_ms = n;
            break;
        case OPT_MEMORY:
            if (!parse_count("--memory-mb", optarg, 1 << 20, &n))
                return EX_USAGE;
            a->opts.limits.memory_bytes = (uint64_t)n << 20;
            break;
        case OPT_PROCS:
            if (!parse_count("--max-processes", optarg, 1 << 20, &n))
                return EX_USAGE;
            a->opts.limits.max_processes = (uint64_t)n;
            break;
        case OPT_OUTPUT:
            if (!parse_count("--output-bytes", optarg, 1 << 30, &n))
                return EX_USAGE;
            a->opts.limits.max_output_bytes = (size_t)n;
            break;
        case OPT_IMAGE:
            a->opts.docker_image = optarg;
            break;
        case OPT_NO_CHECK:
            a->opts.skip_subset_check = true;
            break;
        case 'h':
            fputs(sandbox_help, stdout);
            return -1;
        case ':':
            fprintf(stderr, "edgecoder sandbox: option \"%s\" needs a value\n", argv[optind - 1]);
            return EX_USAGE;
        default:
            if (optopt != 0)
                fprintf(stderr, "edgecoder sandbox: unknown option \"-%c\"\n", optopt);
            else
                fprintf(stderr, "edgecoder sandbox: unknown option \"%s\"\n", argv[optind - 1]);
            return EX_USAGE;
        }
    }
    if (optind < argc)
        a->file = argv[optind++];
    if (optind < argc || (a->probe && a->file != NULL)) {
        fprintf(stderr, "edgecoder sandbox: unexpected argument \"%s\"\n", argv[optind - 1]);
        return EX_USAGE;
    }
    if (!a->probe && a->language < 0) {
        fprintf(stderr, "edgecoder sandbox: --language is required (python or javascript)\n");
        return EX_USAGE;
    }
    return 0;
}

/* Reads the whole program, up to one byte past what the sandbox accepts (it then refuses it
 * with a reason rather than this command guessing). */
static int read_program(const char *file, struct ec_buf *code)
{
    bool use_stdin = file == NULL || strcmp(file, "-") == 0;
    int fd = use_stdin ? 0 : open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "edgecoder sandbox: cannot open \"%s\": %s\n", file, strerror(errno));
        return EX_NOINPUT;
    }
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "edgecoder sandbox: cannot read \"%s\": %s\n",
                    use_stdin ? "stdin" : file, strerror(errno));
            if (!use_stdin)
                close(fd);
            return EX_IOERR;
        }
        if (n == 0)
            break;
        if (ec_buf_append(code, chunk, (size_t)n) != EC_OK)
            break; /* over the cap: keep what fits; the sandbox refuses it by size */
    }
    if (!use_stdin)
        close(fd);
    return 0;
}

static void put_json_string(struct ec_buf *out, const char *key, const char *value)
{
    ec_buf_printf(out, "\"%s\":\"", key);
    ec_buf_json_escape(out, value, strlen(value));
    ec_buf_puts(out, "\"");
}

static int sandbox_probe_cmd(const struct sandbox_args *a)
{
    struct ec_err err = { 0 };
    enum ec_status st = sandbox_probe(&a->opts, &err);
    struct ec_buf out;
    ec_buf_init(&out, 0);
    ec_buf_puts(&out, "{");
    put_json_string(&out, "mode", sandbox_mode_name(a->opts.mode));
    ec_buf_printf(&out, ",\"ok\":%s", st == EC_OK ? "true" : "false");
    if (st != EC_OK) {
        ec_buf_puts(&out, ",");
        put_json_string(&out, "error", err.msg);
        fprintf(stderr, "edgecoder sandbox: mode %s cannot run here: %s\n",
                sandbox_mode_name(a->opts.mode), err.msg);
    }
    ec_buf_puts(&out, "}\n");
    fwrite(out.data, 1, out.len, stdout);
    ec_buf_release(&out);
    return st == EC_OK ? 0 : EX_UNAVAILABLE;
}

static int sandbox_run_cmd(const struct sandbox_args *a)
{
    struct ec_buf code;
    /* One byte more than the sandbox accepts, so it can refuse the program by its size. */
    ec_buf_init(&code, (1u << 20) + 1);
    int rc = read_program(a->file, &code);
    if (rc != 0) {
        ec_buf_release(&code);
        return rc;
    }
    struct sandbox_result res = { 0 };
    struct ec_err err = { 0 };
    enum ec_status st = sandbox_run(&a->opts, (enum sandbox_language)a->language,
                                    code.data != NULL ? code.data : "", code.len, &res, &err);
    ec_buf_release(&code);
    if (st != EC_OK) {
        fprintf(stderr, "edgecoder sandbox: cannot run the program in mode %s: %s\n",
                sandbox_mode_name(a->opts.mode), err.msg);
        return EX_UNAVAILABLE;
    }
    struct ec_buf out;
    ec_buf_init(&out, 0);
    ec_buf_printf(&out, "{\"exitCode\":%d,\"timedOut\":%s,\"ok\":%s,\"rejected\":%s,",
                  res.exit_code, res.timed_out ? "true" : "false", res.ok ? "true" : "false",
                  res.rejected ? "true" : "false");
    put_json_string(&out, "stdout", res.stdout_text);
    ec_buf_puts(&out, ",");
    put_json_string(&out, "stderr", res.stderr_text);
    ec_buf_printf(&out,
                  ",\"stdoutTruncated\":%s,\"stderrTruncated\":%s,\"durationMs\":%" PRId64 ",",
                  res.stdout_truncated ? "true" : "false", res.stderr_truncated ? "true" : "false",
                  res.duration_ms);
    put_json_string(&out, "mode", sandbox_mode_name(a->opts.mode));
    ec_buf_puts(&out, ",");
    put_json_string(&out, "language", sandbox_language_name((enum sandbox_language)a->language));
    ec_buf_puts(&out, "}\n");
    fwrite(out.data, 1, out.len, stdout);
    ec_buf_release(&out);
    sandbox_result_release(&res);
    return 0;
}

int cmd_sandbox(int argc, char **argv)
{
    struct sandbox_args a = { .language = -1, .opts = { .mode = SANDBOX_BWRAP } };
    int rc = sandbox_args_parse(argc, argv, &a);
    if (rc != 0)
        return rc < 0 ? 0 : rc;
    return a.probe ? sandbox_probe_cmd(&a) : sandbox_run_cmd(&a);
}
