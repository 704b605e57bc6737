/*
 * test_commands.c - finding `/farm ...` in comment bodies: each command,
 * case, leading blanks, the first command wins, unknown words quoted back
 * safely, and the places a command must NOT be found (quotes, fenced and
 * indented code, inline code, mid-line, "/farmer"), in Markdown and in the
 * HTML Azure DevOps work item comments are.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "farm/intake/commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static command_kind kind_of(const char *body)
{
    command c;
    assert_int_equal(commands_parse(&c, body), 0);
    return c.kind;
}

static void each_command(void **state)
{
    (void)state;
    assert_int_equal(kind_of("/farm run"), COMMAND_RUN);
    assert_int_equal(kind_of("/farm retry"), COMMAND_RETRY);
    assert_int_equal(kind_of("/farm stop"), COMMAND_STOP);
    assert_int_equal(kind_of("/farm status"), COMMAND_STATUS);
    assert_int_equal(kind_of("/farm help"), COMMAND_HELP);
    assert_int_equal(kind_of("/farm update"), COMMAND_UPDATE);
    assert_string_equal(command_kind_name(COMMAND_UPDATE), "update");
    assert_non_null(strstr(commands_help_text(), "`/farm update`"));
    assert_int_equal(kind_of("/farm"), COMMAND_HELP);
    assert_int_equal(kind_of("/farm   \r\n"), COMMAND_HELP);
    assert_string_equal(command_kind_name(COMMAND_RETRY), "retry");
    assert_non_null(strstr(commands_help_text(), "`/farm stop`"));
}

/* `/farm help` lists every command the parser knows, each as it is
 * written (a command added without its line in the help fails here). */
static void help_lists_every_command(void **state)
{
    (void)state;
    const char *help = commands_help_text();
    for (int k = COMMAND_RUN; k <= COMMAND_APPROVE; k++) {
        if (k == COMMAND_UNKNOWN)
            continue;
        char line[64], word[48];
        const char *name = command_kind_name((command_kind)k);
        snprintf(word, sizeof(word), "/farm %s", name);
        assert_int_equal(kind_of(word), k);
        snprintf(line, sizeof(line), "- `/farm %s", name);
        if (!strstr(help, line))
            fail_msg("`/farm help` does not list /farm %s", name);
    }
    assert_non_null(strstr(help, "- `/farm run [preset]` - "));
}

static void case_blanks_and_position(void **state)
{
    (void)state;
    assert_int_equal(kind_of("/FARM Run"), COMMAND_RUN);
    assert_int_equal(kind_of("   /farm stop please"), COMMAND_STOP);
    assert_int_equal(kind_of("Thanks!\r\n\r\n/farm retry\r\n"), COMMAND_RETRY);
    assert_int_equal(kind_of("/farm\trun"), COMMAND_RUN);
    /* the first command wins */
    assert_int_equal(kind_of("/farm status\n/farm stop"), COMMAND_STATUS);
}

static void not_commands(void **state)
{
    (void)state;
    assert_int_equal(kind_of(NULL), COMMAND_NONE);
    assert_int_equal(kind_of(""), COMMAND_NONE);
    assert_int_equal(kind_of("please /farm run this"), COMMAND_NONE);
    assert_int_equal(kind_of("`/farm run`"), COMMAND_NONE);
    assert_int_equal(kind_of("/farmer run"), COMMAND_NONE);
    assert_int_equal(kind_of("/farm-bot run"), COMMAND_NONE);
    assert_int_equal(kind_of("> /farm run"), COMMAND_NONE);
    assert_int_equal(kind_of("  > /farm stop\n>> /farm run"), COMMAND_NONE);
    assert_int_equal(kind_of("    /farm run"), COMMAND_NONE); /* indented code */
    assert_int_equal(kind_of("\t/farm run"), COMMAND_NONE);
    assert_int_equal(kind_of("```\n/farm run\n```"), COMMAND_NONE);
    assert_int_equal(kind_of("~~~~sh\n/farm stop\n~~~\n/farm run\n~~~~"), COMMAND_NONE);
    /* a shorter or different fence does not close the block */
    assert_int_equal(kind_of("````\n```\n/farm run\n````\n/farm status"), COMMAND_STATUS);
    /* after a closed block, commands count again */
    assert_int_equal(kind_of("```\ncode\n```\n/farm retry"), COMMAND_RETRY);
    /* an unclosed block runs to the end */
    assert_int_equal(kind_of("```\n/farm run"), COMMAND_NONE);
}

static void unknown_words(void **state)
{
    command c;
    (void)state;
    assert_int_equal(commands_parse(&c, "/farm deploy now"), 0);
    assert_int_equal(c.kind, COMMAND_UNKNOWN);
    assert_string_equal(c.word, "deploy");
    /* quoted back: printable ASCII only, no backticks, bounded */
    assert_int_equal(commands_parse(&c, "/farm `rm`\xc3\xa9-x"), 0);
    assert_int_equal(c.kind, COMMAND_UNKNOWN);
    assert_string_equal(c.word, "rm-x");
    char longw[200] = "/farm ";
    memset(longw + 6, 'a', 150);
    longw[156] = '\0';
    assert_int_equal(commands_parse(&c, longw), 0);
    assert_int_equal(c.kind, COMMAND_UNKNOWN);
    assert_int_equal(strlen(c.word), COMMANDS_WORD_MAX);
    /* "runner" is not "run" */
    assert_int_equal(kind_of("/farm runner"), COMMAND_UNKNOWN);
}

static void html_bodies(void **state)
{
    (void)state;
    assert_int_equal(kind_of("<div>/farm run</div>"), COMMAND_RUN);
    assert_int_equal(kind_of("<div>thanks</div><div>/farm&nbsp;stop</div>"), COMMAND_STOP);
    assert_int_equal(kind_of("<p>ok</p><p>/farm retry</p>"), COMMAND_RETRY);
    assert_int_equal(kind_of("hi<br>/farm status"), COMMAND_STATUS);
    assert_int_equal(kind_of("<div>see /farm run</div>"), COMMAND_NONE);
    assert_int_equal(kind_of("<blockquote><div>/farm run</div></blockquote><div>ok</div>"),
                     COMMAND_NONE);
    assert_int_equal(kind_of("<div><pre>/farm run</pre></div>"), COMMAND_NONE);
    assert_int_equal(kind_of("<div><code>/farm run</code></div>"), COMMAND_NONE);
    assert_int_equal(kind_of("<blockquote>/farm stop</blockquote><div>/farm help</div>"),
                     COMMAND_HELP);
    assert_int_equal(kind_of("<div>/farm run"), COMMAND_RUN);
    assert_int_equal(kind_of("<div>x</div><b"), COMMAND_NONE); /* an unterminated tag */
}

/* `/farm run [preset]`, `/farm hold`, `/farm unhold`: the argument is one
 * word, lower-cased; anything that cannot be a preset name is flagged. */
static void arguments_and_hold(void **state)
{
    command c;
    (void)state;
    assert_int_equal(commands_parse(&c, "/farm run Codex please"), 0);
    assert_int_equal(c.kind, COMMAND_RUN);
    assert_string_equal(c.arg, "codex");
    assert_int_equal(c.arg_bad, 0);
    assert_int_equal(commands_parse(&c, "/farm run"), 0);
    assert_string_equal(c.arg, "");
    assert_int_equal(commands_parse(&c, "  /farm run\tclaude\r\nmore"), 0);
    assert_string_equal(c.arg, "claude");
    assert_int_equal(commands_parse(&c, "/farm run `rm -rf`"), 0);
    assert_int_equal(c.kind, COMMAND_RUN);
    assert_int_equal(c.arg_bad, 1);
    assert_string_equal(c.arg, "");
    assert_int_equal(commands_parse(&c, "/farm run $(id)"), 0);
    assert_int_equal(c.arg_bad, 1);
    assert_int_equal(commands_parse(&c, "/farm run "
                                        "a-very-long-preset-name-that-is-longer-than-32"),
                     0);
    assert_int_equal(c.arg_bad, 1);
    assert_int_equal(kind_of("/farm hold"), COMMAND_HOLD);
    assert_int_equal(kind_of("/FARM Unhold"), COMMAND_UNHOLD);
    assert_int_equal(kind_of("> /farm hold"), COMMAND_NONE);
    assert_int_equal(kind_of("```\n/farm unhold\n```"), COMMAND_NONE);
    assert_int_equal(kind_of("/farm holdall"), COMMAND_UNKNOWN);
    assert_string_equal(command_kind_name(COMMAND_HOLD), "hold");
    assert_string_equal(command_kind_name(COMMAND_UNHOLD), "unhold");
    assert_non_null(strstr(commands_help_text(), "`/farm hold`"));
    assert_non_null(strstr(commands_help_text(), "`/farm unhold`"));
    assert_non_null(strstr(commands_help_text(), "`/farm run [preset]`"));
    /* in Azure's HTML too */
    assert_int_equal(commands_parse(&c, "<div>/farm run opencode</div>"), 0);
    assert_int_equal(c.kind, COMMAND_RUN);
    assert_string_equal(c.arg, "opencode");
}

static void long_bodies_are_bounded(void **state)
{
    (void)state;
    size_t n = COMMANDS_TEXT_MAX + 64;
    char *big = malloc(n + 16);
    assert_non_null(big);
    memset(big, '\n', n);
    /* a command past the part looked at is not seen */
    memcpy(big + n - 12, "/farm run", 9);
    big[n - 3] = '\0';
    assert_int_equal(kind_of(big), COMMAND_NONE);
    memcpy(big + 10, "/farm stop", 10);
    assert_int_equal(kind_of(big), COMMAND_STOP);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(each_command),
        cmocka_unit_test(help_lists_every_command),
        cmocka_unit_test(case_blanks_and_position),
        cmocka_unit_test(not_commands),
        cmocka_unit_test(unknown_words),
        cmocka_unit_test(html_bodies),
        cmocka_unit_test(long_bodies_are_bounded),
        cmocka_unit_test(arguments_and_hold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
