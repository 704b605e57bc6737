/*
 * digest_daily.c - the daily digest comment (config "digest"): a thread that
 * wakes once a minute and, from the configured hour (UTC) on, posts the
 * digest of the last 24 hours on the configured issue through the outbox.
 * The outbox key "digest:YYYY-MM-DD" is unique in the store, so a restart,
 * a clock that ticks the same minute twice or a second farm process sharing
 * the store never posts a day twice; the thread also remembers the last day
 * it posted so it does not write again every minute.
 *
 * Several farm processes sharing the store compute it once: before building
 * the digest a node claims the day in the store (store_node_claim, a claim
 * lasting CLAIM_MS, made to last two days once posted), and a node that
 * loses the claim leaves the day to the winner; if the winner dies before
 * posting, its claim runs out and another node takes the day.
 */
#include "digest.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/handle/handle.h"
#include "farm/report/outbox.h"
#include "farm/store/store_node.h"
#include "farm/store/store_run.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DAY_MS   (24LL * 3600 * 1000)
#define TICK_MS  60000
#define CLAIM_MS (10LL * 60 * 1000) /* time a node has to build and enqueue the digest */

struct digest_daily {
    farm *f;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stopping;
    char last_day[16]; /* the day posted last, "YYYY-MM-DD" */
    char owner[300];   /* this process in the day's claim: "host:pid" */
};

/* Claim day's digest for this process until until_ms: 1 when it is ours. A
 * store that cannot answer lets the node go ahead: the outbox key still
 * keeps the comment from being posted twice. */
static int day_claim(digest_daily *d, const char *day, int64_t until_ms)
{
    char key[64];
    int won = 0;
    snprintf(key, sizeof(key), "digest:%s", day);
    if (store_node_claim(&won, d->f->store, key, d->owner, until_ms) != 0) {
        log_warn("cannot claim the daily digest in the store; building it here", "error",
                 farm_error_last());
        return 1;
    }
    return won;
}

static void day_of(char out[16], int64_t ms, int *hour)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 16, "%Y-%m-%d", &tm);
    if (hour)
        *hour = tm.tm_hour;
}

typedef struct post_args {
    const config *cfg;
    const char *key;
    const char *payload;
    int64_t session_id; /* out */
    int64_t seq;        /* out: an event appended, or 0 */
} post_args;

/* Find (or make, already "done") the session of the digest issue and
 * enqueue the comment on it. */
static int post_write(store_tx *tx, void *arg)
{
    post_args *a = arg;
    store_session *s = NULL;
    int rc = store_tx_session_find(&s, tx, a->cfg->digest.tracker, a->cfg->digest.repo,
                                   a->cfg->digest.issue, 0, 0);
    if (rc == FARM_ENOTFOUND) {
        store_session n = {0};
        n.tracker = a->cfg->digest.tracker;
        n.repo = a->cfg->digest.repo;
        n.number = a->cfg->digest.issue;
        n.title = "farm daily digest";
        json_t *body = json_pack("{s:s,s:s,s:s}", "from", "queued", "to", "done", "why",
                                 "the daily digest's thread");
        if (!body) {
            farm_error_set("digest: out of memory");
            return FARM_ENOMEM;
        }
        if (!(rc = store_tx_session_insert(&a->session_id, tx, &n)) &&
            !(rc = store_tx_session_state_set(tx, a->session_id, "done")))
            rc = store_tx_event_append_json(&a->seq, tx, a->session_id, "state", "farm", body);
        json_decref(body);
        if (rc)
            return rc;
    } else if (rc) {
        return rc;
    } else {
        a->session_id = s->id;
        store_session_free(s);
    }
    return outbox_tx_enqueue(tx, a->session_id, OUTBOX_COMMENT, a->key, a->payload);
}

int digest_daily_post(farm *f, int64_t now_ms)
{
    const config *cfg = f->cfg;
    json_t *d = NULL, *p = NULL;
    char *md = NULL, *payload = NULL, day[16], key[64];
    int rc;

    if (!cfg->digest.enabled) {
        farm_error_set("digest: no \"digest\" section in the config");
        return FARM_EINVALID;
    }
    day_of(day, now_ms, NULL);
    snprintf(key, sizeof(key), "digest:%s", day);
    if ((rc = digest_build(&d, f->store, now_ms - DAY_MS, now_ms)) ||
        (rc = digest_markdown(&md, d, cfg->public_url)))
        goto out;
    if (!(p = json_pack("{s:s,s:b}", "body", md, "on_pr", 0)) ||
        !(payload = json_dumps(p, JSON_COMPACT))) {
        farm_error_set("digest: out of memory");
        rc = FARM_ENOMEM;
        goto out;
    }
    post_args a = {cfg, key, payload, 0, 0};
    if ((rc = store_write(f->store, post_write, &a)))
        goto out;
    log_info("daily digest enqueued", "key", key, "repo", cfg->digest.repo);
    outbox_kick(f);
out:
    json_decref(d);
    json_decref(p);
    free(md);
    free(payload);
    return rc;
}

static void *daily_main(void *arg)
{
    digest_daily *d = arg;
    pthread_mutex_lock(&d->lock);
    while (!d->stopping) {
        int64_t now = clock_wall_ms();
        char day[16];
        int hour;
        day_of(day, now, &hour);
        if (hour >= d->f->cfg->digest.hour_utc && strcmp(day, d->last_day) != 0) {
            pthread_mutex_unlock(&d->lock);
            int rc = -1;
            if (day_claim(d, day, now + CLAIM_MS)) {
                rc = digest_daily_post(d->f, now);
                if (rc == 0)
                    day_claim(d, day, now + 2 * DAY_MS); /* done: nobody builds it again */
                else
                    log_warn("daily digest not posted; trying again in a minute", "error",
                             farm_error_last());
            }
            pthread_mutex_lock(&d->lock);
            if (rc == 0)
                snprintf(d->last_day, sizeof(d->last_day), "%s", day);
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += TICK_MS / 1000;
        pthread_cond_timedwait(&d->wake, &d->lock, &ts);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

int digest_daily_start(digest_daily **out, farm *f)
{
    digest_daily *d;
    int err;

    assert(out && f);
    *out = NULL;
    if (!f->cfg->digest.enabled)
        return 0;
    if (!(d = calloc(1, sizeof(*d)))) {
        farm_error_set("digest: out of memory");
        return FARM_ENOMEM;
    }
    d->f = f;
    char host[256] = "localhost";
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    snprintf(d->owner, sizeof(d->owner), "%.200s:%ld", host, (long)getpid());
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->wake, NULL);
    if ((err = pthread_create(&d->thread, NULL, daily_main, d))) {
        farm_error_set("digest: cannot start the daily thread: %s", strerror(err));
        pthread_cond_destroy(&d->wake);
        pthread_mutex_destroy(&d->lock);
        free(d);
        return FARM_EIO;
    }
    *out = d;
    return 0;
}

void digest_daily_stop(digest_daily *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->lock);
    d->stopping = 1;
    pthread_cond_signal(&d->wake);
    pthread_mutex_unlock(&d->lock);
    pthread_join(d->thread, NULL);
    pthread_cond_destroy(&d->wake);
    pthread_mutex_destroy(&d->lock);
    free(d);
}
