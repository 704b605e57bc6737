/*
 * test_image.c - sandbox/image*.c: unpacking an OCI image built here from
 * Debian's busybox-static (tests/support/make_oci.py, no registry): layers in
 * order, the whiteout and the opaque directory honoured, setuid dropped,
 * device nodes skipped, the cache listed and pruned; each bad image (a
 * missing blob, a wrong digest, "..", an absolute path, an absolute symlink
 * followed, a hardlink out) refused with nothing left in the cache and
 * nothing written outside it; and a sandbox whose root is the image sees the
 * image's /bin and not the host's /usr.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/error.h"
#include "sandbox/image.h"
#include "sandbox/sandbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* paths here are short scratch paths: truncation cannot happen */
#pragma GCC diagnostic ignored "-Wformat-truncation"

static char base[PATH_MAX]; /* a scratch directory for the whole test */

static int have_busybox(void)
{
    return access("/bin/busybox", X_OK) == 0;
}

/* Run make_oci.py into dir (with --bad kind unless NULL; --archive file
 * unless NULL). */
static void make_image(const char *dir, const char *bad, const char *archive)
{
    const char *src = getenv("FARM_SOURCE_DIR");
    char script[PATH_MAX];
    snprintf(script, sizeof(script), "%s/tests/support/make_oci.py", src ? src : ".");
    const char *argv[10] = {"python3", script, dir};
    int n = 3;
    if (bad) {
        argv[n++] = "--bad";
        argv[n++] = bad;
    }
    if (archive) {
        argv[n++] = "--archive";
        argv[n++] = archive;
    }
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void path_of(char *out, const char *a, const char *b)
{
    snprintf(out, PATH_MAX, "%s/%s", a, b);
}

/* How many entries of cache look like unpacked images, and how many
 * directories are left under .tmp (lock files are fine). */
static void cache_count(const char *cache, int *images, int *tmps)
{
    *images = *tmps = 0;
    DIR *d = opendir(cache);
    if (!d)
        return;
    for (struct dirent *e; (e = readdir(d));)
        if (strncmp(e->d_name, "sha256-", 7) == 0)
            (*images)++;
    closedir(d);
    char t[PATH_MAX];
    path_of(t, cache, ".tmp");
    if (!(d = opendir(t)))
        return;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.' && !strstr(e->d_name, ".lock"))
            (*tmps)++;
    closedir(d);
}

static int setup(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/farm-test-image-XXXXXX";
    if (!mkdtemp(tmpl))
        return -1;
    snprintf(base, sizeof(base), "%s", tmpl);
    chmod(base, 0755);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : -1;
}

static void refs_are_checked(void **state)
{
    (void)state;
    assert_int_equal(sandbox_image_ref_check("oci:/srv/img:22"), 0);
    assert_int_equal(sandbox_image_ref_kind("oci:/srv/img"), SANDBOX_IMAGE_OCI);
    assert_int_equal(sandbox_image_ref_kind("oci-archive:/srv/i.tar:x"), SANDBOX_IMAGE_OCI_ARCHIVE);
    assert_int_equal(sandbox_image_ref_kind("rootfs:/srv/root"), SANDBOX_IMAGE_ROOTFS);
    const char *badrefs[] = {"",        "docker://node:22", "oci:",          "oci::tag",
                             "oci:/x:", "rootfs:",          "oci:/x:bad tag"};
    for (size_t i = 0; i < sizeof(badrefs) / sizeof(badrefs[0]); i++) {
        assert_int_equal(sandbox_image_ref_check(badrefs[i]), FARM_EINVALID);
        assert_non_null(strstr(farm_error_last(), "oci:DIR[:TAG]"));
    }
    char digest[SANDBOX_IMAGE_DIGEST_MAX];
    assert_int_equal(sandbox_image_digest(digest, "rootfs:/"), FARM_EUNSUPPORTED);
}

static void good_image_is_unpacked_once(void **state)
{
    (void)state;
    if (!have_busybox())
        skip(); /* apt-get install busybox-static (scripts/install-deps --test) */
    char layout[PATH_MAX], cache[PATH_MAX], ref[PATH_MAX + 16], p[PATH_MAX + 64];
    path_of(layout, base, "good");
    path_of(cache, base, "cache-good");
    make_image(layout, NULL, NULL);
    snprintf(ref, sizeof(ref), "oci:%s:1", layout);

    char *root = NULL;
    assert_int_equal(sandbox_image_root(&root, cache, ref), 0);
    struct stat st, host;
    snprintf(p, sizeof(p), "%s/bin/busybox", root);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(stat("/bin/busybox", &host), 0);
    assert_int_equal(st.st_size, host.st_size);
    assert_true(st.st_mode & S_IXUSR);
    snprintf(p, sizeof(p), "%s/bin/sh", root);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    snprintf(p, sizeof(p), "%s/bin/bb2", root); /* the hardlink */
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_nlink, 2);
    snprintf(p, sizeof(p), "%s/bin/su", root); /* setuid dropped */
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & (S_ISUID | S_ISGID), 0);
    assert_int_equal(st.st_uid, geteuid());      /* owned by who unpacked, not the layer's uid */
    snprintf(p, sizeof(p), "%s/dev/null", root); /* device nodes skipped */
    assert_int_equal(lstat(p, &st), -1);
    snprintf(p, sizeof(p), "%s/etc/hello.txt", root);
    assert_int_equal(stat(p, &st), 0);
    snprintf(p, sizeof(p), "%s/etc/layer2.txt", root);
    assert_int_equal(stat(p, &st), 0);
    snprintf(p, sizeof(p), "%s/etc/gone.txt", root); /* the whiteout */
    assert_int_equal(lstat(p, &st), -1);
    snprintf(p, sizeof(p), "%s/etc/.wh.gone.txt", root);
    assert_int_equal(lstat(p, &st), -1);
    snprintf(p, sizeof(p), "%s/opt/keep/a", root); /* the opaque directory */
    assert_int_equal(lstat(p, &st), -1);
    snprintf(p, sizeof(p), "%s/opt/keep/b", root);
    assert_int_equal(lstat(p, &st), -1);
    snprintf(p, sizeof(p), "%s/opt/keep/c", root);
    assert_int_equal(stat(p, &st), 0);
    snprintf(p, sizeof(p), "%s/opt/keep/.wh..wh..opq", root);
    assert_int_equal(lstat(p, &st), -1);
    /* /opt is opaque in layer 2 too, after it wrote opt/keep/c and opt/deep/x/y/z
     * (whose parents it never names): what layer 2 wrote stays */
    snprintf(p, sizeof(p), "%s/opt/deep/x/y/z", root);
    assert_int_equal(stat(p, &st), 0);
    snprintf(p, sizeof(p), "%s/etc/caf\xc3\xa9-\xe6\x97\xa5\xe6\x9c\xac.txt", root);
    assert_int_equal(stat(p, &st), 0); /* a UTF-8 name, byte for byte */
    /* a later layer writes through a relative link inside the root */
    snprintf(p, sizeof(p), "%s/usr/lib/through-link.txt", root);
    assert_int_equal(stat(p, &st), 0);
    snprintf(p, sizeof(p), "%s/lib", root);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    snprintf(p, sizeof(p),
             "%s/usr/share/long-directory-name/long-directory-name/long-directory-name/"
             "long-directory-name/long-directory-name/long-directory-name/long-directory-name/"
             "long-directory-name/file.txt",
             root);
    assert_int_equal(stat(p, &st), 0);

    /* a second resolve uses the cache: same root, the same inode */
    struct stat before;
    assert_int_equal(stat(root, &before), 0);
    char *again = NULL;
    assert_int_equal(sandbox_image_root(&again, cache, ref), 0);
    assert_string_equal(again, root);
    assert_int_equal(stat(again, &st), 0);
    assert_int_equal(st.st_ino, before.st_ino);
    free(again);

    sandbox_image_entry *v;
    size_t n;
    assert_int_equal(sandbox_image_list(&v, &n, cache), 0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].source, ref);
    assert_true(v[0].size > (uint64_t)host.st_size);
    assert_true(v[0].last_used > 0 && v[0].unpacked_at > 0);
    char digest[SANDBOX_IMAGE_DIGEST_MAX];
    assert_int_equal(sandbox_image_digest(digest, ref), 0);
    assert_string_equal(v[0].digest, digest);
    assert_int_equal(sandbox_image_remove(cache, digest), 0);
    sandbox_image_list_free(v, n);
    assert_int_equal(sandbox_image_remove(cache, digest), FARM_ENOTFOUND);
    /* what a dead unpack left is swept; a live one's is not */
    char dead[PATH_MAX], live[PATH_MAX];
    snprintf(dead, sizeof(dead), "%s/.tmp/%s.999999999.ab", cache, digest + 7);
    snprintf(live, sizeof(live), "%s/.tmp/%s.%d.cd", cache, digest + 7, (int)getpid());
    assert_int_equal(mkdir(dead, 0700), 0);
    assert_int_equal(mkdir(live, 0700), 0);
    sandbox_image_sweep(cache);
    assert_int_equal(access(dead, F_OK), -1);
    assert_int_equal(access(live, F_OK), 0);
    assert_int_equal(rmdir(live), 0);
    int images, tmps;
    cache_count(cache, &images, &tmps);
    assert_int_equal(images, 0);
    assert_int_equal(tmps, 0);
    free(root);
}

static void archive_gives_the_same_image(void **state)
{
    (void)state;
    if (!have_busybox())
        skip();
    char layout[PATH_MAX], cache[PATH_MAX], tar[PATH_MAX], ref[PATH_MAX + 16], p[PATH_MAX + 64];
    path_of(layout, base, "arch");
    path_of(cache, base, "cache-arch");
    path_of(tar, base, "arch.tar");
    make_image(layout, NULL, tar);
    char d1[SANDBOX_IMAGE_DIGEST_MAX], d2[SANDBOX_IMAGE_DIGEST_MAX];
    snprintf(ref, sizeof(ref), "oci:%s", layout); /* one image: no tag needed */
    assert_int_equal(sandbox_image_digest(d1, ref), 0);
    snprintf(ref, sizeof(ref), "oci-archive:%s:1", tar);
    assert_int_equal(sandbox_image_digest(d2, ref), 0);
    assert_string_equal(d1, d2);
    char *root = NULL;
    assert_int_equal(sandbox_image_root(&root, cache, ref), 0);
    snprintf(p, sizeof(p), "%s/opt/keep/c", root);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    int images, tmps;
    cache_count(cache, &images, &tmps);
    assert_int_equal(images, 1);
    assert_int_equal(tmps, 0); /* the archive's copied layout is gone */
    free(root);
    snprintf(ref, sizeof(ref), "oci-archive:%s:nosuchtag", tar);
    assert_int_equal(sandbox_image_root(&root, cache, ref), FARM_ENOTFOUND);
    assert_non_null(strstr(farm_error_last(), "no image tagged 'nosuchtag'"));
}

/* A bad image: refused with an error naming it and the problem, nothing in
 * the cache, nothing outside it. */
static void refused(const char *kind, const char *expect)
{
    char layout[PATH_MAX], cache[PATH_MAX], ref[PATH_MAX + 16];
    char name[64];
    snprintf(name, sizeof(name), "bad-%s", kind);
    path_of(layout, base, name);
    snprintf(name, sizeof(name), "cache-%s", kind);
    path_of(cache, base, name);
    make_image(layout, kind, NULL);
    snprintf(ref, sizeof(ref), "oci:%s:1", layout);
    char *root = (char *)"untouched";
    int rc = sandbox_image_root(&root, cache, ref);
    print_message("%s: %s\n", kind, farm_error_last());
    assert_int_equal(rc, FARM_EINVALID);
    assert_null(root);
    assert_non_null(strstr(farm_error_last(), ref));
    assert_non_null(strstr(farm_error_last(), expect));
    int images, tmps;
    cache_count(cache, &images, &tmps);
    assert_int_equal(images, 0);
    assert_int_equal(tmps, 0);
    sandbox_image_entry *v;
    size_t n;
    assert_int_equal(sandbox_image_list(&v, &n, cache), 0);
    assert_int_equal(n, 0);
}

static void bad_images_are_refused_cleanly(void **state)
{
    (void)state;
    if (!have_busybox())
        skip();
    char outside[PATH_MAX], pwned[64];
    path_of(outside, base, "escape.txt");
    refused("missing-blob", "is missing from the layout");
    refused("wrong-digest", "does not match its digest");
    refused("dotdot", "'..'");
    refused("abs-path", "absolute path");
    refused("hardlink-out", "hardlink");
    refused("abs-symlink", "symbolic link that leads out");
    refused("dangling", "symbolic link to nothing");
    struct stat st;
    assert_int_equal(lstat(outside, &st), -1);
    /* make_oci.py names the symlink's target after its own pid, unknown
     * here: no file of that pattern may exist */
    DIR *d = opendir("/tmp");
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        assert_null(strstr(e->d_name, "farm-image-pwned-"));
    closedir(d);
    (void)pwned;
}

typedef struct resolver {
    const char *cache, *ref;
    char *root;
    int rc;
} resolver;

static void *resolve_thread(void *arg)
{
    resolver *r = arg;
    r->rc = sandbox_image_root(&r->root, r->cache, r->ref);
    return NULL;
}

/* Four runs needing the same new image at once: one unpack, one entry. */
static void concurrent_resolves_share_one_unpack(void **state)
{
    (void)state;
    if (!have_busybox())
        skip();
    char layout[PATH_MAX], cache[PATH_MAX], ref[PATH_MAX + 16];
    path_of(layout, base, "conc");
    path_of(cache, base, "cache-conc");
    make_image(layout, NULL, NULL);
    snprintf(ref, sizeof(ref), "oci:%s:1", layout);
    resolver r[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (resolver){cache, ref, NULL, -1};
        assert_int_equal(pthread_create(&t[i], NULL, resolve_thread, &r[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(r[i].rc, 0);
        assert_string_equal(r[i].root, r[0].root);
    }
    for (int i = 0; i < 4; i++)
        free(r[i].root);
    int images, tmps;
    cache_count(cache, &images, &tmps);
    assert_int_equal(images, 1);
    assert_int_equal(tmps, 0);
}

typedef struct capture {
    buf out;
} capture;

static void on_output(void *ctx, sandbox_stream which, const char *d, size_t n)
{
    capture *c = ctx;
    if (which == SANDBOX_STDOUT)
        buf_append(&c->out, d, n);
}

static void sandbox_sees_the_image_root(void **state)
{
    (void)state;
    sandbox_probe_result pr;
    if (!have_busybox() || sandbox_probe(&pr, NULL) != 0)
        skip();
    char layout[PATH_MAX], cache[PATH_MAX], work[PATH_MAX], ref[PATH_MAX + 16];
    path_of(layout, base, "run");
    path_of(cache, base, "cache-run");
    path_of(work, base, "work");
    assert_int_equal(mkdir(work, 0777), 0);
    chmod(work, 0777);
    make_image(layout, NULL, NULL);
    snprintf(ref, sizeof(ref), "oci:%s:1", layout);
    char *root = NULL;
    assert_int_equal(sandbox_image_root(&root, cache, ref), 0);
    const char *argv[] = {"/bin/sh", "-c",
                          "cat /etc/hello.txt; test -x /bin/busybox && echo busybox; "
                          "test -e /usr/bin/python3 || echo no-python; "
                          "test -e /etc/gone.txt || echo no-gone; "
                          "touch /bin/x 2>/dev/null || echo ro; "
                          "touch /work/ok && echo work; touch /tmp/t && echo tmp",
                          NULL};
    capture c;
    buf_init(&c.out, 1 << 16);
    sandbox_opts o = SANDBOX_OPTS_INIT;
    o.argv = argv;
    o.dir = work;
    o.root_dir = root;
    o.timeout_ms = 30000;
    o.on_output = on_output;
    o.output_ctx = &c;
    sandbox_result r;
    assert_int_equal(sandbox_run(&r, &o), 0);
    buf_putc(&c.out, '\0');
    print_message("%s", c.out.data);
    assert_int_equal(r.exit_code, 0);
    assert_non_null(strstr(c.out.data, "hello from the image"));
    assert_non_null(strstr(c.out.data, "busybox"));
    assert_non_null(strstr(c.out.data, "no-python"));
    assert_non_null(strstr(c.out.data, "no-gone"));
    assert_non_null(strstr(c.out.data, "ro"));
    assert_non_null(strstr(c.out.data, "work"));
    assert_non_null(strstr(c.out.data, "tmp"));

    /* a bind with no mount point in the read-only image is refused clearly */
    sandbox_bind b = {.src = work, .dest = "/etc/nope/here"};
    o.binds = &b;
    o.nbinds = 1;
    assert_int_equal(sandbox_run(&r, &o), FARM_EINVALID);
    assert_non_null(strstr(farm_error_last(), "no mount point in the image root"));
    buf_free(&c.out);
    free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(refs_are_checked),
        cmocka_unit_test(good_image_is_unpacked_once),
        cmocka_unit_test(archive_gives_the_same_image),
        cmocka_unit_test(bad_images_are_refused_cleanly),
        cmocka_unit_test(concurrent_resolves_share_one_unpack),
        cmocka_unit_test(sandbox_sees_the_image_root),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
