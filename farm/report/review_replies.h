/*
 * review_replies.h - after a revision pushed, a reply in every review
 * thread it addressed (outbox keys "s<id>:rc<comment id>", so a reply is
 * sent once whatever happens). Part of reporting: it stands on the store and
 * the outbox; the pipeline (farm/run) calls it.
 */
#ifndef FARM_FARM_REPORT_REVIEW_REPLIES_H
#define FARM_FARM_REPORT_REVIEW_REPLIES_H

#include "farm/store/store.h"

#include <stdint.h>

typedef struct farm farm;

/* Where the review window of the run whose "run_started" event is run_seq
 * begins: the seq of the session's previous "run_started" event (0 when
 * there is none), and its time in *ts_ms (may be NULL). Review comments
 * logged after it and before run_seq are that run's to address, those that
 * came while the previous run was at work included (it never saw them). */
int64_t review_window_start(store *s, int64_t session_id, int64_t run_seq, int64_t *ts_ms);

/* A revision (the run whose "run_started" event is run_seq) pushed commit:
 * reply in each review thread whose comments it addressed, those logged
 * after the previous run started and before this one. summary (may be NULL)
 * is the agent's summary, quoted briefly. One write; returns 0, FARM_EIO or
 * FARM_ENOMEM. */
int review_replies_enqueue(farm *f, int64_t session_id, int64_t run_no, int64_t run_seq,
                           const char *commit, const char *summary);

#endif
