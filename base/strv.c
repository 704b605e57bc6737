/*
 * strv.c - the one string vector (strv.h).
 */
#include "strv.h"
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int strv_add(strv *s, const char *str)
{
    if (s->failed)
        return FARM_ENOMEM;
    if (s->n + 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        char **nv = realloc(s->v, cap * sizeof(char *));
        if (!nv)
            goto oom;
        s->v = nv;
        s->cap = cap;
    }
    if (!(s->v[s->n] = strdup(str ? str : "")))
        goto oom;
    s->v[++s->n] = NULL;
    return 0;
oom:
    s->failed = 1;
    farm_error_set("out of memory");
    return FARM_ENOMEM;
}

int strv_addf(strv *s, const char *fmt, ...)
{
    va_list ap;
    char *str = NULL;
    int n;

    if (s->failed)
        return FARM_ENOMEM;
    va_start(ap, fmt);
    n = vasprintf(&str, fmt, ap);
    va_end(ap);
    if (n < 0) {
        s->failed = 1;
        farm_error_set("out of memory");
        return FARM_ENOMEM;
    }
    int rc = strv_add(s, str);
    free(str);
    return rc;
}

char **strv_take(strv *s)
{
    char **v = s->v;
    if (s->failed) {
        strv_free(s);
        return NULL;
    }
    if (!v && !(v = calloc(1, sizeof(char *)))) {
        farm_error_set("out of memory");
        return NULL;
    }
    *s = (strv)STRV_INIT;
    return v;
}

void strv_free(strv *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    *s = (strv)STRV_INIT;
}

int strv_list_add(char ***v, size_t *n, const char *str)
{
    char **grown = realloc(*v, (*n + 2) * sizeof(char *));
    char *copy = grown ? strdup(str ? str : "") : NULL;
    if (grown)
        *v = grown;
    if (!copy) {
        farm_error_set("out of memory");
        return FARM_ENOMEM;
    }
    grown[*n] = copy;
    grown[++*n] = NULL;
    return 0;
}

void strv_list_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}
