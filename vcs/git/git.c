/*
 * git.c - what the farm's git files share: libgit2 start-up, branch names,
 * turning libgit2 errors into farm errors a person can act on, the remote
 * callbacks that hand over the token, and removing a directory tree
 * without ever following a symlink out of it.
 */
#include "git_internal.h"
#include "base/error.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_result;

static void init_run(void)
{
    if (git_libgit2_init() < 0) {
        init_result = FARM_ERROR;
        return;
    }
    /* No global, XDG, system or ProgramData config: the farm's git does
     * what the farm says, not what ~/.gitconfig says. */
    static const int levels[] = {GIT_CONFIG_LEVEL_SYSTEM, GIT_CONFIG_LEVEL_XDG,
                                 GIT_CONFIG_LEVEL_GLOBAL, GIT_CONFIG_LEVEL_PROGRAMDATA};
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
        if (git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, levels[i], "") < 0)
            init_result = FARM_ERROR;
    if (vcs_watch_init() < 0)
        init_result = FARM_ERROR;
    /* Ownership checks (safe.directory) guard against a planted repository
     * whose config runs programs. libgit2 runs none, and the farm opens
     * worktrees with its own config and checks their .git itself
     * (wt_repo_open); meanwhile a farm running as root hands worktrees to
     * a sandbox uid, which these checks would refuse. */
    git_libgit2_opts(GIT_OPT_SET_OWNER_VALIDATION, 0);
    git_libgit2_opts(GIT_OPT_ENABLE_STRICT_OBJECT_CREATION, 1);
    git_libgit2_opts(GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION, 1);
}

int vcs_git_init(void)
{
    pthread_once(&init_once, init_run);
    if (init_result < 0)
        farm_error_set("libgit2 could not be initialised");
    return init_result;
}

/* ---- branch names ---- */

int vcs_branch_name_valid(const char *name)
{
    char ref[512];
    int valid = 0;
    if (!name || !*name || strlen(name) > 400)
        return 0;
    snprintf(ref, sizeof(ref), "refs/heads/%s", name);
    if (git_reference_name_is_valid(&valid, ref) < 0)
        return 0;
    return valid;
}

int vcs_branch_name(char *out, size_t n, int64_t issue, const char *title)
{
    char slug[41];
    size_t len = 0;
    int dash = 0;

    if (n)
        out[0] = '\0';
    if (issue <= 0) {
        farm_error_set("branch name: issue number must be positive");
        return FARM_EINVALID;
    }
    const size_t max = sizeof(slug) - 1;
    for (const char *p = title ? title : ""; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (isascii(c) && isalnum(c)) {
            if (dash && len > 0) {
                if (len + 2 > max)
                    break;
                slug[len++] = '-';
            }
            if (len + 1 > max)
                break;
            dash = 0;
            slug[len++] = (char)tolower(c);
        } else if (c == '\'' || c >= 0x80) {
            /* apostrophes and non-ASCII bytes vanish: "don't" -> "dont" */
        } else {
            dash = 1;
        }
    }
    while (len > 0 && slug[len - 1] == '-')
        len--;
    slug[len] = '\0';

    int w = len ? snprintf(out, n, "farm/%lld-%s", (long long)issue, slug)
                : snprintf(out, n, "farm/%lld", (long long)issue);
    if (w < 0 || (size_t)w >= n) {
        if (n)
            out[0] = '\0';
        farm_error_set("branch name: buffer of %zu bytes is too small", n);
        return FARM_ETOOBIG;
    }
    if (!vcs_branch_name_valid(out)) { /* cannot happen with this alphabet; checked anyway */
        farm_error_set("branch name '%s' is not a legal ref name", out);
        out[0] = '\0';
        return FARM_EINVALID;
    }
    return 0;
}

/* ---- errors ---- */

void vcs_url_redact(char *out, size_t n, const char *url)
{
    const char *s = url ? url : "";
    const char *scheme = strstr(s, "://");
    const char *at = NULL;
    if (scheme) {
        const char *host = scheme + 3;
        const char *end = host + strcspn(host, "/?#");
        for (const char *p = host; p < end; p++)
            if (*p == '@')
                at = p;
    }
    if (at)
        snprintf(out, n, "%.*s%s", (int)(scheme + 3 - s), s, at + 1);
    else
        snprintf(out, n, "%s", s);
}

/* Replace every occurrence of the secret in s (in place) with "***". */
static void scrub(char *s, const char *secret)
{
    size_t sl = secret ? strlen(secret) : 0;
    if (sl < 4)
        return;
    char *p;
    while ((p = strstr(s, secret)) != NULL) {
        memcpy(p, "***", 3);
        memmove(p + 3, p + sl, strlen(p + sl) + 1);
    }
}

static int map_code(int gitcode, int fallback)
{
    switch (gitcode) {
    case GIT_EAUTH:
        return FARM_EAUTH;
    case GIT_ENOTFOUND:
        return FARM_ENOTFOUND;
    case GIT_ENONFASTFORWARD:
    case GIT_EMODIFIED:
    case GIT_ELOCKED:
        return FARM_ECONFLICT;
    case GIT_EEXISTS:
        return FARM_EEXISTS;
    case GIT_EUSER:
        return FARM_ECANCELLED;
    default:
        return fallback;
    }
}

int vcs_git_fail(int gitcode, int fallback, const char *token, const char *fmt, ...)
{
    char ctx[512], msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof(ctx), fmt, ap);
    va_end(ap);
    const git_error *e = git_error_last();
    if (e && e->message && *e->message)
        snprintf(msg, sizeof(msg), "%s: %s", ctx, e->message);
    else
        snprintf(msg, sizeof(msg), "%s", ctx);
    scrub(msg, token);
    farm_error_set("%s", msg);
    return map_code(gitcode, fallback);
}

int vcs_net_fail(int gitcode, const vcs_cb_state *st, const char *what)
{
    const vcs_remote *r = st->remote;
    const char *name = r->name ? r->name : "repository";
    char url[512], detail[512] = "";
    const git_error *e = git_error_last();
    int code;

    vcs_url_redact(url, sizeof(url), r->url);
    if (e && e->message)
        snprintf(detail, sizeof(detail), "%s", e->message);
    scrub(detail, r->token);

    if (st->cancelled || (r->cancel && *r->cancel)) {
        farm_error_set("%s of %s cancelled", what, name);
        return FARM_ECANCELLED;
    }
    if (st->watch.fired) {
        farm_error_set("%s of %s: %s stalled: no data for %lld s (%s)", what, name, url,
                       (long long)(st->watch.stall_ms / 1000), detail);
        return FARM_ETIMEOUT;
    }
    if (st->foreign) {
        farm_error_set("%s of %s: %s asked for credentials for another host; the farm only "
                       "sends the token to the configured clone URL's host",
                       what, name, url);
        return FARM_EAUTH;
    }
    if (st->missing) {
        farm_error_set("%s of %s: %s asks for credentials and no token is configured for it", what,
                       name, url);
        return FARM_EAUTH;
    }
    if (st->refused || gitcode == GIT_EAUTH || strstr(detail, "status code: 401") ||
        strstr(detail, "status code: 403")) {
        farm_error_set("%s of %s: %s refused the farm's credentials (token expired, revoked or "
                       "without access to this repository?): %s",
                       what, name, url, detail);
        return FARM_EAUTH;
    }
    if (strstr(detail, "status code: 404") || strstr(detail, "could not find repository") ||
        strstr(detail, "not a git repository") || strstr(detail, "failed to resolve path")) {
        farm_error_set("%s of %s: no repository at %s: %s", what, name, url, detail);
        return FARM_ENOTFOUND;
    }
    code = map_code(gitcode, FARM_EIO);
    if (code == FARM_ENOTFOUND) /* a missing object or ref mid-transfer is an I/O failure */
        code = FARM_EIO;
    farm_error_set("%s of %s from %s failed: %s", what, name, url, detail);
    return code;
}

/* ---- remote callbacks ---- */

/* scheme://host[:port] of a URL into out; "" for paths and file:// */
static void url_origin(char *out, size_t n, const char *url)
{
    const char *s = url ? url : "";
    const char *scheme = strstr(s, "://");
    out[0] = '\0';
    if (!scheme)
        return;
    const char *host = scheme + 3;
    const char *end = host + strcspn(host, "/?#");
    const char *at = NULL;
    for (const char *p = host; p < end; p++)
        if (*p == '@')
            at = p;
    if (at)
        host = at + 1;
    snprintf(out, n, "%.*s://%.*s", (int)(scheme - s), s, (int)(end - host), host);
    for (char *p = out; *p; p++)
        *p = (char)tolower((unsigned char)*p);
}

static int credentials_cb(git_credential **out, const char *url, const char *user_from_url,
                          unsigned int allowed, void *payload)
{
    vcs_cb_state *st = payload;
    const vcs_remote *r = st->remote;
    char want[512], got[512];

    st->asked++;
    vcs_watch_touch(&st->watch);
    if (r->cancel && *r->cancel) {
        st->cancelled = 1;
        git_error_set_str(GIT_ERROR_CALLBACK, "cancelled");
        return GIT_EUSER;
    }
    url_origin(want, sizeof(want), r->url);
    url_origin(got, sizeof(got), url);
    if (strcmp(want, got) != 0) {
        st->foreign = 1;
        git_error_set_str(GIT_ERROR_CALLBACK, "credentials requested for another host");
        return GIT_EAUTH;
    }
    if (!r->token || !*r->token) {
        st->missing = 1;
        git_error_set_str(GIT_ERROR_CALLBACK, "no token configured");
        return GIT_EAUTH;
    }
    if (st->asked > 1) { /* we answered once and the server asked again: refused */
        st->refused = 1;
        git_error_set_str(GIT_ERROR_CALLBACK, "the server refused the credentials");
        return GIT_EAUTH;
    }
    if (!(allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT)) {
        st->missing = 1;
        git_error_set_str(GIT_ERROR_CALLBACK, "the remote wants a kind of credential the farm "
                                              "does not have (only user and token)");
        return GIT_EAUTH;
    }
    (void)user_from_url;
    return git_credential_userpass_plaintext_new(out, r->user && *r->user ? r->user : "farm",
                                                 r->token);
}

static int cancel_check(vcs_cb_state *st)
{
    vcs_watch_touch(&st->watch);
    if (st->remote->cancel && *st->remote->cancel) {
        st->cancelled = 1;
        git_error_set_str(GIT_ERROR_CALLBACK, "cancelled");
        return GIT_EUSER;
    }
    return 0;
}

static int transfer_cb(const git_indexer_progress *stats, void *payload)
{
    (void)stats;
    return cancel_check(payload);
}

static int sideband_cb(const char *str, int len, void *payload)
{
    (void)str;
    (void)len;
    return cancel_check(payload);
}

static int push_transfer_cb(unsigned int current, unsigned int total, size_t bytes, void *payload)
{
    (void)current;
    (void)total;
    (void)bytes;
    return cancel_check(payload);
}

static int push_update_cb(const char *refname, const char *status, void *payload)
{
    vcs_cb_state *st = payload;
    (void)refname;
    if (status && !st->rejected[0])
        snprintf(st->rejected, sizeof(st->rejected), "%s", status);
    return 0;
}

void vcs_callbacks_init(git_remote_callbacks *cb, vcs_cb_state *st, const vcs_remote *remote)
{
    memset(st, 0, sizeof(*st));
    st->remote = remote;
    st->watch.stall_ms = remote->stall_timeout_s > 0 ? remote->stall_timeout_s * 1000LL : 120000;
    git_remote_init_callbacks(cb, GIT_REMOTE_CALLBACKS_VERSION);
    cb->credentials = credentials_cb;
    cb->transfer_progress = transfer_cb;
    cb->sideband_progress = sideband_cb;
    cb->push_transfer_progress = push_transfer_cb;
    cb->push_update_reference = push_update_cb;
    cb->payload = st;
}

/* ---- small helpers ---- */

char *vcs_strcat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (!s)
        return NULL;
    memcpy(s, a, la);
    memcpy(s + la, b, lb + 1);
    return s;
}

/* Remove everything inside the directory open at dfd, then close it. Never
 * follows a symlink: entries are unlinked by name relative to dfd, and
 * subdirectories are opened with O_NOFOLLOW. depth bounds the recursion. */
static int remove_contents(int dfd, int depth)
{
    int rc = 0;
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return FARM_EIO;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0)
            continue;
        if (unlinkat(dirfd(d), n, 0) == 0 || errno == ENOENT)
            continue;
        if (errno != EISDIR && errno != EPERM) {
            rc = FARM_EIO;
            continue;
        }
        if (depth > 4096) {
            rc = FARM_EIO;
            continue;
        }
        /* a directory: make sure we may list and change it, empty it, remove it */
        int sub = openat(dirfd(d), n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0 && errno == EACCES) {
            fchmodat(dirfd(d), n, 0700, 0);
            sub = openat(dirfd(d), n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (sub < 0) {
            rc = FARM_EIO;
            continue;
        }
        fchmod(sub, 0700);
        if (remove_contents(sub, depth + 1) < 0)
            rc = FARM_EIO;
        if (unlinkat(dirfd(d), n, AT_REMOVEDIR) < 0 && errno != ENOENT)
            rc = FARM_EIO;
    }
    closedir(d);
    return rc;
}

int vcs_tree_remove(const char *path)
{
    struct stat st;
    if (!path || !*path || strcmp(path, "/") == 0) {
        farm_error_set("refusing to remove '%s'", path ? path : "(null)");
        return FARM_EINVALID;
    }
    if (lstat(path, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        farm_error_set("cannot remove %s: %s", path, strerror(errno));
        return FARM_EIO;
    }
    if (!S_ISDIR(st.st_mode)) {
        if (unlink(path) < 0) {
            farm_error_set("cannot remove %s: %s", path, strerror(errno));
            return FARM_EIO;
        }
        return 0;
    }
    chmod(path, 0700);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        farm_error_set("cannot open %s to remove it: %s", path, strerror(errno));
        return FARM_EIO;
    }
    int rc = remove_contents(fd, 0);
    if (rmdir(path) < 0 && errno != ENOENT)
        rc = FARM_EIO;
    if (rc < 0)
        farm_error_set("could not remove everything under %s", path);
    return rc;
}
