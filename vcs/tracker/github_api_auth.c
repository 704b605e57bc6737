/*
 * github_api_auth.c - the GitHub transport's credentials and the farm's own
 * login (see github_api.h).
 *
 * A personal access token is used as it is. A GitHub App signs an RS256 JWT
 * (iat = now - 60, exp = now + 540, iss = app id) and trades it for an
 * installation token (POST /app/installations/{id}/access_tokens), cached
 * per installation and renewed five minutes before its expires_at; a 401
 * drops the cached token and the request is tried once more with a new one
 * (github_api.c). Without an installation id in the ref, the repository's
 * installation is looked up once (GET /repos/{repo}/installation) and
 * remembered.
 */
#include "github_api.h"

#include "base/clock.h"
#include "base/crypto.h"
#include "base/error.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define TOKEN_REFRESH_S 300 /* renew installation tokens this long before expiry */

gh_ident *gh_ident_slot(github_api *a, int64_t installation)
{
    gh_ident *victim = NULL;
    for (size_t i = 0; i < GH_IDENT_MAX; i++) {
        gh_ident *id = &a->idents[i];
        if (id->used && id->installation == installation) {
            id->last_use = ++a->tick;
            return id;
        }
        if (!victim || !id->used || (victim->used && id->last_use < victim->last_use))
            victim = id;
    }
    free(victim->token);
    memset(victim, 0, sizeof *victim);
    victim->used = 1;
    victim->installation = installation;
    victim->last_use = ++a->tick;
    return victim;
}

static int jwt_make(char **out, github_api *a)
{
    int64_t now = clock_wall_ms() / 1000;
    json_t *claims = json_pack("{s:I, s:I, s:I}", "iat", (json_int_t)(now - 60), "exp",
                               (json_int_t)(now + 540), "iss", (json_int_t)a->app_id);
    char *text = claims ? json_dumps(claims, JSON_COMPACT) : NULL;
    json_decref(claims);
    *out = NULL;
    if (!text)
        return FARM_ENOMEM;
    int rc = crypto_jwt_rs256(out, a->app_key, text);
    free(text);
    return rc;
}

/* Parse "2026-11-21T20:00:00Z" into wall ms; 0 when unreadable. */
static int64_t iso_to_ms(const char *s)
{
    struct tm tm = {0};
    int y, mo, d, h, mi, sec;
    if (!s || sscanf(s, "%d-%d-%dT%d:%d:%d", &y, &mo, &d, &h, &mi, &sec) != 6)
        return 0;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    return t == (time_t)-1 ? 0 : (int64_t)t * 1000;
}

int gh_app_call(json_t **out, github_api *a, github_call *c)
{
    char *jwt = NULL, *auth = NULL;
    int rc = jwt_make(&jwt, a);
    if (rc < 0) {
        char why[256];
        snprintf(why, sizeof why, "%s", farm_error_last());
        farm_error_set("github: cannot sign the app JWT: %s", why);
        return rc == FARM_ENOMEM ? rc : FARM_EAUTH;
    }
    if (asprintf(&auth, "Authorization: Bearer %s", jwt) < 0) {
        free(jwt);
        return FARM_ENOMEM;
    }
    rc = gh_request(out, NULL, a, c, auth, 0, -1);
    free(auth);
    free(jwt);
    return rc;
}

int gh_installation_for(int64_t *out, github_api *a, const tracker_ref *ref)
{
    *out = 0;
    if (ref && ref->installation_id > 0) {
        *out = ref->installation_id;
        return 0;
    }
    if (!ref || !ref->repo) {
        farm_error_set("github: a GitHub App call needs a repository or an installation id");
        return FARM_EINVALID;
    }
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < a->nrepos; i++)
        if (strcasecmp(a->repos[i].repo, ref->repo) == 0)
            *out = a->repos[i].installation;
    pthread_mutex_unlock(&a->mu);
    if (*out)
        return 0;

    char path[512];
    snprintf(path, sizeof path, "/repos/%s/installation", ref->repo);
    github_call c = {.method = "GET", .path = path, .repeatable = 1};
    json_t *j = NULL;
    int rc = gh_app_call(&j, a, &c);
    if (rc == FARM_ENOTFOUND) {
        farm_error_set("github: the app is not installed on %s", ref->repo);
        return FARM_EAUTH;
    }
    if (rc < 0)
        return rc;
    json_int_t id = json_integer_value(json_object_get(j, "id"));
    json_decref(j);
    if (id <= 0) {
        farm_error_set("github: no installation id for %s", ref->repo);
        return FARM_EIO;
    }
    pthread_mutex_lock(&a->mu);
    size_t slot =
        a->nrepos < GH_REPO_INST_MAX ? a->nrepos++ : (size_t)(a->tick++ % GH_REPO_INST_MAX);
    char *copy = strdup(ref->repo);
    if (copy) {
        free(a->repos[slot].repo);
        a->repos[slot].repo = copy;
        a->repos[slot].installation = id;
    } else if (slot == a->nrepos - 1 && !a->repos[slot].repo) {
        a->nrepos--;
    }
    pthread_mutex_unlock(&a->mu);
    *out = id;
    return 0;
}

int gh_installation_token(char **out, github_api *a, int64_t installation, int force)
{
    *out = NULL;
    int64_t now = clock_wall_ms();
    pthread_mutex_lock(&a->mu);
    gh_ident *id = gh_ident_slot(a, installation);
    if (!force && id->token && id->expires_ms - TOKEN_REFRESH_S * 1000 > now)
        *out = strdup(id->token);
    pthread_mutex_unlock(&a->mu);
    if (*out)
        return 0;

    char path[96];
    snprintf(path, sizeof path, "/app/installations/%lld/access_tokens", (long long)installation);
    github_call c = {.method = "POST", .path = path, .repeatable = 1};
    json_t *j = NULL;
    int rc = gh_app_call(&j, a, &c);
    if (rc < 0) {
        if (rc == FARM_EAUTH || rc == FARM_ENOTFOUND)
            rc = FARM_EAUTH;
        return rc;
    }
    const char *tok = json_string_value(json_object_get(j, "token"));
    int64_t exp = iso_to_ms(json_string_value(json_object_get(j, "expires_at")));
    if (!tok || !*tok) {
        json_decref(j);
        farm_error_set("github: installation token answer without a token");
        return FARM_EIO;
    }
    if (exp == 0)
        exp = now + 3600 * 1000;
    /* Not registered with log_secret_add(): nothing here logs a token, and a
     * daemon renewing tokens every hour would fill the logger's fixed table
     * of secrets, which the long-lived ones need. */
    char *mine = strdup(tok), *theirs = strdup(tok);
    json_decref(j);
    if (!mine || !theirs) {
        free(mine);
        free(theirs);
        return FARM_ENOMEM;
    }
    pthread_mutex_lock(&a->mu);
    id = gh_ident_slot(a, installation);
    free(id->token);
    id->token = mine;
    id->expires_ms = exp;
    pthread_mutex_unlock(&a->mu);
    log_debug("github installation token issued", "installation", path);
    *out = theirs;
    return 0;
}

const char *github_api_login(github_api *a, const tracker_ref *ref)
{
    pthread_mutex_lock(&a->mu);
    int asked = a->login_asked;
    pthread_mutex_unlock(&a->mu);
    if (asked)
        return a->login;

    json_t *j = NULL;
    char *login = NULL;
    int rc;
    if (a->app_id) {
        github_call c = {.method = "GET", .path = "/app", .repeatable = 1};
        rc = gh_app_call(&j, a, &c);
        const char *slug = json_string_value(json_object_get(j, "slug"));
        if (rc == 0 && slug && asprintf(&login, "%s[bot]", slug) < 0)
            login = NULL;
    } else {
        github_call c = {.method = "GET", .path = "/user", .ref = ref, .repeatable = 1};
        rc = github_api_call(&j, a, &c);
        const char *l = json_string_value(json_object_get(j, "login"));
        if (rc == 0 && l)
            login = strdup(l);
    }
    json_decref(j);
    /* a refusal will not change by asking again; a transient failure may */
    int settled = login != NULL || rc == FARM_EAUTH || rc == FARM_ENOTFOUND;
    pthread_mutex_lock(&a->mu);
    int first = !a->login_asked;
    if (first && settled) {
        a->login = login;
        a->login_asked = 1;
        login = NULL;
    }
    const char *res = a->login;
    pthread_mutex_unlock(&a->mu);
    free(login);
    if (!res && first)
        log_warn("github: cannot tell the farm's own login (set github.bot_login); markers from "
                 "any author count",
                 "error", farm_error_last());
    return res;
}
