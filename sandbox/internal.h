/*
 * internal.h - what the files of sandbox/ share with each other and nobody
 * else: one run's handle (spawned in sandbox.c, watched in sandbox_wait.c),
 * the seccomp filter, cgroups and the egress proxy. Names shared here carry
 * the sbx_ prefix. farm-sandbox-helper (helper/) includes it for the
 * descriptor numbers and the relay.
 */
#ifndef FARM_SANDBOX_INTERNAL_H
#define FARM_SANDBOX_INTERNAL_H

#include "sandbox.h"

#include "base/buf.h"
#include "base/strv.h"

#include <limits.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Descriptor numbers as bubblewrap sees them. */
enum { FD_SECCOMP = 3, FD_INFO = 4, FD_CMD = 5, FD_LIFELINE = 6, FD_FIRST_FREE = 7 };

#define SANDBOX_HOME SANDBOX_HOME_INSIDE

/* args.c: check the options (argv only when need_argv); find a program in
 * PATH (*out heap, the caller frees); bubblewrap's command line (proxy_dir:
 * the directory holding the proxy socket in allowlist mode; helper: the
 * farm-sandbox-helper to bind in); the command's environment. */
int sbx_opts_check(const sandbox_opts *o, int need_argv);
int sbx_which(char **out, const char *prog);
int sbx_build_argv(strv *a, const sandbox_opts *o, int prepared, const char *bwrap,
                   const char *helper, const char *proxy_dir);
/* The relay bind among o->binds (relay_port > 0), or NULL. */
const sandbox_bind *sbx_relay_bind(const sandbox_opts *o);
int sbx_build_env(strv *e, const sandbox_opts *o);

/* grant.c: let uid/gid read and write the tree at dir (POSIX ACLs, or chown
 * where the filesystem has none). */
int sbx_dir_grant(const char *dir, unsigned uid, unsigned gid);

/* seccomp.c: the filter exported as BPF into a sealed memfd (close-on-exec),
 * ready to hand to bubblewrap's --seccomp. *out_fd is the caller's to close. */
int sbx_seccomp_fd(int *out_fd);

/* cgroup.c: a cgroup (v2, or one per v1 hierarchy) for one run. */
typedef struct sbx_cgroup sbx_cgroup;

/* What the host delegates: version 2, 1 or 0, and which limits can be set. */
typedef struct sbx_cgroup_caps {
    int version;
    int memory, pids, cpu;
    int cpuacct; /* CPU time can be counted */
} sbx_cgroup_caps;

void sbx_cgroup_detect(sbx_cgroup_caps *out);
/* Create a cgroup with the given limits (0: unlimited). *out is NULL (and 0
 * returned) when nothing is delegated. Free with sbx_cgroup_destroy(). */
int sbx_cgroup_create(sbx_cgroup **out, int memory_mb, int pids, int cpu_percent);
/* The open cgroup.procs descriptors (up to 4) a child writes "0" into to
 * join before it execs. */
int sbx_cgroup_procs_fds(const sbx_cgroup *cg, int *fds, int max);
/* Kill everything still in the cgroup. */
void sbx_cgroup_kill(sbx_cgroup *cg);
/* Read the counters after a run: -1 for what cannot be read (peak memory,
 * CPU time). */
void sbx_cgroup_stats(sbx_cgroup *cg, int64_t *peak_kb, int64_t *cpu_ms, int *oom, int *pids_hit);
/* Kill what is left, remove the cgroup, free. NULL is fine. */
void sbx_cgroup_destroy(sbx_cgroup *cg);

/* proxy.c: the egress proxy for one run, listening on a Unix socket. */
typedef struct sbx_proxy sbx_proxy;
/* Start it on socket path sock (created here). allow is copied. */
int sbx_proxy_start(sbx_proxy **out, const char *sock, const char *const *allow,
                    sandbox_proxy_fn fn, void *ctx);
/* The same machinery as a plain forwarder: every connection to sock is
 * connected to the Unix socket target and relayed both ways (a relay bind,
 * sandbox_bind.relay_port). Stopped with sbx_proxy_stop(). */
int sbx_forward_start(sbx_proxy **out, const char *sock, const char *target);
/* Stop it, close every connection, join its threads, remove the socket. */
void sbx_proxy_stop(sbx_proxy *p);

/* sandbox.c and sandbox_wait.c: one run (sandbox.h's opaque handle). */
struct sandbox {
    const sandbox_opts *o;
    pid_t pid;  /* our child: bubblewrap's outer process (or the command, unsafe) */
    pid_t pgid; /* its process group (it calls setsid), for unsafe mode */
    int pidfd;
    int out_fd, err_fd, info_fd;
    int stop_r, stop_w; /* a byte on stop_w asks the waiting thread to stop */
    atomic_int stop_requested;
    uid_t uid; /* the host uid and gid it runs as, when the farm is root */
    gid_t gid;
    int cmd_w;    /* prepared: our end of the helper's command socket, until launch */
    int prepared; /* spawned ahead by sandbox_prepare() */
    int launched;
    int waited;
    int ns_init; /* a pidfd of the pid namespace's init, -1 until known (a pidfd, so that
                    a late kill cannot hit a recycled pid) */
    int killed;
    int64_t start_ms;
    sbx_cgroup *cg;
    sbx_proxy *proxy;
    sbx_proxy *relay;      /* the relay bind's forwarder, or NULL */
    char tmpdir[PATH_MAX]; /* per-run directory for the proxy socket, or "" */
    buf info;              /* what bubblewrap's --info-fd said so far */
};

/* sandbox.c: close *fd when it is open and set it to -1. */
void sbx_close_fd(int *fd);

/* sandbox_wait.c: kill everything the run started (the namespace's init,
 * the session our child leads, the cgroup). */
void sbx_kill_tree(sandbox *s);

/* relay.c (linked into the helper too, so it sets no error message): send
 * all n bytes (no SIGPIPE); 0, or FARM_EIO with errno saying why. */
int sbx_send_all(int fd, const char *p, size_t n);
/* Copy bytes both ways between two connected sockets until both directions
 * have ended (half-closes are passed on with shutdown) or one fails. */
void sbx_relay(int a, int b);

/* The port the in-sandbox helper listens on (the sandbox's own loopback). */
#define SBX_PROXY_PORT 3128
/* Where the proxy socket and the helper appear inside the sandbox. */
#define SBX_PROXY_SOCK_INSIDE "/run/farm/proxy.sock"
#define SBX_HELPER_INSIDE     "/run/farm/helper"
/* Where a relay bind's socket (the farm-side forwarder) appears inside. */
#define SBX_RELAY_SOCK_INSIDE "/run/farm/relay.sock"

#endif
