/*
 * test_base.c - the bounded buffer, the error slot, clocks and log redaction.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void buf_cap_is_hard(void **state)
{
    buf b = BUF_INIT(10);
    assert_int_equal(buf_puts(&b, "hello"), 0);
    assert_int_equal(buf_puts(&b, "world"), 0);
    assert_int_equal(b.len, 10);
    /* one byte more fails and leaves the contents as they were */
    assert_int_equal(buf_putc(&b, '!'), FARM_ETOOBIG);
    assert_string_equal(buf_cstr(&b), "helloworld");
    assert_int_equal(buf_printf(&b, "%d", 1), FARM_ETOOBIG);
    assert_non_null(strstr(farm_error_last(), "cap of 10"));
    buf_reset(&b);
    assert_string_equal(buf_cstr(&b), "");
    assert_int_equal(buf_printf(&b, "%s-%d", "ab", 42), 0);
    assert_string_equal(buf_cstr(&b), "ab-42");
    char *d = buf_detach(&b);
    assert_string_equal(d, "ab-42");
    assert_null(b.data);
    free(d);
    buf_free(&b);
}

static void buf_grows_past_initial(void **state)
{
    buf b = BUF_INIT(1 << 20);
    for (int i = 0; i < 100000; i++)
        assert_int_equal(buf_putc(&b, (char)('a' + i % 26)), 0);
    assert_int_equal(b.len, 100000);
    assert_true(b.cap <= (1 << 20));
    assert_int_equal(b.data[26], 'a');
    buf_free(&b);
    /* a huge single append over the cap fails without allocating */
    assert_int_equal(buf_append(&b, "x", SIZE_MAX), FARM_ETOOBIG);
}

static void error_slot_is_per_thread_text(void **state)
{
    farm_error_set("no such session %d", 7);
    assert_string_equal(farm_error_last(), "no such session 7");
    farm_error_clear();
    assert_string_equal(farm_error_last(), "");
    assert_string_equal(farm_error_name(FARM_ENOTFOUND), "ENOTFOUND");
}

static void since_parses_durations_and_times(void **state)
{
    int64_t t;
    int64_t now = clock_wall_ms();
    assert_int_equal(clock_parse_since(&t, "24h"), 0);
    assert_true(llabs((now - 86400000) - t) < 2000);
    assert_int_equal(clock_parse_since(&t, "2026-11-21T19:14:23Z"), 0);
    assert_int_equal(t, 1795288463000LL);
    assert_int_equal(clock_parse_since(&t, "2026-11-21T19:14:23.5Z"), 0);
    assert_int_equal(t, 1795288463500LL);
    char out[40];
    clock_format_rfc3339(out, sizeof(out), 1795288463500LL);
    assert_string_equal(out, "2026-11-21T19:14:23.500Z");
    assert_int_equal(clock_parse_since(&t, "yesterday"), FARM_EINVALID);
    assert_int_equal(clock_parse_since(&t, "-5h"), FARM_EINVALID);
    assert_int_equal(clock_parse_since(&t, ""), FARM_EINVALID);
}

static void log_redacts_secrets(void **state)
{
    char path[] = "/tmp/farm-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(2);
    dup2(fd, 2);
    log_set_format(LOG_FORMAT_JSON);
    log_secret_add("s3cr3t-token");
    log_info("auth failed for s3cr3t-token", "header", "Bearer s3cr3t-token", "quote", "a\"b\nc");
    dup2(saved, 2);
    close(saved);
    char line[512] = {0};
    lseek(fd, 0, SEEK_SET);
    assert_true(read(fd, line, sizeof(line) - 1) > 0);
    close(fd);
    unlink(path);
    assert_null(strstr(line, "s3cr3t"));
    assert_non_null(strstr(line, "\"msg\":\"auth failed for [redacted]\""));
    assert_non_null(strstr(line, "\"header\":\"Bearer [redacted]\""));
    assert_non_null(strstr(line, "\"quote\":\"a\\\"b\\nc\""));
    assert_int_equal(line[strlen(line) - 1], '\n');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buf_cap_is_hard),
        cmocka_unit_test(buf_grows_past_initial),
        cmocka_unit_test(error_slot_is_per_thread_text),
        cmocka_unit_test(since_parses_durations_and_times),
        cmocka_unit_test(log_redacts_secrets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
