/* Internals shared by the loop's two halves: loop.c (the ring, completions, listeners,
 * readers) and conn.c (connection buffers, sends, reads, closes). Nothing outside net/ includes
 * this. */
#ifndef LQ_NET_LOOP_INT_H
#define LQ_NET_LOOP_INT_H

#include <liburing.h>
#include <stddef.h>

#include "loop.h"

/* A connection's buffers start small and double as its traffic needs: 10,000 mostly idle
 * connections cost 1.5 KiB each with 512 bytes, 9.2 KiB with 16 KiB (the touched pages). The
 * input doubles when a receive fills it (up to IN_GROW_BYTES; beyond, only for a frame that needs
 * more), the output when a reply does not fit (docs/PERFORMANCE.md). */
#define IN_INIT_BYTES 512u
#define IN_GROW_BYTES (16u << 10) /* the old fixed size: this rule never holds more than it did */
#define IN_SHRINK_BYTES (1u << 20)   /* an idle input buffer above this goes back to IN_INIT */
#define OUT_INIT_BYTES 512u
#define OUT_SHRINK_BYTES (1u << 20)
/* A buffer grown past BUF_KEEP_BYTES for a large frame (an image job: hundreds of KiB) goes back
 * to its starting size once the connection has not needed more for BUF_IDLE_MS: otherwise every
 * producer that once sent, and every worker that once took, a large job would hold up to 1 MiB
 * per buffer for as long as it stays connected. */
#define BUF_KEEP_BYTES (16u << 10)
#define BUF_IDLE_MS 1000u
#define TRIM_BYTES (256u << 10) /* freed since the last malloc_trim before the next one */
#define TRIM_EVERY_MS 1000u     /* and at most this often: it walks the heap on the loop thread */
#define SQ_ENTRIES 4096u
#define CQ_ENTRIES_MAX 65536u
#define LISTENERS_MAX 4 /* native TCP, Unix, HTTP, one more protocol */
#define READERS_MAX 4
#define READER_RECORD_MAX 128
#define CQE_BATCH 256
#define SQE_RETRIES 64

/* user_data: op (8 bits) | slot (24 bits) | generation (32 bits). Never an fd or a pointer,
 * so a completion that arrives after its connection was released is recognised and ignored. */
enum { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_READ, OP_CANCEL };
#define UD(op, slot, gen) ((uint64_t)(op) | (uint64_t)(slot) << 8 | (uint64_t)(gen) << 32)
#define UD_OP(ud) ((unsigned)((ud) & 0xff))
#define UD_SLOT(ud) ((uint32_t)(((ud) >> 8) & 0xffffff))
#define UD_GEN(ud) ((uint32_t)((ud) >> 32))

enum conn_state {
    C_FREE = 0,
    C_OPEN,     /* reading and writing */
    C_CLOSING,  /* handler told (or about to be); flushing its last output until the deadline */
    C_DEAD,     /* socket shut down; waiting for its ops in flight before the slot is released */
};

struct obuf {
    uint8_t *p; /* owner: the connection */
    size_t len, cap;
};

struct conn {
    int fd;
    uint32_t slot, gen;
    uint8_t state;
    bool recv_armed, send_armed, paused, dirty, notify_pending, close_flush;
    uint32_t inflight; /* ops submitted and not completed: the slot is reused only at 0 */
    uint32_t tag;      /* its listener's tag */
    uint8_t *in;       /* owner: the connection */
    size_t in_len, in_cap;
    struct obuf pend;  /* appended by the handler */
    struct obuf sending; /* the one send in flight */
    size_t send_off;
    uint64_t linger_deadline_ns;
    bool ready;              /* said hello (lq_loop_conn_ready) */
    uint64_t opened_ns;      /* accepted at */
    uint64_t last_recv_ns;   /* last byte received (or reading resumed) */
    uint64_t out_since_ns;   /* last progress of unsent output (or when it started) */
    uint64_t big_ns;         /* last time a buffer held (or needed) more than BUF_KEEP_BYTES */
    bool shrink_cancel;      /* a cancel of the armed receive is in flight, to shrink the input */
    max_align_t user[]; /* handler state, opts.user_size bytes */
};

struct listener {
    int fd;
    uint32_t tag;      /* given to its connections (lq_loop_conn_tag) */
    bool armed, is_unix;
    char path[108];
};

struct reader {
    int fd;
    size_t size;
    lq_loop_read_fn fn;
    void *ctx;
    uint8_t buf[READER_RECORD_MAX];
};

struct lq_loop {
    struct io_uring ring;
    lq_loop_wait_fn wait_fn; /* optional, see lq_loop_set_wait_hook */
    void *wait_ctx;
    bool ring_ok;
    const char *setup_flags;
    lq_loop_opts opts;
    lq_loop_handlers h;
    void *ctx;
    struct conn **conns;   /* owner: loop; [max_connections] */
    uint32_t *gens;        /* owner: loop; generation per slot, survives release */
    uint32_t *free_slots;  /* owner: loop; stack of unused slots */
    uint32_t n_free;
    uint32_t n_conns;
    uint32_t *dirty, *dirty_work; /* owner: loop; slots needing flush/arm/close work */
    uint32_t n_dirty;
    uint32_t *notify;      /* owner: loop; slots whose on_close is due */
    uint32_t n_notify;
    uint32_t n_lingering;
    struct listener listeners[LISTENERS_MAX];
    uint32_t n_listeners;
    bool listening, accept_blocked, stop_reading;
    uint64_t rejected, rejected_logged_ns;
    uint64_t last_sweep_ns;
    uint64_t timed_out, timed_out_logged_ns;
    size_t buf_bytes;      /* capacity of every connection's buffers (lq_loop_buffer_bytes) */
    size_t untrimmed;      /* buffer bytes freed since the last malloc_trim */
    uint64_t trimmed_ns;   /* when that was */
    struct reader readers[READERS_MAX];
    uint32_t n_readers;
};

struct io_uring_sqe *lqn_sqe(lq_loop *l); /* never NULL: submits to make room */

/* conn.c */
struct conn *lqn_conn_get(const lq_loop *l, lq_conn_id id);
lq_conn_id lqn_conn_id(const struct conn *c);
void lqn_mark_dirty(lq_loop *l, struct conn *c);
void lqn_notify_closes(lq_loop *l);
void lqn_flush_dirty(lq_loop *l);
void lqn_on_recv(lq_loop *l, struct conn *c, int res);
void lqn_on_send(lq_loop *l, struct conn *c, int res);
void lqn_sweep_timeouts(lq_loop *l, uint64_t now_ns);
void lqn_sweep_buffers(lq_loop *l, uint64_t now_ns);

#endif
