/*
 * cgroup.c - memory, pids and cpu limits through a cgroup of the run's own.
 *
 * Used only where the host delegates a writable cgroup to the farm: cgroup v2
 * (a writable directory under the unified mount whose subtree_control offers
 * the controllers) or, where that is what is mounted, the v1 hierarchies of
 * the memory, pids and cpu controllers, each below the cgroup the farm itself
 * is in. The child joins by writing "0" to the cgroup.procs descriptors
 * before it execs bubblewrap, so nothing it forks ever escapes the limits.
 */
#include "internal.h"

#include "base/error.h"
#include "base/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* cpuacct only counts (v1; v2 counts in cpu.stat of any cgroup): with the
 * command's init outside our reach, the cgroup is what sees its CPU time. */
enum { CG_MEMORY, CG_PIDS, CG_CPU, CG_CPUACCT, CG_N };
static const char *const cg_names[CG_N] = {"memory", "pids", "cpu", "cpuacct"};

struct sbx_cgroup {
    int version;
    char *dir[CG_N]; /* v1: one directory per controller (NULL: none); v2: dir[0] only */
    int procs[CG_N]; /* open cgroup.procs of each directory, or -1 */
};

/* The directory of our own cgroup for a v1 controller (ctl non-NULL) or the
 * v2 hierarchy (ctl NULL), into out. Returns 0, FARM_ENOTFOUND (not mounted,
 * or we are in none), FARM_EIO (/proc unreadable) or FARM_ETOOBIG; sets no
 * error, as detect() only probes. */
static int own_dir(char *out, size_t n, const char *ctl)
{
    char mnt[512] = "", rel[512] = "";
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return FARM_EIO;
    char line[2048];
    while (fgets(line, sizeof(line), f)) {
        /* id parent maj:min root mountpoint opts... - fstype source superopts */
        char *sep = strstr(line, " - ");
        if (!sep)
            continue;
        char fstype[32], source[64], super[512] = "";
        if (sscanf(sep + 3, "%31s %63s %511s", fstype, source, super) < 2)
            continue;
        char root[512], point[512];
        if (sscanf(line, "%*s %*s %*s %511s %511s", root, point) != 2)
            continue;
        if (!ctl && strcmp(fstype, "cgroup2") == 0) {
            snprintf(mnt, sizeof(mnt), "%s", point);
            break;
        }
        if (ctl && strcmp(fstype, "cgroup") == 0) {
            char *save = NULL;
            for (char *t = strtok_r(super, ",", &save); t; t = strtok_r(NULL, ",", &save))
                if (strcmp(t, ctl) == 0) {
                    snprintf(mnt, sizeof(mnt), "%s", point);
                    break;
                }
            if (mnt[0])
                break;
        }
    }
    fclose(f);
    if (!mnt[0])
        return FARM_ENOTFOUND;
    f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return FARM_EIO;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        const char *ctls = c1 + 1;
        if (!ctl && strcmp(line, "0") == 0 && ctls[0] == '\0') {
            snprintf(rel, sizeof(rel), "%s", c2 + 1);
            break;
        }
        if (ctl) {
            char tmp[256];
            snprintf(tmp, sizeof(tmp), "%s", ctls);
            char *save = NULL;
            for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save))
                if (strcmp(t, ctl) == 0)
                    snprintf(rel, sizeof(rel), "%s", c2 + 1);
            if (rel[0])
                break;
        }
    }
    fclose(f);
    if (!rel[0])
        return FARM_ENOTFOUND;
    /* In a cgroup namespace mounted at its root, the path is relative to it. */
    if (snprintf(out, n, "%s%s", mnt, strcmp(rel, "/") == 0 ? "" : rel) >= (int)n)
        return FARM_ETOOBIG;
    return 0;
}

/* Write val into dir/name. Returns 0, or FARM_EIO with errno saying why;
 * sets no error, since some files are optional (the caller decides). */
static int write_file(const char *dir, const char *name, const char *val)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return FARM_EIO;
    ssize_t w = write(fd, val, strlen(val));
    int e = errno;
    close(fd);
    if (w == (ssize_t)strlen(val))
        return 0;
    errno = e ? e : EIO;
    return FARM_EIO;
}

/* Read dir/name (up to n - 1 bytes) into out, NUL-terminated. Returns 0 or
 * FARM_EIO; sets no error (a counter the kernel does not offer is no
 * failure). */
static int read_file(const char *dir, const char *name, char *out, size_t n)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return FARM_EIO;
    ssize_t r = read(fd, out, n - 1);
    close(fd);
    if (r < 0)
        return FARM_EIO;
    out[r] = '\0';
    return 0;
}

/* The value of a "key value" line of a flat-keyed file into *out. Returns
 * 0, FARM_EIO (no such file) or FARM_ENOTFOUND (no such key); sets no
 * error. */
static int keyed(long long *out, const char *dir, const char *name, const char *key)
{
    char text[4096];
    int rc = read_file(dir, name, text, sizeof(text));
    if (rc < 0)
        return rc;
    size_t kl = strlen(key);
    for (char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, key, kl) == 0 && p[kl] == ' ') {
            *out = atoll(p + kl + 1);
            return 0;
        }
    }
    return FARM_ENOTFOUND;
}

/* 1 when the file has the key with a value above 0. */
static int keyed_positive(const char *dir, const char *name, const char *key)
{
    long long v;
    return keyed(&v, dir, name, key) == 0 && v > 0;
}

static int v2_has(const char *dir, const char *file, const char *ctl)
{
    char text[512];
    if (read_file(dir, file, text, sizeof(text)) < 0)
        return 0;
    char *save = NULL;
    for (char *t = strtok_r(text, " \n", &save); t; t = strtok_r(NULL, " \n", &save))
        if (strcmp(t, ctl) == 0)
            return 1;
    return 0;
}

/* 1 when a child directory can be made (and removed again) under dir. */
static int can_mkdir(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/farm-probe-%d", dir, (int)getpid());
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return 0;
    rmdir(path);
    return 1;
}

/* What detect() found, once per process: the farm's own cgroup does not
 * move while it runs, and probing costs a mountinfo parse and mkdirs. */
static pthread_once_t detect_once = PTHREAD_ONCE_INIT;
static sbx_cgroup_caps detected;
static char base_dir[CG_N][1024]; /* v2: base_dir[0] only */

static void detect(void)
{
    sbx_cgroup_caps *out = &detected;
    memset(out, 0, sizeof(*out));
    char dir[1024];
    int *flags[CG_N] = {&out->memory, &out->pids, &out->cpu, &out->cpuacct};
    if (own_dir(dir, sizeof(dir), NULL) == 0 && access(dir, W_OK) == 0 && can_mkdir(dir)) {
        int any = 0;
        for (int i = 0; i < CG_CPUACCT; i++) {
            if (v2_has(dir, "cgroup.subtree_control", cg_names[i])) {
                *flags[i] = 1;
                any = 1;
            }
        }
        if (any) {
            out->version = 2;
            out->cpuacct = 1;
            snprintf(base_dir[0], sizeof(base_dir[0]), "%s", dir);
            return;
        }
    }
    for (int i = 0; i < CG_N; i++) {
        if (own_dir(dir, sizeof(dir), cg_names[i]) == 0 && access(dir, W_OK) == 0 &&
            can_mkdir(dir)) {
            *flags[i] = 1;
            out->version = 1;
            snprintf(base_dir[i], sizeof(base_dir[i]), "%s", dir);
        }
    }
}

void sbx_cgroup_detect(sbx_cgroup_caps *out)
{
    pthread_once(&detect_once, detect);
    *out = detected;
}

/* Write one limit file of controller which. Returns 0, or FARM_EIO with
 * the error set. */
static int write_limit(int which, const char *dir, const char *name, const char *val)
{
    if (write_file(dir, name, val) == 0)
        return 0;
    farm_error_set("cgroup: cannot set the %s limit in %s: %s", cg_names[which], dir,
                   strerror(errno));
    return FARM_EIO;
}

/* Set controller which's limit in dir to limit (MiB, processes, percent of
 * one CPU; 0: none). Returns 0, or FARM_EIO with the error set. */
static int set_limit(const sbx_cgroup *cg, int which, const char *dir, int limit)
{
    char v[64];
    int rc = 0;
    if (limit <= 0)
        return 0;
    if (which == CG_MEMORY) {
        snprintf(v, sizeof(v), "%lld", (long long)limit << 20);
        if (cg->version == 2) {
            rc = write_limit(which, dir, "memory.max", v);
            (void)write_file(dir, "memory.swap.max", "0"); /* absent without swap accounting */
        } else {
            rc = write_limit(which, dir, "memory.limit_in_bytes", v);
            (void)write_file(dir, "memory.memsw.limit_in_bytes", v);
        }
    } else if (which == CG_PIDS) {
        snprintf(v, sizeof(v), "%d", limit);
        rc = write_limit(which, dir, "pids.max", v);
    } else if (which == CG_CPU) {
        long quota = 1000L * limit; /* period 100 ms */
        if (cg->version == 2) {
            snprintf(v, sizeof(v), "%ld 100000", quota);
            rc = write_limit(which, dir, "cpu.max", v);
        } else {
            snprintf(v, sizeof(v), "%ld", quota);
            rc = write_limit(which, dir, "cpu.cfs_period_us", "100000")
                     ?: write_limit(which, dir, "cpu.cfs_quota_us", v);
        }
    }
    return rc;
}

/* Make the run's directory for controller i (v2: the one for them all)
 * under the farm's own, set the limits it holds (avail: the controllers
 * asked for) and open its cgroup.procs. Returns 0 or a FARM_E* code with
 * the error set; sbx_cgroup_destroy() undoes what was made. */
static int make_dir(sbx_cgroup *cg, int i, const char *name, const int *avail, const int *limit)
{
    char dir[1200];
    if (snprintf(dir, sizeof(dir), "%s/%s", base_dir[i], name) >= (int)sizeof(dir)) {
        farm_error_set("cgroup: path too long under %s", base_dir[i]);
        return FARM_EINVALID;
    }
    if (mkdir(dir, 0755) < 0) {
        farm_error_set("cgroup: mkdir %s: %s", dir, strerror(errno));
        return FARM_EIO;
    }
    cg->dir[i] = strdup(dir);
    if (!cg->dir[i]) {
        rmdir(dir);
        farm_error_set("out of memory");
        return FARM_ENOMEM;
    }
    int rc = 0;
    for (int j = 0; j < CG_N && rc == 0; j++)
        if (cg->version == 2 ? avail[j] : j == i)
            rc = set_limit(cg, j, dir, limit[j]);
    if (rc < 0)
        return rc;
    char path[1300];
    snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
    cg->procs[i] = open(path, O_WRONLY | O_CLOEXEC);
    if (cg->procs[i] < 0) {
        farm_error_set("cgroup: open %s: %s", path, strerror(errno));
        return FARM_EIO;
    }
    return 0;
}

int sbx_cgroup_create(sbx_cgroup **out, int memory_mb, int pids, int cpu_percent)
{
    *out = NULL;
    static unsigned counter;
    sbx_cgroup_caps caps;
    sbx_cgroup_detect(&caps);
    if (!caps.version)
        return 0;
    int rc = 0;
    sbx_cgroup *cg = calloc(1, sizeof(*cg));
    if (!cg) {
        farm_error_set("out of memory");
        return FARM_ENOMEM;
    }
    cg->version = caps.version;
    for (int i = 0; i < CG_N; i++)
        cg->procs[i] = -1;
    char name[96];
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(name, sizeof(name), "farm-sbx-%d-%u-%ld", (int)getpid(),
             __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED), (long)ts.tv_nsec);
    /* only the controllers a limit is asked of: joining a v1 hierarchy
     * costs the child a cgroup migration */
    int avail[CG_N] = {caps.memory && memory_mb > 0, caps.pids && pids > 0,
                       caps.cpu && cpu_percent > 0, 0};
    if (!avail[0] && !avail[1] && !avail[2]) {
        free(cg);
        return 0;
    }
    avail[CG_CPUACCT] = caps.cpuacct;
    int limit[CG_N] = {memory_mb, pids, cpu_percent, 0};
    for (int i = 0; i < CG_N && rc == 0; i++) {
        if (cg->version == 2 ? i > 0 : !avail[i])
            continue; /* v2: one directory holds every controller */
        rc = make_dir(cg, i, name, avail, limit);
    }
    if (rc == 0) {
        *out = cg;
        cg = NULL;
    }
    sbx_cgroup_destroy(cg);
    return rc;
}

int sbx_cgroup_procs_fds(const sbx_cgroup *cg, int *fds, int max)
{
    int n = 0;
    for (int i = 0; cg && i < CG_N && n < max; i++)
        if (cg->procs[i] >= 0)
            fds[n++] = cg->procs[i];
    return n;
}

/* Send SIGKILL to every process listed in dir/cgroup.procs; returns how many. */
static int kill_listed(const char *dir)
{
    char path[1300];
    snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    int n = 0;
    long pid;
    while (fscanf(f, "%ld", &pid) == 1) {
        if (pid > 1 && kill((pid_t)pid, SIGKILL) == 0)
            n++;
    }
    fclose(f);
    return n;
}

void sbx_cgroup_kill(sbx_cgroup *cg)
{
    if (!cg)
        return;
    for (int i = 0; i < CG_N; i++) {
        if (!cg->dir[i])
            continue;
        if (cg->version == 2 && write_file(cg->dir[i], "cgroup.kill", "1") == 0)
            continue;
        /* v1 has no cgroup.kill: kill what is listed until nothing is (a
         * process forking meanwhile shows up in the next round). */
        for (int round = 0; round < 50 && kill_listed(cg->dir[i]) > 0; round++)
            ;
    }
}

/* 1 when the memory limit killed something in the cgroup at mem. */
static int oom_killed(int version, const char *mem)
{
    if (version == 2)
        return keyed_positive(mem, "memory.events", "oom_kill");
    if (keyed_positive(mem, "memory.oom_control", "oom_kill"))
        return 1;
    /* older kernels: any failed charge at the limit */
    char text[64];
    return read_file(mem, "memory.failcnt", text, sizeof(text)) == 0 && atoll(text) > 0 &&
           keyed_positive(mem, "memory.oom_control", "under_oom");
}

void sbx_cgroup_stats(sbx_cgroup *cg, int64_t *peak_kb, int64_t *cpu_ms, int *oom, int *pids_hit)
{
    *peak_kb = -1;
    *cpu_ms = -1;
    *oom = 0;
    *pids_hit = 0;
    if (!cg)
        return;
    char num[64];
    long long us;
    if (cg->version == 2) {
        if (keyed(&us, cg->dir[0], "cpu.stat", "usage_usec") == 0 && us >= 0)
            *cpu_ms = us / 1000;
    } else if (cg->dir[CG_CPUACCT] &&
               read_file(cg->dir[CG_CPUACCT], "cpuacct.usage", num, sizeof(num)) == 0) {
        *cpu_ms = atoll(num) / 1000000;
    }
    const char *mem = cg->version == 2 ? cg->dir[0] : cg->dir[CG_MEMORY];
    const char *pid = cg->version == 2 ? cg->dir[0] : cg->dir[CG_PIDS];
    char text[64];
    if (mem) {
        if (read_file(mem, cg->version == 2 ? "memory.peak" : "memory.max_usage_in_bytes", text,
                      sizeof(text)) == 0)
            *peak_kb = atoll(text) / 1024;
        *oom = oom_killed(cg->version, mem);
    }
    if (pid)
        *pids_hit = keyed_positive(pid, "pids.events", "max");
}

static int empty(const char *dir)
{
    char text[64];
    return read_file(dir, "cgroup.procs", text, sizeof(text)) == 0 && text[0] == '\0';
}

void sbx_cgroup_destroy(sbx_cgroup *cg)
{
    if (!cg)
        return;
    sbx_cgroup_kill(cg);
    for (int i = 0; i < CG_N; i++) {
        if (cg->procs[i] >= 0)
            close(cg->procs[i]);
        if (!cg->dir[i])
            continue;
        /* Killed processes leave the cgroup once the kernel has reaped them. */
        int gone = 0;
        for (int t = 0; t < 1000 && !gone; t++) {
            gone = empty(cg->dir[i]) && rmdir(cg->dir[i]) == 0;
            if (gone)
                break;
            if (t % 25 == 24)
                sbx_cgroup_kill(cg);
            struct timespec ms2 = {0, 2 * 1000 * 1000};
            nanosleep(&ms2, NULL);
        }
        if (!gone)
            log_warn("sandbox cgroup left behind: its processes did not exit in time", "cgroup",
                     cg->dir[i]);
        free(cg->dir[i]);
    }
    free(cg);
}
