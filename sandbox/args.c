/*
 * args.c - checking a sandbox's options and turning them into bubblewrap's
 * command line and the command's environment (sandbox.c spawns the run).
 *
 * Everything a caller hands in is checked here, before anything is spawned:
 * sizes against the caps in sandbox.h, environment names, absolute paths
 * without "..", allowlist patterns. The command line binds the system
 * read-only, the worktree read-write (with .git/hooks and .git/config
 * read-only over it), private size-capped tmpfs for /tmp, HOME and /dev/shm,
 * and leaves the root and /dev read-only.
 */
#include "internal.h"

#include "base/error.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- option checks ------------------------------------------------------ */

static int env_name_ok(const char *e)
{
    const char *eq = strchr(e, '=');
    if (!eq || eq == e)
        return 0;
    if (!(isalpha((unsigned char)e[0]) || e[0] == '_'))
        return 0;
    for (const char *p = e; p < eq; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_'))
            return 0;
    return 1;
}

static int path_ok(const char *p)
{
    if (!p || p[0] != '/' || strlen(p) >= PATH_MAX)
        return 0;
    /* no ".." component: the inside path is where bubblewrap mounts things */
    for (const char *s = p; (s = strstr(s, "..")); s += 2)
        if ((s == p || s[-1] == '/') && (s[2] == '\0' || s[2] == '/'))
            return 0;
    return 1;
}

static int allow_ok(const char *a)
{
    size_t n = strlen(a);
    if (n == 0 || n > 255)
        return 0;
    const char *colon = strrchr(a, ':');
    size_t hl = colon ? (size_t)(colon - a) : n;
    if (hl == 0)
        return 0;
    for (size_t i = 0; i < hl; i++) {
        char c = a[i];
        if (!(isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_' ||
              (c == '*' && i == 0 && hl > 2 && a[1] == '.') || (c == '*' && hl == 1)))
            return 0;
    }
    if (colon) {
        if (strcmp(colon + 1, "*") == 0)
            return 1;
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (colon[1] == '\0' || *end || port < 1 || port > 65535)
            return 0;
    }
    return 1;
}

static int root_skip(const sandbox_opts *o, const char *name);

/* An image root must be a directory, and every bind placed under what it
 * provides must find its mount point there (the image is read-only). */
static int root_check(const sandbox_opts *o)
{
    struct stat st;
    if (!path_ok(o->root_dir) || stat(o->root_dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        farm_error_set("sandbox: root directory '%s' is not an absolute path to a directory",
                       o->root_dir);
        return FARM_EINVALID;
    }
    for (size_t i = 0; i < o->nbinds && i < SANDBOX_MAX_BINDS; i++) {
        const char *dest = o->binds[i].dest;
        if (o->binds[i].relay_port || !path_ok(dest))
            continue;
        char top[NAME_MAX + 1], p[PATH_MAX * 2];
        snprintf(top, sizeof(top), "%.*s", (int)strcspn(dest + 1, "/"), dest + 1);
        snprintf(p, sizeof(p), "%s/%s", o->root_dir, top);
        if (!top[0] || root_skip(o, top) || lstat(p, &st) < 0)
            continue; /* on the sandbox's own root: bubblewrap makes the mount point */
        snprintf(p, sizeof(p), "%s%s", o->root_dir, dest);
        if (lstat(p, &st) < 0) {
            farm_error_set("sandbox: bind %zu to %s has no mount point in the image root %s (the "
                           "image is read-only): add %s to the image, or bind elsewhere",
                           i, dest, o->root_dir, dest);
            return FARM_EINVALID;
        }
    }
    return 0;
}

int sbx_opts_check(const sandbox_opts *o, int need_argv)
{
    int rc;
    if (!o || (need_argv && (!o->argv || !o->argv[0] || !o->argv[0][0]))) {
        farm_error_set("sandbox: no command given");
        return FARM_EINVALID;
    }
    size_t total = 0, n = 0;
    for (; o->argv && o->argv[n]; n++) {
        size_t l = strlen(o->argv[n]);
        if (n >= SANDBOX_MAX_ARGS) {
            farm_error_set("sandbox: more than %d arguments", SANDBOX_MAX_ARGS);
            return FARM_EINVALID;
        }
        if (l > SANDBOX_MAX_ARG_BYTES) {
            farm_error_set("sandbox: argument %zu is %zu bytes, over the cap of %d", n, l,
                           SANDBOX_MAX_ARG_BYTES);
            return FARM_EINVALID;
        }
        total += l + 1;
    }
    for (size_t i = 0; o->env && o->env[i]; i++) {
        size_t l = strlen(o->env[i]);
        if (i >= SANDBOX_MAX_ENV) {
            farm_error_set("sandbox: more than %d environment variables", SANDBOX_MAX_ENV);
            return FARM_EINVALID;
        }
        if (l > SANDBOX_MAX_ARG_BYTES) {
            farm_error_set("sandbox: environment entry %zu is %zu bytes, over the cap of %d", i, l,
                           SANDBOX_MAX_ARG_BYTES);
            return FARM_EINVALID;
        }
        if (!env_name_ok(o->env[i])) {
            farm_error_set("sandbox: environment entry %zu is not NAME=value", i);
            return FARM_EINVALID;
        }
        total += l + 1;
    }
    if (total > SANDBOX_MAX_TOTAL_BYTES) {
        farm_error_set("sandbox: arguments and environment are %zu bytes, over the cap of %d",
                       total, SANDBOX_MAX_TOTAL_BYTES);
        return FARM_EINVALID;
    }
    if (o->dir) {
        struct stat st;
        if (!path_ok(o->dir) || stat(o->dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
            farm_error_set("sandbox: working directory '%s' is not an absolute path to a "
                           "directory",
                           o->dir);
            return FARM_EINVALID;
        }
    }
    if (o->dir_inside && (!path_ok(o->dir_inside) || strcmp(o->dir_inside, "/") == 0)) {
        farm_error_set("sandbox: inside directory '%s' must be an absolute path below /",
                       o->dir_inside);
        return FARM_EINVALID;
    }
    if (o->root_dir && (rc = root_check(o)) < 0)
        return rc;
    if (o->nbinds > SANDBOX_MAX_BINDS) {
        farm_error_set("sandbox: more than %d extra binds", SANDBOX_MAX_BINDS);
        return FARM_EINVALID;
    }
    int relays = 0;
    for (size_t i = 0; i < o->nbinds; i++) {
        if (!path_ok(o->binds[i].src) || (!o->binds[i].relay_port && !path_ok(o->binds[i].dest))) {
            farm_error_set("sandbox: bind %zu needs absolute paths without '..'", i);
            return FARM_EINVALID;
        }
        if (o->binds[i].relay_port &&
            (o->binds[i].relay_port < 1 || o->binds[i].relay_port > 65535 ||
             o->binds[i].relay_port == SBX_PROXY_PORT || ++relays > 1 ||
             strlen(o->binds[i].src) >= 100)) {
            farm_error_set("sandbox: bind %zu: one relay bind at most, to a port from 1 to 65535 "
                           "other than %d, from a socket path under 100 bytes",
                           i, SBX_PROXY_PORT);
            return FARM_EINVALID;
        }
    }
    if (o->network != SANDBOX_NET_NONE && o->network != SANDBOX_NET_ALLOWLIST &&
        !(o->network == SANDBOX_NET_HOST && o->unsafe_none)) {
        farm_error_set("sandbox: unknown network policy");
        return FARM_EINVALID;
    }
    size_t na = 0;
    for (; o->allow && o->allow[na]; na++) {
        if (na >= SANDBOX_MAX_ALLOW) {
            farm_error_set("sandbox: more than %d allowlist entries", SANDBOX_MAX_ALLOW);
            return FARM_EINVALID;
        }
        if (!allow_ok(o->allow[na])) {
            farm_error_set("sandbox: allowlist entry '%.64s' is not host[:port], *.domain or "
                           "host:*",
                           o->allow[na]);
            return FARM_EINVALID;
        }
    }
    if (o->timeout_ms < 0 || o->memory_mb < 0 || o->pids < 0 || o->cpu_percent < 0 ||
        o->disk_mb < 0 || o->nofile < 0) {
        farm_error_set("sandbox: limits must not be negative");
        return FARM_EINVALID;
    }
    return 0;
}

int sandbox_opts_check(const sandbox_opts *o)
{
    return sbx_opts_check(o, 1);
}

int sandbox_net_parse(const char *s)
{
    if (s && strcmp(s, "none") == 0)
        return SANDBOX_NET_NONE;
    if (s && strcmp(s, "allowlist") == 0)
        return SANDBOX_NET_ALLOWLIST;
    return -1;
}

/* --- the command line --------------------------------------------------- */

/* Find prog in PATH (or take it as a path); *out is the caller's to free. */
int sbx_which(char **out, const char *prog)
{
    *out = NULL;
    if (strchr(prog, '/')) {
        if (access(prog, X_OK) < 0)
            return FARM_ENOTFOUND;
        *out = strdup(prog);
        return *out ? 0 : FARM_ENOMEM;
    }
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
    const char *p = path;
    while (*p) {
        size_t l = strcspn(p, ":");
        char cand[PATH_MAX];
        if (l > 0 && snprintf(cand, sizeof(cand), "%.*s/%s", (int)l, p, prog) < (int)sizeof(cand) &&
            access(cand, X_OK) == 0) {
            *out = strdup(cand);
            return *out ? 0 : FARM_ENOMEM;
        }
        p += l;
        if (*p == ':')
            p++;
    }
    return FARM_ENOTFOUND;
}

/* Bind the top-level system directories read-only, keeping symlinks (the
 * merged-/usr layout links /bin, /lib... to /usr). */
static int add_system(strv *a)
{
    static const char *const dirs[] = {"/usr",   "/bin",    "/sbin", "/lib", "/lib32",
                                       "/lib64", "/libx32", "/etc",  "/opt"};
    int rc = 0;
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]) && rc == 0; i++) {
        struct stat st;
        if (lstat(dirs[i], &st) < 0)
            continue;
        if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            ssize_t n = readlink(dirs[i], target, sizeof(target) - 1);
            if (n <= 0)
                continue;
            target[n] = '\0';
            rc = strv_add(a, "--symlink") ?: strv_add(a, target) ?: strv_add(a, dirs[i]);
        } else if (S_ISDIR(st.st_mode)) {
            rc = strv_add(a, "--ro-bind") ?: strv_add(a, dirs[i]) ?: strv_add(a, dirs[i]);
        }
    }
    return rc;
}

/* The top-level names of an image root the sandbox provides itself (its
 * mount points), so they are not taken from the image. */
static int root_skip(const sandbox_opts *o, const char *name)
{
    static const char *const own[] = {"proc", "dev", "tmp", "run", "home"};
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
        if (strcmp(name, own[i]) == 0)
            return 1;
    const char *inside = (o->dir_inside ? o->dir_inside : "/work") + 1;
    size_t l = strcspn(inside, "/");
    return strlen(name) == l && strncmp(name, inside, l) == 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* An image root (o->root_dir): each top-level entry bound read-only (a
 * directory or file) or recreated (a symbolic link), in name order, on
 * bubblewrap's own root, so the sandbox's mount points stay creatable. */
static int add_root(strv *a, const sandbox_opts *o)
{
    DIR *d = opendir(o->root_dir);
    if (!d) {
        farm_error_set("sandbox: root directory %s cannot be read: %s", o->root_dir,
                       strerror(errno));
        return FARM_EINVALID;
    }
    strv names = STRV_INIT;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
            !root_skip(o, de->d_name))
            strv_add(&names, de->d_name);
    closedir(d);
    int rc = names.failed ? FARM_ENOMEM : 0;
    if (names.n)
        qsort(names.v, names.n, sizeof(char *), name_cmp);
    for (size_t i = 0; rc == 0 && i < names.n; i++) {
        char p[PATH_MAX], target[PATH_MAX];
        struct stat st;
        if (snprintf(p, sizeof(p), "%s/%s", o->root_dir, names.v[i]) >= (int)sizeof(p) ||
            lstat(p, &st) < 0)
            continue;
        if (S_ISLNK(st.st_mode)) {
            ssize_t n = readlink(p, target, sizeof(target) - 1);
            if (n <= 0)
                continue;
            target[n] = '\0';
            rc = strv_add(a, "--symlink") ?: strv_add(a, target) ?: strv_addf(a, "/%s", names.v[i]);
        } else if (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode)) {
            rc = strv_add(a, "--ro-bind") ?: strv_add(a, p) ?: strv_addf(a, "/%s", names.v[i]);
        }
    }
    strv_free(&names);
    return rc;
}

/* .git/hooks and .git/config of a worktree whose .git is a directory are
 * bound read-only over themselves (created first when missing, so an agent
 * cannot add them). */
static int add_git_guards(strv *a, const char *dir, const char *inside)
{
    char git[PATH_MAX], p[PATH_MAX + 16];
    struct stat st;
    if (snprintf(git, sizeof(git), "%s/.git", dir) >= (int)sizeof(git))
        return FARM_ETOOBIG;
    if (lstat(git, &st) < 0 || !S_ISDIR(st.st_mode))
        return 0;
    int rc = 0;
    snprintf(p, sizeof(p), "%s/hooks", git);
    if (lstat(p, &st) < 0 && mkdir(p, 0755) < 0) {
        farm_error_set("sandbox: cannot create %s: %s", p, strerror(errno));
        return FARM_EIO;
    }
    rc = strv_add(a, "--ro-bind") ?: strv_add(a, p) ?: strv_addf(a, "%s/.git/hooks", inside);
    if (rc)
        return rc;
    snprintf(p, sizeof(p), "%s/config", git);
    if (lstat(p, &st) < 0) {
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0) {
            farm_error_set("sandbox: cannot create %s: %s", p, strerror(errno));
            return FARM_EIO;
        }
        close(fd);
    }
    return strv_add(a, "--ro-bind") ?: strv_add(a, p) ?: strv_addf(a, "%s/.git/config", inside);
}

const sandbox_bind *sbx_relay_bind(const sandbox_opts *o)
{
    for (size_t i = 0; i < o->nbinds; i++)
        if (o->binds[i].relay_port > 0)
            return &o->binds[i];
    return NULL;
}

int sbx_build_argv(strv *a, const sandbox_opts *o, int prepared, const char *bwrap,
                   const char *helper, const char *proxy_dir)
{
    const char *inside = o->dir_inside ? o->dir_inside : "/work";
    long long disk = (long long)(o->disk_mb ? o->disk_mb : 1024) << 20;
    int rc = strv_add(a, bwrap);
    static const char *const fixed[] = {"--unshare-user",
                                        "--unshare-pid",
                                        "--unshare-ipc",
                                        "--unshare-uts",
                                        "--unshare-net",
                                        "--unshare-cgroup-try",
                                        "--disable-userns",
                                        "--cap-drop",
                                        "ALL",
                                        "--die-with-parent",
                                        "--new-session",
                                        "--hostname",
                                        "sandbox",
                                        "--proc",
                                        "/proc",
                                        "--dev",
                                        "/dev"};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]) && rc == 0; i++)
        rc = strv_add(a, fixed[i]);
    rc = rc ?: strv_add(a, "--uid") ?: strv_addf(a, "%u", o->uid);
    rc = rc ?: strv_add(a, "--gid") ?: strv_addf(a, "%u", o->gid);
    rc = rc ?: (o->root_dir ? add_root(a, o) : add_system(a));
    rc = rc ?: strv_add(a, "--size") ?: strv_addf(a, "%lld", disk) ?: strv_add(a, "--tmpfs") ?:
         strv_add(a, "/tmp");
    rc = rc ?: strv_add(a, "--size") ?: strv_addf(a, "%lld", disk) ?: strv_add(a, "--tmpfs") ?:
         strv_add(a, SANDBOX_HOME);
    if (rc == 0 && o->dir) {
        rc = strv_add(a, "--bind") ?: strv_add(a, o->dir) ?: strv_add(a, inside);
        rc = rc ?: add_git_guards(a, o->dir, inside);
    }
    for (size_t i = 0; rc == 0 && i < o->nbinds; i++)
        if (!o->binds[i].relay_port)
            rc = strv_add(a, o->binds[i].writable ? "--bind" : "--ro-bind") ?:
                 strv_add(a, o->binds[i].src) ?: strv_add(a, o->binds[i].dest);
    if (rc == 0 && o->network == SANDBOX_NET_ALLOWLIST)
        rc = strv_add(a, "--ro-bind") ?: strv_addf(a, "%s/proxy.sock", proxy_dir) ?:
             strv_add(a, SBX_PROXY_SOCK_INSIDE);
    const sandbox_bind *relay = sbx_relay_bind(o);
    if (rc == 0 && relay)
        rc = strv_add(a, "--ro-bind") ?: strv_addf(a, "%s/relay.sock", proxy_dir) ?:
             strv_add(a, SBX_RELAY_SOCK_INSIDE);
    rc = rc ?: strv_add(a, "--ro-bind") ?: strv_add(a, helper) ?: strv_add(a, SBX_HELPER_INSIDE);
    rc = rc ?: strv_add(a, "--chdir") ?: strv_add(a, o->dir ? inside : SANDBOX_HOME);
    /* last: the root itself (bubblewrap's scratch tmpfs) and /dev become
     * read-only; POSIX shared memory gets a capped tmpfs of its own */
    rc = rc ?: strv_add(a, "--size") ?: strv_addf(a, "%lld", disk) ?: strv_add(a, "--tmpfs") ?:
         strv_add(a, "/dev/shm");
    rc = rc ?: strv_add(a, "--remount-ro") ?: strv_add(a, "/dev");
    rc = rc ?: strv_add(a, "--remount-ro") ?: strv_add(a, "/");
    rc = rc ?: strv_add(a, "--seccomp") ?: strv_addf(a, "%d", FD_SECCOMP);
    rc = rc ?: strv_add(a, "--info-fd") ?: strv_addf(a, "%d", FD_INFO);
    rc = rc ?: strv_add(a, "--");
    rc = rc ?: strv_add(a, SBX_HELPER_INSIDE) ?: strv_add(a, "--lifeline") ?:
         strv_addf(a, "%d", FD_LIFELINE);
    if (rc == 0 && o->network == SANDBOX_NET_ALLOWLIST)
        rc = strv_add(a, "--proxy") ?: strv_addf(a, "%d", SBX_PROXY_PORT) ?:
             strv_add(a, SBX_PROXY_SOCK_INSIDE);
    if (rc == 0 && relay)
        rc = strv_add(a, "--relay") ?: strv_addf(a, "%d", relay->relay_port) ?:
             strv_add(a, SBX_RELAY_SOCK_INSIDE);
    if (rc == 0 && prepared) /* the command comes later, through FD_CMD */
        return strv_add(a, "--cmd-fd") ?: strv_addf(a, "%d", FD_CMD);
    rc = rc ?: strv_add(a, "--");
    for (size_t i = 0; rc == 0 && o->argv[i]; i++)
        rc = strv_add(a, o->argv[i]);
    return rc;
}

int sbx_build_env(strv *e, const sandbox_opts *o)
{
    int rc = 0;
    if (!o->unsafe_none)
        rc = strv_add(e, "PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin") ?:
             strv_add(e, "HOME=" SANDBOX_HOME) ?: strv_add(e, "TMPDIR=/tmp") ?:
             strv_add(e, "USER=sandbox") ?: strv_add(e, "LANG=C.UTF-8");
    else
        rc = strv_add(e, "PATH=/usr/local/bin:/usr/bin:/bin");
    if (rc == 0 && o->network == SANDBOX_NET_ALLOWLIST) {
        static const char *const names[] = {"HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
                                            "https_proxy"};
        for (size_t i = 0; i < 4 && rc == 0; i++)
            rc = strv_addf(e, "%s=http://127.0.0.1:%d", names[i], SBX_PROXY_PORT);
        rc = rc ?: strv_add(e, "NO_PROXY=") ?: strv_add(e, "no_proxy=");
    }
    /* the caller's entries come last and win over the defaults above */
    for (size_t i = 0; rc == 0 && o->env && o->env[i]; i++) {
        size_t nl = strcspn(o->env[i], "=");
        for (size_t j = 0; j < e->n; j++)
            if (strncmp(e->v[j], o->env[i], nl + 1) == 0) {
                free(e->v[j]);
                memmove(&e->v[j], &e->v[j + 1], (e->n - j) * sizeof(char *));
                e->n--;
                break;
            }
        rc = strv_add(e, o->env[i]);
    }
    return rc;
}
