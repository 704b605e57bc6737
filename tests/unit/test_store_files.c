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

#include "farm/store.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(files_are_0600),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
