/*
 * store_bench.c - farm-store-bench: how many intake-like writes a store
 * takes (a delivery recorded and its outcome set, one store_write() each),
 * from THREADS threads at once, on either backend:
 *
 *   farm-store-bench URL DIR THREADS WRITES_PER_THREAD
 *   farm-store-bench sqlite: /tmp/b 16 100
 *   farm-store-bench 'postgresql:///farm?host=/run/postgresql' /tmp/b 16 100
 *
 * Prints one line: backend, threads, writes, milliseconds, writes per
 * second. A measuring tool, not a test: nothing here can fail but the
 * store.
 */
#include "base/clock.h"
#include "base/error.h"
#include "farm/store/store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS_MAX 64

static store *bench_store;
static int per_thread;
static unsigned long long run_id;

typedef struct one_write {
    const char *id;
    int64_t row;
} one_write;

static int write_delivery(store_tx *tx, void *arg)
{
    one_write *w = arg;
    store_delivery d = {0};
    d.tracker = "github";
    d.delivery_id = (char *)w->id;
    d.event = "issues";
    d.repo = "octo/bench";
    d.number = 1;
    int rc = store_tx_delivery_insert(&w->row, tx, &d);
    if (rc)
        return rc;
    return store_tx_delivery_outcome_set(tx, w->row, "ignored", "bench", 0, 0);
}

static void *writer(void *arg)
{
    int t = *(int *)arg;
    char id[96];
    for (int i = 0; i < per_thread; i++) {
        snprintf(id, sizeof(id), "bench-%llu-%d-%d", run_id, t, i);
        one_write w = {id, 0};
        if (store_write(bench_store, write_delivery, &w) != 0) {
            fprintf(stderr, "farm-store-bench: %s\n", farm_error_last());
            exit(1);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t t[THREADS_MAX];
    int idx[THREADS_MAX], threads;

    if (argc != 5 || (threads = atoi(argv[3])) < 1 || threads > THREADS_MAX ||
        (per_thread = atoi(argv[4])) < 1) {
        fprintf(stderr, "usage: farm-store-bench URL DIR THREADS(1..%d) WRITES_PER_THREAD\n",
                THREADS_MAX);
        return 2;
    }
    if (store_open_url(&bench_store, argv[1], argv[2]) != 0) {
        fprintf(stderr, "farm-store-bench: %s\n", farm_error_last());
        return 1;
    }
    run_id = (unsigned long long)clock_wall_ms();
    int64_t t0 = clock_mono_ms();
    for (int i = 0; i < threads; i++) {
        idx[i] = i;
        pthread_create(&t[i], NULL, writer, &idx[i]);
    }
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    int64_t ms = clock_mono_ms() - t0;
    if (ms < 1)
        ms = 1;
    printf("%s threads=%d writes=%d ms=%lld writes_per_s=%.0f\n",
           strncmp(argv[1], "sqlite:", 7) ? "postgres" : "sqlite", threads, threads * per_thread,
           (long long)ms, threads * per_thread * 1000.0 / (double)ms);
    store_close(bench_store);
    return 0;
}
