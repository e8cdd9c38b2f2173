/* The beanstalkd 1.12 text protocol, parsing only: bytes in, one command (or the error word to
 * answer) out. No I/O, no allocation, no state between calls except what the caller keeps
 * (the two skip modes below), so it can be fuzzed and unit-tested on its own.
 *
 * It reproduces beanstalkd's own quirks on purpose, so that existing clients see the same
 * answers: a command line is at most BS_LINE_MAX bytes including "\r\n"; the end of a line is
 * the FIRST '\r' of the window when a '\n' follows it (a lone '\r' is not an end); a longer line
 * is answered BAD_FORMAT and the rest of it is dropped (bs_skip_line); numbers are read the way
 * beanstalkd reads each field (strict unsigned for ids and put, strtol for
 * reserve-with-timeout, strtoul for kick). */
#ifndef LQ_BS_PARSE_H
#define LQ_BS_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BS_LINE_MAX 224        /* beanstalkd's LINE_BUF_SIZE: command line with its CRLF */
#define BS_NAME_MAX 200        /* tube name bytes */
#define BS_JOB_SIZE_DEFAULT 65535u

typedef enum {
    BS_OP_NONE = 0,
    BS_OP_PUT,
    BS_OP_PEEK,
    BS_OP_PEEK_READY,
    BS_OP_PEEK_DELAYED,
    BS_OP_PEEK_BURIED,
    BS_OP_RESERVE,
    BS_OP_RESERVE_TIMEOUT,
    BS_OP_RESERVE_JOB,
    BS_OP_DELETE,
    BS_OP_RELEASE,
    BS_OP_BURY,
    BS_OP_KICK,
    BS_OP_KICK_JOB,
    BS_OP_TOUCH,
    BS_OP_STATS,
    BS_OP_STATS_JOB,
    BS_OP_STATS_TUBE,
    BS_OP_USE,
    BS_OP_WATCH,
    BS_OP_IGNORE,
    BS_OP_LIST_TUBES,
    BS_OP_LIST_TUBE_USED,
    BS_OP_LIST_TUBES_WATCHED,
    BS_OP_PAUSE_TUBE,
    BS_OP_QUIT,
    BS_OP_COUNT_
} bs_op;

typedef enum {
    BS_ERR_NONE = 0,
    BS_ERR_BAD_FORMAT,
    BS_ERR_UNKNOWN_COMMAND,
    BS_ERR_EXPECTED_CRLF,
    BS_ERR_JOB_TOO_BIG,
} bs_error;

typedef enum {
    BS_NEED_MORE = 0, /* no complete unit yet: *need says how many bytes the unit needs */
    BS_CMD,           /* a command: out->op and its arguments */
    BS_ERROR,         /* answer out->err (see discard / skip_line) */
} bs_status;

typedef struct {
    bs_op op;
    bs_error err;
    uint64_t id;          /* peek, reserve-job, delete, release, bury, kick-job, touch, stats-job */
    uint32_t pri;         /* put, release, bury */
    uint32_t delay_s;     /* put, release, pause-tube */
    uint32_t ttr_s;       /* put (as sent: 0 is not raised to 1 here) */
    uint32_t count;       /* kick */
    int32_t timeout_s;    /* reserve-with-timeout; negative = wait without a limit */
    const char *name;     /* use, watch, ignore, stats-tube, pause-tube: points into the input */
    uint32_t name_len;
    const uint8_t *body;  /* put: points into the input */
    uint32_t body_len;
    uint64_t discard;     /* JOB_TOO_BIG: bytes that follow *consumed and must be dropped */
    bool skip_line;       /* BAD_FORMAT of an over-long line: drop input up to its CRLF */
} bs_cmd;

/* Parses the unit at the start of buf[0..len). *consumed: bytes it took (0 with NEED_MORE);
 * *need: with NEED_MORE, the total bytes the unit needs when known (a put's body), else
 * len + 1. max_job: the largest body accepted (beanstalkd -z). */
bs_status bs_parse(const uint8_t *buf, size_t len, uint32_t max_job, bs_cmd *out, size_t *consumed,
                   size_t *need);

/* After an over-long line: how many bytes of buf to drop; *done once its CRLF was dropped. */
size_t bs_skip_line(const uint8_t *buf, size_t len, bool *done);

/* "BAD_FORMAT\r\n", ... for an error; "" for none. */
const char *bs_error_line(bs_error e);
const char *bs_op_name(bs_op op); /* "put", "peek-ready", ... */
/* beanstalkd's tube name rule: 1..200 bytes of [A-Za-z0-9-+/;.$_()], not starting with '-'. */
bool bs_name_ok(const char *name, size_t len);

#endif
