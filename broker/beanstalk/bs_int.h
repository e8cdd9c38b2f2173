/* Inside of the beanstalk listener, shared by bs_server.c (connections, input, replies,
 * waiting reserves) and bs_cmds.c (the commands). */
#ifndef LQ_BS_INT_H
#define LQ_BS_INT_H

#include "beanstalk/bs_server.h"
#include "beanstalk/parse.h"
#include "core/heap.h" /* LQ_NONE */
#include "core/map.h"

#define BS_IN_CAP_EXTRA (1u << 20)   /* unprocessed input held beyond one largest put */
/* An empty input copy grown past this for a large put is freed once the connection has not held
 * more for BS_IN_IDLE_MS (as the loop's own buffers, broker/net/loop_int.h). */
#define BS_IN_KEEP_BYTES (16u << 10)
#define BS_IN_IDLE_MS 1000u
#define BS_WATCH_MAX 1024            /* tubes one connection may watch */
#define BS_HELD_MAX 65536            /* jobs one connection may hold reserved */
#define BS_TUBES_MAX LQ_QUEUES_MAX
#define BS_DEADLINE_SOON_MS 1000     /* beanstalkd's safety margin */
#define BS_TTR_HEADER "beanstalk-ttr"

enum { BS_R_INSERTED = 1, BS_R_DELETED, BS_R_RELEASED, BS_R_BURIED, BS_R_KICKED_N, BS_R_KICKED, BS_R_NOT_FOUND,
       BS_R_DRAINING, BS_R_OOM };

typedef struct {
    char name[BS_NAME_MAX + 1];
    uint32_t len;
    bool live;
    uint32_t using_ct, watching_ct, waiting_ct;
    uint64_t total_jobs, cmd_delete, cmd_pause;
    uint64_t pause_ms, pause_until_ms; /* pause_until_ms 0 = not paused */
} bs_tube;

typedef struct {
    uint64_t job_id, token, expires_ms;
    uint32_t ttr_ms;
} bs_held;

typedef struct {
    srv_conn *sc;
    uint32_t use;               /* tube slot */
    uint32_t *watch;            /* owner: bs_conn; tube slots in beanstalkd's order */
    uint32_t n_watch, cap_watch;
    bs_held *held;              /* owner: bs_conn */
    uint32_t n_held, cap_held;
    uint8_t *in;                /* owner: bs_conn; input not yet processed */
    size_t in_len, in_cap;
    uint64_t in_big_ms;         /* last time it held more than BS_IN_KEEP_BYTES */
    uint64_t discard;           /* JOB_TOO_BIG body bytes still to drop ... */
    const char *after_discard;  /* ... then this answer (beanstalkd answers once the body is read) */
    bool skip_line;
    bool waiting;               /* a reserve is parked */
    uint64_t wait_until_ms;     /* LQ_TIME_NEVER: no limit */
    bool producer, worker, quit;
    uint32_t conn_index;        /* in bs_server.conns */
} bs_conn;

typedef struct {
    uint64_t job_id;
    uint32_t delay_s, timeouts, releases, buries, kicks;
    bool live;
} bs_jobinfo;

typedef struct {
    uint32_t lo, hi;
    char lane[LQ_NAME_MAX + 1];
} bs_lane_range;

struct bs_server {
    lq_server *s;
    uint32_t max_job;
    bs_tube *tubes;             /* owner: bs_server; slots */
    uint32_t n_tubes, cap_tubes;
    uint32_t *order;            /* owner: bs_server; listed tubes (beanstalkd's order) */
    uint32_t n_order;
    bool prune;                 /* a tube may have lost its last reference */
    bs_conn **conns;            /* owner: bs_server (the array; each bs_conn too) */
    uint32_t n_conns, cap_conns;
    bs_conn **waiters;          /* owner: bs_server; parked reserves, oldest first */
    uint32_t n_waiters, cap_waiters;
    bs_jobinfo *info;           /* owner: bs_server; per-job counters beanstalkd reports */
    uint32_t n_info, cap_info, *info_free, n_info_free;
    lq_map info_by_job;
    uint64_t op_ct[BS_OP_COUNT_];
    uint64_t timeouts, total_jobs, total_conns;
    uint64_t started_ms;
    bs_lane_range lanes[LQ_LANES_MAX];
    uint32_t n_lanes;
    char *scratch;              /* owner: bs_server; stats and list bodies */
    size_t scratch_cap;
    size_t in_bytes;            /* capacity of every connection's input copy */
};

static inline bs_server *bs_of(lq_server *s) { return s->bs; }
static inline bs_conn *bs_conn_of(srv_conn *sc) { return sc->bs; }

/* bs_server.c */
void bs_send(lq_server *s, bs_conn *c, const void *data, size_t len);
void bs_sendf(lq_server *s, bs_conn *c, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* "WORD id bytes\r\n" + body + "\r\n" */
void bs_send_job(lq_server *s, bs_conn *c, const char *word, uint64_t id, const uint8_t *body, uint32_t len);
/* "OK bytes\r\n" + text + "\r\n" */
void bs_send_ok(lq_server *s, bs_conn *c, const char *text, size_t len);
/* Reply that must wait for the open batch (kind DEF_BS, code BS_R_*). */
void bs_defer(lq_server *s, bs_conn *c, uint8_t code, uint64_t job_id, uint32_t count, int32_t item);
uint32_t bs_tube_get(bs_server *b, const char *name, uint32_t len, bool create);
void bs_tube_ref(bs_server *b, uint32_t slot, int using_delta, int watching_delta);
lq_str bs_tube_str(bs_server *b, uint32_t slot);
bool bs_tube_paused(bs_server *b, uint32_t slot, uint64_t now);
/* Tries to answer c's reserve now: RESERVED (true) or nothing ready (false). */
bool bs_try_reserve(lq_server *s, bs_conn *c, uint64_t now);
bool bs_deadline_soon(const bs_conn *c, uint64_t now);
void bs_wait(lq_server *s, bs_conn *c, uint64_t until_ms);
bs_jobinfo *bs_info(bs_server *b, uint64_t job_id, bool create);
void bs_info_drop(bs_server *b, uint64_t job_id);
int32_t bs_held_find(const bs_conn *c, uint64_t job_id);
void bs_held_remove(bs_conn *c, uint32_t i);
/* Reads a stored job: payload and its TTR header. false if it is not there. */
bool bs_read_job(lq_server *s, uint64_t job_id, const uint8_t **body, uint32_t *len, uint32_t *ttr_s);
char *bs_scratch(bs_server *b, size_t need);

/* bs_cmds.c */
void bs_command(lq_server *s, bs_conn *c, const bs_cmd *cmd, uint64_t now);
/* Commands that may wait on a commit; every other command waits for those to be answered. */
bool bs_op_deferrable(bs_op op);
void bs_prune_tubes(lq_server *s);

#endif
