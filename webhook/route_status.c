/*
 * route_status.c - GET /healthz and GET /metrics.
 *
 * Both are open to any client that can reach the server: they name no
 * repository and carry no secret, and load balancers and scrapers must reach
 * them without a token.
 */
#include "metrics.h"
#include "routes.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/store/store.h"

int route_healthz(web_request *req)
{
    if (store_health(farm_store(req->farm)) != 0) {
        json_t *o = json_pack("{s:s,s:s}", "status", "unavailable", "error", farm_error_last());
        return web_reply_json(req, 503, o);
    }
    return web_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

int route_metrics(web_request *req)
{
    buf b = BUF_INIT(4u << 20);
    int rc = metrics_render(&b, req->farm);
    if (rc) {
        buf_free(&b);
        log_error("metrics page could not be rendered", "error", farm_error_last());
        return web_reply_error(req, 500, "metrics page could not be rendered", NULL);
    }
    rc = web_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    buf_free(&b);
    return rc;
}
