/*
 * route_ui.c - the web UI: the review queue (GET /), one session live
 * (GET /sessions/{id}), the admin page (GET /admin) and their scripts and
 * styles (GET /static/{name}).
 *
 * The pages are plain HTML, CSS and JavaScript from web/, embedded into the
 * binary at build time (web/embed.cmake -> web_assets.h), so `farm serve`
 * is self-contained. While working on the UI, set FARM_WEB_DIR to the web/
 * directory and the files are read from there on every request instead.
 *
 * The pages hold no data: they are open to anyone who reaches the server,
 * and their scripts read the API with the bearer token the user gives
 * (viewer for reading, member for messages, admin for scaling).
 *
 * A page is answered with its Content-Security-Policy as a header (the
 * pages carry the same policy in a <meta> tag, which cannot say
 * frame-ancestors): scripts, styles and requests from this origin only,
 * images also as data: URLs, no <base>, forms to this origin, and never
 * inside a frame. Every other answer gets the server's own policy, which
 * allows nothing (an SVG opened directly runs no script).
 */
#include "routes.h"
#include "web_assets.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ASSET_MAX (4u << 20) /* a file read from FARM_WEB_DIR */

/* What the pages in web/ need, and no more. */
#define PAGE_CSP                                                                                   \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "            \
    "object-src 'none'"

static const char *content_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".svg", "image/svg+xml"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
        if (!strcmp(dot, types[i].ext))
            return types[i].type;
    return NULL;
}

/* An asset name is one file of web/: letters, digits, '-', '_' and one
 * dot before a known extension. Nothing else can reach the disk. */
static int name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64 || name[0] == '.' || !content_type(name))
        return 0;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '_' || *c == '.'))
            return 0;
    return strchr(name, '.') == strrchr(name, '.');
}

/* Read web/<name> from FARM_WEB_DIR into b. Returns 0, FARM_ENOTFOUND or
 * FARM_EIO. */
static int read_override(buf *b, const char *dir, const char *name)
{
    char path[4096], chunk[8192];
    size_t n;
    int rc = 0;

    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path)) {
        farm_error_set("FARM_WEB_DIR is too long");
        return FARM_EIO;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        farm_error_set("cannot read %s: %s", path, strerror(errno));
        return errno == ENOENT ? FARM_ENOTFOUND : FARM_EIO;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (buf_append(b, chunk, n)) {
            farm_error_set("%s is larger than %u bytes", path, ASSET_MAX);
            rc = FARM_EIO;
            break;
        }
    if (!rc && ferror(f)) {
        farm_error_set("cannot read %s", path);
        rc = FARM_EIO;
    }
    fclose(f);
    return rc;
}

static int serve(web_request *req, const char *name)
{
    const char *dir = getenv("FARM_WEB_DIR");
    if (!name_ok(name))
        return web_reply_error(req, 404, "no such file", NULL);
    const char *dot = strrchr(name, '.');
    if (dot && !strcmp(dot, ".html"))
        req->csp = PAGE_CSP;
    if (dir && *dir) {
        buf b = BUF_INIT(ASSET_MAX);
        int rc = read_override(&b, dir, name);
        if (rc == FARM_ENOTFOUND) {
            buf_free(&b);
            return web_reply_error(req, 404, "no such file", NULL);
        }
        if (rc) {
            log_error("web asset unreadable", "error", farm_error_last());
            buf_free(&b);
            return web_reply_error(req, 500, "the page could not be read", "see the log");
        }
        rc = web_reply(req, 200, content_type(name), buf_cstr(&b), b.len);
        buf_free(&b);
        return rc;
    }
    for (unsigned i = 0; i < web_nassets; i++)
        if (!strcmp(web_assets[i].name, name))
            return web_reply(req, 200, content_type(name), (const char *)web_assets[i].data,
                             web_assets[i].len);
    return web_reply_error(req, 404, "no such file", NULL);
}

int route_ui_queue(web_request *req)
{
    return serve(req, "index.html");
}

int route_ui_session(web_request *req)
{
    const char *id = req->segment[0];
    if (!*id || strspn(id, "0123456789") != strlen(id) || strlen(id) > 18 || id[0] == '0')
        return web_reply_error(req, 404, "no such session", "session ids are positive integers");
    return serve(req, "session.html");
}

int route_ui_admin(web_request *req)
{
    return serve(req, "admin.html");
}

int route_ui_static(web_request *req)
{
    return serve(req, req->segment[0]);
}
