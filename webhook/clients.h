/*
 * clients.h - the HTTP front's limits per client, enforced before anyone
 * is authenticated, so one client (or one attacker) cannot take the farm
 * from everybody else.
 *
 *   - connections: at most http.max_connections in all, and
 *     http.max_connections_per_ip from one address that are not at work on
 *     a request (waiting for one's headers or receiving its body: what an
 *     idle or slowloris flood holds; a live stream or a handler at work,
 *     past every check, does not count); the last sixteenth of the
 *     connections is kept for addresses that hold fewer than two, so a
 *     health check or a tracker's delivery still gets in while one address
 *     floods (clients_admit(), the accept policy);
 *   - deadlines: a connection has http.header_timeout_s to send a request's
 *     headers (from its start, or from the end of its previous request), and
 *     a body must bring http.body_min_rate bytes per second over every
 *     window of that length; a watchdog thread shuts down whoever is late
 *     (slowloris). A request whose headers and body are in (a handler at
 *     work, a live stream) has no deadline from here;
 *   - request bodies: bytes held per client address (http.body_bytes_per_ip)
 *     and by the whole farm, and how many bodies over CLIENTS_LARGE_BODY may
 *     arrive at once (http.max_large_bodies in all, a quarter of that from
 *     one address).
 *
 * A client is its address; IPv6 addresses count by their /64, which one
 * host usually holds whole. A connection from an address in
 * http.trusted_proxies has no per-address connection limit, and the body
 * it carries is charged to the nearest address in its X-Forwarded-For that
 * is not a proxy. server.c calls all of this from libmicrohttpd's
 * callbacks; every function is thread-safe.
 */
#ifndef FARM_WEBHOOK_CLIENTS_H
#define FARM_WEBHOOK_CLIENTS_H

#include <stddef.h>

struct sockaddr;

typedef struct clients clients;
typedef struct client_conn client_conn;

/* Who a body is charged to. */
typedef struct client_key {
    unsigned char a[16]; /* IPv6, IPv4 as ::ffff:a.b.c.d; IPv6 cut to its /64 */
} client_key;

/* A body longer than this needs a large-body slot. */
#define CLIENTS_LARGE_BODY ((size_t)1 << 20)

typedef struct clients_options {
    unsigned max_connections; /* all clients together (> 0) */
    unsigned max_per_ip;      /* connections from one address; 0: no limit */
    int header_timeout_ms;    /* to send a request's headers; the body rate's window */
    size_t body_min_rate;     /* bytes per second a body must keep up; 0: none */
    size_t body_bytes_per_ip; /* body bytes one address may have in flight */
    size_t body_bytes_total;  /* body bytes the farm holds at once */
    unsigned max_large;       /* bodies over CLIENTS_LARGE_BODY at once, all clients */
    char *const *trusted;     /* proxy addresses (IP literals), or NULL */
    size_t ntrusted;
} clients_options;

#define CLIENTS_OPTIONS_INIT                                                                       \
    {                                                                                              \
        4096, 64, 10000, 1024, (size_t)50 << 20, (size_t)512 << 20, 8, NULL, 0                     \
    }

/* Start the bookkeeping and its watchdog thread. On success *out is
 * released with clients_stop(). Returns 0, FARM_EINVALID (a trusted proxy
 * that is not an IP address) or FARM_ENOMEM. */
int clients_start(clients **out, const clients_options *opt);

/* Stop the watchdog and free everything. Call it after the HTTP server has
 * stopped (no connection is left). NULL is accepted. */
void clients_stop(clients *c);

/* The accept policy: 1 when a new connection from sa may be taken, 0 when
 * it is refused (counted in /metrics). */
int clients_admit(clients *c, const struct sockaddr *sa);

/* A connection was set up (its socket is fd) / is about to be closed. The
 * handle lives until clients_conn_close(); NULL when out of memory (the
 * connection then has no deadlines). A new connection waits for headers. */
client_conn *clients_conn_open(clients *c, const struct sockaddr *sa, int fd);
void clients_conn_close(clients *c, client_conn *cc);

/* What the connection does now, for the watchdog: waits for a request's
 * headers, receives a body, or neither (no deadline). NULL cc is accepted. */
void clients_conn_wait_headers(clients *c, client_conn *cc);
void clients_conn_body(clients *c, client_conn *cc);
void clients_conn_busy(clients *c, client_conn *cc);

/* n more body bytes arrived on the connection. */
void clients_conn_received(client_conn *cc, size_t n);

/* The address a request speaks for: the peer's, or, when the peer is a
 * trusted proxy, the nearest address of x_forwarded_for (may be NULL) that
 * is not a trusted proxy. */
void clients_key_for(client_key *out, const clients *c, const struct sockaddr *peer,
                     const char *x_forwarded_for);

/* Is the peer a trusted proxy? */
int clients_is_proxy(const clients *c, const struct sockaddr *peer);

/* Charge n more body bytes to key and to the farm; with take_large, the
 * body also takes a large-body slot. Returns 0, or FARM_EAGAIN (nothing
 * charged) with the reason in the error slot and *own set to 1 when it is
 * the client's own share that is full (answer 429), 0 when it is the
 * farm's (503). */
int clients_body_charge(clients *c, const client_key *key, size_t n, int take_large, int *own);

/* Give back what clients_body_charge() took. */
void clients_body_release(clients *c, const client_key *key, size_t n, int large);

#endif
