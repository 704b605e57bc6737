/*
 * cmd_logs.c - `farm logs [-f] ID`: a session's log from a running farm, and
 * with -f followed live; `farm say ID TEXT`: a message into the session.
 *
 * The log is the durable stream /v1/stream/sessions/ID. Following uses
 * long-poll reads through the one HTTP client (base/http.h), each from the
 * offset the previous one ended at, so a dropped connection or a restarted
 * farm costs nothing: the next read resumes where the last left off, and no
 * event is shown twice or skipped. A status line (state, step, elapsed time)
 * is kept on stderr when it is a terminal.
 *
 * The agent's transcript (agent_message, tool_call, tool_result,
 * file_change, command, error: farm/run/transcript.h) is printed in words,
 * like the session page's narrative: a tool call's result names the call.
 */
#include "cli.h"
#include "remote.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/http.h"

#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define POLL_TIMEOUT_S 20
#define RETRY_MAX_MS   5000
#define CALLS_KEPT     64 /* tool calls remembered to name their results */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

typedef struct follow {
    remote r;
    long long id;
    char auth[600];
    const char *headers[2];
    char offset[32];
    int json; /* print raw JSON lines */
    int tty;  /* stderr is a terminal: keep a status line */
    char state[32];
    char step[64];
    int64_t created_ms;
    int status_shown;
    struct {
        char id[96];
        char what[160]; /* "Write src/a.c" */
    } calls[CALLS_KEPT];
    unsigned ncalls;
} follow;

/* One line of text with control characters replaced, at most n bytes. */
static void one_line(char *out, size_t n, const char *s)
{
    size_t i = 0;
    for (; s && *s && i + 1 < n; s++)
        out[i++] = (unsigned char)*s < 0x20 ? ' ' : *s;
    out[i] = '\0';
}

static void status_clear(follow *f)
{
    if (f->tty && f->status_shown) {
        fputs("\r\033[K", stderr);
        f->status_shown = 0;
    }
}

static void status_show(follow *f)
{
    if (!f->tty)
        return;
    char el[32] = "-";
    if (f->created_ms > 0) {
        int64_t s = (clock_wall_ms() - f->created_ms) / 1000;
        if (s < 0)
            s = 0;
        snprintf(el, sizeof(el), "%lldh%02lldm%02llds", (long long)(s / 3600),
                 (long long)(s / 60 % 60), (long long)(s % 60));
    }
    fprintf(stderr, "\r\033[K[session %lld] state %s | step %s | elapsed %s", f->id,
            f->state[0] ? f->state : "?", f->step[0] ? f->step : "-", el);
    fflush(stderr);
    f->status_shown = 1;
}

static int64_t parse_time(const char *s)
{
    struct tm tm = {0};
    if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
        return 0;
    return (int64_t)timegm(&tm) * 1000;
}

static void session_refresh(follow *f)
{
    char path[64];
    json_t *s = NULL;
    snprintf(path, sizeof(path), "/api/sessions/%lld", f->id);
    /* quiet: a failure here only leaves the status line as it was */
    int saved = dup(2), devnull = -1;
    if (saved >= 0 && (devnull = open("/dev/null", O_WRONLY)) >= 0)
        dup2(devnull, 2);
    int rc = remote_get_json(&s, &f->r, path);
    if (saved >= 0) {
        dup2(saved, 2);
        close(saved);
    }
    if (devnull >= 0)
        close(devnull);
    if (rc || !s)
        return;
    const char *st = json_string_value(json_object_get(s, "state"));
    if (st)
        snprintf(f->state, sizeof(f->state), "%s", st);
    f->created_ms = parse_time(json_string_value(json_object_get(s, "created")));
    json_decref(s);
}

/* What a step event says, in words: "agent done (round 1): exit 0,
 * 2 files changed, 1.4 s: <summary>", "test failed: <error>". */
static void step_text(char *out, size_t n, json_t *b)
{
    const char *step = json_string_value(json_object_get(b, "step"));
    const char *status = json_string_value(json_object_get(b, "status"));
    json_int_t round = json_integer_value(json_object_get(b, "round"));
    json_t *v;
    size_t k = 0;
#define PUT(...) (k += (size_t)snprintf(out + k, k < n ? n - k : 0, __VA_ARGS__))
    PUT("%s %s", step ? step : "?", status ? status : "?");
    if (round > 0)
        PUT(" (round %lld)", (long long)round);
    const char *sep = ": ";
    if ((v = json_object_get(b, "exit")) && json_is_integer(v)) {
        PUT("%sexit %lld", sep, (long long)json_integer_value(v));
        sep = ", ";
    }
    if ((v = json_object_get(b, "passed")) && json_is_boolean(v)) {
        PUT("%s%s", sep, json_is_true(v) ? "passed" : "FAILED");
        sep = ", ";
    }
    json_t *files = json_object_get(b, "files");
    if (!json_is_integer(files))
        files = json_object_get(b, "files_changed");
    if (!json_is_integer(files))
        files = json_object_get(json_object_get(b, "diffstat"), "files");
    if (json_is_integer(files)) {
        long long nf = (long long)json_integer_value(files);
        PUT("%s%lld %s changed", sep, nf, nf == 1 ? "file" : "files");
        sep = ", ";
    }
    if (json_is_true(json_object_get(b, "empty"))) {
        PUT("%snothing to commit", sep);
        sep = ", ";
    }
    const char *branch = json_string_value(json_object_get(b, "branch"));
    if (branch) {
        PUT("%sbranch %s", sep, branch);
        sep = ", ";
    }
    if (json_is_true(json_object_get(b, "draft"))) {
        PUT("%sa draft", sep);
        sep = ", ";
    }
    json_int_t ms = json_integer_value(json_object_get(b, "wall_ms"));
    if (!ms)
        ms = json_integer_value(json_object_get(b, "ms"));
    if (ms > 0 && status && strcmp(status, "started") != 0) {
        if (ms < 1000)
            PUT("%s%lld ms", sep, (long long)ms);
        else
            PUT("%s%.1f s", sep, (double)ms / 1000.0);
        sep = ", ";
    }
    if ((v = json_object_get(b, "cost_usd")) && json_is_number(v)) {
        PUT("%s$%.2f", sep, json_number_value(v));
        sep = ", ";
    }
    const char *why = json_string_value(json_object_get(b, "error"));
    const char *summary = json_string_value(json_object_get(b, "summary"));
    if (why)
        PUT(": %s", why);
    if (summary)
        PUT(": %s", summary);
#undef PUT
    if (k >= n && n > 4) /* cut: say so */
        memcpy(out + n - 4, "...", 4);
}

/* What a "run_finished" event says: the outcome, the tests, the diffstat. */
static void run_finished_text(char *out, size_t n, json_t *b)
{
    const char *outcome = json_string_value(json_object_get(b, "outcome"));
    const char *reason = json_string_value(json_object_get(b, "reason"));
    const char *tests = json_string_value(json_object_get(b, "tests"));
    json_t *ds = json_object_get(b, "diffstat");
    long long nf = (long long)json_integer_value(json_object_get(ds, "files"));
    char diff[96] = "";
    if (json_is_object(ds))
        snprintf(diff, sizeof(diff), ", %lld %s changed (+%lld -%lld)", nf,
                 nf == 1 ? "file" : "files",
                 (long long)json_integer_value(json_object_get(ds, "insertions")),
                 (long long)json_integer_value(json_object_get(ds, "deletions")));
    snprintf(out, n, "run %lld: %s%s%s%s%s%s%s",
             (long long)json_integer_value(json_object_get(b, "run")), outcome ? outcome : "?",
             json_is_true(json_object_get(b, "draft")) && outcome && strcmp(outcome, "draft")
                 ? " (a draft)"
                 : "",
             reason ? ": " : "", reason ? reason : "", tests ? ", tests " : "", tests ? tests : "",
             diff);
}

/* A transcript event in words (transcript.h), into out; 0 when kind is
 * not one. */
static int transcript_text(follow *f, char *out, size_t n, const char *kind, json_t *b)
{
    if (!kind || !json_is_object(b))
        return 0;
    if (!strcmp(kind, "agent_message")) {
        snprintf(out, n, "the agent says: %s", remote_str(b, "text"));
    } else if (!strcmp(kind, "tool_call")) {
        const char *id = json_string_value(json_object_get(b, "id"));
        const char *sum = json_string_value(json_object_get(b, "summary"));
        snprintf(out, n, "calls %s%s%s", remote_str(b, "tool"), sum ? " " : "", sum ? sum : "");
        if (id) {
            unsigned k = f->ncalls++ % CALLS_KEPT;
            snprintf(f->calls[k].id, sizeof(f->calls[k].id), "%s", id);
            snprintf(f->calls[k].what, sizeof(f->calls[k].what), "%s%s%s", remote_str(b, "tool"),
                     sum ? " " : "", sum ? sum : "");
        }
    } else if (!strcmp(kind, "tool_result")) {
        const char *id = json_string_value(json_object_get(b, "id"));
        const char *what = "a tool call";
        for (unsigned k = 0; id && k < CALLS_KEPT && k < f->ncalls; k++)
            if (!strcmp(f->calls[k].id, id))
                what = f->calls[k].what;
        snprintf(out, n, "%s %s", what,
                 json_is_true(json_object_get(b, "ok")) ? "succeeded" : "failed");
    } else if (!strcmp(kind, "file_change")) {
        const char *k = remote_str(b, "kind");
        snprintf(out, n, "%s %s",
                 !strcmp(k, "add")      ? "added"
                 : !strcmp(k, "delete") ? "deleted"
                                        : "changed",
                 remote_str(b, "path"));
    } else if (!strcmp(kind, "command")) {
        json_t *code = json_object_get(b, "exit_code");
        char st[48] = "exit status unknown";
        if (json_is_integer(code))
            snprintf(st, sizeof(st), "exit %lld", (long long)json_integer_value(code));
        snprintf(out, n, "ran `%s`: %s", remote_str(b, "command"), st);
    } else if (!strcmp(kind, "error")) {
        snprintf(out, n, "%s: %s",
                 json_is_true(json_object_get(b, "fatal")) ? "the agent failed" : "the agent warns",
                 remote_str(b, "message"));
    } else if (!strcmp(kind, "transcript_dropped")) {
        snprintf(out, n, "%lld more events of the agent's transcript not logged",
                 (long long)json_integer_value(json_object_get(b, "events")));
    } else {
        return 0;
    }
    return 1;
}

/* A "setup" event in words: "setup ran in 4.2 s (kept in the cache)", or
 * "setup restored from the cache in 0.1 s (1204 files)". */
static void setup_text(char *out, size_t n, json_t *b)
{
    const char *mode = json_string_value(json_object_get(b, "mode"));
    double s = (double)json_integer_value(json_object_get(b, "ms")) / 1000.0;
    json_t *files = json_object_get(b, "files"), *saved = json_object_get(b, "saved");
    char count[48] = "";

    if (json_is_integer(files))
        snprintf(count, sizeof(count), " (%lld files)", (long long)json_integer_value(files));
    if (mode && !strcmp(mode, "restored"))
        snprintf(out, n, "setup restored from the cache%s in %.1f s%s",
                 json_is_true(json_object_get(b, "warm")) ? " in a warm slot" : "", s, count);
    else
        snprintf(out, n, "setup ran in %.1f s%s", s,
                 json_is_true(saved)    ? " (kept in the cache)"
                 : json_is_false(saved) ? " (not kept in the cache)"
                                        : "");
}

static void print_event(follow *f, json_t *m)
{
    status_clear(f);
    if (f->json) {
        char *t = json_dumps(m, JSON_COMPACT);
        if (t)
            printf("%s\n", t);
        free(t);
        return;
    }
    const char *kind = json_string_value(json_object_get(m, "kind"));
    const char *actor = json_string_value(json_object_get(m, "actor"));
    const char *ts = json_string_value(json_object_get(m, "ts"));
    json_t *body = json_object_get(m, "body");
    const char *text = json_string_value(json_object_get(body, "text"));
    if (!text)
        text = json_string_value(json_object_get(body, "message"));
    if (!text)
        text = json_string_value(json_object_get(body, "summary"));
    char line[400], words[1024];
    if (kind && !strcmp(kind, "step") && json_is_object(body)) {
        step_text(words, sizeof(words), body);
        one_line(line, sizeof(line), words);
    } else if (kind && !strcmp(kind, "setup") && json_is_object(body)) {
        setup_text(words, sizeof(words), body);
        one_line(line, sizeof(line), words);
    } else if (kind && !strcmp(kind, "run_finished") && json_is_object(body)) {
        run_finished_text(words, sizeof(words), body);
        one_line(line, sizeof(line), words);
    } else if (kind && !strcmp(kind, "state") && json_string_value(json_object_get(body, "to"))) {
        snprintf(words, sizeof(words), "%s -> %s", remote_str(body, "from"),
                 remote_str(body, "to"));
        one_line(line, sizeof(line), words);
    } else if (transcript_text(f, words, sizeof(words), kind, body)) {
        one_line(line, sizeof(line), words);
    } else if (text) {
        one_line(line, sizeof(line), text);
    } else {
        char *t = body ? json_dumps(body, JSON_COMPACT) : NULL;
        one_line(line, sizeof(line), t ? t : "");
        free(t);
    }
    char k[40], a[60];
    one_line(k, sizeof(k), kind ? kind : "?");
    one_line(a, sizeof(a), actor ? actor : "");
    printf("%5lld %s %-12s %s%s%s\n", (long long)json_integer_value(json_object_get(m, "seq")),
           ts ? ts : "-", k, a, a[0] ? ": " : "", line);
    if (kind && !strcmp(kind, "step")) {
        const char *name = json_string_value(json_object_get(body, "step"));
        if (!name)
            name = json_string_value(json_object_get(body, "name"));
        if (name)
            snprintf(f->step, sizeof(f->step), "%s", name);
    } else if (kind && !strcmp(kind, "state")) {
        const char *st = json_string_value(json_object_get(body, "to"));
        if (!st)
            st = json_string_value(json_object_get(body, "state"));
        if (st)
            snprintf(f->state, sizeof(f->state), "%s", st);
    }
    if (kind && strcmp(kind, "message") && strcmp(kind, "comment") && !f->step[0])
        snprintf(f->step, sizeof(f->step), "%s", k);
}

/* One read from f->offset (live: a long-poll). Returns 0 and sets *more
 * when the log has more right away, 1 on a transient failure (retry), or an
 * exit status >= 2 for a permanent one. */
static int read_once(follow *f, int live, int *eof)
{
    char url[1024];
    http_response resp;
    http_request req = HTTP_REQUEST_INIT;
    snprintf(url, sizeof(url), "%s/v1/stream/sessions/%lld?offset=%s%s", f->r.server, f->id,
             f->offset, live ? "&live=long-poll&timeout=20" : "");
    req.url = url;
    req.headers = f->auth[0] ? f->headers : NULL;
    req.timeout_ms = (POLL_TIMEOUT_S + 15) * 1000L;
    req.max_retries = 0;
    req.cancel = (const volatile int *)&interrupted;
    int rc = http_do(&resp, &req);
    *eof = 0;
    if (rc) {
        http_response_free(&resp);
        return interrupted ? 2 : 1;
    }
    int ret = 0;
    if (resp.status == 200 || resp.status == 204) {
        if (resp.status == 200) {
            json_t *arr = json_loads(buf_cstr(&resp.body), 0, NULL);
            size_t i;
            json_t *m;
            json_array_foreach(arr, i, m) print_event(f, m);
            json_decref(arr);
            fflush(stdout);
        }
        char *next = http_response_header(&resp, "Stream-Next-Offset");
        if (next && strlen(next) < sizeof(f->offset))
            snprintf(f->offset, sizeof(f->offset), "%s", next);
        free(next);
        char *utd = http_response_header(&resp, "Stream-Up-To-Date");
        char *closed = http_response_header(&resp, "Stream-Closed");
        *eof = (utd && !strcmp(utd, "true")) || resp.status == 204;
        if (closed && !strcmp(closed, "true"))
            *eof = 2;
        free(utd);
        free(closed);
    } else if (resp.status == 404) {
        fprintf(stderr, "farm: no session %lld on %s\n", f->id, f->r.server);
        ret = 3;
    } else if (resp.status == 401 || resp.status == 403) {
        fprintf(stderr,
                "farm: the farm refused the request (%ld): set FARM_TOKEN to a token "
                "with the viewer role\n",
                resp.status);
        ret = 3;
    } else if (resp.status == 410) {
        fprintf(stderr, "farm: offset %s is no longer retained\n", f->offset);
        ret = 3;
    } else {
        ret = 1; /* 5xx and the like: try again */
    }
    http_response_free(&resp);
    return ret;
}

static int run_logs(int argc, char **argv)
{
    follow f;
    memset(&f, 0, sizeof(f));
    const char *server = NULL, *config_path = NULL, *from = NULL;
    int live = 0;
    static const struct option opts[] = {
        {"follow", no_argument, NULL, 'f'},       {"json", no_argument, NULL, 'j'},
        {"server", required_argument, NULL, 's'}, {"config", required_argument, NULL, 'c'},
        {"from", required_argument, NULL, 'o'},   {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "fj", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            live = 1;
            break;
        case 'j':
            f.json = 1;
            break;
        case 's':
            server = optarg;
            break;
        case 'c':
            config_path = optarg;
            break;
        case 'o':
            from = optarg;
            break;
        default:
            return cli_usage("logs");
        }
    }
    if (optind + 1 != argc)
        return cli_usage("logs");
    char *end;
    f.id = strtoll(argv[optind], &end, 10);
    if (*end || f.id <= 0) {
        fprintf(stderr, "farm: '%s' is not a session id\n", argv[optind]);
        return 2;
    }
    if (remote_init(&f.r, server, config_path))
        return 1;
    const char *token = getenv("FARM_TOKEN");
    if (token && *token) {
        if (snprintf(f.auth, sizeof(f.auth), "Authorization: Bearer %s", token) >=
            (int)sizeof(f.auth)) {
            fprintf(stderr, "farm: FARM_TOKEN is too long\n");
            return 2;
        }
        f.headers[0] = f.auth;
    }
    snprintf(f.offset, sizeof(f.offset), "%s", from ? from : "-1");
    f.tty = live && isatty(2);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int64_t backoff = 200, last_status = 0;
    if (live)
        session_refresh(&f);
    while (!interrupted) {
        int eof = 0;
        int rc = read_once(&f, live, &eof);
        if (rc >= 2) {
            status_clear(&f);
            return interrupted ? 0 : 1;
        }
        if (rc == 1) {
            if (!live) {
                fprintf(stderr, "farm: cannot read the log from %s: %s\n", f.r.server,
                        farm_error_last());
                return 1;
            }
            /* disconnected: try again from the same offset, backing off */
            status_clear(&f);
            fprintf(stderr, "farm: connection lost; resuming from offset %s\n", f.offset);
            struct timespec ts = {backoff / 1000, (backoff % 1000) * 1000000L};
            nanosleep(&ts, NULL);
            backoff = backoff * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : backoff * 2;
            continue;
        }
        backoff = 200;
        if (!live && eof)
            break;
        if (eof == 2) { /* the log was closed: nothing more will come */
            status_clear(&f);
            break;
        }
        if (live) {
            int64_t now = clock_mono_ms();
            if (now - last_status >= 2000) {
                session_refresh(&f);
                last_status = now;
            }
            status_show(&f);
        }
    }
    status_clear(&f);
    return 0;
}

CLI_COMMAND("logs", "show a session's log; -f follows it live",
            "farm logs [-f] [--json] [--from OFFSET] [--server URL | --config FILE] ID\n"
            "  (FARM_TOKEN: an API token with the viewer role)",
            run_logs)

static int run_say(int argc, char **argv)
{
    const char *server = NULL, *config_path = NULL;
    static const struct option opts[] = {{"server", required_argument, NULL, 's'},
                                         {"config", required_argument, NULL, 'c'},
                                         {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            server = optarg;
            break;
        case 'c':
            config_path = optarg;
            break;
        default:
            return cli_usage("say");
        }
    }
    if (optind + 2 != argc)
        return cli_usage("say");
    char *end;
    long long id = strtoll(argv[optind], &end, 10);
    if (*end || id <= 0) {
        fprintf(stderr, "farm: '%s' is not a session id\n", argv[optind]);
        return 2;
    }
    const char *text = argv[optind + 1];
    if (!*text) {
        fprintf(stderr, "farm: the message is empty\n");
        return 2;
    }
    remote r;
    if (remote_init(&r, server, config_path))
        return 1;
    char auth[600] = "";
    const char *headers[3] = {"Content-Type: application/json", NULL, NULL};
    const char *token = getenv("FARM_TOKEN");
    if (token && *token) {
        if (snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token) >= (int)sizeof(auth)) {
            fprintf(stderr, "farm: FARM_TOKEN is too long\n");
            return 2;
        }
        headers[1] = auth;
    }
    json_t *o = json_pack("{s:s}", "text", text);
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!body) {
        fprintf(stderr, "farm: the message is not valid UTF-8\n");
        return 2;
    }
    char url[700];
    snprintf(url, sizeof(url), "%s/api/sessions/%lld/messages", r.server, id);
    http_request req = HTTP_REQUEST_INIT;
    http_response resp;
    req.method = "POST";
    req.url = url;
    req.headers = headers;
    req.body = body;
    req.body_len = strlen(body);
    req.max_retries = 0; /* a message is not repeated on our own */
    int rc = http_do(&resp, &req);
    free(body);
    int status = 0;
    if (rc) {
        fprintf(stderr, "farm: cannot reach the farm at %s: %s\n", r.server, farm_error_last());
        status = 1;
    } else if (resp.status == 201) {
        json_t *v = json_loads(buf_cstr(&resp.body), 0, NULL);
        printf("sent to session %lld (seq %lld)\n", id,
               (long long)json_integer_value(json_object_get(v, "seq")));
        json_decref(v);
    } else if (resp.status == 401 || resp.status == 403) {
        fprintf(stderr,
                "farm: the farm refused the message (%ld): set FARM_TOKEN to a token "
                "with the member role\n",
                resp.status);
        status = 1;
    } else if (resp.status == 404) {
        fprintf(stderr, "farm: no session %lld\n", id);
        status = 1;
    } else {
        fprintf(stderr, "farm: the farm answered %ld: %s\n", resp.status, buf_cstr(&resp.body));
        status = 1;
    }
    http_response_free(&resp);
    return status;
}

CLI_COMMAND("say", "send a message to a session",
            "farm say [--server URL | --config FILE] ID TEXT\n"
            "  (FARM_TOKEN: an API token with the member role)",
            run_say)
