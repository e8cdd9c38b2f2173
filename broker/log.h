/* logfmt logging on stderr: one line per notable event, never one per job at level info.
 *
 *   ts=2024-05-01T12:00:00.123Z level=info msg="listening" addr=127.0.0.1:7420
 *
 * Each line is written with a single write(2), so lines from the committer thread and the loop
 * never interleave. Values that come from clients must go through lq_log_quote. */
#ifndef LQ_LOG_H
#define LQ_LOG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    LQ_LOG_DEBUG = 0,
    LQ_LOG_INFO = 1,
    LQ_LOG_WARN = 2,
    LQ_LOG_ERROR = 3,
} lq_log_level;

#define LQ_LOG_LINE_MAX 2048

/* Set once at start, before any thread exists. */
void lq_log_set_level(lq_log_level level);
/* "debug" / "info" / "warn" / "error"; false if unknown. */
bool lq_log_level_parse(const char *s, lq_log_level *out);
bool lq_log_enabled(lq_log_level level);

/* kv_fmt: printf format of the key=value part (may be "" ). Lines longer than
 * LQ_LOG_LINE_MAX are truncated. */
void lq_log(lq_log_level level, const char *msg, const char *kv_fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes s[0..len) as a logfmt quoted value ("..." with \" \\ and control bytes escaped) into
 * out (cap bytes, always NUL-terminated, truncated if needed). Returns out. */
const char *lq_log_quote(char *out, size_t cap, const char *s, size_t len);

#define LQ_LOGD(msg, ...) do { if (lq_log_enabled(LQ_LOG_DEBUG)) lq_log(LQ_LOG_DEBUG, msg, __VA_ARGS__); } while (0)
#define LQ_LOGI(msg, ...) lq_log(LQ_LOG_INFO, msg, __VA_ARGS__)
#define LQ_LOGW(msg, ...) lq_log(LQ_LOG_WARN, msg, __VA_ARGS__)
#define LQ_LOGE(msg, ...) lq_log(LQ_LOG_ERROR, msg, __VA_ARGS__)

#endif
