/*
 * route_hooks.c - POST /hooks/github and POST /hooks/azure.
 *
 * The order of checks is the contract. At the headers, before the body is
 * read: a hook with no secret configured is off (404, saying which key turns
 * it on; unsigned deliveries are never accepted), Azure DevOps credentials
 * (401), the size cap (413, enforced by the server, also while the body
 * streams in). With the body: the GitHub signature (401), the JSON and its
 * shape (400), then farm_ingest_submit() with the connection
 * suspended: no thread waits for the store; the group commit's completion
 * resumes the connection, and the answer goes out once the delivery is
 * durable: 202 accepted, 200 duplicate or ignored, 503 when the store failed
 * (the tracker redelivers). Every delivery is logged once with its id.
 */
#include "auth.h"
#include "hooks.h"
#include "metrics.h"
#include "routes.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/intake/ingest.h"

#include <inttypes.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Delivery ids are UUIDs in practice; anything longer is refused. */
#define DELIVERY_ID_MAX 100

typedef struct hook_state {
    tracker_event ev;
    ingest_result result;
    int rc;
    char error[256];
    struct MHD_Connection *conn; /* resumed by the completion */
    atomic_int finished;         /* the completion has run */
} hook_state;

static void hook_state_free(void *p)
{
    hook_state *st = p;
    if (!st)
        return;
    tracker_event_free(&st->ev);
    free(st);
}

static void refuse(web_request *req, const char *tracker, const char *event, int status,
                   const char *outcome, const char *error, const char *hint)
{
    metrics_delivery_count(tracker, event, outcome);
    log_warn("delivery refused", "delivery", req->delivery, "tracker", tracker, "event",
             event ? event : "", "outcome", outcome, "error", error);
    web_reply_error(req, status, error, hint);
}

/* The delivery is durable (or the store failed): on the store's writer
 * thread, so only hand the result over and wake the connection. */
static void ingest_done(void *arg, int rc, const ingest_result *res)
{
    hook_state *st = arg;
    struct MHD_Connection *conn = st->conn;
    st->rc = rc;
    if (rc)
        snprintf(st->error, sizeof(st->error), "%s", farm_error_last());
    else
        st->result = *res;
    atomic_store(&st->finished, 1);
    MHD_resume_connection(conn); /* st may be freed from here on */
}

/* Called again after ingest_done: say what became of the delivery. */
static int answer(web_request *req)
{
    hook_state *st = req->state;
    const tracker_event *ev = &st->ev;
    const char *event = ev->event ? ev->event : "";
    if (st->rc == FARM_EINVALID) { /* the event is malformed: a retry would not help */
        metrics_delivery_count(ev->tracker, event, "invalid");
        log_warn("delivery refused", "delivery", req->delivery, "tracker", ev->tracker, "event",
                 event, "outcome", "invalid", "error", st->error);
        return web_reply_error(req, 400, st->error, "the delivery's fields are out of bounds");
    }
    if (st->rc) {
        metrics_delivery_count(ev->tracker, event, "error");
        log_error("delivery not recorded", "delivery", req->delivery, "tracker", ev->tracker,
                  "event", event, "error", st->error);
        return web_reply_error(req, 503, "the farm could not record the delivery",
                               "the store failed; the tracker will redeliver");
    }
    const char *outcome = ingest_outcome_name(st->result.outcome);
    char session[24];
    snprintf(session, sizeof(session), "%" PRId64, st->result.session_id);
    metrics_delivery_count(ev->tracker, event, outcome);
    log_info("delivery", "delivery", req->delivery, "tracker", ev->tracker, "event", event,
             "action", ev->action ? ev->action : "", "repo", ev->repo ? ev->repo : "", "outcome",
             outcome, "reason", st->result.reason, "session", session);

    json_t *o = json_object();
    if (!o)
        return web_reply_error(req, 500, "out of memory", NULL);
    json_object_set_new(o, "result", json_string(outcome));
    switch (st->result.outcome) {
    case INGEST_ACCEPTED:
        json_object_set_new(o, "session", json_integer(st->result.session_id));
        return web_reply_json(req, 202, o);
    case INGEST_IGNORED:
        json_object_set_new(o, "reason", json_string(st->result.reason));
        return web_reply_json(req, 200, o);
    case INGEST_DUPLICATE:
        return web_reply_json(req, 200, o);
    }
    return web_reply_json(req, 200, o);
}

/* Hand a parsed event to ingest and suspend the connection until its
 * commit; the state takes the event. */
static int submit_ingest(web_request *req, hook_state *st)
{
    req->state = st;
    req->state_free = hook_state_free;
    buf_free(&req->body); /* parsed: the event holds what is needed */
    st->conn = req->conn;
    req->suspended = 1;
    MHD_suspend_connection(req->conn);
    int rc = farm_ingest_submit(req->farm, &st->ev, ingest_done, st);
    if (rc == 0)
        return 0;
    req->suspended = 0;
    MHD_resume_connection(req->conn);
    st->rc = rc;
    snprintf(st->error, sizeof(st->error), "%s", farm_error_last());
    if (rc == FARM_EINVALID)
        return answer(req);
    metrics_delivery_count(st->ev.tracker, st->ev.event, "error");
    return web_reply_error(req, 503, st->error, "the tracker will redeliver");
}

/* Is the request waiting for (or back from) ingest? *done is set once
 * ingest_done has resumed it. */
static int submitted(web_request *req, int *done)
{
    hook_state *st = req->state;
    *done = 0;
    if (!st || !req->suspended)
        return 0;
    if (atomic_load(&st->finished)) {
        req->suspended = 0;
        *done = 1;
    }
    return 1;
}

int route_hook_github_early(web_request *req)
{
    if (!auth_github_on(req->cfg)) {
        refuse(req, "github", web_header(req, "X-GitHub-Event"), 404, "off",
               "the GitHub webhook is off: set github.webhook_secret",
               "configure the webhook's secret in the farm (github.webhook_secret) and in GitHub");
        return 0;
    }
    return 0;
}

int route_hook_azure_early(web_request *req)
{
    if (!auth_azure_on(req->cfg)) {
        refuse(req, "azure", NULL, 404, "off",
               "the Azure DevOps webhook is off: set azure.webhook_password or "
               "azure.webhook_header_secret",
               "configure the service hook's credentials in the farm's azure section");
        return 0;
    }
    const char *header = req->cfg->azure.webhook_header;
    if (auth_azure_check(req->cfg, web_header(req, "Authorization"),
                         header && *header ? web_header(req, header) : NULL) != 0) {
        refuse(req, "azure", NULL, 401, "unauthorized", farm_error_last(),
               "configure the service hook with the basic auth user and password (or header) "
               "in the farm's azure section");
        return 0;
    }
    return 0;
}

int route_hook_github(web_request *req)
{
    int done;
    if (submitted(req, &done))
        return done ? answer(req) : 0;
    const char *delivery = web_header(req, "X-GitHub-Delivery");
    const char *event = web_header(req, "X-GitHub-Event");
    snprintf(req->delivery, sizeof(req->delivery), "%s", delivery ? delivery : "");

    if (auth_github_check(req->cfg, req->body.data, req->body.len,
                          web_header(req, "X-Hub-Signature-256")) != 0) {
        refuse(req, "github", event, 401, "unauthorized", farm_error_last(),
               "sign the delivery with the secret in github.webhook_secret");
        return 0;
    }
    if (!delivery || !*delivery || strlen(delivery) > DELIVERY_ID_MAX) {
        refuse(req, "github", event, 400, "invalid", "missing or overlong X-GitHub-Delivery header",
               "GitHub sends a unique delivery id with every webhook");
        return 0;
    }
    /* GitHub signs the body as sent, so the form is decoded only now. */
    char *form = NULL;
    size_t formlen = 0;
    const char *type = web_header(req, "Content-Type");
    if (type && !strncasecmp(type, "application/x-www-form-urlencoded", 33)) {
        int rc = hook_github_form_payload(&form, &formlen, req->body.data, req->body.len);
        if (rc == FARM_ENOMEM)
            return web_reply_error(req, 500, "out of memory", NULL);
        if (rc) {
            refuse(req, "github", event, 400, "invalid", farm_error_last(),
                   "set the webhook's content type to application/json");
            return 0;
        }
    }
    hook_state *st = calloc(1, sizeof(*st));
    if (!st) {
        free(form);
        return web_reply_error(req, 500, "out of memory", NULL);
    }
    int rc = form ? hook_github_parse(&st->ev, event, delivery, form, formlen)
                  : hook_github_parse(&st->ev, event, delivery, req->body.data, req->body.len);
    free(form);
    if (rc) {
        free(st);
        if (rc == FARM_ENOMEM)
            return web_reply_error(req, 500, "out of memory", NULL);
        refuse(req, "github", event, 400, "invalid", farm_error_last(),
               "send a GitHub webhook payload as application/json");
        return 0;
    }
    return submit_ingest(req, st);
}

int route_hook_azure(web_request *req)
{
    int done;
    if (submitted(req, &done))
        return done ? answer(req) : 0;
    /* the credentials were checked at the headers (route_hook_azure_early) */
    hook_state *st = calloc(1, sizeof(*st));
    if (!st)
        return web_reply_error(req, 500, "out of memory", NULL);
    hook_azure_where where;
    int rc = hook_azure_parse_where(&st->ev, &where, req->body.data, req->body.len);
    if (!rc && st->ev.delivery_id && strlen(st->ev.delivery_id) > DELIVERY_ID_MAX) {
        farm_error_set("the event id is longer than %d bytes", DELIVERY_ID_MAX);
        rc = FARM_EINVALID;
    }
    if (!rc) {
        snprintf(req->delivery, sizeof(req->delivery), "%s", st->ev.delivery_id);
        rc = hook_azure_route(&st->ev, &where, req->cfg);
        if (rc == FARM_ENOTFOUND)
            rc = 0; /* recorded under its provisional name, and ignored by ingest */
    }
    hook_azure_where_free(&where);
    if (rc) {
        hook_state_free(st);
        if (rc == FARM_ENOMEM)
            return web_reply_error(req, 500, "out of memory", NULL);
        refuse(req, "azure", NULL, 400, "invalid", farm_error_last(),
               "send an Azure DevOps service hook payload (resourceVersion 1.0) as JSON");
        return 0;
    }
    return submit_ingest(req, st);
}
