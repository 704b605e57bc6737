/*
 * cmd_image.c - `farm image ls` and `farm image prune`: the unpacked images
 * under <data_dir>/images (repos[].image, docs/environments.md).
 *
 * ls lists each image's digest, size on disk, when a run last used it and
 * what it was unpacked from. prune removes those no configured repository
 * names any more (its reference now leads to another digest, or the
 * repository is gone), and with --older-than those no run has used for that
 * long; a run that needs one again unpacks it again.
 */
#include "cli.h"
#include "base/error.h"
#include "farm/config/config.h"
#include "sandbox/image.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int load(config **cfg, const char *path)
{
    char *errors = NULL;
    int rc = path ? config_load(cfg, path, &errors) : config_default(cfg);
    if (rc < 0) {
        fprintf(stderr, "farm image: %s\n%s", farm_error_last(), errors ? errors : "");
        free(errors);
        return 2;
    }
    return 0;
}

static void cache_dir(char *out, size_t cap, const config *cfg)
{
    char *dd = realpath(cfg->data_dir, NULL);
    snprintf(out, cap, "%s/images", dd ? dd : cfg->data_dir);
    free(dd);
}

static void human_size(char *out, size_t cap, uint64_t b)
{
    if (b >= (1ull << 30))
        snprintf(out, cap, "%.1f GiB", (double)b / (1ull << 30));
    else if (b >= (1ull << 20))
        snprintf(out, cap, "%.1f MiB", (double)b / (1ull << 20));
    else
        snprintf(out, cap, "%.1f KiB", (double)b / 1024);
}

static void human_age(char *out, size_t cap, int64_t t)
{
    long long s = t > 0 ? (long long)(time(NULL) - t) : -1;
    if (s < 0)
        snprintf(out, cap, "never");
    else if (s < 120)
        snprintf(out, cap, "%llds ago", s);
    else if (s < 7200)
        snprintf(out, cap, "%lldm ago", s / 60);
    else if (s < 172800)
        snprintf(out, cap, "%lldh ago", s / 3600);
    else
        snprintf(out, cap, "%lldd ago", s / 86400);
}

static int ls(const config *cfg, int json)
{
    char cache[PATH_MAX + 16];
    cache_dir(cache, sizeof(cache), cfg);
    sandbox_image_entry *v;
    size_t n;
    if (sandbox_image_list(&v, &n, cache) < 0) {
        fprintf(stderr, "farm image ls: %s\n", farm_error_last());
        return 1;
    }
    if (json) {
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(a, json_pack("{s:s,s:s?,s:I,s:I,s:I}", "digest", v[i].digest,
                                               "source", v[i].source, "size", (json_int_t)v[i].size,
                                               "unpacked_at", (json_int_t)v[i].unpacked_at,
                                               "last_used", (json_int_t)v[i].last_used));
        char *s = json_dumps(a, JSON_INDENT(2));
        printf("%s\n", s ? s : "[]");
        free(s);
        json_decref(a);
    } else if (n == 0) {
        printf("no images unpacked in %s\n", cache);
    } else {
        printf("%-19s  %10s  %-10s  %s\n", "DIGEST", "SIZE", "LAST USED", "SOURCE");
        for (size_t i = 0; i < n; i++) {
            char size[32], age[32];
            human_size(size, sizeof(size), v[i].size);
            human_age(age, sizeof(age), v[i].last_used);
            printf("%-19.19s  %10s  %-10s  %s\n", v[i].digest, size, age,
                   v[i].source ? v[i].source : "?");
        }
    }
    sandbox_image_list_free(v, n);
    return 0;
}

/* "30d", "12h", "90m", "45s" or plain seconds; -1 when malformed. */
static long long parse_duration(const char *s)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || v < 0)
        return -1;
    long long mul = !*end || !strcmp(end, "s") ? 1
                    : !strcmp(end, "m")        ? 60
                    : !strcmp(end, "h")        ? 3600
                    : !strcmp(end, "d")        ? 86400
                                               : -1;
    return mul < 0 || v > (1LL << 40) ? -1 : v * mul;
}

/* 1 when a configured repository uses the image. */
static int in_use(const config *cfg, const sandbox_image_entry *e)
{
    for (size_t i = 0; i < cfg->nrepos; i++) {
        const char *ref = cfg->repos[i].image;
        char d[SANDBOX_IMAGE_DIGEST_MAX];
        if (!ref || sandbox_image_ref_kind(ref) == SANDBOX_IMAGE_ROOTFS)
            continue;
        if (sandbox_image_digest(d, ref) == 0) {
            if (!strcmp(d, e->digest))
                return 1;
        } else if (e->source && !strcmp(e->source, ref)) {
            /* the layout cannot be read now: keep what it last gave */
            fprintf(stderr, "farm image prune: keeping %.19s: %s\n", e->digest, farm_error_last());
            return 1;
        }
    }
    return 0;
}

static int prune(const config *cfg, long long older, int dry)
{
    char cache[PATH_MAX + 16];
    cache_dir(cache, sizeof(cache), cfg);
    sandbox_image_entry *v;
    size_t n;
    if (sandbox_image_list(&v, &n, cache) < 0) {
        fprintf(stderr, "farm image prune: %s\n", farm_error_last());
        return 1;
    }
    int rc = 0, removed = 0;
    uint64_t freed = 0;
    time_t now = time(NULL);
    for (size_t i = 0; i < n; i++) {
        const char *why = !in_use(cfg, &v[i]) ? "no configured repository uses it"
                          : older >= 0 && now - v[i].last_used >= older
                              ? "not used for longer than --older-than"
                              : NULL;
        if (!why)
            continue;
        char size[32];
        human_size(size, sizeof(size), v[i].size);
        if (!dry && sandbox_image_remove(cache, v[i].digest) < 0) {
            fprintf(stderr, "farm image prune: %s\n", farm_error_last());
            rc = 1;
            continue;
        }
        printf("%s %.19s  %s  %s (%s)\n", dry ? "would remove" : "removed", v[i].digest, size,
               v[i].source ? v[i].source : "?", why);
        removed++;
        freed += v[i].size;
    }
    if (!dry)
        sandbox_image_sweep(cache);
    char size[32];
    human_size(size, sizeof(size), freed);
    printf("%s %d %s, %s\n", dry ? "would remove" : "removed", removed,
           cli_plural(removed, "image", "images"), size);
    sandbox_image_list_free(v, n);
    return rc;
}

static int cmd(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "ls") && strcmp(argv[1], "prune")))
        return cli_usage("image");
    const char *config_path = NULL;
    long long older = -1;
    int json = 0, dry = 0, is_ls = !strcmp(argv[1], "ls");
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            config_path = argv[++i];
        else if (is_ls && !strcmp(argv[i], "--json"))
            json = 1;
        else if (!is_ls && !strcmp(argv[i], "--dry-run"))
            dry = 1;
        else if (!is_ls && !strcmp(argv[i], "--older-than") && i + 1 < argc) {
            if ((older = parse_duration(argv[++i])) < 0) {
                fprintf(stderr, "farm image prune: --older-than wants 30d, 12h, 90m or seconds\n");
                return 2;
            }
        } else
            return cli_usage("image");
    }
    config *cfg = NULL;
    int rc = load(&cfg, config_path);
    if (rc)
        return rc;
    rc = is_ls ? ls(cfg, json) : prune(cfg, older, dry);
    config_free(cfg);
    return rc;
}

CLI_COMMAND(
    "image", "list or prune the unpacked repository images",
    "farm image ls [--config FILE] [--json]\n"
    "       farm image prune [--config FILE] [--older-than 30d|12h|90m|SECONDS] [--dry-run]",
    cmd)
