/*
 * github_api_limits.c - the GitHub transport's limits (see github_api.h).
 *
 * Content-creating requests (everything but GET) are paced per instance
 * under GitHub's secondary limits, by default 80 in any minute and 500 in
 * any hour: the times of the latest ones are kept, so the limits hold over
 * every sliding window (a token bucket would allow twice the burst). When
 * the budget is spent the call waits if that takes under a second and
 * otherwise fails with FARM_EAGAIN and the wait. A response that says the
 * primary rate limit is spent (x-ratelimit-remaining: 0) blocks that
 * credential until x-ratelimit-reset without asking again.
 *
 * With shared limits (tracker.h: farm nodes on one store) both the pacing
 * windows and the back-off live in the store, so N processes together keep
 * to the configured rate; the process's own ring and slots are the fallback
 * when the store cannot answer (it stays paced, if only per process).
 */
#include "github_api.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PACE_MAX      100000 /* entries: bounds the ring whatever per_hour says */
#define PACE_BLOCK_MS 1000   /* longest wait for the pacing budget inside a call */

int gh_pacer_init(gh_pacer *p, int per_minute, int per_hour)
{
    p->per_minute = per_minute > 0 ? (per_minute < PACE_MAX ? per_minute : PACE_MAX) : 80;
    p->per_hour = per_hour > 0 ? (per_hour < PACE_MAX ? per_hour : PACE_MAX) : 500;
    p->cap = (size_t)(p->per_minute > p->per_hour ? p->per_minute : p->per_hour);
    p->times = calloc(p->cap, sizeof *p->times);
    return p->times ? 0 : FARM_ENOMEM;
}

/* How long until one more request fits in a window of period_ms that
 * allows limit requests: the limit-th latest must have left the window. */
static int64_t pacer_wait(const gh_pacer *p, int limit, int64_t period_ms, int64_t now)
{
    if ((size_t)limit > p->count)
        return 0;
    int64_t t = p->times[(p->head + p->cap - (size_t)limit) % p->cap];
    int64_t wait = t + period_ms - now;
    return wait > 0 ? wait : 0;
}

/* The wait for the shared budget (taking a place when it is 0), or -1 when
 * there is no shared budget or it cannot be asked. */
static int64_t shared_wait(github_api *a)
{
    const tracker_shared_limits *sh = a->shared;
    int64_t wait = 0;
    char key[1100];
    if (!sh || !sh->pace)
        return -1;
    snprintf(key, sizeof(key), "github %s", a->api_url);
    if (sh->pace(sh->arg, &wait, key, a->pace.per_minute, a->pace.per_hour) != 0) {
        log_warn("github: the shared pacing cannot be asked: pacing this process alone", "error",
                 farm_error_last());
        return -1;
    }
    return wait > 0 ? wait : 0;
}

/* The process's own pacing: the wait, taking a place when it is 0. */
static int64_t local_wait(github_api *a)
{
    pthread_mutex_lock(&a->mu);
    gh_pacer *p = &a->pace;
    int64_t now = clock_mono_ms();
    int64_t wm = pacer_wait(p, p->per_minute, 60 * 1000, now);
    int64_t wh = pacer_wait(p, p->per_hour, 3600 * 1000, now);
    int64_t wait = wm > wh ? wm : wh;
    if (wait == 0) {
        p->times[p->head] = now;
        p->head = (p->head + 1) % p->cap;
        if (p->count < p->cap)
            p->count++;
    }
    pthread_mutex_unlock(&a->mu);
    return wait;
}

int gh_pace(github_api *a)
{
    for (;;) {
        int64_t wait = shared_wait(a);
        if (wait < 0)
            wait = local_wait(a);
        if (wait == 0)
            return 0;
        int per_minute = a->pace.per_minute, per_hour = a->pace.per_hour;
        if (wait > PACE_BLOCK_MS) {
            tracker_retry_after_set(wait);
            farm_error_set("github: pacing budget for content-creating requests spent "
                           "(%d a minute, %d an hour); next one in %lld ms",
                           per_minute, per_hour, (long long)wait);
            return FARM_EAGAIN;
        }
        gh_sleep_ms(wait);
    }
}

static void block_key(char *out, size_t n, const github_api *a, int64_t installation)
{
    snprintf(out, n, "github %s %lld", a->api_url, (long long)installation);
}

int gh_rate_limit_check(github_api *a, int64_t installation, const char *method, const char *shown,
                        int shown_len)
{
    int64_t now = clock_wall_ms();
    int64_t until = 0;
    pthread_mutex_lock(&a->mu);
    gh_ident *id = gh_ident_slot(a, installation);
    until = id->blocked_until_ms;
    pthread_mutex_unlock(&a->mu);
    if (until <= now && a->shared && a->shared->blocked_get) {
        /* another process may have learnt that the credential is spent */
        char key[1100];
        int64_t shared = 0;
        block_key(key, sizeof(key), a, installation);
        if (a->shared->blocked_get(a->shared->arg, &shared, key) == 0 && shared > now) {
            until = shared;
            pthread_mutex_lock(&a->mu);
            id = gh_ident_slot(a, installation);
            if (id->blocked_until_ms < until)
                id->blocked_until_ms = until;
            pthread_mutex_unlock(&a->mu);
        }
    }
    if (until > now) {
        tracker_retry_after_set(until - now);
        farm_error_set("github: %s %.*s: rate limit spent until reset in %lld s", method, shown_len,
                       shown, (long long)((until - now + 999) / 1000));
        return FARM_EAGAIN;
    }
    return 0;
}

void gh_rate_limit_note(github_api *a, int64_t installation, const http_response *r)
{
    if (installation < 0 || r->ratelimit_remaining != 0 || r->ratelimit_reset <= 0)
        return;
    pthread_mutex_lock(&a->mu);
    gh_ident *id = gh_ident_slot(a, installation);
    id->blocked_until_ms = r->ratelimit_reset * 1000;
    pthread_mutex_unlock(&a->mu);
    if (a->shared && a->shared->blocked_set) {
        char key[1100];
        block_key(key, sizeof(key), a, installation);
        if (a->shared->blocked_set(a->shared->arg, key, r->ratelimit_reset * 1000) != 0)
            log_warn("github: cannot share the rate limit's back-off", "error", farm_error_last());
    }
}

int gh_rate_limited(const http_response *r, const char *message)
{
    if (r->status == 429)
        return 1;
    if (r->status != 403)
        return 0;
    return r->ratelimit_remaining == 0 || r->retry_after_ms > 0 ||
           strcasestr(message, "rate limit") != NULL;
}
