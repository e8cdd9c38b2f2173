/* Internal to libleaseq: the handle, and the request/response steps every API call shares
 * (session.c). The API calls themselves live in leaseq.c.
 *
 * One call = lqc_begin (deadline, error state) -> lqc_ensure (connected and said hello,
 * reconnecting with backoff) -> lqc_send / lqc_recv, or lqc_call for one round trip ->
 * lqc_end. Any transport failure, timeout or garbage from the broker drops the connection, so
 * a late reply can never be mistaken for the answer to a later request. */
#ifndef LQC_CLIENT_H
#define LQC_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "conn.h"
#include "leaseq.h"
#include "leaseq.pb-c.h"
#include "proto/arena.h"

#define LQC_BATCH_ITEMS_MAX 256 /* jobs per enqueue frame */
#define LQC_BATCH_WINDOW 16     /* enqueue frames in flight */
#define LQC_BACKOFF_FIRST_MS 50
#define LQC_BACKOFF_MAX_MS 2000
/* Request ids of heartbeats sent by a worker's heartbeat thread carry this bit; the owner
 * thread's ids count up from 1 and never reach it. Their replies are read and dropped by
 * whatever call of the owner thread meets them (see lqc_recv). */
#define LQC_HB_ID_BIT (1ull << 63)

struct leaseq {
    lqc_conn conn;
    char *addr, *client_name, *token, *worker_id; /* owned copies: no caller pointer is kept */
    uint32_t heartbeat_ms, connect_timeout_ms, max_payload_bytes;
    bool keep_leases_on_close;
    bool hb_replies;         /* a heartbeat thread writes on conn: drop replies with LQC_HB_ID_BIT */
    uint64_t next_request_id;
    uint64_t conn_gen;       /* counts good hellos: a change means a new broker session */

    leaseq_server_info srv;  /* from the last HelloReply; srv.server_name -> server_name */
    char server_name[64];

    uint32_t backoff_ms;     /* 0 after a good hello; doubles per failed connect */
    uint64_t next_attempt_ms;/* monotonic time before which no reconnect is tried */
    uint64_t rng;            /* jitter; per handle so there is no global state */

    lq_arena dec;            /* decoded Response of the current reply */
    lq_arena enc;            /* Request structs being built for the current frame */
    uint8_t *ebuf;           /* owned; frame header + packed meta of the frame being sent */
    size_t ecap;

    char errmsg[512];
    uint32_t retry_after_ms;
};

/* Starts a call: checks c and timeout_ms, clears the error state, sets *deadline_ms. */
leaseq_err lqc_begin(leaseq *c, int timeout_ms, uint64_t *deadline_ms);
/* Ends a call: gives back memory a big frame made the handle take. Returns e. */
leaseq_err lqc_end(leaseq *c, leaseq_err e);

leaseq_err lqc_fail(leaseq *c, leaseq_err e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Maps a connection failure to its leaseq_err, keeps its text, drops the connection. */
leaseq_err lqc_io_fail(leaseq *c, lqc_io io, const char *during);

/* Connected and greeted, reconnecting (backoff with jitter) while deadline_ms allows. */
leaseq_err lqc_ensure(leaseq *c, uint64_t deadline_ms);

/* Zeroed memory from the encode arena, valid until the frame is sent; NULL past its cap. */
void *lqc_enc_alloc(leaseq *c, size_t size);

/* Gives req the next request id, packs it and sends it with the payload in iov[1..iovcnt)
 * (iov[0] is filled here; the array is consumed). payload_len is the sum of those lengths.
 * *wrote_any: whether the broker may have seen any of it. Frees the encode arena. */
leaseq_err lqc_send(leaseq *c, Leaseq__Request *req, struct iovec *iov, int iovcnt, size_t payload_len,
                    uint64_t deadline_ms, bool *wrote_any);

/* Reads and decodes the next Response. *f holds its payload; both stay valid until the next
 * lqc_recv or lqc_send. */
leaseq_err lqc_recv(leaseq *c, uint64_t deadline_ms, Leaseq__Response **resp, lq_frame *f);

/* The broker's error in resp (its code, message kept, retry hint noted), or LEASEQ_OK. */
leaseq_err lqc_reply_error(leaseq *c, const Leaseq__Response *resp);

/* One round trip: ensure, send (resent on a fresh connection when not a byte went out), wait
 * for the reply with the same request id, check error and body kind. */
leaseq_err lqc_call(leaseq *c, Leaseq__Request *req, struct iovec *iov, int iovcnt, size_t payload_len,
                    Leaseq__Response__BodyCase want, uint64_t deadline_ms, Leaseq__Response **resp,
                    lq_frame *f);

/* The one call another thread may make on a handle whose owner thread is busy: writes one
 * Heartbeat frame with request id LQC_HB_ID_BIT | seq (see lqc_conn_send_shared). Requires
 * c->hb_replies to be set before that thread starts. */
lqc_io lqc_send_heartbeat(leaseq *c, uint64_t seq, uint64_t deadline_ms);

#endif
