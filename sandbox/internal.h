/*
 * internal.h - what the files of sandbox/ share with each other and nobody
 * else: the seccomp filter, cgroups and the egress proxy.
 */
#ifndef FARM_SANDBOX_INTERNAL_H
#define FARM_SANDBOX_INTERNAL_H

#include "sandbox.h"

#include "base/strv.h"

#include <stddef.h>
#include <stdint.h>

/* Descriptor numbers as bubblewrap sees them. */
enum { FD_SECCOMP = 3, FD_INFO = 4, FD_CMD = 5, FD_LIFELINE = 6, FD_FIRST_FREE = 7 };

#define SANDBOX_HOME "/home/sandbox"


/* args.c: check the options (argv only when need_argv); find a program in
 * PATH (*out heap, the caller frees); bubblewrap's command line (proxy_dir:
 * the directory holding the proxy socket in allowlist mode; helper: the
 * farm-sandbox-helper to bind in); the command's environment. */
int sbx_opts_check(const sandbox_opts *o, int need_argv);
int sbx_which(char **out, const char *prog);
int sbx_build_argv(strv *a, const sandbox_opts *o, int prepared, const char *bwrap,
                   const char *helper, const char *proxy_dir);
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
/* Read the counters after a run. */
/* -1 for what cannot be read (peak memory, CPU time). */
void sbx_cgroup_stats(sbx_cgroup *cg, int64_t *peak_kb, int64_t *cpu_ms, int *oom, int *pids_hit);
/* Kill what is left, remove the cgroup, free. NULL is fine. */
void sbx_cgroup_destroy(sbx_cgroup *cg);

/* proxy.c: the egress proxy for one run, listening on a Unix socket. */
typedef struct sbx_proxy sbx_proxy;
/* Start it on socket path sock (created here). allow is copied. */
int sbx_proxy_start(sbx_proxy **out, const char *sock, const char *const *allow,
                    sandbox_proxy_fn fn, void *ctx);
/* Stop it, close every connection, join its threads, remove the socket. */
void sbx_proxy_stop(sbx_proxy *p);

/* relay.c: send all n bytes (no SIGPIPE); -1 on error. */
int sbx_send_all(int fd, const char *p, size_t n);
/* Copy bytes both ways between two connected sockets until both directions
 * have ended (half-closes are passed on with shutdown) or one fails. */
void sbx_relay(int a, int b);

/* The port the in-sandbox helper listens on (the sandbox's own loopback). */
#define SBX_PROXY_PORT 3128
/* Where the proxy socket and the helper appear inside the sandbox. */
#define SBX_PROXY_SOCK_INSIDE "/run/farm/proxy.sock"
#define SBX_HELPER_INSIDE     "/run/farm/helper"

#endif
