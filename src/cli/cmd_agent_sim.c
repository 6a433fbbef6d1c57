/* edgecoder agent-sim: many simulated agents in one process, speaking only the documented agent
 * protocol (POST /register, /heartbeat, /pull, /result, /submit with x-mesh-token and Ed25519
 * signed headers), so it can be pointed at any coordinator, the original included. Prints one
 * JSON line of figures. Modes:
 *   register   register --agents N agents and stop
 *   heartbeat  closed loop: --conns C connections send signed heartbeats back to back
 *   rate       open loop: --agents N agents, one heartbeat each per --interval-ms; latency counts
 *              from the scheduled time, so the simulator's own queueing is in it
 *   cycle      closed loop per connection: submit -> pull -> result, signed and durable */
#include "cli/agent_sim.h"
#include "cli/commands.h"
#include "common/ec_crypto.h"
#include "common/ec_mem.h"

#include <jansson.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum mode { M_REGISTER, M_HEARTBEAT, M_RATE, M_CYCLE };
enum kind { K_REGISTER, K_HEARTBEAT, K_SUBMIT, K_PULL, K_RESULT };

struct sim_agent {
    char id[64];
    struct ec_key *key;
    char *pem_json; /* the public key PEM as a JSON string literal's inside */
};

struct sim_opts {
    enum mode mode;
    char host[256];
    int port;
    const char *token, *prefix, *registration_token;
    int agents, conns, threads;
    double seconds;
    int interval_ms;
    bool keep_alive, do_register;
    long presign; /* requests signed before the clock starts (heartbeat, rate) */
};

/* Per thread: its agents, connections, the requests it made and their latencies. */
struct sim_thread {
    const struct sim_opts *o;
    struct sim_loop_opts loop;
    struct sim_agent *agents;
    int nagents, agent_base;
    struct ec_buf *reqs; /* one per connection */
    int64_t t0_us, end_us;
    /* heartbeat / rate / register */
    long next_k;
    char **pre;
    size_t *pre_len;
    long npre;
    /* cycle: per connection */
    int *phase, *pulls;
    char **sub_id;
    int *attempt;
    int64_t *cycle_start;
    long cycle_seq;
    /* results */
    uint32_t *lat_us;
    size_t nlat, caplat;
    uint64_t ok, errors, sent;
    int status_hist[6]; /* 0 (failed), 1xx..5xx */
    char first_error[200];
    struct sim_loop_stats stats;
};

/* --- requests ----------------------------------------------------------------------------- */

static void build(struct ec_buf *out, const struct sim_opts *o, const char *path, const char *body,
                  size_t body_len, const struct sim_agent *a)
{
    ec_buf_reset(out);
    ec_buf_printf(out,
                  "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                  "Content-Length: %zu\r\n",
                  path, o->host, o->port, body_len);
    if (o->token != NULL)
        ec_buf_printf(out, "x-mesh-token: %s\r\n", o->token);
    if (!o->keep_alive)
        ec_buf_puts(out, "Connection: close\r\n");
    if (a != NULL) {
        uint8_t digest[EC_SHA256_LEN], rnd[16], sig[EC_ED25519_SIG_LEN];
        char sha_hex[65], nonce[33], sig_b64[EC_B64_ENCODED_LEN(EC_ED25519_SIG_LEN) + 1];
        char ts[24], canonical[512];
        ec_sha256(body, body_len, digest);
        ec_hex_encode(sha_hex, sizeof(sha_hex), digest, sizeof(digest));
        ec_random_bytes(rnd, sizeof(rnd));
        ec_hex_encode(nonce, sizeof(nonce), rnd, sizeof(rnd));
        snprintf(ts, sizeof(ts), "%lld", (long long)ec_now_ms());
        int n = snprintf(canonical, sizeof(canonical), "%s\n%s\nPOST\n%s\n%s", ts, nonce, path,
                         sha_hex);
        if (ec_key_sign(a->key, canonical, (size_t)n, sig, NULL) != EC_OK)
            EC_ASSERT(!"a generated key signs");
        ec_b64_encode(sig_b64, sizeof(sig_b64), sig, sizeof(sig));
        ec_buf_printf(out,
                      "x-agent-id: %s\r\nx-timestamp-ms: %s\r\nx-nonce: %s\r\n"
                      "x-body-sha256: %s\r\nx-signature: %s\r\n",
                      a->id, ts, nonce, sha_hex, sig_b64);
    }
    ec_buf_puts(out, "\r\n");
    ec_buf_append(out, body, body_len);
}

static void build_heartbeat(struct ec_buf *out, const struct sim_opts *o, const struct sim_agent *a)
{
    char body[256];
    int n = snprintf(body, sizeof(body),
                     "{\"agentId\":\"%s\",\"powerTelemetry\":{\"deviceType\":\"server\"},"
                     "\"activeModel\":\"qwen2.5:7b\",\"sandboxMode\":\"docker\"}",
                     a->id);
    build(out, o, "/heartbeat", body, (size_t)n, a);
}

static void build_register(struct ec_buf *out, const struct sim_opts *o, const struct sim_agent *a)
{
    char body[1024];
    int n = snprintf(body, sizeof(body),
                     "{\"agentId\":\"%s\",\"os\":\"linux\",\"version\":\"0.1.0\",\"mode\":"
                     "\"swarm-only\",\"localModelProvider\":\"edgecoder-local\",\"clientType\":"
                     "\"agent-sim\",\"maxConcurrentTasks\":1,\"sandboxMode\":\"docker\","
                     "\"publicKeyPem\":\"%s\"%s%s%s}",
                     a->id, a->pem_json, o->registration_token ? ",\"registrationToken\":\"" : "",
                     o->registration_token ? o->registration_token : "",
                     o->registration_token ? "\"" : "");
    build(out, o, "/register", body, (size_t)n, a);
}

/* --- the modes as request sources ----------------------------------------------------------- */

static void record(struct sim_thread *t, int status, int64_t start_us, int64_t now_us,
                   const char *body, size_t len)
{
    t->status_hist[status <= 0 ? 0 : status / 100 > 5 ? 5 : status / 100]++;
    if (status == 200) {
        t->ok++;
        if (t->nlat == t->caplat) {
            t->caplat = t->caplat ? t->caplat * 2 : 4096;
            t->lat_us = ec_xrealloc(t->lat_us, t->caplat * sizeof(*t->lat_us));
        }
        int64_t d = now_us - start_us;
        t->lat_us[t->nlat++] = d < 0 ? 0 : d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
        return;
    }
    t->errors++;
    if (t->first_error[0] == '\0')
        snprintf(t->first_error, sizeof(t->first_error), "status %d: %.*s", status,
                 (int)(len < 150 ? len : 150), body ? body : "");
}

static bool hb_next(void *ud, int conn, int64_t now, struct sim_req *req)
{
    struct sim_thread *t = ud;
    const struct sim_opts *o = t->o;
    if (now >= t->end_us)
        return false;
    long k = t->next_k;
    int64_t start = now;
    if (o->mode == M_RATE) {
        /* Request k is due at t0 + k * interval / agents: agents evenly spread. */
        start = t->t0_us + (int64_t)((double)k * o->interval_ms * 1000.0 / t->nagents);
        if (start > now)
            return false;
    }
    t->next_k++;
    if (k < t->npre) {
        req->data = t->pre[k];
        req->len = t->pre_len[k];
    } else {
        build_heartbeat(&t->reqs[conn], o, &t->agents[k % t->nagents]);
        req->data = t->reqs[conn].data;
        req->len = t->reqs[conn].len;
    }
    req->start_us = start;
    req->kind = K_HEARTBEAT;
    t->sent++;
    return true;
}

static void hb_done(void *ud, int conn, const struct sim_req *req, int status, const char *body,
                    size_t len, int64_t now)
{
    record(ud, status, req->start_us, now, body, len);
}

static int64_t hb_due(void *ud)
{
    struct sim_thread *t = ud;
    if (t->o->mode != M_RATE)
        return 0;
    return t->t0_us + (int64_t)((double)t->next_k * t->o->interval_ms * 1000.0 / t->nagents);
}

static bool time_finished(void *ud, int64_t now)
{
    return now >= ((struct sim_thread *)ud)->end_us;
}

static bool reg_next(void *ud, int conn, int64_t now, struct sim_req *req)
{
    struct sim_thread *t = ud;
    if (t->next_k >= t->nagents)
        return false;
    build_register(&t->reqs[conn], t->o, &t->agents[t->next_k++]);
    *req = (struct sim_req){ t->reqs[conn].data, t->reqs[conn].len, now, 0, K_REGISTER };
    t->sent++;
    return true;
}

static bool reg_finished(void *ud, int64_t now)
{
    struct sim_thread *t = ud;
    return t->next_k >= t->nagents;
}

/* cycle: connection i works as agent i: submit a one-subtask task, pull, answer what came. */
static bool cycle_next(void *ud, int conn, int64_t now, struct sim_req *req)
{
    struct sim_thread *t = ud;
    const struct sim_opts *o = t->o;
    const struct sim_agent *a = &t->agents[conn % t->nagents];
    struct ec_buf *b = &t->reqs[conn];
    char body[640];
    int n;
    switch (t->phase[conn]) {
    case K_SUBMIT:
        if (now >= t->end_us)
            return false;
        t->cycle_start[conn] = now;
        long seq = t->cycle_seq++;
        n = snprintf(body, sizeof(body),
                     "{\"taskId\":\"%s-%d-%ld\",\"prompt\":\"print(%ld)\",\"language\":\"python\","
                     "\"snapshotRef\":\"0123456789abcdef0123456789abcdef01234567\","
                     "\"projectId\":\"sim-%d\"}",
                     o->prefix, t->agent_base + conn, seq, seq, conn % 4);
        build(b, o, "/submit", body, (size_t)n, NULL);
        break;
    case K_PULL:
        n = snprintf(body, sizeof(body), "{\"agentId\":\"%s\"}", a->id);
        build(b, o, "/pull", body, (size_t)n, a);
        break;
    default:
        n = snprintf(body, sizeof(body),
                     "{\"subtaskId\":\"%s\",\"agentId\":\"%s\",\"attempt\":%d,\"ok\":true,"
                     "\"output\":\"done\",\"durationMs\":1}",
                     t->sub_id[conn], a->id, t->attempt[conn]);
        build(b, o, "/result", body, (size_t)n, a);
        break;
    }
    *req = (struct sim_req){ b->data, b->len, now, conn, t->phase[conn] };
    t->sent++;
    return true;
}

static void cycle_done(void *ud, int conn, const struct sim_req *req, int status, const char *body,
                       size_t len, int64_t now)
{
    struct sim_thread *t = ud;
    if (status != 200) {
        record(t, status, 0, now, body, len); /* an error; the cycle starts over */
        t->phase[conn] = K_SUBMIT;
        return;
    }
    if (req->kind == K_SUBMIT) {
        t->phase[conn] = K_PULL;
        t->pulls[conn] = 0;
    } else if (req->kind == K_PULL) {
        json_t *j = json_loadb(body, len, 0, NULL);
        json_t *sub = json_object_get(j, "subtask");
        const char *id = json_string_value(json_object_get(sub, "id"));
        if (id != NULL) {
            free(t->sub_id[conn]);
            t->sub_id[conn] = ec_xstrdup(id);
            t->attempt[conn] = (int)json_integer_value(json_object_get(sub, "attempt"));
            t->phase[conn] = K_RESULT;
        } else {
            /* Another connection took ours; pull again a few times, then submit anew. */
            t->phase[conn] = ++t->pulls[conn] < 5 ? K_PULL : K_SUBMIT;
        }
        json_decref(j);
    } else {
        record(t, 200, t->cycle_start[conn], now, NULL, 0);
        t->phase[conn] = K_SUBMIT;
    }
}

static bool cycle_finished(void *ud, int64_t now)
{
    struct sim_thread *t = ud;
    if (now < t->end_us)
        return false;
    for (int i = 0; i < t->loop.conns; i++)
        if (t->phase[i] != K_SUBMIT)
            return false; /* let cycles in progress finish, so no lease is left behind */
    return true;
}

/* --- running ------------------------------------------------------------------------------ */

static void presign(struct sim_thread *t)
{
    t->npre = t->o->presign / t->o->threads;
    t->pre = ec_xcalloc((size_t)t->npre + 1, sizeof(char *));
    t->pre_len = ec_xcalloc((size_t)t->npre + 1, sizeof(size_t));
    struct ec_buf b;
    ec_buf_init(&b, 0);
    for (long k = 0; k < t->npre; k++) {
        build_heartbeat(&b, t->o, &t->agents[k % t->nagents]);
        t->pre[k] = ec_xstrndup(b.data, b.len);
        t->pre_len[k] = b.len;
    }
    ec_buf_release(&b);
}

static void *thread_main(void *arg)
{
    struct sim_thread *t = arg;
    struct sim_source src = { .ud = t };
    const struct sim_opts *o = t->o;
    if (o->mode == M_REGISTER) {
        src.next = reg_next;
        src.done = hb_done;
        src.finished = reg_finished;
    } else if (o->mode == M_CYCLE) {
        src.next = cycle_next;
        src.done = cycle_done;
        src.finished = cycle_finished;
    } else {
        src.next = hb_next;
        src.done = hb_done;
        src.next_due_us = hb_due;
        src.finished = time_finished;
    }
    t->t0_us = sim_now_us();
    t->end_us = t->t0_us + (int64_t)(o->seconds * 1e6);
    sim_loop_run(&t->loop, &src, &t->stats);
    t->end_us = sim_now_us();
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const uint32_t *v, size_t n, double p)
{
    return n ? v[(size_t)((double)(n - 1) * p)] / 1000.0 : 0.0;
}

/* Runs the mode on o->threads threads; prints the figures; returns the exit status. */
static int run_mode(const struct sim_opts *o, struct sim_agent *agents, enum mode mode,
                    const struct sockaddr_storage *addr, socklen_t addrlen, bool quiet)
{
    struct sim_opts mo = *o;
    mo.mode = mode;
    int nt = mo.threads;
    struct sim_thread *ts = ec_xcalloc((size_t)nt, sizeof(*ts));
    for (int i = 0; i < nt; i++) {
        struct sim_thread *t = &ts[i];
        t->o = &mo;
        t->agent_base = mo.agents * i / nt;
        t->nagents = mo.agents * (i + 1) / nt - t->agent_base;
        t->agents = agents + t->agent_base;
        int conns = mo.conns * (i + 1) / nt - mo.conns * i / nt;
        t->loop = (struct sim_loop_opts){ .addr = *addr,
                                          .addrlen = addrlen,
                                          .conns = conns > 0 ? conns : 1,
                                          .keep_alive = mo.keep_alive,
                                          .timeout_us = 30000000 };
        t->reqs = ec_xcalloc((size_t)t->loop.conns, sizeof(struct ec_buf));
        for (int c = 0; c < t->loop.conns; c++)
            ec_buf_init(&t->reqs[c], 0);
        t->phase = ec_xcalloc((size_t)t->loop.conns, sizeof(int));
        for (int c = 0; c < t->loop.conns; c++)
            t->phase[c] = K_SUBMIT;
        t->pulls = ec_xcalloc((size_t)t->loop.conns, sizeof(int));
        t->attempt = ec_xcalloc((size_t)t->loop.conns, sizeof(int));
        t->sub_id = ec_xcalloc((size_t)t->loop.conns, sizeof(char *));
        t->cycle_start = ec_xcalloc((size_t)t->loop.conns, sizeof(int64_t));
        if (mode == M_HEARTBEAT || mode == M_RATE)
            presign(t);
    }
    pthread_t *tids = ec_xcalloc((size_t)nt, sizeof(pthread_t));
    int64_t t0 = sim_now_us();
    for (int i = 0; i < nt; i++)
        pthread_create(&tids[i], NULL, thread_main, &ts[i]);
    for (int i = 0; i < nt; i++)
        pthread_join(tids[i], NULL);
    double secs = (double)(sim_now_us() - t0) / 1e6;
    uint64_t ok = 0, errors = 0, sent = 0, connects = 0, timeouts = 0;
    size_t nlat = 0;
    int hist[6] = { 0 };
    const char *first_error = "";
    for (int i = 0; i < nt; i++) {
        ok += ts[i].ok;
        errors += ts[i].errors;
        sent += ts[i].sent;
        nlat += ts[i].nlat;
        connects += ts[i].stats.connects;
        timeouts += ts[i].stats.timeouts;
        for (int h = 0; h < 6; h++)
            hist[h] += ts[i].status_hist[h];
        if (first_error[0] == '\0')
            first_error = ts[i].first_error;
    }
    uint32_t *lat = ec_xmalloc((nlat + 1) * sizeof(*lat));
    for (int i = 0, at = 0; i < nt; at += (int)ts[i].nlat, i++)
        memcpy(lat + at, ts[i].lat_us, ts[i].nlat * sizeof(*lat));
    qsort(lat, nlat, sizeof(*lat), cmp_u32);
    static const char *const names[] = { "register", "heartbeat", "rate", "cycle" };
    json_t *j = json_pack(
        "{s:s,s:i,s:i,s:i,s:f,s:I,s:I,s:I,s:f,s:f,s:f,s:f,s:f,s:f,s:I,s:I,s:{s:i,s:i,s:i,s:i},s:s}",
        "mode", names[mode], "agents", mo.agents, "conns", mo.conns, "threads", nt, "seconds", secs,
        "requests", (json_int_t)sent, "ok", (json_int_t)ok, "errors", (json_int_t)errors, "per_sec",
        (double)ok / secs, "p50_ms", pct(lat, nlat, 0.50), "p90_ms", pct(lat, nlat, 0.90), "p99_ms",
        pct(lat, nlat, 0.99), "p999_ms", pct(lat, nlat, 0.999), "max_ms",
        nlat ? lat[nlat - 1] / 1000.0 : 0.0, "connects", (json_int_t)connects, "timeouts",
        (json_int_t)timeouts, "statuses", "failed", hist[0], "2xx", hist[2], "4xx", hist[4], "5xx",
        hist[5], "first_error", first_error);
    if (mode == M_RATE)
        json_object_set_new(j, "interval_ms", json_integer(mo.interval_ms));
    if (mo.presign > 0)
        json_object_set_new(j, "presigned", json_integer(mo.presign));
    if (!quiet || errors > 0) {
        char *s = json_dumps(j, JSON_COMPACT);
        printf("%s\n", s);
        fflush(stdout);
        free(s);
    }
    json_decref(j);
    free(lat);
    for (int i = 0; i < nt; i++) {
        struct sim_thread *t = &ts[i];
        for (int c = 0; c < t->loop.conns; c++) {
            ec_buf_release(&t->reqs[c]);
            free(t->sub_id[c]);
        }
        for (long k = 0; k < t->npre; k++)
            free(t->pre[k]);
        free(t->pre);
        free(t->pre_len);
        free(t->reqs);
        free(t->phase);
        free(t->pulls);
        free(t->attempt);
        free(t->sub_id);
        free(t->cycle_start);
        free(t->lat_us);
    }
    free(ts);
    free(tids);
    return errors == 0 ? 0 : 1;
}

/* --- the command -------------------------------------------------------------------------- */

static int usage(FILE *out, int status)
{
    fprintf(out,
            "usage: edgecoder agent-sim --url http://HOST:PORT [--token MESH_TOKEN] MODE "
            "[options]\n"
            "modes:\n"
            "  register   register --agents N agents (POST /register, signed) and stop\n"
            "  heartbeat  closed loop: --conns C connections send signed heartbeats back to back\n"
            "  rate       open loop: each agent one heartbeat per --interval-ms; latency from the\n"
            "             scheduled time\n"
            "  cycle      per connection: POST /submit, /pull, /result (signed), repeated\n"
            "options: --agents N (100) --conns C (32) --threads T (1) --seconds S (10)\n"
            "         --interval-ms MS (1000) --no-keepalive (a connection per request)\n"
            "         --presign N (heartbeats signed before the clock starts)\n"
            "         --prefix ID (agent and task ids; keys derive from the agent ids, so a run\n"
            "           with the same prefix may skip registration: --no-register)\n"
            "         --registration-token T\n"
            "The mesh token may also come from MESH_AUTH_TOKEN. Plain HTTP only: put a\n"
            "TLS-terminating proxy in front for https. Prints one JSON line of figures.\n");
    return status;
}

static bool parse_url(const char *url, struct sim_opts *o)
{
    if (strncmp(url, "http://", 7) != 0)
        return false;
    const char *h = url + 7;
    size_t hl = strcspn(h, ":/");
    if (hl == 0 || hl >= sizeof(o->host))
        return false;
    memcpy(o->host, h, hl);
    o->host[hl] = '\0';
    o->port = h[hl] == ':' ? atoi(h + hl + 1) : 80;
    return o->port > 0 && o->port < 65536;
}

static bool parse_args(int argc, char **argv, struct sim_opts *o)
{
    const char *mode = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--no-keepalive") == 0)
            o->keep_alive = false;
        else if (strcmp(a, "--no-register") == 0)
            o->do_register = false;
        else if (a[0] != '-') {
            if (mode != NULL)
                return false;
            mode = a;
        } else if (v == NULL) {
            return false;
        } else {
            i++;
            if (strcmp(a, "--url") == 0) {
                if (!parse_url(v, o))
                    return false;
            } else if (strcmp(a, "--token") == 0)
                o->token = v;
            else if (strcmp(a, "--prefix") == 0)
                o->prefix = v;
            else if (strcmp(a, "--registration-token") == 0)
                o->registration_token = v;
            else if (strcmp(a, "--agents") == 0)
                o->agents = atoi(v);
            else if (strcmp(a, "--conns") == 0)
                o->conns = atoi(v);
            else if (strcmp(a, "--threads") == 0)
                o->threads = atoi(v);
            else if (strcmp(a, "--seconds") == 0)
                o->seconds = atof(v);
            else if (strcmp(a, "--interval-ms") == 0)
                o->interval_ms = atoi(v);
            else if (strcmp(a, "--presign") == 0)
                o->presign = atol(v);
            else
                return false;
        }
    }
    static const char *const names[] = { "register", "heartbeat", "rate", "cycle" };
    for (int m = 0; mode != NULL && m < 4; m++)
        if (strcmp(mode, names[m]) == 0)
            o->mode = (enum mode)m;
    return mode != NULL && o->port > 0 && o->agents >= 1 && o->agents <= 1000000 && o->conns >= 1 &&
           o->conns <= 100000 && o->threads >= 1 && o->threads <= 64 && o->seconds > 0 &&
           o->interval_ms >= 1 && o->presign >= 0 && strlen(o->prefix) <= 40 &&
           strspn(o->prefix, "abcdefghijklmnopqrstuvwxyz0123456789-") == strlen(o->prefix);
}

int cmd_agent_sim(int argc, char **argv)
{
    char prefix[48];
    snprintf(prefix, sizeof(prefix), "sim%llx", (unsigned long long)(ec_now_ms() % 0xffffff));
    struct sim_opts o = { .mode = M_HEARTBEAT,
                          .agents = 100,
                          .conns = 32,
                          .threads = 1,
                          .seconds = 10,
                          .interval_ms = 1000,
                          .keep_alive = true,
                          .do_register = true,
                          .prefix = prefix };
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
        return usage(stdout, 0);
    if (!parse_args(argc, argv, &o))
        return usage(stderr, 64);
    if (o.token == NULL)
        o.token = getenv("MESH_AUTH_TOKEN");
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%d", o.port);
    if (getaddrinfo(o.host, port, &hints, &ai) != 0 || ai == NULL) {
        fprintf(stderr, "edgecoder agent-sim: cannot resolve %s\n", o.host);
        return 69;
    }
    struct sockaddr_storage addr;
    socklen_t addrlen = ai->ai_addrlen;
    memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);

    struct sim_agent *agents = ec_xcalloc((size_t)o.agents, sizeof(*agents));
    struct ec_buf pem;
    ec_buf_init(&pem, 0);
    for (int i = 0; i < o.agents; i++) {
        struct sim_agent *a = &agents[i];
        snprintf(a->id, sizeof(a->id), "%s-agent-%d", o.prefix, i);
        /* The key is derived from the agent id, so that another run with the same --prefix
         * signs as the agents an earlier run registered (--no-register). Test keys only. */
        uint8_t seed[EC_SHA256_LEN];
        ec_sha256(a->id, strlen(a->id), seed);
        if (ec_key_import_raw_private(EC_KEY_ED25519, seed, sizeof(seed), &a->key, NULL) != EC_OK)
            EC_ASSERT(!"a 32-byte seed imports");
        ec_buf_reset(&pem);
        ec_key_write_public_pem(a->key, &pem, NULL);
        struct ec_buf esc;
        ec_buf_init(&esc, 0);
        ec_buf_json_escape(&esc, pem.data, pem.len);
        a->pem_json = ec_buf_detach(&esc, NULL);
    }
    ec_buf_release(&pem);
    int status = 0;
    if (o.do_register || o.mode == M_REGISTER) {
        struct sim_opts ro = o;
        ro.presign = 0;
        status = run_mode(&ro, agents, M_REGISTER, &addr, addrlen, o.mode != M_REGISTER);
        if (status != 0 && o.mode != M_REGISTER)
            fprintf(stderr, "edgecoder agent-sim: registering the agents failed\n");
    }
    if (o.mode != M_REGISTER && status == 0)
        status = run_mode(&o, agents, o.mode, &addr, addrlen, false);
    for (int i = 0; i < o.agents; i++) {
        ec_key_free(agents[i].key);
        free(agents[i].pem_json);
    }
    free(agents);
    return status;
}
