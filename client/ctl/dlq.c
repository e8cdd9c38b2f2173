/* leaseqctl dlq (list, peek, redrive, purge) and config (get, set). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

#define DLQ_PURGE_TIMEOUT_MS 600000
#define CONFIG_ITEMS_MAX 64

static const char DLQ_HELP[] =
    "usage: leaseqctl dlq list QUEUE [--limit N] [--after ID]\n"
    "       leaseqctl dlq peek QUEUE [--limit N] [--after ID]\n"
    "       leaseqctl dlq redrive QUEUE [ID] [--limit N]\n"
    "       leaseqctl dlq purge QUEUE\n"
    "\n"
    "The dead-letter set of QUEUE: jobs that failed their delivery limit or were nacked dead.\n"
    "  list     one line per job: ID LANE ATTEMPTS PAYLOAD_BYTES LAST_ERROR (first N, default\n"
    "           100, at most 1000, in id order; --after pages). A last line \"total N\".\n"
    "  peek     the same jobs, one block each with the full error text.\n"
    "  redrive  back to ready with attempts reset, at their old place in line: job ID, or\n"
    "           every dead job of QUEUE (in steps of --limit, default 10000). Prints the count.\n"
    "  purge    deletes every dead job of QUEUE; prints the count.\n"
    "--json: list/peek: {\"total\":N,\"jobs\":[{\"id\":N,\"lane\":S,\"tenant\":S,\"attempts\":N,\n"
    "        \"payload_size\":N,\"enqueued_at_ms\":N,\"last_error\":S}]}; redrive: {\"redriven\":N};\n"
    "        purge: {\"purged\":N}\n";

static const char CONFIG_HELP[] =
    "usage: leaseqctl config get QUEUE\n"
    "       leaseqctl config set QUEUE [--lane L] KEY=VALUE...\n"
    "\n"
    "Queue settings, stored in the broker's database and applied at once (no restart).\n"
    "Lane keys (need --lane): weight (0..1000000; 0 = only when other lanes are empty),\n"
    "  max_queued (jobs; 0 = no limit), max_queued_bytes (suffix K/M/G), max_wait_ms (default\n"
    "  deadline of its jobs), sheddable (true/false: refused first when storage fills).\n"
    "Queue keys (no --lane): lease_ms (default lease; 0 = the broker's), max_attempts (default\n"
    "  delivery limit; 0 = the broker's), retention_ms (how long finished jobs' results are\n"
    "  kept for wait; `default` = the broker's --result-retention).\n"
    "get output: \"SCOPE KEY VALUE\" lines, SCOPE \"queue\" or \"lane:NAME\".\n"
    "--json: get: {\"queue\":{K:V...},\"lanes\":{NAME:{K:V...}}}; set: {\"ok\":true}\n";

static int json_out(json_t *j)
{
    if (j == NULL) {
        fprintf(stderr, "leaseqctl: out of memory building JSON\n");
        return EXIT_FAIL;
    }
    print_json(j);
    return 0;
}

/* ---- dlq ------------------------------------------------------------------------------------ */

static int dlq_list(global_opts *g, leaseq *c, const char *queue, uint64_t after, uint32_t limit, bool details)
{
    leaseq_dead_job *v = NULL;
    size_t n = 0;
    uint64_t total = 0;
    leaseq_err e = leaseq_dead_list(c, queue, after, limit, &v, &n, &total, g->timeout_ms);
    if (e != LEASEQ_OK)
        return call_failed(c, e);
    int rc = 0;
    if (g->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n && arr != NULL; i++)
            json_array_append_new(arr, json_pack("{s:I,s:s,s:s,s:I,s:I,s:I,s:s}", "id", (json_int_t)v[i].job_id,
                                                 "lane", v[i].lane, "tenant", v[i].tenant, "attempts",
                                                 (json_int_t)v[i].attempts, "payload_size",
                                                 (json_int_t)v[i].payload_len, "enqueued_at_ms",
                                                 (json_int_t)v[i].enqueued_at_ms, "last_error", v[i].last_error));
        rc = json_out(json_pack("{s:I,s:o}", "total", (json_int_t)total, "jobs", arr));
    } else if (details) {
        for (size_t i = 0; i < n; i++)
            printf("id: %" PRIu64 "\nlane: %s\ntenant: %s\nattempts: %u\npayload_size: %u\nenqueued_at_ms: %" PRIu64
                   "\nlast_error: %s\n\n",
                   v[i].job_id, v[i].lane, v[i].tenant, v[i].attempts, v[i].payload_len, v[i].enqueued_at_ms,
                   v[i].last_error);
        printf("total %" PRIu64 "\n", total);
    } else {
        printf("%-20s  %-16s  %8s  %13s  %s\n", "ID", "LANE", "ATTEMPTS", "PAYLOAD_BYTES", "LAST_ERROR");
        for (size_t i = 0; i < n; i++) {
            /* one line per job: the error is cut at its first line break */
            int el = (int)strcspn(v[i].last_error, "\r\n");
            printf("%-20" PRIu64 "  %-16s  %8u  %13u  %.*s\n", v[i].job_id, v[i].lane, v[i].attempts,
                   v[i].payload_len, el, v[i].last_error);
        }
        printf("total %" PRIu64 "\n", total);
    }
    leaseq_dead_jobs_free(v, n);
    return rc;
}

int cmd_dlq(global_opts *g, int argc, char **argv)
{
    uint32_t limit = 0;
    uint64_t after = 0;
    enum { O_LIMIT = 1, O_AFTER };
    static const struct option lo[] = { GLOBAL_LONGOPTS, { "limit", required_argument, NULL, O_LIMIT },
                                        { "after", required_argument, NULL, O_AFTER }, { NULL, 0, NULL, 0 } };
    int given_timeout = g->timeout_ms;
    PARSE_OPTS_LOOP("dlq", DLQ_HELP, "", lo,
                    case O_LIMIT:
                        if (!parse_u32(optarg, &limit) || limit == 0)
                            return usage_error("dlq", "--limit wants a number > 0");
                        break;
                    case O_AFTER:
                        if (!parse_u64(optarg, &after))
                            return usage_error("dlq", "--after wants a job id");
                        break;)
    if (argc - optind < 2)
        return usage_error("dlq", "want a subcommand (list, peek, redrive, purge) and a QUEUE");
    const char *sub = argv[optind], *queue = argv[optind + 1];
    int extra = argc - optind - 2;
    uint64_t id = 0;
    bool is_redrive = strcmp(sub, "redrive") == 0;
    if (extra > (is_redrive ? 1 : 0) || (extra == 1 && !parse_u64(argv[optind + 2], &id)))
        return usage_error("dlq", "unexpected arguments after QUEUE");
    if (!is_redrive && strcmp(sub, "list") != 0 && strcmp(sub, "peek") != 0 && strcmp(sub, "purge") != 0)
        return usage_error("dlq", "unknown subcommand '%s'", sub);
    int rc = 0;
    leaseq *c = open_conn(g, &rc);
    if (c == NULL)
        return rc;
    if (strcmp(sub, "list") == 0 || strcmp(sub, "peek") == 0) {
        rc = dlq_list(g, c, queue, after, limit, strcmp(sub, "peek") == 0);
    } else if (is_redrive) {
        uint64_t total = 0, n = 0;
        leaseq_err e;
        /* every dead job: in steps, each one bounded on the broker */
        do {
            e = leaseq_redrive(c, queue, id, limit, &n, g->timeout_ms);
            total += e == LEASEQ_OK ? n : 0;
        } while (e == LEASEQ_OK && id == 0 && n > 0 && n == (limit ? limit : 10000u));
        if (e != LEASEQ_OK)
            rc = call_failed(c, e);
        else if (g->json)
            rc = json_out(json_pack("{s:I}", "redriven", (json_int_t)total));
        else
            printf("%" PRIu64 "\n", total);
    } else {
        uint64_t n = 0;
        int call_ms = g->timeout_ms != given_timeout ? g->timeout_ms : DLQ_PURGE_TIMEOUT_MS;
        leaseq_err e = leaseq_purge(c, queue, NULL, 0, true, &n, call_ms);
        if (e != LEASEQ_OK)
            rc = call_failed(c, e);
        else if (g->json)
            rc = json_out(json_pack("{s:I}", "purged", (json_int_t)n));
        else
            printf("%" PRIu64 "\n", n);
    }
    leaseq_close(c);
    return rc;
}

/* ---- config --------------------------------------------------------------------------------- */

static int config_get(global_opts *g, leaseq *c, const char *queue)
{
    leaseq_config_group *gr = NULL;
    size_t n = 0;
    leaseq_err e = leaseq_config_get(c, queue, &gr, &n, g->timeout_ms);
    if (e != LEASEQ_OK)
        return call_failed(c, e);
    int rc = 0;
    if (g->json) {
        json_t *qo = json_object(), *lanes = json_object();
        for (size_t i = 0; i < n && qo != NULL && lanes != NULL; i++) {
            json_t *o = i == 0 ? qo : json_object();
            for (size_t k = 0; k < gr[i].n_items && o != NULL; k++)
                json_object_set_new(o, gr[i].items[k].key, json_string(gr[i].items[k].value));
            if (i > 0)
                json_object_set_new(lanes, gr[i].lane, o);
        }
        rc = json_out(json_pack("{s:o,s:o}", "queue", qo, "lanes", lanes));
    } else {
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < gr[i].n_items; k++)
                printf("%s%s\t%s\t%s\n", i == 0 ? "queue" : "lane:", i == 0 ? "" : gr[i].lane, gr[i].items[k].key,
                       gr[i].items[k].value);
    }
    leaseq_config_free(gr, n);
    return rc;
}

int cmd_config(global_opts *g, int argc, char **argv)
{
    const char *lane = NULL;
    enum { O_LANE = 1 };
    static const struct option lo[] = { GLOBAL_LONGOPTS, { "lane", required_argument, NULL, O_LANE },
                                        { NULL, 0, NULL, 0 } };
    PARSE_OPTS_LOOP("config", CONFIG_HELP, "", lo, case O_LANE: lane = optarg; break;)
    if (argc - optind < 2)
        return usage_error("config", "want get|set and a QUEUE");
    const char *sub = argv[optind], *queue = argv[optind + 1];
    bool set = strcmp(sub, "set") == 0;
    if (!set && strcmp(sub, "get") != 0)
        return usage_error("config", "unknown subcommand '%s'", sub);
    int nkv = argc - optind - 2;
    if ((set && (nkv < 1 || nkv > CONFIG_ITEMS_MAX)) || (!set && (nkv != 0 || lane != NULL)))
        return usage_error("config", set ? "set wants 1..64 KEY=VALUE" : "get takes only a QUEUE");
    leaseq_header kv[CONFIG_ITEMS_MAX];
    char *copies[CONFIG_ITEMS_MAX] = { 0 };
    for (int i = 0; i < nkv; i++) {
        copies[i] = strdup(argv[optind + 2 + i]); /* owner: here */
        char *eq = copies[i] != NULL ? strchr(copies[i], '=') : NULL;
        if (eq == NULL || eq == copies[i]) {
            for (int k = 0; k <= i; k++)
                free(copies[k]);
            return usage_error("config", "'%s' is not KEY=VALUE", argv[optind + 2 + i]);
        }
        *eq = '\0';
        kv[i] = (leaseq_header){ copies[i], eq + 1 };
    }
    int rc = 0;
    leaseq *c = open_conn(g, &rc);
    if (c != NULL) {
        if (!set) {
            rc = config_get(g, c, queue);
        } else {
            leaseq_err e = leaseq_config_set(c, queue, lane, kv, (size_t)nkv, g->timeout_ms);
            if (e != LEASEQ_OK)
                rc = call_failed(c, e);
            else if (g->json)
                rc = json_out(json_pack("{s:b}", "ok", 1));
            else
                printf("ok\n");
        }
        leaseq_close(c);
    }
    for (int i = 0; i < nkv; i++)
        free(copies[i]);
    return rc;
}
