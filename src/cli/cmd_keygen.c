/* edgecoder keygen: an Ed25519 signing pair (coordinators' and agents' durable identity) or, with
 * --x25519, an agent's envelope key pair, as standard PKCS#8 and SPKI PEM files. */
#include "cli/commands.h"
#include "common/ec_buf.h"
#include "common/ec_crypto.h"
#include "common/ec_x509.h"

#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

static const char keygen_help[] =
    "usage: edgecoder keygen --out PREFIX [--x25519]\n"
    "\n"
    "Makes a key pair: PREFIX.key, the private key as PKCS#8 PEM (mode 0600), and PREFIX.pub,\n"
    "the public key as SubjectPublicKeyInfo PEM. Ed25519 by default: a coordinator's or agent's\n"
    "signing identity (COORDINATOR_PRIVATE_KEY_PEM and COORDINATOR_PUBLIC_KEY_PEM take these\n"
    "PEMs). Never overwrites a file. Prints {\"alg\",\"key\",\"pub\",\"publicKey\"} as one line "
    "of\n"
    "JSON, publicKey being the raw 32-byte public key in base64.\n"
    "\n"
    "  --out PREFIX   where to write the pair (required)\n"
    "  --x25519       an X25519 key-agreement pair instead (an agent's envelope key)\n"
    "  --help         this text\n";

static const struct option keygen_options[] = {
    { "out", required_argument, NULL, 'o' },
    { "x25519", no_argument, NULL, 'x' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

/* Returns 0 and sets *prefix, -1 for --help, or an exit status after printing the problem. */
static int keygen_args_parse(int argc, char **argv, const char **prefix, enum ec_key_alg *alg)
{
    int c;
    optind = 0; /* glibc: start a fresh scan */
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:h", keygen_options, NULL)) != -1) {
        switch (c) {
        case 'o':
            *prefix = optarg;
            break;
        case 'x':
            *alg = EC_KEY_X25519;
            break;
        case 'h':
            fputs(keygen_help, stdout);
            return -1;
        case ':':
            fprintf(stderr, "edgecoder keygen: option \"%s\" needs a value\n", argv[optind - 1]);
            return EX_USAGE;
        default:
            if (optopt != 0)
                fprintf(stderr, "edgecoder keygen: unknown option \"-%c\"\n", optopt);
            else
                fprintf(stderr, "edgecoder keygen: unknown option \"%s\"\n", argv[optind - 1]);
            return EX_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "edgecoder keygen: unexpected argument \"%s\"\n", argv[optind]);
        return EX_USAGE;
    }
    if (*prefix == NULL || (*prefix)[0] == '\0') {
        fprintf(stderr, "edgecoder keygen: --out is required\n");
        return EX_USAGE;
    }
    return 0;
}

/* Writes the private then the public PEM, neither over an existing file; a private key just
 * written is removed again if its public half cannot be. */
static int keygen_write(const struct ec_key *key, const char *key_path, const char *pub_path)
{
    struct ec_buf priv_pem, pub_pem;
    ec_buf_init(&priv_pem, 0);
    ec_buf_init(&pub_pem, 0);
    struct ec_err err;
    int rc = 0;
    if (ec_key_write_private_pem(key, &priv_pem, &err) != EC_OK ||
        ec_key_write_public_pem(key, &pub_pem, &err) != EC_OK) {
        fprintf(stderr, "edgecoder keygen: %s\n", err.msg);
        rc = EX_SOFTWARE;
    } else if (ec_x509_pem_write_file(key_path, priv_pem.data, priv_pem.len, 0600, false, &err) !=
               EC_OK) {
        fprintf(stderr, "edgecoder keygen: %s\n", err.msg);
        rc = EX_CANTCREAT;
    } else if (ec_x509_pem_write_file(pub_path, pub_pem.data, pub_pem.len, 0644, false, &err) !=
               EC_OK) {
        fprintf(stderr, "edgecoder keygen: %s\n", err.msg);
        unlink(key_path);
        rc = EX_CANTCREAT;
    }
    if (priv_pem.data != NULL)
        ec_crypto_wipe(priv_pem.data, priv_pem.cap);
    ec_buf_release(&priv_pem);
    ec_buf_release(&pub_pem);
    return rc;
}

int cmd_keygen(int argc, char **argv)
{
    const char *prefix = NULL;
    enum ec_key_alg alg = EC_KEY_ED25519;
    int rc = keygen_args_parse(argc, argv, &prefix, &alg);
    if (rc != 0)
        return rc < 0 ? 0 : rc;

    char key_path[PATH_MAX], pub_path[PATH_MAX];
    int n1 = snprintf(key_path, sizeof(key_path), "%s.key", prefix);
    int n2 = snprintf(pub_path, sizeof(pub_path), "%s.pub", prefix);
    if (n1 < 0 || (size_t)n1 >= sizeof(key_path) || n2 < 0 || (size_t)n2 >= sizeof(pub_path)) {
        fprintf(stderr, "edgecoder keygen: --out \"%s\" is too long\n", prefix);
        return EX_USAGE;
    }
    struct stat st;
    if (lstat(key_path, &st) == 0 || lstat(pub_path, &st) == 0) {
        fprintf(stderr,
                "edgecoder keygen: \"%s\" or \"%s\" already exists; keygen never "
                "replaces a key\n",
                key_path, pub_path);
        return EX_CANTCREAT;
    }

    struct ec_key *key = NULL;
    struct ec_err err;
    if (ec_key_generate(alg, &key, &err) != EC_OK) {
        fprintf(stderr, "edgecoder keygen: %s\n", err.msg);
        return EX_SOFTWARE;
    }
    rc = keygen_write(key, key_path, pub_path);
    if (rc == 0) {
        uint8_t raw[EC_KEY_RAW_LEN];
        char raw_b64[EC_B64_ENCODED_LEN(EC_KEY_RAW_LEN) + 1];
        ec_key_export_raw_public(key, raw);
        ec_b64_encode(raw_b64, sizeof(raw_b64), raw, sizeof(raw));
        struct ec_buf out;
        ec_buf_init(&out, 0);
        ec_buf_printf(&out, "{\"alg\":\"%s\",\"key\":\"",
                      alg == EC_KEY_X25519 ? "x25519" : "ed25519");
        ec_buf_json_escape(&out, key_path, strlen(key_path));
        ec_buf_puts(&out, "\",\"pub\":\"");
        ec_buf_json_escape(&out, pub_path, strlen(pub_path));
        ec_buf_printf(&out, "\",\"publicKey\":\"%s\"}\n", raw_b64);
        fputs(out.data, stdout);
        ec_buf_release(&out);
    }
    ec_key_free(key);
    return rc;
}
