/*
 * cmd_demo.c - `farm demo`: the README's first command. It serves exactly as
 * `farm serve` does, on the embedded defaults (or --config) plus a local
 * tracker repository demo/greeter whose bare repository it generates under
 * the data directory (demo_sample.c), files a sample issue through the local
 * tracker as `farm issue new --label agent` does, says which agent works on
 * it and where to watch, and follows the sessions of demo/greeter until it
 * is stopped. A second run on the same data directory files no second issue.
 *
 * The config it serves on is written to DATA_DIR/demo.json first, so the
 * commands it prints to carry on (`farm logs`, `farm issue new`, a review
 * comment, `farm issue merge`) read the same config with --config, from
 * another terminal, while the demo serves.
 */
#include "cli.h"
#include "demo_sample.h"
#include "local_issue.h"
#include "serve_common.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "farm/config/config.h"
#include "farm/farm.h"
#include "farm/run/agent.h"
#include "farm/store/store_local.h"
#include "farm/store/store_run.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEMO_CONFIG     "demo.json" /* in the data directory */
#define DEMO_DEBOUNCE_S 5           /* review.debounce_s, unless the config says */
#define DEMO_TICKMS     250
#define DEMO_PR_WAIT_MS 30000 /* a session in review without its PR this long is said so */

/* ---- paths as a person types them ---------------------------------------- */

/* mkdir -p: the parents it creates get 0755 (traversable), dir gets mode. */
static int mkdir_p(const char *dir, mode_t mode)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof(p), "%s", dir) >= (int)sizeof(p)) {
        farm_error_set("path too long: %s", dir);
        return FARM_EINVALID;
    }
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST) {
            farm_error_set("cannot create %s: %s", p, strerror(errno));
            return FARM_EIO;
        }
        *s = '/';
    }
    if (mkdir(p, mode) < 0 && errno != EEXIST) {
        farm_error_set("cannot create %s: %s", p, strerror(errno));
        return FARM_EIO;
    }
    return 0;
}

/* s as one shell word: as it is when it holds nothing a shell would take
 * apart, else in single quotes. */
static void shell_word(char *out, size_t n, const char *s)
{
    if (*s &&
        strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./:@%+=,-") ==
            strlen(s)) {
        snprintf(out, n, "%s", s);
        return;
    }
    size_t k = 0;
    if (k + 1 < n)
        out[k++] = '\'';
    for (; *s && k + 5 < n; s++) {
        if (*s == '\'') {
            memcpy(out + k, "'\\''", 4);
            k += 4;
        } else {
            out[k++] = *s;
        }
    }
    if (k + 1 < n)
        out[k++] = '\'';
    out[k < n ? k : n - 1] = '\0';
}

/* An absolute path as a person in this directory types it: relative when
 * it lies under the working directory, quoted for a shell. */
static void path_word(char *out, size_t n, const char *abs)
{
    char cwd[PATH_MAX];
    size_t len;
    const char *p = abs;
    if (getcwd(cwd, sizeof(cwd)) && (len = strlen(cwd)) > 1 && !strncmp(abs, cwd, len) &&
        abs[len] == '/')
        p = abs + len + 1;
    shell_word(out, n, p);
}

/* ---- the config ------------------------------------------------------------ */

static int str_set(char **field, const char *value)
{
    char *copy = strdup(value);
    if (!copy)
        return FARM_ENOMEM;
    free(*field);
    *field = copy;
    return 0;
}

/* The config as given: --config FILE or the embedded defaults, checked as
 * `farm serve` checks it. NULL after printing why. */
static config *config_given(const char *path)
{
    config *cfg = NULL;
    char *errors = NULL;
    if ((path ? config_load(&cfg, path, &errors) : config_default(&cfg)) == 0)
        return cfg;
    fprintf(stderr, "farm demo: cannot load %s: %s\n%s", path ? path : "the default config",
            farm_error_last(), errors ? errors : "");
    free(errors);
    return NULL;
}

/* 1 when the JSON repos array holds the local repository DEMO_REPO. */
static int demo_repo_listed(json_t *repos)
{
    size_t i;
    json_t *r;
    json_array_foreach(repos, i, r)
    {
        const char *name = json_string_value(json_object_get(r, "name"));
        const char *kind = json_string_value(json_object_get(r, "tracker"));
        if (name && kind && !strcmp(kind, "local") && !strcasecmp(name, DEMO_REPO))
            return 1;
    }
    return 0;
}

/* The demo's config as JSON: the file at path (secrets stay "env:" and
 * "file:" references) or an empty object, with data_dir, listen and
 * public_url as the demo runs, the repository demo/greeter at clone_url
 * unless configured, and a short review.debounce_s unless a review section
 * is there. The caller json_decref()s it; NULL after printing why. */
static json_t *demo_json(const char *path, const char *data_dir, const char *listen,
                         const char *clone_url)
{
    json_error_t jerr;
    json_t *root = path ? json_load_file(path, JSON_REJECT_DUPLICATES, &jerr) : json_object();
    if (!root || !json_is_object(root)) {
        fprintf(stderr, "farm demo: cannot read %s: %s\n", path ? path : "-",
                root ? "not a JSON object" : jerr.text);
        json_decref(root);
        return NULL;
    }
    int rc = json_object_set_new(root, "data_dir", json_string(data_dir));
    if (!rc && listen)
        rc = json_object_set_new(root, "listen", json_string(listen));
    if (!rc && listen && !path) { /* links in the farm's comments follow the address */
        char pub[300];
        snprintf(pub, sizeof(pub), "http://%s", listen);
        rc = json_object_set_new(root, "public_url", json_string(pub));
    }
    json_t *repos = json_object_get(root, "repos");
    if (!rc && !json_is_array(repos))
        rc = json_object_set_new(root, "repos", repos = json_array());
    if (!rc && !demo_repo_listed(repos))
        rc = json_array_append_new(
            repos, json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:{s:s}}", "name", DEMO_REPO, "tracker",
                             "local", "clone_url", clone_url, "base_branch", "main", "test",
                             "sh test.sh", "max_fix_rounds", 2, "trigger", "label", DEMO_LABEL));
    if (!rc && !json_object_get(root, "review"))
        rc = json_object_set_new(root, "review", json_pack("{s:i}", "debounce_s", DEMO_DEBOUNCE_S));
    if (rc) {
        fprintf(stderr, "farm demo: out of memory\n");
        json_decref(root);
        return NULL;
    }
    return root;
}

/* Write root to path (mode 0600) through a file beside it renamed into
 * place. 0, or -1 after printing why. */
static int json_save(const char *path, json_t *root)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s.new-XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        fprintf(stderr, "farm demo: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    FILE *fp = fdopen(fd, "w");
    int ok = fp && json_dumpf(root, fp, JSON_INDENT(2)) == 0 && fputc('\n', fp) != EOF;
    ok = fp ? (fclose(fp) == 0 && ok) : (close(fd), 0);
    if (!ok || rename(tmp, path) != 0) {
        fprintf(stderr, "farm demo: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* The config the demo serves on: path (or the defaults) with data_dir and
 * listen as given, written to DATA_DIR/demo.json and loaded from there.
 * Nothing is created when the sandbox could not reach the data directory.
 * Sets json_path (PATH_MAX bytes) to where it is. 0 or -1 (printed). */
static int config_prepare(config **out, char *json_path, const char *path, const char *data_dir,
                          const char *listen)
{
    config *cfg = config_given(path);
    char abs[PATH_MAX], url[PATH_MAX + 32];
    char *errors = NULL;

    *out = NULL;
    if (!cfg)
        return -1;
    if (data_dir && str_set(&cfg->data_dir, data_dir)) {
        config_free(cfg);
        return -1;
    }
    if (farm_reach_check(cfg) != 0) {
        fprintf(stderr,
                "farm demo: %s\n"
                "farm demo: for the demo alone, --data-dir /tmp/farm-demo does (with the farm "
                "itself built or installed where the sandbox reaches it)\n",
                farm_error_last());
        config_free(cfg);
        return -1;
    }
    int rc = mkdir_p(cfg->data_dir, 0700);
    if (rc == 0 && !realpath(cfg->data_dir, abs)) {
        farm_error_set("%s: %s", cfg->data_dir, strerror(errno));
        rc = -1;
    }
    config_free(cfg);
    if (rc != 0) {
        fprintf(stderr, "farm demo: %s\n", farm_error_last());
        return -1;
    }
    snprintf(url, sizeof(url), "file://%s/demo/greeter.git", abs);
    json_t *root = demo_json(path, abs, listen, url);
    if (snprintf(json_path, PATH_MAX, "%s/" DEMO_CONFIG, abs) >= PATH_MAX) {
        fprintf(stderr, "farm demo: the data directory's path is too long: %s\n", abs);
        rc = -1;
    }
    rc = root && rc == 0 ? json_save(json_path, root) : -1;
    json_decref(root);
    if (rc != 0)
        return -1;
    if (config_load(&cfg, json_path, &errors) != 0) {
        fprintf(stderr, "farm demo: %s: %s\n%s", json_path, farm_error_last(),
                errors ? errors : "");
        free(errors);
        return -1;
    }
    *out = cfg;
    return 0;
}

/* The server listens elsewhere than the config says (port 0 picked one):
 * write the address into the config file, so that the commands given
 * --config reach it. */
static void config_listen_note(const char *json_path, const config *cfg, const char *address,
                               int own_public_url)
{
    if (!strcmp(cfg->listen, address))
        return;
    json_t *root = json_load_file(json_path, JSON_REJECT_DUPLICATES, NULL);
    if (root && json_object_set_new(root, "listen", json_string(address)) == 0) {
        char pub[300];
        snprintf(pub, sizeof(pub), "http://%s", address);
        if (own_public_url)
            json_object_set_new(root, "public_url", json_string(pub));
        json_save(json_path, root);
    }
    json_decref(root);
}

static const char *agent_describe(const char *preset)
{
    if (!strcmp(preset, "standin"))
        return "stand-in (no real agent CLI is installed and configured; see README: Agents)";
    if (!strcmp(preset, "claude"))
        return "claude (Claude Code)";
    if (!strcmp(preset, "codex"))
        return "codex (OpenAI Codex CLI)";
    if (!strcmp(preset, "aider"))
        return "aider";
    if (!strcmp(preset, "opencode"))
        return "opencode";
    if (!strcmp(preset, "command"))
        return "the configured agent.command";
    return preset;
}

/* ---- what a person types next --------------------------------------------- */

typedef struct hints {
    char farm[PATH_MAX + 8];   /* this binary, as the working directory runs it */
    char config[PATH_MAX + 8]; /* --config's value */
    char issue_file[PATH_MAX + 8];
    char review_file[PATH_MAX + 8];
    int next; /* the sample repository and the next steps' bodies are the demo's own */
    int debounce_s;
} hints;

static void hints_init(hints *h, const config *cfg, const char *json_path, int next)
{
    const char *data_dir = cfg->data_dir;
    char abs[PATH_MAX + 64], self[PATH_MAX];
    cli_self(self, sizeof(self));
    shell_word(h->farm, sizeof(h->farm), self);
    path_word(h->config, sizeof(h->config), json_path);
    snprintf(abs, sizeof(abs), "%s/demo/" DEMO_NEXT_ISSUE_FILE, data_dir);
    path_word(h->issue_file, sizeof(h->issue_file), abs);
    snprintf(abs, sizeof(abs), "%s/demo/" DEMO_REVIEW_FILE, data_dir);
    path_word(h->review_file, sizeof(h->review_file), abs);
    h->next = next;
    h->debounce_s = cfg->review.debounce_s;
}

/* The commands that carry the demo on, for the pull request pr: a review
 * the farm revises the PR for, the merge, a second issue on the merged
 * main (before the merge, its tests would fail on the typo). */
static void hints_next(const hints *h, int64_t pr)
{
    fprintf(
        stderr,
        "farm demo: carry on from another terminal while this one serves:\n"
        "farm demo:   1. review the PR:   %s issue comment %lld --config %s --path %s --line %d "
        "--body-file %s\n"
        "farm demo:      (the farm revises the PR on its branch; review comments within %d s "
        "make one revision)\n"
        "farm demo:   2. merge the PR:    %s issue merge %lld --config %s\n"
        "farm demo:   3. a second issue:  %s issue new --config %s --repo %s --label %s "
        "--title \"%s\" --body-file %s\n"
        "farm demo:   every session:      %s sessions --config %s\n",
        h->farm, (long long)pr, h->config, DEMO_REVIEW_PATH, DEMO_REVIEW_LINE, h->review_file,
        h->debounce_s, h->farm, (long long)pr, h->config, h->farm, h->config, DEMO_REPO, DEMO_LABEL,
        DEMO_NEXT_TITLE, h->issue_file, h->farm, h->config);
}

/* ---- following the sessions ----------------------------------------------- */

typedef struct tracked {
    int64_t id;
    char state[32];       /* the last state said */
    int64_t runs;         /* its runs when said: one more in review is a revision pushed */
    int64_t pr;           /* the pull request said to be open, 0 before */
    int64_t review_since; /* in review without a PR since (monotonic ms), 0 when not */
} tracked;

typedef struct follow {
    farm *f;
    const hints *h;
    int64_t demo_number; /* the demo issue */
    tracked *v;
    size_t n;
    int next_said; /* the next steps were printed */
} follow;

static tracked *tracked_get(follow *w, int64_t id)
{
    for (size_t i = 0; i < w->n; i++)
        if (w->v[i].id == id)
            return &w->v[i];
    tracked *v = realloc(w->v, (w->n + 1) * sizeof(*v));
    if (!v)
        return NULL;
    w->v = v;
    memset(&v[w->n], 0, sizeof(v[0]));
    v[w->n].id = id;
    return &v[w->n++];
}

/* The newest failure reason in the session's log, into out. */
static void failure_reason(char *out, size_t n, farm *f, int64_t session_id)
{
    static const char *const kinds[] = {"failed", NULL};
    store_event *ev = NULL;
    snprintf(out, n, "see its log");
    if (store_event_last_kind(&ev, farm_store(f), session_id, kinds, 0) != 0 || !ev)
        return;
    json_t *j = json_loads(ev->body, 0, NULL);
    const char *r = j ? json_string_value(json_object_get(j, "reason")) : NULL;
    if (r)
        snprintf(out, n, "%s", r);
    json_decref(j);
    store_event_list_free(ev, 1);
}

/* A session in review: its pull request opened, or a revision pushed to it.
 * 0 when there is nothing to say yet (the PR is not open). */
static int say_review(follow *w, tracked *t, const store_session *s)
{
    const hints *h = w->h;
    if (!s->pr_number) {
        int64_t now = clock_mono_ms();
        if (!t->review_since)
            t->review_since = now;
        if (now - t->review_since < DEMO_PR_WAIT_MS)
            return 0;
        fprintf(stderr,
                "farm demo: session %lld is in review, but its pull request is not open yet "
                "(%s logs --config %s %lld)\n",
                (long long)s->id, h->farm, h->config, (long long)s->id);
        return 1;
    }
    char draft[300] = "";
    if (s->pr_draft)
        snprintf(draft, sizeof(draft), " as a draft (%s)",
                 s->pr_draft_reason ? s->pr_draft_reason : "see its description");
    if (t->pr == s->pr_number) {
        fprintf(stderr,
                "farm demo: session %lld: the revision is pushed to %s, pull request #%lld\n",
                (long long)s->id, s->branch ? s->branch : "-", (long long)s->pr_number);
    } else {
        fprintf(
            stderr,
            "farm demo: pull request opened%s: #%lld, branch %s (%s issue show %lld --config %s)\n",
            draft, (long long)s->pr_number, s->branch ? s->branch : "-", h->farm,
            (long long)s->pr_number, h->config);
        t->pr = s->pr_number;
    }
    if (s->number == w->demo_number && h->next && !w->next_said) {
        hints_next(h, s->pr_number);
        w->next_said = 1;
    }
    return 1;
}

/* Say what became of session s since the last tick. */
static void session_say(follow *w, const store_session *s)
{
    tracked *t = tracked_get(w, s->id);
    /* a revision may go from review to review between two ticks */
    if (!t || (!strcmp(t->state, s->state) && (strcmp(s->state, "review") || t->runs == s->runs)))
        return;
    int said = 1;
    if (!strcmp(s->state, "review")) {
        said = say_review(w, t, s);
    } else if (!strcmp(s->state, "failed")) {
        char reason[512];
        failure_reason(reason, sizeof(reason), w->f, s->id);
        fprintf(stderr, "farm demo: the session failed: session %lld, issue #%lld: %s\n",
                (long long)s->id, (long long)s->number, reason);
    } else if (!strcmp(s->state, "done")) {
        fprintf(stderr, "farm demo: session %lld is done (issue #%lld closed%s)\n",
                (long long)s->id, (long long)s->number,
                s->pr_number ? ", its pull request merged" : "");
    } else if (store_session_state_is_final(s->state)) {
        fprintf(stderr, "farm demo: the session ended: session %lld is %s\n", (long long)s->id,
                s->state);
    } else {
        fprintf(stderr, "farm demo: session %lld (issue #%lld) is %s\n", (long long)s->id,
                (long long)s->number, s->state);
    }
    if (said) {
        snprintf(t->state, sizeof(t->state), "%s", s->state);
        t->runs = s->runs;
        t->review_since = 0;
    }
}

static void follow_tick(void *arg)
{
    follow *w = arg;
    store_session_filter flt = STORE_SESSION_FILTER_INIT;
    store_session *v = NULL;
    size_t n = 0;
    flt.tracker = "local";
    flt.repo = DEMO_REPO;
    flt.limit = STORE_LIST_MAX;
    if (store_session_list(&v, &n, farm_store(w->f), &flt) != 0)
        return;
    for (size_t i = n; i-- > 0;) /* oldest first */
        session_say(w, &v[i]);
    store_session_list_free(v, n);
}

/* ---- the issue ------------------------------------------------------------ */

/* The demo issue already filed in this data directory: its number, or 0. */
static int64_t demo_issue_find(const local_backend *b)
{
    local_item *v = NULL;
    size_t n = 0;
    int64_t found = 0;
    if (b->item_list(&v, &n, b->ctx, DEMO_REPO, NULL, 1000) != 0)
        return 0;
    for (size_t i = 0; i < n && !found; i++)
        if (!v[i].is_pr && !strcmp(v[i].title, DEMO_TITLE))
            found = v[i].number;
    local_item_list_free(v, n);
    return found;
}

/* The newest session of the demo issue, or 0. */
static int64_t demo_session_find(farm *f, int64_t number)
{
    store_session_filter flt = STORE_SESSION_FILTER_INIT;
    store_session *v = NULL;
    size_t n = 0;
    int64_t id = 0;
    flt.tracker = "local";
    flt.repo = DEMO_REPO;
    flt.limit = STORE_LIST_MAX;
    if (store_session_list(&v, &n, farm_store(f), &flt) != 0)
        return 0;
    for (size_t i = 0; i < n && !id; i++)
        if (v[i].number == number)
            id = v[i].id;
    store_session_list_free(v, n);
    return id;
}

/* File the demo issue, or find the one a previous run filed. Sets *number
 * and *session (0 when none). 0 or -1 (printed). */
static int demo_issue(farm *f, int64_t *number, int64_t *session)
{
    local_backend b;
    store_local_backend(&b, farm_store(f));
    *session = 0;
    if ((*number = demo_issue_find(&b)) != 0) {
        fprintf(stderr,
                "farm demo: the demo issue #%lld is already filed in this data directory "
                "(local://%s/issues/%lld); not filing another\n",
                (long long)*number, DEMO_REPO, (long long)*number);
        *session = demo_session_find(f, *number);
        return 0;
    }
    const char *actor = getenv("USER");
    if (!actor || !*actor || strlen(actor) > 256)
        actor = "local-user";
    const char *labels[] = {DEMO_LABEL};
    ingest_result r;
    int rc = local_issue_open(number, &r, f, &b, DEMO_REPO, DEMO_TITLE, demo_issue_body, labels, 1,
                              actor);
    if (rc < 0) {
        fprintf(stderr, "farm demo: cannot file the demo issue: %s\n", farm_error_last());
        return -1;
    }
    if (r.outcome != INGEST_ACCEPTED || !r.session_id) {
        fprintf(stderr, "farm demo: issue #%lld was filed but started no session: %s (%s)\n",
                (long long)*number, ingest_outcome_name(r.outcome), r.reason);
        return -1;
    }
    fprintf(stderr, "farm demo: filed issue #%lld \"%s\" (local://%s/issues/%lld), label \"%s\"\n",
            (long long)*number, DEMO_TITLE, DEMO_REPO, (long long)*number, DEMO_LABEL);
    *session = r.session_id;
    return 0;
}

/* ---- the command ---------------------------------------------------------- */

/* Generate the sample repository and the next steps' bodies when
 * demo/greeter is the demo's own (not configured elsewhere by --config).
 * Sets *own. 0 or -1 (printed). */
static int sample_prepare(const config *cfg, int *own)
{
    const config_repo *repo = config_repo_find(cfg, "local", DEMO_REPO);
    char dir[PATH_MAX], bare[PATH_MAX], expected[PATH_MAX + 32];
    int created = 0;

    snprintf(dir, sizeof(dir), "%s/demo", cfg->data_dir);
    snprintf(bare, sizeof(bare), "%s/demo/greeter.git", cfg->data_dir);
    snprintf(expected, sizeof(expected), "file://%s", bare);
    *own = repo && repo->clone_url && !strcmp(repo->clone_url, expected);
    if (!*own)
        return 0;
    if (mkdir_p(dir, 0755) != 0 || demo_sample_repo_make(bare, &created) != 0 ||
        demo_sample_next_write(dir) != 0) {
        fprintf(stderr, "farm demo: cannot create the sample repository: %s\n", farm_error_last());
        return -1;
    }
    fprintf(stderr, "farm demo: sample repository %s (%s)\n", expected,
            created ? "generated: greeter.sh prints a typo, test.sh checks it" : "as before");
    return 0;
}

/* Where to watch and what to type, once the issue is filed. */
static void say_where(const hints *h, const char *address, int64_t number, int64_t session)
{
    if (session)
        fprintf(stderr, "farm demo: watch the session:   http://%s/sessions/%lld\n", address,
                (long long)session);
    else
        fprintf(stderr, "farm demo: issue #%lld has no session (its delivery was not accepted)\n",
                (long long)number);
    fprintf(stderr, "farm demo: the queue:           http://%s/\n", address);
    fprintf(stderr, "farm demo: the config: %s (every command below reads it with --config)\n",
            h->config);
    if (session)
        fprintf(stderr, "farm demo: follow in a terminal: %s logs -f --config %s %lld\n", h->farm,
                h->config, (long long)session);
    fprintf(stderr, "farm demo: the issue and its comments: %s issue show %lld --config %s\n",
            h->farm, (long long)number, h->config);
    fprintf(stderr, "farm demo: Ctrl-C stops the farm\n");
}

static int demo(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"data-dir", required_argument, NULL, 'd'},
        {"listen", required_argument, NULL, 'l'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *data_dir = NULL, *listen = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "c:d:l:", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'd':
            data_dir = optarg;
            break;
        case 'l':
            listen = optarg;
            break;
        default:
            return cli_usage("demo");
        }
    }
    if (optind < argc || (data_dir && !*data_dir) || (listen && !*listen))
        return cli_usage("demo");

    config *cfg = NULL;
    char json_path[PATH_MAX];
    int own = 0;
    if (config_prepare(&cfg, json_path, path, data_dir, listen) != 0)
        return 1;
    if (sample_prepare(cfg, &own) != 0) {
        config_free(cfg);
        return 1;
    }
    hints h;
    hints_init(&h, cfg, json_path, own);
    char agent[64];
    snprintf(agent, sizeof(agent), "%s", agent_preset_resolve(cfg));

    server_options sopt = SERVER_OPTIONS_INIT;
    serve_state st;
    if (serve_start(&st, cfg, &sopt, 0) != 0) /* cfg is taken, even on failure */
        return 1;
    const char *address = server_address(st.srv);
    config_listen_note(json_path, farm_config(st.f), address, listen && !path);
    int64_t number = 0, session = 0;
    if (demo_issue(st.f, &number, &session) != 0) {
        serve_stop(&st);
        return 1;
    }
    log_info("demo", "agent", agent, "address", address);
    fprintf(stderr, "farm demo: agent: %s\n", agent_describe(agent));
    say_where(&h, address, number, session);

    follow w = {st.f, &h, number, NULL, 0, 0};
    follow_tick(&w);
    int sig = serve_wait(&st, follow_tick, &w, DEMO_TICKMS);
    log_info("stopping", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM");
    serve_stop(&st);
    free(w.v);
    log_info("stopped");
    return 0;
}

CLI_COMMAND("demo", "serve with a generated sample repository and file a sample issue",
            "farm demo [--data-dir DIR] [--listen ADDR] [--config FILE]\n"
            "  --data-dir DIR  where the farm keeps its data (default ./farm-data); the config\n"
            "                  the demo serves on is written there as demo.json, for the\n"
            "                  commands it suggests (--config DIR/demo.json)\n"
            "  --listen ADDR   host:port to serve on (default 127.0.0.1:8080; port 0 picks one)\n"
            "  --config FILE   start from this config instead of the embedded defaults",
            demo)
