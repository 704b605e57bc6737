/*
 * route_budgets.c - the model budgets' HTTP surface: GET /api/budgets (the
 * three budgets in force, where each comes from, and today's spend in
 * total and per repository) and PUT or PATCH /api/budgets (a change, kept
 * in the store's settings, so every process's next model call is checked
 * against it; no restart).
 *
 * Reading needs the viewer role, a change the admin role, as for scaling.
 * A change waits for a group commit, so it runs deferred (web_defer).
 */
#include "routes.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/run/budget.h"
#include "farm/store/store_run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUDGETS_BODY_MAX 4096

static int store_failed(web_request *req)
{
    log_error("store failed", "route", req->route->name, "error", farm_error_last());
    return web_reply_error(req, 503, "the store could not be read or written",
                           "try again; see the log");
}

/* The budgets, their sources and today's spend; NULL when the spend cannot
 * be read. */
static json_t *budgets_json(const budget_limits *l, store *s)
{
    int64_t day = budget_day(clock_wall_ms());
    store_amount *v = NULL;
    size_t n = 0;
    char date[11];

    if (store_spend_list(&v, &n, s, day) != 0)
        return NULL;
    json_t *o = json_object(), *src = json_object(), *repos = json_object();
    double total = 0;
    for (size_t i = 0; repos && i < n; i++) {
        json_object_set_new(repos, v[i].labels[0] ? v[i].labels[0] : "", json_real(v[i].value));
        total += v[i].value;
    }
    store_amount_list_free(v, n);
    for (int i = 0; o && src && i < BUDGET_NKINDS; i++) {
        json_object_set_new(o, budget_kind_name(i), json_real(l->usd[i]));
        json_object_set_new(src, budget_kind_name(i),
                            json_string(l->from_setting[i] ? "live" : "config"));
    }
    budget_day_format(date, day);
    json_t *spend = json_pack("{s:s,s:f,s:o}", "day", date, "daily_usd", total, "repos", repos);
    if (!o || !src || !spend) {
        json_decref(o);
        json_decref(src);
        json_decref(spend);
        return NULL;
    }
    json_object_set_new(o, "source", src);
    json_object_set_new(o, "spend", spend);
    return o;
}

int route_api_budgets(web_request *req)
{
    if (!web_authorize(req, AUTH_VIEWER))
        return 0;
    budget_limits l;
    store *s = farm_store(req->farm);
    if (budget_get(&l, farm_config(req->farm), s) != 0)
        return store_failed(req);
    json_t *o = budgets_json(&l, s);
    if (!o)
        return store_failed(req);
    return web_reply_json(req, 200, o);
}

typedef struct budgets_put {
    budget_change change;
    budget_limits after;
    const char *bad_kind;
    char error[256];
    int rc;
} budgets_put;

static void budgets_put_work(web_request *req)
{
    budgets_put *p = req->state;
    p->rc = budget_update(&p->after, farm_config(req->farm), farm_store(req->farm), &p->change,
                          &p->bad_kind);
    if (p->rc)
        snprintf(p->error, sizeof(p->error), "%s", farm_error_last());
}

static int bad_request(web_request *req, json_t *in, const char *msg, const char *field)
{
    json_decref(in);
    web_reply_json(req, 400, json_pack("{s:s,s:s}", "error", msg, "field", field ? field : ""));
    return 1;
}

/* Parse {"session_usd": N | null, ...} into c. Returns 0, or answers 4xx
 * and returns 1. */
static int budgets_body_parse(web_request *req, budget_change *c)
{
    json_t *in, *v;
    const char *key;
    char msg[256];
    int n = 0;

    in = web_body_object(req, BUDGETS_BODY_MAX,
                         "{\"session_usd\": N, \"repo_daily_usd\": N, \"daily_usd\": N}, any of "
                         "them; N >= 0 (0: no budget), null: back to the config's value");
    if (!in)
        return 1;
    json_object_foreach(in, key, v)
    {
        int kind = budget_kind_find(key);
        if (kind < 0) {
            snprintf(msg, sizeof(msg),
                     "%.64s: unknown budget (session_usd, repo_daily_usd, daily_usd)", key);
            return bad_request(req, in, msg, "");
        }
        if (json_is_null(v)) {
            c->clear[kind] = 1;
        } else if (json_is_number(v)) {
            double usd = json_number_value(v);
            if (!isfinite(usd) || usd < 0 || usd > BUDGET_USD_MAX) {
                snprintf(msg, sizeof(msg),
                         "%s must be a number of USD between 0 (no budget) and %g, or null "
                         "(back to the config's value)",
                         key, BUDGET_USD_MAX);
                return bad_request(req, in, msg, budget_kind_name(kind));
            }
            c->set[kind] = 1;
            c->usd[kind] = usd;
        } else {
            snprintf(msg, sizeof(msg),
                     "%s: expected a number of USD, or null (back to the config's value)", key);
            return bad_request(req, in, msg, budget_kind_name(kind));
        }
        n++;
    }
    json_decref(in);
    if (n == 0) {
        web_reply_error(req, 400, "nothing to change",
                        "give at least one of session_usd, repo_daily_usd, daily_usd");
        return 1;
    }
    return 0;
}

int route_api_budgets_put(web_request *req)
{
    if (req->deferred) {
        budgets_put *p = req->state;
        if (p->rc == FARM_EINVALID)
            return web_reply_json(
                req, 400,
                json_pack("{s:s,s:s}", "error", p->error, "field", p->bad_kind ? p->bad_kind : ""));
        if (p->rc) {
            farm_error_set("%s", p->error);
            return store_failed(req);
        }
        auth_identity who;
        auth_api_identify(&who, req->cfg, web_header(req, "Authorization"), req->loopback);
        char v[BUDGET_NKINDS][32];
        for (int i = 0; i < BUDGET_NKINDS; i++)
            snprintf(v[i], sizeof(v[i]), "%g%s", p->after.usd[i],
                     p->after.from_setting[i] ? "" : " (config)");
        log_info("budgets changed", "by", who.name ? who.name : "unknown", "session_usd", v[0],
                 "repo_daily_usd", v[1], "daily_usd", v[2]);
        json_t *o = budgets_json(&p->after, farm_store(req->farm));
        if (!o)
            return store_failed(req);
        return web_reply_json(req, 200, o);
    }
    if (!web_authorize(req, AUTH_ADMIN))
        return 0;
    budgets_put *p = calloc(1, sizeof(*p));
    if (!p)
        return FARM_ENOMEM;
    if (budgets_body_parse(req, &p->change)) {
        free(p);
        return 0;
    }
    req->state = p;
    req->state_free = free;
    if (web_defer(req, budgets_put_work) != 0)
        return web_reply_error(req, 503, "the server is shutting down", "try again");
    return 0;
}
