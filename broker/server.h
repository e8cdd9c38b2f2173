/* leaseqd's server: recovery at start, the request/commit cycle on the io_uring loop, and the
 * clean shutdown. See server_int.h for how the work is split across files. */
#ifndef LQ_SERVER_H
#define LQ_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "core/lq_err.h"

typedef struct lq_server lq_server;

/* Opens the store, recovers the jobs into the core, applies the --lanes flags, listens.
 * signal_fd: a signalfd for SIGINT/SIGTERM (blocked by the caller); it is read through the loop
 * and not owned. cfg must outlive the server. LQ_E_INVALID_ARGUMENT: a flag value the core or
 * the listener refused (exit 2); other errors: the store or the system (exit 1). */
lq_err lq_server_create(const lq_config *cfg, int signal_fd, lq_server **out);
/* Serves until a stop signal, then shuts down cleanly: stop accepting, commit what is open and
 * answer its waiters, answer parked dequeues empty, close connections. LQ_OK on a clean stop. */
lq_err lq_server_run(lq_server *s);
void lq_server_destroy(lq_server *s);

/* Fuzzing and tests: the real request path without a network client. test_conn adopts a
 * connected socket (one end of a socketpair: replies are sent there); test_feed runs the
 * connection's input handler on data (whole frames are handled, the bytes consumed are
 * returned); test_pump runs one loop pass (waiting up to timeout_ms) and the before-sleep step
 * (timers, commit hand-off); test_idle: nothing is being committed or waits to be. */
lq_err lq_server_test_conn(lq_server *s, int fd, uint64_t *conn);
size_t lq_server_test_feed(lq_server *s, uint64_t conn, const uint8_t *data, size_t len);
void lq_server_test_pump(lq_server *s, int timeout_ms);
bool lq_server_test_idle(lq_server *s);
void lq_server_test_close(lq_server *s, uint64_t conn);

#endif
