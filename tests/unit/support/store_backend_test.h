/*
 * store_backend_test.h - the unit tests' choice of store backend. The same
 * test program runs twice under ctest: on SQLite (FARM_TEST_STORE_URL
 * unset) and on the throwaway PostgreSQL of tests/support/pg-start
 * (FARM_TEST_STORE_URL set to its URL). On PostgreSQL each data directory
 * gets a schema of its own in that database, so a test that reopens its
 * directory finds its data and no two tests see each other's.
 */
#ifndef FARM_TESTS_UNIT_SUPPORT_STORE_BACKEND_TEST_H
#define FARM_TESTS_UNIT_SUPPORT_STORE_BACKEND_TEST_H

#include "farm/store/store.h"

/* Whether the tests run on PostgreSQL. */
int test_store_is_pg(void);

/* The store URL for data directory dir: "sqlite:", or the PostgreSQL URL
 * with dir's own schema (created here when missing). A static buffer,
 * overwritten by the next call. When PostgreSQL cannot be reached the
 * program exits: 77 (skipped) outside CI, 1 under CI=true. */
const char *test_store_url(const char *dir);

/* The config's "store" member for dir's store, with a comma after it, to
 * put first in a config object: "" on SQLite (the default). A static
 * buffer, overwritten by the next call. */
const char *test_store_config(const char *dir);

/* store_open() on the backend under test. */
int test_store_open(store **out, const char *dir);

#endif
