/*
 * usage.c - reading token usage out of a model's answer while it streams.
 *
 * The answer goes to the agent piece by piece as it arrives, with pieces cut
 * wherever the network cut them, so nothing here waits for a whole line, event
 * or document. Two small machines run over the bytes once:
 * - an event-stream line reader (text/event-stream): field names, "data"
 *   values joined across lines, events ended by a blank line, comments and
 *   CR, LF or CRLF line ends;
 * - a JSON scanner over each document (each event's data, or a whole
 *   non-streamed body) that tracks only where it is and copies out the few
 *   values that matter: "usage" and "model" at the top, or under "message"
 *   (Anthropic's message_start) or "response" (OpenAI's response.completed).
 * Memory is bounded whatever the answer's size: a captured value over its
 * slot is dropped, not grown. The captured usage object (a few hundred bytes)
 * is then read with jansson.
 *
 * Usage in each provider's terms, later counts replacing earlier ones (the
 * counts in a stream are cumulative):
 *   Anthropic  input_tokens, output_tokens, cache_read_input_tokens,
 *              cache_creation_input_tokens, cache_creation.ephemeral_1h_input_tokens
 *   Responses  input_tokens (cached included), output_tokens,
 *              input_tokens_details.cached_tokens
 *   Chat       prompt_tokens (cached included), completion_tokens,
 *              prompt_tokens_details.cached_tokens
 */
#include "internal.h"

#include <jansson.h>

#include <string.h>

/* ---- the JSON scanner ---------------------------------------------------------- */

enum {
    JS_VALUE,     /* a value comes next */
    JS_ARR_FIRST, /* after '[': a value or ']' */
    JS_OBJ_FIRST, /* after '{': a key or '}' */
    JS_KEY,       /* after ',' in an object: a key */
    JS_COLON,     /* after a key */
    JS_AFTER,     /* after a value: ',' or a closing bracket */
    JS_SCALAR,    /* inside a number or literal */
    JS_DONE,      /* the document is complete */
    JS_DEAD,      /* not JSON (an HTML error page, "[DONE]"): ignore the rest */
    JS_STOP,      /* found what was wanted */
};

void gw_json_init(gw_json_scan *s)
{
    int stop = s->stop_after_model;
    memset(s, 0, sizeof(*s));
    s->st = JS_VALUE;
    s->cap_slot = -1;
    s->stop_after_model = stop;
}

static void cap_put(gw_json_scan *s, char c)
{
    if (s->cap_slot < 0)
        return;
    gw_slot *sl = &s->slot[s->cap_slot];
    if (sl->len + 1 < sizeof(sl->data))
        sl->data[sl->len++] = c;
    else
        sl->over = 1;
}

/* The slot for the value about to start, or -1. */
static int target(const gw_json_scan *s)
{
    int d = s->depth;
    if (d < 1 || d > 2 || s->stack[d - 1] != '{' || s->stack[0] != '{')
        return -1;
    const char *k = s->key[d];
    if (d == 2 && strcmp(s->key[1], "message") != 0 && strcmp(s->key[1], "response") != 0)
        return -1;
    if (strcmp(k, "usage") == 0)
        return GW_SLOT_USAGE;
    if (strcmp(k, "model") == 0)
        return GW_SLOT_MODEL;
    return -1;
}

static void value_end(gw_json_scan *s)
{
    if (s->cap_slot >= 0 && s->depth == s->cap_depth) {
        gw_slot *sl = &s->slot[s->cap_slot];
        sl->data[sl->len] = '\0';
        sl->done = !sl->over;
        int model = s->cap_slot == GW_SLOT_MODEL;
        s->cap_slot = -1;
        if (model && s->stop_after_model && s->depth == 1 && sl->done) {
            s->st = JS_STOP;
            return;
        }
    }
    s->st = s->depth == 0 ? JS_DONE : JS_AFTER;
}

static void begin_value(gw_json_scan *s, char c)
{
    if (s->cap_slot < 0) {
        int slot = target(s);
        if (slot >= 0) {
            s->cap_slot = slot;
            s->cap_depth = s->depth;
            s->slot[slot].len = 0;
            s->slot[slot].over = s->slot[slot].done = 0;
        }
    }
    cap_put(s, c);
    if (c == '{' || c == '[') {
        if (s->depth >= (int)sizeof(s->stack)) {
            s->st = JS_DEAD;
            return;
        }
        s->stack[s->depth++] = (unsigned char)c;
        if (c == '{' && s->depth <= 2)
            s->key[s->depth][0] = '\0';
        s->st = c == '{' ? JS_OBJ_FIRST : JS_ARR_FIRST;
    } else if (c == '"') {
        s->in_str = 1;
        s->str_is_key = 0;
        s->esc = 0;
    } else if (c == '-' || (c >= '0' && c <= '9') || c == 't' || c == 'f' || c == 'n') {
        s->st = JS_SCALAR;
    } else {
        s->st = JS_DEAD;
    }
}

static void begin_key(gw_json_scan *s)
{
    cap_put(s, '"');
    s->in_str = 1;
    s->str_is_key = 1;
    s->esc = 0;
    s->klen = 0;
    s->key_long = 0;
    if (s->depth <= 2)
        s->key[s->depth][0] = '\0';
}

static void key_put(gw_json_scan *s, char c)
{
    if (s->depth > 2)
        return;
    if (s->klen + 1 < sizeof(s->key[0])) {
        s->key[s->depth][s->klen++] = c;
        s->key[s->depth][s->klen] = '\0';
    } else {
        s->key_long = 1;
    }
}

static void string_end(gw_json_scan *s)
{
    s->in_str = 0;
    if (s->str_is_key) {
        if (s->key_long && s->depth <= 2)
            s->key[s->depth][0] = '\0'; /* no key we look for is that long */
        s->st = JS_COLON;
    } else {
        value_end(s);
    }
}

static void close_container(gw_json_scan *s, char c)
{
    unsigned char open = c == '}' ? '{' : '[';
    if (s->depth == 0 || s->stack[s->depth - 1] != open) {
        s->st = JS_DEAD;
        return;
    }
    cap_put(s, c);
    s->depth--;
    value_end(s);
}

/* Inside a string that is neither a key nor captured: jump to its end with
 * memchr, which is most of a request body's bytes. Returns the new index. */
static size_t skip_string(gw_json_scan *s, const char *p, size_t i, size_t n)
{
    const char *q = memchr(p + i, '"', n - i);
    size_t lim = q ? (size_t)(q - (p + i)) : n - i;
    const char *b = memchr(p + i, '\\', lim);
    if (b) {
        size_t at = (size_t)(b - p);
        if (at + 1 < n)
            return at + 2;
        s->esc = 1;
        return n;
    }
    if (!q)
        return n;
    string_end(s);
    return (size_t)(q - p) + 1;
}

static void structural(gw_json_scan *s, char c)
{
    switch (s->st) {
    case JS_VALUE:
        begin_value(s, c);
        break;
    case JS_ARR_FIRST:
        if (c == ']')
            close_container(s, c);
        else
            begin_value(s, c);
        break;
    case JS_OBJ_FIRST:
    case JS_KEY:
        if (c == '"')
            begin_key(s);
        else if (c == '}' && s->st == JS_OBJ_FIRST)
            close_container(s, c);
        else
            s->st = JS_DEAD;
        break;
    case JS_COLON:
        if (c == ':') {
            cap_put(s, c);
            s->st = JS_VALUE;
        } else {
            s->st = JS_DEAD;
        }
        break;
    case JS_AFTER:
        if (c == ',') {
            cap_put(s, c);
            s->st = s->stack[s->depth - 1] == '{' ? JS_KEY : JS_VALUE;
        } else if (c == '}' || c == ']') {
            close_container(s, c);
        } else {
            s->st = JS_DEAD;
        }
        break;
    default: /* JS_DONE: trailing bytes change nothing */
        break;
    }
}

void gw_json_feed(gw_json_scan *s, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s->st == JS_DEAD || s->st == JS_STOP)
            return;
        if (s->in_str) {
            if (!s->str_is_key && s->cap_slot < 0 && !s->esc) {
                i = skip_string(s, p, i, n);
                continue;
            }
            char c = p[i++];
            cap_put(s, c);
            if (s->esc)
                s->esc = 0;
            else if (c == '\\')
                s->esc = 1;
            else if (c == '"') {
                string_end(s);
                continue;
            }
            if (s->str_is_key)
                key_put(s, c);
            continue;
        }
        char c = p[i];
        int ws = c == ' ' || c == '\t' || c == '\r' || c == '\n';
        if (s->st == JS_SCALAR) {
            if (!ws && c != ',' && c != '}' && c != ']') {
                cap_put(s, c);
                i++;
                continue;
            }
            value_end(s); /* c belongs to what comes after */
            if (s->st == JS_STOP)
                return;
        }
        i++;
        if (ws) {
            cap_put(s, c);
            continue;
        }
        structural(s, c);
    }
}

/* ---- usage ------------------------------------------------------------------------ */

/* An integer at o.k1 or o.k1.k2 into *dst when present; 1 when it was. */
static int take(json_t *o, const char *k1, const char *k2, int64_t *dst)
{
    json_t *v = json_object_get(o, k1);
    if (k2)
        v = json_object_get(v, k2);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return 0;
    *dst = json_integer_value(v);
    return 1;
}

static void read_usage(gw_usage_parser *p, json_t *u)
{
    int got = 0;
    switch (p->provider) {
    case GATEWAY_ANTHROPIC:
        got |= take(u, "input_tokens", NULL, &p->in);
        got |= take(u, "output_tokens", NULL, &p->out);
        got |= take(u, "cache_read_input_tokens", NULL, &p->cached);
        got |= take(u, "cache_creation_input_tokens", NULL, &p->cw);
        got |= take(u, "cache_creation", "ephemeral_1h_input_tokens", &p->cw1h);
        break;
    case GATEWAY_OPENAI_RESPONSES:
        got |= take(u, "input_tokens", NULL, &p->in);
        got |= take(u, "output_tokens", NULL, &p->out);
        got |= take(u, "input_tokens_details", "cached_tokens", &p->cached);
        break;
    case GATEWAY_OPENAI_CHAT:
        got |= take(u, "prompt_tokens", NULL, &p->in);
        got |= take(u, "completion_tokens", NULL, &p->out);
        got |= take(u, "prompt_tokens_details", "cached_tokens", &p->cached);
        break;
    }
    p->seen |= got;
}

/* One document (an event's data, or a whole body) is complete. */
static void doc_end(gw_usage_parser *p)
{
    gw_json_scan *s = &p->js;
    if (s->slot[GW_SLOT_MODEL].done) {
        json_t *m = json_loadb(s->slot[GW_SLOT_MODEL].data, s->slot[GW_SLOT_MODEL].len,
                               JSON_DECODE_ANY, NULL);
        if (json_is_string(m) && json_string_length(m) > 0 &&
            json_string_length(m) < sizeof(p->model))
            snprintf(p->model, sizeof(p->model), "%s", json_string_value(m));
        json_decref(m);
    }
    if (s->slot[GW_SLOT_USAGE].done) {
        json_t *u = json_loadb(s->slot[GW_SLOT_USAGE].data, s->slot[GW_SLOT_USAGE].len, 0, NULL);
        if (json_is_object(u))
            read_usage(p, u);
        json_decref(u);
    }
    gw_json_init(s);
}

void gw_usage_init(gw_usage_parser *p, gateway_provider provider, int sse)
{
    memset(p, 0, sizeof(*p));
    p->provider = provider;
    p->sse = sse;
    gw_json_init(&p->js);
}

enum { LS_START, LS_FIELD, LS_SPACE, LS_VALUE, LS_IGNORE };

static int field_is_data(const gw_usage_parser *p)
{
    return !p->field_long && p->flen == 4 && memcmp(p->field, "data", 4) == 0;
}

/* Bytes of a data line's value (no line end among them). */
static void data_bytes(gw_usage_parser *p, const char *d, size_t n)
{
    if (!p->line_started) {
        p->line_started = 1;
        if (p->data_lines > 0)
            gw_json_feed(&p->js, "\n", 1); /* data lines join with LF */
    }
    gw_json_feed(&p->js, d, n);
}

static void end_line(gw_usage_parser *p)
{
    if (p->ls == LS_START) { /* a blank line ends the event */
        if (p->data_lines > 0)
            doc_end(p);
        p->data_lines = 0;
        return;
    }
    if (p->ls != LS_IGNORE && field_is_data(p)) {
        if (!p->line_started && p->data_lines > 0)
            gw_json_feed(&p->js, "\n", 1);
        p->data_lines++;
    }
    p->ls = LS_START;
    p->line_started = 0;
}

void gw_usage_feed(gw_usage_parser *p, const char *d, size_t n)
{
    if (!p->sse) {
        gw_json_feed(&p->js, d, n);
        return;
    }
    size_t i = 0;
    while (i < n) {
        char c = d[i];
        if (p->cr) {
            p->cr = 0;
            if (c == '\n') {
                i++;
                continue;
            }
        }
        if (c == '\r' || c == '\n') {
            p->cr = c == '\r';
            end_line(p);
            i++;
            continue;
        }
        switch (p->ls) {
        case LS_START:
            p->flen = 0;
            p->field_long = 0;
            p->ls = c == ':' ? LS_IGNORE : LS_FIELD; /* ':' first: a comment */
            if (p->ls == LS_IGNORE)
                break;
            /* fall through */
        case LS_FIELD:
            if (c == ':')
                p->ls = LS_SPACE;
            else if (p->flen < sizeof(p->field))
                p->field[p->flen++] = c;
            else
                p->field_long = 1;
            break;
        case LS_SPACE:
            p->ls = LS_VALUE;
            if (c == ' ')
                break;
            /* fall through */
        case LS_VALUE: {
            /* the rest of the line at once */
            size_t end = i;
            while (end < n && d[end] != '\r' && d[end] != '\n')
                end++;
            if (field_is_data(p))
                data_bytes(p, d + i, end - i);
            i = end;
            continue;
        }
        default: /* LS_IGNORE */
            break;
        }
        i++;
    }
}

void gw_usage_finish(gw_usage_parser *p)
{
    if (!p->sse) {
        doc_end(p);
        return;
    }
    if (p->ls != LS_START)
        end_line(p);
    if (p->data_lines > 0)
        doc_end(p);
    p->data_lines = 0;
}

void gw_usage_get(gateway_usage *out, const gw_usage_parser *p)
{
    memset(out, 0, sizeof(*out));
    out->output = p->out;
    out->cache_read = p->cached;
    if (p->provider == GATEWAY_ANTHROPIC) {
        out->input = p->in;
        out->cache_write = p->cw;
        out->cache_write_1h = p->cw1h < p->cw ? p->cw1h : p->cw;
    } else {
        out->input = p->in > p->cached ? p->in - p->cached : 0;
    }
}

void gw_request_model(char *out, size_t size, const char *body, size_t n)
{
    gw_usage_parser p;
    gw_usage_init(&p, GATEWAY_ANTHROPIC, 0);
    p.js.stop_after_model = 1;
    gw_json_feed(&p.js, body, n);
    out[0] = '\0';
    if (p.js.slot[GW_SLOT_MODEL].done) {
        doc_end(&p);
        snprintf(out, size, "%s", p.model);
    }
}
