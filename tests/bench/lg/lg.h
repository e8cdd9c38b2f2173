/* The load generator's shared core (loadgen.c is the program; tests/bench/bench.mk links the
 * files of this folder into it). The core owns connections, request slots, pacing, timers,
 * statistics and the epoll loop; one driver per protocol (bench_native.c, bench_beanstalk.c,
 * bench_redis.c) encodes requests and decodes replies, and reports each outcome back to the
 * core through the lg_* callbacks below. The same scenarios, payloads, connection counts and
 * pipelining depth thus drive every broker.
 *
 * A slot is one pipelined request position of a connection: a producer slot has one enqueue
 * request (or, with --batch, a group) outstanding, a worker slot one take (lease) and then
 * the acks of what it got.
 */
#ifndef LQ_BENCH_LG_H
#define LQ_BENCH_LG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../hist.h"

#define LG_CONNS_MAX 20000u
#define LG_DEPTH_MAX 1024u
#define LG_BATCH_MAX 4096u
#define LG_MAX_JOBS_MAX 256u
#define LG_THREADS_MAX 2u
#define LG_SIZE_MAX (16u << 20)
#define LG_IN_CAP ((size_t)20 << 20)   /* the largest reply a connection buffers */
#define LG_OUT_CAP ((size_t)256 << 20) /* the most request bytes a connection queues */
#define LG_ERRORS_MAX 10000u           /* more failed requests than this: the run is meaningless */
#define LG_DRAIN_MS 10000u             /* after the stop, how long outstanding replies are awaited */
/* Every payload of 16 bytes or more starts with a stamp: u64 scheduled send time (CLOCK_MONOTONIC
 * ns of this process), u8 class, 7 bytes of a per-thread sequence number (keeps the payloads
 * distinct, which Redis's LREM needs). The worker side reads it back: queue-wait latency.
 * Payloads of 24 bytes or more also carry, in bytes 16..23, the time the payload was put in the
 * connection's output buffer: the pacer flushes that buffer before it waits, so this is when the
 * enqueue left the generator, give or take the rest of that loop pass. The wait counted from it
 * (LAT_WAIT_SENT) leaves out the generator's own lateness, which on a shared 2-core machine can
 * be most of an open-loop queue wait's tail; LAT_WAIT keeps counting from the schedule. */
#define LG_FILLER_POOL (1u << 20) /* random bytes a job body's window is taken from */
#define LG_STAMP_BYTES 16u
#define LG_STAMP_SENT_BYTES 24u

typedef enum { PROTO_NATIVE, PROTO_BEANSTALK, PROTO_REDIS_LIST, PROTO_REDIS_STREAM } lg_proto;
typedef enum { MODE_ENQUEUE, MODE_LEASE_ACK, MODE_CYCLE, MODE_PRIO, MODE_REDELIVER, MODE_PROBE } lg_mode;
typedef enum { ROLE_PRODUCER, ROLE_WORKER, ROLE_FROZEN, ROLE_RESCUER } lg_role;
typedef enum { CLASS_APP = 0, CLASS_API = 1 } lg_class;
/* LAT_PACE: how late the open-loop pacer put each enqueue on the wire (its own share of every
 * latency counted from the scheduled time). LAT_WAIT_SENT: queue wait from the send (see
 * LG_STAMP_SENT_BYTES). */
enum { LAT_ENQ, LAT_DEQ, LAT_ACK, LAT_CYCLE, LAT_WAIT, LAT_WAIT_API, LAT_REDELIVER, LAT_PACE, LAT_WAIT_SENT, LAT_N };
enum { ERR_SLOTS = 16 };

typedef struct {
    char host[256], port[16];
    lg_proto proto;
    lg_mode mode;
    unsigned conns, depth, batch, max_jobs, threads, wait_ms, lease_ms, work_ms, poll_ms, hb_ms, ttr_s;
    unsigned producers;  /* cycle: how many of the connections produce (default half) */
    uint32_t size;
    double duration_s, rate; /* rate: open-loop enqueues/s over all producers, 0 = closed loop */
    uint64_t count;          /* 0 = run for duration_s */
    const char *queue, *hist_out;
    lg_class cls;            /* the class of enqueued jobs (prio mode: the producer's are api) */
    bool json, lanes;        /* lanes: native jobs go to lane "api" / "app" by class */
} lg_config;

typedef struct {
    hist lat[LAT_N];
    uint64_t enq_ok, ack_ok, requests, empty_takes, leased, late_sends;
    uint64_t err_by_code[ERR_SLOTS]; /* native: the error code; others: 1 (any error) */
    uint64_t t_first_ns, t_last_ns;  /* the first / last completed op (redeliver: the rescues) */
} lg_stats;

/* What a driver needs to ack one leased job. */
typedef struct {
    uint64_t id, token;
    char sid[48];       /* Redis stream entry id */
    uint8_t *val;       /* owner: slot; Redis list: the payload, for LREM */
    uint32_t val_len, val_cap;
} lg_handle;

typedef struct {
    uint64_t t_sent_ns;     /* the take / enqueue (open loop: its scheduled time) */
    uint32_t pending;       /* replies still expected: acks, or the enqueues of a batch */
    uint32_t n_jobs;        /* jobs leased by the take */
    uint32_t sub;           /* driver state inside one take (Redis: which list was tried) */
    bool busy, taking;      /* taking: a take is outstanding (it may park for its wait) */
    uint64_t *ack_sent_ns;  /* [max_jobs]; points into conn.ack_times */
    lg_handle *h;           /* [max_jobs]; points into conn.handles */
} lg_slot;

/* In-order protocols answer in request order: the FIFO of what each reply answers. */
typedef struct {
    uint32_t slot;
    uint16_t kind; /* driver-defined */
    uint16_t sub;  /* job index for acks */
} lg_pending;

typedef struct lg_conn {
    int fd;
    unsigned index;
    lg_role role;
    bool hello_done, want_out;
    uint8_t *out;        /* owner: conn; pending bytes out[out_off..out_len) */
    size_t out_len, out_off, out_cap;
    uint8_t *in;         /* owner: conn; grows up to LG_IN_CAP */
    size_t in_len, in_cap;
    lg_slot *slots;      /* owner: conn; [depth] */
    uint64_t *ack_times; /* owner: conn; [depth * max_jobs] */
    lg_handle *handles;  /* owner: conn; [depth * max_jobs] */
    lg_pending *fifo;    /* owner: conn; ring of fifo_cap */
    uint32_t fifo_head, fifo_len, fifo_cap;
    uint32_t paced_unsent;   /* open loop: paced enqueues in out not yet written ... */
    uint64_t paced_since_ns; /* ... and the scheduled time of the oldest of them */
} lg_conn;

typedef struct {
    lg_conn *c;
    uint32_t slot;
    uint32_t what; /* LG_TIMER_* */
    uint64_t due_ns;
} lg_timer;
enum { LG_TIMER_ACK = 1, LG_TIMER_TAKE = 2 };

typedef struct lg_thread {
    const lg_config *cfg;
    lg_conn *conns;
    unsigned n_conns;
    int ep;
    lg_stats st;
    void *arena;         /* native driver: protobuf arena */
    uint8_t *payload;    /* owner: thread; random bytes, size + LG_FILLER_POOL: each job body is a
                          * window of it, re-stamped per send */
    uint64_t seq;
    /* open loop */
    double interval_ns;
    double next_send_ns;
    unsigned pace_cursor;
    /* work-ms / poll-ms timers: one delay per run, so a FIFO is in due order */
    lg_timer *timers;    /* owner: thread; ring */
    uint32_t t_head, t_len, t_cap;
    unsigned long long tid;
    int rc;
} lg_thread;

typedef struct {
    const char *name;
    bool in_order;                                   /* replies in request order (FIFO) */
    bool (*hello)(lg_thread *t, lg_conn *c);         /* handshake bytes; none: set hello_done */
    bool (*produce)(lg_thread *t, lg_conn *c, unsigned si, unsigned n, lg_class cls);
    bool (*take)(lg_thread *t, lg_conn *c, unsigned si);
    bool (*ack)(lg_thread *t, lg_conn *c, unsigned si, unsigned job_i);
    /* Decodes whole replies at c->in and reports them; returns bytes consumed, or -1. */
    long (*parse)(lg_thread *t, lg_conn *c);
} lg_driver;

extern const lg_driver lg_native_driver, lg_beanstalk_driver, lg_redis_list_driver, lg_redis_stream_driver;

/* Run-wide state shared by the threads (the unavoidable globals of a multi-threaded run). */
extern _Atomic uint64_t lg_issued;  /* count mode: jobs enqueued or leased so far */
extern _Atomic int lg_stop;         /* set once: no new requests, drain the outstanding ones */
extern _Atomic int lg_drained;      /* lease-ack: the queue ran dry */
extern _Atomic uint64_t lg_frozen_ready_ns;
extern _Atomic uint64_t lg_rescued;   /* redeliver: jobs the rescuer got */
extern _Atomic int lg_probe_ok;        /* probe: a take returned a job */ /* redeliver: when the frozen worker held all its jobs */
extern uint64_t lg_t_start_ns;
extern const lg_driver *lg_drv;

uint64_t lg_now_ns(void);

/* ---- for drivers ---- */
bool lg_out_reserve(lg_conn *c, size_t more);
bool lg_out_append(lg_conn *c, const void *p, size_t n);
bool lg_out_printf(lg_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends the job body (size bytes) with a fresh stamp of class cls sent at t_ns. */
bool lg_out_payload(lg_thread *t, lg_conn *c, lg_class cls, uint64_t t_ns);
bool lg_fifo_push(lg_conn *c, unsigned slot, unsigned kind, unsigned sub);
bool lg_fifo_pop(lg_conn *c, lg_pending *out);
void lg_count_error(lg_thread *t, unsigned code, const char *what, size_t len);
/* Outcomes. Each returns false when the run must stop (fatal protocol trouble). */
bool lg_hello_done(lg_thread *t, lg_conn *c);
bool lg_enq_done(lg_thread *t, lg_conn *c, unsigned si, unsigned n_ok, bool failed);
/* A job of a take arrived (payload may be NULL when the driver does not see it). */
void lg_job_leased(lg_thread *t, lg_conn *c, unsigned si, const uint8_t *payload, size_t len);
/* The take of slot si is answered with n_jobs (0: nothing ready). */
bool lg_take_done(lg_thread *t, lg_conn *c, unsigned si, unsigned n_jobs, bool failed);
bool lg_ack_done(lg_thread *t, lg_conn *c, unsigned si, unsigned job_i, bool failed);
/* Copies a job body into a handle (Redis list acks name the value). */
bool lg_handle_keep(lg_handle *h, const uint8_t *p, size_t n);

/* ---- for the program ---- */
bool lg_conn_setup(lg_thread *t, lg_conn *c);
void *lg_thread_main(void *arg);
bool lg_conn_flush(lg_thread *t, lg_conn *c);
int lg_connect(const lg_config *cfg, int retry_ms);

#endif
