/*
 * test_setup_cache.c - the setup cache (farm/run/setup_cache.h): the key
 * follows the environment, the command and the key files' contents and
 * refuses a key file that is a link; a save keeps what setup added (not
 * the checkout, not .git) with modes, times and links as links; a restore
 * leaves the new checkout's files alone and never writes through a link
 * the checkout holds; a half-written or expired entry is never used, and
 * prune removes it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "base/log.h"
#include "farm/run/setup_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[256];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(root, sizeof(root), "/tmp/farm-test-setup-cache-XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    return nftw(root, rm_one, 64, FTW_DEPTH | FTW_PHYS);
}

static const char *path_of(const char *rel)
{
    static char p[4][PATH_MAX];
    static int i;
    i = (i + 1) % 4;
    snprintf(p[i], sizeof(p[i]), "%s/%s", root, rel);
    return p[i];
}

static void put(const char *rel, const char *text, mode_t mode)
{
    char d[PATH_MAX];
    snprintf(d, sizeof(d), "%s", path_of(rel));
    for (char *s = d + strlen(root) + 1; *s; s++) {
        if (*s == '/') {
            *s = '\0';
            mkdir(d, 0755);
            *s = '/';
        }
    }
    FILE *f = fopen(d, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(d, mode);
}

static char *get(const char *rel)
{
    static char text[256];
    FILE *f = fopen(path_of(rel), "r");
    if (!f)
        return NULL;
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

static config_repo repo_with(const char *setup, char **keys, size_t nkeys)
{
    config_repo r;
    memset(&r, 0, sizeof(r));
    r.name = "a/b";
    r.setup = (char *)setup;
    r.setup_cache = 1;
    r.setup_cache_key = keys;
    r.nsetup_cache_key = nkeys;
    r.setup_cache_ttl_s = 600;
    return r;
}

static void key_follows_its_inputs(void **state)
{
    (void)state;
    char *keys[] = {"package-lock.json", "missing.lock", NULL};
    config_repo r = repo_with("npm ci", keys, 2);
    char k1[SETUP_CACHE_KEY_HEX], k2[SETUP_CACHE_KEY_HEX], k3[SETUP_CACHE_KEY_HEX];

    put("k/package-lock.json", "{\"v\": 1}\n", 0644);
    assert_int_equal(setup_cache_key(k1, &r, "host", path_of("k")), 0);
    assert_int_equal(strlen(k1), 64);
    assert_int_equal(setup_cache_key(k2, &r, "host", path_of("k")), 0);
    assert_string_equal(k1, k2);
    assert_int_equal(setup_cache_key(k2, &r, "sha256:abc", path_of("k")), 0);
    assert_string_not_equal(k1, k2); /* another image */
    r.setup = "npm install";
    assert_int_equal(setup_cache_key(k2, &r, "host", path_of("k")), 0);
    assert_string_not_equal(k1, k2); /* another command */
    r.setup = "npm ci";
    put("k/package-lock.json", "{\"v\": 2}\n", 0644);
    assert_int_equal(setup_cache_key(k3, &r, "host", path_of("k")), 0);
    assert_string_not_equal(k1, k3); /* another lock file */

    /* a key file that is a link (out of the worktree) or a directory is refused */
    unlink(path_of("k/package-lock.json"));
    assert_int_equal(symlink("/etc/passwd", path_of("k/package-lock.json")), 0);
    assert_int_equal(setup_cache_key(k3, &r, "host", path_of("k")), FARM_EINVALID);
    assert_non_null(strstr(farm_error_last(), "package-lock.json"));
    unlink(path_of("k/package-lock.json"));
    mkdir(path_of("k/package-lock.json"), 0755);
    assert_int_equal(setup_cache_key(k3, &r, "host", path_of("k")), FARM_EINVALID);
}

/* A checkout: what the repository holds, before setup. */
static void checkout(const char *wt, const char *greeting)
{
    char p[PATH_MAX + 128];
    snprintf(p, sizeof(p), "%s/greeting.txt", wt);
    put(p, greeting, 0644);
    snprintf(p, sizeof(p), "%s/src/main.c", wt);
    put(p, "int main(void) { return 0; }\n", 0644);
    snprintf(p, sizeof(p), "%s/.git/HEAD", wt);
    put(p, "ref: refs/heads/main\n", 0644);
}

static void save_and_restore(void **state)
{
    (void)state;
    setup_listing *before = NULL;
    setup_cache_stats st;
    const char *key = "1111111111111111111111111111111111111111111111111111111111111111";
    char data[512], target[PATH_MAX];
    int hit = -1;
    struct stat sb;

    snprintf(data, sizeof(data), "%s", path_of("data"));
    mkdir(data, 0700);
    checkout("w1", "hello\n");
    mkdir(path_of("h1"), 0700);
    assert_int_equal(setup_listing_make(&before, path_of("w1")), 0);

    /* what setup does: new files, a file in a directory that was there, a
     * link, a change to the checkout, something in .git, HOME */
    put("w1/node_modules/dep/index.js", "module.exports = 1\n", 0644);
    put("w1/node_modules/.bin/tool", "#!/bin/sh\n", 0755);
    put("w1/src/main.o", "ELF", 0644);
    assert_int_equal(symlink("../etc/elsewhere", path_of("w1/node_modules/link")), 0);
    put("w1/greeting.txt", "changed by setup\n", 0644);
    put("w1/.git/setup-was-here", "x", 0644);
    put("h1/.cache/dep/blob", "blob\n", 0600);

    assert_int_equal(
        setup_cache_save(&st, data, key, before, path_of("w1"), path_of("h1"), 600, 42), 0);
    setup_listing_free(before);
    assert_int_equal(st.files, 5); /* index.js, tool, link, main.o, blob */

    /* a new checkout (the base moved on); its own node_modules/link is a
     * link out of the worktree, which a restore must not write through */
    checkout("w2", "hello, world\n");
    mkdir(path_of("outside"), 0755);
    mkdir(path_of("w2/node_modules"), 0755);
    assert_int_equal(symlink(path_of("outside"), path_of("w2/node_modules/dep")), 0);
    mkdir(path_of("h2"), 0700);
    assert_int_equal(setup_cache_restore(&hit, &st, data, key, path_of("w2"), path_of("h2")), 0);
    assert_int_equal(hit, 1);
    assert_string_equal(get("w2/greeting.txt"), "hello, world\n"); /* the checkout's */
    assert_string_equal(get("w2/src/main.o"), "ELF");
    assert_string_equal(get("w2/node_modules/.bin/tool"), "#!/bin/sh\n");
    assert_int_equal(stat(path_of("w2/node_modules/.bin/tool"), &sb), 0);
    assert_true(sb.st_mode & 0100);
    assert_int_equal(readlink(path_of("w2/node_modules/link"), target, sizeof(target)), 16);
    assert_memory_equal(target, "../etc/elsewhere", 16);
    assert_null(get("outside/index.js")); /* not through the checkout's link */
    assert_null(get("w2/.git/setup-was-here"));
    assert_string_equal(get("h2/.cache/dep/blob"), "blob\n");
}

static void meta_set_expired(const char *data, const char *key)
{
    char p[PATH_MAX + 128];
    snprintf(p, sizeof(p), "%s/setup-cache/%s/meta.json", data, key);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("{\"created_ms\": 1, \"expires_ms\": 2}", f);
    fclose(f);
}

static void half_written_and_expired_are_not_used(void **state)
{
    (void)state;
    const char *k2 = "2222222222222222222222222222222222222222222222222222222222222222";
    const char *k3 = "3333333333333333333333333333333333333333333333333333333333333333";
    char data[512];
    setup_listing *before = NULL;
    setup_cache_stats st;
    int hit = -1;

    snprintf(data, sizeof(data), "%s", path_of("data2"));
    /* an entry without its meta.json (as a crash mid-save would leave
     * under a temporary name, and never under the key) */
    put("data2/setup-cache/2222222222222222222222222222222222222222222222222222222222222222/work/x",
        "half", 0644);
    checkout("w3", "hello\n");
    assert_int_equal(setup_cache_restore(&hit, &st, data, k2, path_of("w3"), NULL), 0);
    assert_int_equal(hit, 0);
    assert_null(get("w3/x"));

    /* an expired entry: not used, and pruned */
    assert_int_equal(setup_listing_make(&before, path_of("w3")), 0);
    put("w3/new.txt", "new\n", 0644);
    assert_int_equal(setup_cache_save(&st, data, k3, before, path_of("w3"), NULL, 600, 1), 0);
    setup_listing_free(before);
    checkout("w4", "hello\n");
    assert_int_equal(setup_cache_restore(&hit, &st, data, k3, path_of("w4"), NULL), 0);
    assert_int_equal(hit, 1);
    meta_set_expired(data, k3);
    unlink(path_of("w4/new.txt"));
    assert_int_equal(setup_cache_restore(&hit, &st, data, k3, path_of("w4"), NULL), 0);
    assert_int_equal(hit, 0);
    assert_null(get("w4/new.txt"));
    assert_int_equal(setup_cache_prune(data), 2); /* the expired one and the one without meta */
    char p[PATH_MAX + 128];
    snprintf(p, sizeof(p), "%s/setup-cache/%s", data, k3);
    assert_int_equal(access(p, F_OK), -1);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(key_follows_its_inputs),
        cmocka_unit_test(save_and_restore),
        cmocka_unit_test(half_written_and_expired_are_not_used),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
