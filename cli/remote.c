/*
 * remote.c - the CLI's client side for a running farm (see remote.h). All
 * HTTP goes through base/http.h.
 */
#include "remote.h"
#include "base/error.h"
#include "base/http.h"
#include "farm/config/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int remote_init(remote *r, const char *server_opt, const char *config_path)
{
    r->not_found = NULL;
    if (server_opt) {
        size_t n = strlen(server_opt);
        while (n > 0 && server_opt[n - 1] == '/')
            n--;
        if (strncmp(server_opt, "http://", 7) != 0 && strncmp(server_opt, "https://", 8) != 0) {
            fprintf(stderr, "farm: --server wants a URL such as http://127.0.0.1:8080\n");
            return 1;
        }
        if (n >= sizeof(r->server)) {
            fprintf(stderr, "farm: --server URL is too long\n");
            return 1;
        }
        memcpy(r->server, server_opt, n);
        r->server[n] = '\0';
        return 0;
    }
    config *c = NULL;
    char *errors = NULL;
    int rc = config_path ? config_load(&c, config_path, &errors) : config_default(&c);
    if (rc) {
        fprintf(stderr, "farm: %s: %s\n%s", config_path ? config_path : "defaults",
                farm_error_last(), errors ? errors : "");
        free(errors);
        return 1;
    }
    char host[256];
    int port = 0;
    if (config_listen_split(c, host, sizeof(host), &port) != 0) {
        fprintf(stderr, "farm: listen address '%s' is not host:port\n", c->listen);
        config_free(c);
        return 1;
    }
    /* A wildcard listen address is reached through loopback. */
    const char *h = host;
    if (!strcmp(h, "0.0.0.0") || !*h)
        h = "127.0.0.1";
    else if (!strcmp(h, "::"))
        h = "::1";
    snprintf(r->server, sizeof(r->server), strchr(h, ':') ? "http://[%s]:%d" : "http://%s:%d", h,
             port);
    config_free(c);
    return 0;
}

void remote_time_short(char *out, size_t n, const char *t)
{
    if (!t || strlen(t) < 19) {
        snprintf(out, n, "-");
        return;
    }
    snprintf(out, n, "%.10s %.8s", t, t + 11);
}

int remote_query_add(buf *q, const char *name, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = buf_puts(q, q->len ? "&" : "?");
    if (!rc)
        rc = buf_puts(q, name);
    if (!rc)
        rc = buf_putc(q, '=');
    for (const unsigned char *p = (const unsigned char *)value; *p && !rc; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~", *p))
            rc = buf_putc(q, (char)*p);
        else
            rc = buf_printf(q, "%%%c%c", hex[*p >> 4], hex[*p & 15]);
    }
    return rc;
}

int remote_get_json(json_t **out, const remote *r, const char *path)
{
    return remote_send_json(out, r, "GET", path, NULL);
}

int remote_settings(json_t **out, const remote *r, const char *path, const char *method,
                    const json_t *change)
{
    if (json_object_size(change) == 0)
        return remote_get_json(out, r, path);
    char *text = json_dumps(change, JSON_COMPACT);
    int rc = text ? remote_send_json(out, r, method, path, text) : 1;
    free(text);
    return rc;
}

int remote_print(json_t *body, int as_json, void (*print)(json_t *body))
{
    if (as_json) {
        char *text = json_dumps(body, JSON_INDENT(2));
        if (text)
            puts(text);
        free(text);
    } else {
        print(body);
    }
    json_decref(body);
    return 0;
}

int remote_send_json(json_t **out, const remote *r, const char *method, const char *path,
                     const char *send)
{
    http_request req = HTTP_REQUEST_INIT;
    http_response resp;
    char url[2048];
    char auth[1100];
    const char *headers[4] = {"Accept: application/json", NULL, NULL, NULL};
    int status = 1;

    *out = NULL;
    memset(&resp, 0, sizeof(resp));
    if (snprintf(url, sizeof(url), "%s%s", r->server, path) >= (int)sizeof(url)) {
        fprintf(stderr, "farm: request URL too long\n");
        return 1;
    }
    const char *token = getenv("FARM_TOKEN");
    if (token && *token) {
        for (const char *p = token; *p; p++) {
            if ((unsigned char)*p < 0x20 || *p == 0x7f) {
                fprintf(stderr, "farm: FARM_TOKEN holds a control character; it must be the token "
                                "alone\n");
                return 1;
            }
        }
        if (snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token) >= (int)sizeof(auth)) {
            fprintf(stderr, "farm: FARM_TOKEN is too long\n");
            return 1;
        }
        headers[1] = auth;
    }
    if (send)
        headers[headers[1] ? 2 : 1] = "Content-Type: application/json";
    req.method = method;
    req.body = send;
    req.body_len = send ? strlen(send) : 0;
    req.url = url;
    req.headers = headers;
    req.connect_timeout_ms = 3000;
    req.timeout_ms = 30000;
    req.max_retries = strcmp(method, "GET") ? 0 : 1; /* a write is not repeated blindly */
    req.max_response = 64u << 20;
    http_global_init();
    int rc = http_do(&resp, &req);
    if (rc) {
        fprintf(stderr, "farm: cannot reach the farm at %s: is `farm serve` running? (%s)\n",
                r->server, farm_error_last());
        goto out;
    }
    json_error_t jerr;
    json_t *body = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, &jerr);
    if (resp.status == 401) {
        fprintf(stderr,
                "farm: the farm at %s refused the request: set FARM_TOKEN to an API "
                "token from its config\n",
                r->server);
    } else if (resp.status == 403) {
        fprintf(stderr, "farm: the token in FARM_TOKEN lacks the role for this: %s\n",
                json_string_value(json_object_get(body, "hint")) ?: "ask for a viewer token");
    } else if (resp.status == 404 && r->not_found) {
        fprintf(stderr, "farm: %s\n", r->not_found);
    } else if (resp.status < 200 || resp.status > 299) {
        const char *error = json_string_value(json_object_get(body, "error"));
        const char *hint = json_string_value(json_object_get(body, "hint"));
        fprintf(stderr, "farm: %s answered %ld: %s%s%s%s\n", r->server, resp.status,
                error ? error : "unexpected answer", hint ? " (" : "", hint ? hint : "",
                hint ? ")" : "");
    } else if (!body) {
        fprintf(stderr, "farm: %s answered something that is not JSON: is it a farm?\n", r->server);
    } else {
        *out = body;
        body = NULL;
        status = 0;
    }
    json_decref(body);
out:
    http_response_free(&resp);
    return status;
}

const char *remote_str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "-";
}

void remote_cell(char *out, size_t n, const char *s)
{
    size_t i = 0;
    for (; s && *s && i + 1 < n; s++)
        out[i++] = (unsigned char)*s < 0x20 ? ' ' : *s;
    /* cut: drop a trailing partial UTF-8 sequence (continuation bytes, then its lead) */
    while (i > 0 && s && *s && ((unsigned char)out[i - 1] & 0xC0) == 0x80)
        i--;
    if (i > 0 && s && *s && ((unsigned char)out[i - 1] & 0xC0) == 0xC0)
        i--;
    out[i] = '\0';
}
