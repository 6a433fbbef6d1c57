/* `edgecoder rpc describe`: services, methods, messages, enums and fields from reflection, in a
 * proto-like text form (types fully qualified with a leading dot, oneofs grouped where their
 * first member is declared, maps as map<K, V>). Names were checked to be identifiers when
 * parsed; default values may hold anything and are escaped. */
#include "mesh/rpc_cli_int.h"

#include <string.h>

static const char *label_of(const struct rpc_dyn_message *m, const struct rpc_dyn_field *f)
{
    if (f->label == RPC_DYN_LABEL_REPEATED)
        return "repeated ";
    if (f->label == RPC_DYN_LABEL_REQUIRED)
        return "required ";
    if (f->oneof_index >= 0 && !f->proto3_optional)
        return "";
    return !m->file->proto3 || f->proto3_optional ? "optional " : "";
}

static void print_type(FILE *out, const struct rpc_dyn_field *f)
{
    if (f->type == RPC_DYN_MESSAGE && f->message_type != NULL)
        fprintf(out, ".%s", f->message_type->full_name);
    else if (f->type == RPC_DYN_ENUM && f->enum_type != NULL)
        fprintf(out, ".%s", f->enum_type->full_name);
    else
        fputs(rpc_dyn_type_name(f->type), out);
}

static bool is_map(const struct rpc_dyn_field *f)
{
    const struct rpc_dyn_message *e = f->message_type;
    return f->label == RPC_DYN_LABEL_REPEATED && f->type == RPC_DYN_MESSAGE && e != NULL &&
           e->map_entry && e->n_fields == 2;
}

/* bytes defaults come C-escaped already (backslashes kept); anything unprintable is escaped. */
static void print_escaped(FILE *out, const char *s, bool escaped)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || (c == '\\' && !escaped))
            fprintf(out, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(out, "\\%03o", c);
        else
            fputc(c, out);
    }
}

static void print_options(FILE *out, const struct rpc_dyn_field *f)
{
    const char *sep = " [";
    if (f->default_text != NULL) {
        fprintf(out, "%sdefault = ", sep);
        bool quoted = f->type == RPC_DYN_STRING || f->type == RPC_DYN_BYTES;
        if (quoted)
            fputc('"', out);
        print_escaped(out, f->default_text, f->type == RPC_DYN_BYTES);
        if (quoted)
            fputc('"', out);
        sep = ", ";
    }
    if (f->packed >= 0) {
        fprintf(out, "%spacked = %s", sep, f->packed ? "true" : "false");
        sep = ", ";
    }
    if (f->deprecated) {
        fprintf(out, "%sdeprecated = true", sep);
        sep = ", ";
    }
    if (sep[0] == ',')
        fputc(']', out);
}

void rpc__cli_print_field(FILE *out, const struct rpc_dyn_message *m, const struct rpc_dyn_field *f,
                          const char *indent)
{
    fputs(indent, out);
    if (is_map(f)) {
        const struct rpc_dyn_message *e = f->message_type;
        fputs("map<", out);
        print_type(out, &e->fields[0]);
        fputs(", ", out);
        print_type(out, &e->fields[1]);
        fputs(">", out);
    } else {
        fputs(label_of(m, f), out);
        print_type(out, f);
    }
    fprintf(out, " %s = %d", f->name, (int)f->number);
    print_options(out, f);
    fputs(";\n", out);
}

void rpc__cli_print_enum(FILE *out, const struct rpc_dyn_enum *e, const char *indent)
{
    fprintf(out, "%senum %s {\n", indent, e->name);
    for (size_t i = 0; i < e->n_values; i++)
        fprintf(out, "%s  %s = %d;\n", indent, e->values[i].name, (int)e->values[i].number);
    fprintf(out, "%s}\n", indent);
}

void rpc__cli_print_message(FILE *out, const struct rpc_dyn_message *m, const char *indent)
{
    char inner[64], inner2[64];
    snprintf(inner, sizeof(inner), "%s  ", indent);
    snprintf(inner2, sizeof(inner2), "%s    ", indent);
    fprintf(out, "%smessage %s {\n", indent, m->name);
    for (size_t i = 0; i < m->n_fields; i++) {
        const struct rpc_dyn_field *f = &m->fields[i];
        int k = f->proto3_optional ? -1 : f->oneof_index;
        if (k < 0) {
            rpc__cli_print_field(out, m, f, inner);
            continue;
        }
        bool first = true; /* a oneof is printed where its first member is declared */
        for (size_t j = 0; j < i && first; j++)
            first = m->fields[j].proto3_optional || m->fields[j].oneof_index != k;
        if (!first)
            continue;
        fprintf(out, "%soneof %s {\n", inner, m->oneofs[k]);
        for (size_t j = i; j < m->n_fields; j++)
            if (!m->fields[j].proto3_optional && m->fields[j].oneof_index == k)
                rpc__cli_print_field(out, m, &m->fields[j], inner2);
        fprintf(out, "%s}\n", inner);
    }
    for (size_t i = 0; i < m->n_nested; i++)
        if (!m->nested[i].map_entry)
            rpc__cli_print_message(out, &m->nested[i], strlen(inner) < 40 ? inner : indent);
    for (size_t i = 0; i < m->n_enums; i++)
        rpc__cli_print_enum(out, &m->enums[i], inner);
    fprintf(out, "%s}\n", indent);
}

void rpc__cli_print_method(FILE *out, const struct rpc_dyn_method *m, const char *indent)
{
    fprintf(out, "%srpc %s(%s.%s) returns (%s.%s);\n", indent, m->name,
            m->client_streaming ? "stream " : "", m->input->full_name,
            m->server_streaming ? "stream " : "", m->output->full_name);
}

void rpc__cli_print_service(FILE *out, const struct rpc_dyn_service *svc)
{
    fprintf(out, "service %s {\n", svc->name);
    for (size_t i = 0; i < svc->n_methods; i++)
        rpc__cli_print_method(out, &svc->methods[i], "  ");
    fputs("}\n", out);
}

/* A method ("pkg.Service.Method") or field ("pkg.Message.field"): split at the last dot. */
static bool describe_member(struct rpc_cli *cli, const char *symbol, FILE *out)
{
    const char *dot = strrchr(symbol, '.');
    if (dot == NULL || dot == symbol || strlen(symbol) >= 1024)
        return false;
    char parent[1024];
    snprintf(parent, sizeof(parent), "%.*s", (int)(dot - symbol), symbol);
    const struct rpc_dyn_service *svc = rpc_dyn_pool_service(cli->pool, parent);
    const struct rpc_dyn_method *md = svc ? rpc_dyn_service_method(svc, dot + 1) : NULL;
    if (md != NULL) {
        fprintf(out, "%s is a method:\n", symbol);
        rpc__cli_print_method(out, md, "");
        return true;
    }
    const struct rpc_dyn_message *m = rpc_dyn_pool_message(cli->pool, parent);
    for (size_t i = 0; m != NULL && i < m->n_fields; i++)
        if (strcmp(m->fields[i].name, dot + 1) == 0) {
            fprintf(out, "%s is a field:\n", symbol);
            rpc__cli_print_field(out, m, &m->fields[i], "");
            return true;
        }
    return false;
}

static enum ec_status describe_one(struct rpc_cli *cli, const char *symbol, FILE *out,
                                   struct ec_err *err)
{
    if (symbol[0] == '.')
        symbol++;
    enum ec_status st = rpc__cli_load(cli, symbol, err);
    if (st != EC_OK)
        return st;
    const struct rpc_dyn_service *svc = rpc_dyn_pool_service(cli->pool, symbol);
    const struct rpc_dyn_message *m = rpc_dyn_pool_message(cli->pool, symbol);
    const struct rpc_dyn_enum *e = rpc_dyn_pool_enum(cli->pool, symbol);
    if (svc != NULL) {
        fprintf(out, "%s is a service:\n", symbol);
        rpc__cli_print_service(out, svc);
    } else if (m != NULL) {
        fprintf(out, "%s is a message:\n", symbol);
        rpc__cli_print_message(out, m, "");
    } else if (e != NULL) {
        fprintf(out, "%s is an enum:\n", symbol);
        rpc__cli_print_enum(out, e, "");
    } else if (!describe_member(cli, symbol, out)) {
        return ec_err_set(err, EC_ENOTFOUND, NULL,
                          "\"%.200s\" is not a service, method, message, enum or field", symbol);
    }
    return EC_OK;
}

enum ec_status rpc_cli_describe(struct rpc_cli *cli, const char *symbol, FILE *out,
                                struct ec_err *err)
{
    if (symbol != NULL)
        return describe_one(cli, symbol, out, err);
    struct ec_arena arena;
    ec_arena_init(&arena);
    char **names;
    size_t n;
    enum ec_status st = rpc__cli_services(cli, &arena, &names, &n, err);
    for (size_t i = 0; st == EC_OK && i < n; i++)
        st = describe_one(cli, names[i], out, err);
    ec_arena_release(&arena);
    return st;
}
