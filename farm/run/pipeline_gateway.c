/*
 * pipeline_gateway.c - a run and the model gateway (docs/gateway.md).
 *
 * When the farm serves a gateway and the agent needs a model API, each run
 * registers with it: the agent gets a token good for this run only (and the
 * gateway's address, relayed into the sandbox on 127.0.0.1:PL_GATEWAY_PORT
 * in every network mode), never the real key. Each call the gateway
 * completes becomes a "model_call" event, its cost added to the session's
 * and to the repository's spend of the day. Before each call the budgets
 * in force (budget.h: the config's, or changed live) are asked: the
 * session's spend, the repository's spend today and everyone's spend
 * today, each against its budgets.* value (0: none). A
 * refusal fails closed (the gateway answers the agent in the provider's
 * "out of money" shape and contacts nobody) and marks the run, which then
 * pushes what exists as a draft whose reason names the budget.
 */
#include "pipeline_internal.h"

#include "agent.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "budget.h"
#include "farm/gateway/gateway.h"
#include "model_metrics.h"
#include "farm/handle/handle.h"
#include "farm/store/store_run.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The budget callback: runs on the gateway's threads, before each call is
 * forwarded. Every figure comes from the store: the budgets in force (the
 * config's, or an admin's live change), the session's cost and today's
 * spend. The gateway delivers a call's record (which adds its cost, in one
 * write) before the agent can see the end of its answer, so the next call's
 * check counts it without waiting. Parallel calls may all pass a check made
 * before any of them is recorded (docs/gateway.md). */
static int budget_check(void *ctx, double spent_usd, const char *model, char *why, size_t why_size)
{
    pl_run *r = ctx;
    budget_limits l;
    store_session *s = NULL;
    double repo_day = 0, all_day = 0;
    int kind = -1;
    double limit = 0, spent = 0;

    (void)model;
    (void)spent_usd; /* the gateway's own sum; the store's is what every process sees */
    if (budget_get(&l, r->cfg, r->f->store) != 0)
        goto unreadable;
    if (l.usd[BUDGET_SESSION] <= 0 && l.usd[BUDGET_REPO_DAILY] <= 0 && l.usd[BUDGET_DAILY] <= 0)
        return 0;
    if (l.usd[BUDGET_SESSION] > 0) {
        if (store_session_get(&s, r->f->store, r->s->id) != 0)
            goto unreadable;
        double cost = s->cost;
        store_session_free(s);
        if (cost >= l.usd[BUDGET_SESSION])
            kind = BUDGET_SESSION, limit = l.usd[BUDGET_SESSION], spent = cost;
    }
    if (kind < 0 && (l.usd[BUDGET_REPO_DAILY] > 0 || l.usd[BUDGET_DAILY] > 0)) {
        if (store_spend_get(&repo_day, &all_day, r->f->store, budget_day(clock_wall_ms()),
                            r->repo->name) != 0)
            goto unreadable;
        if (l.usd[BUDGET_REPO_DAILY] > 0 && repo_day >= l.usd[BUDGET_REPO_DAILY])
            kind = BUDGET_REPO_DAILY, limit = l.usd[BUDGET_REPO_DAILY], spent = repo_day;
        else if (l.usd[BUDGET_DAILY] > 0 && all_day >= l.usd[BUDGET_DAILY])
            kind = BUDGET_DAILY, limit = l.usd[BUDGET_DAILY], spent = all_day;
    }
    if (kind < 0)
        return 0;
    static const char *const whose[BUDGET_NKINDS] = {
        "the session's budget", "the repository's daily budget", "the farm's daily budget"};
    snprintf(why, why_size, "%s (budgets.%s = $%g%s) is spent: $%.4f%s", whose[kind],
             budget_kind_name(kind), limit, l.from_setting[kind] ? ", set live" : "", spent,
             kind == BUDGET_SESSION ? "" : " today");
    atomic_store(&r->budget_limit_usd, limit);
    atomic_store(&r->budget_hit, kind == BUDGET_SESSION      ? PL_BUDGET_SESSION
                                 : kind == BUDGET_REPO_DAILY ? PL_BUDGET_REPO_DAILY
                                                             : PL_BUDGET_DAILY);
    return 1;
unreadable:
    /* spend that cannot be counted is not spent: fail closed */
    snprintf(why, why_size, "the farm cannot read its budgets or today's spend");
    log_error("model call refused: budgets or spend unreadable", "error", farm_error_last());
    atomic_store(&r->budget_limit_usd, 0.0);
    atomic_store(&r->budget_hit, PL_BUDGET_DAILY);
    return 1;
}

typedef struct record_tx {
    pl_run *r;
    const gateway_call *c;
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
         (rc = store_tx_spend_add(tx, budget_day(clock_wall_ms()), x->r->repo->name, x->cost))))
        return rc;
    return model_metrics_tx_add(tx, x->c);
}

/* The record callback: one "model_call" event per call, its cost counted. */
static void record(void *ctx, const gateway_call *c)
{
    pl_run *r = ctx;
    record_tx x = {r, c, NULL, c->cost_usd, 0};
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
    char *upstream = agent_upstream(r->cfg, prov);
    snprintf(label, sizeof(label), "session %lld", (long long)r->s->id);
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
    double limit = atomic_load((_Atomic double *)&r->budget_limit_usd);
    switch (atomic_load((atomic_int *)&r->budget_hit)) {
    case PL_BUDGET_SESSION:
        snprintf(out, n,
                 "the session's model budget (budgets.session_usd = $%g) was reached; raise it "
                 "(`farm budget --session-usd N`), then comment `/farm retry` to go on",
                 limit);
        return out;
    case PL_BUDGET_REPO_DAILY:
        snprintf(out, n,
                 "the repository's daily model budget (budgets.repo_daily_usd = $%g) was "
                 "reached; raise it (`farm budget --repo-daily-usd N`) or wait for tomorrow "
                 "(UTC), then comment `/farm retry` to go on",
                 limit);
        return out;
    case PL_BUDGET_DAILY:
        snprintf(out, n,
                 "the farm's daily model budget (budgets.daily_usd = $%g) was reached; raise it "
                 "(`farm budget --daily-usd N`) or wait for tomorrow (UTC), then comment "
                 "`/farm retry` to go on",
                 limit);
        return out;
    default:
        return NULL;
    }
}
