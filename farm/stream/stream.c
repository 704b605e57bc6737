/*
 * stream.c - what every operation of the stream engine shares: a result as
 * the protocol states it (status, the reason for a 4xx, the stream's
 * headers), the checks on a stream's row, and the session logs' entry
 * points (their tail, and appending an event).
 *
 * The operations have a file each: stream_create.c, stream_append.c,
 * stream_read.c, stream_trim.c. Every decision that must be atomic happens
 * inside one store write; after a commit the hot entry learns the new tail
 * (stream_cache.c) and live readers wake (stream_live.c).
 */
#include "stream.h"
#include "stream_internal.h"
#include "farm/store/store_stream.h"
#include "farm/store/store.h"

#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void stream_result_init(stream_result *r)
{
    memset(r, 0, sizeof(*r));
    r->ttl_s = -1;
    r->expires_at_ms = -1;
    r->producer_epoch = -1;
    r->producer_seq = -1;
    r->expected_seq = -1;
    r->received_seq = -1;
}

void stream_fail(stream_result *r, int status, const char *fmt, ...)
{
    va_list ap;
    r->status = status;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof(r->error), fmt, ap);
    va_end(ap);
}

void stream_result_row(stream_result *r, const stream_row *row)
{
    size_t n = strlen(row->content_type);
    if (n >= sizeof(r->content_type))
        n = sizeof(r->content_type) - 1;
    memcpy(r->content_type, row->content_type, n);
    r->content_type[n] = '\0';
    r->json = stream_content_type_is_json(row->content_type);
    r->ttl_s = row->ttl_s;
    r->expires_at_ms = row->expires_at_ms;
    r->closed = row->closed;
    r->stream_id = row->id;
    r->next_pos = (uint64_t)row->tail;
    stream_offset_format(r->next_offset, (uint64_t)row->tail);
}

void stream_result_session(stream_result *out, int64_t tail)
{
    snprintf(out->content_type, sizeof(out->content_type), "application/json");
    out->json = 1;
    out->next_pos = (uint64_t)tail;
    stream_offset_format(out->next_offset, (uint64_t)tail);
}

int stream_row_expired(const stream_row *r, int64_t now)
{
    return (r->ttl_s >= 0 && r->access_ms + r->ttl_s * 1000 <= now) ||
           (r->expires_at_ms >= 0 && r->expires_at_ms <= now);
}

int stream_oom(void)
{
    farm_error_set("out of memory");
    return FARM_ENOMEM;
}

/* ---- session logs ------------------------------------------------------- */

typedef struct session_ctx {
    int64_t session_id;
    int64_t tail;
    int found;
} session_ctx;

static int session_tail_tx(stream_tx *tx, void *arg)
{
    session_ctx *c = arg;
    int rc = sdb_session_tail(&c->tail, tx, c->session_id);
    if (rc == FARM_ENOTFOUND)
        return 0;
    c->found = !rc;
    return rc;
}

int stream_session_tail(int64_t *tail, int *found, stream_hub *h, int64_t session_id)
{
    session_ctx s = {.session_id = session_id};
    int rc = sdb_read(h->st, session_tail_tx, &s);
    if (rc)
        return rc;
    *found = s.found;
    if (s.found)
        *tail = s.tail;
    return 0;
}

int stream_session_append(int64_t *out_seq, stream_hub *h, int64_t session_id, const char *kind,
                          const char *actor, const char *body_json)
{
    int64_t seq = 0;
    int rc = store_event_append(&seq, h->st, session_id, kind, actor, body_json);
    if (rc)
        return rc;
    stream_hub_session_notify(h, session_id, seq);
    if (out_seq)
        *out_seq = seq;
    return 0;
}
