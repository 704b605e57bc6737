/*
 * store_inspect.h - any SQL against the store, with JSON in and out: for
 * tests and diagnostics only.
 *
 * The farm's own paths never come here: they use the typed calls of store.h
 * and the store_<area>.h headers, which say what each query means. This is
 * the door for code that must look at (or arrange) rows the typed calls do
 * not show: the unit tests, the e2e tests through tests/support/store_probe.c
 * (farm-store-probe), and a person diagnosing a data directory. It is one
 * more operation of the store's backend (store_backend.h: the inspect
 * table; sqlite_inspect.c by default), so it works the same on every
 * backend, and the SQL given here must be portable: plain SELECT, INSERT,
 * UPDATE and DELETE, one statement per call, with ? placeholders; nothing
 * one backend alone knows (PRAGMA, INSERT OR IGNORE, MAX(a, b) of two
 * values, sqlite_master).
 *
 * Parameters are a JSON array, bound in order by their JSON type: an integer
 * as a 64-bit integer, a real as a double, a string as text, true / false as
 * 1 / 0, null as NULL, and an object or array as its compact JSON text. A
 * column comes back as an integer, a real, a string or null.
 */
#ifndef FARM_FARM_STORE_STORE_INSPECT_H
#define FARM_FARM_STORE_STORE_INSPECT_H

#include "store.h"

#include <jansson.h>

#include <stdint.h>

/* Most rows one query may return (more is FARM_ETOOBIG). */
#define STORE_INSPECT_ROWS_MAX 100000

/* Run one query (params: a JSON array, or NULL for none) on a read
 * connection. *rows is a new JSON array with one object per row, column name
 * -> value in the query's column order (a name seen before in the row gets
 * ":2", ":3" ... after it); the caller json_decref()s it. Returns 0,
 * FARM_EINVALID (not one read-only statement, the wrong number of
 * parameters, a value that is not text), FARM_ETOOBIG, FARM_ENOMEM or
 * FARM_EIO. */
int store_query_json(json_t **rows, store *s, const char *sql, const json_t *params);

/* Inside a write function (store.h): run one statement; *changes (may be
 * NULL) is the number of rows it inserted, updated or deleted. Returns 0,
 * FARM_EINVALID, FARM_ENOMEM or FARM_EIO (a constraint, among others). */
int store_tx_exec_json(int64_t *changes, store_tx *tx, const char *sql, const json_t *params);

/* store_tx_exec_json() as a write of its own, group-committed: returns once
 * it is durable. */
int store_exec_json(int64_t *changes, store *s, const char *sql, const json_t *params);

#endif
