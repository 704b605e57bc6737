/*
 * auth.c - webhook signatures, basic auth and bearer tokens (see auth.h).
 *
 * Comparisons go through crypto_streq()/crypto_memeq(), whose time depends
 * on the secret's length only. Every configured token is compared, even
 * after a match, so the time does not say which one matched.
 */
#include "auth.h"
#include "base/crypto.h"
#include "base/error.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

auth_role auth_role_parse(const char *s)
{
    if (!s)
        return AUTH_NONE;
    if (!strcmp(s, "viewer"))
        return AUTH_VIEWER;
    if (!strcmp(s, "member"))
        return AUTH_MEMBER;
    if (!strcmp(s, "admin"))
        return AUTH_ADMIN;
    return AUTH_NONE;
}

const char *auth_role_name(auth_role r)
{
    switch (r) {
    case AUTH_VIEWER:
        return "viewer";
    case AUTH_MEMBER:
        return "member";
    case AUTH_ADMIN:
        return "admin";
    case AUTH_NONE:
        break;
    }
    return "none";
}

int auth_role_allows(auth_role have, auth_role need)
{
    return have != AUTH_NONE && have >= need;
}

/* The credentials after "<scheme> " in an Authorization header, or NULL. */
static const char *credentials(const char *authorization, const char *scheme)
{
    size_t n = strlen(scheme);
    if (!authorization || strncasecmp(authorization, scheme, n) != 0 || authorization[n] != ' ')
        return NULL;
    const char *p = authorization + n;
    while (*p == ' ')
        p++;
    return *p ? p : NULL;
}

int auth_api_identify(auth_identity *out, const config *c, const char *authorization, int loopback)
{
    out->role = AUTH_NONE;
    out->name = NULL;
    if (c->ntokens == 0) {
        if (loopback) {
            out->role = AUTH_ADMIN;
            out->name = "loopback";
            return 0;
        }
        farm_error_set("no API tokens are configured: only loopback clients are served");
        return FARM_EAUTH;
    }
    const char *token = credentials(authorization, "Bearer");
    if (!token) {
        farm_error_set("missing bearer token");
        return FARM_EAUTH;
    }
    const config_token *hit = NULL;
    for (size_t i = 0; i < c->ntokens; i++) {
        const config_token *t = &c->tokens[i];
        if (t->secret && *t->secret && crypto_streq(token, t->secret) && !hit)
            hit = t;
    }
    if (!hit || auth_role_parse(hit->role) == AUTH_NONE) {
        farm_error_set("the bearer token matches no configured token");
        return FARM_EAUTH;
    }
    out->role = auth_role_parse(hit->role);
    out->name = hit->name ? hit->name : "token";
    return 0;
}

int auth_github_on(const config *c)
{
    return c->github.webhook_secret && *c->github.webhook_secret;
}

int auth_azure_on(const config *c)
{
    int have_basic = c->azure.webhook_password && *c->azure.webhook_password;
    int have_header = c->azure.webhook_header && *c->azure.webhook_header &&
                      c->azure.webhook_header_secret && *c->azure.webhook_header_secret;
    return have_basic || have_header;
}

int auth_github_check(const config *c, const void *body, size_t len, const char *signature)
{
    const char *secret = c->github.webhook_secret;
    if (!auth_github_on(c)) {
        farm_error_set("the GitHub webhook is off: set github.webhook_secret");
        return FARM_EAUTH;
    }
    if (!signature) {
        farm_error_set("missing X-Hub-Signature-256 header");
        return FARM_EAUTH;
    }
    if (crypto_github_signature_check(secret, body, len, signature) != 0) {
        farm_error_set("X-Hub-Signature-256 does not match the body");
        return FARM_EAUTH;
    }
    return 0;
}

/* "Basic base64(user:password)" against the configured pair. */
static int basic_matches(const config *c, const char *authorization)
{
    const char *b64 = credentials(authorization, "Basic");
    unsigned char *raw = NULL;
    size_t rawlen = 0;
    int ok = 0;
    if (!b64 || strlen(b64) > 4096 || crypto_base64_decode(&raw, &rawlen, b64, 0) != 0)
        return 0;
    char *colon = memchr(raw, ':', rawlen);
    if (colon && !memchr(raw, '\0', rawlen)) {
        *colon = '\0';
        const char *user = (const char *)raw;
        const char *pass = colon + 1;
        const char *want_user = c->azure.webhook_user ? c->azure.webhook_user : "";
        /* Both compared whatever the first gives, so time does not tell which failed. */
        int u = crypto_streq(user, want_user);
        int p = crypto_streq(pass, c->azure.webhook_password);
        ok = u & p;
    }
    free(raw);
    return ok;
}

int auth_azure_check(const config *c, const char *authorization, const char *header_value)
{
    int have_basic = c->azure.webhook_password && *c->azure.webhook_password;
    int have_header = c->azure.webhook_header && *c->azure.webhook_header &&
                      c->azure.webhook_header_secret && *c->azure.webhook_header_secret;
    if (!have_basic && !have_header) {
        farm_error_set("the Azure DevOps webhook is off: set azure.webhook_password (with "
                       "azure.webhook_user) or azure.webhook_header_secret");
        return FARM_EAUTH;
    }
    if (have_header && header_value && crypto_streq(header_value, c->azure.webhook_header_secret))
        return 0;
    if (have_basic && basic_matches(c, authorization))
        return 0;
    if (have_basic)
        farm_error_set("missing or wrong basic auth credentials");
    else
        farm_error_set("missing or wrong %s header", c->azure.webhook_header);
    return FARM_EAUTH;
}
