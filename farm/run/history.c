/*
 * history.c - the session-history digest (see history.h).
 *
 * One line per earlier run ("run 2 (revise): PR updated, tests passed,
 * commit abc1234"), then the conversation in order: questions and answers,
 * review comments, messages. Every quoted text is cut to HISTORY_ITEM_MAX
 * and flattened to one line, and the digest stops at HISTORY_MAX with a
 * note, so a long session cannot crowd the prompt.
 */
#include "history.h"
#include "farm/store/store_run.h"

#include "base/buf.h"
#include "base/error.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kinds[] = {"run_started", "run_finished",   "question", "answer",
                                    "review",      "review_comment", "message",  NULL};

/* text flattened to one line and cut to max bytes (at a UTF-8 boundary). */
static void put_quote(buf *b, const char *text, size_t max)
{
    const char *p = text ? text : "";
    size_t n = 0;
    int space = 0;

    buf_putc(b, '"');
    for (; *p && n < max; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '\n' || c == '\r' || c == '\t') {
            space = 1;
            continue;
        }
        if (space && n > 0) {
            buf_putc(b, ' ');
            n++;
        }
        space = 0;
        buf_putc(b, (char)c);
        n++;
    }
    if (*p) {
        /* cut inside a UTF-8 sequence: take back its first bytes */
        if (((unsigned char)*p & 0xC0) == 0x80 && b->len > 1) {
            while (b->len > 1 && ((unsigned char)b->data[b->len - 1] & 0xC0) == 0x80)
                b->len--;
            b->len--;
            b->data[b->len] = '\0';
        }
        buf_puts(b, " [...]");
    }
    buf_putc(b, '"');
}

static const char *str(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "";
}

static void put_event(buf *b, const store_event *e, json_t *body)
{
    const char *who = e->actor && *e->actor ? e->actor : "someone";
    if (!strcmp(e->kind, "run_started")) {
        buf_printf(b, "- Run %lld (%s) started.\n",
                   (long long)json_integer_value(json_object_get(body, "run")), str(body, "kind"));
    } else if (!strcmp(e->kind, "run_finished")) {
        buf_printf(b, "- Run %lld ended: %s",
                   (long long)json_integer_value(json_object_get(body, "run")),
                   str(body, "outcome"));
        if (*str(body, "tests"))
            buf_printf(b, "; tests: %s", str(body, "tests"));
        if (*str(body, "commit"))
            buf_printf(b, "; commit %.12s", str(body, "commit"));
        if (*str(body, "reason")) {
            buf_puts(b, "; ");
            put_quote(b, str(body, "reason"), 300);
        }
        buf_puts(b, ".\n");
    } else if (!strcmp(e->kind, "question")) {
        buf_puts(b, "- The agent asked: ");
        put_quote(b, str(body, "question"), HISTORY_ITEM_MAX);
        buf_puts(b, "\n");
    } else if (!strcmp(e->kind, "answer")) {
        buf_printf(b, "- %s answered: ", *str(body, "author") ? str(body, "author") : who);
        put_quote(b, str(body, "text"), HISTORY_ITEM_MAX);
        buf_puts(b, "\n");
    } else if (!strcmp(e->kind, "review") || !strcmp(e->kind, "review_comment")) {
        if (!*str(body, "body"))
            return;
        buf_printf(b, "- Reviewer %s", who);
        if (*str(body, "path"))
            buf_printf(b, " on `%s`", str(body, "path"));
        buf_puts(b, ": ");
        put_quote(b, str(body, "body"), HISTORY_ITEM_MAX);
        buf_puts(b, "\n");
    } else if (!strcmp(e->kind, "message")) {
        buf_printf(b, "- Message from %s: ", *str(body, "author") ? str(body, "author") : who);
        put_quote(b, str(body, "text"), HISTORY_ITEM_MAX);
        buf_puts(b, "\n");
    }
}

int history_digest(char **out, store *s, int64_t session_id, int64_t before_seq)
{
    buf b = BUF_INIT(HISTORY_MAX + 256);
    int64_t after = 0;
    size_t items = 0;
    int rc = 0, full = 0;

    *out = NULL;
    for (;;) {
        store_event *v = NULL;
        size_t n = 0;
        if ((rc = store_event_list_kinds(&v, &n, s, session_id, kinds, after, STORE_LIST_MAX)))
            goto out;
        for (size_t i = 0; i < n && !full; i++) {
            if (before_seq > 0 && v[i].seq >= before_seq) {
                full = -1;
                break;
            }
            json_t *body = json_loads(v[i].body, 0, NULL);
            size_t before = b.len;
            put_event(&b, &v[i], body);
            json_decref(body);
            if (b.len > HISTORY_MAX) {
                b.len = before;
                b.data[before] = '\0';
                buf_puts(&b, "- (earlier history cut here: too long)\n");
                full = 1;
            } else if (b.len > before) {
                items++;
            }
        }
        after = n ? v[n - 1].seq : after;
        store_event_list_free(v, n);
        if (full || n < STORE_LIST_MAX)
            break;
    }
    if (items == 0)
        goto out;
    if (!(*out = buf_detach(&b))) {
        farm_error_set("history: out of memory");
        rc = FARM_ENOMEM;
    }
out:
    buf_free(&b);
    return rc;
}
