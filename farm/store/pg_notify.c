/*
 * pg_notify.c - store_notify.h on PostgreSQL: the announcing half (a
 * NOTIFY inside the writing transaction, delivered to every listener when
 * it commits) and the listening half (one dedicated connection per process
 * that LISTENs on the farm's channels, and a thread that waits on its
 * socket and hands each notification to store_notify__dispatch()).
 *
 * The channels are farm_jobs, farm_outbox, farm_session and farm_stream
 * (store_notify.h has their payloads). PostgreSQL folds identical
 * notifications of one transaction into one and delivers nothing for a
 * rolled-back write, so a write that is run again after losing a race
 * announces once.
 *
 * When the connection drops (the server restarted, a network cut), the
 * thread tells subscribers (STORE_NOTIFY_LOST), reconnects with a backoff
 * from 100 ms up to 5 s, LISTENs again, and wakes everyone once
 * (STORE_NOTIFY_RESYNC): notifications sent while it was away are lost.
 */
#include "pg_internal.h"
#include "store_notify.h"

#include "base/error.h"
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

struct pg_listener {
    store *st;
    pthread_t thread;
    int pipe[2]; /* written to stop the thread */
};

/* ---- announcing ------------------------------------------------------------ */

int pg_notify_channels(pg_store *s, pg_conn *db)
{
    pg_stmt *st;
    int rc = pg_prepare(&st, db, "SELECT current_schema()");
    if (rc)
        return rc;
    if (pg_step(st) != PG_ROW) {
        rc = pg_err(db, "reading the current schema");
    } else {
        const char *schema = pg_col_text(st, 0);
        s->chan[0] = '\0';
        if (schema && strcmp(schema, "public")) {
            uint64_t h = 14695981039346656037ull; /* FNV-1a */
            for (const char *p = schema; *p; p++)
                h = (h ^ (unsigned char)*p) * 1099511628211ull;
            snprintf(s->chan, sizeof(s->chan), "_%016llx", (unsigned long long)h);
        }
    }
    pg_finalize(st);
    return rc;
}

/* The channel's name in this store's schema. */
static void channel_name(char *out, size_t n, const char *channel, const char *suffix)
{
    snprintf(out, n, "%s%s", channel, suffix ? suffix : "");
}

int pg_conn_notify(pg_conn *db, const char *channel, const char *payload)
{
    pg_stmt *st;
    char name[64];
    int rc = pg_prepare(&st, db, "SELECT pg_notify($1, $2)");
    if (rc)
        return rc;
    channel_name(name, sizeof(name), channel, db->chan);
    pg_bind_text(st, 1, name);
    pg_bind_text(st, 2, payload);
    rc = pg_step(st) == PG_ROW ? 0 : pg_err(db, "notify");
    pg_finalize(st);
    return rc;
}

int pg_tx_notify(store_tx *tx, const char *channel, const char *payload)
{
    return pg_conn_notify(pg_tx_db(tx), channel, payload);
}

/* ---- listening ------------------------------------------------------------- */

static const struct {
    const char *channel;
    store_notify_kind kind;
} channels[] = {
    {PG_CHANNEL_JOBS, STORE_NOTIFY_JOBS},
    {PG_CHANNEL_OUTBOX, STORE_NOTIFY_OUTBOX},
    {PG_CHANNEL_SESSION, STORE_NOTIFY_SESSION},
    {PG_CHANNEL_STREAM, STORE_NOTIFY_STREAM},
};

#define NCHANNELS (sizeof(channels) / sizeof(channels[0]))

/* Wait up to ms for the stop pipe; 1 when asked to stop. */
static int stop_wait(struct pg_listener *l, int ms)
{
    struct pollfd p = {.fd = l->pipe[0], .events = POLLIN};
    int n;
    while ((n = poll(&p, 1, ms)) < 0 && errno == EINTR)
        ;
    return n > 0;
}

static pg_conn *listen_open(struct pg_listener *l)
{
    pg_conn *db = pg_conn_open(l->st->impl);
    if (!db)
        return NULL;
    for (size_t i = 0; i < NCHANNELS; i++) {
        char sql[96], name[64];
        channel_name(name, sizeof(name), channels[i].channel, db->chan);
        snprintf(sql, sizeof(sql), "LISTEN \"%s\"", name); /* letters, digits, _ */
        if (pg_exec(db, sql)) {
            pg_err(db, "listen");
            pg_conn_close(db);
            return NULL;
        }
    }
    return db;
}

static void dispatch(struct pg_listener *l, pg_conn *db)
{
    PGnotify *n;
    while ((n = PQnotifies(db->c))) {
        for (size_t i = 0; i < NCHANNELS; i++) {
            char name[64];
            channel_name(name, sizeof(name), channels[i].channel, db->chan);
            if (!strcmp(n->relname, name)) {
                store_notify__dispatch(l->st, channels[i].kind, n->extra ? n->extra : "");
                break;
            }
        }
        PQfreemem(n);
    }
}

/* Serve one connection until it breaks (0) or the thread is stopped (1). */
static int listen_serve(struct pg_listener *l, pg_conn *db)
{
    struct pollfd p[2] = {{.fd = PQsocket(db->c), .events = POLLIN},
                          {.fd = l->pipe[0], .events = POLLIN}};
    for (;;) {
        int n = poll(p, 2, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || p[1].revents)
            return n < 0 ? 0 : 1;
        if (!PQconsumeInput(db->c) || PQstatus(db->c) != CONNECTION_OK) {
            char msg[256];
            snprintf(msg, sizeof(msg), "%s", PQerrorMessage(db->c));
            msg[strcspn(msg, "\n")] = '\0';
            log_warn("store: the LISTEN connection broke; reconnecting (changes made elsewhere"
                     " are seen by the safety polls meanwhile)",
                     "error", msg);
            return 0;
        }
        dispatch(l, db);
    }
}

static void *listen_main(void *arg)
{
    struct pg_listener *l = arg;
    int backoff = BACKOFF_MIN_MS, failures = 0, broke = 0;
    for (;;) {
        pg_conn *db = listen_open(l);
        if (!db) {
            if (failures++ == 0)
                log_warn("store: cannot LISTEN; retrying with backoff (changes made elsewhere"
                         " are seen by the safety polls meanwhile)",
                         "error", farm_error_last());
            if (stop_wait(l, backoff))
                return NULL;
            backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
            continue;
        }
        if (failures || broke)
            log_info("store: listening again; waking everyone once");
        failures = broke = 0;
        backoff = BACKOFF_MIN_MS;
        /* anything committed while nobody listened went unannounced */
        store_notify__dispatch(l->st, STORE_NOTIFY_RESYNC, NULL);
        int stop = listen_serve(l, db);
        pg_conn_close(db);
        if (stop)
            return NULL;
        store_notify__dispatch(l->st, STORE_NOTIFY_LOST, NULL);
        broke = 1;
        if (stop_wait(l, backoff))
            return NULL;
    }
}

int pg_notify_listen(store *st)
{
    pg_store *s = st->impl;
    struct pg_listener *l = calloc(1, sizeof(*l));
    if (!l) {
        farm_error_set("store: out of memory");
        return FARM_ENOMEM;
    }
    l->st = st;
    /* close-on-exec: no child (a sandboxed agent least of all) inherits it */
    if (pipe2(l->pipe, O_CLOEXEC) != 0) {
        farm_error_set("store: cannot make the listener's pipe: %s", strerror(errno));
        free(l);
        return FARM_EIO;
    }
    int err = pthread_create(&l->thread, NULL, listen_main, l);
    if (err) {
        farm_error_set("store: cannot start the listener's thread: %s", strerror(err));
        close(l->pipe[0]);
        close(l->pipe[1]);
        free(l);
        return FARM_EIO;
    }
    s->listener = l;
    return 0;
}

void pg_notify_stop(pg_store *s)
{
    struct pg_listener *l = s->listener;
    if (!l)
        return;
    ssize_t w;
    do
        w = write(l->pipe[1], "x", 1);
    while (w < 0 && errno == EINTR);
    pthread_join(l->thread, NULL);
    close(l->pipe[0]);
    close(l->pipe[1]);
    free(l);
    s->listener = NULL;
}
