/*
 * config.h - the farm's configuration: one JSON file, checked at start.
 *
 * config_load() reads and validates the whole file and reports every bad or
 * missing key by its path ("repos[2].trigger.label: expected a string").
 * Secrets are never literal in the file: "env:NAME" reads an environment
 * variable and "file:PATH" reads a file (trailing newline stripped); they are
 * resolved at load and registered with log_secret_add(). config_default()
 * gives the embedded defaults `farm serve` runs on without --config.
 *
 * farm/config owns the config file: its parsing, the checks with each
 * problem named by its key's path (config_check.c), the repos[] section
 * (config_repo.c) and the resolution of secrets. It may call only base. It
 * is called by whatever runs on a config: cli/ loads and checks it (`farm
 * serve`, `farm config`, `farm doctor`, ...), farm/farm.c keeps it in the
 * farm handle (farm_open() takes it over) and frees it, and from there farm/store (the local
 * tracker), farm/report (the tracker clients, a PR's base branch), farm/run, farm/sched,
 * farm/intake, farm/digest and webhook/ read it.
 */
#ifndef FARM_FARM_CONFIG_CONFIG_H
#define FARM_FARM_CONFIG_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef struct config_trigger {
    char *label;   /* a label that triggers work, or NULL */
    int assignee;  /* assigning the bot triggers work */
    char *mention; /* a mention ("@farm-bot") in a comment triggers work, or NULL */
    int on_open;   /* every newly opened issue triggers work */
} config_trigger;

typedef struct config_repo {
    char *name;    /* "owner/name" (GitHub), "org/project/repo" (Azure), any (local) */
    char *tracker; /* "github", "azure" or "local" */
    char *clone_url;
    char *base_branch;  /* default "main" */
    char *setup;        /* setup command (run with /bin/sh -c inside the sandbox), or NULL */
    char *test;         /* test command, or NULL */
    int max_fix_rounds; /* default 2 */
    config_trigger trigger;
    char *azure_project;   /* Azure: the project that owns the work items */
    char *azure_area_path; /* Azure: only work items under this area path, or NULL */
    char *azure_tag;       /* Azure: only work items with this tag, or NULL */
    char **allowed_actors; /* Azure: unique names allowed to trigger (NULL-terminated) */
    size_t nallowed_actors;
    struct {
        int fix; /* a failing CI check on the farm's PR starts a fix round: off */
    } ci;
    /* the setup command's cache and secrets (docs/environments.md) */
    int setup_cache;         /* setup_cache_key is given: what setup leaves is cached */
    char **setup_cache_key;  /* worktree-relative files whose contents key the cache */
    size_t nsetup_cache_key; /* (NULL-terminated; may be empty: keyed by the command) */
    int setup_cache_ttl_s;   /* 43200 */
    char **setup_env;        /* "NAME=value" (values resolved secrets), NULL-terminated, or NULL */
    size_t nsetup_env;
    char *setup_network;      /* "none", "allowlist", or NULL: sandbox.setup_network */
    char **setup_allow_hosts; /* setup_network given as a list of hosts: that allowlist */
    size_t nsetup_allow_hosts;
    char **agents; /* the agent presets an issue may pick (label `agent:<preset>`, `/farm run
                      <preset>`), NULL-terminated; NULL: only config_agent_default() */
    size_t nagents;
    char *image; /* the sandbox's root filesystem: "oci:DIR[:TAG]", "oci-archive:FILE[:TAG]" or
                    "rootfs:DIR" (sandbox/image.h), or NULL for the host's view */
    int plan;    /* repos[].plan: the first run of every session only writes a plan, which waits
                    for `/farm approve` (farm/intake/plan.h) */
} config_repo;

typedef struct config_token {
    char *name;   /* who, for logs and message authors */
    char *secret; /* the bearer token (resolved) */
    char *role;   /* "viewer", "member" or "admin" */
} config_token;

/* agent.prices: a model's prices in USD per million tokens (0: not given,
 * except input and output, which are required). */
typedef struct config_price {
    char *model;
    double input, output, cache_read, cache_write, cache_write_1h;
} config_price;

/* agent.presets.<name>: one preset's own settings, over agent.*, when a
 * session runs it (NULL fields: agent.*'s). */
typedef struct config_agent_preset {
    char *name;        /* "claude", "codex", "aider", "opencode", "command" */
    char *api_key;     /* resolved secret, or NULL */
    char *api_key_env; /* with api_key: the variable it is known by (the preset's provider's) */
    char *model;
    char *api_url;
} config_agent_preset;

typedef struct config {
    char *path;       /* the file it came from, or NULL for the defaults */
    char *listen;     /* "127.0.0.1:8080" */
    char *data_dir;   /* "./farm-data" */
    char *public_url; /* "http://127.0.0.1:8080" */
    char *log_level;  /* "info" */

    struct {
        char *url;      /* "sqlite:" (the default: <data_dir>/farm.db), "postgres://..." or
                           a libpq connection string */
        char *password; /* store.password: the server's (resolved secret), or NULL */
        int shared_fs;  /* store.shared_fs: data_dir is one file system every node
                           mounts (needed by `farm worker` with the local tracker) */
    } store;

    struct {
        int slots; /* worker.slots: this process's own cap on runs at work;
                      0 (the default) takes scaling.max_agents */
    } worker;

    struct {
        int enabled;           /* a "github" section is present */
        char *api_url;         /* "https://api.github.com" */
        char *token;           /* PAT (resolved secret), or NULL with an App */
        long long app_id;      /* GitHub App id, 0 when not an App */
        char *app_private_key; /* PEM (resolved secret) */
        char *webhook_secret;  /* resolved secret, or NULL */
        char *bot_login;       /* "farm-bot" */
    } github;

    struct {
        int enabled;
        char *org_url; /* "https://dev.azure.com/ORG" */
        char *token;   /* PAT (resolved secret) */
        char *webhook_user;
        char *webhook_password; /* resolved secret */
        char *webhook_header;   /* alternative: a header name carrying a shared secret */
        char *webhook_header_secret;
        char *bot_name; /* the farm's identity in Azure DevOps, to ignore its own events */
    } azure;

    struct {
        int max_agents;     /* 4 */
        int max_per_repo;   /* 2 */
        int min_warm;       /* 0 */
        int idle_timeout_s; /* 300 */
    } scaling;

    struct {
        char *mode;          /* "bwrap" (default) or "unsafe-none" */
        char *network;       /* agent phase: "none" (default) or "allowlist" */
        char *setup_network; /* setup phase: default same as network */
        char **allow_hosts;  /* "host[:port]" patterns, NULL-terminated */
        size_t nallow_hosts;
        int memory_mb;      /* 4096 */
        int pids;           /* 512 */
        int wall_timeout_s; /* 1800 */
        int disk_mb;        /* 8192 */
    } sandbox;

    struct {
        char *preset;   /* "claude", "codex", "aider", "opencode", "standin"; NULL with command */
        char **command; /* argv, NULL-terminated, or NULL */
        char *api_key;  /* the one secret an agent may get (resolved), or NULL */
        char *api_key_env; /* the variable it is passed as ("ANTHROPIC_API_KEY") */
        char *model;
        char *api_url;        /* the model API's base URL, or NULL: the preset's provider's */
        config_price *prices; /* agent.prices, searched before the built-in table */
        size_t nprices;
        char *path; /* agent.path: the preset's program, absolute, or NULL: found in PATH */
        char **env; /* agent.env: "NAME=value" entries (plain values), NULL-terminated, or NULL */
        config_agent_preset *presets; /* agent.presets: per-preset settings */
        size_t npresets;
    } agent;

    struct {
        int run_wall_s;        /* wall time of one run: 1800 */
        int max_runs;          /* runs (first, fix-ups, revisions, answers) per session: 5 */
        int partial_margin_s;  /* this long before the wall limit, push what exists: 120 */
        double session_usd;    /* model spend of one session; 0: no limit */
        double repo_daily_usd; /* of one repository in a UTC day; 0: no limit */
        double daily_usd;      /* of the whole farm in a UTC day; 0: no limit */
    } budgets;

    struct {
        int debounce_s; /* reviews and comments within this window make one revision: 60 */
    } review;

    struct {
        int max_fix_rounds; /* CI fix rounds on one pull request: 3 */
        int settle_s;       /* quiet time after the last check completed before the farm looks
                               at a commit's checks: 60 */
    } ci;

    struct {
        char *name;  /* commit author and committer: "farm-bot" */
        char *email; /* "farm-bot@users.noreply.local" */
    } bot;

    struct {
        char *signing_key; /* git.signing_key: an OpenSSH private key's text (resolved
                              secret, checked at load), or NULL: commits are not signed */
    } git;

    struct {
        int enabled;     /* a "digest" section is present: post the daily digest */
        char *tracker;   /* "github", "azure" or "local": the tracker of `repo` */
        char *repo;      /* a configured repository's name */
        long long issue; /* the issue (work item) whose thread gets the comment */
        int hour_utc;    /* 0..23: when, each day (7) */
    } digest;

    config_token *tokens;
    size_t ntokens;

    config_repo *repos;
    size_t nrepos;

    size_t max_body_bytes; /* webhook body cap: 25 MiB */

    /* The HTTP front's guards and per-client limits (webhook/guard.h,
     * webhook/clients.h; docs/config.md). */
    struct {
        char **allowed_hosts; /* more Host names served ("farm.example.com", "host:port") */
        size_t nallowed_hosts;
        char **trusted_proxies; /* proxy addresses whose X-Forwarded-For is believed */
        size_t ntrusted_proxies;
        int max_connections;        /* all clients; 0: from the open-file limit */
        int max_connections_per_ip; /* not at work on a request, per address: 64; 0: none */
        int header_timeout_s;       /* to send a request's headers: 10 */
        int body_min_rate;          /* bytes per second a body keeps up: 1024 */
        size_t body_bytes_per_ip;   /* body bytes in flight per address: 2 * max_body_bytes */
        int max_large_bodies;       /* bodies over 1 MiB at once, all clients: 8 */
    } http;
} config;

/* Load and validate a config file. On success *out is a new config the caller
 * frees with config_free(). On failure returns FARM_EINVALID (or FARM_EIO when
 * the file cannot be read) and, when errors is non-NULL, *errors is a heap
 * string with one line per problem, each starting with the key's path; the
 * caller frees it. */
int config_load(config **out, const char *path, char **errors);

/* The embedded defaults: loopback, ./farm-data, no trackers, no tokens. */
int config_default(config **out);

/* Find a configured repository by tracker and name (case-insensitive name);
 * NULL when it is not configured. */
const config_repo *config_repo_find(const config *c, const char *tracker, const char *name);

/* 1 when the listen address is a loopback address. */
int config_listen_is_loopback(const config *c);

/* What `farm serve` checks before it listens: a server bound beyond
 * loopback needs a webhook secret for every configured tracker and at least
 * one API token. Returns 0, or FARM_EINVALID with *errors (when errors is
 * non-NULL) a heap string, one problem per line, that the caller frees. */
int config_check_serve(const config *c, char **errors);

/* Whether the data directory can be had: an existing data_dir must be a
 * directory this user may write; a missing one must be creatable (the
 * nearest directory that exists on the way to it is one this user may write,
 * and a trial directory made there and removed at once succeeds, which
 * /proc for one refuses). Returns 0, or FARM_EINVALID with *errors (when
 * errors is non-NULL) a heap string of "data_dir: ..." lines the caller
 * frees. */
int config_data_dir_check(const config *c, char **errors);

/* The listen address split: host (without brackets for IPv6) into host
 * (hostlen bytes) and the port. Returns 0 or FARM_EINVALID. */
int config_listen_split(const config *c, char *host, size_t hostlen, int *port);

/* The agent preset the config names: agent.preset ("claude", ..., "auto"),
 * or "command" with agent.command. Never NULL. */
const char *config_agent_default(const config *c);

/* The preset repo's sessions run when the issue picks none: the config's
 * default when the repository allows it, else the first of repos[].agents. */
const char *config_repo_agent_default(const config *c, const config_repo *repo);

/* *out becomes a shallow copy of c (it owns nothing: never config_free()
 * it; valid while c is) whose agent is preset ("claude", ..., "command"),
 * with agent.presets.<preset>'s settings over agent.*'s. The key's variable
 * follows the preset's provider when the preset is not the configured one.
 * Returns 1 when the copy differs from c's agent, 0 when it is c's. */
int config_agent_for(config *out, const config *c, const char *preset);

/* agent.presets' entry for preset, or NULL. */
const config_agent_preset *config_agent_preset_find(const config *c, const char *preset);

/* 1 when repo allows preset (case-insensitive), 0 when not. */
int config_repo_agent_allowed(const config *c, const config_repo *repo, const char *preset);

void config_free(config *c);

#endif
