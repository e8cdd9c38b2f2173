/* beanstalkd 1.12 command parsing (see parse.h for the quirks kept on purpose). */
#include "parse.h"

#include <string.h>

static const char NAME_CHARS[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-+/;.$_()";

const char *bs_error_line(bs_error e)
{
    switch (e) {
    case BS_ERR_BAD_FORMAT: return "BAD_FORMAT\r\n";
    case BS_ERR_UNKNOWN_COMMAND: return "UNKNOWN_COMMAND\r\n";
    case BS_ERR_EXPECTED_CRLF: return "EXPECTED_CRLF\r\n";
    case BS_ERR_JOB_TOO_BIG: return "JOB_TOO_BIG\r\n";
    default: return "";
    }
}

/* Prefix table in beanstalkd's matching order: a longer command is tried before its prefix.
 * `exact`: the command takes no argument and any trailing byte is BAD_FORMAT. */
static const struct {
    const char *prefix;
    bs_op op;
    bool exact;
} CMDS[] = {
    {"put ", BS_OP_PUT, false},
    {"peek ", BS_OP_PEEK, false},
    {"peek-ready", BS_OP_PEEK_READY, true},
    {"peek-delayed", BS_OP_PEEK_DELAYED, true},
    {"peek-buried", BS_OP_PEEK_BURIED, true},
    {"reserve-with-timeout ", BS_OP_RESERVE_TIMEOUT, false},
    {"reserve-job ", BS_OP_RESERVE_JOB, false},
    {"reserve", BS_OP_RESERVE, true},
    {"delete ", BS_OP_DELETE, false},
    {"release ", BS_OP_RELEASE, false},
    {"bury ", BS_OP_BURY, false},
    {"kick ", BS_OP_KICK, false},
    {"kick-job ", BS_OP_KICK_JOB, false},
    {"touch ", BS_OP_TOUCH, false},
    {"stats-job ", BS_OP_STATS_JOB, false},
    {"stats-tube ", BS_OP_STATS_TUBE, false},
    {"stats", BS_OP_STATS, true},
    {"use ", BS_OP_USE, false},
    {"watch ", BS_OP_WATCH, false},
    {"ignore ", BS_OP_IGNORE, false},
    {"list-tubes-watched", BS_OP_LIST_TUBES_WATCHED, true},
    {"list-tube-used", BS_OP_LIST_TUBE_USED, true},
    {"list-tubes", BS_OP_LIST_TUBES, true},
    {"quit", BS_OP_QUIT, false},
    {"pause-tube", BS_OP_PAUSE_TUBE, false},
};

const char *bs_op_name(bs_op op)
{
    static const char *const names[BS_OP_COUNT_] = {
        [BS_OP_PUT] = "put", [BS_OP_PEEK] = "peek", [BS_OP_PEEK_READY] = "peek-ready",
        [BS_OP_PEEK_DELAYED] = "peek-delayed", [BS_OP_PEEK_BURIED] = "peek-buried",
        [BS_OP_RESERVE] = "reserve", [BS_OP_RESERVE_TIMEOUT] = "reserve-with-timeout",
        [BS_OP_RESERVE_JOB] = "reserve-job", [BS_OP_DELETE] = "delete", [BS_OP_RELEASE] = "release",
        [BS_OP_BURY] = "bury", [BS_OP_KICK] = "kick", [BS_OP_KICK_JOB] = "kick-job",
        [BS_OP_TOUCH] = "touch", [BS_OP_STATS] = "stats", [BS_OP_STATS_JOB] = "stats-job",
        [BS_OP_STATS_TUBE] = "stats-tube", [BS_OP_USE] = "use", [BS_OP_WATCH] = "watch",
        [BS_OP_IGNORE] = "ignore", [BS_OP_LIST_TUBES] = "list-tubes",
        [BS_OP_LIST_TUBE_USED] = "list-tube-used", [BS_OP_LIST_TUBES_WATCHED] = "list-tubes-watched",
        [BS_OP_PAUSE_TUBE] = "pause-tube", [BS_OP_QUIT] = "quit",
    };
    return op > BS_OP_NONE && op < BS_OP_COUNT_ ? names[op] : "?";
}

bool bs_name_ok(const char *name, size_t len)
{
    if (len == 0 || len > BS_NAME_MAX || name[0] == '-')
        return false;
    for (size_t i = 0; i < len; i++) {
        if (name[i] == '\0' || strchr(NAME_CHARS, name[i]) == NULL)
            return false;
    }
    return true;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_cspace(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* beanstalkd's read_u64/read_u32: spaces, then at least one digit, no sign, no overflow.
 * end == NULL: nothing may follow. */
static bool read_uint(const char *s, uint64_t max, uint64_t *v, const char **end)
{
    while (*s == ' ')
        s++;
    if (!is_digit(*s))
        return false;
    uint64_t x = 0;
    for (; is_digit(*s); s++) {
        uint64_t d = (uint64_t)(*s - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false; /* ERANGE */
        x = x * 10 + d;
    }
    if (x > max)
        return false;
    if (end == NULL && *s != '\0')
        return false;
    if (end != NULL)
        *end = s;
    *v = x;
    return true;
}

/* strtoul/strtol's front: white space, a sign, digits. *digits = 0 if none were there;
 * false on overflow of the magnitude limit. */
static bool read_c_number(const char *s, uint64_t limit_pos, uint64_t limit_neg, uint64_t *mag, bool *neg,
                          int *digits)
{
    while (is_cspace(*s))
        s++;
    *neg = false;
    if (*s == '+' || *s == '-') {
        *neg = *s == '-';
        s++;
    }
    uint64_t x = 0;
    bool over = false;
    *digits = 0;
    for (; is_digit(*s); s++) {
        uint64_t d = (uint64_t)(*s - '0');
        if (x > (UINT64_MAX - d) / 10)
            over = true;
        else
            x = x * 10 + d;
        (*digits)++;
    }
    *mag = x;
    if (over || x > (*neg ? limit_neg : limit_pos))
        return false;
    return true;
}

static bs_status fail(bs_cmd *out, bs_error e, size_t line_bytes, size_t *consumed)
{
    out->op = BS_OP_NONE;
    out->err = e;
    *consumed = line_bytes;
    return BS_ERROR;
}

/* The end of the line in the first BS_LINE_MAX bytes as beanstalkd finds it (scan_line_end):
 * the first '\r' of all but the window's last byte, if '\n' follows. Returns the line length
 * without CRLF, or -1. */
static long line_end(const uint8_t *buf, size_t len)
{
    size_t w = len < BS_LINE_MAX ? len : BS_LINE_MAX;
    if (w < 2)
        return -1;
    const uint8_t *cr = memchr(buf, '\r', w - 1);
    if (cr == NULL || cr[1] != '\n')
        return -1;
    return (long)(cr - buf);
}

size_t bs_skip_line(const uint8_t *buf, size_t len, bool *done)
{
    long n = line_end(buf, len);
    if (n >= 0) {
        *done = true;
        return (size_t)n + 2;
    }
    *done = false;
    return len >= BS_LINE_MAX ? BS_LINE_MAX : 0;
}

static bs_status parse_put(const char *args, const uint8_t *buf, size_t len, size_t line_bytes,
                           uint32_t max_job, bs_cmd *out, size_t *consumed, size_t *need)
{
    uint64_t pri, delay, ttr, bytes;
    const char *p = args;
    if (!read_uint(p, UINT32_MAX, &pri, &p) || !read_uint(p, UINT32_MAX, &delay, &p) ||
        !read_uint(p, UINT32_MAX, &ttr, &p) || !read_uint(p, UINT32_MAX, &bytes, &p))
        return fail(out, BS_ERR_BAD_FORMAT, line_bytes, consumed);
    if (bytes > max_job) {
        /* beanstalkd checks the size before the rest of the line: the body goes either way */
        fail(out, BS_ERR_JOB_TOO_BIG, line_bytes, consumed);
        out->discard = bytes + 2;
        return BS_ERROR;
    }
    if (*p != '\0')
        return fail(out, BS_ERR_BAD_FORMAT, line_bytes, consumed);
    size_t total = line_bytes + (size_t)bytes + 2;
    if (len < total) {
        *consumed = 0;
        *need = total;
        return BS_NEED_MORE;
    }
    const uint8_t *body = buf + line_bytes;
    if (body[bytes] != '\r' || body[bytes + 1] != '\n')
        return fail(out, BS_ERR_EXPECTED_CRLF, total, consumed);
    out->op = BS_OP_PUT;
    out->pri = (uint32_t)pri;
    out->delay_s = (uint32_t)delay;
    out->ttr_s = (uint32_t)ttr;
    out->body = body;
    out->body_len = (uint32_t)bytes;
    *consumed = total;
    return BS_CMD;
}

bs_status bs_parse(const uint8_t *buf, size_t len, uint32_t max_job, bs_cmd *out, size_t *consumed,
                   size_t *need)
{
    memset(out, 0, sizeof *out);
    *consumed = 0;
    *need = len + 1;
    long n = line_end(buf, len);
    if (n < 0) {
        if (len < BS_LINE_MAX)
            return BS_NEED_MORE;
        /* too long: beanstalkd answers, drops what it buffered and the rest of the line */
        fail(out, BS_ERR_BAD_FORMAT, BS_LINE_MAX, consumed);
        out->skip_line = true;
        return BS_ERROR;
    }
    size_t line_bytes = (size_t)n + 2;
    char line[BS_LINE_MAX];
    memcpy(line, buf, (size_t)n);
    line[n] = '\0';
    if (memchr(line, '\0', (size_t)n) != NULL)
        return fail(out, BS_ERR_BAD_FORMAT, line_bytes, consumed);

    size_t k = 0, ncmds = sizeof CMDS / sizeof CMDS[0];
    size_t plen = 0;
    for (; k < ncmds; k++) {
        plen = strlen(CMDS[k].prefix);
        if ((size_t)n >= plen && memcmp(line, CMDS[k].prefix, plen) == 0)
            break;
    }
    if (k == ncmds)
        return fail(out, BS_ERR_UNKNOWN_COMMAND, line_bytes, consumed);
    bs_op op = CMDS[k].op;
    if (CMDS[k].exact && (size_t)n != plen)
        return fail(out, BS_ERR_BAD_FORMAT, line_bytes, consumed);
    const char *args = line + plen;
    out->op = op;
    *consumed = line_bytes;
    uint64_t v = 0;
    switch (op) {
    case BS_OP_PUT:
        return parse_put(args, buf, len, line_bytes, max_job, out, consumed, need);
    case BS_OP_PEEK:
    case BS_OP_RESERVE_JOB:
    case BS_OP_DELETE:
    case BS_OP_KICK_JOB:
    case BS_OP_TOUCH:
    case BS_OP_STATS_JOB:
        if (!read_uint(args, UINT64_MAX, &out->id, NULL))
            return fail(out, BS_ERR_BAD_FORMAT, line_bytes, consumed);
        break;
    case BS_OP_RELEASE: {
        const char *p = args;
        uint64_t d = 0;
        if (!read_uint(p, UINT64_MAX, &out->id, &p) || !read_uint(p, UINT32_MAX, &v, &p) ||
            !read_uint(p, UINT32_MAX, &d, NULL))
            return fail(out, BS_ERR_BAD_FORMAT, line_bytes, consumed);
        out->pri = (uint32_t)v;
        out->delay_s = (uint32_t)d;
        break;
    }
    case BS_OP_BURY: {
        const char *p = args;
        if (!read_uint(p, UINT64_MAX, &out->id, &p) || !read_uint(p, UINT32_MAX, &v, NULL))
            return fail(out, BS_ERR_BAD_FORMAT, line_bytes, consumed);
        out->pri = (uint32_t)v;
        break;
    }
    case BS_OP_RESERVE_TIMEOUT: {
        /* strtol into an int: no digits reads 0, out-of-range long is BAD_FORMAT, the rest is
         * truncated to 32 bits, and a negative wait means no limit */
        bool neg;
        int digits;
        if (!read_c_number(args, (uint64_t)INT64_MAX, (uint64_t)INT64_MAX + 1, &v, &neg, &digits))
            return fail(out, BS_ERR_BAD_FORMAT, line_bytes, consumed);
        uint64_t u = neg ? (uint64_t)0 - v : v;
        out->timeout_s = (int32_t)(uint32_t)u;
        break;
    }
    case BS_OP_KICK: {
        /* strtoul into an unsigned int: digits required, a sign wraps, trailing bytes allowed */
        bool neg;
        int digits;
        if (!read_c_number(args, UINT64_MAX, UINT64_MAX, &v, &neg, &digits) || digits == 0)
            return fail(out, BS_ERR_BAD_FORMAT, line_bytes, consumed);
        uint64_t u = neg ? (uint64_t)0 - v : v;
        out->count = (uint32_t)u;
        break;
    }
    case BS_OP_STATS_TUBE:
    case BS_OP_USE:
    case BS_OP_WATCH:
    case BS_OP_IGNORE: {
        size_t nl = strlen(args);
        if (!bs_name_ok(args, nl))
            return fail(out, BS_ERR_BAD_FORMAT, line_bytes, consumed);
        out->name = (const char *)buf + (args - line);
        out->name_len = (uint32_t)nl;
        break;
    }
    case BS_OP_PAUSE_TUBE: {
        const char *p = args;
        while (*p == ' ')
            p++;
        size_t nl = strspn(p, NAME_CHARS);
        const char *after = p + nl;
        uint64_t d = 0;
        if (nl == 0 || !read_uint(after, UINT32_MAX, &d, NULL) || !bs_name_ok(p, nl))
            return fail(out, BS_ERR_BAD_FORMAT, line_bytes, consumed);
        out->name = (const char *)buf + (p - line);
        out->name_len = (uint32_t)nl;
        out->delay_s = (uint32_t)d;
        break;
    }
    default:
        break; /* no arguments (exact commands were checked above); quit ignores the rest */
    }
    return BS_CMD;
}
