/*
 * prompt.c - composing an agent's prompt (see prompt.h).
 *
 * The document is built in one bounded buffer. Untrusted text (issue, comments,
 * repository files, test output) is capped piece by piece first, so a huge
 * issue cannot push the task itself out of the prompt.
 */
#include "prompt.h"
#include "base/buf.h"
#include "base/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef FARM_GUIDELINES_DIR
#define FARM_GUIDELINES_DIR "/usr/local/share/farm/guidelines"
#endif
#ifndef FARM_GUIDELINES_SRC_DIR
#define FARM_GUIDELINES_SRC_DIR "guidelines"
#endif

static const char *repo_instruction_files[] = {
    "AGENTS.md",
    "CLAUDE.md",
    ".github/copilot-instructions.md",
};

const char *prompt_guidelines_dir(void)
{
    const char *env = getenv("FARM_GUIDELINES_DIR");
    if (env && *env)
        return env;
    struct stat st;
    if (stat(FARM_GUIDELINES_DIR "/coding.md", &st) == 0)
        return FARM_GUIDELINES_DIR;
    return FARM_GUIDELINES_SRC_DIR;
}

/* Read a whole file the farm ships (trusted, small). */
static int read_shipped(char **out, const char *dir, const char *name)
{
    *out = NULL;
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f) {
        farm_error_set("guidelines file %s is missing (%s); set FARM_GUIDELINES_DIR or reinstall",
                       path, strerror(errno));
        return FARM_ENOTFOUND;
    }
    buf b = BUF_INIT(PROMPT_MAX_TOTAL);
    char chunk[4096];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if ((rc = buf_append(&b, chunk, n)) != 0)
            break;
    fclose(f);
    if (rc) {
        buf_free(&b);
        return rc;
    }
    *out = buf_detach(&b);
    return *out ? 0 : FARM_ENOMEM;
}

int prompt_read_repo_file(char **out, int *truncated, const char *root, const char *relpath,
                          size_t max)
{
    *out = NULL;
    *truncated = 0;
    int rc = FARM_ENOTFOUND;
    char *copy = strdup(relpath);
    if (!copy)
        return FARM_ENOMEM;
    int dirfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int fd = -1;
    buf b = BUF_INIT(max);
    if (dirfd < 0)
        goto out;
    /* Walk the path one component at a time, refusing links at every step. */
    char *save = NULL;
    char *part = strtok_r(copy, "/", &save);
    while (part) {
        char *next = strtok_r(NULL, "/", &save);
        if (!strcmp(part, "..") || !strcmp(part, "."))
            goto out;
        int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (next ? O_DIRECTORY : O_NONBLOCK);
        int nfd = openat(dirfd, part, flags);
        if (nfd < 0)
            goto out;
        close(dirfd);
        dirfd = -1;
        if (next)
            dirfd = nfd;
        else
            fd = nfd;
        part = next;
    }
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        goto out;
    char chunk[4096];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n <= 0)
            break;
        size_t room = max - b.len;
        if ((size_t)n > room) {
            buf_append(&b, chunk, room);
            *truncated = 1;
            break;
        }
        buf_append(&b, chunk, (size_t)n);
    }
    *out = buf_detach(&b);
    rc = *out ? 0 : FARM_ENOMEM;
out:
    if (dirfd >= 0)
        close(dirfd);
    if (fd >= 0)
        close(fd);
    buf_free(&b);
    free(copy);
    return rc;
}

int prompt_render(char **out, const char *tmpl, const char *const *names, const char *const *values,
                  size_t n)
{
    *out = NULL;
    buf b = BUF_INIT(PROMPT_MAX_TOTAL);
    int rc = 0;
    const char *p = tmpl;
    while (*p && rc == 0) {
        const char *open = strstr(p, "{{");
        if (!open) {
            rc = buf_puts(&b, p);
            break;
        }
        const char *close = strstr(open + 2, "}}");
        if (!close) {
            rc = buf_puts(&b, p);
            break;
        }
        rc = buf_append(&b, p, (size_t)(open - p));
        size_t len = (size_t)(close - open - 2);
        const char *val = NULL;
        for (size_t i = 0; i < n; i++)
            if (strlen(names[i]) == len && !strncmp(names[i], open + 2, len)) {
                val = values[i] ? values[i] : "";
                break;
            }
        if (rc == 0)
            rc = val ? buf_puts(&b, val) : buf_append(&b, open, (size_t)(close + 2 - open));
        p = close + 2;
    }
    if (rc) {
        buf_free(&b);
        return rc;
    }
    *out = buf_detach(&b);
    return *out ? 0 : FARM_ENOMEM;
}

/* Append at most max bytes of s, cut at a UTF-8 boundary, with a marker when
 * cut. tail keeps the end instead of the start (test output). */
static int put_capped(buf *b, const char *s, size_t max, int tail)
{
    if (!s)
        return 0;
    size_t len = strlen(s);
    if (len <= max)
        return buf_append(b, s, len);
    if (tail) {
        const char *start = s + len - max;
        while (*start && ((unsigned char)*start & 0xC0) == 0x80)
            start++;
        int rc = buf_printf(b, "[... %zu earlier bytes cut ...]\n", (size_t)(start - s));
        return rc ? rc : buf_puts(b, start);
    }
    size_t cut = max;
    while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
        cut--;
    int rc = buf_append(b, s, cut);
    return rc ? rc : buf_printf(b, "\n[... %zu more bytes cut ...]\n", len - cut);
}

static const char *template_name(prompt_step step)
{
    switch (step) {
    case PROMPT_FIX_ROUND:
        return "templates/fix-round.md";
    case PROMPT_REVISION:
        return "templates/revision.md";
    case PROMPT_ANSWER:
        return "templates/answer.md";
    case PROMPT_CI_FIX:
        return "templates/ci-fix.md";
    case PROMPT_MERGE:
        return "templates/merge.md";
    case PROMPT_PLAN:
        return "templates/plan.md";
    case PROMPT_FIRST_RUN:
        break;
    }
    return "templates/first-run.md";
}

/* The review comments as Markdown, for the revision template. */
static int render_reviews(char **out, const prompt_input *in)
{
    buf b = BUF_INIT(PROMPT_MAX_TOTAL / 2);
    int rc = 0;
    for (size_t i = 0; i < in->nreviews && rc == 0; i++) {
        const prompt_review_comment *r = &in->reviews[i];
        if (r->path && r->line > 0)
            rc = buf_printf(&b, "### %zu. `%s` line %d (%s)\n\n", i + 1, r->path, r->line,
                            r->author ? r->author : "reviewer");
        else if (r->path)
            rc = buf_printf(&b, "### %zu. `%s` (%s)\n\n", i + 1, r->path,
                            r->author ? r->author : "reviewer");
        else
            rc = buf_printf(&b, "### %zu. Review by %s\n\n", i + 1,
                            r->author ? r->author : "reviewer");
        if (rc == 0 && r->diff_hunk) {
            rc = buf_puts(&b, "```diff\n");
            if (rc == 0)
                rc = put_capped(&b, r->diff_hunk, 4096, 1);
            if (rc == 0)
                rc = buf_puts(&b, "\n```\n\n");
        }
        if (rc == 0)
            rc = put_capped(&b, r->body ? r->body : "", PROMPT_MAX_COMMENT, 0);
        if (rc == 0)
            rc = buf_puts(&b, "\n\n");
    }
    if (rc == FARM_ETOOBIG)
        rc = buf_puts(&b, "\n[... further review comments cut ...]\n");
    if (rc) {
        buf_free(&b);
        return rc;
    }
    *out = buf_detach(&b);
    return *out ? 0 : FARM_ENOMEM;
}

/* The step's own part: its template with the issue, the branch, the test
 * command, and what the step is about (the failing output, the review
 * comments, the question and its answer) filled in. */
static int render_task(char **out, const char *tmpl, const prompt_input *in)
{
    char *reviews = NULL, *tail_out = NULL, *ci = NULL;
    char num[32], round[16], max_rounds[16], status[16], test_note_buf[512];
    const char *test_note = "The repository has no test command configured: check your change "
                            "by reading it carefully.";
    int rc;

    *out = NULL;
    snprintf(num, sizeof(num), "%lld", (long long)in->issue_number);
    snprintf(round, sizeof(round), "%d", in->round);
    snprintf(max_rounds, sizeof(max_rounds), "%d", in->max_rounds);
    snprintf(status, sizeof(status), "%d", in->test_status);
    if (in->test_command) {
        snprintf(test_note_buf, sizeof(test_note_buf),
                 "When you finish, the farm runs `%.400s`; make sure it passes.", in->test_command);
        test_note = test_note_buf;
    }
    if (in->step == PROMPT_REVISION && (rc = render_reviews(&reviews, in)) != 0)
        return rc;
    if (in->test_output) {
        buf t = BUF_INIT(PROMPT_MAX_TEST_OUTPUT + 256);
        put_capped(&t, in->test_output, PROMPT_MAX_TEST_OUTPUT, 1);
        tail_out = buf_detach(&t);
    }
    if (in->ci_failures) {
        buf t = BUF_INIT(PROMPT_MAX_CI + 256);
        put_capped(&t, in->ci_failures, PROMPT_MAX_CI, 1);
        ci = buf_detach(&t);
    }
    const char *names[] = {"issue_number", "repo",        "issue_title",   "branch",
                           "base_branch",  "test_note",   "round",         "max_rounds",
                           "test_command", "test_status", "test_output",   "review_comments",
                           "question",     "answer",      "answer_author", "ci_failures",
                           "conflicts"};
    const char *values[] = {num,
                            in->repo,
                            in->issue_title,
                            in->branch,
                            in->base_branch ? in->base_branch : "main",
                            test_note,
                            round,
                            max_rounds,
                            in->test_command,
                            status,
                            tail_out,
                            reviews,
                            in->question,
                            in->answer,
                            in->answer_author ? in->answer_author : "A team member",
                            ci,
                            in->conflicts};
    rc = prompt_render(out, tmpl, names, values, sizeof(names) / sizeof(names[0]));
    free(reviews);
    free(tail_out);
    free(ci);
    return rc;
}

/* The repository's own instructions, read without following links. */
static int put_repo_instructions(buf *b, const prompt_input *in)
{
    int rc = 0;

    for (size_t i = 0; rc == 0 && in->worktree &&
                       i < sizeof(repo_instruction_files) / sizeof(repo_instruction_files[0]);
         i++) {
        char *text = NULL;
        int truncated = 0;
        if (prompt_read_repo_file(&text, &truncated, in->worktree, repo_instruction_files[i],
                                  PROMPT_MAX_REPO_FILE) != 0)
            continue;
        rc = buf_printf(b, "\n# The repository's instructions (`%s`)\n\n",
                        repo_instruction_files[i]);
        if (rc == 0)
            rc = buf_puts(b, text);
        if (rc == 0 && truncated)
            rc = buf_puts(b, "\n[... the rest of this file was cut ...]");
        if (rc == 0)
            rc = buf_puts(b, "\n");
        free(text);
    }
    return rc;
}

/* What the farm remembers of the session so far. */
static int put_history(buf *b, const prompt_input *in)
{
    int rc = 0;

    if (!in->history || !*in->history)
        return 0;
    rc = buf_puts(b, "\n# What happened so far in this session\n\n");
    if (rc == 0)
        rc = put_capped(b, in->history, PROMPT_MAX_ISSUE_BODY, 1);
    if (rc == 0)
        rc = buf_puts(b, "\n");
    return rc;
}

/* Comments or messages under a heading each, their bodies capped. */
static int put_comments(buf *b, const prompt_comment *v, size_t n, int messages)
{
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < n; i++) {
        const prompt_comment *c = &v[i];
        if (messages)
            rc = buf_printf(b, "\n## Message from %s (sent through the farm)\n\n",
                            c->author ? c->author : "a team member");
        else
            rc = buf_printf(b, "\n## Comment by %s%s%s\n\n", c->author ? c->author : "someone",
                            c->created ? " on " : "", c->created ? c->created : "");
        if (rc == 0)
            rc = put_capped(b, c->body ? c->body : "", PROMPT_MAX_COMMENT, 0);
        if (rc == 0)
            rc = buf_puts(b, "\n");
    }
    return rc;
}

/* The issue: its title, who opened it, its body, its comments, and the
 * messages people sent through the farm. */
static int put_thread(buf *b, const prompt_input *in)
{
    int rc = buf_printf(b, "\n# Issue #%lld: %s\n\n", (long long)in->issue_number,
                        in->issue_title ? in->issue_title : "(no title)");
    if (rc == 0 && (in->issue_author || in->issue_url))
        rc = buf_printf(b, "Opened by %s%s%s.\n\n", in->issue_author ? in->issue_author : "someone",
                        in->issue_url ? " at " : "", in->issue_url ? in->issue_url : "");
    if (rc == 0)
        rc = put_capped(b, in->issue_body && *in->issue_body ? in->issue_body : "(no description)",
                        PROMPT_MAX_ISSUE_BODY, 0);
    if (rc == 0)
        rc = buf_puts(b, "\n");
    if (rc == 0)
        rc = put_comments(b, in->comments, in->ncomments, 0);
    if (rc == 0)
        rc = put_comments(b, in->messages, in->nmessages, 1);
    return rc;
}

/* The task last and whole: when what came before (rc: how writing it went)
 * left too little room, that is cut to make room. */
static int put_task(buf *b, const char *task, int rc)
{
    if (rc == FARM_ETOOBIG || (rc == 0 && b->len + strlen(task) + 64 > b->max)) {
        size_t keep = b->max - strlen(task) - 128;
        if (keep < b->len) {
            b->len = keep;
            b->data[b->len] = '\0';
        }
        rc = buf_puts(b, "\n[... the thread was cut to fit ...]\n");
    }
    if (rc == 0)
        rc = buf_puts(b, "\n");
    if (rc == 0)
        rc = buf_puts(b, task);
    return rc;
}

/* The plan: the approved one to follow, or the previous one to revise. */
static int put_plan(buf *b, const prompt_input *in)
{
    int rc;
    if (!in->plan || !*in->plan)
        return 0;
    if (in->step == PROMPT_PLAN)
        rc = buf_puts(b, "\n# Your previous plan\n\nYou posted this plan; the comments after it "
                         "in the thread above are what people think of it.\n\n");
    else
        rc = buf_puts(b, "\n# The approved plan\n\nPeople with write access approved this plan "
                         "for the issue. Follow it; where you must depart from it, say so and "
                         "why in your summary.\n\n");
    if (rc == 0)
        rc = put_capped(b, in->plan, PROMPT_MAX_ISSUE_BODY, 0);
    return rc ? rc : buf_puts(b, "\n");
}

int prompt_compose(char **out, const prompt_input *in)
{
    const char *dir = in->guidelines_dir ? in->guidelines_dir : prompt_guidelines_dir();
    char *guidelines = NULL, *tmpl = NULL, *task = NULL;
    buf b = BUF_INIT(PROMPT_MAX_TOTAL);
    int rc;

    *out = NULL;
    if ((rc = read_shipped(&guidelines, dir, "coding.md")) != 0 ||
        (rc = read_shipped(&tmpl, dir, template_name(in->step))) != 0)
        goto out;
    /* The step's own part is rendered first so it can never be crowded out. */
    if ((rc = render_task(&task, tmpl, in)) != 0)
        goto out;
    rc = buf_puts(&b, guidelines);
    if (rc == 0)
        rc = buf_puts(&b, "\n");
    if (rc == 0)
        rc = put_repo_instructions(&b, in);
    if (rc == 0)
        rc = put_history(&b, in);
    if (rc == 0)
        rc = put_thread(&b, in);
    if (rc == 0)
        rc = put_plan(&b, in);
    if ((rc = put_task(&b, task, rc)) != 0)
        goto out;
    *out = buf_detach(&b);
    rc = *out ? 0 : FARM_ENOMEM;
out:
    buf_free(&b);
    free(guidelines);
    free(tmpl);
    free(task);
    return rc;
}
