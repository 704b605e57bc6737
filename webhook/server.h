/*
 * server.h - the farm's HTTP server (libmicrohttpd underneath).
 *
 * webhook/ is the HTTP front: the server and its route table (routes.h),
 * tracker webhooks (hooks.h, auth.h), the API, the durable streams over
 * HTTP, the web UI and /metrics. It calls the rooms below it: farm/farm.h
 * and through the handle farm/config, farm/store and farm/stream, and
 * farm/intake (every delivery goes to farm_ingest_submit()), farm/digest,
 * farm/sched, farm/report, vcs/tracker's event type and base. The CLI starts
 * and stops it (cli/serve_common.c, `farm serve` and `farm demo`).
 *
 * One internal polling thread per core-ish (a small pool on epoll, never a
 * thread per connection), suspend/resume enabled, and a pool of workers for
 * the handlers that wait (see routes.h). server_start() binds the config's
 * listen address (port 0 picks a free port; server_address() says which),
 * or takes a socket server_bind() bound before anything else started, so
 * that a busy port is found out before the farm opens its data.
 *
 * What faces the network first (guard.h, clients.h): every request is
 * checked at its headers (target, Host, origin of a write, bearer token,
 * body size and type) before its body is read; connections and bodies are
 * limited per client address, and a watchdog closes connections that are
 * too slow to send their headers or body.
 */
#ifndef FARM_WEBHOOK_SERVER_H
#define FARM_WEBHOOK_SERVER_H

#include "farm/farm.h"

typedef struct server server;

typedef struct server_options {
    int threads;              /* HTTP threads; 0: from the number of CPUs (2..8) */
    int workers;              /* threads that run deferred work (ingest); 0: 64 */
    unsigned max_connections; /* 0: the open-file limit less a reserve, at least 4096 */
    size_t conn_memory;       /* bytes of buffers per connection (request headers must fit
                                 in about half); 0: 8 KiB */
    int listen_fd;            /* a socket from server_bind(), taken over; -1: bind here */
} server_options;

#define SERVER_OPTIONS_INIT                                                                        \
    {                                                                                              \
        0, 0, 0, 0, -1                                                                             \
    }

/* Bind and listen on cfg's listen address. On success *fd is a listening
 * socket for server_options.listen_fd (close it if it is never handed
 * over). Returns 0, FARM_EINVALID (a listen address that does not parse or
 * resolve) or FARM_EIO: the message names the address, says why (the port
 * is in use, a privileged port, no such local address) and how to choose
 * another. */
int server_bind(int *fd, const config *cfg);

/* Start serving the farm on its config's listen address (or on
 * opt->listen_fd, which is then the server's, even on failure). The server
 * uses but does not own f (close it after server_stop()). On success *out
 * is released with server_stop(). Returns 0, FARM_EINVALID (bad listen
 * address or http section), FARM_EIO (cannot bind: see server_bind()) or
 * FARM_ENOMEM. Logs, once, each webhook that is off (no secret configured). */
int server_start(server **out, farm *f, const server_options *opt);

/* The bound address, "127.0.0.1:PORT" or "[::1]:PORT". Valid until
 * server_stop(). */
const char *server_address(const server *s);

/* Stop accepting connections, let requests in flight finish (up to
 * drain_ms), then stop every thread and free the server. NULL is accepted. */
void server_stop(server *s, int drain_ms);

#endif
