/*
 * outbox.c - tracker side effects, exactly once: enqueueing (with the
 * payload checks) and the sender threads that lease entries (see outbox.h).
 *
 * A worker loops: lease the next due entry (the store, sql_outbox.c, picks only a
 * session's oldest pending entry, so a session's effects go out in order
 * while other sessions proceed on other workers), deliver it through the
 * session's tracker and record the outcome (outbox_send.c). Exactly-once
 * rests on two things: the idempotency key's marker in every body the
 * tracker receives, and looking before creating on any attempt after the
 * first (a crash between "the tracker accepted" and "the store recorded"
 * leaves the entry pending with attempts > 0). Idle workers sleep until
 * outbox_kick(), the next entry's due time, or a short poll for entries
 * enqueued by other processes (`farm issue`, another farm sharing the
 * store).
 */
#include "outbox.h"
#include "outbox_internal.h"
#include "farm/handle/handle.h"
#include "farm/store/store.h"
#include "farm/store/store_notify.h"
#include "farm/store/store_outbox.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "vcs/tracker/tracker.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Guards every farm's f->outbox pointer: start, stop and kick. */
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- keys and enqueueing ------------------------------------------------- */

void outbox_key(char *out, size_t n, int64_t session_id, const char *name)
{
    snprintf(out, n, "s%" PRId64 ":%s", session_id, name ? name : "");
}

static int kind_known(const char *kind)
{
    static const char *const kinds[] = {OUTBOX_COMMENT, OUTBOX_STATUS, OUTBOX_REACT,
                                        OUTBOX_LABELS,  OUTBOX_PR,     OUTBOX_REVIEW_REPLY};
    for (size_t i = 0; kind && i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcmp(kind, kinds[i]) == 0)
            return 1;
    return 0;
}

static int want_string(json_t *p, const char *field, const char *kind)
{
    if (!json_is_string(json_object_get(p, field))) {
        farm_error_set("outbox: a %s entry needs a string \"%s\"", kind, field);
        return FARM_EINVALID;
    }
    return 0;
}

static int want_string_array(json_t *p, const char *field)
{
    json_t *a = json_object_get(p, field), *v;
    size_t i;
    if (!a)
        return 0;
    if (!json_is_array(a) || json_array_size(a) > OUTBOX_LABELS_MAX) {
        farm_error_set("outbox: \"%s\" must be an array of at most %d strings", field,
                       OUTBOX_LABELS_MAX);
        return FARM_EINVALID;
    }
    json_array_foreach(a, i, v) if (!json_is_string(v))
    {
        farm_error_set("outbox: \"%s\" must hold strings only", field);
        return FARM_EINVALID;
    }
    return 0;
}

static int state_known(const char *state)
{
    for (const char *const *st = store_session_states(); *st; st++)
        if (strcmp(*st, state) == 0)
            return 1;
    return 0;
}

/* What each kind's payload must hold (outbox.h), so a bad entry is refused
 * at once instead of failing on the sender later. */
static int payload_check(const char *kind, const char *key, json_t *p)
{
    json_t *inst = json_object_get(p, "installation_id");
    int rc = 0;
    if (inst && !json_is_integer(inst)) {
        farm_error_set("outbox: \"installation_id\" must be an integer");
        return FARM_EINVALID;
    }
    if (!strcmp(kind, OUTBOX_COMMENT) || !strcmp(kind, OUTBOX_STATUS))
        return want_string(p, "body", kind);
    if (!strcmp(kind, OUTBOX_REACT)) {
        json_t *cid = json_object_get(p, "comment_id");
        if (cid && !json_is_integer(cid)) {
            farm_error_set("outbox: \"comment_id\" must be an integer");
            return FARM_EINVALID;
        }
        return want_string(p, "reaction", kind);
    }
    if (!strcmp(kind, OUTBOX_LABELS)) {
        if ((rc = want_string_array(p, "add")) || (rc = want_string_array(p, "remove")))
            return rc;
        return 0;
    }
    if (!strcmp(kind, OUTBOX_PR)) {
        json_t *then = json_object_get(p, "then_comment");
        json_t *after = json_object_get(p, "state_after");
        if ((rc = want_string(p, "title", kind)))
            return rc;
        if (after && (!json_is_string(after) || !state_known(json_string_value(after)))) {
            farm_error_set("outbox: \"state_after\" is not a session state");
            return FARM_EINVALID;
        }
        if (then) {
            char tkey[256];
            if (!json_is_string(then)) {
                farm_error_set("outbox: \"then_comment\" must be a string");
                return FARM_EINVALID;
            }
            snprintf(tkey, sizeof tkey, "%s:comment", key);
            if (tracker_key_check(tkey) != 0) {
                farm_error_set("outbox: key %s is too long to carry a then_comment", key);
                return FARM_EINVALID;
            }
        }
        return 0;
    }
    /* OUTBOX_REVIEW_REPLY */
    if (!json_is_integer(json_object_get(p, "comment_id")) ||
        json_integer_value(json_object_get(p, "comment_id")) <= 0) {
        farm_error_set("outbox: a review_reply entry needs a positive \"comment_id\"");
        return FARM_EINVALID;
    }
    return want_string(p, "body", kind);
}

/* A comment without a session names its target itself. */
static int sessionless_check(json_t *p)
{
    int rc;
    json_t *n = json_object_get(p, "number");
    if ((rc = want_string(p, "tracker", OUTBOX_COMMENT)) ||
        (rc = want_string(p, "repo", OUTBOX_COMMENT)))
        return rc;
    if (!json_is_integer(n) || json_integer_value(n) <= 0) {
        farm_error_set("outbox: a comment without a session needs a positive \"number\"");
        return FARM_EINVALID;
    }
    return 0;
}

int outbox_tx_enqueue(store_tx *tx, int64_t session_id, const char *kind, const char *key,
                      const char *payload_json)
{
    json_t *p = NULL;
    json_error_t jerr;
    int rc;

    if (session_id < 0 || (session_id == 0 && (!kind || strcmp(kind, OUTBOX_COMMENT) != 0))) {
        farm_error_set("outbox: an entry needs a session (only a comment may go without one)");
        return FARM_EINVALID;
    }
    if (!kind_known(kind)) {
        farm_error_set("outbox: unknown entry kind \"%s\"", kind ? kind : "(null)");
        return FARM_EINVALID;
    }
    if (!key || tracker_key_check(key) != 0) {
        farm_error_set("outbox: bad idempotency key \"%s\"", key ? key : "(null)");
        return FARM_EINVALID;
    }
    if (!payload_json || strlen(payload_json) > OUTBOX_PAYLOAD_MAX) {
        farm_error_set("outbox: a payload is JSON text of at most %u bytes", OUTBOX_PAYLOAD_MAX);
        return FARM_EINVALID;
    }
    if (!(p = json_loads(payload_json, 0, &jerr)) || !json_is_object(p)) {
        farm_error_set("outbox: payload is not a JSON object%s%s", p ? "" : ": ",
                       p ? "" : jerr.text);
        json_decref(p);
        return FARM_EINVALID;
    }
    rc = payload_check(kind, key, p);
    if (rc == 0 && session_id == 0)
        rc = sessionless_check(p);
    json_decref(p);
    if (rc)
        return rc;
    return store_tx_outbox_insert(NULL, tx, session_id, kind, key, payload_json);
}

typedef struct enqueue_args {
    int64_t session_id;
    const char *kind, *key, *payload;
} enqueue_args;

static int enqueue_write(store_tx *tx, void *arg)
{
    enqueue_args *a = arg;
    return outbox_tx_enqueue(tx, a->session_id, a->kind, a->key, a->payload);
}

int outbox_enqueue(store *s, int64_t session_id, const char *kind, const char *key,
                   const char *payload_json)
{
    enqueue_args a = {session_id, kind, key, payload_json};
    return store_write(s, enqueue_write, &a);
}

int outbox_tx_status(store_tx *tx, int64_t session_id, const char *payload_json)
{
    char key[256];
    int rc;
    if (session_id <= 0) {
        farm_error_set("outbox: an entry needs a session");
        return FARM_EINVALID;
    }
    if ((rc = store_tx_outbox_status_key(key, sizeof key, tx, session_id)))
        return rc;
    return outbox_tx_enqueue(tx, session_id, OUTBOX_STATUS, key, payload_json);
}

static int status_write(store_tx *tx, void *arg)
{
    enqueue_args *a = arg;
    return outbox_tx_status(tx, a->session_id, a->payload);
}

int outbox_status(store *s, int64_t session_id, const char *payload_json)
{
    enqueue_args a = {session_id, OUTBOX_STATUS, NULL, payload_json};
    return store_write(s, status_write, &a);
}

int outbox_stats_get(outbox_stats *out, store *s)
{
    return store_outbox_stats(out, s);
}

/* ---- the workers --------------------------------------------------------- */

/* How long an idle worker sleeps: until the next entry is due, at most
 * poll_ms, at least a few ms (a due entry that another sender leased first
 * must not make the loop spin). */
static int64_t idle_wait(outbox_worker *w)
{
    const outbox_opts *o = &w->s->o;
    int64_t next = 0, now = clock_wall_ms(), d = o->poll_ms;
    if (store_outbox_next_due(&next, w->s->f->store) == 0 && next > 0 && next - now < d)
        d = next - now;
    return d < 5 ? 5 : d;
}

static void *worker_main(void *arg)
{
    outbox_worker *w = arg;
    struct outbox_sender *s = w->s;

    for (;;) {
        pthread_mutex_lock(&s->mu);
        int stop = s->stopping;
        uint64_t seen = s->kicks;
        pthread_mutex_unlock(&s->mu);
        if (stop)
            break;

        outbox_entry *e = NULL;
        int rc = store_outbox_lease(&e, s->f->store, w->owner, clock_wall_ms(), s->o.lease_ms);
        if (rc == 0) {
            outbox__send(w, e);
            outbox_entry_free(e);
            continue;
        }
        if (rc != FARM_ENOTFOUND)
            log_warn("outbox: cannot lease entries", "error", farm_error_last());

        int64_t d = rc == FARM_ENOTFOUND ? idle_wait(w) : s->o.poll_ms;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += d / 1000;
        ts.tv_nsec += (d % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && s->kicks == seen)
            if (pthread_cond_timedwait(&s->cond, &s->mu, &ts) == ETIMEDOUT)
                break;
        pthread_mutex_unlock(&s->mu);
    }
    free(w);
    return NULL;
}

/* Leases held by processes of this host that are gone (a kill -9, a
 * crash) are released at once instead of waiting out lease_ms; other
 * hosts' leases are left to expire. Owners read "<host>:<pid>:<ms>/w<i>". */
static void release_dead_leases(struct outbox_sender *s, const char *host)
{
    char **owners = NULL;
    size_t n = 0;
    if (store_outbox_lease_owners(&owners, &n, s->f->store) != 0) {
        log_warn("outbox: cannot list leases", "error", farm_error_last());
        return;
    }
    size_t hl = strlen(host);
    for (size_t i = 0; i < n; i++) {
        const char *o = owners[i];
        char *end = NULL;
        if (strncmp(o, host, hl) != 0 || o[hl] != ':')
            continue;
        long pid = strtol(o + hl + 1, &end, 10);
        if (pid <= 0 || !end || *end != ':')
            continue;
        /* our own pid may be another farm handle of this process: alive */
        if (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        int64_t count = 0;
        if (store_outbox_release(&count, s->f->store, o, clock_wall_ms() + s->o.no_answer_ms) ==
                0 &&
            count > 0) {
            char c[24];
            snprintf(c, sizeof c, "%" PRId64, count);
            log_info("outbox: released the leases of a process that is gone", "owner", o, "entries",
                     c);
        }
    }
    store_outbox_lease_owners_free(owners, n);
}

/* opts (or the defaults) with every unset or out-of-range field settled. */
static outbox_opts opts_settle(const outbox_opts *opts)
{
    static const outbox_opts defaults = OUTBOX_OPTS_INIT;
    outbox_opts o = opts ? *opts : defaults;

    if (o.workers <= 0)
        o.workers = defaults.workers;
    if (o.workers > OUTBOX_WORKERS_MAX)
        o.workers = OUTBOX_WORKERS_MAX;
    if (o.lease_ms <= 0)
        o.lease_ms = defaults.lease_ms;
    if (o.backoff_ms <= 0)
        o.backoff_ms = defaults.backoff_ms;
    if (o.max_backoff_ms < o.backoff_ms)
        o.max_backoff_ms = o.backoff_ms;
    if (o.no_answer_ms < 0)
        o.no_answer_ms = 0;
    if (o.max_attempts <= 0)
        o.max_attempts = defaults.max_attempts;
    if (o.permanent_attempts <= 0)
        o.permanent_attempts = 1;
    if (o.poll_ms <= 0)
        o.poll_ms = defaults.poll_ms;
    o.owner = NULL; /* not kept: the caller's string */
    return o;
}

/* This host's name as lease owners carry it: ':' and '/' would blur where
 * the name ends, so they become '_'. host holds n bytes and starts as the
 * fallback ("localhost"). */
static void owner_host(char *host, size_t n)
{
    gethostname(host, n - 1);
    host[n - 1] = '\0';
    for (char *c = host; *c; c++)
        if (*c == ':' || *c == '/')
            *c = '_';
}

/* A sender for f with its lock and condition variable, and no threads yet.
 * Its owner is opts->owner, else "<host>:<pid>:<start ms>". NULL on
 * ENOMEM. Freed by outbox_stop() once it is f->outbox. */
static struct outbox_sender *sender_new(farm *f, const outbox_opts *opts, const char *host)
{
    struct outbox_sender *s = calloc(1, sizeof(*s));
    pthread_condattr_t ca;

    if (!s) {
        farm_error_set("out of memory");
        return NULL;
    }
    s->f = f;
    s->o = opts_settle(opts);
    if (opts && opts->owner)
        snprintf(s->owner, sizeof s->owner, "%s", opts->owner);
    else
        snprintf(s->owner, sizeof s->owner, "%s:%ld:%" PRId64, host, (long)getpid(),
                 clock_wall_ms());
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    return s;
}

/* Start s->o.workers threads; s->nthreads counts those that run. Returns
 * 0, FARM_ENOMEM or FARM_EIO at the first that would not start. */
static int workers_start(struct outbox_sender *s)
{
    for (int i = 0; i < s->o.workers; i++) {
        outbox_worker *w = calloc(1, sizeof(*w));
        if (!w) {
            farm_error_set("out of memory");
            return FARM_ENOMEM;
        }
        w->s = s;
        w->index = i;
        w->seed = (unsigned)(clock_mono_ns() ^ ((uint64_t)getpid() << 16) ^ (unsigned)i);
        snprintf(w->owner, sizeof w->owner, "%s/w%d", s->owner, i);
        if (pthread_create(&s->threads[i], NULL, worker_main, w) != 0) {
            free(w);
            farm_error_set("outbox: cannot start a sender thread");
            return FARM_EIO;
        }
        s->nthreads++;
    }
    return 0;
}

/* An entry was added or released on some node (or the listener
 * reconnected): every sender thread looks now. */
static void on_outbox_notify(void *arg, store_notify_kind kind, const char *payload)
{
    struct outbox_sender *s = arg;
    (void)kind;
    (void)payload;
    pthread_mutex_lock(&s->mu);
    s->kicks++;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

int outbox_start_opts(farm *f, const outbox_opts *opts)
{
    struct outbox_sender *s = NULL;
    char host[64] = "localhost";
    char n[16];
    int rc = 0;

    pthread_mutex_lock(&start_lock);
    if (f->outbox)
        goto out;
    owner_host(host, sizeof host);
    if (!(s = sender_new(f, opts, host))) {
        rc = FARM_ENOMEM;
        goto out;
    }
    if (!opts || !opts->owner)
        release_dead_leases(s, host);
    rc = workers_start(s);
    f->outbox = s;
    if (rc) {
        pthread_mutex_unlock(&start_lock);
        outbox_stop(f);
        return rc;
    }
    /* no listener (it keeps retrying in the background): the poll still looks */
    if (store_notify_subscribe(&s->notify, f->store, STORE_NOTIFY_OUTBOX | STORE_NOTIFY_RESYNC,
                               on_outbox_notify, s) != 0)
        log_warn("the outbox wakes on its poll only", "error", farm_error_last());
    snprintf(n, sizeof n, "%d", s->nthreads);
    log_info("outbox sender started", "workers", n, "owner", s->owner);
out:
    pthread_mutex_unlock(&start_lock);
    return rc;
}

int outbox_start(farm *f)
{
    return outbox_start_opts(f, NULL);
}

void outbox_stop(farm *f)
{
    pthread_mutex_lock(&start_lock);
    struct outbox_sender *s = f->outbox;
    f->outbox = NULL;
    pthread_mutex_unlock(&start_lock);
    if (!s)
        return;
    store_notify_unsubscribe(f->store, s->notify); /* no wake-up after this */
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->nthreads; i++)
        pthread_join(s->threads[i], NULL);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void outbox_kick(farm *f)
{
    pthread_mutex_lock(&start_lock);
    struct outbox_sender *s = f->outbox;
    if (s) {
        pthread_mutex_lock(&s->mu);
        s->kicks++;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->mu);
    }
    pthread_mutex_unlock(&start_lock);
}
