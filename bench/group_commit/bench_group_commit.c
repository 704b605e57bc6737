/*
 * bench_group_commit.c - what the store's group commit buys on the hot path.
 *
 * Baseline: N deliveries ingested one after another, so each is its own
 * transaction and fsync. Measured: the same number of deliveries ingested by
 * THREADS threads at once, so the writer thread batches whatever queued
 * during the previous fsync. Each is run ROUNDS times on a fresh data
 * directory (on TMPDIR's disk: the fsync is the point); the medians and
 * their ratio are printed.
 *
 *     bench_group_commit [deliveries] [threads]
 */
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/config.h"
#include "farm/farm.h"
#include "farm/ingest.h"
#include "farm/store.h"

#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ROUNDS 5

typedef struct worker {
    farm *f;
    int thread, count, failures;
} worker;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void *ingest_many(void *arg)
{
    worker *w = arg;
    char id[48];
    for (int i = 0; i < w->count; i++) {
        tracker_event ev = {0};
        ingest_result r;
        snprintf(id, sizeof(id), "bench-%d-%d", w->thread, i);
        ev.kind = TEV_ISSUE_LABELED;
        ev.tracker = "github";
        ev.delivery_id = id;
        ev.event = "issues";
        ev.repo = "octo/app";
        ev.number = 1 + (int64_t)w->thread * w->count + i;
        ev.label = "agent";
        ev.actor = "alice";
        ev.actor_access = ACTOR_WRITE;
        if (farm_ingest(w->f, &ev, &r) != 0 || r.outcome != INGEST_ACCEPTED)
            w->failures++;
    }
    return NULL;
}

/* One run: deliveries split over threads; returns deliveries per second and
 * the commits it took. */
static double run(int deliveries, int threads, uint64_t *commits)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char dir[4096], path[4200];
    config *c = NULL;
    farm *f = NULL;
    char *errors = NULL;

    snprintf(dir, sizeof(dir), "%s/farm-bench-XXXXXX", base);
    if (!mkdtemp(dir))
        fatal("mkdtemp failed");
    snprintf(path, sizeof(path), "%s/farm.json", dir);
    FILE *fp = fopen(path, "w");
    if (!fp)
        fatal("cannot write %s", path);
    fprintf(fp,
            "{\"data_dir\": \"%s/data\", \"github\": {}, \"repos\": [{\"name\": \"octo/app\","
            " \"tracker\": \"github\", \"clone_url\": \"x\", \"trigger\": {\"label\": "
            "\"agent\"}}]}",
            dir);
    fclose(fp);
    if (config_load(&c, path, &errors))
        fatal("config: %s", errors);
    if (farm_open(&f, c))
        fatal("farm_open: %s", farm_error_last());

    pthread_t *t = calloc((size_t)threads, sizeof(*t));
    worker *w = calloc((size_t)threads, sizeof(*w));
    store_stats before, after;
    store_stats_get(&before, farm_store(f));
    int64_t t0 = clock_mono_ns();
    for (int i = 0; i < threads; i++) {
        w[i] = (worker){f, i, deliveries / threads, 0};
        pthread_create(&t[i], NULL, ingest_many, &w[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        if (w[i].failures)
            fatal("%d ingests failed", w[i].failures);
    }
    int64_t t1 = clock_mono_ns();
    store_stats_get(&after, farm_store(f));
    *commits = after.commits - before.commits;
    free(t);
    free(w);
    farm_close(f);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return (double)(deliveries / threads * threads) / ((double)(t1 - t0) / 1e9);
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int deliveries = argc > 1 ? atoi(argv[1]) : 800;
    int threads = argc > 2 ? atoi(argv[2]) : 16;
    double base[ROUNDS], group[ROUNDS];
    uint64_t base_commits = 0, group_commits = 0;

    if (deliveries < threads || threads < 1)
        fatal("usage: bench_group_commit [deliveries >= threads] [threads >= 1]");
    log_set_level(LOG_ERROR);
    for (int r = 0; r < ROUNDS; r++) {
        base[r] = run(deliveries, 1, &base_commits);
        group[r] = run(deliveries, threads, &group_commits);
    }
    qsort(base, ROUNDS, sizeof(double), by_value);
    qsort(group, ROUNDS, sizeof(double), by_value);
    printf("group commit: %d deliveries, median of %d runs\n", deliveries, ROUNDS);
    printf("  baseline   1 thread : %9.0f deliveries/s  (%llu commits in the last run)\n",
           base[ROUNDS / 2], (unsigned long long)base_commits);
    printf("  group    %3d threads: %9.0f deliveries/s  (%llu commits in the last run)\n", threads,
           group[ROUNDS / 2], (unsigned long long)group_commits);
    printf("  ratio: %.2fx\n", group[ROUNDS / 2] / base[ROUNDS / 2]);
    return 0;
}
