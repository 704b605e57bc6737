/*
 * history.h - the session-history digest every run's prompt carries: what
 * earlier runs of the session did (their outcome, tests, commits), what the
 * agent asked and what people answered, what reviewers asked for, and the
 * messages people sent. Built from the session log; a later run of a long
 * session gets the gist, not the whole log.
 */
#ifndef FARM_FARM_RUN_HISTORY_H
#define FARM_FARM_RUN_HISTORY_H

#include "farm/store/store.h"

#include <stdint.h>

#define HISTORY_MAX      (12u << 10) /* the whole digest */
#define HISTORY_ITEM_MAX 1200        /* one quoted answer, review or message */

/* The digest of session_id's log before seq before_seq (0: all of it), as
 * Markdown. *out is a heap string the caller frees, or NULL when there is
 * no history yet (a first run). Returns 0, FARM_EIO or FARM_ENOMEM. */
int history_digest(char **out, store *s, int64_t session_id, int64_t before_seq);

#endif
