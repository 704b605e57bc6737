/*
 * clients.c - connections, deadlines and body budgets per client (see
 * clients.h).
 *
 * One mutex guards a small hash table of addresses (connections held, body
 * bytes held, large bodies held; an entry is freed when all three are
 * zero) and the list of live connections. The watchdog wakes five times a
 * second, walks the list and shuts down the socket of a connection past its
 * deadline; libmicrohttpd then sees the connection end and closes it as any
 * other. It does so holding the mutex, and libmicrohttpd announces a
 * connection's end (clients_conn_close(), which takes the mutex) before it
 * closes the socket, so the watchdog never touches a socket number that
 * was closed and reused.
 */
#include "clients.h"
#include "metrics.h"
#include "base/clock.h"
#include "base/error.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define NBUCKETS    4096
#define TICK_MS     200
#define MAX_XFF_HOP 32

typedef struct entry {
    client_key key;
    unsigned conns;   /* connections open */
    unsigned waiting; /* of those, the ones not at work on a request (the per-address limit) */
    size_t bytes;
    unsigned large;
    struct entry *next;
} entry;

enum { WAIT_HEADERS, BODY, BUSY };

struct client_conn {
    int fd;
    client_key key;   /* the peer, for the connection count */
    int proxy;        /* the peer is a trusted proxy */
    int phase;        /* WAIT_HEADERS, BODY, BUSY */
    int64_t since_ms; /* the phase began (WAIT_HEADERS), or the rate window did (BODY) */
    size_t mark;      /* BODY: bytes received when the window began */
    int closing;      /* shut down by the watchdog */
    atomic_size_t received;
    client_conn *prev, *next;
};

struct clients {
    clients_options opt;
    client_key *trusted; /* full addresses, not cut to /64 */
    size_t ntrusted;
    unsigned reserve; /* the last connections, for addresses holding fewer than two */

    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stopping;
    pthread_t watchdog;
    entry *buckets[NBUCKETS];
    unsigned conns;    /* connections open, all clients */
    size_t bytes;      /* body bytes held, all clients */
    unsigned large;    /* large bodies held, all clients */
    client_conn *head; /* live connections */
};

/* ---- addresses ------------------------------------------------------------ */

/* The full address of sa as 16 bytes; 0, or -1 for another family. */
static int addr16(unsigned char out[16], const struct sockaddr *sa)
{
    memset(out, 0, 16);
    if (!sa)
        return -1;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &in->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return 0;
    }
    return -1;
}

static int is_v4(const unsigned char a[16])
{
    static const unsigned char prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return !memcmp(a, prefix, 12);
}

/* A full address to a client key: IPv6 keeps its /64. */
static void key_from(client_key *k, const unsigned char a[16])
{
    memcpy(k->a, a, 16);
    if (!is_v4(a))
        memset(k->a + 8, 0, 8);
}

/* An IP literal ("1.2.3.4", "::1", "[::1]:80", "1.2.3.4:80") to 16 bytes. */
static int parse_ip(unsigned char out[16], const char *s, size_t n)
{
    char tmp[64];
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n == 0 || n >= sizeof(tmp))
        return -1;
    if (*s == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return -1;
        n = (size_t)(close - s - 1);
        s++;
    }
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    struct in_addr a4;
    struct in6_addr a6;
    char *colon = strchr(tmp, ':');
    if (colon && colon == strrchr(tmp, ':')) /* "1.2.3.4:port" */
        *colon = '\0';
    memset(out, 0, 16);
    if (inet_pton(AF_INET, tmp, &a4) == 1) {
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &a4, 4);
        return 0;
    }
    if (inet_pton(AF_INET6, tmp, &a6) == 1) {
        memcpy(out, &a6, 16);
        return 0;
    }
    return -1;
}

static int trusted_addr(const clients *c, const unsigned char a[16])
{
    for (size_t i = 0; i < c->ntrusted; i++)
        if (!memcmp(c->trusted[i].a, a, 16))
            return 1;
    return 0;
}

int clients_is_proxy(const clients *c, const struct sockaddr *peer)
{
    unsigned char a[16];
    return addr16(a, peer) == 0 && trusted_addr(c, a);
}

void clients_key_for(client_key *out, const clients *c, const struct sockaddr *peer,
                     const char *xff)
{
    unsigned char a[16];
    addr16(a, peer);
    key_from(out, a);
    if (!xff || !trusted_addr(c, a))
        return;
    /* Right to left: each proxy appends the address it heard from. */
    size_t end = strlen(xff);
    for (int hop = 0; hop < MAX_XFF_HOP && end > 0; hop++) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        unsigned char b[16];
        if (parse_ip(b, xff + start, end - start) != 0)
            return; /* unreadable: charge the proxy itself */
        key_from(out, b);
        if (!trusted_addr(c, b))
            return;
        end = start > 0 ? start - 1 : 0;
    }
}

/* ---- the table ------------------------------------------------------------ */

static entry **slot(clients *c, const client_key *k)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (int i = 0; i < 16; i++)
        h = (h ^ k->a[i]) * 16777619u;
    entry **p = &c->buckets[h % NBUCKETS];
    while (*p && memcmp((*p)->key.a, k->a, 16))
        p = &(*p)->next;
    return p;
}

static entry *find(clients *c, const client_key *k)
{
    return *slot(c, k);
}

/* The entry for k, created when absent; NULL when out of memory. */
static entry *get(clients *c, const client_key *k)
{
    entry **p = slot(c, k);
    if (!*p) {
        if (!(*p = calloc(1, sizeof(**p))))
            return NULL;
        (*p)->key = *k;
    }
    return *p;
}

static void put(clients *c, entry *e)
{
    if (e->conns || e->bytes || e->large)
        return;
    entry **p = slot(c, &e->key);
    *p = e->next;
    free(e);
}

/* ---- connections ------------------------------------------------------------ */

int clients_admit(clients *c, const struct sockaddr *sa)
{
    unsigned char a[16];
    client_key k;
    const char *refused = NULL;
    if (addr16(a, sa) != 0)
        return 1; /* not an IP socket: nothing to count by */
    key_from(&k, a);
    int proxy = trusted_addr(c, a);
    pthread_mutex_lock(&c->lock);
    entry *e = find(c, &k);
    unsigned held = e ? e->waiting : 0;
    if (c->conns >= c->opt.max_connections)
        refused = "connections";
    else if (!proxy && c->opt.max_per_ip && held >= c->opt.max_per_ip)
        refused = "connections_per_ip";
    else if (!proxy && c->conns >= c->opt.max_connections - c->reserve && held >= 2)
        refused = "connections_per_ip";
    pthread_mutex_unlock(&c->lock);
    if (refused)
        metrics_http_refused(refused);
    return !refused;
}

client_conn *clients_conn_open(clients *c, const struct sockaddr *sa, int fd)
{
    unsigned char a[16];
    client_conn *cc = calloc(1, sizeof(*cc));
    if (!cc)
        return NULL;
    cc->fd = fd;
    addr16(a, sa);
    key_from(&cc->key, a);
    cc->proxy = trusted_addr(c, a);
    cc->phase = WAIT_HEADERS;
    cc->since_ms = clock_mono_ms();
    atomic_init(&cc->received, 0);
    pthread_mutex_lock(&c->lock);
    entry *e = get(c, &cc->key);
    if (!e) {
        pthread_mutex_unlock(&c->lock);
        free(cc);
        return NULL;
    }
    e->conns++;
    e->waiting++;
    c->conns++;
    cc->next = c->head;
    if (c->head)
        c->head->prev = cc;
    c->head = cc;
    pthread_mutex_unlock(&c->lock);
    return cc;
}

void clients_conn_close(clients *c, client_conn *cc)
{
    if (!cc)
        return;
    pthread_mutex_lock(&c->lock);
    if (cc->prev)
        cc->prev->next = cc->next;
    else
        c->head = cc->next;
    if (cc->next)
        cc->next->prev = cc->prev;
    entry *e = find(c, &cc->key);
    if (e) {
        e->conns--;
        if (cc->phase != BUSY)
            e->waiting--;
        put(c, e);
    }
    c->conns--;
    pthread_mutex_unlock(&c->lock);
    free(cc);
}

static void phase(clients *c, client_conn *cc, int ph)
{
    if (!cc)
        return;
    pthread_mutex_lock(&c->lock);
    if ((cc->phase == BUSY) != (ph == BUSY)) {
        entry *e = find(c, &cc->key);
        if (e && ph == BUSY)
            e->waiting--;
        else if (e)
            e->waiting++;
    }
    cc->phase = ph;
    cc->since_ms = clock_mono_ms();
    cc->mark = atomic_load(&cc->received);
    pthread_mutex_unlock(&c->lock);
}

void clients_conn_wait_headers(clients *c, client_conn *cc)
{
    phase(c, cc, WAIT_HEADERS);
}

void clients_conn_body(clients *c, client_conn *cc)
{
    phase(c, cc, BODY);
}

void clients_conn_busy(clients *c, client_conn *cc)
{
    phase(c, cc, BUSY);
}

void clients_conn_received(client_conn *cc, size_t n)
{
    if (cc)
        atomic_fetch_add(&cc->received, n);
}

/* ---- the watchdog ------------------------------------------------------------ */

/* Is cc past its deadline at now? Moves a body's rate window on. */
static const char *late(clients *c, client_conn *cc, int64_t now)
{
    int64_t window = c->opt.header_timeout_ms;
    if (cc->closing || cc->phase == BUSY || now - cc->since_ms < window)
        return NULL;
    if (cc->phase == WAIT_HEADERS)
        return "header_timeout";
    size_t got = atomic_load(&cc->received) - cc->mark;
    size_t need = (size_t)((double)c->opt.body_min_rate * (double)(now - cc->since_ms) / 1000.0);
    if (got < need)
        return "body_too_slow";
    cc->since_ms = now;
    cc->mark += got;
    return NULL;
}

static void *watchdog_main(void *arg)
{
    clients *c = arg;
    pthread_mutex_lock(&c->lock);
    while (!c->stopping) {
        int64_t now = clock_mono_ms();
        for (client_conn *cc = c->head; cc; cc = cc->next) {
            const char *why = late(c, cc, now);
            if (!why)
                continue;
            cc->closing = 1;
            shutdown(cc->fd, SHUT_RDWR); /* the server sees the end and closes it */
            metrics_http_refused(why);
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)TICK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c->wake, &c->lock, &ts);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* ---- bodies ------------------------------------------------------------------ */

int clients_body_charge(clients *c, const client_key *key, size_t n, int take_large, int *own)
{
    unsigned per_ip_large = c->opt.max_large / 4 ? c->opt.max_large / 4 : 1;
    int rc = 0;
    *own = 0;
    pthread_mutex_lock(&c->lock);
    entry *e = get(c, key);
    if (!e) {
        farm_error_set("out of memory");
        rc = FARM_EAGAIN;
    } else if (e->bytes + n > c->opt.body_bytes_per_ip) {
        farm_error_set("this address sends more than %zu bytes of request bodies at once",
                       c->opt.body_bytes_per_ip);
        *own = 1;
        rc = FARM_EAGAIN;
    } else if (take_large && e->large >= per_ip_large) {
        farm_error_set("this address sends %u large request bodies at once already", per_ip_large);
        *own = 1;
        rc = FARM_EAGAIN;
    } else if (c->bytes + n > c->opt.body_bytes_total) {
        farm_error_set("the farm holds %zu bytes of request bodies already", c->bytes);
        rc = FARM_EAGAIN;
    } else if (take_large && c->large >= c->opt.max_large) {
        farm_error_set("the farm receives %u large request bodies already", c->large);
        rc = FARM_EAGAIN;
    } else {
        e->bytes += n;
        c->bytes += n;
        if (take_large) {
            e->large++;
            c->large++;
        }
    }
    if (e && rc)
        put(c, e);
    pthread_mutex_unlock(&c->lock);
    if (rc)
        metrics_http_refused(take_large ? "large_bodies" : "body_budget");
    return rc;
}

void clients_body_release(clients *c, const client_key *key, size_t n, int large)
{
    if (!n && !large)
        return;
    pthread_mutex_lock(&c->lock);
    entry *e = find(c, key);
    if (e) {
        e->bytes -= n < e->bytes ? n : e->bytes;
        if (large && e->large)
            e->large--;
        put(c, e);
    }
    c->bytes -= n < c->bytes ? n : c->bytes;
    if (large && c->large)
        c->large--;
    pthread_mutex_unlock(&c->lock);
}

/* ---- start and stop ------------------------------------------------------------ */

int clients_start(clients **out, const clients_options *opt)
{
    assert(out && opt && opt->max_connections > 0);
    *out = NULL;
    clients *c = calloc(1, sizeof(*c));
    if (!c || (opt->ntrusted && !(c->trusted = calloc(opt->ntrusted, sizeof(*c->trusted))))) {
        free(c);
        farm_error_set("out of memory");
        return FARM_ENOMEM;
    }
    c->opt = *opt;
    if (c->opt.header_timeout_ms <= 0)
        c->opt.header_timeout_ms = 10000;
    if (!c->opt.max_large)
        c->opt.max_large = 1;
    for (size_t i = 0; i < opt->ntrusted; i++) {
        if (parse_ip(c->trusted[i].a, opt->trusted[i], strlen(opt->trusted[i])) != 0) {
            farm_error_set("http.trusted_proxies[%zu]: not an IP address (\"%s\")", i,
                           opt->trusted[i]);
            free(c->trusted);
            free(c);
            return FARM_EINVALID;
        }
        c->ntrusted++;
    }
    c->reserve = opt->max_connections / 16;
    if (c->reserve < 4)
        c->reserve = opt->max_connections > 8 ? 4 : 0;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    if (pthread_create(&c->watchdog, NULL, watchdog_main, c) != 0) {
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->wake);
        free(c->trusted);
        free(c);
        farm_error_set("cannot start the connection watchdog");
        return FARM_ENOMEM;
    }
    *out = c;
    return 0;
}

void clients_stop(clients *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->stopping = 1;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->watchdog, NULL);
    for (size_t i = 0; i < NBUCKETS; i++) {
        while (c->buckets[i]) {
            entry *e = c->buckets[i];
            c->buckets[i] = e->next;
            free(e);
        }
    }
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->wake);
    free(c->trusted);
    free(c);
}
