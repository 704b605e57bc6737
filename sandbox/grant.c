/*
 * grant.c - letting the sandbox's uid write the worktree.
 *
 * When the farm runs as root the sandbox runs as an unprivileged host uid,
 * which cannot write a worktree the farm created. Each file and directory
 * gets a POSIX ACL entry for that uid (rwx on directories, with a default
 * ACL so files the farm adds later carry it too; rw, and x where the owner
 * has it, on files). The owner stays root, so git and libgit2 still trust
 * the repository (their ownership checks look at the owner), and what the
 * agent creates is plainly its own. On a filesystem without ACLs the tree
 * is handed over with chown instead.
 */
#include "internal.h"

#include "base/error.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

/* The kernel's ACL xattr format (linux/posix_acl_xattr.h). */
enum { ACL_VERSION = 2 };
enum { TAG_USER_OBJ = 1, TAG_USER = 2, TAG_GROUP_OBJ = 4, TAG_MASK = 0x10, TAG_OTHER = 0x20 };
#define ACL_UNDEFINED_ID 0xffffffffu

typedef struct __attribute__((packed)) acl_entry {
    uint16_t tag, perm;
    uint32_t id;
} acl_entry;

typedef struct __attribute__((packed)) acl_xattr {
    uint32_t version;
    acl_entry e[5];
} acl_xattr;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned g_uid, g_gid;
static int g_chown; /* fall back: the filesystem has no ACLs */

static void fill(acl_xattr *a, unsigned mode, unsigned user_perm)
{
    unsigned group = (mode >> 3) & 7;
    a->version = ACL_VERSION;
    a->e[0] = (acl_entry){TAG_USER_OBJ, (uint16_t)((mode >> 6) & 7), ACL_UNDEFINED_ID};
    a->e[1] = (acl_entry){TAG_USER, (uint16_t)user_perm, g_uid};
    a->e[2] = (acl_entry){TAG_GROUP_OBJ, (uint16_t)group, ACL_UNDEFINED_ID};
    a->e[3] = (acl_entry){TAG_MASK, (uint16_t)(group | user_perm), ACL_UNDEFINED_ID};
    a->e[4] = (acl_entry){TAG_OTHER, (uint16_t)(mode & 7), ACL_UNDEFINED_ID};
}

static int grant_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)flag;
    (void)f;
    if (S_ISLNK(st->st_mode))
        return 0; /* links carry no permissions of their own */
    if (st->st_uid == g_uid && !S_ISDIR(st->st_mode))
        return 0; /* the uid's own already (a file an earlier run made) */
    if (g_chown)
        return lchown(path, g_uid, g_gid) < 0 && errno != ENOENT ? -1 : 0;
    acl_xattr a;
    if (S_ISDIR(st->st_mode)) {
        fill(&a, st->st_mode, 7);
        if (setxattr(path, "system.posix_acl_access", &a, sizeof(a), 0) < 0)
            return -1;
        fill(&a, 0755, 7);
        return setxattr(path, "system.posix_acl_default", &a, sizeof(a), 0) < 0 ? -1 : 0;
    }
    if (!S_ISREG(st->st_mode))
        return 0;
    fill(&a, st->st_mode, 6 | ((st->st_mode & S_IXUSR) ? 1 : 0));
    return setxattr(path, "system.posix_acl_access", &a, sizeof(a), 0) < 0 ? -1 : 0;
}

int sbx_dir_grant(const char *dir, unsigned uid, unsigned gid)
{
    pthread_mutex_lock(&lock);
    g_uid = uid;
    g_gid = gid;
    g_chown = 0;
    int r = nftw(dir, grant_one, 32, FTW_PHYS | FTW_MOUNT);
    if (r != 0 && (errno == EOPNOTSUPP || errno == ENOTSUP)) {
        g_chown = 1;
        r = nftw(dir, grant_one, 32, FTW_PHYS | FTW_MOUNT);
    }
    int e = errno;
    pthread_mutex_unlock(&lock);
    if (r != 0) {
        farm_error_set("sandbox: cannot give uid %u access to %s: %s", uid, dir, strerror(e));
        return FARM_EIO;
    }
    return 0;
}
