/*
 * route_digest.c - GET /api/digest?since=24h: what finished in the window,
 * PRs waiting for review, failures, questions waiting, what runs and waits
 * now, and the agent time and cost (farm/digest/digest.h says what is in it).
 * Reading it needs the viewer role. `since` is a duration (24h, 90m, 7d) or
 * an RFC 3339 time; the default is 24h.
 */
#include "routes.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/digest/digest.h"

#define DAY_MS (24LL * 3600 * 1000)

int route_api_digest(web_request *req)
{
    if (!web_authorize(req, AUTH_VIEWER))
        return 0;
    int64_t now = clock_wall_ms(), since = now - DAY_MS;
    const char *s = web_query(req, "since");
    if (s && clock_parse_since(&since, s) != 0)
        return web_reply_error(req, 400, "bad query parameter `since`",
                               "a duration such as 24h, 90m, 7d, or an RFC 3339 time");
    if (since > now)
        return web_reply_error(req, 400, "bad query parameter `since`",
                               "the window starts in the future");
    json_t *d = NULL;
    if (digest_build(&d, farm_store(req->farm), since, now) != 0) {
        log_error("digest could not be built", "error", farm_error_last());
        return web_reply_error(req, 503, "the store could not be read", "try again; see the log");
    }
    return web_reply_json(req, 200, d);
}
