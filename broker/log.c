#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The one piece of global state: written once at start, read by every thread afterwards. */
static lq_log_level g_level = LQ_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void lq_log_set_level(lq_log_level level)
{
    g_level = level;
}

bool lq_log_level_parse(const char *s, lq_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (lq_log_level)i;
            return true;
        }
    }
    return false;
}

bool lq_log_enabled(lq_log_level level)
{
    return level >= g_level;
}

void lq_log(lq_log_level level, const char *msg, const char *kv_fmt, ...)
{
    if (!lq_log_enabled(level))
        return;
    char line[LQ_LOG_LINE_MAX];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char qmsg[512];
    int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s msg=%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[level], lq_log_quote(qmsg, sizeof qmsg, msg, strlen(msg)));
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    if (kv_fmt[0] != '\0' && len < sizeof line - 2) {
        line[len++] = ' ';
        va_list ap;
        va_start(ap, kv_fmt);
        int m = vsnprintf(line + len, sizeof line - len, kv_fmt, ap);
        va_end(ap);
        if (m > 0)
            len += (size_t)m < sizeof line - len ? (size_t)m : sizeof line - len - 1;
    }
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    /* One write per line: lines of several threads never interleave. A failed log write has
     * nowhere to be reported, so it is dropped. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

const char *lq_log_quote(char *out, size_t cap, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (cap < 3) {
        if (cap > 0)
            out[0] = '\0';
        return out;
    }
    out[o++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        char esc[4];
        size_t elen = 0;
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            elen = 2;
        } else if (ch < 0x20 || ch == 0x7f) {
            esc[0] = '\\';
            esc[1] = 'x';
            esc[2] = hex[ch >> 4];
            esc[3] = hex[ch & 15];
            elen = 4;
        } else {
            esc[0] = (char)ch;
            elen = 1;
        }
        if (o + elen + 2 > cap)
            break;
        memcpy(out + o, esc, elen);
        o += elen;
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}
