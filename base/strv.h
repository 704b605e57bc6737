/*
 * strv.h - the one string vector: a growable NULL-terminated array of heap
 * strings, as argv, envp and the lists of records want.
 *
 * Two forms, the same layout (char **v, NULL-terminated, each string a heap
 * copy):
 * - strv, a builder: add to it, then strv_take() the array or strv_free() it.
 *   A failed add is remembered (failed), so a caller may add a whole command
 *   line and check once at the end.
 * - a list kept in a record as (char **v, size_t n): strv_list_add() appends
 *   to it and strv_list_free() frees it.
 */
#ifndef FARM_BASE_STRV_H
#define FARM_BASE_STRV_H

#include <stddef.h>

typedef struct strv {
    char **v; /* NULL until the first add; then NULL-terminated */
    size_t n, cap;
    int failed; /* an add ran out of memory: every later add fails too */
} strv;

#define STRV_INIT                                                                                  \
    {                                                                                              \
        NULL, 0, 0, 0                                                                              \
    }

/* Append a heap copy of str (NULL adds ""). Returns 0, or FARM_ENOMEM (and
 * sets failed) when memory ran out now or before. */
int strv_add(strv *s, const char *str);

/* strv_add() of a formatted string. */
int strv_addf(strv *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The NULL-terminated array (an empty one when nothing was added), which the
 * caller frees with strv_list_free(); s is left empty. NULL when memory ran
 * out (now or in an earlier add): then s is freed. */
char **strv_take(strv *s);

/* Free every string and the array; s is left empty and may be used again. */
void strv_free(strv *s);

/* Append a heap copy of str to the NULL-terminated list *v of *n strings
 * (*v may be NULL). Returns 0 or FARM_ENOMEM (the list is unchanged). */
int strv_list_add(char ***v, size_t *n, const char *str);

/* Free a NULL-terminated list and its strings. NULL is accepted. */
void strv_list_free(char **v);

#endif
