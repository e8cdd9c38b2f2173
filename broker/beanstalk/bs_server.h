/* The beanstalk listener: beanstalkd's text protocol on the same loop, core and group commit
 * as the native protocol (docs/BEANSTALK.md). server.c hands it the connections accepted on
 * the --beanstalk-listen port; server_batch.c hands it its deferred replies. */
#ifndef LQ_BS_SERVER_H
#define LQ_BS_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server_int.h"

typedef struct bs_server bs_server;

/* NULL when there is no beanstalk listener (then nothing below is called). */
lq_err bs_create(lq_server *s, bs_server **out);
void bs_destroy(bs_server *b);

void bs_on_open(lq_server *s, srv_conn *sc);
size_t bs_on_data(lq_server *s, srv_conn *sc, const uint8_t *data, size_t len, size_t *need);
void bs_on_close(lq_server *s, srv_conn *sc);
/* A DEF_BS reply whose batch completed; item_err: a put's fate (LQ_OK = stored). */
void bs_deferred_done(lq_server *s, const srv_deferred *d, bool ok, lq_err item_err);
/* Once per loop pass after the core's tick: timeouts, waiting reserves. Returns the next time
 * it needs a pass (LQ_TIME_NEVER if none). */
uint64_t bs_before_sleep(lq_server *s, uint64_t now_ms);
/* Bytes allocated for the connections' copies of their input. */
size_t bs_buffer_bytes(const bs_server *b);

#endif
