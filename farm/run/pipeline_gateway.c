/*
 * pipeline_gateway.c - a run and the model gateway (docs/gateway.md).
 *
 * When the farm serves a gateway and the agent needs a model API, each run
 * registers with it: the agent gets a token good for this run only (and the
 * gateway's address, relayed into the sandbox on 127.0.0.1:PL_GATEWAY_PORT
 * in every network mode), never the real key. Each call the gateway
 * completes becomes a "model_call" event, its cost added to the session's
 * and to the repository's spend of the day. Before each call the budgets
 * are asked: the session's spend, the repository's spend today and
 * everyone's spend today, each against its budgets.* value (0: none). A
 * refusal fails closed (the gateway answers the agent in the provider's
 * "out of money" shape and contacts nobody) and marks the run, which then
 * pushes what exists as a draft whose reason names the budget.
 */
#include "pipeline_internal.h"

#include "agent.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/gateway/gateway.h"
#include "farm/handle/handle.h"
#include "farm/store/store_run.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DAY_MS    86400000LL
#define SETTLE_MS 500 /* how long a budget check waits for the run's earlier calls' records */

/* The run's calls between "allowed" and "recorded". The gateway accounts a
 * call only after its answer's last byte went out, so an agent that sends
 * its next request at once could otherwise be checked against a spend that
 * does not count the call before: a budget check first waits (a little) for
 * those records, and counts what this run recorded itself. */
struct pl_gw_calls {
    pthread_mutex_t lock;
    pthread_cond_t settled;
    int inflight;    /* allowed, not yet recorded */
    double recorded; /* this run's cost recorded so far, USD */
};

/* Wait until the run has no call between allowed and recorded (or
 * SETTLE_MS passed: parallel calls); what it recorded so far. */
static double settle(struct pl_gw_calls *g)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += (long)SETTLE_MS * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&g->lock);
    while (g->inflight > 0)
        if (pthread_cond_timedwait(&g->settled, &g->lock, &until) != 0)
            break;
    double v = g->recorded;
    pthread_mutex_unlock(&g->lock);
    return v;
}

static void inflight_add(struct pl_gw_calls *g, int d, double cost)
{
    pthread_mutex_lock(&g->lock);
    g->inflight += d;
    g->recorded += cost;
    if (g->inflight <= 0)
        pthread_cond_broadcast(&g->settled);
    pthread_mutex_unlock(&g->lock);
}

static int64_t today(void)
{
    return clock_wall_ms() / DAY_MS;
}

static int budget_refuse(pl_run *r, double session, char *why, size_t why_size);

static int has_budgets(const config *cfg)
{
    return cfg->budgets.session_usd > 0 || cfg->budgets.repo_daily_usd > 0 ||
           cfg->budgets.daily_usd > 0;
}

/* The budget callback: runs on the gateway's threads. */
static int budget_check(void *ctx, double spent_usd, const char *model, char *why, size_t why_size)
{
    pl_run *r = ctx;

    (void)model;
    if (!has_budgets(r->cfg))
        return 0;
    double recorded = settle(r->gw_calls);
    double session = r->session_spent0 + (recorded > spent_usd ? recorded : spent_usd);
    int rc = budget_refuse(r, session, why, why_size);
    if (rc == 0)
        inflight_add(r->gw_calls, 1, 0); /* allowed: its record is awaited by the next check */
    return rc;
}

static int budget_refuse(pl_run *r, double session, char *why, size_t why_size)
{
    const config *cfg = r->cfg;
    double repo_day = 0, all_day = 0;

    if (cfg->budgets.session_usd > 0 && session >= cfg->budgets.session_usd) {
        snprintf(why, why_size, "the session's budget (budgets.session_usd = $%g) is spent: $%.4f",
                 cfg->budgets.session_usd, session);
        atomic_store(&r->budget_hit, PL_BUDGET_SESSION);
        return 1;
    }
    if (cfg->budgets.repo_daily_usd <= 0 && cfg->budgets.daily_usd <= 0)
        return 0;
    if (store_spend_get(&repo_day, &all_day, r->f->store, today(), r->repo->name) != 0) {
        /* spend that cannot be counted is not spent: fail closed */
        snprintf(why, why_size, "the farm cannot read today's spend to check its budgets");
        log_error("model call refused: spend unreadable", "error", farm_error_last());
        atomic_store(&r->budget_hit, PL_BUDGET_DAILY);
        return 1;
    }
    if (cfg->budgets.repo_daily_usd > 0 && repo_day >= cfg->budgets.repo_daily_usd) {
        snprintf(why, why_size,
                 "the repository's daily budget (budgets.repo_daily_usd = $%g) is spent: $%.4f "
                 "today",
                 cfg->budgets.repo_daily_usd, repo_day);
        atomic_store(&r->budget_hit, PL_BUDGET_REPO_DAILY);
        return 1;
    }
    if (cfg->budgets.daily_usd > 0 && all_day >= cfg->budgets.daily_usd) {
        snprintf(why, why_size,
                 "the farm's daily budget (budgets.daily_usd = $%g) is spent: $%.4f today",
                 cfg->budgets.daily_usd, all_day);
        atomic_store(&r->budget_hit, PL_BUDGET_DAILY);
        return 1;
    }
    return 0;
}

typedef struct record_tx {
    pl_run *r;
    json_t *body;
    double cost;
    int64_t seq;
} record_tx;

static int record_fn(store_tx *tx, void *arg)
{
    record_tx *x = arg;
    int rc;
    json_incref(x->body); /* pl_event_tx steals it; a retried transaction needs it again */
    if ((rc = pl_event_tx(&x->seq, tx, x->r->s->id, "model_call", x->body)))
        return rc;
    if (x->cost > 0 &&
        ((rc = store_tx_session_usage_add(tx, x->r->s->id, 0, x->cost)) ||
         (rc = store_tx_spend_add(tx, clock_wall_ms() / DAY_MS, x->r->repo->name, x->cost))))
        return rc;
    return 0;
}

/* The record callback: one "model_call" event per call, its cost counted. */
static void record(void *ctx, const gateway_call *c)
{
    pl_run *r = ctx;
    record_tx x = {r, NULL, c->cost_usd, 0};
    x.body = json_pack(
        "{s:I,s:s,s:s,s:I,s:s,s:I,s:I,s:I,s:I,s:I,s:b,s:f,s:b,s:I,s:I,s:I,s:I}", "run",
        (json_int_t)r->run_no, "model", c->model, "path", c->path, "status", (json_int_t)c->status,
        "outcome", gateway_outcome_name(c->outcome), "input_tokens", (json_int_t)c->usage.input,
        "output_tokens", (json_int_t)c->usage.output, "cache_read_tokens",
        (json_int_t)c->usage.cache_read, "cache_write_tokens", (json_int_t)c->usage.cache_write,
        "cache_write_1h_tokens", (json_int_t)c->usage.cache_write_1h, "usage_seen", c->usage_seen,
        "cost_usd", c->cost_usd, "priced", c->priced, "ttfb_ms",
        (json_int_t)(c->ttfb_us < 0 ? -1 : c->ttfb_us / 1000), "total_ms",
        (json_int_t)(c->total_us / 1000), "request_bytes", (json_int_t)c->request_bytes,
        "response_bytes", (json_int_t)c->response_bytes);
    if (!x.body) {
        log_error("model call not recorded: out of memory");
        return;
    }
    if (c->error && *c->error)
        json_object_set_new(x.body, "error", json_string(c->error));
    json_object_set_new(x.body, "streamed", json_boolean(c->streamed));
    if (store_write(r->f->store, record_fn, &x) != 0)
        log_error("model call not recorded", "error", farm_error_last());
    else if (x.seq > 0)
        stream_hub_session_notify(r->f->streams, r->s->id, x.seq);
    json_decref(x.body);
    if (has_budgets(r->cfg) && c->outcome != GATEWAY_CALL_BUDGET &&
        c->outcome != GATEWAY_CALL_UNPRICED)
        inflight_add(r->gw_calls, -1, c->cost_usd);
}

/* The preset's configuration pointing at the gateway (codex's
 * $CODEX_HOME/config.toml, opencode's opencode.json) goes into the run's
 * HOME, <run_dir>/home, which the agent sees as /home/sandbox (kept out of
 * /tmp: docs/agents.md). */
static int home_make(pl_run *r)
{
    char home[PATH_MAX + 16];
    int rc;

    snprintf(home, sizeof(home), "%s/home", r->run_dir);
    if (mkdir(home, 0700) < 0 && errno != EEXIST) {
        farm_error_set("pipeline: cannot make %s: %s", home, strerror(errno));
        return FARM_EIO;
    }
    if ((rc = agent_home_write(home, r->cfg, r->gw_url)))
        return rc;
    if (strcmp(agent_preset_resolve(r->cfg), "codex") != 0)
        return 0;
    if (snprintf(r->codex_home, sizeof(r->codex_home), "%s/" AGENT_CODEX_HOME_REL, home) >=
        (int)sizeof(r->codex_home)) {
        r->codex_home[0] = '\0';
        farm_error_set("pipeline: the path %s is too long", home);
        return FARM_ETOOBIG;
    }
    return 0;
}

int pl_gateway_begin(pl_run *r)
{
    gateway_provider prov;
    gateway_price *prices = NULL;
    gateway_run_opts o = GATEWAY_RUN_OPTS_INIT;
    char label[64];
    int rc;

    if (!r->f->gateway || agent_provider(&prov, r->cfg) != 0)
        return 0;
    if (r->sandboxed) {
        snprintf(r->gw_url, sizeof(r->gw_url), "http://127.0.0.1:%d", PL_GATEWAY_PORT);
    } else {
        int port = gateway_tcp_port(r->f->gateway);
        if (port <= 0) {
            farm_error_set("pipeline: the model gateway has no loopback port for an unsandboxed "
                           "run");
            return FARM_EINVALID;
        }
        snprintf(r->gw_url, sizeof(r->gw_url), "http://127.0.0.1:%d", port);
    }
    snprintf(r->gw_sock, sizeof(r->gw_sock), "%s/gateway.sock", r->cfg->data_dir);
    if (r->cfg->agent.nprices > 0) {
        prices = calloc(r->cfg->agent.nprices, sizeof(*prices));
        if (!prices) {
            farm_error_set("pipeline: out of memory");
            return FARM_ENOMEM;
        }
        for (size_t i = 0; i < r->cfg->agent.nprices; i++) {
            const config_price *c = &r->cfg->agent.prices[i];
            prices[i] = (gateway_price){
                c->model, c->input, c->output, c->cache_read, c->cache_write, c->cache_write_1h,
                0,        1,        1};
        }
    }
    if (!r->gw_calls) {
        if (!(r->gw_calls = calloc(1, sizeof(*r->gw_calls)))) {
            free(prices);
            farm_error_set("pipeline: out of memory");
            return FARM_ENOMEM;
        }
        pthread_mutex_init(&r->gw_calls->lock, NULL);
        pthread_cond_init(&r->gw_calls->settled, NULL);
    }
    char *upstream = agent_upstream(r->cfg, prov);
    snprintf(label, sizeof(label), "session %lld", (long long)r->s->id);
    r->session_spent0 = r->s->cost;
    atomic_store(&r->budget_hit, PL_BUDGET_NONE);
    o.provider = prov;
    o.upstream = upstream;
    o.api_key = r->cfg->agent.api_key;
    o.prices = prices;
    o.nprices = r->cfg->agent.nprices;
    o.budget = budget_check;
    o.record = record;
    o.ctx = r;
    o.label = label;
    rc = upstream ? gateway_run_add(&r->gw_token, r->f->gateway, &o) : FARM_ENOMEM;
    free(upstream);
    free(prices);
    if (rc) {
        r->gw_token = NULL;
        if (!farm_error_last()[0] || rc == FARM_ENOMEM)
            farm_error_set("pipeline: cannot register the run with the model gateway (%s)",
                           farm_error_name(rc));
        return rc;
    }
    if ((rc = home_make(r))) {
        pl_gateway_end(r);
        return rc;
    }
    return 0;
}

void pl_gateway_end(pl_run *r)
{
    if (r->gw_token) {
        gateway_run_remove(r->f->gateway, r->gw_token); /* no callback runs after this */
        explicit_bzero(r->gw_token, strlen(r->gw_token));
        free(r->gw_token);
        r->gw_token = NULL;
    }
    if (r->gw_calls) {
        pthread_mutex_destroy(&r->gw_calls->lock);
        pthread_cond_destroy(&r->gw_calls->settled);
        free(r->gw_calls);
        r->gw_calls = NULL;
    }
}

int pl_gateway_bind(sandbox_bind *b, const pl_run *r)
{
    if (!r->gw_token || !r->sandboxed)
        return 0;
    *b = (sandbox_bind){r->gw_sock, r->gw_sock, 0, PL_GATEWAY_PORT};
    return 1;
}

const char *pl_budget_words(char *out, size_t n, const pl_run *r)
{
    switch (atomic_load((atomic_int *)&r->budget_hit)) {
    case PL_BUDGET_SESSION:
        snprintf(out, n,
                 "the session's model budget (budgets.session_usd = $%g) was reached; raise it, "
                 "then comment `/farm retry` to go on",
                 r->cfg->budgets.session_usd);
        return out;
    case PL_BUDGET_REPO_DAILY:
        snprintf(
            out, n,
            "the repository's daily model budget (budgets.repo_daily_usd = $%g) was "
            "reached; raise it (or wait for tomorrow, UTC), then comment `/farm retry` to go on",
            r->cfg->budgets.repo_daily_usd);
        return out;
    case PL_BUDGET_DAILY:
        snprintf(out, n,
                 "the farm's daily model budget (budgets.daily_usd = $%g) was reached; raise it "
                 "(or wait for tomorrow, UTC), then comment `/farm retry` to go on",
                 r->cfg->budgets.daily_usd);
        return out;
    default:
        return NULL;
    }
}
