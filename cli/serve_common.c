/*
 * serve_common.c - the start-up and shutdown sequence of `farm serve` and
 * `farm demo` (see serve_common.h).
 *
 * The signals are blocked before any thread starts and taken with sigwait()
 * (or sigtimedwait()) in the main thread, so no handler runs on a random
 * thread and shutdown is ordinary code: stop accepting, finish the requests
 * in flight, let the store commit what is queued, close.
 */
#include "serve_common.h"
#include "base/error.h"
#include "base/http.h"
#include "base/log.h"
#include "farm/digest/digest.h"
#include "farm/report/outbox.h"
#include "farm/run/agent.h"
#include "farm/sched/scheduler.h"
#include "sandbox/sandbox.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DRAIN_MS 10000

/* A farm with no API tokens trusts loopback clients; say so when its
 * public_url suggests it is reached from elsewhere (through a proxy on this
 * host, whose requests are never taken for loopback ones). */
static void warn_exposed(const config *cfg)
{
    const char *u = cfg->public_url ? strstr(cfg->public_url, "://") : NULL;
    if (cfg->ntokens > 0 || !u)
        return;
    u += 3;
    if (!strncmp(u, "127.", 4) || !strncmp(u, "localhost", 9) || !strncmp(u, "[::1]", 5))
        return;
    log_warn("no API tokens are configured: the API and the streams answer loopback clients "
             "only, and a request a proxy forwarded is not one",
             "public_url", cfg->public_url, "hint", "configure tokens (docs/config.md)");
}

/* Probe the host's isolation and log it; 0 when agents may run. */
static int check_sandbox(const config *cfg)
{
    int unsafe = cfg->sandbox.mode && !strcmp(cfg->sandbox.mode, "unsafe-none");
    sandbox_probe_result probe;
    memset(&probe, 0, sizeof(probe));
    if (!unsafe)
        sandbox_probe(&probe, NULL);
    sandbox_probe_log(&probe, unsafe);
    if (unsafe || probe.ok)
        return 0;
    fprintf(stderr,
            "farm: agents cannot run isolated on this host: %s\n"
            "farm: `farm doctor` shows what is missing. To serve webhooks and the API without "
            "running agents here, use `farm serve --intake-only`; to run agents without any "
            "isolation (never with untrusted code), set sandbox.mode to \"unsafe-none\".\n",
            probe.problem);
    return -1;
}

/* One preset's check (agent_program_check_all()): logged when it passed,
 * the reason and the fix on stderr when not. */
static void on_agent_check(const char *preset, int rc, const char *line, void *arg)
{
    (void)arg;
    if (rc == 0) {
        log_info("agent program", "preset", preset, "program", line);
        return;
    }
    fprintf(stderr, "farm: the agent preset %s cannot run in the sandbox: %s\n", preset, line);
}

/* Run the program of every preset a repository may run inside the sandbox
 * (agent_program_check_all()); 0 when each is there, else the reasons and
 * the fix on stderr. */
static int check_agent(const config *cfg)
{
    if (agent_program_check_all(cfg, on_agent_check, NULL) >= 0)
        return 0;
    fprintf(stderr,
            "farm: `farm doctor` checks every preset again; to serve webhooks and the API without "
            "running agents here, use `farm serve --intake-only`; a preset that is not needed "
            "can go from repos[].agents.\n");
    return -1;
}

int serve_start(serve_state *out, config *cfg, const server_options *sopt, int intake_only)
{
    memset(out, 0, sizeof(*out));
    char *errors = NULL;
    int lvl = log_level_parse(cfg->log_level);
    if (lvl >= 0)
        log_set_level((log_level)lvl);
    if (config_check_serve(cfg, &errors) != 0) {
        fprintf(stderr,
                "farm: refusing to serve on %s beyond loopback:\n%s"
                "farm: configure the webhook secrets and API tokens, or listen on 127.0.0.1\n",
                cfg->listen, errors ? errors : "");
        free(errors);
        config_free(cfg);
        return -1;
    }

    /* The port first: a second farm on a busy port stops here, before it
     * creates a data directory or starts anything. */
    server_options so = sopt ? *sopt : (server_options)SERVER_OPTIONS_INIT;
    if (so.listen_fd < 0 && server_bind(&so.listen_fd, cfg) != 0) {
        fprintf(stderr, "farm: %s\n", farm_error_last());
        config_free(cfg);
        return -1;
    }
    warn_exposed(cfg);
    /* Runs need the sandbox's uid to reach the data directory: refuse now,
     * with the fix, rather than let every run fail at the agent step. */
    if (!intake_only && farm_reach_check(cfg) != 0) {
        fprintf(stderr, "farm: %s\n", farm_error_last());
        if (!sopt || sopt->listen_fd < 0)
            close(so.listen_fd);
        config_free(cfg);
        return -1;
    }

    sigemptyset(&out->signals);
    sigaddset(&out->signals, SIGINT);
    sigaddset(&out->signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &out->signals, NULL); /* inherited by every thread started below */
    signal(SIGPIPE, SIG_IGN);
    http_global_init();

    if (farm_open(&out->f, cfg) != 0) { /* cfg is the farm's now, even on failure */
        fprintf(stderr, "farm: cannot open the farm: %s\n", farm_error_last());
        close(so.listen_fd);
        return -1;
    }
    if (outbox_start(out->f) != 0) { /* tracker side effects (farm/report/outbox.h) */
        fprintf(stderr, "farm: cannot start the outbox: %s\n", farm_error_last());
        goto fail;
    }
    /* Agents run only isolated: say which limits are really in force, and
     * refuse to run them at all where isolation cannot be had, unless the
     * config explicitly asks for no sandbox (logged loudly every start). */
    if (!intake_only && check_sandbox(farm_config(out->f)) != 0)
        goto fail;
    /* the agent's CLI inside the sandbox, now rather than at the first run */
    if (!intake_only && check_agent(farm_config(out->f)) != 0)
        goto fail;
    /* the agents' way to their model API, without the real key (docs/gateway.md) */
    if (!intake_only && farm_gateway_start(out->f) != 0) {
        fprintf(stderr, "farm: cannot start the model gateway: %s\n", farm_error_last());
        goto fail;
    }
    /* leases jobs and runs them (farm/sched/scheduler.h) */
    if (!intake_only && scheduler_start(out->f, NULL) != 0) {
        fprintf(stderr, "farm: cannot start the scheduler: %s\n", farm_error_last());
        goto fail;
    }
    if (server_start(&out->srv, out->f, &so) != 0) { /* takes the socket */
        fprintf(stderr, "farm: %s\n", farm_error_last());
        so.listen_fd = -1;
        goto fail;
    }
    so.listen_fd = -1;
    /* the daily digest comment, when configured (farm/digest/digest.h) */
    if (digest_daily_start(&out->daily, out->f) != 0)
        log_error("the daily digest will not be posted", "error", farm_error_last());
    const char *address = server_address(out->srv);
    log_info("listening", "address", address, "version", FARM_VERSION, "data_dir",
             farm_config(out->f)->data_dir);
    fprintf(stderr, "farm: listening on http://%s\n", address);
    return 0;
fail:
    scheduler_stop(out->f);
    outbox_stop(out->f);
    if (so.listen_fd >= 0)
        close(so.listen_fd);
    farm_close(out->f);
    out->f = NULL;
    return -1;
}

int worker_start(serve_state *out, config *cfg)
{
    scheduler_options so = SCHEDULER_OPTIONS_INIT;
    int lvl = log_level_parse(cfg->log_level);

    memset(out, 0, sizeof(*out));
    if (lvl >= 0)
        log_set_level((log_level)lvl);
    if (farm_reach_check(cfg) != 0) {
        fprintf(stderr, "farm: %s\n", farm_error_last());
        config_free(cfg);
        return -1;
    }
    sigemptyset(&out->signals);
    sigaddset(&out->signals, SIGINT);
    sigaddset(&out->signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &out->signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    http_global_init();
    if (farm_open(&out->f, cfg) != 0) {
        fprintf(stderr, "farm: cannot open the farm: %s\n", farm_error_last());
        return -1;
    }
    if (outbox_start(out->f) != 0) {
        fprintf(stderr, "farm: cannot start the outbox: %s\n", farm_error_last());
        goto fail;
    }
    if (check_sandbox(farm_config(out->f)) != 0)
        goto fail;
    if (farm_gateway_start(out->f) != 0) {
        fprintf(stderr, "farm: cannot start the model gateway: %s\n", farm_error_last());
        goto fail;
    }
    so.role = "worker";
    if (scheduler_start(out->f, &so) != 0) {
        fprintf(stderr, "farm: cannot start the scheduler: %s\n", farm_error_last());
        goto fail;
    }
    log_info("working", "version", FARM_VERSION, "data_dir", farm_config(out->f)->data_dir);
    fprintf(stderr, "farm: worker running (no HTTP)\n");
    return 0;
fail:
    scheduler_stop(out->f);
    outbox_stop(out->f);
    farm_close(out->f);
    out->f = NULL;
    return -1;
}

int serve_wait(serve_state *s, void (*tick)(void *arg), void *arg, int tick_ms)
{
    int sig = 0;
    if (!tick) {
        sigwait(&s->signals, &sig);
        return sig;
    }
    struct timespec ts = {tick_ms / 1000, (long)(tick_ms % 1000) * 1000000L};
    for (;;) {
        sig = sigtimedwait(&s->signals, NULL, &ts);
        if (sig > 0)
            return sig;
        if (errno == EAGAIN)
            tick(arg);
    }
}

void serve_stop(serve_state *s)
{
    server_stop(s->srv, DRAIN_MS);
    digest_daily_stop(s->daily);
    scheduler_stop(s->f); /* runs at work stop; their jobs go back to the queue */
    outbox_stop(s->f);
    farm_close(s->f);
    memset(s, 0, sizeof(*s));
}
