/*
 * digest.c - the review queue's facts and the digest of a window (see
 * digest.h). The facts come from each session's newest telling events
 * (store_digest_events): the newest "step" says what runs now, the newest
 * "test_result" whether the tests pass, "run_finished" how the run ended
 * and how big its diff is, "failed" why it failed, and a "question" not
 * followed by an "answer" what the agent waits for.
 */
#include "digest.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"
#include "farm/store/store_digest.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Telling events read per session: enough to reach the run's start past a
 * few fix rounds (each round is agent and test, started and done). */
#define EVENTS_PER_SESSION 24
#define MARKDOWN_MAX       (256u << 10)

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

/* A measured quantity as people read it: seconds to the millisecond, USD
 * to the millionth. Summed doubles carry binary noise (0.07699999999999999)
 * that says nothing; a rounded value prints short wherever the JSON is
 * written with a sane real precision (webhook/server.c, the CLI). */
static double rounded(double v, double per_unit)
{
    return round(v * per_unit) / per_unit; /* an integer over a power of ten: the nearest
                                              double to the decimal, as a literal would be */
}

static json_t *seconds_json(double s)
{
    return json_real(rounded(s, 1e3));
}

static json_t *usd_json(double usd)
{
    return json_real(rounded(usd, 1e6));
}

json_t *digest_session_json(const store_session *s)
{
    char self[64], stream[64], ui[64];
    snprintf(self, sizeof(self), "/api/sessions/%lld", (long long)s->id);
    snprintf(stream, sizeof(stream), "/v1/stream/sessions/%lld", (long long)s->id);
    snprintf(ui, sizeof(ui), "/sessions/%lld", (long long)s->id);
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "id", json_integer(s->id));
    json_object_set_new(o, "tracker", str_json(s->tracker));
    json_object_set_new(o, "repo", str_json(s->repo));
    json_object_set_new(o, "number", json_integer(s->number));
    json_object_set_new(o, "title", str_json(s->title));
    json_object_set_new(o, "url", str_json(s->url));
    json_object_set_new(o, "state", str_json(s->state));
    json_object_set_new(o, "branch", str_json(s->branch));
    json_object_set_new(o, "pr_number", s->pr_number ? json_integer(s->pr_number) : json_null());
    json_object_set_new(o, "pr_url", str_json(s->pr_url));
    json_object_set_new(o, "pr_draft", json_boolean(s->pr_draft));
    json_object_set_new(o, "pr_draft_reason",
                        s->pr_draft ? str_json(s->pr_draft_reason) : json_null());
    json_object_set_new(o, "agent", str_json(s->agent));
    json_object_set_new(o, "runs", json_integer(s->runs));
    json_object_set_new(o, "agent_seconds", seconds_json(s->agent_seconds));
    json_object_set_new(o, "cost", usd_json(s->cost));
    json_object_set_new(o, "last_seq", json_integer(s->last_seq));
    json_object_set_new(o, "created", time_json(s->created_ms));
    json_object_set_new(o, "updated", time_json(s->updated_ms));
    json_object_set_new(o, "links",
                        json_pack("{s:s,s:s,s:s}", "self", self, "stream", stream, "ui", ui));
    return o;
}

/* ---- facts ------------------------------------------------------------------ */

static int is_state(const store_session *s, const char *state)
{
    return s->state && !strcmp(s->state, state);
}

/* Derive one session's facts from its events (newest first) into o. */
static void annotate_one(json_t *o, const store_session *s, const store_event *ev, size_t n,
                         int64_t now_ms)
{
    json_t *step = NULL, *tests = NULL, *diffstat = NULL, *reason = NULL, *question = NULL,
           *plan = NULL;
    int64_t run = -1, rounds = 0, ended_ms = 0;
    int answered = 0;

    for (size_t i = 0; i < n; i++) {
        const store_event *e = &ev[i];
        json_t *b = json_loads(e->body ? e->body : "{}", 0, NULL);
        if (!json_is_object(b)) {
            json_decref(b);
            continue;
        }
        json_t *r = json_object_get(b, "run");
        if (run < 0 && json_is_integer(r))
            run = json_integer_value(r);
        int this_run = !json_is_integer(r) || json_integer_value(r) == run;

        if (!strcmp(e->kind, "step")) {
            const char *name = json_string_value(json_object_get(b, "step"));
            const char *status = json_string_value(json_object_get(b, "status"));
            if (!step && name)
                step = json_pack("{s:s,s:s,s:o}", "name", name, "status", status ? status : "",
                                 "since", time_json(e->ts_ms));
        } else if (!strcmp(e->kind, "test_result")) {
            if (!tests && this_run)
                tests =
                    json_string(json_is_true(json_object_get(b, "passed")) ? "passed" : "failed");
        } else if (!strcmp(e->kind, "run_finished")) {
            json_t *d = json_object_get(b, "diffstat");
            if (!ended_ms)
                ended_ms = e->ts_ms;
            if (!diffstat && json_is_object(d))
                diffstat = json_pack(
                    "{s:I,s:I,s:I}", "files", json_integer_value(json_object_get(d, "files")),
                    "insertions", json_integer_value(json_object_get(d, "insertions")), "deletions",
                    json_integer_value(json_object_get(d, "deletions")));
            const char *why = json_string_value(json_object_get(b, "reason"));
            if (!reason && why && is_state(s, "failed"))
                reason = json_string(why);
        } else if (!strcmp(e->kind, "failed")) {
            const char *why = json_string_value(json_object_get(b, "reason"));
            if (!reason && why && is_state(s, "failed"))
                reason = json_string(why);
        } else if (!strcmp(e->kind, "answer")) {
            answered = 1;
        } else if (!strcmp(e->kind, "plan")) {
            const char *text = json_string_value(json_object_get(b, "plan"));
            if (!plan && text && is_state(s, "awaiting_approval"))
                plan = json_string(text); /* the plan waiting for approval */
        } else if (!strcmp(e->kind, "question")) {
            const char *q = json_string_value(json_object_get(b, "question"));
            if (!question && !answered && q && is_state(s, "waiting"))
                question = json_string(q);
        }
        if (this_run && (!strcmp(e->kind, "step") || !strcmp(e->kind, "test_result"))) {
            json_int_t round = json_integer_value(json_object_get(b, "round"));
            if ((!strcmp(e->kind, "test_result") ||
                 !strcmp(json_string_value(json_object_get(b, "step")) ?: "", "test")) &&
                round > rounds)
                rounds = round;
        }
        json_decref(b);
    }

    int ended = store_session_state_is_final(s->state) || is_state(s, "review") ||
                is_state(s, "waiting") || is_state(s, "awaiting_approval");
    if (!ended)
        ended_ms = now_ms;
    else if (!ended_ms || store_session_state_is_final(s->state))
        ended_ms = s->updated_ms;
    double duration = ended_ms > s->created_ms ? (double)(ended_ms - s->created_ms) / 1000.0 : 0;

    json_object_set_new(o, "step", step ? step : json_null());
    json_object_set_new(o, "tests", tests ? tests : json_null());
    json_object_set_new(o, "rounds", json_integer(rounds));
    json_object_set_new(o, "diffstat", diffstat ? diffstat : json_null());
    json_object_set_new(o, "reason", reason ? reason : json_null());
    json_object_set_new(o, "question", question ? question : json_null());
    json_object_set_new(o, "plan", plan ? plan : json_null());
    json_object_set_new(o, "duration_s", seconds_json(duration));
}

int digest_sessions_annotate(json_t *const *objs, const store_session *sessions, size_t n, store *s,
                             int64_t now_ms)
{
    store_event *ev = NULL;
    size_t nev = 0, j = 0;
    int64_t *ids = NULL;
    int rc;

    if (n == 0)
        return 0;
    if (n > STORE_DIGEST_IDS_MAX) {
        farm_error_set("digest: at most %d sessions at once", STORE_DIGEST_IDS_MAX);
        return FARM_EINVALID;
    }
    assert(objs && sessions && s);
    if (!(ids = malloc(n * sizeof(*ids)))) {
        farm_error_set("digest: out of memory");
        return FARM_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        ids[i] = sessions[i].id;
    rc = store_digest_events(&ev, &nev, s, ids, n, EVENTS_PER_SESSION);
    free(ids);
    if (rc)
        return rc;
    /* events come grouped by session in the order of ids */
    for (size_t i = 0; i < n; i++) {
        size_t k = j;
        while (k < nev && ev[k].session_id == sessions[i].id)
            k++;
        if (objs[i])
            annotate_one(objs[i], &sessions[i], ev + j, k - j, now_ms);
        j = k;
    }
    store_event_list_free(ev, nev);
    return 0;
}

/* ---- the digest --------------------------------------------------------------- */

typedef struct section {
    const char *name;
    const char *const *states;
    int windowed; /* only sessions updated in the window */
} section;

static const char *const st_review[] = {"review", NULL};
static const char *const st_waiting[] = {"waiting", NULL};
static const char *const st_plans[] = {"awaiting_approval", NULL};
static const char *const st_failed[] = {"failed", NULL};
static const char *const st_done[] = {"done", NULL};
static const char *const st_cancelled[] = {"cancelled", NULL};
static const char *const st_running[] = {"preparing", "running",  "testing",
                                         "pushing",   "revising", NULL};
static const char *const st_queued[] = {"queued", NULL};

static const section sections[] = {
    {"review", st_review, 0},   {"waiting", st_waiting, 0}, {"plans", st_plans, 0},
    {"failed", st_failed, 1},   {"done", st_done, 1},       {"cancelled", st_cancelled, 1},
    {"running", st_running, 0}, {"queued", st_queued, 0},
};
#define NSECTIONS (sizeof(sections) / sizeof(sections[0]))

static int by_id_desc(const void *a, const void *b)
{
    const store_session *x = a, *y = b;
    return x->id < y->id ? 1 : x->id > y->id ? -1 : 0;
}

static void session_clear(store_session *x)
{
    free(x->tracker);
    free(x->repo);
    free(x->title);
    free(x->url);
    free(x->state);
    free(x->branch);
    free(x->pr_url);
    free(x->pr_draft_reason);
}

/* One section: its sessions, annotated, newest first. */
static int section_build(json_t **out, store *s, const section *sec, int64_t since_ms,
                         int64_t now_ms)
{
    store_session *all = NULL;
    size_t nall = 0;
    json_t **objs = NULL, *list = NULL;
    int rc = 0;

    *out = NULL;
    for (const char *const *st = sec->states; *st; st++) {
        store_session_filter f = STORE_SESSION_FILTER_INIT;
        store_session *v = NULL;
        size_t n = 0;
        f.state = *st;
        f.since_ms = sec->windowed ? since_ms : 0;
        f.limit = DIGEST_SECTION_MAX;
        if ((rc = store_session_list(&v, &n, s, &f)))
            goto out;
        if (n == 0)
            continue;
        store_session *grown = realloc(all, (nall + n) * sizeof(*all));
        if (!grown) {
            store_session_list_free(v, n);
            goto nomem;
        }
        all = grown;
        memcpy(all + nall, v, n * sizeof(*v));
        nall += n;
        free(v); /* the strings moved into all */
    }
    if (nall > 1)
        qsort(all, nall, sizeof(*all), by_id_desc);
    if (nall > DIGEST_SECTION_MAX) {
        for (size_t i = DIGEST_SECTION_MAX; i < nall; i++)
            session_clear(&all[i]);
        nall = DIGEST_SECTION_MAX;
    }
    if (!(list = json_array()) || (nall && !(objs = calloc(nall, sizeof(*objs)))))
        goto nomem;
    for (size_t i = 0; i < nall; i++) {
        if (!(objs[i] = digest_session_json(&all[i])) || json_array_append(list, objs[i]))
            goto nomem;
    }
    if ((rc = digest_sessions_annotate(objs, all, nall, s, now_ms)))
        goto out;
    *out = list;
    list = NULL;
    goto out;
nomem:
    farm_error_set("digest: out of memory");
    rc = FARM_ENOMEM;
out:
    if (objs)
        for (size_t i = 0; i < nall; i++)
            json_decref(objs[i]);
    free(objs);
    json_decref(list);
    store_session_list_free(all, nall);
    return rc;
}

int digest_build(json_t **out, store *s, int64_t since_ms, int64_t now_ms)
{
    store_digest_totals t;
    json_t *d = NULL, *totals = NULL;
    int rc;

    assert(out && s);
    *out = NULL;
    if (!(d = json_object()))
        goto nomem;
    json_object_set_new(d, "since", time_json(since_ms));
    json_object_set_new(d, "until", time_json(now_ms));
    for (size_t i = 0; i < NSECTIONS; i++) {
        json_t *list = NULL;
        if ((rc = section_build(&list, s, &sections[i], since_ms, now_ms)))
            goto out;
        json_object_set_new(d, sections[i].name, list);
    }
    if ((rc = store_digest_totals_get(&t, s, since_ms)))
        goto out;
    totals = json_pack(
        "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:o}", "sessions", (json_int_t)t.sessions, "prs",
        (json_int_t)t.prs, "failed", (json_int_t)t.failed, "review",
        (json_int_t)json_array_size(json_object_get(d, "review")), "waiting",
        (json_int_t)json_array_size(json_object_get(d, "waiting")), "plans",
        (json_int_t)json_array_size(json_object_get(d, "plans")), "running",
        (json_int_t)json_array_size(json_object_get(d, "running")), "queued",
        (json_int_t)json_array_size(json_object_get(d, "queued")), "runs", (json_int_t)t.runs,
        "agent_seconds", seconds_json(t.agent_seconds), "cost", usd_json(t.cost));
    if (!totals)
        goto nomem;
    json_object_set_new(d, "totals", totals);
    *out = d;
    return 0;
nomem:
    farm_error_set("digest: out of memory");
    rc = FARM_ENOMEM;
out:
    json_decref(d);
    return rc;
}

/* ---- Markdown ----------------------------------------------------------------- */

/* Text from the tracker or the agent, on one line, without Markdown that
 * could ping people or break the list: mentions are broken by a zero-width
 * space, HTML, brackets and backticks are escaped. */
static void put_plain(buf *b, const char *s, size_t max)
{
    size_t n = 0;
    for (; s && *s && n < max; s++, n++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20)
            buf_putc(b, ' ');
        else if (c == '@')
            buf_puts(b, "@\u200b"); /* a zero-width space: no mention, no notification */
        else if (strchr("<>[]`*_|#\\", c))
            buf_printf(b, "\\%c", c);
        else
            buf_putc(b, (char)c);
    }
    if (s && *s)
        buf_puts(b, "…");
}

static void put_duration(buf *b, double secs)
{
    long long s = (long long)secs;
    if (s >= 3600)
        buf_printf(b, "%lldh%02lldm", s / 3600, s / 60 % 60);
    else if (s >= 60)
        buf_printf(b, "%lldm%02llds", s / 60, s % 60);
    else
        buf_printf(b, "%llds", s);
}

static void put_session_line(buf *b, const json_t *o, const char *public_url)
{
    const char *url = json_string_value(json_object_get(o, "url"));
    const char *pr_url = json_string_value(json_object_get(o, "pr_url"));
    const char *tests = json_string_value(json_object_get(o, "tests"));
    const char *reason = json_string_value(json_object_get(o, "reason"));
    const char *question = json_string_value(json_object_get(o, "question"));
    const char *plan = json_string_value(json_object_get(o, "plan"));
    json_t *ds = json_object_get(o, "diffstat");

    buf_puts(b, "- ");
    if (url && (!strncmp(url, "https://", 8) || !strncmp(url, "http://", 7)) &&
        !strpbrk(url, " ()<>"))
        buf_printf(b, "[");
    put_plain(b, json_string_value(json_object_get(o, "repo")), 100);
    buf_printf(b, "#%lld", (long long)json_integer_value(json_object_get(o, "number")));
    if (url && (!strncmp(url, "https://", 8) || !strncmp(url, "http://", 7)) &&
        !strpbrk(url, " ()<>"))
        buf_printf(b, "](%s)", url);
    buf_puts(b, " ");
    put_plain(b, json_string_value(json_object_get(o, "title")), 120);
    if (pr_url && !strpbrk(pr_url, " ()<>"))
        buf_printf(b, " · [PR #%lld](%s)",
                   (long long)json_integer_value(json_object_get(o, "pr_number")), pr_url);
    if (tests)
        buf_printf(b, " · tests %s", tests);
    if (json_is_object(ds))
        buf_printf(b, " · %lld files +%lld −%lld",
                   (long long)json_integer_value(json_object_get(ds, "files")),
                   (long long)json_integer_value(json_object_get(ds, "insertions")),
                   (long long)json_integer_value(json_object_get(ds, "deletions")));
    buf_puts(b, " · ");
    put_duration(b, json_number_value(json_object_get(o, "duration_s")));
    if (public_url)
        buf_printf(b, " · [session %lld](%s/sessions/%lld)",
                   (long long)json_integer_value(json_object_get(o, "id")), public_url,
                   (long long)json_integer_value(json_object_get(o, "id")));
    if (reason) {
        buf_puts(b, "\n  - reason: ");
        put_plain(b, reason, 300);
    }
    if (question) {
        buf_puts(b, "\n  - asks: ");
        put_plain(b, question, 300);
    }
    if (plan) {
        buf_puts(b, "\n  - plan: ");
        put_plain(b, plan, 300);
    }
    buf_puts(b, "\n");
}

int digest_markdown(char **out, const json_t *digest, const char *public_url)
{
    static const struct {
        const char *key, *title;
    } parts[] = {
        {"review", "Pull requests waiting for review"},
        {"waiting", "Questions waiting for an answer"},
        {"plans", "Plans waiting for approval"},
        {"failed", "Failed"},
        {"done", "Done"},
        {"running", "Running now"},
        {"queued", "Queued"},
    };
    json_t *t = json_object_get(digest, "totals");
    buf b = BUF_INIT(MARKDOWN_MAX + 64 * 1024); /* lines stop at MARKDOWN_MAX */
    char since[24] = "", until[24] = "";

    *out = NULL;
    snprintf(since, sizeof(since), "%.16s",
             json_string_value(json_object_get(digest, "since")) ?: "");
    snprintf(until, sizeof(until), "%.16s",
             json_string_value(json_object_get(digest, "until")) ?: "");
    for (char *c = since; *c; c++)
        if (*c == 'T')
            *c = ' ';
    for (char *c = until; *c; c++)
        if (*c == 'T')
            *c = ' ';
    buf_printf(&b, "### farm digest: %s to %s UTC\n\n", since, until);
    buf_printf(&b,
               "%lld PR%s waiting for review, %lld question%s waiting, %lld plan%s waiting for "
               "approval, %lld failed, "
               "%lld running, %lld queued. Agent time ",
               (long long)json_integer_value(json_object_get(t, "review")),
               json_integer_value(json_object_get(t, "review")) == 1 ? "" : "s",
               (long long)json_integer_value(json_object_get(t, "waiting")),
               json_integer_value(json_object_get(t, "waiting")) == 1 ? "" : "s",
               (long long)json_integer_value(json_object_get(t, "plans")),
               json_integer_value(json_object_get(t, "plans")) == 1 ? "" : "s",
               (long long)json_integer_value(json_object_get(t, "failed")),
               (long long)json_integer_value(json_object_get(t, "running")),
               (long long)json_integer_value(json_object_get(t, "queued")));
    put_duration(&b, json_number_value(json_object_get(t, "agent_seconds")));
    buf_printf(&b, ", cost $%.2f.\n", json_number_value(json_object_get(t, "cost")));
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        json_t *list = json_object_get(digest, parts[i].key);
        size_t k;
        json_t *o;
        if (!json_array_size(list))
            continue;
        buf_printf(&b, "\n#### %s (%zu)\n\n", parts[i].title, json_array_size(list));
        json_array_foreach(list, k, o)
        {
            if (b.len > MARKDOWN_MAX - 4096) {
                buf_printf(&b, "- … and %zu more\n", json_array_size(list) - k);
                break;
            }
            put_session_line(&b, o, public_url);
        }
    }
    if (public_url)
        buf_printf(&b, "\nThe review queue: %s/\n", public_url);
    if (buf_puts(&b, "") != 0 || !buf_cstr(&b)) {
        buf_free(&b);
        farm_error_set("digest: out of memory");
        return FARM_ENOMEM;
    }
    *out = buf_detach(&b);
    return *out ? 0 : FARM_ENOMEM;
}
