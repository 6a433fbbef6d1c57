/* edgecoder rpc: the grpcurl-style debugger (list, describe, call through server reflection over
 * mTLS). Parses the command line; mesh/rpc_cli.h does the work. */
#include "cli/commands.h"
#include "common/ec_mem.h"
#include "mesh/rpc_cli.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HEADERS    32
#define MAX_STDIN_JSON ((size_t)4 << 20)

static int usage(FILE *out, int status)
{
    fprintf(
        out,
        "usage: edgecoder rpc [options] ADDR list [SERVICE]\n"
        "       edgecoder rpc [options] ADDR describe [SYMBOL]\n"
        "       edgecoder rpc [options] ADDR call METHOD [JSON|-]\n"
        "\n"
        "list      the server's services, or a service's methods\n"
        "describe  a service, method, message, enum or field (all services without SYMBOL)\n"
        "call      /pkg.Service/Method (or pkg.Service/Method, pkg.Service.Method) with the\n"
        "          request as JSON (default {}; - reads stdin); prints each reply as a line\n"
        "          of JSON. Server-streaming methods print one line per message.\n"
        "\n"
        "options (anywhere on the line):\n"
        "  --cacert FILE       CA certificate (default $EDGECODER_TLS_CA)\n"
        "  --cert FILE         client certificate (default $EDGECODER_TLS_CERT)\n"
        "  --key FILE          client key (default $EDGECODER_TLS_KEY)\n"
        "  --server-name NAME  name to verify in the server certificate (default: ADDR's host)\n"
        "  --timeout MS        deadline of each call (default %d)\n"
        "  -H KEY:VALUE        request metadata; repeatable\n"
        "  --emit-defaults     also print fields that hold their default value\n"
        "  --plaintext         no TLS (tests only; refused when EDGECODER_ENV=production)\n"
        "\n"
        "Errors print \"ERROR: <GRPC_CODE>: <details> (code <error-code>)\" and exit 1; usage\n"
        "errors exit 64.\n",
        RPC_DEFAULT_TIMEOUT_MS);
    return status;
}

struct rpc_args {
    struct rpc_cli_opts opts;
    struct rpc_md md[MAX_HEADERS];
    char *md_keys[MAX_HEADERS];
    const char *words[4]; /* ADDR, verb, argument, JSON */
    int n_words;
};

/* "key: value" -> lower-case key, value without leading blanks. */
static bool add_header(struct rpc_args *a, const char *kv)
{
    const char *colon = strchr(kv, ':');
    if (colon == NULL || colon == kv || a->opts.call.n_md == MAX_HEADERS)
        return false;
    char *key = ec_xstrndup(kv, (size_t)(colon - kv));
    for (char *k = key; *k != '\0'; k++)
        *k = (char)tolower((unsigned char)*k);
    const char *value = colon + 1;
    while (*value == ' ' || *value == '\t')
        value++;
    a->md_keys[a->opts.call.n_md] = key;
    a->md[a->opts.call.n_md++] = (struct rpc_md){ key, value };
    return true;
}

static bool parse_args(int argc, char **argv, struct rpc_args *a)
{
    struct rpc_cli_opts *o = &a->opts;
    o->channel.tls.ca_file = getenv("EDGECODER_TLS_CA");
    o->channel.tls.cert_file = getenv("EDGECODER_TLS_CERT");
    o->channel.tls.key_file = getenv("EDGECODER_TLS_KEY");
    o->call.md = a->md;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--plaintext") == 0) {
            o->channel.plaintext = true;
            continue;
        }
        if (strcmp(arg, "--emit-defaults") == 0) {
            o->emit_defaults = true;
            continue;
        }
        bool takes_value = strcmp(arg, "--cacert") == 0 || strcmp(arg, "--cert") == 0 ||
                           strcmp(arg, "--key") == 0 || strcmp(arg, "--server-name") == 0 ||
                           strcmp(arg, "--timeout") == 0 || strcmp(arg, "-H") == 0;
        if (!takes_value) {
            if (arg[0] == '-' && arg[1] != '\0') {
                fprintf(stderr, "edgecoder rpc: unknown option \"%s\"\n", arg);
                return false;
            }
            if (a->n_words == 4)
                return false;
            a->words[a->n_words++] = arg;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "edgecoder rpc: %s needs a value\n", arg);
            return false;
        }
        i++;
        if (strcmp(arg, "--cacert") == 0) {
            o->channel.tls.ca_file = v;
        } else if (strcmp(arg, "--cert") == 0) {
            o->channel.tls.cert_file = v;
        } else if (strcmp(arg, "--key") == 0) {
            o->channel.tls.key_file = v;
        } else if (strcmp(arg, "--server-name") == 0) {
            o->channel.server_name = v;
        } else if (strcmp(arg, "-H") == 0) {
            if (!add_header(a, v)) {
                fprintf(stderr, "edgecoder rpc: -H wants KEY:VALUE (at most %d), not \"%s\"\n",
                        MAX_HEADERS, v);
                return false;
            }
        } else {
            char *end;
            long long ms = strtoll(v, &end, 10);
            if (end == v || *end != '\0' || ms < 1 || ms > 3600000) {
                fprintf(stderr, "edgecoder rpc: --timeout wants 1..3600000 ms, not \"%s\"\n", v);
                return false;
            }
            o->call.timeout_ms = ms;
        }
    }
    return true;
}

/* The request text: the word, "{}" when absent, or stdin for "-". Caller frees. */
static char *request_text(const char *word, size_t *len)
{
    if (word == NULL || strcmp(word, "-") != 0) {
        *len = word ? strlen(word) : 2;
        return ec_xstrdup(word ? word : "{}");
    }
    char *buf = ec_xmalloc(MAX_STDIN_JSON + 1);
    *len = fread(buf, 1, MAX_STDIN_JSON + 1, stdin);
    if (*len > MAX_STDIN_JSON) {
        fprintf(stderr, "edgecoder rpc: the request on stdin is over %zu bytes\n", MAX_STDIN_JSON);
        free(buf);
        return NULL;
    }
    buf[*len] = '\0';
    return buf;
}

static bool check_words(const struct rpc_args *a)
{
    if (a->n_words < 2)
        return false;
    const char *verb = a->words[1];
    if (strcmp(verb, "list") == 0 || strcmp(verb, "describe") == 0)
        return a->n_words <= 3;
    return strcmp(verb, "call") == 0 && a->n_words >= 3;
}

static int run(const struct rpc_args *a)
{
    const char *verb = a->words[1];
    const char *arg = a->n_words > 2 ? a->words[2] : NULL;
    size_t json_len = 0;
    char *json = NULL;
    if (strcmp(verb, "call") == 0 &&
        (json = request_text(a->n_words > 3 ? a->words[3] : NULL, &json_len)) == NULL)
        return 1;
    rpc_runtime_init();
    struct ec_err err = { 0 };
    enum ec_status st;
    struct rpc_cli *cli = rpc_cli_new(&a->opts, &err);
    if (cli == NULL)
        st = err.status != EC_OK ? err.status : EC_EINTERNAL;
    else if (strcmp(verb, "list") == 0)
        st = rpc_cli_list(cli, arg, stdout, &err);
    else if (strcmp(verb, "describe") == 0)
        st = rpc_cli_describe(cli, arg, stdout, &err);
    else
        st = rpc_cli_call(cli, arg, json, json_len, stdout, &err);
    rpc_cli_free(cli);
    rpc_runtime_shutdown();
    free(json);
    fflush(stdout);
    if (st == EC_OK)
        return 0;
    char line[512];
    rpc_cli_error_text(&err, line, sizeof(line));
    fprintf(stderr, "ERROR: %s\n", line);
    return 1;
}

int cmd_rpc(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout, 0);
    struct rpc_args a;
    memset(&a, 0, sizeof(a));
    int status = 64;
    if (!parse_args(argc, argv, &a) || !check_words(&a)) {
        usage(stderr, 64);
    } else if (!a.opts.channel.plaintext && a.opts.channel.tls.ca_file == NULL) {
        fprintf(stderr, "edgecoder rpc: no CA certificate: pass --cacert or set "
                        "EDGECODER_TLS_CA (or --plaintext for tests)\n");
    } else if ((a.opts.channel.tls.cert_file == NULL) != (a.opts.channel.tls.key_file == NULL)) {
        fprintf(stderr, "edgecoder rpc: --cert and --key go together\n");
    } else {
        a.opts.target = a.words[0];
        status = run(&a);
    }
    for (size_t i = 0; i < a.opts.call.n_md; i++)
        free(a.md_keys[i]);
    return status;
}
