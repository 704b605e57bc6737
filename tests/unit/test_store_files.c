/*
 * test_store_files.c - the store's files are the farm's alone: the database,
 * its WAL and shared-memory files are 0600 even under a permissive umask
 * and in a data directory other users may traverse.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "farm/store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void mode_is_private(const char *dir, const char *name)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(stat(path, &st), 0);
    if ((st.st_mode & 077) != 0)
        fail_msg("%s has mode %o", name, (unsigned)(st.st_mode & 0777));
}

static int count_events(store_tx *tx, void *arg)
{
    (void)tx;
    (void)arg;
    return 0;
}

static void files_are_0600(void **state)
{
    char dir[] = "/tmp/farm-store-files-XXXXXX";
    assert_non_null(mkdtemp(dir));
    chmod(dir, 0711);
    mode_t old = umask(0);
    char path[512];
    snprintf(path, sizeof(path), "%s/farm.db", dir);
    /* an existing database left world-readable by an older farm is tightened */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    chmod(path, 0644);
    store *s = NULL;
    assert_int_equal(store_open(&s, dir), 0);
    assert_int_equal(store_write(s, count_events, NULL), 0);
    mode_is_private(dir, "farm.db");
    mode_is_private(dir, "farm.db-wal");
    mode_is_private(dir, "farm.db-shm");
    store_close(s);
    umask(old);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* Another process (the local tracker's CLI, a second farm) writes and
 * closes its connection while the store is open: the store must see the
 * write, and the WAL and shared-memory files must still be there. (Closing a
 * descriptor of the database inside the farm drops SQLite's POSIX locks; the
 * other process then thinks it is the last and deletes those files, and the
 * farm's readers stay on a snapshot that never moves again.) */
static void other_process_writes_are_seen(void **state)
{
    char dir[] = "/tmp/farm-store-files-XXXXXX";
    assert_non_null(mkdtemp(dir));
    store *s = NULL;
    assert_int_equal(store_open(&s, dir), 0);
    char path[512];
    snprintf(path, sizeof(path), "%s/farm.db", dir);
    for (int round = 1; round <= 3; round++) {
        /* a separate program, as the local tracker CLI or a test seeder is */
        char cmd[1024];
        snprintf(cmd, sizeof(cmd),
                 "python3 -c \"import sqlite3,sys; c=sqlite3.connect(sys.argv[1], timeout=10);"
                 " c.execute('INSERT INTO session (tracker, repo, number, state, created_ms,"
                 " updated_ms) VALUES (\\'local\\', \\'other/process\\', %d, \\'done\\', 1,"
                 " 1)'); c.commit(); c.close()\" %s",
                 round, path);
        assert_int_equal(system(cmd), 0);
        store_session_filter f = {0};
        f.repo = "other/process";
        store_session *v = NULL;
        size_t n = 0;
        assert_int_equal(store_session_list(&v, &n, s, &f), 0);
        if ((int)n != round)
            fail_msg("round %d: the store sees %zu of the other process's sessions", round, n);
        store_session_list_free(v, n);
        struct stat st;
        snprintf(path + strlen(dir), sizeof(path) - strlen(dir), "/farm.db-wal");
        assert_int_equal(stat(path, &st), 0);
        snprintf(path + strlen(dir), sizeof(path) - strlen(dir), "/farm.db");
    }
    store_close(s);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(files_are_0600),
        cmocka_unit_test(other_process_writes_are_seen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
