/*
 * bench_gateway.c - what the model gateway adds to a model call, against the
 * same fake upstream called directly in the same run.
 *
 * The fake (tests/fakes/fake_model.py) streams Anthropic Messages events and
 * stamps each with its send time on CLOCK_MONOTONIC (": t=NS"). The gateway
 * runs in a child process, so its memory is its own. Then:
 * 1. Latency: N streamed calls each way, alternating, each on a kept-alive
 *    connection: time to the first event (request sent -> first event in), and
 *    each event's delay (sent by the upstream -> in at the client). The
 *    gateway's share is the difference with the direct calls. Measured against
 *    the Python fake, and again against a stub upstream in C (a thread of this
 *    program speaking the same events), which answers in microseconds where
 *    the fake takes half a millisecond, so the gateway's share stands out.
 * 2. Memory: K calls held in flight at once (the fake stalls after the first
 *    event); the gateway's RSS before and during, per call. Measured twice:
 *    cold (the first K calls the process ever served: thread stacks and
 *    allocator arenas are new) and warm (the same again after those ended).
 *
 *   bench_gateway [-n 300] [-e 20] [-d 1] [-k 200]
 *     -n calls each way, -e events per call, -d ms between events,
 *     -k calls in flight for the memory figure
 * Targets (docs/gateway.md): under 1 ms added at p50 to the first event, each
 * event passed on within 1 ms, under 64 KiB per call in flight.
 */
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/gateway/gateway.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define REAL_KEY "sk-ant-bench-0123456789abcdefghijklmnopqrstuvwxyz"
#define BODY                                                                                       \
    "{\"model\":\"claude-sonnet-5-5\",\"stream\":true,\"max_tokens\":1024,\"messages\":[{"         \
    "\"role\":\"user\",\"content\":\"Write a short poem about pipes.\"}]}"

static pid_t fake_pid, gw_pid;
static int fake_port, gw_port;
static char token[128], stub_token[128];

static void die(const char *what)
{
    fprintf(stderr, "bench_gateway: %s: %s\n", what, errno ? strerror(errno) : farm_error_last());
    if (fake_pid > 0)
        kill(fake_pid, SIGTERM);
    exit(1);
}

typedef struct samples {
    int64_t *v;
    size_t n, cap;
} samples;
typedef samples samples_t;

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The share of samples over ms, in percent. */
static double over(const samples_t *s, double ms)
{
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++)
        k += s->v[i] > (int64_t)(ms * 1e6);
    return s->n ? 100.0 * (double)k / (double)s->n : 0;
}

static double pct_ms(int64_t *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_i64);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return (double)v[i] / 1e6;
}

/* ---- the two processes ------------------------------------------------------------ */

static void fake_start(void)
{
    int p[2];
    if (pipe(p) != 0)
        die("pipe");
    fake_pid = fork();
    if (fake_pid < 0)
        die("fork");
    if (fake_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execlp("python3", "python3", FAKE_MODEL, "--key", REAL_KEY, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    char line[32] = {0};
    size_t n = 0;
    while (n < sizeof line - 1 && !strchr(line, '\n')) {
        struct pollfd pf = {p[0], POLLIN, 0};
        if (poll(&pf, 1, 20000) <= 0)
            break;
        ssize_t r = read(p[0], line + n, sizeof line - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(p[0]);
    if ((fake_port = atoi(line)) <= 0)
        die("the fake did not start");
}

/* ---- the stub upstream: the fake's events from C ---------------------------------------- */

static int stub_port, stub_events, stub_delay_ms;

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One event as a chunk, stamped with its send time. */
static int stub_event(int fd, const char *event, const char *data)
{
    char ev[1024], chunk[1100];
    int n = snprintf(ev, sizeof ev, ": t=%lld\nevent: %s\ndata: %s\n\n", (long long)clock_mono_ns(),
                     event, data);
    int m = snprintf(chunk, sizeof chunk, "%x\r\n%s\r\n", n, ev);
    return send_all(fd, chunk, (size_t)m);
}

static void *stub_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char in[65536];
    size_t len = 0;
    for (;;) {
        char *end;
        while (!(end = memmem(in, len, "\r\n\r\n", 4))) {
            ssize_t r = recv(fd, in + len, sizeof in - len, 0);
            if (r <= 0)
                goto out;
            len += (size_t)r;
        }
        char *cl = strcasestr(in, "content-length:");
        size_t head = (size_t)(end + 4 - in), body = cl && cl < end ? (size_t)atol(cl + 15) : 0;
        while (len < head + body) {
            ssize_t r = recv(fd, in + len, sizeof in - len, 0);
            if (r <= 0)
                goto out;
            len += (size_t)r;
        }
        memmove(in, in + head + body, len - head - body);
        len -= head + body;
        static const char h[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n";
        if (send_all(fd, h, sizeof h - 1) ||
            stub_event(fd, "message_start",
                       "{\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-5-5\","
                       "\"usage\":{\"input_tokens\":120,\"output_tokens\":1}}}"))
            goto out;
        for (int i = 0; i < stub_events; i++) {
            usleep((useconds_t)stub_delay_ms * 1000);
            if (stub_event(fd, "content_block_delta",
                           "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
                           "\"text_delta\",\"text\":\"pipes hum along \"}}"))
                goto out;
        }
        if (stub_event(fd, "message_delta",
                       "{\"type\":\"message_delta\",\"usage\":{\"output_tokens\":42}}") ||
            stub_event(fd, "message_stop", "{\"type\":\"message_stop\"}") ||
            send_all(fd, "0\r\n\r\n", 5))
            goto out;
    }
out:
    close(fd);
    return NULL;
}

static void *stub_accept(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            return NULL;
        pthread_t th;
        if (pthread_create(&th, NULL, stub_conn, (void *)(intptr_t)fd) == 0)
            pthread_detach(th);
        else
            close(fd);
    }
}

static void stub_start(int events, int delay_ms)
{
    stub_events = events;
    stub_delay_ms = delay_ms;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof sa;
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, 64) ||
        getsockname(lfd, (struct sockaddr *)&sa, &l))
        die("stub listen");
    stub_port = ntohs(sa.sin_port);
    pthread_t th;
    if (pthread_create(&th, NULL, stub_accept, (void *)(intptr_t)lfd))
        die("stub thread");
    pthread_detach(th);
}

/* The gateway in a child: it says "PORT TOKEN STUBTOKEN" on out (a run on
 * the fake, one on the stub), and stops when ctl closes. */
static int gateway_child(int out, int ctl)
{
    log_set_level(LOG_ERROR); /* the memory round hangs up on calls by the hundred */
    gateway_opts o = GATEWAY_OPTS_INIT;
    o.tcp_port = 0;
    o.max_conns = 4096;
    gateway *gw;
    if (gateway_start(&gw, &o))
        return 1;
    char upstream[64];
    snprintf(upstream, sizeof upstream, "http://127.0.0.1:%d", fake_port);
    gateway_run_opts r = GATEWAY_RUN_OPTS_INIT;
    r.upstream = upstream;
    r.api_key = REAL_KEY;
    char *tok, *stok;
    if (gateway_run_add(&tok, gw, &r))
        return 1;
    char stub[64];
    snprintf(stub, sizeof stub, "http://127.0.0.1:%d", stub_port);
    r.upstream = stub;
    if (gateway_run_add(&stok, gw, &r))
        return 1;
    dprintf(out, "%d %s %s\n", gateway_tcp_port(gw), tok, stok);
    close(out);
    char b;
    while (read(ctl, &b, 1) > 0)
        ;
    gateway_stop(gw);
    free(tok);
    free(stok);
    return 0;
}

static int gw_start(void)
{
    int out[2], ctl[2];
    if (pipe(out) || pipe(ctl))
        die("pipe");
    gw_pid = fork();
    if (gw_pid < 0)
        die("fork");
    if (gw_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(out[0]);
        close(ctl[1]);
        _exit(gateway_child(out[1], ctl[0]));
    }
    close(out[1]);
    close(ctl[0]);
    char line[256] = {0};
    size_t n = 0;
    while (n < sizeof line - 1 && !strchr(line, '\n')) {
        ssize_t r = read(out[0], line + n, sizeof line - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(out[0]);
    if (sscanf(line, "%d %127s %127s", &gw_port, token, stub_token) != 3)
        die("the gateway did not start");
    return ctl[1];
}

static long rss_kib(pid_t pid, long *threads)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long rss = -1;
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            rss = atol(line + 6);
        if (threads && strncmp(line, "Threads:", 8) == 0)
            *threads = atol(line + 8);
    }
    if (f)
        fclose(f);
    return rss;
}

/* ---- a client ------------------------------------------------------------------------ */

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        die("connect");
    return fd;
}

static void send_call(int fd, const char *key, const char *extra)
{
    char req[4096];
    int n = snprintf(req, sizeof req,
                     "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: %s\r\n"
                     "anthropic-version: 2023-06-01\r\nContent-Type: application/json\r\n"
                     "%sContent-Length: %zu\r\n\r\n%s",
                     key, extra, strlen(BODY), BODY);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        die("send");
}

static void add(samples *s, int64_t x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->v = realloc(s->v, s->cap * sizeof(int64_t));
    }
    s->v[s->n++] = x;
}

/* One streamed call on fd: the first event's time after sent_ns, and every
 * event's delay after its stamp. */
static void one_call(int fd, const char *key, const char *extra, samples *ttfb, samples *delay)
{
    static char b[1 << 20];
    size_t n = 0, scanned = 0;
    int first = 1;
    int64_t sent = clock_mono_ns();
    send_call(fd, key, extra);
    for (;;) {
        ssize_t r = recv(fd, b + n, sizeof b - 1 - n, 0);
        if (r <= 0)
            die("recv");
        int64_t now = clock_mono_ns();
        n += (size_t)r;
        b[n] = '\0';
        char *p;
        while ((p = strstr(b + scanned, ": t=")) != NULL && strchr(p, '\n')) {
            if (first) {
                add(ttfb, now - sent);
                first = 0;
            }
            add(delay, now - strtoll(p + 4, NULL, 10));
            scanned = (size_t)(p + 4 - b);
        }
        /* the last chunk, after the head (whose own end may look like it:
         * "request-id: req_fake_10\r\n\r\n") */
        char *head = strstr(b, "\r\n\r\n");
        if (head && n >= 7 && b + n - 7 >= head + 4 && memcmp(b + n - 7, "\r\n0\r\n\r\n", 7) == 0)
            break;
    }
}

/* ---- memory ------------------------------------------------------------------------------ */

/* K calls stalled mid-stream at once; returns the gateway's KiB per call. */
static double in_flight(int k, long *base, long *held, long *threads)
{
    int *fds = calloc((size_t)k, sizeof(int));
    *base = rss_kib(gw_pid, NULL);
    for (int i = 0; i < k; i++) {
        fds[i] = dial(gw_port);
        send_call(fds[i], token, "x-fake-stall-after: 1\r\nx-fake-stall-ms: 20000\r\n");
    }
    /* every call has its first event: all are in flight, stalled */
    for (int i = 0; i < k; i++) {
        char b[8192];
        size_t n = 0;
        b[0] = '\0';
        while (!strstr(b, "message_start")) {
            struct pollfd pf = {fds[i], POLLIN, 0};
            if (poll(&pf, 1, 20000) <= 0)
                die("a call in flight did not start");
            ssize_t r = recv(fds[i], b + n, sizeof b - 1 - n, 0);
            if (r <= 0)
                die("recv in flight");
            n += (size_t)r;
            b[n] = '\0';
        }
    }
    usleep(200 * 1000);
    *held = rss_kib(gw_pid, threads);
    for (int i = 0; i < k; i++)
        close(fds[i]);
    free(fds);
    /* the gateway sees the hang-ups and ends the calls */
    for (int i = 0; i < 100; i++) {
        long t = 0;
        rss_kib(gw_pid, &t);
        if (t <= 2)
            break;
        usleep(50 * 1000);
    }
    return (double)(*held - *base) / k;
}

/* N calls each way against the upstream on port (the gateway's run for it has
 * tok), alternating which goes first; prints the figures. */
static void latency(const char *name, int port, const char *tok, const char *extra, int n)
{
    int direct = dial(port), via = dial(gw_port);
    samples t_d = {0}, t_g = {0}, d_d = {0}, d_g = {0};
    for (int i = 0; i < 20; i++) { /* warm up both paths */
        samples x = {0}, y = {0};
        one_call(direct, REAL_KEY, extra, &x, &y);
        one_call(via, tok, extra, &x, &y);
        free(x.v);
        free(y.v);
    }
    for (int i = 0; i < n; i++) {
        if (i % 2 == 0) {
            one_call(direct, REAL_KEY, extra, &t_d, &d_d);
            one_call(via, tok, extra, &t_g, &d_g);
        } else {
            one_call(via, tok, extra, &t_g, &d_g);
            one_call(direct, REAL_KEY, extra, &t_d, &d_d);
        }
    }
    close(direct);
    close(via);
    double o[8] = {over(&t_d, 1), over(&t_d, 10), over(&t_g, 1), over(&t_g, 10),
                   over(&d_d, 1), over(&d_d, 10), over(&d_g, 1), over(&d_g, 10)};
    double td50 = pct_ms(t_d.v, t_d.n, 0.5), td99 = pct_ms(t_d.v, t_d.n, 0.99);
    double tg50 = pct_ms(t_g.v, t_g.n, 0.5), tg99 = pct_ms(t_g.v, t_g.n, 0.99);
    double dd50 = pct_ms(d_d.v, d_d.n, 0.5), dd99 = pct_ms(d_d.v, d_d.n, 0.99);
    double dg50 = pct_ms(d_g.v, d_g.n, 0.5), dg99 = pct_ms(d_g.v, d_g.n, 0.99);
    printf(" upstream: %s (%zu events per call)\n", name, d_g.n / (size_t)n);
    printf("  time to first event  direct p50 %6.3f ms p99 %7.3f | gateway p50 %6.3f ms p99 "
           "%7.3f | added p50 %+.3f ms (target < 1 ms), p99 %+.3f | ratio p50 %.2fx\n",
           td50, td99, tg50, tg99, tg50 - td50, tg99 - td99, td50 > 0 ? tg50 / td50 : 0);
    printf("  per-event delay      direct p50 %6.3f ms p99 %7.3f | gateway p50 %6.3f ms p99 "
           "%7.3f | added p50 %+.3f ms (target < 1 ms), p99 %+.3f | ratio p50 %.2fx\n",
           dd50, dd99, dg50, dg99, dg50 - dd50, dg99 - dd99, dd50 > 0 ? dg50 / dd50 : 0);
    printf("  over 1 ms / 10 ms    first event: direct %.1f%% / %.1f%%, gateway %.1f%% / %.1f%%; "
           "events: direct %.2f%% / %.2f%%, gateway %.2f%% / %.2f%%\n",
           o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]);
    free(t_d.v);
    free(t_g.v);
    free(d_d.v);
    free(d_g.v);
}

int main(int argc, char **argv)
{
    int n = 300, events = 20, delay_ms = 1, k = 200;
    int c;
    while ((c = getopt(argc, argv, "n:e:d:k:")) != -1) {
        switch (c) {
        case 'n':
            n = atoi(optarg);
            break;
        case 'e':
            events = atoi(optarg);
            break;
        case 'd':
            delay_ms = atoi(optarg);
            break;
        case 'k':
            k = atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: bench_gateway [-n calls] [-e events] [-d ms] [-k in flight]\n");
            return 2;
        }
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    fake_start();
    stub_start(events, delay_ms);
    int ctl = gw_start();

    double load[3] = {0};
    getloadavg(load, 3);
    printf("bench_gateway: %d streamed calls each way, alternating (Anthropic Messages, %d text "
           "deltas %d ms apart), kept-alive connections on loopback; %ld CPUs, load average "
           "%.1f (p99 figures follow the load; p50 ones hardly do)\n",
           n, events, delay_ms, sysconf(_SC_NPROCESSORS_ONLN), load[0]);
    char extra[256];
    snprintf(extra, sizeof extra, "x-fake-stamp: 1\r\nx-fake-events: %d\r\nx-fake-delay-ms: %d\r\n",
             events, delay_ms);
    latency("tests/fakes/fake_model.py", fake_port, token, extra, n);
    latency("stub upstream in C", stub_port, stub_token, "", n);

    long base, held, threads = 0;
    double cold = in_flight(k, &base, &held, &threads);
    printf(" memory (upstream: the fake, stalled after the first event)\n");
    printf("  %d calls in flight, cold: gateway RSS %ld -> %ld KiB, %.1f KiB per call "
           "(target < 64 KiB), %ld threads\n",
           k, base, held, cold, threads);
    double warm = in_flight(k, &base, &held, &threads);
    printf("  %d calls in flight, warm (after the first %d ended): RSS %ld -> %ld KiB, %.1f KiB "
           "per call\n",
           k, k, base, held, warm);
    fflush(stdout);

    close(ctl);
    waitpid(gw_pid, NULL, 0);
    kill(fake_pid, SIGTERM);
    waitpid(fake_pid, NULL, 0);
    return 0;
}
