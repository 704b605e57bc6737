/*
 * log.h - structured logs.
 *
 * One JSON object per line on stderr ({"ts","level","msg", key: value...}),
 * or plain "ts LEVEL msg key=value" text when stderr is a terminal. Fields are
 * string key/value pairs ending with NULL; the macros add the NULL:
 *
 *     log_info("delivery accepted", "delivery", id, "tracker", "github");
 *
 * Secrets registered with log_secret_add() are replaced by "[redacted]"
 * wherever they appear in a message or value, so a token that slips into an
 * error string from a library still never reaches the log.
 */
#ifndef FARM_BASE_LOG_H
#define FARM_BASE_LOG_H

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

typedef enum { LOG_FORMAT_AUTO = 0, LOG_FORMAT_JSON, LOG_FORMAT_TEXT } log_format;

void log_set_level(log_level lvl);
void log_set_format(log_format fmt);
/* Parse "debug", "info", "warn", "error"; returns -1 when unknown. */
int log_level_parse(const char *s);

/* Register a secret value to be redacted from every later log line. Values
 * shorter than 4 bytes are ignored (they would redact ordinary text). The
 * logger keeps its own copy. Thread-safe. */
void log_secret_add(const char *secret);

void log_write(log_level lvl, const char *msg, ...);

#define log_debug(msg, ...) log_write(LOG_DEBUG, msg, ##__VA_ARGS__, (const char *)0)
#define log_info(msg, ...)  log_write(LOG_INFO, msg, ##__VA_ARGS__, (const char *)0)
#define log_warn(msg, ...)  log_write(LOG_WARN, msg, ##__VA_ARGS__, (const char *)0)
#define log_error(msg, ...) log_write(LOG_ERROR, msg, ##__VA_ARGS__, (const char *)0)

/* Print "farm: <message>" to stderr and exit(1). Start-up only. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
