/* Load generator driver: beanstalkd's text protocol (also leaseqd's --beanstalk-listen).
 *
 *   producer: use TUBE, then  put PRI 0 TTR BYTES\r\n<body>\r\n  -> INSERTED id
 *   worker:   watch TUBE + ignore default, then  reserve-with-timeout S -> RESERVED id bytes
 *             (or TIMED_OUT / DEADLINE_SOON: nothing), then  delete id -> DELETED
 * Replies come in request order, so the connection's FIFO says what each one answers. Priority
 * is beanstalkd's own: the api class is put with 0, the app class with 1000.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lg.h"

enum { K_HELLO = 1, K_HELLO_LAST, K_PUT, K_RESERVE, K_DELETE };

static bool bs_hello(lg_thread *t, lg_conn *c)
{
    const char *q = t->cfg->queue;
    if (c->role == ROLE_PRODUCER)
        return lg_out_printf(c, "use %s\r\n", q) && lg_fifo_push(c, 0, K_HELLO_LAST, 0);
    return lg_out_printf(c, "watch %s\r\nignore default\r\n", q) && lg_fifo_push(c, 0, K_HELLO, 0) &&
           lg_fifo_push(c, 0, K_HELLO_LAST, 0);
}

static bool bs_produce(lg_thread *t, lg_conn *c, unsigned si, unsigned n, lg_class cls)
{
    const lg_config *cfg = t->cfg;
    c->slots[si].pending = n; /* no batch command: n pipelined puts */
    for (unsigned i = 0; i < n; i++)
        if (!lg_out_printf(c, "put %u 0 %u %u\r\n", cls == CLASS_API ? 0u : 1000u, cfg->ttr_s, cfg->size) ||
            !lg_out_payload(t, c, cls, c->slots[si].t_sent_ns) || !lg_out_append(c, "\r\n", 2) ||
            !lg_fifo_push(c, si, K_PUT, 0))
            return false;
    return true;
}

static bool bs_take(lg_thread *t, lg_conn *c, unsigned si)
{
    const lg_config *cfg = t->cfg;
    unsigned s = cfg->mode == MODE_PROBE ? 0 : cfg->wait_ms / 1000; /* whole seconds only */
    return lg_out_printf(c, "reserve-with-timeout %u\r\n", s) && lg_fifo_push(c, si, K_RESERVE, 0);
}

static bool bs_ack(lg_thread *t, lg_conn *c, unsigned si, unsigned job_i)
{
    return lg_out_printf(c, "delete %llu\r\n", (unsigned long long)c->slots[si].h[job_i].id) &&
           lg_fifo_push(c, si, K_DELETE, (unsigned)job_i);
}

static bool starts(const char *line, size_t len, const char *word)
{
    size_t n = strlen(word);
    return len >= n && memcmp(line, word, n) == 0;
}

static long bs_parse(lg_thread *t, lg_conn *c)
{
    size_t off = 0;
    for (;;) {
        const char *line = (const char *)c->in + off;
        size_t avail = c->in_len - off;
        const char *eol = memmem(line, avail, "\r\n", 2);
        if (!eol) {
            if (avail > 1024) {
                fprintf(stderr, "loadgen: beanstalk reply line too long\n");
                return -1;
            }
            break;
        }
        size_t len = (size_t)(eol - line), used = len + 2;
        unsigned long long id = 0, bytes = 0;
        bool reserved = starts(line, len, "RESERVED ");
        if (reserved) {
            char tmp[80];
            snprintf(tmp, sizeof tmp, "%.*s", (int)(len < 79 ? len : 79), line);
            if (sscanf(tmp, "RESERVED %llu %llu", &id, &bytes) != 2)
                return -1;
            if (avail < used + bytes + 2)
                break; /* the body is not all here yet */
        }
        lg_pending p;
        if (!lg_fifo_pop(c, &p)) {
            fprintf(stderr, "loadgen: beanstalk reply nobody asked for: %.*s\n", (int)len, line);
            return -1;
        }
        bool ok = true;
        switch (p.kind) {
        case K_HELLO:
            break;
        case K_HELLO_LAST:
            ok = lg_hello_done(t, c);
            break;
        case K_PUT: {
            bool good = starts(line, len, "INSERTED ");
            if (!good)
                lg_count_error(t, 1, line, len);
            ok = lg_enq_done(t, c, p.slot, good, !good);
            break;
        }
        case K_RESERVE:
            if (reserved) {
                c->slots[p.slot].h[0].id = id;
                lg_job_leased(t, c, p.slot, (const uint8_t *)line + used, bytes);
                used += bytes + 2;
                ok = lg_take_done(t, c, p.slot, 1, false);
            } else {
                bool empty = starts(line, len, "TIMED_OUT") || starts(line, len, "DEADLINE_SOON");
                if (!empty)
                    lg_count_error(t, 1, line, len);
                ok = lg_take_done(t, c, p.slot, 0, !empty);
            }
            break;
        case K_DELETE: {
            bool good = starts(line, len, "DELETED");
            if (!good)
                lg_count_error(t, 1, line, len);
            ok = lg_ack_done(t, c, p.slot, p.sub, !good);
            break;
        }
        default:
            ok = false;
        }
        if (!ok)
            return -1;
        off += used;
    }
    return (long)off;
}

const lg_driver lg_beanstalk_driver = {
    .name = "beanstalk",
    .in_order = true,
    .hello = bs_hello,
    .produce = bs_produce,
    .take = bs_take,
    .ack = bs_ack,
    .parse = bs_parse,
};
