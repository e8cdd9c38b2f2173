/* leaseqctl lease, ack, nack, extend: working leases by hand. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

static const char LEASE_HELP[] =
    "usage: leaseqctl lease QUEUE [QUEUE...] [--max N] [--wait MS] [--lease MS]\n"
    "\n"
    "Leases up to N jobs (default 1). With nothing ready the broker waits up to --wait MS\n"
    "(default 0); the call's time limit is --wait plus --timeout.\n"
    "  --lease MS   lease time (default: the queue's)\n"
    "Output: one line per job, no header, tab-separated columns:\n"
    "  ID  TOKEN  LANE  ATTEMPT  PAYLOAD_BYTES\n"
    "No jobs: no output, exit status 0.\n"
    "--json: an array of {\"id\":N,\"token\":\"N\",\"lane\":S,\"attempt\":N,\"size\":N,\"queue\":S,\n"
    "        \"payload\":BASE64}; token is a decimal string because it can exceed 2^53.\n"
    "Finish a lease with 'leaseqctl ack ID TOKEN' or nack, from this or another process.\n"
    "leaseqctl's connections ask the broker to keep their leases when they close, so a lease\n"
    "taken here stays valid after this command exits, until its lease time runs out (then\n"
    "the job is requeued and ack fails with LEASE_LOST). leaseqctl opens no worker session\n"
    "and sends no heartbeats: pick --lease long enough for the work.\n";

static const char ACK_HELP[] =
    "usage: leaseqctl ack ID TOKEN [--result-file PATH]\n"
    "\n"
    "Completes a lease; the result bytes come from PATH ('-' reads stdin), none by default.\n"
    "Output: nothing. --json: {\"ok\":true}. A stale token fails with LEASE_LOST.\n";

static const char NACK_HELP[] =
    "usage: leaseqctl nack ID TOKEN [--delay MS | --dead] [--error TEXT]\n"
    "\n"
    "Gives a lease back: retried after MS (default: the queue's backoff), or dead-lettered\n"
    "now with --dead. TEXT is kept as the job's last error.\n"
    "Output: \"dead\" or \"retry\". --json: {\"dead\":BOOL}\n";

static const char EXTEND_HELP[] =
    "usage: leaseqctl extend ID TOKEN --lease MS\n"
    "\n"
    "Moves the lease's expiry to now + MS.\n"
    "Output: the new expiry, ms since the Unix epoch. --json: {\"lease_expires_ms\":N}\n";

int cmd_lease(global_opts *g, int argc, char **argv)
{
    static const struct option lo[] = {
        { "max", required_argument, NULL, 'n' }, { "wait", required_argument, NULL, 'w' },
        { "lease", required_argument, NULL, 'L' }, GLOBAL_LONGOPTS, { NULL, 0, NULL, 0 }
    };
    uint32_t max = 1, wait_ms = 0, lease_ms = 0;
    PARSE_OPTS_LOOP("lease", LEASE_HELP, "", lo,
        case 'n': if (!parse_u32(optarg, &max) || max == 0) return usage_error("lease", "bad --max"); break;
        case 'w': if (!parse_u32(optarg, &wait_ms)) return usage_error("lease", "bad --wait"); break;
        case 'L': if (!parse_u32(optarg, &lease_ms)) return usage_error("lease", "bad --lease"); break;)
    size_t n_queues = (size_t)(argc - optind);
    if (n_queues == 0 || n_queues > MAX_QUEUES)
        return usage_error("lease", "want 1 to %d QUEUE names", MAX_QUEUES);
    uint64_t timeout = (uint64_t)wait_ms + (uint64_t)g->timeout_ms;
    if (timeout > INT32_MAX)
        return usage_error("lease", "--wait plus --timeout is too long");
    int rc;
    leaseq *c = open_conn(g, &rc);
    if (c == NULL)
        return rc;
    leaseq_lease *ls = NULL;
    size_t n = 0;
    leaseq_err e = leaseq_dequeue(c, (const char *const *)(argv + optind), n_queues, max, wait_ms, lease_ms,
                                  &ls, &n, (int)timeout);
    if (e != LEASEQ_OK) {
        rc = call_failed(c, e);
        leaseq_close(c);
        return rc;
    }
    rc = 0;
    if (g->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n && arr != NULL; i++) {
            char tok[24];
            snprintf(tok, sizeof tok, "%" PRIu64, ls[i].lease_token);
            char *b64 = base64(ls[i].payload, ls[i].payload_len);
            json_t *o = json_pack("{s:I,s:s,s:s,s:I,s:I,s:s,s:s}", "id", (json_int_t)ls[i].job_id, "token", tok,
                                  "lane", ls[i].lane, "attempt", (json_int_t)ls[i].attempt, "size",
                                  (json_int_t)ls[i].payload_len, "queue", ls[i].queue, "payload", b64 ? b64 : "");
            free(b64);
            if (o == NULL || json_array_append_new(arr, o) != 0)
                rc = EXIT_FAIL;
        }
        if (arr == NULL || rc != 0) {
            fprintf(stderr, "leaseqctl: out of memory building JSON; leases held until they expire\n");
            json_decref(arr);
            rc = EXIT_FAIL;
        } else {
            print_json(arr);
        }
    } else {
        for (size_t i = 0; i < n; i++)
            printf("%" PRIu64 "\t%" PRIu64 "\t%s\t%u\t%zu\n", ls[i].job_id, ls[i].lease_token, ls[i].lane,
                   ls[i].attempt, ls[i].payload_len);
    }
    leaseq_leases_free(ls, n);
    leaseq_close(c);
    return rc;
}

/* ID TOKEN positional arguments of ack, nack and extend. */
static int id_token(const char *cmd, int argc, char **argv, uint64_t *id, uint64_t *token)
{
    if (argc - optind != 2)
        return usage_error(cmd, "want ID TOKEN");
    if (!parse_u64(argv[optind], id) || !parse_u64(argv[optind + 1], token))
        return usage_error(cmd, "ID and TOKEN are unsigned decimal numbers");
    return 0;
}

int cmd_ack(global_opts *g, int argc, char **argv)
{
    static const struct option lo[] = { { "result-file", required_argument, NULL, 'r' }, GLOBAL_LONGOPTS,
                                        { NULL, 0, NULL, 0 } };
    const char *result_file = NULL;
    PARSE_OPTS_LOOP("ack", ACK_HELP, "", lo, case 'r': result_file = optarg; break;)
    uint64_t id, token;
    int rc = id_token("ack", argc, argv, &id, &token);
    if (rc != 0)
        return rc;
    uint8_t *result = NULL;
    size_t result_len = 0;
    if (result_file != NULL && !read_file(result_file, &result, &result_len))
        return EXIT_FAIL;
    leaseq *c = open_conn(g, &rc);
    if (c != NULL) {
        leaseq_err e = leaseq_ack(c, id, token, result, result_len, g->timeout_ms);
        if (e != LEASEQ_OK)
            rc = call_failed(c, e);
        else if (g->json)
            print_json(json_pack("{s:b}", "ok", 1));
        leaseq_close(c);
    }
    free(result);
    return rc;
}

int cmd_nack(global_opts *g, int argc, char **argv)
{
    static const struct option lo[] = { { "delay", required_argument, NULL, 'D' }, { "dead", no_argument, NULL, 'x' },
                                        { "error", required_argument, NULL, 'e' }, GLOBAL_LONGOPTS,
                                        { NULL, 0, NULL, 0 } };
    leaseq_nack_opts no = { 0 };
    PARSE_OPTS_LOOP("nack", NACK_HELP, "", lo,
        case 'D': if (!parse_u64(optarg, &no.delay_ms)) return usage_error("nack", "bad --delay");
                  no.delay_set = true; break;
        case 'x': no.dead = true; break;
        case 'e': no.error = optarg; break;)
    if (no.dead && no.delay_set)
        return usage_error("nack", "--delay and --dead exclude each other");
    uint64_t id, token;
    int rc = id_token("nack", argc, argv, &id, &token);
    if (rc != 0)
        return rc;
    leaseq *c = open_conn(g, &rc);
    if (c == NULL)
        return rc;
    bool dead = false;
    leaseq_err e = leaseq_nack(c, id, token, &no, &dead, g->timeout_ms);
    if (e != LEASEQ_OK)
        rc = call_failed(c, e);
    else if (g->json)
        print_json(json_pack("{s:b}", "dead", dead));
    else
        puts(dead ? "dead" : "retry");
    leaseq_close(c);
    return rc;
}

int cmd_extend(global_opts *g, int argc, char **argv)
{
    static const struct option lo[] = { { "lease", required_argument, NULL, 'L' }, GLOBAL_LONGOPTS,
                                        { NULL, 0, NULL, 0 } };
    uint32_t lease_ms = 0;
    bool have_lease = false;
    PARSE_OPTS_LOOP("extend", EXTEND_HELP, "", lo,
        case 'L': if (!parse_u32(optarg, &lease_ms)) return usage_error("extend", "bad --lease");
                  have_lease = true; break;)
    if (!have_lease)
        return usage_error("extend", "--lease MS is required");
    uint64_t id, token;
    int rc = id_token("extend", argc, argv, &id, &token);
    if (rc != 0)
        return rc;
    leaseq *c = open_conn(g, &rc);
    if (c == NULL)
        return rc;
    uint64_t expires = 0;
    leaseq_err e = leaseq_extend(c, id, token, lease_ms, &expires, g->timeout_ms);
    if (e != LEASEQ_OK)
        rc = call_failed(c, e);
    else if (g->json)
        print_json(json_pack("{s:I}", "lease_expires_ms", (json_int_t)expires));
    else
        printf("%" PRIu64 "\n", expires);
    leaseq_close(c);
    return rc;
}

