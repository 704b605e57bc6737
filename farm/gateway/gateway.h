/*
 * gateway.h - the model gateway: how a run's agent reaches its model API
 * without ever holding the real key.
 *
 * One gateway serves every run of a farm process. It listens on a Unix socket
 * (which the sandbox relays to 127.0.0.1:PORT inside, as it does for the
 * egress proxy) and, for tests and benchmarks, on a loopback TCP port. Each run
 * is registered with gateway_run_add(), which hands back a random per-run
 * token; the agent's CLI sends its provider's ordinary API requests to the
 * gateway with that token where the key would go. The gateway checks the
 * token, asks the run's budget callback whether a call may start, swaps in the
 * real key, forwards the request to the upstream over HTTPS (base/http.c) and
 * streams the answer back as it arrives, reading the token usage on the way.
 * When the call ends, the run's record callback gets one gateway_call: model,
 * tokens, time to first byte, total time, status and cost.
 *
 * Owns: the listening sockets, the per-run tokens and keys, the calls in
 * flight, the price table. May call: base/ only. Called by: the run (it
 * registers each run and turns the records into model_call events) and the
 * farm's start-up (gateway_start, gateway_stop). See docs/gateway.md.
 */
#ifndef FARM_GATEWAY_GATEWAY_H
#define FARM_GATEWAY_GATEWAY_H

#include <stddef.h>
#include <stdint.h>

typedef struct gateway gateway;

/* ---- prices ------------------------------------------------------------------ */

/* USD per million tokens. cache_write is a 5-minute cache write (Anthropic)
 * and cache_write_1h a 1-hour one (0: priced as cache_write). OpenAI has no
 * cache writes. A prompt (input + cache reads + cache writes) of more than
 * long_above tokens (0: no such tier) is priced with every input rate times
 * long_input_x and the output rate times long_output_x. */
typedef struct gateway_price {
    const char *model; /* the name as the API takes it: "claude-sonnet-5-5", "gpt-5.4" */
    double input, output, cache_read, cache_write, cache_write_1h;
    int64_t long_above;
    double long_input_x, long_output_x;
} gateway_price;

/* When the built-in prices were taken, as YYYY-MM-DD. */
#define GATEWAY_PRICES_DATE "2026-12-06"

/* The built-in table (static; *n gets its length). */
const gateway_price *gateway_prices_builtin(size_t *n);

/* The price of model in table: an exact name, or a name followed by a
 * snapshot suffix ("-20261007", "-2026-03-05", "-latest"). NULL when none. */
const gateway_price *gateway_price_find(const gateway_price *table, size_t n, const char *model);

/* Tokens of one call, the same meaning for every provider: input counts
 * uncached prompt tokens only (OpenAI's cached tokens are taken out of its
 * input count and put in cache_read). cache_write includes cache_write_1h. */
typedef struct gateway_usage {
    int64_t input, output, cache_read, cache_write, cache_write_1h;
} gateway_usage;

/* The cost in USD of usage at price p. */
double gateway_cost(const gateway_price *p, const gateway_usage *u);

/* ---- the gateway ------------------------------------------------------------- */

typedef struct gateway_opts {
    const char *unix_path;   /* listen on this Unix socket (made 0600); NULL: none */
    int tcp_port;            /* -1: no TCP; 0: any free port on 127.0.0.1; else that port */
    int max_conns;           /* agent connections at once; default 256 */
    size_t max_request;      /* request body cap; default 32 MiB (the Anthropic API's own) */
    long connect_timeout_ms; /* to the upstream; default 10000 */
    long idle_timeout_ms;    /* upstream silence that ends a call; default 600000 */
    long call_timeout_ms;    /* a whole call; default 3600000 */
    long client_timeout_ms;  /* agent side: reading a request, a write it does not take, an
                                idle keep-alive connection; default 60000 */
} gateway_opts;

#define GATEWAY_OPTS_INIT                                                                          \
    {                                                                                              \
        NULL, -1, 256, 32u << 20, 10000, 600000, 3600000, 60000                                    \
    }

/* Start listening. At least one of unix_path and tcp_port must be given; an
 * old socket file at unix_path is replaced. Returns 0, FARM_EINVALID or
 * FARM_EIO; *out is stopped and freed with gateway_stop(). */
int gateway_start(gateway **out, const gateway_opts *o);

/* The TCP port listened on, or -1 when none. */
int gateway_tcp_port(const gateway *gw);

/* Stop: close the sockets, end the calls in flight (their records are
 * delivered), join every thread, remove the socket file, free the runs and
 * wipe their keys. NULL is a no-op. */
void gateway_stop(gateway *gw);

/* ---- runs --------------------------------------------------------------------- */

typedef enum {
    GATEWAY_ANTHROPIC,        /* Messages API: /v1/messages */
    GATEWAY_OPENAI_RESPONSES, /* Responses API: /v1/responses */
    GATEWAY_OPENAI_CHAT,      /* Chat Completions: /v1/chat/completions */
} gateway_provider;

/* How a call ended. */
typedef enum {
    GATEWAY_CALL_OK,          /* the whole answer reached the agent (any HTTP status) */
    GATEWAY_CALL_BUDGET,      /* refused: the budget callback said no; upstream not contacted */
    GATEWAY_CALL_UNPRICED,    /* refused: no price for the model; upstream not contacted */
    GATEWAY_CALL_TIMEOUT,     /* the upstream stalled (idle timeout) or took too long */
    GATEWAY_CALL_UPSTREAM,    /* the upstream could not be reached or broke off */
    GATEWAY_CALL_CLIENT_GONE, /* the agent hung up or stopped reading */
    GATEWAY_CALL_CANCELLED,   /* the run was removed or the gateway stopped */
} gateway_outcome;

/* A short stable name for an outcome ("ok", "budget", "unpriced", "timeout",
 * "upstream", "client_gone", "cancelled"). */
const char *gateway_outcome_name(gateway_outcome o);

/* One completed call, given to the run's record callback. Strings are valid
 * during the callback only. */
typedef struct gateway_call {
    const char *model;  /* as the upstream named it, else as the request asked; "" if neither */
    const char *method; /* "POST" */
    const char *path;   /* "/v1/messages", without the query */
    long status;        /* the status the agent got; 0 when none was sent */
    gateway_outcome outcome;
    const char *error; /* a short reason when outcome is not OK, else "" */
    gateway_usage usage;
    int usage_seen; /* 1 when the answer reported usage */
    int priced;     /* 1 when a price was found for model */
    double cost_usd;
    int streamed;     /* the answer was an event stream */
    int64_t ttfb_us;  /* request read -> first body byte from the upstream; -1 when none */
    int64_t total_us; /* request read -> the call's end */
    uint64_t request_bytes, response_bytes;
} gateway_call;

/* Asked before each call is forwarded, with what the run has spent so far
 * (the sum of its recorded calls) and the model asked for ("" when the
 * request names none). Return 0 to allow the call; anything else refuses it,
 * with why (a NUL-terminated message of at most why_size bytes, may be left
 * empty) sent to the agent in the provider's error shape. */
typedef int (*gateway_budget_fn)(void *ctx, double spent_usd, const char *model, char *why,
                                 size_t why_size);

/* Called once for every call that reached the point of being forwarded or
 * refused (not for a bad token or a path the run may not use). For a call
 * whose whole answer came, it runs before the end of the answer (the last
 * chunk, or the last byte) is released to the agent, so what it records
 * (the spend) is counted before the agent can start its next call. */
typedef void (*gateway_record_fn)(void *ctx, const gateway_call *call);

typedef struct gateway_run_opts {
    gateway_provider provider;
    const char *upstream;        /* base URL the request path is appended to:
                                    "https://api.anthropic.com", "https://api.openai.com";
                                    https, or http to a loopback address (tests) */
    const char *api_key;         /* the real key; copied, wiped when the run is removed */
    const gateway_price *prices; /* searched before the built-in table; copied; may be NULL */
    size_t nprices;
    int allow_unpriced;       /* forward calls for models without a price (recorded at cost
                                 0, priced 0) instead of refusing them */
    const char *const *paths; /* the paths the run may use, NULL-terminated; a last
                                 segment of a lone star matches any one segment;
                                 NULL: the provider's (docs/gateway.md) */
    gateway_budget_fn budget; /* NULL: no budget */
    gateway_record_fn record; /* may be NULL */
    void *ctx;                /* for both callbacks */
    const char *label;        /* names the run in log lines ("session 12"); may be NULL */
} gateway_run_opts;

#define GATEWAY_RUN_OPTS_INIT                                                                      \
    {                                                                                              \
        GATEWAY_ANTHROPIC, NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL                    \
    }

/* Register a run. *token_out is a heap string (the caller frees it) that the
 * agent uses as its API key: 64 random hex digits after "farm-", worthless
 * outside this gateway and after gateway_run_remove(). Callbacks run on the
 * gateway's threads, concurrently for parallel calls of one run. Returns 0,
 * FARM_EINVALID (no key, a bad upstream) or FARM_ENOMEM. */
int gateway_run_add(char **token_out, gateway *gw, const gateway_run_opts *o);

/* Revoke a run's token: new requests with it get 401, its calls in flight are
 * ended (GATEWAY_CALL_CANCELLED) and their records delivered; no callback of
 * the run runs after this returns, so it must not be called from one. The
 * key is wiped. Returns 0 or FARM_ENOTFOUND. */
int gateway_run_remove(gateway *gw, const char *token);

/* A run's totals so far. */
typedef struct gateway_run_stats {
    int64_t calls;   /* records delivered, refused ones included */
    int64_t refused; /* by the budget or for want of a price */
    double spent_usd;
    gateway_usage usage;
} gateway_run_stats;

/* Returns 0 or FARM_ENOTFOUND. */
int gateway_run_stats_get(gateway_run_stats *out, gateway *gw, const char *token);

#endif
