/* --lane-config QUEUE/LANE:key=value,...: lane settings given at start.
 *
 *   --lane-config images/api:weight=9,max_wait_ms=30000
 *   --lane-config images/app:weight=1,max_queued=200000,max_queued_bytes=2G,sheddable=1
 *
 * Keys not named keep the lane's value (its --lanes weight, or the defaults of a new lane). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define LANE_WEIGHT_MAX 1000000u
#define MAX_WAIT_LIMIT_MS (30ull * 24 * 3600 * 1000)

static bool parse_u64(const char *s, uint64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

static bool set_key(lq_lane_flag *f, const char *key, const char *val)
{
    uint64_t v = 0;
    if (strcmp(key, "weight") == 0) {
        uint32_t w = 0;
        if (!lq_config_parse_u32(val, 0, LANE_WEIGHT_MAX, &w))
            return false;
        f->s.weight = w;
        f->set |= LQ_LANE_SET_WEIGHT;
    } else if (strcmp(key, "max_queued") == 0) {
        if (!parse_u64(val, &v))
            return false;
        f->s.max_queued = v;
        f->set |= LQ_LANE_SET_MAX_QUEUED;
    } else if (strcmp(key, "max_queued_bytes") == 0) {
        if (!lq_parse_bytes(val, &v))
            return false;
        f->s.max_queued_bytes = v;
        f->set |= LQ_LANE_SET_MAX_BYTES;
    } else if (strcmp(key, "max_wait_ms") == 0) {
        if (!parse_u64(val, &v) || v > MAX_WAIT_LIMIT_MS)
            return false;
        f->s.max_wait_ms = v;
        f->set |= LQ_LANE_SET_MAX_WAIT;
    } else if (strcmp(key, "sheddable") == 0) {
        if (strcmp(val, "0") != 0 && strcmp(val, "1") != 0)
            return false;
        f->s.sheddable = val[0] == '1';
        f->set |= LQ_LANE_SET_SHEDDABLE;
    } else {
        return false;
    }
    return true;
}

static bool parse(lq_lane_flag *f, char *err, size_t err_cap)
{
    char *s = f->text;
    char *slash = strchr(s, '/');
    char *colon = slash ? strchr(slash, ':') : NULL;
    if (slash == NULL || slash == s || colon == NULL || colon == slash + 1 || colon[1] == '\0') {
        snprintf(err, err_cap, "--lane-config: expected QUEUE/LANE:KEY=VALUE[,KEY=VALUE...], got \"%s\"", s);
        return false;
    }
    *slash = '\0';
    *colon = '\0';
    f->queue = (lq_str){s, (uint32_t)(slash - s)};
    f->lane = (lq_str){slash + 1, (uint32_t)(colon - slash - 1)};
    char *p = colon + 1;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma != NULL)
            *comma = '\0';
        char *eq = strchr(p, '=');
        if (eq == NULL || eq == p) {
            snprintf(err, err_cap, "--lane-config %s/%s: expected KEY=VALUE, got \"%s\"", f->queue.ptr, f->lane.ptr, p);
            return false;
        }
        *eq = '\0';
        if (!set_key(f, p, eq + 1)) {
            snprintf(err, err_cap,
                     "--lane-config %s/%s: bad %s=%s (keys: weight, max_queued, max_queued_bytes, max_wait_ms, "
                     "sheddable=0|1)",
                     f->queue.ptr, f->lane.ptr, p, eq + 1);
            return false;
        }
        if (comma == NULL)
            return true;
        p = comma + 1;
    }
}

lq_config_result lq_config_add_lane_flag(lq_config *cfg, const char *val, char *err, size_t err_cap)
{
    if (cfg->n_lane_flags == LQ_CONFIG_LANE_FLAGS_MAX) {
        snprintf(err, err_cap, "--lane-config: at most %d flags", LQ_CONFIG_LANE_FLAGS_MAX);
        return LQ_CONFIG_ERROR;
    }
    if (cfg->lane_flags == NULL) {
        cfg->lane_flags = calloc(LQ_CONFIG_LANE_FLAGS_MAX, sizeof *cfg->lane_flags); /* owner: lq_config_free */
        if (cfg->lane_flags == NULL) {
            snprintf(err, err_cap, "out of memory");
            return LQ_CONFIG_ERROR;
        }
    }
    lq_lane_flag *f = &cfg->lane_flags[cfg->n_lane_flags];
    memset(f, 0, sizeof *f);
    f->text = strdup(val); /* owner: lq_config_free */
    if (f->text == NULL) {
        snprintf(err, err_cap, "out of memory");
        return LQ_CONFIG_ERROR;
    }
    cfg->n_lane_flags++;
    return parse(f, err, err_cap) ? LQ_CONFIG_RUN : LQ_CONFIG_ERROR;
}
