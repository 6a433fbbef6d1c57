/* Internals of the agent registry shared by coord_agents.c (the table, lookups, registration,
 * heartbeats) and coord_agents_scan.c (what walks every shard: liveness flushes, listings). */
#ifndef COORD_AGENTS_INT_H
#define COORD_AGENTS_INT_H

#include "coord/coord.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define COORD__AGENT_SHARDS 64
/* A heartbeat that changes nothing but liveness (and power telemetry) is written to the database
 * at most this often per agent: the database's last_seen serves other machines and the control
 * plane, whose online window is minutes, while a write per heartbeat would cost PostgreSQL a row
 * version per agent per second. A change of model, swap state or sandbox is written at once. */
#define COORD__LIVENESS_PERSIST_MS 10000
#define ACTIVE_MODEL_MAX           128
#define PARAM_SIZE_MAX             32

struct coord_agent_key {
    _Atomic int refs;
    struct ec_key *key;
    char *pem;
};

/* One agent. Guarded by its shard's lock. */
struct coord__agent {
    struct coord__agent *next;
    uint64_t hash;
    char *id;
    struct coord_agent_key *key; /* NULL: none */
    char *x25519;                /* NULL: none */
    char *device_id, *os, *version, *mode, *provider, *client_type, *sandbox_mode;
    char *owner_email, *enrollment_reason;
    char *revoked; /* the portal's refusal since the last allowed registration, or NULL */
    int max_concurrent;
    char *power_telemetry; /* JSON text or NULL */
    char active_model[ACTIVE_MODEL_MAX + 1];
    char param_size[PARAM_SIZE_MAX + 1];
    bool swap;
    int64_t registered_at_ms, last_seen_ms;
    uint8_t reg_fp[COORD_REGISTER_FP_LEN]; /* of the last allowed registration here */
    int64_t reg_at_ms;                     /* 0: none here yet */
    int leases;      /* leases this machine handed out and has not seen end; -1: unknown */
    uint32_t claims; /* claims handed out, ever (tells a flush that a claim raced it) */
    bool dirty;      /* something to write at the next flush */
    int64_t persisted_seen_ms; /* last_seen_ms as last written to the database */
    bool seen;                 /* a heartbeat since the last flush: renew its leases */
};

struct coord__shard {
    pthread_mutex_t lock;
    struct coord__agent **buckets;
    size_t nbuckets, count;
};

struct coord_agents {
    struct ec_pg_pool *pool;
    int64_t online_window_ms;
    size_t max_agents;
    _Atomic size_t total;
    struct coord__shard shards[COORD__AGENT_SHARDS];
};

uint64_t coord__agent_hash(const char *s);
struct coord__shard *coord__agent_shard(struct coord_agents *a, uint64_t h);
/* Under the shard's lock. */
struct coord__agent *coord__agent_find(struct coord__shard *s, uint64_t h, const char *id);
void coord__copy_fixed(char *dst, size_t cap, const char *src);
/* Sets *field to a copy of value unless value is NULL or the same text. */
void coord__replace(char **field, const char *value);

#endif
