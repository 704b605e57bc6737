/*
 * pipeline_coauthor.c - who a run's commit credits besides the bot: the
 * person who asked for the work, as a "Co-authored-by:" trailer (README,
 * docs/git.md). The farm knows that person from the session's first
 * "triggered" event, which ingest writes with the actor of the tracker
 * event that started the session (who opened, labelled or assigned the
 * issue). GitHub accounts get GitHub's own no-reply address, so the commit
 * is linked to the account without exposing an e-mail address; Azure DevOps
 * names people by their address (uniqueName), and the local tracker by
 * whatever the user gave. Everything here is text from a tracker, so it is
 * cleaned for a trailer line or refused, never trusted.
 */
#include "pipeline_internal.h"

#include "farm/handle/handle.h"
#include "farm/store/store_run.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define GITHUB_NOREPLY "users.noreply.github.com"

/* A GitHub login: letters, digits and single hyphens, at most 39 bytes. */
static int github_login_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 39 || s[0] == '-')
        return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-')
            return 0;
    return 1;
}

/* A name for a trailer: control characters, '<' and '>' dropped, runs of
 * blanks folded, ends trimmed; a name over the cap is cut at a UTF-8
 * boundary. */
static void clean_name(char *out, size_t n, const char *s, size_t len)
{
    size_t o = 0;
    int blank = 0, cut = 0;
    for (size_t i = 0; i < len && s[i] && !cut; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == ' ') {
            blank = o > 0;
        } else if (c != '<' && c != '>') {
            if (o + (blank ? 2 : 1) >= n) {
                cut = 1;
                break;
            }
            if (blank)
                out[o++] = ' ';
            blank = 0;
            out[o++] = (char)c;
        }
    }
    if (cut) {
        while (o > 0 && ((unsigned char)out[o - 1] & 0xC0) == 0x80)
            o--;
        if (o > 0 && ((unsigned char)out[o - 1] & 0xC0) == 0xC0)
            o--; /* the lead byte of the sequence that was cut (or a whole one: fine) */
    }
    out[o] = '\0';
}

/* An address a trailer can carry: one '@' with text on both sides, no
 * blanks, controls or angle brackets. */
static int email_ok(const char *s, size_t len)
{
    const char *at = memchr(s, '@', len);
    if (len == 0 || len > 256 || !at || at == s || at == s + len - 1 ||
        memchr(at + 1, '@', len - (size_t)(at + 1 - s)))
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f || c == '<' || c == '>' || c == ',' || c == '"')
            return 0;
    }
    return 1;
}

static int set_email(pl_coauthor *out, const char *s, size_t len)
{
    if (!email_ok(s, len))
        return 0;
    memcpy(out->email, s, len);
    out->email[len] = '\0';
    return 1;
}

static void from_github(pl_coauthor *out, const char *login, json_int_t id)
{
    if (!github_login_ok(login))
        return;
    if (id > 0)
        snprintf(out->email, sizeof(out->email), "%lld+%s@" GITHUB_NOREPLY, (long long)id, login);
    else
        snprintf(out->email, sizeof(out->email), "%s@" GITHUB_NOREPLY, login);
    snprintf(out->name, sizeof(out->name), "%s", login);
}

/* "Ada Lovelace <ada@example.com>", "ada@example.com", or a name with the
 * address given apart. */
static void from_identity(pl_coauthor *out, const char *actor, const char *display,
                          const char *email)
{
    const char *lt = strrchr(actor, '<');
    size_t n = strlen(actor);

    if (lt && n > 0 && actor[n - 1] == '>' &&
        set_email(out, lt + 1, (size_t)(actor + n - 1 - lt - 1)))
        clean_name(out->name, sizeof(out->name), actor, (size_t)(lt - actor));
    else if (set_email(out, actor, n))
        clean_name(out->name, sizeof(out->name), actor, n);
    else if (email && set_email(out, email, strlen(email)))
        clean_name(out->name, sizeof(out->name), actor, n);
    if (out->email[0] && display && *display)
        clean_name(out->name, sizeof(out->name), display, strlen(display));
    if (!out->name[0] && out->email[0]) /* "<ada@example.com>": the address names them */
        snprintf(out->name, sizeof(out->name), "%s", out->email);
    if (!out->email[0])
        out->name[0] = '\0';
}

void pl_coauthor_from(pl_coauthor *out, const char *tracker, const char *actor, const json_t *body)
{
    const char *display = json_string_value(json_object_get(body, "actor_display"));
    const char *email = json_string_value(json_object_get(body, "actor_email"));
    json_int_t id = json_integer_value(json_object_get(body, "actor_id"));

    out->name[0] = out->email[0] = '\0';
    if (!actor || !*actor || strlen(actor) > 512)
        return;
    if (tracker && !strcmp(tracker, "github"))
        from_github(out, actor, id);
    else
        from_identity(out, actor, display, email);
}

int pl_coauthor_find(pl_coauthor *out, pl_run *r)
{
    static const char *const kinds[] = {"triggered", NULL};
    store_event *e = NULL;
    size_t n = 0;
    int rc;

    out->name[0] = out->email[0] = '\0';
    if ((rc = store_event_list_kinds(&e, &n, r->f->store, r->s->id, kinds, 0, 1)))
        return rc;
    if (n == 1) {
        json_t *body = json_loads(e[0].body ? e[0].body : "{}", 0, NULL);
        pl_coauthor_from(out, r->s->tracker, e[0].actor, body);
        json_decref(body);
    }
    store_event_list_free(e, n);
    return 0;
}
