/*
 * config_data_dir.c - whether the config's data_dir can be had (see
 * config_data_dir_check() in config.h): `farm config check` tells a
 * data_dir the farm could never create, such as one under /proc or under a
 * directory this user may not write, before `farm serve` fails on it.
 */
#include "config.h"
#include "config_check.h"

#include "base/error.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ERRORS_MAX 4096

/* The nearest directory on the way to dir that exists, into parent, and
 * the first one below it that does not, into child. 0, or an errno from
 * stat() (not ENOENT) with the path that failed in parent. */
static int nearest(char *parent, char *child, const char *dir)
{
    struct stat st;
    char *slash;

    snprintf(parent, PATH_MAX, "%s", dir);
    for (size_t n = strlen(parent); n > 1 && parent[n - 1] == '/'; n--)
        parent[n - 1] = '\0';
    for (;;) {
        snprintf(child, PATH_MAX, "%s", parent);
        if (!(slash = strrchr(parent, '/')))
            snprintf(parent, PATH_MAX, ".");
        else if (slash == parent)
            parent[1] = '\0';
        else
            *slash = '\0';
        if (stat(parent, &st) == 0)
            return 0;
        if (errno != ENOENT || !slash || slash == parent)
            return errno;
    }
}

int config_data_dir_check(const config *c, char **errors)
{
    cc e = {BUF_INIT(ERRORS_MAX), 0, 0};
    char parent[PATH_MAX], child[PATH_MAX];
    struct stat st;
    int err;

    if (errors)
        *errors = NULL;
    if (!c->data_dir || strlen(c->data_dir) >= PATH_MAX - 1) {
        cc_error(&e, "data_dir", "missing or too long");
    } else if (stat(c->data_dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            cc_error(&e, "data_dir", "%s exists and is not a directory", c->data_dir);
        else if (access(c->data_dir, W_OK | X_OK) != 0)
            cc_error(&e, "data_dir", "%s is not writable by this user (uid %u): %s", c->data_dir,
                     (unsigned)geteuid(), strerror(errno));
    } else if (errno != ENOENT) {
        cc_error(&e, "data_dir", "cannot use %s: %s", c->data_dir, strerror(errno));
    } else if ((err = nearest(parent, child, c->data_dir)) != 0) {
        cc_error(&e, "data_dir", "cannot be created: %s: %s", parent, strerror(err));
    } else if (stat(parent, &st) != 0 || !S_ISDIR(st.st_mode)) {
        cc_error(&e, "data_dir", "cannot be created: %s is not a directory", parent);
    } else if (access(parent, W_OK | X_OK) != 0) {
        cc_error(&e, "data_dir",
                 "cannot be created: %s is not writable by this user (uid %u); create %s "
                 "beforehand with this user as its owner, or choose a directory this user may "
                 "write",
                 parent, (unsigned)geteuid(), c->data_dir);
    } else if (mkdir(child, 0700) == 0) {
        rmdir(child); /* a trial: what farm_open() creates is its own business */
    } else if (errno != EEXIST) {
        /* permissions allow it, the file system does not (/proc, /sys, read-only) */
        cc_error(&e, "data_dir",
                 "cannot be created: mkdir %s: %s; choose a directory on a writable disk, such "
                 "as /var/lib/farm",
                 child, strerror(errno));
    }
    if (!e.nerrors) {
        buf_free(&e.errors);
        return 0;
    }
    farm_error_set("data_dir cannot be used");
    if (errors)
        *errors = buf_detach(&e.errors);
    buf_free(&e.errors);
    return FARM_EINVALID;
}
