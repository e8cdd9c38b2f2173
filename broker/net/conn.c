/* Connections: input buffers and reads, output buffers and the one send in flight, closing. */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "core/lq_assert.h"
#include "log.h"
#include "loop_int.h"
#include "sock.h"

/* ---- connections ---------------------------------------------------------------------- */

struct conn *lqn_conn_get(const lq_loop *l, lq_conn_id id)
{
    uint32_t slot = (uint32_t)id, gen = (uint32_t)(id >> 32);
    if (slot >= l->opts.max_connections)
        return NULL;
    struct conn *c = l->conns[slot];
    if (c == NULL || c->gen != gen)
        return NULL;
    return c;
}

lq_conn_id lqn_conn_id(const struct conn *c)
{
    return (lq_conn_id)c->slot | (lq_conn_id)c->gen << 32;
}

void lqn_mark_dirty(lq_loop *l, struct conn *c)
{
    if (!c->dirty) {
        c->dirty = true;
        l->dirty[l->n_dirty++] = c->slot;
    }
}

static size_t out_backlog(const struct conn *c)
{
    return c->pend.len + (c->sending.len - c->send_off);
}

static void conn_release(lq_loop *l, struct conn *c)
{
    LQ_ASSERT(c->inflight == 0 && !c->notify_pending);
    close(c->fd);
    LQ_ASSERT(l->buf_bytes >= c->in_cap + c->pend.cap + c->sending.cap);
    l->buf_bytes -= c->in_cap + c->pend.cap + c->sending.cap;
    free(c->in);
    free(c->pend.p);
    free(c->sending.p);
    uint32_t slot = c->slot;
    /* The generation moves on, so ids and completions of this connection go stale. */
    l->gens[slot] = c->gen + 1 == 0 ? 1 : c->gen + 1;
    l->conns[slot] = NULL;
    l->free_slots[l->n_free++] = slot;
    l->n_conns--;
    l->accept_blocked = false;
    free(c);
}

/* Starts the close: the handler hears of it at the end of the pass. */
static void conn_begin_close(lq_loop *l, struct conn *c, bool flush)
{
    if (c->state != C_OPEN)
        return;
    c->state = C_CLOSING;
    c->close_flush = flush;
    c->notify_pending = true;
    c->linger_deadline_ns = lq_mono_ns() + (uint64_t)l->opts.linger_ms * 1000000u;
    l->n_lingering++;
    l->notify[l->n_notify++] = c->slot;
    lqn_mark_dirty(l, c);
}

/* Shuts the socket so every op in flight completes, then releases once they have. */
static void conn_kill(lq_loop *l, struct conn *c)
{
    if (c->state == C_DEAD)
        return;
    if (c->state == C_CLOSING)
        l->n_lingering--;
    c->state = C_DEAD;
    shutdown(c->fd, SHUT_RDWR);
    if (c->inflight > 0) {
        struct io_uring_sqe *s = lqn_sqe(l);
        io_uring_prep_cancel_fd(s, c->fd, IORING_ASYNC_CANCEL_ALL);
        io_uring_sqe_set_data64(s, UD(OP_CANCEL, c->slot, c->gen));
        c->inflight++;
    }
}

void lqn_notify_closes(lq_loop *l)
{
    /* on_close may close other connections (it never does today, but the list is re-read). */
    for (uint32_t i = 0; i < l->n_notify; i++) {
        struct conn *c = l->conns[l->notify[i]];
        if (c == NULL || !c->notify_pending)
            continue;
        c->notify_pending = false;
        l->h.on_close(l->ctx, lqn_conn_id(c), c->user);
        lqn_mark_dirty(l, c);
    }
    l->n_notify = 0;
}

static void submit_send(lq_loop *l, struct conn *c)
{
    struct io_uring_sqe *s = lqn_sqe(l);
    io_uring_prep_send(s, c->fd, c->sending.p + c->send_off, c->sending.len - c->send_off, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, UD(OP_SEND, c->slot, c->gen));
    c->send_armed = true;
    c->inflight++;
}

static bool want_read(const lq_loop *l, const struct conn *c)
{
    return c->state == C_OPEN && !c->recv_armed && !c->paused && !l->stop_reading &&
           out_backlog(c) < l->opts.out_pause;
}

static void conn_flush(lq_loop *l, struct conn *c, uint64_t now_ns)
{
    if (c->state == C_CLOSING) {
        bool more = c->close_flush && out_backlog(c) > 0 && now_ns < c->linger_deadline_ns;
        if (!more) {
            conn_kill(l, c);
        }
    }
    if (c->state == C_DEAD) {
        if (c->inflight == 0 && !c->notify_pending)
            conn_release(l, c);
        return;
    }
    if (!c->send_armed) {
        if (c->send_off < c->sending.len) {
            submit_send(l, c);
        } else if (c->pend.len > 0) {
            /* Everything queued since the last send goes out in one op. */
            struct obuf t = c->sending;
            c->sending = c->pend;
            c->pend = t;
            c->pend.len = 0;
            c->send_off = 0;
            submit_send(l, c);
        }
    }
    if (want_read(l, c)) {
        struct io_uring_sqe *s = lqn_sqe(l);
        io_uring_prep_recv(s, c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        io_uring_sqe_set_data64(s, UD(OP_RECV, c->slot, c->gen));
        c->recv_armed = true;
        c->inflight++;
    }
}

void lqn_flush_dirty(lq_loop *l)
{
    uint64_t now_ns = lq_mono_ns();
    if (l->n_lingering > 0) {
        /* Closing connections that cannot flush in time are killed at their deadline. */
        for (uint32_t s = 0; s < l->opts.max_connections && l->n_lingering > 0; s++) {
            struct conn *c = l->conns[s];
            if (c != NULL && c->state == C_CLOSING && now_ns >= c->linger_deadline_ns)
                lqn_mark_dirty(l, c);
        }
    }
    while (l->n_dirty > 0) {
        uint32_t n = l->n_dirty;
        uint32_t *work = l->dirty;
        l->dirty = l->dirty_work;
        l->dirty_work = work;
        l->n_dirty = 0;
        for (uint32_t i = 0; i < n; i++) {
            struct conn *c = l->conns[work[i]];
            if (c == NULL)
                continue;
            c->dirty = false;
            conn_flush(l, c, now_ns);
        }
    }
}

/* Resizes the input buffer (up or down); only while no receive is in flight into it. */
static bool grow_input(lq_loop *l, struct conn *c, size_t want)
{
    LQ_ASSERT(!c->recv_armed && want >= c->in_len);
    uint8_t *p = realloc(c->in, want); /* owner: conn */
    if (p == NULL)
        return false;
    l->buf_bytes = l->buf_bytes - c->in_cap + want;
    c->in = p;
    c->in_cap = want;
    return true;
}

static bool big_idle(const struct conn *c, uint64_t now_ns)
{
    return now_ns - c->big_ns >= (uint64_t)BUF_IDLE_MS * 1000000u;
}

/* An empty input buffer grown for a large frame goes back to its starting size. */
static void shrink_input_if_idle(lq_loop *l, struct conn *c, uint64_t now_ns)
{
    size_t cap = c->in_cap;
    if (c->in_len == 0 && cap > BUF_KEEP_BYTES && !c->recv_armed && big_idle(c, now_ns) &&
        grow_input(l, c, IN_INIT_BYTES))
        l->untrimmed += cap - IN_INIT_BYTES;
}

void lqn_on_recv(lq_loop *l, struct conn *c, int res)
{
    c->recv_armed = false;
    if (c->state != C_OPEN)
        return;
    if (res == 0) {
        LQ_LOGD("connection closed by the peer", "slot=%u in_len=%zu in_cap=%zu", c->slot, c->in_len, c->in_cap);
        conn_begin_close(l, c, true); /* the peer may have only shut its writing side */
        return;
    }
    if (res < 0) {
        if (res == -EINTR || res == -EAGAIN || res == -ENOBUFS || res == -ECANCELED) {
            /* -ECANCELED: the sweep took the receive back to shrink the buffer it pointed into
             * (an open connection's receive is cancelled for nothing else). */
            if (res == -ECANCELED)
                shrink_input_if_idle(l, c, lq_mono_ns());
            lqn_mark_dirty(l, c);
        } else {
            LQ_LOGD("closing connection: recv failed", "slot=%u error=\"%s\"", c->slot, strerror(-res));
            conn_begin_close(l, c, false);
        }
        return;
    }
    /* A receive that filled all the room there was says more may be waiting: the buffer
     * doubles (up to IN_GROW_BYTES), whether or not the handler consumed it all. */
    bool filled = (size_t)res == c->in_cap - c->in_len;
    c->in_len += (size_t)res;
    c->last_recv_ns = lq_mono_ns();
    if (c->in_len > BUF_KEEP_BYTES)
        c->big_ns = c->last_recv_ns;
    size_t need = 0;
    size_t used = l->h.on_data(l->ctx, lqn_conn_id(c), c->user, c->in, c->in_len, &need);
    if (c->state != C_OPEN)
        return;
    if (need > BUF_KEEP_BYTES)
        c->big_ns = c->last_recv_ns;
    LQ_ASSERT(used <= c->in_len);
    if (used > 0) {
        c->in_len -= used;
        if (c->in_len > 0)
            memmove(c->in, c->in + used, c->in_len);
    }
    bool ok = true;
    if (need > l->opts.in_max) {
        ok = false; /* the handler checks the caps first; this is a second fence */
    } else if (need > c->in_cap) {
        ok = grow_input(l, c, need);
    } else if (c->in_len == c->in_cap) {
        size_t want = c->in_cap * 2 < l->opts.in_max ? c->in_cap * 2 : l->opts.in_max;
        ok = want > c->in_cap && grow_input(l, c, want);
    } else if (filled && c->in_cap < IN_GROW_BYTES && c->in_cap * 2 <= l->opts.in_max) {
        (void)grow_input(l, c, c->in_cap * 2); /* a guess: without it the connection still works */
    } else if (c->in_len == 0 && c->in_cap > IN_SHRINK_BYTES) {
        ok = grow_input(l, c, IN_INIT_BYTES);
    } else {
        shrink_input_if_idle(l, c, c->last_recv_ns); /* small frames since the large one */
    }
    if (!ok) {
        LQ_LOGW("closing connection: input buffer", "need=%zu cap=%zu", need, c->in_cap);
        conn_begin_close(l, c, false);
        return;
    }
    lqn_mark_dirty(l, c);
}

/* Frees an empty output buffer (the next reply starts a new one at OUT_INIT_BYTES). */
static void drop_obuf(lq_loop *l, struct obuf *b)
{
    LQ_ASSERT(b->len == 0 && l->buf_bytes >= b->cap);
    l->buf_bytes -= b->cap;
    l->untrimmed += b->cap;
    free(b->p);
    b->p = NULL;
    b->cap = 0;
}

void lqn_on_send(lq_loop *l, struct conn *c, int res)
{
    c->send_armed = false;
    if (c->state == C_DEAD)
        return;
    if (res < 0) {
        if (res == -EINTR || res == -EAGAIN) {
            lqn_mark_dirty(l, c);
            return;
        }
        LQ_LOGD("closing connection: send failed", "slot=%u error=\"%s\"", c->slot, strerror(-res));
        if (c->state == C_OPEN) {
            conn_begin_close(l, c, false);
        } else {
            conn_kill(l, c);
        }
        return;
    }
    c->send_off += (size_t)res;
    if (res > 0)
        c->out_since_ns = lq_mono_ns();
    if (c->send_off >= c->sending.len) {
        c->sending.len = 0;
        c->send_off = 0;
        if (c->sending.cap > OUT_SHRINK_BYTES)
            drop_obuf(l, &c->sending);
    }
    lqn_mark_dirty(l, c);
}

/* ---- public ----------------------------------------------------------------------------- */

void *lq_loop_user(lq_loop *l, lq_conn_id id)
{
    struct conn *c = lqn_conn_get(l, id);
    return c != NULL && c->state == C_OPEN ? c->user : NULL;
}

void lq_loop_peer(lq_loop *l, lq_conn_id id, char *out, size_t cap)
{
    struct conn *c = lqn_conn_get(l, id);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (c == NULL || c->fd < 0 || getpeername(c->fd, (struct sockaddr *)&ss, &sl) != 0) {
        snprintf(out, cap, "?");
        return;
    }
    lq_sock_format_addr((struct sockaddr *)&ss, out, cap);
}

void *lq_loop_user_any(lq_loop *l, lq_conn_id id)
{
    struct conn *c = lqn_conn_get(l, id);
    return c != NULL ? c->user : NULL;
}

uint8_t *lq_loop_out_reserve(lq_loop *l, lq_conn_id id, size_t n)
{
    struct conn *c = lqn_conn_get(l, id);
    if (c == NULL || c->state != C_OPEN)
        return NULL;
    if (out_backlog(c) + n > l->opts.out_max) {
        LQ_LOGW("closing connection: unsent output over the cap", "backlog=%zu add=%zu cap=%zu",
                out_backlog(c), n, l->opts.out_max);
        conn_begin_close(l, c, false);
        return NULL;
    }
    struct obuf *b = &c->pend;
    if (b->len + n > BUF_KEEP_BYTES)
        c->big_ns = lq_mono_ns();
    if (b->cap - b->len < n) {
        size_t want = b->cap ? b->cap : OUT_INIT_BYTES;
        while (want - b->len < n)
            want *= 2;
        uint8_t *p = realloc(b->p, want); /* owner: conn */
        if (p == NULL) {
            LQ_LOGE("closing connection: out of memory for output", "want=%zu", want);
            conn_begin_close(l, c, false);
            return NULL;
        }
        l->buf_bytes = l->buf_bytes - b->cap + want;
        b->p = p;
        b->cap = want;
    }
    return b->p + b->len;
}

void lq_loop_out_commit(lq_loop *l, lq_conn_id id, size_t n)
{
    struct conn *c = lqn_conn_get(l, id);
    if (c == NULL || c->state != C_OPEN)
        return;
    LQ_ASSERT(c->pend.cap - c->pend.len >= n);
    if (out_backlog(c) == 0)
        c->out_since_ns = lq_mono_ns();
    c->pend.len += n;
    lqn_mark_dirty(l, c);
}

void lq_loop_conn_ready(lq_loop *l, lq_conn_id id)
{
    struct conn *c = lqn_conn_get(l, id);
    if (c != NULL)
        c->ready = true;
}

static void timed_out(lq_loop *l, struct conn *c, const char *what)
{
    l->timed_out++;
    uint64_t now = lq_mono_ns();
    if (now - l->timed_out_logged_ns > 10000000000ull) {
        LQ_LOGI("closing connections past their timeouts", "last=%s slot=%u closed_total=%llu", what, c->slot,
                (unsigned long long)l->timed_out);
        l->timed_out_logged_ns = now;
    }
    if (strcmp(what, "send") != 0 && l->h.on_timeout != NULL)
        l->h.on_timeout(l->ctx, lqn_conn_id(c), c->user, what);
    conn_begin_close(l, c, strcmp(what, "send") != 0); /* no-op if the handler closed it */
}

/* One pass over the connections (every LQ_LOOP_SWEEP_MS): O(max_connections), a few hundred
 * microseconds at 100k slots, and no per-connection timer to keep current on every byte. */
void lqn_sweep_timeouts(lq_loop *l, uint64_t now_ns)
{
    const lq_loop_opts *o = &l->opts;
    uint64_t hello = (uint64_t)o->hello_timeout_ms * 1000000u, frame = (uint64_t)o->frame_timeout_ms * 1000000u,
             send = (uint64_t)o->send_timeout_ms * 1000000u;
    if (hello == 0 && frame == 0 && send == 0)
        return;
    for (uint32_t s = 0, seen = 0; s < o->max_connections && seen < l->n_conns; s++) {
        struct conn *c = l->conns[s];
        if (c == NULL)
            continue;
        seen++;
        if (c->state != C_OPEN)
            continue;
        /* While the loop itself does not read (backpressure), the peer is not the one stalling. */
        if (c->paused || l->stop_reading || out_backlog(c) >= o->out_pause)
            c->last_recv_ns = now_ns;
        if (hello && !c->ready && now_ns - c->opened_ns > hello)
            timed_out(l, c, "hello");
        else if (frame && c->in_len > 0 && now_ns - c->last_recv_ns > frame)
            timed_out(l, c, "frame");
        else if (send && out_backlog(c) > 0 && now_ns - c->out_since_ns > send)
            timed_out(l, c, "send");
    }
}

/* Every LQ_LOOP_SWEEP_MS, like the timeouts: buffers grown for large frames go back to their
 * starting size once the connection has not needed them for BUF_IDLE_MS. An input buffer with a
 * receive armed into it is shrunk when that receive comes back cancelled (lqn_on_recv). */
void lqn_sweep_buffers(lq_loop *l, uint64_t now_ns)
{
    for (uint32_t s = 0, seen = 0; s < l->opts.max_connections && seen < l->n_conns; s++) {
        struct conn *c = l->conns[s];
        if (c == NULL)
            continue;
        seen++;
        if (c->state != C_OPEN || !big_idle(c, now_ns))
            continue;
        if (c->pend.len == 0 && c->pend.cap > BUF_KEEP_BYTES)
            drop_obuf(l, &c->pend);
        if (!c->send_armed && c->sending.len == 0 && c->sending.cap > BUF_KEEP_BYTES)
            drop_obuf(l, &c->sending);
        /* Not while the loop has stopped reading (shutting down): a cancelled receive would not
         * be armed again, and the peer's close would go unseen. */
        if (c->in_len == 0 && c->in_cap > BUF_KEEP_BYTES && !l->stop_reading) {
            if (!c->recv_armed) {
                shrink_input_if_idle(l, c, now_ns);
            } else if (!c->shrink_cancel) {
                struct io_uring_sqe *sq = lqn_sqe(l);
                io_uring_prep_cancel64(sq, UD(OP_RECV, c->slot, c->gen), 0);
                io_uring_sqe_set_data64(sq, UD(OP_CANCEL, c->slot, c->gen));
                c->shrink_cancel = true;
                c->inflight++;
            }
        }
    }
    /* free() keeps what it can reuse; the buffers freed here (and the inputs shrunk since, when
     * their cancelled receives came back) go back to the system. */
    if (l->untrimmed >= TRIM_BYTES && now_ns - l->trimmed_ns >= (uint64_t)TRIM_EVERY_MS * 1000000u) {
        (void)malloc_trim(0);
        l->untrimmed = 0;
        l->trimmed_ns = now_ns;
    }
}

void lq_loop_pause(lq_loop *l, lq_conn_id id, bool paused)
{
    struct conn *c = lqn_conn_get(l, id);
    if (c == NULL || c->paused == paused)
        return;
    c->paused = paused;
    lqn_mark_dirty(l, c);
}

void lq_loop_stop_reading(lq_loop *l)
{
    l->stop_reading = true;
}

void lq_loop_close(lq_loop *l, lq_conn_id id, bool flush)
{
    struct conn *c = lqn_conn_get(l, id);
    if (c != NULL)
        conn_begin_close(l, c, flush);
}

void lq_loop_close_all(lq_loop *l, bool flush)
{
    for (uint32_t s = 0; s < l->opts.max_connections; s++) {
        struct conn *c = l->conns[s];
        if (c != NULL)
            conn_begin_close(l, c, flush);
    }
}

uint32_t lq_loop_conn_count(const lq_loop *l)
{
    return l->n_conns;
}

size_t lq_loop_buffer_bytes(const lq_loop *l)
{
    return l->buf_bytes;
}
