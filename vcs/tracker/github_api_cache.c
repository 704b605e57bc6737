/*
 * github_api_cache.c - the GitHub transport's ETag cache (see github_api.h).
 *
 * Each GET remembers its ETag and body (bounded number of entries, bounded
 * entry size, least recently used out first); the next GET of the same URL
 * with the same credential sends If-None-Match, and a 304 is answered from
 * the cache (and does not count against the rate limit). Entries live in
 * the api's fixed table, under its lock.
 */
#include "github_api.h"

#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ETAG_BODY_MAX (1u << 20) /* larger bodies are not cached */

/* Under a->mu. */
static gh_etag_entry *etag_find(github_api *a, const char *key)
{
    for (size_t i = 0; i < a->netags; i++)
        if (a->etags[i].key && strcmp(a->etags[i].key, key) == 0)
            return &a->etags[i];
    return NULL;
}

int gh_etag_condition(char **key, char **inm, github_api *a, int64_t installation, const char *url)
{
    *inm = NULL;
    if (asprintf(key, "%lld %s", (long long)installation, url) < 0) {
        *key = NULL;
        return FARM_ENOMEM;
    }
    pthread_mutex_lock(&a->mu);
    gh_etag_entry *e = etag_find(a, *key);
    if (e && asprintf(inm, "If-None-Match: %s", e->etag) < 0)
        *inm = NULL; /* asked unconditionally: a full answer, nothing worse */
    pthread_mutex_unlock(&a->mu);
    return 0;
}

int gh_etag_answer(json_t **out, char **next, github_api *a, github_call *c, const char *key,
                   const char *what)
{
    int rc = FARM_ENOTFOUND;
    pthread_mutex_lock(&a->mu);
    gh_etag_entry *e = etag_find(a, key);
    if (e) {
        e->last_use = ++a->tick;
        c->bytes = e->len;
        rc = gh_json_parse(out, e->body, e->len, what);
        if (rc == 0 && next && e->next && !(*next = strdup(e->next)))
            rc = FARM_ENOMEM;
    }
    pthread_mutex_unlock(&a->mu);
    return rc;
}

void gh_etag_store(github_api *a, const char *key, const char *etag, const char *body, size_t len,
                   const char *next)
{
    if (!etag || len > ETAG_BODY_MAX)
        return;
    char *k = strdup(key), *e = strdup(etag), *b = malloc(len + 1);
    char *nx = next ? strdup(next) : NULL;
    if (!k || !e || !b || (next && !nx)) {
        free(k);
        free(e);
        free(b);
        free(nx);
        return; /* the next GET asks unconditionally, nothing worse */
    }
    memcpy(b, body, len);
    b[len] = 0;
    pthread_mutex_lock(&a->mu);
    gh_etag_entry *slot = etag_find(a, key);
    if (!slot) {
        slot = &a->etags[0];
        for (size_t i = 0; i < a->netags; i++) {
            if (!a->etags[i].key) {
                slot = &a->etags[i];
                break;
            }
            if (a->etags[i].last_use < slot->last_use)
                slot = &a->etags[i];
        }
    }
    free(slot->key);
    free(slot->etag);
    free(slot->body);
    free(slot->next);
    slot->key = k;
    slot->etag = e;
    slot->body = b;
    slot->next = nx;
    slot->len = len;
    slot->last_use = ++a->tick;
    pthread_mutex_unlock(&a->mu);
}
