/*
 * report.c - the status comment and the milestone comments, rendered as
 * Markdown (see report.h).
 *
 * Every piece of quoted text goes through one of three doors: inline text
 * (escaped, one line, for table cells and sentences; in the test results a
 * `code span` around the command stays code), a code block (fenced with
 * more backticks than the text contains), or the agent's own Markdown
 * (summary, question) kept as Markdown. Whatever the door, the finished body
 * has no "<!-- farm:" in it, so nothing quoted can pass for a marker.
 */
#include "report.h"
#include "outbox.h"

#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct state_words {
    const char *state;
    const char *label;
} state_words;

static const state_words states[] = {
    {"queued", "⏳ Queued"},
    {"preparing", "🛠️ Preparing the workspace"},
    {"running", "🤖 The agent is at work"},
    {"testing", "🧪 Running the tests"},
    {"pushing", "⬆️ Pushing the branch"},
    {"review", "👀 Waiting for review"},
    {"revising", "🔁 Revising after review"},
    {"waiting", "❓ Waiting for an answer"},
    {"awaiting_approval", "📝 Plan waiting for approval"},
    {"done", "✅ Done"},
    {"failed", "❌ Failed"},
    {"cancelled", "🚫 Cancelled"},
};

static const char *state_label(const char *state)
{
    for (size_t i = 0; state && i < sizeof(states) / sizeof(states[0]); i++)
        if (strcmp(states[i].state, state) == 0)
            return states[i].label;
    return NULL;
}

void report_duration(char *out, size_t n, int64_t ms)
{
    int64_t s = ms > 0 ? ms / 1000 : 0;
    if (s < 60)
        snprintf(out, n, "%" PRId64 "s", s);
    else if (s < 3600)
        snprintf(out, n, "%" PRId64 "m %02" PRId64 "s", s / 60, s % 60);
    else if (s < 86400)
        snprintf(out, n, "%" PRId64 "h %02" PRId64 "m", s / 3600, (s % 3600) / 60);
    else
        snprintf(out, n, "%" PRId64 "d %" PRId64 "h", s / 86400, (s % 86400) / 3600);
}

const char *report_tail(const char *text, int lines, size_t max_bytes)
{
    if (!text)
        return "";
    size_t len = strlen(text);
    /* drop trailing blank lines and spaces */
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' ' ||
                       text[len - 1] == '\t'))
        len--;
    size_t start = len;
    int seen = 0;
    while (start > 0) {
        if (text[start - 1] == '\n' && ++seen >= lines)
            break;
        start--;
    }
    if (len - start > max_bytes) {
        start = len - max_bytes;
        /* cut at the next line start if there is one in reach, else at a
         * UTF-8 boundary */
        const char *nl = memchr(text + start, '\n', len - start);
        if (nl && (size_t)(nl - text) + 1 < len)
            start = (size_t)(nl - text) + 1;
        else
            while (start < len && ((unsigned char)text[start] & 0xC0) == 0x80)
                start++;
    }
    return text + start;
}

/* Inline text: one line, Markdown and HTML made literal. At most max bytes
 * of the source are used ("…" marks a cut, never inside a UTF-8 sequence). */
static int put_inline(buf *b, const char *s, size_t max)
{
    size_t len = strlen(s), i;
    int rc = 0, cut = len > max;
    if (cut) {
        len = max;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
            len--;
    }
    for (i = 0; i < len && !rc; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '<':
            rc = buf_puts(b, "&lt;");
            break;
        case '>':
            rc = buf_puts(b, "&gt;");
            break;
        case '&':
            rc = buf_puts(b, "&amp;");
            break;
        case '\n':
        case '\r':
        case '\t':
            rc = buf_putc(b, ' ');
            break;
        case '\\':
        case '`':
        case '*':
        case '_':
        case '[':
        case ']':
        case '|':
        case '#':
        case '~':
        case '!':
        case '@': /* no mentions (notifications) from quoted text */
            if (!(rc = buf_putc(b, '\\')))
                rc = buf_putc(b, (char)c);
            break;
        default:
            if (c >= 0x20 && c != 0x7f) /* other control characters are dropped */
                rc = buf_putc(b, (char)c);
        }
    }
    if (!rc && cut)
        rc = buf_puts(b, "…");
    return rc;
}

/* Inline text in which `code spans` stay code spans (the farm's own words
 * around a command, as tests_words() in farm/run/pipeline_pr.c writes
 * them); the rest goes through put_inline(). A span holds no backtick (it
 * ends at the next one), and inside a table cell its '|' is escaped, which
 * GitHub's tables honour even in code. An unpaired backtick is literal. */
static int put_inline_code(buf *b, const char *s, size_t max, int in_table)
{
    size_t total = strlen(s), len = total > max ? max : total;
    while (len < total && len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
        len--;
    char *text = strndup(s, len);
    int rc = text ? 0 : FARM_ENOMEM;
    char *p = text;

    while (!rc && p && *p) {
        char *open = strchr(p, '`');
        char *close = open ? strchr(open + 1, '`') : NULL;
        if (!close || close == open + 1) {
            rc = put_inline(b, p, max);
            break;
        }
        *open = '\0';
        if (*p)
            rc = put_inline(b, p, max);
        if (!rc)
            rc = buf_putc(b, '`');
        for (const char *c = open + 1; !rc && c < close; c++) {
            unsigned char ch = (unsigned char)*c;
            if (ch == '|' && in_table)
                rc = buf_puts(b, "\\|");
            else if (ch == '\n' || ch == '\r' || ch == '\t')
                rc = buf_putc(b, ' ');
            else if (ch >= 0x20 && ch != 0x7f)
                rc = buf_putc(b, (char)ch);
        }
        if (!rc)
            rc = buf_putc(b, '`');
        p = close + 1;
    }
    if (!rc && total > len)
        rc = buf_puts(b, "…");
    free(text);
    return rc;
}

/* A fenced code block holding text verbatim. */
static int put_code(buf *b, const char *text, size_t len)
{
    size_t run = 0, longest = 0;
    int rc;
    for (size_t i = 0; i < len; i++) {
        run = text[i] == '`' ? run + 1 : 0;
        if (run > longest)
            longest = run;
    }
    size_t fence = longest >= 3 ? longest + 1 : 3;
    char f[64];
    if (fence >= sizeof f)
        fence = sizeof f - 1; /* 63 backticks in a row: the output is odd, not dangerous */
    memset(f, '`', fence);
    f[fence] = '\0';
    if ((rc = buf_printf(b, "%s\n", f)) || (rc = buf_append(b, text, len)))
        return rc;
    if (len > 0 && text[len - 1] != '\n' && (rc = buf_putc(b, '\n')))
        return rc;
    return buf_printf(b, "%s\n", f);
}

/* Markdown from the agent, kept as Markdown, within REPORT_TEXT_MAX. */
static int put_markdown(buf *b, const char *md, const char *quote)
{
    size_t len = strlen(md);
    int cut = len > REPORT_TEXT_MAX;
    int rc = 0;
    if (cut) {
        len = REPORT_TEXT_MAX;
        while (len > 0 && ((unsigned char)md[len] & 0xC0) == 0x80)
            len--;
    }
    const char *p = md, *end = md + len;
    while (p < end && !rc) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (quote)
            rc = buf_puts(b, quote);
        if (!rc)
            rc = buf_append(b, p, n);
        if (!rc)
            rc = buf_putc(b, '\n');
        p += n + (nl ? 1 : 0);
    }
    if (!rc && cut)
        rc = buf_printf(b, "%s*(cut here; the rest is in the session log)*\n", quote ? quote : "");
    return rc;
}

static int session_link(buf *b, const report_info *r, const char *text)
{
    if (!r->public_url || !*r->public_url)
        return 0;
    size_t n = strlen(r->public_url);
    while (n > 0 && r->public_url[n - 1] == '/')
        n--;
    return buf_printf(b, "[%s](%.*s/sessions/%" PRId64 ")", text, (int)n, r->public_url,
                      r->session->id);
}

/* A comment's last line: what to do next, then a link to the session when
 * the farm has a public URL. */
static int put_next_step(buf *b, const report_info *r, const char *sentence, const char *link)
{
    int rc = buf_puts(b, sentence);
    if (!rc && r->public_url && *r->public_url && !(rc = buf_puts(b, " ")))
        rc = session_link(b, r, link);
    if (!rc)
        rc = buf_puts(b, "\n");
    return rc;
}

/* Who tried: the agent, or the setup or test command. */
static const char *egress_who(const char *step)
{
    if (step && !strcmp(step, "setup"))
        return "the setup command";
    if (step && !strcmp(step, "test"))
        return "the tests";
    return "the agent";
}

/* "`host:port` (denied: reason, 3 times)" for each denied destination, at
 * most REPORT_EGRESS_MAX of them, comma-separated. */
static int put_denied_list(buf *b, const report_info *r)
{
    int rc = 0;
    size_t n = r->ndenied < REPORT_EGRESS_MAX ? r->ndenied : REPORT_EGRESS_MAX;
    for (size_t i = 0; i < n && !rc; i++) {
        const report_egress *e = &r->denied[i];
        if (i > 0)
            rc = buf_puts(b, ", ");
        if (!rc)
            rc = buf_puts(b, "`");
        /* a code span: only the characters a host name or address has (the
         * proxy accepts no others), so nothing can end the span or format */
        const char *host = e->host ? e->host : "?";
        for (const char *h = host; !rc && *h && h - host < 255; h++)
            if (isalnum((unsigned char)*h) || strchr(".-_:", *h))
                rc = buf_putc(b, *h);
        if (!rc)
            rc = buf_printf(b, ":%d` (denied: ", e->port);
        if (!rc)
            rc = put_inline(b, e->reason && *e->reason ? e->reason : "refused", 120);
        if (!rc && e->count > 1)
            rc = buf_printf(b, ", %" PRIu64 " times", e->count);
        if (!rc)
            rc = buf_puts(b, ")");
    }
    if (!rc && r->ndenied > n)
        rc = buf_printf(b, " and %zu more (see the session log)", r->ndenied - n);
    return rc;
}

/* The network destinations refused during the run, as a paragraph: who
 * tried to reach what, and what to do if it is needed. */
static int put_denied(buf *b, const report_info *r)
{
    int rc;
    if (!r->denied || r->ndenied == 0)
        return 0;
    const char *who = egress_who(r->denied[0].step);
    for (size_t i = 1; i < r->ndenied; i++)
        if (strcmp(egress_who(r->denied[i].step), who) != 0)
            who = "the run";
    if ((rc = buf_printf(b, "**Network:** %c%s tried to reach ", toupper((unsigned char)who[0]),
                         who + 1)) ||
        (rc = put_denied_list(b, r)))
        return rc;
    return buf_puts(b, ". If it needs to, add the host to `sandbox.allow_hosts` in the farm's "
                       "config.\n\n");
}

static void elapsed(char *out, size_t n, const report_info *r)
{
    const store_session *s = r->session;
    int64_t end = r->ended_ms > 0                          ? r->ended_ms
                  : store_session_state_is_final(s->state) ? s->updated_ms
                  : r->now_ms > 0                          ? r->now_ms
                                                           : clock_wall_ms();
    report_duration(out, n, end - s->created_ms);
}

/* Replace every "<!-- farm:" so the body carries no marker but the one the
 * sender adds; hands back the finished string. */
static int finish(char **out, buf *b)
{
    static const char bad[] = "<!-- farm:";
    buf o = BUF_INIT(REPORT_BODY_MAX * 2);
    const char *p = buf_cstr(b), *hit;
    int rc = 0;
    while (!rc && (hit = strstr(p, bad))) {
        if (!(rc = buf_append(&o, p, (size_t)(hit - p))))
            rc = buf_puts(&o, "<!-- farm-quoted:");
        p = hit + sizeof(bad) - 1;
    }
    if (!rc)
        rc = buf_puts(&o, p);
    if (!rc && !(*out = buf_detach(&o)))
        rc = FARM_ENOMEM;
    buf_free(&o);
    buf_free(b);
    if (rc) {
        farm_error_set("report: out of memory");
        return FARM_ENOMEM;
    }
    return 0;
}

static int put_row(buf *b, const char *name, const char *value, size_t max)
{
    int rc;
    if (!value || !*value)
        return 0;
    if ((rc = buf_printf(b, "| **%s** | ", name)) || (rc = put_inline(b, value, max)))
        return rc;
    return buf_puts(b, " |\n");
}

static int check(const report_info *r)
{
    if (!r || !r->session || !r->session->state) {
        farm_error_set("report: no session to report on");
        return FARM_EINVALID;
    }
    return 0;
}

int report_status_render(char **out, const report_info *r)
{
    buf b = BUF_INIT(REPORT_BODY_MAX);
    char el[32];
    int rc;

    *out = NULL;
    if ((rc = check(r)))
        return rc;
    const store_session *s = r->session;
    const char *label = state_label(s->state);
    elapsed(el, sizeof el, r);

    rc = buf_puts(&b, "### ");
    if (!rc)
        rc = label ? buf_puts(&b, label) : put_inline(&b, s->state, 64);
    if (!rc && s->pr_draft && !strcmp(s->state, "review"))
        rc = buf_puts(&b, " (a draft pull request)");
    if (!rc)
        rc = buf_puts(&b, "\n\n| | |\n| --- | --- |\n");
    if (!rc && r->step && !store_session_state_is_final(s->state))
        rc = put_row(&b, "Step", r->step, 200);
    if (!rc && r->run > 1) {
        char run[24];
        snprintf(run, sizeof run, "%d", r->run);
        rc = put_row(&b, "Run", run, 24);
    }
    if (!rc)
        rc = put_row(&b, store_session_state_is_final(s->state) ? "Took" : "Elapsed", el, 32);
    if (!rc && s->branch) {
        if (!(rc = buf_puts(&b, "| **Branch** | `")))
            rc = put_inline(&b, s->branch, 255);
        if (!rc)
            rc = buf_puts(&b, "` |\n");
    }
    if (!rc && s->pr_url && *s->pr_url) {
        /* the tracker's own URL: a link, not text to escape */
        rc = buf_printf(&b, "| **Pull request** | %s%s", s->pr_draft ? "draft, " : "", s->pr_url);
        if (!rc && s->pr_draft && s->pr_draft_reason && *s->pr_draft_reason) {
            if (!(rc = buf_puts(&b, " (")))
                rc = put_inline(&b, s->pr_draft_reason, 200);
            if (!rc)
                rc = buf_puts(&b, ")");
        }
        if (!rc)
            rc = buf_puts(&b, " |\n");
    }
    if (!rc && r->tests && *r->tests) {
        if (!(rc = buf_puts(&b, "| **Tests** | ")))
            rc = put_inline_code(&b, r->tests, 300, 1);
        if (!rc)
            rc = buf_puts(&b, " |\n");
    }
    if (!rc && r->diffstat)
        rc = put_row(&b, "Diff", report_tail(r->diffstat, 1, 300), 300);
    if (!rc && !strcmp(s->state, "failed") && r->reason)
        rc = put_row(&b, "Reason", r->reason, 500);
    if (!rc && r->denied && r->ndenied > 0) {
        if (!(rc = buf_puts(&b, "| **Network denied** | ")))
            rc = put_denied_list(&b, r);
        if (!rc)
            rc = buf_puts(&b, " |\n");
    }
    if (!rc && r->hold) {
        if (!(rc = buf_puts(&b, "| **On hold** | by ")))
            rc = put_inline(&b, r->hold, 200);
        if (!rc)
            rc = buf_puts(&b, ": nothing new starts until `/farm unhold` |\n");
    }
    if (!rc && r->public_url && *r->public_url) {
        if (!(rc = buf_puts(&b, "\n")))
            rc = session_link(
                &b, r, store_session_state_is_final(s->state) ? "Session log" : "Watch it live");
        if (!rc)
            rc = buf_puts(&b, " · this comment is kept up to date\n");
    } else if (!rc) {
        rc = buf_puts(&b, "\n*This comment is kept up to date.*\n");
    }
    if (rc) {
        buf_free(&b);
        farm_error_set("report: the status comment is over its size cap");
        return FARM_ETOOBIG;
    }
    return finish(out, &b);
}

static int render_started(buf *b, const report_info *r)
{
    const store_session *s = r->session;
    int rc = buf_puts(b, "### 👀 On it\n\nThe farm took this issue");
    if (!rc && s->branch) {
        if (!(rc = buf_puts(b, " and works on branch `")))
            rc = put_inline(b, s->branch, 255);
        if (!rc)
            rc = buf_puts(b, "`");
    }
    if (!rc)
        rc = buf_puts(b, ". A comment follows when there is a pull request, a question or a "
                         "failure; the status comment below shows where it stands.\n");
    if (!rc && r->public_url && *r->public_url) {
        if (!(rc = buf_puts(b, "\n")))
            rc = session_link(b, r, "Watch the session live");
        if (!rc)
            rc = buf_puts(b, "\n");
    }
    return rc;
}

/* A draft is not a success: its own heading, and why before anything else. */
static int render_pr(buf *b, const report_info *r)
{
    const store_session *s = r->session;
    int rc =
        buf_puts(b, r->draft ? "### 🚧 Draft pull request opened" : "### ✅ Pull request opened");
    /* before the PR exists its URL is a placeholder the outbox fills in */
    if (!rc)
        rc = buf_printf(b, ": %s", s->pr_url && *s->pr_url ? s->pr_url : OUTBOX_PR_URL);
    if (!rc)
        rc = buf_puts(b, "\n\n");
    if (!rc && r->draft) {
        if (!(rc = buf_puts(b, "**It is a draft, not ready to merge:** ")))
            rc = put_inline(b,
                            r->draft_reason && *r->draft_reason ? r->draft_reason
                                                                : "the run did not finish "
                                                                  "cleanly",
                            500);
        if (!rc)
            rc = buf_puts(b, ". The pull request says more.\n\n");
    }
    if (!rc && r->summary && *r->summary) {
        if (!(rc = put_markdown(b, r->summary, NULL)))
            rc = buf_puts(b, "\n");
    }
    if (!rc && r->tests && *r->tests) {
        if (!(rc = buf_puts(b, "**Tests:** ")))
            rc = put_inline_code(b, r->tests, 300, 0);
        if (!rc)
            rc = buf_puts(b, "\n\n");
    }
    if (!rc && r->diffstat && *r->diffstat) {
        const char *d = report_tail(r->diffstat, 40, 4096);
        if (!(rc = buf_puts(b, "<details><summary>Diffstat</summary>\n\n")))
            rc = put_code(b, d, strlen(d));
        if (!rc)
            rc = buf_puts(b, "\n</details>\n\n");
    }
    if (!rc)
        rc = put_denied(b, r);
    if (!rc)
        rc = put_next_step(b, r,
                           "Review comments on the pull request start a revision on the same "
                           "branch.",
                           "Session log");
    return rc;
}

/* The last lines of output in a collapsed block, when there are any. */
static int put_output(buf *b, const char *output, const char *title)
{
    const char *t = report_tail(output, REPORT_TAIL_LINES, REPORT_TAIL_BYTES);
    int rc = 0;
    if (!*t)
        return 0;
    rc = buf_printf(b, "<details><summary>%s</summary>\n\n", title);
    if (!rc)
        rc = put_code(b, t, strlen(t));
    if (!rc)
        rc = buf_puts(b, "\n</details>\n\n");
    return rc;
}

static int render_unchanged(buf *b, const report_info *r)
{
    int rc = buf_puts(b, "### 💬 The revision changed nothing\n\nThe agent went through the "
                         "review and changed nothing on the branch, so the pull request is as it "
                         "was and waits for review again.\n\n");
    if (!rc && r->reason && *r->reason) {
        if (!(rc = buf_puts(b, "**Why:** ")))
            rc = put_inline(b, r->reason, 1000);
        if (!rc)
            rc = buf_puts(b, "\n\n");
    }
    if (!rc && r->summary && *r->summary) {
        if (!(rc = buf_puts(b, "It said:\n\n")))
            rc = put_markdown(b, r->summary, "> ");
        if (!rc)
            rc = buf_puts(b, "\n");
    } else if (!rc) {
        rc = buf_puts(b, "It left no summary.\n\n");
    }
    if (!rc)
        rc = put_denied(b, r);
    if (!rc && r->output && *r->output)
        rc = put_output(b, r->output, "Last lines of the agent's output");
    if (!rc)
        rc = put_next_step(b, r, "A new review comment starts another revision.", "Session log");
    return rc;
}

static int render_failed(buf *b, const report_info *r)
{
    int rc = buf_puts(b, "### ❌ The run failed\n\n");
    if (!rc && r->reason && *r->reason) {
        if (!(rc = buf_puts(b, "**Reason:** ")))
            rc = put_inline(b, r->reason, 1000);
        if (!rc)
            rc = buf_puts(b, "\n\n");
    }
    if (!rc && r->tests && *r->tests) {
        if (!(rc = buf_puts(b, "**Tests:** ")))
            rc = put_inline_code(b, r->tests, 300, 0);
        if (!rc)
            rc = buf_puts(b, "\n\n");
    }
    if (!rc)
        rc = put_denied(b, r);
    if (!rc && r->output && *r->output)
        rc = put_output(b, r->output, "Last lines of output");
    if (!rc)
        rc = put_next_step(b, r, "Comment `/farm retry` to try again, or add details to the issue.",
                           "Full session log");
    return rc;
}

static int render_question(buf *b, const report_info *r)
{
    int rc = buf_puts(b, "### ❓ A question before going on\n\n");
    if (!rc)
        rc = put_markdown(b, r->question && *r->question ? r->question : "(no text)", "> ");
    if (!rc)
        rc = buf_puts(b, "\nReply in a comment here");
    if (!rc && r->public_url && *r->public_url) {
        if (!(rc = buf_puts(b, " or on the ")))
            rc = session_link(b, r, "session page");
    }
    if (!rc)
        rc = buf_puts(b, "; the session resumes with your answer.\n");
    return rc;
}

int report_milestone_render(char **out, report_milestone m, const report_info *r)
{
    buf b = BUF_INIT(REPORT_BODY_MAX);
    int rc;

    *out = NULL;
    if ((rc = check(r)))
        return rc;
    switch (m) {
    case REPORT_STARTED:
        rc = render_started(&b, r);
        break;
    case REPORT_PR_OPENED:
        rc = render_pr(&b, r);
        break;
    case REPORT_FAILED:
        rc = render_failed(&b, r);
        break;
    case REPORT_QUESTION:
        rc = render_question(&b, r);
        break;
    case REPORT_UNCHANGED:
        rc = render_unchanged(&b, r);
        break;
    default:
        farm_error_set("report: unknown milestone %d", (int)m);
        return FARM_EINVALID;
    }
    if (rc) {
        buf_free(&b);
        farm_error_set("report: the comment is over its size cap");
        return FARM_ETOOBIG;
    }
    return finish(out, &b);
}
