#include "config.h"

#include "proto/frame.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define MAP_SIZE_MIN (1ull << 20)
#define MAP_SIZE_MAX (1ull << 44)          /* 16 TiB: LMDB's practical ceiling here */
#define PAYLOAD_MAX_LIMIT (1u << 30)       /* frames carry u32 lengths; keep well clear */
#define CONNECTIONS_MAX_LIMIT (1u << 20)   /* connection slots are 24 bits in io_uring user_data */
#define LANE_WEIGHT_MAX 1000000u
#define RETENTION_MAX_MS (30u * 24 * 3600 * 1000) /* 30 days */

void lq_config_usage(FILE *f)
{
    fputs("usage: leaseqd [flags]\n"
          "  --listen HOST:PORT      TCP listen address (default 127.0.0.1:7420; port 0 = any)\n"
          "  --unix PATH             also listen on a Unix socket\n"
          "  --data-dir DIR          LMDB directory, created if missing (default ./var/leaseq)\n"
          "  --sync full|periodic|none  durability of acknowledged enqueues (default full)\n"
          "  --dispatch durable|early  when a new job may be leased: once its batch is on disk\n"
          "                          (default), or at once, before the commit; producers are\n"
          "                          answered after the commit either way (docs/DESIGN.md)\n"
          "  --map-size BYTES        LMDB map size, suffix K/M/G allowed (default 1G)\n"
          "  --lanes QUEUE=NAME:WEIGHT,NAME:WEIGHT  lanes of one queue (repeatable)\n"
          "  --max-payload BYTES     largest job payload, suffix K/M/G allowed (default 16M)\n"
          "  --max-connections N     connections held at once (default 10000)\n"
          "  --result-retention MS   how long a finished job's result and state are kept for\n"
          "                          wait (default 600000; 0 = not kept)\n"
          "  --beanstalk-listen HOST:PORT  also speak beanstalkd's protocol there (default off)\n"
          "  --beanstalk-max-job-size BYTES  largest beanstalk job body (default 65535, at most\n"
          "                          --max-payload)\n"
          "  --beanstalk-lanes LO-HI:LANE,...  beanstalk priority ranges to lanes, e.g.\n"
          "                          0-1023:api,1024-:app (default: every priority in one lane)\n"
          "  --log-level debug|info|warn|error  (default info)\n"
          "  --http-listen HOST:PORT  /metrics, /healthz, /readyz (default 127.0.0.1:7421,\n"
          "                          skipped with a warning if busy; \"off\" = none)\n"
          "  --auth FILE             tokens file: lines \"TOKEN ROLE\", role producer|worker|admin\n"
          "  --insecure              allow a non-loopback --listen without --auth\n"
          "limits (docs/OPERATIONS.md has the table):\n"
          "  --lane-config QUEUE/LANE:KEY=VALUE,...  lane settings at start (repeatable); keys:\n"
          "                          weight, max_queued, max_queued_bytes (K/M/G), max_wait_ms,\n"
          "                          sheddable=0|1\n"
          "  --low-watermark PCT     storage fill above which sheddable lanes are refused (default 80)\n"
          "  --high-watermark PCT    storage fill above which every enqueue is refused (default 95)\n"
          "  --frame-timeout-ms MS   close a connection whose partial frame gets no byte this long\n"
          "                          (default 10000; 0 = never)\n"
          "  --hello-timeout-ms MS   close a connection that has not said hello by then\n"
          "                          (default 5000; 0 = never)\n"
          "  --send-timeout-ms MS    close a connection whose unsent replies make no progress this\n"
          "                          long, i.e. a client that stopped reading (default 30000; 0 = never)\n"
          "  --max-output BYTES      unsent output of one connection before it is closed (default 64M)\n"
          "  --max-parked N          parked dequeues of all connections (default 65536)\n"
          "  --help                  this text\n",
          f);
}

bool lq_parse_bytes(const char *s, uint64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return false;
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10;
    else if (*end == 'M' || *end == 'm')
        shift = 20;
    else if (*end == 'G' || *end == 'g')
        shift = 30;
    else if (*end == 'T' || *end == 't')
        shift = 40;
    if (shift != 0) {
        end++;
        if (*end == 'i' && end[1] == 'B')
            end += 2;
        else if (*end == 'B')
            end++;
    }
    if (*end != '\0')
        return false;
    if (shift != 0 && v > (UINT64_MAX >> shift))
        return false;
    *out = (uint64_t)v << shift;
    return true;
}

bool lq_config_parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return false;
    *out = (uint32_t)v;
    return true;
}

/* QUEUE=NAME:WEIGHT,NAME:WEIGHT, split in place inside q->text. */
static bool parse_lanes(lq_queue_flag *q, char *err, size_t err_cap)
{
    char *s = q->text;
    char *eq = strchr(s, '=');
    if (eq == NULL || eq == s) {
        snprintf(err, err_cap, "--lanes: expected QUEUE=NAME:WEIGHT[,NAME:WEIGHT...], got \"%s\"", s);
        return false;
    }
    *eq = '\0';
    q->queue = (lq_str){s, (uint32_t)(eq - s)};
    char *p = eq + 1;
    q->n_lanes = 0;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma != NULL)
            *comma = '\0';
        char *colon = strchr(p, ':');
        uint32_t w = 0;
        if (colon == NULL || colon == p || !lq_config_parse_u32(colon + 1, 0, LANE_WEIGHT_MAX, &w)) {
            snprintf(err, err_cap, "--lanes %.*s: bad lane \"%s\" (want NAME:WEIGHT, weight 0..%u)",
                     (int)q->queue.len, q->queue.ptr, p, LANE_WEIGHT_MAX);
            return false;
        }
        if (q->n_lanes == LQ_LANES_MAX) {
            snprintf(err, err_cap, "--lanes %.*s: more than %d lanes", (int)q->queue.len, q->queue.ptr,
                     LQ_LANES_MAX);
            return false;
        }
        *colon = '\0';
        lq_str name = {p, (uint32_t)(colon - p)};
        for (uint32_t i = 0; i < q->n_lanes; i++) {
            if (lq_str_eq(q->lanes[i].name, name)) {
                snprintf(err, err_cap, "--lanes %.*s: lane \"%s\" listed twice", (int)q->queue.len,
                         q->queue.ptr, p);
                return false;
            }
        }
        q->lanes[q->n_lanes++] = (lq_lane_cfg){name, w};
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return true;
}

static lq_config_result add_lanes(lq_config *cfg, const char *val, char *err, size_t err_cap)
{
    if (cfg->n_queues == LQ_CONFIG_QUEUE_FLAGS_MAX) {
        snprintf(err, err_cap, "--lanes: at most %d queues", LQ_CONFIG_QUEUE_FLAGS_MAX);
        return LQ_CONFIG_ERROR;
    }
    if (cfg->queues == NULL) {
        cfg->queues = calloc(LQ_CONFIG_QUEUE_FLAGS_MAX, sizeof *cfg->queues); /* owner: lq_config_free */
        if (cfg->queues == NULL) {
            snprintf(err, err_cap, "out of memory");
            return LQ_CONFIG_ERROR;
        }
    }
    lq_queue_flag *q = &cfg->queues[cfg->n_queues];
    q->text = strdup(val); /* owner: lq_config_free */
    if (q->text == NULL) {
        snprintf(err, err_cap, "out of memory");
        return LQ_CONFIG_ERROR;
    }
    cfg->n_queues++;
    if (!parse_lanes(q, err, err_cap))
        return LQ_CONFIG_ERROR;
    for (uint32_t i = 0; i + 1 < cfg->n_queues; i++) {
        if (lq_str_eq(cfg->queues[i].queue, q->queue)) {
            snprintf(err, err_cap, "--lanes: queue \"%.*s\" given twice", (int)q->queue.len, q->queue.ptr);
            return LQ_CONFIG_ERROR;
        }
    }
    return LQ_CONFIG_RUN;
}

#define TIMEOUT_MAX_MS (24u * 3600 * 1000)
#define OUTPUT_MAX_LIMIT (1ull << 32)
#define PARKED_MAX_LIMIT (1u << 24)

/* The numeric limit flags. */
static lq_config_result limit_flag(lq_config *cfg, const char *flag, const char *val, char *err, size_t err_cap)
{
    static const struct {
        const char *flag;
        size_t off;
        uint32_t lo, hi;
    } u32s[] = {
        {"--low-watermark", offsetof(lq_config, low_watermark_pct), 1, 100},
        {"--high-watermark", offsetof(lq_config, high_watermark_pct), 1, 100},
        {"--frame-timeout-ms", offsetof(lq_config, frame_timeout_ms), 0, TIMEOUT_MAX_MS},
        {"--hello-timeout-ms", offsetof(lq_config, hello_timeout_ms), 0, TIMEOUT_MAX_MS},
        {"--send-timeout-ms", offsetof(lq_config, send_timeout_ms), 0, TIMEOUT_MAX_MS},
        {"--max-parked", offsetof(lq_config, max_parked), 1, PARKED_MAX_LIMIT},
    };
    for (size_t i = 0; i < sizeof u32s / sizeof u32s[0]; i++) {
        if (strcmp(flag, u32s[i].flag) != 0)
            continue;
        if (!lq_config_parse_u32(val, u32s[i].lo, u32s[i].hi, (uint32_t *)((char *)cfg + u32s[i].off))) {
            snprintf(err, err_cap, "%s: expected %u..%u, got \"%s\"", flag, u32s[i].lo, u32s[i].hi, val);
            return LQ_CONFIG_ERROR;
        }
        return LQ_CONFIG_RUN;
    }
    if (strcmp(flag, "--max-output") == 0) {
        uint64_t bytes = 0;
        if (!lq_parse_bytes(val, &bytes) || bytes < (1u << 20) || bytes > OUTPUT_MAX_LIMIT) {
            snprintf(err, err_cap, "--max-output: expected 1M..4G (suffix K/M/G), got \"%s\"", val);
            return LQ_CONFIG_ERROR;
        }
        cfg->max_output_bytes = bytes;
    }
    return LQ_CONFIG_RUN;
}

static const char *const value_flags[] = {"--listen", "--data-dir", "--sync", "--dispatch", "--map-size", "--lanes",
                                          "--max-payload", "--max-connections", "--unix", "--log-level",
                                          "--result-retention", "--http-listen", "--auth",
                                          "--beanstalk-listen", "--beanstalk-max-job-size",
                                          "--beanstalk-lanes", "--lane-config", "--low-watermark",
                                          "--high-watermark", "--frame-timeout-ms", "--hello-timeout-ms",
                                          "--send-timeout-ms", "--max-output", "--max-parked"};

lq_config_result lq_config_parse(int argc, char **argv, lq_config *cfg, char *err, size_t err_cap)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->listen = "127.0.0.1:7420";
    cfg->data_dir = "./var/leaseq";
    cfg->sync = LQ_SYNC_FULL;
    cfg->map_size_bytes = 1ull << 30;
    cfg->max_payload_bytes = LQ_PAYLOAD_MAX_DEFAULT;
    cfg->max_connections = 10000;
    cfg->log_level = LQ_LOG_INFO;
    cfg->result_retention_ms = 600000;
    cfg->http_listen = "127.0.0.1:7421";
    cfg->beanstalk_max_job = 65535;
    cfg->beanstalk_default_ttr_s = 120;
    cfg->low_watermark_pct = 80;
    cfg->high_watermark_pct = 95;
    cfg->frame_timeout_ms = 10000;
    cfg->hello_timeout_ms = 5000;
    cfg->send_timeout_ms = 30000;
    cfg->max_output_bytes = 64ull << 20;
    cfg->max_parked = 65536;
    err[0] = '\0';

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
            return LQ_CONFIG_HELP;
        if (strcmp(arg, "--insecure") == 0) {
            cfg->insecure = true;
            continue;
        }
        /* --flag=value and --flag value are both accepted. */
        const char *flag = NULL, *val = NULL;
        size_t flen = strcspn(arg, "=");
        for (size_t k = 0; k < sizeof value_flags / sizeof value_flags[0]; k++) {
            if (strlen(value_flags[k]) == flen && strncmp(arg, value_flags[k], flen) == 0)
                flag = value_flags[k];
        }
        if (flag == NULL) {
            snprintf(err, err_cap, "unknown flag \"%s\" (see --help)", arg);
            return LQ_CONFIG_ERROR;
        }
        if (arg[flen] == '=') {
            val = arg + flen + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            snprintf(err, err_cap, "%s needs a value", flag);
            return LQ_CONFIG_ERROR;
        }

        uint64_t bytes = 0;
        if (strcmp(flag, "--listen") == 0) {
            if (*val == '\0' || strrchr(val, ':') == NULL) {
                snprintf(err, err_cap, "--listen: expected HOST:PORT, got \"%s\"", val);
                return LQ_CONFIG_ERROR;
            }
            cfg->listen = val;
        } else if (strcmp(flag, "--data-dir") == 0) {
            if (*val == '\0') {
                snprintf(err, err_cap, "--data-dir: empty path");
                return LQ_CONFIG_ERROR;
            }
            cfg->data_dir = val;
        } else if (strcmp(flag, "--unix") == 0) {
            if (*val == '\0' || strlen(val) >= 108) {
                snprintf(err, err_cap, "--unix: path empty or longer than 107 bytes");
                return LQ_CONFIG_ERROR;
            }
            cfg->unix_path = val;
        } else if (strcmp(flag, "--sync") == 0) {
            if (strcmp(val, "full") == 0)
                cfg->sync = LQ_SYNC_FULL;
            else if (strcmp(val, "periodic") == 0)
                cfg->sync = LQ_SYNC_PERIODIC;
            else if (strcmp(val, "none") == 0)
                cfg->sync = LQ_SYNC_NONE;
            else {
                snprintf(err, err_cap, "--sync: expected full, periodic or none, got \"%s\"", val);
                return LQ_CONFIG_ERROR;
            }
        } else if (strcmp(flag, "--dispatch") == 0) {
            if (strcmp(val, "durable") == 0 || strcmp(val, "early") == 0) {
                cfg->early_dispatch = val[0] == 'e';
            } else {
                snprintf(err, err_cap, "--dispatch: expected durable or early, got \"%s\"", val);
                return LQ_CONFIG_ERROR;
            }
        } else if (strcmp(flag, "--map-size") == 0) {
            if (!lq_parse_bytes(val, &bytes) || bytes < MAP_SIZE_MIN || bytes > MAP_SIZE_MAX) {
                snprintf(err, err_cap, "--map-size: expected 1M..16T (suffix K/M/G/T), got \"%s\"", val);
                return LQ_CONFIG_ERROR;
            }
            cfg->map_size_bytes = bytes;
        } else if (strcmp(flag, "--max-payload") == 0) {
            if (!lq_parse_bytes(val, &bytes) || bytes < 1 || bytes > PAYLOAD_MAX_LIMIT) {
                snprintf(err, err_cap, "--max-payload: expected 1..1G (suffix K/M/G), got \"%s\"", val);
                return LQ_CONFIG_ERROR;
            }
            cfg->max_payload_bytes = (uint32_t)bytes;
        } else if (strcmp(flag, "--max-connections") == 0) {
            if (!lq_config_parse_u32(val, 1, CONNECTIONS_MAX_LIMIT, &cfg->max_connections)) {
                snprintf(err, err_cap, "--max-connections: expected 1..%u, got \"%s\"", CONNECTIONS_MAX_LIMIT, val);
                return LQ_CONFIG_ERROR;
            }
        } else if (strcmp(flag, "--log-level") == 0) {
            if (!lq_log_level_parse(val, &cfg->log_level)) {
                snprintf(err, err_cap, "--log-level: expected debug, info, warn or error, got \"%s\"", val);
                return LQ_CONFIG_ERROR;
            }
        } else if (strcmp(flag, "--result-retention") == 0) {
            if (!lq_config_parse_u32(val, 0, RETENTION_MAX_MS, &cfg->result_retention_ms)) {
                snprintf(err, err_cap, "--result-retention: expected 0..%u ms, got \"%s\"", RETENTION_MAX_MS, val);
                return LQ_CONFIG_ERROR;
            }
        } else if (strcmp(flag, "--http-listen") == 0) {
            bool off = strcmp(val, "off") == 0;
            if (!off && (*val == '\0' || strrchr(val, ':') == NULL)) {
                snprintf(err, err_cap, "--http-listen: expected HOST:PORT or off, got \"%s\"", val);
                return LQ_CONFIG_ERROR;
            }
            cfg->http_listen = off ? NULL : val;
            cfg->http_listen_set = !off;
        } else if (strcmp(flag, "--auth") == 0) {
            if (*val == '\0') {
                snprintf(err, err_cap, "--auth: empty path");
                return LQ_CONFIG_ERROR;
            }
            cfg->auth_path = val;
        } else if (strcmp(flag, "--beanstalk-listen") == 0) {
            if (*val == '\0' || strrchr(val, ':') == NULL) {
                snprintf(err, err_cap, "--beanstalk-listen: expected HOST:PORT, got \"%s\"", val);
                return LQ_CONFIG_ERROR;
            }
            cfg->beanstalk_listen = val;
        } else if (strcmp(flag, "--beanstalk-max-job-size") == 0) {
            if (!lq_parse_bytes(val, &bytes) || bytes > PAYLOAD_MAX_LIMIT) {
                snprintf(err, err_cap, "--beanstalk-max-job-size: expected 0..1G (suffix K/M/G), got \"%s\"", val);
                return LQ_CONFIG_ERROR;
            }
            cfg->beanstalk_max_job = (uint32_t)bytes;
        } else if (strcmp(flag, "--beanstalk-lanes") == 0) {
            cfg->beanstalk_lanes = val;
        } else if (strcmp(flag, "--lanes") == 0) {
            if (add_lanes(cfg, val, err, err_cap) != LQ_CONFIG_RUN)
                return LQ_CONFIG_ERROR;
        } else if (strcmp(flag, "--lane-config") == 0) {
            if (lq_config_add_lane_flag(cfg, val, err, err_cap) != LQ_CONFIG_RUN)
                return LQ_CONFIG_ERROR;
        } else if (limit_flag(cfg, flag, val, err, err_cap) != LQ_CONFIG_RUN) {
            return LQ_CONFIG_ERROR;
        }
    }
    if (cfg->beanstalk_max_job > cfg->max_payload_bytes) {
        snprintf(err, err_cap, "--beanstalk-max-job-size %u is over --max-payload %u", cfg->beanstalk_max_job,
                 cfg->max_payload_bytes);
        return LQ_CONFIG_ERROR;
    }
    if (cfg->low_watermark_pct > cfg->high_watermark_pct) {
        snprintf(err, err_cap, "--low-watermark (%u) is above --high-watermark (%u)", cfg->low_watermark_pct,
                 cfg->high_watermark_pct);
        return LQ_CONFIG_ERROR;
    }
    return LQ_CONFIG_RUN;
}

void lq_config_free(lq_config *cfg)
{
    if (cfg->queues != NULL) {
        for (uint32_t i = 0; i < cfg->n_queues; i++)
            free(cfg->queues[i].text);
        free(cfg->queues);
    }
    cfg->queues = NULL;
    cfg->n_queues = 0;
    if (cfg->lane_flags != NULL) {
        for (uint32_t i = 0; i < cfg->n_lane_flags; i++)
            free(cfg->lane_flags[i].text);
        free(cfg->lane_flags);
    }
    cfg->lane_flags = NULL;
    cfg->n_lane_flags = 0;
}
