/*
 * review_replies.c - after a revision pushed, one reply in each review
 * thread it addressed (see review_replies.h).
 */
#include "review_replies.h"
#include "outbox.h"
#include "farm/handle/handle.h"
#include "farm/store/store_run.h"

#include "base/buf.h"
#include "base/error.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPLIES_MAX 100 /* review threads answered after one revision */

static char *json_take(json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

static int oom(void)
{
    farm_error_set("out of memory");
    return FARM_ENOMEM;
}

/* ---- replies after a revision -------------------------------------------------- */

typedef struct thread_reply {
    int64_t target; /* the comment replied to (a thread's first comment) */
    int64_t key_id; /* the newest comment of the thread in the window: the key */
} thread_reply;

typedef struct replies_ctx {
    int64_t session_id, run_no;
    const char *body;
    thread_reply *v;
    size_t n;
    int64_t seq;
} replies_ctx;

static int replies_fn(store_tx *tx, void *arg)
{
    replies_ctx *r = arg;
    char key[256], name[64];
    int rc = 0;

    for (size_t i = 0; i < r->n && !rc; i++) {
        json_t *p =
            json_pack("{s:I,s:s}", "comment_id", (json_int_t)r->v[i].target, "body", r->body);
        char *text = json_take(p);
        if (!text)
            return oom();
        snprintf(name, sizeof(name), "rc%lld", (long long)r->v[i].key_id);
        outbox_key(key, sizeof(key), r->session_id, name);
        rc = outbox_tx_enqueue(tx, r->session_id, OUTBOX_REVIEW_REPLY, key, text);
        free(text);
    }
    if (rc)
        return rc;
    char *ev = json_take(
        json_pack("{s:I,s:I}", "run", (json_int_t)r->run_no, "threads", (json_int_t)r->n));
    if (!ev)
        return oom();
    rc = store_tx_event_append(&r->seq, tx, r->session_id, "review_replies", NULL, ev);
    free(ev);
    return rc;
}

/* Azure names a PR comment by its thread and its number in the thread; the
 * webhook gives them in the comment's URL (".../threads/T/comments/C"). The
 * Azure client takes them as one id: T << 16 | C (vcs/azure_git.c). */
static int64_t azure_comment_ref(const char *url)
{
    const char *t = url ? strstr(url, "/threads/") : NULL;
    long long tid = 0, cid = 0;
    if (!t || sscanf(t, "/threads/%lld/comments/%lld", &tid, &cid) != 2 || tid <= 0 || cid <= 0 ||
        cid > 0xffff || tid > (1LL << 46))
        return 0;
    return ((int64_t)tid << 16) | (int64_t)cid;
}

static void thread_add(thread_reply *v, size_t *n, int64_t target, int64_t key_id)
{
    for (size_t i = 0; i < *n; i++) {
        if (v[i].target == target) {
            v[i].key_id = key_id; /* one reply per thread: the newest comment keys it */
            return;
        }
    }
    if (*n < REPLIES_MAX)
        v[(*n)++] = (thread_reply){target, key_id};
}

int64_t review_window_start(store *s, int64_t session_id, int64_t run_seq, int64_t *ts_ms)
{
    static const char *const kinds[] = {"run_started", NULL};
    int64_t seq = 0, ts = 0, after = 0;

    for (;;) {
        store_event *e = NULL;
        size_t n = 0;
        if (store_event_list_kinds(&e, &n, s, session_id, kinds, after, STORE_LIST_MAX) != 0)
            break; /* unreadable: the whole log is the window */
        for (size_t i = 0; i < n && e[i].seq < run_seq; i++) {
            seq = e[i].seq;
            ts = e[i].ts_ms;
        }
        int more = n == STORE_LIST_MAX && e[n - 1].seq < run_seq;
        after = n ? e[n - 1].seq : after;
        store_event_list_free(e, n);
        if (!more)
            break;
    }
    if (ts_ms)
        *ts_ms = ts;
    return seq;
}

int review_replies_enqueue(farm *f, int64_t session_id, int64_t run_no, int64_t run_seq,
                           const char *commit, const char *summary)
{
    static const char *const kinds[] = {"run_started", "review_comment", "comment", NULL};
    thread_reply v[REPLIES_MAX];
    store_session *s = NULL;
    replies_ctx rx = {0};
    buf body = BUF_INIT(2048);
    int64_t after = 0;
    size_t n = 0;
    int rc, azure;

    if ((rc = store_session_get(&s, f->store, session_id)))
        return rc;
    azure = !strcmp(s->tracker, "azure");
    for (;;) {
        store_event *e = NULL;
        size_t ne = 0;
        if ((rc = store_event_list_kinds(&e, &ne, f->store, session_id, kinds, after,
                                         STORE_LIST_MAX)))
            goto out;
        for (size_t i = 0; i < ne && e[i].seq < run_seq; i++) {
            if (!strcmp(e[i].kind, "run_started")) {
                n = 0; /* what came before the previous run was answered by it */
                continue;
            }
            json_t *b = json_loads(e[i].body, 0, NULL);
            int64_t cid = json_integer_value(json_object_get(b, "comment_id"));
            int64_t parent = json_integer_value(json_object_get(b, "in_reply_to"));
            if (!strcmp(e[i].kind, "review_comment") && cid > 0)
                thread_add(v, &n, parent > 0 ? parent : cid, cid);
            else if (azure && json_is_true(json_object_get(b, "is_pr"))) {
                int64_t ref = azure_comment_ref(json_string_value(json_object_get(b, "url")));
                if (ref > 0)
                    thread_add(v, &n, ref, ref);
            }
            json_decref(b);
        }
        int more = ne == STORE_LIST_MAX && e[ne - 1].seq < run_seq;
        after = ne ? e[ne - 1].seq : after;
        store_event_list_free(e, ne);
        if (!more)
            break;
    }
    if (n == 0)
        goto out;
    buf_printf(&body, "Addressed in `%.12s` (run %lld).", commit ? commit : "?", (long long)run_no);
    if (summary && *summary) {
        size_t len = strcspn(summary, "\n"), cut = len > 400 ? 400 : len;
        while (cut > 0 && ((unsigned char)summary[cut] & 0xC0) == 0x80)
            cut--; /* not inside a UTF-8 sequence */
        buf_puts(&body, " The agent's summary: ");
        for (size_t i = 0; i < cut; i++) {
            if (!strncmp(summary + i, "<!--", 4)) {
                buf_puts(&body, "&lt;");
                continue;
            }
            buf_putc(&body, summary[i]);
        }
        if (cut < len)
            buf_puts(&body, "...");
    }
    rx.session_id = session_id;
    rx.run_no = run_no;
    rx.body = buf_cstr(&body);
    rx.v = v;
    rx.n = n;
    if ((rc = store_write(f->store, replies_fn, &rx)))
        goto out;
    stream_hub_session_notify(f->streams, session_id, rx.seq);
    outbox_kick(f);
out:
    buf_free(&body);
    store_session_free(s);
    return rc;
}
