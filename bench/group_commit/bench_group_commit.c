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
#include "farm/config/config.h"
#include "farm/farm.h"
#include "farm/intake/ingest.h"
#include "farm/store/store.h"

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
    int64_t *lat_ns; /* one per ingest */
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
        int64_t t0 = clock_mono_ns();
        if (farm_ingest(w->f, &ev, &r) != 0 || r.outcome != INGEST_ACCEPTED)
            w->failures++;
        w->lat_ns[i] = clock_mono_ns() - t0;
    }
    return NULL;
}

static int by_ns(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* One run: deliveries split over threads; returns deliveries per second,
 * the commits it took and the median and 99th percentile latency of one
 * farm_ingest() in ms. */
static double run(int deliveries, int threads, uint64_t *commits, double *p50, double *p99)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char dir[4096], path[4200];
    config *c = NULL;
    farm *f = NULL;
    char *errors = NULL;

    snprintf(dir, sizeof(dir), "%s/farm-group-commit-XXXXXX", base);
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

    int per = deliveries / threads, total = per * threads;
    pthread_t *t = calloc((size_t)threads, sizeof(*t));
    worker *w = calloc((size_t)threads, sizeof(*w));
    int64_t *lat = calloc((size_t)total, sizeof(*lat));
    if (!t || !w || !lat)
        fatal("out of memory");
    store_stats before, after;
    store_stats_get(&before, farm_store(f));
    int64_t t0 = clock_mono_ns();
    for (int i = 0; i < threads; i++) {
        w[i] = (worker){f, i, per, 0, lat + (size_t)i * (size_t)per};
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
    qsort(lat, (size_t)total, sizeof(*lat), by_ns);
    *p50 = (double)lat[total / 2] / 1e6;
    *p99 = (double)lat[(size_t)total * 99 / 100] / 1e6;
    free(lat);
    free(t);
    free(w);
    farm_close(f);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return (double)total / ((double)(t1 - t0) / 1e9);
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
    double base[ROUNDS], group[ROUNDS], bp50[ROUNDS], bp99[ROUNDS], gp50[ROUNDS], gp99[ROUNDS];
    uint64_t base_commits = 0, group_commits = 0;

    if (deliveries < threads || threads < 1)
        fatal("usage: bench_group_commit [deliveries >= threads] [threads >= 1]");
    log_set_level(LOG_ERROR);
    for (int r = 0; r < ROUNDS; r++) {
        base[r] = run(deliveries, 1, &base_commits, &bp50[r], &bp99[r]);
        group[r] = run(deliveries, threads, &group_commits, &gp50[r], &gp99[r]);
    }
    double *all[] = {base, group, bp50, bp99, gp50, gp99};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        qsort(all[i], ROUNDS, sizeof(double), by_value);
    printf("group commit: %d deliveries, median of %d runs\n", deliveries, ROUNDS);
    printf("  baseline   1 thread : %9.0f deliveries/s, latency p50 %.2f ms, p99 %.2f ms"
           " (%llu commits in the last run)\n",
           base[ROUNDS / 2], bp50[ROUNDS / 2], bp99[ROUNDS / 2], (unsigned long long)base_commits);
    printf("  group    %3d threads: %9.0f deliveries/s, latency p50 %.2f ms, p99 %.2f ms"
           " (%llu commits in the last run)\n",
           threads, group[ROUNDS / 2], gp50[ROUNDS / 2], gp99[ROUNDS / 2],
           (unsigned long long)group_commits);
    printf("  ratio: %.2fx\n", group[ROUNDS / 2] / base[ROUNDS / 2]);
    return 0;
}
