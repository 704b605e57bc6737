/*
 * route_scaling.c - the scheduler's HTTP surface: GET/PUT /api/scaling (the
 * limits in force and where each comes from; a change is validated, kept in
 * the store and taken up by the scheduler at once), GET /api/status (what
 * `farm status` shows), POST /api/sessions/{id}/cancel, and the scheduler's
 * lines of /metrics.
 *
 * Reads need the viewer role, cancel the member role, a scaling change the
 * admin role. Writes wait for a group commit, so they run deferred
 * (web_defer) instead of holding an HTTP thread.
 */
#include "routes.h"
#include "metrics.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/report/outbox.h"
#include "farm/sched/scaling.h"
#include "farm/sched/scheduler.h"
#include "farm/store/store_job.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCALING_BODY_MAX 4096

static int store_failed(web_request *req)
{
    log_error("store failed", "route", req->route->name, "error", farm_error_last());
    return web_reply_error(req, 503, "the store could not be read or written",
                           "try again; see the log");
}

static json_t *limits_json(const scaling_limits *l)
{
    json_t *o = json_object(), *src = json_object();
    for (int i = 0; o && src && i < SCALING_NFIELDS; i++) {
        json_object_set_new(o, scaling_field_name(i), json_integer(l->value[i]));
        json_object_set_new(src, scaling_field_name(i),
                            json_string(l->from_setting[i] ? "setting" : "config"));
    }
    if (o && src)
        json_object_set_new(o, "source", src);
    else
        json_decref(src);
    return o;
}

/* ---- GET /api/scaling ---------------------------------------------------------- */

static int scaling_get_reply(web_request *req)
{
    scaling_limits l;
    if (scaling_get(&l, farm_config(req->farm), farm_store(req->farm)) != 0)
        return store_failed(req);
    return web_reply_json(req, 200, limits_json(&l));
}

int route_api_scaling(web_request *req)
{
    if (!web_authorize(req, AUTH_VIEWER))
        return 0;
    return scaling_get_reply(req);
}

/* ---- PUT /api/scaling ---------------------------------------------------------- */

typedef struct scaling_put {
    scaling_change change;
    scaling_limits after;
    const char *bad_field;
    char error[256];
    int rc;
} scaling_put;

static void scaling_put_work(web_request *req)
{
    scaling_put *p = req->state;
    p->rc = scaling_update(&p->after, farm_config(req->farm), farm_store(req->farm), &p->change,
                           &p->bad_field);
    if (p->rc)
        snprintf(p->error, sizeof(p->error), "%s", farm_error_last());
    else
        farm_jobs_kick(req->farm); /* the scheduler reads the limits at once */
}

/* Parse {"max_agents": N, ...} into c. Returns 0, or answers 400 and
 * returns 1. */
static int scaling_body_parse(web_request *req, scaling_change *c)
{
    json_t *in, *v;
    const char *key;
    char msg[256];
    int n = 0;

    in = web_body_object(req, SCALING_BODY_MAX,
                         "{\"max_agents\": N, \"max_per_repo\": N, \"min_warm\": N, "
                         "\"idle_timeout_s\": N}, any of them");
    if (!in)
        return 1;
    json_object_foreach(in, key, v)
    {
        int field = scaling_field_find(key);
        if (field < 0) {
            snprintf(msg, sizeof(msg), "%.64s: unknown setting", key);
            json_decref(in);
            web_reply_error(req, 400, msg, "max_agents, max_per_repo, min_warm, idle_timeout_s");
            return 1;
        }
        if (!json_is_integer(v)) {
            snprintf(msg, sizeof(msg), "%s: expected an integer", key);
            json_decref(in);
            web_reply_error(req, 400, msg, NULL);
            return 1;
        }
        c->set[field] = 1;
        c->value[field] = json_integer_value(v);
        n++;
    }
    json_decref(in);
    if (n == 0) {
        web_reply_error(req, 400, "nothing to change",
                        "give at least one of max_agents, max_per_repo, min_warm, idle_timeout_s");
        return 1;
    }
    return 0;
}

int route_api_scaling_put(web_request *req)
{
    if (req->deferred) {
        scaling_put *p = req->state;
        if (p->rc == FARM_EINVALID) {
            json_t *o = json_pack("{s:s,s:s}", "error", p->error, "field",
                                  p->bad_field ? p->bad_field : "");
            return web_reply_json(req, 400, o);
        }
        if (p->rc) {
            farm_error_set("%s", p->error);
            return store_failed(req);
        }
        auth_identity who;
        auth_api_identify(&who, req->cfg, web_header(req, "Authorization"), req->loopback);
        char max[16], per[16], warm[16];
        snprintf(max, sizeof(max), "%d", p->after.value[SCALING_MAX_AGENTS]);
        snprintf(per, sizeof(per), "%d", p->after.value[SCALING_MAX_PER_REPO]);
        snprintf(warm, sizeof(warm), "%d", p->after.value[SCALING_MIN_WARM]);
        log_info("scaling changed", "by", who.name ? who.name : "unknown", "max_agents", max,
                 "max_per_repo", per, "min_warm", warm);
        return web_reply_json(req, 200, limits_json(&p->after));
    }
    if (!web_authorize(req, AUTH_ADMIN))
        return 0;
    scaling_put *p = calloc(1, sizeof(*p));
    if (!p)
        return FARM_ENOMEM;
    if (scaling_body_parse(req, &p->change)) {
        free(p);
        return 0;
    }
    req->state = p;
    req->state_free = free;
    if (web_defer(req, scaling_put_work) != 0)
        return web_reply_error(req, 503, "the server is shutting down", "try again");
    return 0;
}

/* ---- POST /api/sessions/{id}/cancel ------------------------------------------------ */

typedef struct cancel_req {
    int64_t session, job;
    char actor[128];
    char error[256];
    int rc;
} cancel_req;

static void cancel_work(web_request *req)
{
    cancel_req *c = req->state;
    c->rc = farm_session_cancel(&c->job, req->farm, c->session, c->actor);
    if (c->rc)
        snprintf(c->error, sizeof(c->error), "%s", farm_error_last());
}

int route_api_session_cancel(web_request *req)
{
    if (req->deferred) {
        cancel_req *c = req->state;
        if (c->rc == FARM_ENOTFOUND)
            return web_reply_error(req, 404, "no such session", "GET /api/sessions lists them");
        if (c->rc == FARM_ECONFLICT)
            return web_reply_error(req, 409, c->error, "only a session at work can be cancelled");
        if (c->rc) {
            farm_error_set("%s", c->error);
            return store_failed(req);
        }
        return web_reply_json(req, 202,
                              json_pack("{s:I,s:I,s:s}", "session", (json_int_t)c->session, "job",
                                        (json_int_t)c->job, "state", "cancelling"));
    }
    if (!web_authorize(req, AUTH_MEMBER))
        return 0;
    char *end;
    errno = 0;
    long long id = strtoll(req->segment[0], &end, 10);
    if (errno || *end || id <= 0)
        return web_reply_error(req, 404, "no such session", "session ids are positive integers");
    cancel_req *c = calloc(1, sizeof(*c));
    if (!c)
        return FARM_ENOMEM;
    auth_identity who;
    auth_api_identify(&who, req->cfg, web_header(req, "Authorization"), req->loopback);
    c->session = id;
    snprintf(c->actor, sizeof(c->actor), "%s", who.name ? who.name : "unknown");
    req->state = c;
    req->state_free = free;
    if (web_defer(req, cancel_work) != 0)
        return web_reply_error(req, 503, "the server is shutting down", "try again");
    return 0;
}

/* ---- GET /api/status --------------------------------------------------------------- */

static json_t *jobs_json(store *s)
{
    static const char *const states[] = {"queued", "leased", "done", "failed", "cancelled"};
    store_count *v = NULL;
    size_t n = 0;
    if (store_job_count_by_state(&v, &n, s) != 0)
        return NULL;
    json_t *o = json_object();
    for (size_t k = 0; o && k < sizeof(states) / sizeof(states[0]); k++)
        json_object_set_new(o, states[k], json_integer(0));
    for (size_t i = 0; o && i < n; i++)
        json_object_set_new(o, v[i].labels[0], json_integer(v[i].n));
    store_count_list_free(v, n);
    return o;
}

int route_api_status(web_request *req)
{
    if (!web_authorize(req, AUTH_VIEWER))
        return 0;
    scheduler_stats st;
    scaling_limits l;
    outbox_stats ob;
    store *s = farm_store(req->farm);

    scheduler_stats_get(&st, req->farm);
    if (scaling_get(&l, farm_config(req->farm), s) != 0)
        return store_failed(req);
    json_t *jobs = jobs_json(s);
    if (!jobs)
        return store_failed(req);
    json_t *o =
        json_pack("{s:{s:b,s:s,s:i,s:i,s:i,s:i,s:I,s:I,s:I},s:o,s:o}", "scheduler", "running",
                  st.started, "owner", st.owner, "slots", st.slots, "busy", st.busy, "idle",
                  st.slots - st.busy, "warm", st.warm, "jobs_started", (json_int_t)st.jobs_started,
                  "admission_waits", (json_int_t)st.admission_waits, "leases_lost",
                  (json_int_t)st.leases_lost, "jobs", jobs, "scaling", limits_json(&l));
    if (o && outbox_stats_get(&ob, s) == 0)
        json_object_set_new(o, "outbox",
                            json_pack("{s:I,s:I,s:I,s:I}", "pending", (json_int_t)ob.pending,
                                      "sent", (json_int_t)ob.sent, "failed", (json_int_t)ob.failed,
                                      "retries", (json_int_t)ob.retries));
    return web_reply_json(req, 200, o);
}

/* ---- /metrics ------------------------------------------------------------------- */

int metrics_render_scheduler(buf *b, farm *f)
{
    scheduler_stats st;
    store_count *v = NULL;
    size_t n = 0;
    int rc;

    assert(f);
    scheduler_stats_get(&st, f);
    rc = buf_printf(b,
                    "# HELP farm_slots Slot threads of this process's scheduler, by state.\n"
                    "# TYPE farm_slots gauge\n"
                    "farm_slots{state=\"busy\"} %d\nfarm_slots{state=\"idle\"} %d\n"
                    "farm_slots{state=\"warm\"} %d\n"
                    "# HELP farm_admission_waits_total Due jobs held back for want of memory.\n"
                    "# TYPE farm_admission_waits_total counter\n"
                    "farm_admission_waits_total %" PRIu64 "\n"
                    "# HELP farm_jobs_started_total Jobs leased and started by this process.\n"
                    "# TYPE farm_jobs_started_total counter\n"
                    "farm_jobs_started_total %" PRIu64 "\n"
                    "# HELP farm_leases_lost_total Runs stopped because another owner took "
                    "their lease.\n"
                    "# TYPE farm_leases_lost_total counter\n"
                    "farm_leases_lost_total %" PRIu64 "\n",
                    st.busy, st.slots - st.busy, st.warm, st.admission_waits, st.jobs_started,
                    st.leases_lost);
    if (st.started) {
        if (!rc)
            rc = buf_printf(b, "# HELP farm_scaling_limit The scaling limits in force.\n"
                               "# TYPE farm_scaling_limit gauge\n");
        for (int i = 0; i < SCALING_NFIELDS && !rc; i++)
            rc = buf_printf(b, "farm_scaling_limit{limit=\"%s\"} %d\n", scaling_field_name(i),
                            st.limits.value[i]);
    }
    if (store_job_count_by_state(&v, &n, farm_store(f)) == 0) {
        static const char *const states[] = {"queued", "leased", "done", "failed", "cancelled"};
        if (!rc)
            rc = buf_printf(b, "# HELP farm_jobs Jobs in the store, by state.\n"
                               "# TYPE farm_jobs gauge\n");
        for (size_t k = 0; k < sizeof(states) / sizeof(states[0]) && !rc; k++) {
            int64_t count = 0;
            for (size_t i = 0; i < n; i++)
                if (!strcmp(v[i].labels[0], states[k]))
                    count = v[i].n;
            rc = buf_printf(b, "farm_jobs{state=\"%s\"} %" PRId64 "\n", states[k], count);
        }
        store_count_list_free(v, n);
    }
    return rc;
}
