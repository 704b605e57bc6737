/*
 * bench_digest.c - what the review queue's facts cost.
 *
 * N sessions (default 500) spread over the states, each with the log a run
 * leaves (steps, test results, a run end) and OUTPUT lines of agent output
 * in its current step (default 200), are written to a fresh store.
 * Baseline: listing every section of the digest and turning the sessions
 * into JSON, without looking at their logs. Measured: digest_build(), which
 * also reads each session's newest telling events and derives its facts
 * (tests, diffstat, step, reason, question, duration). Each is run ROUNDS
 * times; the medians and their ratio are printed.
 *
 *     bench_digest [sessions] [output-lines-per-session]
 */
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/config/config.h"
#include "farm/digest/digest.h"
#include "farm/farm.h"
#include "farm/store/store.h"
#include "farm/store/store_run.h"

#include <ftw.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ROUNDS 9

static const char *const states[] = {"queued",  "preparing", "running",  "testing",
                                     "pushing", "review",    "revising", "waiting",
                                     "done",    "failed",    "cancelled"};

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

typedef struct seed {
    int i, output;
} seed;

static int seed_write(store_tx *tx, void *arg)
{
    seed *sd = arg;
    store_session s = {0};
    char title[64], line[160];
    int64_t id;
    int rc;

    snprintf(title, sizeof(title), "Issue %d: make it better", sd->i);
    s.tracker = "github";
    s.repo = "octo/app";
    s.number = 1000 + sd->i;
    s.title = title;
    s.url = "https://github.com/octo/app/issues/1";
    if ((rc = store_tx_session_insert(&id, tx, &s)))
        return rc;
    static const char *const log[][2] = {
        {"run_started", "{\"run\":1,\"kind\":\"run\"}"},
        {"step", "{\"run\":1,\"step\":\"fetch\",\"status\":\"started\"}"},
        {"step", "{\"run\":1,\"step\":\"fetch\",\"status\":\"done\",\"ms\":300}"},
        {"step", "{\"run\":1,\"step\":\"agent\",\"status\":\"started\",\"round\":1}"},
        {"step", "{\"run\":1,\"step\":\"agent\",\"status\":\"done\",\"round\":1}"},
        {"step", "{\"run\":1,\"step\":\"test\",\"status\":\"started\",\"round\":1}"},
        {"step", "{\"run\":1,\"step\":\"test\",\"status\":\"done\",\"round\":1}"},
        {"test_result", "{\"run\":1,\"round\":1,\"exit\":0,\"passed\":true}"},
        {"run_finished", "{\"run\":1,\"outcome\":\"pr\",\"diffstat\":{\"files\":3,"
                         "\"insertions\":42,\"deletions\":7}}"},
        {"step", "{\"run\":2,\"step\":\"agent\",\"status\":\"started\",\"round\":1}"},
    };
    for (size_t k = 0; k < sizeof(log) / sizeof(log[0]); k++)
        if ((rc = store_tx_event_append(NULL, tx, id, log[k][0], NULL, log[k][1])))
            return rc;
    for (int k = 0; k < sd->output; k++) {
        snprintf(line, sizeof(line),
                 "{\"step\":\"agent\",\"stream\":\"stdout\",\"text\":\"line %d of the agent\"}", k);
        if ((rc = store_tx_event_append(NULL, tx, id, "output", NULL, line)))
            return rc;
    }
    return store_tx_session_state_set(tx, id, states[sd->i % 11]);
}

/* The baseline: the digest's lists without the facts. */
static int plain_lists(store *s)
{
    static const char *const st[] = {"review",    "waiting",   "failed",  "done",
                                     "cancelled", "preparing", "running", "testing",
                                     "pushing",   "revising",  "queued"};
    json_t *all = json_array();
    for (size_t i = 0; i < sizeof(st) / sizeof(st[0]); i++) {
        store_session_filter f = STORE_SESSION_FILTER_INIT;
        store_session *v = NULL;
        size_t n = 0;
        f.state = st[i];
        f.limit = DIGEST_SECTION_MAX;
        if (store_session_list(&v, &n, s, &f))
            return -1;
        for (size_t k = 0; k < n; k++)
            json_array_append_new(all, digest_session_json(&v[k]));
        store_session_list_free(v, n);
    }
    char *text = json_dumps(all, JSON_COMPACT);
    json_decref(all);
    free(text);
    return 0;
}

static int with_facts(store *s)
{
    json_t *d = NULL;
    int64_t now = clock_wall_ms();
    if (digest_build(&d, s, now - 86400000LL, now))
        return -1;
    char *text = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    free(text);
    return 0;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Medians of the wall time and of this thread's CPU time (the work runs on
 * the calling thread; the CPU time holds steady on a busy machine). */
static void medians(double *wall, double *cpu, int (*fn)(store *), store *s)
{
    double w[ROUNDS], c[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        int64_t t0 = clock_mono_ns(), c0 = cpu_ns();
        if (fn(s)) {
            fprintf(stderr, "bench_digest: %s\n", farm_error_last());
            exit(1);
        }
        w[r] = (double)(clock_mono_ns() - t0) / 1e6;
        c[r] = (double)(cpu_ns() - c0) / 1e6;
    }
    qsort(w, ROUNDS, sizeof(w[0]), cmp);
    qsort(c, ROUNDS, sizeof(c[0]), cmp);
    *wall = w[ROUNDS / 2];
    *cpu = c[ROUNDS / 2];
}

int main(int argc, char **argv)
{
    int sessions = argc > 1 ? atoi(argv[1]) : 500;
    int output = argc > 2 ? atoi(argv[2]) : 200;
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char *dir = NULL, *cfgpath = NULL;
    config *c = NULL;
    farm *f = NULL;

    if (sessions < 1 || sessions > 100000 || output < 0 || output > 100000) {
        fprintf(stderr, "usage: bench_digest [sessions 1..100000] [output-lines 0..100000]\n");
        return 2;
    }
    log_set_level(LOG_WARN);
    if (asprintf(&dir, "%s/farm-digest-XXXXXX", base) < 0 || !mkdtemp(dir) ||
        asprintf(&cfgpath, "%s/farm.json", dir) < 0) {
        perror("bench_digest");
        return 1;
    }
    FILE *fp = fopen(cfgpath, "w");
    if (!fp) {
        perror(cfgpath);
        return 1;
    }
    fprintf(fp, "{\"listen\": \"127.0.0.1:0\", \"data_dir\": \"%s/data\"}", dir);
    fclose(fp);
    char *errors = NULL;
    if (config_load(&c, cfgpath, &errors) || farm_open(&f, c)) {
        fprintf(stderr, "bench_digest: %s\n", errors ? errors : farm_error_last());
        return 1;
    }
    int64_t t0 = clock_mono_ns();
    for (int i = 0; i < sessions; i++) {
        seed sd = {i, output};
        if (store_write(farm_store(f), seed_write, &sd)) {
            fprintf(stderr, "bench_digest: seeding: %s\n", farm_error_last());
            return 1;
        }
    }
    printf("seeded %d sessions, %d output lines each, in %.0f ms\n", sessions, output,
           (double)(clock_mono_ns() - t0) / 1e6);

    double pw, pc, fw, fc;
    medians(&pw, &pc, plain_lists, farm_store(f));
    medians(&fw, &fc, with_facts, farm_store(f));
    printf("%-56s %9s %9s\n", "median of 9 rounds", "wall ms", "cpu ms");
    printf("%-56s %9.2f %9.2f\n", "baseline: the digest's lists as JSON, without facts", pw, pc);
    printf("%-56s %9.2f %9.2f\n", "digest_build: with the facts from every session's log", fw, fc);
    printf("ratio (digest / baseline): wall %.2f, cpu %.2f\n", fw / pw, fc / pc);

    farm_close(f);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
    free(cfgpath);
    return 0;
}
