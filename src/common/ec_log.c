/* JSON-lines logger. Each line is built on the stack and written with one write(2), so lines
 * from different threads never interleave. With buffering on (ec_log_set_buffered), debug and
 * info lines collect in a per-thread buffer written when full, by a flusher every few hundred
 * milliseconds, at thread exit and at process exit; a warning or error flushes its thread's
 * buffer first, so a thread's lines keep their order. A per-request access line then costs no
 * syscall of its own, which is most of an edge request's budget. */
#include "common/ec_log.h"
#include "common/ec_buf.h"
#include "common/ec_mem.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static const char *log_svc = "edgecoder";
static enum ec_log_level log_min = EC_LOG_INFO;
static int log_fd = STDERR_FILENO;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

/* One thread's pending lines; mu is taken by the owner per line and by the flusher per pass. */
struct log_tbuf {
    pthread_mutex_t mu;
    struct log_tbuf *next; /* in tbuf_list, under list_mu */
    size_t len;
    char data[16384];
};

static atomic_int flush_ms; /* 0: every line written at once */
static pthread_key_t tbuf_key;
static pthread_once_t tbuf_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t list_mu = PTHREAD_MUTEX_INITIALIZER;
static struct log_tbuf *tbuf_list;
static pthread_mutex_t flusher_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t flusher_cv = PTHREAD_COND_INITIALIZER;
static bool flusher_running, flusher_stop;
static pthread_t flusher;

static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(log_fd, p, n);
        if (w <= 0)
            return; /* a log that cannot be written is dropped, never retried forever */
        p += w;
        n -= (size_t)w;
    }
}

/* Caller holds b->mu. */
static void tbuf_flush_locked(struct log_tbuf *b)
{
    if (b->len > 0)
        write_all(b->data, b->len);
    b->len = 0;
}

static void tbuf_destroy(void *p)
{
    struct log_tbuf *b = p;
    pthread_mutex_lock(&list_mu);
    for (struct log_tbuf **it = &tbuf_list; *it != NULL; it = &(*it)->next) {
        if (*it == b) {
            *it = b->next;
            break;
        }
    }
    pthread_mutex_unlock(&list_mu);
    pthread_mutex_lock(&b->mu);
    tbuf_flush_locked(b);
    pthread_mutex_unlock(&b->mu);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

static void tbuf_key_make(void)
{
    pthread_key_create(&tbuf_key, tbuf_destroy);
}

static struct log_tbuf *tbuf_get(bool create)
{
    pthread_once(&tbuf_once, tbuf_key_make);
    struct log_tbuf *b = pthread_getspecific(tbuf_key);
    if (b == NULL && create) {
        b = ec_xmalloc(sizeof(*b));
        pthread_mutex_init(&b->mu, NULL);
        b->len = 0;
        pthread_setspecific(tbuf_key, b);
        pthread_mutex_lock(&list_mu);
        b->next = tbuf_list;
        tbuf_list = b;
        pthread_mutex_unlock(&list_mu);
    }
    return b;
}

void ec_log_flush(void)
{
    pthread_mutex_lock(&list_mu);
    for (struct log_tbuf *b = tbuf_list; b != NULL; b = b->next) {
        pthread_mutex_lock(&b->mu);
        tbuf_flush_locked(b);
        pthread_mutex_unlock(&b->mu);
    }
    pthread_mutex_unlock(&list_mu);
}

static void *flusher_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&flusher_mu);
    while (!flusher_stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        int64_t ns = until.tv_nsec + (int64_t)atomic_load(&flush_ms) * 1000000;
        until.tv_sec += ns / 1000000000;
        until.tv_nsec = ns % 1000000000;
        pthread_cond_timedwait(&flusher_cv, &flusher_mu, &until);
        pthread_mutex_unlock(&flusher_mu);
        ec_log_flush();
        pthread_mutex_lock(&flusher_mu);
    }
    pthread_mutex_unlock(&flusher_mu);
    return NULL;
}

static void flusher_stop_at_exit(void)
{
    pthread_mutex_lock(&flusher_mu);
    bool running = flusher_running;
    flusher_stop = true;
    flusher_running = false;
    pthread_cond_signal(&flusher_cv);
    pthread_mutex_unlock(&flusher_mu);
    if (running)
        pthread_join(flusher, NULL);
    atomic_store(&flush_ms, 0);
    ec_log_flush();
    /* The main thread's own buffer is not in a thread-exit path at process exit. */
    struct log_tbuf *mine = tbuf_get(false);
    if (mine != NULL) {
        pthread_setspecific(tbuf_key, NULL);
        tbuf_destroy(mine);
    }
}

void ec_log_set_buffered(int interval_ms)
{
    if (interval_ms <= 0)
        return;
    pthread_mutex_lock(&flusher_mu);
    atomic_store(&flush_ms, interval_ms);
    if (!flusher_running) {
        /* The flusher must never take a process signal (services sigwait for SIGTERM): create it
         * with every signal blocked, so it inherits that mask from its first instruction. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        flusher_stop = false;
        flusher_running = pthread_create(&flusher, NULL, flusher_main, NULL) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        static bool registered;
        if (flusher_running && !registered) {
            registered = true;
            atexit(flusher_stop_at_exit);
        }
    }
    pthread_mutex_unlock(&flusher_mu);
}

void ec_log_setup(const char *svc, enum ec_log_level min_level, int fd)
{
    log_svc = svc;
    log_min = min_level;
    log_fd = fd;
}

enum ec_log_level ec_log_level_parse(const char *s, enum ec_log_level dflt)
{
    for (size_t i = 0; s != NULL && i < sizeof(level_names) / sizeof(level_names[0]); i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return (enum ec_log_level)i;
    return dflt;
}

enum ec_status ec_log_validate_level(const char *value, struct ec_err *err)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
        if (strcasecmp(value, level_names[i]) == 0)
            return EC_OK;
    return ec_err_set(err, EC_EINVAL, NULL, "\"%s\" is not one of debug, info, warn, error", value);
}

void ec_log_env_apply(const char *svc, const struct ec_log_env *env)
{
    ec_log_setup(svc, ec_log_level_parse(env->level, EC_LOG_INFO), STDERR_FILENO);
    if (env->flush_ms > 0)
        ec_log_set_buffered((int)env->flush_ms);
}

int ec_log_enabled(enum ec_log_level lvl)
{
    return lvl >= log_min;
}

/* Integers and 3-decimal numbers without printf: the access log formats several per request. */
static enum ec_status put_int(struct ec_buf *b, int64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        tmp[--i] = '-';
    return ec_buf_append(b, tmp + i, sizeof(tmp) - i);
}

static enum ec_status put_milli(struct ec_buf *b, double d)
{
    if (!(d > -9e15 && d < 9e15)) /* NaN, infinities, and what an int64 of 1/1000s cannot hold */
        return ec_buf_puts(b, "null");
    int64_t thousandths = (int64_t)(d * 1000.0 + (d < 0 ? -0.5 : 0.5));
    uint64_t u = thousandths < 0 ? 0 - (uint64_t)thousandths : (uint64_t)thousandths;
    if (thousandths < 0 && ec_buf_putc(b, '-') != EC_OK)
        return EC_ETOOBIG;
    enum ec_status st = put_int(b, (int64_t)(u / 1000));
    char frac[4] = { '.', (char)('0' + u / 100 % 10), (char)('0' + u / 10 % 10),
                     (char)('0' + u % 10) };
    return st != EC_OK ? st : ec_buf_append(b, frac, sizeof(frac));
}

void ec_log_fields(enum ec_log_level lvl, const char *msg, const struct ec_log_field *fields)
{
    char stack[2048];
    /* cap is the stack array and max keeps room for the closing "}\n": ec_buf never reallocates. */
    struct ec_buf b = { .data = stack, .len = 0, .cap = sizeof(stack), .max = sizeof(stack) - 32 };
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* The date part changes once a second; format it once a second per thread. */
    static _Thread_local time_t cached_sec = -1;
    static _Thread_local char cached_when[24];
    if (ts.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        strftime(cached_when, sizeof(cached_when), "%Y-%m-%dT%H:%M:%S", &tm);
        cached_sec = ts.tv_sec;
    }
    char head[96];
    int ms = (int)(ts.tv_nsec / 1000000);
    size_t hl = strlen(cached_when);
    memcpy(head, "{\"ts\":\"", 7);
    memcpy(head + 7, cached_when, hl);
    hl += 7;
    head[hl++] = '.';
    head[hl++] = (char)('0' + ms / 100);
    head[hl++] = (char)('0' + ms / 10 % 10);
    head[hl++] = (char)('0' + ms % 10);
    memcpy(head + hl, "Z\",\"lvl\":\"", 10);
    hl += 10;
    ec_buf_append(&b, head, hl);
    ec_buf_puts(&b, level_names[lvl]);
    ec_buf_puts(&b, "\",\"svc\":\"");
    ec_buf_json_escape(&b, log_svc, strlen(log_svc));
    ec_buf_puts(&b, "\",\"msg\":\"");
    ec_buf_json_escape(&b, msg, strlen(msg));
    ec_buf_putc(&b, '"');
    int truncated = 0;
    for (const struct ec_log_field *f = fields; f != NULL && f->type != EC_LF_END; f++) {
        size_t field_start = b.len;
        int bad = ec_buf_puts(&b, ",\"") != EC_OK;
        bad |= ec_buf_json_escape(&b, f->key, strlen(f->key)) != EC_OK;
        bad |= ec_buf_puts(&b, "\":") != EC_OK;
        switch (f->type) {
        case EC_LF_STR:
            if (f->v.s == NULL) {
                bad |= ec_buf_puts(&b, "null") != EC_OK;
                break;
            }
            bad |= ec_buf_putc(&b, '"') != EC_OK;
            bad |= ec_buf_json_escape(&b, f->v.s, strnlen(f->v.s, 512)) != EC_OK;
            bad |= ec_buf_putc(&b, '"') != EC_OK;
            break;
        case EC_LF_INT:
            bad |= put_int(&b, f->v.i) != EC_OK;
            break;
        case EC_LF_DBL:
            bad |= put_milli(&b, f->v.d) != EC_OK;
            break;
        case EC_LF_BOOL:
            bad |= ec_buf_puts(&b, f->v.i ? "true" : "false") != EC_OK;
            break;
        case EC_LF_END:
            break;
        }
        if (bad) {
            /* A field that does not fit is dropped whole, so the line still parses. */
            b.len = field_start;
            truncated = 1;
            break;
        }
    }
    if (truncated) {
        memcpy(b.data + b.len, ",\"truncated\":true", 17);
        b.len += 17;
    }
    memcpy(b.data + b.len, "}\n", 2);
    b.len += 2;

    bool buffered = lvl <= EC_LOG_INFO && atomic_load_explicit(&flush_ms, memory_order_relaxed);
    struct log_tbuf *tb = tbuf_get(buffered);
    if (tb == NULL) {
        write_all(b.data, b.len);
        return;
    }
    pthread_mutex_lock(&tb->mu);
    if (!buffered || tb->len + b.len > sizeof(tb->data))
        tbuf_flush_locked(tb);
    if (buffered) {
        memcpy(tb->data + tb->len, b.data, b.len);
        tb->len += b.len;
    } else {
        write_all(b.data, b.len);
    }
    pthread_mutex_unlock(&tb->mu);
}
