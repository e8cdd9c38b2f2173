#include "loop.h"

#include <errno.h>
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

/* ---- submission ----------------------------------------------------------------------- */

struct io_uring_sqe *lqn_sqe(lq_loop *l)
{
    for (int i = 0; i < SQE_RETRIES; i++) {
        struct io_uring_sqe *s = io_uring_get_sqe(&l->ring);
        if (s != NULL)
            return s;
        /* SQ full: hand what is queued to the kernel, then there is room again. */
        io_uring_submit(&l->ring);
    }
    lq_assert_fail("io_uring submission queue stays full", __FILE__, __LINE__);
}

static void arm_accept(lq_loop *l, uint32_t i)
{
    struct listener *ls = &l->listeners[i];
    struct io_uring_sqe *s = lqn_sqe(l);
    io_uring_prep_multishot_accept(s, ls->fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(s, UD(OP_ACCEPT, i, 1));
    ls->armed = true;
}

static void arm_reader(lq_loop *l, uint32_t i)
{
    struct reader *r = &l->readers[i];
    struct io_uring_sqe *s = lqn_sqe(l);
    io_uring_prep_read(s, r->fd, r->buf, (unsigned)r->size, 0);
    io_uring_sqe_set_data64(s, UD(OP_READ, i, 1));
}

/* ---- completions ---------------------------------------------------------------------- */

/* Takes fd as a new connection (needs a free slot). */
static lq_err conn_add(lq_loop *l, int fd, uint32_t tag, lq_conn_id *id)
{
    if (l->n_free == 0)
        return LQ_E_LIMIT;
    struct conn *c = calloc(1, sizeof *c + l->opts.user_size); /* owner: loop, conn_release */
    uint8_t *in = malloc(IN_INIT_BYTES);                       /* owner: conn */
    if (c == NULL || in == NULL) {
        free(c);
        free(in);
        return LQ_E_NOMEM;
    }
    uint32_t slot = l->free_slots[--l->n_free];
    c->fd = fd;
    c->slot = slot;
    c->gen = l->gens[slot];
    c->state = C_OPEN;
    c->in = in;
    c->in_cap = IN_INIT_BYTES;
    l->buf_bytes += IN_INIT_BYTES;
    c->tag = tag;
    c->opened_ns = c->last_recv_ns = lq_mono_ns();
    l->conns[slot] = c;
    l->n_conns++;
    *id = lqn_conn_id(c);
    l->h.on_open(l->ctx, *id, c->user);
    lqn_mark_dirty(l, c);
    return LQ_OK;
}

lq_err lq_loop_adopt(lq_loop *l, int fd, lq_conn_id *id)
{
    return conn_add(l, fd, 0, id);
}

static void on_accept(lq_loop *l, uint32_t li, const struct io_uring_cqe *cqe)
{
    struct listener *ls = &l->listeners[li];
    if (!(cqe->flags & IORING_CQE_F_MORE))
        ls->armed = false;
    if (cqe->res < 0) {
        if (cqe->res == -EMFILE || cqe->res == -ENFILE) {
            /* Re-arming now would fail at once, forever: wait until a connection goes. */
            l->accept_blocked = true;
            LQ_LOGW("accept failed: out of file descriptors", "connections=%u", l->n_conns);
        } else if (cqe->res != -ECANCELED) {
            LQ_LOGW("accept failed", "error=\"%s\"", strerror(-cqe->res));
        }
        return;
    }
    int fd = cqe->res;
    if (!l->listening) {
        close(fd);
        return;
    }
    if (l->n_free == 0) {
        if (l->opts.reject_len > 0 && ls->tag == 0) /* best effort: room for one small frame */
            (void)!send(fd, l->opts.reject_bytes, l->opts.reject_len, MSG_DONTWAIT | MSG_NOSIGNAL);
        close(fd);
        l->rejected++;
        uint64_t now = lq_mono_ns();
        if (now - l->rejected_logged_ns > 10000000000ull) {
            LQ_LOGW("connection limit reached, refusing connections", "max_connections=%u refused_total=%llu",
                    l->opts.max_connections, (unsigned long long)l->rejected);
            l->rejected_logged_ns = now;
        }
        return;
    }
    if (!ls->is_unix)
        lq_sock_tune_accepted(fd);
    lq_conn_id id;
    if (conn_add(l, fd, ls->tag, &id) != LQ_OK) {
        close(fd);
        LQ_LOGE("out of memory accepting a connection", "connections=%u", l->n_conns);
    }
}

static void on_reader(lq_loop *l, uint32_t i, int res)
{
    struct reader *r = &l->readers[i];
    r->fn(r->ctx, r->buf, res);
    if (res >= 0 || res == -EINTR || res == -EAGAIN)
        arm_reader(l, i);
    else
        LQ_LOGE("reader stopped", "fd=%d error=\"%s\"", r->fd, strerror(-res));
}

static void dispatch(lq_loop *l, const struct io_uring_cqe *cqe)
{
    uint64_t ud = cqe->user_data;
    unsigned op = UD_OP(ud);
    uint32_t slot = UD_SLOT(ud);
    if (op == OP_ACCEPT) {
        if (slot < l->n_listeners)
            on_accept(l, slot, cqe);
        return;
    }
    if (op == OP_READ) {
        if (slot < l->n_readers)
            on_reader(l, slot, cqe->res);
        return;
    }
    if (slot >= l->opts.max_connections)
        return;
    struct conn *c = l->conns[slot];
    if (c == NULL || c->gen != UD_GEN(ud))
        return; /* late completion of a released slot */
    LQ_ASSERT(c->inflight > 0);
    c->inflight--;
    if (op == OP_CANCEL)
        c->shrink_cancel = false;
    if (op == OP_RECV)
        lqn_on_recv(l, c, cqe->res);
    else if (op == OP_SEND)
        lqn_on_send(l, c, cqe->res);
    if (c->state == C_DEAD)
        lqn_mark_dirty(l, c); /* maybe the last op: release it */
}

/* ---- public --------------------------------------------------------------------------- */

static unsigned round_pow2(unsigned v)
{
    unsigned p = 1;
    while (p < v)
        p <<= 1;
    return p;
}

static int ring_init(lq_loop *l)
{
    unsigned cq = round_pow2(l->opts.max_connections * 4u < SQ_ENTRIES * 2 ? SQ_ENTRIES * 2
                                                                          : l->opts.max_connections * 4u);
    if (cq > CQ_ENTRIES_MAX)
        cq = CQ_ENTRIES_MAX;
    static const struct {
        unsigned flags;
        const char *name;
    } tries[] = {
#if defined(IORING_SETUP_SINGLE_ISSUER) && defined(IORING_SETUP_DEFER_TASKRUN)
        {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, "SINGLE_ISSUER|DEFER_TASKRUN"},
#endif
#ifdef IORING_SETUP_COOP_TASKRUN
        {IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN"},
#endif
        {0, "none"},
    };
    int ret = -EINVAL;
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = tries[i].flags | IORING_SETUP_CQSIZE;
        p.cq_entries = cq;
        ret = io_uring_queue_init_params(SQ_ENTRIES, &l->ring, &p);
        if (ret == 0) {
            l->setup_flags = tries[i].name;
            return 0;
        }
    }
    return ret;
}

lq_err lq_loop_create(const lq_loop_opts *opts, const lq_loop_handlers *h, void *ctx, lq_loop **out)
{
    *out = NULL;
    LQ_ASSERT(opts->max_connections > 0 && opts->max_connections <= (1u << 24));
    lq_loop *l = calloc(1, sizeof *l); /* owner: caller, lq_loop_destroy */
    if (l == NULL)
        return LQ_E_NOMEM;
    l->opts = *opts;
    l->h = *h;
    l->ctx = ctx;
    uint32_t n = opts->max_connections;
    l->conns = calloc(n, sizeof *l->conns);
    l->gens = malloc(n * sizeof *l->gens);
    l->free_slots = malloc(n * sizeof *l->free_slots);
    l->dirty = malloc(n * sizeof *l->dirty);
    l->dirty_work = malloc(n * sizeof *l->dirty_work);
    l->notify = malloc(n * sizeof *l->notify);
    if (l->conns == NULL || l->gens == NULL || l->free_slots == NULL || l->dirty == NULL ||
        l->dirty_work == NULL || l->notify == NULL) {
        lq_loop_destroy(l);
        return LQ_E_NOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        l->gens[i] = 1;
        l->free_slots[i] = n - 1 - i; /* low slots first */
    }
    l->n_free = n;
    int ret = ring_init(l);
    if (ret < 0) {
        LQ_LOGE("io_uring setup failed", "error=\"%s\"", strerror(-ret));
        lq_loop_destroy(l);
        return LQ_E_IO;
    }
    l->ring_ok = true;
    l->listening = true;
    *out = l;
    return LQ_OK;
}

void lq_loop_destroy(lq_loop *l)
{
    if (l == NULL)
        return;
    if (l->ring_ok)
        io_uring_queue_exit(&l->ring); /* cancels whatever is still in flight */
    if (l->conns != NULL) {
        for (uint32_t s = 0; s < l->opts.max_connections; s++) {
            struct conn *c = l->conns[s];
            if (c == NULL)
                continue;
            close(c->fd);
            free(c->in);
            free(c->pend.p);
            free(c->sending.p);
            free(c);
        }
    }
    for (uint32_t i = 0; i < l->n_listeners; i++) {
        if (l->listeners[i].fd >= 0)
            close(l->listeners[i].fd);
        if (l->listeners[i].is_unix)
            unlink(l->listeners[i].path);
    }
    free(l->conns);
    free(l->gens);
    free(l->free_slots);
    free(l->dirty);
    free(l->dirty_work);
    free(l->notify);
    free(l);
}

const char *lq_loop_setup_flags(const lq_loop *l)
{
    return l->setup_flags;
}

static lq_err add_listener(lq_loop *l, int fd, const char *unix_path)
{
    if (l->n_listeners == LISTENERS_MAX) {
        close(fd);
        return LQ_E_LIMIT;
    }
    struct listener *ls = &l->listeners[l->n_listeners];
    ls->fd = fd;
    ls->is_unix = unix_path != NULL;
    if (unix_path != NULL)
        snprintf(ls->path, sizeof ls->path, "%s", unix_path);
    arm_accept(l, l->n_listeners);
    l->n_listeners++;
    return LQ_OK;
}

lq_err lq_loop_listen_tcp(lq_loop *l, const char *host_port, char *bound, size_t bound_cap)
{
    int fd = -1;
    lq_err e = lq_sock_listen_tcp(host_port, &fd, bound, bound_cap);
    return e != LQ_OK ? e : add_listener(l, fd, NULL);
}

lq_err lq_loop_listen_tcp_tag(lq_loop *l, const char *host_port, uint32_t tag, char *bound, size_t bound_cap)
{
    uint32_t i = l->n_listeners;
    lq_err e = lq_loop_listen_tcp(l, host_port, bound, bound_cap);
    if (e == LQ_OK)
        l->listeners[i].tag = tag;
    return e;
}

uint32_t lq_loop_conn_tag(lq_loop *l, lq_conn_id id)
{
    struct conn *c = lqn_conn_get(l, id);
    return c != NULL ? c->tag : 0;
}

lq_err lq_loop_listen_unix(lq_loop *l, const char *path)
{
    int fd = -1;
    lq_err e = lq_sock_listen_unix(path, &fd);
    return e != LQ_OK ? e : add_listener(l, fd, path);
}

void lq_loop_stop_listening(lq_loop *l)
{
    l->listening = false;
    for (uint32_t i = 0; i < l->n_listeners; i++) {
        struct listener *ls = &l->listeners[i];
        if (ls->fd < 0)
            continue;
        if (ls->armed) {
            struct io_uring_sqe *s = lqn_sqe(l);
            io_uring_prep_cancel64(s, UD(OP_ACCEPT, i, 1), 0);
            io_uring_sqe_set_data64(s, UD(OP_CANCEL, 0xffffff, 0));
        }
        /* The accept op holds its own file reference, so closing here is safe. */
        close(ls->fd);
        ls->fd = -1;
    }
}

lq_err lq_loop_add_reader(lq_loop *l, int fd, size_t record_size, lq_loop_read_fn fn, void *ctx)
{
    if (l->n_readers == READERS_MAX || record_size > READER_RECORD_MAX)
        return LQ_E_LIMIT;
    struct reader *r = &l->readers[l->n_readers];
    r->fd = fd;
    r->size = record_size;
    r->fn = fn;
    r->ctx = ctx;
    arm_reader(l, l->n_readers);
    l->n_readers++;
    return LQ_OK;
}

void lq_loop_set_wait_hook(lq_loop *l, lq_loop_wait_fn fn, void *ctx)
{
    l->wait_fn = fn;
    l->wait_ctx = ctx;
}

lq_err lq_loop_run_once(lq_loop *l, int timeout_ms)
{
    /* Closes requested outside a pass (e.g. an output cap hit while answering) are told now;
     * the caller must then get a turn before sleeping, so the wait is skipped. */
    if (l->n_notify > 0) {
        lqn_notify_closes(l);
        timeout_ms = 0;
    }
    if (l->listening) {
        for (uint32_t i = 0; i < l->n_listeners; i++) {
            if (!l->listeners[i].armed && l->listeners[i].fd >= 0 && !l->accept_blocked)
                arm_accept(l, i);
        }
    }
    uint64_t now_ns = lq_mono_ns();
    if (now_ns - l->last_sweep_ns >= (uint64_t)LQ_LOOP_SWEEP_MS * 1000000u) {
        l->last_sweep_ns = now_ns;
        lqn_sweep_timeouts(l, now_ns);
        lqn_sweep_buffers(l, now_ns);
        if (l->n_notify > 0) {
            lqn_notify_closes(l);
            timeout_ms = 0;
        }
    }
    lqn_flush_dirty(l);
    if (l->n_lingering > 0 && (timeout_ms < 0 || timeout_ms > 50))
        timeout_ms = 50;
    /* the sweep must get its turn while connections are open */
    if (l->n_conns > 0 && (timeout_ms < 0 || timeout_ms > (int)LQ_LOOP_SWEEP_MS))
        timeout_ms = (int)LQ_LOOP_SWEEP_MS;
    if (timeout_ms < 0)
        timeout_ms = 0;
    struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000, .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
    struct io_uring_cqe *first = NULL;
    if (l->wait_fn != NULL)
        l->wait_fn(l->wait_ctx, true);
    int ret = io_uring_submit_and_wait_timeout(&l->ring, &first, 1, &ts, NULL);
    if (l->wait_fn != NULL)
        l->wait_fn(l->wait_ctx, false);
    if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
        LQ_LOGE("io_uring wait failed", "error=\"%s\"", strerror(-ret));
        return LQ_E_IO;
    }
    struct io_uring_cqe *batch[CQE_BATCH];
    for (;;) {
        unsigned n = io_uring_peek_batch_cqe(&l->ring, batch, CQE_BATCH);
        if (n == 0)
            break;
        /* Copied out before the handlers run: they submit, and may fill the SQ. */
        struct io_uring_cqe copy[CQE_BATCH];
        for (unsigned i = 0; i < n; i++)
            copy[i] = *batch[i];
        io_uring_cq_advance(&l->ring, n);
        for (unsigned i = 0; i < n; i++)
            dispatch(l, &copy[i]);
        if (n < CQE_BATCH)
            break;
    }
    lqn_notify_closes(l);
    return LQ_OK;
}

