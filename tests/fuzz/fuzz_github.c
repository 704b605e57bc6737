/*
 * fuzz_github.c - libFuzzer target for hook_github_parse(). The first input
 * byte picks the X-GitHub-Event name; the rest is the body.
 */
#include "vcs/tracker/event.h"
#include "webhook/hooks.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const events[] = {
        "issues",       "issue_comment", "pull_request_review",       "pull_request_review_comment",
        "pull_request", "installation",  "installation_repositories", "ping",
        "star",
    };
    if (size < 1)
        return 0;
    const char *event = events[data[0] % (sizeof(events) / sizeof(events[0]))];
    tracker_event ev;
    if (hook_github_parse(&ev, event, "fuzz-delivery", (const char *)data + 1, size - 1) == 0) {
        /* whatever was parsed is a valid event: strings are NUL-terminated */
        if (ev.repo)
            (void)strlen(ev.repo);
        for (size_t i = 0; i < ev.nlabels; i++)
            (void)strlen(ev.labels[i]);
        tracker_event_free(&ev);
    } else if (ev.tracker || ev.repo) {
        __builtin_trap(); /* a refused event must come back zeroed */
    }
    return 0;
}
