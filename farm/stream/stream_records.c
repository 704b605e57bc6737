/*
 * stream_records.c - a create's or an append's body split the way the
 * stream stores it: one record per append for bytes, one per message for
 * JSON (a top-level array is several messages, each stored compact).
 *
 * JSON bodies in the common subset go through stream_json.c in one pass;
 * anything else goes through jansson, which stays the judge of what is
 * valid, and the stored messages are the same either way.
 */
#include "stream.h"
#include "stream_internal.h"
#include "farm/store/store_stream.h"

#include "base/error.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void stream_records_free(stream_records *r)
{
    if (r->owned)
        for (size_t i = 0; i < r->n; i++)
            free(r->data[i]);
    free(r->block);
    free(r->data);
    free(r->len);
    memset(r, 0, sizeof(*r));
}

/* Room for n records (the count is known before the split). */
static int records_reserve(stream_records *r, size_t n)
{
    if (!n)
        n = 1;
    r->data = malloc(n * sizeof(*r->data));
    r->len = malloc(n * sizeof(*r->len));
    if (!r->data || !r->len) {
        free(r->data);
        free(r->len);
        r->data = NULL;
        r->len = NULL;
        return stream_oom();
    }
    return 0;
}

static int json_msg_add(stream_records *r, json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s)
        return stream_oom();
    r->data[r->n] = s;
    r->len[r->n] = strlen(s);
    r->n++;
    return 0;
}

/* The common case without jansson (stream_json.c), for a body of n
 * messages: 1 when r holds them, 0 when the body is for jansson to judge,
 * or FARM_ENOMEM. The messages stay in one block the size of the body. */
static int records_quick(stream_records *r, const void *body, size_t len, size_t n)
{
    size_t *spans = malloc((n + 1) * sizeof(*spans)), got, clen;
    char *out = spans ? malloc(len + 1) : NULL;
    if (!out) {
        free(spans);
        return stream_oom();
    }
    if (!stream_json_compact(out, &clen, spans, n, &got, body, len) || got != n) {
        free(spans);
        free(out);
        return 0;
    }
    if (records_reserve(r, n)) {
        free(spans);
        free(out);
        return FARM_ENOMEM;
    }
    out[clen] = '\0';
    for (size_t i = 0; i < n; i++) {
        r->data[i] = out + spans[i];
        r->len[i] = spans[i + 1] - 1 - spans[i];
        out[spans[i + 1] - 1] = '\0'; /* the separator after it */
    }
    free(spans);
    r->n = n;
    r->block = out;
    return 1;
}

/* Split body for a stream of content type ct. A malformed body is not an
 * error here: r->bad says so (400, or 413 past STREAM_MAX_MESSAGES), and
 * the caller answers at the point the protocol puts that check. put: an
 * empty JSON array is allowed. What the split holds is the size of the body
 * (the quick path) or of the messages jansson wrote: a body of too many
 * messages is counted and refused before anything is built for them. */
int stream_records_prepare(stream_records *r, const char *ct, const void *body, size_t len, int put)
{
    int rc;
    memset(r, 0, sizeof(*r));
    if (!len)
        return 0;
    if (!stream_content_type_is_json(ct)) {
        if ((rc = records_reserve(r, 1)))
            return rc;
        r->data[0] = (char *)body;
        r->len[0] = len;
        r->n = 1;
        return 0;
    }
    size_t n = stream_json_count(body, len, STREAM_MAX_MESSAGES);
    if (n > STREAM_MAX_MESSAGES) {
        r->bad = 413;
        snprintf(r->why, sizeof(r->why),
                 "more than %u JSON messages in one append: send them in several",
                 STREAM_MAX_MESSAGES);
        return 0;
    }
    if (n && (rc = records_quick(r, body, len, n)) != 0)
        return rc < 0 ? rc : 0;
    r->owned = 1;
    json_error_t jerr;
    json_t *v = json_loadb(body, len, JSON_DECODE_ANY, &jerr);
    if (!v) {
        r->bad = 400;
        snprintf(r->why, sizeof(r->why), "invalid JSON: %s", jerr.text);
        return 0;
    }
    size_t want = json_is_array(v) ? json_array_size(v) : 1;
    if (want > STREAM_MAX_MESSAGES) { /* the count above was fooled */
        json_decref(v);
        r->bad = 413;
        snprintf(r->why, sizeof(r->why),
                 "more than %u JSON messages in one append: send them in several",
                 STREAM_MAX_MESSAGES);
        return 0;
    }
    if ((rc = records_reserve(r, want))) {
        json_decref(v);
        return rc;
    }
    if (json_is_array(v)) {
        if (!json_array_size(v) && !put) {
            r->bad = 400;
            snprintf(r->why, sizeof(r->why), "empty JSON array");
        }
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m)
        {
            if ((rc = json_msg_add(r, m)))
                break;
        }
    } else {
        rc = json_msg_add(r, v);
    }
    json_decref(v);
    return rc;
}

int stream_records_write(stream_tx *tx, stream_row *row, const stream_records *rec, int json)
{
    for (size_t i = 0; i < rec->n; i++) {
        int64_t end = row->tail + (json ? 1 : (int64_t)rec->len[i]);
        int rc = sdb_data_insert(tx, row->id, row->tail, end, rec->data[i], rec->len[i]);
        if (rc)
            return rc;
        row->tail = end;
    }
    return 0;
}
