/*
 * cmd_store.c - `farm store copy --from sqlite:DIR --to postgres://...`:
 * move a farm that started on one machine to PostgreSQL with its history
 * (farm/store/store_copy.h). The farm must be stopped while it runs. The
 * target database must be empty; the password, when the server wants one,
 * comes the way libpq takes it (PGPASSWORD, ~/.pgpass), never the command
 * line.
 */
#include "cli.h"

#include "base/error.h"
#include "farm/store/store.h"
#include "farm/store/store_copy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void progress(void *arg, const char *table, int64_t rows)
{
    (void)arg;
    fprintf(stderr, "\r  %-16s %lld rows", table, (long long)rows);
}

/* Whether a URL ("postgres://user:pw@host/db") or a connection string
 * ("... password=...") carries a password. */
static int has_password(const char *url)
{
    const char *auth = strstr(url, "://"), *at, *colon;
    if (strstr(url, "password="))
        return 1;
    if (!auth)
        return 0;
    auth += 3;
    at = strchr(auth, '@');
    colon = strchr(auth, ':');
    return at && colon && colon < at && (!strchr(auth, '/') || at < strchr(auth, '/'));
}

static int copy(const char *from, const char *to)
{
    store *src = NULL, *dst = NULL;
    char path[4096];
    int64_t rows = 0;
    int rc;

    if (strncmp(from, "sqlite:", 7) != 0 || !from[7]) {
        fprintf(stderr, "farm store copy: --from takes sqlite:DIR, the data directory of the farm"
                        " to copy\n");
        return 2;
    }
    if (has_password(to)) {
        fprintf(stderr, "farm store copy: keep the password out of the command line: set"
                        " PGPASSWORD or use ~/.pgpass\n");
        return 2;
    }
    snprintf(path, sizeof(path), "%s/farm.db", from + 7);
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "farm store copy: no store at %s (give the data_dir of the farm)\n", path);
        return 1;
    }
    if ((rc = store_open(&src, from + 7))) {
        fprintf(stderr, "farm store copy: %s\n", farm_error_last());
        return 1;
    }
    if ((rc = store_open_url(&dst, to, from + 7))) {
        fprintf(stderr, "farm store copy: %s\n", farm_error_last());
        store_close(src);
        return 1;
    }
    fprintf(stderr, "copying %s to PostgreSQL\n", path);
    rc = store_copy(&rows, src, dst, isatty(2) ? progress : NULL, NULL);
    if (isatty(2))
        fprintf(stderr, "\n");
    if (rc)
        fprintf(stderr, "farm %s\n", farm_error_last()); /* "store copy: ..." */
    else
        printf("copied %lld rows; set store.url to the target and start the farm\n",
               (long long)rows);
    store_close(dst);
    store_close(src);
    return rc ? 1 : 0;
}

static int run(int argc, char **argv)
{
    const char *from = NULL, *to = NULL;

    if (argc < 2 || strcmp(argv[1], "copy") != 0)
        return cli_usage("store");
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--from") && i + 1 < argc)
            from = argv[++i];
        else if (!strncmp(argv[i], "--from=", 7))
            from = argv[i] + 7;
        else if (!strcmp(argv[i], "--to") && i + 1 < argc)
            to = argv[++i];
        else if (!strncmp(argv[i], "--to=", 5))
            to = argv[i] + 5;
        else
            return cli_usage("store");
    }
    if (!from || !to)
        return cli_usage("store");
    return copy(from, to);
}

CLI_COMMAND("store", "copy a farm's store to PostgreSQL",
            "farm store copy --from sqlite:DIR --to postgres://USER@HOST/DB", run)
