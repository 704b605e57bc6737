/*
 * route_api.c - the read side of the REST API: sessions and deliveries.
 *
 *   GET /api/sessions?state=&repo=&since=&limit=&before=   newest first
 *   GET /api/sessions/{id}
 *   GET /api/deliveries?tracker=&outcome=&repo=&event=&since=&limit=&before=
 *
 * Reads need the viewer role (web_authorize). Bad parameters are 400 with a
 * hint naming the parameter. Lists carry `next_before` when a further page
 * may exist: pass it back as `before`.
 */
#include "routes.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/digest/digest.h"
#include "farm/store/store_hold.h"
#include "farm/store/store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int web_authorize(web_request *req, auth_role need)
{
    auth_identity who;
    if (auth_api_identify(&who, req->cfg, web_header(req, "Authorization"), req->loopback) != 0) {
        web_reply_error(req, 401, farm_error_last(),
                        "send `Authorization: Bearer <token>` with a token from the config");
        return 0;
    }
    if (!auth_role_allows(who.role, need)) {
        char hint[96];
        snprintf(hint, sizeof(hint), "this needs the %s role; the token has %s",
                 auth_role_name(need), auth_role_name(who.role));
        web_reply_error(req, 403, "forbidden", hint);
        return 0;
    }
    return 1;
}

/* A positive integer parameter within [1, max]; 0 when absent, -1 when bad. */
static int64_t int_param(web_request *req, const char *name, int64_t max)
{
    const char *v = web_query(req, name);
    if (!v)
        return 0;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < 1 || n > max)
        return -1;
    return n;
}

static int bad_param(web_request *req, const char *name, const char *hint)
{
    char error[96];
    snprintf(error, sizeof(error), "bad query parameter `%s`", name);
    return web_reply_error(req, 400, error, hint);
}

static json_t *time_json(int64_t ms)
{
    char ts[40];
    if (!ms)
        return json_null();
    clock_format_rfc3339(ts, sizeof(ts), ms);
    return json_string(ts);
}

static json_t *str_json(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *delivery_json(const store_delivery *d)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "id", json_integer(d->id));
    json_object_set_new(o, "tracker", str_json(d->tracker));
    json_object_set_new(o, "delivery_id", str_json(d->delivery_id));
    json_object_set_new(o, "event", str_json(d->event));
    json_object_set_new(o, "action", str_json(d->action));
    json_object_set_new(o, "repo", str_json(d->repo));
    json_object_set_new(o, "number", d->number ? json_integer(d->number) : json_null());
    json_object_set_new(o, "received", time_json(d->received_ms));
    json_object_set_new(o, "outcome", str_json(d->outcome));
    json_object_set_new(o, "reason", str_json(d->reason));
    json_object_set_new(o, "session", d->session_id ? json_integer(d->session_id) : json_null());
    json_object_set_new(o, "job", d->job_id ? json_integer(d->job_id) : json_null());
    return o;
}

/* Add each session's facts from its log (tests, diffstat, step, ...: see
 * farm/digest/digest.h) to the JSON objects of list (list[i] is v[i]).
 * Returns 0 or an error code. */
static int annotate(web_request *req, json_t *list, const store_session *v, size_t n)
{
    json_t **objs = n ? calloc(n, sizeof(*objs)) : NULL;
    if (n && !objs)
        return FARM_ENOMEM;
    for (size_t i = 0; i < n; i++)
        objs[i] = json_array_get(list, i); /* borrowed; NULL when it could not be built */
    int rc = digest_sessions_annotate(objs, v, n, farm_store(req->farm), clock_wall_ms());
    free(objs);
    return rc;
}

static int store_failed(web_request *req)
{
    log_error("store read failed", "route", req->route->name, "error", farm_error_last());
    return web_reply_error(req, 503, "the store could not be read", "try again; see the log");
}

/* The parameters both lists share. Returns 0, or answers 400 and returns 1. */
static int list_params(web_request *req, int64_t *since, int *limit, int64_t *before)
{
    const char *s = web_query(req, "since");
    *since = 0;
    if (s && clock_parse_since(since, s) != 0) {
        bad_param(req, "since", "a duration such as 24h, 90m, 2d, or an RFC 3339 time");
        return 1;
    }
    int64_t l = int_param(req, "limit", STORE_LIST_MAX);
    if (l < 0) {
        bad_param(req, "limit", "an integer from 1 to 1000");
        return 1;
    }
    *limit = (int)l;
    *before = int_param(req, "before", INT64_MAX);
    if (*before < 0) {
        bad_param(req, "before", "the next_before of the previous page");
        return 1;
    }
    return 0;
}

static int known_state(const char *state)
{
    for (const char *const *s = store_session_states(); *s; s++)
        if (!strcmp(*s, state))
            return 1;
    return 0;
}

int route_api_sessions(web_request *req)
{
    if (!web_authorize(req, AUTH_VIEWER))
        return 0;
    store_session_filter f = STORE_SESSION_FILTER_INIT;
    if (list_params(req, &f.since_ms, &f.limit, &f.before_id))
        return 0;
    f.state = web_query(req, "state");
    f.repo = web_query(req, "repo");
    f.tracker = web_query(req, "tracker");
    if (f.state && !known_state(f.state))
        return bad_param(req, "state",
                         "one of queued, preparing, running, testing, pushing, review, "
                         "revising, waiting, done, failed, cancelled");

    store_session *v = NULL;
    size_t n = 0;
    if (store_session_list(&v, &n, farm_store(req->farm), &f) != 0)
        return store_failed(req);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, digest_session_json(&v[i]));
    if (json_array_size(list) != n || annotate(req, list, v, n) != 0) {
        json_decref(list);
        store_session_list_free(v, n);
        return store_failed(req);
    }
    int limit = f.limit > 0 ? f.limit : STORE_LIST_DEFAULT;
    json_t *o = json_pack("{s:o}", "sessions", list);
    if (o && n > 0 && n == (size_t)limit)
        json_object_set_new(o, "next_before", json_integer(v[n - 1].id));
    store_session_list_free(v, n);
    return web_reply_json(req, 200, o);
}

int route_api_session(web_request *req)
{
    if (!web_authorize(req, AUTH_VIEWER))
        return 0;
    const char *seg = req->segment[0];
    char *end;
    errno = 0;
    long long id = strtoll(seg, &end, 10);
    if (errno || *end || id < 1)
        return web_reply_error(req, 404, "no such session", "session ids are positive integers");
    store_session *s = NULL;
    int rc = store_session_get(&s, farm_store(req->farm), id);
    if (rc == FARM_ENOTFOUND)
        return web_reply_error(req, 404, "no such session", "GET /api/sessions lists them");
    if (rc)
        return store_failed(req);
    json_t *o = digest_session_json(s);
    if (o && digest_sessions_annotate(&o, s, 1, farm_store(req->farm), clock_wall_ms()) != 0) {
        json_decref(o);
        store_session_free(s);
        return store_failed(req);
    }
    char *held_by = NULL; /* the hold (`/farm hold`), or null */
    if (o && store_hold_get(&held_by, farm_store(req->farm), s->tracker, s->repo, s->number) == 0)
        json_object_set_new(o, "hold", held_by ? json_pack("{s:s}", "by", held_by) : json_null());
    free(held_by);
    store_session_free(s);
    return web_reply_json(req, 200, o);
}

int route_api_deliveries(web_request *req)
{
    if (!web_authorize(req, AUTH_VIEWER))
        return 0;
    store_delivery_filter f = STORE_DELIVERY_FILTER_INIT;
    if (list_params(req, &f.since_ms, &f.limit, &f.before_id))
        return 0;
    f.tracker = web_query(req, "tracker");
    f.outcome = web_query(req, "outcome");
    f.repo = web_query(req, "repo");
    f.event = web_query(req, "event");

    store_delivery *v = NULL;
    size_t n = 0;
    if (store_delivery_list(&v, &n, farm_store(req->farm), &f) != 0)
        return store_failed(req);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, delivery_json(&v[i]));
    int limit = f.limit > 0 ? f.limit : STORE_LIST_DEFAULT;
    json_t *o = json_pack("{s:o}", "deliveries", list);
    if (o && n > 0 && n == (size_t)limit)
        json_object_set_new(o, "next_before", json_integer(v[n - 1].id));
    store_delivery_list_free(v, n);
    return web_reply_json(req, 200, o);
}
