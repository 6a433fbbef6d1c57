/* The agent simulator's event loop: non-blocking sockets on one epoll, one request in flight per
 * connection, HTTP/1.1 responses parsed just enough (status, Content-Length, Connection: close).
 * A reused keep-alive connection that the server closed while idle is retried once. */
#include "cli/agent_sim.h"
#include "common/ec_mem.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define IN_MAX (8u << 20)

struct sim_conn {
    int fd;
    bool busy, connected, reused, retried;
    struct sim_req req;
    size_t sent;
    struct ec_buf in;
    size_t head_len; /* 0 until the headers are complete */
    long content_length;
    int status;
    bool close_after;
    int64_t sent_at_us;
};

int64_t sim_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void conn_close(int ep, struct sim_conn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->connected = c->reused = false;
}

static void want(int ep, struct sim_conn *c, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = c };
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static bool conn_open(int ep, const struct sim_loop_opts *o, struct sim_conn *c,
                      struct sim_loop_stats *stats)
{
    c->fd = socket(o->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return false;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (const struct sockaddr *)&o->addr, o->addrlen) != 0 &&
        errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        stats->connect_errors++;
        return false;
    }
    stats->connects++;
    c->connected = false;
    c->reused = false;
    want(ep, c, EPOLLOUT);
    return true;
}

static void finish(int ep, const struct sim_loop_opts *o, const struct sim_source *src,
                   struct sim_conn *c, int status, int conn_index)
{
    const char *body = status > 0 ? c->in.data + c->head_len : NULL;
    size_t len = status > 0 ? (size_t)c->content_length : 0;
    c->busy = false;
    src->done(src->ud, conn_index, &c->req, status, body, len, sim_now_us());
    if (status <= 0 || c->close_after || !o->keep_alive)
        conn_close(ep, c);
    else
        c->reused = true;
}

static void start(int ep, const struct sim_loop_opts *o, struct sim_conn *c,
                  struct sim_loop_stats *stats)
{
    c->busy = true;
    c->sent = 0;
    c->head_len = 0;
    c->content_length = -1;
    c->status = 0;
    c->close_after = false;
    ec_buf_reset(&c->in);
    if (c->fd < 0 && !conn_open(ep, o, c, stats))
        return; /* reported by the caller's failure path on the next event */
    c->sent_at_us = sim_now_us();
    if (c->connected)
        want(ep, c, EPOLLOUT);
}

/* Parses the head once complete: status, Content-Length, Connection. */
static bool parse_head(struct sim_conn *c)
{
    char *end = strstr(c->in.data, "\r\n\r\n");
    if (end == NULL)
        return false;
    c->head_len = (size_t)(end - c->in.data) + 4;
    c->status = atoi(c->in.data + 9);
    c->content_length = 0;
    for (char *line = strstr(c->in.data, "\r\n"); line && line < end;
         line = strstr(line + 2, "\r\n")) {
        char *h = line + 2;
        if (strncasecmp(h, "content-length:", 15) == 0)
            c->content_length = strtol(h + 15, NULL, 10);
        else if (strncasecmp(h, "connection:", 11) == 0 && strstr(h, "close") != NULL &&
                 strstr(h, "close") < strstr(h, "\r\n"))
            c->close_after = true;
    }
    return true;
}

/* Returns false when the connection failed. */
static bool on_event(int ep, const struct sim_loop_opts *o, const struct sim_source *src,
                     struct sim_conn *c, uint32_t events, int idx)
{
    if (!c->connected && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        if (soerr != 0)
            return false;
        c->connected = true;
    }
    if (c->busy && c->sent < c->req.len) {
        ssize_t n = send(c->fd, c->req.data + c->sent, c->req.len - c->sent, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return false;
        if (n > 0)
            c->sent += (size_t)n;
        want(ep, c, c->sent < c->req.len ? EPOLLOUT : EPOLLIN);
        if (c->sent < c->req.len)
            return true;
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)) || !c->busy)
        return true;
    for (;;) {
        if (ec_buf_reserve(&c->in, 16384) != EC_OK)
            return false;
        ssize_t n = recv(c->fd, c->in.data + c->in.len, 16384, 0);
        if (n == 0)
            return false;
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK;
        c->in.len += (size_t)n;
        c->in.data[c->in.len] = '\0';
        if (c->head_len == 0 && !parse_head(c))
            continue;
        if (c->in.len >= c->head_len + (size_t)c->content_length) {
            finish(ep, o, src, c, c->status, idx);
            return true;
        }
    }
}

void sim_loop_run(const struct sim_loop_opts *o, const struct sim_source *src,
                  struct sim_loop_stats *stats)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    EC_ASSERT(ep >= 0);
    struct sim_conn *conns = ec_xcalloc((size_t)o->conns, sizeof(*conns));
    for (int i = 0; i < o->conns; i++) {
        conns[i].fd = -1;
        ec_buf_init(&conns[i].in, IN_MAX);
    }
    struct epoll_event events[256];
    int64_t last_timeout_check = sim_now_us();
    for (;;) {
        int64_t now = sim_now_us();
        int busy = 0;
        for (int i = 0; i < o->conns; i++) {
            struct sim_conn *c = &conns[i];
            if (!c->busy) {
                if (!src->next(src->ud, i, now, &c->req))
                    continue;
                c->retried = false;
                start(ep, o, c, stats);
                if (c->fd < 0) {
                    finish(ep, o, src, c, 0, i);
                    continue;
                }
            }
            busy++;
        }
        if (busy == 0 && src->finished(src->ud, now))
            break;
        int timeout_ms = 50;
        int64_t due = src->next_due_us ? src->next_due_us(src->ud) : 0;
        if (due > 0)
            timeout_ms = due <= now ? 0 : (int)((due - now + 999) / 1000);
        if (timeout_ms > 50)
            timeout_ms = 50;
        int n = epoll_wait(ep, events, 256, timeout_ms);
        for (int k = 0; k < n; k++) {
            struct sim_conn *c = events[k].data.ptr;
            int idx = (int)(c - conns);
            if (on_event(ep, o, src, c, events[k].events, idx))
                continue;
            /* A keep-alive connection the server closed while idle: once more, afresh. */
            bool retry = c->busy && c->reused && !c->retried && c->in.len == 0;
            conn_close(ep, c);
            if (retry) {
                c->retried = true;
                struct sim_req req = c->req;
                c->req = req;
                start(ep, o, c, stats);
                if (c->fd >= 0)
                    continue;
            }
            if (c->busy)
                finish(ep, o, src, c, 0, idx);
        }
        now = sim_now_us();
        if (now - last_timeout_check > 100000) {
            last_timeout_check = now;
            for (int i = 0; i < o->conns; i++)
                if (conns[i].busy && now - conns[i].sent_at_us > o->timeout_us) {
                    stats->timeouts++;
                    conn_close(ep, &conns[i]);
                    finish(ep, o, src, &conns[i], 0, i);
                }
        }
    }
    for (int i = 0; i < o->conns; i++) {
        conn_close(ep, &conns[i]);
        ec_buf_release(&conns[i].in);
    }
    free(conns);
    close(ep);
}
