/* leaseqctl enqueue and wait: producing jobs and learning their outcome. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

static const char ENQUEUE_HELP[] =
    "usage: leaseqctl enqueue QUEUE [--lane L] [--priority N] [--data S | --file PATH]\n"
    "                 [--delay MS] [--deadline MS] [--key K] [--max-attempts N] [--tenant T]\n"
    "                 [--header K=V ...] [--wait [--wait-timeout MS] [--out PATH]]\n"
    "\n"
    "Stores one job and prints its id once the broker says it is durable.\n"
    "  --lane L           lane (default \"default\")\n"
    "  --priority N       lower is served first (default 0; may be negative)\n"
    "  --data S           payload bytes from the argument\n"
    "  --file PATH        payload from a file ('-' reads stdin)\n"
    "                     With neither --data nor --file the payload is empty; stdin is not read.\n"
    "  --delay MS         not before now + MS\n"
    "  --deadline MS      never dispatched after now + MS\n"
    "  --key K            idempotency key: an existing job with this key is returned instead\n"
    "  --max-attempts N   deliveries before dead-lettering (default: the queue's)\n"
    "  --tenant T         fairness key inside the lane\n"
    "  --header K=V       job header, repeatable (up to 64)\n"
    "  --wait             then wait on the same connection until the job ends\n"
    "  --wait-timeout MS  how long to wait (default 30000); the wait's time limit is MS\n"
    "                     plus --timeout\n"
    "  --out PATH         with --wait: write a done job's result to PATH ('-': stdout)\n"
    "Output: the job id. --json: {\"id\":N,\"duplicate\":BOOL}\n"
    "With --wait a second line follows as 'leaseqctl wait' prints it (--json: one object\n"
    "with both sets of fields), and the exit status is that of 'leaseqctl wait'; when the\n"
    "wait fails the id has been printed and the job is stored.\n";

static const char WAIT_HELP[] =
    "usage: leaseqctl wait ID [--timeout MS] [--out PATH]\n"
    "\n"
    "Waits until job ID ends (done, dead, expired, purged or cancelled). Here --timeout is\n"
    "how long the broker waits (default 5000); the call's time limit is MS + 5000.\n"
    "  --out PATH   write a done job's result to PATH ('-': stdout, and the line below goes\n"
    "               to stderr); not written for other states\n"
    "Output: one line, tab-separated: STATE RESULT_BYTES ERROR (ERROR may be empty).\n"
    "--json: {\"id\":N,\"state\":S,\"error\":S,\"result_size\":N}\n"
    "Exit status: 0 done; 3 dead, expired, purged or cancelled; 1 the call failed, with\n"
    "DEADLINE_EXCEEDED when the job did not end in time (it is untouched: wait again) and\n"
    "NOT_FOUND for an unknown job or one whose result is no longer kept; 2 usage error.\n";

static int report_outcome(const global_opts *g, const leaseq_outcome *o, const char *out_path, json_t *j)
{
    int rc = o->state == LEASEQ_STATE_DONE ? 0 : EXIT_NOT_DONE;
    if (rc == 0 && out_path != NULL && !write_file(out_path, o->result, o->result_len))
        rc = EXIT_FAIL;
    /* with the result on stdout, everything else moves out of its way */
    FILE *info = out_path != NULL && strcmp(out_path, "-") == 0 ? stderr : stdout;
    if (g->json) {
        json_object_set_new(j, "state", json_string(leaseq_state_name(o->state)));
        json_object_set_new(j, "error", json_string(o->error));
        json_object_set_new(j, "result_size", json_integer((json_int_t)o->result_len));
        char *txt = json_dumps(j, JSON_COMPACT); /* owner: here */
        if (txt != NULL)
            fprintf(info, "%s\n", txt);
        free(txt);
    } else {
        fprintf(info, "%s\t%zu\t%s\n", leaseq_state_name(o->state), o->result_len, o->error);
    }
    json_decref(j);
    return rc;
}

/* Waits for id on c and reports it; j (may be NULL) holds fields already known for --json. */
int wait_and_report(const global_opts *g, leaseq *c, uint64_t id, uint32_t wait_ms, int call_ms,
                           const char *out_path, json_t *j)
{
    leaseq_outcome o = { 0 };
    leaseq_err e = leaseq_wait(c, id, wait_ms, &o, call_ms);
    if (e != LEASEQ_OK) {
        if (j != NULL) /* enqueue --wait: the id is known, say so before the failure */
            print_json(j);
        return call_failed(c, e);
    }
    if (j == NULL)
        j = json_pack("{s:I}", "id", (json_int_t)id);
    int rc = report_outcome(g, &o, out_path, j);
    leaseq_outcome_free(&o);
    return rc;
}

/* Options every command takes, so `leaseqctl stats --json` works as well as the global form. */

int cmd_enqueue(global_opts *g, int argc, char **argv)
{
    static const struct option lo[] = {
        { "lane", required_argument, NULL, 'l' }, { "priority", required_argument, NULL, 'p' },
        { "data", required_argument, NULL, 'd' }, { "file", required_argument, NULL, 'f' },
        { "delay", required_argument, NULL, 'D' }, { "deadline", required_argument, NULL, 'T' },
        { "key", required_argument, NULL, 'k' }, { "max-attempts", required_argument, NULL, 'm' },
        { "tenant", required_argument, NULL, 't' }, { "header", required_argument, NULL, 'H' },
        { "wait", no_argument, NULL, 'w' }, { "wait-timeout", required_argument, NULL, 'W' },
        { "out", required_argument, NULL, 'o' }, GLOBAL_LONGOPTS, { NULL, 0, NULL, 0 }
    };
    leaseq_job_spec job = { 0 };
    leaseq_header headers[MAX_HEADERS];
    char *header_copies[MAX_HEADERS];
    size_t n_headers = 0;
    const char *data = NULL, *file = NULL, *out_path = NULL;
    bool wait = false;
    uint32_t wait_ms = DEFAULT_WAIT_TIMEOUT_MS;
    int rc = EXIT_USAGE;
    PARSE_OPTS_LOOP("enqueue", ENQUEUE_HELP, "", lo,
        case 'l': job.lane = optarg; break;
        case 'p': if (!parse_i32(optarg, &job.priority)) goto bad_number; break;
        case 'd': data = optarg; break;
        case 'f': file = optarg; break;
        case 'D': if (!parse_u64(optarg, &job.delay_ms)) goto bad_number; break;
        case 'T': if (!parse_u64(optarg, &job.deadline_ms)) goto bad_number; break;
        case 'k': job.idempotency_key = optarg; break;
        case 'm': if (!parse_u32(optarg, &job.max_attempts)) goto bad_number; break;
        case 't': job.tenant = optarg; break;
        case 'w': wait = true; break;
        case 'W': if (!parse_u32(optarg, &wait_ms)) goto bad_number; break;
        case 'o': out_path = optarg; break;
        case 'H': {
            const char *eq = strchr(optarg, '=');
            if (eq == NULL || eq == optarg) {
                rc = usage_error("enqueue", "--header wants K=V, got '%s'", optarg);
                goto out;
            }
            if (n_headers == MAX_HEADERS) {
                rc = usage_error("enqueue", "at most %d headers", MAX_HEADERS);
                goto out;
            }
            char *k = strndup(optarg, (size_t)(eq - optarg)); /* owner: freed at out */
            if (k == NULL) {
                rc = EXIT_FAIL;
                goto out;
            }
            header_copies[n_headers] = k;
            headers[n_headers++] = (leaseq_header){ k, eq + 1 };
            break;
        })
    if (optind + 1 != argc) {
        rc = usage_error("enqueue", "want exactly one QUEUE");
        goto out;
    }
    if (data != NULL && file != NULL) {
        rc = usage_error("enqueue", "--data and --file exclude each other");
        goto out;
    }
    if (out_path != NULL && !wait) {
        rc = usage_error("enqueue", "--out needs --wait");
        goto out;
    }
    if ((uint64_t)wait_ms + (uint64_t)g->timeout_ms > INT32_MAX) {
        rc = usage_error("enqueue", "--wait-timeout plus --timeout is too long");
        goto out;
    }
    job.queue = argv[optind];
    job.headers = headers;
    job.n_headers = n_headers;
    uint8_t *file_data = NULL;
    if (file != NULL) {
        if (!read_file(file, &file_data, &job.payload_len)) {
            rc = EXIT_FAIL;
            goto out;
        }
        job.payload = file_data;
    } else if (data != NULL) {
        job.payload = data;
        job.payload_len = strlen(data);
    }
    leaseq *c = open_conn(g, &rc);
    if (c != NULL) {
        leaseq_enqueue_result r;
        /* the batch form is the one that reports duplicates */
        leaseq_err e = leaseq_enqueue_batch(c, &job, 1, &r, g->timeout_ms);
        if (e == LEASEQ_OK)
            e = r.err;
        if (e != LEASEQ_OK) {
            rc = call_failed(c, e);
        } else if (wait) {
            json_t *j = NULL;
            if (g->json)
                j = json_pack("{s:I,s:b}", "id", (json_int_t)r.job_id, "duplicate", r.duplicate);
            else
                printf("%" PRIu64 "\n", r.job_id);
            fflush(stdout); /* the id is worth having even if the wait fails */
            rc = wait_and_report(g, c, r.job_id, wait_ms, (int)(wait_ms + (uint32_t)g->timeout_ms), out_path, j);
        } else {
            rc = 0;
            if (g->json)
                print_json(json_pack("{s:I,s:b}", "id", (json_int_t)r.job_id, "duplicate", r.duplicate));
            else
                printf("%" PRIu64 "\n", r.job_id);
        }
        leaseq_close(c);
    }
    free(file_data);
out:
    for (size_t i = 0; i < n_headers; i++)
        free(header_copies[i]);
    return rc;
bad_number:
    rc = usage_error("enqueue", "bad number '%s'", optarg);
    goto out;
}

int cmd_wait(global_opts *g, int argc, char **argv)
{
    static const struct option lo[] = { { "out", required_argument, NULL, 'o' }, GLOBAL_LONGOPTS,
                                        { NULL, 0, NULL, 0 } };
    const char *out_path = NULL;
    PARSE_OPTS_LOOP("wait", WAIT_HELP, "", lo, case 'o': out_path = optarg; break;)
    uint64_t id;
    if (argc - optind != 1 || !parse_u64(argv[optind], &id))
        return usage_error("wait", "want one job ID (an unsigned decimal number)");
    uint32_t wait_ms = (uint32_t)g->timeout_ms; /* --timeout is the wait here */
    if ((uint64_t)wait_ms + DEFAULT_TIMEOUT_MS > INT32_MAX)
        return usage_error("wait", "--timeout is too long");
    global_opts conn_g = *g;
    conn_g.timeout_ms = DEFAULT_TIMEOUT_MS; /* a long wait is no reason for a long connect */
    int rc;
    leaseq *c = open_conn(&conn_g, &rc);
    if (c == NULL)
        return rc;
    rc = wait_and_report(g, c, id, wait_ms, (int)(wait_ms + DEFAULT_TIMEOUT_MS), out_path, NULL);
    leaseq_close(c);
    return rc;
}

