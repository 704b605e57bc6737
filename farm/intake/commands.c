/*
 * commands.c - finding a `/farm ...` command in a comment (see commands.h).
 *
 * The body is read line by line, as Markdown: fenced code blocks (``` or
 * ~~~, closed by a fence of the same character at least as long), indented
 * code (four spaces or a tab) and quotes (`>`) are skipped; a command is
 * `/farm` at the start of a remaining line, followed by a blank or the end
 * of the line, and the word after it. Azure DevOps work item comments are
 * HTML: such a body is first flattened to lines (block tags end a line, the
 * contents of <blockquote>, <pre> and <code> are dropped, a few entities
 * decoded), then read the same way.
 */
#include "commands.h"
#include "base/buf.h"
#include "base/error.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct {
    const char *word;
    command_kind kind;
} words[] = {
    {"run", COMMAND_RUN},
    {"retry", COMMAND_RETRY},
    {"stop", COMMAND_STOP},
    {"status", COMMAND_STATUS},
    {"help", COMMAND_HELP},
    {"hold", COMMAND_HOLD},
    {"unhold", COMMAND_UNHOLD},
    /* keeping the pull request mergeable (update.h) */
    {"update", COMMAND_UPDATE},
    /* plan first (plan.h) */
    {"plan", COMMAND_PLAN},
    {"approve", COMMAND_APPROVE},
};

const char *command_kind_name(command_kind k)
{
    switch (k) {
    case COMMAND_NONE:
        return "none";
    case COMMAND_RUN:
        return "run";
    case COMMAND_RETRY:
        return "retry";
    case COMMAND_STOP:
        return "stop";
    case COMMAND_STATUS:
        return "status";
    case COMMAND_HELP:
        return "help";
    case COMMAND_UNKNOWN:
        return "unknown";
    case COMMAND_HOLD:
        return "hold";
    case COMMAND_UNHOLD:
        return "unhold";
    case COMMAND_UPDATE:
        return "update";
    case COMMAND_PLAN:
        return "plan";
    case COMMAND_APPROVE:
        return "approve";
    }
    return "unknown";
}

const char *commands_help_text(void)
{
    return "Commands (a comment line that starts with the command; people with write access "
           "only):\n\n"
           "- `/farm run [preset]` - start work on this issue now; on a pull request the farm "
           "is working on, start a revision now. With a preset (`claude`, `codex`, ...; one "
           "the repository allows) a new session runs that agent; the label `agent:<preset>` "
           "picks it too\n"
           "- `/farm retry` - run a failed or cancelled session again, from where it "
           "stopped (a plan that failed is written again, and waits for approval)\n"
           "- `/farm stop` - stop the running work and cancel the session\n"
           "- `/farm status` - the session's state, current step, elapsed time and link\n"
           "- `/farm hold` - nothing new starts on this issue or its pull request (new "
           "work, revisions, retries) until `/farm unhold`; a run at work goes on\n"
           "- `/farm unhold` - lift the hold; the next trigger or `/farm run` starts work\n"
           "- `/farm update` - bring the base branch into the pull request's branch (a merge "
           "commit; conflicts go to the agent, the tests run again)\n"
           "- `/farm plan` - start with a plan: the agent first writes one, posted here, and "
           "waits; comments revise it\n"
           "- `/farm approve` - approve the plan: the implementation starts with it\n"
           "- `/farm help` - this list\n\n"
           "Reviews, review comments and comments on the pull request that mention the bot "
           "start a revision on the same branch.\n";
}

/* ---- HTML to lines ------------------------------------------------------- */

static int looks_like_html(const char *s)
{
    return strcasestr(s, "<div") || strcasestr(s, "<p>") || strcasestr(s, "<br") ||
           strcasestr(s, "<blockquote");
}

/* The tag name at p (after '<' and an optional '/'), lower-cased into out. */
static void tag_name(char *out, size_t n, const char *p)
{
    size_t i = 0;
    while (i + 1 < n && isalnum((unsigned char)p[i])) {
        out[i] = (char)tolower((unsigned char)p[i]);
        i++;
    }
    out[i] = '\0';
}

static int is_block_tag(const char *t)
{
    static const char *const block[] = {"br", "div", "p",  "li", "ul", "ol",    "h1", "h2",
                                        "h3", "h4",  "h5", "h6", "tr", "table", NULL};
    for (size_t i = 0; block[i]; i++)
        if (!strcmp(t, block[i]))
            return 1;
    return 0;
}

static int is_skipped_tag(const char *t)
{
    return !strcmp(t, "blockquote") || !strcmp(t, "pre") || !strcmp(t, "code");
}

/* Flatten HTML into text lines in b. */
static void html_flatten(buf *b, const char *s)
{
    static const struct {
        const char *ent;
        char c;
    } ents[] = {{"&nbsp;", ' '}, {"&amp;", '&'},  {"&lt;", '<'},
                {"&gt;", '>'},   {"&quot;", '"'}, {"&#39;", '\''}};
    int skip = 0;

    for (const char *p = s; *p;) {
        if (*p == '<') {
            const char *end = strchr(p, '>');
            int closing = p[1] == '/';
            char name[16];
            if (!end)
                break; /* an unterminated tag: the rest is not text */
            tag_name(name, sizeof(name), p + 1 + closing);
            if (is_skipped_tag(name))
                skip += closing ? (skip > 0 ? -1 : 0) : 1;
            else if (is_block_tag(name))
                buf_putc(b, '\n');
            p = end + 1;
            continue;
        }
        if (skip) {
            p++;
            continue;
        }
        if (*p == '&') {
            size_t i;
            for (i = 0; i < sizeof(ents) / sizeof(ents[0]); i++) {
                size_t n = strlen(ents[i].ent);
                if (!strncasecmp(p, ents[i].ent, n)) {
                    buf_putc(b, ents[i].c);
                    p += n;
                    break;
                }
            }
            if (i < sizeof(ents) / sizeof(ents[0]))
                continue;
        }
        buf_putc(b, *p++);
    }
}

/* ---- lines ---------------------------------------------------------------- */

/* A fence opening or closing at line (after up to three spaces): its
 * character and length, 0 when the line is not a fence. */
static size_t fence_len(const char *line, size_t len, char *ch)
{
    size_t i = 0, n = 0;
    while (i < len && i < 3 && line[i] == ' ')
        i++;
    if (i >= len || (line[i] != '`' && line[i] != '~'))
        return 0;
    *ch = line[i];
    while (i + n < len && line[i + n] == *ch)
        n++;
    return n >= 3 ? n : 0;
}

/* The word after a command, if any (the rest of the line is free text). */
static void arg_take(command *out, const char *p, size_t len)
{
    size_t i = 0, w = 0;
    while (i < len && isspace((unsigned char)p[i]))
        i++;
    while (i + w < len && !isspace((unsigned char)p[i + w]))
        w++;
    if (w == 0)
        return;
    if (w > COMMANDS_ARG_MAX) {
        out->arg_bad = 1;
        return;
    }
    for (size_t k = 0; k < w; k++) {
        unsigned char c = (unsigned char)p[i + k];
        if (!isalnum(c) && c != '-' && c != '_' && c != '.') {
            out->arg_bad = 1;
            out->arg[0] = '\0';
            return;
        }
        out->arg[k] = (char)tolower(c);
    }
    out->arg[w] = '\0';
}

/* The command on one line, when it holds one. */
static int line_command(command *out, const char *line, size_t len)
{
    size_t i = 0, w = 0;

    while (i < len && i < 3 && line[i] == ' ')
        i++;
    if (len - i < 5 || strncasecmp(line + i, "/farm", 5) != 0)
        return 0;
    i += 5;
    if (i < len && !isspace((unsigned char)line[i]))
        return 0; /* "/farmer", "/farm-bot" */
    while (i < len && isspace((unsigned char)line[i]))
        i++;
    memset(out, 0, sizeof(*out));
    while (i + w < len && !isspace((unsigned char)line[i + w]))
        w++;
    if (w == 0) {
        out->kind = COMMAND_HELP;
        return 1;
    }
    for (size_t k = 0; k < sizeof(words) / sizeof(words[0]); k++) {
        if (strlen(words[k].word) == w && !strncasecmp(line + i, words[k].word, w)) {
            out->kind = words[k].kind;
            snprintf(out->word, sizeof(out->word), "%s", words[k].word);
            arg_take(out, line + i + w, len - i - w);
            return 1;
        }
    }
    out->kind = COMMAND_UNKNOWN;
    size_t n = 0;
    for (size_t k = 0; k < w && n < COMMANDS_WORD_MAX; k++) {
        unsigned char c = (unsigned char)line[i + k];
        if (c >= 0x21 && c < 0x7f && c != '`')
            out->word[n++] = (char)c;
    }
    out->word[n] = '\0';
    return 1;
}

static void scan(command *out, const char *text, size_t len)
{
    size_t fence = 0;
    char fch = 0;

    for (size_t pos = 0; pos < len;) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + (nl ? 1 : 0);
        if (n > 0 && line[n - 1] == '\r')
            n--;

        char c;
        size_t f = fence_len(line, n, &c);
        if (fence) {
            if (f >= fence && c == fch)
                fence = 0; /* the closing fence */
            continue;
        }
        if (f) {
            fence = f;
            fch = c;
            continue;
        }
        if (n >= 4 && !strncmp(line, "    ", 4))
            continue; /* indented code */
        if (n > 0 && line[0] == '\t')
            continue;
        size_t i = 0;
        while (i < n && line[i] == ' ')
            i++;
        if (i < n && line[i] == '>')
            continue; /* a quote */
        if (line_command(out, line, n))
            return;
    }
}

int commands_parse(command *out, const char *body)
{
    memset(out, 0, sizeof(*out));
    if (!body || !strcasestr(body, "/farm"))
        return 0;
    size_t len = strnlen(body, COMMANDS_TEXT_MAX);
    if (!looks_like_html(body)) {
        scan(out, body, len);
        return 0;
    }
    buf b = BUF_INIT(COMMANDS_TEXT_MAX);
    char *cut = strndup(body, len);
    if (!cut) {
        farm_error_set("commands: out of memory");
        return FARM_ENOMEM;
    }
    html_flatten(&b, cut);
    free(cut);
    if (b.len)
        scan(out, buf_cstr(&b), b.len);
    buf_free(&b);
    return 0;
}
