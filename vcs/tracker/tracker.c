/*
 * tracker.c - what every tracker shares: the public entry points that check
 * their arguments and dispatch to a tracker's ops, the hidden idempotency
 * markers, splitting a long body over several comments, and the result
 * structs' free functions.
 *
 * Splitting counts UTF-16 code units, which is never less than the number of
 * characters a tracker counts, so a part always fits; a cut prefers a line
 * break in the last quarter of a part and otherwise falls between two code
 * points, never inside one.
 */
#include "tracker.h"

#include "base/buf.h"
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MAX 200

static _Thread_local int64_t retry_after;

void tracker_retry_after_set(int64_t ms)
{
    retry_after = ms > 0 ? ms : 0;
}

int64_t tracker_retry_after_ms(void)
{
    return retry_after;
}

const char *tracker_permission_name(tracker_permission p)
{
    switch (p) {
    case TRACKER_PERM_READ:
        return "read";
    case TRACKER_PERM_WRITE:
        return "write";
    case TRACKER_PERM_ADMIN:
        return "admin";
    case TRACKER_PERM_NONE:
        break;
    }
    return "none";
}

/* ---- markers ---------------------------------------------------------- */

static int key_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("._:/=+@-", c) != NULL;
}

int tracker_key_check(const char *key)
{
    if (!key || !*key) {
        farm_error_set("idempotency key is empty");
        return FARM_EINVALID;
    }
    size_t n = strlen(key);
    if (n > KEY_MAX) {
        farm_error_set("idempotency key is %zu characters, over %d", n, KEY_MAX);
        return FARM_EINVALID;
    }
    for (size_t i = 0; i < n; i++) {
        if (!key_char_ok(key[i])) {
            farm_error_set("idempotency key has a character outside [A-Za-z0-9._:/=+@-] at %zu", i);
            return FARM_EINVALID;
        }
        if (key[i] == '-' && key[i + 1] == '-') {
            farm_error_set("idempotency key contains \"--\"");
            return FARM_EINVALID;
        }
    }
    return 0;
}

static int marker_write(buf *b, const char *key, int part)
{
    if (part > 1)
        return buf_printf(b, "<!-- farm:%s#%d -->", key, part);
    return buf_printf(b, "<!-- farm:%s -->", key);
}

char *tracker_marker(const char *key, int part)
{
    buf b = BUF_INIT(KEY_MAX + 64);
    if (marker_write(&b, key, part) < 0) {
        buf_free(&b);
        return NULL;
    }
    return buf_detach(&b);
}

int tracker_body_has_marker(const char *body, const char *key, int part)
{
    if (!body || !key)
        return 0;
    char m[KEY_MAX + 64];
    int len = part > 1 ? snprintf(m, sizeof m, "<!-- farm:%s#%d -->", key, part)
                       : snprintf(m, sizeof m, "<!-- farm:%s -->", key);
    if (len < 0 || (size_t)len >= sizeof m)
        return 0;
    return strstr(body, m) != NULL;
}

int tracker_body_part_count(const char *body)
{
    unsigned i = 0, n = 0;
    int used = 0;
    if (body && sscanf(body, "*(part %u of %u)*%n", &i, &n, &used) == 2 && used > 0 && i >= 1 &&
        n >= i && n < 100000)
        return (int)n;
    return 1;
}

/* ---- UTF-8 ------------------------------------------------------------ */

/* Length in bytes of the valid UTF-8 sequence at s (at most avail bytes),
 * and its UTF-16 width in *units; 0 when it is not valid UTF-8. */
static size_t utf8_seq(const unsigned char *s, size_t avail, int *units)
{
    unsigned c = s[0];
    size_t len;
    unsigned cp, min;
    if (c < 0x80) {
        *units = 1;
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        len = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > avail)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    *units = cp >= 0x10000 ? 2 : 1;
    return len;
}

long tracker_utf16_len(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    long units = 0;
    for (size_t i = 0; i < len;) {
        int u;
        size_t l = utf8_seq(p + i, len - i, &u);
        if (!l)
            return -1;
        units += u;
        i += l;
    }
    return units;
}

/* ---- splitting -------------------------------------------------------- */

void tracker_parts_free(char **parts)
{
    if (!parts)
        return;
    for (char **p = parts; *p; p++)
        free(*p);
    free(parts);
}

static int digits(size_t v)
{
    int d = 1;
    while (v >= 10)
        v /= 10, d++;
    return d;
}

/* Append one finished part: the part line, the text, the marker. */
static int part_build(char **out, const char *key, const char *text, size_t len, size_t i, size_t n)
{
    buf b = BUF_INIT(len + KEY_MAX + 256);
    int rc = 0;
    *out = NULL;
    if (n > 1 && (rc = buf_printf(&b, "*(part %zu of %zu)*\n\n", i, n)) < 0)
        goto out;
    if ((rc = buf_append(&b, text, len)) < 0)
        goto out;
    if ((rc = buf_puts(&b, "\n\n")) < 0)
        goto out;
    if ((rc = marker_write(&b, key, (int)i)) < 0)
        goto out;
    *out = buf_detach(&b);
    if (!*out)
        rc = FARM_ENOMEM;
out:
    buf_free(&b);
    return rc;
}

int tracker_body_split(char ***out, size_t *n, const char *key, const char *body, size_t max_units,
                       size_t max_parts)
{
    size_t *cuts = NULL, ncuts = 0;
    char **parts = NULL;
    int rc = 0;
    *out = NULL;
    *n = 0;

    if ((rc = tracker_key_check(key)) < 0)
        return rc;
    if (!body)
        body = "";
    if (max_parts < 1)
        max_parts = 1;
    size_t blen = strlen(body);
    long total = tracker_utf16_len(body, blen);
    if (total < 0) {
        farm_error_set("comment body is not valid UTF-8");
        return FARM_EINVALID;
    }
    /* Worst case of what each part adds around its text. */
    int d = digits(max_parts);
    size_t overhead = strlen("*(part  of )*\n\n") + 2 * (size_t)d + 2 + strlen("<!-- farm:# -->") +
                      strlen(key) + (size_t)d;
    if (max_units < overhead + 256) {
        farm_error_set("comment size limit %zu is too small to split into", max_units);
        return FARM_EINVALID;
    }
    size_t avail = max_units - overhead;

    cuts = calloc(max_parts + 1, sizeof *cuts);
    if (!cuts)
        return FARM_ENOMEM;
    cuts[ncuts++] = 0;
    if ((size_t)total > avail) {
        const unsigned char *p = (const unsigned char *)body;
        size_t start = 0;
        while (start < blen) {
            size_t i = start, units = 0, last_nl = 0;
            while (i < blen) {
                int u;
                size_t l = utf8_seq(p + i, blen - i, &u);
                if (units + (size_t)u > avail)
                    break;
                units += (size_t)u;
                i += l;
                if (p[i - 1] == '\n')
                    last_nl = i;
            }
            /* i is the end of the longest fit; prefer a line break late in it */
            if (i < blen && last_nl > start && units > 0 && last_nl - start >= (i - start) * 3 / 4)
                i = last_nl;
            if (ncuts > max_parts) {
                farm_error_set("comment body of %ld characters needs more than %zu comments", total,
                               max_parts);
                rc = FARM_ETOOBIG;
                goto out;
            }
            cuts[ncuts++] = i;
            start = i;
        }
    } else {
        cuts[ncuts++] = blen;
    }
    size_t nparts = ncuts - 1;

    parts = calloc(nparts + 1, sizeof *parts);
    if (!parts) {
        rc = FARM_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < nparts; i++) {
        rc = part_build(&parts[i], key, body + cuts[i], cuts[i + 1] - cuts[i], i + 1, nparts);
        if (rc < 0)
            goto out;
    }
    *out = parts;
    *n = nparts;
    parts = NULL;
out:
    tracker_parts_free(parts);
    free(cuts);
    return rc;
}

/* ---- results ---------------------------------------------------------- */

void tracker_thread_free(tracker_thread *th)
{
    if (!th)
        return;
    free(th->title);
    free(th->body);
    free(th->author);
    free(th->state);
    free(th->url);
    free(th->created_at);
    for (size_t i = 0; i < th->nlabels; i++)
        free(th->labels[i]);
    free(th->labels);
    for (size_t i = 0; i < th->ncomments; i++) {
        tracker_comment *c = &th->comments[i];
        free(c->author);
        free(c->body);
        free(c->created_at);
        free(c->updated_at);
        free(c->url);
    }
    free(th->comments);
    free(th);
}

void tracker_pr_free(tracker_pr *pr)
{
    if (!pr)
        return;
    free(pr->url);
    free(pr->state);
    free(pr->title);
    free(pr->body);
    free(pr->head_branch);
    free(pr->base_branch);
    free(pr->author);
    free(pr);
}

void tracker_review_comments_free(tracker_review_comment *rc, size_t n)
{
    if (!rc)
        return;
    for (size_t i = 0; i < n; i++) {
        free(rc[i].path);
        free(rc[i].body);
        free(rc[i].author);
        free(rc[i].created_at);
    }
    free(rc);
}

/* ---- dispatch --------------------------------------------------------- */

/* Common checks: a tracker, a ref with a repository, and an issue number
 * when the call needs one. Clears the retry-after slot. */
static int ref_check(tracker *t, const tracker_ref *ref, int need_number)
{
    retry_after = 0;
    if (!t || !t->ops) {
        farm_error_set("no tracker");
        return FARM_EINVALID;
    }
    if (!ref || !ref->repo || !*ref->repo) {
        farm_error_set("%s: no repository given", t->ops->name);
        return FARM_EINVALID;
    }
    if (need_number && ref->number <= 0) {
        farm_error_set("%s: no issue number given for %s", t->ops->name, ref->repo);
        return FARM_EINVALID;
    }
    return 0;
}

static int body_check(const char *body)
{
    if (!body) {
        farm_error_set("no body given");
        return FARM_EINVALID;
    }
    return 0;
}

static int unsupported(tracker *t, const char *what)
{
    farm_error_set("%s tracker cannot %s", t->ops->name, what);
    return FARM_EUNSUPPORTED;
}

int tracker_comment_create(int64_t *out_id, tracker *t, const tracker_ref *ref, const char *key,
                           const char *body)
{
    int rc;
    int64_t id = 0;
    if (out_id)
        *out_id = 0;
    if ((rc = ref_check(t, ref, 1)) < 0 || (rc = tracker_key_check(key)) < 0 ||
        (rc = body_check(body)) < 0)
        return rc;
    if (!t->ops->comment_create)
        return unsupported(t, "create comments");
    rc = t->ops->comment_create(&id, t, ref, key, body);
    if (rc == 0 && out_id)
        *out_id = id;
    return rc;
}

int tracker_comment_update(tracker *t, const tracker_ref *ref, int64_t id, const char *key,
                           const char *body)
{
    int rc;
    if ((rc = ref_check(t, ref, 1)) < 0 || (rc = tracker_key_check(key)) < 0 ||
        (rc = body_check(body)) < 0)
        return rc;
    if (id <= 0) {
        farm_error_set("no comment id given");
        return FARM_EINVALID;
    }
    if (!t->ops->comment_update)
        return unsupported(t, "update comments");
    return t->ops->comment_update(t, ref, id, key, body);
}

int tracker_comment_find_by_marker(int64_t *out_id, tracker *t, const tracker_ref *ref,
                                   const char *key)
{
    int rc;
    int64_t id = 0;
    *out_id = 0;
    if ((rc = ref_check(t, ref, 1)) < 0 || (rc = tracker_key_check(key)) < 0)
        return rc;
    if (!t->ops->comment_find_by_marker)
        return unsupported(t, "find comments");
    rc = t->ops->comment_find_by_marker(&id, t, ref, key);
    if (rc == 0)
        *out_id = id;
    return rc;
}

static const char *const reactions[] = {"+1",    "-1",     "laugh",  "confused",
                                        "heart", "hooray", "rocket", "eyes"};

int tracker_react(tracker *t, const tracker_ref *ref, int64_t comment_id, const char *reaction)
{
    int rc;
    if ((rc = ref_check(t, ref, comment_id == 0)) < 0)
        return rc;
    int known = 0;
    for (size_t i = 0; reaction && i < sizeof reactions / sizeof *reactions; i++)
        known |= strcmp(reaction, reactions[i]) == 0;
    if (!known || comment_id < 0) {
        farm_error_set("unknown reaction \"%s\"", reaction ? reaction : "");
        return FARM_EINVALID;
    }
    if (!t->ops->react)
        return unsupported(t, "react");
    return t->ops->react(t, ref, comment_id, reaction);
}

static int labels_check(const char *const *labels, size_t n)
{
    if (n > 0 && !labels) {
        farm_error_set("no labels given");
        return FARM_EINVALID;
    }
    for (size_t i = 0; i < n; i++) {
        if (!labels[i] || !*labels[i] || strlen(labels[i]) > 256) {
            farm_error_set("label %zu is empty or longer than 256 bytes", i);
            return FARM_EINVALID;
        }
    }
    return 0;
}

int tracker_labels_add(tracker *t, const tracker_ref *ref, const char *const *labels, size_t n)
{
    int rc;
    if ((rc = ref_check(t, ref, 1)) < 0 || (rc = labels_check(labels, n)) < 0)
        return rc;
    if (n == 0)
        return 0;
    if (!t->ops->labels_add)
        return unsupported(t, "add labels");
    return t->ops->labels_add(t, ref, labels, n);
}

int tracker_labels_remove(tracker *t, const tracker_ref *ref, const char *const *labels, size_t n)
{
    int rc;
    if ((rc = ref_check(t, ref, 1)) < 0 || (rc = labels_check(labels, n)) < 0)
        return rc;
    if (n == 0)
        return 0;
    if (!t->ops->labels_remove)
        return unsupported(t, "remove labels");
    return t->ops->labels_remove(t, ref, labels, n);
}

int tracker_thread_get(tracker_thread **out, tracker *t, const tracker_ref *ref)
{
    int rc;
    *out = NULL;
    if ((rc = ref_check(t, ref, 1)) < 0)
        return rc;
    if (!t->ops->thread_get)
        return unsupported(t, "read threads");
    return t->ops->thread_get(out, t, ref);
}

int tracker_pr_create(tracker_pr **out, tracker *t, const tracker_ref *ref,
                      const tracker_pr_spec *spec)
{
    int rc;
    *out = NULL;
    if ((rc = ref_check(t, ref, 0)) < 0)
        return rc;
    if (!spec || !spec->title || !*spec->title || !spec->head_branch || !*spec->head_branch ||
        !spec->base_branch || !*spec->base_branch) {
        farm_error_set("a pull request needs a title, a head branch and a base branch");
        return FARM_EINVALID;
    }
    if ((rc = tracker_key_check(spec->key)) < 0)
        return rc;
    if (!t->ops->pr_create)
        return unsupported(t, "create pull requests");
    return t->ops->pr_create(out, t, ref, spec);
}

int tracker_pr_find_by_branch(tracker_pr **out, tracker *t, const tracker_ref *ref,
                              const char *branch)
{
    int rc;
    *out = NULL;
    if ((rc = ref_check(t, ref, 0)) < 0)
        return rc;
    if (!branch || !*branch) {
        farm_error_set("no branch given");
        return FARM_EINVALID;
    }
    if (!t->ops->pr_find_by_branch)
        return unsupported(t, "find pull requests");
    return t->ops->pr_find_by_branch(out, t, ref, branch);
}

int tracker_pr_update(tracker *t, const tracker_ref *ref, int64_t pr_number,
                      const tracker_pr_spec *spec)
{
    int rc;
    if ((rc = ref_check(t, ref, 0)) < 0)
        return rc;
    if (pr_number <= 0 || !spec) {
        farm_error_set("no pull request number or spec given");
        return FARM_EINVALID;
    }
    if (spec->body && (rc = tracker_key_check(spec->key)) < 0)
        return rc;
    if (!t->ops->pr_update)
        return unsupported(t, "update pull requests");
    return t->ops->pr_update(t, ref, pr_number, spec);
}

int tracker_pr_review_comments(tracker_review_comment **out, size_t *n, tracker *t,
                               const tracker_ref *ref, int64_t pr_number)
{
    int rc;
    *out = NULL;
    *n = 0;
    if ((rc = ref_check(t, ref, 0)) < 0)
        return rc;
    if (pr_number <= 0) {
        farm_error_set("no pull request number given");
        return FARM_EINVALID;
    }
    if (!t->ops->pr_review_comments)
        return unsupported(t, "read review comments");
    return t->ops->pr_review_comments(out, n, t, ref, pr_number);
}

int tracker_review_comment_reply(int64_t *out_id, tracker *t, const tracker_ref *ref,
                                 int64_t pr_number, int64_t comment_id, const char *key,
                                 const char *body)
{
    int rc;
    int64_t id = 0;
    if (out_id)
        *out_id = 0;
    if ((rc = ref_check(t, ref, 0)) < 0 || (rc = tracker_key_check(key)) < 0 ||
        (rc = body_check(body)) < 0)
        return rc;
    if (pr_number <= 0 || comment_id <= 0) {
        farm_error_set("no pull request or review comment given");
        return FARM_EINVALID;
    }
    if (!t->ops->review_comment_reply)
        return unsupported(t, "reply to review comments");
    rc = t->ops->review_comment_reply(&id, t, ref, pr_number, comment_id, key, body);
    if (rc == 0 && out_id)
        *out_id = id;
    return rc;
}

int tracker_permission_get(tracker_permission *out, tracker *t, const tracker_ref *ref,
                           const char *user)
{
    int rc;
    tracker_permission p = TRACKER_PERM_NONE;
    *out = TRACKER_PERM_NONE;
    if ((rc = ref_check(t, ref, 0)) < 0)
        return rc;
    if (!user || !*user) {
        farm_error_set("no user given");
        return FARM_EINVALID;
    }
    if (!t->ops->permission_get)
        return unsupported(t, "look up permissions");
    rc = t->ops->permission_get(&p, t, ref, user);
    if (rc == 0)
        *out = p;
    return rc;
}

const char *tracker_name(const tracker *t)
{
    return t && t->ops ? t->ops->name : "";
}

void tracker_free(tracker *t)
{
    if (t && t->ops && t->ops->free)
        t->ops->free(t);
}

/* ---- the tracker's CI --------------------------------------------------------- */

void tracker_checks_free(tracker_check *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        free(v[i].name);
        free(v[i].conclusion);
        free(v[i].url);
        free(v[i].summary);
    }
    free(v);
}

int tracker_checks_list(tracker_check **out, size_t *n, tracker *t, const tracker_ref *ref,
                        const char *branch, const char *sha)
{
    int rc;
    *out = NULL;
    *n = 0;
    if ((rc = ref_check(t, ref, 0)) < 0)
        return rc;
    if (!sha || strlen(sha) < 7 || strlen(sha) > 64 ||
        strspn(sha, "0123456789abcdef") != strlen(sha)) {
        farm_error_set("%s: no commit (a hex sha) given for the checks", t->ops->name);
        return FARM_EINVALID;
    }
    if (!t->ops->checks_list)
        return unsupported(t, "list CI checks");
    return t->ops->checks_list(out, n, t, ref, branch, sha);
}

int tracker_check_log_tail(char **out, tracker *t, const tracker_ref *ref, const tracker_check *c,
                           size_t max_bytes)
{
    int rc;
    *out = NULL;
    if ((rc = ref_check(t, ref, 0)) < 0)
        return rc;
    if (!c || c->log_id <= 0 || max_bytes == 0) {
        farm_error_set("%s: the check has no log to read", t->ops->name);
        return FARM_ENOTFOUND;
    }
    if (!t->ops->check_log_tail)
        return unsupported(t, "read CI logs");
    return t->ops->check_log_tail(out, t, ref, c, max_bytes);
}

char *tracker_text_tail(const char *text, size_t len, size_t max_bytes)
{
    size_t start = 0;
    if (!text)
        len = 0;
    if (len > max_bytes) {
        start = len - max_bytes;
        const char *nl = memchr(text + start, '\n', len - start);
        if (nl && (size_t)(nl + 1 - text) < len)
            start = (size_t)(nl + 1 - text);
        while (start < len && ((unsigned char)text[start] & 0xC0) == 0x80)
            start++;
    }
    char *out = malloc(len - start + 1);
    if (!out)
        return NULL;
    size_t k = 0;
    for (size_t i = start; i < len; i++)
        if (text[i] != '\0' && text[i] != '\r')
            out[k++] = text[i];
    out[k] = '\0';
    return out;
}
