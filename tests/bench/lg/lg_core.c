/* The load generator's protocol-neutral half: buffers, slots, pacing, timers, the epoll loop. */
#include "lg.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

_Atomic uint64_t lg_issued;
_Atomic int lg_stop;
_Atomic int lg_drained;
_Atomic uint64_t lg_frozen_ready_ns;
_Atomic uint64_t lg_rescued;
_Atomic int lg_probe_ok;
uint64_t lg_t_start_ns;
const lg_driver *lg_drv;

static _Atomic uint64_t g_frozen_held; /* redeliver: jobs the frozen worker holds */

uint64_t lg_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- output ----------------------------------------------------------------------------- */

bool lg_out_reserve(lg_conn *c, size_t more)
{
    if (c->out_off > 0 && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + more <= c->out_cap)
        return true;
    if (c->out_off > 0) { /* compact before growing */
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
        if (c->out_len + more <= c->out_cap)
            return true;
    }
    size_t cap = c->out_cap ? c->out_cap * 2 : 4096;
    while (cap < c->out_len + more)
        cap *= 2;
    if (cap > LG_OUT_CAP) {
        fprintf(stderr, "loadgen: output buffer would exceed %zu MiB\n", LG_OUT_CAP >> 20);
        return false;
    }
    uint8_t *p = realloc(c->out, cap); /* owner: conn */
    if (!p)
        return false;
    c->out = p;
    c->out_cap = cap;
    return true;
}

bool lg_out_append(lg_conn *c, const void *p, size_t n)
{
    if (!lg_out_reserve(c, n))
        return false;
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    return true;
}

bool lg_out_printf(lg_conn *c, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof buf)
        return false;
    return lg_out_append(c, buf, (size_t)n);
}

bool lg_out_payload(lg_thread *t, lg_conn *c, lg_class cls, uint64_t t_ns)
{
    uint32_t size = t->cfg->size;
    if (!lg_out_reserve(c, size))
        return false;
    uint8_t *p = c->out + c->out_len;
    uint64_t seq = (t->tid << 48) ^ ++t->seq;
    /* A window that moves by a prime per job: jobs up to 4 KiB never share bytes with the 255
     * before them; larger ones overlap, shifted, which a compressor that looks 8 KiB back (LZF, in
     * Redis's RDB) cannot use. */
    memcpy(p, t->payload + (t->seq * 4099u) % LG_FILLER_POOL, size);
    if (size >= LG_STAMP_BYTES) {
        memcpy(p, &t_ns, 8);
        p[8] = (uint8_t)cls;
        memcpy(p + 9, &seq, 7);
        for (unsigned i = 9; i < 16; i++) /* printable, so text protocols see no surprises */
            p[i] = (uint8_t)('a' + p[i] % 26);
    }
    if (size >= LG_STAMP_SENT_BYTES) {
        uint64_t sent = lg_now_ns();
        memcpy(p + 16, &sent, 8);
    }
    c->out_len += size;
    return true;
}

bool lg_fifo_push(lg_conn *c, unsigned slot, unsigned kind, unsigned sub)
{
    if (c->fifo_len == c->fifo_cap) {
        fprintf(stderr, "loadgen: too many requests in flight on one connection\n");
        return false;
    }
    c->fifo[(c->fifo_head + c->fifo_len++) % c->fifo_cap] =
        (lg_pending){.slot = slot, .kind = (uint16_t)kind, .sub = (uint16_t)sub};
    return true;
}

bool lg_fifo_pop(lg_conn *c, lg_pending *out)
{
    if (c->fifo_len == 0)
        return false;
    *out = c->fifo[c->fifo_head];
    c->fifo_head = (c->fifo_head + 1) % c->fifo_cap;
    c->fifo_len--;
    return true;
}

void lg_count_error(lg_thread *t, unsigned code, const char *what, size_t len)
{
    t->st.err_by_code[code < ERR_SLOTS - 1 ? code : ERR_SLOTS - 1]++;
    uint64_t n = 0;
    for (unsigned i = 0; i < ERR_SLOTS; i++)
        n += t->st.err_by_code[i];
    if (n == 1)
        fprintf(stderr, "loadgen: first error: %u %.*s\n", code, (int)(len > 200 ? 200 : len), what ? what : "");
}

static uint64_t total_errors(const lg_stats *st)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < ERR_SLOTS; i++)
        n += st->err_by_code[i];
    return n;
}

bool lg_handle_keep(lg_handle *h, const uint8_t *p, size_t n)
{
    if (n > h->val_cap) {
        uint8_t *v = realloc(h->val, n); /* owner: slot handle */
        if (!v)
            return false;
        h->val = v;
        h->val_cap = (uint32_t)n;
    }
    memcpy(h->val, p, n);
    h->val_len = (uint32_t)n;
    return true;
}

/* ---- slots ------------------------------------------------------------------------------ */

static bool timer_add(lg_thread *t, lg_conn *c, unsigned si, unsigned what, uint64_t due)
{
    if (t->t_len == t->t_cap)
        return false;
    t->timers[(t->t_head + t->t_len++) % t->t_cap] = (lg_timer){.c = c, .slot = si, .what = what, .due_ns = due};
    return true;
}

static bool send_take(lg_thread *t, lg_conn *c, unsigned si)
{
    lg_slot *s = &c->slots[si];
    s->busy = s->taking = true;
    s->n_jobs = s->sub = 0;
    s->t_sent_ns = lg_now_ns();
    t->st.requests++;
    return lg_drv->take(t, c, si);
}

static bool send_produce(lg_thread *t, lg_conn *c, unsigned si, unsigned n, uint64_t t_sched)
{
    lg_slot *s = &c->slots[si];
    s->busy = true;
    s->taking = false;
    s->t_sent_ns = t_sched;
    t->st.requests++;
    lg_class cls = t->cfg->mode == MODE_PRIO ? CLASS_API : t->cfg->cls;
    return lg_drv->produce(t, c, si, n, cls);
}

/* How many jobs the next enqueue may carry in count mode (0: the count is reached). */
static unsigned produce_quota(lg_thread *t)
{
    const lg_config *cfg = t->cfg;
    unsigned n = cfg->batch;
    if (cfg->count) {
        uint64_t before = atomic_fetch_add(&lg_issued, n);
        if (before >= cfg->count)
            return 0;
        if (before + n > cfg->count)
            n = (unsigned)(cfg->count - before);
    }
    return n;
}

/* Starts the next request of an idle slot, unless the run is stopping. */
static bool slot_next(lg_thread *t, lg_conn *c, unsigned si)
{
    const lg_config *cfg = t->cfg;
    lg_slot *s = &c->slots[si];
    s->busy = s->taking = false;
    if (atomic_load_explicit(&lg_stop, memory_order_relaxed))
        return true;
    switch (c->role) {
    case ROLE_PRODUCER: {
        if (cfg->rate > 0)
            return true; /* the pacer sends when the next one is due */
        unsigned n = produce_quota(t);
        return n == 0 || send_produce(t, c, si, n, lg_now_ns());
    }
    case ROLE_FROZEN:
        return send_take(t, c, si);
    case ROLE_RESCUER:
        if (atomic_load(&lg_frozen_ready_ns) == 0)
            return true; /* started by the loop once the frozen worker holds its jobs */
        return send_take(t, c, si);
    case ROLE_WORKER:
        if (cfg->count && cfg->mode != MODE_PROBE && atomic_load(&lg_issued) >= cfg->count)
            return true;
        return send_take(t, c, si);
    }
    return false;
}

bool lg_hello_done(lg_thread *t, lg_conn *c)
{
    c->hello_done = true;
    for (unsigned si = 0; si < t->cfg->depth; si++)
        if (!slot_next(t, c, si))
            return false;
    return true;
}

static bool too_many_errors(lg_thread *t)
{
    if (total_errors(&t->st) <= LG_ERRORS_MAX)
        return false;
    fprintf(stderr, "loadgen: too many errors, giving up\n");
    return true;
}

bool lg_enq_done(lg_thread *t, lg_conn *c, unsigned si, unsigned n_ok, bool failed)
{
    lg_slot *s = &c->slots[si];
    uint64_t now = lg_now_ns();
    if (!s->busy || s->pending == 0)
        return false;
    if (failed && too_many_errors(t))
        return false;
    /* The measured window ends at the stop: replies that trickle in afterwards (in-order
     * protocols queue them behind blocking takes) would stretch it and understate the rate. */
    if (!atomic_load_explicit(&lg_stop, memory_order_relaxed)) {
        t->st.enq_ok += n_ok;
        if (n_ok)
            t->st.t_last_ns = now;
    }
    if (--s->pending > 0)
        return true;
    hist_add(&t->st.lat[LAT_ENQ], now - s->t_sent_ns);
    return slot_next(t, c, si);
}

void lg_job_leased(lg_thread *t, lg_conn *c, unsigned si, const uint8_t *payload, size_t len)
{
    uint64_t now = lg_now_ns();
    if (c->role == ROLE_RESCUER) {
        uint64_t t0 = atomic_load(&lg_frozen_ready_ns);
        hist_add(&t->st.lat[LAT_REDELIVER], now - t0);
        if (!t->st.t_first_ns)
            t->st.t_first_ns = now;
        atomic_fetch_add(&lg_rescued, 1);
    }
    if (!payload || len < LG_STAMP_BYTES)
        return;
    uint64_t stamp;
    memcpy(&stamp, payload, 8);
    if (stamp == 0 || stamp > now)
        return;
    hist_add(&t->st.lat[LAT_WAIT], now - stamp);
    if (payload[8] == CLASS_API)
        hist_add(&t->st.lat[LAT_WAIT_API], now - stamp);
    uint64_t sent = 0;
    if (len >= LG_STAMP_SENT_BYTES)
        memcpy(&sent, payload + 16, 8);
    if (sent >= stamp && sent <= now)
        hist_add(&t->st.lat[LAT_WAIT_SENT], now - sent);
}

static bool send_acks(lg_thread *t, lg_conn *c, unsigned si)
{
    lg_slot *s = &c->slots[si];
    s->pending = s->n_jobs;
    for (unsigned i = 0; i < s->n_jobs; i++) {
        s->ack_sent_ns[i] = lg_now_ns();
        t->st.requests++;
        if (!lg_drv->ack(t, c, si, i))
            return false;
    }
    return true;
}

bool lg_take_done(lg_thread *t, lg_conn *c, unsigned si, unsigned n_jobs, bool failed)
{
    const lg_config *cfg = t->cfg;
    lg_slot *s = &c->slots[si];
    uint64_t now = lg_now_ns();
    if (!s->busy || !s->taking || n_jobs > cfg->max_jobs)
        return false;
    s->taking = false;
    hist_add(&t->st.lat[LAT_DEQ], now - s->t_sent_ns);
    if (failed && cfg->mode != MODE_PROBE && too_many_errors(t))
        return false;
    if (n_jobs == 0) {
        if (!failed)
            t->st.empty_takes++;
        if (cfg->mode == MODE_LEASE_ACK && !failed)
            atomic_store(&lg_drained, 1);
        /* Polling takes (probe retries, XAUTOCLAIM) wait before the next try. */
        unsigned poll = cfg->mode == MODE_PROBE ? 5 : c->role == ROLE_RESCUER ? cfg->poll_ms : 0;
        if (poll && !atomic_load(&lg_stop))
            return timer_add(t, c, si, LG_TIMER_TAKE, now + (uint64_t)poll * 1000000u);
        return slot_next(t, c, si);
    }
    s->n_jobs = n_jobs;
    t->st.leased += n_jobs;
    if (cfg->mode == MODE_PROBE) {
        atomic_store(&lg_probe_ok, 1);
        t->st.t_last_ns = now;
        s->busy = false; /* the job stays leased until the connection closes; the run stops */
        return true;
    }
    if (c->role == ROLE_FROZEN) {
        if (atomic_fetch_add(&g_frozen_held, n_jobs) + n_jobs >= cfg->count)
            atomic_store(&lg_frozen_ready_ns, now);
        return true; /* holds them, silent, until the end */
    }
    if (cfg->count && c->role == ROLE_WORKER)
        atomic_fetch_add(&lg_issued, n_jobs);
    if (cfg->work_ms) /* "processing": the acks go out work_ms later */
        return timer_add(t, c, si, LG_TIMER_ACK, now + (uint64_t)cfg->work_ms * 1000000u);
    return send_acks(t, c, si);
}

bool lg_ack_done(lg_thread *t, lg_conn *c, unsigned si, unsigned job_i, bool failed)
{
    lg_slot *s = &c->slots[si];
    uint64_t now = lg_now_ns();
    if (!s->busy || s->taking || job_i >= s->n_jobs || s->pending == 0)
        return false;
    hist_add(&t->st.lat[LAT_ACK], now - s->ack_sent_ns[job_i]);
    if (failed) {
        if (too_many_errors(t))
            return false;
    } else {
        hist_add(&t->st.lat[LAT_CYCLE], now - s->t_sent_ns);
        if (!atomic_load_explicit(&lg_stop, memory_order_relaxed)) { /* see lg_enq_done */
            t->st.ack_ok++;
            t->st.t_last_ns = now;
        }
    }
    if (--s->pending == 0)
        return slot_next(t, c, si);
    return true;
}

/* ---- I/O -------------------------------------------------------------------------------- */

bool lg_conn_flush(lg_thread *t, lg_conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        fprintf(stderr, "loadgen: send: %s\n", n == 0 ? "closed" : strerror(errno));
        return false;
    }
    bool want = c->out_off < c->out_len;
    if (c->paced_unsent > 0 && !want) {
        /* All written: every paced enqueue in it counts as late as the oldest one. */
        uint64_t now = lg_now_ns(), late = now > c->paced_since_ns ? now - c->paced_since_ns : 0;
        for (; c->paced_unsent > 0; c->paced_unsent--)
            hist_add(&t->st.lat[LAT_PACE], late);
    }
    if (want != c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
        epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = want;
    }
    return true;
}

static bool conn_read(lg_thread *t, lg_conn *c)
{
    for (;;) {
        if (c->in_len == c->in_cap) { /* a reply larger than the buffer: grow, up to the cap */
            size_t cap = c->in_cap * 2 > LG_IN_CAP ? LG_IN_CAP : c->in_cap * 2;
            if (cap == c->in_cap) {
                fprintf(stderr, "loadgen: reply larger than %zu bytes\n", LG_IN_CAP);
                return false;
            }
            uint8_t *p = realloc(c->in, cap); /* owner: conn */
            if (!p)
                return false;
            c->in = p;
            c->in_cap = cap;
        }
        size_t space = c->in_cap - c->in_len;
        ssize_t n = recv(c->fd, c->in + c->in_len, space, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
            long used = lg_drv->parse(t, c);
            if (used < 0)
                return false;
            if (used > 0) {
                memmove(c->in, c->in + used, c->in_len - (size_t)used);
                c->in_len -= (size_t)used;
            }
            if ((size_t)n < space)
                return true; /* most likely drained; epoll (level-triggered) tells us if not */
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        if (c->role == ROLE_FROZEN || atomic_load(&lg_stop))
            return true; /* a stalled session may be closed on; a stopping run does not care */
        fprintf(stderr, "loadgen: connection closed by the server (%s)\n", n == 0 ? "EOF" : strerror(errno));
        return false;
    }
}

/* Requests that still need an answer before the run may end: enqueues and acks. A take may be
 * parked for its whole wait (in-order protocols queue several), and a frozen worker's jobs are
 * never acked, so neither counts. */
static uint64_t outstanding(const lg_thread *t)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < t->n_conns; i++) {
        const lg_conn *c = &t->conns[i];
        if (c->role == ROLE_FROZEN || c->fd < 0)
            continue;
        for (unsigned s = 0; s < t->cfg->depth; s++)
            n += c->slots[s].busy && !c->slots[s].taking;
    }
    return n;
}

static void check_stop(lg_thread *t)
{
    const lg_config *cfg = t->cfg;
    if (atomic_load(&lg_stop))
        return;
    bool stop = atomic_load(&lg_drained) != 0 || atomic_load(&lg_probe_ok) != 0;
    if (cfg->mode == MODE_REDELIVER)
        stop |= atomic_load(&lg_rescued) >= cfg->count;
    else if (cfg->count && cfg->mode != MODE_PROBE)
        stop |= atomic_load(&lg_issued) >= cfg->count && t->st.enq_ok + t->st.ack_ok > 0 && outstanding(t) == 0;
    /* A count run has no time limit; a redeliver or probe run uses the duration as its limit. */
    bool timed = !cfg->count || cfg->mode == MODE_REDELIVER || cfg->mode == MODE_PROBE;
    if (timed && lg_now_ns() - lg_t_start_ns >= (uint64_t)(cfg->duration_s * 1e9))
        stop = true;
    if (stop)
        atomic_store(&lg_stop, 1);
}

/* Open loop: sends every enqueue that is due on a free producer slot. A send that finds no free
 * slot stays due; its latency still counts from the time it was due (no coordinated omission). */
static bool pace(lg_thread *t, uint64_t now)
{
    const lg_config *cfg = t->cfg;
    unsigned total = t->n_conns * cfg->depth;
    while (t->next_send_ns <= (double)now && !atomic_load(&lg_stop)) {
        unsigned found = total;
        for (unsigned k = 0; k < total; k++) {
            unsigned idx = (t->pace_cursor + k) % total;
            lg_conn *c = &t->conns[idx / cfg->depth];
            if (c->role == ROLE_PRODUCER && c->hello_done && !c->slots[idx % cfg->depth].busy) {
                found = idx;
                break;
            }
        }
        if (found == total) {
            t->st.late_sends++;
            return true;
        }
        t->pace_cursor = (found + 1) % total;
        unsigned n = produce_quota(t);
        if (n == 0)
            return true;
        lg_conn *c = &t->conns[found / cfg->depth];
        if (c->paced_unsent++ == 0)
            c->paced_since_ns = (uint64_t)t->next_send_ns;
        if (!send_produce(t, c, found % cfg->depth, n, (uint64_t)t->next_send_ns))
            return false;
        t->next_send_ns += t->interval_ns;
    }
    return true;
}

static bool run_timers(lg_thread *t, uint64_t now)
{
    while (t->t_len > 0 && t->timers[t->t_head].due_ns <= now) {
        lg_timer tm = t->timers[t->t_head];
        t->t_head = (t->t_head + 1) % t->t_cap;
        t->t_len--;
        bool ok = tm.what == LG_TIMER_ACK ? send_acks(t, tm.c, tm.slot) : slot_next(t, tm.c, tm.slot);
        if (!ok)
            return false;
    }
    return true;
}

static uint64_t next_wake_ns(lg_thread *t, uint64_t now)
{
    uint64_t wake = now + 20000000u;
    /* A due send waits for a free slot, and a slot frees only with a reply, which epoll reports:
     * no need to spin while late. */
    if (t->interval_ns > 0 && t->next_send_ns > (double)now && t->next_send_ns < (double)wake)
        wake = (uint64_t)t->next_send_ns;
    if (t->t_len > 0 && t->timers[t->t_head].due_ns < wake)
        wake = t->timers[t->t_head].due_ns > now ? t->timers[t->t_head].due_ns : now;
    return wake;
}

void *lg_thread_main(void *arg)
{
    lg_thread *t = arg;
    struct epoll_event evs[256];
    uint64_t drain_end = 0;
    bool rescuers_started = false;
    t->rc = 1;
    t->next_send_ns = (double)lg_now_ns();
    for (;;) {
        check_stop(t);
        uint64_t now = lg_now_ns();
        if (atomic_load(&lg_stop)) {
            /* In-order protocols queue acks behind blocking takes on the same connection (a
             * beanstalk reserve with a 1 s timeout holds up the delete after it): wait out one
             * take's timeout and a margin, then give up on the rest without failing the run. */
            uint64_t drain_ms = lg_drv->in_order ? 2u * t->cfg->wait_ms + 1000u : LG_DRAIN_MS;
            if (!drain_end)
                drain_end = now + drain_ms * 1000000u;
            if (outstanding(t) == 0 && (t->t_len == 0 || t->cfg->mode == MODE_PROBE)) {
                t->rc = 0;
                break;
            }
            if (now > drain_end) {
                fprintf(stderr, "loadgen: %llu replies still missing %llu ms after the stop%s\n",
                        (unsigned long long)outstanding(t), (unsigned long long)drain_ms,
                        lg_drv->in_order ? " (behind blocking takes; not counted)" : "");
                t->rc = lg_drv->in_order ? 0 : 1;
                break;
            }
        }
        /* What failed is named on the way out: most failing steps print nothing themselves. */
        const char *stage = "timers";
        bool fail = !run_timers(t, now);
        if (!fail && t->interval_ns > 0 && (stage = "pacer"))
            fail = !pace(t, now);
        if (!fail && !rescuers_started && atomic_load(&lg_frozen_ready_ns)) {
            rescuers_started = true;
            stage = "rescuer start";
            for (unsigned i = 0; i < t->n_conns && !fail; i++)
                if (t->conns[i].role == ROLE_RESCUER && t->conns[i].hello_done)
                    fail = !lg_hello_done(t, &t->conns[i]);
        }
        /* Requests queued by the timers, the pacer and the replies just handled go out together
         * (one send per connection), before the wait: a paced send left in the buffer would sit
         * there until the next wake, up to one send interval late. */
        for (unsigned i = 0; i < t->n_conns && !fail; i++)
            if (t->conns[i].out_off < t->conns[i].out_len && !t->conns[i].want_out && (stage = "send"))
                fail = !lg_conn_flush(t, &t->conns[i]);
        uint64_t wake = next_wake_ns(t, now);
        struct timespec ts = {.tv_sec = (time_t)((wake - now) / 1000000000u),
                              .tv_nsec = (long)((wake - now) % 1000000000u)};
        int n = fail ? 0 : epoll_pwait2(t->ep, evs, 256, &ts, NULL);
        if (n < 0 && errno != EINTR) {
            perror("epoll_pwait2");
            break;
        }
        const lg_conn *failed_conn = NULL;
        for (int i = 0; i < n && !fail; i++) {
            lg_conn *c = evs[i].data.ptr;
            if ((evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && (stage = "reply"))
                fail = !conn_read(t, c);
            if (!fail && (evs[i].events & EPOLLOUT) && (stage = "send"))
                fail = !lg_conn_flush(t, c);
            if (fail)
                failed_conn = c;
        }
        if (fail) {
            fprintf(stderr, "loadgen: thread %llu stops: %s failed%s (connection %d, role %d)\n",
                    (unsigned long long)t->tid, stage, atomic_load(&lg_stop) ? ", after the stop" : "",
                    failed_conn ? (int)failed_conn->index : -1, failed_conn ? (int)failed_conn->role : -1);
            atomic_store(&lg_stop, 1);
            break;
        }
    }
    return NULL;
}

/* ---- set-up ----------------------------------------------------------------------------- */

int lg_connect(const lg_config *cfg, int retry_ms)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int gai = getaddrinfo(cfg->host, cfg->port, &hints, &ai);
    if (gai != 0) {
        fprintf(stderr, "loadgen: %s:%s: %s\n", cfg->host, cfg->port, gai_strerror(gai));
        return -1;
    }
    int fd = -1;
    uint64_t give_up = lg_now_ns() + (uint64_t)retry_ms * 1000000u;
    for (;;) {
        for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
            fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
            if (fd < 0)
                continue;
            if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
                struct pollfd p = {.fd = fd, .events = POLLOUT};
                int err = errno == EINPROGRESS ? 0 : errno;
                socklen_t el = sizeof err;
                if (err == 0 && (poll(&p, 1, 5000) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0))
                    err = ETIMEDOUT;
                if (err != 0) {
                    close(fd);
                    fd = -1;
                    errno = err;
                }
            }
        }
        if (fd >= 0 || lg_now_ns() >= give_up)
            break;
        struct timespec nap = {.tv_nsec = 2000000};
        nanosleep(&nap, NULL); /* probe: the server is not listening yet */
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        fprintf(stderr, "loadgen: connect %s:%s: %s\n", cfg->host, cfg->port, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Buffers and slots of one connected connection; registers it with the thread's epoll. */
bool lg_conn_setup(lg_thread *t, lg_conn *c)
{
    const lg_config *cfg = t->cfg;
    size_t per = (size_t)cfg->depth * cfg->max_jobs;
    /* Small first buffers: 10,000 connections must not cost 10,000 x 128 KiB. */
    c->in_cap = cfg->conns > 1000 ? 4096 : 64 << 10;
    c->in = malloc(c->in_cap);                     /* owner: conn */
    c->slots = calloc(cfg->depth, sizeof *c->slots); /* owner: conn */
    c->ack_times = calloc(per, sizeof *c->ack_times); /* owner: conn */
    c->handles = calloc(per, sizeof *c->handles);     /* owner: conn */
    c->fifo_cap = (uint32_t)(cfg->depth * (cfg->max_jobs + 2) * (cfg->batch > 1 ? cfg->batch : 1) + 16);
    c->fifo = lg_drv->in_order ? calloc(c->fifo_cap, sizeof *c->fifo) : NULL; /* owner: conn */
    if (!c->in || !c->slots || !c->ack_times || !c->handles || (lg_drv->in_order && !c->fifo))
        return false;
    for (unsigned s = 0; s < cfg->depth; s++) {
        c->slots[s].ack_sent_ns = c->ack_times + (size_t)s * cfg->max_jobs;
        c->slots[s].h = c->handles + (size_t)s * cfg->max_jobs;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(t->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        return false;
    return lg_drv->hello(t, c);
}
