/* leaseqd command line: flags, defaults and validation. */
#ifndef LQ_CONFIG_H
#define LQ_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "core/core.h"
#include "log.h"
#include "store/store.h"

#define LQ_CONFIG_QUEUE_FLAGS_MAX 256 /* --lanes flags on one command line */

/* One --lanes QUEUE=NAME:WEIGHT,... flag; names point into text. */
typedef struct {
    char *text;   /* owner: lq_config_free (a copy of the flag's value, split in place) */
    lq_str queue;
    lq_lane_cfg lanes[LQ_LANES_MAX];
    uint32_t n_lanes;
} lq_queue_flag;

/* One --lane-config QUEUE/LANE:key=value,... flag. `set` has a bit per key given (LQ_LANE_SET_*)
 * so the keys not named keep the lane's current value (or its --lanes weight). */
#define LQ_CONFIG_LANE_FLAGS_MAX 256
enum {
    LQ_LANE_SET_WEIGHT = 1u << 0,
    LQ_LANE_SET_MAX_QUEUED = 1u << 1,
    LQ_LANE_SET_MAX_BYTES = 1u << 2,
    LQ_LANE_SET_MAX_WAIT = 1u << 3,
    LQ_LANE_SET_SHEDDABLE = 1u << 4,
};
typedef struct {
    char *text;   /* owner: lq_config_free (a copy of the flag's value, split in place) */
    lq_str queue, lane;
    lq_lane_settings s;
    uint32_t set; /* LQ_LANE_SET_* */
} lq_lane_flag;

typedef struct {
    const char *listen;        /* HOST:PORT; points into argv */
    const char *data_dir;      /* points into argv or a literal */
    const char *unix_path;     /* NULL = no Unix listener */
    lq_sync_mode sync;
    bool early_dispatch;       /* --dispatch early: lease new jobs before their commit */
    uint64_t map_size_bytes;
    uint32_t max_payload_bytes;
    uint32_t max_connections;
    lq_log_level log_level;
    uint32_t result_retention_ms; /* how long a finished job's outcome is kept for Wait; 0 = not kept */
    const char *beanstalk_listen; /* HOST:PORT of the beanstalk listener; NULL = off */
    uint32_t beanstalk_max_job;   /* largest beanstalk job body (beanstalkd -z), <= max_payload_bytes */
    const char *beanstalk_lanes;  /* "LO-HI:LANE,..." priority ranges to lanes; NULL = one lane */
    uint32_t beanstalk_default_ttr_s; /* TTR of jobs reserved over beanstalk that have none */
    lq_queue_flag *queues;     /* owner: lq_config_free */
    uint32_t n_queues;
    /* operations (issue 5) */
    const char *http_listen;   /* HOST:PORT of /metrics, /healthz, /readyz; NULL = off */
    bool http_listen_set;      /* given on the command line: failing to bind it is fatal */
    const char *auth_path;     /* tokens file ("TOKEN ROLE" lines); NULL = no auth */
    bool insecure;             /* allow a non-loopback --listen without --auth */
    /* overload limits (docs/OPERATIONS.md, "Limits") */
    lq_lane_flag *lane_flags;  /* owner: lq_config_free; --lane-config */
    uint32_t n_lane_flags;
    uint32_t low_watermark_pct;   /* 80: above it, sheddable lanes' enqueues get STORAGE_FULL */
    uint32_t high_watermark_pct;  /* 95: above it, every enqueue gets STORAGE_FULL */
    uint32_t frame_timeout_ms;    /* 10000: a partial frame with no new byte for this long closes */
    uint32_t hello_timeout_ms;    /* 5000: a connection without a hello for this long closes */
    uint32_t send_timeout_ms;     /* 30000: unsent output that makes no progress this long closes */
    uint64_t max_output_bytes;    /* 64M: unsent output of one connection; past it: closed */
    uint32_t max_parked;          /* 65536: parked dequeues of all connections */
} lq_config;

typedef enum {
    LQ_CONFIG_RUN = 0,
    LQ_CONFIG_HELP = 1,   /* --help: usage printed to stdout, exit 0 */
    LQ_CONFIG_ERROR = 2,  /* err holds a one-line message, exit 2 */
} lq_config_result;

/* Fills cfg from argv (defaults first). cfg must be freed with lq_config_free whatever the
 * result. err gets a one-line message on LQ_CONFIG_ERROR. */
lq_config_result lq_config_parse(int argc, char **argv, lq_config *cfg, char *err, size_t err_cap);
void lq_config_free(lq_config *cfg);
void lq_config_usage(FILE *f);

/* config_lanes.c: one --lane-config value into cfg (copied). LQ_CONFIG_ERROR with err set. */
lq_config_result lq_config_add_lane_flag(lq_config *cfg, const char *val, char *err, size_t err_cap);
/* Parses a non-negative decimal (no suffix) within lo..hi. */
bool lq_config_parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out);

/* "123", "64K", "16M", "1G" (powers of 1024). false on garbage or overflow. */
bool lq_parse_bytes(const char *s, uint64_t *out);

#endif
