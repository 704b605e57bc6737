/*
 * sandbox.h - run one command isolated from the host.
 *
 * Agents and repository tests run code nobody reviewed. sandbox_run() runs one
 * command under bubblewrap with user, pid, ipc, uts, net, cgroup and mount
 * namespaces; the system read-only; only the working directory writable; a
 * private size-capped /tmp and HOME; a seccomp filter; rlimits; cgroup limits
 * where the host delegates a writable cgroup; a wall-clock timeout that kills
 * the whole process tree; and a network policy: none, or an allowlist enforced
 * by an egress proxy run outside the sandbox (sandbox/proxy.c).
 *
 * When the farm runs as root, each run gets an unprivileged host uid of its
 * own (opts.host_uid), never root; before the run the working directory's
 * tree gets POSIX ACL entries letting that uid write it (opts.grant_dir),
 * while the farm stays its owner.
 *
 * Typical use:
 *
 *     sandbox_opts o = SANDBOX_OPTS_INIT;
 *     o.argv = argv; o.dir = worktree; o.timeout_ms = 60000;
 *     sandbox_result r;
 *     int rc = sandbox_run(&r, &o);
 */
#ifndef FARM_SANDBOX_SANDBOX_H
#define FARM_SANDBOX_SANDBOX_H

#include <stddef.h>
#include <stdint.h>

/* Size caps on what a caller may hand in. */
#define SANDBOX_MAX_ARGS        1024
#define SANDBOX_MAX_ARG_BYTES   (64 * 1024)   /* one argument or environment entry */
#define SANDBOX_MAX_TOTAL_BYTES (1024 * 1024) /* argv and environment together */
#define SANDBOX_MAX_ENV         256
#define SANDBOX_MAX_ALLOW       64
#define SANDBOX_MAX_BINDS       16

/* HOME inside every sandbox: a private size-capped tmpfs, unless a writable
 * bind puts a folder of the caller's there (a run's HOME that lasts the run). */
#define SANDBOX_HOME_INSIDE "/home/sandbox"

typedef enum {
    SANDBOX_NET_NONE = 0,  /* an empty network namespace: its own loopback only */
    SANDBOX_NET_ALLOWLIST, /* only the egress proxy, which allows opts.allow hosts */
    SANDBOX_NET_HOST,      /* no network namespace (unsafe-none mode only) */
} sandbox_net;

/* Which stream a chunk of output came from. */
typedef enum { SANDBOX_STDOUT = 1, SANDBOX_STDERR = 2 } sandbox_stream;

/* Called from the thread running sandbox_run() as output arrives; the chunk
 * is not NUL-terminated and is only valid during the call. */
typedef void (*sandbox_output_fn)(void *ctx, sandbox_stream which, const char *data, size_t n);

/* Called for every request the egress proxy allows or denies (allowlist mode),
 * from a proxy thread: host and port as asked, allowed 1 or 0, and a short
 * reason ("allowlisted", "not on the allowlist", "resolve failed", ...). */
typedef void (*sandbox_proxy_fn)(void *ctx, int allowed, const char *host, int port,
                                 const char *reason);

typedef struct sandbox_bind {
    const char *src;  /* host path */
    const char *dest; /* path inside the sandbox */
    int writable;     /* 0: read-only */
    int relay_port;   /* > 0: a relay bind (at most one per run): src is a Unix socket of the
                         farm's, offered inside on 127.0.0.1:relay_port (the helper relays
                         each connection to it through a forwarder the run's uid may use),
                         in every network mode; dest and writable are not used */
} sandbox_bind;

typedef struct sandbox_opts {
    const char *const *argv; /* the command, NULL-terminated; argv[0] is looked up in PATH */
    const char *dir;         /* host directory bound read-write as the working directory */
    const char *dir_inside;  /* where it appears inside; default "/work" */
    const char *const *env;  /* "NAME=value" entries passed in, NULL-terminated; nothing
                                else from the farm's environment reaches the command */
    sandbox_net network;
    const char *const *allow; /* allowlist mode: "host", "host:port", "*.domain", "host:*" */
    sandbox_proxy_fn on_proxy;
    void *proxy_ctx;
    sandbox_output_fn on_output; /* NULL: output is discarded */
    void *output_ctx;
    int64_t timeout_ms; /* wall-clock limit; 0: none */
    int memory_mb;      /* cgroup memory limit; 0: none */
    int pids;           /* cgroup pids limit and RLIMIT_NPROC; 0: none */
    int cpu_percent;    /* cgroup cpu quota in percent of one CPU; 0: none */
    int disk_mb;        /* size of the private /tmp, HOME and /dev/shm each, and
                           RLIMIT_FSIZE; 0: 1024 */
    int nofile;         /* RLIMIT_NOFILE; 0: 1024 */
    unsigned host_uid;  /* when the farm is root: the host uid/gid the sandbox runs as;
                           0 (default): a fresh uid per run, from 0x70000000 up (callers
                           picking their own should stay below that) */
    unsigned host_gid;  /* 0: same as the uid */
    unsigned uid;       /* uid/gid seen inside; default 1000 */
    unsigned gid;
    int grant_dir;             /* when the farm is root: give the run's uid rwx on the trees of
                                  dir and of the writable binds first (ACLs; chown without
                                  them) (1, default); 0: leave them */
    const sandbox_bind *binds; /* extra binds, nbinds of them */
    size_t nbinds;
    const char *bwrap;      /* bubblewrap binary; default "bwrap" found in PATH */
    const char *helper;     /* farm-sandbox-helper, the first process inside every
                               sandbox; default: see sandbox_helper_path() */
    int unsafe_none;        /* run without any isolation (sandbox.mode "unsafe-none") */
    size_t max_output;      /* stop forwarding output after this many bytes (the command keeps
                               running, the rest is counted and dropped); 0: 64 MiB */
    const char *stdin_path; /* a host file fed on standard input (opened by the farm, read-only,
                               no symbolic link), or NULL for /dev/null. The farm opens it
                               with its own rights: never a path the sandbox can write */
    const char *root_dir;   /* the root filesystem (sandbox/image.h): its top-level entries are
                               bound read-only in place of the host's /usr, /bin, /lib, /etc...
                               (the working directory, HOME, /tmp, /proc, /dev and /run stay
                               the sandbox's own); NULL: the host's system directories */
} sandbox_opts;

#define SANDBOX_OPTS_INIT                                                                          \
    {                                                                                              \
        .argv = NULL, .dir = NULL, .dir_inside = "/work", .network = SANDBOX_NET_NONE,             \
        .host_uid = 0, .host_gid = 0, .uid = 1000, .gid = 1000, .grant_dir = 1                     \
    }

typedef struct sandbox_result {
    int exit_code;    /* the command's exit status (bubblewrap reports 128+N for signal
                         N), or -1 when it did not exit by itself */
    int term_signal;  /* the signal that ended it when known, else 0 */
    int timed_out;    /* the wall-clock limit killed it */
    int oom_killed;   /* the memory limit killed something in it */
    int pids_limited; /* the pids limit refused a fork at least once */
    int stopped;      /* sandbox_stop() ended it */
    int64_t wall_ms;
    int64_t cpu_ms;         /* user + system of the whole tree, from the cgroup; -1 when
                               no cgroup counts it (no limits asked, none delegated) */
    int64_t peak_memory_kb; /* the memory cgroup's peak; -1 without one */
    uint64_t stdout_bytes;
    uint64_t stderr_bytes;
    int output_truncated; /* more than max_output was produced */
} sandbox_result;

typedef struct sandbox sandbox;

/* Run a command to completion. Returns 0 when the sandbox ran (whatever the
 * command's exit status; look at *out), or FARM_EINVALID (bad options:
 * oversized or too many arguments, a malformed environment entry, a missing
 * or unreachable directory, a bad allowlist pattern), FARM_EUNSUPPORTED
 * (bubblewrap missing), FARM_EIO (spawn failed). */
int sandbox_run(sandbox_result *out, const sandbox_opts *opts);

/* The same in two steps, so another thread can stop a run: sandbox_start()
 * spawns the command and returns a handle; sandbox_wait() (once) streams
 * output until the end and fills *out; sandbox_stop() (any thread, any time
 * before sandbox_free(); async-signal-safe) kills the whole tree. opts and
 * what it points to must stay valid until sandbox_free(), which releases the
 * handle (and kills whatever still runs). */
int sandbox_start(sandbox **out, const sandbox_opts *opts);
int sandbox_wait(sandbox *s, sandbox_result *out);
void sandbox_stop(sandbox *s);
void sandbox_free(sandbox *s);

/* A warm start: sandbox_prepare() spawns the sandbox now (namespaces,
 * mounts, limits, proxy) with the farm's helper inside waiting for its
 * command; opts->argv is not used. sandbox_launch() hands over the command and
 * extra "NAME=value" environment entries (set over opts->env and the base
 * environment) when the work arrives; the timeout counts from then. Then
 * sandbox_wait() as usual. A prepared sandbox that is never launched is
 * killed by sandbox_free(). Not available in unsafe-none mode. */
int sandbox_prepare(sandbox **out, const sandbox_opts *opts);
int sandbox_launch(sandbox *s, const char *const *argv, const char *const *env);

/* Check the options without running anything (sizes, NUL bytes, names). */
int sandbox_opts_check(const sandbox_opts *opts);

/* What isolation this host gives, for `farm doctor` and the start-up log. */
typedef struct sandbox_probe_result {
    int bwrap_found;
    char bwrap_version[64];
    int userns;         /* a user namespace can be created */
    int bwrap_works;    /* a trivial command ran under the full namespace set */
    int seccomp;        /* the filter compiles and loads */
    int cgroup_version; /* 2, 1, or 0 when no writable cgroup is delegated */
    int cgroup_memory;  /* each limit is really enforced */
    int cgroup_pids;
    int cgroup_cpu;
    int rlimits;       /* always 1 on Linux */
    int ok;            /* agents can be run isolated */
    char problem[512]; /* when !ok: what is missing and how to fix it */
} sandbox_probe_result;

/* Probe the host (runs bwrap once). bwrap may be NULL for "bwrap" in PATH.
 * Always fills *out; returns 0, or FARM_EUNSUPPORTED when !out->ok. */
int sandbox_probe(sandbox_probe_result *out, const char *bwrap);

/* Log one line saying which limits are in force (start-up). */
void sandbox_probe_log(const sandbox_probe_result *p, int unsafe_none);

/* Parse "none"/"allowlist"; returns -1 when unknown. */
int sandbox_net_parse(const char *s);

/* Allowlist matching, as the proxy does it: 1 when host:port is allowed. */
int sandbox_allow_match(const char *const *allow, const char *host, int port);

/* The path of farm-sandbox-helper (sandbox/helper/helper.c), the program
 * that runs first inside every sandbox: opts->helper when set, else
 * $FARM_SANDBOX_HELPER, else the one beside the running executable or in
 * ../libexec/farm/ from it, else the one under the prefix built for. NULL, with the error set, when
 * none exists. */
const char *sandbox_helper_path(const sandbox_opts *opts);

#endif
