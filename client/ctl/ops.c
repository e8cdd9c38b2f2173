/* leaseqctl queues, stats, pause, resume, drain, purge, peek, cancel: operating queues. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"

#define PURGE_TIMEOUT_MS 600000 /* a purge of millions of jobs takes seconds; this is its default limit */
#define DRAIN_POLL_MS 200

static const char QUEUES_HELP[] =
    "usage: leaseqctl queues\n"
    "\n"
    "One line per queue: NAME STATE LANES READY LEASED DELAYED DEAD, where STATE is active,\n"
    "draining (new enqueues refused), paused (every lane) or partly-paused.\n"
    "--json: {\"queues\":[{\"name\":S,\"state\":S,\"lanes\":N,\"ready\":N,\"leased\":N,\n"
    "        \"delayed\":N,\"dead\":N,\"pending\":N}]}\n";

static const char STATS_HELP[] =
    "usage: leaseqctl stats [QUEUE]\n"
    "\n"
    "Per queue and lane (all queues without QUEUE): counts, totals and rates.\n"
    "Output: a table QUEUE LANE WEIGHT READY LEASED DELAYED DEAD EXPIRED OLDEST_S ENQ/S ACK/S STATE\n"
    "(EXPIRED: jobs whose deadline passed before dispatch since the broker started; OLDEST_S: age\n"
    "of the oldest ready job in seconds; rates over the last ~10 s; STATE: ok, paused, draining).\n"
    "--json: {\"queues\":[{\"name\":S,\"draining\":B,\"lease_ms\":N,\"max_attempts\":N,\"lanes\":[{\"name\":S,\n"
    "        \"weight\":N,\"ready\":N,\"leased\":N,\"delayed\":N,\"dead\":N,\"pending\":N,\"paused\":B,\n"
    "        \"sheddable\":B,\"oldest_ready_age_ms\":N,\"enqueued_total\":N,\"leased_total\":N,\n"
    "        \"acked_total\":N,\"expired_total\":N,\"purged_total\":N,\"dead_lettered_total\":N,\n"
    "        \"cancelled_total\":N,\"enqueue_rate\":F,\"ack_rate\":F,\"max_queued\":N,\n"
    "        \"max_queued_bytes\":N,\"max_wait_ms\":N}]}]}\n";

static const char PAUSE_HELP[] =
    "usage: leaseqctl pause QUEUE [--lane L] [--for DURATION]\n"
    "\n"
    "Stops dispatching from one lane (or every lane of QUEUE); enqueues are still accepted.\n"
    "Persisted: a restart keeps the pause. --for lifts it by itself after DURATION\n"
    "(e.g. 90s, 15m, 2h; a plain number is seconds).\n"
    "Output: \"paused N lanes\". --json: {\"ok\":true,\"lanes\":N}\n";

static const char RESUME_HELP[] =
    "usage: leaseqctl resume QUEUE [--lane L]\n"
    "\n"
    "Dispatches again from one lane (or every lane of QUEUE). Resuming the whole queue also\n"
    "ends a drain (enqueues are accepted again).\n"
    "Output: \"resumed N lanes\". --json: {\"ok\":true,\"lanes\":N}\n";

static const char DRAIN_HELP[] =
    "usage: leaseqctl drain QUEUE [--wait] [--stop]\n"
    "\n"
    "New enqueues to QUEUE get DRAINING; leasing goes on until it is empty. The broker logs\n"
    "\"drain done\" once nothing is ready, delayed or leased. The queue refuses enqueues until\n"
    "'drain --stop' or 'resume QUEUE'.\n"
    "  --wait   wait until the queue is empty (time limit: --timeout, default 600000 here)\n"
    "  --stop   end the drain\n"
    "Output: \"draining QUEUE: N jobs left\", with --wait then \"drained QUEUE\".\n"
    "--json: {\"queue\":S,\"remaining\":N,\"drained\":B}\n";

static const char PURGE_HELP[] =
    "usage: leaseqctl purge QUEUE [--lane L] [--older-than DURATION]\n"
    "\n"
    "Deletes the ready and delayed jobs of QUEUE (or of one lane), only those enqueued at least\n"
    "DURATION ago with --older-than (e.g. 10m). Leased jobs are left to their workers; dead\n"
    "jobs stay (see 'dlq purge'). Producers waiting on a purged job learn \"purged\". The\n"
    "broker works through big queues in steps and keeps serving meanwhile; the command\n"
    "returns when it is done (time limit: --timeout, default 600000 here).\n"
    "Output: the number of jobs purged. --json: {\"purged\":N}\n";

static const char PEEK_HELP[] =
    "usage: leaseqctl peek ID [--payload PATH]\n"
    "\n"
    "Shows a job: state, queue, lane, tenant, priority, attempts, payload size, times, last\n"
    "error, headers; for a job that ended, what its result record keeps (finished: true).\n"
    "  --payload PATH   also write its payload to PATH ('-': stdout, the rest to stderr)\n"
    "Output: \"key: value\" lines. --json: one object with the same keys.\n";

static const char CANCEL_HELP[] =
    "usage: leaseqctl cancel ID\n"
    "\n"
    "Ends a ready, delayed or dead job as cancelled (producers waiting on it learn\n"
    "\"cancelled\"). A leased job is refused with INVALID_ARGUMENT: its worker's ack or nack\n"
    "decides; cancel it after a nack, or purge.\n"
    "Output: nothing. --json: {\"ok\":true}\n";

/* "90s", "15m", "2h", "1d", "500ms"; a plain number is seconds. */
bool parse_duration_ms(const char *s, uint64_t *out)
{
    if (s == NULL || s[0] < '0' || s[0] > '9')
        return false;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    uint64_t mul;
    if (strcmp(end, "ms") == 0)
        mul = 1;
    else if (*end == '\0' || strcmp(end, "s") == 0)
        mul = 1000;
    else if (strcmp(end, "m") == 0)
        mul = 60000;
    else if (strcmp(end, "h") == 0)
        mul = 3600000;
    else if (strcmp(end, "d") == 0)
        mul = 86400000;
    else
        return false;
    if (v > UINT64_MAX / mul)
        return false;
    *out = v * mul;
    return true;
}

static int print_json_checked(json_t *j)
{
    if (j == NULL) {
        fprintf(stderr, "leaseqctl: out of memory building JSON\n");
        return EXIT_FAIL;
    }
    print_json(j);
    return 0;
}

/* ---- queues, stats -------------------------------------------------------------------------- */

static const char *queue_state(const leaseq_queue_info *q)
{
    size_t paused = 0;
    for (size_t l = 0; l < q->n_lanes; l++)
        paused += q->lanes[l].paused;
    if (q->draining)
        return "draining";
    return paused == 0 ? "active" : paused == q->n_lanes ? "paused" : "partly-paused";
}

static int inspect(global_opts *g, const char *queue, leaseq **cp, leaseq_inspect_result **r)
{
    int rc = 0;
    *cp = open_conn(g, &rc);
    if (*cp == NULL)
        return rc;
    leaseq_err e = leaseq_inspect(*cp, queue, r, g->timeout_ms);
    return e == LEASEQ_OK ? 0 : call_failed(*cp, e);
}

int cmd_queues(global_opts *g, int argc, char **argv)
{
    static const struct option lo[] = { GLOBAL_LONGOPTS, { NULL, 0, NULL, 0 } };
    PARSE_OPTS_LOOP("queues", QUEUES_HELP, "", lo, )
    if (optind != argc)
        return usage_error("queues", "takes no arguments");
    leaseq *c = NULL;
    leaseq_inspect_result *r = NULL;
    int rc = inspect(g, NULL, &c, &r);
    if (rc == 0) {
        json_t *arr = g->json ? json_array() : NULL;
        if (!g->json)
            printf("%-24s  %-13s  %5s  %10s  %10s  %10s  %10s\n", "NAME", "STATE", "LANES", "READY", "LEASED",
                   "DELAYED", "DEAD");
        for (size_t q = 0; q < r->n_queues; q++) {
            const leaseq_queue_info *x = &r->queues[q];
            uint64_t t[5] = { 0 };
            for (size_t l = 0; l < x->n_lanes; l++) {
                t[0] += x->lanes[l].ready;
                t[1] += x->lanes[l].leased;
                t[2] += x->lanes[l].delayed;
                t[3] += x->lanes[l].dead;
                t[4] += x->lanes[l].pending;
            }
            if (g->json)
                json_array_append_new(arr, json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "name", x->name, "state",
                                                     queue_state(x), "lanes", (json_int_t)x->n_lanes, "ready",
                                                     (json_int_t)t[0], "leased", (json_int_t)t[1], "delayed",
                                                     (json_int_t)t[2], "dead", (json_int_t)t[3], "pending",
                                                     (json_int_t)t[4]));
            else
                printf("%-24s  %-13s  %5zu  %10" PRIu64 "  %10" PRIu64 "  %10" PRIu64 "  %10" PRIu64 "\n", x->name,
                       queue_state(x), x->n_lanes, t[0], t[1], t[2], t[3]);
        }
        if (g->json)
            rc = print_json_checked(json_pack("{s:o}", "queues", arr));
    }
    leaseq_inspect_free(r);
    leaseq_close(c);
    return rc;
}

static json_t *lane_json(const leaseq_lane_info *l)
{
    json_t *o = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:b,s:b,s:I}", "name", l->name, "weight",
                          (json_int_t)l->weight, "ready", (json_int_t)l->ready, "leased", (json_int_t)l->leased,
                          "delayed", (json_int_t)l->delayed, "dead", (json_int_t)l->dead, "pending",
                          (json_int_t)l->pending, "paused", l->paused, "sheddable", l->sheddable,
                          "oldest_ready_age_ms", (json_int_t)l->oldest_ready_age_ms);
    if (o == NULL)
        return NULL;
    json_t *more = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:I,s:I,s:I,s:I}", "enqueued_total",
                             (json_int_t)l->enqueued_total, "leased_total", (json_int_t)l->leased_total, "acked_total",
                             (json_int_t)l->acked_total, "expired_total", (json_int_t)l->expired_total, "purged_total",
                             (json_int_t)l->purged_total, "dead_lettered_total", (json_int_t)l->dead_lettered_total,
                             "cancelled_total", (json_int_t)l->cancelled_total, "enqueue_rate", l->enqueue_rate,
                             "ack_rate", l->ack_rate, "max_queued", (json_int_t)l->max_queued, "max_queued_bytes",
                             (json_int_t)l->max_queued_bytes, "max_wait_ms", (json_int_t)l->max_wait_ms,
                             "paused_for_ms", (json_int_t)l->paused_for_ms);
    if (more == NULL || json_object_update(o, more) != 0) {
        json_decref(o);
        o = NULL;
    }
    json_decref(more);
    return o;
}

int cmd_stats(global_opts *g, int argc, char **argv)
{
    static const struct option lo[] = { GLOBAL_LONGOPTS, { NULL, 0, NULL, 0 } };
    PARSE_OPTS_LOOP("stats", STATS_HELP, "", lo, )
    if (argc - optind > 1)
        return usage_error("stats", "takes at most one QUEUE");
    leaseq *c = NULL;
    leaseq_inspect_result *r = NULL;
    int rc = inspect(g, optind < argc ? argv[optind] : NULL, &c, &r);
    if (rc == 0 && g->json) {
        json_t *qs = json_array();
        for (size_t q = 0; q < r->n_queues && qs != NULL; q++) {
            const leaseq_queue_info *x = &r->queues[q];
            json_t *lanes = json_array();
            for (size_t l = 0; l < x->n_lanes && lanes != NULL; l++)
                json_array_append_new(lanes, lane_json(&x->lanes[l]));
            json_array_append_new(qs, json_pack("{s:s,s:b,s:I,s:I,s:o}", "name", x->name, "draining", x->draining,
                                                "lease_ms", (json_int_t)x->lease_ms, "max_attempts",
                                                (json_int_t)x->max_attempts, "lanes", lanes));
        }
        rc = print_json_checked(json_pack("{s:o}", "queues", qs));
    } else if (rc == 0) {
        int wq = 5, wl = 4; /* widths of "QUEUE", "LANE" */
        for (size_t q = 0; q < r->n_queues; q++) {
            int n = (int)strlen(r->queues[q].name);
            wq = n > wq ? n : wq;
            for (size_t l = 0; l < r->queues[q].n_lanes; l++) {
                n = (int)strlen(r->queues[q].lanes[l].name);
                wl = n > wl ? n : wl;
            }
        }
        printf("%-*s  %-*s  %6s  %10s  %8s  %8s  %8s  %8s  %9s  %8s  %8s  %s\n", wq, "QUEUE", wl, "LANE", "WEIGHT",
               "READY", "LEASED", "DELAYED", "DEAD", "EXPIRED", "OLDEST_S", "ENQ/S", "ACK/S", "STATE");
        for (size_t q = 0; q < r->n_queues; q++)
            for (size_t l = 0; l < r->queues[q].n_lanes; l++) {
                const leaseq_lane_info *x = &r->queues[q].lanes[l];
                printf("%-*s  %-*s  %6u  %10" PRIu64 "  %8" PRIu64 "  %8" PRIu64 "  %8" PRIu64 "  %8" PRIu64
                       "  %9.1f  %8.1f  %8.1f  %s\n",
                       wq, r->queues[q].name, wl, x->name, x->weight, x->ready, x->leased, x->delayed, x->dead,
                       x->expired_total, (double)x->oldest_ready_age_ms / 1000.0, x->enqueue_rate, x->ack_rate,
                       r->queues[q].draining ? "draining" : x->paused ? "paused" : "ok");
            }
    }
    leaseq_inspect_free(r);
    leaseq_close(c);
    return rc;
}

/* ---- pause, resume, drain ------------------------------------------------------------------- */

static int pause_resume(global_opts *g, int argc, char **argv, bool resume)
{
    const char *cmd = resume ? "resume" : "pause";
    const char *lane = NULL;
    uint64_t for_ms = 0;
    enum { O_LANE = 1, O_FOR };
    static const struct option lo[] = { GLOBAL_LONGOPTS, { "lane", required_argument, NULL, O_LANE },
                                        { "for", required_argument, NULL, O_FOR }, { NULL, 0, NULL, 0 } };
    PARSE_OPTS_LOOP(cmd, resume ? RESUME_HELP : PAUSE_HELP, "", lo,
                    case O_LANE: lane = optarg; break;
                    case O_FOR:
                        if (resume || !parse_duration_ms(optarg, &for_ms) || for_ms == 0)
                            return usage_error(cmd, "--for wants a duration such as 90s or 15m");
                        break;)
    if (argc - optind != 1)
        return usage_error(cmd, "want one QUEUE");
    int rc = 0;
    leaseq *c = open_conn(g, &rc);
    if (c == NULL)
        return rc;
    uint32_t n = 0;
    leaseq_err e = leaseq_pause(c, argv[optind], lane, resume, for_ms, &n, g->timeout_ms);
    if (e != LEASEQ_OK)
        rc = call_failed(c, e);
    else if (g->json)
        rc = print_json_checked(json_pack("{s:b,s:I}", "ok", 1, "lanes", (json_int_t)n));
    else
        printf("%s %u lane%s\n", resume ? "resumed" : "paused", n, n == 1 ? "" : "s");
    leaseq_close(c);
    return rc;
}

int cmd_pause(global_opts *g, int argc, char **argv) { return pause_resume(g, argc, argv, false); }
int cmd_resume(global_opts *g, int argc, char **argv) { return pause_resume(g, argc, argv, true); }

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { .tv_sec = ms / 1000u, .tv_nsec = (long)(ms % 1000u) * 1000000L };
    nanosleep(&ts, NULL);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Jobs of queue still to finish, from an inspect. */
static leaseq_err remaining(leaseq *c, const char *queue, uint64_t *left, int timeout_ms)
{
    leaseq_inspect_result *r = NULL;
    leaseq_err e = leaseq_inspect(c, queue, &r, timeout_ms);
    *left = 0;
    for (size_t q = 0; e == LEASEQ_OK && q < r->n_queues; q++)
        for (size_t l = 0; l < r->queues[q].n_lanes; l++) {
            const leaseq_lane_info *x = &r->queues[q].lanes[l];
            *left += x->ready + x->leased + x->delayed + x->pending;
        }
    leaseq_inspect_free(r);
    return e;
}

int cmd_drain(global_opts *g, int argc, char **argv)
{
    bool wait = false, stop = false, timeout_set = false;
    enum { O_WAIT = 1, O_STOP };
    static const struct option lo[] = { GLOBAL_LONGOPTS, { "wait", no_argument, NULL, O_WAIT },
                                        { "stop", no_argument, NULL, O_STOP }, { NULL, 0, NULL, 0 } };
    int given_timeout = g->timeout_ms;
    PARSE_OPTS_LOOP("drain", DRAIN_HELP, "", lo, case O_WAIT: wait = true; break; case O_STOP: stop = true; break;)
    timeout_set = g->timeout_ms != given_timeout;
    if (argc - optind != 1)
        return usage_error("drain", "want one QUEUE");
    if (wait && stop)
        return usage_error("drain", "--wait and --stop exclude each other");
    const char *queue = argv[optind];
    int rc = 0;
    leaseq *c = open_conn(g, &rc);
    if (c == NULL)
        return rc;
    uint64_t left = 0;
    leaseq_err e = leaseq_drain(c, queue, stop, &left, g->timeout_ms);
    if (e != LEASEQ_OK) {
        rc = call_failed(c, e);
        leaseq_close(c);
        return rc;
    }
    if (!g->json)
        printf(stop ? "drain of %s stopped: %" PRIu64 " jobs left\n" : "draining %s: %" PRIu64 " jobs left\n", queue,
               left);
    bool drained = left == 0 && !stop;
    if (wait) {
        fflush(stdout);
        uint64_t end = mono_ms() + (uint64_t)(timeout_set ? g->timeout_ms : 600000);
        while (e == LEASEQ_OK && left > 0 && mono_ms() < end) {
            sleep_ms(DRAIN_POLL_MS);
            e = remaining(c, queue, &left, g->timeout_ms);
        }
        drained = e == LEASEQ_OK && left == 0;
        if (e != LEASEQ_OK)
            rc = call_failed(c, e);
        else if (!drained) {
            fprintf(stderr, "leaseqctl: DEADLINE_EXCEEDED: %" PRIu64 " jobs still in %s\n", left, queue);
            rc = EXIT_FAIL;
        } else if (!g->json)
            printf("drained %s\n", queue);
    }
    if (g->json && rc == 0)
        rc = print_json_checked(json_pack("{s:s,s:I,s:b}", "queue", queue, "remaining", (json_int_t)left, "drained",
                                          drained));
    leaseq_close(c);
    return rc;
}

/* ---- purge ---------------------------------------------------------------------------------- */

int cmd_purge(global_opts *g, int argc, char **argv)
{
    const char *lane = NULL;
    uint64_t older = 0;
    enum { O_LANE = 1, O_OLDER };
    static const struct option lo[] = { GLOBAL_LONGOPTS, { "lane", required_argument, NULL, O_LANE },
                                        { "older-than", required_argument, NULL, O_OLDER }, { NULL, 0, NULL, 0 } };
    int given_timeout = g->timeout_ms;
    PARSE_OPTS_LOOP("purge", PURGE_HELP, "", lo,
                    case O_LANE: lane = optarg; break;
                    case O_OLDER:
                        if (!parse_duration_ms(optarg, &older) || older == 0)
                            return usage_error("purge", "--older-than wants a duration such as 10m");
                        break;)
    if (argc - optind != 1)
        return usage_error("purge", "want one QUEUE");
    int call_ms = g->timeout_ms != given_timeout ? g->timeout_ms : PURGE_TIMEOUT_MS;
    int rc = 0;
    leaseq *c = open_conn(g, &rc);
    if (c == NULL)
        return rc;
    uint64_t n = 0;
    leaseq_err e = leaseq_purge(c, argv[optind], lane, older, false, &n, call_ms);
    if (e != LEASEQ_OK)
        rc = call_failed(c, e);
    else if (g->json)
        rc = print_json_checked(json_pack("{s:I}", "purged", (json_int_t)n));
    else
        printf("%" PRIu64 "\n", n);
    leaseq_close(c);
    return rc;
}

/* ---- peek, cancel --------------------------------------------------------------------------- */

int cmd_peek(global_opts *g, int argc, char **argv)
{
    const char *path = NULL;
    enum { O_PAYLOAD = 1 };
    static const struct option lo[] = { GLOBAL_LONGOPTS, { "payload", required_argument, NULL, O_PAYLOAD },
                                        { NULL, 0, NULL, 0 } };
    PARSE_OPTS_LOOP("peek", PEEK_HELP, "", lo, case O_PAYLOAD: path = optarg; break;)
    uint64_t id;
    if (argc - optind != 1 || !parse_u64(argv[optind], &id))
        return usage_error("peek", "want one job ID");
    int rc = 0;
    leaseq *c = open_conn(g, &rc);
    if (c == NULL)
        return rc;
    leaseq_job_info *j = NULL;
    leaseq_err e = leaseq_peek(c, id, path != NULL, &j, g->timeout_ms);
    if (e != LEASEQ_OK) {
        rc = call_failed(c, e);
        leaseq_close(c);
        return rc;
    }
    FILE *info = path != NULL && strcmp(path, "-") == 0 ? stderr : stdout;
    if (path != NULL && !write_file(path, j->payload, j->payload != NULL ? j->payload_len : 0))
        rc = EXIT_FAIL;
    json_t *o = json_pack("{s:I,s:s,s:b,s:s,s:s,s:s,s:i,s:I,s:I,s:I,s:I,s:I,s:I,s:s,s:s}", "id", (json_int_t)j->job_id,
                          "state", leaseq_state_name(j->state), "finished", j->finished, "queue", j->queue, "lane",
                          j->lane, "tenant", j->tenant, "priority", (int)j->priority, "attempts",
                          (json_int_t)j->attempts, "max_attempts", (json_int_t)j->max_attempts, "payload_size",
                          (json_int_t)j->payload_len, "enqueued_at_ms", (json_int_t)j->enqueued_at_ms, "deadline_ms",
                          (json_int_t)j->deadline_ms, "not_before_ms", (json_int_t)j->not_before_ms, "last_error",
                          j->last_error, "idempotency_key", j->idempotency_key);
    json_t *h = json_object();
    for (size_t i = 0; i < j->n_headers && h != NULL; i++)
        json_object_set_new(h, j->headers[i].key, json_string(j->headers[i].value));
    if (o != NULL && h != NULL)
        json_object_set_new(o, "headers", h);
    if (g->json) {
        char *txt = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL; /* owner: here */
        if (txt != NULL)
            fprintf(info, "%s\n", txt);
        else
            rc = EXIT_FAIL;
        free(txt);
    } else if (o != NULL) {
        const char *key;
        json_t *v;
        json_object_foreach(o, key, v) {
            if (json_is_object(v)) {
                const char *hk;
                json_t *hv;
                json_object_foreach(v, hk, hv) fprintf(info, "header: %s=%s\n", hk, json_string_value(hv));
            } else if (json_is_string(v)) {
                fprintf(info, "%s: %s\n", key, json_string_value(v));
            } else if (json_is_boolean(v)) {
                fprintf(info, "%s: %s\n", key, json_is_true(v) ? "true" : "false");
            } else {
                fprintf(info, "%s: %" JSON_INTEGER_FORMAT "\n", key, json_integer_value(v));
            }
        }
    }
    json_decref(o);
    leaseq_job_info_free(j);
    leaseq_close(c);
    return rc;
}

int cmd_cancel(global_opts *g, int argc, char **argv)
{
    static const struct option lo[] = { GLOBAL_LONGOPTS, { NULL, 0, NULL, 0 } };
    PARSE_OPTS_LOOP("cancel", CANCEL_HELP, "", lo, )
    uint64_t id;
    if (argc - optind != 1 || !parse_u64(argv[optind], &id))
        return usage_error("cancel", "want one job ID");
    int rc = 0;
    leaseq *c = open_conn(g, &rc);
    if (c == NULL)
        return rc;
    leaseq_err e = leaseq_cancel(c, id, g->timeout_ms);
    if (e != LEASEQ_OK)
        rc = call_failed(c, e);
    else if (g->json)
        rc = print_json_checked(json_pack("{s:b}", "ok", 1));
    leaseq_close(c);
    return rc;
}
