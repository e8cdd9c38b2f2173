/* Load generator drivers: Redis 7 as a work queue, spoken in RESP2 directly (no hiredis).
 *
 * redis-list (the "reliable queue" pattern):
 *   produce  LPUSH Q:app|Q:api BODY
 *   take     BLMOVE Q:app Q:proc RIGHT LEFT WAIT_S  (prio mode: LMOVE Q:api Q:proc RIGHT LEFT
 *            first, then the blocking one on Q:app if api was empty; probe: LMOVE, no wait)
 *   ack      LREM Q:proc 1 BODY
 * redis-stream (consumer groups):
 *   produce  XADD Q * d BODY
 *   take     XREADGROUP GROUP g cN COUNT MAX_JOBS BLOCK WAIT_MS STREAMS Q >
 *   ack      XACK Q g ID
 *   rescuer  XAUTOCLAIM Q g rescuer MIN_IDLE_MS 0-0 COUNT MAX_JOBS, every --poll-ms while empty
 *            (MIN_IDLE_MS is --lease-ms: Redis's stand-in for a lease time)
 * Replies come in request order (the connection's FIFO). Each connection first sends PING
 * (lists) or XGROUP CREATE Q g 0 MKSTREAM (streams; BUSYGROUP is fine) as its handshake.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lg.h"

enum { K_HELLO_LAST = 1, K_PUT, K_TAKE_API, K_TAKE, K_CLAIM, K_ACK };
#define TOKENS_MAX 4096u

typedef struct {
    char type;   /* + - : $ * */
    long long n; /* integer, bulk length or array count; -1 = nil */
    const uint8_t *s;
    size_t len;
} rtok;

/* ---- encoding ---- */

static bool arg(lg_conn *c, const char *s)
{
    return lg_out_printf(c, "$%zu\r\n%s\r\n", strlen(s), s);
}

static bool arg_bytes(lg_conn *c, const uint8_t *p, size_t n)
{
    return lg_out_printf(c, "$%zu\r\n", n) && lg_out_append(c, p, n) && lg_out_append(c, "\r\n", 2);
}

static bool arg_payload(lg_thread *t, lg_conn *c, lg_class cls, uint64_t t_ns)
{
    return lg_out_printf(c, "$%u\r\n", t->cfg->size) && lg_out_payload(t, c, cls, t_ns) &&
           lg_out_append(c, "\r\n", 2);
}

static bool argf(lg_conn *c, const char *fmt, const char *q, const char *suffix)
{
    char buf[300];
    snprintf(buf, sizeof buf, fmt, q, suffix);
    return arg(c, buf);
}

static bool is_stream(const lg_thread *t) { return t->cfg->proto == PROTO_REDIS_STREAM; }

static bool rd_hello(lg_thread *t, lg_conn *c)
{
    if (is_stream(t)) {
        if (!lg_out_printf(c, "*6\r\n") || !arg(c, "XGROUP") || !arg(c, "CREATE") || !arg(c, t->cfg->queue) ||
            !arg(c, "g") || !arg(c, "0") || !arg(c, "MKSTREAM"))
            return false;
    } else if (!lg_out_printf(c, "*1\r\n") || !arg(c, "PING")) {
        return false;
    }
    return lg_fifo_push(c, 0, K_HELLO_LAST, 0);
}

static bool rd_produce(lg_thread *t, lg_conn *c, unsigned si, unsigned n, lg_class cls)
{
    const char *q = t->cfg->queue;
    c->slots[si].pending = n;
    for (unsigned i = 0; i < n; i++) {
        bool ok = is_stream(t)
                      ? lg_out_printf(c, "*5\r\n") && arg(c, "XADD") && arg(c, q) && arg(c, "*") && arg(c, "d")
                      : lg_out_printf(c, "*3\r\n") && arg(c, "LPUSH") &&
                            argf(c, "%s:%s", q, cls == CLASS_API ? "api" : "app");
        if (!ok || !arg_payload(t, c, cls, c->slots[si].t_sent_ns) || !lg_fifo_push(c, si, K_PUT, 0))
            return false;
    }
    return true;
}

static bool list_move(lg_thread *t, lg_conn *c, unsigned si, const char *from_class, bool block)
{
    const lg_config *cfg = t->cfg;
    char tmo[32];
    snprintf(tmo, sizeof tmo, "%.3f", cfg->wait_ms / 1000.0);
    bool ok = block ? lg_out_printf(c, "*6\r\n") && arg(c, "BLMOVE") : lg_out_printf(c, "*5\r\n") && arg(c, "LMOVE");
    ok = ok && argf(c, "%s:%s", cfg->queue, from_class) && argf(c, "%s:%s", cfg->queue, "proc") && arg(c, "RIGHT") &&
         arg(c, "LEFT") && (!block || arg(c, tmo));
    return ok && lg_fifo_push(c, si, strcmp(from_class, "api") == 0 ? K_TAKE_API : K_TAKE, 0);
}

static bool rd_take(lg_thread *t, lg_conn *c, unsigned si)
{
    const lg_config *cfg = t->cfg;
    char num[32], cons[32];
    if (!is_stream(t)) {
        if (cfg->mode == MODE_PRIO)
            return list_move(t, c, si, "api", false);
        return list_move(t, c, si, "app", cfg->mode != MODE_PROBE && cfg->wait_ms > 0);
    }
    snprintf(num, sizeof num, "%u", cfg->max_jobs);
    if (c->role == ROLE_RESCUER) {
        char idle[32];
        snprintf(idle, sizeof idle, "%u", cfg->lease_ms);
        return lg_out_printf(c, "*8\r\n") && arg(c, "XAUTOCLAIM") && arg(c, cfg->queue) && arg(c, "g") &&
               arg(c, "rescuer") && arg(c, idle) && arg(c, "0-0") && arg(c, "COUNT") && arg(c, num) &&
               lg_fifo_push(c, si, K_CLAIM, 0);
    }
    snprintf(cons, sizeof cons, "c%llu-%u", t->tid, c->index);
    bool block = cfg->mode != MODE_PROBE && cfg->wait_ms > 0;
    char wait[32];
    snprintf(wait, sizeof wait, "%u", cfg->wait_ms);
    bool ok = lg_out_printf(c, "*%d\r\n", block ? 11 : 9) && arg(c, "XREADGROUP") && arg(c, "GROUP") && arg(c, "g") &&
              arg(c, cons) && arg(c, "COUNT") && arg(c, num) && (!block || (arg(c, "BLOCK") && arg(c, wait))) &&
              arg(c, "STREAMS") && arg(c, cfg->queue) && arg(c, ">");
    return ok && lg_fifo_push(c, si, K_TAKE, 0);
}

static bool rd_ack(lg_thread *t, lg_conn *c, unsigned si, unsigned job_i)
{
    const lg_handle *h = &c->slots[si].h[job_i];
    bool ok = is_stream(t) ? lg_out_printf(c, "*4\r\n") && arg(c, "XACK") && arg(c, t->cfg->queue) && arg(c, "g") &&
                                 arg(c, h->sid)
                           : lg_out_printf(c, "*4\r\n") && arg(c, "LREM") && argf(c, "%s:%s", t->cfg->queue, "proc") &&
                                 arg(c, "1") && arg_bytes(c, h->val, h->val_len);
    return ok && lg_fifo_push(c, si, K_ACK, job_i);
}

/* ---- decoding ---- */

/* Scans one whole RESP value at b[off..len) into tokens (pre-order). Returns the offset after
 * it, 0 when it is not all here yet, -1 when garbled or too big. */
static long scan(const uint8_t *b, size_t len, size_t off, rtok *tk, unsigned *nt, int depth)
{
    if (depth > 8 || *nt >= TOKENS_MAX)
        return -1;
    if (off >= len)
        return 0;
    const uint8_t *eol = memmem(b + off, len - off, "\r\n", 2);
    if (!eol)
        return len - off > 4096 ? -1 : 0;
    rtok *t = &tk[(*nt)++];
    t->type = (char)b[off];
    t->s = b + off + 1;
    t->len = (size_t)(eol - t->s);
    t->n = 0;
    size_t next = (size_t)(eol - b) + 2;
    if (t->type == '$' || t->type == '*' || t->type == ':') {
        char tmp[24];
        snprintf(tmp, sizeof tmp, "%.*s", (int)(t->len < 23 ? t->len : 23), (const char *)t->s);
        t->n = strtoll(tmp, NULL, 10);
    }
    switch (t->type) {
    case '+':
    case '-':
    case ':':
        return (long)next;
    case '$':
        if (t->n < 0)
            return (long)next;
        if (len < next + (size_t)t->n + 2)
            return 0;
        t->s = b + next;
        t->len = (size_t)t->n;
        return (long)(next + (size_t)t->n + 2);
    case '*':
        for (long long i = 0; i < t->n; i++) {
            long r = scan(b, len, next, tk, nt, depth + 1);
            if (r <= 0)
                return r;
            next = (size_t)r;
        }
        return (long)next;
    default:
        return -1;
    }
}

static bool is_nil(const rtok *t) { return (t->type == '$' || t->type == '*') && t->n < 0; }

/* Stream entries from tk[i]: n entries of [id, [field, value, ...]]. Fills the slot's handles. */
static bool stream_entries(lg_thread *t, lg_conn *c, unsigned si, const rtok *tk, unsigned nt, unsigned i,
                           long long n, unsigned *got)
{
    *got = 0;
    for (long long e = 0; e < n; e++) {
        if (i >= nt)
            return false;
        if (is_nil(&tk[i])) { /* an entry deleted meanwhile */
            i++;
            continue;
        }
        if (i + 2 >= nt || tk[i].type != '*' || tk[i + 1].type != '$' || tk[i + 2].type != '*')
            return false;
        const rtok *id = &tk[i + 1];
        long long nf = tk[i + 2].n < 0 ? 0 : tk[i + 2].n;
        const rtok *val = NULL;
        for (long long f = 0; f + 1 < nf; f += 2)
            if (i + 4 + (unsigned)f < nt && tk[i + 3 + f].len == 1 && tk[i + 3 + f].s[0] == 'd')
                val = &tk[i + 4 + f];
        if (*got >= t->cfg->max_jobs || id->len >= sizeof c->slots[si].h[0].sid)
            return false;
        lg_handle *h = &c->slots[si].h[*got];
        memcpy(h->sid, id->s, id->len);
        h->sid[id->len] = '\0';
        lg_job_leased(t, c, si, val ? val->s : NULL, val ? val->len : 0);
        (*got)++;
        i += 3 + (unsigned)nf;
    }
    return true;
}

static bool handle(lg_thread *t, lg_conn *c, const lg_pending *p, const rtok *tk, unsigned nt)
{
    unsigned got = 0;
    bool err = tk[0].type == '-';
    if (err && !(p->kind == K_HELLO_LAST && tk[0].len >= 10 && memcmp(tk[0].s, "BUSYGROUP", 9) == 0))
        lg_count_error(t, 1, (const char *)tk[0].s, tk[0].len);
    switch (p->kind) {
    case K_HELLO_LAST:
        if (err && t->cfg->mode == MODE_PROBE && tk[0].len >= 7 && memcmp(tk[0].s, "LOADING", 7) == 0) {
            /* recovering: ask again shortly (one probe connection, so a short nap is fine) */
            struct timespec nap = {.tv_nsec = 2000000};
            nanosleep(&nap, NULL);
            return rd_hello(t, c);
        }
        if (err && !(tk[0].len >= 9 && memcmp(tk[0].s, "BUSYGROUP", 9) == 0))
            return false;
        return lg_hello_done(t, c);
    case K_PUT:
        return lg_enq_done(t, c, p->slot, !err, err);
    case K_ACK:
        return lg_ack_done(t, c, p->slot, p->sub, err || tk[0].type != ':' || tk[0].n < 1);
    case K_TAKE_API:
        if (!err && is_nil(&tk[0])) /* no api job: block on the app list */
            return list_move(t, c, p->slot, "app", t->cfg->wait_ms > 0);
        /* fall through */
    case K_TAKE:
        if (err)
            return lg_take_done(t, c, p->slot, 0, true);
        if (is_nil(&tk[0]))
            return lg_take_done(t, c, p->slot, 0, false);
        if (!is_stream(t)) {
            if (tk[0].type != '$' || !lg_handle_keep(&c->slots[p->slot].h[0], tk[0].s, tk[0].len))
                return false;
            lg_job_leased(t, c, p->slot, tk[0].s, tk[0].len);
            return lg_take_done(t, c, p->slot, 1, false);
        }
        /* [[stream, [entries]]] */
        if (nt < 4 || tk[0].type != '*' || tk[1].type != '*' || tk[3].type != '*')
            return false;
        return stream_entries(t, c, p->slot, tk, nt, 4, tk[3].n, &got) && lg_take_done(t, c, p->slot, got, false);
    case K_CLAIM: {
        if (err)
            return lg_take_done(t, c, p->slot, 0, true);
        /* [cursor, [entries], [deleted ids]] */
        if (nt < 3 || tk[0].type != '*' || tk[2].type != '*')
            return false;
        return stream_entries(t, c, p->slot, tk, nt, 3, tk[2].n, &got) && lg_take_done(t, c, p->slot, got, false);
    }
    }
    return false;
}

static long rd_parse(lg_thread *t, lg_conn *c)
{
    static _Thread_local rtok tk[TOKENS_MAX]; /* scratch per loadgen thread, reused per reply */
    size_t off = 0;
    for (;;) {
        unsigned nt = 0;
        long end = scan(c->in, c->in_len, off, tk, &nt, 0);
        if (end == 0)
            break;
        if (end < 0) {
            fprintf(stderr, "loadgen: garbled or oversized RESP reply\n");
            return -1;
        }
        lg_pending p;
        if (!lg_fifo_pop(c, &p)) {
            fprintf(stderr, "loadgen: RESP reply nobody asked for\n");
            return -1;
        }
        if (!handle(t, c, &p, tk, nt)) {
            fprintf(stderr, "loadgen: unexpected RESP reply (kind %u): %.*s\n", p.kind,
                    (int)(tk[0].len > 100 ? 100 : tk[0].len), (const char *)tk[0].s);
            return -1;
        }
        off = (size_t)end;
    }
    return (long)off;
}

const lg_driver lg_redis_list_driver = {
    .name = "redis-list",
    .in_order = true,
    .hello = rd_hello,
    .produce = rd_produce,
    .take = rd_take,
    .ack = rd_ack,
    .parse = rd_parse,
};

const lg_driver lg_redis_stream_driver = {
    .name = "redis-stream",
    .in_order = true,
    .hello = rd_hello,
    .produce = rd_produce,
    .take = rd_take,
    .ack = rd_ack,
    .parse = rd_parse,
};
