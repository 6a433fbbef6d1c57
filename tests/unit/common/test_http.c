/* Tests for ec_http against a tiny HTTP/1.1 server running on threads inside the test: canned
 * answers chosen by path, a connection thread each, keep-alive, chunked streams with delays. */
#include "common/ec_http.h"
#include "common/ec_mem.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* ---- the server */

#define MAX_CONNS 128

struct conn {
    int fd;
    pthread_t thread;
};

struct server {
    int listen_fd;
    int port;
    pthread_t thread;
    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t cond;
    bool stopping;
    int accepts;
    struct conn conns[MAX_CONNS];
    int conn_count;
    /* the last request */
    char method[16];
    char path[256];
    char head[8192];
    char body[4096];
    size_t body_len;
    /* /stream: the client's callback saw line 1; the server looked before sending the last */
    bool first_line_seen;
    bool first_line_seen_before_last;
    /* /forever: a write failed because the client went away */
    bool peer_gone;
};

static struct server srv;

static void sleep_ms(int ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static bool send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        c += w;
        n -= (size_t)w;
    }
    return true;
}

static bool send_str(int fd, const char *s)
{
    return send_all(fd, s, strlen(s));
}

static bool send_response(int fd, int status, const char *ctype, const char *body,
                          const char *extra)
{
    char head[512];
    snprintf(head, sizeof(head),
             "HTTP/1.1 %d Canned\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s\r\n", status,
             ctype, strlen(body), extra != NULL ? extra : "");
    return send_str(fd, head) && send_str(fd, body);
}

static bool send_stream_head(int fd)
{
    return send_str(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n");
}

/* One chunk per call, so each is its own TCP write. */
static bool send_chunk(int fd, const char *data)
{
    char size[32];
    snprintf(size, sizeof(size), "%zx\r\n", strlen(data));
    return send_str(fd, size) && send_str(fd, data) && send_str(fd, "\r\n");
}

static bool send_last_chunk(int fd)
{
    return send_str(fd, "0\r\n\r\n");
}

/* Returns when the client closes (or the server stops and shuts the socket down). */
static void wait_peer_close(int fd)
{
    char b[256];
    while (recv(fd, b, sizeof(b), 0) > 0) {
    }
}

/* Handlers return whether the connection stays open for another request. */
static bool h_json(int fd)
{
    return send_response(fd, 200, "application/json; charset=utf-8",
                         "{\"hello\":\"world\",\"n\":42}", "X-Request-Id: abc123\r\n");
}

static bool h_echo(int fd)
{
    char body[4096];
    pthread_mutex_lock(&srv.lock);
    snprintf(body, sizeof(body), "%.*s", (int)srv.body_len, srv.body);
    pthread_mutex_unlock(&srv.lock);
    return send_response(fd, 200, "application/json", body, NULL);
}

static bool h_404(int fd)
{
    return send_response(fd, 404, "application/json", "{\"error\":\"no such model\"}", NULL);
}

static bool h_500(int fd)
{
    return send_response(fd, 500, "text/plain", "boom", NULL);
}

static bool h_badjson(int fd)
{
    return send_response(fd, 200, "application/json", "{not json", NULL);
}

static bool h_big(int fd)
{
    static char body[65537];
    memset(body, 'x', sizeof(body) - 1);
    send_response(fd, 200, "text/plain", body, NULL);
    return false;
}

/* No Content-Length: only the client's own counting can stop it. */
static bool h_big_chunked(int fd)
{
    char chunk[1025];
    memset(chunk, 'x', sizeof(chunk) - 1);
    chunk[sizeof(chunk) - 1] = '\0';
    send_stream_head(fd);
    for (int i = 0; i < 64 && send_chunk(fd, chunk); i++) {
    }
    send_last_chunk(fd);
    return false;
}

static bool h_hang(int fd)
{
    wait_peer_close(fd);
    return false;
}

/* Line 1 (CRLF), then wait until the client's callback has seen it; line 2 split across two
 * writes; line 3 without a trailing newline. */
static bool h_stream(int fd)
{
    send_stream_head(fd);
    send_chunk(fd, "{\"n\":1}\r\n");
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 3;
    pthread_mutex_lock(&srv.lock);
    while (!srv.first_line_seen &&
           pthread_cond_timedwait(&srv.cond, &srv.lock, &until) != ETIMEDOUT) {
    }
    srv.first_line_seen_before_last = srv.first_line_seen;
    pthread_mutex_unlock(&srv.lock);
    send_chunk(fd, "{\"n\":");
    sleep_ms(50);
    send_chunk(fd, "2}\n");
    sleep_ms(20);
    send_chunk(fd, "{\"n\":3}");
    return send_last_chunk(fd);
}

static bool h_forever(int fd)
{
    send_stream_head(fd);
    for (int i = 0; i < 300; i++) {
        if (!send_chunk(fd, "{\"tick\":true}\n")) {
            pthread_mutex_lock(&srv.lock);
            srv.peer_gone = true;
            pthread_mutex_unlock(&srv.lock);
            break;
        }
        sleep_ms(10);
    }
    return false;
}

static bool h_stall(int fd)
{
    send_stream_head(fd);
    send_chunk(fd, "{\"n\":1}\n");
    wait_peer_close(fd);
    return false;
}

static bool h_cut(int fd)
{
    send_stream_head(fd);
    send_chunk(fd, "{\"n\":1}\n");
    sleep_ms(20);
    shutdown(fd, SHUT_RDWR);
    return false;
}

static bool h_longline(int fd)
{
    char line[102];
    memset(line, 'a', 100);
    line[100] = '\n';
    line[101] = '\0';
    send_stream_head(fd);
    send_chunk(fd, line);
    return send_last_chunk(fd);
}

static const struct {
    const char *path;
    bool (*fn)(int fd);
} routes[] = {
    { "/json", h_json },
    { "/echo", h_echo },
    { "/status/404", h_404 },
    { "/status/500", h_500 },
    { "/badjson", h_badjson },
    { "/big", h_big },
    { "/big-chunked", h_big_chunked },
    { "/hang", h_hang },
    { "/stream", h_stream },
    { "/forever", h_forever },
    { "/stall", h_stall },
    { "/cut", h_cut },
    { "/longline", h_longline },
};

static bool dispatch(int fd, const char *path)
{
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(routes[i].path, path) == 0)
            return routes[i].fn(fd);
    }
    return send_response(fd, 404, "text/plain", "no route", NULL);
}

static void *conn_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[16384];
    size_t len = 0;
    for (;;) {
        char *end;
        while ((end = memmem(buf, len, "\r\n\r\n", 4)) == NULL) {
            if (len == sizeof(buf))
                return NULL;
            ssize_t n = recv(fd, buf + len, sizeof(buf) - len, 0);
            if (n <= 0)
                return NULL;
            len += (size_t)n;
        }
        size_t head_len = (size_t)(end + 4 - buf);
        char head[8192];
        snprintf(head, sizeof(head), "%.*s", (int)head_len, buf);
        size_t body_len = 0;
        const char *cl = strcasestr(head, "\r\ncontent-length:");
        if (cl != NULL)
            body_len = strtoul(cl + 17, NULL, 10);
        if (head_len + body_len > sizeof(buf))
            return NULL;
        while (len < head_len + body_len) {
            ssize_t n = recv(fd, buf + len, sizeof(buf) - len, 0);
            if (n <= 0)
                return NULL;
            len += (size_t)n;
        }
        char method[16] = "", path[256] = "";
        sscanf(head, "%15s %255s", method, path);
        pthread_mutex_lock(&srv.lock);
        snprintf(srv.method, sizeof(srv.method), "%s", method);
        snprintf(srv.path, sizeof(srv.path), "%s", path);
        snprintf(srv.head, sizeof(srv.head), "%s", head);
        srv.body_len = body_len < sizeof(srv.body) ? body_len : sizeof(srv.body) - 1;
        memcpy(srv.body, buf + head_len, srv.body_len);
        srv.body[srv.body_len] = '\0';
        pthread_mutex_unlock(&srv.lock);
        memmove(buf, buf + head_len + body_len, len - head_len - body_len);
        len -= head_len + body_len;
        if (!dispatch(fd, path))
            return NULL;
    }
}

static void *accept_main(void *arg)
{
    for (;;) {
        pthread_mutex_lock(&srv.lock);
        bool stopping = srv.stopping;
        pthread_mutex_unlock(&srv.lock);
        if (stopping)
            return NULL;
        struct pollfd pfd = { .fd = srv.listen_fd, .events = POLLIN };
        if (poll(&pfd, 1, 20) <= 0)
            continue;
        int fd = accept(srv.listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        pthread_mutex_lock(&srv.lock);
        srv.accepts++;
        if (srv.conn_count == MAX_CONNS) {
            pthread_mutex_unlock(&srv.lock);
            close(fd);
            continue;
        }
        struct conn *c = &srv.conns[srv.conn_count++];
        c->fd = fd;
        pthread_create(&c->thread, NULL, conn_main, (void *)(intptr_t)fd);
        pthread_mutex_unlock(&srv.lock);
    }
}

/* ---- a TLS server: a self-signed certificate for 127.0.0.1, serving one connection at a time */

struct tls_server {
    int listen_fd;
    int port;
    pthread_t thread;
    SSL_CTX *ctx;
    char dir[64];
    char cert_path[128];
    char key_path[128];
    /* guarded by srv.lock */
    int handshakes;
    bool client_cert_seen;
};

static struct tls_server tsrv;

/* The same certificate serves as the server's, the client's, and the CA both sides trust. */
static bool tls_make_cert(EVP_PKEY **key_out, X509 **cert_out)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (key == NULL || x == NULL)
        return false;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"127.0.0.1", -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *san = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "IP:127.0.0.1");
    if (san == NULL)
        return false;
    X509_add_ext(x, san, -1);
    X509_EXTENSION_free(san);
    X509_sign(x, key, EVP_sha256());
    *key_out = key;
    *cert_out = x;
    return true;
}

static bool tls_write_pem(EVP_PKEY *key, X509 *cert)
{
    snprintf(tsrv.dir, sizeof(tsrv.dir), "/tmp/ec_http_test.XXXXXX");
    if (mkdtemp(tsrv.dir) == NULL)
        return false;
    snprintf(tsrv.cert_path, sizeof(tsrv.cert_path), "%s/cert.pem", tsrv.dir);
    snprintf(tsrv.key_path, sizeof(tsrv.key_path), "%s/key.pem", tsrv.dir);
    FILE *cf = fopen(tsrv.cert_path, "w");
    FILE *kf = fopen(tsrv.key_path, "w");
    bool ok = cf != NULL && kf != NULL && PEM_write_X509(cf, cert) == 1 &&
              PEM_write_PrivateKey(kf, key, NULL, NULL, 0, NULL, NULL) == 1;
    if (cf != NULL)
        fclose(cf);
    if (kf != NULL)
        fclose(kf);
    return ok;
}

static void tls_serve(int fd)
{
    struct timeval tv = { .tv_sec = 2 }; /* a stuck client must not stall the suite */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    SSL *ssl = SSL_new(tsrv.ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) == 1) {
        X509 *peer = SSL_get1_peer_certificate(ssl);
        pthread_mutex_lock(&srv.lock);
        tsrv.handshakes++;
        tsrv.client_cert_seen = peer != NULL;
        pthread_mutex_unlock(&srv.lock);
        X509_free(peer);
        char buf[4096];
        size_t len = 0;
        int n;
        while (len < sizeof(buf) - 1 &&
               (n = SSL_read(ssl, buf + len, (int)(sizeof(buf) - 1 - len))) > 0) {
            len += (size_t)n;
            buf[len] = '\0';
            if (strstr(buf, "\r\n\r\n") != NULL) {
                static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                             "Content-Length: 12\r\nConnection: close\r\n\r\n"
                                             "{\"tls\":true}";
                SSL_write(ssl, answer, (int)strlen(answer));
                SSL_shutdown(ssl);
                break;
            }
        }
    }
    SSL_free(ssl);
    ERR_clear_error();
    close(fd);
}

static void *tls_accept_main(void *arg)
{
    for (;;) {
        pthread_mutex_lock(&srv.lock);
        bool stopping = srv.stopping;
        pthread_mutex_unlock(&srv.lock);
        if (stopping)
            return NULL;
        struct pollfd pfd = { .fd = tsrv.listen_fd, .events = POLLIN };
        if (poll(&pfd, 1, 20) <= 0)
            continue;
        int fd = accept(tsrv.listen_fd, NULL, NULL);
        if (fd >= 0)
            tls_serve(fd);
    }
}

static int listen_loopback(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof(addr);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &alen) != 0)
        return -1;
    *port = ntohs(addr.sin_port);
    return fd;
}

static int tls_server_start(void)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    if (!tls_make_cert(&key, &cert) || !tls_write_pem(key, cert))
        return -1;
    tsrv.ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate(tsrv.ctx, cert);
    SSL_CTX_use_PrivateKey(tsrv.ctx, key);
    /* Asks for a client certificate (mTLS) without requiring one, and records whether it came. */
    X509_STORE_add_cert(SSL_CTX_get_cert_store(tsrv.ctx), cert);
    SSL_CTX_set_verify(tsrv.ctx, SSL_VERIFY_PEER, NULL);
    X509_free(cert);
    EVP_PKEY_free(key);
    tsrv.listen_fd = listen_loopback(&tsrv.port);
    if (tsrv.listen_fd < 0)
        return -1;
    return pthread_create(&tsrv.thread, NULL, tls_accept_main, NULL) == 0 ? 0 : -1;
}

static void tls_server_stop(void)
{
    pthread_join(tsrv.thread, NULL);
    close(tsrv.listen_fd);
    SSL_CTX_free(tsrv.ctx);
    unlink(tsrv.cert_path);
    unlink(tsrv.key_path);
    rmdir(tsrv.dir);
}

static int server_start(void **state)
{
    if (ec_http_global_init(NULL) != EC_OK)
        return -1;
    memset(&srv, 0, sizeof(srv));
    pthread_mutex_init(&srv.lock, NULL);
    pthread_cond_init(&srv.cond, NULL);
    srv.listen_fd = listen_loopback(&srv.port);
    if (srv.listen_fd < 0 || tls_server_start() != 0)
        return -1;
    return pthread_create(&srv.thread, NULL, accept_main, NULL) == 0 ? 0 : -1;
}

static int server_stop(void **state)
{
    pthread_mutex_lock(&srv.lock);
    srv.stopping = true;
    for (int i = 0; i < srv.conn_count; i++)
        shutdown(srv.conns[i].fd, SHUT_RDWR);
    pthread_cond_broadcast(&srv.cond);
    pthread_mutex_unlock(&srv.lock);
    pthread_join(srv.thread, NULL);
    tls_server_stop();
    for (int i = 0; i < srv.conn_count; i++) {
        pthread_join(srv.conns[i].thread, NULL);
        close(srv.conns[i].fd);
    }
    close(srv.listen_fd);
    pthread_cond_destroy(&srv.cond);
    pthread_mutex_destroy(&srv.lock);
    ec_http_global_cleanup();
    return 0;
}

static int server_accepts(void)
{
    pthread_mutex_lock(&srv.lock);
    int n = srv.accepts;
    pthread_mutex_unlock(&srv.lock);
    return n;
}

/* ---- helpers */

struct fixture {
    struct ec_http_client *client;
    struct ec_http_response resp;
    struct ec_err err;
    char url[128];
};

static int fixture_setup(void **state)
{
    struct fixture *f = ec_xcalloc(1, sizeof(*f));
    f->client = ec_http_client_new(&(struct ec_http_client_opts){ .user_agent = "ec-test" });
    ec_http_response_init(&f->resp);
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    struct fixture *f = *state;
    ec_http_response_release(&f->resp);
    ec_http_client_free(f->client);
    free(f);
    return 0;
}

static const char *url_of(struct fixture *f, const char *path)
{
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d%s", srv.port, path);
    return f->url;
}

struct lines {
    int count;
    char text[8][128];
    int cancel_after; /* 0: never */
};

static enum ec_status collect_line(void *ctx, const char *line, size_t len, struct ec_err *err)
{
    struct lines *l = ctx;
    assert_int_equal(strlen(line), len);
    if (l->count < 8)
        snprintf(l->text[l->count], sizeof(l->text[0]), "%s", line);
    l->count++;
    if (l->count == 1) {
        pthread_mutex_lock(&srv.lock);
        srv.first_line_seen = true;
        pthread_cond_broadcast(&srv.cond);
        pthread_mutex_unlock(&srv.lock);
    }
    if (l->cancel_after > 0 && l->count >= l->cancel_after)
        return EC_ECONFLICT;
    return EC_OK;
}

/* ---- tests */

static void test_json_get(void **state)
{
    struct fixture *f = *state;
    const struct ec_http_header hdrs[] = { { "X-Trace", "t1" } };
    struct ec_http_request req = { .url = url_of(f, "/json"), .headers = hdrs, .header_count = 1 };
    assert_int_equal(ec_http_json(f->client, &req, NULL, &f->resp, &f->err), EC_OK);
    assert_int_equal(f->resp.status, 200);
    assert_non_null(f->resp.json);
    assert_string_equal(json_string_value(json_object_get(f->resp.json, "hello")), "world");
    assert_int_equal(json_integer_value(json_object_get(f->resp.json, "n")), 42);
    assert_string_equal(ec_http_response_content_type(&f->resp), "application/json; charset=utf-8");
    assert_string_equal(ec_http_response_header(&f->resp, "x-request-id"), "abc123");
    assert_null(ec_http_response_header(&f->resp, "x-missing"));
    assert_string_equal(f->resp.host, "127.0.0.1");

    pthread_mutex_lock(&srv.lock);
    assert_string_equal(srv.method, "GET");
    assert_string_equal(srv.path, "/json");
    assert_non_null(strstr(srv.head, "\r\nX-Trace: t1\r\n"));
    assert_non_null(strstr(srv.head, "\r\nAccept: application/json\r\n"));
    assert_non_null(strstr(srv.head, "\r\nUser-Agent: ec-test\r\n"));
    pthread_mutex_unlock(&srv.lock);
}

static void test_json_post(void **state)
{
    struct fixture *f = *state;
    const struct ec_http_header hdrs[] = { { "Authorization", "Bearer s3cret" } };
    struct ec_http_request req = {
        .method = EC_HTTP_POST, .url = url_of(f, "/echo"), .headers = hdrs, .header_count = 1
    };
    json_t *body = json_pack("{s:s, s:i}", "q", "hi", "k", 7);
    assert_int_equal(ec_http_json(f->client, &req, body, &f->resp, &f->err), EC_OK);
    json_decref(body);
    assert_int_equal(f->resp.status, 200);
    assert_string_equal(json_string_value(json_object_get(f->resp.json, "q")), "hi");
    pthread_mutex_lock(&srv.lock);
    assert_string_equal(srv.method, "POST");
    assert_string_equal(srv.body, "{\"q\":\"hi\",\"k\":7}");
    assert_non_null(strstr(srv.head, "\r\nContent-Type: application/json\r\n"));
    assert_non_null(strstr(srv.head, "\r\nAuthorization: Bearer s3cret\r\n"));
    assert_null(strstr(srv.head, "Expect:"));
    pthread_mutex_unlock(&srv.lock);

    /* JSON text instead of a json_t, on the same response object. */
    req.body = "[1,2,3]";
    req.body_len = 7;
    assert_int_equal(ec_http_json(f->client, &req, NULL, &f->resp, &f->err), EC_OK);
    assert_true(json_is_array(f->resp.json));
    assert_int_equal(json_array_size(f->resp.json), 3);
    pthread_mutex_lock(&srv.lock);
    assert_string_equal(srv.body, "[1,2,3]");
    pthread_mutex_unlock(&srv.lock);
}

static void test_error_status(void **state)
{
    struct fixture *f = *state;
    struct ec_http_request req = { .url = url_of(f, "/status/404") };
    assert_int_equal(ec_http_json(f->client, &req, NULL, &f->resp, &f->err), EC_OK);
    assert_int_equal(f->resp.status, 404);
    assert_string_equal(json_string_value(json_object_get(f->resp.json, "error")), "no such model");
    assert_int_equal(ec_http_response_check(&f->resp, &f->err), EC_EUPSTREAM);

    req.url = url_of(f, "/status/500");
    assert_int_equal(ec_http_do(f->client, &req, &f->resp, &f->err), EC_OK);
    assert_int_equal(f->resp.status, 500);
    assert_string_equal(f->resp.body.data, "boom");
    assert_null(f->resp.json);
    assert_int_equal(ec_http_response_check(&f->resp, &f->err), EC_EUPSTREAM);
    assert_string_equal(f->err.msg, "\"127.0.0.1\" answered HTTP 500");
}

static void test_bad_json(void **state)
{
    struct fixture *f = *state;
    struct ec_http_request req = { .url = url_of(f, "/badjson") };
    assert_int_equal(ec_http_json(f->client, &req, NULL, &f->resp, &f->err), EC_EUPSTREAM);
    assert_int_equal(f->resp.status, 200);
    assert_string_equal(f->resp.body.data, "{not json");
    assert_null(f->resp.json);
    assert_non_null(strstr(f->err.msg, "cannot parse response from \"127.0.0.1\" as JSON"));
}

static void test_size_cap(void **state)
{
    struct fixture *f = *state;
    struct ec_http_request req = { .url = url_of(f, "/big"), .max_response_bytes = 1024 };
    assert_int_equal(ec_http_do(f->client, &req, &f->resp, &f->err), EC_ETOOBIG);
    assert_string_equal(f->err.msg, "response from \"127.0.0.1\" exceeds 1024 bytes");

    req.url = url_of(f, "/big-chunked");
    assert_int_equal(ec_http_do(f->client, &req, &f->resp, &f->err), EC_ETOOBIG);
    assert_string_equal(f->err.msg, "response from \"127.0.0.1\" exceeds 1024 bytes");
    assert_true(f->resp.body.len <= 1024);
}

static void test_timeout(void **state)
{
    struct fixture *f = *state;
    struct ec_http_request req = { .url = url_of(f, "/hang"), .timeout_ms = 300 };
    int64_t t0 = ec_mono_ms();
    assert_int_equal(ec_http_do(f->client, &req, &f->resp, &f->err), EC_ETIMEOUT);
    int64_t took = ec_mono_ms() - t0;
    assert_true(took >= 250 && took < 1500);
    assert_non_null(strstr(f->err.msg, "timed out talking to \"127.0.0.1\""));
}

static void test_refused(void **state)
{
    struct fixture *f = *state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof(addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &alen), 0);
    close(fd); /* nothing listens on the port now */
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/json", ntohs(addr.sin_port));
    struct ec_http_request req = { .url = f->url };
    int64_t t0 = ec_mono_ms();
    assert_int_equal(ec_http_do(f->client, &req, &f->resp, &f->err), EC_EUNAVAIL);
    assert_true(ec_mono_ms() - t0 < 1000);
    assert_non_null(strstr(f->err.msg, "cannot connect to \"127.0.0.1\""));
    assert_int_equal(f->resp.status, 0);
}

static void test_bad_header(void **state)
{
    struct fixture *f = *state;
    const struct ec_http_header hdrs[] = { { "Authorization", "Bearer x\r\nX-Evil: 1" } };
    struct ec_http_request req = { .url = url_of(f, "/json"), .headers = hdrs, .header_count = 1 };
    int before = server_accepts();
    assert_int_equal(ec_http_do(f->client, &req, &f->resp, &f->err), EC_EINVAL);
    assert_string_equal(f->err.msg, "invalid request header \"Authorization\"");
    assert_int_equal(server_accepts(), before);
}

static void test_missing_ca_file(void **state)
{
    struct fixture *f = *state;
    const struct ec_http_tls tls = { .ca_file = "/nonexistent/ca.pem" };
    snprintf(f->url, sizeof(f->url), "https://127.0.0.1:%d/json", srv.port);
    struct ec_http_request req = { .url = f->url, .tls = &tls, .timeout_ms = 2000 };
    enum ec_status st = ec_http_do(f->client, &req, &f->resp, &f->err);
    assert_int_equal(st, EC_EINVAL);
    assert_non_null(strstr(f->err.msg, "cannot load the CA file for \"127.0.0.1\""));
}

static void test_unsupported_scheme(void **state)
{
    struct fixture *f = *state;
    struct ec_http_request req = { .url = "file:///etc/passwd" };
    assert_int_equal(ec_http_do(f->client, &req, &f->resp, &f->err), EC_EINVAL);
}

static void test_tls_unknown_ca(void **state)
{
    struct fixture *f = *state;
    snprintf(f->url, sizeof(f->url), "https://127.0.0.1:%d/json", tsrv.port);
    struct ec_http_request req = { .url = f->url, .timeout_ms = 3000 };
    assert_int_equal(ec_http_do(f->client, &req, &f->resp, &f->err), EC_EUNAVAIL);
    assert_non_null(strstr(f->err.msg, "certificate verification failed for \"127.0.0.1\""));
}

/* The dev-certificate path: trust a named CA, present a client certificate; set on the client. */
static void test_tls_ca_file_and_client_cert(void **state)
{
    struct fixture *f = *state;
    struct ec_http_client *client = ec_http_client_new(&(struct ec_http_client_opts){
        .tls = {
            .ca_file = tsrv.cert_path, .cert_file = tsrv.cert_path, .key_file = tsrv.key_path } });
    pthread_mutex_lock(&srv.lock);
    tsrv.client_cert_seen = false;
    pthread_mutex_unlock(&srv.lock);
    snprintf(f->url, sizeof(f->url), "https://127.0.0.1:%d/json", tsrv.port);
    struct ec_http_request req = { .url = f->url, .timeout_ms = 3000 };
    enum ec_status st = ec_http_json(client, &req, NULL, &f->resp, &f->err);
    ec_http_client_free(client);
    assert_int_equal(st, EC_OK);
    assert_int_equal(f->resp.status, 200);
    assert_true(json_is_true(json_object_get(f->resp.json, "tls")));
    pthread_mutex_lock(&srv.lock);
    assert_true(tsrv.client_cert_seen);
    pthread_mutex_unlock(&srv.lock);
}

static void test_stream_incremental(void **state)
{
    struct fixture *f = *state;
    pthread_mutex_lock(&srv.lock);
    srv.first_line_seen = srv.first_line_seen_before_last = false;
    pthread_mutex_unlock(&srv.lock);
    struct lines l = { 0 };
    struct ec_http_request req = { .method = EC_HTTP_POST, .url = url_of(f, "/stream") };
    assert_int_equal(ec_http_stream(f->client, &req, collect_line, &l, &f->resp, &f->err), EC_OK);
    assert_int_equal(f->resp.status, 200);
    assert_string_equal(ec_http_response_content_type(&f->resp), "application/x-ndjson");
    assert_int_equal(l.count, 3);
    assert_string_equal(l.text[0], "{\"n\":1}"); /* "\r\n" stripped */
    assert_string_equal(l.text[1], "{\"n\":2}"); /* split across two writes */
    assert_string_equal(l.text[2], "{\"n\":3}"); /* no trailing newline */
    pthread_mutex_lock(&srv.lock);
    assert_true(srv.first_line_seen_before_last); /* delivered as it arrived */
    pthread_mutex_unlock(&srv.lock);
}

static void test_stream_cancel(void **state)
{
    struct fixture *f = *state;
    pthread_mutex_lock(&srv.lock);
    srv.peer_gone = false;
    pthread_mutex_unlock(&srv.lock);
    struct lines l = { .cancel_after = 2 };
    struct ec_http_request req = { .url = url_of(f, "/forever") };
    int64_t t0 = ec_mono_ms();
    assert_int_equal(ec_http_stream(f->client, &req, collect_line, &l, &f->resp, &f->err),
                     EC_ECONFLICT);
    assert_true(ec_mono_ms() - t0 < 1000);
    assert_int_equal(l.count, 2);
    assert_string_equal(f->err.msg, "stream from \"127.0.0.1\" cancelled by its consumer");
    /* The connection is closed, not drained: the server's writes start failing. */
    bool gone = false;
    for (int i = 0; i < 200 && !gone; i++) {
        pthread_mutex_lock(&srv.lock);
        gone = srv.peer_gone;
        pthread_mutex_unlock(&srv.lock);
        if (!gone)
            sleep_ms(10);
    }
    assert_true(gone);
}

static void test_stream_idle_timeout(void **state)
{
    struct fixture *f = *state;
    struct lines l = { 0 };
    struct ec_http_request req = { .url = url_of(f, "/stall"), .idle_timeout_ms = 200 };
    int64_t t0 = ec_mono_ms();
    assert_int_equal(ec_http_stream(f->client, &req, collect_line, &l, &f->resp, &f->err),
                     EC_ETIMEOUT);
    int64_t took = ec_mono_ms() - t0;
    assert_true(took >= 150 && took < 1000);
    assert_int_equal(l.count, 1);
    assert_string_equal(f->err.msg, "no data from \"127.0.0.1\" for 200 ms");
}

static void test_stream_first_byte_timeout(void **state)
{
    struct fixture *f = *state;
    struct lines l = { 0 };
    struct ec_http_request req = { .url = url_of(f, "/hang"), .first_byte_timeout_ms = 200 };
    int64_t t0 = ec_mono_ms();
    assert_int_equal(ec_http_stream(f->client, &req, collect_line, &l, &f->resp, &f->err),
                     EC_ETIMEOUT);
    assert_true(ec_mono_ms() - t0 < 1000);
    assert_int_equal(l.count, 0);
    assert_string_equal(f->err.msg, "no response from \"127.0.0.1\" within 200 ms");
}

static void test_stream_disconnect(void **state)
{
    struct fixture *f = *state;
    struct lines l = { 0 };
    struct ec_http_request req = { .url = url_of(f, "/cut"), .timeout_ms = 3000 };
    int64_t t0 = ec_mono_ms();
    assert_int_equal(ec_http_stream(f->client, &req, collect_line, &l, &f->resp, &f->err),
                     EC_EUNAVAIL);
    assert_true(ec_mono_ms() - t0 < 1000);
    assert_int_equal(l.count, 1);
    assert_non_null(strstr(f->err.msg, "\"127.0.0.1\""));
}

static void test_stream_line_cap(void **state)
{
    struct fixture *f = *state;
    struct lines l = { 0 };
    struct ec_http_request req = { .url = url_of(f, "/longline"), .max_line_bytes = 16 };
    assert_int_equal(ec_http_stream(f->client, &req, collect_line, &l, &f->resp, &f->err),
                     EC_ETOOBIG);
    assert_int_equal(l.count, 0);
    assert_string_equal(f->err.msg, "line in stream from \"127.0.0.1\" exceeds 16 bytes");
}

/* An error answer is collected like ec_http_do's, not streamed. */
static void test_stream_error_status(void **state)
{
    struct fixture *f = *state;
    struct lines l = { 0 };
    struct ec_http_request req = { .url = url_of(f, "/status/404") };
    assert_int_equal(ec_http_stream(f->client, &req, collect_line, &l, &f->resp, &f->err), EC_OK);
    assert_int_equal(f->resp.status, 404);
    assert_int_equal(l.count, 0);
    assert_string_equal(json_string_value(json_object_get(f->resp.json, "error")), "no such model");
}

static void test_keepalive(void **state)
{
    struct fixture *f = *state;
    struct ec_http_request req = { .url = url_of(f, "/json") };
    int before = server_accepts();
    assert_int_equal(ec_http_do(f->client, &req, &f->resp, &f->err), EC_OK);
    assert_int_equal(ec_http_do(f->client, &req, &f->resp, &f->err), EC_OK);
    struct lines l = { 0 };
    req.url = url_of(f, "/longline");
    assert_int_equal(ec_http_stream(f->client, &req, collect_line, &l, &f->resp, &f->err), EC_OK);
    assert_int_equal(l.count, 1);
    assert_int_equal(server_accepts() - before, 1);
}

struct hammer {
    struct ec_http_client *client;
    const char *url;
    int failures;
};

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    struct ec_http_response resp;
    ec_http_response_init(&resp);
    struct ec_http_request req = { .url = h->url };
    for (int i = 0; i < 20; i++) {
        struct ec_err err;
        if (ec_http_json(h->client, &req, NULL, &resp, &err) != EC_OK || resp.status != 200 ||
            resp.json == NULL) {
            fprintf(stderr, "hammer: %s (status %ld)\n", err.msg, resp.status);
            h->failures++;
        }
    }
    ec_http_response_release(&resp);
    return NULL;
}

static void test_shared_client_threads(void **state)
{
    struct fixture *f = *state;
    struct hammer hs[4];
    pthread_t threads[4];
    const char *url = url_of(f, "/json"); /* once: the threads read it */
    for (int i = 0; i < 4; i++) {
        hs[i] = (struct hammer){ .client = f->client, .url = url };
        pthread_create(&threads[i], NULL, hammer_main, &hs[i]);
    }
    int failures = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        failures += hs[i].failures;
    }
    assert_int_equal(failures, 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)

int main(void)
{
    /* A proxy from the environment would swallow requests to 127.0.0.1. */
    static const char *const proxies[] = { "http_proxy",  "HTTP_PROXY", "https_proxy",
                                           "HTTPS_PROXY", "all_proxy",  "ALL_PROXY" };
    for (size_t i = 0; i < sizeof(proxies) / sizeof(proxies[0]); i++)
        unsetenv(proxies[i]);
    const struct CMUnitTest tests[] = {
        T(test_json_get),
        T(test_json_post),
        T(test_error_status),
        T(test_bad_json),
        T(test_size_cap),
        T(test_timeout),
        T(test_refused),
        T(test_bad_header),
        T(test_missing_ca_file),
        T(test_unsupported_scheme),
        T(test_tls_unknown_ca),
        T(test_tls_ca_file_and_client_cert),
        T(test_stream_incremental),
        T(test_stream_cancel),
        T(test_stream_idle_timeout),
        T(test_stream_first_byte_timeout),
        T(test_stream_disconnect),
        T(test_stream_line_cap),
        T(test_stream_error_status),
        T(test_keepalive),
        T(test_shared_client_threads),
    };
    return cmocka_run_group_tests(tests, server_start, server_stop);
}
