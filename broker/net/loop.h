/* The io_uring event loop: listeners, connections, their buffers, and fd readers (the
 * committer's eventfd, the signalfd).
 *
 * One thread. Each pass of lq_loop_run_once:
 *   1. starts at most one send per connection (everything queued since its last send goes out
 *      in one op), (re)arms reads, finishes closes;
 *   2. submits and waits up to timeout_ms for completions;
 *   3. dispatches every ready completion to the handlers (on_data parses and answers frames);
 *   4. runs on_close for connections closed during the pass.
 * The caller does its "before sleep" work between passes.
 *
 * A connection is named by an lq_conn_id (slot + generation); an id whose connection has been
 * closed is stale and every call taking it ignores it, so replies that complete after their
 * connection went away are dropped safely. Completions carry op kind + slot + generation in
 * user_data (never an fd), so a late completion for a reused slot is ignored too.
 */
#ifndef LQ_NET_LOOP_H
#define LQ_NET_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/lq_err.h"

typedef uint64_t lq_conn_id; /* slot | generation << 32; 0 is never a live id */

typedef struct {
    /* A connection was accepted. user: its zeroed user area (opts.user_size bytes). */
    void (*on_open)(void *ctx, lq_conn_id id, void *user);
    /* data[0..len) is all buffered input. Returns the bytes consumed (whole frames) and sets
     * *need to the size the next frame needs in total (its header says; 8 before that). The
     * loop grows the buffer to *need, which the handler has checked against the frame caps. */
    size_t (*on_data)(void *ctx, lq_conn_id id, void *user, const uint8_t *data, size_t len, size_t *need);
    /* The connection is gone for the handler (peer closed, error, or lq_loop_close): called
     * exactly once, outside on_data. Its id is stale from now on. */
    void (*on_close)(void *ctx, lq_conn_id id, void *user);
    /* Optional: the connection ran past its hello or frame timeout (what = "hello" or "frame").
     * The handler should answer and close it (lq_loop_close); if it leaves it open, or the
     * handler is NULL, the loop closes it. */
    void (*on_timeout)(void *ctx, lq_conn_id id, void *user, const char *what);
} lq_loop_handlers;

typedef struct {
    uint32_t max_connections;  /* accepted connections beyond this are closed at once */
    size_t user_size;          /* bytes of handler state per connection */
    size_t in_max;             /* input buffer cap: one largest frame */
    size_t out_max;            /* unsent output cap; beyond it the connection is dropped */
    size_t out_pause;          /* unsent output above which reading pauses (backpressure) */
    uint32_t linger_ms;        /* how long a closing connection may take to flush */
    /* Timeouts (0 = none), checked by a sweep every LQ_LOOP_SWEEP_MS, so they fire up to that
     * much late. */
    uint32_t hello_timeout_ms; /* until lq_loop_conn_ready is called for the connection */
    uint32_t frame_timeout_ms; /* a partial frame buffered and no byte received for this long */
    uint32_t send_timeout_ms;  /* unsent output and no byte of it sent for this long: the peer
                                * stopped reading; closed without flushing */
    /* Written (best effort, non-blocking) to a connection refused at max_connections before it
     * is closed, e.g. an error frame. Not owned; must outlive the loop. */
    const uint8_t *reject_bytes;
    size_t reject_len;
} lq_loop_opts;

#define LQ_LOOP_SWEEP_MS 250

typedef struct lq_loop lq_loop;

/* *out owned by the caller: lq_loop_destroy. */
lq_err lq_loop_create(const lq_loop_opts *opts, const lq_loop_handlers *h, void *ctx, lq_loop **out);
void lq_loop_destroy(lq_loop *l);
/* "SETUP_SINGLE_ISSUER|DEFER_TASKRUN" or what the kernel took. */
const char *lq_loop_setup_flags(const lq_loop *l);

/* Listens and starts accepting. bound gets the address actually bound (port 0 resolved). */
lq_err lq_loop_listen_tcp(lq_loop *l, const char *host_port, char *bound, size_t bound_cap);
/* Removes a stale socket file at path first; the file is removed again at destroy. */
lq_err lq_loop_listen_unix(lq_loop *l, const char *path);
/* Like lq_loop_listen_tcp; its connections carry `tag` (lq_loop_conn_tag), so one handler can
 * serve several protocols. Plain listeners have tag 0. */
lq_err lq_loop_listen_tcp_tag(lq_loop *l, const char *host_port, uint32_t tag, char *bound, size_t bound_cap);
uint32_t lq_loop_conn_tag(lq_loop *l, lq_conn_id id); /* 0 for a stale id */
/* Closes the listeners; already accepted connections stay. */
void lq_loop_stop_listening(lq_loop *l);

/* fd is read record_size bytes at a time (<= 128) through io_uring, re-armed after each
 * completion; fn gets the bytes and the result (bytes read or -errno). */
typedef void (*lq_loop_read_fn)(void *ctx, const void *data, int res);
lq_err lq_loop_add_reader(lq_loop *l, int fd, size_t record_size, lq_loop_read_fn fn, void *ctx);

lq_err lq_loop_run_once(lq_loop *l, int timeout_ms);

/* fn(ctx, true) runs right before a pass waits for completions and fn(ctx, false) right after,
 * with nothing of the loop's in between (no handler runs there): the window in which the
 * server lends its open batch to the committer. */
typedef void (*lq_loop_wait_fn)(void *ctx, bool before);
void lq_loop_set_wait_hook(lq_loop *l, lq_loop_wait_fn fn, void *ctx);

/* The handler area of a live connection, or NULL if id is stale or closing. */
void *lq_loop_user(lq_loop *l, lq_conn_id id);
/* The handler area until the connection is released (closing included), or NULL. */
void *lq_loop_user_any(lq_loop *l, lq_conn_id id);

/* Room for n bytes at the end of the connection's unsent output; the bytes written there go
 * out with lq_loop_out_commit. NULL if id is stale, or if the output would pass out_max (the
 * connection is then closed without flushing). */
uint8_t *lq_loop_out_reserve(lq_loop *l, lq_conn_id id, size_t n);
void lq_loop_out_commit(lq_loop *l, lq_conn_id id, size_t n);

/* Takes an already connected socket (e.g. one end of a socketpair, for tests) as a connection;
 * the loop owns fd from then on (also on failure: LQ_E_LIMIT, LQ_E_NOMEM, fd not closed then). */
lq_err lq_loop_adopt(lq_loop *l, int fd, lq_conn_id *id);

/* The connection passed its hello: the hello timeout no longer applies. */
void lq_loop_conn_ready(lq_loop *l, lq_conn_id id);

/* Stops (or resumes) reading from a connection, e.g. while it has too many replies waiting
 * on a commit. */
void lq_loop_pause(lq_loop *l, lq_conn_id id, bool paused);
/* Stops reading from every connection (shutdown). */
void lq_loop_stop_reading(lq_loop *l);

/* Closes the connection: on_close runs at the end of this pass. flush: send what is queued
 * first (bounded by linger_ms), e.g. an error frame. */
void lq_loop_close(lq_loop *l, lq_conn_id id, bool flush);
void lq_loop_close_all(lq_loop *l, bool flush);

uint32_t lq_loop_conn_count(const lq_loop *l); /* connections not yet fully released */
/* Bytes allocated for the connections' input and output buffers, all connections together. */
size_t lq_loop_buffer_bytes(const lq_loop *l);

/* The peer address of a connection ("HOST:PORT", "unix"), or "?" when id is stale or the
 * kernel will not say. For admin views: one getpeername per call. */
void lq_loop_peer(lq_loop *l, lq_conn_id id, char *out, size_t cap);

#endif
