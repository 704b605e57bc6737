/*
 * server_internal.h - what the files of the HTTP server share (private to
 * webhook/server*.c): the server's struct, and the steps each file takes
 * in a request's life. Names shared here but not exported are written
 * server__x.
 *
 *   server.c          libmicrohttpd's callbacks, binding, start and stop;
 *   server_routes.c   the route table and matching;
 *   server_work.c     deferred work and its worker threads;
 *   server_request.c  what a request passes at its headers, in order, and
 *                     the body as it arrives;
 *   server_reply.c    answering, with the headers every answer carries.
 */
#ifndef FARM_WEBHOOK_SERVER_INTERNAL_H
#define FARM_WEBHOOK_SERVER_INTERNAL_H

#include "clients.h"
#include "guard.h"
#include "routes.h"
#include "server.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>

#define MAX_WORKERS 256

struct server {
    farm *farm;
    const config *cfg;
    struct MHD_Daemon *daemon;
    char address[96];
    int port;           /* the port bound */
    int wildcard;       /* listening on every address: a connection's local address is ours */
    guard_hosts *hosts; /* the names the farm answers to */
    clients *clients;   /* per-client limits and the watchdog */

    pthread_mutex_t lock; /* guards the work queue and stopping */
    pthread_cond_t wake;
    web_request *head, *tail;
    int queued; /* requests in the work queue */
    int stopping;
    pthread_t workers[MAX_WORKERS];
    int nworkers;

    atomic_int inflight; /* requests begun and not yet completed */
};

/* server_work.c: a worker thread (arg: the server), and stopping them all
 * once the queue is drained. */
void *server__worker_main(void *arg);
void server__workers_stop(server *s);

/* server_routes.c: the route for (method, path), filling req->segment; NULL when
 * none, with *allow listing the methods the path has (empty: no such path). */
const web_route *server__route_find(web_request *req, const char *method, const char *path,
                                    char *allow, size_t allowlen);

/* server_request.c: the first call of the access handler, once the headers
 * are in. Checks the request and answers it when it fails a check. */
enum MHD_Result server__request_begin(server *s, web_request *req);

/* server_request.c: n more bytes of the request's body. */
enum MHD_Result server__request_body(server *s, web_request *req, const char *data, size_t n);

/* server_request.c: the request is over; give back what its body held. */
void server__request_end(server *s, web_request *req);

/* server_reply.c: answer with status, type and body (copied); allow, when
 * non-NULL, goes out as the Allow header. */
int server__reply(web_request *req, int status, const char *content_type, const char *body,
                  size_t len, const char *allow);

/* server_reply.c: answer {"error": error, "hint": hint} with Allow. */
int server__reply_error_allow(web_request *req, int status, const char *error, const char *hint,
                              const char *allow);

#endif
