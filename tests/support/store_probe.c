/*
 * store_probe.c - farm-store-probe: the e2e and UI tests' way into a farm's
 * store, through its public interface (farm/store/store_inspect.h) instead
 * of a database file, so they run unchanged on every store backend.
 *
 *   farm-store-probe --data-dir DIR query SQL [PARAM...]  rows as one JSON array
 *   farm-store-probe --data-dir DIR exec SQL [PARAM...]   one write: {"changes": n}
 *   farm-store-probe --data-dir DIR batch                 JSON lines on stdin, one write
 *
 * A PARAM is JSON text (42, 1.5, null, "text", {"a": 1}); an argument that
 * is not JSON is a plain string. batch reads lines {"sql": ..., "params":
 * [...]} (params optional, blank lines skipped) and runs them all in one
 * group-committed write: all of them or, when one fails, none; it prints
 * {"changes": total, "statements": n}.
 *
 * It opens the store with store_open() (migrating it, as the farm would),
 * alongside a running farm or on a stopped one, and closes it before
 * exiting. Exit status: 0, 1 (the store refused), 2 (usage).
 */
#include "base/error.h"
#include "farm/store/store.h"
#include "farm/store/store_inspect.h"

#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH_MAX 100000 /* statements in one batch */

static const char usage[] =
    "usage: farm-store-probe --data-dir DIR query SQL [PARAM...]\n"
    "       farm-store-probe --data-dir DIR exec SQL [PARAM...]\n"
    "       farm-store-probe --data-dir DIR batch < lines of {\"sql\": ..., \"params\": [...]}\n";

/* The command line's parameters as a JSON array, each typed from JSON. */
static json_t *params_from_argv(char **argv, int argc)
{
    json_t *a = json_array();

    for (int i = 0; a && i < argc; i++) {
        json_t *v = json_loads(argv[i], JSON_DECODE_ANY, NULL);
        if (!v)
            v = json_string(argv[i]);
        if (!v || json_array_append_new(a, v)) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static int print_json(json_t *v)
{
    if (json_dumpf(v, stdout, JSON_COMPACT | JSON_ENCODE_ANY) || putchar('\n') == EOF ||
        fflush(stdout)) {
        fprintf(stderr, "farm-store-probe: cannot write the output\n");
        return 1;
    }
    return 0;
}

static int query(store *s, const char *sql, json_t *params)
{
    json_t *rows = NULL;
    int rc;

    if (store_query_json(&rows, s, sql, params)) {
        fprintf(stderr, "farm-store-probe: %s\n  in: %s\n", farm_error_last(), sql);
        return 1;
    }
    rc = print_json(rows);
    json_decref(rows);
    return rc;
}

static int exec(store *s, const char *sql, json_t *params)
{
    int64_t changes = 0;
    json_t *out;
    int rc;

    if (store_exec_json(&changes, s, sql, params)) {
        fprintf(stderr, "farm-store-probe: %s\n  in: %s\n", farm_error_last(), sql);
        return 1;
    }
    out = json_pack("{s:I}", "changes", (json_int_t)changes);
    rc = out ? print_json(out) : 1;
    json_decref(out);
    return rc;
}

/* ---- batch ---------------------------------------------------------------- */

typedef struct batch {
    json_t *stmts;   /* the lines read: objects with "sql" and "params" */
    int64_t changes; /* summed over the statements */
    size_t failed;   /* the statement that failed (0-based), when one did */
} batch;

/* Read stdin's JSON lines into b->stmts, checking each. */
static int batch_read(batch *b)
{
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t len;
    int rc = 0;

    while ((len = getline(&line, &cap, stdin)) >= 0) {
        json_error_t err;
        json_t *o, *params;

        lineno++;
        if (strspn(line, " \t\r\n") == (size_t)len)
            continue;
        if (json_array_size(b->stmts) == BATCH_MAX) {
            fprintf(stderr, "farm-store-probe: more than %d statements in one batch\n", BATCH_MAX);
            rc = 2;
            break;
        }
        o = json_loadb(line, (size_t)len, 0, &err);
        params = json_object_get(o, "params");
        if (!json_is_object(o) || !json_is_string(json_object_get(o, "sql")) ||
            (params && !json_is_array(params) && !json_is_null(params))) {
            fprintf(stderr,
                    "farm-store-probe: stdin line %zu: want {\"sql\": \"...\", \"params\": "
                    "[...]}%s%s\n",
                    lineno, o ? "" : ": ", o ? "" : err.text);
            json_decref(o);
            rc = 2;
            break;
        }
        if (json_array_append_new(b->stmts, o)) {
            fprintf(stderr, "farm-store-probe: out of memory\n");
            rc = 1;
            break;
        }
    }
    free(line);
    return rc;
}

static int batch_fn(store_tx *tx, void *arg)
{
    batch *b = arg;
    size_t i;
    json_t *o;

    b->changes = 0;
    json_array_foreach(b->stmts, i, o)
    {
        const json_t *params = json_object_get(o, "params");
        int64_t n = 0;
        int rc = store_tx_exec_json(&n, tx, json_string_value(json_object_get(o, "sql")),
                                    json_is_array(params) ? params : NULL);
        if (rc) {
            b->failed = i;
            return rc;
        }
        b->changes += n;
    }
    return 0;
}

static int run_batch(store *s)
{
    batch b = {json_array(), 0, 0};
    json_t *out;
    int rc;

    if (!b.stmts) {
        fprintf(stderr, "farm-store-probe: out of memory\n");
        return 1;
    }
    if ((rc = batch_read(&b)))
        goto out;
    if (store_write(s, batch_fn, &b)) {
        const json_t *o = json_array_get(b.stmts, b.failed);
        fprintf(stderr, "farm-store-probe: statement %zu of the batch: %s\n  in: %s\n",
                b.failed + 1, farm_error_last(), json_string_value(json_object_get(o, "sql")));
        rc = 1;
        goto out;
    }
    out = json_pack("{s:I, s:I}", "changes", (json_int_t)b.changes, "statements",
                    (json_int_t)json_array_size(b.stmts));
    rc = out ? print_json(out) : 1;
    json_decref(out);
out:
    json_decref(b.stmts);
    return rc;
}

int main(int argc, char **argv)
{
    const char *dir, *cmd;
    store *s = NULL;
    json_t *params = NULL;
    int rc;

    if (argc < 4 || strcmp(argv[1], "--data-dir") != 0) {
        fputs(usage, stderr);
        return 2;
    }
    dir = argv[2];
    cmd = argv[3];
    if (!strcmp(cmd, "query") || !strcmp(cmd, "exec")) {
        if (argc < 5) {
            fputs(usage, stderr);
            return 2;
        }
        if (!(params = params_from_argv(argv + 5, argc - 5))) {
            fprintf(stderr, "farm-store-probe: out of memory\n");
            return 1;
        }
    } else if (strcmp(cmd, "batch") != 0 || argc != 4) {
        fputs(usage, stderr);
        return 2;
    }
    /* a farm whose store is not its data directory's (store.url): the
     * e2e tests on PostgreSQL (tests/e2e/farmtest.py) name it here */
    const char *url = getenv("FARM_PROBE_STORE_URL");
    if (store_open_url(&s, url && *url ? url : "sqlite:", dir)) {
        fprintf(stderr, "farm-store-probe: %s\n", farm_error_last());
        json_decref(params);
        return 1;
    }
    if (!strcmp(cmd, "query"))
        rc = query(s, argv[4], params);
    else if (!strcmp(cmd, "exec"))
        rc = exec(s, argv[4], params);
    else
        rc = run_batch(s);
    store_close(s);
    json_decref(params);
    return rc;
}
