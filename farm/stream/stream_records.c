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

static int records_add(stream_records *r, char *p, size_t n)
{
    char **d = realloc(r->data, (r->n + 1) * sizeof(*d));
    if (!d)
        return stream_oom();
    r->data = d;
    size_t *l = realloc(r->len, (r->n + 1) * sizeof(*l));
    if (!l)
        return stream_oom();
    r->len = l;
    r->data[r->n] = p;
    r->len[r->n] = n;
    r->n++;
    return 0;
}

static int json_msg_add(stream_records *r, json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s)
        return stream_oom();
    int rc = records_add(r, s, strlen(s));
    if (rc)
        free(s);
    return rc;
}

/* The common case without jansson (stream_json.c): 1 when r holds the
 * messages, 0 when the body is for jansson to judge, or FARM_ENOMEM. */
#define QUICK_MAX_MESSAGES 256

static int records_quick(stream_records *r, const void *body, size_t len)
{
    size_t spans[QUICK_MAX_MESSAGES + 1], n, clen;
    char *out = malloc(len + 1);
    if (!out)
        return stream_oom();
    if (!stream_json_compact(out, &clen, spans, QUICK_MAX_MESSAGES, &n, body, len)) {
        free(out);
        return 0;
    }
    r->data = malloc(n * sizeof(*r->data));
    r->len = malloc(n * sizeof(*r->len));
    if (!r->data || !r->len) {
        free(out);
        free(r->data);
        free(r->len);
        r->data = NULL;
        r->len = NULL;
        return stream_oom();
    }
    out[clen] = '\0';
    for (size_t i = 0; i < n; i++) {
        r->data[i] = out + spans[i];
        r->len[i] = spans[i + 1] - 1 - spans[i];
        out[spans[i + 1] - 1] = '\0'; /* the separator after it */
    }
    r->n = n;
    r->block = out;
    return 1;
}

/* Split body for a stream of content type ct. A malformed body is not an
 * error here: r->bad says so, and the caller answers 400 at the point the
 * protocol puts that check. put: an empty JSON array is allowed. */
int stream_records_prepare(stream_records *r, const char *ct, const void *body, size_t len, int put)
{
    int rc;
    memset(r, 0, sizeof(*r));
    if (!len)
        return 0;
    if (!stream_content_type_is_json(ct)) {
        r->owned = 0;
        return records_add(r, (char *)body, len);
    }
    if ((rc = records_quick(r, body, len)) != 0)
        return rc < 0 ? rc : 0;
    r->owned = 1;
    json_error_t jerr;
    json_t *v = json_loadb(body, len, JSON_DECODE_ANY, &jerr);
    if (!v) {
        r->bad = 1;
        snprintf(r->why, sizeof(r->why), "invalid JSON: %s", jerr.text);
        return 0;
    }
    if (json_is_array(v)) {
        if (!json_array_size(v) && !put) {
            r->bad = 1;
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
