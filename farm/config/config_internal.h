/*
 * config_internal.h - what config.c shares with config_repo.c, which holds
 * the repos[] section: its loader, the clearing of one repository and the
 * tracker names both the repos and the digest choose from. Names shared
 * here but not exported are written config__x. Nothing outside
 * farm/config/config*.c includes this.
 */
#ifndef FARM_FARM_CONFIG_CONFIG_INTERNAL_H
#define FARM_FARM_CONFIG_CONFIG_INTERNAL_H

#include "config.h"
#include "config_check.h"

#include <jansson.h>

/* "github", "azure", "local", NULL-terminated. */
extern const char *const config__trackers[];

/* Load the repos[] array arr into cfg->repos (calloc'ed, freed by
 * config_free()), reporting every problem to c. The trackers' sections
 * must be loaded first: a repository checks that its tracker's is there
 * and takes its trigger defaults from the tracker's bot identity. */
void config__repos_load(cc *c, config *cfg, json_t *arr);

/* 1 when s is an allowlist entry: "host", "*.domain", "host:port". */
int config__host_pattern_ok(const char *s);

/* Free what one repository's fields hold (not r itself). */
void config__repo_clear(config_repo *r);

#endif
