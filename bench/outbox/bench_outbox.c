/*
 * bench_outbox.c - what "look before you create" would cost the outbox.
 *
 * The sender looks for a comment's marker before creating it only on a
 * retry; a crash-safe alternative is to look every time. Both are run
 * against tests/fakes/fake_github.py (started here, on port 0): SESSIONS
 * sessions get COMMENTS comments each, delivered by 4 sender workers, and
 * the time to drain the outbox and the API requests per comment are
 * measured. Each mode runs ROUNDS times on a fresh farm; the medians and
 * their ratio are printed. Baseline: look on retry only.
 *
 *     bench_outbox [sessions] [comments-per-session]
 */
#include "base/clock.h"
#include "base/error.h"
#include "base/http.h"
#include "base/log.h"
#include "farm/config/config.h"
#include "farm/farm.h"
#include "farm/report/outbox.h"
#include "farm/store/store.h"
#include "farm/report/trackers.h"
#include "vcs/tracker/tracker.h"

#include <ftw.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 3
#define PAT    "ghp_bench_outbox_token_0123456"

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static pid_t fake_pid;
static char fake_url[64];

static int fake_start(void)
{
    const char *src = getenv("FARM_SOURCE_DIR");
    char path[1024], line[32] = {0};
    int p[2];
    size_t n = 0;
    snprintf(path, sizeof path, "%s/tests/fakes/fake_github.py", src ? src : FARM_SOURCE_DIR);
    if (pipe(p) != 0 || (fake_pid = fork()) < 0)
        return -1;
    if (fake_pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execlp("python3", "python3", path, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    while (n < sizeof line - 1 && !strchr(line, '\n')) {
        struct pollfd pfd = {p[0], POLLIN, 0};
        if (poll(&pfd, 1, 20000) <= 0)
            break;
        ssize_t r = read(p[0], line + n, sizeof line - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(p[0]);
    snprintf(fake_url, sizeof fake_url, "http://127.0.0.1:%d", atoi(line));
    return atoi(line) > 0 ? 0 : -1;
}

static json_t *ctl(const char *method, const char *path, const char *body)
{
    char url[256];
    http_request req = HTTP_REQUEST_INIT;
    http_response r;
    snprintf(url, sizeof url, "%s%s", fake_url, path);
    req.method = method;
    req.url = url;
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    req.max_retries = 0;
    if (http_do(&r, &req) != 0)
        return NULL;
    json_t *j = json_loads(buf_cstr(&r.body), 0, NULL);
    http_response_free(&r);
    return j;
}

typedef struct result {
    double seconds;
    double requests_per_comment;
} result;

typedef struct session_args {
    int64_t number, id;
} session_args;

static int session_write(store_tx *tx, void *arg)
{
    session_args *a = arg;
    store_session s = {0};
    s.tracker = "github";
    s.repo = "o/r";
    s.number = a->number;
    return store_tx_session_insert(&a->id, tx, &s);
}

static int one_round(result *out, int look_first, int sessions, int comments)
{
    char dir[] = "/tmp/farm-outbox-XXXXXX", path[4200], text[1024];
    config *cfg = NULL;
    farm *f = NULL;
    char *errors = NULL;
    int rc = -1;

    if (!mkdtemp(dir))
        return -1;
    /* a fresh repository with one issue per session */
    json_t *j =
        ctl("POST", "/_fake/state", "{\"reset\": true, \"tokens\": {\"" PAT "\": \"farm-bot\"}}");
    json_decref(j);
    for (int i = 0; i < sessions; i++) {
        j = ctl("POST", "/_fake/state",
                "{\"repos\": {\"o/r\": {\"issues\": [{\"title\": \"x\"}]}}}");
        json_decref(j);
    }
    snprintf(path, sizeof path, "%s/farm.json", dir);
    snprintf(text, sizeof text,
             "{\"data_dir\": \"%s/data\", \"github\": {\"api_url\": \"%s\"},"
             " \"repos\": [{\"name\": \"o/r\", \"tracker\": \"github\", \"clone_url\": \"x\","
             " \"trigger\": {\"label\": \"agent\"}}]}",
             dir, fake_url);
    FILE *fp = fopen(path, "w");
    if (!fp)
        goto out;
    fputs(text, fp);
    fclose(fp);
    if (config_load(&cfg, path, &errors) != 0 || farm_open(&f, cfg) != 0) {
        fprintf(stderr, "bench_outbox: %s\n%s", farm_error_last(), errors ? errors : "");
        goto out;
    }
    tracker_github_opts go = TRACKER_GITHUB_OPTS_INIT;
    tracker *t = NULL;
    go.api_url = fake_url;
    go.token = PAT;
    go.per_minute = 1000000; /* the fake's limits are not what is measured */
    go.per_hour = 1000000;
    if (tracker_github_new(&t, &go) != 0)
        goto out;
    farm_tracker_set(f, "github", t);

    for (int s = 0; s < sessions; s++) {
        session_args a = {s + 1, 0};
        if (store_write(farm_store(f), session_write, &a) != 0)
            goto out;
        for (int c = 0; c < comments; c++) {
            char key[256], name[32], payload[128];
            snprintf(name, sizeof name, "c%d", c);
            outbox_key(key, sizeof key, a.id, name);
            snprintf(payload, sizeof payload, "{\"body\": \"comment %d of session %d\"}", c, s);
            if (outbox_enqueue(farm_store(f), a.id, OUTBOX_COMMENT, key, payload) != 0)
                goto out;
        }
    }
    j = ctl("DELETE", "/_fake/requests", NULL);
    json_decref(j);

    outbox_opts o = OUTBOX_OPTS_INIT;
    o.look_first = look_first;
    o.poll_ms = 5;
    int64_t t0 = clock_mono_ns();
    if (outbox_start_opts(f, &o) != 0)
        goto out;
    for (;;) {
        outbox_stats st;
        if (outbox_stats_get(&st, farm_store(f)) != 0)
            goto out;
        if (st.pending == 0) {
            if (st.sent != (int64_t)sessions * comments) {
                fprintf(stderr, "bench_outbox: %lld sent, %lld failed\n", (long long)st.sent,
                        (long long)st.failed);
                goto out;
            }
            break;
        }
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    out->seconds = (double)(clock_mono_ns() - t0) / 1e9;
    j = ctl("GET", "/_fake/requests", NULL);
    out->requests_per_comment =
        (double)json_integer_value(json_object_get(j, "total")) / ((double)sessions * comments);
    json_decref(j);
    rc = 0;
out:
    farm_close(f);
    free(errors);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int sessions = argc > 1 ? atoi(argv[1]) : 20;
    int comments = argc > 2 ? atoi(argv[2]) : 10;
    double secs[2][ROUNDS], reqs[2][ROUNDS];

    if (sessions <= 0 || comments <= 0) {
        fprintf(stderr, "usage: bench_outbox [sessions] [comments-per-session]\n");
        return 2;
    }
    log_set_level(LOG_WARN);
    http_global_init();
    if (fake_start() != 0) {
        fprintf(stderr, "bench_outbox: cannot start the fake GitHub\n");
        return 1;
    }
    int rc = 0;
    for (int r = 0; r < ROUNDS && !rc; r++) {
        for (int mode = 0; mode < 2 && !rc; mode++) {
            result res;
            if (one_round(&res, mode, sessions, comments) != 0) {
                rc = 1;
                break;
            }
            secs[mode][r] = res.seconds;
            reqs[mode][r] = res.requests_per_comment;
        }
    }
    kill(fake_pid, SIGTERM);
    waitpid(fake_pid, NULL, 0);
    if (rc)
        return rc;
    for (int m = 0; m < 2; m++) {
        qsort(secs[m], ROUNDS, sizeof(double), cmp);
        qsort(reqs[m], ROUNDS, sizeof(double), cmp);
    }
    int n = sessions * comments;
    printf("outbox: %d comments (%d sessions x %d), 4 workers, fake GitHub, median of %d\n", n,
           sessions, comments, ROUNDS);
    printf("  look on retry only (baseline): %7.3f s  %6.1f comments/s  %.2f requests/comment\n",
           secs[0][ROUNDS / 2], n / secs[0][ROUNDS / 2], reqs[0][ROUNDS / 2]);
    printf("  look before every create:      %7.3f s  %6.1f comments/s  %.2f requests/comment\n",
           secs[1][ROUNDS / 2], n / secs[1][ROUNDS / 2], reqs[1][ROUNDS / 2]);
    printf("  ratio (always / on retry): time %.2fx, requests %.2fx\n",
           secs[1][ROUNDS / 2] / secs[0][ROUNDS / 2], reqs[1][ROUNDS / 2] / reqs[0][ROUNDS / 2]);
    return 0;
}
