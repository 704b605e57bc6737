/*
 * bench_stream.c - durable streams under load, with baselines from the same
 * run.
 *
 * 1. Append throughput: one-message appends to one stream through the
 *    engine (validated, group-committed, durable before completion), P in
 *    flight at a time through the asynchronous API, against
 *    a raw batched INSERT of the same rows into a table of the same shape in
 *    a SQLite file with the same pragmas (WAL, synchronous=FULL).
 * 2. Fan-out: a farm server (in a child process, so each side has its own
 *    open-file limit) with K SSE readers on one session log; M events are
 *    appended through POST /api/sessions/{id}/messages, each carrying its
 *    send time; every reader's receive time gives the append-to-delivery
 *    latency (p50, p99, max), and the server's RSS before and after the
 *    readers connect gives the memory per reader.
 *
 *   bench_stream [--readers K] [--events M] [--interval-ms N] [--appends N]
 *                [--in-flight P] [--skip-fanout] [--skip-append]
 */
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/config/config.h"
#include "farm/farm.h"
#include "farm/store/store.h"
#include "farm/stream/stream.h"
#include "webhook/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_stream: %s: %s\n", what, farm_error_last());
    exit(1);
}

static char tmpdir[128];

static void rmtree(void)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_stream: could not remove %s\n", tmpdir);
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rlim_t old = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            printf("open-file limit raised from %llu to the hard limit %llu\n",
                   (unsigned long long)old, (unsigned long long)rl.rlim_max);
    }
}

/* ---- 1. append throughput -------------------------------------------------- */

#define PAYLOAD "{\"kind\":\"agent_output\",\"text\":\"compiling src/main.c ... ok (0.42s)\"}"

static double raw_insert_rate(int n, int batch)
{
    char path[256];
    sqlite3 *db;
    sqlite3_stmt *st;
    static int run;
    snprintf(path, sizeof(path), "%s/raw%d.db", tmpdir, run++);
    if (sqlite3_open(path, &db) != SQLITE_OK)
        die("sqlite open");
    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL, NULL);
    sqlite3_exec(db,
                 "CREATE TABLE stream_data (stream_id INTEGER NOT NULL, pos INTEGER NOT NULL,"
                 " end_pos INTEGER NOT NULL, data BLOB NOT NULL,"
                 " PRIMARY KEY (stream_id, pos)) WITHOUT ROWID",
                 NULL, NULL, NULL);
    sqlite3_prepare_v2(db, "INSERT INTO stream_data VALUES (1, ?, ?, ?)", -1, &st, NULL);
    int64_t t0 = clock_mono_ns();
    for (int i = 0; i < n; i += batch) {
        sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
        for (int k = i; k < i + batch && k < n; k++) {
            sqlite3_bind_int64(st, 1, k);
            sqlite3_bind_int64(st, 2, k + 1);
            sqlite3_bind_blob(st, 3, PAYLOAD, (int)strlen(PAYLOAD), SQLITE_STATIC);
            if (sqlite3_step(st) != SQLITE_DONE)
                die("raw insert");
            sqlite3_reset(st);
        }
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    }
    int64_t dt = clock_mono_ns() - t0;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n / (dt / 1e9);
}

/* Appends in flight: the engine's asynchronous API, as the HTTP front uses
 * it (a suspended request per append, no thread). */
typedef struct window {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int outstanding;
    int failed;
} window;

static void on_appended(void *arg, int rc, const stream_result *res)
{
    window *w = arg;
    pthread_mutex_lock(&w->mu);
    if (rc || res->status != 204)
        w->failed++;
    w->outstanding--;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static double stream_append_rate(int n, int inflight)
{
    char dir[256];
    store *st;
    stream_hub *h;
    snprintf(dir, sizeof(dir), "%s/appends", tmpdir);
    mkdir(dir, 0700);
    if (store_open(&st, dir) || stream_hub_open(&h, st, NULL))
        die("open store");
    stream_result r;
    stream_create_req c = STREAM_CREATE_REQ_INIT;
    c.content_type = "application/json";
    if (stream_create(&r, h, "bench/append", &c) || r.status != 201)
        die("create stream");
    stream_append_req q = STREAM_APPEND_REQ_INIT;
    q.content_type = "application/json";
    q.body = PAYLOAD;
    q.body_len = strlen(PAYLOAD);
    stream_result *res = calloc((size_t)inflight, sizeof(*res));
    window w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    int64_t t0 = clock_mono_ns();
    for (int i = 0; i < n; i++) {
        pthread_mutex_lock(&w.mu);
        while (w.outstanding >= inflight)
            pthread_cond_wait(&w.cv, &w.mu);
        w.outstanding++;
        pthread_mutex_unlock(&w.mu);
        /* appends complete in order, so slot i % inflight is free again */
        if (stream_append_async(h, "bench/append", &q, &res[i % inflight], on_appended, &w))
            die("append");
    }
    pthread_mutex_lock(&w.mu);
    while (w.outstanding > 0)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    int64_t dt = clock_mono_ns() - t0;
    if (w.failed)
        fprintf(stderr, "bench_stream: %d appends failed\n", w.failed);
    store_stats ss;
    store_stats_get(&ss, st);
    printf("  engine: %d appends, up to %d in flight, in %.2f s: %llu commits\n", n, inflight,
           dt / 1e9, (unsigned long long)ss.commits);
    free(res);
    stream_hub_close(h);
    store_close(st);
    return n / (dt / 1e9);
}

/* ---- 2. fan-out ------------------------------------------------------------ */

typedef struct sess_arg {
    int64_t id;
} sess_arg;

static int make_session(store_tx *tx, void *arg)
{
    sess_arg *s = arg;
    store_session ss = {0};
    ss.tracker = "local";
    ss.repo = "bench";
    ss.number = 1;
    return store_tx_session_insert(&s->id, tx, &ss);
}

/* The server: runs until the parent closes the control pipe. */
static int http_threads = 2;

static void server_child(int wfd, int rfd, unsigned max_conns)
{
    config *cfg;
    farm *f;
    server *srv;
    char dir[256];
    log_set_level(LOG_WARN);
    raise_nofile();
    snprintf(dir, sizeof(dir), "%s/farm", tmpdir);
    if (config_default(&cfg))
        die("config");
    free(cfg->listen);
    free(cfg->data_dir);
    cfg->listen = strdup("127.0.0.1:0");
    cfg->data_dir = strdup(dir);
    cfg->http.max_connections_per_ip = 0; /* thousands of readers from one address, on purpose */
    if (farm_open(&f, cfg))
        die("farm_open");
    sess_arg s = {0};
    if (store_write(farm_store(f), make_session, &s))
        die("session");
    server_options opt = SERVER_OPTIONS_INIT;
    opt.threads = http_threads;
    opt.max_connections = max_conns;
    if (server_start(&srv, f, &opt))
        die("server_start");
    char msg[128];
    int n = snprintf(msg, sizeof(msg), "%s %lld\n", server_address(srv), (long long)s.id);
    if (write(wfd, msg, (size_t)n) != n)
        exit(1);
    char c;
    while (read(rfd, &c, 1) > 0) /* until the parent is done */
        ;
    server_stop(srv, 2000);
    farm_close(f);
    exit(0);
}

/* CPU time (user + system) of a process, in ms. */
static int64_t cpu_ms(pid_t pid)
{
    char path[64], text[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -1;
    size_t n = fread(text, 1, sizeof(text) - 1, fp);
    fclose(fp);
    text[n] = '\0';
    char *p = strrchr(text, ')');
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (int64_t)((ut + st) * 1000 / (unsigned long long)sysconf(_SC_CLK_TCK));
}

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -1;
    while (fgets(line, sizeof(line), fp))
        if (!strncmp(line, "VmRSS:", 6))
            kib = strtol(line + 6, NULL, 10);
    fclose(fp);
    return kib;
}

typedef struct reader {
    int fd;
    int connected; /* the first control event arrived */
    int events;
    char carry[64];
    size_t ncarry;
} reader;

static int64_t *lat;
static size_t nlat, caplat;
static int port;
static long long session_id;

static int connect_to(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0)
        return -1;
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    if (rc && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Scan what a reader received for message send times ("text":"t<ns>"),
 * however the events are batched or split across reads: a short tail is
 * carried over to the next read. */
static void reader_feed(reader *r, const char *p, size_t n, int64_t now)
{
    static const char pat[] = "\"text\":\"t";
    static const char ctl[] = "event: control";
    char win[sizeof(r->carry) + 65536];
    size_t len = r->ncarry;
    memcpy(win, r->carry, len);
    if (n > sizeof(win) - len)
        n = sizeof(win) - len;
    memcpy(win + len, p, n);
    len += n;
    size_t i = 0, keep = len > 48 ? len - 48 : 0;
    while (i < len) {
        char *hit = memmem(win + i, len - i, pat, sizeof(pat) - 1);
        if (!r->connected && memmem(win, len, ctl, sizeof(ctl) - 1))
            r->connected = 1;
        if (!hit)
            break;
        char *num = hit + sizeof(pat) - 1, *q = num;
        while (q < win + len && *q >= '0' && *q <= '9')
            q++;
        if (q == win + len) { /* cut off: finish it with the next read */
            keep = (size_t)(hit - win);
            break;
        }
        r->events++;
        if (nlat < caplat)
            lat[nlat++] = now - strtoll(num, NULL, 10);
        i = (size_t)(q - win);
        if (i > keep)
            keep = i;
    }
    if (len - keep > sizeof(r->carry))
        keep = len - sizeof(r->carry);
    memmove(r->carry, win + keep, len - keep);
    r->ncarry = len - keep;
}

typedef struct poster {
    int events;
    int interval_ms;
    int sent;
    int failed;
} poster;

/* Append events through the HTTP API, one keep-alive connection. */
static void *post_events(void *p)
{
    poster *ps = p;
    int fd = -1;
    char req[512], resp[2048];
    for (int i = 0; i < ps->events; i++) {
        if (fd < 0) {
            fd = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in sa = {0};
            sa.sin_family = AF_INET;
            sa.sin_port = htons((uint16_t)port);
            sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
                ps->failed++;
                close(fd);
                fd = -1;
                continue;
            }
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        char body[64];
        int bl = snprintf(body, sizeof(body), "{\"text\":\"t%lld\"}", (long long)clock_mono_ns());
        int n = snprintf(req, sizeof(req),
                         "POST /api/sessions/%lld/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                         session_id, bl, body);
        if (write(fd, req, (size_t)n) != n) {
            ps->failed++;
            close(fd);
            fd = -1;
            continue;
        }
        ssize_t got = read(fd, resp, sizeof(resp) - 1);
        if (got <= 0 || strncmp(resp, "HTTP/1.1 201", 12) != 0) {
            ps->failed++;
            close(fd);
            fd = -1;
        } else {
            ps->sent++;
        }
        usleep((useconds_t)ps->interval_ms * 1000); /* pacing the load, not synchronising */
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

static void fanout(int k, int events, int interval_ms)
{
    int down[2], up[2];
    if (pipe(down) || pipe(up))
        die("pipe");
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        close(down[1]);
        close(up[0]);
        server_child(up[1], down[0], (unsigned)k + 512);
    }
    close(down[0]);
    close(up[1]);
    char msg[128] = "";
    ssize_t n = read(up[0], msg, sizeof(msg) - 1);
    if (n <= 0) {
        fprintf(stderr, "bench_stream: the server did not start\n");
        exit(1);
    }
    msg[n] = '\0';
    char *colon = strrchr(strtok(msg, " "), ':');
    port = atoi(colon + 1);
    session_id = atoll(strtok(NULL, " \n"));
    usleep(200000); /* let the child settle before its baseline RSS */
    long rss0 = rss_kib(child);

    reader *rd = calloc((size_t)k, sizeof(*rd));
    int ep = epoll_create1(0);
    char req[256];
    int reqlen = snprintf(req, sizeof(req),
                          "GET /v1/stream/sessions/%lld?offset=now&live=sse HTTP/1.1\r\n"
                          "Host: 127.0.0.1\r\n\r\n",
                          session_id);
    int64_t t0 = clock_mono_ms();
    int connected = 0, opened = 0;
    char rbuf[65536];
    struct epoll_event evs[512];
    /* connect in waves so the listen backlog is never overrun */
    while (connected < k) {
        while (opened < k && opened - connected < 512) {
            int fd = connect_to();
            if (fd < 0) {
                perror("bench_stream: socket");
                exit(1);
            }
            rd[opened].fd = fd;
            struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)opened};
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
            opened++;
        }
        int ne = epoll_wait(ep, evs, 512, 1000);
        for (int i = 0; i < ne; i++) {
            reader *r = &rd[evs[i].data.u32];
            if (evs[i].events & EPOLLOUT) {
                if (write(r->fd, req, (size_t)reqlen) != reqlen) {
                    fprintf(stderr, "bench_stream: request write failed\n");
                    exit(1);
                }
                struct epoll_event ev = {.events = EPOLLIN, .data.u32 = evs[i].data.u32};
                epoll_ctl(ep, EPOLL_CTL_MOD, r->fd, &ev);
            }
            if (evs[i].events & EPOLLIN) {
                ssize_t got = read(r->fd, rbuf, sizeof(rbuf));
                if (got > 0) {
                    int was = r->connected;
                    reader_feed(r, rbuf, (size_t)got, clock_mono_ns());
                    if (!was && r->connected)
                        connected++;
                } else if (got == 0) {
                    fprintf(stderr, "bench_stream: a reader was closed while connecting\n");
                    exit(1);
                }
            }
        }
        if (clock_mono_ms() - t0 > 120000) {
            fprintf(stderr, "bench_stream: only %d of %d readers connected\n", connected, k);
            exit(1);
        }
    }
    int64_t t_conn = clock_mono_ms() - t0;
    usleep(300000);
    long rss1 = rss_kib(child);

    caplat = (size_t)k * (size_t)events;
    lat = malloc(caplat * sizeof(*lat));
    nlat = 0;
    int64_t cpu0 = cpu_ms(child), mycpu0 = cpu_ms(getpid());
    poster ps = {events, interval_ms, 0, 0};
    pthread_t pt;
    pthread_create(&pt, NULL, post_events, &ps);
    int64_t deadline = 0;
    for (;;) {
        int ne = epoll_wait(ep, evs, 512, 200);
        int64_t now = clock_mono_ns();
        for (int i = 0; i < ne; i++) {
            reader *r = &rd[evs[i].data.u32];
            ssize_t got = read(r->fd, rbuf, sizeof(rbuf));
            if (got > 0)
                reader_feed(r, rbuf, (size_t)got, now);
        }
        if (!deadline && ps.sent + ps.failed >= events)
            deadline = clock_mono_ms() + 5000;
        if (nlat >= (size_t)k * (size_t)ps.sent && ps.sent + ps.failed >= events)
            break;
        if (deadline && clock_mono_ms() > deadline)
            break;
    }
    pthread_join(pt, NULL);
    int64_t cpu1 = cpu_ms(child), mycpu1 = cpu_ms(getpid());
    long rss2 = rss_kib(child); /* what readers keep between events counts too */
    int minev = events, maxev = 0;
    for (int i = 0; i < k; i++) {
        if (rd[i].events < minev)
            minev = rd[i].events;
        if (rd[i].events > maxev)
            maxev = rd[i].events;
    }
    qsort(lat, nlat, sizeof(*lat), cmp_i64);
    printf("fan-out: %d SSE readers on one session, %d events appended via the API every %d ms\n",
           k, ps.sent, interval_ms);
    printf("  readers connected in %.1f s; events per reader: min %d, max %d (expected %d)\n",
           t_conn / 1000.0, minev, maxev, ps.sent);
    if (nlat) {
        printf("  append-to-delivery latency: min %.2f ms, p50 %.2f ms, p99 %.2f ms, max %.2f ms "
               "(%zu deliveries)\n",
               lat[0] / 1e6, lat[nlat / 2] / 1e6, lat[(size_t)(nlat * 0.99)] / 1e6,
               lat[nlat - 1] / 1e6, nlat);
        printf("  target p99 < 100 ms: %s\n",
               lat[(size_t)(nlat * 0.99)] < 100000000 ? "met" : "NOT met");
    }
    if (nlat)
        printf("  CPU per delivery: server %.1f us, bench client %.1f us\n",
               (cpu1 - cpu0) * 1000.0 / (double)nlat, (mycpu1 - mycpu0) * 1000.0 / (double)nlat);
    double per = (rss1 - rss0) * 1024.0 / k;
    printf("  server memory: %ld KiB before readers, %ld KiB with them: %.1f KiB per reader "
           "(target < 16 KiB: %s)\n",
           rss0, rss1, per / 1024.0, per < 16384 ? "met" : "NOT met");
    double per2 = (rss2 - rss0) * 1024.0 / k;
    printf("  after the events: %ld KiB: %.1f KiB per reader (target < 16 KiB: %s)\n", rss2,
           per2 / 1024.0, per2 < 16384 ? "met" : "NOT met");
    for (int i = 0; i < k; i++)
        close(rd[i].fd);
    close(ep);
    free(rd);
    free(lat);
    close(down[1]);
    int status;
    waitpid(child, &status, 0);
}

int main(int argc, char **argv)
{
    int readers = 10000, events = 50, interval = 200, appends = 50000, producers = 1000;
    int skip_fanout = 0, skip_append = 0;
    static const struct option opts[] = {{"readers", required_argument, NULL, 'k'},
                                         {"events", required_argument, NULL, 'm'},
                                         {"interval-ms", required_argument, NULL, 'i'},
                                         {"appends", required_argument, NULL, 'n'},
                                         {"in-flight", required_argument, NULL, 'p'},
                                         {"skip-fanout", no_argument, NULL, 'F'},
                                         {"threads", required_argument, NULL, 't'},
                                         {"skip-append", no_argument, NULL, 'A'},
                                         {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'k':
            readers = atoi(optarg);
            break;
        case 'm':
            events = atoi(optarg);
            break;
        case 'i':
            interval = atoi(optarg);
            break;
        case 'n':
            appends = atoi(optarg);
            break;
        case 'p':
            producers = atoi(optarg);
            break;
        case 'F':
            skip_fanout = 1;
            break;
        case 't':
            http_threads = atoi(optarg);
            break;
        case 'A':
            skip_append = 1;
            break;
        default:
            fprintf(
                stderr,
                "usage: bench_stream [--readers K] [--events M] [--interval-ms N] "
                "[--appends N] [--in-flight P] [--threads T] [--skip-fanout] [--skip-append]\n");
            return 2;
        }
    }
    if (readers < 1 || events < 1 || appends < producers || producers < 1) {
        fprintf(stderr, "bench_stream: bad arguments\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    log_set_level(LOG_WARN);
    raise_nofile();
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/bench-stream-XXXXXX");
    if (!mkdtemp(tmpdir))
        die("mkdtemp");
    if (!skip_append) {
        printf("append throughput (%d one-message appends; rows of %zu bytes)\n", appends,
               strlen(PAYLOAD));
        /* the disk's fsync time varies: the baseline runs before and after */
        double raw1 = raw_insert_rate(appends, 1000);
        double eng = stream_append_rate(appends, producers);
        double raw2 = raw_insert_rate(appends, 1000);
        double raw = (raw1 + raw2) / 2;
        printf("  raw runs: %.0f and %.0f rows/s\n", raw1, raw2);
        printf("  raw batched INSERT (1000 rows per transaction): %.0f rows/s\n", raw);
        printf("  stream appends: %.0f appends/s; ratio to raw %.2f (target >= 0.5: %s)\n", eng,
               eng / raw, eng / raw >= 0.5 ? "met" : "NOT met");
    }
    if (!skip_fanout)
        fanout(readers, events, interval);
    rmtree();
    return 0;
}
