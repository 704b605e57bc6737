/*
 * run.c - the gateway's runs: registering one (its token, key, prices,
 * paths and callbacks), finding it by token, holding it while a call is in
 * flight, counting what it spent, and removing it.
 *
 * A run is held by reference while one of its calls is in flight; removing it
 * marks it revoked (new requests fail), stops its calls and waits for the
 * references to go, so no callback of a removed run can still be running.
 * Every token is compared on each lookup, in constant time.
 */
#include "internal.h"

#include "base/crypto.h"
#include "base/error.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const paths_anthropic[] = {"/v1/messages", "/v1/messages/count_tokens",
                                              "/v1/models", "/v1/models/*", NULL};
static const char *const paths_responses[] = {"/v1/responses", "/v1/responses/compact",
                                              "/v1/models", "/v1/models/*", NULL};
static const char *const paths_chat[] = {"/v1/chat/completions", "/v1/models", "/v1/models/*",
                                         NULL};

const char *gateway_outcome_name(gateway_outcome o)
{
    switch (o) {
    case GATEWAY_CALL_OK:
        return "ok";
    case GATEWAY_CALL_BUDGET:
        return "budget";
    case GATEWAY_CALL_UNPRICED:
        return "unpriced";
    case GATEWAY_CALL_TIMEOUT:
        return "timeout";
    case GATEWAY_CALL_UPSTREAM:
        return "upstream";
    case GATEWAY_CALL_CLIENT_GONE:
        return "client_gone";
    case GATEWAY_CALL_CANCELLED:
        return "cancelled";
    }
    return "unknown";
}

/* ---- runs --------------------------------------------------------------------- */

void gw_run_free(gw_run *r)
{
    if (!r)
        return;
    if (r->key) {
        explicit_bzero(r->key, strlen(r->key));
        free(r->key);
    }
    if (r->auth_header) {
        explicit_bzero(r->auth_header, strlen(r->auth_header));
        free(r->auth_header);
    }
    for (size_t i = 0; i < r->nprices; i++)
        free((char *)r->prices[i].model);
    free(r->prices);
    for (size_t i = 0; r->paths && r->paths[i]; i++)
        free(r->paths[i]);
    free(r->paths);
    free(r->upstream);
    free(r->label);
    explicit_bzero(r->token, sizeof(r->token));
    free(r);
}

/* https anywhere; plain http only to this machine (tests, a local proxy). */
static int upstream_ok(const char *u)
{
    if (strncmp(u, "https://", 8) == 0)
        return u[8] != '\0';
    static const char *const local[] = {"http://127.0.0.1", "http://localhost", "http://[::1]"};
    for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++) {
        size_t n = strlen(local[i]);
        if (strncmp(u, local[i], n) == 0 && (u[n] == '\0' || u[n] == ':' || u[n] == '/'))
            return 1;
    }
    return 0;
}

static int copy_run_opts(gw_run *r, const gateway_run_opts *o)
{
    r->provider = o->provider;
    r->allow_unpriced = o->allow_unpriced;
    r->budget = o->budget;
    r->record = o->record;
    r->ctx = o->ctx;
    r->upstream = strdup(o->upstream);
    r->key = strdup(o->api_key);
    r->label = strdup(o->label ? o->label : "");
    if (!r->upstream || !r->key || !r->label)
        return FARM_ENOMEM;
    size_t ul = strlen(r->upstream);
    while (ul > 0 && r->upstream[ul - 1] == '/')
        r->upstream[--ul] = '\0';
    int anthropic = o->provider == GATEWAY_ANTHROPIC;
    if (asprintf(&r->auth_header, anthropic ? "x-api-key: %s" : "Authorization: Bearer %s",
                 o->api_key) < 0) {
        r->auth_header = NULL;
        return FARM_ENOMEM;
    }
    if (o->nprices > 0) {
        if (!(r->prices = calloc(o->nprices, sizeof(*r->prices))))
            return FARM_ENOMEM;
        for (size_t i = 0; i < o->nprices; i++) {
            r->prices[i] = o->prices[i];
            r->prices[i].model = strdup(o->prices[i].model ? o->prices[i].model : "");
            r->nprices = i + 1;
            if (!r->prices[i].model)
                return FARM_ENOMEM;
        }
    }
    const char *const *paths = o->paths                             ? o->paths
                               : anthropic                          ? paths_anthropic
                               : o->provider == GATEWAY_OPENAI_CHAT ? paths_chat
                                                                    : paths_responses;
    size_t n = 0;
    while (paths[n])
        n++;
    if (!(r->paths = calloc(n + 1, sizeof(char *))))
        return FARM_ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (!(r->paths[i] = strdup(paths[i])))
            return FARM_ENOMEM;
    return 0;
}

int gateway_run_add(char **token_out, gateway *gw, const gateway_run_opts *o)
{
    *token_out = NULL;
    if (!gw || !o) {
        farm_error_set("gateway: no gateway or no run options");
        return FARM_EINVALID;
    }
    if (!o->api_key || !*o->api_key || strpbrk(o->api_key, "\r\n")) {
        farm_error_set("gateway: a run needs its API key (one line)");
        return FARM_EINVALID;
    }
    if (!o->upstream || !upstream_ok(o->upstream)) {
        farm_error_set("gateway: upstream '%.200s' is not https (nor http to this machine)",
                       o->upstream ? o->upstream : "");
        return FARM_EINVALID;
    }
    if (o->provider != GATEWAY_ANTHROPIC && o->provider != GATEWAY_OPENAI_RESPONSES &&
        o->provider != GATEWAY_OPENAI_CHAT) {
        farm_error_set("gateway: unknown provider %d", (int)o->provider);
        return FARM_EINVALID;
    }
    gw_run *r = calloc(1, sizeof(*r));
    if (!r) {
        farm_error_set("gateway: out of memory");
        return FARM_ENOMEM;
    }
    char hex[65];
    int rc = crypto_random_hex(hex, 32);
    if (rc == 0)
        snprintf(r->token, sizeof(r->token), "%s%s", GW_TOKEN_PREFIX, hex);
    if (rc == 0)
        rc = copy_run_opts(r, o);
    char *tok = rc == 0 ? strdup(r->token) : NULL;
    if (rc == 0 && !tok)
        rc = FARM_ENOMEM;
    if (rc) {
        if (rc == FARM_ENOMEM)
            farm_error_set("gateway: out of memory");
        gw_run_free(r);
        return rc;
    }
    log_secret_add(o->api_key);
    pthread_mutex_lock(&gw->lock);
    r->next = gw->runs;
    gw->runs = r;
    pthread_mutex_unlock(&gw->lock);
    *token_out = tok;
    return 0;
}

/* The live run with this token; every run is compared, in constant time. */
static gw_run *find_locked(gateway *gw, const char *token)
{
    gw_run *found = NULL;
    for (gw_run *r = gw->runs; r; r = r->next)
        if (crypto_streq(token, r->token) && !r->revoked)
            found = r;
    return found;
}

gw_run *gw_run_get(gateway *gw, const char *token)
{
    if (!token || strlen(token) != GW_TOKEN_LEN)
        return NULL;
    pthread_mutex_lock(&gw->lock);
    gw_run *r = gw->stopping ? NULL : find_locked(gw, token);
    if (r)
        r->refs++;
    pthread_mutex_unlock(&gw->lock);
    return r;
}

void gw_run_put(gateway *gw, gw_run *r)
{
    pthread_mutex_lock(&gw->lock);
    if (--r->refs == 0)
        pthread_cond_broadcast(&gw->changed);
    pthread_mutex_unlock(&gw->lock);
}

void gw_run_account(gateway *gw, gw_run *r, const gateway_call *call)
{
    pthread_mutex_lock(&gw->lock);
    gateway_run_stats *s = &r->stats;
    s->calls++;
    if (call->outcome == GATEWAY_CALL_BUDGET || call->outcome == GATEWAY_CALL_UNPRICED)
        s->refused++;
    s->spent_usd += call->cost_usd;
    s->usage.input += call->usage.input;
    s->usage.output += call->usage.output;
    s->usage.cache_read += call->usage.cache_read;
    s->usage.cache_write += call->usage.cache_write;
    s->usage.cache_write_1h += call->usage.cache_write_1h;
    pthread_mutex_unlock(&gw->lock);
}

double gw_run_spent(gateway *gw, gw_run *r)
{
    pthread_mutex_lock(&gw->lock);
    double v = r->stats.spent_usd;
    pthread_mutex_unlock(&gw->lock);
    return v;
}

int gateway_run_remove(gateway *gw, const char *token)
{
    if (!gw || !token)
        return FARM_ENOTFOUND;
    pthread_mutex_lock(&gw->lock);
    gw_run *r = find_locked(gw, token);
    if (!r) {
        pthread_mutex_unlock(&gw->lock);
        farm_error_set("gateway: no such run");
        return FARM_ENOTFOUND;
    }
    r->revoked = 1;
    gw_stop_calls_locked(gw, r);
    while (r->refs > 0)
        pthread_cond_wait(&gw->changed, &gw->lock);
    for (gw_run **pp = &gw->runs; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    pthread_mutex_unlock(&gw->lock);
    gw_run_free(r);
    return 0;
}

int gateway_run_stats_get(gateway_run_stats *out, gateway *gw, const char *token)
{
    memset(out, 0, sizeof(*out));
    if (!gw || !token)
        return FARM_ENOTFOUND;
    pthread_mutex_lock(&gw->lock);
    gw_run *r = find_locked(gw, token);
    if (r)
        *out = r->stats;
    pthread_mutex_unlock(&gw->lock);
    if (!r) {
        farm_error_set("gateway: no such run");
        return FARM_ENOTFOUND;
    }
    return 0;
}
