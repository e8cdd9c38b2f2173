/* Connection layer of libleaseq: one socket, its receive buffer, and I/O that never waits past
 * a deadline. Knows frames (broker/proto/frame.h) but not protobuf; the handle (client.h) builds
 * requests and reads responses on top of it.
 *
 * Deadlines are absolute times on the monotonic clock in milliseconds (lqc_now_ms), so a call
 * that does several steps (connect, hello, send, wait) spends one budget across all of them. */
#ifndef LQC_CONN_H
#define LQC_CONN_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "proto/frame.h"

/* Hard ceiling on one received frame's payload, whatever the caller allows: a dequeue reply of
 * many large jobs is the only thing that comes close. */
#define LQC_FRAME_PAYLOAD_MAX (1u << 30)

typedef enum {
    LQC_IO_OK = 0,
    LQC_IO_TIMEOUT,  /* the deadline passed */
    LQC_IO_CLOSED,   /* could not connect, peer closed, or socket error */
    LQC_IO_PROTOCOL, /* bytes that cannot be a valid frame, or data nobody asked for */
    LQC_IO_NOMEM,
} lqc_io;

/* Threads: the connection belongs to one owner thread, which does everything below except
 * lqc_conn_send_shared. That one may come from a second thread (the worker's heartbeat thread)
 * to slip whole frames in between the owner's. wlock makes that safe: it is held while fd
 * changes and while the owner writes one frame, never while anyone waits to read. */
typedef struct {
    int fd;                     /* -1 when not connected; changed only under wlock */
    uint8_t *rbuf;              /* owned; received bytes [rstart, rend) not yet parsed */
    size_t rcap, rstart, rend;
    uint32_t max_frame_payload; /* cap handed to lq_frame_parse for received frames */
    char err[256];              /* why the last failing operation failed (owner thread only) */
    pthread_mutex_t wlock;
    bool greeted;               /* guarded by wlock: hello done on fd, other frames may follow */
} lqc_conn;

/* libleaseq links without the broker's lq_assert.c, so it carries its own always-on check. */
_Noreturn void lqc_assert_fail(const char *expr, const char *file, int line);
#define LQC_ASSERT(e) ((e) ? (void)0 : lqc_assert_fail(#e, __FILE__, __LINE__))

uint64_t lqc_now_ms(void);

/* Splits "HOST:PORT", "[V6]:PORT" or "unix:/path". Returns false on a malformed address. */
bool lqc_addr_parse(const char *addr, char *host, size_t host_cap, char *port, size_t port_cap,
                    bool *is_unix);

void lqc_conn_init(lqc_conn *c);
/* After the hello exchange on the current socket: lqc_conn_send_shared may write from now on,
 * until the socket is closed. */
void lqc_conn_set_greeted(lqc_conn *c);
/* Connects (TCP_NODELAY on TCP) before deadline_ms. Any previous socket is closed first. */
lqc_io lqc_conn_open(lqc_conn *c, const char *addr, uint64_t deadline_ms);
bool lqc_conn_is_open(const lqc_conn *c);
/* Closes the socket and forgets buffered bytes; the buffer is kept for reuse. */
void lqc_conn_close(lqc_conn *c);
void lqc_conn_free(lqc_conn *c);

/* Before a request on an idle connection: LQC_IO_OK when the broker has neither closed it nor
 * sent anything unasked (an error frame before a close, say). Anything else: reconnect. */
lqc_io lqc_conn_check_idle(lqc_conn *c);

/* Writes every byte of iov[0..iovcnt) (the array is consumed). While the socket is not writable
 * it keeps reading what the broker sends into the receive buffer, so a peer that answers
 * pipelined requests while we are still writing can never deadlock us. *wrote_any tells
 * whether any byte left, i.e. whether the broker may have seen the request. */
lqc_io lqc_conn_send(lqc_conn *c, struct iovec *iov, int iovcnt, uint64_t deadline_ms, bool *wrote_any);

/* For the second thread: writes the whole frame [frame, frame+len) when the connection is
 * open and greeted; LQC_IO_CLOSED (nothing written) when it is not. Never reads and never
 * touches the receive buffer or err. Waits for wlock and for the socket at most until
 * deadline_ms (LQC_IO_TIMEOUT); a frame cut short that way is a garbled stream, so the socket
 * is shut down and the owner's next read sees a closed connection and reconnects. */
lqc_io lqc_conn_send_shared(lqc_conn *c, const void *frame, size_t len, uint64_t deadline_ms);

/* Reads one whole frame. *f points into the receive buffer and stays valid until the next
 * lqc_conn_read_frame, lqc_conn_send, lqc_conn_close or lqc_conn_trim on c. */
lqc_io lqc_conn_read_frame(lqc_conn *c, uint64_t deadline_ms, lq_frame *f);

/* After a call: gives back a receive buffer that a big reply grew, so an idle handle stays small. */
void lqc_conn_trim(lqc_conn *c);

#endif
