/*
 * store_backend_test.c - the unit tests' choice of store backend (see
 * store_backend_test.h): a schema per data directory on PostgreSQL.
 */
#include "store_backend_test.h"

#include <libpq-fe.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int test_store_is_pg(void)
{
    const char *u = getenv("FARM_TEST_STORE_URL");
    return u && *u && strncmp(u, "sqlite:", 7) != 0;
}

static void unreachable(const char *why)
{
    const char *ci = getenv("CI");
    fprintf(stderr, "test store: PostgreSQL at FARM_TEST_STORE_URL cannot be used: %s\n", why);
    if (ci && !strcmp(ci, "true"))
        exit(1);
    fprintf(stderr, "test store: skipped (under CI=true this fails)\n");
    exit(77);
}

static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg; /* "schema ... already exists, skipping" */
}

const char *test_store_url(const char *dir)
{
    static char url[2048];
    const char *base = getenv("FARM_TEST_STORE_URL");
    uint64_t h = 1469598103934665603ULL;
    char schema[32], sql[96];

    if (!test_store_is_pg())
        return "sqlite:";
    for (const char *p = dir; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    snprintf(schema, sizeof(schema), "t%016llx", (unsigned long long)h);

    PGconn *c = PQconnectdb(base);
    if (!c || PQstatus(c) != CONNECTION_OK)
        unreachable(c ? PQerrorMessage(c) : "out of memory");
    PQsetNoticeProcessor(c, quiet, NULL);
    snprintf(sql, sizeof(sql), "CREATE SCHEMA IF NOT EXISTS %s", schema);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        unreachable(PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
    snprintf(url, sizeof(url), "%s%coptions=-csearch_path%%3D%s", base,
             strchr(base, '?') ? '&' : '?', schema);
    return url;
}

const char *test_store_config(const char *dir)
{
    static char member[2200];
    if (!test_store_is_pg())
        return "";
    snprintf(member, sizeof(member), "\"store\": { \"url\": \"%s\" },", test_store_url(dir));
    return member;
}

int test_store_open(store **out, const char *dir)
{
    return store_open_url(out, test_store_url(dir), dir);
}
