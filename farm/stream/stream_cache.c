/*
 * stream_cache.c - the hub's hot entries: a hash table of the streams that
 * have live readers or were read recently, each with the stream's metadata
 * and a ring of its most recent records (stream_internal.h says why).
 *
 * Entries are filled from commits (hub_after_commit(), called by create,
 * append and trim once their write is committed) and from database reads
 * (stream_hot_load(), and reads that pass through the ring). A change of the
 * tail queues the stream's waiters (stream_live.c wakes them).
 */
#include "stream.h"
#include "stream_internal.h"
#include "farm/store/store_stream.h"

#include "base/clock.h"
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RING_MAX_RECORDS 4096

/* ---- the table and the rings -------------------------------------------- */

static uint32_t hash_path(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

hot *hub_hot_get(stream_hub *h, const char *path, int create)
{
    uint32_t b = hash_path(path) % HOT_BUCKETS;
    for (hot *e = h->buckets[b]; e; e = e->next)
        if (!strcmp(e->path, path)) {
            e->used_ms = h->now_ms; /* the timer's clock: eviction needs no better */
            return e;
        }
    if (!create)
        return NULL;
    hot *e = calloc(1, sizeof(*e));
    if (!e || !(e->path = strdup(path))) {
        free(e);
        return NULL;
    }
    stream_path_session(path, &e->session_id);
    e->tail = -1;
    e->ttl_s = -1;
    e->expires_at_ms = -1;
    e->used_ms = h->now_ms;
    e->next = h->buckets[b];
    h->buckets[b] = e;
    h->nhot++;
    return e;
}

void hub_hot_free(hot *e)
{
    hub_ring_clear(e);
    free(e->recs);
    free(e->path);
    free(e);
}

void hub_ring_clear(hot *e)
{
    for (size_t i = 0; i < e->rcount; i++)
        free(e->recs[(e->rhead + i) % e->rcap]);
    e->rhead = e->rcount = e->rbytes = 0;
    e->ring_start = e->ring_end = 0;
}

void hub_ring_add(stream_hub *h, hot *e, int64_t pos, int64_t end, const void *p, size_t n)
{
    if (n > h->opt.ring_bytes / 4)
        return; /* too big to be worth caching */
    if (e->rcount && pos != e->ring_end)
        return; /* not contiguous: leave the ring as it is */
    if (!e->rcap) {
        e->recs = calloc(64, sizeof(*e->recs));
        if (!e->recs)
            return;
        e->rcap = 64;
    }
    if (e->rcount == e->rcap && e->rcap < RING_MAX_RECORDS) {
        ring_rec **nr = calloc(e->rcap * 2, sizeof(*nr));
        if (!nr)
            return;
        for (size_t i = 0; i < e->rcount; i++)
            nr[i] = e->recs[(e->rhead + i) % e->rcap];
        free(e->recs);
        e->recs = nr;
        e->rhead = 0;
        e->rcap *= 2;
    }
    /* evict the oldest until the new record fits */
    while (e->rcount && (e->rcount == e->rcap || e->rbytes + n > h->opt.ring_bytes)) {
        ring_rec *old = e->recs[e->rhead];
        e->rbytes -= old->len;
        e->ring_start = old->end;
        free(old);
        e->rhead = (e->rhead + 1) % e->rcap;
        e->rcount--;
    }
    ring_rec *r = malloc(sizeof(*r) + n + 1);
    if (!r)
        return;
    r->pos = pos;
    r->end = end;
    r->len = n;
    memcpy(r->data, p, n);
    r->data[n] = '\0';
    if (!e->rcount)
        e->ring_start = pos;
    e->recs[(e->rhead + e->rcount) % e->rcap] = r;
    e->rcount++;
    e->rbytes += n;
    e->ring_end = end;
}

/* ---- metadata and tails ------------------------------------------------- */

void hub_hot_meta(stream_hub *h, hot *e, int64_t stream_id, const char *content_type, int64_t tail,
                  int64_t start_pos, int64_t fork_pos, int closed, int64_t ttl_s,
                  int64_t expires_at_ms, int64_t access_ms)
{
    if (e->stream_id != stream_id) {
        /* a different stream now lives at this path */
        hub_ring_clear(e);
        e->stream_id = stream_id;
        e->tail = -1;
        e->closed = 0;
    }
    e->gone = 0;
    e->loaded = 1;
    snprintf(e->content_type, sizeof(e->content_type), "%s", content_type);
    e->json = stream_content_type_is_json(content_type);
    if (tail > e->tail)
        e->tail = tail;
    if (start_pos > e->start_pos)
        e->start_pos = start_pos;
    e->fork_pos = fork_pos;
    e->closed |= closed;
    e->ttl_s = ttl_s;
    e->expires_at_ms = expires_at_ms;
    if (access_ms > e->access_ms)
        e->access_ms = access_ms;
    if (e->ring_start < e->start_pos)
        hub_ring_clear(e);
    hub_wake_ready(h, e);
}

void hub_hot_session_tail(stream_hub *h, hot *e, int64_t tail)
{
    e->loaded = 1;
    e->gone = 0;
    snprintf(e->content_type, sizeof(e->content_type), "application/json");
    e->json = 1;
    if (tail > e->tail) {
        e->tail = tail;
        hub_wake_ready(h, e);
    }
}

void hub_gone(stream_hub *h, const char *path)
{
    pthread_mutex_lock(&h->lock);
    hot *e = hub_hot_get(h, path, 0);
    if (e) {
        e->gone = 1;
        e->loaded = 0;
        e->stream_id = 0;
        e->tail = -1;
        e->closed = 0;
        hub_ring_clear(e);
        hub_wake_ready(h, e);
    }
    pthread_mutex_unlock(&h->lock);
    hub_fire_pending(h);
}

void stream_hub_session_notify(stream_hub *h, int64_t session_id, int64_t seq)
{
    char path[64];
    snprintf(path, sizeof(path), STREAM_SESSION_PREFIX "%lld", (long long)session_id);
    pthread_mutex_lock(&h->lock);
    hot *e = hub_hot_get(h, path, 0);
    if (e && e->loaded)
        hub_hot_session_tail(h, e, seq);
    pthread_mutex_unlock(&h->lock);
    hub_fire_pending(h);
}

/* ---- after commits and loads -------------------------------------------- */

void hub_after_commit(stream_hub *h, const stream_row *row, const stream_records *rec, int64_t from,
                      int json)
{
    pthread_mutex_lock(&h->lock);
    hot *e = hub_hot_get(h, row->path, 0);
    if (e) {
        if (e->stream_id != row->id)
            hub_ring_clear(e);
        else if (rec && e->ring_end == from && from >= row->fork_pos) {
            int64_t pos = from;
            for (size_t i = 0; i < rec->n; i++) {
                int64_t end = pos + (json ? 1 : (int64_t)rec->len[i]);
                hub_ring_add(h, e, pos, end, rec->data[i], rec->len[i]);
                pos = end;
            }
        }
        hub_hot_meta(h, e, row->id, row->content_type, row->tail, row->start_pos, row->fork_pos,
                     row->closed, row->ttl_s, row->expires_at_ms, row->access_ms);
    }
    pthread_mutex_unlock(&h->lock);
    hub_fire_pending(h);
}

typedef struct load_ctx {
    const char *path;
    int64_t now;
    int found;
    stream_row row;
} load_ctx;

static int load_tx(stream_tx *tx, void *arg)
{
    load_ctx *c = arg;
    int rc = sdb_stream_get(&c->row, tx, c->path);
    if (rc == FARM_ENOTFOUND)
        return 0;
    if (rc)
        return rc;
    c->found = !c->row.deleted && !stream_row_expired(&c->row, c->now);
    return 0;
}

/* A load reads the database without the lock and stores what it read with
 * it; an entry not loaded yet is not raised by a notification (a stream's
 * entry has no id to match until then). So a notification that arrived
 * between the read and the store may announce a commit the read did not
 * see: then the load reads again (twice at most; past that the append that
 * keeps coming will raise the entry itself). */
static int load_raced(stream_hub *h, uint64_t before, int *tries)
{
    return h->notified != before && (*tries)++ < 2;
}

static int hot_load_once(stream_hub *h, const char *path, int *again, int *tries);

int stream_hot_load(stream_hub *h, const char *path)
{
    int rc, again, tries = 0;
    do
        rc = hot_load_once(h, path, &again, &tries);
    while (again);
    return rc;
}

static int hot_load_once(stream_hub *h, const char *path, int *again, int *tries)
{
    int64_t sid = 0;
    *again = 0;
    pthread_mutex_lock(&h->lock);
    uint64_t before = h->notified;
    pthread_mutex_unlock(&h->lock);
    if (stream_path_session(path, &sid)) {
        int64_t tail = 0;
        int found = 0;
        int rc = stream_session_tail(&tail, &found, h, sid);
        if (rc)
            return rc;
        pthread_mutex_lock(&h->lock);
        hot *e = hub_hot_get(h, path, 1);
        if (e) {
            if (found)
                hub_hot_session_tail(h, e, tail);
            else
                e->gone = 1;
        }
        *again = found && load_raced(h, before, tries);
        pthread_mutex_unlock(&h->lock);
        hub_fire_pending(h);
        return found ? 0 : FARM_ENOTFOUND;
    }
    load_ctx c = {.path = path, .now = clock_wall_ms()};
    int rc = sdb_read(h->st, load_tx, &c);
    if (rc)
        return rc;
    pthread_mutex_lock(&h->lock);
    hot *e = hub_hot_get(h, path, 1);
    if (e) {
        if (c.found) {
            const stream_row *r = &c.row;
            hub_hot_meta(h, e, r->id, r->content_type, r->tail, r->start_pos, r->fork_pos,
                         r->closed, r->ttl_s, r->expires_at_ms, r->access_ms);
        } else {
            e->gone = 1;
            e->loaded = 0;
        }
    }
    *again = c.found && load_raced(h, before, tries);
    pthread_mutex_unlock(&h->lock);
    hub_fire_pending(h);
    stream_row_free(&c.row);
    return c.found ? 0 : FARM_ENOTFOUND;
}
