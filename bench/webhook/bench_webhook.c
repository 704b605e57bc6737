/*
 * bench_webhook.c - how fast the farm acknowledges webhook deliveries,
 * against a server that does nothing.
 *
 * N signed `issues.labeled` deliveries (each for a new issue, so each is
 * accepted: a delivery row, a session, a job, one group-committed
 * transaction) are sent over C keep-alive connections, first to a null
 * libmicrohttpd server (same flags and thread pool as the farm's) that
 * answers 202 at once, then to `farm serve` started as a child process on a
 * temporary config and data directory. Latency is from the moment a request
 * was due (with --rate, its slot in the schedule; else when it was sent) to
 * the end of its response, so a stalled server cannot hide its queue.
 *
 * By default the farm runs whole, scheduler included: every accepted
 * delivery queues a run that the scheduler starts (and that fails at once,
 * its clone URL being unreachable), so the figures include that work.
 * --intake-only starts `farm serve --intake-only` to measure intake alone.
 * --store URL puts the farm's store there (store.url: "sqlite:" by
 * default, or a PostgreSQL URL; bench/nodes compares the two).
 */
#include "base/crypto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SECRET "bench-webhook-secret-0123456789abcdef"

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the requests, built before the clock starts --------------------------- */

typedef struct request {
    char *data;
    size_t len;
} request;

static request *build_requests(const char *prefix, int n, int first_issue)
{
    request *r = calloc((size_t)n, sizeof(*r));
    if (!r)
        abort();
    for (int i = 0; i < n; i++) {
        char body[1024];
        int blen = snprintf(
            body, sizeof(body),
            "{\"action\":\"labeled\",\"issue\":{\"number\":%d,\"title\":\"Bench issue %d\","
            "\"body\":\"Something to fix.\",\"html_url\":\"https://github.com/octo/app/issues/%d\","
            "\"user\":{\"login\":\"octocat\",\"type\":\"User\"},\"author_association\":\"OWNER\","
            "\"labels\":[{\"name\":\"agent\"}],\"assignees\":[]},\"label\":{\"name\":\"agent\"},"
            "\"repository\":{\"full_name\":\"octo/app\"},\"sender\":{\"login\":\"octocat\","
            "\"type\":\"User\"}}",
            first_issue + i, first_issue + i, first_issue + i);
        unsigned char mac[32];
        char hex[65];
        crypto_hmac_sha256(mac, SECRET, strlen(SECRET), body, (size_t)blen);
        crypto_hex(hex, mac, 32);
        size_t cap = (size_t)blen + 512;
        r[i].data = malloc(cap);
        r[i].len = (size_t)snprintf(r[i].data, cap,
                                    "POST /hooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                    "Content-Type: application/json\r\nX-GitHub-Event: issues\r\n"
                                    "X-GitHub-Delivery: %s-%d\r\nX-Hub-Signature-256: sha256=%s\r\n"
                                    "Content-Length: %d\r\n\r\n%s",
                                    prefix, i, hex, blen, body);
    }
    return r;
}

static void free_requests(request *r, int n)
{
    for (int i = 0; i < n; i++)
        free(r[i].data);
    free(r);
}

/* ---- the load generator ------------------------------------------------------ */

typedef struct load {
    int port;
    request *req;
    int n;
    double rate; /* deliveries/s, 0: as fast as possible */
    int64_t t0;
    atomic_int next;
    int64_t *lat; /* ns, per request */
    atomic_int errors;
} load;

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Send one request and read its response; the HTTP status, or -1 when the
 * connection failed. *keep is cleared when the server closes it. */
static int roundtrip(int fd, const request *r, int *keep)
{
    size_t off = 0;
    while (off < r->len) {
        ssize_t w = send(fd, r->data + off, r->len - off, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        off += (size_t)w;
    }
    char buf[8192];
    size_t have = 0;
    char *end = NULL;
    while (!end) {
        ssize_t got = recv(fd, buf + have, sizeof(buf) - 1 - have, 0);
        if (got <= 0)
            return -1;
        have += (size_t)got;
        buf[have] = '\0';
        end = strstr(buf, "\r\n\r\n");
        if (!end && have >= sizeof(buf) - 1)
            return -1;
    }
    int status = atoi(buf + 9);
    const char *cl = strcasestr(buf, "\r\nContent-Length:");
    size_t body = cl ? (size_t)strtoul(cl + 17, NULL, 10) : 0;
    *keep = strcasestr(buf, "\r\nConnection: close") == NULL;
    size_t head = (size_t)(end + 4 - buf);
    size_t rest = have - head;
    while (rest < body) {
        ssize_t got = recv(fd, buf, sizeof(buf), 0);
        if (got <= 0)
            return -1;
        rest += (size_t)got;
    }
    return status;
}

static void *client_main(void *arg)
{
    load *l = arg;
    int fd = -1;
    for (;;) {
        int i = atomic_fetch_add(&l->next, 1);
        if (i >= l->n)
            break;
        int64_t due = now_ns();
        if (l->rate > 0) {
            due = l->t0 + (int64_t)((double)i * 1e9 / l->rate);
            int64_t wait = due - now_ns();
            if (wait > 0) {
                struct timespec ts = {wait / 1000000000, wait % 1000000000};
                nanosleep(&ts, NULL);
            }
        }
        int keep = 1, status = -1;
        for (int attempt = 0; attempt < 2 && status < 0; attempt++) {
            if (fd < 0)
                fd = connect_to(l->port);
            if (fd >= 0)
                status = roundtrip(fd, &l->req[i], &keep);
            if (status < 0 || !keep) {
                if (fd >= 0)
                    close(fd);
                fd = -1;
            }
        }
        l->lat[i] = now_ns() - due;
        if (status < 200 || status > 299)
            atomic_fetch_add(&l->errors, 1);
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct result {
    double per_s;
    double p50_ms, p99_ms, max_ms;
    int errors;
} result;

static result run_load(int port, request *req, int n, int conc, double rate)
{
    load l = {.port = port, .req = req, .n = n, .rate = rate};
    atomic_init(&l.next, 0);
    atomic_init(&l.errors, 0);
    l.lat = calloc((size_t)n, sizeof(int64_t));
    pthread_t *t = calloc((size_t)conc, sizeof(pthread_t));
    l.t0 = now_ns();
    for (int i = 0; i < conc; i++)
        pthread_create(&t[i], NULL, client_main, &l);
    for (int i = 0; i < conc; i++)
        pthread_join(t[i], NULL);
    int64_t elapsed = now_ns() - l.t0;
    qsort(l.lat, (size_t)n, sizeof(int64_t), cmp_i64);
    result r = {
        .per_s = (double)n / ((double)elapsed / 1e9),
        .p50_ms = (double)l.lat[n / 2] / 1e6,
        .p99_ms = (double)l.lat[(size_t)((double)n * 0.99)] / 1e6,
        .max_ms = (double)l.lat[n - 1] / 1e6,
        .errors = atomic_load(&l.errors),
    };
    free(l.lat);
    free(t);
    return r;
}

/* ---- the null server ------------------------------------------------------- */

static enum MHD_Result null_access(void *cls, struct MHD_Connection *c, const char *url,
                                   const char *method, const char *version, const char *data,
                                   size_t *size, void **state)
{
    static int marker;
    if (!*state) {
        *state = &marker;
        return MHD_YES;
    }
    if (*size) {
        *size = 0; /* read and dropped */
        return MHD_YES;
    }
    static const char body[] = "{\"result\":\"accepted\",\"session\":1}\n";
    struct MHD_Response *r =
        MHD_create_response_from_buffer(sizeof(body) - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ok = MHD_queue_response(c, 202, r);
    MHD_destroy_response(r);
    return ok;
}

static struct MHD_Daemon *null_start(int threads, int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC, 0,
        NULL, NULL, null_access, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads, MHD_OPTION_CONNECTION_LIMIT, (unsigned)4096,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024, MHD_OPTION_END);
    if (!d)
        return NULL;
    *port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
    return d;
}

/* ---- the farm, as a child process -------------------------------------------- */

typedef struct child {
    pid_t pid;
    int err_fd;
    pthread_t drain;
} child;

static void *drain_main(void *arg)
{
    child *c = arg;
    char buf[65536];
    while (read(c->err_fd, buf, sizeof(buf)) > 0)
        ;
    return NULL;
}

static const char *store_url = "sqlite:";

static int farm_start(child *c, const char *farm_bin, const char *dir, int intake_only, int *port)
{
    char cfg[4200], data[4200];
    snprintf(cfg, sizeof(cfg), "%s/farm.json", dir);
    snprintf(data, sizeof(data), "%s/data", dir);
    FILE *f = fopen(cfg, "w");
    if (!f)
        return -1;
    fprintf(f,
            "{\"listen\":\"127.0.0.1:0\",\"data_dir\":\"%s\",\"log_level\":\"warn\","
            "\"store\":{\"url\":\"%s\"},"
            "\"http\":{\"max_connections_per_ip\":0},"
            "\"github\":{\"api_url\":\"http://127.0.0.1:9\",\"webhook_secret\":"
            "\"env:FARM_BENCH_SECRET\",\"bot_login\":\"farm-bot\"},"
            "\"repos\":[{\"name\":\"octo/app\",\"tracker\":\"github\",\"clone_url\":"
            "\"https://github.com/octo/app.git\",\"trigger\":{\"label\":\"agent\"}}]}\n",
            data, store_url);
    fclose(f);
    int p[2];
    if (pipe(p) != 0)
        return -1;
    c->pid = fork();
    if (c->pid < 0)
        return -1;
    if (c->pid == 0) {
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        setenv("FARM_BENCH_SECRET", SECRET, 1);
        if (intake_only)
            execl(farm_bin, farm_bin, "serve", "--config", cfg, "--intake-only", (char *)NULL);
        else
            execl(farm_bin, farm_bin, "serve", "--config", cfg, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    c->err_fd = p[0];
    /* Read stderr until the human start line names the port. */
    char line[8192];
    size_t have = 0;
    for (;;) {
        ssize_t got = read(c->err_fd, line + have, sizeof(line) - 1 - have);
        if (got <= 0)
            return -1;
        have += (size_t)got;
        line[have] = '\0';
        const char *m = strstr(line, "farm: listening on http://127.0.0.1:");
        if (m && strchr(m, '\n')) {
            *port = atoi(m + strlen("farm: listening on http://127.0.0.1:"));
            break;
        }
        if (have >= sizeof(line) - 1)
            have = 0;
    }
    pthread_create(&c->drain, NULL, drain_main, c);
    return 0;
}

/* The value of one unlabelled series in the farm's /metrics, or -1. */
static double farm_metric(int port, const char *name)
{
    int fd = connect_to(port);
    if (fd < 0)
        return -1;
    const char *q = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (send(fd, q, strlen(q), MSG_NOSIGNAL) < 0) {
        close(fd);
        return -1;
    }
    static char page[1 << 20];
    size_t have = 0;
    ssize_t got;
    while (have < sizeof(page) - 1 && (got = recv(fd, page + have, sizeof(page) - 1 - have, 0)) > 0)
        have += (size_t)got;
    close(fd);
    page[have] = '\0';
    char key[128];
    snprintf(key, sizeof(key), "\n%s ", name);
    const char *m = strstr(page, key);
    return m ? atof(m + strlen(key)) : -1;
}

static void farm_stop(child *c)
{
    kill(c->pid, SIGTERM);
    waitpid(c->pid, NULL, 0);
    pthread_join(c->drain, NULL);
    close(c->err_fd);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* ---- main ------------------------------------------------------------------- */

#define MAX_RUNS 15

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Each figure's median over the runs, taken on its own. */
static result median(const result *v, int n)
{
    double a[MAX_RUNS];
    result m = {0};
    double *fields[] = {&m.per_s, &m.p50_ms, &m.p99_ms, &m.max_ms};
    for (int f = 0; f < 4; f++) {
        for (int i = 0; i < n; i++) {
            const double *src[] = {&v[i].per_s, &v[i].p50_ms, &v[i].p99_ms, &v[i].max_ms};
            a[i] = *src[f];
        }
        qsort(a, (size_t)n, sizeof(double), cmp_double);
        *fields[f] = a[n / 2];
    }
    for (int i = 0; i < n; i++)
        m.errors += v[i].errors;
    return m;
}

static void print(const char *name, result r)
{
    printf("%-6s %10.0f deliveries/s   p50 %7.3f ms   p99 %7.3f ms   max %7.3f ms   errors %d\n",
           name, r.per_s, r.p50_ms, r.p99_ms, r.max_ms, r.errors);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"requests", required_argument, NULL, 'n'}, {"concurrency", required_argument, NULL, 'c'},
        {"rate", required_argument, NULL, 'r'},     {"farm", required_argument, NULL, 'f'},
        {"dir", required_argument, NULL, 'd'},      {"threads", required_argument, NULL, 't'},
        {"runs", required_argument, NULL, 'R'},     {"intake-only", no_argument, NULL, 'I'},
        {"store", required_argument, NULL, 'S'},    {NULL, 0, NULL, 0},
    };
    int n = 10000, conc = 32, threads = 0, runs = 3, intake_only = 0;
    double rate = 0;
    const char *farm_bin = FARM_BIN_PATH, *base = NULL;
    int o;
    while ((o = getopt_long(argc, argv, "n:c:r:f:d:t:R:IS:", opts, NULL)) != -1) {
        switch (o) {
        case 'n':
            n = atoi(optarg);
            break;
        case 'c':
            conc = atoi(optarg);
            break;
        case 'r':
            rate = atof(optarg);
            break;
        case 'f':
            farm_bin = optarg;
            break;
        case 'd':
            base = optarg;
            break;
        case 't':
            threads = atoi(optarg);
            break;
        case 'R':
            runs = atoi(optarg);
            break;
        case 'I':
            intake_only = 1;
            break;
        case 'S':
            if (strchr(optarg, '"') || strchr(optarg, '\\')) {
                fprintf(stderr, "bench_webhook: --store: no quotes or backslashes\n");
                return 2;
            }
            store_url = optarg;
            break;
        default:
            fprintf(stderr, "usage: bench_webhook [-n N] [-c C] [--rate R] [--farm PATH] "
                            "[--dir DIR] [--threads T] [--runs R] [--intake-only] [--store URL]\n");
            return 2;
        }
    }
    if (n < 100 || conc < 1 || conc > 1024 || runs < 1 || runs > MAX_RUNS) {
        fprintf(stderr, "bench_webhook: -n must be >= 100, -c within 1..1024, --runs within "
                        "1..15\n");
        return 2;
    }
    if (threads <= 0) { /* the farm's default: CPUs, within 2..8 */
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cpus < 2 ? 2 : cpus > 8 ? 8 : (int)cpus;
    }
    signal(SIGPIPE, SIG_IGN);
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/bench-webhook-XXXXXX", base ? base : "/var/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    int warm = n / 10 < 500 ? n / 10 : 500;
    printf(
        "webhook intake: %d signed deliveries x %d runs, %d connections, %s, %d HTTP threads%s\n",
        n, runs, conc, rate > 0 ? "paced" : "unpaced", threads,
        intake_only ? ", farm serve --intake-only" : "");
    double avg[3];
    if (getloadavg(avg, 3) == 3)
        printf("load average at start: %.2f %.2f %.2f on %ld CPUs\n", avg[0], avg[1], avg[2],
               sysconf(_SC_NPROCESSORS_ONLN));
    if (rate > 0)
        printf("rate: %.0f deliveries/s\n", rate);

    /* Both servers run side by side and the runs alternate, so a machine
     * busy with something else slows both alike. */
    int null_port = 0, farm_port = 0;
    struct MHD_Daemon *d = null_start(threads, &null_port);
    if (!d) {
        fprintf(stderr, "bench_webhook: cannot start the null server\n");
        return 1;
    }
    child c;
    if (farm_start(&c, farm_bin, dir, intake_only, &farm_port) != 0) {
        fprintf(stderr, "bench_webhook: cannot start %s\n", farm_bin);
        MHD_stop_daemon(d);
        return 1;
    }
    request *wreq = build_requests("warm", warm, 1);
    run_load(null_port, wreq, warm, conc, 0);
    run_load(farm_port, wreq, warm, conc, 0);
    free_requests(wreq, warm);

    result null_r[MAX_RUNS], farm_r[MAX_RUNS];
    int errors = 0;
    for (int r = 0; r < runs; r++) {
        char prefix[32];
        snprintf(prefix, sizeof(prefix), "run%d", r);
        request *req = build_requests(prefix, n, 1000000 + r * n);
        null_r[r] = run_load(null_port, req, n, conc, rate);
        farm_r[r] = run_load(farm_port, req, n, conc, rate);
        free_requests(req, n);
        printf("run %d:\n", r + 1);
        print("  null", null_r[r]);
        print("  farm", farm_r[r]);
        errors += null_r[r].errors + farm_r[r].errors;
    }
    double commits = farm_metric(farm_port, "farm_store_commits_total");
    double writes = farm_metric(farm_port, "farm_store_writes_total");
    double max_batch = farm_metric(farm_port, "farm_store_max_batch");
    farm_stop(&c);
    MHD_stop_daemon(d);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);

    result null_m = median(null_r, runs), farm_m = median(farm_r, runs);
    printf("median of %d runs:\n", runs);
    print("  null", null_m);
    print("  farm", farm_m);
    if (commits > 0)
        printf("farm group commit: %.0f writes in %.0f commits (%.1f per commit, max %.0f)\n",
               writes, commits, writes / commits, max_batch);
    if (rate > 0) {
        /* Paced: both should keep the pace; latency is what is measured. */
        printf("farm kept %.0f of %.0f deliveries/s (%.0f%%); p99 %.3f ms (target < 5 ms)\n",
               farm_m.per_s, rate, 100.0 * farm_m.per_s / rate, farm_m.p99_ms);
    } else {
        printf("ratio farm/null throughput: %.3f (target >= 0.5)\n", farm_m.per_s / null_m.per_s);
    }
    return errors ? 1 : 0;
}
