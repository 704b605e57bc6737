#!/usr/bin/env python3
"""run_escapes.py - the sandbox escape suite, as TAP.

Every attempt runs tests/sandbox/escape.c inside the sandbox through
`farm sandbox run` (the code path agents take) and asserts that it FAILED.
Positive controls (the command runs, the worktree is writable, an allowlisted
local server answers, exit statuses come through) make sure the suite cannot
pass by everything failing. Attempts that need what the host cannot give
(cgroup delegation) are reported as `# SKIP` with the reason, never passed.

Env: FARM_BIN (the farm binary), FARM_ESCAPE_BIN (the escape program, linked
statically so it runs in any root). With FARM_ESCAPE_IMAGE=1 every attempt
runs with an image as the root (`farm sandbox run --image`): an OCI layout
built from Debian's busybox-static by tests/support/make_oci.py.
"""
import http.server
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time

FARM = os.environ["FARM_BIN"]
ESCAPE = os.environ["FARM_ESCAPE_BIN"]
ESCAPED, BLOCKED = 0, 10
# The program's name inside the sandbox is unique to this run, so that the
# host-side process checks never see another suite's sandboxes (other builds
# may run this suite at the same time on the same host).
EXE = "escape-%d-%s" % (os.getpid(), os.urandom(4).hex())
# Where `farm sandbox run --dir` mounts the worktree inside the sandbox (docs/sandbox.md):
# a path in the sandbox's own mount namespace, never one on the host.
INSIDE = "/work"


def inside(name=""):
    """A path inside the sandbox's worktree."""
    return INSIDE + "/" + name if name else INSIDE

results = []  # (ok, description, note)
IMAGE_OPTS = []  # --config and --image when FARM_ESCAPE_IMAGE=1 (main() fills it)


def tap(ok, desc, note=""):
    results.append((ok, desc, note))
    n = len(results)
    line = ("ok" if ok else "not ok") + " %d - %s" % (n, desc)
    if note:
        line += " # " + note
    print(line, flush=True)


def skip(desc, reason):
    results.append((True, desc, "SKIP " + reason))
    print("ok %d - %s # SKIP %s" % (len(results), desc, reason), flush=True)


class Run:
    def __init__(self, rc, out, err):
        self.rc, self.out, self.err = rc, out, err
        self.stats = {}
        for line in err.splitlines():
            if line.startswith("farm-sandbox-stats: "):
                self.stats = json.loads(line[len("farm-sandbox-stats: "):])

    def why(self):
        text = (self.out.strip() + " | " + self.err.strip()).replace("\n", " / ")
        return "rc=%d %s" % (self.rc, text[:300])


def farm_run(wt, cmd, opts=(), env=None, timeout=120, pass_fds=()):
    argv = [FARM, "sandbox", "run", "--dir", wt, "--stats", "--timeout", "60"] + IMAGE_OPTS
    argv += list(opts)
    argv += ["--"] + list(cmd)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       env=env if env is not None else os.environ.copy(), pass_fds=pass_fds)
    return Run(p.returncode, p.stdout, p.stderr)


def escape(wt, *args, opts=(), **kw):
    return farm_run(wt, [inside(EXE)] + [str(a) for a in args], opts=opts, **kw)


def expect_blocked(desc, r):
    tap(r.rc == BLOCKED, desc, "" if r.rc == BLOCKED else r.why())


def host_escape_pids(exe):
    """Host pids of processes running the escape binary copied into a worktree."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.readlink("/proc/%s/exe" % d) == exe:
                pids.append(int(d))
        except OSError:
            pass
    return pids


def wait_for(cond, deadline_s):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def doctor():
    p = subprocess.run([FARM, "doctor"], capture_output=True, text=True, timeout=60)
    out = p.stdout
    return {
        "ok": p.returncode == 0,
        "memory": "memory limit           enforced" in out,
        "pids": "pids limit             enforced" in out,
        "text": out,
    }


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


def http_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def new_worktree(base, name):
    wt = os.path.join(base, name)
    os.makedirs(os.path.join(wt, ".git", "hooks"))
    with open(os.path.join(wt, ".git", "config"), "w") as f:
        f.write("[core]\n\tbare = false\n")
    shutil.copy(ESCAPE, os.path.join(wt, EXE))
    os.chmod(os.path.join(wt, EXE), 0o755)
    return wt


def main():
    base = tempfile.mkdtemp(prefix="farm-escapes-")
    os.chmod(base, 0o755)
    secret_dir = tempfile.mkdtemp(prefix="farm-secret-")  # 0700, like the farm's data dir
    token = os.path.join(secret_dir, "github-token")
    with open(token, "w") as f:
        f.write("ghp_thisisthefarmstoken\n")
    os.chmod(token, 0o600)
    caps = doctor()
    if not caps["ok"]:
        print("Bail out! the sandbox does not work on this host:\n" + caps["text"])
        return 1
    if os.environ.get("FARM_ESCAPE_IMAGE") == "1":
        if not os.access("/bin/busybox", os.X_OK):
            print("1..0 # SKIP busybox-static is not installed (scripts/install-deps --test)")
            shutil.rmtree(base, ignore_errors=True)
            shutil.rmtree(secret_dir, ignore_errors=True)
            return 0
        make_oci = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support",
                                "make_oci.py")
        layout, data = os.path.join(base, "image"), os.path.join(base, "data")
        subprocess.run([sys.executable, make_oci, layout], check=True, capture_output=True)
        os.makedirs(data)
        cfg = os.path.join(base, "farm.json")
        with open(cfg, "w") as f:
            json.dump({"data_dir": data}, f)
        IMAGE_OPTS.extend(["--config", cfg, "--image", "oci:%s:1" % layout])
        r = farm_run(base, ["/bin/sh", "-c", "test -e /usr/bin/python3 || echo no-host-python"])
        ok = r.rc == 0 and "no-host-python" in r.out
        tap(ok, "control: the root is the image (busybox), not the host", "" if ok else r.why())
    wt = new_worktree(base, "wt")
    escape_exe = inside(EXE)  # /proc/PID/exe shows the path inside the sandbox
    try:
        run_all(base, wt, escape_exe, token, caps)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(secret_dir, ignore_errors=True)
    failed = [r for r in results if not r[0]]
    print("1..%d" % len(results))
    print("# %d attempts and controls, %d failed, %d skipped" % (
        len(results), len(failed), sum(1 for r in results if r[2].startswith("SKIP"))))
    return 1 if failed else 0


def run_all(base, wt, escape_exe, token, caps):
    # --- positive controls -------------------------------------------------
    r = escape(wt, "write_ok", inside())
    written = os.path.join(wt, "written-inside")
    ok = r.rc == 0 and os.path.exists(written) and open(written).read() == "hello from inside\n"
    tap(ok, "control: the command runs and the worktree is writable", "" if ok else r.why())

    r = farm_run(wt, ["/bin/sh", "-c", "echo to-out; echo to-err >&2; exit 7"])
    ok = r.rc == 7 and "to-out" in r.out and "to-err" in r.err and r.stats.get("exit_code") == 7
    tap(ok, "control: exit status and both output streams come through", "" if ok else r.why())

    r = farm_run(wt, ["/bin/sh", "-c", "kill -TERM $$"])
    tap(r.rc == 143, "control: death by signal N exits 128+N", "" if r.rc == 143 else r.why())

    t0 = time.monotonic()
    r = farm_run(wt, ["/bin/sh", "-c", "sleep 30"], opts=["--timeout", "1"])
    took = time.monotonic() - t0
    ok = r.rc == 124 and r.stats.get("timed_out") == 1 and took < 10
    tap(ok, "control: the wall-clock timeout stops a run (exit 124)",
        "" if ok else "%s took=%.1fs" % (r.why(), took))

    # --- the farm's secrets and the host's files ----------------------------
    expect_blocked("cannot read a token file the farm holds", escape(wt, "read", token))
    if os.path.exists("/etc/shadow") and not (os.stat("/etc/shadow").st_mode & stat.S_IROTH):
        expect_blocked("cannot read a root-only host file (/etc/shadow)",
                       escape(wt, "read", "/etc/shadow"))
    else:
        skip("cannot read a root-only host file", "/etc/shadow missing or world-readable")
    expect_blocked("cannot reach the token through /proc/1/root, /proc/self/root",
                   escape(wt, "proc_root", token))
    extra_r, extra_w = os.pipe()
    expect_blocked("no descriptor of the farm's leaks in (/proc/self/fd)",
                   escape(wt, "proc_fds", pass_fds=(extra_r, extra_w)))
    os.close(extra_r)
    os.close(extra_w)
    expect_blocked("cannot write outside the worktree (/, /usr, /etc, /opt, /home, /dev, /run)",
                   escape(wt, "write_outside", "/", "/usr", "/etc", "/opt", "/home", "/dev",
                          "/run", "/var", "/root"))
    expect_blocked("cannot change .git/hooks or .git/config in the worktree",
                   escape(wt, "write_git", inside()))
    hooks_clean = os.listdir(os.path.join(wt, ".git", "hooks")) == []
    tap(hooks_clean, "host view: .git/hooks is still empty")
    env = os.environ.copy()
    env["FARM_GITHUB_TOKEN"] = "farm-secret-9f8e7d6c"
    expect_blocked("cannot read the farm's environment",
                   escape(wt, "environ", "farm-secret-9f8e7d6c", env=env))

    # --- the network ------------------------------------------------------
    farm_port = socket.socket()
    farm_port.bind(("127.0.0.1", 0))
    farm_port.listen(8)
    farm_port.setblocking(False)
    port = farm_port.getsockname()[1]
    expect_blocked("cannot connect to the host's 127.0.0.1 on the farm's port",
                   escape(wt, "connect", "127.0.0.1", port))
    try:
        farm_port.accept()
        tap(False, "host view: nothing reached the farm's port")
    except BlockingIOError:
        tap(True, "host view: nothing reached the farm's port")
    farm_port.close()

    targets = ["1.1.1.1", "53", "8.8.8.8", "53", "10.0.0.1", "80"]
    try:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.connect(("192.0.2.1", 9))
        host_ip = u.getsockname()[0]
        u.close()
        listener = socket.socket()
        listener.bind((host_ip, 0))
        listener.listen(1)
        targets = [host_ip, str(listener.getsockname()[1])] + targets
    except OSError:
        listener = None
    expect_blocked("network none: no address is reachable (host IP, public IPs)",
                   escape(wt, "connect", *targets))
    if listener:
        listener.close()

    abstract = socket.socket(socket.AF_UNIX)
    name = "farm-escape-%d" % os.getpid()
    abstract.bind("\0" + name)
    abstract.listen(1)
    expect_blocked("cannot reach a host abstract Unix socket", escape(wt, "abstract", name))
    abstract.close()

    allowed, other = http_server(), http_server()
    ap, op = allowed.server_address[1], other.server_address[1]
    allow = ["--network", "allowlist", "--allow", "127.0.0.1:%d" % ap]
    r = escape(wt, "proxy_get", "127.0.0.1", ap, opts=allow)
    ok = r.rc == ESCAPED and "proxy allowed 127.0.0.1:%d" % ap in r.err
    tap(ok, "control: allowlist mode reaches an allowlisted local server (and reports it)",
        "" if ok else r.why())
    r = escape(wt, "proxy_get", "127.0.0.1", op, opts=allow)
    ok = r.rc == BLOCKED and "proxy denied 127.0.0.1:%d" % op in r.err
    tap(ok, "allowlist mode: a host not on the list is refused (and reported)",
        "" if ok else r.why())
    expect_blocked("allowlist mode: CONNECT to a host not on the list is refused",
                   escape(wt, "proxy_connect", "127.0.0.1", op, opts=allow))
    expect_blocked("allowlist mode: no direct connection around the proxy",
                   escape(wt, "connect", "127.0.0.1", ap, opts=allow))
    r = escape(wt, "proxy_get", "localhost", ap,
               opts=["--network", "allowlist", "--allow", "localhost:%d" % ap])
    ok = r.rc == BLOCKED and "loopback" in r.err
    tap(ok, "allowlist mode: an allowed name that resolves to loopback is refused (rebinding)",
        "" if ok else r.why())
    allowed.shutdown()
    other.shutdown()

    # --- the kernel -------------------------------------------------------
    expect_blocked("TIOCSTI terminal injection is denied", escape(wt, "tiocsti"))
    expect_blocked("io_uring_setup is denied", escape(wt, "io_uring"))
    expect_blocked("cannot ptrace or process_vm_readv a sibling", escape(wt, "ptrace"))
    expect_blocked("cannot mount or unmount", escape(wt, "mount"))
    expect_blocked("cannot create a user (or any) namespace", escape(wt, "userns"))
    expect_blocked("bpf, perf_event_open, userfaultfd, keyctl, modules, kexec denied",
                   escape(wt, "kernel"))
    expect_blocked("syscalls of another ABI (i386 int 0x80) are blocked", escape(wt, "other_abi"))
    expect_blocked("cannot write /proc/sys, /proc/sysrq-trigger or /sys", escape(wt, "sysfs"))
    expect_blocked("cannot become root inside", escape(wt, "root"))
    expect_blocked("cannot signal the farm", escape(wt, "signal", os.getpid()))

    # --- limits -----------------------------------------------------------
    if caps["pids"] or os.geteuid() == 0:
        r = escape(wt, "fork_bomb", 5000, opts=["--pids", "64"])
        ok = r.rc == BLOCKED and (r.stats.get("pids_limited") == 1 or not caps["pids"])
        tap(ok, "a fork bomb is stopped by the pids limit (%s)" % (
            "cgroup" if caps["pids"] else "RLIMIT_NPROC of the run's own uid"),
            "" if ok else r.why())
    else:
        skip("a fork bomb is stopped by the pids limit",
             "no pids cgroup delegated and not root (no uid of its own for RLIMIT_NPROC)")
    if caps["memory"]:
        r = escape(wt, "memory_hog", 1024, opts=["--memory-mb", "64"])
        ok = r.rc != ESCAPED and r.stats.get("oom_killed") == 1
        tap(ok, "a memory hog is stopped by the memory limit", "" if ok else r.why())
    else:
        skip("a memory hog is stopped by the memory limit",
             "no memory cgroup delegated to the farm on this host")
    r = escape(wt, "disk_fill", "/tmp/fill", 256, opts=["--disk-mb", "16"])
    expect_blocked("a disk fill of /tmp stops at the size cap", r)
    r = escape(wt, "disk_fill", inside("fill"), 256, opts=["--disk-mb", "16"])
    expect_blocked("a single file in the worktree stops at the file size cap", r)

    # --- nothing outlives the run -----------------------------------------
    beat = os.path.join(wt, "daemon.txt")
    t0 = time.monotonic()
    r = escape(wt, "daemon", inside("daemon.txt"))
    took = time.monotonic() - t0
    gone = wait_for(lambda: not host_escape_pids(escape_exe), 15)
    before = open(beat).read() if os.path.exists(beat) else ""
    time.sleep(0.3)  # the daemon beats every 50 ms: six missed beats
    after = open(beat).read() if os.path.exists(beat) else ""
    ok = r.rc == BLOCKED and took < 20 and gone and before != "" and before == after
    tap(ok, "a setsid double-forked daemon does not outlive the run",
        "" if ok else "%s gone=%s beat %r -> %r" % (r.why(), gone, before, after))

    p = subprocess.Popen([FARM, "sandbox", "run", "--dir", wt, "--timeout", "120"] + IMAGE_OPTS +
                         ["--",
                          inside(EXE), "heartbeat", inside("hb")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hb = os.path.join(wt, "hb")
    started = wait_for(lambda: os.path.exists(hb) and host_escape_pids(escape_exe), 20)
    pids = host_escape_pids(escape_exe)
    uids = []
    for pid in pids:
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("Uid:"):
                        uids.append(int(line.split()[1]))
        except OSError:
            pass
    ok = started and uids and all(u != 0 for u in uids)
    tap(ok, "the sandboxed command is not root on the host",
        "" if ok else "started=%s host uids=%s" % (started, uids))
    p.kill()
    p.wait()
    gone = wait_for(lambda: not host_escape_pids(escape_exe), 15)
    tap(started and gone, "the sandbox does not survive the farm's death (kill -9)",
        "" if started and gone else "started=%s still running=%s" % (
            started, host_escape_pids(escape_exe)))

    # --- bad input ----------------------------------------------------------
    r = farm_run(wt, ["true"], opts=["--env", "BAD NAME=x"])
    ok = r.rc == 2 and "NAME=value" in r.err
    tap(ok, "bad input: a malformed environment entry is refused", "" if ok else r.why())
    r = farm_run(wt, ["/bin/echo", "x" * (100 * 1024)])
    ok = r.rc == 2 and "over the cap" in r.err
    tap(ok, "bad input: an oversized argument is refused", "" if ok else r.why())
    for bad, want in ((["--network", "bogus"], "--network is none or allowlist"),
                      (["--timeout", "soon"], "non-negative number"),
                      (["--allow", "bad host!"], "allowlist entry")):
        r = farm_run(wt, ["true"], opts=bad)
        ok = r.rc == 2 and want in r.err
        tap(ok, "bad input: farm sandbox run %s is refused" % " ".join(bad), "" if ok else r.why())
    env = os.environ.copy()
    env["PATH"] = "/nonexistent"
    r = farm_run(wt, ["true"], env=env)
    ok = r.rc == 125 and "apt-get install bubblewrap" in r.err
    tap(ok, "bad input: missing bubblewrap names the Debian package", "" if ok else r.why())


if __name__ == "__main__":
    sys.exit(main())
