/*
 * auth.h - who may talk to the HTTP front.
 *
 * Three doors: the GitHub webhook (HMAC signature over the body), the Azure
 * DevOps service hook (basic auth or a shared header secret) and the API
 * (bearer tokens from config.tokens, each with a role). Every secret is
 * compared in constant time. A webhook with no secret configured is off:
 * unsigned deliveries are never accepted, from anywhere. An API with no
 * tokens configured serves loopback clients only (the demo and the CLI on
 * the same host; server.c does not count a request a proxy forwarded as
 * loopback); `farm serve` refuses to listen beyond loopback without secrets
 * and tokens (config_check_serve).
 */
#ifndef FARM_WEBHOOK_AUTH_H
#define FARM_WEBHOOK_AUTH_H

#include "farm/config/config.h"

#include <stddef.h>

typedef enum {
    AUTH_NONE = 0, /* no valid credentials */
    AUTH_VIEWER,
    AUTH_MEMBER,
    AUTH_ADMIN,
} auth_role;

/* Parse "viewer", "member" or "admin"; AUTH_NONE otherwise. */
auth_role auth_role_parse(const char *s);
const char *auth_role_name(auth_role r);

/* Who the API caller is. `name` points into the config (or is "loopback"). */
typedef struct auth_identity {
    auth_role role;
    const char *name;
} auth_identity;

/* Identify an API caller from its Authorization header (may be NULL).
 * "Bearer <token>" matching a configured token gives that token's role; with
 * no tokens configured a loopback client is admin. Returns 0, or FARM_EAUTH
 * (out->role AUTH_NONE) when the header is missing, malformed or matches no
 * token. */
int auth_api_identify(auth_identity *out, const config *c, const char *authorization, int loopback);

/* 1 when `have` is at least `need`. */
int auth_role_allows(auth_role have, auth_role need);

/* Is the GitHub webhook on (github.webhook_secret set)? */
int auth_github_on(const config *c);

/* Is the Azure DevOps webhook on (a basic auth password or a header
 * secret set)? */
int auth_azure_on(const config *c);

/* Check a GitHub delivery's X-Hub-Signature-256 (may be NULL) against
 * github.webhook_secret. With no secret configured, every delivery is
 * refused. Returns 0 or FARM_EAUTH with the reason in the error slot (never
 * the secret). */
int auth_github_check(const config *c, const void *body, size_t len, const char *signature);

/* Check an Azure DevOps delivery: the Authorization header (basic auth
 * against azure.webhook_user / azure.webhook_password) or the configured
 * azure.webhook_header carrying azure.webhook_header_secret. header_value is
 * the value of that configured header (NULL when absent or none
 * configured). With neither configured, every delivery is refused. Returns
 * 0 or FARM_EAUTH. */
int auth_azure_check(const config *c, const char *authorization, const char *header_value);

#endif
