/*
 * seccomp.c - the syscall filter every sandboxed process runs under.
 *
 * Built with libseccomp, exported as BPF into a sealed memfd and handed to
 * bubblewrap (--seccomp FD), which loads it just before exec, after its own
 * setup. Default allow, with the syscalls that widen the attack surface on
 * the kernel or reach other processes denied with EPERM. Only the native
 * architecture is allowed: a syscall made through another ABI (i386 int 0x80,
 * x32) kills the process.
 */
#include "internal.h"

#include "base/error.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Denied outright. Names unknown to this libseccomp or arch are skipped. */
static const char *const denied[] = {
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "process_madvise",
    "pidfd_getfd",
    "kcmp",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "quotactl_fd",
    "open_by_handle_at",
    "name_to_handle_at",
    "lookup_dcookie",
    "syslog",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "iopl",
    "ioperm",
    "vhangup",
    "nfsservctl",
    "uselib",
    "fanotify_init",
    "landlock_create_ruleset",
};

/* Namespace flags a clone() may not carry. */
static const unsigned long ns_flags[] = {
    CLONE_NEWNS,   CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET,
    CLONE_NEWIPC,  CLONE_NEWUTS,  CLONE_NEWCGROUP,
#ifdef CLONE_NEWTIME
    CLONE_NEWTIME,
#endif
};

static int build(scmp_filter_ctx *out)
{
    *out = NULL;
    int rc = FARM_ERROR;
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) {
        farm_error_set("seccomp: cannot create a filter");
        return FARM_ENOMEM;
    }
    if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) < 0 ||
        seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0) < 0) {
        farm_error_set("seccomp: cannot set the filter's attributes");
        goto out;
    }
    for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
        int nr = seccomp_syscall_resolve_name(denied[i]);
        if (nr == __NR_SCMP_ERROR || nr < 0)
            continue; /* not on this architecture */
        if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0) < 0) {
            farm_error_set("seccomp: cannot deny %s", denied[i]);
            goto out;
        }
    }
    /* clone3 passes its flags in memory the filter cannot read: say it does
     * not exist, and the C library falls back to clone(), which we can check. */
    if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0) < 0) {
        farm_error_set("seccomp: cannot deny clone3");
        goto out;
    }
    for (size_t i = 0; i < sizeof(ns_flags) / sizeof(ns_flags[0]); i++) {
        if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i])) < 0) {
            farm_error_set("seccomp: cannot restrict clone");
            goto out;
        }
    }
    /* Typing into the controlling terminal (TIOCSTI) and the Linux console
     * (TIOCLINUX); the request is compared on its low 32 bits, as the kernel
     * does. */
    unsigned long tio[] = {TIOCSTI, TIOCLINUX};
    for (size_t i = 0; i < 2; i++) {
        if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
                             SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, tio[i])) < 0) {
            farm_error_set("seccomp: cannot restrict ioctl");
            goto out;
        }
    }
    *out = ctx;
    ctx = NULL;
    rc = 0;
out:
    if (ctx)
        seccomp_release(ctx);
    return rc;
}

/* The filter is the same for every run: built and exported once per
 * process, then copied into a fresh memfd for each run (bubblewrap reads
 * the descriptor from its offset, so runs cannot share one). */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static unsigned char *bpf; /* the exported program, or NULL when building failed */
static size_t bpf_len;
static char bpf_error[256];

static void export_once(void)
{
    scmp_filter_ctx ctx = NULL;
    int fd = -1;
    if (build(&ctx) < 0) {
        snprintf(bpf_error, sizeof(bpf_error), "%s", farm_error_last());
        goto out;
    }
    fd = memfd_create("farm-seccomp-build", MFD_CLOEXEC);
    struct stat st;
    if (fd < 0 || seccomp_export_bpf(ctx, fd) < 0 || fstat(fd, &st) < 0 || st.st_size <= 0 ||
        st.st_size > (1 << 20)) {
        snprintf(bpf_error, sizeof(bpf_error), "seccomp: cannot export the filter");
        goto out;
    }
    unsigned char *p = malloc((size_t)st.st_size);
    if (!p || pread(fd, p, (size_t)st.st_size, 0) != st.st_size) {
        free(p);
        snprintf(bpf_error, sizeof(bpf_error), "seccomp: cannot read the exported filter");
        goto out;
    }
    bpf = p;
    bpf_len = (size_t)st.st_size;
out:
    if (fd >= 0)
        close(fd);
    if (ctx)
        seccomp_release(ctx);
}

int sbx_seccomp_fd(int *out_fd)
{
    *out_fd = -1;
    pthread_once(&once, export_once);
    if (!bpf) {
        farm_error_set("%s", bpf_error);
        return FARM_EIO;
    }
    int fd = memfd_create("farm-seccomp", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        farm_error_set("seccomp: memfd_create: %s", strerror(errno));
        return FARM_EIO;
    }
    if (write(fd, bpf, bpf_len) != (ssize_t)bpf_len || lseek(fd, 0, SEEK_SET) < 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
        farm_error_set("seccomp: cannot write the filter: %s", strerror(errno));
        close(fd);
        return FARM_EIO;
    }
    *out_fd = fd;
    return 0;
}
