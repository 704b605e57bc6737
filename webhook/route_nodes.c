/*
 * route_nodes.c - GET /api/nodes: the farm processes sharing this store,
 * from their heartbeats (farm/store/store_node.h): id, host, role, pid,
 * slots, runs at work, start and last heartbeat, and the heartbeat's age
 * so a dead or hung node stands out. `farm nodes` prints it.
 */
#include "routes.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/store/store_node.h"

#include <jansson.h>

int route_api_nodes(web_request *req)
{
    store_node *v = NULL;
    size_t n = 0;
    int64_t now = clock_wall_ms();

    if (!web_authorize(req, AUTH_VIEWER))
        return 0;
    if (store_node_list(&v, &n, farm_store(req->farm)) != 0) {
        log_error("store failed", "route", req->route->name, "error", farm_error_last());
        return web_reply_error(req, 503, "the store could not be read or written",
                               "try again; see the log");
    }
    json_t *nodes = json_array();
    for (size_t i = 0; nodes && i < n; i++) {
        json_t *o = json_pack(
            "{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "id", v[i].id, "host", v[i].host, "role",
            v[i].role, "pid", (json_int_t)v[i].pid, "slots", (json_int_t)v[i].slots, "running",
            (json_int_t)v[i].running, "started_ms", (json_int_t)v[i].started_ms, "beat_ms",
            (json_int_t)v[i].beat_ms, "beat_age_ms", (json_int_t)(now - v[i].beat_ms));
        if (!o || json_array_append_new(nodes, o)) {
            json_decref(nodes);
            nodes = NULL;
        }
    }
    store_node_list_free(v, n);
    return web_reply_json(req, 200,
                          json_pack("{s:o,s:I}", "nodes", nodes, "now_ms", (json_int_t)now));
}
