/* leaseqctl ping, workers, clear-suspect: looking at the broker (stats: ops.c). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"

static const char PING_HELP[] =
    "usage: leaseqctl ping\n"
    "\n"
    "Connects, says hello and makes one round trip.\n"
    "Output: \"ok SERVER_NAME RTT_MS\". --json: {\"ok\":true,\"server\":S,\"role\":N,\"rtt_ms\":F}\n";

static double now_ms_f(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int cmd_ping(global_opts *g, int argc, char **argv)
{
    static const struct option lo[] = { GLOBAL_LONGOPTS, { NULL, 0, NULL, 0 } };
    PARSE_OPTS_LOOP("ping", PING_HELP, "", lo, )
    if (optind != argc)
        return usage_error("ping", "takes no arguments");
    int rc;
    leaseq *c = open_conn(g, &rc);
    if (c == NULL)
        return rc;
    double t0 = now_ms_f();
    leaseq_err e = leaseq_ping(c, g->timeout_ms);
    double rtt = now_ms_f() - t0;
    leaseq_server_info si;
    leaseq_get_server_info(c, &si);
    if (e != LEASEQ_OK)
        rc = call_failed(c, e);
    else if (g->json)
        print_json(json_pack("{s:b,s:s,s:i,s:f}", "ok", 1, "server", si.server_name, "role", (int)si.role,
                             "rtt_ms", rtt));
    else
        printf("ok %s %.3f\n", si.server_name[0] ? si.server_name : "-", rtt);
    leaseq_close(c);
    return rc;
}

static const char WORKERS_HELP[] =
    "usage: leaseqctl workers\n"
    "\n"
    "The broker's open sessions: worker processes (and other connections, WORKER \"-\").\n"
    "Output: a table with the columns SESSION WORKER ADDRESS LEASES HB_AGE_MS STATE, where\n"
    "HB_AGE_MS is the time since the session's last heartbeat or request and STATE is ok,\n"
    "stalled (missed its heartbeats; its leases were requeued) or suspect (quarantined after\n"
    "losing leases again and again: it gets no new leases; see clear-suspect).\n"
    "--json: an array of {\"session\":N,\"worker_id\":S,\"address\":S,\"heartbeat_ms\":N,\n"
    "        \"leases\":N,\"last_seen_age_ms\":N,\"state\":S,\"stalled\":BOOL,\"suspect\":BOOL,\n"
    "        \"suspect_for_ms\":N,\"recent_losses\":N}\n";

static const char CLEAR_SUSPECT_HELP[] =
    "usage: leaseqctl clear-suspect WORKER\n"
    "\n"
    "Lifts the quarantine of worker id WORKER at once and forgets its recent lease losses,\n"
    "e.g. after its GPU was fixed. Fails with NOT_FOUND for a worker id the broker does not\n"
    "know. Output: nothing. --json: {\"ok\":true}\n";

static const char *worker_state(const leaseq_worker_info *w)
{
    return w->suspect ? "suspect" : w->stalled ? "stalled" : "ok";
}

static int print_workers_json(const leaseq_worker_info *w, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n && arr != NULL; i++) {
        json_t *o = json_pack("{s:I,s:s,s:s,s:I,s:I,s:I,s:s,s:b,s:b,s:I,s:I}", "session", (json_int_t)w[i].session_id,
                              "worker_id", w[i].worker_id, "address", w[i].address, "heartbeat_ms",
                              (json_int_t)w[i].heartbeat_ms, "leases", (json_int_t)w[i].leases_held,
                              "last_seen_age_ms", (json_int_t)w[i].last_seen_age_ms, "state", worker_state(&w[i]),
                              "stalled", w[i].stalled, "suspect", w[i].suspect, "suspect_for_ms",
                              (json_int_t)w[i].suspect_for_ms, "recent_losses", (json_int_t)w[i].recent_losses);
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    if (arr == NULL) {
        fprintf(stderr, "leaseqctl: out of memory building JSON\n");
        return EXIT_FAIL;
    }
    print_json(arr);
    return 0;
}

int cmd_workers(global_opts *g, int argc, char **argv)
{
    static const struct option lo[] = { GLOBAL_LONGOPTS, { NULL, 0, NULL, 0 } };
    PARSE_OPTS_LOOP("workers", WORKERS_HELP, "", lo, )
    if (optind != argc)
        return usage_error("workers", "takes no arguments");
    int rc;
    leaseq *c = open_conn(g, &rc);
    if (c == NULL)
        return rc;
    leaseq_worker_info *w = NULL;
    size_t n = 0;
    leaseq_err e = leaseq_workers(c, &w, &n, g->timeout_ms);
    if (e != LEASEQ_OK) {
        rc = call_failed(c, e);
    } else if (g->json) {
        rc = print_workers_json(w, n);
    } else {
        int ww = 6, wa = 7; /* widths of "WORKER", "ADDRESS" */
        for (size_t i = 0; i < n; i++) {
            int k = (int)strlen(w[i].worker_id);
            ww = k > ww ? k : ww;
            k = (int)strlen(w[i].address);
            wa = k > wa ? k : wa;
        }
        printf("%7s  %-*s  %-*s  %6s  %10s  %s\n", "SESSION", ww, "WORKER", wa, "ADDRESS", "LEASES", "HB_AGE_MS",
               "STATE");
        for (size_t i = 0; i < n; i++)
            printf("%7" PRIu64 "  %-*s  %-*s  %6u  %10" PRIu64 "  %s\n", w[i].session_id, ww,
                   w[i].worker_id[0] ? w[i].worker_id : "-", wa, w[i].address, w[i].leases_held,
                   w[i].last_seen_age_ms, worker_state(&w[i]));
        rc = 0;
    }
    leaseq_workers_free(w);
    leaseq_close(c);
    return rc;
}

int cmd_clear_suspect(global_opts *g, int argc, char **argv)
{
    static const struct option lo[] = { GLOBAL_LONGOPTS, { NULL, 0, NULL, 0 } };
    PARSE_OPTS_LOOP("clear-suspect", CLEAR_SUSPECT_HELP, "", lo, )
    if (argc - optind != 1 || argv[optind][0] == '\0')
        return usage_error("clear-suspect", "want one WORKER id");
    int rc;
    leaseq *c = open_conn(g, &rc);
    if (c == NULL)
        return rc;
    leaseq_err e = leaseq_clear_suspect(c, argv[optind], g->timeout_ms);
    if (e != LEASEQ_OK)
        rc = call_failed(c, e);
    else if (g->json)
        print_json(json_pack("{s:b}", "ok", 1));
    leaseq_close(c);
    return rc;
}
