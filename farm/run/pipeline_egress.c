/*
 * pipeline_egress.c - the egress proxy's decisions in the session log.
 *
 * In allowlist mode the sandbox's egress proxy (sandbox/proxy.c) calls back
 * for every connection it allows or denies; the sandbox layer knows nothing
 * of sessions, so the callback lands here, in the run, which writes the log.
 * The first connection to a destination (per step and round, host, port and
 * decision) becomes an "egress" event at once, durable before the proxy
 * answers the sandbox: {"host", "port", "decision": "allow"|"deny",
 * "reason" (denies), "step", "round", "count": 1}. Repeats are only counted;
 * when the command ends, each destination tried more than once gets one
 * more "egress" event with "count": N and "repeat": true, so an agent that
 * retries a host a hundred times adds two events, not a hundred. At most
 * PL_EGRESS_MAX destinations are tracked per run; connections beyond them are
 * counted in one "egress_dropped" event per command.
 *
 * The destinations denied during the run are what the status, pull request
 * and failure comments name ("the agent tried to reach ..."): see
 * pl_egress_denied(). A run resumed after a crash reads the denies of its
 * own run back from the log.
 */
#include "pipeline_internal.h"

#include "base/error.h"
#include "base/log.h"
#include "farm/handle/handle.h"
#include "farm/store/store_run.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct eg_entry {
    char host[256];
    int port;
    int allowed;
    char reason[96];
    char step[16];
    int round;
    uint64_t count;    /* connections, the first included */
    uint64_t reported; /* the count the log already says */
    int from_log;      /* read back from an earlier attempt of this run */
} eg_entry;

struct pl_egress {
    pthread_mutex_t mu;
    eg_entry e[PL_EGRESS_MAX];
    size_t n;
    uint64_t dropped; /* connections to destinations beyond PL_EGRESS_MAX, not yet logged */
};

static eg_entry *find(struct pl_egress *g, const char *step, int round, int allowed,
                      const char *host, int port)
{
    for (size_t i = 0; i < g->n; i++) {
        eg_entry *x = &g->e[i];
        if (x->port == port && x->allowed == allowed && x->round == round &&
            !strcmp(x->step, step) && !strcasecmp(x->host, host))
            return x;
    }
    return NULL;
}

/* The denies an earlier attempt of this run logged (a crash in between). */
static void load_denies(pl_run *r, struct pl_egress *g)
{
    static const char *const kinds[] = {"egress", NULL};
    store_event *v = NULL;
    size_t n = 0;

    if (r->start_seq <= 0 ||
        store_event_list_kinds(&v, &n, r->f->store, r->s->id, kinds, r->start_seq - 1, 1000))
        return;
    for (size_t i = 0; i < n; i++) {
        json_t *b = json_loads(v[i].body, 0, NULL);
        const char *host = json_string_value(json_object_get(b, "host"));
        const char *dec = json_string_value(json_object_get(b, "decision"));
        const char *step = json_string_value(json_object_get(b, "step"));
        const char *why = json_string_value(json_object_get(b, "reason"));
        int port = (int)json_integer_value(json_object_get(b, "port"));
        int round = (int)json_integer_value(json_object_get(b, "round"));
        uint64_t count = (uint64_t)json_integer_value(json_object_get(b, "count"));
        if (host && dec && step && !strcmp(dec, "deny")) {
            eg_entry *x = find(g, step, round, 0, host, port);
            if (!x && g->n < PL_EGRESS_MAX) {
                x = &g->e[g->n++];
                memset(x, 0, sizeof(*x));
                snprintf(x->host, sizeof(x->host), "%s", host);
                snprintf(x->step, sizeof(x->step), "%s", step);
                snprintf(x->reason, sizeof(x->reason), "%s", why ? why : "");
                x->port = port;
                x->round = round;
                x->from_log = 1;
            }
            if (x && count > x->count)
                x->count = x->reported = count;
        }
        json_decref(b);
    }
    store_event_list_free(v, n);
}

int pl_egress_begin(pl_run *r)
{
    struct pl_egress *g = calloc(1, sizeof(*g));
    if (!g) {
        farm_error_set("pipeline: out of memory");
        return FARM_ENOMEM;
    }
    pthread_mutex_init(&g->mu, NULL);
    load_denies(r, g);
    r->egress = g;
    return 0;
}

void pl_egress_end(pl_run *r)
{
    if (!r->egress)
        return;
    pthread_mutex_destroy(&r->egress->mu);
    free(r->egress);
    r->egress = NULL;
}

static json_t *entry_body(const eg_entry *x)
{
    json_t *b =
        json_pack("{s:s,s:i,s:s,s:s,s:I}", "host", x->host, "port", x->port, "decision",
                  x->allowed ? "allow" : "deny", "step", x->step, "count", (json_int_t)x->count);
    if (b && !x->allowed)
        json_object_set_new(b, "reason", json_string(x->reason));
    if (b && x->round > 0)
        json_object_set_new(b, "round", json_integer(x->round));
    return b;
}

void pl_egress_on_proxy(void *ctx, int allowed, const char *host, int port, const char *reason)
{
    pl_egress_tap *t = ctx;
    pl_run *r = t->r;
    struct pl_egress *g = r ? r->egress : NULL;
    json_t *body = NULL;

    if (!g || !host)
        return;
    allowed = allowed ? 1 : 0;
    pthread_mutex_lock(&g->mu);
    eg_entry *x = find(g, t->step, t->round, allowed, host, port);
    if (x) {
        x->count++;
    } else if (g->n < PL_EGRESS_MAX) {
        x = &g->e[g->n++];
        memset(x, 0, sizeof(*x));
        snprintf(x->host, sizeof(x->host), "%s", host);
        snprintf(x->step, sizeof(x->step), "%s", t->step);
        snprintf(x->reason, sizeof(x->reason), "%s", reason ? reason : "");
        x->port = port;
        x->round = t->round;
        x->allowed = allowed;
        x->count = x->reported = 1;
        body = entry_body(x);
    } else {
        g->dropped++;
    }
    pthread_mutex_unlock(&g->mu);
    /* the first time: logged before the proxy answers the sandbox */
    if (body && pl_event(r, "egress", body) != 0)
        log_warn("egress event not logged", "host", host, "error", farm_error_last());
}

void pl_egress_step_end(pl_run *r, const char *step, int round)
{
    struct pl_egress *g = r->egress;
    json_t *events = json_array();
    uint64_t dropped;

    if (!g || !events) {
        json_decref(events);
        return;
    }
    pthread_mutex_lock(&g->mu);
    for (size_t i = 0; i < g->n; i++) {
        eg_entry *x = &g->e[i];
        if (x->round != round || strcmp(x->step, step) != 0 || x->count <= x->reported)
            continue;
        json_t *b = entry_body(x);
        if (b)
            json_object_set_new(b, "repeat", json_true());
        json_array_append_new(events, b);
        x->reported = x->count;
    }
    dropped = g->dropped;
    g->dropped = 0;
    pthread_mutex_unlock(&g->mu);
    size_t i;
    json_t *b;
    json_array_foreach(events, i, b)
    {
        json_incref(b);
        if (pl_event(r, "egress", b) != 0)
            log_warn("egress event not logged", "error", farm_error_last());
    }
    json_decref(events);
    if (dropped > 0)
        pl_event(r, "egress_dropped",
                 json_pack("{s:s,s:i,s:I,s:i}", "step", step, "round", round, "connections",
                           (json_int_t)dropped, "max_destinations", PL_EGRESS_MAX));
}

size_t pl_egress_denied(report_egress *out, size_t max, pl_run *r)
{
    struct pl_egress *g = r->egress;
    size_t n = 0;

    if (!g)
        return 0;
    pthread_mutex_lock(&g->mu);
    for (size_t i = 0; i < g->n; i++) {
        const eg_entry *x = &g->e[i];
        if (x->allowed)
            continue;
        /* one line per destination, whichever step or round tried it */
        size_t k;
        for (k = 0; k < n; k++)
            if (out[k].port == x->port && !strcasecmp(out[k].host, x->host))
                break;
        if (k < n) {
            out[k].count += x->count;
            continue;
        }
        if (n == max)
            continue;
        /* entries are never removed nor rewritten but for their counts while
         * the run lasts: the strings stay valid until pl_egress_end() */
        out[n].host = x->host;
        out[n].port = x->port;
        out[n].reason = x->reason;
        out[n].step = x->step;
        out[n].count = x->count;
        n++;
    }
    pthread_mutex_unlock(&g->mu);
    return n;
}
