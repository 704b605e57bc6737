/*
 * fuzz_azure.c - libFuzzer target for hook_azure_parse_where() and
 * hook_azure_route() against a small config.
 */
#include "vcs/tracker/event.h"
#include "webhook/hooks.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static config_repo repos[3] = {
        {.name = "fabrikam/GoodCompanyCloud/app",
         .tracker = "azure",
         .azure_project = "GoodCompanyCloud",
         .azure_area_path = "GoodCompanyCloud\\Web"},
        {.name = "fabrikam/GoodCompanyCloud/all",
         .tracker = "azure",
         .azure_project = "GoodCompanyCloud",
         .azure_tag = "agent"},
        {.name = "fabrikam/Fabrikam-Fiber-Git/Fabrikam", .tracker = "azure"},
    };
    static config c = {.repos = repos, .nrepos = 3};
    tracker_event ev;
    hook_azure_where w;
    if (hook_azure_parse_where(&ev, &w, (const char *)data, size) == 0) {
        int rc = hook_azure_route(&ev, &w, &c);
        if (rc == 0 && !ev.repo)
            __builtin_trap();
        tracker_event_free(&ev);
        hook_azure_where_free(&w);
    } else if (ev.tracker || w.project) {
        __builtin_trap();
    }
    return 0;
}
