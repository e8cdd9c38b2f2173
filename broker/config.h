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

typedef struct {
    const char *listen;        /* HOST:PORT; points into argv */
    const char *data_dir;      /* points into argv or a literal */
    const char *unix_path;     /* NULL = no Unix listener */
    lq_sync_mode sync;
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

/* "123", "64K", "16M", "1G" (powers of 1024). false on garbage or overflow. */
bool lq_parse_bytes(const char *s, uint64_t *out);

#endif
