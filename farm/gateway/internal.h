/*
 * internal.h - what the files of farm/gateway/ share and nobody else uses
 * (tests excepted): the gateway's and a run's state (gateway.c, run.c), the HTTP/1.1
 * side facing the agent (conn.c), one forwarded call (call.c) and the usage
 * reader (usage.c). Names shared here carry the gw_ prefix.
 */
#ifndef FARM_GATEWAY_INTERNAL_H
#define FARM_GATEWAY_INTERNAL_H

#include "gateway.h"

#include "base/buf.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define GW_TOKEN_PREFIX "farm-"
#define GW_TOKEN_LEN    (sizeof(GW_TOKEN_PREFIX) - 1 + 64)
#define GW_HEAD_MAX     16384 /* a request head, as most servers allow */
#define GW_HEADERS_MAX  100

/* ---- run.c and gateway.c: the runs, the gateway ----------------------------- */

typedef struct gw_run {
    struct gw_run *next;
    char token[GW_TOKEN_LEN + 1];
    gateway_provider provider;
    char *upstream;    /* without a trailing slash */
    char *key;         /* the real key */
    char *auth_header; /* "x-api-key: KEY" or "Authorization: Bearer KEY" */
    gateway_price *prices;
    size_t nprices;
    char **paths; /* NULL-terminated */
    int allow_unpriced;
    gateway_budget_fn budget;
    gateway_record_fn record;
    void *ctx;
    char *label;
    gateway_run_stats stats;
    int refs;    /* calls holding the run; gw->lock */
    int revoked; /* removed: no new calls, calls in flight stop */
} gw_run;

typedef struct gw_conn {
    struct gateway *gw;
    int fd;
    int is_tcp;
    int done; /* the thread has finished; gw->lock */
    pthread_t th;
    gw_run *run;         /* the run of the call in flight, or NULL; gw->lock */
    volatile int cancel; /* set by gateway_run_remove() and gateway_stop() */
} gw_conn;

struct gateway {
    gateway_opts o;
    char *unix_path;
    int lfd_unix, lfd_tcp, tcp_port;
    int stop_r, stop_w;
    pthread_t acceptor;
    pthread_mutex_t lock;
    pthread_cond_t changed; /* a run's refs dropped */
    int stopping;
    gw_run *runs;
    gw_conn **conns; /* o.max_conns slots */
};

/* The run whose token is given, with a reference taken (constant time in the
 * token), or NULL. gw_run_put() drops the reference. */
gw_run *gw_run_get(struct gateway *gw, const char *token);
void gw_run_put(struct gateway *gw, gw_run *r);
/* Add a finished call to the run's totals. */
void gw_run_account(struct gateway *gw, gw_run *r, const gateway_call *call);
/* What the run has spent so far. */
double gw_run_spent(struct gateway *gw, gw_run *r);
/* Mark which run c is serving (NULL when none), so removal can stop it. */
void gw_conn_serving(gw_conn *c, gw_run *r);
/* Stop the calls of run r (NULL: every call): cancel and shut their
 * connections. With gw->lock held. */
void gw_stop_calls_locked(struct gateway *gw, gw_run *r);
/* Free a run (its key and auth header wiped first). */
void gw_run_free(gw_run *r);

/* ---- conn.c: the agent's side, HTTP/1.1 --------------------------------------- */

typedef struct gw_header {
    char *name, *value;
} gw_header;

typedef struct gw_req {
    char *head; /* the head's bytes, NUL-terminated in place; owned */
    char method[16];
    char *target; /* "/v1/messages?beta=true" */
    char *path;   /* the target up to '?', a copy owned here */
    int http10;
    int keep_alive;
    gw_header h[GW_HEADERS_MAX];
    int nh;
    int64_t content_length; /* -1 when absent */
    int chunked;
    int expect_continue;
    buf body;
} gw_req;

typedef struct gw_in {
    char *data; /* bytes read from the agent and not used yet */
    size_t len;
} gw_in;

/* The value of a request header (case-insensitive), or NULL. */
const char *gw_req_header(const gw_req *q, const char *name);
/* Read and parse one request head: 0, FARM_EIO (the agent hung up before a
 * byte of it; *status 0), or an error with *status the HTTP status to answer
 * (400, 408, 413, 431, 501, 505). */
int gw_req_read_head(gw_req *q, int *status, gw_conn *c, gw_in *in);
/* Read the body announced by the head (Content-Length or chunked): 0, or an
 * error with *status (400, 408, 413; 0 when the agent hung up). */
int gw_req_read_body(gw_req *q, int *status, gw_conn *c, gw_in *in);
void gw_req_free(gw_req *q);

/* Write all of p to the agent (a blocked write gives up after the client
 * timeout). 0 or FARM_EIO. */
int gw_send(gw_conn *c, const void *p, size_t n);
/* Answer with an error in the provider's shape (anthropic: 1, else OpenAI's):
 * status, type, code (OpenAI only; may be NULL) and message. */
int gw_send_error(gw_conn *c, const gw_req *q, int anthropic, int status, const char *type,
                  const char *code, const char *message, int close_after);
/* The reason phrase of a status ("OK", "Not Found", ...). */
const char *gw_reason(long status);

/* ---- call.c: one forwarded call -------------------------------------------------- */

/* Serve one request of a connection whose head (and not yet its body) has
 * been read. Returns 1 when the connection can take another request, 0 when
 * it must close. */
int gw_call_serve(gw_conn *c, gw_req *q, gw_in *in);

/* ---- usage.c: reading usage from an answer as it streams ------------------------- */

enum { GW_SLOT_USAGE, GW_SLOT_MODEL, GW_SLOT_COUNT };

/* One captured JSON value (its text). */
typedef struct gw_slot {
    char data[1024];
    size_t len;
    int done; /* complete and within the slot */
    int over; /* longer than the slot: dropped */
} gw_slot;

/* An incremental scanner over one JSON document that captures the values at a
 * few paths ("usage", "model", "message.usage", "response.model", ...) with
 * bounded memory, whatever the size of the document. */
typedef struct gw_json_scan {
    int st;
    int depth;
    unsigned char stack[64]; /* '{' or '[' per open container */
    int in_str, esc, str_is_key;
    char key[3][32]; /* the current key of the object at depth 1 and 2 */
    size_t klen;
    int key_long;
    int cap_slot, cap_depth, cap_scalar; /* the capture in progress: -1 none */
    gw_slot slot[GW_SLOT_COUNT];
    int stop_after_model; /* a request body: stop once the model is known */
} gw_json_scan;

typedef struct gw_usage_parser {
    gateway_provider provider;
    int sse; /* the answer is an event stream, else one JSON document */
    /* the event-stream line reader */
    int ls;        /* line state */
    char field[8]; /* the field name being read ("data", "event") */
    size_t flen;
    int field_long;
    int cr;           /* the last byte was a CR (a CRLF's LF is skipped) */
    int data_lines;   /* data lines of the event so far */
    int line_started; /* the current data line has fed a byte */
    gw_json_scan js;
    /* what was read, in the provider's terms */
    int seen;
    int64_t in, out, cached, cw, cw1h;
    char model[128];
} gw_usage_parser;

void gw_usage_init(gw_usage_parser *p, gateway_provider provider, int sse);
void gw_usage_feed(gw_usage_parser *p, const char *data, size_t n);
/* The end of the answer: the last document or event counts even unterminated. */
void gw_usage_finish(gw_usage_parser *p);
/* The usage in the gateway's terms (gateway_usage). */
void gw_usage_get(gateway_usage *out, const gw_usage_parser *p);
/* The top-level "model" of a JSON request body into out ("" when none). */
void gw_request_model(char *out, size_t size, const char *body, size_t n);

void gw_json_init(gw_json_scan *s);
void gw_json_feed(gw_json_scan *s, const char *p, size_t n);

#endif
