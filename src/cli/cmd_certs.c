/* edgecoder certs init|issue: a development CA and leaf certificates carrying the SPIFFE identity
 * spiffe://edgecoder/<role>/<id> that the mesh authorizes callers by. */
#include "cli/commands.h"
#include "common/ec_buf.h"
#include "common/ec_crypto.h"
#include "common/ec_mem.h"
#include "common/ec_x509.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#define CA_DAYS_DEFAULT   3650
#define LEAF_DAYS_DEFAULT 365
#define CERT_MODE         0644
#define KEY_MODE          0600

struct certs_command {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the command's name */
    const char *summary;
};

static int certs_init(int argc, char **argv);
static int certs_issue(int argc, char **argv);

static const struct certs_command certs_commands[] = {
    { "init", certs_init, "make a CA: ca.key and ca.pem in --dir" },
    { "issue", certs_issue, "issue a leaf certificate for a role and id, signed by the CA" },
};

static const char init_help[] =
    "usage: edgecoder certs init --dir DIR [--days N] [--force]\n"
    "\n"
    "Makes a development CA: an EC P-256 key DIR/ca.key (mode 0600) and a self-signed\n"
    "certificate DIR/ca.pem (CN \"EdgeCoder CA\", CA:TRUE pathlen:0). DIR is created (mode 0700)\n"
    "if missing. Prints {\"cert\",\"key\",\"notAfter\"} as one line of JSON.\n"
    "\n"
    "  --dir DIR   where the CA lives (required)\n"
    "  --days N    validity in days, 1..3650 (default 3650)\n"
    "  --force     replace an existing CA; certificates it issued stop verifying\n"
    "  --help      this text\n";

static const char issue_help[] =
    "usage: edgecoder certs issue --dir DIR --role ROLE --id ID [--dns NAME]... [--ip ADDR]...\n"
    "                             [--days N] [--out PREFIX] [--force]\n"
    "\n"
    "Issues a leaf certificate with an EC P-256 key, signed by the CA in DIR, for TLS server and\n"
    "client use. Its subject is CN=ROLE/ID and its SAN holds the URI\n"
    "spiffe://edgecoder/ROLE/ID, then each --dns and --ip. Writes PREFIX.pem and PREFIX.key\n"
    "(mode 0600), PREFIX being DIR/ROLE-ID unless --out is given, and prints\n"
    "{\"cert\",\"key\",\"spiffe\",\"notAfter\"} as one line of JSON.\n"
    "\n"
    "  --dir DIR      the CA's directory, as given to certs init (required)\n"
    "  --role ROLE    coordinator, control-plane, inference, portal or agent (required)\n"
    "  --id ID        1 to 64 of A-Z a-z 0-9 . _ - (required)\n"
    "  --dns NAME     a DNS name to add to the SAN; repeatable\n"
    "  --ip ADDR      an IPv4 or IPv6 address to add to the SAN; repeatable\n"
    "  --days N       validity in days, 1..3650 (default 365), not past the CA's expiry\n"
    "  --out PREFIX   write PREFIX.pem and PREFIX.key instead\n"
    "  --force        replace existing files\n"
    "  --help         this text\n";

static void usage(FILE *out)
{
    fprintf(out, "usage: edgecoder certs <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(certs_commands) / sizeof(certs_commands[0]); i++)
        fprintf(out, "  %-8s %s\n", certs_commands[i].name, certs_commands[i].summary);
    fprintf(out, "\n`edgecoder certs <command> --help` describes a command.\n");
}

int cmd_certs(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EX_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof(certs_commands) / sizeof(certs_commands[0]); i++)
        if (strcmp(argv[1], certs_commands[i].name) == 0)
            return certs_commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "edgecoder certs: unknown command \"%s\"\n\n", argv[1]);
    usage(stderr);
    return EX_USAGE;
}

/* --- Shared ------------------------------------------------------------------------------- */

/* Reports getopt_long's '?' or ':' (opterr is 0, optstring starts with ':'). */
static void option_error(const char *prog, int c, char **argv)
{
    const char *opt = argv[optind - 1];
    if (c == ':')
        fprintf(stderr, "edgecoder %s: option \"%s\" needs a value\n", prog, opt);
    else if (optopt != 0)
        fprintf(stderr, "edgecoder %s: unknown option \"-%c\"\n", prog, optopt);
    else
        fprintf(stderr, "edgecoder %s: unknown option \"%s\"\n", prog, opt);
}

static bool path_join(char *out, const char *a, const char *b, const char *c)
{
    int n = snprintf(out, PATH_MAX, "%s%s%s", a, b, c);
    return n >= 0 && n < PATH_MAX;
}

static bool file_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Writes the key (0600) and then the certificate; if the certificate cannot be written, a key
 * just created is removed again so that no half pair is left behind. */
static int pair_write(const char *prog, const char *cert_path, const struct ec_buf *cert_pem,
                      const char *key_path, const struct ec_buf *key_pem, bool overwrite)
{
    struct ec_err err;
    if (ec_x509_pem_write_file(key_path, key_pem->data, key_pem->len, KEY_MODE, overwrite, &err) !=
        EC_OK) {
        fprintf(stderr, "edgecoder %s: %s\n", prog, err.msg);
        return EX_CANTCREAT;
    }
    if (ec_x509_pem_write_file(cert_path, cert_pem->data, cert_pem->len, CERT_MODE, overwrite,
                               &err) != EC_OK) {
        fprintf(stderr, "edgecoder %s: %s\n", prog, err.msg);
        if (!overwrite)
            unlink(key_path);
        return EX_CANTCREAT;
    }
    return 0;
}

static void json_field(struct ec_buf *out, const char *name, const char *value)
{
    ec_buf_printf(out, "%s\"%s\":\"", out->len > 1 ? "," : "", name);
    ec_buf_json_escape(out, value, strlen(value));
    ec_buf_putc(out, '"');
}

static void release_pems(struct ec_buf *cert_pem, struct ec_buf *key_pem)
{
    if (key_pem->data != NULL)
        ec_crypto_wipe(key_pem->data, key_pem->cap);
    ec_buf_release(key_pem);
    ec_buf_release(cert_pem);
}

/* --- init --------------------------------------------------------------------------------- */

static const struct option init_options[] = {
    { "dir", required_argument, NULL, 'd' },
    { "days", required_argument, NULL, 'n' },
    { "force", no_argument, NULL, 'f' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

/* DIR exists as a directory, or is made (0700: it will hold the CA key). */
static int dir_ensure(const char *dir)
{
    struct stat st;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "edgecoder certs init: cannot create directory \"%s\": %s\n", dir,
                strerror(errno));
        return EX_CANTCREAT;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "edgecoder certs init: --dir \"%s\" is not a directory\n", dir);
        return EX_USAGE;
    }
    return 0;
}

static int certs_init(int argc, char **argv)
{
    const char *dir = NULL;
    int days = CA_DAYS_DEFAULT;
    bool force = false;
    struct ec_err err;
    int c;
    optind = 0; /* glibc: start a fresh scan */
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:h", init_options, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'n':
            if (ec_x509_parse_days(optarg, &days, &err) != EC_OK) {
                fprintf(stderr, "edgecoder certs init: invalid --days: %s\n", err.msg);
                return EX_USAGE;
            }
            break;
        case 'f':
            force = true;
            break;
        case 'h':
            fputs(init_help, stdout);
            return 0;
        default:
            option_error("certs init", c, argv);
            return EX_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "edgecoder certs init: unexpected argument \"%s\"\n", argv[optind]);
        return EX_USAGE;
    }
    if (dir == NULL || dir[0] == '\0') {
        fprintf(stderr, "edgecoder certs init: --dir is required\n");
        return EX_USAGE;
    }
    char cert_path[PATH_MAX], key_path[PATH_MAX];
    if (!path_join(cert_path, dir, "/", "ca.pem") || !path_join(key_path, dir, "/", "ca.key")) {
        fprintf(stderr, "edgecoder certs init: --dir \"%s\" is too long\n", dir);
        return EX_USAGE;
    }
    int rc = dir_ensure(dir);
    if (rc != 0)
        return rc;
    if (!force && (file_exists(cert_path) || file_exists(key_path))) {
        fprintf(stderr,
                "edgecoder certs init: a CA already exists in \"%s\"; --force replaces it, and "
                "every certificate it issued stops verifying\n",
                dir);
        return EX_CANTCREAT;
    }

    struct ec_x509_ca *ca = NULL;
    if (ec_x509_ca_create(days, &ca, &err) != EC_OK) {
        fprintf(stderr, "edgecoder certs init: %s\n", err.msg);
        return EX_SOFTWARE;
    }
    struct ec_buf cert_pem, key_pem, out;
    ec_buf_init(&cert_pem, 0);
    ec_buf_init(&key_pem, 0);
    ec_buf_init(&out, 0);
    char not_after[EC_X509_TIME_LEN + 1];
    ec_x509_ca_not_after(ca, not_after);
    if (ec_x509_ca_write_pem(ca, &cert_pem, &key_pem, &err) != EC_OK) {
        fprintf(stderr, "edgecoder certs init: %s\n", err.msg);
        rc = EX_SOFTWARE;
    } else {
        rc = pair_write("certs init", cert_path, &cert_pem, key_path, &key_pem, force);
    }
    if (rc == 0) {
        ec_buf_putc(&out, '{');
        json_field(&out, "cert", cert_path);
        json_field(&out, "key", key_path);
        json_field(&out, "notAfter", not_after);
        ec_buf_puts(&out, "}\n");
        fputs(out.data, stdout);
    }
    ec_buf_release(&out);
    release_pems(&cert_pem, &key_pem);
    ec_x509_ca_free(ca);
    return rc;
}

/* --- issue -------------------------------------------------------------------------------- */

static const struct option issue_options[] = {
    { "dir", required_argument, NULL, 'd' }, { "role", required_argument, NULL, 'r' },
    { "id", required_argument, NULL, 'i' },  { "dns", required_argument, NULL, 'D' },
    { "ip", required_argument, NULL, 'I' },  { "days", required_argument, NULL, 'n' },
    { "out", required_argument, NULL, 'o' }, { "force", no_argument, NULL, 'f' },
    { "help", no_argument, NULL, 'h' },      { NULL, 0, NULL, 0 },
};

struct issue_args {
    const char *dir;
    const char *out;
    bool force;
    struct ec_x509_leaf_spec spec;
    const char **dns; /* argc entries, owned */
    const char **ips; /* argc entries, owned */
};

/* Parses and checks every option, printing each problem; false when there was any. */
static bool issue_args_parse(struct issue_args *a, int argc, char **argv, bool *help)
{
    struct ec_err err;
    bool ok = true;
    const char *days_text = NULL;
    int c;
    optind = 0; /* glibc: start a fresh scan */
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:h", issue_options, NULL)) != -1) {
        switch (c) {
        case 'd':
            a->dir = optarg;
            break;
        case 'r':
            a->spec.role = optarg;
            break;
        case 'i':
            a->spec.id = optarg;
            break;
        case 'D':
            a->dns[a->spec.dns_count++] = optarg;
            break;
        case 'I':
            a->ips[a->spec.ip_count++] = optarg;
            break;
        case 'n':
            days_text = optarg;
            break;
        case 'o':
            a->out = optarg;
            break;
        case 'f':
            a->force = true;
            break;
        case 'h':
            *help = true;
            return true;
        default:
            option_error("certs issue", c, argv);
            ok = false;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "edgecoder certs issue: unexpected argument \"%s\"\n", argv[optind]);
        ok = false;
    }
    if (a->dir == NULL || a->dir[0] == '\0') {
        fprintf(stderr, "edgecoder certs issue: --dir is required\n");
        ok = false;
    }
    if (a->out != NULL && a->out[0] == '\0') {
        fprintf(stderr, "edgecoder certs issue: --out is empty\n");
        ok = false;
    }
    if (a->spec.role == NULL) {
        fprintf(stderr, "edgecoder certs issue: --role is required (%s)\n", EC_X509_ROLES_TEXT);
        ok = false;
    } else if (ec_x509_check_role(a->spec.role, &err) != EC_OK) {
        fprintf(stderr, "edgecoder certs issue: invalid --role: %s\n", err.msg);
        ok = false;
    }
    if (a->spec.id == NULL) {
        fprintf(stderr, "edgecoder certs issue: --id is required\n");
        ok = false;
    } else if (ec_x509_check_id(a->spec.id, &err) != EC_OK) {
        fprintf(stderr, "edgecoder certs issue: invalid --id: %s\n", err.msg);
        ok = false;
    }
    for (size_t i = 0; i < a->spec.dns_count; i++)
        if (ec_x509_check_dns(a->dns[i], &err) != EC_OK) {
            fprintf(stderr, "edgecoder certs issue: invalid --dns: %s\n", err.msg);
            ok = false;
        }
    for (size_t i = 0; i < a->spec.ip_count; i++)
        if (ec_x509_check_ip(a->ips[i], &err) != EC_OK) {
            fprintf(stderr, "edgecoder certs issue: invalid --ip: %s\n", err.msg);
            ok = false;
        }
    if (days_text != NULL && ec_x509_parse_days(days_text, &a->spec.days, &err) != EC_OK) {
        fprintf(stderr, "edgecoder certs issue: invalid --days: %s\n", err.msg);
        ok = false;
    }
    return ok;
}

/* The CA in dir, or an exit status after saying why not. */
static int ca_read(const char *dir, struct ec_x509_ca **ca)
{
    char cert_path[PATH_MAX], key_path[PATH_MAX];
    if (!path_join(cert_path, dir, "/", "ca.pem") || !path_join(key_path, dir, "/", "ca.key")) {
        fprintf(stderr, "edgecoder certs issue: --dir \"%s\" is too long\n", dir);
        return EX_USAGE;
    }
    struct ec_buf cert_pem, key_pem;
    ec_buf_init(&cert_pem, EC_X509_PEM_MAX);
    ec_buf_init(&key_pem, EC_X509_PEM_MAX);
    struct ec_err err;
    enum ec_status st = ec_x509_pem_read_file(cert_path, &cert_pem, &err);
    if (st == EC_OK)
        st = ec_x509_pem_read_file(key_path, &key_pem, &err);
    int rc = 0;
    if (st == EC_ENOTFOUND) {
        fprintf(stderr,
                "edgecoder certs issue: %s (make a CA with `edgecoder certs init --dir %s`)\n",
                err.msg, dir);
        rc = EX_NOINPUT;
    } else if (st != EC_OK) {
        fprintf(stderr, "edgecoder certs issue: %s\n", err.msg);
        rc = EX_NOINPUT;
    } else if (ec_x509_ca_load(cert_pem.data, cert_pem.len, key_pem.data, key_pem.len, ca, &err) !=
               EC_OK) {
        fprintf(stderr, "edgecoder certs issue: CA in \"%s\": %s\n", dir, err.msg);
        rc = EX_DATAERR;
    }
    release_pems(&cert_pem, &key_pem);
    return rc;
}

static int issue_run(const struct issue_args *a)
{
    char prefix[PATH_MAX], cert_path[PATH_MAX], key_path[PATH_MAX];
    int n = a->out != NULL
                ? snprintf(prefix, sizeof(prefix), "%s", a->out)
                : snprintf(prefix, sizeof(prefix), "%s/%s-%s", a->dir, a->spec.role, a->spec.id);
    if (n < 0 || (size_t)n >= sizeof(prefix) || !path_join(cert_path, prefix, ".pem", "") ||
        !path_join(key_path, prefix, ".key", "")) {
        fprintf(stderr, "edgecoder certs issue: output path \"%s\" is too long\n", prefix);
        return EX_USAGE;
    }
    if (!a->force && (file_exists(cert_path) || file_exists(key_path))) {
        fprintf(stderr,
                "edgecoder certs issue: \"%s\" or \"%s\" already exists; --force "
                "replaces them\n",
                cert_path, key_path);
        return EX_CANTCREAT;
    }
    struct ec_x509_ca *ca = NULL;
    int rc = ca_read(a->dir, &ca);
    if (rc != 0)
        return rc;

    struct ec_buf cert_pem, key_pem, out;
    ec_buf_init(&cert_pem, 0);
    ec_buf_init(&key_pem, 0);
    ec_buf_init(&out, 0);
    struct ec_err err;
    char not_after[EC_X509_TIME_LEN + 1];
    enum ec_status st = ec_x509_leaf_issue(ca, &a->spec, &cert_pem, &key_pem, not_after, &err);
    if (st == EC_EINVAL) {
        /* Every field was checked already; only the expiry against the CA's is left. */
        fprintf(stderr, "edgecoder certs issue: invalid --days: %s\n", err.msg);
        rc = EX_USAGE;
    } else if (st != EC_OK) {
        fprintf(stderr, "edgecoder certs issue: %s\n", err.msg);
        rc = EX_SOFTWARE;
    } else {
        rc = pair_write("certs issue", cert_path, &cert_pem, key_path, &key_pem, a->force);
    }
    if (rc == 0) {
        char uri[EC_X509_SPIFFE_MAX + 1];
        ec_x509_spiffe_uri(uri, sizeof(uri), a->spec.role, a->spec.id);
        ec_buf_putc(&out, '{');
        json_field(&out, "cert", cert_path);
        json_field(&out, "key", key_path);
        json_field(&out, "spiffe", uri);
        json_field(&out, "notAfter", not_after);
        ec_buf_puts(&out, "}\n");
        fputs(out.data, stdout);
    }
    ec_buf_release(&out);
    release_pems(&cert_pem, &key_pem);
    ec_x509_ca_free(ca);
    return rc;
}

static int certs_issue(int argc, char **argv)
{
    struct issue_args a = { 0 };
    a.spec.days = LEAF_DAYS_DEFAULT;
    a.dns = ec_xcalloc((size_t)argc, sizeof(*a.dns));
    a.ips = ec_xcalloc((size_t)argc, sizeof(*a.ips));
    a.spec.dns = a.dns;
    a.spec.ips = a.ips;
    bool help = false;
    int rc;
    if (!issue_args_parse(&a, argc, argv, &help))
        rc = EX_USAGE;
    else if (help) {
        fputs(issue_help, stdout);
        rc = 0;
    } else
        rc = issue_run(&a);
    free(a.dns);
    free(a.ips);
    return rc;
}
