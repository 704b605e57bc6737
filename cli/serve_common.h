/*
 * serve_common.h - the start-up and shutdown sequence `farm serve` and
 * `farm demo` share: config checks, farm_open, the outbox, the sandbox
 * check, the scheduler, the HTTP server and the daily digest; then waiting
 * for SIGINT or SIGTERM and an orderly stop.
 */
#ifndef FARM_CLI_SERVE_COMMON_H
#define FARM_CLI_SERVE_COMMON_H

#include "farm/farm.h"
#include "webhook/server.h"

#include <signal.h>

typedef struct digest_daily digest_daily;

typedef struct serve_state {
    farm *f;
    server *srv;
    digest_daily *daily;
    sigset_t signals; /* SIGINT and SIGTERM, blocked in every thread */
} serve_state;

/* Run the whole start-up on cfg (which the call TAKES OWNERSHIP of, on
 * success and failure alike): apply its log level, refuse an unsafe listen
 * address, bind the listen address (first: a busy port is reported before
 * anything else happens), block the signals, open the farm, start the
 * outbox, check the sandbox and start the scheduler (unless intake_only),
 * serve on the bound socket and start the digest; logs "listening" and
 * prints "farm: listening on http://ADDR".
 * Every failure is printed to stderr. Returns 0 with *out filled in (stop
 * it with serve_stop()), or -1. */
int serve_start(serve_state *out, config *cfg, const server_options *sopt, int intake_only);

/* `farm worker`: the same start-up without the HTTP side (no listen
 * address, no server, no daily digest): open the farm, start the outbox,
 * check the sandbox, start the gateway and the scheduler, whose node row
 * says "worker". Takes cfg as serve_start() does. Returns 0 or -1. */
int worker_start(serve_state *out, config *cfg);

/* Wait for SIGINT or SIGTERM. With tick non-NULL, call tick(arg) every
 * tick_ms meanwhile (on this thread). Returns the signal taken. */
int serve_wait(serve_state *s, void (*tick)(void *arg), void *arg, int tick_ms);

/* Stop accepting, drain the requests in flight, stop the digest, the
 * scheduler and the outbox, close the farm. */
void serve_stop(serve_state *s);

#endif
