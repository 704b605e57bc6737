/*
 * pipeline_exec.c - one command of a run in the sandbox (setup, agent,
 * tests), with its output going into the session log as it comes.
 *
 * Output is split into lines and written as "output" events in batches (at
 * most PL_BATCH_LINES per store write, and at least every PL_BATCH_MS while
 * lines wait), so a chatty agent costs a few commits a second, not one per
 * line. Each step logs at most PL_STEP_LOG_MAX bytes / PL_STEP_LINES_MAX
 * lines; what comes after is counted and reported by one "output_dropped"
 * event. The last PL_TAIL_MAX bytes are kept for failure reports and for the
 * next fix round's prompt.
 *
 * For the agent step of a preset whose output format is known (claude:
 * "claude-stream-json", codex: "codex-exec-json", opencode: "opencode-run-json"),
 * each whole stdout line
 * (up to TRANSCRIPT_LINE_MAX, not cut at PL_LINE_MAX) also goes through the
 * transcript parser (transcript.h), and the events it gives (agent_message,
 * tool_call, tool_result, file_change, command, error; their body plus
 * "step" and "round") go into the same batches right after their line. At
 * most PL_TRANSCRIPT_EVENTS_MAX are logged per agent call, apart from the
 * output cap; one "transcript_dropped" event counts the rest.
 *
 * A watcher thread stops the sandbox when the run is cancelled (the
 * scheduler's flag, or a cancel / issue_closed event in the log) or its
 * deadline passes, and flushes lines that would otherwise wait for the next
 * chunk of output.
 */
#include "pipeline_internal.h"

#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/handle/handle.h"
#include "farm/run/agent.h"
#include "farm/run/transcript.h"
#include "farm/store/store_run.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WATCH_TICK_MS   50
#define CANCEL_CHECK_MS 500

#define PL_TRANSCRIPT_EVENTS_MAX 5000 /* transcript events logged per agent call */

const char *pl_tail(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return s;
    const char *p = s + n - max;
    while (*p && ((unsigned char)*p & 0xC0) == 0x80)
        p++;
    return p;
}

int pl_cancel_requested(pl_run *r)
{
    static const char *const kinds[] = {"cancel", "cancel_requested", "issue_closed", NULL};
    store_event *e = NULL;

    if (r->cancelled)
        return 1;
    /* the log says whether people asked for it; the scheduler's flag alone
     * (lease lost, shutdown) leaves r->cancelled at 0: the job goes on later */
    if (store_event_last_kind(&e, r->f->store, r->s->id, kinds, r->start_seq) == 0 && e) {
        r->cancelled = 1;
        store_event_list_free(e, 1);
        return 1;
    }
    return r->ctl && r->ctl->cancel;
}

/* ---- the output log ------------------------------------------------------ */

typedef struct outlog {
    pl_run *r;
    const char *step;
    int round;
    pthread_mutex_t mu;            /* guards everything below but the flush */
    pthread_mutex_t flush_mu;      /* one flush at a time, in order */
    json_t *pending;               /* [{"stream", "line"}] waiting for the store */
    int64_t last_flush_ms;         /* clock_mono_ms() */
    char line[2][PL_LINE_MAX + 1]; /* the partial line of each stream */
    size_t len[2];
    int cut[2]; /* the partial line grew past PL_LINE_MAX */
    uint64_t logged_bytes, logged_lines, dropped_bytes, dropped_lines;
    buf tail;
    double cost;                /* the last cost the command reported (pl_cost_line()) */
    const char *const *secrets; /* pl_exec_opts.secrets */
    /* the agent's transcript (tp NULL: none for this command) */
    transcript_parser *tp;
    buf tline;     /* the whole partial stdout line, up to TRANSCRIPT_LINE_MAX */
    int tline_big; /* it grew past that: skipped */
    uint64_t tevents, tdropped, tbig;
} outlog;

struct batch_write {
    int64_t session_id;
    const char *step;
    int round;
    json_t *lines;
    int64_t seq;
};

static int batch_write_fn(store_tx *tx, void *arg)
{
    struct batch_write *b = arg;
    size_t i;
    json_t *l;
    int rc = 0;

    json_array_foreach(b->lines, i, l)
    {
        const char *kind = json_string_value(json_object_get(l, "kind"));
        json_t *body;
        if (kind) { /* a transcript event, its body complete */
            body = json_object_get(l, "body");
            json_incref(body);
        } else {
            body = json_pack("{s:s,s:O,s:O}", "step", b->step, "stream",
                             json_object_get(l, "stream"), "line", json_object_get(l, "line"));
            if (body && b->round > 0)
                json_object_set_new(body, "round", json_integer(b->round));
        }
        if ((rc = pl_event_tx(&b->seq, tx, b->session_id, kind ? kind : "output", body)))
            return rc;
    }
    return 0;
}

static void outlog_flush(outlog *o)
{
    pthread_mutex_lock(&o->flush_mu);
    pthread_mutex_lock(&o->mu);
    json_t *lines = o->pending;
    o->pending = json_array();
    o->last_flush_ms = clock_mono_ms();
    pthread_mutex_unlock(&o->mu);
    if (lines && json_array_size(lines) > 0) {
        struct batch_write b = {o->r->s->id, o->step, o->round, lines, 0};
        if (store_write(o->r->f->store, batch_write_fn, &b) == 0)
            stream_hub_session_notify(o->r->f->streams, o->r->s->id, b.seq);
        else
            log_warn("output lines not logged", "step", o->step, "error", farm_error_last());
    }
    json_decref(lines);
    pthread_mutex_unlock(&o->flush_mu);
}

/* Keep the last PL_TAIL_MAX bytes. */
static void tail_add(buf *t, const char *data, size_t n)
{
    if (n >= PL_TAIL_MAX) {
        buf_reset(t);
        buf_append(t, data + n - PL_TAIL_MAX, PL_TAIL_MAX);
        return;
    }
    if (t->len + n > PL_TAIL_MAX) {
        size_t drop = t->len + n - PL_TAIL_MAX;
        memmove(t->data, t->data + drop, t->len - drop);
        t->len -= drop;
        t->data[t->len] = '\0';
    }
    buf_append(t, data, n);
}

double pl_cost_line(const char *line, size_t n)
{
    if (n > 0 && line[0] == '{' && memmem(line, n, "\"total_cost_usd\"", 16)) {
        json_t *j = json_loadb(line, n, 0, NULL);
        json_t *cost = json_object_get(j, "total_cost_usd");
        const char *type = json_string_value(json_object_get(j, "type"));
        double v =
            type && !strcmp(type, "result") && json_is_number(cost) ? json_number_value(cost) : -1;
        json_decref(j);
        return v >= 0 && v < 1e6 ? v : -1;
    }
    const char *at = memmem(line, n, "Cost: $", 7);
    if (at) {
        char text[160];
        size_t len = n - (size_t)(at - line);
        double msg, session;
        snprintf(text, sizeof(text), "%.*s", (int)(len < sizeof(text) ? len : sizeof(text) - 1),
                 at);
        if (sscanf(text, "Cost: $%lf message, $%lf session", &msg, &session) == 2 && session >= 0 &&
            session < 1e6)
            return session;
    }
    return -1;
}

#define SECRET_MIN 4 /* shorter values are not searched for (they would mask anything) */

/* Each value of secrets ("NAME=value") in s[0..n) overwritten with '*'. */
static void redact(char *s, size_t n, const char *const *secrets)
{
    for (size_t i = 0; secrets && secrets[i]; i++) {
        const char *v = strchr(secrets[i], '=');
        size_t vl = v ? strlen(++v) : 0;
        if (vl < SECRET_MIN)
            continue;
        for (char *at = memmem(s, n, v, vl); at; at = memmem(at, n - (size_t)(at - s), v, vl))
            memset(at, '*', vl);
    }
}

/* A complete line of stream i: into the pending batch, or counted as dropped.
 * Called with o->mu held; returns 1 when the batch is full. */
static int line_done(outlog *o, int i)
{
    size_t n = o->len[i];
    o->line[i][n] = '\0';
    o->len[i] = 0;
    redact(o->line[i], n, o->secrets);
    double cost = pl_cost_line(o->line[i], n);
    if (cost >= 0)
        o->cost = cost;
    if (o->logged_bytes + n > PL_STEP_LOG_MAX || o->logged_lines >= PL_STEP_LINES_MAX) {
        o->dropped_bytes += n;
        o->dropped_lines++;
        o->cut[i] = 0;
        return 0;
    }
    /* an invalid UTF-8 line would not be JSON text: keep its valid prefix */
    json_t *s = json_stringn(o->line[i], n);
    while (!s && n > 0)
        s = json_stringn(o->line[i], --n);
    if (s && o->cut[i]) {
        char *cut = NULL;
        if (asprintf(&cut, "%s [line cut at %d bytes]", json_string_value(s), PL_LINE_MAX) > 0) {
            json_decref(s);
            s = json_string(cut);
            free(cut);
        }
    }
    o->cut[i] = 0;
    if (!s)
        return 0;
    json_array_append_new(o->pending,
                          json_pack("{s:s,s:o}", "stream", i ? "stderr" : "stdout", "line", s));
    o->logged_bytes += n;
    o->logged_lines++;
    return json_array_size(o->pending) >= PL_BATCH_LINES;
}

/* One event of the transcript parser: into the pending batch after its
 * line, or counted once the agent call's cap is reached. */
static int transcript_emit(const char *kind, json_t *body, void *arg)
{
    outlog *o = arg;
    if (o->tevents >= PL_TRANSCRIPT_EVENTS_MAX) {
        o->tdropped++;
        return 0;
    }
    json_t *b = json_deep_copy(body);
    if (!b)
        return FARM_ENOMEM;
    json_object_set_new(b, "step", json_string(o->step));
    if (o->round > 0)
        json_object_set_new(b, "round", json_integer(o->round));
    json_array_append_new(o->pending, json_pack("{s:s,s:o}", "kind", kind, "body", b));
    o->tevents++;
    return 0;
}

/* More of the partial stdout line, for the transcript. */
static void tline_add(outlog *o, const char *data, size_t n)
{
    if (!o->tp || o->tline_big || n == 0)
        return;
    if (buf_append(&o->tline, data, n) != 0) {
        o->tline_big = 1;
        buf_free(&o->tline);
    }
}

/* A complete stdout line through the transcript parser. Called with o->mu
 * held; returns 1 when the batch is full. */
static int tline_done(outlog *o)
{
    if (!o->tp)
        return 0;
    if (o->tline_big)
        o->tbig++;
    else if (o->tline.len > 0)
        transcript_line(o->tp, o->tline.data, o->tline.len, transcript_emit, o);
    buf_reset(&o->tline);
    o->tline_big = 0;
    return json_array_size(o->pending) >= PL_BATCH_LINES;
}

static void on_output(void *ctx, sandbox_stream which, const char *data, size_t n)
{
    outlog *o = ctx;
    int i = which == SANDBOX_STDERR ? 1 : 0, full = 0;
    size_t seg = 0; /* where the part of the stdout line not yet in tline starts */

    pthread_mutex_lock(&o->mu);
    tail_add(&o->tail, data, n);
    for (size_t k = 0; k < n; k++) {
        char c = data[k];
        if (c == '\n') {
            full |= line_done(o, i);
            if (i == 0) {
                tline_add(o, data + seg, k - seg);
                seg = k + 1;
                full |= tline_done(o);
            }
            continue;
        }
        if (c == '\r')
            continue;
        if (o->len[i] < PL_LINE_MAX)
            o->line[i][o->len[i]++] = c;
        else
            o->cut[i] = 1;
    }
    if (i == 0 && seg < n)
        tline_add(o, data + seg, n - seg);
    if (json_array_size(o->pending) > 0 && clock_mono_ms() - o->last_flush_ms >= PL_BATCH_MS)
        full = 1;
    pthread_mutex_unlock(&o->mu);
    if (full)
        outlog_flush(o);
}

/* ---- the watcher ---------------------------------------------------------- */

typedef struct watcher {
    pl_run *r;
    outlog *log;
    sandbox *sb;
    int64_t deadline_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int cancelled;
    int deadline_hit;
} watcher;

static void *watch(void *arg)
{
    watcher *w = arg;
    int64_t last_check = clock_mono_ms();

    pthread_mutex_lock(&w->mu);
    while (!w->done) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += WATCH_TICK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        if (w->done)
            break;
        pthread_mutex_unlock(&w->mu);

        int stop = 0;
        int64_t now = clock_mono_ms();
        if (w->r->ctl && w->r->ctl->cancel) {
            stop = w->cancelled = 1;
        } else if (now - last_check >= CANCEL_CHECK_MS) {
            last_check = now;
            if (pl_cancel_requested(w->r))
                stop = w->cancelled = 1;
        }
        if (!stop && w->deadline_ms > 0 && clock_wall_ms() >= w->deadline_ms)
            stop = w->deadline_hit = 1;
        if (stop)
            sandbox_stop(w->sb);

        pthread_mutex_lock(&w->log->mu);
        int due =
            json_array_size(w->log->pending) > 0 && now - w->log->last_flush_ms >= PL_BATCH_MS;
        pthread_mutex_unlock(&w->log->mu);
        if (due)
            outlog_flush(w->log);
        pthread_mutex_lock(&w->mu);
        if (stop)
            break;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

void pl_exec_result_free(pl_exec_result *x)
{
    if (x) {
        free(x->tail);
        x->tail = NULL;
    }
}

/* Wait for the sandbox with a watcher thread beside it (cancel requests,
 * the deadline, output that waits to be flushed). w is set up and torn down
 * here; w->cancelled and w->deadline_hit say afterwards what it did. */
static int wait_watched(sandbox_result *sr, watcher *w, pl_run *r, outlog *log, sandbox *sb,
                        int64_t deadline_ms)
{
    pthread_t th;
    int rc;

    memset(w, 0, sizeof(*w));
    w->r = r;
    w->log = log;
    w->sb = sb;
    w->deadline_ms = deadline_ms;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&th, NULL, watch, w) != 0) {
        sandbox_stop(sb);
        sandbox_wait(sb, sr);
        farm_error_set("pipeline: cannot start the watcher thread");
        rc = FARM_EIO;
    } else {
        rc = sandbox_wait(sb, sr);
        pthread_mutex_lock(&w->mu);
        w->done = 1;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(th, NULL);
    }
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    return rc;
}

/* The output format of the agent step's preset that the transcript parser
 * reads, or NULL (other steps, the stand-in, aider, a command). */
static const char *transcript_format(pl_run *r, const pl_exec_opts *o)
{
    if (!o->step || strcmp(o->step, "agent") != 0 || !r->cfg)
        return NULL;
    const char *preset = agent_preset_resolve(r->cfg);
    if (!strcmp(preset, "claude"))
        return "claude-stream-json";
    if (!strcmp(preset, "codex"))
        return "codex-exec-json";
    if (!strcmp(preset, "opencode"))
        return "opencode-run-json";
    return NULL;
}

static void outlog_init(outlog *log, pl_run *r, const pl_exec_opts *o)
{
    memset(log, 0, sizeof(*log));
    log->r = r;
    log->step = o->step;
    log->round = o->round;
    pthread_mutex_init(&log->mu, NULL);
    pthread_mutex_init(&log->flush_mu, NULL);
    log->pending = json_array();
    log->secrets = o->secrets;
    log->last_flush_ms = clock_mono_ms();
    buf_init(&log->tail, PL_TAIL_MAX);
    buf_init(&log->tline, TRANSCRIPT_LINE_MAX);
    const char *format = transcript_format(r, o);
    if (format && !(log->tp = transcript_new(format)))
        log_warn("no transcript of the agent's output", "format", format, "error",
                 farm_error_last());
}

/* After the command: its last partial lines, what is left of the batch, and
 * one "output_dropped" event for what went over the step's cap. */
static void outlog_finish(outlog *log, pl_run *r, const pl_exec_opts *o)
{
    pthread_mutex_lock(&log->mu);
    for (int i = 0; i < 2; i++)
        if (log->len[i] > 0)
            line_done(log, i);
    if (log->tline.len > 0 || log->tline_big)
        tline_done(log);
    pthread_mutex_unlock(&log->mu);
    outlog_flush(log);
    if (log->dropped_lines > 0)
        pl_event(r, "output_dropped",
                 json_pack("{s:s,s:i,s:I,s:I}", "step", o->step, "round", o->round, "lines",
                           (json_int_t)log->dropped_lines, "bytes",
                           (json_int_t)log->dropped_bytes));
    if (log->tdropped > 0 || log->tbig > 0)
        pl_event(r, "transcript_dropped",
                 json_pack("{s:s,s:i,s:I,s:I,s:i}", "step", o->step, "round", o->round, "events",
                           (json_int_t)log->tdropped, "lines_too_long", (json_int_t)log->tbig,
                           "max_events", PL_TRANSCRIPT_EVENTS_MAX));
}

static void outlog_destroy(outlog *log)
{
    json_decref(log->pending);
    buf_free(&log->tail);
    buf_free(&log->tline);
    transcript_free(log->tp);
    pthread_mutex_destroy(&log->mu);
    pthread_mutex_destroy(&log->flush_mu);
}

/* The sandbox's options for the command: the run's worktree and limits, the
 * network policy, and a timeout no later than the deadline. */
static void sandbox_opts_fill(sandbox_opts *so, pl_run *r, const pl_exec_opts *o, outlog *log,
                              pl_egress_tap *tap)
{
    const config *cfg = r->cfg;

    so->argv = o->argv;
    so->env = o->env;
    so->dir = r->wt_path;
    so->network = o->network;
    so->on_output = on_output;
    so->output_ctx = log;
    so->memory_mb = cfg->sandbox.memory_mb;
    so->pids = cfg->sandbox.pids;
    so->disk_mb = cfg->sandbox.disk_mb;
    so->unsafe_none = !r->sandboxed;
    if (r->sandbox_uid) {
        so->host_uid = r->sandbox_uid;
        so->host_gid = r->sandbox_uid;
    }
    if (so->unsafe_none)
        so->network = SANDBOX_NET_HOST;
    if (o->network == SANDBOX_NET_ALLOWLIST) {
        so->allow = o->allow ? o->allow : (const char *const *)cfg->sandbox.allow_hosts;
        so->on_proxy = pl_egress_on_proxy; /* each decision into the session log */
        so->proxy_ctx = tap;
    }
    so->timeout_ms = (int64_t)cfg->sandbox.wall_timeout_s * 1000;
    if (o->deadline_ms > 0) {
        int64_t left = o->deadline_ms - clock_wall_ms();
        if (left < 1)
            left = 1;
        if (so->timeout_ms <= 0 || left < so->timeout_ms)
            so->timeout_ms = left;
    }
    so->binds = o->binds;
    so->nbinds = o->nbinds;
    so->stdin_path = o->stdin_path;
    so->root_dir = r->image_root;
}

/* ---- prepared sandboxes ----------------------------------------------------- */

/* A sandbox spawned ahead for one command: the options it was made with
 * (copied: the caller's go out of scope) and the output log it writes to. */
struct pl_prepared {
    sandbox *sb;
    sandbox_opts so;
    outlog log;
    char *sig; /* opts_sig() of the options it was made for */
    char *step;
    pl_egress_tap tap; /* the proxy's decisions go to the run's log under this step */
    sandbox_bind binds[SANDBOX_MAX_BINDS];
    char *strs[2 * SANDBOX_MAX_BINDS + 1]; /* the binds' paths and the stdin path */
};

/* What a command's sandbox is made of, as text: a prepared sandbox serves
 * a command whose options give the same. NULL when out of memory. */
static char *opts_sig(const pl_exec_opts *o)
{
    buf b = BUF_INIT(1u << 20);
    buf_printf(&b, "%s|%d|%d|%p|%s|%zu", o->step ? o->step : "", o->round, (int)o->network,
               (const void *)o->allow, o->stdin_path ? o->stdin_path : "-", o->nbinds);
    for (size_t i = 0; i < o->nbinds; i++)
        buf_printf(&b, "|%s>%s:%d:%d", o->binds[i].src, o->binds[i].dest ? o->binds[i].dest : "",
                   o->binds[i].writable, o->binds[i].relay_port);
    char *s = buf_detach(&b);
    buf_free(&b);
    return s;
}

static void prepared_free(struct pl_prepared *pp)
{
    if (!pp)
        return;
    sandbox_free(pp->sb);
    outlog_destroy(&pp->log);
    for (size_t i = 0; i < sizeof(pp->strs) / sizeof(pp->strs[0]); i++)
        free(pp->strs[i]);
    free(pp->sig);
    free(pp->step);
    free(pp);
}

void pl_exec_prepared_drop(pl_run *r)
{
    for (size_t i = 0; i < PL_PREPARED_MAX; i++) {
        prepared_free(r->prepared[i]);
        r->prepared[i] = NULL;
    }
}

/* A free slot for a prepared sandbox: the oldest one goes when none is. */
static struct pl_prepared **prepared_slot(pl_run *r)
{
    for (size_t i = 0; i < PL_PREPARED_MAX; i++)
        if (!r->prepared[i])
            return &r->prepared[i];
    prepared_free(r->prepared[0]);
    memmove(&r->prepared[0], &r->prepared[1], (PL_PREPARED_MAX - 1) * sizeof(r->prepared[0]));
    r->prepared[PL_PREPARED_MAX - 1] = NULL;
    return &r->prepared[PL_PREPARED_MAX - 1];
}

void pl_exec_prepare(pl_run *r, const pl_exec_opts *o)
{
    struct pl_prepared *pp;
    pl_exec_opts c = *o;
    size_t ns = 0;
    int oom = 0;

    if (!r->sandboxed || o->nbinds > SANDBOX_MAX_BINDS || !(pp = calloc(1, sizeof(*pp))))
        return;
    for (size_t i = 0; i < o->nbinds; i++) {
        pp->binds[i] = o->binds[i];
        if (!(pp->binds[i].src = pp->strs[ns++] = strdup(o->binds[i].src)))
            oom = 1;
        if (o->binds[i].dest && !(pp->binds[i].dest = pp->strs[ns++] = strdup(o->binds[i].dest)))
            oom = 1;
    }
    if (o->stdin_path && !(c.stdin_path = pp->strs[ns++] = strdup(o->stdin_path)))
        oom = 1;
    c.binds = pp->binds;
    c.step = pp->step = o->step ? strdup(o->step) : NULL;
    c.argv = NULL;
    c.env = NULL;
    pp->sig = opts_sig(o);
    if (oom || !pp->sig || (o->step && !pp->step)) {
        free(pp->sig);
        pp->sig = NULL;
        for (size_t i = 0; i < ns; i++)
            free(pp->strs[i]);
        free(pp->step);
        free(pp);
        return;
    }
    outlog_init(&pp->log, r, &c);
    pp->so = (sandbox_opts)SANDBOX_OPTS_INIT;
    pp->tap = (pl_egress_tap){r, pp->step, o->round};
    sandbox_opts_fill(&pp->so, r, &c, &pp->log, &pp->tap);
    pp->so.argv = NULL;
    pp->so.env = NULL;
    if (sandbox_prepare(&pp->sb, &pp->so) < 0) {
        log_warn("sandbox not prepared ahead; the command will start cold", "step",
                 o->step ? o->step : "", "error", farm_error_last());
        prepared_free(pp);
        return;
    }
    *prepared_slot(r) = pp;
}

/* The prepared sandbox for these options, launched with their command, or
 * NULL: none matches, or it did not take the command (it is dropped). */
static struct pl_prepared *prepared_take(pl_run *r, const pl_exec_opts *o)
{
    struct pl_prepared *pp = NULL;
    char *sig = opts_sig(o);

    for (size_t i = 0; sig && !pp && i < PL_PREPARED_MAX; i++) {
        if (r->prepared[i] && !strcmp(sig, r->prepared[i]->sig)) {
            pp = r->prepared[i];
            r->prepared[i] = NULL;
        }
    }
    free(sig);
    if (!pp)
        return NULL;
    /* the command's log is the one the prepared sandbox writes to */
    pp->log.secrets = o->secrets;
    if (sandbox_launch(pp->sb, o->argv, o->env) < 0) {
        log_warn("prepared sandbox not launched; starting cold", "step", o->step ? o->step : "",
                 "error", farm_error_last());
        prepared_free(pp);
        return NULL;
    }
    return pp;
}

int pl_exec(pl_exec_result *out, pl_run *r, const pl_exec_opts *o)
{
    sandbox_opts so = SANDBOX_OPTS_INIT;
    outlog cold_log, *log = &cold_log;
    struct pl_prepared *pp = NULL;
    watcher w;
    sandbox *sb = NULL;
    pl_egress_tap tap = {r, o->step, o->round};
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (pl_cancel_requested(r)) {
        pl_exec_prepared_drop(r);
        return FARM_ECANCELLED;
    }
    if ((pp = prepared_take(r, o))) {
        log = &pp->log;
        sb = pp->sb;
        out->prepared = 1;
    } else {
        outlog_init(&cold_log, r, o);
        sandbox_opts_fill(&so, r, o, &cold_log, &tap);
        rc = sandbox_start(&sb, &so);
    }
    if (rc >= 0 && (rc = wait_watched(&out->sr, &w, r, log, sb, o->deadline_ms)) >= 0) {
        outlog_finish(log, r, o);
        out->cancelled = w.cancelled;
        out->cost_usd = log->cost;
        out->deadline = w.deadline_hit || (out->sr.timed_out && o->deadline_ms > 0 &&
                                           clock_wall_ms() >= o->deadline_ms - 1000);
        out->tail = buf_detach(&log->tail);
        if (!out->tail)
            out->tail = strdup("");
        if (!out->tail) {
            farm_error_set("pipeline: out of memory");
            rc = FARM_ENOMEM;
        } else {
            redact(out->tail, strlen(out->tail), o->secrets);
        }
    }
    int tapped = pp ? pp->so.on_proxy != NULL : so.on_proxy != NULL;
    if (pp) {
        prepared_free(pp); /* the sandbox and its log; the proxy is gone with it */
    } else {
        sandbox_free(sb); /* the proxy is gone: no callback after this */
        outlog_destroy(&cold_log);
    }
    if (tapped)
        pl_egress_step_end(r, o->step, o->round);
    if (rc < 0)
        return rc;
    return out->cancelled ? FARM_ECANCELLED : 0;
}
