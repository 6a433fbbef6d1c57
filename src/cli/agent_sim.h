/* The agent simulator's event loop (agent_sim_loop.c), shared with its command
 * (cmd_agent_sim.c): many plain-HTTP/1.1 connections on one epoll per thread, each carrying one
 * request at a time, fed by a request source that the mode (heartbeat, rate, cycle, register)
 * implements. */
#ifndef EC_CLI_AGENT_SIM_H
#define EC_CLI_AGENT_SIM_H

#include "common/ec_buf.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct sim_conn;

/* One request: the bytes to send (owned by the source, valid until done is called) and when it
 * counts from (a rate mode's scheduled time, so queueing in the simulator counts too). */
struct sim_req {
    const char *data;
    size_t len;
    int64_t start_us;
    int agent;
    int kind;
};

struct sim_source {
    /* Fills *req for connection index conn; false when there is nothing to send now. */
    bool (*next)(void *ud, int conn, int64_t now_us, struct sim_req *req);
    /* The answer to req (status 0: the connection failed). */
    void (*done)(void *ud, int conn, const struct sim_req *req, int status, const char *body,
                 size_t len, int64_t now_us);
    /* When next may have something again (rate mode); 0: whenever a connection frees. */
    int64_t (*next_due_us)(void *ud);
    /* True once no new request will come (the loop ends when nothing is in flight). */
    bool (*finished)(void *ud, int64_t now_us);
    void *ud;
};

struct sim_loop_opts {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int conns;          /* connections (and requests in flight) of this loop */
    bool keep_alive;    /* false: a new connection per request */
    int64_t timeout_us; /* per request */
};

struct sim_loop_stats {
    uint64_t connects, connect_errors, timeouts;
};

/* Runs until the source is finished and nothing is in flight. */
void sim_loop_run(const struct sim_loop_opts *o, const struct sim_source *src,
                  struct sim_loop_stats *stats);

int64_t sim_now_us(void);

#endif
